/* The partition log: append, read, time lookup, truncation, reopen,
 * recovery from corruption, footprint, configuration errors. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "simdisk.h"
#include "storage.h"
#include "testlib.h"

/* ---- Fixtures and helpers ------------------------------------------- */

static char dir[1024];
static struct sl_log_config cfg;
static sl_log *log_;

/* What the test appended: every batch's bytes, in order. */
struct model_batch {
	int64_t base, last;
	int64_t max_ts;
	uint8_t *bytes;
	size_t len;
};
static struct model_batch model[4096];
static size_t nmodel;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/p0", tl_tmpdir());
	sl_log_config_init(&cfg);
	cfg.segment_bytes = 4096;
	cfg.index_interval = 256;
	log_ = NULL;
	nmodel = 0;
}

static void teardown(void)
{
	if (log_ != NULL)
		sl_log_close(log_);
	for (size_t i = 0; i < nmodel; i++)
		free(model[i].bytes);
}

TestSuite(log, .init = setup, .fini = teardown, .timeout = 30);

static void open_log(void)
{
	char err[SL_ERRMSG_SIZE] = "";
	int rv = sl_log_open(dir, &cfg, NULL, &log_, err);
	cr_assert_eq(rv, SL_OK, "open: %s (%s)", sl_err_name(rv), err);
}

static void reopen_log(void)
{
	cr_assert_eq(sl_log_close(log_), SL_OK);
	log_ = NULL;
	open_log();
}

/* Builds a batch of n records at base: key "k<offset % nkeys>", value of
 * vlen bytes derived from the offset, timestamps ts, ts+1, ... */
static uint8_t *make_batch(int64_t base, int n, int64_t ts, size_t vlen, int codec, size_t *len)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	sl_batch_opts_init(&o);
	o.codec = codec;
	sl_batch_builder_init(&b, &o);
	char key[32], val[4096];
	for (int i = 0; i < n; i++) {
		int kl = snprintf(key, sizeof(key), "k%lld", (long long)((base + i) % 7));
		for (size_t j = 0; j < vlen; j++)
			val[j] = (char)('a' + (base + i + (int64_t)j) % 26);
		cr_assert_eq(sl_batch_builder_add(&b, ts + i, key, kl, val, (int32_t)vlen, NULL, 0), SL_OK);
	}
	const uint8_t *out;
	cr_assert_eq(sl_batch_builder_finish(&b, &out, len), SL_OK);
	uint8_t *copy = malloc(*len);
	memcpy(copy, out, *len);
	sl_batch_builder_free(&b);
	sl_batch_stamp(copy, base, 3);
	return copy;
}

/* Appends one batch of n records at the log end and records it. */
static void append(int n, int64_t ts, size_t vlen)
{
	int64_t base = sl_log_end_offset(log_);
	size_t len;
	uint8_t *b = make_batch(base, n, ts, vlen, SL_CODEC_NONE, &len);
	int rv = sl_log_append(log_, b, len);
	cr_assert_eq(rv, SL_OK, "append at %lld: %s (%s)", (long long)base, sl_err_name(rv),
		     sl_log_errmsg(log_));
	cr_assert_lt(nmodel, sizeof(model) / sizeof(model[0]));
	model[nmodel++] = (struct model_batch){ base, base + n - 1, ts + n - 1, b, len };
}

static struct model_batch *model_find(int64_t offset)
{
	for (size_t i = 0; i < nmodel; i++)
		if (model[i].last >= offset)
			return &model[i];
	return NULL;
}

/* Reads from offset and checks the slice against the model: it starts
 * with the batch holding offset and holds whole model batches. */
