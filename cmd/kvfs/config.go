package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kvfs/kvfs/compaction"
	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/pager"
)

// defaultConfigPath is read when --config is not given and the file exists.
// Tests point it elsewhere.
var defaultConfigPath = "/etc/kvfs/kvfs.yaml"

// Config is kvfs's configuration. Values come, lowest precedence first, from
// DefaultConfig, the YAML file (--config, default /etc/kvfs/kvfs.yaml when
// present), KVFS_* environment variables and command-line flags.
// systemd/kvfs.yaml is the commented example; it must parse to DefaultConfig.
type Config struct {
	// Etcd says where the databases live: an external cluster, or the
	// embedded server on DataDir.
	Etcd EtcdConfig `yaml:"etcd"`
	// DataDir is the embedded etcd's data directory, used when Etcd.Endpoints
	// is empty. Commands run while a kvfs mount serves it reach that mount's
	// etcd through the endpoint file it wrote there.
	DataDir string `yaml:"data_dir"`
	// Prefix is the etcd key prefix of this kvfs; hosts sharing a prefix see
	// the same databases.
	Prefix string `yaml:"prefix"`
	// Mountpoint is where `kvfs mount` mounts when no MOUNTPOINT argument is
	// given; created if missing.
	Mountpoint string `yaml:"mountpoint"`
	// Owner names this host in write leases; "" means HOSTNAME/PID. It should
	// be unique among the hosts sharing the prefix.
	Owner string `yaml:"owner"`
	// SpoolDir holds journals and the pages of transactions too large for
	// Cache.DirtyMemBytes; "" means the system temporary directory.
	SpoolDir string `yaml:"spool_dir"`
	// LeaseTTL is the write lease TTL: how long a crashed writer blocks other
	// hosts (etcd's minimum is about 2s).
	LeaseTTL Duration `yaml:"lease_ttl"`
	// Cache bounds the memory of the mount.
	Cache CacheConfig `yaml:"cache"`
	// Quota limits the databases.
	Quota QuotaConfig `yaml:"quota"`
	// MetricsAddr is the HOST:PORT where the mount serves /metrics and
	// /healthz; "" serves nothing.
	MetricsAddr string `yaml:"metrics_addr"`
	// AllowOther lets users other than the one running kvfs use the mount
	// (needs user_allow_other in /etc/fuse.conf when not root).
	AllowOther bool `yaml:"allow_other"`
	// ForwardLocks forwards SQLite's file locks to kvfs (a FUSE round trip
	// per lock call, four per statement) instead of leaving them to the
	// kernel: point reads lose most of their speed, but a writer on a host
	// without the write lease asks for it at once instead of waiting for
	// the holder to be idle for IdleRelease.
	ForwardLocks bool `yaml:"forward_locks"`
	// JournalPassthrough hands journals' spool files to the kernel (FUSE
	// passthrough, Linux 6.9+ as root) so their writes skip kvfs; off,
	// every journal write is a FUSE request.
	JournalPassthrough bool `yaml:"journal_passthrough"`
	// IdleRelease is how long a host keeps a database's write lease after
	// its last write; meanwhile other hosts' writers get SQLITE_BUSY.
	IdleRelease Duration `yaml:"idle_release"`
	// ReadOnly refuses every write through the mount with EROFS.
	ReadOnly bool `yaml:"read_only"`
	// ShutdownTimeout bounds the unmount on SIGTERM/SIGINT: in-flight
	// operations get this long to finish before kvfs exits anyway.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Log configures kvfs's own log on standard error.
	Log LogConfig `yaml:"log"`
	// FUSEDebug logs every FUSE request (very verbose).
	FUSEDebug bool `yaml:"fuse_debug"`
	// Compaction folds the deltas of the databases this host writes into
	// shards, and bounds etcd's history.
	Compaction CompactionConfig `yaml:"compaction"`
	// History keeps past versions of every database readable (app.db@TXID,
	// kvfs log, restore, fork).
	History HistoryConfig `yaml:"history"`
}

// HistoryConfig sets how much of each database's past kvfs keeps
// (pager.Options.History).
type HistoryConfig struct {
	// Retention keeps every version that was current at some time within
	// this long; 0 keeps none (and drops what was kept).
	Retention Duration `yaml:"retention"`
	// MaxBytes bounds each database's history in etcd: past it, the next
	// compaction pass drops the versions before the current one (and logs
	// it). 0 is unbounded.
	MaxBytes ByteSize `yaml:"max_bytes"`
}

