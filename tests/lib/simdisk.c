/* The simulated disk of simdisk.h.
 *
 * Model:
 * - Directories are a flat list of path strings. The directory of a path is
 *   everything before its last '/' (trailing slashes ignored); "" is the
 *   root, which always exists, so "/sim" and "sim" both live in it. mkdir
 *   needs the parent to exist and is durable at once, for simplicity (there
 *   is no rmdir, and directories cannot be renamed: -ENOTSUP). Directories
 *   cannot be opened (-EISDIR); use fsync_dir and list_dir.
 * - Each directory has two maps name -> inode: the current one, changed by
 *   open(O_CREAT), rename and unlink, and the durable one, which fsync_dir
 *   sets to a copy of the current one.
 * - Each inode has current and durable bytes. pwrite, ftruncate, fallocate
 *   and O_TRUNC change the current bytes; fdatasync copies them to the
 *   durable bytes. An inode written and fdatasync'd whose entry was never
 *   made durable by fsync_dir disappears at a crash, on purpose: that is how
 *   a missing directory sync shows up.
 * - Each inode keeps a copy of its newest pwrite not yet covered by an
 *   fdatasync of that inode. The newest of these over all inodes is the one
 *   sim_crash_tear() applies in part to the durable bytes (the durable bytes
 *   cannot change in between, since only fdatasync changes them and it
 *   clears the record).
 * - Inodes are reference counted: one reference per map entry (current or
 *   durable), per open handle and per pending write record. An inode that
 *   is in no map, no handle and no record is freed at once.
 * - Handles are base + slot, slots taken lowest first from a table and freed
 *   by close. A crash moves the base past every slot, so a handle from
 *   before the crash stays invalid (-EBADF) even after new files are opened.
 *   The first base is 1 so that a zeroed handle field is never valid.
 *   Access modes are checked as Linux does: pwrite and fallocate on a
 *   read-only handle give -EBADF, ftruncate -EINVAL, pread on a write-only
 *   one -EBADF.
 * - Faults: every vfs call counts as one operation and first passes through
 *   op_begin(). An operation that fails there has no effect, except close,
 *   which releases the handle anyway, as close(2) does on Linux. sim_crash()
 *   clears a dead disk and also disarms a crash_after countdown that has not
 *   fired yet (so a scenario that ended early cannot kill the recovery that
 *   follows); a fail_after countdown stays until cleared with n < 0.
 * - One mutex guards all state. list_dir calls its callback without it, on a
 *   snapshot of the names, so the callback may itself use the vfs (unlink
 *   leftovers while listing, for example).
 * - Bookkeeping allocations abort on failure (this is a test helper); file
 *   data that cannot grow gives -ENOMEM. */
#include "simdisk.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Open handles at once; more gives -EMFILE. */
#define MAX_HANDLES 65536
/* Largest file, as off_t allows. */
#define MAX_FILE_SIZE ((uint64_t)INT64_MAX)

struct buf {
	uint8_t *p;
	uint64_t len;
	uint64_t cap;
};

struct inode {
	struct buf cur;
	struct buf dur;
	unsigned refs;
	/* The newest pwrite not yet covered by an fdatasync. */
	bool pending;
	uint64_t wseq; /* sim_disk.wseq when written: higher is newer */
	uint64_t woff;
	struct buf wdata;
};

struct entry {
	char *name;
	struct inode *ino;
};

struct emap {
	struct entry *v;
	size_t n;
	size_t cap;
};

struct dir {
	char *path; /* normalized: no trailing '/'; "" for the root */
	struct emap cur;
	struct emap dur;
};

struct handle {
	struct inode *ino; /* NULL: free slot */
	int accmode;       /* O_RDONLY, O_WRONLY or O_RDWR */
};

struct sim_disk {
	sl_vfs vfs; /* first: the vfs callbacks get back to sd from it */
	pthread_mutex_t mu;

	struct dir **dirs;
	size_t ndirs;
	size_t dircap;

	struct handle *handles;
	size_t hcap;
	int hbase;

