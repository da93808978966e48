/* libFuzzer target for the peer protocol's frame codec (raft/pframe.h).
 *
 * Every input goes through sl_pframe_peek and sl_pframe_kind, then is
 * decoded as a message frame, a hello and the bulk frames, as it is and, when its length
 * field does not match its size, once more with the length field
 * rewritten (random bytes almost never carry the right length; the fixed
 * copy is what lets mutations of the seeds reach the body parsers).
 *
 * A decode returns SL_OK or SL_EINVALID_REQUEST, nothing else. After
 * SL_OK:
 * - the message is in the layout of raft/rio.h (one batch for all
 *   entries, each inside it and in order; server_id and server_address
 *   are the sender's);
 * - it encodes again, that frame peeks whole and decodes to the same
 *   message, and encoding that gives the same bytes;
 * - the encoding is canonical: never longer than the input, and equal to
 *   it when just as long (the input then used minimal varints);
 * - what the decode owns is freed with sl_rmsg_discard (LeakSanitizer
 *   checks that nothing else was allocated).
 *
 * Seeds: tests/fuzz/corpus/pframe/ (one valid frame of each message type,
 * a hello and the bulk frames, made with the encoder). Run with a scratch corpus first, as
 * libFuzzer adds new inputs there:
 *   fuzz_pframe -max_total_time=60 /tmp/corpus-pframe tests/fuzz/corpus/pframe */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "pframe.h"
#include "rio.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#define FROM_ID 7
static const char FROM_ADDR[] = "10.9.8.7:9093";

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The layout sl_rio_deliver takes. */
static void check_layout(const struct raft_message *m)
{
	CHECK(m->server_id == FROM_ID);
	CHECK(m->server_address == FROM_ADDR);
	CHECK(m->type >= RAFT_IO_APPEND_ENTRIES && m->type <= RAFT_IO_TIMEOUT_NOW);
	if (m->type == RAFT_IO_APPEND_ENTRIES && m->append_entries.n_entries > 0) {
		const struct raft_entry *e = m->append_entries.entries;
		CHECK(e != NULL && e[0].batch != NULL);
		const uint8_t *batch = e[0].batch, *prev_end = batch;
		for (unsigned i = 0; i < m->append_entries.n_entries; i++) {
			CHECK(e[i].batch == batch);
			if (e[i].buf.len == 0)
				continue;
			const uint8_t *b = e[i].buf.base;
			CHECK(b >= prev_end);
			prev_end = b + e[i].buf.len;
		}
	} else if (m->type == RAFT_IO_INSTALL_SNAPSHOT) {
		const struct raft_configuration *c = &m->install_snapshot.conf;
		CHECK(c->n == 0 || c->servers != NULL);
		for (unsigned i = 0; i < c->n; i++)
			CHECK(c->servers[i].address != NULL);
		CHECK(m->install_snapshot.data.len == 0 || m->install_snapshot.data.base != NULL);
	}
}

