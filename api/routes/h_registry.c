/* Plans, users (tenants), agents and tokens: registration and listing. Admin writes;
 * a tenant token reads plans and only its own user. */
#include "app.h"
#include "auth.h"
#include "engage.h"
#include "routes.h"
#include "pgjson.h"
#include "validate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A plan's, user's or agent's name: one line of text, at most this many characters (the
 * tables' CHECK counts characters too; openapi maxLength 100). */
#define NAME_MAX_CHARS 100

#define PLAN_COLS                                                                                  \
    "id, name, ramp_start, ramp_step, daily_max, cooldown_min_s, cooldown_max_s, "                 \
    "round(reply_rate::numeric, 4)::float8 AS reply_rate, weekdays_only, user_hourly_cap, "        \
    "user_minute_cap, max_mailboxes, "                                                             \
    "round(open_rate::numeric, 4)::float8 AS open_rate, "                                          \
    "round(important_rate::numeric, 4)::float8 AS important_rate, "                                \
    "round(rescue_rate::numeric, 4)::float8 AS rescue_rate, "                                      \
    "round(untouched_rate::numeric, 4)::float8 AS untouched_rate, dwell_median_min, "              \
    "dwell_max_min, quiet_start_hour, quiet_end_hour, retention_days, max_reply_depth, "           \
    "kiln_iso(created_at) AS created_at"

static const db_stmt Q_PLAN_INSERT = {
    "plan_insert",
    "INSERT INTO plans (name, ramp_start, ramp_step, daily_max, cooldown_min_s, cooldown_max_s, "
    "reply_rate, weekdays_only, user_hourly_cap, user_minute_cap, max_mailboxes, open_rate, "
    "important_rate, rescue_rate, untouched_rate, dwell_median_min, dwell_max_min, "
    "quiet_start_hour, quiet_end_hour, retention_days, max_reply_depth) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
    "$19, $20, $21) RETURNING " PLAN_COLS};
static const db_stmt Q_PLAN_LIST = {"plan_list", "SELECT " PLAN_COLS
                                                 " FROM plans WHERE id > $1 ORDER BY id LIMIT $2"};
static const db_stmt Q_PLAN_GET = {"plan_get", "SELECT " PLAN_COLS " FROM plans WHERE id = $1"};
/* A PATCH of the engagement members: NULL keeps the stored value. */
static const db_stmt Q_PLAN_PATCH = {
    "plan_patch",
    "UPDATE plans SET reply_rate = coalesce($2::real, reply_rate), "
    "open_rate = coalesce($3::real, open_rate), "
    "important_rate = coalesce($4::real, important_rate), "
    "rescue_rate = coalesce($5::real, rescue_rate), "
    "untouched_rate = coalesce($6::real, untouched_rate), "
    "dwell_median_min = coalesce($7::int, dwell_median_min), "
    "dwell_max_min = coalesce($8::int, dwell_max_min), "
    "quiet_start_hour = coalesce($9::int, quiet_start_hour), "
    "quiet_end_hour = coalesce($10::int, quiet_end_hour), "
    "retention_days = coalesce($11::int, retention_days), "
    "max_reply_depth = coalesce($12::int, max_reply_depth) WHERE id = $1 RETURNING " PLAN_COLS};

#define USER_COLS                                                                                  \
    "u.id, u.name, u.plan_id, u.timezone, u.state::text AS state, u.pool_id AS pool, "             \
    "(SELECT count(*) FROM mailboxes m WHERE m.user_id = u.id AND m.deleted_at IS NULL) "          \
    "AS mailboxes, kiln_iso(u.created_at) AS created_at"

static const db_stmt Q_USER_INSERT = {
    "user_insert", "WITH u AS (INSERT INTO users (name, plan_id, timezone, pool_id) "
                   "VALUES ($1, $2, $3, $4) RETURNING *) SELECT " USER_COLS " FROM u"};
static const db_stmt Q_USER_LIST = {
    "user_list", "SELECT " USER_COLS " FROM users u WHERE u.id > $1 AND ($3::bigint = 0 OR "
                 "u.id = $3) ORDER BY u.id LIMIT $2"};
