// Command etcd-server is a stock etcd server built from the etcd version that
// go.mod pins (go.etcd.io/etcd/server/v3), so integration tests run against
// exactly the server the embedded store links. `go install` of the etcd server
// module itself fails because of its replace directives; this wrapper is the
// supported way to get the binary:
//
//	go build -o bin/etcd-server ./tests/etcd-server
//
// It accepts every etcd flag (see `etcd-server --help`). Package
// github.com/kvfs/kvfs/etcdstore/etcdtest runs it as separate processes.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
