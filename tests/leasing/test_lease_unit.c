/* Unit tests of the slot planner (api/lease/lease_plan.c): pacing, cooldown, window, horizon,
 * global and per-user caps, recipient rules and the bucket deltas written back. No
 * database: the inputs are what h_agent.c would have loaded. */
#include "arena.h"
#include "lease_plan.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define NOW 1772618400 /* 2026-03-04 10:00:00 UTC, a whole hour */
#define TTL 600

typedef struct fixture {
    arena *a;
    lease_candidate cand[8];
    size_t ncand;
    lease_limits lim;
} fixture;

static int setup(void **state)
{
    static fixture f;
    memset(&f, 0, sizeof f);
    f.a = arena_create(4096);
    static const char *const domains[] = {"a.test", "b.test", "c.test", "d.test"};
    for (int i = 0; i < 4; i++) {
        f.cand[i].id = 100 + i;
        f.cand[i].user_id = 10 + i;
        f.cand[i].domain = domains[i];
    }
    f.ncand = 4;
    f.lim = (lease_limits){.now_s = NOW,
                           .horizon_end_s = NOW + TTL,
                           .global_minute_cap = 1000,
                           .global_hour_cap = 100000,
                           .recipient_daily_cap = 50,
                           .pair_check = false};
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    arena_destroy(f->a);
    return 0;
}

/* A mailbox of user 1 with a whole-day window, behind, fixed 60 s cooldown. */
static lease_mailbox mailbox(void)
{
    return (lease_mailbox){.id = 1,
                           .user_id = 1,
                           .domain = "own.test",
                           .window_start_s = NOW - 10 * 3600,
                           .window_end_s = NOW + 14 * 3600,
                           .target = 30,
                           .done = 0,
                           .cooldown_min_s = 60,
                           .cooldown_max_s = 60,
                           .user_minute_cap = 1000,
                           .user_hour_cap = 100000,
                           .triggered = true};
}

static lease_plan *plan(fixture *f)
{
    return lease_plan_new(f->a, &f->lim, 256, 256, f->cand, f->ncand);
}

static void test_behind_mailbox_gets_slots_at_cooldown_spacing_inside_horizon(void **state)
{
    fixture *f = *state;
    lease_mailbox m = mailbox();
    lease_slot out[64];
    int64_t next_at = 0, wake = 0;
    int n = lease_plan_mailbox(plan(f), &m, 64, out, &next_at, &wake);
    assert_int_equal(n, TTL / 60 + 1); /* now, now+60, ..., now+600 */
    for (int i = 0; i < n; i++) {
        assert_int_equal(out[i].at_s, NOW + 60 * i);
        assert_true(out[i].at_s <= NOW + TTL);
    }
    assert_int_equal(next_at, out[n - 1].at_s + 60);
    assert_int_equal(wake, 0);
}

/* Under a backlog (more_end_s) a mailbox's first slot may be anywhere in the horizon,
 * its next ones only up to more_end_s: a slot minutes ahead would hold an agent's room. */
static void test_under_a_backlog_slots_after_the_first_stay_near(void **state)
{
    fixture *f = *state;
    f->lim.more_end_s = NOW + 90;
    lease_mailbox m = mailbox();
    lease_slot out[64];
    int64_t next_at = 0, wake = 0;
    int n = lease_plan_mailbox(plan(f), &m, 64, out, &next_at, &wake);
    assert_int_equal(n, 2); /* now, now+60; now+120 is past more_end_s */
    assert_int_equal(out[0].at_s, NOW);
    assert_int_equal(out[1].at_s, NOW + 60);
    assert_int_equal(next_at, NOW + 120);
    assert_int_equal(wake, 0);
    m.next_at_s = NOW + 300; /* the first slot past more_end_s: granted, alone */
    n = lease_plan_mailbox(plan(f), &m, 64, out, &next_at, &wake);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].at_s, NOW + 300);
    assert_int_equal(next_at, NOW + 360);
    f->lim.more_end_s = 0; /* no backlog: the whole horizon */
    assert_int_equal(lease_plan_mailbox(plan(f), &m, 64, out, &next_at, &wake), 6);
}

