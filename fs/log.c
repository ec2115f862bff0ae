/* SPDX-License-Identifier: GPL-2.0-or-later */
/* log.c - log messages, panics and corruption reports. */
#include <stdarg.h>
#include <stdio.h>

#include "debug.h"
#include "twinfs.h"

static void (*log_fn)(int level, const char *msg);

void fs_set_log(void (*fn)(int level, const char *msg))
{
	log_fn = fn;
}

static void log_vmsg(int level, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_fn)
		log_fn(level, msg);
	else
		fprintf(stderr, "twinfs: %s\n", msg);
}

void tfs_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void tfs_panic(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "twinfs: panic at %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

int tfs_corrupt_at(const char *file, int line, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tfs_log(LOG_ERR_, "corruption: %s (seen at %s:%d)", msg, file, line);
	return -EUCLEAN;
}
