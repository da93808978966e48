/* The node-wide term/vote store (raft/rmeta.h) on the simulated disk:
 * group commit, reopen, torn tails, damage, failed flushes, compaction, a
 * crash after every disk operation. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "qenv.h"
#include "rmeta.h"
#include "simdisk.h"

#define PATH "/n/meta"

static struct sl_qenv env;
static sim_disk *sd;
static sl_vfs *vfs;
static struct sl_rmeta *m;

static void setup(void)
{
	sl_qenv_init(&env, 0, 7);
	sd = sim_new();
	vfs = sim_vfs(sd);
	cr_assert_eq(vfs->mkdir(vfs, "/n", 0755), 0);
	cr_assert_eq(vfs->fsync_dir(vfs, "/"), 0);
	m = NULL;
}

static bool closed;

static void on_closed(void *arg)
{
	(void)arg;
	closed = true;
}

static void close_store(void)
{
	if (m == NULL)
		return;
	closed = false;
	sl_rmeta_close(m, on_closed, NULL);
	cr_assert(!closed, "the close callback fired inside the call");
	sl_qenv_pump(&env);
	cr_assert(closed);
	m = NULL;
}

static void teardown(void)
{
	close_store();
	sim_free(sd);
}

TestSuite(rmeta, .init = setup, .fini = teardown, .timeout = 60);

static void open_store(void)
{
	char errmsg[SL_ERRMSG_SIZE] = "";
	int rv = sl_rmeta_open(PATH, vfs, &env.base, &m, errmsg);
	cr_assert_eq(rv, SL_OK, "open: %s", errmsg);
}

static uint64_t put(uint32_t group, uint64_t term, uint64_t vote)
{
	uint64_t seq;
	cr_assert_eq(sl_rmeta_put(m, group, term, vote, &seq), SL_OK);
	return seq;
}

static void expect(uint32_t group, uint64_t term, uint64_t vote)
{
	uint64_t t, v, seq;
	sl_rmeta_get(m, group, &t, &v, &seq);
	cr_assert_eq(t, term, "group %u: term %llu, expected %llu", group, (unsigned long long)t,
		     (unsigned long long)term);
	cr_assert_eq(v, vote, "group %u: vote %llu, expected %llu", group, (unsigned long long)v,
		     (unsigned long long)vote);
}

/* Closes and reopens from what the disk holds durably. */
static void crash_and_reopen(void)
{
	sim_crash_after(sd, 0);
	close_store();
	sim_crash(sd);
	sim_crash_after(sd, -1);
	open_store();
}

struct waiter {
	struct sl_rmeta_waiter w;
	int fired, status;
};

static void on_ready(struct sl_rmeta_waiter *w, int status)
{
	struct waiter *x = (struct waiter *)w;
	x->fired++;
	x->status = status;
}

Test(rmeta, records_of_one_turn_share_one_sync_and_survive_a_crash)
{
	open_store();
	struct waiter w[100];
	for (uint32_t g = 0; g < 100; g++) {
		uint64_t seq = put(g + 1, 5, g % 3);
		cr_assert(!sl_rmeta_durable(m, seq));
		w[g] = (struct waiter){ .w.ready = on_ready };
		sl_rmeta_wait(m, &w[g].w, seq);
	}
	expect(7, 5, 6 % 3); /* the newest, durable or not */
	cr_assert_eq(w[0].fired, 0, "a waiter fired inside a call");
	sl_qenv_pump(&env);
	struct sl_rmeta_stats st;
	sl_rmeta_get_stats(m, &st);
	cr_assert_eq(st.flushes, 1, "%llu flushes for one turn's records",
		     (unsigned long long)st.flushes);
	cr_assert_eq(st.records, 100);
	cr_assert_eq(st.groups, 100);
	for (int g = 0; g < 100; g++)
		cr_assert(w[g].fired == 1 && w[g].status == SL_OK);
	crash_and_reopen();
	for (uint32_t g = 0; g < 100; g++)
		expect(g + 1, 5, g % 3);
	expect(1000, 0, 0);
}