static void check_same(const struct raft_message *a, const struct raft_message *b)
{
	CHECK(a->type == b->type);
	CHECK(a->server_id == b->server_id && a->server_address == b->server_address);
	switch (a->type) {
	case RAFT_IO_APPEND_ENTRIES: {
		const struct raft_append_entries *x = &a->append_entries, *y = &b->append_entries;
		CHECK(x->term == y->term && x->prev_log_index == y->prev_log_index &&
		      x->prev_log_term == y->prev_log_term && x->leader_commit == y->leader_commit &&
		      x->n_entries == y->n_entries);
		for (unsigned i = 0; i < x->n_entries; i++) {
			const struct raft_entry *p = &x->entries[i], *q = &y->entries[i];
			CHECK(p->term == q->term && p->type == q->type && p->buf.len == q->buf.len);
			CHECK(p->buf.len == 0 || memcmp(p->buf.base, q->buf.base, p->buf.len) == 0);
		}
		break;
	}
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		CHECK(a->append_entries_result.term == b->append_entries_result.term);
		CHECK(a->append_entries_result.rejected == b->append_entries_result.rejected);
		CHECK(a->append_entries_result.last_log_index ==
		      b->append_entries_result.last_log_index);
		break;
	case RAFT_IO_REQUEST_VOTE:
		CHECK(a->request_vote.term == b->request_vote.term);
		CHECK(a->request_vote.candidate_id == b->request_vote.candidate_id);
		CHECK(a->request_vote.last_log_index == b->request_vote.last_log_index);
		CHECK(a->request_vote.last_log_term == b->request_vote.last_log_term);
		CHECK(a->request_vote.disrupt_leader == b->request_vote.disrupt_leader);
		CHECK(a->request_vote.pre_vote == b->request_vote.pre_vote);
		break;
	case RAFT_IO_REQUEST_VOTE_RESULT:
		CHECK(a->request_vote_result.term == b->request_vote_result.term);
		CHECK(a->request_vote_result.vote_granted == b->request_vote_result.vote_granted);
		CHECK(a->request_vote_result.pre_vote == b->request_vote_result.pre_vote);
		/* a value libraft knows */
		CHECK(a->request_vote_result.pre_vote == raft_tribool_unknown ||
		      a->request_vote_result.pre_vote == raft_tribool_true ||
		      a->request_vote_result.pre_vote == raft_tribool_false);
		break;
	case RAFT_IO_INSTALL_SNAPSHOT: {
		const struct raft_install_snapshot *x = &a->install_snapshot, *y = &b->install_snapshot;
		CHECK(x->term == y->term && x->last_index == y->last_index &&
		      x->last_term == y->last_term && x->conf_index == y->conf_index);
		CHECK(x->conf.n == y->conf.n);
		for (unsigned i = 0; i < x->conf.n; i++) {
			const struct raft_server *p = &x->conf.servers[i], *q = &y->conf.servers[i];
			CHECK(p->id == q->id && p->role == q->role);
			CHECK(strcmp(p->address, q->address) == 0);
		}
		CHECK(x->data.len == y->data.len);
		CHECK(x->data.len == 0 || memcmp(x->data.base, y->data.base, x->data.len) == 0);
		break;
	}
	case RAFT_IO_TIMEOUT_NOW:
		CHECK(a->timeout_now.term == b->timeout_now.term);
		CHECK(a->timeout_now.last_log_index == b->timeout_now.last_log_index);
		CHECK(a->timeout_now.last_log_term == b->timeout_now.last_log_term);
		break;
	default:
		CHECK(0);
	}
}

/* A valid frame just made by the encoder: peek, kind, length field. */
static void check_frame(const struct sl_pbuf *pb, int kind)
{
	size_t flen = 0;
	CHECK(pb->len >= SL_PFRAME_HEADER + 1 && pb->len <= pb->cap);
	CHECK(get_be32(pb->p) == pb->len - SL_PFRAME_HEADER);
	CHECK(sl_pframe_peek(pb->p, pb->len, pb->len, &flen) == SL_OK && flen == pb->len);
	CHECK(sl_pframe_kind(pb->p, pb->len) == kind);
}

static void message(const uint8_t *data, size_t size)
{
	uint32_t group;
	struct raft_message m;
	int rv = sl_pframe_decode_message(data, size, FROM_ID, FROM_ADDR, &group, &m);
	CHECK(rv == SL_OK || rv == SL_EINVALID_REQUEST);
	if (rv != SL_OK)
		return;
	CHECK(size > SL_PFRAME_HEADER && get_be32(data) == size - SL_PFRAME_HEADER);
	CHECK(sl_pframe_kind(data, size) == SL_PFRAME_MESSAGE);
	check_layout(&m);

	struct sl_pbuf a = { 0 }, b = { 0 };
	CHECK(sl_pframe_message(&a, group, &m) == SL_OK);
	check_frame(&a, SL_PFRAME_MESSAGE);
	CHECK(a.len <= size);
	CHECK(a.len < size || memcmp(a.p, data, size) == 0);

	uint32_t group2;
	struct raft_message m2;
	rv = sl_pframe_decode_message(a.p, a.len, FROM_ID, FROM_ADDR, &group2, &m2);
	CHECK(rv == SL_OK);
	CHECK(group2 == group);
	check_layout(&m2);
	check_same(&m, &m2);
	CHECK(sl_pframe_message(&b, group2, &m2) == SL_OK);
	CHECK(b.len == a.len && memcmp(a.p, b.p, a.len) == 0);

	sl_rmsg_discard(&m2);
	sl_rmsg_discard(&m);
	free(a.p);
	free(b.p);
}

static void hello(const uint8_t *data, size_t size)
{
	struct sl_phello h, h2;
	int rv = sl_pframe_decode_hello(data, size, &h);
	CHECK(rv == SL_OK || rv == SL_EINVALID_REQUEST);
	if (rv != SL_OK)
		return;
	CHECK(size > SL_PFRAME_HEADER && get_be32(data) == size - SL_PFRAME_HEADER);
	CHECK(sl_pframe_kind(data, size) == SL_PFRAME_HELLO);

	struct sl_pbuf a = { 0 };
	CHECK(sl_pframe_hello(&a, &h) == SL_OK);
	check_frame(&a, SL_PFRAME_HELLO);
	CHECK(a.len <= size);
	CHECK(a.len < size || memcmp(a.p, data, size) == 0);
	CHECK(sl_pframe_decode_hello(a.p, a.len, &h2) == SL_OK);
	CHECK(h2.version == h.version && h2.node_id == h.node_id);
	CHECK(memcmp(h2.cluster_id, h.cluster_id, 16) == 0);
	CHECK(memcmp(h2.node_uuid, h.node_uuid, 16) == 0);
	free(a.p);
}