// CompactionConfig tunes background compaction (compaction.Options).
type CompactionConfig struct {
	// MaxDeltas folds a database once this many commits are not yet in
	// shards; 0 disables background compaction (kvfs compact still works).
	MaxDeltas int64 `yaml:"max_deltas"`
	// MaxDeltaBytes folds a database once its unfolded commits take this
	// many bytes.
	MaxDeltaBytes ByteSize `yaml:"max_delta_bytes"`
	// IdleAfter folds any unfolded commits of a database idle this long.
	IdleAfter Duration `yaml:"idle_after"`
	// ShardPages is the shard size of a database's first compaction.
	ShardPages int64 `yaml:"shard_pages"`
	// HistoryRetention keeps this much etcd history for long reads; 0
	// leaves etcd's history alone (compact it some other way).
	HistoryRetention Duration `yaml:"history_retention"`
	// Defrag defragments etcd when 64 MiB or more can be reclaimed. It
	// blocks a member while it runs: on by default only for the embedded
	// etcd.
	Defrag string `yaml:"defrag"`
}

// EtcdConfig says how to reach etcd.
type EtcdConfig struct {
	// Endpoints are the client URLs of an external etcd cluster; empty means
	// the embedded etcd on DataDir.
	Endpoints []string `yaml:"endpoints"`
	// CACert is a PEM file of the CAs that sign the etcd servers'
	// certificates; "" uses the system roots for https endpoints.
	CACert string `yaml:"cacert"`
	// Cert and Key are a PEM client certificate and its key, for etcd
	// clusters that authenticate clients by certificate.
	Cert string `yaml:"cert"`
	// Key is the private key of Cert.
	Key string `yaml:"key"`
	// Username and Password log in to an etcd cluster with authentication
	// enabled; "" means no login.
	Username string `yaml:"username"`
	// Password is Username's password (prefer KVFS_ETCD_PASSWORD to keeping
	// it in the file).
	Password string `yaml:"password"`
	// DialTimeout bounds the check that etcd answers at start.
	DialTimeout Duration `yaml:"dial_timeout"`
	// RequestTimeout bounds every etcd request; an operation that gets no
	// answer in time fails with EIO. A commit whose answer was lost gets
	// one more RequestTimeout to learn whether it landed; if etcd still
	// cannot say (no quorum), the commit fails with EIO and kvfs logs that
	// its outcome is unknown: it may yet land once etcd has a quorum again.
	RequestTimeout Duration `yaml:"request_timeout"`
	// QuotaBackendBytes is etcd's --quota-backend-bytes: the embedded server
	// raises NOSPACE at this size, and `kvfs status` reports headroom
	// against it (set it to the external cluster's value).
	QuotaBackendBytes ByteSize `yaml:"quota_backend_bytes"`
	// AutoCompactionRetention is how much etcd history the embedded server
	// keeps; 0 disables its automatic history compaction.
	AutoCompactionRetention Duration `yaml:"auto_compaction_retention"`
}

// CacheConfig sizes the mount's memory (pager.Options).
type CacheConfig struct {
	// PageBytes bounds the cache of decoded pages.
	PageBytes ByteSize `yaml:"page_bytes"`
	// BlobBytes bounds the cache of LTX blobs fetched from etcd.
	BlobBytes ByteSize `yaml:"blob_bytes"`
	// DirtyMemBytes is how much of one write transaction stays in memory
	// before its pages spill to SpoolDir.
	DirtyMemBytes ByteSize `yaml:"dirty_mem_bytes"`
}

// QuotaConfig holds the default quota and per-database overrides.
type QuotaConfig struct {
	// MaxBytes limits the bytes each database stores in etcd (its deltas,
	// page index and shards); 0 is unlimited. A write past it fails with
	// ENOSPC (SQLITE_FULL).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxPages limits each database's size in pages; 0 is unlimited.
	MaxPages int64 `yaml:"max_pages"`
	// PlainMaxBytes limits the size of a plain file (one that is not a
	// SQLite database); a write past it fails with EFBIG. Default 64 MiB.
	PlainMaxBytes ByteSize `yaml:"plain_max_bytes"`
	// Databases overrides the quota of the named databases, by their paths
	// in the mount (app.db, tenant1/app.db). An entry replaces the default
	// entirely: a field it does not set is unlimited.
	Databases map[string]QuotaLimits `yaml:"databases"`
}

