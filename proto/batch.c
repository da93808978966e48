/* The record batch codec (Kafka RecordBatch v2); see batch.h for the layout.
 *
 * Decoding trusts nothing: every length is checked against the bytes that
 * are really there before it is used, every varint read is bounded, and
 * arithmetic on values from the wire is done so that it cannot overflow.
 *
 * Codes for malformed input, in the order they are checked:
 *   header:  BATCH_TRUNCATED (fewer than 61 bytes, or fewer than the length
 *            field says), BATCH_BAD_MAGIC, BATCH_BAD_LENGTH,
 *            BATCH_BAD_OFFSET_DELTA (negative last offset delta, or a last
 *            offset past INT64_MAX), BATCH_BAD_COUNT (negative count),
 *            BATCH_BAD_CRC (check and validate only);
 *   records: BATCH_BAD_ATTRIBUTES (a bit Kafka does not define, or codec
 *            5..7), UNSUPPORTED_COMPRESSION (gzip, snappy, lz4), DECOMPRESS
 *            (not exactly one zstd frame, or one that is corrupt or larger
 *            than SL_BATCH_MAX_DECOMPRESSED);
 *   each record: VARINT_OVERFLOW, RECORD_BAD_LENGTH (the length varint is
 *            cut off, is below the smallest record or beyond the bytes
 *            left, or disagrees with the fields inside; a key, value or
 *            header length below -1 (below 0 for header keys) or beyond
 *            the record; a negative header count), BATCH_BAD_OFFSET_DELTA
 *            (not above the previous record's, or above the last offset
 *            delta);
 *   at the end: BATCH_BAD_COUNT (fewer records than the count says, or a
 *            whole extra record after them), RECORD_TRAILING_BYTES (bytes
 *            after the last record that are not a record). */
#include "batch.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "bigendian.h"
#include "varint.h"

/* The attribute bits Kafka defines. */
#define KNOWN_ATTRS                                                     \
	(SL_ATTR_CODEC_MASK | SL_ATTR_LOG_APPEND_TIME | SL_ATTR_TRANSACTIONAL | \
	 SL_ATTR_CONTROL | SL_ATTR_DELETE_HORIZON)
/* The smallest record body: attributes and five one-byte varints. */
#define MIN_RECORD_BODY 6
/* A zstd window larger than the largest output we accept is never needed;
 * refusing it bounds the decoder's memory. 2^26 = SL_BATCH_MAX_DECOMPRESSED. */
#define ZSTD_WINDOW_LOG_MAX 26
/* The builder's offset delta once INT32_MAX has been used: nothing more can
 * be added. */
#define DELTA_EXHAUSTED INT32_MIN

/* ---- Header --------------------------------------------------------- */

int sl_batch_parse_header(const void *buf, size_t len, size_t max_size,
			  struct sl_batch_header *h)
{
	const uint8_t *p = buf;
	struct sl_batch_header x;

	if (len < SL_BATCH_HEADER_SIZE)
		return SL_EBATCH_TRUNCATED;
	x.base_offset = (int64_t)sl_load_be64(p + SL_BATCH_OFF_BASE_OFFSET);
	x.length = (int32_t)sl_load_be32(p + SL_BATCH_OFF_LENGTH);
	x.leader_epoch = (int32_t)sl_load_be32(p + SL_BATCH_OFF_LEADER_EPOCH);
	x.magic = (int8_t)p[SL_BATCH_OFF_MAGIC];
	x.crc = sl_load_be32(p + SL_BATCH_OFF_CRC);
	x.attributes = (int16_t)sl_load_be16(p + SL_BATCH_OFF_ATTRIBUTES);
	x.last_offset_delta = (int32_t)sl_load_be32(p + SL_BATCH_OFF_LAST_OFFSET_DELTA);
	x.first_timestamp = (int64_t)sl_load_be64(p + SL_BATCH_OFF_FIRST_TIMESTAMP);
	x.max_timestamp = (int64_t)sl_load_be64(p + SL_BATCH_OFF_MAX_TIMESTAMP);
	x.producer_id = (int64_t)sl_load_be64(p + SL_BATCH_OFF_PRODUCER_ID);
	x.producer_epoch = (int16_t)sl_load_be16(p + SL_BATCH_OFF_PRODUCER_EPOCH);
	x.base_sequence = (int32_t)sl_load_be32(p + SL_BATCH_OFF_BASE_SEQUENCE);
	x.record_count = (int32_t)sl_load_be32(p + SL_BATCH_OFF_RECORD_COUNT);

