/* Unit tests for the IMAP response parser: every kind of response and response code
 * the inbox engine reads, literals split at every byte, whole transcripts in every
 * split, the hard limits, and malformed input (an error, never a crash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "imap_resp.h"
#include "imap_test_util.h"

#include <stdlib.h>
#include <string.h>

/* Parses s (one response expected at its start) into *p; returns it. */
static const imap_resp *parse1(imap_resp_parser *p, const char *s)
{
    imap_resp_parser_init(p, NULL);
    size_t used = 0;
    const imap_resp *r = NULL;
    int rc = imap_resp_feed(p, s, strlen(s), &used, &r);
    if (rc != IMAP_RESP_DONE)
        fail_msg("expected one response from \"%s\", got rc %d (%s)", s, rc,
                 p->error ? p->error : "");
    return r;
}

/* Parses s whole; returns the error message (NULL when s parsed without one). */
static const char *parse_error(const char *s, size_t n, const imap_resp_limits *lim)
{
    static char why[128];
    buf out = BUF_INIT;
    imap_feed_dump(s, n, n ? n : 1, lim, &out);
    const char *e = out.data ? strstr(out.data, "ERROR ") : NULL;
    if (e)
        snprintf(why, sizeof why, "%.*s", (int)strcspn(e + 6, "\n"), e + 6);
    buf_free(&out);
    return e ? why : NULL;
}

static void assert_text(const char *s, size_t n, const char *want)
{
    assert_int_equal(n, strlen(want));
    assert_memory_equal(s, want, n);
}

/* Feeding t in chunks of every size from 1 byte up gives exactly whole's dump. */
static void assert_every_split_alike(const buf *t, const buf *whole)
{
    for (size_t step = 1; step <= t->len; step++) {
        buf part = BUF_INIT;
        imap_feed_dump(t->data, t->len, step, NULL, &part);
        if (strcmp(part.data, whole->data))
            fail_msg("split every %zu bytes differs", step);
        buf_free(&part);
    }
}

