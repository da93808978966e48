/* The raft_io backend over the partition log, on the simulated disk:
 * load, bootstrap, term and vote, append, truncate, snapshots, crashes at
 * every step, and one real libraft instance driving it. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "qenv.h"
#include "raft_int.h"
#include "rmeta.h"
#include "rio.h"
#include "simdisk.h"
#include "storage.h"
#include "testfsm.h"

/* ---- Fixture -------------------------------------------------------- */

static struct sl_qenv env;
static sim_disk *sd;
static sl_vfs *vfs;
static struct raft_io io;
static bool io_open;
static int faults;

static void on_fault(void *arg, uint32_t group, int err, const char *why)
{
	(void)arg;
	(void)group;
	(void)err;
	(void)why;
	faults++;
}

static void setup(void)
{
	sl_qenv_init(&env, 1000, 42);
	sd = sim_new();
	vfs = sim_vfs(sd);
	cr_assert_eq(vfs->mkdir(vfs, "/sim", 0755), 0);
	io_open = false;
	faults = 0;
}

static void closed_cb(struct raft_io *i)
{
	(void)i;
	io_open = false;
}

static void close_io(void)
{
	if (!io_open)
		return;
	io.close(&io, closed_cb);
	sl_qenv_pump(&env);
	cr_assert(!io_open, "close did not finish");
}

static void teardown(void)
{
	close_io();
	sim_free(sd);
}

TestSuite(rio, .init = setup, .fini = teardown, .timeout = 60);

static void open_io(void)
{
	struct sl_rio_config cfg = { .dir = "/sim/g1", .group = 1 };
	sl_log_config_init(&cfg.log);
	cfg.log.segment_bytes = 4096;
	cr_assert_eq(sl_rio_init(&io, &cfg, vfs, &env.base, NULL, on_fault, NULL), SL_OK);
	cr_assert_eq(io.init(&io, 1, "n1"), 0);
	io_open = true;
}

static void bootstrap(void)
{
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	cr_assert_eq(raft_configuration_add(&conf, 1, "n1", RAFT_VOTER), 0);
	cr_assert_eq(io.bootstrap(&io, &conf), 0, "%s", io.errmsg);
	raft_configuration_close(&conf);
}

struct loaded {
	raft_term term;
	raft_id vote;
	struct raft_snapshot *snap;
	raft_index start;
	struct raft_entry *ents;
	size_t n;
};

static void free_loaded(struct loaded *l)
{
	for (size_t i = 0; i < l->n; i++)
		raft_free(l->ents[i].buf.base);
	raft_free(l->ents);
	if (l->snap != NULL) {
		raft_configuration_close(&l->snap->configuration);
		raft_free(l->snap->bufs[0].base);
		raft_free(l->snap->bufs);
		raft_free(l->snap);
	}
	memset(l, 0, sizeof(*l));
}

static void load(struct loaded *l)
{
	memset(l, 0, sizeof(*l));
	int rv = io.load(&io, &l->term, &l->vote, &l->snap, &l->start, &l->ents, &l->n);
	cr_assert_eq(rv, 0, "load: %d %s", rv, io.errmsg);
}

/* A COMMAND payload: one batch stamped at the next offset with term. */
static struct raft_buffer command(raft_term term, int records, int tag)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	char val[64];
	for (int i = 0; i < records; i++) {
		int n = snprintf(val, sizeof(val), "tag%d-rec%d", tag, i);
		cr_assert_eq(sl_batch_builder_add(&b, 100 + i, NULL, -1, val, n, NULL, 0), SL_OK);
	}
	const uint8_t *bytes;
	size_t len;
	cr_assert_eq(sl_batch_builder_finish(&b, &bytes, &len), SL_OK);
	struct raft_buffer buf = { .base = raft_malloc(len), .len = len };
	memcpy(buf.base, bytes, len);
	sl_batch_builder_free(&b);
	sl_batch_stamp(buf.base, sl_rio_next_offset(&io), (int32_t)term);
	return buf;
}

struct appended {
	int status;
	bool fired;
};

static void append_cb(struct raft_io_append *req, int status)
{
	struct appended *a = req->data;
	a->fired = true;
	a->status = status;
}

/* ---- Tests ---------------------------------------------------------- */

/* A stored configuration is libraft's encoding, its padding zeroed (the
 * encoder leaves it unwritten: sl_rentry_control). */
static void expect_conf(const struct raft_buffer *got, const struct raft_buffer *enc)
{
	size_t used = sl_rconf_used(enc->base, enc->len);
	cr_assert_eq(got->len, enc->len);
	cr_assert_eq(memcmp(got->base, enc->base, used), 0);
	for (size_t i = used; i < got->len; i++)
		cr_assert_eq(((const uint8_t *)got->base)[i], 0);
}

Test(rio, bootstrap_writes_term_and_a_change_entry)
{
	open_io();
	bootstrap();
	close_io();
	open_io();
	struct loaded l;
	load(&l);
	cr_assert_eq(l.term, 1);
	cr_assert_eq(l.vote, 0);
	cr_assert_null(l.snap);
	cr_assert_eq(l.start, 1);
	cr_assert_eq(l.n, 1);
	cr_assert_eq(l.ents[0].type, RAFT_CHANGE);
	cr_assert_eq(l.ents[0].term, 1);
	/* The CHANGE is a control batch at offset 0: offsets need no
	 * translation, and consumers skip control batches. */
	cr_assert_eq(sl_log_end_offset(sl_rio_log(&io)), 1);
	cr_assert_eq(sl_rio_next_offset(&io), 1);
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, 1, "n1", RAFT_VOTER);
	struct raft_buffer enc;
	raft_configuration_encode(&conf, &enc);
	cr_assert_eq(l.ents[0].buf.len, enc.len);
	expect_conf(&l.ents[0].buf, &enc);
	raft_free(enc.base);
	raft_configuration_close(&conf);
	free_loaded(&l);
	/* A second bootstrap is refused. */
	struct raft_configuration c2;
	raft_configuration_init(&c2);
	raft_configuration_add(&c2, 1, "n1", RAFT_VOTER);
	cr_assert_eq(io.bootstrap(&io, &c2), RAFT_CANTBOOTSTRAP);
	raft_configuration_close(&c2);
}

Test(rio, a_group_created_off_the_loop_loads_as_a_bootstrapped_one)
{
	struct sl_log_config lc;
	sl_log_config_init(&lc);
	lc.segment_bytes = 4096;
	char err[SL_ERRMSG_SIZE];
	uint64_t voters[] = { 1, 2, 3 };
	cr_assert_eq(sl_rio_create("/sim/g1", &lc, vfs, voters, 3, err), SL_OK, "%s", err);
	cr_assert_eq(sl_rio_create("/sim/g1", &lc, vfs, voters, 3, err), SL_EEXISTS);
	open_io();
	struct loaded l;
	load(&l);
	/* Its term was never recorded: load takes the lone CHANGE's. */
	cr_assert_eq(l.term, 1);
	cr_assert_eq(l.vote, 0);
	cr_assert_eq(l.start, 1);
	cr_assert_eq(l.n, 1);
	cr_assert_eq(l.ents[0].type, RAFT_CHANGE);
	cr_assert_eq(l.ents[0].term, 1);
	/* The configuration bootstrap would have written, byte for byte. */
	struct raft_configuration conf;
	struct raft_buffer want;
	raft_configuration_init(&conf);
	for (unsigned i = 0; i < 3; i++) {
		char addr[8];
		snprintf(addr, sizeof(addr), "%u", (unsigned)voters[i]);
		cr_assert_eq(raft_configuration_add(&conf, voters[i], addr, RAFT_VOTER), 0);
	}
	cr_assert_eq(raft_configuration_encode(&conf, &want), 0);
	cr_assert_eq(l.ents[0].buf.len, want.len);
	expect_conf(&l.ents[0].buf, &want);
	raft_free(want.base);
	raft_configuration_close(&conf);
	free_loaded(&l);
	/* Bootstrap over it refuses: it has state, and starts from it. */
	raft_configuration_init(&conf);
	cr_assert_eq(raft_configuration_add(&conf, 1, "1", RAFT_VOTER), 0);
	cr_assert_eq(io.bootstrap(&io, &conf), RAFT_CANTBOOTSTRAP);
	raft_configuration_close(&conf);
}

