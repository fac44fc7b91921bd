/* kiln-api: the control plane's command line. `serve` (default) runs the FastCGI
 * server; `migrate` applies the schema; `token create` mints a token; `keygen`
 * writes a new secret key file. */
#include "app.h"
#include "auth.h"
#include "clock.h"
#include "config.h"
#include "health_sweep.h"
#include "inbox_classify.h"
#include "inbox_store.h"
#include "log.h"
#include "migrate.h"
#include "retention.h"
#include "msgid.h"
#include "routes.h"
#include "seed.h"
#include "server.h"
#include "stats.h"
#include "version.h"
#include "webhook_worker.h"
#include "xalloc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: kiln-api [serve]                  run the FastCGI server\n"
               "       kiln-api migrate                  apply pending schema migrations\n"
               "       kiln-api token create --scope admin|metrics|tenant [--user-id N]\n"
               "       kiln-api keygen FILE              write a new AES-256 key (mode 0600)\n"
               "       kiln-api seed [--count N] [--users U] [--name NAME] [--dry-run] ...\n"
               "                                         mailboxes for scale runs (COPY)\n"
               "       kiln-api --version\n"
               "environment: KILN_DB (libpq conninfo), KILN_FCGI_SOCKET, KILN_THREADS,\n"
               "  KILN_SECRET_KEY_FILE, KILN_MAX_BODY, KILN_STATS_INTERVAL_S, KILN_LOG_LEVEL,\n"
               "  KILN_LEASE_TTL_S, KILN_LEASE_BACKLOG_AHEAD_S, KILN_GLOBAL_MINUTE_CAP,\n"
               "  KILN_GLOBAL_HOURLY_CAP,\n"
               "  KILN_MESSAGE_KEY_ID, KILN_MESSAGE_KEY_IDS_ACCEPTED, KILN_WEBHOOK_* (see\n"
               "  docs/webhooks.md), KILN_SENDS_RETENTION_DAYS, KILN_SENDS_ROTATE_S\n");
}

/* Loads the IANA zone names PostgreSQL knows, waiting for the database to come up. */
/* The stats refresher's job: judge the mailboxes whose health rollups changed, and
 * rotate the sends history's day partitions when due. */
typedef struct background_jobs {
    health_config health;
    retention sends;
    int64_t inbox_failing_notify_s; /* 0: off */
} background_jobs;

/* mailbox.inbox_failing events sent per pass at most (the rest in the next passes). */
#define INBOX_FAILING_PER_PASS 1000

static void run_background_jobs(db *d, arena *a, void *ctx)
{
    background_jobs *jobs = ctx;
    health_sweep(d, a, &jobs->health);
    retention_tick(&jobs->sends, d, a, clock_mono_ms());
    int64_t sent = 0;
    if (jobs->inbox_failing_notify_s > 0 &&
        !inbox_store_failing_notify(d, a, jobs->inbox_failing_notify_s, INBOX_FAILING_PER_PASS,
                                    &sent))
        log_warn("inbox failing notices: %s", db_message(d));
    else if (sent > 0)
        log_info("inbox failing notices: %lld inboxes failing for %lld s or more", (long long)sent,
                 (long long)jobs->inbox_failing_notify_s);
}

static int load_timezones(app *a, db *d, int64_t wait_s)
{
    for (int64_t waited = 0;; waited += 2) {
        if (db_ensure(d)) {
            PGresult *r = PQexec(db_conn(d), "SELECT name FROM pg_timezone_names ORDER BY name "
                                             "COLLATE \"C\"");
            if (PQresultStatus(r) == PGRES_TUPLES_OK) {
                int n = PQntuples(r);
                a->timezones = xcalloc((size_t)n, sizeof(char *));
                for (int i = 0; i < n; i++)
                    a->timezones[i] = xstrdup(PQgetvalue(r, i, 0));
                a->ntimezones = (size_t)n;
                PQclear(r);
                return 0;
            }
            log_error("cannot list time zones: %s", PQresultErrorMessage(r));
            PQclear(r);
            return -1;
        }
        if (waited >= wait_s) {
            log_error("database not reachable after %lld s: %s", (long long)wait_s, db_message(d));
            return -1;
        }
        sleep(2);
    }
}

