/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fs_impl.h - the core's internal structures, one section per module.
 *
 * Lock order (outer to inner), the only one in the core:
 *
 *   fs->cp_lock      serialises CPs (held across a CP's device I/O: a CP
 *                    is one straight line; only the CP writer takes it)
 *   fs->lock         every in-memory structure: inodes, buffers, the
 *                    allocation state, the superblock copy.  Every fs_*
 *                    operation runs under it.  Never held across device
 *                    I/O except a single block read on a cache miss.
 *   log->lock        the pending record bytes and sequence counters
 *
 *   fs->io_rw        (beside the order above) a file read takes it
 *                    shared under fs->lock and keeps it while it reads
 *                    data blocks with fs->lock dropped; the CP takes it
 *                    exclusive, under fs->lock, only to release held
 *                    blocks (alloc_cp_durable).  So no block can be
 *                    reused while a read of it is in flight, and a
 *                    reader never waits for fs->lock while holding it.
 *
 * The CP freezes the dirty set under fs->lock (addresses, checksums and a
 * copy of every block), then drops fs->lock and writes: writers go on
 * with the next generation while the previous one is on its way to disk
 * (W4).  Buffers written by a CP stay in memory until that CP is durable.
 */
#ifndef TWINFS_FS_IMPL_H
#define TWINFS_FS_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bdev.h"
#include "debug.h"
#include "format.h"
#include "twinfs.h"

/* ---- csum.c ------------------------------------------------------------- */
void csum_block(const void *data, size_t len, le64 out[2]);
bool csum_equal(const le64 a[2], const le64 b[2]);
uint64_t csum_name(const char *name, size_t len);

/* ---- bcache.c -------------------------------------------------------------
 * A buffer is one block of one tree, named by (owner, level, idx): owner
 * is an inode number or one of the metafiles below, level 0 is data and
 * level h an indirect block.  bp is where the buffer's content was last
 * written (blkno 0: never).  A dirty buffer gets a new address at the
 * next CP; while one is dirty, so is every buffer on its path to the root
 * and the dinode that holds the root (the "dirty path" invariant).
 */
#define OWN_IFILE  UINT64_MAX
#define OWN_AFILE  (UINT64_MAX - 1)
#define OWN_SFILE  (UINT64_MAX - 2)       /* snapshot table */
#define OWN_DFILE  (UINT64_MAX - 3)       /* deadlist */
#define OWN_SIFILE(slot) (UINT64_MAX - 16 - (uint64_t)(slot)) /* a snapshot's inode file */
static inline bool owner_is_meta(uint64_t owner)
{
	return owner >= OWN_DFILE && owner != OWN_IFILE;
}

/* Inode numbers of snapshot files: slot + 1 in the top 16 bits. */
#define INO_LOCAL_MASK   ((1ull << 48) - 1)
#define SNAP_INO(slot, ino) ((((uint64_t)(slot) + 1) << 48) | (ino))
#define INO_IS_SNAP(ino)    (((ino) >> 48) != 0)
#define INO_SLOT(ino)       (((ino) >> 48) - 1)
#define INO_LOCAL(ino)      ((ino) & INO_LOCAL_MASK)
#define FS_INO_SNAPDIR      INO_LOCAL_MASK /* .snapshot: 2^48 - 1 */
/* Does a buffer owner belong to a snapshot (read-only) tree? */
static inline bool owner_in_snapshot(uint64_t owner)
{
	return (INO_IS_SNAP(owner) && owner < OWN_SIFILE(TFS_MAX_SNAPS)) ||
	       (owner > OWN_SIFILE(TFS_MAX_SNAPS) && owner <= OWN_SIFILE(0));
}
static inline bool ino_readonly(uint64_t ino)
{
	return INO_IS_SNAP(ino) || ino == FS_INO_SNAPDIR;
}

struct wblk;

struct buf {
	uint64_t owner, idx;
	uint8_t level;
	bool dirty;
	struct tfs_bptr bp;       /* protected by fs->lock, like all fields */
	uint64_t io_gen;          /* CP that wrote this content; kept until durable */
	uint64_t newblk;          /* CP phase A: the address being assigned */
	struct wblk *lent;        /* a CP in flight writes data from here:
				   * copy before changing (bcache_unlend) */
	struct buf *hnext;        /* hash chain */
	struct buf *prev, *next;  /* LRU (clean) or dirty list */
	uint8_t *data;
};

