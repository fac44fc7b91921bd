/* Paces kiln_sends_rotate() (see retention.h) and logs what it changed. */
#include "retention.h"

#include "log.h"

static const db_stmt Q_ROTATE = {
    "retention_rotate", "SELECT created, dropped, partitions, coalesce(oldest::text, '') AS oldest "
                        "FROM kiln_sends_rotate($1::int, $2::int)"};

int retention_tick(retention *r, db *d, arena *a, int64_t now_ms)
{
    if (r->last_ms != 0 && now_ms - r->last_ms < r->every_s * 1000)
        return 0;
    r->last_ms = now_ms;
    const char *p[] = {db_i64_text(a, r->keep_days), db_i64_text(a, RETENTION_DAYS_AHEAD)};
    PGresult *res = db_exec(d, a, &Q_ROTATE, 2, p);
    if (!res) {
        log_warn("sends retention: rotation failed (retried in %lld s): %s", (long long)r->every_s,
                 db_message(d));
        return -1;
    }
    if (PQntuples(res) != 1) /* another kiln-api process is rotating */
        return 0;
    int64_t created = db_i64(res, 0, 0), dropped = db_i64(res, 0, 1);
    if (created > 0 || dropped > 0)
        log_info("sends retention: %lld day partitions created, %lld dropped; %lld kept, "
                 "oldest %s (retention %lld days)",
                 (long long)created, (long long)dropped, (long long)db_i64(res, 0, 2),
                 PQgetvalue(res, 0, 3), (long long)r->keep_days);
    return (int)dropped;
}
