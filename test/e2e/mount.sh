#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# mount.sh - the tools and the mount life cycle on real FUSE mounts:
# mkfs of a huge sparse image, mount time, data across unmount/remount,
# mount -t fuse.twinfs, SIGTERM/SIGINT/SIGKILL of the daemon (also in the
# middle of fsyncs, checked by acker.py), -o ro,
# fsck after every unmount, mkfs refusing to overwrite, --help/--version.
. "$(dirname "$0")/lib.sh"

IMG=$TMP/big.img
MNT=$TMP/mnt

echo "== $TEST_NAME (binaries from $BUILD)"

t_mkfs_1tib() {
	local t0 t1 kib
	t0=$(now_ms)
	tfs_mkfs "$IMG" 1t -L e2e || return 1
	t1=$(now_ms)
	kib=$(du -k "$IMG" | cut -f1)
	echo "    mkfs 1 TiB: $((t1 - t0)) ms, $kib KiB on disk"
	[ $((t1 - t0)) -lt 10000 ] || die "mkfs took $((t1 - t0)) ms" || return 1
	# sparse but for the intent log's 64 MiB, written out so that the
	# first fsyncs do not wait for the host to allocate it
	[ "$kib" -lt 73728 ] || die "image uses $kib KiB (>= 72 MiB)" || return 1
	python3 - "$IMG" <<'PY' || return 1
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
hole = os.lseek(fd, 8192, os.SEEK_HOLE)
if hole < 8192 + (64 << 20):
    sys.exit('a hole at %d: the log region is not written out' % hole)
PY
	expect_eq "apparent size" 1099511627776 "$(stat -c %s "$IMG")"
}
run_step "mkfs.twinfs: a sparse 1 TiB image in seconds, its log written" t_mkfs_1tib

t_fsck_new() {
	tfs_fsck_clean "$IMG" &&
	"$FSCK" -n "$IMG" | tail -n1 | grep -q '^e2e: 2 files, ' ||
	die "summary line: $("$FSCK" -n "$IMG" | tail -n1)"
}
run_step "fsck.twinfs -n finds a new image clean, summary line" t_fsck_new

t_mount_fast() {
	local t0 t1
	t0=$(now_ms)
	tfs_mount "$IMG" "$MNT" || return 1
	t1=$(now_ms)
	echo "    mount: $((t1 - t0)) ms"
	[ $((t1 - t0)) -lt 1000 ] || die "mount took $((t1 - t0)) ms (>= 1 s)"
}
run_step "mounting the 1 TiB image takes under 1 s" t_mount_fast

# run-all.sh runs this script with the fuse module's enable_uring off and
# on, and says which transport the daemon must then report
t_transport() {
	local want=${TWINFS_TRANSPORT:-} got
	echo x >"$MNT/transport" && rm "$MNT/transport" || return 1
	got=$("$BUILD/tools/twinfsctl" status "$MNT" | sed -n 's/^requests: *through //p')
	echo "    requests through: $got"
	[ -z "$want" ] || expect_eq "transport" "$want" "$got" || return 1
	# -o no_uring keeps a mount on /dev/fuse whatever the kernel offers
	local img2=$TMP/nouring.img mnt2=$TMP/nouring
	tfs_mkfs "$img2" 64m && tfs_mount "$img2" "$mnt2" -o no_uring || return 1
	echo y >"$mnt2/f" && expect_eq "no_uring mount works" y "$(cat "$mnt2/f")" &&
	expect_eq "-o no_uring" /dev/fuse \
		"$("$BUILD/tools/twinfsctl" status "$mnt2" | sed -n 's/^requests: *through //p')"
	local rc=$?
	tfs_umount "$mnt2" && tfs_fsck_clean "$img2" || rc=1
	rm -f "$img2"
	return $rc
}
run_step "twinfsctl status names the request transport; -o no_uring" t_transport

