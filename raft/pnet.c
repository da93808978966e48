/* The peer transport. See pnet.h. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "errors.h"
#include "pframe.h"
#include "pnet.h"

#define HELLO_MAX 256          /* bytes a frame may announce before the hello */
#define MAX_UNKNOWN 64         /* incoming connections yet to say hello */
#define MAX_GUESTS 64          /* node ids admitted without being peers */
#define READ_CHUNK 65536       /* receive buffer kept per connection */
#define SPARE_MAX (4u << 20)   /* a write buffer larger than this is not kept */
#define FETCH_ATTEMPTS 5

/* One queued frame: its length, and whether it may be dropped first. */
struct qent {
	uint32_t len;
	bool heartbeat;
};

enum { C_OUT, C_IN, C_BULK };

struct peer {
	struct sl_pnet *net;
	uint64_t id;
	char idstr[24];        /* the address libraft sees: the decimal id */
	char *host;
	int port;
	uint8_t uuid[16];
	bool uuid_known;
	bool guest;            /* admitted without being a peer: no address */
	bool stale;            /* what answered at its address had another UUID:
				* app frames only */
	struct conn *out;      /* the outgoing connection, connecting or ready */
	struct sl_pbuf q;      /* frames for the next write */
	struct qent *qe;
	size_t nqe, cap_qe;
	struct sl_pbuf spare;  /* the previous write's buffer, reused */
	uv_timer_t backoff;
	unsigned backoff_ms;
	bool down;             /* in backoff: sends fail at once */
	bool dirty;            /* in the flush list */
	bool unreachable_logged;
	struct peer *next_dirty;
};

struct conn {
	uv_tcp_t tcp;
	struct sl_pnet *net;
	struct peer *peer;     /* C_OUT: its peer; C_IN, C_BULK: after the hello */
	int kind;
	bool ready;            /* the hello was checked */
	bool app_only;         /* a guest's, or a stale peer's: no Raft, no bulk */
	bool closing;
	uint8_t *rb;
	size_t rlen, rcap;
	struct sl_pbuf hello;  /* our hello, written once */
	uv_write_t hreq;
	uv_write_t wreq;
	struct sl_pbuf wbuf;   /* the write in flight (frames, or bulk data) */
	bool writing;
	uv_connect_t creq;
	uv_getaddrinfo_t *resolve;
	struct conn *prev, *next;
	uint64_t born;         /* uv_now at accept */
	/* Bulk serving. */
	struct sl_pbulk_req bq;
	int64_t bpos;          /* next offset to send */
	uint64_t bsent;        /* data bytes sent */
	uint8_t bhdr[SL_PFRAME_HEADER + 1];
	bool bend;             /* the end frame is being written */
};

struct sl_pnet {
	uv_loop_t *loop;
	struct sl_pnet_config cfg;
	sl_pnet_recv_fn recv;
	sl_pnet_log_fn log_of;
	void *arg;
	sl_pnet_app_fn app;
	void *app_arg;
	struct sl_rnet rnet;
	uv_tcp_t listener;
	bool listening;
	int port;
	uv_prepare_t flush;    /* runs before the loop polls: writes every dirty peer */
	uv_timer_t sweep;      /* closes connections that never said hello */
	unsigned unknown;      /* incoming connections before their hello */
	struct peer *dirty;
	pthread_mutex_t mu;    /* the peer table, for fetch on other threads */
	struct peer **peers;
	size_t npeers;
	struct conn *conns;
	struct sl_pnet_stats st;
	bool cut_done;
	bool closing;
	unsigned open_handles;
	void (*close_cb)(void *);
	void *close_arg;
	void (*user_cb)(void *);
	void *user_arg;
	char *listen_host;
	uint64_t rng;
};

/* ---- Logging -------------------------------------------------------- */

void sl_rlogf(sl_rlog_fn fn, void *arg, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (fn != NULL) {
		fn(arg, level, msg);
		return;
	}
	const char *lv = level <= SL_RLOG_ERROR ? "error" : level == SL_RLOG_WARN ? "warn"
						      : level == SL_RLOG_INFO ? "info" : "debug";
	fprintf(stderr, "sluice raft %s: %s\n", lv, msg);
}

#define LOG(net, level, ...) sl_rlogf((net)->cfg.log, (net)->cfg.log_arg, level, __VA_ARGS__)

/* ---- Peers ---------------------------------------------------------- */

static struct peer *peer_find(const struct sl_pnet *net, uint64_t id)
{
	for (size_t i = 0; i < net->npeers; i++)
		if (net->peers[i]->id == id)
			return net->peers[i];
	return NULL;
}

static int peer_put(struct sl_pnet *net, uint64_t id, const char *host, int port,
		    const uint8_t *uuid);

static unsigned jitter(struct sl_pnet *net, unsigned ms)
{
	net->rng ^= net->rng << 13;
	net->rng ^= net->rng >> 7;
	net->rng ^= net->rng << 17;
	unsigned half = ms / 2;
	return half + (unsigned)(net->rng % (half + 1));
}

static void on_backoff_end(uv_timer_t *t)
{
	struct peer *p = t->data;
	p->down = false;
}

static void conn_close(struct conn *c);

/* The outgoing connection failed or was lost: what was queued is stale. */
static void peer_lost(struct peer *p, const char *why)
{
	struct sl_pnet *net = p->net;
	p->out = NULL;
	p->q.len = 0;
	p->nqe = 0;
	if (net->closing)
		return;
	unsigned ms = p->backoff_ms * 2;
	if (ms < net->cfg.backoff_min_ms)
		ms = net->cfg.backoff_min_ms;
	if (ms > net->cfg.backoff_max_ms)
		ms = net->cfg.backoff_max_ms;
	p->backoff_ms = ms;
	p->down = true;
	uv_timer_start(&p->backoff, on_backoff_end, jitter(net, ms), 0);
	if (!p->unreachable_logged) {
		LOG(net, SL_RLOG_WARN, "peer %llu at %s:%d: %s; retrying with backoff",
		    (unsigned long long)p->id, p->host, p->port, why);
		p->unreachable_logged = true;
	}
}

