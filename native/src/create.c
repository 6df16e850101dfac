#include "create.h"
#include "caps.h"
#include "cgroup.h"
#include "jail-init.h"
#include "listen.h"
#include "mount.h"
#include "net.h"
#include "ns.h"
#include "seccomp.h"
#include "shim.h"
#include "status.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* In the child: builds the jail, then becomes its init. Reports success with one byte on sync. */
static __attribute__((noreturn)) void init_main(const struct create_spec *spec, int sync)
{
	/* Die with the shim; and if the shim is already gone, the read below sees EOF. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		die_errno("set the parent-death signal");
	char go;
	if (read(sync, &go, 1) != 1)
		_exit(EXIT_SETUP);
	build_root(spec);
	/*
	 * A cgroup namespace rooted at the jail's own cgroups, once the shim has moved us there ('c'): inside,
	 * /proc/self/cgroup reads "/" instead of the host's path to the emperor's cgroup.
	 */
	set_step("enter a cgroup namespace");
	if (read(sync, &go, 1) != 1 || go != 'c')
		_exit(EXIT_SETUP);
	if (unshare(CLONE_NEWCGROUP) < 0)
		die_errno("unshare the cgroup namespace");
	/*
	 * What the jail's ps and /proc/1/cmdline show: no host path, cgroup or argument of ours. Only now: the
	 * spec may point into our argv (arguments given on the command line), and the root is built from it.
	 * Nothing of the customer's runs before this.
	 */
	set_process_name("init");
	if (spec->ns_flags & CLONE_NEWUTS) {
		set_step("set the hostname");
		if (sethostname(spec->hostname, strlen(spec->hostname)) < 0)
			die_errno("sethostname %s", spec->hostname);
	}
	if (spec->ns_flags & CLONE_NEWNET)
		loopback_up();
	/*
	 * cgroup v2 kills the whole cgroup on an OOM (memory.oom.group = 1): every process of the customer's,
	 * but not the init, so the jail (and its OOM count) survives and the emperor restarts what died. Needs
	 * CAP_SYS_RESOURCE, which some containers withhold (then the init is as killable as the rest).
	 */
	int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (adj >= 0) {
		(void)!write(adj, "-1000", 5);
		close(adj);
	}
	/* The init keeps no capability, cannot be ptraced (not dumpable) and runs under the same filter. */
	drop_bounding_and_ambient();
	lock_securebits();
	drop_all_caps();
	if (prctl(PR_SET_DUMPABLE, 0) < 0)
		die_errno("set not dumpable");
	load_seccomp();
	set_step("init");
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		die_errno("open /dev/null");
	if (write(sync, "k", 1) != 1)
		die_errno("report ready");
	/* From here on nothing of the host stays open in the jail: stdio is /dev/null, every other fd closed. */
	for (int fd = 0; fd < 3; fd++)
		if (dup2(null, fd) < 0)
			_exit(EXIT_SETUP);
	if (close_range(3, ~0U, 0) < 0)
		_exit(EXIT_SETUP);
	run_init();
}

/* Waits until no process but this shim is left in the jail's cgroups (the kernel kills them when init dies). */
static void wait_cgroups_empty(const struct create_spec *spec)
{
	for (int tries = 0; tries < 500 && !cgroups_empty_but(spec->cgroups, spec->n_cgroups, getpid()); tries++)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
}

