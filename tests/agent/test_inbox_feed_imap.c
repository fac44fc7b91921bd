/* Unit tests for the one LeaseInbox parser as `kiln-agent inbox --file` uses it
 * (wire_inbox_file_parse: an array or an object with "inboxes", a bad entry set aside by
 * name while the others are kept), InboxAction.message_id (parsed, checked, carried into
 * the inbox engine's spec so a move whose report was lost is recognised), and the adapter
 * between the lease loop's seam and the inbox engine (lease/inbox_feed_imap.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent_wire.h"
#include "inbox_feed_imap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY(ID, PORT, MSGID)                                                                     \
    "{\"mailbox_id\":" ID ",\"address\":\"anna@acme.test\",\"imap\":{\"host\":\"127.0.0.1\","      \
    "\"port\":" PORT ",\"security\":\"plain\",\"username\":\"anna\",\"password\":\"pw\","          \
    "\"oauth_token\":null,\"ca_file\":null,\"allow_plaintext_auth\":true},\"poll_class\":"         \
    "\"high\",\"poll_interval_s\":60,\"warmup_folder\":\"kiln\",\"folders\":[],\"actions\":[{"     \
    "\"id\":501,\"kind\":\"rescue\",\"folder\":\"Junk\",\"uidvalidity\":8,\"uid\":3,\"flags\":[]," \
    "\"target\":\"inbox\",\"not_before_s\":90" MSGID "},{\"id\":502,\"kind\":\"mark\","            \
    "\"folder\":\"INBOX\",\"uidvalidity\":7,\"uid\":4,\"flags\":[\"\\\\Seen\"],\"target\":null,"   \
    "\"not_before_s\":0}]}"

static void parse(const char *doc, wire_inbox_part *p)
{
    wire_inbox_file_parse(doc, strlen(doc), p);
}

static void test_a_file_is_read_entry_by_entry(void **state)
{
    (void)state;
    wire_inbox_part p;
    /* an array: the bad port sets only its entry aside, by name */
    parse(
        " [" ENTRY("7", "143", ",\"message_id\":\"<9.a@acme.test>\"") "," ENTRY("8", "0", "") "]\n",
        &p);
    assert_string_equal(p.error, "");
    assert_int_equal(p.ninboxes, 1);
    assert_int_equal(p.inboxes[0]->in.mailbox_id, 7);
    assert_int_equal(p.nrejected, 1);
    assert_int_equal(p.rejected[0].mailbox_id, 8);
    assert_non_null(strstr(p.rejected[0].reason, "inboxes[1].imap.port"));
    const feed_action *a = &p.inboxes[0]->in.actions[0];
    assert_string_equal(a->message_id, "<9.a@acme.test>");
    assert_null(p.inboxes[0]->in.actions[1].message_id); /* optional */
    wire_inbox_part_free(&p);

    /* an object carrying them as "inboxes" (a lease answer, inbox_lease not needed) */
    parse("{\"lease_id\":null,\"inboxes\":[" ENTRY("9", "993", ",\"message_id\":null") "]}", &p);
    assert_string_equal(p.error, "");
    assert_int_equal(p.ninboxes, 1);
    assert_null(p.inboxes[0]->in.actions[0].message_id);
    wire_inbox_part_free(&p);

    /* documents that are no list of inboxes */
    const char *bad[] = {"", "nope", "{\"lease_id\":null}", "[1", "{\"inboxes\":7}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parse(bad[i], &p);
        assert_true(p.error[0] != '\0');
        assert_int_equal(p.ninboxes, 0);
        wire_inbox_part_free(&p);
    }
}

static void test_a_bad_message_id_sets_the_entry_aside(void **state)
{
    (void)state;
    const char *docs[] = {
        "[" ENTRY("7", "143", ",\"message_id\":\"no-brackets@acme.test\"") "]",
        "[" ENTRY("7", "143", ",\"message_id\":\"\"") "]",
        "[" ENTRY("7", "143", ",\"message_id\":12") "]",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        wire_inbox_part p;
        parse(docs[i], &p);
        assert_int_equal(p.ninboxes, 0);
        assert_int_equal(p.nrejected, 1);
        assert_non_null(strstr(p.rejected[0].reason, "inboxes[0].actions[0].message_id"));
        wire_inbox_part_free(&p);
    }
}

