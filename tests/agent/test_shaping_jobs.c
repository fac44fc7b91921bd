/* Unit tests for per-host shaping (concurrency cap, connect rate, backoff, circuit
 * breaker open/half-open/close) and for lease JSON validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "buf.h"
#include "agent_wire.h"
#include "shaping.h"
#include "smtp_session.h"

#include <stdio.h>
#include <string.h>

static void test_concurrency_cap_and_connect_rate(void **state)
{
    (void)state;
    shaping_cfg c;
    shaping_cfg_defaults(&c);
    c.max_conns = 2;
    c.conns_per_min = 60; /* one a second, burst 10 */
    host_shaper h;
    host_shaper_init(&h, &c, 0);
    assert_int_equal(host_shaper_acquire(&h, &c, 0), SHAPER_GO);
    assert_int_equal(host_shaper_acquire(&h, &c, 0), SHAPER_GO);
    assert_int_equal(host_shaper_acquire(&h, &c, 0), SHAPER_FULL);
    host_shaper_release(&h, &c, true, 0);
    assert_int_equal(host_shaper_acquire(&h, &c, 0), SHAPER_GO);

    c.max_conns = 1000;
    host_shaper_init(&h, &c, 0);
    int went = 0;
    while (host_shaper_acquire(&h, &c, 0) == SHAPER_GO)
        went++;
    assert_int_equal(went, 10);
    int64_t wait = host_shaper_acquire(&h, &c, 0);
    assert_true(wait > 0 && wait <= 1001);
    assert_int_equal(host_shaper_acquire(&h, &c, 1001), SHAPER_GO);
}

static void test_backoff_doubles_and_is_capped(void **state)
{
    (void)state;
    shaping_cfg c;
    shaping_cfg_defaults(&c);
    c.backoff_base_ms = 1000;
    c.backoff_max_ms = 5000;
    assert_int_equal(backoff_delay_ms(&c, 1, 0.5), 1000);
    assert_int_equal(backoff_delay_ms(&c, 2, 0.5), 2000);
    assert_int_equal(backoff_delay_ms(&c, 3, 0.5), 4000);
    assert_int_equal(backoff_delay_ms(&c, 4, 0.5), 5000);
    assert_int_equal(backoff_delay_ms(&c, 40, 0.5), 5000);
    assert_int_equal(backoff_delay_ms(&c, 1, 0.0), 800);
    assert_true(backoff_delay_ms(&c, 1, 0.9999) < 1200);
}

static void test_breaker_opens_probes_and_closes(void **state)
{
    (void)state;
    shaping_cfg c;
    shaping_cfg_defaults(&c);
    c.breaker_threshold = 3;
    c.breaker_cooldown_ms = 1000;
    c.breaker_cooldown_max_ms = 3000;
    c.conns_per_min = 1000000;
    host_shaper h;
    host_shaper_init(&h, &c, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(host_shaper_acquire(&h, &c, 0), SHAPER_GO);
        host_shaper_release(&h, &c, false, 0);
    }
    assert_int_equal(h.breaker, BREAKER_OPEN);
    assert_int_equal(host_shaper_acquire(&h, &c, 10), 990);
    /* after the cooldown one probe goes, a second waits for its verdict */
    assert_int_equal(host_shaper_acquire(&h, &c, 1000), SHAPER_GO);
    assert_int_equal(h.breaker, BREAKER_HALF_OPEN);
    assert_int_equal(host_shaper_acquire(&h, &c, 1000), SHAPER_FULL);
    /* failed probe: open again for twice as long */
    host_shaper_release(&h, &c, false, 1000);
    assert_int_equal(h.breaker, BREAKER_OPEN);
    assert_int_equal(host_shaper_acquire(&h, &c, 1000), 2000);
    assert_int_equal(host_shaper_acquire(&h, &c, 3000), SHAPER_GO);
    host_shaper_release(&h, &c, false, 3000);
    assert_int_equal(host_shaper_acquire(&h, &c, 3000), 3000); /* capped */
    /* a good probe closes it */
    assert_int_equal(host_shaper_acquire(&h, &c, 6000), SHAPER_GO);
    host_shaper_release(&h, &c, true, 6000);
    assert_int_equal(h.breaker, BREAKER_CLOSED);
    assert_int_equal(host_shaper_acquire(&h, &c, 6000), SHAPER_GO);
}

