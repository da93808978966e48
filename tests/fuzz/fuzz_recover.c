/* libFuzzer target for the recovery of a partition log (storage/storage.h).
 *
 * The input is the content of a log directory on a fresh simulated disk
 * (tests/lib/simdisk.h):
 *
 *   flags(1) active
 *   flags(1) sealed MARK active
 *   flags(1) sealed MARK sealed-index MARK active [MARK active-index]
 *
 * MARK is the 6 bytes "SLFZ|\n". The sealed segment is 00000000000000000000.log;
 * the active segment's base is the base offset of its first batch (low 32
 * bits; 0 without a sealed segment unless flags bit 1), or 1.
 * Flags: bit 0 rewrites each index's trailer so that it matches its .log
 * (magic, sizes, last batch CRC, checksum): random bytes never do, and a
 * trusted index is what lets the fuzzer reach the index-driven read paths;
 * bits 2-3 pick the prewrite strategy; bits 4-7 the read size.
 *
 * sl_log_open must succeed (a torn or corrupt active tail is cut, sealed
 * segments are not read). Then:
 * - the active segment is cut exactly at the end of its longest prefix of
 *   whole, CRC-valid batches with increasing offsets, and the end offset is
 *   one past that prefix's last offset (unless an index file for the
 *   active segment was given: one that matches is believed without a scan,
 *   and the active segment's batches are then CRC-checked on first read);
 * - reading the whole range, and at offsets taken from the input, returns
 *   SL_OK with whole CRC-valid batches (but see above) that are bytes of
 *   the input files, always making progress, or LOG_CORRUPT (sealed data
 *   only, or with an active index), never anything else (a forged index
 *   is believed, entries and all: then only memory safety and the codes
 *   are checked);
 * - sl_log_find_time returns SL_OK (an offset in range, or -1, when the
 *   log's offsets were all checked) or LOG_CORRUPT;
 * - a batch appended at the end offset is readable, and survives a clean
 *   close and reopen.
 * Any violation aborts. */
#define _GNU_SOURCE /* memmem */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "simdisk.h"
#include "storage.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#define LOG_DIR "/sim/p"
#define MARK "SLFZ|\n"
#define MARK_LEN 6
#define MAX_BATCH (1u << 20)
#define PATH_LEN 64

/* The index file's trailer, as storage/storage_int.h lays it out (72
 * bytes, little-endian, at the end of the file). */
#define TRAILER_SIZE 72
#define TRAILER_MAGIC 0x58494c53u
#define TRAILER_VERSION 1

struct part {
	const uint8_t *p;
	size_t len;
};

