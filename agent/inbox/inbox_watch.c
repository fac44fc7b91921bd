/* One inbox's life in the engine (inbox_internal.h): its timer fires, its server's name
 * is resolved (never blocking: the resolver thread answers through the loop's
 * eventfd), its server's limits admit a connection (or it queues), the IMAP session
 * runs over net/, and when the connection is over the next poll is scheduled: the
 * poll interval after a good pass, a backoff with jitter after a failure, and a pause
 * for the whole server when it said [THROTTLED] or BYE. */
#include "inbox_internal.h"

#include "log.h"
#include "rand.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[IB_STATE_COUNT] = {
    "waiting", "backoff", "resolving", "queued", "connecting", "active", "idle", "kept", "done"};

const char *inbox_state_name(int state)
{
    return state >= 0 && state < IB_STATE_COUNT ? state_names[state] : "?";
}

/* The one place an inbox changes state; a move the design does not have is a bug. */
void inbox_enter(inbox_engine *e, inbox *ib, int state)
{
    bool ok;
    switch (state) {
    case IB_WAIT:
    case IB_BACKOFF: /* after a connection, a failed lookup, a shaper's wait; or an
                        inbox handed over again */
        ok = true;
        break;
    case IB_RESOLVE:
    case IB_QUEUED:
    case IB_CONNECTING:
        ok = ib->state == IB_WAIT || ib->state == IB_BACKOFF || ib->state == IB_RESOLVE ||
             ib->state == IB_QUEUED;
        break;
    case IB_ACTIVE:
        ok = ib->state == IB_CONNECTING || ib->state == IB_IDLE || ib->state == IB_ACTIVE ||
             ib->state == IB_KEPT;
        break;
    case IB_IDLE:
    case IB_KEPT:
        ok = ib->state == IB_ACTIVE;
        break;
    case IB_DONE:
        ok = true;
        break;
    default:
        ok = false;
        break;
    }
    if (!ok) {
        log_error("inbox %lld: no move from state %s to %s", (long long)ib->spec->mailbox_id,
                  inbox_state_name(ib->state), inbox_state_name(state));
        abort();
    }
    atomic_fetch_sub(&e->by_state[ib->state], 1);
    atomic_fetch_add(&e->by_state[state], 1);
    ib->state = state;
}

/* Waits until at_ms in state (IB_WAIT or IB_BACKOFF). An earlier entry of the heap for
 * this inbox is recognised when it pops (timer_ms moved) and dropped. */
void inbox_arm(inbox_engine *e, inbox *ib, int state, int64_t at_ms)
{
    inbox_enter(e, ib, state);
    ib->timer_ms = at_ms;
    ib->timer_armed = true;
    if (at_ms > e->loop.now_ms) {
        timer_heap_push(&e->timers, at_ms, ib);
        return;
    }
    /* due now (a new inbox, a reconnect): fired in the order armed, which the heap's
     * order of equal times is not */
    if (ib->in_now_q)
        return;
    ib->in_now_q = true;
    ib->now_next = NULL;
    if (e->now_tail)
        e->now_tail->now_next = ib;
    else
        e->now_head = ib;
    e->now_tail = ib;
}

void inbox_fire_now(inbox_engine *e)
{
    while (e->now_head) {
        inbox *ib = e->now_head;
        e->now_head = ib->now_next;
        if (!e->now_head)
            e->now_tail = NULL;
        ib->now_next = NULL;
        ib->in_now_q = false;
        inbox_fire(e, ib);
    }
}

void inbox_emit(inbox_engine *e, const inbox_event *ev)
{
    if (e->fn) {
        e->fn(e->fn_arg, ev);
        e->emitted = true;
    }
}

/* The inbox's session event: sent on its first outcome and whenever the outcome changes.
 * `ok` means a visit's work is done (inbox_visit_done), not that the login was taken: a
 * server that takes the login and then breaks every visit reports why it broke, so the
 * control plane sees the inbox failing and does not judge the mail it cannot find
 * (docs/agent.md, the inbox command's session events). */
