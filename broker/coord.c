/* The group coordinator. See coord.h. */
#define _GNU_SOURCE
#include <raft.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "blog.h"
#include "controller.h"
#include "coord.h"
#include "group.h"
#include "meta.h"
#include "offsets.h"
#include "partitions.h"
#include "rio.h"
#include "storage.h"

#define TICK_MS 50
#define LOAD_READ_BYTES (1u << 20)    /* one read of the log while loading */
#define LOAD_TURN_BYTES (8u << 20)    /* read per tick while loading */
#define WRITE_MAX_BYTES (256u << 10)  /* a batch goes once this big */
#define REGEX_MAX 1024
#define MSG 256

struct sl_coord;
struct cpart;

/* A heartbeat held until the group changes what its member should own. */
struct hold {
	struct hold *next;
	char member_id[SL_GROUP_MEMBER_ID_MAX + 1];
	int32_t epoch;
	struct sl_group_tp *owned; /* topics: owned strings */
	size_t nowned;
	uint64_t deadline;
	sl_api_reply_fn reply;
	void *arg;
	uint32_t corr, version;
};

struct cgroup {
	struct cgroup *next;
	char *id;
	struct sl_group *grp; /* NULL: only its offsets are known */
	uint64_t saved;       /* the version last written */
	struct hold *holds;
	uint8_t *rec;         /* while loading: its last record */
	size_t rec_len;
};

/* A commit or a deletion waiting for its records to be committed. */
struct creq {
	struct creq *next;
	Sluice__ApiKey key;
	uint32_t corr, version;
	sl_api_reply_fn reply;
	void *arg;
	size_t n;
	char **topics;
	uint32_t *parts;
	int *err;
	char **msg;
};

/* One proposal: a batch of one partition's records, one Raft entry. */
struct cwrite {
	struct raft_apply req; /* first: the callback gets it */
	struct cpart *cp;
	uint8_t *batch;        /* our copy: the view takes it once committed */
	size_t len;
	struct creq *reqs;
};

/* A partition of __consumer_offsets this node leads. */
struct cpart {
	struct cpart *next;
	struct sl_coord *co;
	uint32_t partition, group;
	raft_term term;
	bool loaded, gone;
	int64_t load_next;
	uint64_t load_err_at;
	struct sl_offsets_view *view;
	struct cgroup *groups;
	struct sl_batch_builder bb;
	size_t nrecs;              /* in bb */
	struct creq *pending;      /* waiting on bb */
	unsigned inflight;         /* writes not called back yet */
};

struct sl_coord {
	uv_loop_t *loop;
	const struct sl_api_node *node;
	struct sl_coord_config cfg;
	uv_timer_t tick;
	uv_check_t flush;
	struct cpart *parts;
	int closing; /* handles left to close */
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const struct sl_meta *meta_of(const struct sl_coord *co)
{
	return co->node->ctl != NULL ? sl_controller_meta(co->node->ctl) : NULL;
}

/* group.c's view of the topics: their partition counts. */
static uint32_t partitions_of(void *arg, const char *topic)
{
	const struct sl_meta *m = meta_of(arg);
	const struct sl_meta_topic *t = m != NULL ? sl_meta_topic(m, topic) : NULL;
	return t != NULL ? t->npartitions : 0;
}

/* ---- Groups --------------------------------------------------------- */

static struct cgroup *cgroup_find(struct cpart *cp, const char *id)
{
	for (struct cgroup *g = cp->groups; g != NULL; g = g->next)
		if (strcmp(g->id, id) == 0)
			return g;
	return NULL;
}

static struct cgroup *cgroup_add(struct cpart *cp, const char *id, size_t len)
{
	struct cgroup *g = calloc(1, sizeof(*g));
	if (g == NULL || (g->id = strndup(id, len)) == NULL) {
		free(g);
		return NULL;
	}
	g->next = cp->groups;
	cp->groups = g;
	return g;
}

static struct sl_group_config group_config(struct sl_coord *co)
{
	return (struct sl_group_config){ .assignor = SL_ASSIGN_UNIFORM,
					 .session_timeout_ms = co->cfg.session_timeout_ms,
					 .heartbeat_ms = co->cfg.heartbeat_ms,
					 .partitions = partitions_of, .arg = co };
}

static void hold_free(struct hold *h)
{
	for (size_t i = 0; i < h->nowned; i++)
		free((char *)h->owned[i].topic);
	free(h->owned);
	free(h);
}

/* ---- Responses -------------------------------------------------------- */

static void response_of(Sluice__Envelope *env, Sluice__ApiKey key, uint32_t corr,
			uint32_t version)
{
	sluice__envelope__init(env);
	env->correlation_id = corr;
	env->api_key = key;
	env->api_version = version;
}

static void send_or_drop(Sluice__Envelope *env, sl_api_reply_fn reply, void *arg)
{
	if (sl_api_send(env, NULL, reply, arg) != SL_OK) {
		SL_BLOG(SL_BLOG_ERROR, "coord", "response not sent: out of memory");
		reply(arg, NULL, 0, NULL); /* the client times out */
	}
}

/* A heartbeat's answer (a->err: an error). */
static void send_heartbeat(const struct sl_coord *co, sl_api_reply_fn reply, void *arg,
			   uint32_t corr, uint32_t version, const struct sl_group_answer *a)
{
	Sluice__Envelope env;
	response_of(&env, SLUICE__API_KEY__CONSUMER_GROUP_HEARTBEAT, corr, version);
	Sluice__ConsumerGroupHeartbeatResponse r = SLUICE__CONSUMER_GROUP_HEARTBEAT_RESPONSE__INIT;
	env.body_case = SLUICE__ENVELOPE__BODY_CONSUMER_GROUP_HEARTBEAT_RESPONSE;
	env.consumer_group_heartbeat_response = &r;
	r.error_code = a->err;
	r.error_message = (char *)a->errmsg;
	r.member_id = (char *)(a->member_id != NULL ? a->member_id : "");
	r.member_epoch = a->member_epoch;
	r.heartbeat_interval_ms = co != NULL ? co->cfg.heartbeat_ms : 0;
	r.session_timeout_ms = co != NULL ? co->cfg.session_timeout_ms : 0;
	/* The assignment comes sorted by topic: one entry per topic. */
	size_t nt = 0;
	for (size_t i = 0; i < a->nassignment; i++)
		nt += i == 0 || strcmp(a->assignment[i].topic, a->assignment[i - 1].topic) != 0;
	Sluice__TopicPartitions *tp = calloc(nt + 1, sizeof(*tp));
	Sluice__TopicPartitions **tpp = calloc(nt + 1, sizeof(*tpp));
	uint32_t *parts = calloc(a->nassignment + 1, sizeof(*parts));
	if (tp == NULL || tpp == NULL || parts == NULL) {
		r.error_code = SL_ENOMEM;
		r.error_message = (char *)"out of memory";
		nt = 0;
	}
	size_t t = 0;
	for (size_t i = 0; nt > 0 && i < a->nassignment; i++) {
		if (i > 0 && strcmp(a->assignment[i].topic, a->assignment[i - 1].topic) == 0) {
			tp[t - 1].partitions[tp[t - 1].n_partitions++] = a->assignment[i].partition;
			continue;
		}
		sluice__topic_partitions__init(&tp[t]);
		tp[t].name = (char *)a->assignment[i].topic;
		tp[t].partitions = &parts[i];
		tp[t].partitions[0] = a->assignment[i].partition;
		tp[t].n_partitions = 1;
		tpp[t] = &tp[t];
		t++;
	}
	r.n_assignment = nt;
	r.assignment = tpp;
	send_or_drop(&env, reply, arg);
	free(tp);
	free(tpp);
	free(parts);
}

static void fail_heartbeat(const struct sl_coord *co, sl_api_reply_fn reply, void *arg,
			   uint32_t corr, uint32_t version, int err, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
static void fail_heartbeat(const struct sl_coord *co, sl_api_reply_fn reply, void *arg,
			   uint32_t corr, uint32_t version, int err, const char *fmt, ...)
{
	struct sl_group_answer a = { .err = err, .member_epoch = -1 };
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a.errmsg, sizeof(a.errmsg), fmt, ap);
	va_end(ap);
	send_heartbeat(co, reply, arg, corr, version, &a);
}

/* Whether an answer tells the member something it does not have: an
 * error, another epoch, another assignment. */
static bool news(const struct sl_group_answer *a, int32_t epoch, const struct sl_group_tp *owned,
		 size_t nowned)
{
	if (a->err != SL_OK || a->member_epoch != epoch || a->nassignment != nowned)
		return true;
	for (size_t i = 0; i < a->nassignment; i++) {
		bool found = false;
		for (size_t j = 0; j < nowned && !found; j++)
			found = owned[j].partition == a->assignment[i].partition &&
				strcmp(owned[j].topic, a->assignment[i].topic) == 0;
		if (!found)
			return true;
	}
	return false;
}

/* A held heartbeat looked at again (force: answer it whatever it says).
 * Returns whether it was answered (and freed). */
static bool replay(struct cpart *cp, struct cgroup *g, struct hold *h, bool force)
{
	struct sl_group_hb hb = { .member_id = h->member_id, .member_epoch = h->epoch,
				  .owned = h->owned, .nowned = h->nowned, .has_owned = true,
				  .replay = true };
	struct sl_group_answer a;
	sl_group_heartbeat(g->grp, &hb, (int64_t)uv_now(cp->co->loop), &a);
	if (a.err != SL_OK)
		SL_BLOG(SL_BLOG_INFO, "coord", "group '%s' refused a held heartbeat member=%s "
			"epoch=%d: %s", g->id, h->member_id, h->epoch, a.errmsg);
	if (!force && !news(&a, h->epoch, h->owned, h->nowned))
		return false;
	send_heartbeat(cp->co, h->reply, h->arg, h->corr, h->version, &a);
	hold_free(h);
	return true;
}

/* Looks at the group's held heartbeats again (every one with force). */
static void replay_holds(struct cpart *cp, struct cgroup *g, bool force, uint64_t now)
{
	for (struct hold **hp = &g->holds; *hp != NULL;) {
		struct hold *h = *hp;
		*hp = h->next;
		bool due = force || now >= h->deadline;
		if (g->grp == NULL) {
			fail_heartbeat(cp->co, h->reply, h->arg, h->corr, h->version,
				       SL_EUNKNOWN_MEMBER_ID, "the group was deleted");
			hold_free(h);
		} else if (!replay(cp, g, h, due)) {
			h->next = *hp; /* still held */
			*hp = h;
			hp = &h->next;
		}
	}
}

/* ---- Writes ----------------------------------------------------------- */

static void creq_free(struct creq *q)
{
	for (size_t i = 0; i < q->n; i++) {
		free(q->topics[i]);
		free(q->msg[i]);
	}
	free(q->topics);
	free(q->parts);
	free(q->err);
	free(q->msg);
	free(q);
}

static void creq_set(struct creq *q, size_t i, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void creq_set(struct creq *q, size_t i, int err, const char *fmt, ...)
{
	if (q->err[i] != SL_OK)
		return;
	q->err[i] = err;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&q->msg[i], fmt, ap) < 0)
		q->msg[i] = NULL;
	va_end(ap);
}

