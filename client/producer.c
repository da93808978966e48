/* The producer (sluice.h): records batched per partition, sent to each
 * partition's leader, every record's fate reported once.
 *
 * Threads. User threads append records to a partition's open batch under
 * the producer's mutex; a batch is sealed when it is full (batch.bytes),
 * when it is linger.ms old, or on flush. The loop thread takes sealed
 * batches, finishes them (CRC, compression), and sends them: one Produce
 * request per leader node carries the next batch of each of its
 * partitions. Delivery callbacks run on the loop thread.
 *
 * Order. A partition's batches are sent in order, at most max.in.flight
 * at a time when idempotent (the leader refuses a batch whose sequence
 * does not follow, so a retry cannot overtake), else one at a time. A
 * batch that fails in a retriable way goes back to the front of its
 * queue, with every later batch of its partition, and is sent again
 * after a backoff (100 ms doubling to 1 s) until delivery.timeout.ms
 * from when its first record was appended. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "internal.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
/* A Produce request carries at most this much (and at most one batch per
 * partition); the node's own max_frame_bytes is checked on sending. */
#define MAX_REQUEST_BYTES (32u << 20)
/* What a record costs in the buffer beyond its key and value. */
#define RECORD_OVERHEAD 32

struct prec {
	sluice_delivery_cb cb;
	void *opaque;
};

struct pbatch {
	struct pbatch *next;
	struct sl_batch_builder b;
	struct prec *recs;
	int32_t n, cap;
	uint64_t bytes;     /* counted against buffer.bytes */
	uint64_t created;   /* ms, monotonic */
	uint64_t deadline;  /* created + delivery.timeout.ms */
	const uint8_t *wire; /* finished (loop thread): the bytes sent */
	size_t wire_len;
	int32_t base_seq;
	bool refinish;      /* base_seq changed since wire was made */
};

struct ptopic;

struct ppart {
	struct ptopic *topic;
	int32_t partition;
	struct pbatch *open;                  /* (mu) */
	struct pbatch *sealed, **sealed_tail; /* (mu) not yet taken by the loop */
	/* Loop thread only. */
	struct pbatch *queue, **queue_tail;   /* finished, to send in order */
	struct pbatch *fresh, **fresh_tail;   /* taken from sealed, not finished */
	struct pbatch *flight, **flight_tail; /* sent, in order */
	unsigned nflight;
	struct cl_backoff backoff;
	int32_t next_seq;
};

struct ptopic {
	struct ptopic *next;
	char *name;
	int32_t nparts;  /* (mu) -1: not known yet */
	int err;         /* (mu) the topic cannot be produced to */
	int last_err;    /* (mu) why its metadata is not there yet */
	char errmsg[SL_ERRMSG_SIZE];
	bool wanted;     /* (mu) a user thread waits for its metadata */
	int32_t sticky;  /* (mu) null-key records go here; -1: pick one */
	struct ppart **parts; /* (mu) nparts, allocated on first use */
};

struct sluice_producer {
	sluice_client_t *cl;
	struct cl_service svc; /* its kick is work() */
	pthread_mutex_t mu;
	pthread_cond_t cond; /* buffer space freed, metadata came, records delivered */
	struct ptopic *topics;    /* (mu) */
	uint64_t buffered;        /* (mu) bytes */
	uint64_t outstanding;     /* (mu) records appended, not yet reported */
	unsigned flushing;        /* (mu) flush callers waiting */
	bool closing;             /* (mu) */
	bool kicked;              /* (mu) the loop was woken and has not run yet */
	/* Settings (from the client's configuration). */
	int acks;
	bool idempotent;
	unsigned max_in_flight;
	/* Loop thread. */
	int64_t producer_id;
	int16_t producer_epoch;
	int pid_err;          /* why the last InitProducerId failed */
	char pid_msg[SL_ERRMSG_SIZE];
	bool pid_busy;        /* InitProducerId in flight */
	bool working, work_again; /* work() runs; a callback it caused asked for more */
	uint64_t pid_retry_at;
	unsigned pid_backoff;
	struct cl_op op; /* carries the Produce calls */
	/* Batches and records acknowledged (tests: cl_test_producer_counts). */
	atomic_uint_fast64_t acked_batches, acked_records;
};

/* One Produce request in flight: which batch of which partition each of
 * its partitions is. */
