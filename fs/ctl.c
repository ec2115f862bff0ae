/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ctl.c - control socket and signals of the twinfs mount.
 *
 * One libuv loop thread owns every handle here.  A request is one frame
 * (proto/frame.h) carrying a CtlRequest; the fs call runs on libuv's
 * thread pool (a CP may take a while) and the answer is one CtlResponse.
 * SIGUSR1 asks for a CP the same way.  Requests are untrusted: frames
 * are size-limited, and anything that does not decode closes the
 * connection.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "ctl.h"
#include "fuse_wire.h"
#include "frame.h"
#include "twinfs.pb-c.h"

struct ctl {
	struct fs *fs;
	uv_loop_t loop;
	uv_pipe_t server;
	uv_signal_t usr1;
	uv_async_t stop;
	pthread_t thread;
	char path[256];
	char image[4096];
};

struct conn {
	uv_pipe_t pipe;           /* first: handle casts */
	struct ctl *ctl;
	struct frame_rx rx;
	uv_work_t work;
	Twinfs__CtlRequest *req;
	int rc;
	char errname[160];        /* the snapshot name a request failed on */
	struct fs_status st;
	struct fs_snap_info *snaps;
	int nsnaps;
	char **diff;              /* "K\0path\0newpath" strings */
	size_t ndiff, capdiff;
	bool busy, closing;
};

static void conn_close_cb(uv_handle_t *h)
{
	struct conn *c = (struct conn *)h;

	frame_rx_free(&c->rx);
	free(c->snaps);
	for (size_t i = 0; i < c->ndiff; i++)
		free(c->diff[i]);
	free(c->diff);
	if (c->req)
		twinfs__ctl_request__free_unpacked(c->req, NULL);
	free(c);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->busy)
		return; /* after_work closes it */
	uv_close((uv_handle_t *)&c->pipe, conn_close_cb);
}

static int diff_cb(void *ctx, char kind, const char *path,
		   const char *newpath)
{
	struct conn *c = ctx;
	size_t a = strlen(path), b = newpath ? strlen(newpath) : 0;
	char *e;

	if (c->ndiff == c->capdiff) {
		size_t cap = c->capdiff ? c->capdiff * 2 : 64;
		char **nd = realloc(c->diff, cap * sizeof(*nd));
		if (!nd)
			return -ENOMEM;
		c->diff = nd;
		c->capdiff = cap;
	}
	e = malloc(a + b + 4);
	if (!e)
		return -ENOMEM;
	e[0] = kind;
	e[1] = 0;
	memcpy(e + 2, path, a + 1);
	if (newpath)
		memcpy(e + 3 + a, newpath, b + 1);
	else
		e[3 + a] = 0;
	c->diff[c->ndiff++] = e;
	return 0;
}

static void do_work(uv_work_t *w)
{
	struct conn *c = w->data;

	struct fs *fs = c->ctl->fs;
	int n;

	c->rc = 0;
	c->errname[0] = 0;
	switch (c->req->op) {
	case TWINFS__CTL_REQUEST__OP__CP:
		c->rc = fs_cp(fs);
		break;
	case TWINFS__CTL_REQUEST__OP__SNAP_CREATE:
	case TWINFS__CTL_REQUEST__OP__SNAP_DELETE:
		for (size_t i = 0; i < c->req->n_names && !c->rc; i++) {
			c->rc = c->req->op == TWINFS__CTL_REQUEST__OP__SNAP_CREATE ?
				fs_snap_create(fs, c->req->names[i]) :
				fs_snap_delete(fs, c->req->names[i]);
			if (c->rc)
				snprintf(c->errname, sizeof(c->errname), "%s",
					 c->req->names[i]);
		}
		if (!c->req->n_names)
			c->rc = -EINVAL;
		break;
	case TWINFS__CTL_REQUEST__OP__SNAP_LIST:
		n = fs_snap_list(fs, NULL, 0);
		free(c->snaps);
		c->snaps = n > 0 ? calloc((size_t)n, sizeof(*c->snaps)) : NULL;
		if (n > 0 && !c->snaps)
			n = -ENOMEM;
		if (n > 0)
			n = fs_snap_list(fs, c->snaps, (size_t)n);
		c->nsnaps = n > 0 ? n : 0;
		c->rc = n < 0 ? n : 0;
		break;
	case TWINFS__CTL_REQUEST__OP__SNAP_ROLLBACK:
		c->rc = c->req->n_names == 1 ?
			fs_snap_rollback(fs, c->req->names[0], c->req->force) :
			-EINVAL;
		if (c->rc == -EBUSY)
			snprintf(c->errname, sizeof(c->errname),
				 "newer snapshots exist (use --force to delete them)");
		break;
	case TWINFS__CTL_REQUEST__OP__SNAP_DIFF:
		if (c->req->n_names < 1 || c->req->n_names > 2) {
			c->rc = -EINVAL;
			break;
		}
		for (int tries = 0; tries < 5; tries++) {
			for (size_t i = 0; i < c->ndiff; i++)
				free(c->diff[i]);
			c->ndiff = 0;
			c->rc = fs_snap_diff(fs, c->req->names[0],
					     c->req->n_names > 1 ?
					     c->req->names[1] : NULL, diff_cb, c);
			if (c->rc != -EAGAIN)
				break;
		}
		break;
	default:
		break;
	}
	fs_get_status(fs, &c->st);
}

