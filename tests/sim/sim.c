/* The deterministic Raft simulator. See sim.h. */
#define _GNU_SOURCE
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "rio.h"
#include "rmeta.h"
#include "simdisk.h"
#include "storage.h"

#define GROUP_ID 1
#define TRACE_LINES 256
#define TRACE_LEN 200
#define FSM_MAGIC 0x314d53464d495353ull /* "SSIMFSM1" */
#define FSM_SNAP_LEN 32
#define HASH_NONCMD 1 /* an index whose entry is no COMMAND */

/* ---- Small helpers ---------------------------------------------------- */

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL)
		abort();
	return p;
}

static void *xrealloc(void *p, size_t size)
{
	p = realloc(p, size);
	if (p == NULL)
		abort();
	return p;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* A payload hash, never 0 (unknown) nor HASH_NONCMD. */
static uint64_t payload_hash(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	h = mix64(h ^ len);
	return h <= HASH_NONCMD ? h + 2 : h;
}

static uint64_t chain_next(uint64_t chain, uint64_t index, uint64_t hash)
{
	return mix64(chain ^ mix64(index * 0x9e3779b97f4a7c15ull + hash));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* ---- Types ------------------------------------------------------------ */

enum ev_kind { EV_WORK, EV_DELIVER, EV_TICK, EV_RESTART };

struct sev {
	int64_t at;
	uint64_t seq;
	enum ev_kind kind;
	int node;     /* destination / owner, 1-based */
	uint32_t inc; /* the owner's incarnation (work, tick) */
	int from;     /* EV_DELIVER: sender */
	struct sl_rwork *w;
	struct raft_message msg;
};

enum nstate { N_DOWN, N_UP, N_CLOSING };

struct snode;

struct senv {
	struct sl_renv base;
	struct snode *node;
};

struct snode {
	struct sl_sim *sim;
	int id;
	char addr[16];
	sim_disk *sd;
	struct senv env;
	struct sl_rnet net;
	struct raft raft;
	struct raft_io io;
	struct raft_fsm fsm;
	struct sl_rmeta *meta; /* the shared term/vote store, when used */
	enum nstate state;
	uint32_t inc;
	unsigned pending;  /* env events of this incarnation */
	bool fenced;       /* the backend reported a fault */
	bool crash_close;  /* this close is a crash: drop unsynced data */
	bool tear;
	int64_t disk_tail; /* time of the newest queued env event */
	int64_t disk_min, disk_max, disk_until;
	int group;         /* partition group */
	/* State machine. */
	uint64_t applied;
	uint64_t chain;
	/* Role tracking for the checker. */
	unsigned short seen_state;
	raft_term seen_term;
	raft_term led_term;
	raft_index led_last;
	int64_t led_next_offset;
};

struct sprod {
	struct raft_apply req;
	struct sl_sim *sim;
	uint64_t hash;
	int node;
};

struct sbarrier {
	struct raft_barrier req;
};

/* (index, term) -> payload hash, open addressing. */
struct lm_slot {
	uint64_t index, term, hash;
};

struct sl_sim {
	struct sl_sim_config cfg;
	uint64_t rng;
	int64_t now; /* microseconds */
	uint64_t seq;
	int step;
	struct snode nodes[SL_SIM_MAX_NODES];
	/* Event heap. */
	struct sev **heap;
	size_t nheap, capheap;
	/* Network faults. */
	double drop_p, dup_p;
	int64_t drop_until, dup_until;
	/* Scripted network (sl_sim_link, sl_sim_drop_next): links cut both
	 * ways, and how many more messages of a type to lose on a link, by
	 * [from - 1][to - 1][type]. */
	bool cut[SL_SIM_MAX_NODES][SL_SIM_MAX_NODES];
	int drop_next[SL_SIM_MAX_NODES][SL_SIM_MAX_NODES][RAFT_IO_TIMEOUT_NOW + 1];
	/* Checker. */
	raft_id *leader_of; /* by term */
	size_t nleader_of;
	uint64_t *g_hash, *g_chain; /* by index */
	size_t ng;
	struct lm_slot *lm;
	size_t lm_cap, lm_n;
	uint64_t proposed, acked, failed_props, max_acked_index;
	uint64_t produce_seq;
	struct sl_batch_builder bb;
	struct sl_sim_stats stats;
	bool failed;
	char violation[1024];
	char trace[TRACE_LINES][TRACE_LEN];
	unsigned trace_n;
};

/* ---- PRNG (xorshift64*, seeded through splitmix) ----------------------- */

static uint64_t rnd64(struct sl_sim *s)
{
	uint64_t x = s->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	s->rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n). */
static uint64_t rnd(struct sl_sim *s, uint64_t n)
{
	return n == 0 ? 0 : rnd64(s) % n;
}

static int64_t rnd_range(struct sl_sim *s, int64_t min, int64_t max)
{
	if (max <= min)
		return min;
	return min + (int64_t)rnd(s, (uint64_t)(max - min + 1));
}

static double rnd_unit(struct sl_sim *s)
{
	return (double)(rnd64(s) >> 11) / 9007199254740992.0;
}

/* ---- Trace and violations ---------------------------------------------- */

static void trace(struct sl_sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void trace(struct sl_sim *s, const char *fmt, ...)
{
	char *line = s->trace[s->trace_n++ % TRACE_LINES];
	int n = snprintf(line, TRACE_LEN, "%7" PRId64 ".%03d ", s->now / 1000, (int)(s->now % 1000));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, TRACE_LEN - (size_t)n, fmt, ap);
	va_end(ap);
	if (s->cfg.trace)
		fprintf(stderr, "sim: %s\n", line);
}

static void violate(struct sl_sim *s, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void violate(struct sl_sim *s, const char *kind, const char *fmt, ...)
{
	if (s->failed)
		return;
	s->failed = true;
	char detail[800];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	snprintf(s->violation, sizeof(s->violation), "%s: %s", kind, detail);
	fprintf(stderr, "SIM VIOLATION seed=%" PRIu64 " step=%d t=%" PRId64 ".%03d ms nodes=%d: %s\n",
		s->cfg.seed, s->step, s->now / 1000, (int)(s->now % 1000), s->cfg.nodes, s->violation);
	if (!s->cfg.trace) {
		unsigned first = s->trace_n > TRACE_LINES ? s->trace_n - TRACE_LINES : 0;
		unsigned from = s->trace_n > 40 ? s->trace_n - 40 : 0;
		if (from < first)
			from = first;
		fprintf(stderr, "  last trace lines (seed %" PRIu64 "):\n", s->cfg.seed);
		for (unsigned i = from; i < s->trace_n; i++)
			fprintf(stderr, "    %s\n", s->trace[i % TRACE_LINES]);
	}
}

/* ---- Event heap -------------------------------------------------------- */

static bool ev_before(const struct sev *a, const struct sev *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void heap_push(struct sl_sim *s, struct sev *e)
{
	e->seq = s->seq++;
	if (s->nheap == s->capheap) {
		s->capheap = s->capheap ? s->capheap * 2 : 256;
		s->heap = xrealloc(s->heap, s->capheap * sizeof(*s->heap));
	}
	size_t i = s->nheap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!ev_before(e, s->heap[p]))
			break;
		s->heap[i] = s->heap[p];
		i = p;
	}
	s->heap[i] = e;
}

static struct sev *heap_pop(struct sl_sim *s)
{
	if (s->nheap == 0)
		return NULL;
	struct sev *top = s->heap[0];
	struct sev *last = s->heap[--s->nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->nheap)
			break;
		if (c + 1 < s->nheap && ev_before(s->heap[c + 1], s->heap[c]))
			c++;
		if (!ev_before(s->heap[c], last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->nheap > 0)
		s->heap[i] = last;
	return top;
}

static struct sev *ev_new(enum ev_kind kind, int node, int64_t at)
{
	struct sev *e = xcalloc(1, sizeof(*e));
	e->kind = kind;
	e->node = node;
	e->at = at;
	return e;
}

static struct snode *node_of(struct sl_sim *s, int id)
{
	return &s->nodes[id - 1];
}

/* ---- Messages ----------------------------------------------------------- */

/* Frees what a message copy owns (one that was never delivered). */
static void msg_free(struct raft_message *m)
{
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES:
		if (m->append_entries.n_entries > 0)
			raft_free(m->append_entries.entries[0].batch);
		raft_free(m->append_entries.entries);
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
		raft_configuration_close(&m->install_snapshot.conf);
		raft_free(m->install_snapshot.data.base);
		break;
	default:
		break;
	}
}

static void msg_copy(const struct raft_message *src, struct raft_message *dst)
{
	*dst = *src;
	if (src->type == RAFT_IO_APPEND_ENTRIES) {
		const struct raft_append_entries *a = &src->append_entries;
		struct raft_append_entries *b = &dst->append_entries;
		b->entries = NULL;
		if (a->n_entries == 0)
			return;
		size_t total = 0;
		for (unsigned i = 0; i < a->n_entries; i++)
			total += a->entries[i].buf.len;
		uint8_t *batch = raft_malloc(total > 0 ? total : 1);
		b->entries = raft_malloc(a->n_entries * sizeof(*b->entries));
		if (batch == NULL || b->entries == NULL)
			abort();
		size_t off = 0;
		for (unsigned i = 0; i < a->n_entries; i++) {
			b->entries[i] = a->entries[i];
			b->entries[i].buf.base = batch + off;
			b->entries[i].batch = batch;
			if (a->entries[i].buf.len > 0)
				memcpy(batch + off, a->entries[i].buf.base, a->entries[i].buf.len);
			off += a->entries[i].buf.len;
		}
	} else if (src->type == RAFT_IO_INSTALL_SNAPSHOT) {
		const struct raft_install_snapshot *a = &src->install_snapshot;
		struct raft_install_snapshot *b = &dst->install_snapshot;
		raft_configuration_init(&b->conf);
		for (unsigned i = 0; i < a->conf.n; i++)
			if (raft_configuration_add(&b->conf, a->conf.servers[i].id, a->conf.servers[i].address,
						   a->conf.servers[i].role) != 0)
				abort();
		b->data.base = raft_malloc(a->data.len > 0 ? a->data.len : 1);
		if (b->data.base == NULL)
			abort();
		if (a->data.len > 0)
			memcpy(b->data.base, a->data.base, a->data.len);
	}
}

static const char *msg_name(int type)
{
	switch (type) {
	case RAFT_IO_APPEND_ENTRIES:
		return "append";
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		return "append_result";
	case RAFT_IO_REQUEST_VOTE:
		return "vote";
	case RAFT_IO_REQUEST_VOTE_RESULT:
		return "vote_result";
	case RAFT_IO_INSTALL_SNAPSHOT:
		return "install";
	case RAFT_IO_TIMEOUT_NOW:
		return "timeout_now";
	}
	return "?";
}

static void trace_msg(struct sl_sim *s, const struct sev *ev)
{
	const struct raft_message *m = &ev->msg;
	char d[120] = "";
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES:
		snprintf(d, sizeof(d), "term=%llu prev=%llu/%llu n=%u commit=%llu",
			 (unsigned long long)m->append_entries.term,
			 (unsigned long long)m->append_entries.prev_log_index,
			 (unsigned long long)m->append_entries.prev_log_term, m->append_entries.n_entries,
			 (unsigned long long)m->append_entries.leader_commit);
		break;
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		snprintf(d, sizeof(d), "term=%llu rejected=%llu last=%llu",
			 (unsigned long long)m->append_entries_result.term,
			 (unsigned long long)m->append_entries_result.rejected,
			 (unsigned long long)m->append_entries_result.last_log_index);
		break;
	case RAFT_IO_REQUEST_VOTE:
		snprintf(d, sizeof(d), "term=%llu last=%llu/%llu pre=%d", (unsigned long long)m->request_vote.term,
			 (unsigned long long)m->request_vote.last_log_index,
			 (unsigned long long)m->request_vote.last_log_term, (int)m->request_vote.pre_vote);
		break;
	case RAFT_IO_REQUEST_VOTE_RESULT:
		snprintf(d, sizeof(d), "term=%llu granted=%d", (unsigned long long)m->request_vote_result.term,
			 (int)m->request_vote_result.vote_granted);
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
		snprintf(d, sizeof(d), "term=%llu last=%llu/%llu", (unsigned long long)m->install_snapshot.term,
			 (unsigned long long)m->install_snapshot.last_index,
			 (unsigned long long)m->install_snapshot.last_term);
		break;
	default:
		break;
	}
	trace(s, "n%d <- n%d %s %s", ev->node, ev->from, msg_name(m->type), d);
}

/* ---- Checker: global records ------------------------------------------- */

static void lm_record(struct sl_sim *s, uint64_t index, uint64_t term, uint64_t hash, int from)
{
	if (s->lm_n * 2 >= s->lm_cap) {
		size_t ocap = s->lm_cap;
		struct lm_slot *old = s->lm;
		s->lm_cap = ocap ? ocap * 2 : 1024;
		s->lm = xcalloc(s->lm_cap, sizeof(*s->lm));
		for (size_t i = 0; i < ocap; i++) {
			if (old[i].index == 0)
				continue;
			size_t k = mix64(old[i].index * 31 + old[i].term) & (s->lm_cap - 1);
			while (s->lm[k].index != 0)
				k = (k + 1) & (s->lm_cap - 1);
			s->lm[k] = old[i];
		}
		free(old);
	}
	size_t k = mix64(index * 31 + term) & (s->lm_cap - 1);
	while (s->lm[k].index != 0) {
		if (s->lm[k].index == index && s->lm[k].term == term) {
			if (s->lm[k].hash != hash)
				violate(s, "log_matching",
					"n%d sent entry (index %" PRIu64 ", term %" PRIu64
					") with payload %016" PRIx64 ", another node sent %016" PRIx64,
					from, index, term, hash, s->lm[k].hash);
			return;
		}
		k = (k + 1) & (s->lm_cap - 1);
	}
	s->lm[k] = (struct lm_slot){ index, term, hash };
	s->lm_n++;
}

static void g_grow(struct sl_sim *s, uint64_t index)
{
	if (index < s->ng)
		return;
	size_t n = s->ng ? s->ng : 1024;
	while (n <= index)
		n *= 2;
	s->g_hash = xrealloc(s->g_hash, n * sizeof(*s->g_hash));
	s->g_chain = xrealloc(s->g_chain, n * sizeof(*s->g_chain));
	memset(s->g_hash + s->ng, 0, (n - s->ng) * sizeof(*s->g_hash));
	memset(s->g_chain + s->ng, 0, (n - s->ng) * sizeof(*s->g_chain));
	s->ng = n;
}

static void check_chain(struct sl_sim *s, struct snode *n, uint64_t index, const char *how)
{
	g_grow(s, index);
	if (s->g_chain[index] == 0)
		s->g_chain[index] = n->chain;
	else if (s->g_chain[index] != n->chain)
		violate(s, "state_machine_safety",
			"n%d %s index %" PRIu64 " with state %016" PRIx64 ", others had %016" PRIx64
			" (applied sequences diverge at or below this index)",
			n->id, how, index, n->chain, s->g_chain[index]);
}

/* The node's state machine reaches index with entry hash h. */
static void fsm_step(struct snode *n, uint64_t index, uint64_t h)
{
	struct sl_sim *s = n->sim;
	if (index != n->applied + 1) {
		violate(s, "state_machine_safety", "n%d applies index %" PRIu64 " after %" PRIu64, n->id,
			index, n->applied);
		return;
	}
	g_grow(s, index);
	if (s->g_hash[index] == 0) {
		s->g_hash[index] = h;
	} else if (s->g_hash[index] != h) {
		violate(s, "state_machine_safety",
			"n%d applied %s %016" PRIx64 " at index %" PRIu64 ", others applied %s %016" PRIx64,
			n->id, h == HASH_NONCMD ? "a non-command" : "command", h, index,
			s->g_hash[index] == HASH_NONCMD ? "a non-command" : "command", s->g_hash[index]);
		return;
	}
	n->chain = chain_next(n->chain, index, h);
	n->applied = index;
	check_chain(s, n, index, "applied");
}

/* Entries up to index that the state machine never saw were no COMMAND. */
static void fsm_sync(struct snode *n, uint64_t index)
{
	while (n->applied < index && !n->sim->failed)
		fsm_step(n, n->applied + 1, HASH_NONCMD);
}

/* ---- The state machine -------------------------------------------------- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct snode *n = fsm->data;
	uint64_t index = n->raft.last_applied + 1;
	*result = NULL;
	fsm_sync(n, index - 1);
	fsm_step(n, index, payload_hash(buf->base, buf->len));
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct snode *n = fsm->data;
	fsm_sync(n, n->raft.last_applied);
	struct raft_buffer *b = raft_malloc(sizeof(*b));
	uint8_t *p = raft_malloc(FSM_SNAP_LEN);
	if (b == NULL || p == NULL)
		abort();
	put64(p, FSM_MAGIC);
	put64(p + 8, n->applied);
	put64(p + 16, n->chain);
	put64(p + 24, (uint64_t)n->id);
	b->base = p;
	b->len = FSM_SNAP_LEN;
	*bufs = b;
	*n_bufs = 1;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct snode *n = fsm->data;
	struct sl_sim *s = n->sim;
	const uint8_t *p = NULL;
	if (buf->len >= FSM_SNAP_LEN)
		p = (const uint8_t *)buf->base + buf->len - FSM_SNAP_LEN;
	if (p == NULL || get64(p) != FSM_MAGIC) {
		violate(s, "backend", "n%d: restore got %zu bytes without the state machine's snapshot at the end",
			n->id, buf->len);
		raft_free(buf->base);
		return 0;
	}
	n->applied = get64(p + 8);
	n->chain = get64(p + 16);
	trace(s, "n%d restore snapshot applied=%" PRIu64 " (taken by n%d)", n->id, n->applied,
	      (int)get64(p + 24));
	raft_free(buf->base);
	if (n->applied > 0)
		check_chain(s, n, n->applied, "restored a snapshot at");
	return 0;
}

/* ---- Environment -------------------------------------------------------- */

static void env_submit(struct sl_renv *e, struct sl_rwork *w)
{
	struct snode *n = ((struct senv *)e)->node;
	struct sl_sim *s = n->sim;
	int64_t min = s->cfg.disk_min_us, max = s->cfg.disk_max_us;
	if (n->disk_until != 0 && (n->disk_until < 0 || s->now < n->disk_until)) {
		min = n->disk_min;
		max = n->disk_max;
	}
	int64_t at = s->now + rnd_range(s, min, max);
	if (at < n->disk_tail)
		at = n->disk_tail; /* FIFO per node; ties keep queue order */
	n->disk_tail = at;
	struct sev *ev = ev_new(EV_WORK, n->id, at);
	ev->inc = n->inc;
	ev->w = w;
	n->pending++;
	heap_push(s, ev);
}

static int64_t env_now(struct sl_renv *e)
{
	return ((struct senv *)e)->node->sim->now / 1000;
}

static int env_random(struct sl_renv *e, int min, int max)
{
	return (int)rnd_range(((struct senv *)e)->node->sim, min, max);
}

static int64_t log_clock(void *arg)
{
	return ((struct sl_sim *)arg)->now / 1000;
}

/* ---- Network ------------------------------------------------------------ */

static bool link_up(struct sl_sim *s, int from, int to)
{
	struct snode *a = node_of(s, from), *b = node_of(s, to);
	return a->state == N_UP && b->state == N_UP && a->group == b->group && !s->cut[from - 1][to - 1];
}

static double cur_drop(struct sl_sim *s)
{
	return s->drop_until < 0 || s->now < s->drop_until ? s->drop_p : 0;
}

static double cur_dup(struct sl_sim *s)
{
	return s->dup_until < 0 || s->now < s->dup_until ? s->dup_p : 0;
}

static int net_send(struct sl_rnet *net, uint32_t group, const struct raft_message *msg)
{
	struct snode *from = net->data;
	struct sl_sim *s = from->sim;
	(void)group;
	int to = (int)msg->server_id;
	if (to < 1 || to > s->cfg.nodes || to == from->id)
		return RAFT_NOCONNECTION;
	if (msg->type == RAFT_IO_APPEND_ENTRIES) {
		const struct raft_append_entries *a = &msg->append_entries;
		for (unsigned i = 0; i < a->n_entries; i++)
			lm_record(s, a->prev_log_index + 1 + i, a->entries[i].term,
				  payload_hash(a->entries[i].buf.base, a->entries[i].buf.len) ^ a->entries[i].type,
				  from->id);
	}
	s->stats.messages++;
	if (msg->type >= 1 && msg->type <= RAFT_IO_TIMEOUT_NOW && s->drop_next[from->id - 1][to - 1][msg->type] > 0) {
		s->drop_next[from->id - 1][to - 1][msg->type]--;
		s->stats.dropped++;
		s->stats.scripted_drops++;
		trace(s, "n%d -> n%d %s dropped (scripted)", from->id, to, msg_name(msg->type));
		return 0; /* lost on the wire */
	}
	if (!link_up(s, from->id, to)) {
		s->stats.dropped++;
		return 0; /* lost on the wire */
	}
	int copies = rnd_unit(s) < cur_dup(s) ? 2 : 1;
	for (int c = 0; c < copies; c++) {
		if (rnd_unit(s) < cur_drop(s)) {
			s->stats.dropped++;
			continue;
		}
		struct sev *ev = ev_new(EV_DELIVER, to, s->now + rnd_range(s, s->cfg.net_min_us, s->cfg.net_max_us));
		ev->from = from->id;
		msg_copy(msg, &ev->msg);
		heap_push(s, ev);
	}
	return 0;
}

/* Copies whole batches [offset, end) of node `from`'s log (the bulk copy
 * of an install). Synchronous: the simulator runs disk work inline. */
static int net_fetch(struct sl_rnet *net, uint32_t group, raft_id from, int64_t offset, int64_t end,
		     uint8_t **buf, size_t *len)
{
	struct snode *n = net->data;
	struct sl_sim *s = n->sim;
	(void)group;
	*buf = NULL;
	*len = 0;
	if (from < 1 || from > (raft_id)s->cfg.nodes || !link_up(s, (int)from, n->id) ||
	    node_of(s, (int)from)->fenced)
		return SL_EIO;
	sl_log *log = sl_rio_log(&node_of(s, (int)from)->io);
	if (log == NULL)
		return SL_EIO;
	struct sl_slice sl;
	int rv = sl_log_read(log, offset, 64 * 1024, &sl);
	if (rv != SL_OK)
		return rv;
	uint8_t *b = malloc(sl.len > 0 ? sl.len : 1);
	if (b == NULL) {
		sl_slice_release(&sl);
		return SL_ENOMEM;
	}
	rv = sl_slice_read(&sl, b);
	uint64_t total = sl.len;
	sl_slice_release(&sl);
	if (rv != SL_OK) {
		free(b);
		return rv;
	}
	/* Keep whole batches ending before end. */
	size_t keep = 0;
	while (keep < total) {
		struct sl_batch_header h;
		if (sl_batch_parse_header(b + keep, total - keep, UINT32_MAX, &h) != SL_OK ||
		    sl_batch_last_offset(&h) >= end)
			break;
		keep += sl_batch_total_size(&h);
	}
	if (keep == 0) {
		free(b);
		return SL_ENOT_FOUND;
	}
	*buf = b;
	*len = keep;
	return SL_OK;
}

/* ---- Nodes -------------------------------------------------------------- */

static void on_fault(void *arg, uint32_t group, int err, const char *why)
{
	struct snode *n = arg;
	struct sl_sim *s = n->sim;
	(void)group;
	if (n->fenced)
		return;
	n->fenced = true;
	if (n->state != N_UP)
		return; /* a crash in progress: expected */
	s->stats.faults++;
	trace(s, "n%d fault %d: %s", n->id, err, why);
	/* The owner closes and restarts the group: not from inside the
	 * backend's call stack. */
	heap_push(s, ev_new(EV_RESTART, n->id, s->now));
}

static void schedule_tick(struct sl_sim *s, struct snode *n, int64_t at)
{
	struct sev *ev = ev_new(EV_TICK, n->id, at);
	ev->inc = n->inc;
	heap_push(s, ev);
}

static void closed(struct snode *n);

/* The backend's close, when raft_init failed. */
static void io_closed(struct raft_io *io)
{
	closed((struct snode *)((char *)io - offsetof(struct snode, io)));
}

static void start_node(struct sl_sim *s, struct snode *n, bool bootstrap)
{
	n->inc++;
	n->pending = 0;
	n->fenced = false;
	n->applied = 0;
	n->chain = 0;
	n->seen_state = RAFT_UNAVAILABLE;
	n->seen_term = 0;
	n->led_term = 0;
	n->disk_tail = s->now;
	sim_crash_after(n->sd, -1);
	sim_fail_after(n->sd, -1, 0);
	struct sl_rio_config cfg = { .dir = "/sim/g1", .group = GROUP_ID };
	if (s->cfg.shared_meta) {
		char errmsg[SL_ERRMSG_SIZE];
		if (sl_rmeta_open("/sim/meta", sim_vfs(n->sd), &n->env.base, &n->meta, errmsg) != SL_OK) {
			violate(s, "backend", "n%d term/vote store: %s", n->id, errmsg);
			n->state = N_DOWN;
			return;
		}
		cfg.meta = n->meta;
	}
	sl_log_config_init(&cfg.log);
	cfg.log.segment_bytes = s->cfg.segment_bytes;
	cfg.log.segment_ms = 0;
	cfg.log.now_ms = log_clock;
	cfg.log.now_arg = s;
	cfg.log.prewrite_min = 4096;
	cfg.log.prewrite_max = 65536;
	if (sl_rio_init(&n->io, &cfg, sim_vfs(n->sd), &n->env.base, &n->net, on_fault, n) != SL_OK)
		abort();
	int rv = raft_init(&n->raft, &n->io, &n->fsm, (raft_id)n->id, n->addr);
	if (rv != 0) {
		violate(s, "backend", "n%d raft_init: %d %s", n->id, rv, raft_errmsg(&n->raft));
		n->state = N_CLOSING;
		n->io.close(&n->io, io_closed);
		return;
	}
	sl_rio_tune(&n->raft, s->cfg.heartbeat_ms, s->cfg.election_ms); /* as the broker does */
	raft_set_snapshot_threshold(&n->raft, s->cfg.snapshot_threshold);
	raft_set_snapshot_trailing(&n->raft, s->cfg.snapshot_trailing);
	raft_set_pre_vote(&n->raft, s->cfg.pre_vote);
	n->state = N_UP;
	if (bootstrap) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		for (int i = 1; i <= s->cfg.nodes; i++)
			if (raft_configuration_add(&conf, (raft_id)i, node_of(s, i)->addr, RAFT_VOTER) != 0)
				abort();
		rv = raft_bootstrap(&n->raft, &conf);
		raft_configuration_close(&conf);
		if (rv != 0)
			violate(s, "backend", "n%d raft_bootstrap: %d %s", n->id, rv, raft_errmsg(&n->raft));
	}
	rv = raft_start(&n->raft);
	if (rv != 0) {
		violate(s, "backend", "n%d raft_start (restart %s): %d %s", n->id, bootstrap ? "no" : "yes", rv,
			raft_errmsg(&n->raft));
		/* Leave it to the checker's UNAVAILABLE handling. */
	}
	trace(s, "n%d started (inc %u) term=%llu last_stored=%llu", n->id, n->inc,
	      (unsigned long long)n->raft.current_term, (unsigned long long)sl_rio_last_stored(&n->io));
	schedule_tick(s, n, s->now + rnd_range(s, 1000, (int64_t)s->cfg.heartbeat_ms * 1000));
}