// QuotaLimits is one database's quota.
type QuotaLimits struct {
	// MaxBytes limits the bytes the database stores in etcd; 0 is unlimited.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxPages limits the database's size in pages; 0 is unlimited.
	MaxPages int64 `yaml:"max_pages"`
}

// LogConfig configures kvfs's log.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text (key=value) or json.
	Format string `yaml:"format"`
}

// DefaultConfig returns the configuration used when nothing is configured.
func DefaultConfig() Config {
	return Config{
		Etcd: EtcdConfig{
			DialTimeout:             Duration(5 * time.Second),
			RequestTimeout:          Duration(5 * time.Second),
			QuotaBackendBytes:       2 << 30,
			AutoCompactionRetention: Duration(time.Hour),
		},
		DataDir:            "/var/lib/kvfs",
		Prefix:             etcdstore.DefaultPrefix,
		Mountpoint:         "/mnt/kvfs",
		LeaseTTL:           Duration(10 * time.Second),
		Cache:              CacheConfig{PageBytes: 64 << 20, BlobBytes: 64 << 20, DirtyMemBytes: 64 << 20},
		Quota:              QuotaConfig{PlainMaxBytes: pager.DefaultPlainMaxBytes},
		ShutdownTimeout:    Duration(30 * time.Second),
		IdleRelease:        Duration(250 * time.Millisecond),
		JournalPassthrough: true,
		Log:                LogConfig{Level: "info", Format: "text"},
		Compaction: CompactionConfig{
			MaxDeltas: 64, MaxDeltaBytes: 32 << 20, IdleAfter: Duration(10 * time.Second), ShardPages: 1024,
			HistoryRetention: Duration(10 * time.Minute), Defrag: "auto",
		},
		History: HistoryConfig{Retention: Duration(24 * time.Hour), MaxBytes: 256 << 20},
	}
}

// ParseConfig reads a YAML configuration on top of DefaultConfig. A key
// that is not a setting is an error naming it.
func ParseConfig(r io.Reader) (Config, error) {
	cfg := DefaultConfig()
	var doc yaml.Node
	if err := yaml.NewDecoder(r).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, nil // empty file
		}
		return Config{}, err
	}
	if len(doc.Content) == 0 {
		return cfg, nil
	}
	if err := checkKeys(doc.Content[0], reflect.TypeOf(cfg), ""); err != nil {
		return Config{}, err
	}
	if err := doc.Decode(&cfg); err != nil {
		return Config{}, err
	}
	if len(cfg.Etcd.Endpoints) == 0 {
		cfg.Etcd.Endpoints = nil
	}
	if len(cfg.Quota.Databases) == 0 {
		cfg.Quota.Databases = nil
	}
	return cfg, cfg.Validate()
}

// checkKeys reports the first mapping key of n that names no field of t.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode && !isLeaf(t):
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			if tag := yamlName(t.Field(i)); tag != "" {
				fields[tag] = t.Field(i).Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("line %d: unknown key %q", n.Content[i].Line, path+k)
			}
			if err := checkKeys(n.Content[i+1], ft, path+k+"."); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKeys(n.Content[i+1], t.Elem(), path+n.Content[i].Value+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func isLeaf(t reflect.Type) bool {
	return t == reflect.TypeOf(Duration(0)) || t == reflect.TypeOf(ByteSize(0))
}

// Validate checks values that no type can.
func (c Config) Validate() error {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format %q: want text or json", c.Log.Format)
	}
	if (c.Etcd.Cert == "") != (c.Etcd.Key == "") {
		return errors.New("etcd.cert and etcd.key go together")
	}
	if len(c.Etcd.Endpoints) == 0 && c.DataDir == "" {
		return errors.New("need etcd.endpoints or data_dir")
	}
	for path := range c.Quota.Databases {
		for _, name := range strings.Split(path, "/") {
			if err := etcdstore.ValidateName(name); err != nil {
				return fmt.Errorf("quota.databases: %q: %w", path, err)
			}
		}
	}
	switch c.Compaction.Defrag {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("compaction.defrag %q: want auto, always or never", c.Compaction.Defrag)
	}
	if c.History.Retention < 0 {
		return fmt.Errorf("history.retention %s: want 0 (off) or more", c.History.Retention)
	}
	if sp := c.Compaction.ShardPages; sp < 1 || sp > 1<<20 {
		return fmt.Errorf("compaction.shard_pages %d: want 1 to 1048576", sp)
	}
	return nil
}

