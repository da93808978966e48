/* chaos: real sluiced processes on 127.0.0.1 under load and under faults,
 * then a check of every durability promise of DESIGN.md (README.md here).
 *
 *   chaos --sluiced PATH [--dir DIR] [--nodes 3|5] [--seconds S] [--seed N]
 *         [--producers K] [--rate R] [--consumers C] [--faults LIST]
 *         [--timeouts test|default] [--base-port P] [--recover-ms MS]
 *         [--full-disk] [--keep]
 *   chaos --sluiced PATH --failover RUNS [--timeouts test|default] ...
 *
 * Threads: the main thread starts every node (a child dies with the
 * thread that started it, tests/lib/procs.h) and runs the nemesis, then
 * the checker; one thread per producer and per group member, one that
 * watches the group's committed offsets, and one that runs the proxies
 * every node reaches every other node through (the network faults). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "pframe.h"
#include "procs.h"
#include "sluice.h"
#include "storage.h"

#define MAX_NODES 5
#define TOPIC "chaos"
#define OFFSETS_TOPIC "__consumer_offsets"
#define OFFSETS_PARTITIONS 4
#define GROUP "chaos"
#define VALUE_LEN 100
#define MAX_PRODUCERS 16
#define MAX_CONSUMERS 8
#define MAX_PARTITIONS 64

/* ---- options ------------------------------------------------------------ */

enum fault {
	F_KILL_NODE,
	F_KILL_LEADER,
	F_KILL_CONTROLLER,
	F_KILL_COORDINATOR,
	F_PAUSE_LEADER,
	F_TORN_WRITE,
	F_ISOLATE,
	F_SPLIT,
	F_ONE_WAY,
	F_DISK_FULL,
	F_COUNT
};

static const char *const fault_names[F_COUNT] = {
	"kill-node", "kill-leader", "kill-controller", "kill-coordinator", "pause-leader",
	"torn-write", "isolate", "split", "one-way", "disk-full",
};

static struct {
	const char *sluiced;
	char dir[400];
	int nodes, seconds, producers, consumers, rate, partitions;
	uint64_t seed;
	bool test_timeouts, full_disk, keep;
	bool acks1; /* --acks 1: what the checker must catch (no quorum, no idempotence) */
	bool enabled[F_COUNT];
	int base_port;
	int recover_ms;
	int failover_runs;
} opt = {
	.nodes = 3, .seconds = 60, .producers = 4, .consumers = 2, .rate = 250,
	.partitions = 12, .test_timeouts = true, .recover_ms = 30000,
};

static int64_t t_start;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&mu);
	fprintf(stdout, "[%7.1f s] ", (double)(tl_now_ms() - t_start) / 1000.0);
	vfprintf(stdout, fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	pthread_mutex_unlock(&mu);
	va_end(ap);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("chaos: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	tl_proc_kill_all();
	exit(1);
}

/* splitmix64: the nemesis draws from its own stream, a fixed number of
 * draws per fault, so a seed replays the same schedule. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int rng_range(uint64_t *s, int lo, int hi) /* [lo, hi] */
{
	return lo + (int)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* ---- nodes ---------------------------------------------------------------- */

struct node {
	int id;
	struct tl_proc p;
	int cport, pport, hport;
	char dir[512], log[600];
	bool up;       /* its process runs */
	bool paused;   /* SIGSTOPped */
	bool mounted;  /* its data directory is a tmpfs (--full-disk) */
};

static struct node nodes[MAX_NODES];
static int nn;
static char bootstrap[512];
static char seeds[512];

static void node_start(int i)
{
	struct node *n = &nodes[i];
	char id[16], cp[16], pp[16], hp[16];
	snprintf(id, sizeof(id), "%d", n->id);
	snprintf(cp, sizeof(cp), "%d", n->cport);
	snprintf(pp, sizeof(pp), "%d", n->pport);
	snprintf(hp, sizeof(hp), "%d", n->hport);
	char offsets[16];
	snprintf(offsets, sizeof(offsets), "%d", OFFSETS_PARTITIONS);
	char *argv[40] = { (char *)opt.sluiced, "--node-id", id, "--data-dir", n->dir,
			   "--client-port", cp, "--peer-port", pp, "--http-port", hp,
			   "--seeds", seeds, "--offsets-topic-partitions", offsets,
			   "--group-session-timeout-ms", "6000", "--group-heartbeat-ms", "500" };
	int k = 19;
	if (opt.test_timeouts) {
		argv[k++] = "--heartbeat-ms";
		argv[k++] = "100";
		argv[k++] = "--election-ms";
		argv[k++] = "500";
	}
	argv[k] = NULL;
	if (tl_proc_spawn(&n->p, argv, n->log) != 0)
		die("node %d: cannot start %s: %s", n->id, opt.sluiced, strerror(errno));
	n->up = true;
	n->paused = false;
}

/* SIGKILL (or SIGTERM, waiting for a clean exit) and reap. */
static void node_stop(int i, int sig)
{
	struct node *n = &nodes[i];
	if (!n->up)
		return;
	if (n->paused)
		tl_proc_kill(&n->p, SIGCONT);
	tl_proc_kill(&n->p, sig);
	if (tl_proc_wait(&n->p, sig == SIGKILL ? 10000 : 60000) != 1) {
		say("node %d did not stop on signal %d: killed", n->id, sig);
		tl_proc_kill(&n->p, SIGKILL);
		tl_proc_wait(&n->p, 10000);
	}
	tl_proc_close(&n->p);
	n->up = false;
	n->paused = false;
}

static bool node_ready(void *arg)
{
	struct node *n = arg;
	int status;
	char body[256];
	return tl_http_get(n->hport, "/readyz", &status, body, sizeof(body), 1000) == 0 &&
	       status == 200;
}

/* A node that exited by itself (a crash, a refusal to go on) is reported
 * and counted, and restarted by the nemesis. */
static int crashes;

static void check_exited(void)
{
	for (int i = 0; i < nn; i++) {
		struct node *n = &nodes[i];
		if (!n->up || n->paused || tl_proc_wait(&n->p, 0) != 1)
			continue;
		int st = n->p.status;
		say("node %d exited by itself (%s %d): see %s", n->id,
		    WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
		    n->log);
		crashes++;
		tl_proc_close(&n->p);
		n->up = false;
	}
}

static int node_index(int id)
{
	for (int i = 0; i < nn; i++)
		if (nodes[i].id == id)
			return i;
	return -1;
}

/* ---- the proxy: every node reaches every other through it ------------------- */

/* Every node is given the same seed list (the cluster id is derived from
 * it), in which node j's peer address is the proxy's listener for j. The
 * proxy learns who connected from the connection's first frame (the
 * transport's hello names the node), so that from->to can be cut on its
 * own: the transport uses one connection per ordered pair, so whatever
 * `from` sends `to`, answers included, goes through that connection. A
 * cut pair's connections are closed, and new ones closed once their hello
 * arrives. */
struct pconn {
	int fd[2];           /* [0]: the node that connected; [1]: upstream */
	int from, to;        /* node indexes; from -1: hello not yet read */
	bool connecting;
	char buf[2][65536];  /* [0]: read from fd[0], for fd[1]; [1]: the other way */
	size_t len[2], off[2];
};

#define MAX_PCONN 256
static struct {
	pthread_mutex_t mu;
	bool cut[MAX_NODES][MAX_NODES];
	int lfd[MAX_NODES];
	int port[MAX_NODES];
	struct pconn *conns[MAX_PCONN];
	int wake[2];
	bool stop;
	pthread_t th;
} px = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int listen_on(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0)
		die("proxy: cannot listen on 127.0.0.1:%d: %s", port, strerror(errno));
	return fd;
}

static void pconn_close(int k)
{
	struct pconn *c = px.conns[k];
	close(c->fd[0]);
	if (c->fd[1] >= 0)
		close(c->fd[1]);
	free(c);
	px.conns[k] = NULL;
}

static bool is_cut(int from, int to)
{
	pthread_mutex_lock(&px.mu);
	bool cut = px.cut[from][to];
	pthread_mutex_unlock(&px.mu);
	return cut;
}

static void proxy_accept(int to)
{
	for (;;) {
		int fd = accept4(px.lfd[to], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int k = 0;
		while (k < MAX_PCONN && px.conns[k] != NULL)
			k++;
		struct pconn *c = k == MAX_PCONN ? NULL : calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->fd[0] = fd;
		c->fd[1] = -1;
		c->from = -1;
		c->to = to;
		px.conns[k] = c;
	}
}

/* The hello in buf[0] names the node that connected: the connection
 * goes on upstream unless that pair is cut. Returns false to close it. */
static bool pconn_hello(struct pconn *c)
{
	size_t flen;
	if (sl_pframe_peek((const uint8_t *)c->buf[0], c->len[0], sizeof(c->buf[0]), &flen) != 0)
		return c->len[0] < sizeof(c->buf[0]); /* more to come, or garbage */
	struct sl_phello h;
	if (sl_pframe_kind((const uint8_t *)c->buf[0], flen) != SL_PFRAME_HELLO ||
	    sl_pframe_decode_hello((const uint8_t *)c->buf[0], flen, &h) != 0)
		return false;
	int from = h.node_id >= 1 && h.node_id <= (uint64_t)nn ? (int)h.node_id - 1 : -1;
	if (from < 0 || is_cut(from, c->to))
		return false;
	int up = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)nodes[c->to].pport),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1;
	if (up < 0)
		return false;
	setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd[1] = up;
	if (connect(up, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS)
		return false;
	c->from = from;
	c->connecting = true;
	return true;
}

/* Moves bytes one way: reads from fd[d] into buf[d] when it is empty,
 * sends what buf[d] holds to the other side (the sockets do not block).
 * Returns false when the connection ended. */
static bool pconn_pump(struct pconn *c, int d, short rev)
{
	if ((rev & (POLLIN | POLLHUP | POLLERR)) && c->len[d] == 0) {
		ssize_t r = recv(c->fd[d], c->buf[d], sizeof(c->buf[d]), 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return false;
		if (r > 0) {
			c->len[d] = (size_t)r;
			c->off[d] = 0;
		}
	}
	if (c->len[d] > 0) {
		ssize_t w = send(c->fd[1 - d], c->buf[d] + c->off[d], c->len[d], MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return false;
		if (w > 0) {
			c->off[d] += (size_t)w;
			c->len[d] -= (size_t)w;
		}
	}
	return true;
}

/* One connection's events: the hello, the upstream connect, then bytes. */
static bool pconn_step(struct pconn *c, short rev0, short rev1)
{
	if (c->from < 0) {
		if (!(rev0 & (POLLIN | POLLHUP | POLLERR)))
			return true;
		ssize_t r = recv(c->fd[0], c->buf[0] + c->len[0], sizeof(c->buf[0]) - c->len[0], 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return false;
		c->len[0] += r > 0 ? (size_t)r : 0;
		return pconn_hello(c);
	}
	if (c->connecting) {
		if (rev1 == 0)
			return true;
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &el);
		if (err != 0 || (rev1 & (POLLERR | POLLHUP)))
			return false;
		c->connecting = false;
		rev1 = POLLOUT; /* the hello waits to go */
	}
	return pconn_pump(c, 0, rev0) && pconn_pump(c, 1, rev1);
}

static void *proxy_main(void *arg)
{
	(void)arg;
	struct pollfd pf[1 + MAX_NODES + 2 * MAX_PCONN];
	int who[sizeof(pf) / sizeof(pf[0])]; /* -1: wake; 0..: listener; 1000+k*2+side */
	for (;;) {
		pthread_mutex_lock(&px.mu);
		bool stop = px.stop;
		for (int k = 0; k < MAX_PCONN; k++)
			if (px.conns[k] != NULL && px.conns[k]->from >= 0 &&
			    px.cut[px.conns[k]->from][px.conns[k]->to])
				pconn_close(k);
		pthread_mutex_unlock(&px.mu);
		if (stop)
			break;
		int n = 0;
		pf[n] = (struct pollfd){ .fd = px.wake[0], .events = POLLIN };
		who[n++] = -1;
		for (int i = 0; i < nn; i++) {
			pf[n] = (struct pollfd){ .fd = px.lfd[i], .events = POLLIN };
			who[n++] = i;
		}
		for (int k = 0; k < MAX_PCONN; k++) {
			struct pconn *c = px.conns[k];
			if (c == NULL)
				continue;
			for (int s = 0; s < 2; s++) {
				short ev = 0;
				if (s == 1 && c->fd[1] < 0)
					continue;
				if (s == 1 && c->connecting) {
					ev = POLLOUT;
				} else if (c->from < 0 || !c->connecting) {
					if (c->len[s] == 0 || c->from < 0)
						ev |= POLLIN;
					if (c->len[1 - s] > 0 && !c->connecting)
						ev |= POLLOUT;
				}
				pf[n] = (struct pollfd){ .fd = c->fd[s], .events = ev };
				who[n++] = 1000 + k * 2 + s;
			}
		}
		if (poll(pf, (nfds_t)n, 200) < 0 && errno != EINTR)
			die("proxy: poll: %s", strerror(errno));
		static short rev[MAX_PCONN][2];
		memset(rev, 0, sizeof(rev));
		for (int i = 0; i < n; i++) {
			if (pf[i].revents == 0)
				continue;
			if (who[i] == -1) {
				char b[64];
				while (read(px.wake[0], b, sizeof(b)) > 0) {
				}
			} else if (who[i] < 1000) {
				proxy_accept(who[i]);
			} else {
				int k = (who[i] - 1000) / 2, s = (who[i] - 1000) % 2;
				rev[k][s] = pf[i].revents;
			}
		}
		for (int k = 0; k < MAX_PCONN; k++)
			if (px.conns[k] != NULL && (rev[k][0] || rev[k][1]) &&
			    !pconn_step(px.conns[k], rev[k][0], rev[k][1]))
				pconn_close(k);
	}
	for (int k = 0; k < MAX_PCONN; k++)
		if (px.conns[k] != NULL)
			pconn_close(k);
	return NULL;
}

static void proxy_wake(void)
{
	char b = 1;
	if (write(px.wake[1], &b, 1) < 0) {
		/* full: it wakes anyway */
	}
}

/* Cuts (or heals) from->to; -1 for either end: every node. */
static void link_set(int from, int to, bool cut)
{
	pthread_mutex_lock(&px.mu);
	for (int f = 0; f < nn; f++)
		for (int t = 0; t < nn; t++)
			if ((from < 0 || f == from) && (to < 0 || t == to) && f != t)
				px.cut[f][t] = cut;
	pthread_mutex_unlock(&px.mu);
	proxy_wake();
}

static void proxy_start(void)
{
	if (pipe2(px.wake, O_NONBLOCK | O_CLOEXEC) != 0)
		die("pipe: %s", strerror(errno));
	for (int t = 0; t < nn; t++)
		px.lfd[t] = listen_on(px.port[t]);
	if (pthread_create(&px.th, NULL, proxy_main, NULL) != 0)
		die("proxy thread");
}

static void proxy_stop(void)
{
	pthread_mutex_lock(&px.mu);
	px.stop = true;
	pthread_mutex_unlock(&px.mu);
	proxy_wake();
	pthread_join(px.th, NULL);
	for (int i = 0; i < nn; i++)
		close(px.lfd[i]);
}

/* ---- clients --------------------------------------------------------------- */

static sluice_client_t *client_new(const char *const kv[])
{
	char err[512];
	sluice_conf_t *conf = sluice_conf_new();
	if (conf == NULL || sluice_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)))
		die("conf: %s", err);
	for (size_t i = 0; kv != NULL && kv[i] != NULL; i += 2)
		if (sluice_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)) != SLUICE_OK)
			die("conf %s: %s", kv[i], err);
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	if (cl == NULL)
		die("client: %s", err);
	return cl;
}