static void meta_closed(void *arg)
{
	struct snode *n = arg;
	n->meta = NULL;
	closed(n);
}

/* The group closed; then the node's term/vote store, if it has one. */
static void closed(struct snode *n)
{
	struct sl_sim *s = n->sim;
	if (n->meta != NULL) {
		sl_rmeta_close(n->meta, meta_closed, n);
		return;
	}
	n->state = N_DOWN;
	if (n->pending != 0)
		violate(s, "backend", "n%d: %u environment events still queued when the close completed",
			n->id, n->pending);
	if (n->crash_close) {
		uint64_t len = sim_last_unsynced_write_len(n->sd);
		if (n->tear && len > 0) {
			uint64_t keep = rnd(s, len);
			sim_crash_tear(n->sd, keep);
			trace(s, "n%d down: torn write kept %" PRIu64 "/%" PRIu64 " bytes", n->id, keep, len);
		} else {
			sim_crash(n->sd);
			trace(s, "n%d down", n->id);
		}
	}
}

static void raft_closed(struct raft *r)
{
	closed((struct snode *)((char *)r - offsetof(struct snode, raft)));
}

static void close_node(struct snode *n, bool crash, bool tear)
{
	if (n->state != N_UP)
		return;
	if (crash)
		sim_crash_after(n->sd, 0); /* nothing more reaches the disk */
	n->crash_close = crash;
	n->tear = tear;
	n->state = N_CLOSING;
	n->led_term = 0;
	raft_close(&n->raft, raft_closed);
}

