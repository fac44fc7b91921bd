/* Unit tests for the wire module's inbox side (agent/lease/agent_wire_inbox.c,
 * agent_wire_events.c): a lease answer's inbox_lease and inboxes read member by member,
 * every fault of one entry setting that entry aside (named) while the others are kept,
 * faults of the inbox part itself leaving the send part alone; each InboxEvent kind
 * written byte for byte, malformed events refused, free text made safe; the report answer.
 *
 * With --dump DIR it writes what the wire module produces (events, a report body, a lease
 * request) and the lease answer fixture to DIR for wire_inbox_schema.py, which checks
 * them against api/openapi.yaml's schemas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent_wire.h"
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_ID "0f0e0d0c-0b0a-4908-8706-050403020100"

/* A valid LeaseInbox; MBID is replaced by the mailbox id. */
static const char good_entry[] =
    "{\"mailbox_id\":MBID,\"address\":\"anna@acme.test\",\"imap\":{\"host\":\"imap.acme.test\","
    "\"port\":993,\"security\":\"tls\",\"username\":\"anna@acme.test\",\"password\":\"s3cret\","
    "\"oauth_token\":null,\"ca_file\":null,\"allow_plaintext_auth\":false},\"poll_class\":"
    "\"high\",\"poll_interval_s\":60,\"warmup_folder\":\"Warmup\",\"folders\":[{\"name\":"
    "\"INBOX\",\"role\":\"inbox\",\"uidvalidity\":7,\"last_uid\":41},{\"name\":\"Junk\","
    "\"role\":\"junk\",\"uidvalidity\":8,\"last_uid\":0}],\"actions\":[{\"id\":501,\"kind\":"
    "\"rescue\",\"folder\":\"Junk\",\"uidvalidity\":8,\"uid\":3,\"flags\":[],\"target\":"
    "\"inbox\",\"not_before_s\":0},{\"id\":502,\"kind\":\"mark\",\"folder\":\"INBOX\","
    "\"uidvalidity\":7,\"uid\":40,\"flags\":[\"\\\\Seen\",\"\\\\Flagged\"],\"target\":null,"
    "\"not_before_s\":120},{\"id\":503,\"kind\":\"file\",\"folder\":\"INBOX\",\"uidvalidity\":"
    "7,\"uid\":40,\"flags\":[],\"target\":\"warmup\",\"not_before_s\":3600},{\"id\":504,"
    "\"kind\":\"prune\",\"folder\":\"INBOX.Warmup\",\"uidvalidity\":9,\"uid\":2,\"flags\":[],"
    "\"target\":null,\"not_before_s\":0}]}";

/* s with every `from` replaced by `to` (malloc'd). */
static char *replace(const char *s, const char *from, const char *to)
{
    buf b = BUF_INIT;
    size_t fl = strlen(from);
    for (const char *p = s;;) {
        const char *q = strstr(p, from);
        if (!q) {
            buf_puts(&b, p);
            break;
        }
        buf_append(&b, p, (size_t)(q - p));
        buf_puts(&b, to);
        p = q + fl;
    }
    return buf_steal(&b);
}

static char *entry(int64_t id)
{
    char n[32];
    snprintf(n, sizeof n, "%lld", (long long)id);
    return replace(good_entry, "MBID", n);
}

/* A lease answer with lease_id null (no sends) and these inbox entries. */
static char *answer_with(const char *const *entries, size_t n)
{
    buf b = BUF_INIT;
    buf_puts(&b, "{\"lease_id\":null,\"ttl_s\":600,\"mailboxes\":[],\"retry_after_s\":30,"
                 "\"service\":\"running\",\"inbox_lease\":{\"lease_id\":\"" LEASE_ID
                 "\",\"ttl_s\":1800,\"heartbeat_s\":600},\"inboxes\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_putc(&b, ',');
        buf_puts(&b, entries[i]);
    }
    buf_puts(&b, "]}");
    return buf_steal(&b);
}

static void parse(const char *doc, wire_lease_answer *a, wire_inbox_part *p)
{
    wire_lease_answer_parse(doc, strlen(doc), a);
    wire_inbox_part_parse(doc, strlen(doc), a, p);
}

