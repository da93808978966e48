/* The group registry. See rreg.h. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH, FTW_PHYS */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "rmeta.h"
#include "rreg.h"
#include "uvenv.h"

#define RESTART_MIN_MS 1000
#define RESTART_MAX_MS 30000

enum {
	G_RUNNING,   /* libraft runs */
	G_FAULTED,   /* fenced: closing, to be started again */
	G_WAITING,   /* closed after a fault, the restart timer runs */
	G_STOPPING,  /* closing for good */
	G_SEEDING,   /* its directory is being filled by sl_rreg_start_from */
};

/* A seed in progress (sl_rreg_start_from). */
struct seed {
	uv_work_t req;
	struct group *g;
	uint64_t voters[SL_RREG_MAX_REPLICAS];
	unsigned n;
	uint64_t from;
	uint32_t src_group;
	int64_t end;
	int rv;
	char errmsg[SL_ERRMSG_SIZE];
	sl_rreg_done_fn unused;
	void (*cb)(void *arg, uint32_t group, int status);
	void *arg;
};

struct group {
	uint32_t id;
	int state;
	struct sl_rreg *reg;
	struct raft raft;
	struct raft_io io;
	struct raft_fsm fsm;
	struct group *bnext, *bprev; /* the tick bucket (while running) */
	struct group *wnext;         /* the restart list (while waiting) */
	int64_t restart_at;          /* ms (uv_now) */
	unsigned restart_ms, restarts;
	sl_rreg_done_fn done;
	void *done_arg;
	bool remove_dir;
	/* A transfer under way. */
	void (*xfer_cb)(void *arg, uint32_t group, int status);
	void *xfer_arg;
	bool xfer_handoff;           /* part of sl_rreg_handoff */
	bool stop_seeded;            /* stopped while seeding: free when done */
};

struct sl_rreg {
	uv_loop_t *loop;
	struct sl_rreg_config cfg;
	char *dir;
	char idstr[24];
	struct sl_pnet *net;
	struct sl_uvenv env;
	struct sl_rmeta *meta;       /* every group's term and vote */
	bool meta_closing;
	uv_timer_t ticker;
	uv_timer_t later;            /* runs the handoff's callback after the call */
	unsigned bucket;
	struct group *waiting;       /* fenced groups waiting for their restart */
	struct group *buckets[SL_RREG_BUCKETS];
	/* Open addressing, linear probing, by group id. */
	struct group **table;
	size_t cap, n;
	uint64_t faults, restarts;
	/* Handoff. */
	bool handing_off;
	unsigned ho_pending, ho_moved, ho_failed;
	int64_t ho_deadline;         /* loop ms: the handoff ends by then */
	void (*ho_cb)(void *arg, unsigned moved, unsigned failed);
	void *ho_arg;
	/* Close. */
	bool closing;
	unsigned handles;            /* our handles not yet closed */
	void (*close_cb)(void *arg);
	void *close_arg;
};

static bool on_recv(void *arg, uint64_t from, uint32_t group, struct raft_message *msg);
static void on_env_closed(uv_handle_t *h);
static sl_log *log_of(void *arg, uint32_t group);

#define LOG(reg, level, ...) sl_rlogf((reg)->cfg.logf, (reg)->cfg.log_arg, level, __VA_ARGS__)

/* ---- The table ------------------------------------------------------ */

static size_t slot_of(uint32_t id, size_t cap)
{
	return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static struct group *find(const struct sl_rreg *reg, uint32_t id)
{
	if (reg->cap == 0)
		return NULL;
	for (size_t i = slot_of(id, reg->cap);; i = (i + 1) & (reg->cap - 1)) {
		struct group *g = reg->table[i];
		if (g == NULL || g->id == id)
			return g;
	}
}

static bool table_put(struct sl_rreg *reg, struct group *g)
{
	if ((reg->n + 1) * 2 > reg->cap) {
		size_t ncap = reg->cap ? reg->cap * 2 : 64;
		struct group **t = calloc(ncap, sizeof(*t));
		if (t == NULL)
			return false;
		for (size_t i = 0; i < reg->cap; i++) {
			struct group *o = reg->table[i];
			if (o == NULL)
				continue;
			size_t j = slot_of(o->id, ncap);
			while (t[j] != NULL)
				j = (j + 1) & (ncap - 1);
			t[j] = o;
		}
		free(reg->table);
		reg->table = t;
		reg->cap = ncap;
	}
	size_t i = slot_of(g->id, reg->cap);
	while (reg->table[i] != NULL)
		i = (i + 1) & (reg->cap - 1);
	reg->table[i] = g;
	reg->n++;
	return true;
}

/* Removes g, shifting later entries of its probe run back. */
static void table_del(struct sl_rreg *reg, struct group *g)
{
	size_t mask = reg->cap - 1, i = slot_of(g->id, reg->cap);
	while (reg->table[i] != g)
		i = (i + 1) & mask;
	reg->table[i] = NULL;
	for (size_t j = (i + 1) & mask; reg->table[j] != NULL; j = (j + 1) & mask) {
		size_t home = slot_of(reg->table[j]->id, reg->cap);
		/* Move j back to i unless its home lies in (i, j]. */
		bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!stays) {
			reg->table[i] = reg->table[j];
			reg->table[j] = NULL;
			i = j;
		}
	}
	reg->n--;
}