/* ---- Produce ------------------------------------------------------------ */

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct sprod *p = req->data;
	struct sl_sim *s = p->sim;
	(void)result;
	if (status == 0) {
		uint64_t index = req->index;
		s->acked++;
		g_grow(s, index);
		if (s->g_hash[index] != p->hash)
			violate(s, "acked_lost",
				"n%d acknowledged a produce at index %" PRIu64 " (payload %016" PRIx64
				") but the committed entry there is %016" PRIx64,
				p->node, index, p->hash, s->g_hash[index]);
		if (index > s->max_acked_index)
			s->max_acked_index = index;
	} else {
		s->failed_props++;
	}
	free(p);
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	(void)status;
	free(req);
}

int sl_sim_produce(struct sl_sim *s, int id)
{
	struct snode *n = node_of(s, id);
	if (n->state != N_UP || n->fenced || raft_state(&n->raft) != RAFT_LEADER)
		return -1;
	char val[64];
	int vlen = snprintf(val, sizeof(val), "seed%" PRIu64 "-p%" PRIu64, s->cfg.seed, s->produce_seq++);
	sl_batch_builder_reset(&s->bb, NULL);
	if (sl_batch_builder_add(&s->bb, s->now / 1000, NULL, -1, val, vlen, NULL, 0) != SL_OK)
		abort();
	const uint8_t *bytes;
	size_t len;
	if (sl_batch_builder_finish(&s->bb, &bytes, &len) != SL_OK)
		abort();
	struct raft_buffer buf = { .base = raft_malloc(len), .len = len };
	if (buf.base == NULL)
		abort();
	memcpy(buf.base, bytes, len);
	sl_batch_stamp(buf.base, sl_rio_next_offset(&n->io), (int32_t)n->raft.current_term);
	struct sprod *p = xcalloc(1, sizeof(*p));
	p->sim = s;
	p->node = id;
	p->hash = payload_hash(buf.base, buf.len);
	p->req.data = p;
	int rv = raft_apply(&n->raft, &p->req, &buf, 1, apply_cb);
	if (rv != 0) {
		raft_free(buf.base);
		free(p);
		return -1;
	}
	s->proposed++;
	return 0;
}

