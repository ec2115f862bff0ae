/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * repair.c - fsck -y: fix what verify.c finds.
 *
 * The image is mounted in repair mode (the log replays as far as it
 * applies; no CP runs at mount).  Before anything can allocate, the map
 * is made equal to the set of blocks the durable root references, so no
 * referenced block can be handed out twice.  Then, under fs->lock: the
 * inode file and every inode's tree are read and damaged blocks are cut
 * out (they read as holes; a damaged directory bucket loses its entries),
 * the namespace is walked from the root (entries naming missing inodes
 * go, types and parents are fixed, a second link to a directory goes),
 * unreachable inodes move to /lost+found, and link counts, entry counts
 * and i_blocks are set to what was counted.  A CP commits it all; a
 * second round frees the damaged blocks that were cut out.  Each round
 * is one CP, so a repair killed at any point leaves an image that is
 * consistent as of some CP and that a new fsck continues from.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "fs_impl.h"

#define REPAIR_MAX_INODES (64ull << 20)

struct rctx {
	struct fs *fs;
	fs_report_t report;
	void *ctx;
	int fixed;
	uint64_t nino;
	uint8_t *reached;
	uint32_t *links, *subdirs;
	uint64_t *entries, *counted;
	uint64_t blind;          /* unreadable subtrees the last round saw */
};

