/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * file.c - byte ranges of regular files and symlinks on top of tree.c:
 * read, write, truncate, zeroing and punching holes, preallocation.
 * Callers (ops.c) update sizes and times; this file moves bytes and
 * blocks.  Runs under fs->lock.
 */
#include <stdlib.h>

#include "fs_impl.h"

static int plan_add(struct read_plan *p, const struct tfs_bptr *bp,
		    char *dst, size_t bo, size_t n)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		struct read_miss *nm = realloc(p->m, cap * sizeof(*nm));
		if (!nm)
			return -ENOMEM;
		p->m = nm;
		p->cap = cap;
	}
	p->m[p->n++] = (struct read_miss){ *bp, dst, bo, n };
	return 0;
}

ssize_t file_read_plan(struct fs *fs, uint64_t ino, void *buf, size_t size,
		       uint64_t off, struct read_plan *plan)
{
	struct tfs_dinode *d;
	size_t done = 0;
	int rc = inode_get(fs, ino, &d);
	uint64_t fsize;

	plan->n = 0;
	if (rc)
		return rc;
	fsize = get64(d->i_size);
	if (off >= fsize)
		return 0;
	if (size > fsize - off)
		size = (size_t)(fsize - off);
	while (done < size) {
		uint64_t pos = off + done;
		uint64_t idx = pos >> TFS_BLOCK_SHIFT;
		size_t bo = pos & (TFS_BLOCK_SIZE - 1);
		size_t n = TFS_BLOCK_SIZE - bo;
		struct tfs_bptr bp;
		struct buf *b;

		if (n > size - done)
			n = size - done;
		rc = tree_peek(fs, ino, idx, &b, &bp);
		if (!rc && !b && get64(bp.bp_blkno))
			rc = plan_add(plan, &bp, (char *)buf + done, bo, n);
		if (rc)
			return done ? (ssize_t)done : rc;
		if (b)
			memcpy((char *)buf + done, b->data + bo, n);
		else if (!get64(bp.bp_blkno))
			memset((char *)buf + done, 0, n);
		done += n;
	}
	return (ssize_t)done;
}

int file_read_io(struct fs *fs, struct read_plan *plan)
{
	uint64_t end = get64(fs->sb.s_nblocks);
	uint8_t *tmp = NULL;
	void *run[256];
	int rc = 0;

	for (size_t i = 0; i < plan->n && !rc;) {
		struct read_miss *m = &plan->m[i];
		uint64_t blk = get64(m->bp.bp_blkno);
		unsigned k = 1;

		if (m->bo || m->n < TFS_BLOCK_SIZE) { /* part of a block */
			if (!tmp && !(tmp = malloc(TFS_BLOCK_SIZE))) {
				rc = -ENOMEM;
				break;
			}
			rc = tree_read_block(fs, &m->bp, tmp);
			if (!rc)
				memcpy(m->dst, tmp + m->bo, m->n);
			i++;
			continue;
		}
		rc = tree_blkno_check(fs, blk);
		if (rc)
			break;
		/* whole blocks next to each other on disk and in the buffer:
		 * one call, straight into the caller's buffer */
		run[0] = m->dst;
		while (i + k < plan->n && k < 256 && blk + k < end &&
		       get64(plan->m[i + k].bp.bp_blkno) == blk + k &&
		       plan->m[i + k].bo == 0 &&
		       plan->m[i + k].n == TFS_BLOCK_SIZE &&
		       plan->m[i + k].dst == m->dst + (size_t)k * TFS_BLOCK_SIZE) {
			run[k] = plan->m[i + k].dst;
			k++;
		}
		rc = bdev_read_run(fs->bd, blk, run, k);
		if (rc)
			log_err("read error on blocks %llu..%llu: %d",
				(unsigned long long)blk,
				(unsigned long long)(blk + k - 1), rc);
		for (unsigned j = 0; j < k && !rc; j++)
			rc = tree_csum_check(&plan->m[i + j].bp, run[j]);
		i += k;
	}
	free(tmp);
	return rc && rc != -ENOMEM ? -EIO : rc;
}

