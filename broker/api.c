/* The client protocol's requests. See api.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "controller.h"
#include "coord.h"
#include "group.h"
#include "data.h"
#include "frame.h"
#include "meta.h"
#include "partitions.h"
#include "storage.h"

#define SERVER_SOFTWARE "sluiced 0.1.0"

typedef int (*handler_fn)(const struct sl_api_node *node, const Sluice__Envelope *req,
			  sl_api_reply_fn reply, void *arg);
/* A handler of an API whose request carries record data (data.h). */
typedef int (*data_handler_fn)(const struct sl_api_node *node, const struct sl_frame *f,
			       sl_api_reply_fn reply, void *arg);

static int api_versions(const struct sl_api_node *node, const Sluice__Envelope *req,
			sl_api_reply_fn reply, void *arg);
static int metadata(const struct sl_api_node *node, const Sluice__Envelope *req,
		    sl_api_reply_fn reply, void *arg);
static int describe_cluster(const struct sl_api_node *node, const Sluice__Envelope *req,
			    sl_api_reply_fn reply, void *arg);
static int init_producer_id(const struct sl_api_node *node, const Sluice__Envelope *req,
			    sl_api_reply_fn reply, void *arg);
static int find_coordinator(const struct sl_api_node *node, const Sluice__Envelope *req,
			    sl_api_reply_fn reply, void *arg);
static int create_topics(const struct sl_api_node *node, const Sluice__Envelope *req,
			 sl_api_reply_fn reply, void *arg);
static int delete_topics(const struct sl_api_node *node, const Sluice__Envelope *req,
			 sl_api_reply_fn reply, void *arg);
static int describe_topics(const struct sl_api_node *node, const Sluice__Envelope *req,
			   sl_api_reply_fn reply, void *arg);
static int list_offsets(const struct sl_api_node *node, const Sluice__Envelope *req,
			sl_api_reply_fn reply, void *arg);

/* The APIs this node serves: versions, the request body, whether the node
 * must have joined (else NOT_READY), the handler. */
static const struct {
	Sluice__ApiKey key;
	const char *name; /* in metrics */
	uint32_t min, max;
	Sluice__Envelope__BodyCase body;
	bool needs_meta;
	handler_fn handle;
	data_handler_fn handle_data; /* instead of handle: the API carries data */
} served[] = {
	{ SLUICE__API_KEY__API_VERSIONS, "ApiVersions", 0, 0, SLUICE__ENVELOPE__BODY_API_VERSIONS_REQUEST, false,
	  api_versions, NULL },
	{ SLUICE__API_KEY__METADATA, "Metadata", 0, 0, SLUICE__ENVELOPE__BODY_METADATA_REQUEST, true, metadata, NULL },
	{ SLUICE__API_KEY__CREATE_TOPICS, "CreateTopics", 0, 0, SLUICE__ENVELOPE__BODY_CREATE_TOPICS_REQUEST, true,
	  create_topics, NULL },
	{ SLUICE__API_KEY__DELETE_TOPICS, "DeleteTopics", 0, 0, SLUICE__ENVELOPE__BODY_DELETE_TOPICS_REQUEST, true,
	  delete_topics, NULL },
	{ SLUICE__API_KEY__DESCRIBE_TOPICS, "DescribeTopics", 0, 0, SLUICE__ENVELOPE__BODY_DESCRIBE_TOPICS_REQUEST,
	  true, describe_topics, NULL },
	{ SLUICE__API_KEY__DESCRIBE_CLUSTER, "DescribeCluster", 0, 0, SLUICE__ENVELOPE__BODY_DESCRIBE_CLUSTER_REQUEST,
	  true, describe_cluster, NULL },
	{ SLUICE__API_KEY__LIST_OFFSETS, "ListOffsets", 0, 0, SLUICE__ENVELOPE__BODY_LIST_OFFSETS_REQUEST, true,
	  list_offsets, NULL },
	/* The data path needs no caught-up controller: a partition's leader
	 * serves it through a controller failover (data.h). */
	{ SLUICE__API_KEY__PRODUCE, "Produce", 0, 0, SLUICE__ENVELOPE__BODY_PRODUCE_REQUEST, false, NULL,
	  sl_data_produce },
	{ SLUICE__API_KEY__FETCH, "Fetch", 0, 0, SLUICE__ENVELOPE__BODY_FETCH_REQUEST, false, NULL,
	  sl_data_fetch },
	{ SLUICE__API_KEY__INIT_PRODUCER_ID, "InitProducerId", 0, 0,
	  SLUICE__ENVELOPE__BODY_INIT_PRODUCER_ID_REQUEST, true, init_producer_id, NULL },
	{ SLUICE__API_KEY__FIND_COORDINATOR, "FindCoordinator", 0, 0,
	  SLUICE__ENVELOPE__BODY_FIND_COORDINATOR_REQUEST, true, find_coordinator, NULL },
	/* The group coordinator (coord.h). */
	{ SLUICE__API_KEY__CONSUMER_GROUP_HEARTBEAT, "ConsumerGroupHeartbeat", 0, 0,
	  SLUICE__ENVELOPE__BODY_CONSUMER_GROUP_HEARTBEAT_REQUEST, true, sl_coord_heartbeat, NULL },
	{ SLUICE__API_KEY__OFFSET_COMMIT, "OffsetCommit", 0, 0,
	  SLUICE__ENVELOPE__BODY_OFFSET_COMMIT_REQUEST, true, sl_coord_offset_commit, NULL },
	{ SLUICE__API_KEY__OFFSET_FETCH, "OffsetFetch", 0, 0, SLUICE__ENVELOPE__BODY_OFFSET_FETCH_REQUEST,
	  true, sl_coord_offset_fetch, NULL },
	{ SLUICE__API_KEY__LIST_GROUPS, "ListGroups", 0, 0, SLUICE__ENVELOPE__BODY_LIST_GROUPS_REQUEST, true,
	  sl_coord_list_groups, NULL },
	{ SLUICE__API_KEY__DESCRIBE_GROUP, "DescribeGroup", 0, 0,
	  SLUICE__ENVELOPE__BODY_DESCRIBE_GROUP_REQUEST, true, sl_coord_describe_group, NULL },
	{ SLUICE__API_KEY__DELETE_GROUP, "DeleteGroup", 0, 0, SLUICE__ENVELOPE__BODY_DELETE_GROUP_REQUEST,
	  true, sl_coord_delete_group, NULL },
};

#define NSERVED (sizeof(served) / sizeof(served[0]))