static void fixed(struct rctx *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fixed(struct rctx *r, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	r->fixed++;
	if (!r->report)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->report(r->ctx, msg);
}

/* Make the map agree with refs (fs->lock held, before any CP).  Blocks
 * referenced but marked free are always marked; blocks marked but not
 * referenced are freed only when every subtree could be read (may_free),
 * since an unreadable block hides what it references. */
static int fix_map(struct rctx *r, const uint8_t *refs, bool may_free)
{
	struct fs *fs = r->fs;
	uint64_t nb = get64(fs->sb.s_nblocks), leaks = 0, lost = 0;
	uint64_t nmap = (nb + TFS_BITS_PER_BLOCK - 1) / TFS_BITS_PER_BLOCK;
	static const uint8_t zero[TFS_BLOCK_SIZE];
	uint8_t *map = malloc(TFS_BLOCK_SIZE);
	int rc = 0;

	if (!map)
		return -ENOMEM;
	for (uint64_t i = 0; i < nmap && !rc; i++) {
		uint64_t first = i * TFS_BITS_PER_BLOCK;
		uint64_t nbytes = (nb - first + 7) / 8;
		struct buf *b;
		if (nbytes > TFS_BLOCK_SIZE)
			nbytes = TFS_BLOCK_SIZE;
		rc = buf_get(fs, OWN_AFILE, 0, i, 0, &b);
		if (rc)
			break;
		memcpy(map, b ? b->data : zero, TFS_BLOCK_SIZE);
		if (!memcmp(map, refs + first / 8, nbytes))
			continue;
		for (uint64_t k = 0; k < nbytes * 8 && !rc; k++) {
			uint64_t blk = first + k;
			bool m = map[k / 8] & (1u << (k % 8));
			bool ref = refs[blk / 8] & (1u << (blk % 8));
			if (m == ref || blk >= nb || (m && !may_free))
				continue;
			if (m) {
				rc = alloc_free_now(fs, blk);
				leaks++;
			} else {
				rc = alloc_set(fs, blk, true);
				rc = rc < 0 ? rc : 0;
				lost++;
			}
		}
	}
	free(map);
	if (!rc) { /* the count in the superblock follows the map */
		uint64_t used = 0;
		for (uint64_t i = 0; i < nmap && !rc; i++) {
			struct buf *b;
			rc = buf_get(fs, OWN_AFILE, 0, i, 0, &b);
			for (unsigned k = 0; b && !rc && k < TFS_BLOCK_SIZE; k++)
				used += (uint64_t)__builtin_popcount(b->data[k]);
		}
		if (!rc && used != get64(fs->sb.s_used_blocks)) {
			fixed(r, "used block count %llu set to %llu",
			      (unsigned long long)get64(fs->sb.s_used_blocks),
			      (unsigned long long)used);
			fs->sb.s_used_blocks = put64(used);
		}
	}
	if (leaks)
		fixed(r, "freed %llu leaked blocks", (unsigned long long)leaks);
	if (lost)
		fixed(r, "marked %llu referenced blocks as used in the map",
		      (unsigned long long)lost);
	return rc;
}

static int is_damage(int rc)
{
	return rc == -EIO || rc == -EUCLEAN || rc == -EBADMSG;
}

/* Read every block of a tree; cut out what cannot be read. */
static int walk_node(struct rctx *r, uint64_t owner, uint8_t level,
		     uint64_t idx, bool dir, uint64_t *count)
{
	struct buf *b;
	int rc = buf_get(r->fs, owner, level, idx, 0, &b);

	if (is_damage(rc)) {
		fixed(r, "inode %s%llu: damaged block (level %u, index %llu) cut out",
		      owner == OWN_IFILE ? "file " : "",
		      (unsigned long long)(owner == OWN_IFILE ? 0 : owner),
		      level, (unsigned long long)idx);
		return tree_cut(r->fs, owner, level, idx);
	}
	if (rc || !b)
		return rc;
	(*count)++;
	if (level == 0) {
		struct dirent_view e[TFS_BLOCK_SIZE / 24];
		if (dir && dirblk_parse(b->data, e, sizeof(e) / sizeof(e[0])) < 0) {
			fixed(r, "directory %llu: damaged bucket %llu cleared",
			      (unsigned long long)owner, (unsigned long long)idx);
			(*count)--;
			return tree_cut(r->fs, owner, 0, idx);
		}
		return 0;
	}
	for (unsigned i = 0; i < TFS_BPTRS_PER_BLOCK && !rc; i++) {
		struct tfs_bptr *slot = (struct tfs_bptr *)b->data + i;
		uint64_t c = idx * TFS_BPTRS_PER_BLOCK + i;
		if (!get64(slot->bp_blkno) &&
		    !bcache_find(&r->fs->bc, owner, level - 1, c))
			continue;
		rc = walk_node(r, owner, level - 1, c, dir, count);
		b = bcache_find(&r->fs->bc, owner, level, idx);
		VERIFY(b);
	}
	return rc;
}

static int check_inode(struct rctx *r, uint64_t ino)
{
	struct fs *fs = r->fs;
	struct tfs_dinode *d;
	uint64_t count = 0, size;
	bool dir;
	struct buf *xb;
	int rc = inode_get(fs, ino, &d);

	if (rc)
		return rc == -ENOENT ? 0 : rc;
	dir = S_ISDIR(get32(d->i_mode));
	size = get64(d->i_size);
	if (!dir && S_ISREG(get32(d->i_mode))) {
		uint64_t next;
		/* nothing may live past the size */
		rc = tree_next(fs, ino, (size + TFS_BLOCK_SIZE - 1) >>
			       TFS_BLOCK_SHIFT, true, &next);
		if (rc > 0) {
			fixed(r, "inode %llu: blocks past its size freed",
			      (unsigned long long)ino);
			rc = tree_free_range(fs, ino, next, UINT64_MAX);
		}
		if (rc < 0 && !is_damage(rc))
			return rc;
	}
	rc = inode_get(fs, ino, &d);
	if (!rc)
		rc = walk_node(r, ino, d->i_height, 0, dir, &count);
	if (!rc)
		rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	if (get64(d->i_xattr.bp_blkno)) {
		ssize_t n = xattr_list(fs, ino, NULL, 0);
		if (is_damage((int)n)) {
			fixed(r, "inode %llu: damaged xattr block dropped",
			      (unsigned long long)ino);
			memset(&d->i_xattr, 0, sizeof(d->i_xattr));
			inode_touch(fs, ino);
		} else {
			count++;
		}
	} else if (bcache_find(&fs->bc, ino, 255, 0) &&
		   (xb = bcache_find(&fs->bc, ino, 255, 0))->dirty) {
		count++; /* a new xattr block from the replayed log */
	}
	rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	if (get64(d->i_blocks) != count) {
		fixed(r, "inode %llu: i_blocks %llu set to %llu",
		      (unsigned long long)ino,
		      (unsigned long long)get64(d->i_blocks),
		      (unsigned long long)count);
		d->i_blocks = put64(count);
		inode_touch(fs, ino);
	}
	return 0;
}

struct entry {
	char name[TFS_NAME_MAX + 1];
	uint64_t ino;
	unsigned type;
};
struct entries {
	struct entry *e;
	size_t n, cap;
};

static int collect(void *ctx, const char *name, uint64_t ino, unsigned dt,
		   uint64_t next)
{
	struct entries *l = ctx;

	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct entry *ne = realloc(l->e, cap * sizeof(*ne));
		if (!ne)
			return 1;
		l->e = ne;
		l->cap = cap;
	}
	snprintf(l->e[l->n].name, sizeof(l->e[l->n].name), "%s", name);
	l->e[l->n].ino = ino;
	l->e[l->n].type = dt;
	l->n++;
	return 0;
}

