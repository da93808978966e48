/* broker/: the http listener (libmicrohttpd, on its own thread, idle in
 * epoll between requests): GET /healthz (200 while the process runs),
 * /readyz (200 once the node is ready, 503 with the reason before) and
 * /metrics (Prometheus text, every name prefixed sluice_).
 *
 * Threads: start and stop on the main thread; the requests are served on
 * libmicrohttpd's thread, which reads only the atomics below and the
 * published metrics text, under its lock. */
#ifndef SL_BROKER_HTTP_H
#define SL_BROKER_HTTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* What the loop publishes for the http thread. */
struct sl_http_status {
	uint64_t node_id;
	atomic_int ready;            /* 1: /readyz answers 200 */
	_Atomic(const char *) not_ready_why; /* static text, read when ready is 0 */
	atomic_uint_fast64_t started_ms; /* wall clock of the start */
	/* More /metrics text, rendered by the loop (sl_http_publish). */
	pthread_mutex_t mu;
	char *extra;
};

/* Sets up st's lock; st->extra starts empty. */
void sl_http_status_init(struct sl_http_status *st, uint64_t node_id, const char *not_ready_why);
void sl_http_status_destroy(struct sl_http_status *st);
/* Replaces the extra /metrics text with text (malloc'd; st takes it). */
void sl_http_publish(struct sl_http_status *st, char *text);

struct sl_http;

/* Listens on host:port. Returns SL_OK, or SL_EIO / SL_EINVALID_ARGUMENT
 * with the reason in errmsg (SL_ERRMSG_SIZE bytes). */
int sl_http_start(const char *host, unsigned port, struct sl_http_status *st, struct sl_http **out,
		  char *errmsg);
/* Stops listening, waits for requests in flight and frees h. */
void sl_http_stop(struct sl_http *h);

#endif
