/* The records of __consumer_offsets and a coordinator's view of them
 * (broker/offsets.h): round trips, precise refusals, last write wins,
 * tombstones. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "offsets.h"

TestSuite(offsets, .timeout = 10);

static char why[SL_ERRMSG_SIZE];

static void commit(struct sl_offsets_view *v, const char *group, const char *topic, uint32_t p,
		   int64_t offset, const char *meta)
{
	struct sl_offsets_key k = { group, topic, strlen(group), strlen(topic), p };
	struct sl_offsets_value val = { .offset = offset, .leader_epoch = 7, .commit_ms = 1234,
					.metadata = meta, .metadata_len = strlen(meta) };
	uint8_t *kb, *vb;
	size_t kl, vl;
	cr_assert_eq(sl_offsets_key_encode(&k, &kb, &kl), SL_OK);
	cr_assert_eq(sl_offsets_value_encode(&val, &vb, &vl), SL_OK);
	cr_assert_eq(sl_offsets_view_apply(v, kb, kl, vb, vl), SL_OK);
	free(kb);
	free(vb);
}

Test(offsets, records_round_trip_byte_for_byte)
{
	struct sl_offsets_key k = { "payments", "orders", 8, 6, 11 };
	uint8_t *kb;
	size_t kl;
	cr_assert_eq(sl_offsets_key_encode(&k, &kb, &kl), SL_OK);
	const uint8_t want[] = { 1, 0, 8, 'p', 'a', 'y', 'm', 'e', 'n', 't', 's', 0, 6,
				 'o', 'r', 'd', 'e', 'r', 's', 0, 0, 0, 11 };
	cr_assert_eq(kl, sizeof(want));
	cr_assert_eq(memcmp(kb, want, kl), 0);
	struct sl_offsets_key d;
	cr_assert_eq(sl_offsets_key_decode(kb, kl, &d, why), SL_OK, "%s", why);
	cr_assert_eq(d.group_len, 8);
	cr_assert_eq(memcmp(d.group, "payments", 8), 0);
	cr_assert_eq(memcmp(d.topic, "orders", 6), 0);
	cr_assert_eq(d.partition, 11);
	free(kb);

	struct sl_offsets_value v = { .offset = 1ll << 40, .leader_epoch = -1,
				      .commit_ms = 1700000000000, .metadata = "m", .metadata_len = 1 };
	uint8_t *vb;
	size_t vl;
	cr_assert_eq(sl_offsets_value_encode(&v, &vb, &vl), SL_OK);
	struct sl_offsets_value dv;
	cr_assert_eq(sl_offsets_value_decode(vb, vl, &dv, why), SL_OK, "%s", why);
	cr_assert_eq(dv.offset, 1ll << 40);
	cr_assert_eq(dv.leader_epoch, -1);
	cr_assert_eq(dv.commit_ms, 1700000000000);
	cr_assert_eq(dv.metadata_len, 1);
	cr_assert_eq(dv.metadata[0], 'm');
	/* Cut anywhere, or one byte too many: refused, precisely. */
	for (size_t n = 0; n < vl; n++)
		cr_assert_eq(sl_offsets_value_decode(vb, n, &dv, why), SL_EINVALID_RECORD, "%zu", n);
	uint8_t longer[64];
	memcpy(longer, vb, vl);
	longer[vl] = 0;
	cr_assert_eq(sl_offsets_value_decode(longer, vl + 1, &dv, why), SL_EINVALID_RECORD);
	cr_assert(strstr(why, "does not match") != NULL, "%s", why);
	longer[0] = 9;
	cr_assert_eq(sl_offsets_value_decode(longer, vl, &dv, why), SL_EINVALID_RECORD);
	cr_assert(strstr(why, "unknown version") != NULL, "%s", why);
	free(vb);
	/* What cannot be encoded. */
	v.offset = -1;
	cr_assert_eq(sl_offsets_value_encode(&v, &vb, &vl), SL_EINVALID_ARGUMENT);
	v.offset = 0;
	v.metadata_len = SL_OFFSETS_METADATA_MAX + 1;
	cr_assert_eq(sl_offsets_value_encode(&v, &vb, &vl), SL_EINVALID_ARGUMENT);
}

