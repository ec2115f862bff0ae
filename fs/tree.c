/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tree.c - block-pointer trees: find a block, create one in a hole, grow
 * the height, free ranges, and find data or holes.  Runs under fs->lock.
 *
 * Block idx at level L lives in slot (idx % 128) of block idx / 128 at
 * level L+1; the block at level i_height, index 0, is the root and its
 * pointer is the dinode's i_root.  Parent entries are written only by the
 * CP (phase B); until then a dirty parent still holds the child's last
 * durable pointer, and a child without one is found in the cache.
 */
#include <stdlib.h>

#include "fs_impl.h"

static struct tfs_bptr *entries(struct buf *b)
{
	return (struct tfs_bptr *)b->data;
}

struct tfs_dinode *owner_dinode(struct fs *fs, uint64_t owner, int *rc)
{
	struct tfs_dinode *d = NULL;

	*rc = 0;
	if (owner == OWN_IFILE)
		return &fs->sb.s_ifile;
	if (owner == OWN_AFILE)
		return &fs->sb.s_afile;
	if (owner == OWN_SFILE)
		return &fs->sb.s_sfile;
	if (owner == OWN_DFILE)
		return &fs->sb.s_dfile;
	if (owner_in_snapshot(owner) && owner > OWN_SIFILE(TFS_MAX_SNAPS)) {
		uint64_t slot = OWN_SIFILE(0) - owner;
		if (!fs->snaps || !fs->snaps[slot].used) {
			*rc = -ENOENT;
			return NULL;
		}
		return &fs->snaps[slot].ifile;
	}
	*rc = inode_get(fs, owner, &d);
	return d;
}

void owner_dirty_dinode(struct fs *fs, uint64_t owner)
{
	if (!owner_is_meta(owner) && owner != OWN_IFILE)
		inode_touch(fs, owner);
}

int tree_blkno_check(struct fs *fs, uint64_t blkno)
{
	if (blkno < TFS_LOG_START + get64(fs->sb.s_log_blocks) ||
	    blkno >= get64(fs->sb.s_nblocks))
		return fs_corrupt("block pointer to %llu out of range",
				  (unsigned long long)blkno);
	return 0;
}

int tree_csum_check(const struct tfs_bptr *bp, const void *data)
{
	le64 sum[2];

	csum_block(data, TFS_BLOCK_SIZE, sum);
	if (csum_equal(sum, bp->bp_csum))
		return 0;
	log_err("checksum mismatch on block %llu (birth %llu)",
		(unsigned long long)get64(bp->bp_blkno),
		(unsigned long long)get64(bp->bp_birth));
	return -EIO;
}

int tree_read_block(struct fs *fs, const struct tfs_bptr *bp, void *dst)
{
	uint64_t blkno = get64(bp->bp_blkno);
	int rc = tree_blkno_check(fs, blkno);

	if (rc)
		return rc;
	rc = bdev_read(fs->bd, blkno, dst);
	if (rc) {
		log_err("read error on block %llu: %d",
			(unsigned long long)blkno, rc);
		return -EIO;
	}
	return tree_csum_check(bp, dst);
}

/* Add levels until the tree covers level-0 index idx. */
static int tree_grow(struct fs *fs, uint64_t owner, struct tfs_dinode *d,
		     uint64_t idx)
{
	while (d->i_height < TFS_MAX_HEIGHT &&
	       (idx >> (TFS_BPTR_SHIFT * d->i_height)) != 0) {
		uint8_t h = d->i_height;
		struct buf *oldroot = bcache_find(&fs->bc, owner, h, 0);
		struct buf *nr;

		if (get64(d->i_root.bp_blkno) == 0 && !oldroot) {
			d->i_height++;   /* empty tree: nothing to hang */
			owner_dirty_dinode(fs, owner);
			continue;
		}
		nr = bcache_new(&fs->bc, owner, h + 1, 0);
		if (!nr)
			return -ENOMEM;
		entries(nr)[0] = d->i_root;
		memset(&d->i_root, 0, sizeof(d->i_root));
		d->i_height = h + 1;
		d->i_blocks = put64(get64(d->i_blocks) + 1);
		owner_dirty_dinode(fs, owner);
		bcache_mark_dirty(&fs->bc, nr);
		/* old root's path now runs through nr, which is dirty */
	}
	if ((idx >> (TFS_BPTR_SHIFT * d->i_height)) != 0)
		return -EFBIG;
	return 0;
}

/* The slot that points at (level, idx), in its parent or the dinode.
 * *slot is NULL when the parent is a hole (and flags lack GET_CREATE). */
