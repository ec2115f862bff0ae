/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * twinfs.h - the core API.  Outside fs/, include only this, format.h and
 * bdev.h.  Every call returns 0 (or a byte count) or a negative errno.
 * Inode numbers are the on-disk ones; TFS_INO_ROOT is FUSE_ROOT_ID.
 *
 * Lookup counts follow libfuse: fs_lookup, fs_mknod, fs_symlink, fs_link
 * and fs_create add one reference to the inode they return; fs_forget
 * drops n.  An unlinked inode is freed when its last reference goes.
 */
#ifndef TWINFS_TWINFS_H
#define TWINFS_TWINFS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "bdev.h"

#define TWINFS_VERSION_STRING "0.1.0"

struct fs;

struct fs_format_opts {
	uint64_t nblocks;        /* 0: the whole device */
	const char *label;       /* may be NULL */
	const uint8_t *uuid;     /* 16 bytes, or NULL for a random one */
	uint64_t log_blocks;     /* 0: a default scaled to the size */
};

/* Write a new, empty file system onto bd (superblock, log, root dir). */
int fs_format(struct bdev *bd, const struct fs_format_opts *o);

/* A CP sink sees every block a CP writes, then the superblock, in order. */
struct fs_sink {
	int (*block)(void *arg, uint64_t blkno, const void *data);
	/* called once the CP's blocks are durable locally; sb is the block */
	int (*commit)(void *arg, uint64_t gen, const void *sb);
	void *arg;
};

enum { FS_ATIME_RELATIME, FS_ATIME_NOATIME, FS_ATIME_STRICT };

struct fs_opts {
	bool ro;
	unsigned cp_interval_ms;   /* 0: no timer (tests drive CPs) */
	uint64_t dirty_max;        /* bytes dirty before a CP starts; 0: default */
	uint64_t cache_max;        /* memory budget for blocks (struct bcache); 0: default */
	bool no_cp_thread;         /* tests: CPs run only from fs_cp() calls */
	bool snapdir_visible;      /* list .snapshot in readdir of the root */
	/* access times on read and readdir: FS_ATIME_* (mount options
	 * relatime, noatime, strictatime), none on directories when
	 * nodiratime */
	unsigned atime;
	bool nodiratime;
	/* keep every CP of the last keep_cps seconds as snapshot "@GEN" */
	unsigned keep_cps;
	/* scheduled snapshots kept: hourly, daily, weekly, monthly (0: off) */
	unsigned sched[4];
	/* the clock for snapshot times and schedules (tests); NULL: time() */
	time_t (*clock)(void *arg);
	void *clock_arg;
	/* tests: pending log bytes past which an fsync runs a CP and the
	 * log keeps no more record bytes (0: 4 MiB, ILOG_SYNC_MAX) */
	uint32_t log_sync_max;
	/* fsck only: replay what the log allows, no CP at mount */
	bool repair;
	/* Tell the kernel to forget what it cached of an inode (after a
	 * rollback) or of one name in a directory (a snapshot came or went
	 * in .snapshot; every name a rollback changed).  Called with no
	 * lock of the fs held. */
	void (*inval)(void *arg, uint64_t ino);
	void (*inval_entry)(void *arg, uint64_t dir, const char *name);
	void *inval_arg;
};

int fs_mount(struct bdev *bd, const struct fs_opts *o, struct fs **out);
/* With o->no_cp_thread set at mount, start the CP thread later (after a
 * daemon has forked).  Safe to call once. */
int fs_start_threads(struct fs *fs);
/* Final CP (unless read-only), then free everything.  bd stays open. */
int fs_unmount(struct fs *fs);
/* Tests: drop everything in memory without a final CP (a crash). */
void fs_abandon(struct fs *fs);

/* Run a CP now and wait until it is durable. */
int fs_cp(struct fs *fs);
int fs_add_sink(struct fs *fs, const struct fs_sink *sink);
uint64_t fs_generation(struct fs *fs);

struct fs_attr {
	uint64_t ino;
	mode_t mode;
	uint32_t nlink;
	uid_t uid;
	gid_t gid;
	dev_t rdev;
	uint64_t size;
	uint64_t blocks;          /* 512-byte units, as st_blocks */
	struct timespec atime, mtime, ctime;
	uint64_t gen;
};
void fs_attr_to_stat(const struct fs_attr *a, struct stat *st);

struct fs_cred {
	uid_t uid;
	gid_t gid;
};

