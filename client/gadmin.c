/* Admin calls on consumer groups. See sluice.h.
 *
 * Each call is an operation of steps on the I/O thread (internal.h):
 *   list       Metadata (the nodes), then ListGroups to every node (each
 *              lists the groups it coordinates); nodes that do not answer
 *              are left out;
 *   describe   FindCoordinator, DescribeGroup, then Metadata and
 *              ListOffsets to each leader for the log ends (best effort);
 *   delete     FindCoordinator, DeleteGroup;
 *   reset      Metadata for the topic, ListOffsets to each leader (by
 *              timestamp for SLUICE_TIMESTAMP), FindCoordinator,
 *              OffsetFetch (the committed offsets, for the plan and for
 *              SLUICE_SHIFT), then, unless a dry run, OffsetCommit with no
 *              member id (the coordinator takes it only while the group
 *              has no members).
 * Retriable errors (no coordinator yet, NOT_COORDINATOR, COORDINATOR_
 * LOADING, a lost connection) are retried with backoff until
 * request.timeout.ms; a coordinator error starts again from
 * FindCoordinator. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { G_LIST, G_DESCRIBE, G_DELETE, G_RESET };
enum { S_META, S_NODES, S_FIND, S_GROUP, S_ENDS, S_CURRENT, S_COMMIT };

struct gstate {
	int kind, stage;
	char *group, *topic;
	int32_t partition; /* reset: -1 = all */
	sluice_whence_t whence;
	int64_t value;
	bool dry_run;
	struct cl_addr coord;
	struct cl_addr *leaders; /* per offsets row; port 0: none known */
	unsigned missing;        /* rows whose log range did not come */
	int call_err;
	char call_msg[SL_ERRMSG_SIZE];
};

static struct gstate *st_of(struct cl_op *op)
{
	return op->state;
}

static void free_state(struct cl_op *op)
{
	struct gstate *s = op->state;
	if (s == NULL)
		return;
	free(s->group);
	free(s->topic);
	free(s->leaders);
	free(s);
}

void cl_report_clear_groups(sluice_report_t *r)
{
	for (int32_t i = 0; i < r->ngroups; i++) {
		free(r->groups[i].name);
		free(r->groups[i].state);
		free(r->groups[i].assignor);
	}
	for (int32_t i = 0; i < r->nmembers; i++) {
		struct rmember *m = &r->members[i];
		free(m->id);
		free(m->instance);
		for (int32_t j = 0; j < m->n; j++)
			free(m->topics[j]);
		free(m->topics);
		free(m->parts);
	}
	for (int32_t i = 0; i < r->noffsets; i++)
		free(r->offsets[i].topic);
	free(r->groups);
	free(r->members);
	free(r->offsets);
	r->groups = NULL;
	r->members = NULL;
	r->offsets = NULL;
	r->ngroups = r->nmembers = r->noffsets = 0;
}

static void step(struct cl_op *op);

static void send_env(struct cl_op *op, const struct cl_addr *a, Sluice__Envelope *env,
		     cl_call_fn done)
{
	cl_call(op, a, env, 0, done);
}

/* A coordinator's retriable error: find it again, after a backoff. */
static bool coordinator_moved(struct cl_op *op, int err, const char *msg)
{
	if (err != SL_ENOT_COORDINATOR && err != SL_ECOORDINATOR_LOADING &&
	    err != SL_ECOORDINATOR_NOT_AVAILABLE)
		return false;
	st_of(op)->stage = S_FIND;
	cl_retry(op, err, "%s", msg);
	return true;
}

/* cl_usable for a call to the coordinator: a retriable failure (its node
 * down, a lost connection) finds the coordinator again first. */
static bool coord_usable(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp,
			 const void *body, const char *api)
{
	if (err != SL_OK && sl_err_retriable(err))
		st_of(op)->stage = S_FIND;
	return cl_usable(op, err, msg, resp, body, api);
}

/* The row of (topic, partition), added when missing; NULL: out of memory. */
static struct roffset *row(sluice_report_t *r, const char *topic, int32_t partition)
{
	for (int32_t i = 0; i < r->noffsets; i++)
		if (r->offsets[i].partition == partition && strcmp(r->offsets[i].topic, topic) == 0)
			return &r->offsets[i];
	struct roffset *o = realloc(r->offsets, ((size_t)r->noffsets + 1) * sizeof(*o));
	if (o == NULL)
		return NULL;
	r->offsets = o;
	o = &o[r->noffsets];
	*o = (struct roffset){ .partition = partition, .committed = -1, .log_start = -1,
			       .log_end = -1, .target = -1 };
	if ((o->topic = strdup(topic)) == NULL)
		return NULL;
	r->noffsets++;
	return o;
}

