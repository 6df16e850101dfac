#include "mount.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Where the host's tree sits while the root is built; detached before anything runs in the jail. */
#define OLDROOT "/oldroot"

static int oldroot_fd = -1; /* the host tree: bind sources resolve inside it */
static int root_fd = -1;    /* the new root: destinations resolve beneath it */

static int openat2_fd(int dirfd, const char *path, int flags, unsigned long long resolve)
{
	struct open_how how = { .flags = (unsigned long long)flags | O_CLOEXEC, .resolve = resolve };
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/*
 * Opens a path inside the new root. RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS: a symlink anywhere on the way
 * (a planted /dev -> /, a bind target the customer replaced) fails with ELOOP instead of leading out.
 */
static int open_dest(const char *dest, int flags)
{
	while (*dest == '/')
		dest++;
	return openat2_fd(root_fd, *dest ? dest : ".", flags,
			  RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

/* "/proc/self/fd/N" through the host's procfs, which is mounted until the old root is detached. */
static const char *fd_path(int fd, char buf[64])
{
	snprintf(buf, 64, OLDROOT "/proc/self/fd/%d", fd);
	return buf;
}

/* mkdir -p beneath the new root, refusing symlinks; returns an O_PATH fd of the last directory. */
static int make_dirs(const char *dest)
{
	char *copy = xstrdup(dest);
	int dir = dup(root_fd);
	if (dir < 0)
		die_errno("dup");
	for (char *save = NULL, *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		/* EEXIST is harmless: the directory is already there (checked by the open below). */
		if (mkdirat(dir, c, 0755) < 0 && errno != EEXIST)
			die_errno("mkdir %s (component %s)", dest, c);
		int next = openat2_fd(dir, c, O_PATH | O_DIRECTORY, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
		if (next < 0)
			die_errno("open %s (component %s must be a directory, not a symlink)", dest, c);
		close(dir);
		dir = next;
	}
	free(copy);
	return dir;
}

/* The parent directory of dest (created), and its last component in *name. */
static int make_parent(const char *dest, const char **name)
{
	char *copy = xstrdup(dest);
	char *slash = strrchr(copy, '/');
	*name = dest + (slash ? slash - copy + 1 : 0);
	if (slash)
		*slash = 0;
	int dir = make_dirs(copy);
	free(copy);
	if (!**name)
		die("destination %s has no name", dest);
	return dir;
}

/* Host places no bind may expose, whatever path leads there: the root itself and the kernel's trees. */
static const char *const forbidden_sources[] = { "/proc", "/sys", "/dev", NULL };

/* File systems no bind may expose (the kernel's interfaces), checked on the opened source itself. */
static bool forbidden_fs(int fd)
{
	struct statfs sf;
	if (fstatfs(fd, &sf) < 0)
		die_errno("statfs a bind source");
	switch ((unsigned long)sf.f_type) {
	case PROC_SUPER_MAGIC: case SYSFS_MAGIC: case CGROUP_SUPER_MAGIC: case CGROUP2_SUPER_MAGIC:
	case DEVPTS_SUPER_MAGIC: case SECURITYFS_MAGIC: case DEBUGFS_MAGIC: case TRACEFS_MAGIC:
	case BPF_FS_MAGIC: case NSFS_MAGIC:
		return true;
	default:
		return false;
	}
}

/*
 * Where the opened source really is on the host, from the kernel (the fd's path, seen from our new root
 * with the host tree under OLDROOT), and a refusal if that is the host's root, /proc, /sys or /dev (or
 * a kernel file system anywhere): the check is on what was opened, not on the text we were given.
 */
static void check_source(int src, const char *text)
{
	char link[64], real[4096];
	snprintf(link, sizeof link, OLDROOT "/proc/self/fd/%d", src);
	ssize_t n = readlink(link, real, sizeof real - 1);
	if (n < 0)
		die_errno("resolve the bind source %s", text);
	real[n] = 0;
	const char *host = real;
	size_t old = strlen(OLDROOT);
	if (!strncmp(real, OLDROOT, old) && (real[old] == '/' || real[old] == 0))
		host = real[old] ? real + old : "/";
	bool bad = !strcmp(host, "/");
	for (int i = 0; !bad && forbidden_sources[i]; i++) {
		size_t l = strlen(forbidden_sources[i]);
		bad = !strncmp(host, forbidden_sources[i], l) && (host[l] == '/' || host[l] == 0);
	}
	if (bad || forbidden_fs(src))
		die_with(EPERM, EXIT_SETUP, "bind source %s: resolves to %s, which a jail may never see (/, /proc, /sys, /dev or a kernel file system)",
			 text, host);
}

static void do_bind(const struct mount_op *op, bool read_only)
{
	set_step(read_only ? "ro-bind" : "bind");
	/*
	 * The source resolves inside the host tree (RESOLVE_IN_ROOT: absolute symlinks stay in it). The
	 * system tree may hold symlinks root made; a strict source (the vassal's binds and home, whose
	 * directories a customer may own) follows none in any component, so swapping a directory of the path
	 * for a symlink fails with ELOOP instead of mounting whatever it points at. Either way the last component
	 * is not followed.
	 */
	unsigned long long resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (op->strict ? RESOLVE_NO_SYMLINKS : 0);
	int src = openat2_fd(oldroot_fd, op->src, O_PATH | O_NOFOLLOW, resolve);
	if (src < 0 && errno == ELOOP && op->strict)
		die_with(ELOOP, EXIT_SETUP, "bind source %s: a component of the path is a symlink; give the real path (realpath %s): a symlink there could be swapped by whoever owns its directory",
			 op->src, op->src);
	if (src < 0)
		die_errno("bind source %s", op->src);
	struct stat st;
	if (fstat(src, &st) < 0)
		die_errno("stat %s", op->src);
	if (S_ISLNK(st.st_mode))
		die_with(ELOOP, EXIT_SETUP, "bind source %s is a symlink; bind its target instead", op->src);
	if (op->strict)
		check_source(src, op->src);
	const char *name;
	int parent = make_parent(op->dest, &name);
	if (S_ISDIR(st.st_mode)) {
		if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST)
			die_errno("mkdir %s", op->dest);
	} else {
		int f = openat(parent, name, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
		/* EROFS/EEXIST on an existing file in a read-only tree: the open below decides. */
		if (f >= 0)
			close(f);
	}
	close(parent);
	int dst = open_dest(op->dest, O_PATH);
	if (dst < 0)
		die_errno("bind destination %s", op->dest);
	char a[64], b[64];
	if (mount(fd_path(src, a), fd_path(dst, b), NULL, MS_BIND, NULL) < 0)
		die_errno("bind %s on %s", op->src, op->dest);
	close(dst);
	/* Reopen: the old fd names the directory under the new mount, and flags must change on the mount. */
	dst = open_dest(op->dest, O_PATH);
	if (dst < 0)
		die_errno("reopen %s", op->dest);
	unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (read_only ? MS_RDONLY : 0);
	if (mount(NULL, fd_path(dst, b), NULL, flags, NULL) < 0)
		die_errno("remount %s %s", op->dest, read_only ? "read-only" : "nosuid,nodev");
	close(dst);
	close(src);
}

static void mount_fs(const char *dest, const char *type, unsigned long flags, const char *data)
{
	int dir = make_dirs(dest);
	char b[64];
	if (mount(type, fd_path(dir, b), type, flags, data) < 0)
		die_errno("mount %s on %s", type, dest);
	close(dir);
}

/* Opens PROC/NAME beneath the new root, or returns -1 when this kernel has no such entry (harmless). */
static int open_proc_entry(const char *proc, const char *name, char path[512])
{
	snprintf(path, 512, "%s/%s", proc, name);
	int fd = open_dest(path, O_PATH | O_NOFOLLOW);
	if (fd < 0 && errno != ENOENT)
		die_errno("open %s", path);
	return fd;
}

/* Covers a /proc file with the host's /dev/null, after checking it really is char 1:3 (runc verifyDevNull). */
static void mask_proc_file(const char *proc, const char *file)
{
	char path[512];
	int dst = open_proc_entry(proc, file, path);
	if (dst < 0)
		return;
	int null = openat2_fd(oldroot_fd, "/dev/null", O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS);
	struct stat st;
	if (null < 0 || fstat(null, &st) < 0)
		die_errno("open the host's /dev/null");
	if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
		die("the host's /dev/null is not the null device");
	char a[64], b[64];
	if (mount(fd_path(null, a), fd_path(dst, b), NULL, MS_BIND, NULL) < 0)
		die_errno("mask %s", path);
	close(null);
	close(dst);
}

static void ro_proc_dir(const char *proc, const char *sub)
{
	char path[512];
	int dst = open_proc_entry(proc, sub, path);
	if (dst < 0)
		return;
	char b[64];
	if (mount(fd_path(dst, b), fd_path(dst, b), NULL, MS_BIND | MS_REC, NULL) < 0)
		die_errno("bind %s on itself", path);
	close(dst);
	dst = open_dest(path, O_PATH | O_NOFOLLOW);
	if (dst < 0 || mount(NULL, fd_path(dst, b), NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die_errno("remount %s read-only", path);
	close(dst);
}

static void do_proc(const char *dest)
{
	set_step("mount /proc");
	mount_fs(dest, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	/* The usual escape and information paths (runc's maskedPaths and readonlyPaths). */
	static const char *const masked[] = { "kcore", "keys", "timer_list", "sched_debug", "latency_stats",
					      "kallsyms", "sysrq-trigger", NULL };
	static const char *const ro[] = { "sys", "irq", "bus", "fs", "acpi", "scsi", NULL };
	for (int i = 0; masked[i]; i++)
		mask_proc_file(dest, masked[i]);
	for (int i = 0; ro[i]; i++)
		ro_proc_dir(dest, ro[i]);
}

static void node(int dir, const char *name, unsigned maj, unsigned min)
{
	if (mknodat(dir, name, S_IFCHR | 0666, makedev(maj, min)) < 0)
		die_errno("mknod /dev/%s", name);
	/* mknod honours the umask; devices must be usable by the vassal user. */
	if (fchmodat(dir, name, 0666, 0) < 0)
		die_errno("chmod /dev/%s", name);
}

static void link_at(int dir, const char *target, const char *name)
{
	if (symlinkat(target, dir, name) < 0)
		die_errno("symlink %s -> %s", name, target);
}

static void do_dev(const char *dest, int pty_max)
{
	set_step("mount /dev");
	mount_fs(dest, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k");
	int dir = open_dest(dest, O_PATH | O_DIRECTORY);
	if (dir < 0)
		die_errno("open %s", dest);
	node(dir, "null", 1, 3);
	node(dir, "zero", 1, 5);
	node(dir, "full", 1, 7);
	node(dir, "random", 1, 8);
	node(dir, "urandom", 1, 9);
	node(dir, "tty", 5, 0);
	link_at(dir, "/proc/self/fd", "fd");
	link_at(dir, "/proc/self/fd/0", "stdin");
	link_at(dir, "/proc/self/fd/1", "stdout");
	link_at(dir, "/proc/self/fd/2", "stderr");
	link_at(dir, "pts/ptmx", "ptmx");
	close(dir);
	char sub[512];
	/* A private devpts instance: the jail's ptys are not the host's, and host ptys are not visible. */
	snprintf(sub, sizeof sub, "%s/pts", dest);
	set_step("mount /dev/pts");
	/*
	 * max=: the ptys this jail may hold at once. Every devpts instance but the host's draws from one pool
	 * (kernel.pty.max less kernel.pty.reserve): without it one customer opening ptys in a loop would leave
	 * none for another customer's login.
	 */
	char opts[128];
	int n = snprintf(opts, sizeof opts, "newinstance,ptmxmode=0666,mode=620,gid=5");
	if (pty_max > 0)
		snprintf(opts + n, sizeof opts - (size_t)n, ",max=%d", pty_max);
	mount_fs(sub, "devpts", MS_NOSUID | MS_NOEXEC, opts);
	snprintf(sub, sizeof sub, "%s/shm", dest);
	set_step("mount /dev/shm");
	mount_fs(sub, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=64m");
}

static void do_symlink(const struct mount_op *op)
{
	set_step("symlink");
	const char *name;
	int parent = make_parent(op->dest, &name);
	link_at(parent, op->src, name);
	close(parent);
}

void build_root(const struct create_spec *spec)
{
	set_step("make / private");
	/* Nothing we mount may propagate back to the host (and host mounts made later stay out). */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die_errno("make / private");

	/*
	 * bubblewrap's layout: a tmpfs becomes the new root at once, with the host tree under /oldroot while the
	 * jail is populated from it; binds resolve inside /oldroot, and it is detached before anything runs.
	 * The tmpfs goes on /tmp of this private namespace; pivot_root moves it, revealing the host's /tmp again.
	 */
	set_step("mount the root tmpfs");
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
		die_errno("mount tmpfs on /tmp");
	if (mkdir("/tmp" OLDROOT, 0700) < 0)
		die_errno("mkdir " OLDROOT);
	set_step("pivot_root");
	if (syscall(SYS_pivot_root, "/tmp", "/tmp" OLDROOT) < 0)
		die_errno("pivot_root");
	if (chdir("/") < 0)
		die_errno("chdir /");
	root_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	oldroot_fd = open(OLDROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0 || oldroot_fd < 0)
		die_errno("open the roots");

	for (int i = 0; i < spec->n_ops; i++) {
		const struct mount_op *op = &spec->ops[i];
		switch (op->kind) {
		case M_RO_BIND:
			do_bind(op, true);
			break;
		case M_BIND:
			do_bind(op, false);
			break;
		case M_SYMLINK:
			do_symlink(op);
			break;
		case M_DIR:
			set_step("dir");
			close(make_dirs(op->dest));
			break;
		case M_TMPFS: {
			set_step("mount tmpfs");
			char data[64];
			snprintf(data, sizeof data, "mode=1777,size=%s", op->src);
			mount_fs(op->dest, "tmpfs", MS_NOSUID | MS_NODEV, data);
			break;
		}
		case M_PROC:
			do_proc(op->dest);
			break;
		case M_DEV:
			do_dev(op->dest, spec->pty_max);
			break;
		case M_MQUEUE:
			set_step("mount mqueue");
			mount_fs(op->dest, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
			break;
		}
	}

	set_step("detach the old root");
	close(oldroot_fd);
	/* MNT_DETACH: the host tree leaves this namespace at once, even if something still holds a reference. */
	if (umount2(OLDROOT, MNT_DETACH) < 0)
		die_errno("umount " OLDROOT);
	if (rmdir(OLDROOT) < 0)
		die_errno("rmdir " OLDROOT);
	set_step("make / read-only");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
		die_errno("remount / read-only");
	close(root_fd);
}
