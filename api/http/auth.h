/* Bearer tokens: "kiln_" + 43 random base64url characters. Stored as SHA-256 hex;
 * looked up by hash and compared in constant time. */
#ifndef KILN_AUTH_H
#define KILN_AUTH_H

#include "http.h"

/* Resolves rq->authorization into rq->auth. Returns 0, -1 when missing/unknown
 * (401), or -2 when the database is unavailable (503). */
int auth_resolve(http_req *rq);
/* Creates a token; writes it (NUL-terminated) into out (≥ 64 bytes). Returns the
 * token id or -1 on database error. user_id/agent_id are 0 when not applicable. */
int64_t auth_token_create(db *d, arena *a, const char *scope, int64_t user_id, int64_t agent_id,
                          char *out, size_t outlen);

#endif
