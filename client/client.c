/* The client's I/O thread: connections, calls, operations. See
 * internal.h. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "internal.h"

#define TICK_MS 10
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
/* API keys a node's ApiVersions may list; a larger key is not served. */
#define MAX_API 64

/* A connection resolves, connects, then asks ApiVersions (HANDSHAKE)
 * before any call goes out, so that a call the node does not serve, or
 * one above its max_frame_bytes, fails here with a clear error rather
 * than on the server or by closing the connection. */
enum { C_RESOLVING, C_CONNECTING, C_HANDSHAKE, C_READY, C_CLOSING };

/* A request sent (or waiting to be) on a connection. */
struct cl_call {
	struct cl_call *next;
	struct cl_op *op;
	cl_call_fn done;      /* or: */
	cl_data_fn done_data;
	void *arg;
	bool oneway;          /* no response comes: ends once written */
	uint32_t corr;
	uint32_t api, version;
	uint64_t started, deadline; /* loop ms */
	uint8_t *frame; /* until written */
	size_t len;
};

struct cl_conn {
	sluice_client_t *cl;
	struct cl_conn *next;
	struct cl_addr addr;
	int state;
	uv_getaddrinfo_t gai;
	uv_connect_t creq;
	uv_tcp_t tcp;
	struct cl_call *calls; /* in flight, and (frame != NULL) waiting to be written */
	uint8_t *buf;
	size_t len, cap;
	/* From the node's ApiVersions (HANDSHAKE on). */
	uint32_t hs_corr;
	uint32_t max_request; /* the node's max_frame_bytes */
	struct {
		bool served;
		uint32_t min, max;
	} api[MAX_API];
};

struct wreq {
	uv_write_t req;
	uint8_t *frame;
};

uint64_t cl_now(sluice_client_t *cl)
{
	return uv_now(&cl->loop);
}

static void on_tick(uv_timer_t *t);

/* ---- Calls ----------------------------------------------------------- */

static void call_end(struct cl_call *c, int err, const char *msg, Sluice__Envelope *resp,
		     const struct sl_frame *f)
{
	struct cl_op *op = c->op;
	op->waiting--;
	op->cl->calls_out--;
	if (c->done_data != NULL)
		c->done_data(op, c->arg, err, msg, resp, f != NULL ? f->seg : NULL,
			     f != NULL ? f->nseg : 0);
	else
		c->done(op, err, msg, resp);
	free(c->frame);
	free(c);
}

static void conn_closed(uv_handle_t *h)
{
	struct cl_conn *c = h->data;
	free(c->buf);
	free(c);
}

