/* The agent's side of the control-plane protocol (see agent_wire.h): request bodies through
 * the JSON generator, the small answers (heartbeat, error) as one tree each, the
 * result line and the report body. The lease document has its own file,
 * agent_wire_lease.c. */
#include "agent_wire.h"
#include "agent_wire_int.h"

#include "config.h"
#include "json.h"
#include "xalloc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wire_lease_request(buf *out, const char *agent_name, size_t max_mailboxes, size_t max_sends,
                        size_t max_inboxes, size_t inboxes_held, int64_t inbox_cursor)
{
    yajl_gen g = json_gen_new(out);
    json_obj_open(g);
    json_kv_s(g, "agent", agent_name);
    json_kv_i(g, "max_mailboxes", (int64_t)max_mailboxes);
    json_kv_i(g, "max_sends", (int64_t)max_sends);
    json_kv_i(g, "max_inboxes", (int64_t)max_inboxes);
    if (inboxes_held > 0)
        json_kv_i(g, "inboxes_held", (int64_t)inboxes_held);
    if (inbox_cursor > 0)
        json_kv_i(g, "inbox_cursor", inbox_cursor);
    json_obj_close(g);
    json_gen_free(g);
}

/* ---- the lease answer (the document is read by agent_wire_lease.c) ---- */

int wire_lease_parse(const char *data, size_t n, wire_lease **out, char *err, size_t errlen)
{
    struct lease_doc d;
    *out = NULL;
    wire_lease_doc_parse(data, n, &d, err, errlen);
    if (!d.syntax_ok || d.fault) {
        wire_lease_free(d.l);
        return -1;
    }
    *out = d.l;
    return 0;
}

void wire_lease_answer_parse(const char *data, size_t n, wire_lease_answer *out)
{
    struct lease_doc d;
    memset(out, 0, sizeof *out);
    wire_lease_doc_parse(data, n, &d, out->error, sizeof out->error);
    wire_lease *l = d.l;
    bool ok = d.syntax_ok && !d.fault;
    if (d.syntax_ok) {
        out->inbox_lease_off = d.inbox_off[0];
        out->inbox_lease_len = d.inbox_len[0];
        out->inboxes_off = d.inbox_off[1];
        out->inboxes_len = d.inbox_len[1];
    }
    if (ok && l->lease_id && l->lease_id[0] && (l->nmailboxes || l->nrejected)) {
        out->kind = WIRE_LEASE_WORK;
        out->lease = l;
        return;
    }
    if (d.syntax_ok && d.lease_id_seen && (d.lease_id_null || ok)) {
        out->kind = WIRE_LEASE_EMPTY;
        out->retry_after_s = l->retry_after_s;
        out->has_service = l->has_service;
        memcpy(out->service, l->service, sizeof out->service);
    } else {
        out->kind = WIRE_LEASE_UNUSABLE;
        out->inbox_lease_len = out->inboxes_len = 0;
        if (!out->error[0])
            snprintf(out->error, sizeof out->error, "lease_id: missing");
    }
    wire_lease_free(l);
}

/* ---- heartbeat and release ---- */

void wire_lease_id_body(buf *out, const char *lease_id)
{
    yajl_gen g = json_gen_new(out);
    json_obj_open(g);
    json_kv_s(g, "lease_id", lease_id);
    json_obj_close(g);
    json_gen_free(g);
}

/* The positive integers of an array member (others skipped); NULL when none. */
static int64_t *id_list(yajl_val t, const char *key, size_t *n)
{
    yajl_val a = json_get(t, key);
    *n = 0;
    if (!a || !YAJL_IS_ARRAY(a) || a->u.array.len == 0)
        return NULL;
    int64_t *ids = xcalloc(a->u.array.len, sizeof *ids);
    for (size_t i = 0; i < a->u.array.len; i++)
        if (json_int(a->u.array.values[i], 1, INT64_MAX, &ids[*n]))
            (*n)++;
    return ids;
}

/* A string member copied into a fixed array (truncated); false when absent. */
static bool copy_str(yajl_val obj, const char *key, char *out, size_t outlen)
{
    const char *v = json_str(json_get(obj, key));
    snprintf(out, outlen, "%s", v ? v : "");
    return v != NULL;
}

int wire_heartbeat_parse(const char *data, size_t n, wire_heartbeat *out)
{
    memset(out, 0, sizeof *out);
    char err[128];
    yajl_val t = json_parse(data, n, err, sizeof err);
    if (!t)
        return -1;
    int64_t ttl_s;
    if (json_int(json_get(t, "ttl_s"), 1, (int64_t)7 * 86400, &ttl_s))
        out->ttl_s = ttl_s;
    out->has_service = copy_str(t, "service", out->service, sizeof out->service);
    out->cancel = id_list(t, "cancel", &out->ncancel);
    out->inboxes_dropped = id_list(t, "inboxes_dropped", &out->ninboxes_dropped);
    yajl_tree_free(t);
    return 0;
}

