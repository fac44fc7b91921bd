/* POST /api/agent/lease as one transaction, in the order a send slot is born:
 * lease_store loads the picked mailboxes and the pool, lease_plan plans their slots
 * from unlocked cap counts, lease_store writes the grant and reserves the counters, lease_answer
 * renders the answer. */
#ifndef KILN_LEASE_GRANT_H
#define KILN_LEASE_GRANT_H

#include "http.h"
#include "inbox_grant.h"

#include <stdint.h>

typedef struct lease_request {
    int64_t max_mailboxes, max_sends;
    int64_t started_us; /* clock_mono_us() at the request's start, for the duration metric */
    const inbox_request *inbox; /* the inbox part, done first (NULL: not asked for) */
} lease_request;

/* One attempt of a lease call (an http_tx body; ctx is a lease_request). */
enum db_tx lease_grant(http_req *rq, http_resp *rs, void *ctx);

#endif
