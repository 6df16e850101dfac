#include "status.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fd = -1;

void status_set_fd(int f)
{
	fd = f;
}

int status_fd(void)
{
	return fd;
}

void status_event(const char *fmt, ...)
{
	char line[4096];
	if (fd < 0)
		return;
	line[0] = '{';
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line + 1, sizeof line - 3, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = strlen(line);
	line[len++] = '}';
	line[len++] = '\n';
	/* A closed status pipe (the emperor died) is not an error here: PDEATHSIG ends us soon. */
	(void)write_all(fd, line, len);
}

const char *json_str(const char *s)
{
	static char buf[2048];
	size_t o = 0;
	buf[o++] = '"';
	for (; *s && o < sizeof buf - 8; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(buf + o, 7, "\\u%04x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	buf[o] = 0;
	return buf;
}

void status_error(const char *step, int err, const char *message)
{
	char quoted_step[256];
	snprintf(quoted_step, sizeof quoted_step, "%s", json_str(step));
	const char *name = err ? strerrorname_np(err) : NULL;
	status_event("\"event\":\"error\",\"step\":%s,\"errno\":%d,\"error\":\"%s\",\"message\":%s", quoted_step, err,
		     name ? name : "", json_str(message));
}
