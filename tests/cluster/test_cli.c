/* The sluice CLI and libsluice's admin calls against real sluiced
 * processes on 127.0.0.1 (each test on ports and in a directory of its
 * own; every process killed by PID at the end, tests/lib/procs.h): the
 * commands and their output as DESIGN.md's contract gives them, exit
 * statuses, forwarding to the controller's leader, refusals. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procs.h"
#include "internal.h"
#include "sluice.h"
#include "testlib.h"

#ifndef SLUICED_PATH
#error "SLUICED_PATH must name the sluiced binary"
#endif
#ifndef SLUICE_PATH
#error "SLUICE_PATH must name the sluice CLI"
#endif

static void fini(void)
{
	tl_proc_kill_all();
}

TestSuite(cli, .fini = fini, .timeout = 120);

struct node {
	struct tl_proc p;
	int ports[3]; /* client, peer, http */
	char dir[600], log[640];
};

static struct node nodes[3];
static int nnodes;
/* Every node's --retention-check-ms (a test may shorten it), and
 * --offsets-topic-partitions (0: no __consumer_offsets, so that the
 * topic lists and load counts of the other tests hold only theirs). */
static const char *retention_check_ms = "60000";
static const char *offsets_partitions = "0";
/* The group coordinator's session timeout and heartbeat interval. */
static const char *group_session_ms = "45000";
static const char *group_heartbeat_ms = "3000";
static char bootstrap[256];
static char seeds_arg[256];

static bool ready(void *arg)
{
	struct node *n = arg;
	int status;
	char body[256];
	return tl_http_get(n->ports[2], "/readyz", &status, body, sizeof(body), 1000) == 0 &&
	       status == 200;
}

/* Starts node i (0-based) of the cluster cluster_up made. */
static void node_start(int i)
{
	struct node *n = &nodes[i];
	char id[16], cp[16], pp[16], hp[16];
	snprintf(id, sizeof(id), "%d", i + 1);
	snprintf(cp, sizeof(cp), "%d", n->ports[0]);
	snprintf(pp, sizeof(pp), "%d", n->ports[1]);
	snprintf(hp, sizeof(hp), "%d", n->ports[2]);
	char *argv[] = { SLUICED_PATH, "--node-id", id, "--data-dir", n->dir, "--client-port", cp,
			 "--peer-port", pp, "--http-port", hp, "--seeds", seeds_arg,
			 "--heartbeat-ms", "100", "--election-ms", "500",
			 "--retention-check-ms", (char *)retention_check_ms,
			 "--offsets-topic-partitions", (char *)offsets_partitions,
			 "--group-session-timeout-ms", (char *)group_session_ms,
			 "--group-heartbeat-ms", (char *)group_heartbeat_ms, NULL };
	cr_assert_eq(tl_proc_spawn(&n->p, argv, n->log), 0);
}

/* Starts count nodes (all voters) and waits until each is ready. */
static void cluster_up(int count)
{
	seeds_arg[0] = '\0';
	nnodes = count;
	bootstrap[0] = '\0';
	for (int i = 0; i < count; i++) {
		struct node *n = &nodes[i];
		cr_assert_eq(tl_free_ports(n->ports, 3), 0);
		snprintf(n->dir, sizeof(n->dir), "%s/n%d", tl_tmpdir(), i + 1);
		snprintf(n->log, sizeof(n->log), "%s/n%d.log", tl_tmpdir(), i + 1);
		size_t len = strlen(seeds_arg);
		snprintf(seeds_arg + len, sizeof(seeds_arg) - len, "%s%d@127.0.0.1:%d", i ? "," : "",
			 i + 1, n->ports[1]);
		len = strlen(bootstrap);
		snprintf(bootstrap + len, sizeof(bootstrap) - len, "%s127.0.0.1:%d", i ? "," : "",
			 n->ports[0]);
	}
	for (int i = 0; i < count; i++)
		node_start(i);
	for (int i = 0; i < count; i++)
		cr_assert(tl_wait_until(ready, &nodes[i], 30000, 50), "node %d not ready", i + 1);
}

static void cluster_down(void)
{
	for (int i = 0; i < nnodes; i++)
		tl_proc_kill(&nodes[i].p, SIGTERM);
	for (int i = 0; i < nnodes; i++) {
		cr_assert_eq(tl_proc_wait(&nodes[i].p, 30000), 1, "node %d did not stop", i + 1);
		cr_assert(WIFEXITED(nodes[i].p.status) && WEXITSTATUS(nodes[i].p.status) == 0,
			  "node %d did not stop cleanly", i + 1);
	}
}

/* What one run of the CLI printed, and how it ended. */
struct run {
	int status;     /* exit status; -1: killed */
	char out[65536];
	char err[4096];
};

/* Runs sluice with the words of fmt (split on spaces), bootstrap first
 * when boot is not NULL, with input (NULL: none) on its standard input. */
static void vsluice(struct run *r, const char *boot, const char *input, const char *fmt,
		    va_list ap) __attribute__((format(printf, 4, 0)));
static void vsluice(struct run *r, const char *boot, const char *input, const char *fmt,
		    va_list ap)
{
	static char words[4096];
	vsnprintf(words, sizeof(words), fmt, ap);
	char *argv[64] = { SLUICE_PATH };
	int n = 1;
	if (boot != NULL) {
		argv[n++] = "--bootstrap";
		argv[n++] = (char *)boot;
	}
	for (char *save, *w = strtok_r(words, " ", &save); w != NULL && n < 63;
	     w = strtok_r(NULL, " ", &save))
		argv[n++] = w;
	argv[n] = NULL;
	char log[700];
	snprintf(log, sizeof(log), "%s/cli-stderr", tl_tmpdir());
	unlink(log);
	struct tl_proc p;
	cr_assert_eq(tl_proc_spawn(&p, argv, log), 0);
	if (input != NULL) {
		size_t left = strlen(input);
		while (left > 0) {
			ssize_t w = write(p.in_fd, input, left);
			cr_assert_gt(w, 0, "writing sluice's input");
			input += w;
			left -= (size_t)w;
		}
	}
	close(p.in_fd);
	p.in_fd = -1;
	size_t len = 0;
	r->out[0] = '\0';
	char line[TL_PROC_LINE_MAX];
	int got;
	while ((got = tl_proc_read_line(&p, line, sizeof(line), 60000)) == 1) {
		int k = snprintf(r->out + len, sizeof(r->out) - len, "%s\n", line);
		len += (size_t)k < sizeof(r->out) - len ? (size_t)k : 0;
	}
	cr_assert_eq(got, -1, "sluice %s: no end within 60 s", words);
	cr_assert_eq(tl_proc_wait(&p, 10000), 1);
	r->status = WIFEXITED(p.status) ? WEXITSTATUS(p.status) : -1;
	tl_proc_close(&p);
	FILE *f = fopen(log, "r");
	size_t el = f != NULL ? fread(r->err, 1, sizeof(r->err) - 1, f) : 0;
	r->err[el] = '\0';
	if (f != NULL)
		fclose(f);
}

