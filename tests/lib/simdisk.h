/* A simulated disk behind the storage vfs (storage/storage.h), for crash
 * tests and, later, the Raft simulator.
 *
 * Files live in memory. Each file (inode) has durable bytes and current
 * bytes; writes, truncates and fallocates change the current bytes only,
 * fdatasync copies current to durable. Directory entries (create, rename,
 * unlink) likewise have a current and a durable view, made durable by
 * fsync_dir of that directory. sim_crash() drops everything not yet synced:
 * every file reverts to its durable bytes, every directory to its durable
 * entries, every handle is closed. With tear enabled, the last pwrite not
 * yet synced is instead partly applied: a prefix of it, cut at a chosen
 * byte, reaches the durable bytes (a torn write).
 *
 * Faults: sim_fail_after(n, err) makes the n-th next operation (and every
 * later one, until cleared with n = -1) fail with -err, as a dying disk
 * would. sim_ops() counts operations, so a test can crash "between every
 * two steps" by running once to count, then once per step.
 *
 * Single-threaded use only unless the caller serializes (a mutex inside
 * makes concurrent calls safe but not deterministic). */
#ifndef SL_TEST_SIMDISK_H
#define SL_TEST_SIMDISK_H

#include <stdint.h>

#include "storage.h"

typedef struct sim_disk sim_disk;

sim_disk *sim_new(void);
void sim_free(sim_disk *sd);
/* The vfs to pass to sl_log_open(); owned by sd. */
sl_vfs *sim_vfs(sim_disk *sd);

/* Drops all unsynced state and closes every handle. */
void sim_crash(sim_disk *sd);
/* Like sim_crash, but the newest unsynced pwrite (if any) leaves its first
 * keep bytes (0 <= keep < its length) in the durable file. */
void sim_crash_tear(sim_disk *sd, uint64_t keep);
/* Length of the newest unsynced pwrite, 0 if none. */
uint64_t sim_last_unsynced_write_len(sim_disk *sd);

/* Operation counter (every vfs call counts one). */
uint64_t sim_ops(sim_disk *sd);
/* After n more operations succeed, every operation fails with -err;
 * n < 0 clears. */
void sim_fail_after(sim_disk *sd, int64_t n, int err);
/* After n more operations, the disk "crashes" on its own: the (n+1)-th
 * operation and all later ones fail with -EIO until sim_crash() is called
 * by the test (which then drops unsynced state as usual). n < 0 clears. */
void sim_crash_after(sim_disk *sd, int64_t n);

/* Direct access for tests: current contents of path (malloc'd, *len set),
 * NULL if absent; and overwriting one byte of the current and durable
 * contents (bit rot). */
uint8_t *sim_read_file(sim_disk *sd, const char *path, uint64_t *len);
int sim_corrupt_byte(sim_disk *sd, const char *path, uint64_t off, uint8_t xor_mask);
int sim_exists(sim_disk *sd, const char *path);

#endif
