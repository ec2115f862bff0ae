/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_snap.c - snapshots: freeze, .snapshot browsing, EROFS, exact space
 * return in every delete order, many snapshots, rollback, diff,
 * keep_cps and schedules.  Every test ends with fs_verify.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "twinfs.h"

static struct bdev *bd;
static struct fs *fs;
static struct fs_opts opts;
static const struct fs_cred cr = { 0, 0 };

static void report(void *ctx, const char *msg)
{
	fprintf(stderr, "verify: %s\n", msg);
}

static void setup_size(uint64_t nblocks)
{
	memset(&opts, 0, sizeof(opts));
	opts.no_cp_thread = true;
	ck_assert_int_eq(bdev_mem_new(nblocks, &bd), 0);
	ck_assert_int_eq(fs_format(bd, NULL), 0);
	ck_assert_int_eq(fs_mount(bd, &opts, &fs), 0);
}

static void setup(void)
{
	setup_size(16384);
}

static void teardown(void)
{
	if (fs)
		ck_assert_int_eq(fs_unmount(fs), 0);
	fs = NULL;
	ck_assert_int_eq(fs_verify(bd, report, NULL, NULL), 0);
	bdev_close(bd);
}

static void remount(void)
{
	ck_assert_int_eq(fs_unmount(fs), 0);
	ck_assert_int_eq(fs_verify(bd, report, NULL, NULL), 0);
	ck_assert_int_eq(fs_mount(bd, &opts, &fs), 0);
}

static uint64_t write_file(uint64_t dir, const char *name, char fill,
			   size_t len, uint64_t off)
{
	static char buf[1 << 20];
	struct fs_attr a;
	int rc = fs_create(fs, dir, name, 0644, false, &cr, &a);

	ck_assert_int_eq(rc, 0);
	memset(buf, fill, len);
	ck_assert_int_eq(fs_write(fs, a.ino, buf, len, off, 0), (ssize_t)len);
	fs_forget(fs, a.ino, 1);
	return a.ino;
}

static char first_byte(uint64_t dir, const char *name)
{
	struct fs_attr a;
	char c = 0;

	ck_assert_int_eq(fs_lookup(fs, dir, name, &a), 0);
	ck_assert_int_eq(fs_read(fs, a.ino, &c, 1, 0, 0), 1);
	fs_forget(fs, a.ino, 1);
	return c;
}

static char first_byte_in(struct fs *f, const char *name)
{
	struct fs_attr a;
	char c = 0;

	ck_assert_int_eq(fs_lookup(f, 1, name, &a), 0);
	ck_assert_int_eq(fs_read(f, a.ino, &c, 1, 0, 0), 1);
	fs_forget(f, a.ino, 1);
	return c;
}

static uint64_t free_blocks(void)
{
	struct statvfs st;

	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_int_eq(fs_statfs(fs, &st), 0);
	return st.f_bfree;
}

static uint64_t snap_root(const char *name)
{
	struct fs_attr sd, s;

	ck_assert_int_eq(fs_lookup(fs, 1, ".snapshot", &sd), 0);
	ck_assert_int_eq(fs_lookup(fs, sd.ino, name, &s), 0);
	return s.ino;
}