static sluice_client_t *admin_cl;
static sluice_admin_t *admin;

/* The leader of topic/p, -1: none or no answer. */
static int leader_of(const char *topic, int p)
{
	sluice_report_t *r = NULL;
	int leader = -1;
	if (sluice_topic_describe(admin, topic, NULL, NULL, &r) == SLUICE_OK)
		leader = sluice_report_leader(r, p);
	sluice_report_destroy(r);
	return leader;
}

static int controller_leader(void)
{
	sluice_report_t *r = NULL;
	int c = -1;
	if (sluice_cluster_describe(admin, NULL, NULL, &r) == SLUICE_OK)
		c = sluice_report_controller(r);
	sluice_report_destroy(r);
	return c;
}

/* The node whose /metrics counts the group's members: its coordinator. */
static int coordinator_of_group(void)
{
	static char body[1 << 20];
	for (int i = 0; i < nn; i++) {
		int status;
		if (!nodes[i].up || nodes[i].paused ||
		    tl_http_get(nodes[i].hport, "/metrics", &status, body, sizeof(body), 2000) != 0 ||
		    status != 200)
			continue;
		if (strstr(body, "sluice_consumer_group_members{node=") != NULL &&
		    strstr(body, ",group=\"" GROUP "\"}") != NULL)
			return nodes[i].id;
	}
	return -1;
}

/* The value of a node's counter `name{node="N"}` at /metrics, -1: none. */
static long long node_metric(int i, const char *name)
{
	static char body[1 << 20];
	int status;
	if (!nodes[i].up || nodes[i].paused ||
	    tl_http_get(nodes[i].hport, "/metrics", &status, body, sizeof(body), 2000) != 0 ||
	    status != 200)
		return -1;
	char key[160];
	snprintf(key, sizeof(key), "\n%s{node=\"%d\"} ", name, nodes[i].id);
	const char *at = strstr(body, key);
	return at != NULL ? atoll(at + strlen(key)) : -1;
}

/* Every partition of topic led, all its replicas in sync. */
static bool topic_whole(const char *topic, char *why, size_t cap)
{
	sluice_report_t *r = NULL;
	sluice_err_t err = sluice_topic_describe(admin, topic, NULL, NULL, &r);
	bool ok = err == SLUICE_OK;
	if (!ok)
		snprintf(why, cap, "describe %s: %s", topic, sluice_err_name(err));
	for (int32_t p = 0; ok && p < sluice_report_partition_count(r); p++) {
		int32_t ids[8];
		size_t nr = sluice_report_replicas(r, p, ids, 8);
		size_t ni = sluice_report_isr(r, p, ids, 8);
		if (sluice_report_leader(r, p) < 1 || ni < nr) {
			snprintf(why, cap, "%s/%d leader %d isr %zu of %zu", topic, p,
				 sluice_report_leader(r, p), ni, nr);
			ok = false;
		}
	}
	sluice_report_destroy(r);
	return ok;
}

static char health_why[256];

