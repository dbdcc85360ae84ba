package ltx

import (
	"bytes"
	"cmp"
	"slices"

	sltx "github.com/superfly/ltx"
)

// Encode returns the blob holding hdr and pages. It sorts a copy of pages by
// page number (pages itself is not modified) and checks every rule in the
// package documentation; violations return an error matching ErrInvalid.
// The result is a valid LTX v3 file.
func Encode(hdr Header, pages []Page) ([]byte, error) {
	sorted := slices.Clone(pages)
	slices.SortFunc(sorted, func(a, b Page) int { return cmp.Compare(a.Pgno, b.Pgno) })

	var buf bytes.Buffer
	buf.Grow(encodedSizeHint(hdr.PageSize, len(sorted)))
	w, err := newWriter(&buf, hdr)
	if err != nil {
		return nil, err
	}
	for _, p := range sorted {
		if err := w.WritePage(p.Pgno, p.Data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// encodedSizeHint guesses a blob's size, assuming pages compress to about
// half; bytes.Buffer grows past it if needed.
func encodedSizeHint(pageSize uint32, n int) int {
	if pageSize > sltx.MaxPageSize {
		pageSize = sltx.MaxPageSize
	}
	const perPage = sltx.PageHeaderSize + 4 + 3*4 // frame header, size, index record
	return sltx.HeaderSize + n*(int(pageSize)/2+perPage) + 16 + sltx.TrailerSize
}
