/* A topic of 1,000 partitions on three sluiced nodes (127.0.0.1, default
 * timing: heartbeat 200 ms, election 1 s), RF 3:
 *
 *   1. CreateTopics to leaders: from sending CreateTopics to the
 *      controller's leader until (a) its answer (it waits until its
 *      metadata has a leader for every partition) and (b) every node's
 *      Metadata shows a leader for every partition (goal (b): under 5 s);
 *   2. idle: CPU per node over a window once the leaders settled (goal:
 *      under 5% of one core per node), resident memory;
 *   3. with --produce-seconds S: a topic of one partition, RF 3, and one
 *      connection to its leader keeping --inflight Produce requests
 *      (acks=all) in flight, each one batch of --batch-records records of
 *      100 random bytes, uncompressed: acknowledged records per second.
 *      This is the broker's side alone, through the raw protocol
 *      (libsluice's producer and `sluice perf` come later).
 *
 *   bench_cluster --sluiced build/broker/sluiced --dir DIR [--partitions 1000]
 *                 [--rf 3] [--runs 1] [--idle-seconds 10] [--keep]
 *                 [--produce-seconds 0] [--inflight 8] [--batch-records 1000]
 *
 * With --runs K, each run on a fresh cluster; the medians come last.
 * Every process it starts is killed by PID at exit (tests/lib/procs.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "frame.h"
#include "procs.h"

#define NODES 3

static const char *sluiced;
static char base_dir[512];
static int partitions = 1000, rf = 3, runs = 1, idle_seconds = 10;
static int produce_seconds, inflight = 8, batch_records = 1000;
static bool keep;

struct node {
	struct tl_proc p;
	int ports[3]; /* client, peer, http */
};
static struct node nodes[NODES];
static uint32_t corr;

static void die(const char *what)
{
	fprintf(stderr, "bench_cluster: %s\n", what);
	tl_proc_kill_all();
	exit(1);
}

/* ---- A blocking client -------------------------------------------------- */

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		die("connect");
	return fd;
}

/* Sends env, returns the response (within 90 s), decoded. */
static Sluice__Envelope *call(int port, Sluice__Envelope *env)
{
	static uint8_t *buf;
	static size_t cap = 8u << 20;
	if (buf == NULL && (buf = malloc(cap)) == NULL)
		die("out of memory");
	int fd = connect_to(port);
	env->correlation_id = ++corr;
	uint8_t *head;
	size_t hlen;
	if (sl_frame_encode(env, NULL, 0, &head, &hlen) != SL_OK ||
	    write(fd, head, hlen) != (ssize_t)hlen)
		die("send");
	free(head);
	size_t len = 0, flen = 0;
	int64_t deadline = tl_now_ms() + 90000;
	while (sl_frame_peek(buf, len, cap, &flen) != SL_OK) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - tl_now_ms());
		if (left <= 0 || poll(&p, 1, left) != 1)
			die("no response within 90 s");
		ssize_t n = read(fd, buf + len, cap - len);
		if (n <= 0)
			die("the connection closed");
		len += (size_t)n;
	}
	close(fd);
	static struct sl_frame f;
	uint32_t c;
	char why[SL_ERRMSG_SIZE];
	if (sl_frame_decode(buf, flen, NULL, &f, &c, why) != SL_OK)
		die(why);
	return f.env;
}

static Sluice__Envelope *metadata(int port)
{
	Sluice__MetadataRequest mr = SLUICE__METADATA_REQUEST__INIT;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__METADATA;
	env.body_case = SLUICE__ENVELOPE__BODY_METADATA_REQUEST;
	env.metadata_request = &mr;
	return call(port, &env);
}