/* Application frames: the payload is the rest of the frame, and encoding
 * it again gives the same bytes. */
static void app(const uint8_t *data, size_t size)
{
	const uint8_t *payload;
	size_t plen;
	int rv = sl_pframe_decode_app(data, size, &payload, &plen);
	CHECK(rv == SL_OK || rv == SL_EINVALID_REQUEST);
	if (rv != SL_OK)
		return;
	CHECK(sl_pframe_kind(data, size) == SL_PFRAME_APP);
	CHECK(payload == data + SL_PFRAME_HEADER + 1 && plen == size - SL_PFRAME_HEADER - 1);
	struct sl_pbuf a = { 0 };
	CHECK(sl_pframe_app(&a, payload, plen) == SL_OK);
	check_frame(&a, SL_PFRAME_APP);
	CHECK(a.len == size && memcmp(a.p, data, size) == 0);
	free(a.p);
}

/* Bulk request and end frames: decode, encode again, same bytes unless the
 * input used longer varints. */
static void bulk(const uint8_t *data, size_t size)
{
	struct sl_pbulk_req q, q2;
	struct sl_pbuf a = { 0 };
	int rv = sl_pframe_decode_bulk_req(data, size, &q);
	CHECK(rv == SL_OK || rv == SL_EINVALID_REQUEST);
	if (rv == SL_OK) {
		CHECK(q.offset >= 0 && q.end >= q.offset);
		CHECK(sl_pframe_bulk_req(&a, &q) == SL_OK);
		check_frame(&a, SL_PFRAME_BULK_REQ);
		CHECK(a.len <= size && (a.len < size || memcmp(a.p, data, size) == 0));
		CHECK(sl_pframe_decode_bulk_req(a.p, a.len, &q2) == SL_OK);
		CHECK(q2.group == q.group && q2.offset == q.offset && q2.end == q.end &&
		      q2.max_bytes == q.max_bytes);
	}
	int status;
	int64_t next;
	rv = sl_pframe_decode_bulk_end(data, size, &status, &next);
	CHECK(rv == SL_OK || rv == SL_EINVALID_REQUEST);
	if (rv == SL_OK) {
		a.len = 0;
		CHECK(status >= 0 && next >= 0);
		CHECK(sl_pframe_bulk_end(&a, status, next) == SL_OK);
		check_frame(&a, SL_PFRAME_BULK_END);
		CHECK(a.len <= size && (a.len < size || memcmp(a.p, data, size) == 0));
	}
	free(a.p);
}

static void peek(const uint8_t *data, size_t size)
{
	static const size_t limits[] = { 0, 5, 64, 4096, SIZE_MAX };
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		size_t flen = 0;
		int rv = sl_pframe_peek(data, size, limits[i], &flen);
		if (size < SL_PFRAME_HEADER) {
			CHECK(rv == SL_ENOT_FOUND);
			continue;
		}
		uint64_t want = (uint64_t)get_be32(data) + SL_PFRAME_HEADER;
		if (want > limits[i])
			CHECK(rv == SL_EMESSAGE_TOO_LARGE);
		else if (want > size)
			CHECK(rv == SL_ENOT_FOUND);
		else
			CHECK(rv == SL_OK && flen == want);
	}
	int kind = sl_pframe_kind(data, size);
	CHECK(size > SL_PFRAME_HEADER ? kind == data[SL_PFRAME_HEADER] : kind == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact copy, so that AddressSanitizer sees a read past the end. */
	uint8_t *c = malloc(size > 0 ? size : 1);
	CHECK(c != NULL);
	if (size > 0)
		memcpy(c, data, size);
	peek(c, size);
	message(c, size);
	hello(c, size);
	app(c, size);
	bulk(c, size);
	if (size >= SL_PFRAME_HEADER && get_be32(c) != size - SL_PFRAME_HEADER &&
	    size - SL_PFRAME_HEADER <= UINT32_MAX) {
		uint32_t n = (uint32_t)(size - SL_PFRAME_HEADER);
		c[0] = (uint8_t)(n >> 24);
		c[1] = (uint8_t)(n >> 16);
		c[2] = (uint8_t)(n >> 8);
		c[3] = (uint8_t)n;
		message(c, size);
		hello(c, size);
		app(c, size);
		bulk(c, size);
	}
	free(c);
	return 0;
}
