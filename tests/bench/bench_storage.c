/* bench_storage: what this machine's disk can do, and how close the
 * partition log (storage/) and the batch codec (proto/batch.h) come to it.
 *
 *   bench_storage [--dir DIR] [--quick] [--runs N]
 *
 * Everything is written under DIR (default ./data/bench), in a
 * subdirectory of its own that is removed at exit. The raw disk is measured
 * first with plain POSIX I/O, then the codec, then the log with the same
 * sizes. Each timed measurement runs N times (default 3) and reports the
 * median.
 *
 * The disk here is virtual and drifts a lot from one second to the next, so
 * each log run is paired with a raw run of the same size just before it,
 * and a ratio is the median of the per-run ratios. Files are not deleted
 * until exit (see trash()), and the fsync'd phases first wait for the disk
 * to settle (see wait_quiet()).
 *
 * Output: one `name value unit` line per figure (lines starting with '#'
 * are comments), then a readable summary with min and max of the runs, the
 * ratios and the goals. MB = 1e6 bytes, GB = 1e9 bytes. Exit status 0 when
 * every measurement ran (whether or not the goals were met), 1 on an error,
 * 2 on a usage error, 130 when interrupted. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "storage.h"

#define KiB (1024ull)
#define MiB (1024ull * 1024)
#define GiB (1024ull * 1024 * 1024)

#define BATCH_BYTES 16384      /* raw write size and batch size target */
#define POOL_BYTES (8 * MiB)   /* source buffers cycled by every writer */
#define READ_CHUNK (1 * MiB)   /* raw read size and sl_log_read max */
#define OPEN_SEGMENTS 1000     /* sealed segments for the open test */
#define OPEN_REPEATS 5
#define MAX_RUNS 25
#define MAX_RESULTS 160

/* ---- Plan ------------------------------------------------------------ */

struct plan {
	uint64_t write_bytes;   /* raw sequential write, no-fsync append, reads */
	uint64_t fsync_bytes;   /* each fsync'd loop (raw and log) */
	double fsync_cap_s;     /* ... but stop a run after this long */
	uint64_t encode_bytes;  /* batch bytes built per encode run */
	uint64_t segment_bytes; /* log segments for the no-fsync runs */
	uint64_t fsync_segment_bytes; /* log segments for the fsync'd runs */
	int runs;
	bool quick;
};

static struct plan plan;

/* ---- Process state and cleanup --------------------------------------- */

static char workdir[PATH_MAX];
static bool workdir_made;
/* Directories made by --dir's mkdir -p, removed at exit if left empty. */
static char made_dirs[16][PATH_MAX];
static int nmade_dirs;
static volatile sig_atomic_t stop_requested;
static bool drop_caches_ok = true;
static const char *drop_caches_note;

static void rm_tree(const char *path);

static void cleanup(void)
{
	if (workdir_made) {
		rm_tree(workdir);
		workdir_made = false;
	}
	for (int i = nmade_dirs - 1; i >= 0; i--)
		rmdir(made_dirs[i]);
	nmade_dirs = 0;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void check_stop(void)
{
	if (stop_requested) {
		fprintf(stderr, "bench_storage: interrupted, cleaning up\n");
		exit(130);
	}
}

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "bench_storage: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static uint64_t now_ns(void);
static uint64_t t_start;

/* A line on stderr with the time since the start. */
__attribute__((format(printf, 1, 2)))
static void progress(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[%6.1f s] ", (double)(now_ns() - t_start) / 1e9);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

static void die_sl(const char *what, int rv, sl_log *log, const char *errmsg)
{
	const char *why = errmsg;

	if (log != NULL)
		why = sl_log_errmsg(log);
	die("%s: %s (%d): %s", what, sl_err_name(rv), rv,
	    why != NULL && why[0] != '\0' ? why : sl_strerror(rv));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0 && errno != ENOENT)
		fprintf(stderr, "bench_storage: cannot remove %s: %s\n", path, strerror(errno));
	return 0;
}

static void rm_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return;
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void work_path(char *out, const char *name)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", workdir, name);

	if (n < 0 || n >= PATH_MAX)
		die("path too long: %s/%s", workdir, name);
}

/* Deleting a large file here is expensive in a way that would spoil the
 * figures: the file system is mounted with discard, and for seconds after
 * a 1 GiB file is deleted every fdatasync on the disk is 10-20x slower
 * (the host trims). So nothing is deleted while measuring: what is done
 * with is dropped from the page cache and moved into workdir/trash, and
 * all of it is removed at exit. defer_delete is off when the disk is too
 * full for that. */
static bool defer_delete = true;
static unsigned trash_seq;
static uint64_t trash_bytes;

static void drop_file_cache(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		trash_bytes += (uint64_t)st.st_size;
	}
	close(fd);
}

static int drop_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_F && S_ISREG(st->st_mode))
		drop_file_cache(path);
	return 0;
}

static void trash(const char *path)
{
	char dst[PATH_MAX];
	struct stat st;

	if (lstat(path, &st) != 0)
		return;
	if (!defer_delete) {
		rm_tree(path);
		return;
	}
	nftw(path, drop_entry, 16, FTW_PHYS);
	char name[32];

	snprintf(name, sizeof(name), "trash/%u", trash_seq++);
	work_path(dst, name);
	if (rename(path, dst) != 0)
		die("rename %s to %s: %s", path, dst, strerror(errno));
}

/* mkdir -p, remembering what it made. */
static void make_dirs(const char *path)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp))
		die("bad directory: '%s'", path);
	memcpy(tmp, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		char c = tmp[i];

		tmp[i] = '\0';
		if (mkdir(tmp, 0755) == 0) {
			if (nmade_dirs < (int)(sizeof(made_dirs) / sizeof(made_dirs[0])))
				memcpy(made_dirs[nmade_dirs++], tmp, i + 1);
		} else if (errno != EEXIST) {
			die("mkdir %s: %s", tmp, strerror(errno));
		}
		tmp[i] = c;
	}
}

/* ---- Small helpers ---------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *xmalloc(size_t len)
{
	void *p = malloc(len ? len : 1);

	if (p == NULL)
		die("out of memory (%zu bytes)", len);
	return p;
}

static void *xalloc_aligned(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len ? len : 1) != 0)
		die("out of memory (%zu bytes)", len);
	return p;
}

static void fill_random(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;
	uint64_t x = seed | 1;

	for (size_t i = 0; i < len; i += 8) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		uint64_t v = x * 0x2545F4914F6CDD1Dull;
		size_t n = len - i < 8 ? len - i : 8;

		memcpy(p + i, &v, n);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double tmp[MAX_RUNS];

	if (n <= 0)
		return 0;
	memcpy(tmp, v, sizeof(double) * (size_t)n);
	qsort(tmp, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* Sorts lat in place; the q-quantile by nearest rank, in µs. */
static double percentile_us(uint64_t *lat, size_t n, double q, bool sorted)
{
	if (n == 0)
		return 0;
	if (!sorted)
		qsort(lat, n, sizeof(uint64_t), cmp_u64);
	size_t rank = (size_t)(q * (double)n + 0.999999);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)lat[rank - 1] / 1e3;
}

static void write_full(int fd, const void *buf, size_t len, const char *path)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write %s: %s", path, n < 0 ? strerror(errno) : "short write");
		p += n;
		len -= (size_t)n;
	}
}

static void xfdatasync(int fd, const char *path)
{
	if (fdatasync(fd) != 0)
		die("fdatasync %s: %s", path, strerror(errno));
}

static int xopen(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC, 0644);

	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	return fd;
}

/* Makes everything written under the work directory durable, including
 * the deletions of earlier runs (which, with the discard mount option, are
 * trimmed at the journal commit), so that a timed run does not pay for the
 * one before it. Untimed. */
static void settle(void)
{
	int dfd = open(workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd >= 0) {
		syncfs(dfd);
		close(dfd);
	}
}

