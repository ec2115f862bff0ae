/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_crash.c - power cuts after every write of small workloads.
 *
 * Workloads: every sequence of length 1 and 2 over {create, write,
 * overwrite, truncate, rename, link, unlink, mkdir, setxattr}, each op
 * followed by fsync, fdatasync or nothing (some with a CP between the two
 * ops), plus random longer sequences with CPs.  Each workload runs once on
 * a crash device (crashdev.c) that records its W writes; then for every n
 * in 1..W+1 the image left by a cut during write n (unflushed writes
 * dropped, or kept at random; write n dropped or torn) must verify before
 * and after mount (which replays the intent log), and the mounted tree
 * must equal the state after some prefix of the ops (P1): no earlier than
 * the last op whose fsync or CP returned before write n, no later than
 * the last op begun before write n.
 *
 * Prints how many crash states it checked; CI wants >= 20,000 (>= 2,000
 * with TWINFS_CRASH_QUICK=1, used by the sanitizer run).
 */
#include <check.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/mman.h>

#include "crashdev.h"
#include "format.h"
#include "harness.h"

#define NBLOCKS   512
#define MAX_OPS   24

enum op { OP_CREATE, OP_WRITE, OP_OVERWRITE, OP_TRUNCATE, OP_RENAME,
	  OP_LINK, OP_UNLINK, OP_MKDIR, OP_SETXATTR, NOPS };
enum sync { SY_FSYNC, SY_FDATASYNC, SY_NONE, NSYNC };

static const char *op_name[NOPS] = { "create", "write", "overwrite",
	"truncate", "rename", "link", "unlink", "mkdir", "setxattr" };
static const char *sync_name[NSYNC] = { "fsync", "fdatasync", "none" };

struct step {
	enum op op;
	enum sync sync;
	bool cp_after;
};

struct totals {
	atomic_ulong states, failures, workloads, depth2;
};
static struct totals *tot;   /* shared with Check's forked children */
static bool quick;
static struct bdev *base;    /* the starting image, durable */

/* ---- the file set: A/foo, A/bar, B; ops pick their targets by name ---- */

static uint64_t resolve(struct fs *fs, const char *path, uint64_t *parent,
			char *leaf)
{
	char buf[256], *save = NULL, *tok, *next;
	uint64_t dir = TFS_INO_ROOT, ino = TFS_INO_ROOT;

	snprintf(buf, sizeof(buf), "%s", path);
	tok = strtok_r(buf, "/", &save);
	while (tok) {
		next = strtok_r(NULL, "/", &save);
		dir = ino;
		ino = h_lookup(fs, dir, tok);
		if (!next) {
			if (parent)
				*parent = dir;
			if (leaf)
				strcpy(leaf, tok);
		}
		if (!ino)
			return 0;
		tok = next;
	}
	return ino;
}

static const char *const targets[] = { "A/foo", "B/baz", "A/bar", "B/r1",
				       "B/r2", "A/c0", "A/c1", NULL };

/* The first regular file of the target list that exists. */
static uint64_t target(struct fs *fs, uint64_t *parent, char *leaf)
{
	for (int i = 0; targets[i]; i++) {
		uint64_t ino = resolve(fs, targets[i], parent, leaf);
		struct fs_attr a;

		if (ino && fs_getattr(fs, ino, &a) == 0 && S_ISREG(a.mode))
			return ino;
	}
	return 0;
}

static uint64_t file_size(struct fs *fs, uint64_t ino)
{
	struct fs_attr a;

	ck_assert_int_eq(fs_getattr(fs, ino, &a), 0);
	return a.size;
}