	if (x.magic != SL_BATCH_MAGIC)
		return SL_EBATCH_BAD_MAGIC;
	if (x.length < SL_BATCH_MIN_LENGTH ||
	    (uint64_t)x.length + SL_BATCH_LOG_OVERHEAD > (uint64_t)max_size)
		return SL_EBATCH_BAD_LENGTH;
	/* The last offset must be representable, so that callers can compute
	 * sl_batch_last_offset() and record offsets without overflow. */
	if (x.last_offset_delta < 0 ||
	    x.base_offset > INT64_MAX - x.last_offset_delta)
		return SL_EBATCH_BAD_OFFSET_DELTA;
	if (x.record_count < 0)
		return SL_EBATCH_BAD_COUNT;
	*h = x;
	return SL_OK;
}

int sl_batch_check(const void *buf, size_t len, size_t max_size,
		   struct sl_batch_header *h)
{
	const uint8_t *p = buf;
	struct sl_batch_header x;
	int rv;

	rv = sl_batch_parse_header(buf, len, max_size, &x);
	if (rv != SL_OK)
		return rv;
	size_t total = sl_batch_total_size(&x);
	if (total > len)
		return SL_EBATCH_TRUNCATED;
	if (sl_crc32c(0, p + SL_BATCH_CRC_START, total - SL_BATCH_CRC_START) != x.crc)
		return SL_EBATCH_BAD_CRC;
	*h = x;
	return SL_OK;
}

void sl_batch_stamp(void *buf, int64_t base_offset, int32_t leader_epoch)
{
	uint8_t *p = buf;

	sl_store_be64(p + SL_BATCH_OFF_BASE_OFFSET, (uint64_t)base_offset);
	sl_store_be32(p + SL_BATCH_OFF_LEADER_EPOCH, (uint32_t)leader_epoch);
}

static int check_attributes(int16_t attributes)
{
	if ((attributes & ~KNOWN_ATTRS) != 0)
		return SL_EBATCH_BAD_ATTRIBUTES;
	switch (attributes & SL_ATTR_CODEC_MASK) {
	case SL_CODEC_NONE:
	case SL_CODEC_ZSTD:
		return SL_OK;
	case 1: /* gzip */
	case 2: /* snappy */
	case 3: /* lz4 */
		return SL_EUNSUPPORTED_COMPRESSION;
	default:
		return SL_EBATCH_BAD_ATTRIBUTES;
	}
}

/* ---- Decompression -------------------------------------------------- */

/* Content size not in the frame header: decompress as a stream into a
 * buffer that doubles up to one byte past the cap (reaching that byte means
 * the output is too large). */
