/* broker/: sluiced's configuration, from the table in config.def.
 *
 * Precedence: the table's defaults < the file given with --config (INI
 * syntax without sections, parsed by libinih) < SLUICED_<NAME> environment
 * variables < flags (--name VALUE or --name=VALUE; dashes and underscores
 * are the same in names). An unknown key, in any of the three, and a value
 * of the wrong type or outside its range fail with a message that names
 * the key and where it came from.
 *
 * Threads: start-up only (the main thread, before the loop runs). */
#ifndef SL_BROKER_CONFIG_H
#define SL_BROKER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SL_CONF_FIELD_UINT(name) uint64_t name;
#define SL_CONF_FIELD_STR(name) char *name;

struct sl_config {
#define SL_CONF(name, type, def, min, max, restart, doc) SL_CONF_FIELD_##type(name)
#include "config.def"
#undef SL_CONF
};

/* One entry of `seeds`. */
struct sl_seed {
	uint64_t id;
	char host[256];
	unsigned port;
};

#define SL_MAX_SEEDS 256

/* What the command line asked for besides running. */
enum sl_config_action { SL_CONFIG_RUN, SL_CONFIG_HELP, SL_CONFIG_HELP_CONFIG };

/* Every key at its default. */
void sl_config_init(struct sl_config *c);
void sl_config_free(struct sl_config *c);

/* Sets one key from text; origin names where it came from in errors
 * ("--client-port", "SLUICED_CLIENT_PORT", "sluiced.conf:7"). Returns
 * SL_OK or SL_EINVALID_ARGUMENT with the reason in errmsg
 * (SL_ERRMSG_SIZE bytes). */
int sl_config_set(struct sl_config *c, const char *name, const char *value, const char *origin,
		  char *errmsg);

/* Builds c from argv and envp (NULL-terminated "NAME=value" strings) as
 * described above, then checks the keys against each other
 * (sl_config_check). --help and --help-config set *action and skip the
 * checks. Returns SL_OK or SL_EINVALID_ARGUMENT with errmsg. */
int sl_config_load(struct sl_config *c, int argc, char **argv, char **envp,
		   enum sl_config_action *action, char *errmsg);

/* node_id set, election_ms >= 2 x heartbeat_ms, three distinct ports,
 * seeds well formed with distinct ids and listing node_id when not empty,
 * log_level known. */
int sl_config_check(const struct sl_config *c, char *errmsg);

/* Parses a seed list; *n = 0 for an empty one. Returns SL_OK or
 * SL_EINVALID_ARGUMENT with errmsg naming the bad entry. */
int sl_config_seeds(const char *list, struct sl_seed *out, size_t max, size_t *n, char *errmsg);

/* The commented configuration file: every key, its doc, type, range and
 * default, commented out (deploy/sluiced.conf is this output). */
void sl_config_print_template(FILE *out);

/* The host others reach this node at: advertised_host, else listen_host. */
const char *sl_config_advertised(const struct sl_config *c);

#endif