static struct sl_slice check_read(int64_t offset, uint64_t max)
{
	struct sl_slice s;
	int rv = sl_log_read(log_, offset, max, &s);
	cr_assert_eq(rv, SL_OK, "read %lld: %s (%s)", (long long)offset, sl_err_name(rv),
		     sl_log_errmsg(log_));
	struct model_batch *mb = model_find(offset);
	if (mb == NULL) {
		cr_assert_eq(s.len, 0);
		return s;
	}
	cr_assert_gt(s.len, 0, "empty read at %lld", (long long)offset);
	cr_assert_eq(s.first_offset, mb->base);
	uint8_t *buf = malloc(s.len);
	cr_assert_eq(sl_slice_read(&s, buf), SL_OK);
	size_t off = 0;
	int64_t next = -1;
	for (struct model_batch *m = mb; off < s.len; m++) {
		cr_assert(m < model + nmodel, "slice past the model");
		cr_assert_leq(off + m->len, s.len, "partial batch in slice");
		cr_assert_eq(memcmp(buf + off, m->bytes, m->len), 0, "bytes differ at %lld",
			     (long long)m->base);
		off += m->len;
		next = m->last + 1;
	}
	cr_assert(s.len <= max || s.len == mb->len, "slice over max_bytes");
	cr_assert_eq(s.next_offset, next);
	free(buf);
	return s;
}

static void check_all(void)
{
	int64_t end = sl_log_end_offset(log_);
	for (int64_t off = sl_log_start_offset(log_); off < end;) {
		struct sl_slice s = check_read(off, 1 << 20);
		cr_assert_gt(s.next_offset, off);
		off = s.next_offset;
		sl_slice_release(&s);
	}
}

