/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_ops.c - POSIX behaviour of the fs_* API: errno values, rename
 * variants, link counts, symlinks, timestamps, truncate, sparse files,
 * SEEK_DATA/SEEK_HOLE, fallocate, xattrs, readdir cookies, orphans,
 * ENOSPC and persistence.  Every test ends with fs_verify.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "format.h"
#include "harness.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE  (1 << 1)
#endif

#define ROOT TFS_INO_ROOT

static struct bdev *bd;
static struct fs *fs;

static void setup_size(uint64_t nblocks)
{
	bd = h_image(nblocks);
	fs = h_mount(bd, false);
}

static void setup(void)
{
	h_quiet_log();
	setup_size(16384);
}

static void teardown(void)
{
	if (fs)
		h_unmount(fs);
	fs = NULL;
	h_verify(bd);
	bdev_close(bd);
}

static void remount(void)
{
	h_unmount(fs);
	h_verify(bd);
	fs = h_mount(bd, false);
}

static struct fs_attr attr(uint64_t ino)
{
	struct fs_attr a;

	ck_assert_int_eq(fs_getattr(fs, ino, &a), 0);
	return a;
}

static struct fs_attr lattr(uint64_t dir, const char *name)
{
	struct fs_attr a;

	ck_assert_msg(fs_lookup(fs, dir, name, &a) == 0, "lookup %s", name);
	fs_forget(fs, a.ino, 1);
	return a;
}

static int mkdir_rc(uint64_t dir, const char *name)
{
	struct fs_attr a;
	int rc = fs_mknod(fs, dir, name, S_IFDIR | 0755, 0, &h_cred, &a);

	if (!rc)
		fs_forget(fs, a.ino, 1);
	return rc;
}

static int create_rc(uint64_t dir, const char *name, bool excl)
{
	struct fs_attr a;
	int rc = fs_create(fs, dir, name, 0644, excl, &h_cred, &a);

	if (!rc)
		fs_forget(fs, a.ino, 1);
	return rc;
}

static void set_size(uint64_t ino, uint64_t size)
{
	struct fs_setattr sa = { .mask = FS_SET_SIZE, .size = size };
	struct fs_attr a;

	ck_assert_int_eq(fs_setattr(fs, ino, &sa, &a), 0);
	ck_assert_uint_eq(a.size, size);
}

static void assert_zero(uint64_t ino, uint64_t off, size_t len)
{
	static uint8_t buf[1 << 20];

	while (len) {
		size_t n = len > sizeof(buf) ? sizeof(buf) : len;
		ssize_t got = fs_read(fs, ino, buf, n, off, 0);

		ck_assert_int_eq(got, (ssize_t)n);
		for (size_t i = 0; i < n; i++)
			ck_assert_msg(buf[i] == 0, "byte %llu is %u, want 0",
				      (unsigned long long)(off + i), buf[i]);
		off += n;
		len -= n;
	}
}

static void assert_pat(uint64_t ino, uint64_t off, size_t len, uint64_t tag)
{
	uint8_t *buf = malloc(len);
	long bad;

	ck_assert_int_eq(fs_read(fs, ino, buf, len, off, 0), (ssize_t)len);
	bad = h_cmp(buf, len, tag, off);
	ck_assert_msg(bad < 0, "pattern %llu wrong at %llu",
		      (unsigned long long)tag, (unsigned long long)(off + bad));
	free(buf);
}

static void write_pat(uint64_t ino, uint64_t off, size_t len, uint64_t tag)
{
	uint8_t *buf = malloc(len);

	h_fill(buf, len, tag, off);
	h_write(fs, ino, buf, len, off);
	free(buf);
}

/* ---- errno values ---- */

START_TEST(test_errnos)
{
	struct fs_attr a;
	char longname[TFS_NAME_MAX + 2];
	uint64_t d = h_mkdir(fs, ROOT, "d"), f = h_create(fs, ROOT, "f");

	h_mkdir(fs, d, "sub");
	ck_assert_int_eq(fs_lookup(fs, ROOT, "nope", &a), -ENOENT);
	ck_assert_int_eq(fs_unlink(fs, ROOT, "nope"), -ENOENT);
	ck_assert_int_eq(fs_rmdir(fs, ROOT, "nope"), -ENOENT);
	ck_assert_int_eq(fs_rename(fs, ROOT, "nope", ROOT, "x", 0), -ENOENT);
	ck_assert_int_eq(create_rc(ROOT, "f", true), -EEXIST);
	ck_assert_int_eq(create_rc(ROOT, "f", false), 0);
	ck_assert_int_eq(mkdir_rc(ROOT, "d"), -EEXIST);
	ck_assert_int_eq(mkdir_rc(ROOT, "f"), -EEXIST);
	ck_assert_int_eq(fs_link(fs, f, ROOT, "d", &a), -EEXIST);
	ck_assert_int_eq(fs_symlink(fs, ROOT, "f", "t", &h_cred, &a), -EEXIST);
	ck_assert_int_eq(fs_rmdir(fs, ROOT, "d"), -ENOTEMPTY);
	ck_assert_int_eq(fs_unlink(fs, ROOT, "d"), -EISDIR);
	ck_assert_int_eq(fs_rmdir(fs, ROOT, "f"), -ENOTDIR);
	ck_assert_int_eq(fs_lookup(fs, f, "x", &a), -ENOTDIR);
	ck_assert_int_eq(create_rc(f, "x", false), -ENOTDIR);
	ck_assert_int_eq(fs_open(fs, d, false), -EISDIR);
	ck_assert_int_eq(fs_open(fs, f, true), -ENOTDIR);
	ck_assert_int_eq(fs_open(fs, f, false), 0);
	ck_assert_int_eq(fs_open(fs, d, true), 0);
	ck_assert_int_lt(fs_write(fs, d, "x", 1, 0, 0), 0);
	/* rename: file over dir, dir over file, dir over non-empty dir */
	ck_assert_int_eq(fs_rename(fs, ROOT, "f", ROOT, "d", 0), -EISDIR);
	h_mkdir(fs, ROOT, "e");
	ck_assert_int_eq(fs_rename(fs, ROOT, "e", ROOT, "f", 0), -ENOTDIR);
	ck_assert_int_eq(fs_rename(fs, ROOT, "e", ROOT, "d", 0), -ENOTEMPTY);
	/* a directory into its own subtree */
	ck_assert_int_eq(fs_rename(fs, ROOT, "d", d, "x", 0), -EINVAL);
	ck_assert_int_eq(fs_rename(fs, ROOT, "d", h_lookup(fs, d, "sub"), "x",
				   0), -EINVAL);
	ck_assert_int_eq(fs_rename(fs, ROOT, "f", ROOT, "g",
				   RENAME_NOREPLACE | RENAME_EXCHANGE), -EINVAL);
	/* names */
	memset(longname, 'n', sizeof(longname));
	longname[TFS_NAME_MAX + 1] = 0;
	ck_assert_int_eq(create_rc(ROOT, longname, true), -ENAMETOOLONG);
	ck_assert_int_eq(mkdir_rc(ROOT, longname), -ENAMETOOLONG);
	ck_assert_int_eq(fs_lookup(fs, ROOT, longname, &a), -ENAMETOOLONG);
	ck_assert_int_eq(fs_rename(fs, ROOT, "f", ROOT, longname, 0),
			 -ENAMETOOLONG);
	ck_assert_int_eq(fs_link(fs, f, ROOT, longname, &a), -ENAMETOOLONG);
	longname[TFS_NAME_MAX] = 0;  /* exactly 255 is fine */
	ck_assert_int_eq(create_rc(ROOT, longname, true), 0);
	ck_assert_uint_ne(h_lookup(fs, ROOT, longname), 0);
	ck_assert_int_eq(fs_unlink(fs, ROOT, longname), 0);
}
END_TEST

