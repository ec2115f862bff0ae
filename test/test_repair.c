/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_repair.c - damage an image the way disks and bugs do, then check
 * that fs_verify finds it, that fs_repair fixes it, and that the image
 * afterwards mounts, verifies clean, and a second repair has nothing to
 * do.  Block addresses are found through format.h, as twinfs-dump would.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "twinfs.h"

#define NBLOCKS 8192

static struct bdev *bd;
static const struct fs_cred cr = { 0, 0 };
static int quiet_count;

static void quiet(void *ctx, const char *msg)
{
	quiet_count++;
	if (getenv("TWINFS_TEST_VERBOSE"))
		fprintf(stderr, "  %s\n", msg);
}

/* An image with a tree: dirs, a 2 MiB file (indirect blocks), xattrs,
 * a symlink, hard links and a snapshot. */
static void build(void)
{
	struct fs_opts o = { .no_cp_thread = true };
	static char buf[2 << 20];
	struct fs_attr a, d;
	struct fs *fs;

	ck_assert_int_eq(bdev_mem_new(NBLOCKS, &bd), 0);
	ck_assert_int_eq(fs_format(bd, NULL), 0);
	ck_assert_int_eq(fs_mount(bd, &o, &fs), 0);
	ck_assert_int_eq(fs_mknod(fs, 1, "dir", S_IFDIR | 0755, 0, &cr, &d), 0);
	for (int i = 0; i < 200; i++) {
		char n[16];
		snprintf(n, sizeof(n), "f%03d", i);
		ck_assert_int_eq(fs_create(fs, d.ino, n, 0644, true, &cr, &a), 0);
		ck_assert_int_eq(fs_write(fs, a.ino, n, 4, 0, 0), 4);
		fs_forget(fs, a.ino, 1);
	}
	memset(buf, 'B', sizeof(buf));
	ck_assert_int_eq(fs_create(fs, 1, "big", 0644, true, &cr, &a), 0);
	ck_assert_int_eq(fs_write(fs, a.ino, buf, sizeof(buf), 0, 0),
			 (ssize_t)sizeof(buf));
	ck_assert_int_eq(fs_setxattr(fs, a.ino, "user.k", "v", 1, 0), 0);
	ck_assert_int_eq(fs_link(fs, a.ino, d.ino, "big-link", &a), 0);
	fs_forget(fs, a.ino, 2);
	ck_assert_int_eq(fs_symlink(fs, 1, "ln", "dir/f001", &cr, &a), 0);
	ck_assert_int_eq(fs_snap_create(fs, "s"), 0);
	ck_assert_int_eq(fs_unmount(fs), 0);
	ck_assert_int_eq(fs_verify(bd, quiet, NULL, NULL), 0);
}

static void teardown(void)
{
	bdev_close(bd);
}

static uint8_t *blk(uint64_t n)
{
	return bdev_mem_data(bd) + n * TFS_BLOCK_SIZE;
}

static struct tfs_super *super(void)
{
	struct tfs_super *a = (void *)blk(0), *b = (void *)blk(1);

	return get64(a->s_magic) == TFS_MAGIC &&
	       get64(a->s_gen) > get64(b->s_gen) ? a : b;
}

/* Follow a tree to level-0 block idx; return its address. */
static uint64_t lookup(const struct tfs_dinode *d, uint64_t idx,
		       unsigned stop_level)
{
	struct tfs_bptr bp = d->i_root;

	for (int level = d->i_height; level > (int)stop_level; level--) {
		const struct tfs_bptr *e = (const void *)blk(get64(bp.bp_blkno));
		bp = e[(idx >> (7 * (level - 1))) & 127];
	}
	return get64(bp.bp_blkno);
}

static const struct tfs_dinode *dinode(uint64_t ino)
{
	uint64_t b = lookup(&super()->s_ifile, ino / TFS_INODES_PER_BLOCK, 0);

	return (const void *)(blk(b) + (ino % TFS_INODES_PER_BLOCK) * 256);
}

/* The inode number a name has in the root directory. */
static uint64_t root_entry(const char *name)
{
	const struct tfs_dinode *root = dinode(TFS_INO_ROOT);
	uint64_t nb = 1ull << root->i_dirbits;

	for (uint64_t i = 0; i < nb; i++) {
		uint64_t b = lookup(root, i, 0);
		const uint8_t *p = blk(b);
		unsigned off = 16, used = p[6] | p[7] << 8;
		if (!b)
			continue;
		while (off < used) {
			const struct tfs_dirent *e = (const void *)(p + off);
			if (e->e_namelen == strlen(name) &&
			    !memcmp(e->e_name, name, e->e_namelen))
				return get64(e->e_ino);
			off += TFS_DIRENT_LEN(e->e_namelen);
		}
	}
	ck_abort_msg("no %s in the root", name);
	return 0;
}

