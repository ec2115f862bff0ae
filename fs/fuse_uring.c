/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuse_uring.c - FUSE requests over io_uring (Linux 6.14+), one queue per
 * CPU, when the kernel offers it (the fuse module's enable_uring=Y).
 *
 * Why: through /dev/fuse a request is handled by whichever worker the
 * kernel wakes, usually on the other CPU than the caller, and each round
 * trip pays two cross-CPU wake-ups; on a small virtual machine that is
 * most of the cost of a LOOKUP or a CREATE (bench/README.md, "Round trips
 * and CPUs").  With io_uring the kernel queues a request on the queue of
 * the caller's CPU, and that queue's workers are pinned to that CPU: the
 * request runs where the caller just went to sleep.
 *
 * Shape: for each CPU q, WORKERS threads pinned to q (but for the span of
 * a bulk READ or WRITE, see pin()), each with its own
 * ring and one entry (a header block and a payload buffer registered with
 * FUSE_IO_URING_CMD_REGISTER).  One entry per thread, so a worker busy
 * with a slow request (an fsync) holds no other request hostage: the
 * kernel hands the next one to an idle entry.  A completion carries the
 * request split in three: struct fuse_in_header, the operation's own
 * header (op_in) and the rest (payload); it is put back together as
 * /dev/fuse would have delivered it and run by libfuse
 * (fuse_session_process_buf).  The payload buffer has LEAD bytes of room
 * before it, where the two headers are copied so that they end where the
 * payload starts: a WRITE's data is not copied again.  The reply comes
 * back through fuse_wire.c's writev hook into furing_reply(), which copies
 * it into the entry; the worker then commits it and fetches the next
 * (COMMIT_AND_FETCH).
 *
 * FORGET and INTERRUPT still come through /dev/fuse, as do all requests
 * until every queue has an entry; libfuse's own workers keep reading it.
 * At unmount the kernel completes the entries with an error and the
 * workers end; furing_stop() (after libfuse's loop, before the core goes
 * away) also ends them if the mount lingers: they look at a flag every
 * 200 ms, and closing a ring cancels its entry.
 *
 * Everything in a completion is checked against the entry's buffers
 * before it is used; a request that does not fit is answered EIO.
 */
#include <errno.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <syslog.h>

#include "fuse_uring.h"
#include "fuse_wire.h"

/* The kernel's io_uring ABI for FUSE (include/uapi/linux/fuse.h, 7.42);
 * Debian 12's linux-libc-dev predates it. */
#define URING_HDR_SZ 128
#define URING_OP_SZ 128
enum { CMD_REGISTER = 1, CMD_COMMIT_AND_FETCH = 2 };

struct uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

struct uring_req_header {
	char in_out[URING_HDR_SZ];
	char op_in[URING_OP_SZ];
	struct uring_ent_in_out ent;
};

struct uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

#define WORKERS 4                   /* per CPU */
#define PAYLOAD ((1u << 20) + 4096) /* >= max_write and a READ's pages */
#define LEAD 4096                   /* >= both headers; keeps payload aligned */
_Static_assert(sizeof(struct fuse_in_header) + URING_OP_SZ <= LEAD,
	       "the headers fit before the payload");

struct worker {
	pthread_t thread;
	bool started;
	unsigned qid;
	struct io_uring ring;
	struct uring_req_header hdr;
	uint8_t *area;              /* LEAD bytes, then the payload */
	uint8_t *payload;
	uint64_t unique;            /* request in hand, 0: none */
	bool replied;
};

static struct fuse_session *session;
static atomic_bool stopping;          /* furing_stop: workers end */
static atomic_uint registered;        /* entries the kernel took */
static struct worker *workers;
static unsigned nworkers, ncpus;
static _Thread_local struct worker *t_worker;

static void report(int prio, const char *what, int err)
{
	syslog(prio, "twinfs: io_uring: %s: %s", what, strerror(err));
	fprintf(stderr, "twinfs: io_uring: %s: %s\n", what, strerror(err));
}

/* A REGISTER or COMMIT_AND_FETCH for w's entry. */
static int submit(struct worker *w, unsigned op, uint64_t commit_id)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	struct uring_cmd_req *cr;
	static _Thread_local struct iovec iov[2];
	int rc;

	if (!sqe)
		return -EBUSY;
	memset(sqe, 0, 128);   /* SQE128 */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fuse_session_fd(session);
	sqe->cmd_op = op;
	iov[0].iov_base = &w->hdr;
	iov[0].iov_len = sizeof(w->hdr);
	iov[1].iov_base = w->payload;
	iov[1].iov_len = PAYLOAD;
	sqe->addr = (uint64_t)(uintptr_t)iov;
	sqe->len = 2;
	sqe->user_data = (uint64_t)(uintptr_t)w;
	cr = (struct uring_cmd_req *)sqe->cmd;
	cr->commit_id = commit_id;
	cr->qid = (uint16_t)w->qid;
	rc = io_uring_submit(&w->ring);
	return rc < 0 ? rc : 0;
}

/* A worker stays on its CPU: that is the point.  A bulk transfer is
 * the exception: its time goes to copies and disk waits, not wake-ups, and
 * the kernel's read-ahead sends several at once from the reader's CPU, so
 * they may spread over every CPU while they last. */
static void pin(struct worker *w, bool on)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	for (unsigned c = 0; c < ncpus; c++)
		if (!on || c == w->qid)
			CPU_SET(c, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

#define BULK (128u << 10)

static bool bulk(const struct fuse_in_header *h, const void *op, size_t opsz)
{
	if (h->opcode == FUSE_READ && opsz >= sizeof(struct fuse_read_in))
		return ((const struct fuse_read_in *)op)->size >= BULK;
	if (h->opcode == FUSE_WRITE && opsz >= sizeof(struct fuse_write_in))
		return ((const struct fuse_write_in *)op)->size >= BULK;
	return false;
}

/* Put the three parts back together and run it; -EIO if they do not
 * add up (the kernel is trusted, but not to within a buffer overrun). */
static int run_request(struct worker *w)
{
	const struct fuse_in_header *h = (const void *)w->hdr.in_out;
	uint32_t psz = w->hdr.ent.payload_sz;
	size_t opsz;
	struct fuse_buf fb = { 0 };
	uint8_t *req;
	bool big;

	w->unique = h->unique;
	w->replied = false;
	if (psz > PAYLOAD || h->len < sizeof(*h) + psz ||
	    (opsz = h->len - sizeof(*h) - psz) > URING_OP_SZ)
		return -EIO;
	req = w->payload - opsz - sizeof(*h);
	memcpy(req, h, sizeof(*h));
	memcpy(req + sizeof(*h), w->hdr.op_in, opsz);
	fb.mem = req;
	fb.size = h->len;
	t_worker = w;
	fwire_note_request(req, fb.size);
	big = bulk(h, req + sizeof(*h), opsz);
	if (big)
		pin(w, false);
	fuse_session_process_buf(session, &fb);
	if (big)
		pin(w, true);
	t_worker = NULL;
	return 0;
}

/* An answer of only a header: an error, or an empty reply. */
static void reply_err(struct worker *w, uint64_t unique, int err)
{
	struct fuse_out_header oh = {
		.len = sizeof(oh), .error = -err, .unique = unique,
	};

	memcpy(w->hdr.in_out, &oh, sizeof(oh));
	w->hdr.ent.payload_sz = 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int rc;

	pin(w, true);
	rc = submit(w, CMD_REGISTER, 0);
	if (!rc) {
		/* a refused entry completes at once; a taken one only when
		 * a request comes */
		struct io_uring_cqe *cqe;
		if (io_uring_peek_cqe(&w->ring, &cqe) == 0 && cqe->res < 0) {
			rc = cqe->res;
			io_uring_cqe_seen(&w->ring, cqe);
		}
	}
	if (rc) {
		report(LOG_WARNING, "register", -rc);
		return NULL;
	}
	atomic_fetch_add(&registered, 1);
	for (;;) {
		struct __kernel_timespec ts = { .tv_nsec = 200000000 };
		struct io_uring_cqe *cqe;
		uint64_t unique;
		int res;

		if (atomic_load(&stopping))
			break;
		rc = io_uring_wait_cqe_timeout(&w->ring, &cqe, &ts);
		if (rc == -EINTR || rc == -ETIME)
			continue;
		if (rc)
			break;
		res = cqe->res;
		io_uring_cqe_seen(&w->ring, cqe);
		if (res < 0) {
			/* ENOTCONN, ECONNABORTED, ...: the mount is gone */
			if (res != -ENOTCONN && res != -ECONNABORTED &&
			    res != -ECANCELED && res != -ENODEV)
				report(LOG_WARNING, "request", -res);
			break;
		}
		if (run_request(w) || !w->replied)
			reply_err(w, w->unique, EIO);
		unique = w->unique;
		w->unique = 0;
		rc = submit(w, CMD_COMMIT_AND_FETCH, unique);
		if (rc) {
			report(LOG_ERR, "commit", -rc);
			break;
		}
	}
	return NULL;
}

bool furing_reply(const struct iovec *iov, int count)
{
	struct worker *w = t_worker;
	const struct fuse_out_header *oh;
	size_t len = 0;

	if (!w || !w->unique || count < 1 || iov[0].iov_len != sizeof(*oh))
		return false;
	oh = iov[0].iov_base;
	if (oh->unique != w->unique)
		return false;      /* a notification, or not ours */
	for (int i = 1; i < count; i++) {
		if (iov[i].iov_len > PAYLOAD - len) {
			reply_err(w, w->unique, EIO);
			w->replied = true;
			return true;
		}
		/* already in place when built in furing_buffer() */
		if (iov[i].iov_base != w->payload + len)
			memcpy(w->payload + len, iov[i].iov_base,
			       iov[i].iov_len);
		len += iov[i].iov_len;
	}
	memcpy(w->hdr.in_out, oh, sizeof(*oh));
	w->hdr.ent.payload_sz = (uint32_t)len;
	w->replied = true;
	return true;
}

int furing_start(struct fuse_session *se)
{
	int ncpu = get_nprocs_conf();
	unsigned started = 0;

	if (workers || ncpu < 1)
		return -EALREADY;
	session = se;
	ncpus = (unsigned)ncpu;
	nworkers = (unsigned)ncpu * WORKERS;
	workers = calloc(nworkers, sizeof(*workers));
	if (!workers)
		return -ENOMEM;
	for (unsigned i = 0; i < nworkers; i++) {
		struct worker *w = &workers[i];
		struct io_uring_params p = { .flags = IORING_SETUP_SQE128 };
		int rc;

		w->qid = i / WORKERS;
		w->area = aligned_alloc(4096, LEAD + PAYLOAD);
		w->payload = w->area ? w->area + LEAD : NULL;
		rc = !w->area ? -ENOMEM :
			io_uring_queue_init_params(4, &w->ring, &p);
		if (rc) {
			report(LOG_WARNING, "setup", -rc);
			free(w->area);
			w->area = w->payload = NULL;
			break;
		}
		if (pthread_create(&w->thread, NULL, worker_main, w)) {
			io_uring_queue_exit(&w->ring);
			free(w->area);
			w->area = w->payload = NULL;
			break;
		}
		w->started = true;
		started++;
	}
	return started ? 0 : -EIO;
}

void *furing_buffer(size_t size)
{
	struct worker *w = t_worker;

	return w && w->unique && size <= PAYLOAD ? w->payload : NULL;
}

bool furing_ready(void)
{
	return nworkers && atomic_load(&registered) == nworkers;
}

void furing_stop(void)
{
	atomic_store(&stopping, true);
	for (unsigned i = 0; i < nworkers; i++) {
		struct worker *w = &workers[i];
		if (!w->started)
			continue;
		pthread_join(w->thread, NULL);
		io_uring_queue_exit(&w->ring);
		free(w->area);
	}
	free(workers);
	workers = NULL;
	nworkers = 0;
}
