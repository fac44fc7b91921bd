/* Transaction retries (see tx.h). */
#include "tx.h"

enum db_tx db_tx_run(int attempts, db_tx_body body, void *ctx)
{
    enum db_tx rc = DB_TX_RETRY;
    for (int attempt = 0; attempt < attempts && rc == DB_TX_RETRY; attempt++)
        rc = body(ctx);
    return rc;
}

enum db_tx db_tx_abort(db *d)
{
    enum db_error e = db_last_error(d);
    db_rollback(d);
    return e == DB_CONFLICT ? DB_TX_RETRY : DB_TX_FAILED;
}
