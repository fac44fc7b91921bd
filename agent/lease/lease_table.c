/* The leases held and the send table (see lease_table.h). The send table is open
 * addressing with tombstones, cleared by a rehash sized for the live entries. */
#include "lease_table.h"

#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct send_entry {
    int64_t send_id; /* 0: free */
    lease *lease;    /* NULL with send_id set: a tombstone */
};

void lease_table_init(lease_table *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
}

void lease_table_free(lease_table *t)
{
    while (t->head)
        lease_table_remove(t, t->head);
    free(t->v);
    t->v = NULL;
    pthread_mutex_destroy(&t->mu);
}

lease *lease_table_add(lease_table *t, const char *id, int64_t ttl_s)
{
    lease *l = xcalloc(1, sizeof *l);
    snprintf(l->id, sizeof l->id, "%s", id);
    l->key = ++t->last_key;
    l->ttl_s = ttl_s;
    l->next = t->head;
    t->head = l;
    t->count++;
    return l;
}

lease *lease_table_find(lease_table *t, const char *id)
{
    for (lease *l = t->head; l; l = l->next)
        if (!strcmp(l->id, id))
            return l;
    return NULL;
}

void lease_table_remove(lease_table *t, lease *l)
{
    for (lease **p = &t->head; *p; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            t->count--;
            break;
        }
    free(l->sends);
    free(l);
}

/* ---- send table ---- */

static size_t slot_of(const lease_table *t, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 20) & (t->cap - 1);
    while (t->v[i].send_id != 0 && t->v[i].send_id != id)
        i = (i + 1) & (t->cap - 1);
    return i;
}

/* Rehashes into a table sized for the live entries (tombstones dropped), so a long run
 * with churn keeps the table small. */
static void rehash(lease_table *t)
{
    struct send_entry *old = t->v;
    size_t old_cap = t->cap, live = 0;
    for (size_t i = 0; i < old_cap; i++)
        live += old[i].send_id != 0 && old[i].lease != NULL;
    size_t cap = 4096;
    while (cap < live * 4)
        cap *= 2;
    t->cap = cap;
    t->v = xcalloc(cap, sizeof *t->v);
    t->used = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].send_id != 0 && old[i].lease) {
            t->v[slot_of(t, old[i].send_id)] = old[i];
            t->used++;
        }
    free(old);
}

static void put(lease_table *t, int64_t id, lease *l)
{
    if ((t->used + 1) * 2 > t->cap)
        rehash(t);
    size_t i = slot_of(t, id);
    if (t->v[i].send_id == 0)
        t->used++;
    t->v[i].send_id = id;
    t->v[i].lease = l;
}

const lease *lease_table_get_locked(const lease_table *t, int64_t send_id)
{
    if (!t->cap || send_id == 0)
        return NULL;
    return t->v[slot_of(t, send_id)].lease;
}

size_t lease_table_grant(lease_table *t, lease *l, const wire_lease *doc)
{
    size_t total = 0;
    for (size_t i = 0; i < doc->nmailboxes; i++)
        total += doc->mailboxes[i]->nsends;
    for (size_t i = 0; i < doc->nrejected; i++)
        total += doc->rejected[i].nsend_ids;
    l->sends = xcalloc(total ? total : 1, sizeof *l->sends);
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < doc->nmailboxes; i++)
        for (size_t k = 0; k < doc->mailboxes[i]->nsends; k++) {
            int64_t id = doc->mailboxes[i]->sends[k].id;
            l->sends[l->nsends++] = id;
            put(t, id, l);
        }
    for (size_t i = 0; i < doc->nrejected; i++)
        for (size_t k = 0; k < doc->rejected[i].nsend_ids; k++) {
            int64_t id = doc->rejected[i].send_ids[k];
            l->sends[l->nsends++] = id;
            put(t, id, l);
        }
    pthread_mutex_unlock(&t->mu);
    l->outstanding = total;
    t->outstanding += total;
    return total;
}

lease *lease_table_take(lease_table *t, int64_t send_id)
{
    pthread_mutex_lock(&t->mu);
    lease *l = (lease *)lease_table_get_locked(t, send_id);
    /* a tombstone (send_id kept, lease NULL) keeps probe chains intact */
    if (l) {
        size_t i = slot_of(t, send_id);
        t->v[i].lease = NULL;
    }
    pthread_mutex_unlock(&t->mu);
    return l;
}

void lease_table_lock(lease_table *t)
{
    pthread_mutex_lock(&t->mu);
}

void lease_table_unlock(lease_table *t)
{
    pthread_mutex_unlock(&t->mu);
}
