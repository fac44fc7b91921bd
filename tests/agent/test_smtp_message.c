/* Unit tests for the message builder: dot-stuffing and CRLF normalization, RFC 2047
 * header encoding, quoted-printable bodies, raw UTF-8 addresses (RFC 6532),
 * header-injection guards, a reply's In-Reply-To and References (valid msg-ids only,
 * folded at 78). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "smtp_message.h"
#include "wire.h"

#include <stdio.h>
#include <string.h>

static void expect_stuffed(const char *in, const char *want)
{
    buf b = BUF_INIT;
    smtp_dot_stuff(in, strlen(in), &b);
    if (strcmp(b.data, want))
        fail_msg("dot-stuffing [%s]: expected [%s], got [%s]", in, want, b.data);
    buf_free(&b);
}

static void test_dot_stuffing_and_line_ends(void **state)
{
    (void)state;
    expect_stuffed("", ".\r\n");
    expect_stuffed("a", "a\r\n.\r\n");
    expect_stuffed("a\r\n", "a\r\n.\r\n");
    expect_stuffed(".", "..\r\n.\r\n");
    expect_stuffed(".\r\n", "..\r\n.\r\n");
    expect_stuffed("a\n.b\n..c\n", "a\r\n..b\r\n...c\r\n.\r\n");
    expect_stuffed("a\rb\r\nc\n\nd", "a\r\nb\r\nc\r\n\r\nd\r\n.\r\n");
    expect_stuffed("x.\r\n.", "x.\r\n..\r\n.\r\n");
}

static void test_ascii_subject_is_kept_and_utf8_is_encoded(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    smtp_header_encode("Hello world", 9, &b);
    assert_string_equal(b.data, "Hello world");
    buf_reset(&b);
    smtp_header_encode("Grüße", 9, &b);
    assert_string_equal(b.data, "=?UTF-8?B?R3LDvMOfZQ==?=");
    buf_reset(&b);
    /* long non-ASCII text: several words, none over 75 chars, no split UTF-8 sequence */
    char longs[400] = "";
    size_t used = 0;
    for (int i = 0; i < 40; i++)
        used += (size_t)snprintf(longs + used, sizeof longs - used, "%s", "ä€");
    smtp_header_encode(longs, 9, &b);
    const char *p = b.data;
    int words = 0;
    while (p && *p) {
        const char *end = strstr(p, "\r\n ");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        assert_true(len <= 75);
        assert_memory_equal(p, "=?UTF-8?B?", 10);
        words++;
        p = end ? end + 3 : NULL;
    }
    assert_true(words > 2);
    buf_free(&b);
}

static void test_quoted_printable(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    smtp_qp_encode("caf\xc3\xa9 = ok \nnext", 16, &b);
    assert_string_equal(b.data, "caf=C3=A9 =3D ok=20\r\nnext");
    buf_reset(&b);
    char line[200];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    smtp_qp_encode(line, strlen(line), &b);
    /* soft breaks keep every line at most 76 characters */
    const char *p = b.data;
    while (*p) {
        const char *nl = strstr(p, "\r\n");
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        assert_true(len <= 76);
        p = nl ? nl + 2 : p + len;
    }
    buf_reset(&b);
    smtp_qp_encode(".\n.x", 4, &b);
    assert_string_equal(b.data, "=2E\r\n=2Ex");
    /* a '.' that a soft break puts at the start of a line is encoded there too */
    buf_reset(&b);
    char dots[80];
    memset(dots, 'y', 75);
    memcpy(dots + 75, ".\n", 3);
    smtp_qp_encode(dots, 77, &b);
    assert_int_equal(b.len, 75 + 3 + 3 + 2);
    assert_memory_equal(b.data + 75, "=\r\n=2E\r\n", 8);
    /* literal runs and encoded bytes mixed across a soft break round-trip the limit */
    buf_reset(&b);
    char mixed[300];
    for (size_t i = 0; i < sizeof mixed - 1; i++)
        mixed[i] = (i % 7 == 3) ? '=' : (char)('a' + i % 26);
    mixed[sizeof mixed - 1] = '\0';
    smtp_qp_encode(mixed, strlen(mixed), &b);
    size_t decoded = 0;
    for (const char *q = b.data; *q;) {
        const char *nl = strstr(q, "\r\n");
        size_t len = nl ? (size_t)(nl - q) : strlen(q);
        assert_true(len <= 76);
        for (size_t i = 0; i < len; i++) {
            if (q[i] == '=' && i + 1 == len)
                break; /* soft break */
            if (q[i] == '=') {
                assert_memory_equal(q + i, "=3D", 3);
                i += 2;
            }
            decoded++;
        }
        q = nl ? nl + 2 : q + len;
    }
    assert_int_equal(decoded, strlen(mixed));
    buf_free(&b);
}

