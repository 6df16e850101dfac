/* What the helper is told to do: parsed from its argument list (main.c); policy comes from TypeScript. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

enum mount_kind { M_RO_BIND, M_BIND, M_SYMLINK, M_DIR, M_TMPFS, M_PROC, M_DEV, M_MQUEUE };

struct mount_op {
	enum mount_kind kind;
	const char *src;  /* host path (binds), link target (symlink), size in bytes (tmpfs) */
	const char *dest; /* path inside the jail */
	bool strict;      /* binds: no symlink in any component of src, and src may not resolve to a forbidden place */
};

#define MAX_OPS 128
#define MAX_CGROUPS 8
#define MAX_ENV 256
#define MAX_FDS 16
#define MAX_RLIMITS 16

struct rlimit_op {
	int resource;
	unsigned long long soft, hard;
};

struct create_spec {
	int ns_flags;
	const char *hostname;
	struct mount_op ops[MAX_OPS];
	int n_ops;
	const char *cgroups[MAX_CGROUPS]; /* cgroup directories to put the init in */
	int n_cgroups;
	/* The vassal's listening socket, created and held by the shim. */
	const char *listen_dir;  /* the vassal's run dir (host path, root's) */
	const char *listen_path; /* the socket, relative to listen_dir */
	uid_t listen_uid;
	gid_t listen_gid;
	mode_t listen_mode;
	int listen_backlog;
	/* The shim as the jail's supervisor (docs/jail.md): its control socket, an opaque label, the run dir. */
	const char *control_path; /* NULL: the shim only waits for the init (the old, emperor-bound life) */
	const char *label;
	const char *run_dir;      /* the vassal's run dir on the host: where notify sockets go */
	int pty_max;              /* ptys the jail's devpts may hold at once (devpts max=); 0: the kernel's */
};

struct exec_spec {
	pid_t init_pid;
	unsigned long long init_start; /* start time of init (clock ticks), guards against pid reuse */
	int ns_flags;
	const char *cgroups[MAX_CGROUPS];
	int n_cgroups;
	uid_t uid;
	gid_t gid;
	const char *cwd;
	const char *env[MAX_ENV + 4];
	int n_env;
	int pass_fds[MAX_FDS];
	int n_pass_fds;
	pid_t socket_pid; /* shim holding the listening socket */
	unsigned long long socket_start;
	int socket_fd;
	bool pty;
	const char *notify_path; /* sd_notify socket to create inside the jail, or NULL (shim: a run-dir name) */
	const char *out;         /* shim only: where stdout and stderr go (null, emperor, log:...) */
	bool shim_socket;        /* shim only: the listening socket it holds becomes fd 3 */
	struct rlimit_op rlimits[MAX_RLIMITS];
	int n_rlimits;
	char **argv;
};

/* "fs,ipc,uts,net,pid" to CLONE_NEW* flags; dies on an unknown name. */
int parse_ns_list(const char *list);
/* Parses exec options from argv[first] up to "--" and the command after it; returns the command's index. */
int parse_exec_args(int argc, char **argv, int first, struct exec_spec *s);