/* ---- Connections ---------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct sl_pnet *net = c->net;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		net->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c->rb);
	free(c->hello.p);
	free(c->wbuf.p);
	free(c);
	net->open_handles--;
	if (net->closing && net->open_handles == 0 && net->close_cb != NULL)
		net->close_cb(net->close_arg);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->kind == C_IN && !c->ready)
		c->net->unknown--;
	if (c->kind == C_OUT && c->peer != NULL && c->peer->out == c)
		peer_lost(c->peer, "connection lost");
	if (c->resolve != NULL) {
		c->resolve->data = NULL; /* its callback frees it */
		c->resolve = NULL;
	}
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static struct conn *conn_new(struct sl_pnet *net, int kind)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	if (uv_tcp_init(net->loop, &c->tcp) != 0) {
		free(c);
		return NULL;
	}
	c->tcp.data = c;
	c->net = net;
	c->kind = kind;
	c->next = net->conns;
	if (c->next != NULL)
		c->next->prev = c;
	net->conns = c;
	net->open_handles++;
	return c;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	struct conn *c = h->data;
	if (c->rcap - c->rlen < READ_CHUNK / 4) {
		size_t ncap = c->rcap < READ_CHUNK ? READ_CHUNK : c->rcap * 2;
		uint8_t *p = realloc(c->rb, ncap);
		if (p == NULL) {
			*buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
			return;
		}
		c->rb = p;
		c->rcap = ncap;
	}
	*buf = uv_buf_init((char *)c->rb + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_hello_written(uv_write_t *req, int status)
{
	(void)req;
	(void)status; /* a failure shows on the read side */
}

static int send_hello(struct conn *c)
{
	struct sl_pnet *net = c->net;
	struct sl_phello h = { .version = SL_PFRAME_VERSION, .node_id = net->cfg.node_id };
	memcpy(h.cluster_id, net->cfg.cluster_id, 16);
	memcpy(h.node_uuid, net->cfg.node_uuid, 16);
	if (sl_pframe_hello(&c->hello, &h) != SL_OK)
		return UV_ENOMEM;
	uv_buf_t b = uv_buf_init((char *)c->hello.p, (unsigned)c->hello.len);
	return uv_write(&c->hreq, (uv_stream_t *)&c->tcp, &b, 1, on_hello_written);
}

/* Checks a peer's hello. expect: the node id this connection was opened
 * to, or 0 for an incoming one. Returns the peer, or NULL with a reason;
 * *app_only when it is admitted as a guest (admit_guests). */
static struct peer *check_hello(struct sl_pnet *net, const struct sl_phello *h, uint64_t expect,
				bool *app_only, char *why, size_t why_len)
{
	struct peer *p = NULL;
	*app_only = false;
	if (h->version != SL_PFRAME_VERSION)
		snprintf(why, why_len, "protocol version %u (this node speaks %u)", h->version,
			 SL_PFRAME_VERSION);
	else if (memcmp(h->cluster_id, net->cfg.cluster_id, 16) != 0)
		snprintf(why, why_len, "node %llu belongs to another cluster",
			 (unsigned long long)h->node_id);
	else if (expect != 0 && h->node_id != expect)
		snprintf(why, why_len, "expected node %llu, found node %llu",
			 (unsigned long long)expect, (unsigned long long)h->node_id);
	else if (h->node_id == net->cfg.node_id) {
		if (memcmp(h->node_uuid, net->cfg.node_uuid, 16) == 0)
			return peer_find(net, h->node_id);
		snprintf(why, why_len, "another node claims this node's id %llu",
			 (unsigned long long)h->node_id);
	} else if ((p = peer_find(net, h->node_id)) == NULL) {
		size_t guests = 0;
		for (size_t i = 0; i < net->npeers; i++)
			guests += net->peers[i]->guest;
		if (net->cfg.admit_guests && h->node_id != 0 && guests < MAX_GUESTS &&
		    peer_put(net, h->node_id, "", 0, NULL) == SL_OK &&
		    (p = peer_find(net, h->node_id)) != NULL) {
			*app_only = true;
			return p;
		}
		snprintf(why, why_len, "node %llu is not a peer of node %llu%s",
			 (unsigned long long)h->node_id, (unsigned long long)net->cfg.node_id,
			 guests >= MAX_GUESTS ? " (and the guest table is full)" : "");
	} else if (p->uuid_known && memcmp(p->uuid, h->node_uuid, 16) != 0) {
		if (net->cfg.admit_guests) {
			/* Only what answers at the peer's address makes the peer
			 * stale: a stray hello cannot cut a peer off. */
			if (!p->stale)
				LOG(net, SL_RLOG_WARN,
				    "node %llu came back with another UUID (a lost disk?): "
				    "application frames only until it rejoins as a new replica",
				    (unsigned long long)h->node_id);
			if (expect != 0) {
				pthread_mutex_lock(&net->mu);
				p->stale = true;
				pthread_mutex_unlock(&net->mu);
			}
			*app_only = true;
			return p;
		}
		snprintf(why, why_len,
			 "node %llu came back with another UUID (a lost disk?); "
			 "it must rejoin as a new replica",
			 (unsigned long long)h->node_id);
		p = NULL;
	} else {
		*app_only = p->guest;
		if (!p->uuid_known || (p->stale && expect != 0)) {
			pthread_mutex_lock(&net->mu);
			memcpy(p->uuid, h->node_uuid, 16);
			p->uuid_known = true;
			if (expect != 0)
				p->stale = false;
			pthread_mutex_unlock(&net->mu);
		}
		return p;
	}
	return NULL;
}

static void flush_peer(struct peer *p);
static void bulk_step(struct conn *c);

static void reject(struct conn *c, uint64_t *counter, const char *what, const char *why)
{
	struct sl_pnet *net = c->net;
	(*counter)++;
	char name[64] = "?";
	struct sockaddr_storage sa;
	int sl = sizeof(sa);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &sl) == 0) {
		if (sa.ss_family == AF_INET)
			uv_ip4_name((struct sockaddr_in *)&sa, name, sizeof(name));
		else
			uv_ip6_name((struct sockaddr_in6 *)&sa, name, sizeof(name));
	}
	LOG(net, SL_RLOG_WARN, "peer connection from %s closed: %s: %s", name, what, why);
	conn_close(c);
}

