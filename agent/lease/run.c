/* The lease loop (see run.h): wires the parts and turns the loop. One control thread
 * owns the leases (lease_table.c), the report queue (report_queue.c) and the libcurl
 * handle (control.c), and makes the control-plane calls (leasing.c, through the wire
 * module); it never touches a session's socket. The engine's I/O threads ask for
 * intents through a hook that only queues; the intent thread (intents.c) writes and
 * fdatasyncs them in batches and tells the engine to go on. Invariants:
 *  - a slot's payload leaves (after the server's 354) only once its intent record is
 *    on disk, so a crash turns it into "unknown" on replay, never into a second send,
 *    and a slot that never reached DATA leaves no intent and is simply leased again;
 *  - an outcome is on disk before it is reported, and acknowledged after;
 *  - leases are asked for only while the slots held stay under what the concurrency
 *    can send before the lease deadline. */
#include "run.h"

#include "agent_config.h"
#include "clock.h"
#include "control.h"
#include "engine.h"
#include "intents.h"
#include "leasing.h"
#include "log.h"
#include "metrics_http.h"
#include "spool.h"
#include "version.h"
#include "xalloc.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define RESULTS_PER_POLL 4096
#define COMPACT_EVERY_MS 5000
#define PROGRESS_EVERY_MS 10000

static volatile sig_atomic_t sig_term, sig_hup;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        sig_hup = 1;
    else
        sig_term = 1;
}

/* The loop and what only run.c needs. */
struct agent {
    lease_loop lp;
    const char *config_path;
    bool config_required;
    intents in;
    metrics_http *mh;
    const inbox_feed_engine *inbox_ops; /* NULL: no inbox engine linked */
};

/* KILN_LOG_LEVEL of the configuration (checked when it was read); empty: as it is. */
static void apply_log_level(const char *level)
{
    enum log_level lv;
    if (level[0] && log_level_parse(level, &lv) == 0)
        log_set_level(lv);
}

static control *control_for(const agent_config *c, char *err, size_t errlen)
{
    control_config cc = {c->api_url,       c->token, c->ca_file, c->http_timeout_s,
                         c->http_attempts, 250,      5000};
    return control_new(&cc, err, errlen);
}

static void reload(struct agent *a)
{
    lease_loop *lp = &a->lp;
    agent_config fresh;
    char err[512];
    if (agent_config_load(&fresh, a->config_path, a->config_required, err, sizeof err) < 0) {
        log_error("SIGHUP: configuration not reloaded: %s", err);
        return;
    }
    if (strcmp(fresh.api_url, lp->cfg.api_url) != 0 || strcmp(fresh.token, lp->cfg.token) != 0 ||
        strcmp(fresh.ca_file, lp->cfg.ca_file) != 0) {
        control *c = control_for(&fresh, err, sizeof err);
        if (!c) {
            log_error("SIGHUP: %s; keeping the old control-plane settings", err);
            return;
        }
        control_free(lp->ctl);
        lp->ctl = c;
    }
    if (strcmp(fresh.spool_dir, lp->cfg.spool_dir) != 0 || fresh.threads != lp->cfg.threads ||
        fresh.metrics_port != lp->cfg.metrics_port ||
        strcmp(fresh.metrics_addr, lp->cfg.metrics_addr) != 0)
        log_warn("SIGHUP: spool dir, threads and metrics address or port change at the next "
                 "restart");
    snprintf(fresh.spool_dir, sizeof fresh.spool_dir, "%s", lp->cfg.spool_dir);
    fresh.threads = lp->cfg.threads;
    fresh.metrics_port = lp->cfg.metrics_port;
    apply_log_level(fresh.log_level);
    lp->cfg = fresh;
    log_info("SIGHUP: configuration reloaded (concurrency %d, report batch %d)",
             lp->cfg.concurrency, lp->cfg.report_batch);
}

static void export_env(const char *key, const char *val)
{
    setenv(key, val, 0);
}

static const char *env_get(const char *key)
{
    return getenv(key);
}

/* Config, then the file's engine knobs into the environment (before any thread). */
static int load_config(agent_config *cfg, const char *path, bool required)
{
    char err[512];
    if (agent_config_load(cfg, path, required, err, sizeof err) < 0) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        return -1;
    }
    size_t n = 0;
    char *text = agent_config_read_file(path, &n);
    if (text) {
        agent_config_export(text, n, env_get, export_env);
        free(text);
    }
    return 0;
}

