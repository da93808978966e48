/* sluice produce, consume and perf (tools/README.md): records through
 * libsluice's producer and consumer. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "cli.h"

#define MAX_HEADERS 64

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The value of "--flag V" or "--flag=V" at argv[*i] (advancing *i), or
 * NULL when argv[*i] is not that flag; *missing when it has no value. */
/* Progress on a terminal: "\rWHAT N records (R/s)" on stderr at most
 * every second, and nothing when stderr is not a terminal (piped or
 * redirected). progress_end clears the line. */
struct progress {
	bool on;
	uint64_t start_us, last_us;
};

static void progress_start(struct progress *pr)
{
	pr->on = isatty(STDERR_FILENO) == 1;
	pr->start_us = pr->last_us = mono_us();
}

static void progress(struct progress *pr, const char *what, uint64_t n)
{
	if (!pr->on)
		return;
	uint64_t now = mono_us();
	if (now - pr->last_us < 1000000)
		return;
	pr->last_us = now;
	double secs = (double)(now - pr->start_us) / 1e6;
	fprintf(stderr, "\r%s %llu records (%.0f/s)\033[K", what, (unsigned long long)n,
		secs > 0 ? (double)n / secs : 0.0);
}

static void progress_end(struct progress *pr)
{
	if (pr->on && pr->last_us != pr->start_us)
		fputs("\r\033[K", stderr);
}

