/* The consumer of assigned partitions (sluice.h).
 *
 * The loop thread keeps one Fetch in flight per partition (one request
 * per leader node carrying all of its partitions that are due), as long
 * as fetched-but-unpolled data stays under fetch.buffer.bytes: so the
 * next batches are on their way while the application polls the last
 * ones. Each partition's answer is copied once, out of the connection's
 * buffer into a chunk; sluice_poll walks the chunks' batches in place
 * (decompressing zstd ones), and a message points into its batch, which
 * lives while any of its messages does.
 *
 * A partition's position is reset (ListOffsets to its leader) when it is
 * assigned, when sluice_seek asks for an end, a timestamp or a shift, and
 * when a fetch finds it outside the log (auto.offset.reset). A seek bumps
 * the partition's epoch: whatever was fetched for an older epoch is
 * dropped. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "internal.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000

/* How a partition's position is found: R_COMMITTED asks the group's
 * coordinator (OffsetFetch), then falls back on auto.offset.reset. */
enum { R_NONE, R_EARLIEST, R_LATEST, R_TIMESTAMP, R_SHIFT, R_COMMITTED };

#define HB_MIN_GAP_MS 20      /* between two heartbeats that bring no news */

/* Something the application hears of in sluice_poll: a partition
 * assigned, revoked (then committed, with auto-commit, and released) or
 * lost. */
struct cevent {
	struct cevent *next;
	struct cpart *cp;
	int kind; /* SLUICE_ASSIGNED, SLUICE_REVOKED, SLUICE_LOST */
};

/* A commit: its partitions' offsets, sent to the coordinator until it
 * answers for good or the deadline passes. */
struct ccommit {
	struct ccommit *next;
	sluice_done_cb cb;  /* NULL: nobody is told (auto-commit), or sync */
	void *opaque;
	bool sync, done;    /* sync: the caller waits on done (mu) */
	int result;
	char errmsg[SL_ERRMSG_SIZE];
	uint64_t deadline;
	bool sent;          /* in flight (loop) */
	size_t n;
	struct {
		struct cpart *cp;
		int64_t offset;
		int32_t epoch; /* the term of the record read last; -1: unknown */
	} e[];
};

struct cpart {
	struct cpart *next;
	struct ctopic *topic;
	int32_t partition;
	/* (mu) */
	uint32_t epoch;
	int64_t position;    /* the next offset to fetch; -1: reset first */
	int reset;           /* R_*: how */
	int64_t reset_value; /* R_TIMESTAMP: ms; R_SHIFT: the offset wanted */
	int64_t next_poll;   /* the offset after the last record polled; -1: none */
	int64_t committed;   /* the last offset committed from here; -1: none */
	int32_t poll_epoch;  /* the leader epoch (term) of the last record polled */
	bool owned;          /* group: the coordinator gave it and it is not released */
	bool revoking;       /* group: taken away; released once the application saw it */
	bool paused;         /* sluice_pause: not fetched until sluice_resume */
	/* Loop thread. */
	bool busy;           /* a Fetch or ListOffsets of busy_epoch is in flight */
	uint32_t busy_epoch; /* a seek need not wait for an older one's answer */
	uint64_t retry_at;
	unsigned backoff_ms;
};

struct ctopic {
	struct ctopic *next;
	char *name;
	int32_t nparts; /* (mu) -1: not known yet */
	int err, last_err;
	char errmsg[SL_ERRMSG_SIZE];
};

/* One partition's fetched bytes: whole batches (or an error for poll). */
struct chunk {
	struct chunk *next;
	atomic_uint refs;
	struct cpart *cp;
	uint32_t epoch;
	int64_t from; /* records below are skipped: the batch holding it may start earlier */
	int err;
	char errmsg[SL_ERRMSG_SIZE];
	size_t len, at;
	uint8_t data[];
};

/* A batch being walked by poll; messages point into it. */
struct cbatch {
	atomic_uint refs;
	struct chunk *chunk;
	struct sl_record_iter it;
};

struct sluice_msg {
	struct cbatch *b;
	const char *topic;
	int32_t partition;
	struct sl_record rec;
};

struct sluice_consumer {
	sluice_client_t *cl;
	struct cl_service svc;  /* its kick is work() */
	struct cl_op op;        /* carries the calls */
	struct cl_op *close_op; /* set by close: stops once no call is in flight */
	unsigned calls;         /* loop: calls in flight */
	bool stopping;          /* loop: close asked; ends when calls is 0 */
	pthread_mutex_t mu;
	pthread_cond_t cond;    /* a chunk came, metadata came */
	struct ctopic *topics;  /* (mu) */
	struct cpart *parts;    /* (mu) */
	struct chunk *ready, **ready_tail; /* (mu) fetched, not yet polled */
	uint64_t buffered;      /* (mu) bytes in ready */
	bool kicked;            /* (mu) */
	/* The group (group NULL: none). Immutable after new: */
	char *group;
	sluice_assign_cb assign_cb;
	void *assign_opaque;
	/* (mu) */
	char **sub;             /* the subscription: topics, or */
	size_t nsub;
	char *sub_regex;        /* a regex */
	bool subscribed;
	struct cevent *events, **events_tail; /* for the application's poll */
	struct ccommit *commits; /* queued or in flight */
	int group_err;          /* a fatal group error poll reports once */
	char group_errmsg[SL_ERRMSG_SIZE];
	/* Loop thread. */
	char member_id[72];
	int32_t member_epoch;
	uint32_t hb_interval_ms;
	struct cl_addr coord;
	bool have_coord, finding, hb_busy, fetching_committed;
	bool hb_now;            /* something changed: heartbeat at once */
	bool leave, leave_sent, left; /* close: leave the group; sent; answered */
	uint64_t hb_at;         /* next heartbeat due (cl_mono_ms) */
	uint64_t hb_sent;
	uint64_t coord_retry_at;
	unsigned coord_backoff_ms;
	uint64_t autocommit_at;
	/* Poll's own state, under pmu (polls from several threads take turns). */
	pthread_mutex_t pmu;
	struct chunk *cur;
	struct cbatch *batch;
};

static void chunk_unref(struct chunk *k)
{
	if (k != NULL && atomic_fetch_sub(&k->refs, 1) == 1)
		free(k);
}

static void batch_unref(struct cbatch *b)
{
	if (b != NULL && atomic_fetch_sub(&b->refs, 1) == 1) {
		sl_record_iter_free(&b->it);
		chunk_unref(b->chunk);
		free(b);
	}
}

static void kick_locked(sluice_consumer_t *c)
{
	if (!c->kicked) {
		c->kicked = true;
		cl_service_wake(&c->svc);
	}
}

/* (mu) */
static void push_chunk(sluice_consumer_t *c, struct chunk *k)
{
	k->next = NULL;
	*c->ready_tail = k;
	c->ready_tail = &k->next;
	c->buffered += k->len;
	pthread_cond_broadcast(&c->cond);
}

