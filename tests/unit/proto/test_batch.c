/* The record batch codec: round trips through the builder and the
 * iterator, and every rejection of the decoder on inputs built by hand. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "batch.h"
#include "testlib.h"

TestSuite(batch, .timeout = 20);

#define assert_code(expr, code)                                              \
	do {                                                                 \
		int rv_ = (expr);                                            \
		cr_assert_eq(rv_, (code), "%s: got %s, want %s", #expr,      \
			     sl_err_name(rv_), sl_err_name(code));           \
	} while (0)

#define assert_ok(expr) assert_code(expr, SL_OK)

/* ---- Hand encoding, independent of batch.c --------------------------- */

static void be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t unbe(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Writes a zigzag varint; returns its size. */
static size_t zz(uint8_t *p, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (v < 0 ? ~(uint64_t)0 : 0);
	size_t n = 0;
	while (z >= 0x80) {
		p[n++] = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	p[n++] = (uint8_t)z;
	return n;
}

struct fields {
	int64_t base_offset;
	int32_t length; /* 0: the right one */
	int32_t leader_epoch;
	int8_t magic;
	int16_t attributes;
	int32_t last_offset_delta;
	int64_t first_timestamp;
	int64_t max_timestamp;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	int32_t record_count;
};

static struct fields defaults(int32_t count, int32_t last_offset_delta)
{
	return (struct fields){
		.leader_epoch = -1,
		.magic = 2,
		.last_offset_delta = last_offset_delta,
		.first_timestamp = 1000,
		.max_timestamp = 1000,
		.producer_id = -1,
		.producer_epoch = -1,
		.base_sequence = -1,
		.record_count = count,
	};
}

/* Lays out a batch with a correct CRC over the given records bytes; out
 * needs 61 + n bytes. Returns the size. */
static size_t mk_batch(uint8_t *out, const struct fields *f, const void *recs, size_t n)
{
	size_t total = SL_BATCH_HEADER_SIZE + n;

	be(out + 0, (uint64_t)f->base_offset, 8);
	be(out + 8, (uint64_t)(f->length != 0 ? f->length : (int32_t)(total - 12)), 4);
	be(out + 12, (uint64_t)f->leader_epoch, 4);
	out[16] = (uint8_t)f->magic;
	be(out + 21, (uint64_t)f->attributes, 2);
	be(out + 23, (uint64_t)f->last_offset_delta, 4);
	be(out + 27, (uint64_t)f->first_timestamp, 8);
	be(out + 35, (uint64_t)f->max_timestamp, 8);
	be(out + 43, (uint64_t)f->producer_id, 8);
	be(out + 51, (uint64_t)f->producer_epoch, 2);
	be(out + 53, (uint64_t)f->base_sequence, 4);
	be(out + 57, (uint64_t)f->record_count, 4);
	if (n > 0)
		memcpy(out + SL_BATCH_HEADER_SIZE, recs, n);
	be(out + 17, sl_crc32c(0, out + 21, total - 21), 4);
	return total;
}

/* A well-formed record: offset delta d (0..63), timestamp delta 0, null
 * key, value "v", no headers. 8 bytes. */
static size_t put_rec(uint8_t *p, int d)
{
	const uint8_t rec[] = {0x0e, 0x00, 0x00, (uint8_t)(2 * d), 0x01, 0x02, 'v', 0x00};
	memcpy(p, rec, sizeof(rec));
	return sizeof(rec);
}

static uint8_t bbuf[1 << 16];

/* Validates a hand-made batch of `count` records (last offset delta
 * count - 1, or 0) over recs. */
static int validate_recs(int32_t count, const void *recs, size_t n)
{
	struct fields f = defaults(count, count > 0 ? count - 1 : 0);
	struct sl_batch_header h;
	size_t len = mk_batch(bbuf, &f, recs, n);
	return sl_batch_validate(bbuf, len, len, &h);
}

/* Validates one hand-made record body (the length varint is added). */
static int validate_body(const uint8_t *body, size_t n)
{
	uint8_t recs[256];
	size_t k = zz(recs, (int64_t)n);
	memcpy(recs + k, body, n);
	return validate_recs(1, recs, k + n);
}

/* ---- Builder helpers ------------------------------------------------ */

static struct sl_batch_opts opts_with(int codec)
{
	struct sl_batch_opts o;
	sl_batch_opts_init(&o);
	o.codec = codec;
	return o;
}

struct expect {
	int64_t timestamp;
	const char *key; /* NULL: null */
	int32_t key_len;
	const char *value;
	int32_t value_len;
	size_t nheaders;
	struct sl_header headers[3];
};

static void check_record(const struct sl_record *rec, const struct expect *e, int64_t offset)
{
	cr_assert_eq(rec->offset, offset);
	cr_assert_eq(rec->timestamp, e->timestamp);
	cr_assert_eq(rec->key_len, e->key_len);
	if (e->key_len < 0)
		cr_assert_null(rec->key);
	else
		cr_assert_eq(memcmp(rec->key, e->key, (size_t)e->key_len), 0);
	cr_assert_eq(rec->value_len, e->value_len);
	if (e->value_len < 0)
		cr_assert_null(rec->value);
	else
		cr_assert_eq(memcmp(rec->value, e->value, (size_t)e->value_len), 0);
	cr_assert_eq(rec->header_count, (int32_t)e->nheaders);

	size_t pos = 0, i = 0;
	struct sl_header hdr;
	while (sl_record_header_next(rec, &pos, &hdr)) {
		cr_assert_lt(i, e->nheaders);
		const struct sl_header *w = &e->headers[i++];
		cr_assert_eq(hdr.key_len, w->key_len);
		cr_assert_eq(memcmp(hdr.key, w->key, (size_t)w->key_len), 0);
		cr_assert_eq(hdr.value_len, w->value_len);
		if (w->value_len < 0)
			cr_assert_null(hdr.value);
		else
			cr_assert_eq(memcmp(hdr.value, w->value, (size_t)w->value_len), 0);
	}
	cr_assert_eq(i, e->nheaders);
	cr_assert_eq(pos, rec->headers_len);
}

static const struct expect sample[] = {
	{1000, "k1", 2, "value one", 9, 0, {{0}}},
	{1001, NULL, -1, "no key", 6, 0, {{0}}},
	{999, "k3", 2, NULL, -1, 0, {{0}}},
	{1005, "", 0, "", 0, 0, {{0}}},
	{1002, "k5", 2, "with headers", 12, 3,
	 {{3, (const uint8_t *)"h-a", 2, (const uint8_t *)"va"},
	  {3, (const uint8_t *)"h-b", -1, NULL},
	  {0, (const uint8_t *)"", 0, (const uint8_t *)""}}},
};
#define NSAMPLE (sizeof(sample) / sizeof(sample[0]))

static void add_sample(struct sl_batch_builder *b)
{
	for (size_t i = 0; i < NSAMPLE; i++) {
		const struct expect *e = &sample[i];
		assert_ok(sl_batch_builder_add(b, e->timestamp, e->key, e->key_len,
					       e->value, e->value_len, e->headers,
					       e->nheaders));
	}
}

static void check_sample(const uint8_t *batch, size_t len, int64_t base)
{
	struct sl_batch_header h;
	struct sl_record_iter it;
	struct sl_record rec;
	size_t i = 0;

	assert_ok(sl_batch_validate(batch, len, len, &h));
	assert_ok(sl_record_iter_init(&it, batch, len));
	while (sl_record_iter_next(&it, &rec)) {
		cr_assert_lt(i, NSAMPLE);
		check_record(&rec, &sample[i], base + (int64_t)i);
		cr_assert_eq(rec.offset_delta, (int32_t)i);
		i++;
	}
	assert_ok(it.err);
	cr_assert_eq(i, NSAMPLE);
	sl_record_iter_free(&it);
}

/* Builds the sample with the given codec into a malloc'ed copy. */
static uint8_t *build_sample(int codec, size_t *len)
{
	struct sl_batch_opts o = opts_with(codec);
	struct sl_batch_builder b;
	const uint8_t *out;

	sl_batch_builder_init(&b, &o);
	add_sample(&b);
	assert_ok(sl_batch_builder_finish(&b, &out, len));
	uint8_t *copy = malloc(*len);
	memcpy(copy, out, *len);
	sl_batch_builder_free(&b);
	return copy;
}

/* ---- Round trips ---------------------------------------------------- */

Test(batch, round_trips_records_uncompressed)
{
	size_t len;
	uint8_t *batch = build_sample(SL_CODEC_NONE, &len);
	check_sample(batch, len, 0);
	cr_assert_eq(unbe(batch + 21, 2) & SL_ATTR_CODEC_MASK, SL_CODEC_NONE);
	free(batch);
}

Test(batch, round_trips_records_zstd)
{
	size_t len;
	uint8_t *batch = build_sample(SL_CODEC_ZSTD, &len);
	check_sample(batch, len, 0);
	cr_assert_eq(unbe(batch + 21, 2) & SL_ATTR_CODEC_MASK, SL_CODEC_ZSTD);
	free(batch);
}

Test(batch, keeps_null_apart_from_empty)
{
	struct sl_batch_builder b;
	struct sl_record_iter it;
	struct sl_record rec;
	const uint8_t *out;
	size_t len;

	sl_batch_builder_init(&b, NULL);
	assert_ok(sl_batch_builder_add(&b, 1, NULL, -1, NULL, -1, NULL, 0));
	assert_ok(sl_batch_builder_add(&b, 1, "", 0, "", 0, NULL, 0));
	assert_ok(sl_batch_builder_add(&b, 1, NULL, 0, NULL, 0, NULL, 0));
	assert_ok(sl_batch_builder_finish(&b, &out, &len));
	assert_ok(sl_record_iter_init(&it, out, len));

	cr_assert(sl_record_iter_next(&it, &rec));
	cr_assert_eq(rec.key_len, -1);
	cr_assert_null(rec.key);
	cr_assert_eq(rec.value_len, -1);
	cr_assert_null(rec.value);
	for (int i = 0; i < 2; i++) {
		cr_assert(sl_record_iter_next(&it, &rec));
		cr_assert_eq(rec.key_len, 0);
		cr_assert_not_null(rec.key);
		cr_assert_eq(rec.value_len, 0);
		cr_assert_not_null(rec.value);
	}
	cr_assert_not(sl_record_iter_next(&it, &rec));
	assert_ok(it.err);
	sl_record_iter_free(&it);
	sl_batch_builder_free(&b);
}

Test(batch, writes_header_fields)
{
	struct sl_batch_opts o = opts_with(SL_CODEC_NONE);
	struct sl_batch_builder b;
	struct sl_batch_header h;
	const uint8_t *out;
	size_t len;

	o.producer_id = 77;
	o.producer_epoch = 3;
	o.base_sequence = 40;
	o.attributes = SL_ATTR_TRANSACTIONAL;
	sl_batch_builder_init(&b, &o);
	add_sample(&b);
	assert_ok(sl_batch_builder_finish(&b, &out, &len));
	assert_ok(sl_batch_check(out, len, len, &h));

	cr_assert_eq(h.base_offset, 0);
	cr_assert_eq(h.leader_epoch, -1);
	cr_assert_eq(h.magic, 2);
	cr_assert_eq((size_t)h.length + 12, len);
	cr_assert_eq(sl_batch_total_size(&h), len);
	cr_assert_eq(h.attributes, SL_ATTR_TRANSACTIONAL);
	cr_assert_eq(h.last_offset_delta, (int32_t)NSAMPLE - 1);
	cr_assert_eq(h.first_timestamp, 1000);
	cr_assert_eq(h.max_timestamp, 1005);
	cr_assert_eq(h.producer_id, 77);
	cr_assert_eq(h.producer_epoch, 3);
	cr_assert_eq(h.base_sequence, 40);
	cr_assert_eq(h.record_count, (int32_t)NSAMPLE);
	cr_assert_eq(h.crc, (uint32_t)unbe(out + 17, 4));
	cr_assert_eq(h.crc, sl_crc32c(0, out + 21, len - 21));
	cr_assert_eq(sl_batch_last_offset(&h), (int64_t)NSAMPLE - 1);

	struct sl_batch_header h2;
	assert_ok(sl_batch_parse_header(out, SL_BATCH_HEADER_SIZE, len, &h2));
	cr_assert_eq(h2.length, h.length);
	cr_assert_eq(h2.crc, h.crc);
	cr_assert_eq(h2.attributes, h.attributes);
	cr_assert_eq(h2.last_offset_delta, h.last_offset_delta);
	cr_assert_eq(h2.max_timestamp, h.max_timestamp);
	cr_assert_eq(h2.producer_id, h.producer_id);
	cr_assert_eq(h2.record_count, h.record_count);
	sl_batch_builder_free(&b);
}

Test(batch, encodes_records_byte_for_byte)
{
	struct sl_batch_builder b;
	const uint8_t *out;
	size_t len;
	struct sl_header hdr = {1, (const uint8_t *)"h", 1, (const uint8_t *)"x"};

	sl_batch_builder_init(&b, NULL);
	assert_ok(sl_batch_builder_add(&b, 5000, "k", 1, "vv", 2, NULL, 0));
	assert_ok(sl_batch_builder_add(&b, 4999, NULL, -1, NULL, -1, &hdr, 1));
	assert_ok(sl_batch_builder_finish(&b, &out, &len));
	static const uint8_t want[] = {
		/* length 9: attrs, ts 0, delta 0, key 1 "k", value 2 "vv", 0 headers */
		0x12, 0x00, 0x00, 0x00, 0x02, 'k', 0x04, 'v', 'v', 0x00,
		/* length 10: attrs, ts -1, delta 1, null, null, 1 header h=x */
		0x14, 0x00, 0x01, 0x02, 0x01, 0x01, 0x02, 0x02, 'h', 0x02, 'x',
	};
	cr_assert_eq(len, SL_BATCH_HEADER_SIZE + sizeof(want));
	cr_assert_eq(memcmp(out + SL_BATCH_HEADER_SIZE, want, sizeof(want)), 0);
	cr_assert_eq(unbe(out + 27, 8), 5000);
	cr_assert_eq(unbe(out + 35, 8), 5000);
	sl_batch_builder_free(&b);
}

Test(batch, timestamps_are_deltas_from_the_first)
{
	static const int64_t ts[] = {1000, 900, 1500, -5, INT64_MAX, INT64_MIN};
	struct sl_batch_builder b;
	struct sl_record_iter it;
	struct sl_record rec;
	const uint8_t *out;
	size_t len;

	sl_batch_builder_init(&b, NULL);
	for (size_t i = 0; i < 6; i++)
		assert_ok(sl_batch_builder_add(&b, ts[i], NULL, -1, "v", 1, NULL, 0));
	assert_ok(sl_batch_builder_finish(&b, &out, &len));
	assert_ok(sl_record_iter_init(&it, out, len));
	cr_assert_eq(it.h.first_timestamp, 1000);
	cr_assert_eq(it.h.max_timestamp, INT64_MAX);
	for (size_t i = 0; i < 6; i++) {
		cr_assert(sl_record_iter_next(&it, &rec));
		cr_assert_eq(rec.timestamp, ts[i]);
	}
	cr_assert_not(sl_record_iter_next(&it, &rec));
	assert_ok(it.err);
	sl_record_iter_free(&it);
	sl_batch_builder_free(&b);
}

Test(batch, log_append_time_records_take_the_max_timestamp)
{
	struct sl_batch_opts o = opts_with(SL_CODEC_NONE);
	struct sl_batch_builder b;
	struct sl_record_iter it;
	struct sl_record rec;
	const uint8_t *out;
	size_t len;

	o.attributes = SL_ATTR_LOG_APPEND_TIME;
	sl_batch_builder_init(&b, &o);
	assert_ok(sl_batch_builder_add(&b, 10, NULL, -1, "a", 1, NULL, 0));
	assert_ok(sl_batch_builder_add(&b, 30, NULL, -1, "b", 1, NULL, 0));
	assert_ok(sl_batch_builder_add(&b, 20, NULL, -1, "c", 1, NULL, 0));
	assert_ok(sl_batch_builder_finish(&b, &out, &len));
	assert_ok(sl_record_iter_init(&it, out, len));
	int n = 0;
	while (sl_record_iter_next(&it, &rec)) {
		cr_assert_eq(rec.timestamp, 30);
		n++;
	}
	cr_assert_eq(n, 3);
	assert_ok(it.err);
	sl_record_iter_free(&it);
	sl_batch_builder_free(&b);
}

Test(batch, builds_empty_batches)
{
	for (int codec = 0; codec <= SL_CODEC_ZSTD; codec += SL_CODEC_ZSTD) {
		struct sl_batch_opts o = opts_with(codec);
		struct sl_batch_builder b;
		struct sl_batch_header h;
		struct sl_record_iter it;
		struct sl_record rec;
		const uint8_t *out;
		size_t len;

		sl_batch_builder_init(&b, &o);
		cr_assert_eq(sl_batch_builder_count(&b), 0);
		cr_assert_eq(sl_batch_builder_size(&b), SL_BATCH_HEADER_SIZE);
		assert_ok(sl_batch_builder_finish(&b, &out, &len));
		cr_assert_eq(len, SL_BATCH_HEADER_SIZE);
		assert_ok(sl_batch_validate(out, len, len, &h));
		cr_assert_eq(h.record_count, 0);
		cr_assert_eq(h.last_offset_delta, 0);
		cr_assert_eq(h.first_timestamp, -1);
		cr_assert_eq(h.max_timestamp, -1);
		cr_assert_eq(h.attributes & SL_ATTR_CODEC_MASK, codec);
		assert_ok(sl_record_iter_init(&it, out, len));
		cr_assert_not(sl_record_iter_next(&it, &rec));
		assert_ok(it.err);
		sl_record_iter_free(&it);

		/* Compaction keeps the last offset delta of an emptied batch. */
		o.last_offset_delta = 9;
		sl_batch_builder_reset(&b, &o);
		assert_ok(sl_batch_builder_finish(&b, &out, &len));
		assert_ok(sl_batch_validate(out, len, len, &h));
		cr_assert_eq(h.last_offset_delta, 9);
		sl_batch_builder_free(&b);
	}
}

Test(batch, add_at_keeps_offset_gaps)
{
	static const int32_t deltas[] = {0, 5, 9};
	struct sl_batch_builder b;
	struct sl_batch_header h;
	struct sl_record_iter it;
	struct sl_record rec;
	const uint8_t *out;
	size_t len;

	sl_batch_builder_init(&b, NULL);
	for (int i = 0; i < 3; i++)
		assert_ok(sl_batch_builder_add_at(&b, deltas[i], 7, NULL, -1, "x", 1,
						  NULL, 0));
	/* A plain add continues after the last delta. */
	assert_ok(sl_batch_builder_add(&b, 7, NULL, -1, "y", 1, NULL, 0));
	assert_ok(sl_batch_builder_finish(&b, &out, &len));
	assert_ok(sl_batch_validate(out, len, len, &h));
	cr_assert_eq(h.last_offset_delta, 10);
	cr_assert_eq(h.record_count, 4);
	sl_batch_stamp((void *)out, 100, 2);
	assert_ok(sl_record_iter_init(&it, out, len));
	static const int64_t want[] = {100, 105, 109, 110};
	for (int i = 0; i < 4; i++) {
		cr_assert(sl_record_iter_next(&it, &rec));
		cr_assert_eq(rec.offset, want[i]);
	}
	cr_assert_not(sl_record_iter_next(&it, &rec));
	assert_ok(it.err);
	sl_record_iter_free(&it);
	sl_batch_builder_free(&b);
}

Test(batch, add_at_rejects_deltas_that_do_not_increase)
{
	struct sl_batch_builder b;

	sl_batch_builder_init(&b, NULL);
	assert_code(sl_batch_builder_add_at(&b, -1, 0, NULL, -1, NULL, -1, NULL, 0),
		    SL_EINVALID_ARGUMENT);
	assert_ok(sl_batch_builder_add_at(&b, 3, 0, NULL, -1, NULL, -1, NULL, 0));
	assert_code(sl_batch_builder_add_at(&b, 3, 0, NULL, -1, NULL, -1, NULL, 0),
		    SL_EINVALID_ARGUMENT);
	assert_code(sl_batch_builder_add_at(&b, 2, 0, NULL, -1, NULL, -1, NULL, 0),
		    SL_EINVALID_ARGUMENT);
	cr_assert_eq(sl_batch_builder_count(&b), 1);
	assert_ok(sl_batch_builder_add_at(&b, INT32_MAX, 0, NULL, -1, NULL, -1, NULL, 0));
	/* Nothing can follow INT32_MAX. */
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, NULL, -1, NULL, 0),
		    SL_EINVALID_ARGUMENT);
	assert_code(sl_batch_builder_add_at(&b, INT32_MAX, 0, NULL, -1, NULL, -1, NULL, 0),
		    SL_EINVALID_ARGUMENT);

	const uint8_t *out;
	size_t len;
	struct sl_batch_header h;
	assert_ok(sl_batch_builder_finish(&b, &out, &len));
	assert_ok(sl_batch_validate(out, len, len, &h));
	cr_assert_eq(h.last_offset_delta, INT32_MAX);
	cr_assert_eq(h.record_count, 2);
	sl_batch_builder_free(&b);
}

