#include "cgroup.h"
#include "util.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

void join_cgroups(const char *const *dirs, int n, pid_t pid)
{
	set_step("join cgroup");
	char path[4096], text[32];
	snprintf(text, sizeof text, "%d\n", (int)pid);
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s/cgroup.procs", dirs[i]);
		if (!write_file(path, text))
			die_errno("write %d to %s", (int)pid, path);
	}
}

void open_cgroup_procs(const char *const *dirs, int n, int *fds)
{
	set_step("open cgroup");
	char path[4096];
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s/cgroup.procs", dirs[i]);
		fds[i] = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fds[i] < 0)
			die_errno("open %s", path);
	}
}

void join_cgroup_fds(const int *fds, int n)
{
	set_step("join cgroup");
	for (int i = 0; i < n; i++) {
		if (!write_all(fds[i], "0\n", 2))
			die_errno("join cgroup %d of %d", i + 1, n);
		close(fds[i]);
	}
}