/* Requests per API (the last slot: APIs not served) and their latency,
 * from the frame's arrival to its response, as a Prometheus histogram.
 * Loop thread only. */
static const double bounds[] = { 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30 };
#define NBOUNDS (sizeof(bounds) / sizeof(bounds[0]))
static struct {
	uint64_t count;
	uint64_t le[NBOUNDS]; /* cumulative when printed */
	double sum;
} api_stats[NSERVED + 1];

static void observe(size_t i, uint64_t ns)
{
	double sec = (double)ns / 1e9;
	api_stats[i].count++;
	api_stats[i].sum += sec;
	for (size_t b = 0; b < NBOUNDS; b++)
		if (sec <= bounds[b]) {
			api_stats[i].le[b]++;
			break;
		}
}

void sl_api_metrics(uint64_t node_id, FILE *out)
{
	unsigned long long node = (unsigned long long)node_id;
	fprintf(out, "# HELP sluice_api_requests_total Requests received, per API.\n"
		     "# TYPE sluice_api_requests_total counter\n");
	for (size_t i = 0; i <= NSERVED; i++)
		fprintf(out, "sluice_api_requests_total{node=\"%llu\",api=\"%s\"} %llu\n", node,
			i < NSERVED ? served[i].name : "other",
			(unsigned long long)api_stats[i].count);
	fprintf(out, "# HELP sluice_api_request_duration_seconds From a request's arrival to its "
		     "response, per API.\n"
		     "# TYPE sluice_api_request_duration_seconds histogram\n");
	for (size_t i = 0; i <= NSERVED; i++) {
		const char *name = i < NSERVED ? served[i].name : "other";
		uint64_t cum = 0;
		for (size_t b = 0; b < NBOUNDS; b++) {
			cum += api_stats[i].le[b];
			fprintf(out,
				"sluice_api_request_duration_seconds_bucket{node=\"%llu\",api=\"%s\","
				"le=\"%g\"} %llu\n",
				node, name, bounds[b], (unsigned long long)cum);
		}
		fprintf(out,
			"sluice_api_request_duration_seconds_bucket{node=\"%llu\",api=\"%s\","
			"le=\"+Inf\"} %llu\n"
			"sluice_api_request_duration_seconds_sum{node=\"%llu\",api=\"%s\"} %.6f\n"
			"sluice_api_request_duration_seconds_count{node=\"%llu\",api=\"%s\"} %llu\n",
			node, name, (unsigned long long)api_stats[i].count, node, name, api_stats[i].sum,
			node, name, (unsigned long long)api_stats[i].count);
	}
}

/* A reply that observes its request's latency first. */
struct timed {
	sl_api_reply_fn reply;
	void *arg;
	size_t api;
	uint64_t start;
};

static void timed_reply(void *arg, uint8_t *head, size_t head_len,
			const struct sl_api_data *data)
{
	struct timed *t = arg;
	observe(t->api, uv_hrtime() - t->start);
	t->reply(t->arg, head, head_len, data);
	free(t);
}

int sl_api_send(Sluice__Envelope *env, const struct sl_api_data *data, sl_api_reply_fn reply,
		void *arg)
{
	uint8_t *head;
	size_t head_len;
	int rv = sl_frame_encode(env, data != NULL ? data->seg : NULL, data != NULL ? data->nseg : 0,
				 &head, &head_len);
	if (rv != SL_OK)
		return rv;
	reply(arg, head, head_len, data);
	return SL_OK;
}

static int send_env(Sluice__Envelope *env, sl_api_reply_fn reply, void *arg)
{
	return sl_api_send(env, NULL, reply, arg);
}

/* A response envelope for req (no body yet). */
static void response_of(Sluice__Envelope *env, uint32_t corr, Sluice__ApiKey key, uint32_t version)
{
	sluice__envelope__init(env);
	env->correlation_id = corr;
	env->api_key = key;
	env->api_version = version;
}

void sl_api_response_of(Sluice__Envelope *env, const Sluice__Envelope *req)
{
	response_of(env, req->correlation_id, req->api_key, req->api_version);
}

/* An envelope with only an error. */
static int send_error(uint32_t correlation_id, Sluice__ApiKey key, uint32_t version, int err,
		      const char *msg, sl_api_reply_fn reply, void *arg)
{
	Sluice__Envelope env;
	response_of(&env, correlation_id, key, version);
	env.error_code = err;
	env.error_message = (char *)msg;
	return send_env(&env, reply, arg);
}

/* Whether this node has joined; else a reason. */
static bool joined(const struct sl_api_node *node, const char **why)
{
	if (node->ctl == NULL) {
		*why = "this node runs no controller state";
		return false;
	}
	return sl_controller_ready(node->ctl, why);
}

/* The controller's leader for a response; -1: none known. */
static int64_t controller_id(const struct sl_api_node *node)
{
	uint64_t leader = sl_controller_leader(node->ctl);
	return leader != 0 ? (int64_t)leader : -1;
}

/* ---- ApiVersions ---------------------------------------------------- */

static int api_versions(const struct sl_api_node *node, const Sluice__Envelope *req,
			sl_api_reply_fn reply, void *arg)
{
	Sluice__ApiVersionRange ranges[NSERVED];
	Sluice__ApiVersionRange *rp[NSERVED];
	for (size_t i = 0; i < NSERVED; i++) {
		sluice__api_version_range__init(&ranges[i]);
		ranges[i].api_key = served[i].key;
		ranges[i].min_version = served[i].min;
		ranges[i].max_version = served[i].max;
		rp[i] = &ranges[i];
	}
	Sluice__ApiVersionsResponse r = SLUICE__API_VERSIONS_RESPONSE__INIT;
	r.n_apis = NSERVED;
	r.apis = rp;
	r.max_frame_bytes = node->max_frame_bytes;
	r.server_software = (char *)SERVER_SOFTWARE;
	Sluice__Envelope env;
	response_of(&env, req->correlation_id, req->api_key, req->api_version);
	env.body_case = SLUICE__ENVELOPE__BODY_API_VERSIONS_RESPONSE;
	env.api_versions_response = &r;
	return send_env(&env, reply, arg);
}

/* ---- Metadata and DescribeCluster ------------------------------------- */

/* Protobuf views of the metadata, freed together. */
struct view {
	Sluice__NodeInfo *nodes, **np;
	size_t nnodes;
	Sluice__TopicInfo *topics, **tp;
	size_t ntopics;
	Sluice__PartitionInfo *parts, **pp;
};

