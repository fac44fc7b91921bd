/* Unit tests for the agent's wire module (agent/lease/agent_wire.c) beyond the lease document
 * itself (test_shaping_jobs.c): the lease answer read in one pass (work, the empty
 * answer with retry_after_s/service, unusable), the heartbeat and error answers, and
 * every request body byte for byte; a reply slot's in_reply_to and references (msg-ids,
 * at most 20; a bad one sets that mailbox entry aside, the rest of the lease stands). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "buf.h"
#include "agent_wire.h"

#include <stdio.h>
#include <string.h>

static wire_lease_answer answer(const char *json)
{
    wire_lease_answer a;
    wire_lease_answer_parse(json, strlen(json), &a);
    return a;
}

static void test_lease_answer_with_work(void **state)
{
    (void)state;
    wire_lease_answer a = answer(
        "{\"lease_id\":\"L1\",\"ttl_s\":60,\"mailboxes\":[{\"id\":1,\"address\":\"a@b.test\","
        "\"smtp\":{\"host\":\"h\",\"port\":25,\"security\":\"plain\"},\"sends\":[{\"id\":2,"
        "\"to\":\"c@d.test\",\"subject\":\"s\",\"body\":\"b\"}]}],\"service\":7}");
    assert_int_equal(a.kind, WIRE_LEASE_WORK);
    assert_non_null(a.lease);
    assert_string_equal(a.lease->lease_id, "L1");
    assert_int_equal(a.lease->ttl_s, 60);
    assert_int_equal(a.lease->nmailboxes, 1);
    wire_lease_free(a.lease);
}

static void test_empty_lease_answer_is_read_in_one_pass(void **state)
{
    (void)state;
    wire_lease_answer a = answer("{\"lease_id\":null,\"ttl_s\":600,\"mailboxes\":[],"
                                 "\"retry_after_s\":7,\"service\":\"stopped\"}");
    assert_int_equal(a.kind, WIRE_LEASE_EMPTY);
    assert_null(a.lease);
    assert_int_equal(a.retry_after_s, 7);
    assert_true(a.has_service);
    assert_string_equal(a.service, "stopped");

    /* no retry_after_s, or one of another type or out of range: 5 s */
    a = answer("{\"lease_id\":null,\"mailboxes\":[]}");
    assert_int_equal(a.kind, WIRE_LEASE_EMPTY);
    assert_int_equal(a.retry_after_s, 5);
    assert_false(a.has_service);
    a = answer("{\"lease_id\":null,\"mailboxes\":[],\"retry_after_s\":\"7\",\"service\":[1]}");
    assert_int_equal(a.kind, WIRE_LEASE_EMPTY);
    assert_int_equal(a.retry_after_s, 5);
    assert_false(a.has_service);
    a = answer("{\"lease_id\":null,\"mailboxes\":[],\"retry_after_s\":86401}");
    assert_int_equal(a.retry_after_s, 5);

    /* lease_id null: empty whatever else is wrong in the lease's own fields */
    a = answer("{\"ttl_s\":\"x\",\"lease_id\":null,\"retry_after_s\":9}");
    assert_int_equal(a.kind, WIRE_LEASE_EMPTY);
    assert_int_equal(a.retry_after_s, 9);

    /* a lease id without entries: nothing to send either */
    a = answer("{\"lease_id\":\"L2\",\"ttl_s\":60,\"mailboxes\":[],\"retry_after_s\":3}");
    assert_int_equal(a.kind, WIRE_LEASE_EMPTY);
    assert_int_equal(a.retry_after_s, 3);
}

static void test_unusable_lease_answers_say_why(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "not json",
        "[1]",
        "{\"mailboxes\":[]}",                                /* no lease_id */
        "{\"lease_id\":\"L\",\"ttl_s\":0,\"mailboxes\":[]}", /* a bad lease field */
        "{\"lease_id\":5,\"mailboxes\":[]}",
        "{\"lease_id\":null,\"mailboxes\":[]", /* truncated */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wire_lease_answer a = answer(bad[i]);
        if (a.kind != WIRE_LEASE_UNUSABLE || a.lease || !a.error[0])
            fail_msg("[%s]: kind %d, error [%s]; expected unusable with a reason", bad[i],
                     (int)a.kind, a.error);
    }
    wire_lease_answer a = answer("{\"lease_id\":\"L\",\"ttl_s\":0,\"mailboxes\":[]}");
    assert_non_null(strstr(a.error, "ttl_s"));
}

static void test_lease_field_fault_keeps_the_first_reason(void **state)
{
    (void)state;
    wire_lease *l = NULL;
    char err[256];
    const char *json = "{\"ttl_s\":0,\"lease_id\":7,\"mailboxes\":[]} junk";
    assert_int_equal(wire_lease_parse(json, strlen(json), &l, err, sizeof err), -1);
    assert_null(l);
    assert_non_null(strstr(err, "ttl_s"));
}

/* A lease of two mailboxes: entry 1 carries the reply slot built from send_extra, entry 2
 * is a plain one that must survive whatever entry 1 holds. */
