package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/fence"
	"github.com/kvfs/kvfs/pager"
)

// lookupEnv reads the environment; tests use t.Setenv.
var lookupEnv = os.LookupEnv

// storeFlagsHelp is appended to every command's description.
const storeFlagsHelp = `
The store: --etcd URL[,URL...] for an external etcd cluster (with
--etcd-cacert/--etcd-cert/--etcd-key for TLS and --etcd-user/--etcd-password),
or --data-dir DIR for the embedded etcd. When a kvfs mount already runs on DIR,
its etcd is used through the endpoint file it wrote there. Settings come from
the YAML file --config (or $KVFS_CONFIG; default /etc/kvfs/kvfs.yaml when
present), then KVFS_* environment variables, then flags.`

// session is what a command that reads or writes databases works with.
type session struct {
	cfg      Config
	log      *slog.Logger
	store    *etcdstore.Store
	keys     etcdstore.Keys
	close    func()
	embedded bool         // the store is an embedded etcd (this process's or a mount's)
	ns       *pager.Pager // for path lookups (namespace), opened on first use
}

// newLogger returns the logger cfg asks for, writing to w.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// parseCommand parses args with fs (which has the config flags cf), loads
// the configuration and checks the number of positional arguments
// (minArgs..maxArgs). Flags may follow positional arguments.
func parseCommand(fs *flag.FlagSet, cf *configFlags, args []string, minArgs, maxArgs int) (Config, []string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return Config{}, nil, err
	}
	if len(pos) < minArgs || len(pos) > maxArgs {
		fs.Usage()
		return Config{}, nil, errUsage
	}
	cfg, err := cf.load(lookupEnv)
	if err != nil {
		return Config{}, nil, err
	}
	return cfg, pos, nil
}

