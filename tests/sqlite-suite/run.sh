#!/usr/bin/env bash
# tests/sqlite-suite/run.sh — run SQLite's own TCL test suite (testfixture)
# with its working directory on a kvfs mount and on a local directory, and
# print the two results side by side (issue 19). `make test-sqlite` runs it;
# it is not part of `make test`.
#
# The comparison is the product: the exit status is 0 once every selected
# test file ran on both targets, whatever the tests reported, and non-zero
# only when the setup (sources, build, mount) failed.

set -euo pipefail

usage() {
	cat <<'EOF'
Usage: tests/sqlite-suite/run.sh [--setup-only] [--help] [TEST ...]

Runs SQLite's TCL test files (test/NAME.test of the distribution's sqlite3
source package) with testfixture twice: with the working directory a fresh
local directory, and with it a fresh directory on a fresh kvfs mount (the
embedded etcd on a fresh data directory). Prints a table

  test | local errors/tests | kvfs errors/tests | failing on kvfs only

and writes it to $SQLITE_SUITE_DIR/results-DATE.md. Each file's output is
kept in $SQLITE_SUITE_DIR/runs/DATE/logs/NAME.{local,kvfs}.log.

TEST is a test file name without ".test" (e.g. trans savepoint); by default
$SQLITE_TESTS, else the list of issue 19:
  delete trans lock lock2 lock4 journal1 journal3 pager1 exclusive attach2
  attach3 vacuum vacuum2 rollback savepoint tempdb backup wal wal2

Setup, done once and cached in $SQLITE_SUITE_DIR: a deb-src entry for the
distribution's main archive when apt has none (written to
/etc/apt/sources.list.d/kvfs-deb-src.sources from debian.sources), then
`apt-get source sqlite3`, then `configure && make testfixture`. Needs root.

Options:
  --setup-only   fetch and build testfixture, run no test
  -h, --help     this text

Environment:
  SQLITE_SUITE_DIR      cache and results directory (default: REPO/.sqlite-suite)
  SQLITE_TESTS          test files to run, space-separated (arguments win)
  SQLITE_TEST_TIMEOUT   seconds one test file may run on one target (default 600)
  SQLITE_TARGETS        targets to run, default "local kvfs"
  KVFS_BIN              the kvfs binary (default: REPO/bin/kvfs; `make build`)
  KVFS_MOUNT_FLAGS      extra flags for `kvfs mount` (e.g. "--forward-locks")
  JOBS                  make -j for the testfixture build (default: nproc)
  SQLITE_SUITE_KEEP     1: keep each test file's databases and etcd data
                        (default: removed after the file ran, ~80 MB each;
                        the logs and kvfs.log stay)
  SQLITE_SUITE_PRECREATE  0 (default): tester.tcl makes its "testdir"; 1:
                        make it beforehand (stepped around a getcwd-after-
                        mkdir race that kvfs had before 7f1e2ad)

Exit status: 0 when the comparison was made, 1 when the setup failed, 2 on
bad usage.

Runs as root (testfixture too), so the suite's permission tests (delete-8.*,
pager1.4.7.2, pager1.4.8.1) fail on both targets alike. `make sweep` (run by
`make test`, `make run`...) unmounts every kvfs mount, this one's too: a
test file whose mount vanished says so in the notes column.
EOF
}

# ---------------------------------------------------------------- settings

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
SUITE_DIR=${SQLITE_SUITE_DIR:-$REPO_ROOT/.sqlite-suite}
KVFS_BIN=${KVFS_BIN:-$REPO_ROOT/bin/kvfs}
TEST_TIMEOUT=${SQLITE_TEST_TIMEOUT:-600}
TARGETS=${SQLITE_TARGETS:-local kvfs}
JOBS=${JOBS:-$(nproc)}
PRECREATE=${SQLITE_SUITE_PRECREATE:-0}
KEEP=${SQLITE_SUITE_KEEP:-0}
DEFAULT_TESTS="delete trans lock lock2 lock4 journal1 journal3 pager1 exclusive
attach2 attach3 vacuum vacuum2 rollback savepoint tempdb backup wal wal2"
DEB_SRC_FILE=/etc/apt/sources.list.d/kvfs-deb-src.sources
PKG=sqlite3