static void view_free(struct view *v)
{
	free(v->nodes);
	free(v->np);
	free(v->topics);
	free(v->tp);
	free(v->parts);
	free(v->pp);
	memset(v, 0, sizeof(*v));
}

static int view_nodes(struct view *v, const struct sl_meta *m)
{
	v->nodes = calloc(m->nnodes + 1, sizeof(*v->nodes));
	v->np = calloc(m->nnodes + 1, sizeof(*v->np));
	if (v->nodes == NULL || v->np == NULL)
		return SL_ENOMEM;
	for (size_t i = 0; i < m->nnodes; i++) {
		Sluice__NodeInfo *n = &v->nodes[i];
		sluice__node_info__init(n);
		n->node_id = m->nodes[i].id;
		n->host = (char *)m->nodes[i].host;
		n->port = m->nodes[i].client_port;
		n->rack = (char *)m->nodes[i].rack;
		n->alive = m->nodes[i].alive;
		v->np[i] = n;
	}
	v->nnodes = m->nnodes;
	return SL_OK;
}

/* A partition's leader for clients (sl_parts_client_leader): -1 when
 * none is known. */
static int64_t leader_of(const struct sl_api_node *node, const struct sl_meta *m,
			 const struct sl_meta_partition *p)
{
	return sl_parts_client_leader(node->parts, m, p);
}

static void part_info(const struct sl_api_node *node, Sluice__PartitionInfo *pi,
		      const struct sl_meta *m, const struct sl_meta_partition *p, uint32_t index)
{
	sluice__partition_info__init(pi);
	pi->partition = index;
	pi->leader = leader_of(node, m, p);
	pi->leader_term = p->term;
	pi->raft_group = p->group;
	pi->n_replicas = p->nreplicas;
	pi->replicas = (uint64_t *)p->replicas;
	pi->n_isr = p->nisr;
	pi->isr = (uint64_t *)p->isr;
}

/* Topics named in want (all when n_want is 0); unknown ones get an error. */
static int view_topics(const struct sl_api_node *node, struct view *v, const struct sl_meta *m,
		       char **want, size_t n_want)
{
	size_t nt = n_want > 0 ? n_want : m->ntopics, np = 0;
	for (size_t i = 0; i < nt; i++) {
		const struct sl_meta_topic *t = n_want > 0 ? sl_meta_topic(m, want[i]) : m->topics[i];
		np += t != NULL ? t->npartitions : 0;
	}
	v->topics = calloc(nt + 1, sizeof(*v->topics));
	v->tp = calloc(nt + 1, sizeof(*v->tp));
	v->parts = calloc(np + 1, sizeof(*v->parts));
	v->pp = calloc(np + 1, sizeof(*v->pp));
	if (v->topics == NULL || v->tp == NULL || v->parts == NULL || v->pp == NULL)
		return SL_ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < nt; i++) {
		const struct sl_meta_topic *t = n_want > 0 ? sl_meta_topic(m, want[i]) : m->topics[i];
		Sluice__TopicInfo *ti = &v->topics[i];
		sluice__topic_info__init(ti);
		v->tp[i] = ti;
		if (t == NULL) {
			ti->name = want[i];
			ti->error_code = SL_EUNKNOWN_TOPIC_OR_PARTITION;
			ti->error_message = (char *)"no such topic";
			continue;
		}
		ti->name = (char *)t->name;
		ti->topic_id = t->id;
		ti->n_partitions = t->npartitions;
		ti->partitions = &v->pp[k];
		for (uint32_t p = 0; p < t->npartitions; p++, k++) {
			part_info(node, &v->parts[k], m, &t->parts[p], p);
			v->pp[k] = &v->parts[k];
		}
	}
	v->ntopics = nt;
	return SL_OK;
}

static int metadata(const struct sl_api_node *node, const Sluice__Envelope *req,
		    sl_api_reply_fn reply, void *arg)
{
	const struct sl_meta *m = sl_controller_meta(node->ctl);
	const Sluice__MetadataRequest *mr = req->metadata_request;
	struct view v = { 0 };
	int rv = view_nodes(&v, m);
	if (rv == SL_OK)
		rv = view_topics(node, &v, m, mr->topics, mr->n_topics);
	if (rv == SL_OK) {
		Sluice__MetadataResponse r = SLUICE__METADATA_RESPONSE__INIT;
		r.cluster_id = (char *)m->cluster_id;
		r.controller_id = controller_id(node);
		r.n_nodes = v.nnodes;
		r.nodes = v.np;
		r.n_topics = v.ntopics;
		r.topics = v.tp;
		Sluice__Envelope env;
		response_of(&env, req->correlation_id, req->api_key, req->api_version);
		env.body_case = SLUICE__ENVELOPE__BODY_METADATA_RESPONSE;
		env.metadata_response = &r;
		rv = send_env(&env, reply, arg);
	}
	view_free(&v);
	return rv;
}

static int describe_cluster(const struct sl_api_node *node, const Sluice__Envelope *req,
			    sl_api_reply_fn reply, void *arg)
{
	const struct sl_meta *m = sl_controller_meta(node->ctl);
	struct view v = { 0 };
	Sluice__NodeLoad *load = calloc(m->nnodes + 1, sizeof(*load));
	Sluice__NodeLoad **lp = calloc(m->nnodes + 1, sizeof(*lp));
	int rv = load != NULL && lp != NULL ? view_nodes(&v, m) : SL_ENOMEM;
	if (rv == SL_OK) {
		uint32_t under = 0;
		for (size_t i = 0; i < m->nnodes; i++) {
			sluice__node_load__init(&load[i]);
			load[i].node_id = m->nodes[i].id;
			lp[i] = &load[i];
		}
		for (size_t t = 0; t < m->ntopics; t++)
			for (uint32_t p = 0; p < m->topics[t]->npartitions; p++) {
				const struct sl_meta_partition *pp = &m->topics[t]->parts[p];
				under += pp->nisr < pp->nreplicas;
				for (size_t i = 0; i < m->nnodes; i++) {
					for (unsigned r = 0; r < pp->nreplicas; r++)
						load[i].replicas += pp->replicas[r] == m->nodes[i].id;
					load[i].leaders += pp->leader == m->nodes[i].id;
				}
			}
		Sluice__DescribeClusterResponse r = SLUICE__DESCRIBE_CLUSTER_RESPONSE__INIT;
		r.cluster_id = (char *)m->cluster_id;
		r.controller_id = controller_id(node);
		r.n_nodes = v.nnodes;
		r.nodes = v.np;
		r.n_load = m->nnodes;
		r.load = lp;
		r.under_replicated_partitions = under;
		Sluice__Envelope env;
		response_of(&env, req->correlation_id, req->api_key, req->api_version);
		env.body_case = SLUICE__ENVELOPE__BODY_DESCRIBE_CLUSTER_RESPONSE;
		env.describe_cluster_response = &r;
		rv = send_env(&env, reply, arg);
	}
	free(load);
	free(lp);
	view_free(&v);
	return rv;
}

