/* Token bucket: at most `burst` events at once, refilled at `rate_per_s`.
 * Time is passed in (milliseconds, monotonic) so it is testable without clocks. */
#ifndef KILN_TOKEN_BUCKET_H
#define KILN_TOKEN_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

typedef struct token_bucket {
    double tokens;
    double burst;
    double rate_per_ms;
    int64_t last_ms;
} token_bucket;

void token_bucket_init(token_bucket *tb, double rate_per_s, double burst, int64_t now_ms);
/* Takes one token if available. */
bool token_bucket_take(token_bucket *tb, int64_t now_ms);
/* Milliseconds until one token is available (0 if now). */
int64_t token_bucket_wait_ms(token_bucket *tb, int64_t now_ms);

#endif
