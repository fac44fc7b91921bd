/* Unit tests of the inbox leases held (agent/lease/inbox_leases.c, inbox_reports.c) with a
 * recording engine behind inbox_feed.h: a granted inbox is watched once; a later answer
 * listing it again unchanged is not handed over again, one with a new action or other
 * access is, without the actions whose outcome is taken; an action's second outcome and
 * an event for an inbox not held are refused; a lease whose heartbeats fail until its TTL
 * has passed unwatches its inboxes; the room asked for follows what is held. The control
 * plane is a closed loopback port (every call fails at once). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "inbox_leases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LID "0f0e0d0c-0b0a-4908-8706-050403020100"

struct recorder {
    char calls[64][96];
    size_t n;
    feed_emit_fn emit;
    void *arg;
};
static struct recorder rec;

static void *r_start(feed_emit_fn emit, void *arg, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    memset(&rec, 0, sizeof rec);
    rec.emit = emit;
    rec.arg = arg;
    return &rec;
}

static void r_watch(void *e, const feed_inbox *in)
{
    struct recorder *r = e;
    char ids[64] = "";
    size_t used = 0;
    for (size_t i = 0; i < in->nactions; i++)
        used += (size_t)snprintf(ids + used, sizeof ids - used, "%s%lld", i ? "," : "",
                                 (long long)in->actions[i].id);
    snprintf(r->calls[r->n++ % 64], 96, "watch %lld [%s] %s", (long long)in->mailbox_id, ids,
             in->host);
}

static void r_unwatch(void *e, int64_t id)
{
    struct recorder *r = e;
    snprintf(r->calls[r->n++ % 64], 96, "unwatch %lld", (long long)id);
}

static void r_stop(void *e, int64_t ms)
{
    (void)e;
    (void)ms;
}

static bool r_finished(void *e)
{
    (void)e;
    return true;
}

static void r_destroy(void *e)
{
    (void)e;
}

static const inbox_feed_engine recorder_ops = {r_start,    r_watch,   r_unwatch, r_stop,
                                               r_finished, r_destroy, NULL};

static char dir[64];
static spool *sp;
static loop_stats stats;
static agent_config cfg;
static volatile bool no_abort;
static inbox_leases il;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kiln-inbox-leases.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    spool_replay rep;
    char err[256];
    sp = spool_open(dir, &rep, err, sizeof err);
    if (!sp)
        return -1;
    spool_replay_free(&rep);
    memset(&stats, 0, sizeof stats);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_inboxes = 5;
    cfg.report_batch = 100;
    cfg.report_interval_ms = 100;
    inbox_leases_init(&il, sp, &stats, &cfg, &no_abort);
    return inbox_leases_start(&il, &recorder_ops, err, sizeof err);
}

static int teardown(void **state)
{
    (void)state;
    inbox_leases_free(&il);
    spool_close(sp);
    char p[128];
    snprintf(p, sizeof p, "%s/results.spool", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/spool.lock", dir);
    unlink(p);
    rmdir(dir);
    return 0;
}

static int grant_not_before_s; /* every action's not_before_s in grant()'s answer */

/* An answer with inbox 7 (host, actions as given: "501,502") and inbox 8. */
static void grant(const char *host, const char *actions, int64_t asked_ms)
{
    char acts[1024] = "";
    size_t used = 0;
    for (const char *p = actions; *p;) {
        long id = strtol(p, (char **)&p, 10);
        used += (size_t)snprintf(acts + used, sizeof acts - used,
                                 "%s{\"id\":%ld,\"kind\":\"prune\",\"folder\":\"INBOX\","
                                 "\"uidvalidity\":1,\"uid\":%ld,\"flags\":[],\"target\":null,"
                                 "\"not_before_s\":%d}",
                                 used ? "," : "", id, id, grant_not_before_s);
        if (*p == ',')
            p++;
    }
    char doc[4096];
#define ENTRY                                                                                      \
    "{\"mailbox_id\":%d,\"address\":\"b%d@acme.test\",\"imap\":{\"host\":\"%s\",\"port\":993,"     \
    "\"security\":\"tls\",\"username\":\"u\",\"password\":\"p\",\"oauth_token\":null,"             \
    "\"ca_file\":null,\"allow_plaintext_auth\":false},\"poll_class\":\"low\",\"poll_interval_s\":" \
    "900,\"warmup_folder\":\"W\",\"folders\":[],\"actions\":[%s]}"
    char e7[2048], e8[1024];
    snprintf(e7, sizeof e7, ENTRY, 7, 7, host, acts);
    snprintf(e8, sizeof e8, ENTRY, 8, 8, "imap.other.test", "");
    snprintf(doc, sizeof doc,
             "{\"lease_id\":null,\"mailboxes\":[],\"inbox_lease\":{\"lease_id\":\"" LID
             "\",\"ttl_s\":60,\"heartbeat_s\":20},\"inboxes\":[%s,%s]}",
             e7, e8);
    wire_lease_answer a;
    wire_inbox_part p;
    wire_lease_answer_parse(doc, strlen(doc), &a);
    wire_inbox_part_parse(doc, strlen(doc), &a, &p);
    assert_string_equal(p.error, "");
    assert_int_equal(p.ninboxes, 2);
    inbox_leases_grant(&il, &p, asked_ms, asked_ms);
    wire_inbox_part_free(&p);
}

