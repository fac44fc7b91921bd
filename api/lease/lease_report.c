/* Reports (see lease_report.h): only slots of the lease still open change, the
 * previous status comes from the locked row, so a concurrent sweep or a duplicate is
 * accounted once; counters and quota move in the same statement (lease_store.c). */
#include "lease_report.h"

#include "lease_store.h"
#include "buf.h"
#include "pgarr.h"
#include "stats.h"
#include "validate.h"
#include "wire.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPORT_RESULTS 10000

/* Optional, nullable string member. */
static bool opt_str(http_resp *rs, yajl_val o, const char *key, const char *field, size_t maxlen,
                    const char **out)
{
    yajl_val v = json_get(o, key);
    *out = NULL;
    if (!v || YAJL_IS_NULL(v))
        return true;
    return v_str(rs, o, key, field, 0, maxlen, true, out);
}

static bool opt_int(http_resp *rs, yajl_val o, const char *key, const char *field, int64_t min,
                    int64_t max, int64_t *out, bool *has)
{
    yajl_val v = json_get(o, key);
    *has = false;
    if (!v || YAJL_IS_NULL(v))
        return true;
    *has = true;
    return v_int(rs, o, key, field, 0, min, max, out);
}

/* "results[i]." then a field's name, in name (for an error's field: each is used before
 * the next is built). Without printf: a report of 2,000 results named 16,000 fields in
 * the arena with arena_printf before any was needed (session 33). */
typedef struct result_name {
    char s[96];
    size_t pre;
} result_name;

static const char *result_field(result_name *n, const char *field)
{
    size_t len = strlen(field);
    if (len > sizeof n->s - n->pre - 1)
        len = sizeof n->s - n->pre - 1;
    memcpy(n->s + n->pre, field, len);
    n->s[n->pre + len] = '\0';
    return n->s;
}

static bool parse_result(http_resp *rs, yajl_val o, size_t i, lease_result *r)
{
    static const char *const fields[] = {"send_id", "status",     "smtp_code", "enhanced_code",
                                         "detail",  "latency_ms", NULL};
    result_name nm;
    memcpy(nm.s, "results[", 8);
    nm.pre = 8 + fmt_i64(nm.s + 8, (int64_t)i);
    nm.s[nm.pre] = '\0';
    if (!YAJL_IS_OBJECT(o)) {
        nm.s[nm.pre++] = ']';
        nm.s[nm.pre] = '\0';
        http_error(rs, 400, "invalid_field", "each result must be an object", nm.s);
        return false;
    }
    memcpy(nm.s + nm.pre, "].", 3);
    nm.pre += 2;
    return v_known_fields(rs, o, fields, result_field(&nm, "")) &&
           v_int(rs, o, "send_id", result_field(&nm, "send_id"), V_REQUIRED, 1, INT64_MAX,
                 &r->send_id) &&
           v_enum_n(rs, o, "status", result_field(&nm, "status"), V_REQUIRED, wire_status_names,
                    WIRE_REPORTABLE, &r->status) &&
           opt_int(rs, o, "smtp_code", result_field(&nm, "smtp_code"), 0, 999, &r->smtp_code,
                   &r->has_code) &&
           opt_str(rs, o, "enhanced_code", result_field(&nm, "enhanced_code"), 32, &r->enhanced) &&
           opt_str(rs, o, "detail", result_field(&nm, "detail"), 1000, &r->detail) &&
           opt_int(rs, o, "latency_ms", result_field(&nm, "latency_ms"), 0, 86400000,
                   &r->latency_ms, &r->has_latency);
}

typedef struct id_at {
    int64_t id;
    size_t at;
} id_at;

static int cmp_id_at(const void *a, const void *b)
{
    const id_at *x = a, *y = b;
    if (x->id != y->id)
        return (x->id > y->id) - (x->id < y->id);
    return (x->at > y->at) - (x->at < y->at);
}

/* Marks each repeat of a send id after its first place in the batch (sorted, not
 * pairwise: a batch of 10,000 would be 50 M comparisons). */
