/* sluiced's configuration (broker/config.h): defaults, precedence of the
 * file, the environment and flags, errors that name the key and where it
 * came from, the cross checks, the seed list, and the template that
 * deploy/sluiced.conf is a copy of. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "errors.h"
#include "testlib.h"

/* ---- Fixtures and helpers ------------------------------------------- */

static struct sl_config c;
static enum sl_config_action action;
static char err[SL_ERRMSG_SIZE];

/* No SLUICED_* variables at all: the tests never see the real environment. */
static char *no_env[] = { NULL };

static void setup(void)
{
	sl_config_init(&c);
	action = SL_CONFIG_RUN;
	err[0] = '\0';
}

static void teardown(void)
{
	sl_config_free(&c);
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 30);

/* Runs sl_config_load on a NULL-terminated argv (argv[0] included). */
static int load(char **argv, char **envp)
{
	int argc = 0;
	while (argv[argc] != NULL)
		argc++;
	err[0] = '\0';
	return sl_config_load(&c, argc, argv, envp, &action, err);
}

/* Writes text to name in the test's temporary directory; returns the path
 * (static storage, one per call site is enough for these tests). */
static const char *write_file(const char *name, const char *text)
{
	static char path[1024];
	snprintf(path, sizeof(path), "%s/%s", tl_tmpdir(), name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "cannot create %s", path);
	cr_assert_eq(fputs(text, f) >= 0, true);
	cr_assert_eq(fclose(f), 0);
	return path;
}

/* Asserts that the last call failed with SL_EINVALID_ARGUMENT and that
 * errmsg holds every string of the NULL-terminated list. */
static void expect_error(int rv, const char *const *needles)
{
	cr_assert_eq(rv, SL_EINVALID_ARGUMENT, "expected SL_EINVALID_ARGUMENT, got %s (%s)",
		     sl_err_name(rv), err);
	for (const char *const *n = needles; *n != NULL; n++)
		cr_assert_not_null(strstr(err, *n), "errmsg '%s' lacks '%s'", err, *n);
}

#define EXPECT_ERROR(rv, ...) expect_error((rv), (const char *const[]){ __VA_ARGS__, NULL })

/* Reads a whole file into a malloc'd buffer; *len gets its size. */
static char *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot open %s", path);
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	cr_assert_not_null(buf);
	size_t got;
	while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
	}
	cr_assert_eq(ferror(f), 0, "cannot read %s", path);
	fclose(f);
	*len = n;
	return buf;
}

