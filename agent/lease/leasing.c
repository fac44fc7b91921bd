/* The lease loop's calls to the control plane (see leasing.h). The walk of a slot:
 * the lease answer is read by the wire module into job structs, handed to the engine
 * (engine_submit), and its result comes back through the report queue. */
#include "leasing.h"

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "agent_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_BACKOFF_FIRST_MS 1000
#define LEASE_BACKOFF_MAX_MS 30000

static int64_t heartbeat_every_ms(const lease_loop *lp, const lease *l)
{
    if (lp->cfg.heartbeat_s > 0)
        return (int64_t)lp->cfg.heartbeat_s * 1000;
    return l->ttl_s * 1000 / 3;
}

/* How many slots this agent may hold: what its sessions can send within a lease. */
static size_t capacity(const lease_loop *lp)
{
    if (lp->cfg.max_outstanding > 0)
        return (size_t)lp->cfg.max_outstanding;
    int64_t ttl = lp->last_ttl_s > 0 ? lp->last_ttl_s : 600;
    int64_t c = (int64_t)lp->cfg.concurrency * ttl / lp->cfg.session_s;
    return (size_t)(c > 50000 ? 50000 : c < 1 ? 1 : c);
}

static void spool_lease_mark(lease_loop *lp, int type, const char *lease_id)
{
    spool_record r;
    memset(&r, 0, sizeof r);
    r.type = type;
    snprintf(r.lease_id, sizeof r.lease_id, "%s", lease_id);
    spool_append(lp->sp, &r);
}

static void cancel_lease_slots(lease_loop *lp, lease *l)
{
    if (l->outstanding && l->nsends)
        engine_cancel(lp->e, l->sends, l->nsends);
}

/* Mailbox entries of a lease that failed validation are never sent: their slots go
 * back as failed, with the reason naming the field, so the control plane settles them
 * now instead of at the lease's expiry (and the others of the lease go out as usual). */
static void reject_entries(lease_loop *lp, const wire_lease *jl, int64_t now)
{
    for (size_t i = 0; i < jl->nrejected; i++) {
        const wire_rejected *rj = &jl->rejected[i];
        log_warn("lease %s: mailbox %lld not sent, its entry is invalid: %s (%zu slots failed)",
                 jl->lease_id, (long long)rj->mailbox_id, rj->reason, rj->nsend_ids);
        for (size_t k = 0; k < rj->nsend_ids; k++) {
            engine_result er;
            memset(&er, 0, sizeof er);
            er.send_id = rj->send_ids[k];
            er.mailbox_id = rj->mailbox_id;
            er.status = SMTP_ST_FAILED;
            snprintf(er.detail, sizeof er.detail, "not sent: invalid lease entry: %.128s",
                     rj->reason);
            report_queue_take(&lp->reports, &lp->leases, &er, now);
        }
    }
}

/* A lease with work: its slots into the send table, its mailboxes to the engine, its
 * rejected entries reported failed at once. Takes jl. */
static void grant(lease_loop *lp, wire_lease *jl, int64_t asked_ms, int64_t got_ms)
{
    lp->last_ttl_s = jl->ttl_s;
    lease *l = lease_table_add(&lp->leases, jl->lease_id, jl->ttl_s);
    l->next_hb_ms = got_ms + heartbeat_every_ms(lp, l);
    spool_lease_mark(lp, SPOOL_LEASE, l->id);
    size_t total = lease_table_grant(&lp->leases, l, jl);
    lp->stats.leases++;
    lp->stats.slots += (long long)total;
    lp->stats.last_lease_unix_ms = clock_wall_ms();
    /* not_before counts from when the answer came (never early); the deadline from
     * when it was asked for (never later than the server's expiry) */
    int64_t deadline = asked_ms + jl->ttl_s * 1000;
    for (size_t i = 0; i < jl->nmailboxes; i++) {
        engine_submit(lp->e, jl->mailboxes[i], got_ms, deadline, l->key);
        jl->mailboxes[i] = NULL;
    }
    log_info("lease %s: %zu mailboxes, %zu slots, ttl %lld s", l->id, jl->nmailboxes, total,
             (long long)jl->ttl_s);
    reject_entries(lp, jl, got_ms);
    wire_lease_free(jl);
}

