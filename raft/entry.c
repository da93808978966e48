/* Raft entries as record batches, and the snapshot manifest. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "bigendian.h"
#include "raft_int.h"

size_t sl_rconf_used(const uint8_t *p, size_t len)
{
	if (len < 9 || p[0] != 1)
		return len;
	uint64_t n = 0;
	for (int i = 8; i >= 1; i--)
		n = n << 8 | p[i];
	size_t pos = 9;
	for (uint64_t k = 0; k < n; k++) {
		if (len - pos < 8)
			return len;
		pos += 8; /* id */
		const uint8_t *nul = memchr(p + pos, 0, len - pos);
		if (nul == NULL || (size_t)(nul - p) + 2 > len)
			return len;
		pos = (size_t)(nul - p) + 2; /* the address, its NUL, the role */
	}
	return pos;
}

int sl_rentry_control(int64_t offset, raft_term term, unsigned short type, const void *payload,
		      size_t len, uint8_t **out, size_t *out_len)
{
	if (term > INT32_MAX || len > INT32_MAX)
		return SL_EINVALID_ARGUMENT;
	uint8_t *clean = NULL;
	if (type == RAFT_CHANGE && sl_rconf_used(payload, len) < len) {
		/* libraft pads an encoded configuration to 8 bytes without
		 * writing the padding: heap bytes that differ per replica. */
		if ((clean = malloc(len)) == NULL)
			return SL_ENOMEM;
		size_t used = sl_rconf_used(payload, len);
		memcpy(clean, payload, used);
		memset(clean + used, 0, len - used);
		payload = clean;
	}
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	uint8_t key[4];
	sl_batch_opts_init(&o);
	o.attributes = SL_ATTR_CONTROL;
	sl_batch_builder_init(&b, &o);
	sl_store_be16(key, 0);
	sl_store_be16(key + 2, (uint16_t)(type == RAFT_CHANGE ? SL_CONTROL_RAFT_CHANGE
							     : SL_CONTROL_RAFT_BARRIER));
	const uint8_t *bytes;
	size_t n;
	int rv = sl_batch_builder_add(&b, 0, key, sizeof(key), payload, (int32_t)len, NULL, 0);
	if (rv == SL_OK)
		rv = sl_batch_builder_finish(&b, &bytes, &n);
	if (rv == SL_OK && (*out = malloc(n)) == NULL)
		rv = SL_ENOMEM;
	if (rv == SL_OK) {
		memcpy(*out, bytes, n);
		sl_batch_stamp(*out, offset, (int32_t)term);
		*out_len = n;
	}
	sl_batch_builder_free(&b);
	free(clean);
	return rv;
}

int sl_rentry_decode(const uint8_t *batch, size_t len, unsigned short *type, raft_term *term,
		     size_t *payload_off, size_t *payload_len)
{
	struct sl_batch_header h;
	int rv = sl_batch_parse_header(batch, len, UINT32_MAX, &h);
	if (rv != SL_OK)
		return rv;
	if (sl_batch_total_size(&h) != len || h.leader_epoch < 0)
		return SL_EINVALID_RECORD;
	*term = (raft_term)h.leader_epoch;
	*type = RAFT_COMMAND;
	*payload_off = 0;
	*payload_len = len;
	if (!(h.attributes & SL_ATTR_CONTROL) || (h.attributes & SL_ATTR_CODEC_MASK) ||
	    h.record_count != 1)
		return SL_OK;
	struct sl_record_iter it;
	struct sl_record rec;
	if ((rv = sl_record_iter_init(&it, batch, len)) != SL_OK)
		return rv;
	if (sl_record_iter_next(&it, &rec) && rec.key_len == 4 && sl_load_be16(rec.key) == 0) {
		unsigned kind = sl_load_be16(rec.key + 2);
		if (kind == SL_CONTROL_RAFT_CHANGE || kind == SL_CONTROL_RAFT_BARRIER) {
			*type = kind == SL_CONTROL_RAFT_CHANGE ? RAFT_CHANGE : RAFT_BARRIER;
			*payload_off = rec.value_len > 0 ? (size_t)(rec.value - batch) : 0;
			*payload_len = rec.value_len > 0 ? (size_t)rec.value_len : 0;
		}
	}
	rv = it.err;
	sl_record_iter_free(&it);
	return rv;
}

