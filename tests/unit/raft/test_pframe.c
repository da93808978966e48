/* The peer protocol's frame codec (raft/pframe.h): round trips of every
 * Raft message type and of the hello, the bytes the header specifies,
 * peek, sizes, and hostile input: every truncation, single-byte
 * corruptions and hand-made malformed frames are rejected with
 * SL_EINVALID_REQUEST or decode to something that owns its memory (freed
 * with sl_rmsg_discard) and encodes again to the same message.
 *
 * Frames under test are copied into buffers of their exact size, so that
 * AddressSanitizer (build-asan) catches a read past the end. */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "pframe.h"
#include "rio.h"
#include "testlib.h"

TestSuite(pframe, .timeout = 30);

#define FROM_ID 9
static const char FROM_ADDR[] = "10.1.2.3:9093";
#define MAX_FRAME (64u << 20)

/* Where a failure happened, printed with every assertion of a loop. */
static char where[200] = "-";

#define check(cond, fmt, ...) cr_assert(cond, "[%s] " fmt, where, ##__VA_ARGS__)

static void set_where(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_where(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(where, sizeof(where), fmt, ap);
	va_end(ap);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A copy of len bytes in a buffer of exactly that size (at least 1). */
static uint8_t *exact_copy(const uint8_t *p, size_t len)
{
	uint8_t *c = malloc(len > 0 ? len : 1);
	cr_assert_not_null(c);
	if (len > 0)
		memcpy(c, p, len);
	return c;
}

/* ---- a frame builder that follows the header's grammar ---- */

struct raw {
	uint8_t *p;
	size_t n, cap;
};

static void raw_put(struct raw *r, const void *b, size_t len)
{
	if (r->n + len > r->cap) {
		size_t cap = r->cap ? r->cap : 64;
		while (cap < r->n + len)
			cap *= 2;
		r->p = realloc(r->p, cap);
		cr_assert_not_null(r->p);
		r->cap = cap;
	}
	if (len > 0)
		memcpy(r->p + r->n, b, len);
	r->n += len;
}

static void raw_u8(struct raw *r, unsigned v)
{
	uint8_t b = (uint8_t)v;
	raw_put(r, &b, 1);
}

static void raw_uv(struct raw *r, uint64_t v)
{
	while (v >= 0x80) {
		raw_u8(r, (unsigned)(v & 0x7f) | 0x80);
		v >>= 7;
	}
	raw_u8(r, (unsigned)v);
}

/* Starts a frame of the given kind; raw_end fills in the length. */
static void raw_begin(struct raw *r, unsigned kind)
{
	r->n = 0;
	raw_put(r, "\0\0\0\0", 4);
	raw_u8(r, kind);
}

static void raw_end(struct raw *r)
{
	put_be32(r->p, (uint32_t)(r->n - SL_PFRAME_HEADER));
}

static void raw_free(struct raw *r)
{
	free(r->p);
	memset(r, 0, sizeof(*r));
}

/* The fields of msg after the type byte, as the header lists them. For
 * InstallSnapshot only up to the configuration. */
static void raw_fields(struct raw *r, const struct raft_message *m)
{
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES: {
		const struct raft_append_entries *ae = &m->append_entries;
		raw_uv(r, ae->term);
		raw_uv(r, ae->prev_log_index);
		raw_uv(r, ae->prev_log_term);
		raw_uv(r, ae->leader_commit);
		raw_uv(r, ae->n_entries);
		for (unsigned i = 0; i < ae->n_entries; i++) {
			raw_uv(r, ae->entries[i].term);
			raw_u8(r, ae->entries[i].type);
			raw_uv(r, ae->entries[i].buf.len);
		}
		for (unsigned i = 0; i < ae->n_entries; i++)
			raw_put(r, ae->entries[i].buf.base, ae->entries[i].buf.len);
		break;
	}
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		raw_uv(r, m->append_entries_result.term);
		raw_uv(r, m->append_entries_result.rejected);
		raw_uv(r, m->append_entries_result.last_log_index);
		break;
	case RAFT_IO_REQUEST_VOTE:
		raw_uv(r, m->request_vote.term);
		raw_uv(r, m->request_vote.candidate_id);
		raw_uv(r, m->request_vote.last_log_index);
		raw_uv(r, m->request_vote.last_log_term);
		raw_uv(r, (m->request_vote.disrupt_leader ? 1u : 0u) |
				  (m->request_vote.pre_vote ? 2u : 0u));
		break;
	case RAFT_IO_REQUEST_VOTE_RESULT:
		raw_uv(r, m->request_vote_result.term);
		raw_uv(r, (m->request_vote_result.vote_granted ? 1u : 0u) |
				  (unsigned)m->request_vote_result.pre_vote << 1);
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
		raw_uv(r, m->install_snapshot.term);
		raw_uv(r, m->install_snapshot.last_index);
		raw_uv(r, m->install_snapshot.last_term);
		raw_uv(r, m->install_snapshot.conf_index);
		break;
	case RAFT_IO_TIMEOUT_NOW:
		raw_uv(r, m->timeout_now.term);
		raw_uv(r, m->timeout_now.last_log_index);
		raw_uv(r, m->timeout_now.last_log_term);
		break;
	default:
		cr_assert_fail("type %u", m->type);
	}
}

/* A whole message frame as the header specifies it (not InstallSnapshot,
 * whose configuration encoding the header leaves open). */
static void raw_message(struct raw *r, uint32_t group, const struct raft_message *m)
{
	raw_begin(r, SL_PFRAME_MESSAGE);
	raw_uv(r, group);
	raw_u8(r, m->type);
	raw_fields(r, m);
	raw_end(r);
}

/* ---- messages to send ---- */

/* An AppendEntries whose entries and their bytes are malloc'd; free with
 * ae_free. */
static void ae_make(struct raft_message *m, unsigned n, const size_t *lens, uint64_t *seed)
{
	memset(m, 0, sizeof(*m));
	m->type = RAFT_IO_APPEND_ENTRIES;
	m->append_entries.term = 7;
	m->append_entries.prev_log_index = 100;
	m->append_entries.prev_log_term = 6;
	m->append_entries.leader_commit = 99;
	m->append_entries.n_entries = n;
	if (n == 0)
		return;
	struct raft_entry *ents = calloc(n, sizeof(*ents));
	cr_assert_not_null(ents);
	for (unsigned i = 0; i < n; i++) {
		ents[i].term = 1 + tl_rand(seed) % 7;
		ents[i].type = (unsigned short)(RAFT_COMMAND + i % 3);
		ents[i].buf.len = lens[i];
		ents[i].buf.base = malloc(lens[i] > 0 ? lens[i] : 1);
		cr_assert_not_null(ents[i].buf.base);
		tl_fill_random(seed, ents[i].buf.base, lens[i]);
	}
	m->append_entries.entries = ents;
}

static void ae_free(struct raft_message *m)
{
	for (unsigned i = 0; i < m->append_entries.n_entries; i++)
		free(m->append_entries.entries[i].buf.base);
	free(m->append_entries.entries);
	m->append_entries.entries = NULL;
}

struct srv {
	raft_id id;
	int role;
	const char *address;
};

/* An InstallSnapshot with the given servers and len random data bytes;
 * free with is_free. */
static void is_make(struct raft_message *m, const struct srv *srvs, unsigned n, size_t len,
		    uint64_t *seed)
{
	memset(m, 0, sizeof(*m));
	m->type = RAFT_IO_INSTALL_SNAPSHOT;
	struct raft_install_snapshot *is = &m->install_snapshot;
	is->term = 12;
	is->last_index = 4096;
	is->last_term = 11;
	is->conf_index = 4000;
	raft_configuration_init(&is->conf);
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(raft_configuration_add(&is->conf, srvs[i].id, srvs[i].address,
						    srvs[i].role),
			     0);
	is->data.len = len;
	is->data.base = malloc(len > 0 ? len : 1);
	cr_assert_not_null(is->data.base);
	tl_fill_random(seed, is->data.base, len);
}

static void is_free(struct raft_message *m)
{
	raft_configuration_close(&m->install_snapshot.conf);
	free(m->install_snapshot.data.base);
	m->install_snapshot.data.base = NULL;
}

static const struct srv three_servers[] = {
	{ 1, RAFT_VOTER, "10.0.0.1:9093" },
	{ 2, RAFT_STANDBY, "node-two.example.internal:19093" },
	{ 300, RAFT_SPARE, "[fe80::1]:9093" },
};

/* ---- encode, decode, compare ---- */

static struct sl_pbuf encode(uint32_t group, const struct raft_message *m)
{
	struct sl_pbuf pb = { 0 };
	int rv = sl_pframe_message(&pb, group, m);
	check(rv == SL_OK, "encode: %d", rv);
	check(pb.len >= SL_PFRAME_HEADER + 3 && pb.len <= pb.cap, "len %zu cap %zu", pb.len,
	      pb.cap);
	check(get_be32(pb.p) == pb.len - SL_PFRAME_HEADER, "length field %u, frame %zu",
	      get_be32(pb.p), pb.len);
	check(sl_pframe_kind(pb.p, pb.len) == SL_PFRAME_MESSAGE, "kind");
	return pb;
}

/* Decodes a copy of frame of exactly len bytes. */
static int decode(const uint8_t *frame, size_t len, uint32_t *group, struct raft_message *m)
{
	uint8_t *c = exact_copy(frame, len);
	memset(m, 0xa5, sizeof(*m)); /* nothing may rely on a zeroed output */
	*group = 0xdeadbeef;
	int rv = sl_pframe_decode_message(c, len, FROM_ID, FROM_ADDR, group, m);
	/* The decoded message must not point into the frame. */
	memset(c, 0x5a, len);
	free(c);
	return rv;
}

static int decode_hello(const uint8_t *frame, size_t len, struct sl_phello *h)
{
	uint8_t *c = exact_copy(frame, len);
	int rv = sl_pframe_decode_hello(c, len, h);
	free(c);
	return rv;
}

/* got (decoded) carries the same message as want, in the layout of
 * raft/rio.h. */
static void expect_same(const struct raft_message *want, const struct raft_message *got)
{
	check(got->type == want->type, "type %u, want %u", got->type, want->type);
	check(got->server_id == FROM_ID, "server_id %llu", (unsigned long long)got->server_id);
	check(got->server_address == FROM_ADDR, "server_address not from_address");
	switch (want->type) {
	case RAFT_IO_APPEND_ENTRIES: {
		const struct raft_append_entries *w = &want->append_entries;
		const struct raft_append_entries *g = &got->append_entries;
		check(g->term == w->term, "term");
		check(g->prev_log_index == w->prev_log_index, "prev_log_index");
		check(g->prev_log_term == w->prev_log_term, "prev_log_term");
		check(g->leader_commit == w->leader_commit, "leader_commit");
		check(g->n_entries == w->n_entries, "n_entries %u, want %u", g->n_entries,
		      w->n_entries);
		if (w->n_entries == 0)
			break;
		check(g->entries != NULL, "entries");
		const uint8_t *batch = g->entries[0].batch;
		check(batch != NULL, "batch");
		const uint8_t *prev_end = NULL;
		for (unsigned i = 0; i < w->n_entries; i++) {
			const struct raft_entry *we = &w->entries[i], *ge = &g->entries[i];
			check(ge->term == we->term, "entry %u term", i);
			check(ge->type == we->type, "entry %u type %u, want %u", i, ge->type,
			      we->type);
			check(ge->batch == batch, "entry %u: not in the batch", i);
			check(ge->buf.len == we->buf.len, "entry %u len %zu, want %zu", i,
			      ge->buf.len, we->buf.len);
			if (we->buf.len == 0)
				continue;
			const uint8_t *b = ge->buf.base;
			check(b >= batch, "entry %u before its batch", i);
			check(prev_end == NULL || b >= prev_end, "entry %u overlaps", i);
			prev_end = b + ge->buf.len;
			check(memcmp(b, we->buf.base, we->buf.len) == 0, "entry %u bytes", i);
		}
		break;
	}
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		check(got->append_entries_result.term == want->append_entries_result.term, "term");
		check(got->append_entries_result.rejected == want->append_entries_result.rejected,
		      "rejected");
		check(got->append_entries_result.last_log_index ==
			      want->append_entries_result.last_log_index,
		      "last_log_index");
		break;
	case RAFT_IO_REQUEST_VOTE:
		check(got->request_vote.term == want->request_vote.term, "term");
		check(got->request_vote.candidate_id == want->request_vote.candidate_id,
		      "candidate_id");
		check(got->request_vote.last_log_index == want->request_vote.last_log_index,
		      "last_log_index");
		check(got->request_vote.last_log_term == want->request_vote.last_log_term,
		      "last_log_term");
		check(got->request_vote.disrupt_leader == want->request_vote.disrupt_leader,
		      "disrupt_leader");
		check(got->request_vote.pre_vote == want->request_vote.pre_vote, "pre_vote");
		break;
	case RAFT_IO_REQUEST_VOTE_RESULT:
		check(got->request_vote_result.term == want->request_vote_result.term, "term");
		check(got->request_vote_result.vote_granted ==
			      want->request_vote_result.vote_granted,
		      "vote_granted");
		check(got->request_vote_result.pre_vote == want->request_vote_result.pre_vote,
		      "pre_vote %d, want %d", (int)got->request_vote_result.pre_vote,
		      (int)want->request_vote_result.pre_vote);
		break;
	case RAFT_IO_INSTALL_SNAPSHOT: {
		const struct raft_install_snapshot *w = &want->install_snapshot;
		const struct raft_install_snapshot *g = &got->install_snapshot;
		check(g->term == w->term, "term");
		check(g->last_index == w->last_index, "last_index");
		check(g->last_term == w->last_term, "last_term");
		check(g->conf_index == w->conf_index, "conf_index");
		check(g->conf.n == w->conf.n, "conf.n %u, want %u", g->conf.n, w->conf.n);
		for (unsigned i = 0; i < w->conf.n; i++) {
			const struct raft_server *ws = &w->conf.servers[i], *gs = &g->conf.servers[i];
			check(gs->id == ws->id, "server %u id", i);
			check(gs->role == ws->role, "server %u role %d, want %d", i, gs->role,
			      ws->role);
			check(gs->address != NULL && strcmp(gs->address, ws->address) == 0,
			      "server %u address", i);
		}
		check(g->data.len == w->data.len, "data.len %zu, want %zu", g->data.len,
		      w->data.len);
		if (w->data.len > 0)
			check(g->data.base != NULL &&
				      memcmp(g->data.base, w->data.base, w->data.len) == 0,
			      "data");
		break;
	}
	case RAFT_IO_TIMEOUT_NOW:
		check(got->timeout_now.term == want->timeout_now.term, "term");
		check(got->timeout_now.last_log_index == want->timeout_now.last_log_index,
		      "last_log_index");
		check(got->timeout_now.last_log_term == want->timeout_now.last_log_term,
		      "last_log_term");
		break;
	default:
		cr_assert_fail("type %u", want->type);
	}
}

/* Encodes m, checks the bytes against the header's grammar (all types but
 * InstallSnapshot), decodes them and compares. */
static void round_trip(uint32_t group, const struct raft_message *m)
{
	struct sl_pbuf pb = encode(group, m);
	if (m->type != RAFT_IO_INSTALL_SNAPSHOT) {
		struct raw r = { 0 };
		raw_message(&r, group, m);
		check(pb.len == r.n, "frame is %zu bytes, the header says %zu", pb.len, r.n);
		check(memcmp(pb.p, r.p, r.n) == 0, "frame bytes differ from the header's grammar");
		raw_free(&r);
	}
	size_t flen = 0;
	check(sl_pframe_peek(pb.p, pb.len, MAX_FRAME, &flen) == SL_OK, "peek");
	check(flen == pb.len, "peek length %zu, frame %zu", flen, pb.len);

	uint32_t g;
	struct raft_message got;
	int rv = decode(pb.p, pb.len, &g, &got);
	check(rv == SL_OK, "decode: %d", rv);
	check(g == group, "group %u, want %u", g, group);
	expect_same(m, &got);
	sl_rmsg_discard(&got);
	free(pb.p);
}

/* After a successful decode of hostile input: the message encodes again,
 * and that frame decodes to the same message. Then frees it. */
static void reencode_and_discard(uint32_t group, struct raft_message *m)
{
	check(m->server_id == FROM_ID && m->server_address == FROM_ADDR, "sender");
	struct sl_pbuf pb = { 0 };
	int rv = sl_pframe_message(&pb, group, m);
	check(rv == SL_OK, "re-encode: %d", rv);
	uint32_t g;
	struct raft_message again;
	rv = decode(pb.p, pb.len, &g, &again);
	check(rv == SL_OK, "decode of the re-encoded frame: %d", rv);
	check(g == group, "group");
	expect_same(m, &again);
	sl_rmsg_discard(&again);
	sl_rmsg_discard(m);
	free(pb.p);
}

/* Malformed input must be rejected; anything else that decodes must be a
 * real message. */
static void decode_any(const uint8_t *frame, size_t len)
{
	uint32_t g;
	struct raft_message m;
	int rv = decode(frame, len, &g, &m);
	check(rv == SL_OK || rv == SL_EINVALID_REQUEST, "decode: %d", rv);
	if (rv == SL_OK)
		reencode_and_discard(g, &m);
	struct sl_phello h;
	rv = decode_hello(frame, len, &h);
	check(rv == SL_OK || rv == SL_EINVALID_REQUEST, "decode_hello: %d", rv);
}

static void expect_invalid(const uint8_t *frame, size_t len)
{
	uint32_t g;
	struct raft_message m;
	int rv = decode(frame, len, &g, &m);
	if (rv == SL_OK)
		sl_rmsg_discard(&m);
	check(rv == SL_EINVALID_REQUEST, "decode of a malformed frame: %d", rv);
}

/* ---- round trips ---- */

static const uint32_t groups[] = { 0, 1, 127, 128, 16383, 16384, 0x7fffffff, UINT32_MAX - 1,
				   UINT32_MAX };
#define N_GROUPS (sizeof(groups) / sizeof(groups[0]))

Test(pframe, heartbeat_round_trip)
{
	struct raft_message m;
	uint64_t seed = 1;
	ae_make(&m, 0, NULL, &seed);
	for (size_t i = 0; i < N_GROUPS; i++) {
		set_where("group %u", groups[i]);
		round_trip(groups[i], &m);
	}
	m.append_entries.term = 0;
	m.append_entries.prev_log_index = 0;
	m.append_entries.prev_log_term = 0;
	m.append_entries.leader_commit = 0;
	set_where("all zero");
	round_trip(0, &m);
}

Test(pframe, append_entries_one_entry)
{
	static const size_t sizes[] = { 0, 1, 127, 128, 16384, 1 << 20 };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (unsigned short type = RAFT_COMMAND; type <= RAFT_CHANGE; type++) {
			set_where("size %zu type %u", sizes[s], type);
			struct raft_message m;
			uint64_t seed = s + 1;
			ae_make(&m, 1, &sizes[s], &seed);
			m.append_entries.entries[0].type = type;
			round_trip(42, &m);
			ae_free(&m);
		}
	}
}