static void test_message_headers_and_body(void **state)
{
    (void)state;
    smtp_message m = {.from_addr = "anna@acme.test",
                      .from_name = "Anna \"A\" Smith",
                      .to_addr = "bob@other.test",
                      .subject = "Hi",
                      .body = "line1\nline2",
                      .message_id = "<m1@acme.test>",
                      .date_unix_s = 1764064800};
    buf b = BUF_INIT;
    smtp_message_build(&m, &b);
    assert_string_equal(b.data, "Date: Tue, 25 Nov 2025 10:00:00 +0000\r\n"
                                "Message-ID: <m1@acme.test>\r\n"
                                "From: \"Anna \\\"A\\\" Smith\" <anna@acme.test>\r\n"
                                "To: <bob@other.test>\r\n"
                                "Subject: Hi\r\n"
                                "MIME-Version: 1.0\r\n"
                                "Content-Type: text/plain; charset=UTF-8\r\n"
                                "Content-Transfer-Encoding: 7bit\r\n"
                                "\r\n"
                                "line1\r\nline2\r\n");
    buf_free(&b);
}

static void test_utf8_message_uses_qp_and_encoded_words(void **state)
{
    (void)state;
    smtp_message m = {.from_addr = "a@b.test",
                      .from_name = "Jürgen",
                      .to_addr = "c@d.test",
                      .subject = "Grüße",
                      .body = "schön\n",
                      .message_id = NULL,
                      .date_unix_s = 0};
    buf b = BUF_INIT;
    smtp_message_build(&m, &b);
    assert_non_null(strstr(b.data, "From: =?UTF-8?B?SsO8cmdlbg==?= <a@b.test>\r\n"));
    assert_non_null(strstr(b.data, "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"));
    assert_non_null(strstr(b.data, "Content-Transfer-Encoding: quoted-printable\r\n"));
    assert_non_null(strstr(b.data, "\r\n\r\nsch=C3=B6n\r\n"));
    assert_non_null(strstr(b.data, "Message-ID: <"));
    assert_non_null(strstr(b.data, "@b.test>\r\n"));
    buf_free(&b);
}

static void test_utf8_addresses_stay_raw_in_from_and_to(void **state)
{
    (void)state;
    /* josé@exämple.test to 用户@例子.test: RFC 6532 headers, sent under SMTPUTF8 */
    smtp_message m = {.from_addr = "jos\xc3\xa9@ex\xc3\xa4mple.test",
                      .from_name = "Jos\xc3\xa9",
                      .to_addr = "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.test",
                      .subject = "Hi",
                      .body = "hi\n",
                      .message_id = "<m1@acme.test>",
                      .date_unix_s = 1764064800};
    buf b = BUF_INIT;
    smtp_message_build(&m, &b);
    assert_string_equal(b.data, "Date: Tue, 25 Nov 2025 10:00:00 +0000\r\n"
                                "Message-ID: <m1@acme.test>\r\n"
                                "From: =?UTF-8?B?Sm9zw6k=?= <jos\xc3\xa9@ex\xc3\xa4mple.test>\r\n"
                                "To: <\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.test>\r\n"
                                "Subject: Hi\r\n"
                                "MIME-Version: 1.0\r\n"
                                "Content-Type: text/plain; charset=UTF-8\r\n"
                                "Content-Transfer-Encoding: 7bit\r\n"
                                "\r\n"
                                "hi\r\n");
    buf_free(&b);
}

static void test_header_injection_is_neutralised(void **state)
{
    (void)state;
    smtp_message m = {.from_addr = "a@b.test",
                      .from_name = "x\r\nBcc: victim@evil.test",
                      .to_addr = "c@d.test",
                      .subject = "s\r\nBcc: victim@evil.test",
                      .body = "b",
                      .message_id = "<i@d>\r\nX: y",
                      .date_unix_s = 0};
    buf b = BUF_INIT;
    smtp_message_build(&m, &b);
    assert_null(strstr(b.data, "\r\nBcc:"));
    assert_null(strstr(b.data, "\r\nX: y"));
    buf_free(&b);
}

/* Every line of the message, CRLF excluded, fits RFC 5322's 998 octets. */
static void assert_lines_fit(const buf *b)
{
    size_t line = 0;
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] == '\n') {
            line = 0;
            continue;
        }
        if (b->data[i] != '\r' && ++line > 998)
            fail_msg("a line longer than 998 octets at offset %zu", i);
    }
}