static int find_slot(struct fs *fs, uint64_t owner, uint8_t level,
		     uint64_t idx, unsigned flags, struct tfs_bptr **slot,
		     struct buf **parent)
{
	int rc;
	struct tfs_dinode *d = owner_dinode(fs, owner, &rc);
	struct buf *p;

	*slot = NULL;
	*parent = NULL;
	if (!d)
		return rc;
	if (flags & GET_CREATE) {
		rc = tree_grow(fs, owner, d,
			       level ? idx << (TFS_BPTR_SHIFT * level) : idx);
		if (rc)
			return rc;
	}
	if (level > d->i_height)
		return 0;
	if (level == d->i_height) {
		if (idx == 0)
			*slot = &d->i_root;
		return 0;
	}
	rc = buf_get(fs, owner, level + 1, idx >> TFS_BPTR_SHIFT, flags, &p);
	if (rc || !p)
		return rc;
	*slot = &entries(p)[idx & (TFS_BPTRS_PER_BLOCK - 1)];
	*parent = p;
	return 0;
}

int tree_peek(struct fs *fs, uint64_t owner, uint64_t idx, struct buf **b,
	      struct tfs_bptr *bp)
{
	struct tfs_bptr *slot;
	struct buf *parent;
	int rc;

	memset(bp, 0, sizeof(*bp));
	*b = bcache_find(&fs->bc, owner, 0, idx);
	if (*b)
		return 0;
	rc = find_slot(fs, owner, 0, idx, 0, &slot, &parent);
	if (rc)
		return rc;
	*b = bcache_find(&fs->bc, owner, 0, idx);
	if (!*b && slot)
		*bp = *slot;
	return 0;
}

#define READAHEAD 32

/* A miss on level-0 block idx (a directory bucket, a block of the inode
 * file or of another metafile; file data goes through file_read_plan):
 * read it and the blocks after it under the same parent in one call, as
 * long as they lie next to each other on disk (a CP writes a file's
 * blocks in runs).  Each is checked against its own pointer; one that
 * does not match is simply not cached. */
static void readahead(struct fs *fs, uint64_t owner, uint64_t idx,
		      struct buf *parent)
{
	const struct tfs_bptr *e = entries(parent);
	unsigned first = idx & (TFS_BPTRS_PER_BLOCK - 1), n = 0;
	uint64_t start = get64(e[first].bp_blkno);
	struct buf *bufs[READAHEAD];
	void *data[READAHEAD];

	while (n < READAHEAD && first + n < TFS_BPTRS_PER_BLOCK &&
	       get64(e[first + n].bp_blkno) == start + n &&
	       !bcache_find(&fs->bc, owner, 0, idx + n))
		n++;
	if (n < 2 || start < TFS_LOG_START + get64(fs->sb.s_log_blocks) ||
	    start + n > get64(fs->sb.s_nblocks))
		return;
	for (unsigned i = 0; i < n; i++) {
		bufs[i] = bcache_new(&fs->bc, owner, 0, idx + i);
		if (!bufs[i]) {
			n = i;
			break;
		}
		data[i] = bufs[i]->data;
	}
	if (n && bdev_read_run(fs->bd, start, data, n)) {
		for (unsigned i = 0; i < n; i++) /* buf_get retries alone */
			bcache_drop(&fs->bc, bufs[i]);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		le64 sum[2];
		csum_block(bufs[i]->data, TFS_BLOCK_SIZE, sum);
		if (!csum_equal(sum, e[first + i].bp_csum)) {
			bcache_drop(&fs->bc, bufs[i]); /* buf_get reports it */
			continue;
		}
		bufs[i]->bp = e[first + i];
		bufs[i]->io_gen = get64(e[first + i].bp_birth);
	}
}

int buf_get(struct fs *fs, uint64_t owner, uint8_t level, uint64_t idx,
	    unsigned flags, struct buf **out)
{
	struct buf *b = bcache_find(&fs->bc, owner, level, idx);
	struct tfs_bptr *slot, bp;
	struct buf *parent;
	int rc;

	*out = b;
	if (b)
		return 0;
	rc = find_slot(fs, owner, level, idx, flags, &slot, &parent);
	if (rc)
		return rc;
	b = bcache_find(&fs->bc, owner, level, idx); /* grow may have made it */
	if (b) {
		*out = b;
		return 0;
	}
	if (!slot || get64(slot->bp_blkno) == 0) {
		struct tfs_dinode *d;
		if (!(flags & GET_CREATE))
			return 0;
		VERIFY(slot);
		b = bcache_new(&fs->bc, owner, level, idx);
		if (!b)
			return -ENOMEM;
		d = owner_dinode(fs, owner, &rc);
		VERIFY(d);
		d->i_blocks = put64(get64(d->i_blocks) + 1);
		owner_dirty_dinode(fs, owner);
		rc = buf_dirty(fs, b);
		*out = b;
		return rc;
	}
	bp = *slot;
	if (level == 0 && parent)
		readahead(fs, owner, idx, parent);
	b = bcache_find(&fs->bc, owner, level, idx);
	if (b) {
		*out = b;
		return 0;
	}
	b = bcache_new(&fs->bc, owner, level, idx);
	if (!b)
		return -ENOMEM;
	rc = tree_read_block(fs, &bp, b->data);
	if (rc) {
		bcache_drop(&fs->bc, b);
		return rc;
	}
	b->bp = bp;
	b->io_gen = get64(bp.bp_birth);
	*out = b;
	return 0;
}

