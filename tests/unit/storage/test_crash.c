/* Crash safety of the partition log (storage/storage.h) on the simulated
 * disk (tests/lib/simdisk.h): a torn last write at every byte, a long
 * seeded random walk checked against a model, and disk failures at every
 * operation of a script; then focused cases, each the minimised form of a
 * failure those found.
 *
 * What "survives" means everywhere here: after a crash the log holds a
 * prefix of the batches appended, byte for byte, and that prefix contains
 * every batch below the durable offset the log reported before the crash. */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "simdisk.h"
#include "storage.h"
#include "testlib.h"

#define LOG_DIR "/sim/p"

TestSuite(crash, .timeout = 120);

/* Where a failure happened: the seed and the step, printed with every
 * assertion so that a failing run can be replayed. */
static char where[160] = "-";

#define check(cond, fmt, ...) cr_assert(cond, "[%s] " fmt, where, ##__VA_ARGS__)

static void set_where(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_where(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(where, sizeof(where), fmt, ap);
	va_end(ap);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n > 0 ? n : 1);
	cr_assert_not_null(p);
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n > 0 ? n : 1);
	cr_assert_not_null(p);
	return p;
}

static uint64_t rnd(uint64_t *rng, uint64_t n)
{
	return n == 0 ? 0 : tl_rand(rng) % n;
}

static bool chance(uint64_t *rng, unsigned percent)
{
	return rnd(rng, 100) < percent;
}

/* ---- Batches ---------------------------------------------------------- */

/* A batch as appended, with what the model needs to know about it. */
struct tbatch {
	uint8_t *bytes;
	size_t len;
	int64_t base;
	int64_t last;
	int32_t nrec;
	int64_t *ts; /* record i (offset base + i) has timestamp ts[i] */
	int64_t max_ts;
};

struct gen_opts {
	int32_t min_rec, max_rec;
	int32_t max_key, max_value;
	bool allow_zstd;
	/* The last record gets a header whose value ends in a non-zero byte,
	 * so the batch's last byte is not 0 (a torn write then never looks
	 * whole over a zero-filled pre-write window). */
	bool nonzero_tail;
};

static void make_batch(uint64_t *rng, const struct gen_opts *go, int64_t base, int64_t ts0,
		       struct tbatch *tb)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	uint8_t key[64], value[2048];
	sl_batch_opts_init(&o);
	if (go->allow_zstd && chance(rng, 25))
		o.codec = SL_CODEC_ZSTD;
	if (chance(rng, 20)) {
		o.producer_id = (int64_t)rnd(rng, 1000);
		o.producer_epoch = (int16_t)rnd(rng, 10);
		o.base_sequence = (int32_t)rnd(rng, 100000);
	}
	sl_batch_builder_init(&b, &o);
	int32_t n = go->min_rec + (int32_t)rnd(rng, (uint64_t)(go->max_rec - go->min_rec + 1));
	tb->nrec = n;
	tb->ts = xmalloc((size_t)n * sizeof(*tb->ts));
	tb->max_ts = INT64_MIN;
	for (int32_t i = 0; i < n; i++) {
		int64_t ts = ts0 + (int64_t)rnd(rng, 2001) - 1000;
		int32_t klen = chance(rng, 20) ? -1 : (int32_t)rnd(rng, (uint64_t)go->max_key + 1);
		int32_t vlen = chance(rng, 5) ? -1 : (int32_t)rnd(rng, (uint64_t)go->max_value + 1);
		if (klen > 0)
			tl_fill_random(rng, key, (size_t)klen);
		if (vlen > 0)
			tl_fill_random(rng, value, (size_t)vlen);
		struct sl_header hdr[2] = {
			{ .key_len = 1, .key = (const uint8_t *)"h", .value_len = 2,
			  .value = (const uint8_t *)"v1" },
			{ .key_len = 4, .key = (const uint8_t *)"tail", .value_len = 2,
			  .value = (const uint8_t *)"x!" },
		};
		size_t nh = chance(rng, 15) ? 1 : 0;
		const struct sl_header *hp = hdr;
		if (go->nonzero_tail && i == n - 1) {
			hp = &hdr[1];
			nh = 1;
		}
		int rv = sl_batch_builder_add(&b, ts, klen > 0 ? key : NULL, klen,
					      vlen > 0 ? value : NULL, vlen, nh ? hp : NULL, nh);
		cr_assert_eq(rv, SL_OK, "builder add: %s", sl_err_name(rv));
		tb->ts[i] = ts;
		if (ts > tb->max_ts)
			tb->max_ts = ts;
	}
	const uint8_t *out;
	size_t len;
	int rv = sl_batch_builder_finish(&b, &out, &len);
	cr_assert_eq(rv, SL_OK, "builder finish: %s", sl_err_name(rv));
	tb->bytes = xmalloc(len);
	memcpy(tb->bytes, out, len);
	tb->len = len;
	sl_batch_builder_free(&b);
	sl_batch_stamp(tb->bytes, base, (int32_t)rnd(rng, 5));
	tb->base = base;
	tb->last = base + n - 1;
}

static void tbatch_free(struct tbatch *tb)
{
	free(tb->bytes);
	free(tb->ts);
	memset(tb, 0, sizeof(*tb));
}

static void tbatch_copy(struct tbatch *dst, const struct tbatch *src)
{
	*dst = *src;
	dst->bytes = xmalloc(src->len);
	memcpy(dst->bytes, src->bytes, src->len);
	dst->ts = xmalloc((size_t)src->nrec * sizeof(*src->ts));
	memcpy(dst->ts, src->ts, (size_t)src->nrec * sizeof(*src->ts));
}

/* ---- The log on a sim disk ------------------------------------------- */

struct env {
	sim_disk *sd;
	sl_vfs *vfs;
	sl_log *log;
	struct sl_log_config cfg;
};

static void env_init(struct env *e, const struct sl_log_config *cfg)
{
	e->sd = sim_new();
	e->vfs = sim_vfs(e->sd);
	e->log = NULL;
	e->cfg = *cfg;
	cr_assert_eq(e->vfs->mkdir(e->vfs, "/sim", 0755), 0);
}

static void env_open(struct env *e)
{
	char errmsg[SL_ERRMSG_SIZE] = "";
	int rv = sl_log_open(LOG_DIR, &e->cfg, e->vfs, &e->log, errmsg);
	check(rv == SL_OK, "open: %s: %s", sl_err_name(rv), errmsg);
	check(sl_log_durable_offset(e->log) == sl_log_end_offset(e->log),
	      "after open, durable %" PRId64 " != end %" PRId64,
	      sl_log_durable_offset(e->log), sl_log_end_offset(e->log));
}

static void env_close(struct env *e)
{
	int rv = sl_log_close(e->log);
	e->log = NULL;
	check(rv == SL_OK, "close: %s", sl_err_name(rv));
}

/* The process dies: the disk drops what was not synced (tearing the newest
 * write when tear), and nothing the dead log does afterwards reaches it. */
static void env_crash(struct env *e, bool tear, uint64_t keep)
{
	if (tear)
		sim_crash_tear(e->sd, keep);
	else
		sim_crash(e->sd);
	if (e->log != NULL) {
		sim_fail_after(e->sd, 0, EIO);
		sl_log_close(e->log);
		sim_fail_after(e->sd, -1, 0);
		e->log = NULL;
	}
}

/* The process dies but the machine does not: what it wrote is still in
 * the page cache, nothing more reaches the disk from it. */
static void env_kill(struct env *e)
{
	sim_fail_after(e->sd, 0, EIO);
	sl_log_close(e->log);
	sim_fail_after(e->sd, -1, 0);
	e->log = NULL;
}

static void env_free(struct env *e)
{
	if (e->log != NULL)
		sl_log_close(e->log);
	e->log = NULL;
	sim_free(e->sd);
}

/* Reads the whole log, start to end, as the batches it serves. */
struct readback {
	uint8_t *buf;
	size_t len;
	size_t *pos; /* where batch i starts in buf */
	size_t n;
};

static void readback_free(struct readback *rb)
{
	free(rb->buf);
	free(rb->pos);
	memset(rb, 0, sizeof(*rb));
}

static void read_all(sl_log *log, uint64_t max_bytes, struct readback *rb)
{
	size_t cap = 0, pcap = 0;
	memset(rb, 0, sizeof(*rb));
	int64_t off = sl_log_start_offset(log), end = sl_log_end_offset(log);
	while (off < end) {
		struct sl_slice s;
		int rv = sl_log_read(log, off, max_bytes, &s);
		check(rv == SL_OK, "read_all at %" PRId64 ": %s (%s)", off, sl_err_name(rv),
		      sl_log_errmsg(log));
		if (s.len == 0) {
			sl_slice_release(&s);
			break;
		}
		check(s.next_offset > off, "read_all at %" PRId64 ": next_offset %" PRId64,
		      off, s.next_offset);
		if (rb->len + s.len > cap) {
			cap = (rb->len + s.len) * 2;
			rb->buf = xrealloc(rb->buf, cap);
		}
		rv = sl_slice_read(&s, rb->buf + rb->len);
		check(rv == SL_OK, "slice read: %s", sl_err_name(rv));
		size_t p = rb->len;
		rb->len += s.len;
		while (p < rb->len) {
			struct sl_batch_header h;
			rv = sl_batch_check(rb->buf + p, rb->len - p, SIZE_MAX, &h);
			check(rv == SL_OK, "read_all: bad batch in slice at %" PRId64 ": %s",
			      off, sl_err_name(rv));
			if (rb->n == pcap) {
				pcap = pcap ? pcap * 2 : 64;
				rb->pos = xrealloc(rb->pos, pcap * sizeof(*rb->pos));
			}
			rb->pos[rb->n++] = p;
			p += sl_batch_total_size(&h);
		}
		off = s.next_offset;
		sl_slice_release(&s);
	}
}

