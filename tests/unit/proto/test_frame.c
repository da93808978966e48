/* The client protocol's frames: round trips through sl_frame_encode and
 * sl_frame_decode, sl_frame_peek on partial buffers, and every refusal of
 * the decoder on frames built by hand. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "sluice.pb-c.h"

TestSuite(frame, .timeout = 20);

#define assert_code(expr, code)                                              \
	do {                                                                 \
		int rv_ = (expr);                                            \
		cr_assert_eq(rv_, (code), "%s: got %s, want %s", #expr,      \
			     sl_err_name(rv_), sl_err_name(code));           \
	} while (0)

#define assert_ok(expr) assert_code(expr, SL_OK)

#define MAX_FRAME (1u << 20)

/* ---- Hand encoding, independent of frame.c --------------------------- */

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t unbe32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* An ApiVersions request envelope; req must outlive it. */
static Sluice__Envelope request(Sluice__ApiVersionsRequest *req, uint32_t correlation_id)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	sluice__api_versions_request__init(req);
	req->client_software = "t";
	env.correlation_id = correlation_id;
	env.api_key = SLUICE__API_KEY__API_VERSIONS;
	env.api_version = 0;
	env.body_case = SLUICE__ENVELOPE__BODY_API_VERSIONS_REQUEST;
	env.api_versions_request = req;
	return env;
}

/* Lays out a frame by hand: length field (length, or the right one when
 * 0), env_length (env_length, or the envelope's size when
 * UINT32_MAX), the envelope packed, then ndata bytes of data. Returns a
 * malloc'd frame of *len bytes. */
static uint8_t *mk_frame(const Sluice__Envelope *env, uint32_t env_length, const void *data,
			 size_t ndata, uint32_t length, size_t *len)
{
	size_t packed = sluice__envelope__get_packed_size(env);
	size_t total = SL_FRAME_PREFIX + packed + ndata;
	uint8_t *f = malloc(total);
	cr_assert_not_null(f);
	be32(f, length != 0 ? length : (uint32_t)(total - 4));
	be32(f + 4, env_length != UINT32_MAX ? env_length : (uint32_t)packed);
	cr_assert_eq(sluice__envelope__pack(env, f + SL_FRAME_PREFIX), packed);
	if (ndata > 0)
		memcpy(f + SL_FRAME_PREFIX + packed, data, ndata);
	*len = total;
	return f;
}

/* Decodes a frame that must be refused: SL_EINVALID_REQUEST, f.env NULL,
 * nseg 0, and an errmsg containing `words`. Returns the correlation id. */
static uint32_t refused(const uint8_t *frame, size_t len, const char *words)
{
	static struct sl_frame f;
	char errmsg[SL_ERRMSG_SIZE] = "";
	uint32_t cid = 0xdeadbeef;

	f.env = (Sluice__Envelope *)&f; /* anything but NULL */
	f.nseg = 99;
	assert_code(sl_frame_decode(frame, len, NULL, &f, &cid, errmsg), SL_EINVALID_REQUEST);
	cr_assert_null(f.env);
	cr_assert_eq(f.nseg, 0);
	cr_assert_not_null(strstr(errmsg, words), "errmsg \"%s\" lacks \"%s\"", errmsg, words);
	return cid;
}

/* ---- Round trips ---------------------------------------------------- */

