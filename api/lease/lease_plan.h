/* Slot scheduling for leases, without I/O: given what the database said about a
 * mailbox (window, pace, cooldown, last send), the cap buckets already granted and
 * a pool of recipient candidates, it picks slot times and recipients. api/h_agent.c
 * loads the inputs and writes the outcome; docs/leasing.md explains the rules. */
#ifndef KILN_LEASE_PLAN_H
#define KILN_LEASE_PLAN_H

#include "arena.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fixed for one lease call. Times are epoch seconds. */
typedef struct lease_limits {
    int64_t now_s;
    int64_t horizon_end_s; /* no slot later than this (now + lease ttl) */
    /* A mailbox's slots after its first: none later than this either (0: no bound).
     * The grant sets now + ttl, or now + KILN_LEASE_BACKLOG_AHEAD_S while more mailboxes
     * are due than the lease takes (docs/leasing.md "Backlog"). */
    int64_t more_end_s;
    int64_t global_minute_cap; /* slots per minute of scheduled time, all users */
    int64_t global_hour_cap;
    int64_t recipient_daily_cap; /* inbound per recipient per local day */
    bool pair_check;             /* refuse pairs seen within pair_gap_days */
} lease_limits;

/* One eligible mailbox as the eligibility query returned it. */
typedef struct lease_mailbox {
    int64_t id, user_id;
    int64_t pool_id; /* its warmup pool: recipients come from this pool only (024) */
    const char *domain;
    int64_t window_start_s, window_end_s; /* today's window, epoch seconds */
    int64_t next_at_s;                    /* 0 = none */
    int64_t last_send_s;                  /* 0 = never */
    int64_t target, done;                 /* done = sent + in_flight today */
    int64_t cooldown_min_s, cooldown_max_s;
    int64_t user_minute_cap, user_hour_cap;
    bool triggered; /* a trigger since its last grant: pacing is lifted once */
    /* Its pending replies due inside the horizon, earliest first (lease_reply_dues): the
     * first nreply_due slots are placed at their due times, not on the pacing grid. */
    const int64_t *reply_due_s;
    int nreply_due;
} lease_mailbox;

/* Recipient providers: inbox_classify's enum inbox_provider + 1 (gmail 1, outlook 2,
 * yahoo 3, other 4); 0: not known (a reply's recipient added to the pool), which takes
 * no provider term in the choice. */
#define LEASE_PROVIDERS 5

/* A possible recipient; received counts its inbound slots on its local day. The ledger
 * (sent_7d, received_7d: its last 7 local days, docs/leasing.md "Reciprocity") and the
 * provider only weigh the choice; the rules above them are hard. */
typedef struct lease_candidate {
    int64_t id, user_id;
    int64_t pool_id; /* a slot of a sender of another pool never goes to it */
    const char *domain;
    int64_t received;
    int64_t assigned; /* slots given to it by this lease (output) */
    int64_t sent_7d, received_7d;
    int provider; /* 0..LEASE_PROVIDERS - 1 */
} lease_candidate;

/* Where one sender's mail to one provider landed over the last 7 days (placement_days). */
typedef struct lease_placement {
    int64_t sender;
    int provider; /* 1..LEASE_PROVIDERS - 1 */
    int64_t decided, junk;
} lease_placement;

typedef struct lease_slot {
    int64_t at_s;
    int candidate; /* index into the candidates */
} lease_slot;

/* A cap bucket: as loaded, its count n; as a delta, the slots this lease added and the
 * cap they were planned under (the store reserves them against it, lease_store.h). */
typedef struct lease_bucket_delta {
    int64_t user_id; /* 0 = global */
    int64_t width_s; /* 60 or 3600 */
    int64_t at_s;
    int64_t n;
    int64_t cap; /* deltas only */
} lease_bucket_delta;

/* Draws for jitter and variety (cooldowns, the recipient cursor, templates, topics):
 * splitmix64 seeded once from the CSPRNG, so a lease makes one RAND_bytes call where it
 * made several per slot (each takes OpenSSL's locks and a getpid). Not for secrets. */
typedef struct lease_rng {
    uint64_t s;
} lease_rng;
void lease_rng_seed(lease_rng *r);
/* Uniform in [lo, hi]; lo when hi <= lo. */
int64_t lease_rng_range(lease_rng *r, int64_t lo, int64_t hi);

typedef struct lease_plan lease_plan;

/* Everything lives in arena a and is freed with it. bucket_hint and pair_hint size
 * the hash tables (rows loaded plus what the lease may add). */
lease_plan *lease_plan_new(arena *a, const lease_limits *lim, size_t bucket_hint, size_t pair_hint,
                           lease_candidate *candidates, size_t ncandidates);
/* Loads the slots already granted in a bucket. */
void lease_plan_load_bucket(lease_plan *p, int64_t user_id, int64_t width_s, int64_t at_s,
                            int64_t n);
/* Loads a sender -> recipient pair seen within the pair gap. */
void lease_plan_load_pair(lease_plan *p, int64_t sender, int64_t recipient);
/* Loads where the senders' mail landed by provider; before any lease_plan_mailbox. */
void lease_plan_load_placements(lease_plan *p, const lease_placement *rows, size_t n);
/* The preference among the candidates the rules allow (higher is chosen): how far the
 * candidate's received lags what it sent (7 days, with this lease's slots), less a
 * penalty for the provider where the sender lands in junk, less one for a provider the
 * sender already reaches more than its share of the pool. docs/leasing.md. */
double lease_plan_score(lease_plan *p, const lease_mailbox *m, const lease_candidate *c);
/* Plans up to max_slots slots for m into out; returns how many. *next_at_s gets the
 * earliest time of the slot after them (last slot + cooldown); *wake_s, when nothing
 * could be planned inside the horizon, the earliest time worth asking again (0 = no
 * hint). */
int lease_plan_mailbox(lease_plan *p, const lease_mailbox *m, int max_slots, lease_slot *out,
                       int64_t *next_at_s, int64_t *wake_s);
/* The most slots lease_plan_mailbox can give m when its slots after the first end at
 * now + span_s (the lease's ttl, or the backlog's KILN_LEASE_BACKLOG_AHEAD_S): what is
 * left today, and with a cooldown one slot plus one per cooldown_min_s of the span. */
int64_t lease_plan_slots_at_most(const lease_mailbox *m, int64_t span_s);
/* How many recipient candidates a lease reads: as many as it can grant slots
 * (max_sends, or the most its senders can take, lease_plan_slots_at_most, when less), at least
 * LEASE_PLAN_MIN_WINDOW. Each slot scores up to 256 of them from a random cursor and a
 * candidate takes up to the recipient cap a day, so a window the size of the lease fills
 * it; reading the window (each candidate with its ledger probes) was the largest share
 * of PostgreSQL's time per lease at twice that (docs/benchmarks.md "Leasing"). */
#define LEASE_PLAN_MIN_WINDOW 200
int64_t lease_plan_window(int64_t max_sends, int64_t left_today);
/* The buckets this lease added to, for writing back. */
size_t lease_plan_deltas(const lease_plan *p, lease_bucket_delta *out, size_t max);

#endif
