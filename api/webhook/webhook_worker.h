/* The webhook delivery worker: threads inside `kiln-api serve` that claim due deliveries
 * (FOR UPDATE SKIP LOCKED, so any number of workers in any number of processes share the
 * queue), POST them with libcurl and record the outcome. It has its own PostgreSQL
 * connection and never runs on a request thread: a slow or hanging receiver delays only
 * deliveries, never an API answer. Why a thread and not a process: docs/webhooks.md. */
#ifndef KILN_WEBHOOK_WORKER_H
#define KILN_WEBHOOK_WORKER_H

#include "secret.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Read from KILN_WEBHOOK_* (webhook_config_load); the caller sets conninfo, key and
 * allow_http. Read-only while the worker runs. */
typedef struct webhook_config {
    const char *conninfo;
    const secret_key *key;      /* opens the endpoints' sealed secrets */
    bool allow_http;            /* KILN_WEBHOOK_ALLOW_HTTP: re-checked at every delivery */
    const char *ca_file;        /* KILN_WEBHOOK_CA_FILE: extra CA bundle, NULL = system's */
    int64_t workers;            /* KILN_WEBHOOK_WORKERS (1): threads; 0 = deliver nothing here */
    int64_t batch;              /* KILN_WEBHOOK_BATCH (16): deliveries in flight per thread */
    int64_t per_endpoint;       /* KILN_WEBHOOK_ENDPOINT_CONCURRENCY (4): of them to one endpoint */
    int64_t poll_ms;            /* KILN_WEBHOOK_POLL_MS (500): idle wait between claims */
    int64_t backoff_base_ms;    /* KILN_WEBHOOK_BACKOFF_BASE_MS (30,000) */
    int64_t backoff_max_ms;     /* KILN_WEBHOOK_BACKOFF_MAX_MS (6 h) */
    int64_t max_attempts;       /* KILN_WEBHOOK_MAX_ATTEMPTS (10), then 'failed' */
    int64_t connect_timeout_ms; /* KILN_WEBHOOK_CONNECT_TIMEOUT_MS (5,000) */
    int64_t timeout_ms;         /* KILN_WEBHOOK_TIMEOUT_MS (10,000), the whole request */
    int64_t retention_days;     /* KILN_WEBHOOK_RETENTION_DAYS (30): then events go */
} webhook_config;

/* Loads the KILN_WEBHOOK_* settings; returns -1 with a message in err. */
int webhook_config_load(webhook_config *c, char *err, size_t errlen);

typedef struct webhook_worker webhook_worker;

/* Starts c->workers threads (none when 0; the result is still valid). Call before other
 * threads use libcurl (it runs curl_global_init). NULL when a thread cannot start. */
webhook_worker *webhook_worker_start(const webhook_config *c);
/* Stops the threads and frees w. Requests still in flight are abandoned and their
 * deliveries made due again at once (a receiver may then see one twice). NULL is ok. */
void webhook_worker_stop(webhook_worker *w);

#endif
