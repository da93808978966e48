/* Admin calls: topics and the cluster. See sluice.h.
 *
 * Each call is an operation of steps on the I/O thread (internal.h):
 *   create, delete  Metadata from any node (the controller's leader and
 *                   its address), the write to that leader, then (create)
 *                   Metadata until every partition has a leader;
 *   list            Metadata;
 *   describe        Metadata for the topic, then ListOffsets to each
 *                   partition's leader;
 *   cluster         DescribeCluster.
 * Retriable errors (no controller leader yet, NOT_CONTROLLER, a node not
 * ready, a lost connection, a topic not yet known right after creation)
 * are retried with backoff until request.timeout.ms. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* How long describe waits for a topic it does not find (it may have just
 * been created through another node). */
#define UNKNOWN_TOPIC_MS 3000
#define MAX_RF 16

struct rpart {
	int32_t leader;
	unsigned nrep, nisr;
	int32_t rep[MAX_RF], isr[MAX_RF];
	int64_t log_start, log_end;
};

struct rnode {
	int32_t id, port, leaders, replicas;
	char *host, *rack;
	int alive;
};

struct sluice_report {
	int err;
	char msg[SL_ERRMSG_SIZE];
	char **names;
	int32_t nnames;
	struct rpart *parts;
	int32_t nparts;
	char cluster_id[64];
	int32_t controller, under_replicated;
	struct rnode *nodes;
	int32_t nnodes;
};

struct sluice_admin {
	sluice_client_t *cl;
};

enum { K_CREATE, K_DELETE, K_LIST, K_DESCRIBE, K_CLUSTER };
enum { S_META, S_WRITE, S_WAIT, S_OFFSETS };

struct admin_state {
	int kind, stage;
	char *topic;
	int32_t partitions;
	int16_t replicas;
	char **kv; /* key, value, ..., NULL */
	size_t nkv;
	struct cl_addr controller;
	bool lost_write;     /* a write may have applied though its answer was lost */
	uint64_t unknown_since;
};

void cl_report_error(sluice_report_t *r, int err, const char *msg)
{
	r->err = err;
	snprintf(r->msg, sizeof(r->msg), "%s", err == SL_OK ? "" : msg);
}

static void report_clear_topic(sluice_report_t *r)
{
	for (int32_t i = 0; i < r->nnames; i++)
		free(r->names[i]);
	free(r->names);
	free(r->parts);
	r->names = NULL;
	r->parts = NULL;
	r->nnames = r->nparts = 0;
}

void sluice_report_destroy(sluice_report_t *r)
{
	if (r == NULL)
		return;
	report_clear_topic(r);
	for (int32_t i = 0; i < r->nnodes; i++) {
		free(r->nodes[i].host);
		free(r->nodes[i].rack);
	}
	free(r->nodes);
	free(r);
}

static struct admin_state *st_of(struct cl_op *op)
{
	return op->state;
}

static void free_state(struct cl_op *op)
{
	struct admin_state *s = op->state;
	if (s == NULL)
		return;
	free(s->topic);
	for (size_t i = 0; i < s->nkv; i++)
		free(s->kv[i]);
	free(s->kv);
	free(s);
}

/* ---- Reading responses ------------------------------------------------- */

/* The envelope-level error of a response, or the call's. */
static int env_err(int err, Sluice__Envelope *resp, const char **msg)
{
	if (err != SL_OK)
		return err;
	if (resp->error_code != 0) {
		*msg = resp->error_message;
		return resp->error_code;
	}
	return SL_OK;
}

/* Whether a response is usable: else the op retries (a retriable error)
 * or ends with the error. body: the API's response in it, if any. */
static bool usable(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp,
		   const void *body, const char *api)
{
	err = env_err(err, resp, &msg);
	if (err == SL_OK && body != NULL)
		return true;
	if (err == SL_OK)
		cl_finish(op, SL_EINVALID_REQUEST, "the node answered %s with another API", api);
	else if (sl_err_retriable(err))
		cl_retry(op, err, "%s", msg);
	else
		cl_finish(op, err, "%s", msg);
	return false;
}