/* Mark b dirty, and with it its path to the root and its dinode. */
int buf_dirty(struct fs *fs, struct buf *b)
{
	struct tfs_dinode *d;
	struct buf *p;
	int rc;

	if (b->dirty)
		return 0;
	d = owner_dinode(fs, b->owner, &rc);
	if (!d)
		return rc;
	if (fs->ro)
		return -EROFS;
	/* snapshot trees are never written (ops.c refuses with EROFS) */
	VERIFY(!owner_in_snapshot(b->owner));
	bcache_mark_dirty(&fs->bc, b);
	if (b->level >= d->i_height) {
		owner_dirty_dinode(fs, b->owner);
		return 0;
	}
	rc = buf_get(fs, b->owner, b->level + 1, b->idx >> TFS_BPTR_SHIFT, 0,
		     &p);
	if (rc)
		return rc;
	VERIFY(p); /* a block below a hole cannot exist */
	return buf_dirty(fs, p);
}

int tree_read(struct fs *fs, uint64_t owner, uint64_t idx, void *dst)
{
	struct buf *b;
	int rc = buf_get(fs, owner, 0, idx, 0, &b);

	if (rc)
		return rc;
	if (b)
		memcpy(dst, b->data, TFS_BLOCK_SIZE);
	else
		memset(dst, 0, TFS_BLOCK_SIZE);
	return 0;
}

static uint64_t span(uint8_t level)
{
	return 1ull << (TFS_BPTR_SHIFT * level);
}

/* Free level-0 blocks first..last under (level, idx); slot points at it. */
static int free_sub(struct fs *fs, uint64_t owner, uint8_t level,
		    uint64_t idx, uint64_t first, uint64_t last,
		    struct buf *parent, struct tfs_bptr *slot)
{
	uint64_t lo = idx * span(level), hi = lo + span(level) - 1;
	struct buf *b = bcache_find(&fs->bc, owner, level, idx);
	struct tfs_dinode *d;
	int rc;

	if (hi < first || lo > last)
		return 0;
	if (!b && get64(slot->bp_blkno) == 0)
		return 0;
	if (level > 0) {
		if (!b) {
			rc = buf_get(fs, owner, level, idx, 0, &b);
			if (rc)
				return rc;
		}
		for (unsigned i = 0; i < TFS_BPTRS_PER_BLOCK; i++) {
			rc = free_sub(fs, owner, level - 1,
				      idx * TFS_BPTRS_PER_BLOCK + i, first, last,
				      b, &entries(b)[i]);
			if (rc)
				return rc;
		}
	}
	if (!(first <= lo && hi <= last))
		return 0;
	if (parent) {
		rc = buf_dirty(fs, parent);
		if (rc)
			return rc;
	} else {
		owner_dirty_dinode(fs, owner);
	}
	d = owner_dinode(fs, owner, &rc);
	if (!d)
		return rc;
	if (get64(slot->bp_blkno))
		alloc_free_later(fs, owner, slot);
	b = bcache_find(&fs->bc, owner, level, idx);
	if (b)
		bcache_drop(&fs->bc, b);
	memset(slot, 0, sizeof(*slot));
	ASSERT(get64(d->i_blocks) > 0);
	d->i_blocks = put64(get64(d->i_blocks) - 1);
	return 0;
}

int tree_free_range(struct fs *fs, uint64_t owner, uint64_t first,
		    uint64_t last)
{
	int rc;
	struct tfs_dinode *d = owner_dinode(fs, owner, &rc);

	if (!d)
		return rc;
	rc = free_sub(fs, owner, d->i_height, 0, first, last, NULL,
		      &d->i_root);
	if (rc)
		return rc;
	d = owner_dinode(fs, owner, &rc);
	if (d && get64(d->i_blocks) == 0 && d->i_height) {
		d->i_height = 0;     /* empty again: start from height 0 */
		owner_dirty_dinode(fs, owner);
	}
	return rc;
}