static void test_long_header_values_keep_lines_within_998_octets(void **state)
{
    (void)state;
    char name[2001], mid[1501];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    mid[0] = '<';
    memset(mid + 1, 'm', sizeof mid - 2);
    mid[sizeof mid - 1] = '\0';
    smtp_message m = {.from_addr = "a@b.test",
                      .from_name = name,
                      .to_addr = "c@d.test",
                      .subject = name,
                      .body = "b",
                      .message_id = mid,
                      .date_unix_s = 0};
    buf b = BUF_INIT;
    smtp_message_build(&m, &b);
    assert_lines_fit(&b);
    /* the display name went into encoded words, and the address stays on the line */
    assert_non_null(strstr(b.data, "From: =?UTF-8?B?"));
    assert_non_null(strstr(b.data, "?= <a@b.test>\r\n"));
    /* a Message-ID too long for a line is replaced, not cut */
    assert_null(strstr(b.data, "mmmmmmmmmm"));
    buf_free(&b);

    /* a short ASCII name stays a quoted-string */
    m.from_name = "Ann \"Q\" Lee";
    m.message_id = "<ok@d.test>";
    buf_reset(&b);
    smtp_message_build(&m, &b);
    assert_non_null(strstr(b.data, "From: \"Ann \\\"Q\\\" Lee\" <a@b.test>\r\n"));
    assert_non_null(strstr(b.data, "Message-ID: <ok@d.test>\r\n"));
    buf_free(&b);
}

static void test_msgid_syntax(void **state)
{
    (void)state;
    static const char *const good[] = {"<a@b>", "<12.1abc@acme.test>", "<x.y+z@[127.0.0.1]>",
                                       "<!#$%&'*+-/=?^_`{|}~@d.e>", "<a@[]>"};
    static const char *const bad[] = {"a@b",       "<a@b",          "<@b>",      "<a@>",
                                      "<a.@b>",    "<.a@b>",        "<a..b@c>",  "<a b@c>",
                                      "<a@b@c>",   "<a@b\r\nX: y>", "<\"q\"@b>", "<a@b..c>",
                                      "<a@[b[c]>", "<a(c)@b>",      "",          "<>"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!wire_msgid_ok(good[i], strlen(good[i])))
            fail_msg("msg-id %s: expected valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (wire_msgid_ok(bad[i], strlen(bad[i])))
            fail_msg("msg-id [%s]: expected invalid", bad[i]);
    char long_id[WIRE_MSGID_MAX + 2]; /* one byte over the limit, otherwise valid */
    memset(long_id, 'a', WIRE_MSGID_MAX + 1);
    long_id[0] = '<';
    memcpy(long_id + WIRE_MSGID_MAX + 1 - 5, "@b.c>", 5);
    long_id[WIRE_MSGID_MAX + 1] = '\0';
    assert_false(wire_msgid_ok(long_id, strlen(long_id)));
    memset(long_id, 'a', WIRE_MSGID_MAX); /* the same shape at exactly the limit */
    long_id[0] = '<';
    memcpy(long_id + WIRE_MSGID_MAX - 5, "@b.c>", 5);
    long_id[WIRE_MSGID_MAX] = '\0';
    assert_true(wire_msgid_ok(long_id, strlen(long_id)));
}

/* The header named name with its folded continuation lines, into out. */
static const char *header_value(const char *msg, const char *name, char *out, size_t outlen)
{
    const char *h = strstr(msg, name);
    if (!h)
        return NULL;
    const char *end = strstr(h, "\r\n");
    while (end && (end[2] == ' ' || end[2] == '\t'))
        end = strstr(end + 2, "\r\n");
    size_t n = (size_t)(end - h);
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, h, n);
    out[n] = '\0';
    return out;
}

static void test_reply_headers_in_reply_to_and_references(void **state)
{
    (void)state;
    const char *refs[] = {"<1.1aaaaaaaaaaaaaaaaaaaaaaaa@acme.test>",
                          "<2.1bbbbbbbbbbbbbbbbbbbbbbbb@other.test>",
                          "<3.1cccccccccccccccccccccccc@acme.test>"};
    smtp_message m = {.from_addr = "anna@acme.test",
                      .to_addr = "bob@other.test",
                      .subject = "Re: Hi",
                      .body = "b",
                      .message_id = "<m2@acme.test>",
                      .in_reply_to = refs[2],
                      .references = refs,
                      .nreferences = 3,
                      .date_unix_s = 1764064800};
    buf b = BUF_INIT;
    smtp_message_build(&m, &b);
    assert_lines_fit(&b);
    assert_non_null(strstr(b.data, "Message-ID: <m2@acme.test>\r\n"
                                   "In-Reply-To: <3.1cccccccccccccccccccccccc@acme.test>\r\n"
                                   "References: <1.1aaaaaaaaaaaaaaaaaaaaaaaa@acme.test>\r\n"
                                   " <2.1bbbbbbbbbbbbbbbbbbbbbbbb@other.test>\r\n"
                                   " <3.1cccccccccccccccccccccccc@acme.test>\r\n"
                                   "From: "));
    /* every line of the headers fits 78 columns here (each id is short enough) */
    for (const char *l = b.data; l && *l && strncmp(l, "\r\n", 2);) {
        const char *e = strstr(l, "\r\n");
        if ((size_t)(e - l) > 78)
            fail_msg("header line longer than 78: %.*s", (int)(e - l), l);
        l = e + 2;
    }
    buf_free(&b);

    /* short ids share a line, the fold comes before column 78 */
    const char *shorts[] = {"<a1@x.test>", "<a2@x.test>", "<a3@x.test>", "<a4@x.test>",
                            "<a5@x.test>", "<a6@x.test>", "<a7@x.test>"};
    m.references = shorts;
    m.nreferences = 7;
    m.in_reply_to = shorts[6];
    buf_reset(&b);
    smtp_message_build(&m, &b);
    char v[512];
    assert_non_null(header_value(b.data, "References:", v, sizeof v));
    /* 11 + 5 x 12 = 71 columns; a sixth id would end at 83 */
    assert_string_equal(v, "References: <a1@x.test> <a2@x.test> <a3@x.test> <a4@x.test> "
                           "<a5@x.test>\r\n <a6@x.test> <a7@x.test>");
    buf_free(&b);
}

