/* Clusters of real rnode processes on 127.0.0.1 (README.md): elections
 * over many groups, crash and restart, snapshot catch-up through the bulk
 * copy (also when it is cut midway), strangers on the peer port, silent
 * connections and the hello timeout, the hand-off on SIGTERM and campaigns
 * after a hand-off, a peer that stops reading (SIGSTOP), and a replica
 * that moves to a new group started on the old group's data.
 *
 * Each test runs in its own Criterion worker with its own temp directory
 * and its own free ports; every process it starts is killed by PID when the
 * test ends, passed or not (tests/lib/procs.h). A failed check prints the
 * tail of every node's stderr log before it fails (and, with
 * CLUSTER_LOGS=DIR in the environment, copies the whole logs into DIR).
 * RNODE (environment) overrides the path of the rnode binary;
 * CLUSTER_TRACE=1 prints every command and its answer. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pframe.h"
#include "procs.h"
#include "testlib.h"

#ifndef RNODE_PATH
#define RNODE_PATH "rnode"
#endif

#define HB_MS 50
#define EL_MS 250
#define MAX_NODES 4
#define CMD_MS 10000     /* one command's answer */
#define START_MS 60000   /* `ready` after a start (100 groups, ASan) */
#define ELECT_MS 30000   /* every group led */
#define CATCHUP_MS 40000 /* a restarted node catches up */
#define EXIT_MS 20000    /* exit after quit or SIGTERM */
#define LINE 4096
/* A batch proposed as 4096 bytes is at most this large (rnode adds 100-byte
 * records until the batch reaches 4096 bytes). */
#define CUT_BATCH_BYTES 5120

struct node {
	uint64_t id;
	int port;
	char dir[512];
	char log[600];
	char extra[12][64]; /* extra flags for this node (a later flag wins) */
	int nextra;
	struct tl_proc proc;
	bool up;
	bool stopped; /* SIGSTOPped: SIGCONT before anything else */
};

static struct node nodes[MAX_NODES + 1]; /* 1-based */
static int n_nodes, n_groups;
static char cluster_hex[33];
static uint8_t cluster_id[16];

/* ---- Failure reports ------------------------------------------------ */

/* Copies src to DIR/<test pid>-<name of src> (CLUSTER_LOGS=DIR). */
static void keep_log(const char *src)
{
	const char *dir = getenv("CLUSTER_LOGS");
	if (dir == NULL || *dir == '\0')
		return;
	const char *base = strrchr(src, '/');
	char dst[1024];
	snprintf(dst, sizeof(dst), "%s/%d-%s", dir, (int)getpid(), base != NULL ? base + 1 : src);
	FILE *in = fopen(src, "r"), *out = in != NULL ? fopen(dst, "w") : NULL;
	char buf[8192];
	size_t n;
	while (out != NULL && (n = fread(buf, 1, sizeof(buf), in)) > 0)
		fwrite(buf, 1, n, out);
	if (out != NULL) {
		fclose(out);
		fprintf(stderr, "log kept: %s\n", dst);
	}
	if (in != NULL)
		fclose(in);
}

static void dump_logs(void)
{
	for (int i = 1; i <= n_nodes; i++) {
		keep_log(nodes[i].log);
		FILE *f = fopen(nodes[i].log, "r");
		if (f == NULL)
			continue;
		/* The last 40 lines. */
		static char lines[40][512];
		int n = 0;
		while (fgets(lines[n % 40], sizeof(lines[0]), f) != NULL)
			n++;
		fclose(f);
		fprintf(stderr, "---- node %d (%s), last lines ----\n", i, nodes[i].log);
		for (int k = n > 40 ? n - 40 : 0; k < n; k++)
			fputs(lines[k % 40], stderr);
	}
}

#define must(cond, ...)                                 \
	do {                                            \
		if (!(cond)) {                          \
			dump_logs();                    \
			cr_assert_fail(__VA_ARGS__);    \
		}                                       \
	} while (0)

/* ---- Nodes ---------------------------------------------------------- */

static const char *rnode_path(void)
{
	const char *p = getenv("RNODE");
	return p != NULL && *p != '\0' ? p : RNODE_PATH;
}

static void cluster_init(int n, int groups)
{
	cr_assert(n >= 1 && n <= MAX_NODES);
	n_nodes = n;
	n_groups = groups;
	int ports[MAX_NODES];
	cr_assert_eq(tl_free_ports(ports, n), 0, "no free ports");
	cr_assert_eq(getrandom(cluster_id, 16, 0), 16);
	for (int i = 0; i < 16; i++)
		snprintf(cluster_hex + 2 * i, 3, "%02x", cluster_id[i]);
	for (int i = 1; i <= n; i++) {
		struct node *nd = &nodes[i];
		memset(nd, 0, sizeof(*nd));
		nd->id = (uint64_t)i;
		nd->port = ports[i - 1];
		snprintf(nd->dir, sizeof(nd->dir), "%s/n%d", tl_tmpdir(), i);
		snprintf(nd->log, sizeof(nd->log), "%s/n%d.log", tl_tmpdir(), i);
		nd->proc.pid = 0;
		nd->proc.in_fd = nd->proc.out_fd = -1;
	}
}

static void node_extra(struct node *nd, const char *flag, const char *value)
{
	cr_assert(nd->nextra + 2 <= 12);
	snprintf(nd->extra[nd->nextra++], sizeof(nd->extra[0]), "%s", flag);
	snprintf(nd->extra[nd->nextra++], sizeof(nd->extra[0]), "%s", value);
}

static void node_flag(struct node *nd, const char *flag)
{
	cr_assert(nd->nextra + 1 <= 12);
	snprintf(nd->extra[nd->nextra++], sizeof(nd->extra[0]), "%s", flag);
}

static void node_spawn(struct node *nd)
{
	char a_id[24], a_port[16], a_groups[16], a_hb[16], a_el[16];
	char a_peers[MAX_NODES][80];
	char *argv[56];
	int k = 0;
	snprintf(a_id, sizeof(a_id), "%llu", (unsigned long long)nd->id);
	snprintf(a_port, sizeof(a_port), "%d", nd->port);
	snprintf(a_groups, sizeof(a_groups), "%d", n_groups);
	snprintf(a_hb, sizeof(a_hb), "%d", HB_MS);
	snprintf(a_el, sizeof(a_el), "%d", EL_MS);
	argv[k++] = (char *)rnode_path();
	argv[k++] = "--id";
	argv[k++] = a_id;
	argv[k++] = "--dir";
	argv[k++] = nd->dir;
	argv[k++] = "--port";
	argv[k++] = a_port;
	argv[k++] = "--cluster";
	argv[k++] = cluster_hex;
	argv[k++] = "--groups";
	argv[k++] = a_groups;
	argv[k++] = "--heartbeat-ms";
	argv[k++] = a_hb;
	argv[k++] = "--election-ms";
	argv[k++] = a_el;
	int np = 0;
	for (int i = 1; i <= n_nodes; i++) {
		if (&nodes[i] == nd)
			continue;
		snprintf(a_peers[np], sizeof(a_peers[0]), "%d=127.0.0.1:%d", i, nodes[i].port);
		argv[k++] = "--peer";
		argv[k++] = a_peers[np++];
	}
	for (int i = 0; i < nd->nextra; i++)
		argv[k++] = nd->extra[i];
	argv[k] = NULL;
	tl_proc_close(&nd->proc); /* a previous run's pipes */
	FILE *lf = fopen(nd->log, "a");
	if (lf != NULL) {
		fprintf(lf, "==== test: starting node %llu on port %d\n",
			(unsigned long long)nd->id, nd->port);
		fclose(lf);
	}
	must(tl_proc_spawn(&nd->proc, argv, nd->log) == 0, "spawn %s: %s", argv[0],
	     strerror(errno));
}

static void node_wait_ready(struct node *nd)
{
	char line[LINE];
	int rv = tl_proc_expect(&nd->proc, "ready ", line, sizeof(line), START_MS);
	must(rv == 1, "node %llu: no 'ready' line within %d ms (rv %d)",
	     (unsigned long long)nd->id, START_MS, rv);
	int64_t port;
	must(tl_line_int(line, "port", &port) && port == nd->port,
	     "node %llu: ready on the wrong port: '%s'", (unsigned long long)nd->id, line);
	nd->up = true;
}

static void node_start(struct node *nd)
{
	node_spawn(nd);
	node_wait_ready(nd);
}

