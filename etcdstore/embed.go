package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Files kept in an embedded server's data directory.
const (
	// EndpointFile holds the JSON EndpointInfo of the running server.
	EndpointFile = "kvfs-endpoint.json"
	// lockFile is flock'ed by the process running the server.
	lockFile = "kvfs.lock"
	// etcdDir holds etcd's own member directory.
	etcdDir = "etcd"
	// etcdLog receives the server's logs.
	etcdLog = "etcd.log"
)

// EmbedConfig configures an in-process etcd server.
type EmbedConfig struct {
	// DataDir holds etcd's data, its log, the lock and the endpoint file.
	// Required; created if missing.
	DataDir string
	// ClientURL is where clients connect, "http://127.0.0.1:PORT"; "" picks
	// a free loopback port. (etcd accepts unix sockets only as relative
	// "unix://name:port" paths, so kvfs does not offer them.)
	ClientURL string
	// Limits are the request limits the server enforces; zero fields take
	// etcd's defaults (DefaultLimits).
	Limits Limits
	// QuotaBackendBytes is the backend size at which etcd raises NOSPACE;
	// 0 takes etcd's default (2 GiB).
	QuotaBackendBytes int64
	// AutoCompactionRetention keeps this much etcd history (periodic mode);
	// 0 disables automatic history compaction (kvfs's compactor does it).
	AutoCompactionRetention time.Duration
	// SnapshotCount is how many raft entries the server applies between
	// its snapshots (default DefaultSnapshotCount). At start etcd reads
	// back, and holds in memory, every entry since its last snapshot;
	// kvfs's entries can be 1.5 MiB (a staged chunk), so etcd's own
	// default of 10,000 made a mount after a 1 GiB import read and hold
	// gigabytes for seconds.
	SnapshotCount uint64
	// UnsafeNoFsync disables fsync. Only for tests that do not test
	// durability: a crash can lose acknowledged commits.
	UnsafeNoFsync bool
	// LogLevel is etcd's log level (default "error"); logs go to etcd.log in
	// DataDir.
	LogLevel string
	// StartTimeout bounds the wait for the server to be ready (default 60 s).
	StartTimeout time.Duration
}

// DefaultSnapshotCount is EmbedConfig.SnapshotCount's default: at most
// about 150 MiB of entries to read back at start (100 entries of at most
// a 1.5 MiB request), for one extra backend commit per 100 commits.
const DefaultSnapshotCount = 100

// EndpointInfo is what a running embedded server publishes in EndpointFile.
type EndpointInfo struct {
	Endpoints []string `json:"endpoints"`
	PID       int      `json:"pid"`
	Limits    Limits   `json:"limits"`
}

// Embedded is a running in-process etcd server.
type Embedded struct {
	etcd   *embed.Etcd
	info   EndpointInfo
	dir    string
	lock   *os.File
	closed bool
}

// StartEmbedded starts an etcd server on cfg.DataDir and waits until it
// serves. It returns ErrDataDirInUse when another process already runs one
// on that directory.
func StartEmbedded(ctx context.Context, cfg EmbedConfig) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("start embedded etcd: no data directory")
	}
	def := DefaultLimits()
	if cfg.Limits.MaxRequestBytes <= 0 {
		cfg.Limits.MaxRequestBytes = def.MaxRequestBytes
	}
	if cfg.Limits.MaxTxnOps <= 0 {
		cfg.Limits.MaxTxnOps = def.MaxTxnOps
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "error"
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	// A stale endpoint file from a crashed run must not mislead anyone.
	_ = os.Remove(filepath.Join(cfg.DataDir, EndpointFile))

	var e *embed.Etcd
	for attempt := 0; ; attempt++ {
		e, err = startEtcd(cfg)
		if err == nil || attempt == 2 || !isAddrInUse(err) {
			break
		}
	}
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		lock.Close()
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.DataDir, err)
	case <-time.After(cfg.StartTimeout):
		e.Server.Stop()
		e.Close()
		lock.Close()
		return nil, fmt.Errorf("start embedded etcd in %s: not ready within %s (see %s)",
			cfg.DataDir, cfg.StartTimeout, filepath.Join(cfg.DataDir, etcdLog))
	case <-ctx.Done():
		e.Close()
		lock.Close()
		return nil, fmt.Errorf("start embedded etcd: %w", ctx.Err())
	}
	em := &Embedded{etcd: e, dir: cfg.DataDir, lock: lock}
	em.info = EndpointInfo{Endpoints: clientEndpoints(e), PID: os.Getpid(), Limits: cfg.Limits}
	if err := em.writeEndpointFile(); err != nil {
		em.Close()
		return nil, err
	}
	return em, nil
}