/* One whole frame on connection c. */
static void on_frame(struct conn *c, const uint8_t *f, size_t len)
{
	struct sl_pnet *net = c->net;
	int kind = sl_pframe_kind(f, len);
	char why[200];
	if (!c->ready) {
		struct sl_phello h;
		if (kind != SL_PFRAME_HELLO || sl_pframe_decode_hello(f, len, &h) != SL_OK) {
			reject(c, &net->st.closed_garbage, "garbage", "the first frame is not a hello");
			return;
		}
		bool app_only;
		struct peer *p = check_hello(net, &h, c->kind == C_OUT ? c->peer->id : 0, &app_only,
					     why, sizeof(why));
		if (p == NULL) {
			reject(c, &net->st.rejected_hello, "hello rejected", why);
			return;
		}
		c->ready = true;
		c->app_only = app_only;
		if (app_only)
			net->st.guests++;
		if (app_only && c->kind == C_OUT) { /* what was queued may be Raft's */
			net->st.messages_refused += p->nqe;
			p->q.len = 0;
			p->nqe = 0;
		}
		if (c->kind != C_OUT)
			net->unknown--;
		if (c->kind == C_OUT) {
			p->backoff_ms = 0;
			if (p->unreachable_logged)
				LOG(net, SL_RLOG_INFO, "peer %llu at %s:%d: connected",
				    (unsigned long long)p->id, p->host, p->port);
			p->unreachable_logged = false;
			net->st.connects++;
			flush_peer(p);
		} else {
			c->peer = p;
			if (send_hello(c) != 0)
				conn_close(c);
		}
		return;
	}
	if (c->kind == C_IN && kind == SL_PFRAME_MESSAGE && c->app_only) {
		net->st.guest_dropped++; /* a guest's Raft messages count nowhere */
		return;
	}
	if (c->kind == C_IN && kind == SL_PFRAME_MESSAGE && c->peer->id != net->cfg.node_id) {
		uint32_t group;
		struct raft_message m;
		int rv = sl_pframe_decode_message(f, len, c->peer->id, c->peer->idstr, &group, &m);
		if (rv == SL_ENOMEM) {
			net->st.messages_refused++; /* lost, as on a bad network */
			return;
		}
		if (rv != SL_OK) {
			reject(c, &net->st.closed_garbage, "garbage", "a message frame does not decode");
			return;
		}
		net->st.frames_received++;
		if (net->recv == NULL || !net->recv(net->arg, c->peer->id, group, &m)) {
			net->st.unknown_group++;
			sl_rmsg_discard(&m);
		}
		return;
	}
	if (c->kind == C_IN && kind == SL_PFRAME_APP) {
		const uint8_t *payload;
		size_t plen;
		if (sl_pframe_decode_app(f, len, &payload, &plen) != SL_OK) {
			reject(c, &net->st.closed_garbage, "garbage", "an app frame does not decode");
			return;
		}
		net->st.frames_received++;
		if (net->app != NULL)
			net->app(net->app_arg, c->peer->id, payload, plen);
		return;
	}
	if (c->kind == C_IN && kind == SL_PFRAME_BULK_REQ && c->app_only) {
		reject(c, &net->st.rejected_hello, "bulk request refused",
		       "the node is a guest (not a peer, or back with another UUID)");
		return;
	}
	if (c->kind == C_IN && kind == SL_PFRAME_BULK_REQ) {
		if (sl_pframe_decode_bulk_req(f, len, &c->bq) != SL_OK) {
			reject(c, &net->st.closed_garbage, "garbage", "a bulk request does not decode");
			return;
		}
		c->kind = C_BULK;
		c->bpos = c->bq.offset;
		net->st.bulk_sessions++;
		uv_read_stop((uv_stream_t *)&c->tcp);
		bulk_step(c);
		return;
	}
	reject(c, &net->st.closed_garbage, "garbage", "an unexpected frame");
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	(void)buf;
	struct conn *c = s->data;
	struct sl_pnet *net = c->net;
	if (n < 0) {
		if (c->kind == C_OUT && c->peer->out == c)
			peer_lost(c->peer, n == UV_EOF ? "closed by the peer" : uv_strerror((int)n));
		conn_close(c);
		return;
	}
	c->rlen += (size_t)n;
	net->st.bytes_received += (uint64_t)n;
	size_t off = 0;
	while (!c->closing) {
		size_t flen;
		int rv = sl_pframe_peek(c->rb + off, c->rlen - off,
					c->ready ? net->cfg.max_frame : HELLO_MAX, &flen);
		if (rv == SL_ENOT_FOUND)
			break;
		if (rv != SL_OK) {
			char why[96];
			snprintf(why, sizeof(why), "a frame larger than the limit (%zu bytes)",
				 c->ready ? net->cfg.max_frame : (size_t)HELLO_MAX);
			if (c->ready)
				reject(c, &net->st.closed_oversized, "oversized frame", why);
			else
				reject(c, &net->st.closed_garbage, "garbage", "not a peer hello");
			return;
		}
		on_frame(c, c->rb + off, flen);
		off += flen;
	}
	if (c->closing)
		return;
	memmove(c->rb, c->rb + off, c->rlen - off);
	c->rlen -= off;
	if (c->rcap > READ_CHUNK && c->rlen <= READ_CHUNK / 2) {
		uint8_t *p = realloc(c->rb, READ_CHUNK); /* a large frame passed */
		if (p != NULL) {
			c->rb = p;
			c->rcap = READ_CHUNK;
		}
	}
	/* A frame announced larger than the buffer: make room for it whole. */
	size_t need;
	if (c->rlen >= SL_PFRAME_HEADER &&
	    sl_pframe_peek(c->rb, c->rlen, SIZE_MAX, &need) == SL_ENOT_FOUND && need > c->rcap) {
		uint8_t *p = realloc(c->rb, need);
		if (p == NULL) {
			conn_close(c);
			return;
		}
		c->rb = p;
		c->rcap = need;
	}
}