static void flip(uint64_t b, unsigned byte)
{
	ck_assert_uint_gt(b, 0);
	blk(b)[byte % TFS_BLOCK_SIZE] ^= 0x10;
}

/* Damage must be found; repair must leave a clean, mountable image. */
static void expect_repaired(void)
{
	struct fs_opts o = { .no_cp_thread = true };
	struct fs *fs;
	struct fs_attr a;
	int n;

	quiet_count = 0;
	ck_assert_int_gt(fs_verify(bd, quiet, NULL, NULL), 0);
	n = fs_repair(bd, quiet, NULL);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(fs_verify(bd, quiet, NULL, NULL), 0);
	ck_assert_int_eq(fs_repair(bd, quiet, NULL), 0);   /* nothing left */
	ck_assert_int_eq(fs_mount(bd, &o, &fs), 0);
	ck_assert_int_eq(fs_getattr(fs, 1, &a), 0);
	ck_assert_int_eq(fs_mknod(fs, 1, "after-repair", S_IFREG | 0644, 0,
				  &cr, &a), 0);
	ck_assert_int_eq(fs_unmount(fs), 0);
	ck_assert_int_eq(fs_verify(bd, quiet, NULL, NULL), 0);
}

START_TEST(test_data_bitflip)
{
	build();
	flip(lookup(dinode(root_entry("big")), 3, 0), 100);
	expect_repaired();
}
END_TEST

START_TEST(test_indirect_bitflip)
{
	build();
	flip(lookup(dinode(root_entry("big")), 0, 1), 7);
	expect_repaired();
}
END_TEST

START_TEST(test_inode_block_bitflip)
{
	build();
	flip(lookup(&super()->s_ifile, root_entry("big") / 16, 0), 300);
	expect_repaired();
}
END_TEST

START_TEST(test_directory_bitflip)
{
	build();
	flip(lookup(dinode(root_entry("dir")), 0, 0), 40);
	expect_repaired();
}
END_TEST

START_TEST(test_map_bitflip)
{
	build();
	flip(lookup(&super()->s_afile, 0, 0), 2000);
	expect_repaired();
}
END_TEST

START_TEST(test_zeroed_block)
{
	build();
	memset(blk(lookup(dinode(root_entry("dir")), 0, 0)), 0, TFS_BLOCK_SIZE);
	expect_repaired();
}
END_TEST

START_TEST(test_xattr_block)
{
	build();
	flip(get64(dinode(root_entry("big"))->i_xattr.bp_blkno), 20);
	expect_repaired();
}
END_TEST

/* A lost write: a block reverted to an older version of itself.  Its
 * checksum no longer matches the parent's pointer. */
START_TEST(test_lost_write)
{
	struct fs_opts o = { .no_cp_thread = true };
	uint8_t old[TFS_BLOCK_SIZE];
	struct fs *fs;
	struct fs_attr a;

	build();
	memcpy(old, blk(lookup(dinode(root_entry("big")), 0, 0)), sizeof(old));
	ck_assert_int_eq(fs_mount(bd, &o, &fs), 0);
	ck_assert_int_eq(fs_lookup(fs, 1, "big", &a), 0);
	ck_assert_int_eq(fs_write(fs, a.ino, "CCCC", 4, 0, 0), 4);
	fs_forget(fs, a.ino, 1);
	ck_assert_int_eq(fs_unmount(fs), 0);
	/* the device acknowledged the new block but kept the old bytes */
	memcpy(blk(lookup(dinode(root_entry("big")), 0, 0)), old, sizeof(old));
	expect_repaired();
}
END_TEST

START_TEST(test_superblock_slot)
{
	struct fs_opts o = { .no_cp_thread = true };
	struct fs *fs;

	build();
	((uint8_t *)super())[64] ^= 0x10; /* the newest slot */
	/* a torn superblock write is a normal crash state: the older slot
	 * mounts (an older CP, consistent) and verifies */
	ck_assert_int_eq(fs_verify(bd, quiet, NULL, NULL), 0);
	/* repair says so and its CPs write the slot anew */
	ck_assert_int_ge(fs_repair(bd, quiet, NULL), 1);
	ck_assert_int_eq(fs_repair(bd, quiet, NULL), 0);
	ck_assert_int_eq(fs_mount(bd, &o, &fs), 0);
	ck_assert_int_eq(fs_unmount(fs), 0);
	ck_assert_int_eq(fs_verify(bd, quiet, NULL, NULL), 0);
}
END_TEST

