/* The lease loop's inbox side (see inbox_lease.h). */
#include "inbox_lease.h"

#include "agent_wire.h"
#include "agent_wire_inbox.h"
#include "backoff.h"
#include "log.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_BACKOFF_FIRST_MS 1000
#define REPORT_BACKOFF_MAX_MS 60000
#define REPORT_MAX_EVENTS 10000 /* openapi: inbox_events maxItems */
#define DRAIN_ENGINE_MS 5000

static void on_event(void *arg, const inbox_event *ev)
{
    inbox_lease *il = arg;
    pthread_mutex_lock(&il->mu);
    if (il->npending)
        buf_putc(&il->pending, ',');
    wire_inbox_event_json(ev, &il->pending);
    if (il->npending == il->ends_cap) {
        il->ends_cap = il->ends_cap ? 2 * il->ends_cap : 256;
        il->ends = xrealloc(il->ends, il->ends_cap * sizeof *il->ends);
    }
    il->ends[il->npending++] = il->pending.len;
    pthread_mutex_unlock(&il->mu);
}

int inbox_lease_start(inbox_lease *il, const agent_config *cfg, char *err, size_t errlen)
{
    memset(il, 0, sizeof *il);
    il->cfg = cfg;
    pthread_mutex_init(&il->mu, NULL);
    inbox_engine_config ec;
    inbox_engine_config_defaults(&ec);
    if (inbox_engine_config_from_env(&ec, err, errlen) < 0)
        return -1;
    if (ec.max_conns < (uint32_t)cfg->max_inboxes + 16)
        ec.max_conns = (uint32_t)cfg->max_inboxes + 16;
    il->ie = inbox_engine_create(&ec, on_event, il, err, errlen);
    return il->ie ? 0 : -1;
}

static bool knows(const inbox_lease *il, int64_t id)
{
    for (size_t i = 0; i < il->nmailboxes; i++)
        if (il->mailboxes[i] == id)
            return true;
    return false;
}

void inbox_lease_answer(inbox_lease *il, const char *data, size_t len, int64_t now)
{
    if (il->stopping || !memmem(data, len, "\"inbox_lease\"", 13))
        return;
    wire_inbox_lease wl;
    wire_inbox_lease_parse(data, len, &wl);
    if (!wl.present) {
        if (wl.error[0])
            log_error("inbox lease: unusable: %s", wl.error);
        wire_inbox_lease_free(&wl);
        return;
    }
    if (!il->held || strcmp(il->lease_id, wl.lease_id) != 0) {
        snprintf(il->lease_id, sizeof il->lease_id, "%s", wl.lease_id);
        il->held = true;
        il->released = false;
        log_info("inbox lease %s: %zu inboxes, ttl %lld s", il->lease_id, wl.ninboxes,
                 (long long)wl.ttl_s);
    }
    il->ttl_s = wl.ttl_s;
    il->heartbeat_ms = wl.heartbeat_s * 1000;
    if (!il->next_hb_ms || il->next_hb_ms > now + il->heartbeat_ms)
        il->next_hb_ms = now + il->heartbeat_ms;
    if (wl.nrejected)
        log_warn("inbox lease %s: %zu inbox entries set aside: %s", il->lease_id, wl.nrejected,
                 wl.error);
    for (size_t i = 0; i < wl.ninboxes; i++) {
        int64_t id = wl.inboxes[i]->mailbox_id;
        if (!knows(il, id)) {
            if (il->nmailboxes == il->mailbox_cap) {
                il->mailbox_cap = il->mailbox_cap ? 2 * il->mailbox_cap : 16;
                il->mailboxes = xrealloc(il->mailboxes, il->mailbox_cap * sizeof(int64_t));
            }
            il->mailboxes[il->nmailboxes++] = id;
        }
        inbox_engine_add(il->ie, wl.inboxes[i]); /* merged by mailbox id */
        wl.inboxes[i] = NULL;
    }
    wl.ninboxes = 0;
    wire_inbox_lease_free(&wl);
}

static void forget(inbox_lease *il, int64_t id)
{
    for (size_t i = 0; i < il->nmailboxes; i++)
        if (il->mailboxes[i] == id) {
            il->mailboxes[i] = il->mailboxes[--il->nmailboxes];
            return;
        }
}

