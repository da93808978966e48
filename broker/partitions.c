/* The partition manager. See partitions.h. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blog.h"
#include "data.h"
#include "errors.h"
#include "meta.h"
#include "partitions.h"
#include "rio.h"
#include "storage.h"

/* Groups started per loop turn. */
#define STARTS_PER_TURN 64
/* Groups being created on the thread pool at once. */
#define MAX_CREATING 16

/* A hosted group's way to running: created on the thread pool (its
 * directory and first entry, or found there), then started on the loop. */
enum { H_NEW, H_CREATING, H_CREATED, H_RUNNING };
/* A report not yet applied is sent again after this long. */
#define RESEND_MS 1000
/* Reports per command. */
#define REPORTS_PER_CMD 512

/* A group this node hosts. */
struct hosted {
	uint32_t group;
	int state;                    /* H_* */
	unsigned nrep;
	uint64_t rep[SL_META_MAX_RF]; /* ascending */
	bool preferred;               /* this node is the preferred leader */
	bool retaining;               /* a retention run is queued or running */
	bool limits_set;              /* one ran since the group started */
	/* The last report sent, and when. */
	uint64_t sent_term, sent_leader;
	unsigned sent_isr;            /* bit i: rep[i] in sync */
	int64_t sent_ms;
};

struct retain_req;

struct sl_parts {
	uv_loop_t *loop;
	uv_timer_t reconcile, report, retain;
	struct retain_req *retains; /* in flight; detached at close */
	int64_t default_retention_bytes, default_retention_ms;
	uint64_t node_id;
	char *raft_dir;
	struct sl_rreg *reg;
	struct sl_controller *ctl;
	struct hosted *h; /* by group, ascending */
	size_t n, cap;
	bool swept;       /* leftover directories removed */
	uint64_t burst_at;  /* a burst of starts began (loop ms; 0: none) */
	unsigned burst_n;
	unsigned creating; /* creations in flight */
	bool stopping;
	int closing;      /* timers left to close */
	void (*close_cb)(void *arg);
	void *close_arg;
};

static struct hosted *find(struct sl_parts *p, uint32_t group)
{
	size_t lo = 0, hi = p->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p->h[mid].group < group)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < p->n && p->h[lo].group == group ? &p->h[lo] : NULL;
}

