/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mkfs.c - mkfs.twinfs: make a new, empty twinfs on an image file or a
 * block device.  The format itself is written by fs_format() (no second
 * encoder); this file parses options, checks that nothing valuable is
 * overwritten (our own magic, or any signature libblkid knows) and
 * prints a summary.  Exit status as mkfs(8): 0 done, 1 anything else.
 *
 * A new image file is created sparse (ftruncate), so a 1 TiB image costs
 * only the metadata fs_format writes.  -n runs fs_format against a null
 * device that keeps only the superblock, so the summary is exact and
 * nothing is written.
 */
#include <blkid.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bdev.h"
#include "format.h"
#include "imagelock.h"
#include "twinfs.h"

#define PROG "mkfs.twinfs"

struct mkfs_args {
	const char *image;
	uint64_t size;           /* bytes; 0: the existing size */
	const char *label;
	uint8_t uuid[16];
	bool have_uuid;
	bool force, quiet, dry_run;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options] IMAGE\n"
		"\n"
		"Make a new, empty twinfs on IMAGE (a file or a block device).\n"
		"\n"
		"options:\n"
		"  -s SIZE        size in bytes; k, m, g, t suffixes (1024-based).\n"
		"                 Default: the size of IMAGE.  Required when IMAGE\n"
		"                 does not exist: it is then created sparse.\n"
		"  -L LABEL       volume label (up to 63 bytes)\n"
		"  -U UUID        volume UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx);\n"
		"                 default: random\n"
		"  -f, -F, --force  overwrite an existing file system or signature\n"
		"  -q, --quiet    print nothing on success\n"
		"  -n, --dry-run  show what would be done; write nothing\n"
		"  -h, --help     this help\n"
		"  -V, --version  version and on-disk format version\n"
		"\n"
		"Exit status: 0 success, 1 failure.\n");
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* "10G", "512m", "4096": bytes, 1024-based suffixes. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -errno;
	switch (tolower((unsigned char)*end)) {
	case 0: break;
	case 'k': shift = 10; end++; break;
	case 'm': shift = 20; end++; break;
	case 'g': shift = 30; end++; break;
	case 't': shift = 40; end++; break;
	default: return -EINVAL;
	}
	if (shift && (*end == 'i' || *end == 'I'))
		end++;
	if (shift && (*end == 'b' || *end == 'B'))
		end++;
	if (*end)
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The 36-character form 8-4-4-4-12. */
static int parse_uuid(const char *s, uint8_t out[16])
{
	unsigned n = 0;

	if (strlen(s) != 36)
		return -EINVAL;
	for (unsigned i = 0; i < 36; i++) {
		int hi, lo;
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -EINVAL;
			continue;
		}
		hi = hexval(s[i]);
		lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[n++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	return n == 16 ? 0 : -EINVAL;
}

static void format_uuid(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
		 u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static void human(uint64_t bytes, char *buf, size_t len)
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	unsigned u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
}

static void parse_args(int argc, char **argv, struct mkfs_args *a)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "label", required_argument, NULL, 'L' },
		{ "uuid", required_argument, NULL, 'U' },
		{ "force", no_argument, NULL, 'f' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "s:L:U:fFqnhV", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_size(optarg, &a->size) || a->size == 0)
				die("invalid size '%s' (examples: 10G, 512m, 1t)", optarg);
			break;
		case 'L':
			if (strlen(optarg) > 63)
				die("label '%s' is longer than 63 bytes", optarg);
			a->label = optarg;
			break;
		case 'U':
			if (parse_uuid(optarg, a->uuid))
				die("invalid UUID '%s' (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
				    optarg);
			a->have_uuid = true;
			break;
		case 'f':
		case 'F':
			a->force = true;
			break;
		case 'q':
			a->quiet = true;
			break;
		case 'n':
			a->dry_run = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf(PROG " %s (on-disk format %d)\n",
			       TWINFS_VERSION_STRING, TFS_VERSION);
			exit(0);
		default:
			usage(stderr);
			exit(1);
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, PROG ": %s\n", optind >= argc ?
			"no IMAGE given" : "more than one IMAGE given");
		usage(stderr);
		exit(1);
	}
	a->image = argv[optind];
}

