/* Unit tests of kiln-api's pure logic: field validation, e-mail and host syntax, query
 * decoding, routing to 404/405 without a database, health thresholds, histogram
 * buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app.h"
#include "db.h"
#include "pgarr.h"
#include "http.h"
#include "routes.h"
#include "stats.h"
#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    arena *pool;
    http_req rq;
    http_resp rs;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->pool = arena_create(4096);
    f->rq.pool = f->pool;
    f->rq.query = "";
    f->rq.method = "GET";
    f->rq.path = "/";
    http_resp_init(&f->rs);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    http_resp_free(&f->rs);
    arena_destroy(f->pool);
    free(f);
    return 0;
}

static yajl_val parse(fixture *f, const char *doc)
{
    f->rq.body = doc;
    f->rq.body_len = strlen(doc);
    return http_json_body(&f->rq, &f->rs);
}

static void assert_error(fixture *f, int status, const char *code, const char *field)
{
    assert_int_equal(f->rs.status, status);
    char want[200];
    snprintf(want, sizeof want, "\"code\":\"%s\"", code);
    assert_non_null(strstr(f->rs.body.data, want));
    if (field) {
        snprintf(want, sizeof want, "\"field\":\"%s\"", field);
        assert_non_null(strstr(f->rs.body.data, want));
    }
}

static void test_valid_email_accepts_dot_atoms_and_rejects_the_rest(void **state)
{
    (void)state;
    assert_true(valid_email("anna@acme.test"));
    assert_true(valid_email("first.last+tag@sub.example.com"));
    assert_false(valid_email("anna@localhost"));
    assert_false(valid_email("@acme.test"));
    assert_false(valid_email("anna.@acme.test"));
    assert_false(valid_email("an..na@acme.test"));
    assert_false(valid_email("an na@acme.test"));
    assert_false(valid_email("anna@-acme.test"));
    assert_false(valid_email("anna@acme..test"));
    char local[80];
    memset(local, 'a', 65);
    memcpy(local + 65, "@x.test", 8);
    assert_false(valid_email(local));
}

static void test_valid_host_takes_names_and_ip_literals(void **state)
{
    (void)state;
    assert_true(valid_host("smtp.acme.test"));
    assert_true(valid_host("127.0.0.1"));
    assert_true(valid_host("::1"));
    assert_false(valid_host("bad host"));
    assert_false(valid_host("-a.test"));
    assert_false(valid_host("a-.test"));
    assert_false(valid_host(""));
}

static void test_v_int_names_the_field_and_range(void **state)
{
    fixture *f = *state;
    yajl_val b = parse(f, "{\"port\":70000,\"name\":\"x\"}");
    assert_non_null(b);
    int64_t v = 0;
    assert_false(v_int(&f->rs, b, "port", "smtp.port", V_REQUIRED, 1, 65535, &v));
    assert_error(f, 400, "invalid_field", "smtp.port");
    assert_non_null(strstr(f->rs.body.data, "1 to 65535"));
}

static void test_missing_and_unknown_fields(void **state)
{
    fixture *f = *state;
    yajl_val b = parse(f, "{\"nme\":\"x\"}");
    static const char *const allowed[] = {"name", NULL};
    assert_false(v_known_fields(&f->rs, b, allowed, "smtp."));
    assert_error(f, 400, "unknown_field", "smtp.nme");
    const char *s = NULL;
    assert_false(v_str(&f->rs, b, "name", "name", V_REQUIRED, 10, false, &s));
    assert_error(f, 400, "missing_field", "name");
    /* Optional and absent: fine, output untouched. */
    s = "default";
    assert_true(v_str(&f->rs, b, "name", "name", 0, 10, false, &s));
    assert_string_equal(s, "default");
}

static void test_body_errors(void **state)
{
    fixture *f = *state;
    assert_null(parse(f, "[1]"));
    assert_error(f, 400, "not_an_object", NULL);
    assert_null(parse(f, "{\"a\":"));
    assert_error(f, 400, "malformed_json", NULL);
    assert_null(parse(f, ""));
    assert_error(f, 400, "empty_body", NULL);
    assert_null(parse(f, "{\"a\":\"\xc3\x28\"}"));
    assert_error(f, 400, "invalid_utf8", NULL);
}

static void test_query_decoding_and_validation(void **state)
{
    fixture *f = *state;
    f->rq.query = "status=behind&name=a%20b+c&flag&limit=5";
    assert_true(http_query_valid(&f->rq));
    assert_string_equal(http_query(&f->rq, "status"), "behind");
    assert_string_equal(http_query(&f->rq, "name"), "a b c");
    assert_string_equal(http_query(&f->rq, "flag"), "");
    assert_null(http_query(&f->rq, "stat"));
    f->rq.query = "a=%zz";
    assert_false(http_query_valid(&f->rq));
    f->rq.query = "a=%00";
    assert_false(http_query_valid(&f->rq));
    f->rq.query = "a=%ff";
    assert_false(http_query_valid(&f->rq));
    f->rq.query = "a=%4";
    assert_false(http_query_valid(&f->rq));
}

