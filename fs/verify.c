/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * verify.c - check every invariant of the newest valid root of an image,
 * reading the device directly (not through a mount), so it can judge a
 * mount's work.  Used by fsck.twinfs and by every test's teardown.
 *
 * Checks: superblock; every block pointer (range, checksum, birth never
 * newer than its parent's, no block referenced twice); every dinode
 * (type, height, sizes against blocks, i_blocks); directories (bucket
 * format, hash placement, entries naming live inodes of the right type,
 * parent pointers, no cycles); link counts; orphans; unreachable inodes;
 * the allocation map equal to the set of referenced blocks; the counters
 * in the superblock; the intent log's records.
 * Cost: the used blocks (plus one bit per block for the reference map).
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "fs_impl.h"

struct vino {
	uint64_t ino, parent, nentries, size, blocks;
	uint32_t mode, nlink, links, subdirs;
	bool reached;
};

struct vctx {
	struct bdev *bd;
	struct tfs_super sb;
	uint8_t *ref;          /* one bit per block: referenced */
	fs_report_t report;
	void *rctx;
	int problems;
	struct vino *inos;     /* open addressing by ino */
	size_t cap, n;
	uint8_t *blk[TFS_MAX_HEIGHT + 2];
	uint64_t tree_blocks;  /* blocks counted in the current tree */
	bool shared_ok;        /* snapshot walks: a referenced block is shared */
	uint64_t snap_gen;
	uint64_t blind;        /* subtrees not read: what they hold is unknown */
	uint8_t *bad_slots;    /* snapshots with such a subtree (may be NULL) */
	uint8_t *damaged;      /* bit per block: could not be read */
	uint64_t cur_slot;
	uint64_t max_idx;      /* highest level-0 index with data + 1 */
};

static void problem(struct vctx *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void problem(struct vctx *v, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	v->problems++;
	if (!v->report || v->problems > 1000)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	v->report(v->rctx, msg);
}

static struct vino *vino_slot(struct vctx *v, uint64_t ino, bool add)
{
	if (add && (v->n + 1) * 2 > v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 1024;
		struct vino *ni = calloc(cap, sizeof(*ni)), *old = v->inos;
		size_t oc = v->cap;
		VERIFY(ni);
		v->inos = ni;
		v->cap = cap;
		v->n = 0;
		for (size_t i = 0; i < oc; i++)
			if (old[i].ino)
				*vino_slot(v, old[i].ino, true) = old[i];
		free(old);
	}
	if (!v->cap)
		return NULL;
	for (size_t i = (size_t)(ino * 0x9e3779b97f4a7c15ull >> 7) & (v->cap - 1);;
	     i = (i + 1) & (v->cap - 1)) {
		if (v->inos[i].ino == ino)
			return &v->inos[i];
		if (!v->inos[i].ino) {
			if (!add)
				return NULL;
			v->inos[i].ino = ino;
			v->n++;
			return &v->inos[i];
		}
	}
}

typedef void (*leaf_fn)(struct vctx *v, void *arg, uint64_t idx,
			const uint8_t *data);

static void (*progress_fn)(void *arg, uint64_t done, uint64_t total);
static void *progress_arg;
static uint64_t progress_done, progress_total;

void fs_verify_progress(void (*fn)(void *arg, uint64_t done, uint64_t total),
			void *arg)
{
	progress_fn = fn;
	progress_arg = arg;
}

/* Walk one tree.  Returns false if the root itself could not be read. */
static void walk(struct vctx *v, const char *what, const struct tfs_bptr *bp,
		 unsigned level, uint64_t idx, uint64_t parent_birth,
		 leaf_fn fn, void *arg)
{
	uint64_t blkno = get64(bp->bp_blkno), birth = get64(bp->bp_birth);
	uint64_t nb = get64(v->sb.s_nblocks);
	uint8_t *buf = v->blk[level];
	le64 sum[2];

	if (blkno == 0)
		return;
	if (blkno < TFS_LOG_START + get64(v->sb.s_log_blocks) || blkno >= nb) {
		problem(v, "%s: pointer to block %llu out of range", what,
			(unsigned long long)blkno);
		goto blind;
	}
	if (birth == 0 || birth > parent_birth)
		problem(v, "%s: block %llu born in CP %llu, after its parent (%llu)",
			what, (unsigned long long)blkno,
			(unsigned long long)birth,
			(unsigned long long)parent_birth);
	if (v->ref[blkno / 8] & (1u << (blkno % 8))) {
		if (!v->shared_ok)
			problem(v, "%s: block %llu referenced twice", what,
				(unsigned long long)blkno);
		else if (v->damaged &&
			 (v->damaged[blkno / 8] & (1u << (blkno % 8))) &&
			 v->bad_slots)
			v->bad_slots[v->cur_slot] = 1; /* shares the damage */
		return;
	}
	v->ref[blkno / 8] |= (uint8_t)(1u << (blkno % 8));
	v->tree_blocks++;
	if (progress_fn && (++progress_done & 1023) == 0)
		progress_fn(progress_arg, progress_done, progress_total);
	if (bdev_read(v->bd, blkno, buf)) {
		problem(v, "%s: block %llu unreadable", what,
			(unsigned long long)blkno);
		goto blind;
	}
	csum_block(buf, TFS_BLOCK_SIZE, sum);
	if (!csum_equal(sum, bp->bp_csum)) {
		problem(v, "%s: block %llu checksum mismatch", what,
			(unsigned long long)blkno);
		goto blind;
	}
	if (level == 0) {
		if (idx + 1 > v->max_idx)
			v->max_idx = idx + 1;
		if (fn)
			fn(v, arg, idx, buf);
		return;
	}
	/* a leaf callback may walk other trees (snapshots do), which reuse
	 * the per-level buffers: iterate over a copy */
	buf = malloc(TFS_BLOCK_SIZE);
	VERIFY(buf);
	memcpy(buf, v->blk[level], TFS_BLOCK_SIZE);
	for (unsigned i = 0; i < TFS_BPTRS_PER_BLOCK; i++) {
		struct tfs_bptr c;
		memcpy(&c, buf + i * sizeof(c), sizeof(c));
		walk(v, what, &c, level - 1, idx * TFS_BPTRS_PER_BLOCK + i,
		     birth, fn, arg);
	}
	free(buf);
	return;
blind:
	v->blind++;
	if (!v->damaged)
		v->damaged = calloc(1, (nb + 7) / 8);
	if (v->damaged && blkno < nb)
		v->damaged[blkno / 8] |= (uint8_t)(1u << (blkno % 8));
	if (v->shared_ok && v->bad_slots)
		v->bad_slots[v->cur_slot] = 1;
}

static void walk_tree(struct vctx *v, const char *what,
		      const struct tfs_dinode *d, leaf_fn fn, void *arg)
{
	v->tree_blocks = 0;
	v->max_idx = 0;
	if (d->i_height > TFS_MAX_HEIGHT) {
		problem(v, "%s: height %u", what, d->i_height);
		return;
	}
	walk(v, what, &d->i_root, d->i_height, 0,
	     v->shared_ok ? v->snap_gen : get64(v->sb.s_gen), fn, arg);
}

/* ---- snapshots: their trees share blocks with the live one ---- */
static void snap_ifile_leaf(struct vctx *v, void *arg, uint64_t idx,
			    const uint8_t *data)
{
	/* a leaf reached here is not shared: walk its inodes' trees */
	uint8_t *copy = malloc(TFS_BLOCK_SIZE);

	VERIFY(copy);
	memcpy(copy, data, TFS_BLOCK_SIZE);
	for (unsigned i = 0; i < TFS_INODES_PER_BLOCK; i++) {
		const struct tfs_dinode *d = (const void *)(copy + i * 256);
		char what[80];
		if (get32(d->i_mode) == 0)
			continue;
		snprintf(what, sizeof(what), "snapshot %s inode %llu",
			 (const char *)arg,
			 (unsigned long long)(idx * TFS_INODES_PER_BLOCK + i));
		walk_tree(v, what, d, NULL, NULL);
		if (get64(d->i_xattr.bp_blkno))
			walk(v, what, &d->i_xattr, 0, 0, v->snap_gen, NULL, NULL);
	}
	free(copy);
}

static void snap_table_leaf(struct vctx *v, void *arg, uint64_t idx,
			    const uint8_t *data)
{
	struct u64vec *gens = arg;

	for (unsigned i = 0; i < TFS_SNAPS_PER_BLOCK; i++) {
		const struct tfs_snap *e = (const void *)(data + i * 512);
		if (!get64(e->sn_id))
			continue;
		if (get64(e->sn_gen) > get64(v->sb.s_gen) ||
		    !memchr(e->sn_name, 0, sizeof(e->sn_name))) {
			problem(v, "snapshot slot %llu damaged",
				(unsigned long long)(idx * TFS_SNAPS_PER_BLOCK + i));
			continue;
		}
		u64vec_push(gens, (uint64_t)(idx * TFS_SNAPS_PER_BLOCK + i));
	}
}

/* ---- the map ---- */
static void map_leaf(struct vctx *v, void *arg, uint64_t idx,
		     const uint8_t *data)
{
	uint8_t *map = arg;
	uint64_t nbytes = (get64(v->sb.s_nblocks) + 7) / 8;
	uint64_t off = idx * TFS_BLOCK_SIZE;

	if (off >= nbytes) {
		problem(v, "allocation map block %llu past the end",
			(unsigned long long)idx);
		return;
	}
	memcpy(map + off, data, nbytes - off < TFS_BLOCK_SIZE ?
	       nbytes - off : TFS_BLOCK_SIZE);
}

/* ---- inodes ---- */
static void ifile_leaf(struct vctx *v, void *arg, uint64_t idx,
		       const uint8_t *data)
{
	for (unsigned i = 0; i < TFS_INODES_PER_BLOCK; i++) {
		const struct tfs_dinode *d = (const void *)(data + i * 256);
		uint64_t ino = idx * TFS_INODES_PER_BLOCK + i;
		struct vino *vi;
		if (get32(d->i_mode) == 0)
			continue;
		if (ino == 0 || ino >= get64(v->sb.s_next_ino)) {
			problem(v, "inode %llu in use beyond s_next_ino",
				(unsigned long long)ino);
			continue;
		}
		vi = vino_slot(v, ino, true);
		vi->mode = get32(d->i_mode);
		vi->nlink = get32(d->i_nlink);
		vi->parent = get64(d->i_parent);
		vi->nentries = get64(d->i_nentries);
		vi->size = get64(d->i_size);
		vi->blocks = get64(d->i_blocks);
	}
}

struct dirwalk {
	uint64_t ino;
	unsigned bits;
	uint64_t entries;
	struct u64vec children;
	bool list_only;        /* second pass: only collect subdirectories */
};

static void dir_leaf(struct vctx *v, void *arg, uint64_t idx,
		     const uint8_t *data)
{
	struct dirwalk *w = arg;
	struct dirent_view e[TFS_BLOCK_SIZE / 24];
	int n = dirblk_parse(data, e, sizeof(e) / sizeof(e[0]));

	if (n < 0) {
		problem(v, "directory %llu: bucket %llu damaged",
			(unsigned long long)w->ino, (unsigned long long)idx);
		return;
	}
	if (idx >> w->bits)
		problem(v, "directory %llu: bucket %llu beyond the table",
			(unsigned long long)w->ino, (unsigned long long)idx);
	for (int i = 0; i < n; i++) {
		struct vino *c = vino_slot(v, e[i].ino, false);
		uint64_t h = dir_hash(e[i].name, e[i].namelen);
		if (w->list_only) {
			if (c && S_ISDIR(c->mode))
				u64vec_push(&w->children, e[i].ino);
			continue;
		}
		if (h != e[i].hash ||
		    (w->bits ? h >> (62 - w->bits) : 0) != idx)
			problem(v, "directory %llu: entry '%.*s' misplaced",
				(unsigned long long)w->ino, (int)e[i].namelen,
				e[i].name);
		w->entries++;
		if (!c) {
			problem(v, "directory %llu: entry '%.*s' names free inode %llu",
				(unsigned long long)w->ino, (int)e[i].namelen,
				e[i].name, (unsigned long long)e[i].ino);
			continue;
		}
		if (e[i].type != ((c->mode >> 12) & 15))
			problem(v, "directory %llu: entry '%.*s' has the wrong type",
				(unsigned long long)w->ino, (int)e[i].namelen,
				e[i].name);
		c->links++;
		if (S_ISDIR(c->mode)) {
			u64vec_push(&w->children, e[i].ino);
			if (c->parent != w->ino)
				problem(v, "directory %llu: parent is %llu, entry in %llu",
					(unsigned long long)e[i].ino,
					(unsigned long long)c->parent,
					(unsigned long long)w->ino);
		}
	}
}

static void xattr_check(struct vctx *v, uint64_t ino,
			const struct tfs_dinode *d)
{
	struct tfs_bptr bp = d->i_xattr;
	uint64_t before = v->tree_blocks;

	if (!get64(bp.bp_blkno))
		return;
	walk(v, "xattr", &bp, 0, 0, get64(v->sb.s_gen), NULL, NULL);
	if (v->tree_blocks != before &&
	    xattrblk_check(v->blk[0]) < 0)
		problem(v, "inode %llu: xattr block damaged",
			(unsigned long long)ino);
}

static int read_dinode(struct vctx *v, uint64_t ino, struct tfs_dinode *out);

/* Walk every inode's tree; directories from the root down. */
static void check_inodes(struct vctx *v, struct fs_verify_stats *st)
{
	struct u64vec queue = { 0 };

	for (size_t i = 0; i < v->cap; i++) {
		struct vino *vi = &v->inos[i];
		struct tfs_dinode d;
		char what[64];
		uint64_t dblocks;
		if (!vi->ino)
			continue;
		if (read_dinode(v, vi->ino, &d))
			continue;
		snprintf(what, sizeof(what), "inode %llu",
			 (unsigned long long)vi->ino);
		if (S_ISDIR(vi->mode)) {
			struct dirwalk w = { vi->ino, d.i_dirbits, 0, { 0 }, false };
			st->dirs++;
			if (d.i_dirbits > TFS_DIR_MAX_BITS) {
				problem(v, "%s: %u hash bits", what, d.i_dirbits);
				continue;
			}
			walk_tree(v, what, &d, dir_leaf, &w);
			if (w.entries != vi->nentries)
				problem(v, "%s: %llu entries, counted %llu", what,
					(unsigned long long)vi->nentries,
					(unsigned long long)w.entries);
			for (size_t c = 0; c < w.children.n; c++) {
				struct vino *ci = vino_slot(v, w.children.v[c], false);
				vi->subdirs++;
				(void)ci;
			}
			u64vec_free(&w.children);
		} else {
			switch (vi->mode & S_IFMT) {
			case S_IFREG: case S_IFLNK: case S_IFIFO: case S_IFSOCK:
			case S_IFCHR: case S_IFBLK:
				break;
			default:
				problem(v, "%s: bad mode %o", what, vi->mode);
			}
			st->files++;
			walk_tree(v, what, &d, NULL, NULL);
			if (v->max_idx > (vi->size + TFS_BLOCK_SIZE - 1) /
					 TFS_BLOCK_SIZE)
				problem(v, "%s: data past its size %llu", what,
					(unsigned long long)vi->size);
			if (S_ISLNK(vi->mode) &&
			    (vi->size == 0 || vi->size > TFS_SYMLINK_MAX))
				problem(v, "%s: symlink of %llu bytes", what,
					(unsigned long long)vi->size);
		}
		dblocks = v->tree_blocks;
		xattr_check(v, vi->ino, &d);
		if (get64(d.i_xattr.bp_blkno))
			dblocks++;
		if (dblocks != vi->blocks)
			problem(v, "%s: i_blocks %llu, counted %llu", what,
				(unsigned long long)vi->blocks,
				(unsigned long long)dblocks);
	}
	/* reachability from the root (and the orphan directory) */
	u64vec_push(&queue, TFS_INO_ROOT);
	u64vec_push(&queue, TFS_INO_ORPHANS);
	for (size_t q = 0; q < queue.n; q++) {
		struct vino *vi = vino_slot(v, queue.v[q], false);
		struct tfs_dinode d;
		struct dirwalk w;
		if (!vi || vi->reached)
			continue;
		vi->reached = true;
		if (!S_ISDIR(vi->mode) || read_dinode(v, vi->ino, &d))
			continue;
		w = (struct dirwalk){ vi->ino, d.i_dirbits, 0, { 0 }, true };
		/* re-walk only to list children: cheap enough for fsck */
		{
			uint8_t *save = v->ref;
			uint8_t *tmp = calloc(1, (get64(v->sb.s_nblocks) + 7) / 8);
			int p = v->problems;
			fs_report_t rep = v->report;
			VERIFY(tmp);
			v->ref = tmp;
			v->report = NULL;
			walk_tree(v, "", &d, dir_leaf, &w);
			v->problems = p;
			v->report = rep;
			v->ref = save;
			free(tmp);
		}
		for (size_t c = 0; c < w.children.n; c++)
			u64vec_push(&queue, w.children.v[c]);
		u64vec_free(&w.children);
	}
	u64vec_free(&queue);
}

/* Level-0 block idx of a metafile (already walked, so readable). */
static uint8_t *read_leaf(struct vctx *v, const struct tfs_dinode *f,
			  uint64_t idx)
{
	struct tfs_bptr bp = f->i_root;
	uint8_t *buf = v->blk[TFS_MAX_HEIGHT + 1];

	for (int level = f->i_height; ; level--) {
		if (!get64(bp.bp_blkno) || bdev_read(v->bd, get64(bp.bp_blkno), buf))
			return NULL;
		if (level == 0)
			return buf;
		memcpy(&bp, buf + ((idx >> (TFS_BPTR_SHIFT * (level - 1))) &
				   (TFS_BPTRS_PER_BLOCK - 1)) * sizeof(bp),
		       sizeof(bp));
	}
}

static int read_dinode(struct vctx *v, uint64_t ino, struct tfs_dinode *out)
{
	uint8_t *buf = read_leaf(v, &v->sb.s_ifile, ino / TFS_INODES_PER_BLOCK);

	if (!buf)
		return -EIO;
	memcpy(out, buf + (ino % TFS_INODES_PER_BLOCK) * sizeof(*out),
	       sizeof(*out));
	return 0;
}

static void check_links(struct vctx *v)
{
	for (size_t i = 0; i < v->cap; i++) {
		struct vino *vi = &v->inos[i];
		uint32_t want;
		if (!vi->ino)
			continue;
		if (vi->ino == TFS_INO_ROOT || vi->ino == TFS_INO_ORPHANS) {
			if (!S_ISDIR(vi->mode))
				problem(v, "inode %llu is not a directory",
					(unsigned long long)vi->ino);
			if (vi->links)
				problem(v, "inode %llu has directory entries",
					(unsigned long long)vi->ino);
		} else if (!vi->reached && !S_ISDIR(vi->mode) && vi->links == 0) {
			problem(v, "inode %llu is unreachable",
				(unsigned long long)vi->ino);
			continue;
		} else if (!vi->reached && S_ISDIR(vi->mode)) {
			problem(v, "directory %llu is unreachable",
				(unsigned long long)vi->ino);
			continue;
		}
		if (S_ISDIR(vi->mode))
			want = vi->nlink == 0 ? 0 : 2 + vi->subdirs;
		else
			want = vi->links;
		if (S_ISDIR(vi->mode) && vi->nlink && vi->ino > TFS_INO_ORPHANS &&
		    vi->links != 1)
			problem(v, "directory %llu has %u entries naming it",
				(unsigned long long)vi->ino, vi->links);
		if (vi->nlink != want) {
			/* an orphan: nlink 0, one entry in the orphan dir */
			if (vi->nlink == 0 && vi->links == 1)
				continue;
			problem(v, "inode %llu: link count %u, counted %u",
				(unsigned long long)vi->ino, vi->nlink, want);
		}
	}
}

static int read_snap(struct vctx *v, uint64_t slot, struct tfs_snap *out)
{
	uint8_t *buf = read_leaf(v, &v->sb.s_sfile, slot / TFS_SNAPS_PER_BLOCK);

	if (!buf)
		return -EIO;
	memcpy(out, buf + (slot % TFS_SNAPS_PER_BLOCK) * sizeof(*out),
	       sizeof(*out));
	return 0;
}

static void dead_leaf(struct vctx *v, void *arg, uint64_t idx,
		      const uint8_t *data)
{
	struct u64vec *dead = arg;
	uint64_t n = get64(v->sb.s_dfile.i_size);

	for (unsigned i = 0; i < TFS_DEAD_PER_BLOCK; i++) {
		const struct tfs_dead *e = (const void *)(data + i * 24);
		if (idx * TFS_DEAD_PER_BLOCK + i >= n)
			break;
		u64vec_push(dead, get64(e->d_blkno));
		u64vec_push(dead, get64(e->d_birth));
		u64vec_push(dead, get64(e->d_death));
	}
}

static void check_snapshots(struct vctx *v, struct fs_verify_stats *st)
{
	struct u64vec slots = { 0 }, gens = { 0 }, dead = { 0 };
	uint8_t *live = malloc((get64(v->sb.s_nblocks) + 7) / 8);

	VERIFY(live);
	memcpy(live, v->ref, (get64(v->sb.s_nblocks) + 7) / 8);
	walk_tree(v, "snapshot table", &v->sb.s_sfile, snap_table_leaf, &slots);
	if (v->tree_blocks != get64(v->sb.s_sfile.i_blocks))
		problem(v, "snapshot table: i_blocks %llu, counted %llu",
			(unsigned long long)get64(v->sb.s_sfile.i_blocks),
			(unsigned long long)v->tree_blocks);
	walk_tree(v, "deadlist", &v->sb.s_dfile, dead_leaf, &dead);
	if (v->tree_blocks != get64(v->sb.s_dfile.i_blocks))
		problem(v, "deadlist: i_blocks %llu, counted %llu",
			(unsigned long long)get64(v->sb.s_dfile.i_blocks),
			(unsigned long long)v->tree_blocks);
	if (dead.n / 3 != get64(v->sb.s_dfile.i_size))
		problem(v, "deadlist: %llu entries, found %llu",
			(unsigned long long)get64(v->sb.s_dfile.i_size),
			(unsigned long long)(dead.n / 3));
	memcpy(live, v->ref, (get64(v->sb.s_nblocks) + 7) / 8);
	v->shared_ok = true;
	for (size_t i = 0; i < slots.n; i++) {
		struct tfs_snap e;
		if (read_snap(v, slots.v[i], &e))
			continue;
		v->snap_gen = get64(e.sn_gen);
		v->cur_slot = slots.v[i];
		u64vec_push(&gens, v->snap_gen);
		walk_tree(v, e.sn_name, &e.sn_ifile, snap_ifile_leaf, e.sn_name);
	}
	v->shared_ok = false;
	st->snapshots = slots.n;
	/* every deadlist block: held by a snapshot walk and by the rule */
	for (size_t i = 0; i + 2 < dead.n; i += 3) {
		uint64_t b = dead.v[i], birth = dead.v[i + 1], death = dead.v[i + 2];
		bool covered = false;
		for (size_t g = 0; g < gens.n && !covered; g++)
			covered = birth <= gens.v[g] && gens.v[g] < death;
		if (!covered)
			problem(v, "deadlist: block %llu (born %llu, dropped %llu) held by no snapshot",
				(unsigned long long)b, (unsigned long long)birth,
				(unsigned long long)death);
		else if (b >= get64(v->sb.s_nblocks) ||
			 !(v->ref[b / 8] & (1u << (b % 8))) ||
			 (live[b / 8] & (1u << (b % 8))))
			problem(v, "deadlist: block %llu is not a snapshot's alone",
				(unsigned long long)b);
	}
	free(live);
	u64vec_free(&slots);
	u64vec_free(&gens);
	u64vec_free(&dead);
}

static uint64_t popcount_bytes(const uint8_t *p, uint64_t n)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < n; i++)
		c += (uint64_t)__builtin_popcount(p[i]);
	return c;
}