static const Sluice__TopicInfo *find_topic(const Sluice__MetadataResponse *m, const char *name)
{
	for (size_t i = 0; i < m->n_topics; i++)
		if (strcmp(m->topics[i]->name, name) == 0)
			return m->topics[i];
	return NULL;
}

/* The client address of node id in a Metadata response. */
static bool node_addr(const Sluice__MetadataResponse *m, int64_t id, struct cl_addr *a)
{
	for (size_t i = 0; i < m->n_nodes; i++)
		if ((int64_t)m->nodes[i]->node_id == id && strlen(m->nodes[i]->host) < CL_HOST_MAX) {
			snprintf(a->host, sizeof(a->host), "%s", m->nodes[i]->host);
			a->port = (int)m->nodes[i]->port;
			return true;
		}
	return false;
}

static int copy_ids(int32_t *dst, const uint64_t *src, size_t n)
{
	size_t k = n < MAX_RF ? n : MAX_RF;
	for (size_t i = 0; i < k; i++)
		dst[i] = (int32_t)src[i];
	return (int)k;
}

/* The topic's partitions into the report. */
static int take_topic(sluice_report_t *r, const Sluice__TopicInfo *t)
{
	report_clear_topic(r);
	r->names = calloc(1, sizeof(*r->names));
	r->parts = calloc(t->n_partitions + 1, sizeof(*r->parts));
	if (r->names == NULL || r->parts == NULL || (r->names[0] = strdup(t->name)) == NULL)
		return SL_ENOMEM;
	r->nnames = 1;
	for (size_t i = 0; i < t->n_partitions; i++) {
		const Sluice__PartitionInfo *p = t->partitions[i];
		if (p->partition >= t->n_partitions)
			continue;
		struct rpart *q = &r->parts[p->partition];
		q->leader = p->leader >= 1 ? (int32_t)p->leader : -1;
		q->nrep = (unsigned)copy_ids(q->rep, p->replicas, p->n_replicas);
		q->nisr = (unsigned)copy_ids(q->isr, p->isr, p->n_isr);
		q->log_start = q->log_end = -1;
	}
	r->nparts = (int32_t)t->n_partitions;
	return SL_OK;
}

static void metadata_req(Sluice__Envelope *env, Sluice__MetadataRequest *mr, char **names,
			 size_t n)
{
	sluice__envelope__init(env);
	sluice__metadata_request__init(mr);
	mr->n_topics = n;
	mr->topics = names;
	env->api_key = SLUICE__API_KEY__METADATA;
	env->body_case = SLUICE__ENVELOPE__BODY_METADATA_REQUEST;
	env->metadata_request = mr;
}

/* ---- Steps -------------------------------------------------------------- */

static void step(struct cl_op *op);