static void sluice(struct run *r, const char *boot, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void sluice(struct run *r, const char *boot, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsluice(r, boot, NULL, fmt, ap);
	va_end(ap);
}

static void sluice_in(struct run *r, const char *boot, const char *input, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void sluice_in(struct run *r, const char *boot, const char *input, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsluice(r, boot, input, fmt, ap);
	va_end(ap);
}

static void expect_ok(struct run *r)
{
	cr_assert_eq(r->status, 0, "exit %d; stderr: %s", r->status, r->err);
}

/* A failure: status, and one line on stderr holding text. */
static void expect_fail(struct run *r, int status, const char *text)
{
	cr_assert_eq(r->status, status, "exit %d; stdout: %s; stderr: %s", r->status, r->out, r->err);
	cr_assert(strstr(r->err, text) != NULL, "stderr lacks '%s': %s", text, r->err);
	cr_assert_eq(strchr(r->err, '\n'), r->err + strlen(r->err) - 1, "not one line: %s", r->err);
}

/* The JSON of topic describe names every partition with a leader. */
static void expect_led_json(const char *json, const char *name, int partitions, int rf)
{
	char head[128];
	snprintf(head, sizeof(head), "{\"name\":\"%s\",\"partitions\":[", name);
	cr_assert(strncmp(json, head, strlen(head)) == 0, "%s", json);
	for (int p = 0; p < partitions; p++) {
		char key[64];
		snprintf(key, sizeof(key), "{\"partition\":%d,\"leader\":", p);
		const char *at = strstr(json, key);
		cr_assert_not_null(at, "partition %d missing: %s", p, json);
		int leader = atoi(at + strlen(key));
		cr_assert(leader >= 1 && leader <= nnodes, "partition %d leader %d", p, leader);
		const char *reps = strstr(at, "\"replicas\":[");
		cr_assert_not_null(reps);
		int count = 1;
		for (const char *c = reps + 12; *c != ']'; c++)
			count += *c == ',';
		cr_assert_eq(count, rf, "partition %d: %s", p, json);
		cr_assert_not_null(strstr(at, "\"isr\":["));
		cr_assert_not_null(strstr(at, "\"log_start\":0,\"log_end\":"));
		/* Its Raft group names the leader's directory of it. */
		const char *g = strstr(at, "\"raft_group\":");
		cr_assert_not_null(g, "partition %d: no raft_group: %s", p, json);
		char dir[700];
		snprintf(dir, sizeof(dir), "%s/raft/g%d/log", nodes[leader - 1].dir, atoi(g + 13));
		cr_assert_eq(access(dir, F_OK), 0, "partition %d: no %s", p, dir);
	}
	cr_assert(strstr(json, "]}\n") != NULL, "%s", json);
}

/* cluster status --json: every node alive on its port, a controller,
 * the replicas of every partition counted, nothing under-replicated. */
static void expect_status_json(const char *json, int count, int replicas)
{
	cr_assert(strncmp(json, "{\"cluster_id\":\"", 15) == 0, "%s", json);
	const char *c = strstr(json, "\"controller\":");
	cr_assert_not_null(c, "%s", json);
	int controller = atoi(c + 13);
	cr_assert(controller >= 1 && controller <= count, "%s", json);
	int total = 0;
	for (int i = 0; i < count; i++) {
		char node[128];
		snprintf(node, sizeof(node),
			 "{\"id\":%d,\"host\":\"127.0.0.1\",\"port\":%d,\"rack\":\"\","
			 "\"alive\":true,\"leaders\":",
			 i + 1, nodes[i].ports[0]);
		const char *at = strstr(json, node);
		cr_assert_not_null(at, "node %d: %s", i + 1, json);
		const char *rp = strstr(at, "\"replicas\":");
		cr_assert_not_null(rp);
		total += atoi(rp + 11);
	}
	cr_assert_eq(total, replicas, "%s", json);
	cr_assert(strstr(json, "],\"under_replicated_partitions\":0,\"under_replicated\":[]}\n") !=
			  NULL,
		  "%s", json);
}

static bool status_settled(void *arg)
{
	struct run *r = arg;
	sluice(r, bootstrap, "cluster status --json");
	return r->status == 0 && strstr(r->out, "\"under_replicated\":[]") != NULL;
}

/* An admin handle on a client of bootstrap and key, value pairs (NULL
 * ended). admin_free closes both. */
static sluice_client_t *admin_cl;

static sluice_admin_t *admin_new(const char *boot, ...)
{
	char err[256];
	sluice_conf_t *conf = sluice_conf_new();
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", boot, err, sizeof(err)), SLUICE_OK,
		     "%s", err);
	va_list ap;
	va_start(ap, boot);
	for (const char *k; (k = va_arg(ap, const char *)) != NULL;) {
		const char *v = va_arg(ap, const char *);
		cr_assert_eq(sluice_conf_set(conf, k, v, err, sizeof(err)), SLUICE_OK, "%s", err);
	}
	va_end(ap);
	admin_cl = sluice_client_new(conf, err, sizeof(err));
	cr_assert_not_null(admin_cl, "%s", err);
	sluice_admin_t *a = sluice_admin_new(admin_cl);
	cr_assert_not_null(a);
	return a;
}

static void admin_free(sluice_admin_t *a)
{
	sluice_admin_destroy(a);
	sluice_client_destroy(admin_cl);
	admin_cl = NULL;
}

Test(cli, topics_on_one_node_through_the_contract)
{
	static struct run r;
	cluster_up(1);
	sluice(&r, bootstrap, "topic create orders --partitions 3 --replication-factor 1 "
			      "--config cleanup.policy=compact --config retention.ms=-1");
	expect_ok(&r);
	sluice(&r, bootstrap, "topic describe orders --json");
	expect_ok(&r);
	expect_led_json(r.out, "orders", 3, 1);
	sluice(&r, bootstrap, "topic describe orders");
	expect_ok(&r);
	cr_assert(strstr(r.out, "partition 2 leader 1 replicas 1 isr 1") != NULL, "%s", r.out);
	sluice(&r, bootstrap, "topic create audit --partitions 1 --replication-factor 1");
	expect_ok(&r);
	sluice(&r, bootstrap, "topic list");
	expect_ok(&r);
	cr_assert_str_eq(r.out, "audit\norders\n");

	/* Refusals: precise, one line, non-zero, nothing changed. */
	sluice(&r, bootstrap, "topic create orders --partitions 1 --replication-factor 1");
	expect_fail(&r, 1, "TOPIC_ALREADY_EXISTS: topic 'orders' already exists");
	sluice(&r, bootstrap, "topic create a/b --partitions 1 --replication-factor 1");
	expect_fail(&r, 1, "INVALID_TOPIC");
	sluice(&r, bootstrap, "topic create x --partitions 1 --replication-factor 3");
	expect_fail(&r, 1, "INVALID_REPLICATION_FACTOR: replication factor 3 is above the 1 "
			   "registered nodes");
	sluice(&r, bootstrap, "topic create x --partitions 1 --replication-factor 1 --config a=b");
	expect_fail(&r, 1, "INVALID_CONFIG: unknown config 'a'");
	sluice(&r, bootstrap, "topic describe nope");
	expect_fail(&r, 1, "UNKNOWN_TOPIC_OR_PARTITION: topic 'nope' does not exist");
	sluice(&r, bootstrap, "topic delete nope");
	expect_fail(&r, 1, "UNKNOWN_TOPIC_OR_PARTITION");
	sluice(&r, bootstrap, "topic list");
	cr_assert_str_eq(r.out, "audit\norders\n");
	sluice(&r, bootstrap, "topic list --json");
	expect_ok(&r);
	cr_assert_str_eq(r.out, "{\"topics\":[\"audit\",\"orders\"]}\n");
	sluice(&r, bootstrap, "group list --json");
	expect_ok(&r);
	cr_assert_str_eq(r.out, "{\"groups\":[]}\n");
	/* Every command has --help: its usage, exit 0. */
	static const char *const cmds[] = { "topic", "produce", "consume", "group", "cluster",
					    "perf", "log" };
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		sluice(&r, bootstrap, "%s --help", cmds[k]);
		expect_ok(&r);
		char want[64];
		snprintf(want, sizeof(want), "\n  %s ", cmds[k]);
		cr_assert(strstr(r.out, want) != NULL, "%s --help: %s", cmds[k], r.out);
	}
	sluice(&r, bootstrap, "nope --help");
	expect_fail(&r, 2, "unknown command 'nope'");

	/* Usage errors exit 2; later commands say so. */
	sluice(&r, bootstrap, "topic create y --partitions many --replication-factor 1");
	expect_fail(&r, 2, "--partitions needs a positive number");
	sluice(&r, bootstrap, "topics");
	expect_fail(&r, 2, "unknown command 'topics'");
	sluice(&r, bootstrap, "log dump /nonexistent/x");
	expect_fail(&r, 1, "NOT_FOUND: /nonexistent/x is not a directory");
	sluice(&r, bootstrap, "log list");
	expect_fail(&r, 2, "log: dump is the subcommand");
	sluice(&r, bootstrap, "group frob");
	expect_fail(&r, 2, "group: list, describe, delete or reset-offsets is the subcommand");
	sluice(&r, NULL, "--bootstrap nonsense topic list");
	expect_fail(&r, 2, "bootstrap.servers: 'nonsense' is not host:port");

	sluice(&r, bootstrap, "topic delete audit");
	expect_ok(&r);
	sluice(&r, bootstrap, "topic list");
	cr_assert_str_eq(r.out, "orders\n");
	sluice(&r, bootstrap, "cluster status --json");
	expect_ok(&r);
	cr_assert(strstr(r.out, "\"controller\":1,\"nodes\":[{\"id\":1,\"host\":\"127.0.0.1\"") !=
			  NULL,
		  "%s", r.out);
	cr_assert(strstr(r.out, "\"alive\":true,\"leaders\":3,\"replicas\":3}],"
				"\"under_replicated_partitions\":0,\"under_replicated\":[]}\n") != NULL,
		  "%s", r.out);
	cluster_down();
}

/* Every node lists t0 and t2 (and no t1). */
static bool lists_t0_t2(void *arg)
{
	struct run *r = arg;
	for (int i = 0; i < nnodes; i++) {
		char boot[64];
		snprintf(boot, sizeof(boot), "127.0.0.1:%d", nodes[i].ports[0]);
		sluice(r, boot, "topic list");
		if (r->status != 0 || strcmp(r->out, "t0\nt2\n") != 0)
			return false;
	}
	return true;
}

Test(cli, three_nodes_any_bootstrap_node_creates_and_the_status_shows_every_node, .timeout = 180)
{
	static struct run r;
	cluster_up(3);
	/* Each node in turn as the only bootstrap address: two of them do
	 * not lead the controller, and the write still lands. */
	for (int i = 0; i < 3; i++) {
		char boot[64], name[16];
		snprintf(boot, sizeof(boot), "127.0.0.1:%d", nodes[i].ports[0]);
		snprintf(name, sizeof(name), "t%d", i);
		sluice(&r, boot, "topic create %s --partitions 6 --replication-factor 3", name);
		expect_ok(&r);
		sluice(&r, boot, "topic describe %s --json", name);
		expect_ok(&r);
		expect_led_json(r.out, name, 6, 3);
	}
	sluice(&r, bootstrap, "topic create t3 --partitions 2 --replication-factor 4");
	expect_fail(&r, 1, "INVALID_REPLICATION_FACTOR");
	/* Followers join the ISR once they caught up: a heartbeat or two. */
	cr_assert(tl_wait_until(status_settled, &r, 10000, 100), "%s", r.out);
	expect_status_json(r.out, 3, 18 * 3);
	sluice(&r, bootstrap, "cluster status");
	expect_ok(&r);
	for (int i = 0; i < 3; i++) {
		char line[64];
		snprintf(line, sizeof(line), "node %d 127.0.0.1:%d rack - alive ", i + 1,
			 nodes[i].ports[0]);
		cr_assert(strstr(r.out, line) != NULL, "%s", r.out);
	}
	cr_assert(strstr(r.out, "under_replicated_partitions 0\n") != NULL, "%s", r.out);
	sluice(&r, bootstrap, "topic delete t1");
	expect_ok(&r);
	/* Applied on the controller's leader; the others within a heartbeat
	 * or two. Which one a CLI run asks is not fixed: ask each. */
	cr_assert(tl_wait_until(lists_t0_t2, &r, 5000, 50), "topic list: %s", r.out);

	/* A node that hangs (SIGSTOP: its port still takes connections)
	 * costs a call socket.timeout.ms, then another node answers. */
	kill(nodes[2].p.pid, SIGSTOP);
	char boot[128];
	snprintf(boot, sizeof(boot), "127.0.0.1:%d,127.0.0.1:%d", nodes[2].ports[0],
		 nodes[0].ports[0]);
	sluice_admin_t *a = admin_new(boot, "socket.timeout.ms", "300", "request.timeout.ms",
				      "20000", NULL);
	for (int i = 0; i < 4; i++) {
		int64_t t0 = tl_now_ms();
		sluice_report_t *rep = NULL;
		cr_assert_eq(sluice_topic_list(a, NULL, NULL, &rep), SLUICE_OK, "%s",
			     sluice_report_errmsg(rep));
		cr_assert_eq(sluice_report_topic_count(rep), 2);
		sluice_report_destroy(rep);
		cr_assert_lt(tl_now_ms() - t0, 5000, "list %d waited for the hung node", i);
	}
	admin_free(a);
	/* The hung node alone: its timeout, retried until the deadline. */
	snprintf(boot, sizeof(boot), "127.0.0.1:%d", nodes[2].ports[0]);
	a = admin_new(boot, "socket.timeout.ms", "300", "request.timeout.ms", "1500", NULL);
	int64_t t0 = tl_now_ms();
	sluice_report_t *rep = NULL;
	cr_assert_eq(sluice_topic_list(a, NULL, NULL, &rep), SLUICE_ERR_TIMED_OUT);
	cr_assert(strstr(sluice_report_errmsg(rep), ": no response within ") != NULL, "%s",
		  sluice_report_errmsg(rep));
	sluice_report_destroy(rep);
	cr_assert_lt(tl_now_ms() - t0, 4000);
	admin_free(a);
	kill(nodes[2].p.pid, SIGCONT);
	cluster_down();
}

Test(cli, an_unreachable_cluster_fails_within_the_deadline)
{
	static struct run r;
	int port;
	cr_assert_eq(tl_free_ports(&port, 1), 0);
	char boot[64];
	snprintf(boot, sizeof(boot), "127.0.0.1:%d", port);
	int64_t t0 = tl_now_ms();
	sluice(&r, boot, "--timeout-ms 1500 topic list");
	expect_fail(&r, 1, "connection refused (retried until request.timeout.ms, 1500 ms)");
	cr_assert_lt(tl_now_ms() - t0, 10000);
}

/* libsluice directly: the asynchronous form, and configuration checks. */
static void done(void *opaque, sluice_err_t err, const sluice_report_t *r)
{
	int *out = opaque;
	out[0] = err;
	out[1] = sluice_report_partition_count(r);
	__atomic_store_n(&out[2], 1, __ATOMIC_RELEASE);
}

static bool fired(void *arg)
{
	return __atomic_load_n(&((int *)arg)[2], __ATOMIC_ACQUIRE) == 1;
}

struct nested {
	sluice_admin_t *a;
	int inner;
	int fired;
};

static void nested_cb(void *opaque, sluice_err_t err, const sluice_report_t *r)
{
	struct nested *n = opaque;
	(void)err;
	(void)r;
	sluice_report_t *rep = NULL;
	n->inner = sluice_topic_list(n->a, NULL, NULL, &rep);
	sluice_report_destroy(rep);
	__atomic_store_n(&n->fired, 1, __ATOMIC_RELEASE);
}

static bool nested_fired(void *arg)
{
	return __atomic_load_n(&((struct nested *)arg)->fired, __ATOMIC_ACQUIRE) == 1;
}

