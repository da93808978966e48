/* Consumer groups on three sluiced nodes (127.0.0.1, default timing:
 * group heartbeat 3 s, session timeout 45 s), __consumer_offsets with 16
 * partitions of 3 replicas:
 *
 *   1. assignment: 10 members (libsluice consumers, each on its own
 *      client) subscribe to a topic of 100 partitions at once; the time
 *      from the last sluice_subscribe until every partition is owned by
 *      exactly one member, 10 each (goal: under 1 s);
 *   2. a clean leave: one member closes (commit, leave); the time until
 *      the other nine own all 100 partitions (goal: under 200 ms);
 *   3. commits: 100 groups coordinated by one node, each committing 10
 *      partitions per OffsetCommit, --inflight requests in flight per
 *      connection on --connections connections for --seconds: partition
 *      offsets acknowledged (committed through Raft) per second (goal: at
 *      least 50,000). Raw protocol, no member (the groups are empty, as
 *      when an administrator resets offsets): the coordinator's write
 *      path alone.
 *
 *   bench_cgroups --sluiced build/broker/sluiced --dir DIR [--runs 3]
 *                 [--seconds 5] [--inflight 16] [--connections 4]
 *
 * With --runs K, each run on a fresh cluster; the medians come last.
 * Every process it starts is killed by PID at exit (tests/lib/procs.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frame.h"
#include "procs.h"
#include "sluice.h"

#define NODES 3
#define MEMBERS 10
#define PARTS 100
#define GROUPS 100
#define PER_GROUP 10

static const char *sluiced;
static char base_dir[512];
static int runs = 3, seconds = 5, inflight = 16, connections = 4;

struct node {
	struct tl_proc p;
	int ports[3]; /* client, peer, http */
};
static struct node nodes[NODES];
static char bootstrap[256];

static void die(const char *what)
{
	fprintf(stderr, "bench_cgroups: %s\n", what);
	tl_proc_kill_all();
	exit(1);
}

/* ---- The cluster ------------------------------------------------------------ */

static bool node_ready(void *arg)
{
	struct node *n = arg;
	int status;
	char body[256];
	return tl_http_get(n->ports[2], "/readyz", &status, body, sizeof(body), 1000) == 0 &&
	       status == 200;
}

static void cluster_up(const char *dir)
{
	char seeds[256] = "";
	bootstrap[0] = '\0';
	for (int i = 0; i < NODES; i++) {
		if (tl_free_ports(nodes[i].ports, 3) != 0)
			die("no free ports");
		size_t len = strlen(seeds);
		snprintf(seeds + len, sizeof(seeds) - len, "%s%d@127.0.0.1:%d", i ? "," : "", i + 1,
			 nodes[i].ports[1]);
		len = strlen(bootstrap);
		snprintf(bootstrap + len, sizeof(bootstrap) - len, "%s127.0.0.1:%d", i ? "," : "",
			 nodes[i].ports[0]);
	}
	for (int i = 0; i < NODES; i++) {
		char id[16], d[800], log[820], cp[16], pp[16], hp[16];
		snprintf(id, sizeof(id), "%d", i + 1);
		snprintf(d, sizeof(d), "%s/n%d", dir, i + 1);
		snprintf(log, sizeof(log), "%s/n%d.log", dir, i + 1);
		snprintf(cp, sizeof(cp), "%d", nodes[i].ports[0]);
		snprintf(pp, sizeof(pp), "%d", nodes[i].ports[1]);
		snprintf(hp, sizeof(hp), "%d", nodes[i].ports[2]);
		char *argv[] = { (char *)sluiced, "--node-id", id, "--data-dir", d, "--client-port", cp,
				 "--peer-port", pp, "--http-port", hp, "--seeds", seeds, NULL };
		if (tl_proc_spawn(&nodes[i].p, argv, log) != 0)
			die("spawn sluiced");
	}
	for (int i = 0; i < NODES; i++)
		if (!tl_wait_until(node_ready, &nodes[i], 60000, 50))
			die("a node was not ready within 60 s");
}

static void cluster_down(void)
{
	for (int i = 0; i < NODES; i++)
		tl_proc_kill(&nodes[i].p, SIGTERM);
	for (int i = 0; i < NODES; i++) {
		if (tl_proc_wait(&nodes[i].p, 60000) != 1)
			fprintf(stderr, "bench_cgroups: node %d did not stop within 60 s\n", i + 1);
		tl_proc_close(&nodes[i].p);
	}
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static sluice_client_t *client(void)
{
	char err[256];
	sluice_conf_t *conf = sluice_conf_new();
	if (conf == NULL ||
	    sluice_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) != SLUICE_OK ||
	    sluice_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)) != SLUICE_OK)
		die("configuration");
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	if (cl == NULL)
		die(err);
	return cl;
}

