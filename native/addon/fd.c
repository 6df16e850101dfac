/*
 * emperor-fd.node: what Node.js cannot do itself for the pty router (docs/decisions.md, "Ptys through the
 * shim"). A Node-API addon (ABI-stable: one build loads in every Node.js major), used by packages/jail.
 *
 *   requestFd(path, request, timeoutMs) -> Promise<{ fd, line }>
 *     connects to the unix socket at path, sends request (a Buffer), and reads one line back with the fd
 *     passed along it (SCM_RIGHTS; fd is -1 when none came). All of it on libuv's thread pool, bounded by
 *     timeoutMs, so the event loop never waits on a shim.
 *   setWinsize(fd, rows, cols)
 *     TIOCSWINSZ on a pty master (the kernel then sends SIGWINCH to the pty's foreground group).
 *   listenDgram(path, onMessage) -> { close() }
 *     binds an AF_UNIX datagram socket at path (uWSGI's unix subscription servers) and calls onMessage(buffer)
 *     for each datagram, on the event loop. A thread of its own blocks in recv; the datagrams reach JS through
 *     a thread-safe function whose queue holds at most 1024: past that they are dropped (counted by close()'s
 *     answer), so a flood costs bounded memory. A datagram over 4096 bytes arrives cut to 4097 (refused as
 *     too long by the caller).
 *   sendDgram(path, packet)
 *     one AF_UNIX datagram to path (uWSGI's unix subscription servers), never blocking: a full receiver
 *     is an EAGAIN error, as is a datagram the kernel cannot take at once.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>

#define MAX_LINE 4096

struct request {
	napi_async_work work;
	napi_deferred deferred;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *body;
	size_t body_len;
	int timeout_ms;
	/* results */
	int fd;
	int err;
	const char *step;
	char line[MAX_LINE];
	size_t line_len;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline; false (err set) on timeout or error. */
static int wait_for(struct request *r, int fd, short events, long long deadline)
{
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0) {
			r->err = ETIMEDOUT;
			return 0;
		}
		struct pollfd pf = { fd, events, 0 };
		int n = poll(&pf, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r->err = errno;
			return 0;
		}
		if (n > 0)
			return 1;
	}
}

static void execute(napi_env env, void *data)
{
	(void)env;
	struct request *r = data;
	long long deadline = now_ms() + r->timeout_ms;
	r->fd = -1;
	r->step = "socket";
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0) {
		r->err = errno;
		return;
	}
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	memcpy(addr.sun_path, r->path, sizeof addr.sun_path);
	r->step = "connect";
	if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
		/* A unix socket connects at once or not at all, but for a full backlog (EAGAIN): that is a failure too. */
		r->err = errno;
		close(s);
		return;
	}
	r->step = "send";
	for (size_t at = 0; at < r->body_len;) {
		ssize_t n = send(s, r->body + at, r->body_len - at, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (!wait_for(r, s, POLLOUT, deadline)) {
				close(s);
				return;
			}
			continue;
		}
		if (n < 0) {
			r->err = errno;
			close(s);
			return;
		}
		at += (size_t)n;
	}
	r->step = "receive";
	while (r->line_len == 0 || r->line[r->line_len - 1] != '\n') {
		if (r->line_len == MAX_LINE) {
			r->err = EMSGSIZE;
			break;
		}
		char cbuf[CMSG_SPACE(sizeof(int) * 4)];
		struct iovec iov = { r->line + r->line_len, MAX_LINE - r->line_len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
		ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (!wait_for(r, s, POLLIN, deadline))
				break;
			continue;
		}
		if (n < 0) {
			r->err = errno;
			break;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < count; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
				if (r->fd < 0)
					r->fd = fd;
				else
					close(fd); /* one fd is all a line carries */
			}
		}
		if (n == 0) {
			if (r->line_len == 0)
				r->err = ECONNRESET;
			break;
		}
		r->line_len += (size_t)n;
	}
	if (r->err && r->fd >= 0) {
		close(r->fd);
		r->fd = -1;
	}
	close(s);
}

static napi_value errno_error(napi_env env, int err, const char *step)
{
	napi_value code, msg, error;
	const char *name = strerrorname_np(err);
	char text[256];
	snprintf(text, sizeof text, "%s: %s", step, strerror(err));
	napi_create_string_utf8(env, name ? name : "EIO", NAPI_AUTO_LENGTH, &code);
	napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
	napi_create_error(env, code, msg, &error);
	return error;
}

static void complete(napi_env env, napi_status status, void *data)
{
	struct request *r = data;
	if (status != napi_ok) {
		r->err = ECANCELED;
		r->step = "queue";
	}
	if (r->err) {
		napi_reject_deferred(env, r->deferred, errno_error(env, r->err, r->step));
	} else {
		napi_value result, fd, line;
		napi_create_object(env, &result);
		napi_create_int32(env, r->fd, &fd);
		napi_create_string_utf8(env, r->line, r->line_len, &line);
		napi_set_named_property(env, result, "fd", fd);
		napi_set_named_property(env, result, "line", line);
		napi_resolve_deferred(env, r->deferred, result);
	}
	napi_delete_async_work(env, r->work);
	free(r->body);
	free(r);
}

