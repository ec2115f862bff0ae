/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * alloc.c - the allocation map (a metafile of bits) and the rules that
 * keep committed blocks safe.
 *
 * W1: a block set in the durable root's map is never written.  Blocks
 *     are handed out only by alloc_block(), which takes clear bits only.
 * W2: a block freed in CP n is cleared in CP n's map but stays in the
 *     hold set, so alloc_block() skips it, until CP n's superblock is
 *     durable (alloc_cp_durable).  Blocks freed between CPs wait in
 *     `later` and are cleared by the next CP (alloc_cp_begin).
 * Debug builds keep `guard`, a copy of the durable map, and check every
 * device write against it (alloc_guard_check); the test suite runs so.
 */
#include <stdlib.h>

#include "fs_impl.h"

void u64vec_push(struct u64vec *v, uint64_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		uint64_t *nv = realloc(v->v, cap * sizeof(*nv));
		VERIFY(nv);
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = x;
}

void u64vec_free(struct u64vec *v)
{
	free(v->v);
	memset(v, 0, sizeof(*v));
}

static size_t set_slot(const struct u64set *s, uint64_t x)
{
	return (size_t)((x * 0x9e3779b97f4a7c15ull) >> 20) & (s->cap - 1);
}

static bool set_has(const struct u64set *s, uint64_t x)
{
	if (!s->n)
		return false;
	for (size_t i = set_slot(s, x);; i = (i + 1) & (s->cap - 1)) {
		if (s->v[i] == x)
			return true;
		if (s->v[i] == 0)
			return false;
	}
}

static void set_add(struct u64set *s, uint64_t x)
{
	if ((s->n + 1) * 2 > s->cap) {
		struct u64set ns = { calloc(s->cap ? s->cap * 2 : 256,
					    sizeof(uint64_t)), 0,
				     s->cap ? s->cap * 2 : 256 };
		VERIFY(ns.v);
		for (size_t i = 0; i < s->cap; i++)
			if (s->v[i])
				set_add(&ns, s->v[i]);
		free(s->v);
		*s = ns;
	}
	for (size_t i = set_slot(s, x);; i = (i + 1) & (s->cap - 1)) {
		if (s->v[i] == x)
			return;
		if (s->v[i] == 0) {
			s->v[i] = x;
			s->n++;
			return;
		}
	}
}