/* a host that asked for less ([THROTTLED]): nothing starts before the pause ends, a
 * shorter pause does not cut a longer one, and the pause ends by itself */
static void test_pause_holds_new_connections(void **state)
{
    (void)state;
    shaping_cfg c;
    shaping_cfg_defaults(&c);
    c.conns_per_min = 1000000;
    host_shaper h;
    host_shaper_init(&h, &c, 0);
    host_shaper_pause(&h, 5000);
    host_shaper_pause(&h, 2000);
    assert_int_equal(host_shaper_acquire(&h, &c, 1000), 4000);
    assert_int_equal(h.active, 0);
    assert_int_equal(host_shaper_acquire(&h, &c, 5000), SHAPER_GO);
    assert_int_equal(h.breaker, BREAKER_CLOSED);
}

static const char *GOOD =
    "{\"lease_id\":\"L1\",\"ttl_s\":600,\"mailboxes\":[{\"id\":12,\"address\":\"anna@acme.test\","
    "\"display_name\":\"Anna\",\"smtp\":{\"host\":\"127.0.0.1\",\"port\":2525,\"security\":"
    "\"starttls\",\"username\":\"anna@acme.test\",\"password\":\"pw\",\"oauth_token\":null,"
    "\"ca_file\":null},\"sends\":[{\"id\":9001,\"not_before_s\":0,\"to\":\"bob@other.test\","
    "\"subject\":\"s\",\"body\":\"b\",\"message_id\":\"<m@acme.test>\"}]}]}";

static void test_lease_json_parses(void **state)
{
    (void)state;
    wire_lease *l;
    char err[256];
    assert_int_equal(wire_lease_parse(GOOD, strlen(GOOD), &l, err, sizeof err), 0);
    assert_string_equal(l->lease_id, "L1");
    assert_int_equal(l->ttl_s, 600);
    assert_int_equal(l->nmailboxes, 1);
    job_mailbox *m = l->mailboxes[0];
    assert_int_equal(m->id, 12);
    assert_int_equal(m->port, 2525);
    assert_int_equal(m->security, SMTP_SEC_STARTTLS);
    assert_string_equal(m->password, "pw");
    assert_null(m->ca_file);
    assert_int_equal(m->nsends, 1);
    assert_int_equal(m->sends[0].id, 9001);
    assert_string_equal(m->sends[0].message_id, "<m@acme.test>");
    wire_lease_free(l);
}

static void expect_rejected(const char *json, const char *field)
{
    wire_lease *l = NULL;
    char err[256] = "";
    if (wire_lease_parse(json, strlen(json), &l, err, sizeof err) == 0)
        fail_msg("accepted bad input %s", json);
    if (!strstr(err, field))
        fail_msg("error [%s] does not name [%s]", err, field);
    assert_null(l);
}

/* A fault inside the only mailbox entry: the lease parses, the entry is set aside
 * with a reason naming the field. */
static void expect_mailbox_rejected(const char *json, const char *field)
{
    wire_lease *l = NULL;
    char err[256] = "";
    if (wire_lease_parse(json, strlen(json), &l, err, sizeof err) != 0)
        fail_msg("the whole lease was rejected (%s) for a fault of one mailbox: %s", err, json);
    if (l->nmailboxes != 0 || l->nrejected != 1)
        fail_msg("expected 0 mailboxes and 1 rejected, got %zu and %zu: %s", l->nmailboxes,
                 l->nrejected, json);
    if (!strstr(l->rejected[0].reason, field))
        fail_msg("reason [%s] does not name [%s]", l->rejected[0].reason, field);
    wire_lease_free(l);
}

