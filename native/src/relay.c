#include "relay.h"
#include "status.h"
#include "util.h"

#include <errno.h>
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

/* Copies what is readable on from to to; returns false on EOF or error. */
static bool pump(int from, int to)
{
	char buf[16384];
	ssize_t n = read(from, buf, sizeof buf);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	return write_all(to, buf, (size_t)n);
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
	bool ready = false;
	set_step("relay");
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (int i = 0; forwarded[i]; i++)
		sigaddset(&set, forwarded[i]);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0)
		die_errno("signalfd");
	if (master >= 0)
		copy_winsize(master);
	bool in_open = master >= 0, out_open = master >= 0, exited = false;
	int status = 0;
	while (!exited || out_open) {
		struct pollfd p[4] = { { sfd, POLLIN, 0 }, { in_open ? STDIN_FILENO : -1, POLLIN, 0 },
				       { out_open ? master : -1, POLLIN, 0 }, { exited ? -1 : notify, POLLIN, 0 } };
		/* Once the child is gone, drain what it wrote, but do not wait for more than a moment. */
		if (poll(p, 4, exited ? 100 : -1) < 0) {
			if (errno == EINTR)
				continue;
			die_errno("poll");
		}
		if (exited && !(p[2].revents & (POLLIN | POLLHUP)))
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
				} else {
					/* To the whole process group: the child is a session leader, its group is its pid. */
					kill(-child, sig);
				}
			}
		}
		if (p[3].revents & POLLIN)
			read_notify(notify, child, &ready);
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
			in_open = pump(STDIN_FILENO, master);
		if (p[2].revents & (POLLIN | POLLHUP | POLLERR))
			out_open = pump(master, STDOUT_FILENO); /* EIO once every slave fd is closed */
	}
	if (!exited && waitpid(child, &status, 0) < 0)
		die_errno("waitpid");
	close(sfd);
	return status;
}
