/* Cgroups are created and limited by TypeScript; the helper only moves processes into them. */
#pragma once
#include <sys/types.h>

/* Writes pid to DIR/cgroup.procs for each dir (cgroup v1 and v2 alike; never the v1-only "tasks"). */
void join_cgroups(const char *const *dirs, int n, pid_t pid);
/* Opens DIR/cgroup.procs for writing, for each dir: the fds stay usable after setns(CLONE_NEWNS). */
void open_cgroup_procs(const char *const *dirs, int n, int *fds);
/* Moves the calling process into the cgroups opened above ("0" is the writer itself), then closes them. */
void join_cgroup_fds(const int *fds, int n);
