/* Metrics: Prometheus text exposition (GET /metrics, /api/warmup/metrics?format=
 * prometheus) and the JSON form (/api/warmup/metrics). Gauges come from the stats
 * snapshot, counters and histograms from the small sharded counters table: nothing
 * here scans sends. */
#include "app.h"
#include "routes.h"
#include "stats.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const db_stmt Q_COUNTERS = {
    "metrics_counters", "SELECT name, label, sum(value)::bigint FROM counters GROUP BY 1, 2"};

/* Live inbox leases (issue 13): a count over the partial index of live leases. */
static const db_stmt Q_INBOX_LEASES = {
    "metrics_inbox_leases", "SELECT count(*) FROM leases WHERE kind = 'inbox' AND ended_at IS NULL "
                            "AND expires_at > kiln_now()"};

/* kiln_sends_total{status} counts every status of wire.h; kiln_send_errors_total{class}
 * the reportable ones that are not "sent". */
#define FIRST_ERROR_CLASS WIRE_DEFERRED

typedef struct counter_set {
    const PGresult *r;
    long long inbox_leases;
} counter_set;

static long long counter(const counter_set *c, const char *name, const char *label)
{
    for (int i = 0; i < PQntuples(c->r); i++)
        if (!strcmp(PQgetvalue(c->r, i, 0), name) && !strcmp(PQgetvalue(c->r, i, 1), label))
            return strtoll(PQgetvalue(c->r, i, 2), NULL, 10);
    return 0;
}