Test(offsets, keys_are_refused_precisely)
{
	struct sl_offsets_key k;
	const uint8_t other[] = { 2, 0, 1, 'g' };
	cr_assert_eq(sl_offsets_key_decode(other, sizeof(other), &k, why), SL_ENOT_FOUND);
	cr_assert_eq(sl_offsets_key_decode(other, 0, &k, why), SL_EINVALID_RECORD);
	const uint8_t cut[] = { 1, 0, 5, 'g' };
	cr_assert_eq(sl_offsets_key_decode(cut, sizeof(cut), &k, why), SL_EINVALID_RECORD);
	cr_assert(strstr(why, "group") != NULL, "%s", why);
	const uint8_t trailing[] = { 1, 0, 1, 'g', 0, 1, 't', 0, 0, 0, 1, 9 };
	cr_assert_eq(sl_offsets_key_decode(trailing, sizeof(trailing), &k, why),
		     SL_EINVALID_RECORD);
	cr_assert_eq(sl_offsets_key_decode(trailing, sizeof(trailing) - 1, &k, why), SL_OK);
}

Test(offsets, the_view_keeps_the_last_commit_and_forgets_on_a_tombstone)
{
	struct sl_offsets_view *v = sl_offsets_view_new();
	struct sl_offsets_value out;
	commit(v, "g", "orders", 0, 10, "");
	commit(v, "g", "orders", 1, 20, "");
	commit(v, "h", "orders", 0, 30, "x");
	commit(v, "g", "orders", 0, 15, "again");
	cr_assert_eq(sl_offsets_view_count(v), 3);
	cr_assert_eq(sl_offsets_view_get(v, "g", "orders", 0, &out), SL_OK);
	cr_assert_eq(out.offset, 15);
	cr_assert_str_eq(out.metadata, "again");
	cr_assert_eq(sl_offsets_view_get(v, "h", "orders", 0, &out), SL_OK);
	cr_assert_eq(out.offset, 30);
	cr_assert_eq(sl_offsets_view_get(v, "g", "orders", 2, &out), SL_ENOT_FOUND);
	cr_assert_eq(sl_offsets_view_get(v, "g", "audit", 0, &out), SL_ENOT_FOUND);
	/* A tombstone removes one key. */
	struct sl_offsets_key k = { "g", "orders", 1, 6, 1 };
	uint8_t *kb;
	size_t kl;
	cr_assert_eq(sl_offsets_key_encode(&k, &kb, &kl), SL_OK);
	cr_assert_eq(sl_offsets_view_apply(v, kb, kl, NULL, 0), SL_OK);
	cr_assert_eq(sl_offsets_view_get(v, "g", "orders", 1, &out), SL_ENOT_FOUND);
	cr_assert_eq(sl_offsets_view_count(v), 2);
	/* A bad value changes nothing. */
	const uint8_t junk[] = { 1, 2, 3 };
	cr_assert_eq(sl_offsets_view_apply(v, kb, kl, junk, sizeof(junk)), SL_EINVALID_RECORD);
	cr_assert_eq(sl_offsets_view_count(v), 2);
	free(kb);
	/* Many keys: the table grows and every one is still found. */
	for (uint32_t p = 0; p < 1000; p++)
		commit(v, "big", "t", p, p, "");
	for (uint32_t p = 0; p < 1000; p++) {
		cr_assert_eq(sl_offsets_view_get(v, "big", "t", p, &out), SL_OK);
		cr_assert_eq(out.offset, p);
	}
	cr_assert_eq(sl_offsets_view_count(v), 1002);
	sl_offsets_view_free(v);
}
