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

#include "bigendian.h"
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
	uint64_t version;        /* sl_group_version */
	uint64_t saved;          /* sl_group_saved_version */
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
	/* The members' last answers point at topic names: the new ones now
	 * (a partition of a topic gone leaves the answer). */
	for (size_t i = 0; i < g->n; i++) {
		struct member *m = g->m[i];
		size_t k = 0;
		for (size_t j = 0; j < m->nanswer; j++) {
			ssize_t f = flat(t, nt, m->answer[j].topic, m->answer[j].partition);
			if (f < 0)
				continue;
			for (size_t x = 0; x < nt; x++)
				if (t[x].first <= (size_t)f && (size_t)f < t[x].first + t[x].parts)
					m->answer[k++] = (struct sl_group_tp){ t[x].name,
									     m->answer[j].partition };
		}
		m->nanswer = k;
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
	if (rv == SL_OK) {
		g->epoch++;
		g->version++;
	}
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
	g->version++;
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
	if (n > SL_GROUP_MAX_TOPICS) {
		snprintf(errmsg, 256, "a subscription names at most %d topics, not %zu",
			 SL_GROUP_MAX_TOPICS, n);
		return SL_EINVALID_REQUEST;
	}
	char **t = calloc(n + 1, sizeof(*t));
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
		g->version++;
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
				g->version++;
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
	if (!hb->replay)
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
				if (!kept) {
					g->owner[k] = -1;
					g->version++;
				}
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

uint64_t sl_group_version(const struct sl_group *g)
{
	return g->version;
}

void sl_group_set_assignor(struct sl_group *g, int assignor)
{
	if (g->cfg.assignor != assignor) {
		g->cfg.assignor = assignor;
		g->version++;
	}
}

int sl_group_assignor(const struct sl_group *g)
{
	return g->cfg.assignor;
}

const char *sl_group_state(const struct sl_group *g)
{
	size_t live = 0;
	for (size_t i = 0; i < g->n; i++)
		if (!g->m[i]->away)
			live++;
	if (live == 0)
		return "empty";
	for (size_t i = 0; i < g->n; i++)
		if (g->m[i]->epoch != g->epoch)
			return "assigning";
	for (size_t k = 0; k < g->total; k++)
		if (g->owner[k] != g->target[k])
			return "assigning";
	return "stable";
}

size_t sl_group_live_members(const struct sl_group *g)
{
	size_t live = 0;
	for (size_t i = 0; i < g->n; i++)
		if (!g->m[i]->away)
			live++;
	return live;
}

void sl_group_member_info(const struct sl_group *g, size_t i, struct sl_group_member_info *out)
{
	const struct member *m = g->m[i];
	*out = (struct sl_group_member_info){ .id = m->id, .instance_id = m->instance,
					      .epoch = m->epoch, .away = m->away,
					      .topics = (const char *const *)m->topics,
					      .ntopics = m->ntopics, .assignment = m->answer,
					      .nassignment = m->nanswer };
}

/* ---- The group's record in __consumer_offsets ------------------------- */

#define EXPORT_VERSION 1
#define NO_INSTANCE 0xffff

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool nomem;
};

static uint8_t *wb_take(struct wbuf *w, size_t n)
{
	if (w->nomem)
		return NULL;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *p = realloc(w->p, cap);
		if (p == NULL) {
			w->nomem = true;
			return NULL;
		}
		w->p = p;
		w->cap = cap;
	}
	uint8_t *at = w->p + w->len;
	w->len += n;
	return at;
}

static void wb_u8(struct wbuf *w, uint8_t v)
{
	uint8_t *p = wb_take(w, 1);
	if (p != NULL)
		*p = v;
}

static void wb_u16(struct wbuf *w, uint16_t v)
{
	uint8_t *p = wb_take(w, 2);
	if (p != NULL)
		sl_store_be16(p, v);
}

static void wb_u32(struct wbuf *w, uint32_t v)
{
	uint8_t *p = wb_take(w, 4);
	if (p != NULL)
		sl_store_be32(p, v);
}

static void wb_str(struct wbuf *w, const char *s)
{
	size_t n = strlen(s);
	wb_u16(w, (uint16_t)n);
	uint8_t *p = wb_take(w, n);
	if (p != NULL)
		memcpy(p, s, n);
}