static int walk_dir(struct rctx *r, uint64_t dir, struct u64vec *queue)
{
	struct fs *fs = r->fs;
	struct entries l = { 0 };
	int rc = dir_iterate(fs, dir, 0, collect, &l, false);

	for (size_t i = 0; i < l.n && !rc; i++) {
		struct entry *e = &l.e[i];
		struct tfs_dinode *d;
		unsigned type;
		bool sub;
		if (e->ino >= r->nino || inode_get(fs, e->ino, &d)) {
			fixed(r, "directory %llu: entry '%s' named a missing inode; removed",
			      (unsigned long long)dir, e->name);
			rc = dir_remove(fs, dir, e->name);
			continue;
		}
		type = (get32(d->i_mode) >> 12) & 15;
		sub = S_ISDIR(get32(d->i_mode));
		if (sub && (r->reached[e->ino] || e->ino == TFS_INO_ROOT ||
			    e->ino == TFS_INO_ORPHANS)) {
			fixed(r, "directory %llu: second link '%s' to directory %llu removed",
			      (unsigned long long)dir, e->name,
			      (unsigned long long)e->ino);
			rc = dir_remove(fs, dir, e->name);
			continue;
		}
		if (type != e->type) {
			fixed(r, "directory %llu: entry '%s' had the wrong type",
			      (unsigned long long)dir, e->name);
			rc = dir_set(fs, dir, e->name, e->ino, type);
			if (rc)
				break;
			rc = inode_get(fs, e->ino, &d);
			if (rc)
				break;
		}
		r->counted[dir]++;
		r->reached[e->ino] = 1;
		if (dir != TFS_INO_ORPHANS)
			r->links[e->ino]++;
		if (sub) {
			r->subdirs[dir]++;
			if (get64(d->i_parent) != dir) {
				fixed(r, "directory %llu: parent set to %llu",
				      (unsigned long long)e->ino,
				      (unsigned long long)dir);
				d->i_parent = put64(dir);
				inode_touch(fs, e->ino);
			}
			u64vec_push(queue, e->ino);
		}
	}
	free(l.e);
	return rc;
}

static int lost_found(struct rctx *r, uint64_t *out)
{
	struct fs *fs = r->fs;
	struct timespec now = fs_now();
	struct tfs_dinode *d;
	uint64_t ino;
	unsigned type;
	int rc = dir_lookup(fs, TFS_INO_ROOT, "lost+found", &ino, &type);

	if (!rc && type == DT_DIR && ino < r->nino) {
		*out = ino;
		return 0;
	}
	if (!rc)
		return -EEXIST;
	ino = get64(fs->sb.s_next_ino);
	if (ino >= r->nino)
		return -ENOSPC;
	rc = inode_alloc(fs, ino, S_IFDIR | 0700);
	if (!rc)
		rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	d->i_nlink = put32(2);
	ts_put(&d->i_mtime, &d->i_mtime_ns, now);
	ts_put(&d->i_ctime, &d->i_ctime_ns, now);
	ts_put(&d->i_atime, &d->i_atime_ns, now);
	rc = dir_init(fs, ino, TFS_INO_ROOT);
	if (!rc)
		rc = dir_insert(fs, TFS_INO_ROOT, "lost+found", ino, DT_DIR);
	if (rc)
		return rc;
	r->reached[ino] = 1;
	r->counted[TFS_INO_ROOT]++;
	r->subdirs[TFS_INO_ROOT]++;
	fixed(r, "created /lost+found");
	*out = ino;
	return 0;
}

