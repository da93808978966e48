/* libFuzzer target for the records of __consumer_offsets (broker/offsets.h).
 *
 * The input is a key and a value: the first byte says how long the key is
 * (the rest is the value; an input of one byte has no value: a tombstone).
 * Decoding returns SL_OK, SL_ENOT_FOUND (a key of another kind) or
 * SL_EINVALID_RECORD, nothing else. What decodes encodes again to the same
 * bytes. Applying the record to a view changes it only when both decode:
 * then the view returns what the value says.
 *
 * The whole input is also taken as a group's record (group.h,
 * sl_group_import): SL_OK, SL_EINVALID_RECORD or SL_ENOMEM, nothing else;
 * a group that comes back exports again, answers a heartbeat of each of
 * its members, and never has a partition owned twice.
 *
 * Seeds: tests/fuzz/corpus/offsets/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "fuzz.h"
#include "group.h"
#include "offsets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t eight(void *arg, const char *topic)
{
	(void)arg;
	return topic[0] == 'x' ? 0 : 8;
}

static void group_record(const uint8_t *data, size_t size)
{
	struct sl_group_config cfg = { .partitions = eight };
	struct sl_group *g;
	char why[256];
	int rv = sl_group_import("g", &cfg, data, size, 0, &g, why);
	CHECK(rv == SL_OK || rv == SL_EINVALID_RECORD || rv == SL_ENOMEM);
	if (rv != SL_OK)
		return;
	uint8_t *out;
	size_t len;
	if (sl_group_export(g, &out, &len) == SL_OK)
		free(out);
	/* Each member heartbeats what it was given: no partition twice. */
	static char *topics[4096];
	static uint32_t parts[4096];
	size_t n = 0;
	for (size_t i = 0; i < sl_group_members(g); i++) {
		struct sl_group_member_info mi;
		sl_group_member_info(g, i, &mi);
		char id[SL_GROUP_MEMBER_ID_MAX + 1];
		snprintf(id, sizeof(id), "%s", mi.id);
		struct sl_group_hb hb = { .member_id = id, .member_epoch = mi.epoch };
		struct sl_group_answer a;
		sl_group_heartbeat(g, &hb, 1, &a);
		for (size_t j = 0; a.err == SL_OK && j < a.nassignment && n < 4096; j++) {
			CHECK(a.assignment[j].partition < 8);
			for (size_t k = 0; k < n; k++)
				CHECK(parts[k] != a.assignment[j].partition ||
				      strcmp(topics[k], a.assignment[j].topic) != 0);
			topics[n] = strdup(a.assignment[j].topic);
			parts[n++] = a.assignment[j].partition;
		}
	}
	for (size_t k = 0; k < n; k++)
		free(topics[k]);
	sl_group_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	group_record(data, size);
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
