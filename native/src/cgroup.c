#include "cgroup.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

/* struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2), spelt out: older headers lack the field. */
struct clone_args_v2 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
		cgroup;
};

static int open_procs(int dir, const char *name)
{
	int fd = openat(dir, "cgroup.procs", O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		die_errno("open %s/cgroup.procs", name);
	return fd;
}

void open_cgroups(const char *const *dirs, int n, struct cgroup_set *set)
{
	set_step("open cgroup");
	set->into = -1;
	set->n_procs = 0;
	set->born = false;
	for (int i = 0; i < n; i++) {
		int dir = open(dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (dir < 0)
			die_errno("open %s", dirs[i]);
		struct statfs fs;
		if (fstatfs(dir, &fs) < 0)
			die_errno("statfs %s", dirs[i]);
		if (fs.f_type == CGROUP2_SUPER_MAGIC && set->into < 0) {
			set->into = dir;
			continue;
		}
		set->procs[set->n_procs++] = open_procs(dir, dirs[i]);
		close(dir);
	}
}

pid_t clone_into_cgroup(int flags, struct cgroup_set *set)
{
	set_step("clone");
	if (set->into >= 0) {
		struct clone_args_v2 args;
		memset(&args, 0, sizeof args);
		args.flags = (uint64_t)(unsigned)flags | CLONE_INTO_CGROUP;
		args.exit_signal = SIGCHLD;
		args.cgroup = (uint64_t)set->into;
		/* No stack given: like fork(), the child runs on a copy of ours. */
		pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
		if (pid >= 0) {
			set->born = true;
			return pid;
		}
		if (errno != ENOSYS && errno != E2BIG)
			die_errno("clone3 into the jail's cgroup");
		/* ENOSYS/E2BIG: no clone3 (or none with a cgroup) here; the pid is written to cgroup.procs instead. */
		set->procs[set->n_procs++] = open_procs(set->into, "the cgroup2 directory");
	}
	/* The raw syscall with a NULL stack behaves like fork(): the child runs on a copy of our stack. */
	pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)flags | SIGCHLD, NULL, NULL, NULL, 0UL);
	if (pid < 0)
		die_errno("clone");
	return pid;
}

void join_cgroup_set(const struct cgroup_set *set, pid_t pid)
{
	set_step("join cgroup");
	char text[32];
	int len = snprintf(text, sizeof text, "%d\n", (int)pid);
	for (int i = 0; i < set->n_procs; i++)
		if (!write_all(set->procs[i], text, (size_t)len))
			die_errno("join cgroup %d of %d", i + 1, set->n_procs);
}

void join_cgroup_self(const struct cgroup_set *set)
{
	set_step("join cgroup");
	for (int i = 0; i < set->n_procs; i++)
		if (!write_all(set->procs[i], "0\n", 2))
			die_errno("join cgroup %d of %d", i + 1, set->n_procs);
	if (set->into >= 0 && !set->born) {
		/* clone3 fell back: the directory's cgroup.procs is among the procs above already */
		return;
	}
	if (set->into >= 0) {
		int fd = openat(set->into, "cgroup.procs", O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 || !write_all(fd, "0\n", 2))
			die_errno("join the jail's cgroup2 directory");
		close(fd);
	}
}

bool kill_cgroup(const struct cgroup_set *set)
{
	if (set->into < 0)
		return false;
	int fd = openat(set->into, "cgroup.kill", O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false; /* ENOENT: a kernel before 5.14; the caller kills the init instead */
	bool ok = write_all(fd, "1", 1);
	close(fd);
	return ok;
}

bool cgroups_empty_but(const char *const *dirs, int n, pid_t except)
{
	char self[24];
	snprintf(self, sizeof self, "%d", (int)except);
	for (int i = 0; i < n; i++) {
		char path[4096], buf[256];
		snprintf(path, sizeof path, "%s/cgroup.procs", dirs[i]);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* removed already: empty */
		ssize_t got = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (got <= 0)
			continue;
		buf[got] = 0;
		for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
			if (strcmp(l, self))
				return false;
	}
	return true;
}

void close_cgroups(struct cgroup_set *set)
{
	if (set->into >= 0)
		close(set->into);
	for (int i = 0; i < set->n_procs; i++)
		close(set->procs[i]);
	set->into = -1;
	set->n_procs = 0;
}