int sl_group_export(const struct sl_group *g, uint8_t **out, size_t *len)
{
	struct wbuf w = { 0 };
	wb_u8(&w, EXPORT_VERSION);
	wb_u32(&w, (uint32_t)g->epoch);
	wb_u8(&w, (uint8_t)g->cfg.assignor);
	wb_u32(&w, (uint32_t)g->n);
	for (size_t i = 0; i < g->n; i++) {
		const struct member *m = g->m[i];
		wb_str(&w, m->id);
		if (m->instance != NULL)
			wb_str(&w, m->instance);
		else
			wb_u16(&w, NO_INSTANCE);
		wb_u8(&w, m->away);
		wb_u32(&w, (uint32_t)m->epoch);
		wb_u16(&w, (uint16_t)m->ntopics);
		for (size_t j = 0; j < m->ntopics; j++)
			wb_str(&w, m->topics[j]);
		uint32_t owned = 0;
		for (size_t k = 0; k < g->total; k++)
			owned += g->owner[k] == (int32_t)i;
		wb_u32(&w, owned);
		for (size_t x = 0; x < g->nt; x++)
			for (uint32_t p = 0; p < g->t[x].parts; p++)
				if (g->owner[g->t[x].first + p] == (int32_t)i) {
					wb_str(&w, g->t[x].name);
					wb_u32(&w, p);
				}
	}
	if (w.nomem) {
		free(w.p);
		return SL_ENOMEM;
	}
	*out = w.p;
	*len = w.len;
	return SL_OK;
}

struct rbuf {
	const uint8_t *p;
	size_t len, at;
	bool bad;
};