struct input {
	unsigned flags;
	struct part sealed, sealed_index, active, active_index;
	bool has_sealed, has_sealed_index, has_active_index;
	int64_t active_base;
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void parse_input(const uint8_t *data, size_t size, struct input *in)
{
	struct part parts[4];
	size_t np = 0;
	memset(in, 0, sizeof(*in));
	in->flags = data[0];
	const uint8_t *p = data + 1, *end = data + size;
	while (np < 3) {
		const uint8_t *m = memmem(p, (size_t)(end - p), MARK, MARK_LEN);
		if (m == NULL)
			break;
		parts[np++] = (struct part){ p, (size_t)(m - p) };
		p = m + MARK_LEN;
	}
	parts[np++] = (struct part){ p, (size_t)(end - p) };
	if (np == 1) {
		in->active = parts[0];
	} else if (np == 2) {
		in->has_sealed = true;
		in->sealed = parts[0];
		in->active = parts[1];
	} else {
		in->has_sealed = true;
		in->sealed = parts[0];
		in->has_sealed_index = true;
		in->sealed_index = parts[1];
		in->active = parts[2];
		if (np == 4) {
			in->has_active_index = true;
			in->active_index = parts[3];
		}
	}
	in->active_base = 0;
	if (in->has_sealed || (in->flags & 2)) {
		if (in->active.len >= 8)
			in->active_base = (int64_t)be32(in->active.p + 4);
		if (in->active_base == 0)
			in->active_base = 1;
	}
}

/* An index file from fuzz bytes with a trailer that matches log[0..loglen):
 * the entries are whatever the bytes say. Returns a malloc'd copy. */
static uint8_t *forge_index(const struct part *idx, int64_t base, const struct part *log,
			    size_t *len)
{
	size_t n = idx->len;
	if (n < TRAILER_SIZE)
		n = TRAILER_SIZE;
	uint8_t *buf = calloc(1, n);
	CHECK(buf != NULL);
	memcpy(buf, idx->p, idx->len);
	uint8_t *t = buf + n - TRAILER_SIZE;
	size_t entries = n - TRAILER_SIZE;
	entries -= entries % 4; /* 8a + 12b can be any multiple of 4 */
	uint32_t ntidx = get_le32(t + 12);
	if ((uint64_t)ntidx * 12 > entries || (entries - (size_t)ntidx * 12) % 8 != 0)
		ntidx = entries % 8 == 4 ? 1 : 0;
	uint32_t nidx = (uint32_t)((entries - (size_t)ntidx * 12) / 8);
	/* Drop the bytes that fit no entry, moving the trailer down. */
	memmove(buf + entries, t, TRAILER_SIZE);
	n = entries + TRAILER_SIZE;
	t = buf + entries;
	uint64_t last_pos = get_le64(t + 56);
	uint32_t last_crc = 0;
	if (log->len >= SL_BATCH_HEADER_SIZE) {
		last_pos %= log->len - SL_BATCH_HEADER_SIZE + 1;
		last_crc = be32(log->p + last_pos + SL_BATCH_OFF_CRC);
	}
	put_le32(t + 0, TRAILER_MAGIC);
	put_le32(t + 4, TRAILER_VERSION);
	put_le32(t + 8, nidx);
	put_le32(t + 12, ntidx);
	put_le64(t + 16, (uint64_t)base);
	put_le64(t + 24, log->len);
	put_le64(t + 56, last_pos);
	put_le32(t + 64, last_crc);
	put_le32(t + 68, sl_crc32c(0, buf, n - 4));
	*len = n;
	return buf;
}

static void write_file(sl_vfs *vfs, const char *path, const uint8_t *p, size_t len)
{
	int fd = vfs->open(vfs, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	if (len > 0)
		CHECK(vfs->pwrite(vfs, fd, p, len, 0) == (ssize_t)len);
	CHECK(vfs->fdatasync(vfs, fd) == 0);
	CHECK(vfs->close(vfs, fd) == 0);
}

static void seg_path(char *buf, int64_t base, const char *suffix)
{
	snprintf(buf, PATH_LEN, LOG_DIR "/%020lld%s", (long long)base, suffix);
}

/* The longest prefix of whole, CRC-valid batches with increasing offsets
 * from base, as recovery must keep it: its length, and the next offset. */
static size_t valid_prefix(const struct part *seg, int64_t base, int64_t *next)
{
	size_t pos = 0;
	*next = base;
	while (pos < seg->len) {
		struct sl_batch_header h;
		if (sl_batch_check(seg->p + pos, seg->len - pos, MAX_BATCH, &h) != SL_OK)
			break;
		if (h.base_offset < *next || sl_batch_last_offset(&h) - base > (int64_t)UINT32_MAX - 1)
			break;
		pos += sl_batch_total_size(&h);
		*next = sl_batch_last_offset(&h) + 1;
	}
	return pos;
}

static bool bytes_at(const struct part *file, uint64_t pos, const uint8_t *p, uint64_t len)
{
	return pos <= file->len && len <= file->len - pos && memcmp(file->p + pos, p, len) == 0;
}

struct ctx {
	sl_log *log;
	const struct input *in;
	struct part active_now; /* the active segment after recovery */
	bool trusted_active;    /* an active index file was given */
	bool forged;            /* a forged index is believed */
};

/* One read at offset; returns the next offset to read from, or -1 when the
 * read ended the walk (end of data or a corrupt batch). */
static int64_t read_at(struct ctx *c, int64_t offset, uint64_t max_bytes)
{
	struct sl_slice s;
	int rv = sl_log_read(c->log, offset, max_bytes, &s);
	if (rv == SL_ELOG_CORRUPT) {
		/* Only sealed data is never cut at open. */
		CHECK(c->trusted_active || (c->in->has_sealed && offset < c->in->active_base));
		CHECK(s.seg == NULL);
		return -1;
	}
	CHECK(rv == SL_OK);
	if (s.len == 0) {
		sl_slice_release(&s);
		return -1;
	}
	if (c->forged) {
		/* Its entries are believed: they may point anywhere, even
		 * inside batches or past the end of the file. Only memory
		 * safety and the codes count. */
		uint8_t *buf = s.len <= (1u << 20) ? malloc(s.len) : NULL;
		if (buf != NULL)
			sl_slice_read(&s, buf);
		free(buf);
		int64_t next = s.next_offset;
		sl_slice_release(&s);
		return next;
	}
	CHECK(s.len <= 64u << 20);
	uint8_t *buf = malloc(s.len);
	CHECK(buf != NULL);
	CHECK(sl_slice_read(&s, buf) == SL_OK);
	/* Bytes of one of the files, at the slice's position. */
	bool sealed = c->in->has_sealed && bytes_at(&c->in->sealed, s.pos, buf, s.len);
	CHECK(sealed || bytes_at(&c->active_now, s.pos, buf, s.len));

	/* Whole CRC-valid batches, the first one holding offset or after it,
	 * offsets increasing. Base offsets are outside the CRC and a sealed
	 * segment's are not checked against its range, so a sealed slice may
	 * carry any (see the report on crash/ tests); the active segment's
	 * are checked at open unless its index was believed. */
	bool strict_offsets = !sealed && !c->trusted_active;
	size_t pos = 0;
	int64_t last = -1;
	while (pos < s.len) {
		struct sl_batch_header h;
		int brv = sl_batch_check(buf + pos, s.len - pos, SIZE_MAX, &h);
		if (brv != SL_OK && !sealed && c->trusted_active)
			break; /* never CRC-checked, see above */
		CHECK(brv == SL_OK);
		if (pos == 0)
			CHECK(h.base_offset == s.first_offset);
		if (strict_offsets) {
			if (pos == 0)
				CHECK(sl_batch_last_offset(&h) >= offset);
			else
				CHECK(h.base_offset > last);
		}
		last = sl_batch_last_offset(&h);
		pos += sl_batch_total_size(&h);
		/* At least one batch, then only as many as fit. */
		CHECK(pos == sl_batch_total_size(&h) || pos <= max_bytes);
	}
	/* next_offset: one past the last batch, and always progress. */
	CHECK(s.next_offset > offset);
	if (strict_offsets)
		CHECK(s.next_offset == last + 1);
	free(buf);
	int64_t next = s.next_offset;
	sl_slice_release(&s);
	return next;
}

static void read_everything(struct ctx *c, uint64_t max_bytes)
{
	int64_t off = sl_log_start_offset(c->log), end = sl_log_end_offset(c->log);
	size_t budget = (c->in->sealed.len + c->in->active.len) / SL_BATCH_HEADER_SIZE + 4;
	while (off < end) {
		CHECK(budget-- > 0);
		int64_t next = read_at(c, off, max_bytes);
		if (next <= off) {
			/* Past a corrupt sealed segment, the active one. */
			if (c->in->has_sealed && off < c->in->active_base) {
				off = c->in->active_base;
				continue;
			}
			break;
		}
		off = next;
	}
}

static int open_log(sim_disk *sd, const struct sl_log_config *cfg, sl_log **log)
{
	char errmsg[SL_ERRMSG_SIZE];
	int rv = sl_log_open(LOG_DIR, cfg, sim_vfs(sd), log, errmsg);
	if (rv != SL_OK)
		fprintf(stderr, "sl_log_open: %s: %s\n", sl_err_name(rv), errmsg);
	return rv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1u << 20))
		return 0;
	struct input in;
	parse_input(data, size, &in);