START_TEST(test_emlink)
{
	struct fs_attr a;
	char name[32];
	uint64_t f = h_create(fs, ROOT, "f"), d = h_mkdir(fs, ROOT, "links");
	int rc = 0;
	uint32_t i;

	for (i = 1; i < TFS_LINK_MAX; i++) {
		snprintf(name, sizeof(name), "l%u", i);
		rc = fs_link(fs, f, d, name, &a);
		ck_assert_msg(rc == 0, "link %u: %d", i, rc);
		fs_forget(fs, f, 1);
	}
	ck_assert_uint_eq(attr(f).nlink, TFS_LINK_MAX);
	ck_assert_int_eq(fs_link(fs, f, d, "one-more", &a), -EMLINK);
	ck_assert_int_eq(fs_unlink(fs, d, "l1"), 0);
	ck_assert_int_eq(fs_link(fs, f, d, "one-more", &a), 0);
	fs_forget(fs, f, 1);
	remount();
	ck_assert_uint_eq(attr(f).nlink, TFS_LINK_MAX);
}
END_TEST

START_TEST(test_erofs)
{
	struct fs_attr a;
	struct fs_setattr sa = { .mask = FS_SET_MODE, .mode = 0600 };
	uint64_t f = h_create(fs, ROOT, "f");

	h_mkdir(fs, ROOT, "d");
	write_pat(f, 0, 5000, 1);
	h_unmount(fs);
	fs = h_mount(bd, true);
	ck_assert_int_eq(create_rc(ROOT, "g", false), -EROFS);
	ck_assert_int_eq(mkdir_rc(ROOT, "e"), -EROFS);
	ck_assert_int_eq(fs_write(fs, f, "x", 1, 0, 0), -EROFS);
	ck_assert_int_eq(fs_setattr(fs, f, &sa, &a), -EROFS);
	ck_assert_int_eq(fs_unlink(fs, ROOT, "f"), -EROFS);
	ck_assert_int_eq(fs_rmdir(fs, ROOT, "d"), -EROFS);
	ck_assert_int_eq(fs_rename(fs, ROOT, "f", ROOT, "g", 0), -EROFS);
	ck_assert_int_eq(fs_link(fs, f, ROOT, "g", &a), -EROFS);
	ck_assert_int_eq(fs_symlink(fs, ROOT, "s", "f", &h_cred, &a), -EROFS);
	ck_assert_int_eq(fs_setxattr(fs, f, "user.a", "1", 1, 0), -EROFS);
	ck_assert_int_eq(fs_removexattr(fs, f, "user.a"), -EROFS);
	ck_assert_int_eq(fs_fallocate(fs, f, 0, 0, 4096), -EROFS);
	/* reads still work */
	assert_pat(f, 0, 5000, 1);
	h_unmount(fs);
	fs = NULL;
}
END_TEST

/* ---- rename ---- */

START_TEST(test_rename_variants)
{
	uint64_t a = h_create(fs, ROOT, "a"), b = h_create(fs, ROOT, "b");
	uint64_t d1 = h_mkdir(fs, ROOT, "d1"), d2 = h_mkdir(fs, ROOT, "d2");
	uint64_t e, sub;
	struct statvfs st0, st1;

	write_pat(a, 0, 100, 1);
	write_pat(b, 0, 1 << 20, 2);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st0), 0);
	/* over a file: b's inode goes (and its blocks after a CP) */
	ck_assert_int_eq(fs_rename(fs, ROOT, "a", ROOT, "b", 0), 0);
	ck_assert_uint_eq(h_lookup(fs, ROOT, "b"), a);
	ck_assert_uint_eq(h_lookup(fs, ROOT, "a"), 0);
	assert_pat(a, 0, 100, 1);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st1), 0);
	ck_assert_uint_gt(st1.f_bfree, st0.f_bfree + 200);
	/* NOREPLACE */
	h_create(fs, ROOT, "c");
	ck_assert_int_eq(fs_rename(fs, ROOT, "b", ROOT, "c", RENAME_NOREPLACE),
			 -EEXIST);
	ck_assert_int_eq(fs_rename(fs, ROOT, "b", ROOT, "n", RENAME_NOREPLACE),
			 0);
	ck_assert_uint_eq(h_lookup(fs, ROOT, "n"), a);
	/* over an empty dir */
	sub = h_mkdir(fs, d1, "sub");
	e = h_mkdir(fs, d2, "empty");
	ck_assert_uint_eq(attr(d2).nlink, 3);
	ck_assert_int_eq(fs_rename(fs, d1, "sub", d2, "empty", 0), 0);
	ck_assert_uint_eq(h_lookup(fs, d2, "empty"), sub);
	ck_assert_uint_eq(attr(d1).nlink, 2);
	ck_assert_uint_eq(attr(d2).nlink, 3);
	ck_assert_uint_eq(lattr(sub, "..").ino, d2);
	(void)e;
	/* EXCHANGE: a file and a directory in different parents */
	ck_assert_int_eq(fs_rename(fs, ROOT, "n", d2, "empty",
				   RENAME_EXCHANGE), 0);
	ck_assert_uint_eq(h_lookup(fs, ROOT, "n"), sub);
	ck_assert_uint_eq(h_lookup(fs, d2, "empty"), a);
	ck_assert_uint_eq(lattr(sub, "..").ino, ROOT);
	ck_assert_uint_eq(attr(d2).nlink, 2);
	ck_assert_int_eq(fs_rename(fs, ROOT, "nope", d2, "empty",
				   RENAME_EXCHANGE), -ENOENT);
	ck_assert_int_eq(fs_rename(fs, ROOT, "n", d2, "nope",
				   RENAME_EXCHANGE), -ENOENT);
	/* to itself, and between two links of one inode: nothing happens */
	ck_assert_int_eq(fs_rename(fs, ROOT, "c", ROOT, "c", 0), 0);
	ck_assert_uint_ne(h_lookup(fs, ROOT, "c"), 0);
	{
		struct fs_attr x;
		uint64_t c = h_lookup(fs, ROOT, "c");
		ck_assert_int_eq(fs_link(fs, c, ROOT, "c2", &x), 0);
		fs_forget(fs, c, 1);
		ck_assert_int_eq(fs_rename(fs, ROOT, "c", ROOT, "c2", 0), 0);
		ck_assert_uint_eq(h_lookup(fs, ROOT, "c"), c);
		ck_assert_uint_eq(h_lookup(fs, ROOT, "c2"), c);
		ck_assert_uint_eq(attr(c).nlink, 2);
	}
	remount();
	ck_assert_uint_eq(h_lookup(fs, d2, "empty"), a);
	ck_assert_uint_eq(lattr(sub, "..").ino, ROOT);
}
END_TEST