Test(cli, the_library_calls_back_once_and_checks_its_configuration)
{
	char err[256];
	sluice_conf_t *conf = sluice_conf_new();
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.server", "x:1", err, sizeof(err)),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert(strstr(err, "unknown property 'bootstrap.server'") != NULL, "%s", err);
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", "a:1,b", err, sizeof(err)),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert(strstr(err, "'b' is not host:port") != NULL, "%s", err);
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", "a:70000", err, sizeof(err)),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_conf_set(conf, "request.timeout.ms", "0", err, sizeof(err)),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_conf_set(conf, "request.timeout.ms", "5s", err, sizeof(err)),
		     SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_str_eq(sluice_err_name(SLUICE_ERR_TOPIC_EXISTS), "TOPIC_ALREADY_EXISTS");
	cr_assert(sluice_err_is_retriable(6));
	cr_assert(!sluice_err_is_retriable(SLUICE_OK));

	cluster_up(1);
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)),
		     SLUICE_OK, "%s", err);
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	sluice_admin_t *a = sluice_admin_new(cl);
	cr_assert_eq(sluice_topic_create(a, "x", 0, 1, NULL, NULL, NULL, NULL),
		     SLUICE_ERR_INVALID_ARGUMENT);
	const char *odd[] = { "retention.ms", NULL };
	cr_assert_eq(sluice_topic_create(a, "x", 1, 1, odd, NULL, NULL, NULL),
		     SLUICE_ERR_INVALID_ARGUMENT);
	static int res[3];
	cr_assert_eq(sluice_topic_create(a, "async", 4, 1, NULL, done, res, NULL), SLUICE_OK);
	cr_assert(tl_wait_until(fired, res, 30000, 10), "the callback never ran");
	cr_assert_eq(res[0], SLUICE_OK);
	cr_assert_eq(res[1], 4);
	sluice_report_t *rep = NULL;
	cr_assert_eq(sluice_topic_describe(a, "async", NULL, NULL, &rep), SLUICE_OK);
	cr_assert_eq(sluice_report_partition_count(rep), 4);
	cr_assert_eq(sluice_report_leader(rep, 3), 1);
	cr_assert_eq(sluice_report_leader(rep, 4), -1);
	cr_assert_geq(sluice_report_log_end(rep, 0), sluice_report_log_start(rep, 0));
	sluice_report_destroy(rep);

	/* A response above max.response.bytes fails its call at once (not
	 * retried: every node would send it), and the client goes on. */
	char name[250];
	for (int i = 0; i < 2; i++) {
		memset(name, 'a' + i, 249);
		name[249] = '\0';
		cr_assert_eq(sluice_topic_create(a, name, 1, 1, NULL, NULL, NULL, &rep), SLUICE_OK,
			     "%s", sluice_report_errmsg(rep));
		sluice_report_destroy(rep);
	}
	sluice_admin_t *small = admin_new(bootstrap, "max.response.bytes", "512", NULL);
	int64_t t0 = tl_now_ms();
	cr_assert_eq(sluice_topic_list(small, NULL, NULL, &rep), SLUICE_ERR_MESSAGE_TOO_LARGE);
	cr_assert(strstr(sluice_report_errmsg(rep), "is above max.response.bytes (512)") != NULL,
		  "%s", sluice_report_errmsg(rep));
	sluice_report_destroy(rep);
	cr_assert_lt(tl_now_ms() - t0, 2000);
	cr_assert_eq(sluice_topic_describe(small, "async", NULL, NULL, &rep), SLUICE_OK, "%s",
		     sluice_report_errmsg(rep));
	cr_assert_eq(sluice_report_partition_count(rep), 4);
	sluice_report_destroy(rep);
	admin_free(small);

	/* A blocking call from a callback would wait for itself: BUSY. */
	static struct nested nest;
	nest.a = a;
	cr_assert_eq(sluice_topic_list(a, nested_cb, &nest, NULL), SLUICE_OK);
	cr_assert(tl_wait_until(nested_fired, &nest, 30000, 10));
	cr_assert_eq(nest.inner, SLUICE_ERR_BUSY);

	/* A call still running when the client closes ends CANCELED. */
	memset(res, 0, sizeof(res));
	cr_assert_eq(sluice_topic_describe(a, "missing", done, res, NULL), SLUICE_OK);
	sluice_admin_destroy(a);
	sluice_client_destroy(cl);
	cr_assert(fired(res), "destroy returned before the callback ran");
	cr_assert_eq(res[0], SLUICE_ERR_CANCELED);
	cluster_down();
}

/* A produce that failed: "produced 0 records", then the one error line. */
static void expect_produce_fail(struct run *r, const char *text)
{
	cr_assert_eq(r->status, 1, "exit %d; stderr: %s", r->status, r->err);
	const char *nl = strchr(r->err, '\n');
	cr_assert(strncmp(r->err, "produced 0 records\n", 19) == 0 && nl != NULL, "%s", r->err);
	cr_assert(strstr(nl + 1, text) != NULL, "stderr lacks '%s': %s", text, r->err);
	cr_assert_eq(strchr(nl + 1, '\n'), r->err + strlen(r->err) - 1, "not one line: %s", r->err);
}

/* The records `consume --print-offset --print-headers --print-key`
 * printed: partition, offset, headers, key, value per line. */
struct crec {
	int partition;
	long long offset;
	char headers[64], key[64], value[64];
};

static size_t parse_consumed(const char *out, struct crec *recs, size_t cap)
{
	size_t n = 0;
	for (const char *line = out; *line != '\0' && n < cap;) {
		const char *end = strchr(line, '\n');
		cr_assert_not_null(end);
		char buf[512];
		size_t len = (size_t)(end - line) < sizeof(buf) - 1 ? (size_t)(end - line)
								     : sizeof(buf) - 1;
		memcpy(buf, line, len);
		buf[len] = '\0';
		char *f[5], *save = NULL;
		int k = 0;
		/* strsep keeps empty fields (a null key). */
		char *rest = buf;
		while (k < 5 && (f[k] = strsep(&rest, "\t")) != NULL)
			k++;
		(void)save;
		cr_assert_eq(k, 5, "not 5 fields: '%s'", buf);
		recs[n].partition = atoi(f[0]);
		recs[n].offset = atoll(f[1]);
		snprintf(recs[n].headers, sizeof(recs[n].headers), "%s", f[2]);
		snprintf(recs[n].key, sizeof(recs[n].key), "%s", f[3]);
		snprintf(recs[n].value, sizeof(recs[n].value), "%s", f[4]);
		n++;
		line = end + 1;
	}
	return n;
}

Test(cli, records_produced_are_consumed_once_in_order_where_their_keys_say, .timeout = 240)
{
	static struct run r;
	static char input[65536];
	static struct crec recs[400];
	enum { N = 300 };
	cluster_up(3);
	sluice(&r, bootstrap, "topic create orders --partitions 3 --replication-factor 3");
	expect_ok(&r);
	/* Keyed records, and every 25th with a null key. */
	size_t len = 0;
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(input + len, sizeof(input) - len,
					i % 25 == 0 ? "value-%d\n" : "key-%d|value-%d\n", i, i);
	sluice_in(&r, bootstrap, input,
		  "produce orders --key-separator | --header src=cli --header n=1");
	expect_ok(&r);
	cr_assert_str_eq(r.err, "produced 300 records\n");

	sluice(&r, bootstrap,
	       "consume orders --from-beginning --max-messages 300 --timeout-ms 20000 "
	       "--print-offset --print-headers --print-key");
	expect_ok(&r);
	cr_assert_str_eq(r.err, "consumed 300 records\n");
	size_t n = parse_consumed(r.out, recs, 400);
	cr_assert_eq(n, N);
	static bool seen[N];
	int last_value[3] = { -1, -1, -1 };
	long long last_offset[3] = { -1, -1, -1 };
	for (size_t i = 0; i < n; i++) {
		struct crec *c = &recs[i];
		int v;
		cr_assert_eq(sscanf(c->value, "value-%d", &v), 1, "%s", c->value);
		cr_assert(v >= 0 && v < N && !seen[v], "value %d twice or out of range", v);
		seen[v] = true;
		cr_assert_str_eq(c->headers, "src=cli,n=1");
		if (v % 25 == 0) {
			cr_assert_str_eq(c->key, "", "a null key prints as an empty field");
		} else {
			char key[32];
			snprintf(key, sizeof(key), "key-%d", v);
			cr_assert_str_eq(c->key, key);
			cr_assert_eq(c->partition, cl_partition_for_key(key, strlen(key), 3),
				     "%s in partition %d", key, c->partition);
		}
		/* Per partition: offsets increase, and records come in the
		 * order they were produced. */
		cr_assert(c->partition >= 0 && c->partition < 3);
		cr_assert_gt(c->offset, last_offset[c->partition]);
		cr_assert_gt(v, last_value[c->partition], "partition %d: %d after %d", c->partition,
			     v, last_value[c->partition]);
		last_offset[c->partition] = c->offset;
		last_value[c->partition] = v;
	}

	/* One partition from an offset: the record there, and nothing else. */
	long long second = -1;
	int p0 = recs[0].partition, seen_p0 = 0;
	char want[80] = "";
	for (size_t i = 0; i < n && second < 0; i++)
		if (recs[i].partition == p0 && ++seen_p0 == 2) {
			second = recs[i].offset;
			snprintf(want, sizeof(want), "%s\n", recs[i].value);
		}
	sluice(&r, bootstrap, "consume orders --partition %d --offset %lld --max-messages 1", p0,
	       second);
	expect_ok(&r);
	cr_assert_str_eq(r.out, want);
	/* From the end: nothing new within the timeout is a clean exit. */
	sluice(&r, bootstrap, "consume orders --timeout-ms 300");
	expect_ok(&r);
	cr_assert_str_eq(r.out, "");
	cr_assert_str_eq(r.err, "consumed 0 records\n");

	/* Refusals: precise, nothing written. */
	sluice_in(&r, bootstrap, "x\n", "produce orders --partition 7");
	expect_produce_fail(&r, "UNKNOWN_TOPIC_OR_PARTITION: record 1 of standard input: topic "
				"'orders' has no partition 7");
	sluice_in(&r, bootstrap, "x\n", "--timeout-ms 1500 produce nope");
	expect_produce_fail(&r, "UNKNOWN_TOPIC_OR_PARTITION");
	sluice_in(&r, bootstrap, "x\n", "produce orders --acks 2");
	expect_fail(&r, 2, "--acks '2' is not all, 1 or 0");
	sluice(&r, bootstrap, "consume orders --offset 3");
	expect_fail(&r, 2, "--offset needs --partition");
	sluice(&r, bootstrap, "consume orders --partition 0 --offset -1");
	expect_fail(&r, 2, "--offset '-1' is not an offset");
	sluice(&r, bootstrap, "consume orders --group g --partition 1");
	expect_fail(&r, 2, "--partition and --group exclude each other");

	/* A record above the topic's max.message.bytes: the batch is refused
	 * whole, and the topic stays empty. */
	sluice(&r, bootstrap, "topic create small --partitions 1 --replication-factor 3 "
			      "--config max.message.bytes=1024");
	expect_ok(&r);
	len = 0;
	uint32_t x = 12345;
	for (int i = 0; i < 4000; i++) {
		x = x * 1103515245u + 12345u;
		input[len++] = (char)('!' + (x >> 16) % 90);
	}
	input[len++] = '\n';
	input[len] = '\0';
	sluice_in(&r, bootstrap, input, "produce small");
	expect_produce_fail(&r, "MESSAGE_TOO_LARGE");
	sluice(&r, bootstrap, "consume small --from-beginning --timeout-ms 500");
	expect_ok(&r);
	cr_assert_str_eq(r.out, "");
	cluster_down();
}

