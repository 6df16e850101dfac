/*
 * emperor-jail: builds, enters and tears down a vassal's jail. It performs the steps it is told on its
 * command line; every decision (which mounts, which limits, which user) is made by packages/jail.
 *
 *   emperor-jail create [options]          shim + jail init; "ready" then "exit" on the status fd
 *   emperor-jail exec [options] -- CMD...  run CMD inside a running jail as an unprivileged user
 *   emperor-jail --version
 */
#include "create.h"
#include "exec.h"
#include "spec.h"
#include "status.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <unistd.h>

#define VERSION "0.1.0"

static const char *need(int argc, char **argv, int *i, int count)
{
	if (*i + count >= argc)
		die("%s: expected %d argument%s", argv[*i], count, count > 1 ? "s" : "");
	return argv[*i + 1];
}

static void add_op(struct create_spec *s, enum mount_kind kind, const char *src, const char *dest, bool strict)
{
	if (s->n_ops >= MAX_OPS)
		die("too many mount operations (at most %d)", MAX_OPS);
	if (dest[0] != '/')
		die("mount destination %s: expected an absolute path", dest);
	s->ops[s->n_ops++] = (struct mount_op){ kind, src, dest, strict };
}

static void add_cgroup(const char **list, int *n, const char *dir)
{
	if (*n >= MAX_CGROUPS)
		die("too many --cgroup (at most %d)", MAX_CGROUPS);
	list[(*n)++] = dir;
}

static void set_status_fd(const char *arg)
{
	status_set_fd((int)xparse_num(arg, 0, 1 << 20, "--status-fd"));
}

static void parse_create(int argc, char **argv, struct create_spec *s)
{
	s->ns_flags = parse_ns_list("fs,ipc,uts,net,pid");
	s->hostname = "jail";
	s->listen_backlog = 1024;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--status-fd")) {
			set_status_fd(need(argc, argv, &i, 1));
			i += 1;
		} else if (!strcmp(a, "--ns")) {
			s->ns_flags = parse_ns_list(need(argc, argv, &i, 1));
			i += 1;
		} else if (!strcmp(a, "--hostname")) {
			s->hostname = need(argc, argv, &i, 1);
			i += 1;
		} else if (!strcmp(a, "--cgroup")) {
			add_cgroup(s->cgroups, &s->n_cgroups, need(argc, argv, &i, 1));
			i += 1;
		} else if (!strcmp(a, "--ro-bind") || !strcmp(a, "--bind") || !strcmp(a, "--ro-bind-nofollow") ||
			   !strcmp(a, "--bind-nofollow") || !strcmp(a, "--symlink") || !strcmp(a, "--tmpfs")) {
			need(argc, argv, &i, 2);
			bool strict = strstr(a, "-nofollow") != NULL;
			enum mount_kind k = !strncmp(a, "--ro-bind", 9) ? M_RO_BIND
					    : !strncmp(a, "--bind", 6)  ? M_BIND
					    : !strcmp(a, "--symlink") ? M_SYMLINK
								      : M_TMPFS;
			if (k == M_TMPFS)
				xparse_num(argv[i + 1], 4096, 1LL << 40, "--tmpfs size");
			add_op(s, k, argv[i + 1], argv[i + 2], strict);
			i += 2;
		} else if (!strcmp(a, "--dir") || !strcmp(a, "--proc") || !strcmp(a, "--dev") || !strcmp(a, "--mqueue")) {
			enum mount_kind k = !strcmp(a, "--dir") ? M_DIR : !strcmp(a, "--proc") ? M_PROC : !strcmp(a, "--dev") ? M_DEV : M_MQUEUE;
			add_op(s, k, NULL, need(argc, argv, &i, 1), false);
			i += 1;
		} else if (!strcmp(a, "--control")) {
			s->control_path = need(argc, argv, &i, 1);
			if (s->control_path[0] != '/')
				die("--control: expected an absolute path, got %s", s->control_path);
			i += 1;
		} else if (!strcmp(a, "--pty-max")) {
			s->pty_max = (int)xparse_num(need(argc, argv, &i, 1), 1, 4096, "--pty-max");
			i += 1;
		} else if (!strcmp(a, "--label")) {
			s->label = need(argc, argv, &i, 1);
			i += 1;
		} else if (!strcmp(a, "--run-dir")) {
			s->run_dir = need(argc, argv, &i, 1);
			if (s->run_dir[0] != '/')
				die("--run-dir: expected an absolute path, got %s", s->run_dir);
			i += 1;
		} else if (!strcmp(a, "--listen")) {
			need(argc, argv, &i, 5);
			s->listen_dir = argv[i + 1];
			s->listen_path = argv[i + 2];
			if (s->listen_dir[0] != '/')
				die("--listen: expected an absolute run dir, got %s", s->listen_dir);
			if (s->listen_path[0] == '/' || !s->listen_path[0])
				die("--listen: expected a socket path relative to the run dir, got %s", s->listen_path);
			s->listen_uid = (uid_t)xparse_num(argv[i + 3], 0, 4294967294LL, "--listen uid");
			s->listen_gid = (gid_t)xparse_num(argv[i + 4], 0, 4294967294LL, "--listen gid");
			s->listen_mode = (mode_t)strtol(argv[i + 5], NULL, 8);
			if (s->listen_mode > 0777)
				die("--listen mode: expected at most 777, got %s", argv[i + 5]);
			i += 5;
		} else {
			die("create: unknown option %s", a);
		}
	}
}

