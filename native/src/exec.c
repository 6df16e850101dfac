#include "exec.h"
#include "caps.h"
#include "cgroup.h"
#include "ns.h"
#include "relay.h"
#include "seccomp.h"
#include "status.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

extern char **environ;

/* Gives the child exactly stdio plus the passed fds, numbered from 3; everything else closes at exec. */
static void arrange_fds(int *fds, int n)
{
	set_step("arrange fds");
	/* First move every passed fd above the target range, so dup2 never overwrites one still needed. */
	for (int i = 0; i < n; i++) {
		int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3 + n);
		if (moved < 0)
			die_errno("dup fd %d", fds[i]);
		fds[i] = moved;
	}
	for (int i = 0; i < n; i++)
		if (dup2(fds[i], 3 + i) < 0) /* dup2 clears FD_CLOEXEC on the copy */
			die_errno("dup2 fd %d to %d", fds[i], 3 + i);
	/* CVE-2024-21626: no fd of the host survives exec. CLOEXEC rather than close keeps our sync pipe. */
	if (close_range((unsigned)(3 + n), ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		die_errno("close_range");
}

static void open_pty(int *master, int *slave, uid_t uid)
{
	set_step("allocate a pty");
	/* After setns(mnt), /dev/pts/ptmx is the jail's own devpts instance: the tty exists inside the jail. */
	*master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0)
		die_errno("open /dev/pts/ptmx");
	int unlock = 0;
	if (ioctl(*master, TIOCSPTLCK, &unlock) < 0)
		die_errno("unlock the pty");
	/* The slave by fd, not by a path looked up again. */
	*slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*slave < 0)
		die_errno("open the pty's slave");
	if (fchown(*slave, uid, (gid_t)-1) < 0 || fchmod(*slave, 0620) < 0)
		die_errno("chown the pty");
}

/*
 * The sd_notify socket, inside the jail (we are in its mount namespace): a datagram socket the vassal's
 * group may send to. Created with the right mode by the umask, owned by lchown (see listen.c for why).
 */
static int open_notify(const char *path, gid_t gid)
{
	set_step("create the notify socket");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof addr.sun_path || path[0] != '/')
		die("--notify: expected an absolute path shorter than %zu bytes, got %s", sizeof addr.sun_path, path);
	strcpy(addr.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(path) < 0)
		die_errno("unlink stale %s", path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die_errno("socket");
	mode_t old = umask(0117);
	int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
	umask(old);
	if (rc < 0)
		die_errno("bind %s", path);
	if (lchown(path, 0, gid) < 0)
		die_errno("chown %s", path);
	return fd;
}

void become_jailed(const struct exec_spec *spec, int *fds, int n_fds, int slave, int sync,
		   struct cgroup_set *cgroups, int pidfd)
{
	/*
	 * Into the jail's cgroups before anything else runs, so limits apply from the first instruction: born
	 * there on cgroup2 (CLONE_INTO_CGROUP), written into cgroup.procs on v1.
	 */
	join_cgroup_set(cgroups, 0);
	close_cgroups(cgroups);
	/*
	 * Then the init's cgroup namespace (rooted at those cgroups, so /proc/self/cgroup reads "/"). Only now:
	 * on cgroup v2 a process inside a cgroup namespace may not move itself in from outside its root.
	 */
	set_step("enter the jail's cgroup namespace");
	if (setns(pidfd, CLONE_NEWCGROUP) < 0)
		die_errno("setns into the jail's cgroup namespace");
	close(pidfd);
	/* Keep the status fd clear of 3.., where the passed fds go, so errors after arrange_fds still reach it. */
	if (status_fd() >= 0) {
		int moved = fcntl(status_fd(), F_DUPFD_CLOEXEC, 3 + MAX_FDS + 1);
		if (moved < 0)
			die_errno("move the status fd");
		status_set_fd(moved);
	}
	pid_t jail_pid = getpid();
	if (write(sync, &jail_pid, sizeof jail_pid) != sizeof jail_pid)
		die_errno("report the pid");
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL); /* EINVAL for SIGKILL/SIGSTOP and the libc-reserved ones: harmless */
	set_step("setsid");
	if (setsid() < 0)
		die_errno("setsid");
	if (slave >= 0) {
		set_step("take the pty");
		if (ioctl(slave, TIOCSCTTY, 0) < 0)
			die_errno("make the pty the controlling terminal");
		for (int fd = 0; fd < 3; fd++)
			if (dup2(slave, fd) < 0)
				die_errno("dup2 the pty");
	}
	arrange_fds(fds, n_fds);
	set_step("set rlimits");
	for (int i = 0; i < spec->n_rlimits; i++) {
		struct rlimit rl = { spec->rlimits[i].soft, spec->rlimits[i].hard };
		if (setrlimit(spec->rlimits[i].resource, &rl) < 0)
			die_errno("setrlimit %d", spec->rlimits[i].resource);
	}
	drop_bounding_and_ambient();
	lock_securebits();
	become_user(spec->uid, spec->gid);
	drop_all_caps();
	set_step("chdir");
	if (chdir(spec->cwd) < 0)
		die_errno("chdir %s", spec->cwd);
	/* runc's verifyCwd: a cwd outside the jail's root reads "(unreachable)". */
	char cwd[4096];
	if (!getcwd(cwd, sizeof cwd) || cwd[0] != '/')
		die_with(EPERM, EXIT_SETUP, "the working directory is outside the jail");
	/* The environment is exactly what we were told, plus the systemd socket-activation variables. */
	static char listen_fds[32], listen_pid[32];
	const char **env = (const char **)spec->env;
	int n = spec->n_env;
	static char notify_env[160];
	if (spec->notify_path) {
		snprintf(notify_env, sizeof notify_env, "NOTIFY_SOCKET=%s", spec->notify_path);
		env[n++] = notify_env;
	}
	if (n_fds > 0) {
		snprintf(listen_fds, sizeof listen_fds, "LISTEN_FDS=%d", n_fds);
		snprintf(listen_pid, sizeof listen_pid, "LISTEN_PID=%d", (int)getpid());
		env[n++] = listen_fds;
		env[n++] = listen_pid;
	}
	env[n] = NULL;
	environ = (char **)env;
	load_seccomp();
	set_step("exec");
	execvp(spec->argv[0], spec->argv);
	int err = errno;
	/* A failed write only loses the errno detail: the exit code below still says what happened. */
	if (write(sync, &err, sizeof err) != sizeof err)
		err = errno;
	die_with(err, err == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC, "exec %s", spec->argv[0]);
}

