/* The vassal's listening socket: created, owned and held by the shim for the jail's whole life. */
#pragma once
#include <sys/types.h>

/* Where a listening socket was made: its directory (an O_PATH fd) and its name there. */
struct listen_place {
	int dir;
	const char *name;
};

/*
 * Creates a listening unix socket at REL beneath the run dir RUN_DIR, with owner and mode; returns its fd
 * and where it is (for remove_listen_socket). REL's directories are created by root, root-owned, and every
 * step goes through a directory fd that refuses symlinks: the vassal can write to its run dir, and root
 * must never follow a path it could have changed.
 */
int listen_unix(const char *run_dir, const char *rel, uid_t uid, gid_t gid, mode_t mode, int backlog,
		struct listen_place *place);

/* Removes the socket made by listen_unix, only if what is there now is still a socket. */
void remove_listen_socket(const struct listen_place *place);