/* Runs op i of a workload; returns the inode the sync should cover. */
static uint64_t run_op(struct fs *fs, enum op op, int i)
{
	uint8_t buf[8192];
	char name[32], leaf[64];
	uint64_t A = resolve(fs, "A", NULL, NULL);
	uint64_t B = resolve(fs, "B", NULL, NULL);
	uint64_t par = 0, ino = target(fs, &par, leaf), sz;
	struct fs_attr a;
	struct fs_setattr sa;

	ck_assert(A && B);
	switch (op) {
	case OP_CREATE:
		snprintf(name, sizeof(name), "c%d", i);
		return h_create(fs, A, name); /* one call: one log record */
	case OP_MKDIR:
		snprintf(name, sizeof(name), "d%d", i);
		return h_mkdir(fs, A, name);
	default:
		break;
	}
	if (!ino) /* everything unlinked: make a file to work on */
		return run_op(fs, OP_CREATE, i);
	switch (op) {
	case OP_WRITE:
		sz = file_size(fs, ino);
		h_fill(buf, 5000, 200 + i, sz);
		h_write(fs, ino, buf, 5000, sz);
		break;
	case OP_OVERWRITE:
		h_fill(buf, 3000, 300 + i, 1000);
		h_write(fs, ino, buf, 3000, 1000);
		break;
	case OP_TRUNCATE:
		memset(&sa, 0, sizeof(sa));
		sa.mask = FS_SET_SIZE;
		sa.size = file_size(fs, ino) > 3000 ? 1500 : 9000;
		ck_assert_int_eq(fs_setattr(fs, ino, &sa, &a), 0);
		break;
	case OP_RENAME:
		snprintf(name, sizeof(name), "r%d", i);
		ck_assert_int_eq(fs_rename(fs, par, leaf, B, name, 0), 0);
		break;
	case OP_LINK:
		snprintf(name, sizeof(name), "l%d", i);
		ck_assert_int_eq(fs_link(fs, ino, B, name, &a), 0);
		fs_forget(fs, ino, 1);
		break;
	case OP_UNLINK:
		ck_assert_int_eq(fs_unlink(fs, par, leaf), 0);
		return par; /* fsync the directory */
	case OP_SETXATTR:
		h_fill(buf, 100, 400 + i, 0);
		ck_assert_int_eq(fs_setxattr(fs, ino, "user.k", buf, 100, 0), 0);
		break;
	default:
		ck_abort();
	}
	return ino;
}

static void make_base(void)
{
	uint8_t buf[6000];
	struct fs *fs;
	uint64_t A, foo, bar;

	base = h_image(NBLOCKS);
	fs = h_mount(base, false);
	A = h_mkdir(fs, TFS_INO_ROOT, "A");
	h_mkdir(fs, TFS_INO_ROOT, "B");
	foo = h_create(fs, A, "foo");
	bar = h_create(fs, A, "bar");
	h_fill(buf, 6000, 1, 0);
	h_write(fs, foo, buf, 6000, 0);
	h_fill(buf, 100, 2, 0);
	h_write(fs, bar, buf, 100, 0);
	h_unmount(fs);
	h_verify(base);
}

/* ---- one workload: record, then crash after every write ---- */

struct run {
	char *state[MAX_OPS + 1];  /* tree after op k (k = 0: before) */
	uint64_t start[MAX_OPS + 1]; /* writes before op k+1 began */
	uint64_t durable_op[MAX_OPS + 1]; /* ops durable once write count >= */
	int nops;
	uint64_t unmount_start;
};

static void describe(const struct step *s, int n, char *out, size_t len)
{
	size_t at = 0;

	out[0] = 0;
	for (int i = 0; i < n && at < len; i++)
		at += snprintf(out + at, len - at, "%s%s+%s%s", i ? ", " : "",
			       op_name[s[i].op], sync_name[s[i].sync],
			       s[i].cp_after ? "+cp" : "");
}

/* k_min: the last op made durable by a sync or CP that had returned
 * with all its writes before write n; k_max: the last op begun before
 * write n (the final unmount counts as after every op). */
static void bounds(const struct run *r, uint64_t n, int *kmin, int *kmax)
{
	*kmin = 0;
	*kmax = 0;
	for (int k = 1; k <= r->nops; k++) {
		if (r->start[k - 1] < n)
			*kmax = k;
		if (r->durable_op[k] != UINT64_MAX && r->durable_op[k] < n)
			*kmin = k;
	}
}

/* Depth 2: cut the power again during the recovery of a crash image
 * (log replay, the mount's CP, the unmount's CP).  Every such image must
 * recover to the same tree as the uninterrupted recovery did. */
