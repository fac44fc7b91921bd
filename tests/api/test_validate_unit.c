/* Unit tests of the validation helpers added for issue 10: one-line display text counted
 * in characters (v_line_text) and time zones without the pseudo-zones (v_timezone). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app.h"
#include "http.h"
#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    http_resp rs;
    yajl_val doc;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    http_resp_init(&f->rs);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    http_resp_free(&f->rs);
    if (f->doc)
        yajl_tree_free(f->doc);
    free(f);
    return 0;
}

/* {"name": <json>} parsed; the previous document and error are dropped. */
static yajl_val doc(fixture *f, const char *json_value)
{
    char text[4096], err[128];
    snprintf(text, sizeof text, "{\"name\":%s}", json_value);
    if (f->doc)
        yajl_tree_free(f->doc);
    http_resp_free(&f->rs);
    http_resp_init(&f->rs);
    f->doc = json_parse(text, strlen(text), err, sizeof err);
    assert_non_null(f->doc);
    return f->doc;
}

static bool line_text(fixture *f, const char *json_value, size_t max_chars)
{
    const char *out = NULL;
    return v_line_text(&f->rs, doc(f, json_value), "name", "display_name", 0, max_chars, true,
                       &out);
}

static void assert_invalid_field(fixture *f, const char *field)
{
    char want[160];
    assert_int_equal(f->rs.status, 400);
    assert_non_null(strstr(f->rs.body.data, "\"code\":\"invalid_field\""));
    snprintf(want, sizeof want, "\"field\":\"%s\"", field);
    assert_non_null(strstr(f->rs.body.data, want));
}

static void test_line_text_takes_one_line_of_any_script(void **state)
{
    fixture *f = *state;
    assert_true(line_text(f, "\"\"", 200));
    assert_true(line_text(f, "\"Anna Berg\"", 200));
    assert_true(line_text(f, "\"Zo\\u00eb \\u5c71\\u7530 \\ud83d\\udd25\"", 200));
    /* 200 characters of two bytes each: counted in characters, not bytes */
    char v[1300];
    size_t n = (size_t)snprintf(v, sizeof v, "\"");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(v + n, sizeof v - n, "\\u00e9");
    snprintf(v + n, sizeof v - n, "\"");
    assert_true(line_text(f, v, 200));
    snprintf(v + n, sizeof v - n, "x\""); /* 201 characters */
    assert_false(line_text(f, v, 200));
    assert_invalid_field(f, "display_name");
}

static void test_line_text_refuses_controls_and_line_breaks(void **state)
{
    fixture *f = *state;
    static const char *const bad[] = {
        "\"a\\tb\"",     "\"a\\rb\"",     "\"a\\nb\"",     "\"a\\u001bb\"", "\"a\\u007fb\"",
        "\"a\\u0085b\"", "\"a\\u009fb\"", "\"a\\u2028b\"", "\"a\\u2029b\"", NULL};
    for (const char *const *b = bad; *b; b++) {
        assert_false(line_text(f, *b, 200));
        assert_invalid_field(f, "display_name");
    }
    assert_true(line_text(f, "\"a\\u00a0b\\u2027\\u202fc\"", 200)); /* neighbours are fine */
    assert_false(line_text(f, "42", 200));
    assert_invalid_field(f, "display_name");
}

static void test_timezone_refuses_pseudo_zones(void **state)
{
    fixture *f = *state;
    /* sorted as app_timezone_known expects (strcmp order) */
    char *zones[] = {"America/New_York", "Europe/Berlin", "Factory",   "UTC",
                     "localtime",        "posix/Factory", "posixrules"};
    app a;
    memset(&a, 0, sizeof a);
    a.timezones = zones;
    a.ntimezones = sizeof zones / sizeof zones[0];
    assert_true(v_timezone(&f->rs, &a, "Europe/Berlin", "timezone"));
    assert_true(v_timezone(&f->rs, &a, "UTC", "timezone"));
    static const char *const refused[] = {"localtime",     "Factory",      "posixrules",
                                          "posix/Factory", "Mars/Olympus", NULL};
    for (const char *const *z = refused; *z; z++) {
        http_resp_free(&f->rs);
        http_resp_init(&f->rs);
        assert_false(v_timezone(&f->rs, &a, *z, "timezone"));
        assert_invalid_field(f, "timezone");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_text_takes_one_line_of_any_script, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_text_refuses_controls_and_line_breaks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_timezone_refuses_pseudo_zones, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