Test(pframe, append_entries_many_entries)
{
	enum { N = 700 };
	size_t lens[N];
	uint64_t seed = 77;
	for (unsigned i = 0; i < N; i++) {
		uint64_t r = tl_rand(&seed);
		/* a third empty, the rest up to 4 KiB, now and then 64 KiB */
		lens[i] = r % 3 == 0 ? 0 : (r >> 8) % 50 == 0 ? 65536 + (r >> 20) % 100 : (r >> 8) % 4097;
	}
	lens[0] = 0;
	lens[N - 1] = 0;
	struct raft_message m;
	ae_make(&m, N, lens, &seed);
	m.append_entries.entries[5].term = UINT64_MAX;
	m.append_entries.entries[6].term = 0;
	set_where("%d entries", N);
	round_trip(3, &m);
	ae_free(&m);

	/* only empty entries */
	size_t zeros[16] = { 0 };
	ae_make(&m, 16, zeros, &seed);
	set_where("16 empty entries");
	round_trip(UINT32_MAX, &m);
	ae_free(&m);
}

Test(pframe, append_entries_large_values)
{
	size_t lens[3] = { 5, 0, 300 };
	uint64_t seed = 5;
	struct raft_message m;
	ae_make(&m, 3, lens, &seed);
	m.append_entries.term = UINT64_MAX;
	m.append_entries.prev_log_index = UINT64_MAX;
	m.append_entries.prev_log_term = UINT64_MAX - 1;
	m.append_entries.leader_commit = UINT64_MAX;
	for (unsigned i = 0; i < 3; i++)
		m.append_entries.entries[i].term = UINT64_MAX - i;
	for (size_t i = 0; i < N_GROUPS; i++) {
		set_where("group %u", groups[i]);
		round_trip(groups[i], &m);
	}
	ae_free(&m);
}

