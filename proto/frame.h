/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * frame.h - length-prefixed protobuf-c frames.  A frame is a little-endian
 * uint32 length, then that many bytes of one packed message.  Lengths
 * come from the peer: frames longer than the reader's limit are refused
 * (-EMSGSIZE), and a message that does not unpack is -EPROTO.
 * frame.c is the only user of protobuf-c's pack/unpack calls.
 */
#ifndef TWINFS_FRAME_H
#define TWINFS_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#define FRAME_HDR       4
#define FRAME_CTL_MAX   (64u << 10)

/* Pack msg into a new buffer with its length prefix. */
int frame_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len);

/* Incremental reader for a byte stream. */
struct frame_rx {
	uint8_t *buf;
	size_t len, cap, max;
};
void frame_rx_init(struct frame_rx *rx, size_t max);
void frame_rx_free(struct frame_rx *rx);
int frame_rx_feed(struct frame_rx *rx, const void *data, size_t n);
/* If a whole frame is buffered, unpack it (1), else 0, or -errno. */
int frame_rx_next(struct frame_rx *rx, const ProtobufCMessageDescriptor *d,
		  ProtobufCMessage **out);

/* Blocking helpers for command-line clients. */
int frame_write_fd(int fd, const ProtobufCMessage *msg);
int frame_read_fd(int fd, const ProtobufCMessageDescriptor *d, size_t max,
		  ProtobufCMessage **out);

/* The control socket of the mount at mountpoint (ctlpath.c). */
int ctl_socket_path(const char *mountpoint, char *out, size_t size);

#endif
