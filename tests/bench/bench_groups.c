/* Thousands of Raft groups per node: three rnode processes (tests/cluster)
 * on 127.0.0.1, every group replicated on all three (RF 3), default
 * timeouts (heartbeat 200 ms, election 1 s).
 *
 *   1. creation: the time until every group, created on first start, has a
 *      ready leader;
 *   2. idle: CPU per node over a window (goal: under 10% of one core),
 *      resident memory per replica (goal: under 256 KiB; the figure is the
 *      node's RSS less that of a node with one group, over the other
 *      groups) and open descriptors;
 *   3. cold start: every node stopped, then started again on its data:
 *      the time until every group has a ready leader (goal: under 10 s);
 *   4. replication: 16 KiB batches on groups 1..100, each leader keeping a
 *      window in flight, all three nodes at once; committed MB/s, against
 *      a raw 16 KiB write+fdatasync loop on the same disk (goal: >= 70%).
 *
 *   bench_groups --rnode build/tests/cluster/rnode --dir DIR [--groups 5000]
 *                [--idle-seconds 10] [--load-seconds 10] [--inflight 8]
 *                [--meta-per-group]
 *
 * --meta-per-group keeps term and vote in each group's directory (a sync
 * per change) instead of the node's shared store, for comparison.
 *
 * Every process it starts is killed by PID at exit (tests/lib/procs.h). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "procs.h"

#define NODES 3
#define CLUSTER "0123456789abcdef0123456789abcdef"

static const char *rnode_path;
static char base_dir[512];
static int ports[NODES + 1];
static struct tl_proc procs[NODES];
static int groups = 5000;
static bool meta_per_group;

static int start(int i, int ngroups)
{
	char id[16], dir[600], port[16], log[640], g[16];
	char peers[NODES][64];
	char *argv[32];
	int k = 0;
	snprintf(id, sizeof(id), "%d", i + 1);
	snprintf(dir, sizeof(dir), "%s/n%d", base_dir, i + 1);
	snprintf(port, sizeof(port), "%d", ports[i]);
	snprintf(log, sizeof(log), "%s/n%d.log", base_dir, i + 1);
	snprintf(g, sizeof(g), "%d", ngroups);
	argv[k++] = (char *)rnode_path;
	argv[k++] = "--id";
	argv[k++] = id;
	argv[k++] = "--dir";
	argv[k++] = dir;
	argv[k++] = "--port";
	argv[k++] = port;
	argv[k++] = "--cluster";
	argv[k++] = CLUSTER;
	argv[k++] = "--groups";
	argv[k++] = g;
	if (meta_per_group)
		argv[k++] = "--meta-per-group";
	for (int j = 0; j < NODES; j++) {
		if (j == i)
			continue;
		snprintf(peers[j], sizeof(peers[j]), "%d=127.0.0.1:%d", j + 1, ports[j]);
		argv[k++] = "--peer";
		argv[k++] = peers[j];
	}
	argv[k] = NULL;
	if (tl_proc_spawn(&procs[i], argv, log) != 0) {
		perror("spawn");
		return -1;
	}
	return 0;
}

static int wait_ready(int i, int timeout_ms)
{
	char line[TL_PROC_LINE_MAX];
	if (tl_proc_expect(&procs[i], "ready", line, sizeof(line), timeout_ms) != 1) {
		fprintf(stderr, "node %d did not start (see %s)\n", i + 1, procs[i].log_path);
		return -1;
	}
	return 0;
}

/* Sums `status` over the nodes. */
static bool all_led(void *arg)
{
	(void)arg;
	int64_t ready = 0;
	for (int i = 0; i < NODES; i++) {
		char line[TL_PROC_LINE_MAX];
		int64_t r;
		if (tl_proc_command(&procs[i], line, sizeof(line), 30000, "status") != 1 ||
		    !tl_line_int(line, "ready", &r))
			return false;
		ready += r;
	}
	return ready == groups;
}

