/* Every API handler: one function per route, grouped in one file per resource, and
 * the route table that maps requests to them (routes.c). A handler gets a parsed,
 * authenticated request and fills the response. */
#ifndef KILN_ROUTES_H
#define KILN_ROUTES_H

#include "router.h"

/* Every route of kiln-api, for router_dispatch(). */
extern const route_table routes_api;

/* h_registry.c: plans, users, agents, tokens */
void h_plans_create(http_req *rq, http_resp *rs);
void h_plans_list(http_req *rq, http_resp *rs);
void h_plans_get(http_req *rq, http_resp *rs);
void h_users_create(http_req *rq, http_resp *rs);
void h_users_list(http_req *rq, http_resp *rs);
void h_users_get(http_req *rq, http_resp *rs);
void h_agents_create(http_req *rq, http_resp *rs);
void h_agents_list(http_req *rq, http_resp *rs);
void h_tokens_create(http_req *rq, http_resp *rs);
void h_tokens_list(http_req *rq, http_resp *rs);
void h_tokens_revoke(http_req *rq, http_resp *rs);

/* h_mailboxes.c */
void h_mailboxes_create(http_req *rq, http_resp *rs);
void h_mailboxes_list(http_req *rq, http_resp *rs);
void h_mailboxes_get(http_req *rq, http_resp *rs);
void h_mailboxes_patch(http_req *rq, http_resp *rs);
void h_mailboxes_delete(http_req *rq, http_resp *rs);
void h_mailboxes_pause(http_req *rq, http_resp *rs);
void h_mailboxes_resume(http_req *rq, http_resp *rs);

/* h_health.c: mailbox health and placement */
void h_mailboxes_health(http_req *rq, http_resp *rs);
void h_mailboxes_placement(http_req *rq, http_resp *rs);
/* The health object (GET /api/mailboxes/{id}/health), also in /api/warmup/mailbox:
 * health_fetch runs the queries (false: answered with an error; head has no row: no
 * such mailbox for this token), health_write writes the object. */
typedef struct health_rows {
    PGresult *head; /* one row: the state, then the counts */
} health_rows;
bool health_fetch(http_req *rq, http_resp *rs, int64_t id, health_rows *out);
void health_write(yajl_gen g, const health_rows *h);

/* h_webhooks.c: webhook endpoints and their delivery log */
void h_webhooks_create(http_req *rq, http_resp *rs);
void h_webhooks_list(http_req *rq, http_resp *rs);
void h_webhooks_get(http_req *rq, http_resp *rs);
void h_webhooks_patch(http_req *rq, http_resp *rs);
void h_webhooks_delete(http_req *rq, http_resp *rs);
void h_webhooks_deliveries(http_req *rq, http_resp *rs);

/* h_warmup.c: the legacy /api/warmup paths and health */
void h_warmup_quota(http_req *rq, http_resp *rs);
void h_warmup_mailbox(http_req *rq, http_resp *rs);
void h_warmup_control_get(http_req *rq, http_resp *rs);
void h_warmup_control_post(http_req *rq, http_resp *rs);
void h_warmup_health(http_req *rq, http_resp *rs);
void h_healthz(http_req *rq, http_resp *rs);

/* h_metrics.c */
void h_metrics_prometheus(http_req *rq, http_resp *rs);
void h_warmup_metrics(http_req *rq, http_resp *rs);

/* h_agent.c: leasing (lease/ does the work) */
void h_agent_lease(http_req *rq, http_resp *rs);
void h_agent_report(http_req *rq, http_resp *rs);
void h_agent_heartbeat(http_req *rq, http_resp *rs);
void h_agent_release(http_req *rq, http_resp *rs);

#endif
