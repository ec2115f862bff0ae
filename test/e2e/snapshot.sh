#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# snapshot.sh - snapshots and the control socket on a real mount:
# twinfsctl status/cp/snapshot create|list|delete|rollback|diff, the
# .snapshot directory (hidden, reachable, read-only, stable inode
# numbers), SIGUSR1, keep_cps, and fsck after each step.
. "$(dirname "$0")/lib.sh"

CTL=$BUILD/tools/twinfsctl
IMG=$TMP/snap.img
MNT=$TMP/snap

setup() {
	tfs_mkfs "$IMG" 256M && tfs_mount "$IMG" "$MNT"
}

t_status_and_cp() {
	local g1 g2
	echo data >"$MNT/a"
	g1=$("$CTL" -H status "$MNT" | cut -f1)
	"$CTL" cp "$MNT" >/dev/null
	g2=$("$CTL" -H status "$MNT" | cut -f1)
	[ "$g2" -gt "$g1" ] || die "cp did not advance the generation ($g1 -> $g2)"
	"$CTL" --json status "$MNT" | py -c 'import json,sys; json.load(sys.stdin)' ||
		die "status --json is not JSON"
	# SIGUSR1 asks for a CP too
	echo more >>"$MNT/a"
	kill -USR1 "${TFS_PID[$MNT]}"
	for _ in $(seq 50); do
		g1=$("$CTL" -H status "$MNT" | cut -f1)
		[ "$g1" -gt "$g2" ] && return 0
		sleep 0.1
	done
	die "SIGUSR1 did not run a CP"
}

t_create_browse() {
	local ino1 ino2 out
	mkdir -p "$MNT/dir"
	echo "version 1" >"$MNT/dir/file"
	"$CTL" snapshot create "$MNT" first
	echo "version 2" >"$MNT/dir/file"
	expect_eq "snapshot content" "version 1" "$(cat "$MNT/.snapshot/first/dir/file")"
	expect_eq "live content" "version 2" "$(cat "$MNT/dir/file")"
	# hidden from readdir of the root, so find and du do not walk it
	ls -a "$MNT" | grep -qx .snapshot && die ".snapshot is listed"
	out=$(find "$MNT" -name file | wc -l)
	expect_eq "find sees only the live file" 1 "$out"
	# restore a file with cp
	cp "$MNT/.snapshot/first/dir/file" "$MNT/restored"
	expect_eq "restored" "version 1" "$(cat "$MNT/restored")"
	ino1=$(stat -c %i "$MNT/.snapshot/first/dir/file")
	tfs_umount "$MNT" && tfs_mount "$IMG" "$MNT"
	ino2=$(stat -c %i "$MNT/.snapshot/first/dir/file")
	expect_eq "inode number across remounts" "$ino1" "$ino2"
}

t_readonly() {
	py "$MNT" <<'PYEOF'
m = sys.argv[1] + "/.snapshot/first"
expect_err(errno.EROFS, os.open, m + "/dir/file", os.O_WRONLY)
expect_err(errno.EROFS, os.open, m + "/new", os.O_CREAT | os.O_WRONLY, 0o644)
expect_err(errno.EROFS, os.unlink, m + "/dir/file")
expect_err(errno.EROFS, os.mkdir, m + "/d2")
expect_err(errno.EROFS, os.rename, m + "/dir/file", sys.argv[1] + "/x")
expect_err(errno.EROFS, os.chmod, m + "/dir/file", 0o600)
expect_err(errno.EROFS, os.setxattr, m + "/dir/file", "user.a", b"1")
expect_err(errno.EEXIST, os.mkdir, sys.argv[1] + "/.snapshot")
PYEOF
}

