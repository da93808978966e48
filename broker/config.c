/* sluiced's configuration. See config.h. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "errors.h"

enum ktype { T_UINT, T_STR };

struct key {
	const char *name;
	enum ktype type;
	const char *def;
	uint64_t min, max;
	bool restart;
	const char *doc;
	size_t off;
};

static const struct key keys[] = {
#define SL_CONF(name, type, def, min, max, restart, doc) \
	{ #name, T_##type, def, min, max, restart, doc, offsetof(struct sl_config, name) },
#include "config.def"
#undef SL_CONF
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

__attribute__((format(printf, 2, 3))) static int errf(char *errmsg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, SL_ERRMSG_SIZE, fmt, ap);
	va_end(ap);
	return SL_EINVALID_ARGUMENT;
}

/* The key called name, with '-' read as '_' and any case. */
static const struct key *find_key(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const char *k = keys[i].name;
		if (strlen(k) != len)
			continue;
		size_t j = 0;
		for (; j < len; j++) {
			char c = (char)tolower((unsigned char)name[j]);
			if ((c == '-' ? '_' : c) != k[j])
				break;
		}
		if (j == len)
			return &keys[i];
	}
	return NULL;
}

static uint64_t *uint_at(struct sl_config *c, const struct key *k)
{
	return (uint64_t *)((char *)c + k->off);
}

static char **str_at(struct sl_config *c, const struct key *k)
{
	return (char **)((char *)c + k->off);
}

static int set_key(struct sl_config *c, const struct key *k, const char *value, const char *origin,
		   char *errmsg)
{
	if (k->type == T_UINT) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(value, &end, 10);
		if (!isdigit((unsigned char)value[0]) || *end != '\0' || errno != 0 || v < k->min ||
		    v > k->max)
			return errf(errmsg, "%s: %s must be an integer in %llu..%llu, not '%.64s'", origin,
				    k->name, (unsigned long long)k->min, (unsigned long long)k->max, value);
		*uint_at(c, k) = v;
		return SL_OK;
	}
	size_t len = strlen(value);
	if (len < k->min || len > k->max)
		return errf(errmsg, "%s: %s must be %llu to %llu characters long, not %zu", origin,
			    k->name, (unsigned long long)k->min, (unsigned long long)k->max, len);
	for (size_t i = 0; i < len; i++)
		if (iscntrl((unsigned char)value[i]))
			return errf(errmsg, "%s: %s holds a control character", origin, k->name);
	char *s = strdup(value);
	if (s == NULL)
		return errf(errmsg, "%s: out of memory", origin);
	free(*str_at(c, k));
	*str_at(c, k) = s;
	return SL_OK;
}

void sl_config_init(struct sl_config *c)
{
	char errmsg[SL_ERRMSG_SIZE];
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].type == T_UINT)
			*uint_at(c, &keys[i]) = strtoull(keys[i].def, NULL, 10);
		else if (set_key(c, &keys[i], keys[i].def, "default", errmsg) != SL_OK)
			abort(); /* a default that breaks its own row, or no memory */
	}
}

void sl_config_free(struct sl_config *c)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].type == T_STR) {
			free(*str_at(c, &keys[i]));
			*str_at(c, &keys[i]) = NULL;
		}
}

int sl_config_set(struct sl_config *c, const char *name, const char *value, const char *origin,
		  char *errmsg)
{
	const struct key *k = find_key(name, strlen(name));
	if (k == NULL)
		return errf(errmsg, "%s: unknown key '%.64s' (sluiced --help-config lists them)",
			    origin, name);
	return set_key(c, k, value, origin, errmsg);
}

/* ---- Sources -------------------------------------------------------- */

struct file_ctx {
	struct sl_config *c;
	FILE *f;
	int line;         /* of the line read last */
	bool indented;    /* that line starts with a space or a tab */
	char last_key[64];
	int fail_line;    /* of the first failure (0: none) */
	char why[SL_ERRMSG_SIZE];
};

static void fail_at(struct file_ctx *f, const char *why)
{
	if (f->fail_line != 0)
		return;
	f->fail_line = f->line;
	snprintf(f->why, sizeof(f->why), "%s", why);
}

