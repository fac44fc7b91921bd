/* A binary min-heap of items by wake time (ms), one per I/O thread: what is due first
 * is on top. The key sits beside the item, so a sift reads no item. */
#ifndef KILN_NET_TIMER_HEAP_H
#define KILN_NET_TIMER_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct timer_entry {
    int64_t wake_ms;
    void *item;
} timer_entry;

/* Zero-initialised is empty; timer_heap_free releases the array (not the items). */
typedef struct timer_heap {
    timer_entry *v;
    size_t len, cap;
} timer_heap;

void timer_heap_push(timer_heap *h, int64_t wake_ms, void *item);
/* The earliest item; the heap must not be empty. */
void *timer_heap_pop(timer_heap *h);
/* The earliest wake time, INT64_MAX when empty. */
static inline int64_t timer_heap_next_ms(const timer_heap *h)
{
    return h->len ? h->v[0].wake_ms : INT64_MAX;
}
/* Keeps the items for which keep(item, arg) is true, in heap order again after. */
void timer_heap_retain(timer_heap *h, bool (*keep)(void *item, void *arg), void *arg);
void timer_heap_free(timer_heap *h);

#endif
