/* The legacy /api/warmup paths the web app calls (quota, mailbox, control, health)
 * and the unauthenticated liveness probe /healthz. */
#include "app.h"
#include "config.h"
#include "routes.h"
#include "pgjson.h"
#include "stats.h"
#include "validate.h"

#include <stdlib.h>
#include <string.h>

#define TODAY_COLS                                                                                 \
    "id AS mailbox_id, user_id, address, state::text AS state, timezone, "                         \
    "local_day::text AS local_day, target, sent, failed, in_flight, "                              \
    "least(target, floor(target * window_elapsed)::int) AS due_now, "                              \
    "greatest(target - sent, 0) AS remaining, "                                                    \
    "CASE WHEN sent >= target THEN 'met' ELSE 'behind' END AS status, "                            \
    "sent < least(target, floor(target * window_elapsed)::int) AS behind_schedule, "               \
    "last_error, kiln_iso(last_send_at) AS last_send_at"

static const db_stmt Q_QUOTA = {
    "warmup_quota",
    "SELECT " TODAY_COLS " FROM mailbox_today WHERE id > $1 "
    "AND ($3::bigint = 0 OR user_id = $3) AND ($5::bigint = 0 OR user_id = $5) AND "
    "($4 = 'all' OR ($4 = 'behind' AND sent < target) OR ($4 = 'met' AND sent >= target)) "
    "ORDER BY id LIMIT $2"};
static const db_stmt Q_MAILBOX_TODAY = {
    "warmup_mailbox_today",
    "SELECT " TODAY_COLS ", kiln_iso(last_error_at) AS last_error_at "
    "FROM mailbox_today WHERE id = $1 AND ($2::bigint = 0 OR user_id = $2)"};
static const db_stmt Q_MAILBOX_DAYS = {
    "warmup_mailbox_days",
    "SELECT d.day::text AS day, kiln_mailbox_target(m, p, d.day) AS target, coalesce(md.sent, 0) "
    "AS sent, coalesce(md.failed, 0) AS failed, coalesce(md.replied, 0) AS replied "
    "FROM mailboxes m JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id "
    "CROSS JOIN LATERAL generate_series((kiln_now() AT TIME ZONE m.timezone)::date - 6, "
    "(kiln_now() AT TIME ZONE m.timezone)::date, interval '1 day') AS g(ts) "
    "CROSS JOIN LATERAL (SELECT g.ts::date AS day) d "
    "LEFT JOIN mailbox_days md ON md.mailbox_id = m.id AND md.day = d.day "
    "WHERE m.id = $1 ORDER BY d.day DESC"};
static const db_stmt Q_CONTROL_GET = {
    "control_get",
    "SELECT s.state::text AS state, kiln_iso(s.since) AS since, "
    "kiln_iso(s.last_trigger_at) AS last_trigger_at, s.trigger_count, "
    "(SELECT count(DISTINCT agent_id) FROM leases WHERE " STATS_LIVE_SEND_LEASE
    ") AS agents_active, "
    "(SELECT count(*) FROM agents WHERE last_seen_at > kiln_now() - interval '10 minutes') "
    "AS agents_seen_10m, "
    "(SELECT count(*) FROM leases WHERE " STATS_LIVE_SEND_LEASE ") AS leases_active, "
    "kiln_iso(kiln_now()) AS now FROM service s"};
static const db_stmt Q_CONTROL_START = {
    "control_start", "UPDATE service SET state = 'running', since = CASE WHEN state = 'running' "
                     "THEN since ELSE kiln_now() END"};
static const db_stmt Q_CONTROL_STOP = {
    "control_stop", "UPDATE service SET state = 'stopped', since = CASE WHEN state = 'stopped' "
                    "THEN since ELSE kiln_now() END"};
static const db_stmt Q_CONTROL_TRIGGER = {
    "control_trigger",
    "UPDATE service SET last_trigger_at = kiln_now(), trigger_count = trigger_count + 1"};
static const db_stmt Q_PING = {"healthz_ping", "SELECT 1"};

/* ?user_id= filter for admins; tenants are always limited to themselves. */
static bool user_filter(http_req *rq, http_resp *rs, int64_t *user)
{
    const char *u = http_query(rq, "user_id");
    *user = 0;
    if (u && !parse_canonical(u, strlen(u), 1, INT64_MAX, user)) {
        http_error(rs, 400, "invalid_query", "user_id must be a positive integer", "user_id");
        return false;
    }
    return true;
}

static void quota_list(http_req *rq, http_resp *rs, const char *status)
{
    int64_t limit, cursor, user;
    if (!v_page(rq, rs, 100, 1000, &limit, &cursor) || !user_filter(rq, rs, &user))
        return;
    const char *p[] = {http_i64(rq, cursor), http_i64(rq, limit + 1), http_i64(rq, http_tenant(rq)),
                       status, http_i64(rq, user)};
    PGresult *r = http_exec(rq, rs, &Q_QUOTA, 5, p);
    if (!r)
        return;
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "status", status);
    if (http_tenant(rq) == 0 && user == 0) {
        stats_snapshot s;
        if (stats_get(rq->app->stats, rq->db, rq->pool, &s)) {
            json_key(g, "summary");
            json_obj_open(g);
            json_kv_i(g, "mailboxes_active", s.mailboxes_active);
            json_kv_i(g, "target_today", s.target_today);
            json_kv_i(g, "sent_today", s.sent_today);
            json_kv_i(g, "due_now", s.due_now);
            json_kv_i(g, "behind", s.behind);
            json_kv_i(g, "met", s.met);
            json_kv_i(g, "queue_depth", s.queue_depth);
            json_kv_i(g, "as_of_ms", s.computed_at_ms);
            json_obj_close(g);
        }
    }
    json_key(g, "page");
    pgjson_page(g, r, limit);
    json_obj_close(g);
    json_gen_free(g);
}

