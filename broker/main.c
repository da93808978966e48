/* sluiced: one node of a Sluice cluster (README.md).
 *
 * What runs: the configuration (config.h), the data directory's lock and
 * identity (datadir.h), the http listener (http.h), the client listener
 * (listener.h, api.h), the peer transport, the controller and the
 * partitions' Raft groups (cluster.h), and a clean stop on SIGTERM (with
 * a handoff of the groups this node leads) or SIGINT. /readyz answers 503
 * until the node has joined (controller.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#include "blog.h"
#include "cluster.h"
#include "config.h"
#include "coord.h"
#include "datadir.h"
#include "errors.h"
#include "http.h"
#include "listener.h"
#include "meta.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: sluiced [--config FILE] [--KEY VALUE]...\n"
		"       sluiced --help-config   every key, its default and range (a config file)\n"
		"Keys come from FILE, then SLUICED_<KEY> environment variables, then flags;\n"
		"node_id is required. See README.md and deploy/sluiced.conf.\n");
}

/* Descriptors: one per partition replica and connection; raise the soft
 * limit to the hard one. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rlim_t before = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			rl.rlim_cur = before;
	}
	SL_BLOG(SL_BLOG_INFO, "main", "descriptor limit %llu (was %llu)",
		(unsigned long long)rl.rlim_cur, (unsigned long long)before);
}

struct node {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint;
	uv_timer_t metrics;
	struct sl_http *http;
	struct sl_http_status status;
	struct sl_api_node api;
	struct sl_listener *client;
	struct sl_cluster *cluster;
	struct sl_coord *coord;
	struct sl_datadir *dd;
	bool stopping, failed;
};

static void stop(struct node *n, const char *why, bool handoff);

/* The data directory records the cluster it joined; a directory of
 * another cluster stops the node. Returns whether it is recorded. */
static bool record_cluster(struct node *n)
{
	const char *id = sl_cluster_meta(n->cluster)->cluster_id;
	if (id[0] == '\0')
		return false;
	char errmsg[SL_ERRMSG_SIZE];
	int rv = sl_datadir_set_cluster(n->dd, id, errmsg);
	if (rv == SL_OK)
		return true;
	SL_BLOG(SL_BLOG_ERROR, "main", "%s", errmsg);
	if (rv == SL_EEXISTS) {
		n->failed = true;
		stop(n, "data directory of another cluster", false);
	}
	return false;
}

/* Every second: readiness, and the loop's part of /metrics, for the http
 * thread. */
static void publish_metrics(uv_timer_t *t)
{
	struct node *n = t->data;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (out == NULL)
		return;
	if (n->cluster != NULL) {
		const char *why = NULL;
		bool ready = sl_cluster_ready(n->cluster, &why);
		if (ready && !record_cluster(n)) {
			ready = false;
			why = "not joined: the cluster id is not recorded in the data directory";
		}
		if (n->cluster == NULL) { /* stopped */
			fclose(out);
			free(text);
			return;
		}
		if (!ready)
			atomic_store(&n->status.not_ready_why, why);
		if (ready && atomic_load(&n->status.ready) == 0)
			SL_BLOG(SL_BLOG_INFO, "main", "ready cluster_id=%s",
				sl_cluster_meta(n->cluster)->cluster_id);
		else if (!ready && atomic_load(&n->status.ready) != 0)
			SL_BLOG(SL_BLOG_WARN, "main", "not ready: %s", why);
		atomic_store(&n->status.ready, ready ? 1 : 0);
		sl_cluster_pin_peers(n->cluster, n->dd);
		sl_cluster_metrics(n->cluster, out);
		sl_api_metrics(n->api.node_id, out);
		sl_coord_metrics(n->coord, out);
	}
	if (fclose(out) == 0)
		sl_http_publish(&n->status, text);
	else
		free(text);
}

/* Closes what runs on the loop; uv_run returns once all of it is closed.
 * With handoff (SIGTERM), the groups this node leads move first. */
static void stop(struct node *n, const char *why, bool handoff)
{
	if (n->stopping)
		return;
	n->stopping = true;
	SL_BLOG(SL_BLOG_INFO, "main", "stopping reason=\"%s\"", why);
	uv_close((uv_handle_t *)&n->sigterm, NULL);
	uv_close((uv_handle_t *)&n->sigint, NULL);
	uv_close((uv_handle_t *)&n->metrics, NULL);
	if (n->client != NULL)
		sl_listener_close(n->client, NULL, NULL);
	sl_api_stop_waiting();
	sl_coord_close(n->coord);
	n->coord = NULL;
	n->api.coord = NULL;
	if (n->cluster != NULL)
		sl_cluster_stop(n->cluster, handoff, NULL, NULL);
	n->client = NULL;
	n->cluster = NULL;
	n->api.ctl = NULL;
	n->api.parts = NULL;
}

static void on_signal(uv_signal_t *s, int signum)
{
	stop(s->data, strsignal(signum), signum == SIGTERM);
}

