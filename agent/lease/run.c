/* The lease loop (see run.h). One control thread owns the leases, the send table's
 * bookkeeping, the report queue and the libcurl handle; it never touches a socket of a
 * session. The engine's I/O threads ask for intents through a hook that only queues
 * (no I/O on an I/O thread); the spool thread writes and fdatasyncs them in batches
 * and tells the engine to go on. Invariants:
 *  - a slot's payload leaves (after the server's 354) only once its intent record is
 *    on disk, so a crash turns it into "unknown" on replay, never into a second send,
 *    and a slot that never reached DATA leaves no intent and is simply leased again;
 *  - an outcome is on disk before it is reported, and acknowledged after;
 *  - leases are asked for only while the slots held stay under what the concurrency
 *    can send before the lease deadline. */
#include "run.h"

#include "agent_config.h"
#include "clock.h"
#include "config.h"
#include "control.h"
#include "engine.h"
#include "wire.h"
#include "log.h"
#include "metrics_http.h"
#include "secret.h"
#include "spool.h"
#include "version.h"
#include "xalloc.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESULTS_PER_POLL 4096
#define MAX_LEASE_MAILBOXES 1000
#define MAX_LEASE_SENDS 10000
#define REPORT_BACKOFF_MAX_MS 30000
#define COMPACT_EVERY_MS 5000

static volatile sig_atomic_t sig_term, sig_hup;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        sig_hup = 1;
    else
        sig_term = 1;
}

/* One lease held by this agent. Owned by the control thread; the spool thread reads
 * only id (immutable once set) through the send table. */
struct lease {
    char id[SPOOL_LEASE_ID_MAX + 1];
    uint64_t key; /* names it to the engine (engine_extend after a heartbeat) */
    int64_t ttl_s;
    int64_t next_hb_ms;
    int64_t next_release_ms;
    size_t outstanding; /* slots in the engine without a final result */
    size_t unreported;  /* results queued, not acknowledged */
    int64_t *sends;     /* every slot id granted, for a cancel when the lease is gone */
    size_t nsends;
    bool gone; /* the server ended it (expired, released, unknown) */
    struct lease *next;
};

/* send id -> lease; the I/O threads never read it, the spool thread does (tab_mu). */
struct send_entry {
    int64_t send_id;
    struct lease *lease;
};

struct send_table {
    struct send_entry *v;
    size_t cap, used;
};

/* A result waiting to be reported (durable in the spool up to seq). */
struct queued {
    spool_record r;
    uint64_t seq;
    int64_t queued_ms;
    struct lease *lease;
};

struct intent_req {
    uint64_t token;
    int64_t *ids;
    size_t n;
};

struct agent {
    agent_config cfg;
    const char *config_path;
    bool config_required;
    engine *e;
    control *ctl;
    spool *sp;
    metrics_http *mh;

    struct lease *leases;
    size_t nleases;
    pthread_mutex_t tab_mu;
    struct send_table tab;
    size_t outstanding; /* all leases */

    struct queued *q;
    size_t nq, qcap;
    int64_t report_backoff_ms, next_report_ms;

    /* spool thread */
    pthread_t spool_tid;
    pthread_mutex_t int_mu;
    pthread_cond_t int_cv;
    struct intent_req *reqs;
    size_t nreqs, reqs_cap;
    bool spool_stop;

    int64_t next_lease_ms, lease_backoff_ms;
    uint64_t lease_seq; /* lease keys for the engine */
    int64_t last_ttl_s;
    bool draining;
    volatile bool abort_http; /* set when a drain must not wait on retries */
    /* counters and gauges for the log and /metrics (read by the metrics thread) */
    struct {
        atomic_llong leases, lease_failures, slots, reported, report_failures, dropped;
        atomic_llong heartbeat_failures, leases_lost;
        atomic_llong held, outstanding, unreported; /* copies, published every turn */
        atomic_llong last_lease_unix_ms, last_report_unix_ms;
        atomic_bool draining;
    } m;
};

/* ---- send table (open addressing, tombstones cleared by rehash) ---- */

static size_t tab_slot(const struct send_table *t, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 20) & (t->cap - 1);
    while (t->v[i].send_id != 0 && t->v[i].send_id != id)
        i = (i + 1) & (t->cap - 1);
    return i;
}

/* Rehashes into a table sized for the live entries (tombstones dropped), so a long run
 * with churn keeps the table small. */
static void tab_rehash(struct send_table *t)
{
    struct send_table old = *t;
    size_t live = 0;
    for (size_t i = 0; i < old.cap; i++)
        live += old.v[i].send_id != 0 && old.v[i].lease != NULL;
    size_t cap = 4096;
    while (cap < live * 4)
        cap *= 2;
    t->cap = cap;
    t->v = xcalloc(cap, sizeof *t->v);
    t->used = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.v[i].send_id != 0 && old.v[i].lease) {
            t->v[tab_slot(t, old.v[i].send_id)] = old.v[i];
            t->used++;
        }
    free(old.v);
}

static void tab_put(struct send_table *t, int64_t id, struct lease *l)
{
    if ((t->used + 1) * 2 > t->cap)
        tab_rehash(t);
    size_t i = tab_slot(t, id);
    if (t->v[i].send_id == 0)
        t->used++;
    t->v[i].send_id = id;
    t->v[i].lease = l;
}

