/* Scripted scenarios for the guards of raft/ (raft/README.md, "Guards
 * against libraft 0.15's bugs") on the simulator (sim.h): several real
 * libraft nodes on the backend, the network and the disks driven step by
 * step. Each test is named guard_*: tests/run.sh also runs them in the
 * build without the guards (-Dguards=false), where each must fail.
 *
 *   guard_a_...  Raft's figure 8 (libraft-guards.md (a)): an entry of an
 *                old term, stored on a majority, must not be committed by
 *                counting replicas, since a later leader may overwrite it.
 *   guard_g_...  a leadership transfer that libraft ignores is driven to
 *                completion (libraft-guards.md (g)). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <inttypes.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "sim.h"

static struct sl_sim *sim_for(uint64_t seed, int nodes)
{
	struct sl_sim_config cfg;
	sl_sim_config_init(&cfg);
	cfg.seed = seed;
	cfg.nodes = nodes;
	cfg.trace = getenv("SIM_TRACE") != NULL;
	return sl_sim_new(&cfg);
}

/* Cuts every link, then restores the ones listed as digit pairs:
 * "12 35" leaves n1-n2 and n3-n5 up and nothing else. */
static void set_links(struct sl_sim *s, int nodes, const char *pairs)
{
	for (int a = 1; a <= nodes; a++)
		for (int b = a + 1; b <= nodes; b++)
			sl_sim_link(s, a, b, false);
	for (const char *p = pairs; p[0] != '\0'; p++)
		if (p[0] >= '1' && p[0] <= '9' && p[1] >= '1' && p[1] <= '9') {
			sl_sim_link(s, p[0] - '0', p[1] - '0', true);
			p++;
		}
}