Test(frame, round_trips_an_envelope_without_data)
{
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 7);
	static struct sl_frame f;
	char errmsg[SL_ERRMSG_SIZE];
	uint32_t cid = 0;
	uint8_t *head;
	size_t head_len, frame_len;

	assert_ok(sl_frame_encode(&env, NULL, 0, &head, &head_len));
	cr_assert_not_null(head);
	cr_assert_gt(head_len, SL_FRAME_PREFIX);
	cr_assert_eq(unbe32(head), head_len - 4);
	cr_assert_eq(unbe32(head + 4), head_len - SL_FRAME_PREFIX);

	assert_ok(sl_frame_peek(head, head_len, MAX_FRAME, &frame_len));
	cr_assert_eq(frame_len, head_len);

	assert_ok(sl_frame_decode(head, frame_len, NULL, &f, &cid, errmsg));
	cr_assert_eq(cid, 7);
	cr_assert_eq(f.nseg, 0);
	cr_assert_not_null(f.env);
	cr_assert_eq(f.env->correlation_id, 7);
	cr_assert_eq(f.env->api_key, SLUICE__API_KEY__API_VERSIONS);
	cr_assert_eq(f.env->api_version, 0);
	cr_assert_eq(f.env->n_data_lengths, 0);
	cr_assert_eq(f.env->body_case, SLUICE__ENVELOPE__BODY_API_VERSIONS_REQUEST);
	cr_assert_not_null(f.env->api_versions_request);
	cr_assert_str_eq(f.env->api_versions_request->client_software, "t");
	sluice__envelope__free_unpacked(f.env, NULL);
	free(head);
}

Test(frame, round_trips_data_segments_in_place)
{
	enum { BIG = 70000 };
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 42);
	uint32_t sentinel[1] = {12345};
	static uint8_t big[BIG];
	static struct sl_frame f;
	uint8_t empty[1] = {0xee};
	char errmsg[SL_ERRMSG_SIZE];
	uint32_t cid = 0;
	uint8_t *head;
	size_t head_len, frame_len;

	for (size_t i = 0; i < BIG; i++)
		big[i] = (uint8_t)(i * 7 + 3);
	struct iovec seg[3] = {
		{.iov_base = empty, .iov_len = 0},
		{.iov_base = "abcde", .iov_len = 5},
		{.iov_base = big, .iov_len = BIG},
	};
	env.n_data_lengths = 1;
	env.data_lengths = sentinel;
	assert_ok(sl_frame_encode(&env, seg, 3, &head, &head_len));
	cr_assert_eq(env.n_data_lengths, 1);
	cr_assert_eq(env.data_lengths, sentinel);
	cr_assert_eq(sentinel[0], 12345);

	size_t total = head_len + 5 + BIG;
	uint8_t *wire = malloc(total);
	cr_assert_not_null(wire);
	memcpy(wire, head, head_len);
	memcpy(wire + head_len, "abcde", 5);
	memcpy(wire + head_len + 5, big, BIG);
	cr_assert_eq(unbe32(wire), total - 4);

	assert_ok(sl_frame_peek(wire, total, MAX_FRAME, &frame_len));
	cr_assert_eq(frame_len, total);
	assert_ok(sl_frame_decode(wire, frame_len, NULL, &f, &cid, errmsg));
	cr_assert_eq(cid, 42);
	cr_assert_eq(f.nseg, 3);
	cr_assert_eq(f.seg[0].iov_len, 0);
	cr_assert_eq(f.seg[1].iov_len, 5);
	cr_assert_eq(f.seg[2].iov_len, BIG);
	cr_assert_eq(f.seg[0].iov_base, (void *)(wire + head_len));
	cr_assert_eq(f.seg[1].iov_base, (void *)(wire + head_len));
	cr_assert_eq(f.seg[2].iov_base, (void *)(wire + head_len + 5));
	cr_assert_eq(memcmp(f.seg[1].iov_base, "abcde", 5), 0);
	cr_assert_eq(memcmp(f.seg[2].iov_base, big, BIG), 0);
	cr_assert_eq(f.env->n_data_lengths, 3);
	cr_assert_eq(f.env->data_lengths[0], 0);
	cr_assert_eq(f.env->data_lengths[1], 5);
	cr_assert_eq(f.env->data_lengths[2], BIG);
	cr_assert_str_eq(f.env->api_versions_request->client_software, "t");
	sluice__envelope__free_unpacked(f.env, NULL);
	free(wire);
	free(head);
}

/* ---- Peek ----------------------------------------------------------- */

