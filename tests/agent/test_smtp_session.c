/* Unit tests for the SMTP session machine: each state's transitions on success and
 * on each failure class, PIPELINING groups, STARTTLS, AUTH mechanisms, several
 * messages per session, SMTPUTF8, and byte-by-byte server input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "smtp_session.h"

#include <stdio.h>
#include <string.h>

#define PAYLOAD "Subject: x\r\n\r\nhi\r\n.\r\n"

typedef struct fixture {
    smtp_session s;
    smtp_slot slots[3];
    smtp_session_params p;
} fixture;

static void setup(fixture *f, int security, const char *user, const char *pass, const char *token,
                  size_t nslots)
{
    memset(f, 0, sizeof *f);
    const char *rcpts[] = {"r1@x.test", "r2@x.test", "r3@x.test"};
    for (size_t i = 0; i < nslots; i++) {
        f->slots[i].rcpt = rcpts[i];
        f->slots[i].payload = PAYLOAD;
        f->slots[i].payload_len = strlen(PAYLOAD);
    }
    f->p = (smtp_session_params){.helo_name = "agent.test",
                                 .mail_from = "from@a.test",
                                 .security = security,
                                 .username = user,
                                 .password = pass,
                                 .oauth_token = token};
    smtp_session_init(&f->s, &f->p, f->slots, nslots);
}

/* setup() with the sender and recipients given (UTF-8 allowed). */
static void setup_addrs(fixture *f, const char *from, const char *const *rcpts, size_t nslots)
{
    setup(f, SMTP_SEC_PLAIN, NULL, NULL, NULL, nslots);
    f->p.mail_from = from;
    for (size_t i = 0; i < nslots; i++)
        f->slots[i].rcpt = rcpts[i];
    smtp_session_init(&f->s, &f->p, f->slots, nslots);
}

/* Feeds a server reply and checks the client's answer (exact bytes). */
static int step(fixture *f, const char *server, const char *expect_out, int expect_state)
{
    int ev = smtp_session_feed(&f->s, server, strlen(server), 42);
    buf *out = smtp_session_output(&f->s);
    const char *got = out->data ? out->data : "";
    if (strcmp(got, expect_out))
        fail_msg("after %s expected client to send [%s], got [%s]", server, expect_out, got);
    if (f->s.state != expect_state)
        fail_msg("after %s expected state %s, got %s", server, smtp_state_name(expect_state),
                 smtp_state_name(f->s.state));
    buf_reset(out);
    return ev;
}

static const char *EHLO_PIPE = "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
static const char *EHLO_PLAIN = "250-mx.test\r\n250 SIZE 100\r\n";

