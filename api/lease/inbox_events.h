/* The "inbox_events" member of POST /api/agent/report (openapi InboxEvent): found
 * messages, action outcomes, folder states and session outcomes, validated into
 * structs. Every member is checked; the first problem is a 400 naming it
 * (inbox_events[3].uid). */
#ifndef KILN_INBOX_EVENTS_H
#define KILN_INBOX_EVENTS_H

#include "http.h"

#include <stdbool.h>
#include <stdint.h>

#define INBOX_EVENTS_MAX 10000

enum inbox_event_type { EV_FOUND, EV_ACTION, EV_FOLDER_STATE, EV_SESSION };

typedef struct inbox_event {
    enum inbox_event_type type;
    int64_t mailbox_id;
    const char *folder; /* found, folder_state; action (optional) */
    const char *role;   /* found, folder_state: inbox | junk | warmup | other */
    int64_t uidvalidity, uid, last_uid;
    bool has_place; /* action: folder, uidvalidity and uid all given */
    const char **flags;
    int nflags;
    bool has_flags;
    const char *message_id, *auth_results; /* found */
    int64_t action_id;                     /* action */
    const char *status;                    /* action, session */
    const char *detail;                    /* action, session; may be NULL */
} inbox_event;

/* Validates the "inbox_events" member; on failure fills rs with a 400 and returns false. */
bool inbox_events_parse(http_req *rq, http_resp *rs, yajl_val arr, inbox_event **out, int *n);

#endif