static void test_slots_never_exceed_what_is_left_today_or_max_slots(void **state)
{
    fixture *f = *state;
    lease_mailbox m = mailbox();
    m.target = 5;
    m.done = 3;
    lease_slot out[64];
    int64_t next_at, wake;
    assert_int_equal(lease_plan_mailbox(plan(f), &m, 64, out, &next_at, &wake), 2);
    m.done = 0;
    assert_int_equal(lease_plan_mailbox(plan(f), &m, 1, out, &next_at, &wake), 1);
    m.done = 5;
    assert_int_equal(lease_plan_mailbox(plan(f), &m, 64, out, &next_at, &wake), 0);
}

static void test_pacing_spreads_the_quota_over_the_window(void **state)
{
    fixture *f = *state;
    lease_mailbox m = mailbox();
    m.triggered = false;
    m.window_start_s = NOW;
    m.window_end_s = NOW + 4 * 3600;
    m.target = 4; /* one send per hour of the window */
    lease_slot out[8];
    int64_t next_at, wake;
    int n = lease_plan_mailbox(plan(f), &m, 8, out, &next_at, &wake);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].at_s, NOW);
    /* next_at is the cooldown bound only (pacing is recomputed at every grant, so a
     * trigger can lift it); the second send is not planned before an hour into the
     * window, and the planner says when to ask again. */
    assert_int_equal(next_at, NOW + 60);
    m.done = 1;
    m.last_send_s = NOW;
    assert_int_equal(lease_plan_mailbox(plan(f), &m, 8, out, &next_at, &wake), 0);
    assert_int_equal(wake, NOW + 3600);
    m.done = 0;
    m.last_send_s = 0;
    /* Two sends behind at mid-window: both granted, at cooldown spacing. */
    m.window_start_s = NOW - 2 * 3600;
    m.window_end_s = NOW + 2 * 3600;
    n = lease_plan_mailbox(plan(f), &m, 8, out, &next_at, &wake);
    assert_int_equal(n, 3); /* k=0 (-2h), k=1 (-1h), k=2 (now): all due */
    assert_int_equal(out[1].at_s - out[0].at_s, 60);
}

/* A due reply lifts pacing for its slot (028): a mailbox ahead of its pace still sends
 * its reply at the reply's due time, never before its cooldown, and only one slot per
 * reply leaves the grid; a mailbox behind its pace keeps its earlier slot. */
static void test_due_reply_lifts_pacing_for_its_slot(void **state)
{
    fixture *f = *state;
    lease_mailbox m = mailbox();
    m.triggered = false;
    m.window_start_s = NOW - 3600;
    m.window_end_s = NOW + 3 * 3600;
    m.target = 4; /* paced: one send an hour from the window's open */
    m.done = 2;   /* ahead: the third send is not due before an hour from now */
    m.last_send_s = NOW - 600;
    lease_slot out[8];
    int64_t next_at, wake;
    assert_int_equal(lease_plan_mailbox(plan(f), &m, 8, out, &next_at, &wake), 0);
    assert_int_equal(wake, NOW + 3600);
    int64_t due[] = {NOW + 120};
    m.reply_due_s = due;
    m.nreply_due = 1;
    int n = lease_plan_mailbox(plan(f), &m, 8, out, &next_at, &wake);
    assert_int_equal(n, 1); /* the reply's slot; the fourth send stays on the grid */
    assert_int_equal(out[0].at_s, NOW + 120);
    /* never before the cooldown after the last send */
    m.last_send_s = NOW + 100;
    n = lease_plan_mailbox(plan(f), &m, 8, out, &next_at, &wake);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].at_s, NOW + 160);
    /* behind its pace: the paced slot (now) comes first, not the reply's later one */
    m.last_send_s = 0;
    m.done = 0;
    due[0] = NOW + 300;
    n = lease_plan_mailbox(plan(f), &m, 8, out, &next_at, &wake);
    assert_true(n >= 1);
    assert_int_equal(out[0].at_s, NOW);
}

static void test_first_slot_waits_for_last_send_plus_cooldown_and_next_at(void **state)
{
    fixture *f = *state;
    lease_mailbox m = mailbox();
    m.last_send_s = NOW - 10;
    lease_slot out[4];
    int64_t next_at, wake;
    assert_true(lease_plan_mailbox(plan(f), &m, 4, out, &next_at, &wake) > 0);
    assert_int_equal(out[0].at_s, NOW + 50);
    m.last_send_s = 0;
    m.next_at_s = NOW + 200;
    assert_true(lease_plan_mailbox(plan(f), &m, 4, out, &next_at, &wake) > 0);
    assert_int_equal(out[0].at_s, NOW + 200);
}

