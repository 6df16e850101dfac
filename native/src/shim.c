/*
 * The shim as the jail's supervisor (docs/jail.md, "The shim"). It lives in the jail's cgroups with its
 * pid-for-children in the jail's pid namespace, so every process it forks is born inside both: no cgroup
 * migration, no `exec` helper per process. It outlives the emperor: the emperor talks to it on a control
 * socket in a root-only directory, and a new emperor takes over by connecting and asking for the state.
 *
 * Requests (emperor -> shim): a little-endian u32 length, then NUL-terminated strings:
 *   start ID [exec options] -- COMMAND...    fork, enter the jail, drop privileges, exec
 *   signal ID SIGNUM                         to the process group of a process still running
 *   forget ID                                an exited process the emperor has dealt with
 *   state                                    the jail and every process the shim knows
 *   stop                                     end the jail: its init, so every process in it
 * Events (shim -> emperor): one JSON object per line: spawn, error, notify, output, exit (of a process,
 * with "id"), state, proc, state-end, and exit without "id" when the jail has ended.
 *
 * A connection becomes the emperor's (replacing an older one) with its first request. One whose first
 * request is
 *   pty ID ROWS COLS [exec options] -- COMMAND   the same as start, on a new pty of the jail's devpts
 * is not the emperor's: it gets one line back ({"event":"pty",...} with the pty's master fd attached,
 * SCM_RIGHTS, or {"event":"error",...}) and is closed; the process is then reported like any other.
 */
#include "shim.h"
#include "exec.h"
#include "ns.h"
#include "status.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 256
#define MAX_REQUEST (1 << 20)
#define MAX_OUT (1 << 20) /* unsent events for the emperor; past it the emperor is too slow and is dropped */
#define CHUNK 16384
#define MAX_PENDING 4               /* connections that have not said yet what they are */
#define MAX_PTY_REQUEST (256 << 10) /* a pty request's words (the vassal's env is most of it) */

enum sink_kind { SINK_NULL, SINK_EMPEROR, SINK_LOG };

/* Where a process's stdout and stderr go. */
struct sink {
	enum sink_kind kind;
	int fd; /* the log file, or -1 */
	char path[1024];
	gid_t gid;
	long long size, max;
	int keep;
};

struct proc {
	bool used, forgotten;
	char id[64];
	pid_t pid, jail_pid;
	unsigned long long start;
	int out[2]; /* read ends of stdout and stderr, -1 once at EOF */
	int sync;   /* the child writes its jail pid here; EOF once it has exec'd (or died); -1 once done */
	char syncbuf[sizeof(pid_t)];
	size_t synclen;
	int status; /* the child's status fd: its error event, if it fails before or at exec; -1 at EOF */
	char statusbuf[4096];
	size_t statuslen;
	int notify; /* its sd_notify socket in the run dir, or -1 */
	char notify_name[96];
	bool ready, exited;
	int code, sig;
	struct sink sink;
	/* What of its output went to the emperor this second, and what was dropped (a bound per process). */
	time_t out_window;
	size_t out_sent;
	unsigned long long out_dropped;
};

/*
 * Output events for the emperor are few by design (the touch-reload watcher's lines). A process that
 * writes more (a customer writing into the watcher's pipe through /proc) is cut at this rate, and never
 * takes more than a quarter of the event buffer: neither can make the emperor busy or its connection drop.
 */
#define OUT_PER_SECOND 16384
#define OUT_PIECE 2046 /* bytes of output per event: a multiple of 3 (no base64 padding inside a stream) */

static struct proc procs[MAX_PROCS];
static int control = -1, client = -1, run_dir_fd = -1, devpts_fd = -1;
/* Where report_error goes instead of the emperor's connection (a pty request's own connection), or -1. */
static int error_to = -1;

/* A connection accepted and not yet known: the emperor's next connection, or a pty request. */
struct pending {
	int fd; /* -1: a free slot */
	char *buf;
	size_t len;
};
static struct pending pend[MAX_PENDING] = { { -1, NULL, 0 }, { -1, NULL, 0 }, { -1, NULL, 0 }, { -1, NULL, 0 } };
static char *inbuf, *outbuf;
static size_t inlen, outlen;
static const struct create_spec *cspec;
static struct shim_jail *jail;

/* --- events for the emperor ------------------------------------------------------------------------ */

static void drop_client(void)
{
	if (client >= 0)
		close(client);
	client = -1;
	inlen = outlen = 0;
}

/* Queues one event; an emperor that lets MAX_OUT pile up is disconnected (it asks for the state anew). */
static PRINTF(1, 2) void event(const char *fmt, ...)
{
	if (client < 0)
		return;
	char line[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line + 1, sizeof line - 3, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line - 3)
		return; /* never a truncated line (it would be no JSON): callers keep events below 4 KiB */
	line[0] = '{';
	size_t len = strlen(line);
	line[len++] = '}';
	line[len++] = '\n';
	if (outlen + len > MAX_OUT)
		return drop_client();
	memcpy(outbuf + outlen, line, len);
	outlen += len;
}

