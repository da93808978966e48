/* Segments: their files, in-memory indexes, index files and the scan that
 * checks and indexes a segment's batches. Callers hold the log's mutex. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_int.h"

void sl_segment_path(const sl_log *log, int64_t base, const char *suffix, char *buf)
{
	snprintf(buf, PATH_MAX, "%s/%020" PRId64 "%s", log->dir, base, suffix);
}

sl_segment *sl_segment_new(sl_log *log, int64_t base)
{
	sl_segment *seg = calloc(1, sizeof(*seg));
	char path[PATH_MAX];
	if (seg == NULL)
		return NULL;
	sl_segment_path(log, base, SEG_LOG_SUFFIX, path);
	seg->path = strdup(path);
	if (seg->path == NULL) {
		free(seg);
		return NULL;
	}
	seg->vfs = log->vfs;
	seg->refs = 1;
	seg->base = base;
	seg->fd = -1;
	seg->size = UINT64_MAX;
	seg->next_offset = base;
	seg->max_ts = INT64_MIN;
	seg->first_ts = INT64_MIN;
	seg->created_ms = INT64_MIN;
	seg->corrupt_pos = UINT64_MAX;
	return seg;
}

void sl_segment_free_index(sl_segment *seg)
{
	free(seg->idx);
	free(seg->tidx);
	seg->idx = NULL;
	seg->tidx = NULL;
	seg->nidx = seg->idx_cap = 0;
	seg->ntidx = seg->tidx_cap = 0;
	seg->loaded = false;
}

void sl_segment_ref(sl_segment *seg)
{
	__atomic_add_fetch(&seg->refs, 1, __ATOMIC_RELAXED);
}

void sl_segment_unref(sl_segment *seg)
{
	if (__atomic_sub_fetch(&seg->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (seg->fd >= 0)
		seg->vfs->close(seg->vfs, seg->fd);
	sl_segment_free_index(seg);
	free(seg->path);
	free(seg);
}

int sl_segment_open_fd(sl_log *log, sl_segment *seg)
{
	if (seg->fd >= 0)
		return SL_OK;
	/* Read-write even when sealed: a truncation can make it active. */
	int fd = log->vfs->open(log->vfs, seg->path, O_RDWR, 0644);
	if (fd < 0)
		return sl_log_errf(log, SL_ESTORAGE, "open %s: %s", seg->path, strerror(-fd));
	seg->fd = fd;
	if (seg->sealed)
		log->open_sealed++;
	if (seg->size == UINT64_MAX) {
		uint64_t size;
		int rv = log->vfs->fsize(log->vfs, fd, &size);
		if (rv < 0)
			return sl_log_errf(log, SL_ESTORAGE, "stat %s: %s", seg->path, strerror(-rv));
		seg->size = size;
	}
	return SL_OK;
}

void sl_segment_close_fd(sl_log *log, sl_segment *seg)
{
	if (seg->fd < 0)
		return;
	log->vfs->close(log->vfs, seg->fd);
	seg->fd = -1;
	if (seg->sealed)
		log->open_sealed--;
}