static struct chunk *error_chunk(struct cpart *cp, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static struct chunk *error_chunk(struct cpart *cp, int err, const char *fmt, ...)
{
	struct chunk *k = calloc(1, sizeof(*k));
	if (k == NULL)
		return NULL;
	atomic_init(&k->refs, 1);
	k->cp = cp;
	k->epoch = cp->epoch;
	k->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(k->errmsg, sizeof(k->errmsg), fmt, ap);
	va_end(ap);
	return k;
}

/* ---- The loop side --------------------------------------------------------- */

static void work(sluice_consumer_t *c);
static void group_work(sluice_consumer_t *c, uint64_t now, uint64_t *due);
static void send_leave(sluice_consumer_t *c);

static void backoff(struct cpart *cp)
{
	cp->backoff_ms = cp->backoff_ms == 0 ? BACKOFF_MIN_MS : cp->backoff_ms * 2;
	if (cp->backoff_ms > BACKOFF_MAX_MS)
		cp->backoff_ms = BACKOFF_MAX_MS;
	cp->retry_at = cl_mono_ms() + cp->backoff_ms;
}

/* A request in flight: its partitions and their epochs when sent. */
struct creq {
	sluice_consumer_t *c;
	size_t n;
	struct {
		struct cpart *cp;
		uint32_t epoch;
		int64_t offset;
	} e[];
};

/* The envelope's error, or the body's. */
static int resp_err(int err, Sluice__Envelope *resp, int body_err, const char *body_msg,
		    bool has_body, const char **msg)
{
	if (err != SL_OK)
		return err;
	if (resp->error_code != 0) {
		*msg = resp->error_message;
		return resp->error_code;
	}
	if (!has_body) {
		*msg = "the node answered with another API";
		return SL_EIO;
	}
	if (body_err != 0) {
		*msg = body_msg;
		return body_err;
	}
	return SL_OK;
}

/* One partition's retriable failure: back off, and ask who leads now. */
static void part_failed(sluice_consumer_t *c, struct cpart *cp, int err, int64_t leader,
			const char *host, uint32_t port)
{
	if (err == SL_ENOT_LEADER && leader >= 1)
		cl_meta_set_leader(c->cl, cp->topic->name, cp->partition, leader, host, port);
	else
		cl_meta_refresh(c->cl);
	backoff(cp);
}

static void on_fetch(struct cl_op *op, void *arg, int err, const char *msg,
		     Sluice__Envelope *resp, const struct iovec *seg, size_t nseg)
{
	struct creq *rq = arg;
	sluice_consumer_t *c = rq->c;
	(void)op;
	c->calls--;
	const Sluice__FetchResponse *r = resp != NULL ? resp->fetch_response : NULL;
	err = resp_err(err, resp, r != NULL ? r->error_code : 0, r != NULL ? r->error_message : "",
		       r != NULL, &msg);
	if (err == SL_OK && (r->n_results != rq->n || nseg != rq->n)) {
		err = SL_EIO;
		msg = "the node's answer to Fetch does not match the request";
	}
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < rq->n; i++) {
		struct cpart *cp = rq->e[i].cp;
		if (cp->busy_epoch == rq->e[i].epoch)
			cp->busy = false;
		if (rq->e[i].epoch != cp->epoch || c->stopping)
			continue; /* sought elsewhere meanwhile */
		const Sluice__FetchPartitionResult *pr = err == SL_OK ? r->results[i] : NULL;
		int e = pr != NULL ? pr->error_code : err;
		if (e == SL_EOFFSET_OUT_OF_RANGE) {
			int policy = c->cl->conf.offset_reset;
			if (policy == OFFSET_RESET_NONE) {
				struct chunk *k = error_chunk(
					cp, e, "%s/%d: offset %lld is outside the log [%lld, %lld)",
					cp->topic->name, cp->partition, (long long)rq->e[i].offset,
					pr != NULL ? (long long)pr->log_start : -1LL,
					pr != NULL ? (long long)pr->high_watermark : -1LL);
				if (k != NULL)
					push_chunk(c, k);
				cp->position = -1;
				cp->reset = R_NONE; /* until the application seeks */
			} else {
				cp->position = -1;
				cp->reset = policy == OFFSET_RESET_EARLIEST ? R_EARLIEST : R_LATEST;
			}
			continue;
		}
		if (e != SL_OK) {
			if (sl_err_retriable(e)) {
				part_failed(c, cp, e, pr != NULL ? pr->leader : -1,
					    pr != NULL ? pr->leader_host : NULL,
					    pr != NULL ? pr->leader_port : 0);
				continue;
			}
			struct chunk *k = error_chunk(cp, e, "%s/%d: %s", cp->topic->name,
						      cp->partition,
						      pr != NULL ? pr->error_message : msg);
			if (k != NULL)
				push_chunk(c, k);
			backoff(cp);
			continue;
		}
		cp->backoff_ms = 0;
		/* Where the next fetch starts: past the last whole batch. */
		const uint8_t *d = seg[i].iov_base;
		size_t len = seg[i].iov_len, at = 0;
		int64_t next = cp->position;
		struct sl_batch_header h;
		while (at < len && sl_batch_parse_header(d + at, len - at, len - at, &h) == SL_OK &&
		       sl_batch_total_size(&h) <= len - at) {
			if (sl_batch_last_offset(&h) + 1 > next)
				next = sl_batch_last_offset(&h) + 1;
			at += sl_batch_total_size(&h);
		}
		if (at == 0 && len > 0) {
			/* Bytes that are no whole batch: say so, and do not ask
			 * again at once. */
			struct chunk *k = error_chunk(cp, SL_ECORRUPT_MESSAGE,
						      "%s/%d: the answer at offset %lld is no record "
						      "batch",
						      cp->topic->name, cp->partition,
						      (long long)rq->e[i].offset);
			if (k != NULL)
				push_chunk(c, k);
			backoff(cp);
			continue;
		}
		if (at == 0)
			continue; /* nothing new: the leader held the fetch already */
		struct chunk *k = malloc(sizeof(*k) + at);
		if (k == NULL) {
			backoff(cp);
			continue;
		}
		memset(k, 0, sizeof(*k));
		atomic_init(&k->refs, 1);
		k->cp = cp;
		k->epoch = cp->epoch;
		k->from = rq->e[i].offset;
		k->len = at;
		memcpy(k->data, d, at);
		cp->position = next;
		push_chunk(c, k);
	}
	pthread_mutex_unlock(&c->mu);
	free(rq);
	work(c);
}

static void on_offsets(struct cl_op *op, void *arg, int err, const char *msg,
		       Sluice__Envelope *resp, const struct iovec *seg, size_t nseg)
{
	struct creq *rq = arg;
	sluice_consumer_t *c = rq->c;
	(void)op;
	(void)seg;
	(void)nseg;
	c->calls--;
	const Sluice__ListOffsetsResponse *r = resp != NULL ? resp->list_offsets_response : NULL;
	err = resp_err(err, resp, r != NULL ? r->error_code : 0, r != NULL ? r->error_message : "",
		       r != NULL, &msg);
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < rq->n; i++) {
		struct cpart *cp = rq->e[i].cp;
		if (cp->busy_epoch == rq->e[i].epoch)
			cp->busy = false;
		if (rq->e[i].epoch != cp->epoch || c->stopping)
			continue;
		const Sluice__PartitionOffsets *po = NULL;
		int e = err;
		if (err == SL_OK) {
			e = SL_EUNKNOWN_TOPIC_OR_PARTITION;
			for (size_t t = 0; t < r->n_topics && po == NULL; t++) {
				if (strcmp(r->topics[t]->name, cp->topic->name) != 0)
					continue;
				if (r->topics[t]->error_code != 0)
					e = r->topics[t]->error_code;
				for (size_t j = 0; j < r->topics[t]->n_partitions; j++)
					if ((int32_t)r->topics[t]->partitions[j]->partition ==
					    cp->partition)
						po = r->topics[t]->partitions[j];
			}
			if (po != NULL)
				e = po->error_code;
		}
		if (e != SL_OK) {
			if (sl_err_retriable(e)) {
				part_failed(c, cp, e, po != NULL ? po->leader : -1, NULL, 0);
			} else {
				struct chunk *k = error_chunk(cp, e, "%s/%d: %s", cp->topic->name,
							      cp->partition,
							      po != NULL ? po->error_message : msg);
				if (k != NULL)
					push_chunk(c, k);
				backoff(cp);
			}
			continue;
		}
		int64_t pos = po->log_end;
		switch (cp->reset) {
		case R_EARLIEST:
			pos = po->log_start;
			break;
		case R_TIMESTAMP:
			pos = po->offset >= 0 ? po->offset : po->log_end;
			break;
		case R_SHIFT:
			pos = cp->reset_value;
			if (pos < po->log_start)
				pos = po->log_start;
			if (pos > po->log_end)
				pos = po->log_end;
			break;
		}
		cp->position = pos;
		cp->reset = R_NONE;
		cp->backoff_ms = 0;
	}
	pthread_mutex_unlock(&c->mu);
	free(rq);
	work(c);
}

/* What a partition needs now (mu held). */
enum { N_NOTHING, N_FETCH, N_LIST };

static int need(sluice_consumer_t *c, struct cpart *cp, uint64_t now)
{
	if ((cp->busy && cp->busy_epoch == cp->epoch) || now < cp->retry_at || cp->paused ||
	    (c->subscribed && (!cp->owned || cp->revoking)))
		return N_NOTHING;
	if (cp->position < 0)
		return cp->reset != R_NONE && cp->reset != R_COMMITTED ? N_LIST : N_NOTHING;
	return c->buffered < c->cl->conf.fetch_buffer_bytes ? N_FETCH : N_NOTHING;
}

/* Sends, per leader node, one Fetch (or ListOffsets) for every partition
 * that needs one. */
