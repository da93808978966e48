#include "errors.h"

#include <errno.h>

const char *sl_err_name(int err)
{
	switch (err) {
	case SL_OK:
		return "OK";
#define SL_ERR(name, num, retriable, msg) \
	case num:                          \
		return #name;
#include "errors.def"
#undef SL_ERR
	}
	return "UNKNOWN_CODE";
}

const char *sl_strerror(int err)
{
	switch (err) {
	case SL_OK:
		return "success";
#define SL_ERR(name, num, retriable, msg) \
	case num:                          \
		return msg;
#include "errors.def"
#undef SL_ERR
	}
	return "unknown error code";
}

bool sl_err_retriable(int err)
{
	switch (err) {
#define SL_ERR(name, num, retriable, msg) \
	case num:                          \
		return retriable;
#include "errors.def"
#undef SL_ERR
	}
	return false;
}

int sl_err_from_errno(int errnum)
{
	switch (errnum) {
	case 0:
		return SL_OK;
	case ENOMEM:
		return SL_ENOMEM;
	case ENOENT:
		return SL_ENOT_FOUND;
	case EEXIST:
		return SL_EEXISTS;
	case EINVAL:
		return SL_EINVALID_ARGUMENT;
	default:
		return SL_EIO;
	}
}
