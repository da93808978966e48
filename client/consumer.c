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

enum { R_NONE, R_EARLIEST, R_LATEST, R_TIMESTAMP, R_SHIFT };

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
	if ((cp->busy && cp->busy_epoch == cp->epoch) || now < cp->retry_at)
		return N_NOTHING;
	if (cp->position < 0)
		return cp->reset != R_NONE ? N_LIST : N_NOTHING;
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
	for (struct ctopic *t = c->topics; t != NULL; t = t->next)
		if (cl_meta_resolve(cl, t->name, &t->nparts, &t->err, &t->last_err, t->errmsg))
			changed = true;
	if (changed)
		pthread_cond_broadcast(&c->cond);
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

static void kick(struct cl_service *svc)
{
	work((sluice_consumer_t *)((char *)svc - offsetof(sluice_consumer_t, svc)));
}

/* ---- The application's side ---------------------------------------------- */

sluice_consumer_t *sluice_consumer_new(sluice_client_t *cl, const char *group_id,
				       sluice_assign_cb cb, void *opaque)
{
	(void)cb;
	(void)opaque;
	if (cl == NULL || group_id != NULL)
		return NULL;
	sluice_consumer_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
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
	struct ctopic *t = c->topics;
	while (t != NULL && strcmp(t->name, topic) != 0)
		t = t->next;
	if (t == NULL) {
		t = calloc(1, sizeof(*t));
		if (t == NULL || (t->name = strdup(topic)) == NULL) {
			free(t);
			pthread_mutex_unlock(&c->mu);
			return SL_ENOMEM;
		}
		t->nparts = -1;
		t->next = c->topics;
		c->topics = t;
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
		struct cpart *cp = calloc(1, sizeof(*cp));
		if (cp == NULL) {
			rv = SL_ENOMEM;
			break;
		}
		cp->topic = t;
		cp->partition = i;
		cp->position = -1;
		cp->next_poll = -1;
		cp->reset = c->cl->conf.offset_reset == OFFSET_RESET_EARLIEST ? R_EARLIEST
										 : R_LATEST;
		/* At the end of the list: partitions are fetched in the
		 * order they were assigned. */
		struct cpart **pp = &c->parts;
		while (*pp != NULL)
			pp = &(*pp)->next;
		*pp = cp;
	}
	kick_locked(c);
	pthread_mutex_unlock(&c->mu);
	return rv;
}

/* (mu) Drops what was fetched for cp. */
static void drop_fetched(sluice_consumer_t *c, struct cpart *cp)
{
	struct chunk **pp = &c->ready;
	while (*pp != NULL) {
		struct chunk *k = *pp;
		if (k->cp != cp) {
			pp = &k->next;
			continue;
		}
		*pp = k->next;
		c->buffered -= k->len;
		chunk_unref(k);
	}
	c->ready_tail = pp;
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
		sluice_msg_t *m = next_record(c, &err, errmsg);
		if (m != NULL) {
			/* A seek since the record was fetched moves past it. */
			pthread_mutex_lock(&c->mu);
			bool stale = m->b->chunk->epoch != m->b->chunk->cp->epoch;
			if (!stale)
				m->b->chunk->cp->next_poll = m->rec.offset + 1;
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
		bool waited = c->ready == NULL && !on_loop ? wait_until(c, until) : c->ready != NULL;
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

static void stop_on_loop(void *arg, struct cl_op *op)
{
	sluice_consumer_t *c = arg;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_mutex_unlock(&c->mu);
	c->close_op = op;
	work(c); /* closes now, or when the last call in flight ends */
}

void sluice_consumer_close(sluice_consumer_t *c)
{
	if (c == NULL)
		return;
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
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->pmu);
	free(c);
}