/* ---- Manifest ------------------------------------------------------- */

#define MANIFEST_MAGIC 0x4e534c53u /* "SLSN" */
#define MANIFEST_VERSION 1

static void put32(uint8_t **p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		*(*p)++ = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t **p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p, (uint32_t)(v >> 32));
}

static bool get32(const uint8_t **p, const uint8_t *end, uint32_t *v)
{
	if (end - *p < 4)
		return false;
	*v = 0;
	for (int i = 0; i < 4; i++)
		*v |= (uint32_t)(*p)[i] << (8 * i);
	*p += 4;
	return true;
}

static bool get64(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint32_t lo, hi;
	if (!get32(p, end, &lo) || !get32(p, end, &hi))
		return false;
	*v = (uint64_t)hi << 32 | lo;
	return true;
}

int sl_rmanifest_encode(const struct sl_rmanifest *m, const struct raft_buffer *fsm, unsigned n_fsm,
			uint8_t **out, size_t *out_len)
{
	size_t len = 4 + 4 + 8 + 8 + 8 + 8 + 4;
	for (unsigned i = 0; i < m->conf.n; i++)
		len += 8 + 4 + 4 + strlen(m->conf.servers[i].address);
	for (unsigned i = 0; i < n_fsm; i++)
		len += fsm[i].len;
	uint8_t *buf = raft_malloc(len), *p = buf;
	if (buf == NULL)
		return SL_ENOMEM;
	put32(&p, MANIFEST_MAGIC);
	put32(&p, MANIFEST_VERSION);
	put64(&p, m->index);
	put64(&p, m->term);
	put64(&p, (uint64_t)m->anchor);
	put64(&p, m->conf_index);
	put32(&p, m->conf.n);
	for (unsigned i = 0; i < m->conf.n; i++) {
		const struct raft_server *s = &m->conf.servers[i];
		size_t alen = strlen(s->address);
		put64(&p, s->id);
		put32(&p, (uint32_t)s->role);
		put32(&p, (uint32_t)alen);
		memcpy(p, s->address, alen);
		p += alen;
	}
	for (unsigned i = 0; i < n_fsm; i++) {
		memcpy(p, fsm[i].base, fsm[i].len);
		p += fsm[i].len;
	}
	*out = buf;
	*out_len = len;
	return SL_OK;
}

int sl_rmanifest_decode(const uint8_t *buf, size_t len, struct sl_rmanifest *m)
{
	const uint8_t *p = buf, *end = buf + len;
	uint32_t magic, version, n;
	uint64_t anchor, index, term, conf_index;
	memset(m, 0, sizeof(*m));
	raft_configuration_init(&m->conf);
	if (!get32(&p, end, &magic) || magic != MANIFEST_MAGIC || !get32(&p, end, &version) ||
	    version != MANIFEST_VERSION || !get64(&p, end, &index) || !get64(&p, end, &term) ||
	    !get64(&p, end, &anchor) || !get64(&p, end, &conf_index) || !get32(&p, end, &n))
		return SL_EINVALID_RECORD;
	m->index = index;
	m->term = term;
	m->anchor = (int64_t)anchor;
	m->conf_index = conf_index;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id;
		uint32_t role, alen;
		char addr[256];
		if (!get64(&p, end, &id) || !get32(&p, end, &role) || !get32(&p, end, &alen) ||
		    alen >= sizeof(addr) || (size_t)(end - p) < alen)
			goto bad;
		memcpy(addr, p, alen);
		addr[alen] = '\0';
		p += alen;
		if (raft_configuration_add(&m->conf, id, addr, (int)role) != 0)
			goto bad;
	}
	m->fsm = p;
	m->fsm_len = (size_t)(end - p);
	return SL_OK;
bad:
	raft_configuration_close(&m->conf);
	raft_configuration_init(&m->conf);
	return SL_EINVALID_RECORD;
}
