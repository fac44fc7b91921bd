/* Arena (pool) allocator with cleanup hooks, after nginx's ngx_pool: one arena
 * per request or session, everything allocated from it is released together by
 * arena_destroy, which first runs the cleanups (PQclear, yajl_tree_free, ...)
 * in reverse order of registration. */
#ifndef KILN_ARENA_H
#define KILN_ARENA_H

#include <stddef.h>

typedef struct arena arena;
typedef void (*arena_cleanup_fn)(void *ptr);

arena *arena_create(size_t block_size);
/* Frees all allocations but keeps the first block for reuse. */
void arena_reset(arena *a);
void arena_destroy(arena *a);
void *arena_alloc(arena *a, size_t n);
void *arena_calloc(arena *a, size_t n);
char *arena_strndup(arena *a, const char *s, size_t n);
char *arena_strdup(arena *a, const char *s);
char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Registers fn(ptr) to run at reset/destroy. */
void arena_cleanup_add(arena *a, arena_cleanup_fn fn, void *ptr);

#endif
