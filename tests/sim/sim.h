/* A deterministic simulator for Raft groups on Sluice's backend.
 *
 * N nodes (3 or 5) live in one process. Each is a real libraft
 * `struct raft` driving the real backend (raft/rio.h) over its own
 * simulated disk (tests/lib/simdisk.h). One virtual clock, one event
 * queue and one seeded PRNG drive everything, so a seed replays exactly.
 *
 * Time and events
 * - Virtual time is kept in microseconds; the backend sees milliseconds
 *   (sl_renv.now_ms). Nothing reads the real clock: the partition log's
 *   clock is the virtual one too, and rolling by age is off.
 * - The event queue is a binary heap ordered by (time, insertion
 *   sequence): ties go to the event queued first, so runs are
 *   deterministic. Kinds: disk work of a node's environment, delivery of
 *   a message, a node's tick, a deferred restart (after a disk fault).
 * - Environment (struct sl_renv, one per node): submit() queues the work
 *   at now + a random disk latency (default 0.1-2 ms), but never before
 *   the node's previous submission, so each node's work stays FIFO;
 *   work() then done() run when the event fires. random() draws from the
 *   sim PRNG (libraft's election jitter comes through io->random, so no
 *   libc rand() is involved).
 * - Ticks: every node gets sl_rio_tick every heartbeat interval (100 ms),
 *   each node at its own random phase. Election timeout 1000 ms, pre-vote
 *   on, snapshot threshold 64 / trailing 32 so snapshots (and installs)
 *   happen.
 *
 * Network (struct sl_rnet, one per node)
 * - send() deep-copies the message: an AppendEntries gets one raft_malloc'd
 *   batch holding every entry's bytes plus a raft_malloc'd entries array
 *   (each entry's .batch points at the shared batch, as libraft's own
 *   decoder does: one batch is the only layout libraft 0.15 frees on
 *   every path, since its reply path frees entries[0].batch alone); an
 *   InstallSnapshot gets its own configuration and data. The copy is
 *   delivered at now + a random latency (default 0.5-5 ms), which also
 *   reorders messages. On delivery server_id / server_address name the
 *   SENDER, and sl_rio_deliver() hands the message to the destination's
 *   backend. libraft 0.15 takes ownership of what a delivered message
 *   carries (entries and batch, snapshot configuration and data) on every
 *   path, so the simulator frees a copy only when it is not delivered
 *   (dropped, destination down, fenced or closing, or left in the queue at
 *   the end).
 * - fetch() (the bulk copy of an install) reads whole batches from the
 *   sender's partition log, synchronously (disk work runs inline); it
 *   fails when the two nodes cannot talk. With no_fetch the backend gets
 *   no fetch() and restarts the log at the snapshot's offset instead.
 * - Faults: a drop probability and a duplicate probability (each for a
 *   while, or for good), partitions (every node has a group; messages
 *   cross only inside a group, checked at send and again at delivery),
 *   and a node that is down or closing loses everything sent to it.
 * - Scripted tests also cut single links (both ways, checked like
 *   partitions) and drop the next few messages of one type on one link;
 *   neither draws from the PRNG, so random schedules are unchanged.
 *
 * Nodes
 * - All nodes raft_bootstrap the same configuration (ids 1..N, addresses
 *   "n1".."nN") before their first raft_start.
 * - A crash: sim_crash_after(disk, 0) first (nothing more reaches the
 *   disk), raft_close, and when the close completes in the event loop
 *   sim_crash (unsynced data dropped) or sim_crash_tear (the newest
 *   unsynced write torn at a random byte). Messages to the node are lost
 *   from the crash on. A restart is sl_rio_init + raft_init + raft_start
 *   over the same disk, with a fresh state machine.
 * - A disk error (the backend's fault callback) or a node found
 *   RAFT_UNAVAILABLE is handled as the broker would: close the group, drop
 *   unsynced data (what the device really holds), restart it from disk.
 * - With barrier_on_elect the simulator calls raft_barrier() when a node
 *   becomes leader (libraft 0.15 appends no no-op). Off by default: the
 *   backend's guard (a) proposes that barrier itself, and with the guards
 *   off the simulator should see libraft as it is.
 *
 * State machine (per node)
 * - apply() gets no index from libraft: it is last_applied + 1. Each
 *   applied COMMAND is recorded as the hash of its payload; an index the
 *   FSM never saw between two applies (a CHANGE or BARRIER) counts as a
 *   "non-command". A node also keeps a chain hash over (index, hash) of
 *   everything it applied.
 * - snapshot() returns 32 bytes: a magic, the applied index and the chain
 *   hash. restore() gets the backend's manifest, whose last bytes are the
 *   state machine's (raft/raft_int.h: "then the state machine's bytes to
 *   the end"), so it reads its own 32 bytes from the end and frees the
 *   buffer.
 *
 * Checker (after every event, and inside apply)
 * - election safety: at most one leader per term;
 * - state machine safety: one global record of the payload hash and the
 *   chain hash at every index; a node that applies (or restores) something
 *   else at an index is a violation (a prefix-consistent applied sequence
 *   on every node);
 * - acknowledged produces: the apply callback with status 0 records
 *   (index, hash); the committed record at that index must be that hash,
 *   and since the record never changes, a later different apply (after
 *   crashes) is caught; at the end every node must apply past the last
 *   acknowledged index (liveness, after healing and restarting all);
 * - Log Matching: every AppendEntries sent is recorded as
 *   (index, term) -> payload hash; two different payloads under one
 *   (index, term) are a violation;
 * - commit_index <= the node's durable last index (sl_rio_last_stored),
 *   except while a snapshot install is in flight (libraft zeroes
 *   last_stored then);
 * - leader append-only: while a node leads one term, its log's last index
 *   and its partition log's next offset never decrease;
 * - a leader's match_index for a follower in the same term never points
 *   past what the follower holds durably (sl_rio_last_stored), and the
 *   entry there has the same term in both logs.
 * On a violation the simulator prints the seed, the step, the virtual
 * time, what differs and the last trace lines, and stops.
 *
 * Everything runs on the calling thread. */
