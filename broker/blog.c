/* sluiced's log lines. See blog.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "blog.h"
#include "pnet.h" /* SL_RLOG_* */

int sl_blog_level = SL_BLOG_INFO;
static uint64_t node;

void sl_blog_init(const char *level, uint64_t node_id)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	sl_blog_level = SL_BLOG_INFO;
	for (int i = 0; i < 4; i++)
		if (strcmp(level, names[i]) == 0)
			sl_blog_level = i;
	node = node_id;
}

void sl_blog_write(int level, const char *subsys, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn ", "info ", "debug" };
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s node=%llu %s: %s\n", when, ts.tv_nsec / 1000000,
		names[level < 0 ? 0 : level > 3 ? 3 : level], (unsigned long long)node, subsys, msg);
}

void sl_blog_raft(void *arg, int level, const char *msg)
{
	(void)arg;
	int l = level <= SL_RLOG_ERROR ? SL_BLOG_ERROR
		: level <= SL_RLOG_WARN ? SL_BLOG_WARN
		: level <= SL_RLOG_INFO ? SL_BLOG_INFO
					 : SL_BLOG_DEBUG;
	SL_BLOG(l, "raft", "%s", msg);
}
