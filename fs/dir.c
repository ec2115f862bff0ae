/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dir.c - hashed directories (see format.h, "directory bucket block").
 * A name's 62-bit hash picks bucket hash >> (62 - i_dirbits); a full
 * bucket doubles the table, splitting bucket i into 2i and 2i+1, so the
 * bucket order is always the hash order and readdir cookies (hash + 3)
 * survive any insert, remove or split.  Runs under fs->lock.
 */
#include <dirent.h>
#include <stdlib.h>

#include "fs_impl.h"

#define DIR_HASH_BITS 62
#define COOKIE_BASE   4   /* 1 after ".", 2 after "..", 3 after ".snapshot",
			     * then hash + 4 */

uint64_t dir_hash(const char *name, size_t len)
{
	return csum_name(name, len) >> (64 - DIR_HASH_BITS);
}

static uint64_t bucket_of(uint64_t hash, unsigned bits)
{
	return bits ? hash >> (DIR_HASH_BITS - bits) : 0;
}

/* Decode a bucket; all-zero is an empty bucket never written. */
int dirblk_parse(const uint8_t *blk, struct dirent_view *ents, size_t max)
{
	const struct tfs_dirblk *h = (const void *)blk;
	unsigned used = get16(h->d_used), count = get16(h->d_count), off;
	size_t n = 0;

	if (get32(h->d_magic) == 0 && used == 0 && count == 0)
		return 0;
	if (get32(h->d_magic) != TFS_DIR_MAGIC || used > TFS_BLOCK_SIZE ||
	    used < sizeof(*h))
		return -EUCLEAN;
	for (off = sizeof(*h); off < used; n++) {
		const struct tfs_dirent *e = (const void *)(blk + off);
		unsigned len;
		if (off + sizeof(*e) > used || n >= max)
			return -EUCLEAN;
		len = TFS_DIRENT_LEN(e->e_namelen);
		if (e->e_namelen == 0 || off + len > used ||
		    memchr(e->e_name, '/', e->e_namelen) ||
		    memchr(e->e_name, 0, e->e_namelen))
			return -EUCLEAN;
		ents[n].hash = get64(e->e_hash);
		ents[n].ino = get64(e->e_ino);
		ents[n].type = e->e_type;
		ents[n].namelen = e->e_namelen;
		ents[n].name = e->e_name;
		off += len;
	}
	if (n != count)
		return -EUCLEAN;
	return (int)n;
}

#define MAX_ENTS (TFS_BLOCK_SIZE / 24)

struct bucket {
	struct buf *b;
	int n;
	struct dirent_view e[MAX_ENTS];
};

static int bucket_load(struct fs *fs, uint64_t dir, uint64_t idx,
		       unsigned flags, struct bucket *bk)
{
	int rc = buf_get(fs, dir, 0, idx, flags, &bk->b);

	bk->n = 0;
	if (rc || !bk->b)
		return rc;
	bk->n = dirblk_parse(bk->b->data, bk->e, MAX_ENTS);
	if (bk->n < 0)
		return fs_corrupt("directory %llu bucket %llu",
				  (unsigned long long)dir,
				  (unsigned long long)idx);
	return 0;
}

static int dir_get(struct fs *fs, uint64_t dir, struct tfs_dinode **d)
{
	int rc = inode_get(fs, dir, d);

	if (rc)
		return rc;
	if (!S_ISDIR(get32((*d)->i_mode)))
		return -ENOTDIR;
	if ((*d)->i_dirbits > TFS_DIR_MAX_BITS)
		return fs_corrupt("directory %llu: %u hash bits",
				  (unsigned long long)dir, (*d)->i_dirbits);
	return 0;
}

/* Find name; *pos is its index in bk. */
static int dir_find(struct fs *fs, uint64_t dir, const char *name,
		    struct bucket *bk, int *pos)
{
	struct tfs_dinode *d;
	size_t len = strlen(name);
	uint64_t h = dir_hash(name, len);
	int rc = dir_get(fs, dir, &d);

	if (rc)
		return rc;
	rc = bucket_load(fs, dir, bucket_of(h, d->i_dirbits), 0, bk);
	if (rc)
		return rc;
	for (int i = 0; i < bk->n; i++)
		if (bk->e[i].hash == h && bk->e[i].namelen == len &&
		    memcmp(bk->e[i].name, name, len) == 0) {
			*pos = i;
			return 0;
		}
	return -ENOENT;
}

int dir_lookup(struct fs *fs, uint64_t dir, const char *name,
	       uint64_t *ino, unsigned *dtype)
{
	struct bucket bk;
	int pos, rc = dir_find(fs, dir, name, &bk, &pos);

	if (rc)
		return rc;
	*ino = bk.e[pos].ino;
	if (dtype)
		*dtype = bk.e[pos].type;
	return 0;
}

