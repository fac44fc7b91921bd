/* The control-plane protocol's shared vocabulary (api/openapi.yaml, DESIGN.md "Wire
 * shapes"): the send statuses, the lease limits and a reply's msg-ids. kiln-api validates with
 * these and kiln-agent asks within them, so both sides read the one list; the test wire_contract
 * checks it against api/openapi.yaml. */
#ifndef KILN_WIRE_H
#define KILN_WIRE_H

#include <stdbool.h>
#include <stddef.h>

/* A slot's status as stored and counted. The first WIRE_REPORTABLE are what an agent
 * may report (SendStatus in openapi.yaml); expired and cancelled are set by the
 * control plane only. unknown: the message may exist (the connection ended after the
 * final dot, or a crash after the intent): counted toward the quota, never retried. */
enum wire_status {
    WIRE_SENT,
    WIRE_DEFERRED,
    WIRE_FAILED,
    WIRE_AUTH,
    WIRE_TLS,
    WIRE_UNKNOWN,
    WIRE_EXPIRED,
    WIRE_CANCELLED,
    WIRE_STATUS_COUNT
};
#define WIRE_REPORTABLE (WIRE_UNKNOWN + 1)

/* "sent", "deferred", ...: indexed by enum wire_status, NULL-terminated. */
extern const char *const wire_status_names[WIRE_STATUS_COUNT + 1];
/* The status named by s[0..n), or -1. */
int wire_status_parse(const char *s, size_t n);

/* POST /api/agent/lease: at most this many mailboxes and slots per lease. */
#define WIRE_MAX_LEASE_MAILBOXES 1000
#define WIRE_MAX_LEASE_SENDS 10000
/* ... and at most this many inboxes (max_inboxes; the inbox side, issues 12 and 13). */
#define WIRE_MAX_LEASE_INBOXES 10000

/* A reply slot's in_reply_to and references (LeaseSend): msg-ids of at most
 * WIRE_MSGID_MAX bytes, at most WIRE_MAX_REFERENCES of them. */
#define WIRE_MSGID_MAX 250
#define WIRE_MAX_REFERENCES 20
/* Whether s[0..n) is an RFC 5322 msg-id: "<" dot-atom-text "@" (dot-atom-text |
 * "[" dtext* "]") ">", at most WIRE_MSGID_MAX bytes (no obsolete forms, no CFWS). */
bool wire_msgid_ok(const char *s, size_t n);

#endif
