/* Randomness from OpenSSL's CSPRNG: for tokens, nonces, Message-IDs and jitter. */
#ifndef KILN_RAND_H
#define KILN_RAND_H

#include <stddef.h>
#include <stdint.h>

/* Cryptographically random bytes; aborts if the RNG fails. */
void random_bytes(void *out, size_t n);
/* Uniform random integer in [lo, hi] (lo when hi <= lo), without modulo bias. */
int64_t random_range(int64_t lo, int64_t hi);

#endif