Test(batch, add_rejects_deltas_beyond_the_fixed_last_offset_delta)
{
	struct sl_batch_opts o = opts_with(SL_CODEC_NONE);
	struct sl_batch_builder b;

	o.last_offset_delta = 4;
	sl_batch_builder_init(&b, &o);
	assert_ok(sl_batch_builder_add_at(&b, 4, 0, NULL, -1, NULL, -1, NULL, 0));
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, NULL, -1, NULL, 0),
		    SL_EINVALID_ARGUMENT);
	sl_batch_builder_free(&b);
}

Test(batch, add_rejects_bad_lengths)
{
	struct sl_batch_builder b;
	struct sl_header bad_key = {-1, NULL, 1, (const uint8_t *)"v"};
	struct sl_header bad_value = {1, (const uint8_t *)"k", -2, NULL};
	struct sl_header no_bytes = {3, NULL, 0, NULL};

	sl_batch_builder_init(&b, NULL);
	assert_code(sl_batch_builder_add(&b, 0, "k", -2, NULL, -1, NULL, 0),
		    SL_EINVALID_ARGUMENT);
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, "v", -5, NULL, 0),
		    SL_EINVALID_ARGUMENT);
	assert_code(sl_batch_builder_add(&b, 0, NULL, 3, NULL, -1, NULL, 0),
		    SL_EINVALID_ARGUMENT);
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, NULL, -1, &bad_key, 1),
		    SL_EINVALID_ARGUMENT);
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, NULL, -1, &bad_value, 1),
		    SL_EINVALID_ARGUMENT);
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, NULL, -1, &no_bytes, 1),
		    SL_EINVALID_ARGUMENT);
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, NULL, -1, NULL, 2),
		    SL_EINVALID_ARGUMENT);
	cr_assert_eq(sl_batch_builder_count(&b), 0);
	cr_assert_eq(sl_batch_builder_size(&b), SL_BATCH_HEADER_SIZE);
	sl_batch_builder_free(&b);
}

