/* Unit tests for the inbox side of the agent's wire module (agent/lease/agent_wire_inbox.c):
 * LeaseInbox lists read into the inbox engine's specs (a bare array or a lease answer's
 * "inboxes"), every fault named by its field, and each InboxEvent shape written byte
 * for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent_wire_inbox.h"
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMAP_OK                                                                                    \
    "\"imap\":{\"host\":\"imap.acme.test\",\"port\":993,\"security\":\"tls\",\"username\":"        \
    "\"anna@acme.test\",\"password\":\"pw\",\"oauth_token\":null,\"ca_file\":null,"                \
    "\"allow_plaintext_auth\":false}"

static void free_specs(inbox_spec **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        inbox_spec_free(v[i]);
    free(v);
}

static void test_inboxes_are_read_with_folders_and_actions(void **state)
{
    (void)state;
    const char *j =
        "{\"lease_id\":null,\"inboxes\":[{\"mailbox_id\":12,\"address\":\"anna@acme.test\"," IMAP_OK
        ",\"poll_class\":\"high\",\"poll_interval_s\":60,\"warmup_folder\":\"kiln\","
        "\"folders\":[{\"name\":\"Junk\",\"role\":\"junk\",\"uidvalidity\":7,\"last_uid\":41}],"
        "\"actions\":[{\"id\":5,\"kind\":\"mark\",\"folder\":\"INBOX\",\"uidvalidity\":3,\"uid\":"
        "9,\"flags\":[\"\\\\Seen\",\"$Important\"],\"target\":null,\"not_before_s\":30},"
        "{\"id\":6,\"kind\":\"rescue\",\"folder\":\"Junk\",\"uidvalidity\":7,\"uid\":41,"
        "\"flags\":[],\"target\":\"inbox\",\"not_before_s\":0}]}]}";
    inbox_spec **v;
    size_t n;
    char err[256];
    assert_int_equal(wire_inboxes_parse(j, strlen(j), &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    inbox_spec *s = v[0];
    assert_int_equal(s->mailbox_id, 12);
    assert_string_equal(s->host, "imap.acme.test");
    assert_int_equal(s->port, 993);
    assert_int_equal(s->security, INBOX_SEC_TLS);
    assert_string_equal(s->password, "pw");
    assert_null(s->oauth_token);
    assert_int_equal(s->poll_class, INBOX_POLL_HIGH);
    assert_int_equal(s->nfolders, 1);
    assert_int_equal(s->folders[0].role, INBOX_ROLE_JUNK);
    assert_int_equal(s->folders[0].last_uid, 41);
    assert_int_equal(s->nactions, 2);
    assert_int_equal(s->actions[0].kind, INBOX_ACT_MARK);
    assert_int_equal(s->actions[0].nflags, 2);
    assert_string_equal(s->actions[0].flags[1], "$Important");
    assert_int_equal(s->actions[0].not_before_s, 30);
    assert_int_equal(s->actions[1].target, INBOX_ROLE_INBOX);
    free_specs(v, n);
}

/* each bad document fails whole, naming the field */
static void test_faults_name_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *json, *field;
    } cases[] = {
        {"[{\"mailbox_id\":0," IMAP_OK ",\"poll_class\":\"low\"}]", "inboxes[0].mailbox_id"},
        {"[{\"mailbox_id\":1,\"poll_class\":\"low\"}]", "inboxes[0].imap:"},
        {"[{\"mailbox_id\":1,\"imap\":{\"host\":\"h\",\"port\":70000,\"security\":\"tls\","
         "\"username\":\"u\",\"password\":\"p\"},\"poll_class\":\"low\"}]",
         "inboxes[0].imap.port"},
        {"[{\"mailbox_id\":1,\"imap\":{\"host\":\"h\",\"port\":1,\"security\":\"ssl\","
         "\"username\":\"u\",\"password\":\"p\"},\"poll_class\":\"low\"}]",
         "inboxes[0].imap.security"},
        {"[{\"mailbox_id\":1,\"imap\":{\"host\":\"h\",\"port\":1,\"security\":\"tls\","
         "\"username\":\"u\"},\"poll_class\":\"low\"}]",
         "inboxes[0].imap.password"},
        {"[{\"mailbox_id\":1," IMAP_OK ",\"poll_class\":\"urgent\"}]", "inboxes[0].poll_class"},
        {"[{\"mailbox_id\":1," IMAP_OK ",\"poll_class\":\"low\",\"folders\":[{\"name\":\"a\\r"
         "b\",\"role\":\"inbox\",\"uidvalidity\":1,\"last_uid\":0}]}]",
         "inboxes[0].folders[0].name"},
        {"[{\"mailbox_id\":1," IMAP_OK ",\"poll_class\":\"low\",\"actions\":[{\"id\":1,\"kind\":"
         "\"mark\",\"folder\":\"INBOX\",\"uidvalidity\":1,\"uid\":1,\"flags\":[\"a b\"]}]}]",
         "inboxes[0].actions[0].flags"},
        {"[{\"mailbox_id\":1," IMAP_OK ",\"poll_class\":\"low\",\"actions\":[{\"id\":1,\"kind\":"
         "\"rescue\",\"folder\":\"Junk\",\"uidvalidity\":1,\"uid\":1,\"target\":\"warmup\"}]}]",
         "inboxes[0].actions[0].target"},
        {"[{\"mailbox_id\":1," IMAP_OK ",\"poll_class\":\"low\"},{\"mailbox_id\":1," IMAP_OK
         ",\"poll_class\":\"low\"}]",
         "inboxes[1].mailbox_id"},
        {"{\"inboxes\":7}", "inboxes"},
        {"[1,", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        inbox_spec **v = NULL;
        size_t n = 9;
        char err[256] = "";
        int rc = wire_inboxes_parse(cases[i].json, strlen(cases[i].json), &v, &n, err, sizeof err);
        if (rc != -1 || v || n || strncmp(err, cases[i].field, strlen(cases[i].field)) != 0)
            fail_msg("case %zu: rc %d, error \"%s\", expected one starting \"%s\"", i, rc, err,
                     cases[i].field);
    }
}

