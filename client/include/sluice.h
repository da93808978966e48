/* libsluice: the C client of Sluice (see client/README.md).
 *
 * Shape (shared/STYLE.md's sketch): opaque handles with accessors; string
 * configuration properties checked on set; one error type whose values
 * are Sluice's error table (proto/errors.def); a client owns one I/O
 * thread and every call is thread-safe; asynchronous calls take a
 * callback, which runs on the I/O thread and must not block, and a NULL
 * callback makes the call synchronous (then a report, if any, is the
 * caller's through *out); ownership passes only on success.
 *
 * What exists today: the client, the producer, the consumer of assigned
 * partitions, and the admin calls for topics and the cluster. Consumer
 * groups come with a later release. */
#ifndef SLUICE_H
#define SLUICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_API __attribute__((visibility("default")))

typedef struct sluice_conf sluice_conf_t;     /* string properties, checked on set */
typedef struct sluice_client sluice_client_t; /* owns one I/O thread; API thread-safe */
typedef struct sluice_admin sluice_admin_t;
typedef struct sluice_report sluice_report_t; /* an admin call's result, a delivery */
typedef struct sluice_producer sluice_producer_t;
typedef struct sluice_consumer sluice_consumer_t;
typedef struct sluice_msg sluice_msg_t;        /* a consumed record */

/* SLUICE_OK, or a number from Sluice's error table (proto/errors.def);
 * the names below are those a caller most often tests. */
typedef int sluice_err_t;
#define SLUICE_OK 0
#define SLUICE_ERR_UNKNOWN_TOPIC 3
#define SLUICE_ERR_TIMED_OUT 7
#define SLUICE_ERR_INVALID_TOPIC 17
#define SLUICE_ERR_TOPIC_EXISTS 36
#define SLUICE_ERR_INVALID_PARTITIONS 37
#define SLUICE_ERR_INVALID_REPLICATION_FACTOR 38
#define SLUICE_ERR_INVALID_CONFIG 40
#define SLUICE_ERR_NOMEM 1000
#define SLUICE_ERR_INVALID_ARGUMENT 1001
#define SLUICE_ERR_CANCELED 1002
#define SLUICE_ERR_BUSY 1003
#define SLUICE_ERR_IO 1004
#define SLUICE_ERR_MESSAGE_TOO_LARGE 10   /* a response above max.response.bytes */
#define SLUICE_ERR_UNSUPPORTED_VERSION 35 /* the node does not serve this call */
#define SLUICE_ERR_OFFSET_OUT_OF_RANGE 1
#define SLUICE_ERR_NOT_LEADER 6
#define SLUICE_ERR_CLOSED 1008
#define SLUICE_ERR_QUEUE_FULL 1010 /* the producer's buffer.bytes are taken */
/* Consumer groups. */
#define SLUICE_ERR_COORDINATOR_LOADING 14
#define SLUICE_ERR_NOT_COORDINATOR 16
#define SLUICE_ERR_UNKNOWN_MEMBER_ID 25
#define SLUICE_ERR_NON_EMPTY_GROUP 68
#define SLUICE_ERR_GROUP_ID_NOT_FOUND 69
#define SLUICE_ERR_FENCED_MEMBER_EPOCH 110
#define SLUICE_ERR_STALE_MEMBER_EPOCH 113
#define SLUICE_ERR_NOT_ASSIGNED 1011 /* the partition is not this member's */

SLUICE_API const char *sluice_err_name(sluice_err_t err); /* "NOT_LEADER" */
SLUICE_API const char *sluice_strerror(sluice_err_t err);
SLUICE_API int sluice_err_is_retriable(sluice_err_t err);

/* ---- configuration ---------------------------------------------------- */

