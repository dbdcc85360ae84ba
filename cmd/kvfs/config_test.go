package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvfs/kvfs/pager"
)

// loadArgs parses args as kvfs mount would and returns the configuration.
func loadArgs(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cf := registerConfigFlags(fs, true)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cf.load(os.LookupEnv)
}

func TestDefaultConfig(t *testing.T) {
	def := DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadArgs(t)
	if err != nil || !reflect.DeepEqual(cfg, def) {
		t.Fatalf("nothing configured: %+v %v", cfg, err)
	}
	// The shipped example documents the defaults exactly.
	f, err := os.Open("../../systemd/kvfs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ex, err := ParseConfig(f)
	if err != nil {
		t.Fatalf("systemd/kvfs.yaml: %v", err)
	}
	if !reflect.DeepEqual(ex, def) {
		t.Fatalf("systemd/kvfs.yaml differs from DefaultConfig:\n%+v\n%+v", ex, def)
	}
	if cfg, err := ParseConfig(strings.NewReader("")); err != nil || !reflect.DeepEqual(cfg, def) {
		t.Fatalf("empty file: %+v %v", cfg, err)
	}
}

func TestConfigFile(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(`
etcd:
  endpoints: [https://e1:2379, https://e2:2379]
  cacert: /etc/kvfs/ca.pem
  username: kvfs
  request_timeout: 2s
  quota_backend_bytes: 8GiB
prefix: /prod/
lease_ttl: 4s
cache: {page_bytes: 128MiB, blob_bytes: 1GB, dirty_mem_bytes: 4096}
quota:
  max_bytes: 1GiB
  databases:
    big.db: {max_bytes: 8GiB, max_pages: 1000}
    tiny.db: {max_pages: 10}
    tenant1/app.db: {max_pages: 20}
metrics_addr: 127.0.0.1:9100
read_only: true
log: {level: debug, format: json}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Etcd.Endpoints = []string{"https://e1:2379", "https://e2:2379"}
	want.Etcd.CACert, want.Etcd.Username = "/etc/kvfs/ca.pem", "kvfs"
	want.Etcd.RequestTimeout, want.Etcd.QuotaBackendBytes = Duration(2*time.Second), 8<<30
	want.Prefix, want.LeaseTTL = "/prod/", Duration(4*time.Second)
	want.Cache = CacheConfig{PageBytes: 128 << 20, BlobBytes: 1e9, DirtyMemBytes: 4096}
	want.Quota = QuotaConfig{MaxBytes: 1 << 30, PlainMaxBytes: pager.DefaultPlainMaxBytes, Databases: map[string]QuotaLimits{
		"big.db": {MaxBytes: 8 << 30, MaxPages: 1000}, "tiny.db": {MaxPages: 10}, "tenant1/app.db": {MaxPages: 20}}}
	want.MetricsAddr, want.ReadOnly, want.Log = "127.0.0.1:9100", true, LogConfig{"debug", "json"}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("parsed:\n%+v\nwant:\n%+v", cfg, want)
	}
	for db, q := range map[string]pager.Quota{
		"big.db": {MaxBytes: 8 << 30, MaxPages: 1000}, "tiny.db": {MaxPages: 10}, "other.db": {MaxBytes: 1 << 30},
		"tenant1/app.db": {MaxPages: 20},
	} {
		if got := cfg.QuotaFor(db); got != q {
			t.Errorf("QuotaFor(%s) = %+v, want %+v", db, got, q)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"bogus: 1\n", `line 1: unknown key "bogus"`},
		{"etcd:\n  endpoint: [x]\n", `line 2: unknown key "etcd.endpoint"`},
		{"quota:\n  databases:\n    a.db: {max_byte: 1}\n", `line 3: unknown key "quota.databases.a.db.max_byte"`},
		{"lease_ttl: 10\n", `line 1: time: missing unit in duration "10"`},
		{"cache: {page_bytes: lots}\n", `bad size "lots"`},
		{"log: {level: loud}\n", `log.level "loud"`},
		{"quota: {databases: {a//b: {max_pages: 1}}}\n", `invalid database name`},
		{"quota: {databases: {/a: {max_pages: 1}}}\n", `invalid database name`},
		{"etcd: {cert: c.pem}\n", "etcd.cert and etcd.key go together"},
	} {
		if _, err := ParseConfig(strings.NewReader(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestConfigPrecedence: defaults < file < KVFS_* environment < flags.
func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kvfs.yaml")
	os.WriteFile(path, []byte("prefix: /file/\nlease_ttl: 3s\nspool_dir: /file-spool\nquota: {max_bytes: 1MiB}\n"), 0o644)
	t.Setenv("KVFS_PREFIX", "/env/")
	t.Setenv("KVFS_LEASE_TTL", "5s")
	t.Setenv("KVFS_ETCD_ENDPOINTS", "http://a:2379, http://b:2379")
	t.Setenv("KVFS_READ_ONLY", "true")
	t.Setenv("KVFS_ETCD_PASSWORD", "secret")
	cfg, err := loadArgs(t, "--config", path, "--lease-ttl", "7s", "--allow-other")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Prefix != "/env/" || cfg.LeaseTTL != Duration(7*time.Second) || cfg.SpoolDir != "/file-spool" ||
		cfg.Quota.MaxBytes != 1<<20 || !cfg.ReadOnly || !cfg.AllowOther || cfg.Etcd.Password != "secret" ||
		!reflect.DeepEqual(cfg.Etcd.Endpoints, []string{"http://a:2379", "http://b:2379"}) || cfg.DataDir != "/var/lib/kvfs" {
		t.Fatalf("precedence: %+v", cfg)
	}
	// KVFS_CONFIG names the file when --config is not given.
	t.Setenv("KVFS_CONFIG", path)
	os.Unsetenv("KVFS_PREFIX")
	if cfg, err := loadArgs(t); err != nil || cfg.Prefix != "/file/" {
		t.Fatalf("KVFS_CONFIG: %+v %v", cfg, err)
	}
	t.Setenv("KVFS_LEASE_TTL", "soon")
	if _, err := loadArgs(t); err == nil || !strings.Contains(err.Error(), "KVFS_LEASE_TTL") {
		t.Fatalf("bad environment value: %v", err)
	}
	if _, err := loadArgs(t, "--config", filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing --config file accepted")
	}
}

// TestSettingsCoverConfig checks every scalar field of Config is reachable
// from the environment, with a distinct variable.
func TestSettingsCoverConfig(t *testing.T) {
	covered := map[string]bool{}
	var cfg Config
	for _, s := range settings {
		covered[s.key] = true
	}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key := path + yamlName(f)
			if f.Type.Kind() == reflect.Struct && !isLeaf(f.Type) {
				walk(f.Type, key+".")
				continue
			}
			if f.Type.Kind() == reflect.Map {
				continue // per-database quotas: file only
			}
			if !covered[key] {
				t.Errorf("setting %s has no entry in settings", key)
			}
			if f.Tag.Get("yaml") == "" {
				t.Errorf("field %s has no yaml tag", key)
			}
		}
	}
	walk(reflect.TypeOf(cfg), "")
	envs := map[string]bool{}
	for _, s := range settings {
		if envs[s.env()] {
			t.Errorf("duplicate environment variable %s", s.env())
		}
		envs[s.env()] = true
		// The field a setting points to is the one its key names.
		var c Config
		if err := setField(s.field(&c), sampleValue(s.field(&c))); err != nil {
			t.Errorf("%s: %v", s.key, err)
		}
	}
}

func sampleValue(p any) string {
	switch p.(type) {
	case *bool:
		return "true"
	case *int64, *ByteSize:
		return "1"
	case *Duration:
		return "1s"
	}
	return "x"
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"0": 0, "512": 512, "64KiB": 64 << 10, "64 MiB": 64 << 20, "2GiB": 2 << 30, "1GB": 1e9, "3B": 3} {
		var b ByteSize
		if err := b.Set(in); err != nil || b != want {
			t.Errorf("%q: %d %v", in, b, err)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "1XB"} {
		var b ByteSize
		if err := b.Set(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Errorf("String: %s", s)
	}
}