Test(rmeta, a_record_not_flushed_is_lost_in_a_crash_and_the_newest_wins)
{
	open_store();
	put(1, 3, 2);
	sl_qenv_pump(&env);
	put(1, 4, 0);
	put(1, 4, 3);
	sl_qenv_pump(&env);
	put(1, 9, 9); /* never flushed */
	expect(1, 9, 9);
	crash_and_reopen();
	expect(1, 4, 3);
}

Test(rmeta, a_torn_last_batch_is_cut_and_older_batches_kept)
{
	open_store();
	put(1, 2, 1);
	put(2, 2, 2);
	sl_qenv_pump(&env);
	uint64_t len;
	free(sim_read_file(sd, PATH, &len));
	cr_assert_eq(len, 16 + 2 * 20);
	for (uint32_t g = 1; g <= 3; g++)
		put(g, 7, 3);
	/* The flush's write lands partly, then the machine stops. */
	sim_crash_after(sd, 1);
	sl_qenv_pump(&env);
	close_store();
	sim_crash_tear(sd, 30);
	sim_crash_after(sd, -1);
	open_store();
	expect(1, 2, 1);
	expect(2, 2, 2);
	expect(3, 0, 0);
	free(sim_read_file(sd, PATH, &len));
	cr_assert_eq(len, 16 + 2 * 20, "the torn tail was not cut: %llu bytes", (unsigned long long)len);
	/* And records go on after the cut. */
	put(3, 8, 1);
	sl_qenv_pump(&env);
	crash_and_reopen();
	expect(3, 8, 1);
	expect(1, 2, 1);
}

Test(rmeta, damage_before_a_valid_batch_fails_the_open)
{
	open_store();
	put(1, 2, 1);
	sl_qenv_pump(&env);
	put(1, 3, 0);
	sl_qenv_pump(&env);
	close_store();
	/* A record of the first batch rots: forgetting the batch would
	 * forget a vote the second one does not repeat. */
	cr_assert_eq(sim_corrupt_byte(sd, PATH, 20, 0x40), 0);
	char errmsg[SL_ERRMSG_SIZE] = "";
	cr_assert_eq(sl_rmeta_open(PATH, vfs, &env.base, &m, errmsg), SL_ELOG_CORRUPT);
	cr_assert_null(m);
	cr_assert(strstr(errmsg, "damaged batch at byte 0") != NULL, "%s", errmsg);
	uint64_t len;
	free(sim_read_file(sd, PATH, &len));
	cr_assert_eq(len, 2 * (16 + 20), "a failed open changed the file");
}

Test(rmeta, a_failed_flush_fails_its_waiters_and_falls_back_to_what_is_durable)
{
	open_store();
	put(1, 2, 1);
	put(2, 2, 0);
	sl_qenv_pump(&env);
	struct waiter w = { .w.ready = on_ready };
	sl_rmeta_wait(m, &w.w, put(1, 3, 3));
	sim_fail_after(sd, 0, EIO);
	sl_qenv_pump(&env);
	cr_assert_eq(w.fired, 1);
	cr_assert_eq(w.status, SL_ESTORAGE);
	expect(1, 2, 1); /* the record that failed is forgotten */
	expect(2, 2, 0);
	struct sl_rmeta_stats st;
	sl_rmeta_get_stats(m, &st);
	cr_assert_eq(st.errors, 1);
	/* The disk comes back: the next record rewrites the whole file. */
	sim_fail_after(sd, -1, 0);
	w = (struct waiter){ .w.ready = on_ready };
	sl_rmeta_wait(m, &w.w, put(2, 4, 2));
	sl_qenv_pump(&env);
	cr_assert(w.fired == 1 && w.status == SL_OK);
	sl_rmeta_get_stats(m, &st);
	cr_assert_eq(st.rewrites, 1);
	crash_and_reopen();
	expect(1, 2, 1);
	expect(2, 4, 2);
}

