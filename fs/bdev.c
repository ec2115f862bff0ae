/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bdev.c - block devices.  The only caller of pread/pwrite/fdatasync.
 *
 * An image is written through a second descriptor opened O_DIRECT when
 * the file system under it allows: a CP's runs go to the device without
 * a copy into the page cache, and without filling it with blocks twinfs
 * caches itself (bcache.c).  Reads stay buffered, so the kernel's
 * read-ahead still works for them; a direct write drops any cached copy
 * of the blocks it writes, so the two agree.  Buffers that are not 4 KiB
 * aligned, and a file system that turns O_DIRECT down at write time,
 * take the buffered descriptor.
 *
 * Read-around.  A lone block read that misses the page cache (a FUSE
 * read of 4 KiB, a metadata block) asks the kernel for the aligned
 * window around it as well (POSIX_FADV_WILLNEED: one device request, no
 * copy).  A CP writes what was dirty together, so the blocks beside one
 * are often the next ones asked for; the kernel's own read-ahead sees
 * only a random pattern and reads the one page.  This is what the kernel
 * does for a page fault in a mapped file, and ZFS's vdev cache did for
 * small reads.  Whether it pays is measured: a read first tries the page
 * cache alone (preadv2 RWF_NOWAIT), so each lone read is a hit or a miss.
 * An epoch of RA_EPOCH misses with fewer than one hit per RA_USEFUL
 * misses turns read-around off for the next epoch (a random reader of a
 * file much larger than memory), except for every RA_PROBE-th miss, so
 * that a change of pattern is seen.  The counters are shared by every
 * thread and only steer a heuristic: relaxed atomics, races harmless.
 * Stale data cannot come of it: a block is only read-around into the
 * page cache; a direct write drops cached copies of what it writes, and
 * every block read is checked against its parent's checksum anyway.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bdev.h"
#include "format.h"

enum { RA_EPOCH = 1024, RA_USEFUL = 16, RA_PROBE = 64 };

struct file_dev {
	int fd;
	int wfd;                  /* O_DIRECT, or -1 */
	unsigned ra;              /* read-around window in blocks; < 2: off */
	atomic_uint ra_hits, ra_misses;   /* lone reads in this epoch */
	atomic_bool ra_idle;      /* the last epoch found it useless */
};

static bool aligned(const void *p)
{
	return ((uintptr_t)p & 4095) == 0;
}

/* A direct write refused with EINVAL: write buffered from now on. */
static bool direct_refused(struct file_dev *f, ssize_t k)
{
	if (k >= 0 || errno != EINVAL || f->wfd < 0)
		return false;
	close(f->wfd);
	f->wfd = -1;
	return true;
}

/* A lone block: from the page cache if it is there (true); if not, the
 * window around it is asked for (see the top of the file) and the caller
 * reads the block itself. */
static bool read_around(struct bdev *bd, struct file_dev *f, uint64_t blkno,
		       void *buf)
{
	struct iovec iov = { buf, TFS_BLOCK_SIZE };
	unsigned m, h;
	ssize_t n;

	do
		n = preadv2(f->fd, &iov, 1, (off_t)(blkno * TFS_BLOCK_SIZE),
			    RWF_NOWAIT);
	while (n < 0 && errno == EINTR);
	if (n == TFS_BLOCK_SIZE) {
		atomic_fetch_add_explicit(&f->ra_hits, 1, memory_order_relaxed);
		return true;
	}
	if (n < 0 && errno != EAGAIN)
		return false;
	m = atomic_fetch_add_explicit(&f->ra_misses, 1,
				      memory_order_relaxed) + 1;
	if (!atomic_load_explicit(&f->ra_idle, memory_order_relaxed) ||
	    m % RA_PROBE == 0) {
		uint64_t first = blkno & ~(uint64_t)(f->ra - 1);
		uint64_t k = f->ra;
		if (first + k > bd->nblocks)
			k = bd->nblocks - first;
		posix_fadvise(f->fd, (off_t)(first * TFS_BLOCK_SIZE),
			      (off_t)(k * TFS_BLOCK_SIZE), POSIX_FADV_WILLNEED);
	}
	if (m == RA_EPOCH) {     /* one thread closes the epoch */
		h = atomic_exchange_explicit(&f->ra_hits, 0,
					     memory_order_relaxed);
		atomic_store_explicit(&f->ra_misses, 0, memory_order_relaxed);
		atomic_store_explicit(&f->ra_idle, h * RA_USEFUL < RA_EPOCH,
				      memory_order_relaxed);
	}
	return false;
}

