/* `sluice group list|describe|delete|reset-offsets` (tools/README.md). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static int failed(sluice_err_t err, sluice_report_t *r)
{
	int rc = cli_failed(err, r != NULL ? sluice_report_errmsg(r) : sluice_strerror(err));
	sluice_report_destroy(r);
	return rc;
}

static int list(sluice_admin_t *a, int argc, char **argv)
{
	bool json = argc == 1 && strcmp(argv[0], "--json") == 0;
	if (argc > 0 && !json)
		return cli_usage_error("group list: unexpected '%s'", argv[0]);
	sluice_report_t *r = NULL;
	sluice_err_t err = sluice_group_list(a, NULL, NULL, &r);
	if (err != SLUICE_OK)
		return failed(err, r);
	/* Sorted by name: one line per group. */
	int32_t n = sluice_report_group_count(r);
	int32_t *order = calloc((size_t)n + 1, sizeof(*order));
	if (order == NULL) {
		sluice_report_destroy(r);
		return cli_failed(SLUICE_ERR_NOMEM, "out of memory");
	}
	for (int32_t i = 0; i < n; i++) {
		int32_t j = i;
		while (j > 0 && strcmp(sluice_report_group_name(r, order[j - 1]),
				       sluice_report_group_name(r, i)) > 0) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	if (json)
		fputs("{\"groups\":[", stdout);
	for (int32_t k = 0; k < n; k++) {
		const char *name = sluice_report_group_name(r, order[k]);
		const char *state = sluice_report_group_state(r, order[k]);
		int32_t members = sluice_report_group_members(r, order[k]);
		if (json) {
			fputs(k ? ",{\"group\":" : "{\"group\":", stdout);
			cli_json_str(name);
			fputs(",\"state\":", stdout);
			cli_json_str(state);
			printf(",\"members\":%d}", members);
		} else {
			printf("%s\t%s\t%d\n", name, state, members);
		}
	}
	if (json)
		fputs("]}\n", stdout);
	free(order);
	sluice_report_destroy(r);
	return 0;
}

static int describe(sluice_admin_t *a, int argc, char **argv)
{
	const char *group = NULL;
	bool json = false;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (argv[i][0] == '-' || group != NULL)
			return cli_usage_error("group describe: unexpected '%s'", argv[i]);
		else
			group = argv[i];
	}
	if (group == NULL)
		return cli_usage_error("group describe: a group id is required");
	sluice_report_t *r = NULL;
	sluice_err_t err = sluice_group_describe(a, group, NULL, NULL, &r);
	if (err != SLUICE_OK)
		return failed(err, r);
	int32_t nm = sluice_report_member_count(r), no = sluice_report_offset_count(r);
	if (json) {
		fputs("{\"group\":", stdout);
		cli_json_str(group);
		fputs(",\"state\":", stdout);
		cli_json_str(sluice_report_group_state(r, 0));
		printf(",\"epoch\":%d,\"assignor\":", sluice_report_group_epoch(r, 0));
		cli_json_str(sluice_report_group_assignor(r, 0));
		fputs(",\"members\":[", stdout);
	} else {
		printf("group %s state %s epoch %d assignor %s members %d\n", group,
		       sluice_report_group_state(r, 0), sluice_report_group_epoch(r, 0),
		       sluice_report_group_assignor(r, 0), sluice_report_group_members(r, 0));
	}
	for (int32_t i = 0; i < nm; i++) {
		const char *inst = sluice_report_member_instance(r, i);
		int32_t np = sluice_report_member_partition_count(r, i);
		if (json) {
			fputs(i ? ",{\"member_id\":" : "{\"member_id\":", stdout);
			cli_json_str(sluice_report_member_id(r, i));
			fputs(",\"instance_id\":", stdout);
			cli_json_str(inst);
			printf(",\"epoch\":%d,\"assignment\":[", sluice_report_member_epoch(r, i));
		} else {
			printf("  member %s instance %s epoch %d partitions ",
			       sluice_report_member_id(r, i), inst[0] ? inst : "-",
			       sluice_report_member_epoch(r, i));
		}
		for (int32_t j = 0; j < np; j++) {
			int32_t p;
			const char *t = sluice_report_member_partition(r, i, j, &p);
			if (json) {
				fputs(j ? ",{\"topic\":" : "{\"topic\":", stdout);
				cli_json_str(t);
				printf(",\"partition\":%d}", p);
			} else {
				printf("%s%s/%d", j ? "," : "", t, p);
			}
		}
		if (json)
			fputs("]}", stdout);
		else
			printf("%s\n", np == 0 ? "-" : "");
	}
	if (json)
		fputs("],\"offsets\":[", stdout);
	for (int32_t i = 0; i < no; i++) {
		const char *t = sluice_report_offset_topic(r, i);
		int32_t p = sluice_report_offset_partition(r, i);
		long long c = (long long)sluice_report_offset_committed(r, i);
		long long e = (long long)sluice_report_offset_log_end(r, i);
		long long l = (long long)sluice_report_offset_lag(r, i);
		if (json) {
			fputs(i ? ",{\"topic\":" : "{\"topic\":", stdout);
			cli_json_str(t);
			printf(",\"partition\":%d,\"committed\":%lld,\"log_end\":%lld,\"lag\":%lld}",
			       p, c, e, l);
		} else {
			printf("  %s/%d committed %lld log_end %lld lag %lld\n", t, p, c, e, l);
		}
	}
	if (json)
		fputs("]}\n", stdout);
	sluice_report_destroy(r);
	return 0;
}