static size_t rb_batch_len(const struct readback *rb, size_t i)
{
	return (i + 1 < rb->n ? rb->pos[i + 1] : rb->len) - rb->pos[i];
}

/* Asserts that the log serves exactly want[0..n). */
static void assert_log_holds(sl_log *log, const struct tbatch *want, size_t n)
{
	struct readback rb;
	read_all(log, 1u << 20, &rb);
	check(rb.n == n, "log holds %zu batches, expected %zu", rb.n, n);
	for (size_t i = 0; i < n; i++) {
		check(rb_batch_len(&rb, i) == want[i].len &&
			      memcmp(rb.buf + rb.pos[i], want[i].bytes, want[i].len) == 0,
		      "batch %zu (base %" PRId64 ") differs", i, want[i].base);
	}
	readback_free(&rb);
}

static int append_one(sl_log *log, const struct tbatch *tb)
{
	return sl_log_append(log, tb->bytes, tb->len);
}

/* ---- 1. A torn last write, at every byte ----------------------------- */

#define TORN_BATCHES 40

static const char *prewrite_name(enum sl_prewrite pw)
{
	return pw == SL_PREWRITE_NONE ? "NONE" : pw == SL_PREWRITE_ZERO ? "ZERO" : "FALLOCATE";
}

/* Builds the scenario: batches[0..last) appended and flushed (some flushed
 * one by one, the rest in groups), then batches[last] appended only. */
static void torn_build(struct env *e, const struct sl_log_config *cfg,
		       const struct tbatch *batches, size_t last)
{
	env_init(e, cfg);
	env_open(e);
	for (size_t i = 0; i < last; i++) {
		int rv = append_one(e->log, &batches[i]);
		check(rv == SL_OK, "append %zu: %s", i, sl_err_name(rv));
		if (i % 3 == 2 || i + 1 == last)
			check(sl_log_flush(e->log) == SL_OK, "flush");
	}
	check(sl_log_durable_offset(e->log) == batches[last].base, "durable before the tear");
	int rv = append_one(e->log, &batches[last]);
	check(rv == SL_OK, "append last: %s", sl_err_name(rv));
}

static void torn_every_byte(enum sl_prewrite pw, const struct tbatch *batches, size_t last,
			    const struct tbatch *again)
{
	struct sl_log_config cfg;
	sl_log_config_init(&cfg);
	cfg.segment_bytes = 4096;
	cfg.index_interval = 512;
	cfg.segment_ms = 0;
	cfg.prewrite = pw;
	cfg.prewrite_min = 4096;
	cfg.prewrite_max = 16384;

	struct env e;
	set_where("prewrite=%s last=%zu probe", prewrite_name(pw), last);
	torn_build(&e, &cfg, batches, last);
	uint64_t wlen = sim_last_unsynced_write_len(e.sd);
	check(wlen == batches[last].len,
	      "the newest unsynced write is %" PRIu64 " bytes, not the batch's %zu", wlen,
	      batches[last].len);
	env_free(&e);

	int64_t end_before = batches[last].base;
	uint64_t size_before = 0;
	for (size_t i = 0; i < last; i++)
		size_before += batches[i].len;
	for (uint64_t keep = 0; keep < wlen; keep++) {
		set_where("prewrite=%s last=%zu keep=%" PRIu64, prewrite_name(pw), last, keep);
		torn_build(&e, &cfg, batches, last);
		env_crash(&e, true, keep);
		env_open(&e);
		check(sl_log_end_offset(e.log) == end_before, "end %" PRId64 ", expected %" PRId64,
		      sl_log_end_offset(e.log), end_before);
		check(sl_log_start_offset(e.log) == 0, "start moved");
		check(sl_log_size(e.log) == size_before, "size %" PRIu64 ", expected %" PRIu64
		      " (the torn tail was not cut)", sl_log_size(e.log), size_before);
		assert_log_holds(e.log, batches, last);

		/* The log goes on from there, and a clean reopen keeps it. */
		int rv = append_one(e.log, again);
		check(rv == SL_OK, "append after recovery: %s (%s)", sl_err_name(rv),
		      sl_log_errmsg(e.log));
		check(sl_log_end_offset(e.log) == again->last + 1, "end after re-append");
		env_close(&e);
		env_open(&e);
		check(sl_log_end_offset(e.log) == again->last + 1, "end after reopen %" PRId64,
		      sl_log_end_offset(e.log));
		struct tbatch *want = xmalloc((last + 1) * sizeof(*want));
		memcpy(want, batches, last * sizeof(*want));
		want[last] = *again;
		assert_log_holds(e.log, want, last + 1);
		free(want);
		env_free(&e);
	}
}

Test(crash, torn_write_at_every_byte)
{
	uint64_t rng = 0x70a4;
	struct gen_opts go = {
		.min_rec = 3, .max_rec = 3, .max_key = 8, .max_value = 100,
		.allow_zstd = false, .nonzero_tail = true,
	};
	struct tbatch batches[TORN_BATCHES];
	int64_t next = 0;
	for (size_t i = 0; i < TORN_BATCHES; i++) {
		make_batch(&rng, &go, next, 1700000000000 + (int64_t)i * 10, &batches[i]);
		next = batches[i].last + 1;
	}
	/* Which batches start a segment (4096 bytes, no batch larger). */
	size_t roll_at[TORN_BATCHES], nroll = 0;
	uint64_t fill = 0;
	for (size_t i = 0; i < TORN_BATCHES; i++) {
		if (fill > 0 && fill + batches[i].len > 4096) {
			roll_at[nroll++] = i;
			fill = 0;
		}
		fill += batches[i].len;
	}
	cr_assert_geq(nroll, 2, "the scenario needs two rolls");
	/* The torn batch in the middle of the third segment, then the torn
	 * batch as the first of the third segment (its append rolls). */
	size_t lasts[2] = { roll_at[1] + 2, roll_at[1] };
	cr_assert_lt(lasts[0], TORN_BATCHES);
	enum sl_prewrite pws[3] = { SL_PREWRITE_NONE, SL_PREWRITE_ZERO, SL_PREWRITE_FALLOCATE };
	for (size_t s = 0; s < 2; s++) {
		struct tbatch again;
		make_batch(&rng, &go, batches[lasts[s]].base, 1700000001000, &again);
		for (size_t p = 0; p < 3; p++)
			torn_every_byte(pws[p], batches, lasts[s], &again);
		tbatch_free(&again);
	}
	for (size_t i = 0; i < TORN_BATCHES; i++)
		tbatch_free(&batches[i]);
}

/* ---- 2. Random operations against a model ---------------------------- */

/* The model: the batches the log holds, in order, and its segments as the
 * log's rules cut them (roll when the next batch would take a non-empty
 * segment past segment_bytes; truncation makes the segment it lands in the
 * active one; retention drops whole segments from the front). */
struct mseg {
	int64_t base;
	int64_t next;  /* the segment's next offset (the log end, if active) */
	size_t first;  /* index of its first batch in model.b */
	uint64_t bytes;
};

struct model {
	struct tbatch *b;
	size_t n, cap;
	struct mseg *s;
	size_t ns, scap;
	int64_t durable_lb; /* the end at the last flush, open or truncation */
	uint64_t segment_bytes;
};

static void m_push_seg(struct model *m, int64_t base)
{
	if (m->ns == m->scap) {
		m->scap = m->scap ? m->scap * 2 : 16;
		m->s = xrealloc(m->s, m->scap * sizeof(*m->s));
	}
	m->s[m->ns++] = (struct mseg){ .base = base, .next = base, .first = m->n, .bytes = 0 };
}

static void m_init(struct model *m, uint64_t segment_bytes)
{
	memset(m, 0, sizeof(*m));
	m->segment_bytes = segment_bytes;
	m_push_seg(m, 0);
}

static void m_free(struct model *m)
{
	for (size_t i = 0; i < m->n; i++)
		tbatch_free(&m->b[i]);
	free(m->b);
	free(m->s);
}

static int64_t m_start(const struct model *m)
{
	return m->s[0].base;
}

static int64_t m_end(const struct model *m)
{
	return m->s[m->ns - 1].next;
}

static size_t m_seg_end(const struct model *m, size_t j)
{
	return j + 1 < m->ns ? m->s[j + 1].first : m->n;
}

/* The segment holding batch i. */
static size_t m_seg_of(const struct model *m, size_t i)
{
	size_t j = 0;
	while (j + 1 < m->ns && m->s[j + 1].first <= i)
		j++;
	return j;
}