static int by_row(const void *a, const void *b)
{
	const struct roffset *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);
	return c != 0 ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* ---- list ------------------------------------------------------------------ */

static void list_done(struct cl_op *op);

static void on_list(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	struct gstate *s = st_of(op);
	sluice_report_t *r = op->rep;
	const Sluice__ListGroupsResponse *lr = resp != NULL ? resp->list_groups_response : NULL;
	if (err == SL_OK && resp->error_code != 0)
		err = resp->error_code, msg = resp->error_message;
	if (err == SL_OK && lr == NULL)
		err = SL_EINVALID_REQUEST, msg = "the node answered ListGroups with another API";
	if (err == SL_OK && lr->error_code != 0)
		err = lr->error_code, msg = lr->error_message;
	if (err != SL_OK) {
		s->missing++;
		if (s->call_err == SL_OK) {
			s->call_err = err;
			snprintf(s->call_msg, sizeof(s->call_msg), "%s", msg);
		}
	}
	for (size_t i = 0; err == SL_OK && i < lr->n_groups; i++) {
		const Sluice__GroupListing *g = lr->groups[i];
		int32_t k = 0;
		while (k < r->ngroups && strcmp(r->groups[k].name, g->group) != 0)
			k++;
		if (k == r->ngroups) {
			struct rgroup *ng = realloc(r->groups, ((size_t)k + 1) * sizeof(*ng));
			if (ng == NULL)
				break;
			r->groups = ng;
			ng[k] = (struct rgroup){ 0 };
			if ((ng[k].name = strdup(g->group)) == NULL)
				break;
			r->ngroups++;
		}
		/* A coordinator that moved may list a group as empty still:
		 * the one with members wins. */
		if (r->groups[k].state == NULL || g->members > (uint32_t)r->groups[k].members) {
			free(r->groups[k].state);
			r->groups[k].state = strdup(g->state);
			r->groups[k].members = (int32_t)g->members;
		}
	}
	if (op->waiting == 0)
		list_done(op);
}

/* Every node answered or failed. */
static void list_done(struct cl_op *op)
{
	struct gstate *s = st_of(op);
	sluice_report_t *r = op->rep;
	if (s->missing > 0 && r->ngroups == 0 && s->call_err != SL_OK) {
		if (sl_err_retriable(s->call_err) || s->call_err == SL_EREQUEST_TIMED_OUT)
			cl_retry(op, s->call_err, "%s", s->call_msg);
		else
			cl_finish(op, s->call_err, "%s", s->call_msg);
		return;
	}
	for (int32_t i = 0; i < r->ngroups; i++)
		if (r->groups[i].state == NULL) {
			cl_finish(op, SL_ENOMEM, "out of memory");
			return;
		}
	cl_ok(op);
}

static void on_nodes(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	struct gstate *s = st_of(op);
	if (!cl_usable(op, err, msg, resp, resp != NULL ? resp->metadata_response : NULL,
		       "Metadata"))
		return;
	const Sluice__MetadataResponse *m = resp->metadata_response;
	cl_report_clear_groups(op->rep);
	s->missing = 0;
	s->call_err = SL_OK;
	op->waiting++; /* hold the op until every call is out */
	for (size_t i = 0; i < m->n_nodes; i++) {
		struct cl_addr a;
		if (!cl_node_addr(m, (int64_t)m->nodes[i]->node_id, &a))
			continue;
		Sluice__ListGroupsRequest lg = SLUICE__LIST_GROUPS_REQUEST__INIT;
		Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
		env.api_key = SLUICE__API_KEY__LIST_GROUPS;
		env.body_case = SLUICE__ENVELOPE__BODY_LIST_GROUPS_REQUEST;
		env.list_groups_request = &lg;
		send_env(op, &a, &env, on_list);
	}
	if (--op->waiting == 0)
		list_done(op);
}

/* ---- describe, reset: log ends ------------------------------------------------ */

static void ends_done(struct cl_op *op);

