/* Message builder, sans-I/O: turns a send slot into RFC 5322 text (headers with
 * RFC 2047 encoded words where needed, a quoted-printable UTF-8 body when the text
 * is not plain short-lined ASCII) and into the DATA payload (CRLF-normalized,
 * dot-stuffed, terminated by "."). */
#ifndef KILN_SMTP_MESSAGE_H
#define KILN_SMTP_MESSAGE_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

/* The fields of one message; strings are borrowed, NUL-terminated UTF-8. The addresses
 * go into From/To as they are, UTF-8 included (RFC 6532): the session sends a message
 * whose addresses are not ASCII only in an SMTPUTF8 transaction. */
typedef struct smtp_message {
    const char *from_addr;
    const char *from_name; /* display name, may be NULL or "" */
    const char *to_addr;
    const char *subject;
    const char *body;
    const char *message_id; /* "<...@...>"; NULL lets the builder make one */
    /* A reply's threading (RFC 5322 3.6.4), NULL / 0 for fresh mail: In-Reply-To and
     * the References msg-ids oldest first. A value that is not a msg-id
     * (wire_msgid_ok) is dropped, and References past WIRE_MAX_REFERENCES. */
    const char *in_reply_to;
    const char *const *references;
    size_t nreferences;
    int64_t date_unix_s;
} smtp_message;

/* Appends the message (headers, blank line, body) with CRLF line ends to out. */
void smtp_message_build(const smtp_message *m, buf *out);
/* Appends data[0..n) as a DATA payload: every line end becomes CRLF (bare LF and
 * bare CR alike), lines starting with '.' get a second '.', and ".\r\n" ends it. */
void smtp_dot_stuff(const char *data, size_t n, buf *out);

/* Header value encoding (exposed for tests): an unstructured header value as-is when
 * printable ASCII, else as RFC 2047 "=?UTF-8?B?...?=" words folded to fit 76 columns.
 * used is the column the value starts at. */
void smtp_header_encode(const char *value, size_t used, buf *out);
/* Quoted-printable (RFC 2045 §6.7) of text with CRLF hard line breaks. */
void smtp_qp_encode(const char *text, size_t n, buf *out);
/* RFC 5322 date ("Tue, 25 Nov 2026 10:00:00 +0000") of a Unix time, in UTC. */
void smtp_date(int64_t unix_s, char *out, size_t outlen);

#endif