/* POST /api/agent/lease and hand what comes to the engine. */
void leasing_lease(lease_loop *lp, int64_t now)
{
    size_t cap = capacity(lp);
    size_t room = cap > lp->leases.outstanding ? cap - lp->leases.outstanding : 0;
    size_t min_room = cap / 20 > 0 ? cap / 20 : 1;
    size_t max_inboxes = inbox_leases_room(&lp->inboxes);
    /* The inbox part of the answer lists the held inboxes with the actions due since the
     * last one. An agent with room asks for it in every request anyway; one at its
     * KILN_AGENT_MAX_INBOXES says how many it holds, every KILN_AGENT_INBOX_REFRESH_S,
     * or the actions of inboxes it already watches would never reach it. */
    size_t held = 0;
    if (max_inboxes > 0 || now >= lp->next_inbox_ms) {
        held = inbox_leases_held(&lp->inboxes);
        lp->next_inbox_ms = now + (int64_t)lp->cfg.inbox_refresh_s * 1000;
    }
    if (room < min_room && max_inboxes == 0 && held == 0) {
        lp->next_lease_ms = now + 250;
        return;
    }
    /* the request's minimum is one slot: asked for inboxes only, one slot more is fine */
    size_t max_sends = room < 1 ? 1 : room < WIRE_MAX_LEASE_SENDS ? room : WIRE_MAX_LEASE_SENDS;
    size_t max_mb = max_sends < WIRE_MAX_LEASE_MAILBOXES ? max_sends : WIRE_MAX_LEASE_MAILBOXES;
    buf body = BUF_INIT;
    wire_lease_request(&body, lp->cfg.name, max_mb, max_sends, max_inboxes,
                       max_inboxes > 0 ? 0 : held, lp->inboxes.cursor);
    control_resp resp;
    int64_t asked_ms = clock_mono_ms();
    int rc = control_post(lp->ctl, WIRE_PATH_LEASE, body.data, body.len, &resp, &lp->abort_http);
    buf_free(&body);
    int64_t got_ms = clock_mono_ms();
    if (rc < 0 || resp.status != 200) {
        lp->stats.lease_failures++;
        lp->lease_backoff_ms =
            backoff_next(lp->lease_backoff_ms, LEASE_BACKOFF_FIRST_MS, LEASE_BACKOFF_MAX_MS);
        log_warn("lease: %s; next try in %lld ms", resp.error[0] ? resp.error : "no answer",
                 (long long)lp->lease_backoff_ms);
        lp->next_lease_ms = got_ms + lp->lease_backoff_ms;
        control_resp_free(&resp);
        return;
    }
    lp->lease_backoff_ms = 0;
    wire_lease_answer ans;
    const char *doc = resp.body.data ? resp.body.data : "";
    wire_lease_answer_parse(doc, resp.body.len, &ans);
    wire_inbox_part part;
    wire_inbox_part_parse(doc, resp.body.len, &ans, &part);
    control_resp_free(&resp);
    inbox_leases_grant(&lp->inboxes, &part, asked_ms, got_ms);
    wire_inbox_part_free(&part);
    if (ans.kind != WIRE_LEASE_WORK) {
        int64_t retry = ans.retry_after_s;
        if (ans.kind == WIRE_LEASE_EMPTY) {
            log_debug("lease: nothing to send now (service %s); retry in %lld s",
                      ans.has_service ? ans.service : "?", (long long)retry);
            lp->stats.last_lease_unix_ms = clock_wall_ms();
        } else {
            log_error("lease: unusable answer: %s", ans.error);
            lp->stats.lease_failures++;
            retry = 30;
        }
        if (retry > lp->cfg.lease_idle_max_s)
            retry = lp->cfg.lease_idle_max_s;
        if (retry < 1)
            retry = 1;
        lp->next_lease_ms = got_ms + retry * 1000;
        return;
    }
    grant(lp, ans.lease, asked_ms, got_ms);
    /* full of slots (asked for inboxes only): not again at once */
    lp->next_lease_ms = got_ms + (room < min_room ? 5000 : 50);
}

static void lease_gone(lease_loop *lp, lease *l, const char *why)
{
    if (l->gone)
        return;
    log_warn("lease %s: %s; its unstarted slots are dropped", l->id, why);
    lp->stats.leases_lost++;
    l->gone = true;
    cancel_lease_slots(lp, l);
}