Test(frame, peek_measures_partial_and_whole_frames)
{
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 1);
	uint8_t data[100];
	size_t len, frame_len;

	memset(data, 0x5a, sizeof(data));
	env.n_data_lengths = 1;
	env.data_lengths = (uint32_t[]){sizeof(data)};
	uint8_t *fr = mk_frame(&env, UINT32_MAX, data, sizeof(data), 0, &len);

	for (size_t n = 0; n < 4; n++) {
		frame_len = 99;
		assert_code(sl_frame_peek(fr, n, MAX_FRAME, &frame_len), SL_ENOT_FOUND);
		cr_assert_eq(frame_len, 0, "%zu bytes", n);
	}
	frame_len = 0;
	assert_code(sl_frame_peek(fr, 4, MAX_FRAME, &frame_len), SL_ENOT_FOUND);
	cr_assert_eq(frame_len, len);
	frame_len = 0;
	assert_code(sl_frame_peek(fr, len - 1, MAX_FRAME, &frame_len), SL_ENOT_FOUND);
	cr_assert_eq(frame_len, len);
	frame_len = 0;
	assert_ok(sl_frame_peek(fr, len, MAX_FRAME, &frame_len));
	cr_assert_eq(frame_len, len);
	/* max_frame counts the prefix: exactly len is allowed. */
	assert_ok(sl_frame_peek(fr, len, len, &frame_len));
	cr_assert_eq(frame_len, len);
	free(fr);
}

Test(frame, peek_refuses_frames_over_max_frame)
{
	uint8_t buf[64] = {0};
	size_t frame_len;

	be32(buf, 60); /* a 64-byte frame */
	assert_code(sl_frame_peek(buf, 4, 63, &frame_len), SL_EMESSAGE_TOO_LARGE);
	assert_code(sl_frame_peek(buf, 20, 63, &frame_len), SL_EMESSAGE_TOO_LARGE);
	assert_code(sl_frame_peek(buf, 64, 63, &frame_len), SL_EMESSAGE_TOO_LARGE);
	assert_ok(sl_frame_peek(buf, 64, 64, &frame_len));
	cr_assert_eq(frame_len, 64);

	be32(buf, UINT32_MAX); /* a length that cannot fit any max_frame here */
	assert_code(sl_frame_peek(buf, 4, MAX_FRAME, &frame_len), SL_EMESSAGE_TOO_LARGE);
	assert_code(sl_frame_peek(buf, sizeof(buf), MAX_FRAME, &frame_len),
		    SL_EMESSAGE_TOO_LARGE);
}

Test(frame, peek_sees_only_the_first_of_two_frames)
{
	Sluice__ApiVersionsRequest req1, req2;
	Sluice__Envelope env1 = request(&req1, 1), env2 = request(&req2, 2);
	static struct sl_frame f;
	char errmsg[SL_ERRMSG_SIZE];
	uint32_t cid;
	uint8_t *h1, *h2;
	size_t l1, l2, frame_len;

	req2.client_software = "a longer client software string";
	assert_ok(sl_frame_encode(&env1, NULL, 0, &h1, &l1));
	assert_ok(sl_frame_encode(&env2, NULL, 0, &h2, &l2));
	cr_assert_neq(l1, l2);
	uint8_t *both = malloc(l1 + l2);
	cr_assert_not_null(both);
	memcpy(both, h1, l1);
	memcpy(both + l1, h2, l2);

	assert_ok(sl_frame_peek(both, l1 + l2, MAX_FRAME, &frame_len));
	cr_assert_eq(frame_len, l1);
	assert_ok(sl_frame_decode(both, frame_len, NULL, &f, &cid, errmsg));
	cr_assert_eq(cid, 1);
	sluice__envelope__free_unpacked(f.env, NULL);

	assert_ok(sl_frame_peek(both + l1, l2, MAX_FRAME, &frame_len));
	cr_assert_eq(frame_len, l2);
	assert_ok(sl_frame_decode(both + l1, frame_len, NULL, &f, &cid, errmsg));
	cr_assert_eq(cid, 2);
	cr_assert_str_eq(f.env->api_versions_request->client_software,
			 "a longer client software string");
	sluice__envelope__free_unpacked(f.env, NULL);
	free(both);
	free(h2);
	free(h1);
}