/* Waits (up to max_s) until fdatasync on this disk is quick again: the
 * median of 16 appends of 4 KiB, each followed by fdatasync, under 1 ms
 * (0.1-0.2 ms when the disk is idle; 3-5 ms for seconds after a large
 * deletion, ours from a previous run or another process's, while the
 * discards are processed). It must append: an fdatasync that needs no
 * journal commit (an overwrite) is not slowed down. */
static void wait_quiet(const char *why, double max_s)
{
	char path[PATH_MAX];
	uint64_t lat16[16];
	uint8_t block[4096];
	uint64_t t0 = now_ns();
	double p50 = 0;
	int tries = 0;

	memset(block, 0x5a, sizeof(block));
	work_path(path, "probe.dat");
	int fd = xopen(path, O_WRONLY | O_CREAT | O_APPEND);

	for (;;) {
		for (int i = 0; i < 16; i++) {
			uint64_t a = now_ns();

			if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
				die("write %s: %s", path, strerror(errno));
			xfdatasync(fd, path);
			lat16[i] = now_ns() - a;
		}
		p50 = percentile_us(lat16, 16, 0.5, false);
		tries++;
		if (p50 < 1000 || (double)(now_ns() - t0) / 1e9 > max_s)
			break;
		check_stop();
		usleep(250 * 1000);
	}
	close(fd);
	double waited = (double)(now_ns() - t0) / 1e9;

	if (tries > 1)
		printf("# %s: waited %.1f s for the disk to settle; fdatasync p50 now %.0f us%s\n",
		       why, waited, p50, p50 < 1000 ? "" : " (gave up waiting: figures may suffer)");
	fflush(stdout);
}

/* Writes back and drops the whole page cache (clean pages only, so our
 * files are synced first). False, with a note, where that is not allowed. */
static bool drop_caches(void)
{
	if (!drop_caches_ok)
		return false;
	settle();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);

	if (fd < 0) {
		drop_caches_ok = false;
		drop_caches_note = strerror(errno);
		return false;
	}
	ssize_t n = write(fd, "1\n", 2);
	int err = errno;

	close(fd);
	if (n != 2) {
		drop_caches_ok = false;
		drop_caches_note = n < 0 ? strerror(err) : "short write";
		return false;
	}
	return true;
}

/* ---- Results ---------------------------------------------------------- */

struct result {
	char name[64];
	char unit[16];
	const char *section;
	double v[MAX_RUNS];
	int n;
	double med;
};

static struct result results[MAX_RESULTS];
static int nresults;
static const char *cur_section = "";

static void print_value(FILE *f, double v)
{
	double a = v < 0 ? -v : v;

	if (a >= 100)
		fprintf(f, "%.0f", v);
	else if (a >= 10)
		fprintf(f, "%.1f", v);
	else
		fprintf(f, "%.3f", v);
}

/* Stores the runs of one figure and prints `name median unit`. */
static double report(const char *name, const char *unit, const double *v, int n)
{
	if (nresults == MAX_RESULTS)
		die("too many results");
	struct result *r = &results[nresults++];

	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->unit, sizeof(r->unit), "%s", unit);
	r->section = cur_section;
	r->n = n > MAX_RUNS ? MAX_RUNS : n;
	memcpy(r->v, v, sizeof(double) * (size_t)r->n);
	r->med = median(v, r->n);
	printf("%s ", name);
	print_value(stdout, r->med);
	printf(" %s\n", unit);
	fflush(stdout);
	return r->med;
}

static double report1(const char *name, const char *unit, double v)
{
	return report(name, unit, &v, 1);
}

__attribute__((format(printf, 3, 4)))
static double reportf(const double *v, int n, const char *fmt, ...)
{
	char name[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	/* The unit follows the name after a '|'. */
	char *bar = strchr(name, '|');

	if (bar == NULL)
		die("reportf: no unit in %s", name);
	*bar = '\0';
	return report(name, bar + 1, v, n);
}

static void section(const char *title)
{
	cur_section = title;
	printf("# --- %s\n", title);
	fflush(stdout);
}

/* Goals, checked at the end. */
struct goal {
	char what[96];
	double value;
	double target;
	bool at_least; /* value >= target, else value < target */
	const char *unit;
};

static struct goal goals[16];
static int ngoals;

static void add_goal(const char *what, double value, double target, bool at_least,
		     const char *unit)
{
	if (ngoals == (int)(sizeof(goals) / sizeof(goals[0])))
		return;
	struct goal *g = &goals[ngoals++];

	snprintf(g->what, sizeof(g->what), "%s", what);
	g->value = value;
	g->target = target;
	g->at_least = at_least;
	g->unit = unit;
}

static bool goal_met(const struct goal *g)
{
	return g->at_least ? g->value >= g->target : g->value < g->target;
}

/* ---- 1. Setup --------------------------------------------------------- */

static void read_first_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "re");

	out[0] = '\0';
	if (f == NULL)
		return;
	if (fgets(out, (int)len, f) == NULL)
		out[0] = '\0';
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

static void cpu_model(char *out, size_t len)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "re");

	snprintf(out, len, "unknown");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "model name", 10) != 0)
			continue;
		char *colon = strchr(line, ':');

		if (colon == NULL)
			continue;
		colon++;
		while (*colon == ' ' || *colon == '\t')
			colon++;
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(out, len, "%s", colon);
		break;
	}
	fclose(f);
}

static const char *fs_name(unsigned long type)
{
	switch (type) {
	case 0xEF53: return "ext2/3/4";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x01021994: return "tmpfs";
	case 0x794C7630: return "overlayfs";
	case 0x2FC12FC1: return "zfs";
	case 0xF2F52010: return "f2fs";
	case 0x6969: return "nfs";
	case 0x65735546: return "fuse";
	default: return "other";
	}
}

/* The mount that holds dir: its file system name, source and options,
 * from /proc/self/mountinfo. */
static void mount_of(const char *dir, char *fstype, char *source, char *opts, size_t len)
{
	struct stat st;
	char want[32], line[4096];
	FILE *f;

	snprintf(fstype, len, "?");
	snprintf(source, len, "?");
	snprintf(opts, len, "?");
	if (stat(dir, &st) != 0)
		return;
	snprintf(want, sizeof(want), "%u:%u", major(st.st_dev), minor(st.st_dev));
	f = fopen("/proc/self/mountinfo", "re");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		/* id parent maj:min root mountpoint options ... - fstype source superopts */
		char *save = NULL, *tok;
		int field = 0;
		bool match = false, after_dash = false;
		int post = 0;

		for (tok = strtok_r(line, " \n", &save); tok != NULL;
		     tok = strtok_r(NULL, " \n", &save), field++) {
			if (field == 2 && strcmp(tok, want) == 0)
				match = true;
			if (!match)
				continue;
			if (field == 5)
				snprintf(opts, len, "%s", tok);
			if (after_dash) {
				if (post == 0)
					snprintf(fstype, len, "%s", tok);
				else if (post == 1)
					snprintf(source, len, "%s", tok);
				else if (post == 2)
					snprintf(opts + strlen(opts), len - strlen(opts), " (%s)", tok);
				post++;
			}
			if (field > 5 && strcmp(tok, "-") == 0)
				after_dash = true;
		}
		if (match)
			break;
	}
	fclose(f);
}

static void disk_scheduler(const char *dir, char *out, size_t len)
{
	struct stat st;
	char path[256];

	snprintf(out, len, "?");
	if (stat(dir, &st) != 0)
		return;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/scheduler",
		 major(st.st_dev), minor(st.st_dev));
	read_first_line(path, out, len);
	if (out[0] == '\0') {
		/* A partition: its disk's queue is one level up. */
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/../queue/scheduler",
			 major(st.st_dev), minor(st.st_dev));
		read_first_line(path, out, len);
	}
	if (out[0] == '\0')
		snprintf(out, len, "?");
}