static void test_bad_lease_json_is_rejected_with_the_field_named(void **state)
{
    (void)state;
    expect_rejected("", "malformed");
    expect_rejected("[1]", "top level");
    expect_rejected("{\"mailboxes\":3}", "mailboxes");
    expect_rejected("{\"ttl_s\":-5,\"mailboxes\":[]}", "ttl_s");
    expect_mailbox_rejected("{\"mailboxes\":[{\"id\":\"x\"}]}", "mailboxes[0].id");
    expect_mailbox_rejected(
        "{\"mailboxes\":[{\"id\":1,\"address\":\"a@b\",\"smtp\":{\"host\":\"h\","
        "\"port\":70000,\"security\":\"plain\"},\"sends\":[]}]}",
        "smtp.port");
    expect_mailbox_rejected(
        "{\"mailboxes\":[{\"id\":1,\"address\":\"a@b\",\"smtp\":{\"host\":\"h\","
        "\"port\":25,\"security\":\"ssl\"},\"sends\":[]}]}",
        "smtp.security");
    expect_mailbox_rejected(
        "{\"mailboxes\":[{\"id\":1,\"address\":\"a@b\",\"smtp\":{\"host\":\"h\","
        "\"port\":25,\"security\":\"plain\"},\"sends\":[{\"id\":1,\"to\":"
        "\"x@y>\\r\\nRCPT TO:<z@w\",\"subject\":\"s\",\"body\":\"b\"}]}]}",
        "sends[0].to");
    expect_mailbox_rejected("{\"mailboxes\":[{\"id\":1,\"address\":\"a b@c\",\"smtp\":{}}]}",
                            "address");
    expect_mailbox_rejected(
        "{\"mailboxes\":[{\"id\":1,\"address\":\"a@b\",\"smtp\":{\"host\":\"h\","
        "\"port\":25,\"security\":\"plain\"},\"sends\":[{\"id\":1,\"to\":\"x@y\","
        "\"subject\":\"s\\nBcc: e@v\",\"body\":\"b\"}]}]}",
        "subject");
}

/* Streaming parse: key order is free, unknown keys (with nested values) are skipped,
 * nulls keep defaults, and the arrays grow past their first allocation. */
static void test_lease_json_order_unknown_keys_and_growth(void **state)
{
    (void)state;
    buf j = BUF_INIT;
    buf_puts(&j, "{\"extra\":{\"a\":[1,{\"mailboxes\":5}],\"b\":null},\"mailboxes\":[");
    for (int i = 1; i <= 150; i++) {
        buf_printf(&j, "%s{\"sends\":[", i > 1 ? "," : "");
        for (int k = 1; k <= 6; k++)
            buf_printf(&j,
                       "%s{\"body\":\"b%d\",\"future\":[[],{}],\"to\":\"r%d@x.test\","
                       "\"subject\":\"s\",\"id\":%d,\"not_before_s\":null}",
                       k > 1 ? "," : "", k, k, i * 10 + k);
        buf_printf(&j,
                   "],\"smtp\":{\"security\":\"tls\",\"port\":465,\"host\":\"h%d\","
                   "\"password\":\"old\",\"password\":\"new\"},\"address\":\"m%d@a.test\","
                   "\"id\":%d,\"display_name\":null}",
                   i, i, i);
    }
    buf_puts(&j, "],\"ttl_s\":90,\"lease_id\":\"Z\",\"retry_after_s\":3}");
    wire_lease *l = NULL;
    char err[256] = "";
    if (wire_lease_parse(j.data, j.len, &l, err, sizeof err) != 0)
        fail_msg("rejected: %s", err);
    assert_string_equal(l->lease_id, "Z");
    assert_int_equal(l->ttl_s, 90);
    assert_int_equal(l->nmailboxes, 150);
    job_mailbox *m = l->mailboxes[149];
    assert_int_equal(m->id, 150);
    assert_string_equal(m->address, "m150@a.test");
    assert_null(m->display_name);
    assert_string_equal(m->host, "h150");
    assert_int_equal(m->port, 465);
    assert_int_equal(m->security, SMTP_SEC_TLS);
    assert_string_equal(m->password, "new"); /* the last duplicate counts */
    assert_int_equal(m->nsends, 6);
    assert_int_equal(m->sends[5].id, 1506);
    assert_string_equal(m->sends[5].to, "r6@x.test");
    assert_string_equal(m->sends[5].body, "b6");
    assert_int_equal(m->sends[5].not_before_s, 0);
    assert_null(m->sends[5].message_id);
    wire_lease_free(l);
    /* the defaults: ttl 600 and an empty mailbox list */
    assert_int_equal(wire_lease_parse("{\"mailboxes\":[]}", 16, &l, err, sizeof err), 0);
    assert_int_equal(l->ttl_s, 600);
    assert_int_equal(l->nmailboxes, 0);
    assert_null(l->lease_id);
    wire_lease_free(l);
    buf_free(&j);
}

