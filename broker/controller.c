/* The controller. See controller.h. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "batch.h"
#include "blog.h"
#include "controller.h"
#include "rio.h"

/* Application frames between voters (pnet.h): a kind byte, then a meta
 * command to propose. */
#define APP_PROPOSE 1

struct proposal {
	struct raft_apply req;
	struct sl_controller *c;
	sl_controller_done_fn cb;
	void *arg;
};

/* What the last entries' commands meant, by Raft index, for proposers. */
#define RESULTS 64

struct sl_controller {
	uv_loop_t *loop;
	uv_timer_t timer;
	struct sl_meta meta;
	struct sl_meta_node self;
	struct sl_rreg *reg;
	struct sl_pnet *net;
	bool voter;
	bool damaged;       /* an entry did not decode: applying stopped */
	struct {
		raft_index index;
		struct sl_meta_result res;
	} results[RESULTS];
	void (*change_cb)(void *arg);
	void *change_arg;
	void (*close_cb)(void *arg);
	void *close_arg;
};

int sl_controller_init(struct sl_controller **out, uv_loop_t *loop, const struct sl_meta_node *self)
{
	struct sl_controller *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return SL_ENOMEM;
	c->loop = loop;
	c->self = *self;
	c->self.alive = true;
	sl_meta_init(&c->meta);
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	*out = c;
	return SL_OK;
}

const struct sl_meta *sl_controller_meta(const struct sl_controller *c)
{
	return &c->meta;
}

/* This node, as the metadata has it, differs from what it would register. */
static bool registration_stale(const struct sl_controller *c)
{
	const struct sl_meta_node *n = sl_meta_node(&c->meta, c->self.id);
	return n == NULL || strcmp(n->uuid, c->self.uuid) != 0 ||
	       strcmp(n->host, c->self.host) != 0 || n->client_port != c->self.client_port ||
	       n->peer_port != c->self.peer_port || strcmp(n->rack, c->self.rack) != 0 || !n->alive;
}

bool sl_controller_ready(const struct sl_controller *c, const char **why)
{
	if (!c->voter)
		*why = "not joined: nodes past the controller's voters do not follow the metadata yet";
	else if (c->damaged)
		*why = "the controller's log holds an entry that does not decode (see the log)";
	else if (c->meta.cluster_id[0] == '\0')
		*why = "not joined: the controller has not set the cluster id yet";
	else if (registration_stale(c))
		*why = "not joined: this node is not registered with the controller yet";
	else
		return true;
	return false;
}

/* ---- Applying ------------------------------------------------------- */

void sl_controller_on_change(struct sl_controller *c, void (*fn)(void *arg), void *arg)
{
	c->change_cb = fn;
	c->change_arg = arg;
}

static void changed(struct sl_controller *c)
{
	if (c->change_cb != NULL)
		c->change_cb(c->change_arg);
}

void sl_controller_apply(void *arg, uint32_t group, raft_index index, const struct raft_buffer *buf)
{
	struct sl_controller *c = arg;
	if (group != SL_CONTROLLER_GROUP || c->damaged)
		return;
	struct sl_record_iter it;
	struct sl_record rec;
	int rv = sl_record_iter_init(&it, buf->base, buf->len);
	if (rv == SL_OK) {
		while (rv == SL_OK && sl_record_iter_next(&it, &rec)) {
			struct sl_meta_result res;
			size_t vlen = rec.value_len > 0 ? (size_t)rec.value_len : 0;
			rv = sl_meta_apply(&c->meta, rec.value, vlen, &res);
			if (rv == SL_OK && res.err != SL_OK)
				SL_BLOG(SL_BLOG_INFO, "controller", "entry %llu refused: %s",
					(unsigned long long)index, res.errmsg);
			if (rv == SL_OK) {
				c->results[index % RESULTS].index = index;
				c->results[index % RESULTS].res = res;
				changed(c);
			}
		}
		if (rv == SL_OK)
			rv = it.err;
		sl_record_iter_free(&it);
	}
	/* A damaged entry, or no memory to apply it: this node's metadata
	 * would go wrong from here, so it stops (and says so) instead. */
	if (rv != SL_OK) {
		c->damaged = true;
		SL_BLOG(SL_BLOG_ERROR, "controller",
			"entry %llu of the metadata log does not apply (%s): applying stopped",
			(unsigned long long)index, sl_err_name(rv));
	}
}

int sl_controller_snapshot(void *arg, uint32_t group, void **buf, size_t *len)
{
	struct sl_controller *c = arg;
	*buf = NULL;
	*len = 0;
	if (group != SL_CONTROLLER_GROUP)
		return SL_OK;
	uint8_t *b;
	int rv = sl_meta_snapshot(&c->meta, &b, len);
	*buf = rv == SL_OK ? b : NULL;
	return rv;
}

int sl_controller_restore(void *arg, uint32_t group, const void *buf, size_t len)
{
	struct sl_controller *c = arg;
	if (group != SL_CONTROLLER_GROUP)
		return SL_OK;
	char errmsg[SL_ERRMSG_SIZE];
	int rv = sl_meta_restore(&c->meta, buf, len, errmsg);
	if (rv != SL_OK)
		SL_BLOG(SL_BLOG_ERROR, "controller", "snapshot does not restore: %s", errmsg);
	else
		changed(c);
	return rv;
}

/* ---- Proposing ------------------------------------------------------ */