/* Keys:
 *   bootstrap.servers   host:port[,host:port...] ([::1]:9092 for IPv6); each
 *                       call starts at another one; default 127.0.0.1:9092
 *   client.id           text sent to the brokers; default "libsluice"
 *   request.timeout.ms  how long an admin call keeps trying (retriable
 *                       errors are retried with backoff until then), how
 *                       long a partition's leader may hold one Produce for
 *                       its acknowledgement, and how long sluice_assign
 *                       waits for a topic's metadata; 1..3600000; default
 *                       30000
 *   socket.timeout.ms   how long one request waits for its answer (beyond
 *                       what the server may hold it on purpose) before its
 *                       connection is closed and the call retried on
 *                       another node: a hung node costs this much, not the
 *                       whole request.timeout.ms; 10..3600000; default 5000
 *   max.response.bytes  the largest response frame taken (memory bound); a
 *                       bigger one closes its connection and fails its
 *                       call with MESSAGE_TOO_LARGE; 256..2^30; default 64 MiB
 * The producer:
 *   acks                all (-1), 1 or 0: a record is acknowledged once
 *                       committed by a quorum, once on the leader's disk,
 *                       or once sent (offset -1); default all
 *   linger.ms           how long a partition's batch waits for more records
 *                       before it is sent, 0..60000; default 0. Past it, a
 *                       batch still fills while its partition has
 *                       max.in.flight batches out: batches grow with the
 *                       load, and a light load sees no added latency
 *   batch.bytes         a batch is sent once this big, 1024..16 MiB; default
 *                       256 KiB
 *   compression         zstd or none, per batch; default zstd
 *   compression.level   zstd level 1..19; default 1
 *   enable.idempotence  true or false; with acks=all, retries never write a
 *                       record twice: the producer takes an id from the
 *                       controller (InitProducerId) and numbers its batches
 *                       per partition; default true
 *   delivery.timeout.ms how long a record is retried before its callback gets
 *                       the last error, 1..86400000; default 120000
 *   buffer.bytes        records not yet acknowledged, at most (memory bound),
 *                       1 MiB..1 TiB; default 64 MiB
 *   buffer.block.ms     how long sluice_produce waits for buffer space (or
 *                       for a topic's metadata) before it fails with
 *                       QUEUE_FULL (or the metadata's error); 0 fails at
 *                       once; default 60000
 *   max.in.flight       batches sent and not answered, per partition, 1..5,
 *                       when idempotent (else 1, to keep the order across
 *                       retries: the leader refuses an idempotent batch
 *                       whose predecessor is missing); default 5
 * The consumer:
 *   auto.offset.reset   earliest, latest or none: where an assigned partition
 *                       starts, and where a position outside the log goes
 *                       (none: sluice_poll returns OFFSET_OUT_OF_RANGE);
 *                       default latest
 *   fetch.wait.ms       how long the leader holds a fetch that has nothing
 *                       new, 0..60000; default 500
 *   fetch.partition.bytes  how much one fetch asks of a partition (at least
 *                       one whole batch comes), 1 KiB..64 MiB; default 1 MiB
 *   fetch.buffer.bytes  fetched, not yet polled, at most (memory bound), 1 MiB
 *                       ..1 TiB; default 64 MiB
 * The group consumer (sluice_subscribe):
 *   enable.auto.commit  true or false: every auto.commit.interval.ms, when a
 *                       partition is revoked, and at close, commit what
 *                       sluice_poll handed out; default true
 *   auto.commit.interval.ms  1..86400000; default 5000
 *   group.instance.id   a static member's id (at most 64 bytes): leaving at
 *                       close keeps its partitions for the group's session
 *                       timeout, for it to come back; default none
 *   group.assignor      uniform (balanced and sticky) or range (Kafka's per
 *                       topic ranges); the group's first member chooses;
 *                       default uniform
 * An unknown key or a bad value fails here, with a message naming it. */
SLUICE_API sluice_conf_t *sluice_conf_new(void);
SLUICE_API sluice_err_t sluice_conf_set(sluice_conf_t *conf, const char *key, const char *value,
					char *errbuf, size_t errlen);
SLUICE_API void sluice_conf_destroy(sluice_conf_t *conf);

/* Takes conf only when it returns non-NULL (else errbuf says why). */
SLUICE_API sluice_client_t *sluice_client_new(sluice_conf_t *conf, char *errbuf, size_t errlen);
/* Stops the I/O thread; calls still running end with SLUICE_ERR_CANCELED
 * (their callbacks run first). After every sluice_admin_destroy(). */
