/* `kiln-api seed`: a batch of users and mailboxes for scale runs, written with COPY in
 * one transaction. It lives in kiln-api (not a script) because the SMTP secrets must be
 * sealed exactly as registration seals them (secret_seal, AES-256-GCM, no additional
 * data for SMTP: migration 010) under the key kiln-api serves with. A batch is named
 * (--name, default "seed"): its plan carries the name, so a second run of the same batch
 * is refused before anything is written. docs/benchmarks.md "Seeding" has the figures. */
#include "seed.h"

#include "buf.h"
#include "codec.h"
#include "secret.h"
#include "xalloc.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEED_ZONES 5
#define SEED_WARMUP_DAYS 20
#define SEED_COPY_FLUSH (1 << 20)

static const char *const seed_zones[SEED_ZONES] = {"UTC", "Europe/Berlin", "America/New_York",
                                                   "Asia/Tokyo", "Australia/Sydney"};

typedef struct seed_opts {
    long count, users;
    const char *name, *smtp_host;
    long smtp_port;
    bool dry_run;
} seed_opts;

static void seed_usage(FILE *f)
{
    fprintf(f, "usage: kiln-api seed [--count N] [--users U] [--name NAME] [--smtp-host H]\n"
               "                     [--smtp-port P] [--dry-run]\n"
               "  N mailboxes (default 1000000) across U users (default N/100, at least 1), plan\n"
               "  and users named after NAME (default 'seed'; [a-z0-9-], up to 40), mailbox k of\n"
               "  user u: mk@uu.NAME.test, SMTP password 'pw-' + address, sealed under\n"
               "  KILN_SECRET_KEY_FILE. --dry-run does it all and rolls back.\n");
}

static double seed_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Only characters that need no escaping in COPY's text format and in an address. */
static bool seed_plain(const char *s, const char *extra, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || strchr(extra, c)))
            return false;
    }
    return true;
}

static bool seed_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Returns 0, or 2 after a usage message. */
static int seed_parse(int argc, char **argv, seed_opts *o)
{
    *o = (seed_opts){.count = 1000000, .name = "seed", .smtp_host = "127.0.0.1", .smtp_port = 2525};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--dry-run")) {
            o->dry_run = true;
            continue;
        }
        /* Every other option takes a value; a missing value or an unknown option fails. */
        const char *v = i + 1 < argc ? argv[++i] : "";
        bool ok = false;
        if (!strcmp(a, "--count"))
            ok = seed_long(v, 1, 100000000, &o->count);
        else if (!strcmp(a, "--users"))
            ok = seed_long(v, 1, 10000000, &o->users);
        else if (!strcmp(a, "--name"))
            ok = seed_plain((o->name = v), "", 40);
        else if (!strcmp(a, "--smtp-host"))
            ok = seed_plain((o->smtp_host = v), ".:", 253);
        else if (!strcmp(a, "--smtp-port"))
            ok = seed_long(v, 1, 65535, &o->smtp_port);
        if (!ok) {
            fprintf(stderr, "kiln-api seed: bad argument '%s' '%s'\n", a, v);
            seed_usage(stderr);
            return 2;
        }
    }
    if (!o->users)
        o->users = o->count / 100 > 0 ? o->count / 100 : 1;
    if (o->users > o->count) {
        fprintf(stderr, "kiln-api seed: --users %ld is more than --count %ld\n", o->users,
                o->count);
        return 2;
    }
    return 0;
}

/* Runs one statement; returns its result when it has the expected status, else logs the
 * server's message (never parameters: they hold no secret here, but stay quiet) and NULL. */
static PGresult *seed_exec(PGconn *c, const char *sql, int n, const char *const *params,
                           ExecStatusType want)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == want)
        return r;
    fprintf(stderr, "kiln-api seed: %s", PQresultErrorMessage(r));
    PQclear(r);
    return NULL;
}

static bool seed_ok(PGconn *c, const char *sql)
{
    PGresult *r = seed_exec(c, sql, 0, NULL, PGRES_COMMAND_OK);
    PQclear(r);
    return r != NULL;
}

static bool seed_copy_put(PGconn *c, buf *b, bool force)
{
    if (!force && b->len < SEED_COPY_FLUSH)
        return true;
    if (b->len && PQputCopyData(c, b->data, (int)b->len) != 1) {
        fprintf(stderr, "kiln-api seed: COPY: %s", PQerrorMessage(c));
        return false;
    }
    buf_reset(b);
    return true;
}

static bool seed_copy_end(PGconn *c, buf *b)
{
    if (!seed_copy_put(c, b, true) || PQputCopyEnd(c, NULL) != 1) {
        fprintf(stderr, "kiln-api seed: COPY: %s", PQerrorMessage(c));
        return false;
    }
    PGresult *r = PQgetResult(c);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "kiln-api seed: COPY: %s", PQresultErrorMessage(r));
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
    return ok;
}