static void flush_client(void)
{
	while (client >= 0 && outlen > 0) {
		ssize_t n = send(client, outbuf, outlen, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			return drop_client();
		memmove(outbuf, outbuf + n, outlen - (size_t)n);
		outlen -= (size_t)n;
	}
}

/* A JSON string of s in buf (json_str's buffer is shared; two in one event need copies). */
static const char *quoted(char *buf, size_t size, const char *s)
{
	snprintf(buf, size, "%s", json_str(s));
	return buf;
}

static void report_error(const char *id, int err, const char *message)
{
	char qid[160], qmsg[2200];
	const char *name = err ? strerrorname_np(err) : NULL;
	if (error_to >= 0) {
		char line[4096];
		int n = snprintf(line, sizeof line, "{\"event\":\"error\",\"id\":%s,\"errno\":%d,\"error\":\"%s\",\"message\":%s}\n",
				 quoted(qid, sizeof qid, id), err, name ? name : "", quoted(qmsg, sizeof qmsg, message));
		if (n > 0 && (size_t)n < sizeof line)
			(void)!send(error_to, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
		return;
	}
	event("\"event\":\"error\",\"id\":%s,\"errno\":%d,\"error\":\"%s\",\"message\":%s", quoted(qid, sizeof qid, id), err,
	      name ? name : "", quoted(qmsg, sizeof qmsg, message));
}

/* --- output sinks ------------------------------------------------------------------------------------ */

static void sink_open(struct sink *s)
{
	s->fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (s->fd < 0)
		die_errno("open the log %s", s->path);
	if (fchown(s->fd, 0, s->gid) < 0 || fchmod(s->fd, 0640) < 0)
		die_errno("chown the log %s", s->path);
	struct stat st;
	s->size = fstat(s->fd, &st) == 0 ? st.st_size : 0;
}

/*
 * "null", "emperor", or "log:MAX:KEEP:GID:PATH": a log file under the emperor's log dir (root's, so root
 * follows nothing a customer made), rotated by size like the emperor's own LogFile (PATH, PATH.1 ... .KEEP).
 */
static void sink_parse(const char *text, struct sink *s)
{
	memset(s, 0, sizeof *s);
	s->fd = -1;
	if (!text || !strcmp(text, "null"))
		return;
	if (!strcmp(text, "emperor")) {
		s->kind = SINK_EMPEROR;
		return;
	}
	long long max;
	int keep, used = 0;
	unsigned gid;
	if (sscanf(text, "log:%lld:%d:%u:%n", &max, &keep, &gid, &used) != 3 || used == 0 || text[used] != '/' ||
	    max < 1024 || keep < 1 || keep > 99 || strlen(text + used) >= sizeof s->path - 4)
		die("--out: expected null, emperor or log:MAX:KEEP:GID:/PATH, got %s", text);
	s->kind = SINK_LOG;
	s->max = max;
	s->keep = keep;
	s->gid = (gid_t)gid;
	snprintf(s->path, sizeof s->path, "%s", text + used);
	sink_open(s);
}

static void sink_rotate(struct sink *s)
{
	char from[1100], to[1100];
	close(s->fd);
	snprintf(to, sizeof to, "%s.%d", s->path, s->keep);
	(void)unlink(to); /* ENOENT: fewer than KEEP so far */
	for (int i = s->keep - 1; i >= 1; i--) {
		snprintf(from, sizeof from, "%s.%d", s->path, i);
		snprintf(to, sizeof to, "%s.%d", s->path, i + 1);
		(void)rename(from, to); /* ENOENT: not that many yet */
	}
	snprintf(to, sizeof to, "%s.1", s->path);
	(void)rename(s->path, to);
	jmp_buf j;
	if (setjmp(j)) {
		s->kind = SINK_NULL; /* the log dir went away: the output is dropped, the process goes on */
		s->fd = -1;
		return;
	}
	die_catch(&j);
	sink_open(s);
	die_catch(NULL);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void sink_write(struct proc *p, int which, const char *data, size_t len)
{
	struct sink *s = &p->sink;
	if (s->kind == SINK_LOG) {
		if (s->size + (long long)len > s->max && s->size > 0)
			sink_rotate(s);
		if (s->fd >= 0 && write_all(s->fd, data, len))
			s->size += (long long)len;
	} else if (s->kind == SINK_EMPEROR && client >= 0) {
		time_t now = time(NULL);
		if (now != p->out_window) {
			p->out_window = now;
			p->out_sent = 0;
		}
		if (p->out_sent + len > OUT_PER_SECOND || outlen + 4 * len > MAX_OUT / 4) {
			p->out_dropped += len;
			return;
		}
		p->out_sent += len;
		/* Output events are split to fit an event line (4 KiB): 2,046 bytes are 2,728 of base64. */
		for (size_t at = 0; at < len; at += OUT_PIECE) {
			size_t piece = len - at < OUT_PIECE ? len - at : OUT_PIECE;
			const char *d = data + at;
			char enc[4 * (OUT_PIECE / 3) + 8];
			size_t o = 0;
			for (size_t i = 0; i < piece; i += 3) {
				unsigned v = (unsigned char)d[i] << 16 | (i + 1 < piece ? (unsigned char)d[i + 1] << 8 : 0) |
					     (i + 2 < piece ? (unsigned char)d[i + 2] : 0);
				enc[o++] = b64[v >> 18 & 63];
				enc[o++] = b64[v >> 12 & 63];
				enc[o++] = i + 1 < piece ? b64[v >> 6 & 63] : '=';
				enc[o++] = i + 2 < piece ? b64[v & 63] : '=';
			}
			enc[o] = 0;
			char qid[160];
			event("\"event\":\"output\",\"id\":%s,\"fd\":%d,\"data\":\"%s\"", quoted(qid, sizeof qid, p->id), which + 1, enc);
		}
	}
}

/* --- processes --------------------------------------------------------------------------------------- */

static struct proc *find(const char *id)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i].used && !strcmp(procs[i].id, id))
			return &procs[i];
	return NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void release(struct proc *p)
{
	close_fd(&p->out[0]);
	close_fd(&p->out[1]);
	close_fd(&p->sync);
	close_fd(&p->status);
	close_fd(&p->notify);
	if (p->notify_name[0] && run_dir_fd >= 0) {
		struct stat st;
		/* Only what is still a socket: the vassal may write to its run dir. */
		if (fstatat(run_dir_fd, p->notify_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode))
			(void)unlinkat(run_dir_fd, p->notify_name, 0);
	}
	close_fd(&p->sink.fd);
	memset(p, 0, sizeof *p);
}

/* The sd_notify socket of a process: a datagram socket in the run dir (the jail's /run), made by root. */
static int open_notify(const char *name, gid_t gid)
{
	if (run_dir_fd < 0)
		die("--notify: the shim has no --run-dir");
	if (strchr(name, '/') || strncmp(name, ".emperor-", 9) != 0 || strlen(name) >= 90)
		die("--notify: expected a file name starting with .emperor-, got %s", name);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", name);
	struct stat st;
	if (fstatat(run_dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode))
		(void)unlinkat(run_dir_fd, name, 0); /* a stale one of ours */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die_errno("socket");
	/* bind() takes a path: from inside the run dir (fchdir), so no component of it is resolved again. */
	if (fchdir(run_dir_fd) < 0)
		die_errno("fchdir to the run dir");
	mode_t old = umask(0117);
	int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
	umask(old);
	int saved = errno;
	if (chdir("/") < 0)
		die_errno("chdir /");
	errno = saved;
	if (rc < 0)
		die_errno("bind %s in the run dir", name);
	if (fchownat(run_dir_fd, name, 0, gid, AT_SYMLINK_NOFOLLOW) < 0)
		die_errno("chown %s", name);
	return fd;
}

static void set_nonblock(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		die_errno("O_NONBLOCK");
}

/* A new pty of the jail's own devpts, its window size set: the master, and its slave through TIOCGPTPEER. */
static int open_pty(int rows, int cols, uid_t uid, int *slave)
{
	set_step("allocate a pty");
	if (devpts_fd < 0)
		die_with(ENOTTY, EXIT_SETUP, "the jail has no devpts of its own");
	/* No path is resolved in the jail: ptmx of the devpts fd opened when the jail was built, the slave by fd. */
	int master = openat(devpts_fd, "ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW);
	if (master < 0)
		die_errno("open the jail's /dev/pts/ptmx");
	int unlock = 0;
	struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCSWINSZ, &ws) < 0)
		die_errno("unlock the pty");
	*slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*slave < 0)
		die_errno("open the pty's slave");
	/* The customer's terminal is theirs, group tty, as sshd leaves it (mesg, write and script look). */
	if (fchown(*slave, uid, (gid_t)-1) < 0 || fchmod(*slave, 0620) < 0)
		die_errno("chown the pty");
	set_nonblock(master);
	return master;
}

