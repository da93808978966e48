/* libFuzzer target for the controller's state machine (broker/meta.h):
 * metadata log entries and snapshots as a damaged disk or a bug could
 * leave them.
 *
 * The input is split at its first byte's value into a snapshot part and
 * a sequence of commands (each a 2-byte length, then the bytes). The
 * snapshot is restored over a state with two nodes and a topic: on
 * failure the state is unchanged; on success its snapshot restores again
 * to the same bytes. Each command is applied: SL_OK or
 * SL_EINVALID_RECORD (SL_ENOMEM aside), and the state's snapshot always
 * restores to an equal state. LeakSanitizer checks that nothing leaks.
 *
 * Seeds: tests/fuzz/corpus/meta/.
 *   fuzz_meta -max_total_time=60 /tmp/corpus-meta tests/fuzz/corpus/meta */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void apply_ok(struct sl_meta *m, uint8_t *buf, size_t len)
{
	struct sl_meta_result res;
	CHECK(sl_meta_apply(m, buf, len, &res) == SL_OK);
	free(buf);
}

static void base_state(struct sl_meta *m)
{
	sl_meta_init(m);
	for (uint64_t id = 1; id <= 2; id++) {
		struct sl_meta_node n = { .id = id, .client_port = 1, .peer_port = 2, .alive = true };
		snprintf(n.uuid, sizeof(n.uuid), "00000000-0000-4000-8000-00000000000%llu",
			 (unsigned long long)id);
		snprintf(n.host, sizeof(n.host), "h");
		uint8_t *buf;
		size_t len;
		CHECK(sl_meta_cmd_register_node(&n, &buf, &len) == SL_OK);
		apply_ok(m, buf, len);
	}
	uint8_t *buf;
	size_t len;
	CHECK(sl_meta_cmd_create_topic("t", 3, 2, NULL, &buf, &len) == SL_OK);
	apply_ok(m, buf, len);
}

/* The state's snapshot restores to the same bytes. */
static void check_round_trip(const struct sl_meta *m)
{
	uint8_t *a, *b;
	size_t la, lb;
	char errmsg[SL_ERRMSG_SIZE];
	CHECK(sl_meta_snapshot(m, &a, &la) == SL_OK);
	struct sl_meta copy;
	sl_meta_init(&copy);
	int rrv = sl_meta_restore(&copy, a, la, errmsg);
	if (rrv != SL_OK)
		fprintf(stderr, "restore: %s\n", errmsg);
	CHECK(rrv == SL_OK);
	CHECK(sl_meta_snapshot(&copy, &b, &lb) == SL_OK);
	CHECK(la == lb && memcmp(a, b, la) == 0);
	free(a);
	free(b);
	sl_meta_free(&copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t cut = 1 + (size_t)data[0] * (size - 1) / 255;
	struct sl_meta m;
	base_state(&m);
	uint8_t *before;
	size_t blen;
	CHECK(sl_meta_snapshot(&m, &before, &blen) == SL_OK);
	char errmsg[SL_ERRMSG_SIZE];
	int rv = sl_meta_restore(&m, data + 1, cut - 1, errmsg);
	CHECK(rv == SL_OK || rv == SL_EINVALID_RECORD || rv == SL_ENOMEM);
	if (rv != SL_OK) {
		uint8_t *after;
		size_t alen;
		CHECK(sl_meta_snapshot(&m, &after, &alen) == SL_OK);
		CHECK(alen == blen && memcmp(before, after, blen) == 0);
		free(after);
	}
	free(before);
	check_round_trip(&m);
	for (size_t off = cut; off + 2 <= size;) {
		size_t len = (size_t)data[off] << 8 | data[off + 1];
		off += 2;
		if (len > size - off)
			len = size - off;
		struct sl_meta_result res;
		rv = sl_meta_apply(&m, data + off, len, &res);
		CHECK(rv == SL_OK || rv == SL_EINVALID_RECORD || rv == SL_ENOMEM);
		off += len;
	}
	check_round_trip(&m);
	sl_meta_free(&m);
	return 0;
}