static void test_pipelined_send_with_quit_after_the_message(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    step(&f, "220 mx ESMTP\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PIPE, "MAIL FROM:<from@a.test>\r\nRCPT TO:<r1@x.test>\r\nDATA\r\n", SMTP_S_MAIL);
    step(&f, "250 2.1.0 ok\r\n", "", SMTP_S_RCPT);
    step(&f, "250 2.1.5 ok\r\n", "", SMTP_S_DATA);
    step(&f, "354 go\r\n", PAYLOAD "QUIT\r\n", SMTP_S_DOT);
    step(&f, "250 2.0.0 queued as X\r\n", "", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_SENT);
    assert_int_equal(f.slots[0].code, 250);
    assert_string_equal(f.slots[0].enhanced, "2.0.0");
    assert_string_equal(f.slots[0].detail, "queued as X");
    int ev = step(&f, "221 bye\r\n", "", SMTP_S_DONE);
    assert_true(ev & SMTP_EV_DONE);
    smtp_session_clear(&f.s);
}

static void test_unpipelined_send_steps_one_command_at_a_time(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PLAIN, "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
    step(&f, "250 ok\r\n", "RCPT TO:<r1@x.test>\r\n", SMTP_S_RCPT);
    step(&f, "251 forwarded\r\n", "DATA\r\n", SMTP_S_DATA);
    step(&f, "354 go\r\n", PAYLOAD, SMTP_S_DOT);
    step(&f, "250 ok\r\n", "QUIT\r\n", SMTP_S_QUIT);
    step(&f, "221 bye\r\n", "", SMTP_S_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_SENT);
    smtp_session_clear(&f.s);
}

/* One slot, pipelined, up to its payload (and QUIT) queued; after is what else came in
 * the 354's read. */
static void to_dot_pipelined(fixture *f, const char *after)
{
    char last[64];
    snprintf(last, sizeof last, "250 ok\r\n250 ok\r\n354 go\r\n%s", after);
    setup(f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    step(f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(f, EHLO_PIPE, "MAIL FROM:<from@a.test>\r\nRCPT TO:<r1@x.test>\r\nDATA\r\n", SMTP_S_MAIL);
    step(f, last, PAYLOAD "QUIT\r\n", SMTP_S_DOT);
}

/* A reply while the message's end is still in our buffers (out_pending, set by net/)
 * answers nothing the server has seen end: never `sent`; a 5xx then stands, anything
 * else is unknown (the rest still goes out as the session closes). A reply begun early
 * and completed after the payload left is early too, and so is one whose first bytes
 * came in the 354's read. And a 2xx other than 250 to the end of data (the pipelined
 * QUIT's 221) is not acceptance. */
static void test_no_acceptance_before_the_end_left_or_from_a_221(void **state)
{
    (void)state;
    static const char *const replies[] = {"250 2.0.0 queued\r\n", "552 5.3.4 too big\r\n",
                                          "451 4.3.0 later\r\n"};
    static const int want[] = {SMTP_ST_UNKNOWN, SMTP_ST_FAILED, SMTP_ST_UNKNOWN};
    for (size_t i = 0; i < 3; i++) {
        fixture f;
        setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 2);
        step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
        step(&f, EHLO_PLAIN, "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
        step(&f, "250 ok\r\n", "RCPT TO:<r1@x.test>\r\n", SMTP_S_RCPT);
        step(&f, "250 ok\r\n", "DATA\r\n", SMTP_S_DATA);
        step(&f, "354 go\r\n", PAYLOAD, SMTP_S_DOT);
        f.s.out_pending = true; /* the payload is still being written */
        int ev = step(&f, replies[i], "", SMTP_S_DONE);
        assert_true(ev & SMTP_EV_DONE);
        assert_int_equal(f.slots[0].status, want[i]);
        assert_int_equal(f.slots[1].status, SMTP_ST_DEFERRED); /* never started */
        smtp_session_clear(&f.s);
    }

    fixture f;
    to_dot_pipelined(&f, "");
    step(&f, "221 2.0.0 bye\r\n", "", SMTP_S_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_UNKNOWN);
    smtp_session_clear(&f.s);

    /* begun while the payload was ours, completed once it had left */
    to_dot_pipelined(&f, "");
    f.s.out_pending = true;
    step(&f, "250 early-", "", SMTP_S_DOT);
    f.s.out_pending = false;
    step(&f, "part\r\n", "", SMTP_S_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_UNKNOWN);
    smtp_session_clear(&f.s);

    /* its first bytes in the 354's own read, before the payload was queued */
    to_dot_pipelined(&f, "25");
    step(&f, "0 ok\r\n", "", SMTP_S_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_UNKNOWN);
    smtp_session_clear(&f.s);
}

static void test_ehlo_refused_falls_back_to_helo(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "502 5.5.2 what\r\n", "HELO agent.test\r\n", SMTP_S_HELO);
    step(&f, "250 hi\r\n", "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
    smtp_session_clear(&f.s);
}

static void test_greeting_failures_are_classified(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 2);
    step(&f, "421 4.3.2 busy\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_DEFERRED);
    assert_int_equal(f.slots[1].status, SMTP_ST_DEFERRED);
    assert_int_equal(f.slots[1].code, 421);
    smtp_session_clear(&f.s);

    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    step(&f, "554 no service\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_FAILED);
    smtp_session_clear(&f.s);

    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "421 closing\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_DEFERRED);
    smtp_session_clear(&f.s);
}

static void test_starttls_upgrade_ignores_injected_plaintext(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_STARTTLS, NULL, NULL, NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "250-mx\r\n250 STARTTLS\r\n", "STARTTLS\r\n", SMTP_S_STARTTLS);
    /* bytes after the 220 were sent before TLS: they must not be taken as replies */
    int ev = step(&f, "220 go ahead\r\n250 injected\r\n", "", SMTP_S_TLS_WAIT);
    assert_true(ev & SMTP_EV_STARTTLS);
    ev = smtp_session_tls_ready(&f.s);
    assert_true(ev & SMTP_EV_OUTPUT);
    assert_string_equal(smtp_session_output(&f.s)->data, "EHLO agent.test\r\n");
    buf_reset(smtp_session_output(&f.s));
    assert_true(f.s.tls_active);
    step(&f, EHLO_PLAIN, "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
    smtp_session_clear(&f.s);
}

static void test_starttls_missing_or_refused(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_STARTTLS, NULL, NULL, NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PLAIN, "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_TLS);
    smtp_session_clear(&f.s);

    setup(&f, SMTP_SEC_STARTTLS, NULL, NULL, NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "250 STARTTLS\r\n", "STARTTLS\r\n", SMTP_S_STARTTLS);
    step(&f, "454 4.7.0 not now\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_DEFERRED);
    smtp_session_clear(&f.s);
}

static void test_auth_plain_success_and_rejection(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_TLS, "u", "p", NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    /* base64("\0u\0p") = AHUAcA== */
    step(&f, "250-mx\r\n250 AUTH LOGIN PLAIN\r\n", "AUTH PLAIN AHUAcA==\r\n", SMTP_S_AUTH);
    step(&f, "235 2.7.0 ok\r\n", "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
    smtp_session_clear(&f.s);

    /* smtp-sink and some others answer AUTH with 250: still a success (2xx). */
    setup(&f, SMTP_SEC_TLS, "u", "p", NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "250 AUTH PLAIN\r\n", "AUTH PLAIN AHUAcA==\r\n", SMTP_S_AUTH);
    step(&f, "250 2.0.0 Ok\r\n", "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
    smtp_session_clear(&f.s);

    setup(&f, SMTP_SEC_TLS, "u", "p", NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "250 AUTH PLAIN\r\n", "AUTH PLAIN AHUAcA==\r\n", SMTP_S_AUTH);
    step(&f, "535 5.7.8 bad credentials\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_AUTH);
    assert_int_equal(f.slots[0].code, 535);
    assert_string_equal(f.slots[0].enhanced, "5.7.8");
    smtp_session_clear(&f.s);

    setup(&f, SMTP_SEC_TLS, "u", "p", NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "250 AUTH PLAIN\r\n", "AUTH PLAIN AHUAcA==\r\n", SMTP_S_AUTH);
    step(&f, "454 4.7.0 temp\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_DEFERRED);
    smtp_session_clear(&f.s);
}

static void test_auth_login_and_xoauth2(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_TLS, "u", "p", NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "250 AUTH LOGIN\r\n", "AUTH LOGIN\r\n", SMTP_S_AUTH);
    step(&f, "334 VXNlcm5hbWU6\r\n", "dQ==\r\n", SMTP_S_AUTH_USER);
    step(&f, "334 UGFzc3dvcmQ6\r\n", "cA==\r\n", SMTP_S_AUTH_PASS);
    step(&f, "235 ok\r\n", "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
    smtp_session_clear(&f.s);

    setup(&f, SMTP_SEC_TLS, "u", NULL, "t", 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    /* base64("user=u\1auth=Bearer t\1\1") */
    step(&f, "250 AUTH XOAUTH2 PLAIN\r\n", "AUTH XOAUTH2 dXNlcj11AWF1dGg9QmVhcmVyIHQBAQ==\r\n",
         SMTP_S_AUTH);
    step(&f, "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n", "\r\n", SMTP_S_AUTH);
    step(&f, "535 5.7.8 no\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_AUTH);
    smtp_session_clear(&f.s);

    setup(&f, SMTP_SEC_TLS, "u", "p", NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PLAIN, "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_AUTH);
    smtp_session_clear(&f.s);
}

static void test_transaction_failures_settle_only_their_slot(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 3);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PLAIN, "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
    step(&f, "250 ok\r\n", "RCPT TO:<r1@x.test>\r\n", SMTP_S_RCPT);
    step(&f, "550 5.1.1 no such user\r\n", "RSET\r\n", SMTP_S_RSET);
    step(&f, "250 ok\r\n", "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
    step(&f, "451 4.3.0 later\r\n", "RSET\r\n", SMTP_S_RSET);
    step(&f, "250 ok\r\n", "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
    step(&f, "250 ok\r\n", "RCPT TO:<r3@x.test>\r\n", SMTP_S_RCPT);
    step(&f, "250 ok\r\n", "DATA\r\n", SMTP_S_DATA);
    step(&f, "554 5.6.0 no data\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_FAILED);
    assert_string_equal(f.slots[0].detail, "RCPT: no such user");
    assert_int_equal(f.slots[1].status, SMTP_ST_DEFERRED);
    assert_int_equal(f.slots[2].status, SMTP_ST_FAILED);
    smtp_session_clear(&f.s);
}

static void test_two_messages_in_one_pipelined_session(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 2);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PIPE, "MAIL FROM:<from@a.test>\r\nRCPT TO:<r1@x.test>\r\nDATA\r\n", SMTP_S_MAIL);
    step(&f, "250 ok\r\n250 ok\r\n354 go\r\n", PAYLOAD, SMTP_S_DOT);
    step(&f, "452 4.3.1 full\r\n", "RSET\r\n", SMTP_S_RSET);
    step(&f, "250 ok\r\n", "MAIL FROM:<from@a.test>\r\nRCPT TO:<r2@x.test>\r\nDATA\r\n",
         SMTP_S_MAIL);
    step(&f, "250 ok\r\n250 ok\r\n354 go\r\n", PAYLOAD "QUIT\r\n", SMTP_S_DOT);
    step(&f, "250 ok\r\n221 bye\r\n", "", SMTP_S_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_DEFERRED);
    assert_int_equal(f.slots[1].status, SMTP_ST_SENT);
    smtp_session_clear(&f.s);
}

static void test_pipelined_group_with_refused_rcpt(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PIPE, "MAIL FROM:<from@a.test>\r\nRCPT TO:<r1@x.test>\r\nDATA\r\n", SMTP_S_MAIL);
    step(&f, "250 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n", "QUIT\r\n",
         SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_FAILED);
    assert_int_equal(f.slots[0].code, 550);
    smtp_session_clear(&f.s);

    /* a server that says 354 anyway gets an empty message ended at once */
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PIPE, "MAIL FROM:<from@a.test>\r\nRCPT TO:<r1@x.test>\r\nDATA\r\n", SMTP_S_MAIL);
    step(&f, "250 ok\r\n550 unknown\r\n354 go\r\n", ".\r\n", SMTP_S_DOT);
    step(&f, "250 ok\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_FAILED);
    smtp_session_clear(&f.s);
}

#define UTF8_RCPT "jos\xc3\xa9@ex\xc3\xa4mple.test" /* josé@exämple.test */
#define UTF8_FROM "\xe7\x94\xa8\xe6\x88\xb7@a.test" /* 用户@a.test */
static const char *EHLO_UTF8 = "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n";
static const char *EHLO_UTF8_NOPIPE = "250-mx.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n";

static void test_smtputf8_parameter_only_on_utf8_envelopes(void **state)
{
    (void)state;
    fixture f;
    const char *mixed[] = {UTF8_RCPT, "r2@x.test"};
    setup_addrs(&f, "from@a.test", mixed, 2);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_UTF8, "MAIL FROM:<from@a.test> SMTPUTF8\r\nRCPT TO:<" UTF8_RCPT ">\r\nDATA\r\n",
         SMTP_S_MAIL);
    step(&f, "250 ok\r\n250 ok\r\n354 go\r\n", PAYLOAD, SMTP_S_DOT);
    step(&f, "250 ok\r\n", "MAIL FROM:<from@a.test>\r\nRCPT TO:<r2@x.test>\r\nDATA\r\n",
         SMTP_S_MAIL);
    step(&f, "250 ok\r\n250 ok\r\n354 go\r\n", PAYLOAD "QUIT\r\n", SMTP_S_DOT);
    step(&f, "250 ok\r\n221 bye\r\n", "", SMTP_S_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_SENT);
    assert_int_equal(f.slots[1].status, SMTP_ST_SENT);
    smtp_session_clear(&f.s);

    /* an ASCII-only session never adds it, even when the server offers it */
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_UTF8, "MAIL FROM:<from@a.test>\r\nRCPT TO:<r1@x.test>\r\nDATA\r\n", SMTP_S_MAIL);
    smtp_session_clear(&f.s);

    /* a UTF-8 sender puts it on every transaction; unpipelined, RCPT follows MAIL */
    const char *ascii[] = {"r1@x.test"};
    setup_addrs(&f, UTF8_FROM, ascii, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_UTF8_NOPIPE, "MAIL FROM:<" UTF8_FROM "> SMTPUTF8\r\n", SMTP_S_MAIL);
    step(&f, "250 ok\r\n", "RCPT TO:<r1@x.test>\r\n", SMTP_S_RCPT);
    smtp_session_clear(&f.s);
}

static void test_utf8_slot_fails_when_server_lacks_smtputf8(void **state)
{
    (void)state;
    fixture f;
    /* the UTF-8 slot is settled before any MAIL; the ASCII one is sent */
    const char *mixed[] = {UTF8_RCPT, "r2@x.test"};
    setup_addrs(&f, "from@a.test", mixed, 2);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PIPE, "MAIL FROM:<from@a.test>\r\nRCPT TO:<r2@x.test>\r\nDATA\r\n", SMTP_S_MAIL);
    assert_int_equal(f.slots[0].status, SMTP_ST_FAILED);
    assert_int_equal(f.slots[0].code, 0);
    assert_string_equal(f.slots[0].enhanced, "");
    assert_string_equal(f.slots[0].detail,
                        "recipient needs SMTPUTF8, which the server does not offer");
    assert_int_equal(f.slots[0].done_ms, 42);
    step(&f, "250 ok\r\n250 ok\r\n354 go\r\n", PAYLOAD "QUIT\r\n", SMTP_S_DOT);
    step(&f, "250 ok\r\n221 bye\r\n", "", SMTP_S_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_FAILED);
    assert_int_equal(f.slots[1].status, SMTP_ST_SENT);
    smtp_session_clear(&f.s);

    /* a refused slot after the last ASCII one still lets QUIT follow that message */
    const char *last[] = {"r1@x.test", UTF8_RCPT};
    setup_addrs(&f, "from@a.test", last, 2);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PIPE, "MAIL FROM:<from@a.test>\r\nRCPT TO:<r1@x.test>\r\nDATA\r\n", SMTP_S_MAIL);
    step(&f, "250 ok\r\n250 ok\r\n354 go\r\n", PAYLOAD "QUIT\r\n", SMTP_S_DOT);
    assert_int_equal(f.slots[1].status, SMTP_ST_FAILED);
    smtp_session_clear(&f.s);

    /* a UTF-8 sender: nothing can go, so no AUTH and no MAIL, just QUIT */
    const char *ascii[] = {"r1@x.test", "r2@x.test"};
    setup_addrs(&f, UTF8_FROM, ascii, 2);
    f.p.username = "u";
    f.p.password = "p";
    smtp_session_init(&f.s, &f.p, f.slots, 2);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "250-mx.test\r\n250 AUTH PLAIN\r\n", "QUIT\r\n", SMTP_S_QUIT);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f.slots[i].status, SMTP_ST_FAILED);
        assert_string_equal(f.slots[i].detail,
                            "sender needs SMTPUTF8, which the server does not offer");
    }
    step(&f, "221 bye\r\n", "", SMTP_S_DONE);
    smtp_session_clear(&f.s);

    /* HELO (no extensions at all) is the same as an EHLO without SMTPUTF8 */
    const char *one[] = {UTF8_RCPT};
    setup_addrs(&f, "from@a.test", one, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "500 what\r\n", "HELO agent.test\r\n", SMTP_S_HELO);
    step(&f, "250 hi\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_FAILED);
    smtp_session_clear(&f.s);
}

static void test_smtputf8_is_judged_on_the_ehlo_after_starttls(void **state)
{
    (void)state;
    fixture f;
    const char *one[] = {UTF8_RCPT};
    setup_addrs(&f, "from@a.test", one, 1);
    f.p.security = SMTP_SEC_STARTTLS;
    smtp_session_init(&f.s, &f.p, f.slots, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    /* the plaintext EHLO lacks SMTPUTF8: too early to refuse the slot */
    step(&f, "250-mx\r\n250 STARTTLS\r\n", "STARTTLS\r\n", SMTP_S_STARTTLS);
    assert_int_equal(f.slots[0].status, SMTP_ST_PENDING);
    step(&f, "220 go\r\n", "", SMTP_S_TLS_WAIT);
    smtp_session_tls_ready(&f.s);
    buf_reset(smtp_session_output(&f.s));
    step(&f, EHLO_UTF8_NOPIPE, "MAIL FROM:<from@a.test> SMTPUTF8\r\n", SMTP_S_MAIL);
    smtp_session_clear(&f.s);
}

static void test_eof_abort_and_malformed_reply_defer(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PLAIN, "MAIL FROM:<from@a.test>\r\n", SMTP_S_MAIL);
    smtp_session_eof(&f.s, 7);
    assert_int_equal(f.s.state, SMTP_S_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_DEFERRED);
    assert_string_equal(f.slots[0].detail, "connection closed by server");
    smtp_session_clear(&f.s);

    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    smtp_session_abort(&f.s, SMTP_ST_TLS, "certificate verification failed", 9);
    assert_int_equal(f.slots[0].status, SMTP_ST_TLS);
    assert_int_equal(f.s.state, SMTP_S_DONE);
    smtp_session_clear(&f.s);

    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    int ev = step(&f, "HTTP/1.1 400 Bad\r\n", "", SMTP_S_DONE);
    assert_true(ev & SMTP_EV_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_DEFERRED);
    assert_non_null(strstr(f.slots[0].detail, "malformed reply"));
    smtp_session_clear(&f.s);
}

/* A hostile or broken server's whole dialogue: chunks fed in turn (each chunk one
 * read), then the connection ends as `end` says. */
enum end_how { END_EOF, END_TIMEOUT, END_NONE };
typedef struct dialogue {
    const char *name;
    int security;
    size_t nslots;
    const char *chunks[12];
    int end;
    int want[3];          /* final status of each slot */
    int payloads_sent;    /* full messages the client wrote */
    const char *want_out; /* a string the client must have written, or NULL */
} dialogue;

static int count_of(const char *hay, size_t n, const char *needle)
{
    int k = 0;
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= n; i++)
        if (!memcmp(hay + i, needle, nl))
            k++;
    return k;
}

static void run_dialogue(const dialogue *d)
{
    fixture f;
    setup(&f, d->security, NULL, NULL, NULL, d->nslots);
    buf all = BUF_INIT;
    for (size_t i = 0; i < 12 && d->chunks[i]; i++) {
        if (f.s.state == SMTP_S_DONE)
            break;
        smtp_session_feed(&f.s, d->chunks[i], strlen(d->chunks[i]), 100 + (int64_t)i);
        if (f.s.state == SMTP_S_GATE)
            smtp_session_payload_go(&f.s, true, NULL, 100);
        buf *out = smtp_session_output(&f.s);
        buf_append(&all, out->data ? out->data : "", out->len);
        buf_reset(out);
    }
    if (f.s.state != SMTP_S_DONE && d->end == END_EOF)
        smtp_session_eof(&f.s, 200);
    else if (f.s.state != SMTP_S_DONE && d->end == END_TIMEOUT)
        smtp_session_abort(&f.s, SMTP_ST_DEFERRED, "timeout", 200);
    for (size_t k = 0; k < d->nslots; k++)
        if (f.slots[k].status != d->want[k])
            fail_msg("%s: slot %zu expected %s, got %s (%d %s)", d->name, k,
                     smtp_status_name(d->want[k]), smtp_status_name(f.slots[k].status),
                     f.slots[k].code, f.slots[k].detail);
    int payloads = count_of(all.data ? all.data : "", all.len, "Subject: x\r\n");
    if (payloads != d->payloads_sent)
        fail_msg("%s: expected %d payloads written, got %d: [%.*s]", d->name, d->payloads_sent,
                 payloads, (int)all.len, all.data ? all.data : "");
    if (d->want_out && !strstr(all.data ? all.data : "", d->want_out))
        fail_msg("%s: expected the client to write [%s], got [%.*s]", d->name, d->want_out,
                 (int)all.len, all.data ? all.data : "");
    buf_free(&all);
    smtp_session_clear(&f.s);
}

#define D SMTP_ST_DEFERRED
#define S SMTP_ST_SENT
#define F SMTP_ST_FAILED
#define U SMTP_ST_UNKNOWN

/* The hardening issue's cases: `sent` only from a 2xx to the slot's own final dot. */
static void test_sent_only_from_a_2xx_to_the_final_dot(void **state)
{
    (void)state;
    const dialogue cases[] = {
        {"greeting 250 then close", SMTP_SEC_PLAIN, 1, {"250 ready\r\n"}, END_EOF, {D}, 0, "EHLO"},
        {"greeting doubled in one read",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n220 b\r\n", EHLO_PLAIN},
         END_EOF,
         {D},
         0,
         NULL},
        {"greeting doubled in two reads",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", "220 b\r\n", EHLO_PIPE, "250 mail\r\n", "250 rcpt\r\n", "354 go\r\n",
          "250 queued\r\n"},
         END_EOF,
         {D},
         0,
         NULL},
        {"EHLO answered 252 then close",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", "252 hm\r\n"},
         END_EOF,
         {D},
         0,
         "MAIL FROM"},
        {"MAIL answered 251 then close",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", EHLO_PLAIN, "251 ok\r\n"},
         END_EOF,
         {D},
         0,
         "RCPT TO"},
        {"DATA answered 250",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", EHLO_PLAIN, "250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "250 ok\r\n"},
         END_EOF,
         {D},
         0,
         NULL},
        {"extra 250 after the EHLO reply, one read",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", "250-mx\r\n250 PIPELINING\r\n250 extra\r\n", "250 ok\r\n"},
         END_EOF,
         {D},
         0,
         NULL},
        {"extra 250 after the EHLO reply, next read",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", EHLO_PIPE, "250 extra\r\n", "250 mail\r\n", "250 rcpt\r\n", "354 go\r\n",
          "250 queued\r\n"},
         END_EOF,
         {D},
         0,
         NULL},
        {"extra 250 after the EHLO reply, unpipelined",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", EHLO_PLAIN, "250 extra\r\n", "250 mail\r\n", "250 rcpt\r\n", "354 go\r\n",
          "250 queued\r\n"},
         END_EOF,
         {D},
         0,
         NULL},
        {"RCPT 252 under PIPELINING is an acceptance",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", EHLO_PIPE, "250 ok\r\n252 cannot verify\r\n354 go\r\n", "250 queued\r\n",
          "221 bye\r\n"},
         END_EOF,
         {S},
         1,
         NULL},
        {"pipelined group answered short",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", EHLO_PIPE, "250 ok\r\n354 go\r\n"},
         END_TIMEOUT,
         {D},
         0,
         NULL},
        {"RSET answered 200 is positive",
         SMTP_SEC_PLAIN,
         2,
         {"220 a\r\n", EHLO_PLAIN, "250 ok\r\n", "550 no such user\r\n", "200 reset\r\n",
          "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 queued\r\n", "221 bye\r\n"},
         END_EOF,
         {F, S},
         1,
         NULL},
        {"RSET refused leaves the untried slots deferred",
         SMTP_SEC_PLAIN,
         3,
         {"220 a\r\n", EHLO_PLAIN, "250 ok\r\n", "550 no such user\r\n", "500 what\r\n"},
         END_EOF,
         {F, D, D},
         0,
         NULL},
        {"dot then close is unknown",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n"},
         END_EOF,
         {U},
         1,
         NULL},
        {"dot then timeout is unknown",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", EHLO_PLAIN, "250 ok\r\n", "250 ok\r\n", "354 go\r\n"},
         END_TIMEOUT,
         {U},
         1,
         NULL},
        {"dot answered with garbage is unknown",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", EHLO_PLAIN, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "hello\r\n"},
         END_EOF,
         {U},
         1,
         NULL},
        {"dot answered 354 is unknown",
         SMTP_SEC_PLAIN,
         1,
         {"220 a\r\n", EHLO_PLAIN, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "354 again\r\n"},
         END_EOF,
         {U},
         1,
         NULL},
        {"an extra reply after the dot's",
         SMTP_SEC_PLAIN,
         2,
         {"220 a\r\n", EHLO_PLAIN, "250 ok\r\n", "250 ok\r\n", "354 go\r\n",
          "250 queued\r\n250 extra\r\n"},
         END_EOF,
         {S, D},
         1,
         NULL},
        {"dot refused 452 then the next is sent",
         SMTP_SEC_PLAIN,
         2,
         {"220 a\r\n", EHLO_PLAIN, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "452 full\r\n",
          "250 reset\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 queued\r\n"},
         END_EOF,
         {D, S},
         2,
         NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_dialogue(&cases[i]);
}

#undef D
#undef S
#undef F
#undef U

/* RFC 5321 bounds a reply line, not a reply: extensions past the first kilobyte of
 * text still count (STARTTLS and AUTH listed last). */
static void test_extensions_of_a_long_ehlo_reply(void **state)
{
    (void)state;
    fixture f;
    buf ehlo = BUF_INIT;
    buf_puts(&ehlo, "250-mx.test greets you\r\n");
    for (int i = 0; i < 60; i++)
        buf_printf(&ehlo, "250-X-FILLER-%02d %s\r\n", i,
                   "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
    buf_puts(&ehlo, "250-PIPELINING\r\n250-STARTTLS\r\n250 AUTH LOGIN PLAIN\r\n");
    setup(&f, SMTP_SEC_STARTTLS, "u", "p", NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, ehlo.data, "STARTTLS\r\n", SMTP_S_STARTTLS);
    step(&f, "220 go\r\n", "", SMTP_S_TLS_WAIT);
    smtp_session_tls_ready(&f.s);
    buf_reset(smtp_session_output(&f.s));
    step(&f, ehlo.data, "AUTH PLAIN AHUAcA==\r\n", SMTP_S_AUTH);
    assert_true(f.s.caps.pipelining);
    smtp_session_clear(&f.s);
    buf_free(&ehlo);
}

/* Credentials never go in clear unless the mailbox allows it. */
static void test_auth_without_tls_needs_the_mailbox_to_allow_it(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, "u", "p", NULL, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "250-mx\r\n250 AUTH PLAIN LOGIN\r\n", "QUIT\r\n", SMTP_S_QUIT);
    assert_int_equal(f.slots[0].status, SMTP_ST_AUTH);
    assert_non_null(strstr(f.slots[0].detail, "allow_plaintext_auth"));
    smtp_session_clear(&f.s);

    setup(&f, SMTP_SEC_PLAIN, "u", "p", NULL, 1);
    f.p.allow_plaintext_auth = true;
    smtp_session_init(&f.s, &f.p, f.slots, 1);
    step(&f, "220 mx\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, "250-mx\r\n250 AUTH PLAIN LOGIN\r\n", "AUTH PLAIN AHUAcA==\r\n", SMTP_S_AUTH);
    smtp_session_clear(&f.s);
}

static void test_whole_dialogue_fed_byte_by_byte(void **state)
{
    (void)state;
    const char *server[] = {"220 mx\r\n", EHLO_PIPE, "250 ok\r\n250 ok\r\n354 go\r\n",
                            "250 2.0.0 ok\r\n", "221 bye\r\n"};
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    for (size_t i = 0; i < sizeof server / sizeof server[0]; i++)
        for (const char *p = server[i]; *p; p++)
            smtp_session_feed(&f.s, p, 1, 1);
    assert_int_equal(f.s.state, SMTP_S_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_SENT);
    assert_string_equal(smtp_session_output(&f.s)->data,
                        "EHLO agent.test\r\nMAIL FROM:<from@a.test>\r\nRCPT TO:<r1@x.test>\r\n"
                        "DATA\r\n" PAYLOAD "QUIT\r\n");
    smtp_session_clear(&f.s);
}

/* gate_payload: after 354 nothing leaves until payload_go; ok sends the payload (and
 * the next slot gates again), !ok ends the session with every pending slot deferred. */
static void test_payload_waits_at_the_gate_for_the_intent(void **state)
{
    (void)state;
    fixture f;
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 2);
    f.p.gate_payload = true;
    smtp_session_init(&f.s, &f.p, f.slots, 2);
    step(&f, "220 mx ESMTP\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PIPE, "MAIL FROM:<from@a.test>\r\nRCPT TO:<r1@x.test>\r\nDATA\r\n", SMTP_S_MAIL);
    step(&f, "250 ok\r\n250 ok\r\n", "", SMTP_S_DATA);
    int ev = step(&f, "354 go\r\n", "", SMTP_S_GATE);
    assert_true(ev & SMTP_EV_GATE);
    assert_int_equal(f.s.cur, 0);
    ev = smtp_session_payload_go(&f.s, true, "x", 43);
    assert_false(ev & SMTP_EV_GATE);
    assert_true(ev & SMTP_EV_OUTPUT);
    assert_string_equal(smtp_session_output(&f.s)->data, PAYLOAD);
    buf_reset(smtp_session_output(&f.s));
    step(&f, "250 2.0.0 queued\r\n", "MAIL FROM:<from@a.test>\r\nRCPT TO:<r2@x.test>\r\nDATA\r\n",
         SMTP_S_MAIL);
    assert_int_equal(f.slots[0].status, SMTP_ST_SENT);
    step(&f, "250 ok\r\n250 ok\r\n", "", SMTP_S_DATA);
    ev = step(&f, "354 go\r\n", "", SMTP_S_GATE);
    assert_true(ev & SMTP_EV_GATE);
    assert_int_equal(f.s.cur, 1);
    /* the intent could not be written: the second message must not leave */
    ev = smtp_session_payload_go(&f.s, false, "not sent: no intent", 44);
    assert_true(ev & SMTP_EV_DONE);
    assert_int_equal(smtp_session_output(&f.s)->len, 0);
    assert_int_equal(f.slots[1].status, SMTP_ST_DEFERRED);
    assert_string_equal(f.slots[1].detail, "not sent: no intent");
    assert_int_equal(f.slots[0].status, SMTP_ST_SENT);
    smtp_session_clear(&f.s);

    /* a server that speaks while it should wait for the data ends the session */
    setup(&f, SMTP_SEC_PLAIN, NULL, NULL, NULL, 1);
    f.p.gate_payload = true;
    smtp_session_init(&f.s, &f.p, f.slots, 1);
    step(&f, "220 mx ESMTP\r\n", "EHLO agent.test\r\n", SMTP_S_EHLO);
    step(&f, EHLO_PIPE, "MAIL FROM:<from@a.test>\r\nRCPT TO:<r1@x.test>\r\nDATA\r\n", SMTP_S_MAIL);
    step(&f, "250 ok\r\n250 ok\r\n354 go\r\n", "", SMTP_S_GATE);
    ev = step(&f, "421 4.4.2 timeout\r\n", "", SMTP_S_DONE);
    assert_true(ev & SMTP_EV_DONE);
    assert_int_equal(f.slots[0].status, SMTP_ST_DEFERRED);
    ev = smtp_session_payload_go(&f.s, true, "x", 45); /* late go-ahead: nothing to send */
    assert_int_equal(smtp_session_output(&f.s)->len, 0);
    smtp_session_clear(&f.s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payload_waits_at_the_gate_for_the_intent),
        cmocka_unit_test(test_pipelined_send_with_quit_after_the_message),
        cmocka_unit_test(test_unpipelined_send_steps_one_command_at_a_time),
        cmocka_unit_test(test_no_acceptance_before_the_end_left_or_from_a_221),
        cmocka_unit_test(test_ehlo_refused_falls_back_to_helo),
        cmocka_unit_test(test_greeting_failures_are_classified),
        cmocka_unit_test(test_starttls_upgrade_ignores_injected_plaintext),
        cmocka_unit_test(test_starttls_missing_or_refused),
        cmocka_unit_test(test_auth_plain_success_and_rejection),
        cmocka_unit_test(test_auth_login_and_xoauth2),
        cmocka_unit_test(test_transaction_failures_settle_only_their_slot),
        cmocka_unit_test(test_two_messages_in_one_pipelined_session),
        cmocka_unit_test(test_pipelined_group_with_refused_rcpt),
        cmocka_unit_test(test_smtputf8_parameter_only_on_utf8_envelopes),
        cmocka_unit_test(test_utf8_slot_fails_when_server_lacks_smtputf8),
        cmocka_unit_test(test_smtputf8_is_judged_on_the_ehlo_after_starttls),
        cmocka_unit_test(test_eof_abort_and_malformed_reply_defer),
        cmocka_unit_test(test_whole_dialogue_fed_byte_by_byte),
        cmocka_unit_test(test_sent_only_from_a_2xx_to_the_final_dot),
        cmocka_unit_test(test_extensions_of_a_long_ehlo_reply),
        cmocka_unit_test(test_auth_without_tls_needs_the_mailbox_to_allow_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