/* fs_setattr mask bits */
#define FS_SET_MODE    (1u << 0)
#define FS_SET_UID     (1u << 1)
#define FS_SET_GID     (1u << 2)
#define FS_SET_SIZE    (1u << 3)
#define FS_SET_ATIME   (1u << 4)
#define FS_SET_MTIME   (1u << 5)
#define FS_SET_ATIME_NOW (1u << 6)
#define FS_SET_MTIME_NOW (1u << 7)
#define FS_SET_CTIME   (1u << 8)
/* clear setuid, and setgid when group-executable, on a non-directory:
 * what a write, truncate or chown by a caller without CAP_FSETID does */
#define FS_SET_KILL_SUIDGID (1u << 9)

struct fs_setattr {
	unsigned mask;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	uint64_t size;
	struct timespec atime, mtime, ctime;
};

int fs_lookup(struct fs *fs, uint64_t parent, const char *name,
	      struct fs_attr *out);
void fs_forget(struct fs *fs, uint64_t ino, uint64_t nlookup);
int fs_getattr(struct fs *fs, uint64_t ino, struct fs_attr *out);
int fs_setattr(struct fs *fs, uint64_t ino, const struct fs_setattr *sa,
	       struct fs_attr *out);
/* Files, directories, fifos, sockets and devices, by mode. */
int fs_mknod(struct fs *fs, uint64_t parent, const char *name, mode_t mode,
	     dev_t rdev, const struct fs_cred *cr, struct fs_attr *out);
/* Like fs_mknod for a regular file, but fails with -EEXIST only if excl. */
int fs_create(struct fs *fs, uint64_t parent, const char *name, mode_t mode,
	      bool excl, const struct fs_cred *cr, struct fs_attr *out);
int fs_symlink(struct fs *fs, uint64_t parent, const char *name,
	       const char *target, const struct fs_cred *cr,
	       struct fs_attr *out);
int fs_link(struct fs *fs, uint64_t ino, uint64_t newparent,
	    const char *newname, struct fs_attr *out);
int fs_unlink(struct fs *fs, uint64_t parent, const char *name);
int fs_rmdir(struct fs *fs, uint64_t parent, const char *name);
/* flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE */
int fs_rename(struct fs *fs, uint64_t parent, const char *name,
	      uint64_t newparent, const char *newname, unsigned flags);
/* 0 and a NUL-terminated target in buf; -ENAMETOOLONG if size is short */
int fs_readlink(struct fs *fs, uint64_t ino, char *buf, size_t size);

/* Reads set the access time as fs_opts.atime says (relatime by
 * default: when it is not later than mtime or ctime, or a day old), but
 * not with FS_READ_NOATIME (opened O_NOATIME). */
#define FS_READ_NOATIME 1u
ssize_t fs_read(struct fs *fs, uint64_t ino, void *buf, size_t size,
		uint64_t off, unsigned flags);
/* FS_WRITE_SYNC: durable before return (O_SYNC/O_DSYNC). */
#define FS_WRITE_SYNC   1u
#define FS_WRITE_APPEND 2u
ssize_t fs_write(struct fs *fs, uint64_t ino, const void *buf, size_t size,
		 uint64_t off, unsigned flags);
int fs_fsync(struct fs *fs, uint64_t ino, bool datasync);
int fs_fallocate(struct fs *fs, uint64_t ino, int mode, uint64_t off,
		 uint64_t len);
/* SEEK_DATA / SEEK_HOLE; returns the offset or -ENXIO. */
int64_t fs_lseek(struct fs *fs, uint64_t ino, uint64_t off, int whence);

/* fill returns nonzero to stop (buffer full); the entry is then not
 * consumed.  next is the cookie that resumes after this entry. */
typedef int (*fs_filldir_t)(void *ctx, const char *name, uint64_t ino,
			    unsigned dtype, uint64_t next);
/* Entries come as ".", "..", then the rest in hash order; cookie 0 starts. */
int fs_readdir(struct fs *fs, uint64_t ino, uint64_t cookie,
	       fs_filldir_t fill, void *ctx);
/* Opening a directory or file checks it exists and its type. */
int fs_open(struct fs *fs, uint64_t ino, bool dir);
/* Is ino read-only (a snapshot's, or the whole mount is)? */
bool fs_ino_readonly(struct fs *fs, uint64_t ino);

int fs_setxattr(struct fs *fs, uint64_t ino, const char *name,
		const void *value, size_t size, int flags);
/* Returns the value's size; size 0 asks for the size only. -ERANGE if small */
ssize_t fs_getxattr(struct fs *fs, uint64_t ino, const char *name, void *buf,
		    size_t size);