SLUICE_API void sluice_client_destroy(sluice_client_t *cl);

/* ---- admin -------------------------------------------------------------- */

typedef void (*sluice_done_cb)(void *opaque, sluice_err_t err, const sluice_report_t *r);

SLUICE_API sluice_admin_t *sluice_admin_new(sluice_client_t *cl);
SLUICE_API void sluice_admin_destroy(sluice_admin_t *a);

/* Every call below returns SLUICE_OK when it was started (cb then runs
 * exactly once, with the call's error and a report valid during the
 * callback) or, with cb == NULL, the call's own outcome: the report
 * through *out (also on most errors, carrying the message; NULL when
 * none could be made), to free with sluice_report_destroy. A call that
 * could not start (bad argument, no memory) returns its error and calls
 * nothing. A blocking call (cb == NULL) made from inside a callback
 * would wait for the thread it runs on: it returns SLUICE_ERR_BUSY. */

/* Creates a topic and returns once every partition has a leader. kv:
 * "key", "value", ..., NULL (retention.ms, retention.bytes,
 * segment.bytes, cleanup.policy, max.message.bytes); may be NULL. The
 * report describes the topic as created. */
SLUICE_API sluice_err_t sluice_topic_create(sluice_admin_t *a, const char *topic,
					    int32_t partitions, int16_t replicas,
					    const char *const kv[], sluice_done_cb cb, void *opaque,
					    sluice_report_t **out);
SLUICE_API sluice_err_t sluice_topic_delete(sluice_admin_t *a, const char *topic,
					    sluice_done_cb cb, void *opaque,
					    sluice_report_t **out);
/* Every topic's name (sluice_report_topic_count/name). */
SLUICE_API sluice_err_t sluice_topic_list(sluice_admin_t *a, sluice_done_cb cb, void *opaque,
					  sluice_report_t **out);
/* A topic's partitions: leader, replicas, in-sync replicas, log range. */
SLUICE_API sluice_err_t sluice_topic_describe(sluice_admin_t *a, const char *topic,
					      sluice_done_cb cb, void *opaque,
					      sluice_report_t **out);
/* The nodes, the controller's leader, the load, the under-replicated
 * partitions. */
SLUICE_API sluice_err_t sluice_cluster_describe(sluice_admin_t *a, sluice_done_cb cb, void *opaque,
						sluice_report_t **out);

/* ---- producer ------------------------------------------------------------ */

/* Records go to one partition per batch: a key's partition is Kafka's
 * (murmur2 of the key, positive, modulo the partition count), so keys land
 * where Kafka's clients put them; a null key goes to one partition until
 * its batch is sent, then to another at random (sticky). */
#define SLUICE_PARTITION_ANY (-1)

/* A record's fate, on the I/O thread: err SLUICE_OK and its offset
 * (sluice_report_offset; -1 with acks=0), or why it was not written. r is
 * valid during the callback only. */
typedef void (*sluice_delivery_cb)(void *msg_opaque, sluice_err_t err, const sluice_report_t *r);

/* Settings come from the client's configuration. NULL: out of memory,
 * the client is closing, or called from a callback. */
SLUICE_API sluice_producer_t *sluice_producer_new(sluice_client_t *cl);
/* Copies key and value into the partition's open batch and returns; the
 * caller keeps its buffers. On SLUICE_OK cb runs exactly once (CANCELED if
 * the client closes first); on error it never runs. Errors: INVALID_ARGUMENT;
 * UNKNOWN_TOPIC (no such topic, or a partition beyond its count);
 * QUEUE_FULL (buffer.bytes taken for buffer.block.ms); TIMED_OUT (no
 * metadata for the topic within buffer.block.ms); CLOSED; BUSY when called
 * from a callback for a topic whose metadata is not yet known (a callback
 * never waits). key may be NULL (null key), value NULL with length 0 (a
 * null value, a tombstone). */
SLUICE_API sluice_err_t sluice_produce(sluice_producer_t *p, const char *topic, int32_t partition,
				       const void *key, size_t key_len, const void *value,
				       size_t value_len, sluice_delivery_cb cb, void *msg_opaque);
