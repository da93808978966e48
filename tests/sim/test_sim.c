/* Raft groups on Sluice's backend in the deterministic simulator (sim.h):
 * elections and commits without faults, leader fail-over, and random
 * fault schedules by seed. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <raft.h>

#include "sim.h"

TestSuite(sim, .timeout = 600);

static struct sl_sim *sim_for(uint64_t seed, int nodes)
{
	struct sl_sim_config cfg;
	sl_sim_config_init(&cfg);
	cfg.seed = seed;
	cfg.nodes = nodes;
	cfg.trace = getenv("SIM_TRACE") != NULL;
	return sl_sim_new(&cfg);
}

static void assert_no_violation(struct sl_sim *s)
{
	const char *v = sl_sim_violation(s);
	cr_assert_null(v, "%s", v);
}

/* Every node applied the same sequence up to the same index. */
static void assert_identical(struct sl_sim *s, int nodes)
{
	uint64_t a0;
	uint64_t c0 = sl_sim_chain(s, 1, &a0);
	for (int i = 2; i <= nodes; i++) {
		uint64_t a;
		uint64_t c = sl_sim_chain(s, i, &a);
		cr_assert_eq(a, a0, "n%d applied %" PRIu64 ", n1 %" PRIu64, i, a, a0);
		cr_assert_eq(c, c0, "n%d's applied sequence differs from n1's", i);
	}
}

/* Produces n batches on the leader, a few at a time; returns how many
 * raft_apply took. */
static int produce_on_leader(struct sl_sim *s, int n)
{
	int taken = 0;
	for (int i = 0; i < n; i++) {
		int leader = sl_sim_run_until_leader(s, 5000);
		cr_assert_neq(leader, 0, "no leader");
		if (sl_sim_produce(s, leader) == 0)
			taken++;
		if (i % 10 == 9)
			sl_sim_run(s, 20);
	}
	return taken;
}

static void wait_applied_everywhere(struct sl_sim *s, int nodes, uint64_t index, int64_t ms)
{
	for (int64_t t = 0; t < ms; t += 10) {
		bool all = true;
		for (int i = 1; i <= nodes; i++)
			all &= sl_sim_last_applied(s, i) >= index;
		if (all)
			return;
		cr_assert_eq(sl_sim_run(s, 10), 0, "%s", sl_sim_violation(s));
	}
	cr_assert_fail("not every node applied index %" PRIu64 " within %" PRId64 " ms", index, ms);
}

Test(sim, three_nodes_elect_and_commit)
{
	struct sl_sim *s = sim_for(1, 3);
	int leader = sl_sim_run_until_leader(s, 10000);
	cr_assert_neq(leader, 0, "no leader within 10 s");
	cr_assert_eq(produce_on_leader(s, 200), 200);
	cr_assert_eq(sl_sim_run_until_settled(s, 10000), 0, "%" PRIu64 " of %" PRIu64 " acknowledged",
		     sl_sim_acked(s), sl_sim_proposed(s));
	cr_assert_eq(sl_sim_acked(s), 200);
	assert_no_violation(s);
	/* 200 commands plus the bootstrap CHANGE and the leader's barrier:
	 * past the snapshot threshold, so snapshots were taken too. */
	cr_assert_geq(sl_sim_max_acked_index(s), 201);
	wait_applied_everywhere(s, 3, sl_sim_max_acked_index(s), 5000);
	sl_sim_run(s, 500); /* trailing barriers and heartbeats */
	assert_no_violation(s);
	assert_identical(s, 3);
	struct sl_sim_stats st;
	sl_sim_stats(s, &st);
	cr_assert_eq(st.elections, 1, "%" PRIu64 " elections without faults", st.elections);
	sl_sim_free(s);
}

