/* The raft_io backend over the partition log. See rio.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "raft_int.h"
#include "rmeta.h"
#include "slot.h"

/* The guards against libraft 0.15's safety bugs (libraft-guards.md). The
 * build option -Dguards=false turns them off, to prove that each guard's
 * test fails without it. */
#ifndef SL_RAFT_GUARDS
#define SL_RAFT_GUARDS 1
#endif
static const bool guards = SL_RAFT_GUARDS;

/* What the backend knows of every entry in libraft's log (the "mirror"):
 * enough to truncate, to anchor a snapshot and to answer the guards. */
struct rent {
	raft_term term;
	int64_t base; /* offset of the entry's batch */
	int64_t next; /* one past its last offset */
	unsigned short type;
};

struct rcb {
	struct raft_io_append *req;
	raft_io_append_cb cb;
};

enum op_kind { OP_APPEND, OP_TRUNCATE, OP_SNAPSHOT, OP_CLEAN };

/* Disk work, queued in the order libraft asked for it. Consecutive
 * appends share one op: one write and one fdatasync for all of them. */
struct rop {
	enum op_kind kind;
	struct rop *next;
	/* OP_APPEND */
	uint8_t *bytes;
	size_t len, cap;
	struct rcb *cbs;
	size_t ncbs, cbs_cap;
	raft_index last_index;
	/* OP_TRUNCATE; OP_SNAPSHOT install: the offset up to which this
	 * replica's log is committed, so shared with the leader */
	int64_t offset;
	raft_id from; /* OP_SNAPSHOT install: the leader that sent it */
	struct raft_buffer *install_bufs; /* libraft's, leaked by it on failure */
	/* OP_SNAPSHOT */
	struct raft_io_snapshot_put *sreq;
	raft_io_snapshot_put_cb scb;
	uint8_t *manifest;
	size_t mlen;
	unsigned trailing;
	struct sl_rmanifest m; /* conf unused */
	/* OP_CLEAN (offset: the floor). Its failure is its own, never the
	 * group's: what is left behind goes in a later run. */
	struct sl_rio_cleaning clean;
	struct sl_rio_cleaned cleaned;
	int clean_rv;
	sl_rio_clean_cb ccb;
	void *carg;
	int rv;
};

/* Sends whose callback ran, kept per group for the next ones. */
#define SPARE_SENDS 4

struct rsend {
	struct sl_rwork w;
	struct rsend *link; /* in rio->spare_sends or rio->held_sends */
	struct raft_io_send *req;
	raft_io_send_cb cb;
	struct sl_rio *rio;
	struct raft_message msg; /* a held send: what goes out when released */
};

struct rget {
	struct sl_rwork w;
	struct raft_io_snapshot_get *req;
	raft_io_snapshot_get_cb cb;
	struct sl_rio *rio;
	struct raft_snapshot *snap;
	int status;
};

struct sl_rio {
	struct raft_io *io;
	struct sl_rio_config cfg;
	unsigned hurry;         /* election timeouts still drawn short */
	char *dir;
	char *logdir;           /* <dir>/log */
	sl_vfs *vfs;
	struct sl_renv *env;
	struct sl_rnet *net;
	sl_rio_fault_cb fault;
	void *fault_arg;
	raft_id id;

	sl_log *log;
	raft_term term;
	raft_id vote;
	uint64_t meta_version;  /* per-group slots */
	uint64_t meta_wait;     /* shared store: the record to wait for */
	struct sl_rmeta_waiter meta_waiter;
	uint64_t snap_version;
	uint8_t *snap; /* the stored manifest (raft_malloc'd), or NULL */
	size_t snap_len;
	raft_index snap_index;
	raft_term snap_term;
	int64_t snap_anchor;
	uint64_t reset_version; /* the "reset" slot: an install restarting the log */
	raft_id install_from; /* sender of the last InstallSnapshot */

	/* The mirror: entries first .. first + nents - 1. */
	struct rent *ents;
	size_t nents, cap;
	raft_index first;
	int64_t next_offset; /* after the last entry */
	raft_index last_stored;

	/* Disk work: queue and the op in flight. */
	struct rop *head, *tail, *running;
	struct sl_rwork work;
	struct sl_rwork start_work;
	struct sl_rwork fault_work;
	int fault_err;
	char fault_why[SL_ERRMSG_SIZE];
	unsigned inflight_works; /* sends, gets, disk work not yet done */
	struct rsend *spare_sends; /* reused: a send per heartbeat adds up */
	unsigned n_spare_sends;
	/* Sends held until term and vote are durable, oldest first. */
	struct rsend *held_sends, *held_tail;

	unsigned tick_ms;
	raft_io_tick_cb tick;
	raft_io_recv_cb recv;

	/* Guard (h): the highest index checked against the leader of term
	 * v_term, and the AppendEntries being received, if any. */
	raft_index verified;
	raft_term v_term;
	bool in_ae;
	raft_index ae_prev;
	unsigned ae_n;
	bool in_is; /* an InstallSnapshot of is_index is being received */
	raft_index is_index;
	raft_term rx_term; /* term of the AppendEntries/InstallSnapshot */
	/* Guard (d): a TimeoutNow held while the disk is busy. */
	bool held_tn;
	struct raft_message tn;
	/* Guard (a): the term whose barrier was proposed, and committed. */
	raft_term barrier_term;
	raft_term ready_term;
	/* Guard (g): a leadership transfer being driven to completion. */
	struct {
		bool active, in_flight;
		raft_id target;
		int attempts;
		int64_t deadline;
		sl_rio_transfer_cb cb;
		void *arg;
		struct raft_transfer req;
	} xfer;

	bool fenced;
	bool closing;
	raft_io_close_cb close_cb;
	struct rop *held; /* appends withheld from a fenced group */
};

static struct sl_rio *rio_of(struct raft_io *io)
{
	return io->impl;
}

/* The libraft instance driving this backend (raft_init sets io->data),
 * or NULL before one is attached. */
static struct raft *raft_of(struct sl_rio *rio)
{
	return rio->io->data;
}

static raft_term current_term(struct sl_rio *rio)
{
	struct raft *r = raft_of(rio);
	return r != NULL ? r->current_term : rio->term;
}

static int raft_state_of(struct sl_rio *rio)
{
	struct raft *r = raft_of(rio);
	return r != NULL ? r->state : RAFT_FOLLOWER;
}

static bool disk_busy(const struct sl_rio *rio)
{
	return rio->running != NULL || rio->head != NULL;
}

/* The send gate: a term or vote recorded in the node's shared store is
 * not durable yet, so nothing may leave or reach the log (rmeta.h). */
static bool meta_pending(const struct sl_rio *rio)
{
	return rio->cfg.meta != NULL && !sl_rmeta_durable(rio->cfg.meta, rio->meta_wait);
}

/* ---- Mirror --------------------------------------------------------- */

static raft_index mirror_last(const struct sl_rio *rio)
{
	return rio->first + rio->nents - 1;
}

static struct rent *mirror_at(struct sl_rio *rio, raft_index i)
{
	if (i < rio->first || i > mirror_last(rio))
		return NULL;
	return &rio->ents[i - rio->first];
}

static int mirror_push(struct sl_rio *rio, struct rent e)
{
	if (rio->nents == rio->cap) {
		size_t ncap = rio->cap ? rio->cap * 2 : 64;
		struct rent *p = realloc(rio->ents, ncap * sizeof(*p));
		if (p == NULL)
			return SL_ENOMEM;
		rio->ents = p;
		rio->cap = ncap;
	}
	rio->ents[rio->nents++] = e;
	rio->next_offset = e.next;
	return SL_OK;
}

/* Term of the entry at i as the backend knows it; 0 when unknown. */
static raft_term term_at(struct sl_rio *rio, raft_index i)
{
	struct rent *e = mirror_at(rio, i);
	if (e != NULL)
		return e->term;
	return i != 0 && i == rio->snap_index ? rio->snap_term : 0;
}

/* Guard (h): index i has been checked against the current leader. */
static void verified_up_to(struct sl_rio *rio, raft_index i)
{
	raft_term t = current_term(rio);
	if (rio->v_term != t) {
		rio->v_term = t;
		rio->verified = 0;
	}
	if (i > rio->verified)
		rio->verified = i;
}

/* Forgets entries below index (they are in a snapshot). */
static void mirror_drop_before(struct sl_rio *rio, raft_index index)
{
	if (index <= rio->first)
		return;
	size_t k = index - rio->first;
	if (k > rio->nents)
		k = rio->nents;
	memmove(rio->ents, rio->ents + k, (rio->nents - k) * sizeof(*rio->ents));
	rio->nents -= k;
	rio->first += k;
}

/* ---- Faults --------------------------------------------------------- */

/* A disk error: libraft never hears of it (its 0.15 reactions to storage
 * errors are unsafe, libraft-guards.md (e)); the group stops doing
 * anything and the owner restarts it from what is on disk. */
static void fault_done(struct sl_rwork *w)
{
	struct sl_rio *rio = (struct sl_rio *)((char *)w - offsetof(struct sl_rio, fault_work));
	rio->inflight_works--;
	if (rio->fault != NULL && !rio->closing)
		rio->fault(rio->fault_arg, rio->cfg.group, rio->fault_err, rio->fault_why);
}

static uint64_t fence_count; /* atomic: groups fenced in this process */

uint64_t sl_rio_fence_count(void)
{
	return __atomic_load_n(&fence_count, __ATOMIC_RELAXED);
}

/* Reports from the loop later, never inside a call from libraft: the owner
 * is expected to close the group from the callback. */
