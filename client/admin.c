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
	/* describe: partitions whose leader did not give its offsets (it
	 * moved since the Metadata), and how often Metadata was asked again. */
	unsigned offsets_missing, offsets_tries;
	/* cluster: the first failure of its two calls. */
	int call_err;
	char call_msg[SL_ERRMSG_SIZE];
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

static void report_clear_cluster(sluice_report_t *r);

void sluice_report_destroy(sluice_report_t *r)
{
	if (r == NULL)
		return;
	report_clear_topic(r);
	report_clear_cluster(r);
	cl_report_clear_groups(r);
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
bool cl_usable(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp,
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
bool cl_node_addr(const Sluice__MetadataResponse *m, int64_t id, struct cl_addr *a)
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
		q->raft_group = p->raft_group;
		q->nrep = (unsigned)copy_ids(q->rep, p->replicas, p->n_replicas);
		q->nisr = (unsigned)copy_ids(q->isr, p->isr, p->n_isr);
		q->log_start = q->log_end = -1;
	}
	r->nparts = (int32_t)t->n_partitions;
	return SL_OK;
}

void cl_metadata_req(Sluice__Envelope *env, Sluice__MetadataRequest *mr, char **names,
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
	/* CreateTopics answers once every leader is there, or at timeout_ms. */
	cl_call(op, &s->controller, &env, s->kind == K_CREATE ? cr.timeout_ms : 0, on_write);
	free(ce);
	free(cep);
}

/* Offsets are best effort: a partition whose leader could not say shows
 * -1. But a leader that just moved answers NOT_LEADER: Metadata is asked
 * again (a heartbeat or two later it names the new leader), a few times. */
#define OFFSETS_TRIES 3

static void offsets_done(struct cl_op *op)
{
	struct admin_state *s = st_of(op);
	if (s->call_err == SL_ECANCELED) {
		cl_finish(op, SL_ECANCELED, "%s", s->call_msg);
		return;
	}
	if (s->offsets_missing > 0 && s->offsets_tries < OFFSETS_TRIES &&
	    cl_now(op->cl) + 1000 < op->deadline) {
		s->offsets_tries++;
		s->stage = S_WAIT;
		cl_retry(op, SL_ENOT_LEADER, "%u partitions' leaders moved", s->offsets_missing);
		return;
	}
	cl_ok(op);
}

static void on_offsets(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	struct admin_state *s = st_of(op);
	err = env_err(err, resp, &msg);
	if (err == SL_OK && resp->list_offsets_response == NULL)
		err = SL_EINVALID_REQUEST, msg = "the node answered ListOffsets with another API";
	if (err != SL_OK) {
		if (err == SL_ECANCELED) {
			s->call_err = err;
			snprintf(s->call_msg, sizeof(s->call_msg), "%s", msg);
		} else if (sl_err_retriable(err)) {
			s->offsets_missing++;
		}
		if (op->waiting == 0)
			offsets_done(op);
		return;
	}
	const Sluice__ListOffsetsResponse *lr = resp->list_offsets_response;
	for (size_t t = 0; t < lr->n_topics; t++)
		for (size_t i = 0; i < lr->topics[t]->n_partitions; i++) {
			const Sluice__PartitionOffsets *po = lr->topics[t]->partitions[i];
			if (po->partition >= (uint32_t)op->rep->nparts)
				continue;
			if (po->error_code != 0) {
				s->offsets_missing += sl_err_retriable(po->error_code);
				continue;
			}
			op->rep->parts[po->partition].log_start = po->log_start;
			op->rep->parts[po->partition].log_end = po->log_end;
		}
	if (op->waiting == 0)
		offsets_done(op);
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
	s->offsets_missing = 0;
	op->waiting++; /* hold the op until every request is out */
	for (int32_t p = 0; p < r->nparts; p++) {
		int32_t leader = r->parts[p].leader;
		struct cl_addr a;
		if (asked[p] || leader < 1 || !cl_node_addr(m, leader, &a))
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
		cl_call(op, &a, &env, 0, on_offsets);
	}
	free(parts);
	free(asked);
	if (--op->waiting == 0)
		offsets_done(op);
}

