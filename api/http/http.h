/* The request and response kiln-api handlers see. Handlers are pure-ish: they get a
 * parsed request (method, path params, query, JSON body, auth) and a DB handle and
 * fill a response; nothing here knows about FastCGI. */
#ifndef KILN_HTTP_H
#define KILN_HTTP_H

#include "arena.h"
#include "buf.h"
#include "db.h"
#include "json.h"
#include "tx.h"

#include <stdbool.h>
#include <stdint.h>

enum auth_scope {
    SCOPE_NONE = 0,
    SCOPE_ADMIN = 1 << 0,
    SCOPE_TENANT = 1 << 1,
    SCOPE_AGENT = 1 << 2,
    SCOPE_METRICS = 1 << 3,
};

typedef struct auth_ctx {
    enum auth_scope scope;
    int64_t token_id;
    int64_t user_id;  /* tenant tokens */
    int64_t agent_id; /* agent tokens */
} auth_ctx;

struct app; /* process-wide, read-only after start (config, key, stats snapshot) */

#define HTTP_MAX_PATH_PARAMS 4

/* One request. Everything hangs off pool and is freed with it. */
typedef struct http_req {
    arena *pool;
    const char *method;
    const char *path;
    const char *query; /* raw, without '?'; never NULL */
    const char *body;
    size_t body_len;
    const char *authorization; /* Authorization header or NULL */
    const char *params[HTTP_MAX_PATH_PARAMS];
    int nparams;
    auth_ctx auth;
    db *db;
    const struct app *app;
} http_req;

typedef struct http_resp {
    int status;
    const char *content_type;
    buf body;
    buf headers; /* extra header lines, each ending in \r\n */
} http_resp;

void http_resp_init(http_resp *rs);
void http_resp_free(http_resp *rs);
/* {"error":{"code":..,"message":..,"field":..}} with the given status. field may be NULL. */
void http_error(http_resp *rs, int status, const char *code, const char *message,
                const char *field);
/* Maps the db's last error to 503 / 409 / 400 / 500. */
void http_db_error(http_resp *rs, const db *d);
/* Starts a JSON body: returns a generator writing into rs->body; sets status and type. */
yajl_gen http_json(http_resp *rs, int status);
const char *http_reason(int status);

/* Query parameter value (percent-decoded, arena-owned) or NULL. */
const char *http_query(http_req *rq, const char *name);
/* False when the query string has a bad %-escape, a NUL or invalid UTF-8. */
bool http_query_valid(http_req *rq);
/* Parses the request body as a JSON object; on failure fills rs with a 400 and
 * returns NULL. The tree is freed with the request's arena. */
yajl_val http_json_body(http_req *rq, http_resp *rs);

/* The user a tenant token is limited to, or 0 for other scopes (no limit). */
int64_t http_tenant(const http_req *rq);
/* db_exec that, on failure, fills rs with the matching 503/409/422/400/500. */
PGresult *http_exec(http_req *rq, http_resp *rs, const db_stmt *st, int n,
                    const char *const *params);
/* Decimal text of v, arena-owned (for statement parameters). */
const char *http_i64(http_req *rq, int64_t v);
/* Seals secret under the server key with additional data aad (NULL: none); returns the
 * bytea hex literal for a statement parameter (arena-owned), NULL on failure. */
const char *http_seal_secret(http_req *rq, const char *secret, const char *aad);
/* Runs st with ($1 the path's id, $2 the tenant, 0 for admins): its result, or NULL when
 * answered already (bad id, database error, or 404 with `missing` when no row). */
PGresult *http_exec_owned(http_req *rq, http_resp *rs, const db_stmt *st, const char *missing);
/* DELETE /api/<things>/{id} of a tenant-owned row: st takes ($1 id, $2 tenant or 0) and
 * returns a row when it deleted one. 204, or 404 not_found with missing as the message
 * (a bad id is answered by v_path_id). */
void http_delete_owned(http_req *rq, http_resp *rs, const db_stmt *st, const char *missing);

/* A handler's transaction: db_begin to db_commit, filling rs. */
typedef enum db_tx (*http_tx_body)(http_req *rq, http_resp *rs, void *ctx);
/* Runs body through db_tx_run (DB_TX_ATTEMPTS), each attempt with a fresh response;
 * when every attempt conflicted, answers 503 "busy" with busy_message. */
void http_tx(http_req *rq, http_resp *rs, http_tx_body body, void *ctx, const char *busy_message);
/* Ends a failed transaction (db_tx_abort); unless it is retried, fills rs with the
 * database error (503 / 409 / 400 / 500). */
enum db_tx http_tx_fail(http_req *rq, http_resp *rs);

#endif