static void fence(struct sl_rio *rio, int err, const char *why)
{
	if (rio->fenced)
		return;
	rio->fenced = true;
	__atomic_add_fetch(&fence_count, 1, __ATOMIC_RELAXED);
	rio->fault_err = err;
	snprintf(rio->fault_why, sizeof(rio->fault_why), "%.250s", why);
	rio->fault_work.work = NULL;
	rio->fault_work.done = fault_done;
	rio->inflight_works++;
	rio->env->submit(rio->env, &rio->fault_work);
}

/* ---- Disk work ------------------------------------------------------ */

static void op_free(struct rop *op)
{
	free(op->bytes);
	free(op->cbs);
	if (op->manifest != NULL)
		raft_free(op->manifest);
	free(op);
}

/* Brings the log up to the installed snapshot's anchor with the leader's
 * batches. The leader's batches from this replica's commit point on are
 * fetched and matched against what is here by (base offset, term, last
 * offset delta), which compaction keeps: an entry is one batch, and an
 * (offset, term) pair names one entry. Matching ones stay (they may be
 * committed and acknowledged); the first that differs marks where this
 * replica's log diverged (uncommitted: cut there, never below the commit
 * point); the rest is appended. Offsets the leader compacted away are
 * gaps, which the log allows. Nothing durable that matches the leader is
 * removed, so a failure part-way leaves a correct log. */
static int install_copy(struct sl_rio *rio, struct rop *op)
{
	int64_t keep = op->offset < op->m.anchor ? op->offset : op->m.anchor;
	int64_t pos = keep;
	int rv = SL_OK;
	if (sl_log_end_offset(rio->log) < pos)
		pos = keep = sl_log_end_offset(rio->log);
	while (rv == SL_OK && pos < op->m.anchor) {
		uint8_t *buf = NULL;
		size_t len = 0, off = 0;
		rv = rio->net->fetch(rio->net, rio->cfg.group, op->from, pos, op->m.anchor, &buf, &len);
		if (rv == SL_OK && len == 0) {
			free(buf);
			break; /* the rest below the anchor was compacted away */
		}
		while (rv == SL_OK && off < len) {
			struct sl_batch_header h, mine;
			rv = sl_batch_check(buf + off, len - off, UINT32_MAX, &h);
			if (rv != SL_OK || h.base_offset < pos || sl_batch_last_offset(&h) >= op->m.anchor) {
				rv = rv != SL_OK ? rv : SL_ELOG_OFFSET_ORDER;
				break;
			}
			bool same = false;
			int64_t end = sl_log_end_offset(rio->log);
			if (h.base_offset < end) {
				struct sl_slice sl;
				uint8_t hb[SL_BATCH_HEADER_SIZE];
				rv = sl_log_read(rio->log, h.base_offset, 1, &sl);
				int64_t at = sl.first_offset;
				if (rv == SL_OK && sl.len >= sizeof(hb) &&
				    sl.seg != NULL && sl_slice_read(&(struct sl_slice){ .seg = sl.seg, .fd = sl.fd,
						.pos = sl.pos, .len = sizeof(hb) }, hb) == SL_OK &&
				    sl_batch_parse_header(hb, sizeof(hb), UINT32_MAX, &mine) == SL_OK)
					same = mine.base_offset == h.base_offset &&
					       mine.leader_epoch == h.leader_epoch &&
					       mine.last_offset_delta == h.last_offset_delta;
				sl_slice_release(&sl);
				if (rv == SL_OK && !same) {
					/* Diverged: cut at the entry boundary. */
					int64_t cut = at < h.base_offset ? at : h.base_offset;
					rv = cut < keep ? SL_ELOG_OFFSET_ORDER : sl_log_truncate(rio->log, cut);
				}
			}
			if (rv == SL_OK && !same)
				rv = sl_log_append(rio->log, buf + off, sl_batch_total_size(&h));
			off += sl_batch_total_size(&h);
			pos = sl_batch_last_offset(&h) + 1;
		}
		free(buf);
	}
	if (rv == SL_OK && sl_log_end_offset(rio->log) > op->m.anchor)
		rv = sl_log_truncate(rio->log, op->m.anchor); /* replaced, as libraft does */
	if (rv == SL_OK)
		rv = sl_log_flush(rio->log);
	return rv;
}

static int apply_snapshot_disk(struct sl_rio *rio, struct rop *op)
{
	char errmsg[SL_ERRMSG_SIZE];
	int rv;
	if (op->trailing == 0) {
		if (rio->net == NULL || rio->net->fetch == NULL) {
			/* No way to copy: the log restarts empty at the
			 * anchor (offsets below it are not served here). A
			 * durable note of the pending restart comes first, so
			 * a crash after the manifest and before the restart
			 * is finished by the next open, and one before the
			 * manifest loses nothing. */
			uint8_t a[8];
			for (int i = 0; i < 8; i++)
				a[i] = (uint8_t)((uint64_t)op->m.anchor >> (8 * i));
			rv = sl_slot_store(rio->vfs, rio->dir, "reset", a, sizeof(a),
					   ++rio->reset_version, errmsg);
			if (rv == SL_OK)
				rv = sl_slot_store(rio->vfs, rio->dir, "snap", op->manifest, op->mlen,
						   rio->snap_version + 1, errmsg);
			if (rv == SL_OK)
				rv = sl_log_reset(rio->log, op->m.anchor);
			if (rv == SL_OK)
				rv = sl_slot_store(rio->vfs, rio->dir, "reset", NULL, 0,
						   ++rio->reset_version, errmsg);
			return rv;
		} else {
			rv = install_copy(rio, op);
		}
		if (rv != SL_OK)
			return rv;
	}
	rv = sl_slot_store(rio->vfs, rio->dir, "snap", op->manifest, op->mlen,
			   rio->snap_version + 1, errmsg);
	return rv;
}

static int clean_disk(struct sl_rio *rio, struct rop *op)
{
	const struct sl_rio_cleaning *c = &op->clean;
	int rv = sl_log_set_limits(rio->log, c->segment_bytes, c->retention_bytes,
				   c->retention_ms);
	if (rv == SL_OK)
		rv = sl_log_retain(rio->log, op->offset, c->now_ms, &op->cleaned.segments_deleted);
	if (rv != SL_OK || !c->compact)
		return rv;
	sl_compaction *k = NULL;
	rv = sl_log_compact_begin(rio->log, op->offset, c->now_ms, &k);
	if (rv != SL_OK || k == NULL)
		return rv;
	int run = sl_compaction_run(k);
	rv = sl_log_compact_finish(rio->log, k, &op->cleaned.compaction);
	return run != SL_OK ? run : rv;
}

static void work_run(struct sl_rwork *w)
{
	struct sl_rio *rio = (struct sl_rio *)((char *)w - offsetof(struct sl_rio, work));
	struct rop *op = rio->running;
	switch (op->kind) {
	case OP_APPEND:
		op->rv = sl_log_append(rio->log, op->bytes, op->len);
		if (op->rv == SL_OK)
			op->rv = sl_log_flush(rio->log);
		break;
	case OP_TRUNCATE:
		op->rv = sl_log_truncate(rio->log, op->offset);
		break;
	case OP_SNAPSHOT:
		op->rv = apply_snapshot_disk(rio, op);
		break;
	case OP_CLEAN:
		op->clean_rv = clean_disk(rio, op);
		break;
	}
}

static void kick(struct sl_rio *rio);
static void after_dispatch(struct sl_rio *rio);
static void xfer_step(struct sl_rio *rio);

static void work_done(struct sl_rwork *w)
{
	struct sl_rio *rio = (struct sl_rio *)((char *)w - offsetof(struct sl_rio, work));
	struct rop *op = rio->running;
	rio->running = NULL;
	rio->inflight_works--;
	if (op->rv != SL_OK) {
		char why[SL_ERRMSG_SIZE + 64];
		snprintf(why, sizeof(why), "%s", sl_log_errmsg(rio->log));
		fence(rio, op->rv, why);
	}
	if (rio->fenced) {
		/* Held until close, which cancels them: after a disk error
		 * nothing may be reported as stored. */
		op->next = rio->held;
		rio->held = op;
		return;
	}
	switch (op->kind) {
	case OP_APPEND:
		rio->last_stored = op->last_index;
		for (size_t i = 0; i < op->ncbs; i++)
			op->cbs[i].cb(op->cbs[i].req, 0);
		if (rio->cfg.stored != NULL)
			rio->cfg.stored(rio->cfg.stored_arg, rio->cfg.group, op->last_index);
		break;
	case OP_TRUNCATE:
		break;
	case OP_SNAPSHOT:
		if (rio->snap != NULL)
			raft_free(rio->snap);
		rio->snap = op->manifest;
		rio->snap_len = op->mlen;
		op->manifest = NULL;
		rio->snap_version++;
		rio->snap_index = op->m.index;
		rio->snap_term = op->m.term;
		rio->snap_anchor = op->m.anchor;
		if (op->trailing == 0) {
			rio->last_stored = op->m.index;
			/* Guard (h): a snapshot holds committed entries only. */
			verified_up_to(rio, op->m.index);
		}
		op->scb(op->sreq, 0);
		break;
	case OP_CLEAN:
		op->ccb(op->carg, op->clean_rv, &op->cleaned);
		break;
	}
	op_free(op);
	kick(rio);
	after_dispatch(rio);
}

/* Starts the next disk work if none is running. */
static void kick(struct sl_rio *rio)
{
	if (rio->running != NULL || rio->head == NULL || rio->fenced || rio->closing ||
	    meta_pending(rio))
		return;
	struct rop *op = rio->head;
	rio->head = op->next;
	if (rio->head == NULL)
		rio->tail = NULL;
	op->next = NULL;
	rio->running = op;
	rio->inflight_works++;
	rio->work.work = work_run;
	rio->work.done = work_done;
	rio->env->submit(rio->env, &rio->work);
}

static void op_link(struct sl_rio *rio, struct rop *op)
{
	if (rio->tail != NULL)
		rio->tail->next = op;
	else
		rio->head = op;
	rio->tail = op;
}

