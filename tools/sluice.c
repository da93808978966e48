/* sluice: the command-line tool (tools/README.md). It speaks to the
 * cluster only through libsluice.
 *
 * Exit status: 0 on success, 1 when the cluster refused or could not be
 * reached (one line "sluice: ERROR_NAME: message" on stderr), 2 for a
 * usage error. Retriable errors are retried by libsluice until
 * request.timeout.ms (30 s; --timeout-ms). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sluice.h"

#define MAX_CONFIGS 64

static void usage(FILE *out)
{
	fprintf(out,
		"usage: sluice [--bootstrap HOST:PORT,...] [--timeout-ms MS] COMMAND\n"
		"  topic create NAME --partitions P --replication-factor R [--config k=v]...\n"
		"  topic list [--json]\n"
		"  topic describe NAME [--json]\n"
		"  topic delete NAME\n"
		"  cluster status [--json]\n"
		"  produce TOPIC [--key-separator SEP] [--acks all|1|0] [--partition P]\n"
		"          [--header k=v]...\n"
		"  consume TOPIC [--group G] [--from-beginning] [--partition P [--offset O]]\n"
		"          [--max-messages N] [--timeout-ms T] [--print-key] [--print-offset]\n"
		"          [--print-headers]\n"
		"  group list [--json]\n"
		"  group describe G [--json]\n"
		"  group delete G\n"
		"  group reset-offsets G --topic T[:P,...] (--to-earliest|--to-latest|--to-offset O|\n"
		"          --to-datetime ISO8601|--shift-by N) [--execute]\n"
		"  perf produce --topic T --num-records N --record-size B [--acks all|1|0]\n"
		"          [--throughput R] [--producers K] [--compression none|zstd]\n"
		"  perf consume --topic T --num-records N [--group G]\n"
		"  log dump DIR [--json]\n"
		"The bootstrap list defaults to $SLUICE_BOOTSTRAP, then 127.0.0.1:9092.\n");
}

/* `sluice COMMAND ... --help`: the usage lines of that command (and
 * their continuation lines). */
static int command_help(const char *cmd)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (f == NULL)
		return 1;
	usage(f);
	fclose(f);
	size_t clen = strlen(cmd);
	char *out = NULL;
	size_t olen = 0;
	FILE *o = open_memstream(&out, &olen);
	if (o == NULL) {
		free(text);
		return 1;
	}
	bool inside = false;
	int lines = 0;
	for (char *save, *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		bool mine = strncmp(line, "  ", 2) == 0 && strncmp(line + 2, cmd, clen) == 0 &&
			    (line[2 + clen] == ' ' || line[2 + clen] == '\0');
		inside = mine || (inside && strncmp(line, "          ", 10) == 0);
		if (inside) {
			fprintf(o, "%s\n", line);
			lines += mine;
		}
	}
	fclose(o);
	free(text);
	if (lines == 0) {
		free(out);
		return cli_usage_error("unknown command '%s'", cmd);
	}
	printf("usage: sluice [--bootstrap HOST:PORT,...] [--timeout-ms MS] COMMAND\n%s", out);
	puts("Options before COMMAND: --bootstrap HOST:PORT,... (default $SLUICE_BOOTSTRAP, then "
	     "127.0.0.1:9092), --timeout-ms MS (how long retriable errors are retried, 30000).");
	free(out);
	return 0;
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "sluice: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (sluice --help)\n");
	va_end(ap);
	return 2;
}

/* The one line a failed call prints: a server's message could hold a
 * line break or a control character, which would make it two. */
int cli_failed(sluice_err_t err, const char *msg)
{
	fprintf(stderr, "sluice: %s: ", sluice_err_name(err));
	for (const unsigned char *p = (const unsigned char *)(msg[0] ? msg : sluice_strerror(err));
	     *p; p++)
		fputc(*p < 0x20 || *p == 0x7f ? ' ' : *p, stderr);
	fputc('\n', stderr);
	return 1;
}

static int failed(sluice_err_t err, const sluice_report_t *r)
{
	return cli_failed(err, r != NULL ? sluice_report_errmsg(r) : "");
}

