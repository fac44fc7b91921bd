/* The leasing tables as the lease and report handlers see them: every statement of a
 * grant, a report, a renewal and a release. Rows are read by column name into the
 * planner's types (lease_plan.h) and written back as batched array parameters, a few
 * statements per call whatever the batch size. No HTTP here: functions return false on
 * a database error and the caller answers (http_tx_fail).
 * A send slot's walk: lease_store (load) -> lease_plan -> lease_store (write) ->
 * lease_answer -> agent -> lease_report -> lease_store (report). */
#ifndef KILN_LEASE_STORE_H
#define KILN_LEASE_STORE_H

#include "db.h"
#include "lease_plan.h"

#include <stdbool.h>
#include <stdint.h>

/* One picked mailbox (the details join), read by column name. Strings point into the
 * result, which the arena owns. */
typedef struct lease_row {
    lease_mailbox m; /* the planner's input; m.domain is the address's domain */
    const char *address, *display_name;
    const char *smtp_host, *smtp_security, *smtp_username;
    int64_t smtp_port;
    bool allow_plaintext_auth;
    const char *secret_hex; /* the sealed SMTP secret, hex */
    const char *day;        /* the mailbox's local day, YYYY-MM-DD */
    const char *weekday;    /* its local weekday name, for templates */
    double due_s;           /* its exact next due time, epoch seconds (inf: never) */
    bool eligible;          /* due inside the horizon with quota left; sorted first */
} lease_row;

/* Picked mailboxes that got no slot, with the due time they move to. */
typedef struct lease_push {
    int64_t *mb;
    double *due_s; /* epoch seconds; inf = cannot send until something changes */
    int n;
} lease_push;

typedef struct lease_pair {
    int64_t sender, recipient;
} lease_pair;

/* What a lease may hand out besides the senders: recipient candidates (a window of the
 * pool from a random id), the recent sender -> recipient pairs, where the senders' mail
 * landed by provider (lease_pairing.h), and message content. */
typedef struct lease_pool {
    lease_candidate *cands;    /* the planner's input; received from lease_store_load_caps */
    const char **address;      /* per candidate */
    const char **display_name; /* per candidate */
    const char **day;          /* per candidate: its local day */
    size_t ncand;
    /* The first ninbound candidates' inbound today as the candidate query read it: the
     * first plan's view (a plan again, or a pool that replies grew, reads it afresh). */
    int64_t *inbound;
    size_t ninbound;
    lease_pair *pairs;
    size_t npairs;
    lease_placement *placements; /* the senders' 7-day placements by provider */
    size_t nplacements;
    const char **subjects, **bodies; /* templates, in id order */
    int ntemplates;
    const char **topics;
    int ntopics;
} lease_pool;

/* What one lease grants one mailbox. */
typedef struct lease_granted {
    int row; /* index of its lease_row */
    const lease_row *r;
    lease_slot *slots;
    int nslots;
    int64_t next_at_s;        /* cooldown bound after the last slot */
    const int64_t *send_ids;  /* nslots, from lease_store_new_lease */
    const char **message_ids; /* nslots */
    /* nslots each, from lease_answer_compose before the write: the subject (stored on
     * the send, a reply quotes it), the template (-1: none) and topic of the body. */
    const char **subjects;
    int *templates;
    const char **topics;
    /* nslots, NULL when the lease has no reply for this mailbox: the pending reply a
     * slot carries (lease_reply.h), NULL for a fresh send. */
    const struct lease_reply **replies;
} lease_granted;

/* Begins the lease transaction: sweeps expired leases, marks the agent seen, now and
 * whether the service runs. */
bool lease_store_begin(db *d, arena *a, int64_t agent_id, int64_t *now_s, bool *running);
/* Picks and locks up to max_mailboxes unleased mailboxes due within ttl_s and reads
 * them, eligible first, furthest behind first. */
bool lease_store_pick(db *d, arena *a, int64_t max_mailboxes, int64_t ttl_s, lease_row **rows,
                      int *n);
/* Puts mailboxes in error with a reason each (their text cannot go into an answer). */
bool lease_store_set_error(db *d, arena *a, const int64_t *ids, const char *const *why, int n);
/* Moves picked mailboxes that got nothing to their next due time. */
bool lease_store_push_due(db *d, arena *a, const lease_push *p);
/* Reads the pool for these senders: pairs (when pair_gap_days > 0), their placements by
 * provider, up to ncand_want candidates with their ledger and provider (only mailboxes
 * whose inbox is ok when require_inbox), templates and topics. */
bool lease_store_load_pool(db *d, arena *a, const int64_t *senders, int nsenders,
                           int64_t pair_gap_days, int64_t ncand_want, bool require_inbox,
                           lease_pool *pool);