static int count_files(const char *suffix)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name), sl = strlen(suffix);
		if (l > sl && strcmp(de->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the DIR's own descriptor */
}

/* ---- Basic behaviour ------------------------------------------------ */

Test(log, starts_empty_at_zero)
{
	open_log();
	cr_assert_eq(sl_log_start_offset(log_), 0);
	cr_assert_eq(sl_log_end_offset(log_), 0);
	cr_assert_eq(sl_log_durable_offset(log_), 0);
	struct sl_slice s;
	cr_assert_eq(sl_log_read(log_, 0, 100, &s), SL_OK);
	cr_assert_eq(s.len, 0);
	cr_assert_eq(sl_log_read(log_, 1, 100, &s), SL_EOFFSET_OUT_OF_RANGE);
	cr_assert_eq(count_files(".log"), 1);
}

Test(log, a_batch_without_a_timestamp_does_not_age_its_segment)
{
	cfg.segment_bytes = 1 << 20; /* segment_ms stays at its 7 days */
	open_log();
	append(1, 0, 10); /* like Raft's control batches */
	reopen_log();
	append(1, (int64_t)time(NULL) * 1000, 10);
	cr_assert_eq(sl_log_segment_count(log_), 1, "a reopen rolled a segment aged from 1970");
}

Test(log, round_trip_across_segment_rolls)
{
	open_log();
	for (int i = 0; i < 300; i++)
		append(1 + i % 5, 1000 + i * 10, 20 + (size_t)(i % 40));
	cr_assert_gt(sl_log_segment_count(log_), 10);
	check_all();
	reopen_log();
	cr_assert_eq(sl_log_end_offset(log_), model[nmodel - 1].last + 1);
	check_all();
}

Test(log, reads_from_every_offset)
{
	open_log();
	for (int i = 0; i < 120; i++)
		append(1 + i % 4, 1000 + i, 50);
	reopen_log(); /* sealed segments come back lazily */
	int64_t end = sl_log_end_offset(log_);
	for (int64_t off = 0; off <= end; off++) {
		for (uint64_t max = 1; max <= 4096; max *= 8) {
			struct sl_slice s = check_read(off, max);
			sl_slice_release(&s);
		}
	}
	struct sl_slice s;
	cr_assert_eq(sl_log_read(log_, end + 1, 100, &s), SL_EOFFSET_OUT_OF_RANGE);
	cr_assert_eq(sl_log_read(log_, -1, 100, &s), SL_EOFFSET_OUT_OF_RANGE);
}

Test(log, flush_makes_end_durable)
{
	open_log();
	append(3, 1, 10);
	cr_assert_eq(sl_log_durable_offset(log_), 0);
	cr_assert_eq(sl_log_flush(log_), SL_OK);
	cr_assert_eq(sl_log_durable_offset(log_), 3);
}

Test(log, finds_offsets_by_timestamp)
{
	open_log();
	/* Timestamps rise by 10 per batch, records 1 ms apart, with one batch
	 * out of order. */
	for (int i = 0; i < 200; i++)
		append(3, i == 100 ? 5 : 1000 + i * 10, 30);
	for (int pass = 0; pass < 2; pass++) {
		for (int64_t ts = 0; ts < 1000 + 200 * 10 + 20; ts += 7) {
			int64_t want = -1;
			for (size_t i = 0; i < nmodel && want < 0; i++) {
				int64_t first = model[i].max_ts - (model[i].last - model[i].base);
				for (int64_t o = model[i].base; o <= model[i].last; o++)
					if (first + (o - model[i].base) >= ts) {
						want = o;
						break;
					}
			}
			int64_t got;
			cr_assert_eq(sl_log_find_time(log_, ts, &got), SL_OK);
			cr_assert_eq(got, want, "ts %lld: got %lld want %lld", (long long)ts,
				     (long long)got, (long long)want);
		}
		reopen_log();
	}
}

Test(log, truncate_then_append)
{
	open_log();
	for (int i = 0; i < 100; i++)
		append(2, 1000 + i, 60);
	int64_t cut = model[37].base; /* in a sealed segment */
	size_t segs = sl_log_segment_count(log_);
	cr_assert_eq(sl_log_truncate(log_, cut + 1), SL_ELOG_MID_BATCH);
	cr_assert_eq(sl_log_end_offset(log_), model[nmodel - 1].last + 1, "mid-batch truncation changed the log");
	cr_assert_eq(sl_log_truncate(log_, cut), SL_OK);
	cr_assert_lt(sl_log_segment_count(log_), segs);
	cr_assert_eq(sl_log_end_offset(log_), cut);
	cr_assert_leq(sl_log_durable_offset(log_), cut);
	for (size_t i = 37; i < nmodel; i++)
		free(model[i].bytes);
	nmodel = 37;
	check_all();
	for (int i = 0; i < 50; i++)
		append(3, 5000 + i, 40);
	check_all();
	reopen_log();
	check_all();
	/* Truncating everything leaves an empty log at the start. */
	cr_assert_eq(sl_log_truncate(log_, 0), SL_OK);
	cr_assert_eq(sl_log_end_offset(log_), 0);
	for (size_t i = 0; i < nmodel; i++)
		free(model[i].bytes);
	nmodel = 0;
	append(1, 1, 1);
	reopen_log();
	check_all();
	cr_assert_eq(sl_log_truncate(log_, 5), SL_EOFFSET_OUT_OF_RANGE);
}

Test(log, truncate_keeps_time_index_right)
{
	open_log();
	for (int i = 0; i < 40; i++)
		append(1, 100 + i, 10);
	cr_assert_eq(sl_log_truncate(log_, 20), SL_OK);
	int64_t got;
	cr_assert_eq(sl_log_find_time(log_, 125, &got), SL_OK);
	cr_assert_eq(got, -1);
	cr_assert_eq(sl_log_find_time(log_, 119, &got), SL_OK);
	cr_assert_eq(got, 19);
}

Test(log, reset_restarts_at_offset)
{
	open_log();
	for (int i = 0; i < 50; i++)
		append(2, 1, 80);
	cr_assert_eq(sl_log_reset(log_, 1000), SL_OK);
	cr_assert_eq(sl_log_start_offset(log_), 1000);
	cr_assert_eq(sl_log_end_offset(log_), 1000);
	cr_assert_eq(sl_log_segment_count(log_), 1);
	for (size_t i = 0; i < nmodel; i++)
		free(model[i].bytes);
	nmodel = 0;
	append(4, 1, 10);
	reopen_log();
	cr_assert_eq(sl_log_start_offset(log_), 1000);
	check_all();
}

Test(log, rejects_bad_appends_and_changes_nothing)
{
	open_log();
	append(2, 1, 10);
	size_t len;
	uint8_t *b = make_batch(2, 2, 1, 10, SL_CODEC_NONE, &len);
	uint8_t *bad = malloc(len);

	memcpy(bad, b, len);
	bad[len - 1] ^= 1;
	cr_assert_eq(sl_log_append(log_, bad, len), SL_EBATCH_BAD_CRC);
	cr_assert_neq(strstr(sl_log_errmsg(log_), "byte 0"), NULL, "%s", sl_log_errmsg(log_));

	cr_assert_eq(sl_log_append(log_, b, len - 1), SL_EBATCH_TRUNCATED);

	memcpy(bad, b, len);
	sl_batch_stamp(bad, 1, 3); /* overlaps the previous batch */
	cr_assert_eq(sl_log_append(log_, bad, len), SL_ELOG_OFFSET_ORDER);

	memcpy(bad, b, len);
	bad[16] = 1; /* magic */
	cr_assert_eq(sl_log_append(log_, bad, len), SL_EBATCH_BAD_MAGIC);

	/* Two batches in one call, the second bad: neither is written. */
	uint8_t *two = malloc(2 * len);
	memcpy(two, b, len);
	memcpy(two + len, b, len);
	cr_assert_eq(sl_log_append(log_, two, 2 * len), SL_ELOG_OFFSET_ORDER);
	cr_assert_eq(sl_log_end_offset(log_), 2);
	check_all();
	reopen_log();
	cr_assert_eq(sl_log_end_offset(log_), 2);
	free(two);
	free(bad);
	free(b);
}

Test(log, appends_several_batches_in_one_call_across_rolls)
{
	open_log();
	size_t total = 0, lens[60];
	uint8_t *bs[60];
	int64_t base = 0;
	for (int i = 0; i < 60; i++) {
		bs[i] = make_batch(base, 3, 10 + i, 100, i % 2 ? SL_CODEC_ZSTD : SL_CODEC_NONE, &lens[i]);
		model[nmodel++] = (struct model_batch){ base, base + 2, 10 + i + 2, bs[i], lens[i] };
		base += 3;
		total += lens[i];
	}
	uint8_t *all = malloc(total), *p = all;
	for (int i = 0; i < 60; i++) {
		memcpy(p, bs[i], lens[i]);
		p += lens[i];
	}
	cr_assert_eq(sl_log_append(log_, all, total), SL_OK);
	cr_assert_gt(sl_log_segment_count(log_), 3);
	check_all();
	reopen_log();
	check_all();
	free(all);
}

Test(log, rejects_bad_config)
{
	char err[SL_ERRMSG_SIZE];
	cfg.segment_bytes = 100;
	cr_assert_eq(sl_log_open(dir, &cfg, NULL, &log_, err), SL_EINVALID_ARGUMENT);
	cr_assert_neq(strstr(err, "segment_bytes"), NULL, "%s", err);
	cr_assert_null(log_);
}

Test(log, gaps_in_offsets_are_served)
{
	open_log();
	size_t len;
	uint8_t *b = make_batch(10, 2, 1, 10, SL_CODEC_NONE, &len);
	cr_assert_eq(sl_log_append(log_, b, len), SL_OK);
	model[nmodel++] = (struct model_batch){ 10, 11, 2, b, len };
	cr_assert_eq(sl_log_end_offset(log_), 12);
	struct sl_slice s = check_read(3, 1000); /* a gap: the next batch */
	sl_slice_release(&s);
}

/* ---- Recovery ------------------------------------------------------- */

static void flip_byte(const char *path, off_t pos)
{
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	uint8_t c;
	cr_assert_eq(pread(fd, &c, 1, pos), 1);
	c ^= 0x10;
	cr_assert_eq(pwrite(fd, &c, 1, pos), 1);
	close(fd);
}

Test(log, cuts_corrupt_active_tail)
{
	open_log();
	for (int i = 0; i < 5; i++)
		append(2, 1, 40);
	reopen_log();
	cr_assert_eq(sl_log_segment_count(log_), 1);
	sl_log_close(log_);
	log_ = NULL;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/00000000000000000000.log", dir);
	struct stat st;
	stat(path, &st);
	/* Flip a bit in the last batch's records, then remove the index the
	 * clean close wrote (as a crash would), so the tail is scanned. */
	flip_byte(path, st.st_size - 3);
	snprintf(path, sizeof(path), "%s/00000000000000000000.index", dir);
	unlink(path);
	open_log();
	cr_assert_eq(sl_log_end_offset(log_), model[3].last + 1);
	free(model[4].bytes);
	nmodel = 4;
	check_all();
	append(1, 1, 1);
	reopen_log();
	check_all();
}

Test(log, stale_active_index_is_not_trusted)
{
	open_log();
	for (int i = 0; i < 5; i++)
		append(2, 1, 40);
	reopen_log();
	sl_log_close(log_);
	log_ = NULL;
	/* Bytes appended behind the index's back: it no longer matches. */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/00000000000000000000.log", dir);
	size_t len;
	uint8_t *b = make_batch(10, 1, 1, 5, SL_CODEC_NONE, &len);
	int fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, b, len), (ssize_t)len);
	close(fd);
	model[nmodel++] = (struct model_batch){ 10, 10, 1, b, len };
	open_log();
	cr_assert_eq(sl_log_end_offset(log_), 11);
	check_all();
}