/* ---- In-memory indexes ---------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return SL_OK;
	size_t ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	void *p = realloc(*arr, ncap * elem);
	if (p == NULL)
		return SL_ENOMEM;
	*arr = p;
	*cap = ncap;
	return SL_OK;
}

int sl_segment_index_batch(sl_log *log, sl_segment *seg, uint64_t pos,
			   const struct sl_batch_header *h)
{
	uint32_t rel = (uint32_t)(h->base_offset - seg->base);
	int rv;
	if (seg->nidx == 0 || pos - seg->last_idx_pos >= log->cfg.index_interval) {
		rv = grow((void **)&seg->idx, &seg->idx_cap, seg->nidx + 1, sizeof(*seg->idx));
		if (rv != SL_OK)
			return rv;
		seg->idx[seg->nidx++] = (struct sl_index_entry){ .rel = rel, .pos = (uint32_t)pos };
		seg->last_idx_pos = pos;
	}
	if (h->max_timestamp > seg->max_ts) {
		if (seg->ntidx > 0 && pos - seg->last_tidx_pos < log->cfg.index_interval) {
			/* Within the interval: move the newest entry forward. */
			seg->tidx[seg->ntidx - 1] =
				(struct sl_time_entry){ .ts = h->max_timestamp, .rel = rel };
		} else {
			rv = grow((void **)&seg->tidx, &seg->tidx_cap, seg->ntidx + 1,
				  sizeof(*seg->tidx));
			if (rv != SL_OK)
				return rv;
			seg->tidx[seg->ntidx++] =
				(struct sl_time_entry){ .ts = h->max_timestamp, .rel = rel };
			seg->last_tidx_pos = pos;
		}
		seg->max_ts = h->max_timestamp;
	}
	/* The segment's age (segment_ms) counts from its first batch with a
	 * timestamp: Raft's control batches carry 0, and taking that for 1970
	 * rolled a new segment at the first append after every reopen. */
	if (seg->first_ts == INT64_MIN && h->first_timestamp > 0)
		seg->first_ts = h->first_timestamp;
	seg->next_offset = sl_batch_last_offset(h) + 1;
	seg->last_pos = pos;
	seg->last_crc = h->crc;
	return SL_OK;
}

uint64_t sl_segment_lookup(const sl_segment *seg, int64_t offset)
{
	if (offset <= seg->base || seg->nidx == 0)
		return 0;
	uint64_t rel = (uint64_t)(offset - seg->base);
	size_t lo = 0, hi = seg->nidx; /* answer in [lo, hi) */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (seg->idx[mid].rel <= rel)
			lo = mid;
		else
			hi = mid;
	}
	return seg->idx[lo].rel <= rel ? seg->idx[lo].pos : 0;
}

/* ---- Reading batches ------------------------------------------------ */

void sl_reader_init(struct sl_reader *r, sl_vfs *vfs, int fd, uint64_t limit, uint32_t max_batch)
{
	memset(r, 0, sizeof(*r));
	r->vfs = vfs;
	r->fd = fd;
	r->limit = limit;
	r->max_batch = max_batch;
}

void sl_reader_free(struct sl_reader *r)
{
	free(r->buf);
	r->buf = NULL;
}

/* Makes [pos, pos + len) present in the buffer; len <= limit - pos. */
static int reader_fill(struct sl_reader *r, uint64_t pos, size_t len)
{
	if (pos >= r->buf_pos && pos + len <= r->buf_pos + r->buf_len)
		return SL_OK;
	size_t want = len < (64u << 10) ? (64u << 10) : len;
	if (want > r->limit - pos)
		want = (size_t)(r->limit - pos);
	if (want > r->cap) {
		uint8_t *nb = realloc(r->buf, want);
		if (nb == NULL)
			return SL_ENOMEM;
		r->buf = nb;
		r->cap = want;
	}
	ssize_t n = r->vfs->pread(r->vfs, r->fd, r->buf, want, pos);
	if (n < 0)
		return SL_EIO;
	r->buf_pos = pos;
	r->buf_len = (size_t)n;
	if ((size_t)n < len)
		return SL_EBATCH_TRUNCATED;
	return SL_OK;
}

int sl_reader_batch(struct sl_reader *r, uint64_t pos, bool whole,
		    struct sl_batch_header *h, const uint8_t **bytes)
{
	if (pos >= r->limit || r->limit - pos < SL_BATCH_HEADER_SIZE)
		return SL_EBATCH_TRUNCATED;
	int rv = reader_fill(r, pos, SL_BATCH_HEADER_SIZE);
	if (rv != SL_OK)
		return rv;
	const uint8_t *p = r->buf + (pos - r->buf_pos);
	rv = sl_batch_parse_header(p, SL_BATCH_HEADER_SIZE, r->max_batch, h);
	if (rv != SL_OK)
		return rv;
	size_t total = sl_batch_total_size(h);
	if (r->limit - pos < total)
		return SL_EBATCH_TRUNCATED;
	if (!whole)
		return SL_OK;
	rv = reader_fill(r, pos, total);
	if (rv != SL_OK)
		return rv;
	p = r->buf + (pos - r->buf_pos);
	rv = sl_batch_check(p, total, r->max_batch, h);
	if (rv != SL_OK)
		return rv;
	if (bytes != NULL)
		*bytes = p;
	return SL_OK;
}