// compactionOptions returns the worker options; embedded says whether the
// store is kvfs's embedded etcd (defragmented by default).
func (c Config) compactionOptions(embedded bool) compaction.Options {
	cc := c.Compaction
	return compaction.Options{
		MaxDeltas: int(cc.MaxDeltas), MaxDeltaBytes: int64(cc.MaxDeltaBytes), IdleAfter: time.Duration(cc.IdleAfter), ShardPages: uint32(cc.ShardPages),
		HistoryRetention:  time.Duration(cc.HistoryRetention),
		Defrag:            cc.Defrag == "always" || (cc.Defrag == "auto" && embedded),
		QuotaBackendBytes: int64(c.Etcd.QuotaBackendBytes),
	}
}

// QuotaFor returns database db's quota (pager.Options.QuotaFor).
func (c Config) QuotaFor(db string) pager.Quota {
	if q, ok := c.Quota.Databases[db]; ok {
		return pager.Quota{MaxBytes: int64(q.MaxBytes), MaxPages: q.MaxPages}
	}
	return pager.Quota{MaxBytes: int64(c.Quota.MaxBytes), MaxPages: c.Quota.MaxPages}
}

// Duration is a time.Duration written as "10s", "1h30m".
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// Set parses s as a time.Duration.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if err := d.Set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize is a size in bytes, written as a number with an optional unit:
// 512, 64KiB, 64MiB, 2GiB, 1GB (KiB/MiB/GiB/TiB are powers of 1024,
// KB/MB/GB/TB of 1000).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func (b ByteSize) String() string {
	for _, u := range byteUnits[:4] {
		if v := int64(b); v != 0 && v%u.mult == 0 && (v/u.mult < 1024 || u.suffix == "TiB") {
			return strconv.FormatInt(v/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Set parses a size with an optional unit.
func (b *ByteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return fmt.Errorf("bad size %q: want a number of bytes with an optional unit such as 64MiB", s)
	}
	*b = ByteSize(v * mult)
	return nil
}

// UnmarshalYAML reads a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if err := b.Set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// MarshalYAML writes the size with its largest exact unit.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// setting is one configuration value reachable from the environment and,
// when flag is set, from a command-line flag.
type setting struct {
	key   string // YAML path, e.g. "etcd.cacert"; env is KVFS_ETCD_CACERT
	flag  string // command-line flag, "" for none
	usage string
	field func(*Config) any // pointer to the field
	mount bool              // the flag is only offered by kvfs mount
}

// env returns the environment variable of s.
func (s setting) env() string {
	return "KVFS_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(s.key))
}

// settings lists every scalar setting. TestSettingsCoverConfig checks that
// it covers every field of Config but the per-database quota map.
var settings = []setting{
	{"etcd.endpoints", "etcd", "etcd client URLs, comma-separated (default: the embedded etcd of --data-dir)", func(c *Config) any { return &c.Etcd.Endpoints }, false},
	{"etcd.cacert", "etcd-cacert", "PEM file of the CAs of the etcd servers", func(c *Config) any { return &c.Etcd.CACert }, false},
	{"etcd.cert", "etcd-cert", "PEM client certificate for etcd", func(c *Config) any { return &c.Etcd.Cert }, false},
	{"etcd.key", "etcd-key", "PEM key of --etcd-cert", func(c *Config) any { return &c.Etcd.Key }, false},
	{"etcd.username", "etcd-user", "etcd user name (authentication)", func(c *Config) any { return &c.Etcd.Username }, false},
	{"etcd.password", "etcd-password", "etcd password (prefer KVFS_ETCD_PASSWORD)", func(c *Config) any { return &c.Etcd.Password }, false},
	{"etcd.dial_timeout", "", "", func(c *Config) any { return &c.Etcd.DialTimeout }, false},
	{"etcd.request_timeout", "etcd-request-timeout", "deadline of every etcd request", func(c *Config) any { return &c.Etcd.RequestTimeout }, false},
	{"etcd.quota_backend_bytes", "", "", func(c *Config) any { return &c.Etcd.QuotaBackendBytes }, false},
	{"etcd.auto_compaction_retention", "", "", func(c *Config) any { return &c.Etcd.AutoCompactionRetention }, false},
	{"data_dir", "data-dir", "data directory of the embedded etcd, used when --etcd is not given", func(c *Config) any { return &c.DataDir }, false},
	{"prefix", "prefix", "etcd key prefix of this kvfs", func(c *Config) any { return &c.Prefix }, false},
	{"mountpoint", "", "", func(c *Config) any { return &c.Mountpoint }, true},
	{"owner", "owner", "this host's name in write leases (default HOSTNAME/PID)", func(c *Config) any { return &c.Owner }, false},
	{"spool_dir", "spool-dir", "directory for journals and large transactions (default: the system temp dir)", func(c *Config) any { return &c.SpoolDir }, false},
	{"lease_ttl", "lease-ttl", "write lease TTL (etcd's minimum is about 2s)", func(c *Config) any { return &c.LeaseTTL }, false},
	{"cache.page_bytes", "page-cache", "size of the decoded-page cache", func(c *Config) any { return &c.Cache.PageBytes }, true},
	{"cache.blob_bytes", "blob-cache", "size of the LTX blob cache", func(c *Config) any { return &c.Cache.BlobBytes }, true},
	{"cache.dirty_mem_bytes", "dirty-mem", "memory for one write transaction before it spills to --spool-dir", func(c *Config) any { return &c.Cache.DirtyMemBytes }, false},
	{"quota.max_bytes", "quota-bytes", "default quota: bytes each database stores in etcd (0 unlimited)", func(c *Config) any { return &c.Quota.MaxBytes }, false},
	{"quota.max_pages", "quota-pages", "default quota: pages of each database (0 unlimited)", func(c *Config) any { return &c.Quota.MaxPages }, false},
	{"quota.plain_max_bytes", "plain-max-bytes", "largest plain (non-SQLite) file; a write past it fails with EFBIG", func(c *Config) any { return &c.Quota.PlainMaxBytes }, false},
	{"metrics_addr", "metrics-addr", "HOST:PORT serving /metrics and /healthz (\"\" disables)", func(c *Config) any { return &c.MetricsAddr }, true},
	{"allow_other", "allow-other", "let other users access the mount", func(c *Config) any { return &c.AllowOther }, true},
	{"forward_locks", "forward-locks", "forward file locks to kvfs (slower reads; see kvfs.yaml)", func(c *Config) any { return &c.ForwardLocks }, true},
	{"journal_passthrough", "journal-passthrough", "let the kernel write journals without kvfs (FUSE passthrough, where available)", func(c *Config) any { return &c.JournalPassthrough }, true},
	{"idle_release", "idle-release", "keep a database's write lease this long after the last write", func(c *Config) any { return &c.IdleRelease }, true},
	{"read_only", "read-only", "refuse every write through the mount", func(c *Config) any { return &c.ReadOnly }, true},
	{"shutdown_timeout", "shutdown-timeout", "how long SIGTERM waits for in-flight operations before exiting anyway", func(c *Config) any { return &c.ShutdownTimeout }, true},
	{"log.level", "log-level", "log level: debug, info, warn, error", func(c *Config) any { return &c.Log.Level }, false},
	{"log.format", "log-format", "log format: text or json", func(c *Config) any { return &c.Log.Format }, false},
	{"fuse_debug", "debug", "log every FUSE request", func(c *Config) any { return &c.FUSEDebug }, true},
	{"compaction.max_deltas", "", "", func(c *Config) any { return &c.Compaction.MaxDeltas }, true},
	{"compaction.max_delta_bytes", "", "", func(c *Config) any { return &c.Compaction.MaxDeltaBytes }, true},
	{"compaction.idle_after", "", "", func(c *Config) any { return &c.Compaction.IdleAfter }, true},
	{"compaction.shard_pages", "", "", func(c *Config) any { return &c.Compaction.ShardPages }, false},
	{"compaction.history_retention", "", "", func(c *Config) any { return &c.Compaction.HistoryRetention }, true},
	{"compaction.defrag", "", "", func(c *Config) any { return &c.Compaction.Defrag }, true},
	{"history.retention", "history", "keep every version of every database current within this long (0: no history)", func(c *Config) any { return &c.History.Retention }, false},
	{"history.max_bytes", "history-max-bytes", "bound on each database's history in etcd (0: none)", func(c *Config) any { return &c.History.MaxBytes }, false},
}

// setField parses s into the field p points to.
func setField(p any, s string) error {
	switch p := p.(type) {
	case *string:
		*p = s
	case *bool:
		v, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("bad boolean %q", s)
		}
		*p = v
	case *int64:
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("bad number %q", s)
		}
		*p = v
	case *[]string:
		*p = nil
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				*p = append(*p, e)
			}
		}
	case *Duration:
		return p.Set(s)
	case *ByteSize:
		return p.Set(s)
	default:
		panic(fmt.Sprintf("setField: unsupported %T", p))
	}
	return nil
}

