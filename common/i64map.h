/* A hash map from int64 keys to int64 values: open addressing with linear probing,
 * deletion by backward shift (no tombstones, so a long run with churn never
 * degrades), grown at 3/4 load and shrunk when mostly empty. Any key is allowed
 * except INT64_MIN (reserved as the empty mark). Pointers are stored as values with
 * i64map_getp/i64map_putp. Not thread-safe: one owner at a time. A zeroed struct is
 * an empty map. */
#ifndef KILN_I64MAP_H
#define KILN_I64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct i64map {
    int64_t *keys;
    int64_t *vals;
    size_t cap; /* 0 or a power of two */
    size_t count;
} i64map;

void i64map_init(i64map *m);
void i64map_free(i64map *m);
/* Removes every entry, keeping the memory. */
void i64map_clear(i64map *m);
static inline size_t i64map_count(const i64map *m)
{
    return m->count;
}
/* True with *val set (val may be NULL) when key is present. */
bool i64map_get(const i64map *m, int64_t key, int64_t *val);
static inline bool i64map_has(const i64map *m, int64_t key)
{
    return i64map_get(m, key, NULL);
}
/* Inserts or replaces. */
void i64map_put(i64map *m, int64_t key, int64_t val);
/* The value cell of key, inserted with init when absent (*added says which). The
 * pointer is valid until the next put, del or clear. */
int64_t *i64map_slot(i64map *m, int64_t key, int64_t init, bool *added);
/* Removes key; true when it was present (with its value in *val, which may be NULL). */
bool i64map_del(i64map *m, int64_t key, int64_t *val);
/* Iteration in no particular order: start with *it = 0; false at the end. The map
 * must not change during an iteration (collect keys first, then delete). */
bool i64map_next(const i64map *m, size_t *it, int64_t *key, int64_t *val);

static inline void *i64map_getp(const i64map *m, int64_t key)
{
    int64_t v;
    return i64map_get(m, key, &v) ? (void *)(intptr_t)v : NULL;
}
static inline void i64map_putp(i64map *m, int64_t key, void *p)
{
    i64map_put(m, key, (int64_t)(intptr_t)p);
}

#endif