int sl_segment_scan(sl_log *log, sl_segment *seg, uint64_t pos, uint64_t file_size,
		    uint64_t *end, int *err)
{
	struct sl_reader r;
	sl_reader_init(&r, log->vfs, seg->fd, file_size, log->cfg.max_batch_bytes);
	int rv = SL_OK;
	*err = SL_OK;
	while (pos < file_size) {
		struct sl_batch_header h;
		int brv = sl_reader_batch(&r, pos, true, &h, NULL);
		if (brv == SL_EIO || brv == SL_ENOMEM) {
			rv = brv;
			break;
		}
		if (brv == SL_OK && h.base_offset < seg->next_offset)
			brv = SL_ELOG_OFFSET_ORDER;
		if (brv == SL_OK && sl_batch_last_offset(&h) - seg->base > (int64_t)UINT32_MAX - 1)
			brv = SL_ELOG_OFFSET_ORDER;
		if (brv != SL_OK) {
			*err = brv;
			break;
		}
		rv = sl_segment_index_batch(log, seg, pos, &h);
		if (rv != SL_OK)
			break;
		pos += sl_batch_total_size(&h);
	}
	sl_reader_free(&r);
	*end = pos;
	if (rv == SL_EIO)
		return sl_log_errf(log, SL_ESTORAGE, "read %s: I/O error", seg->path);
	return rv;
}

/* ---- Index files ---------------------------------------------------- */

static void trailer_encode(const struct sl_index_trailer *t, uint8_t *p)
{
	le32_put(p + 0, t->magic);
	le32_put(p + 4, t->version);
	le32_put(p + 8, t->nidx);
	le32_put(p + 12, t->ntidx);
	le64_put(p + 16, (uint64_t)t->base);
	le64_put(p + 24, t->log_size);
	le64_put(p + 32, (uint64_t)t->next_offset);
	le64_put(p + 40, (uint64_t)t->max_ts);
	le64_put(p + 48, (uint64_t)t->first_ts);
	le64_put(p + 56, t->last_pos);
	le32_put(p + 64, t->last_crc);
	/* p + 68: the CRC, written by the caller once everything is in place */
}

static void trailer_decode(const uint8_t *p, struct sl_index_trailer *t)
{
	t->magic = le32_get(p + 0);
	t->version = le32_get(p + 4);
	t->nidx = le32_get(p + 8);
	t->ntidx = le32_get(p + 12);
	t->base = (int64_t)le64_get(p + 16);
	t->log_size = le64_get(p + 24);
	t->next_offset = (int64_t)le64_get(p + 32);
	t->max_ts = (int64_t)le64_get(p + 40);
	t->first_ts = (int64_t)le64_get(p + 48);
	t->last_pos = le64_get(p + 56);
	t->last_crc = le32_get(p + 64);
	t->crc = le32_get(p + 68);
}

int sl_segment_write_index(sl_log *log, sl_segment *seg, const char *path)
{
	size_t len = seg->nidx * 8 + seg->ntidx * 12 + INDEX_TRAILER_SIZE;
	uint8_t *buf = malloc(len);
	if (buf == NULL)
		return SL_ENOMEM;
	uint8_t *p = buf;
	for (size_t i = 0; i < seg->nidx; i++, p += 8) {
		le32_put(p, seg->idx[i].rel);
		le32_put(p + 4, seg->idx[i].pos);
	}
	for (size_t i = 0; i < seg->ntidx; i++, p += 12) {
		le64_put(p, (uint64_t)seg->tidx[i].ts);
		le32_put(p + 8, seg->tidx[i].rel);
	}
	struct sl_index_trailer t = {
		.magic = INDEX_MAGIC,
		.version = INDEX_VERSION,
		.nidx = (uint32_t)seg->nidx,
		.ntidx = (uint32_t)seg->ntidx,
		.base = seg->base,
		.log_size = seg->size,
		.next_offset = seg->next_offset,
		.max_ts = seg->max_ts,
		.first_ts = seg->first_ts,
		.last_pos = seg->last_pos,
		.last_crc = seg->last_crc,
	};
	trailer_encode(&t, p);
	le32_put(p + 68, sl_crc32c(0, buf, len - 4));

	int rv = SL_OK;
	int fd = log->vfs->open(log->vfs, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		free(buf);
		return sl_log_errf(log, SL_ESTORAGE, "create %s: %s", path, strerror(-fd));
	}
	ssize_t n = log->vfs->pwrite(log->vfs, fd, buf, len, 0);
	if (n != (ssize_t)len)
		rv = sl_log_errf(log, SL_ESTORAGE, "write %s: %s", path,
				 n < 0 ? strerror((int)-n) : "short write");
	else if ((n = log->vfs->fdatasync(log->vfs, fd)) < 0)
		rv = sl_log_errf(log, SL_ESTORAGE, "fdatasync %s: %s", path, strerror((int)-n));
	log->vfs->close(log->vfs, fd);
	free(buf);
	return rv;
}