/* ---- DescribeTopics ------------------------------------------------- */

#define NCONFIGS 5

/* A topic's configs as they take effect: the broker's defaults where the
 * topic has none, -1 for no limit. */
static void effective_configs(const struct sl_meta_topic_config *c, char vals[NCONFIGS][24],
			      Sluice__ConfigEntry ce[NCONFIGS], Sluice__ConfigEntry *cp[NCONFIGS])
{
	struct sl_log_config d;
	sl_log_config_init(&d);
	static const char *const names[NCONFIGS] = { "cleanup.policy", "max.message.bytes",
						     "retention.bytes", "retention.ms",
						     "segment.bytes" };
	uint64_t rb = c->retention_bytes, rm = c->retention_ms;
	snprintf(vals[0], 24, "%s",
		 c->cleanup_policy == SL_CLEANUP_POLICY_COMPACT ? "compact" : "delete");
	snprintf(vals[1], 24, "%llu",
		 (unsigned long long)(c->max_message_bytes ? c->max_message_bytes : d.max_batch_bytes));
	if (rb == 0 ? d.retention_bytes < 0 : rb == UINT64_MAX)
		snprintf(vals[2], 24, "-1");
	else
		snprintf(vals[2], 24, "%llu", (unsigned long long)(rb ? rb : (uint64_t)d.retention_bytes));
	if (rm == 0 ? d.retention_ms < 0 : rm == UINT64_MAX)
		snprintf(vals[3], 24, "-1");
	else
		snprintf(vals[3], 24, "%llu", (unsigned long long)(rm ? rm : (uint64_t)d.retention_ms));
	snprintf(vals[4], 24, "%llu",
		 (unsigned long long)(c->segment_bytes ? c->segment_bytes : d.segment_bytes));
	for (int i = 0; i < NCONFIGS; i++) {
		sluice__config_entry__init(&ce[i]);
		ce[i].name = (char *)names[i];
		ce[i].value = vals[i];
		cp[i] = &ce[i];
	}
}

static int describe_topics(const struct sl_api_node *node, const Sluice__Envelope *req,
			   sl_api_reply_fn reply, void *arg)
{
	const struct sl_meta *m = sl_controller_meta(node->ctl);
	const Sluice__DescribeTopicsRequest *dr = req->describe_topics_request;
	struct view v = { 0 };
	int rv = view_topics(node, &v, m, dr->names, dr->n_names);
	size_t n = v.ntopics;
	Sluice__TopicDescription *td = calloc(n + 1, sizeof(*td));
	Sluice__TopicDescription **tdp = calloc(n + 1, sizeof(*tdp));
	Sluice__ConfigEntry(*ce)[NCONFIGS] = calloc(n + 1, sizeof(*ce));
	Sluice__ConfigEntry *(*cp)[NCONFIGS] = calloc(n + 1, sizeof(*cp));
	char(*vals)[NCONFIGS][24] = calloc(n + 1, sizeof(*vals));
	if (td == NULL || tdp == NULL || ce == NULL || cp == NULL || vals == NULL)
		rv = SL_ENOMEM;
	for (size_t i = 0; rv == SL_OK && i < n; i++) {
		const Sluice__TopicInfo *ti = v.tp[i];
		sluice__topic_description__init(&td[i]);
		tdp[i] = &td[i];
		td[i].name = ti->name;
		td[i].error_code = ti->error_code;
		td[i].error_message = ti->error_message;
		const struct sl_meta_topic *t = sl_meta_topic(m, ti->name);
		if (t == NULL)
			continue;
		td[i].topic_id = t->id;
		td[i].replication_factor = t->rf;
		effective_configs(&t->config, vals[i], ce[i], cp[i]);
		td[i].n_configs = NCONFIGS;
		td[i].configs = cp[i];
		td[i].n_partitions = ti->n_partitions;
		td[i].partitions = ti->partitions;
	}
	if (rv == SL_OK) {
		Sluice__DescribeTopicsResponse r = SLUICE__DESCRIBE_TOPICS_RESPONSE__INIT;
		r.n_topics = n;
		r.topics = tdp;
		Sluice__Envelope env;
		response_of(&env, req->correlation_id, req->api_key, req->api_version);
		env.body_case = SLUICE__ENVELOPE__BODY_DESCRIBE_TOPICS_RESPONSE;
		env.describe_topics_response = &r;
		rv = send_env(&env, reply, arg);
	}
	free(td);
	free(tdp);
	free(ce);
	free(cp);
	free(vals);
	view_free(&v);
	return rv;
}

/* ---- ListOffsets ---------------------------------------------------- */

/* Partitions one request may ask about (a topic without a list counts
 * all of its partitions). */
#define LIST_OFFSETS_MAX 1000000

static void offsets_of(const struct sl_api_node *node, const struct sl_meta *m,
		       const struct sl_meta_topic *t, uint32_t part,
		       const Sluice__ListOffsetsRequest *lr, Sluice__PartitionOffsets *po)
{
	sluice__partition_offsets__init(po);
	po->partition = part;
	po->leader = -1;
	po->log_start = -1;
	po->log_end = -1;
	po->offset = -1;
	if (part >= t->npartitions) {
		po->error_code = SL_EUNKNOWN_TOPIC_OR_PARTITION;
		po->error_message = (char *)"no such partition";
		return;
	}
	const struct sl_meta_partition *p = &t->parts[part];
	po->leader = leader_of(node, m, p);
	if (node->parts != NULL &&
	    sl_parts_offsets(node->parts, p->group, &po->log_start, &po->log_end) == SL_OK) {
		po->leader = (int64_t)node->node_id;
		int rv = lr->by_timestamp
				 ? sl_parts_find_time(node->parts, p->group, lr->timestamp, &po->offset)
				 : SL_OK;
		if (rv != SL_OK) {
			po->error_code = rv == SL_ENOT_LEADER ? rv : SL_ESTORAGE;
			po->error_message = (char *)sl_strerror(rv);
		}
		return;
	}
	po->error_code = SL_ENOT_LEADER;
	po->error_message = (char *)(po->leader > 0 ? "this node does not lead the partition: ask "
						      "the leader"
						    : "the partition has no leader right now");
}

