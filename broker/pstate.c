/* A partition's idempotent producers. See pstate.h. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pstate.h"

struct pentry {
	int32_t first_seq, last_seq;
	int64_t base, last; /* offsets */
	bool tentative;
};

struct producer {
	int64_t id;
	int16_t epoch;
	unsigned n;                               /* entries, oldest first */
	struct pentry e[SL_PSTATE_BATCHES];
	uint64_t used;                            /* LRU tick */
};

struct sl_pstate {
	struct producer **p; /* by id, ascending */
	unsigned n, cap, max;
	uint64_t tick;
	uint64_t term;
};

struct sl_pstate *sl_pstate_new(unsigned max_producers)
{
	struct sl_pstate *s = calloc(1, sizeof(*s));
	if (s != NULL)
		s->max = max_producers > 0 ? max_producers : 1;
	return s;
}

void sl_pstate_free(struct sl_pstate *s)
{
	if (s == NULL)
		return;
	for (unsigned i = 0; i < s->n; i++)
		free(s->p[i]);
	free(s->p);
	free(s);
}

unsigned sl_pstate_count(const struct sl_pstate *s)
{
	return s->n;
}

/* Index of id, or where it would go (*found false). */
static unsigned search(const struct sl_pstate *s, int64_t id, bool *found)
{
	unsigned lo = 0, hi = s->n;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (s->p[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < s->n && s->p[lo]->id == id;
	return lo;
}

static struct producer *find(struct sl_pstate *s, int64_t id)
{
	bool found;
	unsigned i = search(s, id, &found);
	if (!found)
		return NULL;
	s->p[i]->used = ++s->tick;
	return s->p[i];
}

static void evict_lru(struct sl_pstate *s)
{
	unsigned old = 0;
	for (unsigned i = 1; i < s->n; i++)
		if (s->p[i]->used < s->p[old]->used)
			old = i;
	free(s->p[old]);
	memmove(&s->p[old], &s->p[old + 1], (s->n - old - 1) * sizeof(*s->p));
	s->n--;
}

static struct producer *find_or_add(struct sl_pstate *s, int64_t id, int16_t epoch)
{
	struct producer *p = find(s, id);
	if (p != NULL)
		return p;
	if (s->n >= s->max)
		evict_lru(s);
	if (s->n == s->cap) {
		unsigned cap = s->cap ? s->cap * 2 : 8;
		struct producer **np = realloc(s->p, cap * sizeof(*np));
		if (np == NULL)
			return NULL;
		s->p = np;
		s->cap = cap;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->id = id;
	p->epoch = epoch;
	p->used = ++s->tick;
	bool found;
	unsigned i = search(s, id, &found);
	memmove(&s->p[i + 1], &s->p[i], (s->n - i) * sizeof(*s->p));
	s->p[i] = p;
	s->n++;
	return p;
}

static int32_t last_seq_of(const struct sl_batch_header *h)
{
	return (int32_t)(((uint32_t)h->base_sequence + (uint32_t)h->last_offset_delta) &
			 0x7fffffffu);
}

static void push(struct producer *p, const struct sl_batch_header *h, bool tentative)
{
	if (h->producer_epoch != p->epoch) { /* a new epoch starts over */
		p->epoch = h->producer_epoch;
		p->n = 0;
	}
	if (p->n == SL_PSTATE_BATCHES) {
		memmove(&p->e[0], &p->e[1], (SL_PSTATE_BATCHES - 1) * sizeof(p->e[0]));
		p->n--;
	}
	p->e[p->n++] = (struct pentry){ .first_seq = h->base_sequence,
					.last_seq = last_seq_of(h),
					.base = h->base_offset,
					.last = sl_batch_last_offset(h),
					.tentative = tentative };
}

void sl_pstate_applied(struct sl_pstate *s, const struct sl_batch_header *h)
{
	if (h->producer_id < 0)
		return;
	struct producer *p = find_or_add(s, h->producer_id, h->producer_epoch);
	if (p == NULL || h->producer_epoch < p->epoch)
		return; /* memory, or a newer epoch was proposed meanwhile */
	for (unsigned i = 0; i < p->n; i++)
		if (p->e[i].base == h->base_offset) {
			p->e[i].tentative = false;
			return;
		}
	push(p, h, false);
}

void sl_pstate_term(struct sl_pstate *s, uint64_t term)
{
	if (term == s->term)
		return;
	s->term = term;
	for (unsigned i = 0; i < s->n; i++) {
		struct producer *p = s->p[i];
		unsigned k = 0;
		for (unsigned j = 0; j < p->n; j++)
			if (!p->e[j].tentative)
				p->e[k++] = p->e[j];
		p->n = k;
	}
}

int sl_pstate_check(struct sl_pstate *s, const struct sl_batch_header *h, int64_t *dup_base,
		    int64_t *dup_last, bool *dup_tentative, char *msg, size_t msglen)
{
	*dup_base = *dup_last = -1;
	*dup_tentative = false;
	if (h->producer_id < 0)
		return SL_OK;
	struct producer *p = find(s, h->producer_id);
	if (p == NULL)
		return SL_OK;
	if (h->producer_epoch < p->epoch) {
		snprintf(msg, msglen, "producer %lld: epoch %d is older than this partition's %d",
			 (long long)h->producer_id, h->producer_epoch, p->epoch);
		return SL_EINVALID_PRODUCER_EPOCH;
	}
	if (h->producer_epoch > p->epoch || p->n == 0) {
		if (h->base_sequence == 0 || p->n == 0)
			return SL_OK;
		snprintf(msg, msglen, "producer %lld: a new epoch %d starts at sequence 0, not %d",
			 (long long)h->producer_id, h->producer_epoch, h->base_sequence);
		return SL_EOUT_OF_ORDER_SEQUENCE;
	}
	int32_t last = last_seq_of(h);
	for (unsigned i = 0; i < p->n; i++)
		if (p->e[i].first_seq == h->base_sequence && p->e[i].last_seq == last) {
			*dup_base = p->e[i].base;
			*dup_last = p->e[i].last;
			*dup_tentative = p->e[i].tentative;
			return SL_OK;
		}
	int32_t next = (int32_t)(((uint32_t)p->e[p->n - 1].last_seq + 1) & 0x7fffffffu);
	if (h->base_sequence == next)
		return SL_OK;
	snprintf(msg, msglen, "producer %lld: sequence %d, expected %d", (long long)h->producer_id,
		 h->base_sequence, next);
	return SL_EOUT_OF_ORDER_SEQUENCE;
}

int sl_pstate_proposed(struct sl_pstate *s, const struct sl_batch_header *h)
{
	if (h->producer_id < 0)
		return SL_OK;
	struct producer *p = find_or_add(s, h->producer_id, h->producer_epoch);
	if (p == NULL)
		return SL_ENOMEM;
	push(p, h, true);
	return SL_OK;
}
