/* rnode: one node of a test cluster (README.md): its Raft groups (raft/rreg.h)
 * and its peer transport (raft/pnet.h) on one libuv loop, driven by one
 * command per line on stdin, one answer per line on stdout.
 *
 *   rnode --id N --dir DIR --port P --cluster HEX32 --peer ID=HOST:PORT ...
 *         [--groups G] [--voters ID,ID,...] [--heartbeat-ms 200] [--election-ms 1000]
 *         [--snapshot-threshold 256] [--snapshot-trailing 64]
 *         [--max-frame BYTES] [--max-queue BYTES] [--max-append BYTES]
 *         [--hello-timeout-ms N] [--bulk-cut-after BYTES] [--meta-per-group]
 *         [--admit-guests] [--verbose]
 *
 * Log lines go to stderr (info and above; --verbose adds debug). SIGTERM
 * hands off every group this node leads, then stops; `quit`, SIGINT and
 * the end of stdin stop at once. Either way every handle is closed and
 * everything freed before exit (the ASan build checks for leaks).
 *
 * Proposals (`propose`, `load`) build one template batch of 100-byte
 * records, copy it into a raft_malloc'd buffer per entry, stamp it with
 * sl_rio_next_offset() and the current term right before raft_apply, and
 * count the callbacks (status 0: committed). Entries are proposed from an
 * idle callback on the loop, never from inside a libraft callback. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "batch.h"
#include "errors.h"
#include "pnet.h"
#include "rio.h"
#include "rreg.h"
#include "storage.h"

#define MAX_PEERS (SL_RREG_MAX_REPLICAS - 1)
#define MAX_GROUPS 100000
#define LINE_MAX_BYTES 4096
#define PROPOSE_WINDOW 32
#define VALUE_BYTES 100
#define DIGEST_CHUNK (4u << 20)
#define LOAD_PUMP_MS 20

struct peer_opt {
	uint64_t id;
	char host[64];
	int port;
};

struct opts {
	uint64_t id;
	const char *dir;
	int port;
	uint8_t cluster[16];
	bool have_cluster;
	struct peer_opt peers[MAX_PEERS];
	unsigned npeers;
	unsigned groups;
	uint64_t voters[SL_RREG_MAX_REPLICAS]; /* --voters, ascending; 0 given: all */
	unsigned nvoters;
	unsigned heartbeat_ms, election_ms;
	unsigned snapshot_threshold, snapshot_trailing;
	uint64_t max_frame, max_queue, max_append, bulk_cut_after;
	unsigned hello_timeout_ms;
	bool verbose;
	bool meta_per_group;
	bool admit_guests;
};

/* A template batch: built once per size, copied for every entry. */
struct tmpl {
	uint8_t *bytes;
	size_t len;
};

/* A running `propose` or `load`. */
struct job {
	struct job *next;
	bool is_load;
	bool stop_sending;    /* propose: an error ended it; load: time is up */
	bool finished;        /* answered; freed once its timer is closed */
	uint32_t group;       /* propose */
	uint64_t count;       /* propose: batches to commit */
	uint64_t sent, committed, failed, bytes_committed;
	unsigned window;      /* in flight per group */
	unsigned maxgroup;    /* load */
	unsigned *inflight;   /* per group 0..maxgroup (propose: [0]) */
	uint32_t *led;        /* load: groups this node led and was ready for */
	unsigned nled;        /* at the last refresh (every LOAD_PUMP_MS) */
	unsigned inflight_total;
	struct tmpl tmpl;
	int64_t start_ms, end_ms;
	char err[64];
	uv_timer_t timer;     /* load: pumps, and ends the run */
	struct app *app;
};

/* One proposed entry. */
struct prop {
	struct raft_apply req;
	struct job *job;
	uint32_t group;
	size_t bytes;
};

union stdin_handle {
	uv_handle_t h;
	uv_stream_t s;
	uv_pipe_t pipe;
	uv_tty_t tty;
};

struct app {
	uv_loop_t loop;
	struct opts o;
	uint8_t uuid[16];
	struct sl_pnet *net;
	struct sl_rreg *reg;
	union stdin_handle in;
	bool in_stream;       /* in is a stream handle (else: file reads) */
	bool in_open;         /* in is initialised and not yet closed */
	uv_fs_t in_req;       /* reads when stdin is a file */
	char in_buf[LINE_MAX_BYTES];
	char line[LINE_MAX_BYTES];
	size_t line_len;
	bool line_overflow;
	uv_signal_t sigterm, sigint;
	uv_idle_t pump;
	struct job *jobs;
	bool stopping;
	bool handoff_running; /* a `handoff` command */
	int exit_code;
};

/* ---- Output --------------------------------------------------------- */

