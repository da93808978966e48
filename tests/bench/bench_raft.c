/* bench_raft: one partition's Raft group with three replicas in one
 * process, on the real disk, fdatasync on.
 *
 *   bench_raft [--dir DIR] [--seconds S] [--window W] [--batch-bytes B]
 *
 * Three libraft instances, each with Sluice's backend (raft/rio.h) over its
 * own partition log under DIR, share one libuv loop; disk work runs on
 * libuv's thread pool; messages go between them through memory (copied,
 * as a transport would). The leader keeps W batches of B bytes (100-byte
 * records) in flight and counts those committed. First it measures the
 * disk's raw write+fdatasync loop of the same size, for the ratio.
 * Prints `name value unit` lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "rio.h"
#include "procs.h"
#include "testfsm.h"
#include "uvenv.h"

#define NODES 3

struct node {
	int id;
	char address[16];
	struct raft_io io;
	struct raft raft;
	struct raft_fsm fsm;
	struct sl_rnet net;
	uint64_t applied;
};

struct delivery {
	struct sl_rwork w;
	struct node *to;
	struct raft_message msg;
};

static uv_loop_t loop;
static struct sl_uvenv env;
static struct node nodes[NODES];
static uv_timer_t ticker, stopper;
static bool stopping;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- In-memory transport -------------------------------------------- */

static void deliver(struct sl_rwork *w)
{
	struct delivery *d = (struct delivery *)w;
	if (d->to->io.impl != NULL && !stopping)
		sl_rio_deliver(&d->to->io, &d->msg);
	else
		sl_rmsg_discard(&d->msg);
	free(d);
}

static int net_send(struct sl_rnet *net, uint32_t group, const struct raft_message *msg)
{
	struct node *from = net->data;
	(void)group;
	if (msg->server_id < 1 || msg->server_id > NODES)
		return RAFT_NOCONNECTION;
	struct delivery *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return RAFT_NOCONNECTION;
	if (sl_rmsg_clone(msg, (raft_id)from->id, from->address, &d->msg) != 0) {
		free(d);
		return RAFT_NOCONNECTION;
	}
	d->to = &nodes[msg->server_id - 1];
	d->w.done = deliver;
	env.base.submit(&env.base, &d->w);
	return 0;
}

/* ---- State machine -------------------------------------------------- */


/* ---- Producer ------------------------------------------------------- */

static uint8_t *proto;
static size_t proto_len;
static struct node *leader;
static uint64_t proposed, committed, window, bytes_committed;
static double *lat;
static size_t nlat, lat_cap;

struct produce {
	struct raft_apply req;
	double t0;
};

static void propose(void);

static void on_commit(struct raft_apply *req, int status, void *result)
{
	struct produce *p = (struct produce *)req;
	(void)result;
	if (status == 0) {
		committed++;
		bytes_committed += proto_len;
		if (nlat < lat_cap)
			lat[nlat++] = now_s() - p->t0;
	}
	free(p);
	if (!stopping)
		propose();
}

static void propose(void)
{
	while (!stopping && proposed - committed < window) {
		struct produce *p = malloc(sizeof(*p));
		struct raft_buffer b = { raft_malloc(proto_len), proto_len };
		memcpy(b.base, proto, proto_len);
		sl_batch_stamp(b.base, sl_rio_next_offset(&leader->io), (int32_t)leader->raft.current_term);
		p->t0 = now_s();
		if (raft_apply(&leader->raft, &p->req, &b, 1, on_commit) != 0) {
			raft_free(b.base);
			free(p);
			return;
		}
		proposed++;
	}
}

static void on_tick(uv_timer_t *t)
{
	(void)t;
	for (int i = 0; i < NODES; i++)
		sl_rio_tick(&nodes[i].io);
}

static void on_stop(uv_timer_t *t)
{
	(void)t;
	stopping = true;
	uv_stop(&loop);
}

