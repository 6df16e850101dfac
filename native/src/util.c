#include "util.h"
#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *step = "start";

void set_step(const char *s)
{
	step = s;
}

const char *current_step(void)
{
	return step;
}

static jmp_buf *catcher;
static char caught[1200];
static int caught_err;

void die_catch(jmp_buf *where)
{
	catcher = where;
}

int caught_errno(void)
{
	return caught_err;
}

const char *caught_message(void)
{
	return caught;
}

static NORETURN void vdie(int err, int code, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (catcher) {
		jmp_buf *where = catcher;
		catcher = NULL;
		snprintf(caught, sizeof caught, "%s: %s", step, msg);
		caught_err = err;
		longjmp(*where, 1);
	}
	status_error(step, err, msg);
	if (err)
		fprintf(stderr, "emperor-jail: %s: %s: %s\n", step, msg, strerror(err));
	else
		fprintf(stderr, "emperor-jail: %s: %s\n", step, msg);
	_exit(code);
}

void die_errno(const char *fmt, ...)
{
	int err = errno;
	va_list ap;
	va_start(ap, fmt);
	vdie(err, EXIT_SETUP, fmt, ap);
}

void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vdie(0, EXIT_SETUP, fmt, ap);
}

void die_with(int err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vdie(err, code, fmt, ap);
}

void die_with_parent(const char *what)
{
	pid_t parent = getppid();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		die_errno("set the parent-death signal");
	if (getppid() != parent)
		die("the parent died before %s", what);
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		die_errno("out of memory");
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		die_errno("out of memory");
	return p;
}

long long xparse_num(const char *s, long long min, long long max, const char *what)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die("%s: expected a number from %lld to %lld, got \"%s\"", what, min, max, s);
	return v;
}

bool write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

bool write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	bool ok = write_all(fd, text, strlen(text));
	int saved = errno;
	close(fd);
	errno = saved;
	return ok;
}
