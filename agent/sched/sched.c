/* The scheduler of an I/O thread: works (slots of one mailbox due together) wait in
 * a timer heap until due, then in their host's queue until DNS, a free session and
 * the host's limits let them start; a session runs over net/, and when it ends
 * sched_session_done decides, in one place, what becomes of each slot. */
#include "sched_internal.h"

#include "clock.h"
#include "log.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The message scratch buffer is not kept past this between sessions. */
#define MSG_SCRATCH_KEEP 16384

/* ---- works and their slots ---- */

/* The mailbox's lease deadline, moved by a renewal (engine_extend) if one came. */
static int64_t mbox_deadline(struct io_thread *t, struct mbox *mb)
{
    engine *e = t->e;
    unsigned v = atomic_load(&e->ext_version);
    if (!mb->lease_key || mb->ext_seen == v)
        return mb->deadline_ms;
    pthread_mutex_lock(&e->ext_mu);
    for (size_t i = 0; i < e->next_ext; i++)
        if (e->ext[i].key == mb->lease_key && e->ext[i].deadline_ms > mb->deadline_ms)
            mb->deadline_ms = e->ext[i].deadline_ms;
    pthread_mutex_unlock(&e->ext_mu);
    mb->ext_seen = v;
    return mb->deadline_ms;
}

/* The latest time a send of mb may start: a session, a transaction or a payload. */
static int64_t mbox_start_limit(struct io_thread *t, struct mbox *mb)
{
    return mbox_deadline(t, mb) - t->e->cfg.lease_margin_ms;
}

/* One slot's final result. Returns true after the mailbox's last slot: the caller frees
 * it with mbox_free once it has stopped reading w->mb (a mailbox's remaining count covers
 * every unfinished slot of its works, so this is always the last slot of w). */
static bool slot_final(struct io_thread *t, struct work *w, size_t k, int status, int code,
                       const char *enhanced, const char *detail, int64_t latency_ms)
{
    engine_result r;
    memset(&r, 0, sizeof r);
    job_send *s = &w->mb->m->sends[w->sends[k]];
    r.send_id = s->id;
    r.mailbox_id = w->mb->m->id;
    r.status = status;
    r.smtp_code = code;
    snprintf(r.enhanced, sizeof r.enhanced, "%s", enhanced ? enhanced : "");
    snprintf(r.detail, sizeof r.detail, "%s", detail ? detail : "");
    r.latency_ms = latency_ms < 0 ? 0 : latency_ms;
    r.attempts = w->attempt;
    sched_result_push(t, &r);
    return --w->mb->remaining == 0;
}

static void mbox_free(struct mbox *mb)
{
    job_mailbox_free(mb->m);
    free(mb);
}

static void work_free(struct work *w)
{
    free(w->sends);
    free(w);
}

/* ---- cancels ---- */

static bool slot_cancelled(const struct io_thread *t, const struct work *w, size_t k)
{
    return t->cancel_all || i64map_has(&t->cancelled, w->mb->m->sends[w->sends[k]].id);
}

/* Ends the cancelled slots of a work that has not started; returns how many are left
 * (0: the work is freed). *mb_freed (may be NULL) tells whether that freed the mailbox
 * too, which happens only with its last unfinished slot. */
static size_t work_filter(struct io_thread *t, struct work *w, bool *mb_freed)
{
    size_t keep = 0, n = w->n;
    bool freed = false;
    uint32_t *ids = w->sends;
    for (size_t k = 0; k < n; k++) {
        if (!slot_cancelled(t, w, k)) {
            ids[keep++] = ids[k];
            continue;
        }
        /* the mailbox is freed after its last slot: nothing of w->mb is read after
         * that */
        engine_result r;
        memset(&r, 0, sizeof r);
        r.send_id = w->mb->m->sends[ids[k]].id;
        r.mailbox_id = w->mb->m->id;
        r.status = SMTP_ST_DEFERRED;
        r.cancelled = true;
        r.attempts = w->attempt - 1;
        snprintf(r.detail, sizeof r.detail, "cancelled before it started");
        sched_result_push(t, &r);
        if (--w->mb->remaining == 0) {
            /* the mailbox's last unfinished slot, so the last of w too */
            mbox_free(w->mb);
            w->mb = NULL;
            freed = true;
            break;
        }
    }
    w->n = keep;
    if (mb_freed)
        *mb_freed = freed;
    if (!keep || freed) {
        work_free(w);
        return 0;
    }
    return keep;
}

