package tests

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// statOf returns path's mode bits (permissions and sticky/set-ID), owner
// and mtime.
func statOf(t *testing.T, path string) (mode uint32, uid, gid uint32, mtime time.Time) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777, st.Uid, st.Gid, time.Unix(st.Mtim.Unix())
}

// eventuallyStat waits (the kernel caches attributes for a second) until
// path has mode and owner uid.
func eventuallyStat(t *testing.T, what, path string, mode, uid uint32) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		m, u, _, _ := statOf(t, path)
		if m == mode && u == uid {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: mode %#o uid %d, want %#o uid %d", what, m, u, mode, uid)
		}
	}
}

// TestModesAndOwners: chmod and chown of a database and of the root are
// stored in etcd: shown by stat, kept across a remount, seen by another
// host; a new database gets its creator's owner and mode (umask applied);
// set-ID bits are cleared; mtime is the last commit's time on every host;
// a read-only mount refuses chmod with EROFS and changes nothing.
func TestModesAndOwners(t *testing.T) {
	old := syscall.Umask(0o027)
	t.Cleanup(func() { syscall.Umask(old) })
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	path := a.Path("m.db")
	mustSQL(t, path, "create table t(x); insert into t values (1);")
	if mode, uid, gid, _ := statOf(t, path); mode != 0o640 || uid != uint32(os.Getuid()) || gid != uint32(os.Getgid()) {
		t.Fatalf("new database: mode %#o owner %d:%d, want 0640 (umask 027) %d:%d", mode, uid, gid, os.Getuid(), os.Getgid())
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65533); err != nil {
		t.Fatal(err)
	}
	if mode, uid, gid, _ := statOf(t, path); mode != 0o600 || uid != 65534 || gid != 65533 {
		t.Fatalf("after chmod and chown: mode %#o owner %d:%d", mode, uid, gid)
	}
	eventuallyStat(t, "the other host", b.Path("m.db"), 0o600, 65534)
	if err := syscall.Chmod(path, 0o4755); err != nil { // os.Chmod maps set-ID bits to its own
		t.Fatal(err)
	}
	if mode, _, _, _ := statOf(t, path); mode != 0o755 {
		t.Fatalf("chmod 4755: mode %#o, want 0755 (set-ID cleared)", mode)
	}
	if err := syscall.Chmod(a.Dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	if mode, _, _, _ := statOf(t, a.Dir); mode != 0o1777 {
		t.Fatalf("root after chmod 1777: %#o", mode)
	}
	eventuallyStat(t, "the other host's root", b.Dir, 0o1777, 0)

	// A journal takes its database's mode and owner (SQLite sets them).
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	mustSQL(t, path, "pragma journal_mode=persist; insert into t values (3);")
	if mode, uid, gid, _ := statOf(t, path+"-journal"); mode != 0o640 || uid != 65534 || gid != 65533 {
		t.Fatalf("journal: mode %#o owner %d:%d, want the database's 0640 65534:65533", mode, uid, gid)
	}
	mustSQL(t, path, "pragma journal_mode=delete;")

	// mtime is the commit's, the same on both hosts.
	time.Sleep(1100 * time.Millisecond)
	mustSQL(t, path, "insert into t values (2);")
	_, _, _, mtA := statOf(t, path)
	if time.Since(mtA) > 2*time.Second {
		t.Fatalf("mtime %v after a commit now", mtA)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, _, _, mtB := statOf(t, b.Path("m.db")); mtB.Equal(mtA) {
			break
		}
		if time.Now().After(deadline) {
			_, _, _, mtB := statOf(t, b.Path("m.db"))
			t.Fatalf("mtime on the other host %v, on the writer %v", mtB, mtA)
		}
	}

	ro := mountKVFS(t, mountOpts{Prefix: a.Prefix, ReadOnly: true})
	if err := os.Chmod(ro.Path("m.db"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("chmod on a read-only mount: %v, want EROFS", err)
	}
	a.Unmount()
	a2 := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	if mode, uid, gid, _ := statOf(t, a2.Path("m.db")); mode != 0o640 || uid != 65534 || gid != 65533 {
		t.Fatalf("after remount: mode %#o owner %d:%d", mode, uid, gid)
	}
	if mode, _, _, _ := statOf(t, a2.Dir); mode != 0o1777 {
		t.Fatalf("root after remount: %#o", mode)
	}
}

// nobody is the uid and gid the permission tests run as.
const nobody = "65534"

// runAs runs a command as uid and gid nobody, with no supplementary groups,
// killing it if it still runs after sqlHangAfter.
func runAs(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sqlHangAfter)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", append([]string{"--reuid=" + nobody, "--regid=" + nobody, "--clear-groups", "--"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME=/nonexistent")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// openToOthers lets other users reach dir (t.TempDir makes its
// directories 0700).
func openToOthers(t *testing.T, dir string) {
	t.Helper()
	for d := filepath.Dir(dir); d != "/" && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPermissionsEnforced: as a user other than the owner (nobody, with
// allow_other), the kernel enforces the stored modes: no open of a 0600
// database, reads but no writes of a 0644 one, no chmod of another's file;
// once the root is writable and the database is theirs, they write, and a
// database they create is theirs. Without allow_other they reach nothing.
func TestPermissionsEnforced(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run commands as nobody (setpriv)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv (util-linux): apt-get install util-linux")
	}
	m := mountKVFS(t, mountOpts{AllowOther: true})
	openToOthers(t, m.Dir)
	secret, shared := m.Path("secret.db"), m.Path("shared.db")
	mustSQL(t, secret, "create table t(x); insert into t values ('secret');")
	mustSQL(t, shared, "create table t(x); insert into t values ('shared');")
	if err := os.Chmod(secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runAs(m.Dir, "sqlite3", "-batch", secret, "select * from t;"); err == nil || !strings.Contains(out, "unable to open database file") {
		t.Fatalf("nobody reads a 0600 database of root: %v %q", err, out)
	}
	if out, err := runAs(m.Dir, "sqlite3", "-batch", shared, "select * from t;"); err != nil || strings.TrimSpace(out) != "shared" {
		t.Fatalf("nobody reads a 0644 database: %v %q", err, out)
	}
	if out, err := runAs(m.Dir, "sqlite3", "-batch", shared, "insert into t values ('nobody');"); err == nil || !strings.Contains(out, "readonly database") {
		t.Fatalf("nobody writes a 0644 database of root: %v %q", err, out)
	}
	if out, err := runAs(m.Dir, "chmod", "666", shared); err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Fatalf("nobody chmods root's database: %v %q", err, out)
	}
	if mode, _, _, _ := statOf(t, shared); mode != 0o644 {
		t.Fatalf("shared.db mode %#o after refused chmod", mode)
	}
	if out := mustSQL(t, shared, "select group_concat(x) from t;"); strings.TrimSpace(out) != "shared" {
		t.Fatalf("shared.db holds %q after refused writes", out)
	}
	// Writable root (as /tmp) and a database of their own: nobody writes.
	if err := syscall.Chmod(m.Dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(shared, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if out, err := runAs(m.Dir, "sqlite3", "-batch", shared, "insert into t values ('nobody'); select count(*) from t;"); err != nil || strings.TrimSpace(out) != "2" {
		t.Fatalf("nobody writes their database: %v %q", err, out)
	}
	if out, err := runAs(m.Dir, "sqlite3", "-batch", m.Path("own.db"), "create table t(x);"); err != nil {
		t.Fatalf("nobody creates a database: %v %q", err, out)
	}
	if _, uid, gid, _ := statOf(t, m.Path("own.db")); uid != 65534 || gid != 65534 {
		t.Fatalf("own.db owned by %d:%d, want nobody's", uid, gid)
	}
	if out, err := runAs(m.Dir, "rm", secret); err == nil {
		t.Fatalf("nobody deleted root's database from a sticky root: %q", out)
	}

	// Without allow_other, other users reach nothing.
	private := mountKVFS(t, mountOpts{Prefix: m.Prefix})
	openToOthers(t, private.Dir)
	if out, err := runAs("/", "stat", private.Path("shared.db")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("nobody on a mount without allow_other: %v %q", err, out)
	}
}

// TestStatfs: statfs (df) reports etcd's quota as the size and what etcd's
// backend uses as used; a commit that grows etcd shows as less free space.
func TestStatfs(t *testing.T) {
	const quota = 1 << 30
	m := mountKVFS(t, mountOpts{SpaceQuota: quota})
	statfs := func() (total, free uint64) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(m.Dir, &st); err != nil {
			t.Fatal(err)
		}
		if st.Namelen != 255 {
			t.Errorf("name length %d, want 255", st.Namelen)
		}
		return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize)
	}
	total, free := statfs()
	used, err := m.Store.BackendSize(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if total != quota {
		t.Fatalf("size %d, want the quota %d", total, quota)
	}
	if want := uint64(quota - used); free > want+statfsSlack || free+statfsSlack < want {
		t.Fatalf("free %d, want about %d (quota %d - backend %d)", free, want, quota, used)
	}
	mustSQL(t, m.Path("big.db"), "create table t(x); insert into t select randomblob(1000) from generate_series(1, 20000);")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, after := statfs(); after+16<<20 <= free {
			break
		}
		if time.Now().After(deadline) {
			_, after := statfs()
			t.Fatalf("free %d after a 20 MB commit, %d before", after, free)
		}
	}
	out, err := exec.Command("df", "-B1", "--output=size", m.Dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1073741824") {
		t.Fatalf("df: %v %q", err, out)
	}
}

// statfsSlack is how far statfs's free space may be from a backend size
// read moments apart: etcd's backend grows with the other tests' writes.
const statfsSlack = 64 << 20

// TestChmodZero: mode 0 is a mode like any other (SQLite's wal2-13.7-9
// make a database, its -wal or its -shm unreadable so): stat shows 0 on
// this host and on another, for a database, a plain file and a side file.
// go-fuse turns a reported mode 0 into 0644 unless told not to.
func TestChmodZero(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	mustSQL(t, a.Path("z.db"), "pragma journal_mode=persist; create table t(x);")
	if err := os.WriteFile(a.Path("z.txt"), []byte("text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"z.db", "z.txt", "z.db-journal"} {
		if err := os.Chmod(a.Path(name), 0); err != nil {
			t.Fatalf("chmod 0 %s: %v", name, err)
		}
		eventuallyStat(t, name, a.Path(name), 0, 0)
	}
	eventuallyStat(t, "z.db on host B", b.Path("z.db"), 0, 0)
	eventuallyStat(t, "z.txt on host B", b.Path("z.txt"), 0, 0)
	// Back to readable, for the integrity check at unmount.
	for _, name := range []string{"z.db", "z.txt", "z.db-journal"} {
		if err := os.Chmod(a.Path(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