static void on_ends(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	struct gstate *s = st_of(op);
	sluice_report_t *r = op->rep;
	const Sluice__ListOffsetsResponse *lr = resp != NULL ? resp->list_offsets_response : NULL;
	if (err == SL_OK && resp->error_code != 0)
		err = resp->error_code, msg = resp->error_message;
	if (err == SL_OK && lr == NULL)
		err = SL_EINVALID_REQUEST, msg = "the node answered ListOffsets with another API";
	if (err != SL_OK && s->call_err == SL_OK) {
		s->call_err = err;
		snprintf(s->call_msg, sizeof(s->call_msg), "%s", msg);
	}
	for (size_t t = 0; err == SL_OK && t < lr->n_topics; t++)
		for (size_t i = 0; i < lr->topics[t]->n_partitions; i++) {
			const Sluice__PartitionOffsets *po = lr->topics[t]->partitions[i];
			for (int32_t k = 0; k < r->noffsets; k++) {
				struct roffset *o = &r->offsets[k];
				if (o->partition != (int32_t)po->partition ||
				    strcmp(o->topic, lr->topics[t]->name) != 0)
					continue;
				if (po->error_code != 0) {
					if (s->call_err == SL_OK) {
						s->call_err = po->error_code;
						snprintf(s->call_msg, sizeof(s->call_msg), "%s/%d: %s",
							 o->topic, o->partition, po->error_message);
					}
					continue;
				}
				o->log_start = po->log_start;
				o->log_end = po->log_end;
				if (s->kind == G_RESET && s->whence == SLUICE_TIMESTAMP)
					o->target = po->offset >= 0 ? po->offset : po->log_end;
			}
		}
	if (op->waiting == 0)
		ends_done(op);
}

/* ListOffsets to each leader, for the rows it leads. */
static void send_ends(struct cl_op *op)
{
	struct gstate *s = st_of(op);
	sluice_report_t *r = op->rep;
	s->stage = S_ENDS;
	s->call_err = SL_OK;
	bool *asked = calloc((size_t)r->noffsets + 1, sizeof(*asked));
	Sluice__TopicPartitions *tp = calloc((size_t)r->noffsets + 1, sizeof(*tp));
	Sluice__TopicPartitions **tpp = calloc((size_t)r->noffsets + 1, sizeof(*tpp));
	uint32_t *nums = calloc((size_t)r->noffsets + 1, sizeof(*nums));
	if (asked == NULL || tp == NULL || tpp == NULL || nums == NULL) {
		free(asked);
		free(tp);
		free(tpp);
		free(nums);
		cl_finish(op, SL_ENOMEM, "out of memory");
		return;
	}
	op->waiting++;
	for (int32_t i = 0; i < r->noffsets; i++) {
		struct cl_addr *a = &s->leaders[i];
		if (asked[i] || a->port == 0)
			continue;
		/* Every row this leader leads, one entry per row. */
		size_t n = 0;
		for (int32_t j = i; j < r->noffsets; j++) {
			struct cl_addr *b = &s->leaders[j];
			if (asked[j] || b->port != a->port || strcmp(b->host, a->host) != 0)
				continue;
			asked[j] = true;
			sluice__topic_partitions__init(&tp[n]);
			tp[n].name = r->offsets[j].topic;
			nums[n] = (uint32_t)r->offsets[j].partition;
			tp[n].partitions = &nums[n];
			tp[n].n_partitions = 1;
			tpp[n] = &tp[n];
			n++;
		}
		Sluice__ListOffsetsRequest lr = SLUICE__LIST_OFFSETS_REQUEST__INIT;
		lr.n_topics = n;
		lr.topics = tpp;
		if (s->kind == G_RESET && s->whence == SLUICE_TIMESTAMP) {
			lr.by_timestamp = true;
			lr.timestamp = s->value;
		}
		Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
		env.api_key = SLUICE__API_KEY__LIST_OFFSETS;
		env.body_case = SLUICE__ENVELOPE__BODY_LIST_OFFSETS_REQUEST;
		env.list_offsets_request = &lr;
		send_env(op, a, &env, on_ends);
	}
	free(asked);
	free(tp);
	free(tpp);
	free(nums);
	if (--op->waiting == 0)
		ends_done(op);
}