static void test_tagged_ok_no_bad_with_codes(void **state)
{
    (void)state;
    imap_resp_parser p;
    const imap_resp *r = parse1(&p, "K3 OK [READ-WRITE] Select completed (0.001 secs).\r\n");
    assert_int_equal(r->kind, IMAP_RESP_TAGGED);
    assert_string_equal(r->tag, "K3");
    assert_int_equal(r->status, IMAP_STATUS_OK);
    assert_int_equal(r->code.code, IMAP_CODE_READ_WRITE);
    assert_text(r->text, r->text_len, "Select completed (0.001 secs).");
    imap_resp_parser_free(&p);

    static const struct {
        const char *line;
        int status, code;
        const char *text;
    } cases[] = {
        {"a1 NO [TRYCREATE] Mailbox doesn't exist: Warmup\r\n", IMAP_STATUS_NO, IMAP_CODE_TRYCREATE,
         "Mailbox doesn't exist: Warmup"},
        {"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", IMAP_STATUS_NO,
         IMAP_CODE_AUTHENTICATIONFAILED, "Authentication failed."},
        {"a1 NO [UNAVAILABLE] Temporary failure\r\n", IMAP_STATUS_NO, IMAP_CODE_UNAVAILABLE,
         "Temporary failure"},
        {"a1 NO [NONEXISTENT] Unknown\r\n", IMAP_STATUS_NO, IMAP_CODE_NONEXISTENT, "Unknown"},
        {"a1 NO [THROTTLED] Slow down\r\n", IMAP_STATUS_NO, IMAP_CODE_THROTTLED, "Slow down"},
        {"a1 OK [READ-ONLY] Examine done\r\n", IMAP_STATUS_OK, IMAP_CODE_READ_ONLY, "Examine done"},
        {"a1 BAD Error in IMAP command: Unknown command.\r\n", IMAP_STATUS_BAD, IMAP_CODE_NONE,
         "Error in IMAP command: Unknown command."},
        {"a1 ok done\n", IMAP_STATUS_OK, IMAP_CODE_NONE, "done"},
        {"a1 OK\r\n", IMAP_STATUS_OK, IMAP_CODE_NONE, ""},
        {"a1 OK [X-FOO bar baz] text\r\n", IMAP_STATUS_OK, IMAP_CODE_OTHER, "text"},
        {"a1 NO [ALERT]\r\n", IMAP_STATUS_NO, IMAP_CODE_ALERT, ""},
        /* status text is free-form: a trailing {n}, a lone quote are text */
        {"a1 NO no such mailbox \"x{5}\r\n", IMAP_STATUS_NO, IMAP_CODE_NONE,
         "no such mailbox \"x{5}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r = parse1(&p, cases[i].line);
        assert_int_equal(r->kind, IMAP_RESP_TAGGED);
        assert_int_equal(r->status, cases[i].status);
        assert_int_equal(r->code.code, cases[i].code);
        assert_text(r->text, r->text_len, cases[i].text);
        imap_resp_parser_free(&p);
    }
    r = parse1(&p, "a1 OK [X-FOO bar baz] text\r\n");
    assert_string_equal(r->code.name, "X-FOO");
    assert_text(r->code.args, r->code.args_len, "bar baz");
    imap_resp_parser_free(&p);
}

static void test_untagged_status_greeting_bye_preauth(void **state)
{
    (void)state;
    imap_resp_parser p;
    const imap_resp *r = parse1(&p, "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID "
                                    "ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot (Debian) ready.\r\n");
    assert_int_equal(r->kind, IMAP_RESP_UNTAGGED);
    assert_int_equal(r->status, IMAP_STATUS_OK);
    assert_int_equal(r->code.code, IMAP_CODE_CAPABILITY);
    assert_int_equal(r->caps, IMAP_CAP_IMAP4REV1 | IMAP_CAP_SASL_IR | IMAP_CAP_ID |
                                  IMAP_CAP_ENABLE | IMAP_CAP_IDLE | IMAP_CAP_LITERAL_PLUS |
                                  IMAP_CAP_AUTH_PLAIN);
    assert_false(r->caps & IMAP_CAP_MOVE);
    assert_text(r->text, r->text_len, "Dovecot (Debian) ready.");
    imap_resp_parser_free(&p);

    r = parse1(&p, "* BYE IMAP session state is inconsistent, please relogin.\r\n");
    assert_int_equal(r->status, IMAP_STATUS_BYE);
    assert_int_equal(r->data, IMAP_DATA_NONE);
    imap_resp_parser_free(&p);

    r = parse1(&p, "* PREAUTH [CAPABILITY IMAP4rev2 MOVE] ok\r\n");
    assert_int_equal(r->status, IMAP_STATUS_PREAUTH);
    assert_int_equal(r->caps, IMAP_CAP_IMAP4REV2 | IMAP_CAP_MOVE);
    imap_resp_parser_free(&p);

    r = parse1(&p, "* NO [ALERT] Mailbox is at 95% of quota\r\n");
    assert_int_equal(r->status, IMAP_STATUS_NO);
    assert_int_equal(r->code.code, IMAP_CODE_ALERT);
    imap_resp_parser_free(&p);

    r = parse1(&p, "* BAD [THROTTLED] too many commands\r\n");
    assert_int_equal(r->status, IMAP_STATUS_BAD);
    assert_int_equal(r->code.code, IMAP_CODE_THROTTLED);
    imap_resp_parser_free(&p);
}

static void test_continuation_forms(void **state)
{
    (void)state;
    imap_resp_parser p;
    const imap_resp *r = parse1(&p, "+ idling\r\n");
    assert_int_equal(r->kind, IMAP_RESP_CONTINUE);
    assert_text(r->text, r->text_len, "idling");
    imap_resp_parser_free(&p);
    r = parse1(&p, "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
    assert_text(r->text, r->text_len, "eyJzdGF0dXMiOiI0MDEifQ==");
    imap_resp_parser_free(&p);
    r = parse1(&p, "+\r\n");
    assert_int_equal(r->kind, IMAP_RESP_CONTINUE);
    assert_int_equal(r->text_len, 0);
    imap_resp_parser_free(&p);
    r = parse1(&p, "+ \r\n");
    assert_int_equal(r->text_len, 0);
    imap_resp_parser_free(&p);
}

static void test_capability_data_after_login(void **state)
{
    (void)state;
    imap_resp_parser p;
    const imap_resp *r =
        parse1(&p, "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ LITERAL- IDLE MOVE UIDPLUS "
                   "SPECIAL-USE NAMESPACE AUTH=XOAUTH2 auth=oauthbearer X-GM-EXT-1 CONDSTORE "
                   "LIST-EXTENDED LIST-STATUS ENABLE UTF8=ACCEPT STARTTLS LOGINDISABLED ID\r\n");
    assert_int_equal(r->data, IMAP_DATA_CAPABILITY);
    unsigned want = IMAP_CAP_IMAP4REV1 | IMAP_CAP_SASL_IR | IMAP_CAP_LITERAL_PLUS |
                    IMAP_CAP_LITERAL_MINUS | IMAP_CAP_IDLE | IMAP_CAP_MOVE | IMAP_CAP_UIDPLUS |
                    IMAP_CAP_SPECIAL_USE | IMAP_CAP_NAMESPACE | IMAP_CAP_AUTH_XOAUTH2 |
                    IMAP_CAP_AUTH_OAUTHBEARER | IMAP_CAP_X_GM_EXT_1 | IMAP_CAP_CONDSTORE |
                    IMAP_CAP_LIST_EXTENDED | IMAP_CAP_LIST_STATUS | IMAP_CAP_ENABLE |
                    IMAP_CAP_UTF8_ACCEPT | IMAP_CAP_STARTTLS | IMAP_CAP_LOGINDISABLED | IMAP_CAP_ID;
    assert_int_equal(r->caps, want);
    assert_false(r->caps & IMAP_CAP_AUTH_PLAIN);
    imap_resp_parser_free(&p);
}

static void test_list_special_use_delimiters_and_names(void **state)
{
    (void)state;
    imap_resp_parser p;
    const imap_resp *r = parse1(&p, "* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n");
    assert_int_equal(r->data, IMAP_DATA_LIST);
    assert_int_equal(r->list.flags, IMAP_MB_HASNOCHILDREN | IMAP_MB_JUNK);
    assert_int_equal(r->list.delim, '/');
    assert_text(r->list.mailbox, r->list.mailbox_len, "Junk");
    imap_resp_parser_free(&p);

    r = parse1(&p, "* LIST (\\Noselect \\HasChildren \\NonExistent) \".\" \"[Gmail]\"\r\n");
    assert_int_equal(r->list.flags, IMAP_MB_NOSELECT | IMAP_MB_HASCHILDREN | IMAP_MB_NONEXISTENT);
    assert_int_equal(r->list.delim, '.');
    assert_text(r->list.mailbox, r->list.mailbox_len, "[Gmail]");
    imap_resp_parser_free(&p);

    r = parse1(&p,
               "* LIST (\\Trash \\Sent \\Drafts \\Archive \\All \\Flagged \\Important "
               "\\Marked \\Unmarked \\Noinferiors \\Subscribed) NIL \"a \\\"q\\\" \\\\ b\"\r\n");
    assert_int_equal(r->list.flags, IMAP_MB_TRASH | IMAP_MB_SENT | IMAP_MB_DRAFTS |
                                        IMAP_MB_ARCHIVE | IMAP_MB_ALL | IMAP_MB_FLAGGED |
                                        IMAP_MB_IMPORTANT | IMAP_MB_MARKED | IMAP_MB_UNMARKED |
                                        IMAP_MB_NOINFERIORS | IMAP_MB_SUBSCRIBED);
    assert_int_equal(r->list.delim, 0);
    assert_text(r->list.mailbox, r->list.mailbox_len, "a \"q\" \\ b");
    imap_resp_parser_free(&p);

    /* a name sent as a literal, and LIST-EXTENDED data after it */
    r = parse1(&p, "* LIST () \"/\" {12}\r\nEntw&APw-rfe (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n");
    assert_text(r->list.mailbox, r->list.mailbox_len, "Entw&APw-rfe");
    assert_int_equal(r->nitems, 4);
    imap_resp_parser_free(&p);

    r = parse1(&p, "* LSUB () \"/\" INBOX\r\n");
    assert_int_equal(r->data, IMAP_DATA_LSUB);
    imap_resp_parser_free(&p);
}

static void test_status_exists_expunge_recent_flags_search(void **state)
{
    (void)state;
    imap_resp_parser p;
    const imap_resp *r =
        parse1(&p, "* STATUS \"Warm up\" (MESSAGES 17 UIDNEXT 4392 UIDVALIDITY 1764730000 "
                   "UNSEEN 0 HIGHESTMODSEQ 18446744073709551615)\r\n");
    assert_int_equal(r->data, IMAP_DATA_STATUS);
    assert_text(r->st.mailbox, r->st.mailbox_len, "Warm up");
    assert_int_equal(r->st.have,
                     IMAP_SI_MESSAGES | IMAP_SI_UIDNEXT | IMAP_SI_UIDVALIDITY | IMAP_SI_UNSEEN);
    assert_int_equal(r->st.messages, 17);
    assert_int_equal(r->st.uidnext, 4392);
    assert_int_equal(r->st.uidvalidity, 1764730000u);
    assert_int_equal(r->st.unseen, 0);
    imap_resp_parser_free(&p);

    static const struct {
        const char *line;
        int data;
        uint32_t n;
    } numbered[] = {
        {"* 0 EXISTS\r\n", IMAP_DATA_EXISTS, 0},
        {"* 4294967295 EXISTS\r\n", IMAP_DATA_EXISTS, 4294967295u},
        {"* 2 EXPUNGE\r\n", IMAP_DATA_EXPUNGE, 2},
        {"* 1 RECENT\r\n", IMAP_DATA_RECENT, 1},
        {"* 5 XFOO bar\r\n", IMAP_DATA_OTHER, 5},
    };
    for (size_t i = 0; i < sizeof numbered / sizeof numbered[0]; i++) {
        r = parse1(&p, numbered[i].line);
        assert_int_equal(r->data, numbered[i].data);
        assert_int_equal(r->number, numbered[i].n);
        imap_resp_parser_free(&p);
    }

    r = parse1(&p, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Warmup)\r\n");
    assert_int_equal(r->data, IMAP_DATA_FLAGS);
    assert_int_equal(r->flags, IMAP_FL_ANSWERED | IMAP_FL_FLAGGED | IMAP_FL_DELETED | IMAP_FL_SEEN |
                                   IMAP_FL_DRAFT);
    imap_resp_parser_free(&p);

    r = parse1(&p, "* OK [PERMANENTFLAGS (\\Seen \\Deleted \\*)] Flags permitted.\r\n");
    assert_int_equal(r->code.code, IMAP_CODE_PERMANENTFLAGS);
    assert_int_equal(r->code.flags, IMAP_FL_SEEN | IMAP_FL_DELETED | IMAP_FL_ANY);
    assert_int_equal(r->code.list->nchild, 3);
    imap_resp_parser_free(&p);

    r = parse1(&p, "* SEARCH 2 5 4294967295\r\n");
    assert_int_equal(r->data, IMAP_DATA_SEARCH);
    assert_int_equal(r->nsearch, 3);
    assert_int_equal(r->search[0], 2);
    assert_int_equal(r->search[2], 4294967295u);
    imap_resp_parser_free(&p);
    r = parse1(&p, "* SEARCH\r\n");
    assert_int_equal(r->data, IMAP_DATA_SEARCH);
    assert_int_equal(r->nsearch, 0);
    imap_resp_parser_free(&p);
    r = parse1(&p, "* SEARCH 7 (MODSEQ 917162500)\r\n");
    assert_int_equal(r->nsearch, 1);
    imap_resp_parser_free(&p);
}

static void test_codes_uidvalidity_uidnext_copyuid_appenduid(void **state)
{
    (void)state;
    imap_resp_parser p;
    const imap_resp *r = parse1(&p, "* OK [UIDVALIDITY 1764730000] UIDs valid\r\n");
    assert_int_equal(r->code.code, IMAP_CODE_UIDVALIDITY);
    assert_int_equal(r->code.number, 1764730000u);
    imap_resp_parser_free(&p);
    r = parse1(&p, "* OK [UIDNEXT 4] Predicted next UID\r\n");
    assert_int_equal(r->code.code, IMAP_CODE_UIDNEXT);
    assert_int_equal(r->code.number, 4);
    imap_resp_parser_free(&p);

    r = parse1(&p, "* OK [COPYUID 1764730001 3:5,9 10:13] Moved UIDs.\r\n");
    assert_int_equal(r->code.code, IMAP_CODE_COPYUID);
    assert_int_equal(r->code.number, 1764730001u);
    assert_string_equal(r->code.src_uids, "3:5,9");
    assert_string_equal(r->code.dst_uids, "10:13");
    uint32_t src[8], dst[8];
    assert_int_equal(imap_uidset_parse(r->code.src_uids, strlen(r->code.src_uids), src, 8), 4);
    assert_int_equal(imap_uidset_parse(r->code.dst_uids, strlen(r->code.dst_uids), dst, 8), 4);
    assert_int_equal(src[3], 9);
    assert_int_equal(dst[3], 13);
    imap_resp_parser_free(&p);

    r = parse1(&p, "K9 OK [APPENDUID 38505 3955] APPEND completed\r\n");
    assert_int_equal(r->code.code, IMAP_CODE_APPENDUID);
    assert_int_equal(r->code.number, 38505);
    assert_string_equal(r->code.dst_uids, "3955");
    imap_resp_parser_free(&p);

    /* uid sets: ranges either way, bounds, malformed */
    uint32_t u[4];
    assert_int_equal(imap_uidset_parse("7:5", 3, u, 4), 3);
    assert_int_equal(u[0], 5);
    assert_int_equal(imap_uidset_parse("1:5", 3, u, 4), -1);
    assert_int_equal(imap_uidset_parse("0", 1, u, 4), -1);
    assert_int_equal(imap_uidset_parse("1,", 2, u, 4), -1);
    assert_int_equal(imap_uidset_parse("4294967296", 10, u, 4), -1);
    assert_int_equal(imap_uidset_parse("*", 1, u, 4), -1);
    assert_int_equal(imap_uidset_parse("", 0, u, 4), -1);
}

static void test_fetch_with_header_literal(void **state)
{
    (void)state;
    imap_resp_parser p;
    const char *s = "* 12 FETCH (UID 4391 FLAGS (\\Seen $Warmup) "
                    "BODY[HEADER.FIELDS (MESSAGE-ID)] {30}\r\n"
                    "Message-ID: <a1@acme.test>\r\n\r\n)\r\n";
    const imap_resp *r = parse1(&p, s);
    assert_int_equal(r->data, IMAP_DATA_FETCH);
    assert_int_equal(r->number, 12);
    assert_true(r->fetch.have_uid);
    assert_int_equal(r->fetch.uid, 4391);
    assert_true(r->fetch.have_flags);
    assert_int_equal(r->fetch.flags, IMAP_FL_SEEN);
    assert_int_equal(r->fetch.flags_list->nchild, 2);
    assert_string_equal(r->fetch.section, "HEADER.FIELDS (MESSAGE-ID)");
    assert_text(r->fetch.body, r->fetch.body_len, "Message-ID: <a1@acme.test>\r\n\r\n");
    assert_non_null(imap_fetch_item(r, "uid"));
    assert_null(imap_fetch_item(r, "X-GM-LABELS"));
    imap_resp_parser_free(&p);

    /* non-synchronising form, NIL body, Gmail labels, an empty literal */
    r = parse1(&p, "* 1 FETCH (UID 9 BODY[HEADER.FIELDS (MESSAGE-ID)] {2+}\r\n\r\n "
                   "X-GM-LABELS (\\Inbox \"Warm up\") RFC822.SIZE 0)\r\n");
    assert_text(r->fetch.body, r->fetch.body_len, "\r\n");
    const imap_node *labels = imap_fetch_item(r, "X-GM-LABELS");
    assert_non_null(labels);
    assert_int_equal(labels->nchild, 2);
    imap_resp_parser_free(&p);
    r = parse1(&p, "* 1 FETCH (UID 9 BODY[] NIL)\r\n");
    assert_null(r->fetch.body);
    assert_string_equal(r->fetch.section, "");
    imap_resp_parser_free(&p);
    r = parse1(&p, "* 1 FETCH (BODY[]<0> {0}\r\n UID 3)\r\n");
    assert_non_null(r->fetch.body);
    assert_int_equal(r->fetch.body_len, 0);
    assert_int_equal(r->fetch.uid, 3);
    imap_resp_parser_free(&p);
}

/* A literal whose bytes look like syntax (CRLF, parentheses, quotes, a literal
 * announcement) is taken as bytes, in every split of the response. */
static void test_fetch_literal_split_at_every_byte(void **state)
{
    (void)state;
    const char *s = "* 3 FETCH (UID 77 BODY[HEADER.FIELDS (MESSAGE-ID SUBJECT)] {56}\r\n"
                    "Message-ID: <x@y>\r\nSubject: a \"b\" (c) {5}\r\n\r\n ) * 1 \r\n\r\n"
                    " FLAGS ())\r\n"
                    "K4 OK Fetch completed.\r\n";
    size_t n = strlen(s);
    buf whole = BUF_INIT;
    assert_int_equal(imap_feed_dump(s, n, n, NULL, &whole), 2);
    assert_null(strstr(whole.data, "ERROR"));
    assert_non_null(strstr(whole.data, "uid=77"));
    assert_non_null(strstr(whole.data, "Subject: a \\x22b\\x22 (c) {5}\\x0d\\x0a"));
    for (size_t step = 1; step < n; step++) {
        buf part = BUF_INIT;
        assert_int_equal(imap_feed_dump(s, n, step, NULL, &part), 2);
        assert_string_equal(part.data, whole.data);
        buf_free(&part);
    }
    /* and split at every single position into two feeds */
    for (size_t cut = 1; cut < n; cut++) {
        imap_resp_parser p;
        imap_resp_parser_init(&p, NULL);
        buf part = BUF_INIT;
        const char *pieces[2] = {s, s + cut};
        size_t lens[2] = {cut, n - cut};
        for (int k = 0; k < 2; k++) {
            size_t pos = 0;
            while (pos < lens[k]) {
                size_t used;
                const imap_resp *r;
                int rc = imap_resp_feed(&p, pieces[k] + pos, lens[k] - pos, &used, &r);
                assert_int_not_equal(rc, IMAP_RESP_ERROR);
                pos += used;
                if (rc == IMAP_RESP_DONE)
                    imap_dump(&part, r);
            }
        }
        assert_string_equal(part.data, whole.data);
        buf_free(&part);
        imap_resp_parser_free(&p);
    }
    buf_free(&whole);
}

static void test_namespace_id_nested_lists_and_nil(void **state)
{
    (void)state;
    imap_resp_parser p;
    const imap_resp *r = parse1(&p, "* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"#shared.\" \".\" "
                                    "\"X-PARAM\" (\"flag1\" \"flag2\")))\r\n");
    assert_int_equal(r->data, IMAP_DATA_NAMESPACE);
    assert_int_equal(r->nitems, 3);
    const imap_node *personal = r->items->child;
    assert_int_equal(personal->type, IMAP_N_LIST);
    assert_true(imap_node_is(personal->child, "INBOX."));
    assert_int_equal(r->items->next->type, IMAP_N_NIL);
    const imap_node *shared = r->items->next->next->child;
    assert_int_equal(shared->nchild, 4);
    assert_int_equal(shared->child->next->next->next->nchild, 2);
    imap_resp_parser_free(&p);

    r = parse1(&p, "* ID (\"name\" \"Dovecot\" \"version\" NIL)\r\n");
    assert_int_equal(r->data, IMAP_DATA_ID);
    assert_int_equal(r->items->nchild, 4);
    imap_resp_parser_free(&p);
    r = parse1(&p, "* ID NIL\r\n");
    assert_int_equal(r->items->type, IMAP_N_NIL);
    imap_resp_parser_free(&p);
    r = parse1(&p, "* ENABLED CONDSTORE\r\n");
    assert_int_equal(r->data, IMAP_DATA_ENABLED);
    imap_resp_parser_free(&p);
    r = parse1(&p, "* ESEARCH (TAG \"K5\") UID ALL 4:7\r\n");
    assert_int_equal(r->data, IMAP_DATA_OTHER);
    assert_string_equal(r->name, "ESEARCH");
    assert_int_equal(r->nitems, 4);
    imap_resp_parser_free(&p);
}

static void test_two_responses_in_one_feed_and_release(void **state)
{
    (void)state;
    const char *s = "* 4 EXISTS\r\nK7 OK Idle completed.\r\n";
    imap_resp_parser p;
    imap_resp_parser_init(&p, NULL);
    size_t used;
    const imap_resp *r;
    assert_int_equal(imap_resp_feed(&p, s, strlen(s), &used, &r), IMAP_RESP_DONE);
    assert_int_equal(used, strlen("* 4 EXISTS\r\n"));
    assert_int_equal(r->data, IMAP_DATA_EXISTS);
    assert_int_equal(imap_resp_feed(&p, s + used, strlen(s) - used, &used, &r), IMAP_RESP_DONE);
    assert_string_equal(r->tag, "K7");
    assert_int_equal(imap_resp_feed(&p, "", 0, &used, &r), IMAP_RESP_NEED_MORE);
    imap_resp_parser_free(&p);

    /* a 1 MiB literal: released on demand, the parser goes on */
    imap_resp_parser_init(&p, NULL);
    buf big = BUF_INIT;
    buf_puts(&big, "* 1 FETCH (BODY[] {1048576}\r\n");
    size_t head = big.len;
    buf_reserve(&big, 1048576);
    memset(big.data + head, 'a', 1048576);
    big.len += 1048576;
    buf_puts(&big, ")\r\n");
    assert_int_equal(imap_resp_feed(&p, big.data, big.len, &used, &r), IMAP_RESP_DONE);
    assert_int_equal(r->fetch.body_len, 1048576);
    assert_true(p.raw.cap > 1048576);
    imap_resp_release(&p);
    assert_int_equal(p.resp.kind, 0);
    assert_true(p.raw.cap <= 64 * 1024);
    imap_resp_release(&p); /* twice is harmless */
    assert_int_equal(imap_resp_feed(&p, "K1 OK x\r\n", 9, &used, &r), IMAP_RESP_DONE);
    assert_string_equal(r->tag, "K1");
    buf_free(&big);
    imap_resp_parser_free(&p);
}

/* Builds the transcript of a whole session, literals counted. */
static void transcript(buf *t)
{
    static const char *const msgids[] = {"<a1@acme.test>", "<k-92.1f@acme.test>", "<x@other.test>"};
    buf_puts(t, "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
                "AUTH=PLAIN] Dovecot (Debian) ready.\r\n"
                "K1 OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE SORT NAMESPACE UIDPLUS "
                "LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH LIST-STATUS BINARY MOVE "
                "SNIPPET=FUZZY LITERAL+ NOTIFY SPECIAL-USE] Logged in\r\n"
                "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
                "* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n"
                "* LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\n"
                "* LIST (\\HasNoChildren) \"/\" \"Warm up\"\r\n"
                "K2 OK List completed (0.001 + 0.000 secs).\r\n"
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] "
                "Flags permitted.\r\n"
                "* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UNSEEN 1] First unseen.\r\n"
                "* OK [UIDVALIDITY 1764730000] UIDs valid\r\n"
                "* OK [UIDNEXT 4] Predicted next UID\r\n"
                "K3 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n");
    for (int i = 0; i < 3; i++) {
        size_t len = strlen("Message-ID: ") + strlen(msgids[i]) + 4;
        buf_printf(t,
                   "* %d FETCH (UID %d FLAGS (\\Recent) BODY[HEADER.FIELDS (MESSAGE-ID)] "
                   "{%zu}\r\nMessage-ID: %s\r\n\r\n)\r\n",
                   i + 1, i + 1, len, msgids[i]);
    }
    buf_puts(t, "K4 OK Fetch completed (0.001 + 0.000 secs).\r\n"
                "K5 OK Create completed.\r\n"
                "* OK [COPYUID 1764730001 2 1] Moved UIDs.\r\n"
                "* 2 EXPUNGE\r\n"
                "K6 OK Move completed.\r\n"
                "+ idling\r\n* 3 EXISTS\r\nK7 OK Idle completed (0.001 + 2.000 secs).\r\n"
                "* BYE Logging out\r\nK8 OK Logout completed.\r\n");
}

static void test_transcript_in_every_split(void **state)
{
    (void)state;
    buf t = BUF_INIT, whole = BUF_INIT;
    transcript(&t);
    assert_int_equal(imap_feed_dump(t.data, t.len, t.len, NULL, &whole), 28);
    assert_null(strstr(whole.data, "ERROR"));
    assert_every_split_alike(&t, &whole);
    buf_free(&t);
    buf_free(&whole);
}

/* The bytes a real Dovecot 2.3 sent in imap_dovecot.sh's session (fuzz_corpus/): every
 * split parses them alike and without an error. */
static void test_real_dovecot_transcript_in_every_split(void **state)
{
    (void)state;
    FILE *f = fopen(KILN_IMAP_CORPUS "/imap_dovecot_session.txt", "rb");
    assert_non_null(f);
    buf t = BUF_INIT, whole = BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&t, chunk, n);
    fclose(f);
    int count = imap_feed_dump(t.data, t.len, t.len, NULL, &whole);
    assert_true(count > 40);
    assert_null(strstr(whole.data, "ERROR"));
    assert_non_null(strstr(whole.data, "name=FETCH"));
    assert_non_null(strstr(whole.data, ":COPYUID["));
    assert_every_split_alike(&t, &whole);
    buf_free(&t);
    buf_free(&whole);
}

