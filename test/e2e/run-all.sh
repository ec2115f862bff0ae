#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# run-all.sh - every end-to-end test script, one after another, on real
# FUSE mounts.  TWINFS_BUILD names the build dir (default build-ci).
# Exit status 0 only if every script passed.
set -uo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
failed=()
start=$SECONDS
# FUSE over io_uring (Linux 6.14+) is used when the fuse module allows
# it: every script runs with it off, then mount.sh and posix.sh again
# with it on; the module's setting is put back however this ends.
param=/sys/module/fuse/parameters/enable_uring
saved=$(cat "$param" 2>/dev/null || true)
restore() { [ -z "$saved" ] || echo "$saved" >"$param" 2>/dev/null || true; }
trap restore EXIT
if [ -n "$saved" ]; then
	echo N >"$param"
	export TWINFS_TRANSPORT=/dev/fuse
fi
for t in mount.sh posix.sh snapshot.sh; do
	if ! "$dir/$t"; then
		failed+=("$t")
	fi
done
if [ -n "$saved" ] && echo Y >"$param" 2>/dev/null; then
	export TWINFS_TRANSPORT=io_uring
	echo "== FUSE over io_uring (enable_uring=Y)"
	for t in mount.sh posix.sh; do
		if ! "$dir/$t"; then
			failed+=("$t (io_uring)")
		fi
	done
else
	echo "e2e: this kernel has no FUSE over io_uring: that path not run"
fi
echo "e2e: $((SECONDS - start)) s"
if ((${#failed[@]})); then
	echo "e2e: FAILED: ${failed[*]}"
	exit 1
fi
echo "e2e: all scripts passed"