bool cli_parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (s[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
		return false;
	*out = v;
	return true;
}

void cli_json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static void json_ids(const int32_t *ids, size_t n)
{
	putchar('[');
	for (size_t i = 0; i < n; i++)
		printf("%s%d", i ? "," : "", ids[i]);
	putchar(']');
}

static void text_ids(const int32_t *ids, size_t n)
{
	if (n == 0)
		fputs("-", stdout);
	for (size_t i = 0; i < n; i++)
		printf("%s%d", i ? "," : "", ids[i]);
}

static void print_topic(const sluice_report_t *r, bool json)
{
	int32_t n = sluice_report_partition_count(r);
	int32_t rep[64], isr[64];
	if (json) {
		fputs("{\"name\":", stdout);
		cli_json_str(sluice_report_topic_name(r, 0));
		fputs(",\"partitions\":[", stdout);
	} else {
		printf("topic %s partitions %d\n", sluice_report_topic_name(r, 0), n);
	}
	for (int32_t p = 0; p < n; p++) {
		size_t nr = sluice_report_replicas(r, p, rep, 64);
		size_t ni = sluice_report_isr(r, p, isr, 64);
		nr = nr < 64 ? nr : 64;
		ni = ni < 64 ? ni : 64;
		if (json) {
			printf("%s{\"partition\":%d,\"leader\":%d,\"replicas\":", p ? "," : "", p,
			       sluice_report_leader(r, p));
			json_ids(rep, nr);
			fputs(",\"isr\":", stdout);
			json_ids(isr, ni);
			printf(",\"log_start\":%lld,\"log_end\":%lld,\"raft_group\":%lld}",
			       (long long)sluice_report_log_start(r, p),
			       (long long)sluice_report_log_end(r, p),
			       (long long)sluice_report_raft_group(r, p));
		} else {
			printf("  partition %d leader %d replicas ", p, sluice_report_leader(r, p));
			text_ids(rep, nr);
			fputs(" isr ", stdout);
			text_ids(isr, ni);
			printf(" log_start %lld log_end %lld raft_group %lld\n",
			       (long long)sluice_report_log_start(r, p),
			       (long long)sluice_report_log_end(r, p),
			       (long long)sluice_report_raft_group(r, p));
		}
	}
	if (json)
		puts("]}");
}

static void print_cluster(const sluice_report_t *r, bool json)
{
	int32_t n = sluice_report_node_count(r);
	if (json) {
		fputs("{\"cluster_id\":", stdout);
		cli_json_str(sluice_report_cluster_id(r));
		printf(",\"controller\":%d,\"nodes\":[", sluice_report_controller(r));
	} else {
		printf("cluster %s\ncontroller %d\n", sluice_report_cluster_id(r),
		       sluice_report_controller(r));
	}
	for (int32_t i = 0; i < n; i++) {
		const char *rack = sluice_report_node_rack(r, i);
		if (json) {
			printf("%s{\"id\":%d,\"host\":", i ? "," : "", sluice_report_node_id(r, i));
			cli_json_str(sluice_report_node_host(r, i));
			printf(",\"port\":%d,\"rack\":", sluice_report_node_port(r, i));
			cli_json_str(rack);
			printf(",\"alive\":%s,\"leaders\":%d,\"replicas\":%d}",
			       sluice_report_node_alive(r, i) ? "true" : "false",
			       sluice_report_node_leaders(r, i), sluice_report_node_replicas(r, i));
		} else {
			printf("node %d %s:%d rack %s %s leaders %d replicas %d\n",
			       sluice_report_node_id(r, i), sluice_report_node_host(r, i),
			       sluice_report_node_port(r, i), rack[0] ? rack : "-",
			       sluice_report_node_alive(r, i) ? "alive" : "dead",
			       sluice_report_node_leaders(r, i), sluice_report_node_replicas(r, i));
		}
	}
	int32_t nu = sluice_report_under_replicated(r);
	if (json)
		printf("],\"under_replicated_partitions\":%d,\"under_replicated\":[", nu);
	else
		printf("under_replicated_partitions %d\n", nu);
	for (int32_t i = 0; i < nu; i++) {
		int32_t rep[64], isr[64];
		size_t nr = sluice_report_under_replicated_replicas(r, i, rep, 64);
		size_t ni = sluice_report_under_replicated_isr(r, i, isr, 64);
		nr = nr < 64 ? nr : 64;
		ni = ni < 64 ? ni : 64;
		if (json) {
			fputs(i ? ",{\"topic\":" : "{\"topic\":", stdout);
			cli_json_str(sluice_report_under_replicated_topic(r, i));
			printf(",\"partition\":%d,\"leader\":%d,\"replicas\":",
			       sluice_report_under_replicated_partition(r, i),
			       sluice_report_under_replicated_leader(r, i));
			json_ids(rep, nr);
			fputs(",\"isr\":", stdout);
			json_ids(isr, ni);
			putchar('}');
		} else {
			printf("  %s/%d leader %d replicas ", sluice_report_under_replicated_topic(r, i),
			       sluice_report_under_replicated_partition(r, i),
			       sluice_report_under_replicated_leader(r, i));
			text_ids(rep, nr);
			fputs(" isr ", stdout);
			text_ids(isr, ni);
			putchar('\n');
		}
	}
	if (json)
		puts("]}");
}

/* Runs one admin call's outcome: prints on success. */
static int outcome(sluice_err_t err, sluice_report_t *r, void (*print)(const sluice_report_t *, bool),
		   bool json)
{
	int rc = 0;
	if (err != SLUICE_OK)
		rc = failed(err, r);
	else if (print != NULL)
		print(r, json);
	sluice_report_destroy(r);
	return rc;
}

static int topic_create(sluice_admin_t *a, int argc, char **argv)
{
	const char *name = NULL;
	long partitions = -1, rf = -1;
	const char *kv[2 * MAX_CONFIGS + 1];
	char *owned[MAX_CONFIGS];
	size_t nkv = 0, nowned = 0;
	int rc = 0;
	for (int i = 0; i < argc && rc == 0; i++) {
		const char *arg = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(arg, "--partitions") == 0 || strcmp(arg, "--replication-factor") == 0) {
			bool parts = arg[2] == 'p';
			long v;
			if (val == NULL || !cli_parse_int(val, 1, parts ? INT32_MAX : INT16_MAX, &v))
				rc = cli_usage_error("%s needs a positive number", arg);
			else if (parts)
				partitions = v;
			else
				rf = v;
			i++;
		} else if (strcmp(arg, "--config") == 0) {
			const char *eq = val != NULL ? strchr(val, '=') : NULL;
			if (eq == NULL || eq == val)
				rc = cli_usage_error("--config needs key=value");
			else if (nowned == MAX_CONFIGS)
				rc = cli_usage_error("at most %d --config", MAX_CONFIGS);
			else if ((owned[nowned] = strndup(val, (size_t)(eq - val))) == NULL)
				rc = cli_usage_error("out of memory");
			else {
				kv[nkv++] = owned[nowned++];
				kv[nkv++] = eq + 1;
			}
			i++;
		} else if (arg[0] == '-' || name != NULL) {
			rc = cli_usage_error("topic create: unexpected '%s'", arg);
		} else {
			name = arg;
		}
	}
	if (rc == 0 && (name == NULL || partitions < 0 || rf < 0))
		rc = cli_usage_error("topic create NAME --partitions P --replication-factor R");
	if (rc == 0) {
		kv[nkv] = NULL;
		sluice_report_t *r = NULL;
		sluice_err_t err = sluice_topic_create(a, name, (int32_t)partitions, (int16_t)rf, kv,
						       NULL, NULL, &r);
		if (err == SLUICE_OK)
			printf("created topic %s with %ld partitions, replication factor %ld\n", name,
			       partitions, rf);
		rc = outcome(err, r, NULL, false);
	}
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	return rc;
}