static int rlimit_resource(const char *name)
{
	static const struct { const char *name; int res; } map[] = {
		{ "nofile", RLIMIT_NOFILE }, { "nproc", RLIMIT_NPROC }, { "core", RLIMIT_CORE },
		{ "as", RLIMIT_AS },         { "fsize", RLIMIT_FSIZE }, { "stack", RLIMIT_STACK },
		{ "memlock", RLIMIT_MEMLOCK }, { "cpu", RLIMIT_CPU },
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (!strcmp(map[i].name, name))
			return map[i].res;
	die("--rlimit: unknown resource %s", name);
}

/* A number, or "unlimited" (RLIM_INFINITY). */
static unsigned long long rlimit_value(const char *text, const char *arg)
{
	if (!strcmp(text, "unlimited"))
		return RLIM_INFINITY;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-')
		die("--rlimit: expected a number or unlimited, got %s", arg);
	return n;
}

int parse_exec_args(int argc, char **argv, int first, struct exec_spec *s)
{
	s->ns_flags = parse_ns_list("fs,ipc,uts,net,pid");
	s->cwd = "/";
	int i;
	for (i = first; i < argc && strcmp(argv[i], "--"); i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--status-fd")) {
			set_status_fd(need(argc, argv, &i, 1));
			i += 1;
		} else if (!strcmp(a, "--init")) {
			need(argc, argv, &i, 2);
			s->init_pid = (pid_t)xparse_num(argv[i + 1], 2, 1 << 30, "--init pid");
			s->init_start = (unsigned long long)xparse_num(argv[i + 2], 1, 1LL << 62, "--init start time");
			i += 2;
		} else if (!strcmp(a, "--ns")) {
			s->ns_flags = parse_ns_list(need(argc, argv, &i, 1));
			i += 1;
		} else if (!strcmp(a, "--cgroup")) {
			add_cgroup(s->cgroups, &s->n_cgroups, need(argc, argv, &i, 1));
			i += 1;
		} else if (!strcmp(a, "--uid")) {
			s->uid = (uid_t)xparse_num(need(argc, argv, &i, 1), 1, 4294967294LL, "--uid");
			i += 1;
		} else if (!strcmp(a, "--gid")) {
			s->gid = (gid_t)xparse_num(need(argc, argv, &i, 1), 1, 4294967294LL, "--gid");
			i += 1;
		} else if (!strcmp(a, "--cwd")) {
			s->cwd = need(argc, argv, &i, 1);
			i += 1;
		} else if (!strcmp(a, "--env")) {
			if (s->n_env >= MAX_ENV)
				die("too many --env (at most %d)", MAX_ENV);
			s->env[s->n_env++] = need(argc, argv, &i, 1);
			if (!strchr(s->env[s->n_env - 1], '='))
				die("--env: expected KEY=VALUE, got %s", s->env[s->n_env - 1]);
			i += 1;
		} else if (!strcmp(a, "--pass-fd")) {
			if (s->n_pass_fds >= MAX_FDS)
				die("too many --pass-fd (at most %d)", MAX_FDS);
			s->pass_fds[s->n_pass_fds++] = (int)xparse_num(need(argc, argv, &i, 1), 0, 1 << 20, "--pass-fd");
			i += 1;
		} else if (!strcmp(a, "--socket-from")) {
			need(argc, argv, &i, 3);
			s->socket_pid = (pid_t)xparse_num(argv[i + 1], 2, 1 << 30, "--socket-from pid");
			s->socket_start = (unsigned long long)xparse_num(argv[i + 2], 1, 1LL << 62, "--socket-from start time");
			s->socket_fd = (int)xparse_num(argv[i + 3], 0, 1 << 20, "--socket-from fd");
			i += 3;
		} else if (!strcmp(a, "--pty")) {
			s->pty = true;
		} else if (!strcmp(a, "--notify")) {
			s->notify_path = need(argc, argv, &i, 1);
			i += 1;
		} else if (!strcmp(a, "--out")) {
			s->out = need(argc, argv, &i, 1);
			i += 1;
		} else if (!strcmp(a, "--socket")) {
			s->shim_socket = true;
		} else if (!strcmp(a, "--rlimit")) {
			const char *v = need(argc, argv, &i, 1);
			if (s->n_rlimits >= MAX_RLIMITS)
				die("too many --rlimit");
			char name[32], soft[24], hard[24];
			if (sscanf(v, "%31[a-z]=%23[a-z0-9]:%23[a-z0-9]", name, soft, hard) != 3)
				die("--rlimit: expected NAME=SOFT:HARD, got %s", v);
			struct rlimit_op op = { rlimit_resource(name), rlimit_value(soft, v), rlimit_value(hard, v) };
			if (op.soft > op.hard)
				die("--rlimit: expected SOFT <= HARD, got %s", v);
			s->rlimits[s->n_rlimits++] = op;
			i += 1;
		} else {
			die("exec: unknown option %s", a);
		}
	}
	if (i >= argc - 1)
		die("exec: expected -- COMMAND [ARGS...]");
	if (!s->uid || !s->gid)
		die("exec: --uid and --gid are required");
	s->argv = argv + i + 1;
	return i + 1;
}