/* The lease is gone (the server does not know it any more): stop every inbox of it. */
static void lease_lost(inbox_lease *il, const char *why)
{
    log_warn("inbox lease %s: %s; its %zu inboxes are dropped", il->lease_id, why, il->nmailboxes);
    atomic_fetch_add(&il->lost, 1);
    for (size_t i = 0; i < il->nmailboxes; i++)
        inbox_engine_drop(il->ie, il->mailboxes[i]);
    il->nmailboxes = 0;
    il->held = false;
    /* the control plane takes no event for a lease it does not know */
    pthread_mutex_lock(&il->mu);
    size_t lost = il->npending + il->nsending;
    buf_reset(&il->pending);
    il->npending = 0;
    pthread_mutex_unlock(&il->mu);
    buf_reset(&il->sending);
    il->nsending = 0;
    if (lost)
        log_warn("inbox lease %s: %zu unreported events dropped with it", il->lease_id, lost);
}

static void heartbeat(inbox_lease *il, control *ctl, int64_t now)
{
    buf body = BUF_INIT;
    wire_lease_id_body(&body, il->lease_id);
    control_resp resp;
    int rc = control_post(ctl, WIRE_PATH_HEARTBEAT, body.data, body.len, &resp, NULL);
    buf_free(&body);
    atomic_fetch_add(&il->heartbeats, 1);
    if (rc < 0 || resp.status >= 500 || resp.status == 429) {
        log_warn("inbox heartbeat %s: %s", il->lease_id, resp.error[0] ? resp.error : "no answer");
        il->next_hb_ms = now + 5000;
    } else if (resp.status == 404 || resp.status == 409 || resp.status == 403) {
        lease_lost(il, resp.error[0] ? resp.error : "unknown to the control plane");
    } else {
        il->next_hb_ms = now + il->heartbeat_ms;
        int64_t ttl, *dropped;
        size_t nd;
        if (resp.status == 200 &&
            wire_inbox_heartbeat_parse(resp.body.data ? resp.body.data : "", resp.body.len, &ttl,
                                       &dropped, &nd) == 0) {
            for (size_t i = 0; i < nd; i++) {
                log_info("inbox lease %s: mailbox %lld dropped by the control plane", il->lease_id,
                         (long long)dropped[i]);
                inbox_engine_drop(il->ie, dropped[i]);
                forget(il, dropped[i]);
            }
            free(dropped);
        }
    }
    control_resp_free(&resp);
}

/* Reports the events in a batch: at most REPORT_MAX_EVENTS, when report_batch are
 * waiting, the oldest is report_interval_ms old, or force. Kept for the next try when
 * the control plane does not answer; dropped when it refuses them for good. */