static void emit_session(inbox_engine *e, inbox *ib, int status, const char *detail)
{
    if (status == ib->last_status)
        return;
    ib->last_status = status;
    inbox_event ev = {.type = INBOX_EV_SESSION,
                      .mailbox_id = ib->spec->mailbox_id,
                      .status = status,
                      .detail = detail && *detail ? detail : NULL};
    inbox_emit(e, &ev);
}

/* A connection's login outcome, counted (kiln_agent_inbox_logins_total, --once's exit
 * status); a failed one is reported at once. */
static void login_outcome(inbox_engine *e, inbox *ib, int status, const char *detail)
{
    atomic_fetch_add(&e->sessions[status], 1);
    if (status != IMAP_NET_OK)
        emit_session(e, ib, status, detail);
}

void inbox_visit_done(inbox_engine *e, inbox *ib)
{
    ib->attempts = 0;
    ib->visit_done = true;
    emit_session(e, ib, IMAP_NET_OK, NULL);
}

/* The inbox's pass is over (once) or it is no longer watched. */
void inbox_finish_pass(inbox_engine *e, inbox *ib)
{
    if (!ib->pass_done) {
        ib->pass_done = true;
        atomic_fetch_add(&e->passes_done, 1);
    }
}

int64_t inbox_poll_interval_ms(const inbox_engine *e, const inbox *ib)
{
    int c = ib->spec->poll_class;
    int64_t ms = e->cfg.use_interval && ib->spec->poll_interval_s > 0
                     ? ib->spec->poll_interval_s * 1000
                     : e->cfg.poll_ms[c >= 0 && c < INBOX_POLL_COUNT ? c : INBOX_POLL_MEDIUM];
    return e->cfg.poll_max_ms > 0 && ms > e->cfg.poll_max_ms ? e->cfg.poll_max_ms : ms;
}

static tls_ctx *ctx_for(inbox_engine *e, const char *ca_file, const char **err)
{
    const char *key = ca_file ? ca_file : "";
    for (size_t i = 0; i < e->nctxs; i++)
        if (!strcmp(e->ctxs[i].ca_file, key)) {
            *err = e->ctxs[i].err;
            return e->ctxs[i].ctx;
        }
    if (e->nctxs == CTX_MAX) {
        *err = "too many CA files in use";
        return NULL;
    }
    size_t k = e->nctxs++;
    e->ctxs[k].ca_file = xstrdup(key);
    e->ctxs[k].ctx = tls_ctx_new(ca_file, e->ctxs[k].err, sizeof e->ctxs[k].err);
    *err = e->ctxs[k].err;
    return e->ctxs[k].ctx;
}

static const imap_net_hooks hooks;
static void poke(inbox_engine *e, inbox *ib);

_Static_assert((int)IMAP_ROLE_INBOX == (int)INBOX_ROLE_INBOX &&
                   (int)IMAP_ROLE_JUNK == (int)INBOX_ROLE_JUNK &&
                   (int)IMAP_ROLE_WARMUP == (int)INBOX_ROLE_WARMUP &&
                   (int)IMAP_ROLE_OTHER == (int)INBOX_ROLE_OTHER,
               "folder roles differ");
_Static_assert((int)IMAP_ACT_DONE == (int)INBOX_AST_DONE &&
                   (int)IMAP_ACT_GONE == (int)INBOX_AST_GONE &&
                   (int)IMAP_ACT_STALE == (int)INBOX_AST_STALE &&
                   (int)IMAP_ACT_REFUSED == (int)INBOX_AST_REFUSED &&
                   (int)IMAP_ACT_FAILED == (int)INBOX_AST_FAILED,
               "action outcomes differ");
_Static_assert((int)IMAP_ACT_RESCUE == (int)INBOX_ACT_RESCUE &&
                   (int)IMAP_ACT_MARK == (int)INBOX_ACT_MARK &&
                   (int)IMAP_ACT_FILE == (int)INBOX_ACT_FILE &&
                   (int)IMAP_ACT_PRUNE == (int)INBOX_ACT_PRUNE,
               "action kinds differ");

