/* Unit tests for the IMAP command builder: exact bytes of every command, tags, the
 * atom / quoted / literal choice (LITERAL+, LITERAL-, synchronising literals that stop
 * for "+"), SASL initial responses, uid sets, and the refusal of CR, LF and NUL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "imap_cmd.h"
#include "imap_resp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Takes the whole command (every chunk) and checks the chunk count. */
static void assert_cmd(imap_cmd *c, const char *want, unsigned chunks)
{
    buf out = BUF_INIT;
    unsigned n = 0;
    int rc;
    do {
        rc = imap_cmd_take(c, &out);
        n++;
    } while (rc == IMAP_CMD_WAIT && n < 10);
    assert_string_equal(out.data ? out.data : "", want);
    assert_int_equal(n, chunks);
    buf_free(&out);
}

static void test_simple_commands_and_monotonic_tags(void **state)
{
    (void)state;
    imap_cmdgen g;
    imap_cmd c;
    imap_cmdgen_init(&g);
    imap_cmd_init(&c);
    assert_int_equal(imap_cmd_capability(&g, &c), 0);
    assert_string_equal(c.tag, "K1");
    assert_cmd(&c, "K1 CAPABILITY\r\n", 1);
    imap_cmd_namespace(&g, &c);
    assert_cmd(&c, "K2 NAMESPACE\r\n", 1);
    imap_cmd_noop(&g, &c);
    assert_cmd(&c, "K3 NOOP\r\n", 1);
    imap_cmd_starttls(&g, &c);
    assert_cmd(&c, "K4 STARTTLS\r\n", 1);
    imap_cmd_idle(&g, &c);
    assert_cmd(&c, "K5 IDLE\r\n", 1);
    imap_cmd_logout(&g, &c);
    assert_string_equal(c.tag, "K6");
    assert_cmd(&c, "K6 LOGOUT\r\n", 1);
    buf done = BUF_INIT;
    imap_cmd_idle_done(&done);
    assert_string_equal(done.data, "DONE\r\n");
    buf_free(&done);
    /* a command fully taken gives nothing more */
    buf more = BUF_INIT;
    assert_int_equal(imap_cmd_take(&c, &more), IMAP_CMD_END);
    assert_int_equal(more.len, 0);
    buf_free(&more);
    imap_cmd_free(&c);
}

static void test_login_atom_quoted_and_literal_arguments(void **state)
{
    (void)state;
    imap_cmdgen g;
    imap_cmd c;
    imap_cmdgen_init(&g);
    imap_cmd_init(&c);
    assert_int_equal(imap_cmd_login(&g, &c, "anna@acme.test", "s3cret"), 0);
    assert_cmd(&c, "K1 LOGIN anna@acme.test s3cret\r\n", 1);
    assert_int_equal(imap_cmd_login(&g, &c, "anna", "a \"b\" \\c"), 0);
    assert_cmd(&c, "K2 LOGIN anna \"a \\\"b\\\" \\\\c\"\r\n", 1);
    assert_int_equal(imap_cmd_login(&g, &c, "", "x(y)"), 0);
    assert_cmd(&c, "K3 LOGIN \"\" \"x(y)\"\r\n", 1);
    /* 8-bit: a synchronising literal, the command stops until "+" */
    assert_int_equal(imap_cmd_login(&g, &c, "anna", "pässwort"), 0);
    buf out = BUF_INIT;
    assert_int_equal(imap_cmd_take(&c, &out), IMAP_CMD_WAIT);
    assert_string_equal(out.data, "K4 LOGIN anna {9}\r\n");
    assert_int_equal(imap_cmd_take(&c, &out), IMAP_CMD_END);
    assert_string_equal(out.data, "K4 LOGIN anna {9}\r\npässwort\r\n");
    buf_free(&out);
    /* two literals: two stops */
    assert_int_equal(imap_cmd_login(&g, &c, "änna", "pässwort"), 0);
    assert_cmd(&c, "K5 LOGIN {5}\r\nänna {9}\r\npässwort\r\n", 3);
    /* LITERAL+: no stop */
    g.caps = IMAP_CAP_LITERAL_PLUS;
    assert_int_equal(imap_cmd_login(&g, &c, "änna", "pässwort"), 0);
    assert_cmd(&c, "K6 LOGIN {5+}\r\nänna {9+}\r\npässwort\r\n", 1);
    /* LITERAL-: non-synchronising up to 4096 bytes only */
    g.caps = IMAP_CAP_LITERAL_MINUS;
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[0] = (char)0xc3;
    big[1] = (char)0xa4;
    big[sizeof big - 1] = '\0';
    assert_int_equal(imap_cmd_login(&g, &c, "änna", big), 0);
    assert_non_null(strstr(c.bytes.data, "{5+}\r\n"));
    assert_non_null(strstr(c.bytes.data, "{4999}\r\n"));
    assert_int_equal(c.nstops, 1);
    imap_cmd_free(&c);
}

