#include "caps.h"
#include "util.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

void drop_bounding_and_ambient(void)
{
	set_step("drop capabilities");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		die_errno("clear the ambient set");
	for (int cap = 0; cap <= 63; cap++) {
		/* EINVAL past the kernel's last capability is the loop's end, not an error. */
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break;
			die_errno("drop capability %d from the bounding set", cap);
		}
	}
}

void lock_securebits(void)
{
	set_step("lock securebits");
	/*
	 * Lock the securebits first (nsjail d10c9fb): KEEP_CAPS or NO_SETUID_FIXUP left set would let a later
	 * uid change keep capabilities. NOROOT: exec of a setuid-root file grants nothing either.
	 */
	int bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
		   SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
	/* EPERM without CAP_SETPCAP (already dropped, e.g. after setuid): the sets below are what counts. */
	if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0)
		die_errno("set securebits");
}

void drop_all_caps(void)
{
	set_step("drop capabilities");
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
	if (syscall(SYS_capset, &hdr, data) < 0)
		die_errno("capset to empty");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die_errno("set no_new_privs");
}

void become_user(uid_t uid, gid_t gid)
{
	set_step("drop privileges");
	if (uid == 0 || gid == 0)
		die("refusing to run a jailed process as root (uid %u gid %u)", (unsigned)uid, (unsigned)gid);
	if (setgroups(0, NULL) < 0)
		die_errno("setgroups");
	if (setresgid(gid, gid, gid) < 0)
		die_errno("setresgid %u", (unsigned)gid);
	if (setresuid(uid, uid, uid) < 0)
		die_errno("setresuid %u", (unsigned)uid);
	/* Belt and braces (tini, nsjail): getting root back must now be impossible. */
	if (setuid(0) == 0 || setgid(0) == 0)
		die("could regain root after dropping privileges");
}
