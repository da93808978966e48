/* sluiced as a process: configuration errors, the data directory's lock
 * and identity, the http listener, a clean stop on SIGTERM. Each test runs
 * real sluiced processes on 127.0.0.1 on ports of its own, in a directory
 * of its own, and kills every one by PID at the end (tests/lib/procs.h). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "batch.h"
#include "frame.h"
#include "procs.h"
#include "testlib.h"

#ifndef SLUICED_PATH
#error "SLUICED_PATH must name the sluiced binary"
#endif

static void fini(void)
{
	tl_proc_kill_all();
}

TestSuite(sluiced, .fini = fini, .timeout = 120);

struct node {
	struct tl_proc p;
	int ports[3]; /* client, peer, http */
	char dir[600];
	char log[640];
};

/* Starts sluiced as node id on n's directory and ports, plus extra flags. */
static void start(struct node *n, int id, const char *const *extra)
{
	char ids[16], cp[16], pp[16], hp[16];
	snprintf(ids, sizeof(ids), "%d", id);
	snprintf(cp, sizeof(cp), "%d", n->ports[0]);
	snprintf(pp, sizeof(pp), "%d", n->ports[1]);
	snprintf(hp, sizeof(hp), "%d", n->ports[2]);
	char *argv[32] = { SLUICED_PATH, "--node-id", ids, "--data-dir", n->dir, "--client-port",
			   cp, "--peer-port", pp, "--http-port", hp };
	int k = 11;
	bool offsets = false;
	for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
		offsets |= strcmp(extra[i], "--offsets-topic-partitions") == 0;
		argv[k++] = (char *)extra[i];
	}
	/* No __consumer_offsets unless asked: these tests count topics and
	 * replicas. */
	if (!offsets) {
		argv[k++] = "--offsets-topic-partitions";
		argv[k++] = "0";
	}
	argv[k] = NULL;
	cr_assert_eq(tl_proc_spawn(&n->p, argv, n->log), 0);
}

static void setup_node(struct node *n, const char *name)
{
	memset(n, 0, sizeof(*n));
	cr_assert_eq(tl_free_ports(n->ports, 3), 0);
	snprintf(n->dir, sizeof(n->dir), "%s/%s", tl_tmpdir(), name);
	snprintf(n->log, sizeof(n->log), "%s/%s.log", tl_tmpdir(), name);
}

/* n's http listener answers 200 on path. */
static bool answers_200(struct node *n, const char *path)
{
	int status;
	char body[256];
	return tl_http_get(n->ports[2], path, &status, body, sizeof(body), 1000) == 0 &&
	       status == 200;
}

static bool healthy(void *arg)
{
	return answers_200(arg, "/healthz");
}

static void wait_healthy(struct node *n)
{
	cr_assert(tl_wait_until(healthy, n, 20000, 25), "sluiced did not answer /healthz (see %s)",
		  n->log);
}

static char *slurp(const char *path);

/* The exit status once it exits within timeout_ms. */
static int exit_status(struct node *n, int timeout_ms)
{
	cr_assert_eq(tl_proc_wait(&n->p, timeout_ms), 1, "sluiced did not exit; its log:\n%s",
		     slurp(n->log));
	cr_assert(WIFEXITED(n->p.status), "sluiced died of signal %d", WTERMSIG(n->p.status));
	return WEXITSTATUS(n->p.status);
}

/* SIGTERM; the node must exit 0 within 20 s. */
static void stop_cleanly(struct node *n)
{
	cr_assert_eq(tl_proc_kill(&n->p, SIGTERM), 0);
	cr_assert_eq(exit_status(n, 20000), 0);
	tl_proc_close(&n->p);
}

/* The file's last 64 KiB. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	static char buf[65536];
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	return buf;
}

static void expect_log(struct node *n, const char *text)
{
	cr_assert(strstr(slurp(n->log), text) != NULL, "'%s' is not in %s:\n%s", text, n->log,
		  slurp(n->log));
}

static bool ready(void *arg)
{
	return answers_200(arg, "/readyz");
}

static void wait_ready(struct node *n)
{
	cr_assert(tl_wait_until(ready, n, 30000, 50), "sluiced did not become ready; its log:\n%s",
		  slurp(n->log));
}

Test(sluiced, a_node_alone_joins_and_answers_health_readiness_and_metrics)
{
	struct node n;
	setup_node(&n, "n1");
	start(&n, 1, NULL);
	wait_healthy(&n);
	wait_ready(&n); /* a cluster of one: it sets the cluster id and registers */
	int status;
	char body[4096];
	cr_assert_eq(tl_http_get(n.ports[2], "/metrics", &status, body, sizeof(body), 5000), 0);
	cr_assert_eq(status, 200);
	cr_assert(strstr(body, "sluice_node_up{node=\"1\"} 1\n") != NULL, "%s", body);
	cr_assert(strstr(body, "# TYPE sluice_node_ready gauge\n") != NULL, "%s", body);
	cr_assert(strstr(body, "sluice_cluster_nodes{node=\"1\"} 1\n") != NULL, "%s", body);
	cr_assert(strstr(body, "sluice_cluster_info{node=\"1\",cluster_id=\"") != NULL, "%s", body);
	cr_assert_eq(tl_http_get(n.ports[2], "/nothing", &status, body, sizeof(body), 5000), 0);
	cr_assert_eq(status, 404);
	cr_assert_eq(tl_proc_kill(&n.p, SIGTERM), 0);
	cr_assert_eq(exit_status(&n, 20000), 0);
	expect_log(&n, "http: listening addr=127.0.0.1:");
	expect_log(&n, "main: stopped");
	expect_log(&n, " node=1 ");
	expect_log(&n, "main: ready cluster_id=");
}

Test(sluiced, a_second_process_on_the_same_directory_is_refused)
{
	struct node a, b;
	setup_node(&a, "a");
	setup_node(&b, "b");
	snprintf(b.dir, sizeof(b.dir), "%s", a.dir);
	start(&a, 1, NULL);
	wait_healthy(&a);
	start(&b, 1, NULL);
	cr_assert_eq(exit_status(&b, 20000), 1);
	char want[96];
	snprintf(want, sizeof(want), "is in use by another sluiced (pid %d)", (int)a.p.pid);
	expect_log(&b, want);
	cr_assert(healthy(&a), "the first process suffered from the second");
}

Test(sluiced, a_data_directory_of_another_cluster_stops_the_node)
{
	struct node n;
	setup_node(&n, "n1");
	start(&n, 1, NULL);
	wait_ready(&n);
	stop_cleanly(&n);
	char *id = NULL, path[700];
	snprintf(path, sizeof(path), "%s/node.id", n.dir);
	id = strdup(slurp(path));
	cr_assert_not_null(strstr(id, "\ncluster_id="), "node.id: %s", id);
	/* Its metadata gone, the node founds a new cluster, which its
	 * directory does not belong to. */
	snprintf(path, sizeof(path), "%s/raft", n.dir);
	tl_rmtree(path);
	start(&n, 1, NULL);
	cr_assert_eq(exit_status(&n, 20000), 1);
	expect_log(&n, "this data directory belongs to cluster ");
	snprintf(path, sizeof(path), "%s/node.id", n.dir);
	cr_assert_str_eq(slurp(path), id, "node.id changed");
	free(id);
}

Test(sluiced, restarts_at_once_after_kill_9_with_the_same_identity)
{
	struct node n;
	setup_node(&n, "n1");
	start(&n, 1, NULL);
	wait_healthy(&n);
	char path[700], first[256];
	snprintf(path, sizeof(path), "%s/node.id", n.dir);
	snprintf(first, sizeof(first), "%s", slurp(path));
	cr_assert(strstr(first, "node_id=1\nuuid=") == first, "%s", first);
	tl_proc_close(&n.p); /* SIGKILL and reap */
	start(&n, 1, NULL);
	wait_healthy(&n);
	cr_assert_str_eq(slurp(path), first, "the node's identity changed across a restart");
	stop_cleanly(&n);
}

Test(sluiced, a_directory_of_another_node_is_refused)
{
	struct node n;
	setup_node(&n, "n1");
	start(&n, 1, NULL);
	wait_healthy(&n);
	stop_cleanly(&n);
	start(&n, 2, NULL);
	cr_assert_eq(exit_status(&n, 20000), 1);
	expect_log(&n, "data directory belongs to node 1, but node_id is 2");
}

Test(sluiced, bad_configuration_fails_start_up_naming_the_key)
{
	struct node n;
	setup_node(&n, "n1");
	const char *const range[] = { "--election-ms", "99999999", NULL };
	start(&n, 1, range);
	cr_assert_eq(exit_status(&n, 20000), 2);
	expect_log(&n, "sluiced: --election-ms: election_ms must be an integer in 50..600000");
	tl_proc_close(&n.p);

	char conf[700];
	snprintf(conf, sizeof(conf), "%s/bad.conf", tl_tmpdir());
	FILE *f = fopen(conf, "w");
	cr_assert_not_null(f);
	fprintf(f, "# a comment\nrack = r1\nretention = 7d\n");
	fclose(f);
	const char *const file[] = { "--config", conf, NULL };
	start(&n, 1, file);
	cr_assert_eq(exit_status(&n, 20000), 2);
	char want[800];
	snprintf(want, sizeof(want), "sluiced: %s:3: unknown key 'retention'", conf);
	expect_log(&n, want);
	cr_assert(access(n.dir, F_OK) != 0, "a failed start created the data directory");
}

/* ---- The client protocol -------------------------------------------- */

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
}

/* The last response read: its data segments point into a buffer that
 * stays valid until the next read. */
static struct sl_frame resp_frame;

/* Reads one whole response frame (within 10 s) and decodes it; NULL at
 * end of stream or when the connection was reset. */
static Sluice__Envelope *read_response(int fd)
{
	static uint8_t buf[1 << 22];
	size_t len = 0, flen = 0;
	int64_t deadline = tl_now_ms() + 10000;
	while (sl_frame_peek(buf, len, sizeof(buf), &flen) != SL_OK) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - tl_now_ms());
		cr_assert(left > 0 && poll(&p, 1, left) == 1, "no response within 10 s");
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n == 0 || (n < 0 && errno == ECONNRESET)) /* the node went away */
			return NULL;
		cr_assert_gt(n, 0, "read: %s", strerror(errno));
		len += (size_t)n;
	}
	cr_assert_eq(len, flen, "more than one frame came back");
	uint32_t corr;
	char why[SL_ERRMSG_SIZE];
	cr_assert_eq(sl_frame_decode(buf, flen, NULL, &resp_frame, &corr, why), SL_OK, "%s", why);
	return resp_frame.env;
}

static void send_env_data(int fd, Sluice__Envelope *env, const struct iovec *seg, size_t nseg)
{
	uint8_t *head;
	size_t len;
	cr_assert_eq(sl_frame_encode(env, seg, nseg, &head, &len), SL_OK);
	send_all(fd, head, len);
	free(head);
	for (size_t i = 0; i < nseg; i++)
		send_all(fd, seg[i].iov_base, seg[i].iov_len);
}

static void send_env(int fd, Sluice__Envelope *env)
{
	send_env_data(fd, env, NULL, 0);
}

