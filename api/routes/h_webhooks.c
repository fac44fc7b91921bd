/* Webhook endpoints of a tenant (issue 13): create (the server makes the secret, shown
 * once, sealed at rest like the SMTP secret), list, get, patch, delete, and the delivery
 * log. Tenant isolation as for mailboxes: another tenant's endpoint is a 404. Events are
 * emitted elsewhere (api/webhook/webhook.h, the trigger of migration 013) and delivered
 * by the worker (webhook_worker.c); docs/webhooks.md. */
#include "app.h"
#include "config.h"
#include "pgjson.h"
#include "routes.h"
#include "validate.h"
#include "webhook.h"
#include "webhook_sign.h"
#include "webhook_url.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Endpoints one user may have. */
#define WEBHOOK_MAX_ENDPOINTS 10

static const char *const WEBHOOK_CREATE_FIELDS[] = {"user_id", "url", "events", "active", NULL};
static const char *const WEBHOOK_PATCH_FIELDS[] = {"url", "events", "active", NULL};

#define WH_COLS                                                                                    \
    "w.id, w.user_id, w.url, array_to_string(w.events, ','), w.active, kiln_iso(w.created_at), "   \
    "kiln_iso(w.updated_at)"

static const db_stmt Q_WH_LOCK_USER = {"wh_lock_user",
                                       "SELECT id FROM users WHERE id = $1 FOR UPDATE"};
static const db_stmt Q_WH_COUNT = {"wh_count",
                                   "SELECT count(*) FROM webhook_endpoints WHERE user_id = $1"};
static const db_stmt Q_WH_INSERT = {
    "wh_insert", "WITH w AS (INSERT INTO webhook_endpoints (user_id, url, events, secret, active) "
                 "VALUES ($1, $2, $3::text[], $4::bytea, $5::bool) RETURNING *) "
                 "SELECT " WH_COLS " FROM w"};
static const db_stmt Q_WH_GET = {"wh_get",
                                 "SELECT " WH_COLS " FROM webhook_endpoints w "
                                 "WHERE w.id = $1 AND ($2::bigint = 0 OR w.user_id = $2)"};
static const db_stmt Q_WH_LIST = {
    "wh_list", "SELECT " WH_COLS " FROM webhook_endpoints w WHERE w.id > $1 "
               "AND ($3::bigint = 0 OR w.user_id = $3) AND ($4::bigint = 0 OR w.user_id = $4) "
               "ORDER BY w.id LIMIT $2"};
static const db_stmt Q_WH_UPDATE = {
    "wh_update",
    "WITH w AS (UPDATE webhook_endpoints SET url = coalesce($3, url), "
    "events = coalesce($4::text[], events), active = coalesce($5::bool, active), "
    "updated_at = kiln_now() WHERE id = $1 AND ($2::bigint = 0 OR user_id = $2) RETURNING *) "
    "SELECT " WH_COLS " FROM w"};
static const db_stmt Q_WH_DELETE = {"wh_delete",
                                    "DELETE FROM webhook_endpoints WHERE id = $1 "
                                    "AND ($2::bigint = 0 OR user_id = $2) RETURNING id"};
/* Newest first: the cursor is the last id shown, the next page has smaller ids. */
static const db_stmt Q_WH_DELIVERIES = {
    "wh_deliveries",
    "SELECT d.id, d.event_id, e.type AS event_type, e.mailbox_id, d.status::text AS status, "
    "d.attempts, d.last_code, d.last_error, kiln_iso(e.created_at) AS event_created_at, "
    "kiln_iso(d.created_at) AS created_at, kiln_iso(d.last_attempt_at) AS last_attempt_at, "
    "kiln_iso(d.next_attempt_at) AS next_attempt_at, kiln_iso(d.delivered_at) AS delivered_at "
    "FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id "
    "WHERE d.endpoint_id = $1 AND ($2::bigint = 0 OR d.id < $2) ORDER BY d.id DESC LIMIT $3"};

/* One endpoint row (WH_COLS) as JSON; secret (the plain one, only on a create) or NULL. */
static void webhook_json(yajl_gen g, const PGresult *r, int i, const char *secret)
{
    json_obj_open(g);
    pgjson_members(g, r, i, 0, 3); /* id, user_id, url */
    json_key(g, "events");
    json_arr_open(g);
    const char *ev = PQgetvalue(r, i, 3);
    while (*ev) {
        size_t n = strcspn(ev, ",");
        json_str_n(g, ev, n);
        ev += n + (ev[n] == ',');
    }
    json_arr_close(g);
    json_key(g, "active");
    pgjson_value(g, r, i, 4);
    if (secret)
        json_kv_s(g, "secret", secret);
    json_key(g, "created_at");
    pgjson_value(g, r, i, 5);
    json_key(g, "updated_at");
    pgjson_value(g, r, i, 6);
    json_obj_close(g);
}

