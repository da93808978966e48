/* Every group's term and vote in one log file. See rmeta.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h" /* sl_crc32c */
#include "errors.h"
#include "rmeta.h"

#define MAGIC 0x424d4c53u /* "SLMB" */
#define HDR 16
#define REC 20
#define COMPACT_MIN (64u * 1024)
#define MAX_FILE (256u << 20)

struct ent {
	uint32_t group;
	bool used;
	uint64_t term, vote;   /* newest */
	uint64_t dterm, dvote; /* durable */
	uint64_t seq;          /* of the newest */
};

struct flush {
	struct sl_rwork w;
	struct sl_rmeta *m;
	uint8_t *bytes; /* one batch: new records, or the whole image */
	size_t len;
	bool rewrite;
	uint64_t seq;   /* durable once this completes */
	uint64_t off;   /* where an append goes */
	int fd;         /* the file (append), the new file (rewrite) */
	int rv;
	char errmsg[SL_ERRMSG_SIZE];
};

struct sl_rmeta {
	char *path, *tmp, *dir;
	sl_vfs *vfs;
	struct sl_renv *env;
	int fd;
	uint64_t file_bytes;
	struct ent *tab;
	size_t cap, n, live;
	/* Records not yet flushed, after room for the batch header. */
	uint8_t *pend;
	size_t plen, pcap;
	uint64_t next_seq, durable_seq;
	bool kicked, flushing, broken;
	struct sl_rwork kick_w;
	struct flush fl;
	struct sl_rmeta_waiter waiters; /* circular, sentinel */
	bool closing;
	struct sl_rwork close_w;
	void (*close_cb)(void *arg);
	void *close_arg;
	struct sl_rmeta_stats st;
};

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

__attribute__((format(printf, 3, 4))) static int errf(char *errmsg, int rv, const char *fmt, ...)
{
	if (errmsg != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errmsg, SL_ERRMSG_SIZE, fmt, ap);
		va_end(ap);
	}
	return rv;
}

/* ---- The table ------------------------------------------------------ */

static size_t slot_of(uint32_t group, size_t cap)
{
	return (size_t)((group * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static struct ent *find(const struct sl_rmeta *m, uint32_t group)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = slot_of(group, m->cap);; i = (i + 1) & (m->cap - 1)) {
		struct ent *e = &m->tab[i];
		if (!e->used || e->group == group)
			return e->used ? e : NULL;
	}
}

/* The group's entry, added if missing; NULL when out of memory. */
static struct ent *find_add(struct sl_rmeta *m, uint32_t group)
{
	struct ent *e = find(m, group);
	if (e != NULL)
		return e;
	if ((m->n + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 64;
		struct ent *t = calloc(ncap, sizeof(*t));
		if (t == NULL)
			return NULL;
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->tab[i].used)
				continue;
			size_t j = slot_of(m->tab[i].group, ncap);
			while (t[j].used)
				j = (j + 1) & (ncap - 1);
			t[j] = m->tab[i];
		}
		free(m->tab);
		m->tab = t;
		m->cap = ncap;
	}
	size_t i = slot_of(group, m->cap);
	while (m->tab[i].used)
		i = (i + 1) & (m->cap - 1);
	m->tab[i] = (struct ent){ .group = group, .used = true };
	m->n++;
	return &m->tab[i];
}

static void set_newest(struct sl_rmeta *m, struct ent *e, uint64_t term, uint64_t vote)
{
	bool was = e->term != 0 || e->vote != 0, is = term != 0 || vote != 0;
	m->live += (size_t)is - (size_t)was;
	e->term = term;
	e->vote = vote;
}

/* ---- Batches -------------------------------------------------------- */

static void seal_batch(uint8_t *b, size_t count)
{
	put_u32(b, MAGIC);
	put_u32(b + 4, (uint32_t)count);
	put_u32(b + 8, sl_crc32c(0, b + HDR, count * REC));
	put_u32(b + 12, sl_crc32c(0, b, 12));
}

/* The length of the valid batch at b (of avail bytes), or 0. */
static size_t batch_at(const uint8_t *b, size_t avail)
{
	if (avail < HDR || get_u32(b) != MAGIC || get_u32(b + 12) != sl_crc32c(0, b, 12))
		return 0;
	uint64_t count = get_u32(b + 4);
	if (count > (avail - HDR) / REC)
		return 0;
	if (get_u32(b + 8) != sl_crc32c(0, b + HDR, count * REC))
		return 0;
	return HDR + count * REC;
}

/* Applies a batch's records as durable: after a flush (every group in it
 * has an entry), or at open (newest too). Returns false when out of
 * memory. */