/* An action of the spec as the session takes it (strings borrowed from the spec). */
static imap_inbox_action imap_action_of(const inbox *ib, const inbox_action *a)
{
    return (imap_inbox_action){.id = a->id,
                               .kind = a->kind,
                               .folder = a->folder,
                               .uidvalidity = a->uidvalidity,
                               .uid = a->uid,
                               .flags = (const char *const *)a->flags,
                               .nflags = a->nflags,
                               .message_id = a->message_id,
                               .not_before_ms = ib->added_ms + a->not_before_s * 1000};
}

/* IDLE for a high-class inbox while the IDLE sessions at its server hold less than
 * KILN_AGENT_IMAP_IDLE_SHARE of the server's connection cap: an IDLE connection is held
 * for good, and with every connection in IDLE the other inboxes of the server would wait
 * for room without end (10,000 inboxes, all high class in the loop bench: 2,000 slots
 * taken and 7,887 visits queued). Past the share it is polled at its class interval. */
static bool may_idle(const inbox_engine *e, const inbox *ib)
{
    if (!e->cfg.idle || e->cfg.once || ib->spec->poll_class != INBOX_POLL_HIGH)
        return false;
    int64_t cap = (int64_t)e->cfg.server_max_conns * e->cfg.idle_share_pct / 100;
    return ib->srv->idlers < (cap < 1 ? 1 : cap);
}

/* The inbox session's work from the spec: the folders' state, the actions still to do
 * (each due not_before_s after the inbox was handed over), IDLE for the high class. */
static bool start_inbox_session(inbox_engine *e, inbox *ib, const imap_session_params *p)
{
    inbox_spec *s = ib->spec;
    imap_inbox_folder folders[16];
    size_t nf = s->nfolders < 16 ? s->nfolders : 16;
    for (size_t i = 0; i < nf; i++)
        folders[i] = (imap_inbox_folder){.name = s->folders[i].name,
                                         .role = s->folders[i].role,
                                         .uidvalidity = s->folders[i].uidvalidity,
                                         .last_uid = s->folders[i].last_uid};
    imap_inbox_action *acts = xcalloc(s->nactions ? s->nactions : 1, sizeof *acts);
    for (size_t i = 0; i < s->nactions; i++) {
        const inbox_action *a = &s->actions[i];
        acts[i] = imap_action_of(ib, a);
    }
    imap_inbox_job job = {.folders = folders,
                          .nfolders = nf,
                          .actions = acts,
                          .nactions = s->nactions,
                          .warmup_folder = s->warmup_folder,
                          .want_idle = may_idle(e, ib),
                          .idle_refresh_ms = e->cfg.idle_ms,
                          .trust_stored_roles = true,
                          .pipeline = true,
                          .caps_hint = ib->srv->caps,
                          .keep = e->cfg.keep && !e->cfg.once,
                          .command_ms = e->cfg.session_command_ms,
                          .greeting_ms = e->cfg.greeting_ms};
    bool ok = imap_net_start_inbox(&ib->net, p, &job, &hooks, ib);
    free(acts);
    if (ok && job.want_idle) {
        ib->idler = true;
        ib->srv->idlers++;
    }
    return ok;
}

/* Room at the server and a free connection: the session starts. */
void inbox_start_session(inbox_engine *e, inbox *ib)
{
    net_conn *c = net_conn_take(&e->loop);
    inbox_spec *s = ib->spec;
    const char *tls_err = "";
    tls_ctx *ctx = s->security == INBOX_SEC_PLAIN ? NULL : ctx_for(e, s->ca_file, &tls_err);
    imap_session_params p = {.security = s->security,
                             .username = s->username,
                             .password = s->password,
                             .oauth_token = s->oauth_token,
                             .host = s->host,
                             .port = s->port,
                             .allow_plaintext_auth = s->allow_plaintext_auth};
    if (e->cfg.login_only)
        imap_net_start_login(&ib->net, &p, e->cfg.greeting_ms, e->cfg.command_ms, &hooks, ib);
    else if (!start_inbox_session(e, ib, &p)) {
        /* the spec passed the wire's checks, so this is a bug or a limit of the
         * session: say so once and leave the inbox */
        host_limits_release(ib->srv->limits, true, e->loop.now_ms);
        c->next_free = e->loop.free_conns; /* give the entry back untouched */
        e->loop.free_conns = c;
        log_error("inbox %lld: the IMAP session refused its work (folders, actions)",
                  (long long)s->mailbox_id);
        login_outcome(e, ib, IMAP_NET_PROTOCOL, "the agent could not take this inbox's work");
        inbox_finish_pass(e, ib);
        inbox_enter(e, ib, IB_DONE);
        return;
    }
    ib->conn = c;
    ib->visit_done = false;
    ib->conn_start_ms = e->loop.now_ms;
    ib->stop_sent = ib->recycle = false;
    e->conns_active++;
    atomic_fetch_add(&e->polls, 1);
    atomic_fetch_add(&ib->srv->connects, 1);
    inbox_enter(e, ib, IB_CONNECTING);
    net_conn_params cp = {.dest = &ib->dest,
                          .tls = ctx,
                          .tls_err = tls_err,
                          .ops = &imap_net_ops,
                          .session = &ib->net};
    net_conn_start(&e->loop, c, &cp);
}

