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
 * What exists today: the client and the admin calls for topics and the
 * cluster. The producer and the consumer come with later releases. */
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
typedef struct sluice_report sluice_report_t; /* an admin call's result */

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

SLUICE_API const char *sluice_err_name(sluice_err_t err); /* "NOT_LEADER" */
SLUICE_API const char *sluice_strerror(sluice_err_t err);
SLUICE_API int sluice_err_is_retriable(sluice_err_t err);

/* ---- configuration ---------------------------------------------------- */

/* Keys:
 *   bootstrap.servers   host:port[,host:port...] ([::1]:9092 for IPv6); each
 *                       call starts at another one; default 127.0.0.1:9092
 *   client.id           text sent to the brokers; default "libsluice"
 *   request.timeout.ms  how long an admin call keeps trying (retriable
 *                       errors are retried with backoff until then),
 *                       1..3600000; default 30000
 *   socket.timeout.ms   how long one request waits for its answer (beyond
 *                       what the server may hold it on purpose) before its
 *                       connection is closed and the call retried on
 *                       another node: a hung node costs this much, not the
 *                       whole request.timeout.ms; 10..3600000; default 5000
 *   max.response.bytes  the largest response frame taken (memory bound); a
 *                       bigger one closes its connection and fails its
 *                       call with MESSAGE_TOO_LARGE; 256..2^30; default 64 MiB
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

SLUICE_API void sluice_report_destroy(sluice_report_t *r);

#ifdef __cplusplus
}
#endif

#endif