/* Every slot of w ends with the same outcome. True when that freed the mailbox too
 * (w held its last unfinished slots). */
static bool work_final_all(struct io_thread *t, struct work *w, int status, const char *detail)
{
    struct mbox *done = NULL;
    for (size_t k = 0; k < w->n; k++)
        if (slot_final(t, w, k, status, 0, NULL, detail, 0))
            done = w->mb;
    work_free(w);
    if (done)
        mbox_free(done);
    return done != NULL;
}

void sched_cancel_add(struct io_thread *t, int64_t send_id)
{
    i64map_put(&t->cancelled, send_id, 1);
}

/* ---- hosts ---- */

static struct host *host_get(struct io_thread *t, const char *name, int port)
{
    struct host **slot = &t->hosts[host_key_hash(name, port) % HOST_BUCKETS];
    for (struct host *x = *slot; x; x = x->hash_next)
        if (x->dest.port == port && !strcmp(x->dest.name, name))
            return x;
    struct host *x = xcalloc(1, sizeof *x);
    x->dest.name = xstrdup(name);
    x->dest.port = port;
    x->limits = host_table_get(t->e->limits, name, port, t->net.now_ms);
    x->hash_next = *slot;
    *slot = x;
    return x;
}

static void host_mark_ready(struct io_thread *t, struct host *h)
{
    if (h->queued)
        return;
    h->queued = true;
    h->ready_next = t->ready;
    t->ready = h;
}

static void host_enqueue(struct io_thread *t, struct work *w)
{
    struct host *h = w->host;
    w->next = NULL;
    if (h->wait_tail)
        h->wait_tail->next = w;
    else
        h->wait_head = w;
    h->wait_tail = w;
    host_mark_ready(t, h);
}

/* A session at h ended: the room it frees may let other threads' queues move. */
static void host_release(struct io_thread *t, struct host *h, bool host_ok)
{
    uint64_t waiters = host_limits_release(h->limits, host_ok, t->net.now_ms);
    if (h->wait_head)
        host_mark_ready(t, h);
    if (!(waiters & ~(UINT64_C(1) << (t->id % 64))))
        return;
    engine *e = t->e;
    for (int i = 0; i < e->nthreads; i++) {
        struct io_thread *o = &e->threads[i];
        if (o != t && (waiters & (UINT64_C(1) << (i % 64)))) {
            atomic_store(&o->hosts_released, true);
            sched_thread_wake(o);
        }
    }
}

void sched_hosts_recheck(struct io_thread *t, bool released)
{
    for (uint32_t b = 0; b < HOST_BUCKETS; b++)
        for (struct host *h = t->hosts[b]; h; h = h->hash_next)
            if (h->wait_head && (released || h->dns == DNS_PENDING))
                host_mark_ready(t, h);
}

/* Resolves the host; false while the answer is pending or when it failed (then the
 * waiting works are settled). */
static bool host_resolve(struct io_thread *t, struct host *h)
{
    if (h->dns == DNS_OK && h->addr_expires_ms > t->net.now_ms)
        return true;
    char err[160];
    int permanent = 0;
    int rc = resolver_lookup(t->e->res, h->dest.name, h->dest.port, t->net.efd, t->net.now_ms,
                             &h->dest.addrs, &permanent, err, sizeof err);
    if (rc == RESOLVER_OK) {
        h->dns = DNS_OK;
        if (h->dest.addr_first >= h->dest.addrs.n)
            h->dest.addr_first = 0;
        h->addr_expires_ms = t->net.now_ms + t->e->cfg.dns_ttl_ms;
        return true;
    }
    if (rc == RESOLVER_PENDING) {
        h->dns = DNS_PENDING;
        return false;
    }
    h->dns = DNS_NONE;
    while (h->wait_head) {
        struct work *w = h->wait_head;
        h->wait_head = w->next;
        work_final_all(t, w, permanent ? SMTP_ST_FAILED : SMTP_ST_DEFERRED, err);
    }
    h->wait_tail = NULL;
    return false;
}

/* ---- cancels of works not started ---- */

static bool work_keep(void *item, void *arg)
{
    return work_filter(arg, item, NULL) > 0;
}