static void test_limits_line_literal_depth_items_total(void **state)
{
    (void)state;
    /* default line limit: 64 KiB outside literals */
    size_t n = IMAP_RESP_LINE_MAX + 16;
    char *big = malloc(n + 1);
    memcpy(big, "* OK ", 5);
    memset(big + 5, 'x', n - 7);
    memcpy(big + n - 2, "\r\n", 3);
    const char *e = parse_error(big, n, NULL);
    assert_non_null(e);
    assert_string_equal(e, "response line too long");
    /* just under: fine */
    memcpy(big + IMAP_RESP_LINE_MAX - 2, "\r\n", 2);
    assert_null(parse_error(big, IMAP_RESP_LINE_MAX, NULL));
    free(big);

    /* literal size, announced: refused before a byte of it arrives */
    const char *lit = "* 1 FETCH (BODY[] {16777217}\r\n";
    assert_string_equal(parse_error(lit, strlen(lit), NULL), "literal too large");
    const char *lit11 = "* 1 FETCH (BODY[] {12345678901}\r\n";
    assert_string_equal(parse_error(lit11, strlen(lit11), NULL), "literal too large");

    imap_resp_limits small = {
        .line_max = 64, .literal_max = 8, .total_max = 80, .depth_max = 3, .items_max = 6};
    const char *ok = "* 1 FETCH (UID 1 BODY[] {8}\r\n12345678)\r\n";
    assert_null(parse_error(ok, strlen(ok), &small));
    const char *toolong = "* 1 FETCH (UID 1 BODY[] {9}\r\n123456789)\r\n";
    assert_string_equal(parse_error(toolong, strlen(toolong), &small), "literal too large");
    const char *deep = "* X ((((a))))\r\n";
    assert_string_equal(parse_error(deep, strlen(deep), &small), "lists nested too deep");
    const char *shallow = "* X (((a)))\r\n";
    assert_null(parse_error(shallow, strlen(shallow), &small));
    const char *many = "* X a b c d e f g\r\n";
    assert_string_equal(parse_error(many, strlen(many), &small), "response has too many items");
    const char *total = "* 1 FETCH (A {8}\r\n12345678 B {8}\r\n12345678 C {8}\r\n12345678 "
                        "D {8}\r\n12345678 E {8}\r\n12345678)\r\n";
    assert_string_equal(parse_error(total, strlen(total), &small), "response too large");

    /* default depth: 32 lists nested is one too many */
    buf d = BUF_INIT;
    buf_puts(&d, "* X ");
    for (int i = 0; i < 33; i++)
        buf_putc(&d, '(');
    for (int i = 0; i < 33; i++)
        buf_putc(&d, ')');
    buf_puts(&d, "\r\n");
    assert_string_equal(parse_error(d.data, d.len, NULL), "lists nested too deep");
    buf_reset(&d);
    buf_puts(&d, "* X ");
    for (int i = 0; i < 32; i++)
        buf_putc(&d, '(');
    for (int i = 0; i < 32; i++)
        buf_putc(&d, ')');
    buf_puts(&d, "\r\n");
    assert_null(parse_error(d.data, d.len, NULL));
    buf_free(&d);
}

