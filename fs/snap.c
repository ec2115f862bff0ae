/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * snap.c - snapshots: the table, the deadlist, and their part in a CP.
 *
 * A snapshot pins the inode-file root of the CP that made it (sn_gen).
 * Blocks are shared with the live tree until the live tree drops them;
 * then alloc_kill() puts a block born in CP b and dropped in CP k on the
 * deadlist if some snapshot s has b <= s < k (format.h, "snapshot
 * rule"), and frees it otherwise.  Deleting a snapshot sweeps the
 * deadlist and frees what no remaining snapshot holds, so it returns
 * exactly the blocks only that snapshot held, whatever the order.
 *
 * Create and delete are requests applied by the next CP
 * (snap_cp_begin), so a snapshot appears atomically with the CP whose
 * root it pins: its slot is written before phase A, and its root is
 * filled in by snap_cp_patch() once phase B has finished the inode file
 * and before it checksums the table.  All of it runs under fs->lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fs_impl.h"

static struct tfs_snap *slot_ptr(struct buf *b, unsigned slot)
{
	return (struct tfs_snap *)b->data + slot % TFS_SNAPS_PER_BLOCK;
}

int snap_load(struct fs *fs)
{
	uint64_t nblk = get64(fs->sb.s_sfile.i_size) / TFS_BLOCK_SIZE;

	fs->snaps = calloc(TFS_MAX_SNAPS, sizeof(*fs->snaps));
	if (!fs->snaps)
		return -ENOMEM;
	if (nblk > TFS_MAX_SNAPS / TFS_SNAPS_PER_BLOCK + 1)
		return fs_corrupt("snapshot table of %llu blocks",
				  (unsigned long long)nblk);
	for (uint64_t i = 0; i < nblk; i++) {
		struct buf *b;
		int rc = buf_get(fs, OWN_SFILE, 0, i, 0, &b);
		if (rc)
			return rc;
		for (unsigned j = 0; b && j < TFS_SNAPS_PER_BLOCK; j++) {
			const struct tfs_snap *e = slot_ptr(b, j);
			struct snap_mem *m;
			unsigned slot = (unsigned)(i * TFS_SNAPS_PER_BLOCK + j);
			if (!get64(e->sn_id) || slot >= TFS_MAX_SNAPS)
				continue;
			if (get64(e->sn_gen) > get64(fs->sb.s_gen) ||
			    e->sn_ifile.i_height > TFS_MAX_HEIGHT ||
			    memchr(e->sn_name, 0, sizeof(e->sn_name)) == NULL)
				return fs_corrupt("snapshot slot %u", slot);
			m = &fs->snaps[slot];
			m->used = true;
			m->id = get64(e->sn_id);
			m->gen = get64(e->sn_gen);
			m->time = get64(e->sn_time);
			m->time_ns = get32(e->sn_time_ns);
			m->flags = get32(e->sn_flags);
			m->used_blocks = get64(e->sn_used);
			memcpy(m->name, e->sn_name, sizeof(m->name));
			m->ifile = e->sn_ifile;
			m->ninodes = get64(e->sn_ninodes);
			fs->nsnaps++;
		}
	}
	return 0;
}

void snap_destroy(struct fs *fs)
{
	for (size_t i = 0; i < fs->nsnapdir_gone; i++)
		free(fs->snapdir_gone[i]);
	free(fs->snapdir_gone);
	fs->snapdir_gone = NULL;
	fs->nsnapdir_gone = 0;
	free(fs->snaps);
	fs->snaps = NULL;
}

void snap_inval_names(struct fs *fs)
{
	char **names;
	size_t n;

	pthread_mutex_lock(&fs->lock);
	names = fs->snapdir_gone;
	n = fs->nsnapdir_gone;
	fs->snapdir_gone = NULL;
	fs->nsnapdir_gone = 0;
	pthread_mutex_unlock(&fs->lock);
	if (n && fs->opts.inval)
		fs->opts.inval(fs->opts.inval_arg, FS_INO_SNAPDIR);
	for (size_t i = 0; i < n; i++) {
		fs->opts.inval_entry(fs->opts.inval_arg, FS_INO_SNAPDIR,
				     names[i]);
		free(names[i]);
	}
	free(names);
}

int snap_by_name(struct fs *fs, const char *name)
{
	for (unsigned i = 0; fs->snaps && i < TFS_MAX_SNAPS; i++)
		if (fs->snaps[i].used && !strcmp(fs->snaps[i].name, name))
			return (int)i;
	return -ENOENT;
}

static int slot_write(struct fs *fs, unsigned slot, const struct tfs_snap *e)
{
	struct buf *b;
	uint64_t idx = slot / TFS_SNAPS_PER_BLOCK;
	int rc = buf_get(fs, OWN_SFILE, 0, idx, GET_CREATE, &b);

	if (!rc)
		rc = buf_dirty(fs, b);
	if (rc)
		return rc;
	*slot_ptr(b, slot) = *e;
	if ((idx + 1) * TFS_BLOCK_SIZE > get64(fs->sb.s_sfile.i_size))
		fs->sb.s_sfile.i_size = put64((idx + 1) * TFS_BLOCK_SIZE);
	return 0;
}

/* ---- the deadlist ---- */

static int dead_at(struct fs *fs, uint64_t i, unsigned flags,
		   struct tfs_dead **out)
{
	struct buf *b;
	int rc = buf_get(fs, OWN_DFILE, 0, i / TFS_DEAD_PER_BLOCK, flags, &b);

	*out = NULL;
	if (rc)
		return rc;
	if (!b)
		return fs_corrupt("deadlist entry %llu missing",
				  (unsigned long long)i);
	if (flags & GET_CREATE) {
		rc = buf_dirty(fs, b);
		if (rc)
			return rc;
	}
	*out = (struct tfs_dead *)b->data + i % TFS_DEAD_PER_BLOCK;
	return 0;
}

int snap_dead_add(struct fs *fs, uint64_t blkno, uint64_t birth,
		  uint64_t death)
{
	uint64_t n = get64(fs->sb.s_dfile.i_size);
	struct tfs_dead *e;
	int rc = dead_at(fs, n, GET_CREATE, &e);

	if (rc)
		return rc;
	e->d_blkno = put64(blkno);
	e->d_birth = put64(birth);
	e->d_death = put64(death);
	fs->sb.s_dfile.i_size = put64(n + 1);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorted generations of the snapshots in use. */
static uint64_t *snap_gens(struct fs *fs, size_t *n)
{
	uint64_t *g = malloc((fs->nsnaps + 1) * sizeof(*g));

	*n = 0;
	if (!g)
		return NULL;
	for (unsigned i = 0; i < TFS_MAX_SNAPS; i++)
		if (fs->snaps[i].used)
			g[(*n)++] = fs->snaps[i].gen;
	qsort(g, *n, sizeof(*g), cmp_u64);
	return g;
}

/* Is some snapshot s with birth <= s < death in the sorted gens? */
static bool held(const uint64_t *g, size_t n, uint64_t birth, uint64_t death)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (g[mid] < birth)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && g[lo] < death;
}

/* Free every deadlist block no snapshot holds any more; compact.
 * Entries with birth <= revive < death are live again (rollback to the
 * snapshot of CP revive): they leave the list without being freed. */
static int dead_sweep(struct fs *fs, uint64_t revive)
{
	uint64_t n = get64(fs->sb.s_dfile.i_size), keep = 0;
	size_t ng;
	uint64_t *g = snap_gens(fs, &ng);
	int rc = 0;

	if (!g)
		return -ENOMEM;
	for (uint64_t i = 0; i < n && !rc; i++) {
		struct tfs_dead *e = NULL, copy;
		rc = dead_at(fs, i, 0, &e);
		if (rc)
			break;
		copy = *e;
		if (revive && get64(copy.d_birth) <= revive &&
		    revive < get64(copy.d_death))
			continue;
		if (!held(g, ng, get64(copy.d_birth), get64(copy.d_death))) {
			rc = alloc_free_now(fs, get64(copy.d_blkno));
			continue;
		}
		if (keep != i) {
			rc = dead_at(fs, keep, GET_CREATE, &e);
			if (!rc)
				*e = copy;
		}
		keep++;
	}
	free(g);
	if (rc || keep == n)
		return rc;
	fs->sb.s_dfile.i_size = put64(keep);
	return tree_free_range(fs, OWN_DFILE,
			       (keep + TFS_DEAD_PER_BLOCK - 1) / TFS_DEAD_PER_BLOCK,
			       UINT64_MAX);
}

/* Drop cached buffers of a deleted snapshot's trees. */
static void snap_forget_cache(struct fs *fs, unsigned slot)
{
	struct bcache *bc = &fs->bc;

	for (size_t i = 0; i < bc->nhash; i++) {
		struct buf *b = bc->hash[i];
		while (b) {
			struct buf *next = b->hnext;
			if (b->owner == OWN_SIFILE(slot) ||
			    (INO_IS_SNAP(b->owner) && !owner_is_meta(b->owner) &&
			     b->owner < OWN_SIFILE(TFS_MAX_SNAPS) &&
			     INO_SLOT(b->owner) == slot))
				bcache_drop(bc, b);
			b = next;
		}
	}
}

static int apply_delete(struct fs *fs, struct snap_req *r)
{
	struct tfs_snap zero = { 0 };
	int slot = snap_by_name(fs, r->name);
	int rc;

	if (slot < 0)
		return slot;
	rc = slot_write(fs, (unsigned)slot, &zero);
	if (rc)
		return rc;
	memset(&fs->snaps[slot], 0, sizeof(fs->snaps[slot]));
	fs->nsnaps--;
	snap_forget_cache(fs, (unsigned)slot);
	return dead_sweep(fs, 0);
}

/* Rollback: free the blocks of the durable live tree born after CP s.
 * A subtree born at or before s is shared with the snapshot: skipped. */
static int rb_walk(struct fs *fs, const struct tfs_bptr *bp, unsigned level,
		   uint64_t s, bool ifile)
{
	uint8_t *blk;
	int rc;

	if (!get64(bp->bp_blkno) || get64(bp->bp_birth) <= s)
		return 0;
	if (level > TFS_MAX_HEIGHT)
		return fs_corrupt("tree of height %u", level);
	blk = malloc(TFS_BLOCK_SIZE);
	if (!blk)
		return -ENOMEM;
	rc = tree_read_block(fs, bp, blk);
	for (unsigned i = 0; !rc && level && i < TFS_BPTRS_PER_BLOCK; i++)
		rc = rb_walk(fs, (struct tfs_bptr *)blk + i, level - 1, s, ifile);
	for (unsigned i = 0; !rc && !level && ifile &&
	     i < TFS_INODES_PER_BLOCK; i++) {
		const struct tfs_dinode *d = (struct tfs_dinode *)blk + i;
		if (!get32(d->i_mode))
			continue;
		rc = rb_walk(fs, &d->i_root, d->i_height, s, false);
		if (!rc)
			rc = rb_walk(fs, &d->i_xattr, 0, s, false);
	}
	free(blk);
	return rc ? rc : alloc_free_now(fs, get64(bp->bp_blkno));
}

/* Forget every buffer of the live tree: dirty changes are dropped. */
static void live_forget_cache(struct fs *fs)
{
	struct bcache *bc = &fs->bc;

	for (size_t i = 0; i < bc->nhash; i++) {
		struct buf *b = bc->hash[i];
		while (b) {
			struct buf *next = b->hnext;
			if (!owner_is_meta(b->owner) && !owner_in_snapshot(b->owner))
				bcache_drop(bc, b);
			b = next;
		}
	}
}

static int apply_rollback(struct fs *fs, struct snap_req *r)
{
	int slot = snap_by_name(fs, r->name);
	struct u64vec later = fs->al.later;
	uint64_t s;
	int rc = 0;

	if (slot < 0)
		return slot;
	s = fs->snaps[slot].gen;
	for (unsigned i = 0; i < TFS_MAX_SNAPS; i++)
		if (fs->snaps[i].used && fs->snaps[i].gen > s && !r->force)
			return -EBUSY;  /* newer snapshots: only with force */
	for (unsigned i = 0; i < TFS_MAX_SNAPS && !rc; i++) {
		struct tfs_snap zero = { 0 };
		if (!fs->snaps[i].used || fs->snaps[i].gen <= s)
			continue;
		rc = slot_write(fs, i, &zero);
		memset(&fs->snaps[i], 0, sizeof(fs->snaps[i]));
		fs->nsnaps--;
		snap_forget_cache(fs, i);
	}
	/* the durable live tree: s_ifile is still the last CP's root */
	if (!rc)
		rc = rb_walk(fs, &fs->sb.s_ifile.i_root, fs->sb.s_ifile.i_height,
			     s, true);
	/* blocks the open generation dropped: born after s, or metafile */
	memset(&fs->al.later, 0, sizeof(fs->al.later));
	for (size_t i = 0; i + 1 < later.n && !rc; i += 2)
		if (!later.v[i + 1] || later.v[i + 1] > s)
			rc = alloc_free_now(fs, later.v[i]);
	u64vec_free(&later);
	if (!rc)
		rc = dead_sweep(fs, s);
	if (rc)
		return rc;
	live_forget_cache(fs);
	fs->sb.s_ifile = fs->snaps[slot].ifile;
	fs->sb.s_ninodes = put64(fs->snaps[slot].ninodes);
	return 0;
}

static int apply_create(struct fs *fs, struct snap_req *r, uint64_t gen)
{
	struct timespec now = { snap_clock(fs), 0 };
	struct tfs_snap e = { 0 };
	struct snap_mem *m;
	uint64_t id = get64(fs->sb.s_next_snap) + 1;
	unsigned slot;
	int rc;

	if (snap_by_name(fs, r->name) >= 0)
		return -EEXIST;
	if (fs->nsnaps >= TFS_MAX_SNAPS)
		return -ENOSPC;
	/* the slot after the newest one: reuse as late as possible */
	slot = (unsigned)(id % TFS_MAX_SNAPS);
	while (fs->snaps[slot].used)
		slot = (slot + 1) % TFS_MAX_SNAPS;
	e.sn_id = put64(id);
	e.sn_gen = put64(gen);
	e.sn_time = put64((uint64_t)now.tv_sec);
	e.sn_time_ns = put32((uint32_t)now.tv_nsec);
	e.sn_flags = put32(r->flags);
	e.sn_used = put64(get64(fs->sb.s_ifile.i_blocks)); /* patched below */
	memcpy(e.sn_name, r->name, strlen(r->name));
	rc = slot_write(fs, slot, &e);
	if (rc)
		return rc;
	fs->sb.s_next_snap = put64(id);
	m = &fs->snaps[slot];
	memset(m, 0, sizeof(*m));
	m->used = true;
	m->id = id;
	m->gen = gen;
	m->time = (uint64_t)now.tv_sec;
	m->time_ns = (uint32_t)now.tv_nsec;
	m->flags = r->flags;
	memcpy(m->name, r->name, sizeof(m->name));
	fs->nsnaps++;
	r->slot = (int)slot;
	return 0;
}

/* ---- automatic snapshots: keep_cps and schedules ---- */

time_t snap_clock(struct fs *fs)
{
	if (fs->opts.clock)
		return fs->opts.clock(fs->opts.clock_arg);
	return time(NULL);
}

static const char *const period_name[4] = { "hourly", "daily", "weekly",
					    "monthly" };

/* Which period (hour, day, ISO-ish week, month) t falls in, in UTC. */
static int64_t period_of(unsigned p, time_t t)
{
	struct tm tm;

	switch (p) {
	case 0: return (int64_t)t / 3600;
	case 1: return (int64_t)t / 86400;
	case 2: return ((int64_t)t / 86400 + 3) / 7; /* weeks start Monday */
	default:
		gmtime_r(&t, &tm);
		return (int64_t)tm.tm_year * 12 + tm.tm_mon;
	}
}

static bool has_prefix(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

/* The newest snapshot of a schedule, or -1. */
static int sched_newest(struct fs *fs, unsigned p, unsigned *count)
{
	char prefix[16];
	int best = -1;

	snprintf(prefix, sizeof(prefix), "%s-", period_name[p]);
	*count = 0;
	for (unsigned i = 0; i < TFS_MAX_SNAPS; i++) {
		const struct snap_mem *m = &fs->snaps[i];
		if (!m->used || !(m->flags & TFS_SNAP_AUTO) ||
		    !has_prefix(m->name, prefix))
			continue;
		(*count)++;
		if (best < 0 || m->gen > fs->snaps[best].gen)
			best = (int)i;
	}
	return best;
}

bool snap_auto_due(struct fs *fs)
{
	time_t now = snap_clock(fs);

	for (unsigned p = 0; p < 4; p++) {
		unsigned n;
		int last;
		if (!fs->opts.sched[p])
			continue;
		last = sched_newest(fs, p, &n);
		if (last < 0 || period_of(p, (time_t)fs->snaps[last].time) !=
				period_of(p, now))
			return true;
	}
	return false;
}

static int queue_own(struct fs *fs, enum snap_req_kind kind,
		     const char *name)
{
	struct snap_req *r = calloc(1, sizeof(*r)), **pp;

	if (!r)
		return -ENOMEM;
	r->kind = kind;
	r->owned = true;
	r->flags = TFS_SNAP_AUTO;
	snprintf(r->name, sizeof(r->name), "%s", name);
	for (pp = &fs->snap_cp; *pp; pp = &(*pp)->next)
		;
	*pp = r;
	return 0;
}

static bool queued_delete(struct fs *fs, const char *name)
{
	for (struct snap_req *r = fs->snap_cp; r; r = r->next)
		if (r->kind == SNAP_REQ_DELETE && !strcmp(r->name, name))
			return true;
	return false;
}

/* Delete the oldest automatic snapshots with prefix beyond keep. */
static int expire(struct fs *fs, const char *prefix, unsigned keep,
		  time_t older_than)
{
	unsigned have = 0;
	int rc = 0;

	for (unsigned i = 0; i < TFS_MAX_SNAPS; i++)
		if (fs->snaps[i].used && (fs->snaps[i].flags & TFS_SNAP_AUTO) &&
		    has_prefix(fs->snaps[i].name, prefix))
			have++;
	while (!rc && (have > keep || older_than)) {
		int oldest = -1;
		for (unsigned i = 0; i < TFS_MAX_SNAPS; i++) {
			const struct snap_mem *m = &fs->snaps[i];
			if (!m->used || !(m->flags & TFS_SNAP_AUTO) ||
			    !has_prefix(m->name, prefix) ||
			    queued_delete(fs, m->name))
				continue;
			if (oldest < 0 || m->gen < fs->snaps[oldest].gen)
				oldest = (int)i;
		}
		if (oldest < 0)
			break;
		if (have <= keep &&
		    (time_t)fs->snaps[oldest].time >= older_than)
			break;
		rc = queue_own(fs, SNAP_REQ_DELETE, fs->snaps[oldest].name);
		have--;
	}
	return rc;
}

static int snap_auto(struct fs *fs, uint64_t gen)
{
	time_t now = snap_clock(fs);
	char name[64];
	int rc = 0;

	if (fs->opts.keep_cps) {
		snprintf(name, sizeof(name), "@%llu", (unsigned long long)gen);
		rc = queue_own(fs, SNAP_REQ_CREATE, name);
		if (!rc)
			rc = expire(fs, "@", UINT32_MAX,
				    now - (time_t)fs->opts.keep_cps);
	}
	for (unsigned p = 0; p < 4 && !rc; p++) {
		static const char *const fmt[4] = { "%Y-%m-%d-%H00", "%Y-%m-%d",
						    "%G-W%V", "%Y-%m" };
		char stamp[32], prefix[16];
		unsigned n;
		int last;
		struct tm tm;
		if (!fs->opts.sched[p])
			continue;
		last = sched_newest(fs, p, &n);
		if (last >= 0 && period_of(p, (time_t)fs->snaps[last].time) ==
				 period_of(p, now))
			continue;
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), fmt[p], &tm);
		snprintf(name, sizeof(name), "%s-%s", period_name[p], stamp);
		snprintf(prefix, sizeof(prefix), "%s-", period_name[p]);
		if (snap_by_name(fs, name) >= 0)
			continue;
		rc = queue_own(fs, SNAP_REQ_CREATE, name);
		if (!rc)
			rc = expire(fs, prefix, fs->opts.sched[p] - 1, 0);
	}
	return rc;
}

