/* The data path: Produce and Fetch. See data.h. */
#define _GNU_SOURCE
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "blog.h"
#include "controller.h"
#include "data.h"
#include "meta.h"
#include "partitions.h"
#include "pstate.h"
#include "rio.h"
#include "storage.h"

#define PRODUCE_TIMEOUT_MS 30000
#define FETCH_PART_BYTES (1u << 20)
#define FETCH_MAX_BYTES (50u << 20)
#define MSG 256
/* Idempotent producers remembered per partition (pstate.h). */
#define MAX_PRODUCERS 4096
#define PSTATE_BUCKETS 256
/* A group's turn goes as soon as it holds this much: one AppendEntries
 * carries at most the transport's budget (1 MiB), and libraft sends the
 * rest of an entry list cut short only at the next heartbeat. */
#define TURN_MAX_BYTES (256u << 10)

/* Where a partition lives, as the applied metadata says. */
struct place {
	uint32_t group;
	uint32_t max_batch;        /* the topic's max.message.bytes, or the default */
	int64_t leader;            /* -1: none known */
	char host[256];
	uint32_t port;
};

/* SL_OK with pl, or UNKNOWN_TOPIC_OR_PARTITION with msg. */
static int locate(const struct sl_api_node *node, const char *topic, uint32_t partition,
		  struct place *pl, char *msg)
{
	if (node->ctl == NULL) {
		snprintf(msg, MSG, "this node runs no controller state");
		return SL_ENOT_READY;
	}
	const struct sl_meta *m = sl_controller_meta(node->ctl);
	const struct sl_meta_topic *t = sl_meta_topic(m, topic);
	if (t == NULL || partition >= t->npartitions) {
		snprintf(msg, MSG, t == NULL ? "topic '%.200s' does not exist"
					     : "topic '%.200s' has no partition %u",
			 topic, partition);
		return SL_EUNKNOWN_TOPIC_OR_PARTITION;
	}
	const struct sl_meta_partition *p = &t->parts[partition];
	struct sl_log_config d;
	sl_log_config_init(&d);
	*pl = (struct place){ .group = p->group, .leader = -1,
			      .max_batch = t->config.max_message_bytes ? t->config.max_message_bytes
								       : d.max_batch_bytes };
	int64_t leader = sl_parts_client_leader(node->parts, m, p);
	const struct sl_meta_node *n = leader > 0 ? sl_meta_node(m, (uint64_t)leader) : NULL;
	if (n != NULL) {
		pl->leader = (int64_t)n->id;
		snprintf(pl->host, sizeof(pl->host), "%s", n->host);
		pl->port = n->client_port;
	}
	return SL_OK;
}

/* The led group of a partition: SL_OK, or NOT_LEADER with msg. */
static int led(const struct sl_api_node *node, const struct place *pl, const char *topic,
	       uint32_t partition, struct raft **r, struct raft_io **io, char *msg)
{
	if (node->parts != NULL && sl_parts_led(node->parts, pl->group, r, io) == SL_OK)
		return SL_OK;
	if (pl->leader > 0)
		snprintf(msg, MSG, "%.100s/%u is led by node %lld (%.100s:%u)", topic, partition,
			 (long long)pl->leader, pl->host, pl->port);
	else
		snprintf(msg, MSG, "%.200s/%u has no leader right now", topic, partition);
	return SL_ENOT_LEADER;
}

/* A response envelope for a request answered later; an error only when
 * the results could not be allocated (nomem). */
static void later_response(Sluice__Envelope *env, Sluice__ApiKey key, uint32_t corr,
			   uint32_t version, bool nomem)
{
	sluice__envelope__init(env);
	env->correlation_id = corr;
	env->api_key = key;
	env->api_version = version;
	if (nomem) {
		env->error_code = SL_ENOMEM;
		env->error_message = "out of memory";
	}
}

/* A result's leader fields: on NOT_LEADER, the leader as this node knows
 * it (with its address when known); else -1. */
static void redirect(int err, const struct place *pl, int64_t *leader, char **host,
		     uint32_t *port)
{
	*leader = err == SL_ENOT_LEADER ? pl->leader : -1;
	if (err == SL_ENOT_LEADER && pl->leader > 0) {
		*host = (char *)pl->host;
		*port = pl->port;
	}
}

/* ---- Idempotent producers, per partition ------------------------------ */

struct cwait;

/* What this node keeps per partition group: its idempotent producers
 * (created with the first one) and the produces waiting for it to commit
 * an offset (sorted by it). */
struct pgroup {
	struct pgroup *next;
	uint32_t group;
	struct sl_pstate *st;
	struct cwait *waiters;
};

static struct pgroup *pgroups[PSTATE_BUCKETS];

static struct pgroup *group_of(uint32_t group, bool create)
{
	struct pgroup **b = &pgroups[group % PSTATE_BUCKETS];
	for (struct pgroup *g = *b; g != NULL; g = g->next)
		if (g->group == group)
			return g;
	if (!create)
		return NULL;
	struct pgroup *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->group = group;
	g->next = *b;
	*b = g;
	return g;
}

/* The group's producer state; NULL when out of memory (create false:
 * when it has none). */
static struct sl_pstate *pstate_of(uint32_t group, bool create)
{
	struct pgroup *g = group_of(group, create);
	if (g != NULL && g->st == NULL && create)
		g->st = sl_pstate_new(MAX_PRODUCERS);
	return g != NULL ? g->st : NULL;
}