static struct rop *op_new(struct sl_rio *rio, enum op_kind kind)
{
	struct rop *op = calloc(1, sizeof(*op));
	if (op == NULL)
		return NULL;
	op->kind = kind;
	op_link(rio, op);
	return op;
}

static int buf_add(struct rop *op, const void *p, size_t len)
{
	if (op->len + len > op->cap) {
		size_t ncap = op->cap ? op->cap * 2 : 64 * 1024;
		while (ncap < op->len + len)
			ncap *= 2;
		uint8_t *nb = realloc(op->bytes, ncap);
		if (nb == NULL)
			return SL_ENOMEM;
		op->bytes = nb;
		op->cap = ncap;
	}
	memcpy(op->bytes + op->len, p, len);
	op->len += len;
	return SL_OK;
}

/* ---- raft_io: load, bootstrap, term and vote ------------------------ */

static int rio_init(struct raft_io *io, raft_id id, const char *address)
{
	(void)address;
	rio_of(io)->id = id;
	return 0;
}

/* Sets libraft's error message and returns raft_rv. */
static int errf(struct sl_rio *rio, int raft_rv, const char *detail)
{
	snprintf(rio->io->errmsg, RAFT_ERRMSG_BUF_SIZE, "%.60s: %.180s", rio->dir, detail);
	return raft_rv;
}

/* The "base" slot of a seeded group: the offset of Raft's first entry,
 * after the history copied from another group (sl_rio_seed). */
static int load_base(sl_vfs *vfs, const char *dir, int64_t *base, char *errmsg)
{
	void *data;
	size_t len;
	uint64_t version;
	int rv = sl_slot_load(vfs, dir, "base", &data, &len, &version, errmsg);
	if (rv != SL_OK)
		return rv;
	uint64_t v = 0;
	for (int i = 7; i >= 0 && len == 8; i--)
		v = v << 8 | ((uint8_t *)data)[i];
	free(data);
	if (len != 8 || v > INT64_MAX) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s: the base record does not decode", dir);
		return SL_ELOG_BAD_FILE;
	}
	*base = (int64_t)v;
	return SL_OK;
}

/* A log that ends below its snapshot's anchor lost batches the snapshot
 * counts as held: a torn write, or a tail lost with its disk cache, under
 * a manifest that was durable. Loading the snapshot would have libraft
 * believe it holds entries it has not, and take the next ones past the
 * hole (a replica that then leads has lost acknowledged records). The
 * replica starts over empty instead, durably (the log emptied at its
 * start, then the manifest dropped; a crash between the two finds the same
 * state again): term and vote stay, and the leader's InstallSnapshot
 * brings the log back through the bulk copy (install_copy). */
static int drop_torn_snapshot(struct sl_rio *rio)
{
	if (rio->snap == NULL || sl_log_end_offset(rio->log) >= rio->snap_anchor)
		return 0;
	char errmsg[SL_ERRMSG_SIZE];
	int64_t start = sl_log_start_offset(rio->log);
	if (sl_log_reset(rio->log, start) != SL_OK)
		return errf(rio, RAFT_IOERR, sl_log_errmsg(rio->log));
	if (sl_slot_store(rio->vfs, rio->dir, "snap", NULL, 0, rio->snap_version + 1, errmsg) != SL_OK)
		return errf(rio, RAFT_IOERR, errmsg);
	rio->snap_version++;
	raft_free(rio->snap);
	rio->snap = NULL;
	rio->snap_len = 0;
	rio->snap_index = 0;
	rio->snap_term = 0;
	rio->snap_anchor = 0;
	rio->first = 1;
	rio->next_offset = start;
	rio->last_stored = 0;
	return 0;
}

/* Opens the directory, the log, term and vote and the snapshot manifest
 * (once). Returns a RAFT_* code. */
static int open_state(struct sl_rio *rio)
{
	char errmsg[SL_ERRMSG_SIZE] = "";
	void *data;
	size_t len;
	uint64_t version;
	if (rio->log != NULL)
		return 0;
	int rv = rio->vfs->mkdir(rio->vfs, rio->dir, 0755);
	if (rv < 0 && rv != -EEXIST)
		return errf(rio, RAFT_IOERR, strerror(-rv));
	/* A new group directory must survive a crash: it will hold the term
	 * and vote. */
	if (rv == 0 && (rv = sl_vfs_sync_parent(rio->vfs, rio->dir)) < 0)
		return errf(rio, RAFT_IOERR, strerror(-rv));
	if (rio->cfg.meta != NULL) {
		uint64_t term, vote, seq;
		sl_rmeta_get(rio->cfg.meta, rio->cfg.group, &term, &vote, &seq);
		rio->term = term;
		rio->vote = vote;
		rv = SL_ENOT_FOUND;
		if (!sl_rmeta_durable(rio->cfg.meta, seq)) {
			/* Recorded by this group's previous run (closed after a
			 * fault): still gated. */
			rio->meta_wait = seq;
			sl_rmeta_wait(rio->cfg.meta, &rio->meta_waiter, seq);
		}
	} else {
		rv = sl_slot_load(rio->vfs, rio->dir, "meta", &data, &len, &version, errmsg);
	}
	if (rv == SL_OK) {
		if (len != 16) {
			free(data);
			return errf(rio, RAFT_CORRUPT, "term/vote record has a bad size");
		}
		uint8_t *d = data;
		rio->term = 0;
		rio->vote = 0;
		for (int i = 7; i >= 0; i--) {
			rio->term = rio->term << 8 | d[i];
			rio->vote = rio->vote << 8 | d[8 + i];
		}
		rio->meta_version = version;
		free(data);
	} else if (rv != SL_ENOT_FOUND) {
		return errf(rio, RAFT_IOERR, errmsg);
	}
	rv = sl_slot_load(rio->vfs, rio->dir, "snap", &data, &len, &version, errmsg);
	if (rv == SL_OK && len == 0) { /* dropped: see drop_torn_snapshot */
		free(data);
		rio->snap_version = version;
	} else if (rv == SL_OK) {
		struct sl_rmanifest m;
		if (sl_rmanifest_decode(data, len, &m) != SL_OK) {
			free(data);
			return errf(rio, RAFT_CORRUPT, "snapshot manifest does not decode");
		}
		raft_configuration_close(&m.conf);
		rio->snap = raft_malloc(len);
		if (rio->snap == NULL) {
			free(data);
			return RAFT_NOMEM;
		}
		memcpy(rio->snap, data, len);
		free(data);
		rio->snap_len = len;
		rio->snap_version = version;
		rio->snap_index = m.index;
		rio->snap_term = m.term;
		rio->snap_anchor = m.anchor;
		rio->first = m.index + 1;
		rio->next_offset = m.anchor;
		rio->last_stored = m.index;
	} else if (rv != SL_ENOT_FOUND) {
		return errf(rio, RAFT_IOERR, errmsg);
	}
	rv = sl_log_open(rio->logdir, &rio->cfg.log, rio->vfs, &rio->log, errmsg);
	if (rv != SL_OK)
		return errf(rio, RAFT_IOERR, errmsg);
	if (rio->snap == NULL) {
		/* Raft's first entry follows the seeded history, if any. */
		int64_t base;
		rv = load_base(rio->vfs, rio->dir, &base, errmsg);
		if (rv == SL_OK)
			rio->next_offset = base;
		else if (rv == SL_ENOT_FOUND)
			rio->next_offset = sl_log_start_offset(rio->log);
		else
			return errf(rio, RAFT_IOERR, errmsg);
	}
	/* An install without a copy that stored its manifest but did not
	 * finish restarting the log at the anchor: finish it. */
	rv = sl_slot_load(rio->vfs, rio->dir, "reset", &data, &len, &version, errmsg);
	if (rv == SL_OK) {
		rio->reset_version = version;
		int64_t anchor = 0;
		for (int i = 7; i >= 0 && len == 8; i--)
			anchor = anchor << 8 | ((uint8_t *)data)[i];
		free(data);
		if (len == 8 && rio->snap != NULL && anchor == rio->snap_anchor) {
			if ((sl_log_start_offset(rio->log) != anchor ||
			     sl_log_end_offset(rio->log) != anchor) &&
			    sl_log_reset(rio->log, anchor) != SL_OK)
				return errf(rio, RAFT_IOERR, sl_log_errmsg(rio->log));
			if (sl_slot_store(rio->vfs, rio->dir, "reset", NULL, 0, ++rio->reset_version,
					  errmsg) != SL_OK)
				return errf(rio, RAFT_IOERR, errmsg);
		}
	} else if (rv != SL_ENOT_FOUND) {
		return errf(rio, RAFT_IOERR, errmsg);
	}
	return drop_torn_snapshot(rio);
}

static int store_meta(struct sl_rio *rio, raft_term term, raft_id vote)
{
	if (rio->cfg.meta != NULL) {
		uint64_t seq;
		if (sl_rmeta_put(rio->cfg.meta, rio->cfg.group, term, vote, &seq) != SL_OK)
			return RAFT_NOMEM;
		rio->term = term;
		rio->vote = vote;
		rio->meta_wait = seq;
		sl_rmeta_wait(rio->cfg.meta, &rio->meta_waiter, seq);
		return 0;
	}
	char errmsg[SL_ERRMSG_SIZE];
	uint8_t d[16];
	for (int i = 0; i < 8; i++) {
		d[i] = (uint8_t)(term >> (8 * i));
		d[8 + i] = (uint8_t)(vote >> (8 * i));
	}
	int rv = sl_slot_store(rio->vfs, rio->dir, "meta", d, sizeof(d), rio->meta_version + 1, errmsg);
	if (rv != SL_OK)
		return errf(rio, RAFT_IOERR, errmsg);
	rio->meta_version++;
	rio->term = term;
	rio->vote = vote;
	return 0;
}

