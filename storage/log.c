/* The partition log: open and recovery, append, flush, read, time lookup,
 * truncation, reset and retention. Compaction is in compact.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage_int.h"

#define MIB (1024u * 1024u)

void sl_log_config_init(struct sl_log_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->segment_bytes = 1ull << 30;
	cfg->segment_ms = 7ll * 24 * 3600 * 1000;
	cfg->index_interval = 4096;
	cfg->max_batch_bytes = 16 * MIB;
	cfg->prewrite = SL_PREWRITE_ZERO;
	cfg->prewrite_min = 64 * 1024;
	cfg->prewrite_max = 8 * MIB;
	cfg->retention_bytes = -1;
	cfg->retention_ms = 7ll * 24 * 3600 * 1000;
	cfg->cleanup = SL_CLEANUP_DELETE;
	cfg->delete_retention_ms = 24ll * 3600 * 1000;
	cfg->compact_map_bytes = 16 * MIB;
	cfg->verify_append_crc = true;
}

int sl_log_errf(sl_log *log, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(log->errmsg, sizeof(log->errmsg), fmt, ap);
	va_end(ap);
	return err;
}

int64_t sl_log_now_ms(const sl_log *log)
{
	if (log->cfg.now_ms != NULL)
		return log->cfg.now_ms(log->cfg.now_arg);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static sl_segment *active(sl_log *log)
{
	return log->segs[log->nsegs - 1];
}

const char *sl_log_errmsg(sl_log *log)
{
	return log->errmsg;
}

/* Fails every write of a fenced log. */
static int fenced(sl_log *log)
{
	if (!log->fenced)
		return SL_OK;
	return sl_log_errf(log, SL_ESTORAGE,
			   "%s: a write or fdatasync failed earlier; reopen the log to recover it",
			   log->dir);
}

/* fdatasync of seg's file; a failure fences the log. */
static int sync_fd(sl_log *log, sl_segment *seg)
{
	int rv = log->vfs->fdatasync(log->vfs, seg->fd);
	if (rv == 0)
		return SL_OK;
	log->fenced = true;
	return sl_log_errf(log, SL_ESTORAGE, "fdatasync %s: %s (the log is fenced until reopened)",
			   seg->path, strerror(-rv));
}

/* ---- Segment list --------------------------------------------------- */

static int segs_push(sl_log *log, sl_segment *seg)
{
	if (log->nsegs == log->segs_cap) {
		size_t ncap = log->segs_cap ? log->segs_cap * 2 : 8;
		sl_segment **p = realloc(log->segs, ncap * sizeof(*p));
		if (p == NULL)
			return SL_ENOMEM;
		log->segs = p;
		log->segs_cap = ncap;
	}
	log->segs[log->nsegs++] = seg;
	return SL_OK;
}

