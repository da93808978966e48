/* client/: what the files of libsluice share. Not installed.
 *
 * The I/O thread runs one libuv loop: connections to brokers (one per
 * address, opened on demand), calls (a request frame and the callback for
 * its response), and operations (an admin call's steps). User threads
 * hand operations over through a locked queue and an async handle; every
 * other structure belongs to the loop thread. */
#ifndef SL_CLIENT_INTERNAL_H
#define SL_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "errors.h"
#include "sluice.h"
#include "sluice.pb-c.h"

#define CL_MAX_BOOTSTRAP 64
#define CL_HOST_MAX 256

struct cl_addr {
	char host[CL_HOST_MAX];
	int port;
};

struct sluice_conf {
	struct cl_addr boot[CL_MAX_BOOTSTRAP];
	size_t nboot;
	char client_id[128];
	unsigned request_timeout_ms;  /* an operation's deadline, retries included */
	unsigned socket_timeout_ms;   /* one call's answer (past what the server may hold it) */
	uint32_t max_response_bytes;  /* a bigger response frame closes its connection */
	/* The producer. */
	int acks;                     /* SLUICE__ACKS__ACKS_ALL, _LEADER, _NONE */
	unsigned linger_ms;
	uint32_t batch_bytes;
	int codec, level;             /* SL_CODEC_NONE or SL_CODEC_ZSTD; zstd level */
	bool idempotence;             /* asked for; in effect only with acks=all */
	unsigned delivery_timeout_ms;
	uint64_t buffer_bytes;
	unsigned buffer_block_ms;     /* 0: fail fast when the buffer is full */
	unsigned max_in_flight;       /* per partition */
	/* The consumer. */
	int offset_reset;             /* OFFSET_RESET_* */
	unsigned fetch_wait_ms;
	uint32_t fetch_partition_bytes;
	uint64_t fetch_buffer_bytes;
	/* The group consumer. */
	bool auto_commit;
	unsigned auto_commit_ms;
	char instance_id[65];         /* "": not a static member */
	int assignor;                 /* ASSIGNOR_* */
};

enum { OFFSET_RESET_EARLIEST, OFFSET_RESET_LATEST, OFFSET_RESET_NONE };
enum { ASSIGNOR_UNIFORM, ASSIGNOR_RANGE };

/* Parses "host:port[,host:port...]" into out; SL_OK or
 * SL_EINVALID_ARGUMENT with errmsg. */
int cl_parse_bootstrap(const char *text, struct cl_addr *out, size_t cap, size_t *n,
		       char *errmsg, size_t errlen);

/* Reports: an admin call's result (admin.c), or one record's delivery
 * (producer.c). */
#define MAX_RF 16

struct rpart {
	int32_t leader;
	uint32_t raft_group;
	unsigned nrep, nisr;
	int32_t rep[MAX_RF], isr[MAX_RF];
	int64_t log_start, log_end;
};

/* An under-replicated partition (fewer in-sync replicas than replicas). */
struct rurp {
	char *topic;
	struct rpart part;
	int32_t partition;
};

struct rnode {
	int32_t id, port, leaders, replicas;
	char *host, *rack;
	int alive;
};

/* Groups (gadmin.c). */
struct rgroup {
	char *name, *state, *assignor;
	int32_t members, epoch;
};

struct rmember {
	char *id, *instance;
	int32_t epoch;
	char **topics;      /* its assignment, one entry per partition */
	int32_t *parts;
	int32_t n;
};

struct roffset {
	char *topic;
	int32_t partition;
	int64_t committed;  /* -1: none */
	int64_t log_start, log_end; /* -1: not known */
	int64_t target;     /* reset-offsets: the new offset */
};