static void print_setup(const char *basedir)
{
	char cpu[256], fstype[256], source[256], opts[256], sched[128];
	char absdir[PATH_MAX];
	struct statfs sfs;
	struct utsname un;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	section("setup");
	cpu_model(cpu, sizeof(cpu));
	if (realpath(basedir, absdir) == NULL)
		snprintf(absdir, sizeof(absdir), "%s", basedir);
	if (statfs(workdir, &sfs) != 0)
		die("statfs %s: %s", workdir, strerror(errno));
	mount_of(workdir, fstype, source, opts, sizeof(fstype));
	disk_scheduler(workdir, sched, sizeof(sched));
	if (uname(&un) != 0)
		memset(&un, 0, sizeof(un));

	printf("# cpu: %s, %ld cores online\n", cpu, cores);
	printf("# kernel: %s %s\n", un.sysname, un.release);
	printf("# dir: %s (statfs type 0x%lx = %s; mount: %s on %s, %s; scheduler %s)\n",
	       absdir, (unsigned long)sfs.f_type, fs_name((unsigned long)sfs.f_type),
	       fstype, source, opts, sched);
	printf("# sizes: %llu MiB per sequential-write/append/read run, %llu MiB per fsync'd run "
	       "(capped at %.1f s), %llu MiB per encode run; %d runs per figure, median reported\n",
	       (unsigned long long)(plan.write_bytes / MiB),
	       (unsigned long long)(plan.fsync_bytes / MiB), plan.fsync_cap_s,
	       (unsigned long long)(plan.encode_bytes / MiB), plan.runs);
	printf("# batches: %d-byte raw writes; log batches of 100 B or 1 KiB records filled to "
	       "<= %d B, no compression, one batch per sl_log_append; sources cycle through %llu MiB\n",
	       BATCH_BYTES, BATCH_BYTES, (unsigned long long)(POOL_BYTES / MiB));
	printf("# log: segment_bytes %llu MiB (no-fsync runs), %llu MiB (fsync'd runs); "
	       "reads of at most %llu MiB per sl_log_read\n",
	       (unsigned long long)(plan.segment_bytes / MiB),
	       (unsigned long long)(plan.fsync_segment_bytes / MiB),
	       (unsigned long long)(READ_CHUNK / MiB));
	printf("# fsync mode: fdatasync(2). 'nofsync' runs write to the page cache and sync once "
	       "at the end (timed); 'fsync' runs sync after every write or batch "
	       "(sl_log_flush = fdatasync)\n");
	printf("cores %ld count\n", cores);
	printf("batch_bytes %d B\n", BATCH_BYTES);
	printf("runs %d count\n", plan.runs);
	fflush(stdout);
}

/* ---- 2. Raw disk ------------------------------------------------------ */

static uint8_t *raw_pool; /* POOL_BYTES of random bytes */

/* Pre-built batches laid end to end, re-stamped as they are reused by the
 * log runs; the paired raw runs write the very same bytes and sizes. */
struct pool {
	uint8_t *buf;
	size_t *off;
	size_t *len;
	int32_t *count;
	size_t n;
	size_t bytes;
};

enum raw_mode {
	RAW_APPEND,    /* fresh file, O_APPEND: the file grows */
	RAW_PREZERO,   /* blocks written with zeros and synced before timing */
	RAW_FALLOCATE, /* posix_fallocate'd (unwritten extents) before timing */
};

struct lat_result {
	double mbps;
	double ops;
	double recs; /* records/s (log runs) */
	double p50_us;
	double p99_us;
	double max_us;
	uint64_t bytes;
};

static void lat_finish(struct lat_result *res, uint64_t *lat, uint64_t ops, uint64_t bytes,
		       uint64_t ns)
{
	double s = (double)ns / 1e9;

	res->bytes = bytes;
	res->mbps = (double)bytes / 1e6 / s;
	res->ops = (double)ops / s;
	res->p50_us = percentile_us(lat, ops, 0.50, false);
	res->p99_us = percentile_us(lat, ops, 0.99, true);
	res->max_us = percentile_us(lat, ops, 1.0, true);
}

/* Writes total bytes to a fresh file at path with write(2): 16 KiB buffers
 * (pool NULL) or the pool's batches, same sizes and bytes as the log gets.
 * sync_each: fdatasync after every write, stopping early at the time cap;
 * else one fdatasync at the end, inside the timing. The file is kept. */
static struct lat_result raw_write_loop(const char *path, enum raw_mode mode,
					const struct pool *p, uint64_t total, bool sync_each,
					uint64_t *lat, size_t lat_cap)
{
	struct lat_result res = { 0 };
	int flags = O_WRONLY | O_CREAT | O_TRUNC | (mode == RAW_APPEND ? O_APPEND : 0);
	uint64_t bytes = 0, ops = 0, pos = 0;
	size_t i = 0;

	trash(path);
	int fd = xopen(path, flags);

	if (mode == RAW_PREZERO) {
		uint8_t *zero = xalloc_aligned(MiB);

		memset(zero, 0, MiB);
		for (uint64_t d = 0; d < total + BATCH_BYTES; d += MiB)
			write_full(fd, zero, MiB, path);
		xfdatasync(fd, path);
		free(zero);
		if (lseek(fd, 0, SEEK_SET) != 0)
			die("lseek %s: %s", path, strerror(errno));
	} else if (mode == RAW_FALLOCATE) {
		int rv = posix_fallocate(fd, 0, (off_t)(total + BATCH_BYTES));

		if (rv != 0)
			die("posix_fallocate %s: %s", path, strerror(rv));
		xfdatasync(fd, path);
	}
	uint64_t cap = sync_each ? (uint64_t)(plan.fsync_cap_s * 1e9) : UINT64_MAX;

	settle();
	uint64_t t0 = now_ns();

	while (bytes < total && ops < lat_cap) {
		const uint8_t *buf;
		size_t len;

		if (p != NULL) {
			buf = p->buf + p->off[i];
			len = p->len[i];
			if (++i == p->n)
				i = 0;
		} else {
			buf = raw_pool + pos;
			len = BATCH_BYTES;
			pos += BATCH_BYTES;
			if (pos + BATCH_BYTES > POOL_BYTES)
				pos = 0;
		}
		uint64_t a = now_ns();

		write_full(fd, buf, len, path);
		if (sync_each)
			xfdatasync(fd, path);
		uint64_t b = now_ns();

		lat[ops++] = b - a;
		bytes += len;
		if ((ops & 255) == 0)
			check_stop();
		if (b - t0 > cap)
			break;
	}
	if (!sync_each)
		xfdatasync(fd, path);
	uint64_t t1 = now_ns();

	close(fd);
	lat_finish(&res, lat, ops, bytes, t1 - t0);
	return res;
}

enum read_mode { READ_FADVISE, READ_CACHE, READ_DROP };

static uint64_t read_whole(const char *path, uint8_t *buf, uint64_t *sink)
{
	int fd = xopen(path, O_RDONLY);
	uint64_t done = 0;

	for (;;) {
		ssize_t n = read(fd, buf, READ_CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read %s: %s", path, strerror(errno));
		if (n == 0)
			break;
		*sink += buf[0];
		done += (uint64_t)n;
		if ((done & (64 * MiB - 1)) == 0)
			check_stop();
	}
	close(fd);
	return done;
}

/* (e) sequential read with 1 MiB read(2)s. Returns MB/s, or -1 when the
 * mode is not possible here. */
static double raw_read(const char *path, enum read_mode mode, uint8_t *buf)
{
	uint64_t sink = 0;

	if (mode == READ_FADVISE) {
		int fd = xopen(path, O_RDONLY);

		xfdatasync(fd, path);
		int rv = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);

		if (rv != 0)
			die("posix_fadvise %s: %s", path, strerror(rv));
		close(fd);
	} else if (mode == READ_CACHE) {
		read_whole(path, buf, &sink);
	} else if (!drop_caches()) {
		return -1;
	}
	uint64_t t0 = now_ns();
	uint64_t done = read_whole(path, buf, &sink);
	uint64_t t1 = now_ns();

	if (sink == 1)
		fputc(' ', stderr);
	return (double)done / 1e6 / ((double)(t1 - t0) / 1e9);
}

/* ---- 3. Batches ------------------------------------------------------- */