/* The template, as sluiced --help-config prints it. */
static char *template_text(size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	cr_assert_not_null(f);
	sl_config_print_template(f);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

/* ---- Defaults and precedence ---------------------------------------- */

Test(config, defaults_are_the_documented_ones)
{
	cr_expect_eq(c.client_port, 9092);
	cr_expect_eq(c.peer_port, 9093);
	cr_expect_eq(c.http_port, 9644);
	cr_expect_eq(c.heartbeat_ms, 200);
	cr_expect_eq(c.election_ms, 1000);
	cr_expect_str_eq(c.data_dir, "./data");
	cr_expect_str_eq(c.log_level, "info");
	cr_expect_eq(c.node_id, 0);
	cr_expect_str_eq(c.seeds, "");
	cr_expect_str_eq(sl_config_advertised(&c), "127.0.0.1");
}

Test(config, flags_beat_environment_which_beats_the_file)
{
	const char *path = write_file("p.conf", "client_port = 1000\nhttp_port = 3000\n");
	char *argv[] = { "sluiced", "--config", (char *)path, "--http-port", "4000",
			 "--node-id", "1", NULL };
	char *envp[] = { "HOME=/nowhere", "SLUICED_CLIENT_PORT=2000", NULL };
	int rv = load(argv, envp);
	cr_assert_eq(rv, SL_OK, "load: %s (%s)", sl_err_name(rv), err);
	cr_expect_eq(action, SL_CONFIG_RUN);
	cr_expect_eq(c.client_port, 2000);
	cr_expect_eq(c.http_port, 4000);
	cr_expect_eq(c.node_id, 1);
	cr_expect_eq(c.peer_port, 9093);
}

Test(config, the_file_beats_the_defaults_and_the_environment_sets_node_id)
{
	const char *path = write_file("p.conf", "# A comment.\n\nclient_port = 1000\n"
						"data_dir = /var/lib/sluice\n");
	char *argv[] = { "sluiced", "--config", (char *)path, NULL };
	char *envp[] = { "SLUICED_NODE_ID=3", NULL };
	int rv = load(argv, envp);
	cr_assert_eq(rv, SL_OK, "load: %s (%s)", sl_err_name(rv), err);
	cr_expect_eq(c.client_port, 1000);
	cr_expect_str_eq(c.data_dir, "/var/lib/sluice");
	cr_expect_eq(c.node_id, 3);
}

Test(config, flags_take_separate_or_joined_values_and_dashes_equal_underscores)
{
	char *argv[] = { "sluiced", "--node-id=2", "--client_port=5", "--peer_port", "6",
			 "--http-port=7", "--log-level", "debug", NULL };
	int rv = load(argv, no_env);
	cr_assert_eq(rv, SL_OK, "load: %s (%s)", sl_err_name(rv), err);
	cr_expect_eq(c.node_id, 2);
	cr_expect_eq(c.client_port, 5);
	cr_expect_eq(c.peer_port, 6);
	cr_expect_eq(c.http_port, 7);
	cr_expect_str_eq(c.log_level, "debug");
}

Test(config, a_flag_without_a_value_fails)
{
	char *argv[] = { "sluiced", "--node-id", NULL };
	EXPECT_ERROR(load(argv, no_env), "--node-id", "needs a value");
}

/* ---- Errors that name the key and where it came from ----------------- */

Test(config, node_id_is_required)
{
	char *argv[] = { "sluiced", NULL };
	EXPECT_ERROR(load(argv, no_env), "node_id is required");
}

Test(config, an_unknown_key_in_the_file_names_the_file_line_and_key)
{
	const char *path = write_file("k.conf", "client_port = 5\n\nbogus_key = 1\n");
	char line[1100];
	snprintf(line, sizeof(line), "%s:3:", path);
	char *argv[] = { "sluiced", "--config", (char *)path, "--node-id", "1", NULL };
	EXPECT_ERROR(load(argv, no_env), line, "bogus_key");
}

Test(config, an_unknown_sluiced_variable_is_named)
{
	char *argv[] = { "sluiced", "--node-id", "1", NULL };
	char *envp[] = { "SLUICED_FOO=1", NULL };
	EXPECT_ERROR(load(argv, envp), "SLUICED_FOO");
}

Test(config, variables_without_the_sluiced_prefix_are_ignored)
{
	char *argv[] = { "sluiced", "--node-id", "1", NULL };
	char *envp[] = { "FOO=1", "CLIENT_PORT=7", "PATH=/bin", NULL };
	int rv = load(argv, envp);
	cr_assert_eq(rv, SL_OK, "load: %s (%s)", sl_err_name(rv), err);
	cr_expect_eq(c.client_port, 9092);
}

Test(config, an_unknown_flag_is_named)
{
	char *argv[] = { "sluiced", "--node-id", "1", "--foo", "1", NULL };
	EXPECT_ERROR(load(argv, no_env), "--foo");
}

Test(config, a_bare_argument_fails)
{
	char *argv[] = { "sluiced", "--node-id", "1", "extra", NULL };
	EXPECT_ERROR(load(argv, no_env), "extra");
}

Test(config, a_non_integer_value_names_the_flag_and_key)
{
	char *argv[] = { "sluiced", "--node-id", "1", "--client-port", "abc", NULL };
	EXPECT_ERROR(load(argv, no_env), "--client-port", "client_port", "abc");
}

Test(config, a_negative_value_names_the_variable_and_key)
{
	char *argv[] = { "sluiced", "--node-id", "1", NULL };
	char *envp[] = { "SLUICED_CLIENT_PORT=-5", NULL };
	EXPECT_ERROR(load(argv, envp), "SLUICED_CLIENT_PORT", "client_port", "-5");
}

Test(config, a_value_above_the_maximum_names_the_flag_and_key)
{
	char *argv[] = { "sluiced", "--node-id", "1", "--client-port", "70000", NULL };
	EXPECT_ERROR(load(argv, no_env), "--client-port", "client_port", "70000");
}

Test(config, a_value_below_the_minimum_fails)
{
	char *argv[] = { "sluiced", "--node-id", "1", "--heartbeat-ms=9", NULL };
	EXPECT_ERROR(load(argv, no_env), "--heartbeat-ms", "heartbeat_ms");
}

Test(config, a_value_with_trailing_garbage_names_the_file_line_and_key)
{
	const char *path = write_file("g.conf", "# Ports.\nclient_port = 12x\n");
	char line[1100];
	snprintf(line, sizeof(line), "%s:2:", path);
	char *argv[] = { "sluiced", "--config", (char *)path, "--node-id", "1", NULL };
	EXPECT_ERROR(load(argv, no_env), line, "client_port", "12x");
}

Test(config, a_text_value_longer_than_its_maximum_fails)
{
	char long_host[300];
	memset(long_host, 'h', sizeof(long_host) - 1);
	long_host[sizeof(long_host) - 1] = '\0';
	cr_assert_eq(sl_config_set(&c, "listen_host", long_host, "--listen-host", err),
		     SL_EINVALID_ARGUMENT);
	cr_expect_not_null(strstr(err, "--listen-host"), "errmsg: %s", err);
	cr_expect_not_null(strstr(err, "listen_host"), "errmsg: %s", err);
	cr_expect_str_eq(c.listen_host, "127.0.0.1");
}

Test(config, a_section_in_the_file_fails_naming_the_line)
{
	const char *path = write_file("s.conf", "client_port = 5\n[broker]\nhttp_port = 7\n");
	char line[1100];
	snprintf(line, sizeof(line), "%s:2:", path);
	char *argv[] = { "sluiced", "--config", (char *)path, "--node-id", "1", NULL };
	EXPECT_ERROR(load(argv, no_env), line, "sections are not used");
	cr_assert_eq(c.http_port, 9644, "a key after the failure was applied");

	path = write_file("s2.conf", "[broker]\n");
	snprintf(line, sizeof(line), "%s:1:", path);
	char *argv2[] = { "sluiced", "--config", (char *)path, "--node-id", "1", NULL };
	EXPECT_ERROR(load(argv2, no_env), line, "sections are not used");
}

Test(config, only_the_first_failure_of_a_file_counts)
{
	const char *path = write_file("f.conf", "foo = 1\nbar = 2\n");
	char line[1100];
	snprintf(line, sizeof(line), "%s:1: unknown key 'foo'", path);
	char *argv[] = { "sluiced", "--config", (char *)path, "--node-id", "1", NULL };
	EXPECT_ERROR(load(argv, no_env), line);

	path = write_file("g.conf", "junk\nbar = 2\n");
	snprintf(line, sizeof(line), "%s:1: not a 'key = value' line", path);
	char *argv2[] = { "sluiced", "--config", (char *)path, "--node-id", "1", NULL };
	EXPECT_ERROR(load(argv2, no_env), line);

	path = write_file("h.conf", "client_port = 70000\nclient_port = 7\n");
	snprintf(line, sizeof(line), "%s:1:", path);
	char *argv3[] = { "sluiced", "--config", (char *)path, "--node-id", "1", NULL };
	EXPECT_ERROR(load(argv3, no_env), line, "client_port");
	cr_assert_eq(c.client_port, 9092, "a key after the failure was applied");
}

Test(config, a_long_value_continues_on_indented_lines)
{
	const char *path = write_file("c.conf", "node_id = 2\nseeds = 1@host-a:9093,\n"
						"  2@host-b:9093,\n\t3@host-c:9093\nrack = r1\n");
	char *argv[] = { "sluiced", "--config", (char *)path, NULL };
	int rv = load(argv, no_env);
	cr_assert_eq(rv, SL_OK, "load: %s (%s)", sl_err_name(rv), err);
	cr_assert_str_eq(c.seeds, "1@host-a:9093,2@host-b:9093,3@host-c:9093");
	cr_assert_str_eq(c.rack, "r1");
}

Test(config, a_line_longer_than_libinih_takes_fails_naming_it)
{
	char text[600];
	int n = snprintf(text, sizeof(text), "node_id = 1\nseeds = 1@");
	memset(text + n, 'h', 300);
	snprintf(text + n + 300, sizeof(text) - (size_t)n - 300, ":9093\nrack = r1\n");
	const char *path = write_file("long.conf", text);
	char line[1100];
	snprintf(line, sizeof(line), "%s:2: a line holds at most 199 characters", path);
	char *argv[] = { "sluiced", "--config", (char *)path, NULL };
	EXPECT_ERROR(load(argv, no_env), line);
}

Test(config, a_line_that_is_not_key_value_fails_naming_the_line)
{
	const char *path = write_file("l.conf", "client_port = 5\njust some words\n");
	char line[1100];
	snprintf(line, sizeof(line), "%s:2:", path);
	char *argv[] = { "sluiced", "--config", (char *)path, "--node-id", "1", NULL };
	EXPECT_ERROR(load(argv, no_env), line, "not a 'key = value' line");
}

Test(config, a_missing_config_file_fails)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/absent/sluiced.conf", tl_tmpdir());
	char *argv[] = { "sluiced", "--config", path, "--node-id", "1", NULL };
	EXPECT_ERROR(load(argv, no_env), "cannot open", path);
}