static int decompress_stream(const uint8_t *src, size_t n, uint8_t **out,
			     size_t *out_len)
{
	const size_t limit = (size_t)SL_BATCH_MAX_DECOMPRESSED + 1;
	size_t cap = n < limit / 4 ? 4 * n : limit;
	ZSTD_DCtx *dctx;
	uint8_t *dst;
	int rv = SL_EDECOMPRESS;

	if (cap < 64 * 1024)
		cap = 64 * 1024;
	dctx = ZSTD_createDCtx();
	dst = malloc(cap);
	if (dctx == NULL || dst == NULL) {
		rv = SL_ENOMEM;
		goto fail;
	}
	if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax,
						ZSTD_WINDOW_LOG_MAX)))
		goto fail;

	ZSTD_inBuffer in = {src, n, 0};
	ZSTD_outBuffer ob = {dst, cap, 0};
	for (;;) {
		size_t in_before = in.pos, out_before = ob.pos;
		size_t ret = ZSTD_decompressStream(dctx, &ob, &in);
		if (ZSTD_isError(ret))
			goto fail;
		if (ret == 0)
			break; /* the frame is complete */
		if (ob.pos == ob.size) {
			if (ob.size == limit)
				goto fail; /* larger than the cap */
			size_t ncap = ob.size < limit / 2 ? 2 * ob.size : limit;
			uint8_t *ndst = realloc(dst, ncap);
			if (ndst == NULL) {
				rv = SL_ENOMEM;
				goto fail;
			}
			dst = ndst;
			ob.dst = dst;
			ob.size = ncap;
		} else if (in.pos == in.size) {
			goto fail; /* the frame is cut short */
		} else if (in.pos == in_before && ob.pos == out_before) {
			goto fail; /* no progress: never loop forever */
		}
	}
	if (ob.pos > SL_BATCH_MAX_DECOMPRESSED || in.pos != in.size)
		goto fail;
	ZSTD_freeDCtx(dctx);
	*out = dst;
	*out_len = ob.pos;
	return SL_OK;
fail:
	free(dst);
	ZSTD_freeDCtx(dctx);
	return rv;
}

/* Decompresses the records section, which must be exactly one zstd frame.
 * An empty section holds no records (as Kafka writes empty batches). On
 * success *out is malloc'ed (or NULL when *out_len is 0). */
static int decompress(const uint8_t *src, size_t n, uint8_t **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (n == 0)
		return SL_OK;

	size_t fsize = ZSTD_findFrameCompressedSize(src, n);
	if (ZSTD_isError(fsize) || fsize != n)
		return SL_EDECOMPRESS;
	unsigned long long csize = ZSTD_getFrameContentSize(src, n);
	if (csize == ZSTD_CONTENTSIZE_ERROR)
		return SL_EDECOMPRESS;
	if (csize == ZSTD_CONTENTSIZE_UNKNOWN)
		return decompress_stream(src, n, out, out_len);
	if (csize > SL_BATCH_MAX_DECOMPRESSED)
		return SL_EDECOMPRESS;

	uint8_t *dst = malloc(csize > 0 ? (size_t)csize : 1);
	if (dst == NULL)
		return SL_ENOMEM;
	size_t got = ZSTD_decompress(dst, (size_t)csize, src, n);
	if (ZSTD_isError(got) || got != csize) {
		free(dst);
		return ZSTD_getErrorCode(got) == ZSTD_error_memory_allocation
			       ? SL_ENOMEM
			       : SL_EDECOMPRESS;
	}
	*out = dst;
	*out_len = (size_t)csize;
	return SL_OK;
}

/* ---- Reading records ------------------------------------------------ */

/* Inside a record, bytes that run out mean its length field lied. */
static inline int get32(const uint8_t **pp, const uint8_t *end, int32_t *v)
{
	int rv = sl_varint_get32(pp, end, v);
	return rv == SL_EBATCH_TRUNCATED ? SL_ERECORD_BAD_LENGTH : rv;
}

static inline int get64(const uint8_t **pp, const uint8_t *end, int64_t *v)
{
	int rv = sl_varint_get64(pp, end, v);
	return rv == SL_EBATCH_TRUNCATED ? SL_ERECORD_BAD_LENGTH : rv;
}

/* Reads a length-prefixed field of at most end - *pp bytes: -1 (null) only
 * when allow_null. */
static inline int get_bytes(const uint8_t **pp, const uint8_t *end,
			    bool allow_null, int32_t *len, const uint8_t **bytes)
{
	int rv = get32(pp, end, len);
	if (rv != SL_OK)
		return rv;
	if (*len == -1 && allow_null) {
		*bytes = NULL;
		return SL_OK;
	}
	if (*len < 0 || (size_t)*len > (size_t)(end - *pp))
		return SL_ERECORD_BAD_LENGTH;
	*bytes = *pp;
	*pp += *len;
	return SL_OK;
}

