/* The group coordinator's assignors (broker/assign.h): balance,
 * stickiness, minimal movement over random joins and leaves, never two
 * owners, subscriptions respected, Kafka's ranges. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "errors.h"

TestSuite(assign, .timeout = 30);

#define MAXM 32
#define MAXP 256

/* A group: members with ids, each subscribed to every topic given. */
struct group {
	size_t n;
	char ids[MAXM][16];
	uint32_t topics[MAXM][4];
	size_t ntopics[MAXM];
	struct sl_assign_tp owned[MAXM][MAXP];
	size_t nowned[MAXM];
	struct sl_assign_member m[MAXM];
};

static void add_member(struct group *g, const char *id, const uint32_t *topics, size_t nt)
{
	size_t i = g->n++;
	snprintf(g->ids[i], sizeof(g->ids[i]), "%s", id);
	memcpy(g->topics[i], topics, nt * sizeof(*topics));
	g->ntopics[i] = nt;
	g->nowned[i] = 0;
}

static void remove_member(struct group *g, size_t i)
{
	g->n--;
	memmove(g->ids[i], g->ids[i + 1], (g->n - i) * sizeof(g->ids[0]));
	memmove(g->topics[i], g->topics[i + 1], (g->n - i) * sizeof(g->topics[0]));
	memmove(&g->ntopics[i], &g->ntopics[i + 1], (g->n - i) * sizeof(g->ntopics[0]));
	memmove(g->owned[i], g->owned[i + 1], (g->n - i) * sizeof(g->owned[0]));
	memmove(&g->nowned[i], &g->nowned[i + 1], (g->n - i) * sizeof(g->nowned[0]));
}

/* Runs the assignor; checks that every partition of a subscribed topic
 * has one owner, subscribed to it; stores the result as what each member
 * owns; returns how many partitions changed owner among the members that
 * were there before (by id). */
static size_t run(struct group *g, int assignor, const uint32_t *parts, size_t nt,
		  struct sl_assign_result *r)
{
	for (size_t i = 0; i < g->n; i++)
		g->m[i] = (struct sl_assign_member){ .id = g->ids[i], .topics = g->topics[i],
						     .ntopics = g->ntopics[i],
						     .owned = g->owned[i], .nowned = g->nowned[i] };
	cr_assert_eq(sl_assign(assignor, parts, nt, g->m, g->n, r), SL_OK);
	size_t moved = 0;
	for (uint32_t t = 0, k = 0; t < nt; t++) {
		bool wanted = false;
		for (size_t i = 0; i < g->n; i++)
			for (size_t j = 0; j < g->ntopics[i]; j++)
				wanted |= g->topics[i][j] == t;
		for (uint32_t p = 0; p < parts[t]; p++, k++) {
			int32_t o = r->owner[k];
			if (!wanted) {
				cr_assert_eq(o, -1, "t%u/%u owned with no subscriber", t, p);
				continue;
			}
			cr_assert(o >= 0 && (size_t)o < g->n, "t%u/%u has no owner", t, p);
			bool sub = false;
			for (size_t j = 0; j < g->ntopics[o]; j++)
				sub |= g->topics[o][j] == t;
			cr_assert(sub, "t%u/%u went to %s, not subscribed", t, p, g->ids[o]);
			/* Who owned it before (among members still here)? */
			for (size_t i = 0; i < g->n; i++)
				for (size_t j = 0; j < g->nowned[i]; j++)
					if (g->owned[i][j].topic == t && g->owned[i][j].partition == p &&
					    (int32_t)i != o)
						moved++;
		}
	}
	for (size_t i = 0; i < g->n; i++)
		g->nowned[i] = 0;
	for (uint32_t t = 0, k = 0; t < nt; t++)
		for (uint32_t p = 0; p < parts[t]; p++, k++)
			if (r->owner[k] >= 0) {
				size_t o = (size_t)r->owner[k];
				g->owned[o][g->nowned[o]++] = (struct sl_assign_tp){ t, p };
			}
	sl_assign_result_free(r);
	return moved;
}

static size_t spread(const struct group *g)
{
	size_t lo = SIZE_MAX, hi = 0;
	for (size_t i = 0; i < g->n; i++) {
		lo = g->nowned[i] < lo ? g->nowned[i] : lo;
		hi = g->nowned[i] > hi ? g->nowned[i] : hi;
	}
	return g->n ? hi - lo : 0;
}

Test(assign, uniform_is_balanced_for_every_size)
{
	static struct group g;
	struct sl_assign_result r;
	const uint32_t t0[] = { 0, 1 };
	for (uint32_t p0 = 0; p0 <= 20; p0++)
		for (uint32_t p1 = 0; p1 <= 7; p1 += 7)
			for (size_t n = 1; n <= 9; n++) {
				memset(&g, 0, sizeof(g));
				for (size_t i = 0; i < n; i++) {
					char id[16];
					snprintf(id, sizeof(id), "m%zu", i);
					add_member(&g, id, t0, 2);
				}
				const uint32_t parts[] = { p0, p1 };
				run(&g, SL_ASSIGN_UNIFORM, parts, 2, &r);
				cr_assert_leq(spread(&g), 1, "%u+%u partitions over %zu members", p0,
					      p1, n);
				/* The same members again: nothing moves. */
				cr_assert_eq(run(&g, SL_ASSIGN_UNIFORM, parts, 2, &r), 0);
			}
}