Test(sim, leader_crash_fails_over)
{
	struct sl_sim *s = sim_for(2, 3);
	int old = sl_sim_run_until_leader(s, 10000);
	cr_assert_neq(old, 0);
	cr_assert_eq(produce_on_leader(s, 50), 50);
	cr_assert_eq(sl_sim_run_until_settled(s, 10000), 0);
	cr_assert_eq(sl_sim_acked(s), 50);
	uint64_t acked_index = sl_sim_max_acked_index(s);
	/* Leave a few in flight and kill the leader, tearing its last write. */
	for (int i = 0; i < 5; i++)
		sl_sim_produce(s, old);
	sl_sim_run(s, 1);
	int64_t t0 = sl_sim_now_ms(s);
	sl_sim_crash(s, old, true);
	int leader = 0;
	while (sl_sim_now_ms(s) - t0 < 5000) {
		cr_assert_eq(sl_sim_run(s, 10), 0, "%s", sl_sim_violation(s));
		leader = sl_sim_leader(s);
		if (leader != 0 && leader != old)
			break;
	}
	cr_assert(leader != 0 && leader != old, "no new leader within 5 s of the crash");
	/* Election timeout is 1-2 s and pre-vote adds a round trip: at most
	 * two election rounds. */
	cr_assert_leq(sl_sim_now_ms(s) - t0, 4500, "fail-over took %" PRId64 " ms", sl_sim_now_ms(s) - t0);
	cr_assert_eq(produce_on_leader(s, 50), 50);
	cr_assert_eq(sl_sim_run_until_settled(s, 10000), 0);
	cr_assert_geq(sl_sim_acked(s), 100);
	cr_assert_gt(sl_sim_max_acked_index(s), acked_index);
	/* The old leader comes back and catches up; nothing acked is lost. */
	sl_sim_restart(s, old);
	cr_assert_eq(sl_sim_converge(s, 30000), 0, "%s", sl_sim_violation(s));
	sl_sim_run(s, 500);
	assert_no_violation(s);
	assert_identical(s, 3);
	sl_sim_free(s);
}

/* The same seed gives the same run, event for event: what makes a
 * failing seed a reproducer. */
Test(sim, replays_deterministically)
{
	struct sl_sim_stats st[2];
	uint64_t acked[2], chain[2], applied[2];
	int64_t now[2];
	char violation[2][256];
	for (int k = 0; k < 2; k++) {
		struct sl_sim_config cfg;
		sl_sim_config_for_seed(&cfg, 3);
		struct sl_sim *s = sl_sim_new(&cfg);
		sl_sim_random_schedule(s, 150);
		sl_sim_stats(s, &st[k]);
		acked[k] = sl_sim_acked(s);
		now[k] = sl_sim_now_ms(s);
		chain[k] = sl_sim_chain(s, 1, &applied[k]);
		snprintf(violation[k], sizeof(violation[k]), "%s",
			 sl_sim_violation(s) != NULL ? sl_sim_violation(s) : "");
		sl_sim_free(s);
	}
	cr_assert_eq(st[0].events, st[1].events);
	cr_assert_eq(st[0].messages, st[1].messages);
	cr_assert_eq(acked[0], acked[1]);
	cr_assert_eq(now[0], now[1]);
	cr_assert_eq(applied[0], applied[1]);
	cr_assert_eq(chain[0], chain[1]);
	cr_assert_str_eq(violation[0], violation[1]);
	cr_assert_gt(st[0].events, 1000, "the schedule did little");
}

/* ---- Random schedules --------------------------------------------------- */

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);
	return v != NULL && *v != '\0' ? strtoull(v, NULL, 0) : dflt;
}

/* LeakSanitizer's check, when built with it: the children exit with
 * _exit() (no atexit handlers of Criterion's runner), so check here. */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static int run_seed(uint64_t seed, int steps, char *msg, size_t len)
{
	struct sl_sim_config cfg;
	sl_sim_config_for_seed(&cfg, seed);
	cfg.trace = getenv("SIM_TRACE") != NULL;
	cfg.check_match = getenv("SIM_NO_MATCH_CHECK") == NULL;
	struct sl_sim *s = sl_sim_new(&cfg);
	int rv = sl_sim_random_schedule(s, steps);
	struct sl_sim_stats st;
	sl_sim_stats(s, &st);
	if (rv != 0)
		snprintf(msg, len, "%s", sl_sim_violation(s));
	else
		snprintf(msg, len,
			 "ok: %d nodes, %" PRId64 " ms, %" PRIu64 " acked, %" PRIu64 " elections, %" PRIu64
			 " crashes, %" PRIu64 " installs, %" PRIu64 " faults, %" PRIu64 " events",
			 cfg.nodes, sl_sim_now_ms(s), sl_sim_acked(s), st.elections, st.crashes, st.installs,
			 st.faults, st.events);
	sl_sim_free(s);
	return rv;
}