/* ---- 1, 2: members ---------------------------------------------------------- */

struct member {
	sluice_client_t *cl;
	sluice_consumer_t *c;
	bool owns[PARTS];
	bool closed;
};
static struct member members[MEMBERS];

static void on_assign(void *opaque, const char *topic, int32_t partition, int assigned)
{
	struct member *m = opaque;
	(void)topic;
	if (partition >= 0 && partition < PARTS)
		m->owns[partition] = assigned == SLUICE_ASSIGNED;
}

/* Polls every open member once (their callbacks run in poll). */
static void poll_all(void)
{
	for (int i = 0; i < MEMBERS; i++) {
		sluice_msg_t *msg = NULL;
		if (!members[i].closed && sluice_poll(members[i].c, 1, &msg) == SLUICE_OK)
			sluice_msg_destroy(msg);
	}
}

/* Every partition owned by exactly one open member, `per` each. */
static bool settled(int open, int per)
{
	int owners[PARTS] = { 0 };
	for (int i = 0; i < MEMBERS; i++) {
		if (members[i].closed)
			continue;
		int n = 0;
		for (int p = 0; p < PARTS; p++) {
			n += members[i].owns[p];
			owners[p] += members[i].owns[p];
		}
		if (n < per || n > per + 1)
			return false;
	}
	for (int p = 0; p < PARTS; p++)
		if (owners[p] != 1)
			return false;
	(void)open;
	return true;
}

/* Polls until settled (or 30 s); returns ms since t0. */
static double wait_settled(int64_t t0, int open, int per)
{
	int64_t until = tl_now_ms() + 30000;
	while (!settled(open, per)) {
		if (tl_now_ms() > until)
			die("the group did not settle within 30 s");
		poll_all();
	}
	return (double)(tl_now_ms() - t0);
}

/* A close waits for the member's fetches in flight (held up to
 * fetch.wait.ms by the leaders): it runs beside the others' polls. */
static void *close_member(void *arg)
{
	sluice_consumer_close(arg);
	return NULL;
}

static void members_phase(double *assign_ms, double *leave_ms)
{
	sluice_client_t *admin_cl = client();
	sluice_admin_t *a = sluice_admin_new(admin_cl);
	sluice_report_t *r = NULL;
	if (sluice_topic_create(a, "wide", PARTS, 3, NULL, NULL, NULL, &r) != SLUICE_OK)
		die(r != NULL ? sluice_report_errmsg(r) : "topic create");
	sluice_report_destroy(r);
	sluice_admin_destroy(a);
	sluice_client_destroy(admin_cl);
	const char *topics[] = { "wide" };
	memset(members, 0, sizeof(members));
	for (int i = 0; i < MEMBERS; i++) {
		members[i].cl = client();
		members[i].c = sluice_consumer_new(members[i].cl, "bench", on_assign, &members[i]);
		if (members[i].c == NULL)
			die("consumer");
	}
	int64_t t0 = 0;
	for (int i = 0; i < MEMBERS; i++) {
		if (sluice_subscribe(members[i].c, topics, 1) != SLUICE_OK)
			die("subscribe");
		t0 = tl_now_ms();
	}
	*assign_ms = wait_settled(t0, MEMBERS, PARTS / MEMBERS);
	/* One leaves cleanly: its partitions go to the others. */
	int64_t t1 = tl_now_ms();
	pthread_t closer;
	members[0].closed = true;
	if (pthread_create(&closer, NULL, close_member, members[0].c) != 0)
		die("thread");
	*leave_ms = wait_settled(t1, MEMBERS - 1, PARTS / (MEMBERS - 1));
	pthread_join(closer, NULL);
	for (int i = 1; i < MEMBERS; i++)
		sluice_consumer_close(members[i].c);
	for (int i = 0; i < MEMBERS; i++)
		sluice_client_destroy(members[i].cl);
}

/* ---- 3: commits ---------------------------------------------------------------- */

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		die("connect");
	return fd;
}

static void send_env(int fd, Sluice__Envelope *env)
{
	uint8_t *head;
	size_t hlen;
	if (sl_frame_encode(env, NULL, 0, &head, &hlen) != SL_OK)
		die("encode");
	for (size_t at = 0; at < hlen;) {
		ssize_t w = write(fd, head + at, hlen - at);
		if (w <= 0)
			die("send");
		at += (size_t)w;
	}
	free(head);
}