static void fail_waiters(struct pgroup *g, int err, const char *why);

void sl_data_forget(uint32_t group)
{
	for (struct pgroup **pp = &pgroups[group % PSTATE_BUCKETS]; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->group == group) {
			struct pgroup *g = *pp;
			fail_waiters(g, SL_ENOT_LEADER, "the partition left this node");
			*pp = g->next;
			sl_pstate_free(g->st);
			free(g);
			return;
		}
}

/* ---- Produce -------------------------------------------------------- */

struct prod;

/* A produce's batch waiting for its group to commit it (acks=all), or a
 * duplicate's first copy. */
struct cwait {
	struct cwait *next;
	struct prod *pr;
	size_t part;
	int64_t last; /* committed once the high watermark passes it */
};

/* The batches proposed to one group in one loop turn: one raft_apply, so
 * one append and one AppendEntries per follower for all of them. libraft
 * calls back for the first entry only: the batches' answers come from the
 * high watermark (cwait). */
struct turn_item {
	struct prod *pr;
	size_t part;
	int64_t last; /* the batch's last offset */
};

struct turn {
	struct raft_apply req; /* first: the callback gets it */
	struct turn *next;
	const struct sl_api_node *node;
	uint32_t group;
	raft_term term;
	int64_t first, next_offset; /* stamped offsets: the first batch's, the next one's */
	size_t bytes;
	unsigned n, cap;
	struct raft_buffer *bufs;
	struct turn_item *items;
};

static struct turn *turns;
static uv_check_t *turn_check;

struct ppart {
	int err;
	char msg[MSG];
	int64_t base;
	int64_t log_start;
	struct place pl;
	unsigned waiting;   /* batches not yet acknowledged */
	raft_index last;    /* the index of its last batch (acks=leader); max until proposed */
};

struct prod {
	const struct sl_api_node *node;
	sl_api_reply_fn reply;
	void *arg;
	uint32_t corr, version;
	Sluice__Acks acks;
	size_t n;
	struct ppart *p;
	char **topics;
	uint32_t *partitions;
	unsigned callbacks; /* references: its batches in a turn, its waiters */
	bool answered;
	bool timer_on;      /* timer initialized: closed before the free */
	uv_timer_t timer;
	struct prod *prev, *next; /* acks=leader: polled for durability */
};

static struct prod *durable_waiters;
static uv_timer_t *durable_timer;

static void prod_closed(uv_handle_t *h)
{
	struct prod *pr = h->data;
	for (size_t i = 0; i < pr->n; i++)
		free(pr->topics[i]);
	free(pr->topics);
	free(pr->partitions);
	free(pr->p);
	free(pr);
}

static void unlist(struct prod *pr)
{
	if (pr->prev == NULL && durable_waiters != pr)
		return;
	if (pr->prev != NULL)
		pr->prev->next = pr->next;
	else
		durable_waiters = pr->next;
	if (pr->next != NULL)
		pr->next->prev = pr->prev;
	pr->prev = pr->next = NULL;
}

/* Freed once answered and every Raft callback came back. */
static void prod_maybe_free(struct prod *pr)
{
	if (!pr->answered || pr->callbacks > 0)
		return;
	unlist(pr);
	pr->timer.data = pr;
	if (pr->timer_on)
		uv_close((uv_handle_t *)&pr->timer, prod_closed);
	else
		prod_closed((uv_handle_t *)&pr->timer);
}

/* Its waiters go with an answered produce. */
static void drop_waiters(struct prod *pr)
{
	for (size_t i = 0; i < pr->n; i++) {
		struct pgroup *g = group_of(pr->p[i].pl.group, false);
		for (struct cwait **pp = g != NULL ? &g->waiters : NULL; pp != NULL && *pp != NULL;) {
			struct cwait *w = *pp;
			if (w->pr != pr) {
				pp = &w->next;
				continue;
			}
			*pp = w->next;
			pr->callbacks--;
			free(w);
		}
	}
}

static void prod_answer(struct prod *pr)
{
	if (pr->answered)
		return;
	pr->answered = true;
	drop_waiters(pr);
	if (pr->timer_on)
		uv_timer_stop(&pr->timer);
	unlist(pr);
	if (pr->acks == SLUICE__ACKS__ACKS_NONE) {
		pr->reply(pr->arg, NULL, 0, NULL);
		prod_maybe_free(pr);
		return;
	}
	Sluice__ProducePartitionResult *res = calloc(pr->n + 1, sizeof(*res));
	Sluice__ProducePartitionResult **rp = calloc(pr->n + 1, sizeof(*rp));
	Sluice__ProduceResponse r = SLUICE__PRODUCE_RESPONSE__INIT;
	Sluice__Envelope env;
	later_response(&env, SLUICE__API_KEY__PRODUCE, pr->corr, pr->version,
		       res == NULL || rp == NULL);
	if (res != NULL && rp != NULL) {
		for (size_t i = 0; i < pr->n; i++) {
			const struct ppart *pp = &pr->p[i];
			sluice__produce_partition_result__init(&res[i]);
			res[i].topic = pr->topics[i];
			res[i].partition = pr->partitions[i];
			res[i].error_code = pp->err;
			res[i].error_message = (char *)pp->msg;
			res[i].base_offset = pp->err == SL_OK ? pp->base : -1;
			res[i].log_start = pp->log_start;
			redirect(pp->err, &pp->pl, &res[i].leader, &res[i].leader_host,
				 &res[i].leader_port);
			rp[i] = &res[i];
		}
		r.n_results = pr->n;
		r.results = rp;
		env.body_case = SLUICE__ENVELOPE__BODY_PRODUCE_RESPONSE;
		env.produce_response = &r;
	}
	if (sl_api_send(&env, NULL, pr->reply, pr->arg) != SL_OK) {
		/* No frame could be built: the client times out. */
		SL_BLOG(SL_BLOG_ERROR, "data", "produce response not sent: out of memory");
		pr->reply(pr->arg, NULL, 0, NULL);
	}
	free(res);
	free(rp);
	prod_maybe_free(pr);
}

