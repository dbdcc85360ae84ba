// Package etcdtest runs real etcd servers as separate processes for
// integration tests: a single member (StartProcess) or an n-member static
// cluster (StartCluster), on free 127.0.0.1 ports with data under
// tb.TempDir().
//
// Invariant: every process this package starts is stopped and reaped
// (SIGTERM, then SIGKILL after 10 s, then wait) by a tb.Cleanup registered
// when it is started, so a test leaks neither processes nor zombies; a test
// may Kill, Pause, Resume, Stop and Restart members in between.
//
// # The server binary
//
// The binary is tests/etcd-server, a wrapper around etcdmain.Main built from
// the etcd version that go.mod pins (`go install` of the etcd server module
// fails because of its replace directives). ServerBinary uses $KVFS_ETCD_BIN
// when set (the Makefile builds bin/etcd-server and sets it) and otherwise
// builds the wrapper once per test process.
//
// # Boundaries
//
// The package talks to etcd only through os/exec, signals and HTTP (the
// /health endpoint and the JSON gRPC gateway for Leader); it does not import
// the etcd client or package etcdstore, so etcdstore's own tests can use it.
//
// # Logs
//
// Each member appends its stdout and stderr to Process.LogPath, which sits
// next to its data dir rather than inside it (etcd warns about any file in
// its data dir it does not own). When a test
// fails, the cleanup prints the last lines of every member's log with
// tb.Logf. Members log at level warn; pass "--log-level=info" in
// Options.ExtraArgs for more (later flags override earlier ones).
package etcdtest
