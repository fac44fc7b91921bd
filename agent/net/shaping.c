/* Per-host traffic shaping and circuit breaker (see shaping.h). */
#include "shaping.h"

void shaping_cfg_defaults(shaping_cfg *c)
{
    c->max_conns = 100;
    c->conns_per_min = 200;
    c->breaker_threshold = 5;
    c->breaker_cooldown_ms = 30000;
    c->breaker_cooldown_max_ms = 600000;
    c->backoff_base_ms = 2000;
    c->backoff_max_ms = 300000;
}

void host_shaper_init(host_shaper *h, const shaping_cfg *c, int64_t now_ms)
{
    h->active = 0;
    /* a burst of up to a sixth of a minute's budget, at least one */
    double burst = c->conns_per_min / 6.0;
    token_bucket_init(&h->connects, c->conns_per_min / 60.0, burst < 1 ? 1 : burst, now_ms);
    h->consecutive_failures = 0;
    h->breaker = BREAKER_CLOSED;
    h->open_until_ms = 0;
    h->cooldown_ms = c->breaker_cooldown_ms;
    h->probe_in_flight = false;
    h->paused_until_ms = 0;
}

void host_shaper_pause(host_shaper *h, int64_t until_ms)
{
    if (until_ms > h->paused_until_ms)
        h->paused_until_ms = until_ms;
}

int64_t host_shaper_acquire(host_shaper *h, const shaping_cfg *c, int64_t now_ms)
{
    if (now_ms < h->paused_until_ms)
        return h->paused_until_ms - now_ms;
    if (h->breaker == BREAKER_OPEN) {
        if (now_ms < h->open_until_ms)
            return h->open_until_ms - now_ms;
        h->breaker = BREAKER_HALF_OPEN;
        h->probe_in_flight = false;
    }
    if (h->breaker == BREAKER_HALF_OPEN && h->probe_in_flight)
        return SHAPER_FULL; /* the probe's release decides */
    if (h->active >= c->max_conns)
        return SHAPER_FULL;
    int64_t wait = token_bucket_wait_ms(&h->connects, now_ms);
    if (wait > 0)
        return wait;
    token_bucket_take(&h->connects, now_ms);
    if (h->breaker == BREAKER_HALF_OPEN)
        h->probe_in_flight = true;
    h->active++;
    return SHAPER_GO;
}

void host_shaper_release(host_shaper *h, const shaping_cfg *c, bool host_ok, int64_t now_ms)
{
    if (h->active > 0)
        h->active--;
    if (host_ok) {
        h->consecutive_failures = 0;
        h->breaker = BREAKER_CLOSED;
        h->cooldown_ms = c->breaker_cooldown_ms;
        h->probe_in_flight = false;
        return;
    }
    h->consecutive_failures++;
    if (h->breaker == BREAKER_HALF_OPEN) {
        h->cooldown_ms *= 2;
        if (h->cooldown_ms > c->breaker_cooldown_max_ms)
            h->cooldown_ms = c->breaker_cooldown_max_ms;
        h->breaker = BREAKER_OPEN;
        h->open_until_ms = now_ms + h->cooldown_ms;
        h->probe_in_flight = false;
    } else if (h->breaker == BREAKER_CLOSED && h->consecutive_failures >= c->breaker_threshold) {
        h->breaker = BREAKER_OPEN;
        h->open_until_ms = now_ms + h->cooldown_ms;
    }
}

int64_t backoff_delay_ms(const shaping_cfg *c, int attempt, double jitter01)
{
    int64_t d = c->backoff_base_ms;
    for (int i = 1; i < attempt && d < c->backoff_max_ms; i++)
        d *= 2;
    if (d > c->backoff_max_ms)
        d = c->backoff_max_ms;
    if (jitter01 < 0)
        jitter01 = 0;
    if (jitter01 >= 1)
        jitter01 = 0.999;
    return (int64_t)((double)d * (0.8 + 0.4 * jitter01));
}