/* Every partition settled (acknowledged or failed). */
static bool prod_settled(const struct prod *pr)
{
	for (size_t i = 0; i < pr->n; i++)
		if (pr->p[i].err == SL_OK && pr->p[i].waiting > 0)
			return false;
	return true;
}

static void part_fail(struct ppart *pp, int err, const char *why)
{
	if (pp->err != SL_OK)
		return;
	pp->err = err;
	snprintf(pp->msg, sizeof(pp->msg), "%s", why);
}

/* Releases one reference of pr: answered once settled, freed once
 * answered and unreferenced. */
static void prod_release(struct prod *pr)
{
	pr->callbacks--;
	if (!pr->answered && prod_settled(pr))
		prod_answer(pr);
	else
		prod_maybe_free(pr);
}

/* Waits for the group to commit up to last (one reference of pr). */
static int add_waiter(struct prod *pr, size_t part, uint32_t group, int64_t last)
{
	struct pgroup *g = group_of(group, true);
	struct cwait *w = g != NULL ? malloc(sizeof(*w)) : NULL;
	if (w == NULL)
		return SL_ENOMEM;
	*w = (struct cwait){ .pr = pr, .part = part, .last = last };
	struct cwait **pp = &g->waiters;
	while (*pp != NULL && (*pp)->last <= last)
		pp = &(*pp)->next;
	w->next = *pp;
	*pp = w;
	pr->callbacks++;
	return SL_OK;
}

/* Ends every waiter of g with err. */
static void fail_waiters(struct pgroup *g, int err, const char *why)
{
	while (g->waiters != NULL) {
		struct cwait *w = g->waiters;
		g->waiters = w->next;
		struct prod *pr = w->pr;
		part_fail(&pr->p[w->part], err, why);
		free(w);
		prod_release(pr);
	}
}

/* The group committed up to hw (exclusive): its waiters below are done. */
static void commit_waiters(struct pgroup *g, int64_t hw)
{
	while (g->waiters != NULL && g->waiters->last < hw) {
		struct cwait *w = g->waiters;
		g->waiters = w->next;
		struct prod *pr = w->pr;
		if (pr->p[w->part].waiting > 0)
			pr->p[w->part].waiting--;
		free(w);
		prod_release(pr);
	}
}

static void turn_free(struct turn *t)
{
	free(t->bufs);
	free(t->items);
	free(t);
}

/* libraft's callback for the turn's first entry: a failure means the
 * leadership went before the batches were committed (they may still be). */
static void on_turn_applied(struct raft_apply *req, int status, void *result)
{
	struct turn *t = (struct turn *)req;
	(void)result;
	for (unsigned k = 0; k < t->n; k++) {
		struct prod *pr = t->items[k].pr;
		if (status != 0)
			part_fail(&pr->p[t->items[k].part], SL_ENOT_LEADER,
				  "leadership was lost before the batch was committed (it may still be)");
		prod_release(pr);
	}
	if (status != 0) {
		struct pgroup *g = group_of(t->group, false);
		if (g != NULL)
			fail_waiters(g, SL_ENOT_LEADER,
				     "leadership was lost before the batch was committed (it may "
				     "still be)");
	}
	turn_free(t);
}

/* Proposes a turn: its batches as one raft_apply, if the group is still
 * led in the term they were stamped for and nothing came between. */
static void flush_turn(struct turn *t)
{
	struct raft *r;
	struct raft_io *io;
	int rv = RAFT_NOTLEADER;
	if (t->node->parts != NULL && sl_parts_led(t->node->parts, t->group, &r, &io) == SL_OK &&
	    r->current_term == t->term && sl_rio_next_offset(io) == t->first)
		rv = raft_apply(r, &t->req, t->bufs, t->n, on_turn_applied);
	if (rv != 0) {
		for (unsigned k = 0; k < t->n; k++) {
			raft_free(t->bufs[k].base);
			struct prod *pr = t->items[k].pr;
			part_fail(&pr->p[t->items[k].part],
				  rv == RAFT_NOTLEADER ? SL_ENOT_LEADER : SL_ENOMEM,
				  rv == RAFT_NOTLEADER ? "leadership was lost before the batch was "
							 "proposed"
						       : raft_strerror(rv));
			prod_release(pr);
		}
		turn_free(t);
		return;
	}
	for (unsigned k = 0; k < t->n; k++) {
		struct turn_item *it = &t->items[k];
		struct prod *pr = it->pr;
		struct ppart *pp = &pr->p[it->part];
		if (pr->acks == SLUICE__ACKS__ACKS_LEADER)
			pp->last = t->req.index + k;
		else if (pr->acks == SLUICE__ACKS__ACKS_ALL &&
			 add_waiter(pr, it->part, t->group, it->last) != SL_OK)
			part_fail(pp, SL_ENOMEM, "out of memory");
	}
}

