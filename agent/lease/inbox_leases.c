/* The inbox leases held (see inbox_leases.h): grant and merge, drops, renewal, expiry,
 * release, and the replay of the previous run's leases. The events and their reports
 * are in inbox_reports.c. */
#include "inbox_leases.h"

#include "clock.h"
#include "log.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_MS 5000

void inbox_leases_init(inbox_leases *il, spool *sp, loop_stats *stats, const agent_config *cfg,
                       const volatile bool *abort)
{
    memset(il, 0, sizeof *il);
    il->sp = sp;
    il->stats = stats;
    il->cfg = cfg;
    il->abort = abort;
    i64map_init(&il->held);
    i64map_init(&il->rejected);
    i64map_init(&il->lease_of);
    i64map_init(&il->actions_done);
    pthread_mutex_init(&il->mu, NULL);
}

int inbox_leases_start(inbox_leases *il, const inbox_feed_engine *ops, char *err, size_t errlen)
{
    il->ops = ops;
    if (!ops)
        return 0;
    il->engine = ops->start(inbox_leases_emit, il, err, errlen);
    return il->engine ? 0 : -1;
}

static inbox_lease *lease_find(inbox_leases *il, const char *id)
{
    for (inbox_lease *l = il->head; l; l = l->next)
        if (!strcmp(l->id, id))
            return l;
    return NULL;
}

static inbox_lease *lease_add(inbox_leases *il, const char *id)
{
    inbox_lease *l = xcalloc(1, sizeof *l);
    snprintf(l->id, sizeof l->id, "%s", id);
    l->next = il->head;
    il->head = l;
    il->count++;
    return l;
}

static void lease_remove(inbox_leases *il, inbox_lease *l)
{
    for (inbox_lease **p = &il->head; *p; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            il->count--;
            break;
        }
    free(l);
}

void inbox_leases_free(inbox_leases *il)
{
    if (il->engine)
        il->ops->destroy(il->engine);
    il->engine = NULL;
    size_t it = 0;
    int64_t key, val;
    while (i64map_next(&il->held, &it, &key, &val)) {
        held_inbox *h = (held_inbox *)(intptr_t)val;
        wire_inbox_free(h->w);
        free(h);
    }
    i64map_free(&il->held);
    i64map_free(&il->rejected);
    while (il->head)
        lease_remove(il, il->head);
    for (size_t i = 0; i < il->nq; i++)
        free(il->q[i].e.json);
    for (size_t i = 0; i < il->nin; i++)
        free(il->in[i].e.json);
    free(il->q);
    free(il->in);
    i64map_free(&il->lease_of);
    i64map_free(&il->actions_done);
    pthread_mutex_destroy(&il->mu);
}

size_t inbox_leases_room(const inbox_leases *il)
{
    size_t held = i64map_count(&il->held);
    size_t max = (size_t)il->cfg->max_inboxes;
    if (il->stopping || held >= max)
        return 0;
    return max - held < WIRE_MAX_LEASE_INBOXES ? max - held : WIRE_MAX_LEASE_INBOXES;
}

size_t inbox_leases_held(const inbox_leases *il)
{
    return il->stopping ? 0 : i64map_count(&il->held);
}

static held_inbox *held_get(inbox_leases *il, int64_t mailbox_id)
{
    if (mailbox_id == INT64_MIN)
        return NULL;
    return i64map_getp(&il->held, mailbox_id);
}

void inbox_leases_forget(inbox_leases *il, int64_t mailbox_id, const char *why)
{
    held_inbox *h = held_get(il, mailbox_id);
    int64_t v;
    if (!h)
        return;
    if (il->engine)
        il->ops->unwatch(il->engine, mailbox_id);
    pthread_mutex_lock(&il->mu);
    i64map_del(&il->lease_of, mailbox_id, &v);
    pthread_mutex_unlock(&il->mu);
    i64map_del(&il->held, mailbox_id, &v);
    h->lease->ninboxes--;
    log_info("inbox %lld: no longer watched (%s)", (long long)mailbox_id, why);
    wire_inbox_free(h->w);
    free(h);
}

/* Every inbox of l leaves; l is released once its events are reported. */
static void lease_end(inbox_leases *il, inbox_lease *l, const char *why)
{
    size_t it = 0, n = 0;
    int64_t key, val;
    int64_t *ids = xcalloc(l->ninboxes + 1, sizeof *ids);
    while (i64map_next(&il->held, &it, &key, &val))
        if (((held_inbox *)(intptr_t)val)->lease == l && n < l->ninboxes)
            ids[n++] = key;
    for (size_t i = 0; i < n; i++)
        inbox_leases_forget(il, ids[i], why);
    free(ids);
    if (!l->gone)
        log_warn("inbox lease %s: %s; its inboxes are no longer watched", l->id, why);
    l->gone = true;
    il->cursor = 0;
}