/* The same, with the caller's value released by free_fn(value, free_arg)
 * once it is in its batch (before this returns, on SLUICE_OK only): the
 * batch buffer is the one copy a record takes on its way to the wire. */
SLUICE_API sluice_err_t sluice_produce_ref(sluice_producer_t *p, const char *topic,
					   int32_t partition, const void *key, size_t key_len,
					   const void *value, size_t value_len,
					   void (*free_fn)(void *value, void *arg), void *free_arg,
					   sluice_delivery_cb cb, void *msg_opaque);
/* A record with headers or its own timestamp: a builder whose setters
 * borrow the caller's bytes until sluice_produce_ex returns (which copies
 * them like sluice_produce); reusable after sluice_rec_clear. A key or
 * value set to NULL is null. */
typedef struct sluice_rec sluice_rec_t;
SLUICE_API sluice_rec_t *sluice_rec_new(void);
SLUICE_API sluice_err_t sluice_rec_set_key(sluice_rec_t *r, const void *key, size_t len);
SLUICE_API sluice_err_t sluice_rec_set_value(sluice_rec_t *r, const void *value, size_t len);
SLUICE_API sluice_err_t sluice_rec_set_timestamp(sluice_rec_t *r, int64_t ms); /* default: now */
SLUICE_API sluice_err_t sluice_rec_add_header(sluice_rec_t *r, const void *key, size_t key_len,
					      const void *value, size_t value_len);
SLUICE_API void sluice_rec_clear(sluice_rec_t *r);
SLUICE_API void sluice_rec_destroy(sluice_rec_t *r);
SLUICE_API sluice_err_t sluice_produce_ex(sluice_producer_t *p, const char *topic, int32_t partition,
					  const sluice_rec_t *rec, sluice_delivery_cb cb,
					  void *msg_opaque);
/* Sends every open batch now and waits until every record produced so far
 * was reported (timeout_ms < 0: no limit; each record is bounded by
 * delivery.timeout.ms anyway). TIMED_OUT, BUSY from a callback. */
SLUICE_API sluice_err_t sluice_producer_flush(sluice_producer_t *p, int timeout_ms);
/* Flushes, then frees. Not from a callback. */
SLUICE_API void sluice_producer_close(sluice_producer_t *p);

/* A delivery report: the record's topic, partition and offset. */
SLUICE_API const char *sluice_report_topic(const sluice_report_t *r);
SLUICE_API int32_t sluice_report_partition(const sluice_report_t *r);
SLUICE_API int64_t sluice_report_offset(const sluice_report_t *r);

/* ---- consumer ------------------------------------------------------------ */

/* A consumer reads partitions it assigns itself (sluice_assign, group_id
 * NULL), or is a member of group group_id (sluice_subscribe): the group's
 * coordinator assigns it partitions, which start at the group's committed
 * offsets (none: auto.offset.reset), and cb (may be NULL) hears, inside
 * sluice_poll, of each partition assigned (SLUICE_ASSIGNED), revoked
 * (SLUICE_REVOKED: handed to another member; commit in the callback what
 * must be; with enable.auto.commit what was polled is committed right
 * after it) or lost (SLUICE_LOST: the member was fenced or timed out;
 * another member may have it already, so nothing is committed). NULL:
 * a group id empty or over 255 bytes, out of memory, the client is
 * closing, or called from a callback. */
#define SLUICE_ASSIGNED 1
#define SLUICE_REVOKED 0
#define SLUICE_LOST (-1)
typedef void (*sluice_assign_cb)(void *opaque, const char *topic, int32_t partition, int assigned);
SLUICE_API sluice_consumer_t *sluice_consumer_new(sluice_client_t *cl, const char *group_id,
						  sluice_assign_cb cb, void *opaque);
/* Starts reading a partition (SLUICE_PARTITION_ANY: every partition of the
 * topic, as its metadata has them; this waits up to request.timeout.ms for
 * it) at auto.offset.reset's end, unless sluice_seek says otherwise.
 * UNKNOWN_TOPIC, TIMED_OUT, INVALID_ARGUMENT. */