static void write_cb(uv_write_t *wr, int status)
{
	free(wr->data);
	free(wr);
}

static void after_work(uv_work_t *w, int status)
{
	struct conn *c = w->data;
	Twinfs__CtlResponse resp = TWINFS__CTL_RESPONSE__INIT;
	Twinfs__CtlStatus st = TWINFS__CTL_STATUS__INIT;
	Twinfs__SnapInfo *infos = NULL, **ptrs = NULL;
	Twinfs__DiffEntry *dents = NULL, **dptrs = NULL;
	char msg[256];
	uv_write_t *wr;
	uv_buf_t b;
	uint8_t *buf;
	size_t len;
	int rc;

	c->busy = false;
	twinfs__ctl_request__free_unpacked(c->req, NULL);
	c->req = NULL;
	if (c->closing) {
		uv_close((uv_handle_t *)&c->pipe, conn_close_cb);
		return;
	}
	st.generation = c->st.generation;
	st.cps = c->st.cps;
	st.dirty_bytes = c->st.dirty_bytes;
	st.log_bytes = c->st.log_bytes;
	st.total_blocks = c->st.total_blocks;
	st.free_blocks = c->st.free_blocks;
	st.inodes = c->st.inodes;
	st.last_cp_usec = c->st.last_cp_usec;
	st.transport = fwire_uring() ? "io_uring" : "/dev/fuse";
	st.image = c->ctl->image;
	st.label = c->st.label;
	resp.error = c->rc < 0 ? -c->rc : c->rc;
	snprintf(msg, sizeof(msg), "%s%s%s", c->errname,
		 c->errname[0] ? ": " : "", c->rc ? strerror(-c->rc) : "");
	resp.message = msg;
	resp.status = &st;
	if (c->nsnaps) {
		infos = calloc((size_t)c->nsnaps, sizeof(*infos));
		ptrs = calloc((size_t)c->nsnaps, sizeof(*ptrs));
	}
	for (int i = 0; infos && ptrs && i < c->nsnaps; i++) {
		Twinfs__SnapInfo *si = &infos[i];
		twinfs__snap_info__init(si);
		si->name = c->snaps[i].name;
		si->id = c->snaps[i].id;
		si->generation = c->snaps[i].gen;
		si->time_sec = c->snaps[i].time.tv_sec;
		si->time_nsec = (uint32_t)c->snaps[i].time.tv_nsec;
		si->referenced_bytes = c->snaps[i].referenced_bytes;
		si->unique_bytes = c->snaps[i].unique_bytes;
		si->flags = c->snaps[i].flags;
		ptrs[i] = si;
	}
	if (infos && ptrs) {
		resp.n_snapshots = (size_t)c->nsnaps;
		resp.snapshots = ptrs;
	}
	if (c->ndiff) {
		dents = calloc(c->ndiff, sizeof(*dents));
		dptrs = calloc(c->ndiff, sizeof(*dptrs));
	}
	for (size_t i = 0; dents && dptrs && i < c->ndiff; i++) {
		char *e = c->diff[i];
		twinfs__diff_entry__init(&dents[i]);
		dents[i].kind = e;
		dents[i].path = e + 2;
		dents[i].new_path = e + 3 + strlen(e + 2);
		dptrs[i] = &dents[i];
	}
	if (dents && dptrs) {
		resp.n_diff = c->ndiff;
		resp.diff = dptrs;
	}
	wr = malloc(sizeof(*wr));
	rc = wr ? frame_pack(&resp.base, &buf, &len) : -ENOMEM;
	free(infos);
	free(ptrs);
	free(dents);
	free(dptrs);
	if (rc) {
		free(wr);
		conn_close(c);
		return;
	}
	wr->data = buf;
	b = uv_buf_init((char *)buf, (unsigned)len);
	if (uv_write(wr, (uv_stream_t *)&c->pipe, &b, 1, write_cb)) {
		free(buf);
		free(wr);
		conn_close(c);
	}
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static __thread char chunk[4096];

	*buf = uv_buf_init(chunk, sizeof(chunk));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct conn *c = (struct conn *)s;
	ProtobufCMessage *m;
	int rc;

	if (n < 0) {
		conn_close(c);
		return;
	}
	if (n == 0)
		return;
	if (c->busy || frame_rx_feed(&c->rx, buf->base, (size_t)n)) {
		conn_close(c); /* one request at a time, bounded size */
		return;
	}
	rc = frame_rx_next(&c->rx, &twinfs__ctl_request__descriptor, &m);
	if (rc < 0) {
		conn_close(c);
		return;
	}
	if (rc == 0)
		return;
	c->req = (Twinfs__CtlRequest *)m;
	c->busy = true;
	c->work.data = c;
	if (uv_queue_work(&c->ctl->loop, &c->work, do_work, after_work)) {
		c->busy = false;
		conn_close(c);
	}
}

