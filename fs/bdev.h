/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bdev.h - block devices: an ops table with file and memory back ends.
 * bdev.c is the only caller of pread/pwrite/fsync.  Tests add their own
 * back ends (the crash device) by filling in struct bdev_ops.
 *
 * All calls return 0 or -errno.  read/write move whole blocks.  A write
 * is durable only after a later flush returns 0.  Calls may come from
 * several threads at once; each back end is thread-safe.
 */
#ifndef TWINFS_BDEV_H
#define TWINFS_BDEV_H

#include <stdbool.h>
#include <stdint.h>

struct bdev;

struct bdev_ops {
	int (*read)(struct bdev *bd, uint64_t blkno, void *buf);
	int (*write)(struct bdev *bd, uint64_t blkno, const void *buf);
	int (*flush)(struct bdev *bd);
	void (*close)(struct bdev *bd);
	/* optional: n consecutive blocks from blkno in one call */
	int (*write_run)(struct bdev *bd, uint64_t blkno, void *const *bufs,
			 unsigned n);
	int (*read_run)(struct bdev *bd, uint64_t blkno, void *const *bufs,
			unsigned n);
};

struct bdev {
	const struct bdev_ops *ops;
	uint64_t nblocks;
	bool ro;
	void *priv;
	/* debug builds: called before every write; aborts on a W1 breach */
	void (*write_check)(void *arg, uint64_t blkno);
	void *write_check_arg;
};

/* Open an image file.  ro opens O_RDONLY and refuses writes (-EROFS). */
int bdev_file_open(const char *path, bool ro, struct bdev **out);
/* Lone block reads that miss the page cache also bring in the aligned
 * window of `blocks` around them (a power of two; 0 or 1: off); bdev.c
 * says when.  bdev_file_open sets BDEV_READAROUND_DEFAULT, or 0 where
 * the kernel cannot tell a hit from a miss.  Call before any read;
 * returns the window now in force. */
#define BDEV_READAROUND_DEFAULT 64
unsigned bdev_file_readaround(struct bdev *bd, unsigned blocks);
/* A zero-filled memory device of nblocks blocks. */
int bdev_mem_new(uint64_t nblocks, struct bdev **out);
/* The memory device's backing array (nblocks * TFS_BLOCK_SIZE bytes). */
uint8_t *bdev_mem_data(struct bdev *bd);

int bdev_read(struct bdev *bd, uint64_t blkno, void *buf);
int bdev_write(struct bdev *bd, uint64_t blkno, const void *buf);
/* n consecutive blocks; one system call where the back end allows */
int bdev_write_run(struct bdev *bd, uint64_t blkno, void *const *bufs,
		   unsigned n);
int bdev_read_run(struct bdev *bd, uint64_t blkno, void *const *bufs,
		  unsigned n);
int bdev_flush(struct bdev *bd);
void bdev_close(struct bdev *bd);

#endif
