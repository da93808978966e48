/* libFuzzer target for the records of __consumer_offsets (broker/offsets.h).
 *
 * The input is a key and a value: the first byte says how long the key is
 * (the rest is the value; an input of one byte has no value: a tombstone).
 * Decoding returns SL_OK, SL_ENOT_FOUND (a key of another kind) or
 * SL_EINVALID_RECORD, nothing else. What decodes encodes again to the same
 * bytes. Applying the record to a view changes it only when both decode:
 * then the view returns what the value says.
 *
 * Seeds: tests/fuzz/corpus/offsets/. */
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "fuzz.h"
#include "offsets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t klen = data[0];
	if (klen > size - 1)
		klen = size - 1;
	const uint8_t *key = data + 1, *value = key + klen;
	size_t vlen = size - 1 - klen;
	char why[SL_ERRMSG_SIZE];
	struct sl_offsets_key k;
	struct sl_offsets_value v;
	int kr = sl_offsets_key_decode(key, klen, &k, why);
	CHECK(kr == SL_OK || kr == SL_ENOT_FOUND || kr == SL_EINVALID_RECORD);
	int vr = sl_offsets_value_decode(value, vlen, &v, why);
	CHECK(vr == SL_OK || vr == SL_EINVALID_RECORD);
	uint8_t *out;
	size_t olen;
	if (kr == SL_OK) {
		CHECK(sl_offsets_key_encode(&k, &out, &olen) == SL_OK);
		CHECK(olen == klen && memcmp(out, key, klen) == 0);
		free(out);
	}
	if (vr == SL_OK) {
		CHECK(sl_offsets_value_encode(&v, &out, &olen) == SL_OK);
		CHECK(olen == vlen && memcmp(out, value, vlen) == 0);
		free(out);
	}
	struct sl_offsets_view *view = sl_offsets_view_new();
	if (view == NULL)
		return 0;
	int ar = sl_offsets_view_apply(view, key, klen, vlen > 0 ? value : NULL, vlen);
	CHECK(ar == SL_OK || ar == SL_EINVALID_RECORD || ar == SL_ENOMEM);
	size_t want = kr == SL_OK && vlen > 0 && vr == SL_OK ? 1 : 0;
	CHECK(ar != SL_OK || sl_offsets_view_count(view) == want);
	if (want == 1 && ar == SL_OK && k.group_len < 256 && k.topic_len < 256 &&
	    memchr(k.group, 0, k.group_len) == NULL && memchr(k.topic, 0, k.topic_len) == NULL) {
		char g[256], t[256];
		memcpy(g, k.group, k.group_len);
		g[k.group_len] = '\0';
		memcpy(t, k.topic, k.topic_len);
		t[k.topic_len] = '\0';
		struct sl_offsets_value got;
		CHECK(sl_offsets_view_get(view, g, t, k.partition, &got) == SL_OK);
		CHECK(got.offset == v.offset && got.metadata_len == v.metadata_len);
	}
	sl_offsets_view_free(view);
	return 0;
}