/* ---- link counts ---- */

START_TEST(test_link_counts)
{
	uint64_t d = h_mkdir(fs, ROOT, "d"), f;
	struct fs_attr a;
	uint32_t root0 = attr(ROOT).nlink;

	ck_assert_uint_eq(root0, 3); /* d */
	ck_assert_uint_eq(attr(d).nlink, 2);
	for (int i = 0; i < 5; i++) {
		char n[8];
		snprintf(n, sizeof(n), "s%d", i);
		h_mkdir(fs, d, n);
	}
	f = h_create(fs, d, "file");
	ck_assert_uint_eq(attr(d).nlink, 7);   /* files do not count */
	ck_assert_int_eq(fs_rmdir(fs, d, "s0"), 0);
	ck_assert_uint_eq(attr(d).nlink, 6);
	ck_assert_int_eq(fs_rename(fs, d, "s1", ROOT, "s1", 0), 0);
	ck_assert_uint_eq(attr(d).nlink, 5);
	ck_assert_uint_eq(attr(ROOT).nlink, 4);
	ck_assert_uint_eq(attr(f).nlink, 1);
	ck_assert_int_eq(fs_link(fs, f, ROOT, "f2", &a), 0);
	ck_assert_uint_eq(a.nlink, 2);
	fs_forget(fs, f, 1);
	ck_assert_int_eq(fs_link(fs, d, ROOT, "dl", &a), -EPERM);
	ck_assert_int_eq(fs_unlink(fs, d, "file"), 0);
	ck_assert_uint_eq(attr(f).nlink, 1);
	remount();
	ck_assert_uint_eq(attr(d).nlink, 5);
	ck_assert_uint_eq(attr(ROOT).nlink, 4);
	ck_assert_uint_eq(attr(f).nlink, 1);
}
END_TEST

/* ---- symlinks ---- */