static void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void answer(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static void log_line(void *arg, int level, const char *msg)
{
	struct app *app = arg;
	if (level > (app->o.verbose ? SL_RLOG_DEBUG : SL_RLOG_INFO))
		return;
	const char *name = level <= SL_RLOG_ERROR ? "error"
			   : level == SL_RLOG_WARN ? "warn"
			   : level == SL_RLOG_INFO ? "info"
						   : "debug";
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	size_t n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		n--;
	fprintf(stderr, "%02d:%02d:%02d.%03ld n%" PRIu64 " %s %.*s\n", tm.tm_hour, tm.tm_min,
		tm.tm_sec, ts.tv_nsec / 1000000, app->o.id, name, (int)n, msg);
}

static void logf_app(struct app *app, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void logf_app(struct app *app, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line(app, level, msg);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Flags ---------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rnode --id N --dir DIR --port P --cluster HEX32 --peer ID=HOST:PORT ...\n"
		"             [--groups G] [--voters ID,ID,...] [--heartbeat-ms 200]\n"
		"             [--election-ms 1000]\n"
		"             [--snapshot-threshold 256] [--snapshot-trailing 64]\n"
		"             [--max-frame BYTES] [--max-queue BYTES] [--max-append BYTES]\n"
		"             [--hello-timeout-ms N] [--bulk-cut-after BYTES]\n"
		"             [--meta-per-group] [--admit-guests] [--verbose]\n"
		"commands on stdin: status | group G | propose G COUNT BYTES [WINDOW] |\n"
		"  digest G END | load SECONDS BYTES INFLIGHT MAXGROUP | stats |\n"
		"  transfer G TARGET | handoff | start-from G VOTERS FROM SRC END |\n"
		"  delete G | quit\n"
		"(see tests/cluster/README.md; the end of stdin acts as quit)\n");
}

static int bad_flag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_flag(const char *fmt, ...)
{
	va_list ap;
	fputs("rnode: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	return 2;
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (s == NULL || *s == '\0' || *s == '-')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_hex16(const char *s, uint8_t out[16])
{
	if (strlen(s) != 32)
		return false;
	for (int i = 0; i < 16; i++) {
		unsigned v;
		char two[3] = { s[2 * i], s[2 * i + 1], '\0' };
		char *end;
		if (!isxdigit((unsigned char)two[0]) || !isxdigit((unsigned char)two[1]))
			return false;
		v = (unsigned)strtoul(two, &end, 16);
		out[i] = (uint8_t)v;
	}
	return true;
}

static bool parse_peer(const char *s, struct peer_opt *p)
{
	const char *eq = strchr(s, '=');
	const char *colon = strrchr(s, ':');
	if (eq == NULL || colon == NULL || colon < eq)
		return false;
	char idbuf[32];
	size_t n = (size_t)(eq - s);
	if (n == 0 || n >= sizeof(idbuf))
		return false;
	memcpy(idbuf, s, n);
	idbuf[n] = '\0';
	if (!parse_u64(idbuf, 1, UINT64_MAX, &p->id))
		return false;
	n = (size_t)(colon - eq - 1);
	if (n == 0 || n >= sizeof(p->host))
		return false;
	memcpy(p->host, eq + 1, n);
	p->host[n] = '\0';
	uint64_t port;
	if (!parse_u64(colon + 1, 1, 65535, &port))
		return false;
	p->port = (int)port;
	return true;
}

static void sort_ids(uint64_t *ids, unsigned n)
{
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
			uint64_t t = ids[j];
			ids[j] = ids[j - 1];
			ids[j - 1] = t;
		}
}

/* Parses "ID,ID,..." (ids >= 1, no repeats, at most SL_RREG_MAX_REPLICAS)
 * into ids, sorted ascending: every node then writes the same
 * configuration entry, byte for byte. */
static bool parse_ids(const char *s, uint64_t ids[SL_RREG_MAX_REPLICAS], unsigned *n)
{
	char buf[256];
	if (s == NULL || strlen(s) >= sizeof(buf))
		return false;
	snprintf(buf, sizeof(buf), "%s", s);
	*n = 0;
	char *p = buf;
	for (;;) {
		char *comma = strchr(p, ',');
		if (comma != NULL)
			*comma = '\0';
		uint64_t id;
		if (*n == SL_RREG_MAX_REPLICAS || !parse_u64(p, 1, UINT64_MAX, &id))
			return false;
		for (unsigned i = 0; i < *n; i++)
			if (ids[i] == id)
				return false;
		ids[(*n)++] = id;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	sort_ids(ids, *n);
	return true;
}

static int parse_flags(int argc, char **argv, struct opts *o)
{
	enum { O_ID = 1, O_DIR, O_PORT, O_CLUSTER, O_PEER, O_GROUPS, O_HB, O_EL, O_ST, O_STR,
	       O_MAXF, O_MAXQ, O_MAXA, O_HELLO, O_CUT, O_VERBOSE, O_HELP, O_VOTERS,
	       O_META, O_GUESTS };
	static const struct option longs[] = {
		{ "id", required_argument, NULL, O_ID },
		{ "dir", required_argument, NULL, O_DIR },
		{ "port", required_argument, NULL, O_PORT },
		{ "cluster", required_argument, NULL, O_CLUSTER },
		{ "peer", required_argument, NULL, O_PEER },
		{ "groups", required_argument, NULL, O_GROUPS },
		{ "voters", required_argument, NULL, O_VOTERS },
		{ "heartbeat-ms", required_argument, NULL, O_HB },
		{ "election-ms", required_argument, NULL, O_EL },
		{ "snapshot-threshold", required_argument, NULL, O_ST },
		{ "snapshot-trailing", required_argument, NULL, O_STR },
		{ "max-frame", required_argument, NULL, O_MAXF },
		{ "max-queue", required_argument, NULL, O_MAXQ },
		{ "max-append", required_argument, NULL, O_MAXA },
		{ "hello-timeout-ms", required_argument, NULL, O_HELLO },
		{ "bulk-cut-after", required_argument, NULL, O_CUT },
		{ "meta-per-group", no_argument, NULL, O_META },
		{ "admit-guests", no_argument, NULL, O_GUESTS },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	memset(o, 0, sizeof(*o));
	o->port = -1;
	o->groups = 1;
	opterr = 0;
	int c;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (c) {
		case O_ID:
			if (!parse_u64(optarg, 1, UINT64_MAX, &o->id))
				return bad_flag("--id: expected an integer >= 1, got '%s'", optarg);
			break;
		case O_DIR:
			if (*optarg == '\0')
				return bad_flag("--dir: empty path");
			o->dir = optarg;
			break;
		case O_PORT:
			if (!parse_u64(optarg, 0, 65535, &v))
				return bad_flag("--port: expected 0..65535, got '%s'", optarg);
			o->port = (int)v;
			break;
		case O_CLUSTER:
			if (!parse_hex16(optarg, o->cluster))
				return bad_flag("--cluster: expected 32 hex digits, got '%s'", optarg);
			o->have_cluster = true;
			break;
		case O_PEER:
			if (o->npeers == MAX_PEERS)
				return bad_flag("--peer: at most %d peers", MAX_PEERS);
			if (!parse_peer(optarg, &o->peers[o->npeers]))
				return bad_flag("--peer: expected ID=HOST:PORT, got '%s'", optarg);
			o->npeers++;
			break;
		case O_GROUPS:
			if (!parse_u64(optarg, 0, MAX_GROUPS, &v))
				return bad_flag("--groups: expected 0..%d, got '%s'", MAX_GROUPS, optarg);
			o->groups = (unsigned)v;
			break;
		case O_VOTERS:
			if (!parse_ids(optarg, o->voters, &o->nvoters))
				return bad_flag("--voters: expected 1 to %d distinct ids >= 1 separated "
						"by commas, got '%s'", SL_RREG_MAX_REPLICAS, optarg);
			break;
		case O_HB:
			if (!parse_u64(optarg, 1, 60000, &v))
				return bad_flag("--heartbeat-ms: expected 1..60000, got '%s'", optarg);
			o->heartbeat_ms = (unsigned)v;
			break;
		case O_EL:
			if (!parse_u64(optarg, 1, 600000, &v))
				return bad_flag("--election-ms: expected 1..600000, got '%s'", optarg);
			o->election_ms = (unsigned)v;
			break;
		case O_ST:
			if (!parse_u64(optarg, 1, UINT_MAX, &v))
				return bad_flag("--snapshot-threshold: expected >= 1, got '%s'", optarg);
			o->snapshot_threshold = (unsigned)v;
			break;
		case O_STR:
			if (!parse_u64(optarg, 1, UINT_MAX, &v))
				return bad_flag("--snapshot-trailing: expected >= 1, got '%s'", optarg);
			o->snapshot_trailing = (unsigned)v;
			break;
		case O_MAXF:
			if (!parse_u64(optarg, 1024, UINT32_MAX, &o->max_frame))
				return bad_flag("--max-frame: expected 1024..%u, got '%s'", UINT32_MAX,
						optarg);
			break;
		case O_MAXQ:
			if (!parse_u64(optarg, 1, SIZE_MAX, &o->max_queue))
				return bad_flag("--max-queue: expected 1..%zu, got '%s'", (size_t)SIZE_MAX,
						optarg);
			break;
		case O_MAXA:
			if (!parse_u64(optarg, 1, UINT64_MAX, &o->max_append))
				return bad_flag("--max-append: expected >= 1, got '%s'", optarg);
			break;
		case O_HELLO:
			if (!parse_u64(optarg, 1, 600000, &v))
				return bad_flag("--hello-timeout-ms: expected 1..600000, got '%s'",
						optarg);
			o->hello_timeout_ms = (unsigned)v;
			break;
		case O_CUT:
			if (!parse_u64(optarg, 1, UINT64_MAX, &o->bulk_cut_after))
				return bad_flag("--bulk-cut-after: expected >= 1, got '%s'", optarg);
			break;
		case O_VERBOSE:
			o->verbose = true;
			break;
		case O_META:
			o->meta_per_group = true;
			break;
		case O_GUESTS:
			o->admit_guests = true;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			if (optopt != 0)
				return bad_flag("%s: needs a value", argv[optind - 1]);
			return bad_flag("unknown flag '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad_flag("unexpected argument '%s'", argv[optind]);
	if (o->id == 0)
		return bad_flag("--id is required");
	if (o->dir == NULL)
		return bad_flag("--dir is required");
	if (o->port < 0)
		return bad_flag("--port is required");
	if (!o->have_cluster)
		return bad_flag("--cluster is required");
	for (unsigned i = 0; i < o->npeers; i++) {
		if (o->peers[i].id == o->id)
			return bad_flag("--peer %" PRIu64 ": that is this node's id", o->id);
		for (unsigned j = 0; j < i; j++)
			if (o->peers[j].id == o->peers[i].id)
				return bad_flag("--peer %" PRIu64 " given twice", o->peers[i].id);
	}
	bool self = o->nvoters == 0;
	for (unsigned i = 0; i < o->nvoters; i++) {
		bool known = o->voters[i] == o->id;
		self = self || known;
		for (unsigned j = 0; j < o->npeers && !known; j++)
			known = o->peers[j].id == o->voters[i];
		if (!known)
			return bad_flag("--voters: %" PRIu64 " is neither this node nor a --peer",
					o->voters[i]);
	}
	if (!self && o->groups > 0)
		return bad_flag("--voters: this node (%" PRIu64 ") must be one of them", o->id);
	return 0;
}

/* ---- The node UUID -------------------------------------------------- */

static int mkdirs(const char *path)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s", path) >= (int)sizeof(p)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	if (mkdir(p, 0755) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rv = fsync(fd);
	close(fd);
	return rv;
}

/* Reads DIR/uuid, or creates it: 16 random bytes, written to a temporary
 * file, synced, renamed into place, directory synced. */
static int load_uuid(const char *dir, uint8_t uuid[16])
{
	char path[PATH_MAX], tmp[PATH_MAX];
	snprintf(path, sizeof(path), "%s/uuid", dir);
	snprintf(tmp, sizeof(tmp), "%s/uuid.tmp", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, uuid, 16);
		uint8_t extra;
		ssize_t more = read(fd, &extra, 1);
		close(fd);
		if (n != 16 || more != 0) {
			fprintf(stderr, "rnode: %s: not a 16-byte node uuid\n", path);
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT) {
		fprintf(stderr, "rnode: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (getrandom(uuid, 16, 0) != 16) {
		fprintf(stderr, "rnode: getrandom: %s\n", strerror(errno));
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, uuid, 16) != 16 || fsync(fd) != 0) {
		fprintf(stderr, "rnode: %s: %s\n", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) != 0 || fsync_path(dir) != 0) {
		fprintf(stderr, "rnode: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- Proposals ------------------------------------------------------ */

static int tmpl_build(struct tmpl *t, size_t bytes)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	uint8_t val[VALUE_BYTES];
	for (size_t i = 0; i < sizeof(val); i++)
		val[i] = (uint8_t)('a' + i % 26);
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	int rv = SL_OK;
	do {
		rv = sl_batch_builder_add(&b, 1, NULL, -1, val, sizeof(val), NULL, 0);
	} while (rv == SL_OK && sl_batch_builder_size(&b) < bytes);
	const uint8_t *out;
	size_t len;
	if (rv == SL_OK)
		rv = sl_batch_builder_finish(&b, &out, &len);
	if (rv == SL_OK) {
		t->bytes = malloc(len);
		if (t->bytes == NULL)
			rv = SL_ENOMEM;
		else
			memcpy(t->bytes, out, len);
		t->len = len;
	}
	sl_batch_builder_free(&b);
	return rv;
}

static void on_pump(uv_idle_t *h);

static void schedule_pump(struct app *app)
{
	if (!app->stopping)
		uv_idle_start(&app->pump, on_pump);
}

static void on_applied(struct raft_apply *req, int status, void *result)
{
	(void)result;
	struct prop *pr = (struct prop *)req;
	struct job *job = pr->job;
	unsigned slot = job->is_load ? pr->group : 0;
	job->inflight[slot]--;
	job->inflight_total--;
	if (status == 0) {
		job->committed++;
		job->bytes_committed += pr->bytes;
	} else {
		job->failed++;
		if (job->err[0] == '\0')
			snprintf(job->err, sizeof(job->err), "%s",
				 status == RAFT_LEADERSHIPLOST ? "leadership-lost"
				 : status == RAFT_NOTLEADER    ? "not-leader"
				 : status == RAFT_SHUTDOWN     ? "shutdown"
							       : raft_strerror(status));
		if (!job->is_load)
			job->stop_sending = true;
	}
	free(pr);
	schedule_pump(job->app);
}

/* Proposes one entry on group. Returns 0, or a short reason. */
static const char *submit(struct job *job, uint32_t group)
{
	struct app *app = job->app;
	struct raft *r = sl_rreg_raft(app->reg, group);
	struct raft_io *io = sl_rreg_io(app->reg, group);
	if (r == NULL || io == NULL)
		return "not-found";
	if (raft_state(r) != RAFT_LEADER)
		return "not-leader";
	if (!sl_rio_leader_ready(io))
		return "not-ready";
	struct prop *pr = malloc(sizeof(*pr));
	struct raft_buffer buf = { raft_malloc(job->tmpl.len), job->tmpl.len };
	if (pr == NULL || buf.base == NULL) {
		free(pr);
		raft_free(buf.base);
		return "no-memory";
	}
	memcpy(buf.base, job->tmpl.bytes, job->tmpl.len);
	/* The leader stamps the offset the entry will take and its term. */
	sl_batch_stamp(buf.base, sl_rio_next_offset(io), (int32_t)r->current_term);
	pr->job = job;
	pr->group = group;
	pr->bytes = job->tmpl.len;
	int rv = raft_apply(r, &pr->req, &buf, 1, on_applied);
	if (rv != 0) {
		raft_free(buf.base);
		free(pr);
		return rv == RAFT_NOTLEADER ? "not-leader" : raft_strerror(rv);
	}
	job->inflight[job->is_load ? group : 0]++;
	job->inflight_total++;
	job->sent++;
	return NULL;
}

static void on_job_timer_closed(uv_handle_t *h)
{
	struct job *job = h->data;
	free(job->inflight);
	free(job->led);
	free(job->tmpl.bytes);
	free(job);
}

static void job_answer(struct job *job)
{
	if (job->is_load) {
		double secs = (double)(now_ms() - job->start_ms) / 1000.0;
		answer("load batches=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f", job->committed,
		       job->bytes_committed, secs);
	} else if (job->committed == job->count) {
		answer("propose %u ok committed=%" PRIu64, job->group, job->committed);
	} else {
		answer("propose %u err %s committed=%" PRIu64, job->group,
		       job->err[0] != '\0' ? job->err : "failed", job->committed);
	}
}

/* Unlinks and frees a job with nothing in flight (its timer closes first). */
static void job_drop(struct app *app, struct job *job)
{
	for (struct job **jp = &app->jobs; *jp != NULL; jp = &(*jp)->next) {
		if (*jp == job) {
			*jp = job->next;
			break;
		}
	}
	uv_close((uv_handle_t *)&job->timer, on_job_timer_closed);
}

static void job_pump(struct job *job)
{
	if (!job->stop_sending) {
		if (job->is_load) {
			for (unsigned i = 0; i < job->nled; i++) {
				uint32_t g = job->led[i];
				while (job->inflight[g] < job->window)
					if (submit(job, g) != NULL)
						break;
			}
		} else {
			while (job->sent < job->count && job->inflight_total < job->window) {
				const char *why = submit(job, job->group);
				if (why != NULL) {
					snprintf(job->err, sizeof(job->err), "%s", why);
					job->stop_sending = true;
					break;
				}
			}
		}
	}
	bool done = job->is_load ? job->stop_sending
				 : job->stop_sending || job->sent == job->count;
	if (done && job->inflight_total == 0 && !job->finished) {
		job->finished = true;
		job_answer(job);
	}
}

static void on_pump(uv_idle_t *h)
{
	struct app *app = h->data;
	uv_idle_stop(h);
	if (app->stopping)
		return;
	struct job *next;
	for (struct job *job = app->jobs; job != NULL; job = next) {
		next = job->next;
		job_pump(job);
		if (job->finished)
			job_drop(app, job);
	}
}

/* The groups a load drives: those this node leads and may propose to. */
static void load_refresh(struct job *job)
{
	struct sl_rreg *reg = job->app->reg;
	job->nled = 0;
	for (uint32_t g = 1; g <= job->maxgroup; g++) {
		struct raft *r = sl_rreg_raft(reg, g);
		struct raft_io *io = sl_rreg_io(reg, g);
		if (r != NULL && io != NULL && raft_state(r) == RAFT_LEADER &&
		    sl_rio_leader_ready(io))
			job->led[job->nled++] = g;
	}
}

static void on_load_timer(uv_timer_t *t)
{
	struct job *job = t->data;
	load_refresh(job);
	if (now_ms() >= job->end_ms) {
		job->stop_sending = true;
		uv_timer_stop(t);
	}
	schedule_pump(job->app);
}

static struct job *job_new(struct app *app, bool is_load, unsigned slots, size_t bytes)
{
	struct job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return NULL;
	job->inflight = calloc(slots, sizeof(*job->inflight));
	if (job->inflight == NULL || tmpl_build(&job->tmpl, bytes) != SL_OK) {
		free(job->inflight);
		free(job);
		return NULL;
	}
	job->app = app;
	job->is_load = is_load;
	job->start_ms = now_ms();
	uv_timer_init(&app->loop, &job->timer);
	job->timer.data = job;
	job->next = app->jobs;
	app->jobs = job;
	return job;
}

/* ---- Commands ------------------------------------------------------- */

static const char *role_name(int role)
{
	switch (role) {
	case SL_RROLE_LEADER:
		return "leader";
	case SL_RROLE_FOLLOWER:
		return "follower";
	case SL_RROLE_CANDIDATE:
		return "candidate";
	default:
		return "stopped";
	}
}

struct known {
	struct sl_rreg *reg;
	unsigned n;
};

static void count_known(void *arg, uint32_t group)
{
	struct known *k = arg;
	struct sl_rgroup_state st;
	if (sl_rreg_state(k->reg, group, &st) == SL_OK && st.leader != 0)
		k->n++;
}

static void cmd_status(struct app *app)
{
	struct sl_rreg_stats st;
	sl_rreg_get_stats(app->reg, &st);
	struct known k = { app->reg, 0 };
	sl_rreg_foreach(app->reg, count_known, &k);
	answer("status groups=%u leaders=%u ready=%u followers=%u candidates=%u stopped=%u "
	       "known_leader=%u",
	       st.groups, st.leaders, st.ready, st.followers, st.candidates, st.stopped, k.n);
}

static void cmd_group(struct app *app, uint32_t g)
{
	struct sl_rgroup_state st;
	if (sl_rreg_state(app->reg, g, &st) != SL_OK) {
		answer("group %u err not-found", g);
		return;
	}
	char isr[256] = "", match[512] = "";
	size_t il = 0, ml = 0;
	for (unsigned i = 0; i < st.n_replicas && i < SL_RREG_MAX_REPLICAS; i++) {
		if (st.replicas[i].in_sync && il < sizeof(isr))
			il += (size_t)snprintf(isr + il, sizeof(isr) - il, "%s%" PRIu64,
					       il > 0 ? "," : "", st.replicas[i].node);
		if (ml < sizeof(match))
			ml += (size_t)snprintf(match + ml, sizeof(match) - ml,
					       "%s%" PRIu64 ":%llu", ml > 0 ? "," : "",
					       st.replicas[i].node,
					       (unsigned long long)st.replicas[i].match);
	}
	answer("group %u role=%s term=%llu leader=%" PRIu64 " commit=%llu durable=%llu last=%llu "
	       "next_offset=%" PRId64 " isr=%s match=%s",
	       g, role_name(st.role), (unsigned long long)st.term, st.leader,
	       (unsigned long long)st.commit, (unsigned long long)st.durable,
	       (unsigned long long)st.last, st.next_offset, isr, match);
}

static void cmd_propose(struct app *app, uint32_t g, uint64_t count, uint64_t bytes,
			unsigned window)
{
	struct raft *r = sl_rreg_raft(app->reg, g);
	struct raft_io *io = sl_rreg_io(app->reg, g);
	if (r == NULL || io == NULL) {
		answer("propose %u err not-found", g);
		return;
	}
	if (raft_state(r) != RAFT_LEADER) {
		struct sl_rgroup_state st;
		uint64_t leader = sl_rreg_state(app->reg, g, &st) == SL_OK ? st.leader : 0;
		answer("propose %u err not-leader leader=%" PRIu64, g, leader);
		return;
	}
	if (!sl_rio_leader_ready(io)) {
		answer("propose %u err not-ready", g);
		return;
	}
	struct job *job = job_new(app, false, 1, bytes);
	if (job == NULL) {
		answer("propose %u err no-memory", g);
		return;
	}
	job->group = g;
	job->count = count;
	job->window = window;
	schedule_pump(app);
}

static void cmd_load(struct app *app, uint64_t seconds, uint64_t bytes, uint64_t inflight,
		     uint64_t maxgroup)
{
	struct job *job = job_new(app, true, (unsigned)maxgroup + 1, bytes);
	if (job == NULL) {
		answer("load err no-memory");
		return;
	}
	job->led = malloc(((size_t)maxgroup + 1) * sizeof(*job->led));
	if (job->led == NULL) {
		job->finished = true;
		job_drop(app, job);
		answer("load err no-memory");
		return;
	}
	job->window = (unsigned)inflight;
	job->maxgroup = (unsigned)maxgroup;
	load_refresh(job);
	job->end_ms = job->start_ms + (int64_t)seconds * 1000;
	uv_timer_start(&job->timer, on_load_timer, LOAD_PUMP_MS, LOAD_PUMP_MS);
	schedule_pump(app);
}

/* CRC-32C over the bytes of every whole batch from the log's start whose
 * last offset is below end; *next: the first offset not covered. */
static int digest(sl_log *log, int64_t end, uint32_t *crc_out, int64_t *next_out)
{
	uint32_t crc = 0;
	int64_t off = sl_log_start_offset(log);
	int64_t next = off;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rv = SL_OK;
	bool done = false;
	while (!done && off < end) {
		struct sl_slice sl;
		rv = sl_log_read(log, off, DIGEST_CHUNK, &sl);
		if (rv != SL_OK)
			break;
		if (sl.len == 0) {
			sl_slice_release(&sl);
			break;
		}
		if (sl.len > cap) {
			uint8_t *p = realloc(buf, sl.len);
			if (p == NULL) {
				sl_slice_release(&sl);
				rv = SL_ENOMEM;
				break;
			}
			buf = p;
			cap = sl.len;
		}
		rv = sl_slice_read(&sl, buf);
		sl_slice_release(&sl);
		if (rv != SL_OK)
			break;
		size_t pos = 0;
		while (pos < sl.len) {
			struct sl_batch_header h;
			rv = sl_batch_parse_header(buf + pos, sl.len - pos, sl.len - pos, &h);
			if (rv != SL_OK)
				break;
			if (sl_batch_last_offset(&h) >= end) {
				done = true;
				break;
			}
			size_t size = sl_batch_total_size(&h);
			crc = sl_crc32c(crc, buf + pos, size);
			next = sl_batch_last_offset(&h) + 1;
			pos += size;
		}
		if (rv != SL_OK)
			break;
		if (next <= off) /* no progress: should not happen */
			break;
		off = next;
	}
	free(buf);
	*crc_out = crc;
	*next_out = next;
	return rv;
}

static void cmd_digest(struct app *app, uint32_t g, int64_t end)
{
	sl_log *log = sl_rreg_log(app->reg, g);
	if (log == NULL) {
		answer("digest %u err not-found", g);
		return;
	}
	uint32_t crc;
	int64_t next;
	int rv = digest(log, end, &crc, &next);
	if (rv != SL_OK) {
		logf_app(app, SL_RLOG_ERROR, "digest of group %u: %s: %s", g, sl_err_name(rv),
			 sl_log_errmsg(log));
		answer("digest %u err %s", g, sl_err_name(rv));
		return;
	}
	answer("digest %u crc=%08x next=%" PRId64, g, crc, next);
}

static void cmd_stats(struct app *app)
{
	struct sl_pnet_stats ns;
	struct sl_rreg_stats rs;
	sl_pnet_get_stats(app->net, &ns);
	sl_rreg_get_stats(app->reg, &rs);
	answer("stats fences=%" PRIu64 " restarts=%" PRIu64 " frames_sent=%" PRIu64
	       " frames_received=%" PRIu64 " writes=%" PRIu64 " heartbeats_dropped=%" PRIu64
	       " refused=%" PRIu64 " connects=%" PRIu64 " accepted=%" PRIu64
	       " rejected_hello=%" PRIu64 " closed_oversized=%" PRIu64 " closed_garbage=%" PRIu64
	       " unknown_group=%" PRIu64 " bulk_sessions=%" PRIu64 " bulk_served=%" PRIu64
	       " bulk_fetched=%" PRIu64 " bulk_retries=%" PRIu64 " peers_connected=%u incoming=%u"
	       " meta_flushes=%" PRIu64 " meta_records=%" PRIu64 " guests=%" PRIu64
	       " guest_dropped=%" PRIu64,
	       sl_rio_fence_count(), rs.restarts, ns.frames_sent, ns.frames_received, ns.writes,
	       ns.heartbeats_dropped, ns.messages_refused, ns.connects, ns.accepted,
	       ns.rejected_hello, ns.closed_oversized, ns.closed_garbage, ns.unknown_group,
	       ns.bulk_sessions, ns.bulk_bytes_served, ns.bulk_bytes_fetched,
	       ns.bulk_fetch_retries, ns.peers_connected, ns.incoming, rs.meta_flushes,
	       rs.meta_records, ns.guests, ns.guest_dropped);
}

static void shutdown_begin(struct app *app);

static void on_handoff_cmd(void *arg, unsigned moved, unsigned failed)
{
	struct app *app = arg;
	app->handoff_running = false;
	answer("handoff moved=%u failed=%u", moved, failed);
}

static void on_handoff_term(void *arg, unsigned moved, unsigned failed)
{
	struct app *app = arg;
	answer("handoff moved=%u failed=%u", moved, failed);
	logf_app(app, SL_RLOG_INFO, "SIGTERM: handoff done moved=%u failed=%u, stopping", moved,
		 failed);
	shutdown_begin(app);
}

static void on_transfer_cmd(void *arg, uint32_t group, int status)
{
	(void)arg;
	if (status == SL_OK)
		answer("transfer %u ok", group);
	else
		answer("transfer %u err %s", group, sl_err_name(status));
}

static void cmd_transfer(struct app *app, uint32_t g, uint64_t target)
{
	int rv = sl_rreg_transfer(app->reg, g, target, on_transfer_cmd, app);
	if (rv != SL_OK)
		answer("transfer %u err %s", g, sl_err_name(rv));
}

static void cmd_handoff(struct app *app)
{
	int rv = sl_rreg_handoff(app->reg, on_handoff_cmd, app);
	if (rv != SL_OK) {
		answer("handoff err %s", sl_err_name(rv));
		return;
	}
	app->handoff_running = true;
}

static void on_start_from(void *arg, uint32_t group, int status)
{
	struct app *app = arg;
	if (status == SL_OK) {
		answer("start-from %u ok", group);
	} else {
		logf_app(app, SL_RLOG_WARN, "start-from %u: %s", group, sl_err_name(status));
		answer("start-from %u err %s", group, sl_err_name(status));
	}
}

static void cmd_start_from(struct app *app, uint32_t g, const uint64_t *voters, unsigned n,
			   uint64_t from, uint32_t src, int64_t end)
{
	char errmsg[SL_ERRMSG_SIZE] = "";
	int rv = sl_rreg_start_from(app->reg, g, voters, n, from, src, end, on_start_from, app,
				    errmsg);
	if (rv != SL_OK) {
		logf_app(app, SL_RLOG_WARN, "start-from %u: %s: %s", g, sl_err_name(rv), errmsg);
		answer("start-from %u err %s", g, sl_err_name(rv));
	}
}

static void on_deleted(void *arg, uint32_t group)
{
	(void)arg;
	answer("delete %u ok", group);
}

static void cmd_delete(struct app *app, uint32_t g)
{
	if (sl_rreg_delete(app->reg, g, on_deleted, app) != SL_OK)
		answer("delete %u err not-found", g);
}

/* Splits line into at most max words; returns the count. */
static int split(char *line, char **words, int max)
{
	int n = 0;
	char *save = NULL;
	for (char *w = strtok_r(line, " \t\r", &save); w != NULL && n < max;
	     w = strtok_r(NULL, " \t\r", &save))
		words[n++] = w;
	return n;
}

static void command(struct app *app, char *line)
{
	char *w[8];
	int n = split(line, w, 8);
	if (n == 0)
		return;
	uint64_t a, b, c, d;
	int64_t end;
	uint64_t ids[SL_RREG_MAX_REPLICAS];
	unsigned nids;
	if (strcmp(w[0], "status") == 0 && n == 1) {
		cmd_status(app);
	} else if (strcmp(w[0], "group") == 0 && n == 2 && parse_u64(w[1], 0, UINT32_MAX, &a)) {
		cmd_group(app, (uint32_t)a);
	} else if (strcmp(w[0], "propose") == 0 && (n == 4 || n == 5) &&
		   parse_u64(w[1], 0, UINT32_MAX, &a) && parse_u64(w[2], 1, UINT32_MAX, &b) &&
		   parse_u64(w[3], 1, 64u << 20, &c) &&
		   (n == 4 || parse_u64(w[4], 1, 4096, &d))) {
		cmd_propose(app, (uint32_t)a, b, c, n == 4 ? PROPOSE_WINDOW : (unsigned)d);
	} else if (strcmp(w[0], "digest") == 0 && n == 3 &&
		   parse_u64(w[1], 0, UINT32_MAX, &a) && parse_u64(w[2], 0, INT64_MAX, &b)) {
		end = (int64_t)b;
		cmd_digest(app, (uint32_t)a, end);
	} else if (strcmp(w[0], "load") == 0 && n == 5 && parse_u64(w[1], 0, 86400, &a) &&
		   parse_u64(w[2], 1, 64u << 20, &b) && parse_u64(w[3], 1, 4096, &c) &&
		   parse_u64(w[4], 0, MAX_GROUPS, &d)) {
		cmd_load(app, a, b, c, d);
	} else if (strcmp(w[0], "stats") == 0 && n == 1) {
		cmd_stats(app);
	} else if (strcmp(w[0], "transfer") == 0 && n == 3 &&
		   parse_u64(w[1], 0, UINT32_MAX, &a) && parse_u64(w[2], 0, UINT64_MAX, &b)) {
		cmd_transfer(app, (uint32_t)a, b);
	} else if (strcmp(w[0], "handoff") == 0 && n == 1) {
		cmd_handoff(app);
	} else if (strcmp(w[0], "start-from") == 0 && n == 6 &&
		   parse_u64(w[1], 0, UINT32_MAX, &a) && parse_ids(w[2], ids, &nids) &&
		   parse_u64(w[3], 1, UINT64_MAX, &b) && parse_u64(w[4], 0, UINT32_MAX, &c) &&
		   parse_u64(w[5], 0, INT64_MAX, &d)) {
		cmd_start_from(app, (uint32_t)a, ids, nids, b, (uint32_t)c, (int64_t)d);
	} else if (strcmp(w[0], "delete") == 0 && n == 2 && parse_u64(w[1], 0, UINT32_MAX, &a)) {
		cmd_delete(app, (uint32_t)a);
	} else if (strcmp(w[0], "quit") == 0 && n == 1) {
		shutdown_begin(app);
	} else {
		logf_app(app, SL_RLOG_WARN, "bad command: %s (%d words)", w[0], n);
		answer("%s err bad-command", w[0]);
	}
}

/* ---- stdin ---------------------------------------------------------- */

static void feed(struct app *app, const char *p, size_t n)
{
	for (size_t i = 0; i < n && !app->stopping; i++) {
		if (p[i] != '\n') {
			if (app->line_len < sizeof(app->line) - 1)
				app->line[app->line_len++] = p[i];
			else
				app->line_overflow = true;
			continue;
		}
		app->line[app->line_len] = '\0';
		if (app->line_overflow) {
			logf_app(app, SL_RLOG_WARN, "command line longer than %d bytes ignored",
				 LINE_MAX_BYTES - 1);
			answer("error line-too-long");
		} else {
			command(app, app->line);
		}
		app->line_len = 0;
		app->line_overflow = false;
	}
}

static void on_stdin_eof(struct app *app)
{
	if (app->stopping)
		return;
	logf_app(app, SL_RLOG_INFO, "end of stdin: stopping");
	shutdown_begin(app);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	struct app *app = h->data;
	*buf = uv_buf_init(app->in_buf, sizeof(app->in_buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct app *app = s->data;
	if (n > 0) {
		feed(app, buf->base, (size_t)n);
	} else if (n < 0) {
		if (n != UV_EOF)
			logf_app(app, SL_RLOG_WARN, "stdin: %s", uv_strerror((int)n));
		uv_read_stop(s);
		on_stdin_eof(app);
	}
}

static void on_file_read(uv_fs_t *req)
{
	struct app *app = req->data;
	ssize_t n = req->result;
	uv_fs_req_cleanup(req);
	app->in_open = false;
	if (n > 0 && !app->stopping) {
		feed(app, app->in_buf, (size_t)n);
		if (!app->stopping) {
			uv_buf_t b = uv_buf_init(app->in_buf, sizeof(app->in_buf));
			if (uv_fs_read(&app->loop, &app->in_req, 0, &b, 1, -1, on_file_read) == 0) {
				app->in_open = true;
				return;
			}
		}
		return;
	}
	if (n < 0)
		logf_app(app, SL_RLOG_WARN, "stdin: %s", uv_strerror((int)n));
	on_stdin_eof(app);
}

static int stdin_open(struct app *app)
{
	uv_handle_type t = uv_guess_handle(0);
	int rv;
	if (t == UV_TTY) {
		rv = uv_tty_init(&app->loop, &app->in.tty, 0, 1);
		app->in_stream = true;
	} else if (t == UV_NAMED_PIPE || t == UV_TCP || t == UV_UNKNOWN_HANDLE) {
		rv = uv_pipe_init(&app->loop, &app->in.pipe, 0);
		if (rv == 0) {
			app->in_stream = true;
			rv = uv_pipe_open(&app->in.pipe, 0);
			if (rv != 0) {
				app->in.h.data = app;
				uv_close(&app->in.h, NULL);
				app->in_stream = false;
			}
		}
	} else {
		/* A file: read it on the thread pool. */
		app->in_req.data = app;
		uv_buf_t b = uv_buf_init(app->in_buf, sizeof(app->in_buf));
		rv = uv_fs_read(&app->loop, &app->in_req, 0, &b, 1, -1, on_file_read);
		app->in_open = rv == 0;
		return rv;
	}
	if (rv != 0)
		return rv;
	app->in.h.data = app;
	app->in_open = true;
	return uv_read_start(&app->in.s, on_alloc, on_read);
}

/* ---- Shutdown ------------------------------------------------------- */

static void on_net_closed(void *arg)
{
	struct app *app = arg;
	app->net = NULL;
	if (app->in_stream && app->in_open) {
		uv_close(&app->in.h, NULL);
		app->in_open = false;
	}
	uv_close((uv_handle_t *)&app->sigterm, NULL);
	uv_close((uv_handle_t *)&app->sigint, NULL);
	uv_close((uv_handle_t *)&app->pump, NULL);
}

static void on_reg_closed(void *arg)
{
	struct app *app = arg;
	app->reg = NULL;
	/* Every group is closed: libraft has fired every apply callback. */
	while (app->jobs != NULL) {
		struct job *job = app->jobs;
		if (!job->finished) {
			if (job->inflight_total != 0)
				logf_app(app, SL_RLOG_WARN, "%u proposals still in flight at close",
					 job->inflight_total);
			if (job->is_load) {
				job_answer(job);
			} else {
				snprintf(job->err, sizeof(job->err), "shutdown");
				job->count = UINT64_MAX;
				job_answer(job);
			}
		}
		job_drop(app, job);
	}
	sl_pnet_close(app->net, on_net_closed, app);
}

static void shutdown_begin(struct app *app)
{
	if (app->stopping)
		return;
	app->stopping = true;
	uv_idle_stop(&app->pump);
	if (app->in_stream && app->in_open)
		uv_read_stop(&app->in.s);
	sl_rreg_close(app->reg, on_reg_closed, app);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct app *app = s->data;
	if (app->stopping)
		return;
	if (signum == SIGTERM) {
		logf_app(app, SL_RLOG_INFO, "SIGTERM: handing off every group this node leads");
		int rv = sl_rreg_handoff(app->reg, on_handoff_term, app);
		if (rv == SL_OK)
			return;
		logf_app(app, SL_RLOG_WARN, "handoff: %s; stopping without it", sl_err_name(rv));
		answer("handoff err %s", sl_err_name(rv));
	} else {
		logf_app(app, SL_RLOG_INFO, "signal %d: stopping", signum);
	}
	shutdown_begin(app);
}

/* ---- main ----------------------------------------------------------- */

static int start(struct app *app)
{
	struct opts *o = &app->o;
	char errmsg[SL_ERRMSG_SIZE] = "";
	if (mkdirs(o->dir) != 0) {
		fprintf(stderr, "rnode: --dir %s: %s\n", o->dir, strerror(errno));
		return 1;
	}
	if (load_uuid(o->dir, app->uuid) != 0)
		return 1;

	struct sl_pnet_config nc = {
		.node_id = o->id,
		.listen_host = "127.0.0.1",
		.listen_port = o->port,
		.max_frame = (size_t)o->max_frame,
		.max_queue = (size_t)o->max_queue,
		.hello_timeout_ms = o->hello_timeout_ms,
		.test_cut_bulk_after = o->bulk_cut_after,
		.admit_guests = o->admit_guests,
		.log = log_line,
		.log_arg = app,
	};
	memcpy(nc.cluster_id, o->cluster, 16);
	memcpy(nc.node_uuid, app->uuid, 16);
	/* The registry routes messages and bulk requests to its groups. */
	int rv = sl_pnet_init(&app->net, &app->loop, &nc, NULL, NULL, NULL);
	if (rv != SL_OK) {
		fprintf(stderr, "rnode: peer transport: %s\n", sl_strerror(rv));
		return 1;
	}
	for (unsigned i = 0; i < o->npeers; i++) {
		rv = sl_pnet_set_peer(app->net, o->peers[i].id, o->peers[i].host, o->peers[i].port,
				      NULL);
		if (rv != SL_OK) {
			fprintf(stderr, "rnode: --peer %" PRIu64 ": %s\n", o->peers[i].id,
				sl_strerror(rv));
			return 1;
		}
	}
	rv = sl_pnet_listen(app->net, errmsg);
	if (rv != SL_OK) {
		fprintf(stderr, "rnode: %s\n", errmsg);
		return 1;
	}

	struct sl_rreg_config rc = {
		.dir = o->dir,
		.node_id = o->id,
		.heartbeat_ms = o->heartbeat_ms,
		.election_ms = o->election_ms,
		.snapshot_threshold = o->snapshot_threshold,
		.snapshot_trailing = o->snapshot_trailing,
		.max_append_bytes = o->max_append,
		.logf = log_line,
		.log_arg = app,
		.meta_per_group = o->meta_per_group,
	};
	sl_log_config_init(&rc.log);
	rv = sl_rreg_init(&app->reg, &app->loop, &rc, app->net);
	if (rv != SL_OK) {
		fprintf(stderr, "rnode: group registry: %s\n", sl_strerror(rv));
		return 1;
	}
	/* Voters in ascending order: every node bootstraps each group with
	 * the same configuration entry, byte for byte. */
	uint64_t voters[SL_RREG_MAX_REPLICAS];
	unsigned nv = 0;
	if (o->nvoters > 0) {
		memcpy(voters, o->voters, o->nvoters * sizeof(*voters));
		nv = o->nvoters;
	} else {
		voters[nv++] = o->id;
		for (unsigned i = 0; i < o->npeers; i++)
			voters[nv++] = o->peers[i].id;
	}
	sort_ids(voters, nv);
	for (uint32_t g = 1; g <= o->groups; g++) {
		rv = sl_rreg_start(app->reg, g, voters, nv, errmsg);
		if (rv != SL_OK) {
			fprintf(stderr, "rnode: group %u: %s: %s\n", g, sl_err_name(rv), errmsg);
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct app app_storage;
	struct app *app = &app_storage;
	int rv = parse_flags(argc, argv, &app->o);
	if (rv != 0)
		return rv;
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (uv_loop_init(&app->loop) != 0) {
		fprintf(stderr, "rnode: uv_loop_init failed\n");
		return 1;
	}
	uv_idle_init(&app->loop, &app->pump);
	app->pump.data = app;
	uv_signal_init(&app->loop, &app->sigterm);
	uv_signal_init(&app->loop, &app->sigint);
	app->sigterm.data = app;
	app->sigint.data = app;

	int failed = start(app);
	if (failed == 0) {
		uv_signal_start(&app->sigterm, on_signal, SIGTERM);
		uv_signal_start(&app->sigint, on_signal, SIGINT);
		rv = stdin_open(app);
		if (rv != 0) {
			fprintf(stderr, "rnode: stdin: %s\n", uv_strerror(rv));
			failed = 1;
		}
	}
	if (failed == 0) {
		logf_app(app, SL_RLOG_INFO, "ready port=%d groups=%u peers=%u",
			 sl_pnet_port(app->net), app->o.groups, app->o.npeers);
		answer("ready port=%d", sl_pnet_port(app->net));
	} else if (app->reg != NULL) {
		/* Close what was started, then report the failure. */
		shutdown_begin(app);
	} else {
		if (app->net != NULL)
			sl_pnet_close(app->net, on_net_closed, app);
		else
			on_net_closed(app);
	}
	uv_run(&app->loop, UV_RUN_DEFAULT);
	rv = uv_loop_close(&app->loop);
	if (rv != 0)
		fprintf(stderr, "rnode: loop not empty at exit: %s\n", uv_strerror(rv));
	if (failed != 0)
		return 1;
	answer("bye");
	return rv == 0 ? app->exit_code : 1;
}