static void test_a_valid_inbox_is_read_member_by_member(void **state)
{
    (void)state;
    char *e = entry(11);
    const char *entries[] = {e};
    char *doc = answer_with(entries, 1);
    wire_lease_answer a;
    wire_inbox_part p;
    parse(doc, &a, &p);
    assert_int_equal(a.kind, WIRE_LEASE_EMPTY);
    assert_true(p.present);
    assert_string_equal(p.error, "");
    assert_string_equal(p.lease_id, LEASE_ID);
    assert_int_equal(p.ttl_s, 1800);
    assert_int_equal(p.heartbeat_s, 600);
    assert_int_equal(p.ninboxes, 1);
    assert_int_equal(p.nrejected, 0);
    const feed_inbox *in = &p.inboxes[0]->in;
    assert_int_equal(in->mailbox_id, 11);
    assert_string_equal(in->address, "anna@acme.test");
    assert_string_equal(in->host, "imap.acme.test");
    assert_int_equal(in->port, 993);
    assert_int_equal(in->security, FEED_SEC_TLS);
    assert_string_equal(in->username, "anna@acme.test");
    assert_string_equal(in->password, "s3cret");
    assert_null(in->oauth_token);
    assert_null(in->ca_file);
    assert_false(in->allow_plaintext_auth);
    assert_int_equal(in->poll_class, FEED_POLL_HIGH);
    assert_int_equal(in->poll_interval_s, 60);
    assert_string_equal(in->warmup_folder, "Warmup");
    assert_int_equal(in->nfolders, 2);
    assert_string_equal(in->folders[1].name, "Junk");
    assert_int_equal(in->folders[1].role, FEED_ROLE_JUNK);
    assert_int_equal(in->folders[0].uidvalidity, 7);
    assert_int_equal(in->folders[0].last_uid, 41);
    assert_int_equal(in->nactions, 4);
    assert_int_equal(in->actions[0].id, 501);
    assert_int_equal(in->actions[0].kind, FEED_ACT_RESCUE);
    assert_int_equal(in->actions[0].target, FEED_ROLE_INBOX);
    assert_int_equal(in->actions[1].kind, FEED_ACT_MARK);
    assert_int_equal(in->actions[1].nflags, 2);
    assert_string_equal(in->actions[1].flags[0], "\\Seen");
    assert_string_equal(in->actions[1].flags[1], "\\Flagged");
    assert_int_equal(in->actions[1].target, -1);
    assert_int_equal(in->actions[1].not_before_ms, 120000);
    assert_int_equal(in->actions[2].target, FEED_ROLE_WARMUP);
    assert_int_equal(in->actions[3].kind, FEED_ACT_PRUNE);
    assert_int_equal(in->actions[3].uid, 2);
    wire_inbox_part_free(&p);
    free(doc);
    free(e);
}

/* Each mutation of the good entry sets that entry aside with a reason naming `field`. */
struct mutation {
    const char *from, *to, *field;
};