Test(rmeta, the_file_is_rewritten_when_it_outgrows_its_content)
{
	open_store();
	/* 10 groups, each re-elected 1,000 times, one flush per turn. */
	for (uint64_t term = 1; term <= 1000; term++) {
		for (uint32_t g = 1; g <= 10; g++)
			put(g, term, g);
		sl_qenv_pump(&env);
	}
	put(5, 0, 0); /* group 5 deleted */
	sl_qenv_pump(&env);
	struct sl_rmeta_stats st;
	sl_rmeta_get_stats(m, &st);
	cr_assert_gt(st.rewrites, 0);
	cr_assert_leq(st.file_bytes, 64 * 1024 + 16 + 10 * 20, "%llu bytes",
		      (unsigned long long)st.file_bytes);
	cr_assert_eq(st.groups, 9);
	crash_and_reopen();
	for (uint32_t g = 1; g <= 10; g++)
		expect(g, g == 5 ? 0 : 1000, g == 5 ? 0 : g);
	cr_assert_eq(sim_exists(sd, PATH ".tmp"), 0);
}

Test(rmeta, close_waits_for_the_flush_in_flight)
{
	open_store();
	put(1, 2, 1);
	sl_qenv_step(&env); /* the turn's kick: the flush is now queued */
	close_store();
	open_store();
	expect(1, 2, 1);
}

/* A crash after every disk operation of a run that rewrites the file:
 * whatever was reported durable is there after reopening, and every group
 * holds one of the values it was given, never anything else. */
#define CG 30  /* groups */
#define CT 150 /* terms: about 100 flushes fill 64 KiB, then a rewrite */

Test(rmeta, a_crash_at_every_step_keeps_every_acknowledged_record)
{
	uint64_t total = 0, rewrites = 0;
	for (int64_t k = 0;; k++) {
		sim_free(sd);
		sd = sim_new();
		vfs = sim_vfs(sd);
		cr_assert_eq(vfs->mkdir(vfs, "/n", 0755), 0);
		cr_assert_eq(vfs->fsync_dir(vfs, "/"), 0);
		sl_qenv_init(&env, 0, 7);
		open_store();
		uint64_t ops0 = sim_ops(sd);
		sim_crash_after(sd, k);
		uint64_t acked[CG + 1] = { 0 }; /* per group: the newest term acknowledged */
		struct waiter w[CG + 1];
		for (uint64_t term = 1; term <= CT; term++) {
			for (uint32_t g = 1; g <= CG; g++) {
				w[g] = (struct waiter){ .w.ready = on_ready };
				sl_rmeta_wait(m, &w[g].w, put(g, term, g));
			}
			sl_qenv_pump(&env);
			for (uint32_t g = 1; g <= CG; g++)
				if (w[g].fired && w[g].status == SL_OK)
					acked[g] = term;
		}
		struct sl_rmeta_stats st;
		sl_rmeta_get_stats(m, &st);
		if (k == 0)
			rewrites = st.rewrites; /* k = 0 fails everything: counted below */
		else if (st.rewrites > rewrites)
			rewrites = st.rewrites;
		total = sim_ops(sd) - ops0;
		close_store();
		sim_crash(sd);
		sim_crash_after(sd, -1);
		open_store();
		for (uint32_t g = 1; g <= CG; g++) {
			uint64_t t, v, seq;
			sl_rmeta_get(m, g, &t, &v, &seq);
			cr_assert_geq(t, acked[g], "crash after %lld ops: group %u at term %llu, %llu acknowledged",
				      (long long)k, g, (unsigned long long)t, (unsigned long long)acked[g]);
			cr_assert(t <= CT && (t == 0 ? v == 0 : v == g),
				  "crash after %lld ops: group %u holds %llu/%llu", (long long)k, g,
				  (unsigned long long)t, (unsigned long long)v);
		}
		close_store();
		if ((uint64_t)k > total)
			break;
	}
	cr_assert_gt(total, 2 * CT, "the run did only %llu disk operations", (unsigned long long)total);
	cr_assert_gt(rewrites, 0, "no run rewrote the file");
}