START_TEST(test_freeze_and_browse)
{
	uint64_t s, ino;
	struct fs_attr a;

	write_file(1, "f", 'a', 10000, 0);
	ck_assert_int_eq(fs_snap_create(fs, "one"), 0);
	write_file(1, "f", 'b', 10000, 0);
	ck_assert_int_eq(fs_unlink(fs, 1, "f") == 0 ? 0 : -1, 0);
	s = snap_root("one");
	ck_assert_int_eq(first_byte(s, "f"), 'a');
	ck_assert_int_eq(fs_lookup(fs, 1, "f", &a), -ENOENT);
	/* read-only, whatever the call */
	ck_assert_int_eq(fs_lookup(fs, s, "f", &a), 0);
	ino = a.ino;
	ck_assert_int_eq(fs_write(fs, ino, "x", 1, 0, 0), -EROFS);
	ck_assert_int_eq(fs_create(fs, s, "new", 0644, true, &cr, &a), -EROFS);
	ck_assert_int_eq(fs_unlink(fs, s, "f"), -EROFS);
	ck_assert_int_eq(fs_setxattr(fs, ino, "user.a", "b", 1, 0), -EROFS);
	ck_assert_int_eq(fs_rename(fs, s, "f", 1, "g", 0), -EROFS);
	fs_forget(fs, ino, 1);
	/* inode numbers are stable across remounts */
	remount();
	ck_assert_uint_eq(snap_root("one"), s);
	ck_assert_int_eq(fs_lookup(fs, s, "f", &a), 0);
	ck_assert_uint_eq(a.ino, ino);
	fs_forget(fs, a.ino, 1);
}
END_TEST

static int count_cb(void *ctx, const char *name, uint64_t ino, unsigned dt,
		    uint64_t next)
{
	int *n = ctx;

	if (!strcmp(name, ".snapshot"))
		n[1]++;
	n[0]++;
	return 0;
}

START_TEST(test_snapdir_hidden)
{
	int n[2] = { 0, 0 };
	struct fs_attr a;

	ck_assert_int_eq(fs_snap_create(fs, "s"), 0);
	ck_assert_int_eq(fs_readdir(fs, 1, 0, count_cb, n), 0);
	ck_assert_int_eq(n[1], 0);  /* not listed by default */
	ck_assert_int_eq(fs_lookup(fs, 1, ".snapshot", &a), 0); /* by path */
	ck_assert(S_ISDIR(a.mode));
	ck_assert_int_eq(fs_mknod(fs, 1, ".snapshot", S_IFDIR | 0755, 0, &cr,
				  &a), -EEXIST);
	opts.snapdir_visible = true;
	remount();
	memset(n, 0, sizeof(n));
	ck_assert_int_eq(fs_readdir(fs, 1, 0, count_cb, n), 0);
	ck_assert_int_eq(n[1], 1);
	memset(n, 0, sizeof(n));
	ck_assert_int_eq(fs_lookup(fs, 1, ".snapshot", &a), 0);
	ck_assert_int_eq(fs_readdir(fs, a.ino, 0, count_cb, n), 0);
	ck_assert_int_eq(n[0], 3); /* . .. s */
}
END_TEST

START_TEST(test_names)
{
	char longname[200];

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	ck_assert_int_eq(fs_snap_create(fs, ""), -EINVAL);
	ck_assert_int_eq(fs_snap_create(fs, "a/b"), -EINVAL);
	ck_assert_int_eq(fs_snap_create(fs, ".."), -EINVAL);
	ck_assert_int_eq(fs_snap_create(fs, longname), -ENAMETOOLONG);
	ck_assert_int_eq(fs_snap_create(fs, "x"), 0);
	ck_assert_int_eq(fs_snap_create(fs, "x"), -EEXIST);
	ck_assert_int_eq(fs_snap_delete(fs, "nope"), -ENOENT);
	ck_assert_int_eq(fs_snap_rollback(fs, "nope", false), -ENOENT);
}
END_TEST

/* Space comes back exactly (within the table's own block) in any order. */
START_TEST(test_space_returns)
{
	static const char *orders[4][3] = {
		{ "s0", "s1", "s2" }, { "s1", "s0", "s2" },
		{ "s2", "s1", "s0" }, { "s1", "s2", "s0" } };
	uint64_t before, after;

	before = free_blocks();
	for (int round = 0; round < 3; round++) {
		char name[16];
		for (int i = 0; i < 4; i++) {
			snprintf(name, sizeof(name), "f%d", i);
			write_file(1, name, (char)('a' + round), 1 << 20,
				   (uint64_t)round * 40960);
		}
		snprintf(name, sizeof(name), "s%d", round);
		ck_assert_int_eq(fs_snap_create(fs, name), 0);
		remount();
	}
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		ck_assert_int_eq(fs_unlink(fs, 1, name), 0);
	}
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(fs_snap_delete(fs, orders[_i][i]), 0);
		remount();
	}
	after = free_blocks();
	/* the snapshot table keeps one block; inode numbers are not reused,
	 * so the inode file may keep one more */
	ck_assert_uint_le(before - after, 3);
	ck_assert_uint_ge(before + 0, after);
}
END_TEST