Test(rio, a_hurried_group_draws_short_election_timeouts_then_normal_ones)
{
	open_io();
	sl_rio_hurry(&io, 2);
	for (int i = 0; i < 2; i++) {
		int t = io.random(&io, 1000, 2000);
		cr_assert(t >= 250 && t < 500, "draw %d: %d", i, t);
	}
	for (int i = 0; i < 20; i++) {
		int t = io.random(&io, 1000, 2000);
		cr_assert(t >= 1000 && t < 2000, "after the hurry: %d", t);
	}
}

Test(rio, term_and_vote_are_durable_before_they_return)
{
	open_io();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	cr_assert_eq(io.set_term(&io, 7), 0);
	cr_assert_eq(io.set_vote(&io, 3), 0);
	sim_crash(sd); /* nothing pumped: no deferred work may matter */
	close_io();
	open_io();
	load(&l);
	cr_assert_eq(l.term, 7);
	cr_assert_eq(l.vote, 3);
	free_loaded(&l);
	cr_assert_eq(io.set_term(&io, 8), 0);
	sim_crash(sd);
	close_io();
	open_io();
	load(&l);
	cr_assert_eq(l.term, 8);
	cr_assert_eq(l.vote, 0, "a new term clears the vote");
	free_loaded(&l);
}

Test(rio, appends_fire_in_order_after_return_and_reload_byte_identical)
{
	open_io();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	struct raft_buffer bufs[6];
	struct raft_io_append reqs[3];
	struct appended done[3] = { 0 };
	for (int k = 0; k < 3; k++) {
		struct raft_entry e[2];
		for (int j = 0; j < 2; j++) {
			/* The leader stamps each batch at the next offset. */
			bufs[2 * k + j] = command(1, 1 + j, 2 * k + j);
			e[j] = (struct raft_entry){ .term = 1, .type = RAFT_COMMAND, .buf = bufs[2 * k + j] };
			/* The backend learns the entry only in append: stamp
			 * the second of a pair past the first. */
			if (j == 1) {
				struct sl_batch_header h;
				sl_batch_parse_header(bufs[2 * k].base, bufs[2 * k].len, UINT32_MAX, &h);
				sl_batch_stamp(bufs[2 * k + 1].base, sl_batch_last_offset(&h) + 1, 1);
			}
		}
		reqs[k].data = &done[k];
		cr_assert_eq(io.append(&io, &reqs[k], e, 2, append_cb), 0);
		cr_assert(!done[k].fired, "callback fired inside append");
	}
	cr_assert_eq(sl_rio_last_stored(&io), 1);
	sl_qenv_pump(&env);
	for (int k = 0; k < 3; k++) {
		cr_assert(done[k].fired);
		cr_assert_eq(done[k].status, 0);
	}
	cr_assert_eq(sl_rio_last_stored(&io), 7);
	close_io();
	open_io();
	load(&l);
	cr_assert_eq(l.n, 7);
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(l.ents[1 + i].type, RAFT_COMMAND);
		cr_assert_eq(l.ents[1 + i].buf.len, bufs[i].len);
		cr_assert_eq(memcmp(l.ents[1 + i].buf.base, bufs[i].base, bufs[i].len), 0);
	}
	free_loaded(&l);
	for (int i = 0; i < 6; i++)
		raft_free(bufs[i].base);
}

Test(rio, barrier_entries_are_control_batches_with_one_offset)
{
	open_io();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	uint8_t payload[8] = { 0 };
	struct raft_entry e = { .term = 1, .type = RAFT_BARRIER, .buf = { payload, sizeof(payload) } };
	struct raft_io_append req;
	struct appended done = { 0 };
	req.data = &done;
	cr_assert_eq(io.append(&io, &req, &e, 1, append_cb), 0);
	cr_assert_eq(sl_rio_next_offset(&io), 2);
	sl_qenv_pump(&env);
	cr_assert(done.fired);
	close_io();
	open_io();
	load(&l);
	cr_assert_eq(l.n, 2);
	cr_assert_eq(l.ents[1].type, RAFT_BARRIER);
	cr_assert_eq(l.ents[1].buf.len, sizeof(payload));
	free_loaded(&l);
}

Test(rio, truncate_is_ordered_between_appends)
{
	open_io();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	struct raft_buffer a = command(1, 2, 1);
	struct raft_entry ea = { .term = 1, .type = RAFT_COMMAND, .buf = a };
	struct raft_io_append r1, r2;
	struct appended d1 = { 0 }, d2 = { 0 };
	r1.data = &d1;
	r2.data = &d2;
	cr_assert_eq(io.append(&io, &r1, &ea, 1, append_cb), 0);
	/* Truncated before its append even reached the disk, by a leader
	 * of term 2. */
	cr_assert_eq(io.set_term(&io, 2), 0);
	cr_assert_eq(io.truncate(&io, 2), 0);
	struct raft_buffer b = command(2, 3, 2);
	struct raft_entry eb = { .term = 2, .type = RAFT_COMMAND, .buf = b };
	cr_assert_eq(io.append(&io, &r2, &eb, 1, append_cb), 0);
	sl_qenv_pump(&env);
	cr_assert(d1.fired && d2.fired);
	close_io();
	open_io();
	load(&l);
	cr_assert_eq(l.n, 2);
	cr_assert_eq(l.ents[1].term, 2);
	cr_assert_eq(memcmp(l.ents[1].buf.base, b.base, b.len), 0);
	free_loaded(&l);
	raft_free(a.base);
	raft_free(b.base);
}

/* Appends 6 entries in 3 calls; returns the number of callbacks that
 * fired with status 0 when the disk died after `die` operations. */
static int append_until_crash(int64_t die, struct raft_buffer *bufs)
{
	open_io();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	if (die >= 0)
		sim_crash_after(sd, die);
	/* Static: a fenced group's callbacks fire at close, after return. */
	static struct raft_io_append reqs[3];
	static struct appended done[3];
	memset(done, 0, sizeof(done));
	for (int k = 0; k < 3; k++) {
		bufs[k] = command(1, 1 + k, k);
		struct raft_entry e = { .term = 1, .type = RAFT_COMMAND, .buf = bufs[k] };
		reqs[k].data = &done[k];
		cr_assert_eq(io.append(&io, &reqs[k], &e, 1, append_cb), 0);
		sl_qenv_pump(&env); /* one write and sync per append */
	}
	int acked = 0;
	for (int k = 0; k < 3; k++)
		if (done[k].fired && done[k].status == 0)
			acked = k + 1;
	return acked;
}

