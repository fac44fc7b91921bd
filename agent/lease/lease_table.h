/* The leases this agent holds and the send table (send id -> lease). Owned by the
 * control thread; the intent thread only looks a lease id up by send id, under the
 * table's mutex (lease_table_lock). The I/O threads never read it. */
#ifndef KILN_LEASE_TABLE_H
#define KILN_LEASE_TABLE_H

#include "spool.h"
#include "agent_wire.h"
#include "i64map.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One lease held by this agent. The intent thread reads only id (immutable once set). */
typedef struct lease {
    char id[SPOOL_LEASE_ID_MAX + 1];
    uint64_t key; /* names it to the engine (engine_extend after a heartbeat) */
    int64_t ttl_s;
    int64_t next_hb_ms;
    int64_t next_release_ms;
    size_t outstanding; /* slots in the engine without a final result */
    size_t unreported;  /* results queued, not acknowledged */
    int64_t *sends;     /* every slot id granted, for a cancel when the lease is gone */
    size_t nsends;
    bool gone; /* the server ended it (expired, released, unknown) */
    struct lease *next;
} lease;

typedef struct lease_table {
    lease *head;        /* newest first */
    size_t count;       /* leases held */
    size_t outstanding; /* slots without a final result, all leases */
    uint64_t last_key;  /* lease keys for the engine */
    pthread_mutex_t mu; /* guards sends (the intent thread reads it) */
    i64map sends;       /* send id -> lease * */
} lease_table;

void lease_table_init(lease_table *t);
/* Frees every lease and the send table. */
void lease_table_free(lease_table *t);
lease *lease_table_add(lease_table *t, const char *id, int64_t ttl_s);
lease *lease_table_find(lease_table *t, const char *id);
/* Unlinks and frees l. */
void lease_table_remove(lease_table *t, lease *l);
/* Every slot of the lease document (mailboxes sent and entries rejected) becomes
 * outstanding under l; returns how many. */
size_t lease_table_grant(lease_table *t, lease *l, const wire_lease *doc);
/* A slot's final result came: the lease that held it (its entry removed), or NULL. */
lease *lease_table_take(lease_table *t, int64_t send_id);
/* For the intent thread, between lock and unlock: the lease holding send_id, or NULL. */
void lease_table_lock(lease_table *t);
void lease_table_unlock(lease_table *t);
const lease *lease_table_get_locked(const lease_table *t, int64_t send_id);

#endif
