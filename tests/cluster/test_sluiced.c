/* sluiced as a process: configuration errors, the data directory's lock
 * and identity, the http listener, a clean stop on SIGTERM. Each test runs
 * real sluiced processes on 127.0.0.1 on ports of its own, in a directory
 * of its own, and kills every one by PID at the end (tests/lib/procs.h). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

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
	for (int i = 0; extra != NULL && extra[i] != NULL; i++)
		argv[k++] = (char *)extra[i];
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

static bool healthy(void *arg)
{
	struct node *n = arg;
	int status;
	char body[256];
	return tl_http_get(n->ports[2], "/healthz", &status, body, sizeof(body), 1000) == 0 &&
	       status == 200;
}

static void wait_healthy(struct node *n)
{
	cr_assert(tl_wait_until(healthy, n, 20000, 25), "sluiced did not answer /healthz (see %s)",
		  n->log);
}

/* The exit status once it exits within timeout_ms. */
static int exit_status(struct node *n, int timeout_ms)
{
	cr_assert_eq(tl_proc_wait(&n->p, timeout_ms), 1, "sluiced did not exit (see %s)", n->log);
	cr_assert(WIFEXITED(n->p.status), "sluiced died of signal %d", WTERMSIG(n->p.status));
	return WEXITSTATUS(n->p.status);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	static char buf[65536];
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

Test(sluiced, answers_health_readiness_and_metrics_then_stops_on_sigterm)
{
	struct node n;
	setup_node(&n, "n1");
	start(&n, 1, NULL);
	wait_healthy(&n);
	int status;
	char body[4096];
	cr_assert_eq(tl_http_get(n.ports[2], "/readyz", &status, body, sizeof(body), 5000), 0);
	cr_assert_eq(status, 503, "/readyz before joining: %d", status);
	cr_assert(strstr(body, "not ready") != NULL, "%s", body);
	cr_assert_eq(tl_http_get(n.ports[2], "/metrics", &status, body, sizeof(body), 5000), 0);
	cr_assert_eq(status, 200);
	cr_assert(strstr(body, "sluice_node_up{node=\"1\"} 1\n") != NULL, "%s", body);
	cr_assert(strstr(body, "# TYPE sluice_node_ready gauge\n") != NULL, "%s", body);
	cr_assert_eq(tl_http_get(n.ports[2], "/nothing", &status, body, sizeof(body), 5000), 0);
	cr_assert_eq(status, 404);
	cr_assert_eq(tl_proc_kill(&n.p, SIGTERM), 0);
	cr_assert_eq(exit_status(&n, 20000), 0);
	expect_log(&n, "http: listening addr=127.0.0.1:");
	expect_log(&n, "main: stopped");
	expect_log(&n, " node=1 ");
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
	cr_assert_eq(tl_proc_kill(&n.p, SIGTERM), 0);
	cr_assert_eq(exit_status(&n, 20000), 0);
}

Test(sluiced, a_directory_of_another_node_is_refused)
{
	struct node n;
	setup_node(&n, "n1");
	start(&n, 1, NULL);
	wait_healthy(&n);
	cr_assert_eq(tl_proc_kill(&n.p, SIGTERM), 0);
	cr_assert_eq(exit_status(&n, 20000), 0);
	tl_proc_close(&n.p);
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