#define CHECK(call)                                                                                                    \
	do {                                                                                                           \
		if ((call) != napi_ok) {                                                                               \
			napi_throw_error(env, "EINVAL", #call " failed");                                               \
			return NULL;                                                                                   \
		}                                                                                                      \
	} while (0)

static napi_value request_fd(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3];
	CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (argc != 3) {
		napi_throw_type_error(env, "EINVAL", "requestFd(path, request, timeoutMs)");
		return NULL;
	}
	struct request *r = calloc(1, sizeof *r);
	if (!r) {
		napi_throw_error(env, "ENOMEM", "out of memory");
		return NULL;
	}
	size_t len = 0;
	if (napi_get_value_string_utf8(env, argv[0], r->path, sizeof r->path, &len) != napi_ok || len == 0 ||
	    len >= sizeof r->path - 1) {
		free(r);
		napi_throw_type_error(env, "EINVAL", "requestFd: expected a socket path of 1 to 106 bytes");
		return NULL;
	}
	void *bytes;
	size_t blen;
	bool is_buffer = false;
	napi_is_buffer(env, argv[1], &is_buffer);
	if (!is_buffer || napi_get_buffer_info(env, argv[1], &bytes, &blen) != napi_ok) {
		free(r);
		napi_throw_type_error(env, "EINVAL", "requestFd: expected the request as a Buffer");
		return NULL;
	}
	r->body = malloc(blen ? blen : 1);
	if (!r->body) {
		free(r);
		napi_throw_error(env, "ENOMEM", "out of memory");
		return NULL;
	}
	memcpy(r->body, bytes, blen);
	r->body_len = blen;
	int32_t timeout = 0;
	napi_get_value_int32(env, argv[2], &timeout);
	r->timeout_ms = timeout > 0 ? timeout : 1;
	napi_value promise, name;
	CHECK(napi_create_promise(env, &r->deferred, &promise));
	CHECK(napi_create_string_utf8(env, "emperor-fd:requestFd", NAPI_AUTO_LENGTH, &name));
	CHECK(napi_create_async_work(env, NULL, name, execute, complete, r, &r->work));
	CHECK(napi_queue_async_work(env, r->work));
	return promise;
}

static napi_value set_winsize(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3];
	CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	int32_t fd = -1, rows = 0, cols = 0;
	if (argc != 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &rows) != napi_ok ||
	    napi_get_value_int32(env, argv[2], &cols) != napi_ok || rows < 1 || rows > 65535 || cols < 1 || cols > 65535) {
		napi_throw_type_error(env, "EINVAL", "setWinsize(fd, rows, cols): expected three numbers, the sizes 1 to 65535");
		return NULL;
	}
	struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
	if (ioctl(fd, TIOCSWINSZ, &ws) < 0) {
		napi_throw(env, errno_error(env, errno, "TIOCSWINSZ"));
		return NULL;
	}
	return NULL;
}

static napi_value send_dgram(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = 0;
	void *bytes;
	size_t blen;
	bool is_buffer = false;
	if (argc != 2 || napi_get_value_string_utf8(env, argv[0], addr.sun_path, sizeof addr.sun_path, &len) != napi_ok ||
	    len == 0 || len >= sizeof addr.sun_path - 1 || napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer ||
	    napi_get_buffer_info(env, argv[1], &bytes, &blen) != napi_ok) {
		napi_throw_type_error(env, "EINVAL", "sendDgram(path, packet): expected a socket path of 1 to 106 bytes and a Buffer");
		return NULL;
	}
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0) {
		napi_throw(env, errno_error(env, errno, "socket"));
		return NULL;
	}
	ssize_t n = sendto(s, bytes, blen, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&addr, sizeof addr);
	int err = errno;
	close(s);
	if (n < 0) {
		napi_throw(env, errno_error(env, err, "sendto"));
		return NULL;
	}
	return NULL;
}

#define DGRAM_MAX 4096
#define DGRAM_QUEUE 1024

struct listener {
	int fd;
	int wake[2];
	pthread_t thread;
	napi_threadsafe_function tsfn;
	atomic_ulong dropped;
	int closed;
};

struct datagram {
	size_t len;
	char data[];
};

static void *listen_thread(void *arg)
{
	struct listener *l = arg;
	char buf[DGRAM_MAX + 1];
	struct pollfd p[2] = { { .fd = l->fd, .events = POLLIN }, { .fd = l->wake[0], .events = POLLIN } };
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		ssize_t n = recv(l->fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			break;
		}
		size_t len = (size_t)n > sizeof buf ? sizeof buf : (size_t)n;
		struct datagram *d = malloc(sizeof *d + len);
		if (!d) {
			atomic_fetch_add(&l->dropped, 1);
			continue;
		}
		d->len = len;
		memcpy(d->data, buf, len);
		if (napi_call_threadsafe_function(l->tsfn, d, napi_tsfn_nonblocking) != napi_ok) {
			free(d);
			atomic_fetch_add(&l->dropped, 1);
		}
	}
	return NULL;
}