/* Answers and frees q: a commit's per-partition results, or a deletion. */
static void creq_answer(struct creq *q)
{
	Sluice__Envelope env;
	response_of(&env, q->key, q->corr, q->version);
	if (q->key == SLUICE__API_KEY__DELETE_GROUP) {
		Sluice__DeleteGroupResponse r = SLUICE__DELETE_GROUP_RESPONSE__INIT;
		env.body_case = SLUICE__ENVELOPE__BODY_DELETE_GROUP_RESPONSE;
		env.delete_group_response = &r;
		r.error_code = q->err[0];
		r.error_message = q->msg[0] != NULL ? q->msg[0] : (char *)"";
		send_or_drop(&env, q->reply, q->arg);
		creq_free(q);
		return;
	}
	Sluice__OffsetCommitResponse r = SLUICE__OFFSET_COMMIT_RESPONSE__INIT;
	env.body_case = SLUICE__ENVELOPE__BODY_OFFSET_COMMIT_RESPONSE;
	env.offset_commit_response = &r;
	Sluice__PartitionError *pe = calloc(q->n + 1, sizeof(*pe));
	Sluice__PartitionError **pp = calloc(q->n + 1, sizeof(*pp));
	if (pe == NULL || pp == NULL) {
		r.error_code = SL_ENOMEM;
		r.error_message = (char *)"out of memory";
	} else {
		for (size_t i = 0; i < q->n; i++) {
			sluice__partition_error__init(&pe[i]);
			pe[i].topic = q->topics[i];
			pe[i].partition = q->parts[i];
			pe[i].error_code = q->err[i];
			pe[i].error_message = q->msg[i] != NULL ? q->msg[i] : (char *)"";
			pp[i] = &pe[i];
		}
		r.n_results = q->n;
		r.results = pp;
	}
	send_or_drop(&env, q->reply, q->arg);
	free(pe);
	free(pp);
	creq_free(q);
}

/* Ends q with err for every partition still fine. */
static void creq_fail(struct creq *q, int err, const char *why)
{
	for (size_t i = 0; i < q->n; i++)
		creq_set(q, i, err, "%s", why);
	creq_answer(q);
}

static struct creq *creq_new(Sluice__ApiKey key, const Sluice__Envelope *req, size_t n,
			     sl_api_reply_fn reply, void *arg)
{
	struct creq *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return NULL;
	*q = (struct creq){ .key = key, .corr = req->correlation_id, .version = req->api_version,
			    .reply = reply, .arg = arg, .n = n };
	q->topics = calloc(n + 1, sizeof(*q->topics));
	q->parts = calloc(n + 1, sizeof(*q->parts));
	q->err = calloc(n + 1, sizeof(*q->err));
	q->msg = calloc(n + 1, sizeof(*q->msg));
	if (q->topics == NULL || q->parts == NULL || q->err == NULL || q->msg == NULL) {
		q->n = 0;
		creq_free(q);
		return NULL;
	}
	return q;
}

static void cpart_free(struct cpart *cp);

/* Raft's callback for a write: committed (status 0), or not known to be. */
static void on_written(struct raft_apply *req, int status, void *result)
{
	struct cwrite *w = (struct cwrite *)req;
	struct cpart *cp = w->cp;
	(void)result;
	struct sl_record_iter it;
	if (status == 0 && !cp->gone && sl_record_iter_init(&it, w->batch, w->len) == SL_OK) {
		/* The offsets (and tombstones) go into the view; the groups'
		 * records are what memory holds already. */
		struct sl_record rec;
		while (sl_record_iter_next(&it, &rec))
			if (rec.key_len > 0 &&
			    sl_offsets_view_apply(cp->view, rec.key, (size_t)rec.key_len,
						  rec.value_len >= 0 ? rec.value : NULL,
						  rec.value_len >= 0 ? (size_t)rec.value_len : 0) ==
				    SL_ENOMEM)
				SL_BLOG(SL_BLOG_ERROR, "coord",
					"a committed offset is missing from the view: out of memory");
		sl_record_iter_free(&it);
	}
	while (w->reqs != NULL) {
		struct creq *q = w->reqs;
		w->reqs = q->next;
		if (status == 0)
			creq_answer(q);
		else
			creq_fail(q, SL_ENOT_COORDINATOR,
				  "the coordinator lost its leadership before the write committed "
				  "(it may still be)");
	}
	free(w->batch);
	free(w);
	if (--cp->inflight == 0 && cp->gone)
		cpart_free(cp);
}

