/* Mailbox health and placement (docs/design.md "Mailbox health"):
 * GET /api/mailboxes/{id}/health, GET /api/mailboxes/{id}/placement, and the health
 * object of the legacy GET /api/warmup/mailbox. Everything read here is a rollup or an
 * indexed page: a few hundred rows at most, whatever the history. */
#include "pgjson.h"
#include "routes.h"
#include "validate.h"

#include <stdlib.h>
#include <string.h>

/* One statement: the judged state (a mailbox never judged reads as 'new';
 * quarantine_until only while the quarantine holds), then the placement counts over the
 * last 1, 7 and 30 UTC days (today included) from one index range scan of placement_days'
 * key (at most 30 days x 4 providers rows), as 48 columns: per provider
 * (PROVIDERS' order), per window (1, 7, 30 days), inbox/junk/other/missing. kiln_now() (a
 * SQL function reading kiln_clock) costs more than the rest, so it runs once. */
#define HEALTH_HEAD_COLS 7
#define SUM_OF(col, prov, n)                                                                       \
    "coalesce(sum(" col ") FILTER (WHERE provider = '" prov "' AND day > c.today - " #n "), 0)"
#define SUMS(prov, n)                                                                              \
    SUM_OF("inbox", prov, n)                                                                       \
    ", " SUM_OF("junk", prov, n) ", " SUM_OF("other", prov, n) ", " SUM_OF("missing", prov, n)
#define PROVIDER_SUMS(prov) SUMS(prov, 1) ", " SUMS(prov, 7) ", " SUMS(prov, 30)
#define COUNTS                                                                                     \
    "SELECT " PROVIDER_SUMS("gmail") ", " PROVIDER_SUMS("outlook") ", " PROVIDER_SUMS(             \
        "yahoo") ", " PROVIDER_SUMS("other") " FROM placement_days WHERE mailbox_id = m.id "       \
                                             "AND day > c.today - 30 AND day <= c.today"
static const db_stmt Q_HEALTH = {
    "health_get",
    "SELECT m.id AS mailbox_id, h.score, coalesce(h.band::text, 'new') AS band, "
    "coalesce(h.reason, 'nothing to judge yet') AS reason, "
    "kiln_iso(coalesce(h.band_since, m.active_since)) AS band_since, "
    "kiln_iso(h.judged_at) AS judged_at, "
    "CASE WHEN m.quarantine_until > c.now THEN kiln_iso(m.quarantine_until) END "
    "  AS quarantine_until, w.* "
    "FROM (SELECT now, (now AT TIME ZONE 'UTC')::date AS today FROM (SELECT kiln_now() AS now "
    "OFFSET 0) c0) c CROSS JOIN mailboxes m LEFT JOIN mailbox_health h ON h.mailbox_id = m.id "
    "CROSS JOIN LATERAL (" COUNTS ") w "
    "WHERE m.id = $1 AND m.deleted_at IS NULL AND ($2::bigint = 0 OR m.user_id = $2)"};

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

static const char *const FOLDERS[] = {"inbox", "junk", "other", "missing"};
static const char *const PROVIDERS[] = {"gmail", "outlook", "yahoo", "other"};
static const int WINDOW_DAYS[] = {1, 7, 30};

bool health_fetch(http_req *rq, http_resp *rs, int64_t id, health_rows *out)
{
    const char *p[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq))};
    out->head = http_exec(rq, rs, &Q_HEALTH, 2, p);
    return out->head != NULL;
}

static void counts_json(yajl_gen g, const int64_t *c)
{
    for (int k = 0; k < 4; k++)
        json_kv_i(g, FOLDERS[k], c[k]);
}

/* Window w (0, 1, 2: 1, 7, 30 days): totals and by_provider. c[provider][w][folder]
 * holds the counts (zeros for a provider with no row). */
static void window_json(yajl_gen g, int64_t c[4][3][4], int w)
{
    int64_t total[4] = {0};
    for (int p = 0; p < 4; p++)
        for (int k = 0; k < 4; k++)
            total[k] += c[p][w][k];
    json_obj_open(g);
    json_kv_i(g, "days", WINDOW_DAYS[w]);
    counts_json(g, total);
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
        counts_json(g, c[p][w]);
        json_obj_close(g);
    }
    json_obj_close(g);
    json_obj_close(g);
}

void health_write(yajl_gen g, const health_rows *h)
{
    int64_t c[4][3][4];
    for (int p = 0; p < 4; p++)
        for (int w = 0; w < 3; w++)
            for (int k = 0; k < 4; k++)
                c[p][w][k] = db_i64(h->head, 0, HEALTH_HEAD_COLS + (p * 3 + w) * 4 + k);
    json_obj_open(g);
    pgjson_members(g, h->head, 0, 0, HEALTH_HEAD_COLS);
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
