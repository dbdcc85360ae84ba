package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func versionCommand() command {
	return command{
		name:    "version",
		summary: "print the kvfs version and build information",
		run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			fs := newFlagSet("version", "version", "Prints the kvfs version, the Go version and the etcd client version.\n\nExample:\n  kvfs version", stderr)
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "kvfs %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, d := range bi.Deps {
					switch d.Path {
					case "go.etcd.io/etcd/client/v3", "go.etcd.io/etcd/server/v3", "github.com/superfly/ltx":
						fmt.Fprintf(stdout, "  %s %s\n", d.Path, d.Version)
					}
				}
			}
			return nil
		},
	}
}