Test(rio, load_after_a_crash_at_every_step_of_append)
{
	struct raft_buffer bufs[3];
	uint64_t before = sim_ops(sd);
	append_until_crash(-1, bufs);
	uint64_t total = sim_ops(sd) - before;
	close_io();
	for (int i = 0; i < 3; i++)
		raft_free(bufs[i].base);
	for (uint64_t k = 0; k <= total; k++) {
		sim_free(sd);
		sd = sim_new();
		vfs = sim_vfs(sd);
		vfs->mkdir(vfs, "/sim", 0755);
		faults = 0;
		int acked = append_until_crash((int64_t)k, bufs);
		close_io();
		sim_crash(sd);
		open_io();
		struct loaded l;
		memset(&l, 0, sizeof(l));
		int rv = io.load(&io, &l.term, &l.vote, &l.snap, &l.start, &l.ents, &l.n);
		if (rv == 0 && l.n == 0) {
			/* Died before bootstrap was durable. */
			cr_assert_eq(acked, 0);
		} else {
			cr_assert_eq(rv, 0, "crash at op %llu: load %d %s", (unsigned long long)k, rv, io.errmsg);
			cr_assert_geq(l.n, 1 + (size_t)acked, "crash at op %llu: %zu entries, %d acked",
				      (unsigned long long)k, l.n, acked);
			for (size_t i = 1; i < l.n; i++)
				cr_assert_eq(memcmp(l.ents[i].buf.base, bufs[i - 1].base, bufs[i - 1].len), 0);
		}
		free_loaded(&l);
		close_io();
		for (int i = 0; i < 3; i++)
			raft_free(bufs[i].base);
	}
}

static void snap_put_cb(struct raft_io_snapshot_put *req, int status)
{
	*(int *)req->data = status + 1;
}

static void snap_get_cb(struct raft_io_snapshot_get *req, struct raft_snapshot *s, int status)
{
	struct raft_snapshot **out = req->data;
	cr_assert_eq(status, 0);
	*out = s;
}

Test(rio, snapshot_manifest_survives_and_entries_follow_it)
{
	open_io();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	struct raft_buffer bufs[4];
	for (int k = 0; k < 4; k++) {
		bufs[k] = command(1, 2, k);
		struct raft_entry e = { .term = 1, .type = RAFT_COMMAND, .buf = bufs[k] };
		struct raft_io_append req;
		struct appended d = { 0 };
		req.data = &d;
		cr_assert_eq(io.append(&io, &req, &e, 1, append_cb), 0);
		sl_qenv_pump(&env);
		cr_assert(d.fired);
	}
	/* A snapshot at index 3 (entries 1..3), as libraft takes one. */
	struct raft_snapshot s = { .index = 3, .term = 1, .configuration_index = 1 };
	raft_configuration_init(&s.configuration);
	raft_configuration_add(&s.configuration, 1, "n1", RAFT_VOTER);
	char fsm[] = "manifest of the state machine";
	struct raft_buffer fb = { fsm, sizeof(fsm) };
	s.bufs = &fb;
	s.n_bufs = 1;
	struct raft_io_snapshot_put put;
	int put_status = 0;
	put.data = &put_status;
	cr_assert_eq(io.snapshot_put(&io, 1, &put, &s, snap_put_cb), 0);
	cr_assert_eq(put_status, 0, "callback inside snapshot_put");
	sl_qenv_pump(&env);
	cr_assert_eq(put_status, 1);
	struct raft_io_snapshot_get get;
	struct raft_snapshot *got = NULL;
	get.data = &got;
	cr_assert_eq(io.snapshot_get(&io, &get, snap_get_cb), 0);
	cr_assert_null(got);
	sl_qenv_pump(&env);
	cr_assert_not_null(got);
	cr_assert_eq(got->index, 3);
	raft_configuration_close(&got->configuration);
	raft_free(got->bufs[0].base);
	raft_free(got->bufs);
	raft_free(got);
	raft_configuration_close(&s.configuration);
	/* The data stays on disk; after a crash, load starts after it. */
	sim_crash(sd);
	close_io();
	open_io();
	load(&l);
	cr_assert_not_null(l.snap);
	cr_assert_eq(l.snap->index, 3);
	cr_assert_eq(l.snap->configuration.n, 1);
	cr_assert_eq(l.start, 4);
	cr_assert_eq(l.n, 2);
	cr_assert_eq(memcmp(l.ents[0].buf.base, bufs[2].base, bufs[2].len), 0);
	cr_assert_eq(sl_log_start_offset(sl_rio_log(&io)), 0, "leader snapshots never delete data");
	free_loaded(&l);
	for (int k = 0; k < 4; k++)
		raft_free(bufs[k].base);
}

static int batch_end(void *arg, const struct sl_dump_batch *b)
{
	if (b->err == SL_OK)
		*(uint64_t *)arg = b->pos + b->size;
	return 0;
}

static void append_entries_now(int n, raft_term term);
static void free_cbufs(void);

/* A snapshot at index (single voter n1), through snapshot_put: the
 * callback's status + 1 (0: it did not run). */
static int put_snapshot(raft_index index)
{
	struct raft_snapshot s = { .index = index, .term = 1, .configuration_index = 1 };
	raft_configuration_init(&s.configuration);
	raft_configuration_add(&s.configuration, 1, "n1", RAFT_VOTER);
	char fsm[] = "state";
	struct raft_buffer fb = { fsm, sizeof(fsm) };
	s.bufs = &fb;
	s.n_bufs = 1;
	static struct raft_io_snapshot_put put;
	static int st;
	st = 0;
	put.data = &st;
	cr_assert_eq(io.snapshot_put(&io, 1, &put, &s, snap_put_cb), 0);
	sl_qenv_pump(&env);
	raft_configuration_close(&s.configuration);
	return st;
}

/* Found by tests/chaos: every replica writes its group's first CHANGE
 * entry itself, and libraft leaves the padding of an encoded
 * configuration unwritten, so the replicas' first batches differed by a
 * few heap bytes (written to disk). */
Test(rio, a_change_entry_does_not_depend_on_the_padding_libraft_leaves)
{
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	for (raft_id id = 1; id <= 3; id++) {
		char addr[4];
		snprintf(addr, sizeof(addr), "%llu", (unsigned long long)id);
		cr_assert_eq(raft_configuration_add(&conf, id, addr, RAFT_VOTER), 0);
	}
	struct raft_buffer buf;
	cr_assert_eq(raft_configuration_encode(&conf, &buf), 0);
	size_t used = sl_rconf_used(buf.base, buf.len);
	cr_assert_eq(used, 1 + 8 + 3 * (8 + 2 + 1), "%zu", used);
	cr_assert_eq(buf.len, 48);
	uint8_t *a, *b;
	size_t la, lb;
	memset((uint8_t *)buf.base + used, 0xab, buf.len - used);
	cr_assert_eq(sl_rentry_control(0, 1, RAFT_CHANGE, buf.base, buf.len, &a, &la), SL_OK);
	memset((uint8_t *)buf.base + used, 0x5c, buf.len - used);
	cr_assert_eq(sl_rentry_control(0, 1, RAFT_CHANGE, buf.base, buf.len, &b, &lb), SL_OK);
	cr_assert_eq(la, lb);
	cr_assert_eq(memcmp(a, b, la), 0, "the padding reached the batch");
	/* What is stored is the encoding, then zeros. */
	unsigned short type;
	raft_term term;
	size_t poff, plen;
	cr_assert_eq(sl_rentry_decode(a, la, &type, &term, &poff, &plen), SL_OK);
	cr_assert_eq(type, RAFT_CHANGE);
	cr_assert_eq(plen, buf.len);
	cr_assert_eq(memcmp(a + poff, buf.base, used), 0);
	for (size_t i = used; i < plen; i++)
		cr_assert_eq(a[poff + i], 0);
	raft_configuration_close(&conf);
	raft_free(buf.base);
	free(a);
	free(b);
	/* Not a configuration: left alone. */
	uint8_t junk[5] = { 9, 9, 9, 9, 9 };
	cr_assert_eq(sl_rconf_used(junk, sizeof(junk)), sizeof(junk));
}

/* Found by tests/chaos: a torn write cut a stopped replica's log below its
 * snapshot's anchor. Loading the snapshot made libraft count the lost
 * entries as held; the next ones were appended past the hole, and the
 * replica, once leader, had lost acknowledged records. It now loads
 * empty (its term kept), for the leader to copy the log back. */
