// Command kvfs mounts a directory whose files are SQLite databases stored in
// etcd, and manages those databases.
//
// This is the only package that reads flags, files and the environment;
// libraries take options structs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
)

// command is one kvfs subcommand.
type command struct {
	name    string
	summary string
	// run parses args (without the command name) and runs the command. It
	// returns errUsage after printing usage for a bad invocation.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// errUsage reports a bad invocation whose usage was already printed.
var errUsage = errors.New("usage")

func commands() []command {
	cmds := []command{
		versionCommand(), etcdCommand(), mountCommand(), lsCommand(), statusCommand(),
		importCommand(), exportCommand(), verifyCommand(), rmCommand(), compactCommand(),
		logCommand(), restoreCommand(), forkCommand(), reclaimCommand(),
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "kvfs: %v: stopping (again to force)\n", s)
		cancel()
		s = <-sigs
		fmt.Fprintf(os.Stderr, "kvfs: %v again: forced exit\n", s)
		forceMu.Lock()
		for _, f := range forceHooks {
			f()
		}
		os.Exit(1)
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	signal.Stop(sigs)
	cancel()
	os.Exit(code)
}

var (
	forceMu    sync.Mutex
	forceHooks []func()
)

// onForcedExit registers f to run when a second signal forces kvfs to exit
// (e.g. detach the mount so it is not left dead); the returned func
// unregisters it.
func onForcedExit(f func()) func() {
	forceMu.Lock()
	defer forceMu.Unlock()
	forceHooks = append(forceHooks, f)
	i := len(forceHooks) - 1
	return func() {
		forceMu.Lock()
		defer forceMu.Unlock()
		forceHooks[i] = func() {}
	}
}

// run dispatches to a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil || errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "kvfs %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "kvfs: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "kvfs: SQLite databases as files, with their pages stored in etcd.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: kvfs COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'kvfs COMMAND --help' for a command's flags and an example.")
}

// newFlagSet returns a flag set that prints a usage text with an example.
func newFlagSet(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: kvfs %s\n\n%s\n", synopsis, description)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(stderr, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args into fs; a parse error has been printed with the
// usage and becomes errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}