static uint64_t m_bytes(const struct model *m)
{
	uint64_t total = 0;
	for (size_t j = 0; j < m->ns; j++)
		total += m->s[j].bytes;
	return total;
}

/* Takes ownership of tb's buffers. */
static void m_append(struct model *m, struct tbatch *tb)
{
	struct mseg *a = &m->s[m->ns - 1];
	if (a->bytes > 0 && a->bytes + tb->len > m->segment_bytes)
		m_push_seg(m, tb->base);
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 256;
		m->b = xrealloc(m->b, m->cap * sizeof(*m->b));
	}
	m->b[m->n++] = *tb;
	memset(tb, 0, sizeof(*tb));
	a = &m->s[m->ns - 1];
	a->bytes += m->b[m->n - 1].len;
	a->next = m->b[m->n - 1].last + 1;
}

/* Keeps batches [0, k) and recomputes the last segment. */
static void m_cut(struct model *m, size_t k)
{
	while (m->n > k)
		tbatch_free(&m->b[--m->n]);
	struct mseg *a = &m->s[m->ns - 1];
	a->bytes = 0;
	for (size_t i = a->first; i < m->n; i++)
		a->bytes += m->b[i].len;
}

static void m_truncate(struct model *m, int64_t offset)
{
	if (offset == m_end(m))
		return;
	size_t j = 0;
	while (j + 1 < m->ns && m->s[j + 1].base <= offset)
		j++;
	m->ns = j + 1;
	size_t k = m->n;
	while (k > 0 && m->b[k - 1].base >= offset)
		k--;
	m_cut(m, k);
	/* The end is one past the last batch kept (the segment's base if it
	 * kept none), also when offset fell in a gap. */
	m->s[j].next = m->n > m->s[j].first ? m->b[m->n - 1].last + 1 : m->s[j].base;
	if (m->durable_lb > m->s[j].next)
		m->durable_lb = m->s[j].next;
}

static void m_drop_front_seg(struct model *m)
{
	size_t k = m_seg_end(m, 0);
	for (size_t i = 0; i < k; i++)
		tbatch_free(&m->b[i]);
	memmove(m->b, m->b + k, (m->n - k) * sizeof(*m->b));
	m->n -= k;
	memmove(m->s, m->s + 1, (m->ns - 1) * sizeof(*m->s));
	m->ns--;
	for (size_t j = 0; j < m->ns; j++)
		m->s[j].first -= k;
}

/* sl_log_retain's rule, on the model; returns the segments deleted. */
static size_t m_retain(struct model *m, const struct sl_log_config *cfg, int64_t floor,
		       int64_t now)
{
	size_t n = 0;
	uint64_t total = m_bytes(m);
	while (m->ns > 1 && m->s[1].base <= floor) {
		uint64_t size = m->s[0].bytes;
		bool expired = cfg->retention_bytes >= 0 &&
			       total - size >= (uint64_t)cfg->retention_bytes &&
			       total > (uint64_t)cfg->retention_bytes;
		if (!expired && cfg->retention_ms >= 0) {
			int64_t max_ts = INT64_MIN;
			for (size_t i = 0; i < m_seg_end(m, 0); i++)
				if (m->b[i].max_ts > max_ts)
					max_ts = m->b[i].max_ts;
			expired = max_ts < now - cfg->retention_ms;
		}
		if (!expired)
			break;
		total -= size;
		m_drop_front_seg(m);
		n++;
	}
	return n;
}

/* After a crash the log kept batches [0, k): sealed segments are whole,
 * the active one ends at its last batch. */
static void m_crash(struct model *m, size_t k)
{
	m_cut(m, k);
	struct mseg *a = &m->s[m->ns - 1];
	a->next = m->n > a->first ? m->b[m->n - 1].last + 1 : a->base;
}

static void m_reset(struct model *m, int64_t start)
{
	m_cut(m, 0);
	m->ns = 0;
	m_push_seg(m, start);
	m->durable_lb = start;
}

/* Index of the first batch whose last offset is >= offset (n if none). */
static size_t m_find(const struct model *m, int64_t offset)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->b[mid].last < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The cheap invariants, after every step. */
static void m_check(struct env *e, const struct model *m)
{
	sl_log *log = e->log;
	int64_t start = sl_log_start_offset(log), end = sl_log_end_offset(log);
	int64_t durable = sl_log_durable_offset(log);
	check(start == m_start(m), "start %" PRId64 ", model %" PRId64, start, m_start(m));
	check(end == m_end(m), "end %" PRId64 ", model %" PRId64, end, m_end(m));
	check(durable >= m->durable_lb && durable <= end,
	      "durable %" PRId64 " outside [%" PRId64 ", end %" PRId64 "]", durable, m->durable_lb,
	      end);
	check(sl_log_segment_count(log) == m->ns, "%zu segments, model %zu",
	      sl_log_segment_count(log), m->ns);
	check(sl_log_size(log) == m_bytes(m), "size %" PRIu64 ", model %" PRIu64, sl_log_size(log),
	      m_bytes(m));
}

static void m_check_all(struct env *e, const struct model *m)
{
	m_check(e, m);
	assert_log_holds(e->log, m->b, m->n);
}

/* A read at offset: the batch holding it (or the first after it), then
 * whole batches of the same segment while they fit in max_bytes. With
 * faulty, the disk fails part-way: STORAGE is then a fine answer. */
static void check_read(struct env *e, const struct model *m, uint64_t *rng, bool faulty)
{
	int64_t start = m_start(m), end = m_end(m), offset;
	uint64_t max_bytes;
	struct sl_slice s;
	unsigned r = (unsigned)rnd(rng, 100);
	if (r < 5) {
		offset = end + 1 + (int64_t)rnd(rng, 10);
		int rv = sl_log_read(e->log, offset, 4096, &s);
		check(rv == SL_EOFFSET_OUT_OF_RANGE, "read past the end at %" PRId64 ": %s", offset,
		      sl_err_name(rv));
		sl_slice_release(&s);
		return;
	}
	if (r < 10 && start > 0) {
		offset = start - 1 - (int64_t)rnd(rng, (uint64_t)start);
		int rv = sl_log_read(e->log, offset, 4096, &s);
		check(rv == SL_EOFFSET_OUT_OF_RANGE, "read below the start at %" PRId64 ": %s",
		      offset, sl_err_name(rv));
		sl_slice_release(&s);
		return;
	}
	if (r < 20 || m->n == 0) {
		offset = start + (int64_t)rnd(rng, (uint64_t)(end - start) + 1);
	} else {
		const struct tbatch *tb = &m->b[rnd(rng, m->n)];
		offset = tb->base + (int64_t)rnd(rng, (uint64_t)tb->nrec);
	}
	r = (unsigned)rnd(rng, 100);
	max_bytes = r < 15 ? 1 : r < 30 ? 1 + rnd(rng, 600) : 1 + rnd(rng, 3 * m->segment_bytes);

	int rv = sl_log_read(e->log, offset, max_bytes, &s);
	if (faulty && rv == SL_ESTORAGE)
		return;
	check(rv == SL_OK, "read at %" PRId64 " max %" PRIu64 ": %s (%s)", offset, max_bytes,
	      sl_err_name(rv), sl_log_errmsg(e->log));
	size_t j = m_find(m, offset);
	if (j == m->n) {
		check(s.len == 0, "read at %" PRId64 " (nothing at or after it): %" PRIu64 " bytes",
		      offset, s.len);
		check(s.next_offset == end, "empty read at %" PRId64 ": next_offset %" PRId64, offset,
		      s.next_offset);
		sl_slice_release(&s);
		return;
	}
	/* Batches j..k-1 of j's segment, as many as fit (at least one). */
	size_t seg_end = m_seg_end(m, m_seg_of(m, j));
	size_t k = j + 1;
	uint64_t len = m->b[j].len;
	while (k < seg_end && len + m->b[k].len <= max_bytes)
		len += m->b[k++].len;
	check(s.len == len && s.first_offset == m->b[j].base && s.next_offset == m->b[k - 1].last + 1,
	      "read at %" PRId64 " max %" PRIu64 ": got [%" PRId64 ", %" PRId64 ") %" PRIu64
	      " bytes, model [%" PRId64 ", %" PRId64 ") %" PRIu64 " bytes",
	      offset, max_bytes, s.first_offset, s.next_offset, s.len, m->b[j].base,
	      m->b[k - 1].last + 1, len);
	if (offset >= m->b[j].base)
		check(s.first_offset <= offset && offset < s.next_offset, "offset not in the slice");
	uint8_t *buf = xmalloc(len);
	rv = sl_slice_read(&s, buf);
	if (faulty && rv == SL_ESTORAGE) {
		free(buf);
		sl_slice_release(&s);
		return;
	}
	check(rv == SL_OK, "slice read: %s", sl_err_name(rv));
	uint64_t p = 0;
	for (size_t i = j; i < k; i++) {
		check(memcmp(buf + p, m->b[i].bytes, m->b[i].len) == 0,
		      "read at %" PRId64 ": batch %" PRId64 " differs", offset, m->b[i].base);
		p += m->b[i].len;
	}
	free(buf);
	sl_slice_release(&s);
}