/*
 * start (pty: NULL) or pty: forks the process `argv[1]` and tracks it. With `pty`, its stdio is a new pty
 * whose master goes to *pty (the caller sends it on); otherwise its output goes to the sink of --out.
 * Failures are reported (to the emperor, or to error_to) and leave nothing behind; false then.
 */
static bool spawn_process(int argc, char **argv, int first, int rows, int cols, int *pty)
{
	if (argc < 2 || !argv[1][0] || strlen(argv[1]) >= sizeof procs[0].id) {
		report_error(argc >= 2 ? argv[1] : "", EINVAL, "start: expected an id of 1 to 63 bytes");
		return false;
	}
	const char *id = argv[1];
	struct proc *p = find(id);
	if (p) {
		report_error(id, EEXIST, "start: a process with that id is known already (forget it first)");
		return false;
	}
	for (int i = 0; i < MAX_PROCS && !p; i++)
		if (!procs[i].used)
			p = &procs[i];
	if (!p) {
		report_error(id, EAGAIN, "start: the shim holds as many processes as it can");
		return false;
	}
	memset(p, 0, sizeof *p);
	p->used = true;
	p->out[0] = p->out[1] = p->sync = p->status = p->notify = p->sink.fd = -1;
	snprintf(p->id, sizeof p->id, "%s", id);
	static struct exec_spec spec;
	memset(&spec, 0, sizeof spec);
	int pipes[4][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 } }; /* stdout, stderr, sync, status */
	int master = -1, slave = -1;
	jmp_buf j;
	if (setjmp(j)) {
		report_error(p->id, caught_errno(), caught_message());
		for (int k = 0; k < 4; k++) {
			close_fd(&pipes[k][0]);
			close_fd(&pipes[k][1]);
		}
		close_fd(&master);
		close_fd(&slave);
		release(p);
		return false;
	}
	die_catch(&j);
	set_step("start");
	parse_exec_args(argc, argv, first, &spec);
	if (spec.pty || spec.socket_pid || spec.n_pass_fds || spec.init_pid)
		die("start: --pty, --socket-from, --pass-fd and --init are the exec helper's, not the shim's");
	if (pty && (spec.out || spec.shim_socket || spec.notify_path))
		die("pty: --out, --socket and --notify are start's alone (the pty is the process's stdio)");
	sink_parse(spec.out, &p->sink);
	int fds[1], n_fds = 0;
	if (spec.shim_socket) {
		if (jail->listen_fd < 0)
			die("start: --socket: the jail has no listening socket");
		fds[n_fds++] = jail->listen_fd;
	}
	static char notify_path[128];
	if (spec.notify_path) {
		p->notify = open_notify(spec.notify_path, spec.gid);
		snprintf(p->notify_name, sizeof p->notify_name, "%s", spec.notify_path);
		snprintf(notify_path, sizeof notify_path, "/run/%s", spec.notify_path);
		spec.notify_path = notify_path;
	}
	if (pty)
		master = open_pty(rows, cols, spec.uid, &slave);
	for (int k = pty ? 2 : 0; k < 4; k++)
		if (pipe2(pipes[k], O_CLOEXEC) < 0)
			die_errno("pipe");
	set_step("fork");
	pid_t pid = fork();
	if (pid < 0)
		die_errno("fork into the jail"); /* EAGAIN: the jail is at its pids-limit */
	die_catch(NULL);
	if (pid == 0) {
		/* In the jail's pid namespace and cgroups already (the shim's); the rest is exec's child. */
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int out = pty ? null : pipes[0][1], err = pty ? null : pipes[1][1];
		if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
			_exit(EXIT_SETUP);
		status_set_fd(pipes[3][1]); /* what goes wrong from here on is reported, with its step and errno */
		set_step("reset the OOM score");
		int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
		if (adj < 0 || write(adj, jail->child_oom_adj, strlen(jail->child_oom_adj)) < 0)
			die_errno("write /proc/self/oom_score_adj");
		close(adj);
		set_step("setns");
		if (setns(jail->init_pidfd, spec.ns_flags & ~CLONE_NEWPID) < 0)
			die_errno("setns into the jail");
		struct cgroup_set none = { .into = -1, .n_procs = 0, .born = true };
		become_jailed(&spec, fds, n_fds, slave, pipes[2][1], &none, jail->init_pidfd);
	}
	close_fd(&slave);
	for (int k = pty ? 2 : 0; k < 4; k++) {
		close(pipes[k][1]);
		set_nonblock(pipes[k][0]);
	}
	p->pid = pid;
	p->start = proc_start_time(pid);
	p->out[0] = pipes[0][0];
	p->out[1] = pipes[1][0];
	p->sync = pipes[2][0];
	p->status = pipes[3][0];
	if (pty)
		*pty = master;
	return true;
}