static void on_write(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	struct admin_state *s = st_of(op);
	err = env_err(err, resp, &msg);
	if (err == SL_OK && resp->body_case != SLUICE__ENVELOPE__BODY_CREATE_TOPICS_RESPONSE &&
	    resp->body_case != SLUICE__ENVELOPE__BODY_DELETE_TOPICS_RESPONSE) {
		cl_finish(op, SL_EINVALID_REQUEST, "the controller answered with another API");
		return;
	}
	if (err != SL_OK) {
		s->stage = S_META;
		/* Sent, but no answer: it may have applied. */
		s->lost_write = s->lost_write || resp == NULL;
		if (sl_err_retriable(err))
			cl_retry(op, err, "%s", msg);
		else
			cl_finish(op, err, "%s", msg);
		return;
	}
	const Sluice__TopicResult *tr = NULL;
	if (resp->create_topics_response != NULL && resp->create_topics_response->n_topics == 1)
		tr = resp->create_topics_response->topics[0];
	if (resp->delete_topics_response != NULL && resp->delete_topics_response->n_topics == 1)
		tr = resp->delete_topics_response->topics[0];
	if (tr == NULL) {
		cl_finish(op, SL_EINVALID_REQUEST, "the controller's answer holds no result");
		return;
	}
	int terr = tr->error_code;
	/* An earlier attempt may have applied: its effect is what we asked. */
	if (s->lost_write && ((s->kind == K_CREATE && terr == SL_ETOPIC_ALREADY_EXISTS) ||
			      (s->kind == K_DELETE && terr == SL_EUNKNOWN_TOPIC_OR_PARTITION)))
		terr = SL_OK;
	if (terr == SL_OK || (s->kind == K_CREATE && terr == SL_EREQUEST_TIMED_OUT)) {
		if (s->kind == K_DELETE) {
			cl_ok(op);
			return;
		}
		s->stage = S_WAIT; /* created: wait for every leader */
		op->backoff_ms = 0;
		step(op);
		return;
	}
	s->stage = S_META;
	if (terr == SL_ENOT_CONTROLLER || terr == SL_ENOT_READY)
		cl_retry(op, terr, "%s", tr->error_message);
	else
		cl_finish(op, terr, "%s", tr->error_message);
}

static void send_write(struct cl_op *op)
{
	struct admin_state *s = st_of(op);
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__CreateTopicsRequest cr = SLUICE__CREATE_TOPICS_REQUEST__INIT;
	Sluice__DeleteTopicsRequest dr = SLUICE__DELETE_TOPICS_REQUEST__INIT;
	Sluice__NewTopic nt = SLUICE__NEW_TOPIC__INIT;
	Sluice__NewTopic *ntp = &nt;
	size_t nc = s->nkv / 2;
	Sluice__ConfigEntry *ce = calloc(nc + 1, sizeof(*ce));
	Sluice__ConfigEntry **cep = calloc(nc + 1, sizeof(*cep));
	if (ce == NULL || cep == NULL) {
		free(ce);
		free(cep);
		cl_retry(op, SL_ENOMEM, "out of memory");
		return;
	}
	uint64_t left = op->deadline - cl_now(op->cl);
	if (s->kind == K_CREATE) {
		nt.name = s->topic;
		nt.partitions = (uint32_t)s->partitions;
		nt.replication_factor = (uint32_t)s->replicas;
		for (size_t i = 0; i < nc; i++) {
			sluice__config_entry__init(&ce[i]);
			ce[i].name = s->kv[2 * i];
			ce[i].value = s->kv[2 * i + 1];
			cep[i] = &ce[i];
		}
		nt.n_configs = nc;
		nt.configs = cep;
		cr.n_topics = 1;
		cr.topics = &ntp;
		cr.timeout_ms = (uint32_t)(left > 100 ? left - 100 : 1);
		env.api_key = SLUICE__API_KEY__CREATE_TOPICS;
		env.body_case = SLUICE__ENVELOPE__BODY_CREATE_TOPICS_REQUEST;
		env.create_topics_request = &cr;
	} else {
		dr.n_names = 1;
		dr.names = &s->topic;
		env.api_key = SLUICE__API_KEY__DELETE_TOPICS;
		env.body_case = SLUICE__ENVELOPE__BODY_DELETE_TOPICS_REQUEST;
		env.delete_topics_request = &dr;
	}
	cl_call(op, &s->controller, &env, on_write);
	free(ce);
	free(cep);
}

static void on_offsets(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	err = env_err(err, resp, &msg);
	if (err != SL_OK || resp->list_offsets_response == NULL) {
		/* Offsets are best effort: the partition shows -1. */
		if (op->waiting == 0)
			cl_ok(op);
		return;
	}
	const Sluice__ListOffsetsResponse *lr = resp->list_offsets_response;
	for (size_t t = 0; t < lr->n_topics; t++)
		for (size_t i = 0; i < lr->topics[t]->n_partitions; i++) {
			const Sluice__PartitionOffsets *po = lr->topics[t]->partitions[i];
			if (po->error_code != 0 || po->partition >= (uint32_t)op->rep->nparts)
				continue;
			op->rep->parts[po->partition].log_start = po->log_start;
			op->rep->parts[po->partition].log_end = po->log_end;
		}
	if (op->waiting == 0)
		cl_ok(op);
}