static void check_find_time(struct env *e, const struct model *m, uint64_t *rng, bool faulty)
{
	int64_t ts;
	if (m->n > 0 && chance(rng, 70)) {
		const struct tbatch *tb = &m->b[rnd(rng, m->n)];
		ts = tb->ts[rnd(rng, (uint64_t)tb->nrec)] + (int64_t)rnd(rng, 3) - 1;
	} else {
		int64_t lo = INT64_MAX, hi = INT64_MIN;
		for (size_t i = 0; i < m->n; i++) {
			for (int32_t r = 0; r < m->b[i].nrec; r++) {
				lo = m->b[i].ts[r] < lo ? m->b[i].ts[r] : lo;
				hi = m->b[i].ts[r] > hi ? m->b[i].ts[r] : hi;
			}
		}
		if (m->n == 0)
			lo = hi = 1700000000000;
		ts = lo - 100 + (int64_t)rnd(rng, (uint64_t)(hi - lo) + 201);
	}
	int64_t want = -1;
	for (size_t i = 0; i < m->n && want < 0; i++) {
		if (m->b[i].max_ts < ts)
			continue;
		for (int32_t r = 0; r < m->b[i].nrec; r++) {
			if (m->b[i].ts[r] >= ts) {
				want = m->b[i].base + r;
				break;
			}
		}
	}
	int64_t got = -2;
	int rv = sl_log_find_time(e->log, ts, &got);
	if (faulty && rv == SL_ESTORAGE)
		return;
	check(rv == SL_OK, "find_time %" PRId64 ": %s (%s)", ts, sl_err_name(rv),
	      sl_log_errmsg(e->log));
	check(got == want, "find_time %" PRId64 ": %" PRId64 ", brute force %" PRId64, ts, got,
	      want);
}

/* A slice kept across later steps: its bytes must stay readable until
 * released, even after retention removes its segment or the log closes
 * (not after a truncation or reset, which may rewrite the same file). */
struct held {
	bool on;
	bool stale;
	struct sl_slice s;
	uint8_t *want;
};

static void held_take(struct env *e, const struct model *m, struct held *h, uint64_t *rng)
{
	if (h->on || m->n == 0)
		return;
	const struct tbatch *tb = &m->b[rnd(rng, m->n)];
	int rv = sl_log_read(e->log, tb->base, 1 + rnd(rng, 4000), &h->s);
	check(rv == SL_OK && h->s.len > 0, "read to hold: %s", sl_err_name(rv));
	h->want = xmalloc(h->s.len);
	check(sl_slice_read(&h->s, h->want) == SL_OK, "slice read");
	check(h->s.len >= tb->len && memcmp(h->want, tb->bytes, tb->len) == 0, "held slice bytes");
	h->on = true;
	h->stale = false;
}

static void held_drop(struct held *h)
{
	if (!h->on)
		return;
	if (!h->stale) {
		uint8_t *buf = xmalloc(h->s.len);
		int rv = sl_slice_read(&h->s, buf);
		check(rv == SL_OK, "held slice read: %s", sl_err_name(rv));
		check(memcmp(buf, h->want, h->s.len) == 0, "held slice [%" PRId64 ", %" PRId64
		      ") changed", h->s.first_offset, h->s.next_offset);
		free(buf);
	}
	sl_slice_release(&h->s);
	free(h->want);
	h->want = NULL;
	h->on = false;
}

static void random_config(struct sl_log_config *cfg, uint64_t *rng)
{
	static const int64_t rbytes[] = { -1, 60000, 150000 };
	static const int64_t rms[] = { -1, 60000, 300000 };
	cfg->prewrite = (enum sl_prewrite)rnd(rng, 3);
	cfg->retention_bytes = rbytes[rnd(rng, 3)];
	cfg->retention_ms = rms[rnd(rng, 3)];
}

static const struct gen_opts random_gen = {
	.min_rec = 1, .max_rec = 6, .max_key = 16, .max_value = 120, .allow_zstd = true,
};
static const struct gen_opts random_gen_big = {
	.min_rec = 2, .max_rec = 8, .max_key = 16, .max_value = 2000, .allow_zstd = true,
};