struct sluice_report {
	int err;
	char msg[SL_ERRMSG_SIZE];
	char **names;
	int32_t nnames;
	struct rpart *parts;
	int32_t nparts;
	char cluster_id[64];
	int32_t controller, under_replicated;
	struct rnode *nodes;
	int32_t nnodes;
	struct rurp *urp;
	int32_t nurp;
	struct rgroup *groups;
	int32_t ngroups;
	struct rmember *members;
	int32_t nmembers;
	struct roffset *offsets;
	int32_t noffsets;
	/* A delivery report (producer.c). */
	const char *topic;
	int32_t partition;
	int64_t offset;
};

struct cl_conn;
struct cl_op;

/* A response (NULL with err != SL_OK: errmsg says why; the call failed
 * before a response came). resp is freed after the callback returns. */
typedef void (*cl_call_fn)(struct cl_op *op, int err, const char *errmsg, Sluice__Envelope *resp);
/* The same with the caller's arg and the response's data segments,
 * which point into the connection's buffer: valid during the callback. */
typedef void (*cl_data_fn)(struct cl_op *op, void *arg, int err, const char *errmsg,
			   Sluice__Envelope *resp, const struct iovec *seg, size_t nseg);

/* An operation: an admin call's state, driven by step() on the loop
 * thread whenever it is due and waits for no response. */
struct cl_op {
	sluice_client_t *cl;
	struct cl_op *next;
	void (*step)(struct cl_op *op);
	void (*free_state)(struct cl_op *op);
	uint64_t deadline;   /* loop ms */
	uint64_t next_at;    /* when step() is due */
	unsigned backoff_ms;
	unsigned waiting;    /* calls in flight */
	unsigned rotate;     /* bootstrap address to try next */
	unsigned tick_no;    /* the last tick that looked at it */
	int last_err;
	char last_msg[SL_ERRMSG_SIZE];
	sluice_report_t *rep;
	sluice_done_cb cb;
	void *opaque;
	/* Synchronous callers wait on done under the client's mutex. */
	bool sync, done;
	int result;
	pthread_cond_t cond;
	void *state;         /* the admin call's own */
};

struct sluice_client {
	struct sluice_conf conf;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t wake;
	uv_timer_t tick;
	pthread_mutex_t mu;
	struct cl_op *queue;  /* submitted, not yet taken by the loop (mu) */
	bool closing;         /* (mu) */
	bool shutting;        /* loop side of closing: no new calls */
	struct cl_op *ops;    /* running on the loop */
	struct cl_conn *conns;
	uint32_t next_corr;
	unsigned rotate;      /* the bootstrap address the next op starts at */
	unsigned tick_no;
	unsigned admins;      /* (mu) */
	unsigned calls_out;   /* calls not yet ended: the tick runs while any is */
	struct cl_meta *meta; /* meta.c */
	/* Test hook: responses to drop (cl_test_drop_responses). */
	atomic_uint drop_api, drop_count;
};

/* Loop thread: the loop's clock. */
uint64_t cl_now(sluice_client_t *cl);

/* Submits op (any thread): it starts on the loop; a synchronous op is
 * waited for here and its result returned (op freed, *out set). */
int cl_submit(sluice_client_t *cl, struct cl_op *op, sluice_report_t **out);

/* Loop thread: sends env to addr (a connection opened if needed); done
 * runs once, with the response or an error: SL_EREQUEST_TIMED_OUT when
 * no answer came within socket.timeout.ms plus hold_ms (how long the
 * server may hold this request on purpose, such as CreateTopics'
 * timeout_ms), or by the op's deadline, whichever is first. */
void cl_call(struct cl_op *op, const struct cl_addr *addr, Sluice__Envelope *env,
	     unsigned hold_ms, cl_call_fn done);

/* Loop thread: as cl_call, with data segments after the envelope (copied
 * into the frame), done_data's arg, and oneway: no response is awaited,
 * and done runs with SL_OK and no response once the frame is written. */
void cl_call_data(struct cl_op *op, const struct cl_addr *addr, Sluice__Envelope *env,
		  const struct iovec *seg, size_t nseg, unsigned hold_ms, bool oneway,
		  cl_data_fn done, void *arg);