static int check_recovery_crash(struct crashdev *cd2, const char *want,
				struct h_rng *rng, const char *desc,
				uint64_t n)
{
	struct fs_opts o = { .no_cp_thread = true };
	struct fs *fs;
	char *dump;
	int bad = 0, rc;
	unsigned states = 0;

	fs = h_mount_opts(cd_bdev(cd2), &o);
	dump = h_dump_tree(fs);
	if (strcmp(dump, want)) {
		fprintf(stderr, "[%s] n=%llu: a second recovery of one image "
			"gave another tree\n", desc, (unsigned long long)n);
		bad++;
	}
	free(dump);
	h_unmount(fs);
	for (uint64_t m = 1; m <= cd_writes(cd2); m++) {
		enum cd_policy pol = m % 2 ? CD_DROP_UNFLUSHED
					   : CD_RANDOM_UNFLUSHED;
		enum cd_tear tear = (enum cd_tear)(m % 3);
		struct bdev *bd = cd_survivor(cd2, m, pol, tear, rng);

		states++;
		if ((rc = h_verify_count(bd))) {
			fprintf(stderr, "[%s] n=%llu m=%llu: verify of a crash "
				"during recovery: %d\n", desc,
				(unsigned long long)n, (unsigned long long)m, rc);
			bad++;
		} else if ((rc = fs_mount(bd, &o, &fs))) {
			fprintf(stderr, "[%s] n=%llu m=%llu: mount after a crash "
				"during recovery: %d\n", desc,
				(unsigned long long)n, (unsigned long long)m, rc);
			bad++;
		} else {
			dump = h_dump_tree(fs);
			if (strcmp(dump, want)) {
				fprintf(stderr, "[%s] n=%llu m=%llu pol=%d "
					"tear=%d: crash during recovery changed "
					"the tree\n--- got:\n%s--- want:\n%s",
					desc, (unsigned long long)n,
					(unsigned long long)m, pol, tear, dump,
					want);
				bad++;
			}
			free(dump);
			if ((rc = fs_unmount(fs)) || (rc = h_verify_count(bd))) {
				fprintf(stderr, "[%s] n=%llu m=%llu: unmount or "
					"verify: %d\n", desc,
					(unsigned long long)n,
					(unsigned long long)m, rc);
				bad++;
			}
		}
		bdev_close(bd);
	}
	atomic_fetch_add(&tot->depth2, states);
	return bad;
}

static int check_state(struct run *r, struct crashdev *cd, uint64_t n,
		       enum cd_policy pol, enum cd_tear tear, struct h_rng *rng,
		       const char *desc, bool depth2)
{
	struct crashdev *cd2 = NULL;
	struct bdev *bd = cd_survivor(cd, n, pol, tear, rng);
	struct fs *fs = NULL;
	char *dump;
	int kmin, kmax, rc, bad = 0, match = -1;

	bounds(r, n, &kmin, &kmax);
	if (n > cd_writes(cd))
		kmin = r->nops; /* the unmount's CP finished and flushed */
	rc = h_verify_count(bd);
	if (rc) {
		fprintf(stderr, "[%s] n=%llu pol=%d tear=%d: verify before "
			"mount: %d\n", desc, (unsigned long long)n, pol, tear, rc);
		bad = 1;
		goto out;
	}
	if (depth2)
		cd2 = cd_new(bd); /* the image before its recovery */
	{
		struct fs_opts o = { .no_cp_thread = true };
		rc = fs_mount(bd, &o, &fs);
	}
	if (rc) {
		fprintf(stderr, "[%s] n=%llu pol=%d tear=%d: mount: %d\n", desc,
			(unsigned long long)n, pol, tear, rc);
		bad = 1;
		goto out;
	}
	dump = h_dump_tree(fs);
	for (int k = kmin; k <= kmax; k++)
		if (!strcmp(dump, r->state[k]))
			match = k;
	if (match < 0) {
		int other = -1;
		for (int k = 0; k <= r->nops; k++)
			if (!strcmp(dump, r->state[k]))
				other = k;
		fprintf(stderr, "[%s] n=%llu/%llu pol=%d tear=%d: tree is "
			"state %d, allowed %d..%d\n--- got:\n%s--- state %d:\n%s",
			desc, (unsigned long long)n,
			(unsigned long long)cd_writes(cd), pol, tear, other,
			kmin, kmax, dump, kmin, r->state[kmin]);
		bad = 1;
	} else if (cd2) {
		bad += check_recovery_crash(cd2, dump, rng, desc, n);
	}
	free(dump);
	rc = fs_unmount(fs);
	if (rc) {
		fprintf(stderr, "[%s] n=%llu: unmount after crash: %d\n", desc,
			(unsigned long long)n, rc);
		bad = 1;
	} else if ((rc = h_verify_count(bd))) {
		fprintf(stderr, "[%s] n=%llu pol=%d tear=%d: verify after "
			"mount: %d\n", desc, (unsigned long long)n, pol, tear, rc);
		bad = 1;
	}
out:
	cd_free(cd2);
	bdev_close(bd);
	return bad;
}

