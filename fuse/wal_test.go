package fuse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// testdata/three-txns.wal is a -wal the sqlite3 CLI wrote (page size 1024,
// no checkpoint): CREATE TABLE, one insert, and a transaction of four
// 300-byte rows. Regenerate with:
//
//	printf "pragma page_size=1024;\npragma journal_mode=wal;\npragma wal_autocheckpoint=0;\ncreate table t(x);\ninsert into t values (1);\nbegin;\ninsert into t select randomblob(300) from (select 1 union all select 2 union all select 3 union all select 4);\ncommit;\n.shell cp g.db-wal three-txns.wal\n" | sqlite3 g.db
func readTestWAL(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/three-txns.wal")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// txns returns every transaction walLog finds in b, in order.
func txns(t testing.TB, b []byte) (*walLog, []*walTxn) {
	h, err := parseWALHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	var w walLog
	w.setHeader(h)
	var out []*walTxn
	for {
		txn, err := w.next(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		if txn == nil {
			return &w, out
		}
		if txn.end <= w.committed {
			t.Fatalf("transaction ends at frame %d, not past %d", txn.end, w.committed)
		}
		w.landed(txn)
		out = append(out, txn)
	}
}

func TestWALHeader(t *testing.T) {
	b := readTestWAL(t)
	h, err := parseWALHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.pageSize != 1024 || h.order != binary.LittleEndian {
		t.Fatalf("header %+v", h)
	}
	for name, mutate := range map[string]func([]byte){
		"magic":     func(b []byte) { b[3] = 0 },
		"version":   func(b []byte) { b[7]++ },
		"page size": func(b []byte) { binary.BigEndian.PutUint32(b[8:], 1000) },
		"salt":      func(b []byte) { b[16]++ },
		"checksum":  func(b []byte) { b[31]++ },
		"short":     nil,
	} {
		c := bytes.Clone(b[:walHeaderSize])
		if mutate == nil {
			c = c[:20]
		} else {
			mutate(c)
		}
		if _, err := parseWALHeader(c); !errors.Is(err, errWALHeader) {
			t.Errorf("%s: %v, want errWALHeader", name, err)
		}
	}
}

func TestWALTransactions(t *testing.T) {
	b := readTestWAL(t)
	w, got := txns(t, b)
	if len(got) != 3 {
		t.Fatalf("%d transactions, want 3", len(got))
	}
	frameSize := int64(walFrameHeaderSize + 1024)
	if frames := (int64(len(b)) - walHeaderSize) / frameSize; w.committed != frames {
		t.Fatalf("committed %d frames of %d", w.committed, frames)
	}
	last := got[2]
	if _, ok := last.pages[1]; !ok || last.dbPages < 2 {
		t.Fatalf("last transaction: pages %v, size %d pages", last.pages, last.dbPages)
	}
	for _, txn := range got {
		for pgno, off := range txn.pages {
			if (off-walHeaderSize-walFrameHeaderSize)%frameSize != 0 || pgno == 0 {
				t.Fatalf("page %d at offset %d is not a frame's page", pgno, off)
			}
		}
	}
}

// TestWALChainBreak: a changed byte in a frame's page breaks the checksum
// chain there: the transactions before it are found, that one and the
// later ones are not. A frame with another log generation's salt ends the
// log too.
func TestWALChainBreak(t *testing.T) {
	b := readTestWAL(t)
	_, all := txns(t, b)
	frameSize := walFrameHeaderSize + 1024
	second := all[0].end + 1 // first frame of the second transaction
	for name, mutate := range map[string]func([]byte){
		"page byte": func(c []byte) { c[walHeaderSize+int(second-1)*frameSize+walFrameHeaderSize+100]++ },
		"salt":      func(c []byte) { c[walHeaderSize+int(second-1)*frameSize+8]++ },
	} {
		c := bytes.Clone(b)
		mutate(c)
		if _, got := txns(t, c); len(got) != 1 {
			t.Errorf("%s: %d transactions, want only the first", name, len(got))
		}
	}
}

func TestWALTouched(t *testing.T) {
	b := readTestWAL(t)
	h, _ := parseWALHeader(b)
	var w walLog
	w.setHeader(h)
	fs := w.frameSize()
	// A header written before its frame's page is the first half of a new
	// frame, not a rewrite: it completes nothing.
	for _, off := range []int64{walHeaderSize, walHeaderSize + 2*fs} {
		if got := w.touched(off, walFrameHeaderSize); got != 0 {
			t.Errorf("touched(%d, %d) before any page = %d, want 0", off, walFrameHeaderSize, got)
		}
	}
	w.wrote(walHeaderSize, int(3*fs)) // frames 1 to 3 written
	if w.written != 3 {
		t.Fatalf("written %d after three frames, want 3", w.written)
	}
	for _, tc := range []struct {
		off  int64
		n    int
		want int64
	}{
		{walHeaderSize, walFrameHeaderSize, 1},                                // frame 1's header
		{walHeaderSize + walFrameHeaderSize, 1024, 1},                         // frame 1's page
		{walHeaderSize + 2*fs, walFrameHeaderSize, 3},                         // frame 3's header (a checksum rewrite)
		{walHeaderSize + 2*fs + walFrameHeaderSize, 512, 0},                   // half a page
		{walHeaderSize + fs + walFrameHeaderSize, int(fs + 1024), 3},          // frames 2 and 3
		{walHeaderSize + 2*fs + walFrameHeaderSize + 100, int(1024 - 100), 3}, // the end of frame 3's page
	} {
		if got := w.touched(tc.off, tc.n); got != tc.want {
			t.Errorf("touched(%d, %d) = %d, want %d", tc.off, tc.n, got, tc.want)
		}
	}
	if got := w.firstTouched(walHeaderSize + fs + 5); got != 2 {
		t.Errorf("firstTouched = %d, want 2", got)
	}
}

func TestWALChecksumOrder(t *testing.T) {
	b := []byte{1, 0, 0, 0, 2, 0, 0, 0}
	le1, le2 := walChecksum(binary.LittleEndian, 0, 0, b)
	if le1 != 1 || le2 != 3 {
		t.Fatalf("little-endian checksum %d %d, want 1 3", le1, le2)
	}
	be1, _ := walChecksum(binary.BigEndian, 0, 0, b)
	if be1 != 1<<24 {
		t.Fatalf("big-endian checksum %#x", be1)
	}
}

// FuzzWALNext feeds arbitrary frames after a valid header: walLog never
// panics, and every transaction it finds lies inside the log.
func FuzzWALNext(f *testing.F) {
	b := readTestWAL(f)
	f.Add(b[walHeaderSize:])
	f.Add(b[walHeaderSize : walHeaderSize+walFrameHeaderSize+1024])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frames []byte) {
		log := append(bytes.Clone(b[:walHeaderSize]), frames...)
		h, err := parseWALHeader(log)
		if err != nil {
			t.Fatal(err)
		}
		var w walLog
		w.setHeader(h)
		for i := 0; i < 1000; i++ {
			txn, err := w.next(bytes.NewReader(log), int64(len(log)))
			if err != nil || txn == nil {
				return
			}
			if w.frameOffset(txn.end)+w.frameSize() > int64(len(log)) {
				t.Fatalf("transaction ends at frame %d, past the log", txn.end)
			}
			for _, off := range txn.pages {
				if off+int64(h.pageSize) > int64(len(log)) {
					t.Fatalf("page at %d past the log", off)
				}
			}
			w.landed(txn)
		}
	})
}