/* Every node alive in the metadata, a controller, every partition led and
 * fully replicated. */
static bool healthy(void *arg)
{
	(void)arg;
	sluice_report_t *r = NULL;
	sluice_err_t err = sluice_cluster_describe(admin, NULL, NULL, &r);
	bool ok = err == SLUICE_OK && sluice_report_controller(r) >= 1 &&
		  sluice_report_node_count(r) == nn && sluice_report_under_replicated(r) == 0;
	if (err != SLUICE_OK)
		snprintf(health_why, sizeof(health_why), "cluster describe: %s",
			 sluice_err_name(err));
	else if (!ok && sluice_report_under_replicated(r) > 0) {
		int32_t isr[8];
		size_t ni = sluice_report_under_replicated_isr(r, 0, isr, 8);
		snprintf(health_why, sizeof(health_why),
			 "%d partition(s) under-replicated, the first %s/%d: leader %d, %zu in sync",
			 sluice_report_under_replicated(r), sluice_report_under_replicated_topic(r, 0),
			 sluice_report_under_replicated_partition(r, 0),
			 sluice_report_under_replicated_leader(r, 0), ni);
	} else if (!ok) {
		snprintf(health_why, sizeof(health_why), "controller %d, %d nodes known",
			 sluice_report_controller(r), sluice_report_node_count(r));
	}
	for (int32_t i = 0; ok && i < sluice_report_node_count(r); i++)
		if (!sluice_report_node_alive(r, i)) {
			snprintf(health_why, sizeof(health_why), "node %d not alive",
				 sluice_report_node_id(r, i));
			ok = false;
		}
	sluice_report_destroy(r);
	return ok && topic_whole(TOPIC, health_why, sizeof(health_why)) &&
	       topic_whole(OFFSETS_TOPIC, health_why, sizeof(health_why));
}

/* ---- producers ---------------------------------------------------------------- */

enum { R_UNSENT, R_PENDING, R_ACKED, R_FAILED };

struct prod {
	int idx;
	pthread_t th;
	sluice_client_t *cl;
	sluice_producer_t *p;
	uint64_t cap;
	_Atomic uint64_t sent;
	_Atomic uint8_t *state;   /* per seq */
	int64_t *offset;          /* acked: the offset the ack named */
	int64_t *ack_ms;          /* acked: when (failover) */
	_Atomic uint64_t acked, failed, misplaced;
	uint64_t call_errors;     /* sluice_produce refusals */
	_Atomic uint16_t *seen;   /* per seq: times the group handed it out */
	uint16_t *read;           /* per seq: times the checker read it */
};

static struct prod prods[MAX_PRODUCERS];
static atomic_bool stop_producing;
static _Atomic uint64_t errors_by_code[2048];
static int single_partition = -1; /* failover: every record to this partition */

static int partition_of(uint64_t seq)
{
	return single_partition >= 0 ? single_partition : (int)(seq % (uint64_t)opt.partitions);
}

static void value_of(char *v, int idx, uint64_t seq)
{
	int k = snprintf(v, VALUE_LEN + 1, "chaos p=%d s=%" PRIu64 " ", idx, seq);
	memset(v + k, 'x', (size_t)(VALUE_LEN - k));
}

/* A value as value_of writes it: its producer and sequence, else false. */
static bool parse_value(const void *val, size_t len, int *idx, uint64_t *seq)
{
	char want[VALUE_LEN + 1];
	int i;
	unsigned long long s;
	if (val == NULL || len != VALUE_LEN || sscanf(val, "chaos p=%d s=%llu ", &i, &s) != 2 ||
	    i < 0 || i >= opt.producers || s >= prods[i].cap)
		return false;
	value_of(want, i, s);
	if (memcmp(want, val, VALUE_LEN) != 0)
		return false;
	*idx = i;
	*seq = s;
	return true;
}

static void on_delivery(void *opaque, sluice_err_t err, const sluice_report_t *r)
{
	uint64_t key = (uint64_t)(uintptr_t)opaque;
	struct prod *pr = &prods[key >> 48];
	uint64_t seq = key & ((1ull << 48) - 1);
	if (err == SLUICE_OK) {
		pr->offset[seq] = sluice_report_offset(r);
		pr->ack_ms[seq] = tl_now_ms();
		if (sluice_report_partition(r) != partition_of(seq))
			pr->misplaced++;
		atomic_store(&pr->state[seq], R_ACKED);
		pr->acked++;
		return;
	}
	atomic_store(&pr->state[seq], R_FAILED);
	uint64_t n = pr->failed++;
	errors_by_code[err >= 0 && err < 2048 ? err : 2047]++;
	if (n < 5)
		say("producer %d: record %" PRIu64 " failed: %s: %s", pr->idx, seq,
		    sluice_err_name(err), r != NULL ? sluice_report_errmsg(r) : "");
}