Test(log, reports_corrupt_sealed_batch_precisely)
{
	open_log();
	for (int i = 0; i < 60; i++)
		append(2, 1, 100);
	cr_assert_gt(sl_log_segment_count(log_), 3);
	reopen_log();
	sl_log_close(log_);
	log_ = NULL;
	/* Corrupt the third batch of the first segment. */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/00000000000000000000.log", dir);
	off_t pos = (off_t)(model[0].len + model[1].len);
	flip_byte(path, pos + 70);
	open_log();
	struct sl_slice s;
	/* Batches before it are served, alone. */
	s = check_read(0, 1 << 20);
	cr_assert_eq(s.next_offset, model[2].base);
	sl_slice_release(&s);
	/* The bad one is never served, and the error names file and place. */
	int rv = sl_log_read(log_, model[2].base, 1 << 20, &s);
	cr_assert_eq(rv, SL_ELOG_CORRUPT);
	char want[64];
	snprintf(want, sizeof(want), "position %lld", (long long)pos);
	cr_assert_neq(strstr(sl_log_errmsg(log_), "00000000000000000000.log"), NULL, "%s",
		      sl_log_errmsg(log_));
	cr_assert_neq(strstr(sl_log_errmsg(log_), want), NULL, "%s", sl_log_errmsg(log_));
	cr_assert_eq(sl_log_read(log_, model[2].base, 1 << 20, &s), SL_ELOG_CORRUPT);
	/* Later segments are unaffected. */
	int64_t later = sl_log_end_offset(log_) - 1;
	s = check_read(later, 1 << 20);
	sl_slice_release(&s);
}

