/* The sending engine (see engine.h): its I/O threads and their loop, the inbox a
 * thread is fed through, the CA stores, and the public API. What a thread does with
 * its works is sched.c's; how bytes move is net/'s; the protocol is smtp/'s. */
#include "sched_internal.h"

#include "clock.h"
#include "log.h"
#include "ring.h"
#include "rand.h"
#include "xalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sched_thread_wake(struct io_thread *t)
{
    net_wake(t->net.efd);
}

/* ---- an I/O thread ---- */

static void inbox_drain(struct io_thread *t)
{
    pthread_mutex_lock(&t->inbox_mu);
    struct inbox_item *list = t->inbox;
    t->inbox = NULL;
    struct control_item *ctl = t->controls;
    t->controls = NULL;
    bool cancel_all = t->cancel_all_req;
    bool stop = t->stop;
    pthread_mutex_unlock(&t->inbox_mu);
    /* reverse to keep submission order */
    struct inbox_item *rev = NULL;
    while (list) {
        struct inbox_item *n = list->next;
        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        struct inbox_item *n = rev->next;
        sched_mailbox_accept(t, rev);
        free(rev);
        rev = n;
    }
    /* cancels after the submissions they may refer to */
    bool cancels = false;
    if (cancel_all && !t->cancel_all) {
        t->cancel_all = true;
        cancels = true;
    }
    while (ctl) {
        struct control_item *n = ctl->next;
        if (ctl->cancel_ids) {
            for (size_t i = 0; i < ctl->ncancel; i++)
                sched_cancel_add(t, ctl->cancel_ids[i]);
            free(ctl->cancel_ids);
            cancels = true;
        } else {
            sched_intent_done(t, ctl->token, ctl->ok);
        }
        free(ctl);
        ctl = n;
    }
    if (cancels)
        sched_cancel_pending(t);
    if (stop)
        t->stop = true;
}

/* net_owner_ops: the eventfd fired. A resolver answer may be in, or another thread
 * freed room at a host: the hosts that wait get another look. */
static bool thread_woken(void *owner)
{
    struct io_thread *t = owner;
    inbox_drain(t);
    sched_hosts_recheck(t, atomic_exchange(&t->hosts_released, false));
    return !t->stop;
}

static const net_owner_ops sched_net_owner = {
    .deadline_ms = sched_conn_deadline,
    .may_reconnect = sched_conn_may_reconnect,
    .done = sched_conn_done,
    .woken = thread_woken,
};

static void *io_thread_main(void *arg)
{
    struct io_thread *t = arg;
    char err[200];
    bool fast;
    if (net_loop_start(&t->net, &fast, err, sizeof err) < 0) {
        log_error("I/O thread %d: %s", t->id, err);
        __atomic_store_n(&t->ring_ready, -1, __ATOMIC_RELEASE);
        return NULL;
    }
    if (!fast && t->id == 0)
        log_warn("io_uring: IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN not available (kernel "
                 "before 6.1); running with a default ring");
    __atomic_store_n(&t->ring_ready, 1, __ATOMIC_RELEASE);
    random_bytes(&t->rng, sizeof t->rng);
    t->rng |= 1; /* xorshift never leaves 0 */
    while (!t->stop) {
        net_loop_clock(&t->net);
        int64_t wake = sched_dispatch(t);
        sched_results_flush(t);
        net_loop_wait(&t->net, wake);
    }
    return NULL;
}

/* Frees everything of a stopped thread, sessions in flight included. */
static void io_thread_cleanup(struct io_thread *t)
{
    sched_thread_cleanup(t);
    net_loop_destroy(&t->net);
    struct inbox_item *it = t->inbox;
    while (it) {
        struct inbox_item *n = it->next;
        job_mailbox_free(it->m);
        free(it);
        it = n;
    }
    struct control_item *ci = t->controls;
    while (ci) {
        struct control_item *n = ci->next;
        free(ci->cancel_ids);
        free(ci);
        ci = n;
    }
    pthread_mutex_destroy(&t->inbox_mu);
}

/* ---- the engine ---- */

/* The TLS context for a CA file ("" or NULL: the system store), loaded on the calling
 * thread the first time: never a disk read on an I/O thread. NULL with err. */
