/* The backend's environment on a libuv loop. See uvenv.h. */
#include <stdlib.h>

#include "uvenv.h"

struct uvwork {
	uv_work_t req;
	struct sl_rwork *w;
	struct sl_uvenv *env;
};

static void pool_work(uv_work_t *req)
{
	struct uvwork *u = req->data;
	u->w->work(u->w);
}

static void pool_done(uv_work_t *req, int status)
{
	struct uvwork *u = req->data;
	struct sl_rwork *w = u->w;
	(void)status; /* never cancelled: nothing calls uv_cancel */
	u->env->pending--;
	free(u);
	w->done(w);
}

static void drain(uv_idle_t *idle)
{
	struct sl_uvenv *env = idle->data;
	/* Only what is queued now: work queued meanwhile waits a turn, so
	 * the loop polls for I/O in between. */
	struct sl_rwork *w = env->head, *last = env->tail;
	env->head = env->tail = NULL;
	uv_idle_stop(idle);
	while (w != NULL) {
		struct sl_rwork *next = w == last ? NULL : w->next;
		w->done(w);
		w = next;
	}
}

static void submit(struct sl_renv *base, struct sl_rwork *w)
{
	struct sl_uvenv *env = (struct sl_uvenv *)base;
	if (w->work != NULL) {
		struct uvwork *u = malloc(sizeof(*u));
		if (u != NULL) {
			u->w = w;
			u->env = env;
			u->req.data = u;
			if (uv_queue_work(env->loop, &u->req, pool_work, pool_done) == 0) {
				env->pending++;
				return;
			}
			free(u);
		}
		/* No memory for the pool request: do the work here. */
		w->work(w);
		w->work = NULL;
	}
	w->next = NULL;
	if (env->tail != NULL)
		env->tail->next = w;
	else
		env->head = w;
	env->tail = w;
	if (!uv_is_active((uv_handle_t *)&env->idle))
		uv_idle_start(&env->idle, drain);
}

static int64_t now_ms(struct sl_renv *base)
{
	(void)base;
	return (int64_t)(uv_hrtime() / 1000000);
}

static int random_in(struct sl_renv *base, int min, int max)
{
	struct sl_uvenv *env = (struct sl_uvenv *)base;
	uint64_t x = env->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	env->rng = x;
	return min + (int)(x % (uint64_t)(max - min + 1));
}

int sl_uvenv_init(struct sl_uvenv *env, uv_loop_t *loop)
{
	*env = (struct sl_uvenv){ .loop = loop };
	env->base.data = env;
	env->base.submit = submit;
	env->base.now_ms = now_ms;
	env->base.random = random_in;
	env->rng = uv_hrtime() | 1;
	int rv = uv_idle_init(loop, &env->idle);
	env->idle.data = env;
	return rv;
}

void sl_uvenv_close(struct sl_uvenv *env, uv_close_cb cb)
{
	env->closing = true;
	uv_close((uv_handle_t *)&env->idle, cb);
}