/* Proposes what cp gathered: one batch, one Raft entry. */
static void flush_part(struct cpart *cp)
{
	if (cp->nrecs == 0)
		return;
	struct creq *reqs = cp->pending;
	cp->pending = NULL;
	cp->nrecs = 0;
	const uint8_t *b;
	size_t len;
	int rv = sl_batch_builder_finish(&cp->bb, &b, &len);
	struct cwrite *w = rv == SL_OK ? calloc(1, sizeof(*w)) : NULL;
	uint8_t *copy = w != NULL ? malloc(len) : NULL;
	void *entry = copy != NULL ? raft_malloc(len) : NULL;
	struct raft *r;
	struct raft_io *io;
	const char *why = "out of memory";
	int err = SL_ENOMEM;
	if (entry != NULL) {
		memcpy(copy, b, len);
		memcpy(entry, b, len);
		if (cp->co->node->parts == NULL ||
		    sl_parts_led(cp->co->node->parts, cp->group, &r, &io) != SL_OK ||
		    r->current_term != cp->term) {
			err = SL_ENOT_COORDINATOR;
			why = "the coordinator lost its leadership";
		} else {
			sl_batch_stamp(entry, sl_rio_next_offset(io), (int32_t)r->current_term);
			*w = (struct cwrite){ .cp = cp, .batch = copy, .len = len, .reqs = reqs };
			struct raft_buffer buf = { .base = entry, .len = len };
			rv = raft_apply(r, &w->req, &buf, 1, on_written);
			if (rv == 0) {
				cp->inflight++;
				sl_batch_builder_reset(&cp->bb, NULL);
				return;
			}
			err = rv == RAFT_NOTLEADER ? SL_ENOT_COORDINATOR : SL_ENOMEM;
			why = raft_strerror(rv);
		}
	}
	sl_batch_builder_reset(&cp->bb, NULL);
	if (entry != NULL)
		raft_free(entry);
	free(copy);
	free(w);
	SL_BLOG(SL_BLOG_WARN, "coord", "a write to %s/%u failed: %s", SL_OFFSETS_TOPIC,
		cp->partition, why);
	while (reqs != NULL) {
		struct creq *q = reqs;
		reqs = q->next;
		creq_fail(q, err, why);
	}
}

static void on_flush(uv_check_t *h)
{
	struct sl_coord *co = h->data;
	uv_check_stop(h);
	for (struct cpart *cp = co->parts; cp != NULL; cp = cp->next)
		flush_part(cp);
}

/* Adds a record (value NULL: a tombstone) to cp's next write. */
static int add_record(struct cpart *cp, const uint8_t *key, size_t key_len, const uint8_t *value,
		      size_t value_len)
{
	if (cp->nrecs > 0 && sl_batch_builder_size(&cp->bb) + key_len + value_len > WRITE_MAX_BYTES)
		flush_part(cp);
	int rv = sl_batch_builder_add(&cp->bb, wall_ms(), key, (int32_t)key_len, value,
				      value != NULL ? (int32_t)value_len : -1, NULL, 0);
	if (rv != SL_OK)
		return rv;
	cp->nrecs++;
	uv_check_start(&cp->co->flush, on_flush);
	return SL_OK;
}

/* A request waits for cp's next write. */
static void wait_write(struct cpart *cp, struct creq *q)
{
	q->next = cp->pending;
	cp->pending = q;
}

/* Writes the group's record if it changed since the last one. */
static void save_group(struct cpart *cp, struct cgroup *g)
{
	if (g->grp == NULL || sl_group_version(g->grp) == g->saved)
		return;
	uint8_t *key = NULL, *val = NULL;
	size_t klen, vlen;
	int rv = sl_offsets_group_key_encode(g->id, strlen(g->id), &key, &klen);
	if (rv == SL_OK)
		rv = sl_group_export(g->grp, &val, &vlen);
	if (rv == SL_OK)
		rv = add_record(cp, key, klen, val, vlen);
	if (rv == SL_OK)
		g->saved = sl_group_version(g->grp);
	else
		SL_BLOG(SL_BLOG_WARN, "coord", "group '%s' record not written: %s", g->id,
			sl_strerror(rv));
	free(key);
	free(val);
}

/* After anything that may have changed g: held heartbeats look again, and
 * the group's record is written when it changed. */
static void settle(struct cpart *cp, struct cgroup *g, uint64_t before)
{
	if (g->grp != NULL && sl_group_version(g->grp) != before)
		replay_holds(cp, g, false, uv_now(cp->co->loop));
	save_group(cp, g);
}

/* ---- Partitions this node leads --------------------------------------- */

static void cgroup_drop(struct cpart *cp, struct cgroup *g, int err, const char *why)
{
	while (g->holds != NULL) {
		struct hold *h = g->holds;
		g->holds = h->next;
		fail_heartbeat(cp->co, h->reply, h->arg, h->corr, h->version, err, "%s", why);
		hold_free(h);
	}
	sl_group_free(g->grp);
	free(g->rec);
	free(g->id);
	free(g);
}

static void cpart_free(struct cpart *cp)
{
	sl_offsets_view_free(cp->view);
	sl_batch_builder_free(&cp->bb);
	free(cp);
}

/* cp's leadership is gone: its groups go, and its requests end. */
static void cpart_drop(struct sl_coord *co, struct cpart *cp, const char *why)
{
	for (struct cpart **pp = &co->parts; *pp != NULL; pp = &(*pp)->next)
		if (*pp == cp) {
			*pp = cp->next;
			break;
		}
	SL_BLOG(SL_BLOG_INFO, "coord", "no longer coordinating %s/%u: %s", SL_OFFSETS_TOPIC,
		cp->partition, why);
	while (cp->groups != NULL) {
		struct cgroup *g = cp->groups;
		cp->groups = g->next;
		cgroup_drop(cp, g, SL_ENOT_COORDINATOR, why);
	}
	while (cp->pending != NULL) {
		struct creq *q = cp->pending;
		cp->pending = q->next;
		creq_fail(q, SL_ENOT_COORDINATOR, why);
	}
	cp->gone = true;
	if (cp->inflight == 0)
		cpart_free(cp);
}

static struct cpart *cpart_new(struct sl_coord *co, uint32_t partition, uint32_t group,
			       raft_term term, int64_t start)
{
	struct cpart *cp = calloc(1, sizeof(*cp));
	if (cp == NULL || (cp->view = sl_offsets_view_new()) == NULL) {
		free(cp);
		return NULL;
	}
	cp->co = co;
	cp->partition = partition;
	cp->group = group;
	cp->term = term;
	cp->load_next = start;
	struct sl_batch_opts o;
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&cp->bb, &o);
	cp->next = co->parts;
	co->parts = cp;
	SL_BLOG(SL_BLOG_INFO, "coord", "loading %s/%u term=%llu from offset %lld", SL_OFFSETS_TOPIC,
		partition, (unsigned long long)term, (long long)start);
	return cp;
}

/* One record read back while loading. */
static void load_record(struct cpart *cp, const struct sl_record *rec)
{
	if (rec->key_len < 0)
		return;
	const uint8_t *val = rec->value_len >= 0 ? rec->value : NULL;
	size_t vlen = rec->value_len >= 0 ? (size_t)rec->value_len : 0;
	char why[SL_ERRMSG_SIZE];
	const char *gid;
	size_t glen;
	int rv = sl_offsets_group_key_decode(rec->key, (size_t)rec->key_len, &gid, &glen, why);
	if (rv == SL_ENOT_FOUND) {
		rv = sl_offsets_view_apply(cp->view, rec->key, (size_t)rec->key_len, val, vlen);
		if (rv != SL_OK)
			SL_BLOG(SL_BLOG_WARN, "coord", "%s/%u: an offset record skipped: %s",
				SL_OFFSETS_TOPIC, cp->partition, sl_strerror(rv));
		return;
	}
	if (rv != SL_OK || glen == 0 || glen > SL_GROUP_ID_MAX || memchr(gid, '\0', glen) != NULL) {
		SL_BLOG(SL_BLOG_WARN, "coord", "%s/%u: a group record skipped: %s", SL_OFFSETS_TOPIC,
			cp->partition, rv != SL_OK ? why : "a bad group id");
		return;
	}
	char id[SL_GROUP_ID_MAX + 1];
	memcpy(id, gid, glen);
	id[glen] = '\0';
	struct cgroup *g = cgroup_find(cp, id);
	if (g == NULL && (g = cgroup_add(cp, id, glen)) == NULL)
		return;
	free(g->rec);
	g->rec = NULL;
	g->rec_len = 0;
	if (val != NULL && (g->rec = malloc(vlen + 1)) != NULL) {
		memcpy(g->rec, val, vlen);
		g->rec_len = vlen;
	}
}