SLUICE_API sluice_err_t sluice_assign(sluice_consumer_t *c, const char *topic, int32_t partition);
typedef enum {
	SLUICE_EARLIEST,
	SLUICE_LATEST,
	SLUICE_OFFSET,    /* value = offset */
	SLUICE_TIMESTAMP, /* value = ms since the epoch: the first record at or after it */
	SLUICE_SHIFT      /* value = +/- records from the current position */
} sluice_whence_t;
/* Moves an assigned partition's position (records fetched from the old one
 * are dropped). A negative offset is INVALID_ARGUMENT; a partition not
 * assigned is UNKNOWN_TOPIC. */
SLUICE_API sluice_err_t sluice_seek(sluice_consumer_t *c, const char *topic, int32_t partition,
				    sluice_whence_t whence, int64_t value);
/* The next record, in offset order per partition: SLUICE_OK with *out
 * (free with sluice_msg_destroy), or an error and *out NULL: TIMED_OUT
 * when nothing came within timeout_ms (< 0: no limit); OFFSET_OUT_OF_RANGE
 * (auto.offset.reset=none) or UNKNOWN_TOPIC for a partition, once per
 * occurrence. Fetches run ahead of poll on the I/O thread, up to
 * fetch.buffer.bytes, so a fast poller never waits a round trip. */
SLUICE_API sluice_err_t sluice_poll(sluice_consumer_t *c, int timeout_ms, sluice_msg_t **out);
SLUICE_API const void *sluice_msg_value(const sluice_msg_t *m, size_t *len); /* NULL: null */
SLUICE_API const void *sluice_msg_key(const sluice_msg_t *m, size_t *len);   /* NULL: null */
SLUICE_API const char *sluice_msg_topic(const sluice_msg_t *m);
SLUICE_API int32_t sluice_msg_partition(const sluice_msg_t *m);
SLUICE_API int64_t sluice_msg_offset(const sluice_msg_t *m);
SLUICE_API int64_t sluice_msg_timestamp(const sluice_msg_t *m); /* ms since the epoch */
SLUICE_API size_t sluice_msg_header_count(const sluice_msg_t *m);
/* Header i's key (not NUL-terminated) and value (NULL: null). */
SLUICE_API int sluice_msg_header(const sluice_msg_t *m, size_t i, const void **key,
				 size_t *key_len, const void **value, size_t *value_len);
SLUICE_API void sluice_msg_destroy(sluice_msg_t *m);
/* Joins the group with a subscription to these topics (1..256; a topic
 * that does not exist yet is taken once it does), or to every topic whose
 * whole name matches a POSIX extended regex (internal topics aside; new
 * ones are picked up within a heartbeat). Calling it again replaces the
 * subscription. INVALID_ARGUMENT: no group, or sluice_assign was used. */
SLUICE_API sluice_err_t sluice_subscribe(sluice_consumer_t *c, const char *const topics[], size_t n);
SLUICE_API sluice_err_t sluice_subscribe_regex(sluice_consumer_t *c, const char *regex);
/* Commits the offset after m (m NULL: after every record polled, per
 * owned partition) to the group's coordinator: with cb NULL, waits for
 * the answer (up to request.timeout.ms; BUSY from a callback); else cb
 * runs once on the I/O thread. Errors: NOT_ASSIGNED (m's partition is not
 * this member's), STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, TIMED_OUT,
 * INVALID_ARGUMENT (no group). Nothing new to commit is SLUICE_OK. */
SLUICE_API sluice_err_t sluice_commit(sluice_consumer_t *c, const sluice_msg_t *m,
				      sluice_done_cb cb, void *opaque);
/* An assigned partition's position (the next record poll gives; -1 while
 * it is being looked up), and its committed offset as this member knows it
 * (fetched when it was assigned, then its own commits; -1: none). */
SLUICE_API sluice_err_t sluice_position(sluice_consumer_t *c, const char *topic,
					int32_t partition, int64_t *offset);
SLUICE_API sluice_err_t sluice_committed(sluice_consumer_t *c, const char *topic,
					 int32_t partition, int64_t *offset);
/* Stops (and starts again) fetching an assigned partition; poll gives no
 * record of a paused one, and resume goes on from the next record. */
