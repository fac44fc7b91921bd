/* The one table-driven router of kiln-api: method + path pattern + allowed scopes ->
 * handler. Unknown paths are 404, known paths with another method 405, a missing or
 * unknown token 401, a token of the wrong scope 403. */
#ifndef KILN_ROUTER_H
#define KILN_ROUTER_H

#include "http.h"

/* Authenticates and dispatches rq; always fills rs. */
void router_dispatch(http_req *rq, http_resp *rs);

#endif
