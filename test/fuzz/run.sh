#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# test/fuzz/run.sh [SECONDS] - build the libFuzzer target with clang
# (ASan + UBSan) and run it over the corpus for SECONDS (default 120).
# New interesting inputs go to a scratch copy; the kept corpus is
# test/fuzz/corpus.  Exit status is libFuzzer's: nonzero on a crash.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-120}
out=${FUZZ_BUILD:-build-fuzz}
mkdir -p "$out"
# the core: fs/ without the daemon's front end (main, ctl, fuse_*)
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DTFS_DEBUG=1 -std=gnu11 -Ifs \
	$(ls fs/*.c | grep -v -e '^fs/main\.c$' -e '^fs/ctl\.c$' -e '^fs/fuse_') \
	test/fuzz/fuzz_image.c -lxxhash -lpthread -o "$out/fuzz_image" || {
	echo "test/fuzz/run.sh: the fuzz target did not build" >&2
	exit 2
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp test/fuzz/corpus/* "$work"/ 2>/dev/null || true
echo "== fuzzing for ${secs}s (corpus: $(ls test/fuzz/corpus | wc -l) inputs)"
ASAN_OPTIONS=detect_leaks=0 "$out/fuzz_image" -max_total_time="$secs" \
	-timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$out/" "$work"