static void proposed(struct raft_apply *req, int status, void *result)
{
	struct proposal *p = (struct proposal *)req;
	struct sl_controller *c = p->c;
	(void)result;
	if (status != 0)
		SL_BLOG(SL_BLOG_DEBUG, "controller", "proposal failed: %s", raft_strerror(status));
	if (p->cb != NULL) {
		const struct sl_meta_result *res = NULL;
		if (status == 0 && c->results[req->index % RESULTS].index == req->index)
			res = &c->results[req->index % RESULTS].res;
		/* Lost leadership or closing: whether it applied is unknown. */
		p->cb(p->arg, status == 0 && res != NULL ? SL_OK : SL_EREQUEST_TIMED_OUT, res);
	}
	free(p);
}

uint64_t sl_controller_leader(const struct sl_controller *c)
{
	struct sl_rgroup_state st;
	if (c->reg == NULL || !c->voter || sl_rreg_state(c->reg, SL_CONTROLLER_GROUP, &st) != SL_OK)
		return 0;
	return st.leader;
}

int sl_controller_propose(struct sl_controller *c, const uint8_t *cmd, size_t len,
			  sl_controller_done_fn cb, void *arg)
{
	struct raft *r = c->reg != NULL ? sl_rreg_raft(c->reg, SL_CONTROLLER_GROUP) : NULL;
	struct raft_io *io = c->reg != NULL ? sl_rreg_io(c->reg, SL_CONTROLLER_GROUP) : NULL;
	if (r == NULL || io == NULL || raft_state(r) != RAFT_LEADER || !sl_rio_leader_ready(io) ||
	    c->damaged)
		return SL_ENOT_CONTROLLER;
	struct sl_batch_opts o;
	struct sl_batch_builder b;
	sl_batch_opts_init(&o);
	sl_batch_builder_init(&b, &o);
	const uint8_t *bytes;
	size_t blen;
	struct proposal *p = NULL;
	struct raft_buffer buf = { 0 };
	if (sl_batch_builder_add(&b, 0, NULL, -1, cmd, (int32_t)len, NULL, 0) != SL_OK ||
	    sl_batch_builder_finish(&b, &bytes, &blen) != SL_OK ||
	    (buf.base = raft_malloc(blen)) == NULL || (p = calloc(1, sizeof(*p))) == NULL)
		goto fail;
	memcpy(buf.base, bytes, blen);
	buf.len = blen;
	sl_batch_stamp(buf.base, sl_rio_next_offset(io), (int32_t)r->current_term);
	p->c = c;
	p->cb = cb;
	p->arg = arg;
	if (raft_apply(r, &p->req, &buf, 1, proposed) != 0)
		goto fail;
	sl_batch_builder_free(&b);
	return SL_OK;
fail:
	raft_free(buf.base);
	free(p);
	sl_batch_builder_free(&b);
	return SL_ENOMEM;
}

/* An application frame from another voter: a command for the leader. */
static void on_app(void *arg, uint64_t from, const void *payload, size_t len)
{
	struct sl_controller *c = arg;
	const uint8_t *p = payload;
	if (len < 1 || p[0] != APP_PROPOSE) {
		SL_BLOG(SL_BLOG_WARN, "controller", "unknown application frame from node %llu",
			(unsigned long long)from);
		return;
	}
	(void)sl_controller_propose(c, p + 1, len - 1, NULL, NULL); /* the sender retries */
}

int sl_controller_submit(struct sl_controller *c, const uint8_t *cmd, size_t len)
{
	uint64_t leader = sl_controller_leader(c);
	if (leader == 0)
		return SL_ENOT_CONTROLLER;
	if (leader == c->self.id)
		return sl_controller_propose(c, cmd, len, NULL, NULL);
	uint8_t *frame = malloc(len + 1);
	if (frame == NULL)
		return SL_ENOMEM;
	frame[0] = APP_PROPOSE;
	memcpy(frame + 1, cmd, len);
	int rv = sl_pnet_send_app(c->net, leader, frame, len + 1);
	free(frame);
	return rv;
}

/* Every second: what the metadata still lacks from this node. */
static void on_timer(uv_timer_t *t)
{
	struct sl_controller *c = t->data;
	if (c->damaged)
		return;
	uint8_t *cmd = NULL;
	size_t len;
	int rv = SL_OK;
	if (c->meta.cluster_id[0] == '\0') {
		struct sl_rgroup_state st;
		if (sl_rreg_state(c->reg, SL_CONTROLLER_GROUP, &st) == SL_OK && st.leader == c->self.id) {
			uuid_t u;
			char id[37];
			uuid_generate_random(u);
			uuid_unparse_lower(u, id);
			rv = sl_meta_cmd_init_cluster(id, &cmd, &len);
		}
	} else if (registration_stale(c)) {
		rv = sl_meta_cmd_register_node(&c->self, &cmd, &len);
	}
	if (rv == SL_OK && cmd != NULL)
		(void)sl_controller_submit(c, cmd, len); /* retried next second */
	free(cmd);
}

void sl_controller_attach(struct sl_controller *c, struct sl_rreg *reg, struct sl_pnet *net,
			  bool voter)
{
	c->reg = reg;
	c->net = net;
	c->voter = voter;
	sl_pnet_set_app_handler(net, on_app, c);
	if (voter)
		uv_timer_start(&c->timer, on_timer, 200, 1000);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct sl_controller *c = h->data;
	void (*cb)(void *) = c->close_cb;
	void *arg = c->close_arg;
	sl_meta_free(&c->meta);
	free(c);
	if (cb != NULL)
		cb(arg);
}

void sl_controller_close(struct sl_controller *c, void (*cb)(void *arg), void *arg)
{
	c->close_cb = cb;
	c->close_arg = arg;
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