/* ---- grant and merge ---- */

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* A known action due this much earlier than the engine has it is handed over again (a
 * later answer's not_before_s is rounded up to seconds: smaller moves are that). */
#define DUE_EARLIER_MS 2000

/* Would the engine watch `now` differently from `was`? (Folder state is not compared:
 * the engine's own is newer than the control plane's.) */
static bool inbox_changed(const feed_inbox *was, const feed_inbox *now)
{
    if (!str_eq(was->host, now->host) || was->port != now->port || was->security != now->security ||
        !str_eq(was->username, now->username) || !str_eq(was->password, now->password) ||
        !str_eq(was->oauth_token, now->oauth_token) || !str_eq(was->ca_file, now->ca_file) ||
        was->allow_plaintext_auth != now->allow_plaintext_auth ||
        was->poll_class != now->poll_class || was->poll_interval_s != now->poll_interval_s ||
        !str_eq(was->warmup_folder, now->warmup_folder) || was->nactions != now->nactions)
        return true;
    for (size_t i = 0; i < now->nactions; i++)
        if (was->actions[i].id != now->actions[i].id ||
            now->actions[i].not_before_ms + DUE_EARLIER_MS < was->actions[i].not_before_ms)
            return true;
    return false;
}

/* The actions still to do: not those with an outcome taken; one pending already keeps
 * its due time (the dwell counts from when it was first leased). */
static void narrow_actions(inbox_leases *il, wire_inbox *w, const wire_inbox *old, int64_t got_ms)
{
    size_t k = 0;
    pthread_mutex_lock(&il->mu);
    for (size_t i = 0; i < w->in.nactions; i++) {
        feed_action a = w->actions[i];
        if (i64map_has(&il->actions_done, a.id))
            continue;
        a.not_before_ms += got_ms;
        for (size_t j = 0; old && j < old->in.nactions; j++)
            if (old->actions[j].id == a.id && old->actions[j].not_before_ms < a.not_before_ms)
                a.not_before_ms = old->actions[j].not_before_ms;
        w->actions[k++] = a;
    }
    pthread_mutex_unlock(&il->mu);
    w->in.nactions = k;
}

/* One inbox of the answer (taken: the held table owns it from here). */
static void grant_inbox(inbox_leases *il, inbox_lease *l, wire_inbox *w, int64_t got_ms)
{
    int64_t id = w->in.mailbox_id;
    held_inbox *h = held_get(il, id);
    if (w->known && !h) {
        int64_t v;
        log_info("inbox %lld: an update of an inbox not held; the next answer lists all in full",
                 (long long)id);
        if (!i64map_get(&il->rejected, id, &v)) /* one set aside stays so: no full answers */
            il->cursor_lost = true;
        wire_inbox_free(w);
        return;
    }
    narrow_actions(il, w, h ? h->w : NULL, got_ms);
    bool watch = true;
    if (!h) {
        int64_t v;
        i64map_del(&il->rejected, id, &v);
        h = xcalloc(1, sizeof *h);
        i64map_putp(&il->held, id, h);
        log_info("inbox %lld (%s): held under inbox lease %s, %s, %zu actions", (long long)id,
                 w->in.address, l->id, wire_poll_class_names[w->in.poll_class], w->in.nactions);
    } else {
        feed_inbox was = h->w->in; /* its strings stay where they are: taken, not copied */
        if (w->known)
            wire_inbox_take_access(w, h->w);
        watch = inbox_changed(&was, &w->in) || h->lease != l;
        h->lease->ninboxes--;
        wire_inbox_free(h->w);
    }
    h->w = w;
    h->lease = l;
    l->ninboxes++;
    pthread_mutex_lock(&il->mu);
    i64map_putp(&il->lease_of, id, l);
    pthread_mutex_unlock(&il->mu);
    if (watch && il->engine)
        il->ops->watch(il->engine, &w->in);
}

/* FNV-1a: tells one reason from another. */
static int64_t reason_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (int64_t)(h >> 1);
}

/* An entry set aside: the control plane hears why, as a session event (protocol), once
 * per reason (later answers list the same entry again). An entry without a mailbox id,
 * or for an inbox held (whose last good entry stays in force), is only logged. */
