/* The engagement policy (api/engage/engage.h): over 100,000 seeded samples the plan's
 * rates hold within binomial bounds, the dwell is log-normal-shaped and capped, nothing
 * but the prune is ever due in the recipient's quiet hours (real time zones, DST switch
 * days, checked against libc's own localtime_r), untouched mail gets no action, the
 * reply depth is bounded, and a seed always gives the same plan. */
#include "engage.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define SAMPLES 100000

static engage_params quiet_free(void)
{
    engage_params p;
    engage_params_default(&p);
    p.quiet_start_min = p.quiet_end_min = 0; /* no quiet hours */
    return p;
}

static engage_found inbox_found(int64_t t)
{
    engage_found f = {.folder = ENGAGE_FOLDER_INBOX, .found_s = t, .tz = NULL, .reply_depth = 0};
    return f;
}

static const engage_action *find_kind(const engage_out *o, engage_kind k)
{
    for (size_t i = 0; i < o->nactions; i++)
        if (o->actions[i].kind == k)
            return &o->actions[i];
    return NULL;
}

/* |observed - expected| within 5 binomial standard deviations. */
static void assert_rate(const char *what, long hits, long n, double p)
{
    double obs = (double)hits / (double)n;
    double sd = sqrt(p * (1.0 - p) / (double)n);
    if (fabs(obs - p) > 5.0 * sd + 1e-12)
        fail_msg("%s: expected %.4f +- %.4f over %ld, got %.4f", what, p, 5.0 * sd, n, obs);
}

/* Filing follows the reading by 1-10 minutes; a plan whose median dwell is under 10
 * minutes (the demo's 1 minute) files within half to one and a half medians, and reads
 * no sooner than half its median (a minute for any plan of two minutes or more). */
static void test_file_delay_follows_a_quick_plan(void **state)
{
    (void)state;
    int32_t medians[] = {1800, 60};
    int64_t lo[] = {60, 30}, hi[] = {600, 90}, read_floor[] = {60, 30};
    for (int k = 0; k < 2; k++) {
        engage_params p = quiet_free();
        p.untouched_rate = 0.0;
        p.open_rate = 1.0;
        p.dwell_median_s = medians[k];
        p.dwell_max_s = 2 * medians[k];
        engage_rng r;
        engage_rng_seed(&r, 42);
        int64_t min_d = INT64_MAX, max_d = 0, min_read = INT64_MAX, max_read = 0;
        for (int i = 0; i < 2000; i++) {
            engage_found f = inbox_found(1780000000);
            engage_out o;
            assert_int_equal(engage_plan_for_found(&p, &f, &r, &o), 0);
            const engage_action *mark = find_kind(&o, ENGAGE_MARK);
            const engage_action *file = find_kind(&o, ENGAGE_FILE);
            assert_non_null(mark);
            assert_non_null(file);
            int64_t d = file->at_s - mark->at_s;
            min_d = d < min_d ? d : min_d;
            max_d = d > max_d ? d : max_d;
            int64_t read = mark->at_s - f.found_s;
            min_read = read < min_read ? read : min_read;
            max_read = read > max_read ? read : max_read;
        }
        assert_true(min_d >= lo[k] && max_d <= hi[k]);
        assert_true(max_d - min_d > (hi[k] - lo[k]) / 2); /* spread, not one value */
        /* The reading's floor: a minute, half the median for the quick plan (which reads
         * some of its mail sooner than a minute). */
        if (min_read < read_floor[k] || (medians[k] < 120 && min_read >= 60) ||
            max_read > p.dwell_max_s)
            fail_msg("median %d: read %lld..%lld s after the find, expected from %lld to %d",
                     medians[k], (long long)min_read, (long long)max_read, (long long)read_floor[k],
                     p.dwell_max_s);
    }
}

