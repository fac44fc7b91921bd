/* Traffic shaping per destination host, pure (time passed in): a cap on concurrent
 * connections, a token bucket on new connections per minute, exponential backoff
 * with jitter for retries, and a circuit breaker (closed -> open after N consecutive
 * host failures -> half-open single probe after a cooldown that doubles each time
 * the probe fails). */
#ifndef KILN_SHAPING_H
#define KILN_SHAPING_H

#include "token_bucket.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct shaping_cfg {
    int max_conns;                   /* concurrent connections per host */
    int conns_per_min;               /* new connections per minute per host */
    int breaker_threshold;           /* consecutive host failures that open the breaker */
    int64_t breaker_cooldown_ms;     /* first open period */
    int64_t breaker_cooldown_max_ms; /* cap of the doubling open period */
    int64_t backoff_base_ms;         /* first retry delay */
    int64_t backoff_max_ms;          /* cap of the doubling retry delay */
} shaping_cfg;

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

/* Per host, owned by the I/O thread that talks to it. */
typedef struct host_shaper {
    int active;
    token_bucket connects;
    int consecutive_failures;
    int breaker;
    int64_t open_until_ms;
    int64_t cooldown_ms;
    bool probe_in_flight;
    int64_t paused_until_ms; /* the host asked us to slow down ([THROTTLED], BYE) */
} host_shaper;

/* Defaults of the legacy notes: 100 connections, 200 connects/min per host. */
void shaping_cfg_defaults(shaping_cfg *c);
void host_shaper_init(host_shaper *h, const shaping_cfg *c, int64_t now_ms);

/* SHAPER_GO: a connection may start now (it is counted). SHAPER_FULL: at the
 * concurrency cap, wait for a release. Otherwise (>0): milliseconds to wait. */
#define SHAPER_GO 0
#define SHAPER_FULL (-1)
int64_t host_shaper_acquire(host_shaper *h, const shaping_cfg *c, int64_t now_ms);
/* A connection ended. host_ok is false when the host itself failed (refused, timed
 * out, dropped, 4xx/5xx greeting), not when it merely rejected a message. */
void host_shaper_release(host_shaper *h, const shaping_cfg *c, bool host_ok, int64_t now_ms);

/* The host asked for less (IMAP [THROTTLED], a BYE at login): no new connection
 * starts before until_ms (a later pause extends it, an earlier one changes nothing). */
void host_shaper_pause(host_shaper *h, int64_t until_ms);

/* Delay before retry number attempt (1-based): base * 2^(attempt-1), capped, then
 * scaled by jitter in [0.8, 1.2) taken from jitter01 in [0, 1). */
int64_t backoff_delay_ms(const shaping_cfg *c, int attempt, double jitter01);

#endif