static void start_process(int argc, char **argv)
{
	(void)spawn_process(argc, argv, 2, 0, 0, NULL);
}

/* A decimal number, or -1. */
static long number(const char *text)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	return errno || end == text || *end ? -1 : v;
}

/*
 * A pty request on its own connection: the process starts like any other (its spawn and exit go to the
 * emperor's connection), and the pty's master goes back on this one, with the process's pid.
 */
static void pty_request(int fd, char *buf, size_t len)
{
	static char *argv[8194];
	int argc = 0;
	for (size_t at = 0; at < len && argc < 8192; at += strlen(buf + at) + 1)
		argv[argc++] = buf + at;
	argv[argc] = NULL;
	error_to = fd;
	long rows = argc > 3 ? number(argv[2]) : -1;
	long cols = argc > 3 ? number(argv[3]) : -1;
	int master = -1;
	if (argc < 5 || rows < 1 || rows > 1000 || cols < 1 || cols > 1000) {
		report_error(argc > 1 ? argv[1] : "", EINVAL, "pty: expected pty ID ROWS COLS (1 to 1000) [options] -- COMMAND");
	} else {
		/* argv[1] is the id; options start after ROWS and COLS, so the id moves next to them. */
		argv[3] = argv[1];
		if (spawn_process(argc - 2, argv + 2, 2, (int)rows, (int)cols, &master)) {
			struct proc *p = find(argv[3]);
			char line[256], qid[160];
			int n = snprintf(line, sizeof line, "{\"event\":\"pty\",\"id\":%s,\"pid\":%d}\n", quoted(qid, sizeof qid, argv[3]),
					 p ? (int)p->pid : 0);
			char cmsg[CMSG_SPACE(sizeof(int))] = { 0 };
			struct iovec iov = { line, (size_t)n };
			struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cmsg, .msg_controllen = sizeof cmsg };
			struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &master, sizeof(int));
			/* The emperor waits for this line: a full socket buffer is impossible for one small line. */
			if (sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && p && !p->exited)
				kill(-p->pid, SIGHUP); /* nobody holds the pty: the session is over before it began */
			close(master);
		}
	}
	error_to = -1;
}