Test(log, rebuilds_missing_sealed_index)
{
	open_log();
	for (int i = 0; i < 60; i++)
		append(2, 100 + i, 100);
	sl_log_close(log_);
	log_ = NULL;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/00000000000000000000.index", dir);
	cr_assert_eq(unlink(path), 0);
	open_log();
	check_all();
	cr_assert_eq(access(path, F_OK), 0, "index not rewritten");
	int64_t got;
	cr_assert_eq(sl_log_find_time(log_, 101, &got), SL_OK);
	cr_assert_eq(got, 1);
}

/* ---- Footprint ------------------------------------------------------ */

Test(log, idle_empty_partition_is_small)
{
	struct mallinfo2 before = mallinfo2();
	int fds = count_fds();
	open_log();
	struct mallinfo2 after = mallinfo2();
	size_t heap = after.uordblks - before.uordblks;
	cr_assert_lt(heap, 8192, "an empty log takes %zu bytes of heap", heap);
	cr_assert_leq(count_fds() - fds, 2, "descriptors: %d", count_fds() - fds);
	struct stat st;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/00000000000000000000.log", dir);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_lt(st.st_blocks * 512, 1 << 20);
}

Test(log, reading_many_segments_keeps_few_descriptors)
{
	open_log();
	for (int i = 0; i < 200; i++)
		append(2, 1, 100);
	reopen_log();
	int fds = count_fds();
	check_all();
	cr_assert_leq(count_fds() - fds, 1, "descriptors grew by %d", count_fds() - fds);
}

