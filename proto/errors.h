/* Sluice's error codes, from proto/errors.def.
 *
 * Functions return int: SL_OK (0) or a positive code... with one exception
 * inherited from Kafka, SL_EUNKNOWN (-1). Test with `rv != SL_OK`. */
#ifndef SL_ERRORS_H
#define SL_ERRORS_H

#include <stdbool.h>

#define SL_RETRIABLE true
#define SL_FATAL false

enum {
	SL_OK = 0,
#define SL_ERR(name, num, retriable, msg) SL_E##name = (num),
#include "errors.def"
#undef SL_ERR
};

/* Size of the errmsg buffers that long-lived objects carry. */
#define SL_ERRMSG_SIZE 256

/* "NOT_LEADER"; "UNKNOWN_CODE" for a number not in the table. Never NULL. */
const char *sl_err_name(int err);
/* The table's message; "unknown error code" for a number not in it. */
const char *sl_strerror(int err);
/* True when the operation may succeed if tried again. */
bool sl_err_retriable(int err);
/* Maps a positive errno to the closest code (ENOMEM -> SL_ENOMEM, else SL_EIO). */
int sl_err_from_errno(int errnum);

#endif