#define MB(smtp, sends)                                                                            \
    "{\"mailboxes\":[{\"id\":1,\"address\":\"a@b\",\"smtp\":" smtp ",\"sends\":" sends "}]}"
#define SMTP_OK "{\"host\":\"h\",\"port\":25,\"security\":\"plain\"}"

static void test_lease_json_types_and_required_fields(void **state)
{
    (void)state;
    expect_rejected("5", "top level");
    expect_rejected("{}", "mailboxes");
    expect_rejected("{\"mailboxes\":[]} {}", "malformed");
    expect_rejected("{\"mailboxes\":[], \"ttl_s\": 1.5}", "ttl_s");
    expect_mailbox_rejected("{\"mailboxes\":[7]}", "mailboxes[0]: must be an object");
    expect_mailbox_rejected("{\"mailboxes\":[{\"id\":1}]}", "mailboxes[0].address");
    expect_mailbox_rejected("{\"mailboxes\":[{\"id\":1,\"address\":\"a@b\",\"sends\":[]}]}",
                            "mailboxes[0].smtp: missing");
    expect_mailbox_rejected("{\"mailboxes\":[{\"id\":1,\"address\":\"a@b\",\"smtp\":" SMTP_OK "}]}",
                            "mailboxes[0].sends: missing");
    expect_mailbox_rejected(MB("{\"port\":25,\"security\":\"plain\"}", "[]"), "smtp.host: missing");
    expect_mailbox_rejected(MB("{\"host\":\"h\",\"security\":\"plain\"}", "[]"), "smtp.port");
    expect_mailbox_rejected(MB("{\"host\":\"h\",\"port\":25}", "[]"), "smtp.security: missing");
    expect_mailbox_rejected(MB("{\"host\":\"h\",\"port\":\"25\",\"security\":\"plain\"}", "[]"),
                            "smtp.port");
    expect_mailbox_rejected(MB("[]", "[]"), "mailboxes[0].smtp");
    expect_mailbox_rejected(MB(SMTP_OK, "{}"), "mailboxes[0].sends");
    expect_mailbox_rejected(MB(SMTP_OK, "[true]"), "mailboxes[0].sends[0]: must be an object");
    expect_mailbox_rejected(MB(SMTP_OK, "[{\"id\":1,\"to\":\"x@y\",\"subject\":\"s\"}]"),
                            "sends[0].body: missing");
    expect_mailbox_rejected(MB(SMTP_OK, "[{\"to\":\"x@y\",\"subject\":\"s\",\"body\":\"b\"}]"),
                            "sends[0].id");
    expect_mailbox_rejected(
        MB(SMTP_OK, "[{\"id\":0,\"to\":\"x@y\",\"subject\":\"s\",\"body\":\"b\"}]"), "sends[0].id");
    expect_mailbox_rejected(MB(SMTP_OK,
                               "[{\"id\":1,\"to\":\"x@y\",\"subject\":\"s\",\"body\":\"b\","
                               "\"not_before_s\":604801}]"),
                            "sends[0].not_before_s");
    expect_mailbox_rejected(MB(SMTP_OK,
                               "[{\"id\":1,\"to\":\"x@y\",\"subject\":\"s\",\"body\":\"b\","
                               "\"message_id\":\"no-brackets\"}]"),
                            "sends[0].message_id");
    expect_mailbox_rejected(MB(SMTP_OK,
                               "[{\"id\":1,\"to\":\"x@y\",\"subject\":\"s\",\"body\":\"b\","
                               "\"message_id\":\"<caf\u00e9@b>\"}]"),
                            "sends[0].message_id");
    expect_mailbox_rejected(
        MB(SMTP_OK, "[{\"id\":1,\"to\":\"x@y\",\"subject\":\"s\",\"body\":\"b\\u0000c\"}]"),
        "sends[0].body: contains a NUL");
    expect_mailbox_rejected(
        MB("{\"host\":\"h\",\"port\":25,\"security\":\"plain\",\"password\":\"a\\nb\"}", "[]"),
        "credentials");
    expect_rejected("{\"mailboxes\":[],\"lease_id\":\"\xff\"}", "UTF-8");
}

