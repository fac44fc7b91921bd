/* What a found message tells about its delivery (issue 13, placement): the recipient's
 * provider, classified from the recipient's IMAP host, and the spf/dkim/dmarc verdicts
 * of the Authentication-Results header (RFC 8601) the provider wrote. Pure: libc only. */
#ifndef KILN_INBOX_CLASSIFY_H
#define KILN_INBOX_CLASSIFY_H

#include <stddef.h>

/* Values of the mail_provider and auth_verdict types of 011_inbox.sql. */
enum inbox_provider { PROVIDER_GMAIL, PROVIDER_OUTLOOK, PROVIDER_YAHOO, PROVIDER_OTHER };
enum inbox_verdict { VERDICT_NONE, VERDICT_PASS, VERDICT_FAIL };

typedef struct inbox_auth {
    enum inbox_verdict spf, dkim, dmarc;
} inbox_auth;

/* gmail: imap.gmail.com, *.gmail.com, *.googlemail.com; outlook: outlook.office365.com,
 * *.outlook.com, *.office365.com, *.hotmail.com, *.live.com; yahoo: *.yahoo.com,
 * *.yahoo.co.*, *.aol.com; anything else (NULL too): other. Case-insensitive. */
enum inbox_provider inbox_provider_of_host(const char *imap_host);
const char *inbox_provider_name(enum inbox_provider p);

/* Parses an Authentication-Results value (len bytes, need not be NUL terminated; NULL:
 * none). Skips the authserv-id, comments and quoted strings; per method the first
 * result wins except that any pass of dkim wins (a message may carry several
 * signatures). pass -> pass; fail, softfail, permerror -> fail; anything else (none,
 * neutral, temperror, policy, absent) -> none. */
inbox_auth inbox_auth_parse(const char *value, size_t len);
const char *inbox_verdict_name(enum inbox_verdict v);

#endif