/* Reads one response frame on fd (buffered in buf). */
static Sluice__Envelope *read_frame(int fd, uint8_t *buf, size_t cap, size_t *have)
{
	size_t flen;
	int64_t deadline = tl_now_ms() + 30000;
	while (sl_frame_peek(buf, *have, cap, &flen) != SL_OK) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - tl_now_ms());
		if (left <= 0 || poll(&p, 1, left) != 1)
			die("no response within 30 s");
		ssize_t n = read(fd, buf + *have, cap - *have);
		if (n <= 0)
			die("the connection closed");
		*have += (size_t)n;
	}
	static struct sl_frame f;
	uint32_t c;
	char why[SL_ERRMSG_SIZE];
	if (sl_frame_decode(buf, flen, NULL, &f, &c, why) != SL_OK)
		die(why);
	memmove(buf, buf + flen, *have - flen);
	*have -= flen;
	return f.env;
}

static Sluice__Envelope *call(int port, Sluice__Envelope *env)
{
	static uint8_t buf[1 << 20];
	size_t have = 0;
	int fd = connect_to(port);
	send_env(fd, env);
	Sluice__Envelope *r = read_frame(fd, buf, sizeof(buf), &have);
	close(fd);
	return r;
}

/* The node (index) coordinating group g, or -1 while none is. */
static int coordinator(const char *g, uint32_t *port)
{
	Sluice__FindCoordinatorRequest fr = SLUICE__FIND_COORDINATOR_REQUEST__INIT;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	fr.group = (char *)g;
	env.api_key = SLUICE__API_KEY__FIND_COORDINATOR;
	env.body_case = SLUICE__ENVELOPE__BODY_FIND_COORDINATOR_REQUEST;
	env.find_coordinator_request = &fr;
	Sluice__Envelope *r = call(nodes[0].ports[0], &env);
	const Sluice__FindCoordinatorResponse *f = r->find_coordinator_response;
	int node = f != NULL && f->error_code == 0 ? (int)f->node_id - 1 : -1;
	if (f != NULL)
		*port = f->port;
	sluice__envelope__free_unpacked(r, NULL);
	return node;
}

static char group_names[GROUPS][32];

/* One OffsetCommit of group g: PER_GROUP partitions of "wide" at offset. */
static void send_commit(int fd, int g, int64_t offset, uint32_t corr)
{
	Sluice__OffsetCommitPartition p[PER_GROUP], *pp[PER_GROUP];
	for (int i = 0; i < PER_GROUP; i++) {
		sluice__offset_commit_partition__init(&p[i]);
		p[i].topic = (char *)"wide";
		p[i].partition = (uint32_t)i;
		p[i].offset = offset;
		p[i].leader_epoch = -1;
		pp[i] = &p[i];
	}
	Sluice__OffsetCommitRequest cr = SLUICE__OFFSET_COMMIT_REQUEST__INIT;
	cr.group = group_names[g];
	cr.member_epoch = -1;
	cr.partitions = pp;
	cr.n_partitions = PER_GROUP;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.correlation_id = corr;
	env.api_key = SLUICE__API_KEY__OFFSET_COMMIT;
	env.body_case = SLUICE__ENVELOPE__BODY_OFFSET_COMMIT_REQUEST;
	env.offset_commit_request = &cr;
	send_env(fd, &env);
}

/* A commit answer's partitions, acknowledged or refused. */
static void tally(Sluice__Envelope *r, uint64_t *acked, uint64_t *refused)
{
	const Sluice__OffsetCommitResponse *cr = r->offset_commit_response;
	if (cr == NULL || cr->error_code != 0)
		die(cr != NULL ? cr->error_message : r->error_message);
	for (size_t j = 0; j < cr->n_results; j++) {
		if (cr->results[j]->error_code == 0)
			(*acked)++;
		else
			(*refused)++;
	}
	sluice__envelope__free_unpacked(r, NULL);
}

