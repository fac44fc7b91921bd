/* The agent endpoints: lease, report, heartbeat, release. This file is HTTP only:
 * bodies, the lease check (exists, is the caller's), answers; the work is lease/'s
 * (lease_grant, lease_report, lease_store). Rules: DESIGN.md "Leasing rules",
 * docs/leasing.md. */
#include "app.h"
#include "clock.h"
#include "inbox_grant.h"
#include "inbox_report.h"
#include "inbox_store.h"
#include "lease_grant.h"
#include "lease_report.h"
#include "lease_store.h"
#include "routes.h"
#include "validate.h"
#include "wire.h"

#include <ctype.h>
#include <string.h>

static bool valid_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* The "lease_id" member of body b, a UUID; fills a 400 otherwise. */
static const char *lease_id_of(http_resp *rs, yajl_val b)
{
    const char *id = NULL;
    if (!v_str(rs, b, "lease_id", "lease_id", V_REQUIRED, 36, false, &id))
        return NULL;
    if (!valid_uuid(id)) {
        http_error(rs, 400, "invalid_field", "'lease_id' must be a lease id (UUID)", "lease_id");
        return NULL;
    }
    return id;
}

/* Parses {"lease_id": "<uuid>"} bodies (heartbeat, release). */
static const char *lease_id_body(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"lease_id", NULL};
    yajl_val b = http_json_body(rq, rs);
    if (!b || !v_known_fields(rs, b, fields, ""))
        return NULL;
    return lease_id_of(rs, b);
}

/* Checks the lease exists and is the caller's; fills a 4xx otherwise. */
static bool lease_owned(http_req *rq, http_resp *rs, const char *lease_id, lease_info *info)
{
    if (!lease_store_get(rq->db, rq->pool, lease_id, info)) {
        http_db_error(rs, rq->db);
        return false;
    }
    if (!info->found) {
        http_error(rs, 404, "unknown_lease", "no such lease", "lease_id");
        return false;
    }
    if (info->agent_id != rq->auth.agent_id) {
        http_error(rs, 403, "foreign_lease", "this lease belongs to another agent", "lease_id");
        return false;
    }
    return true;
}

void h_agent_lease(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {
        "agent", "max_mailboxes", "max_sends", "max_inboxes", "inboxes_held", "inbox_cursor", NULL};
    lease_request req = {.max_mailboxes = 200, .max_sends = 2000, .started_us = clock_mono_us()};
    inbox_request inbox = {.max_inboxes = 0};
    int64_t held = 0, cursor = 0;
    yajl_val b = http_json_body(rq, rs);
    const char *agent = NULL;
    if (!b || !v_known_fields(rs, b, fields, "") ||
        !v_str(rs, b, "agent", "agent", 0, 100, false, &agent) ||
        !v_int(rs, b, "max_mailboxes", "max_mailboxes", 0, 1, WIRE_MAX_LEASE_MAILBOXES,
               &req.max_mailboxes) ||
        !v_int(rs, b, "max_sends", "max_sends", 0, 1, WIRE_MAX_LEASE_SENDS, &req.max_sends) ||
        !v_int(rs, b, "max_inboxes", "max_inboxes", 0, 0, WIRE_MAX_LEASE_INBOXES,
               &inbox.max_inboxes) ||
        !v_int(rs, b, "inboxes_held", "inboxes_held", 0, 0, 1000000, &held) ||
        !v_int(rs, b, "inbox_cursor", "inbox_cursor", 0, 1, INT64_MAX, &cursor))
        return;
    if (cursor > 0)
        inbox.cursor = db_i64_text(rq->pool, cursor);
    /* The inbox part first, in its own transaction (an independent lease); the send
     * grant renders both. An agent at its capacity (max_inboxes 0) that holds inboxes
     * gets them listed again with their new actions. */
    if (inbox.max_inboxes > 0 || held > 0) {
        http_tx(rq, rs, inbox_grant, &inbox, "inbox lease conflicted with concurrent work; retry");
        if (!inbox.ok)
            return;
        req.inbox = &inbox;
    }
    http_tx(rq, rs, lease_grant, &req, "lease conflicted with concurrent work; retry");
}

