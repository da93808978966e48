/* broker/: the address a listener binds. */
#ifndef SL_BROKER_ADDR_H
#define SL_BROKER_ADDR_H

#include <netdb.h>

/* Resolves host:port for a listening socket into *ai (free it with
 * freeaddrinfo). Returns SL_OK, or SL_EINVALID_ARGUMENT with
 * "<what>: listen_host <host>: <reason>" in errmsg (SL_ERRMSG_SIZE bytes). */
int sl_listen_addr(const char *what, const char *host, unsigned port, struct addrinfo **ai,
		   char *errmsg);

#endif