/* Users NAME-u1..NAME-uU on the plan; their ids (in order) into ids. */
static bool seed_users(PGconn *c, const seed_opts *o, const char *plan_id, int64_t *ids)
{
    PGresult *r =
        seed_exec(c, "COPY users (name, plan_id, timezone) FROM STDIN", 0, NULL, PGRES_COPY_IN);
    if (!r)
        return false;
    PQclear(r);
    buf b = BUF_INIT;
    bool ok = true;
    for (long u = 0; ok && u < o->users; u++) {
        buf_printf(&b, "%s-u%ld\t%s\t%s\n", o->name, u + 1, plan_id, seed_zones[u % SEED_ZONES]);
        ok = seed_copy_put(c, &b, false);
    }
    ok = ok && seed_copy_end(c, &b);
    buf_free(&b);
    if (!ok)
        return false;
    const char *p[1] = {plan_id};
    r = seed_exec(c, "SELECT id FROM users WHERE plan_id = $1 ORDER BY id", 1, p, PGRES_TUPLES_OK);
    if (!r)
        return false;
    ok = PQntuples(r) == o->users;
    for (int i = 0; ok && i < PQntuples(r); i++)
        ids[i] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    if (!ok)
        fprintf(stderr, "kiln-api seed: the plan has %d users, expected %ld\n", PQntuples(r),
                o->users);
    PQclear(r);
    return ok;
}

/* One COPY row of mailbox i: user i % U, its k-th mailbox k = i / U + 1. */
static bool seed_mailbox_row(buf *row, const secret_key *k, const seed_opts *o, long i,
                             const int64_t *ids, char days[][11], const char *now)
{
    long u = i % o->users, n = i / o->users + 1;
    char address[320], password[330];
    snprintf(address, sizeof address, "m%ld@u%ld.%s.test", n, u + 1, o->name);
    snprintf(password, sizeof password, "pw-%s", address);
    buf sealed = BUF_INIT;
    if (secret_seal(k, password, strlen(password), NULL, &sealed) != 0) {
        buf_free(&sealed);
        fprintf(stderr, "kiln-api seed: sealing a secret failed\n");
        return false;
    }
    char hex[2 * 512 + 1];
    if (sealed.len > 512) {
        buf_free(&sealed);
        return false;
    }
    hex_encode((const unsigned char *)sealed.data, sealed.len, hex);
    buf_free(&sealed);
    /* user_id, address, display_name, smtp_host, smtp_port, smtp_security, smtp_username,
     * smtp_secret (bytea: its backslash doubled for COPY's text format), plaintext auth,
     * timezone, window, warmup_start, active_since (kiln_now() read once: as a column
     * default it is a query of kiln_clock per row) */
    buf_printf(row, "%lld\t%s\tM %ld\t%s\t%ld\tplain\t%s\t\\\\x%s\tt\t%s\t0\t24\t%s\t%s\n",
               (long long)ids[u], address, n, o->smtp_host, o->smtp_port, address, hex,
               seed_zones[u % SEED_ZONES], days[u % SEED_WARMUP_DAYS], now);
    return true;
}