Test(sluiced, the_client_listener_answers_api_versions_and_refuses_bad_frames_precisely)
{
	struct node n;
	setup_node(&n, "n1");
	const char *const small[] = { "--max-frame-bytes", "65536", NULL };
	start(&n, 1, small);
	wait_healthy(&n);
	int fd = connect_to(n.ports[0]);

	Sluice__ApiVersionsRequest avr = SLUICE__API_VERSIONS_REQUEST__INIT;
	avr.client_software = "test_sluiced";
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.correlation_id = 41;
	env.api_key = SLUICE__API_KEY__API_VERSIONS;
	env.body_case = SLUICE__ENVELOPE__BODY_API_VERSIONS_REQUEST;
	env.api_versions_request = &avr;
	send_env(fd, &env);
	Sluice__Envelope *r = read_response(fd);
	cr_assert_not_null(r);
	cr_assert_eq(r->correlation_id, 41);
	cr_assert_eq(r->error_code, 0, "%s", r->error_message);
	cr_assert_eq(r->body_case, SLUICE__ENVELOPE__BODY_API_VERSIONS_RESPONSE);
	Sluice__ApiVersionsResponse *av = r->api_versions_response;
	cr_assert_eq(av->max_frame_bytes, 65536);
	cr_assert_geq(av->n_apis, 1);
	cr_assert_eq(av->apis[0]->api_key, SLUICE__API_KEY__API_VERSIONS);
	sluice__envelope__free_unpacked(r, NULL);

	/* An API this node does not serve, then a version it does not. */
	env.correlation_id = 42;
	env.api_key = (Sluice__ApiKey)99;
	send_env(fd, &env);
	r = read_response(fd);
	cr_assert_eq(r->correlation_id, 42);
	cr_assert_eq(r->error_code, SL_EUNSUPPORTED_VERSION);
	cr_assert(strstr(r->error_message, "API 99 is not served") != NULL, "%s", r->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	/* A served API whose envelope carries another API's request. */
	env.correlation_id = 46;
	env.api_key = SLUICE__API_KEY__METADATA;
	send_env(fd, &env);
	r = read_response(fd);
	cr_assert_eq(r->error_code, SL_EINVALID_REQUEST);
	cr_assert(strstr(r->error_message, "needs its request") != NULL, "%s", r->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	env.correlation_id = 43;
	env.api_key = SLUICE__API_KEY__API_VERSIONS;
	env.api_version = 9;
	send_env(fd, &env);
	r = read_response(fd);
	cr_assert_eq(r->error_code, SL_EUNSUPPORTED_VERSION);
	cr_assert(strstr(r->error_message, "version 9 is not served") != NULL, "%s", r->error_message);
	sluice__envelope__free_unpacked(r, NULL);

	/* An envelope that does not decode: the stream stays usable. */
	uint8_t junk[] = { 0, 0, 0, 9, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f };
	send_all(fd, junk, sizeof(junk));
	r = read_response(fd);
	cr_assert_eq(r->error_code, SL_EINVALID_REQUEST);
	cr_assert(strstr(r->error_message, "does not decode") != NULL, "%s", r->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	env.correlation_id = 44;
	env.api_version = 0;
	send_env(fd, &env);
	r = read_response(fd);
	cr_assert_eq(r->correlation_id, 44);
	cr_assert_eq(r->error_code, 0);
	sluice__envelope__free_unpacked(r, NULL);

	/* A frame above max_frame_bytes closes the connection, with a reason
	 * in the log; the node goes on serving others. */
	uint8_t big[8] = { 0, 1, 0, 0, 0, 0, 0, 0 }; /* 65,536 bytes follow */
	send_all(fd, big, sizeof(big));
	cr_assert_null(read_response(fd), "an oversized frame did not close the connection");
	close(fd);
	expect_log(&n, "frame of 65540 bytes exceeds max_frame_bytes 65536");
	fd = connect_to(n.ports[0]);
	env.correlation_id = 45;
	send_env(fd, &env);
	r = read_response(fd);
	cr_assert_eq(r->correlation_id, 45);
	sluice__envelope__free_unpacked(r, NULL);
	close(fd);
	stop_cleanly(&n);
}

/* ---- The controller's group ------------------------------------------ */

static Sluice__Envelope *create_topic(int fd, const char *name, uint32_t partitions, uint32_t rf,
				      const char *config_name, const char *config_value);
static Sluice__Envelope *get_metadata(int fd);
static const Sluice__TopicResult *only_result(const Sluice__Envelope *r);

/* Node i's metadata lists topic "t" with 6 partitions of 3 replicas. */
static bool sees_topic(void *arg)
{
	struct node *n = arg;
	int fd = connect_to(n->ports[0]);
	Sluice__Envelope *r = get_metadata(fd);
	close(fd);
	bool ok = r->error_code == 0 && r->metadata_response->n_topics == 1 &&
		  strcmp(r->metadata_response->topics[0]->name, "t") == 0 &&
		  r->metadata_response->topics[0]->n_partitions == 6;
	for (size_t p = 0; ok && p < 6; p++)
		ok = r->metadata_response->topics[0]->partitions[p]->n_replicas == 3;
	sluice__envelope__free_unpacked(r, NULL);
	return ok;
}

/* The value of metric name{node="id"} on n's /metrics, or -1. */
static long long metric(struct node *n, int id, const char *name)
{
	int status;
	static char body[65536];
	if (tl_http_get(n->ports[2], "/metrics", &status, body, sizeof(body), 2000) != 0 ||
	    status != 200)
		return -1;
	char key[128];
	snprintf(key, sizeof(key), "\n%s{node=\"%d\"} ", name, id);
	const char *p = strstr(body, key);
	return p == NULL ? -1 : strtoll(p + strlen(key), NULL, 10);
}

/* The cluster id n's /metrics shows, into out ("" when none). */
static void cluster_id(struct node *n, char *out, size_t cap)
{
	int status;
	static char body[65536];
	out[0] = '\0';
	if (tl_http_get(n->ports[2], "/metrics", &status, body, sizeof(body), 2000) != 0)
		return;
	const char *p = strstr(body, "cluster_id=\"");
	if (p != NULL)
		snprintf(out, cap, "%.*s", (int)strcspn(p + 12, "\""), p + 12);
}

struct ring {
	struct node n[5];
	int count;
	bool up[5];
	char seeds[512];
	const char *topic;
	uint32_t partitions;
	long long leader;
};

/* Ports, directories and the seed list of count nodes. */
static void ring_setup(struct ring *g, int count)
{
	g->count = count;
	for (int i = 0; i < count; i++) {
		char name[16];
		snprintf(name, sizeof(name), "n%d", i + 1);
		setup_node(&g->n[i], name);
		size_t len = strlen(g->seeds);
		snprintf(g->seeds + len, sizeof(g->seeds) - len, "%s%d@127.0.0.1:%d", i ? "," : "",
			 i + 1, g->n[i].ports[1]);
	}
}

static void ring_start_node(struct ring *g, int i)
{
	const char *const extra[] = { "--seeds", g->seeds, "--heartbeat-ms", "100", "--election-ms",
				      "500", NULL };
	start(&g->n[i], i + 1, extra);
	g->up[i] = true;
}

/* Every up node names the same controller leader, an up node. */
static bool ring_agree(void *arg)
{
	struct ring *g = arg;
	long long first = -1;
	for (int i = 0; i < g->count; i++) {
		if (!g->up[i])
			continue;
		long long l = metric(&g->n[i], i + 1, "sluice_controller_leader");
		if (l <= 0 || (first != -1 && l != first))
			return false;
		first = l;
	}
	g->leader = first;
	return first >= 1 && first <= g->count && g->up[first - 1];
}

/* Node 1's metadata lists all three nodes (ready means a node registered
 * itself, not that node 1 applied the others' registrations yet). */
static bool first_knows_three(void *arg)
{
	struct ring *g = arg;
	return metric(&g->n[0], 1, "sluice_cluster_nodes") == 3;
}

Test(sluiced, three_nodes_elect_a_controller_join_and_fail_over_after_kill_9)
{
	static struct ring t;
	ring_setup(&t, 3);
	/* One voter of three: no quorum, so no controller, so not ready. */
	ring_start_node(&t, 0);
	wait_healthy(&t.n[0]);
	int status;
	char body[512];
	cr_assert_eq(tl_http_get(t.n[0].ports[2], "/readyz", &status, body, sizeof(body), 5000), 0);
	cr_assert_eq(status, 503);
	cr_assert(strstr(body, "not ready: not joined:") != NULL, "%s", body);
	for (int i = 1; i < 3; i++)
		ring_start_node(&t, i);
	cr_assert(tl_wait_until(ring_agree, &t, 30000, 100), "no controller leader all agree on");
	for (int i = 0; i < 3; i++)
		wait_ready(&t.n[i]); /* the followers registered through the leader */
	cr_assert(tl_wait_until(first_knows_three, &t, 10000, 50), "node 1 lacks a node");
	char id[3][64];
	for (int i = 0; i < 3; i++)
		cluster_id(&t.n[i], id[i], sizeof(id[i]));
	cr_assert_eq(strlen(id[0]), 36, "cluster id '%s'", id[0]);
	cr_assert(strcmp(id[0], id[1]) == 0 && strcmp(id[0], id[2]) == 0,
		  "the nodes disagree on the cluster id: %s %s %s", id[0], id[1], id[2]);

	/* Writes go to the controller's leader; a follower says which. */
	int leader0 = (int)t.leader, follower = leader0 % 3; /* another node's index */
	int fd = connect_to(t.n[follower].ports[0]);
	Sluice__Envelope *r = create_topic(fd, "t", 6, 3, NULL, NULL);
	cr_assert_eq(r->error_code, SL_ENOT_CONTROLLER, "%d %s", r->error_code, r->error_message);
	char want[128];
	snprintf(want, sizeof(want), "node %d leads the controller (127.0.0.1:%d)", leader0,
		 t.n[leader0 - 1].ports[0]);
	cr_assert_str_eq(r->error_message, want);
	sluice__envelope__free_unpacked(r, NULL);
	close(fd);
	fd = connect_to(t.n[leader0 - 1].ports[0]);
	r = create_topic(fd, "t", 6, 3, NULL, NULL);
	cr_assert_eq(only_result(r)->error_code, 0, "%s", only_result(r)->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	close(fd);
	for (int i = 0; i < 3; i++)
		cr_assert(tl_wait_until(sees_topic, &t.n[i], 20000, 50), "node %d never saw the topic",
			  i + 1);
	int old = (int)t.leader;
	tl_proc_close(&t.n[old - 1].p); /* SIGKILL */
	t.up[old - 1] = false;
	cr_assert(tl_wait_until(ring_agree, &t, 30000, 100), "no new controller leader after kill -9");
	cr_assert_neq(t.leader, old);
	ring_start_node(&t, old - 1);
	cr_assert(tl_wait_until(ring_agree, &t, 30000, 100), "the restarted node did not rejoin");
	wait_ready(&t.n[old - 1]); /* its metadata replayed from its log */
	cr_assert_eq(metric(&t.n[old - 1], old, "sluice_cluster_nodes"), 3);
	cr_assert(sees_topic(&t.n[old - 1]), "the topic did not survive a kill -9");
	char again[64];
	cluster_id(&t.n[old - 1], again, sizeof(again));
	cr_assert_str_eq(again, id[0], "the cluster id changed across a kill -9");
	/* SIGTERM hands the controller off before the leader stops. */
	int leader = (int)t.leader;
	cr_assert_eq(tl_proc_kill(&t.n[leader - 1].p, SIGTERM), 0);
	cr_assert_eq(exit_status(&t.n[leader - 1], 30000), 0);
	expect_log(&t.n[leader - 1], "handoff done moved="); /* group 0 and led partitions */
	expect_log(&t.n[leader - 1], " failed=0");
	t.up[leader - 1] = false;
	cr_assert(tl_wait_until(ring_agree, &t, 30000, 100), "no leader after the handoff");
	for (int i = 0; i < 3; i++) {
		if (!t.up[i])
			continue;
		cr_assert_eq(tl_proc_kill(&t.n[i].p, SIGTERM), 0);
		cr_assert_eq(exit_status(&t.n[i], 30000), 0);
	}
}

/* ---- Topics through the client protocol ------------------------------- */

static uint32_t next_corr = 100;

/* Sends req (body set by the caller) and returns the response. */
static Sluice__Envelope *call(int fd, Sluice__Envelope *req)
{
	req->correlation_id = ++next_corr;
	send_env(fd, req);
	Sluice__Envelope *r = read_response(fd);
	cr_assert_not_null(r, "the connection closed");
	cr_assert_eq(r->correlation_id, req->correlation_id);
	return r;
}

/* CreateTopics of one topic; timeout_ms > 0 waits for its leaders. */
static Sluice__Envelope *create_topic_wait(int fd, const char *name, uint32_t partitions,
					   uint32_t rf, const char *config_name,
					   const char *config_value, uint32_t timeout_ms)
{
	Sluice__ConfigEntry ce = SLUICE__CONFIG_ENTRY__INIT;
	Sluice__ConfigEntry *cep = &ce;
	Sluice__NewTopic nt = SLUICE__NEW_TOPIC__INIT;
	Sluice__NewTopic *ntp = &nt;
	nt.name = (char *)name;
	nt.partitions = partitions;
	nt.replication_factor = rf;
	if (config_name != NULL) {
		ce.name = (char *)config_name;
		ce.value = (char *)config_value;
		nt.n_configs = 1;
		nt.configs = &cep;
	}
	Sluice__CreateTopicsRequest cr = SLUICE__CREATE_TOPICS_REQUEST__INIT;
	cr.n_topics = 1;
	cr.topics = &ntp;
	cr.timeout_ms = timeout_ms;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__CREATE_TOPICS;
	env.body_case = SLUICE__ENVELOPE__BODY_CREATE_TOPICS_REQUEST;
	env.create_topics_request = &cr;
	return call(fd, &env);
}

static Sluice__Envelope *create_topic(int fd, const char *name, uint32_t partitions, uint32_t rf,
				      const char *config_name, const char *config_value)
{
	return create_topic_wait(fd, name, partitions, rf, config_name, config_value, 0);
}

static Sluice__Envelope *get_metadata(int fd)
{
	Sluice__MetadataRequest mr = SLUICE__METADATA_REQUEST__INIT;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__METADATA;
	env.body_case = SLUICE__ENVELOPE__BODY_METADATA_REQUEST;
	env.metadata_request = &mr;
	return call(fd, &env);
}

/* The topic's result in a CreateTopics or DeleteTopics response. */
static const Sluice__TopicResult *only_result(const Sluice__Envelope *r)
{
	cr_assert_eq(r->error_code, 0, "%s", r->error_message);
	const Sluice__CreateTopicsResponse *cr = r->create_topics_response;
	const Sluice__DeleteTopicsResponse *dr = r->delete_topics_response;
	size_t n = cr != NULL ? cr->n_topics : dr->n_topics;
	cr_assert_eq(n, 1);
	return cr != NULL ? cr->topics[0] : dr->topics[0];
}

/* /metrics counts the requests of the topics test, per API. */
static bool counted_requests(void *arg)
{
	struct node *n = arg;
	int status;
	static char body[1 << 17];
	if (tl_http_get(n->ports[2], "/metrics", &status, body, sizeof(body), 2000) != 0)
		return false;
	return strstr(body, "sluice_api_requests_total{node=\"1\",api=\"CreateTopics\"} 9\n") !=
		       NULL &&
	       strstr(body, "sluice_api_requests_total{node=\"1\",api=\"DeleteTopics\"} 3\n") !=
		       NULL &&
	       strstr(body, "sluice_api_request_duration_seconds_count{node=\"1\",api=\"Metadata\"}"
			    " 2\n") != NULL &&
	       strstr(body, "sluice_api_request_duration_seconds_bucket{node=\"1\",api=\"Metadata\","
			    "le=\"+Inf\"} 2\n") != NULL;
}

Test(sluiced, topics_are_created_described_and_deleted_through_the_controller)
{
	struct node n;
	setup_node(&n, "n1");
	start(&n, 1, NULL);
	wait_ready(&n);
	int fd = connect_to(n.ports[0]);

	Sluice__Envelope *r = create_topic(fd, "orders", 3, 1, "cleanup.policy", "compact");
	const Sluice__TopicResult *tr = only_result(r);
	cr_assert_eq(tr->error_code, 0, "%s", tr->error_message);
	sluice__envelope__free_unpacked(r, NULL);

	struct {
		const char *name;
		uint32_t partitions, rf;
		const char *cfg, *val;
		int err;
		const char *msg;
	} bad[] = {
		{ "orders", 1, 1, NULL, NULL, SL_ETOPIC_ALREADY_EXISTS, "topic 'orders' already exists" },
		{ "a/b", 1, 1, NULL, NULL, SL_EINVALID_TOPIC, "may hold only letters" },
		{ "x", 0, 1, NULL, NULL, SL_EINVALID_PARTITIONS, "partitions must be 1..100000" },
		{ "x", 1, 2, NULL, NULL, SL_EINVALID_REPLICATION_FACTOR,
		  "replication factor 2 is above the 1 registered nodes" },
		{ "x", 1, 1, "retention", "7d", SL_EINVALID_CONFIG, "unknown config 'retention'" },
		{ "x", 1, 1, "retention.ms", "7d", SL_EINVALID_CONFIG, "retention.ms: bad value '7d'" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = create_topic(fd, bad[i].name, bad[i].partitions, bad[i].rf, bad[i].cfg, bad[i].val);
		tr = only_result(r);
		cr_assert_eq(tr->error_code, bad[i].err, "case %zu: %d %s", i, tr->error_code,
			     tr->error_message);
		cr_assert(strstr(tr->error_message, bad[i].msg) != NULL, "case %zu: %s", i,
			  tr->error_message);
		sluice__envelope__free_unpacked(r, NULL);
	}

	r = get_metadata(fd);
	cr_assert_eq(r->error_code, 0, "%s", r->error_message);
	Sluice__MetadataResponse *m = r->metadata_response;
	cr_assert_eq(strlen(m->cluster_id), 36);
	cr_assert_eq(m->controller_id, 1);
	cr_assert_eq(m->n_nodes, 1);
	cr_assert_eq(m->nodes[0]->port, (uint32_t)n.ports[0]);
	cr_assert_eq(m->n_topics, 1, "a refused creation left a topic behind");
	cr_assert_str_eq(m->topics[0]->name, "orders");
	cr_assert_eq(m->topics[0]->n_partitions, 3);
	for (size_t p = 0; p < 3; p++) {
		cr_assert_eq(m->topics[0]->partitions[p]->n_replicas, 1);
		cr_assert_eq(m->topics[0]->partitions[p]->replicas[0], 1);
	}
	sluice__envelope__free_unpacked(r, NULL);

	/* Every config as it takes effect, defaults included; -1: no limit. */
	r = create_topic(fd, "forever", 1, 1, "retention.ms", "-1");
	cr_assert_eq(only_result(r)->error_code, 0, "%s", only_result(r)->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	Sluice__DescribeTopicsRequest dt = SLUICE__DESCRIBE_TOPICS_REQUEST__INIT;
	char *dnames[] = { "orders", "nope", "forever" };
	dt.n_names = 3;
	dt.names = dnames;
	Sluice__Envelope denv = SLUICE__ENVELOPE__INIT;
	denv.api_key = SLUICE__API_KEY__DESCRIBE_TOPICS;
	denv.body_case = SLUICE__ENVELOPE__BODY_DESCRIBE_TOPICS_REQUEST;
	denv.describe_topics_request = &dt;
	r = call(fd, &denv);
	cr_assert_eq(r->error_code, 0, "%s", r->error_message);
	Sluice__DescribeTopicsResponse *d = r->describe_topics_response;
	cr_assert_eq(d->n_topics, 3);
	cr_assert_eq(d->topics[0]->error_code, 0);
	cr_assert_eq(d->topics[0]->replication_factor, 1);
	cr_assert_eq(d->topics[0]->n_partitions, 3);
	cr_assert_eq(d->topics[1]->error_code, SL_EUNKNOWN_TOPIC_OR_PARTITION);
	char configs[2][512] = { "", "" };
	for (int t = 0; t < 2; t++) {
		const Sluice__TopicDescription *td = d->topics[t == 0 ? 0 : 2];
		for (size_t i = 0; i < td->n_configs; i++) {
			size_t len = strlen(configs[t]);
			snprintf(configs[t] + len, sizeof(configs[t]) - len, "%s=%s ",
				 td->configs[i]->name, td->configs[i]->value);
		}
	}
	cr_assert_str_eq(configs[0], "cleanup.policy=compact max.message.bytes=16777216 "
				     "retention.bytes=-1 retention.ms=604800000 "
				     "segment.bytes=1073741824 ");
	cr_assert(strstr(configs[1], "cleanup.policy=delete ") != NULL, "%s", configs[1]);
	cr_assert(strstr(configs[1], "retention.ms=-1 ") != NULL, "%s", configs[1]);
	sluice__envelope__free_unpacked(r, NULL);
	r = create_topic(fd, "x", 1, 1, "segment.bytes", "-1");
	cr_assert_eq(only_result(r)->error_code, SL_EINVALID_CONFIG);
	sluice__envelope__free_unpacked(r, NULL);
	char *forever[] = { "forever" };
	Sluice__DeleteTopicsRequest df = SLUICE__DELETE_TOPICS_REQUEST__INIT;
	df.n_names = 1;
	df.names = forever;
	denv.api_key = SLUICE__API_KEY__DELETE_TOPICS;
	denv.body_case = SLUICE__ENVELOPE__BODY_DELETE_TOPICS_REQUEST;
	denv.delete_topics_request = &df;
	r = call(fd, &denv);
	cr_assert_eq(only_result(r)->error_code, 0);
	sluice__envelope__free_unpacked(r, NULL);

	Sluice__DeleteTopicsRequest dr = SLUICE__DELETE_TOPICS_REQUEST__INIT;
	char *names[] = { "orders", "nope" };
	dr.n_names = 1;
	dr.names = names;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__DELETE_TOPICS;
	env.body_case = SLUICE__ENVELOPE__BODY_DELETE_TOPICS_REQUEST;
	env.delete_topics_request = &dr;
	r = call(fd, &env);
	cr_assert_eq(only_result(r)->error_code, 0, "%s", only_result(r)->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	dr.names = names + 1;
	r = call(fd, &env);
	cr_assert_eq(only_result(r)->error_code, SL_EUNKNOWN_TOPIC_OR_PARTITION);
	sluice__envelope__free_unpacked(r, NULL);
	r = get_metadata(fd);
	cr_assert_eq(r->error_code, 0, "%s", r->error_message);
	cr_assert_eq(r->metadata_response->n_topics, 0);
	sluice__envelope__free_unpacked(r, NULL);
	close(fd);
	/* Every request counted and timed per API (published each second). */
	cr_assert(tl_wait_until(counted_requests, &n, 5000, 100), "no per-API request metrics");
	stop_cleanly(&n);
}

Test(sluiced, the_metadata_survives_a_restart_through_a_raft_snapshot)
{
	/* Group 0 snapshots every 256 entries: 300 topics make one, and the
	 * restart restores it before replaying the rest of the log. */
	struct node n;
	setup_node(&n, "n1");
	start(&n, 1, NULL);
	wait_ready(&n);
	int fd = connect_to(n.ports[0]);
	enum { TOPICS = 300 };
	static Sluice__NewTopic nt[TOPICS];
	static Sluice__NewTopic *ntp[TOPICS];
	static char names[TOPICS][16];
	for (int i = 0; i < TOPICS; i++) {
		sluice__new_topic__init(&nt[i]);
		snprintf(names[i], sizeof(names[i]), "t%03d", i);
		nt[i].name = names[i];
		nt[i].partitions = 1;
		nt[i].replication_factor = 1;
		ntp[i] = &nt[i];
	}
	Sluice__CreateTopicsRequest cr = SLUICE__CREATE_TOPICS_REQUEST__INIT;
	cr.n_topics = TOPICS;
	cr.topics = ntp;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__CREATE_TOPICS;
	env.body_case = SLUICE__ENVELOPE__BODY_CREATE_TOPICS_REQUEST;
	env.create_topics_request = &cr;
	Sluice__Envelope *r = call(fd, &env);
	cr_assert_eq(r->error_code, 0, "%s", r->error_message);
	cr_assert_eq(r->create_topics_response->n_topics, TOPICS);
	for (int i = 0; i < TOPICS; i++)
		cr_assert_eq(r->create_topics_response->topics[i]->error_code, 0, "%s",
			     r->create_topics_response->topics[i]->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	close(fd);
	stop_cleanly(&n);
	char snap[700];
	snprintf(snap, sizeof(snap), "%s/raft/g0/snap1", n.dir);
	cr_assert_eq(access(snap, F_OK), 0, "group 0 took no snapshot");

	start(&n, 1, NULL);
	wait_ready(&n);
	fd = connect_to(n.ports[0]);
	r = get_metadata(fd);
	cr_assert_eq(r->error_code, 0, "%s", r->error_message);
	cr_assert_eq(r->metadata_response->n_topics, TOPICS);
	cr_assert_str_eq(r->metadata_response->topics[TOPICS - 1]->name, "t299");
	cr_assert_eq(r->metadata_response->topics[TOPICS - 1]->partitions[0]->replicas[0], 1);
	sluice__envelope__free_unpacked(r, NULL);
	close(fd);
	stop_cleanly(&n);
}

/* ---- Partitions: groups on their replicas, leaders in the metadata ---- */

/* Starts count nodes (seeds all; the first 1, 3 or 5 vote) and waits
 * until every one is ready. */
static void ring_up(struct ring *g, int count)
{
	ring_setup(g, count);
	for (int i = 0; i < count; i++)
		ring_start_node(g, i);
	for (int i = 0; i < count; i++)
		wait_ready(&g->n[i]);
}

/* Node i's metadata gives every partition of the topic a leader that is
 * up and one of its replicas, with that leader in sync. */
static bool node_sees_leaders(struct ring *g, int i)
{
	int fd = connect_to(g->n[i].ports[0]);
	Sluice__Envelope *r = get_metadata(fd);
	close(fd);
	const Sluice__MetadataResponse *m = r->metadata_response;
	const Sluice__TopicInfo *t = NULL;
	for (size_t k = 0; m != NULL && k < m->n_topics; k++)
		if (strcmp(m->topics[k]->name, g->topic) == 0)
			t = m->topics[k];
	bool ok = t != NULL && t->n_partitions == g->partitions;
	for (size_t p = 0; ok && p < t->n_partitions; p++) {
		const Sluice__PartitionInfo *pi = t->partitions[p];
		bool replica = false, in_sync = false;
		for (size_t k = 0; k < pi->n_replicas; k++)
			replica = replica || (int64_t)pi->replicas[k] == pi->leader;
		for (size_t k = 0; k < pi->n_isr; k++)
			in_sync = in_sync || (int64_t)pi->isr[k] == pi->leader;
		ok = pi->leader >= 1 && pi->leader <= g->count && g->up[pi->leader - 1] && replica &&
		     in_sync;
	}
	sluice__envelope__free_unpacked(r, NULL);
	return ok;
}

static bool all_see_leaders(void *arg)
{
	struct ring *g = arg;
	for (int i = 0; i < g->count; i++)
		if (g->up[i] && !node_sees_leaders(g, i))
			return false;
	return true;
}

/* Creates the topic through node i, waiting up to 30 s for its leaders;
 * returns the result's error code. */
static int create_led(struct ring *g, int i, const char *name, uint32_t partitions, uint32_t rf)
{
	int fd = connect_to(g->n[i].ports[0]);
	Sluice__Envelope *r = create_topic_wait(fd, name, partitions, rf, NULL, NULL, 30000);
	close(fd);
	const Sluice__TopicResult *tr = only_result(r);
	int err = tr->error_code;
	if (err != 0)
		cr_log_warn("create %s: %s", name, tr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	return err;
}

/* ListOffsets for one partition, asked of node i. */
static Sluice__Envelope *list_offsets(struct ring *g, int i, uint32_t partition)
{
	Sluice__TopicPartitions tp = SLUICE__TOPIC_PARTITIONS__INIT;
	Sluice__TopicPartitions *tpp = &tp;
	tp.name = (char *)g->topic;
	tp.n_partitions = 1;
	tp.partitions = &partition;
	Sluice__ListOffsetsRequest lr = SLUICE__LIST_OFFSETS_REQUEST__INIT;
	lr.n_topics = 1;
	lr.topics = &tpp;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__LIST_OFFSETS;
	env.body_case = SLUICE__ENVELOPE__BODY_LIST_OFFSETS_REQUEST;
	env.list_offsets_request = &lr;
	int fd = connect_to(g->n[i].ports[0]);
	Sluice__Envelope *r = call(fd, &env);
	close(fd);
	cr_assert_eq(r->error_code, 0, "%s", r->error_message);
	cr_assert_eq(r->list_offsets_response->n_topics, 1);
	cr_assert_eq(r->list_offsets_response->topics[0]->n_partitions, 1);
	return r;
}

/* The partition groups (g1, g2, ...) in node i's raft directory. */
static int group_dirs(struct ring *g, int i)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/raft", g->n[i].dir);
	DIR *d = opendir(path);
	cr_assert_not_null(d, "%s", path);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] == 'g' && strcmp(e->d_name, "g0") != 0;
	closedir(d);
	return n;
}

static bool no_group_dirs(void *arg)
{
	struct ring *g = arg;
	for (int i = 0; i < g->count; i++)
		if (group_dirs(g, i) != 0)
			return false;
	return true;
}

/* SIGTERM to every node at once; each must stop cleanly. */
static void ring_down(struct ring *g)
{
	for (int i = 0; i < g->count; i++)
		if (g->up[i])
			cr_assert_eq(tl_proc_kill(&g->n[i].p, SIGTERM), 0);
	for (int i = 0; i < g->count; i++)
		if (g->up[i])
			cr_assert_eq(exit_status(&g->n[i], 30000), 0, "node %d did not stop cleanly",
				     i + 1);
}

Test(sluiced, a_lone_node_leads_its_partitions_and_deletes_their_groups_with_the_topic)
{
	static struct ring g;
	ring_up(&g, 1);
	g.topic = "solo";
	g.partitions = 4;
	cr_assert_eq(create_led(&g, 0, "solo", 4, 1), 0);
	cr_assert(node_sees_leaders(&g, 0), "CreateTopics returned before every leader was known");
	cr_assert_eq(group_dirs(&g, 0), 4);
	Sluice__Envelope *r = list_offsets(&g, 0, 3);
	const Sluice__PartitionOffsets *po = r->list_offsets_response->topics[0]->partitions[0];
	cr_assert_eq(po->error_code, 0, "%s", po->error_message);
	cr_assert_eq(po->leader, 1);
	cr_assert_eq(po->log_start, 0);
	cr_assert_geq(po->log_end, po->log_start);
	sluice__envelope__free_unpacked(r, NULL);
	r = list_offsets(&g, 0, 4);
	cr_assert_eq(r->list_offsets_response->topics[0]->partitions[0]->error_code,
		     SL_EUNKNOWN_TOPIC_OR_PARTITION);
	sluice__envelope__free_unpacked(r, NULL);

	/* A restart starts them again from disk; then the topic goes. */
	cr_assert_eq(tl_proc_kill(&g.n[0].p, SIGTERM), 0);
	cr_assert_eq(exit_status(&g.n[0], 20000), 0);
	tl_proc_close(&g.n[0].p);
	ring_start_node(&g, 0);
	wait_ready(&g.n[0]);
	cr_assert(tl_wait_until(all_see_leaders, &g, 20000, 50), "no leaders after a restart");
	char *names[] = { "solo" };
	Sluice__DeleteTopicsRequest dr = SLUICE__DELETE_TOPICS_REQUEST__INIT;
	dr.n_names = 1;
	dr.names = names;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__DELETE_TOPICS;
	env.body_case = SLUICE__ENVELOPE__BODY_DELETE_TOPICS_REQUEST;
	env.delete_topics_request = &dr;
	int fd = connect_to(g.n[0].ports[0]);
	r = call(fd, &env);
	close(fd);
	cr_assert_eq(only_result(r)->error_code, 0, "%s", only_result(r)->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	cr_assert(tl_wait_until(no_group_dirs, &g, 10000, 50), "the topic's groups stayed on disk");
	ring_down(&g);
}

Test(sluiced, two_hundred_partitions_on_three_nodes_get_leaders_everywhere_and_new_ones_after_kill_9,
     .timeout = 180)
{
	static struct ring g;
	ring_up(&g, 3);
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader");
	g.topic = "wide";
	g.partitions = 200;
	int via = (int)(g.leader % 3); /* a node that does not lead the controller */
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "wide", 200, 3), 0);
	cr_assert(tl_wait_until(all_see_leaders, &g, 10000, 50),
		  "not every node shows a leader for every partition");
	/* RF 3 on 3 nodes: every node hosts every partition. */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(group_dirs(&g, i), 200, "node %d", i + 1);

	/* Offsets come from the leader; another node points there. */
	int fd = connect_to(g.n[via].ports[0]);
	Sluice__Envelope *m = get_metadata(fd);
	close(fd);
	cr_assert_eq(m->error_code, 0, "%s", m->error_message);
	int64_t leader0 = m->metadata_response->topics[0]->partitions[0]->leader;
	sluice__envelope__free_unpacked(m, NULL);
	Sluice__Envelope *r = list_offsets(&g, (int)leader0 - 1, 0);
	cr_assert_eq(r->list_offsets_response->topics[0]->partitions[0]->error_code, 0);
	sluice__envelope__free_unpacked(r, NULL);
	int other = (int)(leader0 % 3);
	r = list_offsets(&g, other, 0);
	const Sluice__PartitionOffsets *po = r->list_offsets_response->topics[0]->partitions[0];
	cr_assert_eq(po->error_code, SL_ENOT_LEADER);
	cr_assert_eq(po->leader, leader0);
	sluice__envelope__free_unpacked(r, NULL);

	/* kill -9 of a node: the partitions it led get new leaders, and the
	 * metadata says so on the others. */
	int victim = (int)leader0;
	tl_proc_close(&g.n[victim - 1].p);
	g.up[victim - 1] = false;
	cr_assert(tl_wait_until(all_see_leaders, &g, 30000, 100),
		  "the partitions node %d led got no new leader", victim);
	ring_start_node(&g, victim - 1); /* its lock was released */
	wait_ready(&g.n[victim - 1]);
	cr_assert(tl_wait_until(all_see_leaders, &g, 30000, 100), "node %d did not catch up", victim);
	ring_down(&g);
}

/* Node i's metadata says whether node id is alive: 1 alive, 0 not, -1
 * not registered. */
static int node_alive(struct ring *g, int i, uint64_t id)
{
	int fd = connect_to(g->n[i].ports[0]);
	Sluice__Envelope *r = get_metadata(fd);
	close(fd);
	int alive = -1;
	for (size_t k = 0; r->metadata_response != NULL && k < r->metadata_response->n_nodes; k++)
		if (r->metadata_response->nodes[k]->node_id == id)
			alive = r->metadata_response->nodes[k]->alive;
	sluice__envelope__free_unpacked(r, NULL);
	return alive;
}

static bool fourth_dead(void *arg)
{
	return node_alive(arg, 0, 4) == 0;
}

static bool fourth_alive(void *arg)
{
	return node_alive(arg, 0, 4) == 1;
}

/* Node 4's metadata lists all four nodes (each registers on its own
 * time: ready means registered itself, not that it heard of the rest). */
static bool fourth_knows_four(void *arg)
{
	struct ring *g = arg;
	return metric(&g->n[3], 4, "sluice_cluster_nodes") == 4;
}

Test(sluiced, a_node_past_the_voters_follows_the_metadata_hosts_partitions_and_is_marked_dead_and_back,
     .timeout = 180)
{
	static struct ring g;
	ring_up(&g, 4); /* the first 3 seeds vote; node 4 follows */
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader all agree on");
	cr_assert(tl_wait_until(fourth_knows_four, &g, 10000, 50),
		  "node 4's copy of the metadata lacks a node");
	g.topic = "four";
	g.partitions = 8;
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "four", 8, 3), 0);
	cr_assert(tl_wait_until(all_see_leaders, &g, 10000, 50), "node 4 or another lacks leaders");
	cr_assert_eq(group_dirs(&g, 3), 6, "24 replicas spread over 4 nodes, 6 each");
	tl_proc_close(&g.n[3].p); /* kill -9 */
	g.up[3] = false;
	cr_assert(tl_wait_until(fourth_dead, &g, 15000, 100), "node 4 never marked not alive");
	cr_assert(tl_wait_until(all_see_leaders, &g, 15000, 100),
		  "partitions node 4 led got no new leader");
	/* Placement counts only live nodes. */
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "three", 6, 3), 0);
	int fd = connect_to(g.n[0].ports[0]);
	Sluice__Envelope *r = get_metadata(fd);
	close(fd);
	cr_assert_not_null(r->metadata_response, "Metadata: %s", r->error_message);
	for (size_t k = 0; k < r->metadata_response->n_topics; k++) {
		const Sluice__TopicInfo *t = r->metadata_response->topics[k];
		for (size_t p = 0; strcmp(t->name, "three") == 0 && p < t->n_partitions; p++)
			for (size_t j = 0; j < t->partitions[p]->n_replicas; j++)
				cr_assert_neq(t->partitions[p]->replicas[j], 4, "a replica on a dead node");
	}
	sluice__envelope__free_unpacked(r, NULL);
	ring_start_node(&g, 3);
	wait_ready(&g.n[3]);
	cr_assert(tl_wait_until(fourth_alive, &g, 15000, 100), "node 4 not alive again");
	cr_assert(tl_wait_until(all_see_leaders, &g, 15000, 100), "node 4 did not catch up");
	ring_down(&g);
}

static bool four_registered(void *arg)
{
	struct ring *g = arg;
	return metric(&g->n[0], 1, "sluice_cluster_nodes") == 4;
}

Test(sluiced, a_node_that_joins_later_registers_follows_and_hosts_partitions, .timeout = 180)
{
	static struct ring g;
	ring_up(&g, 3);
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader all agree on");
	/* Node 4 lists the voters and itself; they have never heard of it. */
	setup_node(&g.n[3], "n4");
	char seeds4[600];
	snprintf(seeds4, sizeof(seeds4), "%s,4@127.0.0.1:%d", g.seeds, g.n[3].ports[1]);
	const char *const extra[] = { "--seeds", seeds4, "--heartbeat-ms", "100",
				      "--election-ms", "500", NULL };
	start(&g.n[3], 4, extra);
	g.count = 4;
	g.up[3] = true;
	wait_ready(&g.n[3]);
	cr_assert(tl_wait_until(four_registered, &g, 10000, 100), "node 1 does not list node 4");
	g.topic = "wide";
	g.partitions = 8;
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader all agree on");
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "wide", 8, 3), 0);
	cr_assert(tl_wait_until(all_see_leaders, &g, 15000, 100), "a node lacks leaders");
	cr_assert_eq(group_dirs(&g, 3), 6, "24 replicas spread over 4 nodes, 6 each");
	ring_down(&g);
}