static int cmp_hosted(const void *a, const void *b)
{
	uint32_t x = ((const struct hosted *)a)->group, y = ((const struct hosted *)b)->group;
	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void deleted(void *arg, uint32_t group)
{
	(void)arg;
	SL_BLOG(SL_BLOG_INFO, "parts", "group=%u deleted", group);
}

/* Directories of groups deleted while this node was away. */
static void sweep(struct sl_parts *p, const struct sl_meta *m)
{
	DIR *d = opendir(p->raft_dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char *end;
		if (e->d_name[0] != 'g' || e->d_name[1] < '0' || e->d_name[1] > '9')
			continue;
		unsigned long g = strtoul(e->d_name + 1, &end, 10);
		if (*end != '\0' || g == m->ctl_group || g == sl_controller_group(p->ctl) ||
		    g >= m->next_group || find(p, (uint32_t)g) != NULL)
			continue;
		int rv = sl_rreg_remove(p->reg, (uint32_t)g);
		SL_BLOG(rv == SL_OK ? SL_BLOG_INFO : SL_BLOG_WARN, "parts",
			"group=%lu removed: its partition was deleted while this node was away%s%s", g,
			rv == SL_OK ? "" : ": ", rv == SL_OK ? "" : sl_strerror(rv));
	}
	closedir(d);
}

/* The groups the metadata gives this node, carrying over what is known of
 * those already hosted; groups no longer given are deleted. */
static int rebuild(struct sl_parts *p, const struct sl_meta *m)
{
	size_t n = 0, cap = 16;
	struct hosted *h = malloc(cap * sizeof(*h));
	if (h == NULL)
		return SL_ENOMEM;
	for (size_t t = 0; t < m->ntopics; t++) {
		const struct sl_meta_topic *tp = m->topics[t];
		for (uint32_t i = 0; i < tp->npartitions; i++) {
			const struct sl_meta_partition *pp = &tp->parts[i];
			bool mine = false;
			for (unsigned r = 0; r < pp->nreplicas; r++)
				mine = mine || pp->replicas[r] == p->node_id;
			/* A replica placed on this node's old disk is not this
			 * disk's: it would vote and acknowledge with nothing. */
			if (!mine || !sl_controller_registered(p->ctl, pp->since))
				continue;
			if (n == cap) {
				struct hosted *nh = realloc(h, 2 * cap * sizeof(*h));
				if (nh == NULL) {
					free(h);
					return SL_ENOMEM;
				}
				h = nh;
				cap *= 2;
			}
			struct hosted *x = &h[n++];
			memset(x, 0, sizeof(*x));
			x->group = pp->group;
			x->nrep = pp->nreplicas;
			x->preferred = pp->replicas[0] == p->node_id;
			memcpy(x->rep, pp->replicas, pp->nreplicas * sizeof(*x->rep));
			qsort(x->rep, x->nrep, sizeof(*x->rep), cmp_u64);
		}
	}
	qsort(h, n, sizeof(*h), cmp_hosted);
	/* Carry over, and delete what went. Both arrays are sorted. */
	size_t j = 0;
	for (size_t i = 0; i < p->n; i++) {
		while (j < n && h[j].group < p->h[i].group)
			j++;
		if (j < n && h[j].group == p->h[i].group) {
			h[j] = p->h[i];
			continue;
		}
		sl_data_forget(p->h[i].group);
		if (p->h[i].state == H_RUNNING &&
		    sl_rreg_delete(p->reg, p->h[i].group, deleted, p) == SL_OK)
			SL_BLOG(SL_BLOG_INFO, "parts", "group=%u deleting: no partition of this node",
				p->h[i].group);
	}
	free(p->h);
	p->h = h;
	p->n = n;
	p->cap = cap;
	return SL_OK;
}

static void on_reconcile(uv_timer_t *t);
static void maybe_free(struct sl_parts *p);

/* A creation ended: the group starts on the next turn; one whose
 * partition went meanwhile is removed again. */
static void created(void *arg, uint32_t group, int status, const char *errmsg)
{
	struct sl_parts *p = arg;
	p->creating--;
	if (p->stopping) {
		maybe_free(p);
		return;
	}
	struct hosted *x = find(p, group);
	if (x == NULL || x->state != H_CREATING) {
		if (status == SL_OK)
			(void)sl_rreg_remove(p->reg, group);
	} else if (status == SL_OK || status == SL_EEXISTS) {
		x->state = H_CREATED;
	} else {
		SL_BLOG(SL_BLOG_ERROR, "parts", "group=%u not created: %s", group, errmsg);
		x->state = H_NEW;
		uv_timer_start(&p->reconcile, on_reconcile, 5000, 0);
		return;
	}
	uv_timer_start(&p->reconcile, on_reconcile, 1, 0);
}

static void create(struct sl_parts *p, struct hosted *x)
{
	char errmsg[SL_ERRMSG_SIZE];
	int rv = sl_rreg_create(p->reg, x->group, x->rep, x->nrep, created, p, errmsg);
	if (rv == SL_OK) {
		x->state = H_CREATING;
		p->creating++;
		if (p->burst_at == 0)
			p->burst_at = uv_now(p->loop);
	} else {
		x->state = rv == SL_EEXISTS ? H_RUNNING : H_CREATED; /* else: started at once */
	}
}

static void on_reconcile(uv_timer_t *t)
{
	struct sl_parts *p = t->data;
	const struct sl_meta *m = sl_controller_meta(p->ctl);
	if (rebuild(p, m) != SL_OK) {
		SL_BLOG(SL_BLOG_WARN, "parts", "out of memory reconciling groups: retrying in 1 s");
		uv_timer_start(&p->reconcile, on_reconcile, 1000, 0);
		return;
	}
	const char *why;
	if (!p->swept && sl_controller_ready(p->ctl, &why)) {
		sweep(p, m);
		p->swept = true;
	}
	unsigned started = 0;
	for (size_t i = 0; i < p->n && p->creating < MAX_CREATING; i++)
		if (p->h[i].state == H_NEW)
			create(p, &p->h[i]);
	for (size_t i = 0; i < p->n && started < STARTS_PER_TURN; i++) {
		struct hosted *x = &p->h[i];
		if (x->state != H_CREATED)
			continue;
		char errmsg[SL_ERRMSG_SIZE];
		int rv = sl_rreg_start_campaign(p->reg, x->group, x->rep, x->nrep, x->preferred,
						errmsg);
		if (rv == SL_OK || rv == SL_EEXISTS) {
			x->state = H_RUNNING;
			started++;
			const struct sl_meta_topic *tp;
			uint32_t part;
			if (rv == SL_OK && sl_meta_group(m, x->group, &tp, &part))
				SL_BLOG(SL_BLOG_DEBUG, "parts", "group=%u topic=%s partition=%u started",
					x->group, tp->name, part);
		} else {
			/* Damaged or unreadable: the rest still start; this one
			 * is tried again at the next change or in 5 s. */
			SL_BLOG(SL_BLOG_ERROR, "parts", "group=%u does not start: %s", x->group,
				errmsg);
			x->state = H_NEW;
			uv_timer_start(&p->reconcile, on_reconcile, 5000, 0);
		}
	}
	if (started > 0 && p->burst_at == 0)
		p->burst_at = uv_now(p->loop);
	p->burst_n += started;
	/* The rest on a later turn: in 1 ms, since libuv 1.44 runs a timer
	 * re-armed at 0 again in the same pass, before any I/O. */
	if (started == STARTS_PER_TURN) {
		uv_timer_start(&p->reconcile, on_reconcile, 1, 0);
	} else if (p->burst_n > 0 && p->creating == 0) {
		SL_BLOG(SL_BLOG_INFO, "parts", "started %u groups in %llu ms (%zu hosted)", p->burst_n,
			(unsigned long long)(uv_now(p->loop) - p->burst_at), p->n);
		p->burst_at = 0;
		p->burst_n = 0;
	}
}

void sl_parts_changed(struct sl_parts *p)
{
	if (!p->stopping) /* one reconcile per loop turn, however many changes */
		uv_timer_start(&p->reconcile, on_reconcile, 0, 0);
}

int sl_parts_led(struct sl_parts *p, uint32_t group, struct raft **r, struct raft_io **io)
{
	struct hosted *x = find(p, group);
	*r = x != NULL && x->state == H_RUNNING ? sl_rreg_raft(p->reg, group) : NULL;
	*io = *r != NULL ? sl_rreg_io(p->reg, group) : NULL;
	if (*io == NULL || raft_state(*r) != RAFT_LEADER || !sl_rio_leader_ready(*io))
		return SL_ENOT_LEADER;
	return SL_OK;
}

int sl_parts_offsets(struct sl_parts *p, uint32_t group, int64_t *start, int64_t *end)
{
	struct raft *r;
	struct raft_io *io;
	int rv = sl_parts_led(p, group, &r, &io);
	if (rv != SL_OK)
		return rv;
	*start = sl_log_start_offset(sl_rio_log(io));
	*end = sl_rio_offset_after(io, r->commit_index);
	return SL_OK;
}

int sl_parts_committed_end(struct sl_parts *p, uint32_t group, int64_t *end)
{
	struct raft *r = sl_rreg_raft(p->reg, group);
	struct raft_io *io = sl_rreg_io(p->reg, group);
	if (r == NULL || io == NULL)
		return SL_ENOT_FOUND;
	*end = sl_rio_offset_after(io, r->commit_index);
	return SL_OK;
}

int64_t sl_parts_client_leader(struct sl_parts *p, const struct sl_meta *m,
			       const struct sl_meta_partition *mp)
{
	struct sl_rgroup_state st;
	if (p != NULL && find(p, mp->group) != NULL && sl_rreg_state(p->reg, mp->group, &st) == SL_OK &&
	    st.role != SL_RROLE_STOPPED && st.term > mp->term) {
		uint64_t id = st.role == SL_RROLE_LEADER ? (st.ready ? p->node_id : 0) : st.leader;
		return id > 0 && sl_meta_node(m, id) != NULL ? (int64_t)id : -1;
	}
	const struct sl_meta_node *n = mp->leader != 0 ? sl_meta_node(m, mp->leader) : NULL;
	return n != NULL && n->alive ? (int64_t)mp->leader : -1;
}

int sl_parts_find_time(struct sl_parts *p, uint32_t group, int64_t ts, int64_t *offset)
{
	struct raft *r;
	struct raft_io *io;
	int rv = sl_parts_led(p, group, &r, &io);
	if (rv == SL_OK)
		rv = sl_log_find_time(sl_rio_log(io), ts, offset);
	if (rv == SL_OK && *offset >= sl_rio_offset_after(io, r->commit_index))
		*offset = -1; /* only uncommitted records are that recent */
	return rv;
}

size_t sl_parts_count(const struct sl_parts *p)
{
	return p->n;
}

/* Sends what the reports hold; n is reset. */
static void send_reports(struct sl_parts *p, struct sl_meta_leader_report *r, size_t *n)
{
	uint8_t *cmd;
	size_t len;
	if (*n > 0 && sl_meta_cmd_report_leaders(r, *n, &cmd, &len) == SL_OK) {
		int rv = sl_controller_submit(p->ctl, cmd, len);
		if (rv != SL_OK)
			SL_BLOG(SL_BLOG_DEBUG, "parts", "%zu leader reports not sent: %s", *n,
				sl_strerror(rv));
		free(cmd);
	}
	*n = 0;
}

static void retain_one(struct sl_parts *p, struct hosted *x, const struct sl_meta *m,
		       int64_t now_ms);
static int64_t wall_ms(void);

/* Every heartbeat: leadership that the metadata does not show yet (and
 * a group just started gets its topic's limits). */
static void on_report(uv_timer_t *t)
{
	struct sl_parts *p = t->data;
	const struct sl_meta *m = sl_controller_meta(p->ctl);
	int64_t now = (int64_t)uv_now(p->loop);
	static struct sl_meta_leader_report r[REPORTS_PER_CMD];
	size_t nr = 0;
	for (size_t i = 0; i < p->n; i++) {
		struct hosted *x = &p->h[i];
		struct sl_rgroup_state st;
		if (x->state == H_RUNNING && !x->limits_set) /* its topic's segment size */
			retain_one(p, x, m, wall_ms());
		if (x->state != H_RUNNING || sl_rreg_state(p->reg, x->group, &st) != SL_OK)
			continue;
		if (st.role != SL_RROLE_LEADER || !st.ready)
			continue;
		unsigned isr = 0;
		for (unsigned k = 0; k < st.n_replicas; k++)
			for (unsigned j = 0; j < x->nrep; j++)
				if (st.replicas[k].in_sync && st.replicas[k].node == x->rep[j])
					isr |= 1u << j;
		/* What the metadata holds. */
		const struct sl_meta_topic *tp;
		uint32_t part;
		if (!sl_meta_group(m, x->group, &tp, &part))
			continue;
		const struct sl_meta_partition *pp = &tp->parts[part];
		unsigned have = 0;
		for (unsigned k = 0; k < pp->nisr; k++)
			for (unsigned j = 0; j < x->nrep; j++)
				if (pp->isr[k] == x->rep[j])
					have |= 1u << j;
		if (pp->leader == p->node_id && pp->term == st.term && have == isr)
			continue;
		if (x->sent_term == st.term && x->sent_leader == p->node_id && x->sent_isr == isr &&
		    now - x->sent_ms < RESEND_MS)
			continue; /* on its way */
		struct sl_meta_leader_report *rp = &r[nr++];
		rp->group = x->group;
		rp->leader = p->node_id;
		rp->term = st.term;
		rp->nisr = 0;
		for (unsigned j = 0; j < x->nrep; j++)
			if (isr & (1u << j))
				rp->isr[rp->nisr++] = x->rep[j];
		x->sent_term = st.term;
		x->sent_leader = p->node_id;
		x->sent_isr = isr;
		x->sent_ms = now;
		if (nr == REPORTS_PER_CMD)
			send_reports(p, r, &nr);
	}
	send_reports(p, r, &nr);
}

static void on_change(void *arg)
{
	sl_parts_changed(arg);
}

/* ---- Retention -------------------------------------------------------- */

/* A retention run in flight; p is NULL once the manager closed. */
struct retain_req {
	struct retain_req *next;
	struct sl_parts *p;
	uint32_t group;
};

static void retained(void *arg, int rv, const struct sl_rio_cleaned *done)
{
	struct retain_req *q = arg;
	struct sl_parts *p = q->p;
	if (p != NULL) {
		for (struct retain_req **pp = &p->retains; *pp != NULL; pp = &(*pp)->next)
			if (*pp == q) {
				*pp = q->next;
				break;
			}
		struct hosted *x = find(p, q->group);
		if (x != NULL)
			x->retaining = false;
		sl_log *log = sl_rreg_log(p->reg, q->group);
		if (rv != SL_OK && rv != SL_ECANCELED)
			SL_BLOG(SL_BLOG_WARN, "parts", "group=%u cleaning: %s (tried again later)",
				q->group, sl_strerror(rv));
		if (done->segments_deleted > 0)
			SL_BLOG(SL_BLOG_INFO, "parts",
				"group=%u retention deleted %zu segments; the log starts at %lld",
				q->group, done->segments_deleted,
				log != NULL ? (long long)sl_log_start_offset(log) : -1LL);
		if (done->compaction.segments_rewritten > 0)
			SL_BLOG(SL_BLOG_INFO, "parts",
				"group=%u compaction rewrote %zu segments: %llu records removed, "
				"%llu -> %llu bytes",
				q->group, done->compaction.segments_rewritten,
				(unsigned long long)done->compaction.records_removed,
				(unsigned long long)done->compaction.bytes_before,
				(unsigned long long)done->compaction.bytes_after);
	}
	free(q);
}

/* A topic's limit: 0 is the broker's default, UINT64_MAX none (-1). */
static int64_t limit(uint64_t v, int64_t dflt)
{
	return v == 0 ? dflt : v >= (uint64_t)INT64_MAX ? -1 : (int64_t)v;
}

/* Queues the topic's limits, retention and compaction for group x, below
 * its high watermark. */
static void retain_one(struct sl_parts *p, struct hosted *x, const struct sl_meta *m,
		       int64_t now_ms)
{
	const struct sl_meta_topic *tp;
	uint32_t part;
	if (x->state != H_RUNNING || x->retaining || !sl_meta_group(m, x->group, &tp, &part))
		return;
	struct raft *r = sl_rreg_raft(p->reg, x->group);
	struct raft_io *io = sl_rreg_io(p->reg, x->group);
	struct retain_req *q = r != NULL && io != NULL ? malloc(sizeof(*q)) : NULL;
	if (q == NULL)
		return;
	*q = (struct retain_req){ .next = p->retains, .p = p, .group = x->group };
	/* A compacted topic keeps every key's last record: only the limits
	 * it sets itself delete by age or size. */
	bool compact = tp->config.cleanup_policy == SL_CLEANUP_POLICY_COMPACT;
	struct sl_rio_cleaning what = {
		.segment_bytes = tp->config.segment_bytes,
		.retention_bytes = limit(tp->config.retention_bytes,
					 compact ? -1 : p->default_retention_bytes),
		.retention_ms = limit(tp->config.retention_ms,
				      compact ? -1 : p->default_retention_ms),
		.compact = compact,
		.now_ms = now_ms,
	};
	int rv = sl_rio_clean(io, sl_rio_offset_after(io, r->commit_index), &what, retained, q);
	if (rv != SL_OK) {
		free(q);
		return;
	}
	p->retains = q;
	x->retaining = x->limits_set = true;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every retention_check_ms: each replica of this node runs its topic's
 * retention and compaction on the group's disk worker. */
static void on_retain(uv_timer_t *t)
{
	struct sl_parts *p = t->data;
	const struct sl_meta *m = sl_controller_meta(p->ctl);
	int64_t now_ms = wall_ms();
	for (size_t i = 0; i < p->n; i++)
		retain_one(p, &p->h[i], m, now_ms);
}

void sl_parts_set_retention(struct sl_parts *p, unsigned check_ms, int64_t default_bytes,
			    int64_t default_ms)
{
	p->default_retention_bytes = default_bytes;
	p->default_retention_ms = default_ms;
	uv_timer_start(&p->retain, on_retain, check_ms, check_ms);
}

int sl_parts_init(struct sl_parts **out, uv_loop_t *loop, uint64_t node_id, unsigned heartbeat_ms,
		  const char *raft_dir, struct sl_rreg *reg, struct sl_controller *ctl)
{
	struct sl_parts *p = calloc(1, sizeof(*p));
	if (p == NULL || (p->raft_dir = strdup(raft_dir)) == NULL) {
		free(p);
		return SL_ENOMEM;
	}
	p->loop = loop;
	p->node_id = node_id;
	p->reg = reg;
	p->ctl = ctl;
	uv_timer_init(loop, &p->reconcile);
	uv_timer_init(loop, &p->report);
	uv_timer_init(loop, &p->retain);
	p->reconcile.data = p;
	p->report.data = p;
	p->retain.data = p;
	struct sl_log_config d;
	sl_log_config_init(&d);
	p->default_retention_bytes = d.retention_bytes;
	p->default_retention_ms = d.retention_ms;
	uv_timer_start(&p->report, on_report, heartbeat_ms, heartbeat_ms);
	sl_controller_on_change(ctl, on_change, p);
	sl_parts_changed(p);
	*out = p;
	return SL_OK;
}

/* Freed once its timers closed and no creation is in flight. */
static void maybe_free(struct sl_parts *p)
{
	if (p->closing > 0 || p->creating > 0)
		return;
	void (*cb)(void *) = p->close_cb;
	void *arg = p->close_arg;
	free(p->h);
	free(p->raft_dir);
	free(p);
	if (cb != NULL)
		cb(arg);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct sl_parts *p = h->data;
	p->closing--;
	maybe_free(p);
}

void sl_parts_close(struct sl_parts *p, void (*cb)(void *arg), void *arg)
{
	sl_controller_on_change(p->ctl, NULL, NULL);
	p->close_cb = cb;
	p->close_arg = arg;
	p->stopping = true;
	p->closing = 3;
	for (struct retain_req *q = p->retains; q != NULL; q = q->next)
		q->p = NULL; /* their callbacks come when the groups close */
	p->retains = NULL;
	uv_close((uv_handle_t *)&p->reconcile, on_timer_closed);
	uv_close((uv_handle_t *)&p->report, on_timer_closed);
	uv_close((uv_handle_t *)&p->retain, on_timer_closed);
}