static const char *flag_value(int argc, char **argv, int *i, const char *flag, bool *missing)
{
	size_t n = strlen(flag);
	if (strncmp(argv[*i], flag, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

static bool acks_ok(const char *v)
{
	return strcmp(v, "all") == 0 || strcmp(v, "1") == 0 || strcmp(v, "0") == 0 ||
	       strcmp(v, "-1") == 0;
}

/* Delivery results, shared by the callbacks (I/O thread) and main. */
struct tally {
	atomic_uint_least64_t acked, failed;
	pthread_mutex_t mu;
	sluice_err_t first_err;
	char first_msg[256];
};

static void tally_fail(struct tally *t, sluice_err_t err, const sluice_report_t *r)
{
	atomic_fetch_add(&t->failed, 1);
	pthread_mutex_lock(&t->mu);
	if (t->first_err == SLUICE_OK) {
		t->first_err = err;
		snprintf(t->first_msg, sizeof(t->first_msg), "%s",
			 r != NULL && sluice_report_errmsg(r)[0] ? sluice_report_errmsg(r)
								  : sluice_strerror(err));
	}
	pthread_mutex_unlock(&t->mu);
}

static void on_delivery(void *opaque, sluice_err_t err, const sluice_report_t *r)
{
	struct tally *t = opaque;
	if (err == SLUICE_OK)
		atomic_fetch_add(&t->acked, 1);
	else
		tally_fail(t, err, r);
}

/* ---- produce ----------------------------------------------------------- */

int cli_produce(const struct cli_opts *o, int argc, char **argv)
{
	const char *topic = NULL, *sep = NULL, *acks = "all";
	long partition = SLUICE_PARTITION_ANY;
	const char *hdr[MAX_HEADERS];
	size_t nh = 0;
	for (int i = 0; i < argc; i++) {
		bool missing = false;
		const char *v;
		if ((v = flag_value(argc, argv, &i, "--key-separator", &missing)) != NULL) {
			if (v[0] == '\0')
				return cli_usage_error("produce: --key-separator is empty");
			sep = v;
		} else if ((v = flag_value(argc, argv, &i, "--acks", &missing)) != NULL) {
			if (!acks_ok(v))
				return cli_usage_error("produce: --acks '%s' is not all, 1 or 0", v);
			acks = v;
		} else if ((v = flag_value(argc, argv, &i, "--partition", &missing)) != NULL) {
			if (!cli_parse_int(v, 0, INT32_MAX, &partition))
				return cli_usage_error("produce: --partition '%s' is not a partition",
						       v);
		} else if ((v = flag_value(argc, argv, &i, "--header", &missing)) != NULL) {
			if (strchr(v, '=') == NULL || v[0] == '=')
				return cli_usage_error("produce: --header '%s' is not k=v", v);
			if (nh == MAX_HEADERS)
				return cli_usage_error("produce: at most %d headers", MAX_HEADERS);
			hdr[nh++] = v;
		} else if (missing) {
			return cli_usage_error("produce: %s needs a value", argv[i]);
		} else if (argv[i][0] == '-' || topic != NULL) {
			return cli_usage_error("produce: unexpected '%s'", argv[i]);
		} else {
			topic = argv[i];
		}
	}
	if (topic == NULL)
		return cli_usage_error("produce: a topic name is required");
	/* --timeout-ms bounds the wait for a topic's metadata (a topic just
	 * created may take a moment to be known) and for buffer space. */
	const char *kv[] = { "acks", acks, "delivery.timeout.ms", "120000", "buffer.block.ms",
			     o->timeout_ms != NULL ? o->timeout_ms : "30000", NULL };
	int rc;
	sluice_client_t *cl = cli_client(o, kv, &rc);
	if (cl == NULL)
		return rc;
	sluice_producer_t *p = sluice_producer_new(cl);
	sluice_rec_t *rec = sluice_rec_new();
	static struct tally t = { .mu = PTHREAD_MUTEX_INITIALIZER };
	sluice_err_t err = p == NULL || rec == NULL ? SLUICE_ERR_NOMEM : SLUICE_OK;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	uint64_t lines = 0;
	struct progress pr;
	progress_start(&pr);
	while (err == SLUICE_OK && (n = getline(&line, &cap, stdin)) >= 0) {
		progress(&pr, "producing: acknowledged", atomic_load(&t.acked));
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		sluice_rec_clear(rec);
		const char *value = line;
		size_t vlen = (size_t)n;
		char *at = sep != NULL ? memmem(line, (size_t)n, sep, strlen(sep)) : NULL;
		if (at != NULL) {
			sluice_rec_set_key(rec, line, (size_t)(at - line));
			value = at + strlen(sep);
			vlen = (size_t)n - (size_t)(value - line);
		}
		sluice_rec_set_value(rec, vlen > 0 ? value : "", vlen);
		for (size_t h = 0; h < nh; h++) {
			const char *eq = strchr(hdr[h], '=');
			sluice_rec_add_header(rec, hdr[h], (size_t)(eq - hdr[h]), eq + 1,
					      strlen(eq + 1));
		}
		err = sluice_produce_ex(p, topic, (int32_t)partition, rec, on_delivery, &t);
		lines++;
	}
	free(line);
	sluice_rec_destroy(rec);
	sluice_producer_close(p); /* waits for every record's fate */
	sluice_client_destroy(cl);
	progress_end(&pr);
	uint64_t acked = atomic_load(&t.acked);
	fprintf(stderr, "produced %llu records\n", (unsigned long long)acked);
	if (err != SLUICE_OK) {
		char msg[300];
		if (err == SLUICE_ERR_UNKNOWN_TOPIC && partition >= 0)
			snprintf(msg, sizeof(msg),
				 "record %llu of standard input: topic '%s' has no partition %ld",
				 (unsigned long long)lines, topic, partition);
		else
			snprintf(msg, sizeof(msg), "record %llu of standard input: %s (topic '%s')",
				 (unsigned long long)lines, sluice_strerror(err), topic);
		return cli_failed(err, msg);
	}
	if (t.first_err != SLUICE_OK)
		return cli_failed(t.first_err, t.first_msg);
	return acked == lines ? 0 : 1;
}

/* ---- consume ----------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* An asynchronous commit's end: a failed one is taken up by the next. */
static void on_commit_done(void *opaque, sluice_err_t err, const sluice_report_t *r)
{
	(void)opaque;
	(void)err;
	(void)r;
}

/* Writes bytes with tabs, newlines and backslashes escaped (\t, \n, \\),
 * so that one record stays one line of tab-separated fields. */
static void put_field(const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\t')
			fputs("\\t", stdout);
		else if (s[i] == '\n')
			fputs("\\n", stdout);
		else if (s[i] == '\\')
			fputs("\\\\", stdout);
		else
			putchar(s[i]);
	}
}

/* A group member commits only what it wrote out: stdout is flushed
 * first, every COMMIT_MS, when a partition is revoked, and at the end. */
#define COMMIT_MS 1000

static void commit_printed(sluice_consumer_t *c, bool sync)
{
	fflush(stdout);
	(void)sluice_commit(c, NULL, sync ? NULL : on_commit_done, NULL);
}

static void on_assign(void *opaque, const char *topic, int32_t partition, int assigned)
{
	(void)topic;
	(void)partition;
	if (assigned == SLUICE_REVOKED)
		commit_printed(*(sluice_consumer_t **)opaque, true);
}

int cli_consume(const struct cli_opts *o, int argc, char **argv)
{
	const char *topic = NULL, *group = NULL;
	long partition = SLUICE_PARTITION_ANY, offset = -1, max = -1, timeout = -1;
	bool beginning = false, pkey = false, poff = false, phdr = false;
	for (int i = 0; i < argc; i++) {
		bool missing = false;
		const char *v;
		if ((v = flag_value(argc, argv, &i, "--group", &missing)) != NULL) {
			group = v;
		} else if ((v = flag_value(argc, argv, &i, "--partition", &missing)) != NULL) {
			if (!cli_parse_int(v, 0, INT32_MAX, &partition))
				return cli_usage_error("consume: --partition '%s' is not a partition",
						       v);
		} else if ((v = flag_value(argc, argv, &i, "--offset", &missing)) != NULL) {
			if (!cli_parse_int(v, 0, INT64_MAX, &offset))
				return cli_usage_error("consume: --offset '%s' is not an offset (0 or "
						       "more)",
						       v);
		} else if ((v = flag_value(argc, argv, &i, "--max-messages", &missing)) != NULL) {
			if (!cli_parse_int(v, 1, INT64_MAX, &max))
				return cli_usage_error("consume: --max-messages '%s' is not a count",
						       v);
		} else if ((v = flag_value(argc, argv, &i, "--timeout-ms", &missing)) != NULL) {
			if (!cli_parse_int(v, 0, INT32_MAX, &timeout))
				return cli_usage_error("consume: --timeout-ms '%s' is not a duration",
						       v);
		} else if (missing) {
			return cli_usage_error("consume: %s needs a value", argv[i]);
		} else if (strcmp(argv[i], "--from-beginning") == 0) {
			beginning = true;
		} else if (strcmp(argv[i], "--print-key") == 0) {
			pkey = true;
		} else if (strcmp(argv[i], "--print-offset") == 0) {
			poff = true;
		} else if (strcmp(argv[i], "--print-headers") == 0) {
			phdr = true;
		} else if (argv[i][0] == '-' || topic != NULL) {
			return cli_usage_error("consume: unexpected '%s'", argv[i]);
		} else {
			topic = argv[i];
		}
	}
	if (topic == NULL)
		return cli_usage_error("consume: a topic name is required");
	if (offset >= 0 && partition < 0)
		return cli_usage_error("consume: --offset needs --partition");
	if (group != NULL && partition >= 0)
		return cli_usage_error("consume: --partition and --group exclude each other (the "
				       "group assigns partitions)");
	const char *kv[] = { "auto.offset.reset", beginning ? "earliest" : "latest",
			     "enable.auto.commit", "false", NULL };
	int rc;
	sluice_client_t *cl = cli_client(o, kv, &rc);
	if (cl == NULL)
		return rc;
	struct sigaction sa = { .sa_handler = on_sigint };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	static sluice_consumer_t *c;
	c = sluice_consumer_new(cl, group, group != NULL ? on_assign : NULL, &c);
	sluice_err_t err = c == NULL		 ? SLUICE_ERR_NOMEM
			   : group != NULL ? sluice_subscribe(c, &topic, 1)
					   : sluice_assign(c, topic, (int32_t)partition);
	if (err == SLUICE_OK && offset >= 0)
		err = sluice_seek(c, topic, (int32_t)partition, SLUICE_OFFSET, offset);
	uint64_t count = 0;
	uint64_t last = mono_us(), committed = last;
	struct progress pr;
	progress_start(&pr);
	while (err == SLUICE_OK && !interrupted && (max < 0 || (long)count < max)) {
		int slice = 100;
		progress(&pr, "consumed", count);
		if (group != NULL && mono_us() - committed >= COMMIT_MS * 1000u) {
			commit_printed(c, false);
			committed = mono_us();
		}
		if (timeout >= 0) {
			uint64_t waited = (mono_us() - last) / 1000u;
			if (waited >= (uint64_t)timeout)
				break;
			if ((uint64_t)timeout - waited < (uint64_t)slice)
				slice = (int)((uint64_t)timeout - waited);
		}
		sluice_msg_t *m = NULL;
		sluice_err_t e = sluice_poll(c, slice, &m);
		if (e == SLUICE_ERR_TIMED_OUT) {
			fflush(stdout); /* idle: what was read shows now */
			continue;
		}
		if (e != SLUICE_OK) {
			err = e;
			break;
		}
		last = mono_us();
		size_t len;
		if (poff)
			printf("%d\t%lld\t", sluice_msg_partition(m), (long long)sluice_msg_offset(m));
		if (phdr) {
			size_t nh = sluice_msg_header_count(m);
			for (size_t h = 0; h < nh; h++) {
				const void *k, *v;
				size_t kl, vl;
				sluice_msg_header(m, h, &k, &kl, &v, &vl);
				if (h > 0)
					putchar(',');
				put_field(k, kl);
				putchar('=');
				put_field(v != NULL ? v : "", vl);
			}
			putchar('\t');
		}
		if (pkey) {
			const void *k = sluice_msg_key(m, &len);
			put_field(k != NULL ? k : "", len);
			putchar('\t');
		}
		const void *v = sluice_msg_value(m, &len);
		put_field(v != NULL ? v : "", len);
		putchar('\n');
		sluice_msg_destroy(m);
		count++;
	}
	fflush(stdout);
	/* A group member commits what it printed (every record polled was)
	 * before it leaves, whatever ended the run. */
	sluice_err_t cerr = group != NULL && c != NULL ? sluice_commit(c, NULL, NULL, NULL)
						       : SLUICE_OK;
	sluice_consumer_close(c);
	sluice_client_destroy(cl);
	progress_end(&pr);
	fprintf(stderr, "consumed %llu records\n", (unsigned long long)count);
	if (err == SLUICE_OK && cerr != SLUICE_OK)
		return cli_failed(cerr, "the final commit failed");
	return err == SLUICE_OK ? 0 : cli_failed(err, sluice_strerror(err));
}

/* ---- perf ------------------------------------------------------------- */

/* Every record's slot holds its send time (µs, monotonic) until its
 * callback replaces it with its latency (µs, with the top bit set); the
 * slot is the record's opaque. */
#define DONE_BIT (1ull << 63)

static struct tally perf_tally = { .mu = PTHREAD_MUTEX_INITIALIZER };
static atomic_uint_least64_t perf_lat_sum_us, perf_bytes;

static void on_perf_delivery(void *opaque, sluice_err_t err, const sluice_report_t *r)
{
	uint64_t *slot = opaque;
	uint64_t lat = mono_us() - *slot;
	*slot = lat | DONE_BIT;
	if (err == SLUICE_OK) {
		atomic_fetch_add(&perf_tally.acked, 1);
		atomic_fetch_add(&perf_lat_sum_us, lat);
	} else {
		tally_fail(&perf_tally, err, r);
	}
}

struct perf_producer {
	pthread_t thread;
	sluice_client_t *cl;
	const char *topic;
	long records, size;
	double rate; /* records/s for this producer; 0: as fast as it goes */
	const uint8_t *payload;
	size_t payload_len;
	uint64_t *slots;
	sluice_err_t err;
};

static void *perf_produce_thread(void *arg)
{
	struct perf_producer *pp = arg;
	sluice_producer_t *p = sluice_producer_new(pp->cl);
	if (p == NULL) {
		pp->err = SLUICE_ERR_NOMEM;
		return NULL;
	}
	uint64_t start = mono_us();
	uint32_t seed = (uint32_t)start;
	for (long i = 0; i < pp->records; i++) {
		if (pp->rate > 0) {
			uint64_t due = start + (uint64_t)((double)i * 1e6 / pp->rate);
			uint64_t now = mono_us();
			if (due > now + 1000) {
				struct timespec ts = { .tv_sec = (time_t)((due - now) / 1000000u),
						       .tv_nsec = (long)((due - now) % 1000000u) * 1000 };
				nanosleep(&ts, NULL);
			}
		}
		seed = seed * 1103515245u + 12345u;
		size_t off = (seed >> 8) % (pp->payload_len - (size_t)pp->size + 1);
		pp->slots[i] = mono_us();
		sluice_err_t err = sluice_produce(p, pp->topic, SLUICE_PARTITION_ANY, NULL, 0,
						  pp->payload + off, (size_t)pp->size,
						  on_perf_delivery, &pp->slots[i]);
		if (err != SLUICE_OK) {
			pp->err = err;
			pp->records = i;
			break;
		}
		atomic_fetch_add(&perf_bytes, (uint64_t)pp->size);
	}
	sluice_producer_close(p);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int perf_produce(const struct cli_opts *o, int argc, char **argv)
{
	const char *topic = NULL, *acks = "all", *compression = "none";
	long records = -1, size = -1, producers = 1;
	double rate = 0;
	for (int i = 0; i < argc; i++) {
		bool missing = false;
		const char *v;
		if ((v = flag_value(argc, argv, &i, "--topic", &missing)) != NULL) {
			topic = v;
		} else if ((v = flag_value(argc, argv, &i, "--num-records", &missing)) != NULL) {
			if (!cli_parse_int(v, 1, 1000000000L, &records))
				return cli_usage_error("perf produce: --num-records '%s' is not a "
						       "count (1..1e9)",
						       v);
		} else if ((v = flag_value(argc, argv, &i, "--record-size", &missing)) != NULL) {
			if (!cli_parse_int(v, 1, 8 << 20, &size))
				return cli_usage_error("perf produce: --record-size '%s' is not a size "
						       "(1..8388608)",
						       v);
		} else if ((v = flag_value(argc, argv, &i, "--acks", &missing)) != NULL) {
			if (!acks_ok(v))
				return cli_usage_error("perf produce: --acks '%s' is not all, 1 or 0",
						       v);
			acks = v;
		} else if ((v = flag_value(argc, argv, &i, "--throughput", &missing)) != NULL) {
			long r;
			if (!cli_parse_int(v, -1, INT32_MAX, &r) || r == 0)
				return cli_usage_error("perf produce: --throughput '%s' is not a rate "
						       "(records/s; -1: no limit)",
						       v);
			rate = r > 0 ? (double)r : 0;
		} else if ((v = flag_value(argc, argv, &i, "--producers", &missing)) != NULL) {
			if (!cli_parse_int(v, 1, 64, &producers))
				return cli_usage_error("perf produce: --producers '%s' is not 1..64",
						       v);
		} else if ((v = flag_value(argc, argv, &i, "--compression", &missing)) != NULL) {
			if (strcmp(v, "none") != 0 && strcmp(v, "zstd") != 0)
				return cli_usage_error("perf produce: --compression '%s' is not none "
						       "or zstd",
						       v);
			compression = v;
		} else if (missing) {
			return cli_usage_error("perf produce: %s needs a value", argv[i]);
		} else {
			return cli_usage_error("perf produce: unexpected '%s'", argv[i]);
		}
	}
	if (topic == NULL || records < 0 || size < 0)
		return cli_usage_error("perf produce: --topic, --num-records and --record-size are "
				       "required");
	const char *kv[] = { "acks", acks, "compression", compression, NULL };
	/* Random bytes to take records from: incompressible. */
	size_t plen = (size_t)size + 65536;
	uint8_t *payload = malloc(plen);
	uint64_t *slots = calloc((size_t)records, sizeof(*slots));
	struct perf_producer *pp = calloc((size_t)producers, sizeof(*pp));
	if (payload == NULL || slots == NULL || pp == NULL) {
		free(payload);
		free(slots);
		free(pp);
		return cli_failed(SLUICE_ERR_NOMEM, "out of memory");
	}
	uint64_t x = mono_us() | 1;
	for (size_t i = 0; i < plen; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		payload[i] = (uint8_t)x;
	}
	int rc = 0;
	long k = 0, assigned = 0;
	for (; k < producers; k++) {
		pp[k].cl = cli_client(o, kv, &rc);
		if (pp[k].cl == NULL)
			break;
		pp[k].topic = topic;
		pp[k].records = records / producers + (k < records % producers ? 1 : 0);
		pp[k].size = size;
		pp[k].rate = rate / (double)producers;
		pp[k].payload = payload;
		pp[k].payload_len = plen;
		pp[k].slots = slots + assigned;
		assigned += pp[k].records;
	}
	uint64_t start = mono_us();
	long started = 0;
	for (; rc == 0 && started < k; started++)
		if (pthread_create(&pp[started].thread, NULL, perf_produce_thread, &pp[started]) != 0)
			break;
	/* Progress every 5 s on a terminal, until every thread closed its
	 * producer; nothing when stderr is piped. */
	bool tty = isatty(STDERR_FILENO) == 1;
	uint64_t last_at = start, last_acked = 0;
	for (long joined = 0; joined < started;) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (pthread_timedjoin_np(pp[joined].thread, NULL, &ts) == 0) {
			joined++;
			continue;
		}
		uint64_t now = mono_us();
		if (!tty || now - last_at < 5000000u)
			continue;
		uint64_t acked = atomic_load(&perf_tally.acked);
		double secs = (double)(now - last_at) / 1e6;
		double rps = (double)(acked - last_acked) / secs;
		fprintf(stderr, "%llu records sent, %.1f records/sec (%.2f MB/sec)\n",
			(unsigned long long)(acked - last_acked), rps,
			rps * (double)size / (1024.0 * 1024.0));
		last_at = now;
		last_acked = acked;
	}
	double secs = (double)(mono_us() - start) / 1e6;
	sluice_err_t err = SLUICE_OK;
	for (long i = 0; i < k; i++) {
		if (pp[i].err != SLUICE_OK && err == SLUICE_OK)
			err = pp[i].err;
		sluice_client_destroy(pp[i].cl);
	}
	uint64_t acked = atomic_load(&perf_tally.acked);
	/* Latencies of the acknowledged records, sorted, for percentiles. */
	size_t n = 0;
	for (long i = 0; i < assigned; i++)
		if (slots[i] & DONE_BIT)
			slots[n++] = slots[i] & ~DONE_BIT;
	qsort(slots, n, sizeof(*slots), cmp_u64);
#define PCT(q) (n > 0 ? (double)slots[(size_t)((double)(n - 1) * (q))] / 1000.0 : 0.0)
	double rps = secs > 0 ? (double)acked / secs : 0;
	printf("%llu records sent, %.1f records/sec (%.2f MB/sec), %.2f ms avg latency, %.2f ms "
	       "50th, %.2f ms 99th, %.2f ms 99.9th.\n",
	       (unsigned long long)acked, rps, rps * (double)size / (1024.0 * 1024.0),
	       acked > 0 ? (double)atomic_load(&perf_lat_sum_us) / (double)acked / 1000.0 : 0.0,
	       PCT(0.5), PCT(0.99), PCT(0.999));
#undef PCT
	fflush(stdout);
	free(payload);
	free(slots);
	free(pp);
	if (rc != 0)
		return rc;
	if (err != SLUICE_OK)
		return cli_failed(err, sluice_strerror(err));
	if (perf_tally.first_err != SLUICE_OK)
		return cli_failed(perf_tally.first_err, perf_tally.first_msg);
	return 0;
}

static int perf_consume(const struct cli_opts *o, int argc, char **argv)
{
	const char *topic = NULL, *group = NULL;
	long records = -1;
	for (int i = 0; i < argc; i++) {
		bool missing = false;
		const char *v;
		if ((v = flag_value(argc, argv, &i, "--topic", &missing)) != NULL) {
			topic = v;
		} else if ((v = flag_value(argc, argv, &i, "--num-records", &missing)) != NULL) {
			if (!cli_parse_int(v, 1, INT64_MAX, &records))
				return cli_usage_error("perf consume: --num-records '%s' is not a "
						       "count",
						       v);
		} else if ((v = flag_value(argc, argv, &i, "--group", &missing)) != NULL) {
			group = v;
		} else if (missing) {
			return cli_usage_error("perf consume: %s needs a value", argv[i]);
		} else {
			return cli_usage_error("perf consume: unexpected '%s'", argv[i]);
		}
	}
	if (topic == NULL || records < 0)
		return cli_usage_error("perf consume: --topic and --num-records are required");
	const char *kv[] = { "auto.offset.reset", "earliest", NULL };
	int rc;
	sluice_client_t *cl = cli_client(o, kv, &rc);
	if (cl == NULL)
		return rc;
	sluice_consumer_t *c = sluice_consumer_new(cl, group, NULL, NULL);
	sluice_err_t err = c == NULL		 ? SLUICE_ERR_NOMEM
			   : group != NULL ? sluice_subscribe(c, &topic, 1)
					   : sluice_assign(c, topic, SLUICE_PARTITION_ANY);
	uint64_t start = mono_us(), count = 0, bytes = 0;
	/* A stall this long ends the run: fewer records than asked exist. */
	const int stall_ms = 10000;
	while (err == SLUICE_OK && count < (uint64_t)records) {
		sluice_msg_t *m = NULL;
		err = sluice_poll(c, stall_ms, &m);
		if (err != SLUICE_OK)
			break;
		size_t len;
		sluice_msg_value(m, &len);
		bytes += len;
		count++;
		sluice_msg_destroy(m);
	}
	double secs = (double)(mono_us() - start) / 1e6;
	sluice_consumer_close(c);
	sluice_client_destroy(cl);
	double rps = secs > 0 ? (double)count / secs : 0;
	printf("%llu records, %.1f records/sec (%.2f MB/sec)\n", (unsigned long long)count, rps,
	       secs > 0 ? (double)bytes / secs / (1024.0 * 1024.0) : 0.0);
	fflush(stdout);
	if (err == SLUICE_ERR_TIMED_OUT) {
		char msg[200];
		snprintf(msg, sizeof(msg), "%llu of %ld records within %d ms of the last one",
			 (unsigned long long)count, records, stall_ms);
		return cli_failed(err, msg);
	}
	return err == SLUICE_OK ? 0 : cli_failed(err, sluice_strerror(err));
}

int cli_perf(const struct cli_opts *o, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "produce") == 0)
		return perf_produce(o, argc - 1, argv + 1);
	if (argc >= 1 && strcmp(argv[0], "consume") == 0)
		return perf_consume(o, argc - 1, argv + 1);
	return cli_usage_error("perf: produce or consume is the subcommand");
}