/* ---- Checker ------------------------------------------------------------ */

static raft_index rlog_count(const struct raft_log *l)
{
	if (l->size == 0)
		return 0;
	return l->back >= l->front ? l->back - l->front : l->size - l->front + l->back;
}

static raft_index rlog_last(const struct raft_log *l)
{
	raft_index n = rlog_count(l);
	return n > 0 ? l->offset + n : l->snapshot.last_index;
}

/* Term of the entry at index in libraft's in-memory log, 0 if unknown. */
static raft_term rlog_term(const struct raft_log *l, raft_index index)
{
	raft_index n = rlog_count(l);
	if (index > l->offset && index <= l->offset + n)
		return l->entries[(l->front + (index - l->offset - 1)) % l->size].term;
	if (index == l->snapshot.last_index)
		return l->snapshot.last_term;
	return 0;
}

static bool installing(const struct raft *r)
{
	return r->snapshot.put.data != NULL && r->last_stored == 0;
}

static void check_leader(struct sl_sim *s, struct snode *n)
{
	struct raft *r = &n->raft;
	raft_term t = r->current_term;
	if (t >= s->nleader_of) {
		size_t cap = s->nleader_of ? s->nleader_of : 64;
		while (cap <= t)
			cap *= 2;
		s->leader_of = xrealloc(s->leader_of, cap * sizeof(*s->leader_of));
		memset(s->leader_of + s->nleader_of, 0, (cap - s->nleader_of) * sizeof(*s->leader_of));
		s->nleader_of = cap;
	}
	if (s->leader_of[t] == 0) {
		s->leader_of[t] = (raft_id)n->id;
	} else if (s->leader_of[t] != (raft_id)n->id) {
		violate(s, "election_safety", "n%d and n%llu are both leader of term %llu", n->id,
			(unsigned long long)s->leader_of[t], (unsigned long long)t);
		return;
	}
	/* Leader append-only. */
	raft_index last = rlog_last(&r->log);
	int64_t next = sl_rio_next_offset(&n->io);
	if (n->led_term != t) {
		n->led_term = t;
		n->led_last = last;
		n->led_next_offset = next;
	} else {
		if (last < n->led_last)
			violate(s, "leader_append_only", "n%d, leader of term %llu: last index %llu -> %llu",
				n->id, (unsigned long long)t, (unsigned long long)n->led_last,
				(unsigned long long)last);
		if (next < n->led_next_offset)
			violate(s, "leader_append_only",
				"n%d, leader of term %llu: partition log next offset %" PRId64 " -> %" PRId64,
				n->id, (unsigned long long)t, n->led_next_offset, next);
		n->led_last = last;
		n->led_next_offset = next;
	}
	/* match_index never points past what a follower holds. */
	if (r->leader_state.progress == NULL || !s->cfg.check_match)
		return;
	for (unsigned i = 0; i < r->configuration.n; i++) {
		int id = (int)r->configuration.servers[i].id;
		if (id == n->id || id < 1 || id > s->cfg.nodes)
			continue;
		struct snode *f = node_of(s, id);
		raft_index m = r->leader_state.progress[i].match_index;
		if (m == 0 || f->state != N_UP || f->fenced || f->raft.current_term != t || installing(&f->raft))
			continue;
		raft_term tl = rlog_term(&r->log, m), tf = rlog_term(&f->raft.log, m);
		/* Followers report only what they hold durably. */
		if (m > sl_rio_last_stored(&f->io))
			violate(s, "match_past_follower",
				"n%d (leader, term %llu) has match_index %llu for n%d, whose durable log ends at "
				"%llu (in memory: %llu)",
				n->id, (unsigned long long)t, (unsigned long long)m, id,
				(unsigned long long)sl_rio_last_stored(&f->io),
				(unsigned long long)rlog_last(&f->raft.log));
		else if (tl != 0 && tf != 0 && tl != tf)
			violate(s, "match_past_follower",
				"n%d (leader, term %llu) has match_index %llu for n%d, but the entry there has "
				"term %llu on the leader and %llu on the follower",
				n->id, (unsigned long long)t, (unsigned long long)m, id, (unsigned long long)tl,
				(unsigned long long)tf);
	}
}

