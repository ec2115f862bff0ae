/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cp.c - consistency points.  One CP is one straight line:
 *
 *   FREEZE (fs->lock held)
 *     1. apply the frees of the open generation to the map (held, W2)
 *     2. phase A: give every dirty buffer a new address; allocating
 *        dirties map blocks, which get addresses too, until none is left
 *     3. phase B: bottom-up (files, inode file, map; level by level),
 *        checksum each buffer, store its pointer in the parent (or the
 *        dinode / superblock), copy it to the write list
 *     4. seal the superblock: generation, log position, roots
 *   WRITE (fs->lock dropped: writers go on with the next generation)
 *     5. write the blocks (and hand them to the sinks), flush
 *     6. write the superblock into slot gen % 2, flush   <- the CP is atomic
 *     7. sinks commit
 *   DURABLE (fs->lock held)
 *     8. release held frees, mark log records covered, wake waiters
 *
 * Any write error moves the file system to FS_ERROR: it keeps serving
 * reads of what it has but accepts no more changes (sticky, as LMDB).
 */
#include <stdlib.h>
#include <sys/time.h>

#include "fs_impl.h"



/* Phase B order: files, inode file (whose root the new snapshots pin),
 * snapshot table, deadlist, allocation map. */
static int owner_rank(uint64_t owner)
{
	switch (owner) {
	case OWN_IFILE: return 1;
	case OWN_SFILE: return 2;
	case OWN_DFILE: return 3;
	case OWN_AFILE: return 4;
	default: return 0;
	}
}