static void work(sluice_consumer_t *c)
{
	sluice_client_t *cl = c->cl;
	if (cl->shutting)
		return;
	const struct sluice_conf *cf = &cl->conf;
	uint64_t now = cl_mono_ms();
	uint64_t due = UINT64_MAX;
	pthread_mutex_lock(&c->mu);
	c->kicked = false;
	if (c->stopping && c->leave && !c->leave_sent) {
		pthread_mutex_unlock(&c->mu);
		send_leave(c); /* close waits for its answer */
		pthread_mutex_lock(&c->mu);
	}
	if (c->stopping) {
		pthread_mutex_unlock(&c->mu);
		if (c->calls == 0 && c->close_op != NULL) {
			struct cl_op *op = c->close_op;
			c->close_op = NULL;
			cl_service_stop(&c->svc, op);
		}
		return;
	}
	bool changed = false;
	for (struct ctopic *t = c->topics; t != NULL && !c->subscribed; t = t->next)
		if (cl_meta_resolve(cl, t->name, &t->nparts, &t->err, &t->last_err, t->errmsg))
			changed = true;
	if (changed)
		pthread_cond_broadcast(&c->cond);
	if (c->group != NULL)
		group_work(c, now, &due);
	/* Each pass takes the first partition that needs something, then
	 * every other with the same leader and need. */
	for (;;) {
		struct cpart *first = NULL;
		struct cl_addr addr;
		int64_t leader = -1;
		int kind = N_NOTHING;
		size_t n = 0;
		for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next) {
			int k = need(c, cp, now);
			if (k == N_NOTHING) {
				if (!cp->busy && now < cp->retry_at && cp->retry_at < due)
					due = cp->retry_at;
				continue;
			}
			struct cl_addr a;
			int64_t id;
			if (!cl_meta_leader(cl, cp->topic->name, cp->partition, &a, &id)) {
				cp->retry_at = now + BACKOFF_MIN_MS; /* a refresh is on its way */
				if (cp->retry_at < due)
					due = cp->retry_at;
				continue;
			}
			if (first == NULL) {
				first = cp;
				addr = a;
				leader = id;
				kind = k;
			}
			if (id == leader && k == kind)
				n++;
		}
		if (first == NULL)
			break;
		struct creq *rq = malloc(sizeof(*rq) + n * sizeof(rq->e[0]));
		void **items = calloc(n, sizeof(void *));
		void *structs = calloc(n, kind == N_FETCH ? sizeof(Sluice__FetchPartition)
							   : sizeof(Sluice__TopicPartitions));
		uint32_t *pnums = calloc(n, sizeof(uint32_t));
		if (rq == NULL || items == NULL || structs == NULL || pnums == NULL) {
			free(rq);
			free(items);
			free(structs);
			free(pnums);
			break;
		}
		rq->c = c;
		rq->n = 0;
		bool by_time = false;
		int64_t ts = 0;
		for (struct cpart *cp = first; cp != NULL && rq->n < n; cp = cp->next) {
			struct cl_addr a;
			int64_t id;
			if (need(c, cp, now) != kind ||
			    !cl_meta_leader(cl, cp->topic->name, cp->partition, &a, &id) ||
			    id != leader)
				continue;
			if (kind == N_LIST && cp->reset == R_TIMESTAMP) {
				/* One timestamp per request: others wait a turn. */
				if (by_time && ts != cp->reset_value)
					continue;
				by_time = true;
				ts = cp->reset_value;
			}
			size_t e = rq->n++;
			rq->e[e].cp = cp;
			rq->e[e].epoch = cp->epoch;
			rq->e[e].offset = cp->position;
			cp->busy = true;
			cp->busy_epoch = cp->epoch;
			if (kind == N_FETCH) {
				Sluice__FetchPartition *fp = (Sluice__FetchPartition *)structs + e;
				sluice__fetch_partition__init(fp);
				fp->topic = cp->topic->name;
				fp->partition = (uint32_t)cp->partition;
				fp->offset = cp->position;
				fp->max_bytes = cf->fetch_partition_bytes;
				items[e] = fp;
			} else {
				Sluice__TopicPartitions *tp = (Sluice__TopicPartitions *)structs + e;
				sluice__topic_partitions__init(tp);
				tp->name = cp->topic->name;
				pnums[e] = (uint32_t)cp->partition;
				tp->n_partitions = 1;
				tp->partitions = &pnums[e];
				items[e] = tp;
			}
		}
		Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
		Sluice__FetchRequest fr = SLUICE__FETCH_REQUEST__INIT;
		Sluice__ListOffsetsRequest lr = SLUICE__LIST_OFFSETS_REQUEST__INIT;
		unsigned hold = 0;
		if (kind == N_FETCH) {
			fr.max_wait_ms = cf->fetch_wait_ms;
			fr.min_bytes = 1;
			fr.max_bytes = cf->max_response_bytes > (128u << 10)
					       ? cf->max_response_bytes - (64u << 10)
					       : cf->max_response_bytes / 2;
			fr.n_partitions = rq->n;
			fr.partitions = (Sluice__FetchPartition **)items;
			env.api_key = SLUICE__API_KEY__FETCH;
			env.body_case = SLUICE__ENVELOPE__BODY_FETCH_REQUEST;
			env.fetch_request = &fr;
			hold = cf->fetch_wait_ms;
		} else {
			lr.n_topics = rq->n;
			lr.topics = (Sluice__TopicPartitions **)items;
			lr.by_timestamp = by_time;
			lr.timestamp = ts;
			env.api_key = SLUICE__API_KEY__LIST_OFFSETS;
			env.body_case = SLUICE__ENVELOPE__BODY_LIST_OFFSETS_REQUEST;
			env.list_offsets_request = &lr;
		}
		c->calls++;
		pthread_mutex_unlock(&c->mu);
		cl_call_data(&c->op, &addr, &env, NULL, 0, hold, false,
			     kind == N_FETCH ? on_fetch : on_offsets, rq);
		pthread_mutex_lock(&c->mu);
		free(items);
		free(structs);
		free(pnums);
	}
	pthread_mutex_unlock(&c->mu);
	if (due != UINT64_MAX)
		cl_service_arm(&c->svc, due);
}


/* ---- The group: coordinator, heartbeats, commits (loop thread) ----------- */

static struct cpart *find_part(sluice_consumer_t *c, const char *topic, int32_t partition);
static int64_t drop_fetched(sluice_consumer_t *c, struct cpart *cp);
static void send_heartbeat(sluice_consumer_t *c);
static int group_events(sluice_consumer_t *c, char *errmsg);

static void due_at(uint64_t *due, uint64_t at)
{
	if (at < *due)
		*due = at;
}

/* (mu) Tells the application of a partition's change in its next poll. */
static void push_event(sluice_consumer_t *c, struct cpart *cp, int kind)
{
	struct cevent *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return; /* the change itself still happens */
	e->cp = cp;
	e->kind = kind;
	*c->events_tail = e;
	c->events_tail = &e->next;
	pthread_cond_broadcast(&c->cond);
}

/* (mu) The consumer's topic of that name, created if missing. */
static struct ctopic *topic_of(sluice_consumer_t *c, const char *name)
{
	struct ctopic *t = c->topics;
	while (t != NULL && strcmp(t->name, name) != 0)
		t = t->next;
	if (t != NULL)
		return t;
	t = calloc(1, sizeof(*t));
	if (t == NULL || (t->name = strdup(name)) == NULL) {
		free(t);
		return NULL;
	}
	t->nparts = -1;
	t->next = c->topics;
	c->topics = t;
	return t;
}

/* (mu) A partition's record, made if missing (never freed before close:
 * chunks and calls point at it). */
static struct cpart *part_of(sluice_consumer_t *c, const char *topic, int32_t partition)
{
	struct cpart *cp = find_part(c, topic, partition);
	if (cp != NULL)
		return cp;
	struct ctopic *t = topic_of(c, topic);
	if (t == NULL || (cp = calloc(1, sizeof(*cp))) == NULL)
		return NULL;
	cp->topic = t;
	cp->partition = partition;
	cp->position = -1;
	cp->next_poll = -1;
	cp->poll_epoch = -1;
	cp->committed = -1;
	struct cpart **pp = &c->parts;
	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = cp;
	return cp;
}

/* (mu) Stops reading cp: what was fetched goes, and calls in flight for
 * it are ignored when they come back. */
static void stop_part(sluice_consumer_t *c, struct cpart *cp)
{
	cp->epoch++;
	drop_fetched(c, cp);
	cp->position = -1;
	cp->reset = R_COMMITTED;
	cp->next_poll = -1;
}

/* (mu) Every partition is lost (the member was fenced or forgotten): no
 * commit for them; the application hears of it. */
static void lose_all(sluice_consumer_t *c)
{
	for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next) {
		if (!cp->owned)
			continue;
		cp->owned = cp->revoking = false;
		stop_part(c, cp);
		push_event(c, cp, SLUICE_LOST);
	}
}

/* The coordinator is to be found again (after a backoff). */
static void coord_lost(sluice_consumer_t *c)
{
	c->have_coord = false;
	c->coord_backoff_ms = c->coord_backoff_ms == 0 ? 100 : c->coord_backoff_ms * 2;
	if (c->coord_backoff_ms > 1000)
		c->coord_backoff_ms = 1000;
	c->coord_retry_at = cl_mono_ms() + c->coord_backoff_ms;
}

static bool coord_error(int err)
{
	return err == SL_ENOT_COORDINATOR || err == SL_ECOORDINATOR_NOT_AVAILABLE ||
	       err == SL_ECOORDINATOR_LOADING || (err != SL_OK && err >= 1000) ||
	       err == SL_EREQUEST_TIMED_OUT;
}

static void on_find(struct cl_op *op, void *arg, int err, const char *msg, Sluice__Envelope *resp,
		    const struct iovec *seg, size_t nseg)
{
	sluice_consumer_t *c = arg;
	(void)op;
	(void)seg;
	(void)nseg;
	c->calls--;
	c->finding = false;
	const Sluice__FindCoordinatorResponse *r =
		resp != NULL ? resp->find_coordinator_response : NULL;
	err = resp_err(err, resp, r != NULL ? r->error_code : 0, r != NULL ? r->error_message : "",
		       r != NULL, &msg);
	if (err == SL_OK && (r->host[0] == '\0' || r->port == 0 || r->port > 65535)) {
		err = SL_ECOORDINATOR_NOT_AVAILABLE;
		msg = "the answer names no address";
	}
	if (err != SL_OK) {
		coord_lost(c);
		if (!sl_err_retriable(err) && err != SL_EREQUEST_TIMED_OUT && err < 1000) {
			pthread_mutex_lock(&c->mu);
			c->group_err = err;
			snprintf(c->group_errmsg, sizeof(c->group_errmsg), "group '%s': %s", c->group,
				 msg);
			pthread_cond_broadcast(&c->cond);
			pthread_mutex_unlock(&c->mu);
		}
	} else {
		snprintf(c->coord.host, sizeof(c->coord.host), "%s", r->host);
		c->coord.port = (int)r->port;
		c->have_coord = true;
		c->coord_backoff_ms = 0;
		c->hb_now = true;
	}
	work(c);
}