/* Issue 10: one mailbox with a bad field (invalid UTF-8 in a password, an escaped lone
 * surrogate, a port out of range, a value of the wrong shape) is set aside with its
 * slot ids and a reason naming the field; the mailboxes around it are kept. */
static void test_one_bad_mailbox_does_not_poison_the_lease(void **state)
{
    (void)state;
    const char *json =
        "{\"lease_id\":\"L\",\"ttl_s\":60,\"mailboxes\":["
        "{\"id\":1,\"address\":\"a@b.test\",\"smtp\":" SMTP_OK ",\"sends\":[{\"id\":101,"
        "\"to\":\"x@y.test\",\"subject\":\"s\",\"body\":\"b\"}]},"
        "{\"id\":2,\"address\":\"a@b.test\",\"smtp\":{\"host\":\"h\",\"port\":25,\"security\":"
        "\"plain\",\"username\":\"u\",\"password\":\"p\xff\xfeq\"},\"sends\":[{\"id\":201,"
        "\"to\":\"x@y.test\",\"subject\":\"s\",\"body\":\"b\"},{\"id\":202,\"to\":\"x@y.test\","
        "\"subject\":\"s\",\"body\":\"b\"}]},"
        "{\"id\":3,\"address\":\"a@b.test\",\"smtp\":{\"host\":\"h\",\"port\":25,\"security\":"
        "\"plain\",\"password\":\"\\udc00\"},\"sends\":[{\"id\":301,\"to\":\"x@y.test\","
        "\"subject\":\"s\",\"body\":\"b\"}]},"
        "{\"id\":4,\"address\":\"a@b.test\",\"smtp\":{\"host\":\"h\",\"port\":70000,"
        "\"security\":\"plain\"},\"sends\":[{\"id\":401,\"to\":\"x@y.test\",\"subject\":\"s\","
        "\"body\":\"b\"}]},"
        "{\"id\":5,\"address\":\"a@b.test\",\"display_name\":{\"deep\":[1,{\"x\":[]}]},"
        "\"smtp\":" SMTP_OK ",\"sends\":[{\"id\":501,\"to\":\"x@y.test\",\"subject\":\"s\","
        "\"body\":\"b\"},{\"to\":\"x@y.test\",\"subject\":\"s\",\"body\":\"b\"}]},"
        "[\"not\",\"an\",\"object\"],"
        "{\"id\":6,\"address\":\"c@d.test\",\"smtp\":" SMTP_OK ",\"sends\":[{\"id\":601,"
        "\"to\":\"x@y.test\",\"subject\":\"s\",\"body\":\"b\"}]}]}";
    wire_lease *l = NULL;
    char err[256] = "";
    if (wire_lease_parse(json, strlen(json), &l, err, sizeof err) != 0)
        fail_msg("one bad mailbox rejected the whole lease: %s", err);
    assert_string_equal(l->lease_id, "L");
    assert_int_equal(l->nmailboxes, 2);
    assert_int_equal(l->mailboxes[0]->id, 1);
    assert_int_equal(l->mailboxes[1]->id, 6);
    assert_int_equal(l->mailboxes[1]->sends[0].id, 601);
    assert_int_equal(l->nrejected, 5);
    const wire_rejected *r = l->rejected;
    assert_int_equal(r[0].mailbox_id, 2);
    assert_non_null(strstr(r[0].reason, "mailboxes[1].smtp.password: not valid UTF-8"));
    assert_int_equal(r[0].nsend_ids, 2);
    assert_int_equal(r[0].send_ids[0], 201);
    assert_int_equal(r[0].send_ids[1], 202);
    assert_int_equal(r[1].mailbox_id, 3);
    assert_non_null(strstr(r[1].reason, "mailboxes[2].smtp.password: not valid UTF-8"));
    assert_int_equal(r[1].nsend_ids, 1);
    assert_int_equal(r[1].send_ids[0], 301);
    assert_int_equal(r[2].mailbox_id, 4);
    assert_non_null(strstr(r[2].reason, "mailboxes[3].smtp.port"));
    assert_int_equal(r[3].mailbox_id, 5);
    assert_non_null(strstr(r[3].reason, "mailboxes[4].display_name"));
    assert_int_equal(r[3].nsend_ids, 1); /* the slot without an id cannot be named */
    assert_int_equal(r[3].send_ids[0], 501);
    assert_int_equal(r[4].mailbox_id, 0);
    assert_non_null(strstr(r[4].reason, "mailboxes[5]: must be an object"));
    assert_int_equal(r[4].nsend_ids, 0);
    wire_lease_free(l);

    /* a fault of the document itself still fails the whole lease */
    expect_rejected("{\"lease_id\":\"L\",\"ttl_s\":60,\"mailboxes\":[{\"id\":1,\"address\":"
                    "\"a@b.test\",\"smtp\":" SMTP_OK ",\"sends\":[{\"id\":101,",
                    "malformed");
    expect_rejected("{\"lease_id\":\"L\",\"mailboxes\":[{\"id\":1,\"address\":\"a\xff@b\"}]",
                    "malformed");
}

