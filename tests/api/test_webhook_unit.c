/* Unit tests of the pure side of webhooks: the Kiln-Signature header against vectors
 * computed independently (Python's hmac), the retry schedule, the secret's shape, and the
 * endpoint URL rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "webhook.h"
#include "webhook_sign.h"
#include "webhook_url.h"

#include <stdio.h>
#include <string.h>

#define SECRET "whsec_abababababababababababababababababababababababababababababababab"

static void test_signature_matches_an_independent_hmac(void **state)
{
    (void)state;
    char sig[WEBHOOK_SIGNATURE_MAX];
    const char *body = "{\"id\":1}";
    assert_int_equal(
        webhook_signature(SECRET, strlen(SECRET), 1700000000, body, strlen(body), sig, sizeof sig),
        0);
    assert_string_equal(
        sig, "t=1700000000,v1=53b71fbd7d2af3e4e81c51837bb0161c6ddd45806554b1b89850e34ce50ca7fc");
    assert_int_equal(webhook_signature(SECRET, strlen(SECRET), 1700000000, "", 0, sig, sizeof sig),
                     0);
    assert_string_equal(
        sig, "t=1700000000,v1=c38d81aa3d2749617e0b48f376205da82d9ae1dc152a9bc6e5b682749fdde373");
    /* Too small an output is an error, never a truncated header. */
    assert_int_equal(webhook_signature(SECRET, strlen(SECRET), 1700000000, "", 0, sig, 40), -1);
}

static void test_secrets_are_fresh_and_shaped(void **state)
{
    (void)state;
    char a[WEBHOOK_SECRET_LEN + 1], b[WEBHOOK_SECRET_LEN + 1];
    webhook_secret_new(a);
    webhook_secret_new(b);
    assert_int_equal(strlen(a), 70);
    assert_memory_equal(a, "whsec_", 6);
    assert_int_equal(strspn(a + 6, "0123456789abcdef"), 64);
    assert_string_not_equal(a, b);
}

static void test_backoff_doubles_to_the_cap_within_equal_jitter(void **state)
{
    (void)state;
    const int64_t base = 30000, cap = 6 * 3600000;
    int64_t want = base;
    for (int n = 1; n <= 12; n++) {
        assert_int_equal(webhook_backoff_ms(n, base, cap, 0.0), want / 2);
        int64_t hi = webhook_backoff_ms(n, base, cap, 0.999999);
        assert_true(hi <= want && hi >= want - want / 10000);
        want = want * 2 > cap ? cap : want * 2;
    }
    assert_int_equal(webhook_backoff_ms(100, base, cap, 0.0), cap / 2); /* no overflow */
    assert_int_equal(webhook_backoff_ms(0, base, cap, 0.5), webhook_backoff_ms(1, base, cap, 0.5));
    assert_int_equal(webhook_backoff_ms(1, base, cap, 7.0), base / 2); /* bad jitter: none */
}

static void test_event_names_round_trip(void **state)
{
    (void)state;
    for (int e = 0; e < WEBHOOK_EVENT_COUNT; e++)
        assert_int_equal(webhook_event_parse(webhook_event_name((enum webhook_event)e)), e);
    assert_string_equal(webhook_event_name(WEBHOOK_MAILBOX_INBOX_ERROR), "mailbox.inbox_error");
    assert_int_equal(webhook_event_parse("mailbox.Paused"), -1);
    assert_null(webhook_event_name(WEBHOOK_EVENT_COUNT));
}

static void test_url_rules(void **state)
{
    (void)state;
    static const char *const good[] = {"https://hooks.example.com/kiln",
                                       "https://h.test",
                                       "HTTPS://H.TEST:8443/a?b=c&d=%20",
                                       "https://[2001:db8::1]/x",
                                       "https://192.0.2.1:1/",
                                       "http://localhost:8080/x",
                                       "http://127.0.0.1/x",
                                       "http://127.9.9.9:65535/",
                                       "http://[::1]/x",
                                       NULL};
    for (const char *const *u = good; *u; u++)
        assert_null(webhook_url_problem(*u, false));
    static const char *const bad[] = {"",
                                      "hooks.example.com",
                                      "ftp://h.test/",
                                      "http://h.test/",
                                      "http://10.0.0.1/",
                                      "http://127.0.0.1.evil.test/",
                                      "http://localhost.evil.test/",
                                      "https://u:p@h.test/",
                                      "https://u@h.test/",
                                      "https://h.test/#f",
                                      "https://h.test/a b",
                                      "https://h.test/\x01",
                                      "https://h.test/\xc3\xa9",
                                      "https://h.test:0/",
                                      "https://h.test:65536/",
                                      "https://h.test:/",
                                      "https://h.test:8a/",
                                      "https:///x",
                                      "https://[::1/",
                                      "https://[h.test]/",
                                      "https://h_t!/",
                                      "https://::1/",
                                      NULL};
    for (const char *const *u = bad; *u; u++) {
        const char *why = webhook_url_problem(*u, false);
        if (!why)
            fail_msg("accepted %s", *u);
        assert_non_null(strstr(why, "'url'"));
    }
    assert_null(webhook_url_problem("http://h.test/", true)); /* KILN_WEBHOOK_ALLOW_HTTP=1 */
    /* a port's one spelling at registration; one stored before with leading zeros is
     * still delivered to (libcurl reads it), a sign never (libcurl refuses it) */
    assert_non_null(webhook_url_problem("https://h.test:08443/", false));
    assert_null(webhook_url_deliverable("https://h.test:08443/", false));
    assert_non_null(webhook_url_problem("https://h.test:+443/", false));
    assert_non_null(webhook_url_deliverable("https://h.test:+443/", false));
    assert_null(webhook_url_deliverable("https://h.test:8443/", false));
    char longest[WEBHOOK_URL_MAX + 2];
    memset(longest, 'a', sizeof longest);
    memcpy(longest, "https://h.test/", 15);
    longest[WEBHOOK_URL_MAX] = '\0';
    assert_null(webhook_url_problem(longest, false));
    longest[WEBHOOK_URL_MAX] = 'a';
    longest[WEBHOOK_URL_MAX + 1] = '\0';
    assert_non_null(webhook_url_problem(longest, false));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature_matches_an_independent_hmac),
        cmocka_unit_test(test_secrets_are_fresh_and_shaped),
        cmocka_unit_test(test_backoff_doubles_to_the_cap_within_equal_jitter),
        cmocka_unit_test(test_event_names_round_trip),
        cmocka_unit_test(test_url_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