/* Our own magic in either superblock slot. */
static bool has_twinfs_magic(int fd)
{
	for (unsigned slot = 0; slot < TFS_SB_SLOTS; slot++) {
		uint64_t magic;
		if (pread(fd, &magic, sizeof(magic),
			  (off_t)slot * TFS_BLOCK_SIZE) == sizeof(magic) &&
		    magic == TFS_MAGIC)
			return true;
	}
	return false;
}

/* What libblkid recognises on the image (a file system, RAID member,
 * partition table...), or NULL.  The result is static. */
static const char *blkid_signature(const char *path)
{
	static char what[128];
	const char *type = NULL, *usage_str = NULL;
	blkid_probe pr = blkid_new_probe_from_filename(path);
	int rc;

	if (!pr)
		return NULL;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE |
					  BLKID_SUBLKS_USAGE);
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);
	rc = blkid_do_safeprobe(pr);
	if (rc == 0) {
		if (blkid_probe_lookup_value(pr, "TYPE", &type, NULL) == 0) {
			blkid_probe_lookup_value(pr, "USAGE", &usage_str, NULL);
			snprintf(what, sizeof(what), "%s%s%s", type,
				 usage_str ? " " : "", usage_str ? usage_str : "");
		} else if (blkid_probe_lookup_value(pr, "PTTYPE", &type, NULL) == 0) {
			snprintf(what, sizeof(what), "a %s partition table", type);
		} else {
			snprintf(what, sizeof(what), "an unknown signature");
		}
	} else if (rc == -2) {
		snprintf(what, sizeof(what), "several conflicting signatures");
	}
	blkid_free_probe(pr);
	return rc == 0 || rc == -2 ? what : NULL;
}

/* ---- null device for -n: keeps only the superblock slots ------------- */
struct null_dev {
	uint8_t sb[TFS_SB_SLOTS][TFS_BLOCK_SIZE];
};

static int null_read(struct bdev *bd, uint64_t blkno, void *buf)
{
	struct null_dev *n = bd->priv;

	if (blkno < TFS_SB_SLOTS)
		memcpy(buf, n->sb[blkno], TFS_BLOCK_SIZE);
	else
		memset(buf, 0, TFS_BLOCK_SIZE);
	return 0;
}

static int null_write(struct bdev *bd, uint64_t blkno, const void *buf)
{
	struct null_dev *n = bd->priv;

	if (blkno < TFS_SB_SLOTS)
		memcpy(n->sb[blkno], buf, TFS_BLOCK_SIZE);
	return 0;
}

static int null_flush(struct bdev *bd)
{
	return 0;
}

static void null_close(struct bdev *bd)
{
	free(bd->priv);
}

static const struct bdev_ops null_ops = {
	.read = null_read, .write = null_write, .flush = null_flush,
	.close = null_close,
};

static int null_open(uint64_t nblocks, struct bdev **out)
{
	struct bdev *bd = calloc(1, sizeof(*bd));
	struct null_dev *n = calloc(1, sizeof(*n));

	if (!bd || !n) {
		free(bd);
		free(n);
		return -ENOMEM;
	}
	bd->ops = &null_ops;
	bd->priv = n;
	bd->nblocks = nblocks;
	*out = bd;
	return 0;
}

/* The newest valid superblock slot of what fs_format wrote. */
static int read_super(struct bdev *bd, struct tfs_super *out)
{
	struct tfs_super *sb = malloc(sizeof(*sb));
	bool found = false;

	if (!sb)
		return -ENOMEM;
	for (unsigned slot = 0; slot < TFS_SB_SLOTS; slot++) {
		if (bdev_read(bd, slot, sb) ||
		    fs_super_check(sb, bd->nblocks) != 0)
			continue;
		if (!found || get64(sb->s_gen) > get64(out->s_gen))
			memcpy(out, sb, sizeof(*sb));
		found = true;
	}
	free(sb);
	return found ? 0 : -EUCLEAN;
}

