/* Jobs: the lease JSON of DESIGN.md ("Wire shapes"), parsed and validated into
 * plain structs the engine owns. Every field is checked here, once, so the engine
 * and the SMTP session can trust what they are handed (no CR/LF in addresses, a
 * port in range, a known security mode). */
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

/* A mailbox entry of the lease that failed validation. It is not sent: its slots go
 * back to the control plane as failed with reason, so one bad entry never holds up
 * the others. */
typedef struct job_rejected {
    int64_t mailbox_id; /* 0 when the entry had no usable id */
    int64_t *send_ids;  /* the slots whose ids could be read */
    size_t nsend_ids;
    char reason[192]; /* "mailboxes[3].smtp.password: not valid UTF-8" */
} job_rejected;

typedef struct job_lease {
    char *lease_id;
    int64_t ttl_s;
    job_mailbox **mailboxes; /* entries set to NULL once handed over */
    size_t nmailboxes;
    job_rejected *rejected; /* entries that failed validation, in document order */
    size_t nrejected;
} job_lease;

/* Parses and validates; returns 0, or -1 with a one-line reason naming the field. A
 * fault inside one mailbox entry (a bad, missing or mistyped field, invalid UTF-8)
 * rejects only that entry (l->rejected); only a fault of the document (not JSON,
 * truncated) or of the lease's own fields fails the whole parse. */
int jobs_parse(const char *data, size_t n, job_lease **out, char *err, size_t errlen);
void job_lease_free(job_lease *l);
void job_mailbox_free(job_mailbox *m);
/* A mail address we are willing to put in an envelope: local@domain, printable,
 * no spaces, angle brackets or quotes, at most 254 bytes. */
int jobs_address_ok(const char *s);

#endif