static void check_map(struct vctx *v, const uint8_t *map)
{
	uint64_t nb = get64(v->sb.s_nblocks);
	uint64_t leaks = 0, lost = 0, used;

	for (uint64_t i = 0; i < (nb + 7) / 8; i++) {
		uint8_t diff = map[i] ^ v->ref[i];
		if (!diff)
			continue;
		for (unsigned b = 0; b < 8; b++) {
			uint64_t blk = i * 8 + b;
			if (!(diff & (1u << b)) || blk >= nb)
				continue;
			if (map[i] & (1u << b)) {
				if (leaks++ < 20)
					problem(v, "block %llu is in use in the map but not referenced",
						(unsigned long long)blk);
			} else if (lost++ < 20) {
				problem(v, "block %llu is referenced but free in the map",
					(unsigned long long)blk);
			}
		}
	}
	if (leaks > 20 || lost > 20)
		problem(v, "%llu leaked and %llu unrecorded blocks in all",
			(unsigned long long)leaks, (unsigned long long)lost);
	used = popcount_bytes(map, (nb + 7) / 8);
	if (used != get64(v->sb.s_used_blocks))
		problem(v, "superblock counts %llu used blocks, the map %llu",
			(unsigned long long)get64(v->sb.s_used_blocks),
			(unsigned long long)used);
}

