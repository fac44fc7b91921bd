/* Webhook events of kiln-api (issue 13): the event types a tenant can subscribe to, and
 * the one way to emit one. An event goes into the outbox (webhook_events) together with a
 * delivery row per subscribed endpoint, in the caller's transaction, so it exists exactly
 * when the change that caused it commits; the delivery worker (webhook_worker.h) sends it
 * later and never inside an API request. Details: docs/webhooks.md. */
#ifndef KILN_WEBHOOK_H
#define KILN_WEBHOOK_H

#include "arena.h"
#include "db.h"

#include <stdbool.h>
#include <stdint.h>

/* Additional data an endpoint's secret is sealed with (secret_seal's aad), so it opens as
 * nothing else and no other secret opens as it. */
#define WEBHOOK_SECRET_AAD "kiln/webhook/secret"

enum webhook_event {
    WEBHOOK_MAILBOX_PAUSED = 0,     /* mailboxes.state became 'paused' */
    WEBHOOK_MAILBOX_ERROR,          /* mailboxes.state became 'error' */
    WEBHOOK_MAILBOX_HEALTH_CHANGED, /* the health band of a mailbox changed */
    WEBHOOK_MAILBOX_INBOX_ERROR,    /* mailboxes.inbox became 'error' */
    WEBHOOK_MAILBOX_INBOX_FAILING,  /* the inbox has been failing for a while (037) */
    WEBHOOK_EVENT_COUNT,
};

/* "mailbox.paused", ... (the wire name, also the webhook_events.type value); NULL when
 * out of range. */
const char *webhook_event_name(enum webhook_event e);
/* The event named s, or -1. */
int webhook_event_parse(const char *s);

/* Emits an event for user_id's endpoints that subscribe to it: one webhook_events row
 * and one pending webhook_deliveries row per active endpoint, nothing when the user has
 * none. MUST run inside the caller's open transaction (db_begin .. db_commit), so the
 * event commits or rolls back with the change it reports; called outside one it does
 * nothing and returns -1.
 *
 * payload_json: a JSON object (text) with the event's detail, or NULL for {}; it is
 * delivered as the event's "data", with "mailbox_id" always set from mailbox_id.
 * Events are idempotent per (transaction, mailbox, type): a second emit of the same type
 * for the same mailbox in one transaction merges its payload into the first (later keys
 * win) instead of sending twice.
 *
 * The state transitions mailbox.paused, mailbox.error and mailbox.inbox_error are also
 * emitted by a trigger on mailboxes (sql/migrations/013_webhooks.sql) whatever statement
 * changes the column, so a caller need not emit those; calling webhook_emit in the same
 * transaction only adds detail (e.g. {"reason": "..."}). mailbox.health_changed has no
 * trigger: the health work calls webhook_emit when a band changes. mailbox.inbox_failing
 * is emitted by kiln_inbox_failing_notify (037), from the background pass.
 *
 * Returns 0, or -1 on a database error (db_last_error / db_message tell why; the caller
 * aborts its transaction as for any failed statement). */
int webhook_emit(db *d, arena *a, int64_t user_id, enum webhook_event type, int64_t mailbox_id,
                 const char *payload_json);

#endif