START_TEST(test_symlinks)
{
	struct fs_attr a;
	char buf[TFS_SYMLINK_MAX + 2], big[TFS_SYMLINK_MAX + 2];
	int n;

	ck_assert_int_eq(fs_symlink(fs, ROOT, "s", "some/where", &h_cred, &a),
			 0);
	fs_forget(fs, a.ino, 1);
	ck_assert(S_ISLNK(a.mode));
	ck_assert_uint_eq(a.size, 10);
	/* 0 and a NUL-terminated target, as fuse_reply_readlink wants */
	ck_assert_int_eq(fs_readlink(fs, a.ino, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "some/where");
	ck_assert_int_eq(fs_readlink(fs, a.ino, buf, 10), -ENAMETOOLONG);
	memset(big, 'x', sizeof(big));
	big[TFS_SYMLINK_MAX] = 0;
	ck_assert_int_eq(fs_symlink(fs, ROOT, "big", big, &h_cred, &a), 0);
	fs_forget(fs, a.ino, 1);
	ck_assert_uint_eq(a.size, TFS_SYMLINK_MAX);
	big[TFS_SYMLINK_MAX] = 'x';
	big[TFS_SYMLINK_MAX + 1] = 0;
	ck_assert_int_eq(fs_symlink(fs, ROOT, "big2", big, &h_cred, &a),
			 -ENAMETOOLONG);
	ck_assert_int_lt(fs_write(fs, lattr(ROOT, "s").ino, "x", 1, 0, 0), 0);
	remount();
	ck_assert_int_eq(fs_readlink(fs, lattr(ROOT, "big").ino, buf,
				     sizeof(buf)), 0);
	ck_assert_uint_eq(strlen(buf), TFS_SYMLINK_MAX);
	ck_assert_int_eq(memcmp(buf, big, TFS_SYMLINK_MAX), 0);
	n = fs_readlink(fs, lattr(ROOT, "s").ino, buf, sizeof(buf));
	ck_assert_int_eq(n, 0);
	ck_assert_str_eq(buf, "some/where");
	ck_assert_int_eq(fs_readlink(fs, ROOT, buf, sizeof(buf)), -EINVAL);
}
END_TEST

/* ---- timestamps ---- */

static void set_old_times(uint64_t ino)
{
	struct fs_setattr sa = { .mask = FS_SET_ATIME | FS_SET_MTIME };
	struct fs_attr a;

	sa.atime = (struct timespec){ 1000, 1 };
	sa.mtime = (struct timespec){ 1000, 2 };
	ck_assert_int_eq(fs_setattr(fs, ino, &sa, &a), 0);
}

static bool newer(struct timespec t, time_t than)
{
	return t.tv_sec > than;
}

START_TEST(test_timestamps)
{
	struct fs_setattr sa = { .mask = FS_SET_ATIME | FS_SET_MTIME };
	struct fs_attr a;
	uint64_t f = h_create(fs, ROOT, "f"), d = h_mkdir(fs, ROOT, "d");
	time_t now = time(NULL);

	/* utimens keeps nanoseconds, across a remount too */
	sa.atime = (struct timespec){ 12345, 678901234 };
	sa.mtime = (struct timespec){ 23456, 789012345 };
	ck_assert_int_eq(fs_setattr(fs, f, &sa, &a), 0);
	ck_assert(newer(a.ctime, now - 5));
	remount();
	a = attr(f);
	ck_assert_int_eq(a.atime.tv_sec, 12345);
	ck_assert_int_eq(a.atime.tv_nsec, 678901234);
	ck_assert_int_eq(a.mtime.tv_sec, 23456);
	ck_assert_int_eq(a.mtime.tv_nsec, 789012345);
	/* NOW */
	sa.mask = FS_SET_MTIME_NOW;
	ck_assert_int_eq(fs_setattr(fs, f, &sa, &a), 0);
	ck_assert(newer(a.mtime, now - 5));
	/* a write moves mtime and ctime */
	set_old_times(f);
	h_write(fs, f, "abc", 3, 0);
	a = attr(f);
	ck_assert(newer(a.mtime, now - 5));
	ck_assert(newer(a.ctime, now - 5));
	/* a rename moves both directories' mtime and ctime, and the inode's
	 * ctime */
	set_old_times(ROOT);
	set_old_times(d);
	ck_assert_int_eq(fs_rename(fs, ROOT, "f", d, "g", 0), 0);
	ck_assert(newer(attr(ROOT).mtime, now - 5));
	ck_assert(newer(attr(ROOT).ctime, now - 5));
	ck_assert(newer(attr(d).mtime, now - 5));
	/* link: the inode's ctime, the directory's mtime */
	set_old_times(ROOT);
	sa.mask = FS_SET_CTIME;
	sa.ctime = (struct timespec){ 1000, 0 };
	ck_assert_int_eq(fs_setattr(fs, f, &sa, &a), 0);
	ck_assert_int_eq(attr(f).ctime.tv_sec, 1000);
	ck_assert_int_eq(fs_link(fs, f, ROOT, "l", &a), 0);
	fs_forget(fs, f, 1);
	ck_assert(newer(a.ctime, now - 5));
	ck_assert(newer(attr(ROOT).mtime, now - 5));
	/* truncate moves mtime */
	set_old_times(f);
	set_size(f, 1);
	ck_assert(newer(attr(f).mtime, now - 5));
	/* create moves the parent's mtime */
	set_old_times(d);
	h_create(fs, d, "new");
	ck_assert(newer(attr(d).mtime, now - 5));
	/* a read does not move mtime */
	set_old_times(f);
	{
		char c;
		ck_assert_int_eq(fs_read(fs, f, &c, 1, 0, 0), 1);
	}
	ck_assert_int_eq(attr(f).mtime.tv_sec, 1000);
}
END_TEST

/* Access times: relatime by default, noatime, strictatime, nodiratime,
 * O_NOATIME; an atime update keeps ctime and survives a crash once an
 * fsync has returned. */
static void remount_opts(unsigned atime, bool nodiratime)
{
	struct fs_opts o = { .no_cp_thread = true, .atime = atime,
			     .nodiratime = nodiratime };

	h_unmount(fs);
	h_verify(bd);
	fs = h_mount_opts(bd, &o);
}

static int stop_fill(void *ctx, const char *name, uint64_t ino,
		     unsigned dtype, uint64_t next)
{
	return 1;
}

static void read1(uint64_t ino, unsigned flags)
{
	char c;

	ck_assert_int_eq(fs_read(fs, ino, &c, 1, 0, flags), 1);
}

static bool ts_eq(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* all three times, in seconds */
static void set_t(uint64_t ino, time_t at, time_t mt, time_t ct)
{
	struct fs_setattr sa = {
		.mask = FS_SET_ATIME | FS_SET_MTIME | FS_SET_CTIME,
		.atime = { at, 0 }, .mtime = { mt, 0 }, .ctime = { ct, 0 },
	};
	struct fs_attr a;

	ck_assert_int_eq(fs_setattr(fs, ino, &sa, &a), 0);
}

START_TEST(test_atime)
{
	uint64_t f = h_create(fs, ROOT, "f"), d = h_mkdir(fs, ROOT, "d");
	time_t now = time(NULL), t0 = now - 1000;
	struct fs_attr b;

	h_write(fs, f, "abc", 3, 0);
	h_create(fs, d, "x");
	/* relatime: atime not after mtime: a read moves it, ctime and
	 * mtime stay */
	set_t(f, t0, t0 + 10, t0);
	read1(f, 0);
	b = attr(f);
	ck_assert(newer(b.atime, now - 5));
	ck_assert_int_eq(b.ctime.tv_sec, t0);
	ck_assert_int_eq(b.mtime.tv_sec, t0 + 10);
	/* not after ctime: moved */
	set_t(f, t0, t0 - 10, t0 + 10);
	read1(f, 0);
	ck_assert(newer(attr(f).atime, now - 5));
	/* after both, and recent: reads leave it */
	set_t(f, t0, t0 - 10, t0 - 10);
	read1(f, 0);
	read1(f, 0);
	ck_assert_int_eq(attr(f).atime.tv_sec, t0);
	/* a day old: moved */
	set_t(f, now - 25 * 3600, now - 26 * 3600, now - 26 * 3600);
	read1(f, 0);
	ck_assert(newer(attr(f).atime, now - 5));
	/* a write moves mtime: the next read moves atime */
	set_t(f, t0, t0 - 10, t0 - 10);
	h_write(fs, f, "d", 1, 3);
	read1(f, 0);
	ck_assert(newer(attr(f).atime, now - 5));
	/* O_NOATIME: not moved even when due */
	set_t(f, t0, t0 + 10, t0 + 10);
	read1(f, FS_READ_NOATIME);
	ck_assert_int_eq(attr(f).atime.tv_sec, t0);
	/* a listing from the start moves a directory's atime; a
	 * continued one does not */
	set_t(d, t0, t0 + 10, t0 + 10);
	ck_assert_int_eq(fs_readdir(fs, d, 2, stop_fill, NULL), 0);
	ck_assert_int_eq(attr(d).atime.tv_sec, t0);
	ck_assert_int_eq(fs_readdir(fs, d, 0, stop_fill, NULL), 0);
	b = attr(d);
	ck_assert(newer(b.atime, now - 5));
	ck_assert_int_eq(b.ctime.tv_sec, t0 + 10);
	/* the update is logged: an fsync keeps it through a crash */
	ck_assert_int_eq(fs_fsync(fs, f, false), 0);
	fs_abandon(fs);
	fs = h_mount(bd, false);
	ck_assert(ts_eq(attr(d).atime, b.atime));
	ck_assert(ts_eq(attr(d).ctime, b.ctime));

	/* noatime: never */
	remount_opts(FS_ATIME_NOATIME, false);
	set_t(f, t0, t0 + 10, t0 + 10);
	read1(f, 0);
	ck_assert_int_eq(attr(f).atime.tv_sec, t0);
	set_t(d, t0, t0 + 10, t0 + 10);
	ck_assert_int_eq(fs_readdir(fs, d, 0, stop_fill, NULL), 0);
	ck_assert_int_eq(attr(d).atime.tv_sec, t0);
	/* strictatime: every read */
	remount_opts(FS_ATIME_STRICT, false);
	set_t(f, t0, t0 - 10, t0 - 10);
	read1(f, 0);
	ck_assert(newer(attr(f).atime, now - 5));
	/* nodiratime: files yes, directories no */
	remount_opts(FS_ATIME_RELATIME, true);
	set_t(d, t0, t0 + 10, t0 + 10);
	ck_assert_int_eq(fs_readdir(fs, d, 0, stop_fill, NULL), 0);
	ck_assert_int_eq(attr(d).atime.tv_sec, t0);
	set_t(f, t0, t0 + 10, t0 + 10);
	read1(f, 0);
	ck_assert(newer(attr(f).atime, now - 5));
	/* read-only: never */
	set_t(f, t0, t0 + 10, t0 + 10);
	h_unmount(fs);
	fs = h_mount(bd, true);
	read1(f, 0);
	ck_assert_int_eq(attr(f).atime.tv_sec, t0);
}
END_TEST

/* ---- sizes, holes, big offsets ---- */

START_TEST(test_truncate)
{
	uint64_t f = h_create(fs, ROOT, "f");

	write_pat(f, 0, 10000, 7);
	set_size(f, 3000);
	assert_pat(f, 0, 3000, 7);
	{
		char c;
		ck_assert_int_eq(fs_read(fs, f, &c, 1, 3000, 0), 0);
	}
	set_size(f, 20000);
	assert_pat(f, 0, 3000, 7);
	assert_zero(f, 3000, 17000);   /* the old tail must not come back */
	set_size(f, 0);
	ck_assert_uint_eq(attr(f).size, 0);
	write_pat(f, 4096 * 300, 5000, 8);  /* needs an indirect block */
	set_size(f, 4096 * 300 + 100);
	set_size(f, 4096 * 400);
	assert_zero(f, 0, 4096 * 300);
	assert_pat(f, 4096 * 300, 100, 8);
	assert_zero(f, 4096 * 300 + 100, 4096 * 100 - 100);
	remount();
	assert_pat(f, 4096 * 300, 100, 8);
	assert_zero(f, 4096 * 300 + 100, 4096 * 100 - 100);
	ck_assert_uint_eq(attr(f).size, 4096 * 400);
}
END_TEST

START_TEST(test_sparse)
{
	uint64_t f = h_create(fs, ROOT, "f");
	uint8_t buf[8192];
	struct fs_attr a;

	write_pat(f, 1 << 20, 100, 3);
	a = attr(f);
	ck_assert_uint_eq(a.size, (1 << 20) + 100);
	ck_assert_uint_le(a.blocks, 8 * 8);   /* one data block + indirects */
	assert_zero(f, 0, 1 << 20);
	assert_pat(f, 1 << 20, 100, 3);
	/* a read across EOF is short, at EOF empty */
	ck_assert_int_eq(fs_read(fs, f, buf, sizeof(buf), (1 << 20) + 50, 0), 50);
	ck_assert_int_eq(fs_read(fs, f, buf, sizeof(buf), (1 << 20) + 100, 0), 0);
	ck_assert_int_eq(fs_read(fs, f, buf, sizeof(buf), 1ull << 40, 0), 0);
}
END_TEST

START_TEST(test_write_5g)
{
	uint64_t f = h_create(fs, ROOT, "f"), off = 5ull << 30;

	write_pat(f, off, 4096, 5);
	write_pat(f, off - 10, 20, 6);   /* across a block boundary */
	ck_assert_uint_eq(attr(f).size, off + 4096);
	assert_pat(f, off - 10, 20, 6);
	assert_pat(f, off + 10, 4086, 5);
	assert_zero(f, off - 8192, 8182);
	remount();
	assert_pat(f, off + 10, 4086, 5);
	ck_assert_uint_eq(attr(f).size, off + 4096);
	ck_assert_uint_le(attr(f).blocks, 10 * 8);
}
END_TEST

START_TEST(test_seek_data_hole)
{
	uint64_t f = h_create(fs, ROOT, "f"), M = 1 << 20;

	write_pat(f, 0, 4096, 1);
	write_pat(f, M, 4096, 2);
	set_size(f, 4 * M);
	ck_assert_int_eq(fs_lseek(fs, f, 0, SEEK_DATA), 0);
	ck_assert_int_eq(fs_lseek(fs, f, 0, SEEK_HOLE), 4096);
	ck_assert_int_eq(fs_lseek(fs, f, 100, SEEK_HOLE), 4096);
	ck_assert_int_eq(fs_lseek(fs, f, 4096, SEEK_DATA), M);
	ck_assert_int_eq(fs_lseek(fs, f, 5000, SEEK_DATA), M);
	ck_assert_int_eq(fs_lseek(fs, f, M + 1, SEEK_DATA), M + 1);
	ck_assert_int_eq(fs_lseek(fs, f, M, SEEK_HOLE), M + 4096);
	ck_assert_int_eq(fs_lseek(fs, f, M + 4096, SEEK_DATA), -ENXIO);
	ck_assert_int_eq(fs_lseek(fs, f, 2 * M, SEEK_HOLE), 2 * M);
	ck_assert_int_eq(fs_lseek(fs, f, 4 * M, SEEK_HOLE), -ENXIO);
	ck_assert_int_eq(fs_lseek(fs, f, 4 * M, SEEK_DATA), -ENXIO);
	/* data up to EOF: the hole is at EOF */
	set_size(f, M + 4096);
	ck_assert_int_eq(fs_lseek(fs, f, M, SEEK_HOLE), M + 4096);
	remount();
	ck_assert_int_eq(fs_lseek(fs, f, 4096, SEEK_DATA), M);
	ck_assert_int_eq(fs_lseek(fs, f, 0, SEEK_HOLE), 4096);
}
END_TEST

START_TEST(test_fallocate)
{
	uint64_t f = h_create(fs, ROOT, "f"), M = 1 << 20;
	struct statvfs st0, st1;

	/* mode 0 extends the size; the range reads as zeros */
	ck_assert_int_eq(fs_fallocate(fs, f, 0, 0, M), 0);
	ck_assert_uint_eq(attr(f).size, M);
	assert_zero(f, 0, M);
	/* KEEP_SIZE does not */
	ck_assert_int_eq(fs_fallocate(fs, f, FALLOC_FL_KEEP_SIZE, M, M), 0);
	ck_assert_uint_eq(attr(f).size, M);
	/* PUNCH_HOLE|KEEP_SIZE zeroes, keeps size, frees (after a CP) */
	write_pat(f, 0, M, 9);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st0), 0);
	ck_assert_int_eq(fs_fallocate(fs, f, FALLOC_FL_PUNCH_HOLE |
				      FALLOC_FL_KEEP_SIZE, 4096 + 100,
				      64 * 4096), 0);
	ck_assert_uint_eq(attr(f).size, M);
	assert_pat(f, 0, 4096 + 100, 9);
	assert_zero(f, 4096 + 100, 64 * 4096);
	assert_pat(f, 65 * 4096 + 100, M - 65 * 4096 - 100, 9);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st1), 0);
	ck_assert_uint_ge(st1.f_bfree, st0.f_bfree + 60);
	/* ZERO_RANGE zeroes and may extend */
	ck_assert_int_eq(fs_fallocate(fs, f, FALLOC_FL_ZERO_RANGE, 10, 20), 0);
	assert_pat(f, 0, 10, 9);
	assert_zero(f, 10, 20);
	assert_pat(f, 30, 4096 + 70, 9);
	ck_assert_int_eq(fs_fallocate(fs, f, FALLOC_FL_ZERO_RANGE, M - 10,
				      100), 0);
	ck_assert_uint_eq(attr(f).size, M + 90);
	assert_zero(f, M - 10, 100);
	ck_assert_int_eq(fs_fallocate(fs, f, FALLOC_FL_ZERO_RANGE |
				      FALLOC_FL_KEEP_SIZE, M, 4 * M), 0);
	ck_assert_uint_eq(attr(f).size, M + 90);
	/* others are not supported */
	ck_assert_int_eq(fs_fallocate(fs, f, FALLOC_FL_PUNCH_HOLE, 0, 4096),
			 -EOPNOTSUPP);
	ck_assert_int_eq(fs_fallocate(fs, f, FALLOC_FL_COLLAPSE_RANGE, 0,
				      4096), -EOPNOTSUPP);
	ck_assert_int_eq(fs_fallocate(fs, f, FALLOC_FL_INSERT_RANGE, 0, 4096),
			 -EOPNOTSUPP);
	ck_assert_int_eq(fs_fallocate(fs, f, 0x4000, 0, 4096), -EOPNOTSUPP);
	remount();
	ck_assert_uint_eq(attr(f).size, M + 90);
	assert_zero(f, 4096 + 100, 64 * 4096);
	assert_pat(f, 30, 4096 + 70, 9);
}
END_TEST

