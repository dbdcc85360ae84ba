package ltx

import (
	"bytes"
	"math/rand"
	"testing"
	"time"
)

func TestFrameSizeMatchesEncoding(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	random := make([]byte, 4096)
	rng.Read(random)
	for name, data := range map[string][]byte{
		"zeros":  make([]byte, 4096),
		"random": random,
		"text":   bytes.Repeat([]byte("kvfs stores pages "), 4096/18+1)[:4096],
	} {
		one, err := Encode(Header{PageSize: 4096, Commit: 2, MinTXID: 2, MaxTXID: 2}, []Page{{Pgno: 2, Data: data}})
		if err != nil {
			t.Fatal(err)
		}
		empty := 100 + 16 + 8 + 8 // header, trailer, end-of-pages marker, index size and end marker (approximate)
		got, blob := FrameSize(data), len(one)
		if got > blob || blob-got > empty+16 {
			t.Errorf("%s: FrameSize %d, blob %d: frame estimate off by more than the fixed overhead", name, got, blob)
		}
	}
}
