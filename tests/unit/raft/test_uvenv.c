/* The backend on a libuv loop with disk work on the thread pool: one
 * libraft node on the real file system commits a stream of batches. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "batch.h"
#include "rio.h"
#include "testfsm.h"
#include "testlib.h"
#include "uvenv.h"

static uv_loop_t loop;
static struct sl_uvenv env;
static struct raft_io io;
static struct raft r;
static uv_timer_t ticker, deadline;
static uint64_t applied;
static int acked, closed;
static bool timed_out;


static void on_tick(uv_timer_t *t)
{
	(void)t;
	sl_rio_tick(&io);
}

static void on_deadline(uv_timer_t *t)
{
	(void)t;
	timed_out = true;
	uv_stop(&loop);
}

static void on_apply(struct raft_apply *req, int status, void *result)
{
	(void)result;
	cr_assert_eq(status, 0);
	free(req);
	if (++acked == 200)
		uv_stop(&loop);
}

static void on_close(struct raft *rr)
{
	(void)rr;
	closed = 1;
}

static struct raft_buffer batch(void)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	char val[100];
	memset(val, 'v', sizeof(val));
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(sl_batch_builder_add(&b, 1, NULL, -1, val, sizeof(val), NULL, 0), SL_OK);
	const uint8_t *bytes;
	size_t len;
	cr_assert_eq(sl_batch_builder_finish(&b, &bytes, &len), SL_OK);
	struct raft_buffer buf = { raft_malloc(len), len };
	memcpy(buf.base, bytes, len);
	sl_batch_builder_free(&b);
	/* The leader stamps the offset the entry will take and its term. */
	sl_batch_stamp(buf.base, sl_rio_next_offset(&io), (int32_t)r.current_term);
	return buf;
}

Test(uvenv, one_node_commits_on_the_thread_pool, .timeout = 60)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/g1", tl_tmpdir());
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(sl_uvenv_init(&env, &loop), 0);
	struct sl_rio_config cfg = { .dir = dir, .group = 1 };
	sl_log_config_init(&cfg.log);
	cr_assert_eq(sl_rio_init(&io, &cfg, NULL, &env.base, NULL, NULL, NULL), SL_OK);
	struct raft_fsm fsm;
	tl_fsm_init(&fsm, &applied);
	cr_assert_eq(raft_init(&r, &io, &fsm, 1, "n1"), 0);
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	raft_configuration_add(&conf, 1, "n1", RAFT_VOTER);
	cr_assert_eq(raft_bootstrap(&r, &conf), 0, "%s", raft_errmsg(&r));
	raft_configuration_close(&conf);
	cr_assert_eq(raft_start(&r), 0, "%s", raft_errmsg(&r));
	uv_timer_init(&loop, &ticker);
	uv_timer_start(&ticker, on_tick, 10, 10);
	uv_timer_init(&loop, &deadline);
	uv_timer_start(&deadline, on_deadline, 30000, 0);
	/* Become leader and let the election barrier commit. */
	while (!sl_rio_leader_ready(&io) && !timed_out)
		uv_run(&loop, UV_RUN_ONCE);
	cr_assert(!timed_out, "no leader");
	/* 200 batches proposed back to back: they are group-committed. */
	for (int i = 0; i < 200; i++) {
		struct raft_apply *req = malloc(sizeof(*req));
		struct raft_buffer b = batch();
		cr_assert_eq(raft_apply(&r, req, &b, 1, on_apply), 0);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert(!timed_out, "only %d of 200 committed", acked);
	cr_assert_eq(acked, 200);
	cr_assert_eq(applied, 200);
	cr_assert_eq(sl_log_durable_offset(sl_rio_log(&io)), 2 + 200 * 100);
	uv_timer_stop(&ticker);
	uv_timer_stop(&deadline);
	raft_close(&r, on_close);
	while (!closed)
		uv_run(&loop, UV_RUN_ONCE);
	sl_uvenv_close(&env, NULL);
	uv_close((uv_handle_t *)&ticker, NULL);
	uv_close((uv_handle_t *)&deadline, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
}
