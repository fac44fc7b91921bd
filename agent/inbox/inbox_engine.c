/* The inbox engine's thread and interface (see inbox_engine.h): commands from other
 * threads under a mutex, woken through the loop's eventfd; the loop turn (timers,
 * completions, queues); stopping and draining; metrics. One inbox's life is in
 * inbox_watch.c. */
#include "inbox_internal.h"

#include "log.h"
#include "ring.h"
#include "xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

const char *inbox_session_status_name(int status)
{
    return imap_net_status_name(status);
}

_Static_assert(INBOX_SESSION_OK == IMAP_NET_OK, "the ok status differs");

/* How long event lines may wait in the writer's buffer while more keep coming. */
#define EVENTS_FLUSH_MS 100

void inbox_engine_config_defaults(inbox_engine_config *c)
{
    memset(c, 0, sizeof *c);
    c->poll_ms[INBOX_POLL_HIGH] = 60000;
    c->poll_ms[INBOX_POLL_MEDIUM] = 300000;
    c->poll_ms[INBOX_POLL_LOW] = 900000;
    c->use_interval = true;
    c->idle = true;
    c->keep = true;
    c->idle_ms = (int64_t)28 * 60000;
    c->max_conns = 10240;
    c->server_max_conns = 100;
    c->idle_share_pct = 50;
    c->server_conns_per_min = 200;
    c->breaker_threshold = 5;
    c->backoff_base_ms = 2000;
    c->backoff_max_ms = (int64_t)15 * 60000;
    c->throttle_pause_ms = 60000;
    c->connect_ms = 10000;
    c->tls_ms = 10000;
    c->greeting_ms = 30000;
    c->command_ms = 30000;
    c->session_command_ms = 60000;
}

static int env_i64(const char *name, int64_t min, int64_t max, int64_t *out, char *err,
                   size_t errlen)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || x < min || x > max) {
        snprintf(err, errlen, "%s must be an integer in [%lld, %lld]", name, (long long)min,
                 (long long)max);
        return -1;
    }
    *out = x;
    return 0;
}

int inbox_engine_config_from_env(inbox_engine_config *c, char *err, size_t errlen)
{
    int64_t cap = c->server_max_conns, rate = c->server_conns_per_min, conns = c->max_conns;
    int64_t idle = c->idle, share = c->idle_share_pct, keep = c->keep;
    const int64_t day = 86400000;
    if (env_i64("KILN_AGENT_IMAP_SERVER_MAX_CONNS", 1, 1000000, &cap, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_SERVER_CONNS_PER_MIN", 1, 100000000, &rate, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_MAX_CONNS", 1, 1000000, &conns, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_IDLE", 0, 1, &idle, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_KEEP", 0, 1, &keep, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_IDLE_SHARE", 1, 100, &share, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_IDLE_MS", 1000, (int64_t)29 * 60000, &c->idle_ms, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_POLL_MAX_MS", 0, day, &c->poll_max_ms, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_BACKOFF_BASE_MS", 1, day, &c->backoff_base_ms, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_BACKOFF_MAX_MS", 1, day, &c->backoff_max_ms, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_THROTTLE_PAUSE_MS", 0, day, &c->throttle_pause_ms, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_TIMEOUT_CONNECT_MS", 1, day, &c->connect_ms, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_TIMEOUT_TLS_MS", 1, day, &c->tls_ms, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_TIMEOUT_GREETING_MS", 1, day, &c->greeting_ms, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_TIMEOUT_COMMAND_MS", 1, day, &c->command_ms, err, errlen) ||
        env_i64("KILN_AGENT_IMAP_TIMEOUT_SESSION_MS", 100, day, &c->session_command_ms, err,
                errlen))
        return -1;
    c->server_max_conns = (int)cap;
    c->server_conns_per_min = (int)rate;
    c->max_conns = (uint32_t)conns;
    c->idle = idle != 0;
    c->keep = keep != 0;
    c->idle_share_pct = (int)share;
    return 0;
}

/* ---- the engine's thread ---- */

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* The same IMAP access: a session under way may go on with it. */
static bool same_access(const inbox_spec *a, const inbox_spec *b)
{
    return a->port == b->port && a->security == b->security &&
           a->allow_plaintext_auth == b->allow_plaintext_auth && same_str(a->host, b->host) &&
           same_str(a->username, b->username) && same_str(a->password, b->password) &&
           same_str(a->oauth_token, b->oauth_token) && same_str(a->ca_file, b->ca_file);
}