/* ---- Cross checks ----------------------------------------------------- */

Test(config, a_complete_configuration_passes_the_checks)
{
	c.node_id = 2;
	cr_expect_eq(sl_config_check(&c, err), SL_OK, "check: %s", err);
}

Test(config, an_election_timeout_under_twice_the_heartbeat_fails)
{
	c.node_id = 1;
	c.heartbeat_ms = 600;
	c.election_ms = 1199;
	EXPECT_ERROR(sl_config_check(&c, err), "election_ms", "heartbeat_ms");
	c.election_ms = 1200;
	cr_expect_eq(sl_config_check(&c, err), SL_OK, "check: %s", err);

	/* Through load, from the defaults: election_ms stays 1000. */
	sl_config_free(&c);
	sl_config_init(&c);
	char *argv[] = { "sluiced", "--node-id", "1", "--heartbeat-ms", "600", NULL };
	EXPECT_ERROR(load(argv, no_env), "election_ms", "heartbeat_ms");
}

Test(config, equal_ports_fail)
{
	char *argv[] = { "sluiced", "--node-id", "1", "--peer-port", "9092", NULL };
	EXPECT_ERROR(load(argv, no_env), "client_port", "peer_port", "must differ");

	c.peer_port = 9093;
	c.http_port = 9093;
	EXPECT_ERROR(sl_config_check(&c, err), "http_port", "must differ");
}