/* Runs fn(arg, op) on the loop thread and waits (any other thread) until
 * fn, or something it started, calls cl_ok(op) or cl_finish(op). The op
 * is never stepped again nor timed out meanwhile. Returns its result,
 * SL_EBUSY on the loop thread, SL_ECLOSED when the client is closing. */
int cl_run(sluice_client_t *cl, void (*fn)(void *arg, struct cl_op *op), void *arg);

/* Tests only (not exported): the next count responses to API api are
 * lost on arrival, as if the network dropped them; their calls time out
 * after socket.timeout.ms, which closes the connection, and are retried. */
void cl_test_drop_responses(sluice_client_t *cl, uint32_t api, unsigned count);

/* Tests only: batches and records the producer had acknowledged. */
void cl_test_producer_counts(sluice_producer_t *p, uint64_t *batches, uint64_t *records);

/* Whether the caller is the client's I/O thread. */
bool cl_on_loop(sluice_client_t *cl);

/* ---- meta.c: the metadata cache (loop thread) -------------------------- */

/* A topic as the last Metadata answer had it. */
struct cl_mtopic {
	struct cl_mtopic *next;
	char *name;
	int err;          /* SL_OK, or why the topic is not usable (UNKNOWN_TOPIC...) */
	char errmsg[SL_ERRMSG_SIZE];
	bool known;       /* an answer about it came */
	int32_t nparts;
	int64_t *leader;  /* per partition; -1: none known */
};

/* A producer or a consumer on the I/O thread (service.c): its kick (its
 * work, on the loop) runs when a user thread wakes it, when its timer
 * fires, and after each metadata answer. */
struct cl_service {
	struct cl_service *next;
	sluice_client_t *cl;
	void (*kick)(struct cl_service *svc);
	uv_async_t wake;
	uv_timer_t timer;
	unsigned closed;
	struct cl_op *close_op;
};

/* Any thread but the loop's: sets svc up on the loop (cl_run). SL_OK,
 * SL_ENOMEM, SL_EBUSY or SL_ECLOSED. */
int cl_service_start(sluice_client_t *cl, struct cl_service *svc,
		     void (*kick)(struct cl_service *svc));
/* Any thread: kick on the loop soon. */
void cl_service_wake(struct cl_service *svc);
/* Loop: kick at `at` (cl_mono_ms), instead of any time armed before. */
void cl_service_arm(struct cl_service *svc, uint64_t at);
/* Loop, from a cl_run function: no more kicks; op ends once the handles
 * are closed (then svc's memory is the caller's to free). */
void cl_service_stop(struct cl_service *svc, struct cl_op *op);

/* Milliseconds, monotonic (any thread). */
uint64_t cl_mono_ms(void);
/* A condition variable on CLOCK_MONOTONIC, and a wait on it (mu held)
 * until deadline (cl_mono_ms; UINT64_MAX: none): false once it passed. */
void cl_cond_init(pthread_cond_t *cond);
bool cl_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, uint64_t deadline);

int cl_meta_init(sluice_client_t *cl);
void cl_meta_close(sluice_client_t *cl);
void cl_service_add(sluice_client_t *cl, struct cl_service *svc);
void cl_service_remove(sluice_client_t *cl, struct cl_service *svc);
/* The cached topic, or NULL (then it is asked for, and the services are
 * kicked when the answer comes). */
struct cl_mtopic *cl_meta_topic(sluice_client_t *cl, const char *name);
/* Asks again for every topic looked up so far (coalesced: at most one
 * Metadata call in flight, and at most one every 100 ms). */
void cl_meta_refresh(sluice_client_t *cl);
/* The address of partition's leader: false when none is known (then a
 * refresh is asked for). *id gets the leader's node id. */
