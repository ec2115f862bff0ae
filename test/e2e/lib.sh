# SPDX-License-Identifier: GPL-2.0-or-later
#
# lib.sh - shared code of the end-to-end tests (sourced, not run).
#
# The tests use the built binaries of $TWINFS_BUILD (default build-ci,
# relative to the repository) on real FUSE mounts.  Everything they make
# lives in one temporary directory; an EXIT trap always unmounts every
# mount (fusermount3 -u, then umount -l), stops every daemon started here
# and removes the directory, also when a test fails or the run is killed.
#
#   run_test NAME FUNC [ARGS...]   runs FUNC in a subshell under set -e;
#                                  pass or fail with its output
#   run_step NAME FUNC [ARGS...]   runs FUNC in this shell (mounts that
#                                  must outlive it)
#   tfs_mkfs IMG SIZE [ARGS...]    mkfs.twinfs -q -s SIZE ARGS IMG
#   tfs_mount IMG MNT [ARGS...]    twinfs -f IMG MNT ARGS &, waits until
#                                  mounted; TFS_PID[MNT] is the daemon
#   tfs_umount MNT                 fusermount3 -u, waits for the daemon,
#                                  fails if it did not exit with 0
#   py [ARGS...] <<'EOF'           python3 with the helpers in PY_PRE
#   summary                        prints counts; exit 1 on any failure

set -uo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
BUILD=${TWINFS_BUILD:-build-ci}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
MKFS=$BUILD/tools/mkfs.twinfs
FSCK=$BUILD/tools/fsck.twinfs
TWINFS=$BUILD/fs/twinfs
# mount -t fuse.twinfs finds "twinfs" on PATH (mount.fuse3 runs it by name)
export PATH="$BUILD/fs:$BUILD/tools:$PATH"
# a system python: the unprivileged test user must be able to run it too
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

for b in "$MKFS" "$FSCK" "$TWINFS"; do
	if [ ! -x "$b" ]; then
		echo "e2e: $b is missing; build first (meson setup $BUILD && ninja -C $BUILD)" >&2
		exit 1
	fi
done
if [ "$(id -u)" -ne 0 ]; then
	echo "e2e: must run as root (FUSE mounts, a test user)" >&2
	exit 1
fi

