/* A lease call (see lease_grant.h): picks eligible mailboxes (FOR UPDATE SKIP LOCKED),
 * plans their slots with lease_plan from unlocked cap counts, writes everything in a few
 * batched statements and reserves the counters last, planning again when a competitor
 * took the room. Rules: DESIGN.md "Leasing rules", docs/leasing.md ("Caps"). */
#include "lease_grant.h"

#include "app.h"
#include "clock.h"
#include "lease_answer.h"
#include "lease_plan.h"
#include "lease_reply.h"
#include "lease_store.h"
#include "log.h"

#include <math.h>
#include <stdint.h>

/* Plans per call: a reservation falls short only when another grant took the same
 * room since the counts were read (then the next plan locks its buckets first); after
 * this many the call answers empty (retry in 1 s). */
#define CAP_ATTEMPTS 4

/* One attempt's state, from the pick to the answer; everything lives in the arena. */
typedef struct grant {
    http_req *rq;
    const lease_request *req;
    int64_t ttl_s, now_s;
    lease_row *rows;
    int nrows; /* eligible rows (they sort first) once picked */
    lease_text *texts;
    lease_push push;
    lease_pool pool;
    lease_replies replies; /* the senders' replies due within the horizon */
    int64_t *users;        /* the planned senders' users (repeats allowed) */
    int nusers;
    lease_plan *plan;
    lease_granted *granted;
    int ngranted;
    int64_t total, wake_min_s;
    bool backlog; /* more eligible mailboxes were due than this lease takes */
} grant;

/* After the commit, on its own (autocommit): the counter rows are shared by every
 * lease call, so they are never held with a grant's rows, and a failure costs a sample. */
static void count_duration(grant *g)
{
    double s = (double)(clock_mono_us() - g->req->started_us) / 1e6;
    if (!lease_store_count_duration(g->rq->db, g->rq->pool, s))
        log_warn("lease duration counter: %s", db_message(g->rq->db));
}

static void push(grant *g, int64_t mailbox_id, double due_s)
{
    g->push.mb[g->push.n] = mailbox_id;
    g->push.due_s[g->push.n++] = due_s;
}

/* Keeps the eligible rows. Rows picked but not eligible: due_at moves to the exact
 * next due time, and at least a minute on, so a mailbox whose next window is inside
 * the horizon is not picked again on every call until its local day turns. */
static void split_eligible(grant *g, int npicked)
{
    arena *a = g->rq->pool;
    g->push.mb = arena_alloc(a, (size_t)(npicked + 1) * sizeof *g->push.mb);
    g->push.due_s = arena_alloc(a, (size_t)(npicked + 1) * sizeof *g->push.due_s);
    g->push.n = 0;
    g->nrows = 0;
    for (int i = 0; i < npicked; i++) {
        if (g->rows[i].eligible) {
            g->nrows++;
            continue;
        }
        double due = g->rows[i].due_s, floor_s = (double)(g->now_s + 60);
        push(g, g->rows[i].m.id, due > floor_s ? due : floor_s);
    }
}

/* What the answer will carry of each mailbox is opened and checked before anything is
 * planned: a row that cannot be emitted gets no slot, goes to error with the reason
 * in last_error and out of the pool (due_at infinity, until a resume). */
static bool check_texts(grant *g)
{
    arena *a = g->rq->pool;
    g->texts = arena_calloc(a, (size_t)g->nrows * sizeof *g->texts);
    int64_t *bad = arena_alloc(a, (size_t)(g->nrows + 1) * sizeof *bad);
    const char **why = arena_alloc(a, (size_t)(g->nrows + 1) * sizeof *why);
    int nbad = 0;
    for (int i = 0; i < g->nrows; i++) {
        const char *w = lease_answer_check_row(a, &g->rq->app->key, &g->rows[i], &g->texts[i]);
        if (!w)
            continue;
        int64_t id = g->rows[i].m.id;
        log_warn("mailbox %lld left out of the lease and put in error: %s", (long long)id, w);
        g->texts[i].left_out = true;
        bad[nbad] = id;
        why[nbad++] = w;
        push(g, id, INFINITY);
    }
    return lease_store_set_error(g->rq->db, a, bad, why, nbad);
}

