/* int64 -> int64 hash map (see i64map.h). */
#include "i64map.h"

#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#define EMPTY INT64_MIN
#define MIN_CAP 64

static inline size_t home(const i64map *m, int64_t key)
{
    /* Fibonacci hashing: the multiply spreads sequential ids; the high bits are the
     * well-mixed ones. */
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32 ^ h) & (m->cap - 1);
}

void i64map_init(i64map *m)
{
    memset(m, 0, sizeof *m);
}

void i64map_free(i64map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

void i64map_clear(i64map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        m->keys[i] = EMPTY;
    m->count = 0;
}

/* The cell holding key, or the empty cell where it would go. */
static size_t find(const i64map *m, int64_t key)
{
    size_t i = home(m, key);
    while (m->keys[i] != EMPTY && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static void resize(i64map *m, size_t cap)
{
    i64map old = *m;
    m->cap = cap;
    m->keys = xmalloc(cap * sizeof *m->keys);
    m->vals = xmalloc(cap * sizeof *m->vals);
    for (size_t i = 0; i < cap; i++)
        m->keys[i] = EMPTY;
    for (size_t i = 0; i < old.cap; i++)
        if (old.keys[i] != EMPTY) {
            size_t j = find(m, old.keys[i]);
            m->keys[j] = old.keys[i];
            m->vals[j] = old.vals[i];
        }
    free(old.keys);
    free(old.vals);
}

bool i64map_get(const i64map *m, int64_t key, int64_t *val)
{
    if (!m->cap || key == EMPTY)
        return false;
    size_t i = find(m, key);
    if (m->keys[i] == EMPTY)
        return false;
    if (val)
        *val = m->vals[i];
    return true;
}

int64_t *i64map_slot(i64map *m, int64_t key, int64_t init, bool *added)
{
    if (key == EMPTY)
        abort(); /* a caller bug: the reserved key can never be stored */
    if ((m->count + 1) * 4 > m->cap * 3)
        resize(m, m->cap ? m->cap * 2 : MIN_CAP);
    size_t i = find(m, key);
    bool fresh = m->keys[i] == EMPTY;
    if (fresh) {
        m->keys[i] = key;
        m->vals[i] = init;
        m->count++;
    }
    if (added)
        *added = fresh;
    return &m->vals[i];
}

void i64map_put(i64map *m, int64_t key, int64_t val)
{
    *i64map_slot(m, key, val, NULL) = val;
}

bool i64map_del(i64map *m, int64_t key, int64_t *val)
{
    if (!m->cap || key == EMPTY)
        return false;
    size_t i = find(m, key), mask = m->cap - 1;
    if (m->keys[i] == EMPTY)
        return false;
    if (val)
        *val = m->vals[i];
    /* Backward shift: pull later members of the probe run into the hole when their
     * home lies at or before it, so lookups never need tombstones. */
    for (size_t j = (i + 1) & mask; m->keys[j] != EMPTY; j = (j + 1) & mask) {
        size_t h = home(m, m->keys[j]);
        if (((j - h) & mask) >= ((j - i) & mask)) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = EMPTY;
    m->count--;
    if (m->cap > MIN_CAP && m->count * 8 < m->cap)
        resize(m, m->cap / 2);
    return true;
}

bool i64map_next(const i64map *m, size_t *it, int64_t *key, int64_t *val)
{
    for (size_t i = *it; i < m->cap; i++)
        if (m->keys[i] != EMPTY) {
            if (key)
                *key = m->keys[i];
            if (val)
                *val = m->vals[i];
            *it = i + 1;
            return true;
        }
    *it = m->cap;
    return false;
}