Test(rio, a_log_torn_below_its_snapshot_loads_empty_not_with_a_hole)
{
	open_io();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	append_entries_now(4, 1);
	/* A snapshot at the last entry (index 5: the CHANGE, then 4). */
	cr_assert_eq(put_snapshot(5), 1);
	int64_t anchor = sl_log_end_offset(sl_rio_log(&io));
	sim_crash(sd); /* a SIGKILL: no clean close, no index trusted */
	close_io();
	/* Tear the segment inside its last batch, below the anchor. */
	const char *seg = "/sim/g1/log/00000000000000000000.log";
	char errmsg[SL_ERRMSG_SIZE];
	uint64_t end = 0;
	cr_assert_eq(sl_log_dump("/sim/g1/log", vfs, batch_end, &end, errmsg), SL_OK, "%s", errmsg);
	int fd = vfs->open(vfs, seg, O_RDWR, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(vfs->ftruncate(vfs, fd, end - 10), 0);
	cr_assert_eq(vfs->fdatasync(vfs, fd), 0);
	vfs->close(vfs, fd);
	open_io();
	load(&l);
	cr_assert_null(l.snap, "the snapshot was loaded over a log that lost part of it");
	cr_assert_eq(l.n, 0);
	cr_assert_eq(l.term, 1, "the term is kept");
	cr_assert_lt(sl_log_end_offset(sl_rio_log(&io)), anchor);
	free_loaded(&l);
	/* And again after a restart: the state it left loads the same. */
	close_io();
	open_io();
	load(&l);
	cr_assert_null(l.snap);
	cr_assert_eq(l.n, 0);
	free_loaded(&l);
	free_cbufs();
}

Test(rio, commands_not_stamped_for_the_log_fence_the_group)
{
	open_io();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	struct raft_buffer b = command(1, 1, 0);
	sl_batch_stamp(b.base, 99, 1); /* not the next offset */
	struct raft_entry e = { .term = 1, .type = RAFT_COMMAND, .buf = b };
	struct raft_io_append req;
	struct appended d = { 0 };
	req.data = &d;
	uint64_t fences = sl_rio_fence_count();
	cr_assert_eq(io.append(&io, &req, &e, 1, append_cb), 0, "errors never reach libraft");
	sl_qenv_pump(&env);
	cr_assert_eq(faults, 1);
	cr_assert_eq(sl_rio_fence_count(), fences + 1, "the fence is counted");
	cr_assert(!d.fired, "a fenced group's callbacks are held");
	close_io();
	cr_assert(d.fired);
	cr_assert_eq(d.status, RAFT_CANCELED);
	raft_free(b.base);
}

/* ---- One real libraft instance on the backend ----------------------- */

static uint64_t applied;


static int apply_done;

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	(void)req;
	(void)result;
	cr_assert_eq(status, 0);
	apply_done++;
}

static void raft_closed(struct raft *r)
{
	(void)r;
}

Test(rio, single_node_libraft_commits_through_the_backend)
{
	struct raft r;
	struct raft_fsm fsm;
	tl_fsm_init(&fsm, &applied);
	open_io();
	cr_assert_eq(raft_init(&r, &io, &fsm, 1, "n1"), 0);
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, 1, "n1", RAFT_VOTER);
	cr_assert_eq(raft_bootstrap(&r, &conf), 0, "%s", raft_errmsg(&r));
	raft_configuration_close(&conf);
	cr_assert_eq(raft_start(&r), 0, "%s", raft_errmsg(&r));
	for (int i = 0; i < 50 && raft_state(&r) != RAFT_LEADER; i++) {
		env.now += 100;
		sl_rio_tick(&io);
		sl_qenv_pump(&env);
	}
	cr_assert_eq(raft_state(&r), RAFT_LEADER);
	sl_qenv_pump(&env);
	/* Guard (a): the barrier proposed on election has committed. */
	cr_assert(sl_rio_leader_ready(&io));
	struct raft_apply reqs[10];
	for (int k = 0; k < 10; k++) {
		struct raft_buffer b = command(r.current_term, 3, k);
		cr_assert_eq(raft_apply(&r, &reqs[k], &b, 1, apply_cb), 0);
	}
	sl_qenv_pump(&env);
	cr_assert_eq(apply_done, 10);
	cr_assert_eq(applied, 10);
	raft_close(&r, raft_closed);
	sl_qenv_pump(&env);
	io_open = false;
	/* Everything is in the partition log, once. */
	open_io();
	struct loaded l;
	load(&l);
	cr_assert_eq(l.n, 12);
	cr_assert_eq(l.ents[1].type, RAFT_BARRIER);
	cr_assert_eq(sl_log_end_offset(sl_rio_log(&io)), 2 + 10 * 3);
	free_loaded(&l);
}

/* ---- Guards (each fails in a -Dguards=false build) ------------------ */

static struct raft_message sent;
static int nsent;

static int capture_send(struct sl_rnet *net, uint32_t group, const struct raft_message *msg)
{
	(void)net;
	(void)group;
	sent = *msg;
	nsent++;
	return 0;
}

static struct sl_rnet capture_net = { .send = capture_send };

static void open_io_net(uint64_t budget)
{
	struct sl_rio_config cfg = { .dir = "/sim/g1", .group = 1, .max_append_bytes = budget };
	sl_log_config_init(&cfg.log);
	cr_assert_eq(sl_rio_init(&io, &cfg, vfs, &env.base, &capture_net, on_fault, NULL), SL_OK);
	cr_assert_eq(io.init(&io, 1, "n1"), 0);
	io_open = true;
	nsent = 0;
}

static void send_done_cb(struct raft_io_send *req, int status)
{
	(void)status;
	(*(int *)req->data)++;
}

static void send_msg(struct raft_message *m)
{
	static struct raft_io_send req;
	static int fired;
	req.data = &fired;
	cr_assert_eq(io.send(&io, &req, m, send_done_cb), 0);
}

static struct appended pending_append;
static struct raft_io_append pending_req;

/* Bootstraps, loads, then appends two entries without letting them reach
 * the disk. */
static void two_entries_in_flight(struct raft_buffer bufs[2])
{
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	bufs[0] = command(1, 1, 0);
	struct sl_batch_header h;
	sl_batch_parse_header(bufs[0].base, bufs[0].len, UINT32_MAX, &h);
	bufs[1] = command(1, 1, 1);
	sl_batch_stamp(bufs[1].base, sl_batch_last_offset(&h) + 1, 1);
	struct raft_entry e[2] = { { .term = 1, .type = RAFT_COMMAND, .buf = bufs[0] },
				   { .term = 1, .type = RAFT_COMMAND, .buf = bufs[1] } };
	pending_req.data = &pending_append;
	cr_assert_eq(io.append(&io, &pending_req, e, 2, append_cb), 0);
}

Test(rio, guard_b_request_vote_advertises_only_durable_entries)
{
	open_io_net(0);
	struct raft_buffer bufs[2];
	two_entries_in_flight(bufs);
	struct raft_message m = { .type = RAFT_IO_REQUEST_VOTE };
	m.request_vote = (struct raft_request_vote){ .term = 2, .candidate_id = 1,
						     .last_log_index = 3, .last_log_term = 1 };
	send_msg(&m);
	cr_assert_eq(nsent, 1);
	cr_assert_eq(sent.request_vote.last_log_index, 1, "advertised %llu, durable 1",
		     (unsigned long long)sent.request_vote.last_log_index);
	cr_assert_eq(sent.request_vote.last_log_term, 1);
	sl_qenv_pump(&env);
	send_msg(&m);
	cr_assert_eq(sent.request_vote.last_log_index, 3);
	raft_free(bufs[0].base);
	raft_free(bufs[1].base);
}

static struct raft_message reply;

/* Plays libraft 0.15's follower: answers any AppendEntries with success
 * and its last stored index. */