/* libinih's reader: one line per call, so the handler knows its line.
 * libinih's lines hold at most INI_MAX_LINE - 1 characters (199 in
 * Debian's build); a longer one fails here, rather than be split into
 * garbage. */
static char *read_line(char *buf, int size, void *stream)
{
	struct file_ctx *f = stream;
	if (fgets(buf, size, f->f) == NULL)
		return NULL;
	f->line++;
	size_t len = strlen(buf);
	if (len == (size_t)size - 1 && buf[len - 1] != '\n' && !feof(f->f)) {
		char rest[256];
		while (fgets(rest, sizeof(rest), f->f) != NULL && rest[strlen(rest) - 1] != '\n')
			;
		fail_at(f, "a line holds at most 199 characters: continue a long value on lines "
			   "that start with a space");
		buf[0] = '\0';
	}
	f->indented = buf[0] == ' ' || buf[0] == '\t';
	const char *p = buf + strspn(buf, " \t");
	if (*p == '[')
		fail_at(f, "sections are not used");
	return buf;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
	struct file_ctx *f = user;
	(void)section; /* a section header already failed the file */
	if (f->fail_line != 0)
		return 1; /* only the first failure counts; nothing after it applies */
	char why[SL_ERRMSG_SIZE];
	const struct key *k = find_key(name, strlen(name));
	int rv;
	if (k != NULL && k->type == T_STR && f->indented && strcmp(name, f->last_key) == 0) {
		/* A continuation line: its text follows the value so far. */
		char *joined;
		if (asprintf(&joined, "%s%s", *str_at(f->c, k), value) < 0)
			joined = NULL;
		rv = joined == NULL ? errf(why, ": out of memory") : set_key(f->c, k, joined, "", why);
		free(joined);
	} else {
		rv = sl_config_set(f->c, name, value, "", why);
	}
	if (rv != SL_OK) {
		/* The messages start with their empty origin ": ". */
		fail_at(f, why + (strncmp(why, ": ", 2) == 0 ? 2 : 0));
		return 0;
	}
	snprintf(f->last_key, sizeof(f->last_key), "%s", name);
	return 1;
}

/* Reads path into c; on any failure c may hold the keys before it, and
 * the caller fails the start. */
static int load_file(struct sl_config *c, const char *path, char *errmsg)
{
	struct file_ctx f = { .c = c };
	f.f = fopen(path, "re");
	if (f.f == NULL)
		return errf(errmsg, "--config %s: cannot open it: %s", path, strerror(errno));
	int line = ini_parse_stream(read_line, &f, on_ini, &f);
	fclose(f.f);
	if (line == -2)
		return errf(errmsg, "--config %s: out of memory", path);
	if (f.fail_line != 0 && (line == 0 || f.fail_line <= line))
		return errf(errmsg, "%s:%d: %s", path, f.fail_line, f.why);
	if (line != 0)
		return errf(errmsg, "%s:%d: not a 'key = value' line", path, line);
	return SL_OK;
}

static int load_env(struct sl_config *c, char **envp, char *errmsg)
{
	static const char prefix[] = "SLUICED_";
	for (char **e = envp; e != NULL && *e != NULL; e++) {
		if (strncmp(*e, prefix, sizeof(prefix) - 1) != 0)
			continue;
		const char *eq = strchr(*e, '=');
		if (eq == NULL)
			continue;
		char origin[128];
		snprintf(origin, sizeof(origin), "%.*s", (int)(eq - *e), *e);
		const char *name = *e + sizeof(prefix) - 1;
		const struct key *k = find_key(name, (size_t)(eq - name));
		if (k == NULL)
			return errf(errmsg, "%s: unknown variable (sluiced --help-config lists the keys; "
					    "SLUICED_ + the key in capitals)", origin);
		int rv = set_key(c, k, eq + 1, origin, errmsg);
		if (rv != SL_OK)
			return rv;
	}
	return SL_OK;
}