static void *producer_main(void *arg)
{
	struct prod *pr = arg;
	char v[VALUE_LEN + 1];
	int64_t t0 = tl_now_ms();
	while (!atomic_load(&stop_producing) && pr->sent < pr->cap) {
		uint64_t due = (uint64_t)(tl_now_ms() - t0) * (uint64_t)opt.rate / 1000;
		while (pr->sent < due && pr->sent < pr->cap && !atomic_load(&stop_producing)) {
			uint64_t seq = pr->sent;
			value_of(v, pr->idx, seq);
			atomic_store(&pr->state[seq], R_PENDING);
			sluice_err_t err = sluice_produce(pr->p, TOPIC, partition_of(seq), NULL, 0, v,
							  VALUE_LEN, on_delivery,
							  (void *)(uintptr_t)((uint64_t)pr->idx << 48 | seq));
			if (err != SLUICE_OK) {
				atomic_store(&pr->state[seq], R_FAILED);
				if (pr->call_errors++ < 5)
					say("producer %d: produce: %s", pr->idx, sluice_err_name(err));
				errors_by_code[err >= 0 && err < 2048 ? err : 2047]++;
			}
			pr->sent = seq + 1;
		}
		/* The rate's tick (a throttle, not a wait for a condition). */
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void producers_start(int count, uint64_t cap)
{
	const char *const kv[] = { "acks", opt.acks1 ? "1" : "all", "enable.idempotence",
				   opt.acks1 ? "false" : "true", "linger.ms", "5", "client.id",
				   "chaos-producer", NULL };
	for (int i = 0; i < count; i++) {
		struct prod *pr = &prods[i];
		pr->idx = i;
		pr->cap = cap;
		pr->state = calloc(cap, sizeof(*pr->state));
		pr->offset = calloc(cap, sizeof(*pr->offset));
		pr->ack_ms = calloc(cap, sizeof(*pr->ack_ms));
		pr->seen = calloc(cap, sizeof(*pr->seen));
		pr->read = calloc(cap, sizeof(*pr->read));
		pr->cl = client_new(kv);
		pr->p = sluice_producer_new(pr->cl);
		if (pr->state == NULL || pr->offset == NULL || pr->ack_ms == NULL ||
		    pr->seen == NULL || pr->read == NULL || pr->p == NULL)
			die("producer %d: no memory", i);
		if (pthread_create(&pr->th, NULL, producer_main, pr) != 0)
			die("producer thread");
	}
}

/* Stops sending, then waits for every record's fate. */
static void producers_finish(int count)
{
	atomic_store(&stop_producing, true);
	for (int i = 0; i < count; i++)
		pthread_join(prods[i].th, NULL);
	for (int i = 0; i < count; i++)
		if (sluice_producer_flush(prods[i].p, 180000) != SLUICE_OK)
			say("producer %d: flush did not end within 180 s", i);
}

static void producers_close(int count)
{
	for (int i = 0; i < count; i++) {
		sluice_producer_close(prods[i].p);
		sluice_client_destroy(prods[i].cl);
	}
}

/* ---- the group --------------------------------------------------------------- */

struct cons {
	pthread_t th;
	sluice_client_t *cl;
	sluice_consumer_t *c;
};

static struct cons conss[MAX_CONSUMERS];
static atomic_bool stop_consuming;
static _Atomic uint64_t group_phantoms, group_records;

static void *consumer_main(void *arg)
{
	struct cons *cs = arg;
	while (!atomic_load(&stop_consuming)) {
		sluice_msg_t *m = NULL;
		if (sluice_poll(cs->c, 200, &m) != SLUICE_OK)
			continue;
		size_t len;
		const void *v = sluice_msg_value(m, &len);
		int idx;
		uint64_t seq;
		if (parse_value(v, len, &idx, &seq))
			prods[idx].seen[seq]++;
		else
			group_phantoms++;
		group_records++;
		sluice_msg_destroy(m);
	}
	return NULL;
}

static void consumers_start(void)
{
	const char *const kv[] = { "auto.offset.reset", "earliest", "auto.commit.interval.ms",
				   "1000", "client.id", "chaos-member", NULL };
	const char *topics[] = { TOPIC };
	for (int i = 0; i < opt.consumers; i++) {
		struct cons *cs = &conss[i];
		cs->cl = client_new(kv);
		cs->c = sluice_consumer_new(cs->cl, GROUP, NULL, NULL);
		if (cs->c == NULL || sluice_subscribe(cs->c, topics, 1) != SLUICE_OK)
			die("group member %d: cannot subscribe", i);
		if (pthread_create(&cs->th, NULL, consumer_main, cs) != 0)
			die("consumer thread");
	}
}

static void consumers_stop(void)
{
	atomic_store(&stop_consuming, true);
	for (int i = 0; i < opt.consumers; i++) {
		pthread_join(conss[i].th, NULL);
		sluice_consumer_close(conss[i].c);
		sluice_client_destroy(conss[i].cl);
	}
}

/* The group's committed offsets, watched: none may go back. */
static struct {
	pthread_t th;
	atomic_bool stop;
	int64_t max[MAX_PARTITIONS];
	uint64_t regressions, samples;
} cw;

static void *commits_main(void *arg)
{
	(void)arg;
	const char *const kv[] = { "request.timeout.ms", "3000", "socket.timeout.ms", "2000",
				   "client.id", "chaos-watch", NULL };
	sluice_client_t *cl = client_new(kv);
	sluice_admin_t *a = sluice_admin_new(cl);
	for (int p = 0; p < MAX_PARTITIONS; p++)
		cw.max[p] = -1;
	while (!atomic_load(&cw.stop)) {
		sluice_report_t *r = NULL;
		if (sluice_group_describe(a, GROUP, NULL, NULL, &r) == SLUICE_OK) {
			cw.samples++;
			for (int32_t i = 0; i < sluice_report_offset_count(r); i++) {
				int32_t p = sluice_report_offset_partition(r, i);
				int64_t c = sluice_report_offset_committed(r, i);
				if (strcmp(sluice_report_offset_topic(r, i), TOPIC) != 0 || p < 0 ||
				    p >= MAX_PARTITIONS || c < 0)
					continue;
				if (c < cw.max[p]) {
					cw.regressions++;
					say("CHECK committed offset of %s/%d went back: %" PRId64
					    " after %" PRId64, TOPIC, p, c, cw.max[p]);
				}
				if (c > cw.max[p])
					cw.max[p] = c;
			}
		}
		sluice_report_destroy(r);
		struct timespec ts = { 0, 300 * 1000 * 1000 }; /* the sampling period */
		nanosleep(&ts, NULL);
	}
	sluice_admin_destroy(a);
	sluice_client_destroy(cl);
	return NULL;
}

/* ---- faults ------------------------------------------------------------------- */

static int faults_done[F_COUNT];
static int64_t recover_max_ms[F_COUNT];
static int recover_late;

/* Waits until the cluster is whole again, within the bound (from now:
 * the fault was just healed). */
static void await_recovery(enum fault f)
{
	int64_t t0 = tl_now_ms();
	bool said = false;
	bool whole;
	while (!(whole = healthy(NULL)) && tl_now_ms() < t0 + opt.recover_ms) {
		if (!said && tl_now_ms() > t0 + 10000) {
			say("  still not whole after 10 s: %s", health_why);
			said = true;
		}
		struct timespec ts = { 0, 100 * 1000 * 1000 }; /* re-check interval */
		nanosleep(&ts, NULL);
	}
	if (!whole) {
		recover_late++;
		say("CHECK not whole %d ms after %s healed: %s", opt.recover_ms, fault_names[f],
		    health_why);
		/* Go on once it is, or stop the run: the checker reports. */
		if (!tl_wait_until(healthy, NULL, 120000, 200))
			die("the cluster did not heal within %d s after %s: %s",
			    (opt.recover_ms + 120000) / 1000, fault_names[f], health_why);
	}
	int64_t ms = tl_now_ms() - t0;
	if (ms > recover_max_ms[f])
		recover_max_ms[f] = ms;
	say("  whole again %" PRId64 " ms after healing", ms);
}

static void restart_down(void)
{
	for (int i = 0; i < nn; i++) {
		if (nodes[i].paused) {
			tl_proc_kill(&nodes[i].p, SIGCONT);
			nodes[i].paused = false;
		}
		if (!nodes[i].up)
			node_start(i);
	}
}

/* Holds a fault for ms, watching for nodes that exit by themselves. */
static void hold(int ms)
{
	int64_t end = tl_now_ms() + ms;
	while (tl_now_ms() < end) {
		check_exited();
		struct timespec ts = { 0, 50 * 1000 * 1000 }; /* the fault's duration */
		nanosleep(&ts, NULL);
	}
}

/* The tail of the active segment of one of the node's logs, cut at a
 * random byte: truncated there, or zeroed from there (as a file written
 * ahead of its end shows a torn write). */
struct tear {
	char seg[300];
	uint64_t end; /* where the last whole batch of seg ends */
};

static int tear_cb(void *arg, const struct sl_dump_batch *b)
{
	struct tear *t = arg;
	if (strcmp(b->segment, t->seg) != 0) {
		snprintf(t->seg, sizeof(t->seg), "%s", b->segment);
		t->end = 0;
	}
	if (b->err == 0 && b->pos + b->size > t->end)
		t->end = b->pos + b->size;
	return 0;
}

/* The Raft group of each partition of the data topic. */
static int topic_groups(int64_t *groups)
{
	sluice_report_t *r = NULL;
	int n = 0;
	if (sluice_topic_describe(admin, TOPIC, NULL, NULL, &r) == SLUICE_OK)
		for (; n < sluice_report_partition_count(r) && n < MAX_PARTITIONS; n++)
			groups[n] = sluice_report_raft_group(r, n);
	sluice_report_destroy(r);
	return n;
}

/* Tears the log of one of the data topic's partitions on node i (from a
 * random one on, the first the node holds a replica of). */
static void tear(int i, const int64_t *groups, int ngroups, uint64_t r1, uint64_t r2, uint64_t r3)
{
	for (int k = 0; k < ngroups; k++) {
		char logdir[800], errmsg[SL_ERRMSG_SIZE];
		int p = (int)((r1 + (uint64_t)k) % (uint64_t)ngroups);
		snprintf(logdir, sizeof(logdir), "%s/raft/g%" PRId64 "/log", nodes[i].dir, groups[p]);
		struct tear t = { .seg = "" };
		if (access(logdir, F_OK) != 0 || sl_log_dump(logdir, NULL, tear_cb, &t, errmsg) != 0 ||
		    t.end < 64)
			continue;
		uint64_t back = 1 + r2 % (t.end < 65536 ? t.end : 65536);
		uint64_t cut = t.end - back;
		char path[1200];
		snprintf(path, sizeof(path), "%s/%s", logdir, t.seg);
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		bool zero = r3 % 2 == 1;
		int rv = -1;
		if (fd >= 0 && zero) {
			char z[4096] = { 0 };
			rv = 0;
			for (uint64_t at = cut; at < t.end && rv == 0; at += sizeof(z)) {
				size_t len = t.end - at < sizeof(z) ? (size_t)(t.end - at) : sizeof(z);
				rv = pwrite(fd, z, len, (off_t)at) == (ssize_t)len ? 0 : -1;
			}
		} else if (fd >= 0) {
			rv = ftruncate(fd, (off_t)cut);
		}
		if (fd >= 0)
			close(fd);
		say("  torn-write: node %d, %s/%d (g%" PRId64 "), %s %s at byte %" PRIu64
		    " of %" PRIu64 "%s", nodes[i].id, TOPIC, p, groups[p], t.seg,
		    zero ? "zeroed" : "cut", cut, t.end, rv == 0 ? "" : " (failed)");
		return;
	}
	say("  torn-write: node %d holds no log of %s", nodes[i].id, TOPIC);
}

/* Fills the node's tmpfs until writes fail with ENOSPC. */
static void fill_disk(int i)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/chaos-filler", nodes[i].dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	off_t at = 0;
	for (off_t step = 64 << 20; fd >= 0 && step >= 4096; step /= 2)
		while (fallocate(fd, 0, at, step) == 0)
			at += step;
	if (fd >= 0)
		close(fd);
	say("  disk-full: node %d's disk filled with %lld MiB", nodes[i].id,
	    (long long)(at >> 20));
}

static void free_disk(int i)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/chaos-filler", nodes[i].dir);
	unlink(path);
}

static int random_node(uint64_t r)
{
	return (int)(r % (uint64_t)nn);
}

/* One fault from the schedule: applied, held, healed, then the cluster
 * must be whole again. r[]: the draws this fault took from the seed. */