static void respond_webhook(http_resp *rs, const PGresult *r, int status, const char *secret)
{
    yajl_gen g = http_json(rs, status);
    webhook_json(g, r, 0, secret);
    json_gen_free(g);
}

/* The validated fields of a create or patch; NULL / has_* false where absent. */
typedef struct webhook_input {
    const char *url;
    const char *events; /* PostgreSQL array literal */
    bool active, has_active;
} webhook_input;

/* "events": a non-empty array of distinct event names, as an array literal. */
static bool parse_events(http_req *rq, http_resp *rs, yajl_val v, const char **out)
{
    char field[32], msg[200];
    if (!YAJL_IS_ARRAY(v) || v->u.array.len == 0 || v->u.array.len > WEBHOOK_EVENT_COUNT) {
        http_error(rs, 400, "invalid_field",
                   "'events' must be a non-empty array of event names (omit it for all)", "events");
        return false;
    }
    bool seen[WEBHOOK_EVENT_COUNT] = {false};
    buf lit = BUF_INIT;
    buf_putc(&lit, '{');
    for (size_t i = 0; i < v->u.array.len; i++) {
        const char *s = json_str(v->u.array.values[i]);
        int e = s ? webhook_event_parse(s) : -1;
        snprintf(field, sizeof field, "events[%zu]", i);
        if (e < 0 || seen[e]) {
            snprintf(msg, sizeof msg,
                     e < 0 ? "'%s' must be one of: mailbox.paused, mailbox.error, "
                             "mailbox.health_changed, mailbox.inbox_error, "
                             "mailbox.inbox_failing"
                           : "'%s' repeats an event",
                     field);
            http_error(rs, 400, "invalid_field", msg, field);
            buf_free(&lit);
            return false;
        }
        seen[e] = true;
        buf_printf(&lit, "%s%s", i ? "," : "", webhook_event_name((enum webhook_event)e));
    }
    buf_putc(&lit, '}');
    *out = arena_strndup(rq->pool, lit.data, lit.len);
    buf_free(&lit);
    return true;
}

static bool parse_webhook(http_req *rq, http_resp *rs, yajl_val b, bool create, webhook_input *in)
{
    memset(in, 0, sizeof *in);
    if (!v_known_fields(rs, b, create ? WEBHOOK_CREATE_FIELDS : WEBHOOK_PATCH_FIELDS, "") ||
        !v_str(rs, b, "url", "url", create ? V_REQUIRED : 0, WEBHOOK_URL_MAX, false, &in->url) ||
        !v_bool(rs, b, "active", "active", 0, &in->active))
        return false;
    in->has_active = json_get(b, "active") != NULL;
    const char *why =
        in->url ? webhook_url_problem(in->url, rq->app->cfg.webhook_allow_http) : NULL;
    if (why) {
        http_error(rs, 400, "invalid_field", why, "url");
        return false;
    }
    yajl_val ev = json_get(b, "events");
    if (ev && !parse_events(rq, rs, ev, &in->events))
        return false;
    if (create && !in->events)
        in->events = "{mailbox.paused,mailbox.error,mailbox.health_changed,mailbox.inbox_error,"
                     "mailbox.inbox_failing}";
    return true;
}

/* The user a create is for: the tenant's own, or user_id (required) for an admin. */
static bool create_user(http_req *rq, http_resp *rs, yajl_val b, int64_t *user_id)
{
    int64_t tenant = http_tenant(rq), given = tenant;
    if (!v_int(rs, b, "user_id", "user_id", tenant ? 0 : V_REQUIRED, 1, INT64_MAX, &given))
        return false;
    if (tenant && given != tenant) {
        http_error(rs, 404, "not_found", "no such user", "user_id");
        return false;
    }
    *user_id = given;
    return true;
}

/* The cap counts after the user's row lock, in a statement of its own (as mailboxes do),
 * so parallel creates cannot pass it. */
static enum db_tx create_tx(http_req *rq, http_resp *rs, int64_t user_id, const webhook_input *in,
                            const char *secret, const char *sealed)
{
    const char *up[] = {http_i64(rq, user_id)};
    if (!db_begin(rq->db))
        return http_tx_fail(rq, rs);
    PGresult *u = db_exec(rq->db, rq->pool, &Q_WH_LOCK_USER, 1, up);
    PGresult *c = u && PQntuples(u) ? db_exec(rq->db, rq->pool, &Q_WH_COUNT, 1, up) : NULL;
    if (!u || (PQntuples(u) && !c))
        return http_tx_fail(rq, rs);
    if (PQntuples(u) == 0) {
        db_rollback(rq->db);
        http_error(rs, 422, "invalid_reference", "no user with this id", "user_id");
        return DB_TX_FAILED;
    }
    if (db_i64(c, 0, 0) >= WEBHOOK_MAX_ENDPOINTS) {
        db_rollback(rq->db);
        http_error(rs, 422, "limit_reached", "a user may have at most 10 webhook endpoints",
                   "user_id");
        return DB_TX_FAILED;
    }
    const char *p[] = {up[0], in->url, in->events, sealed,
                       in->has_active && !in->active ? "false" : "true"};
    PGresult *r = db_exec(rq->db, rq->pool, &Q_WH_INSERT, 5, p);
    if (!r || !db_commit(rq->db))
        return http_tx_fail(rq, rs);
    respond_webhook(rs, r, 201, secret);
    return DB_TX_OK;
}