TMP=$(mktemp -d /tmp/twinfs-e2e.XXXXXX)
chmod 755 "$TMP"    # the unprivileged test user walks through it
PASS=0
FAIL=0
FAILED=()
declare -A TFS_PID=()
MOUNTS=()
CLEANUP_FILES=()    # outside $TMP, removed at exit
TEST_NAME=${0##*/}

cleanup() {
	local m pid
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		m=${MOUNTS[i]}
		if mountpoint -q "$m" 2>/dev/null; then
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
				echo "e2e: could not unmount $m" >&2
		fi
	done
	for pid in "${TFS_PID[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null
			for _ in $(seq 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL "$pid" 2>/dev/null
		fi
	done
	for f in "${CLEANUP_FILES[@]}"; do
		rm -f "$f"
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "e2e: interrupted" >&2; exit 130' INT TERM HUP

pass() {
	PASS=$((PASS + 1))
	printf '  ok    %s\n' "$1"
}

fail() {
	FAIL=$((FAIL + 1))
	FAILED+=("$1")
	printf '  FAIL  %s\n' "$1"
	[ -n "${2:-}" ] && sed 's/^/        | /' <<<"$2"
	return 0
}

# run_test NAME FUNC [ARGS...]: FUNC runs in a subshell with set -e, so
# the first failing command ends it.  Output is shown only on failure.
run_test() {
	local name=$1 out rc
	shift
	out=$( (set -eE; "$@") 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		pass "$name"
	else
		fail "$name" "$out"
	fi
}

# run_step NAME FUNC [ARGS...]: FUNC runs in this shell (it may mount,
# unmount and start daemons, which must outlive it), so it must chain
# its commands with && or '|| return 1'.  Output is shown as it comes.
run_step() {
	local name=$1
	shift
	if "$@"; then
		pass "$name"
	else
		fail "$name"
	fi
}

# Assertions: print what was wrong and fail the current test.
die() {
	echo "$*" >&2
	return 1
}
expect_eq() { # DESC EXPECTED ACTUAL
	[ "$2" == "$3" ] || die "$1: expected '$2', got '$3'"
}
# expect_fail DESC ERRTEXT CMD...: CMD must fail and say ERRTEXT
expect_fail() {
	local desc=$1 text=$2 out
	shift 2
	if out=$("$@" 2>&1); then
		die "$desc: '$*' succeeded, expected '$text'"
		return 1
	fi
	grep -q -- "$text" <<<"$out" || die "$desc: '$*' failed with '$out', expected '$text'"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

tfs_mkfs() { # IMG SIZE [ARGS...]
	local img=$1 size=$2
	shift 2
	"$MKFS" -q -s "$size" "$@" "$img"
}

# tfs_mount IMG MNT [ARGS...]: start the daemon in the foreground (-f) in
# the background of this shell and wait until MNT is a mount point.
tfs_mount() {
	local img=$1 mnt=$2 pid log
	shift 2
	mkdir -p "$mnt"
	log="$TMP/daemon.$(basename "$mnt").log"
	"$TWINFS" -f "$img" "$mnt" "$@" >>"$log" 2>&1 &
	pid=$!
	TFS_PID[$mnt]=$pid
	MOUNTS+=("$mnt")
	for _ in $(seq 500); do
		mountpoint -q "$mnt" && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			echo "twinfs exited with $? before mounting $mnt; its log:" >&2
			sed 's/^/    /' "$log" >&2
			return 1
		fi
		sleep 0.02
	done
	echo "twinfs did not mount $mnt within 10 s; its log:" >&2
	sed 's/^/    /' "$log" >&2
	return 1
}

# tfs_wait_exit MNT: wait (30 s) for the daemon of MNT; returns its status
tfs_wait_exit() {
	local mnt=$1 pid=${TFS_PID[$1]:-}
	[ -n "$pid" ] || return 0
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "twinfs ($pid) still running 30 s after unmounting $mnt" >&2
		return 1
	fi
	wait "$pid" 2>/dev/null
	local rc=$?
	unset "TFS_PID[$mnt]"
	if [ $rc -ne 0 ]; then
		echo "twinfs for $mnt exited with $rc; its log:" >&2
		sed 's/^/    /' "$TMP/daemon.$(basename "$mnt").log" >&2
	fi
	return $rc
}

tfs_umount() { # MNT
	fusermount3 -u "$1" || return 1
	tfs_wait_exit "$1"
}

# fsck -n must find the image clean
tfs_fsck_clean() { # IMG
	local out
	if ! out=$("$FSCK" -n "$1" 2>&1); then
		echo "fsck.twinfs -n $1 is not clean:" >&2
		sed 's/^/    /' <<<"$out" >&2
		return 1
	fi
}

# Python helpers, prepended to every py script.
PY_PRE='
import ctypes, errno, os, stat, sys, time
libc = ctypes.CDLL(None, use_errno=True)
def fail(msg):
    sys.exit("FAIL: " + msg)
def check(cond, msg):
    if not cond:
        fail(msg)
def expect_err(err, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as e:
        if e.errno != err:
            fail("%s%r: expected %s, got %s" % (getattr(fn, "__name__", fn), args,
                 errno.errorcode[err], errno.errorcode.get(e.errno, e.errno)))
        return
    fail("%s%r: expected %s, it succeeded" % (getattr(fn, "__name__", fn), args,
         errno.errorcode[err]))
def cerr(rc, what):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, what + ": " + os.strerror(e))
    return rc
'

py() {
	local script
	script=$(cat)
	timeout 300 "$PY" -c "$PY_PRE$script" "$@"
}

summary() {
	echo "$TEST_NAME: $PASS passed, $FAIL failed"
	if ((FAIL)); then
		printf '  failed: %s\n' "${FAILED[@]}"
		exit 1
	fi
	exit 0
}