static int list_offsets(const struct sl_api_node *node, const Sluice__Envelope *req,
			sl_api_reply_fn reply, void *arg)
{
	const struct sl_meta *m = sl_controller_meta(node->ctl);
	const Sluice__ListOffsetsRequest *lr = req->list_offsets_request;
	size_t total = 0;
	for (size_t i = 0; i < lr->n_topics && total <= LIST_OFFSETS_MAX; i++) {
		const struct sl_meta_topic *t = sl_meta_topic(m, lr->topics[i]->name);
		total += lr->topics[i]->n_partitions > 0 ? lr->topics[i]->n_partitions
			 : t != NULL			 ? t->npartitions
							 : 0;
	}
	if (total > LIST_OFFSETS_MAX) {
		char why[SL_ERRMSG_SIZE];
		snprintf(why, sizeof(why), "at most %d partitions per ListOffsets request",
			 LIST_OFFSETS_MAX);
		return send_error(req->correlation_id, req->api_key, req->api_version,
				  SL_EINVALID_REQUEST, why, reply, arg);
	}
	Sluice__TopicOffsets *to = calloc(lr->n_topics + 1, sizeof(*to));
	Sluice__TopicOffsets **tp = calloc(lr->n_topics + 1, sizeof(*tp));
	Sluice__PartitionOffsets *po = calloc(total + 1, sizeof(*po));
	Sluice__PartitionOffsets **pp = calloc(total + 1, sizeof(*pp));
	int rv = SL_ENOMEM;
	if (to != NULL && tp != NULL && po != NULL && pp != NULL) {
		size_t k = 0;
		for (size_t i = 0; i < lr->n_topics; i++) {
			const Sluice__TopicPartitions *want = lr->topics[i];
			const struct sl_meta_topic *t = sl_meta_topic(m, want->name);
			sluice__topic_offsets__init(&to[i]);
			tp[i] = &to[i];
			to[i].name = want->name;
			if (t == NULL) {
				to[i].error_code = SL_EUNKNOWN_TOPIC_OR_PARTITION;
				to[i].error_message = (char *)"no such topic";
				continue;
			}
			size_t n = want->n_partitions > 0 ? want->n_partitions : t->npartitions;
			to[i].n_partitions = n;
			to[i].partitions = &pp[k];
			for (size_t j = 0; j < n; j++, k++) {
				uint32_t part = want->n_partitions > 0 ? want->partitions[j] : (uint32_t)j;
				offsets_of(node, m, t, part, lr, &po[k]);
				pp[k] = &po[k];
			}
		}
		Sluice__ListOffsetsResponse r = SLUICE__LIST_OFFSETS_RESPONSE__INIT;
		r.n_topics = lr->n_topics;
		r.topics = tp;
		Sluice__Envelope env;
		response_of(&env, req->correlation_id, req->api_key, req->api_version);
		env.body_case = SLUICE__ENVELOPE__BODY_LIST_OFFSETS_RESPONSE;
		env.list_offsets_response = &r;
		rv = send_env(&env, reply, arg);
	}
	free(to);
	free(tp);
	free(po);
	free(pp);
	return rv;
}

/* ---- CreateTopics and DeleteTopics (through the controller) --------- */

/* A request waiting on the controller: one result per topic. */
struct write_op {
	uint32_t corr, version;
	Sluice__ApiKey key;
	sl_api_reply_fn reply;
	void *arg;
	size_t n, left;
	struct {
		char *name;
		int err;
		char msg[SL_ERRMSG_SIZE];
		bool wait;          /* created: waiting for its leaders */
	} *t;
	/* CreateTopics: waiting for every partition to have a leader. */
	const struct sl_api_node *node;
	bool validate_only;
	uint32_t timeout_ms;
	uint64_t deadline;
	uv_timer_t *timer;
	struct write_op *next, **pprev; /* in `waiting` */
};

/* The longest a CreateTopics waits for leaders, whatever it asks. */
#define MAX_WAIT_MS 600000

/* Requests waiting for leaders (sluiced runs one node per process). */
static struct write_op *waiting;

struct write_item {
	struct write_op *op;
	size_t i;
};

static void write_op_free(struct write_op *op)
{
	for (size_t i = 0; i < op->n; i++)
		free(op->t[i].name);
	free(op->t);
	free(op);
}

/* Sends the response once every topic has its result. */
static void write_op_finish(struct write_op *op)
{
	Sluice__TopicResult *res = calloc(op->n + 1, sizeof(*res));
	Sluice__TopicResult **rp = calloc(op->n + 1, sizeof(*rp));
	int rv = SL_ENOMEM;
	if (res != NULL && rp != NULL) {
		for (size_t i = 0; i < op->n; i++) {
			sluice__topic_result__init(&res[i]);
			res[i].name = op->t[i].name;
			res[i].error_code = op->t[i].err;
			res[i].error_message = op->t[i].msg;
			rp[i] = &res[i];
		}
		Sluice__Envelope env;
		response_of(&env, op->corr, op->key, op->version);
		Sluice__CreateTopicsResponse cr = SLUICE__CREATE_TOPICS_RESPONSE__INIT;
		Sluice__DeleteTopicsResponse dr = SLUICE__DELETE_TOPICS_RESPONSE__INIT;
		if (op->key == SLUICE__API_KEY__CREATE_TOPICS) {
			cr.n_topics = op->n;
			cr.topics = rp;
			env.body_case = SLUICE__ENVELOPE__BODY_CREATE_TOPICS_RESPONSE;
			env.create_topics_response = &cr;
		} else {
			dr.n_topics = op->n;
			dr.topics = rp;
			env.body_case = SLUICE__ENVELOPE__BODY_DELETE_TOPICS_RESPONSE;
			env.delete_topics_response = &dr;
		}
		rv = send_env(&env, op->reply, op->arg);
	}
	if (rv != SL_OK) /* the connection still needs its one reply */
		send_error(op->corr, op->key, op->version, SL_ENOMEM, "out of memory", op->reply,
			   op->arg);
	free(res);
	free(rp);
	write_op_free(op);
}

/* Whether a created topic still lacks leaders; with why, it stops waiting
 * with that reason. */