static void on_meta(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	struct gstate *s = st_of(op);
	sluice_report_t *r = op->rep;
	if (!cl_usable(op, err, msg, resp, resp != NULL ? resp->metadata_response : NULL,
		       "Metadata"))
		return;
	const Sluice__MetadataResponse *m = resp->metadata_response;
	if (s->kind == G_RESET) {
		/* The rows: the topic's partitions asked for. */
		const Sluice__TopicInfo *t = NULL;
		for (size_t i = 0; i < m->n_topics && t == NULL; i++)
			if (strcmp(m->topics[i]->name, s->topic) == 0)
				t = m->topics[i];
		int terr = t == NULL ? SL_EUNKNOWN_TOPIC_OR_PARTITION : t->error_code;
		if (terr != SL_OK) {
			cl_finish(op, terr, "topic '%s' does not exist", s->topic);
			return;
		}
		if (s->partition >= (int32_t)t->n_partitions) {
			cl_finish(op, SL_EUNKNOWN_TOPIC_OR_PARTITION, "topic '%s' has no partition %d",
				  s->topic, s->partition);
			return;
		}
		cl_report_clear_groups(r);
		for (uint32_t p = 0; p < t->n_partitions; p++)
			if ((s->partition < 0 || (uint32_t)s->partition == p) &&
			    row(r, s->topic, (int32_t)p) == NULL) {
				cl_finish(op, SL_ENOMEM, "out of memory");
				return;
			}
	}
	free(s->leaders);
	s->leaders = calloc((size_t)r->noffsets + 1, sizeof(*s->leaders));
	if (s->leaders == NULL) {
		cl_finish(op, SL_ENOMEM, "out of memory");
		return;
	}
	for (int32_t i = 0; i < r->noffsets; i++)
		for (size_t t = 0; t < m->n_topics; t++) {
			const Sluice__TopicInfo *ti = m->topics[t];
			if (strcmp(ti->name, r->offsets[i].topic) != 0)
				continue;
			for (size_t p = 0; p < ti->n_partitions; p++)
				if ((int32_t)ti->partitions[p]->partition == r->offsets[i].partition &&
				    ti->partitions[p]->leader >= 1)
					(void)cl_node_addr(m, ti->partitions[p]->leader, &s->leaders[i]);
		}
	send_ends(op);
}

static void send_meta(struct cl_op *op)
{
	struct gstate *s = st_of(op);
	sluice_report_t *r = op->rep;
	s->stage = S_META;
	char **names = calloc((size_t)r->noffsets + 2, sizeof(*names));
	if (names == NULL) {
		cl_finish(op, SL_ENOMEM, "out of memory");
		return;
	}
	size_t n = 0;
	if (s->kind == G_RESET)
		names[n++] = s->topic;
	for (int32_t i = 0; s->kind != G_RESET && i < r->noffsets; i++) {
		bool dup = false;
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(names[j], r->offsets[i].topic) == 0;
		if (!dup)
			names[n++] = r->offsets[i].topic;
	}
	if (n == 0) { /* nothing to look up */
		free(names);
		cl_ok(op);
		return;
	}
	Sluice__Envelope env;
	Sluice__MetadataRequest mr;
	cl_metadata_req(&env, &mr, names, n);
	send_env(op, cl_any(op), &env, on_meta);
	free(names);
}

/* ---- the coordinator's part ------------------------------------------------------ */

static void on_find(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	struct gstate *s = st_of(op);
	if (!cl_usable(op, err, msg, resp, resp != NULL ? resp->find_coordinator_response : NULL,
		       "FindCoordinator"))
		return;
	const Sluice__FindCoordinatorResponse *f = resp->find_coordinator_response;
	if (f->error_code != 0) {
		if (sl_err_retriable(f->error_code))
			cl_retry(op, f->error_code, "%s", f->error_message);
		else
			cl_finish(op, f->error_code, "%s", f->error_message);
		return;
	}
	if (strlen(f->host) >= CL_HOST_MAX || f->port == 0 || f->port > 65535) {
		cl_retry(op, SL_ECOORDINATOR_NOT_AVAILABLE, "the coordinator's address is not known");
		return;
	}
	snprintf(s->coord.host, sizeof(s->coord.host), "%s", f->host);
	s->coord.port = (int)f->port;
	s->stage = s->kind == G_RESET ? S_CURRENT : S_GROUP;
	step(op);
}

static char *dup_or(const char *s, bool *nomem)
{
	char *d = strdup(s != NULL ? s : "");
	*nomem = *nomem || d == NULL;
	return d;
}