static int cmp_buf(const void *a, const void *b)
{
	const struct buf *x = *(struct buf *const *)a;
	const struct buf *y = *(struct buf *const *)b;
	int rx = owner_rank(x->owner), ry = owner_rank(y->owner);

	if (rx != ry)
		return rx - ry;
	if (x->owner != y->owner)
		return x->owner < y->owner ? -1 : 1;
	if (x->level != y->level)
		return (int)x->level - (int)y->level;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_wblk(const void *a, const void *b)
{
	const struct wblk *x = *(struct wblk *const *)a;
	const struct wblk *y = *(struct wblk *const *)b;

	return x->blkno < y->blkno ? -1 : x->blkno > y->blkno;
}

static int assign(struct fs *fs, struct buf *b)
{
	uint64_t old = get64(b->bp.bp_blkno);
	int rc = alloc_block(fs, &b->newblk);

	if (!rc && old)
		rc = alloc_kill(fs, b->owner, old, get64(b->bp.bp_birth));
	return rc;
}

/* Phase A to its fixpoint: every dirty buffer has an address. */
static int phase_a(struct fs *fs, struct buf ***arrp, size_t *np)
{
	struct buf **arr = NULL;
	size_t n = 0, cap = 0;
	bool more = true;
	int rc = 0;

	while (more && !rc) {
		more = false;
		n = 0;
		for (struct buf *b = fs->bc.dirty.next; b != &fs->bc.dirty;
		     b = b->next) {
			if (n == cap) {
				cap = cap ? cap * 2 : 1024;
				struct buf **na = realloc(arr, cap * sizeof(*na));
				if (!na) {
					free(arr);
					return -ENOMEM;
				}
				arr = na;
			}
			arr[n++] = b;
		}
		if (n)
			qsort(arr, n, sizeof(*arr), cmp_buf);
		for (size_t i = 0; i < n && !rc; i++)
			if (!arr[i]->newblk) {
				rc = assign(fs, arr[i]);
				more = true;
			}
	}
	*arrp = arr;
	*np = n;
	return rc;
}

static struct tfs_bptr *parent_slot(struct fs *fs, struct buf *b)
{
	int rc;
	struct tfs_dinode *d = owner_dinode(fs, b->owner, &rc);
	struct buf *p;

	VERIFY(d);
	if (b->level == 255)
		return &d->i_xattr;
	if (b->level == d->i_height) {
		VERIFY3U(b->idx, ==, 0);
		return &d->i_root;
	}
	VERIFY3U(b->level, <, d->i_height);
	p = bcache_find(&fs->bc, b->owner, b->level + 1,
			b->idx >> TFS_BPTR_SHIFT);
	VERIFY(p && p->dirty); /* the dirty-path invariant */
	return &((struct tfs_bptr *)p->data)[b->idx & (TFS_BPTRS_PER_BLOCK - 1)];
}

/* Only file data is lent: every change to it goes through buf_dirty()
 * first.  Metadata is edited in place through pointers taken earlier
 * (a dinode, then inode_touch), so the CP copies it instead. */
static bool lendable(struct fs *fs, struct buf *b)
{
	int rc;
	struct tfs_dinode *d;

	if (b->level != 0 || owner_is_meta(b->owner) || b->owner == OWN_IFILE)
		return false;
	d = owner_dinode(fs, b->owner, &rc);
	return d && S_ISREG(get32(d->i_mode));
}

/* Phase B: pointers bottom-up; the write list borrows each buffer's
 * bytes (a buffer changed before the CP is durable copies them first). */
static void phase_b(struct fs *fs, struct buf **arr, size_t n,
		    uint64_t gen, struct wblk *w)
{
	bool patched = false;

	for (size_t i = 0; i < n; i++) {
		struct buf *b = arr[i];
		struct tfs_bptr bp;

		if (!patched && owner_rank(b->owner) >= 2) {
			snap_cp_patch(fs); /* the inode-file root is final */
			patched = true;
		}
		bp.bp_blkno = put64(b->newblk);
		bp.bp_birth = put64(gen);
		csum_block(b->data, TFS_BLOCK_SIZE, bp.bp_csum);
		*parent_slot(fs, b) = bp;
		b->bp = bp;
		b->io_gen = gen;
		b->newblk = 0;
		w[i].blkno = get64(bp.bp_blkno);
		VERIFY(!b->lent);
		if (lendable(fs, b)) {
			w[i].data = b->data;
			w[i].buf = b;
		} else {
			w[i].data = bcache_page(&fs->bc);
			VERIFY(w[i].data);
			memcpy(w[i].data, b->data, TFS_BLOCK_SIZE);
			w[i].buf = NULL;
			fs->bc.cp_owned++;
		}
	}
	if (!patched)
		snap_cp_patch(fs);
	for (size_t i = 0; i < n; i++) {
		bcache_mark_clean(&fs->bc, arr[i]);
		if (w[i].buf)
			arr[i]->lent = &w[i];
	}
}

/* Names that changed in .snapshot (snap_cp_end) are told to the kernel
 * by the CP thread when there is one.  The kernel takes the directory's
 * lock to drop a name; a FUSE worker that ran this CP for an fsync would
 * wait there on whoever holds it, and that holder may be waiting for a
 * request queued behind this very worker. */
static void cp_tell_names(struct fs *fs)
{
	bool here;

	if (!fs->opts.inval_entry)
		return;
	pthread_mutex_lock(&fs->lock);
	here = !fs->cp_thread_on || pthread_equal(pthread_self(), fs->cp_thread);
	if (!here && fs->nsnapdir_gone)
		pthread_cond_signal(&fs->cp_cond);
	pthread_mutex_unlock(&fs->lock);
	if (here)
		snap_inval_names(fs);
}

/* fs->lock held: the CP is over; buffers get their bytes back. */
static void wlist_release(struct fs *fs, struct wblk *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (w[i].buf) {
			w[i].buf->lent = NULL;
		} else {
			bcache_page_free(&fs->bc, w[i].data);
			fs->bc.cp_owned--;
		}
	}
}

