package pager

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// Head is a database's committed state, stored as JSON at Keys.Head. Every
// commit replaces it in the same etcd transaction that writes the commit's
// delta and page index row, comparing the head's mod revision; readers see
// a commit exactly when they see its head.
type Head struct {
	// TXID is the last committed transaction; 0 for a database never written.
	TXID uint64 `json:"txid"`
	// Generation is the fence generation of the writer of TXID.
	Generation uint64 `json:"generation"`
	// PageSize is the database page size; 0 until the first commit.
	PageSize uint32 `json:"page_size"`
	// Pages is the database size in pages.
	Pages uint32 `json:"pages"`
	// UsedBytes is the bytes the database stores in etcd: deltas, page
	// index rows and shards.
	UsedBytes int64 `json:"used_bytes"`
	// Timestamp is the commit time, Unix milliseconds.
	Timestamp int64 `json:"ts"`
	// Group names every database committed in the same etcd transaction
	// as this one (CommitAll), this one included, in name order; empty for
	// a commit of one database. Hosts that follow the commit apply it to
	// all of them at once. Names are escaped (url.PathEscape: JSON strings
	// cannot hold bytes that are not UTF-8) and joined by '/'; heads of
	// kvfs before names could hold any byte joined them unescaped by '\n'.
	Group string `json:"group,omitempty"`
	// Plain marks a plain file: its bytes are not a SQLite database (or not
	// one kvfs can treat as such: a size that is not a whole number of
	// pages, a page 1 without SQLite's header for the page size). Its size
	// is Bytes; its last page is used only up to there.
	Plain bool `json:"plain,omitempty"`
	// Bytes is a plain file's size in bytes.
	Bytes int64 `json:"bytes,omitempty"`
}

// groupOf returns Head.Group for the databases names, in name order.
func groupOf(names []string) string {
	esc := make([]string, len(names))
	for i, n := range names {
		esc[i] = url.PathEscape(n)
	}
	return strings.Join(esc, "/")
}

// GroupNames returns the databases of h's multi-database commit, nil for
// a commit of one database.
func (h Head) GroupNames() []string {
	if h.Group == "" {
		return nil
	}
	if strings.Contains(h.Group, "\n") {
		return strings.Split(h.Group, "\n") // written by an older kvfs
	}
	names := strings.Split(h.Group, "/")
	for i, n := range names {
		if u, err := url.PathUnescape(n); err == nil {
			names[i] = u
		}
	}
	return names
}

// Size returns the file's size in bytes.
func (h Head) Size() int64 {
	if h.Plain {
		return h.Bytes
	}
	return int64(h.Pages) * int64(h.PageSize)
}

func (h Head) marshal() []byte { return marshalJSON(h) }

// marshalJSON encodes v, one of kvfs's stored structs of strings and
// integers, which always marshal.
func marshalJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func parseHead(b []byte) (Head, error) {
	var h Head
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("parse head: %v: %w", err, ErrCorrupt)
	}
	if h.PageSize != 0 && (h.PageSize < 512 || h.PageSize > 65536 || h.PageSize&(h.PageSize-1) != 0) {
		return h, fmt.Errorf("parse head: page size %d: %w", h.PageSize, ErrCorrupt)
	}
	if h.TXID == 0 && h.Pages != 0 {
		return h, fmt.Errorf("parse head: %d pages at txid 0: %w", h.Pages, ErrCorrupt)
	}
	return h, nil
}
