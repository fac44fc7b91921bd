/* Bearer tokens: "kiln<pool>_" + 43 random base64url characters, "kiln_" for pool 1 (as
 * every token before pools): the prefix lets nginx route a request to its pool's cell
 * without a lookup (nginx/README.md "Cells"). Stored as SHA-256 hex of the whole token,
 * prefix included, so an altered prefix is an unknown token; looked up by hash and
 * compared in constant time. */
#ifndef KILN_AUTH_H
#define KILN_AUTH_H

#include "http.h"

/* Resolves rq->authorization into rq->auth. Returns 0, -1 when missing/unknown
 * (401), or -2 when the database is unavailable (503). */
int auth_resolve(http_req *rq);
/* Creates a token; writes it (NUL-terminated) into out (≥ 64 bytes). Returns the
 * token id or -1 on database error. user_id/agent_id are 0 when not applicable. Its pool:
 * the user's for a tenant token, cell_pool (KILN_POOL) for the others. */
int64_t auth_token_create(db *d, arena *a, const char *scope, int64_t user_id, int64_t agent_id,
                          int64_t cell_pool, char *out, size_t outlen);

#endif