Test(config, an_unknown_log_level_fails)
{
	c.node_id = 1;
	free(c.log_level);
	c.log_level = strdup("verbose");
	cr_assert_not_null(c.log_level);
	EXPECT_ERROR(sl_config_check(&c, err), "log_level", "verbose");

	char *argv[] = { "sluiced", "--node-id", "1", "--log-level", "warning", NULL };
	EXPECT_ERROR(load(argv, no_env), "log_level must be error, warn, info or debug, not 'warning'");
}

Test(config, seeds_that_do_not_list_node_id_fail)
{
	char *argv[] = { "sluiced", "--node-id", "4", "--seeds", "1@a:9093,2@b:9093", NULL };
	EXPECT_ERROR(load(argv, no_env), "seeds", "node_id 4");

	char *ok[] = { "sluiced", "--node-id", "2", "--seeds", "1@a:9093,2@b:9093", NULL };
	int rv = load(ok, no_env);
	cr_expect_eq(rv, SL_OK, "load: %s (%s)", sl_err_name(rv), err);
}

Test(config, bad_seeds_fail_the_checks)
{
	char *argv[] = { "sluiced", "--node-id", "1", "--seeds", "1@a:9093,2@b", NULL };
	EXPECT_ERROR(load(argv, no_env), "'2@b'");
}

