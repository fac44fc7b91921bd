/* Route matching and dispatch (see router.h); the table itself is routes/routes.c. */
#include "router.h"

#include "auth.h"

#include <string.h>

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

void router_dispatch(const route_table *t, http_req *rq, http_resp *rs)
{
    const route *found = NULL;
    bool path_known = false;
    for (size_t i = 0; i < t->n; i++) {
        if (!match(rq, t->routes[i].pattern, rq->path))
            continue;
        path_known = true;
        if (!strcmp(t->routes[i].method, rq->method) ||
            (!strcmp(rq->method, "HEAD") && !strcmp(t->routes[i].method, "GET"))) {
            found = &t->routes[i];
            break;
        }
    }
    if (!found) {
        if (path_known) {
            buf_puts(&rs->headers, "Allow: ");
            bool first = true;
            for (size_t i = 0; i < t->n; i++) {
                if (match(rq, t->routes[i].pattern, rq->path)) {
                    buf_printf(&rs->headers, "%s%s", first ? "" : ", ", t->routes[i].method);
                    if (!strcmp(t->routes[i].method, "GET"))
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