static int fix_namespace(struct rctx *r)
{
	struct fs *fs = r->fs;
	struct u64vec q = { 0 };
	uint64_t lf = 0;
	int rc = 0;

	r->reached[TFS_INO_ROOT] = r->reached[TFS_INO_ORPHANS] = 1;
	u64vec_push(&q, TFS_INO_ROOT);
	u64vec_push(&q, TFS_INO_ORPHANS);
	for (size_t i = 0; i < q.n && !rc; i++)
		rc = walk_dir(r, q.v[i], &q);
	/* unreachable inodes go to /lost+found */
	for (uint64_t ino = TFS_INO_FIRST; ino < r->nino && !rc; ino++) {
		struct tfs_dinode *d;
		char name[32];
		if (r->reached[ino] || inode_get(fs, ino, &d))
			continue;
		if (!lf && (rc = lost_found(r, &lf)))
			break;
		if (ino == lf)
			continue;
		rc = inode_get(fs, ino, &d);
		if (rc)
			break;
		snprintf(name, sizeof(name), "#%llu", (unsigned long long)ino);
		fixed(r, "inode %llu was unreachable: now /lost+found/%s",
		      (unsigned long long)ino, name);
		rc = dir_insert(fs, lf, name, ino, (get32(d->i_mode) >> 12) & 15);
		if (rc)
			break;
		r->reached[ino] = 1;
		r->links[ino]++;
		r->counted[lf]++;
		if (!inode_get(fs, ino, &d) && S_ISDIR(get32(d->i_mode))) {
			d->i_parent = put64(lf);
			inode_touch(fs, ino);
			r->subdirs[lf]++;
			u64vec_push(&q, ino);
			for (size_t i = q.n - 1; i < q.n && !rc; i++)
				rc = walk_dir(r, q.v[i], &q);
		}
	}
	u64vec_free(&q);
	return rc;
}

static int fix_counts(struct rctx *r)
{
	struct fs *fs = r->fs;
	uint64_t inodes = 0;

	for (uint64_t ino = 1; ino < r->nino; ino++) {
		struct tfs_dinode *d;
		uint32_t want;
		if (inode_get(fs, ino, &d))
			continue;
		inodes++;
		if (S_ISDIR(get32(d->i_mode))) {
			want = get32(d->i_nlink) ? 2 + r->subdirs[ino] : 0;
			if (get64(d->i_nentries) != r->counted[ino]) {
				fixed(r, "directory %llu: %llu entries counted",
				      (unsigned long long)ino,
				      (unsigned long long)r->counted[ino]);
				d->i_nentries = put64(r->counted[ino]);
				inode_touch(fs, ino);
			}
		} else {
			want = r->links[ino];
			if (want == 0 && get32(d->i_nlink) == 0)
				continue; /* an orphan: reclaimed at unmount */
		}
		if (get32(d->i_nlink) != want) {
			fixed(r, "inode %llu: link count %u set to %u",
			      (unsigned long long)ino, get32(d->i_nlink), want);
			d->i_nlink = put32(want);
			inode_touch(fs, ino);
		}
	}
	if (inodes != get64(fs->sb.s_ninodes)) {
		fixed(r, "inode count %llu set to %llu",
		      (unsigned long long)get64(fs->sb.s_ninodes),
		      (unsigned long long)inodes);
		fs->sb.s_ninodes = put64(inodes);
	}
	return 0;
}

