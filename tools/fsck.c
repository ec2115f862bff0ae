/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fsck.c - fsck.twinfs: check (and with -y repair) a twinfs image, with
 * the exit codes of fsck(8):
 *
 *    0  no problems            4  problems left uncorrected
 *    1  problems corrected     8  operational error (cannot open/read)
 *                             16  usage error
 *
 * Flow.  An intent log that was not replayed is normal after a crash, not
 * a problem: the newest root is consistent by itself.
 *
 *   -n        open read-only, fs_verify(), report; nothing is written.
 *   default   fs_verify(); if the log holds records and the root is clean,
 *   -p, -y    replay it (fs_mount + fs_unmount write a CP) and verify again.
 *             Problems left: -y runs fs_repair() and verifies again;
 *             -p and the default only report them (exit 4), since a
 *             repair can move files to /lost+found.
 *
 * Output: one line per problem on stdout, then an e2fsck-style summary
 * "LABEL: N files, USED/TOTAL blocks".  --json prints one JSON object
 * instead.  -C FD writes "pass current max label" progress lines to FD.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bdev.h"
#include "format.h"
#include "imagelock.h"
#include "twinfs.h"

#define PROG "fsck.twinfs"

enum {
	FSCK_OK = 0,
	FSCK_CORRECTED = 1,
	FSCK_UNCORRECTED = 4,
	FSCK_ERROR = 8,
	FSCK_USAGE = 16,
};

enum fsck_mode { MODE_DEFAULT, MODE_NO, MODE_YES, MODE_PREEN };

struct fsck_args {
	const char *image;
	enum fsck_mode mode;
	bool force, verbose, json;
	int progress_fd;          /* -1: none */
};

/* Messages collected from the core, so --json can print them as a list. */
struct msgs {
	char **v;
	size_t n, cap;
	bool echo;                /* print each one on stdout as it comes */
	const char *prefix;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [-n|-y|-p|-a] [-f] [-C FD] [-v] [--json] IMAGE\n"
		"\n"
		"Check a twinfs image.  An unreplayed intent log is normal after a\n"
		"crash: it is replayed (unless -n) and reported as \"log replayed\".\n"
		"\n"
		"options:\n"
		"  -n         read-only: report problems, change nothing\n"
		"  -y         repair every problem found (may use /lost+found)\n"
		"  -p, -a     preen: replay the log; report other problems only\n"
		"  -f         check even if the image looks clean (always done)\n"
		"  -C FD      progress lines \"pass current max label\" on FD\n"
		"  -v         verbose\n"
		"  --json     print one JSON object with the statistics and problems\n"
		"  -h, --help     this help\n"
		"  -V, --version  version and on-disk format version\n"
		"\n"
		"Exit status (bits, as fsck(8)): 0 clean, 1 problems corrected,\n"
		"4 problems left, 8 operational error, 16 usage error.\n");
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	exit(FSCK_USAGE);
}

static void set_mode(struct fsck_args *a, enum fsck_mode m)
{
	if (a->mode != MODE_DEFAULT && a->mode != m)
		usage_error("only one of -n, -y and -p/-a may be given");
	a->mode = m;
}

static void parse_args(int argc, char **argv, struct fsck_args *a)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	long fd;
	int c;

	a->progress_fd = -1;
	while ((c = getopt_long(argc, argv, "nypafC:vhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': set_mode(a, MODE_NO); break;
		case 'y': set_mode(a, MODE_YES); break;
		case 'p':
		case 'a': set_mode(a, MODE_PREEN); break;
		case 'f': a->force = true; break;
		case 'v': a->verbose = true; break;
		case 'J': a->json = true; break;
		case 'C':
			errno = 0;
			fd = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || fd > 1 << 20)
				usage_error("invalid file descriptor '%s' for -C", optarg);
			/* e2fsck: 0 means a bar on the terminal, negative
			 * starts silent; we only write lines to fd > 0 */
			a->progress_fd = fd > 0 ? (int)fd : -1;
			break;
		case 'h':
			usage(stdout);
			exit(FSCK_OK);
		case 'V':
			printf(PROG " %s (on-disk format %d)\n",
			       TWINFS_VERSION_STRING, TFS_VERSION);
			exit(FSCK_OK);
		default:
			usage(stderr);
			exit(FSCK_USAGE);
		}
	}
	if (optind != argc - 1)
		usage_error("%s", optind >= argc ? "no IMAGE given" :
			    "more than one IMAGE given");
	a->image = argv[optind];
}

static void msgs_add(void *ctx, const char *msg)
{
	struct msgs *m = ctx;

	if (m->echo)
		printf("%s%s\n", m->prefix ? m->prefix : "", msg);
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		char **v = realloc(m->v, cap * sizeof(*v));
		if (!v)
			return;     /* keep counting on stdout; list is best effort */
		m->v = v;
		m->cap = cap;
	}
	m->v[m->n] = strdup(msg);
	if (m->v[m->n])
		m->n++;
}

