/* The IMAP session as net/ drives it (net_session.h), as smtp_net is for SMTP: either
 * the inbox session (imap_inbox: login, folder checks, actions, IDLE) or, for a login
 * check, the bare login (imap_session, then LOGOUT). Implicit TLS asks net/ for the
 * handshake at connect; STARTTLS comes from the session. The inbox session's events go
 * to the owner's hook, but WAKE, which this adapter answers itself (new mail while
 * idling: DONE, fetch, IDLE again). Still no I/O here: net/ moves the bytes, the owner
 * (inbox_engine) decides what an ending means. */
#ifndef KILN_IMAP_NET_H
#define KILN_IMAP_NET_H

#include "imap_inbox.h"
#include "imap_session.h"
#include "net_session.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct imap_net imap_net;

/* What the owner hears; owner is the pointer given to imap_net_start. */
typedef struct imap_net_hooks {
    /* An inbox event (FOUND, FOLDER_STATE, ACTION, LOGGED_IN; a login check gets
     * LOGGED_IN only), from within net's calls. */
    void (*event)(void *owner, imap_net *n, const imap_inbox_event *ev);
    /* Once per step, after the session moved (its tick time or IDLE may have changed):
     * the owner's own step (imap_net_tick, imap_net_stop), a mask of imap_event. */
    int (*stepped)(void *owner, imap_net *n, int64_t now_ms);
} imap_net_hooks;

/* How a connection ended, in the words of the inbox events (InboxEventSession). */
enum imap_net_status {
    IMAP_NET_OK,        /* logged in (whatever came after) */
    IMAP_NET_AUTH,      /* credentials refused, or no safe way to send them */
    IMAP_NET_TLS,       /* TLS handshake or certificate, or STARTTLS missing */
    IMAP_NET_CONNECT,   /* refused, reset, timed out, closed before login */
    IMAP_NET_THROTTLED, /* [THROTTLED], BYE, [UNAVAILABLE] before login */
    IMAP_NET_PROTOCOL,  /* the server broke the protocol */
    IMAP_NET_STATUS_COUNT
};
const char *imap_net_status_name(int status);

/* Lives inline in the owner's table (one per inbox); imap_net_clear frees its state. */
struct imap_net {
    imap_inbox *ib;      /* the inbox session, or NULL for a bare login (s) */
    imap_session s;      /* the bare login's session */
    bool s_live;         /* s was initialised */
    int64_t login_ms;    /* the bare login's per-state timeout */
    int64_t greeting_ms; /* the bare login's wait for the greeting */
    int security;        /* enum imap_security */
    const imap_net_hooks *hooks;
    void *owner;
    bool logged_in;   /* login worked */
    bool wake;        /* WAKE came during the step: answer it after */
    bool starttls;    /* the session asked for TLS: its handshake is the STARTTLS one */
    bool ended;       /* abort or the session's end was seen */
    bool aborted;     /* the connection broke under the session */
    int fault;        /* enum net_fault, when aborted */
    int state_at_end; /* the session's state when it broke */
    int64_t wakes;    /* WAKEs answered */
    char detail[160]; /* net's reason when aborted */
};

extern const net_session_ops imap_net_ops;

/* An inbox session (job copied); false when the session cannot take the job. */
bool imap_net_start_inbox(imap_net *n, const imap_session_params *p, const imap_inbox_job *job,
                          const imap_net_hooks *hooks, void *owner);
/* A bare login: LOGOUT at once after it. The greeting may take greeting_ms, each
 * command's answer command_ms. */
void imap_net_start_login(imap_net *n, const imap_session_params *p, int64_t greeting_ms,
                          int64_t command_ms, const imap_net_hooks *hooks, void *owner);
/* The connection's outcome once it is over (net's done): enum imap_net_status and a
 * printable reason (may be ""). */
int imap_net_status(const imap_net *n, const char **detail);
/* Whether it ended with its LOGOUT sent and nothing failed before (else a drop under a
 * logged-in session). */
bool imap_net_clean_end(const imap_net *n);
/* The connection ended under the session (a drop, a stall, a TLS fault), not by a
 * session that gave up on what the server said. */
bool imap_net_dropped(const imap_net *n);
/* The owner's steps, from its stepped hook (a connection is poked with
 * net_conn_resume(l, c, 0) to get there): imap_event masks. */
int imap_net_tick(imap_net *n, int64_t now_ms);
int imap_net_stop(imap_net *n, int64_t now_ms);
/* When the session wants imap_net_tick (INT64_MAX: never). */
int64_t imap_net_next_tick_ms(const imap_net *n);
/* The session idles (IDLE under way). */
bool imap_net_idling(const imap_net *n);
/* The session is kept logged in between visits (the job's keep), nothing in flight. */
bool imap_net_kept(const imap_net *n);
/* The next visit on a kept session (imap_inbox_visit), from the stepped hook. */
int imap_net_visit(imap_net *n, int64_t now_ms);
void imap_net_clear(imap_net *n);

#endif