t_list_formats() {
	local line out
	"$CTL" snapshot create "$MNT" second third
	line=$("$CTL" -H snapshot list "$MNT" | head -1)
	[ "$(awk -F'\t' '{print NF}' <<<"$line")" = 5 ] || die "-H line: $line"
	expect_eq "names in order" "first second third" \
		"$("$CTL" -H snapshot list "$MNT" | cut -f1 | tr '\n' ' ' | sed 's/ $//')"
	"$CTL" --json snapshot list "$MNT" | py -c 'import json,sys; l=json.load(sys.stdin); assert len(l)==3' ||
		die "list --json"
	out=$("$CTL" snapshot list "$MNT")
	head -1 <<<"$out" | grep -q NAME || die "no header"
	expect_fail "duplicate name" "File exists" "$CTL" snapshot create "$MNT" first
	expect_fail "missing name" "No such file" "$CTL" snapshot delete "$MNT" nope
}

t_diff() {
	local out
	"$CTL" snapshot create "$MNT" before-diff
	echo new >"$MNT/added"
	echo changed >"$MNT/dir/file"
	mv "$MNT/restored" "$MNT/renamed"
	out=$("$CTL" snapshot diff "$MNT" before-diff)
	grep -qx $'+\t/added' <<<"$out" || die "no + line: $out"
	grep -qx $'M\t/dir/file' <<<"$out" || die "no M line: $out"
	grep -qx $'R\t/restored -> /renamed' <<<"$out" || die "no R line: $out"
}

t_rollback() {
	expect_fail "rollback past newer snapshots" "newer snapshots" \
		"$CTL" snapshot rollback "$MNT" second
	"$CTL" snapshot rollback --force "$MNT" second
	expect_eq "rolled back" "version 2" "$(cat "$MNT/dir/file")"
	[ ! -e "$MNT/added" ] || die "added survived the rollback"
	expect_eq "snapshots after --force" "first second" \
		"$("$CTL" -H snapshot list "$MNT" | cut -f1 | tr '\n' ' ' | sed 's/ $//')"
	echo after >"$MNT/after" && sync
}

# The kernel keeps names, attributes and file pages for an hour
# (cache_timeout): everything a snapshot or a rollback changes must be
# invalidated, or these reads would see the old tree.
t_kernel_cache() {
	local s=$MNT/.snapshot
	# a name looked up before it exists (a cached negative entry)
	[ ! -e "$s/coh" ] || die ".snapshot/coh exists before it is made"
	echo one >"$MNT/cohfile"
	mkdir -p "$MNT/cohdir" && echo keep >"$MNT/cohdir/gone-later"
	"$CTL" snapshot create "$MNT" coh
	[ -d "$s/coh" ] || die "new snapshot hidden by a cached negative entry"
	cat "$MNT/cohfile" >/dev/null  # pages and attributes cached
	echo two-longer >"$MNT/cohfile"
	rm "$MNT/cohdir/gone-later"
	[ ! -e "$MNT/cohdir/gone-later" ] || die "rm did not take"
	echo new >"$MNT/cohdir/born-later"
	stat "$MNT/cohdir/born-later" >/dev/null
	"$CTL" snapshot rollback "$MNT" coh
	expect_eq "file content after rollback" "one" "$(cat "$MNT/cohfile")"
	expect_eq "file size after rollback" 4 "$(stat -c %s "$MNT/cohfile")"
	[ -e "$MNT/cohdir/gone-later" ] || die "a name the rollback restored is hidden"
	[ ! -e "$MNT/cohdir/born-later" ] || die "a name the rollback removed is still seen"
	"$CTL" snapshot delete "$MNT" coh
	[ ! -e "$s/coh" ] || die "deleted snapshot still reachable"
	rm -rf "$MNT/cohfile" "$MNT/cohdir"
}

