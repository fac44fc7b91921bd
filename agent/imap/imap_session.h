/* IMAP client session, sans-I/O: the connection's way to a logged-in state (greeting,
 * CAPABILITY, STARTTLS, LOGIN or AUTHENTICATE, CAPABILITY again unless the login's OK
 * carried the list) and LOGOUT. Server
 * bytes go in through imap_session_feed, commands come out in the session's output
 * buffer, and the return value tells the caller what to do. This is the skeleton the
 * inbox work (SELECT, FETCH, IDLE, MOVE: issue 12) will extend from IMAP_S_READY. */
#ifndef KILN_IMAP_SESSION_H
#define KILN_IMAP_SESSION_H

#include "buf.h"
#include "imap_cmd.h"
#include "imap_resp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_security { IMAP_SEC_PLAIN, IMAP_SEC_STARTTLS, IMAP_SEC_TLS };

/* The session's states, in the order a successful session walks them. */
enum imap_state {
    IMAP_S_GREETING,    /* waiting for the greeting */
    IMAP_S_CAPABILITY,  /* CAPABILITY sent before login */
    IMAP_S_STARTTLS,    /* STARTTLS sent */
    IMAP_S_TLS_WAIT,    /* the caller runs the handshake, then imap_session_tls_ready */
    IMAP_S_AUTH,        /* LOGIN or AUTHENTICATE sent */
    IMAP_S_CAPABILITY2, /* CAPABILITY after login: Dovecot names MOVE, UIDPLUS only now */
    IMAP_S_READY,       /* logged in; the inbox work starts here */
    IMAP_S_DONE,        /* over: outcome says how */
    IMAP_S_COUNT
};
const char *imap_state_name(int state);

/* How the session ended (or IMAP_OUT_NONE while it goes on). */
enum imap_outcome {
    IMAP_OUT_NONE = 0,
    IMAP_OUT_OK,          /* logged in (and out) as asked */
    IMAP_OUT_AUTH,        /* credentials refused, or no way to send them safely */
    IMAP_OUT_TLS,         /* STARTTLS required and not offered or refused */
    IMAP_OUT_UNAVAILABLE, /* BYE, [UNAVAILABLE], connection closed: try later */
    IMAP_OUT_PROTOCOL,    /* the server broke the protocol */
    IMAP_OUT_THROTTLED,   /* [THROTTLED], a BYE or NO saying so, Outlook's churn errors:
                             back off (longer) rather than retry hot */
    IMAP_OUT_COUNT
};
const char *imap_outcome_name(int outcome);

/* What imap_session_feed asks of the caller (bit set). */
enum imap_event {
    IMAP_EV_OUTPUT = 1,   /* the output buffer has bytes to send */
    IMAP_EV_STARTTLS = 2, /* start TLS now; bytes after the STARTTLS OK were dropped */
    IMAP_EV_DONE = 4,     /* over: send what is left, then close */
    IMAP_EV_READY = 8,    /* logged in, capabilities read again */
};

/* Borrowed strings; oauth_token (XOAUTH2 / OAUTHBEARER) wins over password. */
typedef struct imap_session_params {
    int security; /* enum imap_security */
    const char *username;
    const char *password;
    const char *oauth_token;
    const char *host; /* for OAUTHBEARER */
    int port;
    /* credentials over a connection without TLS are refused unless this is set
     * (loopback test servers) */
    bool allow_plaintext_auth;
} imap_session_params;

/* Lives inline in the caller's table; imap_session_clear frees its buffers. */
typedef struct imap_session {
    int state;
    int outcome;
    char detail[160]; /* the server's text or the reason, printable ASCII */
    imap_session_params params;
    bool tls_active;
    bool cmd_waiting; /* the command in flight stops at a literal until "+" */
    int auth_mech;    /* enum imap_sasl, or -1 for LOGIN */
    unsigned caps;    /* enum imap_cap: the latest list the server gave */
    bool caps_fresh;  /* a list came since the last CAPABILITY was due */
    /* The tag of a CAPABILITY the caller pipelined behind LOGIN (imap_inbox), "" none:
     * a login OK without a list waits for that one's answer instead of asking again. */
    char cap_tag[16];
    imap_resp_parser parser;
    imap_cmdgen gen;
    imap_cmd cmd; /* the command in flight */
    buf out;
} imap_session;

void imap_session_init(imap_session *s, const imap_session_params *p);
void imap_session_clear(imap_session *s);
/* Feeds received plaintext; returns a mask of imap_event. */
int imap_session_feed(imap_session *s, const char *data, size_t n);
/* As imap_session_feed, but returns as soon as the session reaches IMAP_S_READY, with
 * *consumed the bytes used: what follows is for whoever works from READY (imap_inbox). */
int imap_session_feed_to_ready(imap_session *s, const char *data, size_t n, size_t *consumed);
/* The outcome a refusal (NO, BAD, BYE) r means: IMAP_OUT_THROTTLED for [THROTTLED] or
 * throttling words in its text (imap_text_is_throttle), IMAP_OUT_UNAVAILABLE for
 * [UNAVAILABLE], otherwise otherwise. */
int imap_refusal_outcome(const imap_resp *r, int otherwise);
/* Whether a server's text says it throttles: "throttl", "too many connections",
 * Outlook's connection churn ("User is authenticated but not connected", "Server
 * Unavailable. 15", "Connection is closed. 13"/"14"). Case-insensitive. */
bool imap_text_is_throttle(const char *text, size_t n);
/* The TLS handshake finished after STARTTLS: capabilities are asked for again. */
int imap_session_tls_ready(imap_session *s);
/* From IMAP_S_READY: sends LOGOUT and ends the session (outcome OK, IMAP_EV_DONE):
 * the connection closes once LOGOUT is sent, its answer not awaited. */
int imap_session_logout(imap_session *s);
/* The server closed the connection: the session ends unavailable (unless over). */
void imap_session_eof(imap_session *s);
buf *imap_session_output(imap_session *s);

#endif
