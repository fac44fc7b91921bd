/* The intent thread (see intents.h). */
#include "intents.h"

#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct intent_req {
    uint64_t token;
    int64_t *ids;
    size_t n;
};

void intents_init(intents *in, lease_table *leases, const agent_config *cfg)
{
    memset(in, 0, sizeof *in);
    pthread_mutex_init(&in->mu, NULL);
    pthread_cond_init(&in->cv, NULL);
    in->leases = leases;
    in->cfg = cfg;
}

/* Engine hook, on an I/O thread: queue only. */
void intents_hook(void *arg, uint64_t token, const int64_t *ids, size_t n)
{
    intents *in = arg;
    int64_t *copy = xmalloc((n ? n : 1) * sizeof *copy);
    memcpy(copy, ids, n * sizeof *copy);
    pthread_mutex_lock(&in->mu);
    if (in->n == in->cap) {
        in->cap = in->cap ? in->cap * 2 : 256;
        in->reqs = xrealloc(in->reqs, in->cap * sizeof *in->reqs);
    }
    in->reqs[in->n++] = (struct intent_req){token, copy, n};
    pthread_cond_signal(&in->cv);
    pthread_mutex_unlock(&in->mu);
}

/* One batch: every intent to the spool (lease id from the send table), one sync. */
static void write_batch(intents *in, struct intent_req *batch, size_t n)
{
    uint64_t seq = 0;
    spool_record r;
    memset(&r, 0, sizeof r);
    r.type = SPOOL_INTENT;
    lease_table_lock(in->leases);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < batch[i].n; k++) {
            const lease *l = lease_table_get_locked(in->leases, batch[i].ids[k]);
            snprintf(r.lease_id, sizeof r.lease_id, "%s", l ? l->id : "");
            r.send_id = batch[i].ids[k];
            seq = spool_append(in->sp, &r);
        }
    lease_table_unlock(in->leases);
    bool ok = spool_sync(in->sp, seq) == 0;
    for (size_t i = 0; i < n; i++) {
        engine_intent_done(in->e, batch[i].token, ok);
        free(batch[i].ids);
    }
}

static void *intent_thread(void *arg)
{
    intents *in = arg;
    struct intent_req *batch = NULL;
    size_t cap = 0;
    for (;;) {
        pthread_mutex_lock(&in->mu);
        while (!in->n && !in->stop)
            pthread_cond_wait(&in->cv, &in->mu);
        if (!in->n && in->stop) {
            pthread_mutex_unlock(&in->mu);
            break;
        }
        pthread_mutex_unlock(&in->mu);
        /* let a few more sessions join this fdatasync */
        if (in->cfg->intent_batch_us > 0)
            usleep((useconds_t)in->cfg->intent_batch_us);
        pthread_mutex_lock(&in->mu);
        size_t n = in->n;
        if (n > cap) {
            cap = n;
            batch = xrealloc(batch, cap * sizeof *batch);
        }
        if (n > 0) /* batch is still NULL until the first non-empty turn */
            memcpy(batch, in->reqs, n * sizeof *batch);
        in->n = 0;
        pthread_mutex_unlock(&in->mu);
        write_batch(in, batch, n);
    }
    free(batch);
    return NULL;
}

int intents_start(intents *in, spool *sp, engine *e)
{
    in->sp = sp;
    in->e = e;
    if (pthread_create(&in->tid, NULL, intent_thread, in) != 0)
        return -1;
    in->started = true;
    return 0;
}

void intents_stop(intents *in)
{
    if (in->started) {
        pthread_mutex_lock(&in->mu);
        in->stop = true;
        pthread_cond_signal(&in->cv);
        pthread_mutex_unlock(&in->mu);
        pthread_join(in->tid, NULL);
        in->started = false;
    }
    for (size_t i = 0; i < in->n; i++)
        free(in->reqs[i].ids);
    free(in->reqs);
    in->reqs = NULL;
    in->n = in->cap = 0;
    pthread_mutex_destroy(&in->mu);
    pthread_cond_destroy(&in->cv);
}