/* ---- Buckets -------------------------------------------------------- */

static void bucket_add(struct sl_rreg *reg, struct group *g)
{
	struct group **head = &reg->buckets[g->id % SL_RREG_BUCKETS];
	g->bprev = NULL;
	g->bnext = *head;
	if (*head != NULL)
		(*head)->bprev = g;
	*head = g;
}

static void bucket_del(struct sl_rreg *reg, struct group *g)
{
	if (g->bprev != NULL)
		g->bprev->bnext = g->bnext;
	else
		reg->buckets[g->id % SL_RREG_BUCKETS] = g->bnext;
	if (g->bnext != NULL)
		g->bnext->bprev = g->bprev;
	g->bnext = g->bprev = NULL;
}

/* ---- The state machine ---------------------------------------------- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct group *g = fsm->data;
	struct sl_rreg *reg = g->reg;
	*result = NULL;
	if (reg->cfg.apply != NULL)
		reg->cfg.apply(reg->cfg.apply_arg, g->id, raft_last_applied(&g->raft) + 1, buf);
	return 0;
}

/* The log is the state: the manifest the backend wraps around these bytes
 * says everything, so the state machine's own part is empty. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
	struct group *g = fsm->data;
	struct sl_rreg *reg = g->reg;
	void *state = NULL;
	size_t len = 0;
	if (reg->cfg.snapshot != NULL &&
	    reg->cfg.snapshot(reg->cfg.apply_arg, g->id, &state, &len) != SL_OK)
		return RAFT_NOMEM;
	*bufs = raft_malloc(sizeof(**bufs));
	void *copy = raft_malloc(len ? len : 1);
	if (*bufs == NULL || copy == NULL) {
		raft_free(*bufs);
		raft_free(copy);
		free(state);
		return RAFT_NOMEM;
	}
	if (len > 0)
		memcpy(copy, state, len);
	free(state);
	(*bufs)[0] = (struct raft_buffer){ .base = copy, .len = len };
	*n = 1;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct group *g = fsm->data;
	struct sl_rreg *reg = g->reg;
	int rv = 0;
	if (reg->cfg.restore != NULL) {
		const void *state;
		size_t len;
		if (sl_rio_snapshot_payload(buf->base, buf->len, &state, &len) != SL_OK ||
		    reg->cfg.restore(reg->cfg.apply_arg, g->id, state, len) != SL_OK)
			rv = RAFT_CORRUPT;
	}
	raft_free(buf->base);
	return rv;
}

/* ---- Groups --------------------------------------------------------- */

static void group_dir(const struct sl_rreg *reg, uint32_t id, char *out, size_t len)
{
	snprintf(out, len, "%s/g%u", reg->dir, id);
}

static void on_fault(void *arg, uint32_t group, int err, const char *why);

/* Sets up and starts libraft on g's directory, bootstrapping it with
 * voters when it holds nothing yet. Returns SL_OK; or an error, and then
 * *closing tells whether libraft is closing (on_close runs later) or
 * nothing is left to close. */
static int group_open(struct group *g, const uint64_t *voters, unsigned n, bool campaign,
		      char *errmsg, raft_close_cb on_close, bool *closing)
{
	struct sl_rreg *reg = g->reg;
	char dir[4096];
	*closing = false;
	group_dir(reg, g->id, dir, sizeof(dir));
	struct sl_rio_config rc = { .dir = dir, .group = g->id, .meta = reg->meta,
				    .log = reg->cfg.log, .max_append_bytes = reg->cfg.max_append_bytes,
				    .stored = reg->cfg.stored, .stored_arg = reg->cfg.apply_arg };
	int rv = sl_rio_init(&g->io, &rc, NULL, &reg->env.base, sl_pnet_rnet(reg->net), on_fault, g);
	if (rv != SL_OK) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: %s", g->id, sl_strerror(rv));
		return rv;
	}
	g->fsm = (struct raft_fsm){ .version = 1, .data = g, .apply = fsm_apply,
				    .snapshot = fsm_snapshot, .restore = fsm_restore };
	rv = raft_init(&g->raft, &g->io, &g->fsm, reg->cfg.node_id, reg->idstr);
	if (rv != 0) {
		/* raft_init closed the backend itself on failure. */
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: %s", g->id, raft_strerror(rv));
		return SL_ENOMEM;
	}
	sl_rio_tune(&g->raft, reg->cfg.heartbeat_ms, reg->cfg.election_ms);
	if (reg->cfg.snapshot_threshold != 0)
		raft_set_snapshot_threshold(&g->raft, reg->cfg.snapshot_threshold);
	if (reg->cfg.snapshot_trailing != 0)
		raft_set_snapshot_trailing(&g->raft, reg->cfg.snapshot_trailing);
	if (n > 0) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		for (unsigned i = 0; i < n && rv == 0; i++) {
			char addr[24];
			snprintf(addr, sizeof(addr), "%llu", (unsigned long long)voters[i]);
			rv = raft_configuration_add(&conf, voters[i], addr, RAFT_VOTER);
		}
		if (rv == 0)
			rv = raft_bootstrap(&g->raft, &conf);
		raft_configuration_close(&conf);
		if (rv == RAFT_CANTBOOTSTRAP)
			rv = 0; /* it has state: start from it */
		if (rv == 0 && campaign)
			sl_rio_hurry(&g->io, 3);
	}
	if (rv == 0)
		rv = raft_start(&g->raft);
	if (rv != 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: %s", g->id, raft_errmsg(&g->raft));
		*closing = true;
		raft_close(&g->raft, on_close);
		return SL_EIO;
	}
	return SL_OK;
}