void wire_heartbeat_free(wire_heartbeat *hb)
{
    free(hb->cancel);
    free(hb->inboxes_dropped);
    hb->cancel = hb->inboxes_dropped = NULL;
    hb->ncancel = hb->ninboxes_dropped = 0;
}

/* ---- results and reports ---- */

/* The engine's outcomes are the reportable statuses, in the same order. */
_Static_assert(SMTP_ST_DEFERRED - SMTP_ST_SENT == WIRE_DEFERRED - WIRE_SENT &&
                   SMTP_ST_FAILED - SMTP_ST_SENT == WIRE_FAILED - WIRE_SENT &&
                   SMTP_ST_AUTH - SMTP_ST_SENT == WIRE_AUTH - WIRE_SENT &&
                   SMTP_ST_TLS - SMTP_ST_SENT == WIRE_TLS - WIRE_SENT &&
                   SMTP_ST_UNKNOWN - SMTP_ST_SENT == WIRE_UNKNOWN - WIRE_SENT,
               "enum smtp_status outcomes follow enum wire_status");

const char *wire_status_of(int engine_status)
{
    if (engine_status < SMTP_ST_SENT || engine_status > SMTP_ST_UNKNOWN)
        return "pending";
    return wire_status_names[WIRE_SENT + (engine_status - SMTP_ST_SENT)];
}

/* The members every result carries, in the order of DESIGN.md. */
struct result_view {
    int64_t send_id;
    const char *status;
    int smtp_code; /* 0: null (no reply decided it) */
    const char *enhanced;
    const char *detail;
    int64_t latency_ms;
};

static void put_result(yajl_gen g, const struct result_view *r)
{
    json_kv_i(g, "send_id", r->send_id);
    json_kv_s(g, "status", r->status);
    if (r->smtp_code > 0)
        json_kv_i(g, "smtp_code", r->smtp_code);
    else
        json_kv_null(g, "smtp_code");
    if (r->enhanced[0])
        json_kv_s(g, "enhanced_code", r->enhanced);
    else
        json_kv_null(g, "enhanced_code");
    json_kv_s(g, "detail", r->detail);
    json_kv_i(g, "latency_ms", r->latency_ms);
}

void wire_result_json(const engine_result *r, buf *out)
{
    struct result_view v = {
        r->send_id, wire_status_of(r->status), r->smtp_code, r->enhanced, r->detail, r->latency_ms};
    yajl_gen g = json_gen_new(out);
    json_obj_open(g);
    put_result(g, &v);
    json_kv_i(g, "attempts", r->attempts);
    json_obj_close(g);
    json_gen_free(g);
}

void wire_report_begin(wire_report *w, buf *out, const char *lease_id)
{
    w->g = json_gen_new(out);
    json_obj_open(w->g);
    json_kv_s(w->g, "lease_id", lease_id);
    json_key(w->g, "results");
    json_arr_open(w->g);
}

void wire_report_add(wire_report *w, const spool_record *r)
{
    struct result_view v = {r->send_id,  r->status, r->smtp_code,
                            r->enhanced, r->detail, r->latency_ms};
    json_obj_open(w->g);
    put_result(w->g, &v);
    json_obj_close(w->g);
}

void wire_report_end(wire_report *w)
{
    json_arr_close(w->g);
    json_obj_close(w->g);
    json_gen_free(w->g);
    w->g = NULL;
}

bool wire_report_unknown_send(const char *code, const char *field, size_t *index)
{
    static const char pre[] = "results[", post[] = "].send_id";
    size_t n = strlen(field);
    if (strcmp(code, "unknown_send") != 0)
        return false;
    if (n <= sizeof pre - 1 + sizeof post - 1 || strncmp(field, pre, sizeof pre - 1) != 0 ||
        strcmp(field + n - (sizeof post - 1), post) != 0)
        return false;
    int64_t v;
    if (!parse_int(field + sizeof pre - 1, n - (sizeof pre - 1) - (sizeof post - 1), 0, 10000000,
                   &v))
        return false;
    *index = (size_t)v;
    return true;
}

/* ---- errors ---- */

void wire_error_parse(const char *data, size_t n, wire_error *out)
{
    memset(out, 0, sizeof *out);
    char err[64];
    yajl_val t = json_parse(data, n, err, sizeof err);
    yajl_val e = t ? json_get(t, "error") : NULL;
    copy_str(e, "code", out->code, sizeof out->code);
    copy_str(e, "field", out->field, sizeof out->field);
    out->has_message = copy_str(e, "message", out->message, sizeof out->message);
    if (t)
        yajl_tree_free(t);
}

void wire_lease_free(wire_lease *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->nmailboxes; i++)
        job_mailbox_free(l->mailboxes[i]);
    free(l->mailboxes);
    for (size_t i = 0; i < l->nrejected; i++)
        free(l->rejected[i].send_ids);
    free(l->rejected);
    free(l->lease_id);
    free(l);
}