static const struct mutation mutations[] = {
    {"\"mailbox_id\":MBID", "\"mailbox_id\":\"MBID\"", "mailbox_id"},
    {"\"mailbox_id\":MBID,", "", "mailbox_id"},
    {"\"anna@acme.test\",\"imap\"", "\"anna at acme\",\"imap\"", "address"},
    {"\"imap\":{", "\"imap\":7,\"imap2\":{", "imap"},
    {"\"host\":\"imap.acme.test\"", "\"host\":\"\"", "imap.host"},
    {"\"host\":\"imap.acme.test\"", "\"host\":\"imap acme\"", "imap.host"},
    {"\"host\":\"imap.acme.test\"", "\"host\":7", "imap.host"},
    {"\"port\":993", "\"port\":0", "imap.port"},
    {"\"port\":993", "\"port\":65536", "imap.port"},
    {"\"port\":993", "\"port\":\"993\"", "imap.port"},
    {"\"port\":993", "\"port\":993.5", "imap.port"},
    {"\"security\":\"tls\"", "\"security\":\"ssl\"", "imap.security"},
    {"\"username\":\"anna@acme.test\",", "", "imap.username"},
    {"\"password\":\"s3cret\"", "\"password\":null", "imap"},                   /* neither secret */
    {"\"oauth_token\":null", "\"oauth_token\":\"tok\"", "imap"},                /* both */
    {"\"password\":\"s3cret\"", "\"password\":\"a\\u0000b\"", "imap.password"}, /* NUL */
    {"\"password\":\"s3cret\"", "\"password\":\"line\\nbreak\"", "imap.password"},
    {"\"ca_file\":null,", "", "imap.ca_file"},
    {"\"allow_plaintext_auth\":false", "\"allow_plaintext_auth\":\"no\"",
     "imap.allow_plaintext_auth"},
    {"\"poll_class\":\"high\"", "\"poll_class\":\"urgent\"", "poll_class"},
    {"\"poll_interval_s\":60", "\"poll_interval_s\":29", "poll_interval_s"},
    {"\"poll_interval_s\":60", "\"poll_interval_s\":3601", "poll_interval_s"},
    {"\"warmup_folder\":\"Warmup\"", "\"warmup_folder\":\"\"", "warmup_folder"},
    {"\"folders\":[", "\"folders\":7,\"folders2\":[", "folders"},
    {"\"role\":\"junk\"", "\"role\":\"spam\"", "folders[1].role"},
    {"\"uidvalidity\":8,\"last_uid\":0", "\"uidvalidity\":0,\"last_uid\":0",
     "folders[1].uidvalidity"},
    {"\"last_uid\":41", "\"last_uid\":4294967296", "folders[0].last_uid"},
    {"\"last_uid\":41", "\"last_uid\":-1", "folders[0].last_uid"},
    {"\"kind\":\"rescue\"", "\"kind\":\"delete\"", "actions[0].kind"},
    {"\"id\":502", "\"id\":501", "actions[1].id"},
    {"\"id\":502", "\"id\":0", "actions[1].id"},
    {"\"uid\":3,", "\"uid\":0,", "actions[0].uid"},
    {"\"target\":\"inbox\"", "\"target\":\"warmup\"", "actions[0].target"},
    {"\"target\":\"warmup\"", "\"target\":null", "actions[2].target"},
    {"\"flags\":[\"\\\\Seen\",\"\\\\Flagged\"]", "\"flags\":[]", "actions[1].flags"},
    {"\"flags\":[\"\\\\Seen\",\"\\\\Flagged\"]", "\"flags\":[\"two words\"]", "actions[1].flags"},
    {"\"flags\":[\"\\\\Seen\",\"\\\\Flagged\"]",
     "\"flags\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]", "actions[1].flags"},
    {"\"not_before_s\":120", "\"not_before_s\":604801", "actions[1].not_before_s"},
    {"\"not_before_s\":120", "\"not_before_s\":-1", "actions[1].not_before_s"},
};

static void test_every_bad_member_sets_only_its_entry_aside(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
        const struct mutation *m = &mutations[i];
        char *good1 = entry(1), *good3 = entry(3), *bad0 = replace(good_entry, m->from, m->to);
        char *bad = replace(bad0, "MBID", "2");
        if (!strcmp(bad0, good_entry))
            fail_msg("mutation %zu: [%s] not found in the entry", i, m->from);
        const char *entries[] = {good1, bad, good3};
        char *doc = answer_with(entries, 3);
        wire_lease_answer a;
        wire_inbox_part p;
        parse(doc, &a, &p);
        if (p.error[0] || p.ninboxes != 2 || p.nrejected != 1)
            fail_msg("mutation %zu [%s -> %s]: error [%s], %zu kept, %zu set aside; expected 2 "
                     "kept, 1 set aside",
                     i, m->from, m->to, p.error, p.ninboxes, p.nrejected);
        assert_int_equal(p.inboxes[0]->in.mailbox_id, 1);
        assert_int_equal(p.inboxes[1]->in.mailbox_id, 3);
        if (!strstr(p.rejected[0].reason, "inboxes[1]") || !strstr(p.rejected[0].reason, m->field))
            fail_msg("mutation %zu [%s -> %s]: reason [%s] should name inboxes[1] and %s", i,
                     m->from, m->to, p.rejected[0].reason, m->field);
        /* the mailbox id is known whenever the entry has one, so it can be reported */
        bool has_id = strstr(bad, "\"mailbox_id\":2") != NULL;
        assert_int_equal(p.rejected[0].mailbox_id, has_id ? 2 : 0);
        wire_inbox_part_free(&p);
        free(doc);
        free(bad);
        free(bad0);
        free(good1);
        free(good3);
    }
}

/* The good entry with `from` replaced by pre + n × 'a' + post, mailbox id 2, between
 * two good ones: the middle one is set aside naming field. */
static void expect_set_aside(const char *from, const char *pre, size_t n, const char *post,
                             const char *field)
{
    buf to = BUF_INIT;
    buf_puts(&to, pre);
    for (size_t k = 0; k < n; k++)
        buf_putc(&to, 'a');
    buf_puts(&to, post);
    char *bad0 = replace(good_entry, from, to.data);
    char *bad = replace(bad0, "MBID", "2");
    char *good1 = entry(1), *good3 = entry(3);
    const char *entries[] = {good1, bad, good3};
    char *doc = answer_with(entries, 3);
    wire_lease_answer a;
    wire_inbox_part p;
    parse(doc, &a, &p);
    if (p.ninboxes != 2 || p.nrejected != 1 || !strstr(p.rejected[0].reason, field) ||
        p.rejected[0].mailbox_id != 2)
        fail_msg("[%s] -> %zu bytes: %zu kept, %zu set aside (%s); expected 2 kept and "
                 "inboxes[1] set aside naming %s",
                 from, n, p.ninboxes, p.nrejected, p.nrejected ? p.rejected[0].reason : "", field);
    wire_inbox_part_free(&p);
    free(doc);
    free(bad);
    free(bad0);
    free(good1);
    free(good3);
    buf_free(&to);
}