typedef struct create_ctx {
    int64_t user_id;
    webhook_input in;
    const char *secret, *sealed;
} create_ctx;

static enum db_tx create_body(http_req *rq, http_resp *rs, void *ctx)
{
    create_ctx *c = ctx;
    return create_tx(rq, rs, c->user_id, &c->in, c->secret, c->sealed);
}

void h_webhooks_create(http_req *rq, http_resp *rs)
{
    yajl_val b = http_json_body(rq, rs);
    create_ctx c;
    if (!b || !v_known_fields(rs, b, WEBHOOK_CREATE_FIELDS, "") ||
        !create_user(rq, rs, b, &c.user_id) || !parse_webhook(rq, rs, b, true, &c.in))
        return;
    char secret[WEBHOOK_SECRET_LEN + 1];
    webhook_secret_new(secret);
    c.secret = secret;
    c.sealed = http_seal_secret(rq, secret, WEBHOOK_SECRET_AAD);
    if (!c.sealed) {
        http_error(rs, 500, "internal", "could not encrypt the secret", NULL);
        return;
    }
    http_tx(rq, rs, create_body, &c, "webhook endpoints are busy, retry");
    OPENSSL_cleanse(secret, sizeof secret);
}

void h_webhooks_list(http_req *rq, http_resp *rs)
{
    int64_t limit, cursor, user = 0;
    if (!v_page(rq, rs, 100, 1000, &limit, &cursor))
        return;
    const char *u = http_query(rq, "user_id");
    if (u && !parse_canonical(u, strlen(u), 1, INT64_MAX, &user)) {
        http_error(rs, 400, "invalid_query", "user_id must be a positive integer", "user_id");
        return;
    }
    const char *p[] = {http_i64(rq, cursor), http_i64(rq, limit + 1), http_i64(rq, http_tenant(rq)),
                       http_i64(rq, user)};
    PGresult *r = http_exec(rq, rs, &Q_WH_LIST, 4, p);
    if (!r)
        return;
    int n = PQntuples(r), shown = n > limit ? (int)limit : n;
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_key(g, "items");
    json_arr_open(g);
    for (int i = 0; i < shown; i++)
        webhook_json(g, r, i, NULL);
    json_arr_close(g);
    json_key(g, "next_cursor");
    if (n > limit)
        json_s(g, PQgetvalue(r, shown - 1, 0));
    else
        json_null(g);
    json_obj_close(g);
    json_gen_free(g);
}

/* The endpoint of path parameter 0 as the caller may see it; NULL with a 404 / error. */
static PGresult *endpoint_of_path(http_req *rq, http_resp *rs)
{
    int64_t id;
    if (!v_path_id(rq, rs, 0, &id))
        return NULL;
    const char *p[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq))};
    PGresult *r = http_exec(rq, rs, &Q_WH_GET, 2, p);
    if (r && PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", "no such webhook endpoint", NULL);
        return NULL;
    }
    return r;
}

void h_webhooks_get(http_req *rq, http_resp *rs)
{
    PGresult *r = endpoint_of_path(rq, rs);
    if (r)
        respond_webhook(rs, r, 200, NULL);
}

void h_webhooks_patch(http_req *rq, http_resp *rs)
{
    int64_t id;
    webhook_input in;
    if (!v_path_id(rq, rs, 0, &id))
        return;
    yajl_val b = http_json_body(rq, rs);
    if (!b || !parse_webhook(rq, rs, b, false, &in))
        return;
    const char *p[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq)), in.url, in.events,
                       in.has_active ? (in.active ? "true" : "false") : NULL};
    PGresult *r = http_exec(rq, rs, &Q_WH_UPDATE, 5, p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", "no such webhook endpoint", NULL);
        return;
    }
    respond_webhook(rs, r, 200, NULL);
}

void h_webhooks_delete(http_req *rq, http_resp *rs)
{
    http_delete_owned(rq, rs, &Q_WH_DELETE, "no such webhook endpoint");
}

void h_webhooks_deliveries(http_req *rq, http_resp *rs)
{
    int64_t limit, cursor;
    if (!v_page(rq, rs, 100, 1000, &limit, &cursor))
        return;
    PGresult *e = endpoint_of_path(rq, rs);
    if (!e)
        return;
    const char *p[] = {PQgetvalue(e, 0, 0), http_i64(rq, cursor), http_i64(rq, limit + 1)};
    PGresult *r = http_exec(rq, rs, &Q_WH_DELIVERIES, 3, p);
    if (!r)
        return;
    yajl_gen g = http_json(rs, 200);
    pgjson_page(g, r, limit);
    json_gen_free(g);
}
