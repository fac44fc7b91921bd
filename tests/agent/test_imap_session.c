/* Unit tests for the IMAP session skeleton: the way to a logged-in state against
 * scripted servers (the bytes each would send), in every split of their input;
 * STARTTLS with injected plaintext, LOGINDISABLED, OAuth, refusals, BYE, PREAUTH,
 * synchronising literals, protocol errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "imap_session.h"

#include <string.h>

static const imap_session_params plain_params = {
    .security = IMAP_SEC_PLAIN,
    .username = "anna@acme.test",
    .password = "s3cret",
    .allow_plaintext_auth = true,
};

/* Feeds srv in chunks of step bytes, appending what the session sends to sent. */
static int feed(imap_session *s, const char *srv, size_t step, buf *sent)
{
    int ev = 0;
    size_t n = strlen(srv);
    for (size_t off = 0; off < n; off += step) {
        size_t len = n - off < step ? n - off : step;
        ev |= imap_session_feed(s, srv + off, len);
        buf *out = imap_session_output(s);
        buf_append(sent, out->data ? out->data : "", out->len);
        buf_reset(out);
    }
    return ev;
}

static const char *dovecot_login =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] "
    "Dovecot (Debian) ready.\r\n"
    "K1 OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE] "
    "Logged in\r\n";

static void test_login_and_logout_in_every_split(void **state)
{
    (void)state;
    size_t n = strlen(dovecot_login);
    for (size_t step = 1; step <= n; step++) {
        imap_session s;
        buf sent = BUF_INIT;
        imap_session_init(&s, &plain_params);
        int ev = feed(&s, dovecot_login, step, &sent);
        assert_true(ev & IMAP_EV_READY);
        assert_int_equal(s.state, IMAP_S_READY);
        /* the list in the login's OK is the one after login: no CAPABILITY round trip */
        assert_string_equal(sent.data, "K1 LOGIN anna@acme.test s3cret\r\n");
        assert_true(s.caps & IMAP_CAP_MOVE);
        assert_true(s.caps & IMAP_CAP_NAMESPACE);
        buf_reset(&sent);
        /* LOGOUT ends the session at once: the connection closes behind it */
        assert_int_equal(imap_session_logout(&s), IMAP_EV_OUTPUT | IMAP_EV_DONE);
        assert_string_equal(s.out.data, "K2 LOGOUT\r\n");
        assert_int_equal(s.state, IMAP_S_DONE);
        assert_int_equal(s.outcome, IMAP_OUT_OK);
        buf_reset(&s.out);
        /* an answer that still arrives changes nothing */
        feed(&s, "* BYE Logging out\r\nK2 OK Logout completed.\r\n", step, &sent);
        assert_int_equal(s.state, IMAP_S_DONE);
        assert_int_equal(s.outcome, IMAP_OUT_OK);
        assert_int_equal(sent.len, 0);
        assert_string_equal(imap_outcome_name(s.outcome), "ok");
        buf_free(&sent);
        imap_session_clear(&s);
    }
}