static void test_rates_hold_over_100000_samples(void **state)
{
    (void)state;
    engage_params p = quiet_free();
    p.open_rate = 0.8;
    p.important_rate = 0.07;
    p.reply_rate = 0.25;
    p.untouched_rate = 0.1;
    engage_rng r;
    engage_rng_seed(&r, 42);
    long untouched = 0, seen = 0, flagged = 0, replied = 0, touched = 0, filed = 0, pruned = 0;
    for (int i = 0; i < SAMPLES; i++) {
        engage_found f = inbox_found(1780000000 + i * 37);
        engage_out o;
        assert_int_equal(engage_plan_for_found(&p, &f, &r, &o), 0);
        if (o.untouched) {
            untouched++;
            continue;
        }
        touched++;
        const engage_action *m = find_kind(&o, ENGAGE_MARK);
        seen += m && (m->flags & ENGAGE_FLAG_SEEN);
        flagged += m && (m->flags & ENGAGE_FLAG_FLAGGED);
        replied += o.reply;
        filed += find_kind(&o, ENGAGE_FILE) != NULL;
        pruned += find_kind(&o, ENGAGE_PRUNE) != NULL;
        assert_null(find_kind(&o, ENGAGE_RESCUE)); /* inbox mail is never rescued */
        if (o.reply)
            assert_true(m && (m->flags & ENGAGE_FLAG_SEEN)); /* a reply is a read message */
    }
    assert_rate("untouched", untouched, SAMPLES, p.untouched_rate);
    assert_rate("seen", seen, touched, p.open_rate);
    assert_rate("flagged", flagged, touched, p.important_rate);
    assert_rate("replied", replied, touched, p.reply_rate);
    assert_int_equal(filed, touched);
    assert_int_equal(pruned, touched);

    /* Junk: rescued at rescue_rate; the rest is left where it is. */
    p.rescue_rate = 0.6;
    long rescued = 0, left = 0;
    for (int i = 0; i < SAMPLES; i++) {
        engage_found f = inbox_found(1780000000 + i * 41);
        f.folder = ENGAGE_FOLDER_JUNK;
        engage_out o;
        assert_int_equal(engage_plan_for_found(&p, &f, &r, &o), 0);
        const engage_action *rs = find_kind(&o, ENGAGE_RESCUE);
        if (rs) {
            rescued++;
            assert_int_equal(o.actions[0].kind, ENGAGE_RESCUE); /* rescue comes first */
        } else {
            left++;
            assert_true(o.untouched);
        }
    }
    assert_rate("rescued", rescued, SAMPLES, p.rescue_rate);
    assert_int_equal(rescued + left, SAMPLES);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_dwell_is_heavy_tailed_and_capped(void **state)
{
    (void)state;
    engage_params p = quiet_free();
    p.open_rate = 1.0; /* every touched message gets a mark at found + dwell */
    p.untouched_rate = 0.0;
    p.dwell_median_s = 30 * 60;
    p.dwell_max_s = 4 * 3600;
    engage_rng r;
    engage_rng_seed(&r, 7);
    int64_t *d = malloc(SAMPLES * sizeof *d);
    assert_non_null(d);
    long at_cap = 0;
    for (int i = 0; i < SAMPLES; i++) {
        engage_found f = inbox_found(1780000000);
        engage_out o;
        assert_int_equal(engage_plan_for_found(&p, &f, &r, &o), 0);
        const engage_action *m = find_kind(&o, ENGAGE_MARK);
        assert_non_null(m);
        d[i] = m->at_s - f.found_s;
        if (d[i] < 60 || d[i] > p.dwell_max_s)
            fail_msg("dwell %lld s outside [60, %d]", (long long)d[i], p.dwell_max_s);
        at_cap += d[i] == p.dwell_max_s;
    }
    qsort(d, SAMPLES, sizeof *d, cmp_i64);
    double median = (double)d[SAMPLES / 2], p90 = (double)d[SAMPLES * 9 / 10];
    /* log-normal, sigma 1.2: median as configured, p90 = e^(1.2816 * 1.2) = 4.66 x */
    if (fabs(median - 1800.0) > 1800.0 * 0.03)
        fail_msg("median dwell: expected 1800 s +-3%%, got %.0f", median);
    if (p90 / median < 4.0 || p90 / median > 5.4)
        fail_msg("p90/median: expected ~4.66 (a heavy tail), got %.2f", p90 / median);
    /* P(Z > ln(8) / 1.2) = 0.0416 of the samples land on the cap */
    assert_rate("at cap", at_cap, SAMPLES, 0.0416);
    /* Heavy tail: the mean is well above the median. */
    double sum = 0;
    for (int i = 0; i < SAMPLES; i++)
        sum += (double)d[i];
    if (sum / SAMPLES < 1.5 * median)
        fail_msg("mean dwell %.0f s: expected above 1.5 x the median %.0f", sum / SAMPLES, median);
    free(d);
}

/* Offsets of an IANA zone from libc (single-threaded test: TZ may be set), as spans
 * over the next days: a change is found hour by hour, then bisected to the second. */
static int32_t libc_offset(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    return (int32_t)tm.tm_gmtoff;
}

static void zone_spans(const char *zone, int64_t from, int hours, engage_tz *tz)
{
    setenv("TZ", zone, 1);
    tzset();
    tz->n = 1;
    tz->spans[0].from_s = from;
    tz->spans[0].offset_s = libc_offset(from);
    for (int64_t t = from; t < from + hours * 3600LL; t += 3600) {
        if (libc_offset(t + 3600) == libc_offset(t))
            continue;
        int64_t lo = t, hi = t + 3600; /* offset(lo) old, offset(hi) new */
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            if (libc_offset(mid) == libc_offset(lo))
                lo = mid;
            else
                hi = mid;
        }
        assert_true(tz->n < ENGAGE_TZ_MAX_SPANS);
        tz->spans[tz->n].from_s = hi;
        tz->spans[tz->n].offset_s = libc_offset(hi);
        tz->n++;
    }
}

