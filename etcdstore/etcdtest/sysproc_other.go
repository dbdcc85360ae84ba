//go:build !linux

package etcdtest

import "syscall"

// sysProcAttr puts the server in its own process group, so a ^C aimed at the
// test does not reach it before the cleanup can stop it in order.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