static const db_stmt Q_USER_GET = {
    "user_get",
    "SELECT " USER_COLS " FROM users u WHERE u.id = $1 AND ($2::bigint = 0 OR u.id = $2)"};
static const db_stmt Q_PLAN_EXISTS = {"plan_exists", "SELECT 1 FROM plans WHERE id = $1"};

static const db_stmt Q_AGENT_INSERT = {
    "agent_insert",
    "INSERT INTO agents (name) VALUES ($1) RETURNING id, name, kiln_iso(created_at)"};
static const db_stmt Q_AGENT_LIST = {
    "agent_list", "SELECT a.id, a.name, kiln_iso(a.created_at) AS created_at, "
                  "kiln_iso(a.last_seen_at) AS last_seen_at, "
                  "(SELECT count(*) FROM leases l WHERE l.agent_id = a.id AND l.ended_at IS NULL "
                  " AND l.expires_at > kiln_now()) AS live_leases "
                  "FROM agents a WHERE a.id > $1 ORDER BY a.id LIMIT $2"};
static const db_stmt Q_USER_EXISTS = {"user_exists", "SELECT 1 FROM users WHERE id = $1"};

/* Tokens are listed without their hash; $3 limits a tenant to its own user's tokens. */
static const db_stmt Q_TOKEN_LIST = {
    "token_list", "SELECT id, scope::text AS scope, user_id, agent_id, "
                  "kiln_iso(created_at) AS created_at, kiln_iso(revoked_at) AS revoked_at "
                  "FROM tokens WHERE id > $1 AND ($3::bigint = 0 OR user_id = $3) "
                  "ORDER BY id LIMIT $2"};
/* auth_resolve reads the token row on every request, so a revoked token is refused from
 * the next request on, on every kiln-api process. */
static const db_stmt Q_TOKEN_REVOKE = {
    "token_revoke", "UPDATE tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL "
                    "AND ($2::bigint = 0 OR user_id = $2) RETURNING id"};

static void respond_one(http_resp *rs, const PGresult *r, int status)
{
    yajl_gen g = http_json(rs, status);
    pgjson_row(g, r, 0);
    json_gen_free(g);
}

static void respond_page(http_resp *rs, const PGresult *r, int64_t limit)
{
    yajl_gen g = http_json(rs, 200);
    pgjson_page(g, r, limit);
    json_gen_free(g);
}

/* The engagement plan's members (docs/design.md "Engagement plan"); defaults from
 * api/engage/engage.h, the same as migration 012's column defaults. */
typedef struct plan_engagement {
    double open, important, rescue, untouched;
    int64_t dwell_median_min, dwell_max_min, quiet_start, quiet_end, retention_days, depth;
} plan_engagement;

/* Validates the engagement members present in b into e; absent ones keep their value. */
static bool engagement_fields(http_resp *rs, yajl_val b, plan_engagement *e)
{
    return v_number(rs, b, "open_rate", "open_rate", 0, 0, 1, &e->open) &&
           v_number(rs, b, "important_rate", "important_rate", 0, 0, 0.5, &e->important) &&
           v_number(rs, b, "rescue_rate", "rescue_rate", 0, 0, 1, &e->rescue) &&
           v_number(rs, b, "untouched_rate", "untouched_rate", 0, 0, 0.5, &e->untouched) &&
           v_int(rs, b, "dwell_median_min", "dwell_median_min", 0, 1, 720, &e->dwell_median_min) &&
           v_int(rs, b, "dwell_max_min", "dwell_max_min", 0, 1, 1440, &e->dwell_max_min) &&
           v_int(rs, b, "quiet_start_hour", "quiet_start_hour", 0, 0, 23, &e->quiet_start) &&
           v_int(rs, b, "quiet_end_hour", "quiet_end_hour", 0, 0, 23, &e->quiet_end) &&
           v_int(rs, b, "retention_days", "retention_days", 0, 3, 365, &e->retention_days) &&
           v_int(rs, b, "max_reply_depth", "max_reply_depth", 0, 0, 5, &e->depth);
}