static wire_lease *reply_lease(const char *send_extra)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"lease_id\":\"L\",\"ttl_s\":60,\"mailboxes\":["
             "{\"id\":1,\"address\":\"a@b.test\",\"smtp\":{\"host\":\"h\",\"port\":25,"
             "\"security\":\"plain\"},\"sends\":[{\"id\":2,\"to\":\"c@d.test\","
             "\"subject\":\"Re: s\",\"body\":\"b\"%s}]},"
             "{\"id\":3,\"address\":\"e@f.test\",\"smtp\":{\"host\":\"h\",\"port\":25,"
             "\"security\":\"plain\"},\"sends\":[{\"id\":4,\"to\":\"c@d.test\","
             "\"subject\":\"s\",\"body\":\"b\"}]}]}",
             send_extra);
    wire_lease *l = NULL;
    char err[256] = "";
    if (wire_lease_parse(json, strlen(json), &l, err, sizeof err) != 0)
        fail_msg("lease with [%s] refused whole: %s", send_extra, err);
    return l;
}

static void test_reply_slot_threading_is_parsed(void **state)
{
    (void)state;
    wire_lease *l = reply_lease(",\"in_reply_to\":\"<2.1ab@x.test>\",\"references\":["
                                "\"<1.1cd@y.test>\",\"<2.1ab@x.test>\"]");
    assert_int_equal(l->nmailboxes, 2);
    assert_int_equal(l->nrejected, 0);
    const job_send *js = &l->mailboxes[0]->sends[0];
    assert_string_equal(js->in_reply_to, "<2.1ab@x.test>");
    assert_int_equal(js->nreferences, 2);
    assert_string_equal(js->references[0], "<1.1cd@y.test>");
    assert_string_equal(js->references[1], "<2.1ab@x.test>");
    assert_null(l->mailboxes[1]->sends[0].in_reply_to);
    wire_lease_free(l);
    /* null is no threading */
    l = reply_lease(",\"in_reply_to\":null,\"references\":null");
    assert_int_equal(l->nmailboxes, 2);
    assert_null(l->mailboxes[0]->sends[0].in_reply_to);
    assert_int_equal(l->mailboxes[0]->sends[0].nreferences, 0);
    wire_lease_free(l);
}