static void on_describe(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	sluice_report_t *r = op->rep;
	if (!coord_usable(op, err, msg, resp, resp != NULL ? resp->describe_group_response : NULL,
		       "DescribeGroup"))
		return;
	const Sluice__DescribeGroupResponse *d = resp->describe_group_response;
	if (d->error_code != 0) {
		if (!coordinator_moved(op, d->error_code, d->error_message))
			cl_finish(op, d->error_code, "%s", d->error_message);
		return;
	}
	cl_report_clear_groups(r);
	bool nomem = false;
	r->groups = calloc(1, sizeof(*r->groups));
	r->members = calloc(d->n_members + 1, sizeof(*r->members));
	if (r->groups == NULL || r->members == NULL) {
		cl_finish(op, SL_ENOMEM, "out of memory");
		return;
	}
	r->ngroups = 1;
	r->groups[0].name = dup_or(st_of(op)->group, &nomem);
	r->groups[0].state = dup_or(d->state, &nomem);
	r->groups[0].assignor = dup_or(d->assignor, &nomem);
	r->groups[0].epoch = d->epoch;
	for (size_t i = 0; i < d->n_members; i++) {
		const Sluice__GroupMember *gm = d->members[i];
		struct rmember *m = &r->members[r->nmembers++];
		m->id = dup_or(gm->member_id, &nomem);
		m->instance = dup_or(gm->instance_id, &nomem);
		m->epoch = gm->member_epoch;
		if (gm->member_epoch != -2)
			r->groups[0].members++;
		size_t n = 0;
		for (size_t t = 0; t < gm->n_assignment; t++)
			n += gm->assignment[t]->n_partitions;
		m->topics = calloc(n + 1, sizeof(*m->topics));
		m->parts = calloc(n + 1, sizeof(*m->parts));
		nomem = nomem || m->topics == NULL || m->parts == NULL;
		for (size_t t = 0; !nomem && t < gm->n_assignment; t++)
			for (size_t j = 0; j < gm->assignment[t]->n_partitions; j++) {
				m->topics[m->n] = dup_or(gm->assignment[t]->name, &nomem);
				m->parts[m->n++] = (int32_t)gm->assignment[t]->partitions[j];
				if (row(r, gm->assignment[t]->name,
					(int32_t)gm->assignment[t]->partitions[j]) == NULL)
					nomem = true;
			}
	}
	for (size_t i = 0; !nomem && i < d->n_offsets; i++) {
		struct roffset *o = row(r, d->offsets[i]->topic, (int32_t)d->offsets[i]->partition);
		if (o == NULL)
			nomem = true;
		else
			o->committed = d->offsets[i]->offset;
	}
	if (nomem) {
		cl_finish(op, SL_ENOMEM, "out of memory");
		return;
	}
	if (r->noffsets > 1)
		qsort(r->offsets, (size_t)r->noffsets, sizeof(*r->offsets), by_row);
	send_meta(op);
}

static void on_delete(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	if (!coord_usable(op, err, msg, resp, resp != NULL ? resp->delete_group_response : NULL,
		       "DeleteGroup"))
		return;
	const Sluice__DeleteGroupResponse *d = resp->delete_group_response;
	if (d->error_code != 0) {
		if (!coordinator_moved(op, d->error_code, d->error_message))
			cl_finish(op, d->error_code, "%s", d->error_message);
		return;
	}
	cl_ok(op);
}

static void on_commit(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	if (!coord_usable(op, err, msg, resp, resp != NULL ? resp->offset_commit_response : NULL,
		       "OffsetCommit"))
		return;
	const Sluice__OffsetCommitResponse *c = resp->offset_commit_response;
	if (c->error_code != 0) {
		if (!coordinator_moved(op, c->error_code, c->error_message))
			cl_finish(op, c->error_code, "%s", c->error_message);
		return;
	}
	for (size_t i = 0; i < c->n_results; i++)
		if (c->results[i]->error_code != 0) {
			const Sluice__PartitionError *pe = c->results[i];
			if (!coordinator_moved(op, pe->error_code, pe->error_message))
				cl_finish(op, pe->error_code, "%s/%u: %s", pe->topic, pe->partition,
					  pe->error_message);
			return;
		}
	cl_ok(op);
}

/* The new offsets from the log ranges and the committed ones; an offset
 * asked for outside a log is OFFSET_OUT_OF_RANGE. */
static void plan(struct cl_op *op)
{
	struct gstate *s = st_of(op);
	sluice_report_t *r = op->rep;
	for (int32_t i = 0; i < r->noffsets; i++) {
		struct roffset *o = &r->offsets[i];
		switch (s->whence) {
		case SLUICE_EARLIEST:
			o->target = o->log_start;
			break;
		case SLUICE_LATEST:
			o->target = o->log_end;
			break;
		case SLUICE_OFFSET:
			if (s->value < o->log_start || s->value > o->log_end) {
				cl_finish(op, SL_EOFFSET_OUT_OF_RANGE,
					  "offset %lld is outside %s/%d's log [%lld, %lld]",
					  (long long)s->value, o->topic, o->partition,
					  (long long)o->log_start, (long long)o->log_end);
				return;
			}
			o->target = s->value;
			break;
		case SLUICE_TIMESTAMP:
			break; /* from ListOffsets */
		case SLUICE_SHIFT: {
			/* From the committed offset; none: from the log start. */
			int64_t from = o->committed >= 0 ? o->committed : o->log_start;
			int64_t t = from + s->value;
			o->target = t < o->log_start ? o->log_start : t > o->log_end ? o->log_end : t;
			break;
		}
		}
	}
	if (s->dry_run) {
		cl_ok(op);
		return;
	}
	s->stage = S_COMMIT;
	step(op);
}