	sim_disk *sd = sim_new();
	sl_vfs *vfs = sim_vfs(sd);
	char path[PATH_LEN];
	CHECK(vfs->mkdir(vfs, "/sim", 0755) == 0);
	CHECK(vfs->mkdir(vfs, LOG_DIR, 0755) == 0);
	if (in.has_sealed) {
		seg_path(path, 0, ".log");
		write_file(vfs, path, in.sealed.p, in.sealed.len);
	}
	if (in.has_sealed_index) {
		seg_path(path, 0, ".index");
		if (in.flags & 1) {
			size_t len;
			uint8_t *idx = forge_index(&in.sealed_index, 0, &in.sealed, &len);
			write_file(vfs, path, idx, len);
			free(idx);
		} else {
			write_file(vfs, path, in.sealed_index.p, in.sealed_index.len);
		}
	}
	seg_path(path, in.active_base, ".log");
	write_file(vfs, path, in.active.p, in.active.len);
	/* An index file for the active segment that matches it (a forged one,
	 * or a real one from a seed) is believed without a scan, and the
	 * active segment's batches are then never CRC-checked: its bytes may
	 * be served as they are. */
	bool active_index = in.has_active_index;
	if (in.has_active_index) {
		char ipath[PATH_LEN];
		seg_path(ipath, in.active_base, ".index");
		if (in.flags & 1) {
			size_t len;
			uint8_t *idx = forge_index(&in.active_index, in.active_base, &in.active, &len);
			write_file(vfs, ipath, idx, len);
			free(idx);
		} else {
			write_file(vfs, ipath, in.active_index.p, in.active_index.len);
		}
	}
	CHECK(vfs->fsync_dir(vfs, LOG_DIR) == 0);

