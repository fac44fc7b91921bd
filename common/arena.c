/* Arena allocator with cleanup hooks (see arena.h). */
#include "arena.h"

#include "xalloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct block {
    struct block *next;
    size_t size;
    size_t used;
    max_align_t data[];
} block;

typedef struct cleanup {
    struct cleanup *next;
    arena_cleanup_fn fn;
    void *ptr;
} cleanup;

struct arena {
    block *head;
    size_t block_size;
    cleanup *cleanups;
};

static block *block_new(size_t size)
{
    block *b = xmalloc(sizeof(block) + size);
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

arena *arena_create(size_t block_size)
{
    arena *a = xmalloc(sizeof *a);
    a->block_size = block_size ? block_size : 8192;
    a->head = block_new(a->block_size);
    a->cleanups = NULL;
    return a;
}

static void run_cleanups(arena *a)
{
    cleanup *c = a->cleanups;
    while (c) {
        cleanup *next = c->next;
        c->fn(c->ptr);
        c = next;
    }
    a->cleanups = NULL;
}

void arena_reset(arena *a)
{
    run_cleanups(a);
    block *b = a->head->next;
    while (b) {
        block *next = b->next;
        free(b);
        b = next;
    }
    /* Keep the most recent block: it is the largest used so far, or the default. */
    a->head->next = NULL;
    a->head->used = 0;
}

void arena_destroy(arena *a)
{
    if (!a)
        return;
    arena_reset(a);
    free(a->head);
    free(a);
}

void *arena_alloc(arena *a, size_t n)
{
    const size_t align = sizeof(max_align_t);
    n = (n + align - 1) & ~(align - 1);
    if (n == 0)
        n = align;
    block *b = a->head;
    if (b->size - b->used < n) {
        size_t size = n > a->block_size ? n : a->block_size;
        block *nb = block_new(size);
        /* New block becomes head; the old head (partly used) follows it. */
        nb->next = b;
        a->head = nb;
        b = nb;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

void *arena_calloc(arena *a, size_t n)
{
    void *p = arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *arena_strdup(arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

char *arena_printf(arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return arena_strdup(a, "");
    }
    char *d = arena_alloc(a, (size_t)n + 1);
    vsnprintf(d, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return d;
}

void arena_cleanup_add(arena *a, arena_cleanup_fn fn, void *ptr)
{
    cleanup *c = arena_alloc(a, sizeof *c);
    c->fn = fn;
    c->ptr = ptr;
    c->next = a->cleanups;
    a->cleanups = c;
}
