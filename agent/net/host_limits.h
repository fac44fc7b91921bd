/* Per destination (host:port) limits shared by every I/O thread, so the configured
 * caps hold for the agent as a whole: the shaper (concurrency cap, connect rate,
 * breaker, shaping.h) behind a mutex taken only to start and to end a connection,
 * and which threads wait for room. Which thread to wake is the caller's business. */
#ifndef KILN_NET_HOST_LIMITS_H
#define KILN_NET_HOST_LIMITS_H

#include "shaping.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct host_limits host_limits;
/* The table of every destination's limits; one per engine, freed with its hosts. */
typedef struct host_table host_table;

/* FNV-1a of host and port, for any table keyed by destination. */
uint32_t host_key_hash(const char *name, int port);

host_table *host_table_new(const shaping_cfg *cfg);
void host_table_free(host_table *t);
/* The destination's limits, created on first use (any thread). */
host_limits *host_table_get(host_table *t, const char *name, int port, int64_t now_ms);

/* SHAPER_GO (counted), SHAPER_FULL (thread marked as waiting) or ms to wait. */
int64_t host_limits_acquire(host_limits *h, int thread_id, int64_t now_ms);
/* A connection ended; returns the threads that waited for room (bit thread id % 64),
 * whose marks are cleared. */
uint64_t host_limits_release(host_limits *h, bool host_ok, int64_t now_ms);
/* No new connection to the destination before until_ms (host_shaper_pause). */
void host_limits_pause(host_limits *h, int64_t until_ms);

/* A destination's limits as its metrics show them (any thread). */
typedef struct host_limits_view {
    int active;  /* connections counted now */
    int breaker; /* enum breaker_state */
    bool paused; /* host_limits_pause holds new connections back now */
} host_limits_view;
void host_limits_look(host_limits *h, int64_t now_ms, host_limits_view *out);

#endif