Test(sluiced, five_nodes_place_and_lead_every_partition, .timeout = 180)
{
	static struct ring g;
	ring_up(&g, 5);
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader all agree on");
	g.topic = "five";
	g.partitions = 10;
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "five", 10, 3), 0);
	cr_assert(tl_wait_until(all_see_leaders, &g, 10000, 50), "a node lacks leaders");
	for (int i = 0; i < 5; i++)
		cr_assert_eq(group_dirs(&g, i), 6, "node %d: 30 replicas spread over 5 nodes", i + 1);
	ring_down(&g);
}

/* Node 1's and node 2's data directories pinned node 3's UUID. */
static bool pinned_3(void *arg)
{
	struct ring *g = arg;
	for (int i = 0; i < 2; i++) {
		char path[700];
		snprintf(path, sizeof(path), "%s/peers", g->n[i].dir);
		if (access(path, F_OK) != 0 || strstr(slurp(path), "node_id=3 uuid=") == NULL)
			return false;
	}
	return true;
}

static bool refused_3(void *arg)
{
	struct ring *g = arg;
	for (int i = 0; i < 2; i++)
		if (strstr(slurp(g->n[i].log), "node 3 came back with another UUID") != NULL)
			return true;
	return false;
}

/* Every node up runs the same controller group, past 0, into *group. */
static bool moved(void *arg)
{
	struct ring *g = arg;
	long long first = -1;
	for (int i = 0; i < g->count; i++) {
		if (!g->up[i])
			continue;
		long long gr = metric(&g->n[i], i + 1, "sluice_controller_group");
		if (gr <= 0 || (first != -1 && gr != first))
			return false;
		first = gr;
	}
	g->leader = first; /* the group, here */
	return true;
}