/* ListOffsets to each leader, for the partitions it leads. */
static void send_offsets(struct cl_op *op, const Sluice__MetadataResponse *m)
{
	struct admin_state *s = st_of(op);
	sluice_report_t *r = op->rep;
	uint32_t *parts = malloc(((size_t)r->nparts + 1) * sizeof(*parts));
	bool *asked = calloc((size_t)r->nparts + 1, sizeof(*asked));
	if (parts == NULL || asked == NULL) {
		free(parts);
		free(asked);
		cl_ok(op); /* offsets unknown */
		return;
	}
	s->stage = S_OFFSETS;
	op->waiting++; /* hold the op until every request is out */
	for (int32_t p = 0; p < r->nparts; p++) {
		int32_t leader = r->parts[p].leader;
		struct cl_addr a;
		if (asked[p] || leader < 1 || !node_addr(m, leader, &a))
			continue;
		size_t n = 0;
		for (int32_t q = p; q < r->nparts; q++)
			if (!asked[q] && r->parts[q].leader == leader) {
				asked[q] = true;
				parts[n++] = (uint32_t)q;
			}
		Sluice__TopicPartitions tp = SLUICE__TOPIC_PARTITIONS__INIT;
		Sluice__TopicPartitions *tpp = &tp;
		tp.name = s->topic;
		tp.n_partitions = n;
		tp.partitions = parts;
		Sluice__ListOffsetsRequest lr = SLUICE__LIST_OFFSETS_REQUEST__INIT;
		lr.n_topics = 1;
		lr.topics = &tpp;
		Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
		env.api_key = SLUICE__API_KEY__LIST_OFFSETS;
		env.body_case = SLUICE__ENVELOPE__BODY_LIST_OFFSETS_REQUEST;
		env.list_offsets_request = &lr;
		cl_call(op, &a, &env, on_offsets);
	}
	free(parts);
	free(asked);
	if (--op->waiting == 0)
		cl_ok(op);
}

static void on_metadata(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	struct admin_state *s = st_of(op);
	if (!usable(op, err, msg, resp, resp != NULL ? resp->metadata_response : NULL, "Metadata"))
		return;
	const Sluice__MetadataResponse *m = resp->metadata_response;
	if (s->kind == K_LIST) {
		sluice_report_t *r = op->rep;
		report_clear_topic(r);
		r->names = calloc(m->n_topics + 1, sizeof(*r->names));
		for (size_t i = 0; r->names != NULL && i < m->n_topics; i++)
			if ((r->names[r->nnames] = strdup(m->topics[i]->name)) != NULL)
				r->nnames++;
		if (r->names == NULL || (size_t)r->nnames != m->n_topics)
			cl_finish(op, SL_ENOMEM, "out of memory");
		else
			cl_ok(op);
		return;
	}
	if (s->stage == S_META) { /* create, delete: find the controller */
		if (m->controller_id < 1 || !node_addr(m, m->controller_id, &s->controller)) {
			cl_retry(op, SL_ENOT_CONTROLLER, "no controller leader is known yet");
			return;
		}
		s->stage = S_WRITE;
		send_write(op);
		return;
	}
	const Sluice__TopicInfo *t = find_topic(m, s->topic);
	int terr = t == NULL ? SL_EUNKNOWN_TOPIC_OR_PARTITION : t->error_code;
	if (terr == SL_EUNKNOWN_TOPIC_OR_PARTITION) {
		uint64_t now = cl_now(op->cl);
		if (s->unknown_since == 0)
			s->unknown_since = now;
		if (s->kind == K_DESCRIBE && now - s->unknown_since >= UNKNOWN_TOPIC_MS)
			cl_finish(op, terr, "topic '%s' does not exist", s->topic);
		else
			cl_retry(op, terr, "topic '%s' does not exist", s->topic);
		return;
	}
	if (terr != SL_OK) {
		cl_finish(op, terr, "%s", t->error_message);
		return;
	}
	if (take_topic(op->rep, t) != SL_OK) {
		cl_finish(op, SL_ENOMEM, "out of memory");
		return;
	}
	int32_t none = 0;
	for (int32_t p = 0; p < op->rep->nparts; p++)
		none += op->rep->parts[p].leader < 1;
	if (s->kind == K_CREATE && none > 0) {
		op->backoff_ms = 0; /* poll at the shortest interval */
		cl_retry(op, SL_EREQUEST_TIMED_OUT, "%d of %d partitions have no leader yet", none,
			 op->rep->nparts);
		return;
	}
	if (s->kind == K_DESCRIBE)
		send_offsets(op, m);
	else
		cl_ok(op);
}