/* Reads the index file's trailer and checks it against the .log file
 * (descriptor open, size known). Returns the file's bytes when want_all,
 * NULL (with *ok false) when the index is missing or stale. */
static uint8_t *index_read(sl_log *log, sl_segment *seg, bool want_all,
			   struct sl_index_trailer *t, bool *ok)
{
	char path[PATH_MAX];
	uint64_t size;
	uint8_t tail[INDEX_TRAILER_SIZE];
	uint8_t *buf = NULL;
	*ok = false;
	sl_segment_path(log, seg->base, SEG_INDEX_SUFFIX, path);
	int fd = log->vfs->open(log->vfs, path, O_RDONLY, 0);
	if (fd < 0)
		return NULL;
	if (log->vfs->fsize(log->vfs, fd, &size) < 0 || size < INDEX_TRAILER_SIZE)
		goto out;
	if (log->vfs->pread(log->vfs, fd, tail, sizeof(tail), size - sizeof(tail)) !=
	    (ssize_t)sizeof(tail))
		goto out;
	trailer_decode(tail, t);
	if (t->magic != INDEX_MAGIC || t->version != INDEX_VERSION || t->base != seg->base ||
	    t->log_size != seg->size ||
	    size != (uint64_t)t->nidx * 8 + (uint64_t)t->ntidx * 12 + INDEX_TRAILER_SIZE)
		goto out;
	if (t->log_size > 0) {
		/* The .log must still end with the batch the index ends with:
		 * same place, same CRC, same offsets (those are outside the
		 * CRC: a batch re-appended at other offsets must not match). */
		uint8_t hb[SL_BATCH_HEADER_SIZE];
		struct sl_batch_header h;
		if (t->last_pos + SL_BATCH_HEADER_SIZE > t->log_size ||
		    log->vfs->pread(log->vfs, seg->fd, hb, sizeof(hb), t->last_pos) != (ssize_t)sizeof(hb) ||
		    sl_batch_parse_header(hb, sizeof(hb), UINT32_MAX, &h) != SL_OK)
			goto out;
		if (h.crc != t->last_crc || sl_batch_last_offset(&h) + 1 != t->next_offset ||
		    t->last_pos + sl_batch_total_size(&h) != t->log_size)
			goto out;
	}
	if (!want_all) {
		*ok = true;
		goto out;
	}
	buf = malloc(size);
	if (buf == NULL || log->vfs->pread(log->vfs, fd, buf, size, 0) != (ssize_t)size ||
	    sl_crc32c(0, buf, size - 4) != t->crc) {
		free(buf);
		buf = NULL;
		goto out;
	}
	*ok = true;
out:
	log->vfs->close(log->vfs, fd);
	return buf;
}