Test(batch, add_rejects_records_past_the_decompressed_cap)
{
	struct sl_batch_builder b;
	size_t big = SL_BATCH_MAX_DECOMPRESSED;
	char *value = calloc(1, big); /* never touched: rejected before copying */

	sl_batch_builder_init(&b, NULL);
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, value, (int32_t)big, NULL, 0),
		    SL_EMESSAGE_TOO_LARGE);
	assert_ok(sl_batch_builder_add(&b, 0, NULL, -1, value, (int32_t)(big / 2), NULL, 0));
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, value, (int32_t)(big / 2), NULL, 0),
		    SL_EMESSAGE_TOO_LARGE);
	/* Headers count too. */
	struct sl_header hdrs[2] = {
		{1, (const uint8_t *)"a", (int32_t)(big / 4), (const uint8_t *)value},
		{1, (const uint8_t *)"b", (int32_t)(big / 4), (const uint8_t *)value},
	};
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, NULL, -1, hdrs, 2),
		    SL_EMESSAGE_TOO_LARGE);
	hdrs[0].value_len = hdrs[1].value_len = (int32_t)(big * 3 / 4);
	assert_code(sl_batch_builder_add(&b, 0, NULL, -1, NULL, -1, hdrs, 2),
		    SL_EMESSAGE_TOO_LARGE);
	cr_assert_eq(sl_batch_builder_count(&b), 1);
	sl_batch_builder_free(&b);
	free(value);
}

Test(batch, finish_rejects_bad_options)
{
	struct sl_batch_opts o = opts_with(1 /* gzip */);
	struct sl_batch_builder b;
	const uint8_t *out;
	size_t len;

	sl_batch_builder_init(&b, &o);
	assert_code(sl_batch_builder_finish(&b, &out, &len), SL_EUNSUPPORTED_COMPRESSION);
	o = opts_with(SL_CODEC_NONE);
	o.attributes = 0x80;
	sl_batch_builder_reset(&b, &o);
	assert_code(sl_batch_builder_finish(&b, &out, &len), SL_EINVALID_ARGUMENT);
	o.attributes = SL_CODEC_ZSTD; /* the codec comes from opts.codec */
	sl_batch_builder_reset(&b, &o);
	assert_code(sl_batch_builder_finish(&b, &out, &len), SL_EINVALID_ARGUMENT);
	o.attributes = SL_ATTR_CONTROL | SL_ATTR_TRANSACTIONAL;
	sl_batch_builder_reset(&b, &o);
	assert_ok(sl_batch_builder_finish(&b, &out, &len));
	sl_batch_builder_free(&b);
}