	struct inode **pend; /* inodes with a pending write record */
	size_t npend;
	size_t pendcap;
	uint64_t wseq;

	uint64_t ops;
	bool fail_armed;
	uint64_t fail_left;
	int fail_err;
	bool crash_armed;
	uint64_t crash_left;
	bool dead;
};

/* ---- Allocation ------------------------------------------------------ */

static void oom(void)
{
	fprintf(stderr, "simdisk: out of memory\n");
	abort();
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL)
		oom();
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (p == NULL)
		oom();
	return p;
}

/* Makes room for need elements of size elem in *v (capacity *cap). */
static void grow(void **v, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return;
	size_t ncap = *cap ? *cap * 2 : 8;
	if (ncap < need)
		ncap = need;
	if (ncap > SIZE_MAX / elem)
		oom();
	void *nv = realloc(*v, ncap * elem);
	if (nv == NULL)
		oom();
	*v = nv;
	*cap = ncap;
}

/* ---- Byte arrays ----------------------------------------------------- */

static int buf_reserve(struct buf *b, uint64_t need)
{
	if (need <= b->cap)
		return 0;
	if (need > SIZE_MAX)
		return -ENOMEM;
	uint64_t ncap = b->cap ? b->cap * 2 : 64;
	if (ncap < need || ncap > SIZE_MAX)
		ncap = need;
	uint8_t *p = realloc(b->p, (size_t)ncap);
	if (p == NULL)
		return -ENOMEM;
	b->p = p;
	b->cap = ncap;
	return 0;
}

/* Grows with zeros or shrinks. */
static int buf_setlen(struct buf *b, uint64_t len)
{
	int rv = buf_reserve(b, len);
	if (rv != 0)
		return rv;
	if (len > b->len)
		memset(b->p + b->len, 0, (size_t)(len - b->len));
	b->len = len;
	return 0;
}

static int buf_write(struct buf *b, uint64_t off, const void *data, uint64_t n)
{
	if (n == 0)
		return 0;
	if (off + n > b->len) {
		int rv = buf_setlen(b, off + n);
		if (rv != 0)
			return rv;
	}
	memcpy(b->p + off, data, (size_t)n);
	return 0;
}

static int buf_assign(struct buf *dst, const struct buf *src)
{
	int rv = buf_reserve(dst, src->len);
	if (rv != 0)
		return rv;
	if (src->len > 0)
		memcpy(dst->p, src->p, (size_t)src->len);
	dst->len = src->len;
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

/* ---- Inodes ---------------------------------------------------------- */

static struct inode *inode_new(void)
{
	return xcalloc(1, sizeof(struct inode));
}

static void inode_ref(struct inode *ino)
{
	ino->refs++;
}

static void inode_unref(struct inode *ino)
{
	if (--ino->refs > 0)
		return;
	buf_free(&ino->cur);
	buf_free(&ino->dur);
	buf_free(&ino->wdata);
	free(ino);
}

/* Drops ino's pending write record, if any. May free ino. */
static void pend_clear(sim_disk *sd, struct inode *ino)
{
	if (!ino->pending)
		return;
	for (size_t i = 0; i < sd->npend; i++) {
		if (sd->pend[i] == ino) {
			sd->pend[i] = sd->pend[--sd->npend];
			break;
		}
	}
	ino->pending = false;
	buf_free(&ino->wdata);
	inode_unref(ino);
}

/* The inode holding the newest pending write, or NULL. */
static struct inode *pend_newest(sim_disk *sd)
{
	struct inode *best = NULL;
	for (size_t i = 0; i < sd->npend; i++) {
		if (best == NULL || sd->pend[i]->wseq > best->wseq)
			best = sd->pend[i];
	}
	return best;
}

/* ---- Directory maps -------------------------------------------------- */

static ptrdiff_t emap_find(const struct emap *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->v[i].name, name) == 0)
			return (ptrdiff_t)i;
	}
	return -1;
}