static void follower_recv(struct raft_io *i, struct raft_message *msg)
{
	if (msg->type != RAFT_IO_APPEND_ENTRIES)
		return;
	reply = (struct raft_message){ .type = RAFT_IO_APPEND_ENTRIES_RESULT };
	reply.append_entries_result.term = msg->append_entries.term;
	reply.append_entries_result.last_log_index = 5;
	send_msg(&reply);
	(void)i;
}

static int ticks, timeout_nows;

static void count_tick(struct raft_io *i)
{
	(void)i;
	ticks++;
}

static void count_recv(struct raft_io *i, struct raft_message *msg)
{
	(void)i;
	if (msg->type == RAFT_IO_TIMEOUT_NOW)
		timeout_nows++;
}

Test(rio, guard_h_success_replies_report_only_checked_entries)
{
	open_io_net(0);
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	/* Entries 2..5 are durable here (from an older leader, say). */
	static struct raft_io_append reqs[4];
	static struct appended done[4];
	for (int k = 0; k < 4; k++) {
		struct raft_buffer b = command(1, 1, k);
		struct raft_entry e = { .term = 1, .type = RAFT_COMMAND, .buf = b };
		reqs[k].data = &done[k];
		cr_assert_eq(io.append(&io, &reqs[k], &e, 1, append_cb), 0);
		sl_qenv_pump(&env);
		raft_free(b.base);
	}
	cr_assert_eq(sl_rio_last_stored(&io), 5);
	nsent = 0;
	cr_assert_eq(io.start(&io, 100, count_tick, follower_recv), 0);
	sl_qenv_pump(&env);
	/* Nothing was checked against this term's leader yet: a success
	 * reply naming index 5 is not sent. */
	struct raft_message r0 = { .type = RAFT_IO_APPEND_ENTRIES_RESULT };
	r0.append_entries_result = (struct raft_append_entries_result){ .term = 1, .last_log_index = 5 };
	send_msg(&r0);
	cr_assert_eq(nsent, 0, "an unchecked success reply was sent");
	/* A heartbeat with prev = 2 checks up to 2, and no further. */
	struct raft_message ae = { .type = RAFT_IO_APPEND_ENTRIES };
	ae.append_entries = (struct raft_append_entries){ .term = 1, .prev_log_index = 2,
							  .prev_log_term = 1 };
	sl_rio_deliver(&io, &ae);
	cr_assert_eq(nsent, 1);
	cr_assert_eq(sent.append_entries_result.last_log_index, 2, "reported %llu, checked 2",
		     (unsigned long long)sent.append_entries_result.last_log_index);
	sl_qenv_pump(&env);
}

Test(rio, guard_d_no_candidacy_or_timeout_now_while_persisting)
{
	open_io_net(0);
	struct raft_buffer bufs[2];
	two_entries_in_flight(bufs);
	cr_assert_eq(io.start(&io, 100, count_tick, count_recv), 0);
	ticks = timeout_nows = 0;
	sl_rio_tick(&io);
	cr_assert_eq(ticks, 0, "a follower ticked with appends in flight");
	struct raft_message tn = { .type = RAFT_IO_TIMEOUT_NOW };
	sl_rio_deliver(&io, &tn);
	cr_assert_eq(timeout_nows, 0, "TimeoutNow acted on with appends in flight");
	sl_qenv_pump(&env);
	cr_assert_eq(timeout_nows, 1, "the held TimeoutNow was not delivered");
	sl_rio_tick(&io);
	cr_assert_eq(ticks, 1);
	raft_free(bufs[0].base);
	raft_free(bufs[1].base);
}

Test(rio, append_entries_are_capped_at_the_byte_budget)
{
	open_io_net(1000);
	struct raft_entry e[10];
	uint8_t payload[10][300];
	memset(payload, 7, sizeof(payload));
	for (int i = 0; i < 10; i++)
		e[i] = (struct raft_entry){ .term = 1, .type = RAFT_COMMAND,
					    .buf = { payload[i], sizeof(payload[i]) } };
	struct raft_message m = { .type = RAFT_IO_APPEND_ENTRIES };
	m.append_entries = (struct raft_append_entries){ .term = 1, .entries = e, .n_entries = 10 };
	send_msg(&m);
	cr_assert_eq(sent.append_entries.n_entries, 3);
	/* One entry over the budget still goes, alone. */
	close_io();
	open_io_net(100);
	send_msg(&m);
	cr_assert_eq(sent.append_entries.n_entries, 1);
}

static void apply_any_cb(struct raft_apply *req, int status, void *result)
{
	(void)req;
	(void)status;
	(void)result;
	apply_done++;
}

/* libraft 0.15 truncates its log from a failed append's index on, without
 * checking the index against its end (assertions compiled out): appends
 * cancelled at close must go newest first, or its heap is corrupted (ASan
 * reports a double free). */
Test(rio, close_with_appends_queued_cancels_them_newest_first)
{
	struct raft r;
	struct raft_fsm fsm;
	tl_fsm_init(&fsm, &applied);
	open_io();
	cr_assert_eq(raft_init(&r, &io, &fsm, 1, "n1"), 0);
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, 1, "n1", RAFT_VOTER);
	cr_assert_eq(raft_bootstrap(&r, &conf), 0);
	raft_configuration_close(&conf);
	cr_assert_eq(raft_start(&r), 0);
	sl_qenv_pump(&env);
	cr_assert(sl_rio_leader_ready(&io));
	static struct raft_apply reqs[6];
	apply_done = 0;
	for (int k = 0; k < 6; k++) {
		struct raft_buffer b = command(r.current_term, 1, k);
		cr_assert_eq(raft_apply(&r, &reqs[k], &b, 1, apply_any_cb), 0);
	}
	raft_close(&r, raft_closed);
	sl_qenv_pump(&env);
	io_open = false;
	cr_assert_eq(apply_done, 6, "every apply request answered");
}

Test(rio, guard_f_membership_stays_fixed_after_bootstrap)
{
	open_io();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, 1, "n1", RAFT_VOTER);
	raft_configuration_add(&conf, 2, "n2", RAFT_VOTER);
	struct raft_buffer enc;
	cr_assert_eq(raft_configuration_encode(&conf, &enc), 0);
	raft_configuration_close(&conf);
	struct raft_entry e = { .term = 1, .type = RAFT_CHANGE, .buf = enc };
	struct raft_io_append req;
	struct appended d = { 0 };
	req.data = &d;
	cr_assert_eq(io.append(&io, &req, &e, 1, append_cb), 0);
	sl_qenv_pump(&env);
	raft_free(enc.base);
	cr_assert_eq(faults, 1, "a membership change was stored");
	close_io();
	cr_assert_eq(d.status, RAFT_CANCELED);
}

/* ---- Installing a snapshot beyond the log --------------------------- */

static struct raft_io *fetch_src;

/* The leader's side of the bulk copy, as a test double: whole batches of
 * its log from offset, up to end. */
static int fetch_from_leader(struct sl_rnet *net, uint32_t group, raft_id from, int64_t offset,
			     int64_t end, uint8_t **buf, size_t *len)
{
	(void)net;
	(void)group;
	(void)from;
	struct sl_slice s;
	int rv = sl_log_read(sl_rio_log(fetch_src), offset, 4096, &s);
	if (rv != SL_OK)
		return rv;
	uint8_t *b = malloc(s.len);
	rv = sl_slice_read(&s, b);
	sl_slice_release(&s);
	size_t n = 0;
	while (rv == SL_OK && n < s.len) { /* stop at end */
		struct sl_batch_header h;
		sl_batch_parse_header(b + n, s.len - n, UINT32_MAX, &h);
		if (sl_batch_last_offset(&h) >= end)
			break;
		n += sl_batch_total_size(&h);
	}
	*buf = b;
	*len = n;
	return rv;
}

