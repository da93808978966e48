/* broker/: sluiced's log lines, one per event on stderr:
 *
 *   2026-11-28T05:20:01.123Z info  node=1 http: listening addr=127.0.0.1:9644
 *
 * time (UTC, ms), level, the node, the subsystem, the message, then
 * key=value pairs. SL_BLOG checks the level before evaluating its
 * arguments. Thread-safe (one fprintf per line). */
#ifndef SL_BROKER_BLOG_H
#define SL_BROKER_BLOG_H

#include <stdint.h>

enum { SL_BLOG_ERROR, SL_BLOG_WARN, SL_BLOG_INFO, SL_BLOG_DEBUG };

extern int sl_blog_level;

/* level: "error", "warn", "info" or "debug" (anything else: info). */
void sl_blog_init(const char *level, uint64_t node_id);

__attribute__((format(printf, 3, 4))) void sl_blog_write(int level, const char *subsys,
							 const char *fmt, ...);

#define SL_BLOG(level, subsys, ...)                                     \
	do {                                                            \
		if ((level) <= sl_blog_level)                           \
			sl_blog_write((level), (subsys), __VA_ARGS__);  \
	} while (0)

/* The raft/ layer's log callback (sl_rlog_fn): its lines go through here
 * under subsystem "raft". */
void sl_blog_raft(void *arg, int level, const char *msg);

#endif
