/* Compaction (newest record per key, tombstones, control batches, zstd, a
 * run off the writer thread, a full key map, crashes at every step, reopen)
 * and retention (by size, by age, the floor, slices that outlive their
 * segment). */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "simdisk.h"
#include "storage.h"
#include "testlib.h"

/* ---- The model: every record and batch the test appended ------------- */

#define MAX_RECS 8192
#define MAX_BATCHES 2048
#define MAX_KEYS 4096
#define MAX_SEGS 256
#define T0 1000000 /* timestamps start here */

struct mrec {
	int64_t off;
	int64_t ts;
	int key; /* -1: null key */
	bool tomb;
	bool control;
	int vlen;
};

struct mbatch {
	int64_t base, last;
	bool control;
	uint8_t *bytes;
	size_t len;
};

static struct mrec recs[MAX_RECS];
static size_t nrecs;
static struct mbatch batches[MAX_BATCHES];
static size_t nbatches;

/* What a scan of the log found: record offsets and batches, in order. */
struct seen_batch {
	int64_t base, last;
	int16_t attributes;
	bool intact; /* byte for byte the batch appended at base */
};

static int64_t seen[MAX_RECS];
static size_t nseen;
static struct seen_batch seen_b[MAX_BATCHES];
static size_t nseen_b;

static struct sl_log_config cfg;
static sim_disk *sd;
static sl_vfs *vfs;
static sl_log *lg;
static char dir[512];
static int64_t clock_ms = T0;

static int64_t fake_clock(void *arg)
{
	(void)arg;
	return clock_ms;
}

static void model_reset(void)
{
	for (size_t i = 0; i < nbatches; i++)
		free(batches[i].bytes);
	nbatches = 0;
	nrecs = 0;
}

static void setup(void)
{
	sl_log_config_init(&cfg);
	cfg.segment_bytes = 4096;
	cfg.index_interval = 256;
	cfg.segment_ms = 0;
	cfg.retention_ms = -1;
	cfg.now_ms = fake_clock;
	clock_ms = T0;
	sd = NULL;
	vfs = NULL;
	lg = NULL;
	nrecs = nbatches = 0;
}

static void teardown(void)
{
	if (lg != NULL)
		sl_log_close(lg);
	lg = NULL;
	if (sd != NULL)
		sim_free(sd);
	sd = NULL;
	model_reset();
}

TestSuite(compact, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(retention, .init = setup, .fini = teardown, .timeout = 60);

/* ---- Opening logs ------------------------------------------------------ */

static void open_log(void)
{
	char err[SL_ERRMSG_SIZE] = "";
	int rv = sl_log_open(dir, &cfg, vfs, &lg, err);
	cr_assert_eq(rv, SL_OK, "open %s: %s (%s)", dir, sl_err_name(rv), err);
}

/* A fresh simulated disk with the log at /sim/p. */
static void open_sim(void)
{
	sd = sim_new();
	vfs = sim_vfs(sd);
	cr_assert_eq(vfs->mkdir(vfs, "/sim", 0755), 0);
	snprintf(dir, sizeof(dir), "/sim/p");
	open_log();
}

/* The real file system, in a fresh temporary directory. */
static void open_posix(void)
{
	vfs = sl_vfs_posix();
	snprintf(dir, sizeof(dir), "%s/p0", tl_tmpdir());
	open_log();
}

static void reopen_log(void)
{
	cr_assert_eq(sl_log_close(lg), SL_OK);
	lg = NULL;
	open_log();
}

/* ---- Building and appending batches ---------------------------------- */

static int key_str(int key, char *buf)
{
	return sprintf(buf, "key-%05d", key);
}

/* The value of the record at off: vlen bytes derived from the offset. */
static void value_bytes(int64_t off, int vlen, uint8_t *buf)
{
	int n = snprintf((char *)buf, (size_t)vlen + 1, "v%" PRId64 ":", off);
	for (int j = n < vlen ? n : vlen; j < vlen; j++)
		buf[j] = (uint8_t)((off * 31 + j) % 251);
}

/* One record to append: key (-1 null), tombstone or a value of vlen. */
struct rspec {
	int key;
	bool tomb;
	int vlen;
	int64_t ts;
};

/* Appends one batch holding the records of spec at the log end. */
static int64_t append_specs(const struct rspec *spec, int n, int codec, bool control)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	int64_t base = sl_log_end_offset(lg);
	sl_batch_opts_init(&o);
	o.codec = codec;
	if (control)
		o.attributes |= SL_ATTR_CONTROL;
	sl_batch_builder_init(&b, &o);
	cr_assert_leq(nrecs + (size_t)n, MAX_RECS);
	cr_assert_lt(nbatches, MAX_BATCHES);
	for (int i = 0; i < n; i++) {
		char key[32];
		uint8_t val[4096];
		int kl = spec[i].key >= 0 ? key_str(spec[i].key, key) : -1;
		int vl = spec[i].tomb ? -1 : spec[i].vlen;
		cr_assert_lt(spec[i].vlen, (int)sizeof(val));
		if (!spec[i].tomb)
			value_bytes(base + i, spec[i].vlen, val);
		/* Every record carries one header naming its offset. */
		char hval[32];
		int hl = snprintf(hval, sizeof(hval), "o%" PRId64, base + i);
		struct sl_header hdr = { 1, (const uint8_t *)"o", hl, (const uint8_t *)hval };
		int rv = sl_batch_builder_add(&b, spec[i].ts, kl >= 0 ? key : NULL, kl,
					      spec[i].tomb ? NULL : val, vl, &hdr, 1);
		cr_assert_eq(rv, SL_OK, "builder add: %s", sl_err_name(rv));
		recs[nrecs++] = (struct mrec){ .off = base + i, .ts = spec[i].ts, .key = spec[i].key,
					       .tomb = spec[i].tomb, .control = control,
					       .vlen = spec[i].vlen };
	}
	const uint8_t *out;
	size_t len;
	cr_assert_eq(sl_batch_builder_finish(&b, &out, &len), SL_OK);
	uint8_t *copy = malloc(len);
	memcpy(copy, out, len);
	sl_batch_builder_free(&b);
	sl_batch_stamp(copy, base, 1);
	int rv = sl_log_append(lg, copy, len);
	cr_assert_eq(rv, SL_OK, "append at %" PRId64 ": %s (%s)", base, sl_err_name(rv),
		     sl_log_errmsg(lg));
	batches[nbatches++] = (struct mbatch){ base, base + n - 1, control, copy, len };
	return base;
}

/* Appends nb batches of per records each, keys drawn by next_key, values of
 * vlen bytes; timestamps T0 + offset. */
static void append_updates(int nb, int per, int vlen, int codec, int (*next_key)(uint64_t *),
			   uint64_t *rng)
{
	struct rspec spec[64];
	cr_assert_leq(per, 64);
	for (int i = 0; i < nb; i++) {
		int64_t base = sl_log_end_offset(lg);
		for (int j = 0; j < per; j++)
			spec[j] = (struct rspec){ next_key(rng), false, vlen, T0 + base + j };
		append_specs(spec, per, codec, false);
	}
}

static int few_keys(uint64_t *rng)
{
	return (int)(tl_rand(rng) % 8);
}

static int twenty_keys(uint64_t *rng)
{
	return (int)(tl_rand(rng) % 20);
}