static int cmd_serve(app *a)
{
    char err[512];
    const char *keyfile = getenv("KILN_SECRET_KEY_FILE");
    if (!keyfile || !*keyfile) {
        log_error("KILN_SECRET_KEY_FILE is not set: the SMTP secrets need a key");
        return 1;
    }
    if (secret_key_load(keyfile, &a->key, err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    const char *kid = config_str("KILN_MESSAGE_KEY_ID", "1");
    msgid_keyring *keys = msgid_keyring_new(
        &a->key, kid, config_str("KILN_MESSAGE_KEY_IDS_ACCEPTED", ""), err, sizeof err);
    if (!keys) {
        log_error("%s", err);
        return 1;
    }
    a->msgid_keys = keys;
    static inbox_provider_map providers;
    if (!inbox_provider_map_parse(getenv("KILN_PROVIDER_MAP"), &providers, err, sizeof err)) {
        log_error("%s", err);
        msgid_keyring_free(keys);
        return 1;
    }
    a->providers = &providers;
    webhook_config wc = {
        .conninfo = a->cfg.conninfo, .key = &a->key, .allow_http = a->cfg.webhook_allow_http != 0};
    if (webhook_config_load(&wc, err, sizeof err) != 0) {
        log_error("%s", err);
        msgid_keyring_free(keys);
        return 1;
    }
    db *d = db_open(a->cfg.conninfo);
    int rc = load_timezones(a, d, 60);
    db_close(d);
    if (rc != 0) {
        msgid_keyring_free(keys);
        return 1;
    }
    /* Before server_run's threads start: the worker runs curl_global_init. */
    webhook_worker *hooks = webhook_worker_start(&wc);
    a->stats = stats_create(a->cfg.conninfo, a->cfg.stats_interval_s);
    background_jobs jobs = {
        .health = {a->cfg.health, a->cfg.health_quarantine_days, a->cfg.health_batch},
        .sends = {.keep_days = a->cfg.sends_retention_days, .every_s = a->cfg.sends_rotate_s},
        .inbox_failing_notify_s = a->cfg.inbox_failing_notify_s};
    stats_set_job(a->stats, run_background_jobs, &jobs);
    rc = hooks ? server_run(a, &routes_api) : 1;
    webhook_worker_stop(hooks);
    stats_destroy(a->stats);
    for (size_t i = 0; i < a->ntimezones; i++)
        free(a->timezones[i]);
    free(a->timezones);
    a->msgid_keys = NULL;
    msgid_keyring_free(keys);
    return rc;
}

static int cmd_migrate(app *a)
{
    db *d = db_open(a->cfg.conninfo);
    int n = migrate_apply(d, migrate_sql_dir());
    db_close(d);
    if (n < 0)
        return 1;
    log_info("schema up to date (%d migration%s applied)", n, n == 1 ? "" : "s");
    return 0;
}

static int cmd_token(app *a, int argc, char **argv)
{
    const char *scope = NULL;
    long long user_id = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--scope") && i + 1 < argc)
            scope = argv[++i];
        else if (!strcmp(argv[i], "--user-id") && i + 1 < argc)
            user_id = strtoll(argv[++i], NULL, 10);
        else {
            usage(stderr);
            return 2;
        }
    }
    bool tenant = scope && strcmp(scope, "tenant") == 0;
    if (!scope || (strcmp(scope, "admin") != 0 && strcmp(scope, "metrics") != 0 && !tenant) ||
        tenant != (user_id > 0)) {
        fprintf(stderr, "kiln-api: --scope must be admin, metrics or tenant (tenant needs "
                        "--user-id N)\n");
        return 2;
    }
    db *d = db_open(a->cfg.conninfo);
    arena *ar = arena_create(1024);
    char token[80];
    int64_t id = auth_token_create(d, ar, scope, user_id, 0, a->cfg.pool, token, sizeof token);
    if (id < 0)
        fprintf(stderr, "kiln-api: cannot create token: %s\n", db_message(d));
    else
        printf("%s\n", token);
    arena_destroy(ar);
    db_close(d);
    return id < 0 ? 1 : 0;
}

/* Seeds with the key kiln-api serves with, so the secrets open in a lease. */
static int cmd_seed(app *a, int argc, char **argv)
{
    return seed_main(a->cfg.conninfo, getenv("KILN_SECRET_KEY_FILE"), argc, argv);
}

int main(int argc, char **argv)
{
    log_init("kiln-api");
    const char *cmd = argc > 1 ? argv[1] : "serve";
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("kiln-api %s\n", kiln_version());
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "keygen")) {
        char err[512];
        if (argc != 3) {
            usage(stderr);
            return 2;
        }
        if (secret_key_generate(argv[2], err, sizeof err) != 0) {
            fprintf(stderr, "kiln-api: %s\n", err);
            return 1;
        }
        return 0;
    }
    static app a;
    char err[512];
    if (app_config_load(&a.cfg, err, sizeof err) != 0) {
        fprintf(stderr, "kiln-api: %s\n", err);
        return 2;
    }
    if (!strcmp(cmd, "serve"))
        return cmd_serve(&a);
    if (!strcmp(cmd, "migrate"))
        return cmd_migrate(&a);
    if (!strcmp(cmd, "seed"))
        return cmd_seed(&a, argc - 2, argv + 2);
    if (!strcmp(cmd, "token") && argc > 2 && !strcmp(argv[2], "create"))
        return cmd_token(&a, argc - 3, argv + 3);
    fprintf(stderr, "kiln-api: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