static bool leaders_missing(struct write_op *op, const char *why)
{
	const struct sl_meta *m = sl_controller_meta(op->node->ctl);
	bool missing = false;
	for (size_t i = 0; i < op->n; i++) {
		if (!op->t[i].wait)
			continue;
		const struct sl_meta_topic *t = sl_meta_topic(m, op->t[i].name);
		uint32_t none = 0;
		/* The leaders as reported (with their in-sync replicas), not
		 * as one replica may know them a moment earlier. */
		for (uint32_t p = 0; t != NULL && p < t->npartitions; p++)
			none += sl_parts_client_leader(NULL, m, &t->parts[p]) < 0;
		if (none == 0) { /* led, or deleted meanwhile */
			op->t[i].wait = false;
		} else if (why != NULL) {
			op->t[i].wait = false;
			op->t[i].err = SL_EREQUEST_TIMED_OUT;
			snprintf(op->t[i].msg, sizeof(op->t[i].msg),
				 "created, but %u of %u partitions have no leader yet (%s)", none,
				 t->npartitions, why);
		} else {
			missing = true;
		}
	}
	return missing;
}

static void wait_end(struct write_op *op)
{
	*op->pprev = op->next;
	if (op->next != NULL)
		op->next->pprev = op->pprev;
	uv_close((uv_handle_t *)op->timer, (uv_close_cb)free);
	write_op_finish(op);
}

static void on_wait_timer(uv_timer_t *t)
{
	struct write_op *op = t->data;
	char why[64];
	snprintf(why, sizeof(why), "after %u ms", op->timeout_ms);
	if (!leaders_missing(op, uv_now(t->loop) >= op->deadline ? why : NULL))
		wait_end(op);
}

/* Every topic has its result: CreateTopics with a timeout then waits for
 * the leaders of what it created. */
static void write_op_settled(struct write_op *op)
{
	bool wait = false;
	if (op->key == SLUICE__API_KEY__CREATE_TOPICS && op->timeout_ms > 0 && !op->validate_only &&
	    op->node->loop != NULL)
		for (size_t i = 0; i < op->n; i++) {
			op->t[i].wait = op->t[i].err == SL_OK;
			wait = wait || op->t[i].wait;
		}
	if (!wait || !leaders_missing(op, NULL) || (op->timer = malloc(sizeof(*op->timer))) == NULL) {
		write_op_finish(op);
		return;
	}
	uv_timer_init(op->node->loop, op->timer);
	op->timer->data = op;
	op->deadline = uv_now(op->node->loop) +
		       (op->timeout_ms < MAX_WAIT_MS ? op->timeout_ms : MAX_WAIT_MS);
	uv_timer_start(op->timer, on_wait_timer, 20, 20);
	op->next = waiting;
	if (waiting != NULL)
		waiting->pprev = &op->next;
	op->pprev = &waiting;
	waiting = op;
}

void sl_api_stop_waiting(void)
{
	sl_data_stop_waiting();
	while (waiting != NULL) {
		leaders_missing(waiting, "the node is stopping");
		wait_end(waiting);
	}
}

static void write_done(void *arg, int status, const struct sl_meta_result *res)
{
	struct write_item *it = arg;
	struct write_op *op = it->op;
	size_t i = it->i;
	free(it);
	if (status != SL_OK) {
		op->t[i].err = status;
		snprintf(op->t[i].msg, sizeof(op->t[i].msg),
			 "the controller lost its leadership before this applied: ask again");
	} else {
		op->t[i].err = res->err;
		snprintf(op->t[i].msg, sizeof(op->t[i].msg), "%s", res->errmsg);
	}
	if (--op->left == 0)
		write_op_settled(op);
}

/* One topic's command, or an error in the op. */
typedef int (*encode_fn)(const void *item, uint8_t **cmd, size_t *len, char *errmsg);

/* A config value: a decimal, or -1 for "no limit" where allowed. */
static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (strcmp(s, "-1") == 0) {
		*out = UINT64_MAX;
		return SL_OK;
	}
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0)
		return SL_EINVALID_CONFIG;
	*out = v;
	return SL_OK;
}

/* Topic configs by Kafka's names. */
static int parse_configs(const Sluice__NewTopic *nt, struct sl_meta_topic_config *cfg,
			 char *errmsg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < nt->n_configs; i++) {
		const char *k = nt->configs[i]->name, *v = nt->configs[i]->value;
		uint64_t x = 0;
		int rv = SL_OK;
		if (strcmp(k, "retention.ms") == 0)
			rv = parse_u64(v, &cfg->retention_ms);
		else if (strcmp(k, "retention.bytes") == 0)
			rv = parse_u64(v, &cfg->retention_bytes);
		else if (strcmp(k, "segment.bytes") == 0)
			rv = strcmp(v, "-1") == 0 ? SL_EINVALID_CONFIG : parse_u64(v, &cfg->segment_bytes);
		else if (strcmp(k, "max.message.bytes") == 0) {
			rv = parse_u64(v, &x);
			if (rv == SL_OK && x > UINT32_MAX)
				rv = SL_EINVALID_CONFIG;
			cfg->max_message_bytes = (uint32_t)x;
		} else if (strcmp(k, "cleanup.policy") == 0) {
			if (strcmp(v, "delete") == 0)
				cfg->cleanup_policy = SL_CLEANUP_POLICY_DELETE;
			else if (strcmp(v, "compact") == 0)
				cfg->cleanup_policy = SL_CLEANUP_POLICY_COMPACT;
			else
				rv = SL_EINVALID_CONFIG;
		} else {
			snprintf(errmsg, SL_ERRMSG_SIZE,
				 "unknown config '%.64s' (known: retention.ms, retention.bytes, "
				 "segment.bytes, cleanup.policy, max.message.bytes)", k);
			return SL_EINVALID_CONFIG;
		}
		if (rv != SL_OK) {
			snprintf(errmsg, SL_ERRMSG_SIZE, "config %.64s: bad value '%.64s'", k, v);
			return rv;
		}
	}
	return SL_OK;
}

/* A name a client may create or delete: Kafka's rule, and not one of
 * Sluice's own topics ("__" first). */
static int user_topic_name(const char *name, char *errmsg)
{
	int rv = sl_meta_check_topic_name(name, errmsg);
	if (rv == SL_OK && strncmp(name, "__", 2) == 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE,
			 "topic names starting with '__' are Sluice's own ('%.200s')", name);
		rv = SL_EINVALID_TOPIC;
	}
	return rv;
}