Test(assign, joins_and_leaves_move_only_what_balance_needs)
{
	static struct group g;
	struct sl_assign_result r;
	const uint32_t parts[] = { 60, 36 };
	const uint32_t both[] = { 0, 1 };
	unsigned seed = 42;
	int next_id = 0;
	memset(&g, 0, sizeof(g));
	for (int step = 0; step < 300; step++) {
		bool join = g.n == 0 || (g.n < MAXM && rand_r(&seed) % 2 == 0);
		size_t before = g.n;
		if (join) {
			char id[16];
			snprintf(id, sizeof(id), "m%03d", next_id++);
			add_member(&g, id, both, 2);
		} else {
			remove_member(&g, (size_t)rand_r(&seed) % g.n);
		}
		size_t moved = run(&g, SL_ASSIGN_UNIFORM, parts, 2, &r);
		cr_assert_leq(spread(&g), 1, "step %d: spread %zu over %zu members", step,
			      spread(&g), g.n);
		/* A join takes its share from the others; a leave's partitions
		 * go to the others: at most one share moves between members
		 * that stay (plus one for rounding). */
		size_t share = g.n > 0 ? (96 + g.n - 1) / g.n : 0;
		cr_assert_leq(moved, join ? share + 1 : 1, "step %d (%s, %zu -> %zu members): %zu moved",
			      step, join ? "join" : "leave", before, g.n, moved);
	}
}

Test(assign, partitions_go_only_to_subscribers)
{
	static struct group g;
	struct sl_assign_result r;
	memset(&g, 0, sizeof(g));
	const uint32_t only0[] = { 0 }, only1[] = { 1 }, both[] = { 0, 1 };
	add_member(&g, "a", only0, 1);
	add_member(&g, "b", both, 2);
	add_member(&g, "c", only1, 1);
	const uint32_t parts[] = { 6, 6, 4 }; /* topic 2: nobody's */
	run(&g, SL_ASSIGN_UNIFORM, parts, 3, &r); /* checks ownership itself */
	cr_assert_eq(g.nowned[0] + g.nowned[1] + g.nowned[2], 12);
	cr_assert_leq(spread(&g), 1);
	run(&g, SL_ASSIGN_RANGE, parts, 3, &r);
	cr_assert_eq(g.nowned[0] + g.nowned[1] + g.nowned[2], 12);
}

Test(assign, a_partition_claimed_twice_keeps_one_owner)
{
	static struct group g;
	struct sl_assign_result r;
	memset(&g, 0, sizeof(g));
	const uint32_t t[] = { 0 };
	add_member(&g, "a", t, 1);
	add_member(&g, "b", t, 1);
	/* Stale views: both claim partition 0; b claims one beyond the
	 * topic's end. */
	g.owned[0][0] = (struct sl_assign_tp){ 0, 0 };
	g.nowned[0] = 1;
	g.owned[1][0] = (struct sl_assign_tp){ 0, 0 };
	g.owned[1][1] = (struct sl_assign_tp){ 0, 9 };
	g.nowned[1] = 2;
	const uint32_t parts[] = { 4 };
	run(&g, SL_ASSIGN_UNIFORM, parts, 1, &r);
	cr_assert_eq(g.nowned[0], 2);
	cr_assert_eq(g.nowned[1], 2);
	cr_assert_eq(g.owned[0][0].partition, 0, "the first claim, by id, holds");
}

Test(assign, range_gives_contiguous_ranges_in_id_order)
{
	static struct group g;
	struct sl_assign_result r;
	memset(&g, 0, sizeof(g));
	const uint32_t t[] = { 0 };
	add_member(&g, "c", t, 1);
	add_member(&g, "a", t, 1);
	add_member(&g, "b", t, 1);
	const uint32_t parts[] = { 7 };
	struct sl_assign_member m[3];
	for (size_t i = 0; i < 3; i++)
		m[i] = (struct sl_assign_member){ .id = g.ids[i], .topics = t, .ntopics = 1 };
	cr_assert_eq(sl_assign(SL_ASSIGN_RANGE, parts, 1, m, 3, &r), SL_OK);
	/* a (index 1): 0-2; b (2): 3-4; c (0): 5-6. */
	const int32_t want[] = { 1, 1, 1, 2, 2, 0, 0 };
	for (size_t k = 0; k < 7; k++)
		cr_assert_eq(r.owner[k], want[k], "partition %zu", k);
	sl_assign_result_free(&r);
}

Test(assign, refuses_what_it_cannot_do)
{
	struct sl_assign_result r;
	const uint32_t bad[] = { 3 };
	struct sl_assign_member m = { .id = "a", .topics = bad, .ntopics = 1 };
	const uint32_t parts[] = { 2 };
	cr_assert_eq(sl_assign(SL_ASSIGN_UNIFORM, parts, 1, &m, 1, &r), SL_EINVALID_ARGUMENT);
	cr_assert_eq(sl_assign(7, parts, 1, NULL, 0, &r), SL_EINVALID_ARGUMENT);
	/* No members: nobody owns anything. */
	cr_assert_eq(sl_assign(SL_ASSIGN_UNIFORM, parts, 1, NULL, 0, &r), SL_OK);
	cr_assert_eq(r.n, 2);
	cr_assert_eq(r.owner[0], -1);
	sl_assign_result_free(&r);
	cr_assert_eq(sl_assign_flat(parts, 0, 1), 1);
}