static void maybe_closed(struct sl_rreg *reg);

static void group_free(struct group *g)
{
	struct sl_rreg *reg = g->reg;
	table_del(reg, g);
	if (g->remove_dir) {
		char dir[4096];
		group_dir(reg, g->id, dir, sizeof(dir));
		int rv = sl_rreg_rmtree(dir);
		if (rv != 0)
			LOG(reg, SL_RLOG_ERROR, "group %u: removing %s: %s", g->id, dir, strerror(rv));
		/* Its term and vote go too (a later group with this id keeps
		 * them if this is lost: harmless, see rio's bootstrap). */
		uint64_t seq;
		if (reg->meta != NULL && sl_rmeta_put(reg->meta, g->id, 0, 0, &seq) != SL_OK)
			LOG(reg, SL_RLOG_WARN, "group %u: no memory to forget its term", g->id);
	}
	if (g->done != NULL)
		g->done(g->done_arg, g->id);
	free(g);
	maybe_closed(reg);
}

static void wait_restart(struct group *g)
{
	struct sl_rreg *reg = g->reg;
	g->state = G_WAITING;
	g->restart_ms = g->restart_ms == 0 ? RESTART_MIN_MS : g->restart_ms * 2;
	if (g->restart_ms > RESTART_MAX_MS)
		g->restart_ms = RESTART_MAX_MS;
	g->restart_at = (int64_t)uv_now(reg->loop) + g->restart_ms;
	g->wnext = reg->waiting;
	reg->waiting = g;
}

static void on_closed_faulted(struct raft *r)
{
	struct group *g = (struct group *)((char *)r - offsetof(struct group, raft));
	if (g->state == G_STOPPING)
		group_free(g);
	else
		wait_restart(g);
}

static void on_closed_stopping(struct raft *r)
{
	group_free((struct group *)((char *)r - offsetof(struct group, raft)));
}

static void restart(struct group *g)
{
	struct sl_rreg *reg = g->reg;
	char errmsg[SL_ERRMSG_SIZE];
	bool closing;
	g->restarts++;
	reg->restarts++;
	g->state = G_FAULTED;
	if (group_open(g, NULL, 0, false, errmsg, on_closed_faulted, &closing) != SL_OK) {
		LOG(reg, SL_RLOG_ERROR, "restart failed: %s", errmsg);
		if (!closing)
			wait_restart(g);
		return;
	}
	LOG(reg, SL_RLOG_INFO, "group %u restarted from disk (restart %u)", g->id, g->restarts);
	g->state = G_RUNNING;
	bucket_add(reg, g);
}

static void on_fault(void *arg, uint32_t group, int err, const char *why)
{
	struct group *g = arg;
	struct sl_rreg *reg = g->reg;
	reg->faults++;
	LOG(reg, SL_RLOG_ERROR, "group %u fenced after a disk error (%s): %s; restarting it", group,
	    sl_strerror(err), why);
	if (g->state != G_RUNNING)
		return;
	g->state = G_FAULTED;
	bucket_del(reg, g);
	raft_close(&g->raft, on_closed_faulted);
}

/* ---- The timer ------------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
	struct sl_rreg *reg = t->data;
	reg->bucket = (reg->bucket + 1) % SL_RREG_BUCKETS;
	for (struct group *g = reg->buckets[reg->bucket], *next; g != NULL; g = next) {
		next = g->bnext; /* a tick may fence (and unlink) g */
		if (reg->handing_off && raft_state(&g->raft) != RAFT_LEADER) {
			/* Leaving: do not campaign, but a transfer whose leader
			 * stepped down (no quorum) still reaches its deadline. */
			sl_rio_transfer_poll(&g->io);
			continue;
		}
		sl_rio_tick(&g->io);
	}
	if (reg->bucket != 0 || reg->waiting == NULL || reg->closing)
		return;
	int64_t now = (int64_t)uv_now(reg->loop);
	struct group **pp = &reg->waiting;
	while (*pp != NULL) {
		struct group *g = *pp;
		if (g->restart_at > now) {
			pp = &g->wnext;
			continue;
		}
		*pp = g->wnext;
		restart(g);
	}
}