/* Starts every node at once, so that none has a head start in the first
 * elections and leadership spreads over the nodes. */
static void cluster_start(void)
{
	for (int i = 1; i <= n_nodes; i++)
		node_spawn(&nodes[i]);
	for (int i = 1; i <= n_nodes; i++)
		node_wait_ready(&nodes[i]);
}

/* Sends a command to nd and returns its answer in line. */
static void cmd(struct node *nd, char *line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void cmd(struct node *nd, char *line, const char *fmt, ...)
{
	char c[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c, sizeof(c), fmt, ap);
	va_end(ap);
	int rv = tl_proc_command(&nd->proc, line, LINE, CMD_MS, "%s", c);
	if (getenv("CLUSTER_TRACE") != NULL)
		fprintf(stderr, "n%llu < %s\nn%llu > %s\n", (unsigned long long)nd->id, c,
			(unsigned long long)nd->id, rv == 1 ? line : "(no answer)");
	must(rv == 1, "node %llu: no answer to '%s' within %d ms (rv %d)",
	     (unsigned long long)nd->id, c, CMD_MS, rv);
}

static int64_t field(const char *line, const char *key)
{
	int64_t v;
	must(tl_line_int(line, key, &v), "no %s= in '%s'", key, line);
	return v;
}

static void node_kill(struct node *nd)
{
	cr_assert_eq(tl_proc_kill(&nd->proc, SIGKILL), 0);
	must(tl_proc_wait(&nd->proc, EXIT_MS) == 1, "node %llu did not die on SIGKILL",
	     (unsigned long long)nd->id);
	nd->up = false;
}

/* Quits every running node and checks that each exits with status 0 (the
 * ASan build: LeakSanitizer makes a leaking node exit non-zero). */
static void cluster_stop(void)
{
	char line[LINE];
	for (int i = 1; i <= n_nodes; i++)
		if (nodes[i].up)
			tl_proc_send(&nodes[i].proc, "quit");
	for (int i = 1; i <= n_nodes; i++) {
		struct node *nd = &nodes[i];
		if (!nd->up)
			continue;
		int rv = tl_proc_expect(&nd->proc, "bye", line, sizeof(line), EXIT_MS);
		must(rv == 1, "node %d: no 'bye' after quit (rv %d)", i, rv);
		must(tl_proc_wait(&nd->proc, EXIT_MS) == 1, "node %d did not exit after quit", i);
		nd->up = false;
		must(WIFEXITED(nd->proc.status) && WEXITSTATUS(nd->proc.status) == 0,
		     "node %d exited with status 0x%x after quit", i, nd->proc.status);
	}
}

static void setup(void)
{
	n_nodes = 0;
}

static void teardown(void)
{
	/* A stopped process ignores SIGTERM until it continues (SIGKILL
	 * works anyway): wake it first, then kill every node by PID. */
	for (int i = 1; i <= n_nodes; i++)
		if (nodes[i].stopped)
			tl_proc_kill(&nodes[i].proc, SIGCONT);
	for (int i = 1; i <= n_nodes; i++)
		tl_proc_close(&nodes[i].proc);
	tl_proc_kill_all();
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 240);

/* ---- Cluster-wide conditions ---------------------------------------- */

struct status {
	int64_t groups, leaders, ready, known, stopped;
};

static struct status node_status(struct node *nd)
{
	char line[LINE];
	cmd(nd, line, "status");
	struct status st = {
		field(line, "groups"), field(line, "leaders"), field(line, "ready"),
		field(line, "known_leader"), field(line, "stopped"),
	};
	return st;
}

/* Every group has exactly one ready leader among the running nodes. */
static bool all_led(void *arg)
{
	(void)arg;
	int64_t leaders = 0, ready = 0;
	for (int i = 1; i <= n_nodes; i++) {
		if (!nodes[i].up)
			continue;
		struct status st = node_status(&nodes[i]);
		leaders += st.leaders;
		ready += st.ready;
	}
	return leaders == n_groups && ready == n_groups;
}

static void wait_all_led(void)
{
	bool ok = tl_wait_until(all_led, NULL, ELECT_MS, 50);
	char why[512] = "";
	size_t l = 0;
	for (int i = 1; i <= n_nodes && !ok; i++) {
		if (!nodes[i].up)
			continue;
		struct status st = node_status(&nodes[i]);
		l += (size_t)snprintf(why + l, sizeof(why) - l, " n%d: leaders=%lld ready=%lld;", i,
				      (long long)st.leaders, (long long)st.ready);
	}
	must(ok, "within %d ms not every one of %d groups had one ready leader:%s", ELECT_MS,
	     n_groups, why);
}

struct conns {
	int64_t out, in;
};

static struct conns node_conns(struct node *nd, char *line)
{
	cmd(nd, line, "stats");
	struct conns c = { field(line, "peers_connected"), field(line, "incoming") };
	return c;
}

/* Every running node has exactly one outgoing and one incoming connection
 * per other running node. */
static bool fully_connected(void *arg)
{
	(void)arg;
	char line[LINE];
	int up = 0;
	for (int i = 1; i <= n_nodes; i++)
		up += nodes[i].up;
	for (int i = 1; i <= n_nodes; i++) {
		if (!nodes[i].up)
			continue;
		struct conns c = node_conns(&nodes[i], line);
		if (c.out != up - 1 || c.in != up - 1)
			return false;
	}
	return true;
}

static void wait_connected(void)
{
	bool ok = tl_wait_until(fully_connected, NULL, ELECT_MS, 50);
	char line[LINE], why[1024] = "";
	size_t l = 0;
	for (int i = 1; i <= n_nodes && !ok; i++) {
		if (!nodes[i].up)
			continue;
		struct conns c = node_conns(&nodes[i], line);
		l += (size_t)snprintf(why + l, sizeof(why) - l,
				      " n%d: peers_connected=%lld incoming=%lld;", i,
				      (long long)c.out, (long long)c.in);
	}
	must(ok, "within %d ms the nodes did not have one connection per ordered pair:%s",
	     ELECT_MS, why);
}

struct gstate {
	char role[16];
	int64_t term, leader, commit, durable, last, next_offset;
};

static void parse_gstate(const char *line, struct gstate *out)
{
	struct gstate s;
	must(tl_line_str(line, "role", s.role, sizeof(s.role)), "no role in '%s'", line);
	s.term = field(line, "term");
	s.leader = field(line, "leader");
	s.commit = field(line, "commit");
	s.durable = field(line, "durable");
	s.last = field(line, "last");
	s.next_offset = field(line, "next_offset");
	*out = s;
}

/* g's state on nd; false when nd has no group g (`group G err not-found`). */
static bool group_state_opt(struct node *nd, int g, struct gstate *s)
{
	char line[LINE];
	cmd(nd, line, "group %d", g);
	if (strstr(line, " err not-found") != NULL)
		return false;
	parse_gstate(line, s);
	return true;
}

static struct gstate group_state(struct node *nd, int g)
{
	struct gstate s;
	must(group_state_opt(nd, g, &s), "node %llu has no group %d",
	     (unsigned long long)nd->id, g);
	return s;
}

/* The running node that leads g (and says so itself), or NULL. Nodes that
 * do not have g are skipped. */
static struct node *leader_of(int g)
{
	for (int i = 1; i <= n_nodes; i++) {
		struct gstate s;
		if (!nodes[i].up || !group_state_opt(&nodes[i], g, &s))
			continue;
		if (strcmp(s.role, "leader") == 0)
			return &nodes[i];
	}
	return NULL;
}

static void propose(int g, int count, int bytes)
{
	struct node *ld = NULL;
	char line[LINE];
	/* The leader may still be settling its barrier: retry not-ready. */
	int64_t deadline = tl_now_ms() + ELECT_MS;
	for (;;) {
		ld = leader_of(g);
		must(ld != NULL || tl_now_ms() < deadline, "group %d has no leader", g);
		if (ld != NULL) {
			int rv = tl_proc_command(&ld->proc, line, sizeof(line), 60000,
						 "propose %d %d %d", g, count, bytes);
			must(rv == 1, "node %llu: no answer to propose on group %d",
			     (unsigned long long)ld->id, g);
			if (strstr(line, " ok ") != NULL)
				break;
			must(tl_now_ms() < deadline, "propose on group %d: '%s'", g, line);
		}
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL); /* between attempts */
	}
	must(field(line, "committed") == count, "propose on group %d: '%s'", g, line);
}