/* Starts the listeners and the Raft side; SL_OK or an error in errmsg. */
static int start(struct node *n, const struct sl_config *c, struct sl_datadir *dd,
		 char *errmsg)
{
	n->api = (struct sl_api_node){ .node_id = c->node_id,
				       .max_frame_bytes = (uint32_t)c->max_frame_bytes,
				       .loop = &n->loop };
	int rv = sl_http_start(c->listen_host, (unsigned)c->http_port, &n->status, &n->http, errmsg);
	if (rv != SL_OK)
		return rv;
	SL_BLOG(SL_BLOG_INFO, "http", "listening addr=%s:%llu", c->listen_host,
		(unsigned long long)c->http_port);
	rv = sl_listener_start(&n->loop, c->listen_host, (unsigned)c->client_port, &n->api,
			       &n->client, errmsg);
	if (rv != SL_OK)
		return rv;
	SL_BLOG(SL_BLOG_INFO, "client", "listening addr=%s:%llu", c->listen_host,
		(unsigned long long)c->client_port);
	rv = sl_cluster_start(&n->loop, c, dd, &n->cluster, errmsg);
	if (rv != SL_OK)
		return rv;
	n->api.ctl = sl_cluster_controller(n->cluster);
	n->api.parts = sl_cluster_parts(n->cluster);
	struct sl_coord_config cc = { .session_timeout_ms = (uint32_t)c->group_session_timeout_ms,
				      .heartbeat_ms = (uint32_t)c->group_heartbeat_ms };
	if ((rv = sl_coord_init(&n->coord, &n->loop, &n->api, &cc)) != SL_OK) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "group coordinator: %s", sl_strerror(rv));
		return rv;
	}
	n->api.coord = n->coord;
	uv_timer_start(&n->metrics, publish_metrics, 100, 1000);
	SL_BLOG(SL_BLOG_INFO, "main", "started node_id=%llu advertised=%s seeds=%s",
		(unsigned long long)c->node_id, sl_config_advertised(c),
		c->seeds[0] ? c->seeds : "(this node alone)");
	return SL_OK;
}

static int run(struct sl_config *c)
{
	char errmsg[SL_ERRMSG_SIZE];
	struct sl_datadir dd;
	int rv = sl_datadir_open(c->data_dir, c->node_id, &dd, errmsg);
	if (rv != SL_OK) {
		SL_BLOG(SL_BLOG_ERROR, "main", "%s", errmsg);
		return 1;
	}
	SL_BLOG(SL_BLOG_INFO, "main", "data directory %s uuid=%s%s", c->data_dir, dd.uuid,
		dd.created ? " (new)" : "");
	static struct node n;
	memset(&n, 0, sizeof(n));
	n.dd = &dd;
	sl_http_status_init(&n.status, c->node_id,
			    "not joined: the controller's metadata is not applied yet");
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	atomic_store(&n.status.started_ms, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
	if ((rv = uv_loop_init(&n.loop)) != 0) {
		SL_BLOG(SL_BLOG_ERROR, "main", "event loop: %s", uv_strerror(rv));
		sl_http_status_destroy(&n.status);
		sl_datadir_close(&dd);
		return 1;
	}
	uv_signal_init(&n.loop, &n.sigterm);
	uv_signal_init(&n.loop, &n.sigint);
	uv_timer_init(&n.loop, &n.metrics);
	n.sigterm.data = n.sigint.data = n.metrics.data = &n;
	uv_signal_start(&n.sigterm, on_signal, SIGTERM);
	uv_signal_start(&n.sigint, on_signal, SIGINT);
	if (start(&n, c, &dd, errmsg) != SL_OK) {
		SL_BLOG(SL_BLOG_ERROR, "main", "%s", errmsg);
		n.failed = true;
		stop(&n, "start-up failed", false);
	}
	uv_run(&n.loop, UV_RUN_DEFAULT);
	sl_http_stop(n.http);
	rv = uv_loop_close(&n.loop);
	if (rv != 0)
		SL_BLOG(SL_BLOG_ERROR, "main", "event loop still busy at exit: %s", uv_strerror(rv));
	sl_http_status_destroy(&n.status);
	sl_datadir_close(&dd);
	if (n.failed)
		return 1;
	SL_BLOG(SL_BLOG_INFO, "main", "stopped");
	return 0;
}

int main(int argc, char **argv, char **envp)
{
	struct sl_config c;
	char errmsg[SL_ERRMSG_SIZE];
	enum sl_config_action action;
	signal(SIGPIPE, SIG_IGN);
	sl_config_init(&c);
	int rv = sl_config_load(&c, argc, argv, envp, &action, errmsg);
	if (rv != SL_OK) {
		fprintf(stderr, "sluiced: %s\n", errmsg);
		sl_config_free(&c);
		return 2;
	}
	if (action == SL_CONFIG_HELP) {
		usage(stdout);
	} else if (action == SL_CONFIG_HELP_CONFIG) {
		sl_config_print_template(stdout);
	} else {
		sl_blog_init(c.log_level, c.node_id);
		raise_nofile();
		rv = run(&c);
	}
	sl_config_free(&c);
	return rv;
}
