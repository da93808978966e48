/* The controller's state machine (broker/meta.h): topics created and
 * deleted, placement balance and rack spread, refusals that change
 * nothing, leader reports, and snapshot/restore equivalence. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"

static struct sl_meta m;

static void setup(void)
{
	sl_meta_init(&m);
}

static void teardown(void)
{
	sl_meta_free(&m);
}

TestSuite(meta, .init = setup, .fini = teardown, .timeout = 60);

/* Applies an encoded command; returns the result's error. */
static int apply(uint8_t *buf, size_t len, struct sl_meta_result *res)
{
	struct sl_meta_result local;
	if (res == NULL)
		res = &local;
	int rv = sl_meta_apply(&m, buf, len, res);
	free(buf);
	cr_assert_eq(rv, SL_OK, "apply: %s", sl_err_name(rv));
	return res->err;
}

static void add_node(struct sl_meta *mm, uint64_t id, const char *rack)
{
	struct sl_meta_node n = { .id = id, .client_port = 9092, .peer_port = 9093, .alive = true };
	snprintf(n.uuid, sizeof(n.uuid), "00000000-0000-4000-8000-%012llu", (unsigned long long)id);
	snprintf(n.host, sizeof(n.host), "node-%llu", (unsigned long long)id);
	snprintf(n.rack, sizeof(n.rack), "%s", rack != NULL ? rack : "");
	uint8_t *buf;
	size_t len;
	cr_assert_eq(sl_meta_cmd_register_node(&n, &buf, &len), SL_OK);
	struct sl_meta_result res;
	cr_assert_eq(sl_meta_apply(mm, buf, len, &res), SL_OK);
	free(buf);
	cr_assert_eq(res.err, SL_OK, "%s", res.errmsg);
}

static int create(const char *name, uint32_t partitions, unsigned rf, struct sl_meta_result *res)
{
	uint8_t *buf;
	size_t len;
	cr_assert_eq(sl_meta_cmd_create_topic(name, partitions, rf, NULL, &buf, &len), SL_OK);
	return apply(buf, len, res);
}

static uint8_t *snap(const struct sl_meta *mm, size_t *len)
{
	uint8_t *buf;
	cr_assert_eq(sl_meta_snapshot(mm, &buf, len), SL_OK);
	return buf;
}

/* Replicas and preferred leaders per node id (index = id). */
static void load_of(unsigned *replicas, unsigned *leaders, size_t max_id)
{
	memset(replicas, 0, (max_id + 1) * sizeof(*replicas));
	memset(leaders, 0, (max_id + 1) * sizeof(*leaders));
	for (size_t t = 0; t < m.ntopics; t++)
		for (uint32_t p = 0; p < m.topics[t]->npartitions; p++) {
			const struct sl_meta_partition *pp = &m.topics[t]->parts[p];
			for (unsigned r = 0; r < pp->nreplicas; r++) {
				cr_assert_leq(pp->replicas[r], max_id);
				for (unsigned q = 0; q < r; q++)
					cr_assert_neq(pp->replicas[q], pp->replicas[r],
						      "two replicas of one partition on node %llu",
						      (unsigned long long)pp->replicas[r]);
				replicas[pp->replicas[r]]++;
				leaders[pp->replicas[r]] += r == 0;
			}
		}
}