/* Node i's partition groups: its group directories but the controller's. */
static int partition_dirs(struct ring *g, int i, long long ctl_group)
{
	char path[700], ctl[32];
	snprintf(path, sizeof(path), "%s/raft", g->n[i].dir);
	snprintf(ctl, sizeof(ctl), "g%lld", ctl_group);
	DIR *d = opendir(path);
	cr_assert_not_null(d, "%s", path);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] == 'g' && strcmp(e->d_name, "g0") != 0 &&
		     strcmp(e->d_name, ctl) != 0;
	closedir(d);
	return n;
}

static bool first_dead(void *arg)
{
	return node_alive(arg, 1, 1) == 0;
}

static bool third_left_group_0(void *arg)
{
	struct ring *g = arg;
	return strstr(slurp(g->n[2].log), "leaving the controller's group 0: this node is back "
					  "with a new disk") != NULL;
}

Test(sluiced, a_node_with_a_wiped_disk_rejoins_without_voting_until_promoted, .timeout = 180)
{
	static struct ring g;
	ring_up(&g, 3);
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader");
	g.topic = "kept";
	g.partitions = 3;
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "kept", 3, 3), 0);
	char p1[700];
	snprintf(p1, sizeof(p1), "%s/peers", g.n[0].dir);
	cr_assert(tl_wait_until(pinned_3, &g, 10000, 100), "node 3's UUID was not pinned: %s",
		  access(p1, F_OK) == 0 ? slurp(p1) : "(no file)");
	char id_before[64], id_after[64];
	cluster_id(&g.n[0], id_before, sizeof(id_before));

	/* Node 3 loses its disk; its peers restart, so only their data
	 * directories remember its old UUID. */
	tl_proc_close(&g.n[2].p);
	g.up[2] = false;
	tl_rmtree(g.n[2].dir);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(tl_proc_kill(&g.n[i].p, SIGTERM), 0);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(exit_status(&g.n[i], 30000), 0);
		tl_proc_close(&g.n[i].p);
		ring_start_node(&g, i);
	}
	ring_start_node(&g, 2);

	/* Its peers take none of its Raft messages, and it leaves the
	 * controller's group it would have voted in with nothing... */
	cr_assert(tl_wait_until(refused_3, &g, 15000, 100), "node 3's new disk was not noticed");
	cr_assert(tl_wait_until(third_left_group_0, &g, 15000, 100),
		  "node 3 did not leave group 0: %s", slurp(g.n[2].log));
	/* ... until the controller moves to a group that counts it. */
	cr_assert(tl_wait_until(moved, &g, 30000, 100), "the controller did not move");
	long long ctl_group = g.leader;
	for (int i = 0; i < 3; i++)
		wait_ready(&g.n[i]);
	cluster_id(&g.n[2], id_after, sizeof(id_after));
	cr_assert_str_eq(id_after, id_before, "node 3 joined another cluster");
	cr_assert(strstr(slurp(g.n[0].log), "node 3's new disk") != NULL ||
			  strstr(slurp(g.n[1].log), "node 3's new disk") != NULL,
		  "no peer took node 3's new disk in");
	/* The old disk's replicas stay off the new one. */
	cr_assert(tl_wait_until(all_see_leaders, &g, 20000, 100), "\"kept\" lost its leaders");
	cr_assert_eq(partition_dirs(&g, 2, ctl_group), 0, "node 3 hosts the old disk's replicas");

	/* A new topic is placed on it too... */
	g.topic = "after";
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader");
	wait_ready(&g.n[g.leader - 1]);
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "after", 3, 3), 0);
	cr_assert(tl_wait_until(all_see_leaders, &g, 20000, 100), "\"after\" lacks leaders");
	cr_assert_eq(partition_dirs(&g, 2, ctl_group), 3);
	/* ... and it votes: with node 1 gone, nodes 2 and 3 make the quorum. */
	tl_proc_close(&g.n[0].p);
	g.up[0] = false;
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader without node 1");
	wait_ready(&g.n[g.leader - 1]);
	cr_assert(tl_wait_until(first_dead, &g, 15000, 100), "node 1 never marked not alive");
	g.topic = "pair";
	g.partitions = 2;
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "pair", 2, 2), 0);
	ring_down(&g);
}

