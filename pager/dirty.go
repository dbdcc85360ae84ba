package pager

import (
	"fmt"
	"os"
	"slices"
)

// dirtySet holds the pages written by an open transaction. Up to memLimit
// bytes stay in memory; further pages go to an unlinked spool file, so a
// transaction larger than memory still commits.
type dirtySet struct {
	pageSize int
	memLimit int64
	spoolDir string

	mem      map[uint32][]byte
	memBytes int64
	spool    *os.File
	spooled  map[uint32]int64 // pgno → offset in spool
	spoolEnd int64
	frames   map[uint32]int // pgno → estimated encoded size, for quota
	frameSum int64
}

func newDirtySet(pageSize int, memLimit int64, spoolDir string) *dirtySet {
	return &dirtySet{
		pageSize: pageSize, memLimit: memLimit, spoolDir: spoolDir,
		mem: make(map[uint32][]byte), spooled: make(map[uint32]int64), frames: make(map[uint32]int),
	}
}

func (d *dirtySet) len() int { return len(d.mem) + len(d.spooled) }

func (d *dirtySet) has(pgno uint32) bool {
	if _, ok := d.mem[pgno]; ok {
		return true
	}
	_, ok := d.spooled[pgno]
	return ok
}

// estimate returns the summed encoded-size estimates of the dirty pages.
func (d *dirtySet) estimate() int64 { return d.frameSum }

// put stores a copy of data (exactly one page) as page pgno. frame is its
// estimated encoded size.
func (d *dirtySet) put(pgno uint32, data []byte, frame int) error {
	d.frameSum += int64(frame - d.frames[pgno])
	d.frames[pgno] = frame
	if buf, ok := d.mem[pgno]; ok {
		copy(buf, data)
		return nil
	}
	if off, ok := d.spooled[pgno]; ok {
		if _, err := d.spool.WriteAt(data, off); err != nil {
			return fmt.Errorf("write spool: %w", err)
		}
		return nil
	}
	if d.memBytes+int64(d.pageSize) <= d.memLimit {
		d.mem[pgno] = slices.Clone(data)
		d.memBytes += int64(d.pageSize)
		return nil
	}
	if d.spool == nil {
		f, err := os.CreateTemp(d.spoolDir, "kvfs-spool-*")
		if err != nil {
			return fmt.Errorf("create spool: %w", err)
		}
		// Unlinked at once: the spool vanishes with the process.
		os.Remove(f.Name())
		d.spool = f
	}
	if _, err := d.spool.WriteAt(data, d.spoolEnd); err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	d.spooled[pgno] = d.spoolEnd
	d.spoolEnd += int64(d.pageSize)
	return nil
}

// get copies page pgno into dst (one page long) and reports whether it is
// dirty.
func (d *dirtySet) get(pgno uint32, dst []byte) (bool, error) {
	if buf, ok := d.mem[pgno]; ok {
		copy(dst, buf)
		return true, nil
	}
	if off, ok := d.spooled[pgno]; ok {
		if _, err := d.spool.ReadAt(dst[:d.pageSize], off); err != nil {
			return true, fmt.Errorf("read spool: %w", err)
		}
		return true, nil
	}
	return false, nil
}

// view returns dirty page pgno without copying it when it is in memory;
// a spooled page is read into *scratch, allocated on first use. The result
// must not be modified and is valid until the set or *scratch changes.
func (d *dirtySet) view(pgno uint32, scratch *[]byte) ([]byte, error) {
	if buf, ok := d.mem[pgno]; ok {
		return buf, nil
	}
	if *scratch == nil {
		*scratch = make([]byte, d.pageSize)
	}
	ok, err := d.get(pgno, *scratch)
	if err == nil && !ok {
		err = fmt.Errorf("page %d is not dirty", pgno)
	}
	return *scratch, err
}

// truncate drops pages above pages.
func (d *dirtySet) truncate(pages uint32) {
	for p := range d.mem {
		if p > pages {
			delete(d.mem, p)
			d.memBytes -= int64(d.pageSize)
			d.forget(p)
		}
	}
	for p := range d.spooled {
		if p > pages {
			delete(d.spooled, p)
			d.forget(p)
		}
	}
}

func (d *dirtySet) forget(p uint32) {
	d.frameSum -= int64(d.frames[p])
	delete(d.frames, p)
}

// pgnos returns the dirty page numbers, ascending.
func (d *dirtySet) pgnos() []uint32 {
	out := make([]uint32, 0, d.len())
	for p := range d.mem {
		out = append(out, p)
	}
	for p := range d.spooled {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// spilled reports whether any page went to the spool.
func (d *dirtySet) spilled() bool { return d.spool != nil }

// close releases the spool.
func (d *dirtySet) close() {
	if d.spool != nil {
		d.spool.Close()
		d.spool = nil
	}
	d.mem, d.spooled, d.frames = nil, nil, nil
}

// drop removes page pgno from the set.
func (d *dirtySet) drop(pgno uint32) {
	if _, ok := d.mem[pgno]; ok {
		delete(d.mem, pgno)
		d.memBytes -= int64(d.pageSize)
	}
	delete(d.spooled, pgno)
	d.forget(pgno)
}