static void check_node(struct sl_sim *s, struct snode *n)
{
	struct raft *r = &n->raft;
	unsigned short st = raft_state(r);
	if (st != n->seen_state || r->current_term != n->seen_term) {
		static const char *names[] = { "unavailable", "follower", "candidate", "leader" };
		trace(s, "n%d %s term=%llu last=%llu stored=%llu commit=%llu applied=%llu", n->id,
		      st < 4 ? names[st] : "?", (unsigned long long)r->current_term,
		      (unsigned long long)rlog_last(&r->log), (unsigned long long)sl_rio_last_stored(&n->io),
		      (unsigned long long)r->commit_index, (unsigned long long)r->last_applied);
		if (st == RAFT_LEADER && (n->seen_state != RAFT_LEADER || r->current_term != n->seen_term)) {
			s->stats.elections++;
			if (s->cfg.barrier_on_elect) {
				struct sbarrier *b = xcalloc(1, sizeof(*b));
				if (raft_barrier(r, &b->req, barrier_cb) != 0)
					free(b);
			}
		}
		n->seen_state = st;
		n->seen_term = r->current_term;
	}
	if (st == RAFT_UNAVAILABLE) {
		/* libraft gave up (an error from the backend reached it): the
		 * owner restarts the group from disk. */
		s->stats.unavailable++;
		trace(s, "n%d is unavailable: %s", n->id, raft_errmsg(r));
		n->fenced = true;
		heap_push(s, ev_new(EV_RESTART, n->id, s->now));
		return;
	}
	fsm_sync(n, r->last_applied);
	if (!installing(r) && r->commit_index > sl_rio_last_stored(&n->io))
		violate(s, "commit_past_durable",
			"n%d (%s, term %llu) commit_index %llu > durable last index %llu", n->id,
			st == RAFT_LEADER ? "leader" : "follower", (unsigned long long)r->current_term,
			(unsigned long long)r->commit_index, (unsigned long long)sl_rio_last_stored(&n->io));
	if (st == RAFT_LEADER)
		check_leader(s, n);
	else
		n->led_term = 0;
}

static void check_all(struct sl_sim *s)
{
	for (int i = 1; i <= s->cfg.nodes && !s->failed; i++) {
		struct snode *n = node_of(s, i);
		if (n->state == N_UP && !n->fenced)
			check_node(s, n);
	}
}

/* ---- The event loop ----------------------------------------------------- */

