package fuse

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/fence"
	"github.com/kvfs/kvfs/internal/testutil"
	"github.com/kvfs/kvfs/pager"
)

// TestPanicBecomesEIO: a handler that panics answers EIO and logs the
// panic; the mount keeps serving.
func TestPanicBecomesEIO(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and /dev/fuse (modprobe fuse; run as root)")
	}
	ctx := context.Background()
	e, err := etcdstore.StartEmbedded(ctx, etcdstore.EmbedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	store, err := etcdstore.Open(ctx, e.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	keys := etcdstore.NewKeys("/panic/")
	p, err := pager.New(pager.Options{Store: store, Keys: keys, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fm := fence.NewManager(store, keys, fence.Options{Owner: "panic-test", TTL: 3 * time.Second})
	defer fm.Close(ctx)
	var logs testutil.SyncBuffer
	dir := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o755)
	m, err := Mount(dir, Options{Pager: p, Fence: fm, SpoolDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount(ctx)

	page := make([]byte, 4096)
	copy(page, "SQLite format 3\x00")
	page[16], page[17] = 0x10, 0
	if err := os.WriteFile(filepath.Join(dir, "p.db"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	boom := func() { panic("boom") }
	testHookRead.Store(&boom)
	defer testHookRead.Store(nil)
	f, err := os.OpenFile(filepath.Join(dir, "p.db"), os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	// Bypass the kernel's page cache so the read reaches the handler.
	_, err = f.ReadAt(buf, 0)
	testHookRead.Store(nil)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read through a panicking handler: %v, want EIO", err)
	}
	if !strings.Contains(logs.String(), "panic in FUSE handler") || !strings.Contains(logs.String(), "boom") {
		t.Fatalf("panic not logged: %q", logs.String())
	}
	if _, err := f.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, page) {
		t.Fatalf("read after the panic: %v", err)
	}
}