static double commits_phase(void)
{
	/* 100 groups that one node coordinates. */
	int target = -1, n = 0;
	uint32_t port = 0;
	int64_t until = tl_now_ms() + 30000;
	for (int k = 0; n < GROUPS; k++) {
		char name[32];
		snprintf(name, sizeof(name), "commits-%d", k);
		uint32_t p;
		int node = coordinator(name, &p);
		if (node < 0) {
			if (tl_now_ms() > until)
				die("no coordinator within 30 s");
			k--;
			continue;
		}
		if (target < 0) {
			target = node;
			port = p;
		}
		if (node == target)
			snprintf(group_names[n++], sizeof(group_names[0]), "%s", name);
	}
	int fds[16];
	static uint8_t bufs[16][1 << 16];
	size_t have[16] = { 0 };
	unsigned out[16] = { 0 };
	if (connections > 16)
		connections = 16;
	for (int i = 0; i < connections; i++)
		fds[i] = connect_to((int)port);
	uint32_t corr = 0;
	int next = 0;
	int64_t offset = 1;
	uint64_t acked = 0, refused = 0;
	int64_t t0 = tl_now_ms(), end = t0 + seconds * 1000;
	for (;;) {
		bool running = tl_now_ms() < end;
		unsigned total = 0;
		for (int i = 0; i < connections; i++) {
			while (running && out[i] < (unsigned)inflight) {
				send_commit(fds[i], next, offset++, ++corr);
				next = (next + 1) % GROUPS;
				out[i]++;
			}
			total += out[i];
		}
		if (total == 0)
			break;
		struct pollfd pf[16];
		for (int i = 0; i < connections; i++)
			pf[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		if (poll(pf, (nfds_t)connections, 30000) <= 0)
			die("no commit answer within 30 s");
		for (int i = 0; i < connections; i++) {
			if (!(pf[i].revents & POLLIN) || out[i] == 0)
				continue;
			tally(read_frame(fds[i], bufs[i], sizeof(bufs[i]), &have[i]), &acked, &refused);
			out[i]--;
			/* Frames already buffered are taken before polling again. */
			size_t flen;
			while (out[i] > 0 &&
			       sl_frame_peek(bufs[i], have[i], sizeof(bufs[i]), &flen) == SL_OK) {
				tally(read_frame(fds[i], bufs[i], sizeof(bufs[i]), &have[i]), &acked,
				      &refused);
				out[i]--;
			}
		}
	}
	double secs = (double)(tl_now_ms() - t0) / 1000.0;
	for (int i = 0; i < connections; i++)
		close(fds[i]);
	if (refused > 0)
		fprintf(stderr, "bench_cgroups: %llu partition commits refused\n",
			(unsigned long long)refused);
	printf("  commits: %llu partition offsets in %.2f s on node %d\n", (unsigned long long)acked,
	       secs, target + 1);
	return (double)acked / secs;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(argv[i], "--sluiced") == 0 && v)
			sluiced = argv[++i];
		else if (strcmp(argv[i], "--dir") == 0 && v)
			dir = argv[++i];
		else if (strcmp(argv[i], "--runs") == 0 && v)
			runs = atoi(argv[++i]);
		else if (strcmp(argv[i], "--seconds") == 0 && v)
			seconds = atoi(argv[++i]);
		else if (strcmp(argv[i], "--inflight") == 0 && v)
			inflight = atoi(argv[++i]);
		else if (strcmp(argv[i], "--connections") == 0 && v)
			connections = atoi(argv[++i]);
		else
			die("usage: bench_cgroups --sluiced PATH --dir DIR [--runs 3] [--seconds 5] "
			    "[--inflight 16] [--connections 4]");
	}
	if (sluiced == NULL || dir == NULL || runs < 1 || runs > 50 || seconds < 1 ||
	    inflight < 1 || connections < 1)
		die("--sluiced and --dir are required");
	double as[50], ls[50], cs[50];
	for (int k = 0; k < runs; k++) {
		snprintf(base_dir, sizeof(base_dir), "%s/run%d", dir, k);
		nftw(base_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		if (mkdir(dir, 0755) != 0 && access(dir, F_OK) != 0)
			die("mkdir");
		if (mkdir(base_dir, 0755) != 0)
			die("mkdir run");
		cluster_up(base_dir);
		members_phase(&as[k], &ls[k]);
		cs[k] = commits_phase();
		printf("run %d: stable assignment %.0f ms after the last join (10 members, 100 "
		       "partitions), partitions moved %.0f ms after a clean leave, %.0f partition "
		       "offsets committed/s\n",
		       k + 1, as[k], ls[k], cs[k]);
		fflush(stdout);
		cluster_down();
		nftw(base_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
	printf("median of %d: assignment %.0f ms (goal < 1000), move after leave %.0f ms (goal < "
	       "200), commits %.0f offsets/s (goal >= 50000)\n",
	       runs, median(as, runs), median(ls, runs), median(cs, runs));
	return 0;
}