	struct sl_log_config cfg;
	sl_log_config_init(&cfg);
	cfg.segment_bytes = 4096;
	cfg.index_interval = 64;
	cfg.segment_ms = 0;
	cfg.max_batch_bytes = MAX_BATCH;
	cfg.prewrite = (enum sl_prewrite)((in.flags >> 2) % 3);
	cfg.prewrite_min = 4096;
	cfg.prewrite_max = 8192;
	sl_log *log;
	CHECK(open_log(sd, &cfg, &log) == SL_OK);

	/* The active segment as recovery left it. */
	uint64_t alen = 0;
	uint8_t *now = sim_read_file(sd, path, &alen);
	CHECK(now != NULL);
	struct ctx c = {
		.log = log,
		.in = &in,
		.active_now = { now, (size_t)alen },
		.trusted_active = active_index,
		.forged = (in.flags & 1) && (in.has_sealed_index || in.has_active_index),
	};
	int64_t start = sl_log_start_offset(log), end = sl_log_end_offset(log);
	CHECK(start == (in.has_sealed ? 0 : in.active_base));
	CHECK(sl_log_segment_count(log) == (in.has_sealed ? 2u : 1u));
	if (!active_index) {
		int64_t next;
		size_t keep = valid_prefix(&in.active, in.active_base, &next);
		CHECK(alen == keep);
		CHECK(memcmp(now, in.active.p, keep) == 0);
		CHECK(end == next);
		CHECK(sl_log_durable_offset(log) == end);
	} else {
		CHECK(alen <= in.active.len && memcmp(now, in.active.p, alen) == 0);
	}

	/* Reads: the whole range, then at offsets from the input. */
	uint64_t max_bytes = 1 + (uint64_t)(in.flags >> 4) * 500;
	read_everything(&c, max_bytes);
	for (size_t i = 0; i + 4 <= size && i < 64; i += 4) {
		if (end <= start)
			break;
		int64_t off = start + (int64_t)(be32(data + i) % (uint64_t)(end - start));
		read_at(&c, off, max_bytes);
	}
	int64_t ts_probe[3] = { INT64_MIN, 0, size >= 9 ? (int64_t)be32(data + 1) << 16 : 1 };
	for (size_t i = 0; i < 3; i++) {
		int64_t off = -2;
		int rv = sl_log_find_time(log, ts_probe[i], &off);
		CHECK(rv == SL_OK || rv == SL_ELOG_CORRUPT);
		/* A sealed batch's offsets are not checked (see read_at). */
		if (rv == SL_OK && !in.has_sealed && !active_index)
			CHECK(off == -1 || (off >= start && off < end));
	}

	/* The log goes on: one batch at the end, kept over a clean reopen
	 * (read back only when no index of the active segment was given). */
	if (end >= start && end >= 0 && end < ((int64_t)1 << 40)) {
		struct sl_batch_builder b;
		const uint8_t *batch;
		size_t blen;
		sl_batch_builder_init(&b, NULL);
		CHECK(sl_batch_builder_add(&b, 1700000000000, "k", 1, "value", 5, NULL, 0) == SL_OK);
		CHECK(sl_batch_builder_finish(&b, &batch, &blen) == SL_OK);
		uint8_t *copy = malloc(blen);
		CHECK(copy != NULL);
		memcpy(copy, batch, blen);
		sl_batch_builder_free(&b);
		sl_batch_stamp(copy, end, 1);
		int rv = sl_log_append(log, copy, blen);
		CHECK(rv == SL_OK);
		CHECK(sl_log_end_offset(log) == end + 1);
		CHECK(sl_log_close(log) == SL_OK);
		CHECK(open_log(sd, &cfg, &log) == SL_OK);
		if (!active_index) {
			CHECK(sl_log_end_offset(log) == end + 1);
			struct sl_slice s;
			CHECK(sl_log_read(log, end, 1, &s) == SL_OK);
			CHECK(s.len == blen && s.first_offset == end);
			uint8_t *back = malloc(blen);
			CHECK(back != NULL);
			CHECK(sl_slice_read(&s, back) == SL_OK);
			CHECK(memcmp(back, copy, blen) == 0);
			free(back);
			sl_slice_release(&s);
		}
		free(copy);
	}
	CHECK(sl_log_close(log) == SL_OK);
	free(now);
	sim_free(sd);
	return 0;
}
