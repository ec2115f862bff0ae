/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * harness.h - shared helpers for the Check suites: memory images, a seeded
 * RNG (seed from TWINFS_SEED or the clock, printed so a failure can be
 * replayed), fill/compare patterns, mount helpers that fail the test on
 * error, and h_verify() which every test ends with.
 */
#ifndef TWINFS_TEST_HARNESS_H
#define TWINFS_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twinfs.h"

extern const struct fs_cred h_cred;

/* ---- RNG: xoshiro256**, one global stream per test process ---- */
struct h_rng {
	uint64_t s[4];
};
/* Seed the global RNG: TWINFS_SEED if set, else the clock; prints it. */
uint64_t h_seed_init(const char *test);
uint64_t h_seed(void);
void h_rng_seed(struct h_rng *r, uint64_t seed);
uint64_t h_rng_next(struct h_rng *r);
uint64_t h_rand(void);                  /* global stream */
uint64_t h_rand_below(uint64_t n);      /* 0 .. n-1; n > 0 */

/* Send core log messages below warnings (e.g. "replayed N records") to
 * nowhere unless TWINFS_VERBOSE is set. */
void h_quiet_log(void);

/* ---- patterns: byte at file offset off of stream tag ---- */
uint8_t h_pat_byte(uint64_t tag, uint64_t off);
void h_fill(void *buf, size_t len, uint64_t tag, uint64_t off);
/* Returns the index of the first mismatch, or -1 if all match. */
long h_cmp(const void *buf, size_t len, uint64_t tag, uint64_t off);
uint64_t h_hash(const void *buf, size_t len, uint64_t h);

/* ---- images and mounts ---- */
struct bdev *h_image(uint64_t nblocks);            /* formatted, memory */
struct bdev *h_image_copy(struct bdev *src);       /* memory copy */
struct fs *h_mount(struct bdev *bd, bool ro);      /* no_cp_thread */
struct fs *h_mount_opts(struct bdev *bd, const struct fs_opts *o);
void h_unmount(struct fs *fs);
/* fs_verify; each problem is printed and the test fails. */
void h_verify(struct bdev *bd);
/* Like h_verify but returns the problem count (printing each). */
int h_verify_count(struct bdev *bd);

/* ---- small wrappers that assert success ---- */
uint64_t h_create(struct fs *fs, uint64_t dir, const char *name);
uint64_t h_mkdir(struct fs *fs, uint64_t dir, const char *name);
uint64_t h_lookup(struct fs *fs, uint64_t dir, const char *name); /* 0: none */
void h_write(struct fs *fs, uint64_t ino, const void *buf, size_t len,
	     uint64_t off);
/* Whole file into a malloc'd buffer; *len gets its size. */
uint8_t *h_read_all(struct fs *fs, uint64_t ino, size_t *len);

/* ---- tree dumps: a canonical text of a whole tree (paths sorted; type,
 * nlink, size, content hash, symlink target, xattrs; no times).  Two trees
 * are equal exactly when their dumps are.  Caller frees. */
char *h_dump_tree(struct fs *fs);

#endif
