/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_image.c - libFuzzer target: damaged images must never crash or
 * hang the verifier, the mount, reads, or the repair.
 *
 * The input is a list of patches applied to a small, populated image made
 * once at start-up: repeated [u16 block][u16 offset][u8 length][bytes].
 * Each run: fs_verify; a read-only mount that walks the tree and reads
 * every file; fs_repair, after which fs_verify must find nothing (or the
 * repair must have refused with an error).  Corpus: test/fuzz/corpus/.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "twinfs.h"

#define NBLOCKS 512

static uint8_t *base;

static void quiet(int level, const char *msg)
{
}

static void build_base(void)
{
	struct fs_opts o = { .no_cp_thread = true };
	struct fs_cred cr = { 0, 0 };
	struct fs_attr a, d;
	struct bdev *bd;
	struct fs *fs;
	char buf[9000];

	fs_set_log(quiet);
	if (bdev_mem_new(NBLOCKS, &bd) || fs_format(bd, NULL) ||
	    fs_mount(bd, &o, &fs))
		abort();
	memset(buf, 'z', sizeof(buf));
	if (fs_mknod(fs, 1, "d", S_IFDIR | 0755, 0, &cr, &d))
		abort();
	for (int i = 0; i < 30; i++) {
		char n[16];
		snprintf(n, sizeof(n), "f%d", i);
		if (fs_create(fs, d.ino, n, 0644, true, &cr, &a) ||
		    fs_write(fs, a.ino, buf, (size_t)(i * 300), 0, 0) < 0)
			abort();
		if (i == 3)
			fs_setxattr(fs, a.ino, "user.k", "v", 1, 0);
	}
	fs_symlink(fs, 1, "ln", "d/f1", &cr, &a);
	fs_snap_create(fs, "s");
	fs_create(fs, 1, "after", 0644, true, &cr, &a);
	fs_write(fs, a.ino, buf, 5000, 70000, 0);
	fs_fsync(fs, a.ino, false); /* leave a log to replay */
	fs_abandon(fs);
	base = malloc((size_t)NBLOCKS * TFS_BLOCK_SIZE);
	memcpy(base, bdev_mem_data(bd), (size_t)NBLOCKS * TFS_BLOCK_SIZE);
	bdev_close(bd);
}

struct walk {
	struct fs *fs;
	int depth;
	int budget;
};

struct names {
	uint64_t ino[512];
	int n;
};

/* The readdir callback runs under the fs lock: only collect here. */
static int fill(void *ctx, const char *name, uint64_t ino, unsigned dt,
		uint64_t next)
{
	struct names *l = ctx;

	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (l->n == 512)
		return 1;
	l->ino[l->n++] = ino;
	return 0;
}

static void walk_dir(struct walk *w, uint64_t dir)
{
	struct names *l = calloc(1, sizeof(*l));
	char buf[4096];

	if (!l)
		return;
	fs_readdir(w->fs, dir, 0, fill, l);
	for (int i = 0; i < l->n && --w->budget > 0; i++) {
		struct fs_attr a;
		if (fs_getattr(w->fs, l->ino[i], &a))
			continue;
		if (S_ISREG(a.mode))
			for (uint64_t off = 0; off < a.size && off < (1 << 20);
			     off += 4096)
				if (fs_read(w->fs, l->ino[i], buf, sizeof(buf),
					    off, 0) <= 0)
					break;
		if (S_ISDIR(a.mode) && w->depth < 8) {
			w->depth++;
			walk_dir(w, l->ino[i]);
			w->depth--;
		}
	}
	free(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fs_opts o = { .ro = true, .no_cp_thread = true };
	struct bdev *bd;
	struct fs *fs;
	size_t i = 0;
	int rc;

	if (!base)
		build_base();
	if (bdev_mem_new(NBLOCKS, &bd))
		return 0;
	memcpy(bdev_mem_data(bd), base, (size_t)NBLOCKS * TFS_BLOCK_SIZE);
	while (i + 5 <= size) {
		uint16_t blk = (uint16_t)(data[i] | data[i + 1] << 8) % NBLOCKS;
		uint16_t off = (uint16_t)(data[i + 2] | data[i + 3] << 8) %
			       TFS_BLOCK_SIZE;
		size_t len = data[i + 4];
		i += 5;
		if (len > size - i)
			len = size - i;
		if (len > TFS_BLOCK_SIZE - off)
			len = TFS_BLOCK_SIZE - off;
		memcpy(bdev_mem_data(bd) + (size_t)blk * TFS_BLOCK_SIZE + off,
		       data + i, len);
		i += len;
	}
	fs_verify(bd, NULL, NULL, NULL);
	if (fs_mount(bd, &o, &fs) == 0) {
		struct walk w = { fs, 0, 2000 };
		walk_dir(&w, 1);
		fs_unmount(fs);
	}
	rc = fs_repair(bd, NULL, NULL);
	if (rc >= 0 && fs_verify(bd, NULL, NULL, NULL) != 0) {
		fprintf(stderr, "repair left problems behind\n");
		abort();
	}
	bdev_close(bd);
	return 0;
}