struct preq {
	sluice_producer_t *p;
	int64_t leader; /* the node it went to */
	size_t n;
	struct {
		struct ppart *pp;
		struct pbatch *b;
	} e[];
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint32_t cl_murmur2(const void *key, size_t len)
{
	const uint8_t *d = key;
	const uint32_t m = 0x5bd1e995u;
	uint32_t h = 0x9747b28cu ^ (uint32_t)len;
	size_t i = 0;
	for (; i + 4 <= len; i += 4) {
		uint32_t k = (uint32_t)d[i] | (uint32_t)d[i + 1] << 8 | (uint32_t)d[i + 2] << 16 |
			     (uint32_t)d[i + 3] << 24;
		k *= m;
		k ^= k >> 24;
		k *= m;
		h *= m;
		h ^= k;
	}
	switch (len & 3) {
	case 3:
		h ^= (uint32_t)d[i + 2] << 16;
		/* fall through */
	case 2:
		h ^= (uint32_t)d[i + 1] << 8;
		/* fall through */
	case 1:
		h ^= d[i];
		h *= m;
	}
	h ^= h >> 13;
	h *= m;
	h ^= h >> 15;
	return h;
}

int32_t cl_partition_for_key(const void *key, size_t len, int32_t nparts)
{
	return (int32_t)((cl_murmur2(key, len) & 0x7fffffffu) % (uint32_t)nparts);
}

/* ---- Batches --------------------------------------------------------- */

static void batch_free(struct pbatch *b)
{
	sl_batch_builder_free(&b->b);
	free(b->recs);
	free(b);
}

static int32_t seq_add(int32_t seq, int64_t n)
{
	return (int32_t)(((int64_t)seq + n) & 0x7fffffff);
}

/* Writes the batch's producer fields and makes its wire bytes. */
static int finish(sluice_producer_t *p, struct pbatch *b)
{
	b->b.opts.producer_id = p->producer_id;
	b->b.opts.producer_epoch = p->producer_id >= 0 ? p->producer_epoch : -1;
	b->b.opts.base_sequence = p->producer_id >= 0 ? b->base_seq : -1;
	b->refinish = false;
	return sl_batch_builder_finish(&b->b, &b->wire, &b->wire_len);
}

/* Runs every record's callback with err (or its offset), then gives its
 * buffer space back. Loop thread. */
static void deliver(sluice_producer_t *p, struct ppart *pp, struct pbatch *b, int err,
		    int64_t base, const char *msg)
{
	if (err == SL_OK) {
		atomic_fetch_add(&p->acked_batches, 1);
		atomic_fetch_add(&p->acked_records, (uint64_t)b->n);
	}
	sluice_report_t r;
	memset(&r, 0, sizeof(r));
	r.err = err;
	snprintf(r.msg, sizeof(r.msg), "%s", err == SL_OK ? "" : msg);
	r.topic = pp->topic->name;
	r.partition = pp->partition;
	for (int32_t i = 0; i < b->n; i++) {
		r.offset = err == SL_OK && base >= 0 ? base + i : -1;
		if (b->recs[i].cb != NULL)
			b->recs[i].cb(b->recs[i].opaque, err, &r);
	}
	pthread_mutex_lock(&p->mu);
	p->buffered -= b->bytes;
	p->outstanding -= (uint64_t)b->n;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->mu);
	batch_free(b);
}

/* (mu) Moves pp's open batch to its sealed list. */
static void seal(sluice_producer_t *p, struct ppart *pp)
{
	struct pbatch *b = pp->open;
	pp->open = NULL;
	*pp->sealed_tail = b;
	pp->sealed_tail = &b->next;
	if (pp->topic->sticky == pp->partition)
		pp->topic->sticky = -1;
	if (!p->kicked) {
		p->kicked = true;
		cl_service_wake(&p->svc);
	}
}

/* ---- Producing (any thread) -------------------------------------------- */

