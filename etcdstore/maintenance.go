package etcdstore

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// MemberStatus is one etcd member's view of itself.
type MemberStatus struct {
	Endpoint    string
	MemberID    uint64
	Leader      uint64
	Version     string
	Revision    int64
	DBSize      int64    // backend file size, bytes (what the quota counts)
	DBSizeInUse int64    // bytes in use; DBSize - DBSizeInUse is reclaimable by defrag
	Alarms      []string // e.g. "NOSPACE"
}

// MaxSizes returns the largest backend among the members (what etcd counts
// against its quota) and the most bytes in use on any of them.
func MaxSizes(st []MemberStatus) (size, inUse int64) {
	for _, m := range st {
		size, inUse = max(size, m.DBSize), max(inUse, m.DBSizeInUse)
	}
	return size, inUse
}

// SplitAlarms tells whether NOSPACE is among alarms as Alarms lists them
// ("NOSPACE(member 8e9e05c52164694d)") and returns the others.
func SplitAlarms(alarms []string) (noSpace bool, others []string) {
	for _, a := range alarms {
		if strings.HasPrefix(a, "NOSPACE") {
			noSpace = true
		} else {
			others = append(others, a)
		}
	}
	return noSpace, others
}

// Status asks every endpoint for its status; unreachable endpoints are
// skipped. It fails only when none answers.
func (s *Store) Status(ctx context.Context) ([]MemberStatus, error) {
	var out []MemberStatus
	var last error
	for _, ep := range s.endpoints {
		cctx, cancel := s.withTimeout(ctx)
		resp, err := s.maint.Status(cctx, ep)
		if err != nil {
			last = classify("status "+ep, ctx, cctx, s.timeout, 0, err)
			cancel()
			continue
		}
		cancel()
		st := MemberStatus{
			Endpoint: ep, MemberID: resp.Header.MemberId, Leader: resp.Leader, Version: resp.Version,
			Revision: resp.Header.Revision, DBSize: resp.DbSize, DBSizeInUse: resp.DbSizeInUse,
		}
		st.Alarms = append(st.Alarms, resp.Errors...)
		out = append(out, st)
	}
	if len(out) == 0 {
		return nil, last
	}
	return out, nil
}

// BackendSize returns the largest member's backend size (MemberStatus.DBSize):
// what etcd counts against its quota, history included.
func (s *Store) BackendSize(ctx context.Context) (int64, error) {
	members, err := s.Status(ctx)
	if err != nil {
		return 0, err
	}
	var size int64
	for _, m := range members {
		size = max(size, m.DBSize)
	}
	return size, nil
}

// Alarms returns the alarms raised in the cluster, e.g. "NOSPACE".
func (s *Store) Alarms(ctx context.Context) ([]string, error) {
	cctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.maint.AlarmList(cctx)
	if err != nil {
		return nil, classify("alarm list", ctx, cctx, s.timeout, 0, err)
	}
	var out []string
	for _, a := range resp.Alarms {
		out = append(out, fmt.Sprintf("%s(member %x)", a.Alarm, a.MemberID))
	}
	return out, nil
}

// DisarmAll clears every alarm (after space was reclaimed).
func (s *Store) DisarmAll(ctx context.Context) error {
	cctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.maint.AlarmList(cctx)
	if err != nil {
		return classify("alarm list", ctx, cctx, s.timeout, 0, err)
	}
	for _, a := range resp.Alarms {
		if _, err := s.maint.AlarmDisarm(cctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
			return classify("alarm disarm", ctx, cctx, s.timeout, 0, err)
		}
	}
	return nil
}

// Compact discards etcd history before revision rev. Reads pinned below
// rev then fail with ErrCompacted. It returns once the member has removed
// the compacted revisions from its backend (physical compaction), so a
// Defragment after it reclaims their space; without that wait a
// defragmentation could run first and leave a NOSPACE alarm standing.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	cctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if _, err := s.cli.Compact(cctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return classify(fmt.Sprintf("compact %d", rev), ctx, cctx, s.timeout, rev, err)
	}
	return nil
}

// Defragment rewrites one member's backend to return freed space to the
// file system. It blocks that member while it runs; ctx bounds it (the
// request timeout does not apply).
func (s *Store) Defragment(ctx context.Context, endpoint string) error {
	if _, err := s.maint.Defragment(ctx, endpoint); err != nil {
		return classify("defragment "+endpoint, ctx, ctx, 0, 0, err)
	}
	return nil
}