static void flush_turns(void)
{
	while (turns != NULL) {
		struct turn *t = turns;
		turns = t->next;
		flush_turn(t);
	}
}

static void on_turn_check(uv_check_t *h)
{
	uv_check_stop(h);
	flush_turns();
}

/* Adds a stamped copy of a checked batch to its group's turn. SL_OK with
 * its offset, or SL_ENOMEM. */
static int turn_add(struct prod *pr, size_t i, struct raft *r, struct raft_io *io,
		    const uint8_t *batch, const struct sl_batch_header *h, int64_t *offset)
{
	uint32_t group = pr->p[i].pl.group;
	size_t total = sl_batch_total_size(h);
	struct turn **tp = &turns;
	while (*tp != NULL && (*tp)->group != group)
		tp = &(*tp)->next;
	struct turn *t = *tp;
	if (t != NULL && t->bytes + total > TURN_MAX_BYTES) {
		/* Full: it goes now, and a new one starts after it. */
		*tp = t->next;
		flush_turn(t);
		t = NULL;
	}
	if (t == NULL) {
		if ((t = calloc(1, sizeof(*t))) == NULL)
			return SL_ENOMEM;
		t->node = pr->node;
		t->group = group;
		t->term = r->current_term;
		t->first = t->next_offset = sl_rio_next_offset(io);
		t->next = turns;
		turns = t;
	}
	if (t->n == t->cap) {
		unsigned cap = t->cap ? t->cap * 2 : 8;
		struct raft_buffer *b = realloc(t->bufs, cap * sizeof(*b));
		if (b != NULL)
			t->bufs = b;
		struct turn_item *it = b != NULL ? realloc(t->items, cap * sizeof(*it)) : NULL;
		if (it == NULL)
			return SL_ENOMEM;
		t->items = it;
		t->cap = cap;
	}
	void *copy = raft_malloc(total);
	if (copy == NULL)
		return SL_ENOMEM;
	memcpy(copy, batch, total);
	*offset = t->next_offset;
	sl_batch_stamp(copy, *offset, (int32_t)t->term);
	t->bufs[t->n] = (struct raft_buffer){ .base = copy, .len = total };
	t->items[t->n++] = (struct turn_item){ pr, i, *offset + h->last_offset_delta };
	t->bytes += total;
	t->next_offset = *offset + h->last_offset_delta + 1;
	pr->callbacks++;
	pr->p[i].waiting++;
	const struct sl_api_node *node = pr->node;
	if (node->loop != NULL) {
		if (turn_check == NULL && (turn_check = malloc(sizeof(*turn_check))) != NULL) {
			uv_check_init(node->loop, turn_check);
			uv_unref((uv_handle_t *)turn_check);
		}
		if (turn_check != NULL)
			uv_check_start(turn_check, on_turn_check);
	}
	return SL_OK;
}

static void on_prod_timeout(uv_timer_t *t)
{
	struct prod *pr = t->data;
	for (size_t i = 0; i < pr->n; i++)
		if (pr->p[i].waiting > 0)
			part_fail(&pr->p[i], SL_EREQUEST_TIMED_OUT,
				  "not acknowledged within the request's timeout (it may still be)");
	prod_answer(pr);
}

/* acks=leader: answered once the leader's disk holds every batch. */
static void on_durable_poll(uv_timer_t *t)
{
	struct prod *next;
	for (struct prod *pr = durable_waiters; pr != NULL; pr = next) {
		next = pr->next;
		for (size_t i = 0; i < pr->n; i++) {
			struct ppart *pp = &pr->p[i];
			struct raft *r;
			struct raft_io *io;
			if (pp->err != SL_OK || pp->waiting == 0)
				continue;
			char msg[MSG];
			if (led(pr->node, &pp->pl, pr->topics[i], pr->partitions[i], &r, &io, msg) !=
			    SL_OK)
				part_fail(pp, SL_ENOT_LEADER, msg);
			else if (sl_rio_last_stored(io) >= pp->last)
				pp->waiting = 0;
		}
		if (prod_settled(pr))
			prod_answer(pr);
	}
	(void)t; /* one-shot: started again by the next sl_data_stored */
}

void sl_data_stored(uint32_t group)
{
	(void)group; /* few produces wait at once: all look again */
	if (durable_waiters != NULL && durable_timer != NULL)
		uv_timer_start(durable_timer, on_durable_poll, 0, 0);
}

/* Checks a partition's batches in place: SL_OK with their count, or the
 * first fault with msg; nothing is written either way. */
