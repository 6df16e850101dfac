/* Cgroups are created and limited by TypeScript; the helper only moves processes into them. */
#pragma once
#include <sys/types.h>

/* Writes pid to DIR/cgroup.procs for each dir (cgroup v1 and v2 alike; never the v1-only "tasks"). */
void join_cgroups(const char *const *dirs, int n, pid_t pid);
