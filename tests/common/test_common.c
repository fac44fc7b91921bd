/* Unit tests for common/: buffers, arenas, JSON helpers, secret sealing, config
 * parsing and the token bucket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arena.h"
#include "buf.h"
#include "config.h"
#include "json.h"
#include "rand.h"
#include "secret.h"
#include "token_bucket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_buf_grows_and_stays_nul_terminated(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    for (int i = 0; i < 1000; i++)
        buf_printf(&b, "%d,", i);
    assert_int_equal(b.data[b.len], '\0');
    assert_true(strncmp(b.data, "0,1,2,", 6) == 0);
    buf_consume(&b, 2);
    assert_true(strncmp(b.data, "1,2,", 4) == 0);
    buf_free(&b);
}

/* fmt_i64 spells every int64 as printf's "%lld" does, the ends included. */
static void test_fmt_i64_matches_printf(void **state)
{
    (void)state;
    const int64_t vs[] = {0,
                          1,
                          -1,
                          9,
                          10,
                          -10,
                          99,
                          100,
                          123456789,
                          -987654321,
                          INT64_MAX,
                          INT64_MIN,
                          INT64_MIN + 1,
                          INT64_MAX - 1,
                          1000000000000000000LL};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        char want[32], got[FMT_I64_MAX + 1];
        int wn = snprintf(want, sizeof want, "%lld", (long long)vs[i]);
        size_t gn = fmt_i64(got, vs[i]);
        got[gn] = '\0';
        assert_int_equal(gn, (size_t)wn);
        assert_string_equal(got, want);
    }
    buf b = BUF_INIT;
    buf_put_i64(&b, -42);
    buf_putc(&b, ',');
    buf_put_i64(&b, INT64_MIN);
    assert_string_equal(b.data, "-42,-9223372036854775808");
    buf_free(&b);
    /* json_i writes the same digits as a JSON number */
    yajl_gen g = yajl_gen_alloc(NULL);
    yajl_gen_array_open(g);
    json_i(g, INT64_MIN);
    json_i(g, 0);
    json_i(g, INT64_MAX);
    yajl_gen_array_close(g);
    const unsigned char *out;
    size_t len;
    yajl_gen_get_buf(g, &out, &len);
    assert_int_equal(len, strlen("[-9223372036854775808,0,9223372036854775807]"));
    assert_memory_equal(out, "[-9223372036854775808,0,9223372036854775807]", len);
    yajl_gen_free(g);
}

static int cleaned;
static void count_cleanup(void *p)
{
    cleaned += *(int *)p;
}

static void test_arena_runs_cleanups_in_reverse_and_handles_large_allocs(void **state)
{
    (void)state;
    arena *a = arena_create(256);
    static int one = 1, ten = 10;
    arena_cleanup_add(a, count_cleanup, &one);
    arena_cleanup_add(a, count_cleanup, &ten);
    char *big = arena_alloc(a, 100000);
    memset(big, 'x', 100000);
    char *s = arena_printf(a, "mailbox %d", 42);
    assert_string_equal(s, "mailbox 42");
    cleaned = 0;
    arena_reset(a);
    assert_int_equal(cleaned, 11);
    arena_destroy(a);
}

static void test_json_parse_rejects_invalid_utf8_and_nul(void **state)
{
    (void)state;
    char err[256];
    assert_null(json_parse("{\"a\":\"\xff\"}", 9, err, sizeof err));
    assert_non_null(strstr(err, "UTF-8"));
    assert_null(json_parse("{\"a\":1}\0", 8, err, sizeof err));
    assert_null(json_parse("{\"a\":", 5, err, sizeof err));
    assert_non_null(strstr(err, "malformed JSON"));
    const char *doc = "{\"a\":5,\"b\":\"x\",\"c\":99999999999999999999999}";
    yajl_val v = json_parse(doc, strlen(doc), err, sizeof err);
    assert_non_null(v);
    int64_t i;
    assert_true(json_int(json_get(v, "a"), 0, 10, &i));
    assert_int_equal(i, 5);
    assert_false(json_int(json_get(v, "a"), 6, 10, &i));
    assert_false(json_int(json_get(v, "b"), 0, 10, &i));
    assert_false(json_int(json_get(v, "c"), 0, INT64_MAX, &i));
    assert_string_equal(json_str(json_get(v, "b")), "x");
    assert_null(json_get(v, "missing"));
    yajl_tree_free(v);
}