static struct lease *tab_get(const struct send_table *t, int64_t id)
{
    if (!t->cap || id == 0)
        return NULL;
    return t->v[tab_slot(t, id)].lease;
}

/* Leaves a tombstone (send_id kept, lease NULL) so probe chains stay intact. */
static void tab_del(struct send_table *t, int64_t id)
{
    if (!t->cap || id == 0)
        return;
    size_t i = tab_slot(t, id);
    if (t->v[i].send_id == id)
        t->v[i].lease = NULL;
}

/* ---- spool thread: intents ---- */

/* Engine hook, on an I/O thread: queue only. */
static void intent_hook(void *arg, uint64_t token, const int64_t *ids, size_t n)
{
    struct agent *a = arg;
    int64_t *copy = xmalloc((n ? n : 1) * sizeof *copy);
    memcpy(copy, ids, n * sizeof *copy);
    pthread_mutex_lock(&a->int_mu);
    if (a->nreqs == a->reqs_cap) {
        a->reqs_cap = a->reqs_cap ? a->reqs_cap * 2 : 256;
        a->reqs = xrealloc(a->reqs, a->reqs_cap * sizeof *a->reqs);
    }
    a->reqs[a->nreqs++] = (struct intent_req){token, copy, n};
    pthread_cond_signal(&a->int_cv);
    pthread_mutex_unlock(&a->int_mu);
}

static void *spool_thread(void *arg)
{
    struct agent *a = arg;
    struct intent_req *batch = NULL;
    size_t cap = 0;
    for (;;) {
        pthread_mutex_lock(&a->int_mu);
        while (!a->nreqs && !a->spool_stop)
            pthread_cond_wait(&a->int_cv, &a->int_mu);
        if (!a->nreqs && a->spool_stop) {
            pthread_mutex_unlock(&a->int_mu);
            break;
        }
        pthread_mutex_unlock(&a->int_mu);
        /* let a few more sessions join this fdatasync */
        if (a->cfg.intent_batch_us > 0)
            usleep((useconds_t)a->cfg.intent_batch_us);
        pthread_mutex_lock(&a->int_mu);
        size_t n = a->nreqs;
        if (n > cap) {
            cap = n;
            batch = xrealloc(batch, cap * sizeof *batch);
        }
        if (n > 0) /* batch is still NULL until the first non-empty turn */
            memcpy(batch, a->reqs, n * sizeof *batch);
        a->nreqs = 0;
        pthread_mutex_unlock(&a->int_mu);

        uint64_t seq = 0;
        spool_record r;
        memset(&r, 0, sizeof r);
        r.type = SPOOL_INTENT;
        pthread_mutex_lock(&a->tab_mu);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < batch[i].n; k++) {
                struct lease *l = tab_get(&a->tab, batch[i].ids[k]);
                snprintf(r.lease_id, sizeof r.lease_id, "%s", l ? l->id : "");
                r.send_id = batch[i].ids[k];
                seq = spool_append(a->sp, &r);
            }
        pthread_mutex_unlock(&a->tab_mu);
        bool ok = spool_sync(a->sp, seq) == 0;
        for (size_t i = 0; i < n; i++) {
            engine_intent_done(a->e, batch[i].token, ok);
            free(batch[i].ids);
        }
    }
    free(batch);
    return NULL;
}

/* ---- leases ---- */

static struct lease *lease_new(struct agent *a, const char *id, int64_t ttl_s)
{
    struct lease *l = xcalloc(1, sizeof *l);
    snprintf(l->id, sizeof l->id, "%s", id);
    l->key = ++a->lease_seq;
    l->ttl_s = ttl_s;
    l->next = a->leases;
    a->leases = l;
    a->nleases++;
    return l;
}

static struct lease *lease_find(struct agent *a, const char *id)
{
    for (struct lease *l = a->leases; l; l = l->next)
        if (!strcmp(l->id, id))
            return l;
    return NULL;
}

static void lease_unlink(struct agent *a, struct lease *l)
{
    for (struct lease **p = &a->leases; *p; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            a->nleases--;
            break;
        }
    free(l->sends);
    free(l);
}

static int64_t heartbeat_every_ms(const struct agent *a, const struct lease *l)
{
    if (a->cfg.heartbeat_s > 0)
        return (int64_t)a->cfg.heartbeat_s * 1000;
    return l->ttl_s * 1000 / 3;
}

/* How many slots this agent may hold: what its sessions can send within a lease. */
static size_t capacity(const struct agent *a)
{
    if (a->cfg.max_outstanding > 0)
        return (size_t)a->cfg.max_outstanding;
    int64_t ttl = a->last_ttl_s > 0 ? a->last_ttl_s : 600;
    int64_t c = (int64_t)a->cfg.concurrency * ttl / a->cfg.session_s;
    return (size_t)(c > 50000 ? 50000 : c < 1 ? 1 : c);
}

static void spool_lease_mark(struct agent *a, int type, const char *lease_id)
{
    spool_record r;
    memset(&r, 0, sizeof r);
    r.type = type;
    snprintf(r.lease_id, sizeof r.lease_id, "%s", lease_id);
    spool_append(a->sp, &r);
}

