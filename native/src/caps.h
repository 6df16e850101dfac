/* Privileges: everything a jailed process must lose before it runs a customer's code. */
#pragma once
#include <sys/types.h>

/* Empties the bounding and ambient sets (needs CAP_SETPCAP: call while still root). */
void drop_bounding_and_ambient(void);
/* setgroups(0), setresgid, setresuid to an unprivileged user; then checks that root cannot come back. */
void become_user(uid_t uid, gid_t gid);
/* Locks securebits so that no uid change or exec can keep or grant capabilities (needs CAP_SETPCAP). */
void lock_securebits(void);
/* Clears the effective, permitted and inheritable sets and sets no_new_privs. */
void drop_all_caps(void);