static void test_cr_lf_nul_refused_and_tag_kept(void **state)
{
    (void)state;
    imap_cmdgen g;
    imap_cmd c;
    imap_cmdgen_init(&g);
    imap_cmd_init(&c);
    assert_int_equal(imap_cmd_login(&g, &c, "anna\r\nK9 DELETE INBOX", "x"), -EINVAL);
    assert_int_equal(c.bytes.len, 0);
    assert_int_equal(imap_cmd_login(&g, &c, "anna", "x\ny"), -EINVAL);
    assert_int_equal(imap_cmd_login(&g, &c, NULL, "x"), -EINVAL);
    assert_int_equal(imap_cmd_select(&g, &c, "IN\0BOX", 6, false), -EINVAL);
    assert_int_equal(imap_cmd_create(&g, &c, "a\rb", 3), -EINVAL);
    assert_int_equal(imap_cmd_create(&g, &c, "", 0), -EINVAL);
    assert_int_equal(imap_cmd_uid_move(&g, &c, "1", "Junk\n", 5), -EINVAL);
    assert_int_equal(imap_cmd_uid_move(&g, &c, "1 2", "Junk", 4), -EINVAL);
    assert_int_equal(imap_cmd_uid_copy(&g, &c, "", "Junk", 4), -EINVAL);
    assert_int_equal(imap_cmd_uid_expunge(&g, &c, "1:*"), -EINVAL);
    const char *flags[] = {"\\Seen", "a b"};
    assert_int_equal(imap_cmd_uid_store(&g, &c, "1", '+', true, flags, 2), -EINVAL);
    const char *flags2[] = {"\\"};
    assert_int_equal(imap_cmd_uid_store(&g, &c, "1", '+', true, flags2, 1), -EINVAL);
    assert_int_equal(imap_cmd_uid_store(&g, &c, "1", 'x', true, flags, 1), -EINVAL);
    const char *fields[] = {"Message-ID:"};
    assert_int_equal(imap_cmd_uid_fetch(&g, &c, "1:*", 0, fields, 1), -EINVAL);
    const char *fields2[] = {"X)Y"};
    assert_int_equal(imap_cmd_uid_fetch(&g, &c, "1:*", 0, fields2, 1), -EINVAL);
    const char *kv[] = {"name", "kiln\r\n"};
    assert_int_equal(imap_cmd_id(&g, &c, kv, 1), -EINVAL);
    assert_int_equal(imap_cmd_uid_search_from(&g, &c, 0), -EINVAL);
    imap_auth a = {.mech = IMAP_SASL_PLAIN, .user = "anna", .secret = "x\r\ny"};
    assert_int_equal(imap_cmd_authenticate(&g, &c, &a), -EINVAL);
    a.secret = "";
    assert_int_equal(imap_cmd_authenticate(&g, &c, &a), -EINVAL);
    a.secret = "ok";
    a.mech = 7;
    assert_int_equal(imap_cmd_authenticate(&g, &c, &a), -EINVAL);
    /* no tag was used by the refusals */
    imap_cmd_capability(&g, &c);
    assert_string_equal(c.tag, "K1");
    imap_cmd_free(&c);
}

