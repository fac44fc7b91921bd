/* Growable byte buffer: the one way kiln builds strings and wire bytes.
 * A buf owns its storage; buf_free releases it. The data is always kept
 * NUL-terminated (not counted in len) so it can be handed to C APIs. */
#ifndef KILN_BUF_H
#define KILN_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf;

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void buf_init(buf *b);
void buf_free(buf *b);
void buf_reset(buf *b);
void buf_reserve(buf *b, size_t extra);
void buf_append(buf *b, const void *data, size_t n);
void buf_puts(buf *b, const char *s);
/* One byte; inline because builders call it per character. */
static inline void buf_putc(buf *b, char c)
{
    if (b->len + 2 <= b->cap) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
    } else {
        buf_append(b, &c, 1);
    }
}
/* Decimal text of v (with '-' when negative), not NUL-terminated; returns its length.
 * Without printf: builders write numbers per row and per element, and vsnprintf's
 * stream setup was a tenth of kiln-api's CPU on the lease path (session 33). */
#define FMT_I64_MAX 20
size_t fmt_i64(char out[FMT_I64_MAX], int64_t v);
void buf_put_i64(buf *b, int64_t v);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf *b, const char *fmt, va_list ap);
/* Drops the first n bytes (consumed input), keeping the rest. */
void buf_consume(buf *b, size_t n);
/* Returns the data and gives up ownership; the buf is left empty. */
char *buf_steal(buf *b);

#endif
