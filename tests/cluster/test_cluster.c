/* Clusters of real rnode processes on 127.0.0.1 (README.md): elections
 * over many groups, crash and restart, snapshot catch-up through the bulk
 * copy (also when it is cut midway), strangers on the peer port, and the
 * hand-off on SIGTERM.
 *
 * Each test runs in its own Criterion worker with its own temp directory
 * and its own free ports; every process it starts is killed by PID when the
 * test ends, passed or not (tests/lib/procs.h). A failed check prints the
 * tail of every node's stderr log before it fails. RNODE (environment)
 * overrides the path of the rnode binary; CLUSTER_TRACE=1 prints every
 * command and its answer. */
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
#define MAX_NODES 3
#define CMD_MS 10000     /* one command's answer */
#define START_MS 60000   /* `ready` after a start (100 groups, ASan) */
#define ELECT_MS 30000   /* every group led */
#define CATCHUP_MS 40000 /* a restarted node catches up */
#define EXIT_MS 20000    /* exit after quit or SIGTERM */
#define LINE 4096

struct node {
	uint64_t id;
	int port;
	char dir[512];
	char log[600];
	char extra[6][64]; /* extra flags for this node */
	int nextra;
	struct tl_proc proc;
	bool up;
};

static struct node nodes[MAX_NODES + 1]; /* 1-based */
static int n_nodes, n_groups;
static char cluster_hex[33];
static uint8_t cluster_id[16];

/* ---- Failure reports ------------------------------------------------ */

static void dump_logs(void)
{
	for (int i = 1; i <= n_nodes; i++) {
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
	cr_assert(nd->nextra + 2 <= 6);
	snprintf(nd->extra[nd->nextra++], sizeof(nd->extra[0]), "%s", flag);
	snprintf(nd->extra[nd->nextra++], sizeof(nd->extra[0]), "%s", value);
}

static void node_spawn(struct node *nd)
{
	char a_id[24], a_port[16], a_groups[16], a_hb[16], a_el[16];
	char a_peers[MAX_NODES][80];
	char *argv[48];
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
	for (int i = 1; i <= n_nodes; i++)
		tl_proc_close(&nodes[i].proc);
	tl_proc_kill_all();
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 240);

/* ---- Cluster-wide conditions ---------------------------------------- */

struct status {
	int64_t groups, leaders, ready, known;
};

static struct status node_status(struct node *nd)
{
	char line[LINE];
	cmd(nd, line, "status");
	struct status st = {
		field(line, "groups"), field(line, "leaders"), field(line, "ready"),
		field(line, "known_leader"),
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

static struct gstate group_state(struct node *nd, int g)
{
	char line[LINE];
	cmd(nd, line, "group %d", g);
	struct gstate s;
	must(tl_line_str(line, "role", s.role, sizeof(s.role)), "no role in '%s'", line);
	s.term = field(line, "term");
	s.leader = field(line, "leader");
	s.commit = field(line, "commit");
	s.durable = field(line, "durable");
	s.last = field(line, "last");
	s.next_offset = field(line, "next_offset");
	return s;
}

/* The running node that leads g (and says so itself), or NULL. */
static struct node *leader_of(int g)
{
	for (int i = 1; i <= n_nodes; i++) {
		if (!nodes[i].up)
			continue;
		struct gstate s = group_state(&nodes[i], g);
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

struct caught_up {
	int g;
	struct node *nd;     /* the follower; NULL: every running follower */
	int64_t want;        /* the leader's last index */
	char seen[256];
};

/* The follower(s) of a group have committed and made durable want. */
static bool group_caught_up(void *arg)
{
	struct caught_up *cu = arg;
	for (int i = 1; i <= n_nodes; i++) {
		struct node *nd = &nodes[i];
		if (!nd->up || (cu->nd != NULL && cu->nd != nd))
			continue;
		struct gstate s = group_state(nd, cu->g);
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
	/* The first session was cut: a second one completed the copy, and
	 * the bytes of the cut frame were served but never kept. */
	must(sessions >= 2, "the leader served %lld bulk sessions: no resume after the cut",
	     (long long)sessions);
	must(served > fetched, "the leader served %lld bytes and node 3 kept %lld: nothing was cut",
	     (long long)served, (long long)fetched);
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