void run_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void log_progress(lease_loop *lp)
{
    log_info("leases %zu held (%lld taken), slots %zu in flight (%lld taken), %lld reported, "
             "%zu queued, %lld dropped, spool %zu bytes",
             lp->leases.count, atomic_load(&lp->stats.leases), lp->leases.outstanding,
             atomic_load(&lp->stats.slots), atomic_load(&lp->stats.reported), lp->reports.n,
             atomic_load(&lp->stats.dropped), spool_file_bytes(lp->sp));
}

/* The loop's own state, copied where the metrics thread may read it. */
static void publish_gauges(lease_loop *lp)
{
    atomic_store(&lp->stats.held, (long long)lp->leases.count);
    atomic_store(&lp->stats.outstanding, (long long)lp->leases.outstanding);
    atomic_store(&lp->stats.unreported, (long long)lp->reports.n);
    atomic_store(&lp->stats.draining, lp->draining);
}

static void collect_results(lease_loop *lp, engine_result *res, int timeout_ms)
{
    size_t n = engine_poll_results(lp->e, res, RESULTS_PER_POLL, timeout_ms);
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < n; i++)
        report_queue_take(&lp->reports, &lp->leases, &res[i], now);
}

/* Config, spool, control client, engine, intent thread, metrics, replay. 0, or the
 * exit code of a failed start (the reason is on stderr). */
static int start(struct agent *a)
{
    lease_loop *lp = &a->lp;
    char err[512];
    spool_replay rep;
    memset(&rep, 0, sizeof rep);
    if (load_config(&lp->cfg, a->config_path, a->config_required) < 0)
        return 2;
    apply_log_level(lp->cfg.log_level);
    engine_config ec;
    if (agent_config_engine(&lp->cfg, &ec, err, sizeof err) < 0) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        return 2;
    }
    ec.intent_fn = intents_hook;
    ec.intent_arg = &a->in;
    install_signals();
    run_raise_nofile();
    lp->sp = spool_open(lp->cfg.spool_dir, &rep, err, sizeof err);
    if (!lp->sp)
        goto fail;
    lp->stats.sp = lp->sp;
    report_queue_init(&lp->reports, lp->sp, &lp->stats, &lp->cfg, &lp->abort_http);
    lp->inboxes.sp = lp->sp;
    lp->ctl = control_for(&lp->cfg, err, sizeof err);
    if (!lp->ctl)
        goto fail;
    lp->e = engine_create(&ec, err, sizeof err);
    if (!lp->e)
        goto fail;
    if (intents_start(&a->in, lp->sp, lp->e) < 0) {
        snprintf(err, sizeof err, "cannot start the spool thread");
        goto fail;
    }
    if (inbox_leases_start(&lp->inboxes, a->inbox_ops, err, sizeof err) < 0)
        goto fail;
    if (a->inbox_ops) {
        lp->stats.inbox_metrics = a->inbox_ops->metrics;
        lp->stats.inbox_engine = lp->inboxes.engine;
    } else if (lp->cfg.max_inboxes > 0) {
        log_warn("KILN_AGENT_MAX_INBOXES=%d but no inbox engine is linked: inbox leases are "
                 "held, renewed and released, their inboxes not watched",
                 lp->cfg.max_inboxes);
    }
    if (lp->cfg.metrics_port > 0) {
        a->mh = metrics_http_start(lp->e, lp->cfg.metrics_addr, lp->cfg.metrics_port,
                                   loop_stats_metrics, &lp->stats, err, sizeof err);
        if (!a->mh)
            log_warn("metrics: %s (continuing without them)", err);
    }
    leasing_replay(lp, &rep);
    inbox_leases_replay(&lp->inboxes, &rep);
    spool_replay_free(&rep);
    log_info("kiln-agent %s running as '%s' against %s (concurrency %d, spool %s)", kiln_version(),
             lp->cfg.name, lp->cfg.api_url, lp->cfg.concurrency, lp->cfg.spool_dir);
    return 0;
fail:
    fprintf(stderr, "kiln-agent: %s\n", err);
    spool_replay_free(&rep);
    return 1;
}

