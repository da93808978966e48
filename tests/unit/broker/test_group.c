/* One consumer group's membership and assignment (broker/group.h):
 * joining, heartbeats, revocation before reassignment (never two
 * owners), leaving, session timeouts, static members, fencing, commits. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "group.h"

TestSuite(group, .timeout = 30);

static uint32_t partitions_of(void *arg, const char *topic)
{
	uint32_t *counts = arg; /* orders, audit, new */
	if (strcmp(topic, "orders") == 0)
		return counts[0];
	if (strcmp(topic, "audit") == 0)
		return counts[1];
	if (strcmp(topic, "new") == 0)
		return counts[2];
	return 0;
}

/* A client of the group: its id, epoch and what it owns (by partition
 * of "orders", as a bitmap). */
struct client {
	char id[80];
	int32_t epoch;
	bool owns[64];
	bool alive;
	bool zombie;       /* killed: silent, and still reading until the group drops it */
	int64_t last_beat;
};

static const char *const orders[] = { "orders" };

/* One heartbeat: reports what c owns, takes the answer as what it owns
 * now (a real client stops reading what it is not given). */
static void beat(struct sl_group *g, struct client *c, int64_t now)
{
	struct sl_group_tp owned[64];
	size_t n = 0;
	for (uint32_t p = 0; p < 64; p++)
		if (c->owns[p])
			owned[n++] = (struct sl_group_tp){ "orders", p };
	struct sl_group_hb hb = { .member_id = c->id, .member_epoch = c->epoch,
				  .topics = orders, .ntopics = 1, .has_topics = c->id[0] == '\0',
				  .owned = owned, .nowned = n, .has_owned = true };
	struct sl_group_answer a;
	sl_group_heartbeat(g, &hb, now, &a);
	cr_assert_eq(a.err, SL_OK, "%s", a.errmsg);
	c->last_beat = now;
	snprintf(c->id, sizeof(c->id), "%s", a.member_id);
	c->epoch = a.member_epoch;
	memset(c->owns, 0, sizeof(c->owns));
	for (size_t i = 0; i < a.nassignment; i++) {
		cr_assert_str_eq(a.assignment[i].topic, "orders");
		c->owns[a.assignment[i].partition] = true;
	}
}

/* No partition is owned by two live clients. */
static void no_two_owners(struct client *cs, size_t n)
{
	for (uint32_t p = 0; p < 64; p++) {
		int owners = 0;
		for (size_t i = 0; i < n; i++)
			owners += cs[i].alive && cs[i].owns[p];
		cr_assert_leq(owners, 1, "partition %u has %d owners", p, owners);
	}
}

static int owned_count(const struct client *c)
{
	int k = 0;
	for (uint32_t p = 0; p < 64; p++)
		k += c->owns[p];
	return k;
}

Test(group, three_members_share_twelve_partitions_and_a_fourth_takes_its_share_safely)
{
	uint32_t counts[] = { 12, 0, 0 };
	struct sl_group_config cfg = { .partitions = partitions_of, .arg = counts,
				       .session_timeout_ms = 1000 };
	struct sl_group *g = sl_group_new("g", &cfg);
	struct client cs[4] = { { .alive = true }, { .alive = true }, { .alive = true } };
	int64_t now = 0;
	/* Rounds of heartbeats until nothing changes. */
	for (int round = 0; round < 5; round++, now += 100)
		for (size_t i = 0; i < 3; i++) {
			beat(g, &cs[i], now);
			no_two_owners(cs, 3);
		}
	int total = 0;
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(owned_count(&cs[i]), 4);
		cr_assert_eq(cs[i].epoch, sl_group_epoch(g));
		total += owned_count(&cs[i]);
	}
	cr_assert_eq(total, 12);

	/* A fourth joins: three partitions move, each revoked first. */
	cs[3].alive = true;
	bool before[3][64];
	for (size_t i = 0; i < 3; i++)
		memcpy(before[i], cs[i].owns, sizeof(before[i]));
	for (int round = 0; round < 5; round++, now += 100)
		for (size_t i = 0; i < 4; i++) {
			beat(g, &cs[i], now);
			no_two_owners(cs, 4);
		}
	int moved = 0;
	for (size_t i = 0; i < 4; i++)
		cr_assert_eq(owned_count(&cs[i]), 3, "member %zu owns %d", i, owned_count(&cs[i]));
	for (size_t i = 0; i < 3; i++)
		for (uint32_t p = 0; p < 12; p++)
			moved += before[i][p] && !cs[i].owns[p];
	cr_assert_eq(moved, 3, "only the new member's share moved");
	sl_group_free(g);
}