/* Appends 10 COMMAND entries of 3 records (term 1) and lets each reach
 * the disk. */
static void append_ten_commands(void)
{
	for (int k = 0; k < 10; k++) {
		struct raft_buffer b = command(1, 3, k);
		struct raft_entry e = { .term = 1, .type = RAFT_COMMAND, .buf = b };
		struct raft_io_append req;
		struct appended d = { 0 };
		req.data = &d;
		cr_assert_eq(io.append(&io, &req, &e, 1, append_cb), 0);
		sl_qenv_pump(&env);
		raft_free(b.base);
	}
}

/* Asserts that logs a and b hold the same batches, byte for byte, below
 * offset end. */
static void assert_same_log(sl_log *a, sl_log *b, int64_t end)
{
	for (int64_t off = 0; off < end;) {
		struct sl_slice sa, sb;
		cr_assert_eq(sl_log_read(a, off, 1 << 20, &sa), SL_OK);
		cr_assert_eq(sl_log_read(b, off, 1 << 20, &sb), SL_OK);
		cr_assert_eq(sa.first_offset, sb.first_offset);
		uint64_t n = sa.len < sb.len ? sa.len : sb.len;
		uint8_t *x = malloc(sa.len), *y = malloc(sb.len);
		sl_slice_read(&sa, x);
		sl_slice_read(&sb, y);
		cr_assert_eq(memcmp(x, y, n), 0, "bytes differ at offset %lld", (long long)off);
		off = sa.next_offset < sb.next_offset ? sa.next_offset : sb.next_offset;
		free(x);
		free(y);
		sl_slice_release(&sa);
		sl_slice_release(&sb);
	}
}

static void closed2_cb(struct raft_io *i)
{
	*(bool *)i->data = false;
}

Test(rio, installed_snapshot_pulls_the_missing_batches_from_the_leader)
{
	/* The leader: 10 entries, a snapshot at index 8. */
	open_io();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	append_ten_commands();
	struct raft_snapshot s = { .index = 8, .term = 1, .configuration_index = 1 };
	raft_configuration_init(&s.configuration);
	raft_configuration_add(&s.configuration, 1, "n1", RAFT_VOTER);
	char fsm[] = "state";
	struct raft_buffer fb = { fsm, sizeof(fsm) };
	s.bufs = &fb;
	s.n_bufs = 1;
	struct raft_io_snapshot_put put;
	int put_status = 0;
	put.data = &put_status;
	cr_assert_eq(io.snapshot_put(&io, 2, &put, &s, snap_put_cb), 0);
	sl_qenv_pump(&env);
	raft_configuration_close(&s.configuration);
	struct raft_io_snapshot_get get;
	struct raft_snapshot *got = NULL;
	get.data = &got;
	cr_assert_eq(io.snapshot_get(&io, &get, snap_get_cb), 0);
	sl_qenv_pump(&env);
	cr_assert_not_null(got);

	/* A follower that has only entry 1 installs it. */
	static struct raft_io io2;
	bool io2_open = true;
	struct sl_rnet net = { .fetch = fetch_from_leader };
	struct sl_rio_config cfg = { .dir = "/sim/g2", .group = 1 };
	sl_log_config_init(&cfg.log);
	cfg.log.segment_bytes = 4096;
	fetch_src = &io;
	cr_assert_eq(sl_rio_init(&io2, &cfg, vfs, &env.base, &net, on_fault, NULL), SL_OK);
	io2.data = NULL;
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, 1, "n1", RAFT_VOTER);
	cr_assert_eq(io2.bootstrap(&io2, &conf), 0);
	raft_configuration_close(&conf);
	memset(&l, 0, sizeof(l));
	cr_assert_eq(io2.load(&io2, &l.term, &l.vote, &l.snap, &l.start, &l.ents, &l.n), 0);
	free_loaded(&l);
	struct raft_io_snapshot_put put2;
	int put2_status = 0;
	put2.data = &put2_status;
	cr_assert_eq(io2.snapshot_put(&io2, 0, &put2, got, snap_put_cb), 0);
	sl_qenv_pump(&env);
	cr_assert_eq(put2_status, 1, "install status %d", put2_status - 1);
	cr_assert_eq(faults, 0);
	sl_log *a = sl_rio_log(&io), *b = sl_rio_log(&io2);
	/* The follower's log is the leader's, byte for byte, up to the
	 * offset after entry 8. */
	int64_t anchor = sl_log_end_offset(b);
	cr_assert_eq(anchor, 1 + 7 * 3, "entry 8 ends before offset 22, not %lld", (long long)anchor);
	assert_same_log(a, b, anchor);
	raft_configuration_close(&got->configuration);
	raft_free(got->bufs[0].base);
	raft_free(got->bufs);
	raft_free(got);
	io2.data = &io2_open;
	io2.close(&io2, closed2_cb);
	sl_qenv_pump(&env);
	cr_assert(!io2_open);
}

/* ---- Crashes at every step of truncate and snapshot_put ------------- */

/* Runs a scenario on a fresh disk, the disk dying after `die` operations
 * of the part under test (counted from its start); returns the number of
 * operations that part used when die < 0. */
typedef void (*scenario_fn)(int phase);

static uint64_t run_scenario(scenario_fn fn, int64_t die)
{
	sim_free(sd);
	sd = sim_new();
	vfs = sim_vfs(sd);
	vfs->mkdir(vfs, "/sim", 0755);
	faults = 0;
	fn(0); /* set up, durably */
	uint64_t before = sim_ops(sd);
	if (die >= 0)
		sim_crash_after(sd, die);
	fn(1); /* the part under test */
	uint64_t used = sim_ops(sd) - before;
	close_io();
	sim_crash(sd);
	return used;
}

static struct raft_buffer cbufs[8];
static int cbufs_n;

static void append_entries_now(int n, raft_term term)
{
	for (int k = 0; k < n; k++) {
		struct raft_buffer b = command(term, 2, cbufs_n);
		cbufs[cbufs_n++] = b;
		struct raft_entry e = { .term = term, .type = RAFT_COMMAND, .buf = b };
		static struct raft_io_append reqs[8];
		static struct appended done[8];
		reqs[k].data = &done[k];
		cr_assert_eq(io.append(&io, &reqs[k], &e, 1, append_cb), 0);
		sl_qenv_pump(&env);
	}
}

static void free_cbufs(void)
{
	for (int i = 0; i < cbufs_n; i++)
		raft_free(cbufs[i].base);
	cbufs_n = 0;
}

static void truncate_scenario(int phase)
{
	if (phase == 0) {
		open_io();
		bootstrap();
		struct loaded l;
		load(&l);
		free_loaded(&l);
		append_entries_now(4, 1); /* entries 2..5 */
		return;
	}
	/* A leader of term 2 overwrites; when the disk died under set_term,
	 * libraft stops there. */
	if (io.set_term(&io, 2) != 0)
		return;
	cr_assert_eq(io.truncate(&io, 3), 0); /* drops 3..5 */
	sl_qenv_pump(&env);
	append_entries_now(2, 2); /* new 3..4, term 2 */
}

Test(rio, load_after_a_crash_at_every_step_of_truncate)
{
	uint64_t total = run_scenario(truncate_scenario, -1);
	free_cbufs();
	for (uint64_t k = 0; k <= total; k++) {
		run_scenario(truncate_scenario, (int64_t)k);
		open_io();
		struct loaded l;
		load(&l);
		/* Entries 1..2 always; then either the old 3..5 (the cut never
		 * reached the disk), a prefix of them, or a prefix of the new
		 * term-2 entries: never old and new mixed. */
		cr_assert_geq(l.n, 2, "crash at op %llu lost committed entries", (unsigned long long)k);
		cr_assert_eq(memcmp(l.ents[1].buf.base, cbufs[0].base, cbufs[0].len), 0);
		bool new_seen = false;
		for (size_t i = 2; i < l.n; i++) {
			if (l.ents[i].term == 2) {
				new_seen = true;
				cr_assert_eq(memcmp(l.ents[i].buf.base, cbufs[4 + i - 2].base, cbufs[4 + i - 2].len), 0);
			} else {
				cr_assert(!new_seen, "crash at op %llu: an old entry after a new one",
					  (unsigned long long)k);
				cr_assert_eq(memcmp(l.ents[i].buf.base, cbufs[i - 1].base, cbufs[i - 1].len), 0);
			}
		}
		free_loaded(&l);
		close_io();
		free_cbufs();
	}
}

