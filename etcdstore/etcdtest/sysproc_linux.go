package etcdtest

import "syscall"

// sysProcAttr puts the server in its own process group, so a ^C aimed at the
// test does not reach it before the cleanup can stop it in order, and asks the
// kernel to SIGKILL it if the test binary dies without running its cleanups
// (a -timeout panic, a SIGKILL). Pdeathsig fires when the forking OS thread
// exits; Go keeps its threads unless a goroutine exits while locked to one,
// which nothing in the test binaries does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
