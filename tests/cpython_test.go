package tests

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestCPythonSQLiteSuite runs CPython's own sqlite3 test suite with its
// working directory on the mount (its databases, WAL ones included, are
// created there): every test passes, names with bytes that are not UTF-8
// (test_open_with_undecodable_path, test_open_undecodable_uri) included.
func TestCPythonSQLiteSuite(t *testing.T) {
	if err := exec.Command("python3", "-c", "import test.test_sqlite3").Run(); err != nil {
		t.Skip("python3 with its test package (test.test_sqlite3) is not installed")
	}
	m := mountKVFS(t, mountOpts{})
	cmd := exec.Command("python3", "-m", "unittest", "test.test_sqlite3")
	cmd.Dir = m.Dir
	out, _ := cmd.CombinedOutput()
	ran := regexp.MustCompile(`(?m)^Ran (\d+) tests`).FindSubmatch(out)
	if ran == nil {
		t.Fatalf("no test summary:\n%s", out)
	}
	var failed []string
	for _, f := range regexp.MustCompile(`(?m)^(?:FAIL|ERROR): (\w+)`).FindAllSubmatch(out, -1) {
		failed = append(failed, string(f[1]))
	}
	t.Logf("ran %s tests; failed %v", ran[1], failed)
	for _, f := range failed {
		t.Errorf("%s fails on kvfs", f)
	}
	if t.Failed() {
		t.Logf("output:\n%s", lastLines(string(out), 80))
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