static void run_fault(enum fault f, int dur, const uint64_t r[4])
{
	int victim = -1, id = -1, p = (int)(r[0] % (uint64_t)opt.partitions);
	char what[160] = "";
	switch (f) {
	case F_KILL_NODE:
	case F_TORN_WRITE:
	case F_ISOLATE:
	case F_DISK_FULL:
		victim = random_node(r[0]);
		break;
	case F_KILL_LEADER:
	case F_PAUSE_LEADER:
	case F_ONE_WAY:
		id = leader_of(TOPIC, p);
		snprintf(what, sizeof(what), " (leader of %s/%d)", TOPIC, p);
		break;
	case F_KILL_CONTROLLER:
		id = controller_leader();
		snprintf(what, sizeof(what), " (the controller's leader)");
		break;
	case F_KILL_COORDINATOR:
		id = coordinator_of_group();
		snprintf(what, sizeof(what), " (coordinator of group %s)", GROUP);
		break;
	case F_SPLIT:
		victim = random_node(r[0]);
		break;
	case F_COUNT:
		break;
	}
	if (victim < 0)
		victim = id >= 1 ? node_index(id) : random_node(r[1]);
	if (victim < 0)
		victim = random_node(r[1]);
	struct node *n = &nodes[victim];
	switch (f) {
	case F_KILL_NODE:
	case F_KILL_LEADER:
	case F_KILL_CONTROLLER:
	case F_KILL_COORDINATOR:
		say("%s: SIGKILL node %d%s, down %d ms", fault_names[f], n->id, what, dur);
		node_stop(victim, SIGKILL);
		hold(dur);
		break;
	case F_TORN_WRITE: {
		int64_t groups[MAX_PARTITIONS];
		int ng = topic_groups(groups);
		say("%s: SIGKILL node %d, tear a log's tail, down %d ms", fault_names[f], n->id, dur);
		node_stop(victim, SIGKILL);
		tear(victim, groups, ng, r[1], r[2], r[3]);
		hold(dur);
		break;
	}
	case F_PAUSE_LEADER:
		say("%s: SIGSTOP node %d%s for %d ms", fault_names[f], n->id, what, dur);
		tl_proc_kill(&n->p, SIGSTOP);
		n->paused = true;
		hold(dur);
		break;
	case F_ISOLATE:
		say("%s: node %d cut off from every node for %d ms", fault_names[f], n->id, dur);
		link_set(victim, -1, true);
		link_set(-1, victim, true);
		hold(dur);
		break;
	case F_SPLIT: {
		/* A minority of floor(N/2) nodes from victim on, against the rest. */
		bool minority[MAX_NODES] = { false };
		char list[64] = "";
		for (int k = 0; k < nn / 2; k++) {
			int m = (victim + k) % nn;
			minority[m] = true;
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%d",
				 k ? "," : "", nodes[m].id);
		}
		say("%s: nodes {%s} cut off from the others for %d ms", fault_names[f], list, dur);
		for (int a = 0; a < nn; a++)
			for (int b = 0; b < nn; b++)
				if (a != b && minority[a] != minority[b])
					link_set(a, b, true);
		hold(dur);
		break;
	}
	case F_ONE_WAY: {
		int to = (victim + 1 + (int)(r[2] % (uint64_t)(nn - 1))) % nn;
		say("%s: node %d%s cannot reach node %d (the other way works) for %d ms",
		    fault_names[f], n->id, what, nodes[to].id, dur);
		link_set(victim, to, true);
		hold(dur);
		break;
	}
	case F_DISK_FULL: {
		/* Full until a write of the node fails (its Raft groups stop on
		 * the error: sluice_raft_faults_total), at most 20 s. */
		say("%s: node %d's disk full for at least %d ms, until a write fails",
		    fault_names[f], n->id, dur);
		long long before = node_metric(victim, "sluice_raft_faults_total");
		int64_t t0 = tl_now_ms();
		fill_disk(victim);
		hold(dur);
		long long now = before;
		while (n->up && (now = node_metric(victim, "sluice_raft_faults_total")) <= before &&
		       tl_now_ms() < t0 + 20000)
			hold(100);
		if (now > before)
			say("  disk-full: node %d stopped %lld Raft group(s) on write errors within %"
			    PRId64 " ms", n->id, now - before, tl_now_ms() - t0);
		else
			say("  disk-full: no write of node %d failed within 20 s%s", n->id,
			    n->up ? "" : " (it exited)");
		free_disk(victim);
		break;
	}
	case F_COUNT:
		break;
	}
	link_set(-1, -1, false);
	check_exited();
	restart_down();
	faults_done[f]++;
	await_recovery(f);
}

/* How long each kind of fault lasts, in ms (drawn from the seed). */
static int fault_duration(enum fault f, uint64_t *s)
{
	int election = opt.test_timeouts ? 500 : 1000;
	switch (f) {
	case F_PAUSE_LEADER:
		return rng_range(s, 2 * election + election / 2, 5 * election);
	case F_ISOLATE:
	case F_SPLIT:
	case F_ONE_WAY:
		return rng_range(s, 3 * election, 8 * election);
	default:
		return rng_range(s, 500, 5000);
	}
}

static void nemesis(int64_t until)
{
	uint64_t s = opt.seed;
	enum fault bag[F_COUNT];
	int nbag = 0, next = 0;
	while (tl_now_ms() < until) {
		if (next == nbag) { /* a new round: every enabled kind once, shuffled */
			nbag = next = 0;
			for (int f = 0; f < F_COUNT; f++)
				if (opt.enabled[f])
					bag[nbag++] = (enum fault)f;
			for (int k = nbag - 1; k > 0; k--) {
				int j = (int)(rng_next(&s) % (uint64_t)(k + 1));
				enum fault t = bag[k];
				bag[k] = bag[j];
				bag[j] = t;
			}
		}
		enum fault f = bag[next++];
		int dur = fault_duration(f, &s);
		int gap = rng_range(&s, 500, 2000);
		uint64_t r[4] = { rng_next(&s), rng_next(&s), rng_next(&s), rng_next(&s) };
		run_fault(f, dur, r);
		hold(gap);
	}
}

/* ---- the checker ------------------------------------------------------------------ */

struct batch {
	int64_t base, last;
	int32_t count, term;
	int16_t attributes;
	uint32_t hash; /* CRC-32C of the batch's bytes */
	bool ok;
};

struct replica {
	struct batch *b;
	size_t n, cap;
	int fd;
	char dir[800], seg[300];
	int64_t last_seg_base; /* the first offset of its last segment */
	bool broken;
};

static int replica_cb(void *arg, const struct sl_dump_batch *d)
{
	struct replica *rp = arg;
	if (d->err != 0 || !d->crc_ok) {
		rp->broken = true;
		say("CHECK %s/%s at %" PRIu64 ": %s", rp->dir, d->segment, d->pos,
		    d->err != 0 ? "a batch that does not parse" : "a bad CRC");
		return 0;
	}
	if (strcmp(d->segment, rp->seg) != 0) {
		if (rp->fd >= 0)
			close(rp->fd);
		char path[1200];
		snprintf(path, sizeof(path), "%s/%s", rp->dir, d->segment);
		rp->fd = open(path, O_RDONLY | O_CLOEXEC);
		snprintf(rp->seg, sizeof(rp->seg), "%s", d->segment);
		rp->last_seg_base = d->base_offset;
	}
	uint8_t *bytes = malloc(d->size);
	if (bytes == NULL || rp->fd < 0 || pread(rp->fd, bytes, d->size, (off_t)d->pos) != (ssize_t)d->size) {
		free(bytes);
		rp->broken = true;
		return 0;
	}
	if (rp->n == rp->cap) {
		rp->cap = rp->cap ? rp->cap * 2 : 1024;
		rp->b = realloc(rp->b, rp->cap * sizeof(*rp->b));
		if (rp->b == NULL)
			die("no memory");
	}
	rp->b[rp->n++] = (struct batch){ .base = d->base_offset, .last = d->last_offset,
					 .count = d->count, .term = d->leader_epoch,
					 .attributes = d->attributes,
					 .hash = sl_crc32c(0, bytes, d->size), .ok = true };
	free(bytes);
	return 0;
}

struct groupcheck {
	int64_t raft_group;
	const char *topic;
	int partition;
	bool compacted;
};

static uint64_t replica_mismatches, replica_gaps, replica_broken;

/* Every replica of a Raft group holds the same batches over the range
 * they all keep; without compaction, a replica's batches follow each other
 * with no gap. A compacted topic's replicas compact their sealed segments
 * each on its own clock, so only their active segments are compared. Returns
 * the first replica's batches (for the offsets check) in *first. */
static void check_replicas(const struct groupcheck *gc, struct replica *first)
{
	struct replica reps[MAX_NODES];
	int nr = 0;
	for (int i = 0; i < nn; i++) {
		struct replica *rp = &reps[nr];
		*rp = (struct replica){ .fd = -1 };
		snprintf(rp->dir, sizeof(rp->dir), "%s/raft/g%" PRId64 "/log", nodes[i].dir,
			 gc->raft_group);
		if (access(rp->dir, F_OK) != 0)
			continue;
		char errmsg[SL_ERRMSG_SIZE];
		if (sl_log_dump(rp->dir, NULL, replica_cb, rp, errmsg) != 0) {
			say("CHECK %s: %s", rp->dir, errmsg);
			rp->broken = true;
		}
		if (rp->fd >= 0)
			close(rp->fd);
		replica_broken += rp->broken;
		for (size_t k = 1; k < rp->n; k++)
			if (rp->b[k].base <= rp->b[k - 1].last) {
				replica_gaps++;
				say("CHECK %s/%d on node %d: batch %" PRId64 "..%" PRId64
				    " overlaps the one before it (..%" PRId64 ")", gc->topic,
				    gc->partition, nodes[i].id, rp->b[k].base, rp->b[k].last,
				    rp->b[k - 1].last);
			} else if (!gc->compacted && rp->b[k].base != rp->b[k - 1].last + 1) {
				replica_gaps++;
				say("CHECK %s/%d on node %d: offsets %" PRId64 "..%" PRId64 " missing",
				    gc->topic, gc->partition, nodes[i].id, rp->b[k - 1].last + 1,
				    rp->b[k].base - 1);
			}
		nr++;
	}
	if (nr < 2)
		say("CHECK %s/%d: %d replica(s) on disk", gc->topic, gc->partition, nr);
	replica_mismatches += nr < 2;
	/* [lo, hi): what every replica keeps; from active on, every batch is
	 * compared, below it (sealed segments of a compacted topic) only
	 * Raft's own entries, which compaction copies as they are. */
	int64_t lo = INT64_MIN, hi = INT64_MAX, active = INT64_MIN;
	for (int k = 0; k < nr; k++) {
		if (reps[k].n == 0)
			continue;
		if (reps[k].b[0].base > lo)
			lo = reps[k].b[0].base;
		if (reps[k].last_seg_base > active)
			active = reps[k].last_seg_base;
		if (reps[k].b[reps[k].n - 1].last + 1 < hi)
			hi = reps[k].b[reps[k].n - 1].last + 1;
	}
	if (!gc->compacted)
		active = lo;
	for (int k = 1; k < nr; k++) {
		const struct replica *x = &reps[0], *y = &reps[k];
		size_t a = 0, b = 0;
		for (;;) {
			while (a < x->n && x->b[a].base < hi &&
			       (x->b[a].base < lo || (x->b[a].base < active &&
						      !(x->b[a].attributes & SL_ATTR_CONTROL))))
				a++;
			while (b < y->n && y->b[b].base < hi &&
			       (y->b[b].base < lo || (y->b[b].base < active &&
						      !(y->b[b].attributes & SL_ATTR_CONTROL))))
				b++;
			bool xa = a < x->n && x->b[a].last < hi, yb = b < y->n && y->b[b].last < hi;
			if (!xa && !yb)
				break;
			if (!xa || !yb || x->b[a].base != y->b[b].base || x->b[a].last != y->b[b].last ||
			    x->b[a].hash != y->b[b].hash || x->b[a].term != y->b[b].term) {
				const struct batch *m = xa ? &x->b[a] : &y->b[b];
				replica_mismatches++;
				say("CHECK %s/%d: replicas differ at offset %" PRId64 " (batch %" PRId64
				    "..%" PRId64 " term %d on one, %s on the other)",
				    gc->topic, gc->partition, m->base, m->base, m->last, m->term,
				    xa && yb ? "another" : "none");
				break;
			}
			a++;
			b++;
		}
	}
	*first = nr > 0 ? reps[0] : (struct replica){ .fd = -1 };
	for (int k = 1; k < nr; k++)
		free(reps[k].b);
}

