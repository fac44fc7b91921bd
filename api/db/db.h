/* PostgreSQL access for kiln-api: one connection per thread, statements prepared
 * lazily per connection and re-prepared after a reconnect, results owned by the
 * request's arena. Only parameterized statements: there is no "exec this string". */
#ifndef KILN_DB_H
#define KILN_DB_H

#include "arena.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct db db;

/* A statement: a stable name and its SQL with $n parameters. Define as static const. */
typedef struct db_stmt {
    const char *name;
    const char *sql;
} db_stmt;

enum db_error {
    DB_OK = 0,
    DB_UNAVAILABLE, /* connection lost or server down: the caller answers 503 */
    DB_CONSTRAINT,  /* unique/foreign-key/check violation: sqlstate class 23 */
    DB_BAD_DATA,    /* data exception: sqlstate class 22 */
    DB_CONFLICT,    /* serialization failure / deadlock: retryable */
    DB_OTHER,
};

/* Connects (or will, lazily); never fails: a dead connection is retried per request. */
db *db_open(const char *conninfo);
void db_close(db *d);
/* Makes sure the connection is up, reconnecting if needed. false = unavailable. */
bool db_ensure(db *d);
/* Runs a prepared statement. Returns a result whose PQclear is registered on the
 * arena, or NULL on error (see db_last_error / db_sqlstate / db_message). */
PGresult *db_exec(db *d, arena *a, const db_stmt *st, int nparams, const char *const *params);
/* As db_exec, but the statement goes unprepared, so PostgreSQL plans every call with its
 * own values instead of possibly settling on one generic plan: for a statement whose
 * generic plan can be far worse than its custom ones (the send report: a 2,000-id array
 * a generic plan cannot size; a backend on it spent 6x the CPU per send, docs/benchmarks.md
 * session 26). Costs a parse and a plan per call. */
PGresult *db_exec_planned(db *d, arena *a, const db_stmt *st, int nparams,
                          const char *const *params);
/* Transaction control; return false on failure. db_rollback is safe to call anytime.
 * db_commit is true only when PostgreSQL committed: a COMMIT it answers with "ROLLBACK"
 * (a statement of the transaction had failed) is false with that statement's error
 * class (DB_CONFLICT stays retryable), and so is a COMMIT after the connection dropped. */
bool db_begin(db *d);
bool db_commit(db *d);
void db_rollback(db *d);
bool db_in_tx(const db *d);
/* Inside a transaction: marks a point (one, reused) and returns to it, undoing what ran
 * since and releasing the row locks taken since. */
bool db_savepoint(db *d);
bool db_rollback_to_savepoint(db *d);
/* Runs a script with no parameters (migrations only). */
bool db_exec_script(db *d, const char *sql);
enum db_error db_last_error(const db *d);
const char *db_sqlstate(const db *d);
const char *db_message(const db *d);
/* Name of the violated constraint for DB_CONSTRAINT, or "". */
const char *db_constraint(const db *d);
PGconn *db_conn(db *d);

/* Convenience: value of row r, column c, or NULL when SQL NULL. */
const char *db_val(const PGresult *r, int row, int col);
/* Integer value of row r, column c; 0 when SQL NULL. */
int64_t db_i64(const PGresult *r, int row, int col);
/* Decimal text of v in arena a, for a statement parameter. */
const char *db_i64_text(arena *a, int64_t v);
/* Column numbers of the named columns of r, resolved once per result so rows are read
 * by name, not by position. A name r lacks is a bug in the statement: it aborts. */
void db_columns(const PGresult *r, const char *const *names, int *cols, int n);

#endif
