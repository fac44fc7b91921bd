/* The inbox side's pure parts (api/lease/inbox_classify.h, inbox_policy.h): the
 * recipient provider from its IMAP host, Authentication-Results verdicts, and the rows
 * an engagement plan becomes (inbox_policy_rows, the pure part of the policy seam). */
#include "inbox_classify.h"
#include "inbox_policy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_provider_from_imap_host(void **state)
{
    (void)state;
    struct {
        const char *host;
        enum inbox_provider want;
    } cases[] = {
        {"imap.gmail.com", PROVIDER_GMAIL},
        {"IMAP.GMAIL.COM.", PROVIDER_GMAIL},
        {"imap.googlemail.com", PROVIDER_GMAIL},
        {"outlook.office365.com", PROVIDER_OUTLOOK},
        {"imap-mail.outlook.com", PROVIDER_OUTLOOK},
        {"imap.mail.yahoo.com", PROVIDER_YAHOO},
        {"imap.mail.yahoo.co.jp", PROVIDER_YAHOO},
        {"imap.aol.com", PROVIDER_YAHOO},
        {"notgmail.com", PROVIDER_OTHER},
        {"gmail.com.evil.test", PROVIDER_OTHER},
        {"yahoo.co.uk.evil.test", PROVIDER_OTHER},
        {"127.0.0.1", PROVIDER_OTHER},
        {"", PROVIDER_OTHER},
        {NULL, PROVIDER_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (inbox_provider_of_host(cases[i].host) != cases[i].want)
            fail_msg("%s: expected %s, got %s", cases[i].host ? cases[i].host : "(null)",
                     inbox_provider_name(cases[i].want),
                     inbox_provider_name(inbox_provider_of_host(cases[i].host)));
    }
}

/* KILN_PROVIDER_MAP: a key matches the IMAP host, then the address's domain, before
 * the built-in host rules; bad entries are refused naming the entry. */
static void test_provider_map(void **state)
{
    (void)state;
    inbox_provider_map m;
    char err[256];
    assert_true(inbox_provider_map_parse(
        " a.test=gmail, mail.corp.example=outlook,,c.test.=yahoo,imap.gmail.com=other ", &m, err,
        sizeof err));
    assert_int_equal(m.n, 4);
    struct {
        const char *host, *address;
        enum inbox_provider want;
    } cases[] = {
        {"127.0.0.1", "box1@a.test", PROVIDER_GMAIL},
        {"127.0.0.1", "box1@sub.A.TEST", PROVIDER_GMAIL},
        {"127.0.0.1", "box1@xa.test", PROVIDER_OTHER},
        {"127.0.0.1", "box1@c.test", PROVIDER_YAHOO},
        {"mail.corp.example", "x@y.test", PROVIDER_OUTLOOK},
        {"imap.mail.corp.example.", "x@a.test", PROVIDER_OUTLOOK}, /* host first */
        {"imap.gmail.com", "x@b.test", PROVIDER_OTHER},            /* the map wins */
        {"imap.mail.yahoo.com", "x@b.test", PROVIDER_YAHOO},       /* built-in rules stay */
        {"127.0.0.1", "no-at-sign", PROVIDER_OTHER},
        {"", NULL, PROVIDER_OTHER},
        {NULL, "x@a.test", PROVIDER_GMAIL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum inbox_provider got = inbox_provider_of(&m, cases[i].host, cases[i].address);
        if (got != cases[i].want)
            fail_msg("%s / %s: expected %s, got %s", cases[i].host ? cases[i].host : "(null)",
                     cases[i].address ? cases[i].address : "(null)",
                     inbox_provider_name(cases[i].want), inbox_provider_name(got));
    }
    assert_int_equal(inbox_provider_of(NULL, "127.0.0.1", "x@a.test"), PROVIDER_OTHER);
    assert_true(inbox_provider_map_parse(NULL, &m, err, sizeof err) && m.n == 0);
    assert_true(inbox_provider_map_parse("", &m, err, sizeof err) && m.n == 0);
    const char *bad[] = {"a.test",
                         "=gmail",
                         "a.test=hotmail",
                         "a test=gmail",
                         "x=gmail,a/b=yahoo",
                         "a.test=gmail,b.test="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (inbox_provider_map_parse(bad[i], &m, err, sizeof err))
            fail_msg("'%s' was accepted", bad[i]);
        assert_non_null(strstr(err, "KILN_PROVIDER_MAP entry"));
    }
    assert_non_null(strstr(err, "entry 2"));
}

static inbox_auth parse(const char *s)
{
    return inbox_auth_parse(s, s ? strlen(s) : 0);
}

static void test_authentication_results_verdicts(void **state)
{
    (void)state;
    inbox_auth a = parse("mx.google.com; dkim=pass header.i=@x.test header.s=s1 header.b=abc; "
                         "spf=pass (google.com: domain of a@x.test designates 1.2.3.4 as "
                         "permitted sender) smtp.mailfrom=a@x.test; dmarc=pass (p=NONE "
                         "sp=NONE dis=NONE) header.from=x.test");
    assert_int_equal(a.spf, VERDICT_PASS);
    assert_int_equal(a.dkim, VERDICT_PASS);
    assert_int_equal(a.dmarc, VERDICT_PASS);
    a = parse("mx.example; spf=softfail smtp.mailfrom=x; dkim=none; dmarc=fail header.from=x");
    assert_int_equal(a.spf, VERDICT_FAIL);
    assert_int_equal(a.dkim, VERDICT_NONE);
    assert_int_equal(a.dmarc, VERDICT_FAIL);
    /* A method inside a comment or a quoted string does not count; any dkim pass wins. */
    a = parse("mx (spf=pass; dkim=pass); x=\"spf=pass;\" ; dkim = fail ; dkim=pass; spf=neutral");
    assert_int_equal(a.spf, VERDICT_NONE);
    assert_int_equal(a.dkim, VERDICT_PASS);
    assert_int_equal(a.dmarc, VERDICT_NONE);
    a = parse("mx; spf=permerror; dkim=temperror");
    assert_int_equal(a.spf, VERDICT_FAIL);
    assert_int_equal(a.dkim, VERDICT_NONE);
    a = parse(NULL);
    assert_int_equal(a.spf + a.dkim + a.dmarc, 0);
    a = parse("mx.example; none");
    assert_int_equal(a.spf + a.dkim + a.dmarc, 0);
    a = parse("(unterminated; spf=pass");
    assert_int_equal(a.spf, VERDICT_NONE);
    /* Not NUL terminated: only len bytes are read. */
    char raw[] = {'m', ';', 's', 'p', 'f', '=', 'p', 'a', 's', 's', 'X'};
    assert_int_equal(inbox_auth_parse(raw, 10).spf, VERDICT_PASS);
    assert_int_equal(inbox_auth_parse(raw, 8).spf, VERDICT_NONE);
}

/* A plan as engage_plan_for_found gives it for a rescued, read message. */
static engage_out rescued_plan(void)
{
    engage_out o = {.nactions = 4};
    o.actions[0] = (engage_action){ENGAGE_RESCUE, 5000, 0};
    o.actions[1] = (engage_action){ENGAGE_MARK, 5000, ENGAGE_FLAG_SEEN | ENGAGE_FLAG_FLAGGED};
    o.actions[2] = (engage_action){ENGAGE_FILE, 5300, 0};
    o.actions[3] = (engage_action){ENGAGE_PRUNE, 1000 + 30 * 86400, 0};
    return o;
}

static void test_policy_rows_follow_the_engagement_plan(void **state)
{
    (void)state;
    inbox_action_spec out[INBOX_POLICY_MAX_ACTIONS];
    inbox_found f = {.mailbox_id = 1, .send_id = 9, .role = ROLE_JUNK, .now_s = 1000};
    engage_out o = rescued_plan();
    int n = inbox_policy_rows(&f, &o, out);
    assert_int_equal(n, 4);
    assert_int_equal(out[0].kind, ACTION_RESCUE);
    assert_int_equal(out[0].target, ROLE_INBOX);
    assert_int_equal(out[0].not_before_s, 5000);
    assert_int_equal(out[1].kind, ACTION_MARK);
    assert_int_equal(out[1].nflags, 2);
    assert_string_equal(out[1].flags[0], "\\Seen");
    assert_string_equal(out[1].flags[1], "\\Flagged");
    assert_int_equal(out[1].target, -1);
    assert_int_equal(out[2].kind, ACTION_FILE);
    assert_int_equal(out[2].target, ROLE_WARMUP);
    assert_int_equal(out[2].not_before_s, 5300);
    assert_int_equal(out[3].kind, ACTION_PRUNE);
    assert_int_equal(out[3].target, -1);
    assert_int_equal(out[3].not_before_s, 1000 + 30 * 86400);
    /* flags it has already are not set again; a mark with none left is dropped */
    f.flagged = true;
    n = inbox_policy_rows(&f, &o, out);
    assert_int_equal(n, 4);
    assert_int_equal(out[1].nflags, 1);
    assert_string_equal(out[1].flags[0], "\\Seen");
    f.seen = true;
    n = inbox_policy_rows(&f, &o, out);
    assert_int_equal(n, 3);
    assert_int_equal(out[1].kind, ACTION_FILE);
    /* found filed already: only the prune */
    f.role = ROLE_WARMUP;
    n = inbox_policy_rows(&f, &o, out);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].kind, ACTION_PRUNE);
    /* untouched: nothing */
    engage_out none = {.untouched = true};
    assert_int_equal(inbox_policy_rows(&f, &none, out), 0);
    assert_int_equal(inbox_policy_folder(ROLE_WARMUP), ENGAGE_FOLDER_OTHER);
    assert_int_equal(inbox_policy_folder(ROLE_JUNK), ENGAGE_FOLDER_JUNK);
    assert_string_equal(inbox_action_kind_name(ACTION_PRUNE), "prune");
    assert_string_equal(inbox_role_name(ROLE_OTHER), "other");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provider_from_imap_host),
        cmocka_unit_test(test_provider_map),
        cmocka_unit_test(test_authentication_results_verdicts),
        cmocka_unit_test(test_policy_rows_follow_the_engagement_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