static const struct mrec *model_rec(int64_t off)
{
	size_t lo = 0, hi = nrecs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (recs[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < nrecs && recs[lo].off == off ? &recs[lo] : NULL;
}

static const struct mbatch *model_batch(int64_t base)
{
	for (size_t i = 0; i < nbatches; i++)
		if (batches[i].base == base)
			return &batches[i];
	return NULL;
}

/* ---- Segment files ------------------------------------------------------ */

struct base_list {
	int64_t v[MAX_SEGS];
	size_t n;
};

static int collect_base(void *arg, const char *name)
{
	struct base_list *bl = arg;
	size_t len = strlen(name);
	if (len != 24 || strcmp(name + 20, ".log") != 0)
		return 0;
	int64_t v = 0;
	for (int i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		v = v * 10 + (name[i] - '0');
	}
	if (bl->n < MAX_SEGS)
		bl->v[bl->n++] = v;
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Base offsets of the segment files in the log directory, sorted. */
static void seg_bases(struct base_list *bl)
{
	bl->n = 0;
	cr_assert_eq(vfs->list_dir(vfs, dir, collect_base, bl), 0);
	qsort(bl->v, bl->n, sizeof(bl->v[0]), cmp_i64);
}

static int count_cleaned(void *arg, const char *name)
{
	if (strstr(name, ".cleaned") != NULL)
		(*(int *)arg)++;
	return 0;
}

static int cleaned_files(void)
{
	int n = 0;
	cr_assert_eq(vfs->list_dir(vfs, dir, count_cleaned, &n), 0);
	return n;
}

/* ---- Reading the log back ------------------------------------------- */

/* Checks one stored record against what was appended at its offset. */
static void check_record(const struct sl_record *rec, bool control)
{
	const struct mrec *m = model_rec(rec->offset);
	cr_assert_not_null(m, "offset %" PRId64 " was never appended", rec->offset);
	cr_assert_eq(m->control, control, "offset %" PRId64 ": control flag changed", rec->offset);
	cr_assert_eq(rec->timestamp, m->ts, "offset %" PRId64 ": timestamp %" PRId64 ", want %" PRId64,
		     rec->offset, rec->timestamp, m->ts);
	if (m->key < 0) {
		cr_assert_eq(rec->key_len, -1, "offset %" PRId64 ": key should be null", rec->offset);
	} else {
		char key[32];
		int kl = key_str(m->key, key);
		cr_assert_eq(rec->key_len, kl, "offset %" PRId64 ": key length", rec->offset);
		cr_assert_eq(memcmp(rec->key, key, (size_t)kl), 0, "offset %" PRId64 ": key",
			     rec->offset);
	}
	struct sl_header hdr;
	size_t hpos = 0;
	char hval[32];
	int hl = snprintf(hval, sizeof(hval), "o%" PRId64, m->off);
	cr_assert_eq(rec->header_count, 1, "offset %" PRId64 ": headers lost", rec->offset);
	cr_assert(sl_record_header_next(rec, &hpos, &hdr));
	cr_assert(hdr.key_len == 1 && hdr.key[0] == 'o' && hdr.value_len == hl &&
		  memcmp(hdr.value, hval, (size_t)hl) == 0, "offset %" PRId64 ": header changed",
		  rec->offset);
	if (m->tomb) {
		cr_assert_eq(rec->value_len, -1, "offset %" PRId64 ": should be a tombstone",
			     rec->offset);
	} else {
		uint8_t val[4096];
		value_bytes(m->off, m->vlen, val);
		cr_assert_eq(rec->value_len, m->vlen, "offset %" PRId64 ": value length",
			     rec->offset);
		cr_assert_eq(memcmp(rec->value, val, (size_t)m->vlen), 0,
			     "offset %" PRId64 ": value bytes", rec->offset);
	}
}

/* Reads the whole log, slice by slice, from its start: every batch valid,
 * offsets increasing, every record one that was appended. Fills seen[] and
 * seen_b[]. */
static void scan_log(uint64_t max_bytes)
{
	nseen = nseen_b = 0;
	int64_t start = sl_log_start_offset(lg), end = sl_log_end_offset(lg);
	int64_t off = start, prev = INT64_MIN;
	while (off < end) {
		struct sl_slice s;
		int rv = sl_log_read(lg, off, max_bytes, &s);
		cr_assert_eq(rv, SL_OK, "read %" PRId64 ": %s (%s)", off, sl_err_name(rv),
			     sl_log_errmsg(lg));
		if (s.len == 0) {
			/* Only a gap up to the end offset may be empty. */
			cr_assert_eq(s.next_offset, end, "empty read at %" PRId64 " before end %" PRId64,
				     off, end);
			sl_slice_release(&s);
			break;
		}
		uint8_t *buf = malloc(s.len);
		cr_assert_eq(sl_slice_read(&s, buf), SL_OK);
		size_t pos = 0;
		int64_t last = -1;
		while (pos < s.len) {
			struct sl_batch_header h;
			rv = sl_batch_validate(buf + pos, s.len - pos, 1u << 24, &h);
			cr_assert_eq(rv, SL_OK, "batch at %" PRId64 ": %s", h.base_offset,
				     sl_err_name(rv));
			cr_assert_gt(h.base_offset, prev, "batch %" PRId64 " after %" PRId64,
				     h.base_offset, prev);
			if (pos == 0) {
				cr_assert_eq(s.first_offset, h.base_offset);
				cr_assert_geq(sl_batch_last_offset(&h), off,
					      "read %" PRId64 " starts with batch %" PRId64 "..%" PRId64,
					      off, h.base_offset, sl_batch_last_offset(&h));
			}
			size_t blen = sl_batch_total_size(&h);
			const struct mbatch *mb = model_batch(h.base_offset);
			cr_assert_not_null(mb, "no batch was appended at %" PRId64, h.base_offset);
			cr_assert_eq(sl_batch_last_offset(&h), mb->last,
				     "batch %" PRId64 ": last offset %" PRId64 ", appended %" PRId64,
				     h.base_offset, sl_batch_last_offset(&h), mb->last);
			cr_assert_lt(nseen_b, MAX_BATCHES);
			seen_b[nseen_b++] = (struct seen_batch){
				.base = h.base_offset,
				.last = sl_batch_last_offset(&h),
				.attributes = h.attributes,
				.intact = blen == mb->len && memcmp(buf + pos, mb->bytes, blen) == 0,
			};
			struct sl_record_iter it;
			struct sl_record rec;
			bool control = (h.attributes & SL_ATTR_CONTROL) != 0;
			cr_assert_eq(sl_record_iter_init(&it, buf + pos, blen), SL_OK);
			int64_t prev_rec = INT64_MIN;
			while (sl_record_iter_next(&it, &rec)) {
				cr_assert_gt(rec.offset, prev_rec);
				prev_rec = rec.offset;
				check_record(&rec, control);
				cr_assert_lt(nseen, MAX_RECS);
				seen[nseen++] = rec.offset;
			}
			cr_assert_eq(it.err, SL_OK);
			sl_record_iter_free(&it);
			prev = last = sl_batch_last_offset(&h);
			pos += blen;
		}
		/* Nothing may be skipped: the next read starts past this
		 * slice, and (checked by the callers' survivor lists) no
		 * batch is left out. */
		cr_assert_gt(s.next_offset, last, "slice at %" PRId64 " ends at %" PRId64
			     " but next_offset is %" PRId64, off, last, s.next_offset);
		off = s.next_offset;
		sl_slice_release(&s);
		free(buf);
	}
}

/* Reads from every offset of the log (and just outside it): each read
 * starts with the first stored batch whose last offset is >= the offset
 * asked for, as scan_log() found them. */
static void check_every_offset(uint64_t max_bytes)
{
	int64_t start = sl_log_start_offset(lg), end = sl_log_end_offset(lg);
	struct sl_slice s;
	size_t b = 0;
	for (int64_t off = start; off <= end; off++) {
		while (b < nseen_b && seen_b[b].last < off)
			b++;
		int rv = sl_log_read(lg, off, max_bytes, &s);
		cr_assert_eq(rv, SL_OK, "read %" PRId64 ": %s (%s)", off, sl_err_name(rv),
			     sl_log_errmsg(lg));
		if (b == nseen_b) {
			cr_assert_eq(s.len, 0, "read %" PRId64 " past the last batch gave %" PRIu64
				     " bytes", off, s.len);
		} else {
			cr_assert_gt(s.len, 0, "read %" PRId64 " gave nothing", off);
			cr_assert_eq(s.first_offset, seen_b[b].base,
				     "read %" PRId64 " starts at batch %" PRId64 ", want %" PRId64,
				     off, s.first_offset, seen_b[b].base);
		}
		sl_slice_release(&s);
	}
	if (start > 0)
		cr_assert_eq(sl_log_read(lg, start - 1, max_bytes, &s), SL_EOFFSET_OUT_OF_RANGE);
	cr_assert_eq(sl_log_read(lg, end + 1, max_bytes, &s), SL_EOFFSET_OUT_OF_RANGE);
}

/* ---- What compaction must leave -------------------------------------- */

static int64_t expected[MAX_RECS];
static size_t nexpected;

/* The records a compaction of [.., limit) must leave, horizon being
 * now - delete_retention_ms: above limit everything, control and null-key
 * records always, else the newest per key unless it is a tombstone older
 * than the horizon. */
static void expect_compacted(int64_t limit, int64_t horizon)
{
	static int64_t newest[MAX_KEYS];
	for (int k = 0; k < MAX_KEYS; k++)
		newest[k] = -1;
	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].off < limit && !recs[i].control && recs[i].key >= 0)
			newest[recs[i].key] = recs[i].off;
	nexpected = 0;
	for (size_t i = 0; i < nrecs; i++) {
		const struct mrec *m = &recs[i];
		bool keep = m->off >= limit || m->control || m->key < 0 ||
			    (newest[m->key] == m->off && !(m->tomb && m->ts < horizon));
		if (keep)
			expected[nexpected++] = m->off;
	}
}

/* What was read equals expected[] exactly. */
static void assert_seen_is_expected(const char *what)
{
	size_t i = 0;
	while (i < nseen && i < nexpected && seen[i] == expected[i])
		i++;
	if (i == nseen && i == nexpected)
		return;
	if (i < nseen && (i == nexpected || seen[i] < expected[i]))
		cr_assert_fail("%s: offset %" PRId64 " is still there (%zu records, want %zu)", what,
			       seen[i], nseen, nexpected);
	cr_assert_fail("%s: offset %" PRId64 " is missing (%zu records, want %zu)", what,
		       expected[i], nseen, nexpected);
}

/* Every record of expected[] was read (more may be there). */
static void assert_seen_covers_expected(const char *what)
{
	size_t j = 0;
	for (size_t i = 0; i < nexpected; i++) {
		while (j < nseen && seen[j] < expected[i])
			j++;
		cr_assert(j < nseen && seen[j] == expected[i], "%s: offset %" PRId64 " was lost",
			  what, expected[i]);
	}
}

/* The "latest value per key" view (tombstone = absent) of what was read
 * equals the one of everything appended. */
static void assert_latest_view(const char *what)
{
	static int64_t want[MAX_KEYS], got[MAX_KEYS];
	for (int k = 0; k < MAX_KEYS; k++)
		want[k] = got[k] = -1;
	for (size_t i = 0; i < nrecs; i++)
		if (!recs[i].control && recs[i].key >= 0)
			want[recs[i].key] = recs[i].tomb ? -1 : recs[i].off;
	for (size_t i = 0; i < nseen; i++) {
		const struct mrec *m = model_rec(seen[i]);
		if (!m->control && m->key >= 0)
			got[m->key] = m->tomb ? -1 : m->off;
	}
	for (int k = 0; k < MAX_KEYS; k++)
		cr_assert_eq(got[k], want[k],
			     "%s: key %d reads as offset %" PRId64 ", want %" PRId64 " (-1: absent)",
			     what, k, got[k], want[k]);
}

/* Batches at or above from are byte for byte what was appended. */
static void assert_intact_from(int64_t from)
{
	for (size_t i = 0; i < nseen_b; i++)
		if (seen_b[i].base >= from)
			cr_assert(seen_b[i].intact, "batch %" PRId64 " (>= %" PRId64 ") was rewritten",
				  seen_b[i].base, from);
}

/* The three steps; returns finish's result. */
static int compact(int64_t floor, int64_t now, struct sl_compaction_stats *stats)
{
	sl_compaction *c = NULL;
	int rv = sl_log_compact_begin(lg, floor, now, &c);
	cr_assert_eq(rv, SL_OK, "begin: %s", sl_err_name(rv));
	if (c == NULL) {
		memset(stats, 0, sizeof(*stats));
		return SL_OK;
	}
	rv = sl_compaction_run(c);
	cr_assert_eq(rv, SL_OK, "run: %s", sl_err_name(rv));
	rv = sl_log_compact_finish(lg, c, stats);
	cr_assert_eq(rv, SL_OK, "finish: %s (%s)", sl_err_name(rv), sl_log_errmsg(lg));
	return rv;
}

/* The first stored record with a timestamp >= ts (control batches aside),
 * from seen[]; -1 if none. */
static int64_t expected_time_offset(int64_t ts)
{
	for (size_t i = 0; i < nseen; i++) {
		const struct mrec *m = model_rec(seen[i]);
		if (!m->control && m->ts >= ts)
			return m->off;
	}
	return -1;
}

static void check_find_time(int64_t from, int64_t to, int64_t step)
{
	for (int64_t ts = from; ts <= to; ts += step) {
		int64_t got;
		int rv = sl_log_find_time(lg, ts, &got);
		cr_assert_eq(rv, SL_OK, "find_time %" PRId64 ": %s (%s)", ts, sl_err_name(rv),
			     sl_log_errmsg(lg));
		int64_t want = expected_time_offset(ts);
		cr_assert_eq(got, want, "find_time %" PRId64 ": got %" PRId64 ", want %" PRId64, ts,
			     got, want);
	}
}

/* Open descriptors of this process. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	cr_assert_not_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* ---- Compaction ------------------------------------------------------- */

Test(compact, keeps_newest_record_per_key)
{
	uint64_t rng = 42;
	open_sim();
	append_updates(220, 6, 40, SL_CODEC_NONE, few_keys, &rng);
	struct base_list bl;
	seg_bases(&bl);
	cr_assert_gt(bl.n, 12, "only %zu segments", bl.n);
	/* A floor inside a segment: that segment and the later ones stay. */
	size_t k = bl.n / 2;
	int64_t limit = bl.v[k], floor = limit + 3;
	cr_assert_lt(floor, bl.v[k + 1]);
	int64_t end = sl_log_end_offset(lg);
	uint64_t size_before = sl_log_size(lg);
	scan_log(1 << 20);
	size_t records_before = nseen;

	struct sl_compaction_stats st;
	compact(floor, clock_ms, &st);
	cr_assert_eq(sl_log_end_offset(lg), end);
	cr_assert_eq(sl_log_start_offset(lg), 0);
	cr_assert_eq(cleaned_files(), 0);

	scan_log(1 << 20);
	expect_compacted(limit, clock_ms - cfg.delete_retention_ms);
	assert_seen_is_expected("after compaction");
	assert_intact_from(limit);
	assert_latest_view("after compaction");
	/* Offsets keep their gaps: at most 8 records left below the limit. */
	size_t below = 0;
	for (size_t i = 0; i < nseen && seen[i] < limit; i++)
		below++;
	cr_assert_leq(below, 8);
	cr_assert_eq(st.records_removed, records_before - nseen, "stats say %" PRIu64
		     " removed, %zu were", st.records_removed, records_before - nseen);
	cr_assert_gt(st.segments_rewritten, 0);
	cr_assert_lt(st.bytes_after, st.bytes_before);
	cr_assert_eq(sl_log_size(lg), size_before - (st.bytes_before - st.bytes_after));

	check_every_offset(1);
	check_every_offset(1 << 20);
	/* Small slices give the same batches. */
	size_t nb = nseen_b;
	scan_log(1);
	cr_assert_eq(nseen_b, nb);
	assert_seen_is_expected("read batch by batch");

	/* A second run over the same range finds nothing more to remove. */
	compact(floor, clock_ms, &st);
	cr_assert_eq(st.records_removed, 0);
	scan_log(1 << 20);
	assert_seen_is_expected("after a second run");
}

Test(compact, nothing_to_compact_below_the_first_segment)
{
	uint64_t rng = 1;
	open_sim();
	append_updates(30, 6, 40, SL_CODEC_NONE, few_keys, &rng);
	struct base_list bl;
	seg_bases(&bl);
	cr_assert_gt(bl.n, 2);
	static int not_null;
	sl_compaction *c = (sl_compaction *)&not_null;
	cr_assert_eq(sl_log_compact_begin(lg, bl.v[1] - 1, clock_ms, &c), SL_OK);
	cr_assert_null(c, "the segment holding the floor was picked");
}

Test(compact, drops_tombstones_after_delay)
{
	cfg.delete_retention_ms = 10000;
	clock_ms = T0 + 100000;
	int64_t horizon = clock_ms - cfg.delete_retention_ms;
	open_sim();
	uint64_t rng = 7;
	struct rspec spec[8];
	/* Values for keys 0..19 over several segments. */
	append_updates(40, 6, 40, SL_CODEC_NONE, twenty_keys, &rng);
	/* 0..4: old tombstones, the newest record of their key. */
	for (int k = 0; k < 5; k++)
		spec[k] = (struct rspec){ k, true, 0, T0 + 50000 + k };
	append_specs(spec, 5, SL_CODEC_NONE, false);
	/* 5..9: old tombstones, then a value again. */
	for (int k = 5; k < 10; k++)
		spec[k - 5] = (struct rspec){ k, true, 0, T0 + 50100 + k };
	append_specs(spec, 5, SL_CODEC_NONE, false);
	for (int k = 5; k < 10; k++)
		spec[k - 5] = (struct rspec){ k, false, 30, T0 + 50200 + k };
	append_specs(spec, 5, SL_CODEC_NONE, false);
	/* 10..14: recent tombstones; 15: a tombstone exactly at the horizon. */
	for (int k = 10; k < 15; k++)
		spec[k - 10] = (struct rspec){ k, true, 0, horizon + 5000 + k };
	append_specs(spec, 5, SL_CODEC_NONE, false);
	spec[0] = (struct rspec){ 15, true, 0, horizon };
	int64_t last_tomb = append_specs(spec, 1, SL_CODEC_NONE, false);
	/* Filler on other keys, so the tombstones end up in sealed segments. */
	for (int i = 0; i < 40; i++) {
		for (int j = 0; j < 6; j++)
			spec[j] = (struct rspec){ 100 + j, false, 40, horizon + 6000 + i };
		append_specs(spec, 6, SL_CODEC_NONE, false);
	}
	struct base_list bl;
	seg_bases(&bl);
	int64_t limit = bl.v[bl.n - 1];
	cr_assert_lt(last_tomb, limit, "the tombstones must be in sealed segments");

	struct sl_compaction_stats st;
	compact(INT64_MAX, clock_ms, &st);
	scan_log(1 << 20);
	expect_compacted(limit, horizon);
	assert_seen_is_expected("tombstones, first run");
	assert_latest_view("tombstones, first run");
	int count[MAX_KEYS] = { 0 }, tombs[MAX_KEYS] = { 0 };
	for (size_t i = 0; i < nseen; i++) {
		const struct mrec *m = model_rec(seen[i]);
		count[m->key]++;
		tombs[m->key] += m->tomb;
	}
	for (int k = 0; k < 5; k++)
		cr_assert_eq(count[k], 0, "key %d: %d records left after an old tombstone", k,
			     count[k]);
	for (int k = 5; k < 10; k++)
		cr_assert(count[k] == 1 && tombs[k] == 0, "key %d: %d records, %d tombstones", k,
			  count[k], tombs[k]);
	for (int k = 10; k < 16; k++)
		cr_assert(count[k] == 1 && tombs[k] == 1, "key %d: %d records, %d tombstones", k,
			  count[k], tombs[k]);
	check_every_offset(1 << 20);

	/* Later, the recent tombstones have waited long enough too. */
	clock_ms += 10000;
	compact(INT64_MAX, clock_ms, &st);
	cr_assert_eq(st.records_removed, 6);
	scan_log(1 << 20);
	expect_compacted(limit, clock_ms - cfg.delete_retention_ms);
	assert_seen_is_expected("tombstones, second run");
	assert_latest_view("tombstones, second run");
}

Test(compact, keeps_control_batches_and_null_keys)
{
	open_sim();
	uint64_t rng = 9;
	struct rspec spec[8];
	for (int i = 0; i < 150; i++) {
		int64_t ts = T0 + i;
		if (i % 7 == 3) {
			/* A control record whose key bytes equal a data key. */
			spec[0] = (struct rspec){ 1, false, 6, ts };
			append_specs(spec, 1, SL_CODEC_NONE, true);
			continue;
		}
		/* Keyed records mixed with null-key ones in one batch; some
		 * batches have null keys only. */
		for (int j = 0; j < 5; j++) {
			bool null_key = i % 11 == 0 || j == 2;
			spec[j] = (struct rspec){ null_key ? -1 : few_keys(&rng), false, 30, ts };
		}
		append_specs(spec, 5, SL_CODEC_NONE, false);
	}
	/* Key 1's newest record sits before the last control batches. */
	spec[0] = (struct rspec){ 1, false, 30, T0 + 500 };
	append_specs(spec, 1, SL_CODEC_NONE, false);
	spec[0] = (struct rspec){ 1, false, 6, T0 + 501 };
	append_specs(spec, 1, SL_CODEC_NONE, true);
	append_updates(20, 5, 40, SL_CODEC_NONE, few_keys, &rng); /* keys 0..7 again */
	struct base_list bl;
	seg_bases(&bl);
	int64_t limit = bl.v[bl.n - 1];

	struct sl_compaction_stats st;
	compact(INT64_MAX, clock_ms, &st);
	scan_log(1 << 20);
	expect_compacted(limit, clock_ms - cfg.delete_retention_ms);
	assert_seen_is_expected("control and null keys");
	assert_latest_view("control and null keys");
	size_t controls = 0;
	for (size_t i = 0; i < nseen_b; i++) {
		if (seen_b[i].attributes & SL_ATTR_CONTROL) {
			controls++;
			cr_assert(seen_b[i].intact, "control batch %" PRId64 " was rewritten",
				  seen_b[i].base);
		}
	}
	size_t want_controls = 0;
	for (size_t i = 0; i < nbatches; i++)
		want_controls += batches[i].control;
	cr_assert_eq(controls, want_controls);
	check_every_offset(1 << 20);
}

Test(compact, compacts_zstd_batches)
{
	uint64_t rng = 11;
	open_sim();
	append_updates(150, 8, 60, SL_CODEC_ZSTD, few_keys, &rng);
	struct base_list bl;
	seg_bases(&bl);
	cr_assert_gt(bl.n, 4);
	int64_t limit = bl.v[bl.n - 1];
	struct sl_compaction_stats st;
	compact(INT64_MAX, clock_ms, &st);
	cr_assert_gt(st.records_removed, 0);
	scan_log(1 << 20);
	expect_compacted(limit, clock_ms - cfg.delete_retention_ms);
	assert_seen_is_expected("zstd");
	assert_latest_view("zstd");
	size_t rewritten = 0;
	for (size_t i = 0; i < nseen_b; i++) {
		cr_assert_eq(seen_b[i].attributes & SL_ATTR_CODEC_MASK, SL_CODEC_ZSTD,
			     "batch %" PRId64 " lost its compression", seen_b[i].base);
		rewritten += !seen_b[i].intact;
	}
	cr_assert_gt(rewritten, 0, "no batch was rewritten");
	check_every_offset(1 << 20);
	reopen_log();
	scan_log(1 << 20);
	assert_seen_is_expected("zstd, reopened");
}

struct run_arg {
	sl_compaction *c;
	int rv;
	volatile int done;
};

static void *run_thread(void *p)
{
	struct run_arg *a = p;
	a->rv = sl_compaction_run(a->c);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

Test(compact, runs_off_the_writer_thread)
{
	uint64_t rng = 13;
	open_posix();
	append_updates(400, 6, 60, SL_CODEC_NONE, few_keys, &rng);
	cr_assert_eq(sl_log_flush(lg), SL_OK);
	struct base_list bl;
	seg_bases(&bl);
	int64_t limit = bl.v[bl.n - 1];

	struct run_arg a = { .rv = -1 };
	cr_assert_eq(sl_log_compact_begin(lg, INT64_MAX, clock_ms, &a.c), SL_OK);
	cr_assert_not_null(a.c);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, run_thread, &a), 0);
	/* The writer goes on: appends (rolling segments), flushes, reads. */
	for (int i = 0; i < 300; i++) {
		append_updates(1, 6, 60, SL_CODEC_NONE, few_keys, &rng);
		if (i % 10 == 0)
			cr_assert_eq(sl_log_flush(lg), SL_OK);
		if (i % 25 == 0) {
			struct sl_slice s;
			cr_assert_eq(sl_log_read(lg, 0, 1 << 16, &s), SL_OK);
			sl_slice_release(&s);
		}
	}
	cr_assert_eq(sl_log_flush(lg), SL_OK);
	pthread_join(th, NULL);
	cr_assert_eq(a.rv, SL_OK, "run: %s", sl_err_name(a.rv));
	struct sl_compaction_stats st;
	int rv = sl_log_compact_finish(lg, a.c, &st);
	cr_assert_eq(rv, SL_OK, "finish: %s (%s)", sl_err_name(rv), sl_log_errmsg(lg));
	cr_assert_gt(st.segments_rewritten, 0);
	cr_assert_eq(sl_log_end_offset(lg), recs[nrecs - 1].off + 1);
	cr_assert_eq(sl_log_durable_offset(lg), recs[nrecs - 1].off + 1);

	scan_log(1 << 20);
	expect_compacted(limit, clock_ms - cfg.delete_retention_ms);
	assert_seen_is_expected("after a concurrent run");
	assert_intact_from(limit);
	cr_assert_eq(cleaned_files(), 0);
	reopen_log();
	scan_log(1 << 20);
	assert_seen_is_expected("after a concurrent run, reopened");
	assert_intact_from(limit);
}