Test(meta, a_topic_gets_groups_and_replicas_spread_evenly)
{
	for (uint64_t id = 1; id <= 5; id++)
		add_node(&m, id, NULL);
	struct sl_meta_result res;
	cr_assert_eq(create("orders", 50, 3, &res), SL_OK, "%s", res.errmsg);
	cr_assert_eq(res.topic_id, 1);
	const struct sl_meta_topic *t = sl_meta_topic(&m, "orders");
	cr_assert_not_null(t);
	cr_assert_eq(t->npartitions, 50);
	cr_assert_eq(t->rf, 3);
	for (uint32_t p = 0; p < 50; p++) {
		cr_assert_eq(t->parts[p].group, p + 1, "groups are allocated in order from 1");
		const struct sl_meta_topic *back;
		uint32_t bp;
		cr_assert(sl_meta_group(&m, t->parts[p].group, &back, &bp));
		cr_assert(back == t && bp == p);
	}
	unsigned replicas[6], leaders[6];
	load_of(replicas, leaders, 5);
	for (int id = 1; id <= 5; id++) {
		cr_assert_eq(replicas[id], 30, "node %d holds %u replicas", id, replicas[id]);
		cr_assert_eq(leaders[id], 10, "node %d leads %u", id, leaders[id]);
	}
	/* A second topic keeps the whole cluster balanced. */
	cr_assert_eq(create("payments", 7, 2, &res), SL_OK, "%s", res.errmsg);
	load_of(replicas, leaders, 5);
	unsigned lo = 1000, hi = 0;
	for (int id = 1; id <= 5; id++) {
		lo = replicas[id] < lo ? replicas[id] : lo;
		hi = replicas[id] > hi ? replicas[id] : hi;
	}
	cr_assert_leq(hi - lo, 1, "replicas per node range %u..%u", lo, hi);
	cr_assert_eq(sl_meta_topic(&m, "payments")->parts[0].group, 51);
}

Test(meta, replicas_spread_over_racks)
{
	const char *racks[] = { "a", "a", "b", "b", "c", "c" };
	for (uint64_t id = 1; id <= 6; id++)
		add_node(&m, id, racks[id - 1]);
	struct sl_meta_result res;
	cr_assert_eq(create("t", 60, 3, &res), SL_OK, "%s", res.errmsg);
	const struct sl_meta_topic *t = sl_meta_topic(&m, "t");
	for (uint32_t p = 0; p < 60; p++) {
		const struct sl_meta_partition *pp = &t->parts[p];
		bool seen[3] = { false };
		for (unsigned r = 0; r < 3; r++) {
			int rack = racks[pp->replicas[r] - 1][0] - 'a';
			cr_assert(!seen[rack], "partition %u has two replicas in rack %c", p, 'a' + rack);
			seen[rack] = true;
		}
	}
	unsigned replicas[7], leaders[7];
	load_of(replicas, leaders, 6);
	for (int id = 1; id <= 6; id++) {
		cr_assert_eq(replicas[id], 30, "node %d holds %u replicas", id, replicas[id]);
		cr_assert_eq(leaders[id], 10, "node %d leads %u", id, leaders[id]);
	}
}

Test(meta, dead_nodes_get_no_replicas)
{
	for (uint64_t id = 1; id <= 4; id++)
		add_node(&m, id, NULL);
	uint8_t *buf;
	size_t len;
	cr_assert_eq(sl_meta_cmd_set_alive(2, false, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, NULL), SL_OK);
	struct sl_meta_result res;
	cr_assert_eq(create("t", 12, 3, &res), SL_OK, "%s", res.errmsg);
	unsigned replicas[5], leaders[5];
	load_of(replicas, leaders, 4);
	cr_assert_eq(replicas[2], 0);
	cr_assert_eq(replicas[1] + replicas[3] + replicas[4], 36);
	cr_assert_eq(create("u", 1, 4, &res), SL_EINVALID_REPLICATION_FACTOR);
	cr_assert_str_eq(res.errmsg, "replication factor 4 is above the 3 live nodes (of 4 registered)");
}

