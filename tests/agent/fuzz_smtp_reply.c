/* libFuzzer target: the SMTP reply parser on arbitrary bytes, fed whole and again in
 * chunks whose sizes come from the input; both feeds must agree. */
#include "smtp_reply.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int parse_all(const uint8_t *data, size_t n, size_t chunk, int *codes, int max)
{
    smtp_reply_parser p;
    smtp_reply r;
    smtp_reply_parser_init(&p);
    int got = 0;
    size_t off = 0;
    while (off < n) {
        size_t len = n - off < chunk ? n - off : chunk;
        size_t pos = 0;
        while (pos < len) {
            size_t used = 0;
            int rc = smtp_reply_feed(&p, (const char *)data + off + pos, len - pos, &used, &r);
            if (used > len - pos)
                abort();
            pos += used;
            if (rc == SMTP_REPLY_ERROR)
                return -got - 1;
            if (rc == SMTP_REPLY_NEED_MORE)
                break;
            if (r.code < 200 || r.code > 599 || r.text_len >= sizeof r.text ||
                r.last_line > r.text_len)
                abort();
            size_t dl;
            smtp_reply_detail(&r, &dl);
            smtp_reply_has_keyword(&r, "PIPELINING", NULL, NULL);
            if (got < max)
                codes[got] = r.code;
            got++;
        }
        off += len;
    }
    return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)(data[0] % 17) + 1;
    int a[64], b[64];
    int na = parse_all(data + 1, size - 1, size, a, 64);
    int nb = parse_all(data + 1, size - 1, chunk, b, 64);
    if (na != nb)
        abort();
    int n = na < 0 ? -na - 1 : na;
    if (n > 64)
        n = 64;
    if (memcmp(a, b, (size_t)n * sizeof a[0]))
        abort();
    return 0;
}