/* Keys drawn from 1500: more than a tiny map holds. */
static int many_keys(uint64_t *rng)
{
	return (int)(tl_rand(rng) % 1500);
}

Test(compact, map_full_still_correct)
{
	uint64_t rng = 17;
	cfg.compact_map_bytes = 1; /* the smallest map there is */
	open_sim();
	append_updates(250, 20, 8, SL_CODEC_NONE, many_keys, &rng);
	cr_assert_eq(sl_log_flush(lg), SL_OK);
	struct base_list bl;
	seg_bases(&bl);
	int64_t limit = bl.v[bl.n - 1];
	int64_t horizon = clock_ms - cfg.delete_retention_ms;
	expect_compacted(limit, horizon);
	scan_log(1 << 20);
	size_t before = nseen;
	cr_assert_gt(before - nexpected, 1000, "the workload has too few duplicates");

	struct sl_compaction_stats st;
	compact(INT64_MAX, clock_ms, &st);
	scan_log(1 << 20);
	cr_assert_eq(st.records_removed, before - nseen);
	cr_assert_gt(st.records_removed, 0, "a run with a full map removed nothing");
	cr_assert_lt(st.records_removed, before - nexpected,
		     "the map was expected to fill, yet the run completed");
	assert_latest_view("full map, first run");
	assert_seen_covers_expected("full map, first run");

	/* Later runs go on from where the map filled. */
	int runs = 1;
	while (nseen > nexpected && runs < 12) {
		size_t prev = nseen;
		compact(INT64_MAX, clock_ms, &st);
		runs++;
		scan_log(1 << 20);
		assert_latest_view("full map, later run");
		assert_seen_covers_expected("full map, later run");
		cr_assert_eq(st.records_removed, prev - nseen);
		cr_assert_gt(st.records_removed, 0,
			     "run %d made no progress: %zu records left, %zu once fully compacted",
			     runs, nseen, nexpected);
	}
	assert_seen_is_expected("full map, after repeated runs");
}