Test(log, prewrite_window_is_bounded_and_trimmed)
{
	cfg.segment_bytes = 64 << 20;
	cfg.prewrite = SL_PREWRITE_ZERO;
	cfg.prewrite_min = 64 << 10;
	cfg.prewrite_max = 1 << 20;
	open_log();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/00000000000000000000.log", dir);
	uint64_t data = 0;
	struct stat st;
	for (int i = 0; i < 2000; i++) {
		append(8, 1, 200);
		data += model[nmodel - 1].len;
		cr_assert_eq(stat(path, &st), 0);
		cr_assert_geq((uint64_t)st.st_size, data);
		cr_assert_leq((uint64_t)st.st_size - data, (1 << 20) + 8192,
			      "window of %llu bytes", (unsigned long long)(st.st_size - data));
	}
	reopen_log();
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, data, "the window outlived a clean close");
	check_all();
}

/* ---- The simulated disk --------------------------------------------- */

Test(log, recovers_on_simulated_disk_after_crash)
{
	sim_disk *sd = sim_new();
	sl_vfs *vfs = sim_vfs(sd);
	cr_assert_eq(vfs->mkdir(vfs, "/sim", 0755), 0);
	char err[SL_ERRMSG_SIZE];
	cr_assert_eq(sl_log_open("/sim/p", &cfg, vfs, &log_, err), SL_OK, "%s", err);
	for (int i = 0; i < 30; i++)
		append(2, 1, 100);
	cr_assert_eq(sl_log_flush(log_), SL_OK);
	int64_t durable = sl_log_durable_offset(log_);
	for (int i = 0; i < 5; i++)
		append(2, 1, 100);
	sim_crash(sd);
	/* Every handle is gone: closing the old log reports errors but must
	 * not crash; the reopened log keeps everything durable. */
	sl_log_close(log_);
	cr_assert_eq(sl_log_open("/sim/p", &cfg, vfs, &log_, err), SL_OK, "%s", err);
	cr_assert_eq(sl_log_end_offset(log_), durable);
	while (nmodel > 0 && model[nmodel - 1].base >= durable)
		free(model[--nmodel].bytes);
	check_all();
	sl_log_close(log_);
	log_ = NULL;
	sim_free(sd);
}

Test(log, corrupt_batch_behind_a_trusted_active_index_is_not_served)
{
	open_log();
	for (int i = 0; i < 5; i++)
		append(2, 1, 40);
	reopen_log(); /* the clean close wrote an index the next open trusts */
	sl_log_close(log_);
	log_ = NULL;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/00000000000000000000.log", dir);
	off_t pos = (off_t)(model[0].len + model[1].len);
	flip_byte(path, pos + 70);
	open_log();
	cr_assert_eq(sl_log_end_offset(log_), model[4].last + 1, "the index was not trusted");
	struct sl_slice s = check_read(0, 1 << 20);
	cr_assert_eq(s.next_offset, model[2].base);
	sl_slice_release(&s);
	cr_assert_eq(sl_log_read(log_, model[2].base, 1 << 20, &s), SL_ELOG_CORRUPT);
	cr_assert_neq(strstr(sl_log_errmsg(log_), "position"), NULL, "%s", sl_log_errmsg(log_));
}

Test(log, failed_fdatasync_fences_the_log_until_reopened)
{
	sim_disk *sd = sim_new();
	sl_vfs *vfs = sim_vfs(sd);
	cr_assert_eq(vfs->mkdir(vfs, "/sim", 0755), 0);
	char err[SL_ERRMSG_SIZE];
	cr_assert_eq(sl_log_open("/sim/p", &cfg, vfs, &log_, err), SL_OK, "%s", err);
	append(2, 1, 100);
	cr_assert_eq(sl_log_flush(log_), SL_OK);
	append(2, 1, 100);
	sim_fail_after(sd, 0, EIO);
	cr_assert_eq(sl_log_flush(log_), SL_ESTORAGE);
	sim_fail_after(sd, -1, 0);
	/* The disk answers again, but the pages the failed sync dropped are
	 * gone for good: no later sync may vouch for them. */
	cr_assert_eq(sl_log_flush(log_), SL_ESTORAGE);
	cr_assert_neq(strstr(sl_log_errmsg(log_), "reopen"), NULL, "%s", sl_log_errmsg(log_));
	size_t len;
	uint8_t *b = make_batch(4, 1, 1, 10, SL_CODEC_NONE, &len);
	cr_assert_eq(sl_log_append(log_, b, len), SL_ESTORAGE);
	cr_assert_eq(sl_log_truncate(log_, 2), SL_ESTORAGE);
	cr_assert_eq(sl_log_durable_offset(log_), 2);
	struct sl_slice s = check_read(0, 1 << 20); /* reads still work */
	sl_slice_release(&s);
	sl_log_close(log_);
	cr_assert_eq(sl_log_open("/sim/p", &cfg, vfs, &log_, err), SL_OK, "%s", err);
	cr_assert_eq(sl_log_append(log_, b, len), SL_OK);
	cr_assert_eq(sl_log_flush(log_), SL_OK);
	free(b);
	sl_log_close(log_);
	log_ = NULL;
	sim_free(sd);
}