#define C(s, why)                                                                                  \
    {                                                                                              \
        s, sizeof(s) - 1, why                                                                      \
    }
static void test_malformed_input_is_an_error(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n;
        const char *why;
    } cases[] = {
        C("\r\n", "response without a tag"),
        C("K1\r\n", "response without a tag"),
        C("K1 FOO bar\r\n", "tagged response is not OK, NO or BAD"),
        C("K1 OK\rX\n", "CR not followed by LF"),
        C("* OK a\0b\r\n", "NUL byte in a response line"),
        C("* LIST () \"/\" \"unterminated\r\n", "unterminated quoted string"),
        C("* LIST () \"/\" \"bad\\escape\"\r\n", "bad escape in a quoted string"),
        C("* 1 FETCH (BINARY[] ~{3}\r\nabc)\r\n", "binary literal (~{n}) refused"),
        C("* X (a b\r\n", "unterminated list"),
        C("* X a)\r\n", "expected a space between values"),
        C("* X \"a\"b\r\n", "expected a space between values"),
        C("* 3\r\n", "message number without a keyword"),
        C("* 99999999999 EXISTS\r\n", "bad message number"),
        C("* OK [UIDVALIDITY abc] x\r\n", "malformed arguments of a response code"),
        C("* OK [UIDVALIDITY 0] x\r\n", "malformed arguments of a response code"),
        C("* OK [COPYUID 1 a:b 3] x\r\n", "malformed arguments of a response code"),
        C("* OK [COPYUID 1 2] x\r\n", "malformed arguments of a response code"),
        C("* OK [PERMANENTFLAGS \\Seen] x\r\n", "malformed arguments of a response code"),
        C("* OK [UIDNEXT 5 x\r\n", "malformed response code"),
        C("* OK []\r\n", "malformed response code"),
        C("* 1 FETCH (UID)\r\n", "malformed untagged data"),
        C("* 1 FETCH (UID x)\r\n", "malformed untagged data"),
        C("* 1 FETCH UID 1\r\n", "malformed untagged data"),
        C("* LIST (\\Junk) \"//\" Junk\r\n", "malformed untagged data"),
        C("* LIST () \"/\" NIL\r\n", "malformed untagged data"),
        C("* SEARCH 1 x\r\n", "malformed untagged data"),
        C("* STATUS x (MESSAGES)\r\n", "malformed untagged data"),
        C("* FLAGS \\Seen\r\n", "malformed untagged data"),
        C("* X {3}\r\nab", NULL), /* incomplete: no error, no response */
        C("* X [a b\r\n", "unterminated [ in an atom"),
        C("* X {x}\r\n", "malformed literal"),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *e = parse_error(cases[i].s, cases[i].n, NULL);
        if (!cases[i].why) {
            assert_null(e);
            continue;
        }
        if (!e || strcmp(e, cases[i].why))
            fail_msg("case %zu: expected \"%s\", got \"%s\"", i, cases[i].why, e ? e : "none");
    }
    /* the error is sticky */
    imap_resp_parser p;
    imap_resp_parser_init(&p, NULL);
    size_t used;
    const imap_resp *r;
    assert_int_equal(imap_resp_feed(&p, "K1 FOO\r\n", 8, &used, &r), IMAP_RESP_ERROR);
    assert_int_equal(imap_resp_feed(&p, "K1 OK\r\n", 7, &used, &r), IMAP_RESP_ERROR);
    assert_int_equal(used, 0);
    imap_resp_parser_free(&p);
}