/* The crash test's log: updates, tombstones (old and recent), control
 * batches and null keys over about ten sealed segments. */
static void build_crash_log(void)
{
	uint64_t rng = 23;
	struct rspec spec[6];
	/* A small key map: it is allocated and cleared on every run. */
	cfg.compact_map_bytes = 64 << 10;
	model_reset();
	open_sim();
	for (int i = 0; i < 130; i++) {
		int64_t base = sl_log_end_offset(lg);
		if (i % 13 == 5) {
			spec[0] = (struct rspec){ 2, false, 6, T0 + base };
			append_specs(spec, 1, SL_CODEC_NONE, true);
			continue;
		}
		for (int j = 0; j < 5; j++) {
			int key = (int)(tl_rand(&rng) % 10);
			bool tomb = tl_rand(&rng) % 6 == 0;
			/* Half the tombstones recent: kept; the rest dropped. */
			int64_t ts = tomb && key % 2 ? clock_ms : T0 + base + j;
			spec[j] = (struct rspec){ j == 4 ? -1 : key, tomb && j != 4, 40, ts };
		}
		append_specs(spec, 5, i % 3 == 0 ? SL_CODEC_ZSTD : SL_CODEC_NONE, false);
	}
	cr_assert_eq(sl_log_flush(lg), SL_OK);
}