static void on_metadata(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	struct admin_state *s = st_of(op);
	if (!cl_usable(op, err, msg, resp, resp != NULL ? resp->metadata_response : NULL, "Metadata"))
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
		if (m->controller_id < 1 || !cl_node_addr(m, m->controller_id, &s->controller)) {
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

/* cluster: DescribeCluster (nodes, load) and Metadata (which partitions
 * are under-replicated), both from one node so that they agree. */
static void report_clear_cluster(sluice_report_t *r)
{
	for (int32_t i = 0; i < r->nnodes; i++) {
		free(r->nodes[i].host);
		free(r->nodes[i].rack);
	}
	free(r->nodes);
	for (int32_t i = 0; i < r->nurp; i++)
		free(r->urp[i].topic);
	free(r->urp);
	r->nodes = NULL;
	r->urp = NULL;
	r->nnodes = r->nurp = 0;
}

static void cluster_done(struct cl_op *op)
{
	struct admin_state *s = st_of(op);
	int err = s->call_err;
	if (err == SL_OK) {
		op->rep->under_replicated = op->rep->nurp;
		cl_ok(op);
		return;
	}
	report_clear_cluster(op->rep);
	if (sl_err_retriable(err))
		cl_retry(op, err, "%s", s->call_msg);
	else
		cl_finish(op, err, "%s", s->call_msg);
}

/* The first of the two calls' failures is the one reported. */
static bool cluster_failed(struct cl_op *op, int err, const char *msg)
{
	struct admin_state *s = st_of(op);
	if (err == SL_OK)
		return false;
	if (s->call_err == SL_OK) {
		s->call_err = err;
		snprintf(s->call_msg, sizeof(s->call_msg), "%s", msg);
	}
	if (op->waiting == 0)
		cluster_done(op);
	return true;
}

static void on_cluster(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	err = env_err(err, resp, &msg);
	if (err == SL_OK && resp->describe_cluster_response == NULL)
		err = SL_EINVALID_REQUEST, msg = "the node answered DescribeCluster with another API";
	if (cluster_failed(op, err, msg))
		return;
	const Sluice__DescribeClusterResponse *d = resp->describe_cluster_response;
	sluice_report_t *r = op->rep;
	snprintf(r->cluster_id, sizeof(r->cluster_id), "%s", d->cluster_id);
	r->controller = d->controller_id >= 1 ? (int32_t)d->controller_id : -1;
	r->nodes = calloc(d->n_nodes + 1, sizeof(*r->nodes));
	for (size_t i = 0; r->nodes != NULL && i < d->n_nodes; i++) {
		struct rnode *n = &r->nodes[r->nnodes];
		n->id = (int32_t)d->nodes[i]->node_id;
		n->port = (int32_t)d->nodes[i]->port;
		n->alive = d->nodes[i]->alive;
		n->host = strdup(d->nodes[i]->host);
		n->rack = strdup(d->nodes[i]->rack);
		r->nnodes++;
		if (n->host == NULL || n->rack == NULL)
			break;
		for (size_t k = 0; k < d->n_load; k++)
			if (d->load[k]->node_id == d->nodes[i]->node_id) {
				n->leaders = (int32_t)d->load[k]->leaders;
				n->replicas = (int32_t)d->load[k]->replicas;
			}
	}
	if (r->nodes == NULL || r->nnodes != (int32_t)d->n_nodes ||
	    (r->nnodes > 0 &&
	     (r->nodes[r->nnodes - 1].host == NULL || r->nodes[r->nnodes - 1].rack == NULL))) {
		cluster_failed(op, SL_ENOMEM, "out of memory");
		return;
	}
	if (op->waiting == 0)
		cluster_done(op);
}

static void on_cluster_meta(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	err = env_err(err, resp, &msg);
	if (err == SL_OK && resp->metadata_response == NULL)
		err = SL_EINVALID_REQUEST, msg = "the node answered Metadata with another API";
	if (cluster_failed(op, err, msg))
		return;
	const Sluice__MetadataResponse *m = resp->metadata_response;
	sluice_report_t *r = op->rep;
	size_t n = 0;
	for (size_t t = 0; t < m->n_topics; t++)
		for (size_t i = 0; i < m->topics[t]->n_partitions; i++)
			n += m->topics[t]->partitions[i]->n_isr < m->topics[t]->partitions[i]->n_replicas;
	r->urp = calloc(n + 1, sizeof(*r->urp));
	for (size_t t = 0; r->urp != NULL && t < m->n_topics; t++)
		for (size_t i = 0; i < m->topics[t]->n_partitions; i++) {
			const Sluice__PartitionInfo *p = m->topics[t]->partitions[i];
			if (p->n_isr >= p->n_replicas)
				continue;
			struct rurp *u = &r->urp[r->nurp];
			if ((u->topic = strdup(m->topics[t]->name)) == NULL) {
				cluster_failed(op, SL_ENOMEM, "out of memory");
				return;
			}
			r->nurp++;
			u->partition = (int32_t)p->partition;
			u->part.leader = p->leader >= 1 ? (int32_t)p->leader : -1;
			u->part.nrep = (unsigned)copy_ids(u->part.rep, p->replicas, p->n_replicas);
			u->part.nisr = (unsigned)copy_ids(u->part.isr, p->isr, p->n_isr);
			u->part.log_start = u->part.log_end = -1;
		}
	if (r->urp == NULL) {
		cluster_failed(op, SL_ENOMEM, "out of memory");
		return;
	}
	if (op->waiting == 0)
		cluster_done(op);
}

static void step(struct cl_op *op)
{
	struct admin_state *s = st_of(op);
	Sluice__Envelope env;
	Sluice__MetadataRequest mr;
	if (s->kind == K_CLUSTER) {
		const struct cl_addr *a = cl_any(op);
		Sluice__DescribeClusterRequest dc = SLUICE__DESCRIBE_CLUSTER_REQUEST__INIT;
		report_clear_cluster(op->rep);
		s->call_err = SL_OK;
		s->call_msg[0] = '\0';
		op->waiting++; /* hold the op until both calls are out */
		sluice__envelope__init(&env);
		env.api_key = SLUICE__API_KEY__DESCRIBE_CLUSTER;
		env.body_case = SLUICE__ENVELOPE__BODY_DESCRIBE_CLUSTER_REQUEST;
		env.describe_cluster_request = &dc;
		cl_call(op, a, &env, 0, on_cluster);
		cl_metadata_req(&env, &mr, NULL, 0);
		cl_call(op, a, &env, 0, on_cluster_meta);
		if (--op->waiting == 0)
			cluster_done(op);
		return;
	}
	if (s->stage == S_WRITE) {
		send_write(op);
		return;
	}
	bool all = s->kind == K_LIST;
	cl_metadata_req(&env, &mr, all ? NULL : &s->topic, all ? 0 : 1);
	cl_call(op, cl_any(op), &env, 0, on_metadata);
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
	if (out != NULL)
		*out = NULL; /* also when the call does not start */
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
	if (out != NULL)
		*out = NULL; /* also when the call does not start */
	if (a == NULL || topic == NULL)
		return SL_EINVALID_ARGUMENT;
	struct cl_op *op = op_new(K_DELETE, topic, cb, opaque);
	return op == NULL ? SL_ENOMEM : start(a, op, out);
}

sluice_err_t sluice_topic_list(sluice_admin_t *a, sluice_done_cb cb, void *opaque,
			       sluice_report_t **out)
{
	if (out != NULL)
		*out = NULL; /* also when the call does not start */
	if (a == NULL)
		return SL_EINVALID_ARGUMENT;
	struct cl_op *op = op_new(K_LIST, NULL, cb, opaque);
	return op == NULL ? SL_ENOMEM : start(a, op, out);
}

sluice_err_t sluice_topic_describe(sluice_admin_t *a, const char *topic, sluice_done_cb cb,
				   void *opaque, sluice_report_t **out)
{
	if (out != NULL)
		*out = NULL; /* also when the call does not start */
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
	if (out != NULL)
		*out = NULL; /* also when the call does not start */
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

int64_t sluice_report_raft_group(const sluice_report_t *r, int32_t p)
{
	return part(r, p) != NULL && part(r, p)->raft_group > 0 ? (int64_t)part(r, p)->raft_group : -1;
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

static const struct rurp *urp(const sluice_report_t *r, int32_t i)
{
	return r != NULL && i >= 0 && i < r->nurp ? &r->urp[i] : NULL;
}

const char *sluice_report_under_replicated_topic(const sluice_report_t *r, int32_t i)
{
	return urp(r, i) != NULL ? urp(r, i)->topic : NULL;
}

int32_t sluice_report_under_replicated_partition(const sluice_report_t *r, int32_t i)
{
	return urp(r, i) != NULL ? urp(r, i)->partition : -1;
}

int32_t sluice_report_under_replicated_leader(const sluice_report_t *r, int32_t i)
{
	return urp(r, i) != NULL ? urp(r, i)->part.leader : -1;
}

size_t sluice_report_under_replicated_replicas(const sluice_report_t *r, int32_t i, int32_t *dst,
					       size_t cap)
{
	return urp(r, i) != NULL ? ids(urp(r, i)->part.rep, urp(r, i)->part.nrep, dst, cap) : 0;
}

size_t sluice_report_under_replicated_isr(const sluice_report_t *r, int32_t i, int32_t *dst,
					  size_t cap)
{
	return urp(r, i) != NULL ? ids(urp(r, i)->part.isr, urp(r, i)->part.nisr, dst, cap) : 0;
}