/* Found by tests/chaos (a full disk): a failed write left the log's end
 * where it was, and the next append, from a writer that had not heard of
 * the failure yet, was taken past it: a hole of the batches that failed,
 * on a replica Raft counted as holding them. */
Test(log, failed_write_fences_the_log_so_no_append_leaves_a_hole)
{
	sim_disk *sd = sim_new();
	sl_vfs *vfs = sim_vfs(sd);
	cr_assert_eq(vfs->mkdir(vfs, "/sim", 0755), 0);
	char err[SL_ERRMSG_SIZE];
	cr_assert_eq(sl_log_open("/sim/p", &cfg, vfs, &log_, err), SL_OK, "%s", err);
	append(2, 1, 100);
	cr_assert_eq(sl_log_flush(log_), SL_OK);
	size_t l1, l2;
	uint8_t *b1 = make_batch(2, 1, 1, 10, SL_CODEC_NONE, &l1);
	uint8_t *b2 = make_batch(3, 1, 1, 10, SL_CODEC_NONE, &l2);
	sim_fail_after(sd, 0, ENOSPC);
	cr_assert_eq(sl_log_append(log_, b1, l1), SL_ESTORAGE);
	sim_fail_after(sd, -1, 0); /* space again */
	cr_assert_eq(sl_log_append(log_, b2, l2), SL_ESTORAGE, "offset 2 is missing");
	cr_assert_neq(strstr(sl_log_errmsg(log_), "reopen"), NULL, "%s", sl_log_errmsg(log_));
	cr_assert_eq(sl_log_end_offset(log_), 2);
	sl_log_close(log_);
	cr_assert_eq(sl_log_open("/sim/p", &cfg, vfs, &log_, err), SL_OK, "%s", err);
	cr_assert_eq(sl_log_end_offset(log_), 2);
	cr_assert_eq(sl_log_append(log_, b1, l1), SL_OK);
	cr_assert_eq(sl_log_append(log_, b2, l2), SL_OK);
	cr_assert_eq(sl_log_flush(log_), SL_OK);
	cr_assert_eq(sl_log_end_offset(log_), 4);
	free(b1);
	free(b2);
	sl_log_close(log_);
	log_ = NULL;
	sim_free(sd);
}

Test(log, first_batch_far_past_an_empty_segment_gets_its_own_segment)
{
	open_log();
	/* Relative offsets in the index are 32-bit: a batch 5e9 past the
	 * empty active segment's base must start a new segment. */
	size_t len;
	uint8_t *b = make_batch(5000000000ll, 2, 1, 10, SL_CODEC_NONE, &len);
	cr_assert_eq(sl_log_append(log_, b, len), SL_OK);
	model[nmodel++] = (struct model_batch){ 5000000000ll, 5000000001ll, 2, b, len };
	cr_assert_eq(sl_log_flush(log_), SL_OK);
	reopen_log();
	cr_assert_eq(sl_log_end_offset(log_), 5000000002ll);
	struct sl_slice s = check_read(5000000000ll, 1 << 20);
	sl_slice_release(&s);
}

/* ---- Reading a directory as it is (sl_log_dump) ------------------------ */