Test(compact, survives_crash_between_every_step)
{
	clock_ms = T0 + 100000;
	cfg.delete_retention_ms = 1000;

	/* Count the operations of a whole compaction. */
	build_crash_log();
	struct base_list bl;
	seg_bases(&bl);
	cr_assert_gt(bl.n, 8, "only %zu segments", bl.n);
	int64_t limit = bl.v[bl.n - 1];
	uint64_t ops0 = sim_ops(sd);
	struct sl_compaction_stats st;
	compact(INT64_MAX, clock_ms, &st);
	int64_t count = (int64_t)(sim_ops(sd) - ops0);
	cr_assert_gt(st.segments_rewritten, 2);
	sl_log_close(lg);
	lg = NULL;
	sim_free(sd);
	sd = NULL;
	expect_compacted(limit, clock_ms - cfg.delete_retention_ms);
	size_t nfull = nexpected;
	static int64_t full[MAX_RECS];
	memcpy(full, expected, nfull * sizeof(full[0]));

	size_t was_compacted = 0, was_not = 0;
	for (int64_t k = 0; k <= count; k++) {
		build_crash_log();
		sim_crash_after(sd, k);
		sl_compaction *c = NULL;
		if (sl_log_compact_begin(lg, INT64_MAX, clock_ms, &c) == SL_OK && c != NULL) {
			sl_compaction_run(c);
			sl_log_compact_finish(lg, c, NULL);
		}
		sl_log_close(lg); /* the disk is dead: only frees */
		lg = NULL;
		sim_crash(sd);

		char err[SL_ERRMSG_SIZE] = "";
		int rv = sl_log_open(dir, &cfg, vfs, &lg, err);
		cr_assert_eq(rv, SL_OK, "crash after %" PRId64 " of %" PRId64 " ops: open: %s (%s)",
			     k, count, sl_err_name(rv), err);
		cr_assert_eq(sl_log_end_offset(lg), recs[nrecs - 1].off + 1,
			     "crash after %" PRId64 ": end offset %" PRId64, k, sl_log_end_offset(lg));
		cr_assert_eq(cleaned_files(), 0, "crash after %" PRId64 ": leftovers", k);
		scan_log(1 << 20);
		assert_latest_view("after a crash");
		nexpected = nfull;
		memcpy(expected, full, nfull * sizeof(full[0]));
		assert_seen_covers_expected("after a crash");
		check_every_offset(1 << 20);
		if (nseen == nfull)
			was_compacted++;
		else
			was_not++;

		/* And the recovered log compacts to the same result. */
		compact(INT64_MAX, clock_ms, &st);
		scan_log(1 << 20);
		assert_seen_is_expected("compacted after a crash");
		sl_log_close(lg);
		lg = NULL;
		sim_free(sd);
		sd = NULL;
	}
	/* Both outcomes were met: the crash points span the swap. */
	cr_assert_gt(was_compacted, 0);
	cr_assert_gt(was_not, 0);
}