static void run_event(struct sl_sim *s, struct sev *ev)
{
	struct snode *n = node_of(s, ev->node);
	s->stats.events++;
	switch (ev->kind) {
	case EV_WORK:
		if (ev->inc != n->inc) {
			/* Its backend is gone: calling it would touch freed
			 * memory. */
			violate(s, "backend", "n%d: environment work of a closed backend (incarnation %u) fired",
				n->id, ev->inc);
			break;
		}
		n->pending--;
		if (ev->w->work != NULL)
			ev->w->work(ev->w);
		ev->w->done(ev->w);
		break;
	case EV_DELIVER:
		if (!link_up(s, ev->from, ev->node) || n->fenced) {
			s->stats.dropped++;
			msg_free(&ev->msg);
			break;
		}
		if (s->cfg.trace)
			trace_msg(s, ev);
		if (ev->msg.type == RAFT_IO_INSTALL_SNAPSHOT)
			s->stats.installs++;
		ev->msg.server_id = (raft_id)ev->from;
		ev->msg.server_address = node_of(s, ev->from)->addr;
		sl_rio_deliver(&n->io, &ev->msg); /* libraft owns what it carries */
		break;
	case EV_TICK:
		if (ev->inc != n->inc || n->state != N_UP)
			break;
		if (!n->fenced)
			sl_rio_tick(&n->io);
		schedule_tick(s, n, s->now + (int64_t)s->cfg.heartbeat_ms * 1000);
		break;
	case EV_RESTART:
		if (n->state == N_UP && n->fenced) {
			s->stats.restarts++;
			trace(s, "n%d restarting after a fault", n->id);
			close_node(n, true, false);
			heap_push(s, ev_new(EV_RESTART, n->id, s->now + 10000));
		} else if (n->state == N_CLOSING) {
			heap_push(s, ev_new(EV_RESTART, n->id, s->now + 10000));
		} else if (n->state == N_DOWN) {
			start_node(s, n, false);
		}
		break;
	}
	free(ev);
}

/* Runs every event due at or before `until` (microseconds). */
static int run_until(struct sl_sim *s, int64_t until)
{
	while (!s->failed && s->nheap > 0 && s->heap[0]->at <= until) {
		struct sev *ev = heap_pop(s);
		if (ev->at > s->now)
			s->now = ev->at;
		run_event(s, ev);
		check_all(s);
	}
	if (!s->failed && s->now < until)
		s->now = until;
	return s->failed ? -1 : 0;
}

int sl_sim_run(struct sl_sim *s, int64_t ms)
{
	return run_until(s, s->now + ms * 1000);
}

int sl_sim_run_until(struct sl_sim *s, int64_t ms, sl_sim_pred done, void *arg)
{
	int64_t until = s->now + ms * 1000;
	if (s->failed)
		return -1;
	if (done(s, arg))
		return 1;
	while (!s->failed && s->nheap > 0 && s->heap[0]->at <= until) {
		struct sev *ev = heap_pop(s);
		if (ev->at > s->now)
			s->now = ev->at;
		run_event(s, ev);
		check_all(s);
		if (!s->failed && done(s, arg))
			return 1;
	}
	if (s->failed)
		return -1;
	if (s->now < until)
		s->now = until;
	return 0;
}

int sl_sim_leader(struct sl_sim *s)
{
	int best = 0;
	raft_term bt = 0;
	for (int i = 1; i <= s->cfg.nodes; i++) {
		struct snode *n = node_of(s, i);
		if (n->state == N_UP && !n->fenced && raft_state(&n->raft) == RAFT_LEADER &&
		    n->raft.current_term > bt) {
			best = i;
			bt = n->raft.current_term;
		}
	}
	return best;
}

int sl_sim_run_until_leader(struct sl_sim *s, int64_t ms)
{
	int64_t end = s->now + ms * 1000;
	int id;
	while ((id = sl_sim_leader(s)) == 0 && s->now < end && !s->failed)
		run_until(s, s->now + 10000 < end ? s->now + 10000 : end);
	return id;
}

int sl_sim_run_until_settled(struct sl_sim *s, int64_t ms)
{
	int64_t end = s->now + ms * 1000;
	while (s->acked + s->failed_props < s->proposed && s->now < end && !s->failed)
		run_until(s, s->now + 10000 < end ? s->now + 10000 : end);
	return s->acked + s->failed_props == s->proposed && !s->failed ? 0 : -1;
}

/* ---- Operations --------------------------------------------------------- */

void sl_sim_crash(struct sl_sim *s, int id, bool tear)
{
	if (id < 1 || id > s->cfg.nodes)
		return;
	struct snode *n = node_of(s, id);
	if (n->state != N_UP)
		return;
	s->stats.crashes++;
	trace(s, "n%d crash%s (%s, term %llu)", id, tear ? " with a torn write" : "",
	      raft_state(&n->raft) == RAFT_LEADER ? "leader" : "not leader",
	      (unsigned long long)n->raft.current_term);
	close_node(n, true, tear);
}

void sl_sim_restart(struct sl_sim *s, int id)
{
	if (id < 1 || id > s->cfg.nodes)
		return;
	struct snode *n = node_of(s, id);
	if (n->state == N_UP)
		return;
	s->stats.restarts++;
	heap_push(s, ev_new(EV_RESTART, id, s->now));
}

void sl_sim_partition(struct sl_sim *s, unsigned mask)
{
	char desc[32];
	size_t k = 0;
	for (int i = 1; i <= s->cfg.nodes; i++) {
		node_of(s, i)->group = (mask >> (i - 1)) & 1;
		if (node_of(s, i)->group && k + 4 < sizeof(desc))
			k += (size_t)snprintf(desc + k, sizeof(desc) - k, " n%d", i);
	}
	desc[k] = '\0';
	trace(s, "partition:%s cut off", desc);
}

void sl_sim_heal(struct sl_sim *s)
{
	for (int i = 1; i <= s->cfg.nodes; i++)
		node_of(s, i)->group = 0;
	memset(s->cut, 0, sizeof(s->cut));
	trace(s, "heal");
}

void sl_sim_link(struct sl_sim *s, int a, int b, bool up)
{
	if (a < 1 || a > s->cfg.nodes || b < 1 || b > s->cfg.nodes || a == b)
		return;
	if (s->cut[a - 1][b - 1] == !up)
		return;
	s->cut[a - 1][b - 1] = s->cut[b - 1][a - 1] = !up;
	trace(s, "link n%d-n%d %s", a, b, up ? "up" : "cut");
}

void sl_sim_drop_next(struct sl_sim *s, int from, int to, int type, int count)
{
	if (from < 1 || from > s->cfg.nodes || to < 1 || to > s->cfg.nodes || type < 1 ||
	    type > RAFT_IO_TIMEOUT_NOW)
		return;
	s->drop_next[from - 1][to - 1][type] = count;
	trace(s, "drop the next %d %s n%d -> n%d", count, msg_name(type), from, to);
}

int sl_sim_transfer(struct sl_sim *s, int id, int target, void (*cb)(void *arg, int status), void *arg)
{
	struct snode *n = node_of(s, id);
	if (n->state != N_UP || n->fenced)
		return SL_ENOT_LEADER;
	trace(s, "n%d transfers leadership to n%d", id, target);
	return sl_rio_transfer(&n->io, (raft_id)target, cb, arg);
}

void sl_sim_set_drop(struct sl_sim *s, double p, int64_t ms)
{
	s->drop_p = p;
	s->drop_until = ms < 0 ? -1 : s->now + ms * 1000;
	trace(s, "drop %.2f for %" PRId64 " ms", p, ms);
}

void sl_sim_set_dup(struct sl_sim *s, double p, int64_t ms)
{
	s->dup_p = p;
	s->dup_until = ms < 0 ? -1 : s->now + ms * 1000;
	trace(s, "duplicate %.2f for %" PRId64 " ms", p, ms);
}

void sl_sim_set_disk_latency(struct sl_sim *s, int id, int64_t min_us, int64_t max_us, int64_t ms)
{
	struct snode *n = node_of(s, id);
	n->disk_min = min_us;
	n->disk_max = max_us;
	n->disk_until = ms < 0 ? -1 : s->now + ms * 1000;
	if (n->disk_until == 0)
		n->disk_until = 1;
	trace(s, "n%d disk latency %" PRId64 "-%" PRId64 " us for %" PRId64 " ms", id, min_us, max_us, ms);
}