/* Points name at ino, replacing what it pointed at. */
static void emap_put(struct emap *m, const char *name, struct inode *ino)
{
	inode_ref(ino);
	ptrdiff_t i = emap_find(m, name);
	if (i >= 0) {
		struct inode *old = m->v[i].ino;
		m->v[i].ino = ino;
		inode_unref(old);
		return;
	}
	grow((void **)&m->v, &m->cap, m->n + 1, sizeof(struct entry));
	m->v[m->n].name = xstrndup(name, strlen(name));
	m->v[m->n].ino = ino;
	m->n++;
}

/* Removes entry i; the last entry takes its place (the order of a map is
 * deterministic but arbitrary, like readdir's). */
static void emap_del(struct emap *m, size_t i)
{
	struct inode *ino = m->v[i].ino;
	free(m->v[i].name);
	m->v[i] = m->v[--m->n];
	inode_unref(ino);
}

static void emap_clear(struct emap *m)
{
	while (m->n > 0)
		emap_del(m, m->n - 1);
}

static void emap_free(struct emap *m)
{
	emap_clear(m);
	free(m->v);
	m->v = NULL;
	m->cap = 0;
}

/* dst := src. References on src's inodes are taken before dst's are
 * dropped, so no inode of both passes through zero. */
static void emap_copy(struct emap *dst, const struct emap *src)
{
	struct emap tmp = {0};
	for (size_t i = 0; i < src->n; i++)
		emap_put(&tmp, src->v[i].name, src->v[i].ino);
	emap_free(dst);
	*dst = tmp;
}

/* ---- Paths and directories ------------------------------------------- */

/* Length of path without its trailing slashes. */
static size_t trimmed_len(const char *path, size_t len)
{
	while (len > 0 && path[len - 1] == '/')
		len--;
	return len;
}

/* Splits path[0..len) into its directory, path[0..*dlen) trimmed, and its
 * last component, which starts at *name and runs to len. */
static void split_path(const char *path, size_t len, size_t *dlen, size_t *name)
{
	size_t i = len;
	while (i > 0 && path[i - 1] != '/')
		i--;
	*name = i;
	*dlen = trimmed_len(path, i);
}

static struct dir *find_dir(sim_disk *sd, const char *path, size_t len)
{
	for (size_t i = 0; i < sd->ndirs; i++) {
		struct dir *d = sd->dirs[i];
		if (strlen(d->path) == len && memcmp(d->path, path, len) == 0)
			return d;
	}
	return NULL;
}

static struct dir *dir_add(sim_disk *sd, const char *path, size_t len)
{
	struct dir *d = xcalloc(1, sizeof(struct dir));
	d->path = xstrndup(path, len);
	grow((void **)&sd->dirs, &sd->dircap, sd->ndirs + 1, sizeof(struct dir *));
	sd->dirs[sd->ndirs++] = d;
	return d;
}

static void dir_free(struct dir *d)
{
	emap_free(&d->cur);
	emap_free(&d->dur);
	free(d->path);
	free(d);
}

/* Where a file path lives: its directory and its name (*name points into
 * path). Fails with -EISDIR when path names a directory, -ENOENT when its
 * directory does not exist or the name is empty. */
static int locate(sim_disk *sd, const char *path, struct dir **dp, const char **name)
{
	if (path == NULL)
		return -EFAULT;
	size_t len = strlen(path);
	if (find_dir(sd, path, trimmed_len(path, len)) != NULL)
		return -EISDIR;
	size_t dlen, noff;
	split_path(path, len, &dlen, &noff);
	struct dir *d = find_dir(sd, path, dlen);
	if (d == NULL || noff == len)
		return -ENOENT;
	*dp = d;
	*name = path + noff;
	return 0;
}

/* The current inode of a file path, or NULL (then *err says why). */
static struct inode *lookup(sim_disk *sd, const char *path, int *err)
{
	struct dir *d;
	const char *name;
	*err = locate(sd, path, &d, &name);
	if (*err != 0)
		return NULL;
	ptrdiff_t i = emap_find(&d->cur, name);
	if (i < 0) {
		*err = -ENOENT;
		return NULL;
	}
	return d->cur.v[i].ino;
}