START_TEST(test_unique_and_referenced)
{
	struct fs_snap_info info[4];
	int n;

	write_file(1, "big", 'a', 1 << 20, 0);
	ck_assert_int_eq(fs_snap_create(fs, "a"), 0);
	write_file(1, "big", 'b', 1 << 20, 0); /* overwrite: a holds 1 MiB */
	ck_assert_int_eq(fs_snap_create(fs, "b"), 0);
	ck_assert_int_eq(fs_cp(fs), 0);
	n = fs_snap_list(fs, info, 4);
	ck_assert_int_eq(n, 2);
	ck_assert_str_eq(info[0].name, "a");
	ck_assert_uint_ge(info[0].referenced_bytes, 1 << 20);
	/* the old data, and the indirect and inode blocks above it */
	ck_assert_uint_ge(info[0].unique_bytes, 1 << 20);
	ck_assert_uint_le(info[0].unique_bytes, (1 << 20) + 8 * 4096);
	ck_assert_uint_eq(info[1].unique_bytes, 0);
	ck_assert_uint_lt(info[0].gen, info[1].gen);
}
END_TEST

START_TEST(test_thousand_snapshots)
{
	char name[32];
	struct fs_snap_info *info = calloc(1100, sizeof(*info));
	uint64_t before = free_blocks();

	ck_assert_ptr_nonnull(info);
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "f%d", i % 37);
		write_file(1, name, (char)i, 4096 * (1 + i % 3), 0);
		snprintf(name, sizeof(name), "snap-%04d", i);
		ck_assert_int_eq(fs_snap_create(fs, name), 0);
	}
	remount();
	ck_assert_int_eq(fs_snap_list(fs, info, 1100), 1000);
	ck_assert_int_eq(first_byte(snap_root("snap-0500"), "f19"), (char)500);
	ck_assert_int_eq(fs_verify(bd, report, NULL, NULL), 0);
	for (int i = 0; i < 1000; i++) {
		/* middle ones first, then the rest */
		int k = (i * 389) % 1000;
		snprintf(name, sizeof(name), "snap-%04d", k);
		ck_assert_int_eq(fs_snap_delete(fs, name), 0);
	}
	for (int i = 0; i < 37; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		ck_assert_int_eq(fs_unlink(fs, 1, name), 0);
	}
	/* 125 blocks of snapshot table stay, plus a few of the inode file */
	ck_assert_uint_le(before - free_blocks(), 125 + 8);
	free(info);
}
END_TEST

START_TEST(test_rollback)
{
	uint64_t at_snap;
	struct fs_attr a;
	struct fs_snap_info info[4];

	write_file(1, "keep", 'A', 1 << 20, 0);
	at_snap = free_blocks();
	ck_assert_int_eq(fs_snap_create(fs, "s0"), 0);
	write_file(1, "keep", 'B', 4096, 0);
	write_file(1, "new", 'B', 1 << 20, 0);
	remount();
	ck_assert_int_eq(fs_snap_create(fs, "s1"), 0);
	ck_assert_int_eq(fs_unlink(fs, 1, "new"), 0);
	write_file(1, "newer", 'C', 8192, 0);
	ck_assert_int_eq(fs_snap_rollback(fs, "s0", false), -EBUSY);
	ck_assert_int_eq(first_byte(1, "keep"), 'B');
	ck_assert_int_eq(fs_snap_rollback(fs, "s0", true), 0);
	ck_assert_int_eq(first_byte(1, "keep"), 'A');
	ck_assert_int_eq(fs_lookup(fs, 1, "new", &a), -ENOENT);
	ck_assert_int_eq(fs_lookup(fs, 1, "newer", &a), -ENOENT);
	ck_assert_int_eq(fs_snap_list(fs, info, 4), 1);
	remount();
	ck_assert_int_eq(first_byte(1, "keep"), 'A');
	ck_assert_int_eq(fs_snap_delete(fs, "s0"), 0);
	ck_assert_uint_le(at_snap - free_blocks(), 3);
	/* the tree still works after a rollback */
	write_file(1, "after", 'D', 5000, 0);
	ck_assert_int_eq(first_byte(1, "after"), 'D');
}
END_TEST