static void on_current(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp)
{
	sluice_report_t *r = op->rep;
	if (!coord_usable(op, err, msg, resp, resp != NULL ? resp->offset_fetch_response : NULL,
		       "OffsetFetch"))
		return;
	const Sluice__OffsetFetchResponse *f = resp->offset_fetch_response;
	if (f->error_code != 0) {
		if (!coordinator_moved(op, f->error_code, f->error_message))
			cl_finish(op, f->error_code, "%s", f->error_message);
		return;
	}
	for (size_t i = 0; i < f->n_offsets; i++)
		for (int32_t k = 0; k < r->noffsets; k++)
			if (r->offsets[k].partition == (int32_t)f->offsets[i]->partition &&
			    strcmp(r->offsets[k].topic, f->offsets[i]->topic) == 0)
				r->offsets[k].committed = f->offsets[i]->offset;
	plan(op);
}

static void ends_done(struct cl_op *op)
{
	struct gstate *s = st_of(op);
	sluice_report_t *r = op->rep;
	if (s->call_err == SL_ECANCELED) {
		cl_finish(op, SL_ECANCELED, "%s", s->call_msg);
		return;
	}
	if (s->kind == G_DESCRIBE) { /* best effort: unknown ends show -1 */
		cl_ok(op);
		return;
	}
	for (int32_t i = 0; i < r->noffsets; i++)
		if (r->offsets[i].log_end < 0) {
			/* Every range is needed for a reset: a leader that moved is
			 * asked again. */
			int err = s->call_err != SL_OK ? s->call_err : SL_ENOT_LEADER;
			if (sl_err_retriable(err) || err == SL_EREQUEST_TIMED_OUT) {
				s->stage = S_META;
				cl_retry(op, err, "%s/%d: no log range: %s", r->offsets[i].topic,
					 r->offsets[i].partition, s->call_msg);
			} else {
				cl_finish(op, err, "%s", s->call_msg);
			}
			return;
		}
	s->stage = S_FIND;
	step(op);
}

static void step(struct cl_op *op)
{
	struct gstate *s = st_of(op);
	sluice_report_t *r = op->rep;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	switch (s->stage) {
	case S_NODES: {
		Sluice__MetadataRequest mr;
		cl_metadata_req(&env, &mr, NULL, 0);
		send_env(op, cl_any(op), &env, on_nodes);
		return;
	}
	case S_META:
		send_meta(op);
		return;
	case S_ENDS:
		send_ends(op);
		return;
	case S_FIND: {
		Sluice__FindCoordinatorRequest fr = SLUICE__FIND_COORDINATOR_REQUEST__INIT;
		fr.group = s->group;
		env.api_key = SLUICE__API_KEY__FIND_COORDINATOR;
		env.body_case = SLUICE__ENVELOPE__BODY_FIND_COORDINATOR_REQUEST;
		env.find_coordinator_request = &fr;
		send_env(op, cl_any(op), &env, on_find);
		return;
	}
	case S_GROUP:
		if (s->kind == G_DESCRIBE) {
			Sluice__DescribeGroupRequest dr = SLUICE__DESCRIBE_GROUP_REQUEST__INIT;
			dr.group = s->group;
			env.api_key = SLUICE__API_KEY__DESCRIBE_GROUP;
			env.body_case = SLUICE__ENVELOPE__BODY_DESCRIBE_GROUP_REQUEST;
			env.describe_group_request = &dr;
			send_env(op, &s->coord, &env, on_describe);
		} else {
			Sluice__DeleteGroupRequest dr = SLUICE__DELETE_GROUP_REQUEST__INIT;
			dr.group = s->group;
			env.api_key = SLUICE__API_KEY__DELETE_GROUP;
			env.body_case = SLUICE__ENVELOPE__BODY_DELETE_GROUP_REQUEST;
			env.delete_group_request = &dr;
			send_env(op, &s->coord, &env, on_delete);
		}
		return;
	case S_CURRENT: {
		Sluice__OffsetFetchRequest fr = SLUICE__OFFSET_FETCH_REQUEST__INIT;
		Sluice__TopicPartitions tp = SLUICE__TOPIC_PARTITIONS__INIT;
		Sluice__TopicPartitions *tpp = &tp;
		uint32_t *nums = calloc((size_t)r->noffsets + 1, sizeof(*nums));
		if (nums == NULL) {
			cl_finish(op, SL_ENOMEM, "out of memory");
			return;
		}
		for (int32_t i = 0; i < r->noffsets; i++)
			nums[i] = (uint32_t)r->offsets[i].partition;
		tp.name = s->topic;
		tp.partitions = nums;
		tp.n_partitions = (size_t)r->noffsets;
		fr.group = s->group;
		fr.partitions = &tpp;
		fr.n_partitions = 1;
		env.api_key = SLUICE__API_KEY__OFFSET_FETCH;
		env.body_case = SLUICE__ENVELOPE__BODY_OFFSET_FETCH_REQUEST;
		env.offset_fetch_request = &fr;
		send_env(op, &s->coord, &env, on_current);
		free(nums);
		return;
	}
	case S_COMMIT: {
		Sluice__OffsetCommitPartition *p = calloc((size_t)r->noffsets + 1, sizeof(*p));
		Sluice__OffsetCommitPartition **pp = calloc((size_t)r->noffsets + 1, sizeof(*pp));
		if (p == NULL || pp == NULL) {
			free(p);
			free(pp);
			cl_finish(op, SL_ENOMEM, "out of memory");
			return;
		}
		for (int32_t i = 0; i < r->noffsets; i++) {
			sluice__offset_commit_partition__init(&p[i]);
			p[i].topic = r->offsets[i].topic;
			p[i].partition = (uint32_t)r->offsets[i].partition;
			p[i].offset = r->offsets[i].target;
			p[i].leader_epoch = -1;
			pp[i] = &p[i];
		}
		Sluice__OffsetCommitRequest cr = SLUICE__OFFSET_COMMIT_REQUEST__INIT;
		cr.group = s->group;
		cr.member_epoch = -1;
		cr.partitions = pp;
		cr.n_partitions = (size_t)r->noffsets;
		env.api_key = SLUICE__API_KEY__OFFSET_COMMIT;
		env.body_case = SLUICE__ENVELOPE__BODY_OFFSET_COMMIT_REQUEST;
		env.offset_commit_request = &cr;
		send_env(op, &s->coord, &env, on_commit);
		free(p);
		free(pp);
		return;
	}
	}
}

