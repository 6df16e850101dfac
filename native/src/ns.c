#include "ns.h"
#include "spec.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

int parse_ns_list(const char *list)
{
	int flags = 0;
	char *copy = xstrdup(list);
	for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "fs"))
			flags |= CLONE_NEWNS;
		else if (!strcmp(t, "ipc"))
			flags |= CLONE_NEWIPC;
		else if (!strcmp(t, "uts"))
			flags |= CLONE_NEWUTS;
		else if (!strcmp(t, "net"))
			flags |= CLONE_NEWNET;
		else if (!strcmp(t, "pid"))
			flags |= CLONE_NEWPID;
		else
			die("--ns: expected names from fs,ipc,uts,net,pid, got \"%s\"", t);
	}
	free(copy);
	/* The jail is built on a private mount tree and its own PID 1: both are mandatory. */
	if (!(flags & CLONE_NEWNS) || !(flags & CLONE_NEWPID))
		die("--ns: fs and pid are required, got \"%s\"", list);
	return flags;
}

unsigned long long proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* comm may hold spaces and parentheses: fields are counted after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p += 2; /* field 3 */
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return p ? strtoull(p, NULL, 10) : 0;
}

int open_verified_pidfd(pid_t pid, unsigned long long start, const char *what)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		die_errno("%s pid %d is not running (is the jail stopped?)", what, (int)pid);
	/* The pidfd pins the process: if its start time matches now, the fd is the process we were told about. */
	unsigned long long now = proc_start_time(pid);
	if (now == 0 || now != start)
		die_with(ESRCH, EXIT_SETUP, "%s pid %d is not the expected process (it ended and the pid was reused)", what,
			 (int)pid);
	return fd;
}

void enter_namespaces(int pidfd, int flags)
{
	/* One atomic setns(pidfd, flags) (Linux 5.8): either every namespace is joined or none is. */
	if (setns(pidfd, flags) < 0)
		die_errno("setns into the jail");
}