static void test_reply_headers_drop_what_is_not_a_msg_id(void **state)
{
    (void)state;
    const char *refs[] = {"<ok1@x.test>", "not-an-id", "<a@b>\r\nBcc: evil@x.test", "<ok2@x.test>",
                          NULL};
    smtp_message m = {.from_addr = "anna@acme.test",
                      .to_addr = "bob@other.test",
                      .subject = "Re: Hi",
                      .body = "b",
                      .message_id = "<m3@acme.test>",
                      .in_reply_to = "<x@y>\r\nBcc: evil@x.test",
                      .references = refs,
                      .nreferences = 5,
                      .date_unix_s = 0};
    buf b = BUF_INIT;
    smtp_message_build(&m, &b);
    assert_null(strstr(b.data, "In-Reply-To:"));
    assert_null(strstr(b.data, "Bcc"));
    assert_null(strstr(b.data, "not-an-id"));
    assert_non_null(strstr(b.data, "References: <ok1@x.test> <ok2@x.test>\r\n"));
    buf_free(&b);

    /* no threading at all: neither header */
    const char *only_bad[] = {"junk"};
    m.in_reply_to = NULL;
    m.references = only_bad;
    m.nreferences = 1;
    buf_reset(&b);
    smtp_message_build(&m, &b);
    assert_null(strstr(b.data, "References:"));
    assert_null(strstr(b.data, "In-Reply-To:"));
    buf_free(&b);

    /* more than 20 references: the first 20 valid ones are written */
    char ids[25][24];
    const char *many[25];
    for (int i = 0; i < 25; i++) {
        snprintf(ids[i], sizeof ids[i], "<r%d@x.test>", i);
        many[i] = ids[i];
    }
    m.references = many;
    m.nreferences = 25;
    buf_reset(&b);
    smtp_message_build(&m, &b);
    assert_lines_fit(&b);
    assert_non_null(strstr(b.data, "<r19@x.test>"));
    assert_null(strstr(b.data, "<r20@x.test>"));
    buf_free(&b);

    /* an id of the maximum length is written on a line of its own, within 998 */
    char longest[WIRE_MSGID_MAX + 1];
    memset(longest, 'l', WIRE_MSGID_MAX);
    longest[0] = '<';
    memcpy(longest + WIRE_MSGID_MAX - 5, "@b.c>", 5);
    longest[WIRE_MSGID_MAX] = '\0';
    const char *two[] = {"<s@x.test>", longest};
    m.references = two;
    m.nreferences = 2;
    m.in_reply_to = longest;
    buf_reset(&b);
    smtp_message_build(&m, &b);
    assert_lines_fit(&b);
    char want[WIRE_MSGID_MAX + 40];
    snprintf(want, sizeof want, "References: <s@x.test>\r\n %s\r\n", longest);
    assert_non_null(strstr(b.data, want));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_stuffing_and_line_ends),
        cmocka_unit_test(test_ascii_subject_is_kept_and_utf8_is_encoded),
        cmocka_unit_test(test_quoted_printable),
        cmocka_unit_test(test_message_headers_and_body),
        cmocka_unit_test(test_utf8_message_uses_qp_and_encoded_words),
        cmocka_unit_test(test_utf8_addresses_stay_raw_in_from_and_to),
        cmocka_unit_test(test_header_injection_is_neutralised),
        cmocka_unit_test(test_long_header_values_keep_lines_within_998_octets),
        cmocka_unit_test(test_msgid_syntax),
        cmocka_unit_test(test_reply_headers_in_reply_to_and_references),
        cmocka_unit_test(test_reply_headers_drop_what_is_not_a_msg_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
