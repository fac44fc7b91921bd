/* Request/response helpers shared by all handlers (see http.h). */
#include "http.h"
#include "app.h"
#include "secret.h"
#include "validate.h"

#include "codec.h"

#include <string.h>

void http_resp_init(http_resp *rs)
{
    rs->status = 200;
    rs->content_type = "application/json";
    buf_init(&rs->body);
    buf_init(&rs->headers);
}

void http_resp_free(http_resp *rs)
{
    buf_free(&rs->body);
    buf_free(&rs->headers);
}

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

yajl_gen http_json(http_resp *rs, int status)
{
    buf_reset(&rs->body);
    rs->status = status;
    rs->content_type = "application/json";
    return json_gen_new(&rs->body);
}

void http_error(http_resp *rs, int status, const char *code, const char *message, const char *field)
{
    yajl_gen g = http_json(rs, status);
    json_obj_open(g);
    json_key(g, "error");
    json_obj_open(g);
    json_kv_s(g, "code", code);
    json_kv_s(g, "message", message);
    json_kv_s(g, "field", field);
    json_obj_close(g);
    json_obj_close(g);
    json_gen_free(g);
}

/* 503 busy: a transaction that lost to concurrent work; the client may retry at once
 * (openapi: every 503 busy carries Retry-After). */
static void busy(http_resp *rs, const char *message)
{
    buf_puts(&rs->headers, "Retry-After: 1\r\n");
    http_error(rs, 503, "busy", message, NULL);
}

void http_db_error(http_resp *rs, const db *d)
{
    switch (db_last_error(d)) {
    case DB_UNAVAILABLE:
        buf_puts(&rs->headers, "Retry-After: 5\r\n");
        http_error(rs, 503, "db_unavailable", "the database is unavailable; retry shortly", NULL);
        break;
    case DB_CONSTRAINT:
        if (!strcmp(db_sqlstate(d), "23505"))
            http_error(rs, 409, "conflict", "a resource with this unique value already exists",
                       NULL);
        else if (!strcmp(db_sqlstate(d), "23503"))
            http_error(rs, 422, "invalid_reference", "a referenced resource does not exist", NULL);
        else
            http_error(rs, 422, "constraint_violation", "the values violate a constraint", NULL);
        break;
    case DB_BAD_DATA:
        http_error(rs, 400, "bad_value", "a value is out of range or malformed", NULL);
        break;
    case DB_CONFLICT:
        busy(rs, "concurrent update conflict; retry");
        break;
    default:
        http_error(rs, 500, "internal", "internal error", NULL);
        break;
    }
}

/* Percent-decodes s[0..n) into the arena; '+' is a space. NULL on bad escapes/NUL. */
static char *url_decode(arena *a, const char *s, size_t n)
{
    char *out = arena_alloc(a, n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n)
                return NULL;
            int h = hex_value(s[i + 1]), l = hex_value(s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0))
                return NULL;
            *o++ = (char)(h << 4 | l);
            i += 2;
        } else {
            *o++ = (char)(s[i] == '+' ? ' ' : s[i]);
        }
    }
    *o = '\0';
    return out;
}

