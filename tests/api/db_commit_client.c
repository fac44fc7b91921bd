/* db_commit against the stack's PostgreSQL (KILN_DB), for test_db_commit.py: a COMMIT
 * that did not commit must be a failure, whatever PostgreSQL's command status says, and a
 * request whose transaction ended so must not answer success. One line per case:
 *   "<case> commit=<0|1> error=<class> status=<http status or -> rows=<n>", and for the
 * requests retry_after=<0|1> (the answer carries Retry-After: 1)
 *   db_commit_client */
#include "http.h"
#include "json.h"
#include "tx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const db_stmt Q_TABLE = {
    "probe_table", "CREATE TABLE IF NOT EXISTS commit_probe (id int PRIMARY KEY, parent int "
                   "REFERENCES commit_probe (id) DEFERRABLE INITIALLY DEFERRED)"};
static const db_stmt Q_INSERT = {"probe_insert",
                                 "INSERT INTO commit_probe (id, parent) VALUES ($1::int, $2::int)"};
static const db_stmt Q_COUNT = {"probe_count",
                                "SELECT count(*) FROM commit_probe WHERE id = $1::int"};
static const db_stmt Q_DIV0 = {"probe_div0", "SELECT 1 / 0"};
static const db_stmt Q_CONFLICT = {
    "probe_conflict", "DO $$ BEGIN RAISE EXCEPTION 'probe' USING ERRCODE = '40001'; END $$"};
static const db_stmt Q_SUICIDE = {"probe_suicide", "SELECT pg_terminate_backend(pg_backend_pid())"};

enum probe_fault {
    FAULT_NONE,
    FAULT_SWALLOWED,
    FAULT_CONFLICT,
    FAULT_DEFERRED,
    FAULT_DROPPED,
    FAULT_DROPPED_THEN_MORE, /* a statement after the connection dropped */
};

static const char *error_name(enum db_error e)
{
    static const char *const names[] = {"ok",       "unavailable", "constraint",
                                        "bad_data", "conflict",    "other"};
    return e <= DB_OTHER ? names[e] : "?";
}

/* One transaction: the row id, and a fault whose error the body does not look at (the
 * way a best-effort statement would); only db_commit may say how it ended. */
static bool probe_tx(db *d, arena *a, int id, enum probe_fault fault)
{
    const char *p[] = {db_i64_text(a, id), fault == FAULT_DEFERRED ? "999999" : NULL};
    if (!db_begin(d) || !db_exec(d, a, &Q_INSERT, 2, p))
        return false;
    if (fault == FAULT_SWALLOWED)
        (void)db_exec(d, a, &Q_DIV0, 0, NULL);
    else if (fault == FAULT_CONFLICT)
        (void)db_exec(d, a, &Q_CONFLICT, 0, NULL);
    else if (fault == FAULT_DROPPED || fault == FAULT_DROPPED_THEN_MORE)
        (void)db_exec(d, a, &Q_SUICIDE, 0, NULL);
    if (fault == FAULT_DROPPED_THEN_MORE) { /* must not run on a new connection on its own */
        const char *more[] = {db_i64_text(a, id + 1000), NULL};
        (void)db_exec(d, a, &Q_INSERT, 2, more);
    }
    return db_commit(d);
}

/* Rows written by the probe with this id (its row, and the one after a lost connection). */
static int64_t rows(db *d, arena *a, int id)
{
    const char *p[] = {db_i64_text(a, id)}, *q[] = {db_i64_text(a, id + 1000)};
    PGresult *r = db_exec(d, a, &Q_COUNT, 1, p), *s = r ? db_exec(d, a, &Q_COUNT, 1, q) : NULL;
    return s ? db_i64(r, 0, 0) + db_i64(s, 0, 0) : -1;
}

typedef struct request_probe {
    int id;
    enum probe_fault fault;
} request_probe;

/* A handler's transaction body, as the routes write them. */
static enum db_tx request_body(http_req *rq, http_resp *rs, void *ctx)
{
    request_probe *p = ctx;
    if (!probe_tx(rq->db, rq->pool, p->id, p->fault))
        return http_tx_fail(rq, rs);
    json_gen_free(http_json(rs, 201));
    return DB_TX_OK;
}

int main(void)
{
    const char *conninfo = getenv("KILN_DB");
    if (!conninfo) {
        fprintf(stderr, "no KILN_DB\n");
        return 2;
    }
    db *d = db_open(conninfo);
    arena *a = arena_create(0);
    if (!db_exec(d, a, &Q_TABLE, 0, NULL)) {
        fprintf(stderr, "probe table: %s\n", db_message(d));
        return 1;
    }
    static const struct {
        const char *name;
        enum probe_fault fault;
    } cases[] = {{"healthy", FAULT_NONE},      {"swallowed", FAULT_SWALLOWED},
                 {"conflict", FAULT_CONFLICT}, {"deferred", FAULT_DEFERRED},
                 {"dropped", FAULT_DROPPED},   {"dropped_then_more", FAULT_DROPPED_THEN_MORE}};
    int id = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++, id++) {
        bool committed = probe_tx(d, a, id, cases[i].fault);
        enum db_error e = db_last_error(d);
        db_rollback(d);
        printf("%s commit=%d error=%s status=- rows=%lld\n", cases[i].name, committed,
               error_name(e), (long long)rows(d, a, id));
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++, id++) {
        http_req rq = {.pool = a, .db = d};
        http_resp rs;
        http_resp_init(&rs);
        request_probe p = {id, cases[i].fault};
        http_tx(&rq, &rs, request_body, &p, "busy");
        bool retry_after = rs.headers.data && strstr(rs.headers.data, "Retry-After: 1\r\n");
        printf("request_%s commit=- error=%s status=%d rows=%lld retry_after=%d\n", cases[i].name,
               error_name(db_last_error(d)), rs.status, (long long)rows(d, a, id), retry_after);
        http_resp_free(&rs);
    }
    arena_destroy(a);
    db_close(d);
    return 0;
}
