/* kiln-agent entry point. `run` (the default) is the lease loop with the control plane
 * (lease/run.c); `check` tests the configuration in plain words; `send --file` runs one lease
 * file through the engine and prints one JSON result line per slot; `inbox --file` watches
 * the inboxes of a file and prints one JSON event per line. */
#include "clock.h"
#include "config.h"
#include "engine.h"
#include "agent_config.h"
#include "log.h"
#include "metrics_http.h"
#include "run.h"
#include "version.h"
#include "agent_wire.h"
#include "inbox_engine.h"
#include "inbox_feed_imap.h"
#include "xalloc.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_JOB_FILE (256u << 20)
/* After SIGTERM/SIGINT, sessions under way get this long to finish (a second signal
 * ends the wait at once). */
#define SEND_DRAIN_MS 5000

static volatile sig_atomic_t send_signal, send_signals;

static void on_send_signal(int sig)
{
    send_signal = sig;
    send_signals++;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kiln-agent [run] [--config FILE]\n"
            "       kiln-agent check [--config FILE]\n"
            "       kiln-agent send --file JOBS.json [--concurrency N] [--threads N]\n"
            "                  [--metrics-port P] [--metrics-addr IP] [--host-max-conns N]\n"
            "                  [--host-conns-per-min N] [--helo NAME] [--progress-s N]\n"
            "       kiln-agent inbox --file INBOXES.json [--once] [--duration S]\n"
            "                  [--metrics-port P] [--metrics-addr IP] [--server-max-conns N]\n"
            "                  [--server-conns-per-min N] [--progress-s N]\n"
            "       kiln-agent --version\n"
            "run: leases mailboxes from the control plane (KILN_API_URL), sends their slots,\n"
            "     reports the results; SIGTERM drains, SIGHUP reloads. Configuration: KEY=VALUE\n"
            "     lines in %s (or --config), KILN_* variables override them.\n"
            "check: verifies configuration, token, spool directory, reachability and io_uring.\n"
            "send: prints one JSON result line per send on stdout. Tuning variables: KILN_AGENT_*\n"
            "inbox: watches the inboxes of the file (IMAP), prints one JSON event per line;\n"
            "     --once: one pass over every inbox, then exit (3 when a login failed).\n"
            "(see docs/agent.md and docs/agent-run.md).\n",
            AGENT_CONFIG_DEFAULT_PATH);
}

/* Reads a whole file, bounded. Returns 0, or -1 with a reason. */
static int read_file(const char *path, buf *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf_append(out, chunk, n);
        if (out->len > MAX_JOB_FILE) {
            snprintf(err, errlen, "%s: larger than %u MiB", path, MAX_JOB_FILE >> 20);
            fclose(f);
            return -1;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: read error", path);
        return -1;
    }
    return 0;
}