static inbox_action *spec_action(inbox_spec *s, int64_t id)
{
    for (size_t i = 0; i < s->nactions; i++)
        if (s->actions[i].id == id)
            return &s->actions[i];
    return NULL;
}

/* A later hand-over of an inbox with the same access (a lease answer listing it again):
 * its poll class and the actions not yet known are taken (a running session gets them
 * at once), a known action's earlier due time too; the folders' state stays the
 * engine's own, which is newer. */
static void merge_inbox(inbox_engine *e, inbox *ib, inbox_spec *s)
{
    inbox_spec *cur = ib->next_spec ? ib->next_spec : ib->spec;
    cur->poll_class = s->poll_class;
    cur->poll_interval_s = s->poll_interval_s;
    int64_t since_s = (e->loop.now_ms - ib->added_ms) / 1000;
    for (size_t i = 0; i < s->nactions; i++) {
        inbox_action *a = &s->actions[i];
        if (inbox_knows_action(ib, a->id)) {
            inbox_action *k = spec_action(cur, a->id);
            if (k && a->not_before_s + since_s < k->not_before_s) {
                /* due earlier than it was (the test clock moved, or the plan changed) */
                k->not_before_s = a->not_before_s + since_s;
                inbox_offer_action(e, ib, k);
            }
            continue;
        }
        cur->actions = xrealloc(cur->actions, (cur->nactions + 1) * sizeof *cur->actions);
        inbox_action *d = &cur->actions[cur->nactions++];
        *d = *a;
        d->not_before_s = a->not_before_s + since_s;
        memset(a, 0, sizeof *a); /* moved: its strings belong to cur now */
        inbox_offer_action(e, ib, d);
    }
    inbox_spec_free(s);
}

static void add_inbox(inbox_engine *e, inbox_spec *s)
{
    inbox *ib = i64map_getp(&e->by_id, s->mailbox_id);
    if (ib) {
        bool was_dropped = ib->dropped;
        ib->dropped = false;
        if (!was_dropped && ib->state != IB_DONE &&
            same_access(ib->next_spec ? ib->next_spec : ib->spec, s)) {
            merge_inbox(e, ib, s);
            return;
        }
        if (ib->conn) { /* the connection under way finishes with the old one */
            inbox_spec_free(ib->next_spec);
            ib->next_spec = s;
            inbox_poke(e, ib); /* a kept one logs out now */
            return;
        }
        ib->srv = inbox_server_get(e, s->host);
        inbox_spec_free(ib->spec);
        ib->spec = s;
        ib->dest = (net_dest){.name = s->host, .port = s->port};
        ib->added_ms = e->loop.now_ms;
        ib->last_status = -1;
        if (ib->state == IB_DONE && !e->stopping && !e->cfg.once)
            inbox_arm(e, ib, IB_WAIT, e->loop.now_ms);
        return;
    }
    if (e->ninboxes == e->inbox_cap) {
        e->inbox_cap = e->inbox_cap ? 2 * e->inbox_cap : 64;
        e->inboxes = xrealloc(e->inboxes, e->inbox_cap * sizeof(inbox *));
    }
    ib = xcalloc(1, sizeof *ib);
    i64map_putp(&e->by_id, s->mailbox_id, ib);
    ib->engine = e;
    ib->spec = s;
    ib->added_ms = e->loop.now_ms;
    ib->last_status = -1;
    ib->srv = inbox_server_get(e, s->host);
    ib->dest.name = s->host; /* borrowed: the spec outlives every connection */
    ib->dest.port = s->port;
    ib->state = IB_DONE; /* counted below, then armed */
    atomic_fetch_add(&e->by_state[IB_DONE], 1);
    e->inboxes[e->ninboxes++] = ib;
    atomic_fetch_add(&e->ninboxes_seen, 1);
    if (e->stopping)
        return;
    inbox_arm(e, ib, IB_WAIT, e->loop.now_ms);
}

static void drop_inbox(inbox_engine *e, int64_t mailbox_id)
{
    inbox *ib = i64map_getp(&e->by_id, mailbox_id);
    if (ib) {
        ib->dropped = true;
        inbox_stop_one(e, ib);
    }
}