static void dwell_order_error(http_resp *rs)
{
    http_error(rs, 400, "invalid_field", "dwell_max_min must be >= dwell_median_min",
               "dwell_max_min");
}

static bool parse_engagement(http_resp *rs, yajl_val b, plan_engagement *e)
{
    *e = (plan_engagement){ENGAGE_DEFAULT_OPEN_RATE,        ENGAGE_DEFAULT_IMPORTANT_RATE,
                           ENGAGE_DEFAULT_RESCUE_RATE,      ENGAGE_DEFAULT_UNTOUCHED_RATE,
                           ENGAGE_DEFAULT_DWELL_MEDIAN_MIN, ENGAGE_DEFAULT_DWELL_MAX_MIN,
                           ENGAGE_DEFAULT_QUIET_START_HOUR, ENGAGE_DEFAULT_QUIET_END_HOUR,
                           ENGAGE_DEFAULT_RETENTION_DAYS,   ENGAGE_DEFAULT_MAX_REPLY_DEPTH};
    if (!engagement_fields(rs, b, e))
        return false;
    if (e->dwell_max_min < e->dwell_median_min) {
        dwell_order_error(rs);
        return false;
    }
    return true;
}

/* NAN / -1 mark a member the PATCH does not carry (every valid value is a share in
 * [0, 1] or a count >= 0): its parameter is NULL and the stored value stays. */
static const char *plan_share(http_req *rq, double v)
{
    return isnan(v) ? NULL : arena_printf(rq->pool, "%.6f", v);
}

static const char *plan_count(http_req *rq, int64_t v)
{
    return v < 0 ? NULL : http_i64(rq, v);
}

/* The ten engagement parameters in Q_PLAN_INSERT's and Q_PLAN_PATCH's order. */
static void engagement_params(http_req *rq, const plan_engagement *e, const char **out)
{
    out[0] = plan_share(rq, e->open);
    out[1] = plan_share(rq, e->important);
    out[2] = plan_share(rq, e->rescue);
    out[3] = plan_share(rq, e->untouched);
    out[4] = plan_count(rq, e->dwell_median_min);
    out[5] = plan_count(rq, e->dwell_max_min);
    out[6] = plan_count(rq, e->quiet_start);
    out[7] = plan_count(rq, e->quiet_end);
    out[8] = plan_count(rq, e->retention_days);
    out[9] = plan_count(rq, e->depth);
}

