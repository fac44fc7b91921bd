/* Shared between the two halves of the response parser: imap_resp.c (assembly and
 * syntax) and imap_resp_view.c (the typed views of codes and data). Not for callers. */
#ifndef KILN_IMAP_RESP_INTERNAL_H
#define KILN_IMAP_RESP_INTERNAL_H

#include "imap_resp.h"

/* Parses s[0..n) as a chain of values (atoms, strings, NIL, lists) up to its end.
 * Returns 0 with the chain in *first and its length in *count, or -1 with *err set. items counts
 * nodes against lim->items_max across calls for one response. */
int imap_values_parse(arena *a, const char *s, size_t n, const imap_resp_limits *lim,
                      unsigned *items, imap_node **first, size_t *count, const char **err);

/* Fills r->code's typed fields from its name and raw args; -1 (with *err) when a known
 * code's arguments are malformed. */
int imap_resp_code_view(arena *a, imap_resp *r, const imap_resp_limits *lim, unsigned *items,
                        const char **err);
/* Names r->data from r->name (numbered: "* n NAME") and fills the data's view from
 * r->items; -1 (with *err) when the values do not have the data's shape. */
int imap_resp_data_view(arena *a, imap_resp *r, bool numbered, const char **err);

/* ASCII case-insensitive comparison of s[0..n) with the C string kw. */
bool imap_word_is(const char *s, size_t n, const char *kw);

#endif