const char *http_query(http_req *rq, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = rq->query;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        if (klen == nlen && !memcmp(p, name, nlen)) {
            if (!eq)
                return "";
            char *v = url_decode(rq->pool, eq + 1, len - klen - 1);
            if (v && utf8_valid(v, strlen(v)))
                return v;
            return NULL;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

static void free_tree(void *v)
{
    yajl_tree_free((yajl_val)v);
}

yajl_val http_json_body(http_req *rq, http_resp *rs)
{
    if (rq->body_len == 0) {
        http_error(rs, 400, "empty_body", "a JSON object body is required", NULL);
        return NULL;
    }
    /* A body that does not open with '{' is refused unread, whatever follows. */
    size_t at = 0;
    while (at < rq->body_len && strchr(" \t\r\n", rq->body[at]) && rq->body[at])
        at++;
    if (at < rq->body_len && rq->body[at] != '{') {
        http_error(rs, 400, "not_an_object", "the body must be a JSON object", NULL);
        return NULL;
    }
    json_error err;
    yajl_val v = json_parse_checked(rq->body, rq->body_len, &err);
    if (!v) {
        const char *field = err.field[0] ? err.field : NULL;
        switch (err.fault) {
        case JSON_BAD_UTF8:
            http_error(rs, 400, "invalid_utf8", err.message, field);
            break;
        case JSON_BAD_TEXT:
        case JSON_DUP_KEY:
            http_error(rs, 400, "invalid_field", err.message, field);
            break;
        default: /* JSON_SYNTAX, JSON_TOO_DEEP */
            http_error(rs, 400, "malformed_json", err.message, NULL);
            break;
        }
        return NULL;
    }
    arena_cleanup_add(rq->pool, free_tree, v);
    if (!YAJL_IS_OBJECT(v)) {
        http_error(rs, 400, "not_an_object", "the body must be a JSON object", NULL);
        return NULL;
    }
    return v;
}

const char *http_i64(http_req *rq, int64_t v)
{
    return arena_printf(rq->pool, "%lld", (long long)v);
}

bool http_query_valid(http_req *rq)
{
    const char *p = rq->query;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *v = url_decode(rq->pool, p, len);
        if (!v || !utf8_valid(v, strlen(v)))
            return false;
        p = end ? end + 1 : p + len;
    }
    return true;
}

int64_t http_tenant(const http_req *rq)
{
    return rq->auth.scope == SCOPE_TENANT ? rq->auth.user_id : 0;
}

PGresult *http_exec(http_req *rq, http_resp *rs, const db_stmt *st, int n,
                    const char *const *params)
{
    PGresult *r = db_exec(rq->db, rq->pool, st, n, params);
    if (!r)
        http_db_error(rs, rq->db);
    return r;
}

typedef struct http_tx_call {
    http_req *rq;
    http_resp *rs;
    http_tx_body body;
    void *ctx;
} http_tx_call;

static enum db_tx http_tx_attempt(void *p)
{
    http_tx_call *c = p;
    http_resp_free(c->rs);
    http_resp_init(c->rs);
    return c->body(c->rq, c->rs, c->ctx);
}

void http_tx(http_req *rq, http_resp *rs, http_tx_body body, void *ctx, const char *busy_message)
{
    http_tx_call c = {rq, rs, body, ctx};
    if (db_tx_run(DB_TX_ATTEMPTS, http_tx_attempt, &c) == DB_TX_RETRY) {
        /* nothing of the last attempt's answer (its headers) stays */
        http_resp_free(rs);
        http_resp_init(rs);
        busy(rs, busy_message);
    }
}

enum db_tx http_tx_fail(http_req *rq, http_resp *rs)
{
    if (db_last_error(rq->db) != DB_CONFLICT)
        http_db_error(rs, rq->db);
    return db_tx_abort(rq->db);
}

PGresult *http_exec_owned(http_req *rq, http_resp *rs, const db_stmt *st, const char *missing)
{
    int64_t id;
    if (!v_path_id(rq, rs, 0, &id))
        return NULL;
    const char *p[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq))};
    PGresult *r = http_exec(rq, rs, st, 2, p);
    if (r && PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", missing, NULL);
        return NULL;
    }
    return r;
}

void http_delete_owned(http_req *rq, http_resp *rs, const db_stmt *st, const char *missing)
{
    if (!http_exec_owned(rq, rs, st, missing))
        return;
    rs->status = 204;
    rs->content_type = NULL;
}

const char *http_seal_secret(http_req *rq, const char *secret, const char *aad)
{
    buf sealed = BUF_INIT;
    if (secret_seal(&rq->app->key, secret, strlen(secret), aad, &sealed) != 0) {
        buf_free(&sealed);
        return NULL;
    }
    char *hex = arena_alloc(rq->pool, sealed.len * 2 + 3);
    hex[0] = '\\';
    hex[1] = 'x';
    hex_encode((unsigned char *)sealed.data, sealed.len, hex + 2);
    buf_free(&sealed);
    return hex;
}
