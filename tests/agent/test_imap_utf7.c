/* Unit tests for modified UTF-7 mailbox names: RFC 3501's examples and others both
 * ways, a round trip of every BMP code point and some astral ones, and the refusals
 * (non-canonical or broken input never decodes to something). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "imap_utf7.h"

#include <string.h>

static const struct {
    const char *utf8, *wire;
} pairs[] = {
    {"INBOX", "INBOX"},
    {"", ""},
    {"Entwürfe", "Entw&APw-rfe"},
    {"ä", "&AOQ-"},
    {"日本語", "&ZeVnLIqe-"},
    {"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
    {"😀", "&2D3eAA-"},
    {"Warm-up ✓ & more", "Warm-up &JxM- &- more"},
    {"&", "&-"},
    {"&&", "&-&-"},
    {"a\tb", "a&AAk-b"},
};

static void test_known_names_both_ways(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        buf b = BUF_INIT;
        assert_int_equal(imap_utf7_encode(pairs[i].utf8, strlen(pairs[i].utf8), &b), 0);
        assert_string_equal(b.data ? b.data : "", pairs[i].wire);
        buf_reset(&b);
        assert_int_equal(imap_utf7_decode(pairs[i].wire, strlen(pairs[i].wire), &b), 0);
        assert_string_equal(b.data ? b.data : "", pairs[i].utf8);
        buf_free(&b);
    }
}

static size_t utf8_of(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* "x<cp>y<cp><cp>": code points next to ASCII and in runs of one and two. */
static void test_every_bmp_code_point_round_trips(void **state)
{
    (void)state;
    buf wire = BUF_INIT, back = BUF_INIT;
    for (uint32_t cp = 1; cp < 0x110000; cp += cp < 0x10000 ? 1 : 97) {
        if (cp >= 0xd800 && cp <= 0xdfff)
            continue;
        char in[32];
        size_t n = 0, k;
        in[n++] = 'x';
        n += utf8_of(cp, in + n);
        in[n++] = 'y';
        k = utf8_of(cp, in + n);
        n += k;
        memcpy(in + n, in + n - k, k);
        n += k;
        buf_reset(&wire);
        buf_reset(&back);
        if (imap_utf7_encode(in, n, &wire) != 0)
            fail_msg("U+%04X does not encode", cp);
        for (size_t i = 0; i < wire.len; i++)
            assert_true(wire.data[i] >= 0x20 && wire.data[i] <= 0x7e);
        if (imap_utf7_decode(wire.data, wire.len, &back) != 0)
            fail_msg("U+%04X: \"%s\" does not decode", cp, wire.data);
        assert_int_equal(back.len, n);
        assert_memory_equal(back.data, in, n);
    }
    buf_free(&wire);
    buf_free(&back);
}

static void test_decode_refuses_non_canonical_and_broken_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "&Jjo",       /* unterminated run */
        "&AGE-",      /* 'a' encoded: printable ASCII must stand for itself */
        "&ACA-",      /* space encoded */
        "&Jjo-&Jjo-", /* two runs back to back: one run was due */
        "&2D0-",      /* high surrogate alone */
        "&2D3eAA",    /* unterminated after a pair */
        "&3gA-",      /* low surrogate alone */
        "&2D3YPQ-",   /* high surrogate followed by another high */
        "&AOR-",      /* padding bits not zero */
        "&AA-",       /* 12 bits: half a unit */
        "&AOQA-",     /* a base64 character too many */
        "&AAA-",      /* NUL */
        "&Jj.-",      /* not base64 */
        "&Jj/-",      /* '/' is ',' in modified base64 */
        "a\x01"
        "b",               /* control character */
        "Entw\xc3\xbcrfe", /* 8-bit bytes */
        "a\x7f",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf b = BUF_INIT;
        buf_puts(&b, "keep");
        if (imap_utf7_decode(bad[i], strlen(bad[i]), &b) != -1)
            fail_msg("\"%s\" decoded", bad[i]);
        assert_string_equal(b.data, "keep"); /* unchanged */
        buf_free(&b);
    }
    /* a run after "&-" is fine: that is no run */
    buf b = BUF_INIT;
    assert_int_equal(imap_utf7_decode("&-&AOQ-", 7, &b), 0);
    assert_string_equal(b.data, "&ä");
    buf_free(&b);
}

static void test_encode_refuses_invalid_utf8_and_nul(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {
        {"\xc3", 1},             /* truncated */
        {"a\xc3(", 3},           /* bad continuation */
        {"\xc0\xaf", 2},         /* overlong '/' */
        {"\xe0\x80\xaf", 3},     /* overlong */
        {"\xed\xa0\x80", 3},     /* surrogate */
        {"\xf4\x90\x80\x80", 4}, /* past U+10FFFF */
        {"\xff", 1},
        {"\x80", 1},
        {"a\0b", 3}, /* NUL */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf b = BUF_INIT;
        buf_puts(&b, "keep");
        if (imap_utf7_encode(bad[i].s, bad[i].n, &b) != -1)
            fail_msg("case %zu encoded", i);
        assert_string_equal(b.data, "keep");
        buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_names_both_ways),
        cmocka_unit_test(test_every_bmp_code_point_round_trips),
        cmocka_unit_test(test_decode_refuses_non_canonical_and_broken_input),
        cmocka_unit_test(test_encode_refuses_invalid_utf8_and_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
