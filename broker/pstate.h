/* broker/: a partition's idempotent producers, so that a retried batch
 * is written once.
 *
 * A batch from an idempotent producer carries its producer id, epoch and
 * the sequence number of its first record (per partition, from 0; the
 * last record's is base + count - 1, wrapping at 2^31). For each producer
 * the state keeps its epoch and its last 5 batches: sequences and offsets.
 *
 *   - Every replica feeds it the batches its group applies (committed,
 *     in log order), so a new leader has the committed state already.
 *   - The leader checks a batch before proposing it: a batch equal to one
 *     of the last 5 is a duplicate (its first copy's offsets are
 *     returned, nothing is written); an older epoch is fenced
 *     (INVALID_PRODUCER_EPOCH); a newer epoch must start at sequence 0;
 *     otherwise the batch must follow the last one (OUT_OF_ORDER_SEQUENCE:
 *     an earlier batch is missing, typically being retried). A producer
 *     the state does not know (its batches are older than what the state
 *     was rebuilt from, or evicted) is taken at any sequence.
 *   - What the leader proposed is kept as tentative until applied, so
 *     that the batches a producer pipelines check against each other; a
 *     new term drops tentative entries (what of them commits is applied
 *     again).
 *
 * Memory: at most max_producers per partition; the least recently used
 * is forgotten first.
 *
 * Pure: no I/O; the loop thread. */
#ifndef SL_BROKER_PSTATE_H
#define SL_BROKER_PSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "batch.h"

#define SL_PSTATE_BATCHES 5

struct sl_pstate;

struct sl_pstate *sl_pstate_new(unsigned max_producers);
void sl_pstate_free(struct sl_pstate *s);

/* A batch this partition's group applied; h's base offset is stamped.
 * Batches without a producer id are ignored. */
void sl_pstate_applied(struct sl_pstate *s, const struct sl_batch_header *h);

/* Leader, term: drops tentative entries when the term changed. */
void sl_pstate_term(struct sl_pstate *s, uint64_t term);

/* Leader: what to do with batch h. SL_OK with *dup_base = -1 (write it)
 * or with the first copy's base and last offsets (a duplicate:
 * *dup_tentative says it is not applied yet); else
 * SL_EOUT_OF_ORDER_SEQUENCE or SL_EINVALID_PRODUCER_EPOCH with msg. */
int sl_pstate_check(struct sl_pstate *s, const struct sl_batch_header *h, int64_t *dup_base,
		    int64_t *dup_last, bool *dup_tentative, char *msg, size_t msglen);

/* Leader: h (stamped with its offset) was proposed. SL_OK or SL_ENOMEM. */
int sl_pstate_proposed(struct sl_pstate *s, const struct sl_batch_header *h);

/* Producers known. */
unsigned sl_pstate_count(const struct sl_pstate *s);

#endif
