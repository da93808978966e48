/* broker/: the client listener: accepts connections on the client port,
 * cuts the byte stream into frames (proto/frame.h) and hands each to the
 * API handlers (api.h), writing the responses back in order.
 *
 * Limits: a frame above max_frame_bytes closes its connection with a
 * logged reason (the stream cannot be resynced); a connection whose
 * unsent responses pass 16 MiB is not read until they drop below 4 MiB
 * (a client that sends without reading cannot grow the node's memory).
 *
 * Threads: the loop thread. */
#ifndef SL_BROKER_LISTENER_H
#define SL_BROKER_LISTENER_H

#include <uv.h>

#include "api.h"

struct sl_listener;

struct sl_listener_stats {
	uint64_t accepted, open, frames, closed_oversized;
};

/* Listens on host:port. node must outlive the listener. Returns SL_OK, or
 * SL_EIO / SL_EINVALID_ARGUMENT / SL_ENOMEM with the reason in errmsg. */
int sl_listener_start(uv_loop_t *loop, const char *host, unsigned port,
		      const struct sl_api_node *node, struct sl_listener **out, char *errmsg);

void sl_listener_get_stats(const struct sl_listener *l, struct sl_listener_stats *st);

/* Stops accepting and closes every connection; cb(arg) once all handles
 * are closed and l is freed. */
void sl_listener_close(struct sl_listener *l, void (*cb)(void *arg), void *arg);

#endif