/* The directory named by path; -ENOTDIR if it is a file, else -ENOENT. */
static struct dir *lookup_dir(sim_disk *sd, const char *path, int *err)
{
	if (path == NULL) {
		*err = -EFAULT;
		return NULL;
	}
	struct dir *d = find_dir(sd, path, trimmed_len(path, strlen(path)));
	if (d != NULL) {
		*err = 0;
		return d;
	}
	int rv;
	*err = lookup(sd, path, &rv) != NULL ? -ENOTDIR : -ENOENT;
	return NULL;
}

/* ---- Handles --------------------------------------------------------- */

static struct handle *get_handle(sim_disk *sd, int fd)
{
	if (fd < sd->hbase)
		return NULL;
	size_t slot = (size_t)(fd - sd->hbase);
	if (slot >= sd->hcap || sd->handles[slot].ino == NULL)
		return NULL;
	return &sd->handles[slot];
}

/* A free slot, or -EMFILE. */
static int slot_alloc(sim_disk *sd, size_t *slot)
{
	for (size_t i = 0; i < sd->hcap; i++) {
		if (sd->handles[i].ino == NULL) {
			*slot = i;
			return 0;
		}
	}
	if (sd->hcap >= MAX_HANDLES)
		return -EMFILE;
	size_t old = sd->hcap;
	grow((void **)&sd->handles, &sd->hcap, old + 1, sizeof(struct handle));
	memset(sd->handles + old, 0, (sd->hcap - old) * sizeof(struct handle));
	*slot = old;
	return 0;
}

static void handle_release(struct handle *h)
{
	struct inode *ino = h->ino;
	h->ino = NULL;
	inode_unref(ino);
}

/* ---- Faults ---------------------------------------------------------- */

/* Counts one operation and says whether it may go on. */
static int op_begin(sim_disk *sd)
{
	sd->ops++;
	if (sd->dead)
		return -EIO;
	if (sd->crash_armed) {
		if (sd->crash_left == 0) {
			sd->crash_armed = false;
			sd->dead = true;
			return -EIO;
		}
		sd->crash_left--;
	}
	if (sd->fail_armed) {
		if (sd->fail_left == 0)
			return -sd->fail_err;
		sd->fail_left--;
	}
	return 0;
}

/* ---- The vfs operations (called with sd->mu held) --------------------- */

static int do_open(sim_disk *sd, const char *path, int flags)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	int accmode = flags & O_ACCMODE;
	if (accmode != O_RDONLY && accmode != O_WRONLY && accmode != O_RDWR)
		return -EINVAL;
	struct dir *d;
	const char *name;
	rv = locate(sd, path, &d, &name);
	if (rv != 0)
		return rv;
	ptrdiff_t i = emap_find(&d->cur, name);
	if (i >= 0 && (flags & O_CREAT) && (flags & O_EXCL))
		return -EEXIST;
	if (i < 0 && !(flags & O_CREAT))
		return -ENOENT;
	size_t slot;
	rv = slot_alloc(sd, &slot);
	if (rv != 0)
		return rv;
	struct inode *ino;
	if (i >= 0) {
		ino = d->cur.v[i].ino;
	} else {
		ino = inode_new();
		emap_put(&d->cur, name, ino);
	}
	if (flags & O_TRUNC)
		buf_setlen(&ino->cur, 0);
	inode_ref(ino);
	sd->handles[slot].ino = ino;
	sd->handles[slot].accmode = accmode;
	return sd->hbase + (int)slot;
}

static int do_close(sim_disk *sd, int fd)
{
	int rv = op_begin(sd);
	struct handle *h = get_handle(sd, fd);
	if (h == NULL)
		return rv != 0 ? rv : -EBADF;
	handle_release(h);
	return rv;
}

static ssize_t do_pread(sim_disk *sd, int fd, void *buf, size_t len, uint64_t off)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	struct handle *h = get_handle(sd, fd);
	if (h == NULL || h->accmode == O_WRONLY)
		return -EBADF;
	if (off > MAX_FILE_SIZE)
		return -EINVAL;
	const struct buf *b = &h->ino->cur;
	if (off >= b->len)
		return 0;
	uint64_t n = b->len - off;
	if (n > len)
		n = len;
	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	memcpy(buf, b->p + off, (size_t)n);
	return (ssize_t)n;
}