Test(meta, refusals_are_precise_and_change_nothing)
{
	for (uint64_t id = 1; id <= 3; id++)
		add_node(&m, id, NULL);
	struct sl_meta_result res;
	cr_assert_eq(create("t", 3, 3, &res), SL_OK);
	size_t before_len;
	uint8_t *before = snap(&m, &before_len);
	struct {
		const char *name;
		uint32_t partitions;
		unsigned rf;
		int err;
		const char *msg;
	} cases[] = {
		{ "t", 1, 1, SL_ETOPIC_ALREADY_EXISTS, "topic 't' already exists" },
		{ "", 1, 1, SL_EINVALID_TOPIC, "topic name '' is empty" },
		{ "a/b", 1, 1, SL_EINVALID_TOPIC,
		  "topic name 'a/b' may hold only letters, digits, '.', '_' and '-'" },
		{ "..", 1, 1, SL_EINVALID_TOPIC, "topic name '..' may not be '.' or '..'" },
		{ "x", 0, 1, SL_EINVALID_PARTITIONS, "partitions must be 1..100000, not 0" },
		{ "x", 1, 4, SL_EINVALID_REPLICATION_FACTOR,
		  "replication factor 4 is above the 3 registered nodes" },
		{ "x", 1, 0, SL_EINVALID_REPLICATION_FACTOR, "replication factor must be 1..7, not 0" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(create(cases[i].name, cases[i].partitions, cases[i].rf, &res), cases[i].err,
			     "case %zu: %s", i, sl_err_name(res.err));
		cr_assert_str_eq(res.errmsg, cases[i].msg);
	}
	char long_name[300];
	memset(long_name, 'n', 250);
	long_name[250] = '\0';
	cr_assert_eq(create(long_name, 1, 1, &res), SL_EINVALID_TOPIC);
	struct sl_meta_topic_config bad = { .segment_bytes = 100 };
	uint8_t *buf;
	size_t len;
	cr_assert_eq(sl_meta_cmd_create_topic("x", 1, 1, &bad, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, &res), SL_EINVALID_CONFIG);
	cr_assert_str_eq(res.errmsg, "segment.bytes must be 4096..1073741824");
	cr_assert_eq(sl_meta_cmd_delete_topic("nope", &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, &res), SL_EUNKNOWN_TOPIC_OR_PARTITION);
	size_t after_len;
	uint8_t *after = snap(&m, &after_len);
	cr_assert(before_len == after_len && memcmp(before, after, before_len) == 0,
		  "a refused command changed the state");
	free(before);
	free(after);
	/* Bytes that are no command at all. */
	uint8_t junk[] = { 0xff, 0xff, 0xff, 0x01, 0x02 };
	cr_assert_eq(sl_meta_apply(&m, junk, sizeof(junk), &res), SL_EINVALID_RECORD);
}

Test(meta, a_deleted_topic_frees_its_name_but_never_its_group_ids)
{
	for (uint64_t id = 1; id <= 3; id++)
		add_node(&m, id, NULL);
	struct sl_meta_result res;
	cr_assert_eq(create("t", 4, 3, &res), SL_OK);
	uint8_t *buf;
	size_t len;
	cr_assert_eq(sl_meta_cmd_delete_topic("t", &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, &res), SL_OK, "%s", res.errmsg);
	cr_assert_null(sl_meta_topic(&m, "t"));
	const struct sl_meta_topic *t;
	uint32_t p;
	for (uint32_t g = 1; g <= 4; g++)
		cr_assert(!sl_meta_group(&m, g, &t, &p), "group %u outlived its topic", g);
	cr_assert_eq(create("t", 2, 3, &res), SL_OK);
	cr_assert_eq(res.topic_id, 2);
	cr_assert_eq(sl_meta_topic(&m, "t")->parts[0].group, 5);
}

Test(meta, leader_reports_keep_the_newest_term)
{
	for (uint64_t id = 1; id <= 3; id++)
		add_node(&m, id, NULL);
	cr_assert_eq(create("t", 1, 3, NULL), SL_OK);
	struct sl_meta_leader_report r = { .group = 1, .leader = 2, .term = 5, .nisr = 3,
					   .isr = { 2, 3, 9 } };
	uint8_t *buf;
	size_t len;
	cr_assert_eq(sl_meta_cmd_report_leaders(&r, 1, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, NULL), SL_OK);
	const struct sl_meta_partition *p = &sl_meta_topic(&m, "t")->parts[0];
	cr_assert_eq(p->leader, 2);
	cr_assert_eq(p->term, 5);
	cr_assert_eq(p->nisr, 2, "node 9 is no replica: it cannot be in sync");
	struct sl_meta_leader_report older[2] = {
		{ .group = 1, .leader = 1, .term = 4, .nisr = 1, .isr = { 1 } },
		{ .group = 77, .leader = 1, .term = 9 }, /* no such group */
	};
	cr_assert_eq(sl_meta_cmd_report_leaders(older, 2, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, NULL), SL_OK);
	cr_assert_eq(p->leader, 2);
	cr_assert_eq(p->term, 5);
	/* A replica named twice is in sync once (a snapshot would not
	 * restore a partition with more in-sync replicas than replicas). */
	struct sl_meta_leader_report twice = { .group = 1, .leader = 3, .term = 6, .nisr = 4,
					       .isr = { 3, 3, 3, 1 } };
	cr_assert_eq(sl_meta_cmd_report_leaders(&twice, 1, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, NULL), SL_OK);
	cr_assert_eq(p->nisr, 2);
	size_t slen;
	uint8_t *s = snap(&m, &slen);
	struct sl_meta back;
	sl_meta_init(&back);
	char errmsg[SL_ERRMSG_SIZE];
	cr_assert_eq(sl_meta_restore(&back, s, slen, errmsg), SL_OK, "%s", errmsg);
	sl_meta_free(&back);
	free(s);
}

Test(meta, producer_ids_come_in_disjoint_blocks)
{
	uint8_t *buf;
	size_t len;
	struct sl_meta_result res;
	cr_assert_eq(sl_meta_cmd_alloc_producer_ids(1000, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, &res), SL_OK);
	cr_assert_eq(res.first_producer_id, 1);
	cr_assert_eq(sl_meta_cmd_alloc_producer_ids(10, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, &res), SL_OK);
	cr_assert_eq(res.first_producer_id, 1001);
	cr_assert_eq(sl_meta_cmd_alloc_producer_ids(0, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, &res), SL_EINVALID_ARGUMENT);
}

Test(meta, the_cluster_id_is_set_once)
{
	uint8_t *buf;
	size_t len;
	struct sl_meta_result res;
	cr_assert_eq(sl_meta_cmd_init_cluster("c0ffee", &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, &res), SL_OK);
	cr_assert_eq(sl_meta_cmd_init_cluster("c0ffee", &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, &res), SL_OK, "the same id again is no change");
	cr_assert_eq(sl_meta_cmd_init_cluster("beef", &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, &res), SL_EEXISTS);
	cr_assert_str_eq(m.cluster_id, "c0ffee");
}

/* A random command from a seeded generator. */
static uint64_t rng_state;

static uint64_t rnd(uint64_t n)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (rng_state >> 33) % n;
}