/* What the checker read of one partition. */
struct readp {
	int64_t *off;
	size_t n, cap;
	int64_t end;   /* the high watermark when reading began */
	int64_t group; /* its Raft group */
};

static struct readp readps[MAX_PARTITIONS];
static uint64_t lost, dups, phantoms, disordered, misplaced_read, unseen_by_group, pending;
static uint64_t offset_mismatches;

/* Per partition and producer: the last sequence read, -1: none yet. */
static int64_t lastseq[MAX_PARTITIONS][MAX_PRODUCERS];

static bool read_whole(sluice_consumer_t *c, int64_t deadline)
{
	for (int a = 0; a < MAX_PARTITIONS; a++)
		for (int b = 0; b < MAX_PRODUCERS; b++)
			lastseq[a][b] = -1;
	while (tl_now_ms() < deadline) {
		sluice_msg_t *m = NULL;
		if (sluice_poll(c, 200, &m) != SLUICE_OK) {
			/* Nothing buffered: done once every position is at the end. */
			bool done = true;
			for (int p = 0; p < opt.partitions; p++) {
				int64_t pos = -1;
				sluice_position(c, TOPIC, p, &pos);
				done = done && pos >= readps[p].end;
			}
			if (done)
				return true;
			continue;
		}
		int p = sluice_msg_partition(m);
		int64_t o = sluice_msg_offset(m);
		size_t len;
		const void *v = sluice_msg_value(m, &len);
		struct readp *rp = &readps[p];
		if (rp->n == rp->cap) {
			rp->cap = rp->cap ? rp->cap * 2 : 4096;
			rp->off = realloc(rp->off, rp->cap * sizeof(*rp->off));
			if (rp->off == NULL)
				die("no memory");
		}
		rp->off[rp->n++] = o;
		int idx;
		uint64_t seq;
		if (!parse_value(v, len, &idx, &seq)) {
			if (phantoms++ < 10)
				say("CHECK %s/%d offset %" PRId64 ": a record never sent (%zu bytes)", TOPIC,
				    p, o, len);
		} else {
			struct prod *pr = &prods[idx];
			if (pr->read[seq]++ > 0 && dups++ < 10)
				say("CHECK %s/%d offset %" PRId64 ": producer %d's record %" PRIu64
				    " again", TOPIC, p, o, idx, seq);
			if (partition_of(seq) != p && misplaced_read++ < 10)
				say("CHECK %s/%d offset %" PRId64 ": producer %d's record %" PRIu64
				    " belongs to partition %d", TOPIC, p, o, idx, seq, partition_of(seq));
			if ((int64_t)seq <= lastseq[p][idx] && disordered++ < 10)
				say("CHECK %s/%d offset %" PRId64 ": producer %d's record %" PRIu64
				    " after its record %" PRId64, TOPIC, p, o, idx, seq, lastseq[p][idx]);
			if ((int64_t)seq > lastseq[p][idx])
				lastseq[p][idx] = (int64_t)seq;
			if (atomic_load(&pr->state[seq]) == R_ACKED && pr->offset[seq] != o &&
			    offset_mismatches++ < 10)
				say("CHECK producer %d's record %" PRIu64 " acknowledged at offset %" PRId64
				    ", found at %" PRId64, idx, seq, pr->offset[seq], o);
		}
		sluice_msg_destroy(m);
	}
	return false;
}

static int64_t describe_groups(const char *topic, struct groupcheck *out, int max, int64_t *ends)
{
	sluice_report_t *r = NULL;
	int n = 0;
	if (sluice_topic_describe(admin, topic, NULL, NULL, &r) == SLUICE_OK)
		for (int32_t p = 0; p < sluice_report_partition_count(r) && n < max; p++) {
			out[n++] = (struct groupcheck){ .raft_group = sluice_report_raft_group(r, p),
							.topic = topic, .partition = p,
							.compacted = strcmp(topic, OFFSETS_TOPIC) == 0 };
			if (ends != NULL)
				ends[p] = sluice_report_log_end(r, p);
		}
	sluice_report_destroy(r);
	return n;
}

static bool check_all(void)
{
	bool ok = true;
	/* 1. Every partition, read from its start through its high watermark. */
	struct groupcheck gcs[MAX_PARTITIONS + 64];
	int64_t ends[MAX_PARTITIONS];
	int ngc = (int)describe_groups(TOPIC, gcs, MAX_PARTITIONS, ends);
	if (ngc != opt.partitions)
		die("describe %s: %d partitions", TOPIC, ngc);
	for (int p = 0; p < opt.partitions; p++) {
		readps[p].end = ends[p];
		readps[p].group = gcs[p].raft_group;
		if (ends[p] < 0)
			die("%s/%d: no log end known", TOPIC, p);
	}
	const char *const kv[] = { "auto.offset.reset", "earliest", "client.id", "chaos-check",
				   NULL };
	sluice_client_t *cl = client_new(kv);
	sluice_consumer_t *c = sluice_consumer_new(cl, NULL, NULL, NULL);
	if (c == NULL || sluice_assign(c, TOPIC, SLUICE_PARTITION_ANY) != SLUICE_OK)
		die("the checker cannot read %s", TOPIC);
	if (!read_whole(c, tl_now_ms() + 120000)) {
		say("CHECK the partitions could not be read to their ends within 120 s");
		ok = false;
	}
	sluice_consumer_close(c);
	sluice_client_destroy(cl);
	uint64_t acked = 0, failed = 0;
	for (int i = 0; i < opt.producers; i++) {
		struct prod *pr = &prods[i];
		for (uint64_t s = 0; s < pr->sent; s++) {
			int st = atomic_load(&pr->state[s]);
			if (st == R_PENDING && pending++ < 10)
				say("CHECK producer %d's record %" PRIu64 ": no delivery report", i, s);
			if (st != R_ACKED) {
				failed += st == R_FAILED;
				continue;
			}
			acked++;
			if (pr->read[s] == 0 && lost++ < 10)
				say("CHECK producer %d's record %" PRIu64 " (%s/%d offset %" PRId64
				    ") was acknowledged and is gone", i, s, TOPIC, partition_of(s),
				    pr->offset[s]);
			if (pr->seen[s] == 0 && unseen_by_group++ < 10)
				say("CHECK producer %d's record %" PRIu64 " never reached the group", i,
				    s);
		}
	}
	/* 2. Stop every node cleanly, then compare the replicas on disk. */
	int ntot = ngc;
	ntot += (int)describe_groups(OFFSETS_TOPIC, gcs + ntot, 64, NULL);
	for (int i = 0; i < nn; i++)
		node_stop(i, SIGTERM);
	uint64_t offsets_differ = 0;
	for (int g = 0; g < ntot; g++) {
		struct replica first;
		check_replicas(&gcs[g], &first);
		if (g < opt.partitions) {
			/* Offsets: the records read are exactly those of the
			 * log's record batches below the high watermark. */
			struct readp *rp = &readps[g];
			size_t k = 0;
			bool bad = false;
			for (size_t b = 0; b < first.n && !bad; b++) {
				if (first.b[b].attributes & SL_ATTR_CONTROL)
					continue;
				for (int64_t o = first.b[b].base; o <= first.b[b].last && o < rp->end; o++)
					if (k >= rp->n || rp->off[k++] != o)
						bad = true;
			}
			if (bad || k != rp->n) {
				offsets_differ++;
				say("CHECK %s/%d: the records read are not the log's records below %" PRId64,
				    TOPIC, g, rp->end);
			}
		}
		free(first.b);
	}
	ok = ok && lost == 0 && dups == 0 && phantoms == 0 && disordered == 0 &&
	     misplaced_read == 0 && pending == 0 && offset_mismatches == 0 &&
	     unseen_by_group == 0 && replica_mismatches == 0 && replica_gaps == 0 &&
	     replica_broken == 0 && offsets_differ == 0 && cw.regressions == 0 &&
	     group_phantoms == 0 && recover_late == 0 && crashes == 0;
	uint64_t misplaced = 0;
	for (int i = 0; i < opt.producers; i++)
		misplaced += prods[i].misplaced;
	ok = ok && misplaced == 0;
	char faults[512] = "";
	for (int f = 0; f < F_COUNT; f++)
		if (faults_done[f] > 0)
			snprintf(faults + strlen(faults), sizeof(faults) - strlen(faults), "%s%s=%d",
				 faults[0] ? "," : "", fault_names[f], faults_done[f]);
	char recov[512] = "";
	for (int f = 0; f < F_COUNT; f++)
		if (faults_done[f] > 0)
			snprintf(recov + strlen(recov), sizeof(recov) - strlen(recov),
				 "%s%s=%" PRId64, recov[0] ? "," : "", fault_names[f],
				 recover_max_ms[f]);
	printf("\nchaos summary: seed=%" PRIu64 " nodes=%d seconds=%d faults=%s\n", opt.seed, nn,
	       opt.seconds, faults[0] ? faults : "none");
	printf("  records: acked=%" PRIu64 " failed=%" PRIu64 " lost=%" PRIu64
	       " duplicates=%" PRIu64 " never-sent=%" PRIu64 " out-of-order=%" PRIu64
	       " wrong-offset=%" PRIu64 " no-report=%" PRIu64 " group-missed=%" PRIu64
	       " group-read=%" PRIu64 "\n",
	       acked, failed, lost, dups, phantoms + group_phantoms, disordered,
	       offset_mismatches + misplaced + misplaced_read, pending, unseen_by_group,
	       (uint64_t)group_records);
	printf("  replicas: differ=%" PRIu64 " gaps=%" PRIu64 " corrupt=%" PRIu64
	       " offsets-differ=%" PRIu64 "; committed offsets: samples=%" PRIu64
	       " went-back=%" PRIu64 "\n",
	       replica_mismatches, replica_gaps, replica_broken, offsets_differ, cw.samples,
	       cw.regressions);
	printf("  recovery: slowest ms by fault %s; late=%d; nodes that exited by themselves=%d\n",
	       recov[0] ? recov : "-", recover_late, crashes);
	printf("  errors seen by the producers:");
	bool any = false;
	for (int e = 0; e < 2048; e++)
		if (errors_by_code[e] > 0) {
			printf(" %s=%" PRIu64, sluice_err_name(e), (uint64_t)errors_by_code[e]);
			any = true;
		}
	printf("%s\n", any ? "" : " none");
	printf("chaos result: %s (seed %" PRIu64 ")\n", ok ? "PASS" : "FAIL", opt.seed);
	return ok;
}

