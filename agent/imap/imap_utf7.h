/* Modified UTF-7 (RFC 3501 §5.1.3), the wire form of IMAP mailbox names: printable
 * ASCII stands for itself ("&" as "&-"), anything else is UTF-16 in a base64 run with
 * ',' for '/' between '&' and '-'. Both directions refuse what is not canonical, so a
 * name decodes to one string and encodes back to the same bytes. */
#ifndef KILN_IMAP_UTF7_H
#define KILN_IMAP_UTF7_H

#include "buf.h"

#include <stddef.h>

/* Appends the modified UTF-7 form of the UTF-8 name utf8[0..n) to out. Returns 0, or -1
 * (out unchanged) when the input is not valid UTF-8 or holds a NUL. */
int imap_utf7_encode(const char *utf8, size_t n, buf *out);
/* Appends the UTF-8 form of the modified UTF-7 name s[0..n) to out. Returns 0, or -1
 * (out unchanged) on bytes outside printable ASCII, an unterminated or empty run, bad
 * base64 or padding bits, a UTF-16 surrogate out of a pair, a run that encodes
 * printable ASCII or NUL, or two runs back to back. */
int imap_utf7_decode(const char *s, size_t n, buf *out);

#endif