/* Partitions of topic "wide" without a leader in node i's Metadata. */
static int leaderless(int i)
{
	Sluice__Envelope *r = metadata(nodes[i].ports[0]);
	int none = partitions;
	const Sluice__MetadataResponse *m = r->metadata_response;
	for (size_t t = 0; m != NULL && t < m->n_topics; t++) {
		if (strcmp(m->topics[t]->name, "wide") != 0)
			continue;
		none = 0;
		for (size_t p = 0; p < m->topics[t]->n_partitions; p++)
			none += m->topics[t]->partitions[p]->leader < 1;
	}
	sluice__envelope__free_unpacked(r, NULL);
	return none;
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
	for (int i = 0; i < NODES; i++) {
		if (tl_free_ports(nodes[i].ports, 3) != 0)
			die("no free ports");
		size_t len = strlen(seeds);
		snprintf(seeds + len, sizeof(seeds) - len, "%s%d@127.0.0.1:%d", i ? "," : "", i + 1,
			 nodes[i].ports[1]);
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
			fprintf(stderr, "bench_cluster: node %d did not stop within 60 s\n", i + 1);
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

struct result {
	double answer_ms, all_led_ms, cpu_max, rss_max_mb, produce_rps;
};

/* Reads one response frame on fd into buf (blocking, 30 s). */
static Sluice__Envelope *read_frame(int fd, uint8_t *buf, size_t cap, size_t *have)
{
	size_t flen;
	int64_t deadline = tl_now_ms() + 30000;
	while (sl_frame_peek(buf, *have, cap, &flen) != SL_OK) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - tl_now_ms());
		if (left <= 0 || poll(&p, 1, left) != 1)
			die("no produce response within 30 s");
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

/* Phase 3: acknowledged records per second into one partition. */
static double produce_rate(int leader_port)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	uint8_t value[100];
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < batch_records; i++) {
		for (size_t k = 0; k < sizeof(value); k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			value[k] = (uint8_t)x;
		}
		if (sl_batch_builder_add(&b, 0, NULL, -1, value, sizeof(value), NULL, 0) != SL_OK)
			die("batch");
	}
	const uint8_t *bytes;
	size_t blen;
	if (sl_batch_builder_finish(&b, &bytes, &blen) != SL_OK)
		die("batch");
	Sluice__ProducePartition pp = SLUICE__PRODUCE_PARTITION__INIT;
	Sluice__ProducePartition *ppp = &pp;
	pp.topic = "p";
	Sluice__ProduceRequest pr = SLUICE__PRODUCE_REQUEST__INIT;
	pr.n_partitions = 1;
	pr.partitions = &ppp;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__PRODUCE;
	env.body_case = SLUICE__ENVELOPE__BODY_PRODUCE_REQUEST;
	env.produce_request = &pr;
	struct iovec seg = { (void *)bytes, blen };
	uint8_t *head;
	size_t hlen;
	if (sl_frame_encode(&env, &seg, 1, &head, &hlen) != SL_OK)
		die("encode");
	int fd = connect_to(leader_port);
	static uint8_t buf[1 << 20];
	size_t have = 0;
	int64_t acked = 0, sent = 0, t0 = tl_now_ms(), end = t0 + produce_seconds * 1000;
	int outstanding = 0;
	while (tl_now_ms() < end || outstanding > 0) {
		while (outstanding < inflight && tl_now_ms() < end) {
			struct iovec iov[2] = { { head, hlen }, { (void *)bytes, blen } };
			if (writev(fd, iov, 2) != (ssize_t)(hlen + blen))
				die("send");
			outstanding++;
			sent++;
		}
		Sluice__Envelope *r = read_frame(fd, buf, sizeof(buf), &have);
		if (r->produce_response == NULL || r->produce_response->n_results != 1 ||
		    r->produce_response->results[0]->error_code != 0) {
			fprintf(stderr, "bench_cluster: produce: %s %s\n", r->error_message,
				r->produce_response != NULL && r->produce_response->n_results == 1
					? r->produce_response->results[0]->error_message
					: "");
			die("produce failed");
		}
		sluice__envelope__free_unpacked(r, NULL);
		outstanding--;
		acked++;
	}
	double secs = (double)(tl_now_ms() - t0) / 1000.0;
	close(fd);
	free(head);
	sl_batch_builder_free(&b);
	(void)sent;
	return (double)acked * batch_records / secs;
}