void h_plans_create(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"name",
                                         "ramp_start",
                                         "ramp_step",
                                         "daily_max",
                                         "cooldown_min_s",
                                         "cooldown_max_s",
                                         "reply_rate",
                                         "weekdays_only",
                                         "user_hourly_cap",
                                         "user_minute_cap",
                                         "max_mailboxes",
                                         "open_rate",
                                         "important_rate",
                                         "rescue_rate",
                                         "untouched_rate",
                                         "dwell_median_min",
                                         "dwell_max_min",
                                         "quiet_start_hour",
                                         "quiet_end_hour",
                                         "retention_days",
                                         "max_reply_depth",
                                         NULL};
    yajl_val b = http_json_body(rq, rs);
    if (!b || !v_known_fields(rs, b, fields, ""))
        return;
    const char *name = NULL;
    int64_t ramp_start = 0, ramp_step = 0, daily_max = 0, cmin = 120, cmax = 300, hourly = 500,
            minute = 20, maxmb = 100;
    double reply = ENGAGE_DEFAULT_REPLY_RATE;
    bool weekdays = false;
    plan_engagement e;
    if (!v_line_text(rs, b, "name", "name", V_REQUIRED, NAME_MAX_CHARS, false, &name) ||
        !v_int(rs, b, "ramp_start", "ramp_start", V_REQUIRED, 0, 10000, &ramp_start) ||
        !v_int(rs, b, "ramp_step", "ramp_step", V_REQUIRED, 0, 10000, &ramp_step) ||
        !v_int(rs, b, "daily_max", "daily_max", V_REQUIRED, 0, 10000, &daily_max) ||
        !v_int(rs, b, "cooldown_min_s", "cooldown_min_s", 0, 0, 86400, &cmin) ||
        !v_int(rs, b, "cooldown_max_s", "cooldown_max_s", 0, 0, 86400, &cmax) ||
        !v_number(rs, b, "reply_rate", "reply_rate", 0, 0, 1, &reply) ||
        !v_bool(rs, b, "weekdays_only", "weekdays_only", 0, &weekdays) ||
        !v_int(rs, b, "user_hourly_cap", "user_hourly_cap", 0, 0, 10000000, &hourly) ||
        !v_int(rs, b, "user_minute_cap", "user_minute_cap", 0, 0, 1000000, &minute) ||
        !v_int(rs, b, "max_mailboxes", "max_mailboxes", 0, 0, 1000000, &maxmb) ||
        !parse_engagement(rs, b, &e))
        return;
    if (cmax < cmin) {
        http_error(rs, 422, "invalid_field", "cooldown_max_s must be >= cooldown_min_s",
                   "cooldown_max_s");
        return;
    }
    const char *p[] = {name,
                       http_i64(rq, ramp_start),
                       http_i64(rq, ramp_step),
                       http_i64(rq, daily_max),
                       http_i64(rq, cmin),
                       http_i64(rq, cmax),
                       arena_printf(rq->pool, "%.6f", reply),
                       weekdays ? "true" : "false",
                       http_i64(rq, hourly),
                       http_i64(rq, minute),
                       http_i64(rq, maxmb),
                       NULL,
                       NULL,
                       NULL,
                       NULL,
                       NULL,
                       NULL,
                       NULL,
                       NULL,
                       NULL,
                       NULL};
    engagement_params(rq, &e, p + 11);
    PGresult *r = db_exec(rq->db, rq->pool, &Q_PLAN_INSERT, 21, p);
    if (!r) {
        if (db_last_error(rq->db) == DB_CONSTRAINT && !strcmp(db_sqlstate(rq->db), "23505"))
            http_error(rs, 409, "conflict", "a plan with this name already exists", "name");
        else
            http_db_error(rs, rq->db);
        return;
    }
    respond_one(rs, r, 201);
}

void h_plans_list(http_req *rq, http_resp *rs)
{
    int64_t limit, cursor;
    if (!v_page(rq, rs, 100, 1000, &limit, &cursor))
        return;
    const char *p[] = {http_i64(rq, cursor), http_i64(rq, limit + 1)};
    PGresult *r = http_exec(rq, rs, &Q_PLAN_LIST, 2, p);
    if (!r)
        return;
    respond_page(rs, r, limit);
}

void h_plans_get(http_req *rq, http_resp *rs)
{
    int64_t id;
    if (!v_path_id(rq, rs, 0, &id))
        return;
    const char *p[] = {http_i64(rq, id)};
    PGresult *r = http_exec(rq, rs, &Q_PLAN_GET, 1, p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", "no such plan", NULL);
        return;
    }
    respond_one(rs, r, 200);
}

void h_plans_patch(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"reply_rate",     "open_rate",        "important_rate",
                                         "rescue_rate",    "untouched_rate",   "dwell_median_min",
                                         "dwell_max_min",  "quiet_start_hour", "quiet_end_hour",
                                         "retention_days", "max_reply_depth",  NULL};
    int64_t id;
    if (!v_path_id(rq, rs, 0, &id))
        return;
    yajl_val b = http_json_body(rq, rs);
    if (!b || !v_known_fields(rs, b, fields, ""))
        return;
    double reply = NAN;
    plan_engagement e = {NAN, NAN, NAN, NAN, -1, -1, -1, -1, -1, -1};
    if (!v_number(rs, b, "reply_rate", "reply_rate", 0, 0, 1, &reply) ||
        !engagement_fields(rs, b, &e))
        return;
    if (e.dwell_median_min >= 0 && e.dwell_max_min >= 0 && e.dwell_max_min < e.dwell_median_min) {
        dwell_order_error(rs);
        return;
    }
    const char *p[12] = {http_i64(rq, id), plan_share(rq, reply)};
    engagement_params(rq, &e, p + 2);
    PGresult *r = db_exec(rq->db, rq->pool, &Q_PLAN_PATCH, 12, p);
    if (!r) {
        /* One member against the stored other: the dwell order (plans_dwell_order). */
        if (db_last_error(rq->db) == DB_CONSTRAINT && !strcmp(db_sqlstate(rq->db), "23514"))
            dwell_order_error(rs);
        else
            http_db_error(rs, rq->db);
        return;
    }
    if (PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", "no such plan", NULL);
        return;
    }
    respond_one(rs, r, 200);
}

