/* libFuzzer target for the record batch codec (proto/batch.h).
 *
 * Every input goes through the decoder as it is: parse_header, check,
 * validate, the record iterator and the header walk, which must never read
 * out of bounds and must agree with one another. Random bytes almost never
 * carry a right CRC, so the input is then decoded again with its CRC
 * recomputed; that is what lets the fuzzer reach the record parser through
 * sl_batch_validate. When that copy validates, its records are rebuilt with
 * the builder and the result must validate and walk to the same records,
 * and rebuilding the rebuilt batch must give the same bytes.
 *
 * Seeds: tests/fuzz/corpus/batch/ (valid batches made with the builder).
 * Run with a scratch corpus first, as libFuzzer adds new inputs there:
 *   fuzz_batch -max_total_time=60 /tmp/corpus-batch tests/fuzz/corpus/batch */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void walk_headers(const struct sl_record *rec)
{
	struct sl_header hdr;
	size_t pos = 0;
	int32_t n = 0;

	while (sl_record_header_next(rec, &pos, &hdr)) {
		CHECK(hdr.key_len >= 0 && hdr.key != NULL);
		CHECK(hdr.value_len >= -1);
		CHECK((hdr.value_len == -1) == (hdr.value == NULL));
		n++;
	}
	/* The iterator checked the headers, so the walk must cover them. */
	CHECK(n == rec->header_count);
	CHECK(pos == rec->headers_len);
}

/* Walks every record; returns the iterator's final code (or init's). */
static int walk(const uint8_t *buf, size_t len, int32_t *nrecords)
{
	struct sl_record_iter it;
	struct sl_record rec;
	int64_t prev = INT64_MIN;
	int rv;

	*nrecords = 0;
	rv = sl_record_iter_init(&it, buf, len);
	if (rv != SL_OK)
		return rv;
	while (sl_record_iter_next(&it, &rec)) {
		CHECK(rec.offset_delta >= 0);
		CHECK(rec.offset_delta <= it.h.last_offset_delta);
		CHECK(rec.offset == it.h.base_offset + rec.offset_delta);
		CHECK(*nrecords == 0 || rec.offset > prev);
		prev = rec.offset;
		CHECK(rec.key_len >= -1 && rec.value_len >= -1);
		CHECK((rec.key_len == -1) == (rec.key == NULL));
		CHECK((rec.value_len == -1) == (rec.value == NULL));
		if (it.h.attributes & SL_ATTR_LOG_APPEND_TIME)
			CHECK(rec.timestamp == it.h.max_timestamp);
		walk_headers(&rec);
		(*nrecords)++;
	}
	CHECK(*nrecords <= it.h.record_count);
	if (it.err == SL_OK)
		CHECK(*nrecords == it.h.record_count);
	/* A finished iterator stays finished. */
	CHECK(!sl_record_iter_next(&it, &rec));
	rv = it.err;
	sl_record_iter_free(&it);
	return rv;
}

static bool same_bytes(const uint8_t *a, int32_t alen, const uint8_t *b, int32_t blen)
{
	return alen == blen && (alen <= 0 || memcmp(a, b, (size_t)alen) == 0);
}

/* Adds rec through sl_batch_builder_add_at, with its headers decoded into
 * an array (the record attributes are lost: add_at writes 0). */
static int add_fields(struct sl_batch_builder *b, const struct sl_record *rec)
{
	struct sl_header *hdrs = NULL;
	size_t n = 0, pos = 0;
	int rv;

	if (rec->header_count > 0) {
		hdrs = malloc((size_t)rec->header_count * sizeof(*hdrs));
		CHECK(hdrs != NULL);
		while (sl_record_header_next(rec, &pos, &hdrs[n]))
			n++;
		CHECK(n == (size_t)rec->header_count);
	}
	rv = sl_batch_builder_add_at(b, rec->offset_delta, rec->timestamp, rec->key,
				     rec->key_len, rec->value, rec->value_len, hdrs, n);
	free(hdrs);
	return rv;
}

