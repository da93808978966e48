/* See qenv.h. */
#include <string.h>

#include "qenv.h"

static void submit(struct sl_renv *e, struct sl_rwork *w)
{
	struct sl_qenv *env = (struct sl_qenv *)e;
	w->next = NULL;
	if (env->tail != NULL)
		env->tail->next = w;
	else
		env->head = w;
	env->tail = w;
}

static int64_t now_ms(struct sl_renv *e)
{
	return ((struct sl_qenv *)e)->now;
}

static int random_in(struct sl_renv *e, int min, int max)
{
	struct sl_qenv *env = (struct sl_qenv *)e;
	env->rng = env->rng * 6364136223846793005ull + 1442695040888963407ull;
	return min + (int)((env->rng >> 33) % (uint64_t)(max - min + 1));
}

void sl_qenv_init(struct sl_qenv *env, int64_t now_ms_, uint64_t seed)
{
	memset(env, 0, sizeof(*env));
	env->base.data = env;
	env->base.submit = submit;
	env->base.now_ms = now_ms;
	env->base.random = random_in;
	env->now = now_ms_;
	env->rng = seed;
}

bool sl_qenv_step(struct sl_qenv *env)
{
	struct sl_rwork *w = env->head;
	if (w == NULL)
		return false;
	env->head = w->next;
	if (env->head == NULL)
		env->tail = NULL;
	if (w->work != NULL)
		w->work(w);
	w->done(w);
	return true;
}

int sl_qenv_pump(struct sl_qenv *env)
{
	int n = 0;
	while (sl_qenv_step(env))
		n++;
	return n;
}