static void schedule_after(inbox_engine *e, inbox *ib, int status, bool unexpected);

/* Resolves the server's name (cache, or the resolver thread), then its server admits it or it
 * queues. */
static void begin(inbox_engine *e, inbox *ib)
{
    if (e->stopping || ib->dropped) {
        if (ib->state == IB_RESOLVE)
            e->dns_waiting--;
        inbox_finish_pass(e, ib);
        inbox_enter(e, ib, IB_DONE);
        return;
    }
    char err[200];
    int permanent = 0;
    bool was_resolving = ib->state == IB_RESOLVE;
    int rc = resolver_lookup(e->res, ib->spec->host, ib->spec->port, e->loop.efd, e->loop.now_ms,
                             &ib->dest.addrs, &permanent, err, sizeof err);
    if (rc == RESOLVER_PENDING) {
        if (!was_resolving) {
            inbox_enter(e, ib, IB_RESOLVE);
            e->dns_waiting++;
        }
        return;
    }
    if (was_resolving)
        e->dns_waiting--;
    if (rc == RESOLVER_FAILED) {
        login_outcome(e, ib, IMAP_NET_CONNECT, err);
        schedule_after(e, ib, IMAP_NET_CONNECT, false);
        return;
    }
    inbox_server_admit(e, ib);
}

/* A logged-in session is poked: its stepped hook takes the owner's step (stop, tick,
 * a kept connection's poll). */
static void poke(inbox_engine *e, inbox *ib)
{
    if ((ib->state == IB_ACTIVE || ib->state == IB_IDLE || ib->state == IB_KEPT) && ib->conn)
        net_conn_resume(&e->loop, ib->conn, 0);
}

void inbox_poke(inbox_engine *e, inbox *ib)
{
    poke(e, ib);
}

void inbox_fire(inbox_engine *e, inbox *ib)
{
    if (!ib->timer_armed || ib->timer_ms > e->loop.now_ms)
        return; /* a stale entry: the inbox was re-armed since */
    ib->timer_armed = false;
    if (ib->state == IB_WAIT || ib->state == IB_BACKOFF)
        begin(e, ib);
    else
        poke(e, ib);
}

void inbox_retry_dns(inbox_engine *e)
{
    for (size_t i = 0; i < e->ninboxes && e->dns_waiting; i++)
        if (e->inboxes[i]->state == IB_RESOLVE)
            begin(e, e->inboxes[i]);
}

/* When the first action not due yet comes due (INT64_MAX: none). Actions already due
 * and still here were not taken by the last session: they wait for the next poll. */
int64_t inbox_next_action_due_ms(const inbox *ib, int64_t now)
{
    int64_t first = INT64_MAX;
    for (size_t i = 0; i < ib->spec->nactions; i++) {
        int64_t at = ib->added_ms + ib->spec->actions[i].not_before_s * 1000;
        if (at > now && at < first)
            first = at;
    }
    return first;
}