static int check_batches(const uint8_t *p, size_t len, uint32_t max_batch, unsigned *count,
			 char *msg)
{
	*count = 0;
	if (len == 0) {
		snprintf(msg, MSG, "no record batch");
		return SL_EINVALID_REQUEST;
	}
	for (size_t pos = 0; pos < len; (*count)++) {
		struct sl_batch_header h;
		/* The header alone first: its size against the limit, then the
		 * whole batch (a cut one is BATCH_TRUNCATED) and its CRC. */
		int rv = sl_batch_parse_header(p + pos, len - pos, (size_t)INT32_MAX + 12, &h);
		if (rv == SL_OK && sl_batch_total_size(&h) > max_batch) {
			snprintf(msg, MSG, "batch %u is %zu bytes, above max.message.bytes %u", *count,
				 sl_batch_total_size(&h), max_batch);
			return SL_EMESSAGE_TOO_LARGE;
		}
		if (rv == SL_OK)
			rv = sl_batch_check(p + pos, len - pos, max_batch, &h);
		if (rv == SL_OK && (h.attributes & SL_ATTR_CONTROL)) {
			snprintf(msg, MSG, "batch %u is a control batch: only the log writes those",
				 *count);
			return SL_EINVALID_RECORD;
		}
		if (rv != SL_OK) {
			snprintf(msg, MSG, "batch %u (at byte %zu): %s", *count, pos, sl_strerror(rv));
			return rv;
		}
		pos += sl_batch_total_size(&h);
	}
	return SL_OK;
}

/* A duplicate's first copy is not committed yet: the partition's answer
 * waits for it (or the request's timeout). */
static void wait_dup(struct prod *pr, size_t i, uint32_t group, int64_t last)
{
	if (add_waiter(pr, i, group, last) != SL_OK) {
		part_fail(&pr->p[i], SL_ENOMEM, "out of memory");
		return;
	}
	pr->p[i].waiting++;
}

/* Proposes a partition's checked batches, each as one Raft entry, in its
 * group's turn (flushed once the loop turn's requests were read). With
 * acks=all, a batch from an idempotent producer is checked against the
 * partition's producer state first: a duplicate is not written again
 * (its first copy's offset is the answer, once committed). */
static void propose(struct prod *pr, size_t i, struct raft *r, struct raft_io *io,
		    const uint8_t *p, size_t len)
{
	struct ppart *pp = &pr->p[i];
	pp->base = -1;
	pp->last = (raft_index)-1; /* not durable before it is proposed */
	pp->log_start = sl_log_start_offset(sl_rio_log(io));
	bool idem = pr->acks == SLUICE__ACKS__ACKS_ALL;
	for (size_t pos = 0; pos < len;) {
		struct sl_batch_header h;
		(void)sl_batch_parse_header(p + pos, len - pos, len - pos, &h); /* checked */
		size_t total = sl_batch_total_size(&h);
		struct sl_pstate *st = NULL;
		if (idem && h.producer_id >= 0) {
			/* The state must hold every committed batch: nothing
			 * committed may still wait to be applied. */
			if (r->last_applied < r->commit_index) {
				part_fail(pp, SL_ENOT_READY,
					  "the partition's leader is still applying committed entries");
				return;
			}
			st = pstate_of(pp->pl.group, true);
			if (st == NULL) {
				part_fail(pp, SL_ENOMEM, "out of memory");
				return;
			}
			sl_pstate_term(st, r->current_term);
			int64_t dup_base, dup_last;
			bool tentative;
			char msg[MSG];
			int rv = sl_pstate_check(st, &h, &dup_base, &dup_last, &tentative, msg,
						 sizeof(msg));
			if (rv != SL_OK) {
				part_fail(pp, rv, msg);
				return;
			}
			if (dup_base >= 0) {
				if (pp->base < 0)
					pp->base = dup_base;
				if (dup_last >= sl_rio_offset_after(io, r->commit_index))
					wait_dup(pr, i, pp->pl.group, dup_last);
				pos += total;
				continue;
			}
		}
		int64_t offset;
		if (turn_add(pr, i, r, io, p + pos, &h, &offset) != SL_OK) {
			part_fail(pp, SL_ENOMEM, "out of memory (batches before it were proposed)");
			return;
		}
		if (pp->base < 0)
			pp->base = offset;
		if (st != NULL) {
			h.base_offset = offset;
			if (sl_pstate_proposed(st, &h) != SL_OK)
				SL_BLOG(SL_BLOG_WARN, "data",
					"group %u: producer %lld not remembered (out of memory)",
					pp->pl.group, (long long)h.producer_id);
		}
		pos += total;
	}
}