Test(pframe, append_entries_result_round_trip)
{
	static const uint64_t vals[] = { 0, 1, 127, 128, 1ull << 32, UINT64_MAX - 1, UINT64_MAX };
	enum { NV = sizeof(vals) / sizeof(vals[0]) };
	for (unsigned i = 0; i < NV; i++) {
		struct raft_message m = { .type = RAFT_IO_APPEND_ENTRIES_RESULT };
		m.append_entries_result.term = vals[i];
		m.append_entries_result.rejected = vals[(i + 1) % NV];
		m.append_entries_result.last_log_index = vals[(i + 3) % NV];
		set_where("values %u", i);
		round_trip(groups[i % N_GROUPS], &m);
	}
}

Test(pframe, request_vote_every_flag_combination)
{
	for (unsigned f = 0; f < 4; f++) {
		for (size_t i = 0; i < N_GROUPS; i++) {
			struct raft_message m = { .type = RAFT_IO_REQUEST_VOTE };
			m.request_vote.term = i % 2 ? UINT64_MAX : 3;
			m.request_vote.candidate_id = i % 3 ? UINT64_MAX : 2;
			m.request_vote.last_log_index = i % 2 ? 1000000 : UINT64_MAX;
			m.request_vote.last_log_term = i % 2 ? UINT64_MAX : 0;
			m.request_vote.disrupt_leader = f & 1;
			m.request_vote.pre_vote = (f & 2) != 0;
			set_where("flags %u group %u", f, groups[i]);
			round_trip(groups[i], &m);
		}
	}
}

Test(pframe, request_vote_result_granted_and_each_pre_vote)
{
	static const raft_tribool pv[] = { raft_tribool_unknown, raft_tribool_true,
					   raft_tribool_false };
	for (unsigned granted = 0; granted < 2; granted++) {
		for (unsigned p = 0; p < 3; p++) {
			for (unsigned big = 0; big < 2; big++) {
				struct raft_message m = { .type = RAFT_IO_REQUEST_VOTE_RESULT };
				m.request_vote_result.term = big ? UINT64_MAX : 4;
				m.request_vote_result.vote_granted = granted;
				m.request_vote_result.pre_vote = pv[p];
				set_where("granted %u pre_vote %d big %u", granted, (int)pv[p], big);
				round_trip(big ? UINT32_MAX : 0, &m);
			}
		}
	}
}

Test(pframe, install_snapshot_round_trip)
{
	uint64_t seed = 11;
	struct raft_message m;

	is_make(&m, three_servers, 3, 100000, &seed);
	set_where("3 servers, 100000 bytes");
	round_trip(17, &m);
	/* the data is the end of the frame */
	struct sl_pbuf pb = encode(17, &m);
	check(memcmp(pb.p + pb.len - 100000, m.install_snapshot.data.base, 100000) == 0,
	      "data is not at the end of the frame");
	/* the fields before the configuration follow the grammar */
	struct raw r = { 0 };
	raw_begin(&r, SL_PFRAME_MESSAGE);
	raw_uv(&r, 17);
	raw_u8(&r, RAFT_IO_INSTALL_SNAPSHOT);
	raw_fields(&r, &m);
	check(memcmp(pb.p + 4, r.p + 4, r.n - 4) == 0, "fields before the configuration");
	raw_free(&r);
	free(pb.p);
	is_free(&m);

	is_make(&m, three_servers, 3, 0, &seed);
	m.install_snapshot.term = UINT64_MAX;
	m.install_snapshot.last_index = UINT64_MAX;
	m.install_snapshot.last_term = UINT64_MAX;
	m.install_snapshot.conf_index = UINT64_MAX;
	set_where("3 servers, no data, large values");
	round_trip(UINT32_MAX, &m);
	is_free(&m);

	is_make(&m, three_servers, 1, 1, &seed);
	set_where("1 server, 1 byte");
	round_trip(0, &m);
	is_free(&m);
}

Test(pframe, install_snapshot_large_configuration)
{
	enum { N = 40 };
	struct srv srvs[N];
	char addrs[N][260];
	for (unsigned i = 0; i < N; i++) {
		/* addresses from 3 to ~240 bytes (two-byte length varints) */
		size_t len = 1 + (size_t)i * 6;
		for (size_t k = 0; k < len; k++)
			addrs[i][k] = (char)('a' + (i + k) % 26);
		snprintf(addrs[i] + len, 8, ":%u", i); /* unique */
		srvs[i].address = addrs[i];
		srvs[i].id = i == N - 1 ? UINT64_MAX : (raft_id)(i + 1) * 1000003u;
		srvs[i].role = i % 3 == 0 ? RAFT_VOTER : i % 3 == 1 ? RAFT_STANDBY : RAFT_SPARE;
	}
	uint64_t seed = 12;
	struct raft_message m;
	is_make(&m, srvs, N, 4096, &seed);
	set_where("%d servers", N);
	round_trip(5, &m);
	is_free(&m);

	is_make(&m, srvs, 0, 10, &seed);
	set_where("empty configuration");
	round_trip(5, &m);
	is_free(&m);
}

Test(pframe, install_snapshot_long_addresses)
{
	/* A DNS name may have 253 characters; with its port that is 259
	 * bytes. The header sets no limit, and the encoder sends any. */
	char longest[300];
	memset(longest, 'a', 253);
	for (size_t i = 63; i < 253; i += 64)
		longest[i] = '.';
	strcpy(longest + 253, ":65535");
	char longer[1100];
	memset(longer, 'b', 1024);
	strcpy(longer + 1024, ":1");
	const struct srv srvs[] = {
		{ 1, RAFT_VOTER, longest },
		{ 2, RAFT_VOTER, longer },
		{ 3, RAFT_VOTER, "10.0.0.3:9093" },
	};
	uint64_t seed = 13;
	struct raft_message m;
	is_make(&m, srvs, 1, 64, &seed);
	set_where("a %zu-byte address", strlen(longest));
	round_trip(5, &m);
	is_free(&m);
	is_make(&m, srvs, 3, 64, &seed);
	set_where("a %zu-byte address", strlen(longer));
	round_trip(5, &m);
	is_free(&m);
}

Test(pframe, timeout_now_round_trip)
{
	for (size_t i = 0; i < N_GROUPS; i++) {
		struct raft_message m = { .type = RAFT_IO_TIMEOUT_NOW };
		m.timeout_now.term = i % 2 ? UINT64_MAX : 9;
		m.timeout_now.last_log_index = i % 3 ? UINT64_MAX : 0;
		m.timeout_now.last_log_term = i % 2 ? 1 : UINT64_MAX;
		set_where("group %u", groups[i]);
		round_trip(groups[i], &m);
	}
}

/* A value of a random width, so that every varint length shows up. */
static uint64_t rand_width(uint64_t *seed)
{
	uint64_t r = tl_rand(seed);
	unsigned bits = (unsigned)(tl_rand(seed) % 65);
	return bits == 64 ? r : r & ((1ull << bits) - 1);
}

/* A random message of any type but InstallSnapshot with random values;
 * AppendEntries have up to 8 entries (free with ae_free). */
