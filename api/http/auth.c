/* Bearer-token authentication (see auth.h). */
#include "auth.h"

#include "rand.h"
#include "secret.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

static const db_stmt Q_TOKEN_BY_HASH = {
    "auth_token_by_hash",
    "SELECT id, scope, coalesce(user_id, 0), coalesce(agent_id, 0), hash FROM tokens "
    "WHERE hash = $1 AND revoked_at IS NULL"};

static const db_stmt Q_TOKEN_INSERT = {
    "auth_token_insert",
    "INSERT INTO tokens (scope, user_id, agent_id, hash) "
    "VALUES ($1::token_scope, nullif($2::bigint, 0), nullif($3::bigint, 0), $4) RETURNING id"};

/* A tenant's token carries its user's pool (which can move to another cell with it); the
 * cell's own tokens carry the cell's pool. A missing user keeps the cell's pool and the
 * insert below reports it. */
static const db_stmt Q_TOKEN_POOL = {
    "auth_token_pool", "SELECT coalesce((SELECT pool_id FROM users WHERE id = $1), $2)"};

int auth_resolve(http_req *rq)
{
    const char *h = rq->authorization;
    rq->auth.scope = SCOPE_NONE;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return -1;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    size_t n = strlen(tok);
    if (n < 16 || n > 128)
        return -1;
    char hash[65];
    sha256_hex(tok, n, hash);
    const char *params[] = {hash};
    PGresult *r = db_exec(rq->db, rq->pool, &Q_TOKEN_BY_HASH, 1, params);
    if (!r)
        return db_last_error(rq->db) == DB_UNAVAILABLE ? -2 : -1;
    if (PQntuples(r) != 1)
        return -1;
    /* The index lookup found it; compare the stored hash in constant time anyway so
     * the answer never depends on how much of a guess matched. */
    if (strlen(PQgetvalue(r, 0, 4)) != 64 || !ct_equal(PQgetvalue(r, 0, 4), hash, 64))
        return -1;
    const char *scope = PQgetvalue(r, 0, 1);
    rq->auth.token_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    rq->auth.user_id = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    rq->auth.agent_id = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    if (!strcmp(scope, "admin"))
        rq->auth.scope = SCOPE_ADMIN;
    else if (!strcmp(scope, "tenant"))
        rq->auth.scope = SCOPE_TENANT;
    else if (!strcmp(scope, "agent"))
        rq->auth.scope = SCOPE_AGENT;
    else if (!strcmp(scope, "metrics"))
        rq->auth.scope = SCOPE_METRICS;
    else
        return -1;
    return 0;
}

int64_t auth_token_create(db *d, arena *a, const char *scope, int64_t user_id, int64_t agent_id,
                          int64_t cell_pool, char *out, size_t outlen)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char uid[24], aid[24], cp[24];
    snprintf(uid, sizeof uid, "%lld", (long long)user_id);
    snprintf(aid, sizeof aid, "%lld", (long long)agent_id);
    snprintf(cp, sizeof cp, "%lld", (long long)cell_pool);
    const char *pp[] = {uid, cp};
    PGresult *pr = db_exec(d, a, &Q_TOKEN_POOL, 2, pp);
    if (!pr || PQntuples(pr) != 1)
        return -1;
    long long pool = strtoll(PQgetvalue(pr, 0, 0), NULL, 10);
    unsigned char raw[32];
    char tok[64];
    random_bytes(raw, sizeof raw);
    /* Pool 1 keeps the original "kiln_" (every token minted before pools is pool 1's). */
    size_t n = pool > 1 ? (size_t)snprintf(tok, sizeof tok, "kiln%lld_", pool)
                        : (size_t)snprintf(tok, sizeof tok, "kiln_");
    /* base64url of the 256 random bits: 43 characters, no padding */
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < sizeof raw; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            tok[n++] = b64[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        tok[n++] = b64[(acc << (6 - bits)) & 63];
    tok[n] = '\0';
    char hash[65];
    sha256_hex(tok, n, hash);
    const char *params[] = {scope, uid, aid, hash};
    PGresult *r = db_exec(d, a, &Q_TOKEN_INSERT, 4, params);
    if (!r || PQntuples(r) != 1)
        return -1;
    snprintf(out, outlen, "%s", tok);
    return strtoll(PQgetvalue(r, 0, 0), NULL, 10);
}