/* ---- Outgoing ------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	if (c->closing)
		return;
	if (status != 0) {
		c->net->st.connect_failures++;
		peer_lost(c->peer, uv_strerror(status));
		conn_close(c);
		return;
	}
	if (send_hello(c) != 0 || uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		conn_close(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct conn *c = req->data;
	free(req);
	if (c == NULL) { /* closed meanwhile */
		uv_freeaddrinfo(res);
		return;
	}
	c->resolve = NULL;
	int rv = status;
	if (rv == 0) {
		c->creq.data = c;
		rv = uv_tcp_connect(&c->creq, &c->tcp, res->ai_addr, on_connect);
	}
	uv_freeaddrinfo(res);
	if (rv != 0) {
		c->net->st.connect_failures++;
		peer_lost(c->peer, uv_strerror(rv));
		conn_close(c);
	}
}

static int peer_connect(struct peer *p)
{
	struct sl_pnet *net = p->net;
	struct conn *c = conn_new(net, C_OUT);
	if (c == NULL)
		return -1;
	c->peer = p;
	p->out = c;
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, 10);
	c->resolve = malloc(sizeof(*c->resolve));
	char port[16];
	snprintf(port, sizeof(port), "%d", p->port);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	if (c->resolve == NULL) {
		conn_close(c);
		return -1;
	}
	c->resolve->data = c;
	int rv = uv_getaddrinfo(net->loop, c->resolve, on_resolved, p->host, port, &hints);
	if (rv != 0) {
		free(c->resolve);
		c->resolve = NULL;
		peer_lost(p, uv_strerror(rv));
		conn_close(c);
		return -1;
	}
	return 0;
}

static void on_frames_written(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	c->writing = false;
	struct peer *p = c->peer;
	if (c->closing || p->out != c) {
		c->wbuf.len = 0;
		return;
	}
	if (status != 0) {
		peer_lost(p, uv_strerror(status));
		conn_close(c);
		return;
	}
	/* Keep the buffer for a later write unless a burst made it large. */
	if (p->spare.p == NULL && c->wbuf.cap <= SPARE_MAX) {
		p->spare = c->wbuf;
		p->spare.len = 0;
	} else {
		free(c->wbuf.p);
	}
	c->wbuf = (struct sl_pbuf){ 0 };
	flush_peer(p);
}

static void flush_peer(struct peer *p)
{
	struct conn *c = p->out;
	if (c == NULL || !c->ready || c->writing || c->closing || p->q.len == 0)
		return;
	struct sl_pnet *net = p->net;
	c->wbuf = p->q;
	p->q = p->spare;
	p->spare = (struct sl_pbuf){ 0 };
	net->st.frames_sent += p->nqe;
	net->st.bytes_sent += c->wbuf.len;
	net->st.writes++;
	p->nqe = 0;
	uv_buf_t b = uv_buf_init((char *)c->wbuf.p, (unsigned)c->wbuf.len);
	c->wreq.data = c;
	c->writing = true;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_frames_written) != 0) {
		c->writing = false;
		peer_lost(p, "write failed");
		conn_close(c);
	}
}

static void on_flush(uv_prepare_t *h)
{
	struct sl_pnet *net = h->data;
	while (net->dirty != NULL) {
		struct peer *p = net->dirty;
		net->dirty = p->next_dirty;
		p->dirty = false;
		flush_peer(p);
	}
	uv_prepare_stop(h);
}

/* Makes room in p's queue for `more` bytes by dropping queued heartbeats,
 * oldest first. Returns whether the queue then fits. */
static bool drop_heartbeats(struct peer *p, size_t more)
{
	struct sl_pnet *net = p->net;
	size_t limit = net->cfg.max_queue;
	size_t rd = 0, wr = 0, k = 0;
	for (size_t i = 0; i < p->nqe; i++) {
		struct qent e = p->qe[i];
		if (e.heartbeat && p->q.len - (rd - wr) + more > limit) {
			net->st.heartbeats_dropped++;
		} else {
			memmove(p->q.p + wr, p->q.p + rd, e.len);
			wr += e.len;
			p->qe[k++] = e;
		}
		rd += e.len;
	}
	p->q.len = wr;
	p->nqe = k;
	return p->q.len + more <= limit;
}

/* Encodes one frame into a peer's queue. */
typedef int (*encode_fn)(struct sl_pbuf *out, const void *ctx);

/* Queues a frame for node `to`; false when refused (counted). */
static bool enqueue(struct sl_pnet *net, uint64_t to, encode_fn encode, const void *ctx,
		    bool heartbeat, bool raft)
{
	struct peer *p = peer_find(net, to);
	if (p == NULL || p->down || p->guest || net->closing || (raft && p->stale))
		goto refused;
	if (p->out == NULL && peer_connect(p) != 0)
		goto refused;
	if (p->nqe == p->cap_qe) {
		size_t ncap = p->cap_qe ? p->cap_qe * 2 : 64;
		struct qent *qe = realloc(p->qe, ncap * sizeof(*qe));
		if (qe == NULL)
			goto refused;
		p->qe = qe;
		p->cap_qe = ncap;
	}
	size_t before = p->q.len;
	if (encode(&p->q, ctx) != SL_OK) {
		p->q.len = before;
		goto refused;
	}
	size_t flen = p->q.len - before;
	if (p->q.len > net->cfg.max_queue) {
		p->q.len = before;
		/* A frame larger than the whole queue still goes alone, or a
		 * lagging follower would never get its AppendEntries. */
		if (!drop_heartbeats(p, flen) && p->q.len > 0)
			goto refused;
		size_t at = p->q.len; /* re-encode after the compaction */
		if (encode(&p->q, ctx) != SL_OK) {
			p->q.len = at;
			goto refused;
		}
	}
	p->qe[p->nqe++] = (struct qent){ .len = (uint32_t)flen, .heartbeat = heartbeat };
	if (!p->dirty) {
		p->dirty = true;
		p->next_dirty = net->dirty;
		net->dirty = p;
		uv_prepare_start(&net->flush, on_flush);
	}
	return true;
refused:
	net->st.messages_refused++;
	return false;
}

struct msg_ctx {
	uint32_t group;
	const struct raft_message *msg;
};