static void test_overlong_strings_and_bad_bytes_are_set_aside(void **state)
{
    (void)state;
    expect_set_aside("imap.acme.test", "", 254, "", "imap.host");
    expect_set_aside("\"username\":\"anna@acme.test\"", "\"username\":\"", 321, "\"",
                     "imap.username");
    expect_set_aside("s3cret", "", 1025, "", "imap.password");
    expect_set_aside("\"oauth_token\":null", "\"oauth_token\":\"", 16385, "\"", "imap.oauth_token");
    expect_set_aside("\"Warmup\"", "\"", 201, "\"", "warmup_folder");
    expect_set_aside("\"name\":\"INBOX\"", "\"name\":\"", 1001, "\"", "folders[0].name");
    expect_set_aside("\"\\\\Seen\"", "\"", 129, "\"", "actions[1].flags");
    expect_set_aside("\"address\":\"anna@acme.test\"", "\"address\":\"", 250, "@acme.test\"",
                     "address");
    /* bytes that are not UTF-8, a lone surrogate, a NUL: the checked parse names them */
    expect_set_aside("s3cret", "pa\xff", 0, "ss", "imap.password");
    expect_set_aside("s3cret", "\\ud800", 0, "", "imap.password");
    expect_set_aside("\"Warmup\"", "\"W\\u0000", 0, "\"", "warmup_folder");
    /* a member twice */
    expect_set_aside("\"poll_class\":\"high\"", "\"poll_class\":\"high\",\"poll_class\":\"low\"", 0,
                     "", "poll_class");
}

