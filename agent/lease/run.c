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

/* A setting start() built something from (the engine, the spool, the metrics listener,
 * the inbox engine): a reload keeps the running value and says which setting waits for
 * a restart. */
struct restart_only {
    const char *key;
    const char *why;
    char *fresh_str; /* a string setting, or NULL: an int one */
    const char *run_str;
    size_t len;
    int *fresh_int;
    int run_int;
};

/* Puts back the running value of every restart-only setting fresh changes; returns how
 * many it put back. */
static int keep_restart_only(const agent_config *run, agent_config *fresh)
{
    const struct restart_only keys[] = {
        {"KILN_AGENT_SPOOL_DIR", "the spool is open and locked", fresh->spool_dir, run->spool_dir,
         sizeof fresh->spool_dir, NULL, 0},
        {"KILN_AGENT_METRICS_ADDR", "the metrics listener is bound", fresh->metrics_addr,
         run->metrics_addr, sizeof fresh->metrics_addr, NULL, 0},
        {"KILN_AGENT_METRICS_PORT", "the metrics listener is bound", NULL, NULL, 0,
         &fresh->metrics_port, run->metrics_port},
        {"KILN_AGENT_THREADS", "the SMTP engine's threads are running", NULL, NULL, 0,
         &fresh->threads, run->threads},
        {"KILN_AGENT_CONCURRENCY", "the SMTP engine's session cap is set at start", NULL, NULL, 0,
         &fresh->concurrency, run->concurrency},
    };
    int kept = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const struct restart_only *k = &keys[i];
        if (k->fresh_str && strcmp(k->fresh_str, k->run_str) != 0) {
            log_warn("SIGHUP: %s=%s needs a restart (%s); keeping %s", k->key, k->fresh_str, k->why,
                     k->run_str);
            snprintf(k->fresh_str, k->len, "%s", k->run_str);
            kept++;
        } else if (!k->fresh_str && *k->fresh_int != k->run_int) {
            log_warn("SIGHUP: %s=%d needs a restart (%s); keeping %d", k->key, *k->fresh_int,
                     k->why, k->run_int);
            *k->fresh_int = k->run_int;
            kept++;
        }
    }
    /* the inbox engine is started, or not, at start: between two non-zero values the
     * lease requests follow at once */
    if ((fresh->max_inboxes == 0) != (run->max_inboxes == 0)) {
        log_warn("SIGHUP: KILN_AGENT_MAX_INBOXES=%d needs a restart (the inbox engine runs, "
                 "or not, from the agent's start); keeping %d",
                 fresh->max_inboxes, run->max_inboxes);
        fresh->max_inboxes = run->max_inboxes;
        kept++;
    }
    return kept;
}

/* A KILN_* key of the file the engines read from the environment at start: one whose value
 * is not the running one waits for a restart. check's own keys (KILN_AGENT_CHECK_*) do
 * not concern run; a secret's value is never logged. */
static void note_engine_knob(void *arg, const char *key, const char *val)
{
    const char *running = getenv(key);
    if (!strncmp(key, "KILN_AGENT_CHECK_", 17) || (running && !strcmp(running, val)))
        return;
    bool secret = strstr(key, "PASSWORD") || strstr(key, "TOKEN") || strstr(key, "SECRET");
    log_warn("SIGHUP: %s=%s needs a restart (the engines read their settings at start); "
             "keeping %s",
             key, secret ? "(hidden)" : val,
             secret                ? "the running value"
             : running && *running ? running
                                   : "the default");
    ++*(int *)arg;
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
        strcmp(fresh.ca_file, lp->cfg.ca_file) != 0 ||
        fresh.http_timeout_s != lp->cfg.http_timeout_s ||
        fresh.http_attempts != lp->cfg.http_attempts) {
        control *c = control_for(&fresh, err, sizeof err);
        if (!c) {
            log_error("SIGHUP: %s; keeping the old control-plane settings", err);
            return;
        }
        control_free(lp->ctl);
        lp->ctl = c;
    }
    int kept = keep_restart_only(&lp->cfg, &fresh);
    size_t n = 0;
    char *text = agent_config_read_file(a->config_path, &n);
    if (text) {
        agent_config_other_keys(text, n, note_engine_knob, &kept);
        free(text);
    }
    apply_log_level(fresh.log_level);
    lp->cfg = fresh;
    log_info("SIGHUP: configuration reloaded (report batch %d, max inboxes %d; %d changed "
             "setting%s wait%s for a restart)",
             lp->cfg.report_batch, lp->cfg.max_inboxes, kept, kept == 1 ? "" : "s",
             kept == 1 ? "s" : "");
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
    if (agent_config_load_process(&lp->cfg, a->config_path, a->config_required, err, sizeof err) <
        0) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        return 2;
    }
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
    /* an engine runs only when inboxes are asked for (a previous run's inbox leases are
     * still released without one) */
    if (lp->cfg.max_inboxes == 0)
        a->inbox_ops = NULL;
    else if (a->inbox_ops)
        log_info("inbox engine: up to %d inboxes watched", lp->cfg.max_inboxes);
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