static void report(inbox_lease *il, control *ctl, int64_t now, bool force)
{
    if (!il->nsending) {
        pthread_mutex_lock(&il->mu);
        size_t n = il->npending;
        if (n && !il->first_pending_ms)
            il->first_pending_ms = now;
        bool due = n && (force || n >= (size_t)il->cfg->report_batch ||
                         now - il->first_pending_ms >= il->cfg->report_interval_ms);
        if (due) {
            /* the oldest events, at most a batch (and the wire's maximum) */
            size_t k = n;
            size_t cap = il->cfg->report_batch > 0 ? (size_t)il->cfg->report_batch : 1;
            if (k > cap)
                k = cap;
            if (k > REPORT_MAX_EVENTS)
                k = REPORT_MAX_EVENTS;
            size_t cut = il->ends[k - 1];
            buf_reset(&il->sending);
            buf_append(&il->sending, il->pending.data, cut);
            size_t rest = k < n ? cut + 1 : il->pending.len; /* the comma after it */
            buf_consume(&il->pending, rest);
            for (size_t i = k; i < n; i++)
                il->ends[i - k] = il->ends[i] - rest;
            il->nsending = k;
            il->npending = n - k;
            il->first_pending_ms = il->npending ? now : 0;
        }
        pthread_mutex_unlock(&il->mu);
    }
    if (!il->nsending || now < il->next_report_ms || !il->held)
        return;
    buf body = BUF_INIT;
    wire_inbox_report(&body, il->lease_id, il->sending.data, il->sending.len);
    control_resp resp;
    int rc = control_post(ctl, WIRE_PATH_REPORT, body.data, body.len, &resp, NULL);
    buf_free(&body);
    if (rc == 0 && resp.status == 200) {
        atomic_fetch_add(&il->reported, (long long)il->nsending);
        il->nsending = 0;
        buf_reset(&il->sending);
        il->report_backoff_ms = 0;
    } else if (rc == 0 && resp.status >= 400 && resp.status < 500 && resp.status != 429) {
        log_error("inbox report %s: refused (HTTP %ld: %s): %zu events dropped", il->lease_id,
                  resp.status, resp.error, il->nsending);
        atomic_fetch_add(&il->report_failures, 1);
        il->nsending = 0;
        buf_reset(&il->sending);
    } else {
        atomic_fetch_add(&il->report_failures, 1);
        il->report_backoff_ms =
            backoff_next(il->report_backoff_ms, REPORT_BACKOFF_FIRST_MS, REPORT_BACKOFF_MAX_MS);
        il->next_report_ms = now + il->report_backoff_ms;
        log_warn("inbox report %s: %s; next try in %lld ms", il->lease_id,
                 resp.error[0] ? resp.error : "no answer", (long long)il->report_backoff_ms);
    }
    control_resp_free(&resp);
}

void inbox_lease_tick(inbox_lease *il, control *ctl, int64_t now, bool draining)
{
    if (draining && !il->stopping) {
        il->stopping = true;
        inbox_engine_stop(il->ie, DRAIN_ENGINE_MS);
    }
    if (il->held && !il->stopping && now >= il->next_hb_ms)
        heartbeat(il, ctl, now);
    bool engine_over = il->stopping && inbox_engine_finished(il->ie);
    report(il, ctl, now, engine_over);
    if (engine_over && il->held && !il->nsending && !il->npending && !il->released) {
        buf body = BUF_INIT;
        wire_lease_id_body(&body, il->lease_id);
        control_resp resp;
        int rc = control_post(ctl, WIRE_PATH_RELEASE, body.data, body.len, &resp, NULL);
        buf_free(&body);
        if (rc == 0 && resp.status < 500) {
            il->released = true;
            log_info("inbox lease %s released", il->lease_id);
        }
        control_resp_free(&resp);
    }
}

bool inbox_lease_drained(inbox_lease *il)
{
    return il->stopping && inbox_engine_finished(il->ie) && !il->nsending && !il->npending &&
           (il->released || !il->held);
}

void inbox_lease_free(inbox_lease *il)
{
    inbox_engine_destroy(il->ie); /* joins its thread: no event comes after */
    il->ie = NULL;
    if (il->npending || il->nsending)
        log_warn("inbox lease %s: %zu events never reported", il->lease_id,
                 il->npending + il->nsending);
    buf_free(&il->pending);
    buf_free(&il->sending);
    free(il->ends);
    free(il->mailboxes);
    pthread_mutex_destroy(&il->mu);
}

void inbox_lease_metrics(inbox_lease *il, buf *out)
{
    inbox_engine_metrics(il->ie, out);
    buf_printf(out,
               "# HELP kiln_agent_inbox_events_reported_total Inbox events the control plane "
               "took.\n"
               "# TYPE kiln_agent_inbox_events_reported_total counter\n"
               "kiln_agent_inbox_events_reported_total %lld\n"
               "# HELP kiln_agent_inbox_report_failures_total Inbox reports not taken.\n"
               "# TYPE kiln_agent_inbox_report_failures_total counter\n"
               "kiln_agent_inbox_report_failures_total %lld\n"
               "# HELP kiln_agent_inbox_leases_lost_total Inbox leases the control plane no "
               "longer knew.\n"
               "# TYPE kiln_agent_inbox_leases_lost_total counter\n"
               "kiln_agent_inbox_leases_lost_total %lld\n",
               atomic_load(&il->reported), atomic_load(&il->report_failures),
               atomic_load(&il->lost));
}
