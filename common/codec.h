/* Text codecs: base64 (RFC 4648, over OpenSSL's EVP_EncodeBlock) and hex. */
#ifndef KILN_CODEC_H
#define KILN_CODEC_H

#include "buf.h"

#include <stddef.h>

/* Appends the standard base64 (with padding, no line breaks) of data to out. */
void base64_append(buf *out, const void *data, size_t n);
/* Value of one hex digit (either case), or -1. */
int hex_value(int c);
/* Lower-case hex of n bytes; out must hold 2n+1 bytes (NUL-terminated). */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* Appends the bytes of n hex digits (either case) to out. Returns 0, or -1 (out
 * unchanged) when n is odd or a character is not a hex digit. */
int hex_decode_append(buf *out, const char *hex, size_t n);

#endif