/* CP step 0 (fs->lock held): apply the queued requests. */
int snap_cp_begin(struct fs *fs, uint64_t gen)
{
	int rc;

	fs->snap_cp = fs->snap_reqs;
	fs->snap_reqs = NULL;
	rc = snap_auto(fs, gen);
	if (rc)
		return rc;
	for (struct snap_req *r = fs->snap_cp; r; r = r->next) {
		if (r->done)
			continue;
		r->slot = -1;
		r->rc = r->kind == SNAP_REQ_CREATE ? apply_create(fs, r, gen) :
			r->kind == SNAP_REQ_DELETE ? apply_delete(fs, r) :
			apply_rollback(fs, r);
		if (r->rc == -EEXIST || r->rc == -ENOENT || r->rc == -ENOSPC ||
		    r->rc == -EBUSY) {
			r->done = true; /* refused; nothing changed */
			continue;
		}
		if (r->rc)
			return r->rc;
	}
	/* after the requests: the frees this CP decides must see exactly
	 * the snapshots that exist once it is durable (older than it) */
	fs->snap_hold_gen = 0;
	for (unsigned i = 0; i < TFS_MAX_SNAPS; i++)
		if (fs->snaps[i].used && fs->snaps[i].gen < gen &&
		    fs->snaps[i].gen > fs->snap_hold_gen)
			fs->snap_hold_gen = fs->snaps[i].gen;
	return 0;
}