/* ---- The producer's retries ---------------------------------------------- */

struct deliveries {
	pthread_mutex_t mu;
	int ok, failed;
	sluice_err_t last_err;
	int64_t offset[64];
};

static void on_delivered(void *opaque, sluice_err_t err, const sluice_report_t *r)
{
	struct deliveries *d = opaque;
	pthread_mutex_lock(&d->mu);
	if (err == SLUICE_OK && d->ok < 64)
		d->offset[d->ok] = sluice_report_offset(r);
	if (err == SLUICE_OK)
		d->ok++;
	else
		d->failed++, d->last_err = err;
	pthread_mutex_unlock(&d->mu);
}

static sluice_client_t *data_client(const char *idempotence, const char *compression)
{
	char err[256];
	sluice_conf_t *conf = sluice_conf_new();
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)), 0);
	/* A lost answer costs request.timeout.ms + socket.timeout.ms. */
	cr_assert_eq(sluice_conf_set(conf, "request.timeout.ms", "1000", err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "socket.timeout.ms", "500", err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "enable.idempotence", idempotence, err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "compression", compression, err, sizeof(err)), 0);
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	return cl;
}

/* Produces "<tag>-0".."<tag>-9" one by one (each flushed), the answer to
 * the 6th request lost; returns how often each value is in the topic. */
static void produce_losing_an_answer(const char *topic, const char *idempotence, const char *tag,
				     int counts[10])
{
	sluice_client_t *cl = data_client(idempotence, "zstd");
	sluice_producer_t *p = sluice_producer_new(cl);
	cr_assert_not_null(p);
	struct deliveries d = { .mu = PTHREAD_MUTEX_INITIALIZER };
	for (int i = 0; i < 10; i++) {
		char v[32];
		int n = snprintf(v, sizeof(v), "%s-%d", tag, i);
		if (i == 5)
			cl_test_drop_responses(cl, SLUICE__API_KEY__PRODUCE, 1);
		cr_assert_eq(sluice_produce(p, topic, 0, NULL, 0, v, (size_t)n, on_delivered, &d),
			     SLUICE_OK);
		cr_assert_eq(sluice_producer_flush(p, 30000), SLUICE_OK);
	}
	sluice_producer_close(p);
	cr_assert_eq(d.failed, 0, "%d failed, the last with %s", d.failed,
		     sluice_err_name(d.last_err));
	cr_assert_eq(d.ok, 10);
	for (int i = 1; i < 10; i++)
		cr_assert_gt(d.offset[i], d.offset[i - 1], "offsets in order");

	/* Everything in the partition, counted per value of this run. */
	sluice_consumer_t *c = sluice_consumer_new(cl, NULL, NULL, NULL);
	cr_assert_not_null(c);
	cr_assert_eq(sluice_assign(c, topic, 0), SLUICE_OK);
	memset(counts, 0, 10 * sizeof(int));
	sluice_msg_t *m;
	int64_t last = -1;
	while (sluice_poll(c, 1500, &m) == SLUICE_OK) {
		size_t len;
		const char *v = sluice_msg_value(m, &len);
		char buf[32];
		snprintf(buf, sizeof(buf), "%.*s", (int)len, v);
		int i;
		size_t tl = strlen(tag);
		if (strncmp(buf, tag, tl) == 0 && buf[tl] == '-' && sscanf(buf + tl + 1, "%d", &i) == 1 &&
		    i >= 0 && i < 10)
			counts[i]++;
		cr_assert_gt(sluice_msg_offset(m), last);
		last = sluice_msg_offset(m);
		sluice_msg_destroy(m);
	}
	sluice_consumer_close(c);
	sluice_client_destroy(cl);
}

Test(cli, an_idempotent_retry_after_a_lost_answer_is_written_once, .timeout = 180)
{
	static struct run r;
	cluster_up(3);
	sluice(&r, bootstrap, "topic create retried --partitions 1 --replication-factor 3");
	expect_ok(&r);
	int counts[10];
	produce_losing_an_answer("retried", "true", "idem", counts);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(counts[i], 1, "idem-%d is in the log %d times", i, counts[i]);
	/* The same without idempotence writes the retried batch twice: the
	 * loss was real, and only the producer id kept it out. */
	produce_losing_an_answer("retried", "false", "plain", counts);
	cr_assert_eq(counts[5], 2, "plain-5 is in the log %d times", counts[5]);
	for (int i = 0; i < 10; i++)
		if (i != 5)
			cr_assert_eq(counts[i], 1, "plain-%d is in the log %d times", i, counts[i]);
	cluster_down();
}

/* ---- Retention --------------------------------------------------------- */

/* Segment files of partition groups (every group but the controller's)
 * in node i's data directory. */
static int segment_files(int i)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/raft", nodes[i].dir);
	DIR *d = opendir(path);
	cr_assert_not_null(d, "%s", path);
	int count = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != 'g' || strcmp(e->d_name, "g0") == 0)
			continue;
		char lp[1600];
		snprintf(lp, sizeof(lp), "%s/%s/log", path, e->d_name);
		DIR *l = opendir(lp);
		if (l == NULL)
			continue;
		struct dirent *f;
		while ((f = readdir(l)) != NULL) {
			size_t len = strlen(f->d_name);
			count += len > 4 && strcmp(f->d_name + len - 4, ".log") == 0;
		}
		closedir(l);
	}
	closedir(d);
	return count;
}

struct log_range {
	sluice_admin_t *a;
	int64_t start, end;
};

static bool log_start_moved(void *arg)
{
	struct log_range *lr = arg;
	sluice_report_t *r = NULL;
	if (sluice_topic_describe(lr->a, "short", NULL, NULL, &r) != SLUICE_OK) {
		sluice_report_destroy(r);
		return false;
	}
	lr->start = sluice_report_log_start(r, 0);
	lr->end = sluice_report_log_end(r, 0);
	sluice_report_destroy(r);
	return lr->start > 0;
}

static bool every_replica_retained(void *arg)
{
	int *before = arg;
	for (int i = 0; i < nnodes; i++)
		if (segment_files(i) * 3 > before[i])
			return false;
	return true;
}

Test(cli, retention_deletes_whole_segments_below_the_floor_on_every_replica, .timeout = 180)
{
	static struct run r;
	enum { N = 600 };
	retention_check_ms = "200";
	cluster_up(3);
	/* 4 KiB segments, and a byte of retention: everything retention
	 * may delete goes. */
	sluice(&r, bootstrap, "topic create short --partitions 1 --replication-factor 3 "
			      "--config segment.bytes=4096 --config retention.bytes=1");
	expect_ok(&r);
	/* Uncompressed: 1 KB records, four to a segment. */
	sluice_client_t *cl = data_client("true", "none");
	sluice_producer_t *p = sluice_producer_new(cl);
	struct deliveries d = { .mu = PTHREAD_MUTEX_INITIALIZER };
	static char value[1000];
	for (int i = 0; i < N; i++) {
		memset(value, 'x', sizeof(value));
		int n = snprintf(value, sizeof(value), "%05d", i);
		value[n] = 'x';
		cr_assert_eq(sluice_produce(p, "short", 0, NULL, 0, value, sizeof(value), on_delivered,
					    &d),
			     SLUICE_OK);
		/* One batch, so one Raft entry, per record: snapshots come
		 * every 256 entries. */
		cr_assert_eq(sluice_producer_flush(p, 30000), SLUICE_OK);
	}
	sluice_producer_close(p);
	cr_assert_eq(d.ok, N);

	/* The leader's log start moves; every replica deletes most of its
	 * segments (the ones at or after the last snapshot stay). */
	sluice_admin_t *a = sluice_admin_new(cl);
	struct log_range lr = { .a = a };
	cr_assert(tl_wait_until(log_start_moved, &lr, 30000, 100), "the log start stayed at 0");
	int before[3];
	for (int i = 0; i < nnodes; i++)
		before[i] = N / 4; /* 4 KiB segments of 1 KiB records */
	cr_assert(tl_wait_until(every_replica_retained, before, 30000, 100),
		  "segments left: %d, %d, %d", segment_files(0), segment_files(1), segment_files(2));
	cr_assert_leq(lr.start, lr.end);

	/* Below the floor only: from the new start on, every record is there,
	 * in order, up to the last one produced. */
	sluice_consumer_t *c = sluice_consumer_new(cl, NULL, NULL, NULL);
	cr_assert_eq(sluice_assign(c, "short", 0), SLUICE_OK);
	sluice_msg_t *m;
	int first = -1, next = -1;
	while (next < N && sluice_poll(c, 3000, &m) == SLUICE_OK) {
		size_t len;
		const char *v = sluice_msg_value(m, &len);
		int i = atoi(v);
		if (first < 0) {
			first = next = i;
			cr_assert_geq(sluice_msg_offset(m), lr.start);
		}
		cr_assert_eq(i, next, "record %d after %d", i, next - 1);
		next++;
		sluice_msg_destroy(m);
	}
	sluice_consumer_close(c);
	cr_assert_eq(next, N, "records %d.. read, the last %d", first, next - 1);
	cr_assert_gt(first, 0, "nothing was deleted");
	sluice_admin_destroy(a);
	sluice_client_destroy(cl);
	cluster_down();
}

/* Whether every node's log says compaction rewrote segments. */
static bool every_node_compacted(void *arg)
{
	(void)arg;
	for (int i = 0; i < nnodes; i++) {
		FILE *f = fopen(nodes[i].log, "r");
		if (f == NULL)
			return false;
		char line[1024];
		bool found = false;
		while (!found && fgets(line, sizeof(line), f) != NULL)
			found = strstr(line, "compaction rewrote") != NULL;
		fclose(f);
		if (!found)
			return false;
	}
	return true;
}

Test(cli, compaction_keeps_every_keys_last_record_on_every_replica, .timeout = 180)
{
	static struct run r;
	enum { N = 600, KEYS = 10 };
	retention_check_ms = "200";
	cluster_up(3);
	sluice(&r, bootstrap, "topic create table --partitions 1 --replication-factor 3 "
			      "--config segment.bytes=4096 --config cleanup.policy=compact");
	expect_ok(&r);
	sluice_client_t *cl = data_client("true", "none");
	sluice_producer_t *p = sluice_producer_new(cl);
	struct deliveries d = { .mu = PTHREAD_MUTEX_INITIALIZER };
	static char value[512];
	for (int i = 0; i < N; i++) {
		char key[16];
		int kl = snprintf(key, sizeof(key), "k%d", i % KEYS);
		memset(value, 'v', sizeof(value));
		int n = snprintf(value, sizeof(value), "%05d", i);
		value[n] = 'v';
		cr_assert_eq(sluice_produce(p, "table", 0, key, (size_t)kl, value, sizeof(value),
					    on_delivered, &d),
			     SLUICE_OK);
		cr_assert_eq(sluice_producer_flush(p, 30000), SLUICE_OK); /* an entry each */
	}
	sluice_producer_close(p);
	cr_assert_eq(d.ok, N);
	cr_assert(tl_wait_until(every_node_compacted, NULL, 30000, 100),
		  "no compaction on every node");

	/* What is left: fewer records, each key's in the order produced,
	 * and every key's last record. */
	sluice_consumer_t *c = sluice_consumer_new(cl, NULL, NULL, NULL);
	cr_assert_eq(sluice_assign(c, "table", 0), SLUICE_OK);
	sluice_msg_t *m;
	int last[KEYS], count = 0;
	for (int k = 0; k < KEYS; k++)
		last[k] = -1;
	while (sluice_poll(c, 2000, &m) == SLUICE_OK) {
		size_t kl, vl;
		const char *key = sluice_msg_key(m, &kl);
		const char *v = sluice_msg_value(m, &vl);
		cr_assert_not_null(key);
		int k = atoi(key + 1), i = atoi(v);
		cr_assert(k >= 0 && k < KEYS && i % KEYS == k, "k%d holds %d", k, i);
		cr_assert_gt(i, last[k], "k%d: %d after %d", k, i, last[k]);
		last[k] = i;
		count++;
		sluice_msg_destroy(m);
	}
	sluice_consumer_close(c);
	cr_assert_lt(count, N, "nothing compacted away");
	for (int k = 0; k < KEYS; k++)
		cr_assert_eq(last[k], N - KEYS + k, "k%d's last record is %d", k, last[k]);
	sluice_client_destroy(cl);
	cluster_down();
}

