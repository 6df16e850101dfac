#include "relay.h"
#include "status.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGCONT, SIGWINCH, 0 };

static void copy_winsize(int master)
{
	struct winsize ws;
	/* ENOTTY: our stdin is not a terminal, so there is no size to copy. */
	if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
		(void)ioctl(master, TIOCSWINSZ, &ws);
}

/*
 * One direction of the pty relay. Nothing here ever blocks: a write that would block keeps its bytes in
 * the buffer and the source is not read again until they are gone (backpressure), so the relay always
 * comes back to its signalfd. A blocking write_all() here once held a reaped-never child as a zombie
 * whenever the reader stopped (a raw-mode shell not reading, a paused client): the jail's init then waited
 * for it forever in its pid namespace's teardown.
 */
struct flow {
	int from, to;
	bool open; /* false once `from` reached EOF or an error */
	char buf[16384];
	size_t off, len;
};

/* Reads into an empty buffer; false on EOF or a real error. */
static bool flow_read(struct flow *f)
{
	ssize_t n = read(f->from, f->buf, sizeof f->buf);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false; /* EIO from a pty master once every slave fd is closed */
	f->off = 0;
	f->len = (size_t)n;
	return true;
}

/* Writes what the destination takes now; false when it is gone (EPIPE, EIO). */
static bool flow_write(struct flow *f)
{
	ssize_t n = write(f->to, f->buf + f->off, f->len - f->off);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	f->off += (size_t)n;
	if (f->off == f->len)
		f->off = f->len = 0;
	return true;
}

/* O_NONBLOCK on an fd; returns the flags to restore (our stdio may be a terminal we share). */
static int set_nonblock(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags >= 0)
		(void)fcntl(fd, F_SETFL, flags | O_NONBLOCK); /* EBADF: a closed stdio, nothing to relay */
	return flags;
}

/* Reads one sd_notify datagram; READY=1 on a line of its own is reported once. */
static void read_notify(int fd, pid_t child, bool *ready)
{
	char buf[4096];
	ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
	if (n <= 0)
		return;
	buf[n] = 0;
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strcmp(line, "READY=1") && !*ready) {
			*ready = true;
			status_event("\"event\":\"notify\",\"pid\":%d,\"ready\":true", (int)child);
		}
	}
}

int relay_until_exit(pid_t child, int master, int notify)
{
	bool ready_sent = false;
	set_step("relay");
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (int i = 0; forwarded[i]; i++)
		sigaddset(&set, forwarded[i]);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0)
		die_errno("signalfd");
	int in_flags = -1, out_flags = -1;
	if (master >= 0) {
		copy_winsize(master);
		set_nonblock(master);
		in_flags = set_nonblock(STDIN_FILENO);
		out_flags = set_nonblock(STDOUT_FILENO);
	}
	struct flow in = { .from = STDIN_FILENO, .to = master, .open = master >= 0 };
	struct flow out = { .from = master, .to = STDOUT_FILENO, .open = master >= 0 };
	bool exited = false;
	int status = 0;
	while (!exited || out.open || out.len) {
		struct pollfd p[6] = {
			{ sfd, POLLIN, 0 },
			{ in.open && !in.len ? in.from : -1, POLLIN, 0 },
			{ in.len ? in.to : -1, POLLOUT, 0 },
			{ out.open && !out.len ? out.from : -1, POLLIN, 0 },
			{ out.len ? out.to : -1, POLLOUT, 0 },
			{ exited ? -1 : notify, POLLIN, 0 },
		};
		/* Once the child is gone, drain what it wrote, but do not wait for more than a moment. */
		int ready = poll(p, 6, exited ? 100 : -1);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			die_errno("poll");
		}
		if (exited && ready == 0)
			break;
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) == sizeof si) {
				int sig = (int)si.ssi_signo;
				if (sig == SIGCHLD) {
					if (waitpid(child, &status, WNOHANG) == child)
						exited = true;
				} else if (sig == SIGWINCH && master >= 0) {
					copy_winsize(master);
				} else if (!exited) {
					/*
					 * To the whole process group: the child is a session leader, its group is its pid.
					 * Never once it is reaped: its pid (and group id) may belong to someone else by now.
					 */
					kill(-child, sig);
				}
			}
		}
		if (p[5].revents & POLLIN)
			read_notify(notify, child, &ready_sent);
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
			in.open = flow_read(&in);
		if ((p[2].revents & (POLLOUT | POLLERR | POLLHUP)) && !flow_write(&in))
			in.open = false, in.len = 0;
		if (p[3].revents & (POLLIN | POLLHUP | POLLERR))
			out.open = flow_read(&out);
		if ((p[4].revents & (POLLOUT | POLLERR | POLLHUP)) && !flow_write(&out))
			out.open = false, out.len = 0;
	}
	if (in_flags >= 0)
		(void)fcntl(STDIN_FILENO, F_SETFL, in_flags);
	if (out_flags >= 0)
		(void)fcntl(STDOUT_FILENO, F_SETFL, out_flags);
	if (!exited && waitpid(child, &status, 0) < 0)
		die_errno("waitpid");
	close(sfd);
	return status;
}
