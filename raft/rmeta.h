/* raft/: the term and vote of every group of a node, in one log file.
 *
 * libraft wants set_term and set_vote durable when they return. With a
 * file per group that is one fdatasync per call, on the loop thread, and
 * an election costs the candidate two and every voter two more: a node
 * whose 5,000 groups elect after a cold start spends seconds in syncs on
 * one disk. Here set_term and set_vote only record the change: the
 * backend (rio.h) holds the group's outgoing messages and its disk writes
 * until the record is durable (the send gate), so no other node and no
 * log entry ever depends on a term or vote a crash could take back. One
 * flush writes every record made since the previous one, for every
 * group, and syncs once.
 *
 * File: a sequence of batches, each
 *   "SLMB" | count u32 | crc32c of the records u32 | crc32c of these 12 bytes u32
 *   count x (group u32 | term u64 | vote u64)                     little-endian
 * A group's last record wins; term 0 and vote 0 (a deleted group) is
 * dropped when the file is rewritten. At open, the first batch that fails
 * its checks ends the file (a torn last write) and the file is cut there;
 * a valid batch after it is damage, and the open fails rather than forget
 * a vote. When the file exceeds four times its live content (and 64 KiB),
 * a flush rewrites it: the whole image to <path>.tmp, sync, rename, sync
 * of the directory.
 *
 * Errors: after a failed write or sync, what the file holds is unknown.
 * Records not yet durable are dropped (each group falls back to its last
 * durable term and vote), every waiter is told the error (its group is
 * fenced and restarted by its owner), and the next flush rewrites the
 * file from the durable values.
 *
 * Threads: every call on the owner's loop thread; the file I/O runs as
 * sl_renv work, one flush at a time. */
#ifndef SL_RAFT_RMETA_H
#define SL_RAFT_RMETA_H

#include <stdbool.h>
#include <stdint.h>

#include "rio.h"

struct sl_rmeta;

/* Someone waiting for a record to be durable. The caller owns the memory;
 * the fields but ready are the store's. */
struct sl_rmeta_waiter {
	/* Fires once per sl_rmeta_wait, from the store's work, never inside
	 * a call: status SL_OK once seq is durable, or the flush's error. */
	void (*ready)(struct sl_rmeta_waiter *w, int status);
	struct sl_rmeta_waiter *prev, *next;
	uint64_t seq;
	bool linked;
};

struct sl_rmeta_stats {
	uint64_t flushes;     /* syncs of new records */
	uint64_t records;     /* records made durable */
	uint64_t rewrites;    /* compactions and rewrites after an error */
	uint64_t errors;      /* failed flushes */
	uint64_t file_bytes;
	uint64_t groups;      /* groups with a record */
};

/* Opens (creating it if missing) the file at path and reads every group's
 * term and vote. vfs NULL: POSIX. Returns SL_OK, SL_ESTORAGE or
 * SL_ELOG_CORRUPT with a reason in errmsg (SL_ERRMSG_SIZE bytes). */
int sl_rmeta_open(const char *path, sl_vfs *vfs, struct sl_renv *env, struct sl_rmeta **out,
		  char *errmsg);

/* The group's newest term and vote (0 and 0 when it has none) and the
 * sequence number that makes them durable. */
void sl_rmeta_get(const struct sl_rmeta *m, uint32_t group, uint64_t *term, uint64_t *vote,
		  uint64_t *seq);

/* Records the group's term and vote; *seq is durable once the next flush
 * completes. Returns SL_OK or SL_ENOMEM (then nothing changed). */
int sl_rmeta_put(struct sl_rmeta *m, uint32_t group, uint64_t term, uint64_t vote,
		 uint64_t *seq);

bool sl_rmeta_durable(const struct sl_rmeta *m, uint64_t seq);

/* Arms w to fire when seq is durable (seq must not be durable yet); an
 * armed waiter is re-armed with the new seq. */
void sl_rmeta_wait(struct sl_rmeta *m, struct sl_rmeta_waiter *w, uint64_t seq);
/* Disarms w; it will not fire. */
void sl_rmeta_cancel(struct sl_rmeta *m, struct sl_rmeta_waiter *w);

void sl_rmeta_get_stats(const struct sl_rmeta *m, struct sl_rmeta_stats *st);

/* Waits for a flush in flight, then frees the store; records not yet
 * flushed are lost (no waiter may be armed). cb(arg) fires from the
 * environment's work, never inside this call. */
void sl_rmeta_close(struct sl_rmeta *m, void (*cb)(void *arg), void *arg);

#endif
