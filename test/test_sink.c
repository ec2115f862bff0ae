/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_sink.c - a CP sink that applies every block to a second memory
 * device and writes the superblock at commit keeps an exact mirror: after
 * each CP the mirror, mounted read-only, holds the primary's tree as of
 * that CP (fsync'd log records are not part of it) and verifies.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "harness.h"

#define ROOT TFS_INO_ROOT

struct mirror {
	struct bdev *bd;
	uint64_t blocks, commits, last_gen;
	bool in_cp;
	int fail_block_at;       /* > 0: that block call fails (error test) */
	bool broken;             /* a block failed: never commit again */
};

static int m_block(void *arg, uint64_t blkno, const void *data)
{
	struct mirror *m = arg;

	if (m->fail_block_at && (int)++m->blocks == m->fail_block_at) {
		m->broken = true;
		return -EIO;
	}
	if (!m->fail_block_at)
		m->blocks++;
	/* W1: the superblock slots come only through commit */
	ck_assert_uint_ge(blkno, TFS_SB_SLOTS);
	ck_assert_uint_lt(blkno, m->bd->nblocks);
	m->in_cp = true;
	return bdev_write(m->bd, blkno, data);
}

static int m_commit(void *arg, uint64_t gen, const void *sb)
{
	struct mirror *m = arg;
	const struct tfs_super *s = sb;
	int rc;

	if (m->broken)
		return -EIO;
	ck_assert_uint_eq(get64(s->s_gen), gen);
	ck_assert_uint_gt(gen, m->last_gen);
	rc = bdev_flush(m->bd);
	if (!rc)
		rc = bdev_write(m->bd, gen % TFS_SB_SLOTS, sb);
	if (!rc)
		rc = bdev_flush(m->bd);
	m->last_gen = gen;
	m->commits++;
	m->in_cp = false;
	return rc;
}

static struct bdev *bd;
static struct fs *fs;
static struct mirror mir;

static void setup(void)
{
	struct fs_sink sink = { m_block, m_commit, &mir };

	h_quiet_log();
	bd = h_image(8192);
	fs = h_mount(bd, false);
	ck_assert_int_eq(fs_cp(fs), 0);
	memset(&mir, 0, sizeof(mir));
	mir.bd = h_image_copy(bd);
	mir.last_gen = fs_generation(fs);
	ck_assert_int_eq(fs_add_sink(fs, &sink), 0);
}

static void teardown(void)
{
	if (fs)
		h_unmount(fs);
	fs = NULL;
	h_verify(bd);
	h_verify(mir.bd);
	bdev_close(mir.bd);
	bdev_close(bd);
}

/* ---- random operations on the primary ---- */

static uint64_t pick_dir(struct h_rng *r, char *path)
{
	static const char *dirs[] = { "", "a", "b", "a/c" };
	int i = (int)(h_rng_next(r) % 4);
	uint64_t ino = ROOT;
	char buf[16], *save, *tok;

	strcpy(path, dirs[i]);
	strcpy(buf, dirs[i]);
	for (tok = strtok_r(buf, "/", &save); tok && ino;
	     tok = strtok_r(NULL, "/", &save))
		ino = h_lookup(fs, ino, tok);
	return ino;
}

static void random_op(struct h_rng *r)
{
	static uint8_t buf[256 << 10];
	char path[16], name[16], name2[16];
	uint64_t dir = pick_dir(r, path), dir2, ino;
	struct fs_attr a;
	size_t len;
	uint64_t off;
	int rc;

	if (!dir)
		dir = ROOT;
	snprintf(name, sizeof(name), "f%u", (unsigned)(h_rng_next(r) % 8));
	ino = h_lookup(fs, dir, name);
	switch (h_rng_next(r) % 10) {
	case 0: case 1: case 2: /* write */
		if (!ino) {
			rc = fs_create(fs, dir, name, 0644, true, &h_cred, &a);
			ck_assert_int_eq(rc, 0);
			fs_forget(fs, a.ino, 1);
			ino = a.ino;
		}
		len = h_rng_next(r) % sizeof(buf);
		off = h_rng_next(r) % (1 << 20);
		h_fill(buf, len, h_rng_next(r), off);
		h_write(fs, ino, buf, len, off);
		break;
	case 3: /* truncate */
		if (ino) {
			struct fs_setattr sa = { .mask = FS_SET_SIZE };
			sa.size = h_rng_next(r) % (1 << 20);
			ck_assert_int_eq(fs_setattr(fs, ino, &sa, &a), 0);
		}
		break;
	case 4: /* unlink */
		if (ino)
			ck_assert_int_eq(fs_unlink(fs, dir, name), 0);
		break;
	case 5: /* rename, maybe over another file */
		dir2 = pick_dir(r, path);
		snprintf(name2, sizeof(name2), "f%u",
			 (unsigned)(h_rng_next(r) % 8));
		if (ino && dir2)
			ck_assert_int_eq(fs_rename(fs, dir, name, dir2, name2,
						   0), 0);
		break;
	case 6: /* link */
		dir2 = pick_dir(r, path);
		snprintf(name2, sizeof(name2), "l%u",
			 (unsigned)(h_rng_next(r) % 8));
		if (ino && dir2 && !h_lookup(fs, dir2, name2)) {
			ck_assert_int_eq(fs_link(fs, ino, dir2, name2, &a), 0);
			fs_forget(fs, ino, 1);
		}
		break;
	case 7: /* directories come and go */
		if (!h_lookup(fs, ROOT, "a"))
			h_mkdir(fs, ROOT, "a");
		else if (!h_lookup(fs, h_lookup(fs, ROOT, "a"), "c"))
			h_mkdir(fs, h_lookup(fs, ROOT, "a"), "c");
		if (!h_lookup(fs, ROOT, "b"))
			h_mkdir(fs, ROOT, "b");
		else if (h_rng_next(r) % 4 == 0)
			(void)fs_rmdir(fs, ROOT, "b"); /* -ENOTEMPTY is fine */
		break;
	case 8: /* xattr */
		if (ino) {
			len = h_rng_next(r) % 300;
			h_fill(buf, len, h_rng_next(r), 0);
			ck_assert_int_eq(fs_setxattr(fs, ino, "user.m", buf,
						     len, 0), 0);
		}
		break;
	case 9: /* fsync: log records, not part of any mirror state */
		if (ino)
			ck_assert_int_eq(fs_fsync(fs, ino, h_rng_next(r) & 1),
					 0);
		break;
	}
}

static void check_mirror(void)
{
	char *want = h_dump_tree(fs), *got;
	struct fs *m;

	ck_assert_int_eq(fs_cp(fs), 0);
	ck_assert_uint_eq(mir.last_gen, fs_generation(fs));
	ck_assert(!mir.in_cp);
	ck_assert_mem_eq(bdev_mem_data(mir.bd) +
			 (mir.last_gen % TFS_SB_SLOTS) * TFS_BLOCK_SIZE,
			 bdev_mem_data(bd) +
			 (mir.last_gen % TFS_SB_SLOTS) * TFS_BLOCK_SIZE,
			 TFS_BLOCK_SIZE);
	h_verify(mir.bd);
	m = h_mount(mir.bd, true);
	{
		struct fs *primary = fs;
		fs = m;   /* h_dump_tree on the mirror */
		got = h_dump_tree(fs);
		fs = primary;
	}
	ck_assert_str_eq(want, got);
	ck_assert_uint_eq(fs_generation(m), fs_generation(fs));
	h_unmount(m);
	h_verify(mir.bd);
	free(want);
	free(got);
}

START_TEST(test_mirror_each_cp)
{
	struct h_rng r;

	h_rng_seed(&r, h_seed_init("test_mirror_each_cp"));
	h_mkdir(fs, ROOT, "a");
	check_mirror();
	for (int cp = 0; cp < 40; cp++) {
		int n = (int)(h_rng_next(&r) % 40);

		for (int i = 0; i < n; i++)
			random_op(&r);
		check_mirror();
	}
	ck_assert_uint_ge(mir.commits, 41);
	ck_assert_uint_gt(mir.blocks, 0);
}
END_TEST

/* An empty CP still commits a new generation the mirror can mount. */
START_TEST(test_mirror_empty_cp)
{
	check_mirror();
	check_mirror();
	h_create(fs, ROOT, "x");
	check_mirror();
}
END_TEST

/* The primary's unmount CP reaches the mirror too. */
START_TEST(test_mirror_unmount)
{
	struct h_rng r;
	char *want, *got;

	h_rng_seed(&r, h_seed_init("test_mirror_unmount"));
	for (int i = 0; i < 100; i++)
		random_op(&r);
	want = h_dump_tree(fs);
	h_unmount(fs);
	fs = h_mount(mir.bd, true);
	got = h_dump_tree(fs);
	ck_assert_str_eq(want, got);
	h_unmount(fs);
	fs = NULL;
	free(want);
	free(got);
}
END_TEST

/* A sink whose block write fails: the mirror keeps its last complete
 * root, and the primary's image is still consistent (teardown verifies). */
START_TEST(test_sink_error)
{
	char *before, *got;
	struct fs *m;
	int rc;

	h_create(fs, ROOT, "kept");
	check_mirror();
	before = h_dump_tree(fs);
	h_create(fs, ROOT, "new");
	h_write(fs, h_lookup(fs, ROOT, "new"), "data", 4, 0);
	mir.blocks = 0;
	mir.fail_block_at = 1;
	rc = fs_cp(fs);
	printf("CP with a failing sink returned %d\n", rc);
	m = h_mount(mir.bd, true);
	{
		struct fs *primary = fs;
		fs = m;
		got = h_dump_tree(fs);
		fs = primary;
	}
	ck_assert_str_eq(before, got);
	h_unmount(m);
	free(before);
	free(got);
	fs_abandon(fs);   /* the fs is in ERROR; nothing more to commit */
	fs = NULL;
}
END_TEST

static Suite *sink_suite(void)
{
	Suite *s = suite_create("sink");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_mirror_each_cp);
	tcase_add_test(tc, test_mirror_empty_cp);
	tcase_add_test(tc, test_mirror_unmount);
	tcase_add_test(tc, test_sink_error);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sink_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