struct child {
	pid_t pid;
	int fd;
	uint64_t seed;
};

/* Reads the child's one-line result and reaps it. Returns true if ok. */
static bool finish_child(struct child *c, char *out, size_t len)
{
	size_t got = 0;
	ssize_t r;
	while (got + 1 < len && (r = read(c->fd, out + got, len - 1 - got)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		got += (size_t)r;
	}
	out[got] = '\0';
	close(c->fd);
	int status;
	while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(status)) {
		size_t k = strlen(out);
		snprintf(out + k, len - k, "%scrashed: signal %d (%s)", k ? "; " : "", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
		return false;
	}
	if (WEXITSTATUS(status) == 3) {
		size_t k = strlen(out);
		snprintf(out + k, len - k, "; leaks (LeakSanitizer's report: SIM_VERBOSE=1 or SIM_SEED)");
		return false;
	}
	if (WEXITSTATUS(status) != 0 && out[0] == '\0')
		snprintf(out, len, "died: exit status %d (the report: SIM_VERBOSE=1 or SIM_SEED)",
			 WEXITSTATUS(status));
	return WEXITSTATUS(status) == 0;
}

static struct child spawn_seed(uint64_t seed, int steps)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		/* One line per failing seed comes back through the pipe; the
		 * traces and sanitizer reports only with SIM_VERBOSE (or
		 * replay the seed with SIM_SEED). */
		if (getenv("SIM_VERBOSE") == NULL) {
			int null = open("/dev/null", O_WRONLY);
			if (null >= 0) {
				dup2(null, STDERR_FILENO);
				close(null);
			}
		}
		char msg[1024];
		int rv = run_seed(seed, steps, msg, sizeof(msg));
		size_t len = strlen(msg);
		if (write(fds[1], msg, len) != (ssize_t)len)
			_exit(2);
		close(fds[1]);
		if (__lsan_do_recoverable_leak_check != NULL && __lsan_do_recoverable_leak_check() != 0)
			_exit(3);
		_exit(rv == 0 ? 0 : 1);
	}
	close(fds[1]);
	return (struct child){ .pid = pid, .fd = fds[0], .seed = seed };
}