static void cancel_lease_slots(struct agent *a, struct lease *l)
{
    if (l->outstanding && l->nsends)
        engine_cancel(a->e, l->sends, l->nsends);
}

static void reject_entries(struct agent *a, const wire_lease *jl, int64_t now);

/* POST /api/agent/lease and hand what comes to the engine. */
static void do_lease(struct agent *a, int64_t now)
{
    size_t cap = capacity(a);
    size_t room = cap > a->outstanding ? cap - a->outstanding : 0;
    size_t min_room = cap / 20 > 0 ? cap / 20 : 1;
    if (room < min_room) {
        a->next_lease_ms = now + 250;
        return;
    }
    size_t max_sends = room < MAX_LEASE_SENDS ? room : MAX_LEASE_SENDS;
    size_t max_mb = max_sends < MAX_LEASE_MAILBOXES ? max_sends : MAX_LEASE_MAILBOXES;
    buf body = BUF_INIT;
    wire_lease_request(&body, a->cfg.name, max_mb, max_sends);
    control_resp resp;
    int64_t asked_ms = clock_mono_ms();
    int rc = control_post(a->ctl, WIRE_PATH_LEASE, body.data, body.len, &resp, &a->abort_http);
    buf_free(&body);
    int64_t got_ms = clock_mono_ms();
    if (rc < 0 || resp.status != 200) {
        a->m.lease_failures++;
        a->lease_backoff_ms = a->lease_backoff_ms ? a->lease_backoff_ms * 2 : 1000;
        if (a->lease_backoff_ms > 30000)
            a->lease_backoff_ms = 30000;
        log_warn("lease: %s; next try in %lld ms", resp.error[0] ? resp.error : "no answer",
                 (long long)a->lease_backoff_ms);
        a->next_lease_ms = got_ms + a->lease_backoff_ms;
        control_resp_free(&resp);
        return;
    }
    a->lease_backoff_ms = 0;
    wire_lease_answer ans;
    wire_lease_answer_parse(resp.body.data ? resp.body.data : "", resp.body.len, &ans);
    control_resp_free(&resp);
    if (ans.kind != WIRE_LEASE_WORK) {
        int64_t retry = ans.retry_after_s;
        if (ans.kind == WIRE_LEASE_EMPTY) {
            log_debug("lease: nothing to send now (service %s); retry in %lld s",
                      ans.has_service ? ans.service : "?", (long long)retry);
            a->m.last_lease_unix_ms = clock_wall_ms();
        } else {
            log_error("lease: unusable answer: %s", ans.error);
            a->m.lease_failures++;
            retry = 30;
        }
        if (retry > a->cfg.lease_idle_max_s)
            retry = a->cfg.lease_idle_max_s;
        if (retry < 1)
            retry = 1;
        a->next_lease_ms = got_ms + retry * 1000;
        return;
    }
    wire_lease *jl = ans.lease;
    a->last_ttl_s = jl->ttl_s;
    struct lease *l = lease_new(a, jl->lease_id, jl->ttl_s);
    l->next_hb_ms = got_ms + heartbeat_every_ms(a, l);
    spool_lease_mark(a, SPOOL_LEASE, l->id);
    size_t total = 0;
    for (size_t i = 0; i < jl->nmailboxes; i++)
        total += jl->mailboxes[i]->nsends;
    for (size_t i = 0; i < jl->nrejected; i++)
        total += jl->rejected[i].nsend_ids;
    l->sends = xcalloc(total ? total : 1, sizeof *l->sends);
    pthread_mutex_lock(&a->tab_mu);
    for (size_t i = 0; i < jl->nmailboxes; i++)
        for (size_t k = 0; k < jl->mailboxes[i]->nsends; k++) {
            int64_t id = jl->mailboxes[i]->sends[k].id;
            l->sends[l->nsends++] = id;
            tab_put(&a->tab, id, l);
        }
    for (size_t i = 0; i < jl->nrejected; i++)
        for (size_t k = 0; k < jl->rejected[i].nsend_ids; k++) {
            int64_t id = jl->rejected[i].send_ids[k];
            l->sends[l->nsends++] = id;
            tab_put(&a->tab, id, l);
        }
    pthread_mutex_unlock(&a->tab_mu);
    l->outstanding = total;
    a->outstanding += total;
    a->m.leases++;
    a->m.slots += (long long)total;
    a->m.last_lease_unix_ms = clock_wall_ms();
    /* not_before counts from when the answer came (never early); the deadline from
     * when it was asked for (never later than the server's expiry) */
    int64_t deadline = asked_ms + jl->ttl_s * 1000;
    for (size_t i = 0; i < jl->nmailboxes; i++) {
        engine_submit(a->e, jl->mailboxes[i], got_ms, deadline, l->key);
        jl->mailboxes[i] = NULL;
    }
    log_info("lease %s: %zu mailboxes, %zu slots, ttl %lld s", l->id, jl->nmailboxes, total,
             (long long)jl->ttl_s);
    reject_entries(a, jl, got_ms);
    wire_lease_free(jl);
    a->next_lease_ms = got_ms + 50;
}

static void lease_gone(struct agent *a, struct lease *l, const char *why)
{
    if (l->gone)
        return;
    log_warn("lease %s: %s; its unstarted slots are dropped", l->id, why);
    a->m.leases_lost++;
    l->gone = true;
    cancel_lease_slots(a, l);
}

