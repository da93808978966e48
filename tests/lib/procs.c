#define _GNU_SOURCE
#include "procs.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 128

/* Every child started and not yet reaped. */
static pid_t children[MAX_CHILDREN];
static bool atexit_set;

int64_t tl_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void registry_add(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] == 0) {
			children[i] = pid;
			return;
		}
	}
	/* Full: the child still dies with us (PR_SET_PDEATHSIG). */
	fprintf(stderr, "procs: registry full, pid %d not tracked\n", (int)pid);
}

static void registry_remove(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

void tl_proc_kill_all(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] == 0)
			continue;
		kill(children[i], SIGKILL);
		while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR)
			;
		children[i] = 0;
	}
}

static void at_exit(void)
{
	tl_proc_kill_all();
}

int tl_proc_spawn(struct tl_proc *proc, char *const argv[], const char *log_path)
{
	memset(proc, 0, sizeof(*proc));
	proc->in_fd = -1;
	proc->out_fd = -1;
	if (log_path != NULL)
		snprintf(proc->log_path, sizeof(proc->log_path), "%s", log_path);
	if (!atexit_set) {
		atexit(at_exit);
		/* A child that died must not kill us when we write to it. */
		signal(SIGPIPE, SIG_IGN);
		atexit_set = true;
	}
	int in[2], out[2], logfd = -1;
	if (pipe2(in, O_CLOEXEC) != 0)
		return -1;
	if (pipe2(out, O_CLOEXEC) != 0) {
		close(in[0]);
		close(in[1]);
		return -1;
	}
	if (log_path != NULL) {
		logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (logfd < 0)
			goto fail;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0) {
		/* Die with the thread that started us; if it is gone already,
		 * the signal would never come. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 ||
		    (logfd >= 0 && dup2(logfd, 2) < 0))
			_exit(127);
		execv(argv[0], argv);
		dprintf(2, "procs: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	if (logfd >= 0)
		close(logfd);
	proc->pid = pid;
	proc->in_fd = in[1];
	proc->out_fd = out[0];
	fcntl(proc->out_fd, F_SETFL, fcntl(proc->out_fd, F_GETFL) | O_NONBLOCK);
	registry_add(pid);
	return 0;
fail:;
	int err = errno;
	close(in[0]);
	close(in[1]);
	close(out[0]);
	close(out[1]);
	if (logfd >= 0)
		close(logfd);
	errno = err;
	return -1;
}

int tl_proc_send(struct tl_proc *proc, const char *fmt, ...)
{
	char line[TL_PROC_LINE_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 1 || proc->in_fd < 0) {
		errno = EINVAL;
		return -1;
	}
	line[n++] = '\n';
	size_t off = 0;
	while (off < (size_t)n) {
		ssize_t w = write(proc->in_fd, line + off, (size_t)n - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += (size_t)w;
	}
	return 0;
}

/* Moves the first line out of the buffer, if there is one (or, at end of
 * file or with a full buffer, whatever is left). */
static bool take_line(struct tl_proc *proc, char *line, size_t cap)
{
	char *nl = memchr(proc->buf, '\n', proc->len);
	size_t n, skip;
	if (nl != NULL) {
		n = (size_t)(nl - proc->buf);
		skip = n + 1;
	} else if ((proc->eof && proc->len > 0) || proc->len == sizeof(proc->buf)) {
		n = proc->len;
		skip = n;
	} else {
		return false;
	}
	size_t c = n < cap - 1 ? n : cap - 1;
	memcpy(line, proc->buf, c);
	line[c] = '\0';
	memmove(proc->buf, proc->buf + skip, proc->len - skip);
	proc->len -= skip;
	return true;
}

int tl_proc_read_line(struct tl_proc *proc, char *line, size_t cap, int timeout_ms)
{
	int64_t deadline = tl_now_ms() + timeout_ms;
	for (;;) {
		if (take_line(proc, line, cap))
			return 1;
		if (proc->eof || proc->out_fd < 0)
			return -1;
		int64_t left = deadline - tl_now_ms();
		if (left < 0)
			left = 0;
		struct pollfd pfd = { .fd = proc->out_fd, .events = POLLIN };
		int rv = poll(&pfd, 1, (int)left);
		if (rv < 0 && errno == EINTR)
			continue;
		if (rv < 0)
			return -1;
		if (rv == 0) {
			if (left == 0)
				return 0;
			continue;
		}
		ssize_t r = read(proc->out_fd, proc->buf + proc->len, sizeof(proc->buf) - proc->len);
		if (r > 0)
			proc->len += (size_t)r;
		else if (r == 0)
			proc->eof = true;
		else if (errno != EAGAIN && errno != EINTR)
			proc->eof = true;
	}
}

int tl_proc_expect(struct tl_proc *proc, const char *prefix, char *line, size_t cap,
		   int timeout_ms)
{
	int64_t deadline = tl_now_ms() + timeout_ms;
	size_t plen = strlen(prefix);
	for (;;) {
		int64_t left = deadline - tl_now_ms();
		int rv = tl_proc_read_line(proc, line, cap, left > 0 ? (int)left : 0);
		if (rv != 1)
			return rv;
		if (strncmp(line, prefix, plen) == 0)
			return 1;
	}
}

int tl_proc_command(struct tl_proc *proc, char *line, size_t cap, int timeout_ms,
		    const char *fmt, ...)
{
	char cmd[TL_PROC_LINE_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -1;
	if (tl_proc_send(proc, "%s", cmd) != 0)
		return -1;
	char word[64];
	size_t w = strcspn(cmd, " ");
	if (w >= sizeof(word) - 1)
		w = sizeof(word) - 2;
	memcpy(word, cmd, w);
	word[w] = '\0';
	int64_t deadline = tl_now_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - tl_now_ms();
		int rv = tl_proc_read_line(proc, line, cap, left > 0 ? (int)left : 0);
		if (rv != 1)
			return rv;
		if (strncmp(line, word, w) == 0 && (line[w] == ' ' || line[w] == '\0'))
			return 1;
	}
}

bool tl_wait_until(bool (*pred)(void *arg), void *arg, int timeout_ms, int interval_ms)
{
	if (interval_ms <= 0)
		interval_ms = 25;
	int64_t deadline = tl_now_ms() + timeout_ms;
	for (;;) {
		if (pred(arg))
			return true;
		int64_t left = deadline - tl_now_ms();
		if (left <= 0)
			return pred(arg);
		pause_ms(left < interval_ms ? (int)left : interval_ms);
	}
}

int tl_proc_kill(struct tl_proc *proc, int sig)
{
	if (proc->pid <= 0 || proc->exited)
		return -1;
	return kill(proc->pid, sig);
}

int tl_proc_wait(struct tl_proc *proc, int timeout_ms)
{
	if (proc->exited)
		return 1;
	if (proc->pid <= 0)
		return 0;
	int64_t deadline = tl_now_ms() + timeout_ms;
	for (;;) {
		int status;
		pid_t r = waitpid(proc->pid, &status, WNOHANG);
		if (r == proc->pid) {
			proc->status = status;
			proc->exited = true;
			registry_remove(proc->pid);
			return 1;
		}
		if (r < 0 && errno != EINTR) {
			/* Reaped elsewhere (tl_proc_kill_all): nothing to wait for. */
			proc->status = -1;
			proc->exited = true;
			registry_remove(proc->pid);
			return 1;
		}
		if (tl_now_ms() >= deadline)
			return 0;
		pause_ms(5);
	}
}

void tl_proc_close(struct tl_proc *proc)
{
	if (proc->pid > 0 && !proc->exited) {
		kill(proc->pid, SIGKILL);
		while (waitpid(proc->pid, &proc->status, 0) < 0 && errno == EINTR)
			;
		proc->exited = true;
		registry_remove(proc->pid);
	}
	if (proc->in_fd >= 0)
		close(proc->in_fd);
	if (proc->out_fd >= 0)
		close(proc->out_fd);
	proc->in_fd = -1;
	proc->out_fd = -1;
}

/* The lowest port the kernel hands out for outgoing connections (and for
 * bind to port 0); 32768 when unknown. */
static int ephemeral_low(void)
{
	int lo = 32768, hi;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
	if (f != NULL) {
		if (fscanf(f, "%d %d", &lo, &hi) != 2)
			lo = 32768;
		fclose(f);
	}
	return lo;
}

/* Binds a listening-style socket to 127.0.0.1:port (0: any); returns the
 * descriptor with *out the port, or -1. */
static int bind_port(int port, int *out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sa);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
		close(fd);
		return -1;
	}
	*out = ntohs(sa.sin_port);
	return fd;
}