/* log_max: fs_opts.log_sync_max; a small one makes fsyncs run CPs and
 * writes skip the log's copy (fs_write's overflow path) within a few ops. */
static void run_workload(const struct step *s, int nops, uint64_t seed,
			 uint32_t log_max)
{
	struct fs_opts o = { .no_cp_thread = true, .log_sync_max = log_max };
	struct crashdev *cd = cd_new(base);
	struct run r;
	struct fs *fs;
	struct h_rng rng;
	char desc[1024];
	unsigned states = 0, bad = 0;

	ck_assert_int_le(nops, MAX_OPS);
	describe(s, nops, desc, sizeof(desc));
	if (log_max)
		snprintf(desc + strlen(desc), sizeof(desc) - strlen(desc),
			 " (log_sync_max %u)", log_max);
	memset(&r, 0, sizeof(r));
	r.nops = nops;
	h_rng_seed(&rng, seed);
	fs = h_mount_opts(cd_bdev(cd), &o);
	cd_reset(cd); /* the mount's own CP is not under test */
	r.state[0] = h_dump_tree(fs);
	for (int k = 0; k <= nops; k++)
		r.durable_op[k] = UINT64_MAX;
	r.durable_op[0] = 0;
	for (int i = 0; i < nops; i++) {
		uint64_t ino;
		int rc = 0;

		r.start[i] = cd_writes(cd);
		ino = run_op(fs, s[i].op, i);
		if (s[i].sync != SY_NONE)
			rc = fs_fsync(fs, ino, s[i].sync == SY_FDATASYNC);
		ck_assert_msg(rc == 0, "[%s] fsync: %d", desc, rc);
		r.state[i + 1] = h_dump_tree(fs);
		/* prefix durability: a sync covers every earlier op */
		if (s[i].sync != SY_NONE)
			for (int k = 0; k <= i + 1; k++)
				if (r.durable_op[k] == UINT64_MAX)
					r.durable_op[k] = cd_writes(cd);
		if (s[i].cp_after) {
			ck_assert_int_eq(fs_cp(fs), 0);
			for (int k = 0; k <= i + 1; k++)
				if (r.durable_op[k] == UINT64_MAX)
					r.durable_op[k] = cd_writes(cd);
		}
	}
	r.start[nops] = r.unmount_start = cd_writes(cd);
	h_unmount(fs);
	ck_assert_msg(cd_durable(cd) == cd_writes(cd),
		      "[%s] unmount left unflushed writes", desc);

	for (uint64_t n = 1; n <= cd_writes(cd) + 1; n++) {
		static const struct { enum cd_policy pol; int tear; } plan[] = {
			{ CD_DROP_UNFLUSHED, CD_TEAR_DROP },
			{ CD_DROP_UNFLUSHED, CD_TEAR_PREFIX },
			{ CD_DROP_UNFLUSHED, CD_TEAR_GARBAGE },
			{ CD_RANDOM_UNFLUSHED, -1 },    /* random tear */
			{ CD_RANDOM_UNFLUSHED, -1 },
			{ CD_KEEP_UNFLUSHED, CD_TEAR_NONE },
			{ CD_KEEP_UNFLUSHED, CD_TEAR_PREFIX },
		};
		for (size_t p = 0; p < sizeof(plan) / sizeof(plan[0]); p++) {
			enum cd_tear t = plan[p].tear >= 0 ? (enum cd_tear)plan[p].tear
				: (enum cd_tear)(h_rng_next(&rng) % 4);

			bad += check_state(&r, cd, n, plan[p].pol, t, &rng, desc,
					   p == 0 && n % 4 == 0);
			states++;
		}
	}
	atomic_fetch_add(&tot->states, states);
	atomic_fetch_add(&tot->failures, bad);
	atomic_fetch_add(&tot->workloads, 1);
	for (int k = 0; k <= nops; k++)
		free(r.state[k]);
	cd_free(cd);
	ck_assert_msg(bad == 0, "[%s] %u of %u crash states failed (seed %llu)",
		      desc, bad, states, (unsigned long long)seed);
}