/* ---- Public --------------------------------------------------------- */

int sl_rreg_init(struct sl_rreg **out, uv_loop_t *loop, const struct sl_rreg_config *cfg,
		 struct sl_pnet *net)
{
	struct sl_rreg *reg = calloc(1, sizeof(*reg));
	if (reg == NULL)
		return SL_ENOMEM;
	reg->dir = strdup(cfg->dir);
	if (reg->dir == NULL || sl_uvenv_init(&reg->env, loop) != 0) {
		free(reg->dir);
		free(reg);
		return SL_ENOMEM;
	}
	reg->loop = loop;
	reg->cfg = *cfg;
	if (!cfg->meta_per_group) {
		char path[4096], errmsg[SL_ERRMSG_SIZE];
		snprintf(path, sizeof(path), "%s/meta.log", reg->dir);
		int rv = mkdir(reg->dir, 0755) == 0 || errno == EEXIST ? SL_OK : SL_ESTORAGE;
		if (rv != SL_OK)
			snprintf(errmsg, sizeof(errmsg), "%s: mkdir: %s", reg->dir, strerror(errno));
		else
			rv = sl_rmeta_open(path, NULL, &reg->env.base, &reg->meta, errmsg);
		if (rv != SL_OK) {
			LOG(reg, SL_RLOG_ERROR, "term/vote store: %s", errmsg);
			reg->handles = 1;
			sl_uvenv_close(&reg->env, on_env_closed);
			return rv;
		}
	}
	reg->cfg.dir = reg->dir;
	if (reg->cfg.heartbeat_ms == 0)
		reg->cfg.heartbeat_ms = 200;
	if (reg->cfg.election_ms == 0)
		reg->cfg.election_ms = 1000;
	if (reg->cfg.isr_max_lag == 0)
		reg->cfg.isr_max_lag = 64;
	reg->net = net;
	snprintf(reg->idstr, sizeof(reg->idstr), "%llu", (unsigned long long)cfg->node_id);
	uv_timer_init(loop, &reg->ticker);
	uv_timer_init(loop, &reg->later);
	reg->ticker.data = reg->later.data = reg;
	sl_pnet_set_handlers(net, on_recv, log_of, reg);
	unsigned every = reg->cfg.heartbeat_ms / SL_RREG_BUCKETS;
	uv_timer_start(&reg->ticker, on_tick, every ? every : 1, every ? every : 1);
	*out = reg;
	return SL_OK;
}

static int check_new(struct sl_rreg *reg, uint32_t group, const uint64_t *voters, unsigned n,
		     char *errmsg)
{
	if (reg->closing || n > SL_RREG_MAX_REPLICAS) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: %s", group,
			 reg->closing ? "the registry is closing" : "too many replicas");
		return SL_EINVALID_ARGUMENT;
	}
	bool self = n == 0;
	for (unsigned i = 0; i < n; i++)
		self = self || voters[i] == reg->cfg.node_id;
	if (!self) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: node %llu is not among its voters", group,
			 (unsigned long long)reg->cfg.node_id);
		return SL_EINVALID_ARGUMENT;
	}
	struct group *g = find(reg, group);
	if (g != NULL) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: %s", group,
			 g->state == G_STOPPING ? "still stopping" : "already running");
		return g->state == G_STOPPING ? SL_EBUSY : SL_EEXISTS;
	}
	return SL_OK;
}

static struct group *group_new(struct sl_rreg *reg, uint32_t group, char *errmsg)
{
	struct group *g = calloc(1, sizeof(*g));
	if (g != NULL) {
		g->id = group;
		g->reg = reg;
	}
	if (g == NULL || !table_put(reg, g)) {
		free(g);
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: out of memory", group);
		return NULL;
	}
	return g;
}

int sl_rreg_start(struct sl_rreg *reg, uint32_t group, const uint64_t *voters, unsigned n,
		  char *errmsg)
{
	return sl_rreg_start_campaign(reg, group, voters, n, false, errmsg);
}

int sl_rreg_start_campaign(struct sl_rreg *reg, uint32_t group, const uint64_t *voters,
			   unsigned n, bool campaign, char *errmsg)
{
	int rv = check_new(reg, group, voters, n, errmsg);
	if (rv != SL_OK)
		return rv;
	struct group *g = group_new(reg, group, errmsg);
	if (g == NULL)
		return SL_ENOMEM;
	bool closing;
	rv = group_open(g, voters, n, campaign, errmsg, on_closed_stopping, &closing);
	if (rv != SL_OK) {
		g->state = G_STOPPING;
		if (!closing) {
			table_del(reg, g);
			free(g);
		}
		return rv;
	}
	g->state = G_RUNNING;
	bucket_add(reg, g);
	return SL_OK;
}

/* ---- Creating on the thread pool ------------------------------------- */

