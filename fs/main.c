/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * main.c - the twinfs mount: `twinfs [options] IMAGE MOUNTPOINT`, also
 * run by mount(8) as `twinfs IMAGE DIR -o OPTS` for type fuse.twinfs.
 *
 * Order matters: the image is opened and mounted (log replay, a bad image
 * fails here with a message and exit 1) before the FUSE mount; the
 * process forks into the background only after the FUSE mount worked, so
 * mount(8) sees errors; threads (CP, control socket) start after the
 * fork.  Every way out of the loop (umount, fusermount3 -u, SIGTERM,
 * SIGINT, SIGHUP) ends with fs_unmount, which writes a final CP.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "ctl.h"
#include "format.h"
#include "fuse_ops.h"
#include "fuse_wire.h"
#include "imagelock.h"

struct options {
	char *image, *mountpoint_arg;
	unsigned cp_interval, cache_mb, dirty_mb, keep_cps, cache_timeout;
	unsigned readaround_kb;
	unsigned sched[4];
	char *snapdir;
	int ro, help, version, no_uring;
	unsigned atime;           /* FS_ATIME_* */
	bool nodiratime;
};

enum { KEY_HELP, KEY_VERSION, KEY_RO };

#define OPT(t, f) { t, offsetof(struct options, f), 1 }
static const struct fuse_opt opt_spec[] = {
	OPT("cp_interval=%u", cp_interval),
	OPT("cache_size=%u", cache_mb),
	OPT("dirty_max=%u", dirty_mb),
	OPT("keep_cps=%u", keep_cps),
	OPT("cache_timeout=%u", cache_timeout),
	OPT("no_uring", no_uring),
	OPT("readaround=%u", readaround_kb),
	OPT("hourly=%u", sched[0]),
	OPT("daily=%u", sched[1]),
	OPT("weekly=%u", sched[2]),
	OPT("monthly=%u", sched[3]),
	OPT("snapdir=%s", snapdir),
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_END
};

/* Options fstab and mount(8) may pass that mean nothing here. */
static const char *const ignored[] = {
	"defaults", "nofail", "_netdev", "noauto", "auto", "user", "nouser",
	"users", "owner", "rw", NULL
};

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct options *o = data;

	switch (key) {
	case KEY_HELP:
		o->help = 1;
		return 0;
	case KEY_VERSION:
		o->version = 1;
		return 0;
	case KEY_RO:
		o->ro = 1;
		return 1;         /* the kernel mount is read-only too */
	case FUSE_OPT_KEY_NONOPT:
		if (!o->image) {
			o->image = strdup(arg);
			return 0;
		}
		if (!o->mountpoint_arg) {
			o->mountpoint_arg = strdup(arg);
			return 1; /* fuse_parse_cmdline takes it */
		}
		fprintf(stderr, "twinfs: too many arguments: %s\n", arg);
		return -1;
	case FUSE_OPT_KEY_OPT:
		if (!strncmp(arg, "x-", 2))
			return 0;
		/* access time options: ours to follow (FUSE inodes are
		 * S_NOATIME in the kernel).  libfuse 3.14 passes noatime
		 * and atime on to the kernel and refuses the others */
		if (!strcmp(arg, "noatime")) {
			o->atime = FS_ATIME_NOATIME;
			return 1;
		}
		if (!strcmp(arg, "atime") || !strcmp(arg, "relatime")) {
			o->atime = FS_ATIME_RELATIME;
			return arg[0] == 'a';
		}
		if (!strcmp(arg, "strictatime")) {
			o->atime = FS_ATIME_STRICT;
			return 0;
		}
		if (!strcmp(arg, "nodiratime") || !strcmp(arg, "diratime")) {
			o->nodiratime = arg[0] == 'n';
			return 0;
		}
		for (const char *const *p = ignored; *p; p++)
			if (!strcmp(arg, *p))
				return 0;
		return 1;
	default:
		return 1;
	}
}