/* First level-0 index >= from under (level, idx) that is data (want_data)
 * or a hole.  Returns 1 and *out when found, 0 when not, or -errno. */
static int next_sub(struct fs *fs, uint64_t owner, uint8_t level,
		    uint64_t idx, const struct tfs_bptr *slot, uint64_t from,
		    bool want_data, uint64_t *out)
{
	uint64_t lo = idx * span(level), hi = lo + span(level) - 1;
	struct buf *b = bcache_find(&fs->bc, owner, level, idx);
	int rc;

	if (hi < from)
		return 0;
	if (!b && (!slot || get64(slot->bp_blkno) == 0)) {
		if (want_data)
			return 0;
		*out = lo > from ? lo : from;
		return 1;
	}
	if (level == 0) {
		if (!want_data)
			return 0;
		*out = lo;
		return 1;
	}
	if (!b) {
		rc = buf_get(fs, owner, level, idx, 0, &b);
		if (rc)
			return rc;
	}
	for (unsigned i = 0; i < TFS_BPTRS_PER_BLOCK; i++) {
		uint64_t c = idx * TFS_BPTRS_PER_BLOCK + i;
		if ((c + 1) * span(level - 1) - 1 < from)
			continue;
		rc = next_sub(fs, owner, level - 1, c, &entries(b)[i], from,
			      want_data, out);
		if (rc)
			return rc;
		b = bcache_find(&fs->bc, owner, level, idx);
		VERIFY(b);
	}
	return 0;
}

int tree_next(struct fs *fs, uint64_t owner, uint64_t from, bool want_data,
	      uint64_t *out)
{
	int rc;
	struct tfs_dinode *d = owner_dinode(fs, owner, &rc);
	struct tfs_bptr root;

	if (!d)
		return rc;
	if (from >= span(d->i_height)) {
		if (want_data)
			return 0;
		*out = from;
		return 1;
	}
	root = d->i_root;
	return next_sub(fs, owner, d->i_height, 0, &root, from, want_data,
			out);
}

/* fsck: cut the block at (level, idx) out of the tree, unread (it is
 * damaged).  Its address stays marked in the map; the map repair frees
 * it once it is no longer referenced. */
int tree_cut(struct fs *fs, uint64_t owner, uint8_t level, uint64_t idx)
{
	struct tfs_bptr *slot;
	struct buf *parent, *b;
	struct tfs_dinode *d;
	int rc = find_slot(fs, owner, level, idx, 0, &slot, &parent);

	if (rc || !slot)
		return rc;
	if (parent)
		rc = buf_dirty(fs, parent);
	else
		owner_dirty_dinode(fs, owner);
	if (rc)
		return rc;
	b = bcache_find(&fs->bc, owner, level, idx);
	if (b)
		bcache_drop(&fs->bc, b);
	if (get64(slot->bp_blkno) || b) {
		d = owner_dinode(fs, owner, &rc);
		if (d && get64(d->i_blocks))
			d->i_blocks = put64(get64(d->i_blocks) - 1);
	}
	memset(slot, 0, sizeof(*slot));
	return 0;
}

static int bmap_sub(struct fs *fs, uint64_t owner, uint8_t level,
		    uint64_t idx, fs_bmap_t cb, void *ctx)
{
	struct buf *b;
	int rc = buf_get(fs, owner, level, idx, 0, &b);

	if (rc || !b)
		return rc;
	rc = cb(ctx, level, idx, get64(b->bp.bp_blkno), get64(b->bp.bp_birth));
	for (unsigned i = 0; !rc && level && i < TFS_BPTRS_PER_BLOCK; i++) {
		b = bcache_find(&fs->bc, owner, level, idx);
		VERIFY(b);
		if (!get64(entries(b)[i].bp_blkno) &&
		    !bcache_find(&fs->bc, owner, level - 1,
				 idx * TFS_BPTRS_PER_BLOCK + i))
			continue;
		rc = bmap_sub(fs, owner, level - 1,
			      idx * TFS_BPTRS_PER_BLOCK + i, cb, ctx);
	}
	return rc;
}

int fs_bmap(struct fs *fs, uint64_t ino, fs_bmap_t cb, void *ctx)
{
	struct tfs_dinode *d;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = inode_get(fs, ino, &d);
	if (!rc)
		rc = bmap_sub(fs, ino, d->i_height, 0, cb, ctx);
	pthread_mutex_unlock(&fs->lock);
	return rc < 0 ? rc : 0;
}
