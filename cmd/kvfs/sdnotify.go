package main

import (
	"net"
	"os"
)

// sdNotify sends state (e.g. "READY=1") to systemd's notification socket
// named by $NOTIFY_SOCKET, as sd_notify(3) does. Without NOTIFY_SOCKET (not
// run by systemd with Type=notify) it does nothing and returns nil.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