static void msgs_clear(struct msgs *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i]);
	free(m->v);
	m->v = NULL;
	m->n = m->cap = 0;
}

static void progress(const struct fsck_args *a, unsigned pass, unsigned cur,
		     unsigned max, const char *label)
{
	if (a->progress_fd >= 0)
		dprintf(a->progress_fd, "%u %u %u %s\n", pass, cur, max, label);
}

/* During the check: -C FD lines (pass 1, blocks done, blocks in use) or,
 * when stderr is a terminal and -C was not given, a bar on stderr. */
struct bar {
	const struct fsck_args *a;
	int tty;
	unsigned last;
};

static void verify_progress(void *arg, uint64_t done, uint64_t total)
{
	struct bar *b = arg;
	unsigned pct = total ? (unsigned)(done * 100 / total) : 100;

	if (pct > 100)
		pct = 100;
	if (b->a->progress_fd >= 0) {
		dprintf(b->a->progress_fd, "1 %llu %llu %s\n",
			(unsigned long long)done, (unsigned long long)total,
			b->a->image);
	} else if (b->tty && pct != b->last) {
		char bar[41];
		memset(bar, '=', pct * 40 / 100);
		memset(bar + pct * 40 / 100, ' ', 40 - pct * 40 / 100);
		bar[40] = 0;
		fprintf(stderr, "\r%s: |%s| %3u%%", b->a->image, bar, pct);
		if (pct == 100)
			fputc('\n', stderr);
	}
	b->last = pct;
}