static void print_summary(const struct mkfs_args *a, const struct tfs_super *sb)
{
	char uuid[37], size[32], logsz[32];
	uint64_t nb = get64(sb->s_nblocks), lb = get64(sb->s_log_blocks);

	format_uuid(sb->s_uuid, uuid);
	human(nb * TFS_BLOCK_SIZE, size, sizeof(size));
	human(lb * TFS_BLOCK_SIZE, logsz, sizeof(logsz));
	printf("%s twinfs on %s\n", a->dry_run ? "Would create" : "Created",
	       a->image);
	printf("  label:       %.64s\n", sb->s_label[0] ? sb->s_label : "(none)");
	printf("  uuid:        %s\n", uuid);
	printf("  size:        %s (%" PRIu64 " bytes)\n", size,
	       nb * TFS_BLOCK_SIZE);
	printf("  blocks:      %" PRIu64 " of %u bytes\n", nb, TFS_BLOCK_SIZE);
	printf("  log size:    %s (%" PRIu64 " blocks)\n", logsz, lb);
	printf("  format:      version %u\n", get32(sb->s_version));
}

/* Write the intent log's region out (zeros: no valid log block).  In a
 * sparse image file each first write of a log block makes the host file
 * system allocate it, and the fsync that wrote it then waits for the
 * host's journal too: about 5.5k against 8k fsyncs/s here until the
 * region had been written once (64 MiB at most). */
static int log_fill(struct bdev *bd, const struct tfs_super *sb)
{
	enum { RUN = 256 };
	uint64_t lb = get64(sb->s_log_blocks);
	uint8_t *z = aligned_alloc(4096, (size_t)RUN * TFS_BLOCK_SIZE);
	void *bufs[RUN];
	int rc = 0;

	if (!z)
		return -ENOMEM;
	memset(z, 0, (size_t)RUN * TFS_BLOCK_SIZE);
	for (unsigned i = 0; i < RUN; i++)
		bufs[i] = z + (size_t)i * TFS_BLOCK_SIZE;
	for (uint64_t b = 0; b < lb && !rc; b += RUN)
		rc = bdev_write_run(bd, TFS_LOG_START + b, bufs,
				    lb - b < RUN ? (unsigned)(lb - b) : RUN);
	free(z);
	return rc;
}

/* Open (creating it sparse if needed) and size the image.  Returns the
 * size in bytes of the file system to make; sets *created. */