static void do_heartbeat(lease_loop *lp, lease *l, int64_t now)
{
    buf body = BUF_INIT;
    wire_lease_id_body(&body, l->id);
    control_resp resp;
    int64_t asked_ms = clock_mono_ms();
    int rc =
        control_post(lp->ctl, WIRE_PATH_HEARTBEAT, body.data, body.len, &resp, &lp->abort_http);
    buf_free(&body);
    if (rc < 0 || resp.status >= 500 || resp.status == 429) {
        log_warn("heartbeat %s: %s", l->id, resp.error[0] ? resp.error : "no answer");
        lp->stats.heartbeat_failures++;
        l->next_hb_ms = now + 5000;
        control_resp_free(&resp);
        return;
    }
    l->next_hb_ms = now + heartbeat_every_ms(lp, l);
    if (resp.status == 409 || resp.status == 404 || resp.status == 403) {
        lease_gone(lp, l, resp.error);
        control_resp_free(&resp);
        return;
    }
    if (resp.status != 200) {
        log_warn("heartbeat %s: %s", l->id, resp.error);
        control_resp_free(&resp);
        return;
    }
    wire_heartbeat hb;
    wire_heartbeat_parse(resp.body.data ? resp.body.data : "", resp.body.len, &hb);
    /* renewed: the engine may start sends until the new expiry (counted from when the
     * heartbeat was asked, never later than the server's) */
    if (hb.ttl_s > 0)
        engine_extend(lp->e, l->key, asked_ms + hb.ttl_s * 1000);
    if (hb.ncancel > 0) {
        engine_cancel(lp->e, hb.cancel, hb.ncancel);
        log_info("heartbeat %s: %zu slots cancelled (service %s)", l->id, hb.ncancel,
                 hb.has_service ? hb.service : "?");
    }
    if (hb.has_service && strcmp(hb.service, "running") != 0 && !lp->draining) {
        /* stopped: the lease answers are empty anyway; do not ask before the next beat */
        int64_t wait = heartbeat_every_ms(lp, l);
        if (lp->next_lease_ms < now + wait)
            lp->next_lease_ms = now + wait;
    }
    wire_heartbeat_free(&hb);
    control_resp_free(&resp);
}

/* Release leases with nothing left in the engine and nothing left to report. */
void leasing_release_idle(lease_loop *lp, int64_t now, bool all)
{
    lease *l = lp->leases.head;
    while (l) {
        struct lease *next = l->next;
        if ((l->outstanding == 0 || all) && l->unreported == 0 && now >= l->next_release_ms) {
            buf body = BUF_INIT;
            wire_lease_id_body(&body, l->id);
            control_resp resp;
            int rc = control_post(lp->ctl, WIRE_PATH_RELEASE, body.data, body.len, &resp,
                                  &lp->abort_http);
            buf_free(&body);
            bool done = rc == 0 && (resp.status == 200 || resp.status == 400 ||
                                    resp.status == 404 || resp.status == 403 || resp.status == 409);
            if (done) {
                spool_lease_mark(lp, SPOOL_RELEASED, l->id);
                if (l->outstanding == 0) {
                    log_debug("lease %s released", l->id);
                    lease_table_remove(&lp->leases, l);
                } else {
                    lease_gone(lp, l, "released while draining");
                }
            } else {
                l->next_release_ms = now + 5000;
                log_warn("release %s: %s", l->id, resp.error[0] ? resp.error : "no answer");
            }
            control_resp_free(&resp);
        }
        l = next;
    }
}

void leasing_replay(lease_loop *lp, const spool_replay *rep)
{
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < rep->nleases; i++)
        if (!lease_table_find(&lp->leases, rep->leases[i]))
            lease_table_add(&lp->leases, rep->leases[i], 600);
    for (size_t i = 0; i < rep->npending; i++) {
        const spool_record *r = &rep->pending[i];
        lease *l = lease_table_find(&lp->leases, r->lease_id);
        if (!l)
            l = lease_table_add(&lp->leases, r->lease_id, 600);
        report_queue_push(&lp->reports, r, 1, l, now - lp->cfg.report_interval_ms);
    }
    /* every lease of the previous run ends now: what it did not send goes back to the
     * pool at once instead of at its expiry (a restarted agent never re-sends) */
    for (lease *l = lp->leases.head; l; l = l->next)
        l->gone = true;
    if (rep->npending || rep->nleases)
        log_info("spool replay: %zu results to report (%zu records read, %zu bad skipped, %zu "
                 "torn bytes cut), %zu leases of the previous run to release",
                 rep->npending, rep->records, rep->bad_records, rep->torn_bytes, rep->nleases);
    else if (rep->bad_records || rep->torn_bytes)
        log_warn("spool replay: %zu bad records skipped, %zu torn bytes cut", rep->bad_records,
                 rep->torn_bytes);
}

void leasing_heartbeats(lease_loop *lp, int64_t now)
{
    for (lease *l = lp->leases.head; l; l = l->next)
        if (!l->gone && now >= l->next_hb_ms && !lp->draining)
            do_heartbeat(lp, l, now);
}