static const uint8_t *rb_take(struct rbuf *r, size_t n)
{
	if (r->bad || r->len - r->at < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p + r->at;
	r->at += n;
	return p;
}

static uint32_t rb_u8(struct rbuf *r)
{
	const uint8_t *p = rb_take(r, 1);
	return p != NULL ? *p : 0;
}

static uint32_t rb_u16(struct rbuf *r)
{
	const uint8_t *p = rb_take(r, 2);
	return p != NULL ? sl_load_be16(p) : 0;
}

static uint32_t rb_u32(struct rbuf *r)
{
	const uint8_t *p = rb_take(r, 4);
	return p != NULL ? sl_load_be32(p) : 0;
}

/* A string of at most max bytes, malloc'd and NUL-terminated (NULL and
 * r->bad on a fault, *nomem when out of memory). len_or: its length, as
 * read already. */
static char *rb_str_len(struct rbuf *r, uint32_t n, size_t max, bool *nomem)
{
	const uint8_t *p = n <= max ? rb_take(r, n) : NULL;
	if (n > max)
		r->bad = true;
	if (p == NULL)
		return NULL;
	if (memchr(p, '\0', n) != NULL) {
		r->bad = true;
		return NULL;
	}
	char *s = malloc(n + 1);
	if (s == NULL) {
		*nomem = true;
		return NULL;
	}
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static char *rb_str(struct rbuf *r, size_t max, bool *nomem)
{
	return rb_str_len(r, rb_u16(r), max, nomem);
}

/* What import reads of a member before the group's partitions are known. */
struct imember {
	struct member *m;
	char **owned_topic;
	uint32_t *owned_part;
	uint32_t nowned;
};

static void imembers_free(struct imember *im, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		member_free(im[i].m);
		strings_free(im[i].owned_topic, im[i].nowned);
		free(im[i].owned_part);
	}
	free(im);
}

int sl_group_import(const char *id, const struct sl_group_config *cfg, const uint8_t *buf,
		    size_t len, int64_t now_ms, struct sl_group **out, char *why)
{
	struct rbuf r = { .p = buf, .len = len };
	bool nomem = false;
	if (rb_u8(&r) != EXPORT_VERSION) {
		snprintf(why, 256, "group record: %s", r.bad ? "empty" : "unknown version");
		return SL_EINVALID_RECORD;
	}
	int32_t epoch = (int32_t)rb_u32(&r);
	uint32_t assignor = rb_u8(&r);
	uint32_t n = rb_u32(&r);
	/* Each member takes at least 15 bytes: a count past that is a lie. */
	if (r.bad || n > (len - r.at) / 15 || epoch < 0 ||
	    (assignor != SL_ASSIGN_UNIFORM && assignor != SL_ASSIGN_RANGE)) {
		snprintf(why, 256, "group record: a bad header");
		return SL_EINVALID_RECORD;
	}
	struct imember *im = calloc(n + 1, sizeof(*im));
	if (im == NULL)
		return SL_ENOMEM;
	for (size_t got = 0; got < n && !r.bad && !nomem; got++) {
		struct member *m = calloc(1, sizeof(*m));
		if (m == NULL) {
			nomem = true;
			break;
		}
		im[got].m = m;
		char *mid = rb_str(&r, SL_GROUP_MEMBER_ID_MAX, &nomem);
		if (mid != NULL)
			snprintf(m->id, sizeof(m->id), "%s", mid);
		free(mid);
		uint32_t il = rb_u16(&r);
		if (il != NO_INSTANCE)
			m->instance = rb_str_len(&r, il, SL_GROUP_MEMBER_ID_MAX, &nomem);
		m->away = rb_u8(&r) != 0;
		m->epoch = m->prev_epoch = (int32_t)rb_u32(&r);
		m->last_seen = now_ms;
		uint32_t nt = rb_u16(&r);
		if (nt > SL_GROUP_MAX_TOPICS || r.bad)
			r.bad = true;
		else if ((m->topics = calloc(nt + 1, sizeof(*m->topics))) == NULL)
			nomem = true;
		for (uint32_t j = 0; j < nt && !r.bad && !nomem; j++) {
			m->topics[j] = rb_str(&r, SL_GROUP_TOPIC_MAX, &nomem);
			m->ntopics += m->topics[j] != NULL;
			if (j > 0 && m->topics[j] != NULL && strcmp(m->topics[j - 1], m->topics[j]) >= 0)
				r.bad = true; /* sorted and unique, as set_topics keeps them */
		}
		uint32_t no = rb_u32(&r);
		if (r.bad || no > (len - r.at) / 6) {
			r.bad = true;
			break;
		}
		im[got].owned_topic = calloc(no + 1, sizeof(char *));
		im[got].owned_part = calloc(no + 1, sizeof(uint32_t));
		if (im[got].owned_topic == NULL || im[got].owned_part == NULL) {
			nomem = true;
			break;
		}
		for (uint32_t j = 0; j < no && !r.bad && !nomem; j++) {
			im[got].owned_topic[j] = rb_str(&r, SL_GROUP_TOPIC_MAX, &nomem);
			im[got].owned_part[j] = rb_u32(&r);
			im[got].nowned += im[got].owned_topic[j] != NULL;
		}
		if (m->id[0] == '\0')
			r.bad = true;
	}
	if (!r.bad && !nomem && r.at != len)
		r.bad = true;
	/* Ids are the members' keys: each at most once (instance ids too). */
	for (size_t i = 0; i < n && !r.bad && !nomem; i++)
		for (size_t j = 0; j < i && !r.bad; j++)
			if (strcmp(im[i].m->id, im[j].m->id) == 0 ||
			    (im[i].m->instance != NULL && im[j].m->instance != NULL &&
			     strcmp(im[i].m->instance, im[j].m->instance) == 0))
				r.bad = true;
	struct sl_group *g = NULL;
	if (!r.bad && !nomem && (g = sl_group_new(id, cfg)) == NULL)
		nomem = true;
	if (g != NULL && (g->m = calloc(n + 1, sizeof(*g->m))) == NULL)
		nomem = true;
	if (r.bad || nomem) {
		imembers_free(im, n); /* calloc'd: the members not reached are empty */
		sl_group_free(g);
		if (r.bad)
			snprintf(why, 256, "group record: cut short, malformed or with trailing bytes");
		return r.bad ? SL_EINVALID_RECORD : SL_ENOMEM;
	}
	g->cap = n + 1;
	g->epoch = epoch;
	g->cfg.assignor = (int)assignor;
	for (size_t i = 0; i < n; i++) {
		g->m[i] = im[i].m;
		im[i].m = NULL;
	}
	g->n = n;
	/* The partitions first; then the owners as recorded (a partition
	 * claimed twice stays with the first); then the target, sticky to
	 * them. */
	int rv = recompute(g);
	for (size_t i = 0; rv == SL_OK && i < n; i++)
		for (uint32_t j = 0; j < im[i].nowned; j++) {
			ssize_t k = flat(g->t, g->nt, im[i].owned_topic[j], im[i].owned_part[j]);
			if (k >= 0 && g->owner[k] == -1)
				g->owner[k] = g->target[k] = (int32_t)i;
		}
	for (size_t k = 0; rv == SL_OK && k < g->total; k++)
		if (g->owner[k] == -1)
			g->target[k] = -1;
	if (rv == SL_OK)
		rv = recompute(g);
	/* What each member owns is its answer until it heartbeats. */
	for (size_t i = 0; rv == SL_OK && i < n; i++) {
		struct member *m = g->m[i];
		size_t c = 0;
		for (size_t k = 0; k < g->total; k++)
			c += g->owner[k] == (int32_t)i;
		if ((m->answer = calloc(c + 1, sizeof(*m->answer))) == NULL) {
			rv = SL_ENOMEM;
			break;
		}
		for (size_t x = 0; x < g->nt; x++)
			for (uint32_t p = 0; p < g->t[x].parts; p++)
				if (g->owner[g->t[x].first + p] == (int32_t)i)
					m->answer[m->nanswer++] = (struct sl_group_tp){ g->t[x].name, p };
	}
	imembers_free(im, n);
	if (rv != SL_OK) {
		sl_group_free(g);
		return rv;
	}
	*out = g;
	return SL_OK;
}