static void call_js(napi_env env, napi_value callback, void *context, void *data)
{
	struct datagram *d = data;
	if (env != NULL && callback != NULL) {
		napi_value buffer, undefined;
		void *copy;
		if (napi_create_buffer_copy(env, d->len, d->data, &copy, &buffer) == napi_ok && napi_get_undefined(env, &undefined) == napi_ok)
			napi_call_function(env, undefined, callback, 1, &buffer, NULL);
	}
	free(d);
}

static void listener_stop(struct listener *l)
{
	if (l->closed)
		return;
	l->closed = 1;
	char c = 1;
	ssize_t w = write(l->wake[1], &c, 1);
	(void)w;
	pthread_join(l->thread, NULL);
	close(l->fd);
	close(l->wake[0]);
	close(l->wake[1]);
	napi_release_threadsafe_function(l->tsfn, napi_tsfn_release);
}

static void listener_finalize(napi_env env, void *data, void *hint)
{
	struct listener *l = data;
	listener_stop(l);
	free(l);
}

static napi_value listener_close(napi_env env, napi_callback_info info)
{
	struct listener *l;
	CHECK(napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&l));
	listener_stop(l);
	napi_value dropped;
	CHECK(napi_create_double(env, (double)atomic_load(&l->dropped), &dropped));
	return dropped;
}

static napi_value listener_dropped(napi_env env, napi_callback_info info)
{
	struct listener *l;
	CHECK(napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&l));
	napi_value dropped;
	CHECK(napi_create_double(env, (double)atomic_load(&l->dropped), &dropped));
	return dropped;
}

static napi_value listen_dgram(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = 0;
	napi_valuetype t = napi_undefined;
	if (argc != 2 || napi_get_value_string_utf8(env, argv[0], addr.sun_path, sizeof addr.sun_path, &len) != napi_ok ||
	    len == 0 || len >= sizeof addr.sun_path - 1 || napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function) {
		napi_throw_type_error(env, "EINVAL", "listenDgram(path, onMessage): expected a socket path of 1 to 106 bytes and a function");
		return NULL;
	}
	struct listener *l = calloc(1, sizeof *l);
	if (!l) {
		napi_throw_error(env, "ENOMEM", "out of memory");
		return NULL;
	}
	l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		int err = errno;
		free(l);
		napi_throw(env, errno_error(env, err, "socket"));
		return NULL;
	}
	int rcv = 4 * 1024 * 1024;
	setsockopt(l->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
	if (bind(l->fd, (struct sockaddr *)&addr, sizeof addr) < 0 || pipe2(l->wake, O_CLOEXEC) < 0) {
		int err = errno;
		close(l->fd);
		free(l);
		napi_throw(env, errno_error(env, err, "bind"));
		return NULL;
	}
	napi_value name;
	CHECK(napi_create_string_utf8(env, "emperor-fd:listenDgram", NAPI_AUTO_LENGTH, &name));
	if (napi_create_threadsafe_function(env, argv[1], NULL, name, DGRAM_QUEUE, 1, NULL, NULL, NULL, call_js, &l->tsfn) != napi_ok) {
		close(l->fd);
		close(l->wake[0]);
		close(l->wake[1]);
		free(l);
		napi_throw_error(env, "EINVAL", "listenDgram: no thread-safe function");
		return NULL;
	}
	if (pthread_create(&l->thread, NULL, listen_thread, l) != 0) {
		napi_release_threadsafe_function(l->tsfn, napi_tsfn_abort);
		close(l->fd);
		close(l->wake[0]);
		close(l->wake[1]);
		free(l);
		napi_throw_error(env, "EAGAIN", "listenDgram: no thread");
		return NULL;
	}
	napi_value obj;
	CHECK(napi_create_object(env, &obj));
	napi_property_descriptor props[] = {
		{ "close", NULL, listener_close, NULL, NULL, NULL, napi_default, l },
		{ "dropped", NULL, listener_dropped, NULL, NULL, NULL, napi_default, l },
	};
	CHECK(napi_define_properties(env, obj, 2, props));
	CHECK(napi_wrap(env, obj, l, listener_finalize, NULL, NULL));
	return obj;
}

static napi_value init(napi_env env, napi_value exports)
{
	napi_property_descriptor props[] = {
		{ "requestFd", NULL, request_fd, NULL, NULL, NULL, napi_default, NULL },
		{ "setWinsize", NULL, set_winsize, NULL, NULL, NULL, napi_default, NULL },
		{ "sendDgram", NULL, send_dgram, NULL, NULL, NULL, napi_default, NULL },
		{ "listenDgram", NULL, listen_dgram, NULL, NULL, NULL, napi_default, NULL },
	};
	CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
	return exports;
}

NAPI_MODULE(emperor_fd, init)