static void expect_json(const inbox_event *ev, const char *want)
{
    buf b = BUF_INIT;
    wire_inbox_event_json(ev, &b);
    buf_putc(&b, '\0');
    assert_string_equal(b.data, want);
    buf_free(&b);
}

static void test_events_as_openapi_shapes(void **state)
{
    (void)state;
    const char *flags[] = {"\\Seen"};
    inbox_event found = {.type = INBOX_EV_FOUND,
                         .mailbox_id = 12,
                         .message_id = "<9001.a0123456789abcdef01234567@acme.test>",
                         .folder = "Junk",
                         .role = INBOX_ROLE_JUNK,
                         .uidvalidity = 7,
                         .uid = 42,
                         .flags = flags,
                         .nflags = 1};
    expect_json(&found, "{\"type\":\"found\",\"mailbox_id\":12,\"message_id\":\"<9001."
                        "a0123456789abcdef01234567@acme.test>\",\"folder\":\"Junk\",\"role\":"
                        "\"junk\",\"uidvalidity\":7,\"uid\":42,\"flags\":[\"\\\\Seen\"],"
                        "\"authentication_results\":null}");
    inbox_event act = {.type = INBOX_EV_ACTION,
                       .mailbox_id = 12,
                       .action_id = 5,
                       .action_status = INBOX_AST_DONE,
                       .folder = "INBOX",
                       .uidvalidity = 3,
                       .uid = 10};
    expect_json(&act,
                "{\"type\":\"action\",\"mailbox_id\":12,\"action_id\":5,\"status\":"
                "\"done\",\"folder\":\"INBOX\",\"uidvalidity\":3,\"uid\":10,\"detail\":null}");
    inbox_event fs = {.type = INBOX_EV_FOLDER_STATE,
                      .mailbox_id = 12,
                      .folder = "INBOX",
                      .role = INBOX_ROLE_INBOX,
                      .uidvalidity = 3,
                      .last_uid = 10};
    expect_json(&fs, "{\"type\":\"folder_state\",\"mailbox_id\":12,\"folder\":\"INBOX\",\"role\":"
                     "\"inbox\",\"uidvalidity\":3,\"last_uid\":10}");
    inbox_event se = {.type = INBOX_EV_SESSION, .mailbox_id = 12, .status = 1, .detail = "no"};
    expect_json(&se, "{\"type\":\"session\",\"mailbox_id\":12,\"status\":\"auth\",\"detail\":"
                     "\"no\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inboxes_are_read_with_folders_and_actions),
        cmocka_unit_test(test_faults_name_the_field),
        cmocka_unit_test(test_events_as_openapi_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
