/* The engagement policy (see engage.h): one seeded draw per decision, a log-normal
 * dwell capped by the plan, every action moved out of the recipient's quiet hours. */
#include "engage.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* The dwell's spread: ln-space standard deviation. 1.2 puts the 90th percentile at
 * about 4.7x the median and the 99th at about 16x: most mail is read within the hour,
 * some only hours later, as people do (docs/design.md, "Engagement plan"). */
#define ENGAGE_DWELL_SIGMA 1.2
#define ENGAGE_DWELL_MIN_S 60
/* After the quiet hours end, actions spread over this much (not all at 07:00 sharp). */
#define ENGAGE_WAKE_SPREAD_S (45 * 60)
/* Filing follows the reading by 1 to 10 minutes. */
#define ENGAGE_FILE_DELAY_MIN_S 60
#define ENGAGE_FILE_DELAY_SPAN_S 540

/* The uniforms one plan draws, always all of them, in this order. */
enum {
    U_UNTOUCHED,
    U_RESCUE,
    U_ENGAGED, /* \Seen and the reply share one draw, so a reply is a read message */
    U_FLAGGED,
    U_DWELL_A,
    U_DWELL_B,
    U_WAKE,
    U_FILE,
    U_REPLY_A,
    U_REPLY_B,
    U_REPLY_WAKE,
    U_COUNT
};

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void engage_rng_seed(engage_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

uint64_t engage_rng_next(engage_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double engage_rng_unit(engage_rng *r)
{
    return (double)(engage_rng_next(r) >> 11) * 0x1.0p-53;
}

void engage_params_default(engage_params *p)
{
    p->open_rate = ENGAGE_DEFAULT_OPEN_RATE;
    p->important_rate = ENGAGE_DEFAULT_IMPORTANT_RATE;
    p->rescue_rate = ENGAGE_DEFAULT_RESCUE_RATE;
    p->reply_rate = ENGAGE_DEFAULT_REPLY_RATE;
    p->untouched_rate = ENGAGE_DEFAULT_UNTOUCHED_RATE;
    p->dwell_median_s = ENGAGE_DEFAULT_DWELL_MEDIAN_MIN * 60;
    p->dwell_max_s = ENGAGE_DEFAULT_DWELL_MAX_MIN * 60;
    p->quiet_start_min = ENGAGE_DEFAULT_QUIET_START_HOUR * 60;
    p->quiet_end_min = ENGAGE_DEFAULT_QUIET_END_HOUR * 60;
    p->retention_days = ENGAGE_DEFAULT_RETENTION_DAYS;
    p->max_reply_depth = ENGAGE_DEFAULT_MAX_REPLY_DEPTH;
}

const char *engage_kind_name(engage_kind k)
{
    switch (k) {
    case ENGAGE_RESCUE:
        return "rescue";
    case ENGAGE_MARK:
        return "mark";
    case ENGAGE_FILE:
        return "file";
    case ENGAGE_PRUNE:
        return "prune";
    }
    return "?";
}

size_t engage_flag_names(unsigned flags, const char *out[2])
{
    size_t n = 0;
    if (flags & ENGAGE_FLAG_SEEN)
        out[n++] = "\\Seen";
    if (flags & ENGAGE_FLAG_FLAGGED)
        out[n++] = "\\Flagged";
    return n;
}

static int32_t offset_at(const engage_tz *tz, int64_t t)
{
    if (!tz || tz->n == 0)
        return 0;
    int32_t off = tz->spans[0].offset_s;
    for (size_t i = 1; i < tz->n && tz->spans[i].from_s <= t; i++)
        off = tz->spans[i].offset_s;
    return off;
}

int32_t engage_local_minute(const engage_tz *tz, int64_t t)
{
    int64_t local = t + offset_at(tz, t);
    int64_t sec = ((local % 86400) + 86400) % 86400;
    return (int32_t)(sec / 60);
}

bool engage_is_quiet(const engage_params *p, const engage_tz *tz, int64_t t)
{
    int32_t a = p->quiet_start_min, b = p->quiet_end_min;
    if (a == b)
        return false;
    int32_t m = engage_local_minute(tz, t);
    return a < b ? (m >= a && m < b) : (m >= a || m < b);
}

/* The first time at or after t outside the quiet hours, spread by wake_u over the
 * first minutes of the morning. Steps minute by minute, so a DST switch inside the
 * night is read from the spans rather than computed; at most a day of steps. */
static int64_t out_of_quiet(const engage_params *p, const engage_tz *tz, int64_t t, double wake_u)
{
    if (!engage_is_quiet(p, tz, t))
        return t;
    for (int steps = 0; steps <= 1441 && engage_is_quiet(p, tz, t); steps++)
        t = t - (((t % 60) + 60) % 60) + 60;
    int64_t spread = (int64_t)(wake_u * ENGAGE_WAKE_SPREAD_S);
    /* A short waking day could put the spread back into the quiet hours. */
    return engage_is_quiet(p, tz, t + spread) ? t : t + spread;
}

/* A log-normal delay with the plan's median, capped: two uniforms, Box-Muller. The floor
 * is a minute, or half the median for a plan quicker than two minutes (the demo's one
 * minute would otherwise read half of its mail at exactly 60 s and reply no sooner than
 * two minutes after the find). */
static int64_t dwell_s(const engage_params *p, double ua, double ub)
{
    double z = sqrt(-2.0 * log(1.0 - ua)) * cos(2.0 * M_PI * ub);
    double d = (double)p->dwell_median_s * exp(ENGAGE_DWELL_SIGMA * z);
    int64_t floor_s = ENGAGE_DWELL_MIN_S;
    if (p->dwell_median_s < 2 * ENGAGE_DWELL_MIN_S) {
        int64_t half = p->dwell_median_s / 2; /* whole seconds, at least one */
        floor_s = half > 0 ? half : 1;
    }
    if (d > (double)p->dwell_max_s)
        d = (double)p->dwell_max_s;
    if (d < (double)floor_s)
        d = (double)floor_s;
    return (int64_t)d;
}

static bool rate_ok(double r)
{
    return r >= 0.0 && r <= 1.0; /* false for NaN too */
}

static bool params_ok(const engage_params *p)
{
    return rate_ok(p->open_rate) && rate_ok(p->important_rate) && rate_ok(p->rescue_rate) &&
           rate_ok(p->reply_rate) && rate_ok(p->untouched_rate) && p->dwell_median_s >= 1 &&
           p->dwell_max_s >= p->dwell_median_s && p->quiet_start_min >= 0 &&
           p->quiet_start_min < 1440 && p->quiet_end_min >= 0 && p->quiet_end_min < 1440 &&
           p->retention_days >= 3 && p->retention_days <= 3650 && p->max_reply_depth >= 0 &&
           p->max_reply_depth <= 10;
}

static bool found_ok(const engage_found *f)
{
    if (f->folder != ENGAGE_FOLDER_INBOX && f->folder != ENGAGE_FOLDER_JUNK &&
        f->folder != ENGAGE_FOLDER_OTHER)
        return false;
    if (f->reply_depth < 0 || (f->tz && f->tz->n > ENGAGE_TZ_MAX_SPANS))
        return false;
    return true;
}

static void add(engage_out *out, engage_kind kind, int64_t at_s, unsigned flags)
{
    engage_action *a = &out->actions[out->nactions++];
    a->kind = kind;
    a->at_s = at_s;
    a->flags = flags;
}

int engage_plan_for_found(const engage_params *p, const engage_found *f, engage_rng *r,
                          engage_out *out)
{
    double u[U_COUNT];
    for (int i = 0; i < U_COUNT; i++)
        u[i] = engage_rng_unit(r);
    memset(out, 0, sizeof *out);
    if (!params_ok(p) || !found_ok(f))
        return -EINVAL;

    /* Junk is rescued at rescue_rate, and a junk message not rescued is left where it
     * is; inbox (and other-folder) mail is left alone at untouched_rate. */
    bool rescue = f->folder == ENGAGE_FOLDER_JUNK && u[U_RESCUE] < p->rescue_rate;
    if (f->folder == ENGAGE_FOLDER_JUNK ? !rescue : u[U_UNTOUCHED] < p->untouched_rate) {
        out->untouched = true;
        return 0;
    }
    const engage_tz *tz = f->tz;
    int64_t act =
        out_of_quiet(p, tz, f->found_s + dwell_s(p, u[U_DWELL_A], u[U_DWELL_B]), u[U_WAKE]);
    bool reply = f->reply_depth < p->max_reply_depth && u[U_ENGAGED] < p->reply_rate;
    unsigned flags = 0;
    if (reply || u[U_ENGAGED] < p->open_rate)
        flags |= ENGAGE_FLAG_SEEN;
    if (u[U_FLAGGED] < p->important_rate)
        flags |= ENGAGE_FLAG_FLAGGED;

    if (rescue)
        add(out, ENGAGE_RESCUE, act, 0);
    if (flags)
        add(out, ENGAGE_MARK, act, flags);
    /* Filed 1-10 minutes after the reading; a plan whose median dwell is shorter than
     * that (a quick reader, as `make up`'s demo plan) files within half to one and a
     * half of its median, so the whole sequence keeps the plan's pace. */
    int64_t file_min = ENGAGE_FILE_DELAY_MIN_S, file_span = ENGAGE_FILE_DELAY_SPAN_S;
    if (p->dwell_median_s < file_min + file_span) {
        file_min = p->dwell_median_s / 2;
        file_span = p->dwell_median_s;
    }
    int64_t file_at = act + file_min + (int64_t)(u[U_FILE] * (double)file_span);
    file_at = out_of_quiet(p, tz, file_at, 0.0);
    add(out, ENGAGE_FILE, file_at, 0);
    int64_t prune_at = f->found_s + (int64_t)p->retention_days * 86400;
    add(out, ENGAGE_PRUNE, prune_at > file_at ? prune_at : file_at + 1, 0);

    if (reply) {
        out->reply = true;
        out->reply_depth = f->reply_depth + 1;
        out->reply_at_s =
            out_of_quiet(p, tz, act + dwell_s(p, u[U_REPLY_A], u[U_REPLY_B]), u[U_REPLY_WAKE]);
    }
    return 0;
}