/* Splits "--name=value" or "--name value"; *i moves past what it used. */
static int flag_value(int argc, char **argv, int *i, const char **name, size_t *nlen,
		      const char **value, char *errmsg)
{
	const char *a = argv[*i];
	if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
		return errf(errmsg, "unexpected argument '%.64s' (flags are --name value)", a);
	*name = a + 2;
	const char *eq = strchr(*name, '=');
	if (eq != NULL) {
		*nlen = (size_t)(eq - *name);
		*value = eq + 1;
		return SL_OK;
	}
	*nlen = strlen(*name);
	*value = NULL;
	if (*i + 1 < argc) {
		*value = argv[*i + 1];
		(*i)++;
	}
	return SL_OK;
}

static bool is_flag(const char *name, size_t len, const char *what)
{
	return strlen(what) == len && strncmp(name, what, len) == 0;
}

int sl_config_load(struct sl_config *c, int argc, char **argv, char **envp,
		   enum sl_config_action *action, char *errmsg)
{
	*action = SL_CONFIG_RUN;
	const char *file = NULL;
	/* First pass: what to do, and the file (read before the rest). */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			*action = SL_CONFIG_HELP;
			return SL_OK;
		}
		if (strcmp(argv[i], "--help-config") == 0) {
			*action = SL_CONFIG_HELP_CONFIG;
			return SL_OK;
		}
	}
	for (int i = 1; i < argc; i++) {
		const char *name, *value;
		size_t nlen;
		int rv = flag_value(argc, argv, &i, &name, &nlen, &value, errmsg);
		if (rv != SL_OK)
			return rv;
		if (value == NULL)
			return errf(errmsg, "--%.*s needs a value", (int)nlen, name);
		if (is_flag(name, nlen, "config"))
			file = value;
	}
	int rv = file != NULL ? load_file(c, file, errmsg) : SL_OK;
	if (rv == SL_OK)
		rv = load_env(c, envp, errmsg);
	for (int i = 1; i < argc && rv == SL_OK; i++) {
		const char *name, *value;
		size_t nlen;
		flag_value(argc, argv, &i, &name, &nlen, &value, errmsg);
		if (is_flag(name, nlen, "config"))
			continue;
		const struct key *k = find_key(name, nlen);
		char origin[80];
		snprintf(origin, sizeof(origin), "--%.*s", (int)(nlen < 64 ? nlen : 64), name);
		if (k == NULL)
			return errf(errmsg, "%s: unknown flag (sluiced --help-config lists the keys)",
				    origin);
		rv = set_key(c, k, value, origin, errmsg);
	}
	if (rv != SL_OK)
		return rv;
	return sl_config_check(c, errmsg);
}

/* ---- Checks --------------------------------------------------------- */

int sl_config_seeds(const char *list, struct sl_seed *out, size_t max, size_t *n, char *errmsg)
{
	*n = 0;
	const char *p = list;
	while (*p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		const char *end = p + strcspn(p, ",");
		const char *last = end;
		while (last > p && last[-1] == ' ')
			last--;
		int len = (int)(last - p);
		const char *at = memchr(p, '@', (size_t)len);
		const char *colon = NULL;
		for (const char *q = last; q > p; q--)
			if (q[-1] == ':') {
				colon = q - 1;
				break;
			}
		char idbuf[16], portbuf[8];
		unsigned long long id = 0, port = 0;
		char *e1 = NULL, *e2 = NULL;
		bool ok = at != NULL && colon != NULL && colon > at + 1 && at - p < 16 &&
			  last - colon - 1 < 8 && at > p && colon + 1 < last;
		if (ok) {
			snprintf(idbuf, sizeof(idbuf), "%.*s", (int)(at - p), p);
			snprintf(portbuf, sizeof(portbuf), "%.*s", (int)(last - colon - 1), colon + 1);
			id = strtoull(idbuf, &e1, 10);
			port = strtoull(portbuf, &e2, 10);
			ok = isdigit((unsigned char)idbuf[0]) && isdigit((unsigned char)portbuf[0]) &&
			     *e1 == '\0' && *e2 == '\0' && id >= 1 && id <= 2147483647 && port >= 1 &&
			     port <= 65535 && colon - at - 1 < 256;
		}
		if (!ok)
			return errf(errmsg, "seeds: '%.*s' is not ID@HOST:PORT (id >= 1, port 1..65535)",
				    len > 80 ? 80 : len, p);
		if (*n == max)
			return errf(errmsg, "seeds: more than %zu nodes", max);
		for (size_t i = 0; i < *n; i++)
			if (out[i].id == id)
				return errf(errmsg, "seeds: node %llu is listed twice", id);
		out[*n].id = id;
		out[*n].port = (unsigned)port;
		snprintf(out[*n].host, sizeof(out[*n].host), "%.*s", (int)(colon - at - 1), at + 1);
		(*n)++;
		p = end;
	}
	return SL_OK;
}

