/* Kept connections (inbox_internal.h, cfg.keep): a polled inbox's session stays logged
 * in between polls where its server's cap has room. Each server keeps its kept
 * connections in an LRU (least recently used first); a connection that waits for room
 * there logs out the oldest; none is kept while others wait, nor where kept connections
 * are evicted before their next poll would come. The poll on a kept connection and its
 * end (evicted, closed by the server) are inbox_watch.c's. */
#include "inbox_internal.h"

/* A kept connection lives at most this long between polls (servers log a client out
 * after 30 idle minutes: RFC 3501 §5.4), and a server that evicted one forgets it after
 * KEEP_FORGET_MS. */
#define KEEP_MAX_INTERVAL_MS ((int64_t)20 * 60000)
#define KEEP_FORGET_MS ((int64_t)15 * 60000)

static void kept_push(inbox_server *s, inbox *ib)
{
    ib->kept_next = NULL;
    ib->kept_prev = s->kept_tail;
    if (s->kept_tail)
        s->kept_tail->kept_next = ib;
    else
        s->kept_head = ib;
    s->kept_tail = ib;
}

void inbox_kept_remove(inbox_server *s, inbox *ib)
{
    if (ib->kept_prev)
        ib->kept_prev->kept_next = ib->kept_next;
    else if (s->kept_head == ib)
        s->kept_head = ib->kept_next;
    if (ib->kept_next)
        ib->kept_next->kept_prev = ib->kept_prev;
    else if (s->kept_tail == ib)
        s->kept_tail = ib->kept_prev;
    ib->kept_prev = ib->kept_next = NULL;
}

/* Whether a polled inbox keeps its connection after this poll: kept ones count against
 * the server's cap, so never while another connection waits for room there (that no
 * eviction serves already), and only where they live until their next poll. A server that
 * evicted kept connections younger than this inbox's interval keeps none of that
 * interval (its connections would only be evicted again) until KEEP_FORGET_MS pass
 * without an eviction. */
static bool may_keep(const inbox_engine *e, const inbox *ib, int64_t interval_ms, int64_t now)
{
    const inbox_server *s = ib->srv;
    if (e->stopping || ib->dropped || ib->next_spec || interval_ms > KEEP_MAX_INTERVAL_MS ||
        inbox_server_room_waiters(s) > s->evicting)
        return false;
    return !s->last_evict_ms || now - s->last_evict_ms > KEEP_FORGET_MS ||
           interval_ms <= s->kept_life_ms;
}

/* Connections wait for room at s: the least recently used kept connections log out,
 * one for each waiter that no eviction under way serves already. */
void inbox_evict_kept(inbox_engine *e, inbox_server *s)
{
    int64_t now = e->loop.now_ms;
    while (s->evicting < inbox_server_room_waiters(s) && s->kept_head) {
        inbox *k = s->kept_head;
        inbox_kept_remove(s, k);
        k->evicted = true;
        s->evicting++;
        int64_t life = now - k->kept_since_ms;
        s->kept_life_ms = s->last_evict_ms ? (3 * s->kept_life_ms + life) / 4 : life;
        s->last_evict_ms = now > 0 ? now : 1;
        atomic_fetch_add(&e->kept_evicted, 1);
        inbox_poke(e, k); /* its stepped hook sends the LOGOUT */
    }
}

/* A poll's work is done and its session stays logged in (the job's keep): kept until
 * its next poll (or an action's due time), or logged out when may_keep says no. */
int inbox_keep_or_leave(inbox_engine *e, inbox *ib, imap_net *n, int64_t now)
{
    int64_t interval = inbox_poll_interval_ms(e, ib);
    inbox_finish_pass(e, ib);
    inbox_visit_done(e, ib); /* its work is done; the login keeps it */
    ib->kept_visit = false;
    if (!may_keep(e, ib, interval, now)) {
        ib->stop_sent = true;
        return imap_net_stop(n, now);
    }
    int64_t due = inbox_next_action_due_ms(ib, now);
    ib->visit_at_ms = due < now + interval ? due : now + interval;
    ib->kept_since_ms = now;
    inbox_enter(e, ib, IB_KEPT);
    kept_push(ib->srv, ib);
    return 0;
}