/* ---- The consumer's positions ------------------------------------------- */

/* The value (a decimal) of the next record, or -1 when none came. */
static int next_value(sluice_consumer_t *c, int timeout_ms, int64_t *offset)
{
	sluice_msg_t *m;
	sluice_err_t err = sluice_poll(c, timeout_ms, &m);
	if (err != SLUICE_OK)
		return -1;
	size_t len;
	char buf[32];
	const char *v = sluice_msg_value(m, &len);
	snprintf(buf, sizeof(buf), "%.*s", (int)len, v);
	if (offset != NULL)
		*offset = sluice_msg_offset(m);
	sluice_msg_destroy(m);
	return atoi(buf);
}

Test(cli, the_consumer_seeks_to_ends_offsets_timestamps_and_shifts, .timeout = 120)
{
	static struct run r;
	enum { N = 100 };
	const int64_t t0 = 1700000000000;
	cluster_up(1);
	sluice(&r, bootstrap, "topic create seek --partitions 1 --replication-factor 1");
	expect_ok(&r);
	sluice_client_t *cl = data_client("true", "zstd");
	sluice_producer_t *p = sluice_producer_new(cl);
	sluice_rec_t *rec = sluice_rec_new();
	struct deliveries d = { .mu = PTHREAD_MUTEX_INITIALIZER };
	for (int i = 0; i < N; i++) {
		char v[16];
		int n = snprintf(v, sizeof(v), "%d", i);
		sluice_rec_clear(rec);
		cr_assert_eq(sluice_rec_set_value(rec, v, (size_t)n), SLUICE_OK);
		cr_assert_eq(sluice_rec_set_timestamp(rec, t0 + i * 1000), SLUICE_OK);
		cr_assert_eq(sluice_produce_ex(p, "seek", 0, rec, on_delivered, &d), SLUICE_OK);
	}
	cr_assert_eq(sluice_producer_flush(p, 30000), SLUICE_OK);
	cr_assert_eq(d.ok, N);

	sluice_consumer_t *c = sluice_consumer_new(cl, NULL, NULL, NULL);
	cr_assert_eq(sluice_assign(c, "seek", 0), SLUICE_OK); /* auto.offset.reset=earliest */
	static int64_t off[N + 1];
	for (int i = 0; i < N; i++) {
		int64_t o;
		cr_assert_eq(next_value(c, 5000, &o), i);
		off[i] = o;
	}
	/* A timestamp: the first record at or after it. */
	cr_assert_eq(sluice_seek(c, "seek", 0, SLUICE_TIMESTAMP, t0 + 50 * 1000), SLUICE_OK);
	cr_assert_eq(next_value(c, 5000, NULL), 50);
	cr_assert_eq(sluice_seek(c, "seek", 0, SLUICE_TIMESTAMP, t0 + 50 * 1000 - 1), SLUICE_OK);
	cr_assert_eq(next_value(c, 5000, NULL), 50);
	/* A shift, from the record after the last polled (51). */
	cr_assert_eq(sluice_seek(c, "seek", 0, SLUICE_SHIFT, -10), SLUICE_OK);
	int want = 0;
	while (off[want] < off[51] - 10)
		want++;
	cr_assert_eq(next_value(c, 5000, NULL), want);
	/* An offset; the ends. */
	cr_assert_eq(sluice_seek(c, "seek", 0, SLUICE_OFFSET, off[77]), SLUICE_OK);
	cr_assert_eq(next_value(c, 5000, NULL), 77);
	cr_assert_eq(sluice_seek(c, "seek", 0, SLUICE_EARLIEST, 0), SLUICE_OK);
	cr_assert_eq(next_value(c, 5000, NULL), 0);
	cr_assert_eq(sluice_seek(c, "seek", 0, SLUICE_LATEST, 0), SLUICE_OK);
	cr_assert_eq(next_value(c, 300, NULL), -1, "nothing past the end yet");
	cr_assert_eq(sluice_produce(p, "seek", 0, NULL, 0, "100", 3, on_delivered, &d), SLUICE_OK);
	cr_assert_eq(sluice_producer_flush(p, 30000), SLUICE_OK);
	cr_assert_eq(next_value(c, 5000, NULL), 100, "a fetch waiting at the end gets it");
	/* Past the end: auto.offset.reset (earliest here) takes over. */
	cr_assert_eq(sluice_seek(c, "seek", 0, SLUICE_OFFSET, 1000000), SLUICE_OK);
	cr_assert_eq(next_value(c, 5000, NULL), 0);
	/* Refusals. */
	cr_assert_eq(sluice_seek(c, "seek", 1, SLUICE_EARLIEST, 0), SLUICE_ERR_UNKNOWN_TOPIC);
	cr_assert_eq(sluice_seek(c, "seek", 0, SLUICE_OFFSET, -1), SLUICE_ERR_INVALID_ARGUMENT);
	cr_assert_eq(sluice_assign(c, "seek", 3), SLUICE_ERR_UNKNOWN_TOPIC);
	sluice_consumer_close(c);
	sluice_rec_destroy(rec);
	sluice_producer_close(p);
	sluice_client_destroy(cl);

	/* auto.offset.reset=none: poll says where the position went wrong,
	 * once, and the partition waits for a seek. */
	char err[256];
	sluice_conf_t *conf = sluice_conf_new();
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "auto.offset.reset", "none", err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "request.timeout.ms", "1500", err, sizeof(err)), 0);
	cl = sluice_client_new(conf, err, sizeof(err));
	c = sluice_consumer_new(cl, NULL, NULL, NULL);
	cr_assert_eq(sluice_assign(c, "seek", 0), SLUICE_OK);
	cr_assert_eq(sluice_seek(c, "seek", 0, SLUICE_OFFSET, 1000000), SLUICE_OK);
	sluice_msg_t *m = NULL;
	cr_assert_eq(sluice_poll(c, 5000, &m), SLUICE_ERR_OFFSET_OUT_OF_RANGE);
	cr_assert_null(m);
	cr_assert_eq(sluice_poll(c, 300, &m), SLUICE_ERR_TIMED_OUT);
	cr_assert_eq(sluice_seek(c, "seek", 0, SLUICE_OFFSET, off[3]), SLUICE_OK);
	cr_assert_eq(next_value(c, 5000, NULL), 3);
	/* A topic that does not exist: its error, within request.timeout.ms. */
	cr_assert_eq(sluice_assign(c, "nope", SLUICE_PARTITION_ANY), SLUICE_ERR_UNKNOWN_TOPIC);
	sluice_consumer_close(c);
	sluice_client_destroy(cl);
	cluster_down();
}

/* ---- A leader lost while producing --------------------------------------- */

struct leader_of {
	sluice_admin_t *a;
	const char *topic;
	int leader;
};

/* Partition 0's leader, as the node asked knows it. */
static bool leader_known(void *arg)
{
	struct leader_of *lo = arg;
	sluice_report_t *rep = NULL;
	lo->leader = -1;
	if (sluice_topic_describe(lo->a, lo->topic, NULL, NULL, &rep) == SLUICE_OK)
		lo->leader = sluice_report_leader(rep, 0);
	sluice_report_destroy(rep);
	return lo->leader >= 1 && lo->leader <= 3;
}

static void on_value(void *opaque, sluice_err_t err, const sluice_report_t *r)
{
	int64_t *slot = opaque;
	*slot = err == SLUICE_OK ? sluice_report_offset(r) : -2;
}

Test(cli, a_leader_killed_while_the_library_produces_loses_and_duplicates_nothing, .timeout = 240)
{
	static struct run r;
	enum { N = 20000 };
	cluster_up(3);
	sluice(&r, bootstrap, "topic create fail --partitions 1 --replication-factor 3");
	expect_ok(&r);
	sluice_client_t *cl = data_client("true", "none");
	sluice_producer_t *p = sluice_producer_new(cl);
	static int64_t acked[N];
	for (int i = 0; i < N; i++)
		acked[i] = -1;
	char v[16];
	for (int i = 0; i < N / 2; i++) {
		int n = snprintf(v, sizeof(v), "%d", i);
		cr_assert_eq(sluice_produce(p, "fail", 0, NULL, 0, v, (size_t)n, on_value, &acked[i]),
			     SLUICE_OK);
	}
	/* Kill the leader with the first half on its way. */
	struct leader_of lo = { .a = sluice_admin_new(cl), .topic = "fail" };
	cr_assert(tl_wait_until(leader_known, &lo, 10000, 20), "no leader known");
	int leader = lo.leader;
	sluice_admin_t *a = lo.a;
	cr_assert_eq(tl_proc_kill(&nodes[leader - 1].p, SIGKILL), 0);
	for (int i = N / 2; i < N; i++) {
		int n = snprintf(v, sizeof(v), "%d", i);
		cr_assert_eq(sluice_produce(p, "fail", 0, NULL, 0, v, (size_t)n, on_value, &acked[i]),
			     SLUICE_OK);
	}
	cr_assert_eq(sluice_producer_flush(p, 120000), SLUICE_OK);
	sluice_producer_close(p);
	int failed = 0;
	for (int i = 0; i < N; i++)
		failed += acked[i] < 0;
	cr_assert_eq(failed, 0, "%d records not acknowledged", failed);

	/* Read back from the survivors: each value once, in order, at the
	 * offset its acknowledgement gave. */
	sluice_consumer_t *c = sluice_consumer_new(cl, NULL, NULL, NULL);
	cr_assert_eq(sluice_assign(c, "fail", 0), SLUICE_OK);
	int next = 0;
	while (next < N) {
		int64_t off;
		int val = next_value(c, 10000, &off);
		cr_assert_eq(val, next, "value %d where %d was due", val, next);
		cr_assert_eq(off, acked[val], "value %d at %lld, acknowledged at %lld", val,
			     (long long)off, (long long)acked[val]);
		next++;
	}
	cr_assert_eq(next_value(c, 500, NULL), -1, "a record after the last: a duplicate");
	sluice_consumer_close(c);
	sluice_admin_destroy(a);
	sluice_client_destroy(cl);
	tl_proc_wait(&nodes[leader - 1].p, 10000);
	for (int i = 0; i < nnodes; i++)
		if (i != leader - 1)
			tl_proc_kill(&nodes[i].p, SIGTERM);
	for (int i = 0; i < nnodes; i++)
		if (i != leader - 1)
			cr_assert_eq(tl_proc_wait(&nodes[i].p, 30000), 1, "node %d did not stop", i + 1);
}

