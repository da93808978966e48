/* The peer protocol's frames. See pframe.h. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "pframe.h"

#define HELLO_MAGIC "SLPR"

/* ---- Output --------------------------------------------------------- */

static bool reserve(struct sl_pbuf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return true;
	size_t ncap = b->cap ? b->cap * 2 : 256;
	while (ncap < b->len + more)
		ncap *= 2;
	uint8_t *p = realloc(b->p, ncap);
	if (p == NULL)
		return false;
	b->p = p;
	b->cap = ncap;
	return true;
}

/* Writers assume room was reserved. */
static void put_u8(struct sl_pbuf *b, uint8_t v)
{
	b->p[b->len++] = v;
}

static void put_uv(struct sl_pbuf *b, uint64_t v)
{
	while (v >= 0x80) {
		b->p[b->len++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b->p[b->len++] = (uint8_t)v;
}

static void put_bytes(struct sl_pbuf *b, const void *p, size_t n)
{
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* Writes the length of the frame started at start. */
static void finish(struct sl_pbuf *b, size_t start)
{
	uint32_t n = (uint32_t)(b->len - start - SL_PFRAME_HEADER);
	b->p[start] = (uint8_t)(n >> 24);
	b->p[start + 1] = (uint8_t)(n >> 16);
	b->p[start + 2] = (uint8_t)(n >> 8);
	b->p[start + 3] = (uint8_t)n;
}

#define UV 10 /* the most bytes a varint takes */

int sl_pframe_message(struct sl_pbuf *out, uint32_t group, const struct raft_message *msg)
{
	size_t need = SL_PFRAME_HEADER + 2 + UV + 6 * UV + 1;
	const struct raft_append_entries *ae = &msg->append_entries;
	const struct raft_install_snapshot *is = &msg->install_snapshot;
	if (msg->type == RAFT_IO_APPEND_ENTRIES) {
		for (unsigned i = 0; i < ae->n_entries; i++)
			need += 2 * UV + 1 + ae->entries[i].buf.len;
	} else if (msg->type == RAFT_IO_INSTALL_SNAPSHOT) {
		need += UV + is->data.len;
		for (unsigned i = 0; i < is->conf.n; i++)
			need += 3 * UV + strlen(is->conf.servers[i].address);
	}
	if (need > UINT32_MAX || !reserve(out, need))
		return SL_ENOMEM;
	size_t start = out->len;
	out->len += SL_PFRAME_HEADER;
	put_u8(out, SL_PFRAME_MESSAGE);
	put_uv(out, group);
	put_u8(out, (uint8_t)msg->type);
	switch (msg->type) {
	case RAFT_IO_APPEND_ENTRIES:
		put_uv(out, ae->term);
		put_uv(out, ae->prev_log_index);
		put_uv(out, ae->prev_log_term);
		put_uv(out, ae->leader_commit);
		put_uv(out, ae->n_entries);
		for (unsigned i = 0; i < ae->n_entries; i++) {
			put_uv(out, ae->entries[i].term);
			put_u8(out, (uint8_t)ae->entries[i].type);
			put_uv(out, ae->entries[i].buf.len);
		}
		for (unsigned i = 0; i < ae->n_entries; i++)
			put_bytes(out, ae->entries[i].buf.base, ae->entries[i].buf.len);
		break;
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		put_uv(out, msg->append_entries_result.term);
		put_uv(out, msg->append_entries_result.rejected);
		put_uv(out, msg->append_entries_result.last_log_index);
		break;
	case RAFT_IO_REQUEST_VOTE:
		put_uv(out, msg->request_vote.term);
		put_uv(out, msg->request_vote.candidate_id);
		put_uv(out, msg->request_vote.last_log_index);
		put_uv(out, msg->request_vote.last_log_term);
		put_u8(out, (uint8_t)((msg->request_vote.disrupt_leader ? 1 : 0) |
				      (msg->request_vote.pre_vote ? 2 : 0)));
		break;
	case RAFT_IO_REQUEST_VOTE_RESULT:
		put_uv(out, msg->request_vote_result.term);
		put_u8(out, (uint8_t)((msg->request_vote_result.vote_granted ? 1 : 0) |
				      (((unsigned)msg->request_vote_result.pre_vote & 3) << 1)));
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
		put_uv(out, is->term);
		put_uv(out, is->last_index);
		put_uv(out, is->last_term);
		put_uv(out, is->conf_index);
		put_uv(out, is->conf.n);
		for (unsigned i = 0; i < is->conf.n; i++) {
			const struct raft_server *s = &is->conf.servers[i];
			size_t alen = strlen(s->address);
			put_uv(out, s->id);
			put_uv(out, (uint64_t)s->role);
			put_uv(out, alen);
			put_bytes(out, s->address, alen);
		}
		put_bytes(out, is->data.base, is->data.len);
		break;
	case RAFT_IO_TIMEOUT_NOW:
		put_uv(out, msg->timeout_now.term);
		put_uv(out, msg->timeout_now.last_log_index);
		put_uv(out, msg->timeout_now.last_log_term);
		break;
	default:
		out->len = start;
		return SL_EINVALID_ARGUMENT;
	}
	finish(out, start);
	return SL_OK;
}

int sl_pframe_hello(struct sl_pbuf *out, const struct sl_phello *h)
{
	if (!reserve(out, SL_PFRAME_HEADER + 1 + 4 + 2 + 16 + UV + 16))
		return SL_ENOMEM;
	size_t start = out->len;
	out->len += SL_PFRAME_HEADER;
	put_u8(out, SL_PFRAME_HELLO);
	put_bytes(out, HELLO_MAGIC, 4);
	put_u8(out, (uint8_t)(h->version >> 8));
	put_u8(out, (uint8_t)h->version);
	put_bytes(out, h->cluster_id, 16);
	put_uv(out, h->node_id);
	put_bytes(out, h->node_uuid, 16);
	finish(out, start);
	return SL_OK;
}

/* ---- Input ---------------------------------------------------------- */

int sl_pframe_peek(const uint8_t *buf, size_t len, size_t max_frame, size_t *frame_len)
{
	if (len < SL_PFRAME_HEADER)
		return SL_ENOT_FOUND;
	uint64_t n = (uint64_t)buf[0] << 24 | (uint64_t)buf[1] << 16 | (uint64_t)buf[2] << 8 | buf[3];
	if (n + SL_PFRAME_HEADER > max_frame)
		return SL_EMESSAGE_TOO_LARGE;
	if (len < n + SL_PFRAME_HEADER) {
		*frame_len = (size_t)n + SL_PFRAME_HEADER;
		return SL_ENOT_FOUND;
	}
	*frame_len = (size_t)n + SL_PFRAME_HEADER;
	return SL_OK;
}

int sl_pframe_app(struct sl_pbuf *out, const void *payload, size_t len)
{
	if (len > UINT32_MAX - 1 || !reserve(out, SL_PFRAME_HEADER + 1 + len))
		return SL_ENOMEM;
	size_t start = out->len;
	out->len += SL_PFRAME_HEADER;
	put_u8(out, SL_PFRAME_APP);
	put_bytes(out, payload, len);
	finish(out, start);
	return SL_OK;
}


int sl_pframe_kind(const uint8_t *frame, size_t len)
{
	return len > SL_PFRAME_HEADER ? frame[SL_PFRAME_HEADER] : 0;
}

struct rd {
	const uint8_t *p, *end;
	bool bad;
};

static uint64_t get_uv(struct rd *r)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 70; shift += 7) {
		if (r->p >= r->end) {
			r->bad = true;
			return 0;
		}
		uint8_t c = *r->p++;
		if (shift == 63 && c > 1) { /* the 10th byte holds one bit */
			r->bad = true;
			return 0;
		}
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

static uint8_t get_u8(struct rd *r)
{
	if (r->p >= r->end) {
		r->bad = true;
		return 0;
	}
	return *r->p++;
}

/* Reads a frame's length and kind; the reader then covers the body. */
static bool open_frame(struct rd *r, const uint8_t *frame, size_t len, uint8_t kind)
{
	size_t n;
	if (sl_pframe_peek(frame, len, SIZE_MAX, &n) != SL_OK || n != len ||
	    sl_pframe_kind(frame, len) != kind)
		return false;
	r->p = frame + SL_PFRAME_HEADER + 1;
	r->end = frame + len;
	r->bad = false;
	return true;
}

int sl_pframe_decode_app(const uint8_t *frame, size_t len, const uint8_t **payload, size_t *plen)
{
	struct rd r;
	if (!open_frame(&r, frame, len, SL_PFRAME_APP))
		return SL_EINVALID_REQUEST;
	*payload = r.p;
	*plen = (size_t)(r.end - r.p);
	return SL_OK;
}

static int decode_entries(struct rd *r, struct raft_append_entries *ae)
{
	uint64_t n = get_uv(r);
	/* Every entry takes at least three bytes of the frame. */
	if (r->bad || n > (uint64_t)(r->end - r->p) / 3 || n > UINT32_MAX)
		return SL_EINVALID_REQUEST;
	ae->n_entries = 0; /* set once the entries are there */
	ae->entries = NULL;
	if (n == 0)
		return r->p == r->end ? SL_OK : SL_EINVALID_REQUEST;
	struct raft_entry *ents = raft_calloc(n, sizeof(*ents));
	if (ents == NULL)
		return SL_ENOMEM;
	uint64_t total = 0;
	for (unsigned i = 0; i < n && !r->bad; i++) {
		ents[i].term = get_uv(r);
		ents[i].type = get_u8(r);
		ents[i].buf.len = get_uv(r);
		total += ents[i].buf.len;
		if (ents[i].type < RAFT_COMMAND || ents[i].type > RAFT_CHANGE || total < ents[i].buf.len)
			r->bad = true;
	}
	if (r->bad || total != (uint64_t)(r->end - r->p)) {
		raft_free(ents);
		return SL_EINVALID_REQUEST;
	}
	uint8_t *batch = raft_malloc(total > 0 ? total : 1);
	if (batch == NULL) {
		raft_free(ents);
		return SL_ENOMEM;
	}
	memcpy(batch, r->p, total);
	size_t off = 0;
	for (unsigned i = 0; i < n; i++) {
		ents[i].buf.base = batch + off;
		ents[i].batch = batch;
		off += ents[i].buf.len;
	}
	r->p = r->end;
	ae->entries = ents;
	ae->n_entries = (unsigned)n;
	return SL_OK;
}

static int decode_snapshot(struct rd *r, struct raft_install_snapshot *is)
{
	raft_configuration_init(&is->conf);
	is->data.base = NULL;
	is->data.len = 0;
	uint64_t n = get_uv(r);
	/* raft_configuration_add is linear in the servers already there:
	 * a cap keeps a hostile frame from costing seconds of loop time. */
	if (r->bad || n > (uint64_t)(r->end - r->p) / 3 || n > SL_PFRAME_MAX_SERVERS)
		return SL_EINVALID_REQUEST;
	int rv = SL_OK;
	for (uint64_t i = 0; i < n && rv == SL_OK; i++) {
		uint64_t id = get_uv(r), role = get_uv(r), alen = get_uv(r);
		if (r->bad || id == 0 || role > RAFT_SPARE || alen > (uint64_t)(r->end - r->p)) {
			rv = SL_EINVALID_REQUEST;
			break;
		}
		char *addr = malloc(alen + 1);
		if (addr == NULL) {
			rv = SL_ENOMEM;
			break;
		}
		memcpy(addr, r->p, alen);
		addr[alen] = '\0';
		r->p += alen;
		int arv = strlen(addr) != alen ? RAFT_INVALID
					       : raft_configuration_add(&is->conf, id, addr, (int)role);
		if (arv != 0)
			rv = arv == RAFT_NOMEM ? SL_ENOMEM : SL_EINVALID_REQUEST;
		free(addr);
	}
	size_t dlen = (size_t)(r->end - r->p);
	if (rv == SL_OK && (is->data.base = raft_malloc(dlen > 0 ? dlen : 1)) == NULL)
		rv = SL_ENOMEM;
	if (rv != SL_OK) {
		raft_configuration_close(&is->conf);
		raft_configuration_init(&is->conf);
		return rv;
	}
	memcpy(is->data.base, r->p, dlen);
	is->data.len = dlen;
	r->p = r->end;
	return SL_OK;
}

int sl_pframe_decode_message(const uint8_t *frame, size_t len, raft_id from,
			     const char *from_address, uint32_t *group, struct raft_message *msg)
{
	struct rd r;
	memset(msg, 0, sizeof(*msg));
	if (!open_frame(&r, frame, len, SL_PFRAME_MESSAGE))
		return SL_EINVALID_REQUEST;
	uint64_t g = get_uv(&r);
	msg->type = get_u8(&r);
	if (r.bad || g > UINT32_MAX)
		return SL_EINVALID_REQUEST;
	*group = (uint32_t)g;
	msg->server_id = from;
	msg->server_address = from_address;
	int rv = SL_OK;
	switch (msg->type) {
	case RAFT_IO_APPEND_ENTRIES:
		msg->append_entries.term = get_uv(&r);
		msg->append_entries.prev_log_index = get_uv(&r);
		msg->append_entries.prev_log_term = get_uv(&r);
		msg->append_entries.leader_commit = get_uv(&r);
		if (r.bad)
			return SL_EINVALID_REQUEST;
		return decode_entries(&r, &msg->append_entries);
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		msg->append_entries_result.term = get_uv(&r);
		msg->append_entries_result.rejected = get_uv(&r);
		msg->append_entries_result.last_log_index = get_uv(&r);
		break;
	case RAFT_IO_REQUEST_VOTE: {
		msg->request_vote.term = get_uv(&r);
		msg->request_vote.candidate_id = get_uv(&r);
		msg->request_vote.last_log_index = get_uv(&r);
		msg->request_vote.last_log_term = get_uv(&r);
		uint8_t f = get_u8(&r);
		if (f > 3)
			r.bad = true;
		msg->request_vote.disrupt_leader = f & 1;
		msg->request_vote.pre_vote = (f & 2) != 0;
		break;
	}
	case RAFT_IO_REQUEST_VOTE_RESULT: {
		msg->request_vote_result.term = get_uv(&r);
		uint8_t f = get_u8(&r);
		if (f > 5) /* tribool 0..2 in bits 1-2 */
			r.bad = true;
		msg->request_vote_result.vote_granted = f & 1;
		msg->request_vote_result.pre_vote = (raft_tribool)(f >> 1);
		break;
	}
	case RAFT_IO_INSTALL_SNAPSHOT:
		msg->install_snapshot.term = get_uv(&r);
		msg->install_snapshot.last_index = get_uv(&r);
		msg->install_snapshot.last_term = get_uv(&r);
		msg->install_snapshot.conf_index = get_uv(&r);
		if (r.bad)
			return SL_EINVALID_REQUEST;
		return decode_snapshot(&r, &msg->install_snapshot);
	case RAFT_IO_TIMEOUT_NOW:
		msg->timeout_now.term = get_uv(&r);
		msg->timeout_now.last_log_index = get_uv(&r);
		msg->timeout_now.last_log_term = get_uv(&r);
		break;
	default:
		return SL_EINVALID_REQUEST;
	}
	if (r.bad || r.p != r.end)
		rv = SL_EINVALID_REQUEST;
	return rv;
}

int sl_pframe_decode_hello(const uint8_t *frame, size_t len, struct sl_phello *h)
{
	struct rd r;
	memset(h, 0, sizeof(*h));
	if (!open_frame(&r, frame, len, SL_PFRAME_HELLO) || r.end - r.p < 4 + 2 + 16 ||
	    memcmp(r.p, HELLO_MAGIC, 4) != 0)
		return SL_EINVALID_REQUEST;
	r.p += 4;
	h->version = (uint16_t)(r.p[0] << 8 | r.p[1]);
	r.p += 2;
	memcpy(h->cluster_id, r.p, 16);
	r.p += 16;
	h->node_id = get_uv(&r);
	if (r.bad || r.end - r.p != 16)
		return SL_EINVALID_REQUEST;
	memcpy(h->node_uuid, r.p, 16);
	return SL_OK;
}

/* ---- Bulk copy -------------------------------------------------------- */

int sl_pframe_bulk_req(struct sl_pbuf *out, const struct sl_pbulk_req *q)
{
	if (q->offset < 0 || q->end < q->offset)
		return SL_EINVALID_ARGUMENT;
	if (!reserve(out, SL_PFRAME_HEADER + 1 + 4 * UV))
		return SL_ENOMEM;
	size_t start = out->len;
	out->len += SL_PFRAME_HEADER;
	put_u8(out, SL_PFRAME_BULK_REQ);
	put_uv(out, q->group);
	put_uv(out, (uint64_t)q->offset);
	put_uv(out, (uint64_t)q->end);
	put_uv(out, q->max_bytes);
	finish(out, start);
	return SL_OK;
}

int sl_pframe_decode_bulk_req(const uint8_t *frame, size_t len, struct sl_pbulk_req *q)
{
	struct rd r;
	memset(q, 0, sizeof(*q));
	if (!open_frame(&r, frame, len, SL_PFRAME_BULK_REQ))
		return SL_EINVALID_REQUEST;
	uint64_t group = get_uv(&r), offset = get_uv(&r), end = get_uv(&r);
	q->max_bytes = get_uv(&r);
	if (r.bad || r.p != r.end || group > UINT32_MAX || offset > INT64_MAX || end > INT64_MAX ||
	    end < offset)
		return SL_EINVALID_REQUEST;
	q->group = (uint32_t)group;
	q->offset = (int64_t)offset;
	q->end = (int64_t)end;
	return SL_OK;
}

void sl_pframe_bulk_data_header(uint8_t hdr[SL_PFRAME_HEADER + 1], uint32_t data_len)
{
	uint32_t n = data_len + 1;
	hdr[0] = (uint8_t)(n >> 24);
	hdr[1] = (uint8_t)(n >> 16);
	hdr[2] = (uint8_t)(n >> 8);
	hdr[3] = (uint8_t)n;
	hdr[4] = SL_PFRAME_BULK_DATA;
}

int sl_pframe_bulk_end(struct sl_pbuf *out, int status, int64_t next)
{
	if (status < 0 || next < 0)
		return SL_EINVALID_ARGUMENT;
	if (!reserve(out, SL_PFRAME_HEADER + 1 + 2 * UV))
		return SL_ENOMEM;
	size_t start = out->len;
	out->len += SL_PFRAME_HEADER;
	put_u8(out, SL_PFRAME_BULK_END);
	put_uv(out, (uint64_t)status);
	put_uv(out, (uint64_t)next);
	finish(out, start);
	return SL_OK;
}

int sl_pframe_decode_bulk_end(const uint8_t *frame, size_t len, int *status, int64_t *next)
{
	struct rd r;
	if (!open_frame(&r, frame, len, SL_PFRAME_BULK_END))
		return SL_EINVALID_REQUEST;
	uint64_t s = get_uv(&r), n = get_uv(&r);
	if (r.bad || r.p != r.end || s > INT32_MAX || n > INT64_MAX)
		return SL_EINVALID_REQUEST;
	*status = (int)s;
	*next = (int64_t)n;
	return SL_OK;
}