/* Parses one record at *pp, within end, into rec (all but offset and
 * timestamp, whose delta goes to *ts_delta) and advances *pp past it. */
static int read_record(const uint8_t **pp, const uint8_t *end,
		       struct sl_record *rec, int64_t *ts_delta)
{
	const uint8_t *p = *pp;
	int32_t len;
	int rv;

	rv = get32(&p, end, &len);
	if (rv != SL_OK)
		return rv;
	if (len < MIN_RECORD_BODY || (size_t)len > (size_t)(end - p))
		return SL_ERECORD_BAD_LENGTH;
	const uint8_t *rend = p + len;

	rec->attributes = (int8_t)*p++;
	if ((rv = get64(&p, rend, ts_delta)) != SL_OK ||
	    (rv = get32(&p, rend, &rec->offset_delta)) != SL_OK ||
	    (rv = get_bytes(&p, rend, true, &rec->key_len, &rec->key)) != SL_OK ||
	    (rv = get_bytes(&p, rend, true, &rec->value_len, &rec->value)) != SL_OK ||
	    (rv = get32(&p, rend, &rec->header_count)) != SL_OK)
		return rv;
	if (rec->header_count < 0)
		return SL_ERECORD_BAD_LENGTH;
	rec->headers = p;
	/* Each header takes at least two bytes, so this ends within rend. */
	for (int32_t i = 0; i < rec->header_count; i++) {
		int32_t klen, vlen;
		const uint8_t *k, *v;
		if ((rv = get_bytes(&p, rend, false, &klen, &k)) != SL_OK ||
		    (rv = get_bytes(&p, rend, true, &vlen, &v)) != SL_OK)
			return rv;
	}
	rec->headers_len = (size_t)(p - rec->headers);
	if (p != rend)
		return SL_ERECORD_BAD_LENGTH;
	*pp = rend;
	return SL_OK;
}

int sl_record_iter_init(struct sl_record_iter *it, const void *batch, size_t len)
{
	const uint8_t *recs;
	int rv;

	memset(it, 0, sizeof(*it));
	rv = sl_batch_parse_header(batch, len, SIZE_MAX, &it->h);
	if (rv != SL_OK)
		return rv;
	size_t total = sl_batch_total_size(&it->h);
	if (total > len)
		return SL_EBATCH_TRUNCATED;
	rv = check_attributes(it->h.attributes);
	if (rv != SL_OK)
		return rv;

	recs = (const uint8_t *)batch + SL_BATCH_HEADER_SIZE;
	size_t n = total - SL_BATCH_HEADER_SIZE;
	if ((it->h.attributes & SL_ATTR_CODEC_MASK) == SL_CODEC_ZSTD) {
		size_t plain_len;
		rv = decompress(recs, n, &it->plain, &plain_len);
		if (rv != SL_OK)
			return rv;
		if (it->plain != NULL) {
			it->p = it->plain;
			it->end = it->plain + plain_len;
		} else {
			it->p = it->end = recs; /* nothing to walk */
		}
	} else {
		it->p = recs;
		it->end = recs + n;
	}
	it->seen = 0;
	it->prev_delta = -1;
	it->err = SL_OK;
	return SL_OK;
}