static int encode_msg(struct sl_pbuf *out, const void *ctx)
{
	const struct msg_ctx *m = ctx;
	return sl_pframe_message(out, m->group, m->msg);
}

static int net_send(struct sl_rnet *rn, uint32_t group, const struct raft_message *msg)
{
	struct msg_ctx m = { group, msg };
	bool heartbeat = msg->type == RAFT_IO_APPEND_ENTRIES && msg->append_entries.n_entries == 0;
	return enqueue(rn->data, msg->server_id, encode_msg, &m, heartbeat, true) ? 0
									   : RAFT_NOCONNECTION;
}

struct app_ctx {
	const void *payload;
	size_t len;
};

static int encode_app(struct sl_pbuf *out, const void *ctx)
{
	const struct app_ctx *a = ctx;
	return sl_pframe_app(out, a->payload, a->len);
}

int sl_pnet_send_app(struct sl_pnet *net, uint64_t to, const void *payload, size_t len)
{
	struct app_ctx a = { payload, len };
	return enqueue(net, to, encode_app, &a, false, false) ? SL_OK : SL_ENOT_FOUND;
}

void sl_pnet_set_app_handler(struct sl_pnet *net, sl_pnet_app_fn fn, void *arg)
{
	net->app = fn;
	net->app_arg = arg;
}

/* ---- Incoming ------------------------------------------------------- */

static void on_sweep(uv_timer_t *t)
{
	struct sl_pnet *net = t->data;
	uint64_t now = uv_now(net->loop);
	for (struct conn *c = net->conns; c != NULL; c = c->next)
		if (c->kind == C_IN && !c->ready && !c->closing &&
		    now - c->born >= net->cfg.hello_timeout_ms)
			reject(c, &net->st.closed_garbage, "no hello", "none within the hello timeout");
}

static void on_accept(uv_stream_t *server, int status)
{
	struct sl_pnet *net = server->data;
	if (status != 0 || net->closing)
		return;
	struct conn *c = conn_new(net, C_IN);
	if (c == NULL)
		return;
	c->born = uv_now(net->loop);
	net->unknown++;
	if (net->unknown > MAX_UNKNOWN) {
		/* Accept and close at once: the kernel's backlog stays empty. */
		if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0)
			net->st.closed_garbage++;
		LOG(net, SL_RLOG_WARN, "peer listener: over %d connections without a hello; "
		    "closing a new one", MAX_UNKNOWN);
		conn_close(c);
		return;
	}
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, 10);
	net->st.accepted++;
}

/* ---- Bulk copy: the serving side ------------------------------------ */

static void on_bulk_written(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	c->writing = false;
	if (c->closing)
		return;
	if (status != 0 || c->bend) {
		conn_close(c);
		return;
	}
	bulk_step(c);
}

static void bulk_end(struct conn *c, int status)
{
	c->wbuf.len = 0;
	if (sl_pframe_bulk_end(&c->wbuf, status, c->bpos) != SL_OK) {
		conn_close(c);
		return;
	}
	uv_buf_t b = uv_buf_init((char *)c->wbuf.p, (unsigned)c->wbuf.len);
	c->bend = true;
	c->writing = true;
	c->wreq.data = c;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_bulk_written) != 0)
		conn_close(c);
}

/* Sends the next chunk of the requested range: whole batches with base
 * offset >= bpos and last offset < end, within the session's budget. */
static void bulk_step(struct conn *c)
{
	struct sl_pnet *net = c->net;
	const struct sl_pbulk_req *q = &c->bq;
	if (c->bpos >= q->end || (c->bsent > 0 && c->bsent >= q->max_bytes)) {
		bulk_end(c, SL_OK);
		return;
	}
	sl_log *log = net->log_of != NULL ? net->log_of(net->arg, q->group) : NULL;
	if (log == NULL) {
		bulk_end(c, SL_EUNKNOWN_TOPIC_OR_PARTITION);
		return;
	}
	if (c->bpos < sl_log_start_offset(log))
		c->bpos = sl_log_start_offset(log); /* retention removed the rest */
	uint64_t budget = net->cfg.bulk_chunk;
	if (q->max_bytes > 0 && q->max_bytes - c->bsent < budget)
		budget = q->max_bytes - c->bsent;
	struct sl_slice sl;
	int rv = sl_log_read(log, c->bpos, budget, &sl);
	if (rv != SL_OK) {
		bulk_end(c, rv);
		return;
	}
	if (sl.len == 0) {
		sl_slice_release(&sl);
		bulk_end(c, SL_OK); /* the end of the log */
		return;
	}
	c->wbuf.len = 0;
	if (sl.len > UINT32_MAX - 16 || sl.len > c->wbuf.cap) {
		uint8_t *p = sl.len > UINT32_MAX - 16 ? NULL : realloc(c->wbuf.p, sl.len);
		if (p == NULL) {
			sl_slice_release(&sl);
			bulk_end(c, SL_ENOMEM);
			return;
		}
		c->wbuf.p = p;
		c->wbuf.cap = sl.len;
	}
	rv = sl_slice_read(&sl, c->wbuf.p);
	int64_t slice_next = sl.next_offset;
	size_t n = sl.len;
	sl_slice_release(&sl);
	if (rv != SL_OK) {
		bulk_end(c, rv);
		return;
	}
	/* Keep the batches inside [bpos, end). */
	size_t from = 0, to = 0, off = 0;
	int64_t next = c->bpos;
	bool past_end = false;
	while (off < n) {
		struct sl_batch_header h;
		if (sl_batch_parse_header(c->wbuf.p + off, n - off, UINT32_MAX, &h) != SL_OK) {
			bulk_end(c, SL_ELOG_CORRUPT);
			return;
		}
		size_t sz = sl_batch_total_size(&h);
		if (sl_batch_last_offset(&h) >= q->end) {
			past_end = true;
			break;
		}
		if (h.base_offset < c->bpos) {
			from = off + sz; /* a batch that starts below the request */
		} else {
			to = off + sz;
			next = sl_batch_last_offset(&h) + 1;
		}
		off += sz;
	}
	if (to <= from) {
		if (!past_end && slice_next > c->bpos) {
			c->bpos = slice_next; /* only batches below the request: go on */
			bulk_step(c);
		} else {
			bulk_end(c, SL_OK);
		}
		return;
	}
	size_t len = to - from;
	sl_pframe_bulk_data_header(c->bhdr, (uint32_t)len);
	uv_buf_t b[2] = { uv_buf_init((char *)c->bhdr, sizeof(c->bhdr)),
			  uv_buf_init((char *)c->wbuf.p + from, (unsigned)len) };
	unsigned nb = 2;
	bool cut = false;
	if (net->cfg.test_cut_bulk_after > 0 && !net->cut_done &&
	    net->st.bulk_bytes_served + len > net->cfg.test_cut_bulk_after) {
		/* Fault injection: stop in the middle of this frame. */
		uint64_t keep = net->cfg.test_cut_bulk_after > net->st.bulk_bytes_served
					? net->cfg.test_cut_bulk_after - net->st.bulk_bytes_served : 0;
		b[1].len = (unsigned)(keep < len / 2 ? keep : len / 2);
		net->cut_done = true;
		cut = true;
		LOG(net, SL_RLOG_INFO, "bulk copy of group %u: cut after %llu bytes (test)",
		    q->group, (unsigned long long)(net->st.bulk_bytes_served + b[1].len));
	}
	net->st.bulk_bytes_served += b[1].len;
	c->bsent += len;
	c->bpos = next;
	if (past_end)
		c->bq.end = next; /* the next step sends the end frame */
	c->bend = cut;
	c->writing = true;
	c->wreq.data = c;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, b, nb, on_bulk_written) != 0)
		conn_close(c);
}