/* Moves the leadership of g to nd (rnode's `transfer`), if nd does not
 * lead it already. */
static void move_leader(int g, struct node *nd)
{
	char line[LINE];
	struct node *ld = leader_of(g);
	must(ld != NULL, "group %d has no leader", g);
	if (ld == nd)
		return;
	cmd(ld, line, "transfer %d %llu", g, (unsigned long long)nd->id);
	must(strncmp(line, "transfer ", 9) == 0 && strstr(line, " ok") != NULL,
	     "node %llu: transfer of group %d to node %llu: '%s'", (unsigned long long)ld->id, g,
	     (unsigned long long)nd->id, line);
}

struct caught_up {
	int g;
	struct node *nd;     /* the follower; NULL: every running follower */
	int64_t want;        /* the leader's last index */
	char seen[256];
};

/* The follower(s) of a group have committed and made durable want (every
 * running node that has the group, when cu->nd is NULL). */
static bool group_caught_up(void *arg)
{
	struct caught_up *cu = arg;
	for (int i = 1; i <= n_nodes; i++) {
		struct node *nd = &nodes[i];
		if (!nd->up || (cu->nd != NULL && cu->nd != nd))
			continue;
		struct gstate s;
		if (!group_state_opt(nd, cu->g, &s)) {
			if (cu->nd == NULL)
				continue;
			snprintf(cu->seen, sizeof(cu->seen), "n%d: no group %d", i, cu->g);
			return false;
		}
		snprintf(cu->seen, sizeof(cu->seen), "n%d: role=%s commit=%lld durable=%lld last=%lld",
			 i, s.role, (long long)s.commit, (long long)s.durable, (long long)s.last);
		if (s.commit < cu->want || s.durable < cu->want)
			return false;
	}
	return true;
}

static void wait_caught_up(int g, struct node *nd, int timeout_ms)
{
	struct node *ld = leader_of(g);
	must(ld != NULL, "group %d has no leader", g);
	struct gstate ls = group_state(ld, g);
	must(ls.commit == ls.last, "group %d: the leader's commit %lld is not its last %lld", g,
	     (long long)ls.commit, (long long)ls.last);
	struct caught_up cu = { .g = g, .nd = nd, .want = ls.last };
	bool ok = tl_wait_until(group_caught_up, &cu, timeout_ms, 50);
	must(ok, "group %d: within %d ms not caught up to the leader's last %lld (%s)", g,
	     timeout_ms, (long long)ls.last, cu.seen);
}

struct digest {
	char crc[16];
	int64_t next;
};

static struct digest node_digest(struct node *nd, int g, int64_t end)
{
	char line[LINE];
	cmd(nd, line, "digest %d %lld", g, (long long)end);
	struct digest d;
	must(tl_line_str(line, "crc", d.crc, sizeof(d.crc)), "bad digest answer '%s'", line);
	d.next = field(line, "next");
	return d;
}

static int64_t stat_of(struct node *nd, const char *key)
{
	char line[LINE];
	cmd(nd, line, "stats");
	return field(line, key);
}

/* ---- a. elections and replication over 100 groups -------------------- */

Test(cluster, hundred_groups_elect_and_replicate)
{
	cluster_init(3, 100);
	cluster_start();
	wait_all_led();
	for (int i = 1; i <= 3; i++) {
		struct status st = node_status(&nodes[i]);
		must(st.groups == 100, "node %d runs %lld groups", i, (long long)st.groups);
	}
	wait_connected();
	static const int groups[] = { 1, 2, 37, 64, 100 };
	for (size_t k = 0; k < sizeof(groups) / sizeof(groups[0]); k++)
		propose(groups[k], 20, 16 << 10);
	for (size_t k = 0; k < sizeof(groups) / sizeof(groups[0]); k++) {
		wait_caught_up(groups[k], NULL, CATCHUP_MS);
		/* 20 batches and at least the election's barrier. */
		struct gstate s = group_state(leader_of(groups[k]), groups[k]);
		must(s.last >= 22, "group %d: last %lld after 20 proposals", groups[k],
		     (long long)s.last);
	}
	/* Still exactly one connection per ordered pair. */
	must(fully_connected(NULL), "extra or missing connections after the proposals");
	cluster_stop();
}

/* ---- b. crash and restart ------------------------------------------- */

static struct node *busiest(void)
{
	struct node *best = NULL;
	int64_t most = -1;
	for (int i = 1; i <= n_nodes; i++) {
		if (!nodes[i].up)
			continue;
		struct status st = node_status(&nodes[i]);
		if (st.leaders > most) {
			most = st.leaders;
			best = &nodes[i];
		}
	}
	return best;
}

struct reconnect {
	struct node *victim;
	int64_t need;         /* survivors that lead a group */
	struct conns seen;
	bool duplicate;
};

/* The restarted node has a connection to and from every survivor that
 * leads a group (those talk to it; the others may have no reason to), and
 * no node has more than one connection per ordered pair. */
static bool reconnected(void *arg)
{
	struct reconnect *rc = arg;
	char line[LINE];
	rc->duplicate = false;
	for (int i = 1; i <= n_nodes; i++) {
		struct conns c = node_conns(&nodes[i], line);
		if (c.out > n_nodes - 1 || c.in > n_nodes - 1)
			rc->duplicate = true;
		if (&nodes[i] == rc->victim)
			rc->seen = c;
	}
	return !rc->duplicate && rc->seen.out >= rc->need && rc->seen.in >= rc->need;
}

Test(cluster, sigkill_and_restart)
{
	cluster_init(3, 10);
	cluster_start();
	wait_all_led();
	struct node *victim = busiest();
	must(node_status(victim).leaders > 0, "no node leads anything");
	node_kill(victim);
	wait_all_led(); /* the two others, every group */
	for (int g = 1; g <= 3; g++)
		propose(g, 10, 4096);
	int64_t connects_before = 0;
	struct reconnect rc = { .victim = victim };
	for (int i = 1; i <= 3; i++) {
		if (!nodes[i].up)
			continue;
		connects_before += stat_of(&nodes[i], "connects");
		rc.need += node_status(&nodes[i]).leaders > 0;
	}
	node_start(victim);
	for (int g = 1; g <= 3; g++)
		wait_caught_up(g, victim, CATCHUP_MS);
	bool ok = tl_wait_until(reconnected, &rc, CATCHUP_MS, 50);
	must(ok, "the restarted node has %lld outgoing and %lld incoming connections, wants %lld "
		 "of each (duplicates: %d)",
	     (long long)rc.seen.out, (long long)rc.seen.in, (long long)rc.need, rc.duplicate);
	int64_t connects_after = 0;
	for (int i = 1; i <= 3; i++)
		if (&nodes[i] != victim)
			connects_after += stat_of(&nodes[i], "connects");
	must(connects_after >= connects_before + rc.need,
	     "the survivors did not reconnect to the restarted node (connects %lld -> %lld)",
	     (long long)connects_before, (long long)connects_after);
	wait_all_led();
	cluster_stop();
}

/* ---- c, d. snapshot catch-up through the bulk copy ------------------ */

struct same_digest {
	int g;
	struct node *a, *b;
	int64_t end;
	struct digest da, db;
};

static bool digests_match(void *arg)
{
	struct same_digest *sd = arg;
	sd->da = node_digest(sd->a, sd->g, sd->end);
	sd->db = node_digest(sd->b, sd->g, sd->end);
	return sd->da.next == sd->end && sd->db.next == sd->end &&
	       strcmp(sd->da.crc, sd->db.crc) == 0;
}

/* Kills node 3, proposes enough on group 1 for the leader to snapshot far
 * past node 3's log, restarts node 3 and waits for its log to be the
 * leader's byte for byte. Returns the serving leader. */
static struct node *snapshot_catchup(void)
{
	struct node *c = &nodes[3];
	cluster_start();
	wait_all_led();
	node_kill(c);
	wait_all_led();
	const int g = 1;
	propose(g, 200, 4096);
	struct node *ld = leader_of(g);
	must(ld != NULL && ld != c, "group %d lost its leader", g);
	struct gstate ls = group_state(ld, g);
	node_start(c);
	wait_caught_up(g, c, CATCHUP_MS);
	must(leader_of(g) == ld, "group %d changed leader during the catch-up", g);
	struct same_digest sd = { .g = g, .a = ld, .b = c, .end = ls.next_offset };
	bool ok = tl_wait_until(digests_match, &sd, CATCHUP_MS, 50);
	must(ok, "group %d: digests below %lld differ: leader crc=%s next=%lld, node 3 crc=%s "
		 "next=%lld", g, (long long)sd.end, sd.da.crc, (long long)sd.da.next, sd.db.crc,
	     (long long)sd.db.next);
	must(stat_of(c, "bulk_fetched") > 0, "node 3 caught up without a bulk copy");
	return ld;
}