static void random_command(uint8_t **buf, size_t *len)
{
	char name[16];
	snprintf(name, sizeof(name), "t%llu", (unsigned long long)rnd(20));
	switch (rnd(6)) {
	case 0: {
		struct sl_meta_node n = { .id = 1 + rnd(7), .client_port = 1 + rnd(65535),
					  .peer_port = 1 + rnd(65535), .alive = true };
		snprintf(n.uuid, sizeof(n.uuid), "00000000-0000-4000-8000-%012llu",
			 (unsigned long long)rnd(1000));
		snprintf(n.host, sizeof(n.host), "h%llu", (unsigned long long)rnd(100));
		snprintf(n.rack, sizeof(n.rack), "r%llu", (unsigned long long)rnd(3));
		cr_assert_eq(sl_meta_cmd_register_node(&n, buf, len), SL_OK);
		break;
	}
	case 1:
		cr_assert_eq(sl_meta_cmd_set_alive(1 + rnd(7), rnd(3) != 0, buf, len), SL_OK);
		break;
	case 2:
	case 3:
		cr_assert_eq(sl_meta_cmd_create_topic(name, (uint32_t)(1 + rnd(8)), (unsigned)(1 + rnd(3)),
						      NULL, buf, len),
			     SL_OK);
		break;
	case 4:
		cr_assert_eq(sl_meta_cmd_delete_topic(name, buf, len), SL_OK);
		break;
	default: {
		struct sl_meta_leader_report r = { .group = (uint32_t)(1 + rnd(60)),
						   .leader = 1 + rnd(7), .term = rnd(10), .nisr = 1 };
		r.isr[0] = r.leader;
		cr_assert_eq(sl_meta_cmd_report_leaders(&r, 1, buf, len), SL_OK);
		break;
	}
	}
}