/* What comes after a connection: the next poll, a backoff, or the end. */
static void schedule_after(inbox_engine *e, inbox *ib, int status, bool unexpected)
{
    if (ib->next_spec) {
        inbox_spec_free(ib->spec);
        ib->spec = ib->next_spec;
        ib->next_spec = NULL;
        ib->added_ms = e->loop.now_ms;
        ib->srv = inbox_server_get(e, ib->spec->host);
        ib->dest = (net_dest){.name = ib->spec->host, .port = ib->spec->port};
        ib->last_status = -1;
    }
    int64_t now = e->loop.now_ms;
    int64_t resume_at = ib->resume_at_ms;
    ib->resume_at_ms = 0;
    if (ib->dropped || e->stopping || e->cfg.once) {
        inbox_finish_pass(e, ib);
        inbox_enter(e, ib, IB_DONE);
        return;
    }
    inbox_finish_pass(e, ib);
    if (status == IMAP_NET_OK && !unexpected) {
        /* the backoff was reset when the visit's work was done (inbox_visit_done) */
        /* a recycled IDLE connection comes back at once for its full pass; an action
         * that comes due before the next poll brings it forward */
        int64_t next = ib->recycle ? now : now + inbox_poll_interval_ms(e, ib);
        if (resume_at) /* its kept connection ended before its poll: the poll stays */
            next = resume_at > now ? resume_at : now;
        int64_t due = inbox_next_action_due_ms(ib, now);
        inbox_arm(e, ib, IB_WAIT, due < next ? due : next);
        return;
    }
    if (ib->attempts < 30)
        ib->attempts++;
    double jitter = (double)random_range(0, 999999) / 1e6;
    int64_t delay = backoff_delay_ms(&e->shaping, ib->attempts, jitter);
    /* refused credentials or a bad certificate do not mend in seconds */
    if ((status == IMAP_NET_AUTH || status == IMAP_NET_TLS) &&
        delay < inbox_poll_interval_ms(e, ib))
        delay = inbox_poll_interval_ms(e, ib);
    inbox_arm(e, ib, IB_BACKOFF, now + delay);
}

/* ---- the session's hooks ---- */

/* The spec keeps the folders' latest state: the next connection resumes from it. */
static void remember_folder(inbox *ib, const imap_inbox_event *ev)
{
    inbox_spec *s = ib->spec;
    for (size_t i = 0; i < s->nfolders; i++)
        if (!strcmp(s->folders[i].name, ev->folder)) {
            s->folders[i].role = ev->role;
            s->folders[i].uidvalidity = ev->uidvalidity;
            s->folders[i].last_uid = ev->last_uid;
            return;
        }
    if (s->nfolders >= 16)
        return;
    s->folders = xrealloc(s->folders, (s->nfolders + 1) * sizeof *s->folders);
    s->folders[s->nfolders++] = (inbox_folder){.name = xstrdup(ev->folder),
                                               .role = ev->role,
                                               .uidvalidity = ev->uidvalidity,
                                               .last_uid = ev->last_uid};
}

bool inbox_knows_action(const inbox *ib, int64_t id)
{
    const inbox_spec *specs[2] = {ib->spec, ib->next_spec};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; specs[k] && i < specs[k]->nactions; i++)
            if (specs[k]->actions[i].id == id)
                return true;
    for (size_t i = 0; i < ib->ndone; i++)
        if (ib->done_ids[i] == id)
            return true;
    return false;
}

static void remember_done(inbox *ib, int64_t id)
{
    if (!ib->done_ids)
        ib->done_ids = xcalloc(INBOX_DONE_IDS, sizeof *ib->done_ids);
    ib->done_ids[ib->done_next] = id;
    ib->done_next = (ib->done_next + 1) % INBOX_DONE_IDS;
    if (ib->ndone < INBOX_DONE_IDS)
        ib->ndone++;
}

/* A logged-in session takes a new action now (imap_inbox_add_action); the poke lets its
 * tick run when the action is due (an idle session ends IDLE for it). Otherwise the next
 * connection has it from the spec. */