/* Index of the last segment whose base is <= offset (0 if none). */
static size_t segs_find(const sl_log *log, int64_t offset)
{
	size_t lo = 0, hi = log->nsegs;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (log->segs[mid]->base <= offset)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Drops segment i from the list and deletes its files (not synced: the
 * caller syncs the directory once). */
static int segs_delete(sl_log *log, size_t i)
{
	sl_segment *seg = log->segs[i];
	char path[PATH_MAX];
	int rv = log->vfs->unlink(log->vfs, seg->path);
	if (rv < 0 && rv != -ENOENT)
		return sl_log_errf(log, SL_ESTORAGE, "unlink %s: %s", seg->path, strerror(-rv));
	sl_segment_path(log, seg->base, SEG_INDEX_SUFFIX, path);
	log->vfs->unlink(log->vfs, path);
	memmove(&log->segs[i], &log->segs[i + 1], (log->nsegs - i - 1) * sizeof(*log->segs));
	log->nsegs--;
	seg->removed = true;
	if (seg->sealed && seg->fd >= 0) {
		log->open_sealed--;
		seg->sealed = false; /* the descriptor no longer counts as cached */
	}
	sl_segment_unref(seg);
	return SL_OK;
}

/* Keeps at most SEG_OPEN_SEALED_MAX sealed segments open (and their index
 * in memory), closing the least recently used ones no slice pins. */
static void trim_open_sealed(sl_log *log)
{
	while (log->open_sealed > SEG_OPEN_SEALED_MAX) {
		sl_segment *victim = NULL;
		for (size_t i = 0; i + 1 < log->nsegs; i++) {
			sl_segment *seg = log->segs[i];
			if (seg->fd >= 0 && seg->sealed &&
			    __atomic_load_n(&seg->refs, __ATOMIC_ACQUIRE) == 1 &&
			    (victim == NULL || seg->lru < victim->lru))
				victim = seg;
		}
		if (victim == NULL)
			return;
		sl_segment_close_fd(log, victim);
		sl_segment_free_index(victim);
	}
}

/* Creates an empty segment file at base and makes it the active one. */
static int create_active(sl_log *log, int64_t base)
{
	sl_segment *seg = sl_segment_new(log, base);
	if (seg == NULL)
		return SL_ENOMEM;
	int fd = log->vfs->open(log->vfs, seg->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		int rv = sl_log_errf(log, SL_ESTORAGE, "create %s: %s", seg->path, strerror(-fd));
		sl_segment_unref(seg);
		return rv;
	}
	seg->fd = fd;
	seg->size = 0;
	seg->loaded = true;
	seg->have_max = true;
	seg->window_chunk = log->cfg.prewrite_min;
	int rv = log->vfs->fsync_dir(log->vfs, log->dir);
	if (rv < 0) {
		log->vfs->unlink(log->vfs, seg->path);
		sl_segment_unref(seg);
		return sl_log_errf(log, SL_ESTORAGE, "fsync %s: %s", log->dir, strerror(-rv));
	}
	rv = segs_push(log, seg);
	if (rv != SL_OK)
		sl_segment_unref(seg);
	return rv;
}

/* Cuts the pre-written window off the active segment. */
static int trim_window(sl_log *log, sl_segment *seg)
{
	if (seg->window_end <= seg->size)
		return SL_OK;
	int rv = log->vfs->ftruncate(log->vfs, seg->fd, seg->size);
	if (rv < 0)
		return sl_log_errf(log, SL_ESTORAGE, "truncate %s: %s", seg->path, strerror(-rv));
	seg->window_end = seg->size;
	return SL_OK;
}

/* Seals the active segment and starts a new one at base. */
static int roll(sl_log *log, int64_t base)
{
	sl_segment *seg = active(log);
	char path[PATH_MAX];
	int rv = trim_window(log, seg);
	if (rv != SL_OK)
		return rv;
	if ((rv = sync_fd(log, seg)) != SL_OK)
		return rv;
	sl_segment_path(log, seg->base, SEG_INDEX_SUFFIX, path);
	rv = sl_segment_write_index(log, seg, path);
	if (rv != SL_OK)
		return rv;
	rv = create_active(log, base);
	if (rv != SL_OK)
		return rv;
	seg->sealed = true;
	seg->have_max = true;
	seg->lru = ++log->tick;
	log->open_sealed++;
	if (log->durable < seg->next_offset)
		log->durable = seg->next_offset;
	trim_open_sealed(log);
	return SL_OK;
}

/* ---- Open and close ------------------------------------------------- */

struct scan_dir {
	sl_log *log;
	int64_t *bases;
	size_t n, cap;
	int err;
};

/* Parses "<20 digits><suffix>" and returns the base, or -1. */
static int64_t parse_name(const char *name, const char *suffix)
{
	size_t len = strlen(name), slen = strlen(suffix);
	if (len != SEG_NAME_DIGITS + slen || strcmp(name + SEG_NAME_DIGITS, suffix) != 0)
		return -1;
	int64_t v = 0;
	for (int i = 0; i < SEG_NAME_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -1;
		if (v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (name[i] - '0');
	}
	return v;
}

static int scan_dir_entry(void *arg, const char *name)
{
	struct scan_dir *sd = arg;
	sl_log *log = sd->log;
	char path[PATH_MAX];
	size_t len = strlen(name), clen = strlen(SEG_CLEANED_SUFFIX);
	if (len > clen && strcmp(name + len - clen, SEG_CLEANED_SUFFIX) == 0) {
		/* Leftover of a compaction that never finished its swap. */
		snprintf(path, sizeof(path), "%s/%s", log->dir, name);
		log->vfs->unlink(log->vfs, path);
		return 0;
	}
	int64_t base = parse_name(name, SEG_LOG_SUFFIX);
	if (base < 0)
		return 0; /* indexes are matched later; other files are not ours */
	if (sd->n == sd->cap) {
		size_t ncap = sd->cap ? sd->cap * 2 : 64;
		int64_t *p = realloc(sd->bases, ncap * sizeof(*p));
		if (p == NULL)
			return SL_ENOMEM;
		sd->bases = p;
		sd->cap = ncap;
	}
	sd->bases[sd->n++] = base;
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

struct orphan_scan {
	sl_log *log;
	const int64_t *bases;
	size_t n;
};

static int orphan_entry(void *arg, const char *name)
{
	struct orphan_scan *os = arg;
	int64_t base = parse_name(name, SEG_INDEX_SUFFIX);
	if (base < 0)
		return 0;
	if (os->n == 0 || bsearch(&base, os->bases, os->n, sizeof(*os->bases), cmp_i64) == NULL) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", os->log->dir, name);
		os->log->vfs->unlink(os->log->vfs, path);
	}
	return 0;
}

/* Opens the active segment: trusts its index file if a clean close left
 * one that matches, else scans it and cuts a torn or corrupt tail. */
static int recover_active(sl_log *log)
{
	sl_segment *seg = active(log);
	char path[PATH_MAX];
	sl_segment_path(log, seg->base, SEG_INDEX_SUFFIX, path);
	int rv = sl_segment_load(log, seg); /* the sealed=false load: index or scan */
	if (rv != SL_OK)
		return rv;
	/* The active segment's index lives in memory; a file left on disk
	 * could go stale unnoticed after a truncation, so it goes now, for
	 * good (a crash must not bring it back). */
	if (log->vfs->unlink(log->vfs, path) == 0 &&
	    (rv = log->vfs->fsync_dir(log->vfs, log->dir)) < 0)
		return sl_log_errf(log, SL_ESTORAGE, "fsync %s: %s", log->dir, strerror(-rv));
	if (seg->corrupt_pos != UINT64_MAX) {
		/* A torn or corrupt tail: cut at the last whole batch. */
		rv = log->vfs->ftruncate(log->vfs, seg->fd, seg->corrupt_pos);
		if (rv < 0)
			return sl_log_errf(log, SL_ESTORAGE, "truncate %s to %" PRIu64 ": %s",
					   seg->path, seg->corrupt_pos, strerror(-rv));
		seg->size = seg->corrupt_pos;
		seg->corrupt_pos = UINT64_MAX;
	}
	/* Data a killed process left in the page cache becomes durable now. */
	if ((rv = sync_fd(log, seg)) != SL_OK)
		return rv;
	/* Batches the scan checked count as verified; an index trusted from
	 * a clean close left verified at 0, so reads check CRCs lazily. */
	seg->window_end = seg->size;
	seg->window_chunk = log->cfg.prewrite_min;
	/* Its age counts from its first batch's timestamp when that is
	 * plausible (not in the future), from now otherwise. */
	if (seg->size > 0) {
		int64_t now = sl_log_now_ms(log);
		seg->created_ms = seg->first_ts != INT64_MIN && seg->first_ts <= now ? seg->first_ts : now;
	}
	return SL_OK;
}

static int check_config(const struct sl_log_config *cfg, char *why, size_t n)
{
	if (cfg->segment_bytes < 4096 || cfg->segment_bytes > SEG_MAX_BYTES)
		snprintf(why, n, "segment_bytes %" PRIu64 " is outside [4096, %llu]",
			 cfg->segment_bytes, SEG_MAX_BYTES);
	else if (cfg->index_interval == 0)
		snprintf(why, n, "index_interval must be positive");
	else if (cfg->max_batch_bytes < SL_BATCH_HEADER_SIZE || cfg->max_batch_bytes > (1u << 30))
		snprintf(why, n, "max_batch_bytes %u is outside [%d, 1 GiB]",
			 cfg->max_batch_bytes, SL_BATCH_HEADER_SIZE);
	else if (cfg->prewrite_min == 0 || cfg->prewrite_min > cfg->prewrite_max)
		snprintf(why, n, "prewrite_min must be positive and <= prewrite_max");
	else if ((unsigned)cfg->prewrite > SL_PREWRITE_FALLOCATE)
		snprintf(why, n, "unknown prewrite strategy %d", (int)cfg->prewrite);
	else
		return SL_OK;
	return SL_EINVALID_ARGUMENT;
}

int sl_log_open(const char *dir, const struct sl_log_config *cfg, sl_vfs *vfs,
		sl_log **out, char *errmsg)
{
	struct sl_log_config defaults;
	char why[128];
	int rv;
	*out = NULL;
	if (cfg == NULL) {
		sl_log_config_init(&defaults);
		cfg = &defaults;
	}
	if ((rv = check_config(cfg, why, sizeof(why))) != SL_OK) {
		if (errmsg != NULL)
			snprintf(errmsg, SL_ERRMSG_SIZE, "%.100s: %s", dir, why);
		return rv;
	}
	sl_log *log = calloc(1, sizeof(*log));
	if (log == NULL)
		return SL_ENOMEM;
	log->vfs = vfs != NULL ? vfs : sl_vfs_posix();
	log->cfg = *cfg;
	log->dir = strdup(dir);
	pthread_mutex_init(&log->mu, NULL);
	struct scan_dir sd = { .log = log };
	if (log->dir == NULL) {
		rv = SL_ENOMEM;
		goto fail;
	}
	rv = log->vfs->mkdir(log->vfs, dir, 0755);
	if (rv < 0 && rv != -EEXIST) {
		rv = sl_log_errf(log, SL_ESTORAGE, "mkdir %s: %s", dir, strerror(-rv));
		goto fail;
	}
	if (rv == 0 && (rv = sl_vfs_sync_parent(log->vfs, dir)) < 0) {
		/* The new directory's entry must survive a crash too. */
		rv = sl_log_errf(log, SL_ESTORAGE, "fsync the parent of %s: %s", dir, strerror(-rv));
		goto fail;
	}
	rv = log->vfs->list_dir(log->vfs, dir, scan_dir_entry, &sd);
	if (rv != 0) {
		rv = rv < 0 ? sl_log_errf(log, SL_ESTORAGE, "list %s: %s", dir, strerror(-rv)) : rv;
		goto fail;
	}
	if (sd.n > 1)
		qsort(sd.bases, sd.n, sizeof(*sd.bases), cmp_i64);
	struct orphan_scan os = { .log = log, .bases = sd.bases, .n = sd.n };
	log->vfs->list_dir(log->vfs, dir, orphan_entry, &os);
	for (size_t i = 0; i < sd.n; i++) {
		sl_segment *seg = sl_segment_new(log, sd.bases[i]);
		if (seg == NULL || segs_push(log, seg) != SL_OK) {
			if (seg != NULL)
				sl_segment_unref(seg);
			rv = SL_ENOMEM;
			goto fail;
		}
		seg->sealed = i + 1 < sd.n;
	}
	if (log->nsegs == 0)
		rv = create_active(log, 0);
	else
		rv = recover_active(log);
	if (rv != SL_OK)
		goto fail;
	log->durable = active(log)->next_offset;
	log->clean_upto = -1;
	free(sd.bases);
	*out = log;
	return SL_OK;
fail:
	if (errmsg != NULL)
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s",
			 log->errmsg[0] ? log->errmsg : sl_strerror(rv));
	free(sd.bases);
	for (size_t i = 0; i < log->nsegs; i++)
		sl_segment_unref(log->segs[i]);
	free(log->segs);
	free(log->dir);
	pthread_mutex_destroy(&log->mu);
	free(log);
	return rv;
}

int sl_log_close(sl_log *log)
{
	if (log == NULL)
		return SL_OK;
	pthread_mutex_lock(&log->mu);
	char path[PATH_MAX];
	int rv = log->nsegs == 0 ? SL_ESTORAGE : fenced(log);
	sl_segment *seg = rv == SL_OK ? active(log) : NULL;
	if (rv == SL_OK)
		rv = trim_window(log, seg);
	if (rv == SL_OK)
		rv = sync_fd(log, seg);
	if (rv == SL_OK && seg->corrupt_pos == UINT64_MAX) {
		/* Lets the next open trust the active segment without a scan. */
		sl_segment_path(log, seg->base, SEG_INDEX_SUFFIX, path);
		rv = sl_segment_write_index(log, seg, path);
	}
	for (size_t i = 0; i < log->nsegs; i++)
		sl_segment_unref(log->segs[i]);
	pthread_mutex_unlock(&log->mu);
	pthread_mutex_destroy(&log->mu);
	free(log->segs);
	free(log->dir);
	free(log);
	return rv;
}

/* ---- Append and flush ----------------------------------------------- */

static int ensure_window(sl_log *log, sl_segment *seg, uint64_t need_end)
{
	static uint8_t zeros[256 * 1024]; /* never written */
	if (log->cfg.prewrite == SL_PREWRITE_NONE || need_end <= seg->window_end)
		return SL_OK;
	int64_t now = mono_ms();
	if (seg->window_at_ms != 0) {
		/* The window follows the write rate: about a second of writes. */
		int64_t age = now - seg->window_at_ms;
		if (age < 1000 && seg->window_chunk < log->cfg.prewrite_max)
			seg->window_chunk *= 2;
		else if (age > 10000 && seg->window_chunk > log->cfg.prewrite_min)
			seg->window_chunk /= 2;
	}
	if (seg->window_chunk < log->cfg.prewrite_min)
		seg->window_chunk = log->cfg.prewrite_min;
	if (seg->window_chunk > log->cfg.prewrite_max)
		seg->window_chunk = log->cfg.prewrite_max;
	uint64_t from = seg->window_end > seg->size ? seg->window_end : seg->size;
	uint64_t to = (need_end + seg->window_chunk + 4095) & ~4095ull;
	if (to > log->cfg.segment_bytes && need_end <= log->cfg.segment_bytes)
		to = (log->cfg.segment_bytes + 4095) & ~4095ull;
	if (to < need_end)
		to = need_end;
	int rv = 0;
	if (log->cfg.prewrite == SL_PREWRITE_FALLOCATE) {
		rv = log->vfs->fallocate(log->vfs, seg->fd, from, to - from);
	} else {
		for (uint64_t off = from; off < to && rv >= 0;) {
			size_t n = to - off < sizeof(zeros) ? (size_t)(to - off) : sizeof(zeros);
			ssize_t w = log->vfs->pwrite(log->vfs, seg->fd, zeros, n, off);
			rv = w < 0 ? (int)w : 0;
			off += n;
		}
	}
	if (rv < 0)
		return sl_log_errf(log, SL_ESTORAGE, "pre-write %s: %s", seg->path, strerror(-rv));
	seg->window_end = to;
	seg->window_at_ms = now;
	return SL_OK;
}

/* Writes buf[0..len), whole batches, at the end of the active segment. */
static int write_run(sl_log *log, const uint8_t *buf, size_t len)
{
	sl_segment *seg = active(log);
	if (len == 0)
		return SL_OK;
	int rv = ensure_window(log, seg, seg->size + len);
	if (rv != SL_OK)
		return rv;
	ssize_t n = log->vfs->pwrite(log->vfs, seg->fd, buf, len, seg->size);
	if (n != (ssize_t)len)
		return sl_log_errf(log, SL_ESTORAGE, "write %s at %" PRIu64 ": %s", seg->path,
				   seg->size, n < 0 ? strerror((int)-n) : "short write");
	for (size_t off = 0; off < len;) {
		struct sl_batch_header h;
		sl_batch_parse_header(buf + off, len - off, log->cfg.max_batch_bytes, &h);
		rv = sl_segment_index_batch(log, seg, seg->size + off, &h);
		if (rv != SL_OK)
			return rv;
		off += sl_batch_total_size(&h);
	}
	if (seg->created_ms == INT64_MIN)
		seg->created_ms = sl_log_now_ms(log);
	if (seg->verified == seg->size)
		seg->verified = seg->size + len; /* checked by sl_log_append */
	seg->size += len;
	if (seg->window_end < seg->size)
		seg->window_end = seg->size;
	return SL_OK;
}

static bool must_roll(sl_log *log, sl_segment *seg, uint64_t run,
		      const struct sl_batch_header *h)
{
	uint64_t size = seg->size + run;
	/* Offsets relative to the base must fit the index's 32 bits, also
	 * for the first batch of an empty segment far past its base. */
	if (sl_batch_last_offset(h) - seg->base > (int64_t)UINT32_MAX - 1)
		return true;
	if (size == 0)
		return false;
	if (size + sl_batch_total_size(h) > log->cfg.segment_bytes)
		return true;
	if (log->cfg.segment_ms > 0 && seg->created_ms != INT64_MIN &&
	    sl_log_now_ms(log) - seg->created_ms >= log->cfg.segment_ms)
		return true;
	return false;
}

int sl_log_append(sl_log *log, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int64_t expect = sl_log_end_offset(log);
	int rv;
	/* Check every batch before writing any. */
	for (size_t off = 0; off < len;) {
		struct sl_batch_header h;
		if (log->cfg.verify_append_crc)
			rv = sl_batch_check(p + off, len - off, log->cfg.max_batch_bytes, &h);
		else {
			rv = sl_batch_parse_header(p + off, len - off, log->cfg.max_batch_bytes, &h);
			if (rv == SL_OK && sl_batch_total_size(&h) > len - off)
				rv = SL_EBATCH_TRUNCATED;
		}
		if (rv != SL_OK)
			return sl_log_errf(log, rv, "%s: batch at byte %zu of the append: %s",
					   log->dir, off, sl_strerror(rv));
		if (h.base_offset < expect)
			return sl_log_errf(log, SL_ELOG_OFFSET_ORDER,
					   "%s: batch at byte %zu has base offset %" PRId64
					   " below the log end %" PRId64,
					   log->dir, off, h.base_offset, expect);
		expect = sl_batch_last_offset(&h) + 1;
		off += sl_batch_total_size(&h);
	}
	pthread_mutex_lock(&log->mu);
	size_t run_start = 0, off = 0;
	rv = fenced(log);
	while (off < len && rv == SL_OK) {
		struct sl_batch_header h;
		sl_batch_parse_header(p + off, len - off, log->cfg.max_batch_bytes, &h);
		if (must_roll(log, active(log), off - run_start, &h)) {
			rv = write_run(log, p + run_start, off - run_start);
			if (rv == SL_OK)
				rv = roll(log, h.base_offset);
			run_start = off;
		}
		off += sl_batch_total_size(&h);
	}
	if (rv == SL_OK)
		rv = write_run(log, p + run_start, len - run_start);
	if (rv == SL_ESTORAGE) {
		/* A write that failed (a full disk, an I/O error) left the
		 * end where it was: an append after it would leave a hole of
		 * the batches that failed (gaps are allowed, for compaction's).
		 * Whatever wrote them must find out by reopening. */
		log->fenced = true;
	}
	pthread_mutex_unlock(&log->mu);
	return rv;
}

int sl_log_flush(sl_log *log)
{
	pthread_mutex_lock(&log->mu);
	int rv = fenced(log);
	sl_segment *seg = active(log);
	int64_t end = seg->next_offset;
	pthread_mutex_unlock(&log->mu);
	if (rv != SL_OK)
		return rv;
	/* The writer is this thread, so the active segment cannot change
	 * under the sync; readers are not held up by it. */
	int s = log->vfs->fdatasync(log->vfs, seg->fd);
	pthread_mutex_lock(&log->mu);
	if (s < 0) {
		log->fenced = true;
		rv = sl_log_errf(log, SL_ESTORAGE, "fdatasync %s: %s (the log is fenced until reopened)",
				 seg->path, strerror(-s));
	} else if (log->durable < end) {
		log->durable = end;
	}
	pthread_mutex_unlock(&log->mu);
	return rv;
}

/* ---- Accessors ------------------------------------------------------ */

int64_t sl_log_start_offset(sl_log *log)
{
	pthread_mutex_lock(&log->mu);
	int64_t v = log->segs[0]->base;
	pthread_mutex_unlock(&log->mu);
	return v;
}

int64_t sl_log_end_offset(sl_log *log)
{
	pthread_mutex_lock(&log->mu);
	int64_t v = active(log)->next_offset;
	pthread_mutex_unlock(&log->mu);
	return v;
}

int64_t sl_log_durable_offset(sl_log *log)
{
	pthread_mutex_lock(&log->mu);
	int64_t v = log->durable;
	pthread_mutex_unlock(&log->mu);
	return v;
}

uint64_t sl_log_size(sl_log *log)
{
	uint64_t total = 0;
	pthread_mutex_lock(&log->mu);
	for (size_t i = 0; i < log->nsegs; i++) {
		uint64_t s;
		if (sl_segment_size(log, log->segs[i], &s) == SL_OK)
			total += s;
	}
	trim_open_sealed(log);
	pthread_mutex_unlock(&log->mu);
	return total;
}

size_t sl_log_segment_count(sl_log *log)
{
	pthread_mutex_lock(&log->mu);
	size_t n = log->nsegs;
	pthread_mutex_unlock(&log->mu);
	return n;
}

/* ---- Read ----------------------------------------------------------- */

/* Where the readable data of seg ends. */
static uint64_t data_end(const sl_segment *seg)
{
	return seg->corrupt_pos < seg->size ? seg->corrupt_pos : seg->size;
}

/* A batch at pos of seg could not be read: a disk error (not sticky), or
 * corruption, remembered so that the batch is never served. */
static int bad_batch(sl_log *log, sl_segment *seg, uint64_t pos, int brv)
{
	if (brv == SL_EIO || brv == SL_ENOMEM)
		return sl_log_errf(log, brv == SL_EIO ? SL_ESTORAGE : SL_ENOMEM,
				   "%s: reading the batch at position %" PRIu64 ": %s", seg->path, pos,
				   sl_strerror(brv));
	if (pos < seg->corrupt_pos)
		seg->corrupt_pos = pos;
	return sl_log_errf(log, SL_ELOG_CORRUPT, "%s: corrupt batch at position %" PRIu64 ": %s",
			   seg->path, pos, sl_strerror(brv));
}

/* Position of the first batch in seg whose last offset is >= offset, found
 * from the index then by walking headers; *h gets its header. Returns
 * SL_ENOT_FOUND when no such batch is in the readable data. */
static int find_batch(sl_log *log, sl_segment *seg, struct sl_reader *r, int64_t offset,
		      uint64_t *pos, struct sl_batch_header *h)
{
	uint64_t p = sl_segment_lookup(seg, offset);
	while (p < r->limit) {
		int rv = sl_reader_batch(r, p, false, h, NULL);
		if (rv != SL_OK)
			return bad_batch(log, seg, p, rv);
		if (sl_batch_last_offset(h) >= offset) {
			*pos = p;
			return SL_OK;
		}
		p += sl_batch_total_size(h);
	}
	return SL_ENOT_FOUND;
}

/* Where a read that has whole batches up to start may jump to, knowing
 * that the batches before limit are whole: the second-to-last index entry
 * at or below limit (so that the walk from there includes at least the
 * batch up to the last entry, and so learns its last offset), or start. */
static uint64_t index_floor_pos(const sl_segment *seg, uint64_t start, uint64_t limit)
{
	size_t lo = 0, hi = seg->nidx;
	while (lo < hi) { /* first entry with pos > limit */
		size_t mid = lo + (hi - lo) / 2;
		if (seg->idx[mid].pos <= limit)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < 2 || seg->idx[lo - 2].pos <= start || seg->idx[lo - 2].pos > limit)
		return start; /* (the last test guards against a forged index) */
	return seg->idx[lo - 2].pos;
}

int sl_log_read(sl_log *log, int64_t offset, uint64_t max_bytes, struct sl_slice *out)
{
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	pthread_mutex_lock(&log->mu);
	int64_t start = log->segs[0]->base, end = active(log)->next_offset;
	int rv = SL_OK;
	if (offset < start || offset > end) {
		rv = sl_log_errf(log, SL_EOFFSET_OUT_OF_RANGE,
				 "%s: offset %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]",
				 log->dir, offset, start, end);
		goto out;
	}
	out->first_offset = out->next_offset = end;
	for (size_t i = segs_find(log, offset); i < log->nsegs; i++) {
		sl_segment *seg = log->segs[i];
		if ((rv = sl_segment_load(log, seg)) != SL_OK)
			goto out;
		if (offset >= seg->next_offset && seg->corrupt_pos == UINT64_MAX)
			continue; /* in a gap after this segment's last batch */
		struct sl_reader r;
		struct sl_batch_header h;
		uint64_t pos;
		sl_reader_init(&r, log->vfs, seg->fd, data_end(seg), log->cfg.max_batch_bytes);
		rv = find_batch(log, seg, &r, offset, &pos, &h);
		if (rv == SL_ENOT_FOUND) {
			sl_reader_free(&r);
			if (seg->corrupt_pos != UINT64_MAX) {
				rv = sl_log_errf(log, SL_ELOG_CORRUPT,
						 "%s: corrupt batch at position %" PRIu64, seg->path,
						 seg->corrupt_pos);
				goto out;
			}
			rv = SL_OK;
			continue;
		}
		if (rv != SL_OK) {
			sl_reader_free(&r);
			goto out;
		}
		/* Whole batches up to max_bytes, the first one always. */
		uint64_t stop = pos + sl_batch_total_size(&h);
		int64_t next = sl_batch_last_offset(&h) + 1;
		/* Batches before an index entry within reach are whole: jump
		 * near there, then walk headers. */
		uint64_t reach = pos + max_bytes < r.limit ? pos + max_bytes : r.limit;
		stop = index_floor_pos(seg, stop, reach);
		while (stop < r.limit) {
			struct sl_batch_header nh;
			if (sl_reader_batch(&r, stop, false, &nh, NULL) != SL_OK)
				break; /* a sealed segment's bad batch: verified below */
			if (stop + sl_batch_total_size(&nh) - pos > max_bytes)
				break;
			stop += sl_batch_total_size(&nh);
			next = sl_batch_last_offset(&nh) + 1;
		}
		if (stop > seg->verified) {
			/* First read of these bytes since open: check every CRC,
			 * and that offsets rise within the segment (they are
			 * outside the CRC). */
			uint64_t q = pos;
			int64_t qnext = -1;
			int brv = SL_OK;
			while (q < stop) {
				struct sl_batch_header vh;
				brv = sl_reader_batch(&r, q, true, &vh, NULL);
				if (brv == SL_OK &&
				    (vh.base_offset < seg->base || vh.base_offset < qnext ||
				     sl_batch_last_offset(&vh) >= seg->next_offset))
					brv = SL_ELOG_OFFSET_ORDER;
				if (brv != SL_OK) {
					brv = bad_batch(log, seg, q, brv);
					break;
				}
				q += sl_batch_total_size(&vh);
				qnext = sl_batch_last_offset(&vh) + 1;
			}
			if (pos <= seg->verified && q > seg->verified)
				seg->verified = q;
			if (q == pos || brv == SL_ESTORAGE || brv == SL_ENOMEM) {
				sl_reader_free(&r);
				rv = brv;
				goto out;
			}
			if (q < stop) {
				stop = q;
				next = qnext;
			}
		}
		sl_reader_free(&r);
		sl_segment_ref(seg);
		out->seg = seg;
		out->fd = seg->fd;
		out->pos = pos;
		out->len = stop - pos;
		out->first_offset = h.base_offset;
		out->next_offset = next;
		break;
	}
out:
	trim_open_sealed(log);
	pthread_mutex_unlock(&log->mu);
	return rv;
}

int sl_slice_read(const struct sl_slice *slice, void *buf)
{
	if (slice->len == 0)
		return SL_OK;
	sl_vfs *vfs = slice->seg->vfs;
	ssize_t n = vfs->pread(vfs, slice->fd, buf, slice->len, slice->pos);
	return n == (ssize_t)slice->len ? SL_OK : SL_ESTORAGE;
}

void sl_slice_release(struct sl_slice *slice)
{
	if (slice->seg != NULL)
		sl_segment_unref(slice->seg);
	slice->seg = NULL;
	slice->fd = -1;
}

/* ---- Time lookup ---------------------------------------------------- */

/* In seg (loaded), the offset of the first record with timestamp >= ts;
 * SL_ENOT_FOUND if none. */
static int find_time_in(sl_log *log, sl_segment *seg, int64_t ts, int64_t *offset)
{
	uint64_t pos = 0;
	size_t lo = 0, hi = seg->ntidx; /* first entry with entry.ts >= ts */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (seg->tidx[mid].ts < ts)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0) /* every batch up to that entry's is older than ts */
		pos = sl_segment_lookup(seg, seg->base + seg->tidx[lo - 1].rel);
	struct sl_reader r;
	sl_reader_init(&r, log->vfs, seg->fd, data_end(seg), log->cfg.max_batch_bytes);
	int rv = SL_ENOT_FOUND;
	while (pos < r.limit) {
		struct sl_batch_header h;
		const uint8_t *bytes;
		int brv = sl_reader_batch(&r, pos, false, &h, NULL);
		if (brv != SL_OK) {
			rv = bad_batch(log, seg, pos, brv);
			break;
		}
		if (h.max_timestamp >= ts && !(h.attributes & SL_ATTR_CONTROL)) {
			if ((brv = sl_reader_batch(&r, pos, true, &h, &bytes)) != SL_OK) {
				rv = bad_batch(log, seg, pos, brv);
				break;
			}
			struct sl_record_iter it;
			struct sl_record rec;
			if ((brv = sl_record_iter_init(&it, bytes, sl_batch_total_size(&h))) != SL_OK) {
				rv = sl_log_errf(log, SL_ELOG_CORRUPT,
						 "%s: undecodable batch at position %" PRIu64 ": %s",
						 seg->path, pos, sl_strerror(brv));
				break;
			}
			while (sl_record_iter_next(&it, &rec)) {
				if (rec.timestamp >= ts) {
					*offset = rec.offset;
					rv = SL_OK;
					break;
				}
			}
			sl_record_iter_free(&it);
			if (rv == SL_OK)
				break;
		}
		pos += sl_batch_total_size(&h);
	}
	sl_reader_free(&r);
	return rv;
}

