package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCmd runs kvfs with args and returns its exit code and output.
func runCmd(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsage(t *testing.T) {
	code, out, _ := runCmd(context.Background(), "--help")
	if code != 0 || !strings.Contains(out, "Commands:") || !strings.Contains(out, "version") {
		t.Fatalf("--help: %d %q", code, out)
	}
	code, _, errOut := runCmd(context.Background(), "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	code, _, errOut = runCmd(context.Background(), "version", "--bogus")
	if code != 2 || !strings.Contains(errOut, "flag provided but not defined") {
		t.Fatalf("bad flag: %d %q", code, errOut)
	}
}