void h_agent_report(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"lease_id", "results", "inbox_events", NULL};
    yajl_val b = http_json_body(rq, rs);
    const char *lease_id = NULL;
    if (!b || !v_known_fields(rs, b, fields, "") || !(lease_id = lease_id_of(rs, b)))
        return;
    yajl_val events = json_get(b, "inbox_events");
    lease_info info;
    if (events) {
        /* A send lease reports results, an inbox lease inbox_events: one or the other. */
        if (json_get(b, "results")) {
            http_error(rs, 400, "invalid_field",
                       "a report carries 'results' or 'inbox_events', not both", "inbox_events");
            return;
        }
        inbox_event *ev = NULL;
        int n = 0;
        if (!inbox_events_parse(rq, rs, events, &ev, &n) || !lease_owned(rq, rs, lease_id, &info))
            return;
        inbox_report_apply(rq, rs, lease_id, ev, n);
        return;
    }
    lease_result *res = NULL;
    int n = 0;
    if (!lease_report_parse(rq, rs, json_get(b, "results"), &res, &n) ||
        !lease_owned(rq, rs, lease_id, &info))
        return;
    lease_report_apply(rq, rs, lease_id, res, n);
}

void h_agent_heartbeat(http_req *rq, http_resp *rs)
{
    const char *lease_id = lease_id_body(rq, rs);
    lease_info info;
    if (!lease_id || !lease_owned(rq, rs, lease_id, &info))
        return;
    lease_renewal rn;
    if (!lease_store_renew(rq->db, rq->pool, rq->auth.agent_id, lease_id, &rn)) {
        http_db_error(rs, rq->db);
        db_rollback(rq->db);
        return;
    }
    if (!rn.renewed) {
        http_error(rs, 409, info.expired ? "lease_expired" : "lease_ended",
                   info.expired ? "the lease expired; its unsent slots went back to the pool"
                                : "the lease was released or expired",
                   "lease_id");
        return;
    }
    /* An inbox lease: the inboxes to stop watching are given back now. */
    int64_t *dropped = NULL;
    int ndropped = 0;
    if (info.inbox &&
        !inbox_store_drop(rq->db, rq->pool, rq->auth.agent_id, lease_id, &dropped, &ndropped)) {
        http_db_error(rs, rq->db);
        db_rollback(rq->db);
        return;
    }
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "lease_id", lease_id);
    json_kv_s(g, "expires_at", rn.expires_at);
    json_kv_i(g, "ttl_s", rn.ttl_s);
    json_key(g, "cancel");
    json_arr_open(g);
    for (int i = 0; i < rn.ncancel; i++)
        json_i(g, rn.cancel[i]);
    json_arr_close(g);
    if (info.inbox) {
        json_key(g, "inboxes_dropped");
        json_arr_open(g);
        for (int i = 0; i < ndropped; i++)
            json_i(g, dropped[i]);
        json_arr_close(g);
    }
    json_kv_s(g, "service", rn.service);
    json_obj_close(g);
    json_gen_free(g);
}

void h_agent_release(http_req *rq, http_resp *rs)
{
    const char *lease_id = lease_id_body(rq, rs);
    lease_info info;
    if (!lease_id || !lease_owned(rq, rs, lease_id, &info))
        return;
    int64_t released = 0;
    bool ok = info.ended   ? true
              : info.inbox ? inbox_store_release(rq->db, rq->pool, lease_id, &released)
                           : lease_store_release(rq->db, rq->pool, lease_id, &released);
    if (!ok) {
        http_db_error(rs, rq->db);
        db_rollback(rq->db);
        return;
    }
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "lease_id", lease_id);
    json_kv_i(g, "released", released);
    json_kv_b(g, "already_ended", info.ended);
    json_obj_close(g);
    json_gen_free(g);
}