static void expect_calls(const char *const *want, size_t n)
{
    if (rec.n != n)
        fail_msg("%zu engine calls (last [%s]), expected %zu (first [%s])", rec.n,
                 rec.n ? rec.calls[(rec.n - 1) % 64] : "", n, n ? want[0] : "");
    for (size_t i = 0; i < n; i++)
        assert_string_equal(rec.calls[i], want[i]);
    rec.n = 0;
}

static void test_grant_merge_and_one_outcome_per_action(void **state)
{
    (void)state;
    int64_t now = clock_mono_ms();
    assert_int_equal(inbox_leases_room(&il), 5);
    grant("imap.acme.test", "501,502", now);
    const char *first[] = {"watch 7 [501,502] imap.acme.test", "watch 8 [] imap.other.test"};
    expect_calls(first, 2);
    assert_int_equal(inbox_leases_room(&il), 3);
    assert_int_equal(il.count, 1);

    /* listed again, unchanged: nothing handed over */
    grant("imap.acme.test", "501,502", now);
    expect_calls(NULL, 0);

    /* 501's outcome is taken; a second one is refused, as is an event for inbox 9 */
    feed_event done = {
        .type = FEED_EV_ACTION, .mailbox_id = 7, .action_id = 501, .status = FEED_AST_DONE};
    assert_int_equal(rec.emit(rec.arg, &done), 0);
    done.status = FEED_AST_FAILED;
    assert_int_equal(rec.emit(rec.arg, &done), -1);
    feed_event other = {.type = FEED_EV_SESSION, .mailbox_id = 9, .status = FEED_SES_OK};
    assert_int_equal(rec.emit(rec.arg, &other), -1);
    assert_int_equal(atomic_load(&stats.inbox_events), 1);
    assert_int_equal(atomic_load(&stats.inbox_events_refused), 2);
    inbox_reports_collect(&il, now);
    assert_int_equal(il.nq, 1);

    /* a later answer still listing 501 with a new action 503: handed over without 501 */
    grant("imap.acme.test", "501,502,503", now);
    const char *merged[] = {"watch 7 [502,503] imap.acme.test"};
    expect_calls(merged, 1);
    /* other access: handed over again */
    grant("imap2.acme.test", "502,503", now);
    const char *moved[] = {"watch 7 [502,503] imap2.acme.test"};
    expect_calls(moved, 1);
}

/* A refresh answer with the cursor: only updates ("known"), no access. */
static void refresh(const char *entries, int64_t now)
{
    char doc[4096];
    snprintf(doc, sizeof doc,
             "{\"lease_id\":null,\"mailboxes\":[],\"inbox_lease\":{\"lease_id\":\"" LID
             "\",\"ttl_s\":60,\"heartbeat_s\":20,\"cursor\":1764770000000002},"
             "\"inboxes\":[%s]}",
             entries);
    wire_lease_answer a;
    wire_inbox_part p;
    wire_lease_answer_parse(doc, strlen(doc), &a);
    wire_inbox_part_parse(doc, strlen(doc), &a, &p);
    assert_string_equal(p.error, "");
    assert_int_equal(p.nrejected, 0);
    inbox_leases_grant(&il, &p, now, now);
    wire_inbox_part_free(&p);
}

#define UPDATE(id, cls, ival, acts)                                                                \
    "{\"mailbox_id\":" #id ",\"known\":true,\"poll_class\":\"" cls "\",\"poll_interval_s\":" #ival \
    ",\"actions\":[" acts "]}"
#define PRUNE(id)                                                                                  \
    "{\"id\":" #id ",\"kind\":\"prune\",\"folder\":\"INBOX\",\"uidvalidity\":1,\"uid\":" #id       \
    ",\"flags\":[],\"target\":null,\"not_before_s\":0}"

/* An update merges into the held entry: its access (the opened secret) stays, its new
 * action and poll class are handed over; an inbox not in the answer stays held; the
 * answer's cursor is kept for the next request; an update for an inbox not held is
 * dropped and the next request sends no cursor (the next answer lists all in full). */