void h_users_create(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"name", "plan_id", "timezone", NULL};
    yajl_val b = http_json_body(rq, rs);
    if (!b || !v_known_fields(rs, b, fields, ""))
        return;
    const char *name = NULL, *tz = "UTC";
    int64_t plan_id = 0;
    if (!v_line_text(rs, b, "name", "name", V_REQUIRED, NAME_MAX_CHARS, false, &name) ||
        !v_int(rs, b, "plan_id", "plan_id", V_REQUIRED, 1, INT64_MAX, &plan_id) ||
        !v_str(rs, b, "timezone", "timezone", 0, 64, false, &tz))
        return;
    if (!v_timezone(rs, rq->app, tz, "timezone"))
        return;
    const char *pid[] = {http_i64(rq, plan_id)};
    PGresult *e = http_exec(rq, rs, &Q_PLAN_EXISTS, 1, pid);
    if (!e)
        return;
    if (PQntuples(e) == 0) {
        http_error(rs, 422, "invalid_reference", "no plan with this id", "plan_id");
        return;
    }
    /* A tenant joins this cell's pool: the admin picks the cell by the admin token it
     * calls with (docs/scale.md "Past one primary: pools"). */
    const char *p[] = {name, pid[0], tz, http_i64(rq, rq->app->cfg.pool)};
    PGresult *r = db_exec(rq->db, rq->pool, &Q_USER_INSERT, 4, p);
    if (!r) {
        if (db_last_error(rq->db) == DB_CONSTRAINT && !strcmp(db_sqlstate(rq->db), "23505"))
            http_error(rs, 409, "conflict", "a user with this name already exists", "name");
        else
            http_db_error(rs, rq->db);
        return;
    }
    respond_one(rs, r, 201);
}

void h_users_list(http_req *rq, http_resp *rs)
{
    int64_t limit, cursor;
    if (!v_page(rq, rs, 100, 1000, &limit, &cursor))
        return;
    const char *p[] = {http_i64(rq, cursor), http_i64(rq, limit + 1),
                       http_i64(rq, http_tenant(rq))};
    PGresult *r = http_exec(rq, rs, &Q_USER_LIST, 3, p);
    if (!r)
        return;
    respond_page(rs, r, limit);
}

void h_users_get(http_req *rq, http_resp *rs)
{
    int64_t id;
    if (!v_path_id(rq, rs, 0, &id))
        return;
    const char *p[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq))};
    PGresult *r = http_exec(rq, rs, &Q_USER_GET, 2, p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", "no such user", NULL);
        return;
    }
    respond_one(rs, r, 200);
}

