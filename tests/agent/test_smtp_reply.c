/* Unit tests for the SMTP reply parser: single and multi-line replies, enhanced
 * codes, every split of the input (byte by byte), malformed and over-long input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "smtp_reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Feeds s in chunks of step bytes; returns the number of replies, last in *out. */
static int feed_chunks(const char *s, size_t step, smtp_reply *out, int *err)
{
    smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    size_t n = strlen(s), off = 0;
    int replies = 0;
    *err = 0;
    while (off < n) {
        size_t len = n - off < step ? n - off : step;
        size_t pos = 0;
        while (pos < len) {
            size_t used;
            int rc = smtp_reply_feed(&p, s + off + pos, len - pos, &used, out);
            pos += used;
            if (rc == SMTP_REPLY_ERROR) {
                *err = 1;
                return replies;
            }
            if (rc == SMTP_REPLY_DONE)
                replies++;
            else
                break;
        }
        off += len;
    }
    return replies;
}

static void test_single_line_reply_with_enhanced_code(void **state)
{
    (void)state;
    smtp_reply r;
    int err;
    assert_int_equal(feed_chunks("250 2.1.0 Sender ok\r\n", 1000, &r, &err), 1);
    assert_int_equal(err, 0);
    assert_int_equal(r.code, 250);
    assert_string_equal(r.enhanced, "2.1.0");
    size_t dl;
    const char *d = smtp_reply_detail(&r, &dl);
    assert_int_equal(dl, strlen("Sender ok"));
    assert_memory_equal(d, "Sender ok", dl);
}

static void test_multiline_ehlo_reply_in_every_split(void **state)
{
    (void)state;
    const char *ehlo = "250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
                       "250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n";
    for (size_t step = 1; step <= strlen(ehlo); step++) {
        smtp_reply r;
        int err;
        assert_int_equal(feed_chunks(ehlo, step, &r, &err), 1);
        assert_int_equal(err, 0);
        assert_int_equal(r.code, 250);
        assert_int_equal(r.lines, 5);
        assert_true(smtp_reply_has_keyword(&r, "PIPELINING", NULL, NULL));
        assert_true(smtp_reply_has_keyword(&r, "starttls", NULL, NULL));
        const char *args;
        size_t alen;
        assert_true(smtp_reply_has_keyword(&r, "AUTH", &args, &alen));
        assert_int_equal(alen, strlen(" PLAIN LOGIN"));
        assert_false(smtp_reply_has_keyword(&r, "8BITMIME", NULL, NULL));
        assert_false(smtp_reply_has_keyword(&r, "SIZ", NULL, NULL));
    }
}

static void test_several_replies_in_one_read(void **state)
{
    (void)state;
    smtp_reply r;
    int err;
    assert_int_equal(feed_chunks("250 ok\r\n250 ok\r\n354 go\r\n", 1000, &r, &err), 3);
    assert_int_equal(r.code, 354);
    assert_string_equal(r.enhanced, "");
}

static void test_bare_lf_and_code_only_lines_are_accepted(void **state)
{
    (void)state;
    smtp_reply r;
    int err;
    assert_int_equal(feed_chunks("220\n", 1, &r, &err), 1);
    assert_int_equal(r.code, 220);
    assert_int_equal(feed_chunks("250-a\n250 b\n", 3, &r, &err), 1);
    assert_int_equal(r.lines, 2);
    assert_string_equal(r.text, "a\nb");
}

static void test_enhanced_code_of_wrong_class_is_ignored(void **state)
{
    (void)state;
    smtp_reply r;
    int err;
    assert_int_equal(feed_chunks("550 2.0.0 odd\r\n", 1000, &r, &err), 1);
    assert_string_equal(r.enhanced, "");
    assert_int_equal(feed_chunks("451 4.7.1 Try later\r\n", 1000, &r, &err), 1);
    assert_string_equal(r.enhanced, "4.7.1");
}

static void test_malformed_replies_are_rejected(void **state)
{
    (void)state;
    const char *bad[] = {"hello\r\n", "25x ok\r\n", "250_ok\r\n", "250-a\r\n251 b\r\n",
                         "250 a\rX",  "199 ok\r\n", "650 ok\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        smtp_reply r;
        int err;
        feed_chunks(bad[i], 1, &r, &err);
        if (!err)
            fail_msg("expected a parse error for %s", bad[i]);
    }
}

static void test_over_long_line_and_too_many_lines_are_errors(void **state)
{
    (void)state;
    size_t n = SMTP_REPLY_LINE_MAX + 100;
    char *s = malloc(n + 3);
    memcpy(s, "250 ", 4);
    memset(s + 4, 'a', n - 4);
    memcpy(s + n, "\r\n", 3);
    smtp_reply r;
    int err;
    feed_chunks(s, 7, &r, &err);
    assert_int_equal(err, 1);
    free(s);

    /* a long but legal line is kept, cut to the text limit */
    char line[700];
    memcpy(line, "250 ", 4);
    memset(line + 4, 'b', sizeof line - 7);
    memcpy(line + sizeof line - 3, "\r\n", 3);
    assert_int_equal(feed_chunks(line, 5, &r, &err), 1);
    assert_int_equal(err, 0);

    {
        size_t cap = (SMTP_REPLY_LINES_MAX + 5) * 8 + 16;
        char *many = calloc(1, cap);
        size_t off = 0;
        for (int i = 0; i < SMTP_REPLY_LINES_MAX + 5; i++)
            off += (size_t)snprintf(many + off, cap - off, "250-x\r\n");
        snprintf(many + off, cap - off, "250 end\r\n");
        feed_chunks(many, 64, &r, &err);
        assert_int_equal(err, 1);
        free(many);
    }
}

static void test_large_multiline_text_is_truncated_not_overflowed(void **state)
{
    (void)state;
    char big[8192];
    size_t off = 0;
    for (int i = 0; i < 100; i++)
        off += (size_t)snprintf(big + off, sizeof big - off, "250-%050d\r\n", i);
    snprintf(big + off, sizeof big - off, "250 last\r\n");
    smtp_reply r;
    int err;
    assert_int_equal(feed_chunks(big, 13, &r, &err), 1);
    assert_int_equal(err, 0);
    assert_true(r.text_len < SMTP_REPLY_TEXT_MAX);
    assert_int_equal(r.lines, 101);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_line_reply_with_enhanced_code),
        cmocka_unit_test(test_multiline_ehlo_reply_in_every_split),
        cmocka_unit_test(test_several_replies_in_one_read),
        cmocka_unit_test(test_bare_lf_and_code_only_lines_are_accepted),
        cmocka_unit_test(test_enhanced_code_of_wrong_class_is_ignored),
        cmocka_unit_test(test_malformed_replies_are_rejected),
        cmocka_unit_test(test_over_long_line_and_too_many_lines_are_errors),
        cmocka_unit_test(test_large_multiline_text_is_truncated_not_overflowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