struct diff_out {
	char buf[4096];
};

static int diff_cb(void *ctx, char kind, const char *path, const char *np)
{
	struct diff_out *d = ctx;
	size_t n = strlen(d->buf);

	snprintf(d->buf + n, sizeof(d->buf) - n, "%c %s%s%s\n", kind, path,
		 np ? " -> " : "", np ? np : "");
	return 0;
}

START_TEST(test_diff)
{
	struct diff_out d = { "" };
	struct fs_attr dir;

	ck_assert_int_eq(fs_mknod(fs, 1, "dir", S_IFDIR | 0755, 0, &cr, &dir),
			 0);
	for (int i = 0; i < 40; i++) {
		char n[16];
		snprintf(n, sizeof(n), "f%d", i);
		write_file(dir.ino, n, 'x', 1, 0);
	}
	ck_assert_int_eq(fs_snap_create(fs, "a"), 0);
	write_file(dir.ino, "f3", 'y', 2, 0);
	ck_assert_int_eq(fs_unlink(fs, dir.ino, "f4"), 0);
	ck_assert_int_eq(fs_rename(fs, dir.ino, "f5", 1, "moved", 0), 0);
	write_file(1, "brandnew", 'z', 1, 0);
	ck_assert_int_eq(fs_snap_create(fs, "b"), 0);
	ck_assert_int_eq(fs_snap_diff(fs, "a", "b", diff_cb, &d), 0);
	ck_assert_ptr_nonnull(strstr(d.buf, "M /dir/f3\n"));
	ck_assert_ptr_nonnull(strstr(d.buf, "- /dir/f4\n"));
	ck_assert_ptr_nonnull(strstr(d.buf, "R /dir/f5 -> /moved\n"));
	ck_assert_ptr_nonnull(strstr(d.buf, "+ /brandnew\n"));
	ck_assert_ptr_null(strstr(d.buf, "f6"));  /* unchanged: not listed */
	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(fs_unlink(fs, 1, "brandnew"), 0);
	ck_assert_int_eq(fs_snap_diff(fs, "b", NULL, diff_cb, &d), 0);
	ck_assert_ptr_nonnull(strstr(d.buf, "- /brandnew\n"));
	ck_assert_int_eq(fs_snap_diff(fs, "b", "a", diff_cb, &d), -EINVAL);
}
END_TEST

static time_t fake_now;
static time_t fake_clock(void *arg)
{
	return fake_now;
}

START_TEST(test_keep_cps_and_schedules)
{
	struct fs_snap_info info[64];
	struct fs_attr a;
	char name[32];
	int n, hourly = 0, daily = 0, at = 0;

	fake_now = 1700000000;
	opts.keep_cps = 30;
	opts.sched[0] = 3;
	opts.sched[1] = 2;
	opts.clock = fake_clock;
	remount();
	ck_assert_int_eq(fs_create(fs, 1, "f", 0644, true, &cr, &a), 0);
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "v%02d", i);
		ck_assert_int_eq(fs_write(fs, a.ino, name, 3, 0, 0), 3);
		ck_assert_int_eq(fs_cp(fs), 0);
		fake_now += i < 30 ? 300 : 5;
	}
	n = fs_snap_list(fs, info, 64);
	for (int i = 0; i < n; i++) {
		hourly += !strncmp(info[i].name, "hourly-", 7);
		daily += !strncmp(info[i].name, "daily-", 6);
		at += info[i].name[0] == '@';
	}
	ck_assert_int_eq(hourly, 3);
	ck_assert_int_eq(daily, 2);
	ck_assert_int_ge(at, 5);    /* the CPs of the last 30 s */
	ck_assert_int_le(at, 8);
	/* a file as it was a few CPs ago */
	snprintf(name, sizeof(name), "@%llu",
		 (unsigned long long)info[n - 3].gen);
	if (info[n - 3].name[0] == '@') {
		char c[4] = { 0 };
		struct fs_attr f;
		ck_assert_int_eq(fs_lookup(fs, snap_root(name), "f", &f), 0);
		ck_assert_int_eq(fs_read(fs, f.ino, c, 3, 0, 0), 3);
		ck_assert_int_eq(c[0], 'v');
		fs_forget(fs, f.ino, 1);
	}
	fs_forget(fs, a.ino, 1);
}
END_TEST