int sl_data_produce(const struct sl_api_node *node, const struct sl_frame *f,
		    sl_api_reply_fn reply, void *arg)
{
	const Sluice__Envelope *req = f->env;
	const Sluice__ProduceRequest *q = req->produce_request;
	Sluice__Envelope env;
	sl_api_response_of(&env, req);
	if (q->n_partitions != f->nseg || q->acks > SLUICE__ACKS__ACKS_NONE) {
		char why[MSG];
		snprintf(why, sizeof(why),
			 q->acks > SLUICE__ACKS__ACKS_NONE
				 ? "acks must be all, leader or none"
				 : "%zu partitions but %zu data segments: one segment per partition",
			 q->n_partitions, f->nseg);
		env.error_code = SL_EINVALID_REQUEST;
		env.error_message = why;
		return sl_api_send(&env, NULL, reply, arg);
	}
	struct prod *pr = calloc(1, sizeof(*pr));
	size_t n = q->n_partitions;
	if (pr == NULL || (pr->p = calloc(n + 1, sizeof(*pr->p))) == NULL ||
	    (pr->topics = calloc(n + 1, sizeof(*pr->topics))) == NULL ||
	    (pr->partitions = calloc(n + 1, sizeof(*pr->partitions))) == NULL) {
		if (pr != NULL) {
			free(pr->p);
			free(pr->topics);
		}
		free(pr);
		return SL_ENOMEM;
	}
	*pr = (struct prod){ .node = node, .reply = reply, .arg = arg, .corr = req->correlation_id,
			     .version = req->api_version, .acks = q->acks, .n = n, .p = pr->p,
			     .topics = pr->topics, .partitions = pr->partitions };
	for (size_t i = 0; i < n; i++) {
		pr->topics[i] = strdup(q->partitions[i]->topic);
		pr->partitions[i] = q->partitions[i]->partition;
		if (pr->topics[i] == NULL) {
			pr->answered = true;
			prod_maybe_free(pr);
			return SL_ENOMEM;
		}
	}
	/* Check every partition before proposing any. */
	struct raft **rs = calloc(n + 1, sizeof(*rs));
	struct raft_io **ios = calloc(n + 1, sizeof(*ios));
	if (rs == NULL || ios == NULL) {
		free(rs);
		free(ios);
		pr->answered = true;
		prod_maybe_free(pr);
		return SL_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct ppart *pp = &pr->p[i];
		unsigned count;
		pp->err = locate(node, pr->topics[i], pr->partitions[i], &pp->pl, pp->msg);
		if (pp->err == SL_OK && strncmp(pr->topics[i], "__", 2) == 0) {
			/* Sluice's own topics (__consumer_offsets): their
			 * records are written by the broker alone. */
			pp->err = SL_EINVALID_TOPIC;
			snprintf(pp->msg, MSG, "topic '%.200s' is Sluice's own: clients do not "
					       "write to it",
				 pr->topics[i]);
		}
		if (pp->err == SL_OK)
			pp->err = led(node, &pp->pl, pr->topics[i], pr->partitions[i], &rs[i], &ios[i],
				      pp->msg);
		if (pp->err == SL_OK)
			pp->err = check_batches(f->seg[i].iov_base, f->seg[i].iov_len,
						pp->pl.max_batch, &count, pp->msg);
	}
	pr->callbacks++; /* held while proposing: nothing answers it meanwhile */
	for (size_t i = 0; i < n; i++)
		if (pr->p[i].err == SL_OK)
			propose(pr, i, rs[i], ios[i], f->seg[i].iov_base, f->seg[i].iov_len);
	free(rs);
	free(ios);
	if (node->loop == NULL) /* the fuzzer's node: no loop turn ends */
		flush_turns();
	pr->callbacks--;
	if (pr->acks == SLUICE__ACKS__ACKS_NONE) {
		prod_answer(pr);
		return SL_OK;
	}
	if (node->loop == NULL) { /* the fuzzer's node: nothing waits */
		prod_answer(pr);
		return SL_OK;
	}
	if (pr->acks == SLUICE__ACKS__ACKS_LEADER && !prod_settled(pr)) {
		pr->next = durable_waiters;
		if (durable_waiters != NULL)
			durable_waiters->prev = pr;
		durable_waiters = pr;
		if (durable_timer == NULL && (durable_timer = malloc(sizeof(*durable_timer))) != NULL)
			uv_timer_init(node->loop, durable_timer);
		if (durable_timer != NULL) /* it may be durable already */
			uv_timer_start(durable_timer, on_durable_poll, 0, 0);
	}
	if (prod_settled(pr)) {
		prod_answer(pr);
		return SL_OK;
	}
	uv_timer_init(node->loop, &pr->timer);
	pr->timer.data = pr;
	pr->timer_on = true;
	uv_timer_start(&pr->timer, on_prod_timeout, q->timeout_ms ? q->timeout_ms : PRODUCE_TIMEOUT_MS,
		       0);
	return SL_OK;
}

/* ---- Fetch ---------------------------------------------------------- */

struct fpart {
	char *topic;      /* the request's, copied: a fetch may outlive its frame */
	uint32_t partition;
	int64_t offset;
	uint32_t max_bytes;
	int err;
	char msg[MSG];
	struct place pl;
	int64_t hw, log_start;
	uint8_t *buf;
	size_t len;
};

struct fetch {
	const struct sl_api_node *node;
	sl_api_reply_fn reply;
	void *arg;
	uint32_t corr, version;
	uint32_t min_bytes, max_bytes;
	size_t n;
	struct fpart *p;
	struct iovec *seg;
	uint64_t deadline;
	struct fetch *prev, *next;
};

static struct fetch *parked;
static uv_timer_t *fetch_timer;

static void fetch_free(void *arg)
{
	struct fetch *fe = arg;
	for (size_t i = 0; i < fe->n; i++) {
		free(fe->p[i].buf);
		free(fe->p[i].topic);
	}
	free(fe->p);
	free(fe->seg);
	free(fe);
}

/* Reads what partition i has for the fetch, unless it has data or an
 * error already. *budget: bytes the response may still take. */
