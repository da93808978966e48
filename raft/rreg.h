/* raft/: the group registry. Every Raft group of a node on one libuv loop:
 * each group is a libraft instance on its own backend (rio.h) in
 * <dir>/g<group id>, all sharing one peer transport (pnet.h), one tick
 * timer and one thread pool.
 *
 *   - One timer drives every group: it fires SL_RREG_BUCKETS times per
 *     heartbeat interval and ticks one bucket of groups (group id modulo
 *     the bucket count) each time, so ticks, and the heartbeats they send,
 *     are spread over the interval instead of all at once.
 *   - A group fenced by a disk error (rio.h) is closed and started again
 *     from disk after a delay that doubles from 1 s to 30 s; every fault
 *     and restart is logged with its reason.
 *   - Leadership transfer for balancing and for shutdown: sl_rreg_handoff
 *     hands every group this node leads to its most caught-up voter.
 *   - Groups can later be sharded across one loop per core:
 *     sl_rreg_shard_of() is the stable hash that places a group, the same
 *     on every node, so each shard's registry and transport pair up with
 *     the same shard on the peers.
 *
 * Membership is fixed per group (guard (f), README.md): a group keeps the
 * voters it was created with. Loop thread only. */
#ifndef SL_RAFT_RREG_H
#define SL_RAFT_RREG_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "pnet.h"
#include "rio.h"

#define SL_RREG_BUCKETS 8
#define SL_RREG_MAX_REPLICAS 9

/* Called for every committed entry a group applies, in order (index is
 * Raft's; buf is the entry's payload: a record batch for COMMAND entries).
 * May be NULL. */
typedef void (*sl_rreg_apply_fn)(void *arg, uint32_t group, raft_index index,
				 const struct raft_buffer *buf);

struct sl_rreg_config {
	const char *dir;            /* the node's data directory (must exist) */
	uint64_t node_id;
	unsigned heartbeat_ms;      /* 0: 200 */
	unsigned election_ms;       /* 0: 1000 */
	unsigned snapshot_threshold;/* 0: 256 (rio.h: sl_rio_tune) */
	unsigned snapshot_trailing; /* 0: 64 */
	uint64_t isr_max_lag;       /* entries a follower may lag and stay in sync; 0: 64 */
	uint64_t max_append_bytes;  /* AppendEntries budget; 0: 1 MiB */
	struct sl_log_config log;   /* every group's log settings */
	sl_rreg_apply_fn apply;
	void *apply_arg;
	/* Called (with apply_arg) once a group's entries up to `last` are
	 * durable on this node (rio.h); may be NULL. */
	void (*stored)(void *arg, uint32_t group, raft_index last);
	/* A group's state machine beyond its log, for Raft snapshots (the
	 * controller's metadata): snapshot returns malloc'd bytes (SL_OK or
	 * SL_ENOMEM), restore replaces the state with them (SL_OK or an error:
	 * the group is then fenced and restarted). Called with apply_arg.
	 * NULL: the log is the whole state. */
	int (*snapshot)(void *arg, uint32_t group, void **buf, size_t *len);
	int (*restore)(void *arg, uint32_t group, const void *buf, size_t len);
	sl_rlog_fn logf;            /* NULL: stderr */
	void *log_arg;
	/* Term and vote in each group's directory (two files, a sync per
	 * change) instead of the node's shared store <dir>/meta.log
	 * (rmeta.h); for comparison only. */
	bool meta_per_group;
};

enum { SL_RROLE_STOPPED, SL_RROLE_FOLLOWER, SL_RROLE_CANDIDATE, SL_RROLE_LEADER };

struct sl_rgroup_state {
	uint32_t group;
	int role;               /* SL_RROLE_* (STOPPED while fenced or restarting) */
	bool ready;             /* leader whose election barrier committed */
	raft_term term;
	uint64_t leader;        /* node id; 0: none known */
	raft_index commit, durable, last;
	int64_t next_offset;    /* the log's next offset */
	unsigned n_replicas;
	struct {
		uint64_t node;
		raft_index match;   /* leader only: highest index known replicated */
		raft_index lag;     /* last - match */
		bool in_sync;       /* the leader itself, or lag <= isr_max_lag */
	} replicas[SL_RREG_MAX_REPLICAS];
	unsigned restarts;      /* times this group was restarted after a fault */
};

struct sl_rreg_stats {
	unsigned groups, leaders, ready, followers, candidates, stopped;
	uint64_t faults, restarts;
	uint64_t meta_flushes, meta_records; /* the shared term/vote store */
};

struct sl_rreg;

/* Opens the node's term/vote store <dir>/meta.log (creating dir if
 * missing). Returns SL_OK, SL_ENOMEM, or the store's error (logged with
 * its reason). The registry routes the transport's
 * messages and bulk requests to its groups (sl_pnet_set_handlers) until it
 * closes; the transport must outlive it. */
int sl_rreg_init(struct sl_rreg **out, uv_loop_t *loop, const struct sl_rreg_config *cfg,
		 struct sl_pnet *net);

/* Starts group on this node: from its directory when it exists, otherwise
 * created with voters[0..n) (node ids, which must include this node).
 * Returns SL_OK, SL_EEXISTS (running), SL_EINVALID_ARGUMENT, SL_ENOMEM or
 * SL_EIO with a reason in errmsg (SL_ERRMSG_SIZE bytes). */
int sl_rreg_start(struct sl_rreg *reg, uint32_t group, const uint64_t *voters, unsigned n,
		  char *errmsg);