int sl_log_find_time(sl_log *log, int64_t ts, int64_t *offset)
{
	int rv = SL_OK;
	*offset = -1;
	pthread_mutex_lock(&log->mu);
	for (size_t i = 0; i < log->nsegs; i++) {
		sl_segment *seg = log->segs[i];
		int64_t max_ts;
		if ((rv = sl_segment_max_ts(log, seg, &max_ts)) != SL_OK)
			break;
		trim_open_sealed(log);
		if (max_ts < ts)
			continue;
		if ((rv = sl_segment_load(log, seg)) != SL_OK)
			break;
		rv = find_time_in(log, seg, ts, offset);
		if (rv != SL_ENOT_FOUND)
			break;
		rv = SL_OK;
	}
	trim_open_sealed(log);
	pthread_mutex_unlock(&log->mu);
	return rv;
}

/* ---- Truncation and reset ------------------------------------------- */

/* Recomputes seg's newest timestamp after a cut, from its last time entry
 * on (entries before the cut are exact running maxima). */
static int recompute_tail(sl_log *log, sl_segment *seg)
{
	seg->next_offset = seg->base;
	seg->max_ts = seg->ntidx ? seg->tidx[seg->ntidx - 1].ts : INT64_MIN;
	uint64_t pos = seg->ntidx ? sl_segment_lookup(seg, seg->base + seg->tidx[seg->ntidx - 1].rel) : 0;
	seg->last_tidx_pos = pos;
	struct sl_reader r;
	sl_reader_init(&r, log->vfs, seg->fd, seg->size, log->cfg.max_batch_bytes);
	int rv = SL_OK;
	while (pos < seg->size) {
		struct sl_batch_header h;
		if ((rv = sl_reader_batch(&r, pos, false, &h, NULL)) != SL_OK)
			break;
		if (h.max_timestamp > seg->max_ts)
			seg->max_ts = h.max_timestamp;
		seg->last_pos = pos;
		seg->last_crc = h.crc;
		seg->next_offset = sl_batch_last_offset(&h) + 1;
		pos += sl_batch_total_size(&h);
	}
	sl_reader_free(&r);
	if (seg->size == 0) {
		seg->first_ts = INT64_MIN;
		seg->last_pos = 0;
	}
	return rv == SL_OK ? SL_OK : sl_log_errf(log, SL_ESTORAGE, "%s: rescan after truncation failed", seg->path);
}

