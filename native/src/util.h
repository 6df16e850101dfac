/* Small helpers: fatal errors that name the step, checked allocation, file writes. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define NORETURN __attribute__((noreturn))
#define PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Exit codes, as a shell would give them. */
enum {
	EXIT_SETUP = 125,   /* the jail could not be built or entered */
	EXIT_NOEXEC = 126,  /* found but not executable */
	EXIT_NOTFOUND = 127 /* command not found */
};

/* The step being performed, reported with every error ("mount /proc", "setns", ...). */
void set_step(const char *step);
const char *current_step(void);

/* Report an error with errno on the status fd and stderr, then exit. */
NORETURN PRINTF(1, 2) void die_errno(const char *fmt, ...);
/* Report an error without errno, then exit. */
NORETURN PRINTF(1, 2) void die(const char *fmt, ...);
/* The same, with an explicit errno and exit code. */
NORETURN PRINTF(3, 4) void die_with(int err, int code, const char *fmt, ...);

/*
 * While a catcher is set, die() and friends do not exit: they record the error and longjmp there (the
 * shim, serving one request, must not end the jail over it). The catcher is cleared when it is used.
 */
#include <setjmp.h>
void die_catch(jmp_buf *where);
/* The error the last caught die() recorded: its errno (0 for none), step and message. */
int caught_errno(void);
const char *caught_message(void);

/* PR_SET_PDEATHSIG=SIGKILL, then dies if the parent is already gone (the race prctl alone leaves open). */
void die_with_parent(const char *what);

/* Renames this process (comm and the whole command line) to NAME: what ps and /proc/PID/cmdline show. */
void set_process_name(const char *name);

void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
/* Parses a decimal number in [min, max] or dies naming what. */
long long xparse_num(const char *s, long long min, long long max, const char *what);

/* Writes all of buf to fd, retrying on EINTR; returns false on error (errno set). */
bool write_all(int fd, const void *buf, size_t len);
/* Writes a string to an existing file (cgroup and proc files); returns false on error. */
bool write_file(const char *path, const char *text);
