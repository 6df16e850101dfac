#include "jail-init.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

void run_init(void)
{
	/*
	 * Every signal is blocked and taken with sigwaitinfo (tini's loop). A namespace's PID 1 never gets a
	 * default-action signal from inside, so nothing in the jail can stop it; only the shim's SIGKILL,
	 * sent from the parent namespace, ends it, and with it every process of the jail.
	 */
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (;;) {
		siginfo_t info;
		int sig = sigwaitinfo(&all, &info);
		if (sig != SIGCHLD)
			continue;
		/* Reap everything that is ready: orphans of the jail are reparented to us. */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}
