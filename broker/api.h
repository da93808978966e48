/* broker/: the client protocol's requests, handled (proto/frame.h,
 * proto/sluice.proto), independent of the socket they came on so that the
 * fuzzer drives the same code.
 *
 * Every complete frame gets exactly one response frame, with the
 * request's correlation id and API key: the API's own response, or an
 * envelope carrying only an error (INVALID_REQUEST for a frame that does
 * not decode, UNSUPPORTED_VERSION for an API or version this node does
 * not serve) and a message saying what was wrong. Nothing changes on a
 * refused request.
 *
 * Threads: the loop thread. */
#ifndef SL_BROKER_API_H
#define SL_BROKER_API_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

#include <uv.h>

#include "sluice.pb-c.h"

struct sl_controller;
struct sl_coord;
struct sl_parts;

/* What the handlers read of the node. */
struct sl_api_node {
	uint64_t node_id;
	uint32_t max_frame_bytes;
	uv_loop_t *loop;
	struct sl_controller *ctl; /* NULL: no metadata (every request NOT_READY) */
	struct sl_parts *parts;    /* NULL: this node leads no partition */
	struct sl_coord *coord;    /* NULL: no group is coordinated here */
};

/* A response's data segments (record batches), and what frees them once
 * the connection wrote them or dropped them. */
struct sl_api_data {
	const struct iovec *seg; /* copied by the callee before it returns */
	size_t nseg;
	void (*release)(void *arg); /* NULL: nothing to free */
	void *release_arg;
};

/* Hands a response frame to the connection: head (malloc'd, now the
 * callee's to free) then data's segments (data NULL: none). head NULL:
 * the request gets no response frame (a produce with acks=none); data's
 * release still runs. */
typedef void (*sl_api_reply_fn)(void *arg, uint8_t *head, size_t head_len,
				const struct sl_api_data *data);

/* Handles one whole frame (as sl_frame_peek measured it) and replies
 * through reply exactly once: before it returns, or later for a request
 * that waits (CreateTopics, DeleteTopics on the controller; Produce on
 * its acknowledgement; Fetch on data); arg must stay valid until then.
 * The frame's bytes are needed only during the call. Returns SL_OK, or SL_ENOMEM when no response
 * could be built (reply was not called: the connection must close). */
int sl_api_handle(const struct sl_api_node *node, const uint8_t *frame, size_t len,
		  sl_api_reply_fn reply, void *arg);

/* Prometheus text: requests and latency per API. Loop thread. */
void sl_api_metrics(uint64_t node_id, FILE *out);

/* Ends every CreateTopics still waiting for leaders and every Fetch
 * waiting for data, each answered with what it has (the node is
 * stopping). */
void sl_api_stop_waiting(void);

/* For the handlers (api.c, data.c): a response envelope for a request, and
 * sending one (SL_OK, or SL_ENOMEM and reply was not called; data's
 * release then has not run either). */
void sl_api_response_of(Sluice__Envelope *env, const Sluice__Envelope *req);
int sl_api_send(Sluice__Envelope *env, const struct sl_api_data *data, sl_api_reply_fn reply,
		void *arg);

#endif
