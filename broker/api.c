/* The client protocol's requests. See api.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "frame.h"

#define SERVER_SOFTWARE "sluiced 0.1.0"

typedef int (*handler_fn)(const struct sl_api_node *node, const Sluice__Envelope *req,
			  sl_api_reply_fn reply, void *arg);

static int api_versions(const struct sl_api_node *node, const Sluice__Envelope *req,
			sl_api_reply_fn reply, void *arg);

/* The APIs this node serves: versions, the request body, the handler. */
static const struct {
	Sluice__ApiKey key;
	uint32_t min, max;
	Sluice__Envelope__BodyCase body;
	handler_fn handle;
} served[] = {
	{ SLUICE__API_KEY__API_VERSIONS, 0, 0, SLUICE__ENVELOPE__BODY_API_VERSIONS_REQUEST,
	  api_versions },
};

#define NSERVED (sizeof(served) / sizeof(served[0]))

static int send_env(Sluice__Envelope *env, sl_api_reply_fn reply, void *arg)
{
	uint8_t *head;
	size_t head_len;
	int rv = sl_frame_encode(env, NULL, 0, &head, &head_len);
	if (rv != SL_OK)
		return rv;
	reply(arg, head, head_len, NULL, 0);
	return SL_OK;
}

/* An envelope with only an error. */
static int send_error(uint32_t correlation_id, Sluice__ApiKey key, uint32_t version, int err,
		      const char *msg, sl_api_reply_fn reply, void *arg)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.correlation_id = correlation_id;
	env.api_key = key;
	env.api_version = version;
	env.error_code = err;
	env.error_message = (char *)msg;
	return send_env(&env, reply, arg);
}

static int api_versions(const struct sl_api_node *node, const Sluice__Envelope *req,
			sl_api_reply_fn reply, void *arg)
{
	Sluice__ApiVersionRange ranges[NSERVED];
	Sluice__ApiVersionRange *rp[NSERVED];
	for (size_t i = 0; i < NSERVED; i++) {
		sluice__api_version_range__init(&ranges[i]);
		ranges[i].api_key = served[i].key;
		ranges[i].min_version = served[i].min;
		ranges[i].max_version = served[i].max;
		rp[i] = &ranges[i];
	}
	Sluice__ApiVersionsResponse r = SLUICE__API_VERSIONS_RESPONSE__INIT;
	r.n_apis = NSERVED;
	r.apis = rp;
	r.max_frame_bytes = node->max_frame_bytes;
	r.server_software = (char *)SERVER_SOFTWARE;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.correlation_id = req->correlation_id;
	env.api_key = req->api_key;
	env.api_version = req->api_version;
	env.body_case = SLUICE__ENVELOPE__BODY_API_VERSIONS_RESPONSE;
	env.api_versions_response = &r;
	return send_env(&env, reply, arg);
}

int sl_api_handle(const struct sl_api_node *node, const uint8_t *frame, size_t len,
		  sl_api_reply_fn reply, void *arg)
{
	struct sl_frame *f = malloc(sizeof(*f));
	if (f == NULL)
		return SL_ENOMEM;
	char why[SL_ERRMSG_SIZE];
	uint32_t corr;
	int rv = sl_frame_decode(frame, len, NULL, f, &corr, why);
	if (rv != SL_OK) {
		free(f);
		return send_error(corr, SLUICE__API_KEY__API_NONE, 0, rv, why, reply, arg);
	}
	Sluice__Envelope *req = f->env;
	size_t i = 0;
	while (i < NSERVED && served[i].key != req->api_key)
		i++;
	if (i == NSERVED) {
		snprintf(why, sizeof(why), "API %d is not served by this node (ApiVersions lists those that are)",
			 (int)req->api_key);
		rv = send_error(corr, req->api_key, req->api_version, SL_EUNSUPPORTED_VERSION, why,
				reply, arg);
	} else if (req->api_version < served[i].min || req->api_version > served[i].max) {
		snprintf(why, sizeof(why), "API %d version %u is not served (versions %u..%u are)",
			 (int)req->api_key, req->api_version, served[i].min, served[i].max);
		rv = send_error(corr, req->api_key, req->api_version, SL_EUNSUPPORTED_VERSION, why,
				reply, arg);
	} else if (req->body_case != served[i].body) {
		snprintf(why, sizeof(why), "API %d needs its request in the envelope (body %d found)",
			 (int)req->api_key, (int)req->body_case);
		rv = send_error(corr, req->api_key, req->api_version, SL_EINVALID_REQUEST, why, reply,
				arg);
	} else if (f->nseg != 0) {
		snprintf(why, sizeof(why), "API %d carries no record data (%zu segments found)",
			 (int)req->api_key, f->nseg);
		rv = send_error(corr, req->api_key, req->api_version, SL_EINVALID_REQUEST, why, reply,
				arg);
	} else {
		rv = served[i].handle(node, req, reply, arg);
	}
	sluice__envelope__free_unpacked(req, NULL);
	free(f);
	return rv;
}