/* ---- Decode refusals ------------------------------------------------ */

Test(frame, decode_refuses_a_length_field_not_matching_the_frame)
{
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 3);
	size_t len;
	uint8_t *fr = mk_frame(&env, UINT32_MAX, NULL, 0, 0, &len);

	be32(fr, (uint32_t)(len - 4 + 1));
	refused(fr, len, "length");
	be32(fr, (uint32_t)(len - 4 - 1));
	refused(fr, len, "length");
	free(fr);
}

Test(frame, decode_refuses_frames_shorter_than_the_prefix)
{
	uint8_t buf[SL_FRAME_PREFIX] = {0};

	for (size_t n = 0; n < SL_FRAME_PREFIX; n++) {
		if (n >= 4)
			be32(buf, (uint32_t)(n - 4)); /* a consistent length field */
		refused(buf, n, "shorter");
	}
}

Test(frame, decode_refuses_an_envelope_length_past_the_frame)
{
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 3);
	size_t len;
	uint8_t *fr = mk_frame(&env, UINT32_MAX, NULL, 0, 0, &len);

	be32(fr + 4, (uint32_t)(len - SL_FRAME_PREFIX + 1));
	refused(fr, len, "envelope length");
	be32(fr + 4, UINT32_MAX);
	refused(fr, len, "envelope length");
	free(fr);
}

Test(frame, decode_refuses_an_envelope_that_is_not_protobuf)
{
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
	uint8_t fr[SL_FRAME_PREFIX + sizeof(junk)];

	be32(fr, (uint32_t)(sizeof(fr) - 4));
	be32(fr + 4, sizeof(junk));
	memcpy(fr + SL_FRAME_PREFIX, junk, sizeof(junk));
	refused(fr, sizeof(fr), "does not decode");
}

Test(frame, decode_refuses_data_lengths_running_past_the_frame)
{
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 11);
	size_t len;

	env.n_data_lengths = 2;
	env.data_lengths = (uint32_t[]){3, 4};
	uint8_t *fr = mk_frame(&env, UINT32_MAX, "abcdef", 6, 0, &len);
	cr_assert_eq(refused(fr, len, "runs past"), 11);
	free(fr);

	env.n_data_lengths = 1;
	env.data_lengths = (uint32_t[]){UINT32_MAX};
	fr = mk_frame(&env, UINT32_MAX, "abcdef", 6, 0, &len);
	cr_assert_eq(refused(fr, len, "runs past"), 11);
	free(fr);
}

Test(frame, decode_refuses_data_after_the_last_segment)
{
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 12);
	size_t len;

	env.n_data_lengths = 2;
	env.data_lengths = (uint32_t[]){3, 2};
	uint8_t *fr = mk_frame(&env, UINT32_MAX, "abcdef", 6, 0, &len);
	cr_assert_eq(refused(fr, len, "follow"), 12);
	free(fr);

	env.n_data_lengths = 0;
	env.data_lengths = NULL;
	fr = mk_frame(&env, UINT32_MAX, "x", 1, 0, &len);
	cr_assert_eq(refused(fr, len, "follow"), 12);
	free(fr);
}

Test(frame, decode_refuses_too_many_segments)
{
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 13);
	uint32_t *lens = calloc(SL_FRAME_MAX_SEGMENTS + 1, sizeof(*lens));
	size_t len;

	cr_assert_not_null(lens);
	env.n_data_lengths = SL_FRAME_MAX_SEGMENTS + 1;
	env.data_lengths = lens;
	uint8_t *fr = mk_frame(&env, UINT32_MAX, NULL, 0, 0, &len);
	cr_assert_eq(refused(fr, len, "segments"), 13);
	free(fr);
	free(lens);
}