void sched_cancel_pending(struct io_thread *t)
{
    timer_heap_retain(&t->works, work_keep, t);
    for (uint32_t b = 0; b < HOST_BUCKETS; b++)
        for (struct host *h = t->hosts[b]; h; h = h->hash_next) {
            struct work *list = h->wait_head;
            h->wait_head = h->wait_tail = NULL;
            while (list) {
                struct work *next = list->next;
                list->next = NULL;
                if (work_filter(t, list, NULL) > 0) {
                    if (h->wait_tail)
                        h->wait_tail->next = list;
                    else
                        h->wait_head = list;
                    h->wait_tail = list;
                }
                list = next;
            }
        }
}

/* ---- sessions ---- */

uint64_t sched_token(const struct io_thread *t, const net_conn *c)
{
    return ((uint64_t)t->id << 56) | ((uint64_t)(c->gen & 0xFFFFFF) << 32) | c->idx;
}

static int64_t session_start_limit(void *owner)
{
    struct session *s = owner;
    return mbox_start_limit(s->t, s->w->mb);
}

/* The server waits for slot k's data: its intent must be durable first. */
static void session_gate(void *owner, size_t k)
{
    struct session *s = owner;
    struct io_thread *t = s->t;
    engine *e = t->e;
    int64_t id = s->w->mb->m->sends[s->w->sends[k]].id;
    net_conn *c = &t->net.conns[s - t->sessions];
    e->cfg.intent_fn(e->cfg.intent_arg, sched_token(t, c), &id, 1);
}

static const smtp_net_hooks hooks_gated = {session_start_limit, session_gate};
static const smtp_net_hooks hooks_plain = {session_start_limit, NULL};

/* Builds the payloads and opens the connection for work w on a free session. */
static void session_start(struct io_thread *t, struct work *w)
{
    engine *e = t->e;
    net_conn *c = net_conn_take(&t->net);
    struct session *s = &t->sessions[c->idx];
    atomic_fetch_add(&e->m_sessions, 1);
    atomic_fetch_add(&e->m_sessions_active, 1);
    job_mailbox *m = w->mb->m;
    s->w = w;
    s->t = t;
    s->start_ms = t->net.now_ms;
    smtp_net_begin(&s->smtp, w->n);
    int64_t now_s = clock_wall_ms() / 1000;
    for (size_t k = 0; k < w->n; k++) {
        job_send *js = &m->sends[w->sends[k]];
        smtp_message mm = {.from_addr = m->address,
                           .from_name = m->display_name,
                           .to_addr = js->to,
                           .subject = js->subject,
                           .body = js->body,
                           .message_id = js->message_id,
                           .in_reply_to = js->in_reply_to,
                           .references = (const char *const *)js->references,
                           .nreferences = js->nreferences,
                           .date_unix_s = now_s};
        smtp_net_add(&s->smtp, k, &mm, &t->msg_scratch);
    }
    if (t->msg_scratch.cap > MSG_SCRATCH_KEEP)
        buf_free(&t->msg_scratch);
    smtp_session_params p = {.helo_name = e->cfg.helo_name,
                             .mail_from = m->address,
                             .security = m->security,
                             .username = m->username,
                             .password = m->password,
                             .oauth_token = m->oauth_token,
                             .allow_plaintext_auth = m->allow_plaintext_auth,
                             /* the start limit is checked at the gate even when no
                              * intent is to be recorded */
                             .gate_payload = true};
    smtp_net_start(&s->smtp, &p, e->cfg.state_timeout_ms,
                   e->cfg.intent_fn ? &hooks_gated : &hooks_plain, s);
    net_conn_params np = {.dest = &w->host->dest,
                          .tls = w->mb->tls,
                          .tls_err = w->mb->tls_err,
                          .ops = &smtp_net_ops,
                          .session = &s->smtp};
    net_conn_start(&t->net, c, &np);
}

/* A uniform draw in [0, 1) for backoff jitter: spreading retries needs no
 * cryptographic randomness, and the CSPRNG costs a system call per draw. */
static double jitter(struct io_thread *t)
{
    uint64_t x = t->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t->rng = x;
    return (double)(x >> 11) / 9007199254740992.0; /* 2^53 */
}

/* The one retry decision: every slot of the ended session s becomes final, or goes
 * back (deferred, not cancelled, attempts and lease left) as one work for another
 * attempt after a backoff. */