static void find_coordinator(sluice_consumer_t *c)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__FindCoordinatorRequest fr = SLUICE__FIND_COORDINATOR_REQUEST__INIT;
	fr.group = c->group;
	env.api_key = SLUICE__API_KEY__FIND_COORDINATOR;
	env.body_case = SLUICE__ENVELOPE__BODY_FIND_COORDINATOR_REQUEST;
	env.find_coordinator_request = &fr;
	c->finding = true;
	c->calls++;
	cl_call_data(&c->op, cl_any(&c->op), &env, NULL, 0, 0, false, on_find, c);
}

/* (mu) A partition list by topic, for a request: the partitions for
 * which keep(cp) holds. The arrays are malloc'd in *pool (free it). */
static size_t topic_parts(sluice_consumer_t *c, bool (*keep)(const struct cpart *cp),
			  Sluice__TopicPartitions ***out, void **pool)
{
	size_t n = 0;
	for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next)
		n += keep(cp);
	size_t bytes = (n + 1) * (sizeof(Sluice__TopicPartitions) + sizeof(void *) + 4);
	uint8_t *p = calloc(1, bytes);
	*pool = p;
	*out = NULL;
	if (p == NULL)
		return 0;
	Sluice__TopicPartitions *tp = (Sluice__TopicPartitions *)p;
	Sluice__TopicPartitions **tpp = (Sluice__TopicPartitions **)(tp + n + 1);
	uint32_t *nums = (uint32_t *)(tpp + n + 1);
	size_t k = 0, at = 0;
	/* One entry per topic: a topic's partitions go together. */
	for (struct ctopic *t = c->topics; t != NULL; t = t->next) {
		bool opened = false;
		for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next) {
			if (cp->topic != t || !keep(cp))
				continue;
			if (!opened) {
				sluice__topic_partitions__init(&tp[k]);
				tp[k].name = t->name;
				tp[k].partitions = &nums[at];
				tpp[k] = &tp[k];
				k++;
				opened = true;
			}
			nums[at++] = (uint32_t)cp->partition;
			tp[k - 1].n_partitions++;
		}
	}
	*out = tpp;
	return k;
}

static bool is_owned(const struct cpart *cp)
{
	return cp->owned;
}

static bool wants_committed(const struct cpart *cp)
{
	return cp->owned && !cp->revoking && cp->position < 0 && cp->reset == R_COMMITTED &&
	       !(cp->busy && cp->busy_epoch == cp->epoch);
}

/* (mu) The member's answer: its partitions now. */
static void take_assignment(sluice_consumer_t *c, const Sluice__ConsumerGroupHeartbeatResponse *r)
{
	for (size_t i = 0; i < r->n_assignment; i++) {
		const Sluice__TopicPartitions *tp = r->assignment[i];
		for (size_t j = 0; j < tp->n_partitions; j++) {
			struct cpart *cp = part_of(c, tp->name, (int32_t)tp->partitions[j]);
			if (cp == NULL)
				continue; /* out of memory: the next heartbeat tries again */
			if (!cp->owned || cp->revoking) {
				/* New, or given back while being revoked: it starts
				 * again from the committed offset. */
				cp->owned = true;
				cp->revoking = false;
				stop_part(c, cp);
				cp->committed = -1;
				push_event(c, cp, SLUICE_ASSIGNED);
			}
		}
	}
	/* What is owned and was not named goes. */
	for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next) {
		if (!cp->owned || cp->revoking)
			continue;
		bool named = false;
		for (size_t i = 0; i < r->n_assignment && !named; i++) {
			if (strcmp(r->assignment[i]->name, cp->topic->name) != 0)
				continue;
			for (size_t j = 0; j < r->assignment[i]->n_partitions && !named; j++)
				named = (int32_t)r->assignment[i]->partitions[j] == cp->partition;
		}
		if (!named) {
			cp->revoking = true;
			/* Stop fetching now; what was polled may still be committed. */
			int64_t np = cp->next_poll;
			cp->epoch++;
			drop_fetched(c, cp);
			cp->next_poll = np;
			push_event(c, cp, SLUICE_REVOKED);
		}
	}
}

static void on_heartbeat(struct cl_op *op, void *arg, int err, const char *msg,
			 Sluice__Envelope *resp, const struct iovec *seg, size_t nseg)
{
	sluice_consumer_t *c = arg;
	(void)op;
	(void)seg;
	(void)nseg;
	c->calls--;
	c->hb_busy = false;
	const Sluice__ConsumerGroupHeartbeatResponse *r =
		resp != NULL ? resp->consumer_group_heartbeat_response : NULL;
	err = resp_err(err, resp, r != NULL ? r->error_code : 0, r != NULL ? r->error_message : "",
		       r != NULL, &msg);
	uint64_t now = cl_mono_ms();
	if (c->stopping) {
		work(c);
		return;
	}
	pthread_mutex_lock(&c->mu);
	if (err == SL_EUNKNOWN_MEMBER_ID || err == SL_EFENCED_MEMBER_EPOCH) {
		/* Forgotten (session timeout) or fenced: join again. */
		lose_all(c);
		c->member_id[0] = '\0';
		c->member_epoch = 0;
		c->hb_at = now;
	} else if (coord_error(err)) {
		coord_lost(c);
		c->hb_at = c->coord_retry_at;
	} else if (err != SL_OK) {
		c->group_err = err;
		snprintf(c->group_errmsg, sizeof(c->group_errmsg), "group '%s': %s", c->group, msg);
		pthread_cond_broadcast(&c->cond);
		c->hb_at = now + 1000;
	} else {
		bool news = strcmp(c->member_id, r->member_id) != 0 ||
			    c->member_epoch != r->member_epoch;
		snprintf(c->member_id, sizeof(c->member_id), "%s", r->member_id);
		c->member_epoch = r->member_epoch;
		if (r->heartbeat_interval_ms > 0)
			c->hb_interval_ms = r->heartbeat_interval_ms;
		take_assignment(c, r);
		/* The coordinator held it if nothing changed: the next one goes
		 * at once (not faster than HB_MIN_GAP_MS). While partitions
		 * wait for the application to release them, it answers at
		 * once: the next one waits for the release (hb_now), or the
		 * interval. */
		bool revoking = false;
		for (struct cpart *cp = c->parts; cp != NULL && !revoking; cp = cp->next)
			revoking = cp->revoking;
		c->hb_at = news ? now : revoking ? now + c->hb_interval_ms : c->hb_sent + HB_MIN_GAP_MS;
	}
	pthread_mutex_unlock(&c->mu);
	work(c);
}

/* Sends the heartbeat (or the leave). */
static void send_heartbeat(sluice_consumer_t *c)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__ConsumerGroupHeartbeatRequest hb = SLUICE__CONSUMER_GROUP_HEARTBEAT_REQUEST__INIT;
	const struct sluice_conf *cf = &c->cl->conf;
	hb.group = c->group;
	hb.member_id = c->member_id;
	hb.member_epoch = c->member_epoch;
	hb.instance_id = (char *)cf->instance_id;
	hb.assignor = (char *)(cf->assignor == ASSIGNOR_RANGE ? "range" : "uniform");
	void *pool = NULL;
	pthread_mutex_lock(&c->mu);
	hb.topics = c->sub;
	hb.n_topics = c->nsub;
	hb.topic_regex = c->sub_regex != NULL ? c->sub_regex : (char *)"";
	hb.n_owned = topic_parts(c, is_owned, &hb.owned, &pool);
	hb.max_wait_ms = c->member_epoch > 0 ? c->hb_interval_ms : 0;
	env.api_key = SLUICE__API_KEY__CONSUMER_GROUP_HEARTBEAT;
	env.body_case = SLUICE__ENVELOPE__BODY_CONSUMER_GROUP_HEARTBEAT_REQUEST;
	env.consumer_group_heartbeat_request = &hb;
	c->hb_busy = true;
	c->hb_now = false;
	c->hb_sent = cl_mono_ms();
	c->calls++;
	struct cl_addr addr = c->coord;
	pthread_mutex_unlock(&c->mu);
	cl_call_data(&c->op, &addr, &env, NULL, 0, hb.max_wait_ms, false, on_heartbeat, c);
	free(pool);
}

static void on_leave(struct cl_op *op, void *arg, int err, const char *msg,
		     Sluice__Envelope *resp, const struct iovec *seg, size_t nseg)
{
	sluice_consumer_t *c = arg;
	(void)op;
	(void)err;
	(void)msg;
	(void)resp;
	(void)seg;
	(void)nseg;
	c->calls--;
	c->left = true; /* answered or not: close goes on */
	work(c);
}

/* Leaves the group (a static member: for now, keeping its partitions for
 * the session timeout). */
static void send_leave(sluice_consumer_t *c)
{
	const struct sluice_conf *cf = &c->cl->conf;
	c->leave_sent = true;
	if (!c->have_coord || c->member_id[0] == '\0') {
		c->left = true;
		return;
	}
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__ConsumerGroupHeartbeatRequest hb = SLUICE__CONSUMER_GROUP_HEARTBEAT_REQUEST__INIT;
	hb.group = c->group;
	hb.member_id = c->member_id;
	hb.member_epoch = cf->instance_id[0] != '\0' ? -2 : -1;
	hb.instance_id = (char *)cf->instance_id;
	env.api_key = SLUICE__API_KEY__CONSUMER_GROUP_HEARTBEAT;
	env.body_case = SLUICE__ENVELOPE__BODY_CONSUMER_GROUP_HEARTBEAT_REQUEST;
	env.consumer_group_heartbeat_request = &hb;
	c->calls++;
	cl_call_data(&c->op, &c->coord, &env, NULL, 0, 0, false, on_leave, c);
}