struct create {
	uv_work_t req;
	char dir[4096];
	struct sl_log_config log;
	uint64_t voters[SL_RREG_MAX_REPLICAS];
	unsigned n;
	uint32_t group;
	int rv;
	char errmsg[SL_ERRMSG_SIZE];
	sl_rreg_created_fn cb;
	void *arg;
};

static void create_work(uv_work_t *req)
{
	struct create *cr = req->data;
	cr->rv = sl_rio_create(cr->dir, &cr->log, NULL, cr->voters, cr->n, cr->errmsg);
}

static void create_done(uv_work_t *req, int status)
{
	struct create *cr = req->data;
	if (status == UV_ECANCELED) {
		cr->rv = SL_ECANCELED;
		snprintf(cr->errmsg, sizeof(cr->errmsg), "canceled");
	}
	cr->cb(cr->arg, cr->group, cr->rv, cr->errmsg);
	free(cr);
}

int sl_rreg_create(struct sl_rreg *reg, uint32_t group, const uint64_t *voters, unsigned n,
		   sl_rreg_created_fn cb, void *arg, char *errmsg)
{
	int rv = check_new(reg, group, voters, n, errmsg);
	if (rv != SL_OK)
		return rv;
	if (n == 0 || reg->meta == NULL) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: %s", group,
			 n == 0 ? "no voters" : "needs the node's shared term/vote store");
		return SL_EINVALID_ARGUMENT;
	}
	struct create *cr = calloc(1, sizeof(*cr));
	if (cr == NULL) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "out of memory");
		return SL_ENOMEM;
	}
	group_dir(reg, group, cr->dir, sizeof(cr->dir));
	cr->log = reg->cfg.log;
	memcpy(cr->voters, voters, n * sizeof(*voters));
	cr->n = n;
	cr->group = group;
	cr->cb = cb;
	cr->arg = arg;
	cr->req.data = cr;
	if (uv_queue_work(reg->loop, &cr->req, create_work, create_done) != 0) {
		free(cr);
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: the thread pool refused the work", group);
		return SL_ENOMEM;
	}
	return SL_OK;
}

/* ---- Seeding -------------------------------------------------------- */

static void seed_work(uv_work_t *req)
{
	struct seed *sd = req->data;
	struct sl_rreg *reg = sd->g->reg;
	char dir[4096];
	group_dir(reg, sd->g->id, dir, sizeof(dir));
	sd->rv = sl_rio_seed(dir, &reg->cfg.log, NULL, sl_pnet_rnet(reg->net), sd->src_group,
			     sd->from, sd->end, sd->errmsg);
}

static void seed_done(uv_work_t *req, int status)
{
	struct seed *sd = req->data;
	struct group *g = sd->g;
	struct sl_rreg *reg = g->reg;
	uint32_t id = g->id;
	int rv = status == 0 ? sd->rv : SL_ECANCELED;
	bool closing = false;
	if (g->stop_seeded)
		rv = SL_ECANCELED;
	else if (rv == SL_OK)
		rv = group_open(g, sd->voters, sd->n, false, sd->errmsg, on_closed_stopping, &closing);
	if (rv == SL_OK) {
		g->state = G_RUNNING;
		bucket_add(reg, g);
		LOG(reg, SL_RLOG_INFO, "group %u started at offset %lld on group %u's data from "
		    "node %llu", id, (long long)sd->end, sd->src_group, (unsigned long long)sd->from);
	} else {
		LOG(reg, SL_RLOG_ERROR, "group %u: starting from group %u on node %llu failed: %s",
		    id, sd->src_group, (unsigned long long)sd->from,
		    sd->errmsg[0] ? sd->errmsg : sl_strerror(rv));
		g->state = G_STOPPING;
		if (!closing)
			group_free(g); /* runs a stop's callback, if any */
	}
	if (sd->cb != NULL)
		sd->cb(sd->arg, id, rv);
	free(sd);
}

int sl_rreg_start_from(struct sl_rreg *reg, uint32_t group, const uint64_t *voters, unsigned n,
		       uint64_t from, uint32_t src_group, int64_t end,
		       void (*cb)(void *arg, uint32_t group, int status), void *arg, char *errmsg)
{
	int rv = check_new(reg, group, voters, n, errmsg);
	if (rv != SL_OK)
		return rv;
	if (n == 0 || end < 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: needs its voters and an end offset",
			 group);
		return SL_EINVALID_ARGUMENT;
	}
	struct seed *sd = calloc(1, sizeof(*sd));
	struct group *g = sd != NULL ? group_new(reg, group, errmsg) : NULL;
	if (g == NULL) {
		free(sd);
		snprintf(errmsg, SL_ERRMSG_SIZE, "group %u: out of memory", group);
		return SL_ENOMEM;
	}
	g->state = G_SEEDING;
	*sd = (struct seed){ .g = g, .n = n, .from = from, .src_group = src_group, .end = end,
			     .cb = cb, .arg = arg };
	memcpy(sd->voters, voters, n * sizeof(*voters));
	sd->req.data = sd;
	uv_queue_work(reg->loop, &sd->req, seed_work, seed_done);
	return SL_OK;
}