/* ---- The calls --------------------------------------------------------------- */

static struct cl_op *op_new(int kind, int stage, const char *group, sluice_done_cb cb,
			    void *opaque)
{
	struct cl_op *op = calloc(1, sizeof(*op));
	struct gstate *s = calloc(1, sizeof(*s));
	sluice_report_t *r = calloc(1, sizeof(*r));
	if (op == NULL || s == NULL || r == NULL ||
	    (group != NULL && (s->group = strdup(group)) == NULL)) {
		free(op);
		if (s != NULL)
			free(s->group);
		free(s);
		free(r);
		return NULL;
	}
	r->controller = -1;
	s->kind = kind;
	s->stage = stage;
	op->state = s;
	op->free_state = free_state;
	op->step = step;
	op->rep = r;
	op->cb = cb;
	op->opaque = opaque;
	return op;
}

static int start(sluice_admin_t *a, struct cl_op *op, sluice_report_t **out)
{
	if (op == NULL)
		return SL_ENOMEM;
	return cl_submit(a->cl, op, out);
}

static bool group_ok(const char *group)
{
	return group != NULL && group[0] != '\0' && strlen(group) <= 255;
}

sluice_err_t sluice_group_list(sluice_admin_t *a, sluice_done_cb cb, void *opaque,
			       sluice_report_t **out)
{
	if (out != NULL)
		*out = NULL;
	if (a == NULL)
		return SL_EINVALID_ARGUMENT;
	return start(a, op_new(G_LIST, S_NODES, NULL, cb, opaque), out);
}

sluice_err_t sluice_group_describe(sluice_admin_t *a, const char *group, sluice_done_cb cb,
				   void *opaque, sluice_report_t **out)
{
	if (out != NULL)
		*out = NULL;
	if (a == NULL || !group_ok(group))
		return SL_EINVALID_ARGUMENT;
	return start(a, op_new(G_DESCRIBE, S_FIND, group, cb, opaque), out);
}

sluice_err_t sluice_group_delete(sluice_admin_t *a, const char *group, sluice_done_cb cb,
				 void *opaque, sluice_report_t **out)
{
	if (out != NULL)
		*out = NULL;
	if (a == NULL || !group_ok(group))
		return SL_EINVALID_ARGUMENT;
	return start(a, op_new(G_DELETE, S_FIND, group, cb, opaque), out);
}