static void on_cluster(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	if (!usable(op, err, msg, resp, resp != NULL ? resp->describe_cluster_response : NULL,
		    "DescribeCluster"))
		return;
	const Sluice__DescribeClusterResponse *d = resp->describe_cluster_response;
	sluice_report_t *r = op->rep;
	snprintf(r->cluster_id, sizeof(r->cluster_id), "%s", d->cluster_id);
	r->controller = d->controller_id >= 1 ? (int32_t)d->controller_id : -1;
	r->under_replicated = (int32_t)d->under_replicated_partitions;
	r->nodes = calloc(d->n_nodes + 1, sizeof(*r->nodes));
	if (r->nodes == NULL) {
		cl_finish(op, SL_ENOMEM, "out of memory");
		return;
	}
	for (size_t i = 0; i < d->n_nodes; i++) {
		struct rnode *n = &r->nodes[r->nnodes];
		n->id = (int32_t)d->nodes[i]->node_id;
		n->port = (int32_t)d->nodes[i]->port;
		n->alive = d->nodes[i]->alive;
		n->host = strdup(d->nodes[i]->host);
		n->rack = strdup(d->nodes[i]->rack);
		r->nnodes++;
		if (n->host == NULL || n->rack == NULL) {
			cl_finish(op, SL_ENOMEM, "out of memory");
			return;
		}
		for (size_t k = 0; k < d->n_load; k++)
			if (d->load[k]->node_id == d->nodes[i]->node_id) {
				n->leaders = (int32_t)d->load[k]->leaders;
				n->replicas = (int32_t)d->load[k]->replicas;
			}
	}
	cl_ok(op);
}

static void step(struct cl_op *op)
{
	struct admin_state *s = st_of(op);
	Sluice__Envelope env;
	Sluice__MetadataRequest mr;
	if (s->kind == K_CLUSTER) {
		Sluice__DescribeClusterRequest dc = SLUICE__DESCRIBE_CLUSTER_REQUEST__INIT;
		sluice__envelope__init(&env);
		env.api_key = SLUICE__API_KEY__DESCRIBE_CLUSTER;
		env.body_case = SLUICE__ENVELOPE__BODY_DESCRIBE_CLUSTER_REQUEST;
		env.describe_cluster_request = &dc;
		cl_call(op, cl_any(op), &env, on_cluster);
		return;
	}
	if (s->stage == S_WRITE) {
		send_write(op);
		return;
	}
	bool all = s->kind == K_LIST;
	metadata_req(&env, &mr, all ? NULL : &s->topic, all ? 0 : 1);
	cl_call(op, cl_any(op), &env, on_metadata);
}

/* ---- The calls ------------------------------------------------------------ */

sluice_admin_t *sluice_admin_new(sluice_client_t *cl)
{
	if (cl == NULL)
		return NULL;
	sluice_admin_t *a = calloc(1, sizeof(*a));
	if (a != NULL)
		a->cl = cl;
	return a;
}

void sluice_admin_destroy(sluice_admin_t *a)
{
	free(a);
}