/* ---- The seed list ---------------------------------------------------- */

Test(config, a_seed_list_parses_into_ids_hosts_and_ports)
{
	struct sl_seed s[SL_MAX_SEEDS];
	size_t n = 99;
	int rv = sl_config_seeds("1@127.0.0.1:9093, 2@host-b:9193,3@10.0.0.3:9293", s,
				 SL_MAX_SEEDS, &n, err);
	cr_assert_eq(rv, SL_OK, "seeds: %s (%s)", sl_err_name(rv), err);
	cr_assert_eq(n, 3);
	cr_expect_eq(s[0].id, 1);
	cr_expect_str_eq(s[0].host, "127.0.0.1");
	cr_expect_eq(s[0].port, 9093);
	cr_expect_eq(s[1].id, 2);
	cr_expect_str_eq(s[1].host, "host-b");
	cr_expect_eq(s[1].port, 9193);
	cr_expect_eq(s[2].id, 3);
	cr_expect_str_eq(s[2].host, "10.0.0.3");
	cr_expect_eq(s[2].port, 9293);
}

Test(config, a_bad_seed_entry_fails_quoting_it)
{
	static const char *const bad[] = { "1@host", "0@h:1",	  "x@h:1", "1@h:0",
					   "1@h:65536", "1@:5", "@h:5" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sl_seed s[SL_MAX_SEEDS];
		size_t n;
		char list[64], quoted[64];
		/* The bad entry comes after a good one, so that the message must
		 * quote the entry rather than the list. */
		snprintf(list, sizeof(list), "9@ok:1, %s", bad[i]);
		snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
		err[0] = '\0';
		int rv = sl_config_seeds(list, s, SL_MAX_SEEDS, &n, err);
		cr_expect_eq(rv, SL_EINVALID_ARGUMENT, "'%s' gave %s", list, sl_err_name(rv));
		cr_expect_not_null(strstr(err, quoted), "'%s': errmsg '%s' lacks %s", list, err,
				   quoted);
	}
}

Test(config, a_seed_id_listed_twice_fails)
{
	struct sl_seed s[SL_MAX_SEEDS];
	size_t n;
	EXPECT_ERROR(sl_config_seeds("1@a:1,1@b:2", s, SL_MAX_SEEDS, &n, err), "listed twice");
}

Test(config, an_empty_seed_list_has_no_entries)
{
	struct sl_seed s[SL_MAX_SEEDS];
	size_t n = 99;
	cr_assert_eq(sl_config_seeds("", s, SL_MAX_SEEDS, &n, err), SL_OK, "seeds: %s", err);
	cr_expect_eq(n, 0);
	n = 99;
	cr_assert_eq(sl_config_seeds(" , ,", s, SL_MAX_SEEDS, &n, err), SL_OK, "seeds: %s", err);
	cr_expect_eq(n, 0);
}

