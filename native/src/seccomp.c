#include "seccomp.h"
#include "util.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>

/*
 * A deny list of what a hosted app never needs and what jail escapes are made of (Docker's and nsjail's
 * defaults are the prior art). Denied calls fail with EPERM, so programs see an ordinary error.
 * Syscalls of a foreign architecture (i386 int 0x80, x32) hit libseccomp's default bad-arch action: kill.
 */
static const char *const denied[] = {
	/* the mount family: the jail's tree is fixed once built */
	"mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
	"fsmount", "fspick", "mount_setattr",
	/* other namespaces: never join or create one */
	"setns", "unshare",
	/* the kernel itself */
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon",
	"swapoff", "syslog", "acct", "iopl", "ioperm", "quotactl", "quotactl_fd", "lookup_dcookie", "nfsservctl",
	"uselib", "_sysctl", "vhangup", "personality",
	/* the clock is the host's */
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
	/* tracing and introspection of the kernel */
	"bpf", "perf_event_open", "userfaultfd", "kcmp",
	/* keyrings are not namespaced */
	"keyctl", "add_key", "request_key",
	/* file handles bypass the mount tree (the "shocker" escape) */
	"open_by_handle_at", "name_to_handle_at",
	/* io_uring runs syscalls on a kernel thread, out of this filter's sight, and has been a steady source of
	 * kernel bugs (Google disabled it in ChromeOS, Android and its servers; Docker's default profile denies it) */
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	NULL,
};

void load_seccomp(void)
{
	set_step("load seccomp filter");
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		die("seccomp_init failed");
	int rc;
	for (int i = 0; denied[i]; i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr == __NR_SCMP_ERROR) /* harmless: this architecture has no such syscall */
			continue;
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
		if (rc < 0)
			die_with(-rc, EXIT_SETUP, "seccomp rule for %s", denied[i]);
	}
	/* clone with any namespace flag: EPERM (plain fork and threads stay allowed); one rule per flag. */
	static const unsigned long ns_flags[] = { CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
						  CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP };
	for (size_t i = 0; i < sizeof ns_flags / sizeof ns_flags[0]; i++) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
		if (rc < 0)
			die_with(-rc, EXIT_SETUP, "seccomp rule for clone");
	}
	/* clone3 passes flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone. */
	rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (rc < 0)
		die_with(-rc, EXIT_SETUP, "seccomp rule for clone3");
	/* Typing into another terminal (CVE-2017-5226) and console tricks. */
	for (unsigned long req = 0; req < 2; req++) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, req ? (unsigned long)TIOCLINUX : (unsigned long)TIOCSTI));
		if (rc < 0)
			die_with(-rc, EXIT_SETUP, "seccomp rule for ioctl");
	}
	rc = seccomp_load(ctx);
	if (rc < 0)
		die_with(-rc, EXIT_SETUP, "seccomp_load");
	seccomp_release(ctx);
}