static void do_heartbeat(struct agent *a, struct lease *l, int64_t now)
{
    buf body = BUF_INIT;
    wire_lease_id_body(&body, l->id);
    control_resp resp;
    int64_t asked_ms = clock_mono_ms();
    int rc = control_post(a->ctl, WIRE_PATH_HEARTBEAT, body.data, body.len, &resp, &a->abort_http);
    buf_free(&body);
    if (rc < 0 || resp.status >= 500 || resp.status == 429) {
        log_warn("heartbeat %s: %s", l->id, resp.error[0] ? resp.error : "no answer");
        a->m.heartbeat_failures++;
        l->next_hb_ms = now + 5000;
        control_resp_free(&resp);
        return;
    }
    l->next_hb_ms = now + heartbeat_every_ms(a, l);
    if (resp.status == 409 || resp.status == 404 || resp.status == 403) {
        lease_gone(a, l, resp.error);
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
        engine_extend(a->e, l->key, asked_ms + hb.ttl_s * 1000);
    if (hb.ncancel > 0) {
        engine_cancel(a->e, hb.cancel, hb.ncancel);
        log_info("heartbeat %s: %zu slots cancelled (service %s)", l->id, hb.ncancel,
                 hb.has_service ? hb.service : "?");
    }
    if (hb.has_service && strcmp(hb.service, "running") != 0 && !a->draining) {
        /* stopped: the lease answers are empty anyway; do not ask before the next beat */
        int64_t wait = heartbeat_every_ms(a, l);
        if (a->next_lease_ms < now + wait)
            a->next_lease_ms = now + wait;
    }
    wire_heartbeat_free(&hb);
    control_resp_free(&resp);
}

/* Release leases with nothing left in the engine and nothing left to report. */
static void release_idle(struct agent *a, int64_t now, bool all)
{
    struct lease *l = a->leases;
    while (l) {
        struct lease *next = l->next;
        if ((l->outstanding == 0 || all) && l->unreported == 0 && now >= l->next_release_ms) {
            buf body = BUF_INIT;
            wire_lease_id_body(&body, l->id);
            control_resp resp;
            int rc =
                control_post(a->ctl, WIRE_PATH_RELEASE, body.data, body.len, &resp, &a->abort_http);
            buf_free(&body);
            bool done = rc == 0 && (resp.status == 200 || resp.status == 400 ||
                                    resp.status == 404 || resp.status == 403 || resp.status == 409);
            if (done) {
                spool_lease_mark(a, SPOOL_RELEASED, l->id);
                if (l->outstanding == 0) {
                    log_debug("lease %s released", l->id);
                    lease_unlink(a, l);
                } else {
                    lease_gone(a, l, "released while draining");
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

/* ---- results and reports ---- */

static void queue_push(struct agent *a, const spool_record *r, uint64_t seq, struct lease *l,
                       int64_t now)
{
    if (a->nq == a->qcap) {
        a->qcap = a->qcap ? a->qcap * 2 : 1024;
        a->q = xrealloc(a->q, a->qcap * sizeof *a->q);
    }
    a->q[a->nq++] = (struct queued){*r, seq, now, l};
    l->unreported++;
}

/* One slot's final outcome: to the spool, then to the report queue. */
static void take_result(struct agent *a, const engine_result *er, int64_t now)
{
    pthread_mutex_lock(&a->tab_mu);
    struct lease *l = tab_get(&a->tab, er->send_id);
    tab_del(&a->tab, er->send_id);
    pthread_mutex_unlock(&a->tab_mu);
    if (!l) {
        log_warn("result for send %lld that no lease holds", (long long)er->send_id);
        return;
    }
    l->outstanding--;
    a->outstanding--;
    if (er->cancelled)
        return; /* never started: the server cancelled, expired or released it */
    spool_record r;
    memset(&r, 0, sizeof r);
    r.type = SPOOL_OUTCOME;
    snprintf(r.lease_id, sizeof r.lease_id, "%s", l->id);
    r.send_id = er->send_id;
    r.mailbox_id = er->mailbox_id;
    snprintf(r.status, sizeof r.status, "%s", smtp_status_name(er->status));
    r.smtp_code = er->smtp_code;
    snprintf(r.enhanced, sizeof r.enhanced, "%s", er->enhanced);
    snprintf(r.detail, sizeof r.detail, "%s", er->detail);
    r.latency_ms = er->latency_ms;
    r.attempts = er->attempts;
    queue_push(a, &r, spool_append(a->sp, &r), l, now);
}

static void collect_results(struct agent *a, engine_result *res, int timeout_ms)
{
    size_t n = engine_poll_results(a->e, res, RESULTS_PER_POLL, timeout_ms);
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < n; i++)
        take_result(a, &res[i], now);
}

/* Mailbox entries of a lease that failed validation are never sent: their slots go
 * back as failed, with the reason naming the field, so the control plane settles them
 * now instead of at the lease's expiry (and the others of the lease go out as usual). */
static void reject_entries(struct agent *a, const wire_lease *jl, int64_t now)
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
            take_result(a, &er, now);
        }
    }
}

static void ack(struct agent *a, struct queued *q)
{
    spool_record r;
    memset(&r, 0, sizeof r);
    r.type = SPOOL_ACK;
    snprintf(r.lease_id, sizeof r.lease_id, "%s", q->r.lease_id);
    r.send_id = q->r.send_id;
    spool_append(a->sp, &r);
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
static bool report_batch(struct agent *a, struct queued **batch, size_t n)
{
    const char *lease_id = batch[0]->r.lease_id;
    /* each pass either succeeds, drops one id, or gives up: at most n + 1 passes */
    for (size_t pass = 0; pass <= n && n > 0; pass++) {
        buf body = BUF_INIT;
        report_body(batch, n, lease_id, &body);
        control_resp resp;
        int rc = control_post(a->ctl, WIRE_PATH_REPORT, body.data, body.len, &resp, &a->abort_http);
        buf_free(&body);
        if (rc < 0 || resp.status >= 500 || resp.status == 429) {
            log_warn("report %s (%zu results): %s; kept in the spool", lease_id, n,
                     resp.error[0] ? resp.error : "no answer");
            a->m.report_failures++;
            control_resp_free(&resp);
            return false;
        }
        if (resp.status == 200) {
            for (size_t i = 0; i < n; i++)
                ack(a, batch[i]);
            a->m.reported += (long long)n;
            a->m.last_report_unix_ms = clock_wall_ms();
            control_resp_free(&resp);
            return true;
        }
        size_t bad = 0;
        if (resp.status == 404 && wire_report_unknown_send(resp.err_code, resp.err_field, &bad) &&
            bad < n) {
            log_warn("report %s: send %lld is not part of the lease; dropped", lease_id,
                     (long long)batch[bad]->r.send_id);
            ack(a, batch[bad]);
            a->m.dropped++;
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
            ack(a, batch[i]);
        a->m.dropped += (long long)n;
        control_resp_free(&resp);
        return true;
    }
    return true;
}

/* Reports what is due: a full batch, or results older than the report interval. */
static void flush_reports(struct agent *a, int64_t now, bool force)
{
    if (!a->nq || now < a->next_report_ms)
        return;
    bool due = force || a->nq >= (size_t)a->cfg.report_batch ||
               now - a->q[0].queued_ms >= a->cfg.report_interval_ms;
    if (!due)
        return;
    uint64_t max_seq = 0;
    for (size_t i = 0; i < a->nq; i++)
        if (a->q[i].seq > max_seq)
            max_seq = a->q[i].seq;
    if (spool_sync(a->sp, max_seq) < 0) {
        a->next_report_ms = now + 1000; /* not durable: do not report yet */
        return;
    }
    /* an array of pointers: sizeof a pointer is meant */
    struct queued **batch =
        xcalloc((size_t)a->cfg.report_batch, sizeof *batch); // NOLINT(bugprone-sizeof-expression)
    bool failed = false;
    /* one lease at a time, oldest first; bounded by the queue length */
    for (size_t start = 0; start < a->nq && !failed;) {
        if (a->q[start].seq == 0) {
            start++;
            continue;
        }
        const char *lid = a->q[start].r.lease_id;
        size_t n = 0;
        for (size_t i = start; i < a->nq && n < (size_t)a->cfg.report_batch; i++)
            if (a->q[i].seq != 0 && !strcmp(a->q[i].r.lease_id, lid))
                batch[n++] = &a->q[i];
        if (!report_batch(a, batch, n))
            failed = true;
    }
    free(batch);
    size_t w = 0;
    for (size_t i = 0; i < a->nq; i++)
        if (a->q[i].seq != 0)
            a->q[w++] = a->q[i];
    a->nq = w;
    if (failed) {
        a->report_backoff_ms = a->report_backoff_ms ? a->report_backoff_ms * 2 : 500;
        if (a->report_backoff_ms > REPORT_BACKOFF_MAX_MS)
            a->report_backoff_ms = REPORT_BACKOFF_MAX_MS;
        a->next_report_ms = now + a->report_backoff_ms;
    } else {
        a->report_backoff_ms = 0;
        a->next_report_ms = now;
    }
}

/* ---- start, replay, loop, drain ---- */

static void replay(struct agent *a, spool_replay *rep)
{
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < rep->nleases; i++)
        if (!lease_find(a, rep->leases[i]))
            lease_new(a, rep->leases[i], 600);
    for (size_t i = 0; i < rep->npending; i++) {
        spool_record *r = &rep->pending[i];
        struct lease *l = lease_find(a, r->lease_id);
        if (!l)
            l = lease_new(a, r->lease_id, 600);
        queue_push(a, r, 1, l, now - a->cfg.report_interval_ms);
    }
    /* every lease of the previous run ends now: what it did not send goes back to the
     * pool at once instead of at its expiry (a restarted agent never re-sends) */
    for (struct lease *l = a->leases; l; l = l->next)
        l->gone = true;
    if (rep->npending || rep->nleases)
        log_info("spool replay: %zu results to report (%zu records read, %zu bad skipped, %zu "
                 "torn bytes cut), %zu leases of the previous run to release",
                 rep->npending, rep->records, rep->bad_records, rep->torn_bytes, rep->nleases);
    else if (rep->bad_records || rep->torn_bytes)
        log_warn("spool replay: %zu bad records skipped, %zu torn bytes cut", rep->bad_records,
                 rep->torn_bytes);
}

static void reload(struct agent *a)
{
    agent_config fresh;
    char err[512];
    if (agent_config_load(&fresh, a->config_path, a->config_required, err, sizeof err) < 0) {
        log_error("SIGHUP: configuration not reloaded: %s", err);
        return;
    }
    if (strcmp(fresh.api_url, a->cfg.api_url) != 0 || strcmp(fresh.token, a->cfg.token) != 0 ||
        strcmp(fresh.ca_file, a->cfg.ca_file) != 0) {
        control_config cc = {fresh.api_url,       fresh.token, fresh.ca_file, fresh.http_timeout_s,
                             fresh.http_attempts, 250,         5000};
        control *c = control_new(&cc, err, sizeof err);
        if (!c) {
            log_error("SIGHUP: %s; keeping the old control-plane settings", err);
            return;
        }
        control_free(a->ctl);
        a->ctl = c;
    }
    if (strcmp(fresh.spool_dir, a->cfg.spool_dir) != 0 || fresh.threads != a->cfg.threads ||
        fresh.metrics_port != a->cfg.metrics_port ||
        strcmp(fresh.metrics_addr, a->cfg.metrics_addr) != 0)
        log_warn("SIGHUP: spool dir, threads and metrics address or port change at the next "
                 "restart");
    snprintf(fresh.spool_dir, sizeof fresh.spool_dir, "%s", a->cfg.spool_dir);
    fresh.threads = a->cfg.threads;
    fresh.metrics_port = a->cfg.metrics_port;
    if (fresh.log_level[0])
        log_set_level(!strcmp(fresh.log_level, "debug")   ? LOG_DEBUG
                      : !strcmp(fresh.log_level, "warn")  ? LOG_WARN
                      : !strcmp(fresh.log_level, "error") ? LOG_ERROR
                                                          : LOG_INFO);
    a->cfg = fresh;
    log_info("SIGHUP: configuration reloaded (concurrency %d, report batch %d)", a->cfg.concurrency,
             a->cfg.report_batch);
}

static void export_env(const char *key, const char *val)
{
    setenv(key, val, 0);
}

static const char *env_get(const char *key)
{
    return getenv(key);
}

/* Config, then the file's engine knobs into the environment (before any thread). */
static int load_config(agent_config *cfg, const char *path, bool required)
{
    char err[512];
    if (agent_config_load(cfg, path, required, err, sizeof err) < 0) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        return -1;
    }
    size_t n = 0;
    char *text = agent_config_read_file(path, &n);
    if (text) {
        agent_config_export(text, n, env_get, export_env);
        free(text);
    }
    return 0;
}

static int make_engine_config(const agent_config *cfg, engine_config *ec)
{
    char err[256];
    engine_config_defaults(ec);
    if (engine_config_from_env(ec, err, sizeof err) < 0) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        return -1;
    }
    ec->concurrency = cfg->concurrency;
    ec->threads = cfg->threads;
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void log_progress(struct agent *a)
{
    log_info("leases %zu held (%lld taken), slots %zu in flight (%lld taken), %lld reported, "
             "%zu queued, %lld dropped, spool %zu bytes",
             a->nleases, atomic_load(&a->m.leases), a->outstanding, atomic_load(&a->m.slots),
             atomic_load(&a->m.reported), a->nq, atomic_load(&a->m.dropped),
             spool_file_bytes(a->sp));
}

/* The loop's own state, copied where the metrics thread may read it. */
static void publish_gauges(struct agent *a)
{
    atomic_store(&a->m.held, (long long)a->nleases);
    atomic_store(&a->m.outstanding, (long long)a->outstanding);
    atomic_store(&a->m.unreported, (long long)a->nq);
    atomic_store(&a->m.draining, a->draining);
}

static void metric(buf *out, const char *name, const char *type, const char *help, double v)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

/* The lease loop's metrics, after the engine's on /metrics (metrics thread). */
static void loop_metrics(void *arg, buf *out)
{
    struct agent *a = arg;
    metric(out, "kiln_agent_leases_total", "counter", "Leases granted with work.",
           (double)atomic_load(&a->m.leases));
    metric(out, "kiln_agent_lease_failures_total", "counter",
           "Lease requests without a usable answer (network, 5xx, 4xx, bad JSON).",
           (double)atomic_load(&a->m.lease_failures));
    metric(out, "kiln_agent_leased_slots_total", "counter", "Slots received in leases.",
           (double)atomic_load(&a->m.slots));
    metric(out, "kiln_agent_reported_total", "counter", "Results the control plane accepted.",
           (double)atomic_load(&a->m.reported));
    metric(out, "kiln_agent_report_failures_total", "counter",
           "Report calls that failed and were kept in the spool for another try.",
           (double)atomic_load(&a->m.report_failures));
    metric(out, "kiln_agent_results_dropped_total", "counter",
           "Results the control plane refused for good (foreign or unknown send, gone lease).",
           (double)atomic_load(&a->m.dropped));
    metric(out, "kiln_agent_heartbeat_failures_total", "counter",
           "Heartbeats without an answer (retried in 5 s).",
           (double)atomic_load(&a->m.heartbeat_failures));
    metric(out, "kiln_agent_leases_lost_total", "counter",
           "Leases the control plane ended under the agent (expired, released, unknown).",
           (double)atomic_load(&a->m.leases_lost));
    metric(out, "kiln_agent_leases_held", "gauge", "Leases this agent holds now.",
           (double)atomic_load(&a->m.held));
    metric(out, "kiln_agent_slots_outstanding", "gauge", "Leased slots without a final result yet.",
           (double)atomic_load(&a->m.outstanding));
    metric(out, "kiln_agent_results_unreported", "gauge",
           "Results in the spool not yet accepted by the control plane.",
           (double)atomic_load(&a->m.unreported));
    metric(out, "kiln_agent_spool_bytes", "gauge", "Size of the report spool file.",
           (double)spool_file_bytes(a->sp));
    metric(out, "kiln_agent_last_lease_timestamp_seconds", "gauge",
           "Unix time of the last lease answer (with or without work); 0 before the first.",
           (double)atomic_load(&a->m.last_lease_unix_ms) / 1000.0);
    metric(out, "kiln_agent_last_report_timestamp_seconds", "gauge",
           "Unix time the control plane last accepted a report; 0 before the first.",
           (double)atomic_load(&a->m.last_report_unix_ms) / 1000.0);
    metric(out, "kiln_agent_draining", "gauge", "1 while a SIGTERM drain is under way.",
           atomic_load(&a->m.draining) ? 1 : 0);
}

int run_agent(const char *config_path, bool config_required)
{
    struct agent *a = xcalloc(1, sizeof *a);
    int exit_code = 1;
    char err[512];
    engine_result *res = NULL;
    spool_replay rep;
    memset(&rep, 0, sizeof rep);
    a->config_path = config_path;
    a->config_required = config_required;
    pthread_mutex_init(&a->tab_mu, NULL);
    pthread_mutex_init(&a->int_mu, NULL);
    pthread_cond_init(&a->int_cv, NULL);
    if (load_config(&a->cfg, config_path, config_required) < 0) {
        exit_code = 2;
        goto out;
    }
    if (a->cfg.log_level[0])
        log_set_level(!strcmp(a->cfg.log_level, "debug")   ? LOG_DEBUG
                      : !strcmp(a->cfg.log_level, "warn")  ? LOG_WARN
                      : !strcmp(a->cfg.log_level, "error") ? LOG_ERROR
                                                           : LOG_INFO);
    engine_config ec;
    if (make_engine_config(&a->cfg, &ec) < 0) {
        exit_code = 2;
        goto out;
    }
    ec.intent_fn = intent_hook;
    ec.intent_arg = a;
    install_signals();
    raise_nofile();
    a->sp = spool_open(a->cfg.spool_dir, &rep, err, sizeof err);
    if (!a->sp) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        goto out;
    }
    control_config cc = {a->cfg.api_url,
                         a->cfg.token,
                         a->cfg.ca_file,
                         a->cfg.http_timeout_s,
                         a->cfg.http_attempts,
                         250,
                         5000};
    a->ctl = control_new(&cc, err, sizeof err);
    if (!a->ctl) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        goto out;
    }
    a->e = engine_create(&ec, err, sizeof err);
    if (!a->e) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        goto out;
    }
    if (pthread_create(&a->spool_tid, NULL, spool_thread, a) != 0) {
        fprintf(stderr, "kiln-agent: cannot start the spool thread\n");
        goto out;
    }
    if (a->cfg.metrics_port > 0) {
        a->mh = metrics_http_start(a->e, a->cfg.metrics_addr, a->cfg.metrics_port, loop_metrics, a,
                                   err, sizeof err);
        if (!a->mh)
            log_warn("metrics: %s (continuing without them)", err);
    }
    replay(a, &rep);
    spool_replay_free(&rep);
    log_info("kiln-agent %s running as '%s' against %s (concurrency %d, spool %s)", kiln_version(),
             a->cfg.name, a->cfg.api_url, a->cfg.concurrency, a->cfg.spool_dir);

    res = xcalloc(RESULTS_PER_POLL, sizeof *res);
    int64_t next_compact = clock_mono_ms() + COMPACT_EVERY_MS;
    int64_t next_progress = clock_mono_ms() + 10000;
    int64_t drain_deadline = 0;
    for (;;) {
        int64_t now = clock_mono_ms();
        if (sig_hup) {
            sig_hup = 0;
            reload(a);
        }
        if (sig_term && !a->draining) {
            a->draining = true;
            drain_deadline = now + (int64_t)a->cfg.drain_timeout_s * 1000;
            log_info("SIGTERM: draining (no new leases; %zu slots in flight, %zu results to "
                     "report)",
                     a->outstanding, a->nq);
            engine_cancel_all(a->e);
            a->abort_http = true; /* one try per call: the loop retries until the deadline */
        }
        if (a->draining) {
            if ((a->outstanding == 0 && a->nq == 0 && a->nleases == 0) || now >= drain_deadline)
                break;
        } else if (now >= a->next_lease_ms) {
            do_lease(a, now);
        }
        int wait = 100;
        if (!a->draining && a->next_lease_ms > now && a->next_lease_ms - now < wait)
            wait = (int)(a->next_lease_ms - now);
        collect_results(a, res, wait < 1 ? 1 : wait);
        now = clock_mono_ms();
        flush_reports(a, now, a->draining);
        for (struct lease *l = a->leases; l; l = l->next)
            if (!l->gone && now >= l->next_hb_ms && !a->draining)
                do_heartbeat(a, l, now);
        release_idle(a, now, a->draining && a->outstanding == 0);
        if (now >= next_compact) {
            spool_compact(a->sp, (size_t)a->cfg.spool_compact_kb * 1024);
            next_compact = now + COMPACT_EVERY_MS;
        }
        publish_gauges(a);
        if (now >= next_progress) {
            log_progress(a);
            next_progress = now + 10000;
        }
    }
    if (a->outstanding || a->nq || a->nleases)
        log_warn("drain timed out: %zu slots in flight, %zu results kept in the spool for the "
                 "next start, %zu leases left to expire",
                 a->outstanding, a->nq, a->nleases);
    log_progress(a);
    exit_code = 0;