static void mark_repeats(arena *a, lease_result *res, size_t len)
{
    id_at *v = arena_alloc(a, len * sizeof *v);
    for (size_t i = 0; i < len; i++)
        v[i] = (id_at){res[i].send_id, i};
    qsort(v, len, sizeof *v, cmp_id_at);
    for (size_t i = 1; i < len; i++)
        if (v[i].id == v[i - 1].id)
            res[v[i].at].dup_in_batch = true;
}

bool lease_report_parse(http_req *rq, http_resp *rs, yajl_val arr, lease_result **out, int *n)
{
    if (!arr || !YAJL_IS_ARRAY(arr)) {
        http_error(rs, 400, arr ? "invalid_field" : "missing_field",
                   "'results' must be a list of send results", "results");
        return false;
    }
    size_t len = arr->u.array.len;
    if (len == 0 || len > MAX_REPORT_RESULTS) {
        http_error(rs, 400, "invalid_field", "'results' must hold 1 to 10000 results", "results");
        return false;
    }
    lease_result *res = arena_calloc(rq->pool, len * sizeof *res);
    for (size_t i = 0; i < len; i++) {
        lease_result *r = &res[i];
        if (!parse_result(rs, arr->u.array.values[i], i, r))
            return false;
    }
    mark_repeats(rq->pool, res, len);
    *out = res;
    *n = (int)len;
    return true;
}

/* The send_latency histogram labels ("%g" of each bound, as kiln_send_latency_seconds
 * exposes them): a result's bucket is picked here, not by a per-row subquery in SQL. */
typedef struct latency_labels {
    char bound[SEND_LATENCY_BUCKETS][32];
} latency_labels;

static void latency_labels_init(latency_labels *l)
{
    for (int i = 0; i < SEND_LATENCY_BUCKETS; i++)
        snprintf(l->bound[i], sizeof l->bound[i], "%g", send_latency_buckets[i]);
}

static const char *latency_label(const latency_labels *l, int64_t latency_ms)
{
    int b =
        histogram_bucket(send_latency_buckets, SEND_LATENCY_BUCKETS, (double)latency_ms / 1000.0);
    return b < SEND_LATENCY_BUCKETS ? l->bound[b] : "+Inf";
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct report {
    const char *lease_id;
    const lease_result *res;
    int n;
    const char *fence;        /* every reported id, in order */
    lease_report_batch batch; /* the results without in-batch duplicates */
    int nbatch;
} report;

/* The batch's array literals, built once for every attempt. */
static void report_batch(arena *a, report *rp)
{
    latency_labels labels;
    latency_labels_init(&labels);
    pgarr ids, st, code, enh, det, lat, lb, fence;
    pgarr *all[] = {&ids, &st, &code, &enh, &det, &lat, &lb, &fence};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        pgarr_open(all[i]);
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (int i = 0; i < rp->n; i++) {
        const lease_result *r = &rp->res[i];
        pgarr_i64(&fence, r->send_id);
        lo = r->send_id < lo ? r->send_id : lo;
        hi = r->send_id > hi ? r->send_id : hi;
        if (r->dup_in_batch)
            continue;
        rp->nbatch++;
        pgarr_i64(&ids, r->send_id);
        pgarr_str(&st, r->status);
        if (r->has_code)
            pgarr_i64(&code, r->smtp_code);
        else
            pgarr_null(&code);
        pgarr_str(&enh, r->enhanced);
        pgarr_str(&det, r->detail);
        if (r->has_latency) {
            pgarr_i64(&lat, r->latency_ms);
            pgarr_str(&lb, latency_label(&labels, r->latency_ms));
        } else {
            pgarr_null(&lat);
            pgarr_null(&lb);
        }
    }
    rp->fence = pgarr_done(&fence, a);
    rp->batch = (lease_report_batch){pgarr_done(&ids, a), pgarr_done(&st, a),  pgarr_done(&code, a),
                                     pgarr_done(&enh, a), pgarr_done(&det, a), pgarr_done(&lat, a),
                                     pgarr_done(&lb, a),  db_i64_text(a, lo),  db_i64_text(a, hi)};
}

static void write_answer(http_resp *rs, const report *rp, int64_t *applied, int napplied)
{
    if (napplied > 1)
        qsort(applied, (size_t)napplied, sizeof *applied, cmp_i64);
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "lease_id", rp->lease_id);
    json_kv_i(g, "applied", napplied);
    json_kv_i(g, "duplicates", rp->n - napplied);
    json_kv_i(g, "rejected", 0);
    json_key(g, "results");
    json_arr_open(g);
    for (int i = 0; i < rp->n; i++) {
        const lease_result *r = &rp->res[i];
        bool was_applied =
            !r->dup_in_batch && napplied > 0 &&
            bsearch(&r->send_id, applied, (size_t)napplied, sizeof *applied, cmp_i64);
        json_obj_open(g);
        json_kv_i(g, "send_id", r->send_id);
        json_kv_s(g, "outcome", was_applied ? "applied" : "duplicate");
        json_obj_close(g);
    }
    json_arr_close(g);
    json_obj_close(g);
    json_gen_free(g);
}

