#include "cgroup.h"
#include "util.h"

#include <stdio.h>

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