static int repair_round(struct bdev *bd, struct rctx *r, bool full)
{
	struct fs_opts o = { .no_cp_thread = true, .repair = true };
	uint8_t *refs = NULL, *bad = calloc(TFS_MAX_SNAPS, 1);
	uint64_t blind = 0;
	struct fs *fs;
	int rc = bad ? verify_refs(bd, &refs, &blind, bad) : -ENOMEM;

	if (rc < 0) {
		free(bad);
		return rc;
	}
	rc = fs_mount(bd, &o, &fs);
	if (rc) {
		free(refs);
		free(bad);
		return rc;
	}
	r->fs = fs;
	pthread_mutex_lock(&fs->lock);
	{
		/* map blocks that cannot be read are rebuilt from refs */
		uint64_t count = 0;
		rc = walk_node(r, OWN_AFILE, fs->sb.s_afile.i_height, 0, false,
			       &count);
	}
	if (!rc)
		rc = fix_map(r, refs, blind == 0);
	free(refs);
	r->nino = get64(fs->sb.s_next_ino) + 1;
	if (!rc && full && r->nino > REPAIR_MAX_INODES)
		rc = -EFBIG;
	if (!rc && full) {
		uint64_t count = 0;
		r->reached = calloc(r->nino, 1);
		r->links = calloc(r->nino, sizeof(*r->links));
		r->subdirs = calloc(r->nino, sizeof(*r->subdirs));
		r->counted = calloc(r->nino, sizeof(*r->counted));
		if (!r->reached || !r->links || !r->subdirs || !r->counted)
			rc = -ENOMEM;
		if (!rc)
			rc = walk_node(r, OWN_IFILE, fs->sb.s_ifile.i_height, 0,
				       false, &count);
		for (uint64_t ino = 1; ino < r->nino && !rc; ino++)
			rc = check_inode(r, ino);
		if (!rc)
			rc = fix_namespace(r);
		if (!rc)
			rc = fix_counts(r);
		free(r->reached);
		free(r->links);
		free(r->subdirs);
		free(r->counted);
		r->reached = NULL;
		r->links = r->subdirs = NULL;
		r->counted = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
	/* a snapshot cannot be mended: one holding damage goes */
	for (unsigned i = 0; i < TFS_MAX_SNAPS && !rc && full; i++) {
		char name[TFS_SNAP_NAME_MAX + 1];
		if (!bad[i] || !fs->snaps[i].used)
			continue;
		memcpy(name, fs->snaps[i].name, sizeof(name));
		rc = fs_snap_delete(fs, name);
		if (!rc)
			fixed(r, "snapshot %s held damaged blocks: deleted", name);
	}
	free(bad);
	if (rc) {
		fs_abandon(fs);
		return rc;
	}
	r->blind = blind;
	return fs_unmount(fs); /* the CP that commits this round */
}

int fs_repair(struct bdev *bd, fs_report_t report, void *ctx)
{
	struct rctx r = { .report = report, .ctx = ctx };
	uint8_t *blk = malloc(TFS_BLOCK_SIZE);
	int rc = 0, before;

	/* a damaged slot: the rounds' CPs write both slots anew */
	for (unsigned slot = 0; blk && slot < TFS_SB_SLOTS; slot++) {
		int src = bdev_read(bd, slot, blk);
		if (!src)
			src = fs_super_check(blk, bd->nblocks);
		if (src && src != -EINVAL)
			fixed(&r, "superblock slot %u was damaged: rewritten", slot);
	}
	free(blk);

	/* Damage shared with a snapshot shows in the snapshot's tree only
	 * once the live tree has let go of it: repeat until a round finds
	 * nothing more (a few rounds at most). */
	for (int round = 0; round < 4 && !rc; round++) {
		before = r.fixed;
		rc = repair_round(bd, &r, true);
		if (r.fixed == before && r.blind == 0)
			break;
	}
	/* blocks cut out above are referenced no more: free them */
	for (int round = 0; round < 2 && !rc; round++)
		rc = repair_round(bd, &r, false);
	return rc < 0 ? rc : r.fixed;
}
