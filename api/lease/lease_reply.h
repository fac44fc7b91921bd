/* Replies as sends (issue 13): a reply waits in pending_replies with a due time until a
 * grant gives it a slot of the replying mailbox, the first at or after its due time that
 * the mailbox's caps, window and cooldown allow (lease_plan plans the slots as for any
 * send, a due reply lifting pacing for its slot (028); a due reply then takes one over,
 * with its own recipient and threading).
 * Rules: docs/design.md "Engagement plan"; the SQL: 012_engagement.sql. */
#ifndef KILN_LEASE_REPLY_H
#define KILN_LEASE_REPLY_H

#include "db.h"
#include "engage.h"
#include "lease_store.h"
#include "mailbox_states.h"

#include <stdbool.h>
#include <stdint.h>

/* A reply that found no slot for this long after its due time is not sent any more: a
 * days-late answer reads as odd, and the slot is better used for fresh mail. (Also in
 * 038's kiln_reply_due and kiln_due_for.) */
#define REPLY_TTL "3 days"
/* SQL: the pending reply pr can go out: its recipient (the mailbox it answers) takes
 * warmup mail now (SENDING_STATES). A reply to a mailbox paused, in error or deleted since
 * waits (until REPLY_TTL) without lifting its sender's pacing: until session 35 it did,
 * and the replying mailbox sent every cooldown, a fresh send in the reply's early slot,
 * for as long as the reply waited. (Also in 038's kiln_reply_due and kiln_due_for.) */
#define REPLY_RECIPIENT_OPEN                                                                       \
    "EXISTS (SELECT 1 FROM mailboxes rm JOIN users ru ON ru.id = rm.user_id "                      \
    "WHERE rm.id = pr.recipient_id AND " SENDING_STATES_OF("rm", "ru") ")"
/* SQL: the earliest pending reply of mailbox m still worth sending (k.now: the
 * statement's now), the reply term of a due time (kiln_due_at_reply, 028). A subquery,
 * not kiln_reply_due: that function (SQL with a FROM, never inlined) ran the
 * SQL-function executor once per row (032). pending_replies_due_idx serves it. */
#define REPLY_DUE_MIN                                                                              \
    "(SELECT min(pr.due_at) FROM pending_replies pr WHERE pr.mailbox_id = m.id "                   \
    "AND pr.send_id IS NULL AND pr.due_at > k.now - interval '" REPLY_TTL "' "                     \
    "AND " REPLY_RECIPIENT_OPEN ")"

/* Schedules the reply to the received send parent_send_id, from its recipient back to its
 * sender, due at due_s (epoch seconds; the engagement plan's reply_at_s). *reply_id gets
 * the pending reply's id, 0 when none was scheduled (unknown parent, no Message-ID, or
 * already answered: one reply per received message). Runs in the caller's transaction. */
bool lease_reply_schedule(db *d, arena *a, int64_t parent_send_id, int64_t due_s,
                          int64_t *reply_id);

/* The same for n received sends at once (one statement, in order); *scheduled gets how
 * many were scheduled (the others: unknown, no Message-ID, or answered already). */
bool lease_reply_schedule_many(db *d, arena *a, const int64_t *parent_send_ids,
                               const int64_t *due_s, size_t n, int *scheduled);

/* What the engagement policy (engage_plan_for_found) needs beside a found event, for one
 * received send: its recipient's plan, that mailbox's time zone spans from the found
 * time, and the send's reply depth. */
typedef struct lease_engage_input {
    int64_t send_id, recipient_id;
    engage_params params;
    engage_tz tz;
    int32_t reply_depth;
} lease_engage_input;

/* Loads the inputs of received sends (kiln_engage_inputs, migration 012; the zone spans
 * from from_s over 96 hours): *out gets one entry per known send with a recipient, in
 * the order of send_ids, *n how many; in arena a. */
bool lease_reply_engage_inputs(db *d, arena *a, const int64_t *send_ids, size_t nsends,
                               int64_t from_s, lease_engage_input **out, size_t *n);
/* The same from any result with kiln_engage_inputs' column names (found by name; the
 * report reads them with its inboxes, inbox_store_lease_inboxes): one entry per row. */
void lease_reply_engage_rows(const PGresult *r, arena *a, lease_engage_input **out, size_t *n);

/* Fills in[i].tz from zones[i] for the n inputs: each zone's spans from the start of
 * now_s's hour over 97 hours (kiln_tz_spans), computed once per zone and hour in this
 * process and kept (a report's inboxes read NULL spans: inbox_store_lease_inboxes). */
bool lease_reply_zone_spans(db *d, arena *a, int64_t now_s, const char *const *zones,
                            lease_engage_input *in, size_t n);

/* A pending reply as a grant sees it; strings point into a result the arena owns. */
typedef struct lease_reply {
    int64_t id;
    int64_t mailbox_id; /* the replying mailbox */
    int64_t due_s;
    int64_t recipient_id;
    int candidate;           /* its recipient's index in the pool; -1: not sendable now */
    const char *subject;     /* "Re: ..." */
    const char *in_reply_to; /* <msg-id> */
    const char *thread_refs; /* msg-ids oldest first, space separated */
    bool taken;              /* given a slot by this grant */
} lease_reply;

typedef struct lease_replies {
    lease_reply *v; /* by mailbox_id, then due time */
    size_t n;
} lease_replies;

/* Loads the pending replies of these (locked) senders due within horizon_s, and appends
 * their recipients to the pool's candidates when not there yet (only active mailboxes of
 * active users, as the pool holds). Call after lease_store_load_pool and before
 * lease_store_load_caps, which reads every candidate's inbound count. */
bool lease_reply_load(db *d, arena *a, const int64_t *senders, int nsenders, int64_t horizon_s,
                      lease_pool *pool, lease_replies *out);

/* The due times of mailbox_id's loaded replies, earliest first, into *due_s (in arena a;
 * NULL when none): how many. The planner places that many slots at the replies' due
 * times rather than on the pacing grid (lease_mailbox.reply_due_s). */
int lease_reply_dues(const lease_replies *rs, int64_t mailbox_id, arena *a, const int64_t **due_s);

/* Gives gr's planned slots, in time order, to gr's due replies (due_s <= the slot's time,
 * recipient under recipient_daily_cap): the slot's recipient becomes the reply's and
 * gr->replies[slot] points at it. Pure. */
void lease_reply_assign(arena *a, lease_replies *rs, lease_pool *pool, int64_t recipient_daily_cap,
                        lease_granted *gr);

#endif
