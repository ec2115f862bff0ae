/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * twinfsctl - talk to a running twinfs mount over its control socket.
 *
 *   twinfsctl [-H] [--json] status MOUNTPOINT
 *   twinfsctl cp MOUNTPOINT
 *   twinfsctl snapshot create|delete MOUNTPOINT NAME...
 *   twinfsctl [-H] [--json] snapshot list MOUNTPOINT
 */
#include <time.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "format.h"
#include "frame.h"
#include "twinfs.h"
#include "twinfs.pb-c.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: twinfsctl [options] COMMAND MOUNTPOINT [ARGS]\n"
		"\n"
		"commands:\n"
		"  status                         generation, CPs, dirty and log bytes, space\n"
		"  cp                             run a consistency point now; returns once durable\n"
		"  snapshot create MNT NAME...    make snapshots (one CP each); durable on return\n"
		"  snapshot delete MNT NAME...    delete snapshots and free what only they held\n"
		"  snapshot list MNT              name, CP generation, time, referenced and unique bytes\n"
		"  snapshot rollback [--force] MNT NAME\n"
		"                                 return the live tree to NAME; --force deletes\n"
		"                                 newer snapshots (refused without it)\n"
		"  snapshot diff MNT FROM [TO]    what changed from FROM to TO (default: the live\n"
		"                                 tree): + created, - removed, M modified, R renamed\n"
		"\n"
		"Snapshots are browsable, read-only, under MNT/.snapshot/NAME.\n"
		"\n"
		"options:\n"
		"  -H          scripting output: no header, tab-separated, exact numbers\n"
		"  --json      JSON output\n"
		"  -h, --help  this text\n"
		"  -V, --version\n"
		"\n"
		"The mount listens on /run/twinfs/<mountpoint>.sock (root) or\n"
		"$XDG_RUNTIME_DIR/twinfs/ (other users); TWINFS_RUN_DIR overrides.\n");
}