Test(group, a_silent_member_expires_and_its_partitions_move)
{
	uint32_t counts[] = { 6, 0, 0 };
	struct sl_group_config cfg = { .partitions = partitions_of, .arg = counts,
				       .session_timeout_ms = 1000 };
	struct sl_group *g = sl_group_new("g", &cfg);
	struct client cs[2] = { { .alive = true }, { .alive = true } };
	for (int64_t now = 0; now < 500; now += 100)
		for (size_t i = 0; i < 2; i++)
			beat(g, &cs[i], now);
	cr_assert_eq(owned_count(&cs[0]), 3);
	/* cs[1] goes silent (killed): after the session timeout it is gone. */
	cs[1].alive = false;
	cr_assert_eq(sl_group_expire(g, 1000), 0);
	beat(g, &cs[0], 1000);
	cr_assert_eq(sl_group_expire(g, 1501), 1);
	cr_assert_eq(sl_group_members(g), 1);
	beat(g, &cs[0], 1600);
	cr_assert_eq(owned_count(&cs[0]), 6);
	/* The dead member's id is unknown now. */
	struct sl_group_hb hb = { .member_id = cs[1].id, .member_epoch = cs[1].epoch };
	struct sl_group_answer a;
	sl_group_heartbeat(g, &hb, 1700, &a);
	cr_assert_eq(a.err, SL_EUNKNOWN_MEMBER_ID);
	sl_group_free(g);
}

Test(group, leaving_frees_at_once_and_a_static_member_keeps_its_place)
{
	uint32_t counts[] = { 4, 0, 0 };
	struct sl_group_config cfg = { .partitions = partitions_of, .arg = counts,
				       .session_timeout_ms = 1000 };
	struct sl_group *g = sl_group_new("g", &cfg);
	struct sl_group_answer a;
	/* A static member and a dynamic one. */
	struct sl_group_hb join = { .instance_id = "host-1", .topics = orders, .ntopics = 1,
				    .has_topics = true };
	sl_group_heartbeat(g, &join, 0, &a);
	cr_assert_eq(a.err, SL_OK);
	char sid[80];
	snprintf(sid, sizeof(sid), "%s", a.member_id);
	struct client d = { .alive = true };
	beat(g, &d, 0);
	/* The static member reports what it owns: what it was last given
	 * (names of its own: the group's are valid until its next call). */
	struct sl_group_tp held[8];
	size_t nheld = a.nassignment;
	for (size_t k = 0; k < nheld; k++)
		held[k] = (struct sl_group_tp){ "orders", a.assignment[k].partition };
	struct sl_group_hb again = { .member_id = sid, .member_epoch = a.member_epoch,
				     .owned = held, .has_owned = true };
	for (int64_t now = 100; now < 400; now += 100) {
		again.nowned = nheld;
		sl_group_heartbeat(g, &again, now, &a);
		cr_assert_eq(a.err, SL_OK, "%s", a.errmsg);
		again.member_epoch = a.member_epoch;
		nheld = a.nassignment;
		for (size_t k = 0; k < nheld; k++)
			held[k] = (struct sl_group_tp){ "orders", a.assignment[k].partition };
		beat(g, &d, now);
	}
	cr_assert_eq(owned_count(&d), 2);
	/* The same instance id cannot join twice while it is live. */
	sl_group_heartbeat(g, &join, 400, &a);
	cr_assert_eq(a.err, SL_EUNRELEASED_INSTANCE_ID);
	/* The static member leaves for now: its partitions wait for it. */
	struct sl_group_hb away = { .member_id = sid, .member_epoch = -2 };
	sl_group_heartbeat(g, &away, 500, &a);
	cr_assert_eq(a.err, SL_OK);
	beat(g, &d, 600);
	cr_assert_eq(owned_count(&d), 2, "nothing moved while the static member is away");
	/* It comes back within the session timeout, with a new member id,
	 * and gets its partitions again. */
	sl_group_heartbeat(g, &join, 900, &a);
	cr_assert_eq(a.err, SL_OK, "%s", a.errmsg);
	cr_assert_str_neq(a.member_id, sid);
	cr_assert_eq(a.nassignment, 2);
	cr_assert_eq(sl_group_members(g), 2);
	/* The dynamic member leaves: everything goes to the static one. */
	struct sl_group_hb leave = { .member_id = d.id, .member_epoch = -1 };
	sl_group_heartbeat(g, &leave, 1000, &a);
	cr_assert_eq(sl_group_members(g), 1);
	struct sl_group_hb s2 = { .member_id = sl_group_member_id(g, 0), .member_epoch = 0 };
	const struct sl_group_tp *tps;
	s2.member_epoch = (int32_t)sl_group_epoch(g) - 1;
	sl_group_heartbeat(g, &s2, 1100, &a);
	cr_assert_eq(a.err, SL_OK, "%s", a.errmsg);
	cr_assert_eq(a.nassignment, 4);
	cr_assert_eq(sl_group_member_assignment(g, 0, &tps), 4);
	sl_group_free(g);
}