static uint64_t prepare_image(const struct mkfs_args *a, bool *created)
{
	struct stat st;
	uint64_t size;
	int fd;

	*created = false;
	if (stat(a->image, &st) < 0) {
		if (errno != ENOENT)
			die("cannot stat %s: %s", a->image, strerror(errno));
		if (!a->size)
			die("%s does not exist; give its size with -s SIZE (e.g. -s 10G)",
			    a->image);
		if (a->size / TFS_BLOCK_SIZE < TFS_MIN_BLOCKS ||
		    a->size / TFS_BLOCK_SIZE > TFS_MAX_BLOCKS)
			return a->size;  /* main() explains */
		if (a->dry_run)
			return a->size;
		fd = open(a->image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd < 0)
			die("cannot create %s: %s", a->image, strerror(errno));
		if (ftruncate(fd, (off_t)a->size) < 0) {
			int e = errno;
			unlink(a->image);
			die("cannot size %s to %" PRIu64 " bytes: %s", a->image,
			    a->size, strerror(e));
		}
		close(fd);
		*created = true;
		return a->size;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		die("%s is neither a regular file nor a block device", a->image);
	/* a mounted image (a running daemon, or a mounted block device)
	 * is refused even with -f: formatting it would destroy a live file
	 * system; the lock waits out a daemon still finishing */
	if (image_mounted(a->image))
		die("%s is mounted; unmount it first", a->image);
	if (!a->dry_run) {
		int lock_fd, rc;    /* held until exit */
		rc = image_lock(a->image, false, &lock_fd, PROG);
		if (rc == -EBUSY || rc == -ETIMEDOUT)
			die("%s is in use by another program", a->image);
		if (rc)
			die("cannot open %s: %s", a->image, strerror(-rc));
	}
	fd = open(a->image, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("cannot open %s: %s", a->image, strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		if (end < 0)
			die("cannot size %s: %s", a->image, strerror(errno));
		size = (uint64_t)end;
	} else {
		size = (uint64_t)st.st_size;
	}
	if (!a->force) {
		const char *sig = NULL;
		if (has_twinfs_magic(fd))
			die("%s already holds a twinfs file system; use -f to overwrite it",
			    a->image);
		if (size > 0)
			sig = blkid_signature(a->image);
		if (sig)
			die("%s contains %s; use -f to overwrite it", a->image, sig);
	}
	close(fd);
	if (!a->size)
		return size;
	if (a->size > size && S_ISBLK(st.st_mode))
		die("-s %" PRIu64 " is larger than the device (%" PRIu64 " bytes)",
		    a->size, size);
	return a->size;
}

int main(int argc, char **argv)
{
	struct mkfs_args a = { 0 };
	struct fs_format_opts fo = { 0 };
	struct tfs_super *sb;
	struct bdev *bd = NULL;
	uint64_t size, nblocks;
	bool created;
	int rc, rb;

	parse_args(argc, argv, &a);
	size = prepare_image(&a, &created);
	nblocks = size / TFS_BLOCK_SIZE;
	if (nblocks < TFS_MIN_BLOCKS) {
		if (created)
			unlink(a.image);
		die("%s: %" PRIu64 " bytes is too small; twinfs needs at least %u KiB",
		    a.image, size, TFS_MIN_BLOCKS * (TFS_BLOCK_SIZE / 1024));
	}
	if (nblocks > TFS_MAX_BLOCKS) {
		if (created)
			unlink(a.image);
		die("%s: %" PRIu64 " bytes is too big; twinfs holds at most %llu TiB",
		    a.image, size, (unsigned long long)(TFS_MAX_BLOCKS >> 28));
	}
	fo.nblocks = nblocks;
	fo.label = a.label;
	fo.uuid = a.have_uuid ? a.uuid : NULL;

	if (a.dry_run) {
		rc = null_open(nblocks, &bd);
	} else {
		rc = bdev_file_open(a.image, false, &bd);
		if (!rc && bd->nblocks < nblocks) {
			/* -s grows a regular file (sparse) */
			int fd = open(a.image, O_RDWR | O_CLOEXEC);
			bdev_close(bd);
			bd = NULL;
			if (fd < 0 || ftruncate(fd, (off_t)(nblocks * TFS_BLOCK_SIZE)) < 0)
				die("cannot grow %s to %" PRIu64 " bytes: %s", a.image,
				    nblocks * TFS_BLOCK_SIZE, strerror(errno));
			close(fd);
			rc = bdev_file_open(a.image, false, &bd);
		}
	}
	if (rc)
		die("cannot open %s: %s", a.image, strerror(-rc));
	sb = malloc(sizeof(*sb));
	if (!sb)
		die("out of memory");
	/* the superblock read back once: checked, and it sizes the log
	 * (on the dry run's null device log_fill writes nothing) */
	rc = fs_format(bd, &fo);
	if (!rc && (rb = read_super(bd, sb)) != 0) {
		bdev_close(bd);
		die("%s: the new superblock does not read back: %s", a.image,
		    strerror(-rb));
	}
	if (!rc)
		rc = log_fill(bd, sb);
	if (!rc)
		rc = bdev_flush(bd);
	bdev_close(bd);
	if (rc) {
		if (created)
			unlink(a.image);
		die("formatting %s failed: %s", a.image, strerror(-rc));
	}
	if (!a.quiet)
		print_summary(&a, sb);
	free(sb);
	return 0;
}
