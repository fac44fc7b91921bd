/* Unit tests of common/json.c's parser: limits that hold while the input is read
 * (depth), strings that are UTF-8 text without NUL or surrogates (escaped or raw),
 * no duplicate members, numbers kept as yajl_tree keeps them, and error paths that
 * name the member. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static yajl_val parse(const char *doc, json_error *e)
{
    return json_parse_checked(doc, strlen(doc), e);
}

static void expect_fault(const char *doc, enum json_fault fault, const char *field)
{
    json_error e;
    yajl_val v = parse(doc, &e);
    if (v || e.fault != fault || strcmp(e.field, field)) {
        print_error("%s: expected fault %d field '%s', got %s fault %d field '%s' (%s)\n", doc,
                    fault, field, v ? "a tree" : "NULL", e.fault, e.field, e.message);
        yajl_tree_free(v);
        fail();
    }
}

static char *nested(char open, char close, size_t depth, bool balanced)
{
    char *s = malloc(2 * depth + 1);
    memset(s, open, depth);
    size_t n = depth;
    if (balanced) {
        memset(s + depth, close, depth);
        n += depth;
    }
    s[n] = '\0';
    return s;
}

static void test_json_depth_is_refused_while_parsing(void **state)
{
    (void)state;
    json_error e;
    /* 300,000 levels, open or closed: refused at level 65, no tree, no deep recursion. */
    for (int balanced = 0; balanced <= 1; balanced++) {
        char *s = nested('[', ']', 300000, balanced);
        assert_null(json_parse_checked(s, strlen(s), &e));
        assert_int_equal(e.fault, JSON_TOO_DEEP);
        assert_non_null(strstr(e.message, "64"));
        free(s);
    }
    char *ok = nested('[', ']', JSON_MAX_DEPTH, true);
    yajl_val v = parse(ok, &e);
    assert_non_null(v);
    yajl_tree_free(v);
    free(ok);
    char *deep = nested('[', ']', JSON_MAX_DEPTH + 1, true);
    assert_null(parse(deep, &e));
    assert_int_equal(e.fault, JSON_TOO_DEEP);
    free(deep);
    /* Objects count the same way. */
    char obj[1024] = "";
    size_t n = 0;
    for (int i = 0; i < JSON_MAX_DEPTH + 1; i++)
        n += (size_t)snprintf(obj + n, sizeof obj - n, "{\"a\":");
    snprintf(obj + n, sizeof obj - n, "1");
    assert_null(parse(obj, &e));
    assert_int_equal(e.fault, JSON_TOO_DEEP);
}

static void test_json_nul_escape_is_refused_and_named(void **state)
{
    (void)state;
    expect_fault("{\"action\\u0000zz\":\"start\"}", JSON_BAD_TEXT, "action\\u0000zz");
    expect_fault("{\"smtp\":{\"host\":\"127.0.0.1\\u0000.evil\"}}", JSON_BAD_TEXT, "smtp.host");
    expect_fault("{\"smtp\":{\"port\":1,\"password\":\"ab\\u0000cd\"}}", JSON_BAD_TEXT,
                 "smtp.password");
    expect_fault("{\"results\":[{\"send_id\":1},{\"detail\":\"x\\u0000\"}]}", JSON_BAD_TEXT,
                 "results[1].detail");
    expect_fault("{\"a\":[[\"ok\",\"\\u0000\"]]}", JSON_BAD_TEXT, "a[0][1]");
    expect_fault("{\"a\":{\"b\":1,\"c\\u0000\":2}}", JSON_BAD_TEXT, "a.c\\u0000");
}

static void test_json_unpaired_surrogates_are_refused(void **state)
{
    (void)state;
    expect_fault("{\"p\":\"\\ud800\"}", JSON_BAD_TEXT, "p");
    expect_fault("{\"p\":\"\\udc00\"}", JSON_BAD_TEXT, "p");
    expect_fault("{\"p\":\"x\\uDBFFy\"}", JSON_BAD_TEXT, "p");
    expect_fault("{\"p\":\"\\ud800\\u0041\"}", JSON_BAD_TEXT, "p");
    expect_fault("{\"p\":\"\\ud800\\ud800\"}", JSON_BAD_TEXT, "p");
    expect_fault("{\"p\":\"\\ude00\\ud83d\"}", JSON_BAD_TEXT, "p");
    expect_fault("{\"k\\udc00\":1}", JSON_BAD_TEXT, "k\xEF\xBF\xBD");
    /* An escaped backslash before "u" is not an escape. */
    json_error e;
    yajl_val v = parse("{\"p\":\"\\\\ud800\",\"q\":\"\\ud83d\\ude00\"}", &e);
    assert_non_null(v);
    assert_string_equal(json_str(json_get(v, "p")), "\\ud800");
    assert_string_equal(json_str(json_get(v, "q")), "\xF0\x9F\x98\x80");
    yajl_tree_free(v);
}