/* Leases, results, reports, heartbeats, releases, compaction, until a drain ends. */
static void loop(struct agent *a)
{
    lease_loop *lp = &a->lp;
    engine_result *res = xcalloc(RESULTS_PER_POLL, sizeof *res);
    int64_t next_compact = clock_mono_ms() + COMPACT_EVERY_MS;
    int64_t next_progress = clock_mono_ms() + PROGRESS_EVERY_MS;
    int64_t drain_deadline = 0;
    for (;;) {
        int64_t now = clock_mono_ms();
        if (sig_hup) {
            sig_hup = 0;
            reload(a);
        }
        if (sig_term && !lp->draining) {
            lp->draining = true;
            drain_deadline = now + (int64_t)lp->cfg.drain_timeout_s * 1000;
            log_info("SIGTERM: draining (no new leases; %zu slots in flight, %zu results to "
                     "report)",
                     lp->leases.outstanding, lp->reports.n);
            engine_cancel_all(lp->e);
            inbox_leases_stop(&lp->inboxes, (int64_t)lp->cfg.drain_timeout_s * 1000 / 2);
            lp->abort_http = true; /* one try per call: the loop retries until the deadline */
        }
        if (lp->draining) {
            if ((lp->leases.outstanding == 0 && lp->reports.n == 0 && lp->leases.count == 0 &&
                 inbox_leases_idle(&lp->inboxes)) ||
                now >= drain_deadline)
                break;
        } else if (now >= lp->next_lease_ms) {
            leasing_lease(lp, now);
        }
        int wait = 100;
        if (!lp->draining && lp->next_lease_ms > now && lp->next_lease_ms - now < wait)
            wait = (int)(lp->next_lease_ms - now);
        collect_results(lp, res, wait < 1 ? 1 : wait);
        now = clock_mono_ms();
        report_queue_flush(&lp->reports, lp->ctl, now, lp->draining);
        inbox_reports_flush(&lp->inboxes, lp->ctl, now, lp->draining);
        leasing_heartbeats(lp, now);
        inbox_leases_heartbeats(&lp->inboxes, lp->ctl, now);
        leasing_release_idle(lp, now, lp->draining && lp->leases.outstanding == 0);
        inbox_leases_release(&lp->inboxes, lp->ctl, now, lp->draining);
        if (now >= next_compact) {
            spool_compact(lp->sp, (size_t)lp->cfg.spool_compact_kb * 1024);
            inbox_reports_prune(&lp->inboxes, now);
            next_compact = now + COMPACT_EVERY_MS;
        }
        publish_gauges(lp);
        if (now >= next_progress) {
            log_progress(lp);
            next_progress = now + PROGRESS_EVERY_MS;
        }
    }
    free(res);
}

int run_agent(const char *config_path, bool config_required)
{
    return run_agent_with(config_path, config_required, NULL);
}

int run_agent_with(const char *config_path, bool config_required,
                   const inbox_feed_engine *inbox_engine)
{
    struct agent *a = xcalloc(1, sizeof *a);
    lease_loop *lp = &a->lp;
    a->config_path = config_path;
    a->config_required = config_required;
    a->inbox_ops = inbox_engine;
    lease_table_init(&lp->leases);
    inbox_leases_init(&lp->inboxes, NULL, &lp->stats, &lp->cfg, &lp->abort_http);
    intents_init(&a->in, &lp->leases, &lp->cfg);
    int exit_code = start(a);
    if (exit_code == 0) {
        loop(a);
        if (lp->leases.outstanding || lp->reports.n || lp->leases.count)
            log_warn("drain timed out: %zu slots in flight, %zu results kept in the spool for "
                     "the next start, %zu leases left to expire",
                     lp->leases.outstanding, lp->reports.n, lp->leases.count);
        if (!inbox_leases_idle(&lp->inboxes))
            log_warn("drain timed out: %zu inbox events kept in the spool for the next start, "
                     "%zu inbox leases left to expire",
                     lp->inboxes.nq + lp->inboxes.nin, lp->inboxes.count);
        log_progress(lp);
    }
    /* the intent thread may still hold go-aheads for the engine: stop it first */
    intents_stop(&a->in);
    metrics_http_stop(a->mh);
    /* the inbox engine emits into the spool: gone before the spool closes */
    inbox_leases_free(&lp->inboxes);
    engine_destroy(lp->e);
    if (lp->sp) {
        spool_compact(lp->sp, (size_t)lp->cfg.spool_compact_kb * 1024);
        spool_close(lp->sp);
    }
    control_free(lp->ctl);
    lease_table_free(&lp->leases);
    report_queue_free(&lp->reports);
    free(a);
    return exit_code;
}