# -o readaround: bad sizes are refused by name; with it off (0) and at
# its largest, a file written and read back cold is what was written
t_readaround() {
	local img2=$TMP/ra.img mnt2=$TMP/ra v rc=0
	tfs_mkfs "$img2" 64m || return 1
	for v in 3 12 8192 x; do
		mkdir -p "$mnt2"
		expect_fail "readaround=$v" "readaround" timeout 10 \
			"$TWINFS" -f "$img2" "$mnt2" -o readaround=$v || {
			fusermount3 -uz "$mnt2" 2>/dev/null
			return 1
		}
	done
	dd if=/dev/urandom of="$TMP/ra.data" bs=1M count=4 status=none
	for v in 0 4096; do
		tfs_mount "$img2" "$mnt2" -o readaround=$v || return 1
		cp "$TMP/ra.data" "$mnt2/f.$v" && sync -f "$mnt2" || rc=1
		tfs_umount "$mnt2" || return 1
		echo 3 >/proc/sys/vm/drop_caches
		tfs_mount "$img2" "$mnt2" -o readaround=$v || return 1
		# 4 KiB reads in a scattered order: lone block reads
		python3 - "$mnt2/f.$v" "$TMP/ra.data" <<'PY' || rc=1
import os, sys
a, b = (open(p, 'rb', buffering=0) for p in sys.argv[1:3])
for i in range(1024):
    off = (i * 389) % 1024 * 4096
    if os.pread(a.fileno(), 4096, off) != os.pread(b.fileno(), 4096, off):
        sys.exit('block %d differs' % (off // 4096))
PY
		tfs_umount "$mnt2" || return 1
	done
	tfs_fsck_clean "$img2" || rc=1
	rm -f "$img2" "$TMP/ra.data"
	return $rc
}
run_step "-o readaround: bad sizes refused; 0 and 4096 read back right" t_readaround

t_write_read() {
	echo hello >"$MNT/hello"
	expect_eq "read back" hello "$(cat "$MNT/hello")"
	mkdir -p "$MNT/dir/sub"
	dd if=/dev/urandom of="$TMP/random" bs=1M count=8 status=none
	cp "$TMP/random" "$MNT/dir/sub/random"
	cmp "$TMP/random" "$MNT/dir/sub/random"
	df -k "$MNT" | tail -n1 | awk '{ exit !($2 > 1000000000) }' ||
		die "df does not show ~1 TiB: $(df -k "$MNT")"
}
run_test "write and read files and directories" t_write_read

t_umount_fsck() {
	tfs_umount "$MNT" && tfs_fsck_clean "$IMG"
}
run_step "fusermount3 -u: the daemon exits 0, fsck clean" t_umount_fsck

t_remount_data() {
	tfs_mount "$IMG" "$MNT" || return 1
	expect_eq "hello after remount" hello "$(cat "$MNT/hello")" &&
	cmp "$TMP/random" "$MNT/dir/sub/random" &&
	tfs_umount "$MNT" && tfs_fsck_clean "$IMG"
}
run_step "remount: the data is still there" t_remount_data

# mount(8) -> mount.fuse3 -> sh -c "twinfs IMG DIR -o ...".  mount.fuse3
# searches a fixed system PATH, not ours: unless twinfs is installed,
# link the build's binary into /usr/local/bin for this test only.
t_mount_t() {
	local pid
	if ! PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		command -v twinfs >/dev/null; then
		# (another run may have made the link meanwhile: then use it)
		if ln -s "$TWINFS" /usr/local/bin/twinfs 2>/dev/null; then
			CLEANUP_FILES+=(/usr/local/bin/twinfs)
		fi
		[ -x /usr/local/bin/twinfs ] || die "cannot link /usr/local/bin/twinfs" || return 1
	fi
	mount -t fuse.twinfs "$IMG" "$MNT" || return 1
	MOUNTS+=("$MNT")
	mountpoint -q "$MNT" || die "not mounted" || return 1
	pid=$(pgrep -f -- " $MNT( |\$)" | head -n1)
	[ -n "$pid" ] || die "no daemon for $MNT" || return 1
	TFS_PID[$MNT]=$pid
	findmnt -n -o FSTYPE "$MNT" | grep -q 'fuse\.twinfs\|fuse' ||
		die "fstype: $(findmnt -n -o FSTYPE "$MNT")" || return 1
	cmp "$TMP/random" "$MNT/dir/sub/random" || return 1
	echo via-mount >"$MNT/via-mount" || return 1
	umount "$MNT" || return 1
	# the daemon is not our child: wait for it to go
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && die "daemon still running" && return 1
	unset "TFS_PID[$MNT]"
	tfs_fsck_clean "$IMG" || return 1
	tfs_mount "$IMG" "$MNT" || return 1
	expect_eq "file written via mount -t" via-mount "$(cat "$MNT/via-mount")" &&
	tfs_umount "$MNT"
}
run_step "mount -t fuse.twinfs IMG DIR and umount DIR" t_mount_t

# SIGNAL: the daemon unmounts cleanly and keeps the data
t_signal() {
	local sig=$1 rc
	tfs_mount "$IMG" "$MNT" || return 1
	echo "$sig" >"$MNT/sig-$sig" || return 1
	kill -"$sig" "${TFS_PID[$MNT]}"
	tfs_wait_exit "$MNT"
	rc=$?
	[ $rc -eq 0 ] || die "daemon exited with $rc after SIG$sig" || return 1
	mountpoint -q "$MNT" && die "still mounted after SIG$sig" && return 1
	tfs_fsck_clean "$IMG" || return 1
	tfs_mount "$IMG" "$MNT" || return 1
	expect_eq "data after SIG$sig" "$sig" "$(cat "$MNT/sig-$sig")" &&
	tfs_umount "$MNT"
}
run_step "SIGTERM to the daemon: clean unmount, data kept" t_signal TERM
run_step "SIGINT to the daemon: clean unmount, data kept" t_signal INT

# SIGKILL: fsync'd data survives through the intent log; fsck replays it
t_sigkill() {
	local out rc
	tfs_mount "$IMG" "$MNT" || return 1
	py "$MNT/killed" <<'EOF' || return 1
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"survives")
os.fsync(fd)
os.close(fd)
EOF
	kill -KILL "${TFS_PID[$MNT]}"
	wait "${TFS_PID[$MNT]}" 2>/dev/null
	unset "TFS_PID[$MNT]"
	fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
	"$FSCK" -n "$IMG" || die "fsck -n after SIGKILL: exit $?" || return 1
	out=$("$FSCK" "$IMG")
	rc=$?
	echo "$out" | sed 's/^/    /'
	[ $rc -eq 0 ] || die "fsck after SIGKILL: exit $rc" || return 1
	tfs_fsck_clean "$IMG" || return 1
	tfs_mount "$IMG" "$MNT" || return 1
	expect_eq "fsync'd data after SIGKILL" survives "$(cat "$MNT/killed")" &&
	tfs_umount "$MNT"
}
run_step "SIGKILL after fsync: fsck replays the log, data kept" t_sigkill

# SIGKILL in the middle of a writer that fsyncs (in place and by
# rename), five times over on one image: every acknowledged version is
# there whole after each remount, and fsck finds the image clean
t_sigkill_loop() {
	local img=$TMP/kill.img mnt=$TMP/kill acks=$TMP/acks round pid
	tfs_mkfs "$img" 1g || return 1
	for round in 1 2 3 4 5; do
		tfs_mount "$img" "$mnt" || return 1
		"$PY" "$E2E_DIR/acker.py" write "$mnt" "$acks" "$round" &
		pid=$!
		TFS_PID[acker]=$pid          # the EXIT trap stops it too
		sleep "0.$((round * 3))"
		kill -KILL "${TFS_PID[$mnt]}"
		wait "${TFS_PID[$mnt]}" 2>/dev/null
		unset "TFS_PID[$mnt]"
		wait "$pid"
		unset "TFS_PID[acker]"
		fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"
		"$FSCK" -n "$img" >/dev/null ||
			die "round $round: fsck -n after SIGKILL: exit $?" || return 1
		tfs_mount "$img" "$mnt" || return 1
		"$PY" "$E2E_DIR/acker.py" check "$mnt" "$acks" ||
			die "round $round: acknowledged data lost" || return 1
		tfs_umount "$mnt" && tfs_fsck_clean "$img" || return 1
	done
	rm -f "$img" "$acks"
}
run_step "SIGKILL during fsyncs, five rounds: every acknowledged version whole" t_sigkill_loop

# umount returns while the daemon still writes its last CP: a mount,
# fsck -y or mkfs -f right after it waits for that daemon (the image is
# locked) instead of failing or writing under it
t_after_umount() {
	local img=$TMP/race.img mnt=$TMP/race out sum old
	tfs_mkfs "$img" 1g || return 1
	tfs_mount "$img" "$mnt" -o cp_interval=0 || return 1
	head -c 150M /dev/urandom >"$mnt/f"
	sum=$(md5sum <"$mnt/f")
	old=${TFS_PID[$mnt]}
	TFS_PID[race-old]=$old             # the EXIT trap stops it too
	umount "$mnt" || return 1
	tfs_mount "$img" "$mnt" || return 1
	wait "$old" || die "the first daemon exited with $?" || return 1
	unset "TFS_PID[race-old]"
	expect_eq "data after umount and an immediate mount" "$sum" \
		"$(md5sum <"$mnt/f")" || return 1
	head -c 150M /dev/urandom >"$mnt/g"
	sum=$(md5sum <"$mnt/g")
	umount "$mnt" || return 1
	out=$("$FSCK" -y "$img" 2>&1) ||
		die "fsck -y right after umount: exit $?: $out" || return 1
	grep -q "waiting for the program" <<<"$out" ||
		echo "    (the daemon had finished before fsck started)"
	tfs_wait_exit "$mnt" || return 1
	tfs_fsck_clean "$img" || return 1
	tfs_mount "$img" "$mnt" || return 1
	expect_eq "data after umount and an immediate fsck -y" "$sum" \
		"$(md5sum <"$mnt/g")" || return 1
	umount "$mnt" || return 1
	"$MKFS" -q -f -s 1g "$img" || die "mkfs -f right after umount" || return 1
	tfs_wait_exit "$mnt" || return 1
	tfs_fsck_clean "$img" && rm -f "$img"
}
run_step "right after umount: mount, fsck -y and mkfs -f wait for the last CP" t_after_umount

t_ro() {
	tfs_mount "$IMG" "$MNT" -o ro || return 1
	(
		set -e
		expect_eq "read on ro" hello "$(cat "$MNT/hello")"
		expect_fail "touch on ro" "Read-only file system" touch "$MNT/new"
		expect_fail "mkdir on ro" "Read-only file system" mkdir "$MNT/newdir"
		expect_fail "rm on ro" "Read-only file system" rm "$MNT/hello"
		expect_fail "mkfs -f on a mounted image" "is mounted" "$MKFS" -f "$IMG"
		expect_fail "fsck -y on a mounted image" "is mounted" "$FSCK" -y "$IMG"
		py "$MNT/hello" <<'EOF'
expect_err(errno.EROFS, os.open, sys.argv[1], os.O_WRONLY)
expect_err(errno.EROFS, os.truncate, sys.argv[1], 0)
expect_err(errno.EROFS, os.setxattr, sys.argv[1], "user.x", b"1")
expect_err(errno.EROFS, os.chmod, sys.argv[1], 0o600)
EOF
	)
	local rc=$?
	tfs_umount "$MNT" || return 1
	[ $rc -eq 0 ] && tfs_fsck_clean "$IMG"
}
run_step "-o ro: EROFS on writes; mkfs -f and fsck -y refuse a mounted image" t_ro

# snapshots through twinfsctl and MNT/.snapshot/NAME
t_snapshots() {
	local ctl=$BUILD/tools/twinfsctl rc
	tfs_mount "$IMG" "$MNT" || return 1
	(
		set -e
		echo v1 >"$MNT/snapfile"
		"$ctl" snapshot create "$MNT" s1
		echo v2 >"$MNT/snapfile"
		expect_eq "live file" v2 "$(cat "$MNT/snapfile")"
		expect_eq "file in the snapshot" v1 "$(cat "$MNT/.snapshot/s1/snapfile")"
		"$ctl" snapshot list "$MNT" | grep -q s1
		expect_fail "write into a snapshot" "Read-only file system" \
			touch "$MNT/.snapshot/s1/new"
		"$ctl" snapshot delete "$MNT" s1
		! "$ctl" snapshot list "$MNT" | grep -q s1
	)
	rc=$?
	tfs_umount "$MNT" || return 1
	[ $rc -eq 0 ] && tfs_fsck_clean "$IMG"
}
run_step "snapshots: create, read old data under .snapshot, delete" t_snapshots

t_mkfs_refuses() {
	local sum
	tfs_mkfs "$TMP/small.img" 64m
	sum=$(md5sum <"$TMP/small.img")
	expect_fail "mkfs over twinfs" "already holds a twinfs" "$MKFS" "$TMP/small.img"
	expect_fail "mkfs -s over twinfs" "already holds a twinfs" "$MKFS" -s 32m "$TMP/small.img"
	expect_eq "image unchanged" "$sum" "$(md5sum <"$TMP/small.img")"
	tfs_fsck_clean "$TMP/small.img"
	truncate -s 64M "$TMP/ext4.img"
	mkfs.ext4 -q -F "$TMP/ext4.img"
	expect_fail "mkfs over ext4" "ext4" "$MKFS" "$TMP/ext4.img"
	"$MKFS" -q -f "$TMP/ext4.img"
	tfs_fsck_clean "$TMP/ext4.img"
	"$MKFS" -q -F -L again "$TMP/ext4.img"
	tfs_fsck_clean "$TMP/ext4.img"
	expect_fail "mkfs without -s on a missing file" "-s SIZE" "$MKFS" "$TMP/nope.img"
	expect_fail "mkfs too small" "too small" "$MKFS" -s 512k "$TMP/tiny.img"
	[ ! -e "$TMP/tiny.img" ] || die "too-small image left behind"
	"$MKFS" -n -s 1g "$TMP/dry.img" | grep -q "Would create"
	[ ! -e "$TMP/dry.img" ] || die "mkfs -n created a file"
}
run_test "mkfs.twinfs refuses to overwrite twinfs/ext4 without -f" t_mkfs_refuses

t_fsck_codes() {
	local rc
	set +e
	"$FSCK" -n -y "$IMG" >/dev/null 2>&1; rc=$?
	expect_eq "-n -y (usage)" 16 $rc || return 1
	"$FSCK" -n "$TMP/missing.img" >/dev/null 2>&1; rc=$?
	expect_eq "missing image" 8 $rc || return 1
	"$FSCK" -n --json "$IMG" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["problems"] == [] and d["exit"] == 0 else 1)'
	expect_eq "--json" 0 $? || return 1
	"$FSCK" -n -C 3 "$IMG" 3>"$TMP/progress" >/dev/null; rc=$?
	expect_eq "-C 3" 0 $rc || return 1
	grep -q '^1 0 1 ' "$TMP/progress" && grep -q '^1 1 1 ' "$TMP/progress" ||
		die "progress lines: $(cat "$TMP/progress")"
	# and the blocks checked out of those in use, as the walk goes
	awk '$1 == 1 && $3 > 1 && $2 == $3 { found = 1 } END { exit !found }' \
		"$TMP/progress" || die "no block counts in: $(cat "$TMP/progress")"
}
run_test "fsck.twinfs exit codes (16 usage, 8 missing), --json, -C" t_fsck_codes