static void sched_session_done(struct io_thread *t, struct session *s)
{
    engine *e = t->e;
    struct work *w = s->w;
    smtp_slot *slots = s->smtp.slots;
    struct work *retry = NULL;
    struct mbox *done = NULL; /* freed after the loop, which reads w->mb */
    bool any_deferred = false;
    for (size_t k = 0; k < w->n; k++) {
        if (slots[k].status == SMTP_ST_PENDING)
            slots[k].status = SMTP_ST_DEFERRED;
        any_deferred |= slots[k].status == SMTP_ST_DEFERRED;
    }
    int64_t now = t->net.now_ms;
    int64_t delay = any_deferred ? backoff_delay_ms(&t->shaping, w->attempt, jitter(t)) : 0;
    bool may_retry = any_deferred && w->attempt < e->cfg.max_attempts &&
                     now + delay < mbox_deadline(t, w->mb) - e->cfg.lease_margin_ms;
    for (size_t k = 0; k < w->n; k++) {
        smtp_slot *sl = &slots[k];
        int64_t lat = (sl->done_ms ? sl->done_ms : now) - s->start_ms;
        if (sl->status == SMTP_ST_DEFERRED && may_retry && !slot_cancelled(t, w, k)) {
            if (!retry) {
                retry = xcalloc(1, sizeof *retry);
                retry->mb = w->mb;
                retry->host = w->host;
                retry->sends = xcalloc(w->n, sizeof *retry->sends);
                retry->attempt = w->attempt + 1;
                retry->due_ms = now + delay;
            }
            retry->sends[retry->n++] = w->sends[k];
            continue;
        }
        if (slot_final(t, w, k, sl->status, sl->code, sl->enhanced, sl->detail, lat))
            done = w->mb;
    }
    if (retry) {
        atomic_fetch_add(&e->m_retries, 1);
        timer_heap_push(&t->works, retry->due_ms, retry);
    }
    work_free(w);
    if (done)
        mbox_free(done);
}

/* net_owner_ops: the session's hard deadline is its lease's. */
int64_t sched_conn_deadline(void *owner, net_conn *c)
{
    struct io_thread *t = owner;
    return mbox_deadline(t, t->sessions[c->idx].w->mb);
}

/* net_owner_ops: another address only while a session may still start. */
bool sched_conn_may_reconnect(void *owner, net_conn *c)
{
    struct io_thread *t = owner;
    return !t->cancel_all && t->net.now_ms < mbox_start_limit(t, t->sessions[c->idx].w->mb);
}

/* net_owner_ops: the connection is over; net frees its own part after. */
void sched_conn_done(void *owner, net_conn *c, bool host_ok)
{
    struct io_thread *t = owner;
    struct session *s = &t->sessions[c->idx];
    host_release(t, s->w->host, host_ok);
    sched_session_done(t, s);
    smtp_net_clear(&s->smtp);
    s->w = NULL;
    atomic_fetch_sub(&t->e->m_sessions_active, 1);
}

/* The spool has (or could not write) the intent of a session's current slot, whose
 * payload waits at the gate. A session that ended meanwhile (timeout, drop) is gone. */
void sched_intent_done(struct io_thread *t, uint64_t token, bool ok)
{
    uint32_t idx = (uint32_t)token;
    if (idx >= t->net.nconns)
        return;
    net_conn *c = &t->net.conns[idx];
    struct session *s = &t->sessions[idx];
    if (c->state != NET_C_SESSION || c->gen != ((uint32_t)(token >> 32) & 0xFFFFFF) ||
        !s->smtp.gated)
        return;
    net_conn_resume(&t->net, c, smtp_net_gate_open(&s->smtp, ok, t->net.now_ms));
}

/* ---- scheduling ---- */

/* Puts a work in the heap to wake when it is due, or at its lease's start limit when
 * that comes first (a renewal may still move the limit past its due time). */
static void work_schedule(struct io_thread *t, struct work *w)
{
    int64_t limit = mbox_start_limit(t, w->mb);
    timer_heap_push(&t->works, w->due_ms < limit ? w->due_ms : limit, w);
}

/* Simulation (engine dry_run_ms >= 0): a due work would have started its session now;
 * instead its slots end "sent" dry_run_ms later, never touching the network. */