/* ---- failover: SIGKILL a partition's leader, time the first produce after ---- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t flow_mark;

static bool flowing(void *arg)
{
	(void)arg;
	return prods[0].acked >= flow_mark + 200;
}

static bool acked_after(void *arg)
{
	uint64_t from = *(uint64_t *)arg;
	for (uint64_t s = from; s < prods[0].sent; s++)
		if (atomic_load(&prods[0].state[s]) == R_ACKED)
			return true;
	return false;
}

static int failover(void)
{
	int runs = opt.failover_runs;
	int64_t *ms = calloc((size_t)runs, sizeof(*ms));
	single_partition = 0;
	opt.producers = 1;
	opt.rate = 500; /* one record every 2 ms */
	producers_start(1, (uint64_t)opt.rate * 600);
	for (int k = 0; k < runs; k++) {
		if (!tl_wait_until(healthy, NULL, 60000, 100))
			die("run %d: the cluster is not whole: %s", k + 1, health_why);
		flow_mark = prods[0].acked;
		if (!tl_wait_until(flowing, NULL, 30000, 10))
			die("run %d: records do not flow", k + 1);
		int id = leader_of(TOPIC, 0);
		int i = node_index(id);
		if (i < 0)
			die("run %d: no leader of %s/0", k + 1, TOPIC);
		int64_t t0 = tl_now_ms();
		node_stop(i, SIGKILL);
		uint64_t from = prods[0].sent;
		if (!tl_wait_until(acked_after, &from, 30000, 1))
			die("run %d: nothing acknowledged within 30 s of killing node %d", k + 1, id);
		int64_t first = INT64_MAX;
		for (uint64_t s = from; s < prods[0].sent; s++)
			if (atomic_load(&prods[0].state[s]) == R_ACKED && prods[0].ack_ms[s] < first)
				first = prods[0].ack_ms[s];
		ms[k] = first - t0;
		say("run %d: SIGKILL node %d (leader of %s/0): the first produce acknowledged after %"
		    PRId64 " ms", k + 1, id, TOPIC, ms[k]);
		node_start(i);
	}
	producers_finish(1);
	uint64_t errors = prods[0].failed + prods[0].call_errors;
	qsort(ms, (size_t)runs, sizeof(*ms), cmp_i64);
	printf("\nfailover: timeouts=%s runs=%d first produce acknowledged: median=%" PRId64
	       " ms min=%" PRId64 " ms max=%" PRId64 " ms; errors seen by the producer=%" PRIu64
	       " of %" PRIu64 " records\n",
	       opt.test_timeouts ? "test (heartbeat 100 ms, election 500 ms)"
				 : "default (heartbeat 200 ms, election 1000 ms)",
	       runs, ms[runs / 2], ms[0], ms[runs - 1], errors, (uint64_t)prods[0].sent);
	producers_close(1);
	free(ms);
	return errors == 0 ? 0 : 1;
}

/* ---- setup ------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("usage: chaos --sluiced PATH [--dir DIR] [--nodes 3|5] [--seconds S] [--seed N]\n"
	      "             [--producers K] [--rate R] [--consumers C] [--partitions P]\n"
	      "             [--faults LIST] [--timeouts test|default] [--base-port P]\n"
	      "             [--recover-ms MS] [--full-disk] [--keep] [--acks all|1]\n"
	      "       chaos --sluiced PATH --failover RUNS [--timeouts test|default] ...\n"
	      "faults (default: all but disk-full): kill-node, kill-leader, kill-controller,\n"
	      "  kill-coordinator, pause-leader, torn-write, isolate, split, one-way, disk-full\n"
	      "  (disk-full needs --full-disk: root, a tmpfs per node)\n",
	      f);
}

static int parse_int(const char *s, int lo, int hi, const char *name)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "chaos: %s must be %d..%d, not '%s'\n", name, lo, hi, s);
		usage(stderr);
		exit(2);
	}
	return (int)v;
}

static void parse_faults(const char *list)
{
	memset(opt.enabled, 0, sizeof(opt.enabled));
	char *copy = strdup(list), *save;
	for (char *w = strtok_r(copy, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
		int f = 0;
		while (f < F_COUNT && strcmp(fault_names[f], w) != 0)
			f++;
		if (f == F_COUNT) {
			fprintf(stderr, "chaos: unknown fault '%s'\n", w);
			usage(stderr);
			exit(2);
		}
		opt.enabled[f] = true;
	}
	free(copy);
}

static void mount_tmpfs(struct node *n)
{
	if (mount("tmpfs", n->dir, "tmpfs", 0, "size=2g,mode=0700") != 0)
		die("--full-disk: cannot mount a tmpfs on %s (%s): run as root, or leave "
		    "disk-full out", n->dir, strerror(errno));
	n->mounted = true;
}

static bool keep_mounted_data; /* a failed run: copy each tmpfs out first */

static void cleanup_mounts(void)
{
	for (int i = 0; i < nn; i++) {
		if (!nodes[i].mounted)
			continue;
		if (keep_mounted_data) {
			char cmd[1200];
			snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s.saved'", nodes[i].dir, nodes[i].dir);
			if (system(cmd) != 0)
				fprintf(stderr, "chaos: could not save %s\n", nodes[i].dir);
		}
		if (umount2(nodes[i].dir, MNT_DETACH) == 0)
			nodes[i].mounted = false;
	}
}

