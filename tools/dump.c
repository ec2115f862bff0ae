/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * twinfs-dump - show what is in an image, read-only.
 *
 *   twinfs-dump [-h] [--json] IMAGE [WHAT]
 *
 * WHAT: super (default; both superblock slots and their CP generations),
 * snapshots, inode N|/PATH, map N|/PATH (the block map of a file),
 * block N (a block's raw bytes, hex).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format.h"
#include "twinfs.h"

static int json;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: twinfs-dump [-h] [--json] IMAGE [WHAT]\n"
		"\n"
		"WHAT is one of:\n"
		"  super            superblock slots and CP generations (default)\n"
		"  snapshots        the snapshot table\n"
		"  inode N|/PATH    an inode by number or path\n"
		"  map N|/PATH      a file's block map: level, index, block, birth\n"
		"  block N          one block's raw content, in hex\n"
		"\n"
		"The image is opened read-only; nothing is written.\n");
}

static void print_slot(unsigned slot, const uint8_t *blk, uint64_t nblocks)
{
	const struct tfs_super *sb = (const void *)blk;
	int rc = fs_super_check(blk, nblocks);
	const char *state = rc == 0 ? "valid" : rc == -EINVAL ? "empty" :
			    rc == -EBADMSG ? "bad checksum" :
			    rc == -EPROTONOSUPPORT ? "other format version" :
			    "damaged";
	if (json) {
		printf("%s{\"slot\": %u, \"state\": \"%s\", \"generation\": %llu, "
		       "\"blocks\": %llu, \"used_blocks\": %llu, \"inodes\": %llu, "
		       "\"log_blocks\": %llu, \"log_seq\": %llu, \"time\": %llu, "
		       "\"label\": \"%.64s\"}", slot ? ", " : "", slot, state,
		       (unsigned long long)get64(sb->s_gen),
		       (unsigned long long)get64(sb->s_nblocks),
		       (unsigned long long)get64(sb->s_used_blocks),
		       (unsigned long long)get64(sb->s_ninodes),
		       (unsigned long long)get64(sb->s_log_blocks),
		       (unsigned long long)get64(sb->s_log_seq),
		       (unsigned long long)get64(sb->s_time), sb->s_label);
		return;
	}
	printf("slot %u: %s\n", slot, state);
	if (rc)
		return;
	printf("  generation   %llu\n", (unsigned long long)get64(sb->s_gen));
	printf("  version      %u\n", get32(sb->s_version));
	printf("  blocks       %llu (%llu used)\n",
	       (unsigned long long)get64(sb->s_nblocks),
	       (unsigned long long)get64(sb->s_used_blocks));
	printf("  inodes       %llu (next %llu)\n",
	       (unsigned long long)get64(sb->s_ninodes),
	       (unsigned long long)get64(sb->s_next_ino));
	printf("  log          %llu blocks, replay from %llu, epoch %llu\n",
	       (unsigned long long)get64(sb->s_log_blocks),
	       (unsigned long long)get64(sb->s_log_seq),
	       (unsigned long long)get64(sb->s_log_epoch));
	printf("  inode file   block %llu, height %u\n",
	       (unsigned long long)get64(sb->s_ifile.i_root.bp_blkno),
	       sb->s_ifile.i_height);
	printf("  map          block %llu, height %u\n",
	       (unsigned long long)get64(sb->s_afile.i_root.bp_blkno),
	       sb->s_afile.i_height);
	printf("  snapshots    table %llu blocks, deadlist %llu entries\n",
	       (unsigned long long)get64(sb->s_sfile.i_blocks),
	       (unsigned long long)get64(sb->s_dfile.i_size));
	printf("  label        %.64s\n", sb->s_label);
}

static int dump_super(struct bdev *bd)
{
	uint8_t blk[TFS_BLOCK_SIZE];
	struct fs_verify_stats st;

	if (json)
		printf("{\"slots\": [");
	for (unsigned s = 0; s < TFS_SB_SLOTS; s++) {
		if (bdev_read(bd, s, blk))
			memset(blk, 0, sizeof(blk));
		print_slot(s, blk, bd->nblocks);
	}
	/* which slot mounts, by the same rule as mount */
	if (fs_verify(bd, NULL, NULL, &st) >= 0) {
		if (json)
			printf("], \"current_generation\": %llu}\n",
			       (unsigned long long)st.gen);
		else
			printf("current: generation %llu (slot %llu)\n",
			       (unsigned long long)st.gen,
			       (unsigned long long)(st.gen % TFS_SB_SLOTS));
	} else if (json) {
		printf("], \"current_generation\": null}\n");
	} else {
		printf("current: no valid superblock\n");
	}
	return 0;
}