static void family(buf *o, const char *name, const char *type, const char *help)
{
    buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(buf *o, const counter_set *c, const char *metric, const char *key,
                      const double *bounds, int n, const char *help)
{
    family(o, metric, "histogram", help);
    long long cum = 0;
    char label[32], name[64];
    snprintf(name, sizeof name, "%s_bucket", key);
    for (int i = 0; i <= n; i++) {
        if (i < n)
            snprintf(label, sizeof label, "%g", bounds[i]);
        else
            snprintf(label, sizeof label, "+Inf");
        cum += counter(c, name, label);
        buf_printf(o, "%s_bucket{le=\"%s\"} %lld\n", metric, label, cum);
    }
    snprintf(name, sizeof name, "%s_sum_us", key);
    buf_printf(o, "%s_sum %.6f\n", metric, (double)counter(c, name, "") / 1e6);
    buf_printf(o, "%s_count %lld\n", metric, cum);
}

/* Loads counters and the snapshot; on failure fills rs and returns false. */
static bool load(http_req *rq, http_resp *rs, counter_set *c, stats_snapshot *s)
{
    PGresult *r = db_exec(rq->db, rq->pool, &Q_COUNTERS, 0, NULL);
    PGresult *il = r ? db_exec(rq->db, rq->pool, &Q_INBOX_LEASES, 0, NULL) : NULL;
    if (!il || !stats_get(rq->app->stats, rq->db, rq->pool, s)) {
        http_db_error(rs, rq->db);
        return false;
    }
    c->r = r;
    c->inbox_leases = strtoll(PQgetvalue(il, 0, 0), NULL, 10);
    return true;
}

/* The inbox side's families: inbox leases, placements by recipient provider and
 * folder, actions by kind and status (counters labelled "a:b", 011_inbox.sql). */
static void render_inbox(buf *o, const counter_set *c)
{
    static const char *const providers[] = {"gmail", "outlook", "yahoo", "other"};
    static const char *const folders[] = {"inbox", "junk", "other", "missing"};
    static const char *const kinds[] = {"rescue", "mark", "file", "prune"};
    static const char *const statuses[] = {"issued",  "done",   "gone",     "stale",
                                           "refused", "failed", "cancelled"};
    char label[64];
    family(o, "kiln_inbox_leases_active", "gauge", "Live inbox leases (one per watching agent).");
    buf_printf(o, "kiln_inbox_leases_active %lld\n", c->inbox_leases);
    family(o, "kiln_placement_total", "counter",
           "Sends by where they landed (first find, or missing after the deadline), by the "
           "recipient's provider.");
    for (size_t p = 0; p < 4; p++)
        for (size_t f = 0; f < 4; f++) {
            snprintf(label, sizeof label, "%s:%s", providers[p], folders[f]);
            buf_printf(o, "kiln_placement_total{provider=\"%s\",folder=\"%s\"} %lld\n",
                       providers[p], folders[f], counter(c, "placement", label));
        }
    family(o, "kiln_actions_total", "counter",
           "Inbox actions by kind: issued, then by reported outcome (cancelled: counted for "
           "plans issued before migration 023 until 031 folded them; nothing counts it now).");
    for (size_t k = 0; k < 4; k++)
        for (size_t st = 0; st < sizeof statuses / sizeof statuses[0]; st++) {
            snprintf(label, sizeof label, "%s:%s", kinds[k], statuses[st]);
            buf_printf(o, "kiln_actions_total{kind=\"%s\",status=\"%s\"} %lld\n", kinds[k],
                       statuses[st], counter(c, "actions", label));
        }
}

/* A gauge family with one label, one series per name. */
static void labelled_gauge(buf *o, const char *name, const char *help, const char *label,
                           const char *const *names, const int64_t *v, int n)
{
    family(o, name, "gauge", help);
    for (int i = 0; i < n; i++)
        buf_printf(o, "%s{%s=\"%s\"} %lld\n", name, label, names[i], (long long)v[i]);
}

/* Mailbox health (015): bands, inbox states, and the pool's 7-day placement shares per
 * provider, from the snapshot (the refresher reads placement_pool_days, never a scrape). */
static void render_health(buf *o, const stats_snapshot *s)
{
    labelled_gauge(o, "kiln_mailboxes_by_health",
                   "Live mailboxes by health band (new: never judged).", "band", stats_band_names,
                   s->by_band, STATS_BANDS);
    labelled_gauge(o, "kiln_inboxes",
                   "Live mailboxes by inbox state (none: no IMAP access; failing: ok, but its "
                   "last visits did not complete).",
                   "state", stats_inbox_state_names, s->by_inbox, STATS_INBOX_STATES);
    labelled_gauge(o, "kiln_placements_7d",
                   "Placements decided over the last 7 UTC days across the pool, by recipient "
                   "provider.",
                   "provider", stats_provider_names, s->placed_7d, STATS_PROVIDERS);
    /* The shares only for providers with placements: an absent series, not a 0, when
     * nothing was placed (an alert on a collapse must not fire on an idle provider). */
    family(o, "kiln_inbox_rate", "gauge",
           "Share of the last 7 UTC days' placements found in the inbox, by recipient "
           "provider.");
    for (int p = 0; p < STATS_PROVIDERS; p++)
        if (s->placed_7d[p] > 0)
            buf_printf(o, "kiln_inbox_rate{provider=\"%s\"} %.6f\n", stats_provider_names[p],
                       (double)s->inbox_7d[p] / (double)s->placed_7d[p]);
    family(o, "kiln_junk_rate", "gauge",
           "Share of the last 7 UTC days' placements found in junk, by recipient provider.");
    for (int p = 0; p < STATS_PROVIDERS; p++)
        if (s->placed_7d[p] > 0)
            buf_printf(o, "kiln_junk_rate{provider=\"%s\"} %.6f\n", stats_provider_names[p],
                       (double)s->junk_7d[p] / (double)s->placed_7d[p]);
}

static void render_prometheus(http_resp *rs, const counter_set *c, const stats_snapshot *s)
{
    buf *o = &rs->body;
    buf_reset(o);
    rs->status = 200;
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";

    family(o, "kiln_sends_total", "counter",
           "Send slots by final status, each slot once (a slot expired or cancelled and "
           "reported afterwards moves to its reported status).");
    for (const char *const *st = wire_status_names; *st; st++)
        buf_printf(o, "kiln_sends_total{status=\"%s\"} %lld\n", *st, counter(c, "sends", *st));
    family(o, "kiln_send_errors_total", "counter", "Sends that did not go out, by error class.");
    for (int cl = FIRST_ERROR_CLASS; cl < WIRE_REPORTABLE; cl++)
        buf_printf(o, "kiln_send_errors_total{class=\"%s\"} %lld\n", wire_status_names[cl],
                   counter(c, "send_errors", wire_status_names[cl]));
    family(o, "kiln_sends_partitions_total", "counter",
           "Day partitions of the sends history created ahead and dropped after the "
           "retention (KILN_SENDS_RETENTION_DAYS).");
    buf_printf(o, "kiln_sends_partitions_total{action=\"created\"} %lld\n",
               counter(c, "sends_partitions", "created"));
    buf_printf(o, "kiln_sends_partitions_total{action=\"dropped\"} %lld\n",
               counter(c, "sends_partitions", "dropped"));
    family(o, "kiln_mailboxes", "gauge", "Registered mailboxes by state.");
    buf_printf(o, "kiln_mailboxes{state=\"active\"} %lld\n", (long long)s->mailboxes_active);
    buf_printf(o, "kiln_mailboxes{state=\"paused\"} %lld\n", (long long)s->mailboxes_paused);
    buf_printf(o, "kiln_mailboxes{state=\"error\"} %lld\n", (long long)s->mailboxes_error);
    buf_printf(o, "kiln_mailboxes{state=\"disabled\"} %lld\n", (long long)s->mailboxes_disabled);

    struct {
        const char *name, *help;
        long long v;
    } gauges[] = {
        {"kiln_quota_target_today", "Sum of today's targets of active mailboxes.",
         (long long)s->target_today},
        {"kiln_quota_sent_today", "Sends counted today (local days of the mailboxes).",
         (long long)s->sent_today},
        {"kiln_quota_sent_today_active",
         "Sends counted today by the active mailboxes (those kiln_quota_due_now covers).",
         (long long)s->sent_active},
        {"kiln_quota_due_now", "Sends due by now, each target spread over its window.",
         (long long)s->due_now},
        {"kiln_mailboxes_behind", "Active mailboxes that have not met today's target.",
         (long long)s->behind},
        {"kiln_queue_depth", "Sends still owed today: the autoscaling signal.",
         (long long)s->queue_depth},
        {"kiln_agents_active", "Agents holding a live send lease.", (long long)s->agents_active},
        {"kiln_leases_active", "Live send leases (inbox leases: kiln_inbox_leases_active).",
         (long long)s->leases_active},
        {"kiln_sends_in_flight", "Slots leased and not yet reported.", (long long)s->in_flight},
        {"kiln_service_running", "1 when the warmup service is started.",
         (long long)s->service_running},
    };
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
        family(o, gauges[i].name, "gauge", gauges[i].help);
        buf_printf(o, "%s %lld\n", gauges[i].name, gauges[i].v);
    }
    family(o, "kiln_quota_completion_ratio", "gauge",
           "Sent today / target today, active mailboxes (1 when no target).");
    buf_printf(o, "kiln_quota_completion_ratio %.6f\n", stats_completion_ratio(s));
    histogram(o, c, "kiln_send_latency_seconds", "send_latency", send_latency_buckets,
              SEND_LATENCY_BUCKETS, "SMTP send latency reported by agents.");
    histogram(o, c, "kiln_lease_request_duration_seconds", "lease_duration", lease_duration_buckets,
              LEASE_DURATION_BUCKETS, "Time kiln-api spent answering lease requests.");
    char reasons[HEALTH_MAX_REASONS][160];
    int nreasons;
    double completion, failure;
    enum health_level h = stats_health(s, reasons, &nreasons, &completion, &failure);
    family(o, "kiln_health_status", "gauge", "0 healthy, 1 degraded, 2 critical.");
    buf_printf(o, "kiln_health_status %d\n", (int)h);
    /* webhooks (issue 13): every delivery attempt once, by outcome (webhook_worker.c) */
    family(o, "kiln_webhook_deliveries_total", "counter",
           "Webhook delivery attempts by outcome: delivered (2xx), retrying (failed, will be "
           "retried), failed (failed for good).");
    static const char *const wh_status[] = {"delivered", "retrying", "failed"};
    for (int i = 0; i < 3; i++)
        buf_printf(o, "kiln_webhook_deliveries_total{status=\"%s\"} %lld\n", wh_status[i],
                   counter(c, "webhook_deliveries", wh_status[i]));
    render_inbox(o, c);
    render_health(o, s);
}