# a damaged data block: -n reports it (4), -y repairs it (1), then clean
t_fsck_repair() {
	local rc
	tfs_mkfs "$TMP/rep.img" 64m || return 1
	tfs_mount "$TMP/rep.img" "$TMP/rep" || return 1
	head -c 16384 "$TMP/random" >"$TMP/rep/f" || return 1
	tfs_umount "$TMP/rep" || return 1
	"$PY" - "$TMP/rep.img" "$TMP/random" <<'EOF' || return 1
import sys
img = open(sys.argv[1], "r+b")
want = open(sys.argv[2], "rb").read(4096)
data = img.read()
off = data.find(want)
if off < 0 or off % 4096:
    sys.exit("the file's first block is not in the image (off %d)" % off)
img.seek(off + 100)
img.write(bytes(b ^ 0xff for b in want[100:108]))
EOF
	"$FSCK" -n "$TMP/rep.img"; rc=$?
	expect_eq "fsck -n on a damaged image" 4 $rc || return 1
	"$FSCK" -p "$TMP/rep.img"; rc=$?
	expect_eq "fsck -p on a damaged image" 4 $rc || return 1
	"$FSCK" -y "$TMP/rep.img"; rc=$?
	expect_eq "fsck -y on a damaged image" 1 $rc || return 1
	tfs_fsck_clean "$TMP/rep.img"
}
run_step "fsck.twinfs: damaged block found (4), repaired with -y (1)" t_fsck_repair

t_help() {
	local tool
	for tool in "$MKFS" "$FSCK" "$TWINFS" "$BUILD/tools/twinfsctl" "$BUILD/tools/twinfs-dump"; do
		[ -x "$tool" ] || continue
		"$tool" --help >"$TMP/help.out" 2>&1 || die "$tool --help: exit $?"
		[ -s "$TMP/help.out" ] || die "$tool --help printed nothing"
		"$tool" --version >"$TMP/version.out" 2>&1 || die "$tool --version: exit $?"
		grep -q '[0-9]\.[0-9]' "$TMP/version.out" || die "$tool --version: $(cat "$TMP/version.out")"
		"$tool" -h >/dev/null 2>&1 || die "$tool -h: exit $?"
		"$tool" -V >/dev/null 2>&1 || die "$tool -V: exit $?"
	done
	"$MKFS" --version | grep -q "^mkfs.twinfs .* (on-disk format [0-9]*)$"
	"$FSCK" --version | grep -q "^fsck.twinfs .* (on-disk format [0-9]*)$"
}
run_test "every tool: --help, -h, --version, -V exit 0" t_help

summary
