/* The backend's environment on a libuv loop: disk work runs on libuv's
 * thread pool (one item per group at a time, so groups sync in parallel
 * and each group's writes stay in order), everything else on the loop in
 * submission order. Loop thread only. */
#ifndef SL_RAFT_UVENV_H
#define SL_RAFT_UVENV_H

#include <uv.h>

#include "rio.h"

struct sl_uvenv {
	struct sl_renv base; /* pass &env->base to sl_rio_init */
	uv_loop_t *loop;
	uv_idle_t idle;      /* drains the queue of loop-only items */
	struct sl_rwork *head, *tail;
	uint64_t rng;
	unsigned pending;    /* thread-pool items not yet done */
	bool closing;
};

/* Returns 0 or a libuv error. */
int sl_uvenv_init(struct sl_uvenv *env, uv_loop_t *loop);
/* Closes the idle handle; call once every group using it is closed and
 * the loop has run their callbacks. cb (may be NULL) receives the idle
 * handle once env may be freed. */
void sl_uvenv_close(struct sl_uvenv *env, uv_close_cb cb);

#endif
