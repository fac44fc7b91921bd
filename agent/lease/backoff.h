/* The lease loop's retry delays: the first wait, then doubling up to a cap. (The
 * control client's per-call retries add jitter: control_backoff_ms.) */
#ifndef KILN_BACKOFF_H
#define KILN_BACKOFF_H

#include <stdint.h>

/* The delay after one more failure, given the last one (0: none yet). */
static inline int64_t backoff_next(int64_t last_ms, int64_t first_ms, int64_t max_ms)
{
    int64_t d = last_ms ? last_ms * 2 : first_ms;
    return d > max_ms ? max_ms : d;
}

#endif