static void test_no_slot_outside_the_window(void **state)
{
    fixture *f = *state;
    lease_mailbox m = mailbox();
    m.window_end_s = NOW + 120;
    lease_slot out[8];
    int64_t next_at, wake;
    int n = lease_plan_mailbox(plan(f), &m, 8, out, &next_at, &wake);
    assert_int_equal(n, 2); /* now and now+60; now+120 is the window end */
    for (int i = 0; i < n; i++)
        assert_true(out[i].at_s < m.window_end_s);
    /* Before the window opens, the first slot is at the opening. */
    m = mailbox();
    m.window_start_s = NOW + 300;
    n = lease_plan_mailbox(plan(f), &m, 8, out, &next_at, &wake);
    assert_true(n > 0);
    assert_int_equal(out[0].at_s, NOW + 300);
}

static void test_global_minute_cap_moves_slots_to_the_next_minute(void **state)
{
    fixture *f = *state;
    f->lim.global_minute_cap = 2;
    lease_plan *p = plan(f);
    lease_mailbox m = mailbox();
    m.cooldown_min_s = m.cooldown_max_s = 0;
    m.target = 6;
    lease_slot out[8];
    int64_t next_at, wake;
    int n = lease_plan_mailbox(p, &m, 8, out, &next_at, &wake);
    assert_int_equal(n, 6);
    int per_minute[16] = {0};
    for (int i = 0; i < n; i++) {
        int64_t minute = (out[i].at_s - NOW) / 60;
        assert_true(minute >= 0 && minute < 16);
        per_minute[minute]++;
    }
    for (int i = 0; i < 16; i++)
        assert_true(per_minute[i] <= 2);
    assert_int_equal(out[2].at_s, NOW + 60);
}

static void test_loaded_buckets_count_against_the_caps(void **state)
{
    fixture *f = *state;
    f->lim.global_hour_cap = 10;
    lease_plan *p = plan(f);
    lease_plan_load_bucket(p, 0, 3600, NOW, 10); /* this hour is full */
    lease_mailbox m = mailbox();
    lease_slot out[4];
    int64_t next_at, wake;
    assert_int_equal(lease_plan_mailbox(p, &m, 4, out, &next_at, &wake), 0);
    /* The next hour is past the horizon: nothing, and a hint to ask after it. */
    assert_true(wake > NOW + TTL);

    p = plan(f);
    lease_plan_load_bucket(p, 1, 60, NOW, 3); /* user 1's minute is at its cap */
    m.user_minute_cap = 3;
    assert_true(lease_plan_mailbox(p, &m, 4, out, &next_at, &wake) > 0);
    assert_int_equal(out[0].at_s, NOW + 60);
}

static void test_user_hour_cap_is_shared_by_the_users_mailboxes(void **state)
{
    fixture *f = *state;
    lease_plan *p = plan(f);
    lease_mailbox a = mailbox(), b = mailbox();
    a.user_hour_cap = b.user_hour_cap = 5;
    b.id = 2;
    lease_slot out[16];
    int64_t next_at, wake;
    int na = lease_plan_mailbox(p, &a, 3, out, &next_at, &wake);
    int nb = lease_plan_mailbox(p, &b, 16, out, &next_at, &wake);
    assert_int_equal(na, 3);
    assert_int_equal(nb, 2);
}

static void test_recipients_are_other_users_spread_over_domains(void **state)
{
    fixture *f = *state;
    f->cand[0].user_id = 1; /* the sender's own user: never a recipient */
    lease_plan *p = plan(f);
    lease_mailbox m = mailbox();
    m.target = 6;
    lease_slot out[8];
    int64_t next_at, wake;
    int n = lease_plan_mailbox(p, &m, 8, out, &next_at, &wake);
    assert_int_equal(n, 6);
    for (int i = 0; i < n; i++) {
        assert_int_not_equal(f->cand[out[i].candidate].user_id, m.user_id);
        if (i > 0)
            assert_string_not_equal(f->cand[out[i].candidate].domain,
                                    f->cand[out[i - 1].candidate].domain);
    }
}