static bool work_dry_run(struct io_thread *t, struct work *w)
{
    int64_t ms = t->e->cfg.dry_run_ms;
    if (ms < 0)
        return false;
    if (!w->dry_run) {
        if (work_filter(t, w, NULL) == 0) /* cancelled slots end as they would at a start */
            return true;
        w->dry_run = true;
        w->due_ms = t->net.now_ms + ms;
        timer_heap_push(&t->works, w->due_ms, w);
        return true;
    }
    struct mbox *done = NULL;
    for (size_t k = 0; k < w->n; k++)
        if (slot_final(t, w, k, SMTP_ST_SENT, 250, "2.0.0",
                       "dry run: simulated, no SMTP session was opened", ms))
            done = w->mb;
    work_free(w);
    if (done)
        mbox_free(done);
    return true;
}

/* A work's wake time came: it is due, or its lease ends before it is. */
static void work_due(struct io_thread *t, struct work *w)
{
    if (w->dry_run) {
        work_dry_run(t, w);
        return;
    }
    int64_t limit = mbox_start_limit(t, w->mb);
    if (w->due_ms >= limit && t->net.now_ms >= limit) {
        work_final_all(t, w, SMTP_ST_DEFERRED,
                       w->due_ms > t->net.now_ms ? "not sent: due after the lease deadline"
                                                 : "not sent: lease deadline reached");
        return;
    }
    if (t->net.now_ms < w->due_ms) { /* renewed meanwhile: wait on */
        work_schedule(t, w);
        return;
    }
    if (t->net.now_ms >= limit) {
        work_final_all(t, w, SMTP_ST_DEFERRED, "not sent: lease deadline reached");
        return;
    }
    if (!work_dry_run(t, w))
        host_enqueue(t, w);
}

/* Starts what may start; returns the earliest time something blocked may go. */
int64_t sched_dispatch(struct io_thread *t)
{
    while (timer_heap_next_ms(&t->works) <= t->net.now_ms)
        work_due(t, timer_heap_pop(&t->works));
    int64_t wake = timer_heap_next_ms(&t->works);

    struct host *list = t->ready;
    t->ready = NULL;
    while (list) {
        struct host *h = list;
        list = h->ready_next;
        h->queued = false;
        /* whatever waits here (a DNS answer, a free session, the shaper) waits no
         * longer than its lease allows */
        while (h->wait_head && t->net.now_ms >= mbox_start_limit(t, h->wait_head->mb)) {
            struct work *w = h->wait_head;
            h->wait_head = w->next;
            work_final_all(t, w, SMTP_ST_DEFERRED, "not sent: lease deadline reached");
        }
        if (!h->wait_head) {
            h->wait_tail = NULL;
            continue;
        }
        if (!host_resolve(t, h)) {
            if (h->wait_head) {
                host_mark_ready(t, h); /* the resolver's eventfd write wakes us */
                int64_t until = mbox_start_limit(t, h->wait_head->mb);
                if (until < wake)
                    wake = until;
            }
            continue;
        }
        while (h->wait_head && t->net.free_conns) {
            struct work *w = h->wait_head;
            if (t->net.now_ms >= mbox_start_limit(t, w->mb)) {
                h->wait_head = w->next;
                work_final_all(t, w, SMTP_ST_DEFERRED, "not sent: lease deadline reached");
                continue;
            }
            int64_t rc = host_limits_acquire(h->limits, t->id, t->net.now_ms);
            if (rc != SHAPER_GO) {
                /* held back: look again when allowed, or when the lease runs out */
                int64_t until = mbox_start_limit(t, w->mb);
                if (rc > 0 && t->net.now_ms + rc < until)
                    until = t->net.now_ms + rc;
                if (until < wake)
                    wake = until;
                host_mark_ready(t, h);
                break;
            }
            h->wait_head = w->next;
            if (!h->wait_head)
                h->wait_tail = NULL;
            session_start(t, w);
        }
        if (!h->wait_head) {
            h->wait_tail = NULL;
        } else if (!t->net.free_conns) {
            host_mark_ready(t, h);
            int64_t until = mbox_start_limit(t, h->wait_head->mb);
            if (until < wake)
                wake = until;
        }
    }
    return wake;
}

/* A submitted mailbox becomes works: its slots sorted by due time, grouped when due
 * together (same not_before_s), at most batch_max per session. */
