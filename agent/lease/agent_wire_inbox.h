/* The wire module's inbox side (openapi LeaseInbox, InboxEvent): the inboxes of a
 * lease answer or of `kiln-agent inbox --file`, parsed into the inbox engine's specs,
 * and an inbox event as one JSON object (a line of `inbox --file`, an element of a
 * report's inbox_events). Pure: no I/O, no clock. */
#ifndef KILN_AGENT_WIRE_INBOX_H
#define KILN_AGENT_WIRE_INBOX_H

#include "buf.h"
#include "inbox_engine.h"
#include "inbox_spec.h"

#include <stddef.h>

/* The inboxes of data: a JSON array of LeaseInbox, or an object carrying one as
 * "inboxes" (a lease answer). Every inbox is checked field by field; the first fault
 * fails the whole parse with a reason naming the field ("inboxes[2].imap.port: ...").
 * On success *out holds *n specs the caller owns (inbox_spec_free each, then free). */
int wire_inboxes_parse(const char *data, size_t len, inbox_spec ***out, size_t *n, char *err,
                       size_t errlen);

/* One event as openapi's InboxEvent (found, action, folder_state, session). */
void wire_inbox_event_json(const inbox_event *ev, buf *out);

/* The inbox side of a lease answer: "inbox_lease" and its "inboxes". Owned by the
 * caller (wire_inbox_lease_free). */
typedef struct wire_inbox_lease {
    bool present; /* the answer has an inbox lease */
    char lease_id[65];
    int64_t ttl_s, heartbeat_s;
    inbox_spec **inboxes; /* the entries that passed the checks, in order */
    size_t ninboxes;
    size_t nrejected; /* entries set aside (a fault names the first in error) */
    char error[256];  /* the first fault, or why the inbox lease is unusable */
} wire_inbox_lease;

/* Reads the inbox side of a lease answer. A bad inbox entry is set aside (counted, the
 * first reason kept) and the others go on; an answer without "inbox_lease" gives
 * present false; a present but malformed inbox_lease gives present false with error. */
void wire_inbox_lease_parse(const char *data, size_t len, wire_inbox_lease *out);
void wire_inbox_lease_free(wire_inbox_lease *l);

/* An inbox lease's heartbeat answer: the renewed ttl (0: none given) and the mailbox
 * ids to stop watching (inboxes_dropped). Owned by the caller (free(*dropped)). -1
 * when the answer is not JSON. */
int wire_inbox_heartbeat_parse(const char *data, size_t len, int64_t *ttl_s, int64_t **dropped,
                               size_t *ndropped);

/* {"lease_id":..,"inbox_events":[events]}: events holds InboxEvent objects already
 * written by wire_inbox_event_json, separated by commas. */
void wire_inbox_report(buf *out, const char *lease_id, const char *events, size_t len);

#endif