static void disk_fault(struct sl_sim *s, int id, int64_t after)
{
	struct snode *n = node_of(s, id);
	if (n->state != N_UP)
		return;
	trace(s, "n%d disk fails after %" PRId64 " more operations", id, after);
	sim_fail_after(n->sd, after, EIO);
}

/* ---- Convergence and random schedules ----------------------------------- */

static bool all_caught_up(struct sl_sim *s, uint64_t index)
{
	for (int i = 1; i <= s->cfg.nodes; i++) {
		struct snode *n = node_of(s, i);
		if (n->state != N_UP || n->fenced || n->raft.last_applied < index)
			return false;
	}
	return true;
}

int sl_sim_converge(struct sl_sim *s, int64_t ms)
{
	if (s->failed)
		return -1;
	int64_t end = s->now + ms * 1000;
	sl_sim_heal(s);
	s->drop_until = s->dup_until = 0;
	for (int i = 1; i <= s->cfg.nodes; i++) {
		struct snode *n = node_of(s, i);
		n->disk_until = 0;
		sim_fail_after(n->sd, -1, 0);
		if (n->state != N_UP)
			sl_sim_restart(s, i);
	}
	trace(s, "converge: every node up, healed; waiting for index %" PRIu64, s->max_acked_index);
	while (!all_caught_up(s, s->max_acked_index) && s->now < end && !s->failed)
		run_until(s, s->now + 10000);
	if (s->failed)
		return -1;
	if (!all_caught_up(s, s->max_acked_index)) {
		char buf[300];
		size_t k = 0;
		for (int i = 1; i <= s->cfg.nodes; i++) {
			struct snode *n = node_of(s, i);
			k += (size_t)snprintf(buf + k, sizeof(buf) - k, " n%d:%s/applied %llu", i,
					      n->state == N_UP ? "up" : "down",
					      (unsigned long long)n->raft.last_applied);
			if (k >= sizeof(buf))
				break;
		}
		violate(s, "liveness",
			"after healing, %" PRId64 " ms later not every node applied the last acknowledged index %" PRIu64
			":%s",
			ms, s->max_acked_index, buf);
		return -1;
	}
	/* One more produce must go through everywhere. */
	uint64_t before = s->acked;
	while (s->acked == before && s->now < end && !s->failed) {
		int leader = sl_sim_leader(s);
		uint64_t proposed = s->proposed;
		if (leader != 0)
			sl_sim_produce(s, leader);
		int64_t wait = s->now + 500000;
		while (s->acked == before && (s->proposed == proposed || s->acked + s->failed_props < s->proposed) &&
		       s->now < wait && !s->failed)
			run_until(s, s->now + 10000);
	}
	while (s->acked > before && !all_caught_up(s, s->max_acked_index) && s->now < end && !s->failed)
		run_until(s, s->now + 10000);
	if (s->failed)
		return -1;
	if (s->acked == before || !all_caught_up(s, s->max_acked_index)) {
		violate(s, "liveness",
			"after healing, a new produce was not acknowledged and applied everywhere within %" PRId64
			" ms",
			ms);
		return -1;
	}
	/* That every node applied the same thing, the checker saw at each
	 * apply. */
	return 0;
}

static int random_up(struct sl_sim *s)
{
	int ids[SL_SIM_MAX_NODES], k = 0;
	for (int i = 1; i <= s->cfg.nodes; i++)
		if (node_of(s, i)->state == N_UP)
			ids[k++] = i;
	return k ? ids[rnd(s, (uint64_t)k)] : 0;
}

static int random_down(struct sl_sim *s)
{
	int ids[SL_SIM_MAX_NODES], k = 0;
	for (int i = 1; i <= s->cfg.nodes; i++)
		if (node_of(s, i)->state == N_DOWN)
			ids[k++] = i;
	return k ? ids[rnd(s, (uint64_t)k)] : 0;
}

/* A random leader among the nodes that are up (a client may well talk to
 * a stale one). */
static int random_leader(struct sl_sim *s)
{
	int ids[SL_SIM_MAX_NODES], k = 0;
	for (int i = 1; i <= s->cfg.nodes; i++) {
		struct snode *n = node_of(s, i);
		if (n->state == N_UP && !n->fenced && raft_state(&n->raft) == RAFT_LEADER)
			ids[k++] = i;
	}
	return k ? ids[rnd(s, (uint64_t)k)] : 0;
}

static int count_down(struct sl_sim *s)
{
	int k = 0;
	for (int i = 1; i <= s->cfg.nodes; i++)
		k += node_of(s, i)->state != N_UP;
	return k;
}

/* The schedule mix, in thousandths: mostly produce bursts and time going
 * by, so that the cluster does work between faults. */
enum {
	W_PRODUCE = 400,   /* a burst of 1-12 produces on a leader */
	W_ADVANCE = 300,   /* 10-600 ms */
	W_CRASH = 30,      /* any node, torn write half of the time */
	W_CRASH_LEAD = 30, /* a leader */
	W_RESTART = 80,
	W_PARTITION = 40,  /* a random subset, or the leader (and one more) */
	W_HEAL = 40,
	W_DROP = 25,       /* 10-60 % for 0.1-2 s */
	W_DUP = 15,        /* 10-60 % for 0.1-2 s */
	W_SLOW_DISK = 30,  /* 50 ms - 3 s per operation for 0.5-5 s */
	W_DISK_FAULT = 10, /* the disk fails after 0-40 more operations */
};

int sl_sim_random_schedule(struct sl_sim *s, int steps)
{
	int n = s->cfg.nodes;
	for (int step = 0; step < steps && !s->failed; step++) {
		s->step = step;
		int r = (int)rnd(s, W_PRODUCE + W_ADVANCE + W_CRASH + W_CRASH_LEAD + W_RESTART + W_PARTITION +
					    W_HEAL + W_DROP + W_DUP + W_SLOW_DISK + W_DISK_FAULT);
		if ((r -= W_PRODUCE) < 0) {
			int k = 1 + (int)rnd(s, 12);
			for (int i = 0; i < k; i++) {
				int id = random_leader(s);
				if (id != 0)
					sl_sim_produce(s, id);
			}
			run_until(s, s->now + rnd_range(s, 0, 20000));
		} else if ((r -= W_ADVANCE) < 0) {
			run_until(s, s->now + rnd_range(s, 10000, 600000));
		} else if ((r -= W_CRASH) < 0) {
			/* Keep a majority up most of the time. */
			if (count_down(s) < (n - 1) / 2 || rnd(s, 4) == 0)
				sl_sim_crash(s, random_up(s), rnd(s, 2) == 0);
		} else if ((r -= W_CRASH_LEAD) < 0) {
			int id = random_leader(s);
			if (id != 0)
				sl_sim_crash(s, id, rnd(s, 2) == 0);
		} else if ((r -= W_RESTART) < 0) {
			int id = random_down(s);
			if (id != 0)
				sl_sim_restart(s, id);
		} else if ((r -= W_PARTITION) < 0) {
			unsigned mask;
			int leader = random_leader(s);
			if (leader != 0 && rnd(s, 2) == 0) {
				mask = 1u << (leader - 1);
				if (n == 5 && rnd(s, 2) == 0)
					mask |= 1u << rnd(s, (uint64_t)n);
			} else {
				mask = (unsigned)rnd(s, (1u << n) - 2) + 1; /* a proper subset */
			}
			sl_sim_partition(s, mask);
		} else if ((r -= W_HEAL) < 0) {
			sl_sim_heal(s);
		} else if ((r -= W_DROP) < 0) {
			sl_sim_set_drop(s, 0.1 + 0.5 * rnd_unit(s), rnd_range(s, 100, 2000));
		} else if ((r -= W_DUP) < 0) {
			sl_sim_set_dup(s, 0.1 + 0.5 * rnd_unit(s), rnd_range(s, 100, 2000));
		} else if ((r -= W_SLOW_DISK) < 0) {
			int id = random_up(s);
			if (id != 0) {
				int64_t lo = rnd_range(s, 50000, 1500000);
				sl_sim_set_disk_latency(s, id, lo, lo + rnd_range(s, 0, 1500000), rnd_range(s, 500, 5000));
			}
		} else {
			int id = random_up(s);
			if (id != 0)
				disk_fault(s, id, rnd_range(s, 0, 40));
		}
	}
	s->step = steps;
	return sl_sim_converge(s, 60000);
}