Test(cluster, snapshot_catchup_through_bulk_copy)
{
	cluster_init(3, 3);
	for (int i = 1; i <= 3; i++) {
		node_extra(&nodes[i], "--snapshot-threshold", "16");
		node_extra(&nodes[i], "--snapshot-trailing", "4");
	}
	struct node *ld = snapshot_catchup();
	int64_t sessions = stat_of(ld, "bulk_sessions");
	int64_t served = stat_of(ld, "bulk_served");
	int64_t fetched = stat_of(&nodes[3], "bulk_fetched");
	must(sessions > 0, "the leader served no bulk session");
	must(served == fetched, "the leader served %lld bytes, node 3 fetched %lld",
	     (long long)served, (long long)fetched);
	cluster_stop();
}

Test(cluster, bulk_copy_cut_midway_resumes)
{
	cluster_init(3, 3);
	for (int i = 1; i <= 3; i++) {
		node_extra(&nodes[i], "--snapshot-threshold", "16");
		node_extra(&nodes[i], "--snapshot-trailing", "4");
		if (i != 3)
			node_extra(&nodes[i], "--bulk-cut-after", "100000");
	}
	struct node *ld = snapshot_catchup();
	int64_t sessions = stat_of(ld, "bulk_sessions");
	int64_t served = stat_of(ld, "bulk_served");
	int64_t fetched = stat_of(&nodes[3], "bulk_fetched");
	int64_t retries = stat_of(&nodes[3], "bulk_retries");
	/* The first session was cut inside its first data frame (about
	 * 800 KiB of ~4 KiB batches, cut after 100000 bytes): a second one
	 * completed the copy. */
	must(sessions >= 2, "the leader served %lld bulk sessions: no resume after the cut",
	     (long long)sessions);
	/* Only the batch the cut fell into was served and not kept... */
	must(served > fetched, "the leader served %lld bytes and node 3 kept %lld: nothing was cut",
	     (long long)served, (long long)fetched);
	must(served - fetched < CUT_BATCH_BYTES,
	     "the leader served %lld bytes and node 3 kept %lld: %lld bytes lost at the cut, more "
	     "than the one batch it fell into (were the cut frame's whole batches dropped?)",
	     (long long)served, (long long)fetched, (long long)(served - fetched));
	/* ... so the cut session returned the whole batches that arrived
	 * (bulk_fetched grew by them before the resume): the fetch did not
	 * retry with nothing in hand; the next fetch resumed after them. */
	must(retries == 0,
	     "node 3 retried a fetch %lld times: the cut session yielded no whole batch",
	     (long long)retries);
	cluster_stop();
}

/* ---- e. strangers on the peer port ---------------------------------- */

static int raw_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	must(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect to %d: %s", port,
	     strerror(errno));
	return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
	must(send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n, "send: %s", strerror(errno));
}

/* Reads until the peer closes the connection (end of file or reset) or
 * timeout_ms pass. Returns the bytes received before the close, or -1 if
 * the connection stayed open. */
static ssize_t raw_wait_closed(int fd, int timeout_ms)
{
	int64_t deadline = tl_now_ms() + timeout_ms;
	ssize_t got = 0;
	for (;;) {
		int64_t left = deadline - tl_now_ms();
		if (left <= 0)
			return -1;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		uint8_t buf[4096];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return got;
		if (n > 0)
			got += n;
	}
}

/* Reads one whole frame (length field included) within timeout_ms. */
static size_t raw_read_frame(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
	int64_t deadline = tl_now_ms() + timeout_ms;
	size_t have = 0, want = SL_PFRAME_HEADER;
	while (have < want) {
		int64_t left = deadline - tl_now_ms();
		must(left > 0, "no whole frame within %d ms (%zu bytes)", timeout_ms, have);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		ssize_t n = recv(fd, buf + have, want - have, 0);
		must(n > 0, "connection closed after %zu bytes of a frame", have);
		have += (size_t)n;
		if (have == SL_PFRAME_HEADER) {
			uint32_t len = ((uint32_t)buf[0] << 24) | ((uint32_t)buf[1] << 16) |
				       ((uint32_t)buf[2] << 8) | buf[3];
			must(len + SL_PFRAME_HEADER <= cap, "frame of %u bytes", len);
			want = SL_PFRAME_HEADER + len;
		}
	}
	return have;
}

static void send_hello(int fd, const uint8_t cluster[16], uint64_t id, const uint8_t uuid[16])
{
	struct sl_phello h = { .version = SL_PFRAME_VERSION, .node_id = id };
	memcpy(h.cluster_id, cluster, 16);
	memcpy(h.node_uuid, uuid, 16);
	struct sl_pbuf b = { 0 };
	cr_assert_eq(sl_pframe_hello(&b, &h), 0);
	raw_send(fd, b.p, b.len);
	free(b.p);
}

static void read_uuid(struct node *nd, uint8_t uuid[16])
{
	char path[600];
	snprintf(path, sizeof(path), "%s/uuid", nd->dir);
	int fd = open(path, O_RDONLY);
	must(fd >= 0, "%s: %s", path, strerror(errno));
	must(read(fd, uuid, 16) == 16, "%s: not 16 bytes", path);
	close(fd);
}

struct counters {
	int64_t garbage, oversized, rejected;
};

static struct counters counters_of(struct node *nd)
{
	char line[LINE];
	cmd(nd, line, "stats");
	struct counters c = { field(line, "closed_garbage"), field(line, "closed_oversized"),
			      field(line, "rejected_hello") };
	return c;
}

/* Sends bytes on a fresh connection to node 1 and checks that the node
 * closes it without answering, and which counter moved by exactly one. */
static void expect_rejected(const char *what, const void *bytes, size_t n, const uint8_t *hello_cluster,
			    uint64_t hello_id, const uint8_t *hello_uuid, int which)
{
	struct node *n1 = &nodes[1];
	struct counters before = counters_of(n1);
	int fd = raw_connect(n1->port);
	if (hello_cluster != NULL)
		send_hello(fd, hello_cluster, hello_id, hello_uuid);
	else
		raw_send(fd, bytes, n);
	ssize_t got = raw_wait_closed(fd, 5000);
	close(fd);
	must(got >= 0, "%s: the node kept the connection open", what);
	must(got == 0, "%s: the node answered %zd bytes before closing", what, got);
	struct counters after = counters_of(n1);
	int64_t d[3] = { after.garbage - before.garbage, after.oversized - before.oversized,
			 after.rejected - before.rejected };
	static const char *names[3] = { "closed_garbage", "closed_oversized", "rejected_hello" };
	for (int i = 0; i < 3; i++)
		must(d[i] == (i == which ? 1 : 0), "%s: %s moved by %lld (expected %d)", what,
		     names[i], (long long)d[i], i == which ? 1 : 0);
	char line[LINE];
	cmd(n1, line, "status");
	must(field(line, "groups") == n_groups, "after %s: '%s'", what, line);
}

