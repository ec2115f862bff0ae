/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * harness.c - see harness.h.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format.h"
#include "harness.h"

const struct fs_cred h_cred = { 0, 0 };

/* ---- RNG ---- */

static struct h_rng g_rng;
static uint64_t g_seed;

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void h_rng_seed(struct h_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t h_rng_next(struct h_rng *r)
{
	uint64_t *s = r->s;
	uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

uint64_t h_seed_init(const char *test)
{
	const char *e = getenv("TWINFS_SEED");
	struct timespec ts;

	if (e && *e) {
		g_seed = strtoull(e, NULL, 0);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		g_seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
	}
	h_rng_seed(&g_rng, g_seed);
	printf("%s: seed %llu (replay with TWINFS_SEED=%llu)\n", test,
	       (unsigned long long)g_seed, (unsigned long long)g_seed);
	fflush(stdout);
	return g_seed;
}

uint64_t h_seed(void)
{
	return g_seed;
}

uint64_t h_rand(void)
{
	return h_rng_next(&g_rng);
}

uint64_t h_rand_below(uint64_t n)
{
	return h_rand() % n;
}

static void quiet_log(int level, const char *msg)
{
	if (level <= 4) /* warnings and errors */
		fprintf(stderr, "twinfs: %s\n", msg);
}

void h_quiet_log(void)
{
	const char *v = getenv("TWINFS_VERBOSE");

	if (!v || !*v)
		fs_set_log(quiet_log);
}

/* ---- patterns ---- */

uint8_t h_pat_byte(uint64_t tag, uint64_t off)
{
	uint64_t x = tag * 0x9e3779b97f4a7c15ull + (off >> 3);

	x = splitmix(&x);
	return (uint8_t)(x >> ((off & 7) * 8));
}

void h_fill(void *buf, size_t len, uint64_t tag, uint64_t off)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = h_pat_byte(tag, off + i);
}

long h_cmp(const void *buf, size_t len, uint64_t tag, uint64_t off)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != h_pat_byte(tag, off + i))
			return (long)i;
	return -1;
}