/* The groups come back from their last records. */
static void load_done(struct cpart *cp)
{
	struct sl_group_config cfg = group_config(cp->co);
	int64_t now = (int64_t)uv_now(cp->co->loop);
	size_t groups = 0;
	for (struct cgroup **gp = &cp->groups; *gp != NULL;) {
		struct cgroup *g = *gp;
		char why[256];
		if (g->rec != NULL) {
			int rv = sl_group_import(g->id, &cfg, g->rec, g->rec_len, now, &g->grp, why);
			if (rv != SL_OK)
				SL_BLOG(SL_BLOG_WARN, "coord", "group '%s' starts empty: %s", g->id,
					rv == SL_EINVALID_RECORD ? why : sl_strerror(rv));
			else
				g->saved = sl_group_version(g->grp);
			free(g->rec);
			g->rec = NULL;
		}
		if (g->grp == NULL) { /* deleted, or unreadable: its offsets stay */
			*gp = g->next;
			cgroup_drop(cp, g, SL_ENOT_COORDINATOR, "gone");
			continue;
		}
		groups++;
		gp = &g->next;
	}
	cp->loaded = true;
	SL_BLOG(SL_BLOG_INFO, "coord", "coordinating %s/%u term=%llu groups=%zu offsets=%zu",
		SL_OFFSETS_TOPIC, cp->partition, (unsigned long long)cp->term, groups,
		sl_offsets_view_count(cp->view));
}

/* Reads cp's partition on, up to LOAD_TURN_BYTES. */
static void load_some(struct cpart *cp, struct raft_io *io, int64_t hw)
{
	sl_log *log = sl_rio_log(io);
	size_t done = 0;
	uint8_t *buf = NULL;
	while (cp->load_next < hw && done < LOAD_TURN_BYTES) {
		struct sl_slice sl;
		int rv = sl_log_read(log, cp->load_next, LOAD_READ_BYTES, &sl);
		uint8_t *nb = rv == SL_OK && sl.len > 0 ? realloc(buf, sl.len) : NULL;
		if (rv == SL_OK && sl.len > 0 && nb == NULL)
			rv = SL_ENOMEM;
		if (rv == SL_OK && sl.len > 0) {
			buf = nb;
			rv = sl_slice_read(&sl, buf);
		}
		if (rv == SL_OK && sl.len == 0)
			rv = SL_EOFFSET_OUT_OF_RANGE; /* the log ends below hw */
		if (rv != SL_OK) {
			if (sl.len > 0 || rv != SL_EOFFSET_OUT_OF_RANGE)
				sl_slice_release(&sl);
			uint64_t now = uv_now(cp->co->loop);
			if (now - cp->load_err_at >= 10000) {
				cp->load_err_at = now;
				SL_BLOG(SL_BLOG_ERROR, "coord",
					"%s/%u cannot be read at offset %lld: %s (%s); its groups wait",
					SL_OFFSETS_TOPIC, cp->partition, (long long)cp->load_next,
					sl_strerror(rv), sl_log_errmsg(log));
			}
			free(buf);
			return;
		}
		for (size_t pos = 0; pos < sl.len;) {
			struct sl_batch_header h;
			if (sl_batch_parse_header(buf + pos, sl.len - pos, sl.len - pos, &h) != SL_OK)
				break;
			size_t total = sl_batch_total_size(&h);
			struct sl_record_iter it;
			if (!(h.attributes & SL_ATTR_CONTROL) &&
			    sl_record_iter_init(&it, buf + pos, total) == SL_OK) {
				struct sl_record rec;
				while (sl_record_iter_next(&it, &rec))
					if (rec.offset >= cp->load_next)
						load_record(cp, &rec);
				sl_record_iter_free(&it);
			}
			pos += total;
		}
		done += sl.len;
		cp->load_next = sl.next_offset;
		sl_slice_release(&sl);
	}
	free(buf);
	if (cp->load_next >= hw)
		load_done(cp);
}

/* Which partitions of __consumer_offsets this node leads now. */
static void refresh(struct sl_coord *co)
{
	const struct sl_meta *m = meta_of(co);
	const struct sl_meta_topic *t = m != NULL ? sl_meta_topic(m, SL_OFFSETS_TOPIC) : NULL;
	struct sl_parts *parts = co->node->parts;
	for (struct cpart *cp = co->parts, *next; cp != NULL; cp = next) {
		next = cp->next;
		struct raft *r;
		struct raft_io *io;
		if (parts == NULL || t == NULL || cp->partition >= t->npartitions ||
		    t->parts[cp->partition].group != cp->group ||
		    sl_parts_led(parts, cp->group, &r, &io) != SL_OK || r->current_term != cp->term)
			cpart_drop(co, cp, "the partition's leadership moved");
	}
	for (uint32_t p = 0; parts != NULL && t != NULL && p < t->npartitions; p++) {
		struct raft *r;
		struct raft_io *io;
		uint32_t group = t->parts[p].group;
		if (sl_parts_led(parts, group, &r, &io) != SL_OK)
			continue;
		struct cpart *cp = co->parts;
		while (cp != NULL && cp->group != group)
			cp = cp->next;
		int64_t start, hw;
		if (sl_parts_offsets(parts, group, &start, &hw) != SL_OK)
			continue;
		if (cp == NULL && (cp = cpart_new(co, p, group, r->current_term, start)) == NULL)
			continue;
		if (!cp->loaded)
			load_some(cp, io, hw);
	}
}

static void on_tick(uv_timer_t *t)
{
	struct sl_coord *co = t->data;
	refresh(co);
	uint64_t now = uv_now(co->loop);
	for (struct cpart *cp = co->parts; cp != NULL; cp = cp->next) {
		if (!cp->loaded)
			continue;
		for (struct cgroup *g = cp->groups; g != NULL; g = g->next) {
			uint64_t before = sl_group_version(g->grp);
			size_t gone = sl_group_expire(g->grp, (int64_t)now);
			if (gone > 0)
				SL_BLOG(SL_BLOG_INFO, "coord",
					"group '%s': %zu members silent past the session timeout "
					"removed epoch=%d members=%zu",
					g->id, gone, sl_group_epoch(g->grp),
					sl_group_live_members(g->grp));
			replay_holds(cp, g, false, now); /* the due ones */
			settle(cp, g, before);
		}
	}
}

int sl_coord_init(struct sl_coord **out, uv_loop_t *loop, const struct sl_api_node *node,
		  const struct sl_coord_config *cfg)
{
	struct sl_coord *co = calloc(1, sizeof(*co));
	if (co == NULL)
		return SL_ENOMEM;
	co->loop = loop;
	co->node = node;
	co->cfg = *cfg;
	if (co->cfg.session_timeout_ms == 0)
		co->cfg.session_timeout_ms = 45000;
	if (co->cfg.heartbeat_ms == 0)
		co->cfg.heartbeat_ms = 3000;
	uv_timer_init(loop, &co->tick);
	uv_check_init(loop, &co->flush);
	co->tick.data = co->flush.data = co;
	uv_timer_start(&co->tick, on_tick, TICK_MS, TICK_MS);
	*out = co;
	return SL_OK;
}

static void on_closed(uv_handle_t *h)
{
	struct sl_coord *co = h->data;
	if (--co->closing == 0)
		free(co);
}

void sl_coord_close(struct sl_coord *co)
{
	if (co == NULL)
		return;
	on_flush(&co->flush); /* what was gathered goes, or fails */
	while (co->parts != NULL)
		cpart_drop(co, co->parts, "the node is stopping");
	co->closing = 2;
	uv_close((uv_handle_t *)&co->tick, on_closed);
	uv_close((uv_handle_t *)&co->flush, on_closed);
}

/* ---- Finding a group's partition ---------------------------------------- */

/* The loaded partition coordinating group id: SL_OK, or an error with msg
 * (INVALID_GROUP_ID, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
 * COORDINATOR_LOADING). */