static void test_authenticate_plain_xoauth2_oauthbearer(void **state)
{
    (void)state;
    imap_cmdgen g;
    imap_cmd c;
    imap_cmdgen_init(&g);
    imap_cmd_init(&c);
    imap_auth a = {.mech = IMAP_SASL_PLAIN, .user = "anna@acme.test", .secret = "s3cret pw"};
    /* without SASL-IR: the response waits for the server's "+" */
    assert_int_equal(imap_cmd_authenticate(&g, &c, &a), 0);
    assert_cmd(&c, "K1 AUTHENTICATE PLAIN\r\nAGFubmFAYWNtZS50ZXN0AHMzY3JldCBwdw==\r\n", 2);
    g.caps = IMAP_CAP_SASL_IR;
    assert_int_equal(imap_cmd_authenticate(&g, &c, &a), 0);
    assert_cmd(&c, "K2 AUTHENTICATE PLAIN AGFubmFAYWNtZS50ZXN0AHMzY3JldCBwdw==\r\n", 1);
    a.mech = IMAP_SASL_XOAUTH2;
    a.secret = "tok123";
    assert_int_equal(imap_cmd_authenticate(&g, &c, &a), 0);
    assert_cmd(&c,
               "K3 AUTHENTICATE XOAUTH2 "
               "dXNlcj1hbm5hQGFjbWUudGVzdAFhdXRoPUJlYXJlciB0b2sxMjMBAQ==\r\n",
               1);
    a.mech = IMAP_SASL_OAUTHBEARER;
    a.user = "an,na=@acme.test";
    a.host = "imap.acme.test";
    a.port = 993;
    assert_int_equal(imap_cmd_authenticate(&g, &c, &a), 0);
    assert_cmd(&c,
               "K4 AUTHENTICATE OAUTHBEARER "
               "bixhPWFuPTJDbmE9M0RAYWNtZS50ZXN0LAFob3N0PWltYXAuYWNtZS50ZXN0AXBvcnQ9OTkzAWF1dGg9Q"
               "mVhcmVyIHRvazEyMwEB\r\n",
               1);
    buf r = BUF_INIT;
    imap_cmd_sasl_error_reply(IMAP_SASL_OAUTHBEARER, &r);
    imap_cmd_sasl_error_reply(IMAP_SASL_XOAUTH2, &r);
    assert_string_equal(r.data, "AQ==\r\n\r\n");
    buf_free(&r);
    imap_cmd_free(&c);
}

static void test_mailbox_and_message_commands(void **state)
{
    (void)state;
    imap_cmdgen g;
    imap_cmd c;
    imap_cmdgen_init(&g);
    imap_cmd_init(&c);
    const char *kv[] = {"name", "kiln", "version", "0.1 \"beta\""};
    imap_cmd_id(&g, &c, kv, 2);
    assert_cmd(&c, "K1 ID (\"name\" \"kiln\" \"version\" \"0.1 \\\"beta\\\"\")\r\n", 1);
    imap_cmd_id(&g, &c, NULL, 0);
    assert_cmd(&c, "K2 ID NIL\r\n", 1);
    imap_cmd_list(&g, &c, IMAP_LIST_RET_SPECIAL_USE);
    assert_cmd(&c, "K3 LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n", 1);
    imap_cmd_list(&g, &c, 0);
    assert_cmd(&c, "K4 LIST \"\" \"*\"\r\n", 1);
    imap_cmd_select(&g, &c, "INBOX", 5, false);
    assert_cmd(&c, "K5 SELECT INBOX\r\n", 1);
    imap_cmd_select(&g, &c, "Warm up", 7, true);
    assert_cmd(&c, "K6 EXAMINE \"Warm up\"\r\n", 1);
    imap_cmd_create(&g, &c, "INBOX.Entw&APw-rfe", 18);
    assert_cmd(&c, "K7 CREATE INBOX.Entw&APw-rfe\r\n", 1);
    const char *fields[] = {"MESSAGE-ID", "AUTHENTICATION-RESULTS"};
    imap_cmd_uid_fetch(&g, &c, "4392:*", IMAP_FETCH_FLAGS, fields, 2);
    assert_cmd(&c,
               "K8 UID FETCH 4392:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID "
               "AUTHENTICATION-RESULTS)])\r\n",
               1);
    imap_cmd_uid_fetch(&g, &c, "7,9",
                       IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_GM_LABELS, NULL, 0);
    assert_cmd(&c, "K9 UID FETCH 7,9 (UID FLAGS INTERNALDATE X-GM-LABELS)\r\n", 1);
    imap_cmd_uid_search_from(&g, &c, 4392);
    assert_cmd(&c, "K10 UID SEARCH UID 4392:*\r\n", 1);
    imap_cmd_uid_move(&g, &c, "3:5,9", "INBOX", 5);
    assert_cmd(&c, "K11 UID MOVE 3:5,9 INBOX\r\n", 1);
    imap_cmd_uid_copy(&g, &c, "12", "[Gmail]/Spam", 12);
    assert_cmd(&c, "K12 UID COPY 12 \"[Gmail]/Spam\"\r\n", 1);
    const char *flags[] = {"\\Seen", "\\Flagged"};
    imap_cmd_uid_store(&g, &c, "12", '+', true, flags, 2);
    assert_cmd(&c, "K13 UID STORE 12 +FLAGS.SILENT (\\Seen \\Flagged)\r\n", 1);
    const char *del[] = {"\\Deleted"};
    imap_cmd_uid_store(&g, &c, "12", '-', false, del, 1);
    assert_cmd(&c, "K14 UID STORE 12 -FLAGS (\\Deleted)\r\n", 1);
    const char *kw[] = {"$Warmup"};
    imap_cmd_uid_store(&g, &c, "12", 0, false, kw, 1);
    assert_cmd(&c, "K15 UID STORE 12 FLAGS ($Warmup)\r\n", 1);
    imap_cmd_uid_expunge(&g, &c, "12,14");
    assert_cmd(&c, "K16 UID EXPUNGE 12,14\r\n", 1);
    /* an 8-bit mailbox name (a server with UTF8=ACCEPT) goes as a literal */
    imap_cmd_uid_move(&g, &c, "1", "Entwürfe", 9);
    assert_cmd(&c, "K17 UID MOVE 1 {9}\r\nEntwürfe\r\n", 2);
    /* LIST-STATUS (RFC 5819), with and without SPECIAL-USE */
    imap_cmd_list(&g, &c, IMAP_LIST_RET_SPECIAL_USE | IMAP_LIST_RET_STATUS);
    assert_cmd(&c, "K18 LIST \"\" \"*\" RETURN (SPECIAL-USE STATUS (UIDNEXT UIDVALIDITY))\r\n", 1);
    imap_cmd_list(&g, &c, IMAP_LIST_RET_STATUS);
    assert_cmd(&c, "K19 LIST \"\" \"*\" RETURN (STATUS (UIDNEXT UIDVALIDITY))\r\n", 1);
    imap_cmd_free(&c);
}

