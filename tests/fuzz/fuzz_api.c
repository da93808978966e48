/* libFuzzer target for the client protocol's request path: frame
 * decoding (proto/frame.h) and request dispatch (broker/api.h).
 *
 * The input is a client's byte stream. Every whole frame in it is handed
 * to sl_api_handle of a node that has joined a cluster of two nodes with
 * two topics (a controller fed those entries directly, without Raft), so
 * that every handler runs, not only the dispatch; which must answer each with exactly one response
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
#include "batch.h"
#include "controller.h"
#include "frame.h"
#include "meta.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


struct expect {
	int replies;
	bool know_corr;
	uint32_t corr;
};

static void on_reply(void *arg, uint8_t *head, size_t head_len, const struct sl_api_data *data)
{
	struct expect *e = arg;
	e->replies++;
	/* The frame: head, then the data segments. */
	size_t total = head_len;
	for (size_t i = 0; data != NULL && i < data->nseg; i++)
		total += data->seg[i].iov_len;
	uint8_t *whole = head != NULL ? malloc(total) : NULL;
	if (whole != NULL) {
		memcpy(whole, head, head_len);
		size_t at = head_len;
		for (size_t i = 0; data != NULL && i < data->nseg; i++) {
			if (data->seg[i].iov_len > 0) /* an empty one may have no base */
				memcpy(whole + at, data->seg[i].iov_base, data->seg[i].iov_len);
			at += data->seg[i].iov_len;
		}
	}
	if (data != NULL && data->release != NULL)
		data->release(data->release_arg);
	free(head);
	if (whole == NULL) /* no response (a produce with acks=none), or no memory */
		return;
	size_t flen;
	CHECK(sl_frame_peek(whole, total, 1u << 30, &flen) == SL_OK && flen == total);
	static struct sl_frame f;
	uint32_t corr;
	char why[SL_ERRMSG_SIZE];
	CHECK(sl_frame_decode(whole, total, NULL, &f, &corr, why) == SL_OK);
	if (e->know_corr)
		CHECK(f.env->correlation_id == e->corr);
	CHECK(f.env->error_code == 0 || strcmp(sl_err_name(f.env->error_code), "UNKNOWN_CODE") != 0);
	sluice__envelope__free_unpacked(f.env, NULL);
	free(whole);
}

/* Applies one meta command as group 0's entry at index. */
static void apply(struct sl_controller *c, uint64_t index, uint8_t *cmd, size_t len)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	const uint8_t *bytes;
	size_t blen;
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	CHECK(sl_batch_builder_add(&b, 0, NULL, -1, cmd, (int32_t)len, NULL, 0) == SL_OK);
	CHECK(sl_batch_builder_finish(&b, &bytes, &blen) == SL_OK);
	struct raft_buffer buf = { .base = (void *)bytes, .len = blen };
	sl_controller_apply(c, SL_CONTROLLER_GROUP, index, &buf);
	sl_batch_builder_free(&b);
	free(cmd);
}

/* Node 1, joined: two registered nodes, topics "t" (3 partitions, RF 2,
 * led by node 1) and "u". */
static struct sl_controller *joined_controller(void)
{
	static uv_loop_t loop;
	CHECK(uv_loop_init(&loop) == 0);
	struct sl_meta_node n1 = { .id = 1, .uuid = "0f8fad5b-d9cb-469f-a165-70867728950e",
				   .host = "127.0.0.1", .client_port = 9092, .peer_port = 9093,
				   .alive = true };
	struct sl_meta_node n2 = n1;
	n2.id = 2;
	memcpy(n2.uuid, "6940873f-03ff-43ef-8470-531f2f1789d5", 37);
	n2.client_port = 9192;
	struct sl_controller *c;
	CHECK(sl_controller_init(&c, &loop, &n1, 200, 1000) == SL_OK);
	uint64_t voters[] = { 1 };
	CHECK(sl_controller_attach(c, NULL, NULL, voters, 1, SL_CONTROLLER_GROUP, NULL) == SL_OK);
	uint8_t *cmd;
	size_t len;
	uint64_t i = 1;
	struct sl_meta_topic_config cfg = { 0 };
	CHECK(sl_meta_cmd_init_cluster("7b516e3c-a552-420a-bb14-90670b1a4174", &cmd, &len) == SL_OK);
	apply(c, ++i, cmd, len);
	CHECK(sl_meta_cmd_register_node(&n1, &cmd, &len) == SL_OK);
	apply(c, ++i, cmd, len);
	CHECK(sl_meta_cmd_register_node(&n2, &cmd, &len) == SL_OK);
	apply(c, ++i, cmd, len);
	CHECK(sl_meta_cmd_create_topic("t", 3, 2, &cfg, &cmd, &len) == SL_OK);
	apply(c, ++i, cmd, len);
	CHECK(sl_meta_cmd_create_topic("u", 1, 1, &cfg, &cmd, &len) == SL_OK);
	apply(c, ++i, cmd, len);
	const struct sl_meta_topic *t = sl_meta_topic(sl_controller_meta(c), "t");
	CHECK(t != NULL);
	struct sl_meta_leader_report r = { .group = t->parts[0].group, .leader = 1, .term = 2,
					   .nisr = 2, .isr = { 1, 2 } };
	CHECK(sl_meta_cmd_report_leaders(&r, 1, &cmd, &len) == SL_OK);
	apply(c, ++i, cmd, len);
	const char *why;
	CHECK(sl_controller_ready(c, &why));
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sl_api_node node = { .node_id = 1, .max_frame_bytes = 1 << 20 };
	if (node.ctl == NULL)
		node.ctl = joined_controller();
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