static void test_more_inboxes_than_the_wire_allows_are_set_aside(void **state)
{
    (void)state;
    size_t n = WIRE_MAX_LEASE_INBOXES + 2;
    char **entries = calloc(n, sizeof *entries);
    for (size_t i = 0; i < n; i++)
        entries[i] = entry((int64_t)i + 1);
    char *doc = answer_with((const char *const *)entries, n);
    wire_lease_answer a;
    wire_inbox_part p;
    parse(doc, &a, &p);
    assert_string_equal(p.error, "");
    assert_int_equal(p.ninboxes, WIRE_MAX_LEASE_INBOXES);
    assert_int_equal(p.nrejected, 2);
    assert_int_equal(p.rejected[0].mailbox_id, WIRE_MAX_LEASE_INBOXES + 1);
    assert_non_null(strstr(p.rejected[0].reason, "more than 10000 inboxes"));
    wire_inbox_part_free(&p);
    free(doc);
    for (size_t i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
}

static void test_duplicate_and_odd_entries(void **state)
{
    (void)state;
    char *e = entry(5);
    const char *entries[] = {e, "7", e, "[]",
                             "{\"mailbox_id\":9"
                             ",\"address\":null}"};
    char *doc = answer_with(entries, 5);
    wire_lease_answer a;
    wire_inbox_part p;
    parse(doc, &a, &p);
    assert_int_equal(p.ninboxes, 1);
    assert_int_equal(p.nrejected, 4);
    assert_non_null(strstr(p.rejected[0].reason, "inboxes[1]: must be an object"));
    assert_int_equal(p.rejected[1].mailbox_id, 5);
    assert_non_null(strstr(p.rejected[1].reason, "appears twice"));
    assert_non_null(strstr(p.rejected[2].reason, "inboxes[3]: must be an object"));
    assert_int_equal(p.rejected[3].mailbox_id, 9);
    wire_inbox_part_free(&p);
    free(doc);
    free(e);
}

/* A fault of inbox_lease or of the inboxes array fails the inbox part, never the sends. */
static void test_inbox_part_faults_leave_the_send_part_alone(void **state)
{
    (void)state;
    static const struct {
        const char *doc, *error;
    } cases[] = {
        {"{\"lease_id\":\"L\",\"ttl_s\":60,\"mailboxes\":[MB],\"inbox_lease\":{\"lease_id\":\"x\","
         "\"ttl_s\":1800,\"heartbeat_s\":600},\"inboxes\":[]}",
         "inbox_lease.lease_id"},
        {"{\"lease_id\":\"L\",\"ttl_s\":60,\"mailboxes\":[MB],\"inbox_lease\":{\"lease_id\":"
         "\"" LEASE_ID "\",\"ttl_s\":59,\"heartbeat_s\":600},\"inboxes\":[]}",
         "inbox_lease.ttl_s"},
        {"{\"lease_id\":\"L\",\"ttl_s\":60,\"mailboxes\":[MB],\"inbox_lease\":{\"lease_id\":"
         "\"" LEASE_ID "\",\"ttl_s\":1800},\"inboxes\":[]}",
         "inbox_lease.heartbeat_s"},
        {"{\"lease_id\":\"L\",\"ttl_s\":60,\"mailboxes\":[MB],\"inbox_lease\":7,\"inboxes\":[]}",
         "inbox_lease: must be an object"},
        {"{\"lease_id\":\"L\",\"ttl_s\":60,\"mailboxes\":[MB],\"inbox_lease\":{\"lease_id\":"
         "\"" LEASE_ID "\",\"ttl_s\":1800,\"heartbeat_s\":600},\"inboxes\":{}}",
         "inboxes: must be an array"},
        {"{\"lease_id\":\"L\",\"ttl_s\":60,\"mailboxes\":[MB],\"inboxes\":[]}",
         "inboxes without inbox_lease"},
        {"{\"lease_id\":\"L\",\"ttl_s\":60,\"mailboxes\":[MB],\"inbox_lease\":{\"lease_id\":"
         "\"" LEASE_ID "\",\"ttl_s\":1800,\"heartbeat_s\":600}}",
         "inbox_lease without inboxes"},
    };
    const char *mb = "{\"id\":1,\"address\":\"a@b.test\",\"smtp\":{\"host\":\"h\",\"port\":25,"
                     "\"security\":\"plain\"},\"sends\":[{\"id\":2,\"to\":\"c@d.test\","
                     "\"subject\":\"s\",\"body\":\"b\"}]}";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *doc = replace(cases[i].doc, "MB", mb);
        wire_lease_answer a;
        wire_inbox_part p;
        parse(doc, &a, &p);
        if (a.kind != WIRE_LEASE_WORK || a.lease->nmailboxes != 1)
            fail_msg("case %zu: the send part should be work with one mailbox: kind %d", i,
                     (int)a.kind);
        if (!p.present || !strstr(p.error, cases[i].error) || p.ninboxes)
            fail_msg("case %zu: error [%s], expected [%s]", i, p.error, cases[i].error);
        wire_lease_free(a.lease);
        wire_inbox_part_free(&p);
        free(doc);
    }
    /* no inbox members: nothing present */
    wire_lease_answer a;
    wire_inbox_part p;
    parse("{\"lease_id\":null,\"mailboxes\":[]}", &a, &p);
    assert_false(p.present);
    /* an unusable answer carries no inbox part either */
    parse("{\"lease_id\":null,\"mailboxes\":[],\"inboxes\":[] junk", &a, &p);
    assert_int_equal(a.kind, WIRE_LEASE_UNUSABLE);
    assert_false(p.present);
}

/* Damaged answers (every truncation of one, random bytes flipped in another) never
 * crash or leak under ASan, and what comes out holds together. */
static void test_damaged_answers_are_read_safely(void **state)
{
    (void)state;
    char *e1 = entry(1), *e2 = entry(2);
    const char *entries[] = {e1, e2};
    char *doc = answer_with(entries, 2);
    size_t n = strlen(doc);
    char *copy = malloc(n + 1);
    for (size_t cut = 0; cut <= n; cut++) {
        wire_lease_answer a;
        wire_inbox_part p;
        wire_lease_answer_parse(doc, cut, &a);
        wire_inbox_part_parse(doc, cut, &a, &p);
        if (cut < n)
            assert_int_equal(p.ninboxes, 0); /* a truncated answer is not JSON: nothing */
        wire_inbox_part_free(&p);
    }
    uint32_t x = 12345;
    for (int round = 0; round < 4000; round++) {
        memcpy(copy, doc, n + 1);
        for (int k = 0; k < 1 + round % 3; k++) {
            x = x * 1103515245u + 12345u;
            size_t at = (x >> 8) % n;
            x = x * 1103515245u + 12345u;
            copy[at] = (char)(x >> 16);
        }
        wire_lease_answer a;
        wire_inbox_part p;
        wire_lease_answer_parse(copy, n, &a);
        wire_inbox_part_parse(copy, n, &a, &p);
        if (a.kind == WIRE_LEASE_WORK)
            wire_lease_free(a.lease);
        assert_true(p.ninboxes + p.nrejected <= 2 || p.error[0]);
        for (size_t i = 0; i < p.ninboxes; i++) {
            const feed_inbox *in = &p.inboxes[i]->in;
            assert_true(in->port >= 1 && in->port <= 65535);
            assert_true(in->mailbox_id >= 1);
            assert_true(!in->password != !in->oauth_token);
        }
        wire_inbox_part_free(&p);
    }
    free(copy);
    free(doc);
    free(e1);
    free(e2);
}