void inbox_offer_action(inbox_engine *e, inbox *ib, const inbox_action *a)
{
    if (ib->next_spec || !ib->net.ib ||
        (ib->state != IB_ACTIVE && ib->state != IB_IDLE && ib->state != IB_KEPT))
        return;
    imap_inbox_action ia = imap_action_of(ib, a);
    if (imap_inbox_add_action(ib->net.ib, &ia) != 0)
        return;
    if (ib->state == IB_KEPT && ia.not_before_ms < ib->visit_at_ms) /* a poll for it then */
        ib->visit_at_ms = ia.not_before_ms > e->loop.now_ms ? ia.not_before_ms : e->loop.now_ms;
    poke(e, ib);
}

/* An action reported is done with: the spec forgets it (its kind is returned). */
static int forget_action(inbox *ib, int64_t id)
{
    remember_done(ib, id);
    inbox_spec *s = ib->spec;
    for (size_t i = 0; i < s->nactions; i++) {
        if (s->actions[i].id != id)
            continue;
        int kind = s->actions[i].kind;
        inbox_action_clear(&s->actions[i]);
        memmove(&s->actions[i], &s->actions[i + 1], (s->nactions - i - 1) * sizeof *s->actions);
        s->nactions--;
        return kind;
    }
    return -1;
}

static void on_event(void *owner, imap_net *n, const imap_inbox_event *ev)
{
    inbox *ib = owner;
    inbox_engine *e = ib->engine;
    ib->visit_events++;
    int64_t mb = ib->spec->mailbox_id;
    inbox_event out = {.mailbox_id = mb,
                       .folder = ev->folder,
                       .role = ev->role,
                       .uidvalidity = ev->uidvalidity,
                       .uid = ev->uid,
                       .flags = ev->flags,
                       .nflags = ev->nflags};
    switch (ev->type) {
    case IMAP_INBOX_EV_LOGGED_IN:
        /* The backoff stays: a server that takes the login and then breaks each visit
         * (a BYE, a wrong tag, a drop) would otherwise be logged in to at the base delay
         * for as long as it is watched. It resets once a visit's work is done (its
         * clean end, its IDLE, its kept connection). */
        if (n && n->ib)
            ib->srv->caps = imap_inbox_caps(n->ib);
        inbox_enter(e, ib, IB_ACTIVE);
        atomic_fetch_add(&e->sessions[IMAP_NET_OK], 1);
        return;
    case IMAP_INBOX_EV_FOUND:
        if (ev->role >= 0 && ev->role < INBOX_ROLE_COUNT)
            atomic_fetch_add(&e->found[ev->role], 1);
        out.type = INBOX_EV_FOUND;
        out.message_id = ev->message_id;
        out.labels = ev->nlabels ? ev->labels : NULL;
        out.nlabels = ev->nlabels;
        out.authentication_results = ev->auth_results;
        out.internal_date = ev->internal_date;
        break;
    case IMAP_INBOX_EV_FOLDER_STATE: {
        /* a session that goes on but leaves something out (a folder whose name no
         * command can carry) says so once, when its first check ends: a kept
         * connection may not end for hours */
        const char *note = n && n->ib ? imap_inbox_detail(n->ib) : NULL;
        if (note && *note && !ib->noted) {
            ib->noted = true;
            log_info("inbox %lld (%s): session ok: %s", (long long)mb, ib->spec->host, note);
        }
        remember_folder(ib, ev);
        out.type = INBOX_EV_FOLDER_STATE;
        out.last_uid = ev->last_uid;
        break;
    }
    case IMAP_INBOX_EV_ACTION: {
        int kind = forget_action(ib, ev->action_id);
        if (kind >= 0 && ev->status >= 0 && ev->status < INBOX_AST_COUNT)
            atomic_fetch_add(&e->actions[kind][ev->status], 1);
        out.type = INBOX_EV_ACTION;
        out.action_id = ev->action_id;
        out.action_status = ev->status;
        out.detail = ev->detail && *ev->detail ? ev->detail : NULL;
        if (!ev->folder || !ev->uid)
            out.folder = NULL;
        if (!ev->nflags)
            out.flags = NULL;
        break;
    }
    default:
        return;
    }
    inbox_emit(e, &out);
}