Test(meta, a_restored_snapshot_behaves_as_the_state_it_was_taken_from)
{
	for (uint64_t seed = 1; seed <= 20; seed++) {
		rng_state = seed;
		struct sl_meta a, b;
		sl_meta_init(&a);
		sl_meta_init(&b);
		size_t cut = 50 + rnd(100);
		for (size_t i = 0; i < 300; i++) {
			if (i == cut) {
				size_t len;
				uint8_t *s = snap(&a, &len);
				char errmsg[SL_ERRMSG_SIZE];
				cr_assert_eq(sl_meta_restore(&b, s, len, errmsg), SL_OK, "%s", errmsg);
				free(s);
			}
			uint8_t *buf;
			size_t len;
			random_command(&buf, &len);
			struct sl_meta_result ra, rb;
			cr_assert_eq(sl_meta_apply(&a, buf, len, &ra), SL_OK);
			if (i >= cut) {
				cr_assert_eq(sl_meta_apply(&b, buf, len, &rb), SL_OK);
				cr_assert_eq(ra.err, rb.err, "seed %llu step %zu: %s vs %s",
					     (unsigned long long)seed, i, ra.errmsg, rb.errmsg);
				cr_assert_eq(ra.topic_id, rb.topic_id);
			}
			free(buf);
		}
		size_t la, lb;
		uint8_t *sa = snap(&a, &la), *sb = snap(&b, &lb);
		cr_assert(la == lb && memcmp(sa, sb, la) == 0, "seed %llu: the states differ",
			  (unsigned long long)seed);
		cr_assert_gt(a.ntopics, 0, "seed %llu made no topic", (unsigned long long)seed);
		free(sa);
		free(sb);
		sl_meta_free(&a);
		sl_meta_free(&b);
	}
}

Test(meta, a_damaged_snapshot_is_refused_and_changes_nothing)
{
	for (uint64_t id = 1; id <= 3; id++)
		add_node(&m, id, NULL);
	cr_assert_eq(create("t", 3, 3, NULL), SL_OK);
	size_t len;
	uint8_t *s = snap(&m, &len);
	char errmsg[SL_ERRMSG_SIZE];
	cr_assert_eq(sl_meta_restore(&m, s, len / 2, errmsg), SL_EINVALID_RECORD);
	cr_assert_str_eq(errmsg, "snapshot does not decode");
	cr_assert_not_null(sl_meta_topic(&m, "t"));
	size_t len2;
	uint8_t *s2 = snap(&m, &len2);
	cr_assert(len == len2 && memcmp(s, s2, len) == 0);
	free(s);
	free(s2);
}

Test(meta, a_snapshot_whose_allocators_would_reuse_ids_is_refused)
{
	for (uint64_t id = 1; id <= 3; id++)
		add_node(&m, id, NULL);
	cr_assert_eq(create("t", 2, 3, NULL), SL_OK);
	char errmsg[SL_ERRMSG_SIZE];
	struct sl_meta back;
	sl_meta_init(&back);
	size_t len;
	uint8_t *s;
	m.next_group = 0; /* would hand out the controller's group */
	s = snap(&m, &len);
	cr_assert_eq(sl_meta_restore(&back, s, len, errmsg), SL_EINVALID_RECORD);
	cr_assert_str_eq(errmsg, "snapshot: an id allocator is at 0");
	free(s);
	m.next_group = 2; /* groups 1 and 2 exist */
	s = snap(&m, &len);
	cr_assert_eq(sl_meta_restore(&back, s, len, errmsg), SL_EINVALID_RECORD);
	cr_assert(strstr(errmsg, "is not below the next group id 2") != NULL, "%s", errmsg);
	free(s);
	m.next_group = 3;
	m.next_topic_id = 1; /* topic 1 exists */
	s = snap(&m, &len);
	cr_assert_eq(sl_meta_restore(&back, s, len, errmsg), SL_EINVALID_RECORD);
	free(s);
	cr_assert_eq(back.ntopics, 0, "a refused snapshot changed the state");
	sl_meta_free(&back);
}