static struct ptopic *topic_get(sluice_producer_t *p, const char *name)
{
	for (struct ptopic *t = p->topics; t != NULL; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t;
	struct ptopic *t = calloc(1, sizeof(*t));
	if (t == NULL || (t->name = strdup(name)) == NULL) {
		free(t);
		return NULL;
	}
	t->nparts = -1;
	t->sticky = -1;
	t->next = p->topics;
	p->topics = t;
	return t;
}

static struct ppart *part_get(struct ptopic *t, int32_t partition)
{
	if (t->parts == NULL && (t->parts = calloc((size_t)t->nparts, sizeof(*t->parts))) == NULL)
		return NULL;
	struct ppart *pp = t->parts[partition];
	if (pp != NULL)
		return pp;
	pp = calloc(1, sizeof(*pp));
	if (pp == NULL)
		return NULL;
	pp->topic = t;
	pp->partition = partition;
	pp->sealed_tail = &pp->sealed;
	pp->queue_tail = &pp->queue;
	pp->fresh_tail = &pp->fresh;
	pp->flight_tail = &pp->flight;
	t->parts[partition] = pp;
	return pp;
}

/* (mu) Waits on the producer's condition until deadline (cl_mono_ms):
 * false once it passed. */
static bool wait_until(sluice_producer_t *p, uint64_t deadline)
{
	return cl_cond_wait_until(&p->cond, &p->mu, deadline);
}

static void kick_locked(sluice_producer_t *p)
{
	if (!p->kicked) {
		p->kicked = true;
		cl_service_wake(&p->svc);
	}
}

/* (mu) The partition a record goes to, or an error. */
static int choose(sluice_producer_t *p, struct ptopic *t, int32_t partition, const void *key,
		  size_t key_len, bool on_loop, uint64_t block_until, int32_t *out)
{
	while (t->nparts < 0 && t->err == SL_OK) {
		if (on_loop)
			return SL_EBUSY; /* metadata is asked for; a callback must not wait */
		t->wanted = true;
		kick_locked(p);
		if (!wait_until(p, block_until))
			return t->last_err != SL_OK ? t->last_err : SL_EREQUEST_TIMED_OUT;
	}
	if (t->err != SL_OK)
		return t->err;
	if (partition >= t->nparts)
		return SL_EUNKNOWN_TOPIC_OR_PARTITION;
	if (partition >= 0)
		*out = partition;
	else if (key != NULL)
		*out = cl_partition_for_key(key, key_len, t->nparts);
	else {
		if (t->sticky < 0)
			t->sticky = (int32_t)((uint32_t)rand() % (uint32_t)t->nparts);
		*out = t->sticky;
	}
	return SL_OK;
}

struct sluice_rec {
	const void *key, *value;
	size_t key_len, value_len;
	int64_t timestamp; /* -1: now */
	struct sl_header *h;
	size_t nh, caph;
	size_t hbytes;
};

static int produce(sluice_producer_t *p, const char *topic, int32_t partition, const void *key,
		   size_t key_len, const void *value, size_t value_len,
		   const struct sluice_rec *rec, sluice_delivery_cb cb, void *opaque)
{
	if (p == NULL || topic == NULL || topic[0] == '\0' || partition < SLUICE_PARTITION_ANY ||
	    key_len > INT32_MAX || value_len > INT32_MAX || (key == NULL && key_len != 0) ||
	    (value == NULL && value_len != 0))
		return SL_EINVALID_ARGUMENT;
	const struct sluice_conf *cf = &p->cl->conf;
	size_t hbytes = rec != NULL ? rec->hbytes : 0;
	uint64_t cost = key_len + value_len + hbytes + RECORD_OVERHEAD;
	bool on_loop = cl_on_loop(p->cl);
	uint64_t block_until = cl_mono_ms() + cf->buffer_block_ms;
	pthread_mutex_lock(&p->mu);
	int rv = SL_OK;
	int32_t part = -1;
	struct ptopic *t = NULL;
	if (p->closing)
		rv = SL_ECLOSED;
	else if ((t = topic_get(p, topic)) == NULL)
		rv = SL_ENOMEM;
	else
		rv = choose(p, t, partition, key, key_len, on_loop, block_until, &part);
	while (rv == SL_OK && p->buffered + cost > cf->buffer_bytes && p->buffered > 0) {
		if (on_loop || cf->buffer_block_ms == 0 || !wait_until(p, block_until))
			rv = SL_EQUEUE_FULL;
		else if (p->closing)
			rv = SL_ECLOSED;
	}
	struct ppart *pp = rv == SL_OK ? part_get(t, part) : NULL;
	if (rv == SL_OK && pp == NULL)
		rv = SL_ENOMEM;
	if (rv != SL_OK) {
		pthread_mutex_unlock(&p->mu);
		return rv;
	}
	struct pbatch *b = pp->open;
	if (b != NULL && b->n > 0 &&
	    sl_batch_builder_size(&b->b) + key_len + value_len + hbytes + 24 > cf->batch_bytes) {
		seal(p, pp);
		b = NULL;
	}
	bool fresh = b == NULL;
	if (fresh) {
		b = calloc(1, sizeof(*b));
		if (b == NULL) {
			pthread_mutex_unlock(&p->mu);
			return SL_ENOMEM;
		}
		struct sl_batch_opts o;
		sl_batch_opts_init(&o);
		o.codec = cf->codec;
		o.level = cf->level;
		sl_batch_builder_init(&b->b, &o);
		b->created = cl_mono_ms();
		b->deadline = b->created + cf->delivery_timeout_ms;
		pp->open = b;
	}
	if (b->n == b->cap) {
		int32_t cap = b->cap ? b->cap * 2 : 64;
		struct prec *r = realloc(b->recs, (size_t)cap * sizeof(*r));
		if (r == NULL) {
			pthread_mutex_unlock(&p->mu);
			return SL_ENOMEM;
		}
		b->recs = r;
		b->cap = cap;
	}
	rv = sl_batch_builder_add(&b->b, rec != NULL && rec->timestamp >= 0 ? rec->timestamp : wall_ms(),
				  key, key != NULL ? (int32_t)key_len : -1, value,
				  value != NULL ? (int32_t)value_len : -1, rec != NULL ? rec->h : NULL,
				  rec != NULL ? rec->nh : 0);
	if (rv != SL_OK) {
		pthread_mutex_unlock(&p->mu);
		return rv;
	}
	b->recs[b->n].cb = cb;
	b->recs[b->n].opaque = opaque;
	b->n++;
	b->bytes += cost;
	p->buffered += cost;
	p->outstanding++;
	if (sl_batch_builder_size(&b->b) >= cf->batch_bytes || p->flushing > 0)
		seal(p, pp);
	else if (fresh)
		kick_locked(p); /* the loop sends it, or arms the linger timer */
	pthread_mutex_unlock(&p->mu);
	return SL_OK;
}

sluice_err_t sluice_produce(sluice_producer_t *p, const char *topic, int32_t partition,
			    const void *key, size_t key_len, const void *value, size_t value_len,
			    sluice_delivery_cb cb, void *msg_opaque)
{
	return produce(p, topic, partition, key, key_len, value, value_len, NULL, cb, msg_opaque);
}

sluice_rec_t *sluice_rec_new(void)
{
	sluice_rec_t *r = calloc(1, sizeof(*r));
	if (r != NULL)
		r->timestamp = -1;
	return r;
}

void sluice_rec_clear(sluice_rec_t *r)
{
	if (r == NULL)
		return;
	r->key = r->value = NULL;
	r->key_len = r->value_len = r->nh = r->hbytes = 0;
	r->timestamp = -1;
}

void sluice_rec_destroy(sluice_rec_t *r)
{
	if (r != NULL)
		free(r->h);
	free(r);
}

sluice_err_t sluice_rec_set_key(sluice_rec_t *r, const void *key, size_t len)
{
	if (r == NULL || (key == NULL && len != 0) || len > INT32_MAX)
		return SL_EINVALID_ARGUMENT;
	r->key = key;
	r->key_len = len;
	return SL_OK;
}

sluice_err_t sluice_rec_set_value(sluice_rec_t *r, const void *value, size_t len)
{
	if (r == NULL || (value == NULL && len != 0) || len > INT32_MAX)
		return SL_EINVALID_ARGUMENT;
	r->value = value;
	r->value_len = len;
	return SL_OK;
}

sluice_err_t sluice_rec_set_timestamp(sluice_rec_t *r, int64_t ms)
{
	if (r == NULL || ms < 0)
		return SL_EINVALID_ARGUMENT;
	r->timestamp = ms;
	return SL_OK;
}

sluice_err_t sluice_rec_add_header(sluice_rec_t *r, const void *key, size_t key_len,
				   const void *value, size_t value_len)
{
	if (r == NULL || (key == NULL && key_len != 0) || (value == NULL && value_len != 0) ||
	    key_len > INT32_MAX || value_len > INT32_MAX || r->nh >= 65536)
		return SL_EINVALID_ARGUMENT;
	if (r->nh == r->caph) {
		size_t cap = r->caph ? r->caph * 2 : 4;
		struct sl_header *h = realloc(r->h, cap * sizeof(*h));
		if (h == NULL)
			return SL_ENOMEM;
		r->h = h;
		r->caph = cap;
	}
	struct sl_header *h = &r->h[r->nh++];
	h->key = key != NULL ? key : (const uint8_t *)"";
	h->key_len = (int32_t)key_len;
	h->value = value;
	h->value_len = value != NULL ? (int32_t)value_len : -1;
	r->hbytes += key_len + value_len + 10;
	return SL_OK;
}

sluice_err_t sluice_produce_ex(sluice_producer_t *p, const char *topic, int32_t partition,
			       const sluice_rec_t *rec, sluice_delivery_cb cb, void *msg_opaque)
{
	if (rec == NULL)
		return SL_EINVALID_ARGUMENT;
	return produce(p, topic, partition, rec->key, rec->key_len, rec->value, rec->value_len,
		       rec, cb, msg_opaque);
}

sluice_err_t sluice_produce_ref(sluice_producer_t *p, const char *topic, int32_t partition,
				const void *key, size_t key_len, const void *value,
				size_t value_len, void (*free_fn)(void *value, void *arg),
				void *free_arg, sluice_delivery_cb cb, void *msg_opaque)
{
	int rv = produce(p, topic, partition, key, key_len, value, value_len, NULL, cb,
			 msg_opaque);
	/* The value is in its batch now (the one copy a record takes on its
	 * way to the wire): the caller's buffer is free. */
	if (rv == SL_OK && free_fn != NULL)
		free_fn((void *)value, free_arg);
	return rv;
}

/* ---- The loop side --------------------------------------------------------- */

static void work(sluice_producer_t *p);

static bool is_retriable(int err)
{
	return err != SL_ECANCELED && err != SL_EMESSAGE_TOO_LARGE && sl_err_retriable(err);
}

/* A batch of pp failed in a retriable way: it and every later batch in
 * flight go back to the front of the queue, to go again after a backoff;
 * a batch past its delivery deadline fails instead. */
static void requeue(sluice_producer_t *p, struct ppart *pp, struct pbatch *b, int64_t node,
		    int err, const char *msg)
{
	/* Unlink b from flight. */
	struct pbatch **pp_b = &pp->flight;
	while (*pp_b != NULL && *pp_b != b)
		pp_b = &(*pp_b)->next;
	if (*pp_b == NULL)
		return;
	*pp_b = b->next;
	if (pp->flight_tail == &b->next)
		pp->flight_tail = pp_b;
	pp->nflight--;
	uint64_t now = cl_mono_ms();
	if (now >= b->deadline) {
		char why[SL_ERRMSG_SIZE];
		snprintf(why, sizeof(why), "%.180s (retried until delivery.timeout.ms, %u ms)", msg,
			 p->cl->conf.delivery_timeout_ms);
		deliver(p, pp, b, err, -1, why);
		return;
	}
	/* Back into the queue, in sequence (creation) order. */
	struct pbatch **q = &pp->queue;
	while (*q != NULL && (*q)->created <= b->created && (*q)->base_seq <= b->base_seq)
		q = &(*q)->next;
	b->next = *q;
	*q = b;
	if (b->next == NULL)
		pp->queue_tail = &b->next;
	cl_backoff_failed(&pp->backoff, now, node);
}

void cl_backoff_failed(struct cl_backoff *b, uint64_t now, int64_t failed_at)
{
	b->failed_at = failed_at;
	if (now < b->retry_at)
		return; /* another batch of the same attempt */
	b->step_ms = b->step_ms == 0 ? BACKOFF_MIN_MS : b->step_ms * 2;
	if (b->step_ms > BACKOFF_MAX_MS)
		b->step_ms = BACKOFF_MAX_MS;
	b->retry_at = now + b->step_ms;
}

void cl_backoff_ok(struct cl_backoff *b)
{
	*b = (struct cl_backoff){ 0 };
}

bool cl_backoff_due(const struct cl_backoff *b, uint64_t now, int64_t leader)
{
	return now >= b->retry_at || (b->failed_at != 0 && leader >= 1 && leader != b->failed_at);
}

static void on_produce(struct cl_op *op, void *arg, int err, const char *msg,
		       Sluice__Envelope *resp, const struct iovec *seg, size_t nseg)
{
	struct preq *rq = arg;
	sluice_producer_t *p = rq->p;
	(void)op;
	(void)seg;
	(void)nseg;
	const Sluice__ProduceResponse *r = NULL;
	if (err == SL_OK && resp != NULL) {
		if (resp->error_code != 0) {
			err = resp->error_code;
			msg = resp->error_message;
		} else if ((r = resp->produce_response) == NULL || r->n_results != rq->n) {
			err = SL_EIO;
			msg = "the node's answer to Produce does not match the request";
			r = NULL;
		} else if (r->error_code != 0) {
			err = r->error_code;
			msg = r->error_message;
			r = NULL;
		}
	}
	for (size_t i = 0; i < rq->n; i++) {
		struct ppart *pp = rq->e[i].pp;
		struct pbatch *b = rq->e[i].b;
		int e = err;
		const char *m = msg;
		int64_t base = -1;
		const Sluice__ProducePartitionResult *pr = r != NULL ? r->results[i] : NULL;
		if (pr != NULL) {
			e = pr->error_code;
			m = pr->error_message;
			base = pr->base_offset;
			if (e == SL_ENOT_LEADER)
				cl_meta_set_leader(p->cl, pp->topic->name, pp->partition,
						   pr->leader, pr->leader_host, pr->leader_port);
		}
		if (e != SL_OK && !is_retriable(e) && p->producer_id >= 0) {
			/* The leader never took this batch's sequences: every
			 * later batch of the partition moves down by its count,
			 * or it would be out of order for good. */
			for (struct pbatch *x = b->next; x != NULL; x = x->next) {
				x->base_seq = seq_add(x->base_seq, -(int64_t)b->n);
				x->refinish = true;
			}
			for (struct pbatch *x = pp->queue; x != NULL; x = x->next) {
				x->base_seq = seq_add(x->base_seq, -(int64_t)b->n);
				x->refinish = true;
			}
			pp->next_seq = seq_add(pp->next_seq, -(int64_t)b->n);
		}
		if (e == SL_OK || !is_retriable(e)) {
			struct pbatch **q = &pp->flight;
			while (*q != b)
				q = &(*q)->next;
			*q = b->next;
			if (pp->flight_tail == &b->next)
				pp->flight_tail = q;
			pp->nflight--;
			if (e == SL_OK)
				cl_backoff_ok(&pp->backoff);
			deliver(p, pp, b, e, base, m);
			continue;
		}
		if (pr == NULL) /* no answer from the node: do not go back to it blindly */
			cl_meta_forget_leader(p->cl, pp->topic->name, pp->partition, rq->leader);
		else if (e != SL_ENOT_LEADER)
			cl_meta_refresh(p->cl);
		bool leaderless = pr != NULL && e == SL_ENOT_LEADER && pr->leader < 1;
		requeue(p, pp, b, leaderless ? -1 : rq->leader, e, m);
	}
	free(rq);
	work(p);
}

/* Whether the partition's next attempt may go (cl_backoff_due). */
static bool may_send(sluice_producer_t *p, struct ppart *pp, uint64_t now)
{
	struct cl_addr addr;
	int64_t id = -1;
	if (now >= pp->backoff.retry_at)
		return true;
	if (pp->backoff.failed_at != 0 &&
	    !cl_meta_leader(p->cl, pp->topic->name, pp->partition, &addr, &id))
		id = -1;
	return cl_backoff_due(&pp->backoff, now, id);
}

/* A partition with a batch to send, and its leader. */
struct ready {
	struct ppart *pp;
	struct cl_addr addr;
	int64_t leader;
	bool taken;
};

/* Sends what can go among rd[0..n): per leader node, one request with
 * the next batch of each of its partitions. */
static void send_ready(sluice_producer_t *p, struct ready *rd, size_t n)
{
	sluice_client_t *cl = p->cl;
	uint64_t now = cl_mono_ms();
	for (size_t i = 0; i < n; i++)
		if (!cl_meta_leader(cl, rd[i].pp->topic->name, rd[i].pp->partition, &rd[i].addr,
				    &rd[i].leader))
			rd[i].taken = true; /* no leader known: a refresh is asked for */
	for (size_t i = 0; i < n; i++) {
		if (rd[i].taken)
			continue;
		size_t k = 0, bytes = 0;
		for (size_t j = i; j < n; j++)
			if (!rd[j].taken && rd[j].leader == rd[i].leader)
				k++;
		struct preq *rq = malloc(sizeof(*rq) + k * sizeof(rq->e[0]));
		Sluice__ProducePartition *pps = calloc(k, sizeof(*pps));
		Sluice__ProducePartition **ppv = calloc(k, sizeof(*ppv));
		struct iovec *seg = calloc(k, sizeof(*seg));
		if (rq == NULL || pps == NULL || ppv == NULL || seg == NULL) {
			free(rq);
			free(pps);
			free(ppv);
			free(seg);
			break; /* a later kick tries again */
		}
		rq->p = p;
		rq->leader = rd[i].leader;
		rq->n = 0;
		/* How long the leader may hold the request for its
		 * acknowledgement: request.timeout.ms, within every batch's
		 * delivery deadline. */
		uint64_t timeout = cl->conf.request_timeout_ms;
		for (size_t j = i; j < n; j++) {
			if (rd[j].taken || rd[j].leader != rd[i].leader)
				continue;
			struct ppart *pp = rd[j].pp;
			struct pbatch *b = pp->queue;
			if (b == NULL || (b->refinish && finish(p, b) != SL_OK)) {
				rd[j].taken = true; /* out of memory: a later turn */
				continue;
			}
			if (rq->n > 0 && bytes + b->wire_len > MAX_REQUEST_BYTES)
				continue; /* the next request takes it */
			rd[j].taken = true;
			pp->queue = b->next;
			if (pp->queue == NULL)
				pp->queue_tail = &pp->queue;
			b->next = NULL;
			*pp->flight_tail = b;
			pp->flight_tail = &b->next;
			pp->nflight++;
			if (b->deadline > now && b->deadline - now < timeout)
				timeout = b->deadline - now;
			size_t e = rq->n++;
			rq->e[e].pp = pp;
			rq->e[e].b = b;
			sluice__produce_partition__init(&pps[e]);
			pps[e].topic = pp->topic->name;
			pps[e].partition = (uint32_t)pp->partition;
			ppv[e] = &pps[e];
			seg[e].iov_base = (void *)b->wire;
			seg[e].iov_len = b->wire_len;
			bytes += b->wire_len;
		}
		if (rq->n == 0) {
			free(rq);
			free(pps);
			free(ppv);
			free(seg);
			continue;
		}
		Sluice__ProduceRequest req = SLUICE__PRODUCE_REQUEST__INIT;
		req.acks = p->acks;
		req.timeout_ms = (uint32_t)(timeout > 0 ? timeout : 1);
		req.n_partitions = rq->n;
		req.partitions = ppv;
		Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
		env.api_key = SLUICE__API_KEY__PRODUCE;
		env.body_case = SLUICE__ENVELOPE__BODY_PRODUCE_REQUEST;
		env.produce_request = &req;
		cl_call_data(&p->op, &rd[i].addr, &env, seg, rq->n, req.timeout_ms,
			     p->acks == SLUICE__ACKS__ACKS_NONE, on_produce, rq);
		free(pps);
		free(ppv);
		free(seg);
		i--; /* partitions of this leader left for the next request */
	}
}

static void on_pid(struct cl_op *op, void *arg, int err, const char *msg, Sluice__Envelope *resp,
		   const struct iovec *seg, size_t nseg)
{
	sluice_producer_t *p = arg;
	(void)op;
	(void)seg;
	(void)nseg;
	p->pid_busy = false;
	if (err == SL_ECANCELED)
		return;
	const Sluice__InitProducerIdResponse *r =
		resp != NULL ? resp->init_producer_id_response : NULL;
	if (err == SL_OK && resp->error_code != 0) {
		err = resp->error_code;
		msg = resp->error_message;
	} else if (err == SL_OK && r == NULL) {
		err = SL_EIO;
		msg = "the node answered InitProducerId with another API";
	} else if (err == SL_OK && r->error_code != 0) {
		err = r->error_code;
		msg = r->error_message;
	}
	if (err == SL_OK && r->producer_id >= 0) {
		p->producer_id = r->producer_id;
		p->producer_epoch = (int16_t)r->producer_epoch;
		p->pid_backoff = 0;
	} else if (err == SL_EUNSUPPORTED_VERSION) {
		p->idempotent = false; /* a broker without idempotence */
	} else {
		p->pid_err = err != SL_OK ? err : SL_EIO;
		snprintf(p->pid_msg, sizeof(p->pid_msg), "%s",
			 err != SL_OK ? msg : "no producer id in the answer");
		/* Not the controller's leader (any more), or not reachable:
		 * ask the metadata who leads it now. */
		cl_meta_forget_controller(p->cl);
		p->pid_backoff = p->pid_backoff == 0 ? BACKOFF_MIN_MS : p->pid_backoff * 2;
		if (p->pid_backoff > BACKOFF_MAX_MS)
			p->pid_backoff = BACKOFF_MAX_MS;
		p->pid_retry_at = cl_mono_ms() + p->pid_backoff;
	}
	work(p);
}

/* Asks the controller's leader for a producer id. */
static void init_pid(sluice_producer_t *p)
{
	struct cl_addr addr;
	if (!cl_meta_controller(p->cl, &addr)) {
		/* The metadata's answer kicks work() again; until then this
		 * is not due (a retry time in the past would make the timer
		 * fire at once, again and again, and starve the loop). */
		p->pid_retry_at = cl_mono_ms() + BACKOFF_MIN_MS;
		return;
	}
	Sluice__InitProducerIdRequest req = SLUICE__INIT_PRODUCER_ID_REQUEST__INIT;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.api_key = SLUICE__API_KEY__INIT_PRODUCER_ID;
	env.body_case = SLUICE__ENVELOPE__BODY_INIT_PRODUCER_ID_REQUEST;
	env.init_producer_id_request = &req;
	p->pid_busy = true;
	cl_call_data(&p->op, &addr, &env, NULL, 0, 0, false, on_pid, p);
}

/* Everything the loop does for the producer: takes sealed batches (and
 * seals those past linger.ms), finishes them, fails those past their
 * deadline that never left, sends what can go, and arms the timer for
 * what is due next. */
static void work_once(sluice_producer_t *p);

static void work(sluice_producer_t *p)
{
	/* A call that fails at once calls back into here: run again after
	 * this pass instead of inside it. */
	if (p->working) {
		p->work_again = true;
		return;
	}
	p->working = true;
	do {
		p->work_again = false;
		work_once(p);
	} while (p->work_again && !p->cl->shutting);
	p->working = false;
}

static void work_once(sluice_producer_t *p)
{
	sluice_client_t *cl = p->cl;
	const struct sluice_conf *cf = &cl->conf;
	if (cl->shutting)
		return;
	uint64_t now = cl_mono_ms();
	uint64_t due = UINT64_MAX;
	size_t n = 0, cap = 0;
	struct ready *rd = NULL;
	unsigned max_flight = p->producer_id >= 0 ? p->max_in_flight : 1;
	pthread_mutex_lock(&p->mu);
	p->kicked = false;
	bool changed = false;
	for (struct ptopic *t = p->topics; t != NULL; t = t->next) {
		if (cl_meta_resolve(cl, t->name, &t->nparts, &t->err, &t->last_err, t->errmsg))
			changed = true;
		else if (t->nparts < 0 && t->err == SL_OK && due > now + BACKOFF_MIN_MS)
			due = now + BACKOFF_MIN_MS; /* look again */
		for (int32_t i = 0; t->parts != NULL && i < t->nparts; i++) {
			struct ppart *pp = t->parts[i];
			if (pp == NULL)
				continue;
			if (pp->open != NULL) {
				/* Past linger.ms a batch goes once its partition
				 * can send: until then it keeps filling, so
				 * batches grow with the load and the latency
				 * stays low without it. */
				uint64_t at = pp->open->created + cf->linger_ms;
				bool room = pp->sealed == NULL && pp->fresh == NULL &&
					    pp->queue == NULL && pp->nflight < max_flight;
				if (p->flushing > 0 || p->closing || (now >= at && room))
					seal(p, pp);
				else if (now < at && at < due)
					due = at;
			}
			if (pp->sealed != NULL) {
				*pp->fresh_tail = pp->sealed;
				pp->fresh_tail = pp->sealed_tail;
				pp->sealed = NULL;
				pp->sealed_tail = &pp->sealed;
			}
			if (pp->fresh == NULL && pp->queue == NULL)
				continue;
			if (n == cap) {
				size_t c2 = cap ? cap * 2 : 16;
				struct ready *g = realloc(rd, c2 * sizeof(*g));
				if (g == NULL)
					break; /* the rest waits for the next kick */
				rd = g;
				cap = c2;
			}
			rd[n].pp = pp;
			rd[n].taken = false;
			n++;
		}
	}
	if (changed)
		pthread_cond_broadcast(&p->cond);
	p->kicked = false;
	pthread_mutex_unlock(&p->mu);

	/* An idempotent producer's batches wait for its id: their
	 * sequences are the id's. */
	bool no_pid = p->idempotent && p->producer_id < 0;
	if (no_pid && n > 0) {
		if (!p->pid_busy && now >= p->pid_retry_at)
			init_pid(p);
		if (!p->pid_busy && p->pid_retry_at < due)
			due = p->pid_retry_at;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		struct ppart *pp = rd[i].pp;
		while (no_pid && pp->fresh != NULL && now >= pp->fresh->deadline) {
			struct pbatch *b = pp->fresh;
			pp->fresh = b->next;
			if (pp->fresh == NULL)
				pp->fresh_tail = &pp->fresh;
			char why[SL_ERRMSG_SIZE];
			snprintf(why, sizeof(why),
				 "no producer id within delivery.timeout.ms (%u ms): %.160s",
				 cf->delivery_timeout_ms, p->pid_msg);
			deliver(p, pp, b, p->pid_err != SL_OK ? p->pid_err : SL_EREQUEST_TIMED_OUT,
				-1, why);
		}
		if (no_pid && pp->fresh != NULL && pp->fresh->deadline < due)
			due = pp->fresh->deadline;
		while (!no_pid && pp->fresh != NULL) {
			struct pbatch *b = pp->fresh;
			pp->fresh = b->next;
			if (pp->fresh == NULL)
				pp->fresh_tail = &pp->fresh;
			b->next = NULL;
			b->base_seq = pp->next_seq;
			int rv = finish(p, b);
			if (rv != SL_OK) {
				deliver(p, pp, b, rv, -1, "the batch could not be built");
				continue;
			}
			pp->next_seq = seq_add(pp->next_seq, b->n);
			*pp->queue_tail = b;
			pp->queue_tail = &b->next;
		}
		/* Batches that never left by their deadline (no leader). */
		while (pp->queue != NULL && pp->nflight == 0 && now >= pp->queue->deadline) {
			struct pbatch *b = pp->queue;
			pp->queue = b->next;
			if (pp->queue == NULL)
				pp->queue_tail = &pp->queue;
			char why[SL_ERRMSG_SIZE];
			snprintf(why, sizeof(why),
				 "%s/%d: not sent within delivery.timeout.ms (%u ms): no leader "
				 "could be reached",
				 pp->topic->name, pp->partition, cf->delivery_timeout_ms);
			deliver(p, pp, b, SL_EREQUEST_TIMED_OUT, -1, why);
		}
		if (pp->queue == NULL)
			continue;
		if (pp->queue->deadline < due)
			due = pp->queue->deadline;
		if (!may_send(p, pp, now)) {
			/* Watch the metadata meanwhile (at most every 100 ms;
			 * each answer kicks this loop): a new leader is tried
			 * as soon as it is known, not a backoff later. */
			if (pp->backoff.failed_at != 0)
				cl_meta_refresh(p->cl);
			if (pp->backoff.retry_at < due)
				due = pp->backoff.retry_at;
			continue;
		}
		if (pp->nflight >= max_flight)
			continue;
		rd[k++] = rd[i];
	}
	send_ready(p, rd, k);
	free(rd);
	if (due != UINT64_MAX)
		cl_service_arm(&p->svc, due);
}

static void kick(struct cl_service *svc)
{
	work((sluice_producer_t *)((char *)svc - offsetof(sluice_producer_t, svc)));
}

/* ---- Life -------------------------------------------------------------------- */

sluice_producer_t *sluice_producer_new(sluice_client_t *cl)
{
	if (cl == NULL)
		return NULL;
	sluice_producer_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->cl = cl;
	const struct sluice_conf *cf = &cl->conf;
	p->acks = cf->acks;
	p->idempotent = cf->idempotence && cf->acks == SLUICE__ACKS__ACKS_ALL;
	p->max_in_flight = cf->max_in_flight;
	p->producer_id = -1;
	p->producer_epoch = -1;
	p->op.cl = cl;
	p->op.deadline = p->op.next_at = UINT64_MAX;
	pthread_mutex_init(&p->mu, NULL);
	cl_cond_init(&p->cond);
	if (cl_service_start(cl, &p->svc, kick) != SL_OK) {
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->mu);
		free(p);
		return NULL;
	}
	return p;
}