void h_warmup_quota(http_req *rq, http_resp *rs)
{
    const char *status = http_query(rq, "status");
    if (!status)
        status = "all";
    if (strcmp(status, "all") != 0 && strcmp(status, "behind") != 0 && strcmp(status, "met") != 0) {
        http_error(rs, 400, "invalid_query", "status must be behind, met or all", "status");
        return;
    }
    quota_list(rq, rs, status);
}

void h_warmup_mailbox(http_req *rq, http_resp *rs)
{
    const char *ids = http_query(rq, "id");
    if (!ids) {
        quota_list(rq, rs, "all");
        return;
    }
    int64_t id;
    if (!parse_canonical(ids, strlen(ids), 1, INT64_MAX, &id)) {
        http_error(rs, 400, "invalid_query", "id must be a positive integer", "id");
        return;
    }
    const char *p[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq))};
    PGresult *r = http_exec(rq, rs, &Q_MAILBOX_TODAY, 2, p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", "no such mailbox", "id");
        return;
    }
    PGresult *days = http_exec(rq, rs, &Q_MAILBOX_DAYS, 1, p);
    if (!days)
        return;
    health_rows h;
    if (!health_fetch(rq, rs, id, &h))
        return;
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_key(g, "today");
    pgjson_row(g, r, 0);
    json_key(g, "last_7_days");
    json_arr_open(g);
    for (int i = 0; i < PQntuples(days); i++)
        pgjson_row(g, days, i);
    json_arr_close(g);
    /* Placement and health (issue 13): the object of GET /api/mailboxes/{id}/health. */
    json_key(g, "health");
    if (PQntuples(h.head) == 1)
        health_write(g, &h);
    else
        json_null(g);
    json_obj_close(g);
    json_gen_free(g);
}

static void control_state(http_req *rq, http_resp *rs, const char *action)
{
    PGresult *r = db_exec(rq->db, rq->pool, &Q_CONTROL_GET, 0, NULL);
    if (!r || PQntuples(r) != 1) {
        http_db_error(rs, rq->db);
        return;
    }
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    if (action)
        json_kv_s(g, "action", action);
    pgjson_members(g, r, 0, 0, PQnfields(r));
    json_obj_close(g);
    json_gen_free(g);
}

void h_warmup_control_get(http_req *rq, http_resp *rs)
{
    control_state(rq, rs, NULL);
}

void h_warmup_control_post(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"action", NULL};
    static const char *const actions[] = {"start", "stop", "trigger", NULL};
    yajl_val b = http_json_body(rq, rs);
    const char *action = NULL;
    if (!b || !v_known_fields(rs, b, fields, "") ||
        !v_enum(rs, b, "action", "action", V_REQUIRED, actions, &action))
        return;
    const db_stmt *st = !strcmp(action, "start")  ? &Q_CONTROL_START
                        : !strcmp(action, "stop") ? &Q_CONTROL_STOP
                                                  : &Q_CONTROL_TRIGGER;
    if (!db_exec(rq->db, rq->pool, st, 0, NULL)) {
        http_db_error(rs, rq->db);
        return;
    }
    control_state(rq, rs, action);
}

void h_warmup_health(http_req *rq, http_resp *rs)
{
    stats_snapshot s;
    if (!stats_get(rq->app->stats, rq->db, rq->pool, &s)) {
        http_db_error(rs, rq->db);
        return;
    }
    char reasons[HEALTH_MAX_REASONS][160];
    int n;
    double completion, failure;
    enum health_level h = stats_health(&s, reasons, &n, &completion, &failure);
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "status", health_name(h));
    json_kv_i(g, "level", h);
    json_key(g, "reasons");
    json_arr_open(g);
    for (int i = 0; i < n; i++)
        json_s(g, reasons[i]);
    json_arr_close(g);
    json_kv_d(g, "completion_vs_due", completion);
    json_kv_d(g, "failure_rate", failure);
    json_kv_i(g, "due_now", s.due_now);
    json_kv_i(g, "sent_today", s.sent_today);
    json_kv_i(g, "sent_today_active", s.sent_active);
    json_kv_i(g, "failed_today", s.failed_today);
    json_kv_i(g, "target_today", s.target_today);
    json_kv_i(g, "agents_active", s.agents_active);
    json_kv_b(g, "service_running", s.service_running);
    json_obj_close(g);
    json_gen_free(g);
}

void h_healthz(http_req *rq, http_resp *rs)
{
    PGresult *r = db_exec(rq->db, rq->pool, &Q_PING, 0, NULL);
    yajl_gen g = http_json(rs, r ? 200 : 503);
    json_obj_open(g);
    json_kv_s(g, "status", r ? "ok" : "unavailable");
    json_kv_s(g, "database", r ? "ok" : "unreachable");
    json_obj_close(g);
    json_gen_free(g);
}