int tl_free_ports(int *ports, int n)
{
	int fds[64];
	int rv = 0, opened = 0;
	if (n > 64)
		return -1;
	/* Below the ephemeral range, so that no connection's local port (the
	 * tests open many) takes one before its node binds it; at random, so
	 * that parallel tests rarely try the same. */
	int low = 10000, high = ephemeral_low() - 1;
	uint64_t x = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL) ^
		     (uint64_t)clock();
	for (int i = 0; i < n && rv == 0; i++) {
		int fd = -1;
		for (int tries = 0; fd < 0 && high - low > 1000 && tries < 500; tries++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			fd = bind_port(low + (int)(x % (uint64_t)(high - low)), &ports[i]);
		}
		if (fd < 0)
			fd = bind_port(0, &ports[i]); /* no room below: the kernel's pick */
		if (fd < 0)
			rv = -1;
		else
			fds[opened++] = fd;
	}
	for (int i = 0; i < opened; i++)
		close(fds[i]);
	return rv;
}

/* Finds " key=" (or "key=" at the start) in line; returns the value. */
static const char *find_key(const char *line, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = line; (p = strstr(p, key)) != NULL; p++) {
		if ((p == line || p[-1] == ' ') && p[klen] == '=')
			return p + klen + 1;
	}
	return NULL;
}

