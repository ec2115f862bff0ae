/* SPDX-License-Identifier: GPL-2.0-or-later */
/* frame.c - length-prefixed protobuf-c frames (see frame.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"

int frame_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf;

	if (n > UINT32_MAX - FRAME_HDR)
		return -EMSGSIZE;
	buf = malloc(n + FRAME_HDR);
	if (!buf)
		return -ENOMEM;
	buf[0] = (uint8_t)n;
	buf[1] = (uint8_t)(n >> 8);
	buf[2] = (uint8_t)(n >> 16);
	buf[3] = (uint8_t)(n >> 24);
	protobuf_c_message_pack(msg, buf + FRAME_HDR);
	*out = buf;
	*len = n + FRAME_HDR;
	return 0;
}

void frame_rx_init(struct frame_rx *rx, size_t max)
{
	memset(rx, 0, sizeof(*rx));
	rx->max = max;
}

void frame_rx_free(struct frame_rx *rx)
{
	free(rx->buf);
	memset(rx, 0, sizeof(*rx));
}

int frame_rx_feed(struct frame_rx *rx, const void *data, size_t n)
{
	if (rx->len + n > rx->max + FRAME_HDR)
		return -EMSGSIZE;
	if (rx->len + n > rx->cap) {
		size_t cap = rx->cap ? rx->cap : 256;
		uint8_t *nb;
		while (cap < rx->len + n)
			cap *= 2;
		nb = realloc(rx->buf, cap);
		if (!nb)
			return -ENOMEM;
		rx->buf = nb;
		rx->cap = cap;
	}
	memcpy(rx->buf + rx->len, data, n);
	rx->len += n;
	return 0;
}

static uint32_t hdr_len(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

int frame_rx_next(struct frame_rx *rx, const ProtobufCMessageDescriptor *d,
		  ProtobufCMessage **out)
{
	uint32_t n;

	if (rx->len < FRAME_HDR)
		return 0;
	n = hdr_len(rx->buf);
	if (n > rx->max)
		return -EMSGSIZE;
	if (rx->len < FRAME_HDR + (size_t)n)
		return 0;
	*out = protobuf_c_message_unpack(d, NULL, n, rx->buf + FRAME_HDR);
	memmove(rx->buf, rx->buf + FRAME_HDR + n, rx->len - FRAME_HDR - n);
	rx->len -= FRAME_HDR + n;
	return *out ? 1 : -EPROTO;
}

int frame_write_fd(int fd, const ProtobufCMessage *msg)
{
	uint8_t *buf = NULL;
	size_t len = 0, off = 0;
	int rc = frame_pack(msg, &buf, &len);

	while (!rc && off < len) {
		ssize_t k = write(fd, buf + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			rc = k < 0 ? -errno : -EPIPE;
		else
			off += (size_t)k;
	}
	free(buf);
	return rc;
}

int frame_read_fd(int fd, const ProtobufCMessageDescriptor *d, size_t max,
		  ProtobufCMessage **out)
{
	struct frame_rx rx;
	uint8_t chunk[4096];
	int rc;

	frame_rx_init(&rx, max);
	while ((rc = frame_rx_next(&rx, d, out)) == 0) {
		ssize_t k = read(fd, chunk, sizeof(chunk));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = k < 0 ? -errno : -ECONNRESET;
			break;
		}
		rc = frame_rx_feed(&rx, chunk, (size_t)k);
		if (rc)
			break;
	}
	frame_rx_free(&rx);
	return rc < 0 ? rc : 0;
}