void cmd_exec(const struct exec_spec *spec)
{
	set_step("start");
	die_with_parent("the command started");
	/* CVE-2016-9962: not dumpable before anything of the jail is touched, so the jail cannot ptrace us. */
	if (prctl(PR_SET_DUMPABLE, 0) < 0)
		die_errno("set not dumpable");
	set_step("open the jail");
	int pidfd = open_verified_pidfd(spec->init_pid, spec->init_start, "jail init");
	int fds[MAX_FDS + 1], n_fds = 0;
	if (spec->socket_pid > 0) {
		set_step("take the listening socket");
		int shim = open_verified_pidfd(spec->socket_pid, spec->socket_start, "jail shim");
		int fd = (int)syscall(SYS_pidfd_getfd, shim, spec->socket_fd, 0);
		if (fd < 0)
			die_errno("pidfd_getfd %d from the shim", spec->socket_fd);
		close(shim);
		fds[n_fds++] = fd;
	}
	for (int i = 0; i < spec->n_pass_fds; i++)
		fds[n_fds++] = spec->pass_fds[i];
	/*
	 * Cgroups are host paths: open them before the mount namespace changes. Only the child is in them, so
	 * this helper never counts against the jail's pids or memory and is never the jail's OOM victim.
	 */
	struct cgroup_set cgroups;
	open_cgroups(spec->cgroups, spec->n_cgroups, &cgroups);
	set_step("setns");
	enter_namespaces(pidfd, spec->ns_flags);
	int master = -1, slave = -1;
	if (spec->pty)
		open_pty(&master, &slave, spec->uid);
	int notify = spec->notify_path ? open_notify(spec->notify_path, spec->gid) : -1;
	/*
	 * With a pty, our own stdin is usually a terminal too (ssh's, or the router's): make it raw, so keys
	 * reach the jail's pty untouched and only that pty does line editing and echo.
	 */
	struct termios saved;
	bool raw = spec->pty && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	if (raw) {
		struct termios t = saved;
		cfmakeraw(&t);
		if (tcsetattr(STDIN_FILENO, TCSANOW, &t) < 0)
			raw = false; /* EIO if the terminal went away: harmless, nothing to restore then */
	}

	sigset_t block;
	sigfillset(&block);
	sigdelset(&block, SIGSEGV);
	sigdelset(&block, SIGBUS);
	sigprocmask(SIG_SETMASK, &block, NULL);
	int sync[2];
	set_step("pipe");
	if (pipe2(sync, O_CLOEXEC) < 0)
		die_errno("pipe");
	/*
	 * setns(CLONE_NEWPID) only applies to children: fork so the command is inside the jail's pid ns (and,
	 * on cgroup2, born in the jail's cgroup).
	 */
	pid_t child = clone_into_cgroup(0, &cgroups);
	if (child == 0) {
		close(sync[0]);
		if (master >= 0)
			close(master);
		if (notify >= 0)
			close(notify);
		become_jailed(spec, fds, n_fds, slave, sync[1], &cgroups, pidfd);
	}
	if (slave >= 0)
		close(slave); /* the child's alone: its exit is then the master's EIO */
	bool born_in_cgroup = cgroups.born;
	close(pidfd);
	close(sync[1]);
	close_cgroups(&cgroups);
	for (int i = 0; i < n_fds; i++)
		if (fds[i] > 2)
			close(fds[i]);
	pid_t jail_pid = 0;
	int err = 0;
	if (read(sync[0], &jail_pid, sizeof jail_pid) == sizeof jail_pid) {
		status_event("\"event\":\"spawn\",\"pid\":%d,\"jail_pid\":%d,\"born_in_cgroup\":%s", (int)child,
			     (int)jail_pid, born_in_cgroup ? "true" : "false");
		if (read(sync[0], &err, sizeof err) != sizeof err)
			err = 0; /* EOF: exec succeeded */
	}
	close(sync[0]);
	int status = relay_until_exit(child, master, notify);
	if (raw)
		(void)tcsetattr(STDIN_FILENO, TCSANOW, &saved); /* EIO: the terminal is gone */
	if (notify >= 0)
		unlink(spec->notify_path); /* ENOENT is harmless: the run dir is gone already */
	int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		status_event("\"event\":\"exit\",\"pid\":%d,\"code\":null,\"signal\":%d", (int)child, WTERMSIG(status));
	else
		status_event("\"event\":\"exit\",\"pid\":%d,\"code\":%d,\"signal\":null", (int)child, code);
	_exit(code);
}
