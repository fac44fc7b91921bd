/* api/health: the score is a lower confidence bound (a new mailbox earns it), the bands
 * follow the published anchors only over enough deliveries, and hysteresis keeps a
 * mailbox on a threshold from flapping. */
#include "health.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static health_thresholds T;

static int setup(void **state)
{
    (void)state;
    health_thresholds_default(&T);
    return 0;
}

static health_result judge(int64_t inbox, int64_t junk, int64_t missing, int64_t sent,
                           int64_t bounced, health_band previous)
{
    health_counts c = {
        .inbox = inbox, .junk = junk, .missing = missing, .sent = sent, .bounced = bounced};
    health_result r;
    health_judge(&c, &T, previous, &r);
    return r;
}

static void test_wilson_lower_bound_matches_known_values(void **state)
{
    (void)state;
    /* 3/3 at 95 %: 0.4385; 0/10: 0; 50/100: 0.4038 (textbook values). */
    assert_true(fabs(health_wilson_lower(3, 3, 1.96) - 0.4385) < 1e-3);
    assert_true(health_wilson_lower(0, 10, 1.96) == 0.0);
    assert_true(fabs(health_wilson_lower(50, 100, 1.96) - 0.4038) < 1e-3);
    assert_true(health_wilson_lower(5, 0, 1.96) == 0.0);
    assert_true(health_wilson_lower(12, 10, 1.96) <= 1.0); /* k clamped to n */
}

static void test_three_of_three_does_not_read_as_a_hundred(void **state)
{
    (void)state;
    assert_int_equal(judge(3, 0, 0, 3, 0, HEALTH_NEW).score, 44);
    assert_int_equal(judge(30, 0, 0, 30, 0, HEALTH_NEW).score, 89);
    assert_int_equal(judge(300, 0, 0, 300, 0, HEALTH_NEW).score, 99);
    /* More evidence of the same share never lowers the score. */
    int last = -1;
    for (int n = 1; n <= 2000; n *= 2) {
        int s = judge(n, 0, 0, n, 0, HEALTH_NEW).score;
        assert_true(s >= last);
        last = s;
    }
}

static void test_nothing_placed_is_new_with_no_score(void **state)
{
    (void)state;
    health_result r = judge(0, 0, 0, 0, 0, HEALTH_NEW);
    assert_int_equal(r.band, HEALTH_NEW);
    assert_int_equal(r.score, -1);
    /* Sends but no placement yet: judged on bounces only, no score. */
    r = judge(0, 0, 0, 40, 0, HEALTH_NEW);
    assert_int_equal(r.band, HEALTH_GOOD);
    assert_int_equal(r.score, -1);
}

static void test_bands_follow_the_published_anchors(void **state)
{
    (void)state;
    assert_int_equal(judge(91, 9, 0, 100, 0, HEALTH_NEW).band, HEALTH_GOOD);
    assert_int_equal(judge(90, 10, 0, 100, 0, HEALTH_NEW).band, HEALTH_WATCH);
    assert_int_equal(judge(81, 19, 0, 100, 0, HEALTH_NEW).band, HEALTH_WATCH);
    assert_int_equal(judge(80, 20, 0, 100, 0, HEALTH_NEW).band, HEALTH_QUARANTINE);
    assert_int_equal(judge(61, 39, 0, 100, 0, HEALTH_NEW).band, HEALTH_QUARANTINE);
    assert_int_equal(judge(60, 40, 0, 100, 0, HEALTH_NEW).band, HEALTH_PAUSE);
    /* 5 % bounces quarantine whatever the placements say. */
    assert_int_equal(judge(100, 0, 0, 95, 5, HEALTH_NEW).band, HEALTH_QUARANTINE);
    assert_int_equal(judge(100, 0, 0, 96, 4, HEALTH_NEW).band, HEALTH_GOOD);
    /* Missing mail counts against the score, not as junk. */
    health_result r = judge(50, 0, 50, 100, 0, HEALTH_NEW);
    assert_int_equal(r.band, HEALTH_GOOD);
    assert_true(r.score < 45);
}

static void test_too_few_deliveries_judge_no_share(void **state)
{
    (void)state;
    /* 19 placements, all junk: not enough to band; the score still says it. */
    health_result r = judge(0, 19, 0, 19, 0, HEALTH_NEW);
    assert_int_equal(r.band, HEALTH_GOOD);
    assert_int_equal(r.score, 0);
    assert_int_equal(judge(0, 20, 0, 20, 0, HEALTH_NEW).band, HEALTH_PAUSE);
    assert_int_equal(judge(19, 0, 0, 0, 19, HEALTH_NEW).band, HEALTH_GOOD);
}

