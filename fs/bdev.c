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
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bdev.h"
#include "format.h"

struct file_dev {
	int fd;
	int wfd;                  /* O_DIRECT, or -1 */
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

static int file_read(struct bdev *bd, uint64_t blkno, void *buf)
{
	struct file_dev *f = bd->priv;
	size_t done = 0;

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
