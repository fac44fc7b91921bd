/* Mailbox health: the score (a Wilson lower bound of the not-junk share, less bounce,
 * complaint and authentication-failure penalties) and the band with hysteresis. See health.h. */
#include "health.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* Score penalties: a 5 % bounce share costs 20 points, a 1 % complaint share 10, and
 * authentication failures (spf, dkim or dmarc fail in the recipient's
 * Authentication-Results) up to 40 points at the lower bound of their share (like the
 * inbox share: 3 fails of 3 cost 18, 30 of 30 cost 36): mail that bounces or fails
 * authentication is not healthy whatever its inbox share says. */
#define HEALTH_BOUNCE_WEIGHT 400.0
#define HEALTH_COMPLAINT_WEIGHT 1000.0
#define HEALTH_AUTH_WEIGHT 40.0

static const char *const band_names[] = {"new", "good", "watch", "quarantine", "pause"};

void health_thresholds_default(health_thresholds *t)
{
    t->min_deliveries = 20;
    t->watch_junk = 0.10;
    t->quarantine_junk = 0.20;
    t->quarantine_bounce = 0.05;
    t->pause_junk = 0.40;
    t->hysteresis = 0.02;
    t->confidence_z = 1.96;
}

static bool share_ok(double v)
{
    return v >= 0.0 && v <= 1.0;
} /* false for NaN */

bool health_thresholds_valid(const health_thresholds *t, const char **field)
{
    const char *bad = NULL;
    if (t->min_deliveries < 1 || t->min_deliveries > 1000000)
        bad = "min_deliveries";
    else if (!share_ok(t->watch_junk))
        bad = "watch_junk";
    else if (!share_ok(t->quarantine_junk) || t->quarantine_junk < t->watch_junk)
        bad = "quarantine_junk";
    else if (!share_ok(t->pause_junk) || t->pause_junk < t->quarantine_junk)
        bad = "pause_junk";
    else if (!share_ok(t->quarantine_bounce))
        bad = "quarantine_bounce";
    else if (!share_ok(t->hysteresis) || t->hysteresis >= t->watch_junk)
        bad = "hysteresis";
    else if (!(t->confidence_z > 0.0 && t->confidence_z <= 5.0))
        bad = "confidence_z";
    if (field)
        *field = bad;
    return bad == NULL;
}

double health_wilson_lower(double k, double n, double z)
{
    if (!(n > 0.0))
        return 0.0;
    if (k < 0.0)
        k = 0.0;
    if (k > n)
        k = n;
    double p = k / n, z2 = z * z;
    double centre = p + z2 / (2.0 * n);
    double spread = z * sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n));
    double lower = (centre - spread) / (1.0 + z2 / n);
    return lower < 0.0 ? 0.0 : lower;
}

static double share(int64_t part, int64_t whole)
{
    return whole > 0 ? (double)part / (double)whole : 0.0;
}

/* The band the shares call for with every threshold lowered by `lower` (0, or the
 * hysteresis when checking whether a worse band may be left). */
static health_band band_for(const health_counts *c, const health_thresholds *t, double junk,
                            double bounce, double lower, const char **reason)
{
    int64_t placed = c->inbox + c->junk + c->other + c->missing;
    int64_t attempts = c->sent + c->bounced;
    bool judge_junk = placed >= t->min_deliveries;
    bool judge_bounce = attempts >= t->min_deliveries;
    if (judge_junk && junk >= t->pause_junk - lower) {
        *reason = "junk share at the pause threshold";
        return HEALTH_PAUSE;
    }
    if (judge_junk && junk >= t->quarantine_junk - lower) {
        *reason = "junk share at the quarantine threshold";
        return HEALTH_QUARANTINE;
    }
    if (judge_bounce && bounce >= t->quarantine_bounce - lower) {
        *reason = "bounce share at the quarantine threshold";
        return HEALTH_QUARANTINE;
    }
    if (judge_junk && junk >= t->watch_junk - lower) {
        *reason = "junk share at the watch threshold";
        return HEALTH_WATCH;
    }
    if (placed == 0 && attempts == 0) {
        *reason = "nothing to judge yet";
        return HEALTH_NEW;
    }
    *reason = judge_junk || judge_bounce ? "within every threshold"
                                         : "too few deliveries to judge a share";
    return HEALTH_GOOD;
}

void health_judge(const health_counts *c, const health_thresholds *t, health_band previous,
                  health_result *out)
{
    int64_t placed = c->inbox + c->junk + c->other + c->missing;
    int64_t attempts = c->sent + c->bounced;
    memset(out, 0, sizeof *out);
    out->junk_share = share(c->junk, placed);
    out->bounce_share = share(c->bounced, attempts);
    out->inbox_lower =
        health_wilson_lower((double)(c->inbox + c->other), (double)placed, t->confidence_z);
    out->auth_fail_lower =
        health_wilson_lower((double)c->auth_failed, (double)c->auth_seen, t->confidence_z);

    const char *reason = NULL;
    health_band band = band_for(c, t, out->junk_share, out->bounce_share, 0.0, &reason);
    if (band < previous && band != HEALTH_NEW) {
        /* Leaving a worse band needs the share a margin below its threshold. */
        const char *sticky_reason = NULL;
        health_band sticky =
            band_for(c, t, out->junk_share, out->bounce_share, t->hysteresis, &sticky_reason);
        if (sticky > band) {
            band = sticky < previous ? sticky : previous;
            reason = band == sticky ? sticky_reason : "within the hysteresis of its band";
        }
    }
    out->band = band;
    out->reason = reason;

    if (placed == 0) {
        out->score = -1;
        return;
    }
    double score = 100.0 * out->inbox_lower;
    score -= HEALTH_BOUNCE_WEIGHT * out->bounce_share;
    score -= HEALTH_COMPLAINT_WEIGHT * share(c->complaints, placed);
    score -= HEALTH_AUTH_WEIGHT * out->auth_fail_lower;
    if (score < 0.0)
        score = 0.0;
    out->score = (int)lround(score > 100.0 ? 100.0 : score);
}

const char *health_band_name(health_band b)
{
    if ((int)b < 0 || (size_t)b >= sizeof band_names / sizeof band_names[0])
        return "unknown";
    return band_names[b];
}

bool health_band_parse(const char *name, health_band *out)
{
    for (size_t i = 0; i < sizeof band_names / sizeof band_names[0]; i++)
        if (strcmp(name, band_names[i]) == 0) {
            *out = (health_band)i;
            return true;
        }
    return false;
}