/* Takes the other threads' commands. */
static void take_commands(inbox_engine *e)
{
    pthread_mutex_lock(&e->mu);
    inbox_spec **adds = e->add_q;
    size_t nadd = e->nadd;
    int64_t *drops = e->drop_q;
    size_t ndrop = e->ndrop;
    bool stop = e->stop_req && !e->stopping;
    e->add_q = NULL;
    e->nadd = e->add_cap = 0;
    e->drop_q = NULL;
    e->ndrop = e->drop_cap = 0;
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < nadd; i++)
        add_inbox(e, adds[i]);
    for (size_t i = 0; i < ndrop; i++)
        drop_inbox(e, drops[i]);
    free(adds);
    free(drops);
    if (stop) {
        e->stopping = true;
        e->drain_until_ms = e->loop.now_ms + e->drain_ms;
        for (size_t i = 0; i < e->ninboxes; i++)
            inbox_stop_one(e, e->inboxes[i]);
        e->kick = true;
    }
}

static bool all_passes_done(inbox_engine *e)
{
    for (size_t i = 0; i < e->ninboxes; i++)
        if (e->inboxes[i]->state != IB_DONE)
            return false;
    return true;
}

/* The thread's end, seen by inbox_engine_finished and through done_fd. */
static void set_finished(inbox_engine *e)
{
    atomic_store(&e->finished, true);
    net_wake(e->done_fd);
}

static void *engine_main(void *arg)
{
    inbox_engine *e = arg;
    char err[256];
    bool fast;
    if (net_loop_start(&e->loop, &fast, err, sizeof err) < 0) {
        log_error("inbox engine: %s", err);
        set_finished(e);
        return NULL;
    }
    bool has_work = false;
    while (!atomic_load(&e->hard_stop)) {
        net_loop_clock(&e->loop);
        take_commands(e);
        has_work = has_work || e->ninboxes > 0;
        while (timer_heap_next_ms(&e->timers) <= e->loop.now_ms)
            inbox_fire(e, timer_heap_pop(&e->timers));
        inbox_fire_now(e);
        inbox_server_fire_due(e);
        if (e->kick) {
            inbox_retry_dns(e);
            inbox_retry_waiting(e);
        }
        /* the lines of a quiet moment go out at once, a busy stream's at most every
         * EVENTS_FLUSH_MS: a write per turn was 4.5 % of a repeat pass's CPU */
        bool flush = e->emitted && e->cfg.events_flush;
        if (flush && e->loop.now_ms >= e->flush_due_ms) {
            e->emitted = flush = false;
            e->flush_due_ms = e->loop.now_ms + EVENTS_FLUSH_MS;
            e->cfg.events_flush(e->fn_arg);
        }
        if (!e->conns_active && (e->stopping || (e->cfg.once && has_work && all_passes_done(e))))
            break;
        int64_t next = timer_heap_next_ms(&e->timers);
        if (timer_heap_next_ms(&e->srv_timers) < next)
            next = timer_heap_next_ms(&e->srv_timers);
        if (flush && e->flush_due_ms < next)
            next = e->flush_due_ms;
        if (e->now_head)
            next = e->loop.now_ms;
        net_loop_wait(&e->loop, next);
    }
    set_finished(e);
    return NULL;
}

inbox_engine *inbox_engine_create(const inbox_engine_config *cfg, inbox_event_fn fn, void *arg,
                                  char *err, size_t errlen)
{
    if (net_ring_probe(err, errlen) < 0)
        return NULL;
    inbox_engine *e = xcalloc(1, sizeof *e);
    e->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->done_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        free(e);
        return NULL;
    }
    e->cfg = *cfg;
    e->fn = fn;
    e->fn_arg = arg;
    shaping_cfg_defaults(&e->shaping);
    e->shaping.max_conns = cfg->server_max_conns;
    e->shaping.conns_per_min = cfg->server_conns_per_min;
    e->shaping.breaker_threshold = cfg->breaker_threshold;
    e->shaping.backoff_base_ms = cfg->backoff_base_ms;
    e->shaping.backoff_max_ms = cfg->backoff_max_ms;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->srv_mu, NULL);
    net_timeouts to = {.connect_ms = cfg->connect_ms, .tls_ms = cfg->tls_ms, .data_block_ms = 0};
    if (net_loop_init(&e->loop, cfg->max_conns, &to, &inbox_owner_ops, e, err, errlen) < 0) {
        net_loop_destroy(&e->loop);
        pthread_mutex_destroy(&e->mu);
        pthread_mutex_destroy(&e->srv_mu);
        close(e->done_fd);
        free(e);
        return NULL;
    }
    e->res = resolver_create(300000, 30000);
    e->hosts = host_table_new(&e->shaping);
    int rc = pthread_create(&e->thread, NULL, engine_main, e);
    if (rc) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        inbox_engine_destroy(e);
        return NULL;
    }
    e->thread_started = true;
    return e;
}