/* The stored snapshot as libraft takes it (load, snapshot_get): decoded
 * configuration, the whole manifest as its one buffer, all libraft's to
 * free. Returns 0, RAFT_NOMEM or RAFT_CORRUPT. */
static int snapshot_copy(struct sl_rio *rio, struct raft_snapshot **out)
{
	struct sl_rmanifest m;
	if (sl_rmanifest_decode(rio->snap, rio->snap_len, &m) != SL_OK)
		return errf(rio, RAFT_CORRUPT, "the stored snapshot manifest does not decode");
	struct raft_snapshot *s = raft_calloc(1, sizeof(*s));
	void *copy = raft_malloc(rio->snap_len);
	if (s == NULL || copy == NULL || (s->bufs = raft_malloc(sizeof(*s->bufs))) == NULL) {
		raft_configuration_close(&m.conf);
		raft_free(s);
		raft_free(copy);
		return RAFT_NOMEM;
	}
	memcpy(copy, rio->snap, rio->snap_len);
	s->index = m.index;
	s->term = m.term;
	s->configuration = m.conf;
	s->configuration_index = m.conf_index;
	s->bufs[0] = (struct raft_buffer){ .base = copy, .len = rio->snap_len };
	s->n_bufs = 1;
	*out = s;
	return 0;
}

/* Reads the entries from the anchor to the end of the log, each into its
 * own raft_malloc'd buffer (batch NULL). Entries sharing a batch would be
 * cheaper, but 0.15 frees a shared batch as soon as no entry *in its log*
 * refers to it, although entries already cut from the log may still be
 * held by a send in flight: it then frees the batch twice. */
static int load_entries(struct sl_rio *rio, struct raft_entry **out, size_t *n_out)
{
	struct raft_entry *ents = NULL;
	size_t n = 0, cap = 0;
	int64_t off = rio->next_offset, end = sl_log_end_offset(rio->log);
	int rv = 0;
	while (off < end) {
		struct sl_slice s;
		int srv = sl_log_read(rio->log, off, 1 << 20, &s);
		if (srv != SL_OK || s.len == 0) {
			rv = errf(rio, RAFT_CORRUPT, sl_log_errmsg(rio->log));
			break;
		}
		uint8_t *chunk = malloc(s.len);
		if (chunk == NULL || sl_slice_read(&s, chunk) != SL_OK) {
			sl_slice_release(&s);
			free(chunk);
			rv = chunk == NULL ? RAFT_NOMEM : errf(rio, RAFT_IOERR, "read failed");
			break;
		}
		int64_t next = s.next_offset;
		sl_slice_release(&s);
		for (size_t pos = 0; pos < s.len && rv == 0;) {
			struct sl_batch_header h;
			sl_batch_parse_header(chunk + pos, s.len - pos, UINT32_MAX, &h);
			size_t blen = sl_batch_total_size(&h);
			struct raft_entry e = { .batch = NULL };
			size_t poff, plen;
			/* Entries are contiguous from the anchor on. */
			if (sl_rentry_decode(chunk + pos, blen, &e.type, &e.term, &poff, &plen) != SL_OK ||
			    h.base_offset != rio->next_offset) {
				rv = errf(rio, RAFT_CORRUPT, "a stored entry does not decode");
				break;
			}
			e.buf.base = raft_malloc(plen > 0 ? plen : 1);
			e.buf.len = plen;
			if (e.buf.base == NULL) {
				rv = RAFT_NOMEM;
				break;
			}
			memcpy(e.buf.base, chunk + pos + poff, plen);
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				struct raft_entry *p = raft_realloc(ents, cap * sizeof(*p));
				if (p == NULL) {
					raft_free(e.buf.base);
					rv = RAFT_NOMEM;
					break;
				}
				ents = p;
			}
			ents[n++] = e;
			struct rent r = { .term = e.term, .base = h.base_offset,
					  .next = sl_batch_last_offset(&h) + 1, .type = e.type };
			if (mirror_push(rio, r) != SL_OK)
				rv = RAFT_NOMEM;
			pos += blen;
		}
		free(chunk);
		if (rv != 0)
			break;
		off = next;
	}
	if (rv != 0) {
		for (size_t i = 0; i < n; i++)
			raft_free(ents[i].buf.base);
		raft_free(ents);
		rio->nents = 0;
		return rv;
	}
	*out = ents;
	*n_out = n;
	return 0;
}

/* No entry is written before its term is durable, so a stored term
 * behind the log's means the term record was lost, and libraft 0.15 would
 * go on to free memory twice. One case is expected: with the shared store
 * (rmeta.h), bootstrap records term 1 and writes its CHANGE entry at once,
 * and a crash can keep the entry alone; sl_rio_create writes the entry
 * alone on purpose. The term is then recorded here. Returns 0,
 * RAFT_CORRUPT, or store_meta's error. */
static int check_term(struct sl_rio *rio)
{
	raft_term last_term = term_at(rio, rio->last_stored);
	if (rio->term >= last_term)
		return 0;
	struct rent *e = mirror_at(rio, 1);
	if (rio->term == 0 && rio->last_stored == 1 && e != NULL && e->type == RAFT_CHANGE &&
	    e->term == 1)
		return store_meta(rio, 1, 0); /* recorded now: entries of term 1 may follow */
	char why[96];
	snprintf(why, sizeof(why), "stored term %llu is behind the log's last term %llu",
		 (unsigned long long)rio->term, (unsigned long long)last_term);
	return errf(rio, RAFT_CORRUPT, why);
}

static int rio_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
		    struct raft_snapshot **snapshot, raft_index *start_index,
		    struct raft_entry *entries[], size_t *n_entries)
{
	struct sl_rio *rio = rio_of(io);
	int rv = open_state(rio);
	if (rv != 0)
		return rv;
	*snapshot = NULL;
	*start_index = rio->first;
	*entries = NULL;
	*n_entries = 0;
	rio->nents = 0;
	if (rio->snap != NULL && (rv = snapshot_copy(rio, snapshot)) != 0)
		return rv;
	rv = load_entries(rio, entries, n_entries);
	if (rv == 0) {
		rio->last_stored = rio->nents ? mirror_last(rio) : rio->snap_index;
		if ((rv = check_term(rio)) != 0) {
			for (size_t i = 0; i < *n_entries; i++)
				raft_free((*entries)[i].buf.base);
			raft_free(*entries);
			*entries = NULL;
			*n_entries = 0;
			rio->nents = 0;
		}
	}
	if (rv != 0) {
		if (*snapshot != NULL) {
			raft_configuration_close(&(*snapshot)->configuration);
			raft_free((*snapshot)->bufs[0].base);
			raft_free((*snapshot)->bufs);
			raft_free(*snapshot);
			*snapshot = NULL;
		}
		return rv;
	}
	*term = rio->term;
	*voted_for = rio->vote;
	return 0;
}

/* Appends a CHANGE entry synchronously (bootstrap and recover). */
static int append_change_now(struct sl_rio *rio, raft_term term, const struct raft_configuration *conf)
{
	struct raft_buffer buf;
	uint8_t *bytes;
	size_t len;
	int rv = raft_configuration_encode(conf, &buf);
	if (rv != 0)
		return rv;
	int64_t at = sl_log_end_offset(rio->log);
	rv = sl_rentry_control(at, term, RAFT_CHANGE, buf.base, buf.len, &bytes, &len);
	raft_free(buf.base);
	if (rv != SL_OK)
		return RAFT_NOMEM;
	rv = sl_log_append(rio->log, bytes, len);
	if (rv == SL_OK)
		rv = sl_log_flush(rio->log);
	free(bytes);
	if (rv != SL_OK)
		return errf(rio, RAFT_IOERR, sl_log_errmsg(rio->log));
	return 0;
}

static int rio_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
	struct sl_rio *rio = rio_of(io);
	int rv = open_state(rio);
	if (rv != 0)
		return rv;
	if (rio->snap != NULL || rio->nents > 0 || sl_log_end_offset(rio->log) != rio->next_offset)
		return RAFT_CANTBOOTSTRAP;
	/* A term already stored with no log (a crash between the two writes
	 * below, or a deleted group's id reused under the shared store) is
	 * kept, vote included: a new member that knows a term is sound, and
	 * it never votes twice in one. */
	if ((rv = store_meta(rio, rio->term ? rio->term : 1, rio->vote)) != 0)
		return rv;
	return append_change_now(rio, 1, conf);
}

int sl_rio_create(const char *dir, const struct sl_log_config *lc, sl_vfs *vfs,
		  const uint64_t *voters, unsigned n, char *errmsg)
{
	if (vfs == NULL)
		vfs = sl_vfs_posix();
	int rv = vfs->mkdir(vfs, dir, 0755);
	if (rv == -EEXIST) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s exists", dir);
		return SL_EEXISTS;
	}
	if (rv < 0 || (rv = sl_vfs_sync_parent(vfs, dir)) < 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s: %s", dir, strerror(-rv));
		return SL_EIO;
	}
	char logdir[4096];
	snprintf(logdir, sizeof(logdir), "%s/log", dir);
	sl_log *log;
	rv = sl_log_open(logdir, lc, vfs, &log, errmsg);
	if (rv != SL_OK)
		return rv;
	/* The CHANGE entry rio_bootstrap would write, byte for byte. */
	struct raft_configuration conf;
	struct raft_buffer buf = { 0 };
	uint8_t *bytes = NULL;
	size_t len;
	raft_configuration_init(&conf);
	for (unsigned i = 0; i < n && rv == SL_OK; i++) {
		char addr[24];
		snprintf(addr, sizeof(addr), "%llu", (unsigned long long)voters[i]);
		if (raft_configuration_add(&conf, voters[i], addr, RAFT_VOTER) != 0)
			rv = SL_ENOMEM;
	}
	if (rv == SL_OK && raft_configuration_encode(&conf, &buf) != 0)
		rv = SL_ENOMEM;
	if (rv == SL_OK)
		rv = sl_rentry_control(0, 1, RAFT_CHANGE, buf.base, buf.len, &bytes, &len);
	if (rv == SL_OK && (rv = sl_log_append(log, bytes, len)) == SL_OK)
		rv = sl_log_flush(log);
	if (rv != SL_OK && rv != SL_ENOMEM)
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s", sl_log_errmsg(log));
	else if (rv == SL_ENOMEM)
		snprintf(errmsg, SL_ERRMSG_SIZE, "out of memory");
	free(bytes);
	raft_free(buf.base);
	raft_configuration_close(&conf);
	int crv = sl_log_close(log);
	return rv != SL_OK ? rv : crv;
}