static void test_uidset_build_sorts_ranges_and_round_trips(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    uint32_t u1[] = {7, 3, 4, 5, 9};
    assert_int_equal(imap_uidset_build(&b, u1, 5), 0);
    assert_string_equal(b.data, "3:5,7,9");
    buf_reset(&b);
    uint32_t u2[] = {2, 2, 1, 1, 4294967295u};
    assert_int_equal(imap_uidset_build(&b, u2, 5), 0);
    assert_string_equal(b.data, "1:2,4294967295");
    buf_reset(&b);
    uint32_t u3[] = {42};
    assert_int_equal(imap_uidset_build(&b, u3, 1), 0);
    assert_string_equal(b.data, "42");
    buf_reset(&b);
    uint32_t u4[] = {1, 0};
    assert_int_equal(imap_uidset_build(&b, u4, 2), -EINVAL);
    assert_int_equal(imap_uidset_build(&b, u4, 0), -EINVAL);
    assert_int_equal(b.len, 0);
    /* random sets: parse(build(x)) is x sorted without duplicates */
    uint32_t seed = 7;
    for (int round = 0; round < 200; round++) {
        uint32_t in[64], back[256];
        size_t n = (size_t)(round % 64) + 1;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            in[i] = (seed >> 16) % 100 + 1;
        }
        buf_reset(&b);
        assert_int_equal(imap_uidset_build(&b, in, n), 0);
        long got = imap_uidset_parse(b.data, b.len, back, 256);
        assert_true(got > 0);
        for (long i = 1; i < got; i++)
            assert_true(back[i - 1] < back[i]);
        for (size_t i = 0; i < n; i++) {
            bool found = false;
            for (long k = 0; k < got; k++)
                found = found || back[k] == in[i];
            assert_true(found);
        }
    }
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_commands_and_monotonic_tags),
        cmocka_unit_test(test_login_atom_quoted_and_literal_arguments),
        cmocka_unit_test(test_cr_lf_nul_refused_and_tag_kept),
        cmocka_unit_test(test_authenticate_plain_xoauth2_oauthbearer),
        cmocka_unit_test(test_mailbox_and_message_commands),
        cmocka_unit_test(test_uidset_build_sorts_ranges_and_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