bool cl_meta_leader(sluice_client_t *cl, const char *topic, int32_t partition,
		    struct cl_addr *out, int64_t *id);
/* For a producer or consumer waiting on a topic's partition count (its
 * owner's mutex held): true when *nparts became known, or *err (with
 * errmsg, SL_ERRMSG_SIZE) an error that retrying will not change; else
 * *last_err says why not yet, and a refresh is asked for. */
bool cl_meta_resolve(sluice_client_t *cl, const char *name, int32_t *nparts, int *err,
		     int *last_err, char *errmsg);
/* The address of the controller's leader (InitProducerId goes there):
 * false when none is known (a refresh is asked for). Forget: it answered
 * NOT_CONTROLLER. */
bool cl_meta_controller(sluice_client_t *cl, struct cl_addr *out);
void cl_meta_forget_controller(sluice_client_t *cl);
/* A NOT_LEADER answer named the leader: take it without a refresh. */
void cl_meta_set_leader(sluice_client_t *cl, const char *topic, int32_t partition, int64_t id,
			const char *host, uint32_t port);
/* Node id could not be reached for the partition: while it is still the
 * leader known, none is (the next request waits for a refresh, which asks
 * another node, instead of trying the dead one again). */
void cl_meta_forget_leader(sluice_client_t *cl, const char *topic, int32_t partition, int64_t id);

/* producer.c: when a partition's next attempt may go, after failures.
 * The batches in flight fail together (a connection lost, a NOT_LEADER
 * for each): one failed attempt is one step of the backoff (100 ms,
 * doubling to 1 s), however many batches it carried. A leader known now
 * that was not known when the attempt failed is tried at once; a success
 * ends the backoff, so the batches queued behind go at once. */
struct cl_backoff {
	uint64_t retry_at;   /* ms (cl_mono_ms); 0: now */
	unsigned step_ms;
	int64_t failed_at;   /* the node the failed attempt went to, -1: that
			      * node knew of no leader; 0: no failure */
};
void cl_backoff_failed(struct cl_backoff *b, uint64_t now, int64_t failed_at);
void cl_backoff_ok(struct cl_backoff *b);
/* leader: the partition's leader now (-1: none known). */
bool cl_backoff_due(const struct cl_backoff *b, uint64_t now, int64_t leader);

/* producer.c: Kafka's murmur2 (as its clients hash keys), and the
 * partition of a key among nparts. */
uint32_t cl_murmur2(const void *key, size_t len);
int32_t cl_partition_for_key(const void *key, size_t len, int32_t nparts);

/* Loop thread: the op failed in a way worth retrying: step again after a
 * backoff (100 ms doubling to 1 s), or, past the deadline, finish with
 * the last error. */
void cl_retry(struct cl_op *op, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Loop thread: ends op with err (SL_OK or not) and a message. */
void cl_finish(struct cl_op *op, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Loop thread: ends op successfully. */
void cl_ok(struct cl_op *op);
/* admin.c: records the outcome in a report. */
void cl_report_error(sluice_report_t *r, int err, const char *msg);
/* admin.c: whether a response is usable; else the op retries (a
 * retriable error) or ends with the error. body: the API's response. */
bool cl_usable(struct cl_op *op, int err, const char *msg, Sluice__Envelope *resp,
	       const void *body, const char *api);
/* admin.c: the client address of node id in a Metadata response. */
bool cl_node_addr(const Sluice__MetadataResponse *m, int64_t id, struct cl_addr *a);
/* admin.c: a Metadata request for names (n 0: every topic). */
void cl_metadata_req(Sluice__Envelope *env, Sluice__MetadataRequest *mr, char **names, size_t n);
/* gadmin.c: frees a report's group parts. */
void cl_report_clear_groups(sluice_report_t *r);

struct sluice_admin {
	sluice_client_t *cl;
};

/* The next bootstrap address to ask, rotating. */
const struct cl_addr *cl_any(struct cl_op *op);

#endif
