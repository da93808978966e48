/* What the sluice CLI's files share (tools/README.md). */
#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H

#include <stdbool.h>

#include "sluice.h"

/* "sluice: <what> (sluice --help)" on stderr; returns 2. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "sluice: ERROR_NAME: message" (one line) on stderr; returns 1. */
int cli_failed(sluice_err_t err, const char *msg);
/* A JSON string of s on stdout. */
void cli_json_str(const char *s);
/* A decimal in [min, max]. */
bool cli_parse_int(const char *s, long min, long max, long *out);

/* The global options, and the configuration they make: bootstrap.servers
 * and request.timeout.ms set, plus kv ("key", "value", ..., NULL). NULL
 * with the reason printed (exit code in *rc). */
struct cli_opts {
	const char *bootstrap;
	const char *timeout_ms;
};
sluice_client_t *cli_client(const struct cli_opts *o, const char *const kv[], int *rc);

/* tools/data.c: `produce`, `consume`, `perf`; argv starts after the
 * command's name. */
int cli_produce(const struct cli_opts *o, int argc, char **argv);
int cli_consume(const struct cli_opts *o, int argc, char **argv);
int cli_perf(const struct cli_opts *o, int argc, char **argv);
/* tools/logdump.c: `log`; argv starts after "log". */
int cli_log(int argc, char **argv);
/* tools/group.c: `group`; argv starts after "group". */
int cli_group(sluice_admin_t *a, int argc, char **argv);

#endif
