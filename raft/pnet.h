/* raft/: the peer transport. Every Raft group's messages between two nodes
 * travel on one TCP connection per ordered pair of nodes (frames in
 * pframe.h); a separate connection to the same listener carries bulk copies
 * of a group's log.
 *
 *   - Connections are opened on demand by the sender and carry messages one
 *     way: node A's messages to B go on A's connection to B, B's replies on
 *     B's connection to A. The connector sends a hello; the acceptor checks
 *     the protocol version, the cluster id, that the node id is a configured
 *     peer, and that the node's UUID is the one it knows (a node id that
 *     comes back with another UUID lost its disk), then answers with its own
 *     hello, which the connector checks the same way. Only then do frames
 *     flow. A rejected hello closes the connection with a logged reason.
 *   - Every frame queued for a peer during one loop iteration goes out in
 *     one write (a uv_check handle flushes). While a write is in flight,
 *     new frames accumulate for the next one.
 *   - Each peer's queue is bounded (max_queue bytes): when full, queued
 *     heartbeats (AppendEntries without entries) are dropped, oldest first;
 *     if that is not enough the new message is refused (a message larger
 *     than max_queue is taken when the queue is empty). Raft recovers from
 *     lost messages; the loop never blocks.
 *   - A failed or lost connection is retried on the next send after a
 *     backoff that doubles from backoff_min_ms to backoff_max_ms, with
 *     jitter (a uniformly random delay between half and all of it). While
 *     a peer is in backoff, sends to it fail at once with
 *     RAFT_NOCONNECTION instead of queueing stale messages.
 *   - A frame announcing more than max_frame bytes, or any frame that does
 *     not decode, closes the connection with a logged reason; nothing of it
 *     reaches a group. An incoming connection must say hello within
 *     hello_timeout_ms (10 s), and at most 64 may be waiting to (more are closed at once), so
 *     strangers cannot hold a node's descriptors.
 *   - Bulk copy (sl_rnet.fetch): the fetching side runs on a disk thread
 *     and uses a blocking socket with timeouts: hello, a request for
 *     (group, offset, end, max bytes), then data frames of whole batches
 *     and an end frame. The serving side runs on the loop: it reads at
 *     most bulk_chunk bytes of the group's log per step and sends the next
 *     step once the previous write completed. Every batch is CRC-checked by
 *     the fetcher; a connection cut midway (even inside a data frame)
 *     returns the whole batches received so far, and the next fetch
 *     resumes after them.
 *
 * Threads: everything runs on the loop thread but fetch, which runs on any
 * thread (it reads the peer table under a mutex). */
#ifndef SL_RAFT_PNET_H
#define SL_RAFT_PNET_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rio.h"
#include "storage.h"

/* Log lines from raft/: level is one of the syslog-like values below. */
enum { SL_RLOG_ERROR = 3, SL_RLOG_WARN = 4, SL_RLOG_INFO = 6, SL_RLOG_DEBUG = 7 };
typedef void (*sl_rlog_fn)(void *arg, int level, const char *msg);

struct sl_pnet_config {
	uint8_t cluster_id[16];
	uint64_t node_id;            /* >= 1 */
	uint8_t node_uuid[16];
	const char *listen_host;     /* "127.0.0.1", "0.0.0.0", "::" */
	int listen_port;             /* 0: any (see sl_pnet_port) */
	size_t max_frame;            /* 0: 64 MiB; must exceed a group's largest AppendEntries */
	size_t max_queue;            /* per peer; 0: 64 MiB */
	unsigned backoff_min_ms;     /* 0: 100 */
	unsigned backoff_max_ms;     /* 0: 5000 */
	unsigned bulk_timeout_ms;    /* connect, read and write timeout of a fetch; 0: 10000 */
	size_t bulk_chunk;           /* most bytes one fetch returns; 0: 4 MiB */
	unsigned hello_timeout_ms;   /* an incoming connection's hello; 0: 10000 */
	/* Fault injection for tests: the serving side closes its first bulk
	 * session mid-frame after sending this many bytes. 0: off. */
	uint64_t test_cut_bulk_after;
	/* Admit as guests, instead of refusing, hellos from node ids that
	 * are no peer and from peers back with another UUID than the one
	 * enforced (a lost disk): their application frames reach the owner,
	 * so that a new node, or a new disk, can register and follow the
	 * metadata, but none of their Raft messages or bulk requests reaches
	 * a group, and none is sent to them, until sl_pnet_set_peer makes
	 * them peers (with an address, with that UUID). */
	bool admit_guests;
	sl_rlog_fn log;              /* NULL: stderr */
	void *log_arg;
};