static int write_all(struct fs *fs, struct wblk *wl, size_t n,
		     const struct tfs_super *sb, uint64_t gen)
{
	struct wblk **w = malloc((n ? n : 1) * sizeof(*w));
	void *run[256];
	int rc = 0;

	if (!w)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		w[i] = &wl[i];
	if (n)
		qsort(w, n, sizeof(*w), cmp_wblk);
	/* allocation is sequential, so most of a CP is a few long runs */
	for (size_t i = 0; i < n && !rc;) {
		unsigned k = 0;
		while (i + k < n && k < 256 &&
		       w[i + k]->blkno == w[i]->blkno + k) {
			run[k] = w[i + k]->data;
			k++;
		}
		rc = bdev_write_run(fs->bd, w[i]->blkno, run, k);
		for (unsigned j = 0; j < k && !rc; j++)
			for (int s = 0; s < fs->nsinks && !rc; s++)
				rc = fs->sinks[s].block(fs->sinks[s].arg,
							w[i + j]->blkno,
							w[i + j]->data);
		i += k;
	}
	free(w);
	if (!rc)
		rc = bdev_flush(fs->bd);
	/* the CP is atomic here: the superblock names the new root */
	if (!rc)
		rc = bdev_write(fs->bd, gen % TFS_SB_SLOTS, sb);
	if (!rc)
		rc = bdev_flush(fs->bd);
	for (int s = 0; s < fs->nsinks && !rc; s++)
		rc = fs->sinks[s].commit(fs->sinks[s].arg, gen, sb);
	return rc;
}

int cp_run(struct fs *fs)
{
	struct buf **arr = NULL;
	struct wblk *w = NULL;
	struct tfs_super *sb = NULL;
	struct timespec now = fs_now();
	uint64_t gen, logpos, logseq;
	size_t n = 0;
	int rc;

	pthread_mutex_lock(&fs->cp_lock);
	pthread_mutex_lock(&fs->lock);
	if (fs->ro) {
		rc = 0;
		goto out_unlock;
	}
	rc = fs->error;
	if (rc)
		goto out_unlock;
	gen = get64(fs->sb.s_gen) + 1;
	rc = snap_cp_begin(fs, gen);
	if (!rc)
		rc = alloc_cp_begin(fs);
	if (!rc)
		rc = phase_a(fs, &arr, &n);
	if (!rc) {
		w = calloc(n ? n : 1, sizeof(*w));
		sb = aligned_alloc(4096, TFS_BLOCK_SIZE);
		if (!w || !sb)
			rc = -ENOMEM;
	}
	if (rc)
		goto fail_locked;
	phase_b(fs, arr, n, gen, w);
	logseq = ilog_cp_freeze(fs, &logpos);
	fs->sb.s_gen = put64(gen);
	fs->sb.s_log_seq = put64(logseq);
	fs->sb.s_log_epoch = put64(fs->log.epoch);
	fs->sb.s_time = put64((uint64_t)now.tv_sec);
	fs->sb.s_time_ns = put32((uint32_t)now.tv_nsec);
	super_seal(&fs->sb);
	memcpy(sb, &fs->sb, sizeof(*sb));
	fs->cp_in_flight = true;
	pthread_mutex_unlock(&fs->lock);

	rc = write_all(fs, w, n, sb, gen);

	pthread_mutex_lock(&fs->lock);
	fs->cp_in_flight = false;
	wlist_release(fs, w, n);
	if (rc)
		goto fail_locked;
	fs->durable_gen = gen;
	alloc_cp_durable(fs);
	snap_cp_end(fs, 0);
	ilog_cp_durable(fs, logpos, logseq);
	fs->cps_done++;
	{
		struct timespec end = fs_now();
		fs->last_cp_usec = (uint64_t)((end.tv_sec - now.tv_sec) * 1000000 +
					      (end.tv_nsec - now.tv_nsec) / 1000);
	}
	fs_evict(fs);
	pthread_cond_broadcast(&fs->cp_done);
	goto out_unlock;
fail_locked:
	log_err("consistency point failed (%d): no more changes accepted", rc);
	fs->error = rc < 0 ? rc : -EIO;
	fs->state = FS_ERROR;
	snap_cp_end(fs, fs->error);
	ilog_cp_failed(fs, fs->error);
	pthread_cond_broadcast(&fs->cp_done);
out_unlock:
	pthread_mutex_unlock(&fs->lock);
	pthread_mutex_unlock(&fs->cp_lock);
	free(arr);
	free(w);
	free(sb);
	cp_tell_names(fs);
	return rc;
}

