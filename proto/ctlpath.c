/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctlpath.c - where a mount's control socket lives. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"

/* /run/twinfs/<mountpoint with '/' as '-' and other odd bytes as %XX>.sock;
 * a path that would not fit in sun_path is shortened to a hash. */
int ctl_socket_path(const char *mountpoint, char *out, size_t size)
{
	char real[PATH_MAX], name[3 * PATH_MAX];
	const char *dir = getenv("TWINFS_RUN_DIR");
	size_t n = 0;

	if (!realpath(mountpoint, real))
		return -errno;
	for (const unsigned char *p = (const unsigned char *)real + 1; *p; p++) {
		if (*p == '/')
			name[n++] = '-';
		else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			 (*p >= '0' && *p <= '9') || *p == '.' || *p == '_')
			name[n++] = (char)*p;
		else
			n += (size_t)sprintf(name + n, "%%%02X", *p);
	}
	name[n] = 0;
	if (!dir && geteuid() != 0 && getenv("XDG_RUNTIME_DIR")) {
		static char user_dir[PATH_MAX];
		snprintf(user_dir, sizeof(user_dir), "%s/twinfs",
			 getenv("XDG_RUNTIME_DIR"));
		dir = user_dir;
	}
	if (!dir)
		dir = "/run/twinfs";
	if (strlen(dir) + n + 8 > sizeof(((struct sockaddr_un *)0)->sun_path)) {
		unsigned long h = 5381;
		for (const char *p = real; *p; p++)
			h = h * 33 + (unsigned char)*p;
		snprintf(name, sizeof(name), "h%016lx", h);
	}
	if ((size_t)snprintf(out, size, "%s/%s.sock", dir, n ? name : "root") >=
	    size)
		return -ENAMETOOLONG;
	return 0;
}