/* ---- Produce and Fetch ---------------------------------------------- */

/* One batch of n records valued "v<from>".."v<from+n-1>" (plus pad
 * bytes), as a producer builds it, into out. */
static size_t make_batch(uint8_t *out, size_t cap, int from, int n, size_t pad)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	for (int i = 0; i < n; i++) {
		char v[4096];
		int len = snprintf(v, sizeof(v), "v%d", from + i);
		cr_assert_lt(len + pad, sizeof(v));
		memset(v + len, '.', pad);
		cr_assert_eq(sl_batch_builder_add(&b, 1000 + i, "k", 1, v, len + (int32_t)pad, NULL, 0),
			     SL_OK);
	}
	const uint8_t *bytes;
	size_t blen;
	cr_assert_eq(sl_batch_builder_finish(&b, &bytes, &blen), SL_OK);
	cr_assert_leq(blen, cap);
	memcpy(out, bytes, blen);
	sl_batch_builder_free(&b);
	return blen;
}

static void send_produce(int fd, const char *topic, uint32_t partition, Sluice__Acks acks,
			 const uint8_t *batch, size_t len)
{
	Sluice__ProducePartition pp = SLUICE__PRODUCE_PARTITION__INIT;
	Sluice__ProducePartition *ppp = &pp;
	pp.topic = (char *)topic;
	pp.partition = partition;
	Sluice__ProduceRequest pr = SLUICE__PRODUCE_REQUEST__INIT;
	pr.acks = acks;
	pr.n_partitions = 1;
	pr.partitions = &ppp;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.correlation_id = ++next_corr;
	env.api_key = SLUICE__API_KEY__PRODUCE;
	env.body_case = SLUICE__ENVELOPE__BODY_PRODUCE_REQUEST;
	env.produce_request = &pr;
	struct iovec seg = { (void *)batch, len };
	send_env_data(fd, &env, &seg, 1);
}

/* Produces one batch through the node on port; its one result (the
 * caller frees r). */
static const Sluice__ProducePartitionResult *produce(int port, const char *topic,
						     uint32_t partition, Sluice__Acks acks,
						     const uint8_t *batch, size_t len,
						     Sluice__Envelope **r)
{
	int fd = connect_to(port);
	send_produce(fd, topic, partition, acks, batch, len);
	*r = read_response(fd);
	close(fd);
	cr_assert_not_null(*r, "the connection closed");
	cr_assert_eq((*r)->error_code, 0, "%s", (*r)->error_message);
	cr_assert_eq((*r)->produce_response->n_results, 1);
	return (*r)->produce_response->results[0];
}

static void send_fetch(int fd, const char *topic, uint32_t partition, int64_t offset,
		       uint32_t max_wait_ms, uint32_t min_bytes)
{
	Sluice__FetchPartition fp = SLUICE__FETCH_PARTITION__INIT;
	Sluice__FetchPartition *fpp = &fp;
	fp.topic = (char *)topic;
	fp.partition = partition;
	fp.offset = offset;
	Sluice__FetchRequest fr = SLUICE__FETCH_REQUEST__INIT;
	fr.max_wait_ms = max_wait_ms;
	fr.min_bytes = min_bytes;
	fr.n_partitions = 1;
	fr.partitions = &fpp;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.correlation_id = ++next_corr;
	env.api_key = SLUICE__API_KEY__FETCH;
	env.body_case = SLUICE__ENVELOPE__BODY_FETCH_REQUEST;
	env.fetch_request = &fr;
	send_env(fd, &env);
}

