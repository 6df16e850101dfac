#include "listen.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static int open_beneath(int dir, const char *name)
{
	struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	return (int)syscall(SYS_openat2, dir, name, &how, sizeof how);
}

/*
 * The directory REL's socket goes in, as an O_PATH fd: the run dir itself, or subdirectories created here
 * (mode 0755, root's). A component that exists must be a root-owned directory nobody else can write: one the
 * vassal made could be emptied and refilled with anything between our steps.
 */
static int socket_dir(const char *run_dir, const char *rel, const char **name)
{
	int dir = open(run_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir < 0)
		die_errno("open the run dir %s", run_dir);
	char *copy = xstrdup(rel);
	char *last = strrchr(copy, '/');
	*name = rel + (last ? last - copy + 1 : 0);
	if (last) {
		*last = 0;
		for (char *save = NULL, *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
			if (!strcmp(c, ".") || !strcmp(c, ".."))
				die_with(EINVAL, EXIT_SETUP, "socket path %s: expected no . or .. component", rel);
			if (mkdirat(dir, c, 0755) < 0 && errno != EEXIST)
				die_errno("mkdir %s/%s (for the socket %s)", run_dir, c, rel);
			int next = open_beneath(dir, c);
			struct stat st;
			if (next < 0 || fstat(next, &st) < 0)
				die_errno("socket path %s: component %s must be a directory, not a symlink", rel, c);
			if (st.st_uid != 0 || (st.st_mode & 022))
				die_with(EPERM, EXIT_SETUP,
					 "socket path %s: expected the directory %s to be root's and writable by root only, got uid %u mode %03o (made by the vassal?)",
					 rel, c, (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
			close(dir);
			dir = next;
		}
	}
	free(copy);
	if (!**name || !strcmp(*name, ".") || !strcmp(*name, ".."))
		die_with(EINVAL, EXIT_SETUP, "socket path %s: expected a file name at the end", rel);
	return dir;
}

int listen_unix(const char *run_dir, const char *rel, uid_t uid, gid_t gid, mode_t mode, int backlog,
		struct listen_place *place)
{
	set_step("create the listening socket");
	const char *name;
	int dir = socket_dir(run_dir, rel, &name);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(name) >= sizeof addr.sun_path)
		die_with(ENAMETOOLONG, EXIT_SETUP, "socket name %s is longer than %zu bytes", name, sizeof addr.sun_path - 1);
	strcpy(addr.sun_path, name);
	struct stat st;
	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		/* A stale socket from an earlier run is replaced; anything else at that path is not ours to delete. */
		if (!S_ISSOCK(st.st_mode))
			die_with(EEXIST, EXIT_SETUP, "%s/%s exists and is not a socket", run_dir, rel);
		if (unlinkat(dir, name, 0) < 0)
			die_errno("unlink stale socket %s/%s", run_dir, rel);
	} else if (errno != ENOENT) {
		die_errno("lstat %s/%s", run_dir, rel);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die_errno("socket");
	/*
	 * bind() takes a path, not a directory fd: bind the bare name with the socket's directory as our cwd
	 * (the shim is single-threaded). The mode comes from the umask at bind time and the owner from fchownat
	 * without following: never a chmod(path) that a swapped-in symlink would redirect.
	 */
	int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cwd < 0 || fchdir(dir) < 0)
		die_errno("enter the socket's directory");
	mode_t old = umask(~mode & 0777);
	int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
	int bind_errno = errno;
	umask(old);
	if (fchdir(cwd) < 0)
		die_errno("leave the socket's directory");
	close(cwd);
	if (rc < 0)
		die_with(bind_errno, EXIT_SETUP, "bind %s/%s", run_dir, rel);
	if (fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
		die_errno("chown %s/%s to %u:%u", run_dir, rel, (unsigned)uid, (unsigned)gid);
	if (listen(fd, backlog) < 0)
		die_errno("listen %s/%s", run_dir, rel);
	place->dir = dir;
	place->name = name;
	return fd;
}

void remove_listen_socket(const struct listen_place *place)
{
	struct stat st;
	if (place->dir < 0)
		return;
	/* ENOENT is harmless: the run dir is unmounted already. */
	if (fstatat(place->dir, place->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode))
		(void)unlinkat(place->dir, place->name, 0);
}