struct cfetch {
	sluice_consumer_t *c;
	size_t n;
	struct {
		struct cpart *cp;
		uint32_t epoch;
	} e[];
};

static void on_committed(struct cl_op *op, void *arg, int err, const char *msg,
			 Sluice__Envelope *resp, const struct iovec *seg, size_t nseg)
{
	struct cfetch *f = arg;
	sluice_consumer_t *c = f->c;
	(void)op;
	(void)seg;
	(void)nseg;
	c->calls--;
	c->fetching_committed = false;
	const Sluice__OffsetFetchResponse *r = resp != NULL ? resp->offset_fetch_response : NULL;
	err = resp_err(err, resp, r != NULL ? r->error_code : 0, r != NULL ? r->error_message : "",
		       r != NULL, &msg);
	if (coord_error(err))
		coord_lost(c);
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < f->n; i++) {
		struct cpart *cp = f->e[i].cp;
		if (cp->busy_epoch == f->e[i].epoch)
			cp->busy = false;
		if (cp->epoch != f->e[i].epoch || err != SL_OK)
			continue;
		const Sluice__CommittedOffset *co = NULL;
		for (size_t j = 0; j < r->n_offsets && co == NULL; j++)
			if ((int32_t)r->offsets[j]->partition == cp->partition &&
			    strcmp(r->offsets[j]->topic, cp->topic->name) == 0)
				co = r->offsets[j];
		if (co != NULL && co->offset >= 0) {
			cp->position = co->offset;
			cp->committed = co->offset;
			cp->reset = R_NONE;
		} else {
			int policy = c->cl->conf.offset_reset;
			cp->reset = policy == OFFSET_RESET_LATEST ? R_LATEST : R_EARLIEST;
			if (policy == OFFSET_RESET_NONE) {
				struct chunk *k = error_chunk(cp, SL_EOFFSET_OUT_OF_RANGE,
							      "%s/%d: group '%s' has no committed "
							      "offset (auto.offset.reset=none)",
							      cp->topic->name, cp->partition, c->group);
				if (k != NULL)
					push_chunk(c, k);
				cp->reset = R_NONE;
			}
		}
	}
	pthread_mutex_unlock(&c->mu);
	free(f);
	work(c);
}

/* (mu, dropped while sending) Asks the coordinator where the partitions
 * that start from the committed offset start. */
static void fetch_committed(sluice_consumer_t *c)
{
	size_t n = 0;
	for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next)
		n += wants_committed(cp);
	if (n == 0)
		return;
	struct cfetch *f = malloc(sizeof(*f) + n * sizeof(f->e[0]));
	void *pool = NULL;
	Sluice__OffsetFetchRequest fr = SLUICE__OFFSET_FETCH_REQUEST__INIT;
	fr.n_partitions = topic_parts(c, wants_committed, &fr.partitions, &pool);
	if (f == NULL || pool == NULL) {
		free(f);
		free(pool);
		return;
	}
	f->c = c;
	f->n = 0;
	for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next)
		if (wants_committed(cp)) {
			f->e[f->n].cp = cp;
			f->e[f->n++].epoch = cp->epoch;
			cp->busy = true;
			cp->busy_epoch = cp->epoch;
		}
	fr.group = c->group;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__OFFSET_FETCH;
	env.body_case = SLUICE__ENVELOPE__BODY_OFFSET_FETCH_REQUEST;
	env.offset_fetch_request = &fr;
	c->fetching_committed = true;
	c->calls++;
	struct cl_addr addr = c->coord;
	pthread_mutex_unlock(&c->mu);
	cl_call_data(&c->op, &addr, &env, NULL, 0, 0, false, on_committed, f);
	pthread_mutex_lock(&c->mu);
	free(pool);
}

/* (mu) Ends a commit: its waiter or callback hears of it. */
static void commit_end(sluice_consumer_t *c, struct ccommit *k, int err, const char *msg)
{
	for (struct ccommit **kp = &c->commits; *kp != NULL; kp = &(*kp)->next)
		if (*kp == k) {
			*kp = k->next;
			break;
		}
	k->result = err;
	snprintf(k->errmsg, sizeof(k->errmsg), "%s", msg != NULL ? msg : "");
	if (k->sync) {
		k->done = true; /* the caller frees it */
		pthread_cond_broadcast(&c->cond);
		return;
	}
	if (k->cb != NULL) {
		sluice_report_t rep = { .err = err };
		snprintf(rep.msg, sizeof(rep.msg), "%s", k->errmsg);
		pthread_mutex_unlock(&c->mu);
		k->cb(k->opaque, err, &rep);
		pthread_mutex_lock(&c->mu);
	}
	free(k);
}

struct csent {
	sluice_consumer_t *c;
	struct ccommit *k;
};

static void on_commit(struct cl_op *op, void *arg, int err, const char *msg,
		      Sluice__Envelope *resp, const struct iovec *seg, size_t nseg)
{
	struct csent *s = arg;
	sluice_consumer_t *c = s->c;
	struct ccommit *k = s->k;
	(void)op;
	(void)seg;
	(void)nseg;
	free(s);
	c->calls--;
	const Sluice__OffsetCommitResponse *r = resp != NULL ? resp->offset_commit_response : NULL;
	err = resp_err(err, resp, r != NULL ? r->error_code : 0, r != NULL ? r->error_message : "",
		       r != NULL, &msg);
	if (err == SL_OK && r->n_results != k->n) {
		err = SL_EIO;
		msg = "the answer to OffsetCommit does not match the request";
	}
	pthread_mutex_lock(&c->mu);
	k->sent = false;
	int first = SL_OK;
	const char *first_msg = msg;
	bool stale = false;
	for (size_t i = 0; err == SL_OK && i < k->n; i++) {
		const Sluice__PartitionError *pe = r->results[i];
		if (pe->error_code == SL_OK) {
			if (k->e[i].offset > k->e[i].cp->committed)
				k->e[i].cp->committed = k->e[i].offset;
			k->e[i].offset = -1; /* done: not sent again */
			continue;
		}
		if (pe->error_code == SL_ESTALE_MEMBER_EPOCH || coord_error(pe->error_code)) {
			stale = true;
			continue;
		}
		if (first == SL_OK) {
			first = pe->error_code;
			first_msg = pe->error_message;
		}
		k->e[i].offset = -1;
	}
	if (err != SL_OK && coord_error(err))
		coord_lost(c);
	bool retry = (err != SL_OK && (coord_error(err) || err == SL_ESTALE_MEMBER_EPOCH)) || stale;
	if (retry && cl_mono_ms() < k->deadline && !c->stopping) {
		/* After the next heartbeat or coordinator: work() sends it again. */
	} else {
		int e = err != SL_OK ? err : stale ? SL_ESTALE_MEMBER_EPOCH : first;
		char m[SL_ERRMSG_SIZE];
		snprintf(m, sizeof(m), "%s", e == SL_OK ? "" : first_msg);
		commit_end(c, k, e, m);
	}
	pthread_mutex_unlock(&c->mu);
	work(c);
}

/* (mu, dropped while sending) Sends a commit's offsets still open. */
static void send_commit(sluice_consumer_t *c, struct ccommit *k)
{
	size_t n = 0;
	for (size_t i = 0; i < k->n; i++)
		n += k->e[i].offset >= 0;
	if (n == 0) {
		commit_end(c, k, SL_OK, "");
		return;
	}
	Sluice__OffsetCommitPartition *p = calloc(n + 1, sizeof(*p));
	Sluice__OffsetCommitPartition **pp = calloc(n + 1, sizeof(*pp));
	struct csent *s = malloc(sizeof(*s));
	if (p == NULL || pp == NULL || s == NULL) {
		free(p);
		free(pp);
		free(s);
		commit_end(c, k, SL_ENOMEM, "out of memory");
		return;
	}
	/* Only the open ones, in order: compact them first so that the
	 * answer's results line up with e[]. */
	size_t j = 0;
	for (size_t i = 0; i < k->n; i++)
		if (k->e[i].offset >= 0)
			k->e[j++] = k->e[i];
	k->n = j;
	for (size_t i = 0; i < k->n; i++) {
		sluice__offset_commit_partition__init(&p[i]);
		p[i].topic = k->e[i].cp->topic->name;
		p[i].partition = (uint32_t)k->e[i].cp->partition;
		p[i].offset = k->e[i].offset;
		p[i].leader_epoch = k->e[i].epoch;
		pp[i] = &p[i];
	}
	Sluice__OffsetCommitRequest q = SLUICE__OFFSET_COMMIT_REQUEST__INIT;
	q.group = c->group;
	q.member_id = c->member_id;
	q.member_epoch = c->member_epoch;
	q.n_partitions = k->n;
	q.partitions = pp;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__OFFSET_COMMIT;
	env.body_case = SLUICE__ENVELOPE__BODY_OFFSET_COMMIT_REQUEST;
	env.offset_commit_request = &q;
	s->c = c;
	s->k = k;
	k->sent = true;
	c->calls++;
	struct cl_addr addr = c->coord;
	pthread_mutex_unlock(&c->mu);
	cl_call_data(&c->op, &addr, &env, NULL, 0, 0, false, on_commit, s);
	pthread_mutex_lock(&c->mu);
	free(p);
	free(pp);
}

