/* One consumer group's membership and assignment. See group.h.
 *
 * The group's partitions are numbered flat over its topics (the union of
 * the subscriptions, sorted by name). owner[k] is the member that may
 * own partition k now (given to it, not yet released), target[k] the
 * member the assignor wants it with. A member's answer is the partitions
 * it owns whose target it is, plus the free ones whose target it is
 * (taken now); what it owns for another member's target is withheld until
 * its heartbeat no longer reports it. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "errors.h"
#include "group.h"

struct member {
	char id[SL_GROUP_MEMBER_ID_MAX + 1];
	char *instance;          /* static member's instance id, or NULL */
	bool away;               /* a static member that left for now */
	int64_t last_seen;
	int32_t epoch, prev_epoch;
	char **topics;           /* its subscription, sorted */
	size_t ntopics;
	struct sl_group_tp *answer; /* the last answer's partitions */
	size_t nanswer;
};

struct gtopic {
	char *name;
	uint32_t parts;
	size_t first; /* flat index of partition 0 */
};

struct sl_group {
	char id[SL_GROUP_ID_MAX + 1];
	struct sl_group_config cfg;
	int32_t epoch;
	struct member **m;
	size_t n, cap;
	struct gtopic *t;        /* the union of the subscriptions, sorted */
	size_t nt, total;
	int32_t *owner, *target; /* per flat partition: member index or -1 */
};

/* The next code point of UTF-8 text at *p (advanced); a byte that does
 * not start a well-formed sequence is taken alone. */
static uint32_t next_cp(const unsigned char **p)
{
	const unsigned char *s = *p;
	int len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
			      : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
	uint32_t cp = len == 1 ? s[0] : len == 2 ? s[0] & 0x1fu : len == 3 ? s[0] & 0x0fu
							    : s[0] & 0x07u;
	for (int i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			len = 0;
			break;
		}
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if (len == 0 || (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
		*p = s + 1;
		return s[0];
	}
	*p = s + len;
	return cp;
}

uint32_t sl_group_partition(const char *id, uint32_t n)
{
	uint32_t h = 0;
	for (const unsigned char *p = (const unsigned char *)id; *p != '\0';) {
		uint32_t cp = next_cp(&p);
		if (cp >= 0x10000) { /* a surrogate pair */
			cp -= 0x10000;
			h = 31 * h + (0xd800 + (cp >> 10));
			h = 31 * h + (0xdc00 + (cp & 0x3ff));
		} else {
			h = 31 * h + cp;
		}
	}
	int32_t s = (int32_t)h;
	uint32_t a = s == INT32_MIN ? 0 : (uint32_t)(s < 0 ? -s : s);
	return n > 0 ? a % n : 0;
}

static int by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct sl_group *sl_group_new(const char *id, const struct sl_group_config *cfg)
{
	if (id == NULL || strlen(id) > SL_GROUP_ID_MAX || cfg->partitions == NULL)
		return NULL;
	struct sl_group *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	snprintf(g->id, sizeof(g->id), "%s", id);
	g->cfg = *cfg;
	if (g->cfg.session_timeout_ms == 0)
		g->cfg.session_timeout_ms = 45000;
	if (g->cfg.heartbeat_ms == 0)
		g->cfg.heartbeat_ms = 3000;
	return g;
}

static void strings_free(char **s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(s[i]);
	free(s);
}

static void member_free(struct member *m)
{
	if (m == NULL)
		return;
	free(m->instance);
	strings_free(m->topics, m->ntopics);
	free(m->answer);
	free(m);
}

static void topics_free(struct gtopic *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].name);
	free(t);
}

void sl_group_free(struct sl_group *g)
{
	if (g == NULL)
		return;
	for (size_t i = 0; i < g->n; i++)
		member_free(g->m[i]);
	free(g->m);
	topics_free(g->t, g->nt);
	free(g->owner);
	free(g->target);
	free(g);
}

int32_t sl_group_epoch(const struct sl_group *g)
{
	return g->epoch;
}

size_t sl_group_members(const struct sl_group *g)
{
	return g->n;
}