static int apply_to(struct sl_meta *mm, uint8_t *buf, size_t len)
{
	struct sl_meta_result res;
	int rv = sl_meta_apply(mm, buf, len, &res);
	free(buf);
	cr_assert_eq(rv, SL_OK, "apply: %s", sl_err_name(rv));
	return res.err;
}

static int seed_with(struct sl_meta *mm, const uint8_t *s, size_t slen)
{
	uint8_t *buf;
	size_t len;
	cr_assert_eq(sl_meta_cmd_seed_controller(s, slen, &buf, &len), SL_OK);
	return apply_to(mm, buf, len);
}

static void assert_same(const struct sl_meta *a, const struct sl_meta *b, const char *what)
{
	size_t la, lb;
	uint8_t *sa = snap(a, &la), *sb = snap(b, &lb);
	cr_assert(la == lb && memcmp(sa, sb, la) == 0, "%s: the states differ", what);
	free(sa);
	free(sb);
}

Test(meta, a_new_disk_moves_the_controller_and_the_seed_carries_the_state_over)
{
	static const uint64_t voters[3] = { 1, 2, 3 };
	for (uint64_t id = 1; id <= 3; id++)
		add_node(&m, id, NULL);
	cr_assert_eq(create("old", 3, 3, NULL), SL_OK);
	cr_assert(!sl_meta_controller_stale(&m, voters, 3));
	uint64_t placed = m.topics[0]->parts[0].since;

	/* Node 3 comes back with a new disk: its replicas of "old" were the
	 * old disk's, and the controller's group must move. */
	struct sl_meta_node n3 = *sl_meta_node(&m, 3);
	snprintf(n3.uuid, sizeof(n3.uuid), "00000000-0000-4000-8000-00000000003b");
	uint8_t *buf;
	size_t len;
	cr_assert_eq(sl_meta_cmd_register_node(&n3, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, NULL), SL_OK);
	cr_assert(sl_meta_replaced_after(&m, 3, placed));
	cr_assert(!sl_meta_replaced_after(&m, 2, placed));
	cr_assert(sl_meta_controller_stale(&m, voters, 3));
	/* The same disk registering again replaces nothing. */
	uint64_t at = sl_meta_node(&m, 3)->replaced_at;
	cr_assert_eq(sl_meta_cmd_register_node(&n3, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, NULL), SL_OK);
	cr_assert_eq(sl_meta_node(&m, 3)->replaced_at, at);

	uint32_t g = m.next_group;
	cr_assert_eq(sl_meta_cmd_move_controller(0, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, NULL), SL_OK);
	cr_assert_eq(m.ctl_group, g);
	cr_assert(m.ctl_awaiting_seed);
	cr_assert(!sl_meta_controller_stale(&m, voters, 3));
	/* A repeated move, and anything but the seed, is refused. */
	cr_assert_eq(sl_meta_cmd_move_controller(0, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, NULL), SL_EEXISTS);
	size_t flen;
	uint8_t *frozen = snap(&m, &flen);
	struct sl_meta_result res;
	cr_assert_eq(create("new", 1, 3, &res), SL_ENOT_CONTROLLER);
	cr_assert(strstr(res.errmsg, "moving") != NULL, "%s", res.errmsg);

	/* Every copy becomes the same state with the seed: the old voters'
	 * (m), a copy of the frozen state, and a copy taken after the seed
	 * and reset by a voter starting the new group afresh. */
	struct sl_meta b, c;
	sl_meta_init(&b);
	sl_meta_init(&c);
	char errmsg[SL_ERRMSG_SIZE];
	cr_assert_eq(sl_meta_restore(&b, frozen, flen, errmsg), SL_OK, "%s", errmsg);
	cr_assert_eq(sl_meta_restore(&c, frozen, flen, errmsg), SL_OK, "%s", errmsg);
	cr_assert_eq(seed_with(&c, frozen, flen), SL_OK);
	cr_assert_eq(sl_meta_cmd_create_topic("later", 2, 3, NULL, &buf, &len), SL_OK);
	cr_assert_eq(apply_to(&c, buf, len), SL_OK);
	c.ctl_awaiting_seed = true;
	cr_assert_eq(seed_with(&m, frozen, flen), SL_OK);
	cr_assert_eq(seed_with(&b, frozen, flen), SL_OK);
	cr_assert_eq(seed_with(&c, frozen, flen), SL_OK);
	assert_same(&m, &b, "the old voters' and the frozen copy's");
	assert_same(&m, &c, "the old voters' and the reset copy's");
	cr_assert(!m.ctl_awaiting_seed);
	cr_assert_eq(m.ctl_group, g);
	cr_assert_eq(seed_with(&m, frozen, flen), SL_EEXISTS, "a second seed was taken");

	/* Topics created from now on count node 3's new disk as a replica. */
	cr_assert_eq(create("new", 1, 3, NULL), SL_OK);
	const struct sl_meta_topic *t = sl_meta_topic(&m, "new");
	cr_assert(!sl_meta_replaced_after(&m, 3, t->parts[0].since));
	free(frozen);
	sl_meta_free(&b);
	sl_meta_free(&c);
}