/* Memory budget (the cache_size option): buffers in the cache, block
 * copies the CP in flight owns (cp_owned), pages kept for reuse (pool)
 * and the pending log all count against max_blocks.  Only clean buffers
 * can be given back, so dirty_max is held to a quarter of the budget:
 * a CP in flight and the open generation fit beside a working set. */
struct bcache {
	struct buf **hash;
	size_t nhash, nbufs;
	struct buf lru;           /* clean buffers, oldest first */
	struct buf dirty;         /* dirty buffers */
	size_t ndirty;
	size_t max_blocks;
	size_t cp_owned;          /* pages the CP in flight frees */
	void **pool;              /* free pages, counted in the budget */
	size_t npool, cappool;
	void **cold;              /* free pages given back to the kernel */
	size_t ncold, capcold;
	void **slabs;             /* where pages come from (mmap) */
	size_t nslabs, slab_used;
};

int bcache_init(struct bcache *bc, size_t max_bytes);
void bcache_destroy(struct bcache *bc);
struct buf *bcache_find(struct bcache *bc, uint64_t owner, uint8_t level,
			uint64_t idx);
struct buf *bcache_new(struct bcache *bc, uint64_t owner, uint8_t level,
		       uint64_t idx);
void bcache_drop(struct bcache *bc, struct buf *b);
void bcache_mark_dirty(struct bcache *bc, struct buf *b);
void bcache_mark_clean(struct bcache *bc, struct buf *b);
/* Drop clean buffers, oldest first, until the cache, the CP's copies
 * and `extra` blocks (the pending log) fit the budget. */
void bcache_evict(struct bcache *bc, uint64_t durable_gen, size_t extra);
/* Block-sized, 4096-aligned pages from the cache's pool (fs->lock). */
void *bcache_page(struct bcache *bc);
void bcache_page_free(struct bcache *bc, void *p);

/* One block of a CP's write list.  buf is the buffer whose data the CP
 * borrowed; NULL once that buffer moved on (the CP then owns data). */
struct wblk {
	uint64_t blkno;
	uint8_t *data;
	struct buf *buf;
};

/* ---- alloc.c --------------------------------------------------------------
 * Allocation happens only inside a CP freeze.  A block freed in CP n has
 * its bit cleared in CP n's map but sits in the hold set until CP n is
 * durable (W2); blocks freed by the open generation wait in `later`
 * until the next CP clears them.
 */
struct u64set {
	uint64_t *v;
	size_t n, cap;            /* open addressing; 0 is the empty slot */
};
struct u64vec {
	uint64_t *v;
	size_t n, cap;
};

struct alloc {
	uint64_t cursor;          /* next block to try */
	struct u64set hold;       /* freed in the CP being written */
	struct u64vec later;      /* freed by the open generation: pairs of
				   * (blkno, birth); birth 0 = metafile block */
	uint8_t *guard;           /* debug: map of the durable root (W1) */
	struct u64vec guard_set, guard_clear; /* applied when durable */
};

/* ---- ilog.c ---------------------------------------------------------------- */
/* One pending log record: its bytes are the buffer the operation built,
 * handed over without a copy. */
struct lrec {
	uint8_t *p;
	size_t len, cap;
};

/* Record buffers of a large write are kept for reuse (ilog_buf_get):
 * a stream of 1 MiB writes then costs no fresh pages from the kernel. */
#define ILOG_BIGBUF ((1u << 20) + 4096)
#define ILOG_NBIGBUF 8

/* Above this many pending bytes, an fsync runs a CP instead of writing
 * the log: the data then goes to disk once, not twice.  So once that
 * much is pending the log stops keeping record bytes at all (overflow)
 * until the next CP: they could never be written. */
#define ILOG_SYNC_MAX (4u << 20)

struct ilog {
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* synced or writing moved (with lock) */
	bool writing;             /* a thread writes and flushes the log with
				   * lock dropped: one at a time, the others
				   * wait on cond (the group commit) */
	struct lrec *recs;        /* pending records, in order (owned): */
	size_t nrecs, caprecs;    /*   protected by lock */
	size_t len;               /* their total bytes */
	size_t sync_max;          /* ILOG_SYNC_MAX, or fs_opts.log_sync_max */
	bool overflow;            /* past sync_max: bytes dropped */
	uint8_t *big[ILOG_NBIGBUF]; /* free ILOG_BIGBUF buffers (lock) */
	unsigned nbig;
	uint64_t appended;        /* stream position after the last record */
	uint64_t synced;          /* position known durable (log or CP) */
	uint64_t cp_pos;          /* unsynced records up to here went with
				   * the CP in flight: later ones wait for it */
	uint64_t wseq;            /* next block sequence to write */
	uint64_t durable_seq;     /* s_log_seq of the durable superblock */
	uint64_t nblocks, epoch;
	uint8_t uuid[16];
	int error;                /* sticky: a log write failed */
};