/* ---- Batching ------------------------------------------------------------ */

struct counts {
	sluice_producer_t *p;
	uint64_t batches, records, want;
};

static bool acked_records(void *arg)
{
	struct counts *c = arg;
	cl_test_producer_counts(c->p, &c->batches, &c->records);
	return c->records >= c->want;
}

static bool acked_batches(void *arg)
{
	struct counts *c = arg;
	cl_test_producer_counts(c->p, &c->batches, &c->records);
	return c->batches >= c->want;
}

static sluice_producer_t *batching_producer(sluice_client_t **cl, const char *linger,
					    const char *batch_bytes)
{
	char err[256];
	sluice_conf_t *conf = sluice_conf_new();
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "linger.ms", linger, err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "batch.bytes", batch_bytes, err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "compression", "none", err, sizeof(err)), 0);
	*cl = sluice_client_new(conf, err, sizeof(err));
	cr_assert_not_null(*cl, "%s", err);
	sluice_producer_t *p = sluice_producer_new(*cl);
	cr_assert_not_null(p);
	return p;
}

Test(cli, batches_close_at_linger_ms_or_batch_bytes, .timeout = 120)
{
	static struct run r;
	static char value[100];
	memset(value, 'b', sizeof(value));
	cluster_up(1);
	sluice(&r, bootstrap, "topic create batched --partitions 1 --replication-factor 1");
	expect_ok(&r);
	sluice_client_t *cl;
	struct counts c;

	/* linger.ms 300: records produced together wait and go as one batch. */
	c = (struct counts){ .p = batching_producer(&cl, "300", "1048576"), .want = 50 };
	int64_t t0 = tl_now_ms();
	for (int i = 0; i < 50; i++)
		cr_assert_eq(sluice_produce(c.p, "batched", 0, NULL, 0, value, sizeof(value), NULL,
					    NULL),
			     SLUICE_OK);
	cr_assert(tl_wait_until(acked_records, &c, 10000, 5));
	cr_assert_eq(c.batches, 1, "%llu batches", (unsigned long long)c.batches);
	cr_assert_geq(tl_now_ms() - t0, 290, "the batch left before linger.ms");
	sluice_producer_close(c.p);
	sluice_client_destroy(cl);

	/* batch.bytes 1 KiB and a long linger: full batches go at once, about
	 * eight 100-byte records each; flush sends the last, partial one. */
	c = (struct counts){ .p = batching_producer(&cl, "60000", "1024"), .want = 10 };
	for (int i = 0; i < 100; i++)
		cr_assert_eq(sluice_produce(c.p, "batched", 0, NULL, 0, value, sizeof(value), NULL,
					    NULL),
			     SLUICE_OK);
	cr_assert(tl_wait_until(acked_batches, &c, 10000, 5), "%llu full batches acknowledged",
		  (unsigned long long)c.batches);
	cr_assert_lt(c.records, 100, "the last batch is not full: it waits for linger.ms");
	cr_assert_eq(sluice_producer_flush(c.p, 10000), SLUICE_OK);
	cl_test_producer_counts(c.p, &c.batches, &c.records);
	cr_assert_eq(c.records, 100);
	cr_assert(c.batches >= 11 && c.batches <= 13, "%llu batches",
		  (unsigned long long)c.batches);
	sluice_producer_close(c.p);
	sluice_client_destroy(cl);

	/* linger.ms 0 and one record at a time: a batch each. */
	c = (struct counts){ .p = batching_producer(&cl, "0", "1048576") };
	for (int i = 0; i < 5; i++) {
		c.want = (uint64_t)i + 1;
		cr_assert_eq(sluice_produce(c.p, "batched", 0, NULL, 0, value, sizeof(value), NULL,
					    NULL),
			     SLUICE_OK);
		cr_assert(tl_wait_until(acked_records, &c, 10000, 1));
	}
	cr_assert_eq(c.batches, 5);
	sluice_producer_close(c.p);
	sluice_client_destroy(cl);
	cluster_down();
}

/* ---- The consumer groups' offsets topic ------------------------------------ */

struct offsets_topic {
	sluice_admin_t *a;
	int32_t partitions, rf;
};

/* __consumer_offsets exists with every partition led and rf replicas. */
static bool offsets_topic_led(void *arg)
{
	struct offsets_topic *o = arg;
	sluice_report_t *r = NULL;
	bool ok = sluice_topic_describe(o->a, "__consumer_offsets", NULL, NULL, &r) == SLUICE_OK &&
		  sluice_report_partition_count(r) == o->partitions;
	for (int32_t p = 0; ok && p < o->partitions; p++) {
		int32_t ids[8];
		ok = sluice_report_leader(r, p) >= 1 &&
		     sluice_report_replicas(r, p, ids, 8) == (size_t)o->rf;
	}
	sluice_report_destroy(r);
	return ok;
}

static void expect_offsets_topic(int32_t partitions, int32_t rf)
{
	char err[256];
	sluice_conf_t *conf = sluice_conf_new();
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "request.timeout.ms", "2000", err, sizeof(err)), 0);
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	struct offsets_topic o = { .a = sluice_admin_new(cl), .partitions = partitions, .rf = rf };
	cr_assert(tl_wait_until(offsets_topic_led, &o, 30000, 100),
		  "no __consumer_offsets with %d partitions of %d replicas, all led", partitions, rf);
	sluice_admin_destroy(o.a);
	sluice_client_destroy(cl);
}

Test(cli, the_controller_creates_the_offsets_topic_and_clients_cannot_touch_it, .timeout = 120)
{
	static struct run r;
	offsets_partitions = "16";
	cluster_up(3);
	expect_offsets_topic(16, 3);
	sluice(&r, bootstrap, "topic list");
	expect_ok(&r);
	cr_assert_str_eq(r.out, "__consumer_offsets\n");
	sluice(&r, bootstrap, "topic delete __consumer_offsets");
	expect_fail(&r, 1, "INVALID_TOPIC: topic names starting with '__' are Sluice's own");
	sluice(&r, bootstrap, "topic create __mine --partitions 1 --replication-factor 1");
	expect_fail(&r, 1, "INVALID_TOPIC");
	sluice_in(&r, bootstrap, "x\n", "produce __consumer_offsets --partition 0");
	expect_produce_fail(&r, "INVALID_TOPIC: topic '__consumer_offsets' is Sluice's own: "
				"clients do not write to it");
	sluice(&r, bootstrap, "topic list");
	cr_assert_str_eq(r.out, "__consumer_offsets\n");
	cluster_down();
}

Test(cli, the_offsets_topic_has_as_many_replicas_as_nodes_up_to_three, .timeout = 120)
{
	offsets_partitions = "4";
	cluster_up(1);
	expect_offsets_topic(4, 1);
	cluster_down();
}

/* ---- Consumer groups ---------------------------------------------------- */

#define GREC_MAX 8192

/* A `sluice consume --group` process and what it printed. */
struct gmember {
	struct tl_proc p;
	bool running;
	int n;
	int part[GREC_MAX];
	long long off[GREC_MAX];
	int val[GREC_MAX];
};

static void gm_start(struct gmember *m, int i, const char *group)
{
	char log[700];
	snprintf(log, sizeof(log), "%s/member%d.log", tl_tmpdir(), i);
	char *argv[] = { SLUICE_PATH, "--bootstrap", bootstrap, "consume", "orders", "--group",
			 (char *)group, "--from-beginning", "--print-offset", "--timeout-ms",
			 "120000", NULL };
	memset(m, 0, sizeof(*m));
	cr_assert_eq(tl_proc_spawn(&m->p, argv, log), 0);
	close(m->p.in_fd);
	m->p.in_fd = -1;
	m->running = true;
}

/* Takes what the members printed so far; waits up to wait_ms for a line. */
static void gm_pump(struct gmember *ms, int count, int wait_ms)
{
	char line[TL_PROC_LINE_MAX];
	for (int i = 0; i < count; i++) {
		struct gmember *m = &ms[i];
		int got;
		while (m->running &&
		       (got = tl_proc_read_line(&m->p, line, sizeof(line), i == 0 ? wait_ms : 0)) == 1) {
			cr_assert_lt(m->n, GREC_MAX);
			cr_assert_eq(sscanf(line, "%d\t%lld\tv%d", &m->part[m->n], &m->off[m->n],
					    &m->val[m->n]),
				     3, "member %d printed '%s'", i, line);
			m->n++;
			wait_ms = 0;
		}
	}
}

/* How many distinct values the members read, of 1..max. */
static int gm_distinct(struct gmember *ms, int count, int max)
{
	static bool seen[GREC_MAX];
	memset(seen, 0, sizeof(seen));
	int k = 0;
	for (int i = 0; i < count; i++)
		for (int j = 0; j < ms[i].n; j++)
			if (ms[i].val[j] >= 1 && ms[i].val[j] <= max && !seen[ms[i].val[j]]) {
				seen[ms[i].val[j]] = true;
				k++;
			}
	return k;
}

static void gm_wait_distinct(struct gmember *ms, int count, int max, int timeout_ms)
{
	int64_t until = tl_now_ms() + timeout_ms;
	while (gm_distinct(ms, count, max) < max && tl_now_ms() < until)
		gm_pump(ms, count, 50);
	cr_assert_eq(gm_distinct(ms, count, max), max, "the group read %d of %d records",
		     gm_distinct(ms, count, max), max);
}

/* Produces "k<i>:v<i>" for i in [from, to]. */
static void produce_range(int from, int to)
{
	static char input[GREC_MAX * 16];
	size_t len = 0;
	for (int i = from; i <= to; i++)
		len += (size_t)snprintf(input + len, sizeof(input) - len, "k%d:v%d\n", i, i);
	static struct run r;
	sluice_in(&r, bootstrap, input, "produce orders --key-separator :");
	expect_ok(&r);
}

/* `group describe`, parsed: members, and per partition of orders the
 * committed offset, log end and whether a member owns it. */
struct gview {
	char state[32];
	int members;
	long long committed[12], log_end[12];
	int owner[12]; /* member index; -1: none */
};