bool sl_record_iter_next(struct sl_record_iter *it, struct sl_record *rec)
{
	const uint8_t *p = it->p;
	int64_t ts_delta;
	int rv;

	if (it->err != SL_OK)
		return false;
	if (it->seen >= it->h.record_count) {
		if (p != it->end) {
			/* A well-formed record here means the count is wrong;
			 * anything else is debris. */
			struct sl_record extra;
			rv = read_record(&p, it->end, &extra, &ts_delta);
			it->err = rv == SL_OK ? SL_EBATCH_BAD_COUNT
					      : SL_ERECORD_TRAILING_BYTES;
		}
		return false;
	}
	if (p == it->end) {
		it->err = SL_EBATCH_BAD_COUNT;
		return false;
	}
	rv = read_record(&p, it->end, rec, &ts_delta);
	if (rv != SL_OK) {
		it->err = rv;
		return false;
	}
	if (rec->offset_delta <= it->prev_delta ||
	    rec->offset_delta > it->h.last_offset_delta) {
		it->err = SL_EBATCH_BAD_OFFSET_DELTA;
		return false;
	}
	/* No overflow: 0 <= offset_delta <= last_offset_delta, and
	 * parse_header made sure base_offset + last_offset_delta fits. */
	rec->offset = it->h.base_offset + rec->offset_delta;
	if (it->h.attributes & SL_ATTR_LOG_APPEND_TIME)
		rec->timestamp = it->h.max_timestamp;
	else
		rec->timestamp = (int64_t)((uint64_t)it->h.first_timestamp +
					   (uint64_t)ts_delta);
	it->prev_delta = rec->offset_delta;
	it->seen++;
	it->p = p;
	return true;
}

void sl_record_iter_free(struct sl_record_iter *it)
{
	free(it->plain);
	it->plain = NULL;
	it->p = it->end = NULL;
}

bool sl_record_header_next(const struct sl_record *rec, size_t *pos,
			   struct sl_header *hdr)
{
	if (rec->headers == NULL || *pos >= rec->headers_len)
		return false;
	const uint8_t *p = rec->headers + *pos;
	const uint8_t *end = rec->headers + rec->headers_len;
	struct sl_header x;

	if (get_bytes(&p, end, false, &x.key_len, &x.key) != SL_OK ||
	    get_bytes(&p, end, true, &x.value_len, &x.value) != SL_OK)
		return false;
	*hdr = x;
	*pos = (size_t)(p - rec->headers);
	return true;
}

/* h is filled once the header and CRC have passed, even when a record
 * then fails (so that a caller can look at the codec, say). */
int sl_batch_validate(const void *buf, size_t len, size_t max_size,
		      struct sl_batch_header *h)
{
	struct sl_record_iter it;
	struct sl_record rec;
	int rv;

	rv = sl_batch_check(buf, len, max_size, h);
	if (rv != SL_OK)
		return rv;
	rv = sl_record_iter_init(&it, buf, len);
	if (rv != SL_OK)
		return rv;
	while (sl_record_iter_next(&it, &rec))
		;
	rv = it.err;
	sl_record_iter_free(&it);
	return rv;
}

/* ---- Building batches ----------------------------------------------- */

void sl_batch_opts_init(struct sl_batch_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->codec = SL_CODEC_NONE;
	o->level = 0;
	o->attributes = 0;
	o->producer_id = -1;
	o->producer_epoch = -1;
	o->base_sequence = -1;
	o->last_offset_delta = -1;
}

void sl_batch_builder_init(struct sl_batch_builder *b, const struct sl_batch_opts *o)
{
	memset(b, 0, sizeof(*b));
	if (o != NULL)
		b->opts = *o;
	else
		sl_batch_opts_init(&b->opts);
	sl_batch_builder_reset(b, NULL);
}

void sl_batch_builder_reset(struct sl_batch_builder *b, const struct sl_batch_opts *o)
{
	if (o != NULL)
		b->opts = *o;
	b->len = SL_BATCH_HEADER_SIZE;
	b->count = 0;
	b->next_delta = 0;
	b->first_timestamp = -1;
	b->max_timestamp = -1;
}

void sl_batch_builder_free(struct sl_batch_builder *b)
{
	free(b->buf);
	free(b->zbuf);
	ZSTD_freeCCtx(b->zctx);
	memset(b, 0, sizeof(*b));
}

int32_t sl_batch_builder_count(const struct sl_batch_builder *b)
{
	return b->count;
}