static int locate(const struct sl_api_node *node, const char *id, struct cpart **out, char *msg)
{
	struct sl_coord *co = node->coord;
	size_t len = strlen(id);
	if (len == 0 || len > SL_GROUP_ID_MAX) {
		snprintf(msg, MSG, "a group id is 1 to %d bytes", SL_GROUP_ID_MAX);
		return SL_EINVALID_GROUP_ID;
	}
	const struct sl_meta *m = co != NULL ? meta_of(co) : NULL;
	const struct sl_meta_topic *t = m != NULL ? sl_meta_topic(m, SL_OFFSETS_TOPIC) : NULL;
	if (t == NULL || t->npartitions == 0) {
		snprintf(msg, MSG, "%s does not exist yet", SL_OFFSETS_TOPIC);
		return SL_ECOORDINATOR_NOT_AVAILABLE;
	}
	uint32_t p = sl_group_partition(id, t->npartitions);
	struct cpart *cp = co->parts;
	while (cp != NULL && cp->partition != p)
		cp = cp->next;
	if (cp == NULL) {
		refresh(co); /* the leadership may have come just now */
		for (cp = co->parts; cp != NULL && cp->partition != p;)
			cp = cp->next;
	}
	if (cp == NULL) {
		snprintf(msg, MSG, "group '%.100s' is coordinated by the leader of %s/%u, not this node",
			 id, SL_OFFSETS_TOPIC, p);
		return SL_ENOT_COORDINATOR;
	}
	if (!cp->loaded) {
		snprintf(msg, MSG, "%s/%u is still being loaded", SL_OFFSETS_TOPIC, p);
		return SL_ECOORDINATOR_LOADING;
	}
	*out = cp;
	return SL_OK;
}

/* ---- ConsumerGroupHeartbeat ------------------------------------------- */

/* The topics a regular expression names (whole names; internal topics
 * aside), malloc'd. SL_OK, or INVALID_REQUEST with msg. */
static int match_topics(const struct sl_meta *m, const char *re, char ***out, size_t *n,
			char *msg)
{
	if (strlen(re) > REGEX_MAX) {
		snprintf(msg, MSG, "a topic regex is at most %d bytes", REGEX_MAX);
		return SL_EINVALID_REQUEST;
	}
	char *anchored;
	if (asprintf(&anchored, "^(%s)$", re) < 0)
		return SL_ENOMEM;
	regex_t rx;
	int rv = regcomp(&rx, anchored, REG_EXTENDED | REG_NOSUB);
	free(anchored);
	if (rv != 0) {
		char e[128];
		regerror(rv, &rx, e, sizeof(e));
		snprintf(msg, MSG, "topic regex '%.64s': %s", re, e);
		return SL_EINVALID_REQUEST;
	}
	char **names = calloc(m->ntopics + 1, sizeof(*names));
	if (names == NULL) {
		regfree(&rx);
		return SL_ENOMEM;
	}
	size_t k = 0;
	for (size_t i = 0; i < m->ntopics; i++) {
		const char *name = m->topics[i]->name;
		if (strncmp(name, "__", 2) != 0 && regexec(&rx, name, 0, NULL, 0) == 0)
			names[k++] = (char *)name;
	}
	regfree(&rx);
	*out = names;
	*n = k;
	return SL_OK;
}

/* The member's owned partitions as group.c takes them (topics point into
 * the request). */
static struct sl_group_tp *owned_of(const Sluice__ConsumerGroupHeartbeatRequest *q, size_t *n)
{
	size_t total = 0;
	for (size_t i = 0; i < q->n_owned; i++)
		total += q->owned[i]->n_partitions;
	struct sl_group_tp *tp = calloc(total + 1, sizeof(*tp));
	if (tp == NULL)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < q->n_owned; i++)
		for (size_t j = 0; j < q->owned[i]->n_partitions; j++)
			tp[k++] = (struct sl_group_tp){ q->owned[i]->name, q->owned[i]->partitions[j] };
	*n = k;
	return tp;
}

static int hold_new(struct cgroup *g, const struct sl_group_answer *a,
		    const Sluice__Envelope *req, uint64_t deadline, sl_api_reply_fn reply,
		    void *arg)
{
	struct hold *h = calloc(1, sizeof(*h));
	if (h == NULL || (h->owned = calloc(a->nassignment + 1, sizeof(*h->owned))) == NULL) {
		free(h);
		return SL_ENOMEM;
	}
	/* It owns what it was just told (the answer had no news). */
	for (size_t i = 0; i < a->nassignment; i++) {
		char *t = strdup(a->assignment[i].topic);
		if (t == NULL) {
			hold_free(h);
			return SL_ENOMEM;
		}
		h->owned[h->nowned++] = (struct sl_group_tp){ t, a->assignment[i].partition };
	}
	snprintf(h->member_id, sizeof(h->member_id), "%s", a->member_id);
	h->epoch = a->member_epoch;
	h->deadline = deadline;
	h->reply = reply;
	h->arg = arg;
	h->corr = req->correlation_id;
	h->version = req->api_version;
	h->next = g->holds;
	g->holds = h;
	return SL_OK;
}

int sl_coord_heartbeat(const struct sl_api_node *node, const Sluice__Envelope *req,
		       sl_api_reply_fn reply, void *arg)
{
	const Sluice__ConsumerGroupHeartbeatRequest *q = req->consumer_group_heartbeat_request;
	struct sl_coord *co = node->coord;
	char msg[MSG];
	struct cpart *cp;
	int rv = locate(node, q->group, &cp, msg);
	uint32_t corr = req->correlation_id, version = req->api_version;
	if (rv != SL_OK) {
		struct sl_group_answer a = { .err = rv, .member_epoch = -1 };
		snprintf(a.errmsg, sizeof(a.errmsg), "%s", msg);
		send_heartbeat(co, reply, arg, corr, version, &a);
		return SL_OK;
	}
	int assignor = SL_ASSIGN_UNIFORM;
	if (strcmp(q->assignor, "range") == 0)
		assignor = SL_ASSIGN_RANGE;
	else if (q->assignor[0] != '\0' && strcmp(q->assignor, "uniform") != 0) {
		fail_heartbeat(co, reply, arg, corr, version, SL_EINVALID_REQUEST,
			       "assignor '%.64s' is not one of uniform, range", q->assignor);
		return SL_OK;
	}
	bool joining = q->member_id[0] == '\0';
	struct cgroup *g = cgroup_find(cp, q->group);
	if (g == NULL && !joining) {
		fail_heartbeat(co, reply, arg, corr, version, SL_EUNKNOWN_MEMBER_ID,
			       "group '%.100s' has no members", q->group);
		return SL_OK;
	}
	if (g == NULL && (g = cgroup_add(cp, q->group, strlen(q->group))) == NULL) {
		fail_heartbeat(co, reply, arg, corr, version, SL_ENOMEM, "out of memory");
		return SL_OK;
	}
	if (g->grp == NULL) {
		struct sl_group_config cfg = group_config(co);
		cfg.assignor = assignor;
		if ((g->grp = sl_group_new(g->id, &cfg)) == NULL) {
			fail_heartbeat(co, reply, arg, corr, version, SL_ENOMEM, "out of memory");
			return SL_OK;
		}
	}
	if (joining && sl_group_live_members(g->grp) == 0)
		sl_group_set_assignor(g->grp, assignor);
	/* A member's earlier heartbeat still held is answered first. */
	for (struct hold **hp = &g->holds; !joining && *hp != NULL; hp = &(*hp)->next)
		if (strcmp((*hp)->member_id, q->member_id) == 0) {
			struct hold *h = *hp;
			*hp = h->next;
			replay(cp, g, h, true);
			break;
		}
	/* The subscription: the topics named, or those the regex matches. */
	char **names = NULL;
	size_t nnames = 0;
	if (q->topic_regex[0] != '\0') {
		if (q->n_topics > 0) {
			fail_heartbeat(co, reply, arg, corr, version, SL_EINVALID_REQUEST,
				       "a subscription is a topic list or a regex, not both");
			return SL_OK;
		}
		rv = match_topics(meta_of(co), q->topic_regex, &names, &nnames, msg);
		if (rv != SL_OK) {
			fail_heartbeat(co, reply, arg, corr, version, rv, "%s", msg);
			return SL_OK;
		}
	}
	size_t nowned = 0;
	struct sl_group_tp *owned = owned_of(q, &nowned);
	if (owned == NULL) {
		free(names);
		fail_heartbeat(co, reply, arg, corr, version, SL_ENOMEM, "out of memory");
		return SL_OK;
	}
	bool leaving = q->member_epoch < 0;
	struct sl_group_hb hb = {
		.member_id = q->member_id,
		.instance_id = q->instance_id[0] != '\0' ? q->instance_id : NULL,
		.member_epoch = q->member_epoch,
		.topics = names != NULL ? (const char *const *)names : (const char *const *)q->topics,
		.ntopics = names != NULL ? nnames : q->n_topics,
		.has_topics = !leaving,
		.owned = owned,
		.nowned = nowned,
		.has_owned = !joining && !leaving,
	};
	uint64_t before = sl_group_version(g->grp);
	uint64_t now = uv_now(co->loop);
	struct sl_group_answer a;
	sl_group_heartbeat(g->grp, &hb, (int64_t)now, &a);
	if (a.err != SL_OK)
		SL_BLOG(SL_BLOG_INFO, "coord", "group '%s' refused a heartbeat member=%s epoch=%d: %s",
			g->id, q->member_id[0] ? q->member_id : "(joining)", q->member_epoch,
			a.errmsg);
	else if (joining || leaving)
		SL_BLOG(SL_BLOG_INFO, "coord", "group '%s' member %s %s epoch=%d members=%zu", g->id,
			a.member_id, joining ? "joined" : "left", sl_group_epoch(g->grp),
			sl_group_live_members(g->grp));
	uint32_t wait = q->max_wait_ms < co->cfg.heartbeat_ms ? q->max_wait_ms : co->cfg.heartbeat_ms;
	if (a.err == SL_OK && !leaving && !joining && wait > 0 &&
	    !news(&a, q->member_epoch, owned, nowned) &&
	    hold_new(g, &a, req, now + wait, reply, arg) == SL_OK) {
		/* held: answered when the group changes, or at its deadline */
	} else {
		send_heartbeat(co, reply, arg, corr, version, &a);
	}
	free(owned);
	free(names);
	settle(cp, g, before);
	return SL_OK;
}

