/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ilog.c - the intent log ("temporary storage" between CPs).
 *
 * Operations append records (built by ops.c) to an in-memory stream; the
 * stream keeps each record's own buffer, so nothing is copied until an
 * fsync needs the bytes on disk.  ilog_sync(pos) makes the stream
 * durable up to pos: one caller at a time (the writer, l->writing) takes
 * everything pending, cuts it into log blocks, writes them in runs and
 * flushes; whoever waited meanwhile (on cond, all woken at once, not one
 * by one as they would be queued on a mutex) finds its position already
 * durable or becomes the next writer (group commit).  More than
 * ILOG_SYNC_MAX pending: -EAGAIN, and the caller runs a CP instead,
 * which writes that data once instead of twice.  Every flush starts a new
 * block, so a block is written once and a torn block can only lose
 * records that no fsync has returned for.
 *
 * A CP covers every record appended before its freeze: the pending bytes
 * are dropped, the CP's superblock says where replay starts (s_log_seq),
 * and fsyncs of covered records wait for that CP (cond); so do fsyncs of
 * later records when the CP dropped unwritten ones (cp_pos), since the
 * log on disk has a gap until that CP is durable.  Log blocks
 * before the durable superblock's s_log_seq may be overwritten; when the
 * region is full, ilog_sync returns -EAGAIN too.
 *
 * Mount replays blocks from s_log_seq while they are valid (magic, uuid,
 * epoch, sequence, checksum), then bumps the epoch with its first CP so
 * stale blocks of the old epoch can never be replayed later.
 */
#include <stdlib.h>

#include "fs_impl.h"

int ilog_init(struct fs *fs)
{
	struct ilog *l = &fs->log;

	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->nblocks = get64(fs->sb.s_log_blocks);
	l->sync_max = fs->opts.log_sync_max ? fs->opts.log_sync_max :
		      ILOG_SYNC_MAX;
	l->epoch = get64(fs->sb.s_log_epoch);
	l->wseq = l->durable_seq = get64(fs->sb.s_log_seq);
	memcpy(l->uuid, fs->sb.s_uuid, 16);
	return 0;
}

uint8_t *ilog_buf_get(struct fs *fs, size_t need, size_t *cap)
{
	struct ilog *l = &fs->log;
	uint8_t *p = NULL;

	if (need > 65536 && need <= ILOG_BIGBUF) {
		pthread_mutex_lock(&l->lock);
		if (l->nbig)
			p = l->big[--l->nbig];
		pthread_mutex_unlock(&l->lock);
		if (!p)
			p = malloc(ILOG_BIGBUF);
		*cap = p ? ILOG_BIGBUF : 0;
		return p;
	}
	p = malloc(need);
	*cap = p ? need : 0;
	return p;
}

/* l->lock held */
static void buf_put_locked(struct ilog *l, uint8_t *p, size_t cap)
{
	if (cap == ILOG_BIGBUF && l->nbig < ILOG_NBIGBUF)
		l->big[l->nbig++] = p;
	else
		free(p);
}

void ilog_buf_put(struct fs *fs, uint8_t *p, size_t cap)
{
	pthread_mutex_lock(&fs->log.lock);
	buf_put_locked(&fs->log, p, cap);
	pthread_mutex_unlock(&fs->log.lock);
}

static void recs_free(struct fs *fs, struct lrec *r, size_t n)
{
	pthread_mutex_lock(&fs->log.lock);
	for (size_t i = 0; i < n; i++)
		buf_put_locked(&fs->log, r[i].p, r[i].cap);
	pthread_mutex_unlock(&fs->log.lock);
	free(r);
}

void ilog_destroy(struct fs *fs)
{
	struct ilog *l = &fs->log;

	recs_free(fs, l->recs, l->nrecs);
	l->recs = NULL;
	l->nrecs = l->caprecs = 0;
	while (l->nbig)
		free(l->big[--l->nbig]);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
}