/* How far past now a mailbox's slots after its first may go: the lease's ttl, or under
 * a backlog KILN_LEASE_BACKLOG_AHEAD_S (docs/leasing.md "Backlog"). */
static int64_t more_span_s(const grant *g)
{
    int64_t ahead = g->rq->app->cfg.lease_backlog_ahead_s;
    return g->backlog && ahead > 0 && ahead < g->ttl_s ? ahead : g->ttl_s;
}

/* Pair history (the senders are locked by this transaction, so nobody adds to it),
 * recipient candidates (lease_plan_window: as many as the call can grant) and content,
 * read once per call. */
static bool load_pool(grant *g)
{
    const app_config *cfg = &g->rq->app->cfg;
    arena *a = g->rq->pool;
    int64_t *senders = arena_alloc(a, (size_t)(g->nrows + 1) * sizeof *senders);
    g->users = arena_alloc(a, (size_t)(g->nrows + 1) * sizeof *g->users);
    int n = 0;
    int64_t left = 0; /* the most slots the senders can take in this lease */
    int64_t span_s = more_span_s(g);
    for (int i = 0; i < g->nrows; i++) {
        if (g->texts[i].left_out)
            continue;
        senders[n] = g->rows[i].m.id;
        g->users[n++] = g->rows[i].m.user_id;
        left += lease_plan_slots_at_most(&g->rows[i].m, span_s);
    }
    g->nusers = n;
    int64_t ncand_want = lease_plan_window(g->req->max_sends, left);
    return lease_store_load_pool(g->rq->db, a, senders, n, cfg->pair_gap_days, ncand_want,
                                 cfg->recipients_require_inbox != 0, &g->pool) &&
           lease_reply_load(g->rq->db, a, senders, n, g->ttl_s, &g->pool, &g->replies);
}

/* The counts a plan starts from, read at each attempt: the cap buckets and the
 * candidates' inbound. The first attempt reads them unlocked (the reservation checks
 * them); a later one, after a competitor took the room, locks the buckets it can touch,
 * so it cannot lose them again (only a recipient's count can still have moved). */
static bool load_caps(grant *g, bool lock, lease_bucket_delta **buckets, size_t *nbuckets)
{
    const app_config *cfg = &g->rq->app->cfg;
    if (!lease_store_load_caps(g->rq->db, g->rq->pool, g->users, g->nusers, g->now_s, g->ttl_s,
                               lock, &g->pool, buckets, nbuckets))
        return false;
    /* A recipient's address and display name go into other mailboxes' slots (to,
     * greetings): one that cannot be emitted is never picked (treated as full). */
    for (size_t i = 0; i < g->pool.ncand; i++) {
        g->pool.cands[i].assigned = 0;
        if (!lease_answer_recipient_ok(g->pool.address[i], g->pool.display_name[i]))
            g->pool.cands[i].received = cfg->recipient_daily_cap;
    }
    for (size_t i = 0; i < g->replies.n; i++)
        g->replies.v[i].taken = false;
    return true;
}

/* A global cap of 0 is no cap (deploy/config/api.env): the largest a bucket row holds,
 * so the plan and the reservation need no case of their own. A plan's user caps are
 * not so: a user cap of 0 grants that user nothing. */
static int64_t global_cap(int64_t configured)
{
    return configured > 0 ? configured : INT32_MAX;
}

static void plan_init(grant *g, const lease_bucket_delta *buckets, size_t nbuckets)
{
    const app_config *cfg = &g->rq->app->cfg;
    lease_limits lim = {
        .now_s = g->now_s,
        .horizon_end_s = g->now_s + g->ttl_s,
        .more_end_s = g->now_s + more_span_s(g),
        .global_minute_cap = global_cap(cfg->global_minute_cap),
        .global_hour_cap = global_cap(cfg->global_hourly_cap),
        .recipient_daily_cap = cfg->recipient_daily_cap,
        .pair_check = cfg->pair_gap_days > 0,
    };
    size_t max_sends = (size_t)g->req->max_sends;
    g->plan = lease_plan_new(g->rq->pool, &lim, nbuckets + 4 * max_sends + 64,
                             g->pool.npairs + max_sends, g->pool.cands, g->pool.ncand);
    for (size_t i = 0; i < nbuckets; i++)
        lease_plan_load_bucket(g->plan, buckets[i].user_id, buckets[i].width_s, buckets[i].at_s,
                               buckets[i].n);
    for (size_t i = 0; i < g->pool.npairs; i++)
        lease_plan_load_pair(g->plan, g->pool.pairs[i].sender, g->pool.pairs[i].recipient);
    lease_plan_load_placements(g->plan, g->pool.placements, g->pool.nplacements);
}