static void test_recipient_inbound_cap_and_pair_gap_are_respected(void **state)
{
    fixture *f = *state;
    f->lim.recipient_daily_cap = 1;
    f->lim.pair_check = true;
    f->cand[1].received = 1; /* already at its cap today */
    lease_plan *p = plan(f);
    lease_plan_load_pair(p, 1, 102); /* paired recently */
    lease_mailbox m = mailbox();
    lease_slot out[8];
    int64_t next_at, wake;
    int n = lease_plan_mailbox(p, &m, 8, out, &next_at, &wake);
    /* Only candidates 100 and 103 are left, one inbound each; then no recipient. */
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++) {
        int64_t id = f->cand[out[i].candidate].id;
        assert_true(id == 100 || id == 103);
    }
    assert_int_equal(f->cand[0].assigned + f->cand[3].assigned, 2);
    /* Another mailbox of the same sender id gets nothing more: 100 and 103 are now at
     * their inbound cap and paired with it, 101 is at its cap, 102 is paired. */
    f->cand[0].received = f->cand[3].received = 0;
    assert_int_equal(lease_plan_mailbox(p, &m, 8, out, &next_at, &wake), 0);
}

static void test_deltas_add_up_to_the_slots_granted_under_their_caps(void **state)
{
    fixture *f = *state;
    lease_plan *p = plan(f);
    lease_mailbox m = mailbox();
    m.cooldown_min_s = m.cooldown_max_s = 30;
    lease_slot out[8];
    int64_t next_at, wake;
    int n = lease_plan_mailbox(p, &m, 8, out, &next_at, &wake);
    assert_int_equal(n, 8);
    lease_bucket_delta d[64];
    size_t nd = lease_plan_deltas(p, d, 64);
    int64_t sum[2][2] = {{0, 0}, {0, 0}}; /* [global|user][minute|hour] */
    for (size_t i = 0; i < nd; i++) {
        assert_true(d[i].user_id == 0 || d[i].user_id == m.user_id);
        assert_true(d[i].width_s == 60 || d[i].width_s == 3600);
        assert_int_equal(d[i].at_s % d[i].width_s, 0);
        sum[d[i].user_id != 0][d[i].width_s == 3600] += d[i].n;
        /* Each delta carries the cap it was planned under: the store reserves it so. */
        int64_t cap = d[i].user_id == 0
                          ? (d[i].width_s == 60 ? f->lim.global_minute_cap : f->lim.global_hour_cap)
                          : (d[i].width_s == 60 ? m.user_minute_cap : m.user_hour_cap);
        assert_int_equal(d[i].cap, cap);
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            assert_int_equal(sum[i][j], n);
}

static void test_no_candidates_means_no_slots(void **state)
{
    fixture *f = *state;
    f->ncand = 0;
    lease_mailbox m = mailbox();
    lease_slot out[4];
    int64_t next_at, wake;
    assert_int_equal(lease_plan_mailbox(plan(f), &m, 4, out, &next_at, &wake), 0);
}

/* Plans mailbox m of user uid (id uid too) with this target, up to max slots. */
static int plan_for(lease_plan *p, int64_t uid, int64_t target, lease_slot *out, int max)
{
    lease_mailbox m = mailbox();
    m.id = m.user_id = uid;
    m.target = target;
    int64_t next_at, wake;
    return lease_plan_mailbox(p, &m, max, out, &next_at, &wake);
}

/* Reciprocity (docs/leasing.md): the candidate whose received lags its sent most wins,
 * domain alternation still holds. */
static void test_the_recipient_whose_receipts_lag_its_sends_most_is_chosen(void **state)
{
    fixture *f = *state;
    f->cand[2].sent_7d = 10;
    f->cand[1].sent_7d = 5;
    f->cand[0].received_7d = 3; /* received more than it sent: last */
    lease_plan *p = plan(f);
    lease_slot out[8];
    int n = plan_for(p, 1, 6, out, 8);
    assert_int_equal(n, 6);
    assert_int_equal(out[0].candidate, 2);
    for (int i = 0; i < n; i++)
        assert_int_equal(out[i].candidate, i % 2 == 0 ? 2 : 1);
    assert_int_equal(f->cand[0].assigned, 0);
    lease_mailbox m = mailbox();
    assert_true(lease_plan_score(p, &m, &f->cand[2]) > lease_plan_score(p, &m, &f->cand[0]));
}

/* Candidates 0, 1 at gmail (1), 2, 3 at outlook (2). */
static void two_providers(fixture *f)
{
    for (int i = 0; i < 4; i++)
        f->cand[i].provider = i < 2 ? 1 : 2;
}

static void test_a_provider_where_the_sender_lands_in_junk_is_avoided(void **state)
{
    fixture *f = *state;
    two_providers(f);
    lease_plan *p = plan(f);
    const lease_placement pl[] = {{1, 1, 20, 20}, {1, 2, 20, 0}, {7, 2, 20, 20}};
    lease_plan_load_placements(p, pl, 3);
    lease_slot out[8];
    int n = plan_for(p, 1, 6, out, 8);
    assert_int_equal(n, 6);
    for (int i = 0; i < n; i++)
        assert_int_equal(f->cand[out[i].candidate].provider, 2);
    /* Another sender (7) lands in junk at outlook, not gmail: the other way round. */
    n = plan_for(p, 7, 2, out, 8);
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++)
        assert_int_equal(f->cand[out[i].candidate].provider, 1);
}