int sl_log_truncate(sl_log *log, int64_t offset)
{
	pthread_mutex_lock(&log->mu);
	int64_t start = log->segs[0]->base, end = active(log)->next_offset;
	int rv = fenced(log);
	if (rv != SL_OK)
		goto out;
	if (offset < start || offset > end) {
		rv = sl_log_errf(log, SL_EOFFSET_OUT_OF_RANGE,
				 "%s: truncation offset %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]",
				 log->dir, offset, start, end);
		goto out;
	}
	if (offset == end)
		goto out;
	size_t i = segs_find(log, offset);
	sl_segment *seg = log->segs[i];
	if ((rv = sl_segment_load(log, seg)) != SL_OK)
		goto out;
	/* Find the cut before changing anything. */
	uint64_t cut = data_end(seg);
	if (offset < seg->next_offset) {
		struct sl_reader r;
		struct sl_batch_header h;
		sl_reader_init(&r, log->vfs, seg->fd, data_end(seg), log->cfg.max_batch_bytes);
		rv = find_batch(log, seg, &r, offset, &cut, &h);
		sl_reader_free(&r);
		if (rv == SL_ENOT_FOUND) {
			cut = data_end(seg);
			rv = SL_OK;
		} else if (rv != SL_OK) {
			goto out;
		} else if (h.base_offset < offset) {
			rv = sl_log_errf(log, SL_ELOG_MID_BATCH,
					 "%s: offset %" PRId64 " is inside the batch %" PRId64 "..%" PRId64,
					 log->dir, offset, h.base_offset, sl_batch_last_offset(&h));
			goto out;
		}
	}
	/* Later segments go first, durably, so that a crash leaves the old
	 * log or a prefix of it, never a cut segment with later ones after. */
	if (log->nsegs > i + 1) {
		while (log->nsegs > i + 1)
			if ((rv = segs_delete(log, log->nsegs - 1)) != SL_OK)
				goto out;
		int d = log->vfs->fsync_dir(log->vfs, log->dir);
		if (d < 0) {
			rv = sl_log_errf(log, SL_ESTORAGE, "fsync %s: %s", log->dir, strerror(-d));
			goto out;
		}
	}
	if (seg->sealed) {
		/* It becomes the active segment again: writable, index in
		 * memory only. */
		char path[PATH_MAX];
		if (seg->fd >= 0)
			log->open_sealed--;
		seg->sealed = false;
		seg->reopened++; /* a compaction that picked it must not swap */
		sl_segment_path(log, seg->base, SEG_INDEX_SUFFIX, path);
		/* Durably gone before the cut: after a crash, a stale index
		 * must not describe the re-appended segment. */
		if (log->vfs->unlink(log->vfs, path) == 0 &&
		    (rv = log->vfs->fsync_dir(log->vfs, log->dir)) < 0) {
			rv = sl_log_errf(log, SL_ESTORAGE, "fsync %s: %s", log->dir, strerror(-rv));
			goto out;
		}
		seg->window_chunk = log->cfg.prewrite_min;
	}
	int s = log->vfs->ftruncate(log->vfs, seg->fd, cut);
	if (s < 0) {
		rv = sl_log_errf(log, SL_ESTORAGE, "truncate %s: %s", seg->path, strerror(-s));
		goto out;
	}
	if ((rv = sync_fd(log, seg)) != SL_OK)
		goto out;
	seg->size = cut;
	seg->window_end = cut;
	seg->corrupt_pos = UINT64_MAX;
	if (seg->verified > cut)
		seg->verified = cut;
	while (seg->nidx > 0 && seg->idx[seg->nidx - 1].pos >= cut)
		seg->nidx--;
	seg->last_idx_pos = seg->nidx ? seg->idx[seg->nidx - 1].pos : 0;
	uint64_t rel = (uint64_t)(offset - seg->base);
	while (seg->ntidx > 0 && seg->tidx[seg->ntidx - 1].rel >= rel)
		seg->ntidx--;
	if (log->clean_upto >= offset)
		log->clean_upto = offset - 1;
	rv = recompute_tail(log, seg); /* the end: one past the last batch kept */
	if (log->durable > seg->next_offset)
		log->durable = seg->next_offset;
out:
	pthread_mutex_unlock(&log->mu);
	return rv;
}