/* ---- Bulk copy: the fetching side (any thread, blocking) ------------- */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connects with a deadline; returns a blocking socket or -1. */
static int dial(const char *host, int port, unsigned timeout_ms)
{
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res;
	if (getaddrinfo(host, ps, &hints, &res) != 0)
		return -1;
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		freeaddrinfo(res);
		return -1;
	}
	int rv = connect(fd, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (rv != 0 && errno == EINPROGRESS) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int err = 0;
		socklen_t el = sizeof(err);
		if (poll(&pfd, 1, (int)timeout_ms) == 1 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
			rv = 0;
	}
	if (rv != 0) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static bool io_all(int fd, void *buf, size_t len, bool wr)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = wr ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool reserve_buf(struct sl_pbuf *b, size_t cap)
{
	if (cap <= b->cap)
		return true;
	uint8_t *p = realloc(b->p, cap);
	if (p == NULL)
		return false;
	b->p = p;
	b->cap = cap;
	return true;
}

/* Reads one frame into *f (grown as needed). */
static bool read_frame(int fd, struct sl_pbuf *f, size_t max)
{
	uint8_t h[SL_PFRAME_HEADER];
	size_t n = 0;
	if (!io_all(fd, h, sizeof(h), false) || sl_pframe_peek(h, sizeof(h), max, &n) != SL_ENOT_FOUND)
		return false; /* too large, or an empty body: no frame has one */
	if (!reserve_buf(f, n))
		return false;
	memcpy(f->p, h, sizeof(h));
	f->len = n;
	return io_all(fd, f->p + sizeof(h), n - sizeof(h), false);
}

/* One session. Appends the whole, checked batches received to out; returns
 * SL_OK once the end frame came, the error the server reported, SL_EIO
 * when the connection failed or was cut (out then holds what arrived
 * whole), or SL_ECORRUPT_MESSAGE. */
static int fetch_once(struct sl_pnet *net, uint64_t from, const char *host, int port,
		      const struct sl_pbulk_req *q, struct sl_pbuf *out)
{
	int fd = dial(host, port, net->cfg.bulk_timeout_ms);
	if (fd < 0)
		return SL_EIO;
	struct sl_pbuf w = { 0 }, f = { 0 };
	struct sl_phello h = { .version = SL_PFRAME_VERSION, .node_id = net->cfg.node_id }, rh;
	memcpy(h.cluster_id, net->cfg.cluster_id, 16);
	memcpy(h.node_uuid, net->cfg.node_uuid, 16);
	int rv = SL_EIO;
	if (sl_pframe_hello(&w, &h) != SL_OK || sl_pframe_bulk_req(&w, q) != SL_OK) {
		rv = SL_ENOMEM;
		goto out;
	}
	if (!io_all(fd, w.p, w.len, true) || !read_frame(fd, &f, HELLO_MAX))
		goto out;
	if (sl_pframe_decode_hello(f.p, f.len, &rh) != SL_OK || rh.version != SL_PFRAME_VERSION ||
	    rh.node_id != from || memcmp(rh.cluster_id, net->cfg.cluster_id, 16) != 0)
		goto out;
	for (;;) {
		/* A data frame's body goes straight into out, so that a cut one
		 * still yields the whole batches that arrived. */
		uint8_t hd[SL_PFRAME_HEADER + 1];
		size_t flen = 0;
		if (!io_all(fd, hd, SL_PFRAME_HEADER, false) ||
		    sl_pframe_peek(hd, SL_PFRAME_HEADER, net->cfg.max_frame, &flen) != SL_ENOT_FOUND ||
		    !io_all(fd, hd + SL_PFRAME_HEADER, 1, false))
			goto out;
		size_t body = flen - sizeof(hd);
		if (hd[SL_PFRAME_HEADER] == SL_PFRAME_BULK_END) {
			int64_t next;
			int status;
			f.len = 0;
			if (!reserve_buf(&f, flen))
				goto out;
			memcpy(f.p, hd, sizeof(hd));
			if (io_all(fd, f.p + sizeof(hd), body, false))
				rv = sl_pframe_decode_bulk_end(f.p, flen, &status, &next) == SL_OK
					     ? status : SL_EIO;
			goto out;
		}
		if (hd[SL_PFRAME_HEADER] != SL_PFRAME_BULK_DATA)
			goto out;
		if (!reserve_buf(out, out->len + body)) {
			rv = SL_ENOMEM;
			goto out;
		}
		uint8_t *d = out->p + out->len;
		size_t got = 0, kept = 0;
		while (got < body) {
			ssize_t n = recv(fd, d + got, body - got, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		while (kept < got) {
			struct sl_batch_header bh;
			if (sl_batch_parse_header(d + kept, got - kept, UINT32_MAX, &bh) == SL_OK &&
			    sl_batch_total_size(&bh) > got - kept && got < body)
				break; /* the cut fell inside this batch */
			if (sl_batch_check(d + kept, got - kept, UINT32_MAX, &bh) != SL_OK) {
				rv = SL_ECORRUPT_MESSAGE;
				goto out;
			}
			kept += sl_batch_total_size(&bh);
		}
		out->len += kept;
		__atomic_add_fetch(&net->st.bulk_bytes_fetched, kept, __ATOMIC_RELAXED);
		if (got < body)
			goto out; /* cut: what arrived whole is kept */
	}
out:
	close(fd);
	free(w.p);
	free(f.p);
	return rv;
}

static int net_fetch(struct sl_rnet *rn, uint32_t group, raft_id from, int64_t offset,
		     int64_t end, uint8_t **buf, size_t *len)
{
	struct sl_pnet *net = rn->data;
	char host[256];
	int port;
	pthread_mutex_lock(&net->mu);
	struct peer *p = peer_find(net, from);
	if (p != NULL) {
		snprintf(host, sizeof(host), "%s", p->host);
		port = p->port;
	}
	bool refused = p != NULL && p->guest;
	pthread_mutex_unlock(&net->mu);
	if (p == NULL || refused)
		return SL_ENOT_FOUND;
	struct sl_pbulk_req q = { .group = group, .offset = offset, .end = end,
				  .max_bytes = net->cfg.bulk_chunk };
	struct sl_pbuf out = { 0 };
	int rv = SL_EIO;
	unsigned wait_ms = 100;
	for (int attempt = 0; attempt < FETCH_ATTEMPTS; attempt++) {
		if (attempt > 0) {
			__atomic_add_fetch(&net->st.bulk_fetch_retries, 1, __ATOMIC_RELAXED);
			struct timespec ts = { .tv_sec = wait_ms / 1000,
					       .tv_nsec = (long)(wait_ms % 1000) * 1000000 };
			nanosleep(&ts, NULL); /* backoff between attempts, off the loop */
			wait_ms *= 2;
		}
		int64_t t0 = mono_ms();
		rv = fetch_once(net, from, host, port, &q, &out);
		if (out.len > 0 || rv == SL_OK)
			break; /* what arrived whole is used; the next fetch resumes */
		if (rv != SL_EIO || mono_ms() - t0 > (int64_t)net->cfg.bulk_timeout_ms)
			break;
	}
	if (out.len > 0)
		rv = SL_OK;
	if (rv != SL_OK) {
		free(out.p);
		return rv;
	}
	*buf = out.p;
	*len = out.len;
	return SL_OK;
}

/* ---- Setup ---------------------------------------------------------- */

int sl_pnet_init(struct sl_pnet **out, uv_loop_t *loop, const struct sl_pnet_config *cfg,
		 sl_pnet_recv_fn recv, sl_pnet_log_fn log_of, void *arg)
{
	if (cfg->node_id == 0)
		return SL_EINVALID_ARGUMENT;
	struct sl_pnet *net = calloc(1, sizeof(*net));
	if (net == NULL)
		return SL_ENOMEM;
	net->loop = loop;
	net->cfg = *cfg;
	if (net->cfg.max_frame == 0)
		net->cfg.max_frame = 64u << 20;
	if (net->cfg.max_queue == 0)
		net->cfg.max_queue = 64u << 20;
	if (net->cfg.backoff_min_ms == 0)
		net->cfg.backoff_min_ms = 100;
	if (net->cfg.backoff_max_ms == 0)
		net->cfg.backoff_max_ms = 5000;
	if (net->cfg.backoff_max_ms < net->cfg.backoff_min_ms)
		net->cfg.backoff_max_ms = net->cfg.backoff_min_ms;
	if (net->cfg.bulk_timeout_ms == 0)
		net->cfg.bulk_timeout_ms = 10000;
	if (net->cfg.hello_timeout_ms == 0)
		net->cfg.hello_timeout_ms = 10000;
	if (net->cfg.bulk_chunk == 0)
		net->cfg.bulk_chunk = 4u << 20;
	if (net->cfg.max_frame < net->cfg.bulk_chunk + 64)
		net->cfg.bulk_chunk = net->cfg.max_frame / 2;
	net->listen_host = strdup(cfg->listen_host != NULL ? cfg->listen_host : "127.0.0.1");
	net->cfg.listen_host = net->listen_host;
	if (net->listen_host == NULL) {
		free(net);
		return SL_ENOMEM;
	}
	net->recv = recv;
	net->log_of = log_of;
	net->arg = arg;
	net->rnet = (struct sl_rnet){ .data = net, .send = net_send, .fetch = net_fetch };
	net->rng = (uint64_t)cfg->node_id * 0x9e3779b97f4a7c15ull ^ (uint64_t)mono_ms();
	if (net->rng == 0)
		net->rng = 1;
	pthread_mutex_init(&net->mu, NULL);
	uv_prepare_init(loop, &net->flush);
	net->flush.data = net;
	uv_timer_init(loop, &net->sweep);
	net->sweep.data = net;
	net->open_handles = 2;
	*out = net;
	return SL_OK;
}

int sl_pnet_listen(struct sl_pnet *net, char *errmsg)
{
	const char *host = net->cfg.listen_host;
	int port = net->cfg.listen_port;
	struct sockaddr_storage sa;
	int rv = uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
	if (rv != 0)
		rv = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa);
	if (rv != 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "peer listener: %s is not a numeric address", host);
		return SL_EINVALID_ARGUMENT;
	}
	uv_tcp_init(net->loop, &net->listener);
	net->listener.data = net;
	net->listening = true;
	net->open_handles++;
	rv = uv_tcp_bind(&net->listener, (struct sockaddr *)&sa, 0);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)&net->listener, 128, on_accept);
	if (rv != 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "peer listener on %s:%d: %s", host, port,
			 uv_strerror(rv));
		return SL_EIO;
	}
	struct sockaddr_storage bound;
	int bl = sizeof(bound);
	uv_tcp_getsockname(&net->listener, (struct sockaddr *)&bound, &bl);
	net->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
						     : ((struct sockaddr_in6 *)&bound)->sin6_port);
	const char *self = strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1"
			   : strcmp(host, "::") == 0 ? "::1" : host;
	if (peer_put(net, net->cfg.node_id, self, net->port, net->cfg.node_uuid) != SL_OK) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "peer listener: out of memory");
		return SL_ENOMEM;
	}
	unsigned every = net->cfg.hello_timeout_ms < 4000 ? net->cfg.hello_timeout_ms / 4 + 1 : 1000;
	uv_timer_start(&net->sweep, on_sweep, every, every);
	return SL_OK;
}