static void on_connect(uv_stream_t *server, int status)
{
	struct ctl *ctl = server->data;
	struct conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->ctl = ctl;
	frame_rx_init(&c->rx, FRAME_CTL_MAX);
	uv_pipe_init(&ctl->loop, &c->pipe, 0);
	if (uv_accept(server, (uv_stream_t *)&c->pipe) ||
	    uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb))
		conn_close(c);
}

static void cp_work(uv_work_t *w)
{
	struct ctl *ctl = w->data;
	int rc = fs_cp(ctl->fs);

	if (rc)
		fprintf(stderr, "twinfs: CP on SIGUSR1 failed: %s\n",
			strerror(-rc));
}

static void cp_done(uv_work_t *w, int status)
{
	free(w);
}

static void on_usr1(uv_signal_t *s, int signum)
{
	struct ctl *ctl = s->data;
	uv_work_t *w = calloc(1, sizeof(*w));

	if (!w)
		return;
	w->data = ctl;
	if (uv_queue_work(&ctl->loop, w, cp_work, cp_done))
		free(w);
}

static void close_any(uv_handle_t *h, void *arg)
{
	if (uv_is_closing(h))
		return;
	if (h->type == UV_NAMED_PIPE && h->data != arg) {
		conn_close((struct conn *)h);
		return;
	}
	uv_close(h, NULL);
}

static void on_stop(uv_async_t *a)
{
	struct ctl *ctl = a->data;

	uv_walk(&ctl->loop, close_any, ctl);
}

static void *ctl_main(void *arg)
{
	struct ctl *ctl = arg;

	uv_run(&ctl->loop, UV_RUN_DEFAULT);
	return NULL;
}

int ctl_start(struct fs *fs, const char *mountpoint, const char *image,
	      struct ctl **out)
{
	struct ctl *ctl = calloc(1, sizeof(*ctl));
	char dir[256], *slash;
	int rc;

	if (!ctl)
		return -ENOMEM;
	ctl->fs = fs;
	snprintf(ctl->image, sizeof(ctl->image), "%s", image);
	rc = ctl_socket_path(mountpoint, ctl->path, sizeof(ctl->path));
	if (rc)
		goto fail;
	snprintf(dir, sizeof(dir), "%s", ctl->path);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = 0;
		if (mkdir(dir, 0755) && errno != EEXIST) {
			rc = -errno;
			goto fail;
		}
	}
	unlink(ctl->path); /* a stale socket of an earlier mount */
	rc = uv_loop_init(&ctl->loop);
	if (rc)
		goto fail;
	uv_pipe_init(&ctl->loop, &ctl->server, 0);
	ctl->server.data = ctl;
	rc = uv_pipe_bind(&ctl->server, ctl->path);
	if (!rc) {
		chmod(ctl->path, 0600);
		rc = uv_listen((uv_stream_t *)&ctl->server, 16, on_connect);
	}
	if (!rc)
		rc = uv_signal_init(&ctl->loop, &ctl->usr1);
	if (!rc) {
		ctl->usr1.data = ctl;
		rc = uv_signal_start(&ctl->usr1, on_usr1, SIGUSR1);
	}
	if (!rc)
		rc = uv_async_init(&ctl->loop, &ctl->stop, on_stop);
	if (rc) {
		uv_walk(&ctl->loop, close_any, ctl);
		uv_run(&ctl->loop, UV_RUN_DEFAULT);
		uv_loop_close(&ctl->loop);
		unlink(ctl->path);
		goto fail;
	}
	ctl->stop.data = ctl;
	rc = -pthread_create(&ctl->thread, NULL, ctl_main, ctl);
	if (rc) {
		unlink(ctl->path);
		goto fail;
	}
	*out = ctl;
	return 0;
fail:
	free(ctl);
	return rc;
}

void ctl_stop(struct ctl *ctl)
{
	if (!ctl)
		return;
	uv_async_send(&ctl->stop);
	pthread_join(ctl->thread, NULL);
	uv_loop_close(&ctl->loop);
	unlink(ctl->path);
	free(ctl);
}