/* ---- xattrs ---- */

START_TEST(test_xattrs)
{
	uint64_t f = h_create(fs, ROOT, "f");
	char buf[512], big[2000];
	ssize_t n;

	ck_assert_int_eq(fs_getxattr(fs, f, "user.a", buf, sizeof(buf)),
			 -ENODATA);
	ck_assert_int_eq(fs_listxattr(fs, f, buf, sizeof(buf)), 0);
	ck_assert_int_eq(fs_setxattr(fs, f, "user.a", "v1", 2, XATTR_REPLACE),
			 -ENODATA);
	ck_assert_int_eq(fs_setxattr(fs, f, "user.a", "v1", 2, XATTR_CREATE),
			 0);
	ck_assert_int_eq(fs_setxattr(fs, f, "user.a", "v2", 2, XATTR_CREATE),
			 -EEXIST);
	ck_assert_int_eq(fs_setxattr(fs, f, "user.a", "val3", 4,
				     XATTR_REPLACE), 0);
	ck_assert_int_eq(fs_setxattr(fs, f, "user.b", "", 0, 0), 0);
	ck_assert_int_eq(fs_getxattr(fs, f, "user.a", NULL, 0), 4);
	ck_assert_int_eq(fs_getxattr(fs, f, "user.a", buf, 3), -ERANGE);
	ck_assert_int_eq(fs_getxattr(fs, f, "user.a", buf, 4), 4);
	ck_assert_mem_eq(buf, "val3", 4);
	ck_assert_int_eq(fs_getxattr(fs, f, "user.b", buf, sizeof(buf)), 0);
	/* list: "user.a\0user.b\0" in some order */
	n = fs_listxattr(fs, f, NULL, 0);
	ck_assert_int_eq(n, 14);
	ck_assert_int_eq(fs_listxattr(fs, f, buf, 13), -ERANGE);
	ck_assert_int_eq(fs_listxattr(fs, f, buf, sizeof(buf)), 14);
	ck_assert(!memcmp(buf, "user.a\0user.b\0", 14) ||
		  !memcmp(buf, "user.b\0user.a\0", 14));
	h_fill(big, sizeof(big), 4, 0);
	ck_assert_int_eq(fs_setxattr(fs, f, "user.big", big, sizeof(big), 0),
			 0);
	ck_assert_int_eq(fs_setxattr(fs, f, "", "x", 1, 0) < 0, 1);
	/* POSIX ACLs would not be enforced: refused, read as absent */
	ck_assert_int_eq(fs_setxattr(fs, f, "system.posix_acl_access", "x", 1,
				     0), -EOPNOTSUPP);
	ck_assert_int_eq(fs_getxattr(fs, f, "system.posix_acl_access", buf,
				     sizeof(buf)), -ENODATA);
	ck_assert_int_eq(fs_setxattr(fs, f, "user.a", "x", 1, 4), -EINVAL);
	ck_assert_int_eq(fs_removexattr(fs, f, "user.nope"), -ENODATA);
	ck_assert_int_eq(fs_removexattr(fs, f, "user.b"), 0);
	ck_assert_int_eq(fs_getxattr(fs, f, "user.b", buf, sizeof(buf)),
			 -ENODATA);
	/* on a directory too */
	ck_assert_int_eq(fs_setxattr(fs, ROOT, "user.d", "dd", 2, 0), 0);
	remount();
	ck_assert_int_eq(fs_getxattr(fs, f, "user.a", buf, sizeof(buf)), 4);
	ck_assert_mem_eq(buf, "val3", 4);
	{
		char got[2000];
		ck_assert_int_eq(fs_getxattr(fs, f, "user.big", got,
					     sizeof(got)), 2000);
		ck_assert_int_eq(memcmp(got, big, 2000), 0);
	}
	ck_assert_int_eq(fs_listxattr(fs, f, buf, sizeof(buf)), 16);
	ck_assert_int_eq(fs_getxattr(fs, ROOT, "user.d", buf, sizeof(buf)), 2);
}
END_TEST