static int resolve(struct fs *fs, const char *what, uint64_t *ino)
{
	char *copy, *tok, *save = NULL;
	uint64_t cur = 1;
	int rc = 0;

	if (what[0] != '/') {
		char *end;
		errno = 0;
		*ino = strtoull(what, &end, 0);
		return errno || *end ? -EINVAL : 0;
	}
	copy = strdup(what);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, "/", &save); tok && !rc;
	     tok = strtok_r(NULL, "/", &save)) {
		struct fs_attr a;
		rc = fs_lookup(fs, cur, tok, &a);
		if (!rc)
			cur = a.ino;
	}
	free(copy);
	*ino = cur;
	return rc;
}

static int dump_inode(struct fs *fs, uint64_t ino)
{
	struct fs_attr a;
	int rc = fs_getattr(fs, ino, &a);

	if (rc)
		return rc;
	if (json) {
		printf("{\"ino\": %llu, \"mode\": %u, \"nlink\": %u, \"uid\": %u, "
		       "\"gid\": %u, \"size\": %llu, \"blocks\": %llu, "
		       "\"mtime\": %lld.%09ld, \"ctime\": %lld.%09ld, "
		       "\"generation\": %llu}\n",
		       (unsigned long long)a.ino, (unsigned)a.mode, a.nlink,
		       (unsigned)a.uid, (unsigned)a.gid,
		       (unsigned long long)a.size,
		       (unsigned long long)a.blocks,
		       (long long)a.mtime.tv_sec, a.mtime.tv_nsec,
		       (long long)a.ctime.tv_sec, a.ctime.tv_nsec,
		       (unsigned long long)a.gen);
		return 0;
	}
	printf("inode %llu\n  mode   %06o\n  links  %u\n  owner  %u:%u\n"
	       "  size   %llu\n  blocks %llu (512-byte)\n  mtime  %lld.%09ld\n"
	       "  ctime  %lld.%09ld\n  born   CP %llu\n",
	       (unsigned long long)a.ino, (unsigned)a.mode, a.nlink,
	       (unsigned)a.uid, (unsigned)a.gid, (unsigned long long)a.size,
	       (unsigned long long)a.blocks, (long long)a.mtime.tv_sec,
	       a.mtime.tv_nsec, (long long)a.ctime.tv_sec, a.ctime.tv_nsec,
	       (unsigned long long)a.gen);
	return 0;
}

static int map_cb(void *ctx, unsigned level, uint64_t idx, uint64_t blkno,
		  uint64_t birth)
{
	int *first = ctx;

	if (json)
		printf("%s{\"level\": %u, \"index\": %llu, \"block\": %llu, "
		       "\"birth\": %llu}", *first ? "" : ", ", level,
		       (unsigned long long)idx, (unsigned long long)blkno,
		       (unsigned long long)birth);
	else
		printf("%5u %12llu %12llu %8llu\n", level,
		       (unsigned long long)idx, (unsigned long long)blkno,
		       (unsigned long long)birth);
	*first = 0;
	return 0;
}

static int dump_snapshots(struct fs *fs)
{
	int n = fs_snap_list(fs, NULL, 0);
	struct fs_snap_info *info;

	if (n < 0)
		return n;
	info = calloc((size_t)n + 1, sizeof(*info));
	if (!info)
		return -ENOMEM;
	n = fs_snap_list(fs, info, (size_t)n);
	if (json)
		printf("[");
	else
		printf("%-24s %8s %10s %14s %14s\n", "NAME", "ID", "GEN",
		       "REFERENCED", "UNIQUE");
	for (int i = 0; i < n; i++) {
		if (json)
			printf("%s{\"name\": \"%s\", \"id\": %llu, \"generation\": %llu, "
			       "\"time\": %lld, \"referenced_bytes\": %llu, "
			       "\"unique_bytes\": %llu}", i ? ", " : "",
			       info[i].name, (unsigned long long)info[i].id,
			       (unsigned long long)info[i].gen,
			       (long long)info[i].time.tv_sec,
			       (unsigned long long)info[i].referenced_bytes,
			       (unsigned long long)info[i].unique_bytes);
		else
			printf("%-24s %8llu %10llu %14llu %14llu\n", info[i].name,
			       (unsigned long long)info[i].id,
			       (unsigned long long)info[i].gen,
			       (unsigned long long)info[i].referenced_bytes,
			       (unsigned long long)info[i].unique_bytes);
	}
	if (json)
		printf("]\n");
	free(info);
	return 0;
}