static bool apply_batch(struct sl_rmeta *m, const uint8_t *b, size_t len, bool at_open)
{
	for (size_t off = HDR; off + REC <= len; off += REC) {
		const uint8_t *r = b + off;
		struct ent *e = at_open ? find_add(m, get_u32(r)) : find(m, get_u32(r));
		if (e == NULL)
			return false;
		e->dterm = get_u64(r + 4);
		e->dvote = get_u64(r + 12);
		if (at_open)
			set_newest(m, e, e->dterm, e->dvote);
	}
	return true;
}

/* ---- Waiters -------------------------------------------------------- */

static void w_unlink(struct sl_rmeta_waiter *w)
{
	w->prev->next = w->next;
	w->next->prev = w->prev;
	w->prev = w->next = NULL;
	w->linked = false;
}

static void w_link(struct sl_rmeta_waiter *head, struct sl_rmeta_waiter *w)
{
	w->prev = head->prev;
	w->next = head;
	head->prev->next = w;
	head->prev = w;
	w->linked = true;
}

/* Fires every waiter whose seq is durable, or all of them with status. */
static void wake(struct sl_rmeta *m, int status)
{
	struct sl_rmeta_waiter due = { 0 };
	due.prev = due.next = &due;
	for (struct sl_rmeta_waiter *w = m->waiters.next, *next; w != &m->waiters; w = next) {
		next = w->next;
		if (status != SL_OK || w->seq <= m->durable_seq) {
			w_unlink(w);
			w_link(&due, w);
		}
	}
	/* A callback may arm or cancel others: both lists stay sound. */
	while (due.next != &due) {
		struct sl_rmeta_waiter *w = due.next;
		w_unlink(w);
		w->ready(w, status);
	}
}

void sl_rmeta_wait(struct sl_rmeta *m, struct sl_rmeta_waiter *w, uint64_t seq)
{
	if (w->linked)
		w_unlink(w);
	w->seq = seq;
	w_link(&m->waiters, w);
}

void sl_rmeta_cancel(struct sl_rmeta *m, struct sl_rmeta_waiter *w)
{
	(void)m;
	if (w->linked)
		w_unlink(w);
}

/* ---- Flushing ------------------------------------------------------- */

