/* The report queue (see report_queue.h). */
#include "report_queue.h"

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "agent_wire.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_BACKOFF_FIRST_MS 500
#define REPORT_BACKOFF_MAX_MS 30000

void report_queue_init(report_queue *rq, spool *sp, loop_stats *stats, const agent_config *cfg,
                       const volatile bool *abort)
{
    memset(rq, 0, sizeof *rq);
    rq->sp = sp;
    rq->stats = stats;
    rq->cfg = cfg;
    rq->abort = abort;
}

void report_queue_free(report_queue *rq)
{
    free(rq->q);
    rq->q = NULL;
    rq->n = rq->cap = 0;
}

void report_queue_push(report_queue *rq, const spool_record *r, uint64_t seq, lease *l, int64_t now)
{
    if (rq->n == rq->cap) {
        rq->cap = rq->cap ? rq->cap * 2 : 1024;
        rq->q = xrealloc(rq->q, rq->cap * sizeof *rq->q);
    }
    rq->q[rq->n++] = (struct queued){*r, seq, now, l};
    l->unreported++;
}

/* One slot's final outcome: to the spool, then to the report queue. */
void report_queue_take(report_queue *rq, lease_table *t, const engine_result *er, int64_t now)
{
    lease *l = lease_table_take(t, er->send_id);
    if (!l) {
        log_warn("result for send %lld that no lease holds", (long long)er->send_id);
        return;
    }
    l->outstanding--;
    t->outstanding--;
    if (er->cancelled)
        return; /* never started: the server cancelled, expired or released it */
    spool_record r;
    memset(&r, 0, sizeof r);
    r.type = SPOOL_OUTCOME;
    snprintf(r.lease_id, sizeof r.lease_id, "%s", l->id);
    r.send_id = er->send_id;
    r.mailbox_id = er->mailbox_id;
    snprintf(r.status, sizeof r.status, "%s", wire_status_of(er->status));
    r.smtp_code = er->smtp_code;
    snprintf(r.enhanced, sizeof r.enhanced, "%s", er->enhanced);
    snprintf(r.detail, sizeof r.detail, "%s", er->detail);
    r.latency_ms = er->latency_ms;
    r.attempts = er->attempts;
    report_queue_push(rq, &r, spool_append(rq->sp, &r), l, now);
}

static void ack(report_queue *rq, struct queued *q)
{
    spool_record r;
    memset(&r, 0, sizeof r);
    r.type = SPOOL_ACK;
    snprintf(r.lease_id, sizeof r.lease_id, "%s", q->r.lease_id);
    r.send_id = q->r.send_id;
    spool_append(rq->sp, &r);
    q->lease->unreported--;
    q->seq = 0; /* marks done */
}

static void report_body(struct queued *const *batch, size_t n, const char *lease_id, buf *out)
{
    wire_report w;
    wire_report_begin(&w, out, lease_id);
    for (size_t i = 0; i < n; i++)
        wire_report_add(&w, &batch[i]->r);
    wire_report_end(&w);
}

/* Reports one lease's batch; drops ids the server does not know and resends the rest.
 * Returns false when the control plane did not answer (keep everything, back off). */
static bool report_batch(report_queue *rq, control *ctl, struct queued **batch, size_t n)
{
    const char *lease_id = batch[0]->r.lease_id;
    /* each pass either succeeds, drops one id, or gives up: at most n + 1 passes */
    for (size_t pass = 0; pass <= n && n > 0; pass++) {
        buf body = BUF_INIT;
        report_body(batch, n, lease_id, &body);
        control_resp resp;
        int rc = control_post(ctl, WIRE_PATH_REPORT, body.data, body.len, &resp, rq->abort);
        buf_free(&body);
        if (rc < 0 || resp.status >= 500 || resp.status == 429) {
            log_warn("report %s (%zu results): %s; kept in the spool", lease_id, n,
                     resp.error[0] ? resp.error : "no answer");
            rq->stats->report_failures++;
            control_resp_free(&resp);
            return false;
        }
        if (resp.status == 200) {
            for (size_t i = 0; i < n; i++)
                ack(rq, batch[i]);
            rq->stats->reported += (long long)n;
            rq->stats->last_report_unix_ms = clock_wall_ms();
            control_resp_free(&resp);
            return true;
        }
        size_t bad = 0;
        if (resp.status == 404 && wire_report_unknown_send(resp.err_code, resp.err_field, &bad) &&
            bad < n) {
            log_warn("report %s: send %lld is not part of the lease; dropped", lease_id,
                     (long long)batch[bad]->r.send_id);
            ack(rq, batch[bad]);
            rq->stats->dropped++;
            /* an array of pointers: sizeof a pointer is meant */
            memmove(&batch[bad], &batch[bad + 1],
                    (n - bad - 1) * sizeof *batch); // NOLINT(bugprone-sizeof-expression)
            n--;
            control_resp_free(&resp);
            continue;
        }
        /* unknown or foreign lease, or input the server refuses: retrying cannot help */
        log_error("report %s: %s; %zu results dropped", lease_id, resp.error, n);
        for (size_t i = 0; i < n; i++)
            ack(rq, batch[i]);
        rq->stats->dropped += (long long)n;
        control_resp_free(&resp);
        return true;
    }
    return true;
}

/* Reports what is due: a full batch, or results older than the report interval. */
void report_queue_flush(report_queue *rq, control *ctl, int64_t now, bool force)
{
    if (!rq->n || now < rq->next_ms)
        return;
    bool due = force || rq->n >= (size_t)rq->cfg->report_batch ||
               now - rq->q[0].queued_ms >= rq->cfg->report_interval_ms;
    if (!due)
        return;
    uint64_t max_seq = 0;
    for (size_t i = 0; i < rq->n; i++)
        if (rq->q[i].seq > max_seq)
            max_seq = rq->q[i].seq;
    if (spool_sync(rq->sp, max_seq) < 0) {
        rq->next_ms = now + 1000; /* not durable: do not report yet */
        return;
    }
    /* an array of pointers: sizeof a pointer is meant */
    struct queued **batch =
        xcalloc((size_t)rq->cfg->report_batch, sizeof *batch); // NOLINT(bugprone-sizeof-expression)
    bool failed = false;
    /* one lease at a time, oldest first; bounded by the queue length */
    for (size_t start = 0; start < rq->n && !failed;) {
        if (rq->q[start].seq == 0) {
            start++;
            continue;
        }
        const char *lid = rq->q[start].r.lease_id;
        size_t n = 0;
        for (size_t i = start; i < rq->n && n < (size_t)rq->cfg->report_batch; i++)
            if (rq->q[i].seq != 0 && !strcmp(rq->q[i].r.lease_id, lid))
                batch[n++] = &rq->q[i];
        if (!report_batch(rq, ctl, batch, n))
            failed = true;
    }
    free(batch);
    size_t w = 0;
    for (size_t i = 0; i < rq->n; i++)
        if (rq->q[i].seq != 0)
            rq->q[w++] = rq->q[i];
    rq->n = w;
    if (failed) {
        rq->backoff_ms =
            backoff_next(rq->backoff_ms, REPORT_BACKOFF_FIRST_MS, REPORT_BACKOFF_MAX_MS);
        rq->next_ms = now + rq->backoff_ms;
    } else {
        rq->backoff_ms = 0;
        rq->next_ms = now;
    }
}