static void test_an_update_keeps_the_held_access_and_brings_actions(void **state)
{
    (void)state;
    int64_t now = clock_mono_ms();
    grant("imap.acme.test", "701", now);
    const char *first[] = {"watch 7 [701] imap.acme.test", "watch 8 [] imap.other.test"};
    expect_calls(first, 2);
    assert_int_equal(il.cursor, 0); /* the answer had no cursor */
    refresh(UPDATE(7, "high", 60, PRUNE(701) "," PRUNE(702)), now);
    const char *merged[] = {"watch 7 [701,702] imap.acme.test"};
    expect_calls(merged, 1);
    assert_int_equal(il.cursor, 1764770000000002LL);
    assert_int_equal(i64map_count(&il.held), 2);
    held_inbox *h = i64map_getp(&il.held, 7);
    assert_non_null(h);
    assert_string_equal(h->w->in.password, "p");
    assert_string_equal(h->w->in.address, "b7@acme.test");
    assert_string_equal(h->w->in.warmup_folder, "W");
    assert_int_equal(h->w->in.poll_class, FEED_POLL_HIGH);
    assert_int_equal(h->w->in.nactions, 2);
    /* the same update again (an update of an update): nothing handed over, access kept */
    refresh(UPDATE(7, "high", 60, PRUNE(701) "," PRUNE(702)), now);
    expect_calls(NULL, 0);
    h = i64map_getp(&il.held, 7);
    assert_string_equal(h->w->in.password, "p");
    assert_string_equal(h->w->in.host, "imap.acme.test");
    /* a poll class change alone is handed over */
    refresh(UPDATE(8, "medium", 300, ""), now);
    const char *cls[] = {"watch 8 [] imap.other.test"};
    expect_calls(cls, 1);
    /* an update for inbox 9, not held: dropped, the next request sends no cursor */
    refresh(UPDATE(9, "low", 900, ""), now);
    expect_calls(NULL, 0);
    assert_null(i64map_getp(&il.held, 9));
    assert_int_equal(il.cursor, 0);
}

/* A later answer giving a known action an earlier due time (the control plane's clock
 * moved, as the test clock does) hands the inbox over again; the same due time asked a
 * second later (rounding) does not. */
static void test_an_action_due_earlier_is_handed_over_again(void **state)
{
    (void)state;
    int64_t now = clock_mono_ms();
    grant_not_before_s = 1200;
    grant("imap.acme.test", "601", now);
    const char *first[] = {"watch 7 [601] imap.acme.test", "watch 8 [] imap.other.test"};
    expect_calls(first, 2);
    grant_not_before_s = 1199;
    grant("imap.acme.test", "601", now + 1000);
    expect_calls(NULL, 0);
    grant_not_before_s = 0;
    grant("imap.acme.test", "601", now + 2000);
    const char *due[] = {"watch 7 [601] imap.acme.test"};
    expect_calls(due, 1);
    grant_not_before_s = 0;
}

static void test_a_lease_not_renewed_within_its_ttl_unwatches_its_inboxes(void **state)
{
    (void)state;
    char err[256];
    control_config cc = {"http://127.0.0.1:1", "t", "", 2, 1, 10, 10};
    control *ctl = control_new(&cc, err, sizeof err);
    assert_non_null(ctl);
    int64_t now = clock_mono_ms();
    grant("imap.acme.test", "", now);
    rec.n = 0;
    /* a heartbeat fails, the ttl has not passed: still watched */
    inbox_leases_heartbeats(&il, ctl, now + 20000);
    expect_calls(NULL, 0);
    assert_int_equal(atomic_load(&stats.inbox_heartbeat_failures), 1);
    /* past the ttl (60 s from the request) without a renewal: unwatched, lease ended */
    inbox_leases_heartbeats(&il, ctl, now + 60001);
    assert_int_equal(rec.n, 2);
    assert_non_null(strstr(rec.calls[0], "unwatch"));
    assert_non_null(strstr(rec.calls[1], "unwatch"));
    assert_true(il.head->gone);
    assert_int_equal(il.head->ninboxes, 0);
    assert_int_equal(inbox_leases_room(&il), 5);
    /* no event is taken for them any more */
    feed_event ev = {.type = FEED_EV_SESSION, .mailbox_id = 7, .status = FEED_SES_OK};
    assert_int_equal(rec.emit(rec.arg, &ev), -1);
    /* the release fails (nobody listens): the lease stays to be released later */
    inbox_leases_release(&il, ctl, now + 60002, false);
    assert_int_equal(il.count, 1);
    control_free(ctl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_an_action_due_earlier_is_handed_over_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_an_update_keeps_the_held_access_and_brings_actions,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_merge_and_one_outcome_per_action, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_lease_not_renewed_within_its_ttl_unwatches_its_inboxes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