/* NAME [--json]. */
static int name_and_json(int argc, char **argv, const char **name, bool *json, bool json_ok)
{
	*name = NULL;
	*json = false;
	for (int i = 0; i < argc; i++) {
		if (json_ok && strcmp(argv[i], "--json") == 0)
			*json = true;
		else if (argv[i][0] == '-' || *name != NULL)
			return cli_usage_error("unexpected '%s'", argv[i]);
		else
			*name = argv[i];
	}
	return *name == NULL ? cli_usage_error("a topic name is required") : 0;
}

static int topic(sluice_admin_t *a, int argc, char **argv)
{
	if (argc < 1)
		return cli_usage_error("topic: create, list, describe or delete");
	const char *sub = argv[0], *name;
	bool json;
	sluice_report_t *r = NULL;
	if (strcmp(sub, "create") == 0)
		return topic_create(a, argc - 1, argv + 1);
	if (strcmp(sub, "list") == 0) {
		json = argc == 2 && strcmp(argv[1], "--json") == 0;
		if (argc > 1 && !json)
			return cli_usage_error("topic list: unexpected '%s'", argv[1]);
		sluice_err_t err = sluice_topic_list(a, NULL, NULL, &r);
		if (err == SLUICE_OK && json)
			fputs("{\"topics\":[", stdout);
		for (int32_t i = 0; err == SLUICE_OK && i < sluice_report_topic_count(r); i++) {
			if (json) {
				if (i > 0)
					putchar(',');
				cli_json_str(sluice_report_topic_name(r, i));
			} else {
				puts(sluice_report_topic_name(r, i));
			}
		}
		if (err == SLUICE_OK && json)
			fputs("]}\n", stdout);
		return outcome(err, r, NULL, false);
	}
	if (strcmp(sub, "describe") == 0) {
		int rc = name_and_json(argc - 1, argv + 1, &name, &json, true);
		if (rc != 0)
			return rc;
		sluice_err_t err = sluice_topic_describe(a, name, NULL, NULL, &r);
		return outcome(err, r, print_topic, json);
	}
	if (strcmp(sub, "delete") == 0) {
		int rc = name_and_json(argc - 1, argv + 1, &name, &json, false);
		if (rc != 0)
			return rc;
		sluice_err_t err = sluice_topic_delete(a, name, NULL, NULL, &r);
		if (err == SLUICE_OK)
			printf("deleted topic %s\n", name);
		return outcome(err, r, NULL, false);
	}
	return cli_usage_error("topic: unknown subcommand '%s'", sub);
}