/* A received Raft message for group from node `from`, laid out as
 * sl_rio_deliver takes it. Returns true when the callee took it (and
 * delivered it); false when no such group runs here, and the transport
 * then frees it. from_address stays valid for the transport's lifetime. */
typedef bool (*sl_pnet_recv_fn)(void *arg, uint64_t from, uint32_t group, struct raft_message *msg);
/* The log a bulk copy of group is served from, or NULL when this node has
 * no such group running. Called on the loop for every step; the pointer is
 * used only within that call. */
typedef sl_log *(*sl_pnet_log_fn)(void *arg, uint32_t group);

struct sl_pnet_stats {
	uint64_t frames_sent, frames_received, writes, bytes_sent, bytes_received;
	uint64_t heartbeats_dropped, messages_refused; /* full queues, peers in backoff */
	uint64_t connects, connect_failures, accepted;
	uint64_t rejected_hello;      /* wrong version, cluster, node id or UUID */
	uint64_t guests;              /* connections admitted as guests (admit_guests) */
	uint64_t guest_dropped;       /* Raft messages from guests, dropped */
	uint64_t closed_oversized, closed_garbage;
	uint64_t unknown_group;       /* messages for a group not running here */
	uint64_t bulk_sessions, bulk_bytes_served, bulk_bytes_fetched, bulk_fetch_retries;
	unsigned peers_connected;     /* outgoing connections past the hello */
	unsigned incoming;            /* incoming message connections past the hello */
};

struct sl_pnet;

/* Returns SL_OK, SL_ENOMEM or SL_EINVALID_ARGUMENT (node id 0). Nothing
 * listens until sl_pnet_listen(). recv and log_of may be NULL (set later
 * with sl_pnet_set_handlers; the group registry does it): until then
 * messages are dropped and bulk requests refused. */
int sl_pnet_init(struct sl_pnet **out, uv_loop_t *loop, const struct sl_pnet_config *cfg,
		 sl_pnet_recv_fn recv, sl_pnet_log_fn log_of, void *arg);
void sl_pnet_set_handlers(struct sl_pnet *n, sl_pnet_recv_fn recv, sl_pnet_log_fn log_of,
			  void *arg);
/* An application frame from node `from` (SL_PFRAME_APP): an opaque
 * payload for the owner, valid during the call only. */
typedef void (*sl_pnet_app_fn)(void *arg, uint64_t from, const void *payload, size_t len);
void sl_pnet_set_app_handler(struct sl_pnet *n, sl_pnet_app_fn fn, void *arg);
/* Queues an application frame for node `to`, on the same connection and
 * with the same guarantees as Raft messages: none (it is lost when the
 * peer is unknown, down, or its queue is full: the caller retries).
 * Returns SL_OK or SL_ENOT_FOUND (refused). */
int sl_pnet_send_app(struct sl_pnet *n, uint64_t to, const void *payload, size_t len);

/* Binds and listens. Returns SL_OK or SL_EIO with a reason in errmsg
 * (SL_ERRMSG_SIZE bytes). */
int sl_pnet_listen(struct sl_pnet *n, char *errmsg);
/* The port listened on. */
int sl_pnet_port(const struct sl_pnet *n);
/* Adds or updates a peer. uuid NULL: learned from its first hello (and
 * then enforced). Changing the address or UUID of a connected peer drops
 * its connections; a guest given an address, or a stale peer given the
 * UUID it came back with, becomes a full peer. Returns SL_OK, SL_ENOMEM or SL_EINVALID_ARGUMENT. */
int sl_pnet_set_peer(struct sl_pnet *n, uint64_t id, const char *host, int port,
		     const uint8_t *uuid);
/* The UUID enforced for peer id (given, or learned from its first
 * hello): true with it in uuid, false while none is known. Loop thread. */
bool sl_pnet_peer_uuid(const struct sl_pnet *n, uint64_t id, uint8_t uuid[16]);
/* The sl_rnet every group on this loop passes to sl_rio_init. */
struct sl_rnet *sl_pnet_rnet(struct sl_pnet *n);
void sl_pnet_get_stats(const struct sl_pnet *n, struct sl_pnet_stats *st);
/* Closes every connection and the listener; cb runs once all handles are
 * closed, from the loop. */
void sl_pnet_close(struct sl_pnet *n, void (*cb)(void *arg), void *arg);

/* Formats a log line and hands it to fn (stderr when NULL). */
void sl_rlogf(sl_rlog_fn fn, void *arg, int level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
