/* The leases held and the send table (see lease_table.h). */
#include "lease_table.h"

#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lease_table_init(lease_table *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    i64map_init(&t->sends);
}

void lease_table_free(lease_table *t)
{
    while (t->head)
        lease_table_remove(t, t->head);
    i64map_free(&t->sends);
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

const lease *lease_table_get_locked(const lease_table *t, int64_t send_id)
{
    if (send_id == INT64_MIN) /* i64map's empty mark: never a send id */
        return NULL;
    return i64map_getp(&t->sends, send_id);
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
            i64map_putp(&t->sends, id, l);
        }
    for (size_t i = 0; i < doc->nrejected; i++)
        for (size_t k = 0; k < doc->rejected[i].nsend_ids; k++) {
            int64_t id = doc->rejected[i].send_ids[k];
            l->sends[l->nsends++] = id;
            i64map_putp(&t->sends, id, l);
        }
    pthread_mutex_unlock(&t->mu);
    l->outstanding = total;
    t->outstanding += total;
    return total;
}

lease *lease_table_take(lease_table *t, int64_t send_id)
{
    int64_t v = 0;
    pthread_mutex_lock(&t->mu);
    bool held = send_id != INT64_MIN && i64map_del(&t->sends, send_id, &v);
    pthread_mutex_unlock(&t->mu);
    return held ? (lease *)(intptr_t)v : NULL;
}

void lease_table_lock(lease_table *t)
{
    pthread_mutex_lock(&t->mu);
}

void lease_table_unlock(lease_table *t)
{
    pthread_mutex_unlock(&t->mu);
}