/* The sync pipe: the child's jail pid (spawn), then EOF once it has exec'd or died. */
static void read_sync(struct proc *p)
{
	char buf[64];
	ssize_t n = read(p->sync, buf, sizeof buf);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close_fd(&p->sync);
		return;
	}
	/* Read to EOF: after the pid it may write an exec errno (its status pipe says more), never to no reader. */
	for (ssize_t i = 0; i < n && p->synclen < sizeof p->syncbuf; i++) {
		p->syncbuf[p->synclen++] = buf[i];
		if (p->synclen == sizeof p->syncbuf) {
			memcpy(&p->jail_pid, p->syncbuf, sizeof(pid_t));
			char qid[160];
			event("\"event\":\"spawn\",\"id\":%s,\"pid\":%d,\"jail_pid\":%d,\"start\":%llu,\"born_in_cgroup\":true",
			      quoted(qid, sizeof qid, p->id), (int)p->pid, (int)p->jail_pid, p->start);
		}
	}
}

/*
 * The child's status pipe: what die() in it reports (the step, the errno), one JSON line, passed on with
 * the process's id. A line longer than the buffer is cut: it only ever comes from our own code.
 */
static void read_status(struct proc *p)
{
	if (p->status < 0)
		return;
	ssize_t n = read(p->status, p->statusbuf + p->statuslen, sizeof p->statusbuf - 1 - p->statuslen);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0)
		p->statuslen += (size_t)n;
	char *nl;
	while ((nl = memchr(p->statusbuf, '\n', p->statuslen)) != NULL) {
		*nl = 0;
		char qid[160];
		size_t len = strlen(p->statusbuf);
		if (p->statusbuf[0] == '{' && len > 2 && p->statusbuf[len - 1] == '}') {
			p->statusbuf[len - 1] = 0; /* event() puts the braces back */
			event("\"id\":%s,%s", quoted(qid, sizeof qid, p->id), p->statusbuf + 1);
		}
		size_t used = (size_t)(nl - p->statusbuf) + 1;
		memmove(p->statusbuf, nl + 1, p->statuslen - used);
		p->statuslen -= used;
	}
	if (n <= 0 || p->statuslen >= sizeof p->statusbuf - 1) {
		close_fd(&p->status);
		p->statuslen = 0;
	}
}

/* One read of a process's stdout or stderr into its sink: true if there may be more to read now. */
static bool read_output(struct proc *p, int which)
{
	char buf[2048 * 3]; /* a multiple of 3, and an output event of it fits an event line */
	ssize_t n = read(p->out[which], buf, sizeof buf);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return false;
	if (n <= 0) {
		close_fd(&p->out[which]);
		return false;
	}
	sink_write(p, which, buf, (size_t)n);
	return true;
}

