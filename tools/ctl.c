/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * twinfsctl - talk to a running twinfs mount over its control socket.
 *
 *   twinfsctl [-H] [--json] status MOUNTPOINT
 *   twinfsctl cp MOUNTPOINT
 */
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
		"usage: twinfsctl [options] COMMAND MOUNTPOINT\n"
		"\n"
		"commands:\n"
		"  status      generation, CPs, dirty and log bytes, space\n"
		"  cp          run a consistency point now; returns once durable\n"
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
		       "\"last_cp_usec\": %llu, \"block_size\": %u}\n",
		       (unsigned long long)s->generation,
		       (unsigned long long)s->cps,
		       (unsigned long long)s->dirty_bytes,
		       (unsigned long long)s->log_bytes,
		       (unsigned long long)s->total_blocks,
		       (unsigned long long)s->free_blocks,
		       (unsigned long long)s->inodes,
		       (unsigned long long)s->last_cp_usec, TFS_BLOCK_SIZE);
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
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	Twinfs__CtlRequest req = TWINFS__CTL_REQUEST__INIT;
	Twinfs__CtlResponse *resp = NULL;
	ProtobufCMessage *m;
	int fmt = 0, c, fd, rc;
	const char *cmd;

	while ((c = getopt_long(argc, argv, "HhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'H': fmt = 1; break;
		case 'j': fmt = 2; break;
		case 'h': usage(stdout); return 0;
		case 'V':
			printf("twinfsctl %s (on-disk format %d)\n",
			       TWINFS_VERSION_STRING, TFS_VERSION);
			return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	if (!strcmp(cmd, "status")) {
		req.op = TWINFS__CTL_REQUEST__OP__STATUS;
	} else if (!strcmp(cmd, "cp")) {
		req.op = TWINFS__CTL_REQUEST__OP__CP;
	} else {
		fprintf(stderr, "twinfsctl: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	fd = connect_to(argv[optind + 1]);
	if (fd < 0)
		return 1;
	rc = frame_write_fd(fd, &req.base);
	if (!rc)
		rc = frame_read_fd(fd, &twinfs__ctl_response__descriptor,
				   FRAME_CTL_MAX, &m);
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
	else if (resp->status && (req.op == TWINFS__CTL_REQUEST__OP__STATUS ||
				  fmt))
		print_status(resp->status, fmt);
	else if (resp->status)
		printf("CP done: generation %llu\n",
		       (unsigned long long)resp->status->generation);
	twinfs__ctl_response__free_unpacked(resp, NULL);
	return rc ? 1 : 0;
}