/* sl_rreg_start; with campaign, this node campaigns first (rio.h:
 * sl_rio_hurry): a partition's preferred leader, so that a partition just
 * created (or a node just restarted) is led within a few hundred ms
 * rather than one to two election timeouts. */
int sl_rreg_start_campaign(struct sl_rreg *reg, uint32_t group, const uint64_t *voters,
			   unsigned n, bool campaign, char *errmsg);
/* Creates group's directory and log with voters[0..n) on the thread pool
 * (rio.h: sl_rio_create), so that creating many groups uses the disk in
 * parallel and never blocks the loop; start it with sl_rreg_start
 * afterwards. cb(arg, group, status, errmsg) runs on the loop: SL_OK,
 * SL_EEXISTS (the directory was there: start it from it), or the error.
 * The caller must not create or start the group meanwhile. Needs the
 * shared term/vote store. Returns SL_OK, or an error (with errmsg) and
 * cb never runs. */
typedef void (*sl_rreg_created_fn)(void *arg, uint32_t group, int status, const char *errmsg);
int sl_rreg_create(struct sl_rreg *reg, uint32_t group, const uint64_t *voters, unsigned n,
		   sl_rreg_created_fn cb, void *arg, char *errmsg);
/* Starts group with voters[0..n) on a copy of group src_group's log below
 * offset end, fetched from node `from` by the bulk copy (sl_rio_seed), so
 * that its Raft log begins at offset end. With membership fixed per group
 * (guard (f)), this is how a replica moves: once the old group's last
 * offset is committed and writes to it have stopped, the controller
 * starts a new group with the new set of replicas on every one of them
 * (from = the old group's leader, end = its next offset), switches the
 * partition to it, then deletes the old group. The copy runs on the thread
 * pool; the group counts as present (sl_rreg_start answers SL_EEXISTS)
 * but not running until cb(arg, group, status) reports SL_OK, or it is
 * gone again with the error (logged). Returns SL_OK, SL_EEXISTS, SL_EBUSY,
 * SL_EINVALID_ARGUMENT or SL_ENOMEM, with a reason in errmsg. */
int sl_rreg_start_from(struct sl_rreg *reg, uint32_t group, const uint64_t *voters, unsigned n,
		       uint64_t from, uint32_t src_group, int64_t end,
		       void (*cb)(void *arg, uint32_t group, int status), void *arg, char *errmsg);
/* Stops group (its directory stays); cb(arg, group) runs from the loop once
 * it is closed. Returns SL_OK or SL_ENOT_FOUND. */
typedef void (*sl_rreg_done_fn)(void *arg, uint32_t group);
int sl_rreg_stop(struct sl_rreg *reg, uint32_t group, sl_rreg_done_fn cb, void *arg);
/* Stops group and removes its directory. */
int sl_rreg_delete(struct sl_rreg *reg, uint32_t group, sl_rreg_done_fn cb, void *arg);

/* Removes the directory, term and vote of a group this node does not
 * run (left over from a group deleted while the node was away). Returns
 * SL_OK (also when there was nothing), SL_EBUSY (the group is present:
 * use sl_rreg_delete), SL_EIO or SL_ENOMEM. */
int sl_rreg_remove(struct sl_rreg *reg, uint32_t group);

/* The log of a running group, or NULL (for readers; see storage.h). */
sl_log *sl_rreg_log(struct sl_rreg *reg, uint32_t group);
/* libraft instance of a running group (for raft_apply by the broker), or
 * NULL. The leader stamps batches with sl_rio_next_offset(sl_rreg_io()). */
struct raft *sl_rreg_raft(struct sl_rreg *reg, uint32_t group);
struct raft_io *sl_rreg_io(struct sl_rreg *reg, uint32_t group);

/* Returns SL_OK or SL_ENOT_FOUND. */
int sl_rreg_state(struct sl_rreg *reg, uint32_t group, struct sl_rgroup_state *st);
void sl_rreg_get_stats(struct sl_rreg *reg, struct sl_rreg_stats *st);
/* Calls fn for every running group, in no particular order. */
void sl_rreg_foreach(struct sl_rreg *reg, void (*fn)(void *arg, uint32_t group), void *arg);

/* Hands group's leadership to target (0: the most caught-up other voter);
 * see sl_rio_transfer for cb's status. Returns SL_ENOT_FOUND,
 * SL_ENOT_LEADER, SL_EBUSY or SL_OK. */
int sl_rreg_transfer(struct sl_rreg *reg, uint32_t group, uint64_t target,
		     void (*cb)(void *arg, uint32_t group, int status), void *arg);
/* Transfers every group this node leads away (shutdown): cb(arg, moved,
 * failed) once every transfer ended, or after five election timeouts
 * (transfers still under way then count as failed: their targets may be
 * stopping too). While a handoff runs, this node does
 * not campaign (groups it follows skip their ticks); afterwards it does
 * again. */
int sl_rreg_handoff(struct sl_rreg *reg, void (*cb)(void *arg, unsigned moved, unsigned failed),
		    void *arg);

/* Stops every group and the timer; cb runs once all are closed. The
 * transport is not closed. */
void sl_rreg_close(struct sl_rreg *reg, void (*cb)(void *arg), void *arg);

/* The shard of group among n shards: a stable hash, the same on every
 * node. */
unsigned sl_rreg_shard_of(uint32_t group, unsigned n);

/* Removes a directory tree (no symlinks followed). Returns 0 or an errno;
 * a missing directory is not an error. */
int sl_rreg_rmtree(const char *dir);

#endif