static int delete(sluice_admin_t *a, int argc, char **argv)
{
	if (argc != 1 || argv[0][0] == '-')
		return cli_usage_error("group delete: one group id is required");
	sluice_report_t *r = NULL;
	sluice_err_t err = sluice_group_delete(a, argv[0], NULL, NULL, &r);
	if (err != SLUICE_OK)
		return failed(err, r);
	sluice_report_destroy(r);
	printf("deleted group %s\n", argv[0]);
	return 0;
}

/* ISO 8601: YYYY-MM-DDTHH:MM:SS[.mmm][Z|±HH:MM] (no zone: UTC), into ms
 * since the epoch. */
static bool parse_datetime(const char *s, int64_t *ms)
{
	struct tm tm = { 0 };
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p == NULL)
		return false;
	long frac = 0;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				frac = frac * 10 + (*p - '0');
		if (digits == 0)
			return false;
		for (; digits < 3; digits++)
			frac *= 10;
	}
	long off = 0;
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		int hh, mm;
		if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || hh > 23 || mm > 59)
			return false;
		off = sign * (hh * 3600L + mm * 60L);
		p += 6;
	}
	if (*p != '\0')
		return false;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return false;
	*ms = ((int64_t)t - off) * 1000 + frac;
	return true;
}

static int reset_offsets(sluice_admin_t *a, int argc, char **argv)
{
	const char *group = NULL, *spec = NULL;
	int whence = -1;
	int64_t value = 0;
	bool execute = false;
	for (int i = 0; i < argc; i++) {
		const char *f = argv[i];
		bool takes = strcmp(f, "--topic") == 0 || strcmp(f, "--to-offset") == 0 ||
			     strcmp(f, "--to-datetime") == 0 || strcmp(f, "--shift-by") == 0;
		if (takes && i + 1 >= argc)
			return cli_usage_error("group reset-offsets: %s needs a value", f);
		int w = strcmp(f, "--to-earliest") == 0	  ? SLUICE_EARLIEST
			: strcmp(f, "--to-latest") == 0	  ? SLUICE_LATEST
			: strcmp(f, "--to-offset") == 0	  ? SLUICE_OFFSET
			: strcmp(f, "--to-datetime") == 0 ? SLUICE_TIMESTAMP
			: strcmp(f, "--shift-by") == 0	  ? SLUICE_SHIFT
							  : -1;
		if (w >= 0 && whence >= 0)
			return cli_usage_error("group reset-offsets: one of --to-earliest, "
					       "--to-latest, --to-offset, --to-datetime, --shift-by");
		if (w >= 0)
			whence = w;
		long v;
		if (strcmp(f, "--topic") == 0) {
			spec = argv[++i];
		} else if (w == SLUICE_OFFSET) {
			if (!cli_parse_int(argv[++i], 0, INT64_MAX, &v))
				return cli_usage_error("group reset-offsets: --to-offset '%s' is not "
						       "an offset",
						       argv[i]);
			value = v;
		} else if (w == SLUICE_SHIFT) {
			if (!cli_parse_int(argv[++i], INT64_MIN, INT64_MAX, &v))
				return cli_usage_error("group reset-offsets: --shift-by '%s' is not "
						       "a number",
						       argv[i]);
			value = v;
		} else if (w == SLUICE_TIMESTAMP) {
			if (!parse_datetime(argv[++i], &value))
				return cli_usage_error("group reset-offsets: --to-datetime '%s' is "
						       "not ISO 8601 (2026-11-28T09:30:00Z)",
						       argv[i]);
		} else if (strcmp(f, "--execute") == 0) {
			execute = true;
		} else if (w < 0 && (f[0] == '-' || group != NULL)) {
			return cli_usage_error("group reset-offsets: unexpected '%s'", f);
		} else if (w < 0) {
			group = f;
		}
	}
	if (group == NULL || spec == NULL || whence < 0)
		return cli_usage_error("group reset-offsets: G --topic T[:P,...] and one of "
				       "--to-earliest, --to-latest, --to-offset O, --to-datetime "
				       "ISO8601, --shift-by N are required");
	/* T, or T:P,P,... */
	char *topic = strdup(spec);
	if (topic == NULL)
		return cli_failed(SLUICE_ERR_NOMEM, "out of memory");
	char *colon = strchr(topic, ':');
	long parts[1024];
	size_t np = 0;
	if (colon != NULL) {
		*colon = '\0';
		for (char *tok = strtok(colon + 1, ","); tok != NULL; tok = strtok(NULL, ",")) {
			if (np == sizeof(parts) / sizeof(parts[0]) ||
			    !cli_parse_int(tok, 0, INT32_MAX, &parts[np])) {
				free(topic);
				return cli_usage_error("group reset-offsets: --topic '%s': bad "
						       "partition list",
						       spec);
			}
			np++;
		}
		if (np == 0) {
			free(topic);
			return cli_usage_error("group reset-offsets: --topic '%s': no partitions",
					       spec);
		}
	}
	if (np == 0)
		parts[np++] = -1;
	/* The whole plan first (a dry run), then, with --execute, the writes. */
	int rc = 0;
	for (int pass = 0; pass < (execute ? 2 : 1) && rc == 0; pass++)
		for (size_t k = 0; k < np && rc == 0; k++) {
			sluice_report_t *r = NULL;
			sluice_err_t err = sluice_group_reset_offsets(a, group, topic,
								      (int32_t)parts[k],
								      (sluice_whence_t)whence, value,
								      pass == 0, NULL, NULL, &r);
			if (err != SLUICE_OK) {
				rc = failed(err, r);
				break;
			}
			for (int32_t i = 0; pass == (execute ? 1 : 0) &&
					    i < sluice_report_offset_count(r);
			     i++)
				printf("%s\t%s\t%d\t%lld\t%lld\n", group, topic,
				       sluice_report_offset_partition(r, i),
				       (long long)sluice_report_offset_committed(r, i),
				       (long long)sluice_report_offset_target(r, i));
			sluice_report_destroy(r);
		}
	if (rc == 0)
		fprintf(stderr, execute ? "offsets reset\n"
					: "plan only: nothing was changed (add --execute)\n");
	free(topic);
	return rc;
}

int cli_group(sluice_admin_t *a, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "list") == 0)
		return list(a, argc - 1, argv + 1);
	if (argc >= 1 && strcmp(argv[0], "describe") == 0)
		return describe(a, argc - 1, argv + 1);
	if (argc >= 1 && strcmp(argv[0], "delete") == 0)
		return delete(a, argc - 1, argv + 1);
	if (argc >= 1 && strcmp(argv[0], "reset-offsets") == 0)
		return reset_offsets(a, argc - 1, argv + 1);
	return cli_usage_error("group: list, describe, delete or reset-offsets is the subcommand");
}