static int cluster(sluice_admin_t *a, int argc, char **argv)
{
	if (argc < 1 || strcmp(argv[0], "status") != 0)
		return cli_usage_error("cluster: status is the subcommand");
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") != 0)
			return cli_usage_error("cluster status: unexpected '%s'", argv[i]);
		json = true;
	}
	sluice_report_t *r = NULL;
	sluice_err_t err = sluice_cluster_describe(a, NULL, NULL, &r);
	return outcome(err, r, print_cluster, json);
}

sluice_client_t *cli_client(const struct cli_opts *o, const char *const kv[], int *rc)
{
	char err[512];
	sluice_conf_t *conf = sluice_conf_new();
	if (conf == NULL) {
		fprintf(stderr, "sluice: out of memory\n");
		*rc = 1;
		return NULL;
	}
	bool ok = (o->bootstrap == NULL || o->bootstrap[0] == '\0' ||
		   sluice_conf_set(conf, "bootstrap.servers", o->bootstrap, err, sizeof(err)) ==
			   SLUICE_OK) &&
		  (o->timeout_ms == NULL ||
		   sluice_conf_set(conf, "request.timeout.ms", o->timeout_ms, err, sizeof(err)) ==
			   SLUICE_OK);
	for (size_t k = 0; ok && kv != NULL && kv[k] != NULL; k += 2)
		ok = sluice_conf_set(conf, kv[k], kv[k + 1], err, sizeof(err)) == SLUICE_OK;
	if (!ok) {
		sluice_conf_destroy(conf);
		*rc = cli_usage_error("%s", err);
		return NULL;
	}
	sluice_client_t *cl = sluice_client_new(conf, err, sizeof(err));
	if (cl == NULL) {
		sluice_conf_destroy(conf);
		fprintf(stderr, "sluice: %s\n", err);
		*rc = 1;
	}
	return cl;
}

int main(int argc, char **argv)
{
	const char *bootstrap = getenv("SLUICE_BOOTSTRAP");
	const char *timeout = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		const char *eq = strchr(argv[i], '=');
		size_t klen = eq != NULL ? (size_t)(eq - argv[i]) : strlen(argv[i]);
		const char *val = eq != NULL ? eq + 1 : i + 1 < argc ? argv[i + 1] : NULL;
		const char **dst = strncmp(argv[i], "--bootstrap", klen) == 0 && klen == 11 ? &bootstrap
				   : strncmp(argv[i], "--timeout-ms", klen) == 0 && klen == 12 ? &timeout
												 : NULL;
		if (dst == NULL)
			return cli_usage_error("unknown option '%s'", argv[i]);
		if (val == NULL)
			return cli_usage_error("%s needs a value", argv[i]);
		*dst = val;
		if (eq == NULL)
			i++;
	}
	if (i == argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[i];
	for (int k = i + 1; k < argc; k++)
		if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0)
			return command_help(cmd);
	struct cli_opts o = { .bootstrap = bootstrap, .timeout_ms = timeout };
	if (strcmp(cmd, "produce") == 0)
		return cli_produce(&o, argc - i - 1, argv + i + 1);
	if (strcmp(cmd, "consume") == 0)
		return cli_consume(&o, argc - i - 1, argv + i + 1);
	if (strcmp(cmd, "perf") == 0)
		return cli_perf(&o, argc - i - 1, argv + i + 1);
	if (strcmp(cmd, "log") == 0)
		return cli_log(argc - i - 1, argv + i + 1);
	if (strcmp(cmd, "topic") != 0 && strcmp(cmd, "cluster") != 0 && strcmp(cmd, "group") != 0)
		return cli_usage_error("unknown command '%s'", cmd);
	int rc;
	sluice_client_t *cl = cli_client(&o, NULL, &rc);
	if (cl == NULL)
		return rc;
	sluice_admin_t *a = sluice_admin_new(cl);
	if (a == NULL) {
		fprintf(stderr, "sluice: out of memory\n");
		rc = 1;
	} else if (strcmp(cmd, "topic") == 0) {
		rc = topic(a, argc - i - 1, argv + i + 1);
	} else if (strcmp(cmd, "group") == 0) {
		rc = cli_group(a, argc - i - 1, argv + i + 1);
	} else {
		rc = cluster(a, argc - i - 1, argv + i + 1);
	}
	sluice_admin_destroy(a);
	sluice_client_destroy(cl);
	return rc;
}