/* A new op of kind with its state; NULL when out of memory. */
static struct cl_op *op_new(int kind, const char *topic, sluice_done_cb cb, void *opaque)
{
	struct cl_op *op = calloc(1, sizeof(*op));
	struct admin_state *s = calloc(1, sizeof(*s));
	sluice_report_t *r = calloc(1, sizeof(*r));
	if (op == NULL || s == NULL || r == NULL ||
	    (topic != NULL && (s->topic = strdup(topic)) == NULL)) {
		free(op);
		free(s);
		free(r);
		return NULL;
	}
	r->controller = -1;
	s->kind = kind;
	s->stage = S_META;
	op->state = s;
	op->free_state = free_state;
	op->step = step;
	op->rep = r;
	op->cb = cb;
	op->opaque = opaque;
	return op;
}

static void op_discard(struct cl_op *op)
{
	free_state(op);
	sluice_report_destroy(op->rep);
	free(op);
}

static int start(sluice_admin_t *a, struct cl_op *op, sluice_report_t **out)
{
	if (out != NULL)
		*out = NULL;
	return cl_submit(a->cl, op, out);
}

sluice_err_t sluice_topic_create(sluice_admin_t *a, const char *topic, int32_t partitions,
				 int16_t replicas, const char *const kv[], sluice_done_cb cb,
				 void *opaque, sluice_report_t **out)
{
	if (a == NULL || topic == NULL || partitions < 1 || replicas < 1)
		return SL_EINVALID_ARGUMENT;
	size_t nkv = 0;
	while (kv != NULL && kv[nkv] != NULL)
		nkv++;
	if (nkv % 2 != 0)
		return SL_EINVALID_ARGUMENT; /* a key without its value */
	struct cl_op *op = op_new(K_CREATE, topic, cb, opaque);
	if (op == NULL)
		return SL_ENOMEM;
	struct admin_state *s = op->state;
	s->partitions = partitions;
	s->replicas = replicas;
	s->kv = calloc(nkv + 1, sizeof(*s->kv));
	if (s->kv == NULL) {
		op_discard(op);
		return SL_ENOMEM;
	}
	for (; s->nkv < nkv; s->nkv++)
		if ((s->kv[s->nkv] = strdup(kv[s->nkv])) == NULL) {
			op_discard(op);
			return SL_ENOMEM;
		}
	return start(a, op, out);
}

sluice_err_t sluice_topic_delete(sluice_admin_t *a, const char *topic, sluice_done_cb cb,
				 void *opaque, sluice_report_t **out)
{
	if (a == NULL || topic == NULL)
		return SL_EINVALID_ARGUMENT;
	struct cl_op *op = op_new(K_DELETE, topic, cb, opaque);
	return op == NULL ? SL_ENOMEM : start(a, op, out);
}

sluice_err_t sluice_topic_list(sluice_admin_t *a, sluice_done_cb cb, void *opaque,
			       sluice_report_t **out)
{
	if (a == NULL)
		return SL_EINVALID_ARGUMENT;
	struct cl_op *op = op_new(K_LIST, NULL, cb, opaque);
	return op == NULL ? SL_ENOMEM : start(a, op, out);
}

sluice_err_t sluice_topic_describe(sluice_admin_t *a, const char *topic, sluice_done_cb cb,
				   void *opaque, sluice_report_t **out)
{
	if (a == NULL || topic == NULL)
		return SL_EINVALID_ARGUMENT;
	struct cl_op *op = op_new(K_DESCRIBE, topic, cb, opaque);
	if (op != NULL)
		((struct admin_state *)op->state)->stage = S_WAIT; /* Metadata for the topic */
	return op == NULL ? SL_ENOMEM : start(a, op, out);
}

sluice_err_t sluice_cluster_describe(sluice_admin_t *a, sluice_done_cb cb, void *opaque,
				     sluice_report_t **out)
{
	if (a == NULL)
		return SL_EINVALID_ARGUMENT;
	struct cl_op *op = op_new(K_CLUSTER, NULL, cb, opaque);
	return op == NULL ? SL_ENOMEM : start(a, op, out);
}