/* Rebuilds the records of a valid batch, with add_record or (via_fields)
 * add_at; *out is malloc'ed. Returns false only when the rebuilt batch
 * would be too large (timestamp deltas taken from another base can need
 * longer varints). */
static bool rebuild(const uint8_t *batch, size_t len, int codec, bool via_fields,
		    uint8_t **out, size_t *out_len)
{
	struct sl_record_iter it;
	struct sl_record rec;
	struct sl_batch_builder b;
	struct sl_batch_opts o;
	const uint8_t *built;
	int rv;

	CHECK(sl_record_iter_init(&it, batch, len) == SL_OK);
	sl_batch_opts_init(&o);
	o.codec = codec;
	o.attributes = (int16_t)(it.h.attributes & ~SL_ATTR_CODEC_MASK);
	o.producer_id = it.h.producer_id;
	o.producer_epoch = it.h.producer_epoch;
	o.base_sequence = it.h.base_sequence;
	o.last_offset_delta = it.h.last_offset_delta;
	sl_batch_builder_init(&b, &o);
	while (sl_record_iter_next(&it, &rec)) {
		rv = via_fields ? add_fields(&b, &rec) : sl_batch_builder_add_record(&b, &rec);
		if (rv == SL_EMESSAGE_TOO_LARGE) {
			sl_record_iter_free(&it);
			sl_batch_builder_free(&b);
			return false;
		}
		CHECK(rv == SL_OK);
	}
	CHECK(it.err == SL_OK);
	CHECK(sl_batch_builder_count(&b) == it.h.record_count);
	CHECK(sl_batch_builder_finish(&b, &built, out_len) == SL_OK);
	if (codec == SL_CODEC_NONE)
		CHECK(*out_len == sl_batch_builder_size(&b));
	*out = malloc(*out_len);
	CHECK(*out != NULL);
	memcpy(*out, built, *out_len);
	sl_batch_stamp(*out, it.h.base_offset, it.h.leader_epoch);
	sl_record_iter_free(&it);
	sl_batch_builder_free(&b);
	return true;
}

/* The rebuilt batch must hold the same records as the original. */
static void compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
		    bool same_attributes)
{
	struct sl_record_iter ia, ib;
	struct sl_record ra, rb;

	CHECK(sl_record_iter_init(&ia, a, alen) == SL_OK);
	CHECK(sl_record_iter_init(&ib, b, blen) == SL_OK);
	CHECK(ib.h.record_count == ia.h.record_count);
	CHECK(ib.h.last_offset_delta == ia.h.last_offset_delta);
	CHECK(ib.h.base_offset == ia.h.base_offset);
	CHECK(ib.h.leader_epoch == ia.h.leader_epoch);
	CHECK((ib.h.attributes & ~SL_ATTR_CODEC_MASK) ==
	      (ia.h.attributes & ~SL_ATTR_CODEC_MASK));
	CHECK(ib.h.producer_id == ia.h.producer_id);
	CHECK(ib.h.producer_epoch == ia.h.producer_epoch);
	CHECK(ib.h.base_sequence == ia.h.base_sequence);
	for (;;) {
		bool more_a = sl_record_iter_next(&ia, &ra);
		bool more_b = sl_record_iter_next(&ib, &rb);
		CHECK(more_a == more_b);
		if (!more_a)
			break;
		CHECK(rb.offset == ra.offset);
		CHECK(rb.offset_delta == ra.offset_delta);
		CHECK(rb.timestamp == ra.timestamp);
		CHECK(rb.attributes == (same_attributes ? ra.attributes : 0));
		CHECK(same_bytes(rb.key, rb.key_len, ra.key, ra.key_len));
		CHECK(same_bytes(rb.value, rb.value_len, ra.value, ra.value_len));
		CHECK(rb.header_count == ra.header_count);
		if (same_attributes) { /* add_record copies the encoded headers */
			CHECK(rb.headers_len == ra.headers_len);
			CHECK(ra.headers_len == 0 ||
			      memcmp(rb.headers, ra.headers, ra.headers_len) == 0);
		}

		struct sl_header ha, hb;
		size_t pa = 0, pb = 0;
		for (;;) {
			bool ma = sl_record_header_next(&ra, &pa, &ha);
			bool mb = sl_record_header_next(&rb, &pb, &hb);
			CHECK(ma == mb);
			if (!ma)
				break;
			CHECK(same_bytes(hb.key, hb.key_len, ha.key, ha.key_len));
			CHECK(same_bytes(hb.value, hb.value_len, ha.value, ha.value_len));
		}
	}
	CHECK(ia.err == SL_OK && ib.err == SL_OK);
	/* The builder derives the timestamps from the records. */
	if (ib.h.record_count > 0 && (ib.h.attributes & SL_ATTR_LOG_APPEND_TIME))
		CHECK(ib.h.max_timestamp == ia.h.max_timestamp);
	sl_record_iter_free(&ia);
	sl_record_iter_free(&ib);
}