/* The fence: every reported id must be of this lease, or nothing is applied (404). */
static bool fence_ok(http_req *rq, http_resp *rs, const report *rp, enum db_tx *out)
{
    int foreign = -1;
    if (!lease_store_report_fence(rq->db, rq->pool, rp->lease_id, &rp->batch, rp->fence, rp->n,
                                  &foreign)) {
        *out = http_tx_fail(rq, rs);
        return false;
    }
    if (foreign < 0)
        return true;
    db_rollback(rq->db);
    char msg[160];
    snprintf(msg, sizeof msg, "send %lld is not part of this lease; nothing was applied",
             (long long)rp->res[foreign].send_id);
    http_error(rs, 404, "unknown_send", msg,
               arena_printf(rq->pool, "results[%d].send_id", foreign));
    *out = DB_TX_FAILED;
    return false;
}

/* One statement when every result is a slot still leased (the common case: its ids are
 * then all of this lease, so the fence is proven); otherwise the fence over every id,
 * then the locked form for the rest (duplicates, slots given back meanwhile). */
static enum db_tx report_tx(http_req *rq, http_resp *rs, void *ctx)
{
    const report *rp = ctx;
    int64_t *applied = NULL, *more = NULL;
    int napplied = 0, nmore = 0;
    enum db_tx out = DB_TX_OK;
    if (!db_begin(rq->db) || !lease_store_report_apply(rq->db, rq->pool, rp->lease_id, &rp->batch,
                                                       false, &applied, &napplied))
        return http_tx_fail(rq, rs);
    if (napplied < rp->nbatch) {
        if (!fence_ok(rq, rs, rp, &out))
            return out;
        if (!lease_store_report_apply(rq->db, rq->pool, rp->lease_id, &rp->batch, true, &more,
                                      &nmore))
            return http_tx_fail(rq, rs);
        if (nmore > 0) {
            int64_t *all = arena_alloc(rq->pool, (size_t)(napplied + nmore) * sizeof *all);
            if (napplied > 0)
                memcpy(all, applied, (size_t)napplied * sizeof *all);
            memcpy(all + napplied, more, (size_t)nmore * sizeof *all);
            applied = all;
            napplied += nmore;
        }
    }
    if (!db_commit(rq->db))
        return http_tx_fail(rq, rs);
    write_answer(rs, rp, applied, napplied);
    return DB_TX_OK;
}

void lease_report_apply(http_req *rq, http_resp *rs, const char *lease_id, const lease_result *res,
                        int n)
{
    report rp = {.lease_id = lease_id, .res = res, .n = n};
    report_batch(rq->pool, &rp);
    http_tx(rq, rs, report_tx, &rp, "report conflicted with concurrent work; retry");
}
