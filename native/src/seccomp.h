/* The seccomp filter every jailed process runs under (and the jail init too). */
#pragma once
/* Loads the deny-list filter; needs no_new_privs (or CAP_SYS_ADMIN). */
void load_seccomp(void);