Test(compact, disk_errors_at_every_step_leave_the_log_whole)
{
	clock_ms = T0 + 100000;
	cfg.delete_retention_ms = 1000;
	build_crash_log();
	struct base_list bl;
	seg_bases(&bl);
	int64_t limit = bl.v[bl.n - 1];
	uint64_t ops0 = sim_ops(sd);
	struct sl_compaction_stats st;
	compact(INT64_MAX, clock_ms, &st);
	int64_t count = (int64_t)(sim_ops(sd) - ops0);
	sl_log_close(lg);
	lg = NULL;
	sim_free(sd);
	sd = NULL;
	expect_compacted(limit, clock_ms - cfg.delete_retention_ms);
	size_t nfull = nexpected;
	static int64_t full[MAX_RECS];
	memcpy(full, expected, nfull * sizeof(full[0]));

	/* The disk fails from operation k on, then heals; no crash. */
	for (int64_t k = 0; k < count; k++) {
		build_crash_log();
		sim_fail_after(sd, k, EIO);
		sl_compaction *c = NULL;
		int rv = sl_log_compact_begin(lg, INT64_MAX, clock_ms, &c);
		cr_assert_eq(rv, SL_OK);
		cr_assert_not_null(c);
		int run_rv = sl_compaction_run(c);
		rv = sl_log_compact_finish(lg, c, &st);
		sim_fail_after(sd, -1, 0);
		if (run_rv != SL_OK)
			cr_assert(rv != SL_OK && st.segments_rewritten == 0,
				  "failing from op %" PRId64 ": a failed run swapped segments in", k);
		cr_assert_eq(sl_log_end_offset(lg), recs[nrecs - 1].off + 1);
		scan_log(1 << 20);
		assert_latest_view("after a failed compaction");
		nexpected = nfull;
		memcpy(expected, full, nfull * sizeof(full[0]));
		if (rv == SL_OK) /* only closing the replaced files failed */
			assert_seen_is_expected("after a late failure");
		else
			assert_seen_covers_expected("after a failed compaction");
		check_every_offset(1 << 20);

		/* The next compaction completes the job. */
		compact(INT64_MAX, clock_ms, &st);
		scan_log(1 << 20);
		assert_seen_is_expected("compacted after a failure");
		reopen_log();
		cr_assert_eq(cleaned_files(), 0, "failing from op %" PRId64 ": leftovers", k);
		scan_log(1 << 20);
		assert_seen_is_expected("compacted after a failure, reopened");
		sl_log_close(lg);
		lg = NULL;
		sim_free(sd);
		sd = NULL;
	}
}

Test(compact, reopen_after_compaction_keeps_indexes_valid)
{
	uint64_t rng = 29;
	cfg.index_interval = 128;
	open_posix();
	append_updates(300, 5, 50, SL_CODEC_NONE, twenty_keys, &rng);
	struct base_list bl;
	seg_bases(&bl);
	int64_t limit = bl.v[bl.n - 1];
	int64_t last_ts = recs[nrecs - 1].ts;
	struct sl_compaction_stats st;
	compact(INT64_MAX, clock_ms, &st);
	cr_assert_gt(st.segments_rewritten, 10);
	scan_log(1 << 20);
	expect_compacted(limit, clock_ms - cfg.delete_retention_ms);
	assert_seen_is_expected("before reopen");
	check_find_time(T0 - 5, last_ts + 5, 7);
	for (int pass = 0; pass < 2; pass++) {
		reopen_log();
		cr_assert_eq(sl_log_segment_count(lg), bl.n);
		scan_log(1 << 20);
		assert_seen_is_expected("after reopen");
		check_every_offset(1 << 20);
		check_every_offset(300);
		check_find_time(T0 - 5, last_ts + 5, 7);
	}
}

Test(compact, slices_survive_the_swap)
{
	uint64_t rng = 31;
	open_posix();
	append_updates(100, 6, 60, SL_CODEC_NONE, few_keys, &rng);
	int fds = count_fds();
	struct sl_slice s;
	cr_assert_eq(sl_log_read(lg, 0, 1 << 20, &s), SL_OK);
	cr_assert_gt(s.len, 0);
	uint8_t *before = malloc(s.len);
	cr_assert_eq(sl_slice_read(&s, before), SL_OK);
	struct sl_compaction_stats st;
	compact(INT64_MAX, clock_ms, &st);
	cr_assert_gt(st.segments_rewritten, 0);
	uint8_t *after = malloc(s.len);
	cr_assert_eq(sl_slice_read(&s, after), SL_OK, "slice unreadable after the swap");
	cr_assert_eq(memcmp(before, after, s.len), 0, "slice bytes changed under the reader");
	sl_slice_release(&s);
	cr_assert_leq(count_fds(), fds, "descriptors of replaced segments leaked");
	free(before);
	free(after);
}

Test(compact, yields_to_retention_during_run)
{
	uint64_t rng = 37;
	cfg.retention_bytes = 0;
	open_sim();
	append_updates(100, 6, 60, SL_CODEC_NONE, few_keys, &rng);
	struct base_list bl;
	seg_bases(&bl);
	int64_t limit = bl.v[bl.n - 1];
	sl_compaction *c = NULL;
	cr_assert_eq(sl_log_compact_begin(lg, INT64_MAX, clock_ms, &c), SL_OK);
	cr_assert_not_null(c);
	cr_assert_eq(sl_compaction_run(c), SL_OK);
	/* Retention removes the first three segments before finish. */
	size_t deleted = 0;
	cr_assert_eq(sl_log_retain(lg, bl.v[3], clock_ms, &deleted), SL_OK);
	cr_assert_eq(deleted, 3);
	struct sl_compaction_stats st;
	int rv = sl_log_compact_finish(lg, c, &st);
	cr_assert_eq(rv, SL_OK, "finish: %s (%s)", sl_err_name(rv), sl_log_errmsg(lg));
	cr_assert_eq(sl_log_start_offset(lg), bl.v[3]);
	cr_assert_eq(cleaned_files(), 0);
	for (int i = 0; i < 3; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%020" PRId64 ".log", dir, bl.v[i]);
		cr_assert(!sim_exists(sd, path), "%s came back", path);
	}
	scan_log(1 << 20);
	expect_compacted(limit, clock_ms - cfg.delete_retention_ms);
	size_t n = 0;
	for (size_t i = 0; i < nexpected; i++)
		if (expected[i] >= bl.v[3])
			expected[n++] = expected[i];
	nexpected = n;
	assert_seen_is_expected("compaction across retention");
	reopen_log();
	scan_log(1 << 20);
	assert_seen_is_expected("compaction across retention, reopened");
}

/* Even batches: five keys never seen again; odd batches: key 0 only, so
 * every odd batch but the last is compacted away, leaving gaps between
 * whole batches. */
static int alternating_n;

static int alternating_keys(uint64_t *rng)
{
	(void)rng;
	int n = alternating_n++;
	return (n / 5) % 2 ? 0 : 1 + n;
}