/* Once per step: stop or tick when due, follow IDLE, keep a polled connection, arm the timer for
 * the next tick (or the IDLE connection's recycling: a full pass over every folder each max(poll
 * interval, 5 min)). */
static int on_stepped(void *owner, imap_net *n, int64_t now_ms)
{
    inbox *ib = owner;
    inbox_engine *e = ib->engine;
    int ev = 0;
    if (!n->logged_in)
        return 0;
    if (ib->state == IB_CONNECTING)
        inbox_enter(e, ib, IB_ACTIVE);
    int64_t recycle_ms = inbox_poll_interval_ms(e, ib);
    if (recycle_ms < 300000 && !e->cfg.poll_max_ms) /* POLL_MAX_MS: the demo's quick passes */
        recycle_ms = 300000;
    bool recycle = ib->state == IB_IDLE && now_ms >= ib->conn_start_ms + recycle_ms;
    if (!ib->stop_sent && (e->stopping || ib->dropped || ib->next_spec || recycle || ib->evicted)) {
        ib->stop_sent = true;
        ib->recycle = recycle || ib->next_spec;
        if (ib->state == IB_KEPT) {
            inbox_kept_remove(ib->srv, ib);
            inbox_enter(e, ib, IB_ACTIVE); /* logging out */
        }
        ev |= imap_net_stop(n, now_ms);
    } else if (ib->state == IB_KEPT && now_ms >= ib->visit_at_ms) {
        /* the next poll, on the kept connection: no connect, no login */
        inbox_kept_remove(ib->srv, ib);
        inbox_enter(e, ib, IB_ACTIVE);
        ib->kept_visit = true;
        ib->visit_done = false;
        ib->visit_events = 0;
        atomic_fetch_add(&e->kept_visits, 1);
        ev |= imap_net_visit(n, now_ms);
    } else if (now_ms >= imap_net_next_tick_ms(n)) {
        ev |= imap_net_tick(n, now_ms);
    }
    if (n->wakes > ib->wakes_seen) {
        atomic_fetch_add(&e->idle_wakes, (unsigned long long)(n->wakes - ib->wakes_seen));
        ib->wakes_seen = n->wakes;
    }
    bool idling = imap_net_idling(n);
    if (idling && ib->state == IB_ACTIVE) {
        inbox_visit_done(e, ib); /* the pass is done: it idles */
        inbox_enter(e, ib, IB_IDLE);
    } else if (!idling && ib->state == IB_IDLE)
        inbox_enter(e, ib, IB_ACTIVE);
    if (ib->state == IB_ACTIVE && !ib->stop_sent && imap_net_kept(n))
        ev |= inbox_keep_or_leave(e, ib, n, now_ms);
    int64_t t = ib->state == IB_KEPT ? ib->visit_at_ms : imap_net_next_tick_ms(n);
    if (ib->state == IB_IDLE && !ib->stop_sent && ib->conn_start_ms + recycle_ms < t)
        t = ib->conn_start_ms + recycle_ms;
    if (t != INT64_MAX && (!ib->timer_armed || t != ib->timer_ms)) {
        ib->timer_ms = t;
        ib->timer_armed = true;
        timer_heap_push(&e->timers, t, ib);
    }
    return ev;
}

static const imap_net_hooks hooks = {.event = on_event, .stepped = on_stepped};

/* ---- net/'s owner ---- */

static int64_t owner_deadline(void *owner, net_conn *c)
{
    inbox_engine *e = owner;
    (void)c;
    return e->stopping ? e->drain_until_ms : INT64_MAX;
}

static bool owner_may_reconnect(void *owner, net_conn *c)
{
    inbox_engine *e = owner;
    (void)c;
    return !e->stopping;
}

/* A visit that broke after its login: reported as transient (the login itself was
 * counted): `connect` when the connection dropped or stalled, else `protocol` (a BYE, a
 * wrong tag, an answer the session could not take). Never `tls`: after a login a TLS
 * fault is a dropped connection, not a certificate the customer must fix. */