static void random_run(uint64_t seed, int nops)
{
	uint64_t rng = seed;
	struct sl_log_config cfg;
	sl_log_config_init(&cfg);
	cfg.segment_bytes = 8192;
	cfg.index_interval = 512;
	cfg.segment_ms = 0;
	cfg.prewrite_min = 4096;
	cfg.prewrite_max = 32768;
	random_config(&cfg, &rng);
	struct env e;
	struct model m;
	struct held h = { 0 };
	/* The batches the last truncation removed, which a producer's retry
	 * may append again: the same bytes at other offsets (the base offset
	 * and epoch are outside the CRC). */
	struct tbatch gone[8];
	size_t ngone = 0, gone_in_seg = 0; /* how many were in the cut segment */
	int64_t clock = 1700000000000;
	env_init(&e, &cfg);
	m_init(&m, cfg.segment_bytes);
	set_where("seed=%#" PRIx64 " open", seed);
	env_open(&e);

	for (int op = 0; op < nops; op++) {
		unsigned r = (unsigned)rnd(&rng, 1000);
		clock += (int64_t)rnd(&rng, 200);
		if (r < 365) {
			set_where("seed=%#" PRIx64 " op=%d append", seed, op);
			size_t nb = chance(&rng, 60) ? 1 : 2 + rnd(&rng, 3);
			struct tbatch tbs[4];
			size_t len = 0;
			int64_t base = m_end(&m);
			for (size_t i = 0; i < nb; i++) {
				if (chance(&rng, 10))
					base += 1 + (int64_t)rnd(&rng, 5);
				make_batch(&rng, chance(&rng, 2) ? &random_gen_big : &random_gen, base,
					   clock, &tbs[i]);
				base = tbs[i].last + 1;
				len += tbs[i].len;
			}
			uint8_t *buf = xmalloc(len), *p = buf;
			for (size_t i = 0; i < nb; i++) {
				memcpy(p, tbs[i].bytes, tbs[i].len);
				p += tbs[i].len;
			}
			int rv = sl_log_append(e.log, buf, len);
			check(rv == SL_OK, "append of %zu batches: %s (%s)", nb, sl_err_name(rv),
			      sl_log_errmsg(e.log));
			free(buf);
			for (size_t i = 0; i < nb; i++)
				m_append(&m, &tbs[i]);
		} else if (r < 395) {
			set_where("seed=%#" PRIx64 " op=%d append again", seed, op);
			/* Often exactly what the cut segment lost: it grows back
			 * to its old size, the last batch with its old CRC. */
			size_t nb = ngone == 0 ? 0 : chance(&rng, 50) ? gone_in_seg : 1 + rnd(&rng, ngone);
			size_t len = 0;
			int64_t base = m_end(&m) + (int64_t)rnd(&rng, 8);
			struct tbatch tbs[8];
			for (size_t i = 0; i < nb; i++) {
				tbatch_copy(&tbs[i], &gone[i]);
				sl_batch_stamp(tbs[i].bytes, base, (int32_t)rnd(&rng, 5));
				tbs[i].last = base + (tbs[i].last - tbs[i].base);
				tbs[i].base = base;
				base = tbs[i].last + 1;
				len += tbs[i].len;
			}
			uint8_t *buf = xmalloc(len), *p = buf;
			for (size_t i = 0; i < nb; i++) {
				memcpy(p, tbs[i].bytes, tbs[i].len);
				p += tbs[i].len;
			}
			int rv = nb == 0 ? SL_OK : sl_log_append(e.log, buf, len);
			check(rv == SL_OK, "append again of %zu batches: %s (%s)", nb, sl_err_name(rv),
			      sl_log_errmsg(e.log));
			free(buf);
			for (size_t i = 0; i < nb; i++)
				m_append(&m, &tbs[i]);
			if (chance(&rng, 50)) {
				check(sl_log_flush(e.log) == SL_OK, "flush");
				m.durable_lb = m_end(&m);
			}
		} else if (r < 450) {
			set_where("seed=%#" PRIx64 " op=%d flush", seed, op);
			int rv = sl_log_flush(e.log);
			check(rv == SL_OK, "flush: %s", sl_err_name(rv));
			m.durable_lb = m_end(&m);
			check(sl_log_durable_offset(e.log) == m_end(&m), "durable after flush");
		} else if (r < 680) {
			set_where("seed=%#" PRIx64 " op=%d read", seed, op);
			check_read(&e, &m, &rng, false);
		} else if (r < 760) {
			set_where("seed=%#" PRIx64 " op=%d find_time", seed, op);
			check_find_time(&e, &m, &rng, false);
		} else if (r < 785) {
			set_where("seed=%#" PRIx64 " op=%d truncate", seed, op);
			int64_t offset;
			int want = SL_OK;
			unsigned t = (unsigned)rnd(&rng, 100);
			if (m.n == 0 || t < 10) {
				offset = m_end(&m);
			} else if (t < 20) {
				const struct tbatch *tb = &m.b[rnd(&rng, m.n)];
				if (tb->nrec < 2)
					continue;
				offset = tb->base + 1 + (int64_t)rnd(&rng, (uint64_t)tb->nrec - 1);
				want = SL_ELOG_MID_BATCH;
			} else if (t < 25) {
				offset = m_end(&m) + 1;
				want = SL_EOFFSET_OUT_OF_RANGE;
			} else {
				size_t most = chance(&rng, 10) ? 60 : 6;
				size_t back = 1 + rnd(&rng, m.n < most ? m.n : most);
				offset = m.b[m.n - back].base;
			}
			int rv = sl_log_truncate(e.log, offset);
			check(rv == want, "truncate at %" PRId64 ": %s, expected %s (%s)", offset,
			      sl_err_name(rv), sl_err_name(want), sl_log_errmsg(e.log));
			if (want == SL_OK) {
				while (ngone > 0)
					tbatch_free(&gone[--ngone]);
				size_t first = m_find(&m, offset);
				size_t seg_end = first < m.n ? m_seg_end(&m, m_seg_of(&m, first)) : m.n;
				for (size_t i = first; i < m.n && ngone < 8; i++)
					tbatch_copy(&gone[ngone++], &m.b[i]);
				gone_in_seg = seg_end - first < ngone ? seg_end - first : ngone;
				m_truncate(&m, offset);
				h.stale = true;
			}
		} else if (r < 800) {
			set_where("seed=%#" PRIx64 " op=%d bad append", seed, op);
			struct tbatch tbs[2];
			int64_t base = m_end(&m);
			make_batch(&rng, &random_gen, base, clock, &tbs[0]);
			unsigned how = (unsigned)rnd(&rng, 3);
			int want;
			size_t len = tbs[0].len;
			if (how == 0) {
				/* The second batch overlaps the first. */
				make_batch(&rng, &random_gen, tbs[0].last, clock, &tbs[1]);
				want = SL_ELOG_OFFSET_ORDER;
			} else {
				make_batch(&rng, &random_gen, tbs[0].last + 1, clock, &tbs[1]);
				if (how == 1) {
					tbs[1].bytes[SL_BATCH_CRC_START + rnd(&rng, tbs[1].len - SL_BATCH_CRC_START)] ^= 0x10;
					want = SL_EBATCH_BAD_CRC;
				} else {
					tbs[1].len -= 1 + rnd(&rng, tbs[1].len - 1);
					want = SL_EBATCH_TRUNCATED;
				}
			}
			len += tbs[1].len;
			uint8_t *buf = xmalloc(len);
			memcpy(buf, tbs[0].bytes, tbs[0].len);
			memcpy(buf + tbs[0].len, tbs[1].bytes, tbs[1].len);
			int rv = sl_log_append(e.log, buf, len);
			check(rv == want, "bad append (kind %u): %s, expected %s", how, sl_err_name(rv),
			      sl_err_name(want));
			free(buf);
			tbatch_free(&tbs[0]);
			tbatch_free(&tbs[1]);
		} else if (r < 840) {
			set_where("seed=%#" PRIx64 " op=%d retain", seed, op);
			int64_t floor = m_start(&m) + (int64_t)rnd(&rng, (uint64_t)(m_end(&m) - m_start(&m)) + 1);
			int64_t now = clock + (int64_t)rnd(&rng, 60000);
			size_t deleted = 0;
			int rv = sl_log_retain(e.log, floor, now, &deleted);
			check(rv == SL_OK, "retain: %s (%s)", sl_err_name(rv), sl_log_errmsg(e.log));
			size_t want = m_retain(&m, &cfg, floor, now);
			check(deleted == want, "retain (floor %" PRId64 ") deleted %zu segments, model %zu",
			      floor, deleted, want);
		} else if (r < 855) {
			set_where("seed=%#" PRIx64 " op=%d reopen", seed, op);
			env_close(&e);
			held_drop(&h); /* still readable after the close */
			random_config(&cfg, &rng);
			e.cfg = cfg;
			env_open(&e);
			m.durable_lb = m_end(&m);
			m_check_all(&e, &m);
		} else if (r < 865) {
			/* Killed: everything appended is in the page cache, and
			 * the recovery that follows must make it durable. */
			held_drop(&h);
			set_where("seed=%#" PRIx64 " op=%d kill", seed, op);
			env_kill(&e);
			random_config(&cfg, &rng);
			e.cfg = cfg;
			env_open(&e);
			m_crash(&m, m.n);
			m.durable_lb = m_end(&m);
			m_check_all(&e, &m);
		} else if (r < 885) {
			held_drop(&h);
			uint64_t wlen = sim_last_unsynced_write_len(e.sd);
			bool tear = wlen > 0 && chance(&rng, 50);
			uint64_t keep = tear ? rnd(&rng, wlen) : 0;
			set_where("seed=%#" PRIx64 " op=%d crash tear=%d keep=%" PRIu64 "/%" PRIu64, seed,
				  op, tear, keep, wlen);
			int64_t durable = sl_log_durable_offset(e.log);
			env_crash(&e, tear, keep);
			random_config(&cfg, &rng);
			e.cfg = cfg;
			env_open(&e);
			struct readback rb;
			read_all(e.log, 1u << 20, &rb);
			size_t need = 0;
			while (need < m.n && m.b[need].last < durable)
				need++;
			check(rb.n <= m.n, "after the crash the log holds %zu batches, more than the %zu appended",
			      rb.n, m.n);
			check(rb.n >= need, "after the crash the log holds %zu batches; the %zu below the durable offset %" PRId64 " must survive",
			      rb.n, need, durable);
			for (size_t i = 0; i < rb.n; i++)
				check(rb_batch_len(&rb, i) == m.b[i].len &&
					      memcmp(rb.buf + rb.pos[i], m.b[i].bytes, m.b[i].len) == 0,
				      "after the crash batch %zu (base %" PRId64 ") differs", i, m.b[i].base);
			check(m.s[m.ns - 1].first <= rb.n, "the crash lost batches of a sealed segment");
			m_crash(&m, rb.n);
			readback_free(&rb);
			m.durable_lb = m_end(&m);
		} else if (r < 888) {
			set_where("seed=%#" PRIx64 " op=%d reset", seed, op);
			int64_t start = m_end(&m) + (int64_t)rnd(&rng, 100);
			int rv = sl_log_reset(e.log, start);
			check(rv == SL_OK, "reset to %" PRId64 ": %s", start, sl_err_name(rv));
			m_reset(&m, start);
			h.stale = true;
		} else if (r < 910) {
			/* The disk fails for a while under a reader: it may get
			 * STORAGE, and nothing may change because of it. */
			set_where("seed=%#" PRIx64 " op=%d read on a failing disk", seed, op);
			sim_fail_after(e.sd, (int64_t)rnd(&rng, 12), EIO);
			if (chance(&rng, 50))
				check_read(&e, &m, &rng, true);
			else
				check_find_time(&e, &m, &rng, true);
			sim_fail_after(e.sd, -1, 0);
		} else if (r < 940) {
			set_where("seed=%#" PRIx64 " op=%d hold", seed, op);
			held_take(&e, &m, &h, &rng);
		} else if (r < 960) {
			set_where("seed=%#" PRIx64 " op=%d release", seed, op);
			held_drop(&h);
		} else {
			set_where("seed=%#" PRIx64 " op=%d scan", seed, op);
			m_check_all(&e, &m);
		}
		m_check(&e, &m);
	}
	set_where("seed=%#" PRIx64 " end", seed);
	while (ngone > 0)
		tbatch_free(&gone[--ngone]);
	held_drop(&h);
	m_check_all(&e, &m);
	env_close(&e);
	env_free(&e);
	m_free(&m);
}

Test(crash, random_ops_against_model)
{
	/* CRASH_SEED=<n> replays one seed (it is printed with any failure). */
	const char *env = getenv("CRASH_SEED");
	if (env != NULL) {
		random_run(strtoull(env, NULL, 0), 10000);
		return;
	}
	for (uint64_t seed = 1; seed <= 32; seed++)
		random_run(seed, 10000);
}

/* ---- 3. Disk failures ------------------------------------------------- */

/* One run of the failure script: what the log may hold afterwards. */
struct fail_run {
	struct model m;        /* every call that succeeded */
	struct tbatch extra[3]; /* the batches of an append that failed */
	size_t nextra;
	int64_t must; /* every batch below this offset was flushed */
	int failed_step;
	const char *failed_call;
	int err;
};

enum fault_kind {
	FAULT_ERRORS,       /* calls fail; then the fault clears, the log closes */
	FAULT_ERRORS_CRASH, /* calls fail; then the machine crashes */
	FAULT_DEAD_DISK,    /* the disk dies (sim_crash_after), then a crash */
};

static const char *fault_name(enum fault_kind k)
{
	return k == FAULT_ERRORS ? "errors" : k == FAULT_ERRORS_CRASH ? "errors+crash" : "dead disk";
}

#define FAIL_STEPS 48

static const struct gen_opts fail_gen = {
	.min_rec = 2, .max_rec = 5, .max_key = 8, .max_value = 150, .allow_zstd = false,
};