static void stop_all(void)
{
	char line[TL_PROC_LINE_MAX];
	for (int i = 0; i < NODES; i++)
		tl_proc_send(&procs[i], "quit");
	for (int i = 0; i < NODES; i++) {
		if (tl_proc_expect(&procs[i], "bye", line, sizeof(line), 60000) != 1 ||
		    tl_proc_wait(&procs[i], 30000) != 1)
			fprintf(stderr, "node %d did not stop cleanly\n", i + 1);
		tl_proc_close(&procs[i]);
	}
}

static double now_s(void)
{
	return (double)tl_now_ms() / 1000.0;
}

/* Starts every node with every group: *started once all listen and have
 * opened their groups, *led once every group has a ready leader (s). */
static int start_all(double *started, double *led)
{
	double t0 = now_s();
	for (int i = 0; i < NODES; i++)
		if (start(i, groups) != 0)
			return -1;
	for (int i = 0; i < NODES; i++)
		if (wait_ready(i, 600000) != 0)
			return -1;
	*started = now_s() - t0;
	if (!tl_wait_until(all_led, NULL, 600000, 100)) {
		fprintf(stderr, "not every group got a ready leader\n");
		return -1;
	}
	*led = now_s() - t0;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static const char *verdict(bool ok)
{
	return ok ? "PASS" : "MISS";
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	int idle_s = 10, load_s = 10, inflight = 8;
	for (int i = 1; i < argc; i += 2) {
		if (strcmp(argv[i], "--meta-per-group") == 0) {
			meta_per_group = true;
			i--;
		} else if (i + 1 >= argc) {
			fprintf(stderr, "%s: needs a value\n", argv[i]);
			return 2;
		} else if (strcmp(argv[i], "--rnode") == 0)
			rnode_path = argv[i + 1];
		else if (strcmp(argv[i], "--dir") == 0)
			dir = argv[i + 1];
		else if (strcmp(argv[i], "--groups") == 0)
			groups = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--idle-seconds") == 0)
			idle_s = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--load-seconds") == 0)
			load_s = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--inflight") == 0)
			inflight = atoi(argv[i + 1]);
		else {
			fprintf(stderr, "unknown flag %s\n", argv[i]);
			return 2;
		}
	}
	if (rnode_path == NULL || dir == NULL || groups < 1) {
		fprintf(stderr, "usage: bench_groups --rnode PATH --dir DIR [--groups N] "
				"[--idle-seconds S] [--load-seconds S] [--inflight N] "
				"[--meta-per-group]\n");
		return 2;
	}
	mkdir(dir, 0755);
	snprintf(base_dir, sizeof(base_dir), "%s/groups-%d", dir, (int)getpid());
	if (mkdir(base_dir, 0755) != 0) {
		perror(base_dir);
		return 1;
	}
	if (tl_free_ports(ports, NODES + 1) != 0)
		return 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	long tck = sysconf(_SC_CLK_TCK);
	printf("# bench_groups: %d nodes on 127.0.0.1, %d groups, RF %d, heartbeat 200 ms, "
	       "election 1 s, dir %s\n", NODES, groups, NODES, base_dir);

	/* A node with one group: the fixed part of a node's memory. */
	int saved = ports[0];
	ports[0] = ports[NODES];
	if (start(0, 1) != 0 || wait_ready(0, 30000) != 0)
		return 1;
	int64_t base_rss = tl_proc_rss_kb(procs[0].pid);
	int base_fds = tl_proc_fd_count(procs[0].pid);
	tl_proc_close(&procs[0]);
	ports[0] = saved;
	printf("one_group_node_rss %lld KiB, fds %d\n", (long long)base_rss, base_fds);

	/* 1. Creation. */
	double t_started, t_led;
	if (start_all(&t_started, &t_led) != 0)
		return 1;
	printf("create_all_groups %.1f s (all started %.1f s)\n", t_led, t_started);

	/* 2. Idle. Let elections and snapshots settle first. */
	struct timespec settle = { .tv_sec = 5 };
	nanosleep(&settle, NULL); /* a measurement window, not a synchronisation */
	int64_t c0[NODES], c1[NODES];
	for (int i = 0; i < NODES; i++)
		c0[i] = tl_proc_cpu_ticks(procs[i].pid);
	double w0 = now_s();
	struct timespec idle = { .tv_sec = idle_s };
	nanosleep(&idle, NULL);
	double w = now_s() - w0;
	double worst_cpu = 0, worst_rss = 0;
	for (int i = 0; i < NODES; i++) {
		c1[i] = tl_proc_cpu_ticks(procs[i].pid);
		double cpu = (double)(c1[i] - c0[i]) / (double)tck / w * 100.0;
		int64_t rss = tl_proc_rss_kb(procs[i].pid);
		double per = groups > 1 ? (double)(rss - base_rss) / (groups - 1) : 0;
		if (cpu > worst_cpu)
			worst_cpu = cpu;
		if (per > worst_rss)
			worst_rss = per;
		printf("node%d_idle cpu %.1f%% of one core, rss %lld KiB (%.1f KiB per replica), "
		       "fds %d\n", i + 1, cpu, (long long)rss, per, tl_proc_fd_count(procs[i].pid));
	}
	printf("idle_cpu_per_node_max %.1f %% (goal < 10) %s\n", worst_cpu, verdict(worst_cpu < 10));
	printf("rss_per_replica_max %.1f KiB (goal < 256) %s\n", worst_rss,
	       verdict(worst_rss < 256));

	/* 3. Cold start. */
	stop_all();
	double t_open, t_elect;
	if (start_all(&t_open, &t_elect) != 0)
		return 1;
	printf("cold_start_all_led %.1f s (groups opened after %.1f s) (goal < 10) %s\n", t_elect,
	       t_open, verdict(t_elect < 10));
	for (int i = 0; i < NODES && !meta_per_group; i++) {
		char line[TL_PROC_LINE_MAX];
		int64_t f, r;
		if (tl_proc_command(&procs[i], line, sizeof(line), 30000, "stats") == 1 &&
		    tl_line_int(line, "meta_flushes", &f) && tl_line_int(line, "meta_records", &r))
			printf("node%d_cold_start term/vote records %lld in %lld syncs\n", i + 1,
			       (long long)r, (long long)f);
	}

	/* 4. Replication across 100 groups. */
	int lg = groups < 100 ? groups : 100;
	double raw = tl_raw_fsync_mbps(base_dir, 16384, 3.0);
	printf("raw_append_fdatasync_16k %.1f MB/s\n", raw);
	for (int i = 0; i < NODES; i++)
		tl_proc_send(&procs[i], "load %d 16384 %d %d", load_s, inflight, lg);
	double bytes = 0, batches = 0;
	for (int i = 0; i < NODES; i++) {
		char line[TL_PROC_LINE_MAX];
		int64_t b, n;
		if (tl_proc_expect(&procs[i], "load", line, sizeof(line), (load_s + 60) * 1000) != 1 ||
		    !tl_line_int(line, "bytes", &b) || !tl_line_int(line, "batches", &n)) {
			fprintf(stderr, "node %d: no load result\n", i + 1);
			return 1;
		}
		bytes += (double)b;
		batches += (double)n;
	}
	double mbps = bytes / load_s / 1e6;
	printf("replicated_16k_batches_%d_groups %.1f MB/s committed (%.0f batches/s; each stored "
	       "on 3 nodes: %.1f MB/s written)\n", lg, mbps, batches / load_s, 3 * mbps);
	printf("ratio_committed_vs_raw_fsync %.2f x (goal >= 0.70) %s\n", raw > 0 ? mbps / raw : 0,
	       verdict(raw > 0 && mbps / raw >= 0.70));

	stop_all();
	nftw(base_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