/* ---- Lifecycle ---------------------------------------------------------- */

void sl_sim_config_init(struct sl_sim_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->nodes = 3;
	cfg->seed = 1;
	cfg->disk_min_us = 100;
	cfg->disk_max_us = 2000;
	cfg->net_min_us = 500;
	cfg->net_max_us = 5000;
	cfg->heartbeat_ms = 100;
	cfg->election_ms = 1000;
	cfg->snapshot_threshold = 64;
	cfg->snapshot_trailing = 32;
	cfg->pre_vote = true;
	cfg->barrier_on_elect = false;
	cfg->check_match = true;
	cfg->segment_bytes = 64 * 1024;
}

void sl_sim_config_for_seed(struct sl_sim_config *cfg, uint64_t seed)
{
	sl_sim_config_init(cfg);
	cfg->seed = seed;
	cfg->nodes = seed % 3 == 0 ? 5 : 3;
	cfg->no_fetch = seed % 7 == 0;
	cfg->shared_meta = seed % 2 == 1;
}

struct sl_sim *sl_sim_new(const struct sl_sim_config *cfg)
{
	struct sl_sim *s = xcalloc(1, sizeof(*s));
	s->cfg = *cfg;
	if (s->cfg.nodes < 1 || s->cfg.nodes > SL_SIM_MAX_NODES)
		abort();
	s->rng = mix64(cfg->seed + 0x9e3779b97f4a7c15ull);
	if (s->rng == 0)
		s->rng = 1;
	struct sl_batch_opts o;
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&s->bb, &o);
	for (int i = 1; i <= s->cfg.nodes; i++) {
		struct snode *n = node_of(s, i);
		n->sim = s;
		n->id = i;
		snprintf(n->addr, sizeof(n->addr), "n%d", i);
		n->sd = sim_new();
		sl_vfs *vfs = sim_vfs(n->sd);
		if (vfs->mkdir(vfs, "/sim", 0755) != 0 || vfs->fsync_dir(vfs, "/") != 0)
			abort();
		n->env.node = n;
		n->env.base.data = n;
		n->env.base.submit = env_submit;
		n->env.base.now_ms = env_now;
		n->env.base.random = env_random;
		n->net.data = n;
		n->net.send = net_send;
		n->net.fetch = cfg->no_fetch ? NULL : net_fetch;
		n->fsm.version = 1;
		n->fsm.data = n;
		n->fsm.apply = fsm_apply;
		n->fsm.snapshot = fsm_snapshot;
		n->fsm.restore = fsm_restore;
	}
	trace(s, "seed %" PRIu64 ": %d nodes", cfg->seed, cfg->nodes);
	for (int i = 1; i <= s->cfg.nodes; i++)
		start_node(s, node_of(s, i), true);
	return s;
}

void sl_sim_free(struct sl_sim *s)
{
	/* Close what is up, let closes finish (messages to closing nodes
	 * are dropped), then free whatever is left. */
	bool was_failed = s->failed;
	s->failed = false; /* let the loop run */
	for (int i = 1; i <= s->cfg.nodes; i++) {
		struct snode *n = node_of(s, i);
		if (n->state == N_UP)
			close_node(n, false, false);
	}
	for (int guard = 0; guard < 100000 && s->nheap > 0; guard++) {
		bool closing = false;
		for (int i = 1; i <= s->cfg.nodes; i++)
			closing |= node_of(s, i)->state == N_CLOSING;
		if (!closing)
			break;
		struct sev *ev = heap_pop(s);
		if (ev->at > s->now)
			s->now = ev->at;
		if (ev->kind == EV_RESTART) {
			free(ev);
			continue;
		}
		run_event(s, ev);
	}
	for (int i = 1; i <= s->cfg.nodes; i++)
		if (node_of(s, i)->state != N_DOWN)
			fprintf(stderr, "sim: n%d did not finish closing (seed %" PRIu64 ")\n", i, s->cfg.seed);
	struct sev *ev;
	while ((ev = heap_pop(s)) != NULL) {
		if (ev->kind == EV_DELIVER)
			msg_free(&ev->msg);
		free(ev);
	}
	s->failed = was_failed;
	for (int i = 1; i <= s->cfg.nodes; i++)
		sim_free(node_of(s, i)->sd);
	sl_batch_builder_free(&s->bb);
	free(s->heap);
	free(s->leader_of);
	free(s->g_hash);
	free(s->g_chain);
	free(s->lm);
	free(s);
}

/* ---- Observations ------------------------------------------------------- */

bool sl_sim_is_up(struct sl_sim *s, int id)
{
	return node_of(s, id)->state == N_UP;
}

uint64_t sl_sim_last_applied(struct sl_sim *s, int id)
{
	struct snode *n = node_of(s, id);
	return n->state == N_UP ? n->raft.last_applied : 0;
}

uint64_t sl_sim_commit_index(struct sl_sim *s, int id)
{
	struct snode *n = node_of(s, id);
	return n->state == N_UP ? n->raft.commit_index : 0;
}

bool sl_sim_is_leader(struct sl_sim *s, int id)
{
	struct snode *n = node_of(s, id);
	return n->state == N_UP && !n->fenced && raft_state(&n->raft) == RAFT_LEADER;
}

uint64_t sl_sim_term(struct sl_sim *s, int id)
{
	struct snode *n = node_of(s, id);
	return n->state == N_UP ? n->raft.current_term : 0;
}

uint64_t sl_sim_last_index(struct sl_sim *s, int id)
{
	struct snode *n = node_of(s, id);
	return n->state == N_UP ? rlog_last(&n->raft.log) : 0;
}

uint64_t sl_sim_last_stored(struct sl_sim *s, int id)
{
	struct snode *n = node_of(s, id);
	return n->state == N_UP ? sl_rio_last_stored(&n->io) : 0;
}

uint64_t sl_sim_entry_term(struct sl_sim *s, int id, uint64_t index)
{
	struct snode *n = node_of(s, id);
	return n->state == N_UP ? rlog_term(&n->raft.log, index) : 0;
}

uint64_t sl_sim_match_index(struct sl_sim *s, int leader, int follower)
{
	struct snode *n = node_of(s, leader);
	if (!sl_sim_is_leader(s, leader) || n->raft.leader_state.progress == NULL)
		return 0;
	for (unsigned i = 0; i < n->raft.configuration.n; i++)
		if (n->raft.configuration.servers[i].id == (raft_id)follower)
			return n->raft.leader_state.progress[i].match_index;
	return 0;
}

uint64_t sl_sim_chain(struct sl_sim *s, int id, uint64_t *applied)
{
	struct snode *n = node_of(s, id);
	if (applied != NULL)
		*applied = n->applied;
	return n->chain;
}

uint64_t sl_sim_proposed(struct sl_sim *s)
{
	return s->proposed;
}

uint64_t sl_sim_acked(struct sl_sim *s)
{
	return s->acked;
}

uint64_t sl_sim_max_acked_index(struct sl_sim *s)
{
	return s->max_acked_index;
}

int64_t sl_sim_now_ms(struct sl_sim *s)
{
	return s->now / 1000;
}

void sl_sim_stats(struct sl_sim *s, struct sl_sim_stats *out)
{
	*out = s->stats;
}

const char *sl_sim_violation(struct sl_sim *s)
{
	return s->failed ? s->violation : NULL;
}