// parseInterspersed parses flags anywhere among args and returns the
// positional arguments; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) >= len(rest)+1 && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// etcdConfig returns how to reach the external cluster cfg names.
func etcdConfig(cfg Config) (etcdstore.Config, error) {
	ec := etcdstore.Config{
		Endpoints:      cfg.Etcd.Endpoints,
		DialTimeout:    time.Duration(cfg.Etcd.DialTimeout),
		RequestTimeout: time.Duration(cfg.Etcd.RequestTimeout),
		Username:       cfg.Etcd.Username,
		Password:       cfg.Etcd.Password,
	}
	https := false
	for _, e := range ec.Endpoints {
		https = https || strings.HasPrefix(e, "https://")
	}
	if !https && cfg.Etcd.CACert == "" && cfg.Etcd.Cert == "" {
		return ec, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.Etcd.CACert != "" {
		pem, err := os.ReadFile(cfg.Etcd.CACert)
		if err != nil {
			return ec, fmt.Errorf("etcd CA: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return ec, fmt.Errorf("etcd CA %s: no PEM certificate in it", cfg.Etcd.CACert)
		}
	}
	if cfg.Etcd.Cert != "" {
		c, err := tls.LoadX509KeyPair(cfg.Etcd.Cert, cfg.Etcd.Key)
		if err != nil {
			return ec, fmt.Errorf("etcd client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{c}
	}
	ec.TLS = t
	return ec, nil
}

// openSession connects to etcd: the external cluster, else a kvfs already
// serving the data dir (through its endpoint file), else an embedded etcd
// started on the data dir (stopped by session.close). Notes go to log.
func openSession(ctx context.Context, cfg Config, log *slog.Logger) (*session, error) {
	var (
		ec   etcdstore.Config
		stop = func() {}
		err  error
	)
	if len(cfg.Etcd.Endpoints) > 0 {
		if ec, err = etcdConfig(cfg); err != nil {
			return nil, err
		}
	} else {
		dir, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		info, rerr := etcdstore.ReadEndpointFile(dir)
		if rerr != nil {
			e, err := etcdstore.StartEmbedded(ctx, etcdstore.EmbedConfig{
				DataDir:                 dir,
				QuotaBackendBytes:       int64(cfg.Etcd.QuotaBackendBytes),
				AutoCompactionRetention: time.Duration(cfg.Etcd.AutoCompactionRetention),
			})
			if errors.Is(err, etcdstore.ErrDataDirInUse) {
				// A kvfs started between our look and our start.
				info, rerr = etcdstore.ReadEndpointFile(dir)
			}
			if rerr != nil {
				if err != nil {
					return nil, err
				}
				log.Debug("embedded etcd started", "endpoints", e.Endpoints(), "data", dir)
				ec, stop = e.Config(), func() { e.Close() }
				ec.InProcess = e // function calls, not gRPC over TCP
			}
		}
		if rerr == nil {
			log.Debug("using the etcd of the running kvfs", "data", dir, "pid", info.PID, "endpoints", info.Endpoints)
			ec = etcdstore.Config{Endpoints: info.Endpoints, Limits: info.Limits}
		}
		ec.DialTimeout, ec.RequestTimeout = time.Duration(cfg.Etcd.DialTimeout), time.Duration(cfg.Etcd.RequestTimeout)
	}
	s, err := etcdstore.Open(ctx, ec)
	if err != nil {
		stop()
		return nil, err
	}
	return &session{
		cfg: cfg, log: log, store: s, keys: etcdstore.NewKeys(cfg.Prefix),
		close: func() { s.Close(); stop() }, embedded: len(cfg.Etcd.Endpoints) == 0,
	}, nil
}

// pagerOptions returns the pager options cfg asks for.
// openPager opens a session and a pager on it, for a command that works
// without a mount. The caller closes both, the pager first (defer them in
// this order: session, then pager).
func openPager(ctx context.Context, cfg Config, stderr io.Writer) (*session, *pager.Pager, error) {
	sess, err := openSession(ctx, cfg, newLogger(cfg, stderr))
	if err != nil {
		return nil, nil, err
	}
	p, err := pager.New(sess.pagerOptions())
	if err != nil {
		sess.close()
		return nil, nil, err
	}
	return sess, p, nil
}

func (s *session) pagerOptions() pager.Options {
	return pager.Options{
		Store:           s.store,
		Keys:            s.keys,
		PageCacheBytes:  int64(s.cfg.Cache.PageBytes),
		BlobCacheBytes:  int64(s.cfg.Cache.BlobBytes),
		DirtyMemBytes:   int64(s.cfg.Cache.DirtyMemBytes),
		SpoolDir:        s.cfg.SpoolDir,
		PlainMaxBytes:   int64(s.cfg.Quota.PlainMaxBytes),
		QuotaFor:        s.cfg.QuotaFor,
		Logger:          s.log,
		History:         time.Duration(s.cfg.History.Retention),
		HistoryMaxBytes: int64(s.cfg.History.MaxBytes),
		// A commit whose answer etcd lost is resolved within one more
		// request timeout: a writer never waits past twice the timeout,
		// also without a quorum (then the commit fails, its outcome
		// unknown, and kvfs logs it).
		ResolveTimeout: time.Duration(s.cfg.Etcd.RequestTimeout),
	}
}

// owner returns this process's name in write leases.
func (s *session) owner(what string) string {
	if s.cfg.Owner != "" {
		return s.cfg.Owner
	}
	host, _ := os.Hostname()
	if what != "" {
		return fmt.Sprintf("%s/%d (kvfs %s)", host, os.Getpid(), what)
	}
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// fence returns a lease manager for a one-off command.
func (s *session) fence(what string) *fence.Manager {
	log := s.log
	if s.cfg.Log.Level != "debug" {
		// A one-off command's own lease comings and goings are noise.
		log = slog.New(slog.DiscardHandler)
	}
	return fence.NewManager(s.store, s.keys, fence.Options{Owner: s.owner(what), TTL: time.Duration(s.cfg.LeaseTTL), Logger: log})
}

// namespace returns a pager for path lookups, after moving the flat
// catalog of an older kvfs, if any, into the root directory
// (pager.Upgrade). session.close closes it.
func (s *session) namespace(ctx context.Context) (*pager.Pager, error) {
	if s.ns != nil {
		return s.ns, nil
	}
	p, err := pager.New(s.pagerOptions())
	if err != nil {
		return nil, err
	}
	if n, err := p.Upgrade(ctx); err != nil {
		p.Close()
		return nil, err
	} else if n > 0 {
		s.log.Info("moved the databases of the flat catalog into the root directory", "databases", n)
	}
	s.ns = p
	closeStore := s.close
	s.close = func() { p.Close(); closeStore() }
	return p, nil
}

// resolve returns the id of the database at path (its etcd keys and
// write lease are by id; see pager.Resolve).
func (s *session) resolve(ctx context.Context, path string) (string, error) {
	p, err := s.namespace(ctx)
	if err != nil {
		return "", err
	}
	_, _, e, err := p.Resolve(ctx, path)
	if err != nil {
		return "", err
	}
	if e.Dir {
		return "", fmt.Errorf("%s: %w", path, pager.ErrIsDir)
	}
	return e.ID, nil
}

// readHead reads the head of the database at path straight from etcd
// (without opening it in a pager, which would load its page index and
// watch it), and returns its id too.
func (s *session) readHead(ctx context.Context, path string) (string, pager.Head, int64, error) {
	id, err := s.resolve(ctx, path)
	if err != nil {
		return "", pager.Head{}, 0, err
	}
	kv, _, err := s.store.Get(ctx, s.keys.Head(id), 0)
	if errors.Is(err, etcdstore.ErrNotFound) {
		return "", pager.Head{}, 0, fmt.Errorf("%s: %w", path, pager.ErrNotFound)
	} else if err != nil {
		return "", pager.Head{}, 0, fmt.Errorf("read head of %s: %w", path, err)
	}
	h, err := parseHead(path, kv.Value)
	return id, h, kv.ModRevision, err
}

// parseHead decodes a stored head.
func parseHead(name string, v []byte) (pager.Head, error) {
	var h pager.Head
	if err := json.Unmarshal(v, &h); err != nil {
		return pager.Head{}, fmt.Errorf("head of %s: %v: %w", name, err, pager.ErrCorrupt)
	}
	return h, nil
}

// holder returns who holds name's write lease; held is false when nobody
// does.
func holder(ctx context.Context, fm *fence.Manager, name string) (fence.Info, bool, error) {
	info, err := fm.Holder(ctx, name)
	if errors.Is(err, fence.ErrNotHeld) {
		return fence.Info{}, false, nil
	}
	if err != nil {
		return fence.Info{}, false, err
	}
	return info, true, nil
}

// acquire takes the write lease of database id (at path name) for a
// one-off command, asking a mount that holds it to hand it over for up to
// wait.
func acquire(ctx context.Context, fm *fence.Manager, id, name string, wait time.Duration) (*fence.Lease, error) {
	l, err := fm.AcquireWithHandoff(ctx, id, wait)
	if err != nil {
		var held *fence.HeldError
		if errors.As(err, &held) {
			return nil, fmt.Errorf("%s: the write lease is held by %s (generation %d) and was not handed over within %v: %w",
				name, held.Owner, held.Generation, wait, err)
		}
		return nil, fmt.Errorf("%s: take the write lease: %w", name, err)
	}
	return l, nil
}

// humanBytes formats n bytes for people.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// dbHead is one database's path, id and head.
type dbHead struct {
	Name  string // path in the mount
	ID    string // etcd keys and write lease
	Head  pager.Head
	Usage int64 // bytes stored in etcd, as quota counts them
}

// listHeads returns every database under directory dir ("" for all) with
// its head, in path order: a range read per directory, then the heads in
// one round trip. A database removed meanwhile is left out.
func (s *session) listHeads(ctx context.Context, dir string) ([]dbHead, error) {
	p, err := s.namespace(ctx)
	if err != nil {
		return nil, err
	}
	dbs, err := p.Walk(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	keys := make([]string, 2*len(dbs))
	for i, d := range dbs {
		keys[i] = s.keys.Head(d.ID)
		keys[len(dbs)+i] = s.keys.Compaction(d.ID)
	}
	kvs, err := s.store.GetMany(ctx, keys, 0)
	if err != nil {
		return nil, fmt.Errorf("read heads: %w", err)
	}
	out := make([]dbHead, 0, len(dbs))
	for i, kv := range kvs[:len(dbs)] {
		if kv == nil {
			continue
		}
		h, err := parseHead(dbs[i].Path, kv.Value)
		if err != nil {
			return nil, err
		}
		var comp []byte
		if c := kvs[len(dbs)+i]; c != nil {
			comp = c.Value
		}
		usage, err := pager.Usage(h, comp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dbs[i].Path, err)
		}
		out = append(out, dbHead{dbs[i].Path, dbs[i].ID, h, usage})
	}
	return out, nil
}

// space returns etcd's quota (Config.Etcd.QuotaBackendBytes; 0 is etcd's
// default, 2 GiB) and the backend size it counts against it: the largest
// member's, history included. The mount's statfs reports these.
func (s *session) space(ctx context.Context) (quota, used int64, err error) {
	used, err = s.store.BackendSize(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("etcd status: %w", err)
	}
	quota = int64(s.cfg.Etcd.QuotaBackendBytes)
	if quota <= 0 {
		quota = 2 << 30
	}
	return quota, used, nil
}