/* Plans each usable row, furthest behind first, until max_sends. */
static void plan_rows(grant *g)
{
    arena *a = g->rq->pool;
    g->granted = arena_calloc(a, (size_t)(g->nrows + 1) * sizeof *g->granted);
    g->ngranted = 0;
    g->total = 0;
    g->wake_min_s = 0;
    for (int i = 0; i < g->nrows && g->total < g->req->max_sends; i++) {
        if (g->texts[i].left_out)
            continue;
        lease_granted *gr = &g->granted[g->ngranted];
        lease_mailbox *mw = &g->rows[i].m;
        mw->nreply_due = lease_reply_dues(&g->replies, mw->id, a, &mw->reply_due_s);
        const lease_mailbox *m = mw;
        int64_t left = m->target - m->done;
        gr->row = i;
        gr->r = &g->rows[i];
        gr->slots = arena_alloc(a, (size_t)(left > 0 ? left : 1) * sizeof *gr->slots);
        int room = (int)(g->req->max_sends - g->total);
        if (room > left)
            room = (int)left;
        int64_t wake = 0;
        gr->nslots = lease_plan_mailbox(g->plan, m, room, gr->slots, &gr->next_at_s, &wake);
        if (wake > 0 && (g->wake_min_s == 0 || wake < g->wake_min_s))
            g->wake_min_s = wake;
        if (gr->nslots > 0) {
            /* Due replies take planned slots over: caps, window and cooldown as planned. */
            lease_reply_assign(a, &g->replies, &g->pool, g->rq->app->cfg.recipient_daily_cap, gr);
            g->total += gr->nslots;
            g->ngranted++;
        } else {
            /* Eligible but nothing fits (caps, recipients): ask again at the planner's
             * hint, or in a minute. */
            push(g, m->id, (double)(wake > g->now_s ? wake : g->now_s + 60));
        }
    }
}

/* The new lease's send ids, Message-IDs and subjects (stored: a reply quotes them), the
 * batched write, then the counters (*reserved: lease_store_reserve_caps);
 * bodies are only in the answer, so they are rendered after the commit. */
static bool write_grant(grant *g, const char **lease_id, enum lease_reserve *reserved)
{
    arena *a = g->rq->pool;
    int64_t *send_ids = NULL;
    if (!lease_store_new_lease(g->rq->db, a, g->rq->auth.agent_id, g->ttl_s, g->total, lease_id,
                               &send_ids))
        return false;
    int k = 0;
    for (int gi = 0; gi < g->ngranted; gi++) {
        lease_granted *gr = &g->granted[gi];
        const char **mids = arena_alloc(a, (size_t)gr->nslots * sizeof *mids);
        gr->send_ids = send_ids + k;
        for (int s = 0; s < gr->nslots; s++)
            mids[s] = lease_answer_message_id(a, g->rq->app->msgid_keys, send_ids[k + s],
                                              gr->r->m.domain);
        gr->message_ids = mids;
        lease_answer_compose(a, &g->pool, gr);
        k += gr->nslots;
    }
    size_t maxd = (size_t)g->total * 4 + 4;
    lease_bucket_delta *deltas = arena_alloc(a, maxd * sizeof *deltas);
    size_t nd = lease_plan_deltas(g->plan, deltas, maxd);
    return lease_store_grant(g->rq->db, a, *lease_id, g->granted, g->ngranted, &g->pool) &&
           lease_store_reserve_caps(g->rq->db, a, &g->pool, g->rq->app->cfg.recipient_daily_cap,
                                    g->now_s, deltas, nd, reserved);
}