static int rio_recover(struct raft_io *io, const struct raft_configuration *conf)
{
	struct sl_rio *rio = rio_of(io);
	int rv = open_state(rio);
	if (rv != 0)
		return rv;
	return append_change_now(rio, rio->term ? rio->term : 1, conf);
}

static int rio_set_term(struct raft_io *io, raft_term term)
{
	return store_meta(rio_of(io), term, 0);
}

static int rio_set_vote(struct raft_io *io, raft_id server_id)
{
	struct sl_rio *rio = rio_of(io);
	return store_meta(rio, rio->term, server_id);
}

/* ---- raft_io: append, truncate -------------------------------------- */

/* Checks and encodes one entry as the batch stored at rio->next_offset.
 * A COMMAND must be exactly one batch, stamped by the leader with that
 * offset and the entry's term. */
static int encode_entry(struct sl_rio *rio, struct rop *op, const struct raft_entry *e)
{
	int64_t at = rio->next_offset;
	struct rent r = { .term = e->term, .base = at, .type = e->type };
	int rv;
	/* Guard (f): libraft 0.15 mishandles uncommitted configurations
	 * (snapshots capturing them, a crash rolling one back, restarts
	 * taking the last as committed). Sluice keeps each group's
	 * membership fixed at bootstrap (index 1) and moves a replica by
	 * creating a new group, so any later CHANGE is refused. */
	if (guards && e->type == RAFT_CHANGE && mirror_last(rio) + 1 > 1)
		return SL_EINVALID_ARGUMENT;
	if (e->type == RAFT_COMMAND) {
		struct sl_batch_header h;
		rv = sl_batch_parse_header(e->buf.base, e->buf.len, UINT32_MAX, &h);
		if (rv == SL_OK && (sl_batch_total_size(&h) != e->buf.len || h.base_offset != at ||
				    (raft_term)h.leader_epoch != e->term))
			rv = SL_EINVALID_RECORD;
		/* A COMMAND shaped like Raft's own control batch would load
		 * back as a CHANGE or BARRIER after a restart. */
		unsigned short type;
		raft_term t;
		size_t po, pl;
		if (rv == SL_OK && (h.attributes & SL_ATTR_CONTROL) &&
		    (sl_rentry_decode(e->buf.base, e->buf.len, &type, &t, &po, &pl) != SL_OK ||
		     type != RAFT_COMMAND))
			rv = SL_EINVALID_RECORD;
		if (rv != SL_OK)
			return rv;
		rv = buf_add(op, e->buf.base, e->buf.len);
		r.next = sl_batch_last_offset(&h) + 1;
	} else {
		uint8_t *bytes;
		size_t len;
		rv = sl_rentry_control(at, e->term, e->type, e->buf.base, e->buf.len, &bytes, &len);
		if (rv != SL_OK)
			return rv;
		rv = buf_add(op, bytes, len);
		free(bytes);
		r.next = at + 1;
	}
	if (rv == SL_OK)
		rv = mirror_push(rio, r);
	return rv;
}

static int rio_append(struct raft_io *io, struct raft_io_append *req,
		      const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	struct sl_rio *rio = rio_of(io);
	struct rop *op = rio->tail;
	bool fresh = op == NULL || op->kind != OP_APPEND;
	if (fresh && (op = calloc(1, sizeof(*op))) == NULL)
		return RAFT_NOMEM;
	if (op->ncbs == op->cbs_cap) {
		/* Before anything changes: a failure leaves nothing queued. */
		size_t ncap = op->cbs_cap ? op->cbs_cap * 2 : 8;
		struct rcb *p = realloc(op->cbs, ncap * sizeof(*p));
		if (p == NULL) {
			if (fresh)
				free(op);
			return RAFT_NOMEM;
		}
		op->cbs = p;
		op->cbs_cap = ncap;
	}
	if (fresh) {
		op->kind = OP_APPEND;
		op_link(rio, op);
	}
	for (unsigned i = 0; i < n; i++) {
		int rv = encode_entry(rio, op, &entries[i]);
		if (rv != SL_OK) {
			/* A bug or corruption upstream: fence rather than let
			 * libraft go on with a log that differs from ours. */
			char why[128];
			snprintf(why, sizeof(why), "entry %u of an append does not fit the log: %s", i,
				 sl_strerror(rv));
			fence(rio, rv, why);
			break;
		}
	}
	op->cbs[op->ncbs++] = (struct rcb){ .req = req, .cb = cb };
	op->last_index = mirror_last(rio);
	/* Guard (h): appending while receiving AppendEntries(prev, n) means
	 * libraft matched the leader's log up to prev + n. */
	if (rio->in_ae && rio->rx_term == current_term(rio))
		verified_up_to(rio, rio->ae_prev + rio->ae_n);
	kick(rio);
	return 0;
}

int sl_rio_clean(struct raft_io *io, int64_t floor, const struct sl_rio_cleaning *what,
		 sl_rio_clean_cb cb, void *arg)
{
	struct sl_rio *rio = rio_of(io);
	if (rio->fenced || rio->closing || rio->log == NULL)
		return SL_ECLOSED;
	/* libraft's entries since its last snapshot are read back from the
	 * log at load: nothing past the snapshot's anchor may change. */
	int64_t anchor = rio->snap != NULL ? rio->snap_anchor : 0;
	struct rop *op = op_new(rio, OP_CLEAN);
	if (op == NULL)
		return SL_ENOMEM;
	op->offset = floor < anchor ? floor : anchor;
	op->clean = *what;
	op->ccb = cb;
	op->carg = arg;
	kick(rio);
	return SL_OK;
}

static int rio_truncate(struct raft_io *io, raft_index index)
{
	struct sl_rio *rio = rio_of(io);
	struct rent *e = mirror_at(rio, index);
	if (e == NULL)
		return 0; /* nothing of it here */
	struct rop *op = op_new(rio, OP_TRUNCATE);
	if (op == NULL)
		return RAFT_NOMEM;
	op->offset = e->base;
	rio->next_offset = e->base;
	rio->nents = index - rio->first;
	if (rio->last_stored >= index)
		rio->last_stored = index - 1;
	/* Appends still on their way to the disk will store entries this
	 * truncation removes: when they complete, only what precedes index
	 * counts as stored (guards (b) and (h) read last_stored). */
	if (rio->running != NULL && rio->running->kind == OP_APPEND &&
	    rio->running->last_index >= index)
		rio->running->last_index = index - 1;
	for (struct rop *q = rio->head; q != op; q = q->next)
		if (q->kind == OP_APPEND && q->last_index >= index)
			q->last_index = index - 1;
	kick(rio);
	return 0;
}

/* ---- raft_io: snapshots --------------------------------------------- */

static int rio_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
			    const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
	struct sl_rio *rio = rio_of(io);
	struct rop *op = op_new(rio, OP_SNAPSHOT);
	if (op == NULL)
		return RAFT_NOMEM;
	op->sreq = req;
	op->scb = cb;
	op->trailing = trailing;
	int rv;
	if (trailing == 0) {
		/* Installed from the leader: the data is the leader's stored
		 * manifest, as rio_snapshot_get handed it out. */
		if (snapshot->n_bufs != 1 ||
		    sl_rmanifest_decode(snapshot->bufs[0].base, snapshot->bufs[0].len, &op->m) != SL_OK) {
			fence(rio, SL_EINVALID_RECORD, "an installed snapshot does not decode");
			return 0;
		}
		raft_configuration_close(&op->m.conf);
		/* What this replica has committed matches the leader. */
		struct raft *r = raft_of(rio);
		raft_index ci = r != NULL ? r->commit_index : 0;
		struct rent *ce = mirror_at(rio, ci);
		op->offset = ce != NULL ? ce->next : ci == rio->snap_index && rio->snap != NULL ? rio->snap_anchor : 0;
		op->from = rio->install_from;
		op->install_bufs = snapshot->bufs;
		op->mlen = snapshot->bufs[0].len;
		op->manifest = raft_malloc(op->mlen);
		if (op->manifest == NULL) {
			/* Queued already: libraft must get its callback. */
			fence(rio, SL_ENOMEM, "out of memory storing a snapshot");
			return 0;
		}
		memcpy(op->manifest, snapshot->bufs[0].base, op->mlen);
		rio->nents = 0;
		rio->first = snapshot->index + 1;
		rio->next_offset = op->m.anchor;
		rio->last_stored = 0; /* as libraft does during an install */
	} else {
		struct rent *e = mirror_at(rio, snapshot->index);
		if (e == NULL) {
			fence(rio, SL_EINVALID_ARGUMENT, "a snapshot names an entry the log lacks");
			return 0;
		}
		op->m.index = snapshot->index;
		op->m.term = snapshot->term;
		op->m.anchor = e->next;
		op->m.conf_index = snapshot->configuration_index;
		op->m.conf = snapshot->configuration;
		rv = sl_rmanifest_encode(&op->m, snapshot->bufs, snapshot->n_bufs, &op->manifest, &op->mlen);
		raft_configuration_init(&op->m.conf); /* not ours */
		if (rv != SL_OK) {
			fence(rio, SL_ENOMEM, "out of memory storing a snapshot");
			return 0;
		}
		/* The data stays: retention, not Raft, deletes segments. */
		if (snapshot->index > trailing)
			mirror_drop_before(rio, snapshot->index - trailing + 1);
	}
	op->m.index = snapshot->index;
	op->m.term = snapshot->term;
	kick(rio);
	return 0;
}