static void ent_put(uint8_t *blk, uint64_t hash, uint64_t ino,
		    unsigned type, const char *name, unsigned namelen)
{
	struct tfs_dirblk *h = (void *)blk;
	unsigned used = get16(h->d_used);
	struct tfs_dirent *e;

	if (used == 0) {
		memset(blk, 0, TFS_BLOCK_SIZE);
		h->d_magic = put32(TFS_DIR_MAGIC);
		used = sizeof(*h);
	}
	e = (void *)(blk + used);
	memset(e, 0, TFS_DIRENT_LEN(namelen));
	e->e_hash = put64(hash);
	e->e_ino = put64(ino);
	e->e_type = (uint8_t)type;
	e->e_namelen = (uint8_t)namelen;
	memcpy(e->e_name, name, namelen);
	h->d_used = put16((uint16_t)(used + TFS_DIRENT_LEN(namelen)));
	h->d_count = put16((uint16_t)(get16(h->d_count) + 1));
}

/* Double the table: bucket i becomes 2i and 2i+1 (highest first, so no
 * bucket is overwritten before it has been read). */
static int dir_split(struct fs *fs, uint64_t dir)
{
	struct tfs_dinode *d;
	struct bucket *bk = malloc(sizeof(*bk));
	uint8_t *old = malloc(TFS_BLOCK_SIZE);
	uint8_t *half[2] = { malloc(TFS_BLOCK_SIZE), malloc(TFS_BLOCK_SIZE) };
	unsigned bits;
	int rc = dir_get(fs, dir, &d);

	if (!bk || !old || !half[0] || !half[1]) {
		rc = -ENOMEM;
		goto out;
	}
	if (rc)
		goto out;
	bits = d->i_dirbits;
	if (bits >= TFS_DIR_MAX_BITS) {
		rc = -ENOSPC;
		goto out;
	}
	for (uint64_t i = (1ull << bits); i-- > 0;) {
		rc = bucket_load(fs, dir, i, 0, bk);
		if (rc)
			goto out;
		if (bk->b)
			memcpy(old, bk->b->data, TFS_BLOCK_SIZE);
		else
			memset(old, 0, TFS_BLOCK_SIZE);
		if (dirblk_parse(old, bk->e, MAX_ENTS) != bk->n) {
			rc = -EUCLEAN;
			goto out;
		}
		memset(half[0], 0, TFS_BLOCK_SIZE);
		memset(half[1], 0, TFS_BLOCK_SIZE);
		for (int j = 0; j < bk->n; j++) {
			unsigned side = bucket_of(bk->e[j].hash, bits + 1) & 1;
			ent_put(half[side], bk->e[j].hash, bk->e[j].ino,
				bk->e[j].type, bk->e[j].name, bk->e[j].namelen);
		}
		for (unsigned s = 0; s < 2; s++) {
			struct buf *b;
			rc = buf_get(fs, dir, 0, 2 * i + s, GET_CREATE, &b);
			if (!rc)
				rc = buf_dirty(fs, b);
			if (rc)
				goto out;
			memcpy(b->data, half[s], TFS_BLOCK_SIZE);
		}
	}
	rc = dir_get(fs, dir, &d);
	if (rc)
		goto out;
	d->i_dirbits = (uint8_t)(bits + 1);
	d->i_size = put64((2ull << bits) * TFS_BLOCK_SIZE);
	inode_touch(fs, dir);
out:
	free(bk);
	free(old);
	free(half[0]);
	free(half[1]);
	return rc;
}

int dir_insert(struct fs *fs, uint64_t dir, const char *name, uint64_t ino,
	       unsigned dtype)
{
	size_t len = strlen(name);
	uint64_t h = dir_hash(name, len);
	struct bucket *bk = malloc(sizeof(*bk));
	int pos, rc;

	if (!bk)
		return -ENOMEM;
	if (len == 0 || len > TFS_NAME_MAX) {
		rc = len ? -ENAMETOOLONG : -ENOENT;
		goto out;
	}
	rc = dir_find(fs, dir, name, bk, &pos);
	if (rc != -ENOENT) {
		rc = rc ? rc : -EEXIST;
		goto out;
	}
	for (;;) {
		struct tfs_dinode *d;
		struct tfs_dirblk *hd;
		rc = dir_get(fs, dir, &d);
		if (rc)
			goto out;
		rc = bucket_load(fs, dir, bucket_of(h, d->i_dirbits),
				 GET_CREATE, bk);
		if (rc)
			goto out;
		hd = (void *)bk->b->data;
		if (get16(hd->d_used) + TFS_DIRENT_LEN(len) <= TFS_BLOCK_SIZE &&
		    (get16(hd->d_used) || TFS_DIRENT_LEN(len) + 16 <=
		     TFS_BLOCK_SIZE)) {
			rc = buf_dirty(fs, bk->b);
			if (rc)
				goto out;
			ent_put(bk->b->data, h, ino, dtype, name, (unsigned)len);
			rc = dir_get(fs, dir, &d);
			if (rc)
				goto out;
			d->i_nentries = put64(get64(d->i_nentries) + 1);
			inode_touch(fs, dir);
			goto out;
		}
		rc = dir_split(fs, dir);
		if (rc)
			goto out;
	}
out:
	free(bk);
	return rc;
}