const char *sl_group_member_id(const struct sl_group *g, size_t i)
{
	return i < g->n ? g->m[i]->id : NULL;
}

size_t sl_group_member_assignment(const struct sl_group *g, size_t i,
				  const struct sl_group_tp **tps)
{
	*tps = i < g->n ? g->m[i]->answer : NULL;
	return i < g->n ? g->m[i]->nanswer : 0;
}

static ssize_t find_member(const struct sl_group *g, const char *id)
{
	for (size_t i = 0; i < g->n; i++)
		if (strcmp(g->m[i]->id, id) == 0)
			return (ssize_t)i;
	return -1;
}

/* The flat index of (topic, partition), or -1. */
static ssize_t flat(const struct gtopic *t, size_t nt, const char *topic, uint32_t partition)
{
	size_t lo = 0, hi = nt;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(t[mid].name, topic);
		if (c == 0)
			return partition < t[mid].parts ? (ssize_t)(t[mid].first + partition) : -1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Recomputes the topics, carries owners over by name, and computes the
 * target. SL_OK or SL_ENOMEM (the group is left as it was). */
static int recompute(struct sl_group *g)
{
	/* The union of the subscriptions. */
	size_t cap = 0;
	for (size_t i = 0; i < g->n; i++)
		cap += g->m[i]->ntopics;
	char **names = calloc(cap + 1, sizeof(*names));
	if (names == NULL)
		return SL_ENOMEM;
	size_t nn = 0;
	for (size_t i = 0; i < g->n; i++)
		for (size_t j = 0; j < g->m[i]->ntopics; j++)
			names[nn++] = g->m[i]->topics[j];
	qsort(names, nn, sizeof(*names), by_str);
	struct gtopic *t = calloc(nn + 1, sizeof(*t));
	uint32_t *parts = calloc(nn + 1, sizeof(*parts));
	size_t nt = 0, total = 0;
	int rv = t != NULL && parts != NULL ? SL_OK : SL_ENOMEM;
	for (size_t i = 0; rv == SL_OK && i < nn; i++) {
		if (nt > 0 && strcmp(t[nt - 1].name, names[i]) == 0)
			continue;
		if ((t[nt].name = strdup(names[i])) == NULL) {
			rv = SL_ENOMEM;
			break;
		}
		t[nt].parts = g->cfg.partitions(g->cfg.arg, names[i]);
		t[nt].first = total;
		parts[nt] = t[nt].parts;
		total += t[nt].parts;
		nt++;
	}
	free(names);
	int32_t *owner = rv == SL_OK ? malloc((total + 1) * sizeof(*owner)) : NULL;
	if (rv == SL_OK && owner == NULL)
		rv = SL_ENOMEM;
	/* Owners by name; the members' subscriptions as topic indexes; their
	 * current targets for stickiness. */
	uint32_t **subs = rv == SL_OK ? calloc(g->n + 1, sizeof(*subs)) : NULL;
	struct sl_assign_tp **had = rv == SL_OK ? calloc(g->n + 1, sizeof(*had)) : NULL;
	size_t *nhad = rv == SL_OK ? calloc(g->n + 1, sizeof(*nhad)) : NULL;
	struct sl_assign_member *am = rv == SL_OK ? calloc(g->n + 1, sizeof(*am)) : NULL;
	if (rv == SL_OK && (subs == NULL || had == NULL || nhad == NULL || am == NULL))
		rv = SL_ENOMEM;
	if (rv == SL_OK) {
		for (size_t k = 0; k < total; k++)
			owner[k] = -1;
		for (size_t ot = 0; ot < g->nt; ot++)
			for (uint32_t p = 0; p < g->t[ot].parts; p++) {
				ssize_t k = flat(t, nt, g->t[ot].name, p);
				size_t old = g->t[ot].first + p;
				if (k >= 0)
					owner[k] = g->owner[old];
			}
	}
	for (size_t i = 0; rv == SL_OK && i < g->n; i++) {
		struct member *m = g->m[i];
		subs[i] = calloc(m->ntopics + 1, sizeof(**subs));
		had[i] = calloc(g->total + 1, sizeof(**had));
		if (subs[i] == NULL || had[i] == NULL) {
			rv = SL_ENOMEM;
			break;
		}
		for (size_t j = 0; j < m->ntopics; j++)
			for (size_t x = 0; x < nt; x++)
				if (strcmp(t[x].name, m->topics[j]) == 0)
					subs[i][j] = (uint32_t)x;
		for (size_t ot = 0; ot < g->nt; ot++)
			for (uint32_t p = 0; p < g->t[ot].parts; p++) {
				size_t old = g->t[ot].first + p;
				ssize_t k = flat(t, nt, g->t[ot].name, p);
				if (k < 0 || g->target == NULL || g->target[old] != (int32_t)i)
					continue;
				for (size_t x = 0; x < nt; x++)
					if (t[x].first <= (size_t)k && (size_t)k < t[x].first + t[x].parts)
						had[i][nhad[i]++] = (struct sl_assign_tp){
							(uint32_t)x, (uint32_t)((size_t)k - t[x].first)
						};
			}
		am[i] = (struct sl_assign_member){ .id = m->id, .topics = subs[i],
						   .ntopics = m->ntopics, .owned = had[i],
						   .nowned = nhad[i] };
	}
	struct sl_assign_result res = { 0 };
	if (rv == SL_OK)
		rv = sl_assign(g->cfg.assignor, parts, nt, am, g->n, &res);
	for (size_t i = 0; subs != NULL && i < g->n; i++) {
		free(subs[i]);
		free(had[i]);
	}
	free(subs);
	free(had);
	free(nhad);
	free(am);
	free(parts);
	if (rv != SL_OK) {
		topics_free(t, nt);
		free(owner);
		return rv;
	}
	topics_free(g->t, g->nt);
	free(g->owner);
	free(g->target);
	g->t = t;
	g->nt = nt;
	g->total = total;
	g->owner = owner;
	g->target = res.owner;
	return SL_OK;
}

/* The group changed: a new epoch and a new target. */
static int bump(struct sl_group *g)
{
	int rv = recompute(g);
	if (rv == SL_OK)
		g->epoch++;
	return rv;
}

/* Whether the topics' partition counts moved since the last target. */
static bool topics_grew(const struct sl_group *g)
{
	for (size_t i = 0; i < g->nt; i++)
		if (g->cfg.partitions(g->cfg.arg, g->t[i].name) != g->t[i].parts)
			return true;
	return false;
}

/* Drops member i; what it owned is free. */
static void remove_member(struct sl_group *g, size_t i)
{
	for (size_t k = 0; k < g->total; k++) {
		if (g->owner[k] == (int32_t)i)
			g->owner[k] = -1;
		else if (g->owner[k] > (int32_t)i)
			g->owner[k]--;
		if (g->target[k] == (int32_t)i)
			g->target[k] = -1;
		else if (g->target[k] > (int32_t)i)
			g->target[k]--;
	}
	member_free(g->m[i]);
	memmove(&g->m[i], &g->m[i + 1], (g->n - i - 1) * sizeof(*g->m));
	g->n--;
}

size_t sl_group_expire(struct sl_group *g, int64_t now_ms)
{
	size_t removed = 0;
	for (size_t i = g->n; i-- > 0;)
		if (now_ms - g->m[i]->last_seen > (int64_t)g->cfg.session_timeout_ms) {
			remove_member(g, i);
			removed++;
		}
	if (removed > 0)
		(void)bump(g); /* out of memory: the next heartbeat tries again */
	return removed;
}

static int set_topics(struct member *m, const char *const *topics, size_t n, char *errmsg)
{
	if (n == 0 || n > SL_GROUP_MAX_TOPICS) {
		snprintf(errmsg, 256, "a subscription names 1 to %d topics, not %zu",
			 SL_GROUP_MAX_TOPICS, n);
		return SL_EINVALID_REQUEST;
	}
	char **t = calloc(n, sizeof(*t));
	if (t == NULL)
		return SL_ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (topics[i] == NULL || (t[i] = strdup(topics[i])) == NULL) {
			strings_free(t, n);
			return topics[i] == NULL ? SL_EINVALID_REQUEST : SL_ENOMEM;
		}
	qsort(t, n, sizeof(*t), by_str);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && strcmp(t[k - 1], t[i]) == 0) {
			free(t[i]);
			continue;
		}
		t[k++] = t[i];
	}
	strings_free(m->topics, m->ntopics);
	m->topics = t;
	m->ntopics = k;
	return SL_OK;
}