static tls_ctx *ctx_for(engine *e, const char *ca_file, char *err, size_t errlen)
{
    const char *key = ca_file ? ca_file : "";
    pthread_mutex_lock(&e->ctx_mu);
    tls_ctx *ctx = NULL;
    for (struct ctx_entry *x = e->ctxs; x && !ctx; x = x->next)
        if (!strcmp(x->ca_file, key))
            ctx = x->ctx;
    if (!ctx) {
        ctx = tls_ctx_new(ca_file, err, errlen);
        if (ctx) {
            struct ctx_entry *x = xcalloc(1, sizeof *x);
            x->ca_file = xstrdup(key);
            x->ctx = ctx;
            x->next = e->ctxs;
            e->ctxs = x;
        }
    }
    pthread_mutex_unlock(&e->ctx_mu);
    return ctx;
}

static int div_up(int a, int b)
{
    return (a + b - 1) / b;
}

/* Frees what engine_create made beside the threads. */
static void engine_free(engine *e)
{
    resolver_destroy(e->res);
    host_table_free(e->limits);
    while (e->ctxs) {
        struct ctx_entry *n = e->ctxs->next;
        tls_ctx_free(e->ctxs->ctx);
        free(e->ctxs->ca_file);
        free(e->ctxs);
        e->ctxs = n;
    }
    pthread_mutex_destroy(&e->ctx_mu);
    pthread_mutex_destroy(&e->ext_mu);
    free(e->ext);
    free(e->threads);
    free(e->results);
    pthread_mutex_destroy(&e->res_mu);
    pthread_cond_destroy(&e->res_cv);
    free(e);
}

/* Stops the first started threads (wakes them, joins them) and frees every thread. */
static void threads_stop(engine *e, int started)
{
    for (int i = 0; i < started; i++) {
        struct io_thread *t = &e->threads[i];
        pthread_mutex_lock(&t->inbox_mu);
        t->stop = true;
        pthread_mutex_unlock(&t->inbox_mu);
        sched_thread_wake(t);
    }
    for (int i = 0; i < e->nthreads; i++) {
        if (i < started)
            pthread_join(e->threads[i].tid, NULL);
        io_thread_cleanup(&e->threads[i]);
    }
}

engine *engine_create(const engine_config *cfg, char *err, size_t errlen)
{
    if (net_ring_probe(err, errlen) < 0)
        return NULL;
    engine *e = xcalloc(1, sizeof *e);
    e->cfg = *cfg;
    if (cfg->dry_run_ms >= 0)
        fprintf(stderr,
                "kiln-agent: DRY RUN (KILN_AGENT_DRY_RUN_MS=%lld): no mail is sent; every due "
                "slot is reported sent after %lld ms. For simulations only.\n",
                (long long)cfg->dry_run_ms, (long long)cfg->dry_run_ms);
    int n = cfg->threads;
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    if (n > cfg->concurrency)
        n = cfg->concurrency;
    if (n > 255)
        n = 255; /* an intent token names its thread in its top 8 bits */
    e->nthreads = n;
    pthread_mutex_init(&e->res_mu, NULL);
    pthread_cond_init(&e->res_cv, NULL);
    e->res = resolver_create(cfg->dns_ttl_ms, 30000);
    e->limits = host_table_new(&cfg->shaping);
    pthread_mutex_init(&e->ctx_mu, NULL);
    pthread_mutex_init(&e->ext_mu, NULL);
    /* CA stores are read by engine_submit on the submitting thread, at the first
     * mailbox that needs one (a plain-only run never reads the system store); a store
     * that fails is not cached and its mailboxes' sessions end tls with the reason */
    e->threads = xcalloc((size_t)n, sizeof *e->threads);
    for (int i = 0; i < n; i++) {
        e->threads[i].net.efd = -1;
        pthread_mutex_init(&e->threads[i].inbox_mu, NULL);
    }
    net_timeouts to = {.connect_ms = cfg->connect_timeout_ms,
                       .tls_ms = cfg->tls_timeout_ms,
                       .data_block_ms = cfg->data_block_timeout_ms};
    int started = 0;
    for (int i = 0; i < n; i++) {
        struct io_thread *t = &e->threads[i];
        t->e = e;
        t->id = i;
        t->shaping = cfg->shaping;
        uint32_t nconns = (uint32_t)div_up(cfg->concurrency, n);
        if (net_loop_init(&t->net, nconns, &to, &sched_net_owner, t, err, errlen) < 0)
            goto fail;
        t->net.connect_errors = &e->m_connect_errors;
        t->sessions = xcalloc(nconns, sizeof *t->sessions);
        if (pthread_create(&t->tid, NULL, io_thread_main, t) != 0) {
            snprintf(err, errlen, "cannot start I/O thread %d", i);
            goto fail;
        }
        started++;
        while (__atomic_load_n(&t->ring_ready, __ATOMIC_ACQUIRE) == 0)
            usleep(1000);
        if (t->ring_ready < 0) {
            snprintf(err, errlen, "cannot set up io_uring (see the log above)");
            goto fail;
        }
    }
    return e;
fail:
    threads_stop(e, started);
    engine_free(e);
    return NULL;
}