sluice_err_t sluice_group_reset_offsets(sluice_admin_t *a, const char *group, const char *topic,
					int32_t partition, sluice_whence_t whence, int64_t value,
					int dry_run, sluice_done_cb cb, void *opaque,
					sluice_report_t **out)
{
	if (out != NULL)
		*out = NULL;
	if (a == NULL || !group_ok(group) || topic == NULL || topic[0] == '\0' || partition < -1 ||
	    whence < SLUICE_EARLIEST || whence > SLUICE_SHIFT ||
	    (whence == SLUICE_OFFSET && value < 0))
		return SL_EINVALID_ARGUMENT;
	struct cl_op *op = op_new(G_RESET, S_META, group, cb, opaque);
	if (op != NULL) {
		struct gstate *s = op->state;
		s->partition = partition;
		s->whence = whence;
		s->value = value;
		s->dry_run = dry_run != 0;
		if ((s->topic = strdup(topic)) == NULL) {
			free_state(op);
			sluice_report_destroy(op->rep);
			free(op);
			return SL_ENOMEM;
		}
	}
	return start(a, op, out);
}

/* ---- Reports ------------------------------------------------------------------- */

static const struct rgroup *grp(const sluice_report_t *r, int32_t i)
{
	return r != NULL && i >= 0 && i < r->ngroups ? &r->groups[i] : NULL;
}

static const struct rmember *mem(const sluice_report_t *r, int32_t i)
{
	return r != NULL && i >= 0 && i < r->nmembers ? &r->members[i] : NULL;
}

static const struct roffset *off(const sluice_report_t *r, int32_t i)
{
	return r != NULL && i >= 0 && i < r->noffsets ? &r->offsets[i] : NULL;
}

int32_t sluice_report_group_count(const sluice_report_t *r)
{
	return r != NULL ? r->ngroups : 0;
}

const char *sluice_report_group_name(const sluice_report_t *r, int32_t i)
{
	return grp(r, i) != NULL ? grp(r, i)->name : NULL;
}

const char *sluice_report_group_state(const sluice_report_t *r, int32_t i)
{
	return grp(r, i) != NULL ? grp(r, i)->state : NULL;
}

int32_t sluice_report_group_members(const sluice_report_t *r, int32_t i)
{
	return grp(r, i) != NULL ? grp(r, i)->members : -1;
}

int32_t sluice_report_group_epoch(const sluice_report_t *r, int32_t i)
{
	return grp(r, i) != NULL ? grp(r, i)->epoch : -1;
}

const char *sluice_report_group_assignor(const sluice_report_t *r, int32_t i)
{
	return grp(r, i) != NULL && grp(r, i)->assignor != NULL ? grp(r, i)->assignor : "";
}

int32_t sluice_report_member_count(const sluice_report_t *r)
{
	return r != NULL ? r->nmembers : 0;
}

const char *sluice_report_member_id(const sluice_report_t *r, int32_t i)
{
	return mem(r, i) != NULL ? mem(r, i)->id : NULL;
}

const char *sluice_report_member_instance(const sluice_report_t *r, int32_t i)
{
	return mem(r, i) != NULL ? mem(r, i)->instance : NULL;
}

int32_t sluice_report_member_epoch(const sluice_report_t *r, int32_t i)
{
	return mem(r, i) != NULL ? mem(r, i)->epoch : -1;
}

int32_t sluice_report_member_partition_count(const sluice_report_t *r, int32_t i)
{
	return mem(r, i) != NULL ? mem(r, i)->n : 0;
}

const char *sluice_report_member_partition(const sluice_report_t *r, int32_t i, int32_t j,
					   int32_t *partition)
{
	const struct rmember *m = mem(r, i);
	if (m == NULL || j < 0 || j >= m->n)
		return NULL;
	*partition = m->parts[j];
	return m->topics[j];
}

int32_t sluice_report_offset_count(const sluice_report_t *r)
{
	return r != NULL ? r->noffsets : 0;
}

const char *sluice_report_offset_topic(const sluice_report_t *r, int32_t i)
{
	return off(r, i) != NULL ? off(r, i)->topic : NULL;
}

int32_t sluice_report_offset_partition(const sluice_report_t *r, int32_t i)
{
	return off(r, i) != NULL ? off(r, i)->partition : -1;
}

int64_t sluice_report_offset_committed(const sluice_report_t *r, int32_t i)
{
	return off(r, i) != NULL ? off(r, i)->committed : -1;
}

int64_t sluice_report_offset_log_end(const sluice_report_t *r, int32_t i)
{
	return off(r, i) != NULL ? off(r, i)->log_end : -1;
}

int64_t sluice_report_offset_lag(const sluice_report_t *r, int32_t i)
{
	const struct roffset *o = off(r, i);
	if (o == NULL || o->log_end < 0)
		return -1;
	/* Nothing committed: everything still in the log is to be read. */
	int64_t from = o->committed >= 0 ? o->committed : o->log_start;
	return from >= 0 && o->log_end > from ? o->log_end - from : 0;
}

int64_t sluice_report_offset_target(const sluice_report_t *r, int32_t i)
{
	return off(r, i) != NULL ? off(r, i)->target : -1;
}