void h_metrics_prometheus(http_req *rq, http_resp *rs)
{
    counter_set c;
    stats_snapshot s;
    if (load(rq, rs, &c, &s))
        render_prometheus(rs, &c, &s);
}

void h_warmup_metrics(http_req *rq, http_resp *rs)
{
    const char *format = http_query(rq, "format");
    if (format && strcmp(format, "prometheus") != 0 && strcmp(format, "json") != 0) {
        http_error(rs, 400, "invalid_query", "format must be json or prometheus", "format");
        return;
    }
    counter_set c;
    stats_snapshot s;
    if (!load(rq, rs, &c, &s))
        return;
    if (format && !strcmp(format, "prometheus")) {
        render_prometheus(rs, &c, &s);
        return;
    }
    char reasons[HEALTH_MAX_REASONS][160];
    int nreasons;
    double completion, failure;
    enum health_level h = stats_health(&s, reasons, &nreasons, &completion, &failure);
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_i(g, "as_of_ms", s.computed_at_ms);
    json_key(g, "sends_total");
    json_obj_open(g);
    for (const char *const *st = wire_status_names; *st; st++)
        json_kv_i(g, *st, counter(&c, "sends", *st));
    json_obj_close(g);
    json_key(g, "send_errors_total");
    json_obj_open(g);
    for (int cl = FIRST_ERROR_CLASS; cl < WIRE_REPORTABLE; cl++)
        json_kv_i(g, wire_status_names[cl], counter(&c, "send_errors", wire_status_names[cl]));
    json_obj_close(g);
    json_key(g, "mailboxes");
    json_obj_open(g);
    json_kv_i(g, "active", s.mailboxes_active);
    json_kv_i(g, "paused", s.mailboxes_paused);
    json_kv_i(g, "error", s.mailboxes_error);
    json_kv_i(g, "disabled", s.mailboxes_disabled);
    json_obj_close(g);
    json_key(g, "inboxes");
    json_obj_open(g);
    for (int st = 0; st < STATS_INBOX_STATES; st++)
        json_kv_i(g, stats_inbox_state_names[st], s.by_inbox[st]);
    json_obj_close(g);
    json_key(g, "quota");
    json_obj_open(g);
    json_kv_i(g, "target_today", s.target_today);
    json_kv_i(g, "sent_today", s.sent_today);
    json_kv_i(g, "sent_today_active", s.sent_active);
    json_kv_i(g, "failed_today", s.failed_today);
    json_kv_i(g, "due_now", s.due_now);
    json_kv_i(g, "behind", s.behind);
    json_kv_i(g, "met", s.met);
    json_kv_i(g, "queue_depth", s.queue_depth);
    json_kv_d(g, "completion_ratio", stats_completion_ratio(&s));
    json_obj_close(g);
    json_kv_i(g, "agents_active", s.agents_active);
    json_kv_i(g, "leases_active", s.leases_active);
    json_kv_i(g, "in_flight", s.in_flight);
    json_kv_s(g, "health", health_name(h));
    json_kv_d(g, "failure_rate", failure);
    json_obj_close(g);
    json_gen_free(g);
}