static void test_the_engine_gets_a_copy_with_relative_times(void **state)
{
    (void)state;
    wire_inbox_part p;
    parse("[" ENTRY("7", "143", ",\"message_id\":\"<9.a@acme.test>\"") "]", &p);
    assert_int_equal(p.ninboxes, 1);
    /* the lease loop makes not_before_ms absolute (answer time + 90 s): 30.5 s are gone */
    feed_inbox in = p.inboxes[0]->in;
    feed_action acts[2] = {in.actions[0], in.actions[1]};
    acts[0].not_before_ms += 1000000;
    acts[1].not_before_ms += 1000000;
    in.actions = acts;
    inbox_spec *s = inbox_spec_from_feed(&in, 1030500);
    wire_inbox_part_free(&p); /* the spec owns its strings */
    assert_int_equal(s->mailbox_id, 7);
    assert_string_equal(s->host, "127.0.0.1");
    assert_int_equal(s->port, 143);
    assert_int_equal(s->security, INBOX_SEC_PLAIN);
    assert_string_equal(s->password, "pw");
    assert_null(s->oauth_token);
    assert_true(s->allow_plaintext_auth);
    assert_int_equal(s->poll_class, INBOX_POLL_HIGH);
    assert_string_equal(s->warmup_folder, "kiln");
    assert_int_equal(s->nactions, 2);
    assert_int_equal(s->actions[0].kind, INBOX_ACT_RESCUE);
    assert_int_equal(s->actions[0].target, INBOX_ROLE_INBOX);
    assert_string_equal(s->actions[0].message_id, "<9.a@acme.test>");
    assert_int_equal(s->actions[0].not_before_s, 60); /* 59.5 s left, rounded up */
    assert_int_equal(s->actions[1].kind, INBOX_ACT_MARK);
    assert_int_equal(s->actions[1].nflags, 1);
    assert_string_equal(s->actions[1].flags[0], "\\Seen");
    assert_int_equal(s->actions[1].not_before_s, 0); /* due already */
    assert_null(s->actions[1].message_id);
    inbox_spec_free(s);
}

static void test_engine_events_become_feed_events(void **state)
{
    (void)state;
    const char *flags[] = {"\\Seen"};
    inbox_event ev = {.type = INBOX_EV_ACTION,
                      .mailbox_id = 7,
                      .status = 0,
                      .action_status = INBOX_AST_STALE,
                      .folder = "INBOX",
                      .uidvalidity = 7,
                      .uid = 12,
                      .action_id = 501,
                      .flags = flags,
                      .nflags = 1};
    feed_event fe;
    feed_event_from_inbox(&ev, &fe);
    assert_int_equal(fe.type, FEED_EV_ACTION);
    assert_int_equal(fe.status, FEED_AST_STALE);
    assert_int_equal(fe.action_id, 501);
    assert_int_equal(fe.uid, 12);
    assert_ptr_equal(fe.flags, flags);
    ev = (inbox_event){.type = INBOX_EV_SESSION, .mailbox_id = 7, .status = 4, .detail = "slow"};
    feed_event_from_inbox(&ev, &fe);
    assert_int_equal(fe.type, FEED_EV_SESSION);
    assert_int_equal(fe.status, FEED_SES_THROTTLED);
    assert_string_equal(fe.detail, "slow");
    /* and the lease loop's serializer writes it */
    buf out = BUF_INIT;
    char err[128];
    assert_int_equal(wire_inbox_event_json(&fe, &out, err, sizeof err), 0);
    assert_non_null(strstr(out.data, "\"status\":\"throttled\""));
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_file_is_read_entry_by_entry),
        cmocka_unit_test(test_a_bad_message_id_sets_the_entry_aside),
        cmocka_unit_test(test_the_engine_gets_a_copy_with_relative_times),
        cmocka_unit_test(test_engine_events_become_feed_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