static int stop(struct sl_rreg *reg, uint32_t group, sl_rreg_done_fn cb, void *arg, bool remove)
{
	struct group *g = find(reg, group);
	if (g == NULL || g->state == G_STOPPING)
		return SL_ENOT_FOUND;
	g->done = cb;
	g->done_arg = arg;
	g->remove_dir = remove;
	int was = g->state;
	g->state = G_STOPPING;
	if (was == G_SEEDING) {
		g->stop_seeded = true; /* freed once the copy returns */
	} else if (was == G_RUNNING) {
		bucket_del(reg, g);
		raft_close(&g->raft, on_closed_stopping);
	} else if (was == G_WAITING) {
		struct group **pp = &reg->waiting;
		while (*pp != g)
			pp = &(*pp)->wnext;
		*pp = g->wnext;
		group_free(g);
	} /* G_FAULTED: its close callback frees it */
	return SL_OK;
}

int sl_rreg_stop(struct sl_rreg *reg, uint32_t group, sl_rreg_done_fn cb, void *arg)
{
	return stop(reg, group, cb, arg, false);
}

int sl_rreg_delete(struct sl_rreg *reg, uint32_t group, sl_rreg_done_fn cb, void *arg)
{
	return stop(reg, group, cb, arg, true);
}

int sl_rreg_remove(struct sl_rreg *reg, uint32_t group)
{
	if (find(reg, group) != NULL)
		return SL_EBUSY;
	char dir[4096];
	group_dir(reg, group, dir, sizeof(dir));
	int rv = sl_rreg_rmtree(dir);
	if (rv != 0) {
		LOG(reg, SL_RLOG_ERROR, "group %u: removing %s: %s", group, dir, strerror(rv));
		return SL_EIO;
	}
	uint64_t seq;
	if (reg->meta != NULL && sl_rmeta_put(reg->meta, group, 0, 0, &seq) != SL_OK)
		return SL_ENOMEM;
	return SL_OK;
}

static struct group *running(const struct sl_rreg *reg, uint32_t group)
{
	struct group *g = find(reg, group);
	return g != NULL && g->state == G_RUNNING ? g : NULL;
}

sl_log *sl_rreg_log(struct sl_rreg *reg, uint32_t group)
{
	struct group *g = running(reg, group);
	return g != NULL ? sl_rio_log(&g->io) : NULL;
}

static sl_log *log_of(void *arg, uint32_t group)
{
	return sl_rreg_log(arg, group);
}

struct raft *sl_rreg_raft(struct sl_rreg *reg, uint32_t group)
{
	struct group *g = running(reg, group);
	return g != NULL ? &g->raft : NULL;
}

struct raft_io *sl_rreg_io(struct sl_rreg *reg, uint32_t group)
{
	struct group *g = running(reg, group);
	return g != NULL ? &g->io : NULL;
}

static bool on_recv(void *arg, uint64_t from, uint32_t group, struct raft_message *msg)
{
	(void)from;
	struct group *g = running(arg, group);
	if (g == NULL)
		return false;
	sl_rio_deliver(&g->io, msg);
	return true;
}

static int role_of(struct group *g)
{
	if (g->state != G_RUNNING)
		return SL_RROLE_STOPPED;
	switch (raft_state(&g->raft)) {
	case RAFT_LEADER:
		return SL_RROLE_LEADER;
	case RAFT_CANDIDATE:
		return SL_RROLE_CANDIDATE;
	case RAFT_FOLLOWER:
		return SL_RROLE_FOLLOWER;
	default:
		return SL_RROLE_STOPPED;
	}
}

int sl_rreg_state(struct sl_rreg *reg, uint32_t group, struct sl_rgroup_state *st)
{
	struct group *g = find(reg, group);
	if (g == NULL)
		return SL_ENOT_FOUND;
	memset(st, 0, sizeof(*st));
	st->group = group;
	st->restarts = g->restarts;
	st->role = role_of(g);
	if (st->role == SL_RROLE_STOPPED)
		return SL_OK;
	struct raft *r = &g->raft;
	const char *addr;
	raft_id leader;
	raft_leader(r, &leader, &addr);
	st->leader = leader;
	st->term = r->current_term;
	st->commit = r->commit_index;
	st->durable = sl_rio_last_stored(&g->io);
	st->last = raft_last_index(r);
	st->next_offset = sl_rio_next_offset(&g->io);
	st->ready = st->role == SL_RROLE_LEADER && sl_rio_leader_ready(&g->io);
	for (unsigned i = 0; i < r->configuration.n && i < SL_RREG_MAX_REPLICAS; i++) {
		const struct raft_server *s = &r->configuration.servers[i];
		st->replicas[i].node = s->id;
		if (st->role != SL_RROLE_LEADER)
			continue;
		raft_index match = s->id == reg->cfg.node_id ? st->durable
							      : r->leader_state.progress[i].match_index;
		st->replicas[i].match = match;
		st->replicas[i].lag = st->last > match ? st->last - match : 0;
		st->replicas[i].in_sync = st->replicas[i].lag <= reg->cfg.isr_max_lag;
	}
	st->n_replicas = r->configuration.n < SL_RREG_MAX_REPLICAS ? r->configuration.n
								  : SL_RREG_MAX_REPLICAS;
	return SL_OK;
}

