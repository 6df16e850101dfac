/* Cgroups are created and limited by TypeScript; the helper only puts processes into them and kills them. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "spec.h"

/*
 * A jail's cgroups, opened on the host before any namespace changes (the fds stay usable after
 * setns(CLONE_NEWNS)): the cgroup2 directory, if there is one, for clone3(CLONE_INTO_CGROUP) and
 * cgroup.kill; and cgroup.procs of every cgroup a process has to be written into (v1, or v2 without clone3).
 */
struct cgroup_set {
	int into;              /* cgroup2 directory fd, or -1 */
	int procs[MAX_CGROUPS]; /* cgroup.procs fds to write a pid to */
	int n_procs;
	bool born; /* set by clone_into_cgroup: the child was born in `into` */
};

/* Opens each directory: the first cgroup2 one becomes `into`, every other one a cgroup.procs fd. */
void open_cgroups(const char *const *dirs, int n, struct cgroup_set *set);
/*
 * clone(2) like fork(2), into the namespaces in flags; returns 0 in the child. With set->into, the child
 * is born in that cgroup (clone3 CLONE_INTO_CGROUP, Linux 5.7): no migration, so nothing of it ever runs
 * outside its limits and no RCU grace period is waited for. Where clone3 is refused (ENOSYS: an old kernel,
 * or a container's seccomp profile), it falls back to clone and adds the directory to set->procs.
 */
pid_t clone_into_cgroup(int flags, struct cgroup_set *set);
/* Writes pid ("0": the writer itself) to every cgroup.procs fd of the set (never the v1-only "tasks"). */
void join_cgroup_set(const struct cgroup_set *set, pid_t pid);
/* Moves the calling process into every cgroup of the set (cgroup.procs, "0"; the cgroup2 directory too). */
void join_cgroup_self(const struct cgroup_set *set);
/* Kills every process of the cgroup2 directory at once (cgroup.kill, Linux 5.14); false where there is none. */
bool kill_cgroup(const struct cgroup_set *set);
/* True when the cgroup directories hold no process but `except` (0: none at all); a missing one is empty. */
bool cgroups_empty_but(const char *const *dirs, int n, pid_t except);
/* Closes every fd of the set. */
void close_cgroups(struct cgroup_set *set);
