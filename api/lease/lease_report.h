/* POST /api/agent/report after the lease check: the results' validation, one
 * transaction (fenced by lease, idempotent by send id) through lease_store, and the
 * answer saying which results were applied and which were duplicates. */
#ifndef KILN_LEASE_REPORT_H
#define KILN_LEASE_REPORT_H

#include "http.h"

#include <stdbool.h>
#include <stdint.h>

/* One result as the agent sent it (DESIGN.md "Wire shapes"). */
typedef struct lease_result {
    int64_t send_id;
    const char *status; /* one of the reportable wire_status_names */
    int64_t smtp_code, latency_ms;
    bool has_code, has_latency;
    const char *enhanced, *detail;
    bool dup_in_batch; /* an earlier result of the batch has the same send_id */
} lease_result;

/* Validates the "results" member; on failure fills rs with a 400 and returns false. */
bool lease_report_parse(http_req *rq, http_resp *rs, yajl_val results, lease_result **out, int *n);
/* Applies n results to lease_id (the caller checked the lease is the agent's) and
 * answers; retries on conflicts. */
void lease_report_apply(http_req *rq, http_resp *rs, const char *lease_id, const lease_result *res,
                        int n);

#endif