/* How full the open generation is: its dirty blocks, or the log bytes
 * not yet written (memory a CP gives back), whichever is more. */
uint64_t cp_dirty_bytes(struct fs *fs)
{
	uint64_t blocks = fs->bc.ndirty * (uint64_t)TFS_BLOCK_SIZE;
	uint64_t log = ilog_pending(fs);

	return log > blocks ? log : blocks;
}

void fs_evict(struct fs *fs)
{
	bcache_evict(&fs->bc, fs->durable_gen,
		     ilog_pending(fs) / TFS_BLOCK_SIZE);
}

static void *cp_main(void *arg)
{
	struct fs *fs = arg;
	struct timespec last = fs_now();

	pthread_mutex_lock(&fs->lock);
	while (!fs->stopping) {
		struct timespec now = fs_now(), until;
		uint64_t ms = fs->opts.cp_interval_ms;
		bool due;

		due = ms && (uint64_t)(now.tv_sec - last.tv_sec) * 1000 +
			(uint64_t)((now.tv_nsec - last.tv_nsec) / 1000000) >= ms;
		if (fs->cp_wanted || cp_dirty_bytes(fs) >= fs->dirty_max ||
		    (due && (fs->bc.ndirty || fs->al.later.n)) ||
		    (due && snap_auto_due(fs))) {
			fs->cp_wanted = false;
			pthread_mutex_unlock(&fs->lock);
			cp_run(fs);
			last = fs_now();
			pthread_mutex_lock(&fs->lock);
			continue;
		}
		if (fs->nsnapdir_gone) {   /* a CP run elsewhere left them */
			pthread_mutex_unlock(&fs->lock);
			cp_tell_names(fs);
			pthread_mutex_lock(&fs->lock);
			continue;
		}
		if (due)
			last = now;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += ms ? (time_t)(ms / 1000) : 1;
		until.tv_nsec += ms ? (long)(ms % 1000) * 1000000 : 0;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&fs->cp_cond, &fs->lock, &until);
	}
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

int cp_start_thread(struct fs *fs)
{
	int rc;

	if (fs->cp_thread_on || fs->ro)
		return 0;
	rc = -pthread_create(&fs->cp_thread, NULL, cp_main, fs);
	if (!rc)
		fs->cp_thread_on = true;
	return rc;
}

void cp_stop_thread(struct fs *fs)
{
	if (!fs->cp_thread_on)
		return;
	pthread_mutex_lock(&fs->lock);
	fs->stopping = true;
	pthread_cond_broadcast(&fs->cp_cond);
	pthread_mutex_unlock(&fs->lock);
	pthread_join(fs->cp_thread, NULL);
	fs->cp_thread_on = false;
}

void cp_kick(struct fs *fs)
{
	fs->cp_wanted = true;
	pthread_cond_signal(&fs->cp_cond);
}

/* fs->lock held.  Past the threshold, start a CP; when a CP is already
 * being written and this generation is full too, wait for it (W4: the
 * only time writers wait). */
int cp_throttle(struct fs *fs)
{
	if (!fs->cp_thread_on || cp_dirty_bytes(fs) < fs->dirty_max)
		return 0;
	cp_kick(fs);
	while (!fs->error && ((fs->cp_in_flight &&
				cp_dirty_bytes(fs) >= fs->dirty_max) ||
			       cp_dirty_bytes(fs) >= 2 * fs->dirty_max))
		pthread_cond_wait(&fs->cp_done, &fs->lock);
	return fs->error;
}