Test(batch, reset_reuses_the_builder)
{
	struct sl_batch_opts z = opts_with(SL_CODEC_ZSTD);
	struct sl_batch_builder b;
	const uint8_t *out;
	size_t len;
	struct sl_batch_header h;

	sl_batch_builder_init(&b, NULL);
	for (int round = 0; round < 4; round++) {
		sl_batch_builder_reset(&b, round == 2 ? &z : NULL);
		add_sample(&b);
		cr_assert_eq(sl_batch_builder_count(&b), (int32_t)NSAMPLE);
		assert_ok(sl_batch_builder_finish(&b, &out, &len));
		check_sample(out, len, 0);
		assert_ok(sl_batch_check(out, len, len, &h));
		cr_assert_eq(h.attributes & SL_ATTR_CODEC_MASK,
			     round >= 2 ? SL_CODEC_ZSTD : SL_CODEC_NONE);
	}
	sl_batch_builder_free(&b);
}

Test(batch, size_is_the_uncompressed_batch)
{
	struct sl_batch_builder b;
	const uint8_t *out;
	size_t len;

	sl_batch_builder_init(&b, NULL);
	cr_assert_eq(sl_batch_builder_size(&b), SL_BATCH_HEADER_SIZE);
	add_sample(&b);
	size_t size = sl_batch_builder_size(&b);
	assert_ok(sl_batch_builder_finish(&b, &out, &len));
	cr_assert_eq(size, len);
	sl_batch_builder_free(&b);
}

Test(batch, compresses_repetitive_records)
{
	struct sl_batch_opts o = opts_with(SL_CODEC_ZSTD);
	struct sl_batch_builder b;
	struct sl_batch_header h;
	const uint8_t *out;
	size_t len;
	char value[100];

	memset(value, 'a', sizeof(value));
	sl_batch_builder_init(&b, &o);
	for (int i = 0; i < 1000; i++)
		assert_ok(sl_batch_builder_add(&b, i, NULL, -1, value, 100, NULL, 0));
	size_t plain = sl_batch_builder_size(&b);
	assert_ok(sl_batch_builder_finish(&b, &out, &len));
	cr_assert_lt(len * 10, plain);
	assert_ok(sl_batch_validate(out, len, len, &h));
	cr_assert_eq(h.record_count, 1000);
	cr_assert_eq(h.last_offset_delta, 999);
	sl_batch_builder_free(&b);
}

Test(batch, add_record_copies_a_walked_record)
{
	size_t len;
	uint8_t *src = build_sample(SL_CODEC_ZSTD, &len);
	struct sl_batch_opts o = opts_with(SL_CODEC_NONE);
	struct sl_batch_builder b;
	struct sl_record_iter it;
	struct sl_record rec;
	const uint8_t *out;
	size_t out_len;

	sl_batch_builder_init(&b, &o);
	assert_ok(sl_record_iter_init(&it, src, len));
	while (sl_record_iter_next(&it, &rec))
		assert_ok(sl_batch_builder_add_record(&b, &rec));
	assert_ok(it.err);
	sl_record_iter_free(&it);
	assert_ok(sl_batch_builder_finish(&b, &out, &out_len));
	check_sample(out, out_len, 0);
	sl_batch_builder_free(&b);
	free(src);
}

Test(batch, add_record_keeps_attributes_and_deltas)
{
	uint8_t recs[64];
	size_t n = 0;
	/* Two records with attribute byte 0x55 and deltas 2 and 7. */
	static const uint8_t r1[] = {0x0e, 0x55, 0x04, 0x04, 0x01, 0x02, 'a', 0x00};
	static const uint8_t r2[] = {0x0e, 0x55, 0x00, 0x0e, 0x01, 0x02, 'b', 0x00};
	memcpy(recs, r1, sizeof(r1));
	n += sizeof(r1);
	memcpy(recs + n, r2, sizeof(r2));
	n += sizeof(r2);
	struct fields f = defaults(2, 9);
	size_t len = mk_batch(bbuf, &f, recs, n);

	struct sl_batch_opts o = opts_with(SL_CODEC_NONE);
	o.last_offset_delta = 9;
	struct sl_batch_builder b;
	struct sl_record_iter it;
	struct sl_record rec;
	const uint8_t *out;
	size_t out_len;
	sl_batch_builder_init(&b, &o);
	assert_ok(sl_record_iter_init(&it, bbuf, len));
	while (sl_record_iter_next(&it, &rec))
		assert_ok(sl_batch_builder_add_record(&b, &rec));
	assert_ok(it.err);
	sl_record_iter_free(&it);
	assert_ok(sl_batch_builder_finish(&b, &out, &out_len));

	assert_ok(sl_record_iter_init(&it, out, out_len));
	cr_assert_eq(it.h.last_offset_delta, 9);
	cr_assert(sl_record_iter_next(&it, &rec));
	cr_assert_eq(rec.attributes, 0x55);
	cr_assert_eq(rec.offset_delta, 2);
	cr_assert_eq(rec.timestamp, 1002);
	cr_assert(sl_record_iter_next(&it, &rec));
	cr_assert_eq(rec.offset_delta, 7);
	cr_assert_eq(rec.timestamp, 1000);
	cr_assert_not(sl_record_iter_next(&it, &rec));
	assert_ok(it.err);
	sl_record_iter_free(&it);
	sl_batch_builder_free(&b);
}

Test(batch, add_record_rejects_inconsistent_headers)
{
	struct sl_batch_builder b;
	static const uint8_t one_header[] = {0x02, 'h', 0x02, 'v'};
	struct sl_record rec = {
		.key_len = -1,
		.value_len = -1,
		.header_count = 2,
		.headers = one_header,
		.headers_len = sizeof(one_header),
	};

	sl_batch_builder_init(&b, NULL);
	assert_code(sl_batch_builder_add_record(&b, &rec), SL_EINVALID_ARGUMENT);
	rec.header_count = -1;
	assert_code(sl_batch_builder_add_record(&b, &rec), SL_EINVALID_ARGUMENT);
	rec.header_count = 1;
	rec.headers = NULL;
	assert_code(sl_batch_builder_add_record(&b, &rec), SL_EINVALID_ARGUMENT);
	rec.headers = one_header;
	rec.header_count = 0;
	assert_code(sl_batch_builder_add_record(&b, &rec), SL_EINVALID_ARGUMENT);
	rec.header_count = 1;
	rec.headers_len = 3; /* cuts the value */
	assert_code(sl_batch_builder_add_record(&b, &rec), SL_EINVALID_ARGUMENT);
	rec.headers_len = sizeof(one_header);
	assert_ok(sl_batch_builder_add_record(&b, &rec));
	sl_batch_builder_free(&b);
}

Test(batch, round_trips_random_records)
{
	uint64_t seed = 1234;
	struct sl_batch_builder b;
	uint8_t *data = malloc(1 << 16);

	tl_fill_random(&seed, data, 1 << 16);
	sl_batch_builder_init(&b, NULL);
	for (int round = 0; round < 200; round++) {
		struct sl_batch_opts o = opts_with(round % 2 ? SL_CODEC_ZSTD : SL_CODEC_NONE);
		int n = (int)(tl_rand(&seed) % 50);
		struct {
			int64_t ts;
			int32_t klen, vlen, hk, hv;
			size_t koff, voff;
			size_t nh;
		} want[50];
		sl_batch_builder_reset(&b, &o);
		for (int i = 0; i < n; i++) {
			want[i].ts = (int64_t)tl_rand(&seed);
			want[i].klen = (int32_t)(tl_rand(&seed) % 40) - 1;
			want[i].vlen = (int32_t)(tl_rand(&seed) % 3000) - 1;
			want[i].koff = tl_rand(&seed) % 30000;
			want[i].voff = tl_rand(&seed) % 30000;
			want[i].nh = tl_rand(&seed) % 3;
			want[i].hk = (int32_t)(tl_rand(&seed) % 10);
			want[i].hv = (int32_t)(tl_rand(&seed) % 10) - 1;
			struct sl_header hdrs[2];
			for (size_t j = 0; j < want[i].nh; j++)
				hdrs[j] = (struct sl_header){want[i].hk, data + 100 * j,
							     want[i].hv, data + 200 * j};
			assert_ok(sl_batch_builder_add(&b, want[i].ts,
						       want[i].klen < 0 ? NULL : data + want[i].koff,
						       want[i].klen,
						       want[i].vlen < 0 ? NULL : data + want[i].voff,
						       want[i].vlen, hdrs, want[i].nh));
		}
		const uint8_t *out;
		size_t len;
		struct sl_batch_header h;
		assert_ok(sl_batch_builder_finish(&b, &out, &len));
		assert_ok(sl_batch_validate(out, len, len, &h));

		struct sl_record_iter it;
		struct sl_record rec;
		int i = 0;
		assert_ok(sl_record_iter_init(&it, out, len));
		while (sl_record_iter_next(&it, &rec)) {
			cr_assert_lt(i, n);
			cr_assert_eq(rec.timestamp, want[i].ts);
			cr_assert_eq(rec.offset, i);
			cr_assert_eq(rec.key_len, want[i].klen);
			if (rec.key_len > 0)
				cr_assert_eq(memcmp(rec.key, data + want[i].koff,
						    (size_t)rec.key_len), 0);
			cr_assert_eq(rec.value_len, want[i].vlen);
			if (rec.value_len > 0)
				cr_assert_eq(memcmp(rec.value, data + want[i].voff,
						    (size_t)rec.value_len), 0);
			cr_assert_eq(rec.header_count, (int32_t)want[i].nh);
			size_t pos = 0, j = 0;
			struct sl_header hdr;
			while (sl_record_header_next(&rec, &pos, &hdr)) {
				cr_assert_eq(hdr.key_len, want[i].hk);
				cr_assert_eq(memcmp(hdr.key, data + 100 * j,
						    (size_t)hdr.key_len), 0);
				cr_assert_eq(hdr.value_len, want[i].hv);
				j++;
			}
			cr_assert_eq(j, want[i].nh);
			i++;
		}
		assert_ok(it.err);
		cr_assert_eq(i, n);
		sl_record_iter_free(&it);
	}
	sl_batch_builder_free(&b);
	free(data);
}