bool tl_line_int(const char *line, const char *key, int64_t *out)
{
	const char *v = find_key(line, key);
	if (v == NULL)
		return false;
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 0);
	if (end == v || errno != 0 || (*end != '\0' && *end != ' ' && *end != ','))
		return false;
	*out = x;
	return true;
}

bool tl_line_str(const char *line, const char *key, char *out, size_t cap)
{
	const char *v = find_key(line, key);
	if (v == NULL || cap == 0)
		return false;
	size_t n = strcspn(v, " ");
	if (n >= cap)
		n = cap - 1;
	memcpy(out, v, n);
	out[n] = '\0';
	return true;
}

int64_t tl_proc_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields resume
	 * after the last ')', with field 3 (state). utime is 14, stime 15. */
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	p++;
	unsigned long long utime, stime;
	if (sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
		   &stime) != 2)
		return -1;
	return (int64_t)(utime + stime);
}

int64_t tl_proc_rss_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	int64_t kb = -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		long long v;
		if (sscanf(line, "VmRSS: %lld kB", &v) == 1) {
			kb = v;
			break;
		}
	}
	fclose(f);
	return kb;
}

int tl_proc_fd_count(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

double tl_raw_fsync_mbps(const char *dir, size_t size, double seconds)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/raw.dat", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	char *buf = malloc(size > 0 ? size : 1);
	if (fd < 0 || buf == NULL) {
		if (fd >= 0)
			close(fd);
		free(buf);
		return 0;
	}
	memset(buf, 0x5a, size);
	int64_t t0 = tl_now_ms(), t = t0;
	uint64_t n = 0;
	while ((double)(t - t0) < seconds * 1000.0) {
		if (write(fd, buf, size) != (ssize_t)size || fdatasync(fd) != 0)
			break;
		n++;
		t = tl_now_ms();
	}
	close(fd);
	unlink(path);
	free(buf);
	return t > t0 ? (double)n * (double)size / ((double)(t - t0) / 1000.0) / 1e6 : 0;
}

int tl_http_get(int port, const char *path, int *status, char *body, size_t cap, int timeout_ms)
{
	int64_t deadline = tl_now_ms() + timeout_ms;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* The head and the body, as much of it as cap takes. */
	size_t size = cap + 4096;
	char *resp = malloc(size);
	size_t len = 0;
	int rv = -1;
	if (resp == NULL)
		goto out;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS)
		goto out;
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int left = (int)(deadline - tl_now_ms());
	if (left <= 0 || poll(&p, 1, left) != 1)
		goto out;
	int err = 0;
	socklen_t elen = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
		goto out;
	char req[512];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n)
		goto out;
	for (;;) {
		left = (int)(deadline - tl_now_ms());
		p = (struct pollfd){ .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, left) != 1)
			goto out;
		ssize_t got = read(fd, resp + len, size - 1 - len);
		if (got < 0 && errno == EAGAIN)
			continue;
		if (got <= 0)
			break;
		len += (size_t)got;
		if (len == size - 1)
			break;
	}
	resp[len] = '\0';
	if (sscanf(resp, "HTTP/1.%*d %d", status) != 1)
		goto out;
	const char *b = strstr(resp, "\r\n\r\n");
	snprintf(body, cap, "%s", b != NULL ? b + 4 : "");
	rv = 0;
out:
	free(resp);
	close(fd);
	return rv;
}