void h_agents_create(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"name", NULL};
    yajl_val b = http_json_body(rq, rs);
    const char *name = NULL;
    if (!b || !v_known_fields(rs, b, fields, "") ||
        !v_line_text(rs, b, "name", "name", V_REQUIRED, NAME_MAX_CHARS, false, &name))
        return;
    if (!db_begin(rq->db)) {
        http_db_error(rs, rq->db);
        return;
    }
    const char *p[] = {name};
    PGresult *r = db_exec(rq->db, rq->pool, &Q_AGENT_INSERT, 1, p);
    char token[80];
    int64_t agent_id = r ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    if (!r ||
        auth_token_create(rq->db, rq->pool, "agent", 0, agent_id, rq->app->cfg.pool, token,
                          sizeof token) < 0 ||
        !db_commit(rq->db)) {
        bool dup = db_last_error(rq->db) == DB_CONSTRAINT && !strcmp(db_sqlstate(rq->db), "23505");
        db_rollback(rq->db);
        if (dup)
            http_error(rs, 409, "conflict", "an agent with this name already exists", "name");
        else
            http_db_error(rs, rq->db);
        return;
    }
    yajl_gen g = http_json(rs, 201);
    json_obj_open(g);
    json_kv_i(g, "id", agent_id);
    json_kv_s(g, "name", PQgetvalue(r, 0, 1));
    json_kv_s(g, "created_at", PQgetvalue(r, 0, 2));
    json_kv_s(g, "token", token);
    json_obj_close(g);
    json_gen_free(g);
}

void h_agents_list(http_req *rq, http_resp *rs)
{
    int64_t limit, cursor;
    if (!v_page(rq, rs, 100, 1000, &limit, &cursor))
        return;
    const char *p[] = {http_i64(rq, cursor), http_i64(rq, limit + 1)};
    PGresult *r = http_exec(rq, rs, &Q_AGENT_LIST, 2, p);
    if (!r)
        return;
    respond_page(rs, r, limit);
}

void h_tokens_create(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"scope", "user_id", NULL};
    static const char *const scopes[] = {"admin", "tenant", "metrics", NULL};
    yajl_val b = http_json_body(rq, rs);
    const char *scope = NULL;
    int64_t user_id = 0;
    if (!b || !v_known_fields(rs, b, fields, "") ||
        !v_enum(rs, b, "scope", "scope", V_REQUIRED, scopes, &scope) ||
        !v_int(rs, b, "user_id", "user_id", 0, 1, INT64_MAX, &user_id))
        return;
    if ((strcmp(scope, "tenant") == 0) != (user_id != 0)) {
        http_error(rs, 422, "invalid_field",
                   user_id ? "user_id is only for tenant tokens" : "a tenant token needs user_id",
                   "user_id");
        return;
    }
    if (user_id) {
        const char *p[] = {http_i64(rq, user_id)};
        PGresult *e = http_exec(rq, rs, &Q_USER_EXISTS, 1, p);
        if (!e)
            return;
        if (PQntuples(e) == 0) {
            http_error(rs, 422, "invalid_reference", "no user with this id", "user_id");
            return;
        }
    }
    char token[80];
    int64_t id = auth_token_create(rq->db, rq->pool, scope, user_id, 0, rq->app->cfg.pool, token,
                                   sizeof token);
    if (id < 0) {
        http_db_error(rs, rq->db);
        return;
    }
    yajl_gen g = http_json(rs, 201);
    json_obj_open(g);
    json_kv_i(g, "id", id);
    json_kv_s(g, "scope", scope);
    if (user_id)
        json_kv_i(g, "user_id", user_id);
    json_kv_s(g, "token", token);
    json_obj_close(g);
    json_gen_free(g);
}

void h_tokens_list(http_req *rq, http_resp *rs)
{
    int64_t limit, cursor;
    if (!v_page(rq, rs, 100, 1000, &limit, &cursor))
        return;
    const char *p[] = {http_i64(rq, cursor), http_i64(rq, limit + 1),
                       http_i64(rq, http_tenant(rq))};
    PGresult *r = http_exec(rq, rs, &Q_TOKEN_LIST, 3, p);
    if (!r)
        return;
    respond_page(rs, r, limit);
}

/* An admin revokes any token (its own included); a tenant only its own user's, and
 * another's is a 404 as everywhere else. Revoking twice is a 404. */
void h_tokens_revoke(http_req *rq, http_resp *rs)
{
    int64_t id;
    if (!v_path_id(rq, rs, 0, &id))
        return;
    const char *p[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq))};
    PGresult *r = http_exec(rq, rs, &Q_TOKEN_REVOKE, 2, p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", "no such live token", NULL);
        return;
    }
    rs->status = 204;
    rs->content_type = NULL;
}