int ilog_append(struct fs *fs, uint8_t *rec, size_t len, size_t cap,
		uint64_t *pos)
{
	struct ilog *l = &fs->log;
	int rc = 0;

	pthread_mutex_lock(&l->lock);
	if (l->overflow) {      /* the next fsync runs a CP: keep nothing */
		buf_put_locked(l, rec, cap);
	} else {
		if (l->nrecs == l->caprecs) {
			size_t nc = l->caprecs ? l->caprecs * 2 : 1024;
			struct lrec *nr = realloc(l->recs, nc * sizeof(*nr));
			if (!nr) {
				rc = -ENOMEM;
				goto out;
			}
			l->recs = nr;
			l->caprecs = nc;
		}
		l->recs[l->nrecs].p = rec;
		l->recs[l->nrecs].cap = cap;
		l->recs[l->nrecs++].len = len;
		l->len += len;
		if (l->len > l->sync_max) {
			for (size_t i = 0; i < l->nrecs; i++)
				buf_put_locked(l, l->recs[i].p, l->recs[i].cap);
			l->nrecs = 0;
			l->len = 0;
			l->overflow = true;
		}
	}
	l->appended += len;
	*pos = l->appended;
out:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

bool ilog_overflowed(struct fs *fs)
{
	bool o;

	pthread_mutex_lock(&fs->log.lock);
	o = fs->log.overflow;
	pthread_mutex_unlock(&fs->log.lock);
	return o;
}

int ilog_skip(struct fs *fs, size_t len, uint64_t *pos)
{
	struct ilog *l = &fs->log;
	int rc = 0;

	pthread_mutex_lock(&l->lock);
	if (l->overflow) {
		l->appended += len;
		*pos = l->appended;
	} else {
		rc = -EINVAL; /* only fs_write calls this, after checking */
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

size_t ilog_pending(struct fs *fs)
{
	size_t n;

	pthread_mutex_lock(&fs->log.lock);
	n = fs->log.len;
	pthread_mutex_unlock(&fs->log.lock);
	return n;
}

static void logblk_seal(struct ilog *l, uint8_t *blk, uint64_t seq,
			uint32_t len)
{
	struct tfs_logblk *h = (void *)blk;

	h->l_magic = put64(TFS_LOG_MAGIC);
	h->l_epoch = put64(l->epoch);
	h->l_seq = put64(seq);
	h->l_len = put32(len);
	h->l_pad = put32(0);
	memcpy(h->l_uuid, l->uuid, 16);
	memset(h->l_csum, 0, sizeof(h->l_csum));
	csum_block(blk, TFS_BLOCK_SIZE, h->l_csum);
}

/* Write the records (n bytes in all) as blocks seq0.. and flush: runs
 * of up to 256 blocks per system call, split where the region wraps.
 * No lock held. */
static int log_write(struct fs *fs, const struct lrec *recs, size_t nrecs,
		     size_t n, uint64_t seq0)
{
	enum { RUN = 256 };
	struct ilog *l = &fs->log;
	size_t nblk = (n + TFS_LOG_PAYLOAD - 1) / TFS_LOG_PAYLOAD;
	uint8_t *stage = aligned_alloc(4096, (nblk < RUN ? nblk : RUN) *
					     (size_t)TFS_BLOCK_SIZE);
	void *bufs[RUN];
	size_t ri = 0, roff = 0, done = 0;
	uint64_t seq = seq0;
	int rc = 0;

	if (!stage)
		return -ENOMEM;
	while (done < n && !rc) {
		uint64_t first = TFS_LOG_START + seq % l->nblocks;
		unsigned k = 0;
		/* fill up to RUN blocks, stopping at the end of the region */
		while (done < n && k < RUN &&
		       (k == 0 || (seq + k) % l->nblocks != 0)) {
			uint8_t *blk = stage + (size_t)k * TFS_BLOCK_SIZE;
			uint8_t *pay = blk + sizeof(struct tfs_logblk);
			size_t fill = 0;
			while (fill < TFS_LOG_PAYLOAD && ri < nrecs) {
				size_t c = recs[ri].len - roff;
				if (c > TFS_LOG_PAYLOAD - fill)
					c = TFS_LOG_PAYLOAD - fill;
				memcpy(pay + fill, recs[ri].p + roff, c);
				fill += c;
				roff += c;
				if (roff == recs[ri].len) {
					ri++;
					roff = 0;
				}
			}
			memset(pay + fill, 0, TFS_LOG_PAYLOAD - fill);
			logblk_seal(l, blk, seq + k, (uint32_t)fill);
			bufs[k++] = blk;
			done += fill;
		}
		rc = bdev_write_run(fs->bd, first, bufs, k);
		seq += k;
	}
	free(stage);
	if (!rc)
		rc = bdev_flush(fs->bd);
	return rc;
}

int ilog_sync(struct fs *fs, uint64_t pos)
{
	struct ilog *l = &fs->log;
	int rc = 0;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		struct lrec *recs;
		size_t n, nrecs, nblk;
		uint64_t target, seq0;

		if (l->error) {
			rc = l->error;
			break;
		}
		if (l->synced >= pos)
			break;
		if (l->overflow) {
			rc = -EAGAIN;   /* the caller runs a CP */
			break;
		}
		/* Records the CP in flight took from us were never written
		 * here; until it is durable, replay would start before them
		 * and find a gap.  So nothing after them may be called
		 * durable before that CP is. */
		if (l->writing || l->cp_pos > l->synced || l->len == 0) {
			pthread_cond_wait(&l->cond, &l->lock);
			continue;
		}
		n = l->len;
		nblk = (n + TFS_LOG_PAYLOAD - 1) / TFS_LOG_PAYLOAD;
		if (l->wseq + nblk - l->durable_seq > l->nblocks) {
			rc = -EAGAIN;   /* the caller runs a CP */
			break;
		}
		recs = l->recs;
		nrecs = l->nrecs;
		target = l->appended;
		seq0 = l->wseq;
		l->wseq += nblk;
		l->recs = NULL;
		l->nrecs = l->caprecs = 0;
		l->len = 0;
		l->writing = true;
		pthread_mutex_unlock(&l->lock);
		rc = log_write(fs, recs, nrecs, n, seq0);
		recs_free(fs, recs, nrecs);
		pthread_mutex_lock(&l->lock);
		l->writing = false;
		if (rc) {
			log_err("intent log write failed: %d", rc);
			l->error = rc;
			pthread_cond_broadcast(&l->cond);
			break;
		}
		if (target > l->synced)
			l->synced = target;
		pthread_cond_broadcast(&l->cond);
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

/* fs->lock held: the CP being frozen covers everything appended. */
uint64_t ilog_cp_freeze(struct fs *fs, uint64_t *pos)
{
	struct ilog *l = &fs->log;
	struct lrec *recs;
	size_t nrecs;
	uint64_t seq;

	pthread_mutex_lock(&l->lock);
	if (l->len || l->overflow)
		l->cp_pos = l->appended;
	l->overflow = false;
	recs = l->recs;
	nrecs = l->nrecs;
	l->recs = NULL;
	l->nrecs = l->caprecs = 0;
	l->len = 0;
	*pos = l->appended;
	seq = l->wseq;
	pthread_mutex_unlock(&l->lock);
	recs_free(fs, recs, nrecs);
	return seq;
}

void ilog_cp_durable(struct fs *fs, uint64_t pos, uint64_t seq)
{
	struct ilog *l = &fs->log;

	pthread_mutex_lock(&l->lock);
	if (pos > l->synced)
		l->synced = pos;
	l->cp_pos = 0;
	l->durable_seq = seq;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

void ilog_cp_failed(struct fs *fs, int err)
{
	struct ilog *l = &fs->log;

	pthread_mutex_lock(&l->lock);
	l->error = err;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

/* Is blk the valid log block seq of this epoch?  The checksum is over
 * the block with its checksum field zeroed: blk is zeroed there and put
 * back. */
static bool logblk_valid(uint8_t *blk, const uint8_t uuid[16],
			 uint64_t epoch, uint64_t seq)
{
	struct tfs_logblk h;
	le64 sum[2];

	memcpy(&h, blk, sizeof(h));
	if (get64(h.l_magic) != TFS_LOG_MAGIC || get64(h.l_epoch) != epoch ||
	    get64(h.l_seq) != seq || memcmp(h.l_uuid, uuid, 16) ||
	    get32(h.l_len) > TFS_LOG_PAYLOAD || get32(h.l_len) == 0)
		return false;
	memset(((struct tfs_logblk *)blk)->l_csum, 0, sizeof(h.l_csum));
	csum_block(blk, TFS_BLOCK_SIZE, sum);
	memcpy(((struct tfs_logblk *)blk)->l_csum, h.l_csum, sizeof(h.l_csum));
	return csum_equal(sum, h.l_csum);
}

/* Read the valid stream from sb's s_log_seq; *next is the first block
 * sequence that was not valid.  The stream grows by doubling: up to the
 * whole region (64 MiB by default) in as many steps as it has blocks. */
static int log_read(struct bdev *bd, const struct tfs_super *sb,
		    uint8_t **out, size_t *outlen, uint64_t *next)
{
	uint64_t nb = get64(sb->s_log_blocks), seq = get64(sb->s_log_seq);
	uint8_t *blk = malloc(TFS_BLOCK_SIZE), *s = NULL;
	size_t len = 0, cap = 0;
	int rc = 0;

	if (!blk)
		return -ENOMEM;
	for (uint64_t i = 0; i < nb; i++, seq++) {
		uint32_t k;
		rc = bdev_read(bd, TFS_LOG_START + seq % nb, blk);
		if (rc)
			break;
		if (!logblk_valid(blk, sb->s_uuid, get64(sb->s_log_epoch), seq))
			break;
		k = get32(((struct tfs_logblk *)blk)->l_len);
		if (len + k > cap) {
			size_t nc = cap ? cap * 2 : 1u << 20;
			uint8_t *ns = realloc(s, nc);
			if (!ns) {
				rc = -ENOMEM;
				break;
			}
			s = ns;
			cap = nc;
		}
		memcpy(s + len, blk + sizeof(struct tfs_logblk), k);
		len += k;
	}
	free(blk);
	*out = s;
	*outlen = len;
	*next = seq;
	return rc;
}

/* Walk complete records of a stream. */
static int log_walk(struct fs *fs, const uint8_t *s, size_t len,
		    ilog_apply_t apply, uint64_t *nrec)
{
	size_t off = 0;

	*nrec = 0;
	while (off + sizeof(struct tfs_logrec) <= len) {
		struct tfs_logrec r;
		memcpy(&r, s + off, sizeof(r));
		if (get32(r.r_len) > len - off - sizeof(r))
			break; /* the tail of an interrupted write */
		if (apply) {
			int rc = apply(fs, s + off + sizeof(r), get32(r.r_len),
				       get16(r.r_type));
			if (rc) {
				log_err("log replay: record %llu (type %u): %d",
					(unsigned long long)*nrec,
					get16(r.r_type), rc);
				if (fs->opts.repair)
					return 0; /* fsck: keep what applied */
				return rc;
			}
		}
		off += sizeof(r) + get32(r.r_len);
		(*nrec)++;
	}
	return 0;
}

int ilog_replay(struct fs *fs, ilog_apply_t apply, uint64_t *nrec)
{
	uint8_t *s;
	size_t len;
	uint64_t next;
	int rc = log_read(fs->bd, &fs->sb, &s, &len, &next);

	if (!rc)
		rc = log_walk(fs, s, len, apply, nrec);
	free(s);
	if (!rc) {
		fs->log.wseq = next;
		fs->log.epoch++;
		fs->sb.s_log_epoch = put64(fs->log.epoch);
	}
	return rc;
}

int ilog_scan(struct bdev *bd, const struct tfs_super *sb, uint64_t *nrec,
	      uint64_t *nbytes)
{
	uint8_t *s;
	size_t len;
	uint64_t next;
	int rc = log_read(bd, sb, &s, &len, &next);

	if (!rc)
		rc = log_walk(NULL, s, len, NULL, nrec);
	*nbytes = len;
	free(s);
	return rc;
}
