/* Mailbox health and placement (docs/design.md "Mailbox health"):
 * GET /api/mailboxes/{id}/health, GET /api/mailboxes/{id}/placement, and the health
 * object of the legacy GET /api/warmup/mailbox. Everything read here is a rollup or an
 * indexed page: a few hundred rows at most, whatever the history. */
#include "pgjson.h"
#include "routes.h"
#include "validate.h"

#include <stdlib.h>
#include <string.h>

/* The judged state; a mailbox never judged reads as 'new'. quarantine_until: only while
 * the quarantine holds. The last column (today's UTC date, not shown) is the windows'
 * parameter: kiln_now() (a SQL function reading kiln_clock) costs more than the rest of
 * the statement, so it runs once per request. */
static const db_stmt Q_HEALTH = {
    "health_get",
    "SELECT m.id AS mailbox_id, h.score, coalesce(h.band::text, 'new') AS band, "
    "coalesce(h.reason, 'nothing to judge yet') AS reason, "
    "kiln_iso(coalesce(h.band_since, m.active_since)) AS band_since, "
    "kiln_iso(h.judged_at) AS judged_at, "
    "CASE WHEN m.quarantine_until > c.now THEN kiln_iso(m.quarantine_until) END "
    "  AS quarantine_until, (c.now AT TIME ZONE 'UTC')::date::text AS today "
    "FROM (SELECT kiln_now() AS now OFFSET 0) c CROSS JOIN mailboxes m "
    "LEFT JOIN mailbox_health h ON h.mailbox_id = m.id "
    "WHERE m.id = $1 AND m.deleted_at IS NULL AND ($2::bigint = 0 OR m.user_id = $2)"};

/* Placement counts over the last 1, 7 and 30 UTC days (today included), per provider:
 * one index range scan of placement_days' key (at most 30 days x 4 providers rows).
 * Columns: provider, then for 1, 7 and 30 days the NCOUNTS counts of COUNTS. */
#define WINDOW_SUM(col, n) "coalesce(sum(" col ") FILTER (WHERE day > $2::date - " #n "), 0)"
#define WINDOW_SUMS(n)                                                                                 \
    WINDOW_SUM("inbox", n)                                                                             \
    ", " WINDOW_SUM("junk", n) ", " WINDOW_SUM("other", n) ", " WINDOW_SUM(                            \
        "missing",                                                                                     \
        n) ", " WINDOW_SUM("auth_seen",                                                                \
                           n) ", " WINDOW_SUM("auth_failed",                                           \
                                              n) ", " WINDOW_SUM("spf_fail",                           \
                                                                 n) ", " WINDOW_SUM("dkim_fail",       \
                                                                                    n) ","             \
                                                                                       " " WINDOW_SUM( \
                                                                                           "dmarc"     \
                                                                                           "_fai"      \
                                                                                           "l",        \
                                                                                           n)
#define WINDOW_COLS WINDOW_SUMS(1) ", " WINDOW_SUMS(7) ", " WINDOW_SUMS(30)
static const db_stmt Q_HEALTH_WINDOWS = {
    "health_windows",
    "SELECT provider::text, " WINDOW_COLS " FROM placement_days "
    "WHERE mailbox_id = $1 AND day > $2::date - 30 AND day <= $2::date GROUP BY provider"};

static const db_stmt Q_OWNED = {"placement_owner",
                                "SELECT 1 FROM mailboxes WHERE id = $1 AND deleted_at IS NULL "
                                "AND ($2::bigint = 0 OR user_id = $2)"};

/* Newest send first; the cursor is the last send_id of the previous page. */
static const db_stmt Q_PLACEMENTS = {
    "placement_page",
    "SELECT send_id, provider::text AS provider, placement::text AS placement, folder, "
    "kiln_iso(found_at) AS found_at, kiln_iso(decided_at) AS decided_at, spf::text AS spf, "
    "dkim::text AS dkim, dmarc::text AS dmarc FROM placements "
    "WHERE mailbox_id = $1 AND ($2::bigint = 0 OR send_id < $2) "
    "ORDER BY send_id DESC LIMIT $3"};

/* The placements' folders, then what the Authentication-Results of the found ones said
 * (016): the window's "authentication" object. */
static const char *const COUNTS[] = {"inbox",  "junk",     "other",     "missing",   "seen",
                                     "failed", "spf_fail", "dkim_fail", "dmarc_fail"};
#define NFOLDERS 4
#define NCOUNTS 9
static const char *const PROVIDERS[] = {"gmail", "outlook", "yahoo", "other"};
static const int WINDOW_DAYS[] = {1, 7, 30};

