/* sluiced: one node of a Sluice cluster (README.md).
 *
 * What runs today: the configuration (config.h), the data directory's lock
 * and identity (datadir.h), the http listener (http.h) and a clean stop on
 * SIGTERM or SIGINT. The controller, the peer and client listeners come
 * next (see README.md); until then /readyz answers 503. */
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
#include "config.h"
#include "datadir.h"
#include "errors.h"
#include "http.h"

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
	struct sl_http *http;
	struct sl_http_status status;
	int stop_signal;
};

static void on_signal(uv_signal_t *s, int signum)
{
	struct node *n = s->data;
	if (n->stop_signal != 0)
		return;
	n->stop_signal = signum;
	SL_BLOG(SL_BLOG_INFO, "main", "stopping signal=%s", strsignal(signum));
	uv_close((uv_handle_t *)&n->sigterm, NULL);
	uv_close((uv_handle_t *)&n->sigint, NULL);
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
	struct node n = { .stop_signal = 0 };
	n.status.node_id = c->node_id;
	n.status.not_ready_why = "not joined: this build has no controller yet";
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	atomic_store(&n.status.started_ms, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
	int status = 1;
	if ((rv = uv_loop_init(&n.loop)) != 0) {
		SL_BLOG(SL_BLOG_ERROR, "main", "event loop: %s", uv_strerror(rv));
		sl_datadir_close(&dd);
		return 1;
	}
	uv_signal_init(&n.loop, &n.sigterm);
	uv_signal_init(&n.loop, &n.sigint);
	n.sigterm.data = n.sigint.data = &n;
	uv_signal_start(&n.sigterm, on_signal, SIGTERM);
	uv_signal_start(&n.sigint, on_signal, SIGINT);
	rv = sl_http_start(c->listen_host, (unsigned)c->http_port, &n.status, &n.http, errmsg);
	if (rv != SL_OK) {
		SL_BLOG(SL_BLOG_ERROR, "http", "%s", errmsg);
		uv_close((uv_handle_t *)&n.sigterm, NULL);
		uv_close((uv_handle_t *)&n.sigint, NULL);
	} else {
		SL_BLOG(SL_BLOG_INFO, "http", "listening addr=%s:%llu", c->listen_host,
			(unsigned long long)c->http_port);
		SL_BLOG(SL_BLOG_INFO, "main", "started node_id=%llu advertised=%s seeds=%s",
			(unsigned long long)c->node_id, sl_config_advertised(c),
			c->seeds[0] ? c->seeds : "(this node alone)");
	}
	uv_run(&n.loop, UV_RUN_DEFAULT);
	if (n.http != NULL) {
		sl_http_stop(n.http);
		status = 0;
	}
	rv = uv_loop_close(&n.loop);
	if (rv != 0)
		SL_BLOG(SL_BLOG_ERROR, "main", "event loop still busy at exit: %s", uv_strerror(rv));
	sl_datadir_close(&dd);
	if (status == 0)
		SL_BLOG(SL_BLOG_INFO, "main", "stopped");
	return status;
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
