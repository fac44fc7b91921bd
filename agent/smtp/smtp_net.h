/* The SMTP session as net/ drives it (net_session.h): an smtp_session with its slots
 * and their DATA payloads, plus the two checks its owner asks for at the points a
 * message can begin to exist: no transaction and no payload starts at or after the
 * owner's start limit, and a payload may wait for the owner's go-ahead (the intent
 * gate). Still no I/O here: net/ moves the bytes. */
#ifndef KILN_SMTP_NET_H
#define KILN_SMTP_NET_H

#include "buf.h"
#include "net_session.h"
#include "smtp_message.h"
#include "smtp_session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the owner answers; owner is the pointer given to smtp_net_start. */
typedef struct smtp_net_hooks {
    /* No transaction (MAIL) and no payload starts at or after this time. */
    int64_t (*start_limit_ms)(void *owner);
    /* The payload of slot k waits at the gate until smtp_net_gate_open. NULL: no
     * gate, payloads go as soon as the server asks (within the start limit). */
    void (*gate)(void *owner, size_t k);
} smtp_net_hooks;

/* Lives inline in the owner's session table; its buffers stay with the entry. */
typedef struct smtp_net {
    smtp_session smtp;
    smtp_slot *slots;
    size_t nslots;
    buf payload;               /* the slots' DATA payloads, dot-stuffed, one after another */
    bool gated;                /* the current slot's payload waits at the gate */
    int settled_state;         /* the session's state at the end of the last step */
    const int64_t *timeout_ms; /* [SMTP_S_COUNT]: a whole reply, per state */
    const smtp_net_hooks *hooks;
    void *owner;
} smtp_net;

extern const net_session_ops smtp_net_ops;

/* Starts a session of n slots (then smtp_net_add each, then smtp_net_start). */
void smtp_net_begin(smtp_net *sm, size_t n);
/* Builds slot k's message into its payload; scratch is the caller's buffer. */
void smtp_net_add(smtp_net *sm, size_t k, const smtp_message *m, buf *scratch);
/* The payloads are in: the session starts (the greeting is awaited first). */
void smtp_net_start(smtp_net *sm, const smtp_session_params *p, const int64_t *timeout_ms,
                    const smtp_net_hooks *hooks, void *owner);
/* The owner's answer at the gate: ok sends the payload (unless the start limit has
 * passed meanwhile); !ok ends the pending slots deferred. Returns net events for
 * net_conn_resume. */
int smtp_net_gate_open(smtp_net *sm, bool ok, int64_t now_ms);
/* The session is over: frees its state, keeps a small payload buffer for the next. */
void smtp_net_clear(smtp_net *sm);
/* At shutdown: frees everything. */
void smtp_net_dispose(smtp_net *sm);

#endif
