/* Which mailboxes take part in warmup, as SQL fragments, said once for every statement
 * of api/lease that asks (docs/design.md "Who watches what"). SENDING_STATES and
 * WATCHED_STATES read the mailboxes row as m and its users row as u; the _OF forms take
 * other aliases, as string literals. */
#ifndef KILN_API_LEASE_MAILBOX_STATES_H
#define KILN_API_LEASE_MAILBOX_STATES_H

/* A mailbox that sends and receives warmup mail: not deleted, it and its user active. A
 * lease picks only these as senders and recipients, a report frees the others to
 * '-infinity' (their due time is read again when they come back), and a heartbeat cancels
 * their open slots. Negated as NOT SENDING_STATES: the states are NOT NULL, so that
 * is the plain OR of the opposites. */
#define SENDING_STATES_OF(m, u)                                                                    \
    "(" m ".deleted_at IS NULL AND " m ".state = 'active' AND " u ".state = 'active')"
#define SENDING_STATES SENDING_STATES_OF("m", "u")

/* A mailbox whose inbox an agent may watch (with IMAP access and its inbox not in error,
 * inbox_store.c WATCHABLE): not deleted, neither it nor its user disabled. A paused
 * mailbox (or one in error, or of a paused user) stops sending and receiving warmup mail,
 * but its inbox stays watched: mail sent to it before the pause is still found, rescued
 * and filed, and its senders' placements are not judged missing. */
#define WATCHED_STATES_OF(m, u)                                                                    \
    "(" m ".deleted_at IS NULL AND " m ".state <> 'disabled' AND " u ".state <> 'disabled')"
#define WATCHED_STATES WATCHED_STATES_OF("m", "u")

/* An inbox whose visits complete: ok, and not failing (a transient failure since its
 * last completed visit sets inbox_error while the state stays; inbox_store.c Q_SESSIONS).
 * Only mail to such an inbox is judged missing, and with KILN_RECIPIENTS_REQUIRE_INBOX
 * only such inboxes receive. */
#define INBOX_READABLE_OF(m) "(" m ".inbox = 'ok' AND " m ".inbox_error IS NULL)"
#define INBOX_READABLE INBOX_READABLE_OF("m")

#endif