static void random_message(struct raft_message *m, uint64_t *seed)
{
	unsigned type = 1 + (unsigned)(tl_rand(seed) % 6);
	if (type == RAFT_IO_INSTALL_SNAPSHOT)
		type = RAFT_IO_APPEND_ENTRIES;
	memset(m, 0, sizeof(*m));
	switch (type) {
	case RAFT_IO_APPEND_ENTRIES: {
		size_t lens[8];
		unsigned n = (unsigned)(tl_rand(seed) % 9);
		for (unsigned i = 0; i < n; i++)
			lens[i] = tl_rand(seed) % 3 == 0 ? 0 : tl_rand(seed) % 300;
		ae_make(m, n, lens, seed);
		m->append_entries.term = rand_width(seed);
		m->append_entries.prev_log_index = rand_width(seed);
		m->append_entries.prev_log_term = rand_width(seed);
		m->append_entries.leader_commit = rand_width(seed);
		for (unsigned i = 0; i < n; i++)
			m->append_entries.entries[i].term = rand_width(seed);
		break;
	}
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		m->type = (unsigned short)type;
		m->append_entries_result.term = rand_width(seed);
		m->append_entries_result.rejected = rand_width(seed);
		m->append_entries_result.last_log_index = rand_width(seed);
		break;
	case RAFT_IO_REQUEST_VOTE:
		m->type = (unsigned short)type;
		m->request_vote.term = rand_width(seed);
		m->request_vote.candidate_id = rand_width(seed);
		m->request_vote.last_log_index = rand_width(seed);
		m->request_vote.last_log_term = rand_width(seed);
		m->request_vote.disrupt_leader = tl_rand(seed) & 1;
		m->request_vote.pre_vote = tl_rand(seed) & 1;
		break;
	case RAFT_IO_REQUEST_VOTE_RESULT:
		m->type = (unsigned short)type;
		m->request_vote_result.term = rand_width(seed);
		m->request_vote_result.vote_granted = tl_rand(seed) & 1;
		m->request_vote_result.pre_vote = (raft_tribool)(tl_rand(seed) % 3);
		break;
	case RAFT_IO_TIMEOUT_NOW:
		m->type = (unsigned short)type;
		m->timeout_now.term = rand_width(seed);
		m->timeout_now.last_log_index = rand_width(seed);
		m->timeout_now.last_log_term = rand_width(seed);
		break;
	}
}

Test(pframe, random_messages_match_the_grammar)
{
	uint64_t seed = 2024;
	for (unsigned i = 0; i < 3000; i++) {
		struct raft_message m;
		random_message(&m, &seed);
		uint32_t group = (uint32_t)rand_width(&seed);
		set_where("message %u type %u group %u", i, m.type, group);
		round_trip(group, &m);
		if (m.type == RAFT_IO_APPEND_ENTRIES)
			ae_free(&m);
	}
}

Test(pframe, exact_heartbeat_bytes)
{
	/* group 7, term 5, prev index 300 (two-byte varint), prev term 2,
	 * commit 1, no entries */
	struct raft_message m = { .type = RAFT_IO_APPEND_ENTRIES };
	m.append_entries.term = 5;
	m.append_entries.prev_log_index = 300;
	m.append_entries.prev_log_term = 2;
	m.append_entries.leader_commit = 1;
	static const uint8_t want[] = { 0, 0, 0, 9, 1, 7, 1, 5, 0xac, 0x02, 2, 1, 0 };
	struct sl_pbuf pb = encode(7, &m);
	cr_assert_eq(pb.len, sizeof(want));
	cr_assert_arr_eq(pb.p, want, sizeof(want));
	free(pb.p);

	/* one entry of two bytes, term 1, type RAFT_BARRIER */
	struct raft_entry e = { .term = 1, .type = RAFT_BARRIER, .buf = { "hi", 2 } };
	m.append_entries.entries = &e;
	m.append_entries.n_entries = 1;
	m.append_entries.prev_log_index = 3;
	static const uint8_t want1[] = { 0, 0, 0, 13, 1, 7, 1, 5, 3, 2, 1, 1, 1, 2, 2, 'h', 'i' };
	pb = encode(7, &m);
	cr_assert_eq(pb.len, sizeof(want1));
	cr_assert_arr_eq(pb.p, want1, sizeof(want1));
	free(pb.p);
}

Test(pframe, heartbeat_and_result_are_small)
{
	struct raft_message m = { .type = RAFT_IO_APPEND_ENTRIES };
	m.append_entries.term = 100;
	m.append_entries.prev_log_index = 120;
	m.append_entries.prev_log_term = 99;
	m.append_entries.leader_commit = 110;
	struct sl_pbuf pb = encode(126, &m);
	cr_assert_leq(pb.len, 16, "heartbeat is %zu bytes", pb.len);
	free(pb.p);

	struct raft_message r = { .type = RAFT_IO_APPEND_ENTRIES_RESULT };
	r.append_entries_result.term = 100;
	r.append_entries_result.rejected = 0;
	r.append_entries_result.last_log_index = 120;
	pb = encode(126, &r);
	cr_assert_leq(pb.len, 12, "heartbeat result is %zu bytes", pb.len);
	free(pb.p);
}

Test(pframe, encoding_an_unknown_type_fails_cleanly)
{
	struct sl_pbuf pb = { 0 };
	struct raft_message m = { .type = RAFT_IO_TIMEOUT_NOW };
	cr_assert_eq(sl_pframe_message(&pb, 1, &m), SL_OK);
	size_t len = pb.len;
	uint8_t *copy = exact_copy(pb.p, len);
	static const unsigned short types[] = { 0, RAFT_IO_TIMEOUT_NOW + 1, 255 };
	for (size_t i = 0; i < 3; i++) {
		m.type = types[i];
		cr_assert_neq(sl_pframe_message(&pb, 1, &m), SL_OK, "type %u", types[i]);
		cr_assert_eq(pb.len, len, "length changed");
		cr_assert_arr_eq(pb.p, copy, len);
	}
	free(copy);
	free(pb.p);
}

Test(pframe, decoded_message_owns_its_memory)
{
	/* decode() scribbles over and frees the frame before we compare */
	size_t lens[4] = { 10, 0, 1000, 3 };
	uint64_t seed = 99;
	struct raft_message m;
	ae_make(&m, 4, lens, &seed);
	set_where("append entries");
	round_trip(1, &m);
	ae_free(&m);
	is_make(&m, three_servers, 3, 777, &seed);
	set_where("install snapshot");
	round_trip(1, &m);
	is_free(&m);
}

/* ---- hello ---- */

static void hello_round_trip(const struct sl_phello *h)
{
	struct sl_pbuf pb = { 0 };
	check(sl_pframe_hello(&pb, h) == SL_OK, "encode");
	check(get_be32(pb.p) == pb.len - 4, "length field");
	check(sl_pframe_kind(pb.p, pb.len) == SL_PFRAME_HELLO, "kind");
	check(memcmp(pb.p + 5, "SLPR", 4) == 0, "magic");
	check(memcmp(pb.p + 11, h->cluster_id, 16) == 0, "cluster id after magic and version");
	check(memcmp(pb.p + pb.len - 16, h->node_uuid, 16) == 0, "node uuid last");
	struct raw r = { 0 };
	raw_uv(&r, h->node_id);
	check(pb.len == 4 + 1 + 4 + 2 + 16 + r.n + 16, "size %zu", pb.len);
	check(memcmp(pb.p + 27, r.p, r.n) == 0, "node id varint");
	raw_free(&r);
	size_t flen;
	check(sl_pframe_peek(pb.p, pb.len, MAX_FRAME, &flen) == SL_OK && flen == pb.len, "peek");

	struct sl_phello got;
	memset(&got, 0xa5, sizeof(got));
	check(decode_hello(pb.p, pb.len, &got) == SL_OK, "decode");
	check(got.version == h->version, "version %u", got.version);
	check(memcmp(got.cluster_id, h->cluster_id, 16) == 0, "cluster id");
	check(got.node_id == h->node_id, "node id");
	check(memcmp(got.node_uuid, h->node_uuid, 16) == 0, "node uuid");

	/* a hello is not a message */
	expect_invalid(pb.p, pb.len);
	free(pb.p);
}

Test(pframe, hello_round_trip)
{
	static const uint64_t ids[] = { 0, 1, 127, 128, 1ull << 35, UINT64_MAX };
	uint64_t seed = 3;
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		struct sl_phello h = { .version = SL_PFRAME_VERSION, .node_id = ids[i] };
		tl_fill_random(&seed, h.cluster_id, 16);
		tl_fill_random(&seed, h.node_uuid, 16);
		set_where("node id %llu", (unsigned long long)ids[i]);
		hello_round_trip(&h);
	}
	struct sl_phello h = { .version = SL_PFRAME_VERSION, .node_id = 4 };
	set_where("zero ids");
	hello_round_trip(&h);
	memset(h.cluster_id, 0xff, 16);
	memset(h.node_uuid, 0xff, 16);
	set_where("0xff ids");
	hello_round_trip(&h);
}

Test(pframe, a_message_is_not_a_hello)
{
	struct raft_message m = { .type = RAFT_IO_TIMEOUT_NOW };
	struct sl_pbuf pb = encode(1, &m);
	struct sl_phello h;
	cr_assert_eq(decode_hello(pb.p, pb.len, &h), SL_EINVALID_REQUEST);
	free(pb.p);
}