void cmd_create(const struct create_spec *spec)
{
	set_step("start");
	/*
	 * Without a control socket the shim dies with the emperor; with one it outlives it (a new emperor takes
	 * the jail over). Either way the init dies with the shim, and the kernel then empties the pid namespace.
	 */
	if (!spec->control_path)
		die_with_parent("the jail was built");

	int listen_fd = -1;
	struct listen_place place = { -1, NULL };
	if (spec->listen_path)
		listen_fd = listen_unix(spec->listen_dir, spec->listen_path, spec->listen_uid, spec->listen_gid,
					spec->listen_mode, spec->listen_backlog, &place);

	/* Block the signals the shim waits for before the child exists, so none is lost. */
	sigset_t wait_set;
	sigemptyset(&wait_set);
	sigaddset(&wait_set, SIGCHLD);
	sigaddset(&wait_set, SIGTERM);
	sigaddset(&wait_set, SIGINT);
	sigaddset(&wait_set, SIGHUP);
	sigprocmask(SIG_BLOCK, &wait_set, NULL);

	/* The jail's cgroups, opened while we still see the host's cgroup file systems. */
	struct cgroup_set cgroups;
	open_cgroups(spec->cgroups, spec->n_cgroups, &cgroups);
	int sv[2];
	set_step("socketpair");
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		die_errno("socketpair");
	pid_t init = clone_into_cgroup(spec->ns_flags, &cgroups);
	if (init == 0) {
		close(sv[0]);
		if (listen_fd >= 0)
			close(listen_fd);
		if (place.dir >= 0)
			close(place.dir);
		close_cgroups(&cgroups);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		init_main(spec, sv[1]);
	}
	close(sv[1]);
	/*
	 * Release the init to build the root while we move it into the cgroups it was not born in (cgroup v1:
	 * CLONE_INTO_CGROUP is cgroup2's alone): the first v1 migration after a quiet spell waits for an RCU
	 * grace period (milliseconds), and the root can be built meanwhile. Nothing of the customer's runs in
	 * the init; every process it will hold is born in (or joins) the cgroups before exec, and "ready" is
	 * reported only once both are done.
	 */
	set_step("release the init");
	if (write(sv[0], "g", 1) != 1)
		die_errno("release the init");
	join_cgroup_set(&cgroups, init);
	if (spec->control_path)
		join_cgroup_self(&cgroups); /* the shim too: every process it forks is then born in the jail's cgroups */
	if (write(sv[0], "c", 1) != 1)
		die_errno("tell the init its cgroups are joined");
	char ok = 0;
	ssize_t n = read(sv[0], &ok, 1);
	close(sv[0]);
	bool ready = n == 1 && ok == 'k';
	if (ready && spec->control_path) {
		/*
		 * The shim's own OOM score is the init's: an OOM kill of the jail's group spares both. What it forks
		 * gets back the score the shim was given (fork inherits -1000, and a jail whose every process is
		 * unkillable would hang at its memory limit instead of losing the process that filled it).
		 */
		char child_adj[12] = "0";
		int adj = open("/proc/self/oom_score_adj", O_RDWR | O_CLOEXEC);
		if (adj >= 0) {
			ssize_t len = read(adj, child_adj, sizeof child_adj - 1);
			child_adj[len > 0 ? len : 0] = 0;
			child_adj[strcspn(child_adj, "\n")] = 0;
			(void)!write(adj, "-1000", 5); /* EACCES without CAP_SYS_RESOURCE: then as killable as the rest */
			close(adj);
		}
		if (prctl(PR_SET_DUMPABLE, 0) < 0)
			die_errno("set not dumpable");
		set_step("enter the jail's pid namespace for children");
		int pidfd = open_verified_pidfd(init, proc_start_time(init), "jail init");
		if (setns(pidfd, CLONE_NEWPID) < 0)
			die_errno("setns into the jail's pid namespace");
		struct shim_jail jail = { .init = init, .init_start = proc_start_time(init), .init_pidfd = pidfd,
					  .listen_fd = listen_fd, .place = place, .cgroups = &cgroups,
					  .born_in_cgroup = cgroups.born };
		snprintf(jail.child_oom_adj, sizeof jail.child_oom_adj, "%s", child_adj[0] ? child_adj : "0");
		shim_serve(spec, &jail);
	}
	if (ready) {
		status_event("\"event\":\"ready\",\"shim\":%d,\"init\":%d,\"init_start\":%llu,\"shim_start\":%llu,"
			     "\"socket_fd\":%d,\"born_in_cgroup\":%s",
			     (int)getpid(), (int)init, proc_start_time(init), proc_start_time(getpid()), listen_fd,
			     cgroups.born ? "true" : "false");
	}
	/* A failed init has already reported its step and errno on the status fd. */
	int status = 0;
	for (;;) {
		siginfo_t info;
		int sig = ready ? sigwaitinfo(&wait_set, &info) : SIGCHLD;
		if (sig < 0)
			continue;
		if (sig == SIGCHLD) {
			pid_t r = waitpid(init, &status, ready ? WNOHANG : 0);
			if (r == init)
				break;
			continue;
		}
		/*
		 * Stop: cgroup.kill (v2) kills every process of the jail's cgroup at once, as systemd does for a
		 * unit; killing PID 1 makes the kernel kill the rest of its pid namespace, and is what v1 has.
		 */
		kill_cgroup(&cgroups); /* false on v1 or a kernel before 5.14: the kill below does it */
		kill(init, SIGKILL);
	}
	close_cgroups(&cgroups);
	wait_cgroups_empty(spec);
	remove_listen_socket(&place);
	if (WIFSIGNALED(status))
		status_event("\"event\":\"exit\",\"code\":null,\"signal\":%d", WTERMSIG(status));
	else
		status_event("\"event\":\"exit\",\"code\":%d,\"signal\":null", WEXITSTATUS(status));
	_exit(ready ? 0 : EXIT_SETUP);
}