Test(group, commits_are_fenced_by_member_and_epoch)
{
	uint32_t counts[] = { 2, 0, 0 };
	struct sl_group_config cfg = { .partitions = partitions_of, .arg = counts };
	struct sl_group *g = sl_group_new("g", &cfg);
	struct client c = { .alive = true };
	beat(g, &c, 0);
	cr_assert_eq(sl_group_check_commit(g, c.id, c.epoch, "orders", 1), SL_OK);
	cr_assert_eq(sl_group_check_commit(g, c.id, c.epoch + 1, "orders", 1),
		     SL_ESTALE_MEMBER_EPOCH);
	cr_assert_eq(sl_group_check_commit(g, "nobody", c.epoch, "orders", 1),
		     SL_EUNKNOWN_MEMBER_ID);
	cr_assert_eq(sl_group_check_commit(g, c.id, c.epoch, "orders", 2), SL_ENOT_ASSIGNED);
	cr_assert_eq(sl_group_check_commit(g, c.id, c.epoch, "audit", 0), SL_ENOT_ASSIGNED);
	/* An epoch it was never given fences its heartbeat. */
	struct sl_group_hb hb = { .member_id = c.id, .member_epoch = c.epoch + 5 };
	struct sl_group_answer a;
	sl_group_heartbeat(g, &hb, 10, &a);
	cr_assert_eq(a.err, SL_EFENCED_MEMBER_EPOCH);
	/* A join needs a subscription. */
	struct sl_group_hb bad = { .member_epoch = 0 };
	sl_group_heartbeat(g, &bad, 10, &a);
	cr_assert_eq(a.err, SL_EINVALID_REQUEST);
	sl_group_free(g);
}

Test(group, new_partitions_and_subscriptions_are_picked_up)
{
	uint32_t counts[] = { 2, 2, 0 };
	struct sl_group_config cfg = { .partitions = partitions_of, .arg = counts };
	struct sl_group *g = sl_group_new("g", &cfg);
	struct sl_group_answer a;
	struct sl_group_hb j = { .topics = orders, .ntopics = 1, .has_topics = true };
	sl_group_heartbeat(g, &j, 0, &a);
	cr_assert_eq(a.nassignment, 2);
	char id[80];
	snprintf(id, sizeof(id), "%s", a.member_id);
	int32_t epoch = a.member_epoch;
	/* orders grows to 3 partitions. */
	counts[0] = 3;
	struct sl_group_hb hb = { .member_id = id, .member_epoch = epoch };
	sl_group_heartbeat(g, &hb, 10, &a);
	cr_assert_eq(a.nassignment, 3);
	cr_assert_gt(a.member_epoch, epoch);
	/* It subscribes to audit too. */
	const char *const both[] = { "orders", "audit", "orders" };
	hb.member_epoch = a.member_epoch;
	hb.topics = both;
	hb.ntopics = 3;
	hb.has_topics = true;
	sl_group_heartbeat(g, &hb, 20, &a);
	cr_assert_eq(a.err, SL_OK, "%s", a.errmsg);
	cr_assert_eq(a.nassignment, 5);
	sl_group_free(g);
}

/* Random joins, leaves, deaths and heartbeats in random order: at no
 * moment two clients own a partition, and once the group is quiet every
 * partition is owned, evenly. */