static void get_done(struct sl_rwork *w)
{
	struct rget *g = (struct rget *)w;
	struct sl_rio *rio = g->rio;
	rio->inflight_works--;
	g->cb(g->req, g->snap, g->status);
	free(g);
	after_dispatch(rio);
}

static int rio_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
			    raft_io_snapshot_get_cb cb)
{
	struct sl_rio *rio = rio_of(io);
	struct rget *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return RAFT_NOMEM;
	g->req = req;
	g->cb = cb;
	g->rio = rio;
	g->status = rio->snap == NULL ? RAFT_NOTFOUND : 0;
	int rv;
	if (rio->snap != NULL && (rv = snapshot_copy(rio, &g->snap)) != 0) {
		free(g);
		return rv;
	}
	g->w.done = get_done;
	rio->inflight_works++;
	rio->env->submit(rio->env, &g->w);
	return 0;
}

/* ---- raft_io: network, time, lifecycle ------------------------------ */

static void after_dispatch(struct sl_rio *rio);

static void start_done(struct sl_rwork *w)
{
	struct sl_rio *rio = (struct sl_rio *)((char *)w - offsetof(struct sl_rio, start_work));
	rio->inflight_works--;
	after_dispatch(rio); /* raft_start may have made this node leader */
}

static int rio_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
	struct sl_rio *rio = rio_of(io);
	rio->tick_ms = msecs;
	rio->tick = tick;
	rio->recv = recv;
	rio->start_work.work = NULL;
	rio->start_work.done = start_done;
	rio->inflight_works++;
	rio->env->submit(rio->env, &rio->start_work);
	return 0;
}

static void send_done(struct sl_rwork *w)
{
	struct rsend *s = (struct rsend *)w;
	struct sl_rio *rio = s->rio;
	rio->inflight_works--;
	if (s->cb != NULL)
		s->cb(s->req, 0);
	if (rio->n_spare_sends < SPARE_SENDS) {
		s->link = rio->spare_sends;
		rio->spare_sends = s;
		rio->n_spare_sends++;
	} else {
		free(s);
	}
	after_dispatch(rio);
}

/* Caps an AppendEntries at the byte budget (always one entry at least);
 * libraft sends every entry from next_index, and the follower's reply
 * makes it send the rest in later rounds. */
static void cap_append_entries(struct sl_rio *rio, struct raft_append_entries *ae)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < ae->n_entries; i++) {
		total += ae->entries[i].buf.len;
		if (i > 0 && total > rio->cfg.max_append_bytes) {
			ae->n_entries = i;
			return;
		}
	}
}

/* Rewrites an outgoing message as the guards require; false: drop it. */
static bool guard_outgoing(struct sl_rio *rio, struct raft_message *m)
{
	switch (m->type) {
	case RAFT_IO_REQUEST_VOTE:
		/* Guard (b): advertise only what is durable. */
		m->request_vote.last_log_index = rio->last_stored;
		m->request_vote.last_log_term = term_at(rio, rio->last_stored);
		break;
	case RAFT_IO_REQUEST_VOTE_RESULT:
		/* Pre-vote liveness: 0.15 answers every pre-vote with the
		 * request's term, so a candidate whose term is behind never
		 * learns it, and if it holds the most up-to-date log nobody can
		 * be elected. A refusal carries this node's term when higher
		 * (learning a higher term is always safe). */
		if (m->request_vote_result.pre_vote == raft_tribool_true &&
		    !m->request_vote_result.vote_granted &&
		    current_term(rio) > m->request_vote_result.term)
			m->request_vote_result.term = current_term(rio);
		break;
	case RAFT_IO_APPEND_ENTRIES_RESULT: {
		if (m->append_entries_result.rejected != 0)
			break;
		/* Guard (h): report as matched only what was checked
		 * against this term's leader (an InstallSnapshot whose last
		 * entry libraft found here checks that much)... */
		/* Only a message of the current term checks anything: 0.15
		 * answers a stale one with rejected = prev, which is 0 (a
		 * "success") when prev is 0. */
		if (rio->in_ae && rio->rx_term == current_term(rio))
			verified_up_to(rio, rio->ae_prev + rio->ae_n);
		if (rio->in_is && rio->rx_term == current_term(rio))
			verified_up_to(rio, rio->is_index);
		if (rio->v_term != current_term(rio))
			return false;
		/* ...and only what is durable: 0.15 (and 0.18) answer an
		 * InstallSnapshot whose entries are all here, durable or not,
		 * with success at once. */
		raft_index cap = rio->verified < rio->last_stored ? rio->verified : rio->last_stored;
		if (cap == 0)
			return false;
		if (m->append_entries_result.last_log_index > cap)
			m->append_entries_result.last_log_index = cap;
		break;
	}
	default:
		break;
	}
	return true;
}

/* Hands a send to the transport and completes it on a later turn. */
static void send_now(struct sl_rio *rio, struct rsend *s, const struct raft_message *m)
{
	/* A message the transport refuses (a full queue, a peer in backoff)
	 * is lost, as on a bad network, and reported sent: libraft 0.15
	 * frees a received AppendEntries' entries twice when the reply it
	 * sends from inside the receive fails. */
	if (m != NULL)
		(void)rio->net->send(rio->net, rio->cfg.group, m);
	s->w.done = send_done;
	rio->inflight_works++;
	rio->env->submit(rio->env, &s->w);
}

static int rio_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *msg,
		    raft_io_send_cb cb)
{
	struct sl_rio *rio = rio_of(io);
	if (rio->fenced || rio->net == NULL)
		return RAFT_NOCONNECTION;
	struct rsend *s = rio->spare_sends;
	if (s != NULL) {
		rio->spare_sends = s->link;
		rio->n_spare_sends--;
	} else if ((s = malloc(sizeof(*s))) == NULL) {
		return RAFT_NOCONNECTION;
	}
	*s = (struct rsend){ .req = req, .cb = cb, .rio = rio };
	struct raft_message m = *msg;
	if (m.type == RAFT_IO_APPEND_ENTRIES)
		cap_append_entries(rio, &m.append_entries);
	bool keep = !guards || guard_outgoing(rio, &m);
	if (keep && (meta_pending(rio) || rio->held_sends != NULL)) {
		/* The gate: libraft keeps what the message points to until
		 * its callback, which fires once the message is out. */
		s->msg = m;
		if (rio->held_tail != NULL)
			rio->held_tail->link = s;
		else
			rio->held_sends = s;
		rio->held_tail = s;
		return 0;
	}
	send_now(rio, s, keep ? &m : NULL);
	return 0;
}

/* The shared store made this group's term and vote durable (or failed). */
static void meta_ready(struct sl_rmeta_waiter *w, int status)
{
	struct sl_rio *rio = (struct sl_rio *)((char *)w - offsetof(struct sl_rio, meta_waiter));
	if (rio->fenced || rio->closing)
		return;
	if (status != SL_OK) {
		fence(rio, status, "term and vote could not be stored");
		return;
	}
	while (rio->held_sends != NULL && !meta_pending(rio)) {
		struct rsend *s = rio->held_sends;
		if ((rio->held_sends = s->link) == NULL)
			rio->held_tail = NULL;
		s->link = NULL;
		send_now(rio, s, &s->msg);
	}
	kick(rio);
}

static raft_time rio_time(struct raft_io *io)
{
	struct sl_rio *rio = rio_of(io);
	return (raft_time)rio->env->now_ms(rio->env);
}

static int rio_random(struct raft_io *io, int min, int max)
{
	struct sl_rio *rio = rio_of(io);
	/* libraft draws only election timeouts, in [election, 2 x election). */
	if (rio->hurry > 0 && min >= 4) {
		rio->hurry--;
		return rio->env->random(rio->env, min / 4, min / 2);
	}
	return rio->env->random(rio->env, min, max);
}

void sl_rio_hurry(struct raft_io *io, unsigned draws)
{
	rio_of(io)->hurry = draws;
}

static int rio_async_work(struct raft_io *io, struct raft_io_async_work *req,
			  raft_io_async_work_cb cb)
{
	(void)io;
	(void)req;
	(void)cb;
	return RAFT_NOTFOUND; /* only for fsm v3 async snapshots, unused */
}

static void rio_free(struct sl_rio *rio)
{
	struct rop *op;
	while ((op = rio->head) != NULL) {
		rio->head = op->next;
		op_free(op);
	}
	while ((op = rio->held) != NULL) {
		rio->held = op->next;
		op_free(op);
	}
	if (rio->log != NULL)
		sl_log_close(rio->log);
	if (rio->snap != NULL)
		raft_free(rio->snap);
	free(rio->ents);
	while (rio->spare_sends != NULL) {
		struct rsend *s = rio->spare_sends;
		rio->spare_sends = s->link;
		free(s);
	}
	free(rio->logdir);
	free(rio->dir);
	free(rio);
}

/* Ends one op at close, newest callbacks first. libraft is unavailable by
 * then and throws the outcome away, but on a failed append 0.15 truncates
 * its log from that index without checking it against the end (an older
 * leader's append, after it became a follower and cut its log below,
 * corrupts its heap): appends are ended with status 0, which it ignores
 * when unavailable. An install it fails leaks its bufs array (0.15): freed
 * here. */