/* Appends, flushes, rolls (4 KiB segments) and two truncations, one of
 * them into a sealed segment with later segments to delete. Stops at the
 * first call that fails. Returns true if every call succeeded. */
static bool fail_script(struct env *e, struct fail_run *fr)
{
	uint64_t rng = 0xfa11;
	int64_t clock = 1700000000000;
	m_init(&fr->m, e->cfg.segment_bytes);
	fr->nextra = 0;
	fr->must = 0;
	fr->failed_step = -1;
	for (int i = 0; i < FAIL_STEPS; i++) {
		struct model *m = &fr->m;
		int rv;
		clock += 100;
		if ((i == 24 && m->ns >= 3) || i == 38) {
			int64_t offset = i == 24 ? m->b[m->s[m->ns - 2].first + 1].base
						 : m->b[m->n - 2].base;
			rv = sl_log_truncate(e->log, offset);
			if (fr->must > offset)
				fr->must = offset;
			if (rv != SL_OK) {
				fr->failed_call = "truncate";
			} else {
				m_truncate(m, offset);
				continue;
			}
		} else if (i % 4 == 3) {
			rv = sl_log_flush(e->log);
			if (rv != SL_OK)
				fr->failed_call = "flush";
			else
				fr->must = m_end(m);
		} else {
			size_t nb = 1 + (size_t)(i % 3);
			uint8_t buf[3 * 4096];
			size_t len = 0;
			int64_t base = m_end(m);
			for (size_t j = 0; j < nb; j++) {
				make_batch(&rng, &fail_gen, base, clock, &fr->extra[j]);
				cr_assert_leq(len + fr->extra[j].len, sizeof(buf));
				memcpy(buf + len, fr->extra[j].bytes, fr->extra[j].len);
				len += fr->extra[j].len;
				base = fr->extra[j].last + 1;
			}
			fr->nextra = nb;
			rv = sl_log_append(e->log, buf, len);
			if (rv != SL_OK) {
				fr->failed_call = "append";
			} else {
				for (size_t j = 0; j < nb; j++)
					m_append(m, &fr->extra[j]);
				fr->nextra = 0;
			}
		}
		if (rv != SL_OK) {
			fr->failed_step = i;
			fr->err = rv;
			return false;
		}
	}
	return true;
}

static void fail_run_free(struct fail_run *fr)
{
	m_free(&fr->m);
	for (size_t j = 0; j < fr->nextra; j++)
		tbatch_free(&fr->extra[j]);
	fr->nextra = 0;
}

/* The log holds a prefix of what the script appended (the failed append's
 * batches included) that contains every batch below fr->must; then it
 * takes one more batch, and keeps it over a clean reopen. */
static void assert_recovered(struct env *e, const struct fail_run *fr)
{
	const struct model *m = &fr->m;
	struct readback rb;
	read_all(e->log, 1u << 20, &rb);
	size_t need = 0;
	while (need < m->n && m->b[need].last < fr->must)
		need++;
	check(rb.n >= need, "the log holds %zu batches; %zu were flushed", rb.n, need);
	check(rb.n <= m->n + fr->nextra, "the log holds %zu batches, more than the %zu appended",
	      rb.n, m->n + fr->nextra);
	for (size_t i = 0; i < rb.n; i++) {
		const struct tbatch *tb = i < m->n ? &m->b[i] : &fr->extra[i - m->n];
		check(rb_batch_len(&rb, i) == tb->len &&
			      memcmp(rb.buf + rb.pos[i], tb->bytes, tb->len) == 0,
		      "batch %zu (base %" PRId64 ") differs from what was appended", i, tb->base);
	}
	readback_free(&rb);

	uint64_t rng = 0xbeef;
	struct tbatch more;
	int64_t end = sl_log_end_offset(e->log);
	make_batch(&rng, &fail_gen, end, 1700000100000, &more);
	int rv = append_one(e->log, &more);
	check(rv == SL_OK, "append after recovery: %s (%s)", sl_err_name(rv), sl_log_errmsg(e->log));
	check(sl_log_flush(e->log) == SL_OK, "flush after recovery");
	env_close(e);
	env_open(e);
	check(sl_log_end_offset(e->log) == more.last + 1, "end after reopen");
	struct sl_slice s;
	rv = sl_log_read(e->log, end, 1, &s);
	check(rv == SL_OK && s.len == more.len, "read back the new batch: %s", sl_err_name(rv));
	uint8_t *buf = xmalloc(s.len);
	check(sl_slice_read(&s, buf) == SL_OK && memcmp(buf, more.bytes, more.len) == 0,
	      "the new batch differs");
	free(buf);
	sl_slice_release(&s);
	tbatch_free(&more);
}

static void fail_at(const struct sl_log_config *cfg, enum fault_kind kind, uint64_t n, int err)
{
	struct env e;
	struct fail_run fr;
	env_init(&e, cfg);
	env_open(&e);
	if (kind == FAULT_DEAD_DISK)
		sim_crash_after(e.sd, (int64_t)n);
	else
		sim_fail_after(e.sd, (int64_t)n, err);
	bool done = fail_script(&e, &fr);
	if (!done) {
		check(fr.err == SL_ESTORAGE, "%s at step %d failed with %s, expected STORAGE",
		      fr.failed_call, fr.failed_step, sl_err_name(fr.err));
		check(sl_log_errmsg(e.log)[0] != '\0', "no errmsg after a failed %s", fr.failed_call);
		/* The disk is still failing: so must every call that writes. */
		uint64_t rng = 0xdead;
		struct tbatch tb;
		make_batch(&rng, &fail_gen, sl_log_end_offset(e.log) + 10, 1700000200000, &tb);
		int rv = append_one(e.log, &tb);
		check(rv != SL_OK, "append succeeded on a failing disk");
		tbatch_free(&tb);
		check(sl_log_flush(e.log) != SL_OK, "flush succeeded on a failing disk");
	}
	switch (kind) {
	case FAULT_ERRORS:
		sim_fail_after(e.sd, -1, 0);
		sl_log_close(e.log); /* may fail or not: it must not lose data */
		e.log = NULL;
		break;
	case FAULT_ERRORS_CRASH:
		env_crash(&e, false, 0);
		sim_fail_after(e.sd, -1, 0);
		break;
	case FAULT_DEAD_DISK:
		env_crash(&e, false, 0);
		sim_crash_after(e.sd, -1);
		break;
	}
	env_open(&e);
	assert_recovered(&e, &fr);
	fail_run_free(&fr);
	env_free(&e);
}

/* Faults while opening a log whose active segment has a torn tail: open
 * fails cleanly, and a later open still recovers everything flushed. */
static void fail_in_open(const struct sl_log_config *cfg, enum fault_kind kind, uint64_t n, int err)
{
	struct env e;
	struct fail_run fr;
	env_init(&e, cfg);
	env_open(&e);
	cr_assert(fail_script(&e, &fr));
	uint64_t rng = 0x0be2;
	struct tbatch tb;
	make_batch(&rng, &fail_gen, m_end(&fr.m), 1700000300000, &tb);
	check(append_one(e.log, &tb) == SL_OK, "append");
	uint64_t wlen = sim_last_unsynced_write_len(e.sd);
	env_crash(&e, true, wlen / 2);
	tbatch_free(&tb);

	if (kind == FAULT_DEAD_DISK)
		sim_crash_after(e.sd, (int64_t)n);
	else
		sim_fail_after(e.sd, (int64_t)n, err);
	char errmsg[SL_ERRMSG_SIZE] = "";
	int rv = sl_log_open(LOG_DIR, &e.cfg, e.vfs, &e.log, errmsg);
	if (rv == SL_OK) {
		/* n was past the end of the recovery. */
		sim_fail_after(e.sd, -1, 0);
		sim_crash_after(e.sd, -1);
		env_close(&e);
	} else {
		check(e.log == NULL, "a failed open returned a log");
		check(rv == SL_ESTORAGE, "open failed with %s (%s), expected STORAGE", sl_err_name(rv),
		      errmsg);
		check(errmsg[0] != '\0', "no errmsg after a failed open");
		if (kind != FAULT_ERRORS)
			sim_crash(e.sd);
	}
	sim_fail_after(e.sd, -1, 0);
	sim_crash_after(e.sd, -1);
	env_open(&e);
	assert_recovered(&e, &fr);
	fail_run_free(&fr);
	env_free(&e);
}

