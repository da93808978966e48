/* raft/: Sluice's raft_io backend, whose Raft log is the partition log.
 *
 * One sl_rio per Raft group. It implements libraft's struct raft_io
 * (version 2) over a storage/ log in the group's directory:
 *
 *   <dir>/log/      the partition log (storage/): every Raft entry is one
 *                   record batch; COMMAND entries are the batches producers
 *                   sent, CHANGE and BARRIER entries are control batches
 *   <dir>/meta1,2   term and vote (raft/slot.h), unless the node keeps
 *                   every group's in one shared store (rmeta.h)
 *   <dir>/snap1,2   the snapshot manifest
 *
 * What the backend needs from its surroundings comes through struct
 * sl_renv, so that the same code runs on a libuv loop with a worker thread
 * and in the deterministic simulator. Ticks and received messages are
 * pushed in by the owner (sl_rio_tick, sl_rio_deliver): one timer and one
 * connection can serve every group of a node.
 *
 * Threads: everything here runs on the owner's loop thread; disk work runs
 * wherever sl_renv.submit puts it, one work item per group at a time. */
#ifndef SL_RAFT_RIO_H
#define SL_RAFT_RIO_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage.h"

/* A unit of deferred work: work() runs off the loop thread (may be NULL),
 * then done() on the loop thread. */
struct sl_rwork {
	void (*work)(struct sl_rwork *w);
	void (*done)(struct sl_rwork *w);
	struct sl_rwork *next; /* for the environment's queue */
};

struct sl_renv {
	void *data;
	/* Queues w; work and done run later, never inside this call. Items
	 * without work complete in submission order; the backend never has
	 * two items with work in flight for one group. */
	void (*submit)(struct sl_renv *env, struct sl_rwork *w);
	/* Milliseconds, monotonic (virtual in the simulator). */
	int64_t (*now_ms)(struct sl_renv *env);
	/* Uniform in [min, max]. */
	int (*random)(struct sl_renv *env, int min, int max);
};

/* Outgoing messages. send() must copy what it needs before it returns
 * (the backend fires raft's send callback right after). Returns 0, or
 * RAFT_NOCONNECTION when the peer is unreachable or the message is
 * refused; the backend then counts the message as lost and tells libraft
 * it was sent (0.15 double-frees entries when a reply sent from inside a
 * receive fails). */
struct sl_rnet {
	void *data;
	int (*send)(struct sl_rnet *net, uint32_t group, const struct raft_message *msg);
	/* Copies whole batches of the group's log from node `from`, starting
	 * with the batch at offset and ending at or before end, into a
	 * malloc'd *buf (the caller frees). Used when a snapshot is installed
	 * beyond this replica's log. Runs on the disk thread; may block.
	 * Returns SL_OK (with *len > 0) or an error. NULL: not supported
	 * (the log then restarts at the snapshot's offset). */
	int (*fetch)(struct sl_rnet *net, uint32_t group, raft_id from, int64_t offset, int64_t end,
		     uint8_t **buf, size_t *len);
};

struct sl_rmeta; /* rmeta.h */

struct sl_rio_config {
	const char *dir;            /* the group's directory */
	uint32_t group;             /* Raft group id (0: the controller) */
	/* The node's shared term/vote store, or NULL for per-group slots.
	 * With the store, set_term and set_vote return at once and the
	 * group's sends and disk writes wait until the record is durable. */
	struct sl_rmeta *meta;
	struct sl_log_config log;   /* settings of the partition log */
	uint64_t max_append_bytes;  /* AppendEntries payload budget; 0: 1 MiB */
	/* Called on the loop once the entries up to `last` are durable on
	 * this node (after libraft heard of it); NULL: not called. */
	void (*stored)(void *arg, uint32_t group, raft_index last);
	void *stored_arg;
};

/* Fault report: the group hit a disk error and is fenced (no call into
 * libraft sees the error); the owner must close and restart it. Called
 * from the loop through the environment, never inside a libraft call, so
 * closing from it is fine. */
typedef void (*sl_rio_fault_cb)(void *arg, uint32_t group, int err, const char *why);

struct sl_rio;

/* Groups fenced in this process so far (for a metric). The reason of each
 * reaches the owner through the fault callback, which logs it. */
uint64_t sl_rio_fence_count(void);