void sl_rreg_get_stats(struct sl_rreg *reg, struct sl_rreg_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->faults = reg->faults;
	st->restarts = reg->restarts;
	if (reg->meta != NULL) {
		struct sl_rmeta_stats ms;
		sl_rmeta_get_stats(reg->meta, &ms);
		st->meta_flushes = ms.flushes + ms.rewrites;
		st->meta_records = ms.records;
	}
	for (size_t i = 0; i < reg->cap; i++) {
		struct group *g = reg->table[i];
		if (g == NULL)
			continue;
		st->groups++;
		switch (role_of(g)) {
		case SL_RROLE_LEADER:
			st->leaders++;
			st->ready += sl_rio_leader_ready(&g->io);
			break;
		case SL_RROLE_FOLLOWER:
			st->followers++;
			break;
		case SL_RROLE_CANDIDATE:
			st->candidates++;
			break;
		default:
			st->stopped++;
		}
	}
}

void sl_rreg_foreach(struct sl_rreg *reg, void (*fn)(void *arg, uint32_t group), void *arg)
{
	for (size_t i = 0; i < reg->cap; i++)
		if (reg->table[i] != NULL && reg->table[i]->state == G_RUNNING)
			fn(arg, reg->table[i]->id);
}

/* ---- Transfer and handoff ------------------------------------------- */

static void on_later(uv_timer_t *t);

static void handoff_check(struct sl_rreg *reg)
{
	if (reg->ho_cb == NULL || reg->ho_pending > 0)
		return;
	uv_timer_start(&reg->later, on_later, 0, 0);
}

/* Runs the handoff's callback once every transfer ended, or at its
 * deadline: transfers to peers that are stopping too (a whole cluster
 * shutting down) would otherwise hold the node for ten election
 * timeouts; those still under way count as failed (they end with the
 * groups' close). */
static void on_later(uv_timer_t *t)
{
	struct sl_rreg *reg = t->data;
	if (reg->ho_cb == NULL)
		return;
	if (reg->ho_pending > 0) {
		if ((int64_t)uv_now(reg->loop) < reg->ho_deadline)
			return;
		LOG(reg, SL_RLOG_WARN, "handoff: %u transfers still under way at the deadline",
		    reg->ho_pending);
		reg->ho_failed += reg->ho_pending;
		reg->ho_pending = 0;
	}
	void (*cb)(void *, unsigned, unsigned) = reg->ho_cb;
	reg->ho_cb = NULL;
	reg->handing_off = false; /* followers campaign again */
	cb(reg->ho_arg, reg->ho_moved, reg->ho_failed);
}

static void on_transferred(void *arg, int status)
{
	struct group *g = arg;
	struct sl_rreg *reg = g->reg;
	void (*cb)(void *, uint32_t, int) = g->xfer_cb;
	g->xfer_cb = NULL;
	if (g->xfer_handoff) {
		g->xfer_handoff = false;
		if (reg->ho_cb == NULL) /* past the handoff's deadline */
			goto done;
		reg->ho_pending--;
		if (status == SL_OK)
			reg->ho_moved++;
		else {
			reg->ho_failed++;
			LOG(reg, SL_RLOG_WARN, "group %u: handing off leadership failed: %s", g->id,
			    sl_strerror(status));
		}
		handoff_check(reg);
	}
done:
	if (cb != NULL)
		cb(g->xfer_arg, g->id, status);
}

/* The other voter with the highest match index. */
static raft_id best_target(struct sl_rreg *reg, struct group *g)
{
	struct raft *r = &g->raft;
	raft_id best = 0;
	raft_index best_match = 0;
	for (unsigned i = 0; i < r->configuration.n; i++) {
		const struct raft_server *s = &r->configuration.servers[i];
		if (s->id == reg->cfg.node_id || s->role != RAFT_VOTER)
			continue;
		raft_index m = r->leader_state.progress[i].match_index;
		if (best == 0 || m > best_match) {
			best = s->id;
			best_match = m;
		}
	}
	return best;
}

static int transfer(struct sl_rreg *reg, struct group *g, uint64_t target,
		    void (*cb)(void *, uint32_t, int), void *arg, bool handoff)
{
	if (raft_state(&g->raft) != RAFT_LEADER)
		return SL_ENOT_LEADER;
	if (g->xfer_cb != NULL || g->xfer_handoff)
		return SL_EBUSY;
	if (target == 0 && (target = best_target(reg, g)) == 0)
		return SL_EINVALID_ARGUMENT; /* the only voter */
	g->xfer_cb = cb;
	g->xfer_arg = arg;
	g->xfer_handoff = handoff;
	int rv = sl_rio_transfer(&g->io, target, on_transferred, g);
	if (rv != SL_OK) {
		g->xfer_cb = NULL;
		g->xfer_handoff = false;
	}
	return rv;
}

