/* Shared host limits (see host_limits.h). */
#include "host_limits.h"

#include "xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define HOST_TABLE_BUCKETS 1024

struct host_limits {
    char *name;
    int port;
    pthread_mutex_t mu;
    const shaping_cfg *cfg;
    host_shaper shaper;
    uint64_t waiters; /* bit (thread id % 64): a thread held back by SHAPER_FULL */
    struct host_limits *next;
};

struct host_table {
    pthread_mutex_t mu; /* the table (lookups), not the limits */
    shaping_cfg cfg;
    host_limits *buckets[HOST_TABLE_BUCKETS];
};

uint32_t host_key_hash(const char *name, int port)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return (h ^ (uint32_t)port) * 16777619u;
}

host_table *host_table_new(const shaping_cfg *cfg)
{
    host_table *t = xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    t->cfg = *cfg;
    return t;
}

void host_table_free(host_table *t)
{
    if (!t)
        return;
    for (uint32_t b = 0; b < HOST_TABLE_BUCKETS; b++)
        while (t->buckets[b]) {
            host_limits *x = t->buckets[b];
            t->buckets[b] = x->next;
            pthread_mutex_destroy(&x->mu);
            free(x->name);
            free(x);
        }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

host_limits *host_table_get(host_table *t, const char *name, int port, int64_t now_ms)
{
    host_limits **slot = &t->buckets[host_key_hash(name, port) % HOST_TABLE_BUCKETS];
    pthread_mutex_lock(&t->mu);
    host_limits *x = *slot;
    while (x && (x->port != port || strcmp(x->name, name) != 0))
        x = x->next;
    if (!x) {
        x = xcalloc(1, sizeof *x);
        x->name = xstrdup(name);
        x->port = port;
        x->cfg = &t->cfg;
        pthread_mutex_init(&x->mu, NULL);
        host_shaper_init(&x->shaper, x->cfg, now_ms);
        x->next = *slot;
        *slot = x;
    }
    pthread_mutex_unlock(&t->mu);
    return x;
}

int64_t host_limits_acquire(host_limits *h, int thread_id, int64_t now_ms)
{
    pthread_mutex_lock(&h->mu);
    int64_t rc = host_shaper_acquire(&h->shaper, h->cfg, now_ms);
    if (rc == SHAPER_FULL)
        h->waiters |= UINT64_C(1) << (thread_id % 64);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

uint64_t host_limits_release(host_limits *h, bool host_ok, int64_t now_ms)
{
    pthread_mutex_lock(&h->mu);
    host_shaper_release(&h->shaper, h->cfg, host_ok, now_ms);
    uint64_t waiters = h->waiters;
    h->waiters = 0;
    pthread_mutex_unlock(&h->mu);
    return waiters;
}

void host_limits_pause(host_limits *h, int64_t until_ms)
{
    pthread_mutex_lock(&h->mu);
    host_shaper_pause(&h->shaper, until_ms);
    pthread_mutex_unlock(&h->mu);
}

void host_limits_look(host_limits *h, int64_t now_ms, host_limits_view *out)
{
    pthread_mutex_lock(&h->mu);
    out->active = h->shaper.active;
    out->breaker = h->shaper.breaker;
    out->paused = now_ms < h->shaper.paused_until_ms;
    pthread_mutex_unlock(&h->mu);
}
