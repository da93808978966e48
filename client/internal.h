/* client/: what the files of libsluice share. Not installed.
 *
 * The I/O thread runs one libuv loop: connections to brokers (one per
 * address, opened on demand), calls (a request frame and the callback for
 * its response), and operations (an admin call's steps). User threads
 * hand operations over through a locked queue and an async handle; every
 * other structure belongs to the loop thread. */
#ifndef SL_CLIENT_INTERNAL_H
#define SL_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "errors.h"
#include "sluice.h"
#include "sluice.pb-c.h"

#define CL_MAX_BOOTSTRAP 64
#define CL_HOST_MAX 256

struct cl_addr {
	char host[CL_HOST_MAX];
	int port;
};

struct sluice_conf {
	struct cl_addr boot[CL_MAX_BOOTSTRAP];
	size_t nboot;
	char client_id[128];
	unsigned request_timeout_ms;  /* an operation's deadline, retries included */
	unsigned socket_timeout_ms;   /* one call's answer (past what the server may hold it) */
	uint32_t max_response_bytes;  /* a bigger response frame closes its connection */
};

/* Parses "host:port[,host:port...]" into out; SL_OK or
 * SL_EINVALID_ARGUMENT with errmsg. */
int cl_parse_bootstrap(const char *text, struct cl_addr *out, size_t cap, size_t *n,
		       char *errmsg, size_t errlen);

struct cl_conn;
struct cl_op;

/* A response (NULL with err != SL_OK: errmsg says why; the call failed
 * before a response came). resp is freed after the callback returns. */
typedef void (*cl_call_fn)(struct cl_op *op, int err, const char *errmsg, Sluice__Envelope *resp);

/* An operation: an admin call's state, driven by step() on the loop
 * thread whenever it is due and waits for no response. */
struct cl_op {
	sluice_client_t *cl;
	struct cl_op *next;
	void (*step)(struct cl_op *op);
	void (*free_state)(struct cl_op *op);
	uint64_t deadline;   /* loop ms */
	uint64_t next_at;    /* when step() is due */
	unsigned backoff_ms;
	unsigned waiting;    /* calls in flight */
	unsigned rotate;     /* bootstrap address to try next */
	unsigned tick_no;    /* the last tick that looked at it */
	int last_err;
	char last_msg[SL_ERRMSG_SIZE];
	sluice_report_t *rep;
	sluice_done_cb cb;
	void *opaque;
	/* Synchronous callers wait on done under the client's mutex. */
	bool sync, done;
	int result;
	pthread_cond_t cond;
	void *state;         /* the admin call's own */
};

struct sluice_client {
	struct sluice_conf conf;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t wake;
	uv_timer_t tick;
	pthread_mutex_t mu;
	struct cl_op *queue;  /* submitted, not yet taken by the loop (mu) */
	bool closing;         /* (mu) */
	bool shutting;        /* loop side of closing: no new calls */
	struct cl_op *ops;    /* running on the loop */
	struct cl_conn *conns;
	uint32_t next_corr;
	unsigned rotate;      /* the bootstrap address the next op starts at */
	unsigned tick_no;
	unsigned admins;      /* (mu) */
};

/* Loop thread: the loop's clock. */
uint64_t cl_now(sluice_client_t *cl);

/* Submits op (any thread): it starts on the loop; a synchronous op is
 * waited for here and its result returned (op freed, *out set). */
int cl_submit(sluice_client_t *cl, struct cl_op *op, sluice_report_t **out);

/* Loop thread: sends env to addr (a connection opened if needed); done
 * runs once, with the response or an error: SL_EREQUEST_TIMED_OUT when
 * no answer came within socket.timeout.ms plus hold_ms (how long the
 * server may hold this request on purpose, such as CreateTopics'
 * timeout_ms), or by the op's deadline, whichever is first. */
void cl_call(struct cl_op *op, const struct cl_addr *addr, Sluice__Envelope *env,
	     unsigned hold_ms, cl_call_fn done);

/* Loop thread: the op failed in a way worth retrying: step again after a
 * backoff (100 ms doubling to 1 s), or, past the deadline, finish with
 * the last error. */
void cl_retry(struct cl_op *op, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Loop thread: ends op with err (SL_OK or not) and a message. */
void cl_finish(struct cl_op *op, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Loop thread: ends op successfully. */
void cl_ok(struct cl_op *op);
/* admin.c: records the outcome in a report. */
void cl_report_error(sluice_report_t *r, int err, const char *msg);

/* The next bootstrap address to ask, rotating. */
const struct cl_addr *cl_any(struct cl_op *op);

#endif