size_t sl_batch_builder_size(const struct sl_batch_builder *b)
{
	return b->len;
}

/* Makes room for extra more bytes in buf, doubling. */
static int reserve(struct sl_batch_builder *b, size_t extra)
{
	size_t need = b->len + extra;
	if (need <= b->cap)
		return SL_OK;
	size_t cap = b->cap > 0 ? b->cap : 1024;
	while (cap < need)
		cap *= 2;
	uint8_t *buf = realloc(b->buf, cap);
	if (buf == NULL)
		return SL_ENOMEM;
	b->buf = buf;
	b->cap = cap;
	return SL_OK;
}

/* One record to append. Headers come either as an array (headers,
 * nheaders) or, from a decoded record, already encoded (raw, raw_len,
 * raw_count). */
struct rec_in {
	int32_t offset_delta;
	int64_t timestamp;
	int8_t attributes;
	const uint8_t *key;
	int32_t key_len;
	const uint8_t *value;
	int32_t value_len;
	const struct sl_header *headers;
	size_t nheaders;
	const uint8_t *raw;
	size_t raw_len;
	int32_t raw_count;
};

static inline bool bad_field(const void *bytes, int32_t len, bool allow_null)
{
	return len < (allow_null ? -1 : 0) || (len > 0 && bytes == NULL);
}

static inline size_t field_size(int32_t len)
{
	return sl_varint_size32(len) + (len > 0 ? (size_t)len : 0);
}

static inline uint8_t *put_field(uint8_t *p, const void *bytes, int32_t len)
{
	p = sl_varint_put32(p, len);
	if (len > 0) {
		memcpy(p, bytes, (size_t)len);
		p += len;
	}
	return p;
}

static int append(struct sl_batch_builder *b, const struct rec_in *r)
{
	const size_t max_body = SL_BATCH_MAX_DECOMPRESSED;
	int32_t hcount;
	size_t hsize = 0;
	int rv;

	if (b->next_delta == DELTA_EXHAUSTED || r->offset_delta < b->next_delta ||
	    (b->opts.last_offset_delta >= 0 &&
	     r->offset_delta > b->opts.last_offset_delta))
		return SL_EINVALID_ARGUMENT;
	if (bad_field(r->key, r->key_len, true) ||
	    bad_field(r->value, r->value_len, true))
		return SL_EINVALID_ARGUMENT;
	if (r->raw == NULL) {
		if (r->nheaders > INT32_MAX || (r->nheaders > 0 && r->headers == NULL))
			return SL_EINVALID_ARGUMENT;
		for (size_t i = 0; i < r->nheaders; i++) {
			const struct sl_header *hdr = &r->headers[i];
			if (bad_field(hdr->key, hdr->key_len, false) ||
			    bad_field(hdr->value, hdr->value_len, true))
				return SL_EINVALID_ARGUMENT;
			hsize += field_size(hdr->key_len) + field_size(hdr->value_len);
			if (hsize > max_body)
				return SL_EMESSAGE_TOO_LARGE;
		}
		hcount = (int32_t)r->nheaders;
	} else {
		hsize = r->raw_len;
		hcount = r->raw_count;
	}

	int64_t first = b->count > 0 ? b->first_timestamp : r->timestamp;
	int64_t ts_delta = (int64_t)((uint64_t)r->timestamp - (uint64_t)first);
	size_t body = 1 + sl_varint_size64(ts_delta) +
		      sl_varint_size32(r->offset_delta) + field_size(r->key_len) +
		      field_size(r->value_len) + sl_varint_size32(hcount);
	if (hsize > max_body || body > max_body - hsize)
		return SL_EMESSAGE_TOO_LARGE;
	body += hsize;
	size_t total = sl_varint_size32((int32_t)body) + body;
	if (total > max_body - (b->len - SL_BATCH_HEADER_SIZE))
		return SL_EMESSAGE_TOO_LARGE;
	rv = reserve(b, total);
	if (rv != SL_OK)
		return rv;

	uint8_t *p = b->buf + b->len;
	p = sl_varint_put32(p, (int32_t)body);
	*p++ = (uint8_t)r->attributes;
	p = sl_varint_put64(p, ts_delta);
	p = sl_varint_put32(p, r->offset_delta);
	p = put_field(p, r->key, r->key_len);
	p = put_field(p, r->value, r->value_len);
	p = sl_varint_put32(p, hcount);
	if (r->raw == NULL) {
		for (size_t i = 0; i < r->nheaders; i++) {
			p = put_field(p, r->headers[i].key, r->headers[i].key_len);
			p = put_field(p, r->headers[i].value, r->headers[i].value_len);
		}
	} else if (hsize > 0) {
		memcpy(p, r->raw, hsize);
		p += hsize;
	}
	b->len = (size_t)(p - b->buf);

	if (b->count == 0) {
		b->first_timestamp = r->timestamp;
		b->max_timestamp = r->timestamp;
	} else if (r->timestamp > b->max_timestamp) {
		b->max_timestamp = r->timestamp;
	}
	b->count++;
	b->next_delta = r->offset_delta == INT32_MAX ? DELTA_EXHAUSTED
						     : r->offset_delta + 1;
	return SL_OK;
}