/* ---- Stamping, checking, framing ------------------------------------ */

Test(batch, stamping_keeps_the_crc_valid)
{
	size_t len;
	uint8_t *batch = build_sample(SL_CODEC_ZSTD, &len);
	struct sl_batch_header h;
	uint32_t crc = (uint32_t)unbe(batch + 17, 4);

	sl_batch_stamp(batch, 123456789012LL, 42);
	assert_ok(sl_batch_check(batch, len, len, &h));
	cr_assert_eq(h.base_offset, 123456789012LL);
	cr_assert_eq(h.leader_epoch, 42);
	cr_assert_eq(h.crc, crc);
	cr_assert_eq(sl_batch_last_offset(&h), 123456789012LL + (int64_t)NSAMPLE - 1);
	check_sample(batch, len, 123456789012LL);
	free(batch);
}

Test(batch, check_ignores_what_follows_the_batch)
{
	size_t len;
	uint8_t *one = build_sample(SL_CODEC_NONE, &len);
	uint8_t *two = malloc(2 * len);
	struct sl_batch_header h;

	memcpy(two, one, len);
	memcpy(two + len, one, len);
	sl_batch_stamp(two + len, (int64_t)NSAMPLE, 0);
	assert_ok(sl_batch_check(two, 2 * len, 2 * len, &h));
	cr_assert_eq(sl_batch_total_size(&h), len);
	assert_ok(sl_batch_validate(two, 2 * len, 2 * len, &h));
	assert_ok(sl_batch_validate(two + len, len, len, &h));
	cr_assert_eq(h.base_offset, (int64_t)NSAMPLE);
	free(one);
	free(two);
}

Test(batch, check_does_not_walk_records)
{
	const uint8_t junk[] = {0x00, 0x00, 0x00};
	struct fields f = defaults(1, 0);
	struct sl_batch_header h;
	size_t len = mk_batch(bbuf, &f, junk, sizeof(junk));

	assert_ok(sl_batch_check(bbuf, len, len, &h));
	assert_code(sl_batch_validate(bbuf, len, len, &h), SL_ERECORD_BAD_LENGTH);
}

Test(batch, iterator_does_not_check_the_crc)
{
	uint8_t recs[16];
	size_t n = put_rec(recs, 0);
	struct fields f = defaults(1, 0);
	struct sl_batch_header h;
	struct sl_record_iter it;
	struct sl_record rec;
	size_t len = mk_batch(bbuf, &f, recs, n);

	bbuf[17] ^= 1;
	assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EBATCH_BAD_CRC);
	assert_ok(sl_record_iter_init(&it, bbuf, len));
	cr_assert(sl_record_iter_next(&it, &rec));
	cr_assert_not(sl_record_iter_next(&it, &rec));
	assert_ok(it.err);
	sl_record_iter_free(&it);
}

Test(batch, iterator_stays_failed)
{
	uint8_t recs[16];
	size_t n = put_rec(recs, 0);
	struct fields f = defaults(2, 1);
	struct sl_record_iter it;
	struct sl_record rec;
	size_t len = mk_batch(bbuf, &f, recs, n);

	assert_ok(sl_record_iter_init(&it, bbuf, len));
	cr_assert(sl_record_iter_next(&it, &rec));
	for (int i = 0; i < 3; i++) {
		cr_assert_not(sl_record_iter_next(&it, &rec));
		assert_code(it.err, SL_EBATCH_BAD_COUNT);
	}
	sl_record_iter_free(&it);
	sl_record_iter_free(&it); /* twice is harmless */
}

Test(batch, header_walk_ends_after_the_last)
{
	struct sl_record rec = {.header_count = 0, .headers = NULL, .headers_len = 0};
	struct sl_header hdr;
	size_t pos = 0;

	cr_assert_not(sl_record_header_next(&rec, &pos, &hdr));
	static const uint8_t two[] = {0x02, 'a', 0x01, 0x00, 0x00};
	rec.header_count = 2;
	rec.headers = two;
	rec.headers_len = sizeof(two);
	cr_assert(sl_record_header_next(&rec, &pos, &hdr));
	cr_assert_eq(hdr.key_len, 1);
	cr_assert_eq(hdr.key[0], 'a');
	cr_assert_eq(hdr.value_len, -1);
	cr_assert_null(hdr.value);
	cr_assert(sl_record_header_next(&rec, &pos, &hdr));
	cr_assert_eq(hdr.key_len, 0);
	cr_assert_eq(hdr.value_len, 0);
	cr_assert_eq(pos, sizeof(two));
	cr_assert_not(sl_record_header_next(&rec, &pos, &hdr));
}

/* ---- Header rejections ---------------------------------------------- */

Test(batch, rejects_fewer_bytes_than_a_header)
{
	struct fields f = defaults(0, 0);
	struct sl_batch_header h;
	struct sl_record_iter it;

	mk_batch(bbuf, &f, NULL, 0);
	for (size_t len = 0; len < SL_BATCH_HEADER_SIZE; len++) {
		uint8_t *copy = malloc(len + 1);
		memcpy(copy, bbuf, len);
		assert_code(sl_batch_parse_header(copy, len, 1 << 20, &h), SL_EBATCH_TRUNCATED);
		assert_code(sl_batch_check(copy, len, 1 << 20, &h), SL_EBATCH_TRUNCATED);
		assert_code(sl_batch_validate(copy, len, 1 << 20, &h), SL_EBATCH_TRUNCATED);
		assert_code(sl_record_iter_init(&it, copy, len), SL_EBATCH_TRUNCATED);
		free(copy);
	}
	assert_ok(sl_batch_validate(bbuf, SL_BATCH_HEADER_SIZE, 1 << 20, &h));
}

Test(batch, rejects_a_batch_cut_short)
{
	size_t len;
	uint8_t *batch = build_sample(SL_CODEC_NONE, &len);
	struct sl_batch_header h;
	struct sl_record_iter it;

	for (size_t cut = SL_BATCH_HEADER_SIZE; cut < len; cut++) {
		uint8_t *copy = malloc(cut);
		memcpy(copy, batch, cut);
		assert_ok(sl_batch_parse_header(copy, cut, len, &h));
		assert_code(sl_batch_check(copy, cut, len, &h), SL_EBATCH_TRUNCATED);
		assert_code(sl_batch_validate(copy, cut, len, &h), SL_EBATCH_TRUNCATED);
		assert_code(sl_record_iter_init(&it, copy, cut), SL_EBATCH_TRUNCATED);
		free(copy);
	}
	free(batch);
}

Test(batch, rejects_a_bad_magic)
{
	static const int8_t magics[] = {0, 1, 3, -1};
	for (size_t i = 0; i < sizeof(magics); i++) {
		struct fields f = defaults(0, 0);
		struct sl_batch_header h;
		struct sl_record_iter it;
		f.magic = magics[i];
		size_t len = mk_batch(bbuf, &f, NULL, 0);
		assert_code(sl_batch_parse_header(bbuf, len, len, &h), SL_EBATCH_BAD_MAGIC);
		assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EBATCH_BAD_MAGIC);
		assert_code(sl_record_iter_init(&it, bbuf, len), SL_EBATCH_BAD_MAGIC);
	}
}