static bool libc_quiet(const engage_params *p, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    int m = tm.tm_hour * 60 + tm.tm_min;
    int a = p->quiet_start_min, b = p->quiet_end_min;
    return a < b ? (m >= a && m < b) : (m >= a || m < b);
}

static void test_never_due_at_night_local_across_zones_and_dst(void **state)
{
    (void)state;
    static const struct {
        const char *zone;
        const char *day; /* a DST switch day of 2026 where the zone has one */
    } cases[] = {
        {"UTC", "2026-06-01"},
        {"America/New_York", "2026-03-08"},
        {"America/New_York", "2026-11-01"},
        {"Europe/Berlin", "2026-03-29"},
        {"Europe/Berlin", "2026-10-25"},
        {"Australia/Sydney", "2026-04-05"},
        {"Australia/Sydney", "2026-10-04"},
        {"America/St_Johns", "2026-03-08"},
        {"Asia/Kolkata", "2026-03-29"},
        {"Pacific/Auckland", "2026-04-05"},
    };
    engage_params p;
    engage_params_default(&p);
    p.untouched_rate = 0.0;
    p.reply_rate = 0.5;
    engage_rng r;
    engage_rng_seed(&r, 2026);
    int checked = 0, transitions = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct tm day = {0};
        assert_non_null(strptime(cases[c].day, "%Y-%m-%d", &day));
        int64_t day0 = (int64_t)timegm(&day) - 86400; /* from the day before, UTC */
        engage_tz tz;
        zone_spans(cases[c].zone, day0 - 86400, 24 * 6, &tz);
        transitions += (int)tz.n - 1;
        /* Found every 7 minutes over three days around the switch. */
        for (int64_t t = day0; t < day0 + 3 * 86400; t += 7 * 60) {
            for (int k = 0; k < 4; k++) {
                engage_found f = {.folder = k % 2 ? ENGAGE_FOLDER_JUNK : ENGAGE_FOLDER_INBOX,
                                  .found_s = t,
                                  .tz = &tz,
                                  .reply_depth = 0};
                engage_out o;
                assert_int_equal(engage_plan_for_found(&p, &f, &r, &o), 0);
                for (size_t i = 0; i < o.nactions; i++) {
                    const engage_action *a = &o.actions[i];
                    if (a->kind == ENGAGE_PRUNE)
                        continue; /* housekeeping in the warmup folder: any hour */
                    if (libc_quiet(&p, a->at_s))
                        fail_msg("%s: %s due at %lld, in the quiet hours", cases[c].zone,
                                 engage_kind_name(a->kind), (long long)a->at_s);
                    if (a->at_s < f.found_s || (i > 0 && a->at_s < o.actions[i - 1].at_s))
                        fail_msg("%s: actions out of order", cases[c].zone);
                    checked++;
                }
                if (o.reply && libc_quiet(&p, o.reply_at_s))
                    fail_msg("%s: reply due at %lld, in the quiet hours", cases[c].zone,
                             (long long)o.reply_at_s);
            }
        }
    }
    unsetenv("TZ");
    tzset();
    assert_true(checked > 50000);
    /* New York, Berlin, Sydney, St John's and Auckland switch on those days (x2 for
     * the zones listed twice): the spans saw them, so the DST paths ran. */
    assert_true(transitions >= 8);
}