static void test_starttls_drops_injected_plaintext_and_rereads_caps(void **state)
{
    (void)state;
    imap_session_params p = plain_params;
    p.security = IMAP_SEC_STARTTLS;
    p.allow_plaintext_auth = false;
    imap_session s;
    buf sent = BUF_INIT;
    imap_session_init(&s, &p);
    feed(&s, "* OK ready\r\n", 100, &sent);
    assert_string_equal(sent.data, "K1 CAPABILITY\r\n");
    assert_int_equal(s.state, IMAP_S_CAPABILITY);
    feed(&s, "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\nK1 OK done\r\n", 100, &sent);
    assert_string_equal(sent.data, "K1 CAPABILITY\r\nK2 STARTTLS\r\n");
    /* an attacker's plaintext after the OK must not reach the TLS session */
    int ev = feed(&s, "K2 OK Begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n", 100, &sent);
    assert_true(ev & IMAP_EV_STARTTLS);
    assert_int_equal(s.state, IMAP_S_TLS_WAIT);
    assert_int_equal(s.caps & IMAP_CAP_AUTH_PLAIN, 0);
    buf_reset(&sent);
    assert_int_equal(imap_session_tls_ready(&s), IMAP_EV_OUTPUT);
    assert_string_equal(s.out.data, "K3 CAPABILITY\r\n");
    buf_reset(&s.out);
    /* after TLS: LOGINDISABLED with AUTH=PLAIN means AUTHENTICATE PLAIN */
    feed(&s, "* CAPABILITY IMAP4rev1 AUTH=PLAIN LOGINDISABLED SASL-IR\r\nK3 OK done\r\n", 100,
         &sent);
    assert_string_equal(sent.data, "K4 AUTHENTICATE PLAIN AGFubmFAYWNtZS50ZXN0AHMzY3JldA==\r\n");
    buf_reset(&sent);
    ev = feed(&s, "K4 OK Logged in\r\n* CAPABILITY IMAP4rev1 MOVE\r\nK5 OK done\r\n", 100, &sent);
    assert_string_equal(sent.data, "K5 CAPABILITY\r\n");
    assert_true(ev & IMAP_EV_READY);
    assert_int_equal(s.caps, IMAP_CAP_IMAP4REV1 | IMAP_CAP_MOVE);
    buf_free(&sent);
    imap_session_clear(&s);
}

/* Runs one scripted server to its end; returns the session's outcome. */
static int run_script(const imap_session_params *p, const char *srv, const char *want_sent)
{
    imap_session s;
    buf sent = BUF_INIT;
    imap_session_init(&s, p);
    int ev = feed(&s, srv, 7, &sent);
    if (want_sent)
        assert_string_equal(sent.data ? sent.data : "", want_sent);
    int outcome = s.state == IMAP_S_DONE ? s.outcome : -1;
    assert_true(s.state != IMAP_S_DONE || (ev & IMAP_EV_DONE));
    buf_free(&sent);
    imap_session_clear(&s);
    return outcome;
}

static void test_refusals_and_their_outcomes(void **state)
{
    (void)state;
    /* wrong password: LOGOUT, then done with auth */
    assert_int_equal(run_script(&plain_params,
                                "* OK [CAPABILITY IMAP4rev1] hi\r\n"
                                "K1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                                "* BYE bye\r\nK2 OK bye\r\n",
                                "K1 LOGIN anna@acme.test s3cret\r\nK2 LOGOUT\r\n"),
                     IMAP_OUT_AUTH);
    /* temporary refusals back off */
    assert_int_equal(run_script(&plain_params,
                                "* OK [CAPABILITY IMAP4rev1] hi\r\n"
                                "K1 NO [UNAVAILABLE] Temporary failure\r\nK2 OK bye\r\n",
                                NULL),
                     IMAP_OUT_UNAVAILABLE);
    assert_int_equal(run_script(&plain_params, "* BYE Too many connections\r\n", ""),
                     IMAP_OUT_THROTTLED);
    assert_int_equal(run_script(&plain_params, "* BYE going away\r\n", ""), IMAP_OUT_UNAVAILABLE);
    assert_int_equal(run_script(&plain_params,
                                "* OK [CAPABILITY IMAP4rev1] hi\r\n"
                                "K1 NO [THROTTLED] slow down\r\nK2 OK bye\r\n",
                                NULL),
                     IMAP_OUT_THROTTLED);
    /* Outlook's churn: a login accepted, then refused */
    assert_int_equal(run_script(&plain_params,
                                "* OK [CAPABILITY IMAP4rev1] hi\r\n"
                                "K1 NO User is authenticated but not connected.\r\nK2 OK bye\r\n",
                                NULL),
                     IMAP_OUT_THROTTLED);
    assert_int_equal(run_script(&plain_params,
                                "* OK [CAPABILITY IMAP4rev1] hi\r\n* BYE shutting down\r\n",
                                "K1 LOGIN anna@acme.test s3cret\r\n"),
                     IMAP_OUT_UNAVAILABLE);
    /* STARTTLS required, not offered */
    imap_session_params tls = plain_params;
    tls.security = IMAP_SEC_STARTTLS;
    assert_int_equal(
        run_script(&tls, "* OK [CAPABILITY IMAP4rev1] hi\r\nK1 OK bye\r\n", "K1 LOGOUT\r\n"),
        IMAP_OUT_TLS);
    assert_int_equal(
        run_script(&tls, "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\nK1 NO no\r\nK2 OK bye\r\n",
                   "K1 STARTTLS\r\nK2 LOGOUT\r\n"),
        IMAP_OUT_TLS);
    assert_int_equal(run_script(&tls, "* PREAUTH hi\r\nK1 OK bye\r\n", "K1 LOGOUT\r\n"),
                     IMAP_OUT_TLS);
    /* plaintext credentials refused unless allowed */
    imap_session_params strict = plain_params;
    strict.allow_plaintext_auth = false;
    assert_int_equal(
        run_script(&strict, "* OK [CAPABILITY IMAP4rev1] hi\r\nK1 OK bye\r\n", "K1 LOGOUT\r\n"),
        IMAP_OUT_AUTH);
    /* LOGINDISABLED without AUTH=PLAIN: nothing to log in with */
    assert_int_equal(run_script(&plain_params,
                                "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] hi\r\nK1 OK bye\r\n",
                                "K1 LOGOUT\r\n"),
                     IMAP_OUT_AUTH);
    /* credentials with CR/LF are never sent */
    imap_session_params inject = plain_params;
    inject.password = "x\r\nK9 DELETE INBOX";
    assert_int_equal(
        run_script(&inject, "* OK [CAPABILITY IMAP4rev1] hi\r\nK1 OK bye\r\n", "K1 LOGOUT\r\n"),
        IMAP_OUT_AUTH);
    /* the connection closes early */
    imap_session s;
    imap_session_init(&s, &plain_params);
    imap_session_eof(&s);
    assert_int_equal(s.outcome, IMAP_OUT_UNAVAILABLE);
    assert_string_equal(s.detail, "connection closed by the server");
    imap_session_clear(&s);
}

