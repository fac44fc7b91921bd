/* SMTP client session, sans-I/O (RFC 5321, 3207 STARTTLS, 4954 AUTH, 2920
 * PIPELINING, 6531 SMTPUTF8). Plaintext replies go in through smtp_session_feed, commands come out
 * in the session's output buffer, and the return value tells the caller what to do
 * (send, start TLS, close). It never touches a socket; the time is passed in. */
#ifndef KILN_SMTP_SESSION_H
#define KILN_SMTP_SESSION_H

#include "buf.h"
#include "smtp_reply.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_security { SMTP_SEC_PLAIN, SMTP_SEC_STARTTLS, SMTP_SEC_TLS };

/* Outcome classes of DESIGN.md; PENDING while a slot is unresolved. */
enum smtp_status {
    SMTP_ST_PENDING = 0,
    SMTP_ST_SENT,
    SMTP_ST_DEFERRED,
    SMTP_ST_FAILED,
    SMTP_ST_AUTH,
    SMTP_ST_TLS,
    /* The final dot went out and its reply never came (drop, reset, timeout): the
     * server may hold the message. Counted toward the quota, never sent again. */
    SMTP_ST_UNKNOWN,
    SMTP_ST_COUNT
};
const char *smtp_status_name(int status);

/* The session's states, in the order a successful session walks them. */
enum smtp_state {
    SMTP_S_GREETING,  /* waiting for the 220 banner */
    SMTP_S_EHLO,      /* EHLO sent */
    SMTP_S_HELO,      /* EHLO refused, HELO sent */
    SMTP_S_STARTTLS,  /* STARTTLS sent */
    SMTP_S_TLS_WAIT,  /* caller runs the TLS handshake, then smtp_session_tls_ready */
    SMTP_S_AUTH,      /* AUTH PLAIN / XOAUTH2 / LOGIN sent */
    SMTP_S_AUTH_USER, /* AUTH LOGIN: user name sent */
    SMTP_S_AUTH_PASS, /* AUTH LOGIN: password sent */
    SMTP_S_MAIL,      /* MAIL FROM sent (with RCPT and DATA when pipelining) */
    SMTP_S_RCPT,      /* RCPT TO sent */
    SMTP_S_DATA,      /* DATA sent, waiting for 354 */
    SMTP_S_DOT,       /* message and "." sent, waiting for 250 */
    SMTP_S_RSET,      /* RSET after a failed transaction */
    SMTP_S_QUIT,      /* QUIT sent */
    SMTP_S_DONE,      /* over: every slot has its outcome */
    SMTP_S_GATE,      /* 354 in hand: the caller records the intent, then payload_go */
    SMTP_S_COUNT
};
const char *smtp_state_name(int state);

/* What smtp_session_feed asks of the caller (bit set). */
enum smtp_event {
    SMTP_EV_OUTPUT = 1,   /* output buffer has bytes to send */
    SMTP_EV_STARTTLS = 2, /* start TLS now; drop any plaintext still buffered */
    SMTP_EV_DONE = 4,     /* session over: send what is left, then close */
    SMTP_EV_GATE = 8,     /* the current slot's payload waits for smtp_session_payload_go */
};

/* One message of the session. rcpt and payload are borrowed from the caller and must
 * outlive the session; payload is the dot-stuffed DATA payload ending in ".\r\n".
 * rcpt (like the sender) may hold UTF-8: such a transaction goes out with SMTPUTF8,
 * or, when the server does not offer it, the slot fails without being tried. */
typedef struct smtp_slot {
    const char *rcpt;
    const char *payload;
    size_t payload_len;
    int status;
    int code;
    char enhanced[16];
    char detail[160];
    int64_t done_ms;
} smtp_slot;

/* Borrowed strings; username NULL means no AUTH. */
typedef struct smtp_session_params {
    const char *helo_name;
    const char *mail_from;
    int security;
    const char *username;
    const char *password;
    const char *oauth_token;
    /* Hold each payload after the server's 354 until smtp_session_payload_go: the
     * caller makes its intent durable at the last moment before a message can exist. */
    bool gate_payload;
    /* AUTH over a connection without TLS is refused (status auth) unless this is set
     * (the mailbox's smtp.allow_plaintext_auth, for loopback test servers). */
    bool allow_plaintext_auth;
} smtp_session_params;

/* Server extensions from the last EHLO. */
typedef struct smtp_caps {
    bool esmtp, pipelining, starttls, smtputf8, auth_plain, auth_login, auth_xoauth2;
} smtp_caps;

/* Lives inline in the caller's session table; smtp_session_clear frees its buffers. */
typedef struct smtp_session {
    int state;
    smtp_session_params params;
    smtp_slot *slots;
    size_t nslots;
    size_t cur;      /* slot of the current transaction */
    bool tls_active; /* TLS is up (implicit, or after STARTTLS) */
    bool authed;
    bool txn_pipelined; /* MAIL, RCPT and DATA went out as one group */
    bool txn_failed;    /* current transaction already has its outcome */
    bool quit_sent;     /* QUIT is already in the output (pipelined after ".") */
    bool auth_retry_sent;
    bool sender_utf8; /* mail_from has non-ASCII bytes: every transaction needs SMTPUTF8 */
    /* Replies the server owes: one per command (and the greeting), counted when queued.
     * unflushed are those queued during the current feed, which the server cannot
     * have seen yet: a reply with no flushed command to answer is a protocol error. */
    unsigned replies_due;
    unsigned replies_unflushed;
    /* Set by the caller before a feed: bytes of earlier output (a message's payload and
     * its final dot) are still in our buffers. A reply to the end of data cannot have
     * been sent for a message the server has not seen end: one that comes then is not
     * trusted as an acceptance (the server lies, or answers early). */
    bool out_pending;
    /* Bytes of the reply in hand came while the current message's payload was not yet
     * queued (the 354's read, the gate) or not yet out (out_pending): sticky until the
     * next payload, since a reply split over reads completes later. */
    bool dot_early;
    smtp_caps caps;
    smtp_reply_parser parser;
    buf out;
} smtp_session;

void smtp_session_init(smtp_session *s, const smtp_session_params *p, smtp_slot *slots,
                       size_t nslots);
void smtp_session_clear(smtp_session *s);
/* Feeds received plaintext. Returns a mask of smtp_event. When SMTP_EV_STARTTLS is set,
 * the bytes after the 220 reply were ignored on purpose (RFC 3207 §5: no plaintext
 * may be carried into the TLS session). */
int smtp_session_feed(smtp_session *s, const char *data, size_t n, int64_t now_ms);
/* The TLS handshake finished (after STARTTLS): the session sends EHLO again. */
int smtp_session_tls_ready(smtp_session *s);
/* The gate of SMTP_EV_GATE: ok sends the current slot's payload; !ok means it must not
 * be sent, and as the server already waits for data only closing can stop it, so every
 * pending slot ends deferred with detail and the session is DONE. */
int smtp_session_payload_go(smtp_session *s, bool ok, const char *detail, int64_t now_ms);
/* The connection failed (refused, dropped, timed out, TLS error): every slot still
 * pending gets status with detail; the session is DONE. */
void smtp_session_abort(smtp_session *s, int status, const char *detail, int64_t now_ms);
/* The server closed the connection: normal after QUIT, a deferral otherwise. */
void smtp_session_eof(smtp_session *s, int64_t now_ms);
/* The output buffer (caller sends and consumes it). */
buf *smtp_session_output(smtp_session *s);

#endif
