/* Text codecs (see codec.h). */
#include "codec.h"

#include <openssl/evp.h>

void base64_append(buf *out, const void *data, size_t n)
{
    /* EVP_EncodeBlock writes 4 characters per 3 bytes plus a NUL, no line breaks. */
    size_t need = 4 * ((n + 2) / 3);
    buf_reserve(out, need + 1);
    int w = EVP_EncodeBlock((unsigned char *)out->data + out->len, data, (int)n);
    out->len += (size_t)w;
    out->data[out->len] = '\0';
}

int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int hex_decode_append(buf *out, const char *hex, size_t n)
{
    if (n % 2)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (hex_value((unsigned char)hex[i]) < 0)
            return -1;
    buf_reserve(out, n / 2 + 1);
    unsigned char *o = (unsigned char *)out->data + out->len;
    for (size_t i = 0; i < n; i += 2)
        *o++ = (unsigned char)(hex_value((unsigned char)hex[i]) << 4 |
                               hex_value((unsigned char)hex[i + 1]));
    out->len += n / 2;
    out->data[out->len] = '\0';
    return 0;
}