static uint8_t *value_src; /* random bytes that record values point into */
#define VALUE_SRC_BYTES (128 * KiB)

static const uint8_t *value_for(uint64_t i, size_t rec_size)
{
	size_t span = VALUE_SRC_BYTES - rec_size;

	return value_src + (size_t)((i * 2654435761u) % span);
}

/* Records of rec_size bytes fit while the batch stays <= BATCH_BYTES (a
 * record costs its value plus at most 16 bytes of varints and attributes). */
static bool batch_has_room(const struct sl_batch_builder *b, size_t rec_size)
{
	return sl_batch_builder_size(b) + rec_size + 16 <= BATCH_BYTES;
}

/* Fills the builder with one batch's worth of records and finishes it. */
static void build_batch(struct sl_batch_builder *b, size_t rec_size, uint64_t *seq,
			const uint8_t **out, size_t *out_len)
{
	int rv;

	sl_batch_builder_reset(b, NULL);
	while (batch_has_room(b, rec_size)) {
		rv = sl_batch_builder_add(b, 1764000000000 + (int64_t)*seq, NULL, -1,
					  value_for(*seq, rec_size), (int32_t)rec_size, NULL, 0);
		if (rv != SL_OK)
			die("sl_batch_builder_add: %s", sl_err_name(rv));
		(*seq)++;
	}
	rv = sl_batch_builder_finish(b, out, out_len);
	if (rv != SL_OK)
		die("sl_batch_builder_finish: %s", sl_err_name(rv));
}

struct encode_result {
	double gbps;
	double recs;
};

static struct encode_result encode_run(size_t rec_size, uint64_t total)
{
	struct encode_result res;
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	uint64_t bytes = 0, seq = 0, sink = 0;
	const uint8_t *out;
	size_t len;

	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	/* One batch first so that the buffers are grown before timing. */
	build_batch(&b, rec_size, &seq, &out, &len);
	seq = 0;
	uint64_t t0 = now_ns();

	while (bytes < total) {
		build_batch(&b, rec_size, &seq, &out, &len);
		bytes += len;
		sink += out[SL_BATCH_OFF_CRC];
		if ((bytes & ((1u << 26) - 1)) < len)
			check_stop();
	}
	uint64_t t1 = now_ns();

	sl_batch_builder_free(&b);
	if (sink == 1)
		fputc(' ', stderr);
	double s = (double)(t1 - t0) / 1e9;

	res.gbps = (double)bytes / 1e9 / s;
	res.recs = (double)seq / s;
	return res;
}

/* CRC-32C and sl_batch_check alone, over one 16 KiB batch, in GB/s. */
static double crc_run(const uint8_t *batch, size_t len, uint64_t total, bool check)
{
	uint64_t bytes = 0, sink = 0;
	uint64_t t0 = now_ns();

	while (bytes < total) {
		if (check) {
			struct sl_batch_header h;
			int rv = sl_batch_check(batch, len, len, &h);

			if (rv != SL_OK)
				die("sl_batch_check: %s", sl_err_name(rv));
			sink += (uint64_t)h.record_count;
		} else {
			sink += sl_crc32c(0, batch + SL_BATCH_CRC_START, len - SL_BATCH_CRC_START);
		}
		bytes += len;
	}
	uint64_t t1 = now_ns();

	if (sink == 1)
		fputc(' ', stderr);
	return (double)bytes / 1e9 / ((double)(t1 - t0) / 1e9);
}

/* ---- 4. The log ------------------------------------------------------- */

static void pool_build(struct pool *p, size_t rec_size, size_t target)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	uint64_t seq = 0;
	size_t cap = target / 1024 + 16;

	memset(p, 0, sizeof(*p));
	p->buf = xalloc_aligned(target + BATCH_BYTES);
	p->off = xmalloc(cap * sizeof(size_t));
	p->len = xmalloc(cap * sizeof(size_t));
	p->count = xmalloc(cap * sizeof(int32_t));
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	while (p->bytes + BATCH_BYTES <= target && p->n < cap) {
		const uint8_t *out;
		size_t len;
		struct sl_batch_header h;
		int rv;

		build_batch(&b, rec_size, &seq, &out, &len);
		rv = sl_batch_check(out, len, len, &h);
		if (rv != SL_OK)
			die("a freshly built batch fails sl_batch_check: %s", sl_err_name(rv));
		if (h.record_count != h.last_offset_delta + 1)
			die("built batch: record count %d, last offset delta %d",
			    h.record_count, h.last_offset_delta);
		memcpy(p->buf + p->bytes, out, len);
		p->off[p->n] = p->bytes;
		p->len[p->n] = len;
		p->count[p->n] = h.record_count;
		p->bytes += len;
		p->n++;
	}
	sl_batch_builder_free(&b);
}

static void pool_free(struct pool *p)
{
	free(p->buf);
	free(p->off);
	free(p->len);
	free(p->count);
	memset(p, 0, sizeof(*p));
}

/* --prewrite-max: 0 keeps the library's default. */
static uint32_t prewrite_max_override;

static void log_config(struct sl_log_config *cfg, uint64_t segment_bytes,
		       enum sl_prewrite prewrite)
{
	sl_log_config_init(cfg);
	if (prewrite_max_override != 0) {
		cfg->prewrite_max = prewrite_max_override;
		if (cfg->prewrite_min > cfg->prewrite_max)
			cfg->prewrite_min = cfg->prewrite_max;
	}
	cfg->segment_bytes = segment_bytes;
	cfg->prewrite = prewrite;
	cfg->segment_ms = 0;      /* roll by size only */
	cfg->retention_ms = -1;   /* keep everything */
	cfg->retention_bytes = -1;
}

static sl_log *log_open(const char *dir, const struct sl_log_config *cfg)
{
	char errmsg[SL_ERRMSG_SIZE] = "";
	sl_log *log = NULL;
	int rv = sl_log_open(dir, cfg, NULL, &log, errmsg);

	if (rv != SL_OK)
		die_sl("sl_log_open", rv, NULL, errmsg);
	return log;
}

static void log_close(sl_log *log)
{
	int rv = sl_log_close(log);

	if (rv != SL_OK)
		die("sl_log_close: %s (%d)", sl_err_name(rv), rv);
}

/* Appends pool batches until total bytes (or, with flush_each, the time
 * cap) on a fresh log in dir; flushes after every batch or once at the end.
 * Leaves the log closed in dir. */
static struct lat_result log_append_run(const char *dir, const struct pool *p,
					const struct sl_log_config *cfg, uint64_t total,
					bool flush_each, uint64_t *lat, size_t lat_cap)
{
	struct lat_result res = { 0 };
	uint64_t bytes = 0, ops = 0;
	int64_t next = 0;
	size_t i = 0;
	int rv;

	trash(dir);
	settle();
	sl_log *log = log_open(dir, cfg);
	uint64_t cap = flush_each ? (uint64_t)(plan.fsync_cap_s * 1e9) : UINT64_MAX;
	uint64_t t0 = now_ns();

	while (bytes < total && ops < lat_cap) {
		uint8_t *batch = p->buf + p->off[i];
		size_t len = p->len[i];

		sl_batch_stamp(batch, next, 1);
		uint64_t a = now_ns();

		rv = sl_log_append(log, batch, len);
		if (rv != SL_OK)
			die_sl("sl_log_append", rv, log, NULL);
		if (flush_each) {
			rv = sl_log_flush(log);
			if (rv != SL_OK)
				die_sl("sl_log_flush", rv, log, NULL);
		}
		uint64_t b = now_ns();

		lat[ops++] = b - a;
		next += p->count[i];
		bytes += len;
		res.recs += p->count[i];
		if (++i == p->n)
			i = 0;
		if ((ops & 255) == 0)
			check_stop();
		if (b - t0 > cap)
			break;
	}
	if (!flush_each) {
		rv = sl_log_flush(log);
		if (rv != SL_OK)
			die_sl("sl_log_flush", rv, log, NULL);
	}
	uint64_t t1 = now_ns();

	if (sl_log_end_offset(log) != next)
		die("after appending up to offset %lld the log's end offset is %lld",
		    (long long)next, (long long)sl_log_end_offset(log));
	if (sl_log_durable_offset(log) != next)
		die("after sl_log_flush the durable offset is %lld, expected %lld",
		    (long long)sl_log_durable_offset(log), (long long)next);
	log_close(log);

	lat_finish(&res, lat, ops, bytes, t1 - t0);
	res.recs /= (double)(t1 - t0) / 1e9;
	return res;
}