#ifndef SL_TEST_SIM_H
#define SL_TEST_SIM_H

#include <stdbool.h>
#include <stdint.h>

#define SL_SIM_MAX_NODES 5

struct sl_sim_config {
	int nodes;                   /* 3 or 5 */
	uint64_t seed;
	int64_t disk_min_us;         /* disk latency, default 100 .. */
	int64_t disk_max_us;         /* .. 2000 */
	int64_t net_min_us;          /* network latency, default 500 .. */
	int64_t net_max_us;          /* .. 5000 */
	unsigned heartbeat_ms;       /* 100 */
	unsigned election_ms;        /* 1000 */
	unsigned snapshot_threshold; /* 64 */
	unsigned snapshot_trailing;  /* 32 */
	bool pre_vote;               /* true */
	bool barrier_on_elect;       /* false: the backend's guard (a) does */
	bool check_match;            /* the match_index check; true */
	bool no_fetch;               /* no sl_rnet.fetch: an install restarts
					the log at the snapshot's offset */
	bool shared_meta;            /* term and vote in a node-wide store
					(raft/rmeta.h), not per-group slots */
	uint64_t segment_bytes;      /* partition log segments, 64 KiB */
	bool trace;                  /* print every trace line to stderr */
};

void sl_sim_config_init(struct sl_sim_config *cfg);
/* The configuration of random schedule `seed` (what SIM_SEED replays):
 * defaults, 5 nodes when seed % 3 == 0 (else 3), no fetch() when
 * seed % 7 == 0, so both install paths run, and the shared term/vote
 * store when the seed is odd, so both ways of keeping them run. */
void sl_sim_config_for_seed(struct sl_sim_config *cfg, uint64_t seed);

struct sl_sim;

/* Creates the disks, bootstraps and starts every node at virtual time 0.
 * Never returns NULL (aborts when out of memory). */
struct sl_sim *sl_sim_new(const struct sl_sim_config *cfg);
/* Closes every node (through the event loop), frees every pending event
 * and message, the disks and the checker's records. */
void sl_sim_free(struct sl_sim *s);

/* Runs events for ms of virtual time. Returns 0, or -1 once a violation
 * was found (the run stops at it). */
int sl_sim_run(struct sl_sim *s, int64_t ms);
/* Runs until some node is leader, at most ms; returns its id or 0. */
int sl_sim_run_until_leader(struct sl_sim *s, int64_t ms);
/* Runs until every produce proposed so far has completed (acknowledged
 * or failed), at most ms. Returns 0 when they all did. */
int sl_sim_run_until_settled(struct sl_sim *s, int64_t ms);
/* Runs events until done(s, arg) holds, checked before the first event
 * and after each one (so a script can act at the exact event, e.g. cut
 * a new leader off before its first AppendEntries arrives), at most ms.
 * Returns 1 when done held, 0 when ms passed, -1 on a violation. done
 * may also just observe and return false. */
typedef bool (*sl_sim_pred)(struct sl_sim *s, void *arg);
int sl_sim_run_until(struct sl_sim *s, int64_t ms, sl_sim_pred done, void *arg);

