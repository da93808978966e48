/* The controller's state machine. See meta.h. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"
#include "meta.pb-c.h"

struct sl_meta_gslot {
	uint32_t group;
	bool used;
	struct sl_meta_topic *topic;
	uint32_t partition;
};

__attribute__((format(printf, 3, 4))) static int refuse(struct sl_meta_result *res, int err,
							const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->errmsg, sizeof(res->errmsg), fmt, ap);
	va_end(ap);
	res->err = err;
	return SL_OK;
}

void sl_meta_init(struct sl_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->next_topic_id = 1;
	m->next_group = 1; /* 0 is the controller's */
	m->next_producer_id = 1;
}

static void topic_free(struct sl_meta_topic *t)
{
	if (t != NULL)
		free(t->parts);
	free(t);
}

void sl_meta_free(struct sl_meta *m)
{
	for (size_t i = 0; i < m->ntopics; i++)
		topic_free(m->topics[i]);
	free(m->topics);
	free(m->nodes);
	free(m->gmap);
	memset(m, 0, sizeof(*m));
}

/* ---- The group map -------------------------------------------------- */

static size_t gslot_of(uint32_t group, size_t cap)
{
	return (size_t)((group * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static struct sl_meta_gslot *gfind(const struct sl_meta *m, uint32_t group)
{
	if (m->gcap == 0)
		return NULL;
	for (size_t i = gslot_of(group, m->gcap);; i = (i + 1) & (m->gcap - 1)) {
		struct sl_meta_gslot *s = &m->gmap[i];
		if (!s->used)
			return NULL;
		if (s->group == group)
			return s;
	}
}

/* Room for n more groups; false when out of memory. */
static bool greserve(struct sl_meta *m, size_t n)
{
	if ((m->gn + n) * 2 <= m->gcap)
		return true;
	size_t ncap = m->gcap ? m->gcap : 64;
	while ((m->gn + n) * 2 > ncap)
		ncap *= 2;
	struct sl_meta_gslot *t = calloc(ncap, sizeof(*t));
	if (t == NULL)
		return false;
	for (size_t i = 0; i < m->gcap; i++) {
		if (!m->gmap[i].used)
			continue;
		size_t j = gslot_of(m->gmap[i].group, ncap);
		while (t[j].used)
			j = (j + 1) & (ncap - 1);
		t[j] = m->gmap[i];
	}
	free(m->gmap);
	m->gmap = t;
	m->gcap = ncap;
	return true;
}

static void gput(struct sl_meta *m, uint32_t group, struct sl_meta_topic *t, uint32_t p)
{
	size_t i = gslot_of(group, m->gcap);
	while (m->gmap[i].used)
		i = (i + 1) & (m->gcap - 1);
	m->gmap[i] = (struct sl_meta_gslot){ .group = group, .used = true, .topic = t, .partition = p };
	m->gn++;
}

/* Removes group (backward-shift deletion keeps probing sound). */
static void gdel(struct sl_meta *m, uint32_t group)
{
	struct sl_meta_gslot *s = gfind(m, group);
	if (s == NULL)
		return;
	size_t i = (size_t)(s - m->gmap);
	m->gmap[i].used = false;
	m->gn--;
	for (size_t j = (i + 1) & (m->gcap - 1); m->gmap[j].used; j = (j + 1) & (m->gcap - 1)) {
		size_t home = gslot_of(m->gmap[j].group, m->gcap);
		/* Move j back to i when its home is not in (i, j]. */
		bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			m->gmap[i] = m->gmap[j];
			m->gmap[j].used = false;
			i = j;
		}
	}
}

/* ---- Lookups -------------------------------------------------------- */

/* Index of the first topic whose name is >= name. */
static size_t topic_pos(const struct sl_meta *m, const char *name)
{
	size_t lo = 0, hi = m->ntopics;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(m->topics[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct sl_meta_topic *sl_meta_topic(const struct sl_meta *m, const char *name)
{
	size_t i = topic_pos(m, name);
	return i < m->ntopics && strcmp(m->topics[i]->name, name) == 0 ? m->topics[i] : NULL;
}

static size_t node_pos(const struct sl_meta *m, uint64_t id)
{
	size_t lo = 0, hi = m->nnodes;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (m->nodes[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct sl_meta_node *sl_meta_node(const struct sl_meta *m, uint64_t id)
{
	size_t i = node_pos(m, id);
	return i < m->nnodes && m->nodes[i].id == id ? &m->nodes[i] : NULL;
}

bool sl_meta_group(const struct sl_meta *m, uint32_t group, const struct sl_meta_topic **topic,
		   uint32_t *partition)
{
	struct sl_meta_gslot *s = gfind(m, group);
	if (s == NULL)
		return false;
	*topic = s->topic;
	*partition = s->partition;
	return true;
}

int sl_meta_check_topic_name(const char *name, char *errmsg)
{
	size_t len = strlen(name);
	const char *why = NULL;
	if (len == 0)
		why = "is empty";
	else if (len > SL_META_TOPIC_NAME_MAX)
		why = "is longer than 249 characters";
	else if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		why = "may not be '.' or '..'";
	for (size_t i = 0; why == NULL && i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			why = "may hold only letters, digits, '.', '_' and '-'";
	}
	if (why == NULL)
		return SL_OK;
	snprintf(errmsg, SL_ERRMSG_SIZE, "topic name '%.*s%s' %s", len > 64 ? 64 : (int)len, name,
		 len > 64 ? "..." : "", why);
	return SL_EINVALID_TOPIC;
}

/* ---- Commands ------------------------------------------------------- */

static int pack(const Sluice__Meta__Command *cmd, uint8_t **buf, size_t *len)
{
	*len = sluice__meta__command__get_packed_size(cmd);
	*buf = malloc(*len ? *len : 1);
	if (*buf == NULL)
		return SL_ENOMEM;
	sluice__meta__command__pack(cmd, *buf);
	return SL_OK;
}

int sl_meta_cmd_init_cluster(const char *cluster_id, uint8_t **buf, size_t *len)
{
	if (strlen(cluster_id) >= sizeof(((struct sl_meta *)0)->cluster_id))
		return SL_EINVALID_ARGUMENT;
	Sluice__Meta__InitCluster ic = SLUICE__META__INIT_CLUSTER__INIT;
	ic.cluster_id = (char *)cluster_id;
	Sluice__Meta__Command c = SLUICE__META__COMMAND__INIT;
	c.cmd_case = SLUICE__META__COMMAND__CMD_INIT_CLUSTER;
	c.init_cluster = &ic;
	return pack(&c, buf, len);
}

static void node_to_pb(const struct sl_meta_node *n, Sluice__Meta__Node *pb)
{
	sluice__meta__node__init(pb);
	pb->id = n->id;
	pb->uuid = (char *)n->uuid;
	pb->host = (char *)n->host;
	pb->client_port = n->client_port;
	pb->peer_port = n->peer_port;
	pb->rack = (char *)n->rack;
	pb->alive = n->alive;
	pb->replaced_at = n->replaced_at;
}

int sl_meta_cmd_register_node(const struct sl_meta_node *node, uint8_t **buf, size_t *len)
{
	Sluice__Meta__Node n;
	node_to_pb(node, &n);
	Sluice__Meta__RegisterNode rn = SLUICE__META__REGISTER_NODE__INIT;
	rn.node = &n;
	Sluice__Meta__Command c = SLUICE__META__COMMAND__INIT;
	c.cmd_case = SLUICE__META__COMMAND__CMD_REGISTER_NODE;
	c.register_node = &rn;
	return pack(&c, buf, len);
}

int sl_meta_cmd_set_alive(uint64_t id, bool alive, uint8_t **buf, size_t *len)
{
	Sluice__Meta__SetAlive sa = SLUICE__META__SET_ALIVE__INIT;
	sa.id = id;
	sa.alive = alive;
	Sluice__Meta__Command c = SLUICE__META__COMMAND__INIT;
	c.cmd_case = SLUICE__META__COMMAND__CMD_SET_ALIVE;
	c.set_alive = &sa;
	return pack(&c, buf, len);
}

static void config_to_pb(const struct sl_meta_topic_config *cfg, Sluice__Meta__TopicConfig *pb)
{
	sluice__meta__topic_config__init(pb);
	pb->retention_bytes = cfg->retention_bytes;
	pb->retention_ms = cfg->retention_ms;
	pb->segment_bytes = cfg->segment_bytes;
	pb->cleanup_policy = cfg->cleanup_policy;
	pb->max_message_bytes = cfg->max_message_bytes;
}

int sl_meta_cmd_create_topic(const char *name, uint32_t partitions, unsigned rf,
			     const struct sl_meta_topic_config *config, uint8_t **buf, size_t *len)
{
	Sluice__Meta__TopicConfig tc;
	struct sl_meta_topic_config none = { 0 };
	config_to_pb(config != NULL ? config : &none, &tc);
	Sluice__Meta__CreateTopic ct = SLUICE__META__CREATE_TOPIC__INIT;
	ct.name = (char *)name;
	ct.partitions = partitions;
	ct.replication_factor = rf;
	ct.config = &tc;
	Sluice__Meta__Command c = SLUICE__META__COMMAND__INIT;
	c.cmd_case = SLUICE__META__COMMAND__CMD_CREATE_TOPIC;
	c.create_topic = &ct;
	return pack(&c, buf, len);
}

int sl_meta_cmd_delete_topic(const char *name, uint8_t **buf, size_t *len)
{
	Sluice__Meta__DeleteTopic dt = SLUICE__META__DELETE_TOPIC__INIT;
	dt.name = (char *)name;
	Sluice__Meta__Command c = SLUICE__META__COMMAND__INIT;
	c.cmd_case = SLUICE__META__COMMAND__CMD_DELETE_TOPIC;
	c.delete_topic = &dt;
	return pack(&c, buf, len);
}

int sl_meta_cmd_report_leaders(const struct sl_meta_leader_report *reports, size_t n,
			       uint8_t **buf, size_t *len)
{
	Sluice__Meta__LeaderReport *lr = calloc(n ? n : 1, sizeof(*lr));
	Sluice__Meta__LeaderReport **lp = calloc(n ? n : 1, sizeof(*lp));
	uint64_t *isr = calloc(n ? n * SL_META_MAX_RF : 1, sizeof(*isr));
	int rv = SL_ENOMEM;
	if (lr != NULL && lp != NULL && isr != NULL) {
		for (size_t i = 0; i < n; i++) {
			sluice__meta__leader_report__init(&lr[i]);
			lr[i].group = reports[i].group;
			lr[i].leader = reports[i].leader;
			lr[i].term = reports[i].term;
			lr[i].n_isr = reports[i].nisr > SL_META_MAX_RF ? SL_META_MAX_RF : reports[i].nisr;
			lr[i].isr = isr + i * SL_META_MAX_RF;
			memcpy(lr[i].isr, reports[i].isr, lr[i].n_isr * sizeof(*isr));
			lp[i] = &lr[i];
		}
		Sluice__Meta__ReportLeaders rl = SLUICE__META__REPORT_LEADERS__INIT;
		rl.n_reports = n;
		rl.reports = lp;
		Sluice__Meta__Command c = SLUICE__META__COMMAND__INIT;
		c.cmd_case = SLUICE__META__COMMAND__CMD_REPORT_LEADERS;
		c.report_leaders = &rl;
		rv = pack(&c, buf, len);
	}
	free(lr);
	free(lp);
	free(isr);
	return rv;
}

int sl_meta_cmd_alloc_producer_ids(uint64_t count, uint8_t **buf, size_t *len)
{
	Sluice__Meta__AllocProducerIds ap = SLUICE__META__ALLOC_PRODUCER_IDS__INIT;
	ap.count = count;
	Sluice__Meta__Command c = SLUICE__META__COMMAND__INIT;
	c.cmd_case = SLUICE__META__COMMAND__CMD_ALLOC_PRODUCER_IDS;
	c.alloc_producer_ids = &ap;
	return pack(&c, buf, len);
}

int sl_meta_cmd_move_controller(uint32_t from_group, uint8_t **buf, size_t *len)
{
	Sluice__Meta__MoveController mc = SLUICE__META__MOVE_CONTROLLER__INIT;
	mc.from_group = from_group;
	Sluice__Meta__Command c = SLUICE__META__COMMAND__INIT;
	c.cmd_case = SLUICE__META__COMMAND__CMD_MOVE_CONTROLLER;
	c.move_controller = &mc;
	return pack(&c, buf, len);
}

int sl_meta_cmd_seed_controller(const uint8_t *snapshot, size_t snap_len, uint8_t **buf,
				size_t *len)
{
	Sluice__Meta__SeedController sc = SLUICE__META__SEED_CONTROLLER__INIT;
	sc.snapshot.data = (uint8_t *)snapshot;
	sc.snapshot.len = snap_len;
	Sluice__Meta__Command c = SLUICE__META__COMMAND__INIT;
	c.cmd_case = SLUICE__META__COMMAND__CMD_SEED_CONTROLLER;
	c.seed_controller = &sc;
	return pack(&c, buf, len);
}

bool sl_meta_cmd_registers(const uint8_t *cmd, size_t len, uint64_t id)
{
	Sluice__Meta__Command *c = sluice__meta__command__unpack(NULL, len, cmd);
	bool yes = c != NULL && c->cmd_case == SLUICE__META__COMMAND__CMD_REGISTER_NODE &&
		   c->register_node->node != NULL && c->register_node->node->id == id;
	if (c != NULL)
		sluice__meta__command__free_unpacked(c, NULL);
	return yes;
}

bool sl_meta_replaced_after(const struct sl_meta *m, uint64_t id, uint64_t since)
{
	const struct sl_meta_node *n = sl_meta_node(m, id);
	return n != NULL && n->replaced_at > since;
}

bool sl_meta_controller_stale(const struct sl_meta *m, const uint64_t *voters, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (sl_meta_replaced_after(m, voters[i], m->ctl_since))
			return true;
	return false;
}

/* ---- Apply ---------------------------------------------------------- */

static int apply_init(struct sl_meta *m, const Sluice__Meta__InitCluster *ic,
		      struct sl_meta_result *res)
{
	const char *id = ic->cluster_id;
	if (id[0] == '\0' || strlen(id) >= sizeof(m->cluster_id))
		return refuse(res, SL_EINVALID_ARGUMENT, "a cluster id has 1 to 64 characters");
	if (m->cluster_id[0] != '\0')
		return strcmp(m->cluster_id, id) == 0
			       ? SL_OK
			       : refuse(res, SL_EEXISTS, "the cluster already has id %s", m->cluster_id);
	snprintf(m->cluster_id, sizeof(m->cluster_id), "%s", id);
	return SL_OK;
}

/* Checks a node's text fields; NULL when they fit. */
static const char *node_fields_bad(const Sluice__Meta__Node *n)
{
	if (n->id == 0)
		return "node id 0";
	if (strlen(n->uuid) != 36)
		return "a node UUID has 36 characters";
	if (n->host[0] == '\0' || strlen(n->host) >= sizeof(((struct sl_meta_node *)0)->host))
		return "a node host has 1 to 255 characters";
	if (strlen(n->rack) > SL_META_RACK_MAX)
		return "a rack name has at most 63 characters";
	if (n->client_port == 0 || n->client_port > 65535 || n->peer_port == 0 ||
	    n->peer_port > 65535)
		return "a port is 1..65535";
	return NULL;
}

static void node_from_pb(const Sluice__Meta__Node *pb, struct sl_meta_node *n)
{
	memset(n, 0, sizeof(*n));
	n->id = pb->id;
	snprintf(n->uuid, sizeof(n->uuid), "%s", pb->uuid);
	snprintf(n->host, sizeof(n->host), "%s", pb->host);
	snprintf(n->rack, sizeof(n->rack), "%s", pb->rack);
	n->client_port = pb->client_port;
	n->peer_port = pb->peer_port;
	n->alive = pb->alive;
	n->replaced_at = pb->replaced_at;
}

static int apply_register(struct sl_meta *m, const Sluice__Meta__RegisterNode *rn,
			  struct sl_meta_result *res)
{
	if (rn->node == NULL)
		return refuse(res, SL_EINVALID_ARGUMENT, "a registration without a node");
	const char *bad = node_fields_bad(rn->node);
	if (bad != NULL)
		return refuse(res, SL_EINVALID_ARGUMENT, "node %llu: %s",
			      (unsigned long long)rn->node->id, bad);
	size_t i = node_pos(m, rn->node->id);
	bool known = i < m->nnodes && m->nodes[i].id == rn->node->id;
	if (!known) {
		if (m->nnodes == m->cap_nodes) {
			size_t ncap = m->cap_nodes ? m->cap_nodes * 2 : 8;
			struct sl_meta_node *p = realloc(m->nodes, ncap * sizeof(*p));
			if (p == NULL)
				return SL_ENOMEM;
			m->nodes = p;
			m->cap_nodes = ncap;
		}
		memmove(&m->nodes[i + 1], &m->nodes[i], (m->nnodes - i) * sizeof(*m->nodes));
		m->nnodes++;
	}
	/* A node back with another UUID lost its disk: the new one counts,
	 * but not as a replica of what the old one held (replaced_at). */
	uint64_t replaced_at = known ? m->nodes[i].replaced_at : 0;
	if (known && strcmp(m->nodes[i].uuid, rn->node->uuid) != 0)
		replaced_at = m->seq + 1;
	node_from_pb(rn->node, &m->nodes[i]);
	m->nodes[i].alive = true;
	m->nodes[i].replaced_at = replaced_at;
	return SL_OK;
}

static int apply_set_alive(struct sl_meta *m, const Sluice__Meta__SetAlive *sa,
			   struct sl_meta_result *res)
{
	size_t i = node_pos(m, sa->id);
	if (i == m->nnodes || m->nodes[i].id != sa->id)
		return refuse(res, SL_ENOT_FOUND, "node %llu is not registered",
			      (unsigned long long)sa->id);
	m->nodes[i].alive = sa->alive;
	return SL_OK;
}

static const char *config_bad(const Sluice__Meta__TopicConfig *c)
{
	if (c == NULL)
		return NULL;
	if (c->segment_bytes != 0 && (c->segment_bytes < 4096 || c->segment_bytes > (1u << 30)))
		return "segment.bytes must be 4096..1073741824";
	if (c->cleanup_policy > SL_CLEANUP_POLICY_COMPACT)
		return "cleanup.policy must be delete or compact";
	if (c->max_message_bytes > (1u << 30))
		return "max.message.bytes must be at most 1073741824";
	return NULL;
}

/* Replicas of every partition per node, and preferred leaders per node,
 * over the nodes in m->nodes' order. */
static void count_load(const struct sl_meta *m, unsigned *replicas, unsigned *leaders)
{
	memset(replicas, 0, m->nnodes * sizeof(*replicas));
	memset(leaders, 0, m->nnodes * sizeof(*leaders));
	for (size_t t = 0; t < m->ntopics; t++) {
		const struct sl_meta_topic *tp = m->topics[t];
		for (uint32_t p = 0; p < tp->npartitions; p++) {
			const struct sl_meta_partition *pp = &tp->parts[p];
			for (unsigned r = 0; r < pp->nreplicas; r++) {
				size_t i = node_pos(m, pp->replicas[r]);
				if (i < m->nnodes && m->nodes[i].id == pp->replicas[r]) {
					replicas[i]++;
					leaders[i] += r == 0;
				}
			}
		}
	}
}

/* Whether node i is a better place than node best for replica r:
 * a rack the partition does not use yet, then the lighter load (leaders
 * for the first replica, replicas for the others), then fewer replicas. */
static bool better(unsigned r, size_t i, bool i_new_rack, size_t best, bool best_new_rack,
		   const unsigned *replicas, const unsigned *leaders)
{
	if (i_new_rack != best_new_rack)
		return i_new_rack;
	unsigned a = r == 0 ? leaders[i] : replicas[i];
	unsigned b = r == 0 ? leaders[best] : replicas[best];
	if (a != b)
		return a < b;
	return replicas[i] < replicas[best];
}

/* Places one partition's rf replicas (see meta.h); counts updated. */
static void place(const struct sl_meta *m, uint32_t p, unsigned rf, unsigned *replicas,
		  unsigned *leaders, struct sl_meta_partition *out)
{
	size_t n = m->nnodes;
	for (unsigned r = 0; r < rf; r++) {
		size_t best = n;
		bool best_new_rack = false;
		for (size_t k = 0; k < n; k++) {
			size_t i = (k + p) % n; /* ties go to the first in this rotation */
			const struct sl_meta_node *node = &m->nodes[i];
			bool taken = false, new_rack = node->rack[0] != '\0';
			for (unsigned j = 0; j < r; j++) {
				const struct sl_meta_node *o = sl_meta_node(m, out->replicas[j]);
				taken = taken || o == node;
				if (o != NULL && new_rack && strcmp(o->rack, node->rack) == 0)
					new_rack = false;
			}
			if (!node->alive || taken)
				continue;
			if (best == n ||
			    better(r, i, new_rack, best, best_new_rack, replicas, leaders)) {
				best = i;
				best_new_rack = new_rack;
			}
		}
		out->replicas[r] = m->nodes[best].id;
		replicas[best]++;
		leaders[best] += r == 0;
	}
	out->nreplicas = rf;
}

static int apply_create(struct sl_meta *m, const Sluice__Meta__CreateTopic *ct,
			struct sl_meta_result *res)
{
	char why[SL_ERRMSG_SIZE];
	int rv = sl_meta_check_topic_name(ct->name, why);
	if (rv != SL_OK)
		return refuse(res, rv, "%s", why);
	if (sl_meta_topic(m, ct->name) != NULL)
		return refuse(res, SL_ETOPIC_ALREADY_EXISTS, "topic '%s' already exists", ct->name);
	if (ct->partitions < 1 || ct->partitions > SL_META_MAX_PARTITIONS)
		return refuse(res, SL_EINVALID_PARTITIONS, "partitions must be 1..%u, not %u",
			      SL_META_MAX_PARTITIONS, ct->partitions);
	size_t alive = 0;
	for (size_t i = 0; i < m->nnodes; i++)
		alive += m->nodes[i].alive;
	if (ct->replication_factor < 1 || ct->replication_factor > SL_META_MAX_RF)
		return refuse(res, SL_EINVALID_REPLICATION_FACTOR,
			      "replication factor must be 1..%d, not %u", SL_META_MAX_RF,
			      ct->replication_factor);
	if (ct->replication_factor > m->nnodes)
		return refuse(res, SL_EINVALID_REPLICATION_FACTOR,
			      "replication factor %u is above the %zu registered nodes",
			      ct->replication_factor, m->nnodes);
	if (ct->replication_factor > alive)
		return refuse(res, SL_EINVALID_REPLICATION_FACTOR,
			      "replication factor %u is above the %zu live nodes (of %zu registered)",
			      ct->replication_factor, alive, m->nnodes);
	const char *bad = config_bad(ct->config);
	if (bad != NULL)
		return refuse(res, SL_EINVALID_CONFIG, "%s", bad);
	if ((uint64_t)m->next_group + ct->partitions > UINT32_MAX)
		return refuse(res, SL_EINVALID_PARTITIONS, "no group ids left");
	if (m->next_topic_id == UINT64_MAX)
		return refuse(res, SL_EINVALID_ARGUMENT, "no topic ids left");

	struct sl_meta_topic *t = calloc(1, sizeof(*t));
	unsigned *replicas = calloc(m->nnodes, sizeof(*replicas));
	unsigned *leaders = calloc(m->nnodes, sizeof(*leaders));
	bool room = m->ntopics < m->cap_topics;
	if (!room) {
		size_t ncap = m->cap_topics ? m->cap_topics * 2 : 16;
		struct sl_meta_topic **p = realloc(m->topics, ncap * sizeof(*p));
		if (p != NULL) {
			m->topics = p;
			m->cap_topics = ncap;
			room = true;
		}
	}
	if (t == NULL || replicas == NULL || leaders == NULL || !room ||
	    (t->parts = calloc(ct->partitions, sizeof(*t->parts))) == NULL ||
	    !greserve(m, ct->partitions)) {
		topic_free(t);
		free(replicas);
		free(leaders);
		return SL_ENOMEM;
	}
	t->id = m->next_topic_id++;
	snprintf(t->name, sizeof(t->name), "%s", ct->name);
	t->rf = ct->replication_factor;
	if (ct->config != NULL)
		t->config = (struct sl_meta_topic_config){
			.retention_bytes = ct->config->retention_bytes,
			.retention_ms = ct->config->retention_ms,
			.segment_bytes = ct->config->segment_bytes,
			.cleanup_policy = ct->config->cleanup_policy,
			.max_message_bytes = ct->config->max_message_bytes,
		};
	t->npartitions = ct->partitions;
	count_load(m, replicas, leaders);
	for (uint32_t p = 0; p < t->npartitions; p++) {
		t->parts[p].group = m->next_group++;
		t->parts[p].since = m->seq + 1;
		place(m, p, t->rf, replicas, leaders, &t->parts[p]);
		gput(m, t->parts[p].group, t, p);
	}
	free(replicas);
	free(leaders);
	size_t i = topic_pos(m, t->name);
	memmove(&m->topics[i + 1], &m->topics[i], (m->ntopics - i) * sizeof(*m->topics));
	m->topics[i] = t;
	m->ntopics++;
	res->topic_id = t->id;
	return SL_OK;
}

static int apply_delete(struct sl_meta *m, const Sluice__Meta__DeleteTopic *dt,
			struct sl_meta_result *res)
{
	size_t i = topic_pos(m, dt->name);
	if (i == m->ntopics || strcmp(m->topics[i]->name, dt->name) != 0)
		return refuse(res, SL_EUNKNOWN_TOPIC_OR_PARTITION, "topic '%.*s' does not exist", 249,
			      dt->name);
	struct sl_meta_topic *t = m->topics[i];
	for (uint32_t p = 0; p < t->npartitions; p++)
		gdel(m, t->parts[p].group);
	memmove(&m->topics[i], &m->topics[i + 1], (m->ntopics - i - 1) * sizeof(*m->topics));
	m->ntopics--;
	topic_free(t);
	return SL_OK;
}

static void apply_reports(struct sl_meta *m, const Sluice__Meta__ReportLeaders *rl)
{
	for (size_t i = 0; i < rl->n_reports; i++) {
		const Sluice__Meta__LeaderReport *r = rl->reports[i];
		struct sl_meta_gslot *s = gfind(m, r->group);
		if (s == NULL)
			continue; /* its topic was deleted meanwhile */
		struct sl_meta_partition *p = &s->topic->parts[s->partition];
		if (r->term < p->term)
			continue; /* older news */
		p->term = r->term;
		p->leader = r->leader;
		p->nisr = 0;
		/* In sync: replicas the report names, each once. */
		for (unsigned j = 0; j < p->nreplicas; j++)
			for (size_t k = 0; k < r->n_isr; k++)
				if (p->replicas[j] == r->isr[k]) {
					p->isr[p->nisr++] = r->isr[k];
					break;
				}
	}
}

static int apply_move(struct sl_meta *m, const Sluice__Meta__MoveController *mc,
		      struct sl_meta_result *res)
{
	if (mc->from_group != m->ctl_group)
		return refuse(res, SL_EEXISTS, "the controller moved from group %u already (to %u)",
			      mc->from_group, m->ctl_group);
	if (m->ctl_awaiting_seed)
		return refuse(res, SL_ENOT_CONTROLLER, "group %u has no seed yet", m->ctl_group);
	if (m->next_group == UINT32_MAX)
		return refuse(res, SL_EINVALID_ARGUMENT, "no group ids left");
	m->ctl_group = m->next_group++;
	m->ctl_since = m->seq + 1;
	m->ctl_awaiting_seed = true;
	return SL_OK;
}

/* The new group's first command: the old group's last state. */
static int apply_seed(struct sl_meta *m, const Sluice__Meta__SeedController *sc,
		      struct sl_meta_result *res)
{
	if (!m->ctl_awaiting_seed)
		return refuse(res, SL_EEXISTS, "the controller's group %u has its seed already",
			      m->ctl_group);
	struct sl_meta n;
	char why[SL_ERRMSG_SIZE];
	sl_meta_init(&n);
	int rv = sl_meta_restore(&n, sc->snapshot.data, sc->snapshot.len, why);
	if (rv == SL_ENOMEM)
		return rv;
	if (rv != SL_OK)
		return refuse(res, SL_EINVALID_ARGUMENT, "a seed that does not restore: %s", why);
	if (n.ctl_group != m->ctl_group || !n.ctl_awaiting_seed) {
		sl_meta_free(&n);
		return refuse(res, SL_EINVALID_ARGUMENT,
			      "a seed for group %u (this is group %u's first state)", n.ctl_group,
			      m->ctl_group);
	}
	/* The seq goes on from the seed's, the same on every node. */
	sl_meta_free(m);
	*m = n;
	m->ctl_awaiting_seed = false;
	return SL_OK;
}

int sl_meta_apply(struct sl_meta *m, const void *buf, size_t len, struct sl_meta_result *res)
{
	memset(res, 0, sizeof(*res));
	Sluice__Meta__Command *c = sluice__meta__command__unpack(NULL, len, buf);
	if (c == NULL)
		return SL_EINVALID_RECORD;
	int rv = SL_OK;
	if (m->ctl_awaiting_seed && c->cmd_case >= SLUICE__META__COMMAND__CMD_INIT_CLUSTER &&
	    c->cmd_case < SLUICE__META__COMMAND__CMD_MOVE_CONTROLLER) {
		refuse(res, SL_ENOT_CONTROLLER, "the controller is moving to group %u",
		       m->ctl_group);
		sluice__meta__command__free_unpacked(c, NULL);
		return SL_OK;
	}
	switch (c->cmd_case) {
	case SLUICE__META__COMMAND__CMD_INIT_CLUSTER:
		rv = apply_init(m, c->init_cluster, res);
		break;
	case SLUICE__META__COMMAND__CMD_REGISTER_NODE:
		rv = apply_register(m, c->register_node, res);
		break;
	case SLUICE__META__COMMAND__CMD_SET_ALIVE:
		rv = apply_set_alive(m, c->set_alive, res);
		break;
	case SLUICE__META__COMMAND__CMD_CREATE_TOPIC:
		rv = apply_create(m, c->create_topic, res);
		break;
	case SLUICE__META__COMMAND__CMD_DELETE_TOPIC:
		rv = apply_delete(m, c->delete_topic, res);
		break;
	case SLUICE__META__COMMAND__CMD_REPORT_LEADERS:
		apply_reports(m, c->report_leaders);
		break;
	case SLUICE__META__COMMAND__CMD_ALLOC_PRODUCER_IDS:
		if (c->alloc_producer_ids->count < 1 || c->alloc_producer_ids->count > (1u << 20) ||
		    m->next_producer_id > INT64_MAX - c->alloc_producer_ids->count) {
			refuse(res, SL_EINVALID_ARGUMENT, "producer ids are allocated 1..1048576 at a time");
			break;
		}
		res->first_producer_id = m->next_producer_id;
		m->next_producer_id += c->alloc_producer_ids->count;
		break;
	case SLUICE__META__COMMAND__CMD_MOVE_CONTROLLER:
		rv = apply_move(m, c->move_controller, res);
		break;
	case SLUICE__META__COMMAND__CMD_SEED_CONTROLLER:
		rv = apply_seed(m, c->seed_controller, res);
		break;
	default:
		rv = SL_EINVALID_RECORD; /* a command of a later version, or damage */
		break;
	}
	if (rv == SL_OK && res->err == SL_OK)
		m->seq++;
	sluice__meta__command__free_unpacked(c, NULL);
	return rv;
}

/* ---- Snapshots ------------------------------------------------------ */

int sl_meta_snapshot(const struct sl_meta *m, uint8_t **buf, size_t *len)
{
	size_t nparts = 0;
	for (size_t t = 0; t < m->ntopics; t++)
		nparts += m->topics[t]->npartitions;
	Sluice__Meta__Node *nodes = calloc(m->nnodes + 1, sizeof(*nodes));
	Sluice__Meta__Node **np = calloc(m->nnodes + 1, sizeof(*np));
	Sluice__Meta__Topic *topics = calloc(m->ntopics + 1, sizeof(*topics));
	Sluice__Meta__Topic **tp = calloc(m->ntopics + 1, sizeof(*tp));
	Sluice__Meta__TopicConfig *cfgs = calloc(m->ntopics + 1, sizeof(*cfgs));
	Sluice__Meta__Partition *parts = calloc(nparts + 1, sizeof(*parts));
	Sluice__Meta__Partition **pp = calloc(nparts + 1, sizeof(*pp));
	int rv = SL_ENOMEM;
	if (nodes == NULL || np == NULL || topics == NULL || tp == NULL || cfgs == NULL ||
	    parts == NULL || pp == NULL)
		goto out;
	for (size_t i = 0; i < m->nnodes; i++) {
		node_to_pb(&m->nodes[i], &nodes[i]);
		np[i] = &nodes[i];
	}
	size_t k = 0;
	for (size_t t = 0; t < m->ntopics; t++) {
		const struct sl_meta_topic *mt = m->topics[t];
		Sluice__Meta__Topic *pt = &topics[t];
		sluice__meta__topic__init(pt);
		pt->id = mt->id;
		pt->name = (char *)mt->name;
		pt->replication_factor = mt->rf;
		config_to_pb(&mt->config, &cfgs[t]);
		pt->config = &cfgs[t];
		pt->partitions = &pp[k];
		pt->n_partitions = mt->npartitions;
		for (uint32_t p = 0; p < mt->npartitions; p++, k++) {
			const struct sl_meta_partition *mp = &mt->parts[p];
			sluice__meta__partition__init(&parts[k]);
			parts[k].group = mp->group;
			parts[k].n_replicas = mp->nreplicas;
			parts[k].replicas = (uint64_t *)mp->replicas;
			parts[k].leader = mp->leader;
			parts[k].term = mp->term;
			parts[k].n_isr = mp->nisr;
			parts[k].isr = (uint64_t *)mp->isr;
			parts[k].since = mp->since;
			pp[k] = &parts[k];
		}
		tp[t] = pt;
	}
	Sluice__Meta__Snapshot s = SLUICE__META__SNAPSHOT__INIT;
	s.cluster_id = (char *)m->cluster_id;
	s.n_nodes = m->nnodes;
	s.nodes = np;
	s.n_topics = m->ntopics;
	s.topics = tp;
	s.next_topic_id = m->next_topic_id;
	s.next_group = m->next_group;
	s.next_producer_id = m->next_producer_id;
	s.seq = m->seq;
	s.ctl_group = m->ctl_group;
	s.ctl_since = m->ctl_since;
	s.ctl_awaiting_seed = m->ctl_awaiting_seed;
	*len = sluice__meta__snapshot__get_packed_size(&s);
	*buf = malloc(*len ? *len : 1);
	if (*buf != NULL) {
		sluice__meta__snapshot__pack(&s, *buf);
		rv = SL_OK;
	}
out:
	free(nodes);
	free(np);
	free(topics);
	free(tp);
	free(cfgs);
	free(parts);
	free(pp);
	return rv;
}

__attribute__((format(printf, 2, 3))) static int bad_snapshot(char *errmsg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, SL_ERRMSG_SIZE, fmt, ap);
	va_end(ap);
	return SL_EINVALID_RECORD;
}

/* Builds n from a decoded snapshot, checking what apply guarantees. */
static int restore_into(struct sl_meta *n, const Sluice__Meta__Snapshot *s, char *errmsg)
{
	if (strlen(s->cluster_id) >= sizeof(n->cluster_id))
		return bad_snapshot(errmsg, "snapshot: cluster id too long");
	snprintf(n->cluster_id, sizeof(n->cluster_id), "%s", s->cluster_id);
	n->next_topic_id = s->next_topic_id;
	n->next_group = s->next_group;
	n->next_producer_id = s->next_producer_id;
	/* Ids start at 1 (group 0 is the controller's); 0 would hand one out
	 * that means something else. */
	if (n->next_topic_id == 0 || n->next_group == 0 || n->next_producer_id == 0)
		return bad_snapshot(errmsg, "snapshot: an id allocator is at 0");
	n->seq = s->seq;
	n->ctl_group = s->ctl_group;
	n->ctl_since = s->ctl_since;
	n->ctl_awaiting_seed = s->ctl_awaiting_seed;
	if (n->ctl_group >= n->next_group || n->ctl_since > n->seq ||
	    (n->ctl_group == 0 && (n->ctl_since != 0 || n->ctl_awaiting_seed)))
		return bad_snapshot(errmsg, "snapshot: controller group %u (since %llu) is out of "
				    "range", n->ctl_group, (unsigned long long)n->ctl_since);
	if (s->n_nodes > 0 && (n->nodes = calloc(s->n_nodes, sizeof(*n->nodes))) == NULL)
		return SL_ENOMEM;
	n->cap_nodes = s->n_nodes;
	for (size_t i = 0; i < s->n_nodes; i++) {
		const char *bad = node_fields_bad(s->nodes[i]);
		if (bad != NULL)
			return bad_snapshot(errmsg, "snapshot: node %zu: %s", i, bad);
		if (i > 0 && s->nodes[i]->id <= s->nodes[i - 1]->id)
			return bad_snapshot(errmsg, "snapshot: nodes out of order");
		node_from_pb(s->nodes[i], &n->nodes[i]);
		n->nnodes++;
	}
	if (s->n_topics > 0 && (n->topics = calloc(s->n_topics, sizeof(*n->topics))) == NULL)
		return SL_ENOMEM;
	n->cap_topics = s->n_topics;
	for (size_t i = 0; i < s->n_topics; i++) {
		const Sluice__Meta__Topic *pt = s->topics[i];
		char why[SL_ERRMSG_SIZE];
		if (sl_meta_check_topic_name(pt->name, why) != SL_OK)
			return bad_snapshot(errmsg, "snapshot: %s", why);
		if (i > 0 && strcmp(pt->name, s->topics[i - 1]->name) <= 0)
			return bad_snapshot(errmsg, "snapshot: topics out of order");
		if (pt->n_partitions < 1 || pt->n_partitions > SL_META_MAX_PARTITIONS ||
		    pt->replication_factor < 1 || pt->replication_factor > SL_META_MAX_RF ||
		    config_bad(pt->config) != NULL)
			return bad_snapshot(errmsg, "snapshot: topic '%s' is out of range", pt->name);
		struct sl_meta_topic *t = calloc(1, sizeof(*t));
		if (t == NULL || (t->parts = calloc(pt->n_partitions, sizeof(*t->parts))) == NULL ||
		    !greserve(n, pt->n_partitions)) {
			topic_free(t);
			return SL_ENOMEM;
		}
		n->topics[n->ntopics++] = t;
		t->id = pt->id;
		snprintf(t->name, sizeof(t->name), "%s", pt->name);
		t->rf = pt->replication_factor;
		if (pt->config != NULL)
			t->config = (struct sl_meta_topic_config){
				.retention_bytes = pt->config->retention_bytes,
				.retention_ms = pt->config->retention_ms,
				.segment_bytes = pt->config->segment_bytes,
				.cleanup_policy = pt->config->cleanup_policy,
				.max_message_bytes = pt->config->max_message_bytes,
			};
		t->npartitions = (uint32_t)pt->n_partitions;
		for (uint32_t p = 0; p < t->npartitions; p++) {
			const Sluice__Meta__Partition *pp = pt->partitions[p];
			if (pp->n_replicas < 1 || pp->n_replicas > SL_META_MAX_RF ||
			    pp->n_isr > pp->n_replicas || pp->group == 0 || pp->group == n->ctl_group ||
			    gfind(n, pp->group) != NULL)
				return bad_snapshot(errmsg, "snapshot: topic '%s' partition %u is malformed",
						    pt->name, p);
			struct sl_meta_partition *mp = &t->parts[p];
			mp->group = pp->group;
			mp->nreplicas = (unsigned)pp->n_replicas;
			memcpy(mp->replicas, pp->replicas, pp->n_replicas * sizeof(*mp->replicas));
			mp->leader = pp->leader;
			mp->term = pp->term;
			mp->nisr = (unsigned)pp->n_isr;
			mp->since = pp->since;
			if (pp->n_isr > 0)
				memcpy(mp->isr, pp->isr, pp->n_isr * sizeof(*mp->isr));
			gput(n, mp->group, t, p);
			if (mp->group >= n->next_group)
				return bad_snapshot(errmsg, "snapshot: group %u is not below the next "
						    "group id %u", mp->group, n->next_group);
		}
		if (t->id == 0 || t->id >= n->next_topic_id)
			return bad_snapshot(errmsg, "snapshot: topic '%s' has id %llu, not in 1..%llu",
					    t->name, (unsigned long long)t->id,
					    (unsigned long long)(n->next_topic_id - 1));
	}
	return SL_OK;
}

int sl_meta_restore(struct sl_meta *m, const void *buf, size_t len, char *errmsg)
{
	Sluice__Meta__Snapshot *s = sluice__meta__snapshot__unpack(NULL, len, buf);
	if (s == NULL)
		return bad_snapshot(errmsg, "snapshot does not decode");
	struct sl_meta n;
	sl_meta_init(&n);
	int rv = restore_into(&n, s, errmsg);
	sluice__meta__snapshot__free_unpacked(s, NULL);
	if (rv != SL_OK) {
		sl_meta_free(&n);
		return rv;
	}
	sl_meta_free(m);
	*m = n;
	return SL_OK;
}
