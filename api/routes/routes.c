/* The one route table of kiln-api: method + path pattern + allowed scopes -> handler.
 * http/router.c matches and authenticates; the handlers live beside this file, one file
 * per resource. tests/api/test_openapi.py reads routes[] to check api/openapi.yaml. */
#include "routes.h"

/* Tenant tokens reach only routes that filter by the token's user. */
#define TENANT_OR_ADMIN (SCOPE_ADMIN | SCOPE_TENANT)
/* Service-wide figures: admins and metric scrapers, not tenants. */
#define OBSERVER (SCOPE_ADMIN | SCOPE_METRICS)

static const route routes[] = {
    {"GET", "/healthz", 0, h_healthz},
    {"GET", "/metrics", SCOPE_ADMIN | SCOPE_METRICS, h_metrics_prometheus},
    {"GET", "/api/warmup/metrics", OBSERVER, h_warmup_metrics},
    {"GET", "/api/warmup/health", OBSERVER, h_warmup_health},
    {"GET", "/api/warmup/quota", TENANT_OR_ADMIN, h_warmup_quota},
    {"GET", "/api/warmup/mailbox", TENANT_OR_ADMIN, h_warmup_mailbox},
    {"GET", "/api/warmup/control", SCOPE_ADMIN, h_warmup_control_get},
    {"POST", "/api/warmup/control", SCOPE_ADMIN, h_warmup_control_post},
    {"POST", "/api/plans", SCOPE_ADMIN, h_plans_create},
    {"GET", "/api/plans", TENANT_OR_ADMIN, h_plans_list},
    {"GET", "/api/plans/{}", TENANT_OR_ADMIN, h_plans_get},
    {"PATCH", "/api/plans/{}", SCOPE_ADMIN, h_plans_patch},
    {"POST", "/api/users", SCOPE_ADMIN, h_users_create},
    {"GET", "/api/users", TENANT_OR_ADMIN, h_users_list},
    {"GET", "/api/users/{}", TENANT_OR_ADMIN, h_users_get},
    {"POST", "/api/mailboxes", TENANT_OR_ADMIN, h_mailboxes_create},
    {"GET", "/api/mailboxes", TENANT_OR_ADMIN, h_mailboxes_list},
    {"GET", "/api/mailboxes/{}", TENANT_OR_ADMIN, h_mailboxes_get},
    {"PATCH", "/api/mailboxes/{}", TENANT_OR_ADMIN, h_mailboxes_patch},
    {"DELETE", "/api/mailboxes/{}", TENANT_OR_ADMIN, h_mailboxes_delete},
    {"POST", "/api/mailboxes/{}/pause", TENANT_OR_ADMIN, h_mailboxes_pause},
    {"POST", "/api/mailboxes/{}/resume", TENANT_OR_ADMIN, h_mailboxes_resume},
    {"GET", "/api/mailboxes/{}/health", TENANT_OR_ADMIN, h_mailboxes_health},
    {"GET", "/api/mailboxes/{}/placement", TENANT_OR_ADMIN, h_mailboxes_placement},
    {"POST", "/api/agents", SCOPE_ADMIN, h_agents_create},
    {"GET", "/api/agents", SCOPE_ADMIN, h_agents_list},
    {"POST", "/api/tokens", SCOPE_ADMIN, h_tokens_create},
    {"GET", "/api/tokens", TENANT_OR_ADMIN, h_tokens_list},
    {"DELETE", "/api/tokens/{}", TENANT_OR_ADMIN, h_tokens_revoke},
    {"POST", "/api/webhooks", TENANT_OR_ADMIN, h_webhooks_create},
    {"GET", "/api/webhooks", TENANT_OR_ADMIN, h_webhooks_list},
    {"GET", "/api/webhooks/{}", TENANT_OR_ADMIN, h_webhooks_get},
    {"PATCH", "/api/webhooks/{}", TENANT_OR_ADMIN, h_webhooks_patch},
    {"DELETE", "/api/webhooks/{}", TENANT_OR_ADMIN, h_webhooks_delete},
    {"GET", "/api/webhooks/{}/deliveries", TENANT_OR_ADMIN, h_webhooks_deliveries},
    {"POST", "/api/agent/lease", SCOPE_AGENT, h_agent_lease},
    {"POST", "/api/agent/report", SCOPE_AGENT, h_agent_report},
    {"POST", "/api/agent/heartbeat", SCOPE_AGENT, h_agent_heartbeat},
    {"POST", "/api/agent/release", SCOPE_AGENT, h_agent_release},
};

const route_table routes_api = {routes, sizeof routes / sizeof routes[0]};
