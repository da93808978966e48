/* libFuzzer target for the client protocol's request path: frame
 * decoding (proto/frame.h) and request dispatch (broker/api.h).
 *
 * The input is a client's byte stream. Every whole frame in it is handed
 * to sl_api_handle, which must answer each with exactly one response
 * frame that decodes, carries the request's correlation id when the
 * request's envelope decoded, and an error code from the table (or 0).
 * The stream ends at the first incomplete or oversized frame, as the
 * connection would. LeakSanitizer checks that nothing leaks.
 *
 * Seeds: tests/fuzz/corpus/api/.
 *   fuzz_api -max_total_time=60 /tmp/corpus-api tests/fuzz/corpus/api */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                           \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: invariant failed: %s\n",     \
				__FILE__, __LINE__, #cond);                   \
			abort();                                              \
		}                                                             \
	} while (0)

struct expect {
	int replies;
	bool know_corr;
	uint32_t corr;
};

static void on_reply(void *arg, uint8_t *head, size_t head_len, const struct iovec *seg,
		     size_t nseg)
{
	struct expect *e = arg;
	CHECK(nseg == 0 && seg == NULL);
	e->replies++;
	size_t flen;
	CHECK(sl_frame_peek(head, head_len, 1u << 30, &flen) == SL_OK && flen == head_len);
	static struct sl_frame f;
	uint32_t corr;
	char why[SL_ERRMSG_SIZE];
	CHECK(sl_frame_decode(head, head_len, NULL, &f, &corr, why) == SL_OK);
	if (e->know_corr)
		CHECK(f.env->correlation_id == e->corr);
	CHECK(f.env->error_code == 0 || strcmp(sl_err_name(f.env->error_code), "UNKNOWN_CODE") != 0);
	sluice__envelope__free_unpacked(f.env, NULL);
	free(head);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct sl_api_node node = { .node_id = 1, .max_frame_bytes = 1 << 20 };
	static struct sl_frame probe;
	size_t off = 0, flen;
	while (sl_frame_peek(data + off, size - off, node.max_frame_bytes, &flen) == SL_OK) {
		struct expect e = { 0 };
		char why[SL_ERRMSG_SIZE];
		uint32_t corr;
		if (sl_frame_decode(data + off, flen, NULL, &probe, &corr, why) == SL_OK) {
			sluice__envelope__free_unpacked(probe.env, NULL);
			e.know_corr = true;
			e.corr = corr;
		}
		CHECK(sl_api_handle(&node, data + off, flen, on_reply, &e) == SL_OK);
		CHECK(e.replies == 1);
		off += flen;
	}
	return 0;
}