static void snapshot_scenario(int phase)
{
	if (phase == 0) {
		open_io();
		bootstrap();
		struct loaded l;
		load(&l);
		free_loaded(&l);
		append_entries_now(5, 1); /* entries 2..6 */
		return;
	}
	put_snapshot(4);
}

Test(rio, load_after_a_crash_at_every_step_of_snapshot_put)
{
	uint64_t total = run_scenario(snapshot_scenario, -1);
	free_cbufs();
	for (uint64_t k = 0; k <= total; k++) {
		run_scenario(snapshot_scenario, (int64_t)k);
		open_io();
		struct loaded l;
		load(&l);
		/* Either no snapshot and entries 1..6, or the snapshot at 4
		 * and entries 5..6: the same log either way. */
		if (l.snap == NULL) {
			cr_assert_eq(l.start, 1);
			cr_assert_eq(l.n, 6, "crash at op %llu: %zu entries", (unsigned long long)k, l.n);
		} else {
			cr_assert_eq(l.snap->index, 4);
			cr_assert_eq(l.start, 5);
			cr_assert_eq(l.n, 2, "crash at op %llu: %zu entries", (unsigned long long)k, l.n);
			cr_assert_eq(memcmp(l.ents[0].buf.base, cbufs[3].base, cbufs[3].len), 0);
		}
		free_loaded(&l);
		close_io();
		free_cbufs();
	}
}

/* libraft 0.15 (and 0.18) answers an InstallSnapshot whose entries it holds
 * in memory with success at once, durable or not: the reply must not
 * report more than is durable. */
static void install_recv(struct raft_io *i, struct raft_message *msg)
{
	(void)i;
	if (msg->type != RAFT_IO_INSTALL_SNAPSHOT)
		return;
	reply = (struct raft_message){ .type = RAFT_IO_APPEND_ENTRIES_RESULT };
	reply.append_entries_result.term = msg->install_snapshot.term;
	reply.append_entries_result.last_log_index = msg->install_snapshot.last_index;
	send_msg(&reply);
}

Test(rio, guard_h_install_success_reports_only_durable_entries)
{
	open_io_net(0);
	struct raft_buffer bufs[2];
	two_entries_in_flight(bufs); /* entries 2..3 not yet durable */
	cr_assert_eq(io.start(&io, 100, count_tick, install_recv), 0);
	nsent = 0;
	struct raft_message is = { .type = RAFT_IO_INSTALL_SNAPSHOT };
	is.install_snapshot.term = 1;
	is.install_snapshot.last_index = 3;
	is.install_snapshot.last_term = 1;
	sl_rio_deliver(&io, &is);
	cr_assert_eq(nsent, 1);
	cr_assert_eq(sent.append_entries_result.last_log_index, 1, "reported %llu, durable 1",
		     (unsigned long long)sent.append_entries_result.last_log_index);
	sl_qenv_pump(&env);
	raft_free(bufs[0].base);
	raft_free(bufs[1].base);
}

Test(rio, guard_prevote_refusals_carry_the_higher_term)
{
	open_io_net(0);
	struct loaded l;
	load(&l);
	free_loaded(&l);
	cr_assert_eq(io.set_term(&io, 12), 0);
	struct raft_message m = { .type = RAFT_IO_REQUEST_VOTE_RESULT };
	m.request_vote_result = (struct raft_request_vote_result){
		.term = 8, .vote_granted = false, .pre_vote = raft_tribool_true };
	send_msg(&m);
	cr_assert_eq(sent.request_vote_result.term, 12, "a behind candidate would never catch up");
	/* A granted pre-vote keeps the request's term. */
	m.request_vote_result.vote_granted = true;
	send_msg(&m);
	cr_assert_eq(sent.request_vote_result.term, 8);
	sl_qenv_pump(&env);
}

/* ---- A group seeded with another group's data ------------------------ */

Test(rio, a_seeded_group_starts_its_raft_log_after_the_copied_history)
{
	/* The source: entry 1 (offset 0) and 10 commands of 3 records. */
	open_io();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	append_ten_commands();
	sl_log *src = sl_rio_log(&io);
	int64_t end = sl_log_end_offset(src);
	cr_assert_eq(end, 31);
	fetch_src = &io;
	struct sl_rnet net = { .fetch = fetch_from_leader };
	struct sl_log_config lc;
	sl_log_config_init(&lc);
	lc.segment_bytes = 4096;
	char errmsg[SL_ERRMSG_SIZE];

	/* A source that ends early, and an end inside a batch, are refused
	 * with a reason; neither leaves a group behind. */
	cr_assert_eq(sl_rio_seed("/sim/early", &lc, vfs, &net, 1, 1, end + 5, errmsg),
		     SL_EOFFSET_OUT_OF_RANGE, "%s", errmsg);
	cr_assert(strstr(errmsg, "from offset 31 below 36") != NULL, "%s", errmsg);
	cr_assert_eq(sl_rio_seed("/sim/mid", &lc, vfs, &net, 1, 1, end - 1, errmsg),
		     SL_EOFFSET_OUT_OF_RANGE, "%s", errmsg);

	cr_assert_eq(sl_rio_seed("/sim/g3", &lc, vfs, &net, 1, 1, end, errmsg), SL_OK, "%s", errmsg);
	cr_assert_eq(sl_rio_seed("/sim/g3", &lc, vfs, &net, 1, 1, end, errmsg), SL_EEXISTS);
	/* The early one is redone from the start once the source has it. */
	cr_assert_eq(sl_rio_seed("/sim/early", &lc, vfs, &net, 1, 1, end, errmsg), SL_OK, "%s",
		     errmsg);

	/* Bootstrapped, the new group's first entry lands at `end`, and the
	 * history below it is the source's, byte for byte. */
	static struct raft_io io3;
	bool io3_open = true;
	struct sl_rio_config cfg = { .dir = "/sim/g3", .group = 3, .log = lc };
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(sl_rio_init(&io3, &cfg, vfs, &env.base, &net, on_fault, NULL), SL_OK);
		io3.data = NULL;
		if (round == 0) {
			struct raft_configuration conf;
			raft_configuration_init(&conf);
			raft_configuration_add(&conf, 1, "n1", RAFT_VOTER);
			raft_configuration_add(&conf, 4, "n4", RAFT_VOTER);
			cr_assert_eq(io3.bootstrap(&io3, &conf), 0, "%s", io3.errmsg);
			raft_configuration_close(&conf);
		}
		memset(&l, 0, sizeof(l));
		cr_assert_eq(io3.load(&io3, &l.term, &l.vote, &l.snap, &l.start, &l.ents, &l.n), 0,
			     "%s", io3.errmsg);
		cr_assert_eq(l.start, 1);
		cr_assert_eq(l.n, 1, "only the bootstrap entry is Raft's, not %zu", l.n);
		cr_assert_eq(l.ents[0].type, RAFT_CHANGE);
		free_loaded(&l);
		cr_assert_eq(sl_rio_next_offset(&io3), end + 1);
		assert_same_log(src, sl_rio_log(&io3), end);
		io3.data = &io3_open;
		io3_open = true;
		io3.close(&io3, closed2_cb);
		sl_qenv_pump(&env);
		cr_assert(!io3_open);
	}
}