out:
    if (a->e) {
        /* the spool thread may still hold go-aheads for the engine: stop it first */
        pthread_mutex_lock(&a->int_mu);
        a->spool_stop = true;
        pthread_cond_signal(&a->int_cv);
        pthread_mutex_unlock(&a->int_mu);
        if (a->spool_tid)
            pthread_join(a->spool_tid, NULL);
    }
    metrics_http_stop(a->mh);
    engine_destroy(a->e);
    if (a->sp) {
        spool_compact(a->sp, (size_t)a->cfg.spool_compact_kb * 1024);
        spool_close(a->sp);
    }
    control_free(a->ctl);
    spool_replay_free(&rep);
    while (a->leases)
        lease_unlink(a, a->leases);
    for (size_t i = 0; i < a->nreqs; i++)
        free(a->reqs[i].ids);
    free(a->reqs);
    free(a->tab.v);
    free(a->q);
    free(res);
    pthread_mutex_destroy(&a->tab_mu);
    pthread_mutex_destroy(&a->int_mu);
    pthread_cond_destroy(&a->int_cv);
    free(a);
    return exit_code;
}

/* ---- check ---- */

static void say(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok:     " : "PROBLEM:");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

int run_check(const char *config_path, bool config_required)
{
    agent_config cfg;
    char err[512];
    int problems = 0;
    if (agent_config_load(&cfg, config_path, config_required, err, sizeof err) < 0) {
        say(false, "configuration: %s", err);
        return 1;
    }
    say(true, "configuration read (%s%s), token from %s", config_path,
        access(config_path, R_OK) == 0 ? "" : ", absent: environment only",
        cfg.token_file[0] ? cfg.token_file : "KILN_AGENT_TOKEN");
    struct stat st;
    if (access(cfg.spool_dir, W_OK | X_OK) == 0)
        say(true, "spool directory %s is writable", cfg.spool_dir);
    else if (errno == ENOENT && stat(cfg.spool_dir, &st) < 0)
        say(true,
            "spool directory %s does not exist yet (the agent or systemd's StateDirectory "
            "creates it)",
            cfg.spool_dir);
    else {
        say(false, "spool directory %s: %s (the agent keeps unreported results there)",
            cfg.spool_dir, strerror(errno));
        problems++;
    }
    control_config cc = {cfg.api_url, cfg.token, cfg.ca_file, 10, 1, 250, 1000};
    control *ctl = control_new(&cc, err, sizeof err);
    if (!ctl) {
        say(false, "control plane: %s", err);
        problems++;
    } else {
        control_resp resp;
        bool reachable = control_get(ctl, WIRE_PATH_HEALTHZ, &resp) == 0;
        if (!reachable) {
            say(false, "cannot reach the control plane at %s: %s", cfg.api_url, resp.error);
            problems++;
        } else {
            say(true, "control plane at %s answers GET /healthz (HTTP %ld)", cfg.api_url,
                resp.status);
        }
        control_resp_free(&resp);
        /* a heartbeat for a lease nobody holds: 404 proves the token is an agent token */
        buf body = BUF_INIT;
        wire_lease_id_body(&body, "00000000-0000-0000-0000-000000000000");
        if (reachable &&
            control_post(ctl, WIRE_PATH_HEARTBEAT, body.data, body.len, &resp, NULL) == 0) {
            if (resp.status == 401) {
                say(false, "the control plane refused the token in %s (revoked or mistyped?)",
                    cfg.token_file);
                problems++;
            } else if (resp.status == 403) {
                say(false,
                    "the token in %s is not an agent token (create one with POST "
                    "/api/agents)",
                    cfg.token_file);
                problems++;
            } else if (resp.status == 404 || resp.status == 200 || resp.status == 409) {
                say(true, "the control plane accepts the agent token");
            } else {
                printf("note:     could not verify the token: POST /api/agent/heartbeat "
                       "answered HTTP %ld\n",
                       resp.status);
            }
            control_resp_free(&resp);
        }
        buf_free(&body);
        control_free(ctl);
    }
    engine_config ec;
    if (make_engine_config(&cfg, &ec) < 0) {
        problems++;
    } else {
        ec.threads = 1;
        ec.concurrency = 1;
        engine *e = engine_create(&ec, err, sizeof err);
        if (e) {
            say(true, "io_uring works on this kernel");
            engine_destroy(e);
        } else {
            say(false, "the SMTP engine cannot start: %s", err);
            problems++;
        }
    }
    if (!problems)
        printf("kiln-agent check: all good\n");
    return problems ? 1 : 0;
}