func startEtcd(cfg EmbedConfig) (*embed.Etcd, error) {
	ec := embed.NewConfig()
	ec.Name = "kvfs"
	ec.Dir = filepath.Join(cfg.DataDir, etcdDir)
	ec.LogLevel = cfg.LogLevel
	ec.LogOutputs = []string{filepath.Join(cfg.DataDir, etcdLog)}
	ec.MaxRequestBytes = uint(cfg.Limits.MaxRequestBytes)
	ec.MaxTxnOps = uint(cfg.Limits.MaxTxnOps)
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	// embed.NewConfig leaves this at 0 (only etcd's binary sets it), which
	// makes every request "expensive": etcd formats a warning for each
	// before answering, about 30 us of CPU, even though the log level
	// drops it.
	ec.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	ec.SnapshotCount = cfg.SnapshotCount
	if ec.SnapshotCount == 0 {
		ec.SnapshotCount = DefaultSnapshotCount
	}
	// The entries kept after a snapshot for a slow follower: a single
	// member has none.
	ec.SnapshotCatchUpEntries = ec.SnapshotCount
	if cfg.AutoCompactionRetention > 0 {
		ec.AutoCompactionMode = embed.CompactorModePeriodic
		ec.AutoCompactionRetention = cfg.AutoCompactionRetention.String()
	}
	clientURL := cfg.ClientURL
	if clientURL == "" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		clientURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	cu, err := url.Parse(clientURL)
	if err != nil {
		return nil, fmt.Errorf("client url %q: %w", clientURL, err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	ec.ListenClientUrls = []url.URL{*cu}
	ec.AdvertiseClientUrls = []url.URL{*cu}
	ec.ListenPeerUrls = []url.URL{*pu}
	ec.AdvertisePeerUrls = []url.URL{*pu}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	// A restarted member keeps its cluster; only the peer port may differ,
	// which a single-member cluster does not care about.
	if _, err := os.Stat(filepath.Join(ec.Dir, "member")); err == nil {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	return embed.StartEtcd(ec)
}

func clientEndpoints(e *embed.Etcd) []string {
	var out []string
	for _, l := range e.Clients {
		out = append(out, "http://"+l.Addr().String())
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// lockDataDir takes an exclusive flock on the data directory's lock file.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("start embedded etcd in %s: %w (a kvfs process is running there; use its endpoint from %s)",
				dir, ErrDataDirInUse, EndpointFile)
		}
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return f, nil
}

func (e *Embedded) writeEndpointFile() error {
	b, err := json.MarshalIndent(e.info, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(e.dir, EndpointFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write endpoint file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write endpoint file: %w", err)
	}
	return nil
}

// Endpoints returns the client URLs of the server.
func (e *Embedded) Endpoints() []string { return e.info.Endpoints }

// Limits returns the limits the server enforces.
func (e *Embedded) Limits() Limits { return e.info.Limits }

// Config returns a Config that reaches this server.
func (e *Embedded) Config() Config {
	return Config{Endpoints: e.Endpoints(), Limits: e.Limits()}
}

// Err delivers a fatal server error.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops the server, removes the endpoint file and releases the data
// directory. It is safe to call more than once.
func (e *Embedded) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	_ = os.Remove(filepath.Join(e.dir, EndpointFile))
	e.etcd.Close()
	return e.lock.Close()
}

// ReadEndpointFile returns how to reach the embedded server running on
// dataDir, or ErrNotRunning when none is (no file, or its process is gone).
func ReadEndpointFile(dataDir string) (EndpointInfo, error) {
	var info EndpointInfo
	b, err := os.ReadFile(filepath.Join(dataDir, EndpointFile))
	if errors.Is(err, os.ErrNotExist) {
		return info, fmt.Errorf("read endpoint file in %s: %w", dataDir, ErrNotRunning)
	} else if err != nil {
		return info, fmt.Errorf("read endpoint file: %w", err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("read endpoint file %s: %w", filepath.Join(dataDir, EndpointFile), err)
	}
	if info.PID <= 0 || syscall.Kill(info.PID, 0) == syscall.ESRCH || len(info.Endpoints) == 0 {
		return info, fmt.Errorf("endpoint file in %s names process %d: %w", dataDir, info.PID, ErrNotRunning)
	}
	return info, nil
}