static void cancel_op(struct sl_rio *rio, struct rop *op)
{
	struct raft *r = raft_of(rio);
	bool unavailable = r != NULL && r->state == RAFT_UNAVAILABLE;
	if (op->kind == OP_APPEND) {
		for (size_t i = op->ncbs; i-- > 0;)
			op->cbs[i].cb(op->cbs[i].req, unavailable ? 0 : RAFT_CANCELED);
	} else if (op->kind == OP_SNAPSHOT) {
		op->scb(op->sreq, RAFT_CANCELED);
		if (op->trailing == 0 && op->install_bufs != NULL)
			raft_free(op->install_bufs);
	} else if (op->kind == OP_CLEAN) {
		op->ccb(op->carg, SL_ECANCELED, &op->cleaned);
	}
	op_free(op);
}

/* Cancels what never ran or was held, once no disk work is in flight.
 * Newest first: libraft 0.15 truncates its log from a failed append's
 * index on, and truncating past the end of its log (an older append
 * cancelled first) corrupts its heap, assertions being compiled out. */
static void close_finish(struct sl_rio *rio)
{
	struct raft_io *io = rio->io;
	struct rop *queued = rio->head, *held = rio->held, *rev = NULL;
	rio->held = rio->head = rio->tail = NULL;
	while (queued != NULL) { /* the queue is oldest first: reverse it */
		struct rop *next = queued->next;
		queued->next = rev;
		rev = queued;
		queued = next;
	}
	for (struct rop *op = rev, *next; op != NULL; op = next) {
		next = op->next;
		cancel_op(rio, op);
	}
	for (struct rop *op = held, *next; op != NULL; op = next) { /* newest first */
		next = op->next;
		cancel_op(rio, op);
	}
	while (rio->held_sends != NULL) { /* never sent: term and vote not durable */
		struct rsend *s = rio->held_sends;
		rio->held_sends = s->link;
		if (s->cb != NULL)
			s->cb(s->req, RAFT_CANCELED);
		free(s);
	}
	raft_io_close_cb cb = rio->close_cb;
	rio_free(rio);
	io->impl = NULL;
	if (cb != NULL)
		cb(io);
}

static void close_poll(struct sl_rwork *w);

static void close_wait(struct sl_rio *rio, struct sl_rwork *w)
{
	if (rio->inflight_works == 0) {
		free(w);
		close_finish(rio);
		return;
	}
	/* Let in-flight work and deferred callbacks finish first. */
	w->work = NULL;
	w->done = close_poll;
	rio->env->submit(rio->env, w);
}

struct rclose {
	struct sl_rwork w;
	struct sl_rio *rio;
};

static void close_poll(struct sl_rwork *w)
{
	struct rclose *c = (struct rclose *)w;
	close_wait(c->rio, w);
}

static void rio_close(struct raft_io *io, raft_io_close_cb cb)
{
	struct sl_rio *rio = rio_of(io);
	rio->closing = true;
	if (rio->cfg.meta != NULL)
		sl_rmeta_cancel(rio->cfg.meta, &rio->meta_waiter);
	rio->close_cb = cb;
	struct rclose *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close_finish(rio); /* cannot wait: callbacks may race */
		return;
	}
	c->rio = rio;
	c->w.done = close_poll;
	rio->env->submit(rio->env, &c->w); /* never call back inside close */
}

/* ---- Public --------------------------------------------------------- */

int sl_rio_init(struct raft_io *io, const struct sl_rio_config *cfg, sl_vfs *vfs,
		struct sl_renv *env, struct sl_rnet *net, sl_rio_fault_cb fault, void *fault_arg)
{
	struct sl_rio *rio = calloc(1, sizeof(*rio));
	if (rio == NULL || (rio->dir = strdup(cfg->dir)) == NULL ||
	    (rio->logdir = malloc(strlen(cfg->dir) + 5)) == NULL) {
		if (rio != NULL)
			free(rio->dir);
		free(rio);
		return SL_ENOMEM;
	}
	rio->io = io;
	rio->cfg = *cfg;
	rio->cfg.dir = rio->dir;
	if (rio->cfg.max_append_bytes == 0)
		rio->cfg.max_append_bytes = 1 << 20;
	sprintf(rio->logdir, "%s/log", rio->dir);
	rio->vfs = vfs != NULL ? vfs : sl_vfs_posix();
	rio->env = env;
	rio->net = net;
	rio->fault = fault;
	rio->fault_arg = fault_arg;
	rio->first = 1;
	rio->meta_waiter.ready = meta_ready;
	memset(io, 0, sizeof(*io));
	io->version = 2;
	io->impl = rio;
	io->init = rio_init;
	io->close = rio_close;
	io->load = rio_load;
	io->start = rio_start;
	io->bootstrap = rio_bootstrap;
	io->recover = rio_recover;
	io->set_term = rio_set_term;
	io->set_vote = rio_set_vote;
	io->send = rio_send;
	io->append = rio_append;
	io->truncate = rio_truncate;
	io->snapshot_put = rio_snapshot_put;
	io->snapshot_get = rio_snapshot_get;
	io->time = rio_time;
	io->random = rio_random;
	io->async_work = rio_async_work;
	return SL_OK;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	struct sl_rio *rio = req->data;
	/* The barrier of the term it was proposed in committed: from now on
	 * the leader's high watermark and acknowledgements are safe. */
	if (status == 0)
		rio->ready_term = rio->barrier_term;
	free(req);
}

/* Runs after every call into libraft returns (0.15 has no state-change
 * callback): proposes the election barrier of guard (a), releases a held
 * TimeoutNow (d), and fences an instance libraft left unavailable. */
static void after_dispatch(struct sl_rio *rio)
{
	struct raft *r = raft_of(rio);
	if (rio->fenced || rio->closing)
		return;
	if (r != NULL && r->state == RAFT_UNAVAILABLE) {
		fence(rio, SL_EUNKNOWN, "libraft became unavailable");
		return;
	}
	if (!guards)
		return;
	if (r != NULL && r->state == RAFT_LEADER && rio->barrier_term != r->current_term) {
		struct raft_barrier *req = calloc(1, sizeof(*req));
		if (req != NULL) {
			req->data = rio;
			rio->barrier_term = r->current_term;
			if (raft_barrier(r, req, barrier_cb) != 0) {
				free(req);
				rio->barrier_term = 0; /* try again next time */
			}
		}
	}
	if (rio->held_tn && !disk_busy(rio)) {
		rio->held_tn = false;
		struct raft_message tn = rio->tn;
		rio->recv(rio->io, &tn);
		after_dispatch(rio);
	}
	xfer_step(rio);
}

/* ---- Leadership transfer (guard (g)) -------------------------------- */

#define XFER_ATTEMPTS 5

static void xfer_finish(struct sl_rio *rio, int status)
{
	rio->xfer.active = false;
	if (rio->xfer.cb != NULL)
		rio->xfer.cb(rio->xfer.arg, status);
}

static void xfer_cb(struct raft_transfer *req)
{
	struct sl_rio *rio = req->data;
	rio->xfer.in_flight = false; /* whether it worked is checked next */
}

/* libraft 0.15's target may silently ignore TimeoutNow, and the callback
 * fires either way: transfer only to a caught-up target, check who leads
 * afterwards, retry. Runs from every dispatch and tick. */
static void xfer_step(struct sl_rio *rio)
{
	struct raft *r = raft_of(rio);
	if (!rio->xfer.active || r == NULL)
		return;
	raft_id leader;
	const char *address;
	raft_leader(r, &leader, &address);
	if (leader == rio->xfer.target) {
		xfer_finish(rio, SL_OK);
		return;
	}
	if (rio->env->now_ms(rio->env) > rio->xfer.deadline ||
	    (!rio->xfer.in_flight && rio->xfer.attempts >= XFER_ATTEMPTS)) {
		xfer_finish(rio, SL_EREQUEST_TIMED_OUT);
		return;
	}
	if (rio->xfer.in_flight)
		return;
	if (r->state != RAFT_LEADER)
		return; /* an election is under way: see who wins */
	unsigned i;
	for (i = 0; i < r->configuration.n; i++)
		if (r->configuration.servers[i].id == rio->xfer.target)
			break;
	if (i == r->configuration.n || r->configuration.servers[i].role != RAFT_VOTER) {
		xfer_finish(rio, SL_EINVALID_ARGUMENT);
		return;
	}
	if (!guards || r->leader_state.progress[i].match_index >= mirror_last(rio)) {
		rio->xfer.attempts++;
		rio->xfer.req.data = rio;
		rio->xfer.in_flight = true;
		if (raft_transfer(r, &rio->xfer.req, rio->xfer.target, xfer_cb) != 0)
			rio->xfer.in_flight = false;
		if (!guards && !rio->xfer.in_flight)
			xfer_finish(rio, SL_EREQUEST_TIMED_OUT);
	}
}

int sl_rio_transfer(struct raft_io *io, raft_id target, sl_rio_transfer_cb cb, void *arg)
{
	struct sl_rio *rio = rio_of(io);
	struct raft *r = raft_of(rio);
	if (r == NULL || r->state != RAFT_LEADER)
		return SL_ENOT_LEADER;
	if (rio->xfer.active)
		return SL_EBUSY;
	if (target == r->id)
		return SL_EINVALID_ARGUMENT;
	rio->xfer.active = true;
	rio->xfer.in_flight = false;
	rio->xfer.target = target;
	rio->xfer.attempts = 0;
	rio->xfer.deadline = rio->env->now_ms(rio->env) + 10 * (int64_t)r->election_timeout;
	rio->xfer.cb = cb;
	rio->xfer.arg = arg;
	xfer_step(rio);
	return SL_OK;
}

void sl_rio_transfer_poll(struct raft_io *io)
{
	struct sl_rio *rio = rio_of(io);
	if (!rio->fenced && !rio->closing)
		xfer_step(rio);
}