void inbox_engine_add(inbox_engine *e, inbox_spec *s)
{
    pthread_mutex_lock(&e->mu);
    if (e->nadd == e->add_cap) {
        e->add_cap = e->add_cap ? 2 * e->add_cap : 64;
        e->add_q = xrealloc(e->add_q, e->add_cap * sizeof(inbox_spec *));
    }
    e->add_q[e->nadd++] = s;
    pthread_mutex_unlock(&e->mu);
    net_wake(e->loop.efd);
}

void inbox_engine_add_many(inbox_engine *e, inbox_spec *const *specs, size_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&e->mu);
    if (e->nadd + n > e->add_cap) {
        e->add_cap = e->nadd + n;
        e->add_q = xrealloc(e->add_q, e->add_cap * sizeof(inbox_spec *));
    }
    memcpy(e->add_q + e->nadd, specs, n * sizeof(inbox_spec *));
    e->nadd += n;
    pthread_mutex_unlock(&e->mu);
    net_wake(e->loop.efd);
}

void inbox_engine_drop(inbox_engine *e, int64_t mailbox_id)
{
    pthread_mutex_lock(&e->mu);
    if (e->ndrop == e->drop_cap) {
        e->drop_cap = e->drop_cap ? 2 * e->drop_cap : 16;
        e->drop_q = xrealloc(e->drop_q, e->drop_cap * sizeof *e->drop_q);
    }
    e->drop_q[e->ndrop++] = mailbox_id;
    pthread_mutex_unlock(&e->mu);
    net_wake(e->loop.efd);
}

void inbox_engine_stop(inbox_engine *e, int64_t drain_ms)
{
    pthread_mutex_lock(&e->mu);
    if (!e->stop_req) {
        e->stop_req = true;
        e->drain_ms = drain_ms;
    }
    pthread_mutex_unlock(&e->mu);
    net_wake(e->loop.efd);
}

bool inbox_engine_finished(inbox_engine *e)
{
    return atomic_load(&e->finished);
}

int inbox_engine_done_fd(const inbox_engine *e)
{
    return e->done_fd;
}

void inbox_engine_destroy(inbox_engine *e)
{
    if (!e)
        return;
    if (e->thread_started) {
        atomic_store(&e->hard_stop, true);
        net_wake(e->loop.efd);
        pthread_join(e->thread, NULL);
    }
    net_loop_destroy(&e->loop); /* connections still open are closed, not settled */
    for (size_t i = 0; i < e->ninboxes; i++) {
        inbox *ib = e->inboxes[i];
        if (ib->conn)
            imap_net_clear(&ib->net);
        inbox_spec_free(ib->spec);
        inbox_spec_free(ib->next_spec);
        free(ib->done_ids);
        free(ib);
    }
    free(e->inboxes);
    i64map_free(&e->by_id);
    for (size_t i = 0; i < e->nadd; i++)
        inbox_spec_free(e->add_q[i]);
    free(e->add_q);
    free(e->drop_q);
    timer_heap_free(&e->timers);
    timer_heap_free(&e->srv_timers);
    for (size_t i = 0; i < e->nctxs; i++) {
        tls_ctx_free(e->ctxs[i].ctx);
        free(e->ctxs[i].ca_file);
    }
    inbox_server_free_all(e);
    host_table_free(e->hosts);
    resolver_destroy(e->res);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->srv_mu);
    if (e->done_fd >= 0)
        close(e->done_fd);
    free(e);
}

void inbox_engine_progress_get(inbox_engine *e, inbox_engine_progress *out)
{
    memset(out, 0, sizeof *out);
    out->inboxes = atomic_load(&e->ninboxes_seen);
    out->passes_done = atomic_load(&e->passes_done);
    out->polls = atomic_load(&e->polls);
    out->idle_sessions = atomic_load(&e->by_state[IB_IDLE]);
    for (int r = 0; r < INBOX_ROLE_COUNT; r++)
        out->found += atomic_load(&e->found[r]);
    for (int k = 0; k < INBOX_ACT_COUNT; k++)
        for (int s = 0; s < INBOX_AST_COUNT; s++)
            out->actions += atomic_load(&e->actions[k][s]);
    for (int s = 1; s < IMAP_NET_STATUS_COUNT; s++)
        out->failures += atomic_load(&e->sessions[s]);
}