static int flag_int(const char *name, const char *val, int64_t min, int64_t max, int *out)
{
    int64_t v;
    if (!val || !parse_int(val, strlen(val), min, max, &v)) {
        fprintf(stderr, "kiln-agent: %s needs an integer in [%lld, %lld]\n", name, (long long)min,
                (long long)max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* An address to listen on: an IPv4 or IPv6 literal, never a host name. */
static int flag_ip(const char *name, const char *val, const char **out)
{
    if (!val || !agent_config_ip_literal(val)) {
        fprintf(stderr,
                "kiln-agent: %s needs an IPv4 or IPv6 address such as 127.0.0.1 (the "
                "default), 0.0.0.0 or ::\n",
                name);
        return -1;
    }
    *out = val;
    return 0;
}

/* The flags send and inbox share: 1 taken, 0 not one of them, -1 bad (said). */
static int common_flag(const char *a, const char *v, const char **file, int *metrics_port,
                       const char **metrics_addr, int *progress_s)
{
    int rc = 1;
    if (!strcmp(a, "--file") && v)
        *file = v;
    else if (!strcmp(a, "--metrics-port"))
        rc = flag_int(a, v, 0, 65535, metrics_port);
    else if (!strcmp(a, "--metrics-addr"))
        rc = flag_ip(a, v, metrics_addr);
    else if (!strcmp(a, "--progress-s"))
        rc = flag_int(a, v, 1, 86400, progress_s);
    else
        return 0;
    return rc < 0 ? -1 : 1;
}

/* The metrics endpoint of send and inbox, its address said on stderr. NULL with err. */
static metrics_http *start_metrics(engine *e, metrics_http_extra_fn extra, void *arg,
                                   const char *addr, int port, char *err, size_t errlen)
{
    metrics_http *mh = metrics_http_start(e, addr, port, extra, arg, err, errlen);
    if (mh) {
        bool v6 = strchr(addr, ':') != NULL;
        fprintf(stderr, "kiln-agent: metrics on http://%s%s%s:%d/metrics\n", v6 ? "[" : "", addr,
                v6 ? "]" : "", metrics_http_port(mh));
    }
    return mh;
}

/* SIGTERM and SIGINT held back while threads start (they inherit the mask)... */
static void block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* ...then caught by this thread alone. */
static void catch_stop_signals(const sigset_t *set)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_send_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pthread_sigmask(SIG_UNBLOCK, set, NULL);
}

/* What `send` was asked for. */
struct send_opts {
    const char *file;
    int metrics_port, progress_s;
    const char *metrics_addr;
    engine_config cfg;
};

/* The environment's engine knobs, then the flags. 0, or the exit code (2). */
static int send_options(int argc, char **argv, struct send_opts *o)
{
    char err[512];
    *o = (struct send_opts){.metrics_port = -1, .progress_s = 5, .metrics_addr = "127.0.0.1"};
    engine_config_defaults(&o->cfg);
    /* KILN_AGENT_CONCURRENCY and KILN_AGENT_THREADS as run reads them (send's own default
     * concurrency is the engine's, 1000); the flags win */
    int64_t conc, threads;
    if (engine_config_from_env(&o->cfg, err, sizeof err) < 0 ||
        config_int("KILN_AGENT_CONCURRENCY", o->cfg.concurrency, 1, 1000000, &conc, err,
                   sizeof err) < 0 ||
        config_int("KILN_AGENT_THREADS", o->cfg.threads, 0, 1024, &threads, err, sizeof err) < 0) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        return 2;
    }
    o->cfg.concurrency = (int)conc;
    o->cfg.threads = (int)threads;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = common_flag(a, v, &o->file, &o->metrics_port, &o->metrics_addr, &o->progress_s);
        if (rc < 0)
            return 2;
        if (rc > 0) {
            i++;
            continue;
        }
        if (!strcmp(a, "--concurrency"))
            rc = flag_int(a, v, 1, 1000000, &o->cfg.concurrency);
        else if (!strcmp(a, "--threads"))
            rc = flag_int(a, v, 1, 1024, &o->cfg.threads);
        else if (!strcmp(a, "--host-max-conns"))
            rc = flag_int(a, v, 1, 1000000, &o->cfg.shaping.max_conns);
        else if (!strcmp(a, "--host-conns-per-min"))
            rc = flag_int(a, v, 1, 100000000, &o->cfg.shaping.conns_per_min);
        else if (!strcmp(a, "--helo") && v) {
            if (!engine_helo_name_ok(v)) {
                fprintf(stderr,
                        "kiln-agent: --helo needs a domain name or an address literal such as "
                        "mail.example.com, [192.0.2.1] or [IPv6:2001:db8::1]\n");
                return 2;
            }
            snprintf(o->cfg.helo_name, sizeof o->cfg.helo_name, "%s", v);
        } else {
            fprintf(stderr, "kiln-agent: unknown or incomplete option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (rc < 0)
            return 2;
        i++;
    }
    if (!o->file) {
        fprintf(stderr, "kiln-agent: send needs --file JOBS.json\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* Writes one line per result until every slot has one or a stop signal's drain ends;
 * progress on stderr. Returns how many lines; *rc becomes 128 + the signal. */
static size_t send_results(engine *e, size_t total, int progress_s, int64_t start_ms, int *rc)
{
    size_t done = 0, counts[SMTP_ST_COUNT] = {0};
    engine_result *res = xcalloc(4096, sizeof *res);
    buf line = BUF_INIT;
    int64_t next_progress = start_ms + (int64_t)progress_s * 1000;
    int64_t drain_until = 0;
    while (done < total) {
        if (send_signal && !drain_until) {
            *rc = 128 + send_signal;
            drain_until = clock_mono_ms() + SEND_DRAIN_MS;
            engine_cancel_all(e);
            fprintf(stderr,
                    "kiln-agent: %s: no new sends; waiting up to %d s for those under way\n",
                    strsignal(send_signal), SEND_DRAIN_MS / 1000);
        }
        if (drain_until && (clock_mono_ms() >= drain_until || send_signals > 1))
            break;
        size_t n = engine_poll_results(e, res, 4096, 200);
        for (size_t k = 0; k < n; k++) {
            buf_reset(&line);
            wire_result_json(&res[k], &line);
            buf_putc(&line, '\n');
            fwrite(line.data, 1, line.len, stdout);
            if (res[k].status >= 0 && res[k].status < SMTP_ST_COUNT)
                counts[res[k].status]++;
        }
        /* each batch of lines leaves as it comes: a reader sees every outcome at once,
         * and a kill loses no line already decided */
        if (n)
            fflush(stdout);
        done += n;
        int64_t now = clock_mono_ms();
        if (now >= next_progress && done < total) {
            fprintf(stderr,
                    "kiln-agent: %zu/%zu done (sent %zu, deferred %zu, failed %zu, auth %zu, "
                    "tls %zu, unknown %zu) after %.1f s\n",
                    done, total, counts[SMTP_ST_SENT], counts[SMTP_ST_DEFERRED],
                    counts[SMTP_ST_FAILED], counts[SMTP_ST_AUTH], counts[SMTP_ST_TLS],
                    counts[SMTP_ST_UNKNOWN], (double)(now - start_ms) / 1000.0);
            next_progress = now + (int64_t)progress_s * 1000;
        }
    }
    buf_free(&line);
    free(res);
    return done;
}

static int cmd_send(int argc, char **argv)
{
    struct send_opts o;
    char err[512];
    int rc = send_options(argc, argv, &o);
    if (rc)
        return rc;
    const char *file = o.file;
    buf data = BUF_INIT;
    wire_lease *lease = NULL;
    if (read_file(file, &data, err, sizeof err) < 0 ||
        wire_lease_parse(data.data ? data.data : "", data.len, &lease, err, sizeof err) < 0) {
        fprintf(stderr, "kiln-agent: %s: %s\n", file, err);
        buf_free(&data);
        return 2;
    }
    buf_free(&data);
    if (lease->nrejected) {
        /* a file is the user's own input: refuse it whole, naming the field (the lease
         * loop instead reports such a mailbox's slots as failed and sends the rest) */
        fprintf(stderr, "kiln-agent: %s: %s\n", file, lease->rejected[0].reason);
        wire_lease_free(lease);
        return 2;
    }

    run_raise_nofile();
    /* the engine's and the metrics' threads inherit a mask without SIGTERM/SIGINT:
     * the main thread alone takes them */
    sigset_t stop_sigs;
    block_stop_signals(&stop_sigs);
    engine *e = engine_create(&o.cfg, err, sizeof err);
    if (!e) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        wire_lease_free(lease);
        return 1;
    }
    metrics_http *mh = NULL;
    if (o.metrics_port >= 0) {
        mh = start_metrics(e, NULL, NULL, o.metrics_addr, o.metrics_port, err, sizeof err);
        if (!mh) {
            fprintf(stderr, "kiln-agent: %s\n", err);
            engine_destroy(e);
            wire_lease_free(lease);
            return 1;
        }
    }
    size_t total = 0;
    int64_t start_ms = clock_mono_ms();
    int64_t deadline_ms = start_ms + lease->ttl_s * 1000;
    for (size_t i = 0; i < lease->nmailboxes; i++) {
        total += lease->mailboxes[i]->nsends;
        engine_submit(e, lease->mailboxes[i], start_ms, deadline_ms, 0);
        lease->mailboxes[i] = NULL;
    }
    wire_lease_free(lease);

    /* SIGTERM/SIGINT: nothing new starts, the lines of what finishes are written, then
     * exit 128 + signal (no SA_RESTART: the flag is looked at every poll) */
    catch_stop_signals(&stop_sigs);

    size_t done = send_results(e, total, o.progress_s, start_ms, &rc);
    fflush(stdout);
    if (done < total)
        fprintf(stderr, "kiln-agent: interrupted: %zu of %zu slots without a result\n",
                total - done, total);
    metrics_http_stop(mh);
    engine_destroy(e);
    return rc;
}

/* ---- inbox --file ---- */

/* What `inbox` was asked for. */
struct inbox_opts {
    const char *file;
    bool once;
    int duration_s, metrics_port, progress_s;
    const char *metrics_addr;
    inbox_engine_config cfg;
};

static int inbox_options(int argc, char **argv, struct inbox_opts *o)
{
    char err[512];
    *o = (struct inbox_opts){.metrics_port = -1, .progress_s = 30, .metrics_addr = "127.0.0.1"};
    inbox_engine_config_defaults(&o->cfg);
    if (inbox_engine_config_from_env(&o->cfg, err, sizeof err) < 0) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--once")) {
            o->once = true;
            continue;
        }
        int rc = common_flag(a, v, &o->file, &o->metrics_port, &o->metrics_addr, &o->progress_s);
        if (rc < 0)
            return 2;
        if (rc > 0) {
            i++;
            continue;
        }
        if (!strcmp(a, "--duration"))
            rc = flag_int(a, v, 1, 31536000, &o->duration_s);
        else if (!strcmp(a, "--server-max-conns"))
            rc = flag_int(a, v, 1, 1000000, &o->cfg.server_max_conns);
        else if (!strcmp(a, "--server-conns-per-min"))
            rc = flag_int(a, v, 1, 100000000, &o->cfg.server_conns_per_min);
        else {
            fprintf(stderr, "kiln-agent: unknown or incomplete option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (rc < 0)
            return 2;
        i++;
    }
    if (!o->file) {
        fprintf(stderr, "kiln-agent: inbox needs --file INBOXES.json\n");
        usage(stderr);
        return 2;
    }
    o->cfg.once = o->once;
    return 0;
}

/* The event lines, written on the inbox engine's thread as they come, by the same
 * serializer as the lease loop's reports (wire_inbox_event_json). */
struct inbox_out {
    buf line;
    size_t events, failed_logins;
};

static void inbox_print_feed(struct inbox_out *o, const feed_event *fe)
{
    char err[256];
    buf_reset(&o->line);
    if (wire_inbox_event_json(fe, &o->line, err, sizeof err) < 0) {
        fprintf(stderr, "kiln-agent: inbox %lld: an event left out: %s\n",
                (long long)fe->mailbox_id, err);
        return;
    }
    buf_putc(&o->line, '\n');
    /* no flush per line (3.5 % of a poll's CPU at 1,000 inboxes): inbox_flush, once per
     * turn of the engine's loop that wrote lines, before it sleeps */
    fwrite(o->line.data, 1, o->line.len, stdout);
    o->events++;
    if (fe->type == FEED_EV_SESSION && fe->status != FEED_SES_OK)
        o->failed_logins++;
}

static void inbox_print(void *arg, const inbox_event *ev)
{
    feed_event fe;
    feed_event_from_inbox(ev, &fe);
    inbox_print_feed(arg, &fe);
}

/* The engine's events_flush: its lines of the turn in one write. (A flush every 100 ms
 * by the main thread woke it 10 times a second whatever came: ~1 ms of CPU a second,
 * a fifth of kiln-agent's CPU in the 2,000-inbox bench.) */
static void inbox_flush(void *arg)
{
    (void)arg;
    fflush(stdout);
}

static void inbox_metrics_extra(void *arg, buf *out)
{
    inbox_engine_metrics(arg, out);
}

/* Waits for the end: --once's pass, --duration, or a signal (then a drain). Sleeps in
 * ppoll on the engine's done descriptor until the next thing to do (a progress line, the
 * duration's end, the drain's end); the stop signals are let in only there, so one that
 * comes while the loop looks around is taken at the ppoll, not missed until a timeout. */
static int inbox_wait(inbox_engine *e, const struct inbox_opts *o, const sigset_t *stop_sigs,
                      int64_t start_ms)
{
    int rc = 0;
    int64_t next_progress = start_ms + (int64_t)o->progress_s * 1000;
    int64_t end_ms = o->duration_s ? start_ms + (int64_t)o->duration_s * 1000 : INT64_MAX;
    int64_t drain_until = 0;
    sigset_t open_mask;
    pthread_sigmask(SIG_BLOCK, stop_sigs, &open_mask);
    sigdelset(&open_mask, SIGTERM);
    sigdelset(&open_mask, SIGINT);
    while (!inbox_engine_finished(e)) {
        int64_t now = clock_mono_ms();
        if (send_signal && !drain_until) {
            rc = 128 + send_signal;
            drain_until = now + SEND_DRAIN_MS;
            inbox_engine_stop(e, SEND_DRAIN_MS);
            fprintf(stderr, "kiln-agent: %s: no new polls; waiting up to %d s for sessions\n",
                    strsignal(send_signal), SEND_DRAIN_MS / 1000);
        } else if (now >= end_ms && !drain_until) {
            drain_until = now + SEND_DRAIN_MS;
            inbox_engine_stop(e, SEND_DRAIN_MS);
        }
        if (drain_until && (now >= drain_until + 1000 || send_signals > 1))
            break;
        if (now >= next_progress) {
            inbox_engine_progress p;
            inbox_engine_progress_get(e, &p);
            fprintf(stderr,
                    "kiln-agent: %zu inboxes (%zu passes done), %zu polls, %zu in IDLE, %zu "
                    "found, %zu actions, %zu failed logins after %.1f s\n",
                    p.inboxes, p.passes_done, p.polls, p.idle_sessions, p.found, p.actions,
                    p.failures, (double)(now - start_ms) / 1000.0);
            next_progress = now + (int64_t)o->progress_s * 1000;
        }
        int64_t until = next_progress;
        if (!drain_until && end_ms < until)
            until = end_ms;
        if (drain_until && drain_until + 1000 < until)
            until = drain_until + 1000;
        int64_t d = until > now ? until - now : 0;
        fflush(stdout); /* lines of this thread (progress goes to stderr; rejected entries) */
        struct timespec ts = {(time_t)(d / 1000), (long)(d % 1000) * 1000000L};
        struct pollfd pfd = {.fd = inbox_engine_done_fd(e), .events = POLLIN};
        (void)ppoll(&pfd, 1, &ts, &open_mask); /* EINTR: a signal, looked at above */
    }
    pthread_sigmask(SIG_SETMASK, &open_mask, NULL);
    return rc;
}

static int cmd_inbox(int argc, char **argv)
{
    struct inbox_opts o;
    char err[512];
    int rc = inbox_options(argc, argv, &o);
    if (rc)
        return rc;
    buf data = BUF_INIT;
    if (read_file(o.file, &data, err, sizeof err) < 0) {
        fprintf(stderr, "kiln-agent: %s: %s\n", o.file, err);
        return 2;
    }
    /* the lease loop's parser: a bad entry is set aside (named here, and a session event,
     * protocol, on stdout when it has a mailbox id), the others are watched */
    wire_inbox_part part;
    wire_inbox_file_parse(data.data ? data.data : "", data.len, &part);
    buf_free(&data);
    for (size_t i = 0; i < part.nrejected; i++)
        fprintf(stderr, "kiln-agent: %s: %s (entry set aside)\n", o.file, part.rejected[i].reason);
    if (part.error[0] || part.ninboxes == 0) {
        if (part.error[0])
            fprintf(stderr, "kiln-agent: %s: %s\n", o.file, part.error);
        else
            fprintf(stderr, "kiln-agent: %s: no usable inbox\n", o.file);
        wire_inbox_part_free(&part);
        return 2;
    }
    size_t n = part.ninboxes;
    /* an array of pointers: sizeof a pointer is meant */
    inbox_spec **specs = xcalloc(n, sizeof *specs); // NOLINT(bugprone-sizeof-expression)
    for (size_t i = 0; i < n; i++)
        specs[i] = inbox_spec_from_feed(&part.inboxes[i]->in, 0);
    run_raise_nofile();
    if (o.cfg.max_conns < n + 16)
        o.cfg.max_conns = (uint32_t)(n + 16);
    sigset_t stop_sigs;
    block_stop_signals(&stop_sigs);
    struct inbox_out out = {.line = BUF_INIT};
    setvbuf(stdout, NULL, _IOFBF, 1 << 16); /* before the first line: inbox_flush */
    o.cfg.events_flush = inbox_flush;
    inbox_engine *e = inbox_engine_create(&o.cfg, inbox_print, &out, err, sizeof err);
    metrics_http *mh = NULL;
    if (e && o.metrics_port >= 0) {
        mh = start_metrics(NULL, inbox_metrics_extra, e, o.metrics_addr, o.metrics_port, err,
                           sizeof err);
    }
    if (!e || (o.metrics_port >= 0 && !mh)) {
        fprintf(stderr, "kiln-agent: %s\n", err);
        inbox_engine_destroy(e);
        for (size_t i = 0; i < n; i++)
            inbox_spec_free(specs[i]);
        free(specs);
        wire_inbox_part_free(&part);
        return 1;
    }
    for (size_t i = 0; i < part.nrejected; i++)
        if (part.rejected[i].mailbox_id > 0)
            inbox_print_feed(&out, &(feed_event){.type = FEED_EV_SESSION,
                                                 .mailbox_id = part.rejected[i].mailbox_id,
                                                 .status = FEED_SES_PROTOCOL,
                                                 .detail = part.rejected[i].reason});
    wire_inbox_part_free(&part);
    inbox_engine_add_many(e, specs, n); /* one wake-up of the engine, not n */
    free(specs);
    /* the parse's tree is gone: its pages go back to the system (10,000 inboxes: the
     * RSS floor falls by tens of MB that the connections would otherwise sit on) */
    malloc_trim(0);
    catch_stop_signals(&stop_sigs);

    rc = inbox_wait(e, &o, &stop_sigs, clock_mono_ms());
    metrics_http_stop(mh);
    inbox_engine_destroy(e); /* joins the engine's thread: no event line after this */
    fflush(stdout);
    if (!rc && o.once && out.failed_logins)
        rc = 3;
    buf_free(&out.line);
    return rc;
}

/* run / check: [--config FILE] [--help] */
static int cmd_run_or_check(int argc, char **argv, int first, bool check)
{
    const char *config = AGENT_CONFIG_DEFAULT_PATH;
    bool required = false;
    for (int i = first; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
            required = true;
            continue;
        }
        fprintf(stderr, "kiln-agent: unknown or incomplete option %s\n", argv[i]);
        usage(stderr);
        return 2;
    }
    /* the real inbox engine: it runs when KILN_AGENT_MAX_INBOXES > 0 (run.c) */
    return check ? run_check(config, required)
                 : run_agent_with(config, required, inbox_feed_imap_engine());
}

int main(int argc, char **argv)
{
    log_init("kiln-agent");
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("kiln-agent %s\n", kiln_version());
        return 0;
    }
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "send"))
        return cmd_send(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "inbox"))
        return cmd_inbox(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "check"))
        return cmd_run_or_check(argc, argv, 2, true);
    if (argc > 1 && !strcmp(argv[1], "run"))
        return cmd_run_or_check(argc, argv, 2, false);
    if (argc == 1 || argv[1][0] == '-')
        return cmd_run_or_check(argc, argv, 1, false);
    usage(stderr);
    return 2;
}