static void test_pagination_parameters(void **state)
{
    fixture *f = *state;
    int64_t limit, cursor;
    f->rq.query = "limit=20&cursor=41";
    assert_true(v_page(&f->rq, &f->rs, 100, 1000, &limit, &cursor));
    assert_int_equal(limit, 20);
    assert_int_equal(cursor, 41);
    f->rq.query = "";
    assert_true(v_page(&f->rq, &f->rs, 100, 1000, &limit, &cursor));
    assert_int_equal(limit, 100);
    assert_int_equal(cursor, 0);
    f->rq.query = "limit=1001";
    assert_false(v_page(&f->rq, &f->rs, 100, 1000, &limit, &cursor));
    assert_error(f, 400, "invalid_query", "limit");
}

static void test_router_404_and_405_need_no_database(void **state)
{
    fixture *f = *state;
    f->rq.method = "GET";
    f->rq.path = "/api/nothing";
    router_dispatch(&routes_api, &f->rq, &f->rs);
    assert_error(f, 404, "not_found", NULL);
    http_resp_free(&f->rs);
    http_resp_init(&f->rs);
    f->rq.method = "PUT";
    f->rq.path = "/api/mailboxes/12";
    router_dispatch(&routes_api, &f->rq, &f->rs);
    assert_error(f, 405, "method_not_allowed", NULL);
    assert_non_null(strstr(f->rs.headers.data, "Allow: GET, HEAD, PATCH, DELETE"));
}

static void test_health_thresholds_against_due_by_now(void **state)
{
    (void)state;
    stats_snapshot s = {0};
    char reasons[HEALTH_MAX_REASONS][160];
    int n;
    double completion, failure;
    s.service_running = true;
    s.agents_active = 1;
    s.due_now = 100;
    s.sent_today = s.sent_active = 96;
    assert_int_equal(stats_health(&s, reasons, &n, &completion, &failure), HEALTH_HEALTHY);
    s.sent_today = s.sent_active = 79;
    assert_int_equal(stats_health(&s, reasons, &n, &completion, &failure), HEALTH_DEGRADED);
    s.sent_today = s.sent_active = 49;
    assert_int_equal(stats_health(&s, reasons, &n, &completion, &failure), HEALTH_CRITICAL);
    /* what mailboxes paused or in error since they sent add to sent_today is not weighed
     * against what the active ones owe */
    s.sent_today = 96;
    assert_int_equal(stats_health(&s, reasons, &n, &completion, &failure), HEALTH_CRITICAL);
    assert_true(completion == 0.49);
    s.sent_today = s.sent_active = 95;
    s.failed_today = 6; /* 6 of 101: 5.9 % */
    assert_int_equal(stats_health(&s, reasons, &n, &completion, &failure), HEALTH_DEGRADED);
    s.failed_today = 12; /* 11.2 % */
    assert_int_equal(stats_health(&s, reasons, &n, &completion, &failure), HEALTH_CRITICAL);
    s.failed_today = 0;
    s.agents_active = 0;
    assert_int_equal(stats_health(&s, reasons, &n, &completion, &failure), HEALTH_DEGRADED);
    assert_non_null(strstr(reasons[0], "no active agent"));
    s.due_now = 0; /* before any window opens nothing is due: healthy */
    s.sent_today = s.sent_active = 0;
    assert_int_equal(stats_health(&s, reasons, &n, &completion, &failure), HEALTH_HEALTHY);
    assert_true(completion == 1.0);
}

static void test_histogram_buckets(void **state)
{
    (void)state;
    assert_int_equal(histogram_bucket(send_latency_buckets, SEND_LATENCY_BUCKETS, 0.01), 0);
    assert_int_equal(histogram_bucket(send_latency_buckets, SEND_LATENCY_BUCKETS, 0.1), 1);
    assert_int_equal(histogram_bucket(send_latency_buckets, SEND_LATENCY_BUCKETS, 0.11), 2);
    assert_int_equal(histogram_bucket(send_latency_buckets, SEND_LATENCY_BUCKETS, 1e9),
                     SEND_LATENCY_BUCKETS);
}