ssize_t file_read(struct fs *fs, uint64_t ino, void *buf, size_t size,
		  uint64_t off)
{
	struct read_plan plan = { 0 };
	ssize_t n = file_read_plan(fs, ino, buf, size, off, &plan);

	if (n > 0 && plan.n) {
		int rc = file_read_io(fs, &plan);
		if (rc)
			n = rc;
	}
	free(plan.m);
	return n;
}

/* Write bytes; does not change i_size. */
int file_write(struct fs *fs, uint64_t ino, const void *buf, size_t size,
	       uint64_t off)
{
	size_t done = 0;

	while (done < size) {
		uint64_t pos = off + done;
		uint64_t idx = pos >> TFS_BLOCK_SHIFT;
		size_t bo = pos & (TFS_BLOCK_SIZE - 1);
		size_t n = TFS_BLOCK_SIZE - bo;
		struct buf *b;
		int rc;

		if (n > size - done)
			n = size - done;
		rc = buf_get(fs, ino, 0, idx, GET_CREATE, &b);
		if (!rc)
			rc = buf_dirty(fs, b);
		if (rc)
			return rc;
		memcpy(b->data + bo, (const char *)buf + done, n);
		done += n;
	}
	return 0;
}

/* Zero bytes [off, off+len) inside existing blocks; free whole blocks
 * when punch (or when they lie past the end anyway). */
int file_zero(struct fs *fs, uint64_t ino, uint64_t off, uint64_t len,
	      bool punch)
{
	uint64_t end = off + len;
	uint64_t first = (off + TFS_BLOCK_SIZE - 1) >> TFS_BLOCK_SHIFT;
	uint64_t last = end >> TFS_BLOCK_SHIFT; /* exclusive */
	int rc;

	if (len == 0)
		return 0;
	/* partial blocks at both ends: zero in place if they exist */
	for (int side = 0; side < 2; side++) {
		uint64_t a = side ? (last << TFS_BLOCK_SHIFT) : off;
		uint64_t z = side ? end : (first << TFS_BLOCK_SHIFT);
		struct buf *b;
		if (side == 0 && z > end)
			z = end;
		if (side == 1 && a < off)
			a = off;
		if (a >= z)
			continue;
		rc = buf_get(fs, ino, 0, a >> TFS_BLOCK_SHIFT, 0, &b);
		if (!rc && b)
			rc = buf_dirty(fs, b);
		if (rc)
			return rc;
		if (b)
			memset(b->data + (a & (TFS_BLOCK_SIZE - 1)), 0,
			       (size_t)(z - a));
	}
	if (first >= last)
		return 0;
	if (punch)
		return tree_free_range(fs, ino, first, last - 1);
	for (uint64_t i = first; i < last; i++) {
		struct buf *b;
		rc = buf_get(fs, ino, 0, i, 0, &b);
		if (!rc && b)
			rc = buf_dirty(fs, b);
		if (rc)
			return rc;
		if (b)
			memset(b->data, 0, TFS_BLOCK_SIZE);
	}
	return 0;
}

/* Drop everything past size and zero the tail of the last block. */
int file_truncate(struct fs *fs, uint64_t ino, uint64_t size)
{
	uint64_t first = (size + TFS_BLOCK_SIZE - 1) >> TFS_BLOCK_SHIFT;
	int rc;

	if (size & (TFS_BLOCK_SIZE - 1)) {
		struct buf *b;
		size_t bo = size & (TFS_BLOCK_SIZE - 1);
		rc = buf_get(fs, ino, 0, size >> TFS_BLOCK_SHIFT, 0, &b);
		if (!rc && b)
			rc = buf_dirty(fs, b);
		if (rc)
			return rc;
		if (b)
			memset(b->data + bo, 0, TFS_BLOCK_SIZE - bo);
	}
	return tree_free_range(fs, ino, first, UINT64_MAX);
}

/* Make blocks exist (zeroed) for [off, off+len). */
int file_alloc(struct fs *fs, uint64_t ino, uint64_t off, uint64_t len)
{
	uint64_t first = off >> TFS_BLOCK_SHIFT;
	uint64_t last = (off + len + TFS_BLOCK_SIZE - 1) >> TFS_BLOCK_SHIFT;

	for (uint64_t i = first; i < last; i++) {
		struct buf *b;
		int rc = buf_get(fs, ino, 0, i, GET_CREATE, &b);
		if (rc)
			return rc;
	}
	return 0;
}