Test(group, random_churn_never_gives_a_partition_two_owners)
{
	enum { MAXC = 12, P = 24 };
	uint32_t counts[] = { P, 0, 0 };
	struct sl_group_config cfg = { .partitions = partitions_of, .arg = counts,
				       .session_timeout_ms = 1000 };
	struct sl_group *g = sl_group_new("g", &cfg);
	static struct client cs[MAXC];
	memset(cs, 0, sizeof(cs));
	unsigned seed = 7;
	int64_t now = 0;
	for (int step = 0; step < 3000; step++) {
		now += 10;
		size_t i = (size_t)rand_r(&seed) % MAXC;
		int what = rand_r(&seed) % 20;
		bool gone = !cs[i].zombie || now - cs[i].last_beat > 1000;
		if (!cs[i].alive && gone && what < 3) { /* joins (again) */
			memset(&cs[i], 0, sizeof(cs[i]));
			cs[i].alive = true;
			beat(g, &cs[i], now);
		} else if (cs[i].alive && what == 1) { /* leaves cleanly */
			struct sl_group_hb hb = { .member_id = cs[i].id, .member_epoch = -1 };
			struct sl_group_answer a;
			sl_group_heartbeat(g, &hb, now, &a);
			cs[i].alive = false;
		} else if (cs[i].alive && what == 2) { /* dies: silent from now on */
			cs[i].alive = false;
			cs[i].zombie = true;
		} else if (cs[i].alive) {
			beat(g, &cs[i], now);
		}
		sl_group_expire(g, now);
		/* A killed client may still be reading until the group drops it
		 * (session timeout after its last heartbeat): nobody else may
		 * own its partitions before then. */
		for (uint32_t p = 0; p < P; p++) {
			int owners = 0;
			for (size_t k = 0; k < MAXC; k++) {
				bool holds = cs[k].alive ||
					     (cs[k].zombie && now - cs[k].last_beat <= 1000);
				owners += holds && cs[k].owns[p];
			}
			cr_assert_leq(owners, 1, "step %d: partition %u has %d owners", step, p,
				      owners);
		}
	}
	/* Quiet: the living beat until stable. */
	size_t live = 0;
	for (size_t i = 0; i < MAXC; i++)
		live += cs[i].alive;
	if (live == 0) {
		cs[0] = (struct client){ .alive = true };
		live = 1;
	}
	for (int round = 0; round < 10; round++) {
		now += 2000; /* the dead expire */
		for (size_t i = 0; i < MAXC; i++)
			if (cs[i].alive)
				beat(g, &cs[i], now);
		sl_group_expire(g, now);
	}
	for (int round = 0; round < 5; round++) {
		now += 10;
		for (size_t i = 0; i < MAXC; i++)
			if (cs[i].alive)
				beat(g, &cs[i], now);
	}
	no_two_owners(cs, MAXC);
	int total = 0, lo = P, hi = 0;
	for (size_t i = 0; i < MAXC; i++) {
		if (!cs[i].alive)
			continue;
		int k = owned_count(&cs[i]);
		total += k;
		lo = k < lo ? k : lo;
		hi = k > hi ? k : hi;
	}
	cr_assert_eq(total, P, "%d of %d partitions owned", total, P);
	cr_assert_leq(hi - lo, 1);
	cr_assert_eq(sl_group_members(g), live);
	sl_group_free(g);
}

/* Java's String.hashCode over UTF-16, as Kafka places groups: values
 * computed with Java's rules (surrogate pairs for code points past
 * U+FFFF). */
Test(group, a_group_lands_on_the_partition_kafka_would_pick)
{
	cr_assert_eq(sl_group_partition("g", 16), 7);        /* 103 */
	cr_assert_eq(sl_group_partition("g", 4), 3);
	cr_assert_eq(sl_group_partition("group1", 16), 14);  /* -1237460590 */
	cr_assert_eq(sl_group_partition("payments-consumers", 16), 13);
	cr_assert_eq(sl_group_partition("z\xc3\xbcrich", 16), 2); /* zürich */
	cr_assert_eq(sl_group_partition("\xf0\x9f\x98\x80x", 16), 5); /* U+1F600, x */
	cr_assert_eq(sl_group_partition("", 16), 0);
	cr_assert_eq(sl_group_partition("anything", 0), 0);
	/* Bytes that are not UTF-8 still place the group, each on its own. */
	cr_assert_lt(sl_group_partition("\xff\xfe", 16), 16);
}