/* Commits a call that grants nothing and answers when to come back. */
static enum db_tx answer_empty(grant *g, http_resp *rs, int64_t retry_after_s)
{
    if (!lease_store_push_due(g->rq->db, g->rq->pool, &g->push) || !db_commit(g->rq->db))
        return http_tx_fail(g->rq, rs);
    count_duration(g);
    lease_answer_empty(g->rq->pool, &g->rq->app->key, rs, g->ttl_s, retry_after_s, "running",
                       g->req->inbox);
    return DB_TX_OK;
}

enum db_tx lease_grant(http_req *rq, http_resp *rs, void *ctx)
{
    grant g = {.rq = rq, .req = ctx, .ttl_s = rq->app->cfg.lease_ttl_s};
    bool running = false;
    int npicked = 0;
    if (!lease_store_begin(rq->db, rq->pool, rq->auth.agent_id, &g.now_s, &running))
        return http_tx_fail(rq, rs);
    if (!running) {
        if (!db_commit(rq->db))
            return http_tx_fail(rq, rs);
        lease_answer_empty(rq->pool, &rq->app->key, rs, g.ttl_s, 60, "stopped", g.req->inbox);
        return DB_TX_OK;
    }
    /* One row more than asked for tells whether others are waiting: eligible rows sort
     * first, so an eligible extra row means more eligible mailboxes than this lease
     * takes (the backlog). It is not leased, and its lock goes at the commit. */
    if (!lease_store_pick(rq->db, rq->pool, g.req->max_mailboxes + 1, g.ttl_s, &g.rows, &npicked))
        return http_tx_fail(rq, rs);
    int max_mb = (int)g.req->max_mailboxes;
    g.backlog = npicked > max_mb && g.rows[max_mb].eligible;
    if (g.backlog)
        npicked = max_mb;
    split_eligible(&g, npicked);
    if (g.nrows == 0)
        return answer_empty(&g, rs, npicked > 0 ? 1 : 30);

    if (!check_texts(&g) || !load_pool(&g) || !db_savepoint(rq->db))
        return http_tx_fail(rq, rs);
    const char *lease_id = NULL;
    int npush = g.push.n; /* the picked rows that got nothing before any plan */
    for (int attempt = 0;; attempt++) {
        lease_bucket_delta *buckets = NULL;
        size_t nbuckets = 0;
        g.push.n = npush;
        if (!load_caps(&g, attempt > 0, &buckets, &nbuckets))
            return http_tx_fail(rq, rs);
        plan_init(&g, buckets, nbuckets);
        plan_rows(&g);
        if (g.total == 0) {
            /* Locked rows are let go by the commit; nothing was written. */
            int64_t retry = g.wake_min_s > g.now_s ? g.wake_min_s - g.now_s : 30;
            return answer_empty(&g, rs, retry < 1 ? 1 : retry > 300 ? 300 : retry);
        }
        enum lease_reserve reserved = LEASE_RESERVE_SHORT;
        if (!lease_store_push_due(rq->db, rq->pool, &g.push) ||
            !write_grant(&g, &lease_id, &reserved))
            return http_tx_fail(rq, rs);
        if (reserved == LEASE_RESERVE_OK)
            break;
        /* Another grant took room this plan counted on: undo the write (and let go of
         * the counter rows) and plan again from the counts as they are now. A plan that
         * waited so long its now is stale is not made again from that now: the agent
         * comes back in a second for a fresh one. */
        if (!db_rollback_to_savepoint(rq->db))
            return http_tx_fail(rq, rs);
        if (reserved == LEASE_RESERVE_STALE)
            log_warn("a grant planned more than %d s ago was not written (kiln-api or "
                     "PostgreSQL stalled, or the clock moved); the agent asks again",
                     LEASE_PLAN_MAX_AGE_S);
        if (attempt + 1 == CAP_ATTEMPTS || reserved == LEASE_RESERVE_STALE) {
            g.push.n = npush;
            return answer_empty(&g, rs, 1);
        }
    }
    if (!db_commit(rq->db))
        return http_tx_fail(rq, rs);
    count_duration(&g);
    lease_answer ans = {lease_id, g.ttl_s, g.now_s,       g.granted,   g.ngranted,
                        g.texts,  &g.pool, &rq->app->key, g.req->inbox};
    lease_answer_write(rq->pool, rs, &ans);
    return DB_TX_OK;
}