int sl_batch_builder_add(struct sl_batch_builder *b, int64_t timestamp,
			 const void *key, int32_t key_len,
			 const void *value, int32_t value_len,
			 const struct sl_header *headers, size_t nheaders)
{
	return sl_batch_builder_add_at(b, b->next_delta, timestamp, key, key_len,
				       value, value_len, headers, nheaders);
}

int sl_batch_builder_add_at(struct sl_batch_builder *b, int32_t offset_delta,
			    int64_t timestamp, const void *key, int32_t key_len,
			    const void *value, int32_t value_len,
			    const struct sl_header *headers, size_t nheaders)
{
	struct rec_in r = {
		.offset_delta = offset_delta,
		.timestamp = timestamp,
		.key = key,
		.key_len = key_len,
		.value = value,
		.value_len = value_len,
		.headers = headers,
		.nheaders = nheaders,
	};
	return append(b, &r);
}

int sl_batch_builder_add_record(struct sl_batch_builder *b, const struct sl_record *rec)
{
	struct sl_header hdr;
	size_t pos = 0;
	int32_t n = 0;

	/* The encoded headers are copied as they are; check that they hold
	 * header_count well-formed headers and nothing else. */
	if (rec->header_count < 0 || (rec->headers == NULL && rec->headers_len > 0))
		return SL_EINVALID_ARGUMENT;
	while (n <= rec->header_count && sl_record_header_next(rec, &pos, &hdr))
		n++;
	if (n != rec->header_count || pos != rec->headers_len)
		return SL_EINVALID_ARGUMENT;

	static const uint8_t no_headers[1];
	struct rec_in r = {
		.offset_delta = rec->offset_delta,
		.timestamp = rec->timestamp,
		.attributes = rec->attributes,
		.key = rec->key,
		.key_len = rec->key_len,
		.value = rec->value,
		.value_len = rec->value_len,
		.raw = rec->headers_len > 0 ? rec->headers : no_headers,
		.raw_len = rec->headers_len,
		.raw_count = rec->header_count,
	};
	return append(b, &r);
}