static struct result run(int k)
{
	struct result res = { 0 };
	char dir[700];
	snprintf(dir, sizeof(dir), "%s/run%d", base_dir, k);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(dir, 0755) != 0)
		die("cannot create the run's directory");
	cluster_up(dir);

	/* The controller's leader, as node 1 knows it. */
	int leader = -1;
	for (int64_t deadline = tl_now_ms() + 30000; leader < 1 && tl_now_ms() < deadline;) {
		Sluice__Envelope *r = metadata(nodes[0].ports[0]);
		if (r->metadata_response != NULL)
			leader = (int)r->metadata_response->controller_id;
		sluice__envelope__free_unpacked(r, NULL);
	}
	if (leader < 1 || leader > NODES)
		die("no controller leader");

	Sluice__NewTopic nt = SLUICE__NEW_TOPIC__INIT;
	Sluice__NewTopic *ntp = &nt;
	nt.name = "wide";
	nt.partitions = (uint32_t)partitions;
	nt.replication_factor = (uint32_t)rf;
	Sluice__CreateTopicsRequest cr = SLUICE__CREATE_TOPICS_REQUEST__INIT;
	cr.n_topics = 1;
	cr.topics = &ntp;
	cr.timeout_ms = 60000;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__CREATE_TOPICS;
	env.body_case = SLUICE__ENVELOPE__BODY_CREATE_TOPICS_REQUEST;
	env.create_topics_request = &cr;
	int64_t t0 = tl_now_ms();
	Sluice__Envelope *r = call(nodes[leader - 1].ports[0], &env);
	res.answer_ms = (double)(tl_now_ms() - t0);
	if (r->error_code != 0 || r->create_topics_response == NULL ||
	    r->create_topics_response->n_topics != 1 ||
	    r->create_topics_response->topics[0]->error_code != 0) {
		fprintf(stderr, "bench_cluster: CreateTopics: %s %s\n", r->error_message,
			r->create_topics_response != NULL &&
					r->create_topics_response->n_topics == 1
				? r->create_topics_response->topics[0]->error_message
				: "");
		die("CreateTopics failed");
	}
	sluice__envelope__free_unpacked(r, NULL);
	for (int i = 0; i < NODES; i++) {
		int64_t deadline = t0 + 60000;
		while (leaderless(i) > 0) {
			if (tl_now_ms() > deadline)
				die("not every partition had a leader on every node within 60 s");
			struct timespec ts = { 0, 20 * 1000000 };
			nanosleep(&ts, NULL); /* the poll interval */
		}
	}
	res.all_led_ms = (double)(tl_now_ms() - t0);
	printf("run%d create_to_answer %.0f ms, create_to_all_leaders_on_every_node %.0f ms\n", k,
	       res.answer_ms, res.all_led_ms);

	/* Idle: let the reports and first snapshots settle, then measure. */
	struct timespec calm = { 5, 0 };
	nanosleep(&calm, NULL);
	long tck = sysconf(_SC_CLK_TCK);
	int64_t c0[NODES], c1[NODES];
	for (int i = 0; i < NODES; i++)
		c0[i] = tl_proc_cpu_ticks(nodes[i].p.pid);
	int64_t w0 = tl_now_ms();
	struct timespec idle = { idle_seconds, 0 };
	nanosleep(&idle, NULL);
	double w = (double)(tl_now_ms() - w0) / 1000.0;
	for (int i = 0; i < NODES; i++) {
		c1[i] = tl_proc_cpu_ticks(nodes[i].p.pid);
		double cpu = (double)(c1[i] - c0[i]) / (double)tck / w * 100.0;
		double rss = (double)tl_proc_rss_kb(nodes[i].p.pid) / 1024.0;
		printf("run%d node%d_idle cpu %.1f%% of one core, rss %.1f MiB, fds %d\n", k, i + 1, cpu,
		       rss, tl_proc_fd_count(nodes[i].p.pid));
		if (cpu > res.cpu_max)
			res.cpu_max = cpu;
		if (rss > res.rss_max_mb)
			res.rss_max_mb = rss;
	}
	if (produce_seconds > 0) {
		nt.name = "p";
		nt.partitions = 1;
		r = call(nodes[leader - 1].ports[0], &env);
		if (r->create_topics_response == NULL ||
		    r->create_topics_response->topics[0]->error_code != 0)
			die("CreateTopics of p failed");
		sluice__envelope__free_unpacked(r, NULL);
		int64_t pl = -1;
		for (int64_t deadline = tl_now_ms() + 30000; pl < 1 && tl_now_ms() < deadline;) {
			r = metadata(nodes[0].ports[0]);
			for (size_t t = 0; r->metadata_response != NULL &&
					   t < r->metadata_response->n_topics; t++)
				if (strcmp(r->metadata_response->topics[t]->name, "p") == 0)
					pl = r->metadata_response->topics[t]->partitions[0]->leader;
			sluice__envelope__free_unpacked(r, NULL);
		}
		if (pl < 1 || pl > NODES)
			die("p has no leader");
		res.produce_rps = produce_rate(nodes[pl - 1].ports[0]);
		printf("run%d produce 1 partition RF %d acks=all: %.0f records/s (%d in flight, "
		       "%d records of 100 bytes per batch)\n",
		       k, rf, res.produce_rps, inflight, batch_records);
	}
	cluster_down();
	if (!keep)
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return res;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
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
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--keep") == 0) {
			keep = true;
			continue;
		}
		if (v == NULL)
			die("usage: bench_cluster --sluiced PATH --dir DIR [--partitions N] [--rf R] "
			    "[--runs K] [--idle-seconds S] [--keep] [--produce-seconds S] [--inflight N] "
			    "[--batch-records N]");
		if (strcmp(a, "--sluiced") == 0)
			sluiced = v;
		else if (strcmp(a, "--dir") == 0)
			dir = v;
		else if (strcmp(a, "--partitions") == 0)
			partitions = atoi(v);
		else if (strcmp(a, "--rf") == 0)
			rf = atoi(v);
		else if (strcmp(a, "--runs") == 0)
			runs = atoi(v);
		else if (strcmp(a, "--idle-seconds") == 0)
			idle_seconds = atoi(v);
		else if (strcmp(a, "--produce-seconds") == 0)
			produce_seconds = atoi(v);
		else if (strcmp(a, "--inflight") == 0)
			inflight = atoi(v);
		else if (strcmp(a, "--batch-records") == 0)
			batch_records = atoi(v);
		else
			die("unknown option");
		i++;
	}
	if (sluiced == NULL || dir == NULL || partitions < 1 || rf < 1 || rf > NODES || runs < 1 ||
	    runs > 99 || idle_seconds < 1 || produce_seconds < 0 || inflight < 1 ||
	    batch_records < 1 || batch_records > 100000)
		die("usage: bench_cluster --sluiced PATH --dir DIR [--partitions N] [--rf R] "
		    "[--runs K] [--idle-seconds S] [--keep] [--produce-seconds S] [--inflight N] "
		    "[--batch-records N]");
	snprintf(base_dir, sizeof(base_dir), "%s", dir);
	for (char *p = base_dir + 1; *p != '\0'; p++) /* mkdir -p */
		if (*p == '/') {
			*p = '\0';
			mkdir(base_dir, 0755);
			*p = '/';
		}
	mkdir(base_dir, 0755);
	printf("# bench_cluster: %d sluiced nodes on 127.0.0.1 sharing %ld cores and one disk; "
	       "topic of %d partitions, RF %d; default timing (heartbeat 200 ms, election 1 s); "
	       "%d run(s)\n",
	       NODES, sysconf(_SC_NPROCESSORS_ONLN), partitions, rf, runs);
	fflush(stdout);
	double answer[99], led[99], cpu[99], rss[99], rps[99];
	for (int k = 0; k < runs; k++) {
		struct result r = run(k + 1);
		answer[k] = r.answer_ms;
		led[k] = r.all_led_ms;
		cpu[k] = r.cpu_max;
		rss[k] = r.rss_max_mb;
		rps[k] = r.produce_rps;
		fflush(stdout);
	}
	double l = median(led, runs), c = median(cpu, runs);
	printf("create_to_answer_ms %.0f ms (median of %d)\n", median(answer, runs), runs);
	printf("create_to_all_leaders_ms %.0f ms (median of %d; goal < 5000) %s\n", l, runs,
	       l < 5000 ? "ok" : "MISSED");
	printf("idle_cpu_per_node_max %.1f %% of one core (median of %d; goal < 5) %s\n", c, runs,
	       c < 5 ? "ok" : "MISSED");
	printf("rss_per_node_max %.1f MiB (median of %d)\n", median(rss, runs), runs);
	if (produce_seconds > 0)
		printf("produce_records_per_s %.0f (median of %d; raw protocol, 1 partition, RF %d, "
		       "acks=all)\n",
		       median(rps, runs), runs, rf);
	return 0;
}
