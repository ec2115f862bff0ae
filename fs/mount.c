/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mount.c - making, mounting and unmounting a file system.  fs_format
 * builds the empty tree in memory and commits it with an ordinary CP, so
 * there is one encoder of the format, not two.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "fs_impl.h"

#define DEFAULT_CACHE   (256ull << 20)
#define DEFAULT_DIRTY   (64ull << 20)

static int fs_new(struct bdev *bd, const struct fs_opts *o, struct fs **out)
{
	struct fs *fs = calloc(1, sizeof(*fs));
	int rc;

	if (!fs)
		return -ENOMEM;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->cp_lock, NULL);
	pthread_rwlock_init(&fs->io_rw, NULL);
	pthread_cond_init(&fs->cp_cond, NULL);
	pthread_cond_init(&fs->cp_done, NULL);
	fs->bd = bd;
	if (o)
		fs->opts = *o;
	{
		uint64_t cache = fs->opts.cache_max ? fs->opts.cache_max :
				 DEFAULT_CACHE;
		fs->dirty_max = fs->opts.dirty_max ? fs->opts.dirty_max :
				DEFAULT_DIRTY;
		if (fs->dirty_max > cache / 4) { /* see struct bcache */
			if (fs->opts.dirty_max)
				log_warn("dirty_max %llu MiB is more than a quarter "
					 "of the cache (%llu MiB): using %llu MiB",
					 (unsigned long long)(fs->dirty_max >> 20),
					 (unsigned long long)(cache >> 20),
					 (unsigned long long)(cache / 4 >> 20));
			fs->dirty_max = cache / 4;
		}
		rc = bcache_init(&fs->bc, cache);
	}
	if (rc) {
		free(fs);
		return rc;
	}
	*out = fs;
	return 0;
}

static void fs_free(struct fs *fs)
{
	inode_destroy_table(fs);
	snap_destroy(fs);
	alloc_destroy(fs);
	ilog_destroy(fs);
	bcache_destroy(&fs->bc);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->cp_lock);
	pthread_rwlock_destroy(&fs->io_rw);
	pthread_cond_destroy(&fs->cp_cond);
	pthread_cond_destroy(&fs->cp_done);
	free(fs);
}

static uint64_t default_log_blocks(uint64_t nblocks)
{
	uint64_t l = nblocks / 32;

	if (l < 16)
		l = 16;
	if (l > 16384)
		l = 16384;   /* 64 MiB */
	return l;
}

static int make_dir(struct fs *fs, uint64_t ino, mode_t mode,
		    struct timespec now)
{
	struct tfs_dinode *d;
	int rc = inode_alloc(fs, ino, S_IFDIR | mode);

	if (!rc)
		rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	d->i_nlink = put32(2);
	d->i_uid = put32((uint32_t)getuid());
	d->i_gid = put32((uint32_t)getgid());
	ts_put(&d->i_atime, &d->i_atime_ns, now);
	ts_put(&d->i_mtime, &d->i_mtime_ns, now);
	ts_put(&d->i_ctime, &d->i_ctime_ns, now);
	ts_put(&d->i_btime, &d->i_btime_ns, now);
	return dir_init(fs, ino, ino);
}

int fs_format(struct bdev *bd, const struct fs_format_opts *o)
{
	uint64_t nb = o && o->nblocks ? o->nblocks : bd->nblocks;
	uint64_t lb = o && o->log_blocks ? o->log_blocks :
		      default_log_blocks(nb);
	struct timespec now = fs_now();
	uint8_t *zero;
	struct fs *fs;
	uint64_t epoch;
	int rc;

	if (nb < TFS_MIN_BLOCKS || nb > TFS_MAX_BLOCKS || nb > bd->nblocks)
		return -EINVAL;
	if (lb < 8 || TFS_LOG_START + lb + 64 > nb)
		return -EINVAL;
	zero = calloc(1, TFS_BLOCK_SIZE);
	if (!zero)
		return -ENOMEM;
	/* an older superblock of any generation must not survive */
	for (unsigned s = 0; s < TFS_SB_SLOTS; s++) {
		rc = bdev_write(bd, s, zero);
		if (rc) {
			free(zero);
			return rc;
		}
	}
	free(zero);
	rc = fs_new(bd, NULL, &fs);
	if (rc)
		return rc;
	fs->sb.s_magic = put64(TFS_MAGIC);
	fs->sb.s_version = put32(TFS_VERSION);
	fs->sb.s_block_size = put32(TFS_BLOCK_SIZE);
	fs->sb.s_nblocks = put64(nb);
	fs->sb.s_log_blocks = put64(lb);
	if (getrandom(&epoch, sizeof(epoch), 0) != sizeof(epoch))
		epoch = (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 20);
	fs->sb.s_log_epoch = put64(epoch >> 1);
	fs->sb.s_next_ino = put64(TFS_INO_FIRST);
	if (o && o->uuid)
		memcpy(fs->sb.s_uuid, o->uuid, 16);
	else if (getrandom(fs->sb.s_uuid, 16, 0) != 16)
		memcpy(fs->sb.s_uuid, &now, 16);
	if (o && o->label)
		strncpy(fs->sb.s_label, o->label, sizeof(fs->sb.s_label) - 1);
	rc = alloc_init(fs);
	if (!rc)
		rc = ilog_init(fs);
	if (!rc)
		rc = snap_load(fs);
	for (uint64_t b = 0; b < TFS_LOG_START + lb && !rc; b++)
		rc = alloc_set(fs, b, true) < 0 ? -EIO : 0;
	if (!rc)
		rc = make_dir(fs, TFS_INO_ROOT, 0755, now);
	if (!rc)
		rc = make_dir(fs, TFS_INO_ORPHANS, 0700, now);
	if (!rc)
		rc = cp_run(fs);
	fs_free(fs);
	return rc;
}