static void set_clear(struct u64set *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

#ifdef TFS_DEBUG
static void guard_check(void *arg, uint64_t blkno)
{
	struct fs *fs = arg;

	if (blkno < TFS_LOG_START + get64(fs->sb.s_log_blocks))
		return; /* superblock ring and log: written in place */
	if (fs->al.guard[blkno / 8] & (1u << (blkno % 8)))
		tfs_panic(__FILE__, __LINE__,
			  "W1: write to block %llu, which the durable root uses",
			  (unsigned long long)blkno);
}
#endif

int alloc_init(struct fs *fs)
{
	memset(&fs->al, 0, sizeof(fs->al));
	fs->al.cursor = TFS_LOG_START + get64(fs->sb.s_log_blocks);
	return 0;
}

/* Debug builds: load the durable map into the guard and hook the device. */
int alloc_guard_load(struct fs *fs)
{
#ifdef TFS_DEBUG
	uint64_t nb = get64(fs->sb.s_nblocks);
	uint64_t nmap = (nb + TFS_BITS_PER_BLOCK - 1) / TFS_BITS_PER_BLOCK;

	fs->al.guard = calloc(1, nmap * TFS_BLOCK_SIZE);
	if (!fs->al.guard)
		return -ENOMEM;
	for (uint64_t i = 0; i < nmap; i++) {
		struct buf *b;
		uint64_t next;
		int rc = tree_next(fs, OWN_AFILE, i, true, &next);
		if (rc < 0)
			return rc;
		if (rc == 0)
			break;
		i = next;
		rc = buf_get(fs, OWN_AFILE, 0, i, 0, &b);
		if (rc)
			return rc;
		if (b)
			memcpy(fs->al.guard + i * TFS_BLOCK_SIZE, b->data,
			       TFS_BLOCK_SIZE);
	}
	fs->bd->write_check = guard_check;
	fs->bd->write_check_arg = fs;
#endif
	return 0;
}

void alloc_destroy(struct fs *fs)
{
	if (fs->bd && fs->bd->write_check_arg == fs) {
		fs->bd->write_check = NULL;
		fs->bd->write_check_arg = NULL;
	}
	free(fs->al.guard);
	set_clear(&fs->al.hold);
	u64vec_free(&fs->al.later);
	u64vec_free(&fs->al.guard_set);
	u64vec_free(&fs->al.guard_clear);
}

/* Set or clear the bit of blkno.  Returns the bit's old value or -errno. */
static int map_update(struct fs *fs, uint64_t blkno, bool used)
{
	struct buf *b;
	uint8_t *byte, mask = (uint8_t)(1u << (blkno % 8));
	int rc = buf_get(fs, OWN_AFILE, 0, blkno / TFS_BITS_PER_BLOCK,
			 GET_CREATE, &b);

	if (rc)
		return rc;
	rc = buf_dirty(fs, b);
	if (rc)
		return rc;
	byte = &b->data[(blkno % TFS_BITS_PER_BLOCK) / 8];
	rc = (*byte & mask) != 0;
	if (used)
		*byte |= mask;
	else
		*byte &= (uint8_t)~mask;
	return rc;
}

int alloc_set(struct fs *fs, uint64_t blkno, bool used)
{
	int old = map_update(fs, blkno, used);

	if (old < 0)
		return old;
	if (old != used)
		fs->sb.s_used_blocks = put64(get64(fs->sb.s_used_blocks) +
					     (used ? 1 : (uint64_t)-1));
	return old;
}

/* CP phase A: the next clear, unheld block from the cursor on. */
int alloc_block(struct fs *fs, uint64_t *out)
{
	uint64_t nb = get64(fs->sb.s_nblocks);
	uint64_t first = TFS_LOG_START + get64(fs->sb.s_log_blocks);
	uint64_t blk = fs->al.cursor, scanned = 0;

	if (blk < first || blk >= nb)
		blk = first;
	while (scanned < nb) {
		struct buf *b;
		uint64_t bi = blk / TFS_BITS_PER_BLOCK;
		uint64_t end = (bi + 1) * TFS_BITS_PER_BLOCK;
		int rc = buf_get(fs, OWN_AFILE, 0, bi, 0, &b);

		if (rc)
			return rc;
		if (end > nb)
			end = nb;
		for (; blk < end; blk++, scanned++) {
			uint64_t bit = blk % TFS_BITS_PER_BLOCK;
			if (b && bit % 64 == 0 && blk + 64 <= end &&
			    ((uint64_t *)b->data)[bit / 64] == UINT64_MAX) {
				blk += 63;
				scanned += 63;
				continue;
			}
			if (b && (b->data[bit / 8] & (1u << (bit % 8))))
				continue;
			if (set_has(&fs->al.hold, blk))
				continue;
			rc = alloc_set(fs, blk, true);
			if (rc < 0)
				return rc;
			VERIFY(rc == 0);
			u64vec_push(&fs->al.guard_set, blk);
			fs->al.cursor = blk + 1;
			*out = blk;
			return 0;
		}
		if (blk >= nb)
			blk = first;
	}
	return -ENOSPC;
}

/* A block the open generation dropped; the next CP frees or deadlists
 * it (alloc_cp_begin). */
void alloc_free_later(struct fs *fs, uint64_t owner, const struct tfs_bptr *bp)
{
	ASSERT(!owner_in_snapshot(owner));
	u64vec_push(&fs->al.later, get64(bp->bp_blkno));
	u64vec_push(&fs->al.later, owner_is_meta(owner) ? 0 :
		    get64(bp->bp_birth));
}

/* CP: blkno (born in CP birth) left the live tree.  A snapshot older
 * than this CP holds it when birth <= that snapshot's CP. */
int alloc_kill(struct fs *fs, uint64_t owner, uint64_t blkno, uint64_t birth)
{
	if (!owner_is_meta(owner) && birth && birth <= fs->snap_hold_gen)
		return snap_dead_add(fs, blkno, birth, get64(fs->sb.s_gen) + 1);
	return alloc_free_now(fs, blkno);
}

/* CP: clear blkno in this CP's map; hold it until the CP is durable. */
int alloc_free_now(struct fs *fs, uint64_t blkno)
{
	int old = alloc_set(fs, blkno, false);

	if (old < 0)
		return old;
	if (!old)
		return fs_corrupt("freeing block %llu, which is not in use",
				  (unsigned long long)blkno);
	set_add(&fs->al.hold, blkno);
	u64vec_push(&fs->al.guard_clear, blkno);
	return 0;
}

int alloc_cp_begin(struct fs *fs)
{
	struct u64vec later = fs->al.later;
	int rc = 0;

	memset(&fs->al.later, 0, sizeof(fs->al.later));
	for (size_t i = 0; i + 1 < later.n && !rc; i += 2)
		rc = later.v[i + 1] ? alloc_kill(fs, 0, later.v[i], later.v[i + 1]) :
		     alloc_free_now(fs, later.v[i]);
	u64vec_free(&later);
	return rc;
}

void alloc_cp_durable(struct fs *fs)
{
	if (fs->al.guard) {
		for (size_t i = 0; i < fs->al.guard_set.n; i++) {
			uint64_t b = fs->al.guard_set.v[i];
			fs->al.guard[b / 8] |= (uint8_t)(1u << (b % 8));
		}
		for (size_t i = 0; i < fs->al.guard_clear.n; i++) {
			uint64_t b = fs->al.guard_clear.v[i];
			fs->al.guard[b / 8] &= (uint8_t)~(1u << (b % 8));
		}
	}
	fs->al.guard_set.n = fs->al.guard_clear.n = 0;
	/* file reads in flight may still be reading held blocks */
	pthread_rwlock_wrlock(&fs->io_rw);
	set_clear(&fs->al.hold);
	pthread_rwlock_unlock(&fs->io_rw);
}

uint64_t alloc_free_blocks(struct fs *fs)
{
	uint64_t nb = get64(fs->sb.s_nblocks);
	uint64_t used = get64(fs->sb.s_used_blocks) + fs->al.hold.n +
			fs->bc.ndirty;
	/* s_gen + 1 is the CP these blocks go to */

	return used >= nb ? 0 : nb - used;
}