static void read_notify(struct proc *p)
{
	char buf[4096];
	ssize_t n = recv(p->notify, buf, sizeof buf - 1, MSG_DONTWAIT);
	if (n <= 0)
		return;
	buf[n] = 0;
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strcmp(line, "READY=1") && !p->ready) {
			p->ready = true;
			char qid[160];
			event("\"event\":\"notify\",\"id\":%s,\"pid\":%d,\"ready\":true", quoted(qid, sizeof qid, p->id), (int)p->pid);
		}
	}
}

static void exit_event(struct proc *p)
{
	char qid[160];
	if (p->sig)
		event("\"event\":\"exit\",\"id\":%s,\"pid\":%d,\"code\":null,\"signal\":%d", quoted(qid, sizeof qid, p->id), (int)p->pid, p->sig);
	else
		event("\"event\":\"exit\",\"id\":%s,\"pid\":%d,\"code\":%d,\"signal\":null", quoted(qid, sizeof qid, p->id), (int)p->pid, p->code);
}

static bool init_gone;
static int init_status;

/* Reaps every child that has ended: a process of the jail (reported), or the init (the jail is over). */
static void reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == jail->init) {
			init_gone = true;
			init_status = status;
			continue;
		}
		for (int i = 0; i < MAX_PROCS; i++) {
			struct proc *p = &procs[i];
			if (!p->used || p->pid != pid || p->exited)
				continue;
			/* What it wrote just before it ended comes first (its children may write on: read on later). */
			for (int w = 0; w < 2; w++)
				for (int k = 0; k < 64 && p->out[w] >= 0 && read_output(p, w); k++)
					;
			read_status(p);
			p->exited = true;
			p->sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
			p->code = WIFSIGNALED(status) ? 0 : WEXITSTATUS(status);
			exit_event(p);
		}
	}
}

static void report_state(void)
{
	char qlabel[2200];
	event("\"event\":\"state\",\"label\":%s,\"shim\":%d,\"shim_start\":%llu,\"init\":%d,\"init_start\":%llu,\"socket_fd\":%d,"
	      "\"born_in_cgroup\":%s,\"pty\":%s",
	      quoted(qlabel, sizeof qlabel, cspec->label ? cspec->label : ""), (int)getpid(), proc_start_time(getpid()),
	      (int)jail->init, jail->init_start, jail->listen_fd, jail->born_in_cgroup ? "true" : "false",
	      devpts_fd >= 0 ? "true" : "false");
	for (int i = 0; i < MAX_PROCS; i++) {
		struct proc *p = &procs[i];
		if (!p->used || p->forgotten)
			continue;
		char qid[160];
		event("\"event\":\"proc\",\"id\":%s,\"pid\":%d,\"jail_pid\":%d,\"start\":%llu,\"ready\":%s,\"exited\":%s,\"code\":%d,\"signal\":%d",
		      quoted(qid, sizeof qid, p->id), (int)p->pid, (int)p->jail_pid, p->start, p->ready ? "true" : "false",
		      p->exited ? "true" : "false", p->code, p->sig);
	}
	event("\"event\":\"state-end\"");
}

/* --- requests ----------------------------------------------------------------------------------------- */

static void request(char *buf, size_t len)
{
	static char *argv[8194];
	int argc = 0;
	if (len == 0 || buf[len - 1] != '\0')
		return drop_client(); /* not our framing: a bug of the emperor's, never a customer's */
	for (size_t at = 0; at < len && argc < 8192; at += strlen(buf + at) + 1)
		argv[argc++] = buf + at;
	argv[argc] = NULL;
	const char *verb = argv[0];
	if (!strcmp(verb, "start")) {
		start_process(argc, argv);
	} else if (!strcmp(verb, "signal") && argc == 3) {
		struct proc *p = find(argv[1]);
		int sig = atoi(argv[2]);
		/* Never to a process already reaped: its pid (and group id) may be someone else's by now. */
		if (p && !p->exited && sig > 0 && sig < NSIG)
			kill(-p->pid, sig);
	} else if (!strcmp(verb, "forget") && argc == 2) {
		struct proc *p = find(argv[1]);
		if (p && p->exited)
			p->forgotten = true; /* released once its pipes are closed too */
	} else if (!strcmp(verb, "state") && argc == 1) {
		report_state();
	} else if (!strcmp(verb, "stop") && argc == 1) {
		kill(jail->init, SIGKILL); /* the kernel then ends every process of the pid namespace */
	} else {
		report_error("", EINVAL, "expected start, signal, forget, state or stop");
	}
}

/* The requests complete in inbuf, in order. */
static void handle_input(void)
{
	for (;;) {
		uint32_t size;
		if (inlen < 4)
			return;
		memcpy(&size, inbuf, 4);
		if (size > MAX_REQUEST)
			return drop_client();
		if (inlen < 4 + (size_t)size)
			return;
		request(inbuf + 4, size);
		if (client < 0)
			return;
		memmove(inbuf, inbuf + 4 + size, inlen - 4 - size);
		inlen -= 4 + (size_t)size;
	}
}