SETUP_ONLY=0
TESTS=()
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--setup-only) SETUP_ONLY=1 ;;
	-*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	*) TESTS+=("${1%.test}") ;;
	esac
	shift
done
if [ ${#TESTS[@]} -eq 0 ]; then
	# shellcheck disable=SC2206 # word splitting of the list is intended
	TESTS=(${SQLITE_TESTS:-$DEFAULT_TESTS})
fi
# Each test file runs once per target (its directories are named after it).
declare -A SEEN=()
UNIQ=()
for t in "${TESTS[@]}"; do
	[ -n "${SEEN[$t]:-}" ] || UNIQ+=("$t")
	SEEN[$t]=1
done
TESTS=("${UNIQ[@]}")
case $TEST_TIMEOUT in '' | *[!0-9]*) echo "run.sh: SQLITE_TEST_TIMEOUT must be seconds" >&2; exit 2 ;; esac

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "setup failed: $*"; exit 1; }

# now prints seconds since the epoch; elapsed START prints "Mm SSs" since START.
now() { date +%s; }
elapsed() { local s=$(($(now) - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, FUSE mounts)"
mkdir -p "$SUITE_DIR"
T_ALL=$(now)

# ------------------------------------------------------------- the sources

# main_archive prints the URIs, Suites, Components and Signed-By of the
# distribution's main archive in /etc/apt/sources.list.d/debian.sources
# (deb822): the "Types: deb" stanza whose Suites hold the release's codename
# itself (not CODENAME-security), one "Field: value" line each.
main_archive() {
	local codename
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$codename" ] || return 1
	awk -v codename="$codename" '
		function flush() {
			if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " codename " ") && !done) {
				print "URIs: " uris; print "Suites: " suites; print "Components: " comps
				if (signed != "") print "Signed-By: " signed
				done = 1
			}
			types = uris = suites = comps = signed = ""
		}
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		{
			field = $1; sub(/:$/, "", field); value = $0; sub(/^[^:]*:[ \t]*/, "", value)
			if (field == "Types") types = value
			else if (field == "URIs") uris = value
			else if (field == "Suites") suites = value
			else if (field == "Components") comps = value
			else if (field == "Signed-By") signed = value
		}
		END { flush(); if (!done) exit 1 }
	' /etc/apt/sources.list.d/debian.sources
}

# ensure_deb_src makes `apt-get source` work: when apt knows no source
# package of sqlite3, it adds a deb-src entry of the main archive and
# updates the package lists.
ensure_deb_src() {
	if apt-cache showsrc "$PKG" 2>/dev/null | grep -q '^Package:'; then
		return 0
	fi
	if [ ! -e "$DEB_SRC_FILE" ]; then
		[ -r /etc/apt/sources.list.d/debian.sources ] ||
			die "no deb-src entry and no /etc/apt/sources.list.d/debian.sources to derive one from"
		local entry
		entry=$(main_archive) || die "no main archive stanza (Types: deb, Suites: CODENAME) in debian.sources"
		log "adding $DEB_SRC_FILE: deb-src of $(sed -n 's/^URIs: //p' <<<"$entry")"
		{
			echo "# Added by kvfs tests/sqlite-suite/run.sh: the sources of the main archive"
			echo "# of debian.sources, for apt-get source $PKG."
			echo "Types: deb-src"
			echo "$entry"
		} >"$DEB_SRC_FILE"
	fi
	log "apt-get update"
	apt-get update -qq || die "apt-get update"
	apt-cache showsrc "$PKG" 2>/dev/null | grep -q '^Package:' ||
		die "apt still knows no source package $PKG (see $DEB_SRC_FILE)"
}

# ensure_build_deps installs the compiler and Tcl headers when missing.
ensure_build_deps() {
	local missing=()
	command -v gcc >/dev/null && command -v make >/dev/null && command -v dpkg-source >/dev/null ||
		missing+=(build-essential)
	[ -e /usr/include/tcl/tcl.h ] || [ -e /usr/include/tcl.h ] || missing+=(tcl-dev)
	command -v tclsh >/dev/null || missing+=(tcl)
	command -v xz >/dev/null || missing+=(xz-utils)
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		apt-get update -qq || die "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" || die "apt-get install ${missing[*]}"
	fi
}

# fetch_source sets SRC to the unpacked source tree of the package, fetching
# it into $SUITE_DIR/src on the first run.
fetch_source() {
	local stamp=$SUITE_DIR/src/.fetched
	if [ ! -e "$stamp" ]; then
		ensure_deb_src
		rm -rf "$SUITE_DIR/src"
		mkdir -p "$SUITE_DIR/src"
		log "apt-get source $PKG into $SUITE_DIR/src"
		(cd "$SUITE_DIR/src" && apt-get source -qq "$PKG") >"$SUITE_DIR/src.log" 2>&1 ||
			{ tail -20 "$SUITE_DIR/src.log" >&2; die "apt-get source $PKG (log: $SUITE_DIR/src.log)"; }
		touch "$stamp"
	fi
	SRC=$(find "$SUITE_DIR/src" -mindepth 1 -maxdepth 1 -type d -name "$PKG-*" | sort | tail -1)
	[ -n "$SRC" ] && [ -f "$SRC/test/tester.tcl" ] || die "no $PKG-*/test/tester.tcl under $SUITE_DIR/src"
}

# build_testfixture sets TESTFIXTURE, building it out of tree in
# $SUITE_DIR/build on the first run: configure with every optional module
# (FTS, R*Tree, sessions... which some test files probe for) and the
# system's Tcl.
build_testfixture() {
	local build=$SUITE_DIR/build
	TESTFIXTURE=$build/testfixture
	[ -x "$TESTFIXTURE" ] && return 0
	ensure_build_deps
	local tcldir
	tcldir=$(dirname "$(find /usr/lib /usr/lib64 /usr/local/lib -maxdepth 3 -name tclConfig.sh 2>/dev/null | sort | tail -1)")
	[ -f "$tcldir/tclConfig.sh" ] || die "no tclConfig.sh (install tcl-dev)"
	mkdir -p "$build"
	log "configure (log: $build/configure.log)"
	(cd "$build" && "$SRC/configure" --enable-all --with-tcl="$tcldir") >"$build/configure.log" 2>&1 ||
		{ tail -20 "$build/configure.log" >&2; die "configure"; }
	log "make testfixture -j$JOBS (log: $build/make.log)"
	(cd "$build" && make -j"$JOBS" testfixture) >"$build/make.log" 2>&1 ||
		{ tail -30 "$build/make.log" >&2; die "make testfixture"; }
	[ -x "$TESTFIXTURE" ] || die "make testfixture made no $TESTFIXTURE"
}

T_SETUP=$(now)
SETUP_CACHED=1
[ -e "$SUITE_DIR/src/.fetched" ] && [ -x "$SUITE_DIR/build/testfixture" ] || SETUP_CACHED=0
fetch_source
build_testfixture
SETUP_TIME=$(elapsed "$T_SETUP")
[ "$SETUP_CACHED" -eq 1 ] && SETUP_TIME="cached ($SETUP_TIME)"
log "setup done in $SETUP_TIME: $TESTFIXTURE ($(basename "$SRC"))"
[ "$SETUP_ONLY" -eq 1 ] && exit 0

for t in "${TESTS[@]}"; do
	[ -f "$SRC/test/$t.test" ] || die "no test file $SRC/test/$t.test"
done
[ -x "$KVFS_BIN" ] || die "no $KVFS_BIN (make build)"
command -v mountpoint >/dev/null || die "no mountpoint (util-linux)"
[ -e /dev/fuse ] || die "no /dev/fuse"

# ---------------------------------------------------------------- kvfs mount

STAMP=$(date +%Y%m%d-%H%M%S)
RUN_DIR=$SUITE_DIR/runs/$STAMP
LOGS=$RUN_DIR/logs
RESULTS=$SUITE_DIR/results-$STAMP.md
mkdir -p "$LOGS"

KVFS_PID=""
KVFS_MNT=""

# mount_kvfs starts kvfs with a fresh embedded etcd in DIR/etcd on DIR/mnt in
# the background and waits until DIR/mnt is a mountpoint.
mount_kvfs() {
	local dir=$1
	mkdir -p "$dir/etcd" "$dir/spool" "$dir/mnt"
	KVFS_MNT=$dir/mnt
	# shellcheck disable=SC2086 # KVFS_MOUNT_FLAGS is a list of flags
	"$KVFS_BIN" mount --data-dir "$dir/etcd" --spool-dir "$dir/spool" ${KVFS_MOUNT_FLAGS:-} "$KVFS_MNT" \
		>"$dir/kvfs.log" 2>&1 &
	KVFS_PID=$!
	local i
	for i in $(seq 1 300); do
		mountpoint -q "$KVFS_MNT" && return 0
		kill -0 "$KVFS_PID" 2>/dev/null || break
		sleep 0.1
	done
	tail -20 "$dir/kvfs.log" >&2
	unmount_kvfs
	die "kvfs did not mount $KVFS_MNT (log: $dir/kvfs.log)"
}

# unmount_kvfs stops the kvfs this script started (SIGINT, then SIGTERM,
# then SIGKILL, by its PID only) and detaches the mount if it outlived it.
unmount_kvfs() {
	if [ -n "$KVFS_PID" ] && kill -0 "$KVFS_PID" 2>/dev/null; then
		kill -INT "$KVFS_PID" 2>/dev/null || true
		local i
		for i in $(seq 1 100); do kill -0 "$KVFS_PID" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$KVFS_PID" 2>/dev/null; then
			kill -TERM "$KVFS_PID" 2>/dev/null || true
			for i in $(seq 1 50); do kill -0 "$KVFS_PID" 2>/dev/null || break; sleep 0.1; done
		fi
		kill -0 "$KVFS_PID" 2>/dev/null && kill -KILL "$KVFS_PID" 2>/dev/null || true
		wait "$KVFS_PID" 2>/dev/null || true
	fi
	KVFS_PID=""
	if [ -n "$KVFS_MNT" ] && mountpoint -q "$KVFS_MNT" 2>/dev/null; then
		umount -l "$KVFS_MNT" || true
	fi
	KVFS_MNT=""
}

TF_PID=""
cleanup() {
	# TF_PID is timeout(1) (the subshell exec'd it): TERM makes it pass the
	# signal on to testfixture. kvfs goes first, so that a testfixture blocked on the
	# mount is not waited for.
	if [ -n "$TF_PID" ]; then kill -TERM "$TF_PID" 2>/dev/null || true; fi
	unmount_kvfs
	if [ -n "$TF_PID" ]; then wait "$TF_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- one test

# test_file TEST prints the path of the test file to run: test/TEST.test, or
# a copy beside it with a fix to the suite itself, the same on both targets.
#   wal2: wal2-13.* store expected results in an array "a", but an earlier
#   test case leaves a scalar "a", so with this testfixture the file ends
#   at wal2.test:1155 ("can't set a(0): variable isn't array") after 163 of
#   its 266 tests, local and kvfs alike. The copy unsets "a" first.
test_file() {
	local t=$1 f=$SRC/test/$1.test
	case $t in
	wal2)
		local fixed=$SRC/test/wal2.kvfs-fixed.test
		if [ ! -f "$fixed" ]; then
			sed 's/^\( *\)set a(0) {1 {unable to open database file}}$/\1unset -nocomplain a\n&/' "$f" >"$fixed.tmp"
			grep -q 'unset -nocomplain a$' "$fixed.tmp" || die "wal2.test: the line to fix is not there"
			mv "$fixed.tmp" "$fixed"
		fi
		f=$fixed
		;;
	esac
	echo "$f"
}

# run_one TEST TARGET runs testfixture on test/TEST.test with its working
# directory a fresh directory on TARGET (local, or a fresh kvfs mount) and
# sets R_ERRORS and R_TESTS (from the summary line; without one, the test
# cases that failed and that started so far, R_TESTS ending in "+"), R_SECS,
# R_STATUS (ok; aborted: a Tcl error outside a test case ended the file;
# timeout; crash(EXIT)) and R_NOTE (where and why it ended early). It runs in
# the main shell, not a $(...), so the traps see the kvfs it starts.
run_one() {
	local t=$1 target=$2 logf=$LOGS/$t.$target.log work
	case $target in
	local) work=$RUN_DIR/local/$t; mkdir -p "$work" ;;
	kvfs)
		mount_kvfs "$RUN_DIR/kvfs/$t"
		work=$KVFS_MNT/$t
		mkdir "$work" || die "mkdir on the kvfs mount"
		;;
	*) die "unknown target $target" ;;
	esac
	if [ "$PRECREATE" = 1 ]; then
		# Before 7f1e2ad, tester.tcl's `file mkdir testdir; cd testdir`
		# raced kvfs: the directory's entry invalidation (FUSE
		# NOTIFY_INVAL_ENTRY for kvfs's own mkdir) could land after the
		# chdir and unhash the new working directory, so getcwd() failed
		# with ENOENT (a whole test file lost, 1 run in 20 or so). Making
		# the directory beforehand stepped around it.
		mkdir "$work/testdir"
		[ "$target" = kvfs ] && sleep 0.3
	fi
	local start rc=0
	start=$(now)
	# The test file is given by its absolute path: tester.tcl takes $testdir
	# from [file dirname $argv0], then (its --testdir option, default
	# "testdir") creates a subdirectory "testdir" of the working directory
	# and cds into it; test.db, test.db-journal... and the helper files go
	# there. --verbose=1 (the default) prints every test case's name and Ok
	# or what failed.
	(cd "$work" && exec timeout --kill-after=30 "$TEST_TIMEOUT" \
		"$TESTFIXTURE" "$(test_file "$t")" --verbose=1) >"$logf" 2>&1 </dev/null &
	TF_PID=$!
	wait "$TF_PID" || rc=$?
	TF_PID=""
	R_SECS=$(($(now) - start))
	R_STATUS=ok
	case $rc in
	0 | 1) ;; # testfixture exits 1 when a test case failed
	124 | 137) R_STATUS=timeout ;;
	*) R_STATUS="crash($rc)" ;;
	esac
	local kvfs_note=""
	if [ "$target" = kvfs ]; then
		# What happened to kvfs meanwhile: it exited, or the mount went away
		# under a running kvfs (another `make sweep`/test cleanup unmounts
		# every fuse.kvfs mount), and what it logged.
		if ! kill -0 "$KVFS_PID" 2>/dev/null; then
			kvfs_note="kvfs exited during the test"
		elif ! mountpoint -q "$KVFS_MNT"; then
			kvfs_note="the mount vanished during the test (unmounted from outside)"
		fi
		unmount_kvfs
		local kl=$RUN_DIR/kvfs/$t/kvfs.log nerr npanic
		nerr=$(grep -c 'level=ERROR' "$kl" || true)
		npanic=$(grep -c 'panic' "$kl" || true)
		[ "$nerr" -gt 0 ] && kvfs_note="$kvfs_note${kvfs_note:+; }kvfs.log: $nerr ERROR lines"
		[ "$npanic" -gt 0 ] && kvfs_note="$kvfs_note${kvfs_note:+; }kvfs.log: $npanic panic lines"
		[ -n "$kvfs_note" ] && echo "run.sh: $kvfs_note ($kl)" >>"$logf"
	fi
	parse_log "$logf"
	[ -n "$kvfs_note" ] && R_NOTE="$R_NOTE${R_NOTE:+; }$kvfs_note"
	if [ "$KEEP" != 1 ]; then
		# The embedded etcd preallocates its WAL: drop the data, keep kvfs.log.
		case $target in
		local) rm -rf "$RUN_DIR/local/$t" ;;
		kvfs) rm -rf "$RUN_DIR/kvfs/$t/etcd" "$RUN_DIR/kvfs/$t/spool" && rmdir "$RUN_DIR/kvfs/$t/mnt" 2>/dev/null || true ;;
		esac
	fi
	return 0
}