/* ---- The shared term/vote store (rmeta.h): the send gate ------------ */

static struct sl_rmeta *meta;
static int gated_sends, early_sends;

/* Every message that leaves must find this group's term and vote durable. */
static int gate_send(struct sl_rnet *net, uint32_t group, const struct raft_message *msg)
{
	(void)net;
	(void)msg;
	uint64_t t, v, seq;
	sl_rmeta_get(meta, group, &t, &v, &seq);
	if (!sl_rmeta_durable(meta, seq))
		early_sends++;
	gated_sends++;
	return 0;
}

static struct sl_rnet gate_net = { .send = gate_send };

static void open_io_meta(void)
{
	char errmsg[SL_ERRMSG_SIZE] = "";
	cr_assert_eq(sl_rmeta_open("/sim/meta", vfs, &env.base, &meta, errmsg), SL_OK, "%s", errmsg);
	struct sl_rio_config cfg = { .dir = "/sim/g1", .group = 1, .meta = meta };
	sl_log_config_init(&cfg.log);
	cr_assert_eq(sl_rio_init(&io, &cfg, vfs, &env.base, &gate_net, on_fault, NULL), SL_OK);
	cr_assert_eq(io.init(&io, 1, "n1"), 0);
	io_open = true;
	gated_sends = early_sends = 0;
}

static void meta_closed(void *arg)
{
	*(bool *)arg = true;
}

/* Closes the group and the store; with crash, the disk then keeps only
 * what was synced. */
static void close_io_meta(bool crash)
{
	if (crash)
		sim_crash_after(sd, 0);
	close_io();
	bool done = false;
	sl_rmeta_close(meta, meta_closed, &done);
	sl_qenv_pump(&env);
	cr_assert(done);
	if (crash) {
		sim_crash(sd);
		sim_crash_after(sd, -1);
	}
}

static int cancelled_sends;

static void gate_send_cb(struct raft_io_send *req, int status)
{
	(void)req;
	if (status == RAFT_CANCELED)
		cancelled_sends++;
}

/* What a campaign leaves in flight: its RequestVote and its append. */
struct campaign {
	struct raft_io_send req;
	struct raft_io_append areq;
	struct appended a;
	struct raft_buffer buf; /* the appended entry's, freed by the test */
};

/* A candidate's term and vote, its RequestVote and an append, as libraft
 * issues them in one call. */
static void campaign(struct campaign *c)
{
	memset(c, 0, sizeof(*c));
	cancelled_sends = 0;
	cr_assert_eq(io.set_term(&io, 2), 0);
	cr_assert_eq(io.set_vote(&io, 1), 0);
	struct raft_message m = { .type = RAFT_IO_REQUEST_VOTE };
	m.request_vote = (struct raft_request_vote){ .term = 2, .candidate_id = 1,
						     .last_log_index = 1, .last_log_term = 1 };
	cr_assert_eq(io.send(&io, &c->req, &m, gate_send_cb), 0);
	c->buf = command(2, 1, 0);
	struct raft_entry e = { .term = 2, .type = RAFT_COMMAND, .buf = c->buf };
	c->areq.data = &c->a;
	cr_assert_eq(io.append(&io, &c->areq, &e, 1, append_cb), 0);
}

/* Opens the group again on the store and checks what it loads. */
static void reopen_expect(raft_term term, raft_id vote, size_t n, const char *why)
{
	open_io_meta();
	struct loaded l;
	load(&l);
	cr_assert_eq(l.term, term, "%s", why);
	cr_assert_eq(l.vote, vote, "%s", why);
	cr_assert_eq(l.n, n, "%s", why);
	free_loaded(&l);
	close_io_meta(false);
}

/* A bootstrapped, loaded group on the shared store, its term durable. */
static void bootstrapped_with_meta(void)
{
	open_io_meta();
	bootstrap();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	sl_qenv_pump(&env);
}

Test(rio, shared_meta_holds_sends_and_writes_until_term_and_vote_are_durable)
{
	bootstrapped_with_meta();
	struct campaign c;
	campaign(&c);
	cr_assert_eq(gated_sends, 0, "a message left before its term was durable");
	cr_assert_eq(sl_log_end_offset(sl_rio_log(&io)), 1);
	sl_qenv_pump(&env);
	cr_assert_eq(gated_sends, 1);
	cr_assert_eq(early_sends, 0);
	cr_assert(c.a.fired && c.a.status == 0);
	cr_assert_eq(sl_log_end_offset(sl_rio_log(&io)), 2);
	raft_free(c.buf.base);
	close_io_meta(true);
	reopen_expect(2, 1, 2, "term, vote and entry made durable");
}

Test(rio, shared_meta_a_crash_before_the_flush_leaves_nothing_that_depends_on_it)
{
	bootstrapped_with_meta();
	struct campaign c;
	campaign(&c);
	close_io_meta(true);
	raft_free(c.buf.base);
	cr_assert_eq(gated_sends, 0);
	cr_assert_eq(cancelled_sends, 1, "the held send was not ended at close");
	reopen_expect(1, 0, 1, "an entry of term 2 reached the log before term 2 did");
}

Test(rio, shared_meta_a_bootstrap_whose_term_record_was_lost_loads_at_term_1)
{
	open_io_meta();
	bootstrap(); /* the CHANGE entry is synced, the term record is not */
	close_io_meta(true);
	reopen_expect(1, 0, 1, "the bootstrap's term came back");
}

Test(rio, shared_meta_a_failed_flush_fences_the_group)
{
	bootstrapped_with_meta();
	struct campaign c;
	campaign(&c);
	sim_fail_after(sd, 0, EIO);
	sl_qenv_pump(&env);
	sim_fail_after(sd, -1, 0);
	cr_assert_eq(faults, 1, "the group was not fenced");
	cr_assert_eq(gated_sends, 0);
	cr_assert(!c.a.fired);
	close_io_meta(false);
	raft_free(c.buf.base);
	cr_assert_eq(cancelled_sends, 1);
	cr_assert(c.a.fired, "the held append was not ended at close");
}

Test(rio, a_term_behind_the_log_is_refused_at_load)
{
	bootstrapped_with_meta();
	struct campaign c;
	campaign(&c);
	sl_qenv_pump(&env);
	raft_free(c.buf.base);
	close_io_meta(false);
	/* The store is lost (a wrong restore, a deleted file). */
	cr_assert_eq(vfs->unlink(vfs, "/sim/meta"), 0);
	open_io_meta();
	raft_term term;
	raft_id vote;
	struct raft_snapshot *snap;
	raft_index start;
	struct raft_entry *ents;
	size_t n;
	cr_assert_eq(io.load(&io, &term, &vote, &snap, &start, &ents, &n), RAFT_CORRUPT);
	cr_assert(strstr(io.errmsg, "stored term 0 is behind the log's last term 2") != NULL, "%s",
		  io.errmsg);
	close_io_meta(false);
}

Test(rio, bootstrap_over_a_term_without_a_log_keeps_the_term_and_vote)
{
	/* What a crash between bootstrap's two writes leaves (or, with the
	 * shared store, a deleted group's id reused): a term, no log. */
	open_io();
	struct loaded l;
	load(&l);
	free_loaded(&l);
	cr_assert_eq(io.set_term(&io, 3), 0);
	cr_assert_eq(io.set_vote(&io, 2), 0);
	bootstrap();
	close_io();
	open_io();
	load(&l);
	cr_assert_eq(l.term, 3);
	cr_assert_eq(l.vote, 2, "a vote of term 3 was forgotten: it could vote twice");
	cr_assert_eq(l.n, 1);
	cr_assert_eq(l.ents[0].type, RAFT_CHANGE);
	free_loaded(&l);
}