/* ---- the tests ---- */

static void setup(void)
{
	make_base();
}

static void teardown(void)
{
	h_verify(base);
	bdev_close(base);
}

/* Loop i = first op and its sync: alone, then followed by every op+sync
 * (with a CP between them when (i + j) % 3 == 0). */
START_TEST(test_short_sequences)
{
	struct step s[2];
	int op1 = _i / NSYNC, sy1 = _i % NSYNC;

	if (quick && _i % 9 != 0)
		return;
	s[0] = (struct step){ op1, sy1, false };
	run_workload(s, 1, 1000 + _i, 0);
	for (int j = 0; j < NOPS * NSYNC; j++) {
		s[0].cp_after = (_i + j) % 3 == 0;
		s[1] = (struct step){ j / NSYNC, j % NSYNC, false };
		run_workload(s, 2, 1000 + _i * 100 + j, j % 2 ? 1024 : 0);
	}
}
END_TEST

START_TEST(test_random_sequences)
{
	uint64_t seed = h_seed() + _i;
	struct h_rng rng;
	struct step s[MAX_OPS];
	int n;

	h_rng_seed(&rng, seed);
	n = 6 + (int)(h_rng_next(&rng) % (MAX_OPS - 6));
	for (int i = 0; i < n; i++) {
		s[i].op = (enum op)(h_rng_next(&rng) % NOPS);
		s[i].sync = (enum sync)(h_rng_next(&rng) % NSYNC);
		s[i].cp_after = h_rng_next(&rng) % 6 == 0;
	}
	run_workload(s, n, seed, _i % 2 ? 1024 : 0);
}
END_TEST

/* Runs after the others (Check keeps the order): the totals. */
START_TEST(test_totals)
{
	unsigned long states = atomic_load(&tot->states);
	unsigned long want = quick ? 2000 : 20000;

	printf("crash: %lu workloads, %lu crash states checked (and %lu "
	       "crashes during their recovery), %lu failed\n",
	       (unsigned long)atomic_load(&tot->workloads), states,
	       (unsigned long)atomic_load(&tot->depth2),
	       (unsigned long)atomic_load(&tot->failures));
	fflush(stdout);
	ck_assert_uint_eq(atomic_load(&tot->failures), 0);
	ck_assert_uint_ge(states, want);
}
END_TEST

static Suite *crash_suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_short_sequences, 0, NOPS * NSYNC);
	tcase_add_loop_test(tc, test_random_sequences, 0, quick ? 20 : 200);
	suite_add_tcase(s, tc);
	tc = tcase_create("totals");
	tcase_add_test(tc, test_totals);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;
	const char *q = getenv("TWINFS_CRASH_QUICK");

	quick = q && *q && strcmp(q, "0");
	/* Thousands of image-sized buffers: reuse freed memory instead of
	 * mapping and faulting in fresh pages each time (halves the run). */
	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	h_quiet_log();
	h_seed_init("test_crash random sequences (iteration i uses seed + i)");
	tot = mmap(NULL, sizeof(*tot), PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (tot == MAP_FAILED)
		return 99;
	sr = srunner_create(crash_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
