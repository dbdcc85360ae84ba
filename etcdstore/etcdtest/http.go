package etcdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// healthTimeout bounds a /health request, so a paused member reads as
// unhealthy instead of hanging the caller.
const healthTimeout = time.Second

// statusTimeout bounds a maintenance status request. It is longer than
// healthTimeout because the answer steers the shutdown order, and a loaded
// test machine can take more than a second to answer.
const statusTimeout = 3 * time.Second

// httpClient is used for every request; each request carries its own
// deadline.
var httpClient = &http.Client{}

// CheckHealth asks the member's /health endpoint once and returns nil when
// it answers {"health":"true"} within 1 s. etcd reports healthy only when the
// member has a leader, no alarm is raised and a linearizable read succeeds,
// so a member without quorum, a paused member and a stopped one all return
// an error.
func (p *Process) CheckHealth() error {
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.ClientURL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return fmt.Errorf("GET /health: %s: %q", resp.Status, body)
	}
	if h.Health != "true" {
		return fmt.Errorf("GET /health: %s: health=%q reason=%q", resp.Status, h.Health, h.Reason)
	}
	return nil
}

// memberStatus is the part of the gateway's maintenance status reply that
// this package reads. etcd encodes uint64 ids as JSON strings.
type memberStatus struct {
	Header struct {
		MemberID uint64 `json:"member_id,string"`
	} `json:"header"`
	Leader uint64 `json:"leader,string"`
}

// status asks the member for its id and the leader it follows, through the
// JSON gateway (POST /v3/maintenance/status).
func (p *Process) status() (memberStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	var st memberStatus
	err := p.postJSON(ctx, "/v3/maintenance/status", struct{}{}, &st)
	return st, err
}

// postJSON posts in as JSON to the member's gRPC gateway at path and decodes
// the reply into out. A non-2xx reply is an error carrying the body.
func (p *Process) postJSON(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.ClientURL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, strings.TrimSpace(string(reply)))
	}
	if err := json.Unmarshal(reply, out); err != nil {
		return fmt.Errorf("POST %s: decode %q: %w", path, reply, err)
	}
	return nil
}