Test(batch, rejects_a_length_below_the_header)
{
	static const int32_t lengths[] = {48, 1, -1, INT32_MIN};
	for (size_t i = 0; i < 4; i++) {
		struct fields f = defaults(0, 0);
		struct sl_batch_header h;
		struct sl_record_iter it;
		f.length = lengths[i];
		size_t len = mk_batch(bbuf, &f, NULL, 0);
		assert_code(sl_batch_parse_header(bbuf, len, len, &h), SL_EBATCH_BAD_LENGTH);
		assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EBATCH_BAD_LENGTH);
		assert_code(sl_record_iter_init(&it, bbuf, len), SL_EBATCH_BAD_LENGTH);
	}
}

Test(batch, rejects_a_length_above_max_size)
{
	uint8_t recs[16];
	size_t n = put_rec(recs, 0);
	struct fields f = defaults(1, 0);
	struct sl_batch_header h;
	size_t len = mk_batch(bbuf, &f, recs, n);

	assert_ok(sl_batch_validate(bbuf, len, len, &h));
	assert_code(sl_batch_parse_header(bbuf, len, len - 1, &h), SL_EBATCH_BAD_LENGTH);
	assert_code(sl_batch_check(bbuf, len, len - 1, &h), SL_EBATCH_BAD_LENGTH);
	assert_code(sl_batch_validate(bbuf, len, len - 1, &h), SL_EBATCH_BAD_LENGTH);
	assert_code(sl_batch_validate(bbuf, len, 0, &h), SL_EBATCH_BAD_LENGTH);
	/* INT32_MAX fits no sane max_size but must not overflow either. */
	f.length = INT32_MAX;
	mk_batch(bbuf, &f, recs, n);
	assert_code(sl_batch_parse_header(bbuf, len, 1 << 20, &h), SL_EBATCH_BAD_LENGTH);
	assert_ok(sl_batch_parse_header(bbuf, len, SIZE_MAX, &h));
	assert_code(sl_batch_check(bbuf, len, SIZE_MAX, &h), SL_EBATCH_TRUNCATED);
}

Test(batch, rejects_a_negative_last_offset_delta)
{
	struct fields f = defaults(0, -1);
	struct sl_batch_header h;
	size_t len = mk_batch(bbuf, &f, NULL, 0);

	assert_code(sl_batch_parse_header(bbuf, len, len, &h), SL_EBATCH_BAD_OFFSET_DELTA);
	assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EBATCH_BAD_OFFSET_DELTA);
}

Test(batch, rejects_a_last_offset_past_int64_max)
{
	struct fields f = defaults(0, 5);
	struct sl_batch_header h;

	f.base_offset = INT64_MAX - 4;
	size_t len = mk_batch(bbuf, &f, NULL, 0);
	assert_code(sl_batch_parse_header(bbuf, len, len, &h), SL_EBATCH_BAD_OFFSET_DELTA);
	f.base_offset = INT64_MAX - 5;
	mk_batch(bbuf, &f, NULL, 0);
	assert_ok(sl_batch_validate(bbuf, len, len, &h));
	cr_assert_eq(sl_batch_last_offset(&h), INT64_MAX);
}

Test(batch, rejects_a_negative_record_count)
{
	struct fields f = defaults(-1, 0);
	struct sl_batch_header h;
	size_t len = mk_batch(bbuf, &f, NULL, 0);

	assert_code(sl_batch_parse_header(bbuf, len, len, &h), SL_EBATCH_BAD_COUNT);
	assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EBATCH_BAD_COUNT);
}

Test(batch, rejects_a_bad_crc)
{
	size_t len;
	uint8_t *batch = build_sample(SL_CODEC_ZSTD, &len);
	struct sl_batch_header h;

	for (size_t i = SL_BATCH_OFF_CRC; i < len; i++) {
		batch[i] ^= 0x20;
		assert_code(sl_batch_check(batch, len, len, &h), SL_EBATCH_BAD_CRC);
		assert_code(sl_batch_validate(batch, len, len, &h), SL_EBATCH_BAD_CRC);
		batch[i] ^= 0x20;
	}
	/* Base offset and leader epoch are outside the CRC. */
	batch[3] ^= 0x20;
	batch[13] ^= 0x20;
	assert_ok(sl_batch_validate(batch, len, len, &h));
	free(batch);
}

Test(batch, rejects_undefined_attribute_bits)
{
	static const int16_t attrs[] = {0x80, 0x100, (int16_t)0x8000, -1, 5, 6, 7};
	uint8_t recs[16];
	size_t n = put_rec(recs, 0);

	for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
		struct fields f = defaults(1, 0);
		struct sl_batch_header h;
		struct sl_record_iter it;
		f.attributes = attrs[i];
		size_t len = mk_batch(bbuf, &f, recs, n);
		assert_ok(sl_batch_check(bbuf, len, len, &h));
		assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EBATCH_BAD_ATTRIBUTES);
		assert_code(sl_record_iter_init(&it, bbuf, len), SL_EBATCH_BAD_ATTRIBUTES);
	}
}

Test(batch, rejects_codecs_other_than_zstd)
{
	uint8_t recs[16];
	size_t n = put_rec(recs, 0);

	for (int16_t codec = 1; codec <= 3; codec++) {
		struct fields f = defaults(1, 0);
		struct sl_batch_header h;
		f.attributes = codec;
		size_t len = mk_batch(bbuf, &f, recs, n);
		assert_ok(sl_batch_check(bbuf, len, len, &h));
		assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EUNSUPPORTED_COMPRESSION);
		cr_assert_eq(h.attributes, codec); /* filled once the CRC passed */
	}
}

Test(batch, accepts_every_defined_attribute)
{
	uint8_t recs[16];
	size_t n = put_rec(recs, 0);
	struct fields f = defaults(1, 0);
	struct sl_batch_header h;

	f.attributes = SL_ATTR_LOG_APPEND_TIME | SL_ATTR_TRANSACTIONAL |
		       SL_ATTR_CONTROL | SL_ATTR_DELETE_HORIZON;
	size_t len = mk_batch(bbuf, &f, recs, n);
	assert_ok(sl_batch_validate(bbuf, len, len, &h));
}

/* ---- Record rejections ---------------------------------------------- */

Test(batch, accepts_hand_made_records)
{
	uint8_t recs[64];
	size_t n = 0;
	for (int i = 0; i < 4; i++)
		n += put_rec(recs + n, i);
	assert_ok(validate_recs(4, recs, n));
	/* A key and two headers, one with a null value. */
	static const uint8_t body[] = {0x00, 0x00, 0x00, 0x02, 'k', 0x02, 'v', 0x04,
				       0x02, 'a', 0x02, 'b', 0x02, 'c', 0x01};
	assert_ok(validate_body(body, sizeof(body)));
}

Test(batch, rejects_more_records_than_counted)
{
	uint8_t recs[64];
	size_t n = 0;
	for (int i = 0; i < 3; i++)
		n += put_rec(recs + n, i);
	struct fields f = defaults(2, 2);
	struct sl_batch_header h;
	size_t len = mk_batch(bbuf, &f, recs, n);
	assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EBATCH_BAD_COUNT);
}

Test(batch, rejects_fewer_records_than_counted)
{
	uint8_t recs[64];
	size_t n = 0;
	for (int i = 0; i < 2; i++)
		n += put_rec(recs + n, i);
	assert_code(validate_recs(3, recs, n), SL_EBATCH_BAD_COUNT);
	assert_code(validate_recs(1, NULL, 0), SL_EBATCH_BAD_COUNT);
	struct fields f = defaults(INT32_MAX, INT32_MAX);
	struct sl_batch_header h;
	size_t len = mk_batch(bbuf, &f, recs, n);
	assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EBATCH_BAD_COUNT);
}

Test(batch, rejects_trailing_bytes)
{
	uint8_t recs[64];
	size_t n = put_rec(recs, 0);

	/* One zero byte: a record of length 0 cannot be. */
	recs[n] = 0x00;
	assert_code(validate_recs(1, recs, n + 1), SL_ERECORD_TRAILING_BYTES);
	/* A varint cut off. */
	recs[n] = 0x80;
	assert_code(validate_recs(1, recs, n + 1), SL_ERECORD_TRAILING_BYTES);
	/* Most of a record. */
	size_t m = put_rec(recs + n, 1);
	assert_code(validate_recs(1, recs, n + m - 1), SL_ERECORD_TRAILING_BYTES);
	/* Bytes after an empty batch. */
	assert_code(validate_recs(0, recs + n, 3), SL_ERECORD_TRAILING_BYTES);
}