void sl_rio_tick(struct raft_io *io)
{
	struct sl_rio *rio = rio_of(io);
	if (rio->tick == NULL || rio->fenced || rio->closing)
		return;
	/* Guard (d): a follower persisting entries or a snapshot must not
	 * stand for election yet. */
	if (guards && raft_state_of(rio) == RAFT_FOLLOWER && disk_busy(rio))
		return;
	rio->tick(io);
	after_dispatch(rio);
	xfer_step(rio); /* also when guards are off */
}

/* An AppendEntries whose prev_log_index lies below this node's snapshot:
 * 0.15 appends its entries at the wrong indexes and later frees memory
 * twice. Entries up to the snapshot are committed, so the leader holds
 * them too, with the same terms: the message is rewritten to start right
 * after the snapshot (prev = snapshot index and term), keeping only the
 * entries past it; none left makes it a heartbeat, which libraft answers
 * with how far this node is. Returns 0 or RAFT_NOMEM. */
static int skip_snapshotted(struct raft *r, struct raft_append_entries *ae)
{
	raft_index snap = r->log.snapshot.last_index;
	raft_index skip = snap - ae->prev_log_index;
	struct raft_entry *ents = NULL;
	unsigned n = skip < ae->n_entries ? ae->n_entries - (unsigned)skip : 0;
	if (n > 0) {
		ents = raft_malloc(n * sizeof(*ents));
		if (ents == NULL)
			return RAFT_NOMEM;
		memcpy(ents, ae->entries + skip, n * sizeof(*ents));
	} else if (ae->n_entries > 0) {
		raft_free(ae->entries[0].batch); /* every entry shares it */
	}
	raft_free(ae->entries);
	ae->entries = ents;
	ae->n_entries = n;
	ae->prev_log_index = snap;
	ae->prev_log_term = r->log.snapshot.last_term;
	return 0;
}

void sl_rio_deliver(struct raft_io *io, struct raft_message *msg)
{
	struct sl_rio *rio = rio_of(io);
	struct raft *r = raft_of(rio);
	if (rio->recv == NULL || rio->fenced || rio->closing) {
		sl_rmsg_discard(msg); /* delivery takes ownership, as libraft's does */
		return;
	}
	if (guards && r != NULL && msg->type == RAFT_IO_APPEND_ENTRIES &&
	    msg->append_entries.prev_log_index < r->log.snapshot.last_index &&
	    skip_snapshotted(r, &msg->append_entries) != 0) {
		sl_rmsg_discard(msg);
		return;
	}
	if (guards && msg->type == RAFT_IO_TIMEOUT_NOW && disk_busy(rio)) {
		/* Guard (d): acted on once the disk is idle. */
		rio->tn = *msg;
		rio->held_tn = true;
		return;
	}
	if (guards && msg->type == RAFT_IO_APPEND_ENTRIES_RESULT && r != NULL &&
	    r->state == RAFT_LEADER && msg->append_entries_result.rejected == 0 &&
	    term_at(rio, r->last_stored) < r->current_term) {
		/* Guard (a): until an entry of its own term is durable here, a
		 * leader may not count replicas of older-term entries (Raft's
		 * figure 8): no success reaches its last stored index. */
		raft_index cap = r->last_stored > 0 ? r->last_stored - 1 : 0;
		if (msg->append_entries_result.last_log_index > cap)
			msg->append_entries_result.last_log_index = cap;
	}
	if (msg->type == RAFT_IO_INSTALL_SNAPSHOT) {
		rio->install_from = msg->server_id;
		rio->in_is = true;
		rio->is_index = msg->install_snapshot.last_index;
		rio->rx_term = msg->install_snapshot.term;
	}
	if (msg->type == RAFT_IO_APPEND_ENTRIES) {
		rio->in_ae = true;
		rio->rx_term = msg->append_entries.term;
		rio->ae_prev = msg->append_entries.prev_log_index;
		rio->ae_n = msg->append_entries.n_entries;
	}
	rio->recv(io, msg);
	rio->in_ae = false;
	rio->in_is = false;
	after_dispatch(rio);
}

bool sl_rio_leader_ready(struct raft_io *io)
{
	struct sl_rio *rio = rio_of(io);
	struct raft *r = raft_of(rio);
	return r != NULL && r->state == RAFT_LEADER && rio->ready_term == r->current_term &&
	       (!guards || rio->ready_term != 0);
}

void sl_rio_tune(struct raft *r, unsigned heartbeat_ms, unsigned election_ms)
{
	raft_set_heartbeat_timeout(r, heartbeat_ms ? heartbeat_ms : 200);
	raft_set_election_timeout(r, election_ms ? election_ms : 1000);
	raft_set_install_snapshot_timeout(r, 5 * (election_ms ? election_ms : 1000));
	raft_set_pre_vote(r, true);
	raft_set_snapshot_threshold(r, 256);
	raft_set_snapshot_trailing(r, 64);
}

int sl_rio_snapshot_payload(const void *buf, size_t len, const void **fsm, size_t *fsm_len)
{
	struct sl_rmanifest m;
	int rv = sl_rmanifest_decode(buf, len, &m);
	if (rv != SL_OK)
		return rv;
	raft_configuration_close(&m.conf);
	*fsm = m.fsm;
	*fsm_len = m.fsm_len;
	return SL_OK;
}

sl_log *sl_rio_log(struct raft_io *io)
{
	return rio_of(io)->log;
}

int64_t sl_rio_next_offset(struct raft_io *io)
{
	return rio_of(io)->next_offset;
}

int64_t sl_rio_offset_after(struct raft_io *io, raft_index index)
{
	struct sl_rio *rio = rio_of(io);
	if (rio->nents == 0 || index >= mirror_last(rio))
		return rio->next_offset;
	const struct rent *e = mirror_at(rio, index);
	if (e != NULL)
		return e->next;
	/* Below the mirror: in a snapshot, so committed; the first entry
	 * the mirror holds starts right after (or past) it. */
	return mirror_at(rio, rio->first)->base;
}

raft_index sl_rio_last_stored(struct raft_io *io)
{
	return rio_of(io)->last_stored;
}

int sl_rio_seed(const char *dir, const struct sl_log_config *lc, sl_vfs *vfs, struct sl_rnet *net,
		uint32_t src_group, raft_id from, int64_t end, char *errmsg)
{
	if (vfs == NULL)
		vfs = sl_vfs_posix();
	errmsg[0] = 0;
	char logdir[PATH_MAX];
	void *data;
	size_t len;
	uint64_t version;
	snprintf(logdir, sizeof(logdir), "%s/log", dir);
	int rv = vfs->mkdir(vfs, dir, 0755);
	if (rv < 0 && rv != -EEXIST) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s: %s", dir, strerror(-rv));
		return SL_EIO;
	}
	if (rv == 0 && (rv = sl_vfs_sync_parent(vfs, dir)) < 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s: %s", dir, strerror(-rv));
		return SL_EIO;
	}
	/* A group that ever ran, or a finished seed, is never overwritten; a
	 * seed cut short (no base record yet) starts over. */
	static const char *const kept[] = { "meta", "snap", "base" };
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		rv = sl_slot_load(vfs, dir, kept[i], &data, &len, &version, errmsg);
		if (rv == SL_OK) {
			free(data);
			snprintf(errmsg, SL_ERRMSG_SIZE, "%s already holds a group", dir);
			return SL_EEXISTS;
		}
		if (rv != SL_ENOT_FOUND)
			return rv;
	}
	sl_log *log;
	rv = sl_log_open(logdir, lc, vfs, &log, errmsg);
	if (rv != SL_OK)
		return rv;
	int64_t pos = 0;
	bool first = true;
	while (rv == SL_OK && pos < end) {
		uint8_t *buf = NULL;
		size_t n = 0, off = 0;
		rv = net->fetch(net, src_group, from, pos, end, &buf, &n);
		if (rv == SL_OK && n == 0) {
			snprintf(errmsg, SL_ERRMSG_SIZE,
				 "group %u on node %llu has no whole batch from offset %lld below %lld "
				 "(its log ends there, or %lld is inside a batch)", src_group,
				 (unsigned long long)from, (long long)pos, (long long)end, (long long)end);
			rv = SL_EOFFSET_OUT_OF_RANGE;
		}
		while (rv == SL_OK && off < n) {
			struct sl_batch_header h;
			rv = sl_batch_check(buf + off, n - off, UINT32_MAX, &h);
			if (rv == SL_OK && (h.base_offset < pos || sl_batch_last_offset(&h) >= end))
				rv = SL_ELOG_OFFSET_ORDER;
			if (rv == SL_OK && first) {
				/* The history starts where the source's log does. */
				rv = sl_log_reset(log, h.base_offset);
				first = false;
			}
			if (rv == SL_OK)
				rv = sl_log_append(log, buf + off, sl_batch_total_size(&h));
			if (rv != SL_OK && errmsg[0] == 0)
				snprintf(errmsg, SL_ERRMSG_SIZE, "%s", sl_log_errmsg(log));
			off += sl_batch_total_size(&h);
			pos = sl_batch_last_offset(&h) + 1;
		}
		free(buf);
	}
	if (rv == SL_OK && first)
		rv = sl_log_reset(log, end); /* nothing below end: an empty history */
	if (rv == SL_OK && sl_log_end_offset(log) != end) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "the copy ends at offset %lld, not %lld",
			 (long long)sl_log_end_offset(log), (long long)end);
		rv = SL_ELOG_OFFSET_ORDER;
	}
	if (rv == SL_OK)
		rv = sl_log_flush(log);
	sl_log_close(log);
	if (rv != SL_OK) {
		if (errmsg[0] == 0)
			snprintf(errmsg, SL_ERRMSG_SIZE, "%s", sl_strerror(rv));
		return rv;
	}
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)end >> (8 * i));
	return sl_slot_store(vfs, dir, "base", b, sizeof(b), 1, errmsg);
}
