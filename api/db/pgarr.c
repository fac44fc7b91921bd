/* PostgreSQL array literals (see pgarr.h). */
#include "pgarr.h"

#include <math.h>
#include <string.h>

void pgarr_open(pgarr *a)
{
    buf_init(&a->b);
    buf_putc(&a->b, '{');
    a->any = false;
}

static void sep(pgarr *a)
{
    if (a->any)
        buf_putc(&a->b, ',');
    a->any = true;
}

void pgarr_i64(pgarr *a, int64_t v)
{
    sep(a);
    buf_put_i64(&a->b, v);
}

void pgarr_str(pgarr *a, const char *s)
{
    sep(a);
    if (!s) {
        buf_puts(&a->b, "NULL");
        return;
    }
    buf_putc(&a->b, '"');
    /* Runs between the characters to escape in one copy each. */
    for (;;) {
        size_t n = strcspn(s, "\"\\");
        buf_append(&a->b, s, n);
        s += n;
        if (!*s)
            break;
        buf_putc(&a->b, '\\');
        buf_putc(&a->b, *s++);
    }
    buf_putc(&a->b, '"');
}

void pgarr_null(pgarr *a)
{
    sep(a);
    buf_puts(&a->b, "NULL");
}

void pgarr_seconds(pgarr *a, double s)
{
    sep(a);
    if (isinf(s))
        buf_puts(&a->b, s > 0 ? "Infinity" : "-Infinity");
    else
        buf_printf(&a->b, "%.0f", s);
}

const char *pgarr_done(pgarr *a, arena *ar)
{
    buf_putc(&a->b, '}');
    char *s = arena_strndup(ar, a->b.data, a->b.len);
    buf_free(&a->b);
    return s;
}