/* ---- OffsetCommit --------------------------------------------------------- */

int sl_coord_offset_commit(const struct sl_api_node *node, const Sluice__Envelope *req,
			   sl_api_reply_fn reply, void *arg)
{
	const Sluice__OffsetCommitRequest *q = req->offset_commit_request;
	struct creq *cq = creq_new(SLUICE__API_KEY__OFFSET_COMMIT, req, q->n_partitions, reply, arg);
	if (cq == NULL)
		return SL_ENOMEM;
	for (size_t i = 0; i < q->n_partitions; i++) {
		cq->parts[i] = q->partitions[i]->partition;
		if ((cq->topics[i] = strdup(q->partitions[i]->topic)) == NULL) {
			creq_free(cq);
			return SL_ENOMEM;
		}
	}
	char msg[MSG];
	struct cpart *cp;
	int rv = locate(node, q->group, &cp, msg);
	if (rv != SL_OK) {
		creq_fail(cq, rv, msg);
		return SL_OK;
	}
	struct cgroup *g = cgroup_find(cp, q->group);
	bool admin = q->member_id[0] == '\0';
	if (admin && g != NULL && g->grp != NULL && sl_group_live_members(g->grp) > 0) {
		snprintf(msg, sizeof(msg),
			 "group '%.100s' has %zu active members: only they commit (an offset reset "
			 "needs the group empty)",
			 q->group, sl_group_live_members(g->grp));
		creq_fail(cq, SL_ENON_EMPTY_GROUP, msg);
		return SL_OK;
	}
	if (!admin && (g == NULL || g->grp == NULL)) {
		snprintf(msg, sizeof(msg), "group '%.100s' has no member '%.64s'", q->group,
			 q->member_id);
		creq_fail(cq, SL_EUNKNOWN_MEMBER_ID, msg);
		return SL_OK;
	}
	const struct sl_meta *m = meta_of(node->coord);
	int64_t now = wall_ms();
	size_t wrote = 0;
	for (size_t i = 0; i < q->n_partitions; i++) {
		const Sluice__OffsetCommitPartition *p = q->partitions[i];
		const struct sl_meta_topic *t = sl_meta_topic(m, p->topic);
		if (t == NULL || p->partition >= t->npartitions) {
			creq_set(cq, i, SL_EUNKNOWN_TOPIC_OR_PARTITION, "%.200s/%u does not exist",
				 p->topic, p->partition);
			continue;
		}
		if (p->offset < 0) {
			creq_set(cq, i, SL_EINVALID_REQUEST, "offset %lld is negative",
				 (long long)p->offset);
			continue;
		}
		if (strlen(p->metadata) > SL_OFFSETS_METADATA_MAX) {
			creq_set(cq, i, SL_EINVALID_REQUEST, "metadata is at most %d bytes",
				 SL_OFFSETS_METADATA_MAX);
			continue;
		}
		if (!admin) {
			rv = sl_group_check_commit(g->grp, q->member_id, q->member_epoch, p->topic,
						   p->partition);
			if (rv == SL_EUNKNOWN_MEMBER_ID)
				creq_set(cq, i, rv, "group '%.100s' has no member '%.64s'", q->group,
					 q->member_id);
			else if (rv == SL_ESTALE_MEMBER_EPOCH)
				creq_set(cq, i, rv, "member epoch %d is not the member's current one",
					 q->member_epoch);
			else if (rv == SL_ENOT_ASSIGNED)
				creq_set(cq, i, rv, "%.200s/%u is not assigned to member '%.64s'",
					 p->topic, p->partition, q->member_id);
			if (rv != SL_OK)
				continue;
		}
		/* Past the high watermark, where this node leads the partition
		 * and knows it exactly (elsewhere the commit is taken). */
		int64_t start, end;
		if (node->parts != NULL &&
		    sl_parts_offsets(node->parts, t->parts[p->partition].group, &start, &end) ==
			    SL_OK &&
		    p->offset > end) {
			creq_set(cq, i, SL_EOFFSET_OUT_OF_RANGE,
				 "offset %lld is past the log end %lld of %.200s/%u",
				 (long long)p->offset, (long long)end, p->topic, p->partition);
			continue;
		}
		struct sl_offsets_key k = { .group = q->group, .group_len = strlen(q->group),
					    .topic = p->topic, .topic_len = strlen(p->topic),
					    .partition = p->partition };
		struct sl_offsets_value v = { .offset = p->offset, .leader_epoch = p->leader_epoch,
					      .commit_ms = now, .metadata = p->metadata,
					      .metadata_len = strlen(p->metadata) };
		uint8_t *kb = NULL, *vb = NULL;
		size_t kl, vl;
		rv = sl_offsets_key_encode(&k, &kb, &kl);
		if (rv == SL_OK)
			rv = sl_offsets_value_encode(&v, &vb, &vl);
		if (rv == SL_OK)
			rv = add_record(cp, kb, kl, vb, vl);
		free(kb);
		free(vb);
		if (rv != SL_OK)
			creq_set(cq, i, rv, "%s", sl_strerror(rv));
		else
			wrote++;
	}
	if (wrote == 0)
		creq_answer(cq);
	else
		wait_write(cp, cq);
	return SL_OK;
}

/* ---- OffsetFetch, ListGroups, DescribeGroup, DeleteGroup ---------------- */

struct offs {
	Sluice__CommittedOffset *o;
	Sluice__CommittedOffset **op;
	char **topics;
	size_t n, cap;
	bool nomem;
};

static void offs_add(struct offs *s, const char *topic, size_t topic_len, uint32_t partition,
		     const struct sl_offsets_value *v)
{
	if (s->nomem)
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		Sluice__CommittedOffset *o = realloc(s->o, cap * sizeof(*o));
		if (o != NULL)
			s->o = o;
		char **t = o != NULL ? realloc(s->topics, cap * sizeof(*t)) : NULL;
		if (t != NULL)
			s->topics = t;
		if (o == NULL || t == NULL) {
			s->nomem = true;
			return;
		}
		s->cap = cap;
	}
	char *name = strndup(topic, topic_len);
	if (name == NULL) {
		s->nomem = true;
		return;
	}
	Sluice__CommittedOffset *o = &s->o[s->n];
	sluice__committed_offset__init(o);
	s->topics[s->n++] = name;
	o->partition = partition;
	o->offset = v != NULL ? v->offset : -1;
	o->leader_epoch = v != NULL ? v->leader_epoch : -1;
	o->metadata = v != NULL ? (char *)v->metadata : (char *)"";
	o->commit_time_ms = v != NULL ? v->commit_ms : -1;
}

static void offs_each(void *arg, const struct sl_offsets_key *k, const struct sl_offsets_value *v)
{
	offs_add(arg, k->topic, k->topic_len, k->partition, v);
}

