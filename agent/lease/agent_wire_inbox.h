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

#endif
