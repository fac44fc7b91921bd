/* The inbox side's tables as the agent endpoints see them (011_inbox.sql): every
 * statement of an inbox grant, a renewal's drops, a release, a report's events and the
 * missing sweep. Batches go as array parameters (pgarr.h), a few statements per call.
 * No HTTP: functions return false on a database error and the caller answers. */
#ifndef KILN_INBOX_STORE_H
#define KILN_INBOX_STORE_H

#include "db.h"

#include <stdbool.h>
#include <stdint.h>

/* One held inbox as a lease answer renders it; strings point into results the arena
 * owns. */
typedef struct inbox_row {
    int64_t mailbox_id;
    const char *address, *host, *security, *username, *auth, *secret_hex;
    int64_t port;
    bool allow_plaintext_auth;
    const char *poll_class; /* high | medium | low */
    bool fresh;             /* given to the agent after its cursor: carried in full */
    bool class_news;        /* poll_class differs from what the agent may have */
    bool class_recorded;    /* poll_class is the one recorded as last carried */
    bool listed;            /* in the answer (inbox_grant decides) */
} inbox_row;

typedef struct inbox_folder_row {
    int64_t mailbox_id;
    const char *name, *role;
    int64_t uidvalidity, last_uid;
} inbox_folder_row;

typedef struct inbox_action_row {
    int64_t mailbox_id, id;
    const char *kind, *folder, *flags, *target; /* flags: space separated; target or NULL */
    int64_t uidvalidity, uid, not_before_s;
    const char *message_id; /* the send's Message-ID (<...>), or NULL */
} inbox_action_row;

/* What the agent holds after a grant. */
typedef struct inbox_held {
    const char *lease_id; /* NULL: no inbox lease */
    int64_t ttl_s;
    const char *cursor; /* this answer's inbox_cursor (microseconds of its now()) */
    bool delta;         /* the request sent a cursor: held inboxes only by what is new */
    inbox_row *rows;
    int nrows;
    inbox_folder_row *folders;
    int nfolders;
    inbox_action_row *actions;
    int nactions;
} inbox_held;

/* Begins the inbox grant: sweeps expired leases, records that the agent wants inboxes
 * (locking its row, so one agent's calls run one at a time). */
bool inbox_store_begin(db *d, arena *a, int64_t agent_id);
/* The agent's live inbox lease (id NULL when none) and how many inboxes it holds. */
bool inbox_store_agent_lease(db *d, arena *a, int64_t agent_id, const char **lease_id,
                             int64_t *held);
/* Watchable inboxes and how many other agents want inboxes now: holding a live inbox
 * lease, or asked within window_s. */
#define INBOX_WANT_WINDOW_S 600
bool inbox_store_counts(db *d, arena *a, int64_t agent_id, int64_t window_s, int64_t *watchable,
                        int64_t *others);
/* Picks and locks up to n free watchable inboxes (SKIP LOCKED); *ids in the arena. */
bool inbox_store_pick(db *d, arena *a, int64_t n, int64_t **ids, int *nids);
/* A new inbox lease of the agent. */
bool inbox_store_new_lease(db *d, arena *a, int64_t agent_id, int64_t ttl_s, const char **lease_id);
/* Extends a live lease by its ttl. */
bool inbox_store_extend(db *d, arena *a, const char *lease_id);
/* Gives the picked inboxes to lease_id. */
bool inbox_store_assign(db *d, arena *a, const char *lease_id, const int64_t *ids, int n);
/* Reads what the answer carries of the lease's watchable inboxes: access, poll class,
 * folders, and per message its first pending action due within horizon_s; with the
 * agent's cursor (decimal text, or NULL), which inboxes are fresh to it and whose poll
 * class it may lack. Every row starts listed. */
bool inbox_store_load(db *d, arena *a, const char *lease_id, int64_t horizon_s, const char *cursor,
                      inbox_held *out);
/* Records the poll classes an answer carries (array literals of mailbox ids, classes). */
bool inbox_store_class_sent(db *d, arena *a, const char *ids, const char *classes);

/* Held inboxes of a lease that must go: no longer watchable, IMAP access changed, or
 * beyond share when others want inboxes (share 0: no limit). Frees them; *dropped in the
 * arena, ascending. Its own transaction. */
bool inbox_store_drop(db *d, arena *a, int64_t agent_id, const char *lease_id, int64_t **dropped,
                      int *ndropped);
/* Ends an inbox lease; *released = inboxes given back. */
bool inbox_store_release(db *d, arena *a, const char *lease_id, int64_t *released);

