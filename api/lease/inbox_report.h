/* POST /api/agent/report with "inbox_events" (issue 13), after the lease check: one
 * transaction that applies the events of the inboxes this lease holds and answers the
 * counts. Found messages are verified by their Message-ID's MAC (msgid.h) and must be
 * sends to that inbox; the rest is counted ignored and stores nothing. Idempotent: a
 * found event by (mailbox, folder, uidvalidity, uid), an action outcome by action id
 * (the first counts), a folder state forward only, a session by the state it sets. */
#ifndef KILN_INBOX_REPORT_H
#define KILN_INBOX_REPORT_H

#include "http.h"
#include "inbox_events.h"

/* Applies n events to lease_id (the caller checked the lease is the agent's) and
 * answers; retries on conflicts. */
void inbox_report_apply(http_req *rq, http_resp *rs, const char *lease_id, const inbox_event *ev,
                        int n);

#endif