void engine_extend(engine *e, uint64_t lease_key, int64_t deadline_ms)
{
    if (!lease_key)
        return;
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&e->ext_mu);
    size_t w = 0;
    bool found = false;
    for (size_t i = 0; i < e->next_ext; i++) {
        if (e->ext[i].key == lease_key) {
            if (deadline_ms > e->ext[i].deadline_ms)
                e->ext[i].deadline_ms = deadline_ms;
            found = true;
        }
        if (e->ext[i].deadline_ms > now) /* a lapsed lease cannot be renewed: drop it */
            e->ext[w++] = e->ext[i];
    }
    e->next_ext = w;
    if (!found && deadline_ms > now) {
        if (e->next_ext == e->ext_cap) {
            e->ext_cap = e->ext_cap ? e->ext_cap * 2 : 16;
            e->ext = xrealloc(e->ext, e->ext_cap * sizeof *e->ext);
        }
        e->ext[e->next_ext++] = (struct lease_ext){lease_key, deadline_ms};
    }
    atomic_fetch_add(&e->ext_version, 1);
    pthread_mutex_unlock(&e->ext_mu);
}

void engine_submit(engine *e, job_mailbox *m, int64_t lease_start_ms, int64_t deadline_ms,
                   uint64_t lease_key)
{
    unsigned i = atomic_fetch_add(&e->next_thread, 1) % (unsigned)e->nthreads;
    struct io_thread *t = &e->threads[i];
    struct inbox_item *it = xcalloc(1, sizeof *it);
    it->m = m;
    it->lease_start_ms = lease_start_ms;
    it->deadline_ms = deadline_ms;
    it->lease_key = lease_key;
    if (m->security != SMTP_SEC_PLAIN) /* its CA store, read here rather than on t */
        it->tls = ctx_for(e, m->ca_file, it->tls_err, sizeof it->tls_err);
    pthread_mutex_lock(&t->inbox_mu);
    bool was_empty = !t->inbox;
    it->next = t->inbox;
    t->inbox = it;
    pthread_mutex_unlock(&t->inbox_mu);
    if (was_empty)
        sched_thread_wake(t);
}

static void control_push(struct io_thread *t, struct control_item *it)
{
    pthread_mutex_lock(&t->inbox_mu);
    it->next = t->controls;
    t->controls = it;
    pthread_mutex_unlock(&t->inbox_mu);
    sched_thread_wake(t);
}

void engine_intent_done(engine *e, uint64_t token, bool ok)
{
    /* a session index is per thread: the token names the thread in its top bits */
    int ti = (int)(token >> 56);
    if (ti < 0 || ti >= e->nthreads)
        return;
    struct control_item *it = xcalloc(1, sizeof *it);
    it->token = token;
    it->ok = ok;
    control_push(&e->threads[ti], it);
}

void engine_cancel(engine *e, const int64_t *send_ids, size_t n)
{
    if (!n)
        return;
    for (int i = 0; i < e->nthreads; i++) {
        struct control_item *it = xcalloc(1, sizeof *it);
        it->cancel_ids = xcalloc(n, sizeof *it->cancel_ids);
        memcpy(it->cancel_ids, send_ids, n * sizeof *send_ids);
        it->ncancel = n;
        control_push(&e->threads[i], it);
    }
}

void engine_cancel_all(engine *e)
{
    for (int i = 0; i < e->nthreads; i++) {
        struct io_thread *t = &e->threads[i];
        pthread_mutex_lock(&t->inbox_mu);
        t->cancel_all_req = true;
        pthread_mutex_unlock(&t->inbox_mu);
        sched_thread_wake(t);
    }
}

void engine_destroy(engine *e)
{
    if (!e)
        return;
    threads_stop(e, e->nthreads);
    engine_free(e);
}