t_delete_frees() {
	local before after
	"$CTL" snapshot delete "$MNT" first second
	rm -rf "$MNT"/*
	"$CTL" cp "$MNT" >/dev/null
	before=$(stat -f -c %f "$MNT")
	dd if=/dev/urandom of="$MNT/big" bs=1M count=20 status=none
	"$CTL" snapshot create "$MNT" hold
	rm "$MNT/big"
	"$CTL" cp "$MNT" >/dev/null
	after=$(stat -f -c %f "$MNT")
	[ $((before - after)) -gt 5000 ] || die "the snapshot holds no space ($before/$after)"
	"$CTL" snapshot delete "$MNT" hold
	"$CTL" cp "$MNT" >/dev/null
	after=$(stat -f -c %f "$MNT")
	[ $((before - after)) -le 4 ] || die "space not back: $before -> $after"
}

t_keep_cps() {
	local img=$TMP/keep.img mnt=$TMP/keep n
	tfs_mkfs "$img" 64M && tfs_mount "$img" "$mnt" -o keep_cps=3600,cp_interval=1
	for i in 1 2 3; do
		echo "v$i" >"$mnt/f"
		"$CTL" cp "$mnt" >/dev/null
	done
	n=$(ls "$mnt/.snapshot" | grep -c '^@')
	[ "$n" -ge 3 ] || die "only $n CP checkpoints"
	# the file as it was two CPs ago
	ls "$mnt/.snapshot" | grep '^@' | sort -t@ -k2 -n | tail -3 | head -1 >"$TMP/at"
	expect_eq "an older CP" "v1" "$(cat "$mnt/.snapshot/$(cat "$TMP/at")/f")"
	tfs_umount "$mnt" && tfs_fsck_clean "$img"
}

t_dump() {
	local dump=$BUILD/tools/twinfs-dump out
	out=$("$dump" "$IMG")
	grep -q "^slot 0: valid" <<<"$out" || die "dump super: $out"
	grep -q "^current: generation" <<<"$out" || die "dump super: $out"
	"$dump" --json "$IMG" | py -c 'import json,sys; d=json.load(sys.stdin); assert len(d["slots"]) == 2' ||
		die "dump --json super"
	"$dump" "$IMG" snapshots | grep -q "^first\|^second\|NAME" || die "dump snapshots"
	"$dump" "$IMG" inode /dir/file | grep -q "size" || die "dump inode by path"
	"$dump" --json "$IMG" map /dir/file | py -c 'import json,sys; m=json.load(sys.stdin); assert m and m[0]["block"] > 0' ||
		die "dump map"
	out=$("$dump" "$IMG" block 0) # whole output: head would SIGPIPE it
	head -1 <<<"$out" | grep -q "^0000 " || die "dump block: $(head -2 <<<"$out")"
	expect_fail "dump of a missing path" "No such file" "$dump" "$IMG" inode /nope
	expect_fail "dump of a block past the end" "not a block number" "$dump" "$IMG" block 999999999
}

t_visible() {
	local img=$TMP/vis.img mnt=$TMP/vis
	tfs_mkfs "$img" 64M && tfs_mount "$img" "$mnt" -o snapdir=visible
	ls -a "$mnt" | grep -qx .snapshot || die ".snapshot not listed with snapdir=visible"
	tfs_umount "$mnt"
}

run_step "mount" setup
run_test "status, cp and SIGUSR1" t_status_and_cp
run_step "create and browse .snapshot" t_create_browse
run_test "snapshots are read-only (EROFS)" t_readonly
run_test "list -H / --json, errors" t_list_formats
run_test "diff: + M R" t_diff
run_test "rollback (refused, then --force)" t_rollback
run_test "kernel caches follow snapshot create/delete and rollback" t_kernel_cache
run_test "delete returns the space" t_delete_frees
run_step "unmount, fsck clean" eval 'tfs_umount "$MNT" && tfs_fsck_clean "$IMG"'
run_step "a file for twinfs-dump" eval 'tfs_mount "$IMG" "$MNT" && mkdir -p "$MNT/dir" &&
	dd if=/dev/urandom of="$MNT/dir/file" bs=64k count=4 status=none &&
	tfs_umount "$MNT"'
run_test "twinfs-dump: super, snapshots, inode, map, block" t_dump
run_step "keep_cps" t_keep_cps
run_step "snapdir=visible" t_visible
summary