static void report_rejected(inbox_leases *il, const wire_inbox_part *part)
{
    for (size_t i = 0; i < part->nrejected; i++) {
        const wire_inbox_rejected *r = &part->rejected[i];
        int64_t h = reason_hash(r->reason), was = 0;
        int64_t key = r->mailbox_id > 0 ? r->mailbox_id : 0;
        if (i64map_get(&il->rejected, key, &was) && was == h)
            continue;
        i64map_put(&il->rejected, key, h);
        log_warn("inbox lease %s: inbox %lld not watched, its entry is invalid: %s", part->lease_id,
                 (long long)r->mailbox_id, r->reason);
        if (r->mailbox_id < 1 || held_get(il, r->mailbox_id))
            continue;
        char detail[256];
        snprintf(detail, sizeof detail, "invalid inbox lease entry: %s", r->reason);
        feed_event ev = {.type = FEED_EV_SESSION,
                         .mailbox_id = r->mailbox_id,
                         .status = FEED_SES_PROTOCOL,
                         .detail = detail};
        /* reported under the lease like the engine's events */
        pthread_mutex_lock(&il->mu);
        i64map_putp(&il->lease_of, r->mailbox_id, lease_find(il, part->lease_id));
        pthread_mutex_unlock(&il->mu);
        inbox_leases_emit(il, &ev);
        int64_t v;
        pthread_mutex_lock(&il->mu);
        i64map_del(&il->lease_of, r->mailbox_id, &v);
        pthread_mutex_unlock(&il->mu);
    }
}

static int64_t heartbeat_every_ms(const inbox_leases *il, const inbox_lease *l)
{
    int64_t s = l->heartbeat_s;
    if (il->cfg->heartbeat_s > 0 && il->cfg->heartbeat_s < s)
        s = il->cfg->heartbeat_s;
    return s * 1000;
}

void inbox_leases_grant(inbox_leases *il, const wire_inbox_part *part, int64_t asked_ms,
                        int64_t got_ms)
{
    if (!part->present)
        return;
    if (part->error[0]) {
        log_error("lease: inbox part unusable, no inbox taken: %s", part->error);
        return;
    }
    inbox_lease *l = lease_find(il, part->lease_id);
    if (!l) {
        l = lease_add(il, part->lease_id);
        spool_record r;
        memset(&r, 0, sizeof r);
        r.type = SPOOL_INBOX_LEASE;
        snprintf(r.lease_id, sizeof r.lease_id, "%s", l->id);
        spool_append(il->sp, &r);
        l->next_hb_ms = INT64_MAX;
    }
    if (l->gone) /* of the previous run, or ended: the answer gives it back */
        log_info("inbox lease %s: granted again", l->id);
    l->gone = false;
    l->ttl_s = part->ttl_s;
    l->heartbeat_s = part->heartbeat_s;
    l->expires_ms = asked_ms + part->ttl_s * 1000;
    if (l->next_hb_ms > got_ms + heartbeat_every_ms(il, l))
        l->next_hb_ms = got_ms + heartbeat_every_ms(il, l);
    atomic_fetch_add(&il->stats->inbox_leases, 1);
    il->cursor_lost = false;
    size_t updates = 0;
    for (size_t i = 0; i < part->ninboxes; i++) {
        updates += part->inboxes[i]->known;
        grant_inbox(il, l, part->inboxes[i], got_ms);
        part->inboxes[i] = NULL;
    }
    il->cursor = il->cursor_lost ? 0 : part->cursor;
    report_rejected(il, part);
    log_info("inbox lease %s: %zu inboxes in the answer (%zu updates), %zu set aside, %zu held, "
             "ttl %lld s",
             l->id, part->ninboxes, updates, part->nrejected, l->ninboxes, (long long)l->ttl_s);
}

/* ---- heartbeat, expiry, release ---- */

static void heartbeat(inbox_leases *il, control *ctl, inbox_lease *l, int64_t now)
{
    buf body = BUF_INIT;
    wire_lease_id_body(&body, l->id);
    control_resp resp;
    int64_t asked_ms = clock_mono_ms();
    int rc = control_post(ctl, WIRE_PATH_HEARTBEAT, body.data, body.len, &resp, il->abort);
    buf_free(&body);
    if (rc < 0 || resp.status >= 500 || resp.status == 429) {
        log_warn("inbox lease %s: heartbeat: %s", l->id, resp.error[0] ? resp.error : "no answer");
        atomic_fetch_add(&il->stats->inbox_heartbeat_failures, 1);
        l->next_hb_ms = now + RETRY_MS;
    } else if (resp.status == 409 || resp.status == 404 || resp.status == 403) {
        lease_end(il, l, resp.error);
    } else if (resp.status != 200) {
        log_warn("inbox lease %s: heartbeat: %s", l->id, resp.error);
        l->next_hb_ms = now + heartbeat_every_ms(il, l);
    } else {
        wire_heartbeat hb;
        wire_heartbeat_parse(resp.body.data ? resp.body.data : "", resp.body.len, &hb);
        if (hb.ttl_s > 0) {
            l->ttl_s = hb.ttl_s;
            l->expires_ms = asked_ms + hb.ttl_s * 1000;
        }
        for (size_t i = 0; i < hb.ninboxes_dropped; i++) {
            held_inbox *h = held_get(il, hb.inboxes_dropped[i]);
            if (h && h->lease == l)
                inbox_leases_forget(il, hb.inboxes_dropped[i], "dropped by the control plane");
        }
        wire_heartbeat_free(&hb);
        l->next_hb_ms = now + heartbeat_every_ms(il, l);
    }
    control_resp_free(&resp);
}

