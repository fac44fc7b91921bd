/* The one transaction-retry loop of kiln-api. A body runs a whole transaction
 * (db_begin to db_commit) and says how it ended; a serialization failure or deadlock
 * is retried from the start, a few times, since the conflicting work has moved on. */
#ifndef KILN_TX_H
#define KILN_TX_H

#include "db.h"

enum db_tx {
    DB_TX_OK = 0,      /* committed, or answered without a transaction to commit */
    DB_TX_FAILED = -1, /* ended for good; the body said why */
    DB_TX_RETRY = 1,   /* rolled back after a conflict: run it again */
};

/* How often a conflicting transaction runs before the caller gives up. */
#define DB_TX_ATTEMPTS 3

typedef enum db_tx (*db_tx_body)(void *ctx);

/* Runs body up to attempts times while it returns DB_TX_RETRY; returns its last
 * result (DB_TX_RETRY when every attempt conflicted). */
enum db_tx db_tx_run(int attempts, db_tx_body body, void *ctx);
/* Ends a failed transaction: rolls back and returns DB_TX_RETRY for a conflict,
 * DB_TX_FAILED otherwise (db_last_error and db_message still tell why). */
enum db_tx db_tx_abort(db *d);

#endif