// formatField returns the field p points to as a flag default.
func formatField(p any) string {
	switch p := p.(type) {
	case *string:
		return *p
	case *[]string:
		return strings.Join(*p, ",")
	default:
		return fmt.Sprint(reflect.ValueOf(p).Elem().Interface())
	}
}

// configFlags are the configuration flags of one command: --config and the
// settings, applied over the file and the environment by load.
type configFlags struct {
	path string
	set  map[string]string // flag name → value given
}

type flagValue struct {
	cf     *configFlags
	name   string
	def    string
	isBool bool
}

func (v *flagValue) String() string {
	if v == nil || v.cf == nil {
		return ""
	}
	if s, ok := v.cf.set[v.name]; ok {
		return s
	}
	return v.def
}
func (v *flagValue) Set(s string) error {
	var probe Config
	for _, st := range settings {
		if st.flag == v.name {
			if err := setField(st.field(&probe), s); err != nil {
				return err
			}
		}
	}
	v.cf.set[v.name] = s
	return nil
}
func (v *flagValue) IsBoolFlag() bool { return v.isBool }

// registerConfigFlags adds --config and the settings' flags to fs: those
// every command shares (finding the store, logging, leases) and, with
// mount, the mount's own.
func registerConfigFlags(fs *flag.FlagSet, mount bool) *configFlags {
	cf := &configFlags{set: map[string]string{}}
	fs.StringVar(&cf.path, "config", "", "YAML configuration file (default "+defaultConfigPath+" when present)")
	def := DefaultConfig()
	for _, st := range settings {
		if st.flag == "" || (st.mount && !mount) {
			continue
		}
		p := st.field(&def)
		_, isBool := p.(*bool)
		def := formatField(p)
		if def == "false" || def == "0" {
			def = "" // printed without "(default ...)"
		}
		fs.Var(&flagValue{cf: cf, name: st.flag, def: def, isBool: isBool}, st.flag, st.usage+" ["+st.env()+"]")
	}
	return cf
}

// load returns the configuration: defaults, then the file, then the
// environment (lookup, os.LookupEnv in production), then the flags given.
func (cf *configFlags) load(lookup func(string) (string, bool)) (Config, error) {
	cfg := DefaultConfig()
	path := cf.path
	if path == "" {
		if v, ok := lookup("KVFS_CONFIG"); ok && v != "" {
			path = v
		} else if _, err := os.Stat(defaultConfigPath); err == nil {
			path = defaultConfigPath
		}
	}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		cfg, err = ParseConfig(f)
		f.Close()
		if err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	for _, st := range settings {
		if v, ok := lookup(st.env()); ok {
			if err := setField(st.field(&cfg), v); err != nil {
				return Config{}, fmt.Errorf("environment %s: %w", st.env(), err)
			}
		}
	}
	names := make([]string, 0, len(cf.set))
	for n := range cf.set {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, st := range settings {
			if st.flag == n {
				if err := setField(st.field(&cfg), cf.set[n]); err != nil {
					return Config{}, fmt.Errorf("flag --%s: %w", n, err)
				}
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}
