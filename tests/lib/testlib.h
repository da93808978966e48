/* Helpers shared by the unit tests. */
#ifndef SL_TESTLIB_H
#define SL_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

/* Creates a fresh directory under $TMPDIR (or /tmp) and returns its path
 * (static storage; one per process, which suits Criterion's fork per test).
 * Registered for removal at exit. */
const char *tl_tmpdir(void);
/* Removes a directory tree. */
void tl_rmtree(const char *path);
/* A small deterministic PRNG (xorshift64*), seeded per test. */
uint64_t tl_rand(uint64_t *state);
/* Fills buf with pseudo-random bytes. */
void tl_fill_random(uint64_t *state, void *buf, size_t len);

#endif