static ssize_t do_pwrite(sim_disk *sd, int fd, const void *buf, size_t len, uint64_t off)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	struct handle *h = get_handle(sd, fd);
	if (h == NULL || h->accmode == O_RDONLY)
		return -EBADF;
	if (len > SSIZE_MAX || off > MAX_FILE_SIZE)
		return -EINVAL;
	if (len > MAX_FILE_SIZE - off)
		return -EFBIG;
	if (len == 0)
		return 0;
	struct inode *ino = h->ino;
	/* The record first: once the bytes are written nothing may fail. */
	struct buf rec = {0};
	rv = buf_write(&rec, 0, buf, len);
	if (rv == 0)
		rv = buf_write(&ino->cur, off, buf, len);
	if (rv != 0) {
		buf_free(&rec);
		return rv;
	}
	if (ino->pending) {
		buf_free(&ino->wdata);
	} else {
		grow((void **)&sd->pend, &sd->pendcap, sd->npend + 1, sizeof(struct inode *));
		sd->pend[sd->npend++] = ino;
		inode_ref(ino);
		ino->pending = true;
	}
	ino->wdata = rec;
	ino->woff = off;
	ino->wseq = ++sd->wseq;
	return (ssize_t)len;
}

static int do_fdatasync(sim_disk *sd, int fd)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	struct handle *h = get_handle(sd, fd);
	if (h == NULL)
		return -EBADF;
	rv = buf_assign(&h->ino->dur, &h->ino->cur);
	if (rv != 0)
		return rv;
	pend_clear(sd, h->ino); /* the handle's reference keeps ino */
	return 0;
}

static int do_ftruncate(sim_disk *sd, int fd, uint64_t len)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	struct handle *h = get_handle(sd, fd);
	if (h == NULL)
		return -EBADF;
	if (h->accmode == O_RDONLY || len > MAX_FILE_SIZE)
		return -EINVAL;
	return buf_setlen(&h->ino->cur, len);
}

static int do_fallocate(sim_disk *sd, int fd, uint64_t off, uint64_t len)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	struct handle *h = get_handle(sd, fd);
	if (h == NULL || h->accmode == O_RDONLY)
		return -EBADF;
	if (len == 0 || off > MAX_FILE_SIZE)
		return -EINVAL;
	if (len > MAX_FILE_SIZE - off)
		return -EFBIG;
	if (off + len <= h->ino->cur.len)
		return 0;
	return buf_setlen(&h->ino->cur, off + len);
}

static int do_fsize(sim_disk *sd, int fd, uint64_t *size)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	struct handle *h = get_handle(sd, fd);
	if (h == NULL)
		return -EBADF;
	*size = h->ino->cur.len;
	return 0;
}

static int do_rename(sim_disk *sd, const char *from, const char *to)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	struct dir *fdir, *tdir;
	const char *fname, *tname;
	rv = locate(sd, from, &fdir, &fname);
	if (rv == -EISDIR)
		return -ENOTSUP;
	if (rv != 0)
		return rv;
	ptrdiff_t i = emap_find(&fdir->cur, fname);
	if (i < 0)
		return -ENOENT;
	rv = locate(sd, to, &tdir, &tname);
	if (rv != 0)
		return rv;
	if (fdir == tdir && strcmp(fname, tname) == 0)
		return 0;
	/* The target's reference is taken before the source's is dropped. */
	emap_put(&tdir->cur, tname, fdir->cur.v[i].ino);
	i = emap_find(&fdir->cur, fname);
	emap_del(&fdir->cur, (size_t)i);
	return 0;
}

static int do_unlink(sim_disk *sd, const char *path)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	struct dir *d;
	const char *name;
	rv = locate(sd, path, &d, &name);
	if (rv != 0)
		return rv;
	ptrdiff_t i = emap_find(&d->cur, name);
	if (i < 0)
		return -ENOENT;
	emap_del(&d->cur, (size_t)i);
	return 0;
}

