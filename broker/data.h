/* broker/: the data path: Produce and Fetch, each served by the leader of
 * every partition it names (others get NOT_LEADER with the leader as
 * this node knows it).
 *
 * Produce: a partition's batches (one data segment, whole batches) are
 * checked in place in the receive buffer (size against the topic's
 * max.message.bytes, magic, CRC; a client may not write control
 * batches); any fault refuses the whole partition with a precise error
 * and nothing of it is written. Then each batch is copied once into a
 * Raft entry, stamped with the next offset and the leader's term, and
 * proposed: the batches a group gets in one loop turn (from any
 * requests, up to 256 KiB) go as one raft_apply, so one append and one
 * AppendEntries per follower carry them all; each batch is acknowledged
 * when the high watermark passes it (libraft calls back for the first
 * entry of such a proposal only). The answer (base offset of the partition's first batch) comes
 * when every batch is committed (acks=all), durable on the leader's disk
 * (acks=leader: looked at whenever a group of this node made entries
 * durable), or never (acks=none: no response frame); or
 * REQUEST_TIMED_OUT after timeout_ms, or NOT_LEADER when leadership is
 * lost first (a batch may then still commit).
 *
 * Idempotence (acks=all, batches with a producer id): each partition's
 * producer state (pstate.h) is fed every batch its group applies, on
 * every replica, and checked by the leader before it proposes: a retried
 * batch is not written again and is answered with its first copy's
 * offset once that is committed; a gap in the sequence is
 * OUT_OF_ORDER_SEQUENCE, an older epoch INVALID_PRODUCER_EPOCH.
 *
 * Neither needs the controller to be caught up (NOT_READY only on a node
 * without metadata): a partition's leader serves its partition through a
 * controller failover, from the metadata it applied.
 *
 * Fetch: whole batches from the batch holding the asked offset up to the
 * high watermark (one past the last committed offset), within the
 * partition's and the request's byte limits (at least one batch per
 * partition); OFFSET_OUT_OF_RANGE with both bounds outside [log start,
 * high watermark]. Copies: the segment file is read into one buffer per
 * partition (page cache to user space) and written to the socket with
 * writev; sendfile would save that copy. A fetch short of min_bytes
 * waits up to max_wait_ms, looked at again whenever a partition commits.
 *
 * Threads: the loop thread. */
#ifndef SL_BROKER_DATA_H
#define SL_BROKER_DATA_H

#include "api.h"
#include "frame.h"

int sl_data_produce(const struct sl_api_node *node, const struct sl_frame *f,
		    sl_api_reply_fn reply, void *arg);
int sl_data_fetch(const struct sl_api_node *node, const struct sl_frame *f, sl_api_reply_fn reply,
		  void *arg);

/* A partition's group applied (committed) an entry (entry: its payload,
 * a record batch, or NULL): the partition's producer state takes it,
 * produces waiting for a duplicate's first copy are answered, waiting
 * Fetches look again on the next loop turn. */
void sl_data_applied(uint32_t group, const void *entry, size_t len);

/* The group is gone from this node: its producer state goes too. */
void sl_data_forget(uint32_t group);

/* A partition's group made entries durable on this node: produces with
 * acks=leader look again, on the next loop turn. */
void sl_data_stored(uint32_t group);

/* Answers every waiting Fetch now (the node is stopping). */
void sl_data_stop_waiting(void);

#endif