START_TEST(test_wrong_magic)
{
	struct fs_opts o = { .no_cp_thread = true };
	struct fs *fs;

	build();
	memset(blk(0), 0, 8);
	memset(blk(1), 0, 8);
	ck_assert_int_eq(fs_verify(bd, quiet, NULL, NULL), -EINVAL);
	ck_assert_int_eq(fs_mount(bd, &o, &fs), -EINVAL);
	ck_assert_int_lt(fs_repair(bd, quiet, NULL), 0);
}
END_TEST

START_TEST(test_truncated_image)
{
	struct fs_opts o = { .no_cp_thread = true };
	struct fs *fs;

	build();
	bd->nblocks = NBLOCKS / 2; /* the file lost its second half */
	ck_assert_int_lt(fs_verify(bd, quiet, NULL, NULL), 0);
	ck_assert_int_lt(fs_mount(bd, &o, &fs), 0);
	bd->nblocks = NBLOCKS;
}
END_TEST

/* Random garbage in random blocks: never a crash, always repairable or
 * refused with an error. */
START_TEST(test_random_damage)
{
	unsigned seed = 1000 + (unsigned)_i;
	struct fs_opts o = { .no_cp_thread = true };
	struct fs *fs;
	int rc;

	build();
	srand(seed);
	for (int k = 0; k < 8; k++) {
		uint64_t b = 2 + (uint64_t)rand() % (NBLOCKS - 2);
		blk(b)[rand() % TFS_BLOCK_SIZE] ^= (uint8_t)(1 + rand() % 255);
	}
	fs_verify(bd, quiet, NULL, NULL);
	rc = fs_repair(bd, quiet, NULL);
	if (rc >= 0) {
		ck_assert_int_eq(fs_verify(bd, quiet, NULL, NULL), 0);
		ck_assert_int_eq(fs_mount(bd, &o, &fs), 0);
		ck_assert_int_eq(fs_unmount(fs), 0);
	}
}
END_TEST

/* A device that stops writing after `left` writes (power cut). */
struct cut_dev {
	struct bdev *inner;
	long left;
};

static int cut_read(struct bdev *b, uint64_t blkno, void *buf)
{
	return bdev_read(((struct cut_dev *)b->priv)->inner, blkno, buf);
}

static int cut_write(struct bdev *b, uint64_t blkno, const void *buf)
{
	struct cut_dev *c = b->priv;

	if (c->left <= 0)
		return -EIO;
	c->left--;
	return bdev_write(c->inner, blkno, buf);
}

static int cut_flush(struct bdev *b)
{
	return ((struct cut_dev *)b->priv)->left > 0 ? 0 : -EIO;
}

static const struct bdev_ops cut_ops = {
	.read = cut_read, .write = cut_write, .flush = cut_flush,
};

/* A repair killed after any write leaves an image that a new repair
 * still fixes completely. */
START_TEST(test_interrupted_repair)
{
	size_t size = (size_t)NBLOCKS * TFS_BLOCK_SIZE;
	uint8_t *damaged = malloc(size);
	unsigned states = 0;

	build();
	flip(lookup(&super()->s_ifile, root_entry("big") / 16, 0), 300);
	flip(lookup(dinode(root_entry("dir")), 0, 0), 40);
	memcpy(damaged, bdev_mem_data(bd), size);
	for (long cut = 1;; cut++) {
		struct cut_dev cd = { bd, cut };
		struct bdev cbd = { .ops = &cut_ops, .nblocks = NBLOCKS,
				    .priv = &cd };
		int rc;
		memcpy(bdev_mem_data(bd), damaged, size);
		rc = fs_repair(&cbd, quiet, NULL);
		states++;
		ck_assert_int_ge(fs_repair(bd, quiet, NULL), 0);
		ck_assert_int_eq(fs_verify(bd, quiet, NULL, NULL), 0);
		if (rc >= 0)
			break; /* the repair ran to its end within `cut` */
		ck_assert_int_lt(cut, 100000);
	}
	ck_assert_uint_gt(states, 5);
	printf("interrupted repairs checked: %u\n", states);
	free(damaged);
}
END_TEST

static Suite *repair_suite(void)
{
	Suite *s = suite_create("repair");
	TCase *tc = tcase_create("repair");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_data_bitflip);
	tcase_add_test(tc, test_indirect_bitflip);
	tcase_add_test(tc, test_inode_block_bitflip);
	tcase_add_test(tc, test_directory_bitflip);
	tcase_add_test(tc, test_map_bitflip);
	tcase_add_test(tc, test_zeroed_block);
	tcase_add_test(tc, test_xattr_block);
	tcase_add_test(tc, test_lost_write);
	tcase_add_test(tc, test_superblock_slot);
	tcase_add_test(tc, test_wrong_magic);
	tcase_add_test(tc, test_truncated_image);
	tcase_add_loop_test(tc, test_random_damage, 0, 20);
	tcase_add_test(tc, test_interrupted_repair);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(repair_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