ssize_t fs_listxattr(struct fs *fs, uint64_t ino, char *buf, size_t size);
int fs_removexattr(struct fs *fs, uint64_t ino, const char *name);
/* Privileges a write drops from a regular file (FUSE_HANDLE_KILLPRIV_V2
 * makes this ours): the security.capability xattr always, setuid and a
 * group-executable setgid when suidgid (the writer lacks CAP_FSETID).
 * Nothing to drop costs one look at the inode under fs->lock.
 * *changed: attributes moved, the kernel's copy is stale. */
int fs_kill_priv(struct fs *fs, uint64_t ino, bool suidgid, bool *changed);

int fs_statfs(struct fs *fs, struct statvfs *st);

struct fs_status {
	uint64_t generation, cps, dirty_bytes, log_bytes;
	uint64_t total_blocks, free_blocks, inodes, last_cp_usec;
	char label[65];
};
void fs_get_status(struct fs *fs, struct fs_status *st);

/* ---- snapshots ------------------------------------------------------------
 * MOUNT/.snapshot/NAME is a read-only view of each snapshot.  Create and
 * delete each take one CP and return once it is durable. */
#define FS_SNAP_NAME_MAX 127
struct fs_snap_info {
	char name[FS_SNAP_NAME_MAX + 1];
	uint64_t id, gen;
	struct timespec time;
	uint64_t referenced_bytes;  /* live data when taken */
	uint64_t unique_bytes;      /* freed if this one alone is deleted */
	unsigned flags;
};
int fs_snap_create(struct fs *fs, const char *name);
int fs_snap_delete(struct fs *fs, const char *name);
/* Return the live tree to a snapshot.  -EBUSY if newer snapshots exist,
 * unless force, which deletes them.  Changes since are lost. */
int fs_snap_rollback(struct fs *fs, const char *name, bool force);
/* Changes from snapshot `from` to snapshot `to` (NULL: the live tree):
 * kind '+', '-', 'M' or 'R' (then newpath is set).  cb returns nonzero
 * to stop.  -EINVAL if `from` is newer than `to`. */
typedef int (*fs_diff_t)(void *ctx, char kind, const char *path,
			 const char *newpath);
int fs_snap_diff(struct fs *fs, const char *from, const char *to,
		 fs_diff_t cb, void *ctx);
/* Fills up to max entries, oldest first; returns how many exist. */
int fs_snap_list(struct fs *fs, struct fs_snap_info *out, size_t max);

/* Check every invariant of the newest valid root of an image.  Prints
 * each problem through report (may be NULL) and returns how many it
 * found, or a negative errno if the image could not be read at all. */
struct fs_verify_stats {
	uint64_t gen, files, dirs, used_blocks, total_blocks, ninodes;
	uint64_t log_records, snapshots;
	char label[65];
};
typedef void (*fs_report_t)(void *ctx, const char *msg);
int fs_verify(struct bdev *bd, fs_report_t report, void *ctx,
	      struct fs_verify_stats *st);
/* Progress of the next fs_verify calls (fsck's bar): blocks checked so
 * far out of those in use; NULL turns it off.  Not thread-safe. */
void fs_verify_progress(void (*fn)(void *arg, uint64_t done, uint64_t total),
			void *arg);

/* Repair what fs_verify finds, as far as possible: replay the intent log,
 * free leaked blocks and record used ones in the map, cut damaged blocks
 * out of their trees, drop directory entries naming missing inodes, fix
 * link counts and sizes, and move unreachable inodes to /lost+found.
 * Every change is a CP, so an interrupted repair leaves a consistent
 * image.  Returns the number of repairs, or -errno. */
int fs_repair(struct bdev *bd, fs_report_t report, void *ctx);

/* Check one superblock slot's bytes: 0 valid, -EINVAL no twinfs magic,
 * -EBADMSG checksum, -EPROTONOSUPPORT other version, -EUCLEAN damaged. */
int fs_super_check(const void *blk, uint64_t dev_blocks);

/* The blocks of a file's tree: level 0 is data, idx its block index at
 * that level.  cb returns nonzero to stop.  For twinfs-dump. */
typedef int (*fs_bmap_t)(void *ctx, unsigned level, uint64_t idx,
			 uint64_t blkno, uint64_t birth);
int fs_bmap(struct fs *fs, uint64_t ino, fs_bmap_t cb, void *ctx);

/* Log messages go here (default: stderr). */
void fs_set_log(void (*fn)(int level, const char *msg));

#endif