Test(meta, a_seed_for_another_group_is_refused_and_changes_nothing)
{
	for (uint64_t id = 1; id <= 3; id++)
		add_node(&m, id, NULL);
	size_t len0;
	uint8_t *before_move = snap(&m, &len0);
	uint8_t *buf;
	size_t len;
	cr_assert_eq(sl_meta_cmd_move_controller(0, &buf, &len), SL_OK);
	cr_assert_eq(apply(buf, len, NULL), SL_OK);
	size_t l1;
	uint8_t *s1 = snap(&m, &l1);
	cr_assert_eq(seed_with(&m, before_move, len0), SL_EINVALID_ARGUMENT);
	static const uint8_t junk[] = { 0xff, 0xff, 0xff };
	cr_assert_eq(seed_with(&m, junk, sizeof(junk)), SL_EINVALID_ARGUMENT);
	size_t l2;
	uint8_t *s2 = snap(&m, &l2);
	cr_assert(m.ctl_awaiting_seed);
	cr_assert(l1 == l2 && memcmp(s1, s2, l1) == 0, "a refused seed changed the state");
	free(before_move);
	free(s1);
	free(s2);
}

Test(meta, a_command_is_a_registration_of_its_sender_only_when_it_registers_that_id)
{
	struct sl_meta_node n = { .id = 4, .client_port = 9092, .peer_port = 9093 };
	snprintf(n.uuid, sizeof(n.uuid), "00000000-0000-4000-8000-000000000004");
	snprintf(n.host, sizeof(n.host), "node-4");
	uint8_t *buf;
	size_t len;
	cr_assert_eq(sl_meta_cmd_register_node(&n, &buf, &len), SL_OK);
	cr_assert(sl_meta_cmd_registers(buf, len, 4));
	cr_assert(!sl_meta_cmd_registers(buf, len, 5));
	cr_assert(!sl_meta_cmd_registers(buf, len > 3 ? len - 3 : 0, 4));
	free(buf);
	cr_assert_eq(sl_meta_cmd_delete_topic("t", &buf, &len), SL_OK);
	cr_assert(!sl_meta_cmd_registers(buf, len, 4));
	free(buf);
}