int sl_config_check(const struct sl_config *c, char *errmsg)
{
	if (c->node_id == 0)
		return errf(errmsg, "node_id is required (an integer >= 1): set it in the file, "
				    "with SLUICED_NODE_ID or with --node-id");
	if (c->election_ms < 2 * c->heartbeat_ms)
		return errf(errmsg, "election_ms (%llu) must be at least twice heartbeat_ms (%llu)",
			    (unsigned long long)c->election_ms, (unsigned long long)c->heartbeat_ms);
	if (c->client_port == c->peer_port || c->client_port == c->http_port ||
	    c->peer_port == c->http_port)
		return errf(errmsg, "client_port, peer_port and http_port must differ (%llu, %llu, %llu)",
			    (unsigned long long)c->client_port, (unsigned long long)c->peer_port,
			    (unsigned long long)c->http_port);
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	bool known = false;
	for (size_t i = 0; i < 4; i++)
		known = known || strcmp(c->log_level, levels[i]) == 0;
	if (!known)
		return errf(errmsg, "log_level must be error, warn, info or debug, not '%s'",
			    c->log_level);
	static struct sl_seed seeds[SL_MAX_SEEDS];
	size_t n;
	int rv = sl_config_seeds(c->seeds, seeds, SL_MAX_SEEDS, &n, errmsg);
	if (rv != SL_OK)
		return rv;
	bool self = n == 0;
	for (size_t i = 0; i < n; i++)
		self = self || seeds[i].id == c->node_id;
	if (!self)
		return errf(errmsg, "seeds: node_id %llu is not in the list",
			    (unsigned long long)c->node_id);
	return SL_OK;
}

const char *sl_config_advertised(const struct sl_config *c)
{
	return c->advertised_host[0] != '\0' ? c->advertised_host : c->listen_host;
}

/* ---- The template --------------------------------------------------- */

/* Prints text as comment lines of at most 76 columns. */
static void print_wrapped(FILE *out, const char *text)
{
	const char *p = text;
	while (*p != '\0') {
		size_t len = strlen(p), cut = len;
		if (len > 74) {
			cut = 74;
			while (cut > 0 && p[cut] != ' ')
				cut--;
			if (cut == 0)
				cut = 74;
		}
		fprintf(out, "# %.*s\n", (int)cut, p);
		p += cut;
		while (*p == ' ')
			p++;
	}
}

void sl_config_print_template(FILE *out)
{
	fprintf(out, "# sluiced's configuration (this file is `sluiced --help-config`).\n"
		     "#\n"
		     "# Every key shows its default, commented out. Precedence: this file\n"
		     "# (sluiced --config FILE) < SLUICED_<KEY> environment variables < flags\n"
		     "# (--key value). Every key needs a restart to change. A line holds at\n"
		     "# most 199 characters: a longer value continues on lines that start\n"
		     "# with a space.\n");
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		fprintf(out, "\n");
		print_wrapped(out, k->doc);
		if (k->type == T_UINT)
			fprintf(out, "# Integer, %llu..%llu.\n", (unsigned long long)k->min,
				(unsigned long long)k->max);
		else
			fprintf(out, "# Text.\n");
		if ((k->type == T_UINT && strtoull(k->def, NULL, 10) < k->min) || k->def[0] == '\0')
			fprintf(out, "#%s =\n", k->name);
		else
			fprintf(out, "#%s = %s\n", k->name, k->def);
	}
}