/* ---- events ---- */

static const char *const found_flags[] = {"\\Seen", "$Junk"};
static const char *const found_labels[] = {"\\Important", "kiln &AOk-t&AOk-"};

static feed_event found_event(void)
{
    feed_event ev = {.type = FEED_EV_FOUND,
                     .mailbox_id = 11,
                     .folder = "Junk",
                     .role = FEED_ROLE_JUNK,
                     .uidvalidity = 8,
                     .uid = 3,
                     .message_id = "<9001.a0123456789abcdef01234567@acme.test>",
                     .flags = found_flags,
                     .nflags = 2,
                     .labels = found_labels,
                     .nlabels = 2,
                     .authentication_results = "mx.other.test; spf=pass; dkim=pass",
                     .internal_date = "2026-12-03T06:00:00Z"};
    return ev;
}

static const char *const mark_flags[] = {"\\Seen", "\\Flagged"};

static feed_event event_of(int kind)
{
    feed_event ev = found_event();
    feed_event a = {.type = FEED_EV_ACTION,
                    .mailbox_id = 11,
                    .action_id = 501,
                    .status = FEED_AST_DONE,
                    .folder = "INBOX",
                    .uidvalidity = 7,
                    .uid = 42,
                    .flags = mark_flags,
                    .nflags = 2};
    feed_event f = {.type = FEED_EV_FOLDER_STATE,
                    .mailbox_id = 11,
                    .folder = "INBOX",
                    .role = FEED_ROLE_INBOX,
                    .uidvalidity = 7,
                    .last_uid = 42};
    feed_event s = {.type = FEED_EV_SESSION,
                    .mailbox_id = 11,
                    .status = FEED_SES_AUTH,
                    .detail = "NO [AUTHENTICATIONFAILED] Authentication failed."};
    return kind == FEED_EV_FOUND          ? ev
           : kind == FEED_EV_ACTION       ? a
           : kind == FEED_EV_FOLDER_STATE ? f
                                          : s;
}

static const char *const expected_json[] = {
    "{\"type\":\"found\",\"mailbox_id\":11,\"message_id\":"
    "\"<9001.a0123456789abcdef01234567@acme.test>\",\"folder\":\"Junk\",\"role\":\"junk\","
    "\"uidvalidity\":8,\"uid\":3,\"flags\":[\"\\\\Seen\",\"$Junk\"],\"labels\":[\"\\\\Important\","
    "\"kiln &AOk-t&AOk-\"],\"authentication_results\":\"mx.other.test; spf=pass; dkim=pass\","
    "\"internal_date\":\"2026-12-03T06:00:00Z\"}",
    "{\"type\":\"action\",\"mailbox_id\":11,\"action_id\":501,\"status\":\"done\",\"folder\":"
    "\"INBOX\",\"uidvalidity\":7,\"uid\":42,\"flags\":[\"\\\\Seen\",\"\\\\Flagged\"],"
    "\"detail\":null}",
    "{\"type\":\"folder_state\",\"mailbox_id\":11,\"folder\":\"INBOX\",\"role\":\"inbox\","
    "\"uidvalidity\":7,\"last_uid\":42}",
    "{\"type\":\"session\",\"mailbox_id\":11,\"status\":\"auth\",\"detail\":"
    "\"NO [AUTHENTICATIONFAILED] Authentication failed.\"}",
};

