/* SPDX-License-Identifier: GPL-2.0-or-later */
/* csum.c - block checksums: XXH3-128 from libxxhash. */
#include <xxhash.h>

#include "fs_impl.h"

void csum_block(const void *data, size_t len, le64 out[2])
{
	XXH128_hash_t h = XXH3_128bits(data, len);

	out[0] = put64(h.low64);
	out[1] = put64(h.high64);
}

bool csum_equal(const le64 a[2], const le64 b[2])
{
	return get64(a[0]) == get64(b[0]) && get64(a[1]) == get64(b[1]);
}

uint64_t csum_name(const char *name, size_t len)
{
	return XXH3_64bits(name, len);
}