static int do_mkdir(sim_disk *sd, const char *path)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	if (path == NULL)
		return -EFAULT;
	size_t len = trimmed_len(path, strlen(path));
	if (find_dir(sd, path, len) != NULL)
		return -EEXIST;
	size_t dlen, noff;
	split_path(path, len, &dlen, &noff);
	struct dir *parent = find_dir(sd, path, dlen);
	if (parent == NULL)
		return -ENOENT;
	char *name = xstrndup(path + noff, len - noff);
	bool taken = emap_find(&parent->cur, name) >= 0;
	free(name);
	if (taken)
		return -EEXIST;
	dir_add(sd, path, len);
	return 0;
}

static int do_fsync_dir(sim_disk *sd, const char *path)
{
	int rv = op_begin(sd);
	if (rv != 0)
		return rv;
	struct dir *d = lookup_dir(sd, path, &rv);
	if (d == NULL)
		return rv;
	emap_copy(&d->dur, &d->cur);
	return 0;
}

/* The names list_dir reports: d's current entries, then its
 * subdirectories. Returns a malloc'd array of malloc'd strings. */
static char **dir_snapshot(sim_disk *sd, const struct dir *d, size_t *count)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < d->cur.n; i++) {
		grow((void **)&names, &cap, n + 1, sizeof(char *));
		names[n++] = xstrndup(d->cur.v[i].name, strlen(d->cur.v[i].name));
	}
	size_t plen = strlen(d->path);
	for (size_t i = 0; i < sd->ndirs; i++) {
		const struct dir *sub = sd->dirs[i];
		size_t len = strlen(sub->path), dlen, noff;
		split_path(sub->path, len, &dlen, &noff);
		if (sub == d || dlen != plen || memcmp(sub->path, d->path, plen) != 0)
			continue;
		grow((void **)&names, &cap, n + 1, sizeof(char *));
		names[n++] = xstrndup(sub->path + noff, len - noff);
	}
	*count = n;
	return names;
}

/* ---- The vfs callbacks ----------------------------------------------- */

static sim_disk *disk_of(sl_vfs *vfs)
{
	return (sim_disk *)((char *)vfs - offsetof(sim_disk, vfs));
}