void sl_pnet_set_handlers(struct sl_pnet *net, sl_pnet_recv_fn recv, sl_pnet_log_fn log_of,
			  void *arg)
{
	net->recv = recv;
	net->log_of = log_of;
	net->arg = arg;
}

int sl_pnet_port(const struct sl_pnet *net)
{
	return net->port;
}

/* Adds or updates the peer table's entry for id (this node's own entry
 * too: a bulk copy may read from a group on this very node). */
static int peer_put(struct sl_pnet *net, uint64_t id, const char *host, int port,
		    const uint8_t *uuid)
{
	struct peer *p = peer_find(net, id);
	char *h = strdup(host);
	if (h == NULL)
		return SL_ENOMEM;
	if (p == NULL) {
		p = calloc(1, sizeof(*p));
		pthread_mutex_lock(&net->mu); /* fetch reads the table on other threads */
		struct peer **np = p == NULL ? NULL
				   : realloc(net->peers, (net->npeers + 1) * sizeof(*np));
		if (np != NULL) {
			net->peers = np;
			net->peers[net->npeers++] = p;
		}
		pthread_mutex_unlock(&net->mu);
		if (np == NULL) {
			free(p);
			free(h);
			return SL_ENOMEM;
		}
		p->net = net;
		p->id = id;
		snprintf(p->idstr, sizeof(p->idstr), "%llu", (unsigned long long)id);
		uv_timer_init(net->loop, &p->backoff);
		p->backoff.data = p;
		net->open_handles++;
	} else if (strcmp(p->host, host) != 0 || p->port != port ||
		   (uuid != NULL && (!p->uuid_known || memcmp(p->uuid, uuid, 16) != 0))) {
		for (struct conn *c = net->conns; c != NULL; c = c->next)
			if (c->peer == p)
				conn_close(c);
	}
	pthread_mutex_lock(&net->mu);
	free(p->host);
	p->host = h;
	p->port = port;
	if (uuid != NULL) {
		if (p->uuid_known && memcmp(p->uuid, uuid, 16) != 0)
			p->stale = false; /* the new disk is the peer now */
		memcpy(p->uuid, uuid, 16);
		p->uuid_known = true;
	}
	p->guest = port == 0;
	pthread_mutex_unlock(&net->mu);
	return SL_OK;
}