static void test_each_event_kind_is_written_as_the_wire_shape(void **state)
{
    (void)state;
    for (int k = FEED_EV_FOUND; k <= FEED_EV_SESSION; k++) {
        feed_event ev = event_of(k);
        buf b = BUF_INIT;
        char err[128];
        assert_int_equal(wire_inbox_event_json(&ev, &b, err, sizeof err), 0);
        assert_string_equal(b.data, expected_json[k]);
        buf_free(&b);
    }
    /* a found message without labels, Authentication-Results or date; a failed action
     * with only its detail */
    feed_event ev = found_event();
    ev.labels = NULL;
    ev.authentication_results = NULL;
    ev.internal_date = "yesterday";
    ev.nflags = 0;
    buf b = BUF_INIT;
    char err[128];
    assert_int_equal(wire_inbox_event_json(&ev, &b, err, sizeof err), 0);
    assert_string_equal(b.data, "{\"type\":\"found\",\"mailbox_id\":11,\"message_id\":"
                                "\"<9001.a0123456789abcdef01234567@acme.test>\",\"folder\":"
                                "\"Junk\",\"role\":\"junk\",\"uidvalidity\":8,\"uid\":3,"
                                "\"flags\":[],\"authentication_results\":null}");
    buf_reset(&b);
    feed_event fa = {.type = FEED_EV_ACTION,
                     .mailbox_id = 11,
                     .action_id = 9,
                     .status = FEED_AST_FAILED,
                     .detail = "NO [CANNOT] no"};
    assert_int_equal(wire_inbox_event_json(&fa, &b, err, sizeof err), 0);
    assert_string_equal(b.data, "{\"type\":\"action\",\"mailbox_id\":11,\"action_id\":9,"
                                "\"status\":\"failed\",\"detail\":\"NO [CANNOT] no\"}");
    buf_free(&b);
}

static void test_malformed_events_are_refused(void **state)
{
    (void)state;
    char big[1100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 10; i++) {
        feed_event ev = found_event();
        const char *what = "";
        switch (i) {
        case 0:
            ev.mailbox_id = 0, what = "mailbox_id";
            break;
        case 1:
            ev.folder = "", what = "folder";
            break;
        case 2:
            ev.folder = big, what = "folder";
            break;
        case 3:
            ev.role = FEED_ROLE_COUNT, what = "role";
            break;
        case 4:
            ev.uid = 0, what = "uid";
            break;
        case 5:
            ev.message_id = "<>", what = "message_id";
            break;
        case 6:
            ev.message_id = "<a\r\nb@c>", what = "message_id";
            break;
        case 7:
            ev.type = FEED_EV_ACTION, ev.action_id = 0, what = "action_id";
            break;
        case 8:
            ev.type = FEED_EV_SESSION, ev.status = FEED_SES_COUNT, what = "status";
            break;
        default:
            ev.type = 9, what = "type";
            break;
        }
        buf b = BUF_INIT;
        char err[128] = "";
        if (wire_inbox_event_json(&ev, &b, err, sizeof err) != -1 || b.len || !strstr(err, what))
            fail_msg("case %d: refusal naming %s expected, got [%s] [%s]", i, what, err,
                     b.data ? b.data : "");
        buf_free(&b);
    }
}

static void test_free_text_is_cut_and_cleaned(void **state)
{
    (void)state;
    /* 1001 bytes of detail: cut to 1000 without splitting the final 2-byte character;
     * invalid bytes and control characters do not reach the report */
    char detail[1100];
    memset(detail, 'd', 999);
    memcpy(detail + 999, "\xc3\xa9", 3);
    feed_event ev = {
        .type = FEED_EV_SESSION, .mailbox_id = 3, .status = FEED_SES_PROTOCOL, .detail = detail};
    buf b = BUF_INIT;
    char err[64];
    assert_int_equal(wire_inbox_event_json(&ev, &b, err, sizeof err), 0);
    char want[1200];
    snprintf(want, sizeof want, "\"detail\":\"%.999s\"}", detail);
    assert_non_null(strstr(b.data, want));
    buf_reset(&b);
    ev.detail = "bad \xff byte\x01 and\ttab";
    assert_int_equal(wire_inbox_event_json(&ev, &b, err, sizeof err), 0);
    assert_non_null(strstr(b.data, "\"detail\":\"bad ? byte  and\\ttab\""));
    buf_free(&b);
}

