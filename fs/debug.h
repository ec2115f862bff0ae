/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * debug.h - assertions and log macros.
 * ASSERT is checked in debug builds (TFS_DEBUG), VERIFY always.  Both
 * guard our own logic, never input: bytes from the disk are checked with
 * fs_corrupt(), which logs where and returns -EUCLEAN.
 */
#ifndef TWINFS_DEBUG_H
#define TWINFS_DEBUG_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef EUCLEAN
#define EUCLEAN 117
#endif

enum { LOG_ERR_ = 3, LOG_WARN_ = 4, LOG_INFO_ = 6, LOG_DEBUG_ = 7 };

void tfs_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void tfs_panic(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));

#define log_err(...)  tfs_log(LOG_ERR_, __VA_ARGS__)
#define log_warn(...) tfs_log(LOG_WARN_, __VA_ARGS__)
#define log_info(...) tfs_log(LOG_INFO_, __VA_ARGS__)

#define VERIFY(c) do { if (!(c)) \
	tfs_panic(__FILE__, __LINE__, "VERIFY(%s) failed", #c); } while (0)
#define VERIFY3U(a, op, b) do { uint64_t a_ = (a), b_ = (b); \
	if (!(a_ op b_)) tfs_panic(__FILE__, __LINE__, \
		"VERIFY3U(%s %s %s) failed: %llu vs %llu", #a, #op, #b, \
		(unsigned long long)a_, (unsigned long long)b_); } while (0)
#ifdef TFS_DEBUG
#define ASSERT(c) VERIFY(c)
#define ASSERT3U(a, op, b) VERIFY3U(a, op, b)
#else
#define ASSERT(c) ((void)0)
#define ASSERT3U(a, op, b) ((void)0)
#endif

/* Damage found in on-disk data: log it with our location, return -EUCLEAN */
int tfs_corrupt_at(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define fs_corrupt(...) tfs_corrupt_at(__FILE__, __LINE__, __VA_ARGS__)

#endif