/* Sets up io (struct raft_io, version 2) to use a new backend. Nothing
 * touches the disk until libraft calls load() or bootstrap(). vfs NULL:
 * POSIX. Returns SL_OK or SL_ENOMEM. */
int sl_rio_init(struct raft_io *io, const struct sl_rio_config *cfg, sl_vfs *vfs,
		struct sl_renv *env, struct sl_rnet *net, sl_rio_fault_cb fault, void *fault_arg);

/* libraft's io->close frees the backend (after its close callback). */

/* What a cleaning run applies (the owner takes it from its configuration). */
struct sl_rio_cleaning {
	uint64_t segment_bytes;  /* the active segment's roll size; 0: unchanged */
	int64_t retention_bytes; /* -1: unlimited */
	int64_t retention_ms;    /* -1: unlimited */
	bool compact;            /* cleanup.policy=compact: compaction runs too */
	int64_t now_ms;          /* wall clock */
};

/* What it did. */
struct sl_rio_cleaned {
	size_t segments_deleted;        /* by retention */
	struct sl_compaction_stats compaction;
};

/* The log's limits, retention and (compact) compaction, queued behind
 * the group's earlier disk work and run where its appends run (the log's
 * writer, off the loop): the segment size and retention limits are set
 * (storage.h sl_log_set_limits), then whole sealed segments go from the
 * log's front while past retention_bytes or retention_ms (sl_log_retain),
 * then compaction rewrites sealed segments (sl_log_compact_*; the
 * group's appends wait while it runs, a pass bounded by the log's
 * compact_map_bytes). Neither goes at or above floor (the caller's: the
 * high watermark) nor the last snapshot's anchor (libraft reads its
 * entries since the snapshot back from the log; no snapshot yet: nothing
 * is cleaned). cb runs on the loop with SL_OK or the log's error (the
 * group carries on: a later run retries) and what was done, or
 * SL_ECANCELED when the group closed first. Returns SL_OK, SL_ENOMEM, or
 * SL_ECLOSED (fenced or closing: cb never runs). Loop thread. */
typedef void (*sl_rio_clean_cb)(void *arg, int rv, const struct sl_rio_cleaned *done);
int sl_rio_clean(struct raft_io *io, int64_t floor, const struct sl_rio_cleaning *what,
		 sl_rio_clean_cb cb, void *arg);

/* Drives the group: call every heartbeat interval (raft's tick) and for
 * every message received for it. Loop thread. Delivery takes ownership of
 * the message's entries and snapshot data (laid out as sl_rmsg_clone does),
 * whether the message reaches libraft or is dropped (fenced, closing,
 * stale). */
void sl_rio_tick(struct raft_io *io);
void sl_rio_deliver(struct raft_io *io, struct raft_message *msg);

/* The partition log, for readers (fetch). Valid after load(). */
sl_log *sl_rio_log(struct raft_io *io);
/* The offset the next entry will get: one past the last entry in Raft's
 * log, durable or not. A leader stamps a COMMAND batch with it before
 * raft_apply. */
int64_t sl_rio_next_offset(struct raft_io *io);
/* The offset one past the last offset of entry index (index 0, or one
 * below every entry this backend still knows: the log's first known
 * offset). A leader's high watermark is sl_rio_offset_after(commit
 * index). */
int64_t sl_rio_offset_after(struct raft_io *io, raft_index index);
/* Last index made durable. */
raft_index sl_rio_last_stored(struct raft_io *io);
/* True once this node leads and the barrier it proposed on election has
 * committed: only then may the leader expose its high watermark or
 * acknowledge produces (guard (a), libraft-guards.md). */
bool sl_rio_leader_ready(struct raft_io *io);

/* Creates a group's directory and log as bootstrap would with voters
 * [0..n), without the term record (load takes a lone CHANGE entry of term
 * 1 as a bootstrap whose term was not recorded yet). Blocking, on any
 * thread: it lets the owner create many groups at once on a thread pool
 * and start each afterwards from its directory. Returns SL_OK, SL_EEXISTS
 * (the directory exists: nothing touched), or an error with errmsg. */
int sl_rio_create(const char *dir, const struct sl_log_config *lc, sl_vfs *vfs,
		  const uint64_t *voters, unsigned n, char *errmsg);

/* The next draws election timeouts are a quarter to a half of the
 * election timeout instead of one to two: a group just created calls it
 * on its preferred leader before raft_start, so that this node campaigns
 * first and the group has a leader in a fraction of the usual wait.
 * Timing only: safety does not depend on it. */