SLUICE_API sluice_err_t sluice_pause(sluice_consumer_t *c, const char *topic, int32_t partition);
SLUICE_API sluice_err_t sluice_resume(sluice_consumer_t *c, const char *topic, int32_t partition);
/* Stops fetching and frees (messages polled stay valid until destroyed).
 * A group member first commits what was polled (enable.auto.commit) and
 * leaves the group, so that its partitions move at once. Not from a
 * callback. */
SLUICE_API void sluice_consumer_close(sluice_consumer_t *c);

/* ---- consumer groups (admin) ---------------------------------------------- */

/* The groups of the cluster (asks every node for those it coordinates;
 * nodes that do not answer are left out): sluice_report_group_*. */
SLUICE_API sluice_err_t sluice_group_list(sluice_admin_t *a, sluice_done_cb cb, void *opaque,
					  sluice_report_t **out);
/* One group: its state, epoch and assignor (group index 0), its members
 * with their assignments, and per partition (assigned or committed) the
 * committed offset, the log end and the lag. GROUP_ID_NOT_FOUND. */
SLUICE_API sluice_err_t sluice_group_describe(sluice_admin_t *a, const char *group,
					      sluice_done_cb cb, void *opaque,
					      sluice_report_t **out);
/* Removes a group with no members, offsets and all. GROUP_ID_NOT_FOUND,
 * NON_EMPTY_GROUP. */
SLUICE_API sluice_err_t sluice_group_delete(sluice_admin_t *a, const char *group,
					    sluice_done_cb cb, void *opaque, sluice_report_t **out);
/* Moves a group's committed offsets for topic's partition (-1: every
 * partition): to the log start or end, to an offset (outside the log:
 * OFFSET_OUT_OF_RANGE), to the first record at or after a timestamp (ms
 * since the epoch; none: the end), or shifted by value from the committed
 * offset (none: from the start), clamped to the log. The plan (per
 * partition: committed before, new offset) is in the report; with dry_run
 * nothing is written. Only while the group has no members
 * (NON_EMPTY_GROUP). */
SLUICE_API sluice_err_t sluice_group_reset_offsets(sluice_admin_t *a, const char *group,
						   const char *topic, int32_t partition,
						   sluice_whence_t whence, int64_t value,
						   int dry_run, sluice_done_cb cb, void *opaque,
						   sluice_report_t **out);

/* ---- reports ------------------------------------------------------------ */

/* What went wrong, in words ("" on success). */
SLUICE_API const char *sluice_report_errmsg(const sluice_report_t *r);

/* topic_list: names; topic_describe, topic_create: the one topic. */
SLUICE_API int32_t sluice_report_topic_count(const sluice_report_t *r);
SLUICE_API const char *sluice_report_topic_name(const sluice_report_t *r, int32_t i);

/* topic_describe, topic_create: per partition (0-based); node ids >= 1;
 * -1 for an index out of range or a value not known. */
SLUICE_API int32_t sluice_report_partition_count(const sluice_report_t *r);
SLUICE_API int32_t sluice_report_leader(const sluice_report_t *r, int32_t partition);
/* The partition's Raft group: each replica keeps its log in its node's
 * DATA_DIR/raft/g<N>/log (what `sluice log dump` reads). */
SLUICE_API int64_t sluice_report_raft_group(const sluice_report_t *r, int32_t partition);
/* Copies at most cap node ids into ids; returns how many there are. */
SLUICE_API size_t sluice_report_replicas(const sluice_report_t *r, int32_t partition,
					 int32_t *ids, size_t cap);
SLUICE_API size_t sluice_report_isr(const sluice_report_t *r, int32_t partition, int32_t *ids,
				    size_t cap);
SLUICE_API int64_t sluice_report_log_start(const sluice_report_t *r, int32_t partition);
SLUICE_API int64_t sluice_report_log_end(const sluice_report_t *r, int32_t partition);

/* cluster_describe. */
SLUICE_API const char *sluice_report_cluster_id(const sluice_report_t *r);
SLUICE_API int32_t sluice_report_controller(const sluice_report_t *r); /* -1: none */
/* Under-replicated partitions (fewer in-sync replicas than replicas): how
 * many, then each one, i in [0, count): its topic, partition, leader (-1:
 * none), replicas and in-sync replicas (copied as sluice_report_replicas
 * does). */