/* Who told the kernel of changed .snapshot names, and how often. */
static pthread_mutex_t told_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t told_by, test_thread;  /* test_thread: inval_arg */
static int told, told_here;

static void note_inval_entry(void *arg, uint64_t dir, const char *name)
{
	pthread_mutex_lock(&told_lock);
	told++;
	told_here += pthread_equal(pthread_self(), *(pthread_t *)arg);
	told_by = pthread_self();
	pthread_mutex_unlock(&told_lock);
}

static void note_inval(void *arg, uint64_t ino)
{
}

/* A CP run by a caller (an fsync in a FUSE worker) leaves the names of
 * its snapshots for the CP thread to tell: the kernel takes the
 * directory's lock for each, which a worker must not wait on. */
START_TEST(test_names_told_by_cp_thread)
{
	pthread_t me = pthread_self();
	struct fs_attr a;
	int n = 0;

	/* the fixture's unmount calls the hook after this function ends */
	test_thread = me;
	opts.keep_cps = 30;
	opts.no_cp_thread = false;
	opts.cp_interval_ms = 3600 * 1000;
	opts.inval = note_inval;
	opts.inval_entry = note_inval_entry;
	opts.inval_arg = &test_thread;
	remount();
	ck_assert_int_eq(fs_create(fs, 1, "f", 0644, true, &cr, &a), 0);
	pthread_mutex_lock(&told_lock);  /* mount's own CP: no workers yet */
	told = told_here = 0;
	pthread_mutex_unlock(&told_lock);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(fs_write(fs, a.ino, "abc", 3, 0, 0), 3);
		ck_assert_int_eq(fs_cp(fs), 0);   /* from this thread */
	}
	for (int i = 0; i < 200 && n < 3; i++) {
		usleep(10000);
		pthread_mutex_lock(&told_lock);
		n = told;
		pthread_mutex_unlock(&told_lock);
	}
	pthread_mutex_lock(&told_lock);
	ck_assert_int_ge(told, 3);          /* one @GEN name per CP */
	ck_assert_int_eq(told_here, 0);
	ck_assert(!pthread_equal(told_by, me));
	pthread_mutex_unlock(&told_lock);
	fs_forget(fs, a.ino, 1);
}
END_TEST

/* A device that records every write in order (crash tests below). */
struct rec_dev {
	struct bdev *inner;
	uint64_t *blk;
	uint8_t *data;
	size_t n, cap;
};

static int rec_read(struct bdev *b, uint64_t blkno, void *buf)
{
	struct rec_dev *r = b->priv;

	return bdev_read(r->inner, blkno, buf);
}

static int rec_write(struct bdev *b, uint64_t blkno, const void *buf)
{
	struct rec_dev *r = b->priv;

	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 1024;
		r->blk = realloc(r->blk, r->cap * sizeof(*r->blk));
		r->data = realloc(r->data, r->cap * 4096);
		ck_assert(r->blk && r->data);
	}
	r->blk[r->n] = blkno;
	memcpy(r->data + r->n * 4096, buf, 4096);
	r->n++;
	return bdev_write(r->inner, blkno, buf);
}

static int rec_flush(struct bdev *b)
{
	return 0;
}

