/* The engagement policy, pure: given one message found in a recipient's inbox (its
 * folder role, when it was found, the recipient's UTC offsets, the plan's engagement
 * parameters, its reply depth) and a seeded random source, it says which inbox actions
 * to schedule (rescue, mark, file, prune) and when, and whether and when to reply.
 * No database, no clock, no I/O: common/ only. docs/design.md, "Engagement plan". */
#ifndef KILN_ENGAGE_H
#define KILN_ENGAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A small seeded generator (xoshiro256**): the same seed gives the same plan, so a
 * caller that seeds from the send id gets the same answer for a re-reported message.
 * Owned by the caller; no allocation. */
typedef struct engage_rng {
    uint64_t s[4];
} engage_rng;

void engage_rng_seed(engage_rng *r, uint64_t seed);
uint64_t engage_rng_next(engage_rng *r);
/* Uniform in [0, 1). */
double engage_rng_unit(engage_rng *r);

/* The plan's engagement parameters, as stored on `plans` (migration 012). Rates are in
 * [0, 1]; see docs/design.md for what each is a share of. */
typedef struct engage_params {
    double open_rate;        /* touched messages marked \Seen */
    double important_rate;   /* touched messages marked \Flagged */
    double rescue_rate;      /* junk messages moved to INBOX */
    double reply_rate;       /* touched messages that end in the inbox, answered */
    double untouched_rate;   /* inbox/other messages left entirely alone */
    int32_t dwell_median_s;  /* log-normal delay before acting: median ... */
    int32_t dwell_max_s;     /* ... and cap (>= median) */
    int32_t quiet_start_min; /* recipient-local minutes after midnight: no action from */
    int32_t quiet_end_min;   /* ... until (may wrap midnight; equal = no quiet time) */
    int32_t retention_days;  /* prune this long after found (>= 3) */
    int32_t max_reply_depth; /* reply to a message only while its depth is below this */
} engage_params;

/* Defaults (the column defaults of migration 012); keep the two in step. */
#define ENGAGE_DEFAULT_OPEN_RATE 0.9
#define ENGAGE_DEFAULT_IMPORTANT_RATE 0.05
#define ENGAGE_DEFAULT_RESCUE_RATE 1.0
#define ENGAGE_DEFAULT_REPLY_RATE 0.3
#define ENGAGE_DEFAULT_UNTOUCHED_RATE 0.05
#define ENGAGE_DEFAULT_DWELL_MEDIAN_MIN 30
#define ENGAGE_DEFAULT_DWELL_MAX_MIN 480
#define ENGAGE_DEFAULT_QUIET_START_HOUR 23
#define ENGAGE_DEFAULT_QUIET_END_HOUR 7
#define ENGAGE_DEFAULT_RETENTION_DAYS 30
#define ENGAGE_DEFAULT_MAX_REPLY_DEPTH 2

/* Fills p with the defaults above. */
void engage_params_default(engage_params *p);

/* The recipient's UTC offset over time: spans[i].offset_s is in force from
 * spans[i].from_s until spans[i + 1].from_s; spans sorted by from_s; before the first
 * span the first offset holds. One span is a zone without DST; the SQL function
 * kiln_tz_spans(tz, from, hours) (migration 012) gives the spans of an IANA zone. */
#define ENGAGE_TZ_MAX_SPANS 8
typedef struct engage_tz_span {
    int64_t from_s;
    int32_t offset_s; /* local = utc + offset_s */
} engage_tz_span;

typedef struct engage_tz {
    size_t n; /* 1..ENGAGE_TZ_MAX_SPANS; 0 reads as UTC */
    engage_tz_span spans[ENGAGE_TZ_MAX_SPANS];
} engage_tz;

typedef enum engage_folder {
    ENGAGE_FOLDER_INBOX,
    ENGAGE_FOLDER_JUNK,
    ENGAGE_FOLDER_OTHER,
} engage_folder;

/* One found message. reply_depth: 0 for warmup mail, 1 for a reply to it, ... */
typedef struct engage_found {
    engage_folder folder;
    int64_t found_s; /* epoch seconds */
    const engage_tz *tz;
    int32_t reply_depth;
} engage_found;

typedef enum engage_kind {
    ENGAGE_RESCUE, /* junk -> INBOX (target "inbox") */
    ENGAGE_MARK,   /* add flags */
    ENGAGE_FILE,   /* -> the warmup folder (target "warmup") */
    ENGAGE_PRUNE,  /* UID-exact delete */
} engage_kind;

#define ENGAGE_FLAG_SEEN 1u
#define ENGAGE_FLAG_FLAGGED 2u

typedef struct engage_action {
    engage_kind kind;
    int64_t at_s;   /* epoch seconds: not before */
    unsigned flags; /* ENGAGE_FLAG_* for ENGAGE_MARK, else 0 */
} engage_action;

#define ENGAGE_MAX_ACTIONS 4

/* The plan for one message; actions in the order to apply them (times never go back). */
typedef struct engage_out {
    bool untouched; /* left alone: no actions, no reply */
    size_t nactions;
    engage_action actions[ENGAGE_MAX_ACTIONS];
    bool reply;
    int64_t reply_at_s;  /* when reply: the reply's due time (epoch seconds) */
    int32_t reply_depth; /* when reply: f->reply_depth + 1 */
} engage_out;

/* Plans one found message. Returns 0, or -EINVAL when p or f is out of range (out is
 * then zeroed: no actions, no reply). Draws a fixed number of values from r per call
 * whatever the outcome, so plans for a seed never depend on earlier outcomes. */
int engage_plan_for_found(const engage_params *p, const engage_found *f, engage_rng *r,
                          engage_out *out);

/* The wire name of a kind: "rescue", "mark", "file", "prune". */
const char *engage_kind_name(engage_kind k);
/* The IMAP flags of a mark's ENGAGE_FLAG_* bits into out ("\\Seen", "\\Flagged", static
 * strings, in that order); returns how many (at most 2). */
size_t engage_flag_names(unsigned flags, const char *out[2]);
/* The recipient-local minute of the day (0..1439) at t. */
int32_t engage_local_minute(const engage_tz *tz, int64_t t);
/* Whether t falls in the quiet time [quiet_start_min, quiet_end_min) local. */
bool engage_is_quiet(const engage_params *p, const engage_tz *tz, int64_t t);

#endif