int sl_rreg_transfer(struct sl_rreg *reg, uint32_t group, uint64_t target,
		     void (*cb)(void *arg, uint32_t group, int status), void *arg)
{
	struct group *g = running(reg, group);
	if (g == NULL)
		return SL_ENOT_FOUND;
	return transfer(reg, g, target, cb, arg, false);
}

int sl_rreg_handoff(struct sl_rreg *reg, void (*cb)(void *arg, unsigned moved, unsigned failed),
		    void *arg)
{
	if (reg->ho_cb != NULL)
		return SL_EBUSY;
	reg->handing_off = true;
	reg->ho_cb = cb;
	reg->ho_arg = arg;
	reg->ho_moved = reg->ho_failed = reg->ho_pending = 0;
	unsigned election = reg->cfg.election_ms ? reg->cfg.election_ms : 1000;
	reg->ho_deadline = (int64_t)uv_now(reg->loop) + 5 * (int64_t)election;
	uv_timer_start(&reg->later, on_later, 5 * (uint64_t)election, 0);
	for (size_t i = 0; i < reg->cap; i++) {
		struct group *g = reg->table[i];
		if (g == NULL || g->state != G_RUNNING || raft_state(&g->raft) != RAFT_LEADER)
			continue;
		int rv = transfer(reg, g, 0, NULL, NULL, true);
		if (rv == SL_OK) {
			reg->ho_pending++;
		} else if (rv != SL_EINVALID_ARGUMENT) { /* a group of one stays */
			reg->ho_failed++;
			LOG(reg, SL_RLOG_WARN, "group %u: cannot hand off leadership: %s", g->id,
			    sl_strerror(rv));
		}
	}
	handoff_check(reg);
	return SL_OK;
}

/* ---- Close ---------------------------------------------------------- */

static void reg_handle_closed(struct sl_rreg *reg)
{
	if (--reg->handles > 0)
		return;
	void (*cb)(void *) = reg->close_cb;
	void *arg = reg->close_arg;
	free(reg->table);
	free(reg->dir);
	free(reg);
	if (cb != NULL)
		cb(arg);
}

static void on_handle_closed(uv_handle_t *h)
{
	reg_handle_closed(h->data);
}

static void on_env_closed(uv_handle_t *h)
{
	struct sl_uvenv *env = (struct sl_uvenv *)((char *)h - offsetof(struct sl_uvenv, idle));
	reg_handle_closed((struct sl_rreg *)((char *)env - offsetof(struct sl_rreg, env)));
}

static void close_handles(struct sl_rreg *reg)
{
	reg->handles = 3;
	sl_uvenv_close(&reg->env, on_env_closed);
	uv_close((uv_handle_t *)&reg->ticker, on_handle_closed);
	uv_close((uv_handle_t *)&reg->later, on_handle_closed);
}

static void on_meta_closed(void *arg)
{
	struct sl_rreg *reg = arg;
	reg->meta = NULL;
	close_handles(reg);
}

/* Once every group closed: the store (its last flush runs on the
 * environment), then the handles. */
static void maybe_closed(struct sl_rreg *reg)
{
	if (!reg->closing || reg->n > 0 || reg->handles > 0 || reg->meta_closing)
		return;
	if (reg->meta != NULL) {
		reg->meta_closing = true;
		sl_rmeta_close(reg->meta, on_meta_closed, reg);
		return;
	}
	close_handles(reg);
}

void sl_rreg_close(struct sl_rreg *reg, void (*cb)(void *arg), void *arg)
{
	reg->closing = true;
	sl_pnet_set_handlers(reg->net, NULL, NULL, NULL);
	reg->close_cb = cb;
	reg->close_arg = arg;
	uv_timer_stop(&reg->ticker);
	uv_timer_stop(&reg->later);
	for (size_t i = 0; i < reg->cap; i++) {
		struct group *g = reg->table[i];
		if (g != NULL && g->state != G_STOPPING) {
			stop(reg, g->id, NULL, NULL, false);
			i = (size_t)-1; /* the table may have shifted: rescan */
		}
	}
	maybe_closed(reg);
}

unsigned sl_rreg_shard_of(uint32_t group, unsigned n)
{
	/* Lemire's multiply-shift over a 64-bit mix of the id: stable across
	 * nodes, builds and platforms. */
	uint64_t x = group;
	x ^= x >> 16;
	x *= 0x45d9f3b37197344dull;
	x ^= x >> 29;
	return n == 0 ? 0 : (unsigned)(((x & 0xffffffffu) * n) >> 32);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 ? errno : 0;
}

int sl_rreg_rmtree(const char *dir)
{
	int rv = nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (rv == -1)
		return errno == ENOENT ? 0 : errno;
	return rv;
}
