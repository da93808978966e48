/* Helpers for tests and benchmarks that start real processes (tests/cluster,
 * tests/bench): spawn a program with its stdin and stdout on pipes and its
 * stderr in a log file, talk to it one line at a time with deadlines, kill
 * and reap it with deadlines, and make sure nothing outlives the test.
 *
 *   - Every child gets prctl(PR_SET_PDEATHSIG, SIGKILL): it dies with the
 *     thread that started it (a Criterion worker killed on a timeout).
 *   - Every started PID is kept in a registry; an atexit handler (and
 *     tl_proc_kill_all(), for a suite's .fini) SIGKILLs and reaps whatever
 *     is still running, so a failing assertion leaves nothing behind.
 *   - No bare sleeps: reads wait in poll() with a deadline; conditions are
 *     re-checked every few tens of milliseconds until their deadline.
 *
 * Threads: one thread (the test's) at a time; the registry is not locked. */
#ifndef SL_TEST_PROCS_H
#define SL_TEST_PROCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TL_PROC_LINE_MAX 8192

struct tl_proc {
	pid_t pid;             /* 0: not started or reaped */
	int in_fd;             /* write end of the child's stdin; -1: closed */
	int out_fd;            /* read end of the child's stdout; -1: closed */
	bool eof;              /* stdout reached end of file */
	bool exited;           /* reaped: status is valid */
	int status;            /* waitpid status */
	size_t len;            /* bytes buffered in buf */
	char buf[TL_PROC_LINE_MAX];
	char log_path[512];    /* the child's stderr */
};

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t tl_now_ms(void);

/* Starts argv[0] (a path) with argv. stdin and stdout are pipes to proc;
 * stderr is appended to log_path (created if missing; NULL: inherited).
 * Returns 0, or -1 with errno set (nothing started). */
int tl_proc_spawn(struct tl_proc *proc, char *const argv[], const char *log_path);

/* Writes fmt (printf style) and a newline to the child's stdin. Returns 0,
 * or -1 (the child closed its stdin or died: EPIPE). */
int tl_proc_send(struct tl_proc *proc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Reads one line (without its newline) into line[0..cap), waiting at most
 * timeout_ms. Returns 1 with a line, 0 on timeout, -1 at end of file. */
int tl_proc_read_line(struct tl_proc *proc, char *line, size_t cap, int timeout_ms);

/* Reads lines until one starts with prefix (skipping others) or timeout_ms
 * passes. Returns 1 (line holds it), 0 on timeout, -1 at end of file. */
int tl_proc_expect(struct tl_proc *proc, const char *prefix, char *line, size_t cap,
		   int timeout_ms);

/* Sends the command fmt and reads lines until one starts with the
 * command's first word followed by a space or the end of the line (other
 * lines are skipped). Returns as tl_proc_expect, or -1 if sending failed. */
int tl_proc_command(struct tl_proc *proc, char *line, size_t cap, int timeout_ms,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Calls pred(arg) until it returns true or timeout_ms passes, waiting
 * interval_ms (0: 25) between attempts. Returns pred's last answer. */
bool tl_wait_until(bool (*pred)(void *arg), void *arg, int timeout_ms, int interval_ms);

/* Sends sig to the child if it still runs. Returns 0 or -1. */
int tl_proc_kill(struct tl_proc *proc, int sig);

/* Waits at most timeout_ms for the child to exit and reaps it (status in
 * proc->status). Returns 1 once reaped, 0 on timeout. stdout stays open,
 * so the lines it printed last can still be read. */
int tl_proc_wait(struct tl_proc *proc, int timeout_ms);

/* Kills the child (SIGKILL) if it runs, reaps it and closes the pipes. */
void tl_proc_close(struct tl_proc *proc);

/* SIGKILLs and reaps every child still running (the atexit handler does the
 * same; call it from a suite's .fini as well). */
void tl_proc_kill_all(void);

/* Picks n distinct free TCP ports on 127.0.0.1: random ports below the
 * kernel's ephemeral range (where no outgoing connection takes one before
 * the node binds it), each bound to check it is free, then closed.
 * Returns 0 or -1. */
int tl_free_ports(int *ports, int n);

/* GET path from 127.0.0.1:port over HTTP/1.0, within timeout_ms. Returns
 * 0 with *status (the HTTP status) and the body in body[0..cap) (cut to
 * fit, NUL-terminated), or -1 (no connection, no answer in time). */
int tl_http_get(int port, const char *path, int *status, char *body, size_t cap, int timeout_ms);

/* ---- Answers: "word key=value key=value ..." ------------------------- */

/* The value of key=... in line as an integer (decimal, or hex with 0x).
 * Returns false when the key is missing or not a number. */
bool tl_line_int(const char *line, const char *key, int64_t *out);
/* The value of key=... as a string, up to the next space. */
bool tl_line_str(const char *line, const char *key, char *out, size_t cap);

/* ---- /proc readers, for benchmarks ---------------------------------- */

/* utime + stime of pid in clock ticks (sysconf(_SC_CLK_TCK)), or -1. */
int64_t tl_proc_cpu_ticks(pid_t pid);
/* VmRSS of pid in KiB, or -1. */
int64_t tl_proc_rss_kb(pid_t pid);
/* Open file descriptors of pid (entries of /proc/PID/fd), or -1. */
int tl_proc_fd_count(pid_t pid);

/* ---- The disk's raw limit, for benchmarks --------------------------- */

/* MB/s (10^6 bytes) of a loop of size-byte write + fdatasync appending to
 * a new file in dir, for about seconds; the file is removed. 0 on error. */
double tl_raw_fsync_mbps(const char *dir, size_t size, double seconds);

#endif