/* CP phase B, after the inode file: pin its new root. */
void snap_cp_patch(struct fs *fs)
{
	uint64_t used = get64(fs->sb.s_used_blocks) - TFS_LOG_START -
			get64(fs->sb.s_log_blocks) -
			get64(fs->sb.s_afile.i_blocks) -
			get64(fs->sb.s_sfile.i_blocks) -
			get64(fs->sb.s_dfile.i_blocks) -
			get64(fs->sb.s_dfile.i_size);

	for (struct snap_req *r = fs->snap_cp; r; r = r->next) {
		struct buf *b;
		struct tfs_snap *e;
		if (r->done || r->kind != SNAP_REQ_CREATE || r->slot < 0)
			continue;
		b = bcache_find(&fs->bc, OWN_SFILE, 0,
				(unsigned)r->slot / TFS_SNAPS_PER_BLOCK);
		VERIFY(b && b->dirty);
		e = slot_ptr(b, (unsigned)r->slot);
		e->sn_ifile = fs->sb.s_ifile;
		e->sn_used = put64(used);
		e->sn_ninodes = fs->sb.s_ninodes;
		fs->snaps[r->slot].ifile = fs->sb.s_ifile;
		fs->snaps[r->slot].used_blocks = used;
		fs->snaps[r->slot].ninodes = get64(fs->sb.s_ninodes);
	}
}

/* The CP is durable (rc 0) or failed: answer the requests it carried. */
void snap_cp_end(struct fs *fs, int rc)
{
	struct snap_req *r = fs->snap_cp, *next;

	for (; r; r = next) {
		next = r->next; /* r belongs to a waiter: done is the last touch */
		if (!rc && !r->rc && r->kind != SNAP_REQ_ROLLBACK &&
		    fs->opts.inval_entry) {
			char **nn = realloc(fs->snapdir_gone,
					    (fs->nsnapdir_gone + 1) * sizeof(*nn));
			char *dup = strdup(r->name);
			if (nn)
				fs->snapdir_gone = nn;
			if (nn && dup)
				fs->snapdir_gone[fs->nsnapdir_gone++] = dup;
			else  /* the kernel may show it late: say so */
				log_warn("out of memory: .snapshot/%s may look "
					 "stale for a while", r->name);
			if (!(nn && dup))
				free(dup);
		}
		if (r->owned) {
			if (r->rc && r->rc != -EEXIST)
				log_warn("automatic snapshot %s: %d", r->name,
					 r->rc);
			free(r);
			continue;
		}
		if (!r->done && rc)
			r->rc = rc;
		r->done = true;
	}
	fs->snap_cp = NULL;
}