/* Random bytes and mutated transcripts: no crash, and the same result in any split. */
static void test_garbage_never_crashes_and_splits_agree(void **state)
{
    (void)state;
    buf t = BUF_INIT;
    transcript(&t);
    uint32_t seed = 12345;
    for (int round = 0; round < 300; round++) {
        buf in = BUF_INIT;
        buf_append(&in, t.data, t.len);
        for (int k = 0; k < 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % in.len;
            seed = seed * 1103515245u + 12345u;
            in.data[pos] = "(){}\"\\ \r\n0~*+[]x"[(seed >> 8) % 16];
        }
        buf a = BUF_INIT, b = BUF_INIT;
        imap_feed_dump(in.data, in.len, in.len, NULL, &a);
        imap_feed_dump(in.data, in.len, (size_t)(round % 13) + 1, NULL, &b);
        assert_string_equal(a.data ? a.data : "", b.data ? b.data : "");
        buf_free(&a);
        buf_free(&b);
        buf_free(&in);
    }
    buf_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tagged_ok_no_bad_with_codes),
        cmocka_unit_test(test_untagged_status_greeting_bye_preauth),
        cmocka_unit_test(test_continuation_forms),
        cmocka_unit_test(test_capability_data_after_login),
        cmocka_unit_test(test_list_special_use_delimiters_and_names),
        cmocka_unit_test(test_status_exists_expunge_recent_flags_search),
        cmocka_unit_test(test_codes_uidvalidity_uidnext_copyuid_appenduid),
        cmocka_unit_test(test_fetch_with_header_literal),
        cmocka_unit_test(test_fetch_literal_split_at_every_byte),
        cmocka_unit_test(test_namespace_id_nested_lists_and_nil),
        cmocka_unit_test(test_two_responses_in_one_feed_and_release),
        cmocka_unit_test(test_transcript_in_every_split),
        cmocka_unit_test(test_real_dovecot_transcript_in_every_split),
        cmocka_unit_test(test_limits_line_literal_depth_items_total),
        cmocka_unit_test(test_malformed_input_is_an_error),
        cmocka_unit_test(test_garbage_never_crashes_and_splits_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