static void describe_group(const char *group, struct gview *v)
{
	static struct run r;
	/* Long enough for a coordinator to move on a loaded machine. */
	sluice(&r, bootstrap, "--timeout-ms 50000 group describe %s", group);
	expect_ok(&r);
	memset(v, 0, sizeof(*v));
	for (int p = 0; p < 12; p++) {
		v->owner[p] = -1;
		v->committed[p] = v->log_end[p] = -1;
	}
	int m = -1;
	for (char *save, *line = strtok_r(r.out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char g[64], parts[1024];
		int p, e;
		long long c, le, lag;
		if (sscanf(line, "group %63s state %31s epoch %d assignor %*s members %d", g, v->state,
			   &e, &v->members) == 4)
			continue;
		if (sscanf(line, "  member %*s instance %*s epoch %d partitions %1023s", &e, parts) == 2) {
			m++;
			for (char *s2, *tp = strtok_r(parts, ",", &s2); tp != NULL;
			     tp = strtok_r(NULL, ",", &s2))
				if (sscanf(tp, "orders/%d", &p) == 1 && p >= 0 && p < 12)
					v->owner[p] = m;
			continue;
		}
		if (sscanf(line, "  orders/%d committed %lld log_end %lld lag %lld", &p, &c, &le,
			   &lag) == 4 &&
		    p >= 0 && p < 12) {
			v->committed[p] = c;
			v->log_end[p] = le;
		}
	}
}

static bool all_owned_by(const struct gview *v, int members)
{
	if (v->members != members)
		return false;
	for (int p = 0; p < 12; p++)
		if (v->owner[p] < 0)
			return false;
	return true;
}

static bool all_committed(const struct gview *v)
{
	for (int p = 0; p < 12; p++)
		if (v->log_end[p] < 0 || v->committed[p] != v->log_end[p])
			return false;
	return true;
}

/* Kafka's abs(hashCode) % n for an ASCII id. */
static int group_partition(const char *id, int n)
{
	int32_t h = 0;
	for (const char *c = id; *c; c++)
		h = (int32_t)(31u * (uint32_t)h + (uint32_t)(unsigned char)*c);
	return (int)((h < 0 ? -(int64_t)h : h) % n);
}

/* The node (0-based) leading partition p of __consumer_offsets. */
static int offsets_leader(int p)
{
	static struct run r;
	sluice(&r, bootstrap, "topic describe __consumer_offsets --json");
	expect_ok(&r);
	char key[64];
	snprintf(key, sizeof(key), "{\"partition\":%d,\"leader\":", p);
	const char *at = strstr(r.out, key);
	cr_assert_not_null(at, "%s", r.out);
	return atoi(at + strlen(key)) - 1;
}

Test(cli, a_group_shares_a_topic_survives_a_member_and_its_coordinator_and_replays, .timeout = 240)
{
	static struct run r;
	static struct gmember ms[3];
	static struct gview v;
	offsets_partitions = "4";
	group_session_ms = "3000";
	group_heartbeat_ms = "1000";
	cluster_up(3);
	expect_offsets_topic(4, 3);
	sluice(&r, bootstrap, "topic create orders --partitions 12 --replication-factor 3");
	expect_ok(&r);

	/* Three members, stable before anything is written: each then reads
	 * a disjoint set of partitions, and together everything. */
	for (int i = 0; i < 3; i++)
		gm_start(&ms[i], i, "g");
	int64_t until = tl_now_ms() + 20000;
	do
		describe_group("g", &v);
	while (!(all_owned_by(&v, 3) && strcmp(v.state, "stable") == 0) && tl_now_ms() < until);
	cr_assert(all_owned_by(&v, 3), "3 members do not share the 12 partitions");
	produce_range(1, 1200);
	gm_wait_distinct(ms, 3, 1200, 30000);
	int owner_of[12];
	for (int p = 0; p < 12; p++)
		owner_of[p] = -1;
	for (int i = 0; i < 3; i++) {
		cr_assert_gt(ms[i].n, 0, "member %d read nothing", i);
		for (int j = 0; j < ms[i].n; j++) {
			int p = ms[i].part[j];
			cr_assert(owner_of[p] == -1 || owner_of[p] == i,
				  "partition %d was read by members %d and %d", p, owner_of[p], i);
			owner_of[p] = i;
		}
	}
	int total = ms[0].n + ms[1].n + ms[2].n;
	cr_assert_eq(total, 1200, "%d lines for 1200 records: some were read twice", total);
	/* Each commits what it printed, every second. */
	until = tl_now_ms() + 15000;
	do
		describe_group("g", &v);
	while (!all_committed(&v) && tl_now_ms() < until);
	cr_assert(all_committed(&v), "the members did not commit what they read");

	/* While it has members, the group is neither deleted nor reset. */
	sluice(&r, bootstrap, "group delete g");
	expect_fail(&r, 1, "NON_EMPTY_GROUP");
	sluice(&r, bootstrap, "group reset-offsets g --topic orders --to-earliest --execute");
	expect_fail(&r, 1, "NON_EMPTY_GROUP");

	/* A member killed: after its session timeout (3 s) its partitions
	 * move, and the others go on from its last commits. */
	produce_range(1201, 1800);
	gm_wait_distinct(ms, 3, 1800, 30000);
	tl_proc_kill(&ms[0].p, SIGKILL);
	int64_t killed_at = tl_now_ms();
	gm_pump(ms, 1, 0);
	ms[0].running = false;
	cr_assert_eq(tl_proc_wait(&ms[0].p, 5000), 1);
	tl_proc_close(&ms[0].p);
	describe_group("g", &v);
	long long at_kill[12];
	memcpy(at_kill, v.committed, sizeof(at_kill));
	until = killed_at + 8000;
	do
		describe_group("g", &v);
	while (!all_owned_by(&v, 2) && tl_now_ms() < until);
	int64_t moved_ms = tl_now_ms() - killed_at;
	cr_assert(all_owned_by(&v, 2), "the killed member's partitions did not move");
	cr_assert_leq(moved_ms, 3000 + 1000 + 500, "partitions moved %lld ms after the kill",
		      (long long)moved_ms);
	cr_log_info("a killed member's partitions moved after %lld ms (session timeout 3000)",
		    (long long)moved_ms);
	produce_range(1801, 2100);
	gm_wait_distinct(ms, 3, 2100, 30000);
	int reread = 0;
	for (int i = 1; i < 3; i++)
		for (int j = 0; j < ms[i].n; j++) {
			int p = ms[i].part[j];
			if (owner_of[p] != 0)
				continue;
			/* A moved partition starts exactly at the committed offset. */
			cr_assert_geq(ms[i].off[j], at_kill[p],
				      "partition %d: offset %lld re-read below the commit %lld", p,
				      ms[i].off[j], at_kill[p]);
			for (int k = 0; k < ms[0].n; k++)
				reread += ms[0].part[k] == p && ms[0].off[k] == ms[i].off[j];
		}
	/* What it read past its last commit, and nothing before, is read again. */
	int killed_after = 0, killed_parts = 0;
	for (int p = 0; p < 12; p++) {
		if (owner_of[p] != 0)
			continue;
		killed_parts++;
		cr_assert_geq(at_kill[p], 0, "partition %d: nothing committed", p);
		long long first = -1;
		for (int i = 1; i < 3; i++)
			for (int j = 0; j < ms[i].n; j++)
				if (ms[i].part[j] == p && (first < 0 || ms[i].off[j] < first))
					first = ms[i].off[j];
		/* The first record at or past the commit (Raft's own entries take
		 * offsets too), as any member saw it. */
		long long expect = -1;
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < ms[i].n; j++)
				if (ms[i].part[j] == p && ms[i].off[j] >= at_kill[p] &&
				    (expect < 0 || ms[i].off[j] < expect))
					expect = ms[i].off[j];
		cr_assert_eq(first, expect, "partition %d: read again from %lld, committed %lld", p,
			     first, at_kill[p]);
		for (int k = 0; k < ms[0].n; k++)
			killed_after += ms[0].part[k] == p && ms[0].off[k] >= at_kill[p];
	}
	cr_assert_gt(killed_parts, 0);
	cr_assert_eq(reread, killed_after);
	cr_log_info("records read again after the kill: %d, all past its last commit", reread);

	/* The coordinator's node killed: the group goes on, offsets intact. */
	until = tl_now_ms() + 15000;
	do
		describe_group("g", &v);
	while (!all_committed(&v) && tl_now_ms() < until);
	cr_assert(all_committed(&v), "auto-commit did not catch up");
	long long before[12];
	memcpy(before, v.committed, sizeof(before));
	int coord = offsets_leader(group_partition("g", 4));
	tl_proc_kill(&nodes[coord].p, SIGKILL);
	cr_assert_eq(tl_proc_wait(&nodes[coord].p, 5000), 1);
	tl_proc_close(&nodes[coord].p);
	describe_group("g", &v);
	for (int p = 0; p < 12; p++)
		cr_assert_geq(v.committed[p], before[p], "partition %d: commit %lld, was %lld", p,
			      v.committed[p], before[p]);
	produce_range(2101, 2400);
	gm_wait_distinct(ms, 3, 2400, 30000);
	node_start(coord);
	cr_assert(tl_wait_until(ready, &nodes[coord], 30000, 50));

	/* The members stop (SIGINT): each commits what it printed and leaves. */
	for (int i = 1; i < 3; i++) {
		tl_proc_kill(&ms[i].p, SIGINT);
		while (tl_proc_read_line(&ms[i].p, (char[TL_PROC_LINE_MAX]){ 0 }, TL_PROC_LINE_MAX,
					 10000) == 1)
			;
		cr_assert_eq(tl_proc_wait(&ms[i].p, 10000), 1);
		cr_assert(WIFEXITED(ms[i].p.status) && WEXITSTATUS(ms[i].p.status) == 0);
		tl_proc_close(&ms[i].p);
	}
	describe_group("g", &v);
	cr_assert_str_eq(v.state, "empty");
	cr_assert_eq(v.members, 0);
	cr_assert(all_committed(&v), "the members' last commits are missing");
	sluice(&r, bootstrap, "group list");
	expect_ok(&r);
	cr_assert_str_eq(r.out, "g\tempty\t0\n");

	/* Replay: the plan first (nothing changes), then the reset, then the
	 * whole topic again. */
	sluice(&r, bootstrap, "group reset-offsets g --topic orders --to-earliest");
	expect_ok(&r);
	cr_assert(strstr(r.out, "g\torders\t0\t") == r.out, "%s", r.out);
	cr_assert(strstr(r.err, "plan only") != NULL, "%s", r.err);
	describe_group("g", &v);
	cr_assert(all_committed(&v));
	sluice(&r, bootstrap, "group reset-offsets g --topic orders --to-earliest --execute");
	expect_ok(&r);
	sluice(&r, bootstrap, "consume orders --group g --timeout-ms 3000");
	expect_ok(&r);
	cr_assert_str_eq(r.err, "consumed 2400 records\n");

	/* By time: the first record at or after it. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[64];
	snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	produce_range(2401, 2500);
	sluice(&r, bootstrap, "group reset-offsets g --topic orders --to-datetime %s --execute", when);
	expect_ok(&r);
	sluice(&r, bootstrap, "consume orders --group g --timeout-ms 3000");
	expect_ok(&r);
	cr_assert_str_eq(r.err, "consumed 100 records\n");
	for (char *save, *line = strtok_r(r.out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		int val;
		cr_assert_eq(sscanf(line, "v%d", &val), 1);
		cr_assert(val >= 2401 && val <= 2500, "read v%d, older than %s", val, when);
	}

	/* Bad input: precise errors, nothing changed. */
	sluice(&r, bootstrap, "group reset-offsets g --topic orders:3 --to-offset 999999 --execute");
	expect_fail(&r, 1, "OFFSET_OUT_OF_RANGE: offset 999999 is outside orders/3's log");
	sluice(&r, bootstrap, "group reset-offsets g --topic orders:12 --to-earliest");
	expect_fail(&r, 1, "UNKNOWN_TOPIC_OR_PARTITION");
	sluice(&r, bootstrap, "group describe nope");
	expect_fail(&r, 1, "GROUP_ID_NOT_FOUND");
	sluice(&r, bootstrap, "group delete g");
	expect_ok(&r);
	cr_assert_str_eq(r.out, "deleted group g\n");
	sluice(&r, bootstrap, "group describe g");
	expect_fail(&r, 1, "GROUP_ID_NOT_FOUND");

	/* A group used for the first time while a node is down. */
	tl_proc_kill(&nodes[2].p, SIGKILL);
	cr_assert_eq(tl_proc_wait(&nodes[2].p, 5000), 1);
	tl_proc_close(&nodes[2].p);
	sluice(&r, bootstrap, "consume orders --group fresh --from-beginning --timeout-ms 3000");
	expect_ok(&r);
	cr_assert_str_eq(r.err, "consumed 2500 records\n");
	node_start(2);
	cr_assert(tl_wait_until(ready, &nodes[2], 30000, 50));
	cluster_down();
	group_session_ms = "45000";
	group_heartbeat_ms = "3000";
}