Test(batch, rejects_an_overlong_varint)
{
	/* Record length in six bytes. */
	static const uint8_t len6[] = {0x8e, 0x80, 0x80, 0x80, 0x80, 0x00};
	assert_code(validate_recs(1, len6, sizeof(len6)), SL_EVARINT_OVERFLOW);
	/* Offset delta in five bytes whose last carries bits past 32. */
	static const uint8_t off5[] = {0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x10,
				       0x01, 0x01, 0x00};
	assert_code(validate_body(off5, sizeof(off5)), SL_EVARINT_OVERFLOW);
	/* Key length with a continuation bit on the fifth byte. */
	static const uint8_t key6[] = {0x00, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80,
				       0x00, 0x01, 0x00};
	assert_code(validate_body(key6, sizeof(key6)), SL_EVARINT_OVERFLOW);
	/* Timestamp delta in eleven bytes, and in ten with a 2 at the end. */
	static const uint8_t ts11[] = {0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
				       0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x01,
				       0x01, 0x00};
	assert_code(validate_body(ts11, sizeof(ts11)), SL_EVARINT_OVERFLOW);
	static const uint8_t ts10[] = {0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
				       0x80, 0x80, 0x80, 0x02, 0x00, 0x01, 0x01,
				       0x00};
	assert_code(validate_body(ts10, sizeof(ts10)), SL_EVARINT_OVERFLOW);
	/* Header value length overflowing. */
	static const uint8_t hv[] = {0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x02, 'h',
				     0xff, 0xff, 0xff, 0xff, 0x1f};
	assert_code(validate_body(hv, sizeof(hv)), SL_EVARINT_OVERFLOW);
}

Test(batch, accepts_the_longest_varints)
{
	/* Offset delta 0 written in five bytes; timestamp delta in ten. */
	static const uint8_t body[] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				       0xff, 0xff, 0xff, 0x01, 0x80, 0x80, 0x80,
				       0x80, 0x00, 0x01, 0x01, 0x00};
	struct sl_record_iter it;
	struct sl_record rec;
	uint8_t recs[64];
	size_t k = zz(recs, sizeof(body));

	memcpy(recs + k, body, sizeof(body));
	assert_ok(validate_recs(1, recs, k + sizeof(body)));
	assert_ok(sl_record_iter_init(&it, bbuf, SL_BATCH_HEADER_SIZE + k + sizeof(body)));
	cr_assert(sl_record_iter_next(&it, &rec));
	/* zigzag(0xffff...ff) = INT64_MIN, added to 1000 with wraparound */
	cr_assert_eq(rec.timestamp, (int64_t)((uint64_t)INT64_MIN + 1000));
	cr_assert_eq(rec.offset_delta, 0);
	sl_record_iter_free(&it);
}

Test(batch, rejects_a_record_length_out_of_range)
{
	uint8_t recs[64];
	size_t n = put_rec(recs, 0);

	/* Longer than the bytes left. */
	recs[0] = 0x10;
	assert_code(validate_recs(1, recs, n), SL_ERECORD_BAD_LENGTH);
	recs[0] = 0x7e;
	assert_code(validate_recs(1, recs, n), SL_ERECORD_BAD_LENGTH);
	/* Below the smallest record, and negative. */
	static const uint8_t small[] = {0x0a, 0x00, 0x00, 0x00, 0x01, 0x01};
	assert_code(validate_recs(1, small, sizeof(small)), SL_ERECORD_BAD_LENGTH);
	static const uint8_t neg[] = {0x01, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00};
	assert_code(validate_recs(1, neg, sizeof(neg)), SL_ERECORD_BAD_LENGTH);
	/* A length varint cut off by the end of the records. */
	static const uint8_t cut[] = {0x80};
	assert_code(validate_recs(1, cut, sizeof(cut)), SL_ERECORD_BAD_LENGTH);
	/* The smallest record is fine. */
	static const uint8_t min[] = {0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00};
	assert_ok(validate_recs(1, min, sizeof(min)));
}

Test(batch, rejects_a_record_length_that_disagrees_with_its_fields)
{
	/* Fields end before the record does. */
	static const uint8_t longer[] = {0x10, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00};
	assert_code(validate_recs(1, longer, sizeof(longer)), SL_ERECORD_BAD_LENGTH);
	/* Fields run past the record (value "v" needs one more byte). */
	static const uint8_t shorter[] = {0x0c, 0x00, 0x00, 0x00, 0x01, 0x02, 'v', 0x00};
	assert_code(validate_recs(1, shorter, sizeof(shorter)), SL_ERECORD_BAD_LENGTH);
	/* A varint cut off by the end of the record. */
	static const uint8_t cut[] = {0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0x80};
	assert_code(validate_recs(1, cut, sizeof(cut)), SL_ERECORD_BAD_LENGTH);
}

Test(batch, rejects_key_and_value_lengths_out_of_range)
{
	static const uint8_t key_neg[] = {0x00, 0x00, 0x00, 0x03, 0x01, 0x00};
	assert_code(validate_body(key_neg, sizeof(key_neg)), SL_ERECORD_BAD_LENGTH);
	static const uint8_t val_neg[] = {0x00, 0x00, 0x00, 0x01, 0x05, 0x00};
	assert_code(validate_body(val_neg, sizeof(val_neg)), SL_ERECORD_BAD_LENGTH);
	static const uint8_t key_big[] = {0x00, 0x00, 0x00, 0x14, 'k', 0x01, 0x00};
	assert_code(validate_body(key_big, sizeof(key_big)), SL_ERECORD_BAD_LENGTH);
	static const uint8_t val_big[] = {0x00, 0x00, 0x00, 0x01, 0x14, 'v', 0x00};
	assert_code(validate_body(val_big, sizeof(val_big)), SL_ERECORD_BAD_LENGTH);
	/* INT32_MIN as a key length. */
	static const uint8_t key_min[] = {0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
					  0x0f, 0x01, 0x00};
	assert_code(validate_body(key_min, sizeof(key_min)), SL_ERECORD_BAD_LENGTH);
}

Test(batch, rejects_header_counts_and_lengths_out_of_range)
{
	static const uint8_t count_neg[] = {0x00, 0x00, 0x00, 0x01, 0x01, 0x01};
	assert_code(validate_body(count_neg, sizeof(count_neg)), SL_ERECORD_BAD_LENGTH);
	/* Two headers announced, one present. */
	static const uint8_t count_big[] = {0x00, 0x00, 0x00, 0x01, 0x01, 0x04,
					    0x02, 'h', 0x01};
	assert_code(validate_body(count_big, sizeof(count_big)), SL_ERECORD_BAD_LENGTH);
	/* A huge count with no headers at all. */
	static const uint8_t count_huge[] = {0x00, 0x00, 0x00, 0x01, 0x01, 0xfe,
					     0xff, 0xff, 0xff, 0x0f};
	assert_code(validate_body(count_huge, sizeof(count_huge)), SL_ERECORD_BAD_LENGTH);
	/* A null header key. */
	static const uint8_t key_null[] = {0x00, 0x00, 0x00, 0x01, 0x01, 0x02,
					   0x01, 0x01};
	assert_code(validate_body(key_null, sizeof(key_null)), SL_ERECORD_BAD_LENGTH);
	/* A header value below -1, and one past the record. */
	static const uint8_t val_neg[] = {0x00, 0x00, 0x00, 0x01, 0x01, 0x02,
					  0x02, 'h', 0x03};
	assert_code(validate_body(val_neg, sizeof(val_neg)), SL_ERECORD_BAD_LENGTH);
	static const uint8_t val_big[] = {0x00, 0x00, 0x00, 0x01, 0x01, 0x02,
					  0x02, 'h', 0x08, 'v'};
	assert_code(validate_body(val_big, sizeof(val_big)), SL_ERECORD_BAD_LENGTH);
}

Test(batch, rejects_offset_deltas_that_do_not_increase)
{
	uint8_t recs[64];
	size_t n;

	n = put_rec(recs, 0);
	n += put_rec(recs + n, 0);
	assert_code(validate_recs(2, recs, n), SL_EBATCH_BAD_OFFSET_DELTA);
	n = put_rec(recs, 1);
	n += put_rec(recs + n, 0);
	assert_code(validate_recs(2, recs, n), SL_EBATCH_BAD_OFFSET_DELTA);
	/* Negative: zigzag 0x01 is -1. */
	static const uint8_t neg[] = {0x0e, 0x00, 0x00, 0x01, 0x01, 0x02, 'v', 0x00};
	assert_code(validate_recs(1, neg, sizeof(neg)), SL_EBATCH_BAD_OFFSET_DELTA);
	/* Gaps are fine. */
	n = put_rec(recs, 2);
	n += put_rec(recs + n, 7);
	struct fields f = defaults(2, 7);
	struct sl_batch_header h;
	size_t len = mk_batch(bbuf, &f, recs, n);
	assert_ok(sl_batch_validate(bbuf, len, len, &h));
}

