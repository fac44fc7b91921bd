/* Route table and dispatch (see router.h). */
#include "router.h"

#include "auth.h"
#include "handlers.h"

#include <string.h>

/* Tenant tokens reach only routes that filter by the token's user. */
#define TENANT_OR_ADMIN (SCOPE_ADMIN | SCOPE_TENANT)
/* Service-wide figures: admins and metric scrapers, not tenants. */
#define OBSERVER (SCOPE_ADMIN | SCOPE_METRICS)

typedef struct route {
    const char *method;
    const char *pattern; /* segments; "{}" matches one path segment, captured */
    int scopes;          /* 0 = no authentication */
    handler_fn fn;
} route;

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
    {"POST", "/api/agents", SCOPE_ADMIN, h_agents_create},
    {"GET", "/api/agents", SCOPE_ADMIN, h_agents_list},
    {"POST", "/api/tokens", SCOPE_ADMIN, h_tokens_create},
    {"GET", "/api/tokens", TENANT_OR_ADMIN, h_tokens_list},
    {"DELETE", "/api/tokens/{}", TENANT_OR_ADMIN, h_tokens_revoke},
    {"POST", "/api/agent/lease", SCOPE_AGENT, h_agent_lease},
    {"POST", "/api/agent/report", SCOPE_AGENT, h_agent_report},
    {"POST", "/api/agent/heartbeat", SCOPE_AGENT, h_agent_heartbeat},
    {"POST", "/api/agent/release", SCOPE_AGENT, h_agent_release},
};

/* Matches path against pattern, capturing "{}" segments into rq->params. */
static bool match(http_req *rq, const char *pattern, const char *path)
{
    const char *p = pattern, *s = path;
    int n = 0;
    while (*p && *s) {
        if (p[0] == '{' && p[1] == '}') {
            const char *end = strchr(s, '/');
            size_t len = end ? (size_t)(end - s) : strlen(s);
            if (len == 0 || n >= HTTP_MAX_PATH_PARAMS)
                return false;
            rq->params[n++] = arena_strndup(rq->pool, s, len);
            s += len;
            p += 2;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    /* A single trailing slash is tolerated: "/api/plans/" is "/api/plans". */
    if (*p == '\0' && (*s == '\0' || (s[0] == '/' && s[1] == '\0'))) {
        rq->nparams = n;
        return true;
    }
    return false;
}

void router_dispatch(http_req *rq, http_resp *rs)
{
    const route *found = NULL;
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!match(rq, routes[i].pattern, rq->path))
            continue;
        path_known = true;
        if (!strcmp(routes[i].method, rq->method) ||
            (!strcmp(rq->method, "HEAD") && !strcmp(routes[i].method, "GET"))) {
            found = &routes[i];
            break;
        }
    }
    if (!found) {
        if (path_known) {
            buf_puts(&rs->headers, "Allow: ");
            bool first = true;
            for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
                if (match(rq, routes[i].pattern, rq->path)) {
                    buf_printf(&rs->headers, "%s%s", first ? "" : ", ", routes[i].method);
                    if (!strcmp(routes[i].method, "GET"))
                        buf_puts(&rs->headers, ", HEAD");
                    first = false;
                }
            }
            buf_puts(&rs->headers, "\r\n");
            http_error(rs, 405, "method_not_allowed", "method not allowed on this path", NULL);
        } else {
            http_error(rs, 404, "not_found", "no such endpoint", NULL);
        }
        return;
    }
    match(rq, found->pattern, rq->path); /* re-capture params of the chosen route */
    if (found->scopes) {
        int rc = auth_resolve(rq);
        if (rc == -2) {
            http_db_error(rs, rq->db);
            return;
        }
        if (rc != 0) {
            buf_puts(&rs->headers, "WWW-Authenticate: Bearer realm=\"kiln\"\r\n");
            http_error(rs, 401, "unauthorized", "a valid bearer token is required", NULL);
            return;
        }
        if (!(found->scopes & (int)rq->auth.scope)) {
            http_error(rs, 403, "forbidden", "this token's scope may not use this endpoint", NULL);
            return;
        }
    }
    found->fn(rq, rs);
    if (db_in_tx(rq->db))
        db_rollback(rq->db); /* a handler that bailed out mid-transaction */
}