static bool same_topics(const struct member *m, const char *const *topics, size_t n)
{
	/* Sorted and unique on our side: every given name is ours, and the
	 * counts of distinct names match. */
	size_t distinct = 0;
	for (size_t i = 0; i < n; i++) {
		bool dup = false;
		for (size_t j = 0; j < i && !dup; j++)
			dup = strcmp(topics[i], topics[j]) == 0;
		if (dup)
			continue;
		distinct++;
		char *key = (char *)topics[i];
		if (bsearch(&key, m->topics, m->ntopics, sizeof(*m->topics), by_str) == NULL)
			return false;
	}
	return distinct == m->ntopics;
}

static void fail(struct sl_group_answer *out, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct sl_group_answer *out, int err, const char *fmt, ...)
{
	out->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out->errmsg, sizeof(out->errmsg), fmt, ap);
	va_end(ap);
}

/* Member i's answer: what it owns and keeps, plus free partitions meant
 * for it (taken now). Its epoch becomes the group's once it owns nothing
 * meant for another member. */
static int answer(struct sl_group *g, size_t i, struct sl_group_answer *out)
{
	struct member *m = g->m[i];
	size_t n = 0;
	bool revoking = false;
	for (size_t k = 0; k < g->total; k++) {
		if (g->owner[k] == -1 && g->target[k] == (int32_t)i)
			g->owner[k] = (int32_t)i;
		if (g->owner[k] == (int32_t)i && g->target[k] == (int32_t)i)
			n++;
		else if (g->owner[k] == (int32_t)i)
			revoking = true;
	}
	struct sl_group_tp *a = calloc(n + 1, sizeof(*a));
	if (a == NULL)
		return SL_ENOMEM;
	n = 0;
	for (size_t x = 0; x < g->nt; x++)
		for (uint32_t p = 0; p < g->t[x].parts; p++) {
			size_t k = g->t[x].first + p;
			if (g->owner[k] == (int32_t)i && g->target[k] == (int32_t)i)
				a[n++] = (struct sl_group_tp){ g->t[x].name, p };
		}
	free(m->answer);
	m->answer = a;
	m->nanswer = n;
	if (!revoking && m->epoch != g->epoch) {
		m->prev_epoch = m->epoch;
		m->epoch = g->epoch;
	}
	out->member_id = m->id;
	out->member_epoch = m->epoch;
	out->assignment = a;
	out->nassignment = n;
	return SL_OK;
}

