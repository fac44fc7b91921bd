/* CSPRNG helpers (see rand.h). */
#include "rand.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>

void random_bytes(void *out, size_t n)
{
    if (RAND_bytes(out, (int)n) != 1) {
        fprintf(stderr, "kiln: RAND_bytes failed\n");
        abort();
    }
}

int64_t random_range(int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = (uint64_t)(hi - lo) + 1, r, limit = UINT64_MAX - UINT64_MAX % span;
    do
        random_bytes(&r, sizeof r);
    while (r >= limit);
    return lo + (int64_t)(r % span);
}