int sl_pnet_set_peer(struct sl_pnet *net, uint64_t id, const char *host, int port,
		     const uint8_t *uuid)
{
	if (id == 0 || id == net->cfg.node_id || host == NULL || port <= 0 || port > 65535)
		return SL_EINVALID_ARGUMENT;
	return peer_put(net, id, host, port, uuid);
}

bool sl_pnet_peer_uuid(const struct sl_pnet *net, uint64_t id, uint8_t uuid[16])
{
	const struct peer *p = peer_find(net, id);
	if (p == NULL || !p->uuid_known)
		return false;
	memcpy(uuid, p->uuid, 16);
	return true;
}

struct sl_rnet *sl_pnet_rnet(struct sl_pnet *net)
{
	return &net->rnet;
}

void sl_pnet_get_stats(const struct sl_pnet *net, struct sl_pnet_stats *st)
{
	*st = net->st;
	st->bulk_bytes_fetched = __atomic_load_n(&net->st.bulk_bytes_fetched, __ATOMIC_RELAXED);
	st->bulk_fetch_retries = __atomic_load_n(&net->st.bulk_fetch_retries, __ATOMIC_RELAXED);
	st->peers_connected = 0;
	st->incoming = 0;
	for (const struct conn *c = net->conns; c != NULL; c = c->next) {
		if (c->closing || !c->ready)
			continue;
		if (c->kind == C_OUT)
			st->peers_connected++;
		else if (c->kind == C_IN)
			st->incoming++;
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	struct sl_pnet *net = h->data;
	if (--net->open_handles == 0 && net->close_cb != NULL)
		net->close_cb(net->close_arg);
}

static void on_backoff_closed(uv_handle_t *h)
{
	struct peer *p = h->data;
	struct sl_pnet *net = p->net;
	free(p->host);
	free(p->q.p);
	free(p->spare.p);
	free(p->qe);
	free(p);
	if (--net->open_handles == 0 && net->close_cb != NULL)
		net->close_cb(net->close_arg);
}

static void pnet_free(void *arg)
{
	struct sl_pnet *net = arg;
	void (*cb)(void *) = net->user_cb;
	void *cb_arg = net->user_arg;
	pthread_mutex_destroy(&net->mu);
	free(net->peers);
	free(net->listen_host);
	free(net);
	if (cb != NULL)
		cb(cb_arg);
}

void sl_pnet_close(struct sl_pnet *net, void (*cb)(void *arg), void *arg)
{
	net->closing = true;
	net->user_cb = cb;
	net->user_arg = arg;
	net->close_cb = pnet_free;
	net->close_arg = net;
	for (struct conn *c = net->conns; c != NULL; c = c->next)
		conn_close(c);
	for (size_t i = 0; i < net->npeers; i++) {
		uv_timer_stop(&net->peers[i]->backoff);
		uv_close((uv_handle_t *)&net->peers[i]->backoff, on_backoff_closed);
	}
	if (net->listening)
		uv_close((uv_handle_t *)&net->listener, on_handle_closed);
	uv_close((uv_handle_t *)&net->flush, on_handle_closed);
	uv_close((uv_handle_t *)&net->sweep, on_handle_closed);
}