static int dump_block(struct bdev *bd, const char *arg)
{
	uint8_t blk[TFS_BLOCK_SIZE];
	char *end;
	uint64_t n;
	int rc;

	errno = 0;
	n = strtoull(arg, &end, 0);
	if (errno || *end || n >= bd->nblocks) {
		fprintf(stderr, "twinfs-dump: %s: not a block number below %llu\n",
			arg, (unsigned long long)bd->nblocks);
		return -EINVAL;
	}
	rc = bdev_read(bd, n, blk);
	if (rc)
		return rc;
	for (unsigned off = 0; off < TFS_BLOCK_SIZE; off += 16) {
		printf("%04x ", off);
		for (unsigned i = 0; i < 16; i++)
			printf(" %02x", blk[off + i]);
		printf("  ");
		for (unsigned i = 0; i < 16; i++)
			putchar(isprint(blk[off + i]) ? blk[off + i] : '.');
		putchar('\n');
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct fs_opts o = { .ro = true, .no_cp_thread = true };
	const char *what = "super", *arg = NULL;
	struct bdev *bd;
	struct fs *fs = NULL;
	int c, rc;

	while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'h': usage(stdout); return 0;
		case 'V':
			printf("twinfs-dump %s (on-disk format %d)\n",
			       TWINFS_VERSION_STRING, TFS_VERSION);
			return 0;
		case 'j': json = 1; break;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind < 1 || argc - optind > 3) {
		usage(stderr);
		return 2;
	}
	if (argc - optind >= 2)
		what = argv[optind + 1];
	if (argc - optind == 3)
		arg = argv[optind + 2];
	if ((!strcmp(what, "inode") || !strcmp(what, "map") ||
	     !strcmp(what, "block")) != (arg != NULL)) {
		usage(stderr);
		return 2;
	}
	rc = bdev_file_open(argv[optind], true, &bd);
	if (rc) {
		fprintf(stderr, "twinfs-dump: %s: %s\n", argv[optind],
			strerror(-rc));
		return 1;
	}
	if (!strcmp(what, "super")) {
		rc = dump_super(bd);
	} else if (!strcmp(what, "block")) {
		rc = dump_block(bd, arg);
	} else if (!strcmp(what, "snapshots") || !strcmp(what, "inode") ||
		   !strcmp(what, "map")) {
		rc = fs_mount(bd, &o, &fs);
		if (rc) {
			fprintf(stderr, "twinfs-dump: %s: cannot read the file system: %s\n",
				argv[optind], strerror(-rc));
			bdev_close(bd);
			return 1;
		}
		if (!strcmp(what, "snapshots")) {
			rc = dump_snapshots(fs);
		} else {
			uint64_t ino;
			rc = resolve(fs, arg, &ino);
			if (!rc && !strcmp(what, "inode")) {
				rc = dump_inode(fs, ino);
			} else if (!rc) {
				int first = 1;
				if (json)
					printf("[");
				else
					printf("level        index        block    birth\n");
				rc = fs_bmap(fs, ino, map_cb, &first);
				if (json)
					printf("]\n");
			}
		}
		fs_unmount(fs);
	} else {
		fprintf(stderr, "twinfs-dump: unknown WHAT '%s'\n", what);
		usage(stderr);
		bdev_close(bd);
		return 2;
	}
	bdev_close(bd);
	if (rc) {
		fprintf(stderr, "twinfs-dump: %s %s: %s\n", what, arg ? arg : "",
			strerror(-rc));
		return 1;
	}
	return 0;
}