/* Ends every call on c with err and closes it. */
static void conn_fail(struct cl_conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conn_fail(struct cl_conn *c, int err, const char *fmt, ...)
{
	if (c->state == C_CLOSING)
		return;
	char msg[SL_ERRMSG_SIZE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct cl_conn **pp = &c->cl->conns;
	while (*pp != c)
		pp = &(*pp)->next;
	*pp = c->next;
	int was = c->state;
	c->state = C_CLOSING;
	while (c->calls != NULL) {
		struct cl_call *k = c->calls;
		c->calls = k->next;
		call_end(k, err, msg, NULL, NULL);
	}
	if (was == C_RESOLVING) {
		/* Freed by the resolver's callback, which sees C_CLOSING. */
		uv_cancel((uv_req_t *)&c->gai);
		return;
	}
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_write(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct cl_conn *c = req->handle->data;
	free(w->frame);
	free(w);
	if (status != 0 && status != UV_ECANCELED)
		conn_fail(c, SL_EIO, "%s:%d: write: %s", c->addr.host, c->addr.port,
			  uv_strerror(status));
}

/* The first call not yet written, or NULL. */
static struct cl_call *unsent(struct cl_conn *c)
{
	struct cl_call *k = c->calls;
	while (k != NULL && k->frame == NULL)
		k = k->next;
	return k;
}

static void unlink_call(struct cl_conn *c, struct cl_call *k)
{
	struct cl_call **pp = &c->calls;
	while (*pp != k)
		pp = &(*pp)->next;
	*pp = k->next;
}

static bool write_frame(struct cl_conn *c, uint8_t *frame, size_t len)
{
	struct wreq *w = malloc(sizeof(*w));
	if (w == NULL) {
		free(frame);
		conn_fail(c, SL_ENOMEM, "out of memory");
		return false;
	}
	w->frame = frame;
	uv_buf_t b = uv_buf_init((char *)frame, (unsigned)len);
	int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (rv != 0) {
		free(w->frame);
		free(w);
		conn_fail(c, SL_EIO, "%s:%d: write: %s", c->addr.host, c->addr.port,
			  uv_strerror(rv));
		return false;
	}
	return true;
}

/* Writes every call not yet written; refuses here those the node would
 * refuse. A refused call's callback may add calls: start over each time. */
static void flush(struct cl_conn *c)
{
	struct cl_call *k;
	while (c->state == C_READY && (k = unsent(c)) != NULL) {
		char msg[SL_ERRMSG_SIZE];
		int err = SL_OK;
		if (k->api >= MAX_API || !c->api[k->api].served || k->version < c->api[k->api].min ||
		    k->version > c->api[k->api].max) {
			err = SL_EUNSUPPORTED_VERSION;
			snprintf(msg, sizeof(msg), "%.200s:%d does not serve API %u version %u",
				 c->addr.host, c->addr.port, k->api, k->version);
		} else if (k->len > c->max_request) {
			err = SL_EMESSAGE_TOO_LARGE;
			snprintf(msg, sizeof(msg),
				 "a request of %zu bytes is above the %u bytes %.120s:%d accepts",
				 k->len, c->max_request, c->addr.host, c->addr.port);
		}
		if (err != SL_OK) {
			unlink_call(c, k);
			call_end(k, err, msg, NULL, NULL);
			continue;
		}
		uint8_t *frame = k->frame;
		k->frame = NULL;
		if (!write_frame(c, frame, k->len))
			return;
		if (k->oneway) {
			unlink_call(c, k);
			call_end(k, SL_OK, "", NULL, NULL);
		}
	}
}

/* Asks the node what it serves; calls wait until it answered. */
static void handshake(struct cl_conn *c)
{
	sluice_client_t *cl = c->cl;
	char software[200];
	snprintf(software, sizeof(software), "libsluice %s (%s)", SLUICE_VERSION,
		 cl->conf.client_id);
	Sluice__ApiVersionsRequest req = SLUICE__API_VERSIONS_REQUEST__INIT;
	req.client_software = software;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__API_VERSIONS;
	env.body_case = SLUICE__ENVELOPE__BODY_API_VERSIONS_REQUEST;
	env.api_versions_request = &req;
	env.correlation_id = c->hs_corr = ++cl->next_corr;
	uint8_t *frame;
	size_t len;
	if (sl_frame_encode(&env, NULL, 0, &frame, &len) != SL_OK) {
		conn_fail(c, SL_ENOMEM, "out of memory");
		return;
	}
	c->state = C_HANDSHAKE;
	write_frame(c, frame, len);
}

static void handshake_done(struct cl_conn *c, const Sluice__Envelope *env)
{
	const Sluice__ApiVersionsResponse *r = env->api_versions_response;
	int err = env->error_code;
	const char *msg = env->error_message;
	if (err == SL_OK && r == NULL)
		err = SL_EINVALID_REQUEST, msg = "the answer to ApiVersions is another API's";
	if (err == SL_OK && r->error_code != 0)
		err = r->error_code, msg = r->error_message;
	if (err != SL_OK) {
		conn_fail(c, err, "%s:%d: ApiVersions: %s", c->addr.host, c->addr.port, msg);
		return;
	}
	for (size_t i = 0; i < r->n_apis; i++) {
		uint32_t key = (uint32_t)r->apis[i]->api_key;
		if (key < MAX_API) {
			c->api[key].served = true;
			c->api[key].min = r->apis[i]->min_version;
			c->api[key].max = r->apis[i]->max_version;
		}
	}
	c->max_request = r->max_frame_bytes != 0 ? r->max_frame_bytes : UINT32_MAX;
	c->state = C_READY;
	flush(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct cl_conn *c = h->data;
	(void)suggested;
	size_t want = c->len + 65536;
	size_t flen;
	if (c->len >= 4 &&
	    sl_frame_peek(c->buf, c->len, c->cl->conf.max_response_bytes, &flen) == SL_ENOT_FOUND &&
	    flen > want)
		want = flen; /* the whole frame in one buffer */
	if (want > c->cap) {
		uint8_t *nb = realloc(c->buf, want);
		if (nb == NULL) {
			*buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS: the read fails */
			return;
		}
		c->buf = nb;
		c->cap = want;
	}
	*buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* A whole response frame: its call ends. */
static void take_frame(struct cl_conn *c, const uint8_t *frame, size_t len)
{
	struct sl_frame *f = malloc(sizeof(*f));
	if (f == NULL) {
		conn_fail(c, SL_ENOMEM, "out of memory");
		return;
	}
	uint32_t corr = 0;
	char why[SL_ERRMSG_SIZE];
	int rv = sl_frame_decode(frame, len, NULL, f, &corr, why);
	if (rv != SL_OK) {
		free(f);
		conn_fail(c, SL_EINVALID_REQUEST, "%s:%d: a response does not decode: %s",
			  c->addr.host, c->addr.port, why);
		return;
	}
	Sluice__Envelope *env = f->env;
	if (c->state == C_HANDSHAKE) {
		free(f);
		if (env->correlation_id == c->hs_corr)
			handshake_done(c, env);
		else
			conn_fail(c, SL_EINVALID_REQUEST,
				  "%s:%d: an answer before the one to ApiVersions", c->addr.host,
				  c->addr.port);
		sluice__envelope__free_unpacked(env, NULL);
		return;
	}
	struct cl_call **pp = &c->calls;
	while (*pp != NULL && (*pp)->corr != env->correlation_id)
		pp = &(*pp)->next;
	if (*pp != NULL && atomic_load(&c->cl->drop_count) > 0 &&
	    (*pp)->api == atomic_load(&c->cl->drop_api)) {
		/* Test hook: the answer is lost; the call times out. */
		atomic_fetch_sub(&c->cl->drop_count, 1);
	} else if (*pp != NULL) { /* else its call timed out meanwhile */
		struct cl_call *k = *pp;
		*pp = k->next;
		call_end(k, SL_OK, "", env, f);
	}
	free(f);
	sluice__envelope__free_unpacked(env, NULL);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct cl_conn *c = s->data;
	(void)buf;
	if (n < 0) {
		conn_fail(c, SL_EIO, "%s:%d: %s", c->addr.host, c->addr.port,
			  n == UV_EOF ? "the broker closed the connection" : uv_strerror((int)n));
		return;
	}
	c->len += (size_t)n;
	size_t flen;
	int rv;
	uint32_t max = c->cl->conf.max_response_bytes;
	while ((rv = sl_frame_peek(c->buf, c->len, max, &flen)) == SL_OK) {
		take_frame(c, c->buf, flen);
		if (c->state == C_CLOSING)
			return;
		memmove(c->buf, c->buf + flen, c->len - flen);
		c->len -= flen;
	}
	if (rv == SL_EMESSAGE_TOO_LARGE)
		conn_fail(c, SL_EMESSAGE_TOO_LARGE,
			  "%s:%d: a response of %zu bytes is above max.response.bytes (%u)",
			  c->addr.host, c->addr.port, flen, max);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct cl_conn *c = req->data;
	if (c->state == C_CLOSING)
		return;
	if (status != 0) {
		conn_fail(c, SL_EIO, "%s:%d: connect: %s", c->addr.host, c->addr.port,
			  uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	int rv = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rv != 0) {
		conn_fail(c, SL_EIO, "%s:%d: read: %s", c->addr.host, c->addr.port, uv_strerror(rv));
		return;
	}
	handshake(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct cl_conn *c = req->data;
	if (c->state == C_CLOSING) {
		uv_freeaddrinfo(res);
		free(c->buf);
		free(c);
		return;
	}
	if (status != 0 || res == NULL) {
		uv_freeaddrinfo(res);
		/* No handle yet: fail the calls, then free directly. */
		c->state = C_CONNECTING;
		uv_tcp_init(&c->cl->loop, &c->tcp);
		conn_fail(c, SL_EIO, "%s:%d: resolve: %s", c->addr.host, c->addr.port,
			  uv_strerror(status));
		return;
	}
	c->state = C_CONNECTING;
	uv_tcp_init(&c->cl->loop, &c->tcp);
	c->creq.data = c;
	int rv = uv_tcp_connect(&c->creq, &c->tcp, res->ai_addr, on_connect);
	uv_freeaddrinfo(res);
	if (rv != 0)
		conn_fail(c, SL_EIO, "%s:%d: connect: %s", c->addr.host, c->addr.port,
			  uv_strerror(rv));
}

static struct cl_conn *conn_get(sluice_client_t *cl, const struct cl_addr *a)
{
	for (struct cl_conn *c = cl->conns; c != NULL; c = c->next)
		if (c->addr.port == a->port && strcmp(c->addr.host, a->host) == 0)
			return c;
	struct cl_conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->cl = cl;
	c->addr = *a;
	c->state = C_RESOLVING;
	c->tcp.data = c;
	c->gai.data = c;
	char port[16];
	snprintf(port, sizeof(port), "%d", a->port);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	if (uv_getaddrinfo(&cl->loop, &c->gai, on_resolved, a->host, port, &hints) != 0) {
		free(c);
		return NULL;
	}
	c->next = cl->conns;
	cl->conns = c;
	return c;
}

/* The frame of env with the data segments after its head, in one buffer:
 * the one copy of record data the client makes on the way out. */
static int encode(Sluice__Envelope *env, const struct iovec *seg, size_t nseg, uint8_t **frame,
		  size_t *len)
{
	uint8_t *head;
	size_t hlen;
	int rv = sl_frame_encode(env, seg, nseg, &head, &hlen);
	if (rv != SL_OK || nseg == 0) {
		*frame = head;
		*len = hlen;
		return rv;
	}
	size_t total = hlen;
	for (size_t i = 0; i < nseg; i++)
		total += seg[i].iov_len;
	uint8_t *f = realloc(head, total);
	if (f == NULL) {
		free(head);
		return SL_ENOMEM;
	}
	size_t at = hlen;
	for (size_t i = 0; i < nseg; i++) {
		memcpy(f + at, seg[i].iov_base, seg[i].iov_len);
		at += seg[i].iov_len;
	}
	*frame = f;
	*len = total;
	return SL_OK;
}

static void call_start(struct cl_op *op, const struct cl_addr *addr, Sluice__Envelope *env,
		       const struct iovec *seg, size_t nseg, unsigned hold_ms, bool oneway,
		       cl_call_fn done, cl_data_fn done_data, void *arg)
{
	sluice_client_t *cl = op->cl;
	if (cl->shutting) {
		if (done_data != NULL)
			done_data(op, arg, SL_ECANCELED, "the client is closing", NULL, NULL, 0);
		else
			done(op, SL_ECANCELED, "the client is closing", NULL);
		return;
	}
	struct cl_call *k = calloc(1, sizeof(*k));
	env->correlation_id = k != NULL ? ++cl->next_corr : 0;
	if (k == NULL) {
		if (done_data != NULL)
			done_data(op, arg, SL_ENOMEM, "out of memory", NULL, NULL, 0);
		else
			done(op, SL_ENOMEM, "out of memory", NULL);
		return;
	}
	op->waiting++;
	cl->calls_out++;
	k->op = op;
	k->done = done;
	k->done_data = done_data;
	k->arg = arg;
	k->oneway = oneway;
	k->corr = env->correlation_id;
	k->api = (uint32_t)env->api_key;
	k->version = env->api_version;
	k->started = cl_now(cl);
	k->deadline = k->started + cl->conf.socket_timeout_ms + hold_ms;
	if (k->deadline > op->deadline)
		k->deadline = op->deadline;
	int rv = encode(env, seg, nseg, &k->frame, &k->len);
	struct cl_conn *c = rv == SL_OK ? conn_get(cl, addr) : NULL;
	if (c == NULL) {
		call_end(k, rv != SL_OK ? rv : SL_ENOMEM,
			 rv != SL_OK ? "the request does not encode" : "out of memory", NULL, NULL);
		return;
	}
	/* In the order of the calls: a producer's requests for one
	 * partition must go out in the order it made them. */
	struct cl_call **pp = &c->calls;
	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = k;
	if (!uv_is_active((uv_handle_t *)&cl->tick))
		uv_timer_start(&cl->tick, on_tick, TICK_MS, TICK_MS);
	if (c->state == C_READY)
		flush(c);
}

void cl_call(struct cl_op *op, const struct cl_addr *addr, Sluice__Envelope *env,
	     unsigned hold_ms, cl_call_fn done)
{
	call_start(op, addr, env, NULL, 0, hold_ms, false, done, NULL, NULL);
}

void cl_call_data(struct cl_op *op, const struct cl_addr *addr, Sluice__Envelope *env,
		  const struct iovec *seg, size_t nseg, unsigned hold_ms, bool oneway,
		  cl_data_fn done, void *arg)
{
	call_start(op, addr, env, seg, nseg, hold_ms, oneway, NULL, done, arg);
}

/* ---- Operations -------------------------------------------------------- */

const struct cl_addr *cl_any(struct cl_op *op)
{
	const struct sluice_conf *cf = &op->cl->conf;
	return &cf->boot[op->rotate++ % cf->nboot];
}

static void op_free(struct cl_op *op)
{
	if (op->free_state != NULL)
		op->free_state(op);
	pthread_cond_destroy(&op->cond);
	free(op);
}

static void finish(struct cl_op *op, int err, const char *msg)
{
	sluice_client_t *cl = op->cl;
	struct cl_op **pp = &cl->ops;
	while (*pp != NULL && *pp != op)
		pp = &(*pp)->next;
	if (*pp == op)
		*pp = op->next;
	if (op->rep != NULL)
		cl_report_error(op->rep, err, msg);
	if (!op->sync) {
		if (op->cb != NULL)
			op->cb(op->opaque, err, op->rep);
		sluice_report_destroy(op->rep);
		op_free(op);
		return;
	}
	pthread_mutex_lock(&cl->mu);
	op->result = err;
	op->done = true;
	pthread_cond_signal(&op->cond);
	pthread_mutex_unlock(&cl->mu);
}

void cl_ok(struct cl_op *op)
{
	finish(op, SL_OK, "");
}

void cl_finish(struct cl_op *op, int err, const char *fmt, ...)
{
	char msg[SL_ERRMSG_SIZE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	finish(op, err, msg);
}

void cl_retry(struct cl_op *op, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(op->last_msg, sizeof(op->last_msg), fmt, ap);
	va_end(ap);
	op->last_err = err;
	uint64_t now = cl_now(op->cl);
	op->backoff_ms = op->backoff_ms == 0 ? BACKOFF_MIN_MS : op->backoff_ms * 2;
	if (op->backoff_ms > BACKOFF_MAX_MS)
		op->backoff_ms = BACKOFF_MAX_MS;
	op->next_at = now + op->backoff_ms;
	if (op->next_at >= op->deadline)
		cl_finish(op, err, "%s (retried until request.timeout.ms, %u ms)", op->last_msg,
			  op->cl->conf.request_timeout_ms);
}

/* Every tick: a connection with a call past its deadline closes (the
 * node is hung or unreachable: every call on it ends, retriable, and is
 * tried elsewhere); due ops step. */
static void on_tick(uv_timer_t *t)
{
	sluice_client_t *cl = t->data;
	uint64_t now = cl_now(cl);
	for (struct cl_conn *c = cl->conns, *cn; c != NULL; c = cn) {
		cn = c->next;
		for (struct cl_call *k = c->calls; k != NULL; k = k->next) {
			if (now < k->deadline)
				continue;
			conn_fail(c, SL_EREQUEST_TIMED_OUT, "%.200s:%d: no response within %llu ms",
				  c->addr.host, c->addr.port,
				  (unsigned long long)(k->deadline - k->started));
			break;
		}
	}
	/* A step can end other ops (a write failing on a shared connection
	 * ends its every call): after each, start over from the head,
	 * skipping the ops this tick already looked at. */
	unsigned tick = ++cl->tick_no;
again:
	for (struct cl_op *op = cl->ops; op != NULL; op = op->next) {
		if (op->tick_no == tick)
			continue;
		op->tick_no = tick;
		if (op->waiting > 0 || now < op->next_at)
			continue;
		if (now >= op->deadline)
			cl_finish(op, op->last_err != SL_OK ? op->last_err : SL_EREQUEST_TIMED_OUT,
				  "%s", op->last_msg[0] ? op->last_msg : "timed out");
		else
			op->step(op);
		goto again;
	}
	if (cl->ops == NULL && cl->calls_out == 0) /* idle: no wake-ups until the next call */
		uv_timer_stop(&cl->tick);
}

/* Calls end first (their ops may finish then), then the ops left. */
static void close_all(sluice_client_t *cl)
{
	cl->shutting = true;
	while (cl->conns != NULL)
		conn_fail(cl->conns, SL_ECANCELED, "the client is closing");
	while (cl->ops != NULL)
		cl_finish(cl->ops, SL_ECANCELED, "the client is closing");
	cl_meta_close(cl);
	uv_close((uv_handle_t *)&cl->tick, NULL);
	uv_close((uv_handle_t *)&cl->wake, NULL);
}

/* User threads handed over ops, or the client is closing. */
static void on_wake(uv_async_t *a)
{
	sluice_client_t *cl = a->data;
	pthread_mutex_lock(&cl->mu);
	struct cl_op *q = cl->queue;
	cl->queue = NULL;
	bool closing = cl->closing;
	pthread_mutex_unlock(&cl->mu);
	uint64_t now = cl_now(cl);
	while (q != NULL) {
		struct cl_op *op = q;
		q = q->next;
		op->deadline = now + cl->conf.request_timeout_ms;
		op->next_at = now;
		/* Ops start at different bootstrap addresses: one that hangs
		 * costs a socket timeout to some calls, not to every one. */
		op->rotate = cl->rotate++;
		op->next = cl->ops;
		cl->ops = op;
		if (!uv_is_active((uv_handle_t *)&cl->tick))
			uv_timer_start(&cl->tick, on_tick, TICK_MS, TICK_MS);
		op->step(op);
	}
	if (closing)
		close_all(cl);
}

int cl_submit(sluice_client_t *cl, struct cl_op *op, sluice_report_t **out)
{
	op->cl = cl;
	op->sync = op->cb == NULL;
	pthread_cond_init(&op->cond, NULL);
	if (op->sync && cl_on_loop(cl)) {
		/* A blocking call from a callback would wait for itself. */
		sluice_report_destroy(op->rep);
		op_free(op);
		return SL_EBUSY;
	}
	pthread_mutex_lock(&cl->mu);
	if (cl->closing) {
		pthread_mutex_unlock(&cl->mu);
		sluice_report_destroy(op->rep);
		op_free(op);
		return SL_ECLOSED;
	}
	op->next = cl->queue;
	cl->queue = op;
	uv_async_send(&cl->wake);
	if (!op->sync) {
		pthread_mutex_unlock(&cl->mu);
		return SL_OK;
	}
	while (!op->done)
		pthread_cond_wait(&op->cond, &cl->mu);
	pthread_mutex_unlock(&cl->mu);
	int rv = op->result;
	if (out != NULL)
		*out = op->rep;
	else
		sluice_report_destroy(op->rep);
	op_free(op);
	return rv;
}

struct run {
	void (*fn)(void *arg, struct cl_op *op);
	void *arg;
};

static void run_step(struct cl_op *op)
{
	struct run *r = op->state;
	op->deadline = op->next_at = UINT64_MAX;
	r->fn(r->arg, op);
}

static void run_free(struct cl_op *op)
{
	free(op->state);
}

int cl_run(sluice_client_t *cl, void (*fn)(void *arg, struct cl_op *op), void *arg)
{
	struct cl_op *op = calloc(1, sizeof(*op));
	struct run *r = malloc(sizeof(*r));
	if (op == NULL || r == NULL) {
		free(op);
		free(r);
		return SL_ENOMEM;
	}
	r->fn = fn;
	r->arg = arg;
	op->state = r;
	op->step = run_step;
	op->free_state = run_free;
	return cl_submit(cl, op, NULL);
}

bool cl_on_loop(sluice_client_t *cl)
{
	uv_thread_t self = uv_thread_self();
	return uv_thread_equal(&self, &cl->thread);
}

/* ---- The client ---------------------------------------------------------- */

static void io_thread(void *arg)
{
	sluice_client_t *cl = arg;
	uv_run(&cl->loop, UV_RUN_DEFAULT);
}

sluice_client_t *sluice_client_new(sluice_conf_t *conf, char *errbuf, size_t errlen)
{
	if (conf == NULL) {
		snprintf(errbuf, errlen, "conf is required");
		return NULL;
	}
	sluice_client_t *cl = calloc(1, sizeof(*cl));
	if (cl == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	cl->conf = *conf;
	cl->rotate = (unsigned)(uv_hrtime() ^ (uint64_t)getpid());
	int rv = uv_loop_init(&cl->loop);
	if (rv != 0) {
		snprintf(errbuf, errlen, "event loop: %s", uv_strerror(rv));
		free(cl);
		return NULL;
	}
	pthread_mutex_init(&cl->mu, NULL);
	uv_async_init(&cl->loop, &cl->wake, on_wake);
	uv_timer_init(&cl->loop, &cl->tick);
	cl->wake.data = cl->tick.data = cl;
	rv = cl_meta_init(cl);
	if (rv == SL_OK)
		rv = uv_thread_create(&cl->thread, io_thread, cl);
	else
		rv = UV_ENOMEM;
	if (rv != 0) {
		snprintf(errbuf, errlen, "I/O thread: %s", uv_strerror(rv));
		if (cl->meta != NULL)
			cl_meta_close(cl);
		uv_close((uv_handle_t *)&cl->wake, NULL);
		uv_close((uv_handle_t *)&cl->tick, NULL);
		uv_run(&cl->loop, UV_RUN_DEFAULT);
		uv_loop_close(&cl->loop);
		pthread_mutex_destroy(&cl->mu);
		free(cl);
		return NULL;
	}
	free(conf);
	return cl;
}

void sluice_client_destroy(sluice_client_t *cl)
{
	if (cl == NULL)
		return;
	pthread_mutex_lock(&cl->mu);
	cl->closing = true;
	uv_async_send(&cl->wake);
	pthread_mutex_unlock(&cl->mu);
	uv_thread_join(&cl->thread);
	uv_loop_close(&cl->loop);
	pthread_mutex_destroy(&cl->mu);
	free(cl);
}

void cl_test_drop_responses(sluice_client_t *cl, uint32_t api, unsigned count)
{
	atomic_store(&cl->drop_api, api);
	atomic_store(&cl->drop_count, count);
}