/* ---- Raw baseline --------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	const char *base = "data/bench-raft";
	double seconds = 5;
	size_t batch_bytes = 16384;
	window = 32;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			base = argv[++i];
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc)
			window = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--batch-bytes") == 0 && i + 1 < argc)
			batch_bytes = strtoull(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: bench_raft [--dir DIR] [--seconds S] [--window W] [--batch-bytes B]\n");
			return 2;
		}
	}
	if (seconds <= 0 || window == 0 || batch_bytes < 200 || batch_bytes > (8u << 20)) {
		fprintf(stderr, "bench_raft: bad arguments\n");
		return 2;
	}
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/run-%d", base, (int)getpid());
	mkdir(base, 0755);
	if (mkdir(dir, 0755) != 0) {
		fprintf(stderr, "bench_raft: mkdir %s: %s\n", dir, strerror(errno));
		return 1;
	}

	/* The batch: 100-byte records up to batch_bytes. */
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	char val[100];
	for (size_t i = 0; i < sizeof(val); i++)
		val[i] = (char)('a' + i % 26);
	while (sl_batch_builder_size(&b) + 120 <= batch_bytes)
		sl_batch_builder_add(&b, 1700000000000, NULL, -1, val, sizeof(val), NULL, 0);
	int records = sl_batch_builder_count(&b);
	const uint8_t *bytes;
	sl_batch_builder_finish(&b, &bytes, &proto_len);
	proto = malloc(proto_len);
	memcpy(proto, bytes, proto_len);
	sl_batch_builder_free(&b);

	printf("# bench_raft: %d replicas in one process, one libuv loop + thread pool, fdatasync on\n", NODES);
	printf("# batch %zu bytes, %d records of 100 B, window %llu, %g s, dir %s\n", proto_len,
	       records, (unsigned long long)window, seconds, dir);
	double raw = tl_raw_fsync_mbps(dir, proto_len, 2.0);
	printf("raw_append_fdatasync_%zub %.1f MB/s\n", proto_len, raw);

	uv_loop_init(&loop);
	sl_uvenv_init(&env, &loop);
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	for (int i = 0; i < NODES; i++) {
		struct node *n = &nodes[i];
		n->id = i + 1;
		snprintf(n->address, sizeof(n->address), "n%d", n->id);
		raft_configuration_add(&conf, (raft_id)n->id, n->address, RAFT_VOTER);
	}
	for (int i = 0; i < NODES; i++) {
		struct node *n = &nodes[i];
		char gdir[600];
		snprintf(gdir, sizeof(gdir), "%s/n%d", dir, n->id);
		mkdir(gdir, 0755);
		snprintf(gdir, sizeof(gdir), "%s/n%d/g1", dir, n->id);
		struct sl_rio_config cfg = { .dir = gdir, .group = 1 };
		sl_log_config_init(&cfg.log);
		n->net = (struct sl_rnet){ .data = n, .send = net_send };
		tl_fsm_init(&n->fsm, &n->applied);
		if (sl_rio_init(&n->io, &cfg, NULL, &env.base, &n->net, NULL, NULL) != SL_OK ||
		    raft_init(&n->raft, &n->io, &n->fsm, (raft_id)n->id, n->address) != 0) {
			fprintf(stderr, "bench_raft: init failed\n");
			return 1;
		}
		sl_rio_tune(&n->raft, 50, 300); /* short timeouts: a quick start */
		if (raft_bootstrap(&n->raft, &conf) != 0 || raft_start(&n->raft) != 0) {
			fprintf(stderr, "bench_raft: start failed: %s\n", raft_errmsg(&n->raft));
			return 1;
		}
	}
	raft_configuration_close(&conf);
	uv_timer_init(&loop, &ticker);
	uv_timer_start(&ticker, on_tick, 50, 50);
	uv_timer_init(&loop, &stopper);

	/* Elect a leader; its barrier commits before anything is proposed. */
	double t_elect = now_s();
	while (leader == NULL && now_s() - t_elect < 30) {
		uv_run(&loop, UV_RUN_ONCE);
		for (int i = 0; i < NODES; i++)
			if (sl_rio_leader_ready(&nodes[i].io))
				leader = &nodes[i];
	}
	if (leader == NULL) {
		fprintf(stderr, "bench_raft: no leader within 30 s\n");
		return 1;
	}
	printf("# leader n%d after %.2f s\n", leader->id, now_s() - t_elect);

	lat_cap = 10000000;
	lat = malloc(lat_cap * sizeof(*lat));
	double c0 = cpu_s(), t0 = now_s();
	propose();
	uv_timer_start(&stopper, on_stop, (uint64_t)(seconds * 1000), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	double elapsed = now_s() - t0, cpu = cpu_s() - c0;

	double mbps = (double)bytes_committed / elapsed / 1e6;
	printf("raft_committed_batches %.0f batches/s\n", (double)committed / elapsed);
	printf("raft_committed %.1f MB/s\n", mbps);
	printf("raft_committed_records %.0f records/s\n", (double)committed * records / elapsed);
	qsort(lat, nlat, sizeof(*lat), cmp_double);
	if (nlat > 0) {
		printf("raft_commit_latency_p50 %.0f us\n", lat[nlat / 2] * 1e6);
		printf("raft_commit_latency_p99 %.0f us\n", lat[nlat * 99 / 100] * 1e6);
	}
	printf("raft_cpu_per_batch %.0f us\n", committed ? cpu / (double)committed * 1e6 : 0);
	printf("raft_cpu_utilisation %.2f cores\n", cpu / elapsed);
	printf("ratio_raft_vs_raw_fsync %.2f x (goal >= 0.70) %s\n", raw > 0 ? mbps / raw : 0,
	       raw > 0 && mbps / raw >= 0.70 ? "PASS" : "MISS");

	/* Close everything; remove what was written. */
	uv_timer_stop(&ticker);
	uv_timer_stop(&stopper);
	for (int i = 0; i < NODES; i++)
		raft_close(&nodes[i].raft, NULL);
	stopping = true;
	for (int k = 0; k < 1000; k++)
		uv_run(&loop, UV_RUN_NOWAIT);
	sl_uvenv_close(&env, NULL);
	uv_close((uv_handle_t *)&ticker, NULL);
	uv_close((uv_handle_t *)&stopper, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(lat);
	free(proto);
	return 0;
}