Test(sim, seeded_schedules)
{
	/* SIM_SEED=x replays one seed in this process (with SIM_TRACE=1 for
	 * every event); otherwise SIM_SEEDS schedules from SIM_SEED_BASE,
	 * SIM_JOBS at a time, each in its own process. */
	int steps = (int)env_u64("SIM_STEPS", 500);
	if (getenv("SIM_SEED") != NULL) {
		char msg[1024];
		uint64_t seed = env_u64("SIM_SEED", 1);
		int rv = run_seed(seed, steps, msg, sizeof(msg));
		fprintf(stderr, "seed %" PRIu64 ": %s\n", seed, msg);
		cr_assert_eq(rv, 0, "seed %" PRIu64 ": %s", seed, msg);
		return;
	}
	uint64_t count = env_u64("SIM_SEEDS", 1800);
	uint64_t base = env_u64("SIM_SEED_BASE", 1);
	unsigned jobs = (unsigned)env_u64("SIM_JOBS", 2);
	if (jobs < 1)
		jobs = 1;
	if (jobs > 64)
		jobs = 64;
	struct child running[64];
	unsigned nrun = 0;
	uint64_t next = base, failed = 0;
	char failures[4096] = "";
	size_t flen = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (next < base + count || nrun > 0) {
		while (nrun < jobs && next < base + count)
			running[nrun++] = spawn_seed(next++, steps);
		/* Oldest first: results come out in seed order per slot. */
		struct child c = running[0];
		memmove(running, running + 1, (nrun - 1) * sizeof(*running));
		nrun--;
		char out[1200];
		bool ok = finish_child(&c, out, sizeof(out));
		if (!ok) {
			failed++;
			fprintf(stderr, "SIM FAIL seed=%" PRIu64 " %s\n", c.seed, out);
			if (flen + 32 < sizeof(failures))
				flen += (size_t)snprintf(failures + flen, sizeof(failures) - flen, " %" PRIu64, c.seed);
		} else if (getenv("SIM_VERBOSE") != NULL) {
			fprintf(stderr, "seed %" PRIu64 ": %s\n", c.seed, out);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fprintf(stderr, "sim: %" PRIu64 " schedules (seeds %" PRIu64 "..%" PRIu64 ", %d steps), %" PRIu64
		" failed, %.1f s\n",
		count, base, base + count - 1, steps, failed, secs);
	cr_assert_eq(failed, 0, "%" PRIu64 " of %" PRIu64 " seeds found violations:%s", failed, count,
		     failures);
}

/* Seeds that once found a defect (tests/sim/README.md, "What it found")
 * and lie outside the default range: each must keep passing. */
Test(sim, regression_seeds)
{
	static const uint64_t seeds[] = { 2103, 2187, 2443, 2549, 2700, 3425, 4134,
					  4200, 4299, 4993, 5895, 6832 };
	char failures[512] = "";
	size_t flen = 0;
	int failed = 0;
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		struct child c = spawn_seed(seeds[i], 500);
		char out[1200];
		if (!finish_child(&c, out, sizeof(out))) {
			failed++;
			fprintf(stderr, "SIM FAIL seed=%" PRIu64 " %s\n", seeds[i], out);
			flen += (size_t)snprintf(failures + flen, sizeof(failures) - flen, " %" PRIu64, seeds[i]);
		}
	}
	cr_assert_eq(failed, 0, "regression seeds failed:%s", failures);
}

/* A follower whose InstallSnapshot got no answer (its group restarted
 * during the install: a disk error, a full disk; here the message is
 * lost) catches up within a few election timeouts. libraft's default
 * install-snapshot timeout (30 s) kept the leader waiting for the answer
 * that long, sending it nothing but heartbeats: tests/chaos found a full
 * disk leaving partitions under-replicated for 30 s (sl_rio_tune now
 * sets 5 election timeouts). */
Test(sim, a_lost_install_snapshot_is_sent_again_within_seconds)
{
	struct sl_sim *s = sim_for(11, 3);
	int leader = sl_sim_run_until_leader(s, 10000);
	cr_assert_neq(leader, 0);
	int f = leader % 3 + 1;
	for (int i = 1; i <= 3; i++)
		if (i != f)
			sl_sim_link(s, f, i, false);
	/* Far past the snapshot threshold (64) while f is away. */
	cr_assert_eq(produce_on_leader(s, 300), 300);
	cr_assert_eq(sl_sim_run_until_settled(s, 10000), 0);
	cr_assert_eq(sl_sim_leader(s), leader);
	struct sl_sim_stats before;
	sl_sim_stats(s, &before);
	sl_sim_drop_next(s, leader, f, RAFT_IO_INSTALL_SNAPSHOT, 1);
	sl_sim_heal(s);
	int64_t t0 = sl_sim_now_ms(s);
	wait_applied_everywhere(s, 3, sl_sim_max_acked_index(s), 15000);
	struct sl_sim_stats after;
	sl_sim_stats(s, &after);
	cr_assert_eq(after.scripted_drops, before.scripted_drops + 1, "no install was lost");
	cr_assert_gt(after.installs, before.installs, "f caught up without an install");
	cr_assert_leq(sl_sim_now_ms(s) - t0, 8000, "f caught up %" PRId64 " ms after the heal",
		      sl_sim_now_ms(s) - t0);
	assert_no_violation(s);
	sl_sim_free(s);
}
