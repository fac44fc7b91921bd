/* The intent thread: the engine's I/O threads ask, through a hook that only queues,
 * for a slot's intent to be made durable before its payload leaves (after the
 * server's 354). This thread appends the intents to the spool, one fdatasync per
 * batch, and gives the engine the go-ahead (engine_intent_done). No disk I/O on an
 * I/O thread; a crash after the intent turns the slot into "unknown", never into a
 * second send. */
#ifndef KILN_INTENTS_H
#define KILN_INTENTS_H

#include "agent_config.h"
#include "engine.h"
#include "lease_table.h"
#include "spool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct intent_req;

typedef struct intents {
    pthread_t tid;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct intent_req *reqs;
    size_t n, cap;
    bool stop;
    const agent_config *cfg; /* intent_batch_us: gather this long per fdatasync (reloadable) */
    spool *sp;
    lease_table *leases;
    engine *e;
} intents;

void intents_init(intents *in, lease_table *leases, const agent_config *cfg);
/* The engine hook (engine_config.intent_fn, arg = the intents): queues only. */
void intents_hook(void *arg, uint64_t token, const int64_t *send_ids, size_t n);
/* Starts the thread once the spool and the engine exist; 0, or -1. */
int intents_start(intents *in, spool *sp, engine *e);
/* Stops the thread (what is queued is written first) and frees what is left. */
void intents_stop(intents *in);

#endif
