/* Jobs: the mailboxes and send slots the scheduler consumes, as plain structs it owns
 * once handed over. The lease document that carries them (DESIGN.md "Wire shapes") is
 * parsed and validated by the lease loop's wire module (lease/agent_wire.h), once, so the
 * engine and the SMTP session can trust what they are handed (no CR/LF in addresses,
 * a port in range, a known security mode). */
#ifndef KILN_JOBS_H
#define KILN_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct job_send {
    int64_t id;
    int64_t not_before_s; /* offset from the lease start */
    char *to;
    char *subject;
    char *body;
    char *message_id; /* NULL: the builder makes one */
    /* A reply's threading, NULL / 0 otherwise: validated msg-ids (wire_msgid_ok), at
     * most WIRE_MAX_REFERENCES references, oldest first. */
    char *in_reply_to;
    char **references;
    size_t nreferences;
} job_send;

/* One mailbox with its slots. Owned by whoever holds the pointer: the lease until
 * handed to engine_submit, then the engine, which frees it with job_mailbox_free. */
typedef struct job_mailbox {
    int64_t id;
    char *address;
    char *display_name;
    char *host;
    int port;
    int security; /* enum smtp_security */
    char *username;
    char *password;
    char *oauth_token;
    char *ca_file;
    bool allow_plaintext_auth; /* smtp.allow_plaintext_auth: AUTH without TLS allowed */
    job_send *sends;
    size_t nsends;
} job_mailbox;

/* Appends a copy of s[0..n) to js's references: 0, -E2BIG past WIRE_MAX_REFERENCES,
 * -EINVAL when it is not a msg-id (wire_msgid_ok). */
int job_send_add_reference(job_send *js, const char *s, size_t n);
/* Frees js's references (a duplicate "references" key starts them again). */
void job_send_clear_references(job_send *js);
/* Frees the mailbox, its slots and its strings (secrets wiped first). NULL is fine. */
void job_mailbox_free(job_mailbox *m);
/* A mail address we are willing to put in an envelope: local@domain, printable,
 * no spaces, angle brackets or quotes, at most 254 bytes. */
int jobs_address_ok(const char *s);

#endif