struct dumped {
	int batches, records, bad, stops;
	int64_t next;      /* the offset expected next */
	bool in_order;
	int stop_err;
};

static int on_dumped(void *arg, const struct sl_dump_batch *b)
{
	struct dumped *d = arg;
	if (b->err != SL_OK) {
		d->stops++;
		d->stop_err = b->err;
		return 0;
	}
	d->in_order = d->in_order && b->base_offset == d->next;
	d->next = b->last_offset + 1;
	d->batches++;
	d->records += b->count;
	d->bad += !b->crc_ok;
	cr_assert_eq(b->leader_epoch, 3);
	return 0;
}

/* Every byte of every file in dir, hashed with names and sizes. */
static uint64_t dir_hash(void)
{
	DIR *dp = opendir(dir);
	cr_assert_not_null(dp);
	uint64_t h = 1469598103934665603ull;
	struct dirent *e;
	while ((e = readdir(dp)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		for (const char *c = e->d_name; *c; c++)
			h = (h ^ (uint8_t)*c) * 1099511628211ull;
		FILE *f = fopen(path, "rb");
		cr_assert_not_null(f);
		int ch;
		while ((ch = fgetc(f)) != EOF)
			h = (h ^ (uint8_t)ch) * 1099511628211ull;
		fclose(f);
	}
	closedir(dp);
	return h;
}

Test(log, a_dump_reads_every_batch_and_changes_nothing)
{
	open_log();
	for (int i = 0; i < 40; i++)
		append(5, 1000 + i, 100); /* several segments of 4 KiB */
	cr_assert_gt(sl_log_segment_count(log_), 2);
	/* While the log is open (a node running): every batch, in order. */
	char err[SL_ERRMSG_SIZE];
	struct dumped d = { .in_order = true };
	cr_assert_eq(sl_log_dump(dir, NULL, on_dumped, &d, err), SL_OK, "%s", err);
	cr_assert_eq(d.batches, 40);
	cr_assert_eq(d.records, 200);
	cr_assert(d.in_order);
	cr_assert_eq(d.bad + d.stops, 0);
	cr_assert_eq(sl_log_close(log_), SL_OK);
	log_ = NULL;

	/* A flipped byte inside the 3rd batch's records: a bad CRC, reported,
	 * and the walk goes on; a cut tail: where the segment stops. Nothing
	 * is repaired. */
	char seg[PATH_MAX];
	snprintf(seg, sizeof(seg), "%s/%020d.log", dir, 0);
	flip_byte(seg, (off_t)(model[0].len + model[1].len + 70));
	struct stat st;
	char last[256] = "";
	DIR *dp = opendir(dir);
	struct dirent *e;
	while ((e = readdir(dp)) != NULL)
		if (strstr(e->d_name, ".log") != NULL && strcmp(e->d_name, last) > 0)
			snprintf(last, sizeof(last), "%s", e->d_name);
	closedir(dp);
	char lastpath[PATH_MAX];
	snprintf(lastpath, sizeof(lastpath), "%.1024s/%.255s", dir, last);
	cr_assert_eq(stat(lastpath, &st), 0);
	cr_assert_eq(truncate(lastpath, st.st_size - 7), 0);
	uint64_t before = dir_hash();
	d = (struct dumped){ .in_order = true };
	cr_assert_eq(sl_log_dump(dir, NULL, on_dumped, &d, err), SL_OK, "%s", err);
	cr_assert_eq(d.bad, 1);
	cr_assert_eq(d.stops, 1);
	cr_assert_eq(d.stop_err, SL_EBATCH_TRUNCATED);
	cr_assert_eq(d.batches, 39);
	cr_assert_eq(dir_hash(), before, "the dump changed the directory");

	/* Not a log directory: precise errors. */
	cr_assert_eq(sl_log_dump("/nonexistent/dir", NULL, on_dumped, &d, err), SL_ENOT_FOUND);
	cr_assert(strstr(err, "/nonexistent/dir") != NULL, "%s", err);
	cr_assert_eq(sl_log_dump(tl_tmpdir(), NULL, on_dumped, &d, err), SL_ENOT_FOUND);
	cr_assert(strstr(err, "holds no segment file") != NULL, "%s", err);
}