static int connect_to(const char *mnt)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rc = ctl_socket_path(mnt, sa.sun_path, sizeof(sa.sun_path));
	int fd;

	if (rc) {
		fprintf(stderr, "twinfsctl: %s: %s\n", mnt, strerror(-rc));
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "twinfsctl: %s: no twinfs mount answers at %s: %s\n",
			mnt, sa.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void print_status(const Twinfs__CtlStatus *s, int fmt)
{
	if (fmt == 2) {
		printf("{\"generation\": %llu, \"cps\": %llu, \"dirty_bytes\": %llu, "
		       "\"log_bytes\": %llu, \"total_blocks\": %llu, "
		       "\"free_blocks\": %llu, \"inodes\": %llu, "
		       "\"last_cp_usec\": %llu, \"block_size\": %u, "
		       "\"transport\": \"%s\"}\n",
		       (unsigned long long)s->generation,
		       (unsigned long long)s->cps,
		       (unsigned long long)s->dirty_bytes,
		       (unsigned long long)s->log_bytes,
		       (unsigned long long)s->total_blocks,
		       (unsigned long long)s->free_blocks,
		       (unsigned long long)s->inodes,
		       (unsigned long long)s->last_cp_usec, TFS_BLOCK_SIZE,
		       s->transport && !strchr(s->transport, '"') ?
		       s->transport : "");
		return;
	}
	if (fmt == 1) {
		printf("%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\n",
		       (unsigned long long)s->generation,
		       (unsigned long long)s->cps,
		       (unsigned long long)s->dirty_bytes,
		       (unsigned long long)s->log_bytes,
		       (unsigned long long)s->total_blocks,
		       (unsigned long long)s->free_blocks,
		       (unsigned long long)s->inodes,
		       (unsigned long long)s->last_cp_usec);
		return;
	}
	printf("image:        %s\n", s->image ? s->image : "");
	if (s->label && *s->label)
		printf("label:        %s\n", s->label);
	printf("generation:   %llu\n", (unsigned long long)s->generation);
	printf("CPs written:  %llu (last took %.1f ms)\n",
	       (unsigned long long)s->cps, s->last_cp_usec / 1000.0);
	printf("dirty:        %.1f MiB in blocks, %.1f MiB in the intent log\n",
	       s->dirty_bytes / 1048576.0, s->log_bytes / 1048576.0);
	printf("space:        %.1f MiB free of %.1f MiB\n",
	       s->free_blocks * (double)TFS_BLOCK_SIZE / 1048576.0,
	       s->total_blocks * (double)TFS_BLOCK_SIZE / 1048576.0);
	printf("inodes:       %llu\n", (unsigned long long)s->inodes);
	if (s->transport && *s->transport)
		printf("requests:     through %s\n", s->transport);
}

static void fmt_bytes(char *out, size_t n, uint64_t b)
{
	const char *u[] = { "B", "K", "M", "G", "T", "P" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(out, n, i ? "%.1f%s" : "%.0f%s", v, u[i]);
}

static void print_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void print_snaps(const Twinfs__CtlResponse *r, int fmt)
{
	if (fmt == 2)
		printf("[");
	else if (fmt == 0)
		printf("%-24s %10s  %-19s %9s %9s\n", "NAME", "GEN", "CREATED",
		       "REFER", "UNIQUE");
	for (size_t i = 0; i < r->n_snapshots; i++) {
		const Twinfs__SnapInfo *s = r->snapshots[i];
		char when[32], ref[16], uniq[16];
		time_t t = (time_t)s->time_sec;
		struct tm tm;

		if (fmt == 1) {
			printf("%s\t%llu\t%lld\t%llu\t%llu\n", s->name,
			       (unsigned long long)s->generation,
			       (long long)s->time_sec,
			       (unsigned long long)s->referenced_bytes,
			       (unsigned long long)s->unique_bytes);
			continue;
		}
		if (fmt == 2) {
			printf("%s{\"name\": ", i ? ", " : "");
			print_json_str(s->name);
			printf(", \"generation\": %llu, \"time\": %lld, "
			       "\"referenced_bytes\": %llu, \"unique_bytes\": %llu}",
			       (unsigned long long)s->generation,
			       (long long)s->time_sec,
			       (unsigned long long)s->referenced_bytes,
			       (unsigned long long)s->unique_bytes);
			continue;
		}
		localtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		fmt_bytes(ref, sizeof(ref), s->referenced_bytes);
		fmt_bytes(uniq, sizeof(uniq), s->unique_bytes);
		printf("%-24s %10llu  %-19s %9s %9s\n", s->name,
		       (unsigned long long)s->generation, when, ref, uniq);
	}
	if (fmt == 2)
		printf("]\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "json", no_argument, NULL, 'j' },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	Twinfs__CtlRequest req = TWINFS__CTL_REQUEST__INIT;
	Twinfs__CtlResponse *resp = NULL;
	ProtobufCMessage *m;
	int fmt = 0, c, fd, rc;
	const char *cmd;

	while ((c = getopt_long(argc, argv, "+HhVf", longopts, NULL)) != -1) {
		switch (c) {
		case 'H': fmt = 1; break;
		case 'f': req.force = 1; break;
		case 'j': fmt = 2; break;
		case 'h': usage(stdout); return 0;
		case 'V':
			printf("twinfsctl %s (on-disk format %d)\n",
			       TWINFS_VERSION_STRING, TFS_VERSION);
			return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (!strcmp(cmd, "status")) {
		req.op = TWINFS__CTL_REQUEST__OP__STATUS;
	} else if (!strcmp(cmd, "cp")) {
		req.op = TWINFS__CTL_REQUEST__OP__CP;
	} else if (!strcmp(cmd, "snapshot") && argc - optind >= 2) {
		const char *verb = argv[optind++];
		if (!strcmp(verb, "create"))
			req.op = TWINFS__CTL_REQUEST__OP__SNAP_CREATE;
		else if (!strcmp(verb, "delete") || !strcmp(verb, "destroy"))
			req.op = TWINFS__CTL_REQUEST__OP__SNAP_DELETE;
		else if (!strcmp(verb, "list"))
			req.op = TWINFS__CTL_REQUEST__OP__SNAP_LIST;
		else if (!strcmp(verb, "rollback"))
			req.op = TWINFS__CTL_REQUEST__OP__SNAP_ROLLBACK;
		else if (!strcmp(verb, "diff"))
			req.op = TWINFS__CTL_REQUEST__OP__SNAP_DIFF;
		else {
			fprintf(stderr, "twinfsctl: unknown snapshot command '%s'\n",
				verb);
			return 2;
		}
		/* getopt stops at the command: options may follow it */
		while (optind < argc && argv[optind][0] == '-') {
			const char *o = argv[optind++];
			if (!strcmp(o, "--force") || !strcmp(o, "-f"))
				req.force = 1;
			else if (!strcmp(o, "-H"))
				fmt = 1;
			else if (!strcmp(o, "--json"))
				fmt = 2;
			else {
				fprintf(stderr, "twinfsctl: unknown option %s\n", o);
				return 2;
			}
		}
		if (argc - optind < 1 ||
		    (req.op == TWINFS__CTL_REQUEST__OP__SNAP_LIST &&
		     argc - optind != 1) ||
		    (req.op == TWINFS__CTL_REQUEST__OP__SNAP_ROLLBACK &&
		     argc - optind != 2) ||
		    (req.op == TWINFS__CTL_REQUEST__OP__SNAP_DIFF &&
		     (argc - optind < 2 || argc - optind > 3)) ||
		    (req.op <= TWINFS__CTL_REQUEST__OP__SNAP_DELETE &&
		     argc - optind < 2)) {
			fprintf(stderr, "twinfsctl: snapshot %s: %s\n", verb,
				req.op == TWINFS__CTL_REQUEST__OP__SNAP_LIST ?
				"takes only MOUNTPOINT" : "needs MOUNTPOINT NAME...");
			return 2;
		}
		req.n_names = (size_t)(argc - optind - 1);
		req.names = argv + optind + 1;
	} else {
		fprintf(stderr, "twinfsctl: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	if (req.op <= TWINFS__CTL_REQUEST__OP__CP && argc - optind != 1) {
		usage(stderr);
		return 2;
	}
	optind--; /* argv[optind + 1] is the mountpoint below */
	fd = connect_to(argv[optind + 1]);
	if (fd < 0)
		return 1;
	rc = frame_write_fd(fd, &req.base);
	if (!rc)
		rc = frame_read_fd(fd, &twinfs__ctl_response__descriptor,
				   64u << 20, &m);
	close(fd);
	if (rc) {
		fprintf(stderr, "twinfsctl: %s: %s\n", argv[optind + 1],
			strerror(-rc));
		return 1;
	}
	resp = (Twinfs__CtlResponse *)m;
	rc = resp->error;
	if (rc)
		fprintf(stderr, "twinfsctl: %s failed: %s\n", cmd,
			resp->message && *resp->message ? resp->message :
			strerror(rc));
	else if (req.op == TWINFS__CTL_REQUEST__OP__SNAP_LIST)
		print_snaps(resp, fmt);
	else if (req.op == TWINFS__CTL_REQUEST__OP__SNAP_DIFF)
		for (size_t i = 0; i < resp->n_diff; i++) {
			const Twinfs__DiffEntry *d = resp->diff[i];
			if (*d->kind == 'R')
				printf(fmt == 1 ? "R\t%s\t%s\n" : "R\t%s -> %s\n",
				       d->path, d->new_path);
			else
				printf("%s\t%s\n", d->kind, d->path);
		}
	else if (req.op >= TWINFS__CTL_REQUEST__OP__SNAP_CREATE)
		; /* quiet on success, like zfs */
	else if (resp->status && (req.op == TWINFS__CTL_REQUEST__OP__STATUS ||
				  fmt))
		print_status(resp->status, fmt);
	else if (resp->status)
		printf("CP done: generation %llu\n",
		       (unsigned long long)resp->status->generation);
	twinfs__ctl_response__free_unpacked(resp, NULL);
	return rc ? 1 : 0;
}
