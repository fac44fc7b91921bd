/* The inbox part of POST /api/agent/lease (issue 13): one transaction that renews the
 * agent's inbox lease (or makes one), adds free inboxes up to the agent's share
 * (FOR UPDATE SKIP LOCKED: concurrent leasers never share an inbox), reads what the
 * answer carries of each held inbox (access, poll class, folder state, due actions), and
 * runs one bounded step of the missing-placement sweep. The send grant (lease_grant)
 * follows in its own transaction and renders both into one answer. */
#ifndef KILN_INBOX_GRANT_H
#define KILN_INBOX_GRANT_H

#include "http.h"
#include "inbox_store.h"
#include "secret.h"

typedef struct inbox_request {
    int64_t max_inboxes;
    const char *cursor; /* the request's inbox_cursor as decimal text, or NULL */
    bool ok;            /* set when the transaction committed */
    inbox_held held;    /* what the answer carries; lease_id NULL: nothing held */
    int64_t heartbeat_s;
} inbox_request;

/* One attempt of the inbox part (an http_tx body; ctx is an inbox_request). */
enum db_tx inbox_grant(http_req *rq, http_resp *rs, void *ctx);

/* Writes "inbox_lease" and "inboxes" into an open answer object when r holds inboxes;
 * opens the IMAP secrets (a secret that does not open, or is not text, goes out as null
 * password and token: the agent's login fails and reports it). With a request cursor,
 * only the listed inboxes: fresh ones in full, the others as updates (`known`: poll
 * class and due actions, no access). r may be NULL. */
void inbox_answer_members(arena *a, const secret_key *key, yajl_gen g, const inbox_request *r);

#endif