/* KILN_HEALTH_*: the defaults, one override, and a bad value named in the error. */
static void test_health_thresholds_from_the_environment(void **state)
{
    (void)state;
    app_config cfg;
    char err[256];
    assert_int_equal(app_config_load(&cfg, err, sizeof err), 0);
    assert_true(cfg.health.watch_junk == 0.10 && cfg.health.pause_junk == 0.40);
    assert_int_equal(cfg.health_quarantine_days, 3);
    setenv("KILN_HEALTH_WATCH_JUNK", "0.15", 1);
    assert_int_equal(app_config_load(&cfg, err, sizeof err), 0);
    assert_true(cfg.health.watch_junk == 0.15);
    setenv("KILN_HEALTH_WATCH_JUNK", "0.5", 1); /* above the quarantine threshold */
    assert_int_equal(app_config_load(&cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "KILN_HEALTH_QUARANTINE_JUNK"));
    setenv("KILN_HEALTH_WATCH_JUNK", "ten", 1);
    assert_int_equal(app_config_load(&cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "KILN_HEALTH_WATCH_JUNK"));
    /* empty is unset, as for every KILN_* variable: the default, not a refusal */
    setenv("KILN_HEALTH_WATCH_JUNK", "", 1);
    assert_int_equal(app_config_load(&cfg, err, sizeof err), 0);
    assert_true(cfg.health.watch_junk == 0.10);
    unsetenv("KILN_HEALTH_WATCH_JUNK");
    setenv("KILN_HEALTH_QUARANTINE_DAYS", "0", 1);
    assert_int_equal(app_config_load(&cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "KILN_HEALTH_QUARANTINE_DAYS"));
    unsetenv("KILN_HEALTH_QUARANTINE_DAYS");
}

/* KILN_LOG_LEVEL: a level kiln-api cannot read stops it with the variable named; it
 * used to log at info without a word. Empty is unset (info). */
static void test_log_level_refused_when_unknown(void **state)
{
    (void)state;
    app_config cfg;
    char err[256];
    setenv("KILN_LOG_LEVEL", "verbose", 1);
    assert_int_equal(app_config_load(&cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "KILN_LOG_LEVEL=verbose"));
    setenv("KILN_LOG_LEVEL", "warn", 1);
    assert_int_equal(app_config_load(&cfg, err, sizeof err), 0);
    setenv("KILN_LOG_LEVEL", "", 1);
    assert_int_equal(app_config_load(&cfg, err, sizeof err), 0);
    unsetenv("KILN_LOG_LEVEL");
}

/* db_i64 reads PostgreSQL's text of an integer as strtoll does, past its fast path's
 * 18 digits too; pgarr_str quotes and escapes an element as an array literal wants. */
static void test_db_i64_and_pgarr_text(void **state)
{
    (void)state;
    static const char *const texts[] = {"0",
                                        "7",
                                        "-7",
                                        "123456789012345678",
                                        "-123456789012345678",
                                        "1234567890123456789",
                                        "9223372036854775807",
                                        "-9223372036854775808",
                                        "-",
                                        "12x",
                                        ""};
    size_t n = sizeof texts / sizeof texts[0];
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc col = {.name = (char *)"v", .typid = 20, .typlen = 8, .atttypmod = -1};
    assert_true(PQsetResultAttrs(r, 1, &col));
    for (size_t i = 0; i < n; i++)
        assert_true(PQsetvalue(r, (int)i, 0, (char *)texts[i], (int)strlen(texts[i])));
    assert_true(PQsetvalue(r, (int)n, 0, NULL, -1)); /* NULL reads 0 */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(db_i64(r, (int)i, 0), strtoll(texts[i], NULL, 10));
    assert_int_equal(db_i64(r, (int)n, 0), 0);
    PQclear(r);

    arena *a = arena_create(256);
    assert_string_equal(db_i64_text(a, INT64_MIN), "-9223372036854775808");
    pgarr p;
    pgarr_open(&p);
    pgarr_str(&p, "plain");
    pgarr_str(&p, "a\"b\\c\"");
    pgarr_str(&p, "");
    pgarr_str(&p, NULL);
    pgarr_i64(&p, -5);
    assert_string_equal(pgarr_done(&p, a), "{\"plain\",\"a\\\"b\\\\c\\\"\",\"\",NULL,-5}");
    arena_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_email_accepts_dot_atoms_and_rejects_the_rest),
        cmocka_unit_test(test_db_i64_and_pgarr_text),
        cmocka_unit_test(test_health_thresholds_from_the_environment),
        cmocka_unit_test(test_log_level_refused_when_unknown),
        cmocka_unit_test(test_valid_host_takes_names_and_ip_literals),
        cmocka_unit_test_setup_teardown(test_v_int_names_the_field_and_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_unknown_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_decoding_and_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pagination_parameters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_router_404_and_405_need_no_database, setup, teardown),
        cmocka_unit_test(test_health_thresholds_against_due_by_now),
        cmocka_unit_test(test_histogram_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