/* The one result of a Fetch response just read, with its batches. */
static const Sluice__FetchPartitionResult *fetched(Sluice__Envelope *r, struct iovec *data)
{
	cr_assert_not_null(r, "the connection closed");
	cr_assert_eq(r->error_code, 0, "%s", r->error_message);
	cr_assert_eq(r->fetch_response->n_results, 1);
	cr_assert_eq(resp_frame.nseg, 1, "a fetch result without its data segment");
	*data = resp_frame.seg[0];
	return r->fetch_response->results[0];
}

/* Appends the values of the data batches' records to vals (n of them). */
static int64_t collect(const struct iovec *data, char vals[][16], size_t *n, size_t cap)
{
	int64_t next = -1;
	const uint8_t *p = data->iov_base;
	for (size_t pos = 0; pos < data->iov_len;) {
		struct sl_batch_header h;
		cr_assert_eq(sl_batch_check(p + pos, data->iov_len - pos, data->iov_len - pos, &h),
			     SL_OK, "a fetched batch does not check");
		next = sl_batch_last_offset(&h) + 1;
		if (!(h.attributes & SL_ATTR_CONTROL)) {
			struct sl_record_iter it;
			struct sl_record rec;
			cr_assert_eq(sl_record_iter_init(&it, p + pos, sl_batch_total_size(&h)), SL_OK);
			while (sl_record_iter_next(&it, &rec)) {
				cr_assert_lt(*n, cap);
				snprintf(vals[(*n)++], 16, "%.*s", (int)strcspn((const char *)rec.value, "."),
					 rec.value);
			}
			sl_record_iter_free(&it);
		}
		pos += sl_batch_total_size(&h);
	}
	return next;
}

/* The partition's leader as node 1's metadata has it, within 10 s. */
static int64_t leader_of(struct ring *g, const char *topic, uint32_t partition)
{
	int64_t leader = -1;
	for (int64_t deadline = tl_now_ms() + 10000; leader <= 0 && tl_now_ms() < deadline;) {
		int fd = connect_to(g->n[0].ports[0]);
		Sluice__Envelope *r = get_metadata(fd);
		close(fd);
		for (size_t k = 0; r->metadata_response != NULL && k < r->metadata_response->n_topics;
		     k++)
			if (strcmp(r->metadata_response->topics[k]->name, topic) == 0)
				leader = r->metadata_response->topics[k]->partitions[partition]->leader;
		sluice__envelope__free_unpacked(r, NULL);
		if (leader <= 0)
			poll(NULL, 0, 50);
	}
	cr_assert_gt(leader, 0, "%s/%u has no leader", topic, partition);
	return leader;
}