static void test_utf8_validation_edges(void **state)
{
    (void)state;
    assert_true(utf8_valid("h\xc3\xa9llo", 6));
    assert_true(utf8_valid("\xf0\x9f\x98\x80", 4));
    assert_false(utf8_valid("\xc3", 1));             /* truncated */
    assert_false(utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
}

static void test_json_gen_writes_escaped_output(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    yajl_gen g = json_gen_new(&b);
    json_obj_open(g);
    json_kv_s(g, "name", "a\"b\n");
    json_kv_i(g, "n", -3);
    json_kv_null(g, "z");
    json_obj_close(g);
    json_gen_free(g);
    assert_string_equal(b.data, "{\"name\":\"a\\\"b\\n\",\"n\":-3,\"z\":null}");
    buf_free(&b);
}

static void test_secret_seal_roundtrip_and_tamper_detection(void **state)
{
    (void)state;
    char path[] = "/tmp/kiln-key-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    char err[256];
    assert_int_equal(secret_key_generate(path, err, sizeof err), 0);
    secret_key k;
    assert_int_equal(secret_key_load(path, &k, err, sizeof err), 0);
    unlink(path);

    buf sealed = BUF_INIT, plain = BUF_INIT;
    assert_int_equal(secret_seal(&k, "hunter2", 7, "ctx", &sealed), 0);
    assert_null(memmem(sealed.data, sealed.len, "hunter2", 7));
    assert_int_equal(secret_open(&k, sealed.data, sealed.len, "ctx", &plain), 0);
    assert_int_equal(plain.len, 7);
    assert_memory_equal(plain.data, "hunter2", 7);
    buf_reset(&plain);
    assert_int_equal(secret_open(&k, sealed.data, sealed.len, "other", &plain), -1);
    sealed.data[sealed.len - 1] ^= 1;
    assert_int_equal(secret_open(&k, sealed.data, sealed.len, "ctx", &plain), -1);
    assert_int_equal(secret_open(&k, "k1", 2, NULL, &plain), -1);
    buf_free(&sealed);
    buf_free(&plain);
}

static void test_secret_key_load_rejects_short_key(void **state)
{
    (void)state;
    char path[] = "/tmp/kiln-key-XXXXXX";
    int fd = mkstemp(path);
    assert_true(write(fd, "abcd\n", 5) == 5);
    close(fd);
    secret_key k;
    char err[256];
    assert_int_equal(secret_key_load(path, &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "64 hex digits"));
    unlink(path);
}

static void test_parse_int_is_strict(void **state)
{
    (void)state;
    int64_t v;
    assert_true(parse_int("42", 2, 0, 100, &v));
    assert_int_equal(v, 42);
    assert_false(parse_int("42x", 3, 0, 100, &v));
    assert_false(parse_int("", 0, 0, 100, &v));
    assert_false(parse_int("-", 1, -5, 100, &v));
    assert_false(parse_int("101", 3, 0, 100, &v));
    assert_false(parse_int("99999999999999999999", 20, 0, INT64_MAX, &v));
    assert_true(parse_int("-5", 2, -5, 100, &v));
    /* 20 digits that wrapped 2^64 to a small number used to pass: 2^64 + 1 read as 1,
     * 2^64 + 443 as port 443 */
    assert_false(parse_int("18446744073709551617", 20, 1, INT64_MAX, &v));
    assert_false(parse_int("18446744073709552059", 20, 1, 65535, &v));
    assert_false(parse_int("18446744073709551620", 20, 1, 1000, &v));
    assert_false(parse_int("-18446744073709551617", 21, INT64_MIN, 0, &v));
    assert_false(parse_int("9223372036854775808", 19, 0, INT64_MAX, &v));
    assert_true(parse_int("9223372036854775807", 19, 0, INT64_MAX, &v));
    assert_true(v == INT64_MAX);
    assert_true(parse_int("-9223372036854775807", 20, INT64_MIN, 0, &v));
    assert_true(v == -INT64_MAX);
    assert_true(parse_int("00000000000000000000042", 23, 0, 100, &v));
    assert_int_equal(v, 42);
}

/* What names something has one spelling: "+80" as a port passed kiln's check and libcurl
 * then refused the URL at every delivery; "01" and "+1" answered as plan 1. */
static void test_parse_digits_and_canonical(void **state)
{
    (void)state;
    int64_t v = -1;
    assert_true(parse_digits("01", 2, 1, 12, &v));
    assert_int_equal(v, 1);
    assert_false(parse_digits("+1", 2, 1, 12, &v));
    assert_false(parse_digits("-1", 2, -12, 12, &v));
    assert_false(parse_digits(" 1", 2, 1, 12, &v));
    assert_false(parse_digits("", 0, 0, 12, &v));
    assert_true(parse_canonical("443", 3, 1, 65535, &v));
    assert_int_equal(v, 443);
    assert_true(parse_canonical("0", 1, 0, 10, &v));
    assert_int_equal(v, 0);
    assert_false(parse_canonical("0443", 4, 1, 65535, &v));
    assert_false(parse_canonical("+80", 3, 1, 65535, &v));
    assert_false(parse_canonical("00", 2, 0, 10, &v));
    assert_false(parse_canonical("", 0, 0, 10, &v));
    assert_false(parse_canonical("65536", 5, 1, 65535, &v));
    assert_true(parse_canonical("9223372036854775807", 19, 1, INT64_MAX, &v));
    assert_true(v == INT64_MAX);
}

static void test_token_bucket_limits_rate(void **state)
{
    (void)state;
    token_bucket tb;
    token_bucket_init(&tb, 2.0, 2, 0); /* 2/s, burst 2 */
    assert_true(token_bucket_take(&tb, 0));
    assert_true(token_bucket_take(&tb, 0));
    assert_false(token_bucket_take(&tb, 0));
    int64_t w = token_bucket_wait_ms(&tb, 0);
    assert_true(w >= 499 && w <= 501);
    assert_false(token_bucket_take(&tb, 400));
    assert_true(token_bucket_take(&tb, 500));
}

static void test_random_range_stays_in_bounds(void **state)
{
    (void)state;
    int seen_lo = 0, seen_hi = 0;
    for (int i = 0; i < 2000; i++) {
        int64_t r = random_range(120, 125);
        assert_true(r >= 120 && r <= 125);
        seen_lo |= r == 120;
        seen_hi |= r == 125;
    }
    assert_true(seen_lo && seen_hi);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_grows_and_stays_nul_terminated),
        cmocka_unit_test(test_fmt_i64_matches_printf),
        cmocka_unit_test(test_arena_runs_cleanups_in_reverse_and_handles_large_allocs),
        cmocka_unit_test(test_json_parse_rejects_invalid_utf8_and_nul),
        cmocka_unit_test(test_utf8_validation_edges),
        cmocka_unit_test(test_json_gen_writes_escaped_output),
        cmocka_unit_test(test_secret_seal_roundtrip_and_tamper_detection),
        cmocka_unit_test(test_secret_key_load_rejects_short_key),
        cmocka_unit_test(test_parse_int_is_strict),
        cmocka_unit_test(test_parse_digits_and_canonical),
        cmocka_unit_test(test_token_bucket_limits_rate),
        cmocka_unit_test(test_random_range_stays_in_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