Test(group, a_group_comes_back_from_its_record_and_its_members_carry_on)
{
	uint32_t counts[] = { 12, 0, 0 };
	struct sl_group_config cfg = { .partitions = partitions_of, .arg = counts,
				       .session_timeout_ms = 1000 };
	struct sl_group *g = sl_group_new("g", &cfg);
	struct client cs[4] = { { .alive = true }, { .alive = true }, { .alive = true } };
	int64_t now = 0;
	for (int round = 0; round < 5; round++, now += 100)
		for (size_t i = 0; i < 3; i++)
			beat(g, &cs[i], now);
	/* Mid-move: a fourth joined, one round only (some partitions are
	 * withheld, not yet released). */
	cs[3].alive = true;
	for (size_t i = 0; i < 4; i++, now += 10)
		beat(g, &cs[i], now);
	uint64_t v = sl_group_version(g);
	cr_assert_gt(v, 0);
	uint8_t *rec;
	size_t len;
	cr_assert_eq(sl_group_export(g, &rec, &len), SL_OK);
	struct sl_group *h;
	char why[256];
	cr_assert_eq(sl_group_import("g", &cfg, rec, len, now, &h, why), SL_OK, "%s", why);
	cr_assert_eq(sl_group_epoch(h), sl_group_epoch(g));
	cr_assert_eq(sl_group_members(h), 4);
	for (size_t i = 0; i < 4; i++) {
		struct sl_group_member_info a, b;
		sl_group_member_info(g, i, &a);
		sl_group_member_info(h, i, &b);
		cr_assert_str_eq(a.id, b.id);
		cr_assert_eq(a.epoch, b.epoch);
		cr_assert_eq(b.ntopics, 1);
		cr_assert_str_eq(b.topics[0], "orders");
	}
	sl_group_free(g);
	/* The members heartbeat the new copy as if nothing happened: nobody
	 * is fenced, no partition ever has two owners, and it settles. */
	for (int round = 0; round < 6; round++, now += 100)
		for (size_t i = 0; i < 4; i++) {
			beat(h, &cs[i], now);
			no_two_owners(cs, 4);
		}
	for (size_t i = 0; i < 4; i++)
		cr_assert_eq(owned_count(&cs[i]), 3, "member %zu owns %d", i, owned_count(&cs[i]));
	cr_assert_str_eq(sl_group_state(h), "stable");
	sl_group_free(h);
	free(rec);
}

Test(group, a_damaged_record_is_refused_whole)
{
	uint32_t counts[] = { 8, 0, 0 };
	struct sl_group_config cfg = { .partitions = partitions_of, .arg = counts };
	struct sl_group *g = sl_group_new("g", &cfg);
	struct client cs[2] = { { .alive = true }, { .alive = true } };
	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < 2; i++)
			beat(g, &cs[i], round);
	uint8_t *rec;
	size_t len;
	cr_assert_eq(sl_group_export(g, &rec, &len), SL_OK);
	char why[256];
	struct sl_group *h;
	/* Every cut is refused. */
	for (size_t cut = 0; cut < len; cut++)
		cr_assert_eq(sl_group_import("g", &cfg, rec, cut, 0, &h, why), SL_EINVALID_RECORD,
			     "cut at %zu", cut);
	/* A trailing byte too. */
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, rec, len);
	longer[len] = 0;
	cr_assert_eq(sl_group_import("g", &cfg, longer, len + 1, 0, &h, why), SL_EINVALID_RECORD);
	/* Any one byte changed: refused, or a group that works. */
	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit++) {
			memcpy(longer, rec, len);
			longer[i] ^= (uint8_t)(1u << bit);
			int rv = sl_group_import("g", &cfg, longer, len, 0, &h, why);
			cr_assert(rv == SL_OK || rv == SL_EINVALID_RECORD);
			if (rv == SL_OK) {
				cr_assert_leq(sl_group_members(h), 2);
				sl_group_free(h);
			}
		}
	free(longer);
	free(rec);
	sl_group_free(g);
}

Test(group, a_members_last_answer_outlives_a_new_target)
{
	uint32_t counts[] = { 4, 2, 0 };
	struct sl_group_config cfg = { .partitions = partitions_of, .arg = counts };
	struct sl_group *g = sl_group_new("g", &cfg);
	struct client cs[2] = { { .alive = true }, { .alive = true } };
	beat(g, &cs[0], 0);
	/* The topics are computed again when another member joins, and when
	 * the subscriptions change: the first member's answer (it has not
	 * heartbeated since) still names its topics. */
	beat(g, &cs[1], 1);
	static const char *const both[] = { "orders", "audit" };
	struct sl_group_hb hb = { .member_id = cs[1].id, .member_epoch = cs[1].epoch,
				  .topics = both, .ntopics = 2, .has_topics = true };
	struct sl_group_answer a;
	sl_group_heartbeat(g, &hb, 2, &a);
	cr_assert_eq(a.err, SL_OK, "%s", a.errmsg);
	for (size_t i = 0; i < sl_group_members(g); i++) {
		struct sl_group_member_info mi;
		sl_group_member_info(g, i, &mi);
		for (size_t j = 0; j < mi.nassignment; j++)
			cr_assert(strcmp(mi.assignment[j].topic, "orders") == 0 ||
				  strcmp(mi.assignment[j].topic, "audit") == 0);
	}
	sl_group_free(g);
}