static void test_hysteresis_keeps_a_band_near_its_threshold(void **state)
{
    (void)state;
    /* In watch at 10 %; 9 % keeps it there, 7 % leaves. */
    assert_int_equal(judge(91, 9, 0, 100, 0, HEALTH_WATCH).band, HEALTH_WATCH);
    assert_int_equal(judge(93, 7, 0, 100, 0, HEALTH_WATCH).band, HEALTH_GOOD);
    /* In quarantine: 19 % stays, 17 % drops to watch, not further. */
    assert_int_equal(judge(81, 19, 0, 100, 0, HEALTH_QUARANTINE).band, HEALTH_QUARANTINE);
    assert_int_equal(judge(83, 17, 0, 100, 0, HEALTH_QUARANTINE).band, HEALTH_WATCH);
    /* In pause: 39 % stays paused; 30 % drops to quarantine. */
    assert_int_equal(judge(61, 39, 0, 100, 0, HEALTH_PAUSE).band, HEALTH_PAUSE);
    assert_int_equal(judge(70, 30, 0, 100, 0, HEALTH_PAUSE).band, HEALTH_QUARANTINE);
    /* Hysteresis never makes a band worse than the one it was in. */
    assert_int_equal(judge(91, 9, 0, 100, 0, HEALTH_GOOD).band, HEALTH_GOOD);
}

static void test_penalties_lower_the_score(void **state)
{
    (void)state;
    int clean = judge(300, 0, 0, 300, 0, HEALTH_NEW).score;
    int bouncing = judge(300, 0, 0, 285, 15, HEALTH_NEW).score;
    assert_int_equal(clean - bouncing, 20);
    /* Authentication failures cost up to 40 points at the lower bound of their share:
     * 3 of 3 cost 17.5 (a few fails are not yet a verdict), 30 of 30 cost 35.5, none 0
     * (clean is 98.7 before rounding). */
    health_counts c = {.inbox = 300, .sent = 300, .auth_seen = 3, .auth_failed = 3};
    health_result r;
    health_judge(&c, &T, HEALTH_NEW, &r);
    assert_int_equal(r.score, clean - 18);
    c.auth_seen = c.auth_failed = 30;
    health_judge(&c, &T, HEALTH_NEW, &r);
    assert_int_equal(r.score, clean - 36);
    c.auth_failed = 0;
    health_judge(&c, &T, HEALTH_NEW, &r);
    assert_int_equal(r.score, clean);
    c.auth_seen = 0; /* no verdict seen: nothing known, nothing taken */
    health_judge(&c, &T, HEALTH_NEW, &r);
    assert_int_equal(r.score, clean);
    c.complaints = 300;
    health_judge(&c, &T, HEALTH_NEW, &r);
    assert_int_equal(r.score, 0);
}

static void test_thresholds_are_validated(void **state)
{
    (void)state;
    const char *field = NULL;
    assert_true(health_thresholds_valid(&T, &field));
    assert_null(field);
    health_thresholds t = T;
    t.quarantine_junk = 0.05; /* below watch */
    assert_false(health_thresholds_valid(&t, &field));
    assert_string_equal(field, "quarantine_junk");
    t = T;
    t.pause_junk = NAN;
    assert_false(health_thresholds_valid(&t, &field));
    assert_string_equal(field, "pause_junk");
    t = T;
    t.min_deliveries = 0;
    assert_false(health_thresholds_valid(&t, &field));
    assert_string_equal(field, "min_deliveries");
    t = T;
    t.hysteresis = 0.2;
    assert_false(health_thresholds_valid(&t, &field));
    assert_string_equal(field, "hysteresis");
}

static void test_band_names_round_trip(void **state)
{
    (void)state;
    for (int b = HEALTH_NEW; b <= HEALTH_PAUSE; b++) {
        health_band parsed;
        assert_true(health_band_parse(health_band_name((health_band)b), &parsed));
        assert_int_equal(parsed, b);
    }
    health_band parsed;
    assert_false(health_band_parse("block", &parsed));
    assert_string_equal(health_band_name((health_band)42), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_wilson_lower_bound_matches_known_values, setup),
        cmocka_unit_test_setup(test_three_of_three_does_not_read_as_a_hundred, setup),
        cmocka_unit_test_setup(test_nothing_placed_is_new_with_no_score, setup),
        cmocka_unit_test_setup(test_bands_follow_the_published_anchors, setup),
        cmocka_unit_test_setup(test_too_few_deliveries_judge_no_share, setup),
        cmocka_unit_test_setup(test_hysteresis_keeps_a_band_near_its_threshold, setup),
        cmocka_unit_test_setup(test_penalties_lower_the_score, setup),
        cmocka_unit_test_setup(test_thresholds_are_validated, setup),
        cmocka_unit_test_setup(test_band_names_round_trip, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
