/* Timer heap (see timer_heap.h). */
#include "timer_heap.h"

#include "xalloc.h"

#include <stdlib.h>

static void sift_down(timer_heap *h, size_t i)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->len)
            return;
        if (c + 1 < h->len && h->v[c + 1].wake_ms < h->v[c].wake_ms)
            c++;
        if (h->v[c].wake_ms >= h->v[i].wake_ms)
            return;
        timer_entry x = h->v[i];
        h->v[i] = h->v[c];
        h->v[c] = x;
        i = c;
    }
}

void timer_heap_push(timer_heap *h, int64_t wake_ms, void *item)
{
    if (h->len == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 256;
        h->v = xrealloc(h->v, h->cap * sizeof *h->v);
    }
    size_t i = h->len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->v[p].wake_ms <= wake_ms)
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = (timer_entry){wake_ms, item};
}

void *timer_heap_pop(timer_heap *h)
{
    void *top = h->v[0].item;
    h->v[0] = h->v[--h->len];
    sift_down(h, 0);
    return top;
}

void timer_heap_retain(timer_heap *h, bool (*keep)(void *item, void *arg), void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < h->len; i++)
        if (keep(h->v[i].item, arg))
            h->v[n++] = h->v[i];
    h->len = n;
    for (size_t i = n / 2 + 1; i-- > 0;)
        sift_down(h, i);
}

void timer_heap_free(timer_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->len = h->cap = 0;
}