static void fetch_part(struct fetch *fe, size_t i, uint64_t *budget)
{
	struct fpart *pp = &fe->p[i];
	struct raft *r;
	struct raft_io *io;
	if (pp->err != SL_OK || pp->len > 0)
		return;
	pp->hw = pp->log_start = -1;
	pp->err = locate(fe->node, pp->topic, pp->partition, &pp->pl, pp->msg);
	if (pp->err == SL_OK)
		pp->err = led(fe->node, &pp->pl, pp->topic, pp->partition, &r, &io, pp->msg);
	if (pp->err != SL_OK)
		return;
	sl_log *log = sl_rio_log(io);
	pp->hw = sl_rio_offset_after(io, r->commit_index);
	pp->log_start = sl_log_start_offset(log);
	if (pp->offset < pp->log_start || pp->offset > pp->hw) {
		pp->err = SL_EOFFSET_OUT_OF_RANGE;
		snprintf(pp->msg, sizeof(pp->msg), "offset %lld is outside [%lld, %lld]",
			 (long long)pp->offset, (long long)pp->log_start, (long long)pp->hw);
		return;
	}
	if (pp->offset == pp->hw || *budget == 0)
		return;
	uint64_t max = pp->max_bytes ? pp->max_bytes : FETCH_PART_BYTES;
	struct sl_slice sl;
	int rv = sl_log_read(log, pp->offset, max < *budget ? max : *budget, &sl);
	if (rv == SL_OK && sl.len > 0 && (pp->buf = malloc(sl.len)) == NULL)
		rv = SL_ENOMEM;
	if (rv == SL_OK && sl.len > 0)
		rv = sl_slice_read(&sl, pp->buf);
	if (rv == SL_OK || rv == SL_ELOG_CORRUPT)
		sl_slice_release(&sl);
	if (rv != SL_OK) {
		free(pp->buf);
		pp->buf = NULL;
		pp->err = rv == SL_EOFFSET_OUT_OF_RANGE ? rv : rv == SL_ENOMEM ? rv : SL_ESTORAGE;
		snprintf(pp->msg, sizeof(pp->msg), "reading from %lld: %s", (long long)pp->offset,
			 rv == SL_ENOMEM ? "out of memory" : sl_log_errmsg(log));
		return;
	}
	/* Whole batches below the high watermark only. */
	size_t len = 0;
	while (len < sl.len) {
		struct sl_batch_header h;
		if (sl_batch_parse_header(pp->buf + len, sl.len - len, sl.len - len, &h) != SL_OK ||
		    sl_batch_last_offset(&h) >= pp->hw)
			break;
		len += sl_batch_total_size(&h);
	}
	pp->len = len;
	*budget -= len < *budget ? len : *budget;
}

/* Fills what it can; answers unless it should wait for more. */
static bool fetch_run(struct fetch *fe, bool last_chance)
{
	uint64_t budget = fe->max_bytes ? fe->max_bytes : FETCH_MAX_BYTES;
	if (budget > fe->node->max_frame_bytes / 2)
		budget = fe->node->max_frame_bytes / 2;
	uint64_t have = 0;
	bool errors = false;
	for (size_t i = 0; i < fe->n; i++)
		budget -= fe->p[i].len < budget ? fe->p[i].len : budget;
	for (size_t i = 0; i < fe->n; i++) {
		fetch_part(fe, i, &budget);
		have += fe->p[i].len;
		errors = errors || fe->p[i].err != SL_OK;
	}
	if (!last_chance && !errors && have < fe->min_bytes)
		return false;
	Sluice__FetchPartitionResult *res = calloc(fe->n + 1, sizeof(*res));
	Sluice__FetchPartitionResult **rp = calloc(fe->n + 1, sizeof(*rp));
	Sluice__FetchResponse r = SLUICE__FETCH_RESPONSE__INIT;
	Sluice__Envelope env;
	later_response(&env, SLUICE__API_KEY__FETCH, fe->corr, fe->version,
		       res == NULL || rp == NULL);
	struct sl_api_data data = { .seg = fe->seg, .nseg = 0, .release = fetch_free,
				    .release_arg = fe };
	if (res != NULL && rp != NULL) {
		for (size_t i = 0; i < fe->n; i++) {
			const struct fpart *pp = &fe->p[i];
			sluice__fetch_partition_result__init(&res[i]);
			res[i].topic = pp->topic;
			res[i].partition = pp->partition;
			res[i].error_code = pp->err;
			res[i].error_message = (char *)pp->msg;
			res[i].high_watermark = pp->hw;
			res[i].log_start = pp->log_start;
			redirect(pp->err, &pp->pl, &res[i].leader, &res[i].leader_host,
				 &res[i].leader_port);
			rp[i] = &res[i];
			fe->seg[i] = (struct iovec){ .iov_base = pp->buf, .iov_len = pp->len };
		}
		data.nseg = fe->n;
		r.n_results = fe->n;
		r.results = rp;
		env.body_case = SLUICE__ENVELOPE__BODY_FETCH_RESPONSE;
		env.fetch_response = &r;
	}
	if (sl_api_send(&env, &data, fe->reply, fe->arg) != SL_OK) {
		SL_BLOG(SL_BLOG_ERROR, "data", "fetch response not sent: out of memory");
		fe->reply(fe->arg, NULL, 0, &data); /* frees fe */
	}
	free(res);
	free(rp);
	return true;
}

static void unpark(struct fetch *fe)
{
	if (fe->prev != NULL)
		fe->prev->next = fe->next;
	else
		parked = fe->next;
	if (fe->next != NULL)
		fe->next->prev = fe->prev;
}

static void park(struct fetch *fe)
{
	fe->prev = NULL;
	fe->next = parked;
	if (parked != NULL)
		parked->prev = fe;
	parked = fe;
}

/* Runs every waiting fetch (answering those that have enough or whose
 * time is up), then sleeps until the earliest deadline or the next
 * commit. */
