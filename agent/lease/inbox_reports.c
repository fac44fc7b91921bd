/* Inbox events from the engine to the control plane (see inbox_leases.h): emit checks and
 * writes an event as its wire JSON, appends it to the spool under the lease of its inbox
 * and queues it; the control thread reports the queue in batches per lease once the
 * batch is durable, and acknowledges what the control plane took. An action's outcome
 * is taken once: a second one for the same id is refused at emit, and a replay sends
 * the first one's bytes again. */
#include "inbox_leases.h"

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_BACKOFF_FIRST_MS 500
#define REPORT_BACKOFF_MAX_MS 30000
#define ACTION_ID_KEEP_MS ((int64_t)10 * 60 * 1000)

static void push(queued_event **q, size_t *n, size_t *cap, const queued_event *e)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *q = xrealloc(*q, *cap * sizeof **q);
    }
    (*q)[(*n)++] = *e;
}

int inbox_leases_emit(void *arg, const feed_event *ev)
{
    inbox_leases *il = arg;
    char err[128];
    buf json = BUF_INIT;
    if (wire_inbox_event_json(ev, &json, err, sizeof err) < 0) {
        log_warn("inbox %lld: event refused: %s", (long long)ev->mailbox_id, err);
        atomic_fetch_add(&il->stats->inbox_events_refused, 1);
        return -1;
    }
    int rc = -1;
    const char *why = "for an inbox this agent does not hold";
    pthread_mutex_lock(&il->mu);
    inbox_lease *l =
        ev->mailbox_id == INT64_MIN ? NULL : i64map_getp(&il->lease_of, ev->mailbox_id);
    bool action = ev->type == FEED_EV_ACTION;
    if (l && action && i64map_has(&il->actions_done, ev->action_id)) {
        why = "a second outcome of one action";
    } else if (l) {
        queued_event q = {.queued_ms = clock_mono_ms()};
        snprintf(q.e.lease_id, sizeof q.e.lease_id, "%s", l->id);
        q.e.mailbox_id = ev->mailbox_id;
        q.e.action_id = action ? ev->action_id : 0;
        q.e.json_len = json.len;
        q.e.json = buf_steal(&json);
        q.seq = spool_append_inbox_event(il->sp, &q.e);
        if (q.seq) {
            if (action)
                i64map_put(&il->actions_done, ev->action_id, 0);
            push(&il->in, &il->nin, &il->incap, &q);
            rc = 0;
        } else {
            free(q.e.json);
            why = "larger than a spool record";
        }
    }
    pthread_mutex_unlock(&il->mu);
    buf_free(&json);
    if (rc == 0) {
        atomic_fetch_add(&il->stats->inbox_events, 1);
    } else {
        log_warn("inbox %lld: event refused: %s", (long long)ev->mailbox_id, why);
        atomic_fetch_add(&il->stats->inbox_events_refused, 1);
    }
    return rc;
}

static inbox_lease *lease_named(inbox_leases *il, const char *id)
{
    for (inbox_lease *l = il->head; l; l = l->next)
        if (!strcmp(l->id, id))
            return l;
    return NULL;
}

void inbox_reports_collect(inbox_leases *il, int64_t now)
{
    (void)now;
    pthread_mutex_lock(&il->mu);
    for (size_t i = 0; i < il->nin; i++) {
        queued_event *q = &il->in[i];
        inbox_lease *l = lease_named(il, q->e.lease_id);
        if (l)
            l->unreported++;
        /* the action is done: a later answer that still lists it must not redo it */
        if (q->e.action_id > 0) {
            held_inbox *h = i64map_getp(&il->held, q->e.mailbox_id);
            for (size_t k = 0; h && k < h->w->in.nactions; k++)
                if (h->w->actions[k].id == q->e.action_id) {
                    memmove(&h->w->actions[k], &h->w->actions[k + 1],
                            (h->w->in.nactions - k - 1) * sizeof h->w->actions[0]);
                    h->w->in.nactions--;
                    break;
                }
        }
        push(&il->q, &il->nq, &il->qcap, q);
    }
    il->nin = 0;
    pthread_mutex_unlock(&il->mu);
}

/* The control plane has q (or refused it for good): ack in the spool, off the lease. */
static void ack(inbox_leases *il, queued_event *q, int64_t wall_ms)
{
    spool_append_inbox_ack(il->sp, q->e.lease_id, q->e.key);
    inbox_lease *l = lease_named(il, q->e.lease_id);
    if (l && l->unreported)
        l->unreported--;
    if (q->e.action_id > 0) {
        pthread_mutex_lock(&il->mu);
        i64map_put(&il->actions_done, q->e.action_id, wall_ms);
        pthread_mutex_unlock(&il->mu);
    }
    free(q->e.json);
    q->e.json = NULL;
    q->seq = 0;
}

static void report_body(queued_event *const *batch, size_t n, buf *out)
{
    const char **ev = xcalloc(n, sizeof *ev);
    size_t *lens = xcalloc(n, sizeof *lens);
    for (size_t i = 0; i < n; i++) {
        ev[i] = batch[i]->e.json;
        lens[i] = batch[i]->e.json_len;
    }
    wire_inbox_report(out, batch[0]->e.lease_id, ev, lens, n);
    free(ev);
    free(lens);
}