static int vfs_open(sl_vfs *vfs, const char *path, int flags, int mode)
{
	sim_disk *sd = disk_of(vfs);
	(void)mode;
	pthread_mutex_lock(&sd->mu);
	int rv = do_open(sd, path, flags);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static int vfs_close(sl_vfs *vfs, int fd)
{
	sim_disk *sd = disk_of(vfs);
	pthread_mutex_lock(&sd->mu);
	int rv = do_close(sd, fd);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static ssize_t vfs_pread(sl_vfs *vfs, int fd, void *buf, size_t len, uint64_t off)
{
	sim_disk *sd = disk_of(vfs);
	pthread_mutex_lock(&sd->mu);
	ssize_t rv = do_pread(sd, fd, buf, len, off);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static ssize_t vfs_pwrite(sl_vfs *vfs, int fd, const void *buf, size_t len, uint64_t off)
{
	sim_disk *sd = disk_of(vfs);
	pthread_mutex_lock(&sd->mu);
	ssize_t rv = do_pwrite(sd, fd, buf, len, off);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static int vfs_fdatasync(sl_vfs *vfs, int fd)
{
	sim_disk *sd = disk_of(vfs);
	pthread_mutex_lock(&sd->mu);
	int rv = do_fdatasync(sd, fd);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static int vfs_ftruncate(sl_vfs *vfs, int fd, uint64_t len)
{
	sim_disk *sd = disk_of(vfs);
	pthread_mutex_lock(&sd->mu);
	int rv = do_ftruncate(sd, fd, len);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static int vfs_fallocate(sl_vfs *vfs, int fd, uint64_t off, uint64_t len)
{
	sim_disk *sd = disk_of(vfs);
	pthread_mutex_lock(&sd->mu);
	int rv = do_fallocate(sd, fd, off, len);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static int vfs_fsize(sl_vfs *vfs, int fd, uint64_t *size)
{
	sim_disk *sd = disk_of(vfs);
	pthread_mutex_lock(&sd->mu);
	int rv = do_fsize(sd, fd, size);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static int vfs_rename(sl_vfs *vfs, const char *from, const char *to)
{
	sim_disk *sd = disk_of(vfs);
	pthread_mutex_lock(&sd->mu);
	int rv = do_rename(sd, from, to);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static int vfs_unlink(sl_vfs *vfs, const char *path)
{
	sim_disk *sd = disk_of(vfs);
	pthread_mutex_lock(&sd->mu);
	int rv = do_unlink(sd, path);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static int vfs_mkdir(sl_vfs *vfs, const char *path, int mode)
{
	sim_disk *sd = disk_of(vfs);
	(void)mode;
	pthread_mutex_lock(&sd->mu);
	int rv = do_mkdir(sd, path);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static int vfs_fsync_dir(sl_vfs *vfs, const char *path)
{
	sim_disk *sd = disk_of(vfs);
	pthread_mutex_lock(&sd->mu);
	int rv = do_fsync_dir(sd, path);
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

static int vfs_list_dir(sl_vfs *vfs, const char *path,
			int (*fn)(void *arg, const char *name), void *arg)
{
	sim_disk *sd = disk_of(vfs);
	char **names = NULL;
	size_t n = 0;
	pthread_mutex_lock(&sd->mu);
	int rv = op_begin(sd);
	if (rv == 0) {
		struct dir *d = lookup_dir(sd, path, &rv);
		if (d != NULL)
			names = dir_snapshot(sd, d, &n);
	}
	pthread_mutex_unlock(&sd->mu);
	for (size_t i = 0; i < n; i++) {
		if (rv == 0)
			rv = fn(arg, names[i]);
		free(names[i]);
	}
	free(names);
	return rv;
}

/* ---- Test-facing API ------------------------------------------------- */

sim_disk *sim_new(void)
{
	sim_disk *sd = xcalloc(1, sizeof(sim_disk));
	sd->vfs = (sl_vfs){
		.open = vfs_open,
		.close = vfs_close,
		.pread = vfs_pread,
		.pwrite = vfs_pwrite,
		.fdatasync = vfs_fdatasync,
		.ftruncate = vfs_ftruncate,
		.fallocate = vfs_fallocate,
		.fsize = vfs_fsize,
		.rename = vfs_rename,
		.unlink = vfs_unlink,
		.mkdir = vfs_mkdir,
		.fsync_dir = vfs_fsync_dir,
		.list_dir = vfs_list_dir,
	};
	pthread_mutex_init(&sd->mu, NULL);
	sd->hbase = 1;
	dir_add(sd, "", 0);
	return sd;
}

void sim_free(sim_disk *sd)
{
	if (sd == NULL)
		return;
	for (size_t i = 0; i < sd->hcap; i++) {
		if (sd->handles[i].ino != NULL)
			handle_release(&sd->handles[i]);
	}
	while (sd->npend > 0)
		pend_clear(sd, sd->pend[sd->npend - 1]);
	for (size_t i = 0; i < sd->ndirs; i++)
		dir_free(sd->dirs[i]);
	free(sd->dirs);
	free(sd->handles);
	free(sd->pend);
	pthread_mutex_destroy(&sd->mu);
	free(sd);
}

sl_vfs *sim_vfs(sim_disk *sd)
{
	return &sd->vfs;
}

static void crash(sim_disk *sd, bool tear, uint64_t keep)
{
	struct inode *torn = tear ? pend_newest(sd) : NULL;
	if (torn != NULL) {
		if (keep > torn->wdata.len)
			keep = torn->wdata.len;
		if (buf_write(&torn->dur, torn->woff, torn->wdata.p, keep) != 0)
			oom();
	}

	/* Close every handle; later handles start past all of these. */
	for (size_t i = 0; i < sd->hcap; i++) {
		if (sd->handles[i].ino != NULL)
			handle_release(&sd->handles[i]);
	}
	if (sd->hbase > INT_MAX / 2)
		sd->hbase = 1;
	sd->hbase += (int)sd->hcap;

	while (sd->npend > 0)
		pend_clear(sd, sd->pend[sd->npend - 1]);

	/* Inodes in no durable map lose their last reference here. */
	for (size_t i = 0; i < sd->ndirs; i++)
		emap_copy(&sd->dirs[i]->cur, &sd->dirs[i]->dur);
	for (size_t i = 0; i < sd->ndirs; i++) {
		const struct emap *m = &sd->dirs[i]->dur;
		for (size_t j = 0; j < m->n; j++) {
			if (buf_assign(&m->v[j].ino->cur, &m->v[j].ino->dur) != 0)
				oom();
		}
	}

	sd->dead = false;
	sd->crash_armed = false;
}

void sim_crash(sim_disk *sd)
{
	pthread_mutex_lock(&sd->mu);
	crash(sd, false, 0);
	pthread_mutex_unlock(&sd->mu);
}

void sim_crash_tear(sim_disk *sd, uint64_t keep)
{
	pthread_mutex_lock(&sd->mu);
	crash(sd, true, keep);
	pthread_mutex_unlock(&sd->mu);
}

uint64_t sim_last_unsynced_write_len(sim_disk *sd)
{
	pthread_mutex_lock(&sd->mu);
	struct inode *ino = pend_newest(sd);
	uint64_t len = ino != NULL ? ino->wdata.len : 0;
	pthread_mutex_unlock(&sd->mu);
	return len;
}

uint64_t sim_ops(sim_disk *sd)
{
	pthread_mutex_lock(&sd->mu);
	uint64_t ops = sd->ops;
	pthread_mutex_unlock(&sd->mu);
	return ops;
}

void sim_fail_after(sim_disk *sd, int64_t n, int err)
{
	pthread_mutex_lock(&sd->mu);
	sd->fail_armed = n >= 0;
	sd->fail_left = n >= 0 ? (uint64_t)n : 0;
	sd->fail_err = err > 0 ? err : EIO;
	pthread_mutex_unlock(&sd->mu);
}

void sim_crash_after(sim_disk *sd, int64_t n)
{
	pthread_mutex_lock(&sd->mu);
	sd->crash_armed = n >= 0;
	sd->crash_left = n >= 0 ? (uint64_t)n : 0;
	pthread_mutex_unlock(&sd->mu);
}

uint8_t *sim_read_file(sim_disk *sd, const char *path, uint64_t *len)
{
	uint8_t *out = NULL;
	int err;
	pthread_mutex_lock(&sd->mu);
	struct inode *ino = lookup(sd, path, &err);
	if (ino != NULL) {
		out = malloc(ino->cur.len > 0 ? (size_t)ino->cur.len : 1);
		if (out == NULL)
			oom();
		if (ino->cur.len > 0)
			memcpy(out, ino->cur.p, (size_t)ino->cur.len);
		if (len != NULL)
			*len = ino->cur.len;
	}
	pthread_mutex_unlock(&sd->mu);
	return out;
}

int sim_corrupt_byte(sim_disk *sd, const char *path, uint64_t off, uint8_t xor_mask)
{
	int rv;
	pthread_mutex_lock(&sd->mu);
	struct inode *ino = lookup(sd, path, &rv);
	if (ino != NULL) {
		rv = -EINVAL;
		if (off < ino->cur.len) {
			ino->cur.p[off] ^= xor_mask;
			rv = 0;
		}
		if (off < ino->dur.len) {
			ino->dur.p[off] ^= xor_mask;
			rv = 0;
		}
	}
	pthread_mutex_unlock(&sd->mu);
	return rv;
}

int sim_exists(sim_disk *sd, const char *path)
{
	int err;
	pthread_mutex_lock(&sd->mu);
	int found = lookup(sd, path, &err) != NULL || err == -EISDIR;
	pthread_mutex_unlock(&sd->mu);
	return found;
}