/* Reads the whole log once with sl_log_read + sl_slice_read into buf
 * (READ_CHUNK + one batch). With verify, also checks every batch's CRC and
 * that offsets follow on. Returns the bytes read. */
static uint64_t log_read_all(sl_log *log, uint8_t *buf, size_t buf_len, bool verify,
			     uint64_t *nbatches)
{
	int64_t off = sl_log_start_offset(log);
	int64_t end = sl_log_end_offset(log);
	uint64_t bytes = 0;
	struct sl_slice sl;
	int rv;

	while (off < end) {
		rv = sl_log_read(log, off, READ_CHUNK, &sl);
		if (rv != SL_OK)
			die_sl("sl_log_read", rv, log, NULL);
		if (sl.len == 0)
			die("sl_log_read at %lld returned nothing before the end offset %lld",
			    (long long)off, (long long)end);
		if (sl.len > buf_len)
			die("sl_log_read returned %llu bytes for a max of %llu",
			    (unsigned long long)sl.len, (unsigned long long)READ_CHUNK);
		if (sl.first_offset > off || sl.next_offset <= off)
			die("sl_log_read at %lld returned offsets [%lld, %lld)", (long long)off,
			    (long long)sl.first_offset, (long long)sl.next_offset);
		rv = sl_slice_read(&sl, buf);
		if (rv != SL_OK)
			die("sl_slice_read: %s (%d)", sl_err_name(rv), rv);
		if (verify) {
			size_t pos = 0;
			int64_t expect = sl.first_offset;

			if (sl.first_offset != off)
				die("slice starts at %lld, asked %lld (batches are whole)",
				    (long long)sl.first_offset, (long long)off);
			while (pos < sl.len) {
				struct sl_batch_header h;

				rv = sl_batch_check(buf + pos, sl.len - pos, sl.len - pos, &h);
				if (rv != SL_OK)
					die("batch at offset %lld read back: %s", (long long)expect,
					    sl_err_name(rv));
				if (h.base_offset != expect)
					die("batch read back has base offset %lld, expected %lld",
					    (long long)h.base_offset, (long long)expect);
				expect = sl_batch_last_offset(&h) + 1;
				pos += sl_batch_total_size(&h);
				(*nbatches)++;
			}
			if (expect != sl.next_offset)
				die("slice says next offset %lld, its batches end at %lld",
				    (long long)sl.next_offset, (long long)expect);
		}
		bytes += sl.len;
		off = sl.next_offset;
		sl_slice_release(&sl);
		if ((bytes & (64 * MiB - 1)) < READ_CHUNK)
			check_stop();
	}
	return bytes;
}

/* Page-cache read (after one untimed read) or read after drop_caches.
 * Returns MB/s, or -1 when caches cannot be dropped. */
static double log_read_run(const char *dir, const struct sl_log_config *cfg,
			   enum read_mode mode, uint8_t *buf, size_t buf_len)
{
	sl_log *log = log_open(dir, cfg);
	uint64_t nb = 0;

	if (mode == READ_CACHE) {
		log_read_all(log, buf, buf_len, false, &nb);
	} else if (!drop_caches()) {
		log_close(log);
		return -1;
	}
	uint64_t t0 = now_ns();
	uint64_t bytes = log_read_all(log, buf, buf_len, false, &nb);
	uint64_t t1 = now_ns();

	log_close(log);
	return (double)bytes / 1e6 / ((double)(t1 - t0) / 1e9);
}

static const char *prewrite_name(enum sl_prewrite pw)
{
	switch (pw) {
	case SL_PREWRITE_NONE: return "none";
	case SL_PREWRITE_ZERO: return "zero";
	case SL_PREWRITE_FALLOCATE: return "fallocate";
	}
	return "?";
}