static void test_oauth_preauth_and_literal_password(void **state)
{
    (void)state;
    imap_session_params oauth = plain_params;
    oauth.oauth_token = "tok123";
    oauth.password = NULL;
    /* XOAUTH2 without SASL-IR waits for "+"; an error challenge gets an empty reply */
    assert_int_equal(run_script(&oauth,
                                "* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hi\r\n+ \r\n"
                                "+ eyJzdGF0dXMiOiI0MDEifQ==\r\nK1 NO [AUTHENTICATIONFAILED] no\r\n"
                                "K2 OK bye\r\n",
                                "K1 AUTHENTICATE XOAUTH2\r\n"
                                "dXNlcj1hbm5hQGFjbWUudGVzdAFhdXRoPUJlYXJlciB0b2sxMjMBAQ==\r\n"
                                "\r\nK2 LOGOUT\r\n"),
                     IMAP_OUT_AUTH);
    /* OAUTHBEARER preferred when offered */
    assert_int_equal(
        run_script(&oauth,
                   "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] hi\r\n"
                   "+ eyJzdGF0dXMiOiI0MDEifQ==\r\nK1 NO no\r\nK2 OK bye\r\n",
                   "K1 AUTHENTICATE OAUTHBEARER "
                   "bixhPWFubmFAYWNtZS50ZXN0LAFhdXRoPUJlYXJlciB0b2sxMjMBAQ==\r\nAQ==\r\n"
                   "K2 LOGOUT\r\n"),
        IMAP_OUT_AUTH);
    assert_int_equal(run_script(&oauth,
                                "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\nK1 OK bye\r\n",
                                "K1 LOGOUT\r\n"),
                     IMAP_OUT_AUTH);
    /* PREAUTH: straight to the capabilities after login */
    imap_session s;
    buf sent = BUF_INIT;
    imap_session_init(&s, &plain_params);
    int ev = feed(&s,
                  "* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n* CAPABILITY IMAP4rev1 IDLE\r\n"
                  "K1 OK done\r\n",
                  5, &sent);
    assert_true(ev & IMAP_EV_READY);
    assert_string_equal(sent.data, "K1 CAPABILITY\r\n");
    buf_free(&sent);
    imap_session_clear(&s);
    /* an 8-bit password without LITERAL+: the literal waits for "+" */
    imap_session_params lit = plain_params;
    lit.password = "pässwort";
    imap_session_init(&s, &lit);
    buf_init(&sent);
    feed(&s, "* OK [CAPABILITY IMAP4rev1] hi\r\n", 3, &sent);
    assert_string_equal(sent.data, "K1 LOGIN anna@acme.test {9}\r\n");
    ev = feed(&s, "+ OK\r\nK1 OK [CAPABILITY IMAP4rev1 MOVE] in\r\n", 3, &sent);
    assert_string_equal(sent.data, "K1 LOGIN anna@acme.test {9}\r\npässwort\r\n");
    assert_true(ev & IMAP_EV_READY);
    assert_true(s.caps & IMAP_CAP_MOVE); /* from the tagged OK's code */
    buf_free(&sent);
    imap_session_clear(&s);
}