static const struct bdev_ops rec_ops = {
	.read = rec_read, .write = rec_write, .flush = rec_flush,
};

/* A crash after any write of a snapshot create, delete or rollback
 * (writes kept in order up to the crash, the last one torn) leaves the
 * old or the new state, and a tree that verifies. */
START_TEST(test_crash_during_snapshot_ops)
{
	size_t size = 16384ull * 4096;
	struct rec_dev rd = { 0 };
	struct bdev recbd = { .ops = &rec_ops, .nblocks = 16384 };
	uint8_t *base = malloc(size);
	unsigned checked = 0;

	write_file(1, "f", 'a', 1 << 20, 0);
	ck_assert_int_eq(fs_snap_create(fs, "base"), 0);
	write_file(1, "f", 'b', 1 << 20, 0);
	ck_assert_int_eq(fs_unmount(fs), 0);
	fs = NULL;
	ck_assert_ptr_nonnull(base);
	rd.inner = bd;
	recbd.priv = &rd;
	ck_assert_int_eq(fs_mount(&recbd, &opts, &fs), 0);
	/* the mount's own CP is not under test: start after it */
	memcpy(base, bdev_mem_data(bd), size);
	rd.n = 0;
	ck_assert_int_eq(fs_snap_create(fs, "two"), 0);
	ck_assert_int_eq(fs_snap_delete(fs, "base"), 0);
	write_file(1, "f", 'c', 8192, 0);
	ck_assert_int_eq(fs_snap_rollback(fs, "two", false), 0);
	ck_assert_int_eq(fs_unmount(fs), 0);
	fs = NULL;
	for (size_t crash = 0; crash <= rd.n; crash++) {
		struct bdev *c;
		struct fs *f2;
		struct fs_snap_info info[4];
		char c0;
		int n;
		ck_assert_int_eq(bdev_mem_new(16384, &c), 0);
		memcpy(bdev_mem_data(c), base, size);
		for (size_t w = 0; w < crash; w++) {
			uint8_t blk[4096];
			memcpy(blk, rd.data + w * 4096, 4096);
			if (w + 1 == crash && crash % 2)
				memset(blk + 512, 0xa5, 4096 - 512); /* torn */
			ck_assert_int_eq(bdev_write(c, rd.blk[w], blk), 0);
		}
		ck_assert_int_eq(fs_mount(c, &opts, &f2), 0);
		n = fs_snap_list(f2, info, 4);
		ck_assert(n == 1 || n == 2);
		ck_assert(n == 2 || !strcmp(info[0].name, "base") ||
			  !strcmp(info[0].name, "two"));
		/* before or after the rollback, never a mix: 'c' was written
		 * after "two" and is either still there or rolled back */
		c0 = first_byte_in(f2, "f");
		ck_assert(c0 == 'b' || c0 == 'c');
		ck_assert_int_eq(fs_unmount(f2), 0);
		ck_assert_int_eq(fs_verify(c, report, NULL, NULL), 0);
		bdev_close(c);
		checked++;
	}
	ck_assert_uint_ge(checked, 8); /* three small CPs: table, map, super */
	printf("snapshot crash states checked: %u\n", checked);
	free(base);
	free(rd.blk);
	free(rd.data);
}
END_TEST

static Suite *snap_suite(void)
{
	Suite *s = suite_create("snap");
	TCase *tc = tcase_create("snap");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_freeze_and_browse);
	tcase_add_test(tc, test_snapdir_hidden);
	tcase_add_test(tc, test_names);
	tcase_add_loop_test(tc, test_space_returns, 0, 4);
	tcase_add_test(tc, test_unique_and_referenced);
	tcase_add_test(tc, test_thousand_snapshots);
	tcase_add_test(tc, test_rollback);
	tcase_add_test(tc, test_diff);
	tcase_add_test(tc, test_keep_cps_and_schedules);
	tcase_add_test(tc, test_names_told_by_cp_thread);
	tcase_add_test(tc, test_crash_during_snapshot_ops);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(snap_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