static void read_client(void)
{
	ssize_t n = recv(client, inbuf + inlen, MAX_REQUEST + 4 - inlen, MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0)
		return drop_client();
	inlen += (size_t)n;
	handle_input();
}

/* Only root may connect (the directory is root's too); what it is, its first request says. */
static void accept_client(void)
{
	int fd = accept4(control, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != 0) {
		close(fd);
		return;
	}
	struct pending *slot = NULL;
	for (int i = 0; i < MAX_PENDING && !slot; i++)
		if (pend[i].fd < 0)
			slot = &pend[i];
	if (!slot) { /* root's own connections that say nothing: the oldest makes room */
		slot = &pend[0];
		close(slot->fd);
		free(slot->buf);
	}
	*slot = (struct pending){ fd, NULL, 0 };
}

static void pending_done(struct pending *c, bool close_it)
{
	if (close_it)
		close(c->fd);
	free(c->buf);
	*c = (struct pending){ -1, NULL, 0 };
}

/* A newer emperor replaces the older connection, with what it has sent so far. */
static void promote(struct pending *c)
{
	if (client >= 0) {
		/*
		 * Told to the older emperor, so it does not connect back (two would take the shim from each other);
		 * after a newline, so a line it was half sent is one it drops.
		 */
		static const char note[] = "\n{\"event\":\"replaced\"}\n";
		(void)!send(client, note, sizeof note - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	drop_client();
	client = c->fd;
	memcpy(inbuf, c->buf, c->len);
	inlen = c->len;
	pending_done(c, false);
	handle_input();
}

static void read_pending(struct pending *c)
{
	if (!c->buf)
		c->buf = xcalloc(MAX_PTY_REQUEST + 4, 1);
	ssize_t n = recv(c->fd, c->buf + c->len, MAX_PTY_REQUEST + 4 - c->len, MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0)
		return pending_done(c, true);
	c->len += (size_t)n;
	if (c->len < 8)
		return;
	if (memcmp(c->buf + 4, "pty", 4) != 0)
		return promote(c);
	uint32_t size;
	memcpy(&size, c->buf, 4);
	if (size > MAX_PTY_REQUEST) {
		error_to = c->fd;
		report_error("", E2BIG, "pty: the request is larger than 256 KiB (the vassal's env?)");
		error_to = -1;
		return pending_done(c, true);
	}
	if (c->len < 4 + (size_t)size)
		return;
	if (size == 0 || c->buf[4 + size - 1] != '\0')
		return pending_done(c, true); /* not our framing */
	pty_request(c->fd, c->buf + 4, size);
	pending_done(c, true);
}

static int open_control(const char *path)
{
	set_step("create the control socket");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof addr.sun_path)
		die("--control: expected a path shorter than %zu bytes, got %s", sizeof addr.sun_path, path);
	strcpy(addr.sun_path, path);
	/* A shim that still answers there is another jail of that name: never two. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof addr) == 0)
		die_with(EADDRINUSE, EXIT_SETUP, "another shim serves %s", path);
	if (probe >= 0)
		close(probe);
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(path) < 0)
		die_errno("unlink the stale %s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die_errno("socket");
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
	umask(old);
	if (rc < 0 || listen(fd, 8) < 0)
		die_errno("listen on %s", path);
	return fd;
}

static __attribute__((noreturn)) void end_jail(void)
{
	/* Every process of the jail died with its init: reap and report them, wait for the cgroups to empty. */
	for (int tries = 0; tries < 500 && !cgroups_empty_but(cspec->cgroups, cspec->n_cgroups, getpid()); tries++) {
		reap();
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	reap();
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i].used) {
			if (!procs[i].exited) { /* reaped before we looked: it ended with the jail */
				procs[i].exited = true;
				procs[i].sig = SIGKILL;
				exit_event(&procs[i]);
			}
			release(&procs[i]);
		}
	remove_listen_socket(&jail->place);
	(void)unlink(cspec->control_path); /* root's directory: nobody else can have put anything there */
	if (WIFSIGNALED(init_status))
		event("\"event\":\"exit\",\"code\":null,\"signal\":%d", WTERMSIG(init_status));
	else
		event("\"event\":\"exit\",\"code\":%d,\"signal\":null", WEXITSTATUS(init_status));
	/* The last words to a connected emperor, within a second. */
	for (int i = 0; i < 100 && client >= 0 && outlen > 0; i++) {
		struct pollfd pf = { client, POLLOUT, 0 };
		(void)poll(&pf, 1, 10);
		flush_client();
	}
	_exit(0);
}

/*
 * The jail's devpts, as an O_PATH fd, opened while nothing of the customer's has run yet (the root was just
 * built by the init), beneath the init's root and through no symlink; -1 if the jail has none.
 */