SLUICE_API int32_t sluice_report_under_replicated(const sluice_report_t *r);
SLUICE_API const char *sluice_report_under_replicated_topic(const sluice_report_t *r, int32_t i);
SLUICE_API int32_t sluice_report_under_replicated_partition(const sluice_report_t *r, int32_t i);
SLUICE_API int32_t sluice_report_under_replicated_leader(const sluice_report_t *r, int32_t i);
SLUICE_API size_t sluice_report_under_replicated_replicas(const sluice_report_t *r, int32_t i,
							  int32_t *ids, size_t cap);
SLUICE_API size_t sluice_report_under_replicated_isr(const sluice_report_t *r, int32_t i,
						     int32_t *ids, size_t cap);
SLUICE_API int32_t sluice_report_node_count(const sluice_report_t *r);
SLUICE_API int32_t sluice_report_node_id(const sluice_report_t *r, int32_t i);
SLUICE_API const char *sluice_report_node_host(const sluice_report_t *r, int32_t i);
SLUICE_API int32_t sluice_report_node_port(const sluice_report_t *r, int32_t i);
SLUICE_API const char *sluice_report_node_rack(const sluice_report_t *r, int32_t i);
SLUICE_API int sluice_report_node_alive(const sluice_report_t *r, int32_t i);
SLUICE_API int32_t sluice_report_node_leaders(const sluice_report_t *r, int32_t i);
SLUICE_API int32_t sluice_report_node_replicas(const sluice_report_t *r, int32_t i);

/* group_list: per group (i); group_describe: the one group (i = 0). */
SLUICE_API int32_t sluice_report_group_count(const sluice_report_t *r);
SLUICE_API const char *sluice_report_group_name(const sluice_report_t *r, int32_t i);
SLUICE_API const char *sluice_report_group_state(const sluice_report_t *r, int32_t i);
SLUICE_API int32_t sluice_report_group_members(const sluice_report_t *r, int32_t i);
SLUICE_API int32_t sluice_report_group_epoch(const sluice_report_t *r, int32_t i);
SLUICE_API const char *sluice_report_group_assignor(const sluice_report_t *r, int32_t i);
/* group_describe: member i's id, instance id ("": none), epoch (-2: a
 * static member away) and assignment (partition j: its topic, and the
 * partition through *partition). */
SLUICE_API int32_t sluice_report_member_count(const sluice_report_t *r);
SLUICE_API const char *sluice_report_member_id(const sluice_report_t *r, int32_t i);
SLUICE_API const char *sluice_report_member_instance(const sluice_report_t *r, int32_t i);
SLUICE_API int32_t sluice_report_member_epoch(const sluice_report_t *r, int32_t i);
SLUICE_API int32_t sluice_report_member_partition_count(const sluice_report_t *r, int32_t i);
SLUICE_API const char *sluice_report_member_partition(const sluice_report_t *r, int32_t i,
						      int32_t j, int32_t *partition);
/* group_describe, group_reset_offsets: per partition row i, sorted by
 * topic and partition: committed offset (-1: none), log end (-1: not
 * known), lag (-1: not known), and the reset's new offset. */
SLUICE_API int32_t sluice_report_offset_count(const sluice_report_t *r);
SLUICE_API const char *sluice_report_offset_topic(const sluice_report_t *r, int32_t i);
SLUICE_API int32_t sluice_report_offset_partition(const sluice_report_t *r, int32_t i);
SLUICE_API int64_t sluice_report_offset_committed(const sluice_report_t *r, int32_t i);
SLUICE_API int64_t sluice_report_offset_log_end(const sluice_report_t *r, int32_t i);
SLUICE_API int64_t sluice_report_offset_lag(const sluice_report_t *r, int32_t i);
SLUICE_API int64_t sluice_report_offset_target(const sluice_report_t *r, int32_t i);

SLUICE_API void sluice_report_destroy(sluice_report_t *r);

#ifdef __cplusplus
}
#endif

#endif
