// Package tests holds kvfs's end-to-end tests: a real FUSE mount served by
// the real pager on a real etcd, driven by the stock sqlite3 CLI and by
// go-sqlite3. They need root and /dev/fuse; they skip with a message
// otherwise.
package tests
