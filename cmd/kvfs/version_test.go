package main

import (
	"context"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(context.Background(), "version")
	if code != 0 || !strings.HasPrefix(out, "kvfs "+version+" (go") {
		t.Fatalf("version: %d %q", code, out)
	}
	code, _, errOut := runCmd(context.Background(), "version", "--help")
	if code != 0 || !strings.Contains(errOut, "Example:") {
		t.Fatalf("version --help: %d %q", code, errOut)
	}
}