/* ---- reports ---------------------------------------------------------------------- */

/* Of the mailbox ids (array literal), those this lease holds: mailbox_id, imap_host,
 * address, now_s (the report's clock, epoch seconds), then the engagement inputs of each
 * as a recipient in lease_reply_engage_rows' columns (send_id 0, reply_depth 0: the
 * send's own comes from inbox_store_sends; the zone spans NULL) and its timezone, for
 * lease_reply_zone_spans. */
bool inbox_store_lease_inboxes(db *d, arena *a, const char *lease_id, const char *ids,
                               PGresult **out);
/* id, mailbox_id, recipient_id, reply_depth of the sends (array literal). */
bool inbox_store_sends(db *d, arena *a, const char *ids, PGresult **out);

/* A found batch, one element per event (array literals). */
typedef struct inbox_found_batch {
    const char *ord, *mailbox_id, *folder, *uidvalidity, *uid, *send_id;
} inbox_found_batch;
/* Decides which finds are new (Q_SIGHT in inbox_store.c); *fresh gets their ords
 * (ascending), (*known)[i] whether fresh[i]'s message was known (a move) or is new. */
bool inbox_store_sight(db *d, arena *a, const inbox_found_batch *b, int64_t **fresh, bool **known,
                       int *nfresh);

/* New messages and placements: one element per message (deduplicated by the caller). */
typedef struct inbox_message_batch {
    const char *mailbox_id, *send_id, *folder, *role, *uidvalidity, *uid, *flags;
    /* placements: per message, the first find's folder */
    const char *sender_id, *placement, *first_folder, *provider, *spf, *dkim, *dmarc;
    const char *known; /* per message, as inbox_store_sight said: moved (t) or new (f) */
} inbox_message_batch;
/* Moves the known messages, inserts the new ones and records first placements; *created
 * gets the send ids of messages seen for the first time. */
bool inbox_store_messages(db *d, arena *a, const inbox_message_batch *b, int64_t **created,
                          int *ncreated);

typedef struct inbox_action_batch {
    const char *mailbox_id, *send_id, *kind, *folder, *uidvalidity, *uid, *flags, *target,
        *not_before_s;
} inbox_action_batch;
bool inbox_store_add_actions(db *d, arena *a, const inbox_action_batch *b);

typedef struct inbox_outcome_batch {
    const char *ord, *mailbox_id, *action_id, *status, *folder, *uidvalidity, *uid, *flags, *detail;
} inbox_outcome_batch;
/* Applies outcomes (the first counts); per ord: 'a' applied, 'd' duplicate, 'i' unknown
 * action of that inbox (ignored). result[k] for the k-th element. */
bool inbox_store_outcomes(db *d, arena *a, const inbox_outcome_batch *b, int n, char *result);

typedef struct inbox_folder_batch {
    const char *mailbox_id, *name, *role, *uidvalidity, *last_uid;
} inbox_folder_batch;
/* Upserts folder states forward only; *changed = rows written, *refused = new folders
 * beyond the per-mailbox bound. */
bool inbox_store_folders(db *d, arena *a, const inbox_folder_batch *b, int n, int *changed,
                         int *refused);

/* Session outcomes, one per mailbox (the last of the batch): ok / auth / tls change the
 * inbox state; *changed = mailboxes whose state changed. */
bool inbox_store_sessions(db *d, arena *a, const char *mailbox_ids, const char *status,
                          const char *detail, int *changed);

/* Sends judged missing by the sweep (array literals). */
typedef struct inbox_missing_batch {
    const char *send_id, *sender_id, *recipient_id, *provider;
} inbox_missing_batch;
/* The next batch of at most limit sends after the sweep's watermark, locked (SKIP
 * LOCKED: *locked false when another sweeper holds it). Columns: id, mailbox_id,
 * recipient_id, judged (scheduled before now - deadline_s and final), missing (sent,
 * unplaced, to a watched inbox), imap_host, address (the recipient's). */
bool inbox_store_sweep_load(db *d, arena *a, int64_t deadline_s, int64_t limit, bool *locked,
                            PGresult **out);
bool inbox_store_sweep_write(db *d, arena *a, const inbox_missing_batch *b, int64_t last_id);
/* One pass of mailbox.inbox_failing (037: kiln_inbox_failing_notify), in its own
 * transaction: the inboxes failing for at least after_s and not notified of this
 * episode, at most limit. *sent: how many. */
bool inbox_store_failing_notify(db *d, arena *a, int64_t after_s, int64_t limit, int64_t *sent);

#endif