/* ---- readdir ---- */

struct rd {
	char **names;
	uint64_t *inos;
	unsigned *types;
	size_t n, cap, stop_after, taken;
	uint64_t cookie;
};

static int rd_fill(void *ctx, const char *name, uint64_t ino, unsigned dtype,
		   uint64_t next)
{
	struct rd *r = ctx;

	if (r->stop_after && r->taken == r->stop_after)
		return 1;
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 256;
		r->names = realloc(r->names, r->cap * sizeof(*r->names));
		r->inos = realloc(r->inos, r->cap * sizeof(*r->inos));
		r->types = realloc(r->types, r->cap * sizeof(*r->types));
	}
	r->types[r->n] = dtype;
	r->names[r->n] = strdup(name);
	r->inos[r->n++] = ino;
	r->taken++;
	r->cookie = next;
	return 0;
}

/* All entries, in chunks of chunk, resuming from cookies. */
static void read_dir(uint64_t dir, size_t chunk, struct rd *r)
{
	size_t before;

	memset(r, 0, sizeof(*r));
	r->stop_after = chunk;
	do {
		before = r->n;
		r->taken = 0;
		ck_assert_int_eq(fs_readdir(fs, dir, r->cookie, rd_fill, r), 0);
	} while (r->n > before);
}

static void rd_free(struct rd *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->names[i]);
	free(r->names);
	free(r->inos);
	free(r->types);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_listing(uint64_t dir, size_t chunk, unsigned n)
{
	struct rd r;

	read_dir(dir, chunk, &r);
	ck_assert_uint_eq(r.n, n + 2);
	ck_assert_str_eq(r.names[0], ".");
	ck_assert_str_eq(r.names[1], "..");
	qsort(r.names + 2, r.n - 2, sizeof(char *), cmp_str);
	for (size_t i = 3; i < r.n; i++)
		ck_assert_msg(strcmp(r.names[i - 1], r.names[i]),
			      "%s listed twice", r.names[i]);
	rd_free(&r);
}

START_TEST(test_readdir_cookies)
{
	uint64_t d = h_mkdir(fs, ROOT, "d");
	char name[32];
	struct rd r;
	unsigned seen_old = 0;

	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "entry-%d", i);
		h_create(fs, d, name);
	}
	for (size_t chunk = 1; chunk <= 301; chunk += 50)
		check_listing(d, chunk, 300);
	/* changes between chunks: entries neither added nor removed come
	 * exactly once */
	memset(&r, 0, sizeof(r));
	r.stop_after = 20;
	for (int round = 0;; round++) {
		size_t before = r.n;

		r.taken = 0;
		ck_assert_int_eq(fs_readdir(fs, d, r.cookie, rd_fill, &r), 0);
		if (r.n == before)
			break;
		snprintf(name, sizeof(name), "new-%d", round);
		h_create(fs, d, name);
		snprintf(name, sizeof(name), "entry-%d", 299 - round);
		ck_assert_int_eq(fs_unlink(fs, d, name), 0);
	}
	qsort(r.names, r.n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < r.n; i++) {
		if (i && !strcmp(r.names[i], r.names[i - 1]))
			ck_abort_msg("%s listed twice", r.names[i]);
		if (!strncmp(r.names[i], "entry-", 6))
			seen_old++;
	}
	/* entry-0 .. entry-(299-rounds) are never removed: all seen */
	ck_assert_uint_ge(seen_old, 300 - 20);
	rd_free(&r);
	/* dtype and ino are right */
	read_dir(ROOT, 0, &r);
	ck_assert_uint_eq(r.n, 3);
	ck_assert_str_eq(r.names[2], "d");
	ck_assert_uint_eq(r.inos[2], d);
	ck_assert_uint_eq(r.types[0], DT_DIR);
	ck_assert_uint_eq(r.types[2], DT_DIR);
	ck_assert_uint_eq(r.inos[0], ROOT);
	rd_free(&r);
	read_dir(d, 0, &r);
	ck_assert_uint_eq(r.inos[1], ROOT);   /* ".." */
	for (size_t i = 2; i < r.n; i++)
		ck_assert_uint_eq(r.types[i], DT_REG);
	rd_free(&r);
}
END_TEST