static void test_quiet_hours_move_to_the_morning(void **state)
{
    (void)state;
    engage_params p;
    engage_params_default(&p);
    engage_tz utc = {.n = 0};
    /* 2026-06-01 23:30 UTC is quiet; 07:00 is not; 06:59 is. */
    assert_true(engage_is_quiet(&p, &utc, 1780356600));
    assert_false(engage_is_quiet(&p, &utc, 1780297200));
    assert_true(engage_is_quiet(&p, &utc, 1780297140));
    assert_int_equal(engage_local_minute(&utc, 1780297140), 6 * 60 + 59);
    /* A zone at +05:30: 01:00 UTC is 06:30 local (quiet), 01:30 UTC is 07:00 local. */
    engage_tz ist = {.n = 1, .spans = {{0, 19800}}};
    assert_true(engage_is_quiet(&p, &ist, 1780275600));
    assert_false(engage_is_quiet(&p, &ist, 1780277400));
    /* Equal bounds: no quiet hours at all. */
    p.quiet_start_min = p.quiet_end_min = 120;
    assert_false(engage_is_quiet(&p, &utc, 1780275600));
}

static void test_untouched_messages_get_no_actions(void **state)
{
    (void)state;
    engage_params p = quiet_free();
    p.untouched_rate = 1.0;
    p.reply_rate = 1.0;
    p.rescue_rate = 0.0;
    engage_rng r;
    engage_rng_seed(&r, 3);
    for (int i = 0; i < 10000; i++) {
        engage_found f = inbox_found(1780000000 + i);
        f.folder = (engage_folder)(i % 3);
        engage_out o;
        assert_int_equal(engage_plan_for_found(&p, &f, &r, &o), 0);
        assert_true(o.untouched);
        assert_int_equal(o.nactions, 0);
        assert_false(o.reply);
    }
}

static void test_reply_depth_is_bounded(void **state)
{
    (void)state;
    engage_params p = quiet_free();
    p.untouched_rate = 0.0;
    p.reply_rate = 1.0;
    p.max_reply_depth = 2;
    engage_rng r;
    engage_rng_seed(&r, 5);
    for (int depth = 0; depth <= 5; depth++) {
        engage_found f = inbox_found(1780000000);
        f.reply_depth = depth;
        engage_out o;
        assert_int_equal(engage_plan_for_found(&p, &f, &r, &o), 0);
        if (depth < 2) {
            assert_true(o.reply);
            assert_int_equal(o.reply_depth, depth + 1);
            const engage_action *m = find_kind(&o, ENGAGE_MARK);
            assert_non_null(m);
            assert_true(o.reply_at_s > m->at_s); /* read first, then answered */
        } else {
            assert_false(o.reply);
            assert_non_null(find_kind(&o, ENGAGE_FILE)); /* still read and filed */
        }
    }
    p.max_reply_depth = 0; /* no replies at all */
    for (int i = 0; i < 1000; i++) {
        engage_found f = inbox_found(1780000000 + i);
        engage_out o;
        assert_int_equal(engage_plan_for_found(&p, &f, &r, &o), 0);
        assert_false(o.reply);
    }
}