/* The core's log lines (replay counts, CP messages) only with -v. */
static bool log_verbose;
static void core_log(int level, const char *msg)
{
	if (log_verbose)
		fprintf(stderr, PROG ": %s\n", msg);
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_list(const char *key, const struct msgs *m)
{
	printf(",\n  ");
	json_str(key);
	printf(": [");
	for (size_t i = 0; i < m->n; i++) {
		printf(i ? ",\n    " : "\n    ");
		json_str(m->v[i]);
	}
	printf(m->n ? "\n  ]" : "]");
}

struct result {
	struct fs_verify_stats st;
	struct msgs fixes;        /* what -y repaired */
	int problems;             /* from the last verify */
	int repairs;
	bool replayed;
	uint64_t replayed_records;
	const char *error;        /* operational error text, or NULL */
};

/* fs_verify into m (cleared first); returns problems or -errno. */
static int verify(struct bdev *bd, struct msgs *m, struct fs_verify_stats *st)
{
	msgs_clear(m);
	return fs_verify(bd, msgs_add, m, st);
}

static int replay_log(struct bdev *bd)
{
	struct fs_opts o = { .no_cp_thread = true };
	struct fs *fs;
	int rc = fs_mount(bd, &o, &fs);

	if (rc)
		return rc;
	return fs_unmount(fs);   /* final CP: the replayed tree is durable */
}

static int check(const struct fsck_args *a, struct bdev *bd, struct msgs *m,
		 struct result *r)
{
	const char *label;
	int rc;

	rc = verify(bd, m, &r->st);
	if (rc < 0)
		return rc;
	r->problems = rc;
	label = r->st.label[0] ? r->st.label : a->image;
	if (a->mode != MODE_NO && r->problems == 0 && r->st.log_records) {
		r->replayed_records = r->st.log_records;
		rc = replay_log(bd);
		if (rc) {
			r->error = "replaying the intent log failed";
			return rc;
		}
		r->replayed = true;
		if (!a->json)
			printf("%s: log replayed (%" PRIu64 " records)\n", label,
			       r->replayed_records);
		rc = verify(bd, m, &r->st);
		if (rc < 0)
			return rc;
		r->problems = rc;
	}
	if (r->problems && a->mode == MODE_YES) {
		progress(a, 2, 0, 1, label);
		r->fixes.echo = !a->json;
		r->fixes.prefix = "repaired: ";
		rc = fs_repair(bd, msgs_add, &r->fixes);
		progress(a, 2, 1, 1, label);
		if (rc < 0) {
			r->error = "repair failed";
			return rc;
		}
		r->repairs = rc;
		if (!a->json)
			printf("%s: verifying again after %d repairs\n", label, rc);
		rc = verify(bd, m, &r->st);
		if (rc < 0)
			return rc;
		r->problems = rc;
	}
	return 0;
}

static void print_json(const struct fsck_args *a, const struct result *r,
		       const struct msgs *m, int status)
{
	const struct fs_verify_stats *s = &r->st;

	printf("{\n  \"image\": ");
	json_str(a->image);
	printf(",\n  \"label\": ");
	json_str(s->label);
	printf(",\n  \"generation\": %" PRIu64 ",\n  \"files\": %" PRIu64
	       ",\n  \"dirs\": %" PRIu64 ",\n  \"inodes\": %" PRIu64
	       ",\n  \"used_blocks\": %" PRIu64 ",\n  \"total_blocks\": %" PRIu64
	       ",\n  \"log_records\": %" PRIu64 ",\n  \"snapshots\": %" PRIu64
	       ",\n  \"log_replayed\": %s,\n  \"repairs\": %d",
	       s->gen, s->files, s->dirs, s->ninodes, s->used_blocks,
	       s->total_blocks, r->replayed ? r->replayed_records : s->log_records,
	       s->snapshots, r->replayed ? "true" : "false", r->repairs);
	if (r->error) {
		printf(",\n  \"error\": ");
		json_str(r->error);
	}
	json_list("problems", m);
	json_list("repaired", &r->fixes);
	printf(",\n  \"exit\": %d\n}\n", status);
}

int main(int argc, char **argv)
{
	struct fsck_args a = { 0 };
	struct result r = { 0 };
	struct msgs m = { 0 };
	struct bdev *bd;
	const char *label;
	int rc, status;

	parse_args(argc, argv, &a);
	m.echo = !a.json;
	log_verbose = a.verbose;
	fs_set_log(core_log);
	/* Replaying or repairing under a running daemon would destroy the
	 * file system; -n only reads. */
	if (a.mode != MODE_NO && image_mounted(a.image)) {
		fprintf(stderr, PROG ": %s is mounted; unmount it first or use -n\n",
			a.image);
		return FSCK_ERROR;
	}
	if (a.mode != MODE_NO) {
		int lock_fd;    /* held until exit */
		rc = image_lock(a.image, false, &lock_fd, PROG);
		if (rc) {
			fprintf(stderr, PROG ": %s: %s\n", a.image,
				rc == -EBUSY || rc == -ETIMEDOUT ?
				"in use by another program" : strerror(-rc));
			return FSCK_ERROR;
		}
	}
	rc = bdev_file_open(a.image, a.mode == MODE_NO, &bd);
	if (rc) {
		fprintf(stderr, PROG ": cannot open %s: %s\n", a.image,
			strerror(-rc));
		if (a.json) {
			r.error = "cannot open the image";
			print_json(&a, &r, &m, FSCK_ERROR);
		}
		return FSCK_ERROR;
	}
	progress(&a, 1, 0, 1, a.image);
	{
		static struct bar b;
		b.a = &a;
		b.tty = isatty(2) && !a.json;
		b.last = 101;
		fs_verify_progress(verify_progress, &b);
	}
	rc = check(&a, bd, &m, &r);
	fs_verify_progress(NULL, NULL);
	progress(&a, 1, 1, 1, a.image);
	bdev_close(bd);
	label = r.st.label[0] ? r.st.label : a.image;
	if (rc < 0) {
		fprintf(stderr, PROG ": %s: %s: %s\n", a.image,
			r.error ? r.error : "cannot check the image",
			strerror(-rc));
		if (!r.error)
			r.error = strerror(-rc);
		if (a.json)
			print_json(&a, &r, &m, FSCK_ERROR);
		msgs_clear(&m);
		msgs_clear(&r.fixes);
		return FSCK_ERROR;
	}
	if (r.problems)
		status = FSCK_UNCORRECTED;
	else if (r.repairs)
		status = FSCK_CORRECTED;
	else
		status = FSCK_OK;
	if (a.json) {
		print_json(&a, &r, &m, status);
	} else {
		if (r.problems && a.mode != MODE_YES)
			printf("%s: %d problem%s found; run " PROG " -y %s to repair\n",
			       label, r.problems, r.problems == 1 ? "" : "s",
			       a.image);
		else if (r.problems)
			printf("%s: %d problem%s left after repair\n", label,
			       r.problems, r.problems == 1 ? "" : "s");
		if (a.mode == MODE_NO && r.st.log_records)
			printf("%s: intent log holds %" PRIu64 " records (not "
			       "replayed: -n)\n", label, r.st.log_records);
		else if (!r.replayed && r.st.log_records)
			printf("%s: intent log holds %" PRIu64 " records, not "
			       "replayed because of the problems above\n", label,
			       r.st.log_records);
		if (a.verbose)
			printf("%s: generation %" PRIu64 ", %" PRIu64 " directories, %"
			       PRIu64 " snapshots, %" PRIu64 " log records\n",
			       label, r.st.gen, r.st.dirs, r.st.snapshots,
			       r.st.log_records);
		printf("%s: %" PRIu64 " files, %" PRIu64 "/%" PRIu64 " blocks\n",
		       label, r.st.ninodes, r.st.used_blocks, r.st.total_blocks);
	}
	msgs_clear(&m);
	msgs_clear(&r.fixes);
	return status;
}