static void usage(const char *prog)
{
	printf("usage: %s [options] IMAGE MOUNTPOINT\n"
	       "       mount -t fuse.twinfs IMAGE MOUNTPOINT [-o options]\n"
	       "\n"
	       "Mount the twinfs image IMAGE (made by mkfs.twinfs) on MOUNTPOINT.\n"
	       "\n"
	       "twinfs options:\n"
	       "    -o cp_interval=SECONDS  consistency point timer (default 5, 0: off)\n"
	       "    -o dirty_max=MIB        start a CP when this much is dirty (default 64)\n"
	       "    -o cache_size=MIB       memory for blocks: cache, dirty data, the CP\n"
	       "                            in flight, the pending log (default 256)\n"
	       "    -o keep_cps=SECONDS     keep every CP of the last SECONDS as\n"
	       "                            .snapshot/@GENERATION\n"
	       "    -o hourly=N,daily=N,weekly=N,monthly=N\n"
	       "                            scheduled snapshots, keeping the newest N\n"
	       "    -o cache_timeout=SECONDS how long the kernel may keep names and\n"
	       "                            attributes (default 3600)\n"
	       "    -o readaround=KIB       a lone block read that misses the page cache\n"
	       "                            also reads the aligned KIB around it, while\n"
	       "                            that proves useful (default 256, 0: off;\n"
	       "                            a power of two from 8 to 4096)\n"
	       "    -o no_uring             requests through /dev/fuse only, even when\n"
	       "                            the kernel offers io_uring (fuse module\n"
	       "                            parameter enable_uring=Y, Linux 6.14+)\n"
	       "    -o snapdir=visible      list .snapshot in the root (default hidden;\n"
	       "                            always reachable by path)\n"
	       "    -o relatime|noatime|strictatime\n"
	       "                            when reads move the access time: after\n"
	       "                            a change or once a day (default), never,\n"
	       "                            always; -o nodiratime: not for listings\n"
	       "    -o ro                   open the image read-only\n"
	       "    -h, --help              this text\n"
	       "    -V, --version           versions\n"
	       "\n"
	       "Always on: default_permissions, fsname=IMAGE, subtype=twinfs.\n"
	       "\n"
	       "FUSE options:\n", prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

/* What fs_mount's error means to someone mounting an image. */
static const char *mount_error(int rc)
{
	switch (rc) {
	case -EINVAL:
		return "not a twinfs image";
	case -EUCLEAN:
	case -EBADMSG:
		return "not a twinfs image or damaged (run fsck.twinfs)";
	case -EPROTONOSUPPORT:
		return "unsupported on-disk format version";
	default:
		return strerror(-rc);
	}
}

static int daemonized;

static void log_fn(int level, const char *msg)
{
	if (daemonized)
		syslog(level, "%s", msg);
	else
		fprintf(stderr, "twinfs: %s\n", msg);
}

/* -o NAME=VALUE with the commas and backslashes of VALUE escaped, as
 * fuse_opt_parse splits option lists at unescaped commas. */
static int add_opt(struct fuse_args *args, const char *name, const char *val)
{
	char buf[2 * PATH_MAX + 64];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "-o%s=", name);

	for (; *val && n + 3 < sizeof(buf); val++) {
		if (*val == ',' || *val == '\\')
			buf[n++] = '\\';
		buf[n++] = *val;
	}
	buf[n] = 0;
	return fuse_opt_add_arg(args, buf);
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts copts = { 0 };
	/* Names and attributes only change through this mount (a rollback
	 * tells the kernel what it changed), so the kernel may keep them
	 * long: an hour, as zfs-fuse is shipped in Debian. */
	struct options o = { .cp_interval = 5, .cache_timeout = 3600,
			     .readaround_kb = BDEV_READAROUND_DEFAULT * 4 };
	struct fs_opts fo = { 0 };
	struct tfuse t = { 0 };
	struct ctl *ctl = NULL;
	char image[PATH_MAX];
	struct bdev *bd = NULL;
	int rc, ret = 1, lock_fd = -1;

	fs_set_log(log_fn);
	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) == -1)
		return 1;
	if (o.help) {
		usage(argv[0]);
		ret = 0;
		goto out_args;
	}
	if (o.version) {
		printf("twinfs %s (on-disk format %d), libfuse %s\n",
		       TWINFS_VERSION_STRING, TFS_VERSION, fuse_pkgversion());
		ret = 0;
		goto out_args;
	}
	if (!o.image || !o.mountpoint_arg) {
		fprintf(stderr, "usage: %s [options] IMAGE MOUNTPOINT "
			"(--help for more)\n", argv[0]);
		goto out_args;
	}
	if (o.snapdir && strcmp(o.snapdir, "visible") &&
	    strcmp(o.snapdir, "hidden")) {
		fprintf(stderr, "twinfs: snapdir=%s: use visible or hidden\n",
			o.snapdir);
		goto out_args;
	}
	if (o.readaround_kb && (o.readaround_kb < 8 || o.readaround_kb > 4096 ||
				(o.readaround_kb & (o.readaround_kb - 1)))) {
		fprintf(stderr, "twinfs: readaround=%u: use 0, or a power of "
			"two from 8 to 4096 (KiB)\n", o.readaround_kb);
		goto out_args;
	}
	if (!realpath(o.image, image)) {
		fprintf(stderr, "twinfs: %s: %s\n", o.image, strerror(errno));
		goto out_args;
	}
	if (fuse_opt_add_arg(&args, "-odefault_permissions") ||
	    add_opt(&args, "fsname", image) ||
	    fuse_opt_add_arg(&args, "-osubtype=twinfs"))
		goto out_args;
	if (fuse_parse_cmdline(&args, &copts) != 0)
		goto out_args;
	if (!copts.mountpoint) {
		fprintf(stderr, "twinfs: no mountpoint\n");
		goto out_args;
	}
	rc = image_lock(image, o.ro, &lock_fd, "twinfs");
	if (rc == -EBUSY || rc == -ETIMEDOUT) {
		fprintf(stderr, "twinfs: %s: %s\n", o.image, rc == -EBUSY ?
			"in use by another mount" :
			"still in use by another program");
		goto out_args;
	}
	if (!rc)
		rc = bdev_file_open(image, o.ro, &bd);
	if (rc) {
		fprintf(stderr, "twinfs: %s: %s\n", o.image, strerror(-rc));
		goto out_args;
	}
	bdev_file_readaround(bd, o.readaround_kb / 4);
	t.timeout = o.cache_timeout;
	fo.ro = o.ro;
	fo.no_cp_thread = true; /* started after the fork */
	fo.cp_interval_ms = o.cp_interval * 1000;
	fo.cache_max = (uint64_t)o.cache_mb << 20;
	fo.dirty_max = (uint64_t)o.dirty_mb << 20;
	fo.keep_cps = o.keep_cps;
	memcpy(fo.sched, o.sched, sizeof(fo.sched));
	fo.snapdir_visible = o.snapdir && !strcmp(o.snapdir, "visible");
	fo.atime = o.atime;
	fo.nodiratime = o.nodiratime;
	fo.inval = tfuse_inval;
	fo.inval_entry = tfuse_inval_entry;
	fo.inval_arg = &t;
	rc = fs_mount(bd, &fo, &t.fs);
	if (rc) {
		fprintf(stderr, "twinfs: %s: %s\n", o.image, mount_error(rc));
		goto out_bdev;
	}
	t.se = fuse_session_new(&args, &tfuse_ops, sizeof(tfuse_ops), &t);
	if (!t.se)
		goto out_fs;
	/* libfuse leaves an ignored signal ignored; a shell starts
	 * background jobs with SIGINT ignored, yet kill -INT must unmount */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (fuse_set_signal_handlers(t.se))
		goto out_session;
	if (fuse_session_mount(t.se, copts.mountpoint))
		goto out_signals;
	if (fwire_install(t.se, !o.no_uring))
		goto out_unmount;
	if (fuse_daemonize(copts.foreground))
		goto out_unmount;
	daemonized = !copts.foreground;
	if (daemonized)
		openlog("twinfs", LOG_PID, LOG_DAEMON);
	rc = fs_start_threads(t.fs);
	if (rc) {
		log_fn(LOG_ERR, "cannot start the CP thread");
		goto out_unmount;
	}
	rc = ctl_start(t.fs, copts.mountpoint, image, &ctl);
	if (rc) {
		char msg[256];
		snprintf(msg, sizeof(msg), "no control socket: %s",
			 strerror(-rc));
		log_fn(LOG_WARNING, msg);
		ctl = NULL;
	}
	if (copts.singlethread) {
		rc = fuse_session_loop(t.se);
	} else {
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(cfg, copts.clone_fd);
		fuse_loop_cfg_set_max_threads(cfg, copts.max_threads);
		/* UINT_MAX: not given (libfuse would log it as invalid) */
		fuse_loop_cfg_set_idle_threads(cfg,
			copts.max_idle_threads == UINT_MAX ? 10 :
			copts.max_idle_threads);
		rc = fuse_session_loop_mt(t.se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	/* a signal ends the loop with its number: a normal way out */
	ret = rc < 0 ? 1 : 0;
	ctl_stop(ctl);
out_unmount:
	fuse_session_unmount(t.se);
	fwire_stop();
out_signals:
	fuse_remove_signal_handlers(t.se);
out_session:
	fuse_session_destroy(t.se);
	t.se = NULL;
out_fs:
	rc = fs_unmount(t.fs);   /* the final CP */
	if (rc) {
		char msg[256];
		snprintf(msg, sizeof(msg), "final CP failed: %s", strerror(-rc));
		log_fn(LOG_ERR, msg);
		ret = 1;
	}
out_bdev:
	bdev_close(bd);
out_args:
	if (lock_fd >= 0)
		close(lock_fd);
	free(copts.mountpoint);
	fuse_opt_free_args(&args);
	free(o.image);
	free(o.mountpoint_arg);
	free(o.snapdir);
	return ret;
}
