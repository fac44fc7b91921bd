/* What a found message tells about its delivery (issue 13, placement): the recipient's
 * provider, classified from the operator's provider map (KILN_PROVIDER_MAP) or the
 * recipient's IMAP host, and the spf/dkim/dmarc verdicts
 * of the Authentication-Results header (RFC 8601) the provider wrote. Pure: libc only. */
#ifndef KILN_INBOX_CLASSIFY_H
#define KILN_INBOX_CLASSIFY_H

#include <stdbool.h>
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
/* The provider of a name ("gmail", "outlook", "yahoo", "other"); false if none. */
bool inbox_provider_parse(const char *name, size_t len, enum inbox_provider *out);

/* The operator's map (KILN_PROVIDER_MAP, docs/operations.md "Recipient providers"):
 * "key=provider,..." where a key is a host or domain name matched like the built-in
 * rules (the name itself or any name under it, case-insensitive), checked against the
 * recipient's IMAP host and then its address's domain, in the order given, before the
 * built-in host rules. For mail hosted under a custom name (a company's own IMAP host,
 * a domain on Google Workspace behind a local proxy) and for the local stack, whose
 * IMAP host is 127.0.0.1 for every provider. */
#define INBOX_PROVIDER_MAP_MAX 64
#define INBOX_PROVIDER_KEY_MAX 253
typedef struct inbox_provider_map {
    size_t n;
    struct {
        char key[INBOX_PROVIDER_KEY_MAX + 1];
        enum inbox_provider provider;
    } rule[INBOX_PROVIDER_MAP_MAX];
} inbox_provider_map;

/* Parses spec (NULL or "": an empty map); false with a message naming the entry in err
 * (an entry without '=', an empty or overlong key, a key with characters a host name
 * cannot have, an unknown provider, more than INBOX_PROVIDER_MAP_MAX entries). */
bool inbox_provider_map_parse(const char *spec, inbox_provider_map *out, char *err, size_t errlen);
/* The recipient's provider: the map (m may be NULL) on imap_host, then on the domain of
 * address (after its last '@'), then inbox_provider_of_host(imap_host). */
enum inbox_provider inbox_provider_of(const inbox_provider_map *m, const char *imap_host,
                                      const char *address);

/* Parses an Authentication-Results value (len bytes, need not be NUL terminated; NULL:
 * none). Skips the authserv-id, comments and quoted strings; per method the first
 * result wins except that any pass of dkim wins (a message may carry several
 * signatures). pass -> pass; fail, softfail, permerror -> fail; anything else (none,
 * neutral, temperror, policy, absent) -> none. */
inbox_auth inbox_auth_parse(const char *value, size_t len);
const char *inbox_verdict_name(enum inbox_verdict v);

#endif