static bool is_leader(struct sl_sim *s, void *arg)
{
	return sl_sim_is_leader(s, *(int *)arg);
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

/* ---- (a) figure 8 ------------------------------------------------------ */

enum { S1 = 1, S2, S3, S4, S5 };

/* What the figure-8 script watches after every event. */
struct fig8 {
	uint64_t n;       /* the contested index */
	uint64_t t_old;   /* the term S1 wrote it in */
	int committed_by; /* a node whose commit index covered (n, t_old) */
	uint64_t commit_seen;
	uint64_t b;       /* last index every node held before */
};

/* Observer: did some node commit the old-term entry at n? (Returns false:
 * it only records.) */
static bool watch_old_entry(struct sl_sim *s, void *arg)
{
	struct fig8 *f = arg;
	for (int i = S1; i <= S5; i++)
		if (f->committed_by == 0 && sl_sim_is_up(s, i) && sl_sim_commit_index(s, i) >= f->n &&
		    sl_sim_entry_term(s, i, f->n) == f->t_old) {
			f->committed_by = i;
			f->commit_seen = sl_sim_commit_index(s, i);
		}
	return false;
}

/* Runs ms while watching; fails on a checker violation. */
static void run_watched(struct sl_sim *s, struct fig8 *f, int64_t ms)
{
	int rv = sl_sim_run_until(s, ms, watch_old_entry, f);
	cr_assert_geq(rv, 0, "checker: %s%s", sl_sim_violation(s),
		      f->committed_by ? " (after a node committed the old-term entry by counting)" : "");
}

struct node_index {
	int id;
	uint64_t index;
};

static bool stored_up_to(struct sl_sim *s, void *arg)
{
	const struct node_index *w = arg;
	for (; w->id != 0; w++)
		if (sl_sim_last_stored(s, w->id) < w->index)
			return false;
	return true;
}

/* S1 (leader) processed a success reply from the follower in arg. */
struct heard {
	struct fig8 *f;
	int from;
};

static bool s1_heard(struct sl_sim *s, void *arg)
{
	struct heard *h = arg;
	watch_old_entry(s, h->f);
	return sl_sim_match_index(s, S1, h->from) > 0;
}

/* Raft's figure 8, five nodes, each election forced by which links are
 * up (a node that can reach fewer than two others cannot win):
 *   1. S1 leads (term t1) and every node holds 1..B, committed;
 *   2. S1 writes N = B+1 to S2 only, durably on both; S1 crashes;
 *   3. S5 wins term t3 with S3 and S4, writes its own entry at N, durably,
 *      seen by nobody else, and crashes;
 *   4. S1 restarts on a slow disk (3 s per operation) and wins term t4
 *      with S2 and S4; it proposes an entry of t4 (and, with the guards,
 *      its barrier), which its disk will not hold for 3 s. S2 answers
 *      S1's first heartbeat (it holds N) and is then cut off, before
 *      S1's entries of t4 reach it; S1 ships (N, t1) and what follows to
 *      S3, and S3's success reply arrives: (N, t1) is now on S1, S2 and
 *      S3, a majority, but it is not of S1's term;
 *   5. S1 crashes before its disk completes; S5 restarts and wins term t5
 *      with S2 and S4 (S3, isolated, would not vote for it) and overwrites
 *      index N everywhere.
 * libraft 0.15 commits (N, t1) in step 4 (its quorum is checked at the
 * leader's last durable index, N, with no term check), then applies it,
 * and S5's entry at N is applied in step 5: the checker's state machine
 * safety trips. Guard (a) clamps success replies below S1's last durable
 * index while that entry is of an older term, so nothing commits. */
Test(sim, guard_a_figure_8_old_term_entry_is_never_committed_by_counting, .timeout = 120)
{
	struct sl_sim *s = sim_for(8, 5);
	struct fig8 f = { 0 };
	int id;

	/* 1. Only S1 reaches a majority: it leads. */
	set_links(s, 5, "12 13 14 15");
	id = S1;
	cr_assert_eq(sl_sim_run_until(s, 10000, is_leader, &id), 1, "S1 did not lead: %s",
		     sl_sim_violation(s) ? sl_sim_violation(s) : "timeout");
	set_links(s, 5, "12 13 14 15 23 24 25 34 35 45");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(sl_sim_produce(s, S1), 0);
	cr_assert_eq(sl_sim_run_until_settled(s, 5000), 0, "%s", sl_sim_violation(s));
	cr_assert_eq(sl_sim_acked(s), 3);
	f.b = sl_sim_last_index(s, S1);
	wait_applied_everywhere(s, 5, f.b, 5000);
	sl_sim_run(s, 300); /* commit indexes reach every follower */
	for (int i = S1; i <= S5; i++)
		cr_assert_eq(sl_sim_last_index(s, i), f.b, "n%d holds %" PRIu64 ", not %" PRIu64, i,
			     sl_sim_last_index(s, i), f.b);
	uint64_t t1 = sl_sim_term(s, S1);
	f.n = f.b + 1;
	f.t_old = t1;

	/* 2. S1 writes N to S2 only; S3, S4 and S5 already see only S5
	 * among themselves (for step 3). */
	set_links(s, 5, "12 35 45");
	cr_assert_eq(sl_sim_produce(s, S1), 0);
	struct node_index w2[] = { { S1, f.n }, { S2, f.n }, { 0, 0 } };
	cr_assert_eq(sl_sim_run_until(s, 1000, stored_up_to, w2), 1, "N not durable on S1 and S2");
	cr_assert_eq(sl_sim_entry_term(s, S2, f.n), t1);
	cr_assert_eq(sl_sim_commit_index(s, S1), f.b, "N committed with two of five");
	sl_sim_crash(s, S1, false);
	set_links(s, 5, "35 45");

	/* 3. S5 wins with S3 and S4; the moment it leads it is cut off, so
	 * its entries reach nobody. */
	id = S5;
	cr_assert_eq(sl_sim_run_until(s, 10000, is_leader, &id), 1, "S5 did not lead: %s",
		     sl_sim_violation(s) ? sl_sim_violation(s) : "timeout");
	set_links(s, 5, "");
	uint64_t t3 = sl_sim_term(s, S5);
	cr_assert_gt(t3, t1);
	cr_assert_eq(sl_sim_produce(s, S5), 0);
	struct node_index w3[] = { { S5, sl_sim_last_index(s, S5) }, { 0, 0 } };
	cr_assert_eq(sl_sim_run_until(s, 1000, stored_up_to, w3), 1, "S5's entries not durable");
	cr_assert_eq(sl_sim_entry_term(s, S5, f.n), t3, "S5 did not write its own entry at N");
	cr_assert_eq(sl_sim_last_index(s, S3), f.b);
	cr_assert_eq(sl_sim_last_index(s, S4), f.b);
	sl_sim_crash(s, S5, false);

	/* 4. S1 comes back on a slow disk; only it can win (S2 reaches only
	 * S1). Once it leads, S4 is cut off: S1 replicates to S2 and S3, and
	 * S2 only until it answered the first heartbeat. */
	sl_sim_set_disk_latency(s, S1, 3000000, 3000000, -1);
	set_links(s, 5, "12 13 14");
	sl_sim_restart(s, S1);
	id = S1;
	cr_assert_eq(sl_sim_run_until(s, 15000, is_leader, &id), 1, "S1 did not lead again: %s",
		     sl_sim_violation(s) ? sl_sim_violation(s) : "timeout");
	set_links(s, 5, "12 13");
	uint64_t t4 = sl_sim_term(s, S1);
	cr_assert_gt(t4, t3);
	cr_assert_eq(sl_sim_last_stored(s, S1), f.n);
	cr_assert_eq(sl_sim_entry_term(s, S1, f.n), t1);
	cr_assert_eq(sl_sim_produce(s, S1), 0, "S1 took no write in term %" PRIu64, t4);
	struct heard h2 = { &f, S2 }, h3 = { &f, S3 };
	int rv = sl_sim_run_until(s, 1000, s1_heard, &h2);
	cr_assert_eq(rv, 1, "S1 never heard S2's success: %s",
		     sl_sim_violation(s) ? sl_sim_violation(s) : "timeout");
	set_links(s, 5, "13");
	/* S3 receives (N, t1) and S1's entries of t4, stores them and its
	 * success reply reaches S1, whose own entries of t4 are not durable. */
	rv = sl_sim_run_until(s, 1000, s1_heard, &h3);
	cr_assert_eq(rv, 1, "S1 never heard S3's success: %s",
		     sl_sim_violation(s) ? sl_sim_violation(s) : "timeout");
	cr_assert_eq(sl_sim_entry_term(s, S3, f.n), t1);
	cr_assert_geq(sl_sim_last_stored(s, S3), f.n);
	run_watched(s, &f, 100); /* heartbeats, and S2's replies, too */
	cr_assert(sl_sim_is_leader(s, S1) && sl_sim_term(s, S1) == t4);
	cr_assert_eq(sl_sim_last_stored(s, S1), f.n, "S1's disk completed too early: the script is off");
	cr_assert_gt(sl_sim_last_index(s, S1), f.n);
	uint64_t s1_commit = sl_sim_commit_index(s, S1);
	uint64_t s3_match = sl_sim_match_index(s, S1, S3);
	cr_log_info("term %" PRIu64 ": (%" PRIu64 ", t%" PRIu64 ") on S1, S2, S3; S1 commit %" PRIu64
		    ", match for S3 %" PRIu64,
		    t4, f.n, t1, s1_commit, s3_match);

	/* 5. S1 crashes before its disk completes: its entries of t4 are
	 * lost. S5 restarts and wins with S2 and S4 (S3 isolated), and
	 * overwrites N. */
	sl_sim_crash(s, S1, false);
	sl_sim_set_disk_latency(s, S1, 0, 0, 0);
	set_links(s, 5, "24 25 45");
	sl_sim_restart(s, S5);
	for (int64_t t = 0; t < 15000 && !sl_sim_is_leader(s, S5); t += 10)
		run_watched(s, &f, 10);
	cr_assert(sl_sim_is_leader(s, S5), "S5 did not lead again");
	uint64_t t5 = sl_sim_term(s, S5);
	cr_assert_gt(t5, t4);
	run_watched(s, &f, 2000);
	cr_assert_geq(sl_sim_commit_index(s, S5), f.n, "S5 committed nothing of term %" PRIu64, t5);
	cr_assert_eq(sl_sim_entry_term(s, S2, f.n), t3, "S5 did not overwrite N on S2");

	/* Everything heals; every node ends with S5's entry at N. */
	cr_assert_eq(sl_sim_converge(s, 30000), 0, "checker: %s%s", sl_sim_violation(s),
		     f.committed_by ? " (after a node committed the old-term entry by counting)" : "");
	run_watched(s, &f, 500);
	for (int i = S1; i <= S5; i++)
		cr_assert_eq(sl_sim_entry_term(s, i, f.n), t3, "n%d holds term %" PRIu64 " at N", i,
			     sl_sim_entry_term(s, i, f.n));
	cr_assert_eq(f.committed_by, 0,
		     "n%d's commit index reached %" PRIu64 " over (%" PRIu64 ", t%" PRIu64
		     "), an entry overwritten later",
		     f.committed_by, f.commit_seen, f.n, f.t_old);
	cr_assert_lt(s1_commit, f.n, "S1 committed (%" PRIu64 ", t%" PRIu64 ") in term %" PRIu64, f.n, t1, t4);
	cr_assert_eq(sl_sim_violation(s), NULL);
	sl_sim_free(s);
}

/* ---- (g) transfer -------------------------------------------------------- */

struct xfer {
	int calls;
	int status;
	int64_t at_ms;
	struct sl_sim *s;
};

static void on_transfer(void *arg, int status)
{
	struct xfer *x = arg;
	x->calls++;
	x->status = status;
	x->at_ms = sl_sim_now_ms(x->s);
}

static bool transfer_done(struct sl_sim *s, void *arg)
{
	(void)s;
	return ((struct xfer *)arg)->calls > 0;
}

/* libraft 0.15 ignores a transfer silently in two ways: it sends no
 * TimeoutNow to a target that is not up to date (and gives up after an
 * election timeout), and a TimeoutNow that does not arrive, or that the
 * target cannot act on, is never repeated; either way its callback fires
 * after an election timeout with no status. Guard (g) transfers only
 * once the target holds every entry, then checks who leads and retries
 * (5 attempts within 10 election timeouts).
 *
 * Here the target is cut off while the leader commits more, for 6 s
 * (more than five election timeouts), then comes back; the first
 * TimeoutNow it would get is lost. The transfer must wait for the target,
 * retry after the loss, and report SL_OK with the target leading, within
 * its deadline. Without the guard, attempts are spent while the target
 * cannot catch up and the transfer gives up before it comes back. */
Test(sim, guard_g_transfer_is_retried_when_ignored, .timeout = 60)
{
	struct sl_sim *s = sim_for(7, 3);
	int leader = sl_sim_run_until_leader(s, 10000);
	cr_assert_neq(leader, 0, "no leader");
	for (int i = 0; i < 5; i++)
		cr_assert_eq(sl_sim_produce(s, leader), 0);
	cr_assert_eq(sl_sim_run_until_settled(s, 5000), 0, "%s", sl_sim_violation(s));
	wait_applied_everywhere(s, 3, sl_sim_max_acked_index(s), 5000);
	int target = leader % 3 + 1;

	/* The target falls behind. */
	sl_sim_partition(s, 1u << (target - 1));
	for (int i = 0; i < 5; i++)
		cr_assert_eq(sl_sim_produce(s, leader), 0);
	cr_assert_eq(sl_sim_run_until_settled(s, 5000), 0, "%s", sl_sim_violation(s));
	cr_assert_eq(sl_sim_acked(s), 10);
	cr_assert_lt(sl_sim_last_index(s, target), sl_sim_last_index(s, leader));

	struct xfer x = { .s = s };
	sl_sim_drop_next(s, leader, target, RAFT_IO_TIMEOUT_NOW, 1);
	int64_t t0 = sl_sim_now_ms(s);
	cr_assert_eq(sl_sim_transfer(s, leader, target, on_transfer, &x), SL_OK);
	cr_assert_eq(sl_sim_run(s, 6000), 0, "%s", sl_sim_violation(s));
	cr_assert_eq(x.calls, 0,
		     "the transfer ended (status %d, %s) %" PRId64 " ms after it began, while the target "
		     "could not catch up",
		     x.status, sl_err_name(x.status), x.at_ms - t0);
	cr_assert(sl_sim_is_leader(s, leader));

	/* The target comes back, catches up; the first TimeoutNow is lost. */
	sl_sim_heal(s);
	int rv = sl_sim_run_until(s, 6000, transfer_done, &x);
	cr_assert_geq(rv, 0, "%s", sl_sim_violation(s));
	cr_assert_eq(x.calls, 1, "no transfer callback within %" PRId64 " ms", sl_sim_now_ms(s) - t0);
	cr_assert_eq(x.status, SL_OK, "transfer status %d (%s)", x.status, sl_err_name(x.status));
	cr_assert(sl_sim_is_leader(s, target), "the transfer reported SL_OK but n%d does not lead (n%d does)",
		  target, sl_sim_leader(s));
	cr_assert_leq(x.at_ms - t0, 10 * 1000, "SL_OK after %" PRId64 " ms, past 10 election timeouts",
		      x.at_ms - t0);
	struct sl_sim_stats st;
	sl_sim_stats(s, &st);
	cr_assert_eq(st.scripted_drops, 1, "the first TimeoutNow was not dropped: nothing was retried");

	/* The new leader serves: one more produce goes through everywhere. */
	cr_assert_eq(sl_sim_converge(s, 10000), 0, "%s", sl_sim_violation(s));
	sl_sim_run(s, 200);
	cr_assert_eq(x.calls, 1, "the transfer callback fired %d times", x.calls);
	cr_assert_eq(sl_sim_violation(s), NULL);
	sl_sim_free(s);
}