Test(config, more_seeds_than_the_maximum_fail)
{
	struct sl_seed s[2];
	size_t n;
	EXPECT_ERROR(sl_config_seeds("1@a:1,2@b:2,3@c:3", s, 2, &n, err), "more than 2");
}

/* ---- Help ------------------------------------------------------------- */

Test(config, help_sets_the_action_without_requiring_node_id)
{
	char *argv[] = { "sluiced", "--help", NULL };
	cr_expect_eq(load(argv, no_env), SL_OK, "load: %s", err);
	cr_expect_eq(action, SL_CONFIG_HELP);

	char *shortv[] = { "sluiced", "-h", NULL };
	cr_expect_eq(load(shortv, no_env), SL_OK, "load: %s", err);
	cr_expect_eq(action, SL_CONFIG_HELP);
}

Test(config, help_config_sets_the_action_without_requiring_node_id)
{
	char *argv[] = { "sluiced", "--client-port", "1", "--help-config", NULL };
	cr_expect_eq(load(argv, no_env), SL_OK, "load: %s", err);
	cr_expect_eq(action, SL_CONFIG_HELP_CONFIG);
}

/* ---- The template ----------------------------------------------------- */

Test(config, the_template_matches_deploy_sluiced_conf)
{
	size_t tlen, flen;
	char *t = template_text(&tlen);
	char *f = read_whole(SL_SOURCE_ROOT "/deploy/sluiced.conf", &flen);
	size_t at = 0;
	while (at < tlen && at < flen && t[at] == f[at])
		at++;
	cr_expect(at == tlen && at == flen,
		  "deploy/sluiced.conf differs from the template at byte %zu (the file has %zu "
		  "bytes, the template %zu): regenerate it with "
		  "`build/broker/sluiced --help-config > deploy/sluiced.conf`",
		  at, flen, tlen);
	free(t);
	free(f);
}

/* The number of keys in config.def. */
static const size_t nkeys = 0
#define SL_CONF(name, type, def, min, max, restart, doc) +1
#include "config.def"
#undef SL_CONF
	;

Test(config, the_template_uncommented_loads_with_the_defaults)
{
	size_t tlen;
	char *t = template_text(&tlen);
	char path[1024];
	snprintf(path, sizeof(path), "%s/uncommented.conf", tl_tmpdir());
	FILE *out = fopen(path, "w");
	cr_assert_not_null(out);
	size_t uncommented = 0;
	for (char *line = strtok(t, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		/* "#key = value" (no space after '#') is a key; "# ..." is doc. A
		 * key with an empty default shows as "#key =", which uncommented
		 * sets it to the empty text. */
		bool key = line[0] == '#' && line[1] >= 'a' && line[1] <= 'z';
		if (key && strcmp(line, "#node_id =") == 0)
			continue; /* no default: --node-id below sets it */
		if (key) {
			cr_expect_not_null(strstr(line, " ="), "odd key line '%s'", line);
			uncommented++;
		}
		fprintf(out, "%s\n", key ? line + 1 : line);
	}
	cr_assert_eq(fclose(out), 0);
	free(t);
	cr_expect_eq(uncommented, nkeys - 1, "%zu key lines for %zu keys", uncommented, nkeys);

	char *argv[] = { "sluiced", "--config", path, "--node-id", "1", NULL };
	int rv = load(argv, no_env);
	cr_assert_eq(rv, SL_OK, "load: %s (%s)", sl_err_name(rv), err);

	/* Every value the file set is the default. */
	struct sl_config d;
	sl_config_init(&d);
	d.node_id = 1;
#define SL_CONF_EQ_UINT(name) cr_expect_eq(c.name, d.name, #name);
#define SL_CONF_EQ_STR(name) cr_expect_str_eq(c.name, d.name, #name);
#define SL_CONF(name, type, def, min, max, restart, doc) SL_CONF_EQ_##type(name)
#include "config.def"
#undef SL_CONF
	sl_config_free(&d);
}