static int file_read(struct bdev *bd, uint64_t blkno, void *buf)
{
	struct file_dev *f = bd->priv;
	size_t done = 0;

	if (f->ra > 1 && read_around(bd, f, blkno, buf))
		return 0;
	while (done < TFS_BLOCK_SIZE) {
		ssize_t n = pread(f->fd, (char *)buf + done, TFS_BLOCK_SIZE - done,
				  (off_t)(blkno * TFS_BLOCK_SIZE + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) { /* past the end of a short image: zeros */
			memset((char *)buf + done, 0, TFS_BLOCK_SIZE - done);
			return 0;
		}
		done += (size_t)n;
	}
	return 0;
}

static int file_write(struct bdev *bd, uint64_t blkno, const void *buf)
{
	struct file_dev *f = bd->priv;
	size_t done = 0;

	while (done < TFS_BLOCK_SIZE) {
		int fd = done == 0 && f->wfd >= 0 && aligned(buf) ? f->wfd : f->fd;
		ssize_t n = pwrite(fd, (const char *)buf + done,
				   TFS_BLOCK_SIZE - done,
				   (off_t)(blkno * TFS_BLOCK_SIZE + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (fd == f->wfd && direct_refused(f, n))
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}

static int file_write_run(struct bdev *bd, uint64_t blkno, void *const *bufs,
			  unsigned n)
{
	struct file_dev *f = bd->priv;
	struct iovec iov[256];
	size_t total = (size_t)n * TFS_BLOCK_SIZE, done = 0;
	bool direct = f->wfd >= 0;

	if (n > 256)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = TFS_BLOCK_SIZE;
		direct = direct && aligned(bufs[i]);
	}
	while (done < total) {
		unsigned first = (unsigned)(done / TFS_BLOCK_SIZE);
		size_t skip = done % TFS_BLOCK_SIZE;
		/* a short direct write ends mid-block only in theory: then
		 * the rest goes buffered */
		int fd = direct && skip == 0 && f->wfd >= 0 ? f->wfd : f->fd;
		ssize_t k;
		iov[first].iov_base = (char *)bufs[first] + skip;
		iov[first].iov_len = TFS_BLOCK_SIZE - skip;
		k = pwritev(fd, iov + first, (int)(n - first),
			    (off_t)(blkno * TFS_BLOCK_SIZE + done));
		if (k < 0 && errno == EINTR)
			continue;
		if (fd == f->wfd && direct_refused(f, k))
			continue;
		if (k < 0)
			return -errno;
		done += (size_t)k;
	}
	return 0;
}

static int file_read_run(struct bdev *bd, uint64_t blkno, void *const *bufs,
			 unsigned n)
{
	struct file_dev *f = bd->priv;
	struct iovec iov[256];
	ssize_t k;

	if (n > 256)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = TFS_BLOCK_SIZE;
	}
	do
		k = preadv(f->fd, iov, (int)n, (off_t)(blkno * TFS_BLOCK_SIZE));
	while (k < 0 && errno == EINTR);
	if (k < 0)
		return -errno;
	if ((size_t)k != (size_t)n * TFS_BLOCK_SIZE) /* short: block by block */
		for (unsigned i = 0; i < n; i++) {
			int rc = file_read(bd, blkno + i, bufs[i]);
			if (rc)
				return rc;
		}
	return 0;
}

static int file_flush(struct bdev *bd)
{
	struct file_dev *f = bd->priv;

	return fdatasync(f->fd) ? -errno : 0;
}

static void file_close(struct bdev *bd)
{
	struct file_dev *f = bd->priv;

	close(f->fd);
	if (f->wfd >= 0)
		close(f->wfd);
	free(f);
}

static const struct bdev_ops file_ops = {
	.read = file_read, .write = file_write, .write_run = file_write_run,
	.read_run = file_read_run, .flush = file_flush, .close = file_close,
};

/* Read-around needs RWF_NOWAIT to tell hits from misses (Linux 4.14+,
 * and a file system that takes it). */
static bool nowait_works(int fd)
{
	char b[1];
	struct iovec iov = { b, 1 };

	return preadv2(fd, &iov, 1, 0, RWF_NOWAIT) >= 0 || errno == EAGAIN;
}

int bdev_file_open(const char *path, bool ro, struct bdev **out)
{
	struct file_dev *f;
	struct bdev *bd;
	struct stat st;
	uint64_t size;
	int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		goto fail_errno;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		if (end < 0)
			goto fail_errno;
		size = (uint64_t)end;
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		close(fd);
		return -EINVAL;
	}
	f = calloc(1, sizeof(*f));
	bd = calloc(1, sizeof(*bd));
	if (!f || !bd) {
		free(f);
		free(bd);
		close(fd);
		return -ENOMEM;
	}
	f->fd = fd;
	f->ra = nowait_works(fd) ? BDEV_READAROUND_DEFAULT : 0;
	f->wfd = ro ? -1 : open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	bd->ops = &file_ops;
	bd->priv = f;
	bd->ro = ro;
	bd->nblocks = size / TFS_BLOCK_SIZE;
	*out = bd;
	return 0;
fail_errno:
	{
		int rc = -errno;
		close(fd);
		return rc;
	}
}

unsigned bdev_file_readaround(struct bdev *bd, unsigned blocks)
{
	struct file_dev *f = bd->priv;

	if (f->ra)        /* 0 when RWF_NOWAIT is not there */
		f->ra = blocks;
	return f->ra;
}

static int mem_read(struct bdev *bd, uint64_t blkno, void *buf)
{
	memcpy(buf, (uint8_t *)bd->priv + blkno * TFS_BLOCK_SIZE,
	       TFS_BLOCK_SIZE);
	return 0;
}

static int mem_write(struct bdev *bd, uint64_t blkno, const void *buf)
{
	memcpy((uint8_t *)bd->priv + blkno * TFS_BLOCK_SIZE, buf,
	       TFS_BLOCK_SIZE);
	return 0;
}

static int mem_flush(struct bdev *bd)
{
	return 0;
}

static void mem_close(struct bdev *bd)
{
	free(bd->priv);
}

static const struct bdev_ops mem_ops = {
	.read = mem_read, .write = mem_write, .flush = mem_flush,
	.close = mem_close,
};

int bdev_mem_new(uint64_t nblocks, struct bdev **out)
{
	struct bdev *bd = calloc(1, sizeof(*bd));

	if (!bd)
		return -ENOMEM;
	bd->priv = calloc(nblocks, TFS_BLOCK_SIZE);
	if (!bd->priv) {
		free(bd);
		return -ENOMEM;
	}
	bd->ops = &mem_ops;
	bd->nblocks = nblocks;
	*out = bd;
	return 0;
}

uint8_t *bdev_mem_data(struct bdev *bd)
{
	return bd->priv;
}

int bdev_read(struct bdev *bd, uint64_t blkno, void *buf)
{
	if (blkno >= bd->nblocks)
		return -EIO;
	return bd->ops->read(bd, blkno, buf);
}

int bdev_write(struct bdev *bd, uint64_t blkno, const void *buf)
{
	if (bd->ro)
		return -EROFS;
	if (blkno >= bd->nblocks)
		return -EIO;
	if (bd->write_check)
		bd->write_check(bd->write_check_arg, blkno);
	return bd->ops->write(bd, blkno, buf);
}

int bdev_write_run(struct bdev *bd, uint64_t blkno, void *const *bufs,
		   unsigned n)
{
	if (bd->ro)
		return -EROFS;
	if (blkno + n > bd->nblocks || blkno + n < blkno)
		return -EIO;
	if (bd->write_check)
		for (unsigned i = 0; i < n; i++)
			bd->write_check(bd->write_check_arg, blkno + i);
	if (bd->ops->write_run && n > 1)
		return bd->ops->write_run(bd, blkno, bufs, n);
	for (unsigned i = 0; i < n; i++) {
		int rc = bd->ops->write(bd, blkno + i, bufs[i]);
		if (rc)
			return rc;
	}
	return 0;
}

int bdev_read_run(struct bdev *bd, uint64_t blkno, void *const *bufs,
		  unsigned n)
{
	if (blkno + n > bd->nblocks || blkno + n < blkno)
		return -EIO;
	if (bd->ops->read_run && n > 1)
		return bd->ops->read_run(bd, blkno, bufs, n);
	for (unsigned i = 0; i < n; i++) {
		int rc = bd->ops->read(bd, blkno + i, bufs[i]);
		if (rc)
			return rc;
	}
	return 0;
}

int bdev_flush(struct bdev *bd)
{
	if (bd->ro)
		return 0;
	return bd->ops->flush(bd);
}

void bdev_close(struct bdev *bd)
{
	if (!bd)
		return;
	if (bd->ops->close)
		bd->ops->close(bd);
	free(bd);
}
