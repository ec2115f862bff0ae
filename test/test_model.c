/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_model.c - long seeded random operation sequences checked against
 * an in-memory model of the tree (names, types, link counts, contents,
 * symlink targets, xattrs), with CPs, clean remounts and crashes
 * (fs_abandon after fsyncing everything, or after nothing) in between.
 *
 * Crash rule (P1): after a crash the tree equals the model state after
 * some prefix of the operations since the last CP, no shorter than the
 * last operation that touched an inode whose fsync returned.  The model
 * keeps a copy of itself at the last CP and the operations since, and
 * replays them to find that prefix.  Invalid operations (rename of a
 * directory into itself, rmdir of a non-empty one, ...) are tried too and
 * must fail with the errno the model predicts, changing nothing.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "format.h"
#include "harness.h"

#define MAX_FILE   (192u << 10)
#define NXA        4
#define XA_MAX     200

/* ---- the model ---- */

struct mxattr {
	bool set;
	size_t len;
	uint8_t val[XA_MAX];
};

struct mdent {
	char name[16];
	int child;
};

struct mnode {
	bool used;
	mode_t type;             /* S_IFREG, S_IFDIR, S_IFLNK */
	uint32_t nlink;
	uint8_t *data;
	size_t size;
	char target[40];
	struct mxattr xa[NXA];
	struct mdent *ents;      /* directories */
	int nents, cap;
	int parent;
	uint64_t ino;            /* on the file system */
	uint64_t hash;
	bool hash_ok;
	int last_op;             /* last op (1-based, since the base) */
};

struct model {
	struct mnode *n;
	int nn, cap;
};

static const char *const xa_names[NXA] = { "user.a", "user.b", "user.cc",
					   "user.ddd" };

static int m_new(struct model *m, mode_t type)
{
	struct mnode *x;

	if (m->nn == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->n = realloc(m->n, m->cap * sizeof(*m->n));
		ck_assert_ptr_nonnull(m->n);
	}
	x = &m->n[m->nn];
	memset(x, 0, sizeof(*x));
	x->used = true;
	x->type = type;
	x->nlink = type == S_IFDIR ? 2 : 1;
	return m->nn++;
}

static void m_free(struct model *m)
{
	for (int i = 0; i < m->nn; i++) {
		free(m->n[i].data);
		free(m->n[i].ents);
	}
	free(m->n);
	memset(m, 0, sizeof(*m));
}

static void m_copy(struct model *dst, const struct model *src)
{
	dst->nn = dst->cap = src->nn;
	dst->n = malloc((src->nn ? src->nn : 1) * sizeof(*dst->n));
	ck_assert_ptr_nonnull(dst->n);
	memcpy(dst->n, src->n, src->nn * sizeof(*dst->n));
	for (int i = 0; i < src->nn; i++) {
		struct mnode *d = &dst->n[i];
		const struct mnode *s = &src->n[i];

		d->data = NULL;
		if (s->data) {
			d->data = calloc(1, MAX_FILE);
			memcpy(d->data, s->data, s->size);
		}
		d->ents = NULL;
		if (s->ents) {
			d->ents = malloc(s->cap * sizeof(*d->ents));
			memcpy(d->ents, s->ents, s->nents * sizeof(*d->ents));
		}
	}
}

static int m_find(const struct model *m, int dir, const char *name)
{
	const struct mnode *d = &m->n[dir];

	for (int i = 0; i < d->nents; i++)
		if (!strcmp(d->ents[i].name, name))
			return i;
	return -1;
}

static void m_add_ent(struct model *m, int dir, const char *name, int child)
{
	struct mnode *d = &m->n[dir];

	if (d->nents == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 8;
		d->ents = realloc(d->ents, d->cap * sizeof(*d->ents));
	}
	snprintf(d->ents[d->nents].name, sizeof(d->ents[0].name), "%s", name);
	d->ents[d->nents++].child = child;
	if (m->n[child].type == S_IFDIR) {
		d->nlink++;
		m->n[child].parent = dir;
	}
}