static int write_all(sl_vfs *vfs, int fd, const uint8_t *b, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = vfs->pwrite(vfs, fd, b, len, off);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		b += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Disk thread: only the flush's own fields and the paths. */
static void flush_work(struct sl_rwork *w)
{
	struct flush *f = (struct flush *)w;
	struct sl_rmeta *m = f->m;
	sl_vfs *vfs = m->vfs;
	int rv;
	f->rv = SL_OK;
	const char *what = "write";
	if (!f->rewrite) {
		if ((rv = write_all(vfs, f->fd, f->bytes, f->len, f->off)) == 0) {
			what = "fdatasync";
			rv = vfs->fdatasync(vfs, f->fd);
		}
		if (rv < 0)
			f->rv = errf(f->errmsg, SL_ESTORAGE, "%s: %s: %s", m->path, what,
				     strerror(-rv));
		return;
	}
	vfs->unlink(vfs, m->tmp);
	int fd = vfs->open(vfs, m->tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		f->rv = errf(f->errmsg, SL_ESTORAGE, "%s: open: %s", m->tmp, strerror(-fd));
		return;
	}
	rv = write_all(vfs, fd, f->bytes, f->len, 0);
	if (rv == 0 && (rv = vfs->fdatasync(vfs, fd)) < 0)
		what = "fdatasync";
	if (rv == 0 && (rv = vfs->rename(vfs, m->tmp, m->path)) < 0)
		what = "rename";
	if (rv == 0 && (rv = vfs->fsync_dir(vfs, m->dir)) < 0)
		what = "fsync of its directory";
	if (rv < 0) {
		vfs->close(vfs, fd);
		f->rv = errf(f->errmsg, SL_ESTORAGE, "%s: rewrite: %s: %s", m->path, what,
			     strerror(-rv));
		return;
	}
	f->fd = fd;
}

static void finish_close(struct sl_rmeta *m)
{
	void (*cb)(void *) = m->close_cb;
	void *arg = m->close_arg;
	if (m->fd >= 0)
		m->vfs->close(m->vfs, m->fd);
	free(m->pend);
	free(m->tab);
	free(m->path);
	free(m->tmp);
	free(m->dir);
	free(m);
	if (cb != NULL)
		cb(arg);
}

static void kick(struct sl_rmeta *m);

static void flush_done(struct sl_rwork *w)
{
	struct flush *f = (struct flush *)w;
	struct sl_rmeta *m = f->m;
	m->flushing = false;
	if (f->rv == SL_OK) {
		if (f->rewrite) {
			m->vfs->close(m->vfs, m->fd);
			m->fd = f->fd;
			m->file_bytes = f->len;
			m->broken = false;
			m->st.rewrites++;
		} else {
			m->file_bytes += f->len;
			m->st.flushes++;
		}
		m->st.records += (f->len - HDR) / REC;
		(void)apply_batch(m, f->bytes, f->len, false);
		m->durable_seq = f->seq;
	} else {
		/* What the file holds is unknown: forget what is not durable
		 * and rewrite the file from what is, next time. */
		m->st.errors++;
		m->broken = true;
		m->plen = 0;
		for (size_t i = 0; i < m->cap; i++) {
			struct ent *e = &m->tab[i];
			if (!e->used)
				continue;
			set_newest(m, e, e->dterm, e->dvote);
			e->seq = 0;
		}
		m->durable_seq = m->next_seq;
	}
	free(f->bytes);
	f->bytes = NULL;
	if (m->closing) {
		finish_close(m);
		return;
	}
	wake(m, f->rv);
	kick(m);
}

/* Starts a flush of what was recorded, if anything. */
static void start_flush(struct sl_rmeta *m)
{
	if (m->flushing || m->closing || m->plen == 0)
		return;
	struct flush *f = &m->fl;
	size_t image = HDR + m->live * REC;
	*f = (struct flush){ .m = m, .seq = m->next_seq, .off = m->file_bytes, .fd = m->fd };
	f->rewrite = m->broken ||
		     (m->file_bytes + HDR + m->plen > COMPACT_MIN &&
		      m->file_bytes + HDR + m->plen > 4 * image);
	if (f->rewrite) {
		/* The newest of every group: what is pending included. */
		f->bytes = malloc(image);
		if (f->bytes == NULL) {
			/* An append at the same offset overwrites what a
			 * failed one left: good enough until memory returns. */
			f->rewrite = false;
		} else {
			size_t k = 0;
			for (size_t i = 0; i < m->cap; i++) {
				struct ent *e = &m->tab[i];
				if (!e->used || (e->term == 0 && e->vote == 0))
					continue;
				uint8_t *r = f->bytes + HDR + k++ * REC;
				put_u32(r, e->group);
				put_u64(r + 4, e->term);
				put_u64(r + 12, e->vote);
			}
			seal_batch(f->bytes, k);
			f->len = image;
			m->plen = 0;
		}
	}
	if (!f->rewrite) {
		seal_batch(m->pend, m->plen / REC);
		f->bytes = m->pend;
		f->len = HDR + m->plen;
		m->pend = NULL;
		m->plen = m->pcap = 0;
	}
	m->flushing = true;
	f->w.work = flush_work;
	f->w.done = flush_done;
	m->env->submit(m->env, &f->w);
}

static void kick_done(struct sl_rwork *w)
{
	struct sl_rmeta *m = (struct sl_rmeta *)((char *)w - offsetof(struct sl_rmeta, kick_w));
	m->kicked = false;
	if (m->closing && !m->flushing) {
		finish_close(m);
		return;
	}
	start_flush(m);
}

/* Flushes on the loop's next turn, so that one flush takes every record
 * made in this one. */
static void kick(struct sl_rmeta *m)
{
	if (m->kicked || m->flushing || m->plen == 0)
		return;
	m->kicked = true;
	m->kick_w.work = NULL;
	m->kick_w.done = kick_done;
	m->env->submit(m->env, &m->kick_w);
}

/* ---- Public --------------------------------------------------------- */

int sl_rmeta_put(struct sl_rmeta *m, uint32_t group, uint64_t term, uint64_t vote,
		 uint64_t *seq)
{
	if (m->pcap < HDR + m->plen + REC) {
		size_t ncap = m->pcap ? m->pcap * 2 : 4096;
		uint8_t *p = realloc(m->pend, ncap);
		if (p == NULL)
			return SL_ENOMEM;
		m->pend = p;
		m->pcap = ncap;
	}
	struct ent *e = find_add(m, group);
	if (e == NULL)
		return SL_ENOMEM;
	uint8_t *r = m->pend + HDR + m->plen;
	put_u32(r, group);
	put_u64(r + 4, term);
	put_u64(r + 12, vote);
	m->plen += REC;
	set_newest(m, e, term, vote);
	e->seq = ++m->next_seq;
	*seq = e->seq;
	kick(m);
	return SL_OK;
}

void sl_rmeta_get(const struct sl_rmeta *m, uint32_t group, uint64_t *term, uint64_t *vote,
		  uint64_t *seq)
{
	const struct ent *e = find(m, group);
	*term = e != NULL ? e->term : 0;
	*vote = e != NULL ? e->vote : 0;
	*seq = e != NULL ? e->seq : 0;
}

bool sl_rmeta_durable(const struct sl_rmeta *m, uint64_t seq)
{
	return seq <= m->durable_seq;
}

void sl_rmeta_get_stats(const struct sl_rmeta *m, struct sl_rmeta_stats *st)
{
	*st = m->st;
	st->file_bytes = m->file_bytes;
	st->groups = m->live;
}

/* Reads the file into the table; cuts a torn tail. */
static int load(struct sl_rmeta *m, bool created, char *errmsg)
{
	sl_vfs *vfs = m->vfs;
	uint64_t size;
	int rv = vfs->fsize(vfs, m->fd, &size);
	if (rv < 0)
		return errf(errmsg, SL_ESTORAGE, "%s: size: %s", m->path, strerror(-rv));
	if (size > MAX_FILE)
		return errf(errmsg, SL_ELOG_CORRUPT, "%s: %llu bytes, more than a term/vote file holds",
			    m->path, (unsigned long long)size);
	uint8_t *b = malloc(size ? size : 1);
	if (b == NULL)
		return errf(errmsg, SL_ENOMEM, "%s: no memory for %llu bytes", m->path,
			    (unsigned long long)size);
	for (uint64_t got = 0; got < size;) {
		ssize_t n = vfs->pread(vfs, m->fd, b + got, size - got, got);
		if (n <= 0) {
			free(b);
			return errf(errmsg, SL_ESTORAGE, "%s: read: %s", m->path,
				    n < 0 ? strerror((int)-n) : "short file");
		}
		got += (uint64_t)n;
	}
	uint64_t off = 0;
	size_t len;
	while ((len = batch_at(b + off, size - off)) > 0) {
		if (!apply_batch(m, b + off, len, true)) {
			free(b);
			return errf(errmsg, SL_ENOMEM, "%s: no memory", m->path);
		}
		off += len;
	}
	if (off < size) {
		/* A torn last write ends the file; a good batch after the
		 * damage means records in the middle were lost. */
		for (uint64_t p = off + 1; p + HDR <= size; p++) {
			if (batch_at(b + p, size - p) > 0) {
				free(b);
				return errf(errmsg, SL_ELOG_CORRUPT,
					    "%s: damaged batch at byte %llu before a valid one at %llu",
					    m->path, (unsigned long long)off, (unsigned long long)p);
			}
		}
		if ((rv = vfs->ftruncate(vfs, m->fd, off)) < 0 ||
		    (rv = vfs->fdatasync(vfs, m->fd)) < 0) {
			free(b);
			return errf(errmsg, SL_ESTORAGE, "%s: cutting a torn tail at %llu: %s", m->path,
				    (unsigned long long)off, strerror(-rv));
		}
	}
	free(b);
	m->file_bytes = off;
	if (created && (rv = vfs->fsync_dir(vfs, m->dir)) < 0)
		return errf(errmsg, SL_ESTORAGE, "%s: fsync of directory %s: %s", m->path, m->dir,
			    strerror(-rv));
	return SL_OK;
}

int sl_rmeta_open(const char *path, sl_vfs *vfs, struct sl_renv *env, struct sl_rmeta **out,
		  char *errmsg)
{
	*out = NULL;
	struct sl_rmeta *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return errf(errmsg, SL_ENOMEM, "no memory");
	m->vfs = vfs != NULL ? vfs : sl_vfs_posix();
	m->env = env;
	m->fd = -1;
	m->waiters.prev = m->waiters.next = &m->waiters;
	const char *slash = strrchr(path, '/');
	m->path = strdup(path);
	m->dir = slash == NULL ? strdup(".") : strndup(path, slash == path ? 1 : (size_t)(slash - path));
	if (m->path != NULL && asprintf(&m->tmp, "%s.tmp", path) < 0)
		m->tmp = NULL;
	if (m->path == NULL || m->dir == NULL || m->tmp == NULL) {
		finish_close(m);
		return errf(errmsg, SL_ENOMEM, "no memory");
	}
	bool created = false;
	int fd = m->vfs->open(m->vfs, path, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd >= 0)
		created = true;
	else if (fd == -EEXIST)
		fd = m->vfs->open(m->vfs, path, O_RDWR, 0644);
	if (fd < 0) {
		finish_close(m);
		return errf(errmsg, SL_ESTORAGE, "%s: open: %s", path, strerror(-fd));
	}
	m->fd = fd;
	int rv = load(m, created, errmsg);
	if (rv != SL_OK) {
		finish_close(m);
		return rv;
	}
	m->vfs->unlink(m->vfs, m->tmp); /* a rewrite cut short */
	*out = m;
	return SL_OK;
}

static void close_done(struct sl_rwork *w)
{
	finish_close((struct sl_rmeta *)((char *)w - offsetof(struct sl_rmeta, close_w)));
}

void sl_rmeta_close(struct sl_rmeta *m, void (*cb)(void *arg), void *arg)
{
	m->closing = true;
	m->close_cb = cb;
	m->close_arg = arg;
	if (m->flushing || m->kicked)
		return; /* their completion finishes the close */
	m->close_w.work = NULL;
	m->close_w.done = close_done;
	m->env->submit(m->env, &m->close_w);
}
