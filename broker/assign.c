/* The group coordinator's assignors. See assign.h. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "errors.h"

size_t sl_assign_flat(const uint32_t *partitions, uint32_t topic, uint32_t partition)
{
	size_t k = 0;
	for (uint32_t t = 0; t < topic; t++)
		k += partitions[t];
	return k + partition;
}

void sl_assign_result_free(struct sl_assign_result *r)
{
	free(r->owner);
	r->owner = NULL;
	r->n = 0;
}

/* Member indexes sorted by id, for ties and the range assignor. */
static int by_id(const void *a, const void *b, void *arg)
{
	const struct sl_assign_member *m = arg;
	return strcmp(m[*(const size_t *)a].id, m[*(const size_t *)b].id);
}

struct work {
	const uint32_t *parts;
	size_t ntopics, nmembers, total;
	size_t *first;   /* flat index of each topic's partition 0 */
	uint32_t *topic_of; /* per flat partition */
	uint8_t *sub;    /* nmembers x ntopics: subscribed */
	size_t *order;   /* member indexes by id */
	size_t *load;
	int32_t *owner;
};

static bool subscribed(const struct work *w, size_t m, uint32_t t)
{
	return w->sub[m * w->ntopics + t] != 0;
}

static void range(struct work *w)
{
	for (uint32_t t = 0; t < w->ntopics; t++) {
		size_t k = 0;
		for (size_t i = 0; i < w->nmembers; i++)
			k += subscribed(w, w->order[i], t);
		if (k == 0)
			continue;
		size_t base = w->parts[t] / k, extra = w->parts[t] % k, p = 0;
		for (size_t i = 0, j = 0; i < w->nmembers; i++) {
			size_t m = w->order[i];
			if (!subscribed(w, m, t))
				continue;
			size_t take = base + (j++ < extra ? 1 : 0);
			for (size_t q = 0; q < take; q++)
				w->owner[w->first[t] + p++] = (int32_t)m;
		}
	}
}

/* The eligible member for partition k with the lowest load (ties: id). */
static int32_t least_loaded(const struct work *w, size_t k)
{
	int32_t best = -1;
	for (size_t i = 0; i < w->nmembers; i++) {
		size_t m = w->order[i];
		if (subscribed(w, m, w->topic_of[k]) && (best < 0 || w->load[m] < w->load[best]))
			best = (int32_t)m;
	}
	return best;
}

/* One move that narrows the spread: a partition of the most loaded
 * member that can go to one holding at least two fewer. */
static bool rebalance_once(struct work *w)
{
	for (size_t hi = 0; hi < w->nmembers; hi++) {
		size_t a = w->order[hi];
		/* Only the most loaded members give. */
		bool most = true;
		for (size_t m = 0; m < w->nmembers && most; m++)
			most = w->load[m] <= w->load[a];
		if (!most)
			continue;
		/* Its last partitions first: the first ones stay put. */
		for (size_t k = w->total; k-- > 0;) {
			if (w->owner[k] != (int32_t)a)
				continue;
			int32_t b = least_loaded(w, k);
			if (b >= 0 && w->load[b] + 2 <= w->load[a]) {
				w->owner[k] = b;
				w->load[a]--;
				w->load[b]++;
				return true;
			}
		}
	}
	return false;
}

static void uniform(struct work *w, const struct sl_assign_member *members)
{
	/* Keep what members own, up to the balanced share of the members
	 * that subscribe to anything. */
	size_t eligible = 0, active = 0;
	for (size_t k = 0; k < w->total; k++)
		for (size_t m = 0; m < w->nmembers; m++)
			if (subscribed(w, m, w->topic_of[k])) {
				eligible++;
				break;
			}
	for (size_t m = 0; m < w->nmembers; m++)
		for (uint32_t t = 0; t < w->ntopics; t++)
			if (subscribed(w, m, t)) {
				active++;
				break;
			}
	size_t cap = active > 0 ? (eligible + active - 1) / active : 0;
	for (size_t i = 0; i < w->nmembers; i++) {
		size_t m = w->order[i];
		for (size_t j = 0; j < members[m].nowned && w->load[m] < cap; j++) {
			const struct sl_assign_tp *tp = &members[m].owned[j];
			if (tp->topic >= w->ntopics || tp->partition >= w->parts[tp->topic] ||
			    !subscribed(w, m, tp->topic))
				continue; /* stale */
			size_t k = w->first[tp->topic] + tp->partition;
			if (w->owner[k] >= 0)
				continue; /* claimed twice: the first claim (by id) holds */
			w->owner[k] = (int32_t)m;
			w->load[m]++;
		}
	}
	for (size_t k = 0; k < w->total; k++) {
		if (w->owner[k] >= 0)
			continue;
		int32_t m = least_loaded(w, k);
		if (m >= 0) {
			w->owner[k] = m;
			w->load[m]++;
		}
	}
	while (rebalance_once(w))
		;
}

int sl_assign(int assignor, const uint32_t *partitions, size_t ntopics,
	      const struct sl_assign_member *members, size_t nmembers,
	      struct sl_assign_result *out)
{
	out->owner = NULL;
	out->n = 0;
	if (assignor != SL_ASSIGN_UNIFORM && assignor != SL_ASSIGN_RANGE)
		return SL_EINVALID_ARGUMENT;
	for (size_t m = 0; m < nmembers; m++)
		for (size_t i = 0; i < members[m].ntopics; i++)
			if (members[m].topics[i] >= ntopics)
				return SL_EINVALID_ARGUMENT;
	struct work w = { .parts = partitions, .ntopics = ntopics, .nmembers = nmembers };
	for (size_t t = 0; t < ntopics; t++)
		w.total += partitions[t];
	w.first = calloc(ntopics + 1, sizeof(*w.first));
	w.topic_of = calloc(w.total + 1, sizeof(*w.topic_of));
	w.sub = calloc(nmembers * ntopics + 1, 1);
	w.order = calloc(nmembers + 1, sizeof(*w.order));
	w.load = calloc(nmembers + 1, sizeof(*w.load));
	w.owner = malloc((w.total + 1) * sizeof(*w.owner));
	int rv = SL_ENOMEM;
	if (w.first == NULL || w.topic_of == NULL || w.sub == NULL || w.order == NULL ||
	    w.load == NULL || w.owner == NULL)
		goto out;
	for (size_t t = 0, k = 0; t < ntopics; t++) {
		w.first[t] = k;
		for (uint32_t p = 0; p < partitions[t]; p++)
			w.topic_of[k++] = (uint32_t)t;
	}
	for (size_t m = 0; m < nmembers; m++) {
		for (size_t i = 0; i < members[m].ntopics; i++)
			w.sub[m * ntopics + members[m].topics[i]] = 1;
		w.order[m] = m;
	}
	qsort_r(w.order, nmembers, sizeof(*w.order), by_id, (void *)members);
	for (size_t k = 0; k < w.total; k++)
		w.owner[k] = -1;
	if (assignor == SL_ASSIGN_RANGE)
		range(&w);
	else
		uniform(&w, members);
	out->owner = w.owner;
	out->n = w.total;
	w.owner = NULL;
	rv = SL_OK;
out:
	free(w.first);
	free(w.topic_of);
	free(w.sub);
	free(w.order);
	free(w.load);
	free(w.owner);
	return rv;
}