static void check_valid(const uint8_t *buf, size_t len)
{
	struct sl_batch_header h;
	int32_t n;
	uint8_t *re, *re2;
	size_t re_len, re2_len;

	CHECK(sl_batch_check(buf, len, len, &h) == SL_OK);
	CHECK(walk(buf, len, &n) == SL_OK);
	CHECK(n == h.record_count);

	/* Let the CRC pick the codec and the way of adding. */
	int codec = (h.crc & 1) ? SL_CODEC_ZSTD : SL_CODEC_NONE;
	bool via_fields = (h.crc & 2) != 0;
	if (!rebuild(buf, len, codec, via_fields, &re, &re_len))
		return;
	struct sl_batch_header rh;
	CHECK(sl_batch_validate(re, re_len, re_len, &rh) == SL_OK);
	compare(buf, len, re, re_len, !via_fields);

	/* A rebuilt batch is canonical: rebuilding it changes nothing. */
	if (codec == SL_CODEC_NONE) {
		CHECK(rebuild(re, re_len, SL_CODEC_NONE, false, &re2, &re2_len));
		CHECK(re2_len == re_len && memcmp(re2, re, re_len) == 0);
		free(re2);
	}
	free(re);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sl_batch_header h, hc, hv;
	int32_t n;

	/* The input as it came. */
	int rp = sl_batch_parse_header(data, size, size, &h);
	int rc = sl_batch_check(data, size, size, &hc);
	int rv = sl_batch_validate(data, size, size, &hv);
	int rw = walk(data, size, &n);
	if (rc == SL_OK)
		CHECK(rp == SL_OK && sl_batch_total_size(&hc) <= size);
	if (rv == SL_OK)
		CHECK(rc == SL_OK && rw == SL_OK);
	if (rp != SL_OK)
		CHECK(rc == rp && rv == rp);
	(void)sl_batch_validate(data, size, SIZE_MAX, &hv);

	/* The same with the CRC made right. */
	if (rp != SL_OK || sl_batch_total_size(&h) > size)
		return 0;
	size_t len = sl_batch_total_size(&h);
	uint8_t *copy = malloc(size);
	CHECK(copy != NULL);
	memcpy(copy, data, size);
	uint32_t crc = sl_crc32c(0, copy + SL_BATCH_CRC_START, len - SL_BATCH_CRC_START);
	copy[SL_BATCH_OFF_CRC] = (uint8_t)(crc >> 24);
	copy[SL_BATCH_OFF_CRC + 1] = (uint8_t)(crc >> 16);
	copy[SL_BATCH_OFF_CRC + 2] = (uint8_t)(crc >> 8);
	copy[SL_BATCH_OFF_CRC + 3] = (uint8_t)crc;
	CHECK(sl_batch_check(copy, size, size, &hc) == SL_OK);
	rv = sl_batch_validate(copy, size, size, &hv);
	CHECK(rv == walk(copy, size, &n));
	if (rv == SL_OK)
		check_valid(copy, len);
	free(copy);
	return 0;
}