Test(pframe, hello_malformed)
{
	struct sl_phello h = { .version = SL_PFRAME_VERSION, .node_id = 300 };
	memset(h.cluster_id, 1, 16);
	memset(h.node_uuid, 2, 16);
	struct sl_pbuf pb = { 0 };
	cr_assert_eq(sl_pframe_hello(&pb, &h), SL_OK);
	struct sl_phello got;

	for (size_t k = 0; k < pb.len; k++) {
		set_where("truncated to %zu", k);
		check(decode_hello(pb.p, k, &got) == SL_EINVALID_REQUEST, "truncated");
		if (k > 4) { /* consistent length field, body cut short */
			uint8_t *c = exact_copy(pb.p, k);
			put_be32(c, (uint32_t)(k - 4));
			check(decode_hello(c, k, &got) == SL_EINVALID_REQUEST, "short body");
			free(c);
		}
	}
	for (size_t i = 5; i < 9; i++) {
		uint8_t *c = exact_copy(pb.p, pb.len);
		c[i] ^= 0x20;
		set_where("magic byte %zu", i - 5);
		check(decode_hello(c, pb.len, &got) == SL_EINVALID_REQUEST, "bad magic");
		free(c);
	}
	/* node id varint of 11 bytes */
	struct raw r = { 0 };
	raw_begin(&r, SL_PFRAME_HELLO);
	raw_put(&r, "SLPR", 4);
	raw_put(&r, pb.p + 9, 2 + 16);
	for (int i = 0; i < 10; i++)
		raw_u8(&r, 0x80);
	raw_u8(&r, 0);
	raw_put(&r, h.node_uuid, 16);
	raw_end(&r);
	set_where("11-byte node id");
	check(decode_hello(r.p, r.n, &got) == SL_EINVALID_REQUEST, "overlong varint");

	/* one byte too many */
	raw_begin(&r, SL_PFRAME_HELLO);
	raw_put(&r, pb.p + 5, pb.len - 5);
	raw_u8(&r, 0);
	raw_end(&r);
	set_where("trailing byte");
	check(decode_hello(r.p, r.n, &got) == SL_EINVALID_REQUEST, "trailing byte");
	raw_free(&r);
	free(pb.p);
}

/* ---- kind and peek ---- */

Test(pframe, kind_of_short_frames_is_zero)
{
	static const uint8_t f[] = { 0, 0, 0, 1, SL_PFRAME_MESSAGE };
	for (size_t k = 0; k < 5; k++)
		cr_assert_eq(sl_pframe_kind(f, k), 0, "length %zu", k);
	cr_assert_eq(sl_pframe_kind(f, 5), SL_PFRAME_MESSAGE);
	static const uint8_t empty[] = { 0, 0, 0, 0 };
	cr_assert_eq(sl_pframe_kind(empty, 4), 0);
}

/* A few valid frames of every kind, for peek and the hostile tests. */
struct sample {
	struct sl_pbuf pb;
	const char *name;
};

static size_t samples_make(struct sample *s)
{
	size_t n = 0;
	uint64_t seed = 42;
	struct raft_message m;

	ae_make(&m, 0, NULL, &seed);
	s[n].name = "heartbeat";
	s[n++].pb = encode(1, &m);

	size_t lens[3] = { 3, 0, 20 };
	ae_make(&m, 3, lens, &seed);
	m.append_entries.term = 1000;
	s[n].name = "append entries";
	s[n++].pb = encode(300, &m);
	ae_free(&m);

	m = (struct raft_message){ .type = RAFT_IO_APPEND_ENTRIES_RESULT };
	m.append_entries_result.term = 5;
	m.append_entries_result.rejected = 200;
	m.append_entries_result.last_log_index = 199;
	s[n].name = "append entries result";
	s[n++].pb = encode(2, &m);

	m = (struct raft_message){ .type = RAFT_IO_REQUEST_VOTE };
	m.request_vote.term = 6;
	m.request_vote.candidate_id = 3;
	m.request_vote.last_log_index = 500;
	m.request_vote.last_log_term = 5;
	m.request_vote.disrupt_leader = true;
	m.request_vote.pre_vote = true;
	s[n].name = "request vote";
	s[n++].pb = encode(UINT32_MAX, &m);

	m = (struct raft_message){ .type = RAFT_IO_REQUEST_VOTE_RESULT };
	m.request_vote_result.term = 6;
	m.request_vote_result.vote_granted = true;
	m.request_vote_result.pre_vote = raft_tribool_false;
	s[n].name = "request vote result";
	s[n++].pb = encode(0, &m);

	is_make(&m, three_servers, 3, 40, &seed);
	s[n].name = "install snapshot";
	s[n++].pb = encode(9, &m);
	is_free(&m);

	m = (struct raft_message){ .type = RAFT_IO_TIMEOUT_NOW };
	m.timeout_now.term = 8;
	m.timeout_now.last_log_index = 1u << 20;
	m.timeout_now.last_log_term = 7;
	s[n].name = "timeout now";
	s[n++].pb = encode(4, &m);

	struct sl_phello h = { .version = SL_PFRAME_VERSION, .node_id = 2 };
	memset(h.cluster_id, 0x11, 16);
	memset(h.node_uuid, 0x22, 16);
	s[n].name = "hello";
	s[n].pb = (struct sl_pbuf){ 0 };
	cr_assert_eq(sl_pframe_hello(&s[n++].pb, &h), SL_OK);
	return n;
}

static void samples_free(struct sample *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(s[i].pb.p);
}

#define MAX_SAMPLES 16

Test(pframe, peek_needs_the_whole_frame)
{
	struct sample s[MAX_SAMPLES];
	size_t ns = samples_make(s);
	for (size_t i = 0; i < ns; i++) {
		const struct sl_pbuf *pb = &s[i].pb;
		for (size_t k = 0; k < pb->len; k++) {
			set_where("%s, %zu of %zu bytes", s[i].name, k, pb->len);
			uint8_t *c = exact_copy(pb->p, k);
			size_t flen = 12345;
			check(sl_pframe_peek(c, k, MAX_FRAME, &flen) == SL_ENOT_FOUND, "partial");
			free(c);
		}
		set_where("%s whole", s[i].name);
		size_t flen = 0;
		check(sl_pframe_peek(pb->p, pb->len, MAX_FRAME, &flen) == SL_OK, "whole");
		check(flen == pb->len, "length %zu, want %zu", flen, pb->len);
		check(sl_pframe_peek(pb->p, pb->len, pb->len, &flen) == SL_OK && flen == pb->len,
		      "max_frame of exactly the frame");
	}
	samples_free(s, ns);
}

Test(pframe, peek_frames_back_to_back)
{
	/* every sample appended to one buffer, twice over */
	struct sample s[MAX_SAMPLES];
	size_t ns = samples_make(s);
	struct sl_pbuf all = { 0 };
	uint64_t seed = 8;
	struct raft_message m;
	size_t lens[2] = { 1, 0 };
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < ns; i++) {
			size_t before = all.len;
			if (i == 1) { /* append with the encoder itself */
				ae_make(&m, 2, lens, &seed);
				cr_assert_eq(sl_pframe_message(&all, 300, &m), SL_OK);
				ae_free(&m);
			} else if (i == ns - 1) {
				struct sl_phello h = { .version = SL_PFRAME_VERSION, .node_id = 2 };
				memset(h.cluster_id, 0x11, 16);
				memset(h.node_uuid, 0x22, 16);
				cr_assert_eq(sl_pframe_hello(&all, &h), SL_OK);
			} else {
				if (all.len + s[i].pb.len > all.cap) {
					all.cap = (all.len + s[i].pb.len) * 2;
					all.p = realloc(all.p, all.cap);
					cr_assert_not_null(all.p);
				}
				memcpy(all.p + all.len, s[i].pb.p, s[i].pb.len);
				all.len += s[i].pb.len;
			}
			cr_assert_gt(all.len, before);
		}
	}
	size_t off = 0, frames = 0;
	while (off < all.len) {
		size_t flen = 0;
		set_where("frame %zu at %zu", frames, off);
		check(sl_pframe_peek(all.p + off, all.len - off, MAX_FRAME, &flen) == SL_OK, "peek");
		check(flen >= 5 && off + flen <= all.len, "length %zu", flen);
		size_t want = frames % ns == 1 ? flen : s[frames % ns].pb.len;
		check(flen == want, "length %zu, want %zu", flen, want);
		int kind = sl_pframe_kind(all.p + off, flen);
		if (frames % ns == ns - 1) {
			struct sl_phello h;
			check(kind == SL_PFRAME_HELLO, "kind %d", kind);
			check(decode_hello(all.p + off, flen, &h) == SL_OK && h.node_id == 2, "hello");
		} else {
			uint32_t g;
			check(kind == SL_PFRAME_MESSAGE, "kind %d", kind);
			check(decode(all.p + off, flen, &g, &m) == SL_OK, "decode");
			if (frames % ns == 1)
				check(m.type == RAFT_IO_APPEND_ENTRIES && g == 300 &&
					      m.append_entries.n_entries == 2,
				      "appended frame");
			sl_rmsg_discard(&m);
		}
		off += flen;
		frames++;
	}
	cr_assert_eq(frames, 2 * ns);
	cr_assert_eq(off, all.len);
	free(all.p);
	samples_free(s, ns);
}