/* ---- The group consumer's API (libsluice) --------------------------------- */

/* What a member's assignment callback heard, and what it polled. */
struct heard {
	sluice_consumer_t *c;
	int assigned[4], revoked[4], lost[4];
	int commit_in_revoke; /* the result of a commit made in the callback */
	int got[4];           /* records polled per partition */
	int64_t last[4];      /* the last offset polled per partition */
};

static void on_heard(void *opaque, const char *topic, int32_t partition, int assigned)
{
	struct heard *h = opaque;
	cr_assert_str_eq(topic, "orders");
	cr_assert(partition >= 0 && partition < 4);
	if (assigned == SLUICE_ASSIGNED)
		h->assigned[partition]++;
	else if (assigned == SLUICE_REVOKED) {
		h->revoked[partition]++;
		/* Committing from the callback works (the partition is still
		 * this member's until it returns). */
		h->commit_in_revoke = sluice_commit(h->c, NULL, NULL, NULL);
	} else {
		h->lost[partition]++;
	}
}

static sluice_client_t *api_client(void)
{
	char err[256];
	sluice_conf_t *conf = sluice_conf_new();
	cr_assert_eq(sluice_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)), 0);
	cr_assert_eq(sluice_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)), 0);
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	cr_assert_not_null(cl, "%s", err);
	return cl;
}

/* Polls h (and other, when given) for up to ms; returns records taken. */
static int poll_for(struct heard *h, struct heard *other, int ms)
{
	int n = 0;
	int64_t until = tl_now_ms() + ms;
	while (tl_now_ms() < until)
		for (struct heard *x = h; x != NULL; x = x == h ? other : NULL) {
			sluice_msg_t *m = NULL;
			sluice_err_t e = sluice_poll(x->c, 10, &m);
			if (e == SLUICE_ERR_TIMED_OUT)
				continue;
			cr_assert_eq(e, SLUICE_OK, "%s", sluice_err_name(e));
			int32_t p = sluice_msg_partition(m);
			x->got[p]++;
			x->last[p] = sluice_msg_offset(m);
			sluice_msg_destroy(m);
			n++;
		}
	return n;
}

static int total(const int *v)
{
	return v[0] + v[1] + v[2] + v[3];
}

static void on_async(void *opaque, sluice_err_t err, const sluice_report_t *r)
{
	(void)r;
	int *calls = opaque;
	cr_assert_eq(err, SLUICE_OK);
	__atomic_add_fetch(calls, 1, __ATOMIC_SEQ_CST);
}

Test(cli, a_group_member_hears_of_its_partitions_commits_pauses_and_hands_over, .timeout = 120)
{
	static struct run r;
	offsets_partitions = "4";
	group_heartbeat_ms = "1000";
	cluster_up(1);
	expect_offsets_topic(4, 1);
	sluice(&r, bootstrap, "topic create orders --partitions 4 --replication-factor 1");
	expect_ok(&r);
	produce_range(1, 40);
	/* log dump reads the partitions' files as they are, the node
	 * running: the 40 records, besides Raft's own (control) entries. */
	char raft_dir[700];
	snprintf(raft_dir, sizeof(raft_dir), "%s/raft", nodes[0].dir);
	DIR *dp = opendir(raft_dir);
	cr_assert_not_null(dp);
	struct dirent *e;
	int records = 0, dirs = 0;
	while ((e = readdir(dp)) != NULL) {
		if (e->d_name[0] != 'g' || strcmp(e->d_name, "g0") == 0) /* g0: the controller's */
			continue;
		sluice(&r, NULL, "log dump %s/%s --json", raft_dir, e->d_name);
		expect_ok(&r);
		dirs++;
		for (const char *at = strstr(r.out, "\"count\":"); at != NULL;
		     at = strstr(at + 1, "\"count\":")) {
			const char *ctl = strstr(at, "\"control\":");
			if (ctl != NULL && strncmp(ctl + 10, "false", 5) == 0 &&
			    strstr(at, "\"crc_ok\":true") != NULL)
				records += atoi(at + 8);
		}
	}
	closedir(dp);
	cr_assert_geq(dirs, 8, "4 offsets partitions and 4 of orders, at least");
	cr_assert_eq(records, 40, "log dump found %d records", records);

	static struct heard a, b;
	sluice_client_t *cla = api_client(), *clb = api_client();
	a.c = sluice_consumer_new(cla, "api", on_heard, &a);
	cr_assert_not_null(a.c);
	cr_assert_eq(sluice_assign(a.c, "orders", 0), SLUICE_OK); /* before subscribing: fine */
	static const char *const topics[] = { "orders" };
	cr_assert_eq(sluice_subscribe(a.c, topics, 1), SLUICE_ERR_INVALID_ARGUMENT,
		     "assign and subscribe do not mix");
	sluice_consumer_close(a.c);
	a.c = sluice_consumer_new(cla, "api", on_heard, &a);
	cr_assert_eq(sluice_subscribe(a.c, topics, 1), SLUICE_OK);
	cr_assert_eq(sluice_assign(a.c, "orders", 0), SLUICE_ERR_INVALID_ARGUMENT);
	int64_t until = tl_now_ms() + 20000;
	while (total(a.got) < 40 && tl_now_ms() < until)
		poll_for(&a, NULL, 100);
	cr_assert_eq(total(a.got), 40);
	for (int p = 0; p < 4; p++)
		cr_assert_eq(a.assigned[p], 1, "partition %d assigned %d times", p, a.assigned[p]);

	/* Position: after the last record polled; committed: nothing yet,
	 * then what a synchronous commit wrote. */
	int64_t pos, com;
	for (int p = 0; p < 4; p++) {
		cr_assert_eq(sluice_position(a.c, "orders", p, &pos), SLUICE_OK);
		cr_assert_eq(pos, a.last[p] + 1);
		cr_assert_eq(sluice_committed(a.c, "orders", p, &com), SLUICE_OK);
		cr_assert_eq(com, -1);
	}
	cr_assert_eq(sluice_commit(a.c, NULL, NULL, NULL), SLUICE_OK);
	for (int p = 0; p < 4; p++) {
		cr_assert_eq(sluice_committed(a.c, "orders", p, &com), SLUICE_OK);
		cr_assert_eq(com, a.last[p] + 1);
	}
	cr_assert_eq(sluice_position(a.c, "orders", 9, &pos), SLUICE_ERR_NOT_ASSIGNED);
	/* An asynchronous commit calls back once (nothing new: still once). */
	static int calls;
	cr_assert_eq(sluice_commit(a.c, NULL, on_async, &calls), SLUICE_OK);
	until = tl_now_ms() + 10000;
	while (__atomic_load_n(&calls, __ATOMIC_SEQ_CST) < 1 && tl_now_ms() < until)
		poll_for(&a, NULL, 20);
	cr_assert_eq(__atomic_load_n(&calls, __ATOMIC_SEQ_CST), 1);

	/* Paused: nothing from partition 0 until it resumes. */
	cr_assert_eq(sluice_pause(a.c, "orders", 0), SLUICE_OK);
	int before[4];
	memcpy(before, a.got, sizeof(before));
	produce_range(41, 120);
	until = tl_now_ms() + 20000;
	int others = 0;
	do {
		poll_for(&a, NULL, 100);
		others = a.got[1] + a.got[2] + a.got[3] - before[1] - before[2] - before[3];
	} while (others < 60 && tl_now_ms() < until);
	poll_for(&a, NULL, 300);
	cr_assert_eq(a.got[0], before[0], "partition 0 was read while paused");
	cr_assert_eq(sluice_resume(a.c, "orders", 0), SLUICE_OK);
	until = tl_now_ms() + 10000;
	while (total(a.got) < 120 && tl_now_ms() < until)
		poll_for(&a, NULL, 100);
	cr_assert_eq(total(a.got), 120, "resume did not go on where it stopped");

	/* A second member: two partitions are revoked from the first (it
	 * commits in its callback) and assigned to the second, which starts
	 * at those commits and so reads nothing old. */
	b.c = sluice_consumer_new(clb, "api", on_heard, &b);
	cr_assert_eq(sluice_subscribe(b.c, topics, 1), SLUICE_OK);
	until = tl_now_ms() + 20000;
	while ((total(b.assigned) < 2 || total(a.revoked) < 2) && tl_now_ms() < until)
		poll_for(&a, &b, 50);
	cr_assert_eq(total(a.revoked), 2);
	cr_assert_eq(total(b.assigned), 2);
	cr_assert_eq(a.commit_in_revoke, SLUICE_OK);
	poll_for(&a, &b, 300);
	cr_assert_eq(total(b.got), 0, "the second member read records committed already");
	for (int p = 0; p < 4; p++) {
		cr_assert(!(a.revoked[p] && !b.assigned[p]), "partition %d went nowhere", p);
		if (b.assigned[p])
			cr_assert_eq(sluice_position(a.c, "orders", p, &pos), SLUICE_ERR_NOT_ASSIGNED);
	}
	/* It leaves cleanly: its partitions come back to the first. */
	sluice_consumer_close(b.c);
	until = tl_now_ms() + 10000;
	while (total(a.assigned) < 6 && tl_now_ms() < until)
		poll_for(&a, NULL, 50);
	cr_assert_eq(total(a.assigned), 6);
	cr_assert_eq(total(a.lost), 0);
	sluice_consumer_close(a.c);
	sluice_client_destroy(cla);
	sluice_client_destroy(clb);
	cluster_down();
	group_heartbeat_ms = "3000";
}

/* A new idempotent producer right after the controller's leader died: it
 * gets its producer id from the new leader within seconds. (Its client
 * once kept re-arming a timer at once while no controller was known,
 * which starved its loop until the delivery timeout, 120 s.) */
Test(cli, a_producer_started_as_the_controller_dies_gets_its_id_from_the_next, .timeout = 120)
{
	static struct run r;
	cluster_up(3);
	sluice(&r, bootstrap, "topic create after --partitions 2 --replication-factor 3");
	expect_ok(&r);
	sluice(&r, bootstrap, "cluster status --json");
	expect_ok(&r);
	const char *c = strstr(r.out, "\"controller\":");
	cr_assert_not_null(c);
	int controller = atoi(c + 13);
	cr_assert(controller >= 1 && controller <= 3, "%s", r.out);
	cr_assert_eq(tl_proc_kill(&nodes[controller - 1].p, SIGKILL), 0);
	cr_assert_eq(tl_proc_wait(&nodes[controller - 1].p, 5000), 1);
	tl_proc_close(&nodes[controller - 1].p);
	int64_t t0 = tl_now_ms();
	sluice_in(&r, bootstrap, "a\nb\nc\n", "produce after");
	int64_t took = tl_now_ms() - t0;
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.err, "produced 3 records\n");
	cr_assert_lt(took, 20000, "it took %lld ms", (long long)took);
	cr_log_info("produced %lld ms after the controller's leader was killed", (long long)took);
	node_start(controller - 1);
	cr_assert(tl_wait_until(ready, &nodes[controller - 1], 30000, 50));
	cluster_down();
}