Test(frame, decode_accepts_the_most_segments)
{
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 14);
	uint32_t *lens = malloc(SL_FRAME_MAX_SEGMENTS * sizeof(*lens));
	uint8_t data[SL_FRAME_MAX_SEGMENTS];
	static struct sl_frame f;
	char errmsg[SL_ERRMSG_SIZE];
	uint32_t cid;
	size_t len;

	cr_assert_not_null(lens);
	for (size_t i = 0; i < SL_FRAME_MAX_SEGMENTS; i++) {
		lens[i] = 1;
		data[i] = (uint8_t)i;
	}
	env.n_data_lengths = SL_FRAME_MAX_SEGMENTS;
	env.data_lengths = lens;
	uint8_t *fr = mk_frame(&env, UINT32_MAX, data, sizeof(data), 0, &len);
	assert_ok(sl_frame_decode(fr, len, NULL, &f, &cid, errmsg));
	cr_assert_eq(f.nseg, SL_FRAME_MAX_SEGMENTS);
	for (size_t i = 0; i < SL_FRAME_MAX_SEGMENTS; i++) {
		cr_assert_eq(f.seg[i].iov_len, 1);
		cr_assert_eq(*(uint8_t *)f.seg[i].iov_base, (uint8_t)i);
	}
	sluice__envelope__free_unpacked(f.env, NULL);
	free(fr);
	free(lens);
}

/* ---- Encode refusals ------------------------------------------------ */

Test(frame, encode_refuses_too_many_segments)
{
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 5);
	struct iovec *seg = calloc(SL_FRAME_MAX_SEGMENTS + 1, sizeof(*seg));
	uint8_t *head = (uint8_t *)&env; /* anything but NULL */
	size_t head_len = 99;

	cr_assert_not_null(seg);
	assert_code(sl_frame_encode(&env, seg, SL_FRAME_MAX_SEGMENTS + 1, &head, &head_len),
		    SL_EINVALID_ARGUMENT);
	cr_assert_null(head);
	cr_assert_eq(head_len, 0);
	cr_assert_eq(env.n_data_lengths, 0);
	cr_assert_null(env.data_lengths);
	free(seg);
}

/* ---- Custom allocator ----------------------------------------------- */

struct counts {
	size_t allocs, frees;
};

static void *count_alloc(void *data, size_t size)
{
	((struct counts *)data)->allocs++;
	return malloc(size);
}

static void count_free(void *data, void *p)
{
	if (p != NULL)
		((struct counts *)data)->frees++;
	free(p);
}

Test(frame, decodes_through_a_custom_allocator)
{
	Sluice__ApiVersionsRequest req;
	Sluice__Envelope env = request(&req, 21);
	struct counts c = {0, 0};
	ProtobufCAllocator alloc = {count_alloc, count_free, &c};
	static struct sl_frame f;
	char errmsg[SL_ERRMSG_SIZE];
	uint32_t cid;
	size_t len;

	env.n_data_lengths = 2;
	env.data_lengths = (uint32_t[]){2, 1};
	uint8_t *fr = mk_frame(&env, UINT32_MAX, "xyz", 3, 0, &len);
	assert_ok(sl_frame_decode(fr, len, &alloc, &f, &cid, errmsg));
	cr_assert_eq(cid, 21);
	cr_assert_eq(f.nseg, 2);
	cr_assert_str_eq(f.env->api_versions_request->client_software, "t");
	cr_assert_gt(c.allocs, 0);
	cr_assert_eq(c.frees, 0);
	sluice__envelope__free_unpacked(f.env, &alloc);
	cr_assert_eq(c.frees, c.allocs);

	/* A refusal after the envelope decoded frees it through alloc too. */
	c = (struct counts){0, 0};
	free(fr);

	env.data_lengths = (uint32_t[]){2, 2};
	fr = mk_frame(&env, UINT32_MAX, "xyz", 3, 0, &len);
	assert_code(sl_frame_decode(fr, len, &alloc, &f, &cid, errmsg), SL_EINVALID_REQUEST);
	cr_assert_eq(cid, 21);
	cr_assert_gt(c.allocs, 0);
	cr_assert_eq(c.frees, c.allocs);
	free(fr);
}
