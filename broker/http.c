/* The http listener. See http.h. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "errors.h"
#include "http.h"

struct sl_http {
	struct MHD_Daemon *d;
	struct sl_http_status *st;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *type,
			     const char *body)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result rv = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return rv;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **state)
{
	struct sl_http *h = cls;
	(void)version;
	(void)upload;
	(void)state;
	if (*upload_size != 0)
		return reply(conn, 413, "text/plain", "no request body expected\n");
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(conn, 405, "text/plain", "only GET\n");
	if (strcmp(url, "/healthz") == 0)
		return reply(conn, 200, "text/plain", "ok\n");
	bool ready = atomic_load(&h->st->ready) != 0;
	if (strcmp(url, "/readyz") == 0) {
		char body[256];
		const char *why = atomic_load(&h->st->not_ready_why);
		snprintf(body, sizeof(body), "not ready: %s\n", why != NULL ? why : "starting");
		return ready ? reply(conn, 200, "text/plain", "ready\n")
			     : reply(conn, 503, "text/plain", body);
	}
	if (strcmp(url, "/metrics") == 0) {
		unsigned long long node = (unsigned long long)h->st->node_id;
		char *body = NULL;
		size_t len = 0;
		FILE *out = open_memstream(&body, &len);
		if (out == NULL)
			return MHD_NO;
		fprintf(out,
			"# HELP sluice_node_up 1 while sluiced runs.\n"
			"# TYPE sluice_node_up gauge\n"
			"sluice_node_up{node=\"%llu\"} 1\n"
			"# HELP sluice_node_ready 1 once /readyz answers 200.\n"
			"# TYPE sluice_node_ready gauge\n"
			"sluice_node_ready{node=\"%llu\"} %d\n"
			"# HELP sluice_node_start_time_seconds When sluiced started (Unix time).\n"
			"# TYPE sluice_node_start_time_seconds gauge\n"
			"sluice_node_start_time_seconds{node=\"%llu\"} %.3f\n",
			node, node, ready ? 1 : 0, node,
			(double)atomic_load(&h->st->started_ms) / 1000.0);
		pthread_mutex_lock(&h->st->mu);
		if (h->st->extra != NULL)
			fputs(h->st->extra, out);
		pthread_mutex_unlock(&h->st->mu);
		if (fclose(out) != 0) {
			free(body);
			return MHD_NO;
		}
		struct MHD_Response *r =
			MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
		if (r == NULL) {
			free(body);
			return MHD_NO;
		}
		MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
		enum MHD_Result rv = MHD_queue_response(conn, 200, r);
		MHD_destroy_response(r);
		return rv;
	}
	return reply(conn, 404, "text/plain", "not found (try /healthz, /readyz, /metrics)\n");
}

void sl_http_status_init(struct sl_http_status *st, uint64_t node_id, const char *not_ready_why)
{
	st->node_id = node_id;
	atomic_store(&st->not_ready_why, not_ready_why);
	atomic_store(&st->ready, 0);
	atomic_store(&st->started_ms, 0);
	pthread_mutex_init(&st->mu, NULL);
	st->extra = NULL;
}

void sl_http_status_destroy(struct sl_http_status *st)
{
	pthread_mutex_destroy(&st->mu);
	free(st->extra);
	st->extra = NULL;
}

void sl_http_publish(struct sl_http_status *st, char *text)
{
	pthread_mutex_lock(&st->mu);
	char *old = st->extra;
	st->extra = text;
	pthread_mutex_unlock(&st->mu);
	free(old);
}

int sl_http_start(const char *host, unsigned port, struct sl_http_status *st, struct sl_http **out,
		  char *errmsg)
{
	*out = NULL;
	struct addrinfo *ai;
	int rv = sl_listen_addr("http", host, port, &ai, errmsg);
	if (rv != SL_OK)
		return rv;
	struct sl_http *h = calloc(1, sizeof(*h));
	if (h == NULL) {
		freeaddrinfo(ai);
		snprintf(errmsg, SL_ERRMSG_SIZE, "http: out of memory");
		return SL_ENOMEM;
	}
	h->st = st;
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	errno = 0;
	h->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h,
				MHD_OPTION_SOCK_ADDR, ai->ai_addr,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
				MHD_OPTION_END);
	int e = errno;
	freeaddrinfo(ai);
	if (h->d == NULL) {
		free(h);
		snprintf(errmsg, SL_ERRMSG_SIZE, "http: cannot listen on %s:%u: %s", host, port,
			 e ? strerror(e) : "libmicrohttpd refused");
		return SL_EIO;
	}
	*out = h;
	return SL_OK;
}

void sl_http_stop(struct sl_http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