static void write_header(const struct sl_batch_builder *b, uint8_t *batch,
			 size_t total, int16_t attributes, int32_t last_offset_delta)
{
	sl_store_be64(batch + SL_BATCH_OFF_BASE_OFFSET, 0);
	sl_store_be32(batch + SL_BATCH_OFF_LENGTH,
		      (uint32_t)(total - SL_BATCH_LOG_OVERHEAD));
	sl_store_be32(batch + SL_BATCH_OFF_LEADER_EPOCH, (uint32_t)-1);
	batch[SL_BATCH_OFF_MAGIC] = SL_BATCH_MAGIC;
	sl_store_be16(batch + SL_BATCH_OFF_ATTRIBUTES, (uint16_t)attributes);
	sl_store_be32(batch + SL_BATCH_OFF_LAST_OFFSET_DELTA,
		      (uint32_t)last_offset_delta);
	sl_store_be64(batch + SL_BATCH_OFF_FIRST_TIMESTAMP, (uint64_t)b->first_timestamp);
	sl_store_be64(batch + SL_BATCH_OFF_MAX_TIMESTAMP, (uint64_t)b->max_timestamp);
	sl_store_be64(batch + SL_BATCH_OFF_PRODUCER_ID, (uint64_t)b->opts.producer_id);
	sl_store_be16(batch + SL_BATCH_OFF_PRODUCER_EPOCH,
		      (uint16_t)b->opts.producer_epoch);
	sl_store_be32(batch + SL_BATCH_OFF_BASE_SEQUENCE,
		      (uint32_t)b->opts.base_sequence);
	sl_store_be32(batch + SL_BATCH_OFF_RECORD_COUNT, (uint32_t)b->count);
	sl_store_be32(batch + SL_BATCH_OFF_CRC,
		      sl_crc32c(0, batch + SL_BATCH_CRC_START,
				total - SL_BATCH_CRC_START));
}

/* Compresses the records into zbuf, after room for the header. */
static int compress(struct sl_batch_builder *b, size_t *total)
{
	size_t n = b->len - SL_BATCH_HEADER_SIZE;
	size_t bound = ZSTD_compressBound(n);
	size_t need = SL_BATCH_HEADER_SIZE + bound;

	if (need > b->zcap) {
		size_t cap = b->zcap > 0 ? b->zcap : 1024;
		while (cap < need)
			cap *= 2;
		uint8_t *zbuf = realloc(b->zbuf, cap);
		if (zbuf == NULL)
			return SL_ENOMEM;
		b->zbuf = zbuf;
		b->zcap = cap;
	}
	if (b->zctx == NULL) {
		b->zctx = ZSTD_createCCtx();
		if (b->zctx == NULL)
			return SL_ENOMEM;
	}
	size_t z = ZSTD_compressCCtx(b->zctx, b->zbuf + SL_BATCH_HEADER_SIZE, bound,
				     b->buf + SL_BATCH_HEADER_SIZE, n,
				     b->opts.level != 0 ? b->opts.level : 1);
	/* With a bound-sized output, only allocation can fail. */
	if (ZSTD_isError(z))
		return SL_ENOMEM;
	*total = SL_BATCH_HEADER_SIZE + z;
	return SL_OK;
}

int sl_batch_builder_finish(struct sl_batch_builder *b, const uint8_t **out,
			    size_t *out_len)
{
	const struct sl_batch_opts *o = &b->opts;
	int rv;

	if (o->codec != SL_CODEC_NONE && o->codec != SL_CODEC_ZSTD)
		return SL_EUNSUPPORTED_COMPRESSION;
	if ((o->attributes & ~(KNOWN_ATTRS & ~SL_ATTR_CODEC_MASK)) != 0)
		return SL_EINVALID_ARGUMENT;
	rv = reserve(b, 0);
	if (rv != SL_OK)
		return rv;

	int32_t lod;
	if (o->last_offset_delta >= 0)
		lod = o->last_offset_delta;
	else if (b->count == 0)
		lod = 0;
	else if (b->next_delta == DELTA_EXHAUSTED)
		lod = INT32_MAX;
	else
		lod = b->next_delta - 1;

	uint8_t *batch = b->buf;
	size_t total = b->len;
	if (o->codec == SL_CODEC_ZSTD && b->count > 0) {
		rv = compress(b, &total);
		if (rv != SL_OK)
			return rv;
		batch = b->zbuf;
	}
	write_header(b, batch, total, (int16_t)(o->attributes | o->codec), lod);
	*out = batch;
	*out_len = total;
	return SL_OK;
}