static void test_protocol_errors_close_at_once(void **state)
{
    (void)state;
    static const char *const scripts[] = {
        "K1 OK not a greeting\r\n",
        "* 1 EXISTS\r\n",
        "* NO greeting\r\n",
        "garbage\r\n",
        "* OK [CAPABILITY IMAP4rev1] hi\r\nK9 OK wrong tag\r\n",
        "* OK [CAPABILITY IMAP4rev1] hi\r\n+ no literal pending\r\n",
        "* OK [CAPABILITY IMAP4rev1] hi\r\n* LIST (\\Junk \"/\" x\r\n",
        "* OK [CAPABILITY IMAP4rev1] hi\r\nK1 OK in\r\n* CAPABILITY IMAP4rev1\r\nK2 OK caps\r\n"
        "K3 OK nothing sent\r\n",
        /* CAPABILITY answered without the list */
        "* OK hi\r\nK1 OK no list\r\n",
        "* OK [CAPABILITY IMAP4rev1] hi\r\nK1 OK in\r\nK2 OK caps\r\n",
    };
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        imap_session s;
        buf sent = BUF_INIT;
        imap_session_init(&s, &plain_params);
        int ev = feed(&s, scripts[i], 1000, &sent);
        if (s.state != IMAP_S_DONE || s.outcome != IMAP_OUT_PROTOCOL)
            fail_msg("script %zu: state %s outcome %s", i, imap_state_name(s.state),
                     imap_outcome_name(s.outcome));
        assert_true(ev & IMAP_EV_DONE);
        assert_int_equal(s.out.len, 0);
        assert_true(s.detail[0] != '\0');
        /* nothing more happens once done */
        assert_int_equal(imap_session_feed(&s, "* OK x\r\n", 8), IMAP_EV_DONE);
        assert_int_equal(s.out.len, 0);
        buf_free(&sent);
        imap_session_clear(&s);
    }
    /* a refused login keeps its outcome; what follows the NO is not read (LOGOUT closes) */
    imap_session s;
    buf sent = BUF_INIT;
    imap_session_init(&s, &plain_params);
    feed(&s, "* OK [CAPABILITY IMAP4rev1] hi\r\nK1 NO bad password\r\n\x01\r\n", 1000, &sent);
    assert_int_equal(s.state, IMAP_S_DONE);
    assert_int_equal(s.outcome, IMAP_OUT_AUTH);
    assert_string_equal(s.detail, "bad password");
    buf_free(&sent);
    imap_session_clear(&s);
    assert_string_equal(imap_state_name(IMAP_S_CAPABILITY2), "capability2");
    assert_string_equal(imap_state_name(99), "invalid");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login_and_logout_in_every_split),
        cmocka_unit_test(test_starttls_drops_injected_plaintext_and_rereads_caps),
        cmocka_unit_test(test_refusals_and_their_outcomes),
        cmocka_unit_test(test_oauth_preauth_and_literal_password),
        cmocka_unit_test(test_protocol_errors_close_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