/* ---- inode.c ------------------------------------------------------------- */
struct inode {
	uint64_t ino;
	uint64_t nlookup;         /* FUSE references */
	struct inode *hnext;
};

/* ---- snap.c ------------------------------------------------------------- */
struct snap_mem {
	bool used;
	uint64_t id, gen, time, used_blocks, ninodes;
	uint32_t time_ns, flags;
	char name[TFS_SNAP_NAME_MAX + 1];
	struct tfs_dinode ifile;
};

enum snap_req_kind { SNAP_REQ_CREATE, SNAP_REQ_DELETE, SNAP_REQ_ROLLBACK };
struct snap_req {
	enum snap_req_kind kind;
	char name[TFS_SNAP_NAME_MAX + 1];
	uint32_t flags;
	bool force;               /* ROLLBACK: delete newer snapshots */
	bool owned;               /* made by the CP itself: freed at its end */
	int slot;                 /* CREATE: the slot taken, for the patch */
	int rc;
	bool done;
	struct snap_req *next;
};

/* ---- the file system ------------------------------------------------------- */
enum fs_state { FS_OK, FS_ERROR };

struct fs {
	pthread_mutex_t lock;
	pthread_mutex_t cp_lock;
	pthread_rwlock_t io_rw;   /* see the lock order at the top */
	pthread_cond_t cp_cond;   /* CP thread wakeup, with lock */
	pthread_cond_t cp_done;   /* a CP finished, with lock */
	struct bdev *bd;
	struct fs_opts opts;
	struct tfs_super sb;      /* working copy; roots updated by CPs */
	uint64_t durable_gen;     /* newest superblock known durable */
	enum fs_state state;
	int error;                /* sticky CP error */
	bool replaying, ro;
	struct bcache bc;
	struct alloc al;
	struct ilog log;
	struct inode **itab;
	size_t nitab;
	uint64_t dirty_max;
	uint64_t reserve;         /* blocks only deletes may use */
	struct snap_mem *snaps;   /* TFS_MAX_SNAPS slots, loaded at mount */
	unsigned nsnaps;          /* slots in use */
	uint64_t snap_hold_gen;   /* newest snapshot older than the CP being
				   * written: blocks born at or before it are
				   * deadlisted, not freed */
	struct snap_req *snap_reqs; /* queued for the next CP */
	struct snap_req *snap_cp;   /* taken by the CP being written */
	char **snapdir_gone;      /* names that came or went in .snapshot,
				   * for fs_opts.inval_entry after the CP */
	size_t nsnapdir_gone;
	struct fs_sink sinks[4];
	int nsinks;
	pthread_t cp_thread;
	bool cp_thread_on, stopping, cp_wanted;
	bool cp_in_flight;        /* a CP is between freeze and durable */
	uint64_t cps_done;
	uint64_t last_cp_usec;
};

/* ---- alloc.c ------------------------------------------------------------ */
int alloc_init(struct fs *fs);
void alloc_destroy(struct fs *fs);
int alloc_block(struct fs *fs, uint64_t *out);   /* CP phase A only */
int alloc_set(struct fs *fs, uint64_t blkno, bool used);
void alloc_free_later(struct fs *fs, uint64_t owner, const struct tfs_bptr *bp);
int alloc_free_now(struct fs *fs, uint64_t blkno); /* CP: clear + hold */
/* CP: a block leaves the live tree; freed or deadlisted (snapshots) */
int alloc_kill(struct fs *fs, uint64_t owner, uint64_t blkno, uint64_t birth);
int alloc_cp_begin(struct fs *fs);                 /* apply `later` */
void alloc_cp_durable(struct fs *fs);              /* release hold */
uint64_t alloc_free_blocks(struct fs *fs);
int alloc_guard_load(struct fs *fs);
void u64vec_push(struct u64vec *v, uint64_t x);
void u64vec_free(struct u64vec *v);
/* Outside every lock: tell the kernel about the names snap_cp_end noted. */
void snap_inval_names(struct fs *fs);

