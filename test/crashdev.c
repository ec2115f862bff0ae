/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * crashdev.c - see crashdev.h.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crashdev.h"
#include "format.h"

#define TORN_PREFIX 512

struct crashdev {
	struct bdev *bd;      /* what the file system sees */
	uint8_t *base;        /* image when recording started */
	uint8_t *cur;         /* image with every write applied */
	uint64_t nblocks;
	uint64_t *blk;        /* block number of write i (0-based) */
	uint8_t *data;        /* contents of write i */
	uint64_t nw, cap;
	uint64_t nflush;
	uint64_t durable;     /* writes 0 .. durable-1 covered by a flush */
	uint64_t *flush_at;   /* flush j covered writes 0 .. flush_at[j]-1 */
	uint64_t fcap;
	pthread_mutex_t lock;
};

static int cd_read(struct bdev *bd, uint64_t blkno, void *buf)
{
	struct crashdev *cd = bd->priv;

	pthread_mutex_lock(&cd->lock);
	memcpy(buf, cd->cur + blkno * TFS_BLOCK_SIZE, TFS_BLOCK_SIZE);
	pthread_mutex_unlock(&cd->lock);
	return 0;
}

static int cd_write(struct bdev *bd, uint64_t blkno, const void *buf)
{
	struct crashdev *cd = bd->priv;

	pthread_mutex_lock(&cd->lock);
	if (cd->nw == cd->cap) {
		cd->cap = cd->cap ? cd->cap * 2 : 256;
		cd->blk = realloc(cd->blk, cd->cap * sizeof(*cd->blk));
		cd->data = realloc(cd->data, cd->cap * TFS_BLOCK_SIZE);
		if (!cd->blk || !cd->data)
			abort();
	}
	cd->blk[cd->nw] = blkno;
	memcpy(cd->data + cd->nw * TFS_BLOCK_SIZE, buf, TFS_BLOCK_SIZE);
	memcpy(cd->cur + blkno * TFS_BLOCK_SIZE, buf, TFS_BLOCK_SIZE);
	cd->nw++;
	pthread_mutex_unlock(&cd->lock);
	return 0;
}

static int cd_flush(struct bdev *bd)
{
	struct crashdev *cd = bd->priv;

	pthread_mutex_lock(&cd->lock);
	if (cd->nflush == cd->fcap) {
		cd->fcap = cd->fcap ? cd->fcap * 2 : 64;
		cd->flush_at = realloc(cd->flush_at,
				       cd->fcap * sizeof(*cd->flush_at));
		if (!cd->flush_at)
			abort();
	}
	cd->flush_at[cd->nflush++] = cd->nw;
	cd->durable = cd->nw;
	pthread_mutex_unlock(&cd->lock);
	return 0;
}

static void cd_close(struct bdev *bd)
{
	struct crashdev *cd = bd->priv;

	free(cd->base);
	free(cd->cur);
	free(cd->blk);
	free(cd->data);
	free(cd->flush_at);
	pthread_mutex_destroy(&cd->lock);
	free(cd);
}

static const struct bdev_ops cd_ops = {
	.read = cd_read, .write = cd_write, .flush = cd_flush,
	.close = cd_close,
};

struct crashdev *cd_new(struct bdev *base)
{
	struct crashdev *cd = calloc(1, sizeof(*cd));
	size_t size = base->nblocks * TFS_BLOCK_SIZE;

	ck_assert_ptr_nonnull(cd);
	cd->nblocks = base->nblocks;
	cd->base = malloc(size);
	cd->cur = malloc(size);
	ck_assert(cd->base && cd->cur);
	for (uint64_t b = 0; b < base->nblocks; b++)
		ck_assert_int_eq(bdev_read(base, b, cd->cur + b * TFS_BLOCK_SIZE),
				 0);
	memcpy(cd->base, cd->cur, size);
	pthread_mutex_init(&cd->lock, NULL);
	cd->bd = calloc(1, sizeof(*cd->bd));
	ck_assert_ptr_nonnull(cd->bd);
	cd->bd->ops = &cd_ops;
	cd->bd->nblocks = base->nblocks;
	cd->bd->priv = cd;
	return cd;
}

struct bdev *cd_bdev(struct crashdev *cd)
{
	return cd->bd;
}

uint64_t cd_writes(struct crashdev *cd)
{
	return cd->nw;
}

uint64_t cd_flushes(struct crashdev *cd)
{
	return cd->nflush;
}

uint64_t cd_durable(struct crashdev *cd)
{
	return cd->durable;
}

void cd_reset(struct crashdev *cd)
{
	memcpy(cd->base, cd->cur, cd->nblocks * TFS_BLOCK_SIZE);
	cd->nw = cd->nflush = cd->durable = 0;
}

/* Writes 0 .. result-1 were covered by a flush issued before write n-1
 * (0-based) started. */
static uint64_t durable_before(struct crashdev *cd, uint64_t n)
{
	uint64_t d = 0;

	for (uint64_t j = 0; j < cd->nflush; j++)
		if (cd->flush_at[j] <= n - 1 && cd->flush_at[j] > d)
			d = cd->flush_at[j];
	return d;
}

struct bdev *cd_survivor(struct crashdev *cd, uint64_t n,
			 enum cd_policy policy, enum cd_tear tear,
			 struct h_rng *rng)
{
	struct bdev *out = NULL;
	uint8_t *img;
	uint64_t d;

	ck_assert(n >= 1 && n <= cd->nw + 1);
	ck_assert_int_eq(bdev_mem_new(cd->nblocks, &out), 0);
	img = bdev_mem_data(out);
	memcpy(img, cd->base, cd->nblocks * TFS_BLOCK_SIZE);
	d = durable_before(cd, n);
	for (uint64_t i = 0; i < n - 1; i++) {
		bool keep = i < d || policy == CD_KEEP_UNFLUSHED ||
			    (policy == CD_RANDOM_UNFLUSHED &&
			     (h_rng_next(rng) & 1));
		if (keep)
			memcpy(img + cd->blk[i] * TFS_BLOCK_SIZE,
			       cd->data + i * TFS_BLOCK_SIZE, TFS_BLOCK_SIZE);
	}
	if (n <= cd->nw && tear != CD_TEAR_DROP) {
		uint8_t *dst = img + cd->blk[n - 1] * TFS_BLOCK_SIZE;
		const uint8_t *src = cd->data + (n - 1) * TFS_BLOCK_SIZE;
		size_t len = tear == CD_TEAR_NONE ? TFS_BLOCK_SIZE : TORN_PREFIX;

		memcpy(dst, src, len);
		if (tear == CD_TEAR_GARBAGE)
			for (size_t i = len; i < TFS_BLOCK_SIZE; i += 8) {
				uint64_t g = h_rng_next(rng);
				memcpy(dst + i, &g, 8);
			}
	}
	return out;
}

void cd_free(struct crashdev *cd)
{
	if (cd)
		bdev_close(cd->bd);
}