static void test_allow_plaintext_auth_is_parsed(void **state)
{
    (void)state;
    struct {
        const char *value;
        bool want;
    } cases[] = {{"true", true}, {"false", false}, {"null", false}, {NULL, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf j = BUF_INIT;
        buf_printf(&j,
                   "{\"mailboxes\":[{\"id\":1,\"address\":\"a@b\",\"smtp\":{\"host\":\"h\","
                   "\"port\":25,\"security\":\"plain\",\"username\":\"u\",\"password\":\"p\"%s%s},"
                   "\"sends\":[]}]}",
                   cases[i].value ? ",\"allow_plaintext_auth\":" : "",
                   cases[i].value ? cases[i].value : "");
        wire_lease *l = NULL;
        char err[256] = "";
        if (wire_lease_parse(j.data, j.len, &l, err, sizeof err) != 0 || l->nmailboxes != 1)
            fail_msg("allow_plaintext_auth %s: rejected (%s)", cases[i].value, err);
        assert_int_equal(l->mailboxes[0]->allow_plaintext_auth, cases[i].want);
        wire_lease_free(l);
        buf_free(&j);
    }
    expect_mailbox_rejected(MB("{\"host\":\"h\",\"port\":25,\"security\":\"plain\","
                               "\"allow_plaintext_auth\":\"yes\"}",
                               "[]"),
                            "smtp.allow_plaintext_auth: must be true, false or null");
    expect_mailbox_rejected(MB("{\"host\":\"h\",\"port\":25,\"security\":\"plain\","
                               "\"allow_plaintext_auth\":1}",
                               "[]"),
                            "smtp.allow_plaintext_auth");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrency_cap_and_connect_rate),
        cmocka_unit_test(test_backoff_doubles_and_is_capped),
        cmocka_unit_test(test_breaker_opens_probes_and_closes),
        cmocka_unit_test(test_pause_holds_new_connections),
        cmocka_unit_test(test_lease_json_parses),
        cmocka_unit_test(test_bad_lease_json_is_rejected_with_the_field_named),
        cmocka_unit_test(test_lease_json_order_unknown_keys_and_growth),
        cmocka_unit_test(test_lease_json_types_and_required_fields),
        cmocka_unit_test(test_one_bad_mailbox_does_not_poison_the_lease),
        cmocka_unit_test(test_allow_plaintext_auth_is_parsed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