Test(sluiced, produced_records_are_read_back_in_order_and_bad_batches_change_nothing,
     .timeout = 180)
{
	static struct ring g;
	static uint8_t batch[1 << 16];
	static char vals[128][16];
	ring_up(&g, 3);
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader");
	g.topic = "data";
	g.partitions = 2;
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "data", 2, 3), 0);
	cr_assert(tl_wait_until(all_see_leaders, &g, 10000, 50), "a node lacks leaders");
	int fd = connect_to(g.n[g.leader - 1].ports[0]);
	Sluice__Envelope *r = create_topic_wait(fd, "small", 1, 3, "max.message.bytes", "1024", 30000);
	close(fd);
	cr_assert_eq(only_result(r)->error_code, 0, "%s", only_result(r)->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	int64_t l = leader_of(&g, "data", 0);
	int lp = g.n[l - 1].ports[0], fport = g.n[l % 3].ports[0];

	/* A follower points to the leader. */
	size_t len = make_batch(batch, sizeof(batch), 0, 10, 0);
	const Sluice__ProducePartitionResult *pr =
		produce(fport, "data", 0, SLUICE__ACKS__ACKS_ALL, batch, len, &r);
	cr_assert_eq(pr->error_code, SL_ENOT_LEADER, "%s", pr->error_message);
	cr_assert_eq(pr->leader, l);
	cr_assert_eq(pr->leader_port, (uint32_t)lp);
	sluice__envelope__free_unpacked(r, NULL);

	/* acks=all, then leader, then none: offsets follow one another. */
	int64_t base[5];
	for (int i = 0; i < 5; i++) {
		len = make_batch(batch, sizeof(batch), 10 * i, 10, 0);
		Sluice__Acks acks = i < 3 ? SLUICE__ACKS__ACKS_ALL
				    : i == 3 ? SLUICE__ACKS__ACKS_LEADER : SLUICE__ACKS__ACKS_NONE;
		if (acks == SLUICE__ACKS__ACKS_NONE) {
			fd = connect_to(lp);
			send_produce(fd, "data", 0, acks, batch, len);
			close(fd);
			break;
		}
		pr = produce(lp, "data", 0, acks, batch, len, &r);
		cr_assert_eq(pr->error_code, 0, "batch %d: %s", i, pr->error_message);
		base[i] = pr->base_offset;
		cr_assert(i == 0 || base[i] >= base[i - 1] + 10, "batch %d at %lld after %lld", i,
			  (long long)base[i], (long long)base[i - 1]);
		sluice__envelope__free_unpacked(r, NULL);
	}

	/* Read back: every record once, in order (acks=none's too, once it
	 * commits). */
	size_t n = 0;
	int64_t offset = base[0];
	int64_t deadline = tl_now_ms() + 10000;
	struct iovec data;
	while (n < 50 && tl_now_ms() < deadline) {
		fd = connect_to(lp);
		send_fetch(fd, "data", 0, offset, 500, 1);
		r = read_response(fd);
		close(fd);
		const Sluice__FetchPartitionResult *fr = fetched(r, &data);
		cr_assert_eq(fr->error_code, 0, "%s", fr->error_message);
		int64_t next = collect(&data, vals, &n, 128);
		if (next > offset)
			offset = next;
		sluice__envelope__free_unpacked(r, NULL);
	}
	cr_assert_eq(n, 50, "%zu records read back", n);
	for (size_t i = 0; i < n; i++) {
		char want[32];
		snprintf(want, sizeof(want), "v%zu", i);
		cr_assert_str_eq(vals[i], want, "record %zu", i);
	}

	/* The time index: every batch's records carry timestamps 1000..1009,
	 * so the first at or after 1005 is the first batch's sixth. */
	for (int k = 0; k < 2; k++) {
		uint32_t zero = 0;
		Sluice__TopicPartitions tpx = SLUICE__TOPIC_PARTITIONS__INIT;
		Sluice__TopicPartitions *tpxp = &tpx;
		tpx.name = "data";
		tpx.n_partitions = 1;
		tpx.partitions = &zero;
		Sluice__ListOffsetsRequest lr = SLUICE__LIST_OFFSETS_REQUEST__INIT;
		lr.n_topics = 1;
		lr.topics = &tpxp;
		lr.by_timestamp = true;
		lr.timestamp = k == 0 ? 1005 : 5000;
		Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
		env.api_key = SLUICE__API_KEY__LIST_OFFSETS;
		env.body_case = SLUICE__ENVELOPE__BODY_LIST_OFFSETS_REQUEST;
		env.list_offsets_request = &lr;
		fd = connect_to(lp);
		r = call(fd, &env);
		close(fd);
		cr_assert_eq(r->error_code, 0, "%s", r->error_message);
		const Sluice__PartitionOffsets *po =
			r->list_offsets_response->topics[0]->partitions[0];
		cr_assert_eq(po->error_code, 0, "%s", po->error_message);
		cr_assert_eq(po->offset, k == 0 ? base[0] + 5 : -1, "timestamp %lld: offset %lld",
			     (long long)lr.timestamp, (long long)po->offset);
		sluice__envelope__free_unpacked(r, NULL);
	}

	/* Fetching: from a follower, and outside the log's range. */
	fd = connect_to(fport);
	send_fetch(fd, "data", 0, base[0], 0, 0);
	r = read_response(fd);
	close(fd);
	const Sluice__FetchPartitionResult *fr = fetched(r, &data);
	cr_assert_eq(fr->error_code, SL_ENOT_LEADER, "%s", fr->error_message);
	cr_assert_eq(fr->leader, l);
	sluice__envelope__free_unpacked(r, NULL);
	fd = connect_to(lp);
	send_fetch(fd, "data", 0, -1, 0, 0);
	r = read_response(fd);
	fr = fetched(r, &data);
	cr_assert_eq(fr->error_code, SL_EOFFSET_OUT_OF_RANGE, "%s", fr->error_message);
	int64_t hw = fr->high_watermark;
	cr_assert_eq(hw, offset, "the high watermark is not the end of what was read");
	sluice__envelope__free_unpacked(r, NULL);
	send_fetch(fd, "data", 0, hw + 1, 0, 0);
	r = read_response(fd);
	fr = fetched(r, &data);
	cr_assert_eq(fr->error_code, SL_EOFFSET_OUT_OF_RANGE, "%s", fr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	close(fd);

	/* Bad batches: each refused precisely, nothing written. */
	len = make_batch(batch, sizeof(batch), 0, 3, 0);
	batch[len - 1] ^= 0xff;
	pr = produce(lp, "data", 0, SLUICE__ACKS__ACKS_ALL, batch, len, &r);
	cr_assert_eq(pr->error_code, SL_EBATCH_BAD_CRC, "%s", pr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	pr = produce(lp, "data", 0, SLUICE__ACKS__ACKS_ALL, batch, 30, &r);
	cr_assert_eq(pr->error_code, SL_EBATCH_TRUNCATED, "%s", pr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	pr = produce(lp, "data", 0, SLUICE__ACKS__ACKS_ALL, batch, len - 5, &r);
	cr_assert_eq(pr->error_code, SL_EBATCH_TRUNCATED, "%s", pr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	pr = produce(lp, "nope", 0, SLUICE__ACKS__ACKS_ALL, batch, len, &r);
	cr_assert_eq(pr->error_code, SL_EUNKNOWN_TOPIC_OR_PARTITION, "%s", pr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	pr = produce(lp, "data", 7, SLUICE__ACKS__ACKS_ALL, batch, len, &r);
	cr_assert_eq(pr->error_code, SL_EUNKNOWN_TOPIC_OR_PARTITION, "%s", pr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	int64_t sl = leader_of(&g, "small", 0);
	len = make_batch(batch, sizeof(batch), 0, 1, 2000);
	pr = produce(g.n[sl - 1].ports[0], "small", 0, SLUICE__ACKS__ACKS_ALL, batch, len, &r);
	cr_assert_eq(pr->error_code, SL_EMESSAGE_TOO_LARGE, "%s", pr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	fd = connect_to(lp);
	send_fetch(fd, "data", 0, hw, 0, 0);
	r = read_response(fd);
	close(fd);
	fr = fetched(r, &data);
	cr_assert_eq(fr->error_code, 0, "%s", fr->error_message);
	cr_assert_eq(fr->high_watermark, hw, "a refused batch moved the high watermark");
	cr_assert_eq(data.iov_len, 0);
	sluice__envelope__free_unpacked(r, NULL);

	/* A fetch at the end waits for the next batch. */
	int wait_fd = connect_to(lp);
	int64_t t0 = tl_now_ms();
	send_fetch(wait_fd, "data", 0, hw, 5000, 1);
	len = make_batch(batch, sizeof(batch), 50, 5, 0);
	pr = produce(lp, "data", 0, SLUICE__ACKS__ACKS_ALL, batch, len, &r);
	cr_assert_eq(pr->error_code, 0, "%s", pr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	r = read_response(wait_fd);
	close(wait_fd);
	fr = fetched(r, &data);
	cr_assert_eq(fr->error_code, 0, "%s", fr->error_message);
	n = 0;
	collect(&data, vals, &n, 128);
	cr_assert_eq(n, 5, "the waiting fetch got %zu records", n);
	cr_assert_str_eq(vals[0], "v50");
	cr_assert_lt(tl_now_ms() - t0, 4000, "the waiting fetch waited for its deadline");
	sluice__envelope__free_unpacked(r, NULL);
	ring_down(&g);
}


/* The node (index) that leads topic/partition: the one whose Fetch is not
 * refused with NOT_LEADER, within 20 s. */
static int find_leader(struct ring *g, const char *topic, uint32_t partition)
{
	for (int64_t deadline = tl_now_ms() + 20000; tl_now_ms() < deadline; poll(NULL, 0, 50))
		for (int i = 0; i < g->count; i++) {
			if (!g->up[i])
				continue;
			int fd = connect_to(g->n[i].ports[0]);
			send_fetch(fd, topic, partition, 0, 0, 0);
			Sluice__Envelope *r = read_response(fd);
			close(fd);
			struct iovec data;
			int err = r == NULL || r->error_code != 0 ? SL_ENOT_READY
								  : fetched(r, &data)->error_code;
			if (r != NULL)
				sluice__envelope__free_unpacked(r, NULL);
			if (err != SL_ENOT_LEADER && err != SL_ENOT_READY)
				return i;
		}
	cr_assert_fail("no node leads %s/%u", topic, partition);
	return -1;
}

/* Every record of the partition, read from its leader (i). */
static size_t read_all(struct ring *g, int i, const char *topic, char vals[][16], size_t cap)
{
	size_t n = 0;
	int64_t offset = 0;
	for (;;) {
		int fd = connect_to(g->n[i].ports[0]);
		send_fetch(fd, topic, 0, offset, 0, 0);
		Sluice__Envelope *r = read_response(fd);
		close(fd);
		struct iovec data;
		const Sluice__FetchPartitionResult *fr = fetched(r, &data);
		cr_assert_eq(fr->error_code, 0, "%s", fr->error_message);
		int64_t next = collect(&data, vals, &n, cap);
		sluice__envelope__free_unpacked(r, NULL);
		if (next < 0)
			return n;
		offset = next;
	}
}

static bool has_value(char vals[][16], size_t n, const char *v)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(vals[i], v) == 0)
			return true;
	return false;
}

/* Produces through node i with acks=leader: the leader's disk has it. */
static void produce_alone(struct ring *g, int i, const char *topic, int from, uint8_t *batch,
			  size_t cap)
{
	Sluice__Envelope *r;
	size_t len = make_batch(batch, cap, from, 5, 0);
	const Sluice__ProducePartitionResult *pr =
		produce(g->n[i].ports[0], topic, 0, SLUICE__ACKS__ACKS_LEADER, batch, len, &r);
	cr_assert_eq(pr->error_code, 0, "%s", pr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
}

/* Uncommitted records are never visible: while the followers are stopped
 * a batch the leader wrote alone stays below no consumer's reach; and a
 * batch no follower received at all (their processes dead, so no socket
 * buffer holds it either; a stopped follower's kernel still takes it in,
 * and reads it once resumed, which lets a new leader commit it) never
 * appears after the leader dies. */
Test(sluiced, uncommitted_records_are_never_visible, .timeout = 180)
{
	static struct ring g;
	static uint8_t batch[4096];
	static char vals[256][16];
	ring_up(&g, 3);
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader");
	g.topic = "u";
	g.partitions = 1;
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "u", 1, 3), 0);
	int l = find_leader(&g, "u", 0);
	Sluice__Envelope *r;
	size_t len = make_batch(batch, sizeof(batch), 0, 5, 0);
	const Sluice__ProducePartitionResult *pr =
		produce(g.n[l].ports[0], "u", 0, SLUICE__ACKS__ACKS_ALL, batch, len, &r);
	cr_assert_eq(pr->error_code, 0, "%s", pr->error_message);
	sluice__envelope__free_unpacked(r, NULL);

	/* Followers stopped: the batch is on the leader's disk, not visible. */
	for (int i = 0; i < 3; i++)
		if (i != l)
			cr_assert_eq(tl_proc_kill(&g.n[i].p, SIGSTOP), 0);
	produce_alone(&g, l, "u", 100, batch, sizeof(batch));
	size_t n = read_all(&g, l, "u", vals, 256);
	cr_assert_eq(n, 5, "a consumer saw %zu records, uncommitted ones among them", n);
	for (int i = 0; i < 3; i++)
		if (i != l)
			cr_assert_eq(tl_proc_kill(&g.n[i].p, SIGCONT), 0);

	/* Followers dead: a batch only the leader has, then the leader dies. */
	l = find_leader(&g, "u", 0);
	for (int i = 0; i < 3; i++)
		if (i != l) {
			tl_proc_close(&g.n[i].p);
			g.up[i] = false;
		}
	produce_alone(&g, l, "u", 200, batch, sizeof(batch));
	size_t before = read_all(&g, l, "u", vals, 256);
	cr_assert(!has_value(vals, before, "v200"), "an uncommitted record was visible");
	tl_proc_close(&g.n[l].p);
	g.up[l] = false;
	for (int i = 0; i < 3; i++)
		if (i != l)
			ring_start_node(&g, i);
	for (int i = 0; i < 3; i++)
		if (i != l)
			wait_ready(&g.n[i]);
	int l2 = find_leader(&g, "u", 0);
	ring_start_node(&g, l);
	wait_ready(&g.n[l]);
	len = make_batch(batch, sizeof(batch), 300, 5, 0);
	pr = produce(g.n[l2].ports[0], "u", 0, SLUICE__ACKS__ACKS_ALL, batch, len, &r);
	cr_assert_eq(pr->error_code, 0, "%s", pr->error_message);
	sluice__envelope__free_unpacked(r, NULL);
	n = read_all(&g, l2, "u", vals, 256);
	cr_assert(has_value(vals, n, "v0") && has_value(vals, n, "v300"), "committed records lost");
	cr_assert(!has_value(vals, n, "v200"), "a record only the dead leader had appeared");
	ring_down(&g);
}

Test(sluiced, kill_9_of_the_leader_while_producing_loses_no_acknowledged_record,
     .timeout = 180)
{
	static struct ring g;
	static uint8_t batch[4096];
	static char vals[1024][16];
	ring_up(&g, 3);
	cr_assert(tl_wait_until(ring_agree, &g, 30000, 100), "no controller leader");
	g.topic = "k";
	g.partitions = 1;
	cr_assert_eq(create_led(&g, (int)g.leader - 1, "k", 1, 3), 0);
	int l = find_leader(&g, "k", 0);
	bool acked[60] = { false };
	bool killed = false;
	for (int b = 0; b < 60; b++) {
		size_t len = make_batch(batch, sizeof(batch), 10 * b, 10, 0);
		int fd = connect_to(g.n[l].ports[0]);
		send_produce(fd, "k", 0, SLUICE__ACKS__ACKS_ALL, batch, len);
		if (b == 20 && !killed) { /* the leader dies with a request in flight */
			tl_proc_close(&g.n[l].p);
			g.up[l] = false;
			killed = true;
		}
		Sluice__Envelope *r = read_response(fd);
		close(fd);
		if (r != NULL && r->produce_response != NULL &&
		    r->produce_response->results[0]->error_code == 0)
			acked[b] = true;
		if (r != NULL)
			sluice__envelope__free_unpacked(r, NULL);
		if (!acked[b]) { /* retried on whoever leads now */
			l = find_leader(&g, "k", 0);
			b--;
		}
	}
	size_t n = read_all(&g, l, "k", vals, 1024);
	for (int b = 0; b < 60; b++)
		for (int k = 0; k < 10; k++) {
			char v[16];
			snprintf(v, sizeof(v), "v%d", 10 * b + k);
			cr_assert(has_value(vals, n, v), "acknowledged record %s is gone", v);
		}
	ring_down(&g);
}

/* ---- FindCoordinator ------------------------------------------------------ */

static Sluice__Envelope *find_coordinator(int port, const char *group)
{
	int fd = connect_to(port);
	Sluice__FindCoordinatorRequest fc = SLUICE__FIND_COORDINATOR_REQUEST__INIT;
	fc.group = (char *)group;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__FIND_COORDINATOR;
	env.body_case = SLUICE__ENVELOPE__BODY_FIND_COORDINATOR_REQUEST;
	env.find_coordinator_request = &fc;
	Sluice__Envelope *r = call(fd, &env);
	close(fd);
	cr_assert_not_null(r->find_coordinator_response);
	return r;
}

/* Group "g" has a coordinator (partition 3 of 4, Kafka's placement). */
static bool coordinator_found(void *arg)
{
	struct node *n = arg;
	Sluice__Envelope *r = find_coordinator(n->ports[0], "g");
	bool ok = r->find_coordinator_response->error_code == 0;
	sluice__envelope__free_unpacked(r, NULL);
	return ok;
}

Test(sluiced, find_coordinator_names_the_leader_of_the_groups_offsets_partition)
{
	static struct node n;
	setup_node(&n, "n1");
	/* Without the offsets topic: not available (retriable). */
	start(&n, 1, NULL);
	wait_ready(&n);
	Sluice__Envelope *r = find_coordinator(n.ports[0], "g");
	cr_assert_eq(r->find_coordinator_response->error_code, SL_ECOORDINATOR_NOT_AVAILABLE);
	cr_assert(strstr(r->find_coordinator_response->error_message, "__consumer_offsets") != NULL);
	sluice__envelope__free_unpacked(r, NULL);
	r = find_coordinator(n.ports[0], "");
	cr_assert_eq(r->find_coordinator_response->error_code, SL_EINVALID_REQUEST);
	sluice__envelope__free_unpacked(r, NULL);
	stop_cleanly(&n);

	/* With it: this node, and the group's partition. */
	const char *const extra[] = { "--offsets-topic-partitions", "4", NULL };
	start(&n, 1, extra);
	wait_ready(&n);
	cr_assert(tl_wait_until(coordinator_found, &n, 30000, 50), "no coordinator for g");
	r = find_coordinator(n.ports[0], "g");
	const Sluice__FindCoordinatorResponse *fc = r->find_coordinator_response;
	cr_assert_eq(fc->node_id, 1);
	cr_assert_str_eq(fc->host, "127.0.0.1");
	cr_assert_eq(fc->port, (uint32_t)n.ports[0]);
	cr_assert_eq(fc->partition, 3);
	sluice__envelope__free_unpacked(r, NULL);
	stop_cleanly(&n);
}

/* ---- The group coordinator's refusals ---------------------------------------- */

static Sluice__Envelope *heartbeat(int fd, const char *group, const char *member, int32_t epoch,
				   const char *topic, const Sluice__TopicPartitions *owned)
{
	Sluice__ConsumerGroupHeartbeatRequest hb = SLUICE__CONSUMER_GROUP_HEARTBEAT_REQUEST__INIT;
	char *topics[] = { (char *)topic };
	Sluice__TopicPartitions *op = (Sluice__TopicPartitions *)owned;
	hb.group = (char *)group;
	hb.member_id = (char *)member;
	hb.member_epoch = epoch;
	hb.topics = topics;
	hb.n_topics = topic != NULL ? 1 : 0;
	hb.owned = &op;
	hb.n_owned = owned != NULL ? 1 : 0;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__CONSUMER_GROUP_HEARTBEAT;
	env.body_case = SLUICE__ENVELOPE__BODY_CONSUMER_GROUP_HEARTBEAT_REQUEST;
	env.consumer_group_heartbeat_request = &hb;
	Sluice__Envelope *r = call(fd, &env);
	cr_assert_not_null(r->consumer_group_heartbeat_response, "%s", r->error_message);
	return r;
}

static Sluice__Envelope *commit1(int fd, const char *group, const char *member, int32_t epoch,
				 const char *topic, uint32_t partition, int64_t offset)
{
	Sluice__OffsetCommitPartition p = SLUICE__OFFSET_COMMIT_PARTITION__INIT;
	Sluice__OffsetCommitPartition *pp = &p;
	p.topic = (char *)topic;
	p.partition = partition;
	p.offset = offset;
	p.leader_epoch = -1;
	Sluice__OffsetCommitRequest cr = SLUICE__OFFSET_COMMIT_REQUEST__INIT;
	cr.group = (char *)group;
	cr.member_id = (char *)member;
	cr.member_epoch = epoch;
	cr.partitions = &pp;
	cr.n_partitions = 1;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__OFFSET_COMMIT;
	env.body_case = SLUICE__ENVELOPE__BODY_OFFSET_COMMIT_REQUEST;
	env.offset_commit_request = &cr;
	Sluice__Envelope *r = call(fd, &env);
	cr_assert_not_null(r->offset_commit_response, "%s", r->error_message);
	return r;
}

/* The one partition's error of a commit (the request's own error first). */
static int commit_err(const Sluice__Envelope *r, char *msg, size_t cap)
{
	const Sluice__OffsetCommitResponse *c = r->offset_commit_response;
	if (c->error_code != 0) {
		snprintf(msg, cap, "%s", c->error_message);
		return c->error_code;
	}
	cr_assert_eq(c->n_results, 1);
	snprintf(msg, cap, "%s", c->results[0]->error_message);
	return c->results[0]->error_code;
}

static int64_t fetch1(int fd, const char *group, const char *topic, uint32_t partition,
		      int *err)
{
	Sluice__TopicPartitions tp = SLUICE__TOPIC_PARTITIONS__INIT;
	Sluice__TopicPartitions *tpp = &tp;
	tp.name = (char *)topic;
	tp.partitions = &partition;
	tp.n_partitions = 1;
	Sluice__OffsetFetchRequest fr = SLUICE__OFFSET_FETCH_REQUEST__INIT;
	fr.group = (char *)group;
	fr.partitions = &tpp;
	fr.n_partitions = 1;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__OFFSET_FETCH;
	env.body_case = SLUICE__ENVELOPE__BODY_OFFSET_FETCH_REQUEST;
	env.offset_fetch_request = &fr;
	Sluice__Envelope *r = call(fd, &env);
	const Sluice__OffsetFetchResponse *f = r->offset_fetch_response;
	cr_assert_not_null(f);
	*err = f->error_code;
	int64_t off = f->error_code == 0 && f->n_offsets == 1 ? f->offsets[0]->offset : -2;
	sluice__envelope__free_unpacked(r, NULL);
	return off;
}

static Sluice__Envelope *regex_heartbeat(int fd, const char *group, const char *member,
					 int32_t epoch, const char *regex)
{
	Sluice__ConsumerGroupHeartbeatRequest hb = SLUICE__CONSUMER_GROUP_HEARTBEAT_REQUEST__INIT;
	hb.group = (char *)group;
	hb.member_id = (char *)member;
	hb.member_epoch = epoch;
	hb.topic_regex = (char *)regex;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__CONSUMER_GROUP_HEARTBEAT;
	env.body_case = SLUICE__ENVELOPE__BODY_CONSUMER_GROUP_HEARTBEAT_REQUEST;
	env.consumer_group_heartbeat_request = &hb;
	Sluice__Envelope *r = call(fd, &env);
	cr_assert_not_null(r->consumer_group_heartbeat_response, "%s", r->error_message);
	return r;
}

/* Group g's commit of t/1 (1) and its lag (t/1's end less 1). */
static bool group_metrics_shown(void *arg)
{
	struct node *n = arg;
	int status;
	static char body[1 << 20];
	if (tl_http_get(n->ports[2], "/metrics", &status, body, sizeof(body), 2000) != 0 ||
	    status != 200)
		return false;
	const char *lag = "sluice_consumer_group_lag{node=\"1\",group=\"g\",topic=\"t\",partition=\"1\"} ";
	const char *at = strstr(body, lag);
	return strstr(body, "sluice_consumer_group_committed_offset{node=\"1\",group=\"g\",topic=\"t\","
			    "partition=\"1\"} 1\n") != NULL &&
	       at != NULL && atoll(at + strlen(lag)) >= 0 &&
	       strstr(body, "sluice_consumer_group_members{node=\"1\",group=\"g\"} 1\n") != NULL;
}

Test(sluiced, the_coordinator_refuses_bad_commits_precisely_and_keeps_what_it_took)
{
	static struct node n;
	setup_node(&n, "n1");
	const char *const extra[] = { "--offsets-topic-partitions", "4", NULL };
	start(&n, 1, extra);
	wait_ready(&n);
	cr_assert(tl_wait_until(coordinator_found, &n, 30000, 50), "no coordinator for g");
	int fd = connect_to(n.ports[0]);
	Sluice__Envelope *r = create_topic_wait(fd, "t", 2, 1, NULL, NULL, 10000);
	sluice__envelope__free_unpacked(r, NULL);
	r = create_topic_wait(fd, "u", 1, 1, NULL, NULL, 10000);
	sluice__envelope__free_unpacked(r, NULL);
	char msg[512];

	/* A member joins (subscribed to t only) and gets both partitions. */
	r = heartbeat(fd, "g", "", 0, "t", NULL);
	const Sluice__ConsumerGroupHeartbeatResponse *hb = r->consumer_group_heartbeat_response;
	cr_assert_eq(hb->error_code, 0, "%s", hb->error_message);
	char member[80];
	snprintf(member, sizeof(member), "%s", hb->member_id);
	int32_t epoch = hb->member_epoch;
	cr_assert_gt(epoch, 0);
	cr_assert_eq(hb->n_assignment, 1);
	cr_assert_eq(hb->assignment[0]->n_partitions, 2);
	sluice__envelope__free_unpacked(r, NULL);

	/* A commit of what it owns is taken, and read back (the partition
	 * holds Raft's first entries, so offset 1 is within it). */
	r = commit1(fd, "g", member, epoch, "t", 1, 1);
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), 0, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);
	int err;
	cr_assert_eq(fetch1(fd, "g", "t", 1, &err), 1);
	r = commit1(fd, "g", member, epoch, "t", 1, 42);
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), SL_EOFFSET_OUT_OF_RANGE, "%s", msg);
	cr_assert(strstr(msg, "offset 42 is past the log end") != NULL, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);

	/* Refusals, each precise; the offset stays. */
	r = commit1(fd, "g", member, epoch, "u", 0, 7);
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), SL_ENOT_ASSIGNED);
	cr_assert(strstr(msg, "u/0 is not assigned to member") != NULL, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);
	r = commit1(fd, "g", member, epoch + 1, "t", 1, 7);
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), SL_ESTALE_MEMBER_EPOCH, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);
	r = commit1(fd, "g", "nobody", epoch, "t", 1, 7);
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), SL_EUNKNOWN_MEMBER_ID, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);
	r = commit1(fd, "other", "someone", 1, "t", 1, 7);
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), SL_EUNKNOWN_MEMBER_ID, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);
	r = commit1(fd, "g", member, epoch, "t", 9, 7);
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), SL_EUNKNOWN_TOPIC_OR_PARTITION, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);
	r = commit1(fd, "g", member, epoch, "t", 1, -5);
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), SL_EINVALID_REQUEST, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);
	r = commit1(fd, "g", "", -1, "t", 1, 7); /* an administrator's, with a member in */
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), SL_ENON_EMPTY_GROUP, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);
	r = commit1(fd, "", member, epoch, "t", 1, 7);
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), SL_EINVALID_GROUP_ID, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);
	cr_assert_eq(fetch1(fd, "g", "t", 1, &err), 1);
	cr_assert_eq(fetch1(fd, "g", "t", 0, &err), -1); /* none */
	/* The commit and the lag behind the log's end show at /metrics. */
	if (!tl_wait_until(group_metrics_shown, &n, 10000, 100)) {
		int status;
		static char body[1 << 20];
		tl_http_get(n.ports[2], "/metrics", &status, body, sizeof(body), 2000);
		const char *at = strstr(body, "sluice_consumer_group");
		cr_assert_fail("no group metrics: %.2000s", at != NULL ? at : body);
	}

	/* A regex subscription takes topics created later (within a
	 * heartbeat); so does a topic list naming one that did not exist. */
	r = regex_heartbeat(fd, "rx", "", 0, "t.*");
	hb = r->consumer_group_heartbeat_response;
	cr_assert_eq(hb->error_code, 0, "%s", hb->error_message);
	char rmember[80];
	snprintf(rmember, sizeof(rmember), "%s", hb->member_id);
	int32_t repoch = hb->member_epoch;
	cr_assert_eq(hb->n_assignment, 1);
	cr_assert_str_eq(hb->assignment[0]->name, "t");
	sluice__envelope__free_unpacked(r, NULL);
	Sluice__Envelope *cr = create_topic_wait(fd, "t2", 1, 1, NULL, NULL, 10000);
	sluice__envelope__free_unpacked(cr, NULL);
	r = regex_heartbeat(fd, "rx", rmember, repoch, "t.*");
	hb = r->consumer_group_heartbeat_response;
	cr_assert_eq(hb->error_code, 0, "%s", hb->error_message);
	cr_assert_eq(hb->n_assignment, 2, "t2 was not picked up");
	cr_assert_str_eq(hb->assignment[1]->name, "t2");
	sluice__envelope__free_unpacked(r, NULL);
	r = regex_heartbeat(fd, "rx2", "", 0, "(");
	cr_assert_eq(r->consumer_group_heartbeat_response->error_code, SL_EINVALID_REQUEST);
	cr_assert(strstr(r->consumer_group_heartbeat_response->error_message, "topic regex") !=
		  NULL);
	sluice__envelope__free_unpacked(r, NULL);
	r = heartbeat(fd, "later", "", 0, "v", NULL);
	hb = r->consumer_group_heartbeat_response;
	cr_assert_eq(hb->error_code, 0, "%s", hb->error_message);
	cr_assert_eq(hb->n_assignment, 0);
	snprintf(rmember, sizeof(rmember), "%s", hb->member_id);
	repoch = hb->member_epoch;
	sluice__envelope__free_unpacked(r, NULL);
	cr = create_topic_wait(fd, "v", 3, 1, NULL, NULL, 10000);
	sluice__envelope__free_unpacked(cr, NULL);
	r = heartbeat(fd, "later", rmember, repoch, "v", NULL);
	hb = r->consumer_group_heartbeat_response;
	cr_assert_eq(hb->error_code, 0, "%s", hb->error_message);
	cr_assert_eq(hb->n_assignment, 1);
	cr_assert_eq(hb->assignment[0]->n_partitions, 3);
	sluice__envelope__free_unpacked(r, NULL);

	/* A heartbeat with an epoch it was never given is fenced; an unknown
	 * member must join again. */
	r = heartbeat(fd, "g", member, epoch + 7, "t", NULL);
	cr_assert_eq(r->consumer_group_heartbeat_response->error_code, SL_EFENCED_MEMBER_EPOCH);
	sluice__envelope__free_unpacked(r, NULL);
	r = heartbeat(fd, "g", "nobody", 1, "t", NULL);
	cr_assert_eq(r->consumer_group_heartbeat_response->error_code, SL_EUNKNOWN_MEMBER_ID);
	sluice__envelope__free_unpacked(r, NULL);

	/* Leaving empties the group: then an administrator may commit. */
	r = heartbeat(fd, "g", member, -1, NULL, NULL);
	cr_assert_eq(r->consumer_group_heartbeat_response->error_code, 0);
	sluice__envelope__free_unpacked(r, NULL);
	r = commit1(fd, "g", "", -1, "t", 0, 0);
	cr_assert_eq(commit_err(r, msg, sizeof(msg)), 0, "%s", msg);
	sluice__envelope__free_unpacked(r, NULL);
	close(fd);

	/* The coordinator reads its partition back after a restart. */
	stop_cleanly(&n);
	start(&n, 1, extra);
	wait_ready(&n);
	cr_assert(tl_wait_until(coordinator_found, &n, 30000, 50));
	fd = connect_to(n.ports[0]);
	int64_t got = -2;
	int64_t until = tl_now_ms() + 10000;
	while ((got = fetch1(fd, "g", "t", 1, &err)) == -2 &&
	       (err == SL_ECOORDINATOR_LOADING || err == SL_ENOT_COORDINATOR) &&
	       tl_now_ms() < until)
		;
	cr_assert_eq(got, 1, "err %d", err);
	cr_assert_eq(fetch1(fd, "g", "t", 0, &err), 0);
	close(fd);
	stop_cleanly(&n);
}