static int encode_create(const void *item, uint8_t **cmd, size_t *len, char *errmsg)
{
	const Sluice__NewTopic *nt = item;
	struct sl_meta_topic_config cfg;
	int rv = user_topic_name(nt->name, errmsg);
	if (rv == SL_OK)
		rv = parse_configs(nt, &cfg, errmsg);
	if (rv == SL_OK && (rv = sl_meta_cmd_create_topic(nt->name, nt->partitions,
							   nt->replication_factor, &cfg, cmd, len)) != SL_OK)
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s", sl_strerror(rv));
	return rv;
}

static int encode_delete(const void *item, uint8_t **cmd, size_t *len, char *errmsg)
{
	const char *name = item;
	int rv = user_topic_name(name, errmsg);
	if (rv == SL_OK && (rv = sl_meta_cmd_delete_topic(name, cmd, len)) != SL_OK)
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s", sl_strerror(rv));
	return rv;
}

/* Whether this node leads the controller; else msg (SL_ERRMSG_SIZE) says
 * who does. */
static bool leads_controller(const struct sl_api_node *node, char *msg)
{
	uint64_t leader = sl_controller_leader(node->ctl);
	if (leader == node->node_id)
		return true;
	const struct sl_meta_node *ln = sl_meta_node(sl_controller_meta(node->ctl), leader);
	if (ln != NULL)
		snprintf(msg, SL_ERRMSG_SIZE, "node %llu leads the controller (%.200s:%u)",
			 (unsigned long long)leader, ln->host, ln->client_port);
	else
		snprintf(msg, SL_ERRMSG_SIZE, "no controller leader is known yet");
	return false;
}

/* Proposes one command per item; the response goes once all applied. */
static int write_topics(const struct sl_api_node *node, const Sluice__Envelope *req,
			const void *const *items, const char *const *names, size_t n,
			encode_fn encode, bool validate_only, uint32_t timeout_ms,
			sl_api_reply_fn reply, void *arg)
{
	char msg[SL_ERRMSG_SIZE];
	if (!leads_controller(node, msg))
		return send_error(req->correlation_id, req->api_key, req->api_version,
				  SL_ENOT_CONTROLLER, msg, reply, arg);
	struct write_op *op = calloc(1, sizeof(*op));
	if (op == NULL || (op->t = calloc(n + 1, sizeof(*op->t))) == NULL) {
		free(op);
		return SL_ENOMEM;
	}
	op->corr = req->correlation_id;
	op->version = req->api_version;
	op->key = req->api_key;
	op->reply = reply;
	op->arg = arg;
	op->n = n;
	op->node = node;
	op->validate_only = validate_only;
	op->timeout_ms = timeout_ms;
	for (size_t i = 0; i < n; i++)
		if ((op->t[i].name = strdup(names[i])) == NULL) {
			write_op_free(op);
			return SL_ENOMEM;
		}
	op->left = n + 1; /* one more, dropped below: no reply while proposing */
	for (size_t i = 0; i < n; i++) {
		uint8_t *cmd = NULL;
		size_t len;
		int rv = encode(items[i], &cmd, &len, op->t[i].msg);
		struct write_item *it = NULL;
		if (rv == SL_OK && !validate_only) {
			it = malloc(sizeof(*it));
			rv = it == NULL ? SL_ENOMEM : SL_OK;
		}
		if (rv == SL_OK && it != NULL) {
			*it = (struct write_item){ op, i };
			rv = sl_controller_propose(node->ctl, cmd, len, write_done, it);
			if (rv != SL_OK) {
				free(it);
				snprintf(op->t[i].msg, sizeof(op->t[i].msg), "%s", sl_strerror(rv));
			}
		}
		free(cmd);
		if (rv != SL_OK || validate_only) {
			op->t[i].err = rv;
			op->left--;
		}
	}
	if (--op->left == 0)
		write_op_settled(op);
	return SL_OK;
}

static int create_topics(const struct sl_api_node *node, const Sluice__Envelope *req,
			 sl_api_reply_fn reply, void *arg)
{
	const Sluice__CreateTopicsRequest *cr = req->create_topics_request;
	const char **names = calloc(cr->n_topics + 1, sizeof(*names));
	if (names == NULL)
		return SL_ENOMEM;
	for (size_t i = 0; i < cr->n_topics; i++)
		names[i] = cr->topics[i]->name;
	int rv = write_topics(node, req, (const void *const *)cr->topics, names, cr->n_topics,
			      encode_create, cr->validate_only, cr->timeout_ms, reply, arg);
	free(names);
	return rv;
}

static int delete_topics(const struct sl_api_node *node, const Sluice__Envelope *req,
			 sl_api_reply_fn reply, void *arg)
{
	const Sluice__DeleteTopicsRequest *dr = req->delete_topics_request;
	return write_topics(node, req, (const void *const *)dr->names,
			    (const char *const *)dr->names, dr->n_names, encode_delete, false, 0,
			    reply, arg);
}

/* ---- Dispatch ------------------------------------------------------- */

int sl_api_handle(const struct sl_api_node *node, const uint8_t *frame, size_t len,
		  sl_api_reply_fn reply, void *arg)
{
	struct sl_frame *f = malloc(sizeof(*f));
	if (f == NULL)
		return SL_ENOMEM;
	char why[SL_ERRMSG_SIZE];
	const char *not_ready;
	uint32_t corr;
	int rv = sl_frame_decode(frame, len, NULL, f, &corr, why);
	if (rv != SL_OK) {
		free(f);
		return send_error(corr, SLUICE__API_KEY__API_NONE, 0, rv, why, reply, arg);
	}
	Sluice__Envelope *req = f->env;
	size_t i = 0;
	while (i < NSERVED && served[i].key != req->api_key)
		i++;
	struct timed *t = malloc(sizeof(*t));
	if (t != NULL) { /* else untimed */
		*t = (struct timed){ reply, arg, i, uv_hrtime() };
		reply = timed_reply;
		arg = t;
	}
	if (i == NSERVED) {
		snprintf(why, sizeof(why), "API %d is not served by this node (ApiVersions lists those that are)",
			 (int)req->api_key);
		rv = send_error(corr, req->api_key, req->api_version, SL_EUNSUPPORTED_VERSION, why,
				reply, arg);
	} else if (req->api_version < served[i].min || req->api_version > served[i].max) {
		snprintf(why, sizeof(why), "API %d version %u is not served (versions %u..%u are)",
			 (int)req->api_key, req->api_version, served[i].min, served[i].max);
		rv = send_error(corr, req->api_key, req->api_version, SL_EUNSUPPORTED_VERSION, why,
				reply, arg);
	} else if (req->body_case != served[i].body) {
		snprintf(why, sizeof(why), "API %d needs its request in the envelope (body %d found)",
			 (int)req->api_key, (int)req->body_case);
		rv = send_error(corr, req->api_key, req->api_version, SL_EINVALID_REQUEST, why, reply,
				arg);
	} else if (f->nseg != 0 && served[i].handle_data == NULL) {
		snprintf(why, sizeof(why), "API %d carries no record data (%zu segments found)",
			 (int)req->api_key, f->nseg);
		rv = send_error(corr, req->api_key, req->api_version, SL_EINVALID_REQUEST, why, reply,
				arg);
	} else if (served[i].needs_meta && !joined(node, &not_ready)) {
		rv = send_error(corr, req->api_key, req->api_version, SL_ENOT_READY, not_ready, reply,
				arg);
	} else if (served[i].handle_data != NULL) {
		rv = served[i].handle_data(node, f, reply, arg);
	} else {
		rv = served[i].handle(node, req, reply, arg);
	}
	if (rv != SL_OK && t != NULL) /* no reply was sent, nor will be */
		free(t);
	sluice__envelope__free_unpacked(req, NULL);
	free(f);
	return rv;
}