static void test_a_sender_reaches_the_provider_it_reached_least(void **state)
{
    fixture *f = *state;
    two_providers(f);
    lease_plan *p = plan(f);
    const lease_placement pl[] = {{1, 1, 30, 0}}; /* all its mail so far went to gmail */
    lease_plan_load_placements(p, pl, 1);
    lease_slot out[2];
    assert_int_equal(plan_for(p, 1, 1, out, 2), 1);
    assert_int_equal(f->cand[out[0].candidate].provider, 2);
}

/* A sender that is also a candidate: its sent_7d moves with each slot it is given, so the
 * senders planned after it in the same lease see its lag grow. */
static void test_a_senders_own_ledger_moves_with_its_slots(void **state)
{
    fixture *f = *state;
    f->cand[3].id = 1; /* the sender itself (user 1 is not 13: only the id matters) */
    f->cand[3].user_id = 1;
    lease_plan *p = plan(f);
    lease_slot out[8];
    assert_int_equal(plan_for(p, 1, 4, out, 8), 4);
    assert_int_equal(f->cand[3].sent_7d, 4);
    assert_int_equal(f->cand[3].assigned, 0); /* never its own recipient */
}

/* The candidate window is the lease's size: max_sends, or what the senders have left
 * today when less, never under the floor (a small lease still gets spread). */
static void test_the_candidate_window_is_the_size_of_the_lease(void **state)
{
    (void)state;
    assert_int_equal(lease_plan_window(2000, 3000), 2000);
    assert_int_equal(lease_plan_window(2000, 1200), 1200);
    assert_int_equal(lease_plan_window(12, 40), LEASE_PLAN_MIN_WINDOW);
    assert_int_equal(lease_plan_window(2000, 0), LEASE_PLAN_MIN_WINDOW);
    assert_int_equal(lease_plan_window(10000, 50000), 10000);
    /* what the senders can take bounds it: slots at cooldown spacing within the span */
    lease_mailbox m = mailbox(); /* 30 a day, none done, 60 s cooldown */
    assert_int_equal(lease_plan_slots_at_most(&m, 600), 11);
    assert_int_equal(lease_plan_slots_at_most(&m, 60), 2);
    assert_int_equal(lease_plan_slots_at_most(&m, 59), 1);
    m.done = 29;
    assert_int_equal(lease_plan_slots_at_most(&m, 600), 1);
    m.done = 31;
    assert_int_equal(lease_plan_slots_at_most(&m, 600), 0);
    m.done = 0;
    m.cooldown_min_s = 0;
    assert_int_equal(lease_plan_slots_at_most(&m, 60), 30);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_behind_mailbox_gets_slots_at_cooldown_spacing_inside_horizon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_under_a_backlog_slots_after_the_first_stay_near, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_slots_never_exceed_what_is_left_today_or_max_slots,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_pacing_spreads_the_quota_over_the_window, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_due_reply_lifts_pacing_for_its_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_first_slot_waits_for_last_send_plus_cooldown_and_next_at, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_slot_outside_the_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_global_minute_cap_moves_slots_to_the_next_minute,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_loaded_buckets_count_against_the_caps, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_user_hour_cap_is_shared_by_the_users_mailboxes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_recipients_are_other_users_spread_over_domains, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_recipient_inbound_cap_and_pair_gap_are_respected,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_deltas_add_up_to_the_slots_granted_under_their_caps,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_candidates_means_no_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_the_recipient_whose_receipts_lag_its_sends_most_is_chosen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_provider_where_the_sender_lands_in_junk_is_avoided,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_sender_reaches_the_provider_it_reached_least, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_senders_own_ledger_moves_with_its_slots, setup,
                                        teardown),
        cmocka_unit_test(test_the_candidate_window_is_the_size_of_the_lease),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
