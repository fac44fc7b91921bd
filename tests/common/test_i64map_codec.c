/* Unit tests for common/i64map (against a plain array model under random churn),
 * common/codec, log_level_parse and the wire vocabulary, which is also checked
 * against api/openapi.yaml (the contract both binaries are built to). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "buf.h"
#include "codec.h"
#include "i64map.h"
#include "log.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_KEYS 5000

static void test_i64map_matches_a_model_under_churn(void **state)
{
    (void)state;
    static int64_t model[MODEL_KEYS];
    static bool present[MODEL_KEYS];
    memset(present, 0, sizeof present);
    i64map m;
    i64map_init(&m);
    uint64_t x = 88172645463325252ull; /* xorshift: a fixed, repeatable sequence */
    size_t live = 0;
    for (int step = 0; step < 400000; step++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t k = (size_t)(x % MODEL_KEYS);
        /* keys spread over the range, negatives and 0 included, and runs of neighbours */
        int64_t key = (int64_t)k * 1000003 - 2500000000LL;
        int op = (int)((x >> 20) % 3);
        if (step > 300000)
            op = 2; /* the tail empties the map so shrinking is exercised */
        if (op == 0 || op == 1) {
            i64map_put(&m, key, (int64_t)step);
            live += !present[k];
            present[k] = true;
            model[k] = step;
        } else {
            int64_t v = -1;
            bool had = i64map_del(&m, key, &v);
            assert_int_equal(had, present[k]);
            if (had)
                assert_int_equal(v, model[k]);
            live -= present[k];
            present[k] = false;
        }
        assert_int_equal(i64map_count(&m), live);
        if (step % 50000 == 0)
            for (size_t i = 0; i < MODEL_KEYS; i++) {
                int64_t v;
                bool got = i64map_get(&m, (int64_t)i * 1000003 - 2500000000LL, &v);
                assert_int_equal(got, present[i]);
                if (got)
                    assert_int_equal(v, model[i]);
            }
    }
    size_t it = 0, seen = 0;
    int64_t k, v;
    while (i64map_next(&m, &it, &k, &v))
        seen++;
    assert_int_equal(seen, live);
    assert_true(m.cap <= 1024); /* mostly emptied: shrunk back */
    i64map_free(&m);
}

static void test_i64map_slot_and_pointers(void **state)
{
    (void)state;
    i64map m = {0};
    bool added = false;
    int64_t *c = i64map_slot(&m, 7, 0, &added);
    assert_true(added);
    (*c)++;
    c = i64map_slot(&m, 7, 0, &added);
    assert_false(added);
    assert_int_equal(*c, 1);
    int target = 5;
    i64map_putp(&m, INT64_MAX, &target);
    assert_ptr_equal(i64map_getp(&m, INT64_MAX), &target);
    assert_null(i64map_getp(&m, 8));
    assert_false(i64map_has(&m, INT64_MIN));
    i64map_clear(&m);
    assert_int_equal(i64map_count(&m), 0);
    assert_false(i64map_has(&m, 7));
    i64map_free(&m);
}

static void test_codec_hex_and_base64(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    assert_int_equal(hex_decode_append(&b, "00ff7A", 6), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "\x00\xff\x7a", 3);
    assert_int_equal(hex_decode_append(&b, "abc", 3), -1); /* odd */
    assert_int_equal(hex_decode_append(&b, "zz", 2), -1);  /* not hex */
    assert_int_equal(hex_decode_append(&b, "a\0", 2), -1); /* NUL */
    assert_int_equal(b.len, 3);                            /* unchanged by failures */
    char hex[7];
    hex_encode((const unsigned char *)b.data, 3, hex);
    assert_string_equal(hex, "00ff7a");
    buf_reset(&b);
    base64_append(&b, "\0user\0pass", 10);
    assert_string_equal(b.data, "AHVzZXIAcGFzcw==");
    buf_free(&b);
}

static void test_log_level_parse(void **state)
{
    (void)state;
    enum log_level lv = LOG_INFO;
    assert_int_equal(log_level_parse("debug", &lv), 0);
    assert_int_equal(lv, LOG_DEBUG);
    assert_int_equal(log_level_parse("error", &lv), 0);
    assert_int_equal(lv, LOG_ERROR);
    assert_int_equal(log_level_parse("DEBUG", &lv), -1);
    assert_int_equal(log_level_parse("", &lv), -1);
    assert_int_equal(log_level_parse(NULL, &lv), -1);
    assert_int_equal(lv, LOG_ERROR);
}

/* The line of openapi.yaml's schema `name` (under components) that holds `key`. */
static char *spec_line(const char *spec, const char *schema, const char *key)
{
    char head[96];
    snprintf(head, sizeof head, "\n    %s:\n", schema);
    const char *s = strstr(spec, head);
    assert_non_null(s);
    s += strlen(head) - 1;
    /* the schema ends at the next line indented by exactly four spaces */
    const char *end = s;
    while ((end = strstr(end + 1, "\n    ")) && end[5] == ' ')
        ;
    const char *k = strstr(s, key);
    assert_non_null(k);
    assert_true(!end || k < end);
    const char *e = strchr(k, '\n');
    return strndup(k, e ? (size_t)(e - k) : strlen(k));
}

static void test_wire_vocabulary_matches_openapi(void **state)
{
    (void)state;
    FILE *f = fopen(KILN_SOURCE_DIR "/api/openapi.yaml", "r");
    assert_non_null(f);
    static char spec[1 << 20];
    size_t n = fread(spec, 1, sizeof spec - 1, f);
    fclose(f);
    spec[n] = '\0';

    buf want;
    buf_init(&want);
    buf_puts(&want, "enum: [");
    for (int i = 0; i < WIRE_REPORTABLE; i++)
        buf_printf(&want, "%s%s", i ? ", " : "", wire_status_names[i]);
    buf_puts(&want, "]");
    char *line = spec_line(spec, "SendStatus", "enum:");
    assert_string_equal(line, want.data);
    free(line);
    buf_free(&want);

    char exp[64];
    line = spec_line(spec, "LeaseRequest", "max_mailboxes:");
    snprintf(exp, sizeof exp, "maximum: %d,", WIRE_MAX_LEASE_MAILBOXES);
    assert_non_null(strstr(line, exp));
    free(line);
    line = spec_line(spec, "LeaseRequest", "max_sends:");
    snprintf(exp, sizeof exp, "maximum: %d,", WIRE_MAX_LEASE_SENDS);
    assert_non_null(strstr(line, exp));
    free(line);

    for (int i = 0; i < WIRE_STATUS_COUNT; i++)
        assert_int_equal(wire_status_parse(wire_status_names[i], strlen(wire_status_names[i])), i);
    assert_int_equal(wire_status_parse("sentx", 5), -1);
    assert_int_equal(wire_status_parse("sen", 3), -1);
    assert_null(wire_status_names[WIRE_STATUS_COUNT]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_i64map_matches_a_model_under_churn),
        cmocka_unit_test(test_i64map_slot_and_pointers),
        cmocka_unit_test(test_codec_hex_and_base64),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_wire_vocabulary_matches_openapi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