Test(pframe, peek_too_large)
{
	uint8_t f[16] = { 0 };
	size_t flen = 0;
	/* the length field alone is enough to refuse */
	put_be32(f, 1000);
	cr_assert_eq(sl_pframe_peek(f, 4, 100, &flen), SL_EMESSAGE_TOO_LARGE);
	cr_assert_eq(sl_pframe_peek(f, 16, 100, &flen), SL_EMESSAGE_TOO_LARGE);
	put_be32(f, UINT32_MAX);
	cr_assert_eq(sl_pframe_peek(f, 4, MAX_FRAME, &flen), SL_EMESSAGE_TOO_LARGE);
	cr_assert_eq(sl_pframe_peek(f, 16, MAX_FRAME, &flen), SL_EMESSAGE_TOO_LARGE);
	/* not yet known */
	cr_assert_eq(sl_pframe_peek(f, 3, 100, &flen), SL_ENOT_FOUND);
	/* within the limit but incomplete */
	put_be32(f, 1000);
	cr_assert_eq(sl_pframe_peek(f, 16, 2000, &flen), SL_ENOT_FOUND);

	/* a real frame, around the limit */
	struct raft_message m = { .type = RAFT_IO_TIMEOUT_NOW };
	m.timeout_now.term = 1;
	struct sl_pbuf pb = encode(1, &m);
	cr_assert_eq(sl_pframe_peek(pb.p, pb.len, pb.len - 5, &flen), SL_EMESSAGE_TOO_LARGE);
	cr_assert_eq(sl_pframe_peek(pb.p, pb.len, 1, &flen), SL_EMESSAGE_TOO_LARGE);
	cr_assert_eq(sl_pframe_peek(pb.p, pb.len, pb.len, &flen), SL_OK);
	cr_assert_eq(flen, pb.len);
	/* max_frame bounds the whole frame, length field included */
	cr_assert_eq(sl_pframe_peek(pb.p, pb.len, pb.len - 1, &flen), SL_EMESSAGE_TOO_LARGE);
	free(pb.p);
}

Test(pframe, decode_wants_exactly_one_frame)
{
	/* a buffer longer than the frame its length field announces (a
	 * caller that passed the whole receive buffer) is refused */
	struct sample s[MAX_SAMPLES];
	size_t ns = samples_make(s);
	for (size_t i = 0; i < ns; i++) {
		struct sl_pbuf *pb = &s[i].pb;
		uint8_t *c = malloc(pb->len + 8);
		cr_assert_not_null(c);
		memcpy(c, pb->p, pb->len);
		memcpy(c + pb->len, pb->p, 8); /* the start of a next frame */
		for (size_t extra = 1; extra <= 8; extra++) {
			set_where("%s + %zu bytes", s[i].name, extra);
			uint32_t g;
			struct raft_message m;
			int rv = decode(c, pb->len + extra, &g, &m);
			if (rv == SL_OK)
				sl_rmsg_discard(&m);
			check(rv == SL_EINVALID_REQUEST, "decode: %d", rv);
			struct sl_phello h;
			check(decode_hello(c, pb->len + extra, &h) == SL_EINVALID_REQUEST, "hello");
		}
		free(c);
	}
	samples_free(s, ns);
}

/* ---- hostile input ---- */

Test(pframe, every_truncation_is_rejected)
{
	struct sample s[MAX_SAMPLES];
	size_t ns = samples_make(s);
	for (size_t i = 0; i < ns; i++) {
		const struct sl_pbuf *pb = &s[i].pb;
		for (size_t k = 0; k < pb->len; k++) {
			set_where("%s cut to %zu of %zu", s[i].name, k, pb->len);
			/* the length field no longer matches: not a whole frame */
			uint32_t g;
			struct raft_message m;
			int rv = decode(pb->p, k, &g, &m);
			if (rv == SL_OK)
				sl_rmsg_discard(&m);
			check(rv == SL_EINVALID_REQUEST, "decode: %d", rv);
			struct sl_phello h;
			check(decode_hello(pb->p, k, &h) == SL_EINVALID_REQUEST, "decode_hello");
			if (k < 4)
				continue;
			/* the length field rewritten to match: rejected or a real
			 * message (a snapshot's data may be shorter) */
			uint8_t *c = exact_copy(pb->p, k);
			put_be32(c, (uint32_t)(k - 4));
			decode_any(c, k);
			free(c);
		}
	}
	samples_free(s, ns);
}

Test(pframe, single_byte_corruptions)
{
	static const uint8_t masks[] = { 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x7f, 0xff };
	struct sample s[MAX_SAMPLES];
	size_t ns = samples_make(s);
	unsigned ok = 0, rejected = 0;
	for (size_t i = 0; i < ns; i++) {
		const struct sl_pbuf *pb = &s[i].pb;
		uint8_t *c = exact_copy(pb->p, pb->len);
		for (size_t pos = 0; pos < pb->len; pos++) {
			for (size_t k = 0; k < sizeof(masks); k++) {
				set_where("%s byte %zu ^ %#x", s[i].name, pos, masks[k]);
				c[pos] ^= masks[k];
				uint32_t g;
				struct raft_message m;
				int rv = decode(c, pb->len, &g, &m);
				check(rv == SL_OK || rv == SL_EINVALID_REQUEST, "decode: %d", rv);
				if (rv == SL_OK) {
					ok++;
					reencode_and_discard(g, &m);
				} else {
					rejected++;
				}
				struct sl_phello h;
				rv = decode_hello(c, pb->len, &h);
				check(rv == SL_OK || rv == SL_EINVALID_REQUEST, "decode_hello: %d", rv);
				size_t flen;
				rv = sl_pframe_peek(c, pb->len, MAX_FRAME, &flen);
				check(rv == SL_OK || rv == SL_ENOT_FOUND || rv == SL_EMESSAGE_TOO_LARGE,
				      "peek: %d", rv);
				check(rv != SL_OK || flen <= pb->len, "peek length");
				c[pos] ^= masks[k];
			}
		}
		free(c);
	}
	cr_assert_gt(ok, 0);
	cr_assert_gt(rejected, 0);
	samples_free(s, ns);
}

Test(pframe, random_corruptions)
{
	struct sample s[MAX_SAMPLES];
	size_t ns = samples_make(s);
	uint64_t seed = 31337;
	for (unsigned iter = 0; iter < 20000; iter++) {
		const struct sl_pbuf *pb = &s[iter % ns].pb;
		uint8_t *c = exact_copy(pb->p, pb->len);
		unsigned flips = 1 + (unsigned)(tl_rand(&seed) % 4);
		for (unsigned f = 0; f < flips; f++) {
			/* mostly past the length field, which would only mismatch */
			size_t pos = 4 + tl_rand(&seed) % (pb->len - 4);
			c[pos] = (uint8_t)tl_rand(&seed);
		}
		set_where("%s iteration %u", s[iter % ns].name, iter);
		decode_any(c, pb->len);
		free(c);
	}
	samples_free(s, ns);
}

/* Frames made by hand that break the grammar. */

static void expect_invalid_raw(struct raw *r, const char *what)
{
	raw_end(r);
	set_where("%s", what);
	expect_invalid(r->p, r->n);
}

/* Starts a message frame for group 1 and the given type byte. */
static void raw_msg(struct raw *r, unsigned type)
{
	raw_begin(r, SL_PFRAME_MESSAGE);
	raw_uv(r, 1);
	raw_u8(r, type);
}

Test(pframe, malformed_messages_are_rejected)
{
	struct raw r = { 0 };

	raw_begin(&r, SL_PFRAME_MESSAGE);
	r.n = 4;
	expect_invalid_raw(&r, "empty frame");
	raw_begin(&r, SL_PFRAME_MESSAGE);
	expect_invalid_raw(&r, "kind only");
	raw_begin(&r, SL_PFRAME_MESSAGE);
	raw_uv(&r, 1);
	expect_invalid_raw(&r, "no type");

	static const unsigned kinds[] = { 0, 3, 255 };
	for (size_t i = 0; i < 3; i++) {
		raw_begin(&r, kinds[i]);
		raw_uv(&r, 1);
		raw_u8(&r, RAFT_IO_TIMEOUT_NOW);
		raw_uv(&r, 1);
		raw_uv(&r, 1);
		raw_uv(&r, 1);
		expect_invalid_raw(&r, "unknown kind");
	}
	static const unsigned types[] = { 0, 7, 8, 128, 255 };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		raw_msg(&r, types[i]);
		for (int k = 0; k < 5; k++)
			raw_uv(&r, 1);
		expect_invalid_raw(&r, "unknown type");
	}

	/* varints */
	raw_msg(&r, RAFT_IO_TIMEOUT_NOW);
	for (int i = 0; i < 10; i++)
		raw_u8(&r, 0x80);
	raw_u8(&r, 0);
	raw_uv(&r, 1);
	raw_uv(&r, 1);
	expect_invalid_raw(&r, "11-byte varint");
	raw_msg(&r, RAFT_IO_TIMEOUT_NOW);
	for (int i = 0; i < 9; i++)
		raw_u8(&r, 0xff);
	raw_u8(&r, 0x02); /* bit 64 */
	raw_uv(&r, 1);
	raw_uv(&r, 1);
	expect_invalid_raw(&r, "varint over 64 bits");
	raw_msg(&r, RAFT_IO_TIMEOUT_NOW);
	raw_uv(&r, 1);
	raw_uv(&r, 1);
	raw_u8(&r, 0x80); /* unterminated at the end of the frame */
	expect_invalid_raw(&r, "unterminated varint");

	/* groups beyond 32 bits */
	static const uint64_t big_groups[] = { 1ull << 32, (1ull << 32) + 5, UINT64_MAX };
	for (size_t i = 0; i < 3; i++) {
		raw_begin(&r, SL_PFRAME_MESSAGE);
		raw_uv(&r, big_groups[i]);
		raw_u8(&r, RAFT_IO_TIMEOUT_NOW);
		raw_uv(&r, 1);
		raw_uv(&r, 1);
		raw_uv(&r, 1);
		expect_invalid_raw(&r, "group over 32 bits");
	}

	/* trailing bytes after a message with a fixed layout */
	raw_msg(&r, RAFT_IO_TIMEOUT_NOW);
	raw_uv(&r, 1);
	raw_uv(&r, 1);
	raw_uv(&r, 1);
	raw_u8(&r, 0);
	expect_invalid_raw(&r, "trailing byte after TimeoutNow");
	raw_msg(&r, RAFT_IO_APPEND_ENTRIES_RESULT);
	raw_uv(&r, 1);
	raw_uv(&r, 0);
	raw_uv(&r, 1);
	raw_u8(&r, 0);
	expect_invalid_raw(&r, "trailing byte after AppendEntriesResult");
	raw_msg(&r, RAFT_IO_TIMEOUT_NOW);
	raw_uv(&r, 1);
	raw_uv(&r, 1);
	expect_invalid_raw(&r, "TimeoutNow missing a field");
	raw_free(&r);
}

