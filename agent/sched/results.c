/* The result queue (I/O threads push, the lease loop or the command line polls) and
 * the engine's Prometheus counters. */
#include "sched_internal.h"

#include "xalloc.h"

#include <errno.h>
#include <string.h>
#include <time.h>

const double sched_lat_bounds_s[LAT_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                0.5,   1,    2.5,   5,    10,  30};

void sched_result_push(struct io_thread *t, const engine_result *r)
{
    if (t->nresults == t->results_cap) {
        t->results_cap = t->results_cap ? t->results_cap * 2 : 64;
        t->results = xrealloc(t->results, t->results_cap * sizeof *t->results);
    }
    t->results[t->nresults++] = *r;
    engine *e = t->e;
    if (r->cancelled)
        return;
    if (r->status >= 0 && r->status < SMTP_ST_COUNT)
        atomic_fetch_add(&e->m_status[r->status], 1);
    if (r->status == SMTP_ST_SENT) {
        int b = 0;
        while (b < LAT_BUCKETS && (double)r->latency_ms / 1000.0 > sched_lat_bounds_s[b])
            b++;
        atomic_fetch_add(&e->m_lat_bucket[b], 1);
        atomic_fetch_add(&e->m_lat_sum_ms, r->latency_ms);
    }
}

/* Hands the thread's finished results to the engine queue, once per loop turn. */
void sched_results_flush(struct io_thread *t)
{
    if (!t->nresults)
        return;
    engine *e = t->e;
    pthread_mutex_lock(&e->res_mu);
    if (e->nresults + t->nresults > e->results_cap) {
        size_t cap = e->results_cap ? e->results_cap : 256;
        while (cap < e->nresults + t->nresults)
            cap *= 2;
        e->results = xrealloc(e->results, cap * sizeof *e->results);
        e->results_cap = cap;
    }
    memcpy(e->results + e->nresults, t->results, t->nresults * sizeof *t->results);
    e->nresults += t->nresults;
    if (e->res_want && e->nresults >= e->res_want)
        pthread_cond_signal(&e->res_cv);
    pthread_mutex_unlock(&e->res_mu);
    t->nresults = 0;
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Blocks (res_mu held) until want results are queued or the deadline passes. */
static void wait_results(engine *e, size_t want, const struct timespec *deadline)
{
    e->res_want = want;
    while (e->nresults < want)
        if (pthread_cond_timedwait(&e->res_cv, &e->res_mu, deadline) == ETIMEDOUT)
            break;
    e->res_want = 0;
}

size_t engine_poll_results(engine *e, engine_result *out, size_t max, int timeout_ms)
{
    pthread_mutex_lock(&e->res_mu);
    if (!e->nresults && timeout_ms > 0) {
        struct timespec ts;
        deadline_in(&ts, timeout_ms);
        wait_results(e, 1, &ts);
    }
    /* Results come one loop turn at a time; gather them for a short while so the
     * consumer wakes once per batch rather than once per turn of every I/O thread. */
    if (e->nresults && e->nresults < max && e->cfg.result_linger_ms > 0) {
        struct timespec ts;
        deadline_in(&ts, e->cfg.result_linger_ms);
        wait_results(e, max, &ts);
    }
    size_t n = e->nresults < max ? e->nresults : max;
    if (n) {
        memcpy(out, e->results, n * sizeof *out);
        memmove(e->results, e->results + n, (e->nresults - n) * sizeof *out);
        e->nresults -= n;
    }
    pthread_mutex_unlock(&e->res_mu);
    return n;
}

void engine_metrics(engine *e, buf *out)
{
    buf_puts(out, "# HELP kiln_agent_sends_total Slots finished, by outcome.\n"
                  "# TYPE kiln_agent_sends_total counter\n");
    for (int s = SMTP_ST_SENT; s < SMTP_ST_COUNT; s++)
        buf_printf(out, "kiln_agent_sends_total{status=\"%s\"} %lld\n", smtp_status_name(s),
                   (long long)atomic_load(&e->m_status[s]));
    buf_printf(out,
               "# HELP kiln_agent_sessions_total SMTP sessions started.\n"
               "# TYPE kiln_agent_sessions_total counter\n"
               "kiln_agent_sessions_total %lld\n"
               "# HELP kiln_agent_sessions_active SMTP sessions open now.\n"
               "# TYPE kiln_agent_sessions_active gauge\n"
               "kiln_agent_sessions_active %lld\n"
               "# HELP kiln_agent_connect_errors_total Connections that failed to open.\n"
               "# TYPE kiln_agent_connect_errors_total counter\n"
               "kiln_agent_connect_errors_total %lld\n"
               "# HELP kiln_agent_retries_total Deferred slots scheduled for another attempt.\n"
               "# TYPE kiln_agent_retries_total counter\n"
               "kiln_agent_retries_total %lld\n",
               (long long)atomic_load(&e->m_sessions),
               (long long)atomic_load(&e->m_sessions_active),
               (long long)atomic_load(&e->m_connect_errors), (long long)atomic_load(&e->m_retries));
    buf_puts(out, "# HELP kiln_agent_send_latency_seconds Session start to accepted message.\n"
                  "# TYPE kiln_agent_send_latency_seconds histogram\n");
    long long cum = 0;
    for (int b = 0; b < LAT_BUCKETS; b++) {
        cum += atomic_load(&e->m_lat_bucket[b]);
        buf_printf(out, "kiln_agent_send_latency_seconds_bucket{le=\"%g\"} %lld\n",
                   sched_lat_bounds_s[b], cum);
    }
    cum += atomic_load(&e->m_lat_bucket[LAT_BUCKETS]);
    buf_printf(out,
               "kiln_agent_send_latency_seconds_bucket{le=\"+Inf\"} %lld\n"
               "kiln_agent_send_latency_seconds_sum %.3f\n"
               "kiln_agent_send_latency_seconds_count %lld\n",
               cum, (double)atomic_load(&e->m_lat_sum_ms) / 1000.0, cum);
    buf_printf(out,
               "# HELP kiln_agent_dry_run 1 when this agent simulates sends "
               "(KILN_AGENT_DRY_RUN_MS): its sent results were never delivered.\n"
               "# TYPE kiln_agent_dry_run gauge\n"
               "kiln_agent_dry_run %d\n",
               e->cfg.dry_run_ms >= 0);
}