Test(compact, slice_next_offset_follows_its_last_batch)
{
	uint64_t rng = 0;
	cfg.index_interval = 128;
	open_sim();
	alternating_n = 0;
	append_updates(200, 5, 30, SL_CODEC_NONE, alternating_keys, &rng);
	struct sl_compaction_stats st;
	compact(INT64_MAX, clock_ms, &st);
	cr_assert_gt(st.records_removed, 100);
	/* storage.h: next_offset is the last offset of the last batch + 1,
	 * whatever max_bytes cut the slice. */
	for (uint64_t max = 100; max < 3000; max += 13) {
		int64_t off = sl_log_start_offset(lg), end = sl_log_end_offset(lg);
		while (off < end) {
			struct sl_slice s;
			cr_assert_eq(sl_log_read(lg, off, max, &s), SL_OK);
			if (s.len == 0) {
				sl_slice_release(&s);
				break;
			}
			uint8_t *buf = malloc(s.len);
			cr_assert_eq(sl_slice_read(&s, buf), SL_OK);
			struct sl_batch_header h;
			size_t pos = 0;
			int64_t last = -1;
			while (pos < s.len) {
				cr_assert_eq(sl_batch_check(buf + pos, s.len - pos, 1u << 24, &h), SL_OK);
				last = sl_batch_last_offset(&h);
				pos += sl_batch_total_size(&h);
			}
			sl_slice_release(&s);
			free(buf);
			cr_assert_eq(s.next_offset, last + 1,
				     "read %" PRId64 " with max_bytes %" PRIu64 ": the slice ends with "
				     "offset %" PRId64 " but next_offset is %" PRId64,
				     off, max, last, s.next_offset);
			off = s.next_offset;
		}
	}
}

Test(compact, retention_before_run_does_not_fail_it)
{
	uint64_t rng = 37;
	cfg.retention_bytes = 0;
	open_sim();
	append_updates(100, 6, 60, SL_CODEC_NONE, few_keys, &rng);
	struct base_list bl;
	seg_bases(&bl);
	int64_t limit = bl.v[bl.n - 1];
	sl_compaction *c = NULL;
	cr_assert_eq(sl_log_compact_begin(lg, INT64_MAX, clock_ms, &c), SL_OK);
	cr_assert_not_null(c);
	/* The writer applies retention before the run gets going. */
	size_t deleted = 0;
	cr_assert_eq(sl_log_retain(lg, bl.v[3], clock_ms, &deleted), SL_OK);
	cr_assert_eq(deleted, 3);
	int run_rv = sl_compaction_run(c);
	struct sl_compaction_stats st;
	int rv = sl_log_compact_finish(lg, c, &st);
	cr_assert_eq(run_rv, SL_OK, "run: %s (%s)", sl_err_name(run_rv), sl_log_errmsg(lg));
	cr_assert_eq(rv, SL_OK, "finish: %s (%s)", sl_err_name(rv), sl_log_errmsg(lg));
	cr_assert_gt(st.segments_rewritten, 0);
	scan_log(1 << 20);
	expect_compacted(limit, clock_ms - cfg.delete_retention_ms);
	size_t n = 0;
	for (size_t i = 0; i < nexpected; i++)
		if (expected[i] >= bl.v[3])
			expected[n++] = expected[i];
	nexpected = n;
	assert_seen_is_expected("compaction after retention");
}

Test(compact, truncation_during_run_cancels_the_swap)
{
	uint64_t rng = 37;
	open_sim();
	append_updates(100, 6, 60, SL_CODEC_NONE, few_keys, &rng);
	struct base_list bl;
	seg_bases(&bl);
	sl_compaction *c = NULL;
	cr_assert_eq(sl_log_compact_begin(lg, INT64_MAX, clock_ms, &c), SL_OK);
	cr_assert_not_null(c);
	cr_assert_eq(sl_compaction_run(c), SL_OK);
	/* Meanwhile the writer truncates into the fourth segment (a picked
	 * one), appends new records there and rolls past it again. */
	int64_t cut = -1;
	for (size_t i = 0; i < nbatches && cut < 0; i++)
		if (batches[i].base > bl.v[3])
			cut = batches[i].base;
	cr_assert_lt(cut, bl.v[4]);
	cr_assert_eq(sl_log_truncate(lg, cut), SL_OK);
	while (nrecs > 0 && recs[nrecs - 1].off >= cut)
		nrecs--;
	while (nbatches > 0 && batches[nbatches - 1].base >= cut)
		free(batches[--nbatches].bytes);
	append_updates(30, 6, 60, SL_CODEC_NONE, few_keys, &rng);
	seg_bases(&bl);
	cr_assert_gt(bl.v[4], cut, "no roll past the truncated segment");
	struct sl_compaction_stats st;
	sl_log_compact_finish(lg, c, &st);
	/* Whatever was swapped, the new records are all there. */
	scan_log(1 << 20);
	nexpected = 0;
	for (size_t i = 0; i < nrecs; i++)
		if (recs[i].off >= cut)
			expected[nexpected++] = recs[i].off;
	assert_seen_covers_expected("records appended after the truncation");
	assert_latest_view("after truncation during a run");
}

/* ---- Retention ---------------------------------------------------------- */

/* Bytes of data in the segment at bases[i] (up to bases[i + 1], or the
 * end), from the model. */
static uint64_t model_seg_size(const struct base_list *bl, size_t i)
{
	int64_t to = i + 1 < bl->n ? bl->v[i + 1] : INT64_MAX;
	uint64_t size = 0;
	for (size_t j = 0; j < nbatches; j++)
		if (batches[j].base >= bl->v[i] && batches[j].base < to)
			size += batches[j].len;
	return size;
}

static void assert_segment_gone(int64_t base)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%020" PRId64 ".log", dir, base);
	cr_assert(!sim_exists(sd, path), "%s still exists", path);
	snprintf(path, sizeof(path), "%s/%020" PRId64 ".index", dir, base);
	cr_assert(!sim_exists(sd, path), "%s still exists", path);
}

/* One batch of one record with a value of 3000 bytes: a segment each. */
static int64_t append_big(int64_t ts)
{
	struct rspec spec = { 0, false, 3000, ts };
	return append_specs(&spec, 1, SL_CODEC_NONE, false);
}

Test(retention, by_size)
{
	uint64_t rng = 41;
	cfg.retention_bytes = 6 * 4096;
	open_sim();
	append_updates(200, 6, 40, SL_CODEC_NONE, few_keys, &rng);
	struct base_list bl;
	seg_bases(&bl);
	cr_assert_gt(bl.n, 12);
	uint64_t total = 0;
	for (size_t i = 0; i < bl.n; i++)
		total += model_seg_size(&bl, i);
	cr_assert_eq(sl_log_size(lg), total);
	/* From the front, while what stays is still >= retention_bytes. */
	size_t want = 0;
	uint64_t left = total;
	while (want + 1 < bl.n && left - model_seg_size(&bl, want) >= (uint64_t)cfg.retention_bytes)
		left -= model_seg_size(&bl, want++);
	cr_assert_gt(want, 2);

	size_t deleted = 99;
	int rv = sl_log_retain(lg, INT64_MAX, clock_ms, &deleted);
	cr_assert_eq(rv, SL_OK, "retain: %s (%s)", sl_err_name(rv), sl_log_errmsg(lg));
	cr_assert_eq(deleted, want);
	cr_assert_eq(sl_log_segment_count(lg), bl.n - want);
	cr_assert_eq(sl_log_size(lg), left);
	cr_assert_geq(sl_log_size(lg), (uint64_t)cfg.retention_bytes);
	cr_assert_lt(left - model_seg_size(&bl, want), (uint64_t)cfg.retention_bytes);
	int64_t start = bl.v[want];
	cr_assert_eq(sl_log_start_offset(lg), start);
	for (size_t i = 0; i < want; i++)
		assert_segment_gone(bl.v[i]);

	struct sl_slice s;
	for (int64_t off = 0; off < start; off += 7)
		cr_assert_eq(sl_log_read(lg, off, 1 << 20, &s), SL_EOFFSET_OUT_OF_RANGE,
			     "read %" PRId64 " below the start %" PRId64, off, start);
	cr_assert_eq(sl_log_read(lg, start - 1, 1 << 20, &s), SL_EOFFSET_OUT_OF_RANGE);
	scan_log(1 << 20);
	cr_assert_eq(seen[0], start);
	assert_intact_from(0);
	cr_assert_eq(seen[nseen - 1], recs[nrecs - 1].off);

	/* Nothing more to do; the same after a reopen. */
	cr_assert_eq(sl_log_retain(lg, INT64_MAX, clock_ms, &deleted), SL_OK);
	cr_assert_eq(deleted, 0);
	reopen_log();
	cr_assert_eq(sl_log_start_offset(lg), start);
	cr_assert_eq(sl_log_retain(lg, INT64_MAX, clock_ms, &deleted), SL_OK);
	cr_assert_eq(deleted, 0);
	scan_log(1 << 20);
	cr_assert_eq(seen[0], start);
}