static void broken_visit(inbox_engine *e, inbox *ib, const imap_net *n, const char *detail)
{
    char why[320];
    snprintf(why, sizeof why, "the session broke after the login: %s",
             detail && *detail ? detail : "no reason given");
    emit_session(e, ib, imap_net_dropped(n) ? IMAP_NET_CONNECT : IMAP_NET_PROTOCOL, why);
}

static void owner_done(void *owner, net_conn *c, bool host_ok)
{
    inbox_engine *e = owner;
    imap_net *n = c->session;
    inbox *ib = n->owner;
    const char *detail = "";
    int status = imap_net_status(n, &detail);
    int64_t now = e->loop.now_ms;
    host_limits_release(ib->srv->limits, host_ok, now);
    e->kick = true;
    e->conns_active--;
    ib->conn = NULL;
    if (ib->idler) {
        ib->idler = false;
        ib->srv->idlers--;
    }
    /* a kept connection that ended between polls (the server closed it), or on the
     * poll's first command (closed meanwhile, seen only now), or evicted: the poll
     * stays where it was planned (now, for the one under way), on a new connection */
    bool kept_closed = ib->state == IB_KEPT || (ib->kept_visit && !ib->visit_events);
    if (ib->state == IB_KEPT)
        inbox_kept_remove(ib->srv, ib);
    if (ib->evicted) {
        ib->evicted = false;
        ib->srv->evicting--;
        ib->resume_at_ms = ib->visit_at_ms;
    } else if (kept_closed) {
        atomic_fetch_add(&e->kept_closed, 1);
        ib->resume_at_ms = ib->state == IB_KEPT ? ib->visit_at_ms : now;
    }
    ib->kept_visit = false;
    if (status == IMAP_NET_THROTTLED) {
        atomic_fetch_add(&ib->srv->throttles, 1);
        host_limits_pause(ib->srv->limits, now + e->cfg.throttle_pause_ms);
    } else if (status != IMAP_NET_OK && status != IMAP_NET_AUTH) {
        atomic_fetch_add(&ib->srv->failures, 1);
    }
    /* a session that logged in but did not end with its LOGOUT; a failure only when it
     * broke before its visit's work was done (an IDLE connection the server closes, a
     * restart, is not a failing inbox: it reconnects and reports nothing new) */
    bool unexpected = n->logged_in && !imap_net_clean_end(n) && !kept_closed;
    if (unexpected) {
        atomic_fetch_add(&e->visits_broken, 1);
        if (!ib->visit_done)
            broken_visit(e, ib, n, detail);
    } else if (status != IMAP_NET_OK) {
        login_outcome(e, ib, status, detail);
    } else if (!kept_closed) {
        inbox_visit_done(e, ib); /* its LOGOUT */
    }
    if (e->cfg.verbose || status != IMAP_NET_OK || unexpected || *detail)
        log_info("inbox %lld (%s): session %s%s%s", (long long)ib->spec->mailbox_id, ib->spec->host,
                 imap_net_status_name(status), *detail ? ": " : "", detail);
    imap_net_clear(n);
    ib->timer_armed = false;
    ib->wakes_seen = 0;
    schedule_after(e, ib, status, unexpected);
}

static bool owner_woken(void *owner)
{
    inbox_engine *e = owner;
    e->kick = true; /* commands, DNS answers */
    return true;
}

const net_owner_ops inbox_owner_ops = {
    .deadline_ms = owner_deadline,
    .may_reconnect = owner_may_reconnect,
    .done = owner_done,
    .woken = owner_woken,
};

/* The engine stops: an inbox that waits ends now; a session under way finishes. */
void inbox_stop_one(inbox_engine *e, inbox *ib)
{
    switch (ib->state) {
    case IB_WAIT:
    case IB_BACKOFF:
        ib->timer_armed = false;
        inbox_enter(e, ib, IB_DONE);
        break;
    case IB_RESOLVE:
        e->dns_waiting--;
        inbox_enter(e, ib, IB_DONE);
        break;
    case IB_ACTIVE:
    case IB_IDLE:
    case IB_KEPT:
        poke(e, ib); /* LOGOUT after the command in flight (DONE first when idling) */
        break;
    default: /* queued ones end when their queue is next looked at; connecting ones
                log out once logged in (on_stepped) */
        break;
    }
}