/* Pointers for the response (topics filled in now: the array moved while
 * it grew). */
static Sluice__CommittedOffset **offs_finish(struct offs *s)
{
	s->op = calloc(s->n + 1, sizeof(*s->op));
	if (s->op == NULL) {
		s->nomem = true;
		return NULL;
	}
	for (size_t i = 0; i < s->n; i++) {
		s->o[i].topic = s->topics[i];
		s->op[i] = &s->o[i];
	}
	return s->op;
}

static void offs_free(struct offs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->topics[i]);
	free(s->topics);
	free(s->o);
	free(s->op);
}

int sl_coord_offset_fetch(const struct sl_api_node *node, const Sluice__Envelope *req,
			  sl_api_reply_fn reply, void *arg)
{
	const Sluice__OffsetFetchRequest *q = req->offset_fetch_request;
	Sluice__OffsetFetchResponse r = SLUICE__OFFSET_FETCH_RESPONSE__INIT;
	char msg[MSG];
	struct cpart *cp;
	int rv = locate(node, q->group, &cp, msg);
	Sluice__Envelope env;
	sl_api_response_of(&env, req);
	env.body_case = SLUICE__ENVELOPE__BODY_OFFSET_FETCH_RESPONSE;
	env.offset_fetch_response = &r;
	if (rv != SL_OK) {
		r.error_code = rv;
		r.error_message = msg;
		return sl_api_send(&env, NULL, reply, arg);
	}
	struct offs s = { 0 };
	if (q->n_partitions == 0)
		sl_offsets_view_foreach(cp->view, q->group, offs_each, &s);
	for (size_t i = 0; i < q->n_partitions; i++)
		for (size_t j = 0; j < q->partitions[i]->n_partitions; j++) {
			struct sl_offsets_value v;
			const char *topic = q->partitions[i]->name;
			uint32_t p = q->partitions[i]->partitions[j];
			bool got = sl_offsets_view_get(cp->view, q->group, topic, p, &v) == SL_OK;
			offs_add(&s, topic, strlen(topic), p, got ? &v : NULL);
		}
	r.offsets = offs_finish(&s);
	r.n_offsets = s.nomem ? 0 : s.n;
	if (s.nomem) {
		r.error_code = SL_ENOMEM;
		r.error_message = (char *)"out of memory";
	}
	rv = sl_api_send(&env, NULL, reply, arg);
	offs_free(&s);
	return rv;
}

struct names {
	char **v;
	size_t n, cap;
	bool nomem;
};