void inbox_engine_metrics(inbox_engine *e, buf *out)
{
    buf_puts(out, "# HELP kiln_agent_inbox_sessions Watched inboxes by state.\n"
                  "# TYPE kiln_agent_inbox_sessions gauge\n");
    for (int s = 0; s < IB_STATE_COUNT; s++)
        buf_printf(out, "kiln_agent_inbox_sessions{state=\"%s\"} %zu\n", inbox_state_name(s),
                   atomic_load(&e->by_state[s]));
    buf_printf(out,
               "# HELP kiln_agent_inbox_idle_sessions Connections waiting in IMAP IDLE.\n"
               "# TYPE kiln_agent_inbox_idle_sessions gauge\n"
               "kiln_agent_inbox_idle_sessions %zu\n"
               "# HELP kiln_agent_inbox_polls_total IMAP connections started (polls and "
               "IDLE sessions).\n"
               "# TYPE kiln_agent_inbox_polls_total counter\n"
               "kiln_agent_inbox_polls_total %llu\n"
               "# HELP kiln_agent_inbox_idle_wakes_total IDLE sessions woken by new mail.\n"
               "# TYPE kiln_agent_inbox_idle_wakes_total counter\n"
               "kiln_agent_inbox_idle_wakes_total %llu\n"
               "# HELP kiln_agent_inbox_kept_visits_total Polls made on a connection kept "
               "logged in since the last poll (no connect, no login).\n"
               "# TYPE kiln_agent_inbox_kept_visits_total counter\n"
               "kiln_agent_inbox_kept_visits_total %llu\n"
               "# HELP kiln_agent_inbox_kept_evicted_total Kept connections logged out to make "
               "room for another connection to their server.\n"
               "# TYPE kiln_agent_inbox_kept_evicted_total counter\n"
               "kiln_agent_inbox_kept_evicted_total %llu\n"
               "# HELP kiln_agent_inbox_kept_closed_total Kept connections the server closed "
               "between polls (the next poll logs in again).\n"
               "# TYPE kiln_agent_inbox_kept_closed_total counter\n"
               "kiln_agent_inbox_kept_closed_total %llu\n"
               "# HELP kiln_agent_inbox_visits_broken_total Sessions that logged in and then "
               "ended without their LOGOUT (a BYE, a drop, a timeout, a protocol error; not a "
               "kept connection closed between polls): the login's outcome is in "
               "kiln_agent_inbox_logins_total, this is what came after.\n"
               "# TYPE kiln_agent_inbox_visits_broken_total counter\n"
               "kiln_agent_inbox_visits_broken_total %llu\n",
               atomic_load(&e->by_state[IB_IDLE]), atomic_load(&e->polls),
               atomic_load(&e->idle_wakes), atomic_load(&e->kept_visits),
               atomic_load(&e->kept_evicted), atomic_load(&e->kept_closed),
               atomic_load(&e->visits_broken));
    buf_puts(out, "# HELP kiln_agent_inbox_logins_total Connection outcomes (session events "
                  "by status).\n"
                  "# TYPE kiln_agent_inbox_logins_total counter\n");
    for (int s = 0; s < IMAP_NET_STATUS_COUNT; s++)
        buf_printf(out, "kiln_agent_inbox_logins_total{status=\"%s\"} %llu\n",
                   imap_net_status_name(s), atomic_load(&e->sessions[s]));
    buf_puts(out, "# HELP kiln_agent_inbox_found_total kiln messages found, by folder role.\n"
                  "# TYPE kiln_agent_inbox_found_total counter\n");
    for (int r = 0; r < INBOX_ROLE_COUNT; r++)
        buf_printf(out, "kiln_agent_inbox_found_total{role=\"%s\"} %llu\n", inbox_role_name(r),
                   atomic_load(&e->found[r]));
    buf_puts(out, "# HELP kiln_agent_inbox_actions_total Actions by kind and outcome.\n"
                  "# TYPE kiln_agent_inbox_actions_total counter\n");
    for (int k = 0; k < INBOX_ACT_COUNT; k++)
        for (int s = 0; s < INBOX_AST_COUNT; s++)
            buf_printf(out, "kiln_agent_inbox_actions_total{kind=\"%s\",status=\"%s\"} %llu\n",
                       inbox_action_kind_name(k), inbox_action_status_name(s),
                       atomic_load(&e->actions[k][s]));
    inbox_server_metrics(e, out);
}