/* ---- tree.c -------------------------------------------------------------- */
#define GET_CREATE 1u             /* make a zeroed buffer for a hole */
struct tfs_dinode *owner_dinode(struct fs *fs, uint64_t owner, int *rc);
void owner_dirty_dinode(struct fs *fs, uint64_t owner);
int buf_get(struct fs *fs, uint64_t owner, uint8_t level, uint64_t idx,
	    unsigned flags, struct buf **out);
int buf_dirty(struct fs *fs, struct buf *b);
int tree_read(struct fs *fs, uint64_t owner, uint64_t idx, void *dst);
int tree_free_range(struct fs *fs, uint64_t owner, uint64_t first,
		    uint64_t last);
int tree_next(struct fs *fs, uint64_t owner, uint64_t idx, bool data,
	      uint64_t *out);
int tree_read_block(struct fs *fs, const struct tfs_bptr *bp, void *dst);
/* Its two checks: the pointer names a block of the data area (else
 * -EUCLEAN, logged); a block read matches its checksum (else -EIO,
 * logged).  Only constant superblock fields are read: no lock needed. */
int tree_blkno_check(struct fs *fs, uint64_t blkno);
int tree_csum_check(const struct tfs_bptr *bp, const void *data);
int tree_cut(struct fs *fs, uint64_t owner, uint8_t level, uint64_t idx);

/* ---- inode.c ------------------------------------------------------------ */
int inode_get(struct fs *fs, uint64_t ino, struct tfs_dinode **out);
void inode_touch(struct fs *fs, uint64_t ino);      /* dinode changed */
struct inode *inode_ref(struct fs *fs, uint64_t ino, bool create);
void inode_unref(struct fs *fs, uint64_t ino, uint64_t n);
int inode_alloc(struct fs *fs, uint64_t ino, mode_t mode);
int inode_free(struct fs *fs, uint64_t ino);
void inode_to_attr(uint64_t ino, const struct tfs_dinode *d,
		   struct fs_attr *a);
void inode_destroy_table(struct fs *fs);
void ts_put(le64 *sec, le32 *nsec, struct timespec t);
struct timespec ts_get(le64 sec, le32 nsec);

/* ---- dir.c --------------------------------------------------------------- */
int dir_lookup(struct fs *fs, uint64_t dir, const char *name,
	       uint64_t *ino, unsigned *dtype);
int dir_insert(struct fs *fs, uint64_t dir, const char *name, uint64_t ino,
	       unsigned dtype);
int dir_remove(struct fs *fs, uint64_t dir, const char *name);
int dir_set(struct fs *fs, uint64_t dir, const char *name, uint64_t ino,
	    unsigned dtype);
int dir_iterate(struct fs *fs, uint64_t dir, uint64_t cookie,
		fs_filldir_t fill, void *ctx, bool snapdir);
int dir_init(struct fs *fs, uint64_t dir, uint64_t parent);
/* Bucket decoding shared with verify.c.  Returns entries or -EUCLEAN. */
struct dirent_view {
	uint64_t hash, ino;
	unsigned type, namelen;
	const char *name;
};
int dirblk_parse(const uint8_t *blk, struct dirent_view *ents, size_t max);
uint64_t dir_hash(const char *name, size_t len);

/* ---- file.c ---------------------------------------------------------------- */
/* A file read in two steps, so data comes off the disk without
 * fs->lock: file_read_plan (fs->lock held) copies what the cache has,
 * zeroes holes and notes the blocks to read; file_read_io (no lock,
 * fs->io_rw shared) reads them straight into the caller's buffer and
 * checks each against its pointer.  Only blocks whose content is durable
 * are left out of the cache (bcache_evict keeps the rest), so reading
 * them from the device is right. */
struct read_miss {
	struct tfs_bptr bp;
	char *dst;
	size_t bo, n;             /* bytes [bo, bo+n) of the block */
};
struct read_plan {
	struct read_miss *m;
	size_t n, cap;
};
ssize_t file_read_plan(struct fs *fs, uint64_t ino, void *buf, size_t size,
		       uint64_t off, struct read_plan *plan);
int file_read_io(struct fs *fs, struct read_plan *plan);
/* The pointer of data block idx of owner, or the cached buffer (*b);
 * a hole leaves both zero.  fs->lock held. */
int tree_peek(struct fs *fs, uint64_t owner, uint64_t idx, struct buf **b,
	      struct tfs_bptr *bp);
/* Both steps at once, fs->lock held throughout (short reads: symlinks). */
ssize_t file_read(struct fs *fs, uint64_t ino, void *buf, size_t size,
		  uint64_t off);