int sl_log_reset(sl_log *log, int64_t start_offset)
{
	if (start_offset < 0)
		return sl_log_errf(log, SL_EINVALID_ARGUMENT, "%s: negative start offset", log->dir);
	pthread_mutex_lock(&log->mu);
	int rv = fenced(log);
	/* Newest first: a crash part-way leaves a prefix of the old log. */
	while (log->nsegs > 0 && rv == SL_OK) {
		rv = segs_delete(log, log->nsegs - 1);
	}
	if (rv == SL_OK)
		rv = create_active(log, start_offset); /* syncs the directory */
	if (rv == SL_OK) {
		active(log)->next_offset = start_offset;
		log->durable = start_offset;
		log->clean_upto = start_offset - 1;
	}
	pthread_mutex_unlock(&log->mu);
	/* On failure the log may have no segment left: only close is safe. */
	return rv;
}

/* ---- Retention ------------------------------------------------------ */

int sl_log_set_limits(sl_log *log, uint64_t segment_bytes, int64_t retention_bytes,
		      int64_t retention_ms)
{
	if (segment_bytes != 0 && (segment_bytes < 4096 || segment_bytes > SEG_MAX_BYTES))
		return SL_EINVALID_ARGUMENT;
	pthread_mutex_lock(&log->mu);
	if (segment_bytes != 0)
		log->cfg.segment_bytes = segment_bytes;
	log->cfg.retention_bytes = retention_bytes;
	log->cfg.retention_ms = retention_ms;
	pthread_mutex_unlock(&log->mu);
	return SL_OK;
}