/* Loads the index of seg from its file into memory; false if stale. */
static bool index_load(sl_log *log, sl_segment *seg)
{
	struct sl_index_trailer t;
	bool ok;
	uint8_t *buf = index_read(log, seg, true, &t, &ok);
	if (!ok)
		return false;
	sl_segment_free_index(seg);
	seg->idx = malloc((t.nidx ? t.nidx : 1) * sizeof(*seg->idx));
	seg->tidx = malloc((t.ntidx ? t.ntidx : 1) * sizeof(*seg->tidx));
	if (seg->idx == NULL || seg->tidx == NULL) {
		sl_segment_free_index(seg);
		free(buf);
		return false;
	}
	const uint8_t *p = buf;
	for (uint32_t i = 0; i < t.nidx; i++, p += 8)
		seg->idx[i] = (struct sl_index_entry){ .rel = le32_get(p), .pos = le32_get(p + 4) };
	for (uint32_t i = 0; i < t.ntidx; i++, p += 12)
		seg->tidx[i] = (struct sl_time_entry){ .ts = (int64_t)le64_get(p), .rel = le32_get(p + 8) };
	seg->nidx = seg->idx_cap = t.nidx;
	seg->ntidx = seg->tidx_cap = t.ntidx;
	seg->last_idx_pos = t.nidx ? seg->idx[t.nidx - 1].pos : 0;
	seg->last_tidx_pos = seg->last_idx_pos; /* conservative */
	seg->next_offset = t.next_offset;
	seg->max_ts = t.max_ts;
	seg->first_ts = t.first_ts;
	seg->last_pos = t.last_pos;
	seg->last_crc = t.last_crc;
	seg->have_max = true;
	free(buf);
	return true;
}

int sl_segment_load(sl_log *log, sl_segment *seg)
{
	seg->lru = ++log->tick;
	int rv = sl_segment_open_fd(log, seg);
	if (rv != SL_OK || seg->loaded)
		return rv;
	if (index_load(log, seg)) {
		seg->loaded = true;
		return SL_OK;
	}
	/* Missing or stale index: scan, checking every batch, and rewrite it.
	 * A bad batch here is corruption of sealed data: remember where. */
	sl_segment_free_index(seg);
	seg->next_offset = seg->base;
	seg->max_ts = INT64_MIN;
	seg->first_ts = INT64_MIN;
	seg->have_max = false; /* until the scan completes */
	uint64_t end;
	int err;
	rv = sl_segment_scan(log, seg, 0, seg->size, &end, &err);
	if (rv != SL_OK) {
		sl_segment_free_index(seg);
		return rv;
	}
	seg->verified = end;
	seg->have_max = true;
	seg->loaded = true;
	if (end < seg->size) {
		seg->corrupt_pos = end;
		return SL_OK; /* reads report it; the index is not rewritten */
	}
	if (!seg->sealed)
		return SL_OK; /* the active segment's index lives in memory */
	char path[PATH_MAX];
	sl_segment_path(log, seg->base, SEG_INDEX_SUFFIX, path);
	/* Best effort: a failure only means the next load scans again. */
	if (sl_segment_write_index(log, seg, path) != SL_OK)
		log->errmsg[0] = '\0';
	return SL_OK;
}

int sl_segment_max_ts(sl_log *log, sl_segment *seg, int64_t *max_ts)
{
	if (!seg->have_max) {
		int rv = sl_segment_open_fd(log, seg);
		if (rv != SL_OK)
			return rv;
		struct sl_index_trailer t;
		bool ok;
		index_read(log, seg, false, &t, &ok);
		if (ok) {
			seg->max_ts = t.max_ts;
			seg->have_max = true;
		} else if ((rv = sl_segment_load(log, seg)) != SL_OK) {
			return rv;
		}
	}
	*max_ts = seg->max_ts;
	return SL_OK;
}

int sl_segment_size(sl_log *log, sl_segment *seg, uint64_t *size)
{
	if (seg->size == UINT64_MAX) {
		/* Without keeping a descriptor: retention may ask for all. */
		int fd = log->vfs->open(log->vfs, seg->path, O_RDONLY, 0);
		if (fd < 0)
			return sl_log_errf(log, SL_ESTORAGE, "open %s: %s", seg->path, strerror(-fd));
		int rv = log->vfs->fsize(log->vfs, fd, &seg->size);
		log->vfs->close(log->vfs, fd);
		if (rv < 0) {
			seg->size = UINT64_MAX;
			return sl_log_errf(log, SL_ESTORAGE, "stat %s: %s", seg->path, strerror(-rv));
		}
	}
	*size = seg->size;
	return SL_OK;
}