/* Removes entry i of dir; drops the child's link. */
static void m_del_ent(struct model *m, int dir, int i)
{
	struct mnode *d = &m->n[dir];
	struct mnode *c = &m->n[d->ents[i].child];

	d->ents[i] = d->ents[--d->nents];
	if (c->type == S_IFDIR) {
		d->nlink--;
		c->nlink = 0;
	} else {
		c->nlink--;
	}
	if (!c->nlink) {
		c->used = false;
		free(c->data);
		c->data = NULL;
	}
}

static bool m_is_ancestor(const struct model *m, int a, int d)
{
	for (;;) {
		if (d == a)
			return true;
		if (d == 0)
			return false;
		d = m->n[d].parent;
	}
}

/* ---- model dumps in h_dump_tree's format ---- */

struct lines {
	char **v;
	size_t n, cap;
};

static void lines_add(struct lines *l, char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = s;
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void m_dump_dir(struct model *m, int dir, const char *path,
		       struct lines *l)
{
	for (int i = 0; i < m->n[dir].nents; i++) {
		const struct mdent *e = &m->n[dir].ents[i];
		struct mnode *c = &m->n[e->child];
		char *p, *line, xa[NXA * 64] = "";
		const char *sorted[NXA];
		int ns = 0;
		uint64_t size = 0, h = 0;
		mode_t mode = c->type | (c->type == S_IFDIR ? 0755 :
					 c->type == S_IFREG ? 0644 : 0777);

		for (int k = 0; k < NXA; k++)
			if (c->xa[k].set)
				sorted[ns++] = xa_names[k];
		if (ns)
			qsort(sorted, ns, sizeof(*sorted), cmpstr);
		for (int k = 0; k < ns; k++) {
			int idx = 0;
			while (strcmp(xa_names[idx], sorted[k]))
				idx++;
			snprintf(xa + strlen(xa), sizeof(xa) - strlen(xa),
				 "%s=%zu:%016llx;", sorted[k], c->xa[idx].len,
				 (unsigned long long)h_hash(c->xa[idx].val,
							     c->xa[idx].len, 0));
		}
		if (c->type == S_IFREG) {
			if (!c->hash_ok) {
				c->hash = h_hash(c->data, c->size, 0);
				c->hash_ok = true;
			}
			size = c->size;
			h = c->hash;
		} else if (c->type == S_IFLNK) {
			size = strlen(c->target);
		}
		ck_assert_int_ge(asprintf(&p, "%s/%s", path, e->name), 0);
		ck_assert_int_ge(asprintf(&line, "%s\t%o\t%u\t%llu\t%016llx\t%s\t%s",
					  p, (unsigned)mode, c->nlink,
					  (unsigned long long)size,
					  (unsigned long long)h,
					  c->type == S_IFLNK ? c->target : "",
					  xa), 0);
		lines_add(l, line);
		if (c->type == S_IFDIR)
			m_dump_dir(m, e->child, p, l);
		free(p);
	}
}

static char *m_dump(struct model *m)
{
	struct lines l = { 0 };
	size_t len = 1, at = 0;
	char *out;

	m_dump_dir(m, 0, "", &l);
	if (l.n)
		qsort(l.v, l.n, sizeof(*l.v), cmpstr);
	for (size_t i = 0; i < l.n; i++)
		len += strlen(l.v[i]) + 1;
	out = malloc(len);
	for (size_t i = 0; i < l.n; i++) {
		size_t k = strlen(l.v[i]);
		memcpy(out + at, l.v[i], k);
		out[at + k] = '\n';
		at += k + 1;
		free(l.v[i]);
	}
	out[at] = 0;
	free(l.v);
	return out;
}

/* ---- operations: records applied to the model and to the fs ---- */

enum mop_kind { M_CREATE, M_MKDIR, M_SYMLINK, M_WRITE, M_TRUNC, M_UNLINK,
		M_RMDIR, M_RENAME, M_LINK, M_SETX, M_RMX, M_PUNCH, M_ZERO,
		M_KINDS };

struct mop {
	enum mop_kind kind;
	int dir, dir2, node;     /* model node ids */
	char name[16], name2[16];
	uint64_t off, len, tag;
	int xa;
};

/* The model side; every touched node records op index k. */
static void m_apply(struct model *m, const struct mop *o, int k)
{
	struct mnode *x;
	int i, j, c;

	switch (o->kind) {
	case M_CREATE: case M_MKDIR: case M_SYMLINK:
		c = m_new(m, o->kind == M_CREATE ? S_IFREG :
			  o->kind == M_MKDIR ? S_IFDIR : S_IFLNK);
		if (o->kind == M_CREATE)
			m->n[c].data = calloc(1, MAX_FILE);
		if (o->kind == M_SYMLINK)
			snprintf(m->n[c].target, sizeof(m->n[c].target),
				 "t%llu", (unsigned long long)o->tag);
		m_add_ent(m, o->dir, o->name, c);
		m->n[c].last_op = k;
		break;
	case M_WRITE:
		x = &m->n[o->node];
		h_fill(x->data + o->off, o->len, o->tag, o->off);
		if (o->off + o->len > x->size)
			x->size = o->off + o->len;
		x->hash_ok = false;
		break;
	case M_TRUNC:
		x = &m->n[o->node];
		/* bytes past the size are always zero in the model */
		if (o->len < x->size)
			memset(x->data + o->len, 0, x->size - o->len);
		x->size = o->len;
		x->hash_ok = false;
		break;
	case M_PUNCH:
		x = &m->n[o->node];
		if (o->off < x->size)
			memset(x->data + o->off, 0,
			       (o->off + o->len > x->size ? x->size :
				o->off + o->len) - o->off);
		x->hash_ok = false;
		break;
	case M_ZERO: /* ZERO_RANGE without KEEP_SIZE: may extend */
		x = &m->n[o->node];
		memset(x->data + o->off, 0, o->len);
		if (o->off + o->len > x->size)
			x->size = o->off + o->len;
		x->hash_ok = false;
		break;
	case M_UNLINK: case M_RMDIR:
		i = m_find(m, o->dir, o->name);
		ck_assert_int_ge(i, 0);
		m->n[m->n[o->dir].ents[i].child].last_op = k;
		m_del_ent(m, o->dir, i);
		break;
	case M_RENAME:
		i = m_find(m, o->dir, o->name);
		j = m_find(m, o->dir2, o->name2);
		ck_assert_int_ge(i, 0);
		c = m->n[o->dir].ents[i].child;
		m->n[c].last_op = k;
		if (j >= 0 && m->n[o->dir2].ents[j].child == c)
			break;  /* two links of one inode: nothing happens */
		if (j >= 0) {
			m->n[m->n[o->dir2].ents[j].child].last_op = k;
			m_del_ent(m, o->dir2, j);
			i = m_find(m, o->dir, o->name);
		}
		/* move the entry: the inode keeps its links */
		x = &m->n[o->dir];
		x->ents[i] = x->ents[--x->nents];
		if (m->n[c].type == S_IFDIR)
			x->nlink--;
		m_add_ent(m, o->dir2, o->name2, c);
		break;
	case M_LINK:
		m->n[o->node].nlink++;  /* m_add_ent counts only dirs */
		m_add_ent(m, o->dir2, o->name2, o->node);
		break;
	case M_SETX:
		x = &m->n[o->node];
		x->xa[o->xa].set = true;
		x->xa[o->xa].len = o->len;
		h_fill(x->xa[o->xa].val, o->len, o->tag, 0);
		break;
	case M_RMX:
		m->n[o->node].xa[o->xa].set = false;
		break;
	default:
		ck_abort();
	}
	if (o->node >= 0 && o->node < m->nn)
		m->n[o->node].last_op = k;
	m->n[o->dir].last_op = k;
	if (o->kind == M_RENAME || o->kind == M_LINK)
		m->n[o->dir2].last_op = k;
}

static struct bdev *bd;
static struct fs *fs;
static struct model cur, base;     /* now, and at the last CP */
static struct mop *ops;            /* since the base */
static int nops, capops, kmin;
static struct h_rng rng;
static unsigned long n_ops, n_errs, n_crashes, n_remounts, n_cps, n_fsyncs;

static uint64_t rnd(uint64_t n)
{
	return h_rng_next(&rng) % n;
}

/* Returns the new inode number for creates, else 0. */
static uint64_t fs_apply(const struct mop *o)
{
	struct model *m = &cur;
	uint64_t dino = m->n[o->dir].ino;
	struct fs_attr a;
	struct fs_setattr sa;
	uint8_t *buf;
	char tgt[48];
	int rc = 0;

	switch (o->kind) {
	case M_CREATE:
		rc = fs_create(fs, dino, o->name, 0644, true, &h_cred, &a);
		break;
	case M_MKDIR:
		rc = fs_mknod(fs, dino, o->name, S_IFDIR | 0755, 0, &h_cred,
			      &a);
		break;
	case M_SYMLINK:
		snprintf(tgt, sizeof(tgt), "t%llu", (unsigned long long)o->tag);
		rc = fs_symlink(fs, dino, o->name, tgt, &h_cred, &a);
		break;
	case M_WRITE:
		buf = malloc(o->len + 1);
		h_fill(buf, o->len, o->tag, o->off);
		rc = (int)fs_write(fs, m->n[o->node].ino, buf, o->len, o->off,
				   0);
		free(buf);
		ck_assert_msg(rc == (int)o->len, "write: %d", rc);
		return 0;
	case M_TRUNC:
		memset(&sa, 0, sizeof(sa));
		sa.mask = FS_SET_SIZE;
		sa.size = o->len;
		rc = fs_setattr(fs, m->n[o->node].ino, &sa, &a);
		break;
	case M_PUNCH:
		rc = fs_fallocate(fs, m->n[o->node].ino, FALLOC_FL_PUNCH_HOLE |
				  FALLOC_FL_KEEP_SIZE, o->off, o->len);
		break;
	case M_ZERO:
		rc = fs_fallocate(fs, m->n[o->node].ino, FALLOC_FL_ZERO_RANGE,
				  o->off, o->len);
		break;
	case M_UNLINK:
		rc = fs_unlink(fs, dino, o->name);
		break;
	case M_RMDIR:
		rc = fs_rmdir(fs, dino, o->name);
		break;
	case M_RENAME:
		rc = fs_rename(fs, dino, o->name, m->n[o->dir2].ino, o->name2,
			       0);
		break;
	case M_LINK:
		rc = fs_link(fs, m->n[o->node].ino, m->n[o->dir2].ino,
			     o->name2, &a);
		if (!rc)
			fs_forget(fs, a.ino, 1);
		break;
	case M_SETX:
		buf = malloc(o->len + 1);
		h_fill(buf, o->len, o->tag, 0);
		rc = fs_setxattr(fs, m->n[o->node].ino, xa_names[o->xa], buf,
				 o->len, 0);
		free(buf);
		break;
	case M_RMX:
		rc = fs_removexattr(fs, m->n[o->node].ino, xa_names[o->xa]);
		break;
	default:
		ck_abort();
	}
	ck_assert_msg(rc == 0, "op %d on %s: %d (seed %llu)", o->kind, o->name,
		      rc, (unsigned long long)h_seed());
	if (o->kind == M_CREATE || o->kind == M_MKDIR || o->kind == M_SYMLINK) {
		fs_forget(fs, a.ino, 1);
		return a.ino;
	}
	return 0;
}

static void record(const struct mop *o)
{
	uint64_t ino;

	if (nops == capops) {
		capops = capops ? capops * 2 : 256;
		ops = realloc(ops, capops * sizeof(*ops));
	}
	ops[nops++] = *o;
	ino = fs_apply(o);       /* before m_apply: it reads dir inos */
	m_apply(&cur, o, nops);
	if (ino)
		cur.n[cur.nn - 1].ino = ino;
	n_ops++;
}

/* ---- picking targets ---- */

struct pick {
	int dir, idx;
};

static int all_entries(struct model *m, int dir, struct pick *out, int n,
		       int max)
{
	for (int i = 0; i < m->n[dir].nents && n < max; i++) {
		out[n++] = (struct pick){ dir, i };
		if (m->n[m->n[dir].ents[i].child].type == S_IFDIR)
			n = all_entries(m, m->n[dir].ents[i].child, out, n, max);
	}
	return n;
}

static int depth(struct model *m, int d)
{
	int k = 0;

	while (d) {
		d = m->n[d].parent;
		k++;
	}
	return k;
}

#define MAXP 4096
static struct pick picks[MAXP];

static int random_dir(void)
{
	int n = all_entries(&cur, 0, picks, 0, MAXP), dirs = 1;

	for (int i = 0; i < n; i++)
		if (cur.n[cur.n[picks[i].dir].ents[picks[i].idx].child].type ==
		    S_IFDIR)
			dirs++;
	dirs = (int)rnd(dirs);
	if (!dirs)
		return 0;
	for (int i = 0; i < n; i++) {
		int c = cur.n[picks[i].dir].ents[picks[i].idx].child;
		if (cur.n[c].type == S_IFDIR && !--dirs)
			return c;
	}
	return 0;
}

/* A random entry (optionally only of type t, 0: any); false if none. */
static bool random_entry(mode_t t, struct pick *p)
{
	int n = all_entries(&cur, 0, picks, 0, MAXP), k = 0;

	for (int i = 0; i < n; i++)
		if (!t || cur.n[cur.n[picks[i].dir].ents[picks[i].idx].child]
				  .type == t)
			picks[k++] = picks[i];
	if (!k)
		return false;
	*p = picks[rnd(k)];
	return true;
}

static void random_name(char *name)
{
	snprintf(name, 16, "n%u", (unsigned)rnd(10));
}

/* ---- checks ---- */

static void compare(const char *when)
{
	char *want = m_dump(&cur), *got = h_dump_tree(fs);
	const struct mop *o = nops ? &ops[nops - 1] : NULL;

	if (strcmp(want, got))
		for (int i = 0; i < cur.nn; i++) {
			struct mnode *x = &cur.n[i];
			size_t len;
			uint8_t *d;

			if (!x->used || x->type != S_IFREG)
				continue;
			d = h_read_all(fs, x->ino, &len);
			for (size_t b = 0; b < len && b < x->size; b++)
				if (d[b] != x->data[b]) {
					fprintf(stderr, "node %d ino %llu: first "
						"difference at byte %zu: fs %u "
						"model %u\n", i,
						(unsigned long long)x->ino, b,
						d[b], x->data[b]);
					break;
				}
			free(d);
		}
	if (strcmp(want, got) && o)
		for (int k = 0; k < nops; k++)
			if (ops[k].node == o->node)
				fprintf(stderr, "  op %d: kind %d off %llu len "
					"%llu\n", k + 1, ops[k].kind,
					(unsigned long long)ops[k].off,
					(unsigned long long)ops[k].len);
	ck_assert_msg(!strcmp(want, got), "%s: tree differs from the model "
		      "(seed %llu, op %lu; last op kind %d node %d %s -> %s "
		      "off %llu len %llu)\n--- model:\n%s--- fs:\n%s", when,
		      (unsigned long long)h_seed(), n_ops, o ? (int)o->kind : -1,
		      o ? o->node : -1, o ? o->name : "", o ? o->name2 : "",
		      o ? (unsigned long long)o->off : 0,
		      o ? (unsigned long long)o->len : 0, want, got);
	free(want);
	free(got);
}

static void refresh_inos(struct model *m, int dir)
{
	for (int i = 0; i < m->n[dir].nents; i++) {
		struct mdent *e = &m->n[dir].ents[i];
		struct fs_attr a;

		ck_assert_int_eq(fs_lookup(fs, m->n[dir].ino, e->name, &a), 0);
		fs_forget(fs, a.ino, 1);
		m->n[e->child].ino = a.ino;
		if (m->n[e->child].type == S_IFDIR)
			refresh_inos(m, e->child);
	}
}

static void new_base(void)
{
	m_free(&base);
	m_copy(&base, &cur);
	nops = 0;
	kmin = 0;
	for (int i = 0; i < cur.nn; i++)
		cur.n[i].last_op = 0;
}

/* Odd iterations run with the smallest cache (1 MiB): eviction, the
 * page pool and pages given back to the kernel on every step. */
static bool small_cache;

static struct fs *model_mount(void)
{
	struct fs_opts o = { .no_cp_thread = true };

	o.cache_max = small_cache ? 1u << 20 : 0;
	return h_mount_opts(bd, &o);
}

static void do_remount(void)
{
	h_unmount(fs);
	h_verify(bd);
	fs = model_mount();
	refresh_inos(&cur, 0);
	compare("after remount");
	new_base();
	n_remounts++;
}

/* Crash now: the tree must be the model after a prefix of the ops since
 * the base, at least kmin long. */
static void do_crash(bool sync_all)
{
	struct model m;
	char *got, *want = NULL;
	int match = -1;

	if (sync_all) {
		for (int i = 0; i < cur.nn; i++)
			if (cur.n[i].used && cur.n[i].type != S_IFLNK)
				ck_assert_int_eq(fs_fsync(fs, cur.n[i].ino,
							  false), 0);
		kmin = nops;
	}
	fs_abandon(fs);
	h_verify(bd);
	fs = model_mount();
	got = h_dump_tree(fs);
	m_copy(&m, &base);
	for (int k = 0; k <= nops; k++) {
		if (k)
			m_apply(&m, &ops[k - 1], k);
		if (k < kmin)
			continue;
		free(want);
		want = m_dump(&m);
		if (!strcmp(want, got)) {
			match = k;
			break;
		}
	}
	if (match < 0) {
		char *lo;
		struct model m2;
		m_copy(&m2, &base);
		for (int k = 1; k <= kmin; k++)
			m_apply(&m2, &ops[k - 1], k);
		lo = m_dump(&m2);
		ck_abort_msg("crash (%s): tree is no model state %d..%d "
			     "(seed %llu, op %lu)\n--- fs:\n%s--- model at %d:"
			     "\n%s--- model at %d:\n%s",
			     sync_all ? "after fsync of all" : "no sync", kmin,
			     nops, (unsigned long long)h_seed(), n_ops, got,
			     kmin, lo, nops, want);
	}
	free(got);
	free(want);
	m_free(&cur);
	cur = m;
	cur.n[0].ino = TFS_INO_ROOT;
	refresh_inos(&cur, 0);
	new_base();
	n_crashes++;
}

/* ---- the random driver ---- */

static void try_invalid(void)
{
	struct pick p, q;
	int rc, d, c;
	char name[16];
	struct fs_attr a;

	switch (rnd(4)) {
	case 0: /* a directory into its own subtree */
		if (!random_entry(S_IFDIR, &p))
			return;
		c = cur.n[p.dir].ents[p.idx].child;
		d = random_dir();
		if (!m_is_ancestor(&cur, c, d))
			return;
		random_name(name);
		rc = fs_rename(fs, cur.n[p.dir].ino, cur.n[p.dir].ents[p.idx].name,
			       cur.n[d].ino, name, 0);
		ck_assert_int_eq(rc, -EINVAL);
		break;
	case 1: /* rmdir of a non-empty directory */
		if (!random_entry(S_IFDIR, &p))
			return;
		c = cur.n[p.dir].ents[p.idx].child;
		if (!cur.n[c].nents)
			return;
		rc = fs_rmdir(fs, cur.n[p.dir].ino, cur.n[p.dir].ents[p.idx].name);
		ck_assert_int_eq(rc, -ENOTEMPTY);
		break;
	case 2: /* create over an existing name */
		if (!random_entry(0, &p))
			return;
		rc = fs_create(fs, cur.n[p.dir].ino, cur.n[p.dir].ents[p.idx].name,
			       0644, true, &h_cred, &a);
		ck_assert_int_eq(rc, -EEXIST);
		rc = fs_mknod(fs, cur.n[p.dir].ino, cur.n[p.dir].ents[p.idx].name,
			      S_IFDIR | 0755, 0, &h_cred, &a);
		ck_assert_int_eq(rc, -EEXIST);
		break;
	case 3: /* rename a file over a directory and back */
		if (!random_entry(S_IFREG, &p) || !random_entry(S_IFDIR, &q))
			return;
		rc = fs_rename(fs, cur.n[p.dir].ino, cur.n[p.dir].ents[p.idx].name,
			       cur.n[q.dir].ino, cur.n[q.dir].ents[q.idx].name, 0);
		ck_assert_int_eq(rc, -EISDIR);
		rc = fs_rename(fs, cur.n[q.dir].ino, cur.n[q.dir].ents[q.idx].name,
			       cur.n[p.dir].ino, cur.n[p.dir].ents[p.idx].name, 0);
		/* into its own subtree is EINVAL first, as in Linux */
		ck_assert_int_eq(rc, m_is_ancestor(&cur, cur.n[q.dir].ents[q.idx]
						   .child, p.dir) ? -EINVAL
							  : -ENOTDIR);
		rc = fs_unlink(fs, cur.n[q.dir].ino, cur.n[q.dir].ents[q.idx].name);
		ck_assert_int_eq(rc, -EISDIR);
		break;
	}
	n_errs++;
}

static void random_step(void)
{
	struct mop o;
	struct pick p;
	int c, j;

	memset(&o, 0, sizeof(o));
	o.node = -1;
	switch (rnd(16)) {
	case 0: case 1: /* create, mkdir, symlink */
		o.dir = random_dir();
		random_name(o.name);
		if (m_find(&cur, o.dir, o.name) >= 0)
			return;
		o.kind = rnd(3) == 0 && depth(&cur, o.dir) < 4 ? M_MKDIR :
			 rnd(6) == 0 ? M_SYMLINK : M_CREATE;
		o.tag = h_rng_next(&rng) % 100000;
		break;
	case 2: case 3: case 4: case 5: /* write */
		if (!random_entry(S_IFREG, &p))
			return;
		o.kind = M_WRITE;
		o.dir = p.dir;
		o.node = cur.n[p.dir].ents[p.idx].child;
		o.len = 1 + rnd(rnd(4) ? 6000 : 40000);
		o.off = rnd(MAX_FILE - o.len);
		if (rnd(3) == 0) /* append */
			o.off = cur.n[o.node].size + o.len < MAX_FILE ?
				cur.n[o.node].size : 0;
		o.tag = h_rng_next(&rng);
		break;
	case 6: /* truncate */
		if (!random_entry(S_IFREG, &p))
			return;
		o.kind = M_TRUNC;
		o.dir = p.dir;
		o.node = cur.n[p.dir].ents[p.idx].child;
		o.len = rnd(3) ? rnd(cur.n[o.node].size + 1) : rnd(MAX_FILE);
		break;
	case 7: /* punch */
		if (!random_entry(S_IFREG, &p))
			return;
		o.kind = rnd(2) ? M_PUNCH : M_ZERO;
		o.dir = p.dir;
		o.node = cur.n[p.dir].ents[p.idx].child;
		o.off = rnd(MAX_FILE / 2);
		o.len = 1 + rnd(MAX_FILE / 2);
		break;
	case 8: /* unlink or rmdir */
		if (!random_entry(0, &p))
			return;
		o.dir = p.dir;
		c = cur.n[p.dir].ents[p.idx].child;
		strcpy(o.name, cur.n[p.dir].ents[p.idx].name);
		if (cur.n[c].type == S_IFDIR) {
			if (cur.n[c].nents)
				return;
			o.kind = M_RMDIR;
		} else {
			o.kind = M_UNLINK;
		}
		break;
	case 9: case 10: /* rename, maybe over something */
		if (!random_entry(0, &p))
			return;
		o.kind = M_RENAME;
		o.dir = p.dir;
		strcpy(o.name, cur.n[p.dir].ents[p.idx].name);
		c = cur.n[p.dir].ents[p.idx].child;
		o.dir2 = random_dir();
		random_name(o.name2);
		if (cur.n[c].type == S_IFDIR &&
		    (m_is_ancestor(&cur, c, o.dir2) ||
		     depth(&cur, o.dir2) >= 4))
			return;
		j = m_find(&cur, o.dir2, o.name2);
		if (j >= 0) {
			int t = cur.n[o.dir2].ents[j].child;
			if (o.dir == o.dir2 && !strcmp(o.name, o.name2))
				return;
			if ((cur.n[t].type == S_IFDIR) !=
			    (cur.n[c].type == S_IFDIR))
				return;
			if (cur.n[t].type == S_IFDIR && cur.n[t].nents)
				return;
		}
		break;
	case 11: /* link */
		if (!random_entry(S_IFREG, &p))
			return;
		o.kind = M_LINK;
		o.dir = p.dir;
		o.node = cur.n[p.dir].ents[p.idx].child;
		o.dir2 = random_dir();
		random_name(o.name2);
		if (m_find(&cur, o.dir2, o.name2) >= 0)
			return;
		break;
	case 12: /* xattrs */
		if (!random_entry(0, &p))
			return;
		o.dir = p.dir;
		o.node = cur.n[p.dir].ents[p.idx].child;
		if (cur.n[o.node].type == S_IFLNK)
			return;
		o.xa = (int)rnd(NXA);
		if (cur.n[o.node].xa[o.xa].set && rnd(3) == 0) {
			o.kind = M_RMX;
		} else {
			o.kind = M_SETX;
			o.len = rnd(XA_MAX);
			o.tag = h_rng_next(&rng);
		}
		break;
	case 13: /* fsync something */
		if (!random_entry(0, &p))
			return;
		c = cur.n[p.dir].ents[p.idx].child;
		if (cur.n[c].type == S_IFLNK)
			return;
		ck_assert_int_eq(fs_fsync(fs, cur.n[c].ino, rnd(2)), 0);
		if (cur.n[c].last_op > kmin)
			kmin = cur.n[c].last_op;
		n_fsyncs++;
		return;
	case 14:
		try_invalid();
		return;
	case 15: /* CPs, remounts, crashes */
		switch (rnd(8)) {
		case 0: case 1: case 2:
			ck_assert_int_eq(fs_cp(fs), 0);
			new_base();
			n_cps++;
			break;
		case 3:
			do_remount();
			break;
		case 4: case 5:
			do_crash(true);
			break;
		default:
			do_crash(false);
			break;
		}
		return;
	}
	record(&o);
}

static void setup(void)
{
	h_quiet_log();
	bd = h_image(16384);
	fs = h_mount(bd, false);
	memset(&cur, 0, sizeof(cur));
	memset(&base, 0, sizeof(base));
	m_new(&cur, S_IFDIR);
	cur.n[0].ino = TFS_INO_ROOT;
	nops = 0;
	new_base();
}

static void teardown(void)
{
	if (fs)
		h_unmount(fs);
	fs = NULL;
	h_verify(bd);
	bdev_close(bd);
	m_free(&cur);
	m_free(&base);
	free(ops);
	ops = NULL;
	capops = 0;
}

static bool quick(void)
{
	const char *q = getenv("TWINFS_CRASH_QUICK");

	return q && *q && strcmp(q, "0");
}

START_TEST(test_random_model)
{
	bool paranoid = getenv("TWINFS_MODEL_PARANOID") != NULL;
	uint64_t seed = h_seed() + _i;
	int steps = quick() ? 800 : 4000;

	h_rng_seed(&rng, seed);
	small_cache = _i % 2;
	printf("test_random_model %d: seed %llu%s\n", _i,
	       (unsigned long long)seed, small_cache ? ", 1 MiB cache" : "");
	if (small_cache) {
		h_unmount(fs);
		fs = model_mount();
	}
	for (int s = 0; s < steps; s++) {
		random_step();
		if (s % 50 == 49 || paranoid)
			compare("periodic");
	}
	compare("end");
	do_remount();
	printf("model %d: %lu ops, %lu invalid ops, %lu fsyncs, %lu CPs, "
	       "%lu remounts, %lu crashes\n", _i, n_ops, n_errs, n_fsyncs,
	       n_cps, n_remounts, n_crashes);
}
END_TEST

static Suite *model_suite(void)
{
	Suite *s = suite_create("model");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_random_model, 0, quick() ? 2 : 8);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	h_seed_init("test_model (iteration i uses seed + i)");
	sr = srunner_create(model_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