bool health_fetch(http_req *rq, http_resp *rs, int64_t id, health_rows *out)
{
    const char *p[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq))};
    out->head = http_exec(rq, rs, &Q_HEALTH, 2, p);
    if (!out->head)
        return false;
    out->windows = NULL;
    if (PQntuples(out->head) == 0)
        return true;
    const char *w[] = {p[0], PQgetvalue(out->head, 0, PQnfields(out->head) - 1)};
    out->windows = http_exec(rq, rs, &Q_HEALTH_WINDOWS, 2, w);
    return out->windows != NULL;
}

static void counts_json(yajl_gen g, const int64_t *c, int from, int to)
{
    for (int k = from; k < to; k++)
        json_kv_i(g, COUNTS[k], c[k]);
}

/* The window's Authentication-Results tallies (all providers) and their fail share. */
static void auth_json(yajl_gen g, const int64_t *total)
{
    json_key(g, "authentication");
    json_obj_open(g);
    counts_json(g, total, NFOLDERS, NCOUNTS);
    json_key(g, "fail_share");
    if (total[NFOLDERS] > 0)
        json_d(g, (double)total[NFOLDERS + 1] / (double)total[NFOLDERS]);
    else
        json_null(g);
    json_obj_close(g);
}

/* Window w (0, 1, 2: 1, 7, 30 days): totals and by_provider. c[provider][w][count]
 * holds the counts (zeros for a provider with no row). */
static void window_json(yajl_gen g, int64_t c[4][3][NCOUNTS], int w)
{
    int64_t total[NCOUNTS] = {0};
    for (int p = 0; p < 4; p++)
        for (int k = 0; k < NCOUNTS; k++)
            total[k] += c[p][w][k];
    json_obj_open(g);
    json_kv_i(g, "days", WINDOW_DAYS[w]);
    counts_json(g, total, 0, NFOLDERS);
    int64_t placed = total[0] + total[1] + total[2] + total[3];
    json_key(g, "inbox_rate");
    if (placed > 0)
        json_d(g, (double)total[0] / (double)placed);
    else
        json_null(g);
    json_key(g, "by_provider");
    json_obj_open(g);
    for (int p = 0; p < 4; p++) {
        json_key(g, PROVIDERS[p]);
        json_obj_open(g);
        counts_json(g, c[p][w], 0, NFOLDERS);
        json_obj_close(g);
    }
    json_obj_close(g);
    auth_json(g, total);
    json_obj_close(g);
}

void health_write(yajl_gen g, const health_rows *h)
{
    int64_t c[4][3][NCOUNTS];
    memset(c, 0, sizeof c);
    for (int i = 0; i < PQntuples(h->windows); i++) {
        int p = 0;
        while (p < 3 && strcmp(PROVIDERS[p], PQgetvalue(h->windows, i, 0)) != 0)
            p++;
        for (int w = 0; w < 3; w++)
            for (int k = 0; k < NCOUNTS; k++)
                c[p][w][k] = strtoll(PQgetvalue(h->windows, i, 1 + w * NCOUNTS + k), NULL, 10);
    }
    json_obj_open(g);
    pgjson_members(g, h->head, 0, 0, PQnfields(h->head) - 1); /* all but today */
    json_key(g, "placement");
    json_arr_open(g);
    for (int w = 0; w < 3; w++)
        window_json(g, c, w);
    json_arr_close(g);
    json_obj_close(g);
}

void h_mailboxes_health(http_req *rq, http_resp *rs)
{
    int64_t id;
    if (!v_path_id(rq, rs, 0, &id))
        return;
    health_rows h;
    if (!health_fetch(rq, rs, id, &h))
        return;
    if (PQntuples(h.head) == 0) {
        http_error(rs, 404, "not_found", "no such mailbox", NULL);
        return;
    }
    yajl_gen g = http_json(rs, 200);
    health_write(g, &h);
    json_gen_free(g);
}

void h_mailboxes_placement(http_req *rq, http_resp *rs)
{
    int64_t id, limit, cursor;
    if (!v_path_id(rq, rs, 0, &id) || !v_page(rq, rs, 100, 500, &limit, &cursor))
        return;
    const char *own[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq))};
    PGresult *o = http_exec(rq, rs, &Q_OWNED, 2, own);
    if (!o)
        return;
    if (PQntuples(o) == 0) {
        http_error(rs, 404, "not_found", "no such mailbox", NULL);
        return;
    }
    const char *p[] = {own[0], http_i64(rq, cursor), http_i64(rq, limit + 1)};
    PGresult *r = http_exec(rq, rs, &Q_PLACEMENTS, 3, p);
    if (!r)
        return;
    yajl_gen g = http_json(rs, 200);
    pgjson_page(g, r, limit);
    json_gen_free(g);
}
