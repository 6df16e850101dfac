/* The vassal's listening socket: created, owned and held by the shim for the jail's whole life. */
#pragma once
#include <sys/types.h>

/* Creates a listening unix socket at path with owner and mode; returns its fd. */
int listen_unix(const char *path, uid_t uid, gid_t gid, mode_t mode, int backlog);
