/* The metadata cache the producer and the consumer share (internal.h):
 * topics, their partitions' leaders, and the nodes' addresses, from
 * Metadata answers. Everything here runs on the loop thread. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* At most one Metadata call every this long: a partition whose leader
 * moved is asked about by every batch that failed on it. */
#define MIN_INTERVAL_MS 100

struct cl_mnode {
	int64_t id;
	struct cl_addr addr;
};

struct cl_meta {
	struct cl_op op; /* carries the Metadata calls; never finishes */
	uv_timer_t timer;
	struct cl_mtopic *topics;
	struct cl_mnode *nodes;
	size_t nnodes;
	struct cl_service *services;
	bool inflight, again;
	int64_t controller; /* the controller's leader; -1: not known */
	uint64_t last_at;
	unsigned rotate;
};

static void topic_free(struct cl_mtopic *t)
{
	free(t->name);
	free(t->leader);
	free(t);
}

static void on_closed(uv_handle_t *h)
{
	struct cl_meta *m = h->data;
	while (m->topics != NULL) {
		struct cl_mtopic *t = m->topics;
		m->topics = t->next;
		topic_free(t);
	}
	free(m->nodes);
	free(m);
}

static void on_timer(uv_timer_t *t);

int cl_meta_init(sluice_client_t *cl)
{
	struct cl_meta *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return SL_ENOMEM;
	m->op.cl = cl;
	m->op.deadline = m->op.next_at = UINT64_MAX;
	m->controller = -1;
	uv_timer_init(&cl->loop, &m->timer);
	m->timer.data = m;
	cl->meta = m;
	return SL_OK;
}

void cl_meta_close(sluice_client_t *cl)
{
	uv_close((uv_handle_t *)&cl->meta->timer, on_closed);
	cl->meta = NULL;
}

void cl_service_add(sluice_client_t *cl, struct cl_service *svc)
{
	svc->next = cl->meta->services;
	cl->meta->services = svc;
}

void cl_service_remove(sluice_client_t *cl, struct cl_service *svc)
{
	if (cl->meta == NULL)
		return;
	for (struct cl_service **pp = &cl->meta->services; *pp != NULL; pp = &(*pp)->next)
		if (*pp == svc) {
			*pp = svc->next;
			return;
		}
}

static void kick_all(struct cl_meta *m)
{
	/* A kick may remove its own service (a closing producer): walk a
	 * snapshot of the next pointers. */
	for (struct cl_service *s = m->services, *n; s != NULL; s = n) {
		n = s->next;
		s->kick(s);
	}
}

