/* libpq wrapper (see db.h): lazy prepared statements, reconnect, error classes. */
#include "db.h"

#include "buf.h"
#include "log.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PREPARED 256

struct db {
    char *conninfo;
    PGconn *conn;
    const db_stmt *prepared[MAX_PREPARED];
    int nprepared;
    bool in_tx;
    bool began; /* db_begin succeeded, no commit or rollback since (in_tx may be lost) */
    /* The first error of the open transaction: PostgreSQL answers a COMMIT after it with
     * "ROLLBACK" and PGRES_COMMAND_OK, so db_commit reports this one instead. */
    enum db_error tx_error;
    char tx_sqlstate[6];
    char tx_message[256];
    enum db_error last;
    char sqlstate[6];
    char message[512];
    char constraint[128];
};

db *db_open(const char *conninfo)
{
    db *d = xcalloc(1, sizeof *d);
    d->conninfo = xstrdup(conninfo);
    return d;
}

void db_close(db *d)
{
    if (!d)
        return;
    if (d->conn)
        PQfinish(d->conn);
    free(d->conninfo);
    free(d);
}

PGconn *db_conn(db *d)
{
    return d->conn;
}

static void set_error(db *d, enum db_error e, const char *state, const char *msg)
{
    d->last = e;
    snprintf(d->sqlstate, sizeof d->sqlstate, "%s", state ? state : "");
    snprintf(d->message, sizeof d->message, "%s", msg ? msg : "");
    char *nl = strchr(d->message, '\n');
    if (nl)
        *nl = '\0';
}

/* The server's notices go to kiln's log, not to stderr raw: a WARNING as a warning,
 * the rest (NOTICE, e.g. kiln_finish_slots' CREATE TEMP TABLE IF NOT EXISTS at each
 * release after a connection's first) at debug. libpq's default printed every one. */
static void on_notice(void *arg, const PGresult *r)
{
    (void)arg;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (sev && !strcmp(sev, "WARNING"))
        log_warn("database: %s", msg ? msg : "(no message)");
    else
        log_debug("database %s: %s", sev ? sev : "notice", msg ? msg : "(no message)");
}

bool db_ensure(db *d)
{
    if (d->conn && PQstatus(d->conn) == CONNECTION_OK)
        return true;
    if (d->conn) {
        log_warn("database connection lost; reconnecting");
        PQfinish(d->conn);
        d->conn = NULL;
    }
    d->nprepared = 0;
    d->in_tx = false;
    d->conn = PQconnectdb(d->conninfo);
    if (PQstatus(d->conn) != CONNECTION_OK) {
        set_error(d, DB_UNAVAILABLE, "08006", PQerrorMessage(d->conn));
        log_warn("database unavailable: %s", d->message);
        PQfinish(d->conn);
        d->conn = NULL;
        return false;
    }
    PQsetNoticeReceiver(d->conn, on_notice, NULL);
    /* Keep transactions short: a stuck request must not hold locks for long. No JIT:
     * kiln's statements are short, and the few the planner costs above jit_above_cost
     * (the stats snapshot's aggregate over every mailbox; 030's misestimated reply wake)
     * spent more compiling than they saved: the snapshot at 100,000 mailboxes took
     * 712 ms with JIT (147 functions compiled), 596 ms without. */
    PGresult *r = PQexec(d->conn, "SET idle_in_transaction_session_timeout = '30s'; "
                                  "SET statement_timeout = '30s'; SET TIME ZONE 'UTC'; "
                                  "SET jit = off");
    PQclear(r);
    return true;
}

static bool is_prepared(db *d, const db_stmt *st)
{
    for (int i = 0; i < d->nprepared; i++)
        if (d->prepared[i] == st)
            return true;
    return false;
}

/* SQLSTATEs meaning the server went away: class 08 (connection exception), 57P01
 * admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now. */
