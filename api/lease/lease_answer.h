/* What a lease answer carries, and the answer itself (DESIGN.md "Wire shapes"): each
 * mailbox's opened SMTP secret, checked to be text the agent can read; Message-IDs;
 * subjects and bodies rendered from the templates; a reply's threading; the JSON. */
#ifndef KILN_LEASE_ANSWER_H
#define KILN_LEASE_ANSWER_H

#include "http.h"
#include "inbox_grant.h"
#include "lease_store.h"
#include "msgid.h"
#include "secret.h"

/* What an answer carries of one eligible mailbox besides its slots. */
typedef struct lease_text {
    const char *password; /* NULL when the secret does not open with this key */
    size_t password_len;
    bool left_out; /* cannot be emitted: not planned, put in error */
} lease_text;

/* Opens row's secret into t and says why the row cannot go into an answer (NULL when
 * it can). The reason never quotes the value. */
const char *lease_answer_check_row(arena *a, const secret_key *key, const lease_row *row,
                                   lease_text *t);
/* Whether a recipient's address and display name can go into other mailboxes' slots. */
bool lease_answer_recipient_ok(const char *address, const char *display_name);
/* The Message-ID of a send: <send_id.KEY_ID MAC@sender-domain> (msgid.h); NULL when
 * the domain cannot carry one (lease_answer_check_row leaves such rows out). */
const char *lease_answer_message_id(arena *a, const struct msgid_keyring *keys, int64_t send_id,
                                    const char *domain);

/* Chooses each slot's template and topic and renders its subject (a reply slot keeps its
 * "Re:" subject) into gr, before the grant is written: the subject is stored on the send
 * (a reply quotes it); the body is rendered with the same choice in the answer. */
void lease_answer_compose(arena *a, const lease_pool *pool, lease_granted *gr);

/* An answer with no send lease: come back in retry_after_s. The inbox members (inbox
 * may be NULL) are written with key's opened IMAP secrets. */
void lease_answer_empty(arena *a, const secret_key *key, http_resp *rs, int64_t ttl_s,
                        int64_t retry_after_s, const char *service, const inbox_request *inbox);

typedef struct lease_answer {
    const char *lease_id;
    int64_t ttl_s, now_s;
    const lease_granted *granted;
    int ngranted;
    const lease_text *texts; /* by row */
    const lease_pool *pool;
    const secret_key *key;      /* opens the inboxes' IMAP secrets */
    const inbox_request *inbox; /* the inbox part, or NULL */
} lease_answer;
/* The granted lease, with subjects and bodies rendered in arena a. */
void lease_answer_write(arena *a, http_resp *rs, const lease_answer *ans);

#endif