/* ---- InitProducerId ------------------------------------------------------- */

/* A request waiting for its id to be allocated. */
struct pid_op {
	uint32_t corr, version;
	sl_api_reply_fn reply;
	void *arg;
};

static void pid_reply(uint32_t corr, uint32_t version, int err, const char *msg, int64_t id,
		      sl_api_reply_fn reply, void *arg)
{
	Sluice__Envelope env;
	response_of(&env, corr, SLUICE__API_KEY__INIT_PRODUCER_ID, version);
	Sluice__InitProducerIdResponse r = SLUICE__INIT_PRODUCER_ID_RESPONSE__INIT;
	r.error_code = err;
	r.error_message = (char *)msg;
	r.producer_id = err == SL_OK ? id : -1;
	r.producer_epoch = err == SL_OK ? 0 : -1;
	env.body_case = SLUICE__ENVELOPE__BODY_INIT_PRODUCER_ID_RESPONSE;
	env.init_producer_id_response = &r;
	if (send_env(&env, reply, arg) != SL_OK)
		send_error(corr, SLUICE__API_KEY__INIT_PRODUCER_ID, version, SL_ENOMEM,
			   "out of memory", reply, arg);
}

static void pid_allocated(void *arg, int status, const struct sl_meta_result *res)
{
	struct pid_op *op = arg;
	int err = status != SL_OK ? status : res->err;
	const char *msg = status != SL_OK ? "the controller's leadership changed before the id "
					    "was allocated"
					  : res->errmsg;
	pid_reply(op->corr, op->version, err, err == SL_OK ? "" : msg,
		  err == SL_OK ? (int64_t)res->first_producer_id : -1, op->reply, op->arg);
	free(op);
}

/* One id per producer, allocated through the controller's log: every
 * id is handed out once even across controller failovers. */
static int init_producer_id(const struct sl_api_node *node, const Sluice__Envelope *req,
			    sl_api_reply_fn reply, void *arg)
{
	char msg[SL_ERRMSG_SIZE];
	if (!leads_controller(node, msg)) {
		pid_reply(req->correlation_id, req->api_version, SL_ENOT_CONTROLLER, msg, -1,
			  reply, arg);
		return SL_OK;
	}
	uint8_t *cmd = NULL;
	size_t len;
	struct pid_op *op = malloc(sizeof(*op));
	int rv = op == NULL ? SL_ENOMEM : sl_meta_cmd_alloc_producer_ids(1, &cmd, &len);
	if (rv == SL_OK) {
		*op = (struct pid_op){ req->correlation_id, req->api_version, reply, arg };
		rv = sl_controller_propose(node->ctl, cmd, len, pid_allocated, op);
	}
	free(cmd);
	if (rv == SL_OK)
		return SL_OK;
	free(op);
	pid_reply(req->correlation_id, req->api_version, rv,
		  rv == SL_ENOT_CONTROLLER ? "this node's controller leadership is not ready"
					   : sl_strerror(rv),
		  -1, reply, arg);
	return SL_OK;
}

/* ---- FindCoordinator ---------------------------------------------------------- */

/* The leader of the group's partition of __consumer_offsets, as the
 * applied metadata has it. */
static int find_coordinator(const struct sl_api_node *node, const Sluice__Envelope *req,
			    sl_api_reply_fn reply, void *arg)
{
	const Sluice__FindCoordinatorRequest *q = req->find_coordinator_request;
	Sluice__Envelope env;
	response_of(&env, req->correlation_id, req->api_key, req->api_version);
	Sluice__FindCoordinatorResponse r = SLUICE__FIND_COORDINATOR_RESPONSE__INIT;
	env.body_case = SLUICE__ENVELOPE__BODY_FIND_COORDINATOR_RESPONSE;
	env.find_coordinator_response = &r;
	r.node_id = -1;
	char msg[SL_ERRMSG_SIZE];
	const struct sl_meta *m = sl_controller_meta(node->ctl);
	const struct sl_meta_topic *t = sl_meta_topic(m, SL_OFFSETS_TOPIC);
	if (q->group[0] == '\0' || strlen(q->group) > SL_GROUP_ID_MAX) {
		r.error_code = SL_EINVALID_REQUEST;
		snprintf(msg, sizeof(msg), "a group id is 1 to %d bytes", SL_GROUP_ID_MAX);
	} else if (t == NULL || t->npartitions == 0) {
		r.error_code = SL_ECOORDINATOR_NOT_AVAILABLE;
		snprintf(msg, sizeof(msg), "%s does not exist yet", SL_OFFSETS_TOPIC);
	} else {
		r.partition = sl_group_partition(q->group, t->npartitions);
		int64_t leader = leader_of(node, m, &t->parts[r.partition]);
		const struct sl_meta_node *n = leader > 0 ? sl_meta_node(m, (uint64_t)leader) : NULL;
		if (n == NULL) {
			r.error_code = SL_ECOORDINATOR_NOT_AVAILABLE;
			snprintf(msg, sizeof(msg), "%s/%u has no leader right now", SL_OFFSETS_TOPIC,
				 r.partition);
		} else {
			r.node_id = leader;
			r.host = (char *)n->host;
			r.port = n->client_port;
			msg[0] = '\0';
		}
	}
	r.error_message = msg;
	return send_env(&env, reply, arg);
}
