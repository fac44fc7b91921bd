/* The table-driven router of kiln-api: method + path pattern + allowed scopes ->
 * handler. Unknown paths are 404, known paths with another method 405, a missing or
 * unknown token 401, a token of the wrong scope 403. The table is the caller's
 * (routes/routes.c): the router knows no handler. */
#ifndef KILN_ROUTER_H
#define KILN_ROUTER_H

#include "http.h"

#include <stddef.h>

/* A handler gets a parsed, authenticated request and fills the response. */
typedef void (*handler_fn)(http_req *rq, http_resp *rs);

typedef struct route {
    const char *method;
    const char *pattern; /* segments; "{}" matches one path segment, captured */
    int scopes;          /* 0 = no authentication */
    handler_fn fn;
} route;

typedef struct route_table {
    const route *routes;
    size_t n;
} route_table;

/* Authenticates and dispatches rq through t; always fills rs. */
void router_dispatch(const route_table *t, http_req *rq, http_resp *rs);

#endif
