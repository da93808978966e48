/* A small record kept durable in two alternating files ("slots"), as
 * libraft's own backend keeps term and vote: each write goes to the slot
 * not holding the newest version, with a version number and a CRC, and one
 * fdatasync makes it durable. A crash during a write leaves the other slot,
 * the previous version, intact; a load picks the valid slot with the
 * highest version. No rename, so no directory sync after the first write.
 *
 * Used by raft/ for term and vote (meta1/meta2) of a group run without
 * the node's shared store (rmeta.h), and for the snapshot
 * manifest (snap1/snap2). Files go through the storage vfs. Not
 * thread-safe: one caller per slot pair. */
#ifndef SL_RAFT_SLOT_H
#define SL_RAFT_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "storage.h"

/* Largest record a slot holds. */
#define SL_SLOT_MAX (1u << 20)

/* Loads the newest valid record of the pair "<dir>/<name>1", "<dir>/<name>2".
 * On SL_OK: *data is malloc'd (caller frees; NULL with *len 0 when the
 * record is empty), *version >= 1. When neither file holds a valid record
 * (missing, empty, torn, bad CRC): SL_ENOT_FOUND, *version 0, nothing
 * allocated. Disk errors: SL_ESTORAGE with errmsg (SL_ERRMSG_SIZE bytes, may
 * be NULL) naming the file. */
int sl_slot_load(sl_vfs *vfs, const char *dir, const char *name, void **data, size_t *len,
		 uint64_t *version, char *errmsg);

/* Durably writes data as version (which must exceed every version stored,
 * normally the loaded version + 1) into the slot that does not hold the
 * newest record: slot 1 for odd versions, 2 for even. Creates the file if
 * needed (then also syncs the directory). Durable when it returns SL_OK.
 * len <= SL_SLOT_MAX (else SL_EINVALID_ARGUMENT). */
int sl_slot_store(sl_vfs *vfs, const char *dir, const char *name, const void *data, size_t len,
		  uint64_t version, char *errmsg);

#endif