static void test_bad_reply_threading_sets_the_entry_aside(void **state)
{
    (void)state;
    char twenty_one[2048] = ",\"in_reply_to\":\"<r0@x.test>\",\"references\":[";
    for (int i = 0; i < 21; i++) {
        char one[32];
        snprintf(one, sizeof one, "%s\"<r%d@x.test>\"", i ? "," : "", i);
        strncat(twenty_one, one, sizeof twenty_one - strlen(twenty_one) - 1);
    }
    strncat(twenty_one, "]", sizeof twenty_one - strlen(twenty_one) - 1);
    const struct {
        const char *extra, *reason;
    } cases[] = {
        {",\"in_reply_to\":\"no-brackets@x\",\"references\":[\"<a@b>\"]", "in_reply_to"},
        {",\"in_reply_to\":\"<a@b>\\r\\nBcc: e@x\",\"references\":[\"<a@b>\"]", "in_reply_to"},
        {",\"in_reply_to\":\"<a@b>\",\"references\":[\"<a@b>\",\"<bad id@b>\"]", "references"},
        {",\"in_reply_to\":\"<a@b>\",\"references\":[\"<a@b>\",7]", "references"},
        {",\"in_reply_to\":\"<a@b>\",\"references\":\"<a@b>\"", "references"},
        {",\"in_reply_to\":\"<a@b>\",\"references\":[{\"x\":1}]", "references"},
        {",\"references\":[\"<a@b>\"]", "in_reply_to"},
        {",\"in_reply_to\":\"<a@b>\"", "references"},
        {twenty_one, "more than 20"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wire_lease *l = reply_lease(cases[i].extra);
        if (l->nrejected != 1 || l->nmailboxes != 1 || l->mailboxes[0]->id != 3)
            fail_msg("[%s]: expected entry 1 set aside and entry 3 kept, got %zu kept, %zu "
                     "rejected",
                     cases[i].extra, l->nmailboxes, l->nrejected);
        if (!strstr(l->rejected[0].reason, cases[i].reason))
            fail_msg("[%s]: reason [%s] should name %s", cases[i].extra, l->rejected[0].reason,
                     cases[i].reason);
        assert_int_equal(l->rejected[0].mailbox_id, 1);
        assert_int_equal(l->rejected[0].nsend_ids, 1); /* its slot is reported back */
        wire_lease_free(l);
    }
}

static void test_heartbeat_answer(void **state)
{
    (void)state;
    wire_heartbeat hb;
    const char *json = "{\"lease_id\":\"L\",\"expires_at\":\"2026-01-01T00:00:00Z\","
                       "\"ttl_s\":90,\"cancel\":[3,\"x\",0,4],\"service\":\"running\"}";
    assert_int_equal(wire_heartbeat_parse(json, strlen(json), &hb), 0);
    assert_int_equal(hb.ttl_s, 90);
    assert_int_equal(hb.ncancel, 2);
    assert_int_equal(hb.cancel[0], 3);
    assert_int_equal(hb.cancel[1], 4);
    assert_true(hb.has_service);
    assert_string_equal(hb.service, "running");
    wire_heartbeat_free(&hb);

    json = "{\"ttl_s\":0,\"cancel\":[]}";
    assert_int_equal(wire_heartbeat_parse(json, strlen(json), &hb), 0);
    assert_int_equal(hb.ttl_s, 0);
    assert_int_equal(hb.ncancel, 0);
    assert_false(hb.has_service);
    wire_heartbeat_free(&hb);

    assert_int_equal(wire_heartbeat_parse("{", 1, &hb), -1);
    assert_int_equal(hb.ncancel, 0);
    wire_heartbeat_free(&hb);
}

static void test_error_answer_and_unknown_send(void **state)
{
    (void)state;
    wire_error e;
    const char *json = "{\"error\":{\"code\":\"unknown_send\",\"field\":\"results[12].send_id\","
                       "\"message\":\"not part of the lease\"}}";
    wire_error_parse(json, strlen(json), &e);
    assert_string_equal(e.code, "unknown_send");
    assert_string_equal(e.field, "results[12].send_id");
    assert_true(e.has_message);
    assert_string_equal(e.message, "not part of the lease");
    size_t i = 0;
    assert_true(wire_report_unknown_send(e.code, e.field, &i));
    assert_int_equal(i, 12);
    assert_false(wire_report_unknown_send("unknown_lease", e.field, &i));
    assert_false(wire_report_unknown_send("unknown_send", "lease_id", &i));
    assert_false(wire_report_unknown_send("unknown_send", "results[x].send_id", &i));

    wire_error_parse("<html>", 6, &e);
    assert_string_equal(e.code, "");
    assert_false(e.has_message);
}

static void test_request_bodies(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    wire_lease_request(&b, "host-a", 200, 2000, 500, 0, 0);
    assert_string_equal(b.data, "{\"agent\":\"host-a\",\"max_mailboxes\":200,\"max_sends\":2000,"
                                "\"max_inboxes\":500}");
    buf_reset(&b);
    wire_lease_id_body(&b, "L\"1");
    assert_string_equal(b.data, "{\"lease_id\":\"L\\\"1\"}");
    buf_reset(&b);

    spool_record r1, r2;
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    r1.send_id = 9001;
    snprintf(r1.status, sizeof r1.status, "sent");
    r1.smtp_code = 250;
    snprintf(r1.enhanced, sizeof r1.enhanced, "2.0.0");
    snprintf(r1.detail, sizeof r1.detail, "Ok");
    r1.latency_ms = 12;
    r1.attempts = 2;
    r2.send_id = 9002;
    snprintf(r2.status, sizeof r2.status, "deferred");
    wire_report w;
    wire_report_begin(&w, &b, "L1");
    wire_report_add(&w, &r1);
    wire_report_add(&w, &r2);
    wire_report_end(&w);
    assert_string_equal(b.data, "{\"lease_id\":\"L1\",\"results\":["
                                "{\"send_id\":9001,\"status\":\"sent\",\"smtp_code\":250,"
                                "\"enhanced_code\":\"2.0.0\",\"detail\":\"Ok\",\"latency_ms\":12},"
                                "{\"send_id\":9002,\"status\":\"deferred\",\"smtp_code\":null,"
                                "\"enhanced_code\":null,\"detail\":\"\",\"latency_ms\":0}]}");
    buf_reset(&b);

    engine_result er;
    memset(&er, 0, sizeof er);
    er.send_id = 9001;
    er.status = SMTP_ST_SENT;
    er.smtp_code = 250;
    snprintf(er.enhanced, sizeof er.enhanced, "2.0.0");
    snprintf(er.detail, sizeof er.detail, "Ok");
    er.latency_ms = 12;
    er.attempts = 1;
    wire_result_json(&er, &b);
    assert_string_equal(b.data, "{\"send_id\":9001,\"status\":\"sent\",\"smtp_code\":250,"
                                "\"enhanced_code\":\"2.0.0\",\"detail\":\"Ok\",\"latency_ms\":12,"
                                "\"attempts\":1}");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_answer_with_work),
        cmocka_unit_test(test_empty_lease_answer_is_read_in_one_pass),
        cmocka_unit_test(test_unusable_lease_answers_say_why),
        cmocka_unit_test(test_lease_field_fault_keeps_the_first_reason),
        cmocka_unit_test(test_reply_slot_threading_is_parsed),
        cmocka_unit_test(test_bad_reply_threading_sets_the_entry_aside),
        cmocka_unit_test(test_heartbeat_answer),
        cmocka_unit_test(test_error_answer_and_unknown_send),
        cmocka_unit_test(test_request_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