static bool server_gone(const char *state)
{
    return state && (!strncmp(state, "08", 2) || !strcmp(state, "57P01") ||
                     !strcmp(state, "57P02") || !strcmp(state, "57P03"));
}

static void classify(db *d, PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(d->conn);
    const char *cons = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    snprintf(d->constraint, sizeof d->constraint, "%s", cons ? cons : "");
    enum db_error e = DB_OTHER;
    if (!d->conn || PQstatus(d->conn) != CONNECTION_OK || server_gone(state))
        e = DB_UNAVAILABLE;
    else if (state && !strncmp(state, "23", 2))
        e = DB_CONSTRAINT;
    else if (state && !strncmp(state, "22", 2))
        e = DB_BAD_DATA;
    else if (state && (!strcmp(state, "40001") || !strcmp(state, "40P01")))
        e = DB_CONFLICT;
    set_error(d, e, state, msg);
    if (d->in_tx && d->tx_error == DB_OK) {
        d->tx_error = e;
        snprintf(d->tx_sqlstate, sizeof d->tx_sqlstate, "%s", d->sqlstate);
        snprintf(d->tx_message, sizeof d->tx_message, "%.255s", d->message);
    }
    if (e == DB_OTHER || e == DB_UNAVAILABLE)
        log_error("database error %s: %s", d->sqlstate, d->message);
}

static PGresult *exec(db *d, arena *a, const db_stmt *st, int nparams, const char *const *params,
                      bool per_call)
{
    d->last = DB_OK;
    bool retried = false;
    if (d->began && !d->in_tx) {
        /* the transaction went with its connection: a statement on a new one would
         * commit on its own */
        set_error(d, DB_UNAVAILABLE, "08006", "the transaction was lost with its connection");
        return NULL;
    }
again:
    if (!db_ensure(d))
        return NULL;
    if (!per_call && !is_prepared(d, st)) {
        PGresult *p = PQprepare(d->conn, st->name, st->sql, 0, NULL);
        if (PQresultStatus(p) != PGRES_COMMAND_OK) {
            classify(d, p);
            PQclear(p);
            goto lost;
        }
        PQclear(p);
        if (d->nprepared < MAX_PREPARED)
            d->prepared[d->nprepared++] = st;
    }
    PGresult *r = per_call ? PQexecParams(d->conn, st->sql, nparams, NULL, params, NULL, NULL, 0)
                           : PQexecPrepared(d->conn, st->name, nparams, params, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
        arena_cleanup_add(a, (arena_cleanup_fn)PQclear, r);
        return r;
    }
    classify(d, r);
    PQclear(r);
lost:
    /* A connection that died between requests is retried once, outside transactions. */
    if (d->last == DB_UNAVAILABLE && !d->in_tx && !retried &&
        (!d->conn || PQstatus(d->conn) != CONNECTION_OK)) {
        retried = true;
        goto again;
    }
    if (d->last == DB_UNAVAILABLE)
        d->in_tx = false;
    return NULL;
}

PGresult *db_exec(db *d, arena *a, const db_stmt *st, int nparams, const char *const *params)
{
    return exec(d, a, st, nparams, params, false);
}

PGresult *db_exec_planned(db *d, arena *a, const db_stmt *st, int nparams,
                          const char *const *params)
{
    return exec(d, a, st, nparams, params, true);
}