void sl_rio_hurry(struct raft_io *io, unsigned draws);

/* Hands leadership to target, a voter (guard (g)): waits until target
 * holds every entry, calls raft_transfer, then checks who leads, retrying
 * up to 5 times within 10 election timeouts (libraft 0.15's target can
 * ignore the request silently). cb(arg, status) fires once, from a later
 * tick or dispatch: SL_OK when target leads, SL_EREQUEST_TIMED_OUT, or
 * SL_EINVALID_ARGUMENT when target is not a voter. Returns SL_ENOT_LEADER,
 * SL_EBUSY (a transfer is under way) or SL_OK. */
typedef void (*sl_rio_transfer_cb)(void *arg, int status);
int sl_rio_transfer(struct raft_io *io, raft_id target, sl_rio_transfer_cb cb, void *arg);
/* Advances a transfer (its checks and deadline) without ticking libraft:
 * for an owner that withholds ticks from a group that lost its
 * leadership while the transfer runs. */
void sl_rio_transfer_poll(struct raft_io *io);

/* Sluice's settings for a group's libraft instance, after raft_init:
 * heartbeat 200 ms, election 1 s (libraft randomizes 1x-2x), pre-vote on,
 * an install-snapshot timeout of 5 elections (libraft's 30 s default
 * left a follower whose group restarted during an install, e.g. after a
 * disk error, unreplicated for 30 s: the leader waits for the answer the
 * old instance never sends; a copy longer than that is unharmed, as the
 * InstallSnapshot sent again meanwhile is refused busy and dropped),
 * and explicit snapshot threshold (256) and trailing (64) entries. libraft
 * keeps every entry since the last snapshot, plus the trailing ones and the
 * unapplied tail, in memory: about 320 entries, 5 MiB with 16 KiB batches
 * (less with smaller ones). A snapshot costs one small fdatasync'd write
 * (the manifest), so taking one every 256 entries is cheap. Zero arguments
 * keep these defaults. */
void sl_rio_tune(struct raft *r, unsigned heartbeat_ms, unsigned election_ms);

/* Builds in dst a copy of src as a received message from `from`, in the
 * layout libraft 0.15 takes ownership of when it is delivered
 * (sl_rio_deliver): every AppendEntries entry in one raft_malloc'd batch
 * (each entry's .batch pointing at it) and a raft_malloc'd entries array;
 * InstallSnapshot's configuration and data owned. from_address must outlive
 * the delivery. Returns 0 or RAFT_NOMEM (then dst owns nothing). */
int sl_rmsg_clone(const struct raft_message *src, raft_id from, const char *from_address,
		  struct raft_message *dst);
/* Frees what a clone owns, for a message that is dropped undelivered. */
void sl_rmsg_discard(struct raft_message *msg);

/* The state machine's own bytes in a snapshot libraft hands to
 * fsm->restore (the backend's manifest wraps them). Returns SL_OK, or
 * SL_EINVALID_RECORD when buf is not a manifest. */
int sl_rio_snapshot_payload(const void *buf, size_t len, const void **fsm, size_t *fsm_len);

/* Prepares a new group's directory (which must hold no group) with a copy
 * of group src_group's log below offset end, fetched from node `from`
 * through net->fetch (the bulk copy), so that the group, when bootstrapped
 * there next, starts its Raft log at offset end with that history below
 * it. This is how a replica moves while membership is fixed per group
 * (README.md, guard (f)): the partition continues in a new group whose
 * members hold the old one's data. end must be where the source's log
 * ends or a batch boundary below it. Blocks (run it off the loop; the
 * source may be served by this very process). A seed cut short leaves no
 * record and is redone from the start by the next call. Returns SL_OK,
 * SL_EEXISTS, SL_EOFFSET_OUT_OF_RANGE (the source ends before end, or end
 * is inside a batch), or
 * the copy's or the disk's error, with a reason in errmsg. vfs NULL:
 * POSIX. */
int sl_rio_seed(const char *dir, const struct sl_log_config *lc, sl_vfs *vfs, struct sl_rnet *net,
		uint32_t src_group, raft_id from, int64_t end, char *errmsg);

/* Control batch key types for Raft's own entries, beside Kafka's
 * transaction markers (0 abort, 1 commit). */
#define SL_CONTROL_RAFT_CHANGE 16
#define SL_CONTROL_RAFT_BARRIER 17

#endif
