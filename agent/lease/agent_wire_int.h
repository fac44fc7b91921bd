/* Inside the wire module only: the lease document's one pass (agent_wire_lease.c), which
 * agent_wire.c classifies as a lease answer, and the checks the inbox files share. */
#ifndef KILN_AGENT_WIRE_INT_H
#define KILN_AGENT_WIRE_INT_H

#include "agent_wire.h"
#include "xalloc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* What one pass over a lease document found. */
struct lease_doc {
    wire_lease *l;  /* never NULL; the caller frees it */
    bool syntax_ok; /* JSON, an object at the top, read to its end */
    bool fault;     /* a lease-level field failed (err says which) */
    bool lease_id_seen, lease_id_null;
    size_t inbox_off[2], inbox_len[2];
};

/* No C0 control character nor DEL (tab neither): for names, not free text. */
static inline bool wire_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* No C0 control character but tab: for display names, subjects, credentials. */
static inline bool wire_no_controls(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return false;
    return true;
}

/* A header value that needs no encoding in any transaction (the Message-ID). */
static inline bool wire_printable_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* Replaces *slot with a copy of the string (duplicate keys: the last one counts); a
 * secret's old value is wiped first. */
static inline void wire_set_str(char **slot, const unsigned char *s, size_t n, bool secret)
{
    if (*slot) {
        if (secret)
            memset(*slot, 0, strlen(*slot));
        free(*slot);
    }
    *slot = xstrndup((const char *)s, n);
}

void wire_lease_doc_parse(const char *data, size_t n, struct lease_doc *d, char *err,
                          size_t errlen);

#endif