static int verify_run(struct bdev *bd, fs_report_t report, void *rctx,
		      struct fs_verify_stats *st, uint8_t **refs,
		      uint64_t *blind, uint8_t *bad_slots);

int fs_verify(struct bdev *bd, fs_report_t report, void *rctx,
	      struct fs_verify_stats *st)
{
	return verify_run(bd, report, rctx, st, NULL, NULL, NULL);
}

/* The set of blocks the newest root references (one bit per block):
 * what the allocation map should say.  *blind counts subtrees that could
 * not be read (what they reference is unknown); bad_slots (TFS_MAX_SNAPS
 * bytes) marks the snapshots holding such subtrees. */
int verify_refs(struct bdev *bd, uint8_t **refs, uint64_t *blind,
		uint8_t *bad_slots)
{
	return verify_run(bd, NULL, NULL, NULL, refs, blind, bad_slots);
}

static int verify_run(struct bdev *bd, fs_report_t report, void *rctx,
		      struct fs_verify_stats *st, uint8_t **refs,
		      uint64_t *blind, uint8_t *bad_slots)
{
	struct vctx v = { .bd = bd, .report = report, .rctx = rctx,
			  .bad_slots = bad_slots };
	struct fs_verify_stats dummy;
	uint8_t *map = NULL;
	uint64_t nb, bytes, nrec = 0, logbytes = 0;
	int rc;

	if (!st)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	rc = super_pick(bd, &v.sb);
	if (rc) {
		if (report)
			report(rctx, rc == -EINVAL ? "no twinfs superblock found" :
			       "no valid superblock");
		return rc;
	}
	/* A damaged slot is not counted: a crash tearing the superblock
	 * write is a normal state, and mount falls back to the other slot.
	 * fsck -y reports it and its CPs rewrite it (repair.c). */
	nb = get64(v.sb.s_nblocks);
	bytes = (nb + 7) / 8;
	progress_done = 0;
	progress_total = get64(v.sb.s_used_blocks);
	v.ref = calloc(1, bytes);
	map = calloc(1, bytes + TFS_BLOCK_SIZE);
	for (unsigned i = 0; i < TFS_MAX_HEIGHT + 2; i++)
		v.blk[i] = malloc(TFS_BLOCK_SIZE);
	for (unsigned i = 0; i < TFS_MAX_HEIGHT + 2; i++)
		if (!v.blk[i])
			rc = -ENOMEM;
	if (!v.ref || !map || rc) {
		rc = -ENOMEM;
		goto out;
	}
	st->gen = get64(v.sb.s_gen);
	st->total_blocks = nb;
	memcpy(st->label, v.sb.s_label, 64);
	st->label[64] = 0;
	for (uint64_t b = 0; b < TFS_LOG_START + get64(v.sb.s_log_blocks); b++)
		v.ref[b / 8] |= (uint8_t)(1u << (b % 8));
	walk_tree(&v, "allocation map", &v.sb.s_afile, map_leaf, map);
	if (v.tree_blocks != get64(v.sb.s_afile.i_blocks))
		problem(&v, "allocation map: i_blocks %llu, counted %llu",
			(unsigned long long)get64(v.sb.s_afile.i_blocks),
			(unsigned long long)v.tree_blocks);
	walk_tree(&v, "inode file", &v.sb.s_ifile, ifile_leaf, NULL);
	if (v.tree_blocks != get64(v.sb.s_ifile.i_blocks))
		problem(&v, "inode file: i_blocks %llu, counted %llu",
			(unsigned long long)get64(v.sb.s_ifile.i_blocks),
			(unsigned long long)v.tree_blocks);
	if (v.n != get64(v.sb.s_ninodes))
		problem(&v, "superblock counts %llu inodes, found %llu",
			(unsigned long long)get64(v.sb.s_ninodes),
			(unsigned long long)v.n);
	check_inodes(&v, st);
	check_links(&v);
	check_snapshots(&v, st);
	check_map(&v, map);
	st->ninodes = v.n;
	st->used_blocks = get64(v.sb.s_used_blocks);
	if (ilog_scan(bd, &v.sb, &nrec, &logbytes) == 0)
		st->log_records = nrec;
	if (progress_fn)
		progress_fn(progress_arg, progress_total, progress_total);
	rc = v.problems;
	if (refs) {
		*refs = v.ref;
		v.ref = NULL;
	}
	if (blind)
		*blind = v.blind;
out:
	free(v.ref);
	free(v.damaged);
	free(map);
	free(v.inos);
	for (unsigned i = 0; i < TFS_MAX_HEIGHT + 2; i++)
		free(v.blk[i]);
	return rc;
}
