package main

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// machineInfo describes this machine from /proc.
func machineInfo() Machine {
	m := Machine{NProc: runtime.NumCPU(), Model: "unknown", Kernel: "unknown", MemTotal: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.Model = field(string(b), "model name", ":")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemTotal = memTotal(field(string(b), "MemTotal", ":"))
	}
	return m
}

// field returns the trimmed value after sep of the first line of text that
// starts with key, or "unknown".
func field(text, key, sep string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, key) {
			if _, v, ok := strings.Cut(line, sep); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown"
}

// versions reports the versions of everything measured.
func versions(kvfsBin, etcdBin, liteFSBin string) Versions {
	v := Versions{Go: runtime.Version()}
	v.SQLiteCLI = firstWords(output("sqlite3", "--version"), 2)
	if db, err := sql.Open("sqlite3", ":memory:"); err == nil {
		_ = db.QueryRow("select sqlite_version()").Scan(&v.GoSQLite)
		db.Close()
	}
	v.Etcd = strings.TrimSpace(strings.TrimPrefix(firstLine(output(etcdBin, "--version")), "etcd Version:"))
	if liteFSBin != "" {
		v.LiteFS = liteFSVersion // its go-installed binary says "development build"
	}
	v.KVFS = strings.TrimPrefix(firstLine(output(kvfsBin, "version")), "kvfs ")
	if rev := strings.TrimSpace(output("git", "rev-parse", "--short", "HEAD")); rev != "" {
		if strings.TrimSpace(output("git", "status", "--porcelain", "--untracked-files=no")) != "" {
			rev += "+dirty"
		}
		v.KVFS += ", commit " + rev
	}
	return v
}

// output returns a command's output, or "" when it fails.
func output(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}

// memTotal turns /proc/meminfo's "24684084 kB" into "23.5 GiB".
func memTotal(v string) string {
	f := strings.Fields(v)
	if len(f) != 2 || f[1] != "kB" {
		return v
	}
	kib, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return v
	}
	return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
}
