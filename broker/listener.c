/* The client listener. See listener.h. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <netdb.h>
#include <string.h>

#include "addr.h"
#include "blog.h"
#include "errors.h"
#include "frame.h"
#include "listener.h"

#define READ_CHUNK (64 * 1024)
#define PAUSE_ABOVE (16u << 20)
#define RESUME_BELOW (4u << 20)

struct conn {
	uv_tcp_t tcp;
	struct sl_listener *l;
	struct conn *prev, *next;
	uint8_t *buf;
	size_t len, cap;
	bool paused, closing;
	bool handle_closed; /* freed once no reply is owed either */
	unsigned owed;      /* requests whose reply has not come yet */
	char peer[64];
};

struct wreq {
	uv_write_t req;
	uint8_t *head;
	void (*release)(void *arg);
	void *release_arg;
};

struct sl_listener {
	uv_loop_t *loop;
	uv_tcp_t server;
	const struct sl_api_node *node;
	struct conn conns; /* circular, sentinel */
	unsigned handles;  /* open handles: the server and every connection */
	void (*close_cb)(void *arg);
	void *close_arg;
	bool closing;
	struct sl_listener_stats st;
};

static void maybe_freed(struct sl_listener *l)
{
	if (!l->closing || l->handles > 0)
		return;
	void (*cb)(void *) = l->close_cb;
	void *arg = l->close_arg;
	free(l);
	if (cb != NULL)
		cb(arg);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct sl_listener *l = c->l;
	free(c->buf);
	c->buf = NULL;
	c->handle_closed = true;
	c->l = NULL; /* may be freed before a reply still owed arrives */
	if (c->owed == 0)
		free(c);
	l->handles--;
	l->st.open--;
	maybe_freed(l);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	c->prev->next = c->next;
	c->next->prev = c->prev;
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void on_write(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct conn *c = req->handle->data;
	if (w->release != NULL)
		w->release(w->release_arg);
	free(w->head);
	free(w);
	if (status != 0) {
		SL_BLOG(SL_BLOG_DEBUG, "client", "closing peer=%s: write: %s", c->peer,
			uv_strerror(status));
		conn_close(c);
		return;
	}
	if (c->paused && !c->closing && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < RESUME_BELOW) {
		c->paused = false;
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	}
}

static void reply(void *arg, uint8_t *head, size_t head_len, const struct sl_api_data *data)
{
	struct conn *c = arg;
	size_t nseg = data != NULL ? data->nseg : 0;
	c->owed--;
	struct wreq *w = NULL;
	uv_buf_t *bufs = NULL;
	if (head != NULL && !c->closing) {
		w = malloc(sizeof(*w));
		bufs = malloc((1 + nseg) * sizeof(*bufs));
	}
	if (w == NULL || bufs == NULL) { /* no frame, closing, or no memory */
		if (data != NULL && data->release != NULL)
			data->release(data->release_arg);
		bool failed = head != NULL && !c->closing;
		free(w);
		free(bufs);
		free(head);
		if (failed)
			conn_close(c);
		else if (c->closing && c->handle_closed && c->owed == 0)
			free(c);
		return;
	}
	*w = (struct wreq){ .head = head, .release = data != NULL ? data->release : NULL,
			    .release_arg = data != NULL ? data->release_arg : NULL };
	bufs[0] = uv_buf_init((char *)head, (unsigned)head_len);
	for (size_t i = 0; i < nseg; i++)
		bufs[1 + i] = uv_buf_init(data->seg[i].iov_base, (unsigned)data->seg[i].iov_len);
	int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, (unsigned)(1 + nseg), on_write);
	free(bufs); /* libuv copied the array */
	if (rv != 0) {
		if (w->release != NULL)
			w->release(w->release_arg);
		free(head);
		free(w);
		conn_close(c);
	}
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
	struct conn *c = h->data;
	(void)hint;
	if (c->cap - c->len < READ_CHUNK) {
		size_t ncap = c->len + READ_CHUNK;
		uint8_t *p = realloc(c->buf, ncap);
		if (p == NULL) {
			*out = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
			return;
		}
		c->buf = p;
		c->cap = ncap;
	}
	*out = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* Handles every whole frame in the buffer. */
static void drain(struct conn *c)
{
	struct sl_listener *l = c->l;
	size_t off = 0;
	while (!c->closing) {
		size_t flen;
		int rv = sl_frame_peek(c->buf + off, c->len - off, l->node->max_frame_bytes, &flen);
		if (rv == SL_EMESSAGE_TOO_LARGE) {
			l->st.closed_oversized++;
			SL_BLOG(SL_BLOG_WARN, "client",
				"closing peer=%s: frame of %zu bytes exceeds max_frame_bytes %u", c->peer,
				flen, l->node->max_frame_bytes);
			conn_close(c);
			return;
		}
		if (rv != SL_OK)
			break;
		l->st.frames++;
		c->owed++;
		if (sl_api_handle(l->node, c->buf + off, flen, reply, c) != SL_OK) {
			c->owed--; /* no reply comes */
			SL_BLOG(SL_BLOG_ERROR, "client", "closing peer=%s: out of memory", c->peer);
			conn_close(c);
			return;
		}
		off += flen;
	}
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
	if (!c->closing && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > PAUSE_ABOVE) {
		c->paused = true;
		uv_read_stop((uv_stream_t *)&c->tcp);
	}
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = s->data;
	(void)b;
	if (n < 0) {
		if (n != UV_EOF)
			SL_BLOG(SL_BLOG_DEBUG, "client", "closing peer=%s: read: %s", c->peer,
				uv_strerror((int)n));
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	drain(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct sl_listener *l = server->data;
	if (status != 0 || l->closing)
		return;
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return; /* the connection waits in the backlog */
	c->l = l;
	uv_tcp_init(l->loop, &c->tcp);
	c->tcp.data = c;
	l->handles++;
	l->st.open++;
	c->next = l->conns.next;
	c->prev = &l->conns;
	l->conns.next->prev = c;
	l->conns.next = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	l->st.accepted++;
	struct sockaddr_storage sa;
	int len = sizeof(sa);
	snprintf(c->peer, sizeof(c->peer), "?");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
		char host[48];
		if (sa.ss_family == AF_INET) {
			uv_ip4_name((struct sockaddr_in *)&sa, host, sizeof(host));
			snprintf(c->peer, sizeof(c->peer), "%s:%d", host,
				 ntohs(((struct sockaddr_in *)&sa)->sin_port));
		} else if (sa.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&sa, host, sizeof(host));
			snprintf(c->peer, sizeof(c->peer), "[%s]:%d", host,
				 ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
		}
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int sl_listener_start(uv_loop_t *loop, const char *host, unsigned port,
		      const struct sl_api_node *node, struct sl_listener **out, char *errmsg)
{
	*out = NULL;
	struct addrinfo *ai;
	int rv = sl_listen_addr("client listener", host, port, &ai, errmsg);
	if (rv != SL_OK)
		return rv;
	struct sl_listener *l = calloc(1, sizeof(*l));
	if (l == NULL) {
		freeaddrinfo(ai);
		snprintf(errmsg, SL_ERRMSG_SIZE, "client listener: out of memory");
		return SL_ENOMEM;
	}
	l->loop = loop;
	l->node = node;
	l->conns.next = l->conns.prev = &l->conns;
	uv_tcp_init(loop, &l->server);
	l->server.data = l;
	l->handles = 1;
	rv = uv_tcp_bind(&l->server, ai->ai_addr, 0);
	freeaddrinfo(ai);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)&l->server, 511, on_connection);
	if (rv != 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "client listener: cannot listen on %s:%u: %s", host,
			 port, uv_strerror(rv));
		sl_listener_close(l, NULL, NULL);
		return SL_EIO;
	}
	*out = l;
	return SL_OK;
}

void sl_listener_get_stats(const struct sl_listener *l, struct sl_listener_stats *st)
{
	*st = l->st;
}

static void on_server_closed(uv_handle_t *h)
{
	struct sl_listener *l = h->data;
	l->handles--;
	maybe_freed(l);
}

void sl_listener_close(struct sl_listener *l, void (*cb)(void *arg), void *arg)
{
	l->closing = true;
	l->close_cb = cb;
	l->close_arg = arg;
	while (l->conns.next != &l->conns)
		conn_close(l->conns.next);
	uv_close((uv_handle_t *)&l->server, on_server_closed);
}