static void test_same_seed_same_plan(void **state)
{
    (void)state;
    engage_params p;
    engage_params_default(&p);
    engage_tz tz = {.n = 2, .spans = {{0, -18000}, {1780300000, -14400}}};
    engage_rng a, b, c;
    engage_rng_seed(&a, 99);
    engage_rng_seed(&b, 99);
    engage_rng_seed(&c, 100);
    int differ = 0;
    for (int i = 0; i < 5000; i++) {
        engage_found f = inbox_found(1780280000 + i * 13);
        f.tz = &tz;
        f.folder = (engage_folder)(i % 3);
        engage_out oa, ob, oc;
        assert_int_equal(engage_plan_for_found(&p, &f, &a, &oa), 0);
        assert_int_equal(engage_plan_for_found(&p, &f, &b, &ob), 0);
        assert_int_equal(engage_plan_for_found(&p, &f, &c, &oc), 0);
        assert_memory_equal(&oa, &ob, sizeof oa);
        differ += memcmp(&oa, &oc, sizeof oa) != 0;
    }
    assert_true(differ > 2500);
    /* A fixed number of draws per call, whatever the outcome (even a refusal): a
     * seed's later plans never depend on earlier outcomes. */
    engage_rng x, y;
    engage_rng_seed(&x, 1);
    engage_rng_seed(&y, 1);
    engage_params untouched = p;
    untouched.untouched_rate = 1.0;
    engage_params bad = p;
    bad.retention_days = 2;
    engage_found f = inbox_found(1780280000);
    engage_out o1, o2;
    assert_int_equal(engage_plan_for_found(&p, &f, &x, &o1), 0);
    assert_int_equal(engage_plan_for_found(&bad, &f, &y, &o2), -EINVAL);
    assert_memory_equal(&x, &y, sizeof x);
    assert_int_equal(engage_plan_for_found(&untouched, &f, &y, &o2), 0);
    assert_int_equal(engage_plan_for_found(&p, &f, &x, &o1), 0);
    assert_memory_equal(&x, &y, sizeof x);
}

static void test_bad_parameters_are_refused(void **state)
{
    (void)state;
    engage_params good;
    engage_params_default(&good);
    engage_rng r;
    engage_rng_seed(&r, 1);
    engage_found f = inbox_found(1780000000);
    engage_out o;
    engage_params bad[8];
    for (int i = 0; i < 8; i++)
        bad[i] = good;
    bad[0].open_rate = 1.01;
    bad[1].reply_rate = NAN;
    bad[2].retention_days = 2;
    bad[3].dwell_max_s = bad[3].dwell_median_s - 1;
    bad[4].quiet_end_min = 1440;
    bad[5].max_reply_depth = -1;
    bad[6].untouched_rate = -0.1;
    bad[7].dwell_median_s = 0;
    for (int i = 0; i < 8; i++) {
        memset(&o, 0xff, sizeof o);
        assert_int_equal(engage_plan_for_found(&bad[i], &f, &r, &o), -EINVAL);
        assert_int_equal(o.nactions, 0);
        assert_false(o.reply);
    }
    f.folder = (engage_folder)7;
    assert_int_equal(engage_plan_for_found(&good, &f, &r, &o), -EINVAL);
    f.folder = ENGAGE_FOLDER_INBOX;
    f.reply_depth = -1;
    assert_int_equal(engage_plan_for_found(&good, &f, &r, &o), -EINVAL);
    assert_string_equal(engage_kind_name(ENGAGE_FILE), "file");
    const char *names[2];
    assert_int_equal(engage_flag_names(ENGAGE_FLAG_SEEN | ENGAGE_FLAG_FLAGGED, names), 2);
    assert_string_equal(names[0], "\\Seen");
    assert_string_equal(names[1], "\\Flagged");
    assert_int_equal(engage_flag_names(ENGAGE_FLAG_FLAGGED, names), 1);
    assert_string_equal(names[0], "\\Flagged");
    assert_int_equal(engage_flag_names(0, names), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rates_hold_over_100000_samples),
        cmocka_unit_test(test_file_delay_follows_a_quick_plan),
        cmocka_unit_test(test_dwell_is_heavy_tailed_and_capped),
        cmocka_unit_test(test_never_due_at_night_local_across_zones_and_dst),
        cmocka_unit_test(test_quiet_hours_move_to_the_morning),
        cmocka_unit_test(test_untouched_messages_get_no_actions),
        cmocka_unit_test(test_reply_depth_is_bounded),
        cmocka_unit_test(test_same_seed_same_plan),
        cmocka_unit_test(test_bad_parameters_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
