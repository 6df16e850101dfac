#include "listen.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int listen_unix(const char *path, uid_t uid, gid_t gid, mode_t mode, int backlog)
{
	set_step("create the listening socket");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof addr.sun_path)
		die_with(ENAMETOOLONG, EXIT_SETUP, "socket path %s is longer than %zu bytes", path, sizeof addr.sun_path - 1);
	strcpy(addr.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0) {
		/* A stale socket from an earlier run is replaced; anything else at that path is not ours to delete. */
		if (!S_ISSOCK(st.st_mode))
			die_with(EEXIST, EXIT_SETUP, "%s exists and is not a socket", path);
		if (unlink(path) < 0)
			die_errno("unlink stale socket %s", path);
	} else if (errno != ENOENT) {
		die_errno("lstat %s", path);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die_errno("socket");
	/*
	 * The mode comes from the umask at bind time and the owner from lchown, never from chmod(path): the run
	 * dir is writable by the vassal, who could swap the new socket for a symlink to a host file between
	 * bind and a chmod that follows it. lchown on a swapped-in symlink changes only the symlink.
	 */
	mode_t old = umask(~mode & 0777);
	int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
	umask(old);
	if (rc < 0)
		die_errno("bind %s", path);
	if (lchown(path, uid, gid) < 0)
		die_errno("chown %s to %u:%u", path, (unsigned)uid, (unsigned)gid);
	if (listen(fd, backlog) < 0)
		die_errno("listen %s", path);
	return fd;
}