static bool simple(db *d, const char *sql)
{
    if (!db_ensure(d))
        return false;
    PGresult *r = PQexec(d->conn, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        classify(d, r);
    PQclear(r);
    return ok;
}

bool db_begin(db *d)
{
    d->last = DB_OK;
    if (!simple(d, "BEGIN"))
        return false;
    d->in_tx = d->began = true;
    d->tx_error = DB_OK;
    return true;
}

/* A COMMIT that did not commit, as an error: the transaction had failed (PostgreSQL
 * rolls it back and answers "ROLLBACK", PGRES_COMMAND_OK), or the connection is not the
 * one the transaction ran on (a reconnect would commit an empty transaction). */
static bool commit_lost(db *d, const char *why)
{
    enum db_error e = d->tx_error != DB_OK ? d->tx_error : DB_OTHER;
    char msg[400];
    snprintf(msg, sizeof msg, "COMMIT did not commit: %s%s%s", why, d->tx_error ? ": " : "",
             d->tx_error ? d->tx_message : "");
    set_error(d, e, d->tx_error ? d->tx_sqlstate : "25P02", msg);
    log_error("database error %s: %s", d->sqlstate, d->message);
    return false;
}

bool db_commit(db *d)
{
    bool began = d->began, lost = d->began && !d->in_tx;
    d->in_tx = d->began = false;
    if (lost || !d->conn || PQstatus(d->conn) != CONNECTION_OK) {
        set_error(d, DB_UNAVAILABLE, "08006", "connection lost before COMMIT");
        return false;
    }
    if (began && PQtransactionStatus(d->conn) == PQTRANS_IDLE)
        return commit_lost(d, "no transaction open on this connection");
    PGresult *r = PQexec(d->conn, "COMMIT");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        classify(d, r);
    else if (strcmp(PQcmdStatus(r), "COMMIT") != 0)
        ok = commit_lost(d, "the transaction had failed and was rolled back");
    PQclear(r);
    return ok;
}

void db_rollback(db *d)
{
    if (d->conn && PQstatus(d->conn) == CONNECTION_OK &&
        PQtransactionStatus(d->conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(d->conn, "ROLLBACK");
        PQclear(r);
    }
    d->in_tx = d->began = false;
}

/* One savepoint name: a caller needs one level (lease_grant.c plans again from it). */
bool db_savepoint(db *d)
{
    return simple(d, "SAVEPOINT kiln_sp");
}

bool db_rollback_to_savepoint(db *d)
{
    if (!simple(d, "ROLLBACK TO SAVEPOINT kiln_sp"))
        return false;
    /* an error since the savepoint is undone with it (one before it failed SAVEPOINT) */
    d->tx_error = DB_OK;
    return true;
}

bool db_in_tx(const db *d)
{
    return d->in_tx || d->began;
}

bool db_exec_script(db *d, const char *sql)
{
    return simple(d, sql);
}

enum db_error db_last_error(const db *d)
{
    return d->last;
}

const char *db_sqlstate(const db *d)
{
    return d->sqlstate;
}

const char *db_message(const db *d)
{
    return d->message;
}

const char *db_constraint(const db *d)
{
    return d->constraint;
}

const char *db_val(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return NULL;
    return PQgetvalue(r, row, col);
}

int64_t db_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    /* PostgreSQL's text of an integer: an optional '-' and digits. Up to 18 digits fit
     * without overflow checks; anything else goes to strtoll (a lease's rows are read
     * this way, ~10 numbers a send; strtoll's locale path was 3 % of kiln-api's CPU). */
    const char *s = PQgetvalue(r, row, col);
    const char *p = s + (*s == '-');
    uint64_t v = 0;
    size_t n = 0;
    for (; p[n] >= '0' && p[n] <= '9' && n < 18; n++)
        v = v * 10 + (uint64_t)(p[n] - '0');
    if (n == 0 || p[n] != '\0')
        return strtoll(s, NULL, 10);
    return *s == '-' ? -(int64_t)v : (int64_t)v;
}

const char *db_i64_text(arena *a, int64_t v)
{
    char d[FMT_I64_MAX];
    return arena_strndup(a, d, fmt_i64(d, v));
}

void db_columns(const PGresult *r, const char *const *names, int *cols, int n)
{
    for (int i = 0; i < n; i++) {
        cols[i] = PQfnumber(r, names[i]);
        if (cols[i] < 0) {
            log_error("statement result has no column \"%s\"", names[i]);
            abort();
        }
    }
}