/* (mu) A commit of what poll handed out, for the owned partitions (cp
 * NULL) or one; NULL when nothing is new (or out of memory: *nomem). */
static struct ccommit *commit_new(sluice_consumer_t *c, const struct cpart *only, int64_t offset,
				  bool *nomem)
{
	size_t n = 0;
	for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next)
		n++;
	struct ccommit *k = calloc(1, sizeof(*k) + (n + 1) * sizeof(k->e[0]));
	*nomem = k == NULL;
	if (k == NULL)
		return NULL;
	for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next) {
		int64_t at = only != NULL ? (cp == only ? offset : -1) : cp->next_poll;
		if ((c->subscribed && !cp->owned) || at < 0 || at == cp->committed)
			continue;
		k->e[k->n].cp = cp;
		k->e[k->n].epoch = only == NULL || at == cp->next_poll ? cp->poll_epoch : -1;
		k->e[k->n++].offset = at;
	}
	if (k->n == 0) {
		free(k);
		return NULL;
	}
	k->deadline = cl_mono_ms() + c->cl->conf.request_timeout_ms;
	return k;
}

/* (mu) Queues a commit for the loop. */
static void commit_queue(sluice_consumer_t *c, struct ccommit *k)
{
	struct ccommit **kp = &c->commits;
	while (*kp != NULL)
		kp = &(*kp)->next;
	*kp = k;
	kick_locked(c);
}

static void group_work(sluice_consumer_t *c, uint64_t now, uint64_t *due)
{
	const struct sluice_conf *cf = &c->cl->conf;
	/* Commits past their deadline end; auto-commit when due. */
	for (struct ccommit *k = c->commits, *next; k != NULL; k = next) {
		next = k->next;
		if (!k->sent && now >= k->deadline)
			commit_end(c, k, SL_EREQUEST_TIMED_OUT,
				   "the commit was not acknowledged within request.timeout.ms");
		else if (!k->sent)
			due_at(due, k->deadline);
	}
	if (c->subscribed && cf->auto_commit && c->member_epoch > 0) {
		if (c->autocommit_at == 0)
			c->autocommit_at = now + cf->auto_commit_ms;
		if (now >= c->autocommit_at) {
			bool nomem;
			struct ccommit *k = commit_new(c, NULL, 0, &nomem);
			if (k != NULL)
				commit_queue(c, k);
			c->autocommit_at = now + cf->auto_commit_ms;
		}
		due_at(due, c->autocommit_at);
	}
	bool needs_coord = c->subscribed || c->commits != NULL;
	if (!needs_coord)
		return;
	if (!c->have_coord) {
		if (!c->finding && now >= c->coord_retry_at) {
			pthread_mutex_unlock(&c->mu);
			find_coordinator(c);
			pthread_mutex_lock(&c->mu);
		} else if (!c->finding) {
			due_at(due, c->coord_retry_at);
		}
		return;
	}
	if (c->subscribed && !c->hb_busy && !c->stopping) {
		if (c->hb_now || now >= c->hb_at) {
			pthread_mutex_unlock(&c->mu);
			send_heartbeat(c);
			pthread_mutex_lock(&c->mu);
		} else {
			due_at(due, c->hb_at);
		}
	}
	if (!c->have_coord)
		return;
	if (c->subscribed && !c->fetching_committed)
		fetch_committed(c);
	for (;;) {
		struct ccommit *k = c->commits;
		while (k != NULL && k->sent)
			k = k->next;
		if (k == NULL || !c->have_coord)
			break;
		send_commit(c, k); /* sent, or ended and gone from the list */
	}
}

static void kick(struct cl_service *svc)
{
	work((sluice_consumer_t *)((char *)svc - offsetof(sluice_consumer_t, svc)));
}

/* ---- The application's side ---------------------------------------------- */

sluice_consumer_t *sluice_consumer_new(sluice_client_t *cl, const char *group_id,
				       sluice_assign_cb cb, void *opaque)
{
	if (cl == NULL || (group_id != NULL && (group_id[0] == '\0' || strlen(group_id) > 255)))
		return NULL;
	sluice_consumer_t *c = calloc(1, sizeof(*c));
	if (c == NULL || (group_id != NULL && (c->group = strdup(group_id)) == NULL)) {
		free(c);
		return NULL;
	}
	c->assign_cb = cb;
	c->assign_opaque = opaque;
	c->events_tail = &c->events;
	c->hb_interval_ms = 3000;
	c->cl = cl;
	c->op.cl = cl;
	c->op.deadline = c->op.next_at = UINT64_MAX;
	c->ready_tail = &c->ready;
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->pmu, NULL);
	cl_cond_init(&c->cond);
	if (cl_service_start(cl, &c->svc, kick) != SL_OK) {
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->mu);
		pthread_mutex_destroy(&c->pmu);
		free(c->group);
		free(c);
		return NULL;
	}
	return c;
}

/* (mu) Waits until deadline (cl_mono_ms, UINT64_MAX: none); false once
 * it passed. */
static bool wait_until(sluice_consumer_t *c, uint64_t deadline)
{
	return cl_cond_wait_until(&c->cond, &c->mu, deadline);
}

static struct cpart *find_part(sluice_consumer_t *c, const char *topic, int32_t partition)
{
	for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next)
		if (cp->partition == partition && strcmp(cp->topic->name, topic) == 0)
			return cp;
	return NULL;
}

sluice_err_t sluice_assign(sluice_consumer_t *c, const char *topic, int32_t partition)
{
	if (c == NULL || topic == NULL || topic[0] == '\0' || partition < SLUICE_PARTITION_ANY)
		return SL_EINVALID_ARGUMENT;
	if (cl_on_loop(c->cl))
		return SL_EBUSY;
	uint64_t until = cl_mono_ms() + c->cl->conf.request_timeout_ms;
	pthread_mutex_lock(&c->mu);
	if (c->subscribed) {
		pthread_mutex_unlock(&c->mu);
		return SL_EINVALID_ARGUMENT; /* the group assigns */
	}
	struct ctopic *t = topic_of(c, topic);
	if (t == NULL) {
		pthread_mutex_unlock(&c->mu);
		return SL_ENOMEM;
	}
	int rv = SL_OK;
	while (t->nparts < 0 && t->err == SL_OK && rv == SL_OK) {
		kick_locked(c);
		if (!wait_until(c, until))
			rv = t->last_err != SL_OK ? t->last_err : SL_EREQUEST_TIMED_OUT;
	}
	if (rv == SL_OK && t->err != SL_OK)
		rv = t->err;
	if (rv == SL_OK && partition >= t->nparts)
		rv = SL_EUNKNOWN_TOPIC_OR_PARTITION;
	int32_t from = partition < 0 ? 0 : partition;
	int32_t to = partition < 0 ? t->nparts : partition + 1;
	for (int32_t i = from; rv == SL_OK && i < to; i++) {
		if (find_part(c, topic, i) != NULL)
			continue;
		/* At the end of the list: partitions are fetched in the
		 * order they were assigned. */
		struct cpart *cp = part_of(c, topic, i);
		if (cp == NULL) {
			rv = SL_ENOMEM;
			break;
		}
		cp->reset = c->cl->conf.offset_reset == OFFSET_RESET_EARLIEST ? R_EARLIEST
										 : R_LATEST;
	}
	kick_locked(c);
	pthread_mutex_unlock(&c->mu);
	return rv;
}

/* (mu) Drops what was fetched for cp; returns where the first record
 * dropped was (-1: nothing was). */
static int64_t drop_fetched(sluice_consumer_t *c, struct cpart *cp)
{
	int64_t first = -1;
	struct chunk **pp = &c->ready;
	while (*pp != NULL) {
		struct chunk *k = *pp;
		if (k->cp != cp) {
			pp = &k->next;
			continue;
		}
		*pp = k->next;
		c->buffered -= k->len;
		if (k->err == SL_OK && k->epoch == cp->epoch && (first < 0 || k->from < first))
			first = k->from;
		chunk_unref(k);
	}
	c->ready_tail = pp;
	return first;
}

sluice_err_t sluice_seek(sluice_consumer_t *c, const char *topic, int32_t partition,
			 sluice_whence_t whence, int64_t value)
{
	if (c == NULL || topic == NULL || (whence == SLUICE_OFFSET && value < 0) ||
	    whence < SLUICE_EARLIEST || whence > SLUICE_SHIFT)
		return SL_EINVALID_ARGUMENT;
	pthread_mutex_lock(&c->mu);
	struct cpart *cp = find_part(c, topic, partition);
	if (cp == NULL) {
		pthread_mutex_unlock(&c->mu);
		return SL_EUNKNOWN_TOPIC_OR_PARTITION;
	}
	int64_t base = cp->next_poll >= 0 ? cp->next_poll : cp->position;
	cp->epoch++;
	drop_fetched(c, cp);
	cp->position = -1;
	cp->retry_at = 0;
	switch (whence) {
	case SLUICE_EARLIEST:
		cp->reset = R_EARLIEST;
		break;
	case SLUICE_LATEST:
		cp->reset = R_LATEST;
		break;
	case SLUICE_OFFSET:
		cp->reset = R_NONE;
		cp->position = value;
		break;
	case SLUICE_TIMESTAMP:
		cp->reset = R_TIMESTAMP;
		cp->reset_value = value;
		break;
	case SLUICE_SHIFT:
		/* From the next record poll would give; before anything was
		 * polled or fetched, from where the partition would start. */
		if (base < 0) {
			cp->reset = c->cl->conf.offset_reset == OFFSET_RESET_EARLIEST ? R_EARLIEST
											 : R_LATEST;
			break;
		}
		cp->reset = R_SHIFT;
		cp->reset_value = value < 0 && base + value < 0 ? 0 : base + value;
		break;
	}
	cp->next_poll = -1;
	kick_locked(c);
	pthread_mutex_unlock(&c->mu);
	return SL_OK;
}