int dir_remove(struct fs *fs, uint64_t dir, const char *name)
{
	struct bucket *bk = malloc(sizeof(*bk));
	struct tfs_dirblk *hd;
	struct tfs_dinode *d;
	uint8_t *start, *end;
	unsigned len;
	int pos, rc;

	if (!bk)
		return -ENOMEM;
	rc = dir_find(fs, dir, name, bk, &pos);
	if (!rc)
		rc = buf_dirty(fs, bk->b);
	if (rc)
		goto out;
	hd = (void *)bk->b->data;
	start = (uint8_t *)bk->e[pos].name - sizeof(struct tfs_dirent);
	len = TFS_DIRENT_LEN(bk->e[pos].namelen);
	end = bk->b->data + get16(hd->d_used);
	memmove(start, start + len, (size_t)(end - start - len));
	memset(end - len, 0, len);
	hd->d_used = put16((uint16_t)(get16(hd->d_used) - len));
	hd->d_count = put16((uint16_t)(get16(hd->d_count) - 1));
	rc = dir_get(fs, dir, &d);
	if (rc)
		goto out;
	d->i_nentries = put64(get64(d->i_nentries) - 1);
	inode_touch(fs, dir);
out:
	free(bk);
	return rc;
}

/* Point an existing entry at another inode (rename over a name). */
int dir_set(struct fs *fs, uint64_t dir, const char *name, uint64_t ino,
	    unsigned dtype)
{
	struct bucket *bk = malloc(sizeof(*bk));
	struct tfs_dirent *e;
	int pos, rc;

	if (!bk)
		return -ENOMEM;
	rc = dir_find(fs, dir, name, bk, &pos);
	if (!rc)
		rc = buf_dirty(fs, bk->b);
	if (!rc) {
		e = (void *)((uint8_t *)bk->e[pos].name -
			     sizeof(struct tfs_dirent));
		e->e_ino = put64(ino);
		e->e_type = (uint8_t)dtype;
	}
	free(bk);
	return rc;
}

int dir_init(struct fs *fs, uint64_t dir, uint64_t parent)
{
	struct tfs_dinode *d;
	int rc = inode_get(fs, dir, &d);

	if (rc)
		return rc;
	d->i_dirbits = 0;
	d->i_size = put64(TFS_BLOCK_SIZE);
	d->i_parent = put64(parent);
	d->i_nentries = put64(0);
	inode_touch(fs, dir);
	return 0;
}

static int cmp_hash(const void *a, const void *b)
{
	const struct dirent_view *x = a, *y = b;

	return x->hash < y->hash ? -1 : x->hash > y->hash;
}

int dir_iterate(struct fs *fs, uint64_t dir, uint64_t cookie,
		fs_filldir_t fill, void *ctx, bool snapdir)
{
	struct tfs_dinode *d;
	struct bucket *bk;
	char name[TFS_NAME_MAX + 1];
	uint64_t from, nbuckets;
	int rc = dir_get(fs, dir, &d);

	if (rc)
		return rc;
	if (cookie == 0) {
		if (fill(ctx, ".", dir, DT_DIR, 1))
			return 0;
		cookie = 1;
	}
	if (cookie == 1) {
		if (fill(ctx, "..", get64(d->i_parent), DT_DIR, 2))
			return 0;
		cookie = 2;
	}
	if (cookie == 2) {
		if (snapdir && fill(ctx, ".snapshot", FS_INO_SNAPDIR, DT_DIR, 3))
			return 0;
		cookie = 3;
	}
	from = cookie - 3;
	if (from >> DIR_HASH_BITS)
		return 0;
	bk = malloc(sizeof(*bk));
	if (!bk)
		return -ENOMEM;
	nbuckets = 1ull << d->i_dirbits;
	for (uint64_t i = bucket_of(from, d->i_dirbits); i < nbuckets; i++) {
		uint64_t next;
		rc = bucket_load(fs, dir, i, 0, bk);
		if (rc)
			break;
		qsort(bk->e, (size_t)bk->n, sizeof(bk->e[0]), cmp_hash);
		for (int j = 0; j < bk->n; j++) {
			if (bk->e[j].hash < from)
				continue;
			memcpy(name, bk->e[j].name, bk->e[j].namelen);
			name[bk->e[j].namelen] = 0;
			if (fill(ctx, name, bk->e[j].ino, bk->e[j].type,
				 bk->e[j].hash + COOKIE_BASE))
				goto out;
		}
		/* skip the holes of a sparse table quickly */
		rc = tree_next(fs, dir, i + 1, true, &next);
		if (rc <= 0)
			break;
		rc = 0;
		i = next - 1;
	}
out:
	free(bk);
	return rc < 0 ? rc : 0;
}