static void on_fetch_poll(uv_timer_t *t)
{
	uint64_t now = uv_now(t->loop);
	struct fetch *still = NULL, *next;
	for (struct fetch *fe = parked; fe != NULL; fe = next) {
		next = fe->next;
		unpark(fe);
		if (!fetch_run(fe, now >= fe->deadline)) {
			fe->next = still;
			still = fe;
		}
	}
	uint64_t first = UINT64_MAX;
	for (struct fetch *fe = still; fe != NULL; fe = next) {
		next = fe->next;
		park(fe);
		first = fe->deadline < first ? fe->deadline : first;
	}
	if (parked != NULL)
		uv_timer_start(t, on_fetch_poll, first > now ? first - now : 0, 0);
}

void sl_data_applied(uint32_t group, const void *entry, size_t len)
{
	struct sl_batch_header h;
	if (entry != NULL && sl_batch_parse_header(entry, len, len, &h) == SL_OK &&
	    h.producer_id >= 0) {
		struct sl_pstate *st = pstate_of(group, true);
		if (st != NULL)
			sl_pstate_applied(st, &h);
	}
	/* Produces waiting for their batches (or a duplicate's first copy)
	 * to commit; all of them fail once this node no longer leads. */
	struct pgroup *g = group_of(group, false);
	if (g != NULL && g->waiters != NULL) {
		const struct sl_api_node *node = g->waiters->pr->node;
		struct raft *r;
		struct raft_io *io;
		if (node->parts == NULL || sl_parts_led(node->parts, group, &r, &io) != SL_OK)
			fail_waiters(g, SL_ENOT_LEADER,
				     "leadership was lost before the batch was committed (it may "
				     "still be)");
		else
			commit_waiters(g, sl_rio_offset_after(io, r->commit_index));
	}
	if (parked != NULL && fetch_timer != NULL) /* few fetches wait: all look again */
		uv_timer_start(fetch_timer, on_fetch_poll, 0, 0);
}

int sl_data_fetch(const struct sl_api_node *node, const struct sl_frame *f, sl_api_reply_fn reply,
		  void *arg)
{
	const Sluice__Envelope *req = f->env;
	if (f->nseg != 0) {
		Sluice__Envelope env;
		sl_api_response_of(&env, req);
		env.error_code = SL_EINVALID_REQUEST;
		env.error_message = "a fetch request carries no record data";
		return sl_api_send(&env, NULL, reply, arg);
	}
	/* What the request asks, copied: it may wait beyond the frame. */
	const Sluice__FetchRequest *q = req->fetch_request;
	size_t n = q->n_partitions;
	struct fetch *fe = calloc(1, sizeof(*fe));
	if (fe == NULL || (fe->p = calloc(n + 1, sizeof(*fe->p))) == NULL ||
	    (fe->seg = calloc(n + 1, sizeof(*fe->seg))) == NULL) {
		if (fe != NULL)
			free(fe->p);
		free(fe);
		return SL_ENOMEM;
	}
	fe->n = n;
	for (size_t i = 0; i < n; i++) {
		const Sluice__FetchPartition *fp = q->partitions[i];
		struct fpart *pp = &fe->p[i];
		*pp = (struct fpart){ .topic = strdup(fp->topic), .partition = fp->partition,
				      .offset = fp->offset, .max_bytes = fp->max_bytes };
		if (pp->topic == NULL) {
			fetch_free(fe);
			return SL_ENOMEM;
		}
	}
	fe->node = node;
	fe->reply = reply;
	fe->arg = arg;
	fe->corr = req->correlation_id;
	fe->version = req->api_version;
	fe->min_bytes = q->min_bytes;
	fe->max_bytes = q->max_bytes;
	if (node->loop == NULL || fetch_run(fe, q->max_wait_ms == 0)) {
		if (node->loop == NULL) /* the fuzzer's node: nothing waits */
			fetch_run(fe, true);
		return SL_OK;
	}
	fe->deadline = uv_now(node->loop) + q->max_wait_ms;
	if (fetch_timer == NULL && (fetch_timer = malloc(sizeof(*fetch_timer))) != NULL)
		uv_timer_init(node->loop, fetch_timer);
	if (fetch_timer == NULL) {
		fetch_run(fe, true);
		return SL_OK;
	}
	park(fe);
	/* Its deadline, unless the timer fires sooner. */
	uint64_t due = uv_timer_get_due_in(fetch_timer);
	if (!uv_is_active((uv_handle_t *)fetch_timer) || due > q->max_wait_ms)
		uv_timer_start(fetch_timer, on_fetch_poll, q->max_wait_ms, 0);
	return SL_OK;
}

static void timer_closed(uv_handle_t *h)
{
	free(h);
}

void sl_data_stop_waiting(void)
{
	flush_turns();
	if (turn_check != NULL)
		uv_close((uv_handle_t *)turn_check, timer_closed);
	turn_check = NULL;
	while (parked != NULL) {
		struct fetch *fe = parked;
		unpark(fe);
		fetch_run(fe, true);
	}
	if (fetch_timer != NULL)
		uv_close((uv_handle_t *)fetch_timer, timer_closed);
	fetch_timer = NULL;
	if (durable_timer != NULL)
		uv_close((uv_handle_t *)durable_timer, timer_closed);
	durable_timer = NULL;
}