START_TEST(test_readdir_20000)
{
	uint64_t d = h_mkdir(fs, ROOT, "big");
	char name[64];
	const unsigned N = 20000;

	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "file-with-a-longish-name-%05u", i);
		h_create(fs, d, name);
	}
	check_listing(d, 100, N);
	remount();
	check_listing(d, 997, N);
	for (unsigned i = 0; i < N; i += 7) {
		snprintf(name, sizeof(name), "file-with-a-longish-name-%05u", i);
		ck_assert_uint_ne(h_lookup(fs, d, name), 0);
	}
	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "file-with-a-longish-name-%05u", i);
		ck_assert_int_eq(fs_unlink(fs, d, name), 0);
	}
	check_listing(d, 100, 0);
	ck_assert_int_eq(fs_rmdir(fs, ROOT, "big"), 0);
}
END_TEST

/* ---- orphans ---- */

START_TEST(test_orphan_freed_at_forget)
{
	struct fs_attr a;
	struct statvfs st0, st1, st2;

	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st0), 0);
	ck_assert_int_eq(fs_create(fs, ROOT, "f", 0644, true, &h_cred, &a), 0);
	write_pat(a.ino, 0, 4 << 20, 11);
	ck_assert_int_eq(fs_unlink(fs, ROOT, "f"), 0);
	ck_assert_uint_eq(h_lookup(fs, ROOT, "f"), 0);
	/* still open: readable and writable */
	assert_pat(a.ino, 0, 4 << 20, 11);
	write_pat(a.ino, 100, 100, 12);
	ck_assert_uint_eq(attr(a.ino).nlink, 0);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st1), 0);
	ck_assert_uint_lt(st1.f_bfree + 1000, st0.f_bfree);  /* still held */
	fs_forget(fs, a.ino, 1);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st2), 0);
	ck_assert_uint_ge(st2.f_bfree + 4, st0.f_bfree);
	ck_assert_int_eq(fs_getattr(fs, a.ino, &a) < 0, 1);
}
END_TEST

START_TEST(test_orphan_after_crash)
{
	struct fs_attr a;
	struct statvfs st0, st1;

	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st0), 0);
	ck_assert_int_eq(fs_create(fs, ROOT, "f", 0644, true, &h_cred, &a), 0);
	write_pat(a.ino, 0, 2 << 20, 11);
	ck_assert_int_eq(fs_unlink(fs, ROOT, "f"), 0);
	ck_assert_int_eq(fs_cp(fs), 0);   /* the orphan is on disk */
	fs_abandon(fs);                    /* crash while it is open */
	fs = NULL;
	h_verify(bd);
	fs = h_mount(bd, false);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st1), 0);
	ck_assert_uint_ge(st1.f_bfree + 4, st0.f_bfree);
}
END_TEST

/* An orphan still referenced at unmount goes at unmount; a file with
 * another link stays. */
START_TEST(test_orphan_at_unmount)
{
	struct fs_attr a, b;
	struct statvfs st0, st1;

	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st0), 0);
	ck_assert_int_eq(fs_create(fs, ROOT, "f", 0644, true, &h_cred, &a), 0);
	write_pat(a.ino, 0, 2 << 20, 13);
	ck_assert_int_eq(fs_create(fs, ROOT, "g", 0644, true, &h_cred, &b), 0);
	write_pat(b.ino, 0, 8192, 14);
	ck_assert_int_eq(fs_link(fs, b.ino, ROOT, "g2", &b), 0);
	ck_assert_int_eq(fs_unlink(fs, ROOT, "f"), 0);
	ck_assert_int_eq(fs_unlink(fs, ROOT, "g"), 0);
	remount();   /* no fs_forget: the kernel's references die with it */
	ck_assert_int_eq(fs_getattr(fs, a.ino, &a) < 0, 1);
	ck_assert_uint_eq(attr(b.ino).nlink, 1);
	assert_pat(b.ino, 0, 8192, 14);
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st1), 0);
	ck_assert_uint_ge(st1.f_bfree + 16, st0.f_bfree);
}
END_TEST

/* ---- ENOSPC ---- */

START_TEST(test_enospc)
{
	static uint8_t buf[1 << 16];
	char name[32];
	int nfiles = 0, rc = 0;
	struct fs_attr a;

	h_unmount(fs);
	bdev_close(bd);
	setup_size(512);
	h_fill(buf, sizeof(buf), 1, 0);
	for (nfiles = 0; nfiles < 1000; nfiles++) {
		uint64_t f;
		ssize_t n = 0;

		snprintf(name, sizeof(name), "f%d", nfiles);
		rc = fs_create(fs, ROOT, name, 0644, true, &h_cred, &a);
		if (rc)
			break;
		f = a.ino;
		fs_forget(fs, f, 1);
		for (uint64_t off = 0; off < (1 << 20); off += sizeof(buf)) {
			n = fs_write(fs, f, buf, sizeof(buf), off, 0);
			if (n != (ssize_t)sizeof(buf))
				break;
		}
		if (n != (ssize_t)sizeof(buf)) {
			ck_assert_msg(n == -ENOSPC || n >= 0, "write: %zd", n);
			rc = -ENOSPC;
			nfiles++;
			break;
		}
	}
	ck_assert_int_eq(rc, -ENOSPC);
	ck_assert_int_lt(nfiles, 1000);
	/* the fs is still sane, and deletes work when full */
	ck_assert_int_eq(fs_cp(fs), 0);
	rc = mkdir_rc(ROOT, "x");
	ck_assert_msg(rc == 0 || rc == -ENOSPC, "mkdir when full: %d", rc);
	for (int i = 0; i < nfiles; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		rc = fs_unlink(fs, ROOT, name);
		ck_assert_msg(rc == 0, "unlink %s when full: %d", name, rc);
	}
	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_cp(fs), 0);
	/* and the space is back */
	ck_assert_int_eq(fs_create(fs, ROOT, "again", 0644, true, &h_cred, &a),
			 0);
	fs_forget(fs, a.ino, 1);
	for (uint64_t off = 0; off < (512 << 10); off += sizeof(buf))
		ck_assert_int_eq(fs_write(fs, a.ino, buf, sizeof(buf), off, 0),
				 sizeof(buf));
	remount();
	ck_assert_uint_eq(attr(a.ino).size, 512 << 10);
}
END_TEST