Test(retention, by_age)
{
	cfg.retention_ms = 1000;
	open_sim();
	/* One segment per batch. Newest timestamps: old, old, just expired,
	 * exactly at the limit, then old ones behind it, then the active. */
	int64_t ts[] = { 100, 200, 998, 1000, 300, 400, 50 };
	int64_t base[7];
	for (int i = 0; i < 7; i++)
		base[i] = append_big(ts[i]);
	cr_assert_eq(sl_log_segment_count(lg), 7);
	int64_t now = 2000; /* expired: newest timestamp < 1000 */

	size_t deleted = 99;
	cr_assert_eq(sl_log_retain(lg, INT64_MAX, now, &deleted), SL_OK);
	cr_assert_eq(deleted, 3, "deleted %zu", deleted);
	cr_assert_eq(sl_log_start_offset(lg), base[3]);
	struct base_list bl;
	seg_bases(&bl);
	cr_assert_eq(bl.n, 4);
	for (int i = 0; i < 3; i++)
		assert_segment_gone(base[i]);

	/* A millisecond later the one at the limit goes, and the old ones
	 * that waited behind it; the active segment stays. */
	cr_assert_eq(sl_log_retain(lg, INT64_MAX, now + 1, &deleted), SL_OK);
	cr_assert_eq(deleted, 3, "deleted %zu", deleted);
	cr_assert_eq(sl_log_segment_count(lg), 1);
	cr_assert_eq(sl_log_start_offset(lg), base[6]);
	scan_log(1 << 20);
	cr_assert_eq(nseen, 1);
	cr_assert_eq(seen[0], base[6]);

	/* After a reopen the ages come from the index files. */
	append_big(60);
	append_big(3000);
	reopen_log();
	cr_assert_eq(sl_log_retain(lg, INT64_MAX, now + 1, &deleted), SL_OK);
	cr_assert_eq(deleted, 2);
	cr_assert_eq(sl_log_start_offset(lg), recs[nrecs - 1].off);
}

Test(retention, never_past_floor)
{
	cfg.retention_bytes = 0;
	cfg.retention_ms = 0;
	open_sim();
	/* Ten segments of one batch of three records: bases 0, 3, 6, ... */
	struct rspec spec[3];
	for (int i = 0; i < 10; i++) {
		for (int j = 0; j < 3; j++)
			spec[j] = (struct rspec){ j, false, 1000, 10 + i };
		append_specs(spec, 3, SL_CODEC_NONE, false);
	}
	struct base_list bl;
	seg_bases(&bl);
	cr_assert_eq(bl.n, 10);
	cr_assert_eq(bl.v[2], 6);
	int64_t now = INT64_MAX / 2;
	size_t deleted = 99;

	cr_assert_eq(sl_log_retain(lg, 0, now, &deleted), SL_OK);
	cr_assert_eq(deleted, 0);
	cr_assert_eq(sl_log_retain(lg, 2, now, &deleted), SL_OK);
	cr_assert_eq(deleted, 0, "segment 0 holds offset 2");
	/* Floor 7: the segment holding 6..8 stays. */
	cr_assert_eq(sl_log_retain(lg, 7, now, &deleted), SL_OK);
	cr_assert_eq(deleted, 2);
	cr_assert_eq(sl_log_start_offset(lg), 6);
	/* Floor 9 is a segment's base: the one before it goes, not it. */
	cr_assert_eq(sl_log_retain(lg, 9, now, &deleted), SL_OK);
	cr_assert_eq(deleted, 1);
	cr_assert_eq(sl_log_start_offset(lg), 9);
	/* Past the end: every sealed segment, never the active one. */
	cr_assert_eq(sl_log_retain(lg, INT64_MAX, now, &deleted), SL_OK);
	cr_assert_eq(deleted, 6);
	cr_assert_eq(sl_log_segment_count(lg), 1);
	cr_assert_eq(sl_log_start_offset(lg), 27);
	cr_assert_eq(sl_log_end_offset(lg), 30);
	cr_assert_eq(sl_log_retain(lg, INT64_MAX, now, &deleted), SL_OK);
	cr_assert_eq(deleted, 0);
	scan_log(1 << 20);
	cr_assert_eq(nseen, 3);
	cr_assert_eq(seen[0], 27);
}

Test(retention, slices_survive_deletion)
{
	uint64_t rng = 43;
	cfg.retention_bytes = 0;
	open_posix();
	append_updates(100, 6, 60, SL_CODEC_NONE, few_keys, &rng);
	struct base_list bl;
	seg_bases(&bl);
	cr_assert_gt(bl.n, 4);
	int fds = count_fds();
	struct sl_slice s0, s1;
	cr_assert_eq(sl_log_read(lg, 0, 1 << 20, &s0), SL_OK);
	cr_assert_eq(sl_log_read(lg, bl.v[1], 1 << 20, &s1), SL_OK);
	cr_assert_gt(s0.len, 0);
	cr_assert_gt(s1.len, 0);

	size_t deleted = 0;
	cr_assert_eq(sl_log_retain(lg, INT64_MAX, clock_ms, &deleted), SL_OK);
	cr_assert_eq(deleted, bl.n - 1);
	char path[PATH_MAX];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%020d.log", dir, 0);
	cr_assert_eq(stat(path, &st), -1, "%s still exists", path);
	cr_assert_eq(errno, ENOENT);

	/* Both slices still read the bytes that were appended. */
	struct sl_slice *ss[2] = { &s0, &s1 };
	for (int i = 0; i < 2; i++) {
		uint8_t *buf = malloc(ss[i]->len);
		cr_assert_eq(sl_slice_read(ss[i], buf), SL_OK, "slice %d unreadable", i);
		size_t pos = 0;
		const struct mbatch *mb = model_batch(ss[i]->first_offset);
		cr_assert_not_null(mb);
		while (pos < ss[i]->len) {
			cr_assert_lt(mb, batches + nbatches);
			cr_assert_leq(pos + mb->len, ss[i]->len);
			cr_assert_eq(memcmp(buf + pos, mb->bytes, mb->len), 0,
				     "slice %d: batch %" PRId64 " differs", i, mb->base);
			pos += mb->len;
			mb++;
		}
		free(buf);
	}
	struct sl_slice s;
	cr_assert_eq(sl_log_read(lg, 0, 1 << 20, &s), SL_EOFFSET_OUT_OF_RANGE);
	sl_slice_release(&s0);
	sl_slice_release(&s1);
	/* Releasing the last reference closes the deleted files. */
	cr_assert_leq(count_fds(), fds, "descriptors of deleted segments leaked");
}