Test(crash, disk_failure_is_reported)
{
	static const enum sl_prewrite pws[3] = { SL_PREWRITE_NONE, SL_PREWRITE_ZERO,
						 SL_PREWRITE_FALLOCATE };
	static const enum fault_kind kinds[3] = { FAULT_ERRORS, FAULT_ERRORS_CRASH, FAULT_DEAD_DISK };
	for (size_t p = 0; p < 3; p++) {
		struct sl_log_config cfg;
		sl_log_config_init(&cfg);
		cfg.segment_bytes = 4096;
		cfg.index_interval = 512;
		cfg.segment_ms = 0;
		cfg.prewrite = pws[p];
		cfg.prewrite_min = 4096;
		cfg.prewrite_max = 16384;

		/* Count the script's operations, and check it does what it
		 * should: roll and truncate into a sealed segment. */
		struct env e;
		struct fail_run fr;
		set_where("prewrite=%s dry run", prewrite_name(pws[p]));
		env_init(&e, &cfg);
		env_open(&e);
		uint64_t ops0 = sim_ops(e.sd);
		cr_assert(fail_script(&e, &fr), "the script fails without a fault");
		uint64_t nops = sim_ops(e.sd) - ops0;
		cr_assert_geq(fr.m.ns, 3, "the script should leave several segments");
		fail_run_free(&fr);
		env_free(&e);

		for (uint64_t n = 0; n <= nops; n++) {
			for (size_t k = 0; k < 3; k++) {
				int err = n % 2 ? ENOSPC : EIO;
				set_where("prewrite=%s fault=%s at op %" PRIu64 "/%" PRIu64 " errno=%d",
					  prewrite_name(pws[p]), fault_name(kinds[k]), n, nops, err);
				fail_at(&cfg, kinds[k], n, err);
			}
		}

		/* Faults during the recovery itself. */
		env_init(&e, &cfg);
		env_open(&e);
		cr_assert(fail_script(&e, &fr));
		uint64_t wlen;
		{
			uint64_t rng = 0x0be2;
			struct tbatch tb;
			make_batch(&rng, &fail_gen, m_end(&fr.m), 1700000300000, &tb);
			cr_assert_eq(append_one(e.log, &tb), SL_OK);
			wlen = sim_last_unsynced_write_len(e.sd);
			tbatch_free(&tb);
		}
		env_crash(&e, true, wlen / 2);
		ops0 = sim_ops(e.sd);
		env_open(&e);
		uint64_t open_ops = sim_ops(e.sd) - ops0;
		fail_run_free(&fr);
		env_free(&e);
		for (uint64_t n = 0; n <= open_ops; n++) {
			for (size_t k = 0; k < 3; k++) {
				set_where("prewrite=%s fault=%s in open at op %" PRIu64 "/%" PRIu64,
					  prewrite_name(pws[p]), fault_name(kinds[k]), n, open_ops);
				fail_in_open(&cfg, kinds[k], n, EIO);
			}
		}
	}
}

/* ---- Focused cases (each minimises a failure of the tests above) ----- */

static const struct gen_opts small_gen = {
	.min_rec = 3, .max_rec = 3, .max_key = 8, .max_value = 250, .allow_zstd = false,
};

/* Appends n batches from offset 0, one per call, and flushes. */
static struct tbatch *append_n(struct env *e, size_t n, uint64_t seed)
{
	struct tbatch *tbs = xmalloc(n * sizeof(*tbs));
	int64_t base = 0;
	for (size_t i = 0; i < n; i++) {
		make_batch(&seed, &small_gen, base, 1700000000000 + (int64_t)i, &tbs[i]);
		check(append_one(e->log, &tbs[i]) == SL_OK, "append %zu", i);
		base = tbs[i].last + 1;
	}
	check(sl_log_flush(e->log) == SL_OK, "flush");
	return tbs;
}

static void free_n(struct tbatch *tbs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tbatch_free(&tbs[i]);
	free(tbs);
}

static void small_config(struct sl_log_config *cfg)
{
	sl_log_config_init(cfg);
	cfg->segment_bytes = 4096;
	cfg->index_interval = 512;
	cfg->segment_ms = 0;
	cfg->prewrite = SL_PREWRITE_NONE;
}

/* A truncation into a sealed segment deletes the later segments and cuts
 * that one. Whichever step a crash interrupts, the log that reopens is a
 * prefix of the old one that is at least as long as the truncated log:
 * never the cut segment followed by later segments that should be gone. */
Test(crash, truncate_into_sealed_segment_is_a_prefix_at_every_crash_point)
{
	struct sl_log_config cfg;
	small_config(&cfg);
	const size_t nb = 30;
	for (uint64_t n = 0;; n++) {
		struct env e;
		set_where("crash at op %" PRIu64 " of the truncation", n);
		env_init(&e, &cfg);
		env_open(&e);
		struct tbatch *tbs = append_n(&e, nb, 0x7c);
		cr_assert_geq(sl_log_segment_count(e.log), 4);
		/* The middle of the second segment. */
		size_t cut = 0;
		for (uint64_t fill = 0; fill + tbs[cut].len <= 4096; cut++)
			fill += tbs[cut].len;
		cut += 2;
		uint64_t ops0 = sim_ops(e.sd);
		sim_crash_after(e.sd, (int64_t)n);
		int rv = sl_log_truncate(e.log, tbs[cut].base);
		bool finished = rv == SL_OK && sim_ops(e.sd) - ops0 <= n;
		env_crash(&e, false, 0);
		env_open(&e);
		struct readback rb;
		read_all(e.log, 1u << 20, &rb);
		check(rb.n >= cut && rb.n <= nb, "the log holds %zu batches; expected %zu..%zu", rb.n,
		      cut, nb);
		for (size_t i = 0; i < rb.n; i++)
			check(rb_batch_len(&rb, i) == tbs[i].len &&
				      memcmp(rb.buf + rb.pos[i], tbs[i].bytes, tbs[i].len) == 0,
			      "batch %zu of the reopened log is batch base %" PRId64
			      " of the old one (a hole: later segments came back)",
			      i, tbs[i].base);
		if (finished)
			check(rb.n == cut, "a finished truncation did not last");
		readback_free(&rb);
		free_n(tbs, nb);
		env_free(&e);
		if (finished)
			break;
	}
}

/* A read or time lookup that hits an I/O error reports STORAGE
 * (retriable), not LOG_CORRUPT, and once the disk answers again the same
 * call works: the error must not leave the segment marked corrupt. For the
 * active segment and for a sealed one read for the first time since open. */
Test(crash, read_error_is_storage_and_does_not_stick)
{
	struct sl_log_config cfg;
	small_config(&cfg);
	const size_t nb = 14;
	for (int sealed = 0; sealed < 2; sealed++) {
		for (uint64_t n = 0;; n++) {
			struct env e;
			set_where("%s segment, read error at op %" PRIu64, sealed ? "sealed" : "active", n);
			env_init(&e, &cfg);
			env_open(&e);
			struct tbatch *tbs = append_n(&e, nb, 0x4ead);
			env_close(&e);
			env_open(&e);
			cr_assert_geq(sl_log_segment_count(e.log), 2);
			/* The last batch of the first segment, or of the log. */
			size_t i = nb - 1;
			if (sealed) {
				uint64_t fill = 0;
				for (i = 0; fill + tbs[i].len <= 4096; i++)
					fill += tbs[i].len;
				i--;
			}
			struct sl_slice s;
			uint64_t ops0 = sim_ops(e.sd);
			sim_fail_after(e.sd, (int64_t)n, EIO);
			int rv = sl_log_read(e.log, tbs[i].base, 1, &s);
			bool finished = rv == SL_OK && sim_ops(e.sd) - ops0 <= n;
			check(rv == SL_OK || rv == SL_ESTORAGE, "read failed with %s (%s), expected STORAGE",
			      sl_err_name(rv), sl_log_errmsg(e.log));
			sl_slice_release(&s);
			sim_fail_after(e.sd, -1, 0);
			rv = sl_log_read(e.log, tbs[i].base, 1, &s);
			check(rv == SL_OK, "the read after the disk recovered: %s (%s)", sl_err_name(rv),
			      sl_log_errmsg(e.log));
			check(s.len == tbs[i].len, "the read after the disk recovered: %" PRIu64 " bytes",
			      s.len);
			sl_slice_release(&s);

			/* The same for a time lookup that lands there. */
			int64_t ts = tbs[i].ts[0], want = -1, got = -2;
			for (size_t j = 0; j < nb && want < 0; j++)
				for (int32_t r = 0; r < tbs[j].nrec && want < 0; r++)
					if (tbs[j].ts[r] >= ts)
						want = tbs[j].base + r;
			env_close(&e);
			env_open(&e);
			ops0 = sim_ops(e.sd);
			sim_fail_after(e.sd, (int64_t)n, EIO);
			rv = sl_log_find_time(e.log, ts, &got);
			finished = finished && rv == SL_OK && sim_ops(e.sd) - ops0 <= n;
			check(rv == SL_OK || rv == SL_ESTORAGE,
			      "find_time failed with %s (%s), expected STORAGE", sl_err_name(rv),
			      sl_log_errmsg(e.log));
			sim_fail_after(e.sd, -1, 0);
			rv = sl_log_find_time(e.log, ts, &got);
			check(rv == SL_OK && got == want,
			      "find_time after the disk recovered: %s, %" PRId64 ", expected %" PRId64,
			      sl_err_name(rv), got, want);
			assert_log_holds(e.log, tbs, nb);
			free_n(tbs, nb);
			env_free(&e);
			if (finished)
				break;
		}
	}
}

/* A slice's next_offset is the last offset of its last batch + 1, also
 * when the batch after the slice starts after a gap and the slice ends
 * where an index entry points. */
