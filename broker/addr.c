/* The address a listener binds. See addr.h. */
#include <stdio.h>

#include "addr.h"
#include "errors.h"

int sl_listen_addr(const char *what, const char *host, unsigned port, struct addrinfo **ai,
		   char *errmsg)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	int rv = getaddrinfo(host, portstr, &hints, ai);
	if (rv != 0) {
		snprintf(errmsg, SL_ERRMSG_SIZE, "%s: listen_host %s: %s", what, host,
			 gai_strerror(rv));
		return SL_EINVALID_ARGUMENT;
	}
	return SL_OK;
}