# parse_log LOG sets R_ERRORS and R_TESTS from a log's summary line; without
# one (testfixture stopped early) it counts the test cases that failed and
# that started, sets R_STATUS to aborted when it was ok, and R_NOTE to the
# last test case started and the Tcl error that ended the run (the line
# before "while executing", and the test file's line).
parse_log() {
	local logf=$1
	local summary
	R_NOTE=""
	summary=$(grep -aE '^[0-9]+ errors out of [0-9]+ tests' "$logf" | tail -1 || true)
	if [ -n "$summary" ]; then
		R_ERRORS=${summary%% errors*}
		R_TESTS=${summary#* out of }
		R_TESTS=${R_TESTS%% tests*}
		return 0
	fi
	[ "$R_STATUS" = ok ] && R_STATUS=aborted
	R_ERRORS=$(failures "$logf" | wc -l)
	R_TESTS="$(grep -acE '^[^ ]+\.\.\.' "$logf" || true)+"
	local last why where
	last=$(grep -aoE '^[^ ]+\.\.\.' "$logf" | tail -1 | sed 's/\.\.\.$//' || true)
	why=$(awk '/^    while executing$/ { print prev; exit } { prev = $0 }' "$logf" | cut -c1-160)
	where=$(grep -aoE "\\(file \"[^\"]*\" line [0-9]+\\)" "$logf" | head -1 |
		sed -E 's/^\(file "(.*\/)?([^"\/]*)" line ([0-9]+)\)$/\2:\3/' || true)
	R_NOTE="$R_STATUS${last:+ after $last}${why:+: $why}${where:+ ($where)}"
}

# failures LOG prints the names of the failing test cases of a log, one a
# line: the "!Failures on these tests:" summary, or when testfixture did not
# get that far (timeout, crash, a Tcl error outside a test case), the test
# cases that printed "! NAME expected:" or "NAME...\nError:".
failures() {
	local logf=$1 line
	line=$(grep -aE '^!Failures on these tests:' "$logf" | tail -1 || true)
	if [ -n "$line" ]; then
		tr ' ' '\n' <<<"${line#!Failures on these tests:}" | grep -v '^$' || true
	else
		awk '
			/^! [^ ]+ expected: / { print $2 }
			/^Error: / && prev ~ /\.\.\.$/ { n = split(prev, w, " "); sub(/\.\.\.$/, "", w[n]); print w[n] }
			{ prev = $0 }
		' "$logf" | sort -u
	fi
}

# shortlist NAMES... prints the first 10 names and how many more there are.
shortlist() {
	if [ $# -le 10 ]; then
		echo "$*"
	else
		echo "${*:1:10} … (+$(($# - 10)) more, below)"
	fi
}

# cell ERRORS TESTS STATUS prints one target's table cell.
cell() {
	local c="$1/$2"
	[ "$3" = ok ] || c="$c ${3^^}"
	echo "$c"
}

# ------------------------------------------------------------------ the run

log "running ${#TESTS[@]} test files on: $TARGETS (timeout ${TEST_TIMEOUT}s each); logs: $LOGS"
declare -A RES NOTE FAILS_ONLY TIME_T
T_RUN=$(now)
for t in "${TESTS[@]}"; do
	for target in $TARGETS; do
		run_one "$t" "$target"
		RES[$t.$target]="$R_ERRORS $R_TESTS $R_SECS $R_STATUS"
		NOTE[$t.$target]=$R_NOTE
		TIME_T[$target]=$((${TIME_T[$target]:-0} + R_SECS))
		log "$t on $target: $R_ERRORS errors out of $R_TESTS tests, ${R_SECS}s, $R_STATUS${R_NOTE:+ — $R_NOTE}"
	done
	if [[ " $TARGETS " == *" kvfs "* ]]; then
		only=""
		if [[ " $TARGETS " == *" local "* ]]; then
			only=$(comm -23 <(failures "$LOGS/$t.kvfs.log" | sort -u) \
				<(failures "$LOGS/$t.local.log" | sort -u) | sort -V | tr '\n' ' ')
		else
			only=$(failures "$LOGS/$t.kvfs.log" | sort -Vu | tr '\n' ' ')
		fi
		FAILS_ONLY[$t]=${only% }
	fi
done
RUN_TIME=$(elapsed "$T_RUN")

# ----------------------------------------------------------------- the table

{
	echo "# SQLite TCL test suite: local directory vs kvfs mount"
	echo
	echo "- date: $(date -Is)"
	echo "- sqlite: $(basename "$SRC") (apt-get source $PKG), testfixture $TESTFIXTURE"
	echo "- kvfs: $KVFS_BIN ($(cd "$REPO_ROOT" && git describe --always --dirty 2>/dev/null || echo unknown))," \
		"embedded etcd, a fresh mount per test file${KVFS_MOUNT_FLAGS:+, flags: $KVFS_MOUNT_FLAGS}"
	echo "- timeout per test file and target: ${TEST_TIMEOUT}s; logs: $LOGS;" \
		"testdir made beforehand: $([ "$PRECREATE" = 1 ] && echo yes || echo no)"
	echo "- setup (sources + testfixture; cached after the first run): $SETUP_TIME;" \
		"runs: $RUN_TIME$(for target in $TARGETS; do printf ', %s %ss' "$target" "${TIME_T[$target]:-0}"; done)"
	echo
	printf '| test |'; for target in $TARGETS; do printf ' %s errors/tests | s |' "$target"; done
	[[ " $TARGETS " == *" kvfs "* ]] && printf ' failing on kvfs only |'
	echo ' notes |'
	printf '|---|'; for target in $TARGETS; do printf '%s' '---:|---:|'; done
	[[ " $TARGETS " == *" kvfs "* ]] && printf '%s' '---|'
	echo '---|'

	for t in "${TESTS[@]}"; do
		printf '| %s |' "$t"
		for target in $TARGETS; do
			read -r e n s st <<<"${RES[$t.$target]}"
			printf ' %s | %s |' "$(cell "$e" "$n" "$st")" "$s"
		done
		# shellcheck disable=SC2086 # the names are one word each
		[[ " $TARGETS " == *" kvfs "* ]] && printf ' %s |' "$(shortlist ${FAILS_ONLY[$t]:-})"
		notes=""
		for target in $TARGETS; do
			[ -n "${NOTE[$t.$target]}" ] && notes="$notes${notes:+; }$target: ${NOTE[$t.$target]}"
		done
		printf ' %s |\n' "${notes//|/\\|}"
	done
	# The whole lists of the long ones.
	for t in "${TESTS[@]}"; do
		# shellcheck disable=SC2086
		set -- ${FAILS_ONLY[$t]:-}
		[ $# -gt 10 ] || continue
		echo
		echo "$t, failing on kvfs only ($#): $*"
	done
} >"$RESULTS"

cat "$RESULTS"
echo
log "results: $RESULTS; total $(elapsed "$T_ALL")"
exit 0
