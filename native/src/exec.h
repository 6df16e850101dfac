/* `exec`: enters a running jail, drops every privilege and runs a command there; relays its exit. */
#pragma once
#include "spec.h"
__attribute__((noreturn)) void cmd_exec(const struct exec_spec *spec);

struct cgroup_set;
/*
 * In the child that becomes the jailed process, already in the jail's pid namespace: joins the cgroups left
 * in `cgroups` (v1), the jail's cgroup namespace (pidfd: the init), drops every privilege and execs. `sync`
 * gets the jail pid, then (only if exec fails) the errno; `slave` (a pty's, or -1) becomes its stdio and
 * controlling terminal. Shared by `exec` and the shim.
 */
__attribute__((noreturn)) void become_jailed(const struct exec_spec *spec, int *fds, int n_fds, int slave, int sync,
					     struct cgroup_set *cgroups, int pidfd);