static void test_json_raw_invalid_utf8_names_the_member(void **state)
{
    (void)state;
    expect_fault("{\"address\":\"a\xff\xfe@x.test\"}", JSON_BAD_UTF8, "address");
    expect_fault("{\"a\":{\"b\xc0\xaf\":1}}", JSON_BAD_UTF8, "a.b\xEF\xBF\xBD");
    expect_fault("{\"a\":\"\xed\xa0\x80\"}", JSON_BAD_UTF8, "a");
    /* Outside strings: the body as a whole. */
    json_error e;
    assert_null(json_parse_checked("{\"a\":1}\0{}", 10, &e));
    assert_int_equal(e.fault, JSON_BAD_UTF8);
    assert_string_equal(e.field, "");
    /* A raw control byte in a string is not JSON. */
    expect_fault("{\"a\":\"x\001\"}", JSON_SYNTAX, "");
}

static void test_json_duplicate_members_are_refused(void **state)
{
    (void)state;
    expect_fault("{\"action\":\"stop\",\"action\":\"start\"}", JSON_DUP_KEY, "action");
    expect_fault("{\"smtp\":{\"host\":\"a\",\"port\":1,\"host\":\"b\"}}", JSON_DUP_KEY,
                 "smtp.host");
    expect_fault("{\"r\":[1,{\"a\":1,\"a\":1}]}", JSON_DUP_KEY, "r[1].a");
    /* Many distinct members are fine (and sorted, not compared pairwise). */
    size_t cap = 20 * 50000 + 16, n = 0;
    char *big = malloc(cap);
    big[n++] = '{';
    for (int i = 0; i < 50000; i++)
        n += (size_t)snprintf(big + n, cap - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    big[n++] = '}';
    json_error e;
    yajl_val v = json_parse_checked(big, n, &e);
    assert_non_null(v);
    assert_int_equal(v->u.object.len, 50000);
    yajl_tree_free(v);
    n -= 1;
    n += (size_t)snprintf(big + n, cap - n, ",\"k17\":0}");
    assert_null(json_parse_checked(big, n, &e));
    assert_int_equal(e.fault, JSON_DUP_KEY);
    assert_string_equal(e.field, "k17");
    free(big);
}

static void test_json_numbers_keep_yajl_tree_semantics(void **state)
{
    (void)state;
    json_error e;
    yajl_val v = parse("{\"a\":1e400,\"b\":-0,\"c\":9223372036854775808,\"d\":"
                       "99999999999999999999,\"e\":-12,\"f\":1.5,\"g\":1e2,\"h\":true,\"i\":null,"
                       "\"j\":[],\"k\":{}}",
                       &e);
    assert_non_null(v);
    int64_t i;
    double d;
    assert_true(YAJL_IS_NUMBER(json_get(v, "a")));
    assert_false(json_int(json_get(v, "a"), INT64_MIN, INT64_MAX, &i));
    assert_false(json_number(json_get(v, "a"), -1e308, 1e308, &d));
    assert_true(json_int(json_get(v, "b"), 0, 0, &i));
    assert_int_equal(i, 0);
    assert_false(json_int(json_get(v, "c"), INT64_MIN, INT64_MAX, &i));
    assert_false(json_int(json_get(v, "d"), INT64_MIN, INT64_MAX, &i));
    assert_true(json_int(json_get(v, "e"), -12, -12, &i));
    assert_false(json_int(json_get(v, "f"), INT64_MIN, INT64_MAX, &i));
    assert_true(json_number(json_get(v, "f"), 0, 2, &d));
    assert_false(json_int(json_get(v, "g"), INT64_MIN, INT64_MAX, &i));
    assert_string_equal(YAJL_GET_NUMBER(json_get(v, "g")), "1e2");
    assert_true(YAJL_IS_TRUE(json_get(v, "h")));
    assert_true(YAJL_IS_NULL(json_get(v, "i")));
    assert_true(YAJL_IS_ARRAY(json_get(v, "j")));
    assert_true(YAJL_IS_OBJECT(json_get(v, "k")));
    yajl_tree_free(v);
}

static void test_json_syntax_errors_and_the_text_wrapper(void **state)
{
    (void)state;
    json_error e;
    const char *bad[] = {"", "{", "{\"a\":", "[1,]", "{\"a\" 1}", "{}x", "{} {}", "tru", "'a'"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        assert_null(parse(bad[k], &e));
        assert_int_equal(e.fault, JSON_SYNTAX);
        assert_non_null(strstr(e.message, "malformed JSON"));
        assert_null(strchr(e.message, '\n'));
    }
    char err[128];
    assert_null(json_parse("{\"a\":\"\\u0000\"}", 13, err, sizeof err));
    assert_non_null(strstr(err, "NUL"));
    yajl_val v = json_parse("\"top\"", 5, err, sizeof err);
    assert_non_null(v);
    assert_string_equal(err, "");
    assert_string_equal(json_str(v), "top");
    yajl_tree_free(v);
}

/* Every tree the parser returns holds its promises, whatever the input. */
static void check_tree(yajl_val v, int depth)
{
    /* depth: containers from the root down to v, v included when it is one */
    if (YAJL_IS_OBJECT(v) || YAJL_IS_ARRAY(v))
        assert_true(depth <= JSON_MAX_DEPTH);
    if (YAJL_IS_STRING(v)) {
        assert_true(utf8_valid(v->u.string, strlen(v->u.string)));
    } else if (YAJL_IS_OBJECT(v)) {
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];
            assert_true(utf8_valid(k, strlen(k)));
            for (size_t j = 0; j < i; j++)
                assert_true(strcmp(k, v->u.object.keys[j]) != 0);
            check_tree(v->u.object.values[i], depth + 1);
        }
    } else if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++)
            check_tree(v->u.array.values[i], depth + 1);
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_json_random_mutations_keep_the_invariants(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "{\"a\":[1,2,{\"b\":\"x\\u00e9\\ud83d\\ude00\"}],\"c\":{\"d\":null,\"e\":true}}",
        "{\"smtp\":{\"host\":\"127.0.0.1\",\"port\":587,\"password\":\"p\\\"w\"}}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "{\"k\":\"\\u0041\\ud800\\udc00\",\"n\":-0.5e+3,\"z\":[\"\xc3\xa9\"]}",
    };
    static const char alphabet[] = "[]{}\",:\\u0dD8Cc9e-. \x00\x80\xbf\xc3\xed\xf4\xff";
    char doc[512];
    int parsed = 0;
    for (int iter = 0; iter < 200000; iter++) {
        const char *seed = seeds[rng() % (sizeof seeds / sizeof *seeds)];
        size_t n = strlen(seed);
        memcpy(doc, seed, n);
        for (int m = (int)(rng() % 4) + 1; m > 0; m--) {
            size_t at = n ? rng() % n : 0;
            char c = alphabet[rng() % (sizeof alphabet - 1)];
            switch (rng() % 3) {
            case 0: /* replace */
                if (n)
                    doc[at] = c;
                break;
            case 1: /* insert */
                if (n + 1 < sizeof doc) {
                    memmove(doc + at + 1, doc + at, n - at);
                    doc[at] = c;
                    n++;
                }
                break;
            default: /* delete */
                if (n) {
                    memmove(doc + at, doc + at + 1, n - at - 1);
                    n--;
                }
                break;
            }
        }
        json_error e;
        yajl_val v = json_parse_checked(doc, n, &e);
        if (v) {
            parsed++;
            check_tree(v, 1);
            yajl_tree_free(v);
        } else {
            assert_int_not_equal(e.fault, JSON_OK);
            assert_true(utf8_valid(e.field, strlen(e.field)));
            assert_non_null(memchr(e.message, '\0', sizeof e.message));
        }
    }
    assert_true(parsed > 1000); /* the mutations do not only make garbage */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_depth_is_refused_while_parsing),
        cmocka_unit_test(test_json_nul_escape_is_refused_and_named),
        cmocka_unit_test(test_json_unpaired_surrogates_are_refused),
        cmocka_unit_test(test_json_raw_invalid_utf8_names_the_member),
        cmocka_unit_test(test_json_duplicate_members_are_refused),
        cmocka_unit_test(test_json_numbers_keep_yajl_tree_semantics),
        cmocka_unit_test(test_json_syntax_errors_and_the_text_wrapper),
        cmocka_unit_test(test_json_random_mutations_keep_the_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