/* Reads the cap buckets of these users and the global ones from the start of now_s's
 * hour to horizon_s after now_s, and the candidates' inbound counts of their day into
 * pool->cands[].received (without lock, those the candidate query read, when it read
 * them all): the plan's view, which lease_store_reserve_caps checks. With
 * lock, every such bucket is created when missing and locked to commit (a plan again
 * after a reservation fell short: its bucket counts then cannot move under it). */
bool lease_store_load_caps(db *d, arena *a, const int64_t *users, int nusers, int64_t now_s,
                           int64_t horizon_s, bool lock, lease_pool *pool,
                           lease_bucket_delta **buckets, size_t *nbuckets);
/* A new lease of the agent and total fresh send ids. */
bool lease_store_new_lease(db *d, arena *a, int64_t agent_id, int64_t ttl_s, int64_t total,
                           const char **lease_id, int64_t **send_ids);
/* Writes a grant in one statement: sends, leasing rows, in_flight. */
bool lease_store_grant(db *d, arena *a, const char *lease_id, const lease_granted *g, int ng,
                       const lease_pool *pool);
/* A plan older than this (kiln_now() at the reservation minus the grant's now) is not
 * written: its slots would start in the past, in a burst, and its buckets may be past
 * the trim (Q_BUCKET_TRIM keeps 2 hours), where a fresh row would count from zero. */
#define LEASE_PLAN_MAX_AGE_S 60
enum lease_reserve {
    LEASE_RESERVE_OK,    /* every counter moved: commit */
    LEASE_RESERVE_SHORT, /* one would pass its cap: roll back and plan again */
    LEASE_RESERVE_STALE, /* the plan is older than LEASE_PLAN_MAX_AGE_S: nothing moved */
};
/* Adds the grant to its counters, each only within its cap: the recipients' inbound
 * (pool->cands[].assigned, under recipient_daily_cap) and the cap buckets (deltas, each
 * under its own cap), buckets first (users', then global), then recipients. Unless *out
 * is LEASE_RESERVE_OK nothing is settled and the caller rolls back (to its savepoint).
 * The rows stay locked to commit: call it last. */
bool lease_store_reserve_caps(db *d, arena *a, const lease_pool *pool, int64_t recipient_daily_cap,
                              int64_t plan_now_s, const lease_bucket_delta *deltas, size_t nd,
                              enum lease_reserve *out);
/* Counts a lease call's duration (kiln_lease_request_duration_seconds); false when the
 * statement failed. Run it outside the grant's transaction (lease_grant.c). */
bool lease_store_count_duration(db *d, arena *a, double seconds);

/* A lease as the agent endpoints check it. */
typedef struct lease_info {
    bool found;
    int64_t agent_id;
    bool ended, expired;
    bool inbox; /* an inbox lease (inbox_store.h) */
} lease_info;
bool lease_store_get(db *d, arena *a, const char *lease_id, lease_info *out);

/* One report batch as array literals (see pgarr.h), one element per result. */
typedef struct lease_report_batch {
    const char *ids, *status, *smtp_code, *enhanced, *detail, *latency_ms, *latency_label;
    const char *id_min, *id_max; /* the ids' range, so a plan reads only their day partitions */
} lease_report_batch;
/* The fence: *foreign = position of the first of the reported ids (array literal of n)
 * that is not part of lease_id, or -1. */
bool lease_store_report_fence(db *d, arena *a, const char *lease_id, const lease_report_batch *b,
                              const char *ids, int n, int *foreign);
/* Applies a report batch and refreshes the due time of mailboxes it returned to the
 * pool; *applied gets the ids that changed. Without locked, only slots of this lease
 * still leased change (no row lock but the update's: the common case, one statement);
 * with locked, every slot of it still open (leased, expired, cancelled), the previous
 * status read under a row lock. A batch the first leaves short (a duplicate, a slot
 * given back meanwhile) goes through the second, which then applies only the rest. */
bool lease_store_report_apply(db *d, arena *a, const char *lease_id, const lease_report_batch *b,
                              bool locked, int64_t **applied, int *napplied);

/* A heartbeat: sweep, seen, renewal, and the slots the agent must drop (cancelled
 * here). renewed is false when the lease had ended; the transaction is committed. */
typedef struct lease_renewal {
    bool renewed;
    const char *expires_at; /* ISO 8601 */
    int64_t ttl_s;
    const char *service; /* running | stopped */
    int64_t *cancel;
    int ncancel;
} lease_renewal;
bool lease_store_renew(db *d, arena *a, int64_t agent_id, const char *lease_id, lease_renewal *out);
/* Ends the lease; *released = slots given back. */
bool lease_store_release(db *d, arena *a, const char *lease_id, int64_t *released);

#endif