void sl_group_heartbeat(struct sl_group *g, const struct sl_group_hb *hb, int64_t now_ms,
			struct sl_group_answer *out)
{
	memset(out, 0, sizeof(*out));
	out->heartbeat_ms = g->cfg.heartbeat_ms;
	out->member_epoch = -1;
	bool joining = hb->member_id == NULL || hb->member_id[0] == '\0';
	if (hb->instance_id != NULL && strlen(hb->instance_id) > SL_GROUP_MEMBER_ID_MAX) {
		fail(out, SL_EINVALID_REQUEST, "an instance id is at most 64 bytes");
		return;
	}
	ssize_t i = -1;
	bool changed = false;
	if (joining) {
		if (!hb->has_topics) {
			fail(out, SL_EINVALID_REQUEST, "a member joins with its subscription");
			return;
		}
		/* A static member coming back takes its place again. */
		for (size_t j = 0; hb->instance_id != NULL && j < g->n; j++) {
			struct member *m = g->m[j];
			if (m->instance == NULL || strcmp(m->instance, hb->instance_id) != 0)
				continue;
			if (!m->away) {
				fail(out, SL_EUNRELEASED_INSTANCE_ID, "instance id '%.64s' is in use",
				     hb->instance_id);
				return;
			}
			i = (ssize_t)j;
		}
		if (i < 0 && g->n == g->cap) {
			size_t cap = g->cap ? g->cap * 2 : 8;
			struct member **nm = realloc(g->m, cap * sizeof(*nm));
			if (nm == NULL) {
				fail(out, SL_ENOMEM, "out of memory");
				return;
			}
			g->m = nm;
			g->cap = cap;
		}
		struct member *m = i >= 0 ? g->m[i] : calloc(1, sizeof(*m));
		if (m == NULL) {
			fail(out, SL_ENOMEM, "out of memory");
			return;
		}
		uuid_t u;
		uuid_generate_random(u);
		uuid_unparse_lower(u, m->id);
		m->away = false;
		if (i < 0) {
			if (hb->instance_id != NULL && (m->instance = strdup(hb->instance_id)) == NULL) {
				free(m);
				fail(out, SL_ENOMEM, "out of memory");
				return;
			}
			g->m[g->n] = m;
			i = (ssize_t)g->n++;
			changed = true;
		}
		m->epoch = m->prev_epoch = 0;
	} else {
		i = find_member(g, hb->member_id);
		if (i < 0) {
			fail(out, SL_EUNKNOWN_MEMBER_ID, "group has no member '%.64s'", hb->member_id);
			return;
		}
		struct member *m = g->m[i];
		if (hb->member_epoch == -1 || hb->member_epoch == -2) {
			if (hb->member_epoch == -2 && m->instance != NULL) {
				m->away = true; /* its partitions wait for it */
				m->last_seen = now_ms;
			} else {
				remove_member(g, (size_t)i);
				(void)bump(g);
			}
			out->member_id = hb->member_id;
			out->member_epoch = hb->member_epoch;
			return;
		}
		if (hb->member_epoch != m->epoch && hb->member_epoch != m->prev_epoch) {
			fail(out, SL_EFENCED_MEMBER_EPOCH, "member epoch %d is not one it was given (%d)",
			     hb->member_epoch, m->epoch);
			return;
		}
	}
	struct member *m = g->m[i];
	m->last_seen = now_ms;
	if (hb->has_topics && (joining || !same_topics(m, hb->topics, hb->ntopics))) {
		int rv = set_topics(m, hb->topics, hb->ntopics, out->errmsg);
		if (rv != SL_OK) {
			if (joining && changed) /* not a member after all */
				remove_member(g, (size_t)i);
			out->err = rv;
			return;
		}
		changed = true;
	}
	/* What it released: owned by it here, absent from its report. */
	if (hb->has_owned && !joining) {
		for (size_t x = 0; x < g->nt; x++)
			for (uint32_t p = 0; p < g->t[x].parts; p++) {
				size_t k = g->t[x].first + p;
				if (g->owner[k] != (int32_t)i)
					continue;
				bool kept = false;
				for (size_t j = 0; j < hb->nowned && !kept; j++)
					kept = hb->owned[j].partition == p &&
					       strcmp(hb->owned[j].topic, g->t[x].name) == 0;
				if (!kept)
					g->owner[k] = -1;
			}
	}
	if ((changed || topics_grew(g) || g->target == NULL) && bump(g) != SL_OK) {
		fail(out, SL_ENOMEM, "out of memory");
		return;
	}
	if (answer(g, (size_t)i, out) != SL_OK)
		fail(out, SL_ENOMEM, "out of memory");
}

int sl_group_check_commit(const struct sl_group *g, const char *member_id, int32_t member_epoch,
			  const char *topic, uint32_t partition)
{
	ssize_t i = find_member(g, member_id);
	if (i < 0)
		return SL_EUNKNOWN_MEMBER_ID;
	if (member_epoch != g->m[i]->epoch)
		return SL_ESTALE_MEMBER_EPOCH;
	ssize_t k = flat(g->t, g->nt, topic, partition);
	if (k < 0 || g->owner[k] != (int32_t)i)
		return SL_ENOT_ASSIGNED;
	return SL_OK;
}