static bool seed_mailboxes(PGconn *c, const secret_key *k, const seed_opts *o, const int64_t *ids,
                           double t0)
{
    char days[SEED_WARMUP_DAYS][11], now[64];
    PGresult *r = seed_exec(c,
                            "SELECT to_char((kiln_now() AT TIME ZONE 'UTC')::date - g, "
                            "'YYYY-MM-DD'), kiln_now()::text FROM generate_series(0, 19) g "
                            "ORDER BY g",
                            0, NULL, PGRES_TUPLES_OK);
    if (!r)
        return false;
    for (int i = 0; i < SEED_WARMUP_DAYS; i++)
        snprintf(days[i], sizeof days[i], "%s", PQgetvalue(r, i, 0));
    snprintf(now, sizeof now, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    r = seed_exec(
        c,
        "COPY mailboxes (user_id, address, display_name, smtp_host, smtp_port, "
        "smtp_security, smtp_username, smtp_secret, smtp_allow_plaintext_auth, "
        "timezone, window_start_hour, window_end_hour, warmup_start, active_since) FROM STDIN",
        0, NULL, PGRES_COPY_IN);
    if (!r)
        return false;
    PQclear(r);
    buf b = BUF_INIT;
    bool ok = true;
    long step = o->count / 10 > 10000 ? o->count / 10 : 10000;
    for (long i = 0; ok && i < o->count; i++) {
        ok = seed_mailbox_row(&b, k, o, i, ids, days, now) && seed_copy_put(c, &b, false);
        if (ok && (i + 1) % step == 0 && i + 1 < o->count)
            fprintf(stderr, "seed: %ld / %ld mailboxes sent (%.1f s)\n", i + 1, o->count,
                    seed_now_s() - t0);
    }
    /* Keys, the users foreign key and the mailbox_leasing trigger are checked and run as
     * the COPY ends: a good share of the time is here, after the last row went out. */
    if (ok)
        fprintf(stderr,
                "seed: %ld / %ld mailboxes sent (%.1f s); the database checks "
                "them and fills mailbox_leasing\n",
                o->count, o->count, seed_now_s() - t0);
    ok = ok && seed_copy_end(c, &b);
    buf_free(&b);
    return ok;
}

/* The batch's plan: refuses (3) when it exists; 0 with its id, or 1. */
static int seed_plan(PGconn *c, const seed_opts *o, char *plan_id, size_t n)
{
    char per_user[24];
    snprintf(per_user, sizeof per_user, "%ld", (o->count + o->users - 1) / o->users);
    const char *p[2] = {o->name, per_user};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO plans (name, ramp_start, ramp_step, daily_max, "
                               "user_hourly_cap, user_minute_cap, max_mailboxes) VALUES "
                               "($1, 5, 2, 50, 1000, 100, $2) RETURNING id",
                               2, NULL, p, NULL, NULL, 0);
    int rc = 1;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        snprintf(plan_id, n, "%s", PQgetvalue(r, 0, 0));
        rc = 0;
    } else if (state && !strcmp(state, "23505")) {
        fprintf(stderr,
                "kiln-api seed: a plan named '%s' exists: batch '%s' was seeded already; "
                "nothing written (--name another batch, or start from an empty database)\n",
                o->name, o->name);
        rc = 3;
    } else {
        fprintf(stderr, "kiln-api seed: %s", PQresultErrorMessage(r));
    }
    PQclear(r);
    return rc;
}

/* Sealing works with this key and opens again (what a lease will do). */
static bool seed_key_check(const secret_key *k)
{
    buf sealed = BUF_INIT, plain = BUF_INIT;
    bool ok = secret_seal(k, "check", 5, NULL, &sealed) == 0 &&
              secret_open(k, sealed.data, sealed.len, NULL, &plain) == 0 && plain.len == 5 &&
              !memcmp(plain.data, "check", 5);
    buf_free(&sealed);
    buf_free(&plain);
    if (!ok)
        fprintf(stderr, "kiln-api seed: the secret key does not seal and open\n");
    return ok;
}

int seed_main(const char *conninfo, const char *keyfile, int argc, char **argv)
{
    seed_opts o;
    int rc = seed_parse(argc, argv, &o);
    if (rc != 0)
        return rc;
    if (!keyfile || !*keyfile) {
        fprintf(stderr, "kiln-api seed: KILN_SECRET_KEY_FILE is not set: the secrets are "
                        "sealed under the server key\n");
        return 2;
    }
    secret_key keybuf;
    const secret_key *key = &keybuf;
    char err[512];
    if (secret_key_load(keyfile, &keybuf, err, sizeof err) != 0) {
        fprintf(stderr, "kiln-api seed: %s\n", err);
        return 1;
    }
    if (!seed_key_check(key))
        return 1;
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "kiln-api seed: cannot connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    double t0 = seed_now_s();
    int64_t *ids = xcalloc((size_t)o.users, sizeof *ids);
    char plan_id[24];
    rc = 1;
    if (!seed_ok(c, "BEGIN") || !seed_ok(c, "SET LOCAL synchronous_commit = off"))
        goto out;
    rc = seed_plan(c, &o, plan_id, sizeof plan_id);
    if (rc != 0)
        goto out;
    rc = 1;
    fprintf(stderr, "seed: batch '%s': %ld users, %ld mailboxes%s\n", o.name, o.users, o.count,
            o.dry_run ? " (dry run: rolled back at the end)" : "");
    if (!seed_users(c, &o, plan_id, ids) || !seed_mailboxes(c, key, &o, ids, t0))
        goto out;
    double t_copy = seed_now_s() - t0;
    if (!seed_ok(c, o.dry_run ? "ROLLBACK" : "COMMIT"))
        goto out;
    if (!o.dry_run && !seed_ok(c, "ANALYZE users, mailboxes, mailbox_leasing"))
        goto out;
    fprintf(stderr, "seed: %s %ld mailboxes of %ld users in %.1f s (COPY %.1f s, %.0f/s)\n",
            o.dry_run ? "dry run, rolled back:" : "wrote", o.count, o.users, seed_now_s() - t0,
            t_copy, (double)o.count / t_copy);
    rc = 0;
out:
    if (rc != 0 && PQtransactionStatus(c) != PQTRANS_IDLE) {
        PGresult *r = PQexec(c, "ROLLBACK");
        PQclear(r);
    }
    free(ids);
    PQfinish(c);
    return rc;
}