/* ---- persistence ---- */

static void build_tree(void)
{
	uint64_t d = h_mkdir(fs, ROOT, "dir"), f = h_create(fs, d, "file");
	uint64_t g = h_create(fs, ROOT, "g");
	struct fs_attr a;

	write_pat(f, 0, 100000, 21);
	write_pat(g, 12345, 777, 22);
	ck_assert_int_eq(fs_symlink(fs, d, "sym", "../g", &h_cred, &a), 0);
	fs_forget(fs, a.ino, 1);
	ck_assert_int_eq(fs_link(fs, g, d, "hard", &a), 0);
	fs_forget(fs, g, 1);
	ck_assert_int_eq(fs_setxattr(fs, f, "user.x", "yz", 2, 0), 0);
	h_mkdir(fs, d, "sub");
}

START_TEST(test_persist_unmount)
{
	char *before, *after;

	build_tree();
	before = h_dump_tree(fs);
	remount();
	after = h_dump_tree(fs);
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
}
END_TEST

START_TEST(test_persist_fsync_crash)
{
	char *before, *after;
	uint64_t g, f;

	ck_assert_int_eq(fs_cp(fs), 0);
	build_tree();
	before = h_dump_tree(fs);
	g = h_lookup(fs, ROOT, "g");
	f = h_lookup(fs, h_lookup(fs, ROOT, "dir"), "file");
	ck_assert_int_eq(fs_fsync(fs, g, false), 0);
	ck_assert_int_eq(fs_fsync(fs, f, true), 0);
	fs_abandon(fs);
	fs = NULL;
	h_verify(bd);
	fs = h_mount(bd, false);
	after = h_dump_tree(fs);
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
	/* a write that was never synced may go; a synced one stays */
	write_pat(g, 0, 10, 30);
	ck_assert_int_eq(fs_fsync(fs, g, false), 0);
	write_pat(g, 0, 10, 31);
	fs_abandon(fs);
	fs = h_mount(bd, false);
	{
		uint8_t b[10];
		ck_assert_int_eq(fs_read(fs, g, b, 10, 0, 0), 10);
		ck_assert(h_cmp(b, 10, 30, 0) < 0 || h_cmp(b, 10, 31, 0) < 0);
	}
	/* O_SYNC writes too */
	ck_assert_int_eq(fs_write(fs, g, "SYNC", 4, 0, FS_WRITE_SYNC), 4);
	fs_abandon(fs);
	fs = h_mount(bd, false);
	{
		char b[4];
		ck_assert_int_eq(fs_read(fs, g, b, 4, 0, 0), 4);
		ck_assert_mem_eq(b, "SYNC", 4);
	}
}
END_TEST

/* fs_kill_priv: what a write drops (FUSE_HANDLE_KILLPRIV_V2), kept
 * across a crash by the log (the setattr record carries the kill, so
 * replay clears the bits from the mode of that moment) */
static void set_mode(uint64_t ino, mode_t mode)
{
	struct fs_setattr sa = { .mask = FS_SET_MODE, .mode = mode };
	struct fs_attr a;

	ck_assert_int_eq(fs_setattr(fs, ino, &sa, &a), 0);
}

START_TEST(test_kill_priv)
{
	static const char cap[20] = { 0, 0, 0, 2, 0, 0x20 };
	uint64_t f = h_create(fs, ROOT, "suid");
	uint64_t g = h_create(fs, ROOT, "sgid");
	uint64_t d = h_mkdir(fs, ROOT, "dir");
	char v[32];
	bool changed;

	set_mode(f, 06775);
	set_mode(g, 02764);
	set_mode(d, 02775);
	ck_assert_int_eq(fs_setxattr(fs, f, "security.capability", cap,
				     sizeof(cap), 0), 0);
	/* CAP_FSETID (suidgid false): bits stay, the capability goes */
	ck_assert_int_eq(fs_kill_priv(fs, f, false, &changed), 0);
	ck_assert(changed);
	ck_assert_int_eq(attr(f).mode & 07777, 06775);
	ck_assert_int_eq(fs_getxattr(fs, f, "security.capability", v,
				     sizeof(v)), -ENODATA);
	ck_assert_int_eq(fs_kill_priv(fs, f, false, &changed), 0);
	ck_assert(!changed);
	ck_assert_int_eq(fs_setxattr(fs, f, "security.capability", cap,
				     sizeof(cap), 0), 0);
	ck_assert_int_eq(fs_cp(fs), 0);
	/* without: setuid and a group-executable setgid go */
	ck_assert_int_eq(fs_kill_priv(fs, f, true, &changed), 0);
	ck_assert(changed);
	ck_assert_int_eq(fs_kill_priv(fs, g, true, &changed), 0);
	ck_assert(!changed);   /* setgid without group-exec is no privilege */
	ck_assert_int_eq(fs_kill_priv(fs, d, true, &changed), 0);
	ck_assert(!changed);   /* directories keep setgid */
	ck_assert_int_eq(fs_fsync(fs, f, false), 0);
	fs_abandon(fs);
	fs = h_mount(bd, false);
	ck_assert_int_eq(attr(f).mode & 07777, 0775);
	ck_assert_int_eq(fs_getxattr(fs, f, "security.capability", v,
				     sizeof(v)), -ENODATA);
	ck_assert_int_eq(attr(g).mode & 07777, 02764);
	ck_assert_int_eq(attr(d).mode & 07777, 02775);
	/* a truncate's FS_SET_KILL_SUIDGID, in the same setattr */
	set_mode(g, 06754);
	{
		struct fs_setattr sa = { .mask = FS_SET_SIZE |
					 FS_SET_KILL_SUIDGID, .size = 0 };
		struct fs_attr a;
		ck_assert_int_eq(fs_setattr(fs, g, &sa, &a), 0);
		ck_assert_int_eq(a.mode & 07777, 0754);
	}
}
END_TEST

static Suite *ops_suite(void)
{
	Suite *s = suite_create("ops");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_errnos);
	tcase_add_test(tc, test_emlink);
	tcase_add_test(tc, test_erofs);
	tcase_add_test(tc, test_rename_variants);
	tcase_add_test(tc, test_link_counts);
	tcase_add_test(tc, test_symlinks);
	tcase_add_test(tc, test_timestamps);
	tcase_add_test(tc, test_atime);
	tcase_add_test(tc, test_truncate);
	tcase_add_test(tc, test_sparse);
	tcase_add_test(tc, test_write_5g);
	tcase_add_test(tc, test_seek_data_hole);
	tcase_add_test(tc, test_fallocate);
	tcase_add_test(tc, test_xattrs);
	tcase_add_test(tc, test_readdir_cookies);
	tcase_add_test(tc, test_readdir_20000);
	tcase_add_test(tc, test_orphan_freed_at_forget);
	tcase_add_test(tc, test_orphan_after_crash);
	tcase_add_test(tc, test_orphan_at_unmount);
	tcase_add_test(tc, test_enospc);
	tcase_add_test(tc, test_persist_unmount);
	tcase_add_test(tc, test_persist_fsync_crash);
	tcase_add_test(tc, test_kill_priv);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ops_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