/* Heals everything (partitions, drop and duplicate bursts, slow disks,
 * armed disk faults), restarts every down node, then runs until every
 * node has applied past the last acknowledged produce and one more
 * produce is acknowledged and applied everywhere, at most ms. A failure
 * is recorded as a liveness violation. Returns 0 or -1. */
int sl_sim_converge(struct sl_sim *s, int64_t ms);

/* A random schedule of `steps` operations drawn from the sim PRNG
 * (produce bursts, advancing time, crashes with or without a torn write,
 * leader crashes, restarts, partitions, heals, drop and duplicate bursts,
 * slow disks, disk faults), then sl_sim_converge. Returns 0 or -1. */
int sl_sim_random_schedule(struct sl_sim *s, int steps);

/* ---- Operations ------------------------------------------------------- */

/* The leader with the highest term among the nodes that are up, or 0. */
int sl_sim_leader(struct sl_sim *s);
/* Proposes one COMMAND batch (stamped at sl_rio_next_offset and the
 * current term) on node id. Returns 0 when raft_apply took it. */
int sl_sim_produce(struct sl_sim *s, int id);
/* Crashes node id (see above); tear: tear its newest unsynced write. */
void sl_sim_crash(struct sl_sim *s, int id, bool tear);
/* Restarts node id if it is down (waits for a close in progress). */
void sl_sim_restart(struct sl_sim *s, int id);
/* Cuts the nodes in mask (bit id-1) off from the others. */
void sl_sim_partition(struct sl_sim *s, unsigned mask);
/* Ends partitions and restores every cut link. */
void sl_sim_heal(struct sl_sim *s);
/* Cuts (up false) or restores the link between nodes a and b, both ways;
 * messages in flight on a cut link are lost when they arrive. Partitions
 * still apply on top. */
void sl_sim_link(struct sl_sim *s, int a, int b, bool up);
/* The next count messages of libraft type `type` (RAFT_IO_*) sent from
 * `from` to `to` are lost on the wire (counted in stats.scripted_drops). */
void sl_sim_drop_next(struct sl_sim *s, int from, int to, int type, int count);
/* sl_rio_transfer on node id (cb has sl_rio_transfer_cb's type). Returns
 * its result, SL_ENOT_LEADER when the node is down. */
int sl_sim_transfer(struct sl_sim *s, int id, int target, void (*cb)(void *arg, int status), void *arg);
/* Probabilities in [0, 1], until virtual time now + ms (ms < 0: for
 * good). */
void sl_sim_set_drop(struct sl_sim *s, double p, int64_t ms);
void sl_sim_set_dup(struct sl_sim *s, double p, int64_t ms);
/* Disk latency of node id for ms (ms < 0: for good). */
void sl_sim_set_disk_latency(struct sl_sim *s, int id, int64_t min_us, int64_t max_us, int64_t ms);

/* ---- Observations ----------------------------------------------------- */

bool sl_sim_is_up(struct sl_sim *s, int id);
uint64_t sl_sim_last_applied(struct sl_sim *s, int id);
uint64_t sl_sim_commit_index(struct sl_sim *s, int id);
/* Of a node that is up (else false or 0): leads (and is not fenced);
 * current term; last index of libraft's log, and its last durable one;
 * the term of the entry at index in libraft's log (0: not there); as a
 * leader, its match_index for follower. */
bool sl_sim_is_leader(struct sl_sim *s, int id);
uint64_t sl_sim_term(struct sl_sim *s, int id);
uint64_t sl_sim_last_index(struct sl_sim *s, int id);
uint64_t sl_sim_last_stored(struct sl_sim *s, int id);
uint64_t sl_sim_entry_term(struct sl_sim *s, int id, uint64_t index);
uint64_t sl_sim_match_index(struct sl_sim *s, int leader, int follower);
/* The node's state machine chain hash and applied index. */
uint64_t sl_sim_chain(struct sl_sim *s, int id, uint64_t *applied);
uint64_t sl_sim_proposed(struct sl_sim *s);
uint64_t sl_sim_acked(struct sl_sim *s);
/* Highest index of an acknowledged produce. */
uint64_t sl_sim_max_acked_index(struct sl_sim *s);
int64_t sl_sim_now_ms(struct sl_sim *s);
/* Number of elections won, snapshots installed, crashes. */
struct sl_sim_stats {
	uint64_t events, messages, dropped, elections, installs, crashes, restarts, faults,
		unavailable, scripted_drops;
};
void sl_sim_stats(struct sl_sim *s, struct sl_sim_stats *out);

/* The first violation ("kind: detail"), or NULL. kind is one of
 * election_safety, state_machine_safety, acked_lost, log_matching,
 * commit_past_durable, leader_append_only, match_past_follower, liveness,
 * backend. */
const char *sl_sim_violation(struct sl_sim *s);

#endif
