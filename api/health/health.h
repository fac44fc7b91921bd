/* Mailbox health (issue 13): a 0-100 score and a band from what the last days of a
 * mailbox's warmup mail did. Pure: common/ and libm only, no libpq, no I/O; the rollups
 * that feed it and the actions a band triggers (quarantine, pause, webhooks) live with
 * the callers.
 *
 * The score is a lower confidence bound, not a raw share: 3 of 3 in the inbox reads as
 * 44, not 100, and only many placements make a high score. The bands follow the
 * published anchors (watch at >= 10 % junk over >= 20 deliveries; quarantine at >= 20 %
 * junk or >= 5 % bounces; pause at >= 40 % junk) with a hysteresis so a mailbox on a
 * threshold does not flap between bands on every event. */
#ifndef KILN_HEALTH_H
#define KILN_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

/* What happened to a mailbox's warmup mail over the judged window (7 days, or since the
 * mailbox became active when that is later). Placements: where its sends were found. */
typedef struct health_counts {
    int64_t inbox;   /* found in INBOX */
    int64_t junk;    /* found in the \Junk folder */
    int64_t other;   /* found in another folder (a user rule): not junk */
    int64_t missing; /* not found within the placement deadline */
    int64_t sent;    /* sends that ended sent (the base of the bounce share) */
    int64_t bounced; /* sends that ended failed (hard bounce) */
    /* Placements whose Authentication-Results (as the recipient's provider wrote it)
     * gave any spf/dkim/dmarc verdict, and those with at least one fail. */
    int64_t auth_seen;
    int64_t auth_failed;
    /* Spam complaints. Always 0 today: kiln's recipients are the pool's own mailboxes,
     * which never report spam (a move to junk is a junk placement), and no feedback loop
     * (ARF) reaches kiln. Kept as an input for the day one does. */
    int64_t complaints;
} health_counts;

/* Ordered: a higher band is worse. */
typedef enum health_band {
    HEALTH_NEW = 0,    /* nothing judged yet (no placement, no send) */
    HEALTH_GOOD,       /* within every threshold */
    HEALTH_WATCH,      /* junk share at the watch threshold: reported, nothing held */
    HEALTH_QUARANTINE, /* warmup volume held at the ramp's floor for quarantine_days */
    HEALTH_PAUSE,      /* warmup paused until the customer resumes it */
} health_band;

/* Thresholds: shares in [0, 1]. Defaults from health_thresholds_default. */
typedef struct health_thresholds {
    int64_t min_deliveries;   /* a share judges nothing below this many (20) */
    double watch_junk;        /* 0.10 */
    double quarantine_junk;   /* 0.20 */
    double quarantine_bounce; /* 0.05 of sends */
    double pause_junk;        /* 0.40 */
    double hysteresis;        /* 0.02: a band is left only this far below its threshold */
    double confidence_z;      /* 1.96: the score's lower bound is at 95 % */
} health_thresholds;

typedef struct health_result {
    int score;              /* 0..100, or -1 when there is nothing to judge (band NEW) */
    health_band band;       /* after hysteresis against the previous band */
    double inbox_lower;     /* Wilson lower bound of the not-junk share of placements */
    double junk_share;      /* junk / placements (0 when none) */
    double bounce_share;    /* bounced / (sent + bounced) (0 when none) */
    double auth_fail_lower; /* Wilson lower bound of auth_failed / auth_seen (0 when none) */
    const char *reason;     /* static text: which threshold set the band */
} health_result;

void health_thresholds_default(health_thresholds *t);

/* Whether t is usable: every share in [0, 1], watch <= quarantine <= pause,
 * min_deliveries >= 1, hysteresis < watch, z in (0, 5]. On false, *field names the
 * first bad member. */
bool health_thresholds_valid(const health_thresholds *t, const char **field);

/* The Wilson score interval's lower bound for k successes in n trials at z (0 when
 * n <= 0). */
double health_wilson_lower(double k, double n, double z);

/* Judges c against t, given the band the mailbox is in now (HEALTH_NEW if none). */
void health_judge(const health_counts *c, const health_thresholds *t, health_band previous,
                  health_result *out);

const char *health_band_name(health_band b);
/* Parses a band name; false when unknown. */
bool health_band_parse(const char *name, health_band *out);

#endif