Test(batch, rejects_an_offset_delta_past_the_last)
{
	uint8_t recs[64];
	size_t n = put_rec(recs, 0);
	n += put_rec(recs + n, 5);
	struct fields f = defaults(2, 4);
	struct sl_batch_header h;
	size_t len = mk_batch(bbuf, &f, recs, n);

	assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EBATCH_BAD_OFFSET_DELTA);
	f.last_offset_delta = 5;
	mk_batch(bbuf, &f, recs, n);
	assert_ok(sl_batch_validate(bbuf, len, len, &h));
}

/* ---- Compressed records --------------------------------------------- */

/* Makes a zstd batch of `count` records from recs compressed with
 * (known_size) or without the content size in the frame header. */
static size_t mk_zstd_batch(uint8_t **out, int32_t count, const void *recs, size_t n,
			    bool known_size)
{
	size_t bound = ZSTD_compressBound(n);
	uint8_t *z = malloc(bound);
	size_t zlen;

	if (known_size) {
		zlen = ZSTD_compress(z, bound, recs, n, 1);
	} else {
		/* As a streaming producer writes it (Kafka's Java client). */
		ZSTD_CCtx *cctx = ZSTD_createCCtx();
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
		zlen = ZSTD_compress2(cctx, z, bound, recs, n);
		ZSTD_freeCCtx(cctx);
		cr_assert_eq(ZSTD_getFrameContentSize(z, zlen), ZSTD_CONTENTSIZE_UNKNOWN);
	}
	cr_assert_not(ZSTD_isError(zlen));
	struct fields f = defaults(count, count > 0 ? count - 1 : 0);
	f.attributes = SL_CODEC_ZSTD;
	*out = malloc(SL_BATCH_HEADER_SIZE + zlen);
	size_t len = mk_batch(*out, &f, z, zlen);
	free(z);
	return len;
}

Test(batch, accepts_zstd_frames_of_unknown_size)
{
	uint8_t recs[8 * 40];
	size_t n = 0;
	for (int i = 0; i < 40; i++)
		n += put_rec(recs + n, i);
	for (int known = 0; known < 2; known++) {
		uint8_t *batch;
		struct sl_batch_header h;
		size_t len = mk_zstd_batch(&batch, 40, recs, n, known);
		assert_ok(sl_batch_validate(batch, len, len, &h));
		free(batch);
	}
}

Test(batch, rejects_records_that_are_not_zstd)
{
	uint8_t recs[16];
	size_t n = put_rec(recs, 0);
	struct fields f = defaults(1, 0);
	struct sl_batch_header h;
	struct sl_record_iter it;

	f.attributes = SL_CODEC_ZSTD;
	size_t len = mk_batch(bbuf, &f, recs, n);
	assert_code(sl_batch_validate(bbuf, len, len, &h), SL_EDECOMPRESS);
	assert_code(sl_record_iter_init(&it, bbuf, len), SL_EDECOMPRESS);
}

Test(batch, rejects_a_corrupt_zstd_frame)
{
	uint8_t recs[8 * 200];
	size_t n = 0;
	for (int i = 0; i < 200; i++)
		n += put_rec(recs + n, i % 64);
	for (int known = 0; known < 2; known++) {
		uint8_t *batch;
		struct sl_batch_header h;
		size_t len = mk_zstd_batch(&batch, 200, recs, n, known);
		int bad = 0;
		/* Any damage to the frame (past its magic number) is caught by
		 * zstd itself or by the record walk; never a crash. */
		for (size_t i = SL_BATCH_HEADER_SIZE; i < len; i++) {
			batch[i] ^= 0x5a;
			be(batch + 17, sl_crc32c(0, batch + 21, len - 21), 4);
			int rv = sl_batch_validate(batch, len, len, &h);
			cr_assert_neq(rv, SL_OK, "byte %zu", i);
			bad += rv == SL_EDECOMPRESS;
			batch[i] ^= 0x5a;
		}
		cr_assert_gt(bad, 0);
		free(batch);
	}
}

Test(batch, rejects_a_truncated_zstd_frame)
{
	uint8_t recs[8 * 40];
	size_t n = 0;
	for (int i = 0; i < 40; i++)
		n += put_rec(recs + n, i);
	for (int known = 0; known < 2; known++) {
		uint8_t *batch;
		size_t len = mk_zstd_batch(&batch, 40, recs, n, known);
		size_t zlen = len - SL_BATCH_HEADER_SIZE;
		for (size_t cut = 1; cut < zlen; cut++) {
			struct fields f = defaults(40, 39);
			struct sl_batch_header h;
			f.attributes = SL_CODEC_ZSTD;
			size_t blen = mk_batch(bbuf, &f, batch + SL_BATCH_HEADER_SIZE, cut);
			assert_code(sl_batch_validate(bbuf, blen, blen, &h), SL_EDECOMPRESS);
		}
		free(batch);
	}
}

Test(batch, rejects_bytes_after_the_zstd_frame)
{
	uint8_t recs[16];
	size_t n = put_rec(recs, 0);
	uint8_t *batch;
	size_t len = mk_zstd_batch(&batch, 1, recs, n, true);
	uint8_t two[512];
	size_t zlen = len - SL_BATCH_HEADER_SIZE;
	struct fields f = defaults(1, 0);
	struct sl_batch_header h;

	/* A second frame, then a stray byte. */
	memcpy(two, batch + SL_BATCH_HEADER_SIZE, zlen);
	memcpy(two + zlen, batch + SL_BATCH_HEADER_SIZE, zlen);
	f.attributes = SL_CODEC_ZSTD;
	size_t blen = mk_batch(bbuf, &f, two, 2 * zlen);
	assert_code(sl_batch_validate(bbuf, blen, blen, &h), SL_EDECOMPRESS);
	two[zlen] = 0;
	blen = mk_batch(bbuf, &f, two, zlen + 1);
	assert_code(sl_batch_validate(bbuf, blen, blen, &h), SL_EDECOMPRESS);
	free(batch);
}

Test(batch, rejects_zstd_records_over_the_cap, .timeout = 60)
{
	size_t n = (size_t)SL_BATCH_MAX_DECOMPRESSED + 1;
	size_t over[] = {n, n + 300000};
	uint8_t *zeros = calloc(1, over[1]);

	for (int known = 0; known < 2; known++) {
		for (int i = 0; i < 2; i++) {
			uint8_t *batch;
			struct sl_batch_header h;
			struct sl_record_iter it;
			size_t len = mk_zstd_batch(&batch, 1, zeros, over[i], known);
			assert_code(sl_batch_validate(batch, len, len, &h), SL_EDECOMPRESS);
			assert_code(sl_record_iter_init(&it, batch, len), SL_EDECOMPRESS);
			free(batch);
		}
	}
	/* Exactly at the cap decompresses (and then fails as records). */
	for (int known = 0; known < 2; known++) {
		uint8_t *batch;
		struct sl_batch_header h;
		size_t len = mk_zstd_batch(&batch, 1, zeros, n - 1, known);
		assert_code(sl_batch_validate(batch, len, len, &h), SL_ERECORD_BAD_LENGTH);
		free(batch);
	}
	free(zeros);
}

Test(batch, zstd_batch_of_zero_records_may_hold_an_empty_frame)
{
	uint8_t *batch;
	struct sl_batch_header h;
	size_t len = mk_zstd_batch(&batch, 0, "", 0, true);

	assert_ok(sl_batch_validate(batch, len, len, &h));
	cr_assert_eq(h.record_count, 0);
	free(batch);
}

/* ---- Robustness ----------------------------------------------------- */

/* Flip every byte of a valid batch, fix the CRC, and make sure the decoder
 * answers without reading out of bounds (ASan builds check that). */
Test(batch, survives_every_single_byte_corruption)
{
	for (int codec = 0; codec <= SL_CODEC_ZSTD; codec += SL_CODEC_ZSTD) {
		size_t len;
		uint8_t *batch = build_sample(codec, &len);
		for (size_t i = 0; i < len; i++) {
			for (int v = 0; v < 256; v += 51) {
				uint8_t *copy = malloc(len);
				struct sl_batch_header h;
				struct sl_record_iter it;
				struct sl_record rec;
				memcpy(copy, batch, len);
				copy[i] = (uint8_t)v;
				if (i >= 21)
					be(copy + 17, sl_crc32c(0, copy + 21, len - 21), 4);
				(void)sl_batch_validate(copy, len, len, &h);
				if (sl_record_iter_init(&it, copy, len) == SL_OK) {
					while (sl_record_iter_next(&it, &rec)) {
						size_t pos = 0;
						struct sl_header hdr;
						while (sl_record_header_next(&rec, &pos, &hdr))
							;
					}
					sl_record_iter_free(&it);
				}
				free(copy);
			}
		}
		free(batch);
	}
}