int fs_mount(struct bdev *bd, const struct fs_opts *o, struct fs **out)
{
	struct fs *fs;
	uint64_t nrec = 0;
	int rc = fs_new(bd, o, &fs);

	if (rc)
		return rc;
	fs->ro = fs->opts.ro || bd->ro;
	rc = super_pick(bd, &fs->sb);
	if (rc) {
		fs_free(fs);
		return rc;
	}
	fs->durable_gen = get64(fs->sb.s_gen);
	fs->reserve = get64(fs->sb.s_nblocks) / 100;
	if (fs->reserve < 32)
		fs->reserve = 32;
	rc = alloc_init(fs);
	if (!rc)
		rc = ilog_init(fs);
	if (!rc)
		rc = snap_load(fs);
	if (!rc && !fs->ro && !fs->opts.repair) /* fsck: the map may be bad */
		rc = alloc_guard_load(fs);
	if (rc)
		goto fail;
	/* replay runs with ro cleared so a read-only mount shows the
	 * replayed tree too; nothing is written without a CP */
	{
		bool ro = fs->ro;
		fs->ro = false;
		fs->replaying = true;
		pthread_mutex_lock(&fs->lock);
		rc = ilog_replay(fs, ops_replay, &nrec);
		pthread_mutex_unlock(&fs->lock);
		fs->replaying = false;
		fs->ro = ro;
	}
	if (rc)
		goto fail;
	if (nrec)
		log_info("replayed %llu intent log records",
			 (unsigned long long)nrec);
	if (!fs->ro) {
		pthread_mutex_lock(&fs->lock);
		rc = ops_orphans_reclaim(fs);
		pthread_mutex_unlock(&fs->lock);
		if (!rc && !fs->opts.repair)
			rc = cp_run(fs); /* new log epoch, replay committed */
	}
	if (!rc && !fs->opts.no_cp_thread)
		rc = cp_start_thread(fs);
	if (rc)
		goto fail;
	*out = fs;
	return 0;
fail:
	fs_free(fs);
	return rc;
}

int fs_start_threads(struct fs *fs)
{
	return cp_start_thread(fs);
}

int fs_unmount(struct fs *fs)
{
	int rc = 0;

	cp_stop_thread(fs);
	if (!fs->ro) {
		pthread_mutex_lock(&fs->lock);
		inode_destroy_table(fs); /* the kernel holds nothing any more */
		rc = fs->error;
		if (!rc)
			rc = ops_orphans_reclaim(fs);
		pthread_mutex_unlock(&fs->lock);
		if (!rc)
			rc = cp_run(fs);
	}
	fs_free(fs);
	return rc;
}

void fs_abandon(struct fs *fs)
{
	cp_stop_thread(fs);
	fs_free(fs);
}

int fs_cp(struct fs *fs)
{
	return cp_run(fs);
}

int fs_add_sink(struct fs *fs, const struct fs_sink *sink)
{
	int rc = 0;

	pthread_mutex_lock(&fs->cp_lock);
	if (fs->nsinks == (int)(sizeof(fs->sinks) / sizeof(fs->sinks[0])))
		rc = -ENOSPC;
	else
		fs->sinks[fs->nsinks++] = *sink;
	pthread_mutex_unlock(&fs->cp_lock);
	return rc;
}

uint64_t fs_generation(struct fs *fs)
{
	uint64_t g;

	pthread_mutex_lock(&fs->lock);
	g = fs->durable_gen;
	pthread_mutex_unlock(&fs->lock);
	return g;
}