uint64_t h_hash(const void *buf, size_t len, uint64_t h)
{
	const uint8_t *p = buf;

	h ^= 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* ---- images and mounts ---- */

struct bdev *h_image(uint64_t nblocks)
{
	struct bdev *bd = NULL;

	ck_assert_int_eq(bdev_mem_new(nblocks, &bd), 0);
	ck_assert_int_eq(fs_format(bd, NULL), 0);
	return bd;
}

struct bdev *h_image_copy(struct bdev *src)
{
	struct bdev *bd = NULL;

	ck_assert_int_eq(bdev_mem_new(src->nblocks, &bd), 0);
	memcpy(bdev_mem_data(bd), bdev_mem_data(src),
	       src->nblocks * TFS_BLOCK_SIZE);
	return bd;
}

struct fs *h_mount_opts(struct bdev *bd, const struct fs_opts *o)
{
	struct fs *fs = NULL;
	int rc = fs_mount(bd, o, &fs);

	ck_assert_msg(rc == 0, "fs_mount: %d (%s), seed %llu", rc,
		      strerror(-rc), (unsigned long long)g_seed);
	return fs;
}

struct fs *h_mount(struct bdev *bd, bool ro)
{
	struct fs_opts o;

	memset(&o, 0, sizeof(o));
	o.no_cp_thread = true;
	o.ro = ro;
	return h_mount_opts(bd, &o);
}

void h_unmount(struct fs *fs)
{
	int rc = fs_unmount(fs);

	ck_assert_msg(rc == 0, "fs_unmount: %d (%s), seed %llu", rc,
		      strerror(-rc), (unsigned long long)g_seed);
}

static void report(void *ctx, const char *msg)
{
	fprintf(stderr, "verify: %s\n", msg);
}

/* fs_verify's count is the verdict: it may also report notes that are
 * not problems (a superblock slot torn by a crash). */
int h_verify_count(struct bdev *bd)
{
	return fs_verify(bd, report, NULL, NULL);
}

void h_verify(struct bdev *bd)
{
	int rc = h_verify_count(bd);

	ck_assert_msg(rc == 0, "fs_verify: %d problem(s) (or error), seed %llu",
		      rc, (unsigned long long)g_seed);
}

/* ---- wrappers ---- */

uint64_t h_create(struct fs *fs, uint64_t dir, const char *name)
{
	struct fs_attr a;
	int rc = fs_create(fs, dir, name, 0644, true, &h_cred, &a);

	ck_assert_msg(rc == 0, "create %s: %d", name, rc);
	fs_forget(fs, a.ino, 1);
	return a.ino;
}

uint64_t h_mkdir(struct fs *fs, uint64_t dir, const char *name)
{
	struct fs_attr a;
	int rc = fs_mknod(fs, dir, name, S_IFDIR | 0755, 0, &h_cred, &a);

	ck_assert_msg(rc == 0, "mkdir %s: %d", name, rc);
	fs_forget(fs, a.ino, 1);
	return a.ino;
}

uint64_t h_lookup(struct fs *fs, uint64_t dir, const char *name)
{
	struct fs_attr a;
	int rc = fs_lookup(fs, dir, name, &a);

	if (rc == -ENOENT)
		return 0;
	ck_assert_msg(rc == 0, "lookup %s: %d", name, rc);
	fs_forget(fs, a.ino, 1);
	return a.ino;
}

void h_write(struct fs *fs, uint64_t ino, const void *buf, size_t len,
	     uint64_t off)
{
	ssize_t n = fs_write(fs, ino, buf, len, off, 0);

	ck_assert_msg(n == (ssize_t)len, "write ino %llu off %llu len %zu: %zd",
		      (unsigned long long)ino, (unsigned long long)off, len, n);
}

uint8_t *h_read_all(struct fs *fs, uint64_t ino, size_t *len)
{
	struct fs_attr a;
	uint8_t *buf;
	size_t done = 0;

	ck_assert_int_eq(fs_getattr(fs, ino, &a), 0);
	buf = malloc(a.size + 1);
	ck_assert_ptr_nonnull(buf);
	while (done < a.size) {
		size_t want = a.size - done > (1u << 20) ? (1u << 20)
							 : a.size - done;
		ssize_t n = fs_read(fs, ino, buf + done, want, done, 0);

		ck_assert_msg(n > 0, "read ino %llu at %zu: %zd",
			      (unsigned long long)ino, done, n);
		done += (size_t)n;
	}
	*len = a.size;
	return buf;
}

/* ---- tree dumps ---- */

struct names {
	char **v;
	size_t n, cap;
};

static void names_add(struct names *ns, char *s)
{
	if (ns->n == ns->cap) {
		ns->cap = ns->cap ? ns->cap * 2 : 64;
		ns->v = realloc(ns->v, ns->cap * sizeof(*ns->v));
		ck_assert_ptr_nonnull(ns->v);
	}
	ns->v[ns->n++] = s;
}

static int collect(void *ctx, const char *name, uint64_t ino, unsigned dtype,
		   uint64_t next)
{
	if (strcmp(name, ".") && strcmp(name, ".."))
		names_add(ctx, strdup(name));
	return 0;
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *xattr_desc(struct fs *fs, uint64_t ino)
{
	char list[8192], val[8192];
	struct names ns = { 0 };
	ssize_t n = fs_listxattr(fs, ino, list, sizeof(list));
	size_t cap = 64, len = 0;
	char *out = malloc(cap);

	ck_assert_msg(n >= 0, "listxattr %llu: %zd", (unsigned long long)ino, n);
	for (ssize_t i = 0; i < n; i += strlen(list + i) + 1)
		names_add(&ns, strdup(list + i));
	if (ns.n)
		qsort(ns.v, ns.n, sizeof(*ns.v), cmpstr);
	out[0] = 0;
	for (size_t i = 0; i < ns.n; i++) {
		ssize_t vl = fs_getxattr(fs, ino, ns.v[i], val, sizeof(val));
		char item[400];
		int il;

		ck_assert_msg(vl >= 0, "getxattr %s: %zd", ns.v[i], vl);
		il = snprintf(item, sizeof(item), "%s=%zd:%016llx;", ns.v[i],
			      vl, (unsigned long long)h_hash(val, vl, 0));
		while (len + il + 1 > cap)
			out = realloc(out, cap *= 2);
		memcpy(out + len, item, il + 1);
		len += il;
		free(ns.v[i]);
	}
	free(ns.v);
	return out;
}

static void dump_dir(struct fs *fs, uint64_t dir, const char *path,
		     struct names *lines)
{
	struct names ns = { 0 };
	int rc = fs_readdir(fs, dir, 0, collect, &ns);

	ck_assert_msg(rc == 0, "readdir %s: %d", path, rc);
	for (size_t i = 0; i < ns.n; i++) {
		struct fs_attr a;
		char *p, *line, *xa, tgt[TFS_SYMLINK_MAX + 1] = "";
		uint64_t h = 0, size = 0;

		if (dir == TFS_INO_ROOT && !strcmp(ns.v[i], ".snapshot"))
			goto next;
		ck_assert_int_ge(asprintf(&p, "%s/%s", path, ns.v[i]), 0);
		rc = fs_lookup(fs, dir, ns.v[i], &a);
		ck_assert_msg(rc == 0, "lookup %s: %d", p, rc);
		if (S_ISREG(a.mode)) {
			size_t len;
			uint8_t *d = h_read_all(fs, a.ino, &len);

			h = h_hash(d, len, 0);
			size = a.size;
			free(d);
		} else if (S_ISLNK(a.mode)) {
			/* 0 and a NUL-terminated target */
			int n = fs_readlink(fs, a.ino, tgt, sizeof(tgt));

			ck_assert_msg(n == 0, "readlink %s: %d", p, n);
			size = a.size;
		}
		xa = xattr_desc(fs, a.ino);
		ck_assert_int_ge(asprintf(&line, "%s\t%o\t%u\t%llu\t%016llx\t%s\t%s",
					  p, (unsigned)a.mode, a.nlink,
					  (unsigned long long)size,
					  (unsigned long long)h, tgt, xa), 0);
		free(xa);
		names_add(lines, line);
		if (S_ISDIR(a.mode))
			dump_dir(fs, a.ino, p, lines);
		fs_forget(fs, a.ino, 1);
		free(p);
next:
		free(ns.v[i]);
	}
	free(ns.v);
}

char *h_dump_tree(struct fs *fs)
{
	struct names lines = { 0 };
	size_t len = 1, at = 0;
	char *out;

	dump_dir(fs, TFS_INO_ROOT, "", &lines);
	if (lines.n)
		qsort(lines.v, lines.n, sizeof(*lines.v), cmpstr);
	for (size_t i = 0; i < lines.n; i++)
		len += strlen(lines.v[i]) + 1;
	out = malloc(len);
	ck_assert_ptr_nonnull(out);
	for (size_t i = 0; i < lines.n; i++) {
		size_t l = strlen(lines.v[i]);

		memcpy(out + at, lines.v[i], l);
		out[at + l] = '\n';
		at += l + 1;
		free(lines.v[i]);
	}
	out[at] = 0;
	free(lines.v);
	return out;
}