/* One lease's batch. false: no answer (keep everything, back off). */
static bool report_batch(inbox_leases *il, control *ctl, queued_event **batch, size_t n)
{
    const char *lease_id = batch[0]->e.lease_id;
    /* each pass succeeds, drops one event, or gives up: at most n + 1 passes */
    for (size_t pass = 0; pass <= n && n > 0; pass++) {
        buf body = BUF_INIT;
        report_body(batch, n, &body);
        control_resp resp;
        int rc = control_post(ctl, WIRE_PATH_REPORT, body.data, body.len, &resp, il->abort);
        buf_free(&body);
        int64_t wall = clock_wall_ms();
        size_t bad = 0;
        if (rc < 0 || resp.status >= 500 || resp.status == 429) {
            log_warn("inbox report %s (%zu events): %s; kept in the spool", lease_id, n,
                     resp.error[0] ? resp.error : "no answer");
            atomic_fetch_add(&il->stats->inbox_report_failures, 1);
            control_resp_free(&resp);
            return false;
        }
        if (resp.status == 200) {
            wire_inbox_counts c;
            wire_inbox_report_answer_parse(resp.body.data ? resp.body.data : "", resp.body.len, &c);
            log_debug("inbox report %s: %zu events (applied %lld, duplicates %lld, ignored %lld)",
                      lease_id, n, (long long)c.applied, (long long)c.duplicates,
                      (long long)c.ignored);
            for (size_t i = 0; i < n; i++)
                ack(il, batch[i], wall);
            atomic_fetch_add(&il->stats->inbox_reported, (long long)n);
            atomic_store(&il->stats->last_report_unix_ms, wall);
            control_resp_free(&resp);
            return true;
        }
        if (resp.status == 400 && wire_report_bad_inbox_event(resp.err_field, &bad) && bad < n) {
            log_warn("inbox report %s: event %zu refused (%s); dropped: %.*s", lease_id, bad,
                     resp.error, (int)(batch[bad]->e.json_len > 300 ? 300 : batch[bad]->e.json_len),
                     batch[bad]->e.json);
            ack(il, batch[bad], wall);
            atomic_fetch_add(&il->stats->inbox_dropped, 1);
            /* an array of pointers: sizeof a pointer is meant */
            memmove(&batch[bad], &batch[bad + 1],
                    (n - bad - 1) * sizeof *batch); // NOLINT(bugprone-sizeof-expression)
            n--;
            control_resp_free(&resp);
            continue;
        }
        /* unknown or foreign lease, or input refused: retrying cannot help */
        log_error("inbox report %s: %s; %zu events dropped", lease_id, resp.error, n);
        for (size_t i = 0; i < n; i++)
            ack(il, batch[i], wall);
        atomic_fetch_add(&il->stats->inbox_dropped, (long long)n);
        control_resp_free(&resp);
        return true;
    }
    return true;
}

void inbox_reports_flush(inbox_leases *il, control *ctl, int64_t now, bool force)
{
    inbox_reports_collect(il, now);
    if (!il->nq || now < il->next_report_ms)
        return;
    size_t max = (size_t)il->cfg->report_batch;
    if (!force && il->nq < max && now - il->q[0].queued_ms < il->cfg->report_interval_ms)
        return;
    uint64_t max_seq = 0;
    for (size_t i = 0; i < il->nq; i++)
        if (il->q[i].seq > max_seq)
            max_seq = il->q[i].seq;
    if (spool_sync(il->sp, max_seq) < 0) {
        il->next_report_ms = now + 1000; /* not durable: do not report yet */
        return;
    }
    /* an array of pointers: sizeof a pointer is meant */
    queued_event **batch = xcalloc(max, sizeof *batch); // NOLINT(bugprone-sizeof-expression)
    bool failed = false;
    /* one lease at a time, oldest first; bounded by the queue length */
    for (size_t start = 0; start < il->nq && !failed;) {
        if (il->q[start].seq == 0) {
            start++;
            continue;
        }
        const char *lid = il->q[start].e.lease_id;
        size_t n = 0;
        for (size_t i = start; i < il->nq && n < max; i++)
            if (il->q[i].seq != 0 && !strcmp(il->q[i].e.lease_id, lid))
                batch[n++] = &il->q[i];
        failed = !report_batch(il, ctl, batch, n);
    }
    free(batch);
    size_t w = 0;
    for (size_t i = 0; i < il->nq; i++)
        if (il->q[i].seq != 0)
            il->q[w++] = il->q[i];
    il->nq = w;
    if (failed) {
        il->backoff_ms =
            backoff_next(il->backoff_ms, REPORT_BACKOFF_FIRST_MS, REPORT_BACKOFF_MAX_MS);
        il->next_report_ms = now + il->backoff_ms;
    } else {
        il->backoff_ms = 0;
        il->next_report_ms = now;
    }
}

void inbox_reports_prune(inbox_leases *il, int64_t now)
{
    (void)now;
    int64_t wall = clock_wall_ms();
    size_t it = 0, n = 0;
    int64_t key, val;
    pthread_mutex_lock(&il->mu);
    int64_t *old = xcalloc(i64map_count(&il->actions_done) + 1, sizeof *old);
    while (i64map_next(&il->actions_done, &it, &key, &val))
        if (val > 0 && wall - val > ACTION_ID_KEEP_MS)
            old[n++] = key;
    for (size_t i = 0; i < n; i++)
        i64map_del(&il->actions_done, old[i], &val);
    pthread_mutex_unlock(&il->mu);
    free(old);
}