/* AppendEntries with term 1, prev 1/1, commit 1 and the given count. */
static void raw_ae(struct raw *r, uint64_t n)
{
	raw_msg(r, RAFT_IO_APPEND_ENTRIES);
	for (int i = 0; i < 4; i++)
		raw_uv(r, 1);
	raw_uv(r, n);
}

Test(pframe, malformed_append_entries_are_rejected)
{
	struct raw r = { 0 };

	raw_ae(&r, 1);
	expect_invalid_raw(&r, "one entry announced, none there");
	raw_ae(&r, 1ull << 32);
	expect_invalid_raw(&r, "2^32 entries (must not wrap to 0)");
	raw_ae(&r, (1ull << 32) + 1);
	raw_uv(&r, 1);
	raw_u8(&r, RAFT_COMMAND);
	raw_uv(&r, 0);
	expect_invalid_raw(&r, "2^32 + 1 entries (must not wrap to 1)");
	raw_ae(&r, UINT64_MAX);
	expect_invalid_raw(&r, "2^64 - 1 entries");
	raw_ae(&r, UINT32_MAX);
	expect_invalid_raw(&r, "2^32 - 1 entries announced, none there (no huge allocation)");
	raw_ae(&r, 100000);
	for (int i = 0; i < 10; i++) {
		raw_uv(&r, 1);
		raw_u8(&r, RAFT_COMMAND);
		raw_uv(&r, 0);
	}
	expect_invalid_raw(&r, "100000 entries announced, 10 there");

	raw_ae(&r, 1);
	raw_uv(&r, 1);
	raw_u8(&r, RAFT_COMMAND);
	raw_uv(&r, 100);
	raw_put(&r, "0123456789", 10);
	expect_invalid_raw(&r, "entry longer than the frame");
	raw_ae(&r, 1);
	raw_uv(&r, 1);
	raw_u8(&r, RAFT_COMMAND);
	raw_uv(&r, UINT64_MAX);
	raw_put(&r, "0123456789", 10);
	expect_invalid_raw(&r, "entry of 2^64 - 1 bytes");
	raw_ae(&r, 2);
	raw_uv(&r, 1);
	raw_u8(&r, RAFT_COMMAND);
	raw_uv(&r, 1ull << 63);
	raw_uv(&r, 1);
	raw_u8(&r, RAFT_COMMAND);
	raw_uv(&r, 1ull << 63);
	expect_invalid_raw(&r, "entry lengths summing to 2^64 (must not wrap to 0)");
	raw_ae(&r, 2);
	raw_uv(&r, 1);
	raw_u8(&r, RAFT_COMMAND);
	raw_uv(&r, UINT64_MAX);
	raw_uv(&r, 1);
	raw_u8(&r, RAFT_COMMAND);
	raw_uv(&r, 3);
	raw_put(&r, "ab", 2);
	expect_invalid_raw(&r, "entry lengths summing to 2 mod 2^64");
	raw_ae(&r, 1);
	raw_uv(&r, 1);
	raw_u8(&r, RAFT_COMMAND);
	raw_uv(&r, 3);
	raw_put(&r, "abcd", 4);
	expect_invalid_raw(&r, "bytes after the last entry");
	raw_ae(&r, 0);
	raw_u8(&r, 0);
	expect_invalid_raw(&r, "a byte after a heartbeat");
	/* libraft knows three entry types; anything else must not reach it */
	static const unsigned bad_types[] = { 0, RAFT_CHANGE + 1, 255 };
	for (size_t i = 0; i < 3; i++) {
		raw_ae(&r, 1);
		raw_uv(&r, 1);
		raw_u8(&r, bad_types[i]);
		raw_uv(&r, 1);
		raw_u8(&r, 'x');
		expect_invalid_raw(&r, "unknown entry type");
	}
	raw_free(&r);
}

/* InstallSnapshot header fields (term 2, last 10/2, conf index 9). */
static void raw_is(struct raw *r, uint64_t count)
{
	raw_msg(r, RAFT_IO_INSTALL_SNAPSHOT);
	raw_uv(r, 2);
	raw_uv(r, 10);
	raw_uv(r, 2);
	raw_uv(r, 9);
	raw_uv(r, count);
}

static void raw_server(struct raw *r, uint64_t id, unsigned role, const char *addr)
{
	raw_uv(r, id);
	raw_uv(r, role); /* a byte or a varint: the same below 128 */
	raw_uv(r, strlen(addr));
	raw_put(r, addr, strlen(addr));
}

Test(pframe, malformed_install_snapshot_is_rejected)
{
	struct raw r = { 0 };

	/* first check that the hand-made encoding is the encoder's */
	uint64_t seed = 4;
	struct raft_message m;
	is_make(&m, three_servers, 3, 3, &seed);
	m.install_snapshot.term = 2;
	m.install_snapshot.last_index = 10;
	m.install_snapshot.last_term = 2;
	m.install_snapshot.conf_index = 9;
	struct sl_pbuf pb = encode(1, &m);
	raw_is(&r, 3);
	for (unsigned i = 0; i < 3; i++)
		raw_server(&r, three_servers[i].id, (unsigned)three_servers[i].role,
			   three_servers[i].address);
	raw_put(&r, m.install_snapshot.data.base, 3);
	raw_end(&r);
	cr_assert_eq(pb.len, r.n, "configuration encoding is not (uvarint count, uvarint id, "
				  "role, uvarint length, bytes)");
	cr_assert_arr_eq(pb.p, r.p, r.n);
	free(pb.p);
	is_free(&m);

	raw_is(&r, 1);
	expect_invalid_raw(&r, "one server announced, none there");
	raw_is(&r, 1ull << 32);
	expect_invalid_raw(&r, "2^32 servers");
	raw_is(&r, (1ull << 32) + 1);
	raw_server(&r, 1, RAFT_VOTER, "a:1");
	expect_invalid_raw(&r, "2^32 + 1 servers (must not wrap to 1)");
	raw_is(&r, 1000000);
	raw_server(&r, 1, RAFT_VOTER, "a:1");
	expect_invalid_raw(&r, "a million servers announced, one there");
	raw_is(&r, 1);
	raw_uv(&r, 1);
	raw_uv(&r, RAFT_VOTER);
	raw_uv(&r, 50);
	raw_put(&r, "a:1", 3);
	expect_invalid_raw(&r, "address longer than the frame");
	raw_is(&r, 1);
	raw_uv(&r, 1);
	raw_uv(&r, RAFT_VOTER);
	raw_uv(&r, UINT64_MAX);
	raw_put(&r, "a:1", 3);
	expect_invalid_raw(&r, "address of 2^64 - 1 bytes");
	raw_is(&r, 1);
	raw_server(&r, 1, 3, "a:1");
	expect_invalid_raw(&r, "role 3");
	raw_is(&r, 1);
	raw_server(&r, 1, 100, "a:1");
	expect_invalid_raw(&r, "role 100");
	raw_is(&r, 2);
	raw_server(&r, 1, RAFT_VOTER, "a:1");
	raw_server(&r, 1, RAFT_VOTER, "b:1");
	expect_invalid_raw(&r, "duplicate id");
	raw_is(&r, 2);
	raw_server(&r, 1, RAFT_VOTER, "a:1");
	raw_server(&r, 2, RAFT_VOTER, "a:1");
	expect_invalid_raw(&r, "duplicate address");
	raw_is(&r, 1);
	raw_server(&r, 0, RAFT_VOTER, "a:1");
	expect_invalid_raw(&r, "server id 0");
	raw_is(&r, 1);
	raw_uv(&r, 1);
	raw_uv(&r, RAFT_VOTER);
	raw_uv(&r, 5);
	raw_put(&r, "a:1\0x", 5);
	expect_invalid_raw(&r, "address with a NUL byte (it would be cut short)");
	raw_msg(&r, RAFT_IO_INSTALL_SNAPSHOT);
	raw_uv(&r, 2);
	raw_uv(&r, 10);
	raw_uv(&r, 2);
	expect_invalid_raw(&r, "no conf index");
	raw_free(&r);
}

/* ---- allocation failures while decoding ---- */

