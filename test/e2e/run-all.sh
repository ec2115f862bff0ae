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
for t in mount.sh posix.sh snapshot.sh; do
	if ! "$dir/$t"; then
		failed+=("$t")
	fi
done
echo "e2e: $((SECONDS - start)) s"
if ((${#failed[@]})); then
	echo "e2e: FAILED: ${failed[*]}"
	exit 1
fi
echo "e2e: all scripts passed"