Test(crash, read_next_offset_is_last_offset_plus_one_before_a_gap)
{
	struct sl_log_config cfg;
	small_config(&cfg);
	cfg.index_interval = 1; /* an index entry at every batch */
	struct env e;
	set_where("gap");
	env_init(&e, &cfg);
	env_open(&e);
	uint64_t rng = 0x9a9;
	struct tbatch tbs[3];
	make_batch(&rng, &small_gen, 0, 1700000000000, &tbs[0]);
	make_batch(&rng, &small_gen, tbs[0].last + 1, 1700000000000, &tbs[1]);
	make_batch(&rng, &small_gen, tbs[1].last + 1 + 5, 1700000000000, &tbs[2]);
	for (size_t i = 0; i < 3; i++)
		check(append_one(e.log, &tbs[i]) == SL_OK, "append");
	struct sl_slice s;
	/* Room for the first two batches and half of the third. */
	uint64_t max = tbs[0].len + tbs[1].len + tbs[2].len / 2;
	int rv = sl_log_read(e.log, 0, max, &s);
	check(rv == SL_OK && s.len == tbs[0].len + tbs[1].len, "read: %s, %" PRIu64 " bytes",
	      sl_err_name(rv), s.len);
	check(s.next_offset == tbs[1].last + 1, "next_offset %" PRId64 ", expected %" PRId64
	      " (the third batch starts at %" PRId64 ")", s.next_offset, tbs[1].last + 1, tbs[2].base);
	sl_slice_release(&s);
	for (size_t i = 0; i < 3; i++)
		tbatch_free(&tbs[i]);
	env_free(&e);
}

/* A sealed segment that a truncation makes active again loses its index
 * file, but that unlink is not durable until the directory is synced. If
 * the segment then grows back to its old size with a last batch of the
 * same CRC (the same records restamped: base offset and epoch are outside
 * the CRC) and the machine crashes, the stale index must not be believed:
 * the log must end after the new last batch, not the old one. */
Test(crash, stale_index_of_a_truncated_segment_is_not_believed_after_a_crash)
{
	struct sl_log_config cfg;
	small_config(&cfg);
	struct env e;
	set_where("stale index");
	env_init(&e, &cfg);
	env_open(&e);
	const size_t nb = 20;
	struct tbatch *tbs = append_n(&e, nb, 0x57a1e);
	cr_assert_geq(sl_log_segment_count(e.log), 2);
	/* The last batch of the first segment. */
	size_t k = 0;
	for (uint64_t fill = 0; fill + tbs[k].len <= 4096; k++)
		fill += tbs[k].len;
	k--;
	check(sl_log_truncate(e.log, tbs[k].base) == SL_OK, "truncate");
	/* The same batch, 7 offsets later. */
	struct tbatch again = tbs[k];
	again.bytes = xmalloc(again.len);
	memcpy(again.bytes, tbs[k].bytes, again.len);
	sl_batch_stamp(again.bytes, tbs[k].base + 7, 3);
	check(append_one(e.log, &again) == SL_OK, "append");
	check(sl_log_flush(e.log) == SL_OK, "flush");
	int64_t end = sl_log_end_offset(e.log);
	check(end == tbs[k].last + 8, "end before the crash %" PRId64, end);
	env_crash(&e, false, 0);
	env_open(&e);
	check(sl_log_end_offset(e.log) == end, "end after the crash %" PRId64 ", expected %" PRId64,
	      sl_log_end_offset(e.log), end);
	struct sl_slice s;
	int rv = sl_log_read(e.log, tbs[k].base + 7, 1, &s);
	check(rv == SL_OK && s.first_offset == tbs[k].base + 7 && s.len == again.len,
	      "read the restamped batch: %s, first %" PRId64, sl_err_name(rv), s.first_offset);
	sl_slice_release(&s);
	free(again.bytes);
	free_n(tbs, nb);
	env_free(&e);
}

/* A sealed segment whose load (index file or scan) fails on a disk error
 * keeps what was known of it: a retention pass afterwards still sees its
 * newest timestamp and keeps a recent segment, and a time lookup still
 * finds its records. */
Test(crash, failed_segment_load_keeps_its_newest_timestamp)
{
	struct sl_log_config cfg;
	small_config(&cfg);
	cfg.retention_ms = 3600 * 1000;
	const size_t nb = 14;
	for (uint64_t n = 0;; n++) {
		struct env e;
		set_where("load error at op %" PRIu64, n);
		env_init(&e, &cfg);
		env_open(&e);
		struct tbatch *tbs = append_n(&e, nb, 0x10ad);
		cr_assert_geq(sl_log_segment_count(e.log), 2);
		env_close(&e);
		env_open(&e);
		int64_t now = 1700000000000 + 60 * 1000, end = sl_log_end_offset(e.log);
		size_t deleted = 1;
		/* Learns the sealed segment's newest timestamp from its index. */
		check(sl_log_retain(e.log, end, now, &deleted) == SL_OK && deleted == 0, "retain");
		struct sl_slice s;
		uint64_t ops0 = sim_ops(e.sd);
		sim_fail_after(e.sd, (int64_t)n, EIO);
		int rv = sl_log_read(e.log, 0, 1, &s);
		bool finished = rv == SL_OK && sim_ops(e.sd) - ops0 <= n;
		check(rv == SL_OK || rv == SL_ESTORAGE, "read: %s", sl_err_name(rv));
		sl_slice_release(&s);
		sim_fail_after(e.sd, -1, 0);
		/* The first record at or after the first batch's newest one. */
		int64_t ts = tbs[0].max_ts, want = -1, got = -2;
		for (size_t j = 0; j < nb && want < 0; j++)
			for (int32_t r = 0; r < tbs[j].nrec && want < 0; r++)
				if (tbs[j].ts[r] >= ts)
					want = tbs[j].base + r;
		rv = sl_log_find_time(e.log, ts, &got);
		check(rv == SL_OK && got == want, "find_time after the error: %s, %" PRId64
		      ", expected %" PRId64, sl_err_name(rv), got, want);
		rv = sl_log_retain(e.log, end, now, &deleted);
		check(rv == SL_OK && deleted == 0,
		      "retention after the error deleted %zu segments of minute-old records: %s",
		      deleted, sl_err_name(rv));
		assert_log_holds(e.log, tbs, nb);
		free_n(tbs, nb);
		env_free(&e);
		if (finished)
			break;
	}
}

/* Retention and reset, with a crash at each of their steps: retention
 * leaves the log from some segment boundary on, every later batch kept;
 * reset leaves the old log or a prefix of it, or the new empty log. */
Test(crash, retention_and_reset_at_every_crash_point)
{
	struct sl_log_config cfg;
	small_config(&cfg);
	cfg.retention_ms = 0;
	const size_t nb = 30;
	for (int reset = 0; reset < 2; reset++) {
		for (uint64_t n = 0;; n++) {
			struct env e;
			set_where("%s, crash at op %" PRIu64, reset ? "reset" : "retention", n);
			env_init(&e, &cfg);
			env_open(&e);
			struct tbatch *tbs = append_n(&e, nb, 0x2e7a);
			size_t nsegs = sl_log_segment_count(e.log);
			cr_assert_geq(nsegs, 4);
			int64_t end = sl_log_end_offset(e.log), new_start = end + 100;
			uint64_t ops0 = sim_ops(e.sd);
			sim_crash_after(e.sd, (int64_t)n);
			int rv;
			size_t deleted = 0;
			if (reset)
				rv = sl_log_reset(e.log, new_start);
			else
				rv = sl_log_retain(e.log, end, 1800000000000, &deleted);
			bool finished = rv == SL_OK && sim_ops(e.sd) - ops0 <= n;
			if (finished && !reset)
				check(deleted == nsegs - 1, "retention deleted %zu of %zu segments", deleted,
				      nsegs);
			env_crash(&e, false, 0);
			env_open(&e);
			int64_t start = sl_log_start_offset(e.log);
			if (reset && sl_log_end_offset(e.log) == new_start) {
				check(start == new_start && sl_log_segment_count(e.log) == 1,
				      "after the reset: start %" PRId64 ", %zu segments", start,
				      sl_log_segment_count(e.log));
			} else {
				check(!(finished && reset), "a finished reset did not last");
				size_t first = 0;
				while (first < nb && tbs[first].base < start)
					first++;
				check(first < nb && tbs[first].base == start,
				      "the log starts at %" PRId64 ", not at a batch", start);
				struct readback rb;
				read_all(e.log, 1u << 20, &rb);
				if (!reset)
					check(rb.n == nb - first, "the log holds %zu batches from %" PRId64
					      ", expected %zu", rb.n, start, nb - first);
				else
					check(first == 0, "a reset cut the front of the old log");
				for (size_t i = 0; i < rb.n; i++)
					check(rb_batch_len(&rb, i) == tbs[first + i].len &&
						      memcmp(rb.buf + rb.pos[i], tbs[first + i].bytes,
							     tbs[first + i].len) == 0,
					      "batch %zu differs", first + i);
				readback_free(&rb);
				if (finished)
					check(sl_log_segment_count(e.log) == 1,
					      "a finished retention did not last");
			}
			free_n(tbs, nb);
			env_free(&e);
			if (finished)
				break;
		}
	}
}