static long heap_left; /* allocations that succeed before one fails; -1: all */
static unsigned heap_failed;

static bool heap_take(void)
{
	if (heap_left == 0) {
		heap_failed++;
		return false;
	}
	if (heap_left > 0)
		heap_left--;
	return true;
}

static void *fh_malloc(void *data, size_t size)
{
	(void)data;
	return heap_take() ? malloc(size) : NULL;
}

static void fh_free(void *data, void *ptr)
{
	(void)data;
	free(ptr);
}

static void *fh_calloc(void *data, size_t nmemb, size_t size)
{
	(void)data;
	return heap_take() ? calloc(nmemb, size) : NULL;
}

static void *fh_realloc(void *data, void *ptr, size_t size)
{
	(void)data;
	return heap_take() ? realloc(ptr, size) : NULL;
}

static void *fh_aligned_alloc(void *data, size_t alignment, size_t size)
{
	(void)data;
	return heap_take() ? aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment)
			   : NULL;
}

static void fh_aligned_free(void *data, size_t alignment, void *ptr)
{
	(void)data;
	(void)alignment;
	free(ptr);
}

static struct raft_heap failing_heap = {
	.malloc = fh_malloc,
	.free = fh_free,
	.calloc = fh_calloc,
	.realloc = fh_realloc,
	.aligned_alloc = fh_aligned_alloc,
	.aligned_free = fh_aligned_free,
};

/* Decodes frame with the k-th raft allocation failing, for every k, until
 * a decode needs no failing allocation. Each failure must own nothing
 * (LeakSanitizer checks) and report an error other than a malformed frame. */
static void decode_under_failing_heap(const struct sl_pbuf *pb, const struct raft_message *want)
{
	raft_heap_set(&failing_heap);
	long k;
	for (k = 0; k < 1000; k++) {
		heap_left = k;
		heap_failed = 0;
		uint32_t g;
		struct raft_message m;
		int rv = decode(pb->p, pb->len, &g, &m);
		if (rv == SL_OK) {
			heap_left = -1;
			check(heap_failed == 0, "SL_OK after a failed allocation");
			expect_same(want, &m);
			sl_rmsg_discard(&m);
			break;
		}
		heap_left = -1;
		check(heap_failed > 0, "decode failed with no failed allocation: %d", rv);
		check(rv == SL_ENOMEM, "allocation %ld failing: %d, want SL_ENOMEM", k, rv);
	}
	raft_heap_set_default();
	check(k > 0, "decoding allocated nothing");
	check(k < 1000, "never succeeded");
}

Test(pframe, append_entries_allocation_failures)
{
	uint64_t seed = 6;
	struct raft_message m;
	size_t lens[3] = { 10, 0, 20 };
	ae_make(&m, 3, lens, &seed);
	struct sl_pbuf pb = encode(1, &m);
	set_where("append entries");
	decode_under_failing_heap(&pb, &m);
	free(pb.p);
	ae_free(&m);
}

Test(pframe, install_snapshot_allocation_failures)
{
	uint64_t seed = 6;
	struct raft_message m;
	is_make(&m, three_servers, 3, 100, &seed);
	struct sl_pbuf pb = encode(1, &m);
	set_where("install snapshot");
	decode_under_failing_heap(&pb, &m);
	free(pb.p);
	is_free(&m);
}

/* raft_configuration_add is linear in the servers already added: more than
 * SL_PFRAME_MAX_SERVERS would let one frame cost seconds of loop time. */
Test(pframe, install_snapshot_server_count_is_capped)
{
	for (unsigned n = SL_PFRAME_MAX_SERVERS; n <= SL_PFRAME_MAX_SERVERS + 1; n++) {
		struct raft_message m = { .type = RAFT_IO_INSTALL_SNAPSHOT };
		m.install_snapshot.term = 2;
		m.install_snapshot.last_index = 10;
		m.install_snapshot.last_term = 2;
		raft_configuration_init(&m.install_snapshot.conf);
		for (unsigned i = 0; i < n; i++) {
			char addr[32];
			snprintf(addr, sizeof(addr), "n%u", i + 1);
			cr_assert_eq(raft_configuration_add(&m.install_snapshot.conf, i + 1, addr, RAFT_VOTER), 0);
		}
		struct sl_pbuf b = { 0 };
		cr_assert_eq(sl_pframe_message(&b, 1, &m), SL_OK);
		raft_configuration_close(&m.install_snapshot.conf);
		struct raft_message d;
		uint32_t g;
		int rv = sl_pframe_decode_message(b.p, b.len, 2, "n2", &g, &d);
		if (n <= SL_PFRAME_MAX_SERVERS) {
			cr_assert_eq(rv, SL_OK);
			cr_assert_eq(d.install_snapshot.conf.n, n);
			sl_rmsg_discard(&d);
		} else {
			cr_assert_eq(rv, SL_EINVALID_REQUEST);
		}
		free(b.p);
	}
}

Test(pframe, bulk_frames_round_trip_and_reject_bad_ranges)
{
	struct sl_pbuf pb = { 0 };
	struct sl_pbulk_req q = { .group = 4000000000u, .offset = 12345, .end = INT64_MAX,
				  .max_bytes = 4u << 20 }, q2;
	cr_assert_eq(sl_pframe_bulk_req(&pb, &q), SL_OK);
	cr_assert_eq(sl_pframe_kind(pb.p, pb.len), SL_PFRAME_BULK_REQ);
	cr_assert_eq(sl_pframe_decode_bulk_req(pb.p, pb.len, &q2), SL_OK);
	cr_assert(q2.group == q.group && q2.offset == q.offset && q2.end == q.end &&
		  q2.max_bytes == q.max_bytes);
	/* A truncated body, and a request whose end lies below its offset. */
	size_t whole = pb.len;
	pb.p[3]--;
	cr_assert_eq(sl_pframe_decode_bulk_req(pb.p, whole - 1, &q2), SL_EINVALID_REQUEST);
	pb.len = 0;
	struct sl_pbulk_req bad = { .group = 1, .offset = 10, .end = 9 };
	cr_assert_eq(sl_pframe_bulk_req(&pb, &bad), SL_EINVALID_ARGUMENT);
	cr_assert_eq(pb.len, 0);
	const uint8_t inverted[] = { 0, 0, 0, 5, SL_PFRAME_BULK_REQ, 1, 10, 9, 0 };
	cr_assert_eq(sl_pframe_decode_bulk_req(inverted, sizeof(inverted), &q2),
		     SL_EINVALID_REQUEST);

	pb.len = 0;
	cr_assert_eq(sl_pframe_bulk_end(&pb, SL_EOFFSET_OUT_OF_RANGE, 77), SL_OK);
	int status;
	int64_t next;
	cr_assert_eq(sl_pframe_decode_bulk_end(pb.p, pb.len, &status, &next), SL_OK);
	cr_assert_eq(status, SL_EOFFSET_OUT_OF_RANGE);
	cr_assert_eq(next, 77);
	/* A hello is not an end frame. */
	cr_assert_eq(sl_pframe_decode_bulk_end(inverted, sizeof(inverted), &status, &next),
		     SL_EINVALID_REQUEST);

	uint8_t hdr[SL_PFRAME_HEADER + 1];
	sl_pframe_bulk_data_header(hdr, 1000);
	size_t flen;
	cr_assert_eq(sl_pframe_peek(hdr, sizeof(hdr), 1 << 20, &flen), SL_ENOT_FOUND);
	cr_assert_eq(flen, 1005, "a partial frame reports its whole length");
	cr_assert_eq(hdr[SL_PFRAME_HEADER], SL_PFRAME_BULK_DATA);
	free(pb.p);
}

Test(pframe, app_frames_carry_their_payload_whole)
{
	static const uint8_t payload[] = { 1, 0, 0xff, 'x' };
	struct sl_pbuf b = { 0 };
	cr_assert_eq(sl_pframe_app(&b, payload, sizeof(payload)), SL_OK);
	cr_assert_eq(sl_pframe_app(&b, NULL, 0), SL_OK);
	size_t flen;
	cr_assert_eq(sl_pframe_peek(b.p, b.len, 1 << 20, &flen), SL_OK);
	cr_assert_eq(flen, SL_PFRAME_HEADER + 1 + sizeof(payload));
	cr_assert_eq(sl_pframe_kind(b.p, flen), SL_PFRAME_APP);
	const uint8_t *p;
	size_t plen;
	cr_assert_eq(sl_pframe_decode_app(b.p, flen, &p, &plen), SL_OK);
	cr_assert(plen == sizeof(payload) && memcmp(p, payload, plen) == 0);
	cr_assert_eq(sl_pframe_decode_app(b.p + flen, b.len - flen, &p, &plen), SL_OK);
	cr_assert_eq(plen, 0, "an empty payload");
	/* Not an app frame, or not exactly one frame. */
	cr_assert_eq(sl_pframe_decode_app(b.p, flen - 1, &p, &plen), SL_EINVALID_REQUEST);
	cr_assert_eq(sl_pframe_decode_app(b.p, b.len, &p, &plen), SL_EINVALID_REQUEST);
	struct sl_pbuf h = { 0 };
	struct sl_phello hello = { .version = SL_PFRAME_VERSION, .node_id = 3 };
	cr_assert_eq(sl_pframe_hello(&h, &hello), SL_OK);
	cr_assert_eq(sl_pframe_decode_app(h.p, h.len, &p, &plen), SL_EINVALID_REQUEST);
	free(b.p);
	free(h.p);
}