static void parse_exec(int argc, char **argv, struct exec_spec *s)
{
	parse_exec_args(argc, argv, 2, s);
	if (!s->init_pid)
		die("exec: --init is required");
	if (s->out || s->shim_socket)
		die("exec: --out and --socket are for a jail's shim; exec takes --socket-from");
}

/* At most this many bytes of arguments on --args-fd: far beyond any vassal, short of a memory attack. */
#define MAX_ARGS_BYTES (4 << 20)
#define MAX_ARGS 8192

/*
 * `emperor-jail create|exec --args-fd N`: the rest of the arguments come NUL-separated on fd N (a pipe the
 * emperor writes and closes), so the environment (database passwords), host paths and cgroup paths never
 * appear in `ps` or in the jail's /proc/1/cmdline. Returns the new argv: the command word, then those.
 */
static char **args_from_fd(char *command, const char *fd_text, int *argc)
{
	int fd = (int)xparse_num(fd_text, 0, 1 << 20, "--args-fd");
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (!buf)
			die("--args-fd: out of memory");
		if (len == cap) {
			if (cap >= MAX_ARGS_BYTES)
				die("--args-fd: expected at most %d bytes of arguments, got more", MAX_ARGS_BYTES);
			cap *= 2;
			buf = realloc(buf, cap);
			continue;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die_errno("read the arguments from fd %d", fd);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len == 0 || buf[len - 1] != '\0')
		die("--args-fd: expected NUL-terminated arguments, got %zu bytes without a final NUL", len);
	static char *args[MAX_ARGS + 3];
	int n = 0;
	args[n++] = "emperor-jail";
	args[n++] = command;
	for (size_t at = 0; at < len; at += strlen(buf + at) + 1) {
		if (n >= MAX_ARGS + 2)
			die("--args-fd: expected at most %d arguments", MAX_ARGS);
		args[n++] = buf + at;
	}
	args[n] = NULL;
	*argc = n;
	return args;
}

/* The command line the kernel shows for us (ps, /proc/PID/cmdline), from argv[0] to the end of the last. */
static char *cmdline_start, *cmdline_end;

void set_process_name(const char *name)
{
	(void)prctl(PR_SET_NAME, name); /* comm, as in /proc/PID/status and ps -o comm */
	if (!cmdline_start)
		return;
	size_t room = (size_t)(cmdline_end - cmdline_start);
	memset(cmdline_start, 0, room);
	size_t len = strnlen(name, room > 1 ? room - 1 : 0);
	memcpy(cmdline_start, name, len);
	/* And end the command line there (CAP_SYS_RESOURCE, which the init still has): "init", not "init" + NULs. */
	(void)prctl(PR_SET_MM, PR_SET_MM_ARG_END, (unsigned long)(cmdline_start + len + 1), 0, 0);
}

int main(int argc, char **argv)
{
	if (argc >= 1) {
		cmdline_start = argv[0];
		cmdline_end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
	}
	bool known = argc >= 3 && (!strcmp(argv[1], "create") || !strcmp(argv[1], "exec"));
	if (known && argc == 4 && !strcmp(argv[2], "--args-fd"))
		argv = args_from_fd(argv[1], argv[3], &argc);
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		puts("emperor-jail " VERSION);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "create")) {
		static struct create_spec spec;
		parse_create(argc, argv, &spec);
		cmd_create(&spec);
	}
	if (argc >= 2 && !strcmp(argv[1], "exec")) {
		static struct exec_spec spec;
		parse_exec(argc, argv, &spec);
		cmd_exec(&spec);
	}
	fprintf(stderr, "usage: emperor-jail create [options] | exec [options] -- COMMAND... | --version\n");
	return 2;
}