sluice_err_t sluice_producer_flush(sluice_producer_t *p, int timeout_ms)
{
	if (p == NULL)
		return SL_EINVALID_ARGUMENT;
	if (cl_on_loop(p->cl))
		return SL_EBUSY;
	uint64_t until = timeout_ms < 0 ? UINT64_MAX : cl_mono_ms() + (uint64_t)timeout_ms;
	pthread_mutex_lock(&p->mu);
	p->flushing++;
	p->kicked = false;
	kick_locked(p);
	int rv = SL_OK;
	while (p->outstanding > 0) {
		if (!wait_until(p, until)) {
			rv = SL_EREQUEST_TIMED_OUT;
			break;
		}
	}
	p->flushing--;
	pthread_mutex_unlock(&p->mu);
	return rv;
}

/* Ends what is left with CANCELED and closes the handles; the run op
 * finishes once both are closed. */
static void stop_on_loop(void *arg, struct cl_op *op)
{
	sluice_producer_t *p = arg;
	pthread_mutex_lock(&p->mu);
	for (struct ptopic *t = p->topics; t != NULL; t = t->next)
		for (int32_t i = 0; t->parts != NULL && i < t->nparts; i++)
			if (t->parts[i] != NULL && t->parts[i]->open != NULL)
				seal(p, t->parts[i]);
	pthread_mutex_unlock(&p->mu);
	for (struct ptopic *t = p->topics; t != NULL; t = t->next) {
		for (int32_t i = 0; t->parts != NULL && i < t->nparts; i++) {
			struct ppart *pp = t->parts[i];
			if (pp == NULL)
				continue;
			struct pbatch *lists[] = { pp->sealed, pp->fresh, pp->queue };
			pp->sealed = pp->fresh = pp->queue = NULL;
			for (size_t l = 0; l < 3; l++)
				for (struct pbatch *b = lists[l], *nb; b != NULL; b = nb) {
					nb = b->next;
					deliver(p, pp, b, SL_ECANCELED, -1, "the producer closed");
				}
		}
	}
	/* Nothing is in flight: close flushed first, and a call ended by
	 * the client's closing delivered its batches then. */
	cl_service_stop(&p->svc, op);
}

void sluice_producer_close(sluice_producer_t *p)
{
	if (p == NULL)
		return;
	sluice_producer_flush(p, -1);
	pthread_mutex_lock(&p->mu);
	p->closing = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->mu);
	cl_run(p->cl, stop_on_loop, p);
	while (p->topics != NULL) {
		struct ptopic *t = p->topics;
		p->topics = t->next;
		for (int32_t i = 0; t->parts != NULL && i < t->nparts; i++)
			free(t->parts[i]);
		free(t->parts);
		free(t->name);
		free(t);
	}
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

int32_t sluice_report_partition(const sluice_report_t *r)
{
	return r != NULL ? r->partition : -1;
}

int64_t sluice_report_offset(const sluice_report_t *r)
{
	return r != NULL ? r->offset : -1;
}

const char *sluice_report_topic(const sluice_report_t *r)
{
	return r != NULL && r->topic != NULL ? r->topic : "";
}

void cl_test_producer_counts(sluice_producer_t *p, uint64_t *batches, uint64_t *records)
{
	*batches = atomic_load(&p->acked_batches);
	*records = atomic_load(&p->acked_records);
}