static int open_devpts(pid_t init)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/root", (int)init);
	int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return -1;
	struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	int fd = (int)syscall(SYS_openat2, root, "dev/pts", &how, sizeof how);
	close(root);
	struct statfs st;
	if (fd >= 0 && (fstatfs(fd, &st) < 0 || st.f_type != DEVPTS_SUPER_MAGIC)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

void shim_serve(const struct create_spec *spec, struct shim_jail *j)
{
	cspec = spec;
	jail = j;
	inbuf = xcalloc(MAX_REQUEST + 4, 1);
	outbuf = xcalloc(MAX_OUT, 1);
	signal(SIGPIPE, SIG_IGN);
	control = open_control(spec->control_path);
	if (spec->run_dir) {
		run_dir_fd = open(spec->run_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (run_dir_fd < 0)
			die_errno("open the run dir %s", spec->run_dir);
	}
	devpts_fd = open_devpts(j->init);
	status_event("\"event\":\"ready\",\"shim\":%d,\"init\":%d,\"init_start\":%llu,\"shim_start\":%llu,"
		     "\"socket_fd\":%d,\"born_in_cgroup\":%s,\"control\":true,\"pty\":%s",
		     (int)getpid(), (int)j->init, j->init_start, proc_start_time(getpid()), j->listen_fd,
		     j->born_in_cgroup ? "true" : "false", devpts_fd >= 0 ? "true" : "false");
	/*
	 * From here on the emperor may come and go: nothing of the shim's is tied to it. The status fd and stdio
	 * were the creating emperor's pipes; they go, so that its death is no SIGPIPE or EPIPE of ours.
	 */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		die_errno("open /dev/null");
	if (status_fd() >= 0)
		close(status_fd());
	status_set_fd(-1);
	for (int fd = 0; fd < 3; fd++)
		(void)dup2(null, fd); /* EBADF is impossible: null is open */
	close(null);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		die_errno("signalfd");
	set_step("serve");
	enum { FIXED = 3 + MAX_PENDING };
	static struct pollfd pf[FIXED + MAX_PROCS * 5];
	static struct { struct proc *p; int kind; } who[FIXED + MAX_PROCS * 5];
	for (;;) {
		if (init_gone)
			end_jail();
		int n = 0;
		pf[n++] = (struct pollfd){ sfd, POLLIN, 0 };
		pf[n++] = (struct pollfd){ control, POLLIN, 0 };
		pf[n++] = (struct pollfd){ client, (short)(POLLIN | (outlen ? POLLOUT : 0)), 0 };
		for (int i = 0; i < MAX_PENDING; i++)
			pf[n++] = (struct pollfd){ pend[i].fd, POLLIN, 0 };
		for (int i = 0; i < MAX_PROCS; i++) {
			struct proc *p = &procs[i];
			if (!p->used)
				continue;
			if (p->forgotten && p->out[0] < 0 && p->out[1] < 0 && p->status < 0) {
				release(p);
				continue;
			}
			int fds[5] = { p->out[0], p->out[1], p->sync, p->exited ? -1 : p->notify, p->status };
			for (int k = 0; k < 5; k++)
				if (fds[k] >= 0) {
					who[n].p = p;
					who[n].kind = k;
					pf[n++] = (struct pollfd){ fds[k], POLLIN, 0 };
				}
		}
		if (poll(pf, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			die_errno("poll");
		}
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == sizeof si) {
				if (si.ssi_signo == SIGCHLD)
					reap();
				else
					kill(jail->init, SIGKILL); /* SIGTERM, SIGINT, SIGHUP: end the jail */
			}
		}
		if (pf[1].revents & POLLIN)
			accept_client();
		if (client >= 0 && pf[2].fd == client) {
			if (pf[2].revents & (POLLIN | POLLHUP | POLLERR))
				read_client();
			if (client >= 0 && (pf[2].revents & POLLOUT))
				flush_client();
		}
		for (int i = 0; i < MAX_PENDING; i++)
			if (pend[i].fd >= 0 && pf[3 + i].fd == pend[i].fd && (pf[3 + i].revents & (POLLIN | POLLHUP | POLLERR)))
				read_pending(&pend[i]);
		for (int i = FIXED; i < n; i++) {
			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)) || !who[i].p->used)
				continue;
			struct proc *p = who[i].p;
			if (who[i].kind < 2 && p->out[who[i].kind] == pf[i].fd)
				read_output(p, who[i].kind);
			else if (who[i].kind == 2 && p->sync == pf[i].fd)
				read_sync(p);
			else if (who[i].kind == 3 && p->notify == pf[i].fd)
				read_notify(p);
			else if (who[i].kind == 4 && p->status == pf[i].fd)
				read_status(p);
		}
		flush_client();
	}
}