static struct cl_mtopic *find(struct cl_meta *m, const char *name)
{
	for (struct cl_mtopic *t = m->topics; t != NULL; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

static const struct cl_mnode *node(struct cl_meta *m, int64_t id)
{
	for (size_t i = 0; i < m->nnodes; i++)
		if (m->nodes[i].id == id)
			return &m->nodes[i];
	return NULL;
}

static void take_topic(struct cl_mtopic *t, const Sluice__TopicInfo *ti)
{
	t->known = true;
	t->err = ti->error_code;
	snprintf(t->errmsg, sizeof(t->errmsg), "%s", ti->error_message);
	if (t->err != SL_OK)
		return;
	size_t n = ti->n_partitions;
	if ((int32_t)n != t->nparts) {
		int64_t *l = malloc((n + 1) * sizeof(*l));
		if (l == NULL) {
			t->err = SL_ENOMEM;
			snprintf(t->errmsg, sizeof(t->errmsg), "out of memory");
			return;
		}
		free(t->leader);
		t->leader = l;
		t->nparts = (int32_t)n;
	}
	for (size_t i = 0; i < n; i++)
		t->leader[i] = -1;
	for (size_t i = 0; i < n; i++) {
		const Sluice__PartitionInfo *p = ti->partitions[i];
		if (p->partition < n)
			t->leader[p->partition] = p->leader >= 1 ? p->leader : -1;
	}
}

static void on_metadata(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	sluice_client_t *cl = op->cl;
	struct cl_meta *m = cl->meta;
	(void)msg;
	if (m == NULL || err == SL_ECANCELED)
		return;
	m->inflight = false;
	const Sluice__MetadataResponse *r = resp != NULL ? resp->metadata_response : NULL;
	if (err == SL_OK && r != NULL && resp->error_code == 0 && r->error_code == 0) {
		struct cl_mnode *nodes = calloc(r->n_nodes + 1, sizeof(*nodes));
		if (nodes != NULL) {
			size_t k = 0;
			for (size_t i = 0; i < r->n_nodes; i++) {
				const Sluice__NodeInfo *n = r->nodes[i];
				if (strlen(n->host) >= CL_HOST_MAX)
					continue;
				nodes[k].id = (int64_t)n->node_id;
				snprintf(nodes[k].addr.host, CL_HOST_MAX, "%s", n->host);
				nodes[k].addr.port = (int)n->port;
				k++;
			}
			free(m->nodes);
			m->nodes = nodes;
			m->nnodes = k;
		}
		m->controller = r->controller_id;
		for (size_t i = 0; i < r->n_topics; i++) {
			struct cl_mtopic *t = find(m, r->topics[i]->name);
			if (t != NULL)
				take_topic(t, r->topics[i]);
		}
	} else {
		m->again = true; /* that node could not answer: ask another */
		if (err != SL_OK)
			m->last_at = 0; /* at once: it is down, not busy */
	}
	if (m->again)
		cl_meta_refresh(cl);
	kick_all(m);
}

static void send_metadata(struct cl_meta *m)
{
	sluice_client_t *cl = m->op.cl;
	size_t n = 0;
	for (struct cl_mtopic *t = m->topics; t != NULL; t = t->next)
		n++;
	char **names = calloc(n + 1, sizeof(*names));
	if (names == NULL) {
		m->again = true;
		uv_timer_start(&m->timer, on_timer, MIN_INTERVAL_MS, 0);
		return;
	}
	n = 0;
	for (struct cl_mtopic *t = m->topics; t != NULL; t = t->next)
		names[n++] = t->name;
	Sluice__MetadataRequest mr = SLUICE__METADATA_REQUEST__INIT;
	mr.n_topics = n;
	mr.topics = names;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__METADATA;
	env.body_case = SLUICE__ENVELOPE__BODY_METADATA_REQUEST;
	env.metadata_request = &mr;
	m->inflight = true;
	m->again = false;
	m->last_at = cl_now(cl);
	const struct sluice_conf *cf = &cl->conf;
	cl_call(&m->op, &cf->boot[m->rotate++ % cf->nboot], &env, 0, on_metadata);
	free(names);
}

static void on_timer(uv_timer_t *t)
{
	struct cl_meta *m = t->data;
	if (!m->inflight)
		send_metadata(m);
}

void cl_meta_refresh(sluice_client_t *cl)
{
	struct cl_meta *m = cl->meta;
	if (m == NULL || cl->shutting)
		return;
	if (m->inflight) {
		m->again = true;
		return;
	}
	if (uv_is_active((uv_handle_t *)&m->timer))
		return;
	uint64_t now = cl_now(cl);
	if (m->last_at != 0 && now < m->last_at + MIN_INTERVAL_MS)
		uv_timer_start(&m->timer, on_timer, m->last_at + MIN_INTERVAL_MS - now, 0);
	else
		send_metadata(m);
}

struct cl_mtopic *cl_meta_topic(sluice_client_t *cl, const char *name)
{
	struct cl_meta *m = cl->meta;
	if (m == NULL)
		return NULL;
	struct cl_mtopic *t = find(m, name);
	if (t != NULL)
		return t->known ? t : NULL;
	t = calloc(1, sizeof(*t));
	if (t == NULL || (t->name = strdup(name)) == NULL) {
		free(t);
		return NULL;
	}
	t->next = m->topics;
	m->topics = t;
	cl_meta_refresh(cl);
	return NULL;
}

bool cl_meta_leader(sluice_client_t *cl, const char *topic, int32_t partition,
		    struct cl_addr *out, int64_t *id)
{
	struct cl_mtopic *t = cl_meta_topic(cl, topic);
	if (t == NULL)
		return false;
	if (t->err == SL_OK && partition >= 0 && partition < t->nparts &&
	    t->leader[partition] >= 1) {
		const struct cl_mnode *n = node(cl->meta, t->leader[partition]);
		if (n != NULL) {
			*out = n->addr;
			*id = n->id;
			return true;
		}
	}
	cl_meta_refresh(cl);
	return false;
}

void cl_meta_set_leader(sluice_client_t *cl, const char *topic, int32_t partition, int64_t id,
			const char *host, uint32_t port)
{
	struct cl_meta *m = cl->meta;
	struct cl_mtopic *t = m != NULL ? find(m, topic) : NULL;
	if (t == NULL || t->err != SL_OK || partition < 0 || partition >= t->nparts)
		return;
	if (id < 1 || host == NULL || host[0] == '\0' || port == 0 || port > 65535 ||
	    strlen(host) >= CL_HOST_MAX) {
		t->leader[partition] = -1;
		cl_meta_refresh(cl);
		return;
	}
	t->leader[partition] = id;
	if (node(m, id) == NULL) {
		struct cl_mnode *nodes = realloc(m->nodes, (m->nnodes + 1) * sizeof(*nodes));
		if (nodes == NULL)
			return;
		m->nodes = nodes;
		nodes[m->nnodes].id = id;
		snprintf(nodes[m->nnodes].addr.host, CL_HOST_MAX, "%s", host);
		nodes[m->nnodes].addr.port = (int)port;
		m->nnodes++;
	} else {
		for (size_t i = 0; i < m->nnodes; i++)
			if (m->nodes[i].id == id) {
				snprintf(m->nodes[i].addr.host, CL_HOST_MAX, "%s", host);
				m->nodes[i].addr.port = (int)port;
			}
	}
}

void cl_meta_forget_leader(sluice_client_t *cl, const char *topic, int32_t partition, int64_t id)
{
	struct cl_meta *m = cl->meta;
	struct cl_mtopic *t = m != NULL ? find(m, topic) : NULL;
	if (t == NULL || t->err != SL_OK || partition < 0 || partition >= t->nparts ||
	    t->leader[partition] != id)
		return;
	t->leader[partition] = -1;
	cl_meta_refresh(cl);
}

bool cl_meta_controller(sluice_client_t *cl, struct cl_addr *out)
{
	struct cl_meta *m = cl->meta;
	const struct cl_mnode *n = m != NULL && m->controller >= 1 ? node(m, m->controller) : NULL;
	if (n != NULL) {
		*out = n->addr;
		return true;
	}
	cl_meta_refresh(cl);
	return false;
}

void cl_meta_forget_controller(sluice_client_t *cl)
{
	if (cl->meta != NULL)
		cl->meta->controller = -1;
	cl_meta_refresh(cl);
}

bool cl_meta_resolve(sluice_client_t *cl, const char *name, int32_t *nparts, int *err,
		     int *last_err, char *errmsg)
{
	if (*nparts >= 0 || *err != SL_OK)
		return false;
	struct cl_mtopic *m = cl_meta_topic(cl, name);
	if (m == NULL)
		return false; /* asked for */
	if (m->err == SL_OK && m->nparts > 0) {
		*nparts = m->nparts;
		return true;
	}
	if (m->err != SL_OK && !sl_err_retriable(m->err)) {
		*err = m->err;
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s", m->errmsg);
		return true;
	}
	*last_err = m->err;
	cl_meta_refresh(cl); /* not there yet (just created?): ask again */
	return false;
}
