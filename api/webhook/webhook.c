/* Webhook events: names and the emit into the outbox (see webhook.h). The fan-out to
 * endpoints is SQL's (kiln_webhook_emit in sql/migrations/013_webhooks.sql), shared with
 * the trigger on mailboxes, so a C caller and a state change emit the same way. */
#include "webhook.h"

#include <string.h>

static const char *const EVENT_NAMES[WEBHOOK_EVENT_COUNT] = {
    [WEBHOOK_MAILBOX_PAUSED] = "mailbox.paused",
    [WEBHOOK_MAILBOX_ERROR] = "mailbox.error",
    [WEBHOOK_MAILBOX_HEALTH_CHANGED] = "mailbox.health_changed",
    [WEBHOOK_MAILBOX_INBOX_ERROR] = "mailbox.inbox_error",
    [WEBHOOK_MAILBOX_INBOX_FAILING] = "mailbox.inbox_failing",
};

static const db_stmt Q_EMIT = {"webhook_emit",
                               "SELECT kiln_webhook_emit($1::bigint, $2, $3::bigint, $4::jsonb)"};

const char *webhook_event_name(enum webhook_event e)
{
    return (int)e >= 0 && e < WEBHOOK_EVENT_COUNT ? EVENT_NAMES[e] : NULL;
}

int webhook_event_parse(const char *s)
{
    for (int e = 0; e < WEBHOOK_EVENT_COUNT; e++)
        if (!strcmp(s, EVENT_NAMES[e]))
            return e;
    return -1;
}

int webhook_emit(db *d, arena *a, int64_t user_id, enum webhook_event type, int64_t mailbox_id,
                 const char *payload_json)
{
    const char *name = webhook_event_name(type);
    if (!name || !db_in_tx(d))
        return -1;
    const char *p[] = {db_i64_text(a, user_id), name, db_i64_text(a, mailbox_id),
                       payload_json ? payload_json : "{}"};
    return db_exec(d, a, &Q_EMIT, 4, p) ? 0 : -1;
}
