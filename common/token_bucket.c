/* Token bucket rate limiter (see token_bucket.h). */
#include "token_bucket.h"

static void refill(token_bucket *tb, int64_t now_ms)
{
    if (now_ms > tb->last_ms) {
        tb->tokens += (double)(now_ms - tb->last_ms) * tb->rate_per_ms;
        if (tb->tokens > tb->burst)
            tb->tokens = tb->burst;
        tb->last_ms = now_ms;
    }
}

void token_bucket_init(token_bucket *tb, double rate_per_s, double burst, int64_t now_ms)
{
    tb->burst = burst < 1 ? 1 : burst;
    tb->tokens = tb->burst;
    tb->rate_per_ms = rate_per_s / 1000.0;
    tb->last_ms = now_ms;
}

bool token_bucket_take(token_bucket *tb, int64_t now_ms)
{
    refill(tb, now_ms);
    if (tb->tokens >= 1.0) {
        tb->tokens -= 1.0;
        return true;
    }
    return false;
}

int64_t token_bucket_wait_ms(token_bucket *tb, int64_t now_ms)
{
    refill(tb, now_ms);
    if (tb->tokens >= 1.0)
        return 0;
    if (tb->rate_per_ms <= 0)
        return INT64_MAX;
    double need = (1.0 - tb->tokens) / tb->rate_per_ms;
    return (int64_t)need + 1;
}