/* (pmu) The next record of the current batch, chunk, or the next chunk;
 * NULL when nothing is there now (*err set for an error chunk). */
static sluice_msg_t *next_record(sluice_consumer_t *c, int *err, char *errmsg)
{
	for (;;) {
		if (c->batch != NULL) {
			struct cbatch *b = c->batch;
			struct sl_record rec;
			if (sl_record_iter_next(&b->it, &rec)) {
				struct chunk *k = b->chunk;
				if (rec.offset < k->from)
					continue;
				sluice_msg_t *m = malloc(sizeof(*m));
				if (m == NULL) {
					*err = SL_ENOMEM;
					return NULL;
				}
				atomic_fetch_add(&b->refs, 1);
				m->b = b;
				m->topic = k->cp->topic->name;
				m->partition = k->cp->partition;
				m->rec = rec;
				return m;
			}
			c->batch = NULL;
			batch_unref(b);
			continue;
		}
		if (c->cur != NULL && c->cur->at < c->cur->len) {
			struct chunk *k = c->cur;
			struct sl_batch_header h;
			const uint8_t *d = k->data + k->at;
			size_t left = k->len - k->at;
			if (sl_batch_parse_header(d, left, left, &h) != SL_OK ||
			    sl_batch_total_size(&h) > left) {
				k->at = k->len; /* checked when fetched: cannot happen */
				continue;
			}
			k->at += sl_batch_total_size(&h);
			if ((h.attributes & SL_ATTR_CONTROL) || sl_batch_last_offset(&h) < k->from)
				continue;
			struct cbatch *b = malloc(sizeof(*b));
			if (b == NULL) {
				*err = SL_ENOMEM;
				return NULL;
			}
			int rv = sl_batch_check(d, sl_batch_total_size(&h), sl_batch_total_size(&h),
						&h);
			if (rv == SL_OK)
				rv = sl_record_iter_init(&b->it, d, sl_batch_total_size(&h));
			if (rv != SL_OK) {
				free(b);
				*err = rv;
				snprintf(errmsg, SL_ERRMSG_SIZE,
					 "%s/%d: the batch at offset %lld does not read: %s",
					 k->cp->topic->name, k->cp->partition,
					 (long long)h.base_offset, sl_strerror(rv));
				return NULL;
			}
			atomic_init(&b->refs, 1);
			atomic_fetch_add(&k->refs, 1);
			b->chunk = k;
			c->batch = b;
			continue;
		}
		if (c->cur != NULL) {
			chunk_unref(c->cur);
			c->cur = NULL;
		}
		pthread_mutex_lock(&c->mu);
		struct chunk *k = c->ready;
		if (k != NULL) {
			c->ready = k->next;
			if (c->ready == NULL)
				c->ready_tail = &c->ready;
			bool was_full = c->buffered >= c->cl->conf.fetch_buffer_bytes;
			c->buffered -= k->len;
			if (was_full && c->buffered < c->cl->conf.fetch_buffer_bytes)
				kick_locked(c);
		}
		bool stale = k != NULL && k->epoch != k->cp->epoch;
		pthread_mutex_unlock(&c->mu);
		if (k == NULL)
			return NULL;
		if (stale) {
			chunk_unref(k);
			continue;
		}
		if (k->err != SL_OK) {
			*err = k->err;
			snprintf(errmsg, SL_ERRMSG_SIZE, "%s", k->errmsg);
			chunk_unref(k);
			return NULL;
		}
		c->cur = k;
	}
}

sluice_err_t sluice_poll(sluice_consumer_t *c, int timeout_ms, sluice_msg_t **out)
{
	if (out != NULL)
		*out = NULL;
	if (c == NULL || out == NULL)
		return SL_EINVALID_ARGUMENT;
	bool on_loop = cl_on_loop(c->cl);
	uint64_t until = timeout_ms < 0 ? UINT64_MAX : cl_mono_ms() + (uint64_t)timeout_ms;
	pthread_mutex_lock(&c->pmu);
	for (;;) {
		int err = SL_OK;
		char errmsg[SL_ERRMSG_SIZE];
		if (c->group != NULL && !on_loop && (err = group_events(c, errmsg)) != SL_OK) {
			pthread_mutex_unlock(&c->pmu);
			return err;
		}
		sluice_msg_t *m = next_record(c, &err, errmsg);
		if (m != NULL) {
			/* A seek since the record was fetched moves past it. */
			pthread_mutex_lock(&c->mu);
			bool stale = m->b->chunk->epoch != m->b->chunk->cp->epoch;
			if (!stale) {
				m->b->chunk->cp->next_poll = m->rec.offset + 1;
				m->b->chunk->cp->poll_epoch = m->b->it.h.leader_epoch;
			}
			pthread_mutex_unlock(&c->mu);
			if (stale) {
				sluice_msg_destroy(m);
				continue;
			}
			pthread_mutex_unlock(&c->pmu);
			*out = m;
			return SL_OK;
		}
		if (err != SL_OK) {
			pthread_mutex_unlock(&c->pmu);
			return err;
		}
		pthread_mutex_lock(&c->mu);
		bool idle = c->ready == NULL && c->events == NULL && c->group_err == SL_OK;
		bool waited = idle && !on_loop ? wait_until(c, until) : !idle;
		pthread_mutex_unlock(&c->mu);
		if (!waited) {
			pthread_mutex_unlock(&c->pmu);
			return SL_EREQUEST_TIMED_OUT;
		}
	}
}

const void *sluice_msg_value(const sluice_msg_t *m, size_t *len)
{
	if (len != NULL)
		*len = m->rec.value_len > 0 ? (size_t)m->rec.value_len : 0;
	return m->rec.value_len >= 0 ? (const void *)(m->rec.value_len > 0 ? m->rec.value : (const uint8_t *)"") : NULL;
}

const void *sluice_msg_key(const sluice_msg_t *m, size_t *len)
{
	if (len != NULL)
		*len = m->rec.key_len > 0 ? (size_t)m->rec.key_len : 0;
	return m->rec.key_len >= 0 ? (const void *)(m->rec.key_len > 0 ? m->rec.key : (const uint8_t *)"") : NULL;
}

const char *sluice_msg_topic(const sluice_msg_t *m)
{
	return m->topic;
}

int32_t sluice_msg_partition(const sluice_msg_t *m)
{
	return m->partition;
}

int64_t sluice_msg_offset(const sluice_msg_t *m)
{
	return m->rec.offset;
}

int64_t sluice_msg_timestamp(const sluice_msg_t *m)
{
	return m->rec.timestamp;
}

size_t sluice_msg_header_count(const sluice_msg_t *m)
{
	return m->rec.header_count > 0 ? (size_t)m->rec.header_count : 0;
}

int sluice_msg_header(const sluice_msg_t *m, size_t i, const void **key, size_t *key_len,
		      const void **value, size_t *value_len)
{
	size_t pos = 0;
	struct sl_header h;
	for (size_t k = 0; sl_record_header_next(&m->rec, &pos, &h); k++) {
		if (k != i)
			continue;
		*key = h.key;
		*key_len = h.key_len > 0 ? (size_t)h.key_len : 0;
		*value = h.value_len >= 0 ? (const void *)h.value : NULL;
		*value_len = h.value_len > 0 ? (size_t)h.value_len : 0;
		return SL_OK;
	}
	return SL_EINVALID_ARGUMENT;
}

void sluice_msg_destroy(sluice_msg_t *m)
{
	if (m == NULL)
		return;
	batch_unref(m->b);
	free(m);
}


/* ---- The group, the application's side -------------------------------------- */

static sluice_err_t subscribe(sluice_consumer_t *c, char **topics, size_t n, char *regex)
{
	pthread_mutex_lock(&c->mu);
	bool assigned = false;
	for (struct cpart *cp = c->parts; cp != NULL; cp = cp->next)
		assigned = assigned || !cp->owned;
	if (assigned && !c->subscribed) {
		pthread_mutex_unlock(&c->mu);
		for (size_t i = 0; i < n; i++)
			free(topics[i]);
		free(topics);
		free(regex);
		return SL_EINVALID_ARGUMENT; /* sluice_assign was used */
	}
	for (size_t i = 0; i < c->nsub; i++)
		free(c->sub[i]);
	free(c->sub);
	free(c->sub_regex);
	c->sub = topics;
	c->nsub = n;
	c->sub_regex = regex;
	c->subscribed = true;
	c->hb_now = true;
	kick_locked(c);
	pthread_mutex_unlock(&c->mu);
	return SL_OK;
}