static void setup_cluster(void)
{
	int need = nn * 4;
	int ports[4 * MAX_NODES];
	if (opt.base_port > 0) {
		for (int k = 0; k < need; k++)
			ports[k] = opt.base_port + k;
	} else if (tl_free_ports(ports, need) != 0) {
		die("no free ports");
	}
	int k = 0;
	for (int i = 0; i < nn; i++) {
		struct node *n = &nodes[i];
		n->id = i + 1;
		n->cport = ports[k++];
		n->pport = ports[k++];
		n->hport = ports[k++];
		snprintf(n->dir, sizeof(n->dir), "%s/n%d", opt.dir, n->id);
		snprintf(n->log, sizeof(n->log), "%s/n%d.log", opt.dir, n->id);
		if (mkdir(n->dir, 0700) != 0 && errno != EEXIST)
			die("mkdir %s: %s", n->dir, strerror(errno));
		if (opt.full_disk)
			mount_tmpfs(n);
		snprintf(bootstrap + strlen(bootstrap), sizeof(bootstrap) - strlen(bootstrap),
			 "%s127.0.0.1:%d", i ? "," : "", n->cport);
	}
	/* The seed list: node j at the proxy's listener for j. */
	for (int j = 0; j < nn; j++) {
		px.port[j] = ports[k++];
		snprintf(seeds + strlen(seeds), sizeof(seeds) - strlen(seeds), "%s%d@127.0.0.1:%d",
			 j ? "," : "", nodes[j].id, px.port[j]);
	}
	proxy_start();
	for (int i = 0; i < nn; i++)
		node_start(i);
	for (int i = 0; i < nn; i++)
		if (!tl_wait_until(node_ready, &nodes[i], 60000, 50))
			die("node %d not ready within 60 s: see %s", nodes[i].id, nodes[i].log);
	const char *const kv[] = { "request.timeout.ms", "5000", "socket.timeout.ms", "2000",
				   "client.id", "chaos-admin", NULL };
	admin_cl = client_new(kv);
	admin = sluice_admin_new(admin_cl);
	sluice_report_t *r = NULL;
	sluice_err_t err = SLUICE_ERR_TIMED_OUT;
	for (int64_t end = tl_now_ms() + 60000; err != SLUICE_OK && tl_now_ms() < end;) {
		err = sluice_topic_create(admin, TOPIC, opt.partitions, 3, NULL, NULL, NULL, &r);
		if (err == SLUICE_ERR_TOPIC_EXISTS)
			err = SLUICE_OK;
		if (err != SLUICE_OK)
			say("create %s: %s: %s (again)", TOPIC, sluice_err_name(err),
			    r != NULL ? sluice_report_errmsg(r) : "");
		sluice_report_destroy(r);
		r = NULL;
	}
	if (err != SLUICE_OK)
		die("cannot create topic %s", TOPIC);
	if (!tl_wait_until(healthy, NULL, 60000, 100))
		die("the new cluster is not whole: %s", health_why);
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "sluiced", required_argument, NULL, 'S' },
		{ "dir", required_argument, NULL, 'd' },
		{ "nodes", required_argument, NULL, 'n' },
		{ "seconds", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'e' },
		{ "producers", required_argument, NULL, 'p' },
		{ "rate", required_argument, NULL, 'r' },
		{ "consumers", required_argument, NULL, 'c' },
		{ "partitions", required_argument, NULL, 'P' },
		{ "faults", required_argument, NULL, 'f' },
		{ "timeouts", required_argument, NULL, 't' },
		{ "base-port", required_argument, NULL, 'b' },
		{ "recover-ms", required_argument, NULL, 'R' },
		{ "full-disk", no_argument, NULL, 'D' },
		{ "keep", no_argument, NULL, 'k' },
		{ "failover", required_argument, NULL, 'F' },
		{ "acks", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool seed_set = false;
	const char *faults = NULL;
	for (int c; (c = getopt_long(argc, argv, "", longs, NULL)) != -1;) {
		switch (c) {
		case 'S': opt.sluiced = optarg; break;
		case 'd': snprintf(opt.dir, sizeof(opt.dir), "%s", optarg); break;
		case 'n': opt.nodes = parse_int(optarg, 3, MAX_NODES, "--nodes"); break;
		case 's': opt.seconds = parse_int(optarg, 5, 86400, "--seconds"); break;
		case 'e': {
			char *end;
			opt.seed = strtoull(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0') {
				fprintf(stderr, "chaos: --seed must be a number\n");
				return 2;
			}
			seed_set = true;
			break;
		}
		case 'p': opt.producers = parse_int(optarg, 1, MAX_PRODUCERS, "--producers"); break;
		case 'r': opt.rate = parse_int(optarg, 1, 100000, "--rate"); break;
		case 'c': opt.consumers = parse_int(optarg, 1, MAX_CONSUMERS, "--consumers"); break;
		case 'P': opt.partitions = parse_int(optarg, 1, MAX_PARTITIONS, "--partitions"); break;
		case 'f': faults = optarg; break;
		case 't':
			if (strcmp(optarg, "test") != 0 && strcmp(optarg, "default") != 0) {
				fprintf(stderr, "chaos: --timeouts is test or default\n");
				return 2;
			}
			opt.test_timeouts = strcmp(optarg, "test") == 0;
			break;
		case 'b': opt.base_port = parse_int(optarg, 1024, 65000, "--base-port"); break;
		case 'R': opt.recover_ms = parse_int(optarg, 1000, 600000, "--recover-ms"); break;
		case 'D': opt.full_disk = true; break;
		case 'k': opt.keep = true; break;
		case 'F': opt.failover_runs = parse_int(optarg, 1, 1000, "--failover"); break;
		case 'A':
			if (strcmp(optarg, "all") != 0 && strcmp(optarg, "1") != 0) {
				fprintf(stderr, "chaos: --acks is all or 1\n");
				return 2;
			}
			opt.acks1 = strcmp(optarg, "1") == 0;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (opt.sluiced == NULL || optind != argc) {
		fprintf(stderr, "chaos: %s\n", opt.sluiced == NULL ? "--sluiced is required"
								    : "unexpected argument");
		usage(stderr);
		return 2;
	}
	if (faults != NULL) {
		parse_faults(faults);
	} else {
		for (int f = 0; f < F_COUNT; f++)
			opt.enabled[f] = f != F_DISK_FULL && (f != F_SPLIT || opt.nodes > 3);
	}
	opt.enabled[F_DISK_FULL] = opt.enabled[F_DISK_FULL] || opt.full_disk;
	if (opt.enabled[F_DISK_FULL] && !opt.full_disk) {
		fprintf(stderr, "chaos: disk-full needs --full-disk (root: a tmpfs per node)\n");
		return 2;
	}
	if (!seed_set) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		opt.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
		opt.seed %= 1000000000ull;
	}
	bool made_dir = false;
	if (opt.dir[0] == '\0') {
		const char *tmp = getenv("TMPDIR");
		snprintf(opt.dir, sizeof(opt.dir), "%s/chaos-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (mkdtemp(opt.dir) == NULL)
			die("mkdtemp %s: %s", opt.dir, strerror(errno));
		made_dir = true;
	} else if (mkdir(opt.dir, 0700) != 0 && errno != EEXIST) {
		die("mkdir %s: %s", opt.dir, strerror(errno));
	}
	signal(SIGPIPE, SIG_IGN);
	atexit(cleanup_mounts);
	nn = opt.nodes;
	t_start = tl_now_ms();
	if (opt.failover_runs > 0) {
		printf("chaos failover: %d nodes, %d runs, dir %s\n", nn, opt.failover_runs, opt.dir);
		setup_cluster();
		int rc = failover();
		for (int i = 0; i < nn; i++)
			node_stop(i, SIGTERM);
		proxy_stop();
		return rc;
	}
	char list[256] = "";
	for (int f = 0; f < F_COUNT; f++)
		if (opt.enabled[f])
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 list[0] ? "," : "", fault_names[f]);
	printf("chaos: seed %" PRIu64 " (replay: --seed %" PRIu64 "), %d nodes, %d s of faults "
	       "(%s), %d producers x %d records/s over %d partitions (%s), %d group members, "
	       "%s timeouts, dir %s\n",
	       opt.seed, opt.seed, nn, opt.seconds, list, opt.producers, opt.rate, opt.partitions,
	       opt.acks1 ? "acks=1, not idempotent" : "acks=all, idempotent", opt.consumers,
	       opt.test_timeouts ? "test" : "default", opt.dir);
	fflush(stdout);
	setup_cluster();
	say("cluster whole: %d nodes, %s with %d partitions", nn, TOPIC, opt.partitions);
	uint64_t cap = (uint64_t)opt.rate * (uint64_t)(opt.seconds + 600);
	producers_start(opt.producers, cap);
	consumers_start();
	if (pthread_create(&cw.th, NULL, commits_main, NULL) != 0)
		die("watch thread");
	/* Warm up, then faults until the time is up. */
	hold(3000);
	nemesis(tl_now_ms() + (int64_t)opt.seconds * 1000);
	say("faults over; producers stop");
	link_set(-1, -1, false);
	restart_down();
	if (!tl_wait_until(healthy, NULL, opt.recover_ms, 100)) {
		recover_late++;
		say("CHECK not whole %d ms after the last fault: %s", opt.recover_ms, health_why);
	}
	producers_finish(opt.producers);
	say("every record reported; the group reads on");
	/* The group must read every acknowledged record (its members stay). */
	int64_t deadline = tl_now_ms() + 120000;
	for (bool all = false; !all && tl_now_ms() < deadline;) {
		all = true;
		for (int i = 0; i < opt.producers && all; i++)
			for (uint64_t s = 0; s < prods[i].sent && all; s++)
				all = atomic_load(&prods[i].state[s]) != R_ACKED || prods[i].seen[s] > 0;
		if (!all) {
			struct timespec ts = { 0, 100 * 1000 * 1000 }; /* re-check interval */
			nanosleep(&ts, NULL);
		}
	}
	consumers_stop();
	atomic_store(&cw.stop, true);
	pthread_join(cw.th, NULL);
	say("checking");
	bool ok = check_all();
	keep_mounted_data = !ok;
	producers_close(opt.producers);
	sluice_admin_destroy(admin);
	sluice_client_destroy(admin_cl);
	proxy_stop();
	cleanup_mounts();
	if (ok && made_dir && !opt.keep) {
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", opt.dir);
		if (system(cmd) != 0)
			fprintf(stderr, "chaos: could not remove %s\n", opt.dir);
	} else if (!ok) {
		printf("chaos: logs and data kept in %s\n", opt.dir);
	}
	return ok ? 0 : 1;
}