static void test_report_body_and_answers(void **state)
{
    (void)state;
    const char *events[] = {expected_json[2], expected_json[3]};
    size_t lens[] = {strlen(expected_json[2]), strlen(expected_json[3])};
    buf b = BUF_INIT;
    wire_inbox_report(&b, LEASE_ID, events, lens, 2);
    char want[1024];
    snprintf(want, sizeof want, "{\"lease_id\":\"" LEASE_ID "\",\"inbox_events\":[%s,%s]}",
             expected_json[2], expected_json[3]);
    assert_string_equal(b.data, want);
    buf_free(&b);

    wire_inbox_counts c;
    const char *ans =
        "{\"lease_id\":\"" LEASE_ID "\",\"applied\":0,\"duplicates\":0,\"rejected\":0,"
        "\"results\":[],\"inbox_events\":{\"applied\":3,\"duplicates\":1,\"ignored\":2}}";
    assert_int_equal(wire_inbox_report_answer_parse(ans, strlen(ans), &c), 0);
    assert_true(c.present);
    assert_int_equal(c.applied, 3);
    assert_int_equal(c.duplicates, 1);
    assert_int_equal(c.ignored, 2);
    assert_int_equal(wire_inbox_report_answer_parse("<", 1, &c), -1);

    size_t i = 0;
    assert_true(wire_report_bad_inbox_event("inbox_events[12].folder", &i));
    assert_int_equal(i, 12);
    assert_true(wire_report_bad_inbox_event("inbox_events[0]", &i));
    assert_int_equal(i, 0);
    assert_false(wire_report_bad_inbox_event("results[1].send_id", &i));
    assert_false(wire_report_bad_inbox_event("inbox_events[x]", &i));

    wire_heartbeat hb;
    const char *hbj = "{\"lease_id\":\"" LEASE_ID "\",\"ttl_s\":1800,\"cancel\":[],"
                      "\"inboxes_dropped\":[11,\"x\",12],\"service\":\"running\"}";
    assert_int_equal(wire_heartbeat_parse(hbj, strlen(hbj), &hb), 0);
    assert_int_equal(hb.ninboxes_dropped, 2);
    assert_int_equal(hb.inboxes_dropped[0], 11);
    assert_int_equal(hb.inboxes_dropped[1], 12);
    wire_heartbeat_free(&hb);
}

/* ---- --dump DIR: the bytes for wire_inbox_schema.py ---- */

static int write_file(const char *dir, const char *name, const char *data)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(data, f);
    return fclose(f);
}

static int dump(const char *dir)
{
    buf events = BUF_INIT, one = BUF_INIT, body = BUF_INIT;
    const char *ev[5];
    size_t lens[5];
    char err[128];
    char *copies[5];
    for (int k = FEED_EV_FOUND; k <= FEED_EV_SESSION + 1; k++) {
        feed_event e = k <= FEED_EV_SESSION ? event_of(k) : found_event();
        if (k > FEED_EV_SESSION) /* the leanest found event */
            e.labels = NULL, e.authentication_results = NULL, e.internal_date = NULL, e.nflags = 0;
        buf_reset(&one);
        if (wire_inbox_event_json(&e, &one, err, sizeof err) < 0)
            return 1;
        buf_printf(&events, "%s\n", one.data);
        copies[k] = strdup(one.data);
        ev[k] = copies[k];
        lens[k] = one.len;
    }
    wire_inbox_report(&body, LEASE_ID, ev, lens, 5);
    char *e1 = entry(11), *e2 = entry(12);
    char *e2b = replace(e2, "\"password\":\"s3cret\",\"oauth_token\":null",
                        "\"password\":null,\"oauth_token\":\"ya29.token\"");
    const char *entries[] = {e1, e2b};
    char *answer = answer_with(entries, 2);
    buf req = BUF_INIT;
    wire_lease_request(&req, "host-a", 200, 2000, 500, 0, 0);
    int rc = write_file(dir, "events.jsonl", events.data) |
             write_file(dir, "report.json", body.data) |
             write_file(dir, "lease_answer.json", answer) |
             write_file(dir, "lease_request.json", req.data);
    for (int k = 0; k < 5; k++)
        free(copies[k]);
    free(e1);
    free(e2);
    free(e2b);
    free(answer);
    buf_free(&events);
    buf_free(&one);
    buf_free(&body);
    buf_free(&req);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--dump"))
        return dump(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_valid_inbox_is_read_member_by_member),
        cmocka_unit_test(test_every_bad_member_sets_only_its_entry_aside),
        cmocka_unit_test(test_overlong_strings_and_bad_bytes_are_set_aside),
        cmocka_unit_test(test_more_inboxes_than_the_wire_allows_are_set_aside),
        cmocka_unit_test(test_duplicate_and_odd_entries),
        cmocka_unit_test(test_inbox_part_faults_leave_the_send_part_alone),
        cmocka_unit_test(test_damaged_answers_are_read_safely),
        cmocka_unit_test(test_each_event_kind_is_written_as_the_wire_shape),
        cmocka_unit_test(test_malformed_events_are_refused),
        cmocka_unit_test(test_free_text_is_cut_and_cleaned),
        cmocka_unit_test(test_report_body_and_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