/* ---- Main ------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_storage [--dir DIR] [--quick] [--runs N] [--prewrite-max BYTES]\n"
		"  --dir DIR  write only under DIR (default ./data/bench); a subdirectory\n"
		"             of it is created and removed at exit\n"
		"  --quick    small sizes, about 10 s\n"
		"  --runs N   runs per figure, median reported (default 3, 1..%d)\n"
		"  --prewrite-max BYTES  largest pre-write window chunk (default: the\n"
		"             library's)\n",
		MAX_RUNS);
}

struct size_case {
	size_t rec_size;
	const char *tag;
};

static const struct size_case size_cases[] = {
	{ 100, "100b" },
	{ 1024, "1k" },
};
#define NSIZES (sizeof(size_cases) / sizeof(size_cases[0]))

static const enum sl_prewrite strategies[] = {
	SL_PREWRITE_NONE, SL_PREWRITE_ZERO, SL_PREWRITE_FALLOCATE,
};
#define NSTRATEGIES (sizeof(strategies) / sizeof(strategies[0]))

/* Reports MB/s (returned), records/s, ops/s and latencies of the runs. */
static double report_lat(const char *base, const struct lat_result *r, int runs, bool with_recs)
{
	double v[MAX_RUNS] = { 0 };

	for (int i = 0; i < runs; i++)
		v[i] = r[i].mbps;
	double mbps = reportf(v, runs, "%s|MB/s", base);

	if (with_recs) {
		for (int i = 0; i < runs; i++)
			v[i] = r[i].recs;
		reportf(v, runs, "%s_records|records/s", base);
	}
	for (int i = 0; i < runs; i++)
		v[i] = r[i].ops;
	reportf(v, runs, "%s_ops|ops/s", base);
	for (int i = 0; i < runs; i++)
		v[i] = r[i].p50_us;
	reportf(v, runs, "%s_p50|us", base);
	for (int i = 0; i < runs; i++)
		v[i] = r[i].p99_us;
	reportf(v, runs, "%s_p99|us", base);
	for (int i = 0; i < runs; i++)
		v[i] = r[i].max_us;
	reportf(v, runs, "%s_max|us", base);
	return mbps;
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

static void print_summary(void)
{
	const char *sec = NULL;

	printf("\n==== summary: median of %d run(s) (min..max); MB = 1e6 B ====\n", plan.runs);
	printf("%-44s %12s %12s %12s  %s\n", "figure", "median", "min", "max", "unit");
	for (int i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		double lo = r->v[0], hi = r->v[0];

		for (int k = 1; k < r->n; k++) {
			lo = r->v[k] < lo ? r->v[k] : lo;
			hi = r->v[k] > hi ? r->v[k] : hi;
		}
		if (sec != r->section) {
			sec = r->section;
			printf("[%s]\n", sec);
		}
		printf("  %-42s ", r->name);
		char a[32], b[32], c[32];

		snprintf(a, sizeof(a), r->med >= 100 || r->med <= -100 ? "%.0f" : "%.3f", r->med);
		snprintf(b, sizeof(b), lo >= 100 || lo <= -100 ? "%.0f" : "%.3f", lo);
		snprintf(c, sizeof(c), hi >= 100 || hi <= -100 ? "%.0f" : "%.3f", hi);
		printf("%12s %12s %12s  %s\n", a, r->n > 1 ? b : "", r->n > 1 ? c : "", r->unit);
	}
	printf("\n==== goals ====\n");
	int met = 0;

	for (int i = 0; i < ngoals; i++) {
		const struct goal *g = &goals[i];
		bool ok = goal_met(g);

		met += ok;
		printf("  %-62s %9.3f %-4s goal %s %-5g %s\n", g->what, g->value, g->unit,
		       g->at_least ? ">=" : "<", g->target, ok ? "PASS" : "MISS");
	}
	printf("  %d of %d goals met\n", met, ngoals);
	if (!drop_caches_ok)
		printf("  note: cold reads after drop_caches skipped (%s)\n",
		       drop_caches_note ? drop_caches_note : "not allowed");
	fflush(stdout);
}

/* Figures the ratios and goals are made of (medians) for one record size. */
struct size_fig {
	double nofsync;           /* log append, one flush at the end */
	double ratio_nofsync;     /* vs raw 16 KiB writes: median of per-run ratios */
	double fsync_best;        /* log append+flush, best prewrite strategy */
	const char *best;
	double ratio_fsync;       /* best vs raw 16 KiB write+fdatasync, growing file */
	double ratio_fsync_b;     /* ... vs the same batches, growing file */
	double ratio_prezero;     /* ... vs 16 KiB into pre-zeroed blocks */
	double read_cache;        /* log read, page cache */
	double ratio_read_cache;  /* vs raw 1 MiB reads of the raw 16 KiB file */
	double read_cold;         /* after drop_caches; -1 if not possible */
	double ratio_read_cold;
};

static struct size_fig size_fig[NSIZES];

static uint64_t *lat;
static size_t lat_cap;
static uint8_t *read_buf;
static size_t read_buf_len;

static double report_runs(const char *name, const char *unit, const struct lat_result *r,
			  int runs)
{
	double v[MAX_RUNS] = { 0 };

	for (int i = 0; i < runs; i++)
		v[i] = r[i].mbps;
	return report(name, unit, v, runs);
}

static double median_ratio(const struct lat_result *a, const struct lat_result *b, int runs)
{
	double v[MAX_RUNS] = { 0 };

	for (int i = 0; i < runs; i++)
		v[i] = ratio(a[i].mbps, b[i].mbps);
	return median(v, runs);
}

/* Section 2: the disk with plain POSIX I/O. */
static void bench_raw(void)
{
	static const char *const names[] = {
		"raw_append_fdatasync_16k", "raw_prezero_fdatasync_16k",
		"raw_fallocate_fdatasync_16k",
	};
	struct lat_result lr[MAX_RUNS];
	double v[MAX_RUNS] = { 0 };
	char file[PATH_MAX], path[PATH_MAX];
	int runs = plan.runs, nr = 0;

	section("raw disk (POSIX I/O, no storage library)");
	work_path(file, "raw.dat");
	for (int r = 0; r < runs; r++) {
		progress("raw: sequential write %d/%d\n", r + 1, runs);
		lr[r] = raw_write_loop(file, RAW_APPEND, NULL, plan.write_bytes, false, lat, lat_cap);
	}
	report_runs("raw_write_nofsync_16k", "MB/s", lr, runs);

	work_path(path, "raw_fsync.dat");
	wait_quiet("raw fsync'd loops", plan.quick ? 5 : 20);
	for (int m = RAW_APPEND; m <= RAW_FALLOCATE; m++) {
		for (int r = 0; r < runs; r++) {
			progress("raw: %s %d/%d\n", names[m], r + 1, runs);
			lr[r] = raw_write_loop(path, (enum raw_mode)m, NULL, plan.fsync_bytes, true, lat,
					       lat_cap);
		}
		trash(path);
		report_lat(names[m], lr, runs, false);
	}

	/* The page-cache read first, while the pages are as the writes left
	 * them (as the log's will be), then the cold-ish reads. */
	for (int r = 0; r < runs; r++) {
		progress("raw: read from page cache %d/%d\n", r + 1, runs);
		v[r] = raw_read(file, READ_CACHE, read_buf);
	}
	report("raw_read_cache_1m", "MB/s", v, runs);
	for (int r = 0; r < runs; r++) {
		progress("raw: read after fadvise(DONTNEED) %d/%d\n", r + 1, runs);
		v[r] = raw_read(file, READ_FADVISE, read_buf);
	}
	report("raw_read_fadvise_1m", "MB/s", v, runs);
	printf("# (fadvise(DONTNEED) and drop_caches empty the guest's cache only; the host may "
	       "still serve these reads from its own)\n");
	for (int r = 0; r < runs; r++) {
		progress("raw: read after drop_caches %d/%d\n", r + 1, runs);
		double x = raw_read(file, READ_DROP, read_buf);

		if (x < 0)
			break;
		v[nr++] = x;
	}
	if (nr > 0)
		report("raw_read_dropcache_1m", "MB/s", v, nr);
	else
		printf("# raw_read_dropcache_1m skipped: cannot write /proc/sys/vm/drop_caches (%s)\n",
		       drop_caches_note ? drop_caches_note : "?");
	trash(file);
}

/* Section 3: building batches, and the CRC alone. */
static double bench_codec(void)
{
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	const uint8_t *out;
	size_t len;
	uint64_t seq = 0;
	uint8_t *copy;
	double v[MAX_RUNS] = { 0 }, encode_100b = 0;
	int runs = plan.runs;

	section("batch codec (proto/batch.h, one core)");
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	build_batch(&b, 100, &seq, &out, &len);
	copy = xmalloc(len);
	memcpy(copy, out, len);
	sl_batch_builder_free(&b);
	for (int r = 0; r < runs; r++)
		v[r] = crc_run(copy, len, plan.encode_bytes, false);
	report("crc32c_16k", "GB/s", v, runs);
	for (int r = 0; r < runs; r++)
		v[r] = crc_run(copy, len, plan.encode_bytes, true);
	report("batch_check_16k", "GB/s", v, runs);
	free(copy);

	for (size_t s = 0; s < NSIZES; s++) {
		struct encode_result er[MAX_RUNS];

		for (int r = 0; r < runs; r++) {
			progress("codec: encode %s %d/%d\n", size_cases[s].tag, r + 1, runs);
			er[r] = encode_run(size_cases[s].rec_size, plan.encode_bytes);
		}
		for (int r = 0; r < runs; r++)
			v[r] = er[r].gbps;
		double g = reportf(v, runs, "encode_%s|GB/s", size_cases[s].tag);

		if (s == 0)
			encode_100b = g;
		for (int r = 0; r < runs; r++)
			v[r] = er[r].recs;
		reportf(v, runs, "encode_%s_records|records/s", size_cases[s].tag);
	}
	return encode_100b;
}

/* Section 4 for one record size. Every log run is paired with raw runs of
 * the same total size just before it, so that the disk's drift (large here)
 * hits both: raw 16 KiB writes (the raw figures of section 2) and, for the
 * fsync'd runs, raw writes of the very batches the log gets (same bytes and
 * sizes, so the same partial blocks at each fdatasync). */
static void bench_log(size_t s)
{
	const char *tag = size_cases[s].tag;
	struct size_fig *f = &size_fig[s];
	struct lat_result lr[MAX_RUNS], raw[MAX_RUNS], rawb[MAX_RUNS], rawz[MAX_RUNS];
	struct lat_result fs[NSTRATEGIES][MAX_RUNS];
	double v[MAX_RUNS] = { 0 }, w[MAX_RUNS] = { 0 };
	char logdir[PATH_MAX], rawfile[PATH_MAX], name[64], base[64];
	struct sl_log_config cfg;
	struct pool pool;
	int runs = plan.runs, nr = 0;

	pool_build(&pool, size_cases[s].rec_size, POOL_BYTES);
	printf("# %s records: batches of %.0f B on average, %d records each (%zu batches in the "
	       "pool)\n", tag, (double)pool.bytes / (double)pool.n, pool.count[0], pool.n);

	/* (a) no fsync: page cache, one flush at the end */
	wait_quiet("log no-fsync runs", plan.quick ? 5 : 20);
	work_path(logdir, tag);
	snprintf(name, sizeof(name), "raw_%s.dat", tag);
	work_path(rawfile, name);
	log_config(&cfg, plan.segment_bytes, SL_PREWRITE_ZERO);
	for (int r = 0; r < runs; r++) {
		progress("log: append nofsync %s %d/%d (raw 16k, then log)\n", tag, r + 1, runs);
		raw[r] = raw_write_loop(rawfile, RAW_APPEND, NULL, plan.write_bytes, false, lat,
					lat_cap);
		lr[r] = log_append_run(logdir, &pool, &cfg, plan.write_bytes, false, lat, lat_cap);
	}
	snprintf(name, sizeof(name), "raw_write_nofsync_16k_paired_%s", tag);
	report_runs(name, "MB/s", raw, runs);
	for (int r = 0; r < runs; r++)
		v[r] = lr[r].mbps;
	f->nofsync = reportf(v, runs, "log_append_nofsync_%s|MB/s", tag);
	for (int r = 0; r < runs; r++)
		v[r] = lr[r].recs;
	reportf(v, runs, "log_append_nofsync_%s_records|records/s", tag);
	for (int r = 0; r < runs; r++)
		v[r] = lr[r].p99_us;
	reportf(v, runs, "log_append_nofsync_%s_p99|us", tag);
	for (int r = 0; r < runs; r++)
		v[r] = lr[r].max_us;
	reportf(v, runs, "log_append_nofsync_%s_max|us", tag);
	f->ratio_nofsync = median_ratio(lr, raw, runs);

	/* (c) read back: a check of every batch first (untimed), then the
	 * page cache as the writes left it, then after drop_caches; the raw
	 * 16 KiB file is read the same way just before the log each time. */
	{
		sl_log *log = log_open(logdir, &cfg);
		uint64_t nb = 0;
		uint64_t got = log_read_all(log, read_buf, read_buf_len, true, &nb);

		printf("# %s log read back and checked: %llu batches, %llu bytes, %zu segments, "
		       "offsets %lld..%lld\n", tag, (unsigned long long)nb, (unsigned long long)got,
		       sl_log_segment_count(log), (long long)sl_log_start_offset(log),
		       (long long)sl_log_end_offset(log));
		if (got != sl_log_size(log))
			printf("# note: read %llu bytes but sl_log_size says %llu\n",
			       (unsigned long long)got, (unsigned long long)sl_log_size(log));
		log_close(log);
	}
	for (int r = 0; r < runs; r++) {
		progress("log: read from page cache %s %d/%d (raw, then log)\n", tag, r + 1, runs);
		w[r] = raw_read(rawfile, READ_CACHE, read_buf);
		v[r] = log_read_run(logdir, &cfg, READ_CACHE, read_buf, read_buf_len);
	}
	reportf(w, runs, "raw_read_cache_1m_paired_%s|MB/s", tag);
	f->read_cache = reportf(v, runs, "log_read_cache_%s|MB/s", tag);
	for (int r = 0; r < runs; r++)
		v[r] = ratio(v[r], w[r]);
	f->ratio_read_cache = median(v, runs);
	for (int r = 0; r < runs && drop_caches_ok; r++) {
		progress("log: read after drop_caches %s %d/%d (raw, then log)\n", tag, r + 1, runs);
		double x = raw_read(rawfile, READ_DROP, read_buf);
		double y = log_read_run(logdir, &cfg, READ_DROP, read_buf, read_buf_len);

		if (x < 0 || y < 0)
			break;
		w[nr] = x;
		v[nr++] = y;
	}
	f->read_cold = -1;
	if (nr > 0) {
		reportf(w, nr, "raw_read_dropcache_1m_paired_%s|MB/s", tag);
		f->read_cold = reportf(v, nr, "log_read_dropcache_%s|MB/s", tag);
		for (int r = 0; r < nr; r++)
			v[r] = ratio(v[r], w[r]);
		f->ratio_read_cold = median(v, nr);
	} else {
		printf("# log_read_dropcache_%s skipped: cannot drop caches (%s)\n", tag,
		       drop_caches_note ? drop_caches_note : "?");
	}
	trash(logdir);
	trash(rawfile);

	/* (b) sl_log_flush after every batch, each prewrite strategy, after
	 * raw write+fdatasync loops: 16 KiB growing, 16 KiB pre-zeroed, and
	 * the same batches growing. */
	work_path(logdir, "log_fsync");
	wait_quiet("log fsync'd runs", plan.quick ? 5 : 20);
	for (int r = 0; r < runs; r++) {
		progress("log: append+flush %s %d/%d (raw 16k, raw 16k prezero, raw batches, log x%zu)\n",
			 tag, r + 1, runs, NSTRATEGIES);
		raw[r] = raw_write_loop(rawfile, RAW_APPEND, NULL, plan.fsync_bytes, true, lat, lat_cap);
		rawz[r] = raw_write_loop(rawfile, RAW_PREZERO, NULL, plan.fsync_bytes, true, lat,
					 lat_cap);
		rawb[r] = raw_write_loop(rawfile, RAW_APPEND, &pool, plan.fsync_bytes, true, lat,
					 lat_cap);
		trash(rawfile);
		for (size_t k = 0; k < NSTRATEGIES; k++) {
			struct sl_log_config fcfg;

			log_config(&fcfg, plan.fsync_segment_bytes, strategies[k]);
			fs[k][r] = log_append_run(logdir, &pool, &fcfg, plan.fsync_bytes, true, lat,
						  lat_cap);
		}
		trash(logdir);
	}
	snprintf(base, sizeof(base), "raw_append_fdatasync_16k_paired_%s", tag);
	report_lat(base, raw, runs, false);
	snprintf(base, sizeof(base), "raw_prezero_fdatasync_16k_paired_%s", tag);
	report_lat(base, rawz, runs, false);
	snprintf(base, sizeof(base), "raw_append_fdatasync_batches_%s", tag);
	report_lat(base, rawb, runs, false);
	f->fsync_best = -1;
	f->best = "?";
	for (size_t k = 0; k < NSTRATEGIES; k++) {
		snprintf(base, sizeof(base), "log_append_fsync_%s_%s", prewrite_name(strategies[k]), tag);
		double m = report_lat(base, fs[k], runs, true);

		if (m > f->fsync_best) {
			f->fsync_best = m;
			f->best = prewrite_name(strategies[k]);
			f->ratio_fsync = median_ratio(fs[k], raw, runs);
			f->ratio_fsync_b = median_ratio(fs[k], rawb, runs);
			f->ratio_prezero = median_ratio(fs[k], rawz, runs);
		}
	}
	pool_free(&pool);
}

/* Section 5. Ratios are medians of per-run ratios, each log run against
 * the raw run just before it; the goals use the raw 16 KiB loops, the
 * brief's definition of the raw figures. */
static void bench_ratios(double encode_100b)
{
	char what[96];

	section("ratios (log / raw, paired runs)");
	for (size_t s = 0; s < NSIZES; s++) {
		const char *tag = size_cases[s].tag;
		const struct size_fig *f = &size_fig[s];

		reportf(&f->ratio_nofsync, 1, "ratio_append_nofsync_%s|x", tag);
		snprintf(what, sizeof(what), "append without fsync, %s (vs raw 16 KiB writes)", tag);
		add_goal(what, f->ratio_nofsync, 0.80, true, "x");

		printf("# best prewrite strategy for %s: %s\n", tag, f->best);
		reportf(&f->ratio_fsync, 1, "ratio_append_fsync_%s|x", tag);
		snprintf(what, sizeof(what), "fsync'd append, %s, prewrite %s (vs raw 16 KiB loop)", tag,
			 f->best);
		add_goal(what, f->ratio_fsync, 0.90, true, "x");
		reportf(&f->ratio_fsync_b, 1, "ratio_append_fsync_vs_batches_%s|x", tag);
		reportf(&f->ratio_prezero, 1, "ratio_append_fsync_vs_prezero_%s|x", tag);

		reportf(&f->ratio_read_cache, 1, "ratio_read_cache_%s|x", tag);
		snprintf(what, sizeof(what), "sequential read, page cache, %s", tag);
		add_goal(what, f->ratio_read_cache, 0.80, true, "x");
		if (f->read_cold > 0) {
			reportf(&f->ratio_read_cold, 1, "ratio_read_cold_%s|x", tag);
			snprintf(what, sizeof(what), "sequential read, after drop_caches, %s", tag);
			add_goal(what, f->ratio_read_cold, 0.80, true, "x");
		}
	}
	add_goal("encode+CRC, 100 B records, one core", encode_100b, 1.0, true, "GB/s");
}

/* Section 6: a log of OPEN_SEGMENTS sealed segments, opened and closed. */
static void bench_open(void)
{
	struct sl_log_config cfg;
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	double topen[OPEN_REPEATS], tclose[OPEN_REPEATS];
	char path[PATH_MAX];
	uint64_t seq = 0;
	int64_t next = 0;
	uint8_t *small;
	size_t small_len;
	int32_t small_count;
	const uint8_t *out;
	sl_log *log;
	int rv;

	section("open (1,000 sealed segments)");
	/* 8 records of 100 B: about 1 KiB a batch, 3 or 4 batches a segment. */
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	for (int k = 0; k < 8; k++) {
		rv = sl_batch_builder_add(&b, 1764000000000 + k, NULL, -1, value_for(seq++, 100), 100,
					  NULL, 0);
		if (rv != SL_OK)
			die("sl_batch_builder_add: %s", sl_err_name(rv));
	}
	rv = sl_batch_builder_finish(&b, &out, &small_len);
	if (rv != SL_OK)
		die("sl_batch_builder_finish: %s", sl_err_name(rv));
	small = xmalloc(small_len);
	memcpy(small, out, small_len);
	small_count = sl_batch_builder_count(&b);
	sl_batch_builder_free(&b);

	work_path(path, "log_open");
	trash(path);
	log_config(&cfg, 4 * KiB, SL_PREWRITE_ZERO);
	progress("open: writing %d sealed segments\n", OPEN_SEGMENTS);
	uint64_t t0 = now_ns();

	log = log_open(path, &cfg);
	while (sl_log_segment_count(log) < OPEN_SEGMENTS + 1) {
		sl_batch_stamp(small, next, 1);
		rv = sl_log_append(log, small, small_len);
		if (rv != SL_OK)
			die_sl("sl_log_append", rv, log, NULL);
		next += small_count;
		if (next > (int64_t)OPEN_SEGMENTS * 64 * small_count)
			die("4 KiB segments do not roll: %zu segments after %lld records",
			    sl_log_segment_count(log), (long long)next);
		check_stop();
	}
	rv = sl_log_flush(log);
	if (rv != SL_OK)
		die_sl("sl_log_flush", rv, log, NULL);
	log_close(log);
	uint64_t t1 = now_ns();

	report1("open_setup_write_1000_segments", "s", (double)(t1 - t0) / 1e9);
	free(small);

	for (int k = 0; k < OPEN_REPEATS; k++) {
		uint64_t a = now_ns();

		log = log_open(path, &cfg);
		uint64_t c = now_ns();

		if (sl_log_segment_count(log) != OPEN_SEGMENTS + 1 || sl_log_end_offset(log) != next)
			die("reopened log has %zu segments and end offset %lld, expected %d and %lld",
			    sl_log_segment_count(log), (long long)sl_log_end_offset(log),
			    OPEN_SEGMENTS + 1, (long long)next);
		log_close(log);
		uint64_t d = now_ns();

		topen[k] = (double)(c - a) / 1e6;
		tclose[k] = (double)(d - c) / 1e6;
	}
	double open_ms = report("open_1000_segments", "ms", topen, OPEN_REPEATS);

	report("close_1000_segments", "ms", tclose, OPEN_REPEATS);
	add_goal("sl_log_open of 1,000 sealed segments", open_ms, 100, false, "ms");
	trash(path);
}

int main(int argc, char **argv)
{
	const char *basedir = "./data/bench";
	int runs = 3;
	bool quick = false;
	char path[PATH_MAX];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			basedir = argv[++i];
		} else if (strncmp(argv[i], "--dir=", 6) == 0) {
			basedir = argv[i] + 6;
		} else if (strcmp(argv[i], "--quick") == 0) {
			quick = true;
		} else if ((strcmp(argv[i], "--runs") == 0 && i + 1 < argc) ||
			   strncmp(argv[i], "--runs=", 7) == 0) {
			const char *s = argv[i][6] == '=' ? argv[i] + 7 : argv[++i];
			char *end;
			long n = strtol(s, &end, 10);

			if (*s == '\0' || *end != '\0' || n < 1 || n > MAX_RUNS) {
				usage(stderr);
				return 2;
			}
			runs = (int)n;
		} else if (strcmp(argv[i], "--prewrite-max") == 0 && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end != '\0' || v < 4096 || v > (1ul << 30)) {
				usage(stderr);
				return 2;
			}
			prewrite_max_override = (uint32_t)v;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}

	plan.runs = runs;
	plan.quick = quick;
	plan.write_bytes = quick ? 256 * MiB : 1 * GiB;
	plan.fsync_bytes = quick ? 4 * MiB : 32 * MiB;
	plan.fsync_cap_s = quick ? 1.0 : 3.0;
	plan.encode_bytes = quick ? 64 * MiB : 256 * MiB;
	plan.segment_bytes = plan.write_bytes / 4;
	plan.fsync_segment_bytes = plan.fsync_bytes / 2;

	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	atexit(cleanup);

	make_dirs(basedir);
	if (snprintf(workdir, sizeof(workdir), "%s/bench_storage.%ld", basedir,
		     (long)getpid()) >= (int)sizeof(workdir))
		die("--dir too long");
	rm_tree(workdir);
	if (mkdir(workdir, 0755) != 0)
		die("mkdir %s: %s", workdir, strerror(errno));
	workdir_made = true;

	struct statvfs vfs;
	/* Everything the run writes, kept until exit (see trash()). */
	uint64_t all = plan.write_bytes * (uint64_t)(runs + NSIZES * 2 * runs) +
		       (plan.fsync_bytes + 8 * MiB) * (uint64_t)(3 * runs + NSIZES * 6 * runs) + GiB;
	uint64_t need = 3 * plan.write_bytes + 512 * MiB;

	if (statvfs(workdir, &vfs) == 0) {
		uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;

		if (avail < need)
			die("%s has %llu MiB free, the run needs about %llu MiB", workdir,
			    (unsigned long long)(avail / MiB), (unsigned long long)(need / MiB));
		if (avail < all + 4 * GiB) {
			defer_delete = false;
			printf("# note: only %llu MiB free, not enough to keep the %llu MiB this run "
			       "writes until the end: files are deleted as the run goes, and with the "
			       "discard mount option the fsync'd figures may suffer for it\n",
			       (unsigned long long)(avail / MiB), (unsigned long long)(all / MiB));
		}
	}
	work_path(path, "trash");
	if (mkdir(path, 0755) != 0)
		die("mkdir %s: %s", path, strerror(errno));

	t_start = now_ns();
	print_setup(basedir);
	raw_pool = xalloc_aligned(POOL_BYTES);
	fill_random(raw_pool, POOL_BYTES, 0x5eed);
	value_src = xmalloc(VALUE_SRC_BYTES);
	fill_random(value_src, VALUE_SRC_BYTES, 0xfeed);
	read_buf_len = READ_CHUNK + 2 * BATCH_BYTES;
	read_buf = xalloc_aligned(read_buf_len);
	lat_cap = (size_t)(plan.write_bytes / (BATCH_BYTES / 2)) + 16;
	lat = xmalloc(lat_cap * sizeof(uint64_t));

	wait_quiet("start", quick ? 15 : 60);
	bench_raw();
	double encode_100b = bench_codec();

	section("partition log (storage/)");
	for (size_t s = 0; s < NSIZES; s++)
		bench_log(s);
	bench_ratios(encode_100b);
	bench_open();

	report1("bench_wall_time", "s", (double)(now_ns() - t_start) / 1e9);
	print_summary();
	if (defer_delete)
		printf("# removing the %.1f GiB written; with the discard mount option, fdatasync on "
		       "this disk is slow for a while afterwards\n", (double)trash_bytes / (double)GiB);

	free(lat);
	free(read_buf);
	free(value_src);
	free(raw_pool);
	return 0;
}