static void names_add(struct names *s, const char *name, size_t len)
{
	if (s->nomem)
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (v == NULL) {
			s->nomem = true;
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	if ((s->v[s->n] = strndup(name, len)) == NULL)
		s->nomem = true;
	else
		s->n++;
}

static void names_each(void *arg, const struct sl_offsets_key *k, const struct sl_offsets_value *v)
{
	(void)v;
	names_add(arg, k->group, k->group_len);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int sl_coord_list_groups(const struct sl_api_node *node, const Sluice__Envelope *req,
			 sl_api_reply_fn reply, void *arg)
{
	struct sl_coord *co = node->coord;
	struct names s = { 0 };
	for (struct cpart *cp = co != NULL ? co->parts : NULL; cp != NULL; cp = cp->next) {
		if (!cp->loaded)
			continue;
		for (struct cgroup *g = cp->groups; g != NULL; g = g->next)
			names_add(&s, g->id, strlen(g->id));
		sl_offsets_view_foreach(cp->view, NULL, names_each, &s);
	}
	if (s.n > 0)
		qsort(s.v, s.n, sizeof(*s.v), by_name);
	size_t k = 0;
	for (size_t i = 0; i < s.n; i++) {
		if (k > 0 && strcmp(s.v[k - 1], s.v[i]) == 0) {
			free(s.v[i]);
			continue;
		}
		s.v[k++] = s.v[i];
	}
	s.n = k;
	Sluice__GroupListing *gl = calloc(s.n + 1, sizeof(*gl));
	Sluice__GroupListing **glp = calloc(s.n + 1, sizeof(*glp));
	Sluice__ListGroupsResponse r = SLUICE__LIST_GROUPS_RESPONSE__INIT;
	if (gl == NULL || glp == NULL || s.nomem) {
		r.error_code = SL_ENOMEM;
		r.error_message = (char *)"out of memory";
	} else {
		for (size_t i = 0; i < s.n; i++) {
			sluice__group_listing__init(&gl[i]);
			gl[i].group = s.v[i];
			gl[i].state = (char *)"empty";
			for (struct cpart *cp = co->parts; cp != NULL; cp = cp->next) {
				struct cgroup *g = cp->loaded ? cgroup_find(cp, s.v[i]) : NULL;
				if (g != NULL && g->grp != NULL) {
					gl[i].state = (char *)sl_group_state(g->grp);
					gl[i].members = (uint32_t)sl_group_live_members(g->grp);
				}
			}
			glp[i] = &gl[i];
		}
		r.groups = glp;
		r.n_groups = s.n;
	}
	Sluice__Envelope env;
	sl_api_response_of(&env, req);
	env.body_case = SLUICE__ENVELOPE__BODY_LIST_GROUPS_RESPONSE;
	env.list_groups_response = &r;
	int rv = sl_api_send(&env, NULL, reply, arg);
	for (size_t i = 0; i < s.n; i++)
		free(s.v[i]);
	free(s.v);
	free(gl);
	free(glp);
	return rv;
}

static const char *assignor_name(int a)
{
	return a == SL_ASSIGN_RANGE ? "range" : "uniform";
}

int sl_coord_describe_group(const struct sl_api_node *node, const Sluice__Envelope *req,
			    sl_api_reply_fn reply, void *arg)
{
	const Sluice__DescribeGroupRequest *q = req->describe_group_request;
	Sluice__DescribeGroupResponse r = SLUICE__DESCRIBE_GROUP_RESPONSE__INIT;
	char msg[MSG];
	struct cpart *cp;
	int rv = locate(node, q->group, &cp, msg);
	Sluice__Envelope env;
	sl_api_response_of(&env, req);
	env.body_case = SLUICE__ENVELOPE__BODY_DESCRIBE_GROUP_RESPONSE;
	env.describe_group_response = &r;
	struct cgroup *g = rv == SL_OK ? cgroup_find(cp, q->group) : NULL;
	struct offs s = { 0 };
	if (rv == SL_OK)
		sl_offsets_view_foreach(cp->view, q->group, offs_each, &s);
	if (rv == SL_OK && (g == NULL || g->grp == NULL) && s.n == 0) {
		rv = SL_EGROUP_ID_NOT_FOUND;
		snprintf(msg, sizeof(msg), "group '%.200s' has no members and no offsets", q->group);
	}
	if (rv != SL_OK) {
		offs_free(&s);
		r.error_code = rv;
		r.error_message = msg;
		return sl_api_send(&env, NULL, reply, arg);
	}
	size_t nm = g != NULL && g->grp != NULL ? sl_group_members(g->grp) : 0;
	Sluice__GroupMember *gm = calloc(nm + 1, sizeof(*gm));
	Sluice__GroupMember **gmp = calloc(nm + 1, sizeof(*gmp));
	/* Each member's assignment by topic, in one pool. */
	size_t ntp = 0, nparts = 0;
	for (size_t i = 0; i < nm; i++) {
		struct sl_group_member_info mi;
		sl_group_member_info(g->grp, i, &mi);
		ntp += mi.nassignment;
		nparts += mi.nassignment;
	}
	Sluice__TopicPartitions *tp = calloc(ntp + 1, sizeof(*tp));
	Sluice__TopicPartitions **tpp = calloc(ntp + 1, sizeof(*tpp));
	uint32_t *pool = calloc(nparts + 1, sizeof(*pool));
	bool nomem = gm == NULL || gmp == NULL || tp == NULL || tpp == NULL || pool == NULL;
	size_t t = 0, at = 0;
	for (size_t i = 0; !nomem && i < nm; i++) {
		struct sl_group_member_info mi;
		sl_group_member_info(g->grp, i, &mi);
		sluice__group_member__init(&gm[i]);
		gm[i].member_id = (char *)mi.id;
		gm[i].instance_id = (char *)(mi.instance_id != NULL ? mi.instance_id : "");
		gm[i].member_epoch = mi.away ? -2 : mi.epoch;
		gm[i].topics = (char **)mi.topics;
		gm[i].n_topics = mi.ntopics;
		gm[i].assignment = &tpp[t];
		/* Sorted by topic: a topic's partitions are consecutive in the pool. */
		for (size_t j = 0; j < mi.nassignment; j++) {
			if (j == 0 || strcmp(mi.assignment[j].topic, mi.assignment[j - 1].topic) != 0) {
				sluice__topic_partitions__init(&tp[t]);
				tp[t].name = (char *)mi.assignment[j].topic;
				tp[t].partitions = &pool[at];
				tpp[t] = &tp[t];
				gm[i].n_assignment++;
				t++;
			}
			pool[at++] = mi.assignment[j].partition;
			tp[t - 1].n_partitions++;
		}
		gmp[i] = &gm[i];
	}
	r.offsets = offs_finish(&s);
	r.n_offsets = s.n;
	if (nomem || s.nomem) {
		r.error_code = SL_ENOMEM;
		r.error_message = (char *)"out of memory";
		r.n_offsets = 0;
	} else {
		r.state = (char *)(g != NULL && g->grp != NULL ? sl_group_state(g->grp) : "empty");
		r.epoch = g != NULL && g->grp != NULL ? sl_group_epoch(g->grp) : 0;
		r.assignor = (char *)assignor_name(g != NULL && g->grp != NULL
							   ? sl_group_assignor(g->grp)
							   : SL_ASSIGN_UNIFORM);
		r.members = gmp;
		r.n_members = nm;
	}
	rv = sl_api_send(&env, NULL, reply, arg);
	offs_free(&s);
	free(gm);
	free(gmp);
	free(tp);
	free(tpp);
	free(pool);
	return rv;
}

struct keys {
	struct cpart *cp;
	int err;
	size_t n;
};

static void tombstone_each(void *arg, const struct sl_offsets_key *k,
			   const struct sl_offsets_value *v)
{
	struct keys *s = arg;
	(void)v;
	uint8_t *kb;
	size_t kl;
	int rv = sl_offsets_key_encode(k, &kb, &kl);
	if (rv == SL_OK) {
		rv = add_record(s->cp, kb, kl, NULL, 0);
		free(kb);
	}
	if (rv != SL_OK)
		s->err = rv;
	s->n++;
}

int sl_coord_delete_group(const struct sl_api_node *node, const Sluice__Envelope *req,
			  sl_api_reply_fn reply, void *arg)
{
	const Sluice__DeleteGroupRequest *q = req->delete_group_request;
	struct creq *cq = creq_new(SLUICE__API_KEY__DELETE_GROUP, req, 1, reply, arg);
	if (cq == NULL)
		return SL_ENOMEM;
	char msg[MSG];
	struct cpart *cp;
	int rv = locate(node, q->group, &cp, msg);
	if (rv != SL_OK) {
		creq_fail(cq, rv, msg);
		return SL_OK;
	}
	struct cgroup *g = cgroup_find(cp, q->group);
	if (g != NULL && g->grp != NULL && sl_group_live_members(g->grp) > 0) {
		snprintf(msg, sizeof(msg), "group '%.100s' has %zu active members", q->group,
			 sl_group_live_members(g->grp));
		creq_fail(cq, SL_ENON_EMPTY_GROUP, msg);
		return SL_OK;
	}
	/* The offsets' tombstones, the view's changes once written. (The view
	 * is not changed while foreach walks it: add_record only gathers.) */
	struct keys s = { .cp = cp };
	sl_offsets_view_foreach(cp->view, q->group, tombstone_each, &s);
	if (g == NULL && s.n == 0) {
		snprintf(msg, sizeof(msg), "group '%.200s' has no members and no offsets", q->group);
		creq_fail(cq, SL_EGROUP_ID_NOT_FOUND, msg);
		return SL_OK;
	}
	uint8_t *kb;
	size_t kl;
	if (s.err == SL_OK && (s.err = sl_offsets_group_key_encode(q->group, strlen(q->group), &kb,
								   &kl)) == SL_OK) {
		s.err = add_record(cp, kb, kl, NULL, 0);
		free(kb);
	}
	if (g != NULL) {
		for (struct cgroup **gp = &cp->groups; *gp != NULL; gp = &(*gp)->next)
			if (*gp == g) {
				*gp = g->next;
				break;
			}
		cgroup_drop(cp, g, SL_EUNKNOWN_MEMBER_ID, "the group was deleted");
	}
	if (s.err != SL_OK)
		creq_set(cq, 0, s.err, "the group's tombstones were not all written: %s",
			 sl_strerror(s.err));
	wait_write(cp, cq);
	return SL_OK;
}

/* ---- Metrics ------------------------------------------------------------ */

/* A Prometheus label value: backslash, quote and newline escaped. */
static void label(FILE *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\' || s[i] == '"')
			fputc('\\', out);
		if (s[i] == '\n')
			fputs("\\n", out);
		else
			fputc(s[i], out);
	}
}

struct mctx {
	struct sl_coord *co;
	const struct sl_meta *m;
	FILE *out;
};

static void metric_each(void *arg, const struct sl_offsets_key *k,
			const struct sl_offsets_value *v)
{
	struct mctx *x = arg;
	char topic[SL_GROUP_TOPIC_MAX + 1];
	if (k->topic_len > SL_GROUP_TOPIC_MAX)
		return;
	memcpy(topic, k->topic, k->topic_len);
	topic[k->topic_len] = '\0';
	for (int lag = 0; lag < 2; lag++) {
		int64_t value = v->offset;
		if (lag) {
			const struct sl_meta_topic *t = sl_meta_topic(x->m, topic);
			int64_t end;
			if (t == NULL || k->partition >= t->npartitions || x->co->node->parts == NULL ||
			    sl_parts_committed_end(x->co->node->parts, t->parts[k->partition].group,
						   &end) != SL_OK)
				return;
			value = end > v->offset ? end - v->offset : 0;
		}
		fprintf(x->out, "%s{node=\"%llu\",group=\"",
			lag ? "sluice_consumer_group_lag" : "sluice_consumer_group_committed_offset",
			(unsigned long long)x->co->node->node_id);
		label(x->out, k->group, k->group_len);
		fputs("\",topic=\"", x->out);
		label(x->out, topic, k->topic_len);
		fprintf(x->out, "\",partition=\"%u\"} %lld\n", k->partition, (long long)value);
	}
}

void sl_coord_metrics(struct sl_coord *co, FILE *out)
{
	if (co == NULL)
		return;
	fputs("# HELP sluice_consumer_group_members Live members of each group this node coordinates.\n"
	      "# TYPE sluice_consumer_group_members gauge\n"
	      "# HELP sluice_consumer_group_epoch Each coordinated group's epoch.\n"
	      "# TYPE sluice_consumer_group_epoch gauge\n"
	      "# HELP sluice_consumer_group_committed_offset A group's committed offset per "
	      "partition.\n"
	      "# TYPE sluice_consumer_group_committed_offset gauge\n"
	      "# HELP sluice_consumer_group_lag Records between a group's committed offset and the "
	      "partition's high watermark, where a replica runs on this node.\n"
	      "# TYPE sluice_consumer_group_lag gauge\n",
	      out);
	struct mctx x = { co, meta_of(co), out };
	for (struct cpart *cp = co->parts; cp != NULL; cp = cp->next) {
		if (!cp->loaded)
			continue;
		for (struct cgroup *g = cp->groups; g != NULL; g = g->next) {
			unsigned long long id = (unsigned long long)co->node->node_id;
			fprintf(out, "sluice_consumer_group_members{node=\"%llu\",group=\"", id);
			label(out, g->id, strlen(g->id));
			fprintf(out, "\"} %zu\n", sl_group_live_members(g->grp));
			fprintf(out, "sluice_consumer_group_epoch{node=\"%llu\",group=\"", id);
			label(out, g->id, strlen(g->id));
			fprintf(out, "\"} %d\n", sl_group_epoch(g->grp));
		}
		if (x.m != NULL)
			sl_offsets_view_foreach(cp->view, NULL, metric_each, &x);
	}
}