void sched_mailbox_accept(struct io_thread *t, struct inbox_item *it)
{
    job_mailbox *m = it->m;
    if (!m->nsends) {
        job_mailbox_free(m);
        return;
    }
    struct mbox *mb = xcalloc(1, sizeof *mb);
    mb->m = m;
    mb->lease_start_ms = it->lease_start_ms;
    mb->deadline_ms = it->deadline_ms;
    mb->lease_key = it->lease_key;
    mb->remaining = m->nsends;
    mb->tls = it->tls;
    memcpy(mb->tls_err, it->tls_err, sizeof mb->tls_err);
    uint32_t *order = xcalloc(m->nsends, sizeof *order);
    for (size_t i = 0; i < m->nsends; i++) {
        /* insertion sort by not_before_s: a mailbox has a few dozen slots a day */
        size_t j = i;
        while (j > 0 && m->sends[order[j - 1]].not_before_s > m->sends[i].not_before_s) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (uint32_t)i;
    }
    struct host *h = host_get(t, m->host, m->port);
    /* While draining, work_filter cancels each group and frees the mailbox with its
     * last one: the loop must not read m after that. */
    const size_t nsends = m->nsends;
    size_t i = 0;
    while (i < nsends) {
        struct work *w = xcalloc(1, sizeof *w);
        w->mb = mb;
        w->host = h;
        w->attempt = 1;
        w->sends = xcalloc((size_t)t->e->cfg.batch_max, sizeof *w->sends);
        int64_t nb = m->sends[order[i]].not_before_s;
        while (i < nsends && w->n < (size_t)t->e->cfg.batch_max &&
               m->sends[order[i]].not_before_s == nb)
            w->sends[w->n++] = order[i++];
        w->due_ms = mb->lease_start_ms + nb * 1000;
        bool mb_freed = false;
        if (t->cancel_all && work_filter(t, w, &mb_freed) == 0) {
            if (mb_freed)
                break;
            continue;
        }
        /* a lease that cannot be renewed ends what it cannot reach now, not later */
        if (!mb->lease_key && w->due_ms >= mbox_start_limit(t, mb)) {
            if (work_final_all(t, w, SMTP_ST_DEFERRED, "not sent: due after the lease deadline"))
                break;
            continue;
        }
        work_schedule(t, w);
    }
    free(order);
}

/* ---- shutdown ---- */

/* Adds mb to the set of unfinished mailboxes unless already there. */
static void mbox_collect(struct mbox ***set, size_t *n, size_t *cap, struct mbox *mb)
{
    for (size_t k = 0; k < *n; k++)
        if ((*set)[k] == mb)
            return;
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        /* an array of pointers: sizeof a pointer is meant */
        *set = xrealloc(*set, *cap * sizeof **set); // NOLINT(bugprone-sizeof-expression)
    }
    (*set)[(*n)++] = mb;
}

void sched_thread_cleanup(struct io_thread *t)
{
    struct mbox **mbs = NULL;
    size_t nmb = 0, cap = 0;
    if (t->sessions)
        for (uint32_t i = 0; i < t->net.nconns; i++) {
            struct session *s = &t->sessions[i];
            smtp_net_dispose(&s->smtp);
            if (!s->w)
                continue;
            mbox_collect(&mbs, &nmb, &cap, s->w->mb);
            work_free(s->w);
            s->w = NULL;
        }
    free(t->sessions);
    t->sessions = NULL;
    while (t->works.len) {
        struct work *w = timer_heap_pop(&t->works);
        mbox_collect(&mbs, &nmb, &cap, w->mb);
        work_free(w);
    }
    timer_heap_free(&t->works);
    for (uint32_t b = 0; b < HOST_BUCKETS; b++) {
        struct host *h = t->hosts[b];
        while (h) {
            struct host *n = h->hash_next;
            while (h->wait_head) {
                struct work *w = h->wait_head;
                h->wait_head = w->next;
                mbox_collect(&mbs, &nmb, &cap, w->mb);
                work_free(w);
            }
            free(h->dest.name);
            free(h);
            h = n;
        }
        t->hosts[b] = NULL;
    }
    for (size_t k = 0; k < nmb; k++)
        mbox_free(mbs[k]);
    free(mbs);
    i64map_free(&t->cancelled);
    free(t->results);
    t->results = NULL;
    buf_free(&t->msg_scratch);
}