int file_write(struct fs *fs, uint64_t ino, const void *buf, size_t size,
	       uint64_t off);
int file_truncate(struct fs *fs, uint64_t ino, uint64_t size);
int file_zero(struct fs *fs, uint64_t ino, uint64_t off, uint64_t len,
	      bool punch);
int file_alloc(struct fs *fs, uint64_t ino, uint64_t off, uint64_t len);

/* ---- xattr.c --------------------------------------------------------------- */
ssize_t xattr_get(struct fs *fs, uint64_t ino, const char *name, void *buf,
		  size_t size);
int xattr_set(struct fs *fs, uint64_t ino, const char *name,
	      const void *value, size_t size, int flags);
ssize_t xattr_list(struct fs *fs, uint64_t ino, char *buf, size_t size);
int xattr_remove(struct fs *fs, uint64_t ino, const char *name);
int xattr_drop(struct fs *fs, uint64_t ino);
int xattrblk_check(const uint8_t *blk);

/* ---- super.c --------------------------------------------------------------- */
int super_decode(const void *blk, uint64_t nblocks, struct tfs_super *out);
void super_seal(struct tfs_super *sb);
int super_pick(struct bdev *bd, struct tfs_super *out);

/* ---- ilog.c ----------------------------------------------------------------- */
int ilog_init(struct fs *fs);
void ilog_destroy(struct fs *fs);
/* Takes rec (from ilog_buf_get, cap bytes) on success; the caller gives
 * it back (ilog_buf_put) on failure. */
int ilog_append(struct fs *fs, uint8_t *rec, size_t len, size_t cap,
		uint64_t *pos);
/* True while the log keeps no record bytes (see ILOG_SYNC_MAX). */
bool ilog_overflowed(struct fs *fs);
/* Overflowed: account len bytes of a record that is not kept. */
int ilog_skip(struct fs *fs, size_t len, uint64_t *pos);
/* A buffer of at least need bytes; *cap gets its size.  NULL: no memory. */
uint8_t *ilog_buf_get(struct fs *fs, size_t need, size_t *cap);
void ilog_buf_put(struct fs *fs, uint8_t *p, size_t cap);
int ilog_sync(struct fs *fs, uint64_t pos);
size_t ilog_pending(struct fs *fs);
uint64_t ilog_cp_freeze(struct fs *fs, uint64_t *pos);
void ilog_cp_durable(struct fs *fs, uint64_t pos, uint64_t seq);
void ilog_cp_failed(struct fs *fs, int err);
typedef int (*ilog_apply_t)(struct fs *fs, const uint8_t *rec, size_t len,
			    unsigned type);
int ilog_replay(struct fs *fs, ilog_apply_t apply, uint64_t *nrec);
int ilog_scan(struct bdev *bd, const struct tfs_super *sb, uint64_t *nrec,
	      uint64_t *nbytes);

/* ---- cp.c ------------------------------------------------------------------ */
int cp_run(struct fs *fs);
int cp_start_thread(struct fs *fs);
void cp_stop_thread(struct fs *fs);
void cp_kick(struct fs *fs);        /* fs->lock held */
int cp_throttle(struct fs *fs);     /* fs->lock held: wait if both full */
/* fs->lock held: keep the cache within its budget (bcache_evict). */
void fs_evict(struct fs *fs);
uint64_t cp_dirty_bytes(struct fs *fs); /* fs->lock held */

/* ---- verify.c / repair.c ------------------------------------------------ */
int verify_refs(struct bdev *bd, uint8_t **refs, uint64_t *blind,
		uint8_t *bad_slots);

/* ---- snap.c ---------------------------------------------------------------- */
int snap_load(struct fs *fs);
void snap_destroy(struct fs *fs);
int snap_cp_begin(struct fs *fs, uint64_t gen);
void snap_cp_patch(struct fs *fs);
void snap_cp_end(struct fs *fs, int rc);
int snap_dead_add(struct fs *fs, uint64_t blkno, uint64_t birth, uint64_t death);
int snap_by_name(struct fs *fs, const char *name);
bool snap_auto_due(struct fs *fs);
time_t snap_clock(struct fs *fs);

/* ---- ops.c ------------------------------------------------------------------ */
int ops_space(struct fs *fs, uint64_t nblocks, bool deleting);
int ops_replay(struct fs *fs, const uint8_t *rec, size_t len, unsigned type);
int ops_orphans_reclaim(struct fs *fs);
struct timespec fs_now(void);

#endif