int sl_log_retain(sl_log *log, int64_t floor, int64_t now_ms, size_t *deleted)
{
	size_t n = 0;
	int rv = SL_OK;
	pthread_mutex_lock(&log->mu);
	uint64_t total = 0;
	if (log->cfg.retention_bytes >= 0) {
		for (size_t i = 0; i < log->nsegs && rv == SL_OK; i++) {
			uint64_t s;
			rv = sl_segment_size(log, log->segs[i], &s);
			total += s;
		}
	}
	while (rv == SL_OK && log->nsegs > 1) {
		sl_segment *seg = log->segs[0];
		if (log->segs[1]->base > floor)
			break; /* it may hold offsets at or above the floor */
		bool expired = false;
		uint64_t size = 0;
		if ((rv = sl_segment_size(log, seg, &size)) != SL_OK)
			break;
		if (log->cfg.retention_bytes >= 0 &&
		    total - size >= (uint64_t)log->cfg.retention_bytes && total > (uint64_t)log->cfg.retention_bytes)
			expired = true;
		if (!expired && log->cfg.retention_ms >= 0) {
			int64_t max_ts;
			if ((rv = sl_segment_max_ts(log, seg, &max_ts)) != SL_OK)
				break;
			expired = max_ts < now_ms - log->cfg.retention_ms;
		}
		if (!expired)
			break;
		if ((rv = segs_delete(log, 0)) != SL_OK)
			break;
		total -= size;
		n++;
	}
	if (n > 0) {
		int s = log->vfs->fsync_dir(log->vfs, log->dir);
		if (s < 0 && rv == SL_OK)
			rv = sl_log_errf(log, SL_ESTORAGE, "fsync %s: %s", log->dir, strerror(-s));
	}
	trim_open_sealed(log);
	pthread_mutex_unlock(&log->mu);
	if (deleted != NULL)
		*deleted = n;
	return rv;
}