void inbox_leases_heartbeats(inbox_leases *il, control *ctl, int64_t now)
{
    for (inbox_lease *l = il->head; l; l = l->next) {
        if (l->gone)
            continue;
        if (now >= l->next_hb_ms && !il->stopping)
            heartbeat(il, ctl, l, now);
        if (!l->gone && now >= l->expires_ms)
            lease_end(il, l, "not renewed within its ttl");
    }
}

void inbox_leases_release(inbox_leases *il, control *ctl, int64_t now, bool all)
{
    inbox_reports_collect(il, now);
    inbox_lease *l = il->head;
    while (l) {
        inbox_lease *next = l->next;
        if (all && l->ninboxes > 0 && (!il->engine || il->ops->finished(il->engine)))
            lease_end(il, l, "released at shutdown");
        if ((l->gone || all) && l->ninboxes == 0 && l->unreported == 0 &&
            now >= l->next_release_ms) {
            buf body = BUF_INIT;
            wire_lease_id_body(&body, l->id);
            control_resp resp;
            int rc = control_post(ctl, WIRE_PATH_RELEASE, body.data, body.len, &resp, il->abort);
            buf_free(&body);
            if (rc == 0 && (resp.status == 200 || resp.status == 400 || resp.status == 404 ||
                            resp.status == 403 || resp.status == 409)) {
                spool_record r;
                memset(&r, 0, sizeof r);
                r.type = SPOOL_RELEASED;
                snprintf(r.lease_id, sizeof r.lease_id, "%s", l->id);
                spool_append(il->sp, &r);
                log_info("inbox lease %s released", l->id);
                lease_remove(il, l);
            } else {
                l->next_release_ms = now + RETRY_MS;
                log_warn("inbox lease %s: release: %s", l->id,
                         resp.error[0] ? resp.error : "no answer");
            }
            control_resp_free(&resp);
        }
        l = next;
    }
    atomic_store(&il->stats->inbox_leases_held, (long long)il->count);
    atomic_store(&il->stats->inboxes_held, (long long)i64map_count(&il->held));
    atomic_store(&il->stats->inbox_unreported, (long long)il->nq);
}

void inbox_leases_stop(inbox_leases *il, int64_t drain_ms)
{
    il->stopping = true;
    if (il->engine)
        il->ops->stop(il->engine, drain_ms);
}

bool inbox_leases_idle(inbox_leases *il)
{
    pthread_mutex_lock(&il->mu);
    size_t nin = il->nin;
    pthread_mutex_unlock(&il->mu);
    return il->count == 0 && il->nq == 0 && nin == 0;
}

void inbox_leases_replay(inbox_leases *il, const spool_replay *rep)
{
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < rep->ninbox_leases; i++)
        if (!lease_find(il, rep->inbox_leases[i]))
            lease_add(il, rep->inbox_leases[i]);
    for (size_t i = 0; i < rep->ninbox_pending; i++) {
        const spool_inbox_event *e = &rep->inbox_pending[i];
        inbox_lease *l = lease_find(il, e->lease_id);
        if (!l) /* released already: its events still go to the control plane */
            l = lease_add(il, e->lease_id);
        if (il->nq == il->qcap) {
            il->qcap = il->qcap ? il->qcap * 2 : 256;
            il->q = xrealloc(il->q, il->qcap * sizeof *il->q);
        }
        queued_event *q = &il->q[il->nq++];
        q->e = *e;
        q->e.json = xmalloc(e->json_len + 1);
        memcpy(q->e.json, e->json, e->json_len + 1);
        q->seq = 1; /* on disk already */
        q->queued_ms = now - il->cfg->report_interval_ms;
        l->unreported++;
        if (e->action_id > 0) /* the outcome is taken: never a second one */
            i64map_put(&il->actions_done, e->action_id, 0);
    }
    /* the previous run's leases end now: their inboxes go back to the pool (or come
     * back in the next answer, which takes the lease again) */
    for (inbox_lease *l = il->head; l; l = l->next)
        l->gone = true;
    if (rep->ninbox_pending || rep->ninbox_leases)
        log_info("spool replay: %zu inbox events to report, %zu inbox leases of the previous "
                 "run to release",
                 rep->ninbox_pending, rep->ninbox_leases);
}