sluice_err_t sluice_subscribe(sluice_consumer_t *c, const char *const topics[], size_t n)
{
	if (c == NULL || c->group == NULL || (n > 0 && topics == NULL) || n > 256)
		return SL_EINVALID_ARGUMENT;
	char **t = calloc(n + 1, sizeof(*t));
	if (t == NULL)
		return SL_ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (topics[i] == NULL || topics[i][0] == '\0' || (t[i] = strdup(topics[i])) == NULL) {
			bool bad = topics[i] == NULL || topics[i][0] == '\0';
			for (size_t j = 0; j < i; j++)
				free(t[j]);
			free(t);
			return bad ? SL_EINVALID_ARGUMENT : SL_ENOMEM;
		}
	return subscribe(c, t, n, NULL);
}

sluice_err_t sluice_subscribe_regex(sluice_consumer_t *c, const char *regex)
{
	if (c == NULL || c->group == NULL || regex == NULL || regex[0] == '\0')
		return SL_EINVALID_ARGUMENT;
	char *r = strdup(regex);
	if (r == NULL)
		return SL_ENOMEM;
	return subscribe(c, NULL, 0, r);
}

/* (mu) Waits for a synchronous commit; returns its result and frees it. */
static int commit_wait(sluice_consumer_t *c, struct ccommit *k, char *errmsg)
{
	while (!k->done)
		pthread_cond_wait(&c->cond, &c->mu);
	int rv = k->result;
	if (errmsg != NULL)
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s", k->errmsg);
	free(k);
	return rv;
}

/* (mu) Commits cp at offset (cp NULL: everything polled), synchronously.
 * SL_OK when nothing is new. */
static int commit_sync(sluice_consumer_t *c, const struct cpart *cp, int64_t offset, char *errmsg)
{
	bool nomem;
	struct ccommit *k = commit_new(c, cp, offset, &nomem);
	if (k == NULL)
		return nomem ? SL_ENOMEM : SL_OK;
	k->sync = true;
	commit_queue(c, k);
	return commit_wait(c, k, errmsg);
}

/* (pmu) Tells the application what changed, in order; a partition
 * revoked is committed (auto-commit) and released after its callback. A
 * fatal group error is returned once. */
static int group_events(sluice_consumer_t *c, char *errmsg)
{
	for (;;) {
		pthread_mutex_lock(&c->mu);
		if (c->group_err != SL_OK) {
			int err = c->group_err;
			c->group_err = SL_OK;
			snprintf(errmsg, SL_ERRMSG_SIZE, "%s", c->group_errmsg);
			pthread_mutex_unlock(&c->mu);
			return err;
		}
		struct cevent *e = c->events;
		if (e != NULL && (c->events = e->next) == NULL)
			c->events_tail = &c->events;
		pthread_mutex_unlock(&c->mu);
		if (e == NULL)
			return SL_OK;
		struct cpart *cp = e->cp;
		if (c->assign_cb != NULL)
			c->assign_cb(c->assign_opaque, cp->topic->name, cp->partition, e->kind);
		pthread_mutex_lock(&c->mu);
		if (e->kind == SLUICE_REVOKED && cp->revoking) {
			if (c->cl->conf.auto_commit && cp->next_poll >= 0)
				(void)commit_sync(c, cp, cp->next_poll, NULL); /* best effort */
			if (cp->revoking) {
				cp->owned = cp->revoking = false;
				stop_part(c, cp);
				kick_locked(c);
				c->hb_now = true;
			}
		}
		pthread_mutex_unlock(&c->mu);
		free(e);
	}
}

sluice_err_t sluice_commit(sluice_consumer_t *c, const sluice_msg_t *m, sluice_done_cb cb,
			   void *opaque)
{
	if (c == NULL || c->group == NULL)
		return SL_EINVALID_ARGUMENT;
	if (cb == NULL && cl_on_loop(c->cl))
		return SL_EBUSY;
	pthread_mutex_lock(&c->mu);
	const struct cpart *cp = m != NULL ? find_part(c, m->topic, m->partition) : NULL;
	if (m != NULL && (cp == NULL || (c->subscribed && !cp->owned))) {
		pthread_mutex_unlock(&c->mu);
		return SL_ENOT_ASSIGNED;
	}
	bool nomem;
	struct ccommit *k = commit_new(c, cp, m != NULL ? m->rec.offset + 1 : 0, &nomem);
	if (k == NULL && !nomem && cb != NULL) /* nothing new: cb still hears of it */
		k = calloc(1, sizeof(*k));
	if (k == NULL) {
		pthread_mutex_unlock(&c->mu);
		return cb == NULL && !nomem ? SL_OK : SL_ENOMEM;
	}
	k->deadline = cl_mono_ms() + c->cl->conf.request_timeout_ms;
	k->cb = cb;
	k->opaque = opaque;
	k->sync = cb == NULL;
	commit_queue(c, k);
	int rv = k->sync ? commit_wait(c, k, NULL) : SL_OK;
	pthread_mutex_unlock(&c->mu);
	return rv;
}

sluice_err_t sluice_position(sluice_consumer_t *c, const char *topic, int32_t partition,
			     int64_t *offset)
{
	if (c == NULL || topic == NULL || offset == NULL)
		return SL_EINVALID_ARGUMENT;
	pthread_mutex_lock(&c->mu);
	struct cpart *cp = find_part(c, topic, partition);
	int rv = cp == NULL || (c->subscribed && !cp->owned) ? SL_ENOT_ASSIGNED : SL_OK;
	if (rv == SL_OK)
		*offset = cp->next_poll >= 0 ? cp->next_poll : cp->position;
	pthread_mutex_unlock(&c->mu);
	return rv;
}

sluice_err_t sluice_committed(sluice_consumer_t *c, const char *topic, int32_t partition,
			      int64_t *offset)
{
	if (c == NULL || c->group == NULL || topic == NULL || offset == NULL)
		return SL_EINVALID_ARGUMENT;
	pthread_mutex_lock(&c->mu);
	struct cpart *cp = find_part(c, topic, partition);
	int rv = cp == NULL || (c->subscribed && !cp->owned) ? SL_ENOT_ASSIGNED : SL_OK;
	if (rv == SL_OK)
		*offset = cp->committed;
	pthread_mutex_unlock(&c->mu);
	return rv;
}

static sluice_err_t set_paused(sluice_consumer_t *c, const char *topic, int32_t partition,
			       bool paused)
{
	if (c == NULL || topic == NULL)
		return SL_EINVALID_ARGUMENT;
	pthread_mutex_lock(&c->mu);
	struct cpart *cp = find_part(c, topic, partition);
	int rv = cp == NULL || (c->subscribed && !cp->owned) ? SL_ENOT_ASSIGNED : SL_OK;
	if (rv == SL_OK && paused && !cp->paused) {
		/* What was fetched and not polled is dropped: resume fetches it
		 * again from the next record poll would have given. */
		cp->epoch++;
		int64_t first = drop_fetched(c, cp);
		if (cp->next_poll >= 0)
			cp->position = cp->next_poll;
		else if (first >= 0)
			cp->position = first;
	}
	if (rv == SL_OK) {
		cp->paused = paused;
		kick_locked(c);
	}
	pthread_mutex_unlock(&c->mu);
	return rv;
}

sluice_err_t sluice_pause(sluice_consumer_t *c, const char *topic, int32_t partition)
{
	return set_paused(c, topic, partition, true);
}

sluice_err_t sluice_resume(sluice_consumer_t *c, const char *topic, int32_t partition)
{
	return set_paused(c, topic, partition, false);
}

static void stop_on_loop(void *arg, struct cl_op *op)
{
	sluice_consumer_t *c = arg;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	c->leave = c->subscribed;
	for (struct ccommit *k = c->commits, *next; k != NULL; k = next) {
		next = k->next;
		if (!k->sent)
			commit_end(c, k, SL_ECANCELED, "the consumer is closing");
	}
	pthread_mutex_unlock(&c->mu);
	c->close_op = op;
	work(c); /* closes now, or when the last call in flight ends */
}

void sluice_consumer_close(sluice_consumer_t *c)
{
	if (c == NULL)
		return;
	if (c->subscribed && c->cl->conf.auto_commit && !cl_on_loop(c->cl)) {
		pthread_mutex_lock(&c->mu);
		(void)commit_sync(c, NULL, 0, NULL); /* what was polled; best effort */
		pthread_mutex_unlock(&c->mu);
	}
	cl_run(c->cl, stop_on_loop, c);
	pthread_mutex_lock(&c->pmu);
	batch_unref(c->batch);
	chunk_unref(c->cur);
	pthread_mutex_unlock(&c->pmu);
	while (c->ready != NULL) {
		struct chunk *k = c->ready;
		c->ready = k->next;
		chunk_unref(k);
	}
	while (c->parts != NULL) {
		struct cpart *cp = c->parts;
		c->parts = cp->next;
		free(cp);
	}
	while (c->topics != NULL) {
		struct ctopic *t = c->topics;
		c->topics = t->next;
		free(t->name);
		free(t);
	}
	while (c->events != NULL) {
		struct cevent *e = c->events;
		c->events = e->next;
		free(e);
	}
	while (c->commits != NULL) { /* ended by the stop: none is waited for */
		struct ccommit *k = c->commits;
		c->commits = k->next;
		free(k);
	}
	for (size_t i = 0; i < c->nsub; i++)
		free(c->sub[i]);
	free(c->sub);
	free(c->sub_regex);
	free(c->group);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->pmu);
	free(c);
}