/* ---- Report accessors ------------------------------------------------------ */

static const struct rpart *part(const sluice_report_t *r, int32_t p)
{
	return r != NULL && p >= 0 && p < r->nparts ? &r->parts[p] : NULL;
}

static const struct rnode *node(const sluice_report_t *r, int32_t i)
{
	return r != NULL && i >= 0 && i < r->nnodes ? &r->nodes[i] : NULL;
}

const char *sluice_report_errmsg(const sluice_report_t *r)
{
	return r != NULL ? r->msg : "";
}

int32_t sluice_report_topic_count(const sluice_report_t *r)
{
	return r != NULL ? r->nnames : 0;
}

const char *sluice_report_topic_name(const sluice_report_t *r, int32_t i)
{
	return r != NULL && i >= 0 && i < r->nnames ? r->names[i] : NULL;
}

int32_t sluice_report_partition_count(const sluice_report_t *r)
{
	return r != NULL ? r->nparts : 0;
}

int32_t sluice_report_leader(const sluice_report_t *r, int32_t p)
{
	return part(r, p) != NULL ? part(r, p)->leader : -1;
}

static size_t ids(const int32_t *src, unsigned n, int32_t *dst, size_t cap)
{
	for (size_t i = 0; i < n && i < cap; i++)
		dst[i] = src[i];
	return n;
}

size_t sluice_report_replicas(const sluice_report_t *r, int32_t p, int32_t *dst, size_t cap)
{
	return part(r, p) != NULL ? ids(part(r, p)->rep, part(r, p)->nrep, dst, cap) : 0;
}

size_t sluice_report_isr(const sluice_report_t *r, int32_t p, int32_t *dst, size_t cap)
{
	return part(r, p) != NULL ? ids(part(r, p)->isr, part(r, p)->nisr, dst, cap) : 0;
}

int64_t sluice_report_log_start(const sluice_report_t *r, int32_t p)
{
	return part(r, p) != NULL ? part(r, p)->log_start : -1;
}

int64_t sluice_report_log_end(const sluice_report_t *r, int32_t p)
{
	return part(r, p) != NULL ? part(r, p)->log_end : -1;
}

const char *sluice_report_cluster_id(const sluice_report_t *r)
{
	return r != NULL ? r->cluster_id : "";
}

int32_t sluice_report_controller(const sluice_report_t *r)
{
	return r != NULL ? r->controller : -1;
}

int32_t sluice_report_under_replicated(const sluice_report_t *r)
{
	return r != NULL ? r->under_replicated : 0;
}

int32_t sluice_report_node_count(const sluice_report_t *r)
{
	return r != NULL ? r->nnodes : 0;
}

int32_t sluice_report_node_id(const sluice_report_t *r, int32_t i)
{
	return node(r, i) != NULL ? node(r, i)->id : -1;
}

const char *sluice_report_node_host(const sluice_report_t *r, int32_t i)
{
	return node(r, i) != NULL ? node(r, i)->host : NULL;
}

int32_t sluice_report_node_port(const sluice_report_t *r, int32_t i)
{
	return node(r, i) != NULL ? node(r, i)->port : -1;
}

const char *sluice_report_node_rack(const sluice_report_t *r, int32_t i)
{
	return node(r, i) != NULL ? node(r, i)->rack : NULL;
}

int sluice_report_node_alive(const sluice_report_t *r, int32_t i)
{
	return node(r, i) != NULL ? node(r, i)->alive : 0;
}

int32_t sluice_report_node_leaders(const sluice_report_t *r, int32_t i)
{
	return node(r, i) != NULL ? node(r, i)->leaders : 0;
}

int32_t sluice_report_node_replicas(const sluice_report_t *r, int32_t i)
{
	return node(r, i) != NULL ? node(r, i)->replicas : 0;
}