Test(cluster, garbage_oversized_and_strangers_are_disconnected)
{
	enum { GARBAGE, OVERSIZED, REJECTED };
	cluster_init(2, 1);
	cluster_start();
	wait_all_led();
	wait_connected(); /* node 1 knows node 2's uuid from its hello */
	uint8_t uuid1[16], uuid2[16], other[16], wrong_cluster[16];
	read_uuid(&nodes[1], uuid1);
	read_uuid(&nodes[2], uuid2);
	memcpy(other, uuid2, 16);
	other[0] ^= 0x5a;
	memcpy(wrong_cluster, cluster_id, 16);
	wrong_cluster[15] ^= 1;

	/* (1) Garbage: an HTTP request, and a whole frame of random bytes
	 * whose kind is no frame kind. */
	uint8_t junk[64];
	memset(junk, ' ', sizeof(junk));
	memcpy(junk, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	expect_rejected("an HTTP request", junk, sizeof(junk), NULL, 0, NULL, GARBAGE);
	uint64_t seed = 42;
	tl_fill_random(&seed, junk, sizeof(junk));
	junk[0] = junk[1] = junk[2] = 0;
	junk[3] = sizeof(junk) - SL_PFRAME_HEADER;
	junk[4] = 0x9c;
	expect_rejected("64 random bytes", junk, sizeof(junk), NULL, 0, NULL, GARBAGE);
	/* (2) A length field of 0x7fffffff before any hello: not a hello. */
	static const uint8_t huge[8] = { 0x7f, 0xff, 0xff, 0xff, SL_PFRAME_MESSAGE, 0, 0, 0 };
	expect_rejected("a 2 GiB frame before the hello", huge, sizeof(huge), NULL, 0, NULL,
			GARBAGE);
	/* (3) (4) (5) Hellos that must be refused. */
	expect_rejected("a hello with another cluster id", NULL, 0, wrong_cluster, 2, uuid2,
			REJECTED);
	expect_rejected("a hello from node 9, not a peer", NULL, 0, cluster_id, 9, uuid2,
			REJECTED);
	expect_rejected("a hello from node 2 with another uuid", NULL, 0, cluster_id, 2, other,
			REJECTED);

	/* The control: node 2's true hello is answered with node 1's... */
	struct counters before = counters_of(&nodes[1]);
	int fd = raw_connect(nodes[1].port);
	send_hello(fd, cluster_id, 2, uuid2);
	uint8_t frame[256];
	size_t n = raw_read_frame(fd, frame, sizeof(frame), 5000);
	struct sl_phello h;
	must(sl_pframe_kind(frame, n) == SL_PFRAME_HELLO && sl_pframe_decode_hello(frame, n, &h) == 0,
	     "the answer to a true hello is not a hello");
	must(h.node_id == 1 && memcmp(h.node_uuid, uuid1, 16) == 0 &&
		     memcmp(h.cluster_id, cluster_id, 16) == 0,
	     "the answer to a true hello names node %llu", (unsigned long long)h.node_id);
	/* ... and (2) past the hello, a 2 GiB frame closes it as oversized. */
	raw_send(fd, huge, sizeof(huge));
	ssize_t got = raw_wait_closed(fd, 5000);
	close(fd);
	must(got >= 0, "a 2 GiB frame after the hello: the connection stayed open");
	struct counters after = counters_of(&nodes[1]);
	must(after.oversized == before.oversized + 1 && after.garbage == before.garbage &&
		     after.rejected == before.rejected,
	     "a 2 GiB frame after the hello: oversized %lld -> %lld, garbage %lld -> %lld, "
	     "rejected %lld -> %lld",
	     (long long)before.oversized, (long long)after.oversized, (long long)before.garbage,
	     (long long)after.garbage, (long long)before.rejected, (long long)after.rejected);

	/* The cluster still works. */
	propose(1, 5, 4096);
	wait_caught_up(1, NULL, CATCHUP_MS);
	cluster_stop();
}

/* ---- f. SIGTERM hands every group off ------------------------------- */

struct leaders_sum {
	int64_t sum;
};

static bool others_lead_all(void *arg)
{
	struct leaders_sum *ls = arg;
	ls->sum = 0;
	for (int i = 1; i <= n_nodes; i++)
		if (nodes[i].up)
			ls->sum += node_status(&nodes[i]).leaders;
	return ls->sum == n_groups;
}

Test(cluster, sigterm_hands_off_every_group)
{
	cluster_init(3, 30);
	cluster_start();
	wait_all_led();
	struct node *nd = busiest();
	int64_t led = node_status(nd).leaders;
	must(led > 0, "no node leads a group");
	cr_assert_eq(tl_proc_kill(&nd->proc, SIGTERM), 0);
	char line[LINE];
	int rv = tl_proc_expect(&nd->proc, "handoff ", line, sizeof(line), EXIT_MS);
	must(rv == 1, "node %llu: no handoff line after SIGTERM (rv %d)",
	     (unsigned long long)nd->id, rv);
	must(field(line, "moved") == led && field(line, "failed") == 0,
	     "node %llu led %lld groups; after SIGTERM: '%s'", (unsigned long long)nd->id,
	     (long long)led, line);
	rv = tl_proc_expect(&nd->proc, "bye", line, sizeof(line), EXIT_MS);
	must(rv == 1, "no 'bye' after the handoff (rv %d)", rv);
	must(tl_proc_wait(&nd->proc, EXIT_MS) == 1, "node %llu did not exit after SIGTERM",
	     (unsigned long long)nd->id);
	int64_t exited = tl_now_ms();
	nd->up = false;
	must(WIFEXITED(nd->proc.status) && WEXITSTATUS(nd->proc.status) == 0,
	     "status 0x%x after SIGTERM", nd->proc.status);
	/* No election needed: within less than one election timeout, the
	 * others lead everything. */
	struct leaders_sum ls;
	bool ok = tl_wait_until(others_lead_all, &ls, EL_MS * 4 / 5, 10);
	must(ok, "%lld ms after the exit the others lead %lld of %d groups",
	     (long long)(tl_now_ms() - exited), (long long)ls.sum, n_groups);
	wait_all_led();
	cluster_stop();
}

/* ---- g. after a hand-off, a node campaigns again -------------------- */

/* While a hand-off runs, its node skips the ticks of the groups it
 * follows so that it does not take back what it gives away; afterwards it
 * must campaign again, or the groups of a leader that dies later stay
 * leaderless for good (a bug once: the flag was never cleared). Node 3
 * leads groups 5 and 6 (moved there with `transfer`: a hand-off never
 * picks node 3 when the others are as caught up, so it would lead only
 * what it happened to win at the start); nodes 1 and 2 hand everything
 * off in turn; then node 3 dies, and only nodes 1 and 2 can elect. */
Test(cluster, handoff_then_campaigns_again)
{
	char line[LINE];
	cluster_init(3, 6);
	cluster_start();
	wait_all_led();
	/* Groups 1, 2 on node 1; 3, 4 on node 2; 5, 6 on node 3. */
	for (int g = 1; g <= 6; g++)
		move_leader(g, &nodes[(g - 1) / 2 + 1]);
	wait_all_led();
	for (int g = 1; g <= 6; g++)
		must(leader_of(g) == &nodes[(g - 1) / 2 + 1], "group %d is not led by node %d", g,
		     (g - 1) / 2 + 1);

	/* Node 1 hands off its two groups, then node 2 all it leads then
	 * (its own two and whatever node 1 gave it). */
	cmd(&nodes[1], line, "handoff");
	must(field(line, "moved") == 2 && field(line, "failed") == 0,
	     "node 1 led 2 groups; after handoff: '%s'", line);
	wait_all_led();
	int64_t led2 = node_status(&nodes[2]).leaders;
	must(led2 >= 2, "node 2 leads %lld groups after node 1's handoff", (long long)led2);
	cmd(&nodes[2], line, "handoff");
	must(field(line, "moved") == led2 && field(line, "failed") == 0,
	     "node 2 led %lld groups; after handoff: '%s'", (long long)led2, line);
	wait_all_led();
	int64_t led3 = node_status(&nodes[3]).leaders;
	must(led3 >= 2, "node 3 leads %lld groups after the handoffs", (long long)led3);
	must(node_status(&nodes[2]).leaders == 0, "node 2 still leads after its handoff");

	/* Node 3 dies: nodes 1 and 2 must campaign for its groups. */
	node_kill(&nodes[3]);
	int64_t killed = tl_now_ms();
	const int within = 12 * EL_MS; /* libraft waits 1x to 2x EL_MS */
	bool ok = tl_wait_until(all_led, NULL, within, 20);
	int64_t took = tl_now_ms() - killed;
	struct status s1 = node_status(&nodes[1]), s2 = node_status(&nodes[2]);
	must(ok, "%lld ms after node 3 (leader of %lld groups) died, nodes 1 and 2 lead %lld + %lld "
		 "(ready %lld + %lld) of %d groups: a node that handed off does not campaign",
	     (long long)took, (long long)led3, (long long)s1.leaders, (long long)s2.leaders,
	     (long long)s1.ready, (long long)s2.ready, n_groups);
	cr_log_info("handoff_then_campaigns_again: re-elected %lld groups in %lld ms",
		    (long long)led3, (long long)took);
	cluster_stop();
}

/* ---- h. connections that never say hello ---------------------------- */

static bool still_open(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int rv = poll(&pfd, 1, 0);
	return rv == 0; /* no data, no end of file, no error */
}

/* Node 1 alone (node 2 is configured, never started), with a hello
 * timeout of 300 ms instead of 10 s. A connection that sends nothing and
 * one that sends 3 bytes of a frame header are both closed once it
 * passes (not at once: a partial frame is not garbage yet), each counted
 * in closed_garbage; one that said hello stays open. */
Test(cluster, silent_connections_are_closed_after_the_hello_timeout)
{
	enum { HELLO_MS = 300 };
	cluster_init(2, 1);
	node_extra(&nodes[1], "--hello-timeout-ms", "300");
	node_start(&nodes[1]);
	struct node *n1 = &nodes[1];
	struct counters before = counters_of(n1);

	/* A peer that says hello in time: the timeout is not for it. */
	uint8_t uuid2[16];
	cr_assert_eq(getrandom(uuid2, 16, 0), 16);
	int hello_fd = raw_connect(n1->port);
	send_hello(hello_fd, cluster_id, 2, uuid2);
	uint8_t frame[256];
	size_t n = raw_read_frame(hello_fd, frame, sizeof(frame), 5000);
	must(sl_pframe_kind(frame, n) == SL_PFRAME_HELLO, "node 1 did not answer a true hello");

	int64_t t0 = tl_now_ms();
	int silent = raw_connect(n1->port);
	int partial = raw_connect(n1->port);
	struct sl_phello h = { .version = SL_PFRAME_VERSION, .node_id = 2 };
	memcpy(h.cluster_id, cluster_id, 16);
	memcpy(h.node_uuid, uuid2, 16);
	struct sl_pbuf b = { 0 };
	cr_assert_eq(sl_pframe_hello(&b, &h), 0);
	raw_send(partial, b.p, 3); /* 3 of the 4 bytes of its length */
	free(b.p);

	const int deadline_ms = 3000; /* well below the default 10 s */
	ssize_t got_silent = raw_wait_closed(silent, deadline_ms);
	int64_t t_silent = tl_now_ms() - t0;
	int64_t left = deadline_ms - t_silent;
	ssize_t got_partial = raw_wait_closed(partial, left > 0 ? (int)left : 0);
	int64_t t_partial = tl_now_ms() - t0;
	close(silent);
	close(partial);
	must(got_silent >= 0, "a silent connection was still open after %d ms", deadline_ms);
	must(got_partial >= 0, "a connection with 3 bytes of a frame was still open after %d ms",
	     deadline_ms);
	must(got_silent == 0 && got_partial == 0, "node 1 sent %zd and %zd bytes before closing",
	     got_silent, got_partial);
	/* Closed by the timeout, not at once (uv_now lags a little). */
	must(t_silent >= HELLO_MS / 2 && t_partial >= HELLO_MS / 2,
	     "closed after %lld and %lld ms, before the %d ms hello timeout", (long long)t_silent,
	     (long long)t_partial, HELLO_MS);
	cr_log_info("silent connections closed after %lld and %lld ms", (long long)t_silent,
		    (long long)t_partial);

	struct counters after = counters_of(n1);
	must(after.garbage == before.garbage + 2 && after.oversized == before.oversized &&
		     after.rejected == before.rejected,
	     "closed_garbage %lld -> %lld (want +2), closed_oversized %lld -> %lld, "
	     "rejected_hello %lld -> %lld",
	     (long long)before.garbage, (long long)after.garbage, (long long)before.oversized,
	     (long long)after.oversized, (long long)before.rejected, (long long)after.rejected);
	must(still_open(hello_fd), "the connection that said hello was closed too");
	close(hello_fd);
	char line[LINE];
	cmd(n1, line, "status");
	must(field(line, "groups") == 1, "status after the timeouts: '%s'", line);
	cluster_stop();
}

/* With --admit-guests, a stranger and a peer back with another UUID are
 * answered, but their Raft messages reach no group: a RequestVote of a
 * far higher term changes nothing; a bulk request closes the connection. */
static void expect_guest(struct node *n1, uint64_t id, const uint8_t *uuid, int64_t term_before)
{
	char line[LINE];
	cmd(n1, line, "stats");
	int64_t guests = field(line, "guests"), dropped = field(line, "guest_dropped");
	int64_t rejected = field(line, "rejected_hello");
	int fd = raw_connect(n1->port);
	send_hello(fd, cluster_id, id, uuid);
	uint8_t frame[256];
	size_t n = raw_read_frame(fd, frame, sizeof(frame), 5000);
	must(sl_pframe_kind(frame, n) == SL_PFRAME_HELLO, "node %llu's hello was not answered",
	     (unsigned long long)id);
	struct raft_message m = { .type = RAFT_IO_REQUEST_VOTE };
	m.request_vote = (struct raft_request_vote){ .term = 1000, .candidate_id = id,
						     .last_log_index = 1000000, .last_log_term = 999 };
	struct sl_pbuf b = { 0 };
	cr_assert_eq(sl_pframe_message(&b, 1, &m), 0);
	raw_send(fd, b.p, b.len);
	b.len = 0;
	struct sl_pbulk_req q = { .group = 1, .offset = 0, .end = 1, .max_bytes = 4096 };
	cr_assert_eq(sl_pframe_bulk_req(&b, &q), 0);
	raw_send(fd, b.p, b.len);
	free(b.p);
	ssize_t got = raw_wait_closed(fd, 5000);
	close(fd);
	must(got >= 0, "node %llu's bulk request: the connection stayed open",
	     (unsigned long long)id);
	cmd(n1, line, "stats");
	must(field(line, "guests") == guests + 1 && field(line, "guest_dropped") == dropped + 1 &&
		     field(line, "rejected_hello") == rejected + 1,
	     "node %llu as a guest: '%s'", (unsigned long long)id, line);
	cmd(n1, line, "group 1");
	must(field(line, "term") == term_before, "a guest's RequestVote moved the term: '%s'",
	     line);
}

Test(cluster, guests_get_application_frames_only)
{
	cluster_init(2, 1);
	node_flag(&nodes[1], "--admit-guests");
	cluster_start();
	wait_all_led();
	wait_connected(); /* node 1 knows node 2's uuid from its hello */
	uint8_t uuid2[16], other[16];
	read_uuid(&nodes[2], uuid2);
	memcpy(other, uuid2, 16);
	other[0] ^= 0x5a;
	char line[LINE];
	cmd(&nodes[1], line, "group 1");
	int64_t term = field(line, "term");
	expect_guest(&nodes[1], 9, uuid2, term);  /* not a peer */
	expect_guest(&nodes[1], 2, other, term); /* node 2 with another disk */
	/* Node 2's own connections still carry its Raft messages. */
	propose(1, 5, 4096);
	wait_caught_up(1, NULL, CATCHUP_MS);
	cluster_stop();
}

/* ---- i. a peer that stops reading ----------------------------------- */

#define STALL_GROUPS 200
#define STALL_PROPOSE_GROUPS 4 /* 1, 3 led by node 1; 2, 4 by node 2 */
#define STALL_BATCHES 250      /* per group, 16 KiB each: 8 MB per sender */
#define STALL_MIN_MS 2500      /* status keeps being answered at least this long */
#define STALL_MAX_MS 8000      /* heartbeats must be dropped by then */
#define STALL_BACKLOG_MS 6000 /* stopped_peer_replies_to_its_backlog */
#define ANSWER_MS 500          /* the most one answer may take during the stall */
#define RESUME_MS 10000        /* node 3 back: every group led, then caught up */

struct seen {
	int proposals;           /* `propose` answers */
	int64_t committed;
	char last_propose[256];
};

/* Sends c to nd and reads lines until its answer, within limit_ms (a
 * failure otherwise), noting the `propose` answers that come first.
 * Returns how long the answer took. */
static int64_t cmd_within(struct node *nd, char *line, int limit_ms, struct seen *sn,
			  const char *c)
{
	int64_t t0 = tl_now_ms();
	must(tl_proc_send(&nd->proc, "%s", c) == 0, "node %llu: cannot send '%s'",
	     (unsigned long long)nd->id, c);
	size_t w = strcspn(c, " ");
	for (;;) {
		int64_t left = t0 + limit_ms - tl_now_ms();
		int rv = tl_proc_read_line(&nd->proc, line, LINE, left > 0 ? (int)left : 0);
		must(rv == 1, "node %llu: no answer to '%s' within %d ms (rv %d)",
		     (unsigned long long)nd->id, c, limit_ms, rv);
		if (strncmp(line, "propose ", 8) == 0) {
			sn->proposals++;
			snprintf(sn->last_propose, sizeof(sn->last_propose), "%s", line);
			must(strstr(line, " ok ") != NULL, "node %llu: '%s'",
			     (unsigned long long)nd->id, line);
			sn->committed += field(line, "committed");
			continue;
		}
		if (strncmp(line, c, w) == 0 && line[w] == ' ')
			return tl_now_ms() - t0;
	}
}

/* No group of any running node has stopped (a libraft instance that an
 * error made unavailable shows as stopped). */
static void no_group_stopped(const char *when)
{
	for (int i = 1; i <= n_nodes; i++) {
		if (!nodes[i].up)
			continue;
		struct status st = node_status(&nodes[i]);
		must(st.stopped == 0, "%s: node %d has %lld stopped groups", when, i,
		     (long long)st.stopped);
	}
}

/* Node 3 stops (SIGSTOP): nodes 1 and 2 keep sending to it, first into
 * the kernel's buffers (about 4 MiB of send buffer on loopback, plus what
 * node 3's receive window takes), then into their 64 KiB queue for it;
 * once that is full the transport drops queued heartbeats to make room,
 * and the loop never blocks: status and stats keep being answered within
 * 500 ms. Heartbeats alone reach a stopped peer at only ~20-80 KB/s here
 * (libraft sends it one message per heartbeat), so they would take
 * minutes to fill 4 MiB: each node proposes 2 x 250 batches of 16 KiB,
 * one at a time per group, to groups it leads (8 MB, about twice what the
 * buffers hold). Then node 3 continues, and catches up on every group
 * proposed to. Settings and why (README.md):
 *   - --max-append 49152: every AppendEntries fits in the 64 KiB queue
 *     (a larger one is sent alone once the queue is empty);
 *   - --snapshot-threshold 4096: catch-up through the log only (a
 *     catch-up through a snapshot now and then waits for libraft 0.15's
 *     install_snapshot_timeout, 30 s, before the leader sends it again);
 *   - node 3 keeps the default (64 MiB) queue here; with a small one too,
 *     see stopped_peer_replies_to_its_backlog. */
static void stall_cluster(bool small_queue_on_3)
{
	cluster_init(3, STALL_GROUPS);
	for (int i = 1; i <= 3; i++) {
		node_extra(&nodes[i], "--heartbeat-ms", "20");
		node_extra(&nodes[i], "--election-ms", "1000");
		node_extra(&nodes[i], "--max-append", "49152");
		node_extra(&nodes[i], "--snapshot-threshold", "4096");
		if (i != 3 || small_queue_on_3)
			node_extra(&nodes[i], "--max-queue", "65536");
	}
	cluster_start();
	wait_all_led();
	for (int g = 1; g <= STALL_PROPOSE_GROUPS; g++)
		move_leader(g, &nodes[2 - g % 2]);
	wait_all_led();
	wait_connected();
}

/* Stops node 3, has the leaders of groups 1..ngroups propose `batches`
 * batches of 16 KiB on each, one at a time, and checks nodes 1 and 2 for
 * at least min_ms while node 3 is stopped: both answer every command
 * within ANSWER_MS, every proposal commits, and each node that proposed
 * drops heartbeats. Returns with node 3 continued. */
static void stall_and_resume(int min_ms, int ngroups, int batches)
{
	char line[LINE];
	struct node *c = &nodes[3];
	int64_t dropped0[3] = { 0 };
	for (int i = 1; i <= 2; i++)
		dropped0[i] = stat_of(&nodes[i], "heartbeats_dropped");

	must(tl_proc_kill(&c->proc, SIGSTOP) == 0, "SIGSTOP node 3: %s", strerror(errno));
	c->stopped = true;
	int64_t t0 = tl_now_ms();
	struct seen sn = { 0 };
	for (int g = 1; g <= ngroups; g++)
		must(tl_proc_send(&nodes[2 - g % 2].proc, "propose %d %d 16384 1", g, batches) == 0,
		     "cannot send propose to node %d", 2 - g % 2);
	int64_t slowest = 0, dropped[3] = { 0 }, queries = 0;
	for (;;) {
		for (int i = 1; i <= 2; i++) {
			int64_t took = cmd_within(&nodes[i], line, ANSWER_MS, &sn, "status");
			must(field(line, "groups") == STALL_GROUPS && field(line, "stopped") == 0,
			     "node %d while node 3 is stopped: '%s'", i, line);
			int64_t took2 = cmd_within(&nodes[i], line, ANSWER_MS, &sn, "stats");
			took = took2 > took ? took2 : took;
			dropped[i] = field(line, "heartbeats_dropped") - dropped0[i];
			slowest = took > slowest ? took : slowest;
			queries += 2;
		}
		int64_t el = tl_now_ms() - t0;
		if (el >= min_ms && dropped[1] > 0 && (dropped[2] > 0 || ngroups < 2) &&
		    sn.proposals == ngroups)
			break;
		must(el < min_ms + STALL_MAX_MS - STALL_MIN_MS,
		     "%lld ms after node 3 stopped: heartbeats dropped by node 1: %lld, node 2: "
		     "%lld; %d of %d proposals answered (last: '%s')",
		     (long long)el, (long long)dropped[1], (long long)dropped[2], sn.proposals,
		     ngroups, sn.last_propose);
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
	}
	must(sn.committed == (int64_t)ngroups * batches,
	     "%lld batches committed while node 3 was stopped", (long long)sn.committed);
	cr_log_info("stall: %lld queries in %lld ms, slowest answer %lld ms; heartbeats dropped "
		    "%lld + %lld",
		    (long long)queries, (long long)(tl_now_ms() - t0), (long long)slowest,
		    (long long)dropped[1], (long long)dropped[2]);

	must(tl_proc_kill(&c->proc, SIGCONT) == 0, "SIGCONT node 3: %s", strerror(errno));
	c->stopped = false;
}

/* Fails if nd's process has exited. */
static void still_running(struct node *nd)
{
	if (tl_proc_wait(&nd->proc, 0) == 0)
		return;
	nd->up = false;
	must(false, "node %llu exited (status 0x%x): see the end of its log",
	     (unsigned long long)nd->id, nd->proc.status);
}

/* After stall_and_resume: every group is led again, and node 3 holds
 * (durably) every batch proposed to groups 1..ngroups while it was
 * stopped. */
static void check_resumed(int ngroups, int batches)
{
	int64_t resumed = tl_now_ms();
	struct timespec ts = { 0, 200 * 1000000L };
	nanosleep(&ts, NULL); /* node 3 reads its backlog */
	still_running(&nodes[3]);
	bool ok = tl_wait_until(all_led, NULL, RESUME_MS, 50);
	int64_t led_ms = tl_now_ms() - resumed;
	struct status st[4];
	for (int i = 1; i <= 3 && !ok; i++)
		st[i] = node_status(&nodes[i]);
	must(ok, "%d ms after node 3 continued, not every group had one ready leader: leaders "
		 "%lld + %lld + %lld, ready %lld + %lld + %lld, stopped %lld + %lld + %lld",
	     RESUME_MS, (long long)st[1].leaders, (long long)st[2].leaders,
	     (long long)st[3].leaders, (long long)st[1].ready, (long long)st[2].ready,
	     (long long)st[3].ready, (long long)st[1].stopped, (long long)st[2].stopped,
	     (long long)st[3].stopped);
	for (int g = 1; g <= ngroups; g++) {
		int64_t left = resumed + RESUME_MS - tl_now_ms();
		wait_caught_up(g, &nodes[3], left > 0 ? (int)left : 0);
		struct gstate s = group_state(&nodes[3], g);
		must(s.last >= batches, "group %d: node 3's last is %lld", g, (long long)s.last);
	}
	no_group_stopped("after node 3 caught up");
	cr_log_info("stall: node 3 back: every group led after %lld ms, caught up after %lld ms",
		    (long long)led_ms, (long long)(tl_now_ms() - resumed));
}

Test(cluster, a_stopped_peer_never_blocks_the_loop_and_drops_heartbeats_first)
{
	stall_cluster(false);
	stall_and_resume(STALL_MIN_MS, STALL_PROPOSE_GROUPS, STALL_BATCHES);
	check_resumed(STALL_PROPOSE_GROUPS, STALL_BATCHES);
	cluster_stop();
}

/* The same with a 64 KiB queue on node 3 too, one group proposed to, and
 * a longer stop. Node 3, once continued, answers its backlog faster than
 * its queue drains, so the transport refuses replies. A regression test:
 * rio_send used to fail with RAFT_NOCONNECTION then, and libraft 0.15
 * frees a received AppendEntries' entries twice when the answer sent from
 * inside recvAppendEntries fails (it aborted here every time); a refused
 * message now counts as lost. */
Test(cluster, stopped_peer_replies_to_its_backlog)
{
	stall_cluster(true);
	stall_and_resume(STALL_BACKLOG_MS, 1, 600);
	check_resumed(1, 600);
	cluster_stop();
}

/* ---- moving a replica: a new group on the old group's data ----------- */

#define MOVE_SRC 1
#define MOVE_DST 1001
#define MOVE_BATCHES 50
#define MOVE_BYTES 4096

struct ready_among {
	int g;
	const int *ids;
	int n;
	struct node *leader;
	char seen[256];
};

/* One of ra->ids leads ra->g and its election barrier committed: its
 * `status` counts one ready group more than it would without g (it may
 * also lead, ready, the other groups it runs: here only MOVE_SRC). */
static bool ready_leader_among(void *arg)
{
	struct ready_among *ra = arg;
	ra->leader = NULL;
	snprintf(ra->seen, sizeof(ra->seen), "no leader");
	for (int k = 0; k < ra->n; k++) {
		struct node *nd = &nodes[ra->ids[k]];
		struct gstate s, o;
		if (!group_state_opt(nd, ra->g, &s) || strcmp(s.role, "leader") != 0)
			continue;
		int64_t others = 0;
		if (group_state_opt(nd, MOVE_SRC, &o) && strcmp(o.role, "leader") == 0)
			others = 1;
		struct status st = node_status(nd);
		snprintf(ra->seen, sizeof(ra->seen), "n%llu leads, ready=%lld (other groups led: %lld)",
			 (unsigned long long)nd->id, (long long)st.ready, (long long)others);
		if (st.ready == others + 1) {
			ra->leader = nd;
			return true;
		}
	}
	return false;
}

struct committed_all {
	struct node *nd;
	int g;
	struct gstate s;
};

static bool leader_committed_all(void *arg)
{
	struct committed_all *ca = arg;
	ca->s = group_state(ca->nd, ca->g);
	return strcmp(ca->s.role, "leader") == 0 && ca->s.commit == ca->s.last;
}

static bool dir_exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

Test(cluster, replica_moves_to_a_new_group_on_the_old_data)
{
	char line[LINE];
	cluster_init(4, 1);
	for (int i = 1; i <= 3; i++)
		node_extra(&nodes[i], "--voters", "1,2,3");
	node_extra(&nodes[4], "--groups", "0");
	cluster_start();
	wait_all_led();
	struct status s4 = node_status(&nodes[4]);
	must(s4.groups == 0, "node 4 runs %lld groups, expected none", (long long)s4.groups);

	/* The source is node 1, one of the new replicas: it copies from
	 * itself through its own listener, nodes 2 and 4 from it. (Its own
	 * peer entry once held port 0, and that copy failed.) */
	move_leader(MOVE_SRC, &nodes[1]);
	/* Fill group 1 and let it settle: everything committed on its leader. */
	propose(MOVE_SRC, MOVE_BATCHES, MOVE_BYTES);
	struct node *ld = leader_of(MOVE_SRC);
	must(ld == &nodes[1], "group %d: leader n%llu, not node 1", MOVE_SRC,
	     ld != NULL ? (unsigned long long)ld->id : 0ULL);
	struct committed_all ca = { .nd = ld, .g = MOVE_SRC };
	must(tl_wait_until(leader_committed_all, &ca, ELECT_MS, 50),
	     "group %d: leader n%llu role=%s commit=%lld last=%lld", MOVE_SRC,
	     (unsigned long long)ld->id, ca.s.role, (long long)ca.s.commit, (long long)ca.s.last);
	int64_t x = ca.s.next_offset;
	must(x > 0, "group %d: next_offset %lld", MOVE_SRC, (long long)x);
	struct digest src = node_digest(ld, MOVE_SRC, x);
	must(src.next == x, "group %d on n%llu: digest below %lld covers up to %lld", MOVE_SRC,
	     (unsigned long long)ld->id, (long long)x, (long long)src.next);

	/* The new replica set 1, 2, 4 (node 3 leaves) starts group 1001 on
	 * group 1's data below x, copied from its leader. */
	static const int dst[] = { 1, 2, 4 };
	for (int k = 0; k < 3; k++)
		must(tl_proc_send(&nodes[dst[k]].proc, "start-from %d 1,2,4 %llu %d %lld", MOVE_DST,
				  (unsigned long long)ld->id, MOVE_SRC, (long long)x) == 0,
		     "node %d: sending start-from failed", dst[k]);
	for (int k = 0; k < 3; k++) {
		int rv = tl_proc_expect(&nodes[dst[k]].proc, "start-from ", line, sizeof(line),
					CATCHUP_MS);
		must(rv == 1, "node %d: no answer to start-from within %d ms (rv %d)", dst[k],
		     CATCHUP_MS, rv);
		char want[64];
		snprintf(want, sizeof(want), "start-from %d ok", MOVE_DST);
		must(strcmp(line, want) == 0, "node %d: '%s'", dst[k], line);
	}
	must(stat_of(&nodes[4], "bulk_fetched") > 0, "node 4 fetched nothing by bulk copy");

	struct ready_among ra = { .g = MOVE_DST, .ids = dst, .n = 3 };
	must(tl_wait_until(ready_leader_among, &ra, ELECT_MS, 50),
	     "group %d: no ready leader among 1, 2, 4 within %d ms (%s)", MOVE_DST, ELECT_MS,
	     ra.seen);
	struct gstate g3;
	must(!group_state_opt(&nodes[3], MOVE_DST, &g3), "node 3 has group %d", MOVE_DST);

	/* The same bytes below x on every new replica, node 4 included. */
	for (int k = 0; k < 3; k++) {
		struct digest d = node_digest(&nodes[dst[k]], MOVE_DST, x);
		must(strcmp(d.crc, src.crc) == 0 && d.next == x,
		     "group %d on node %d: digest below %lld crc=%s next=%lld, group %d on n%llu "
		     "crc=%s next=%lld",
		     MOVE_DST, dst[k], (long long)x, d.crc, (long long)d.next, MOVE_SRC,
		     (unsigned long long)ld->id, src.crc, (long long)src.next);
	}
	/* Its own entries (bootstrap configuration, barrier) start at x. */
	struct gstate ns = group_state(ra.leader, MOVE_DST);
	must(ns.next_offset > x, "group %d: next_offset %lld on its leader n%llu, not past %lld",
	     MOVE_DST, (long long)ns.next_offset, (unsigned long long)ra.leader->id, (long long)x);

	propose(MOVE_DST, 10, MOVE_BYTES);
	wait_caught_up(MOVE_DST, NULL, CATCHUP_MS);
	struct gstate after = group_state(leader_of(MOVE_DST), MOVE_DST);
	must(after.next_offset > ns.next_offset, "group %d: next_offset %lld after 10 batches",
	     MOVE_DST, (long long)after.next_offset);

	/* The old group goes: stopped and its directory removed. */
	for (int i = 1; i <= 3; i++) {
		cmd(&nodes[i], line, "delete %d", MOVE_SRC);
		char want[64];
		snprintf(want, sizeof(want), "delete %d ok", MOVE_SRC);
		must(strcmp(line, want) == 0, "node %d: '%s'", i, line);
	}
	cmd(&nodes[4], line, "delete %d", MOVE_SRC);
	must(strstr(line, " err not-found") != NULL, "node 4: '%s'", line);
	for (int i = 1; i <= 3; i++) {
		cmd(&nodes[i], line, "group %d", MOVE_SRC);
		must(strstr(line, " err not-found") != NULL, "node %d: '%s'", i, line);
		char path[600];
		snprintf(path, sizeof(path), "%s/g%d", nodes[i].dir, MOVE_SRC);
		must(!dir_exists(path), "node %d: %s still exists", i, path);
	}
	/* The new group still takes writes without the old one. */
	propose(MOVE_DST, 5, MOVE_BYTES);
	cluster_stop();
}
