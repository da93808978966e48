/* Services on the I/O thread: the producer and the consumer (internal.h).
 * Each has a wake-up (any thread), a timer and the metadata's kicks, all
 * calling its kick on the loop. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <time.h>

#include "internal.h"

uint64_t cl_mono_ms(void)
{
	return uv_hrtime() / 1000000u;
}

bool cl_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, uint64_t deadline)
{
	if (deadline == UINT64_MAX) {
		pthread_cond_wait(cond, mu);
		return true;
	}
	uint64_t now = cl_mono_ms();
	if (now >= deadline)
		return false;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + (deadline - now) * 1000000u;
	ts.tv_sec += (time_t)(ns / 1000000000u);
	ts.tv_nsec = (long)(ns % 1000000000u);
	pthread_cond_timedwait(cond, mu, &ts);
	return true;
}

void cl_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
}

static void on_wake(uv_async_t *a)
{
	struct cl_service *svc = a->data;
	svc->kick(svc);
}

static void on_timer(uv_timer_t *t)
{
	struct cl_service *svc = t->data;
	svc->kick(svc);
}

static void start_on_loop(void *arg, struct cl_op *op)
{
	struct cl_service *svc = arg;
	uv_async_init(&svc->cl->loop, &svc->wake, on_wake);
	uv_timer_init(&svc->cl->loop, &svc->timer);
	svc->wake.data = svc->timer.data = svc;
	cl_service_add(svc->cl, svc);
	cl_ok(op);
}

int cl_service_start(sluice_client_t *cl, struct cl_service *svc,
		     void (*kick)(struct cl_service *svc))
{
	svc->cl = cl;
	svc->kick = kick;
	return cl_run(cl, start_on_loop, svc);
}

void cl_service_wake(struct cl_service *svc)
{
	uv_async_send(&svc->wake);
}

void cl_service_arm(struct cl_service *svc, uint64_t at)
{
	/* At least 1 ms: a timer started with 0 inside a timer callback
	 * runs again in the same pass of the loop (libuv's clock does not
	 * move within it), and one that keeps doing so never lets the loop
	 * read its sockets. */
	uint64_t now = cl_mono_ms();
	uv_timer_start(&svc->timer, on_timer, at > now + 1 ? at - now : 1, 0);
}

static void handle_closed(uv_handle_t *h)
{
	struct cl_service *svc = h->data;
	if (++svc->closed == 2)
		cl_ok(svc->close_op);
}

void cl_service_stop(struct cl_service *svc, struct cl_op *op)
{
	cl_service_remove(svc->cl, svc);
	svc->close_op = op;
	uv_close((uv_handle_t *)&svc->wake, handle_closed);
	uv_close((uv_handle_t *)&svc->timer, handle_closed);
}
