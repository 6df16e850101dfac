/* The shim as the jail's supervisor: a fork server on a control socket, outliving the emperor. */
#pragma once
#include "cgroup.h"
#include "listen.h"
#include "spec.h"

#include <sys/types.h>

/* What the shim holds for the jail's whole life. */
struct shim_jail {
	pid_t init;
	unsigned long long init_start;
	int init_pidfd;
	int listen_fd;                /* the vassal's listening socket, or -1 */
	struct listen_place place;    /* where it is, to remove it at the end */
	struct cgroup_set *cgroups;   /* the jail's cgroups (the shim is in them) */
	bool born_in_cgroup;
	char child_oom_adj[12];       /* the OOM score the shim was given, for what it forks (it keeps -1000) */
};

/*
 * Serves the control socket until the jail ends (its init dies, or a stop or SIGTERM ends it): starts
 * processes in the jail as asked, relays their output to log files or to the emperor, reports their exits,
 * and answers for the jail's state to whichever emperor connects. Never returns.
 */
__attribute__((noreturn)) void shim_serve(const struct create_spec *spec, struct shim_jail *jail);
