/* The webhook delivery worker (see webhook_worker.h). Each thread keeps up to
 * KILN_WEBHOOK_BATCH requests in flight on one curl multi handle, at most
 * KILN_WEBHOOK_ENDPOINT_CONCURRENCY of them to one endpoint, and tops them up as they end:
 * a claim statement takes due deliveries (counting the attempt and pushing the row's
 * next_attempt_at a claim period ahead, so a worker that dies gives its rows back), and
 * the outcomes of the requests that ended are written in one statement with the metric
 * counters. A slow or dead receiver holds its own slots, not everyone's: nothing waits
 * for the slowest request of a batch. No transaction is held across HTTP. */
#include "webhook_worker.h"

#include "arena.h"
#include "clock.h"
#include "codec.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "pgarr.h"
#include "rand.h"
#include "webhook.h"
#include "webhook_sign.h"
#include "webhook_url.h"
#include "xalloc.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often a worker deletes old events, and how many per statement. */
#define PRUNE_EVERY_MS 60000
#define PRUNE_BATCH "1000"

struct webhook_worker {
    webhook_config cfg;
    pthread_mutex_t lock;
    bool running;
    int nthreads;
    pthread_t *threads;
    struct worker_thread *ctx; /* one per thread */
};

/* One worker thread's context. */
typedef struct worker_thread {
    webhook_worker *w;
    int shard;    /* its counters shard */
    CURLM *multi; /* set before the thread starts: stop wakes it (curl_multi_wakeup) */
} worker_thread;

/* Claims up to $1 due deliveries of active endpoints; $2 = seconds a claim holds; $3/$4
 * the endpoints this thread has requests in flight to and how many, $5 the most in flight
 * to one endpoint: an endpoint at it is skipped, one below it gets what is left (the
 * oldest due first). The ranked scan is bounded ($1 x 8 rows past the skipped endpoints);
 * the rows are then locked and re-checked (SKIP LOCKED: another worker's are not waited
 * for). */
static const db_stmt Q_CLAIM = {
    "webhook_claim",
    "WITH f AS (SELECT * FROM unnest($3::bigint[], $4::int[]) AS f (ep, n)), "
    "r AS (SELECT d.id, d.endpoint_id, d.next_attempt_at FROM webhook_deliveries d "
    "  JOIN webhook_endpoints ep ON ep.id = d.endpoint_id "
    "  WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND ep.active "
    "  AND NOT EXISTS (SELECT 1 FROM f WHERE f.ep = d.endpoint_id AND f.n >= $5::int) "
    "  ORDER BY d.next_attempt_at LIMIT $1::int * 8), "
    "k AS (SELECT r.id FROM (SELECT r.*, row_number() OVER (PARTITION BY r.endpoint_id "
    "  ORDER BY r.next_attempt_at, r.id) AS k FROM r) r LEFT JOIN f ON f.ep = r.endpoint_id "
    "  WHERE r.k <= $5::int - coalesce(f.n, 0)), "
    "c AS (SELECT d.id FROM webhook_deliveries d WHERE d.id IN (SELECT id FROM k) "
    "  AND d.status = 'pending' AND d.next_attempt_at <= now() "
    "  ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED), "
    "u AS (UPDATE webhook_deliveries d SET attempts = d.attempts + 1, last_attempt_at = now(), "
    "  next_attempt_at = now() + make_interval(secs => $2::int) FROM c WHERE d.id = c.id "
    "  RETURNING d.id, d.attempts, d.endpoint_id, d.event_id) "
    "SELECT u.id, u.attempts, u.endpoint_id, e.id AS event_id, e.type, ep.url, "
    "encode(ep.secret, 'hex') AS secret_hex, jsonb_build_object('id', e.id, 'type', e.type, "
    "'created_at', kiln_iso(e.created_at), 'user_id', e.user_id, 'data', e.payload)::text AS body "
    "FROM u JOIN webhook_events e ON e.id = u.event_id "
    "JOIN webhook_endpoints ep ON ep.id = u.endpoint_id ORDER BY u.id"};

/* Claims a stopping worker gives up: due again at once (the attempt stays counted). */
static const db_stmt Q_GIVE_BACK = {"webhook_give_back",
                                    "UPDATE webhook_deliveries SET next_attempt_at = now() "
                                    "WHERE id = ANY ($1::bigint[]) AND status = 'pending'"};

/* Outcomes: $1 ids, $2 HTTP codes (NULL: no answer), $3 errors, $4 retry delays in ms
 * (NULL: no more attempts); $5 the counters shard. */
static const db_stmt Q_RESULT = {
    "webhook_result",
    "WITH x AS (SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[]) "
    "  AS x (id, code, err, retry_ms)), "
    "u AS (UPDATE webhook_deliveries d SET "
    "  status = CASE WHEN x.code BETWEEN 200 AND 299 THEN 'delivered' "
    "    WHEN x.retry_ms IS NULL THEN 'failed' ELSE 'pending' END::webhook_delivery_status, "
    "  next_attempt_at = CASE WHEN x.code BETWEEN 200 AND 299 OR x.retry_ms IS NULL THEN NULL "
    "    ELSE now() + make_interval(secs => x.retry_ms / 1000.0) END, "
    "  delivered_at = CASE WHEN x.code BETWEEN 200 AND 299 THEN now() END, "
    "  last_code = x.code, last_error = x.err "
    "  FROM x WHERE d.id = x.id AND d.status = 'pending' RETURNING d.status) "
    "INSERT INTO counters (name, label, shard, value) "
    "SELECT 'webhook_deliveries', CASE WHEN status = 'pending' THEN 'retrying' "
    "  ELSE status::text END AS label, $5::smallint, count(*) FROM u GROUP BY 2 ORDER BY 2 "
    "ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value"};

/* Events older than the retention with no delivery still pending (deliveries cascade). */
static const db_stmt Q_PRUNE = {
    "webhook_prune",
    "DELETE FROM webhook_events WHERE id IN (SELECT e.id FROM webhook_events e "
    "WHERE e.created_at < kiln_now() - make_interval(days => $1::int) AND NOT EXISTS "
    "(SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending') "
    "LIMIT " PRUNE_BATCH ")"};

int webhook_config_load(webhook_config *c, char *err, size_t errlen)
{
    struct {
        const char *name;
        int64_t def, min, max;
        int64_t *out;
    } ints[] = {
        {"KILN_WEBHOOK_WORKERS", 1, 0, 16, &c->workers},
        {"KILN_WEBHOOK_BATCH", 16, 1, 256, &c->batch},
        {"KILN_WEBHOOK_ENDPOINT_CONCURRENCY", 4, 1, 256, &c->per_endpoint},
        {"KILN_WEBHOOK_POLL_MS", 500, 10, 60000, &c->poll_ms},
        {"KILN_WEBHOOK_BACKOFF_BASE_MS", 30000, 1, 3600000, &c->backoff_base_ms},
        {"KILN_WEBHOOK_BACKOFF_MAX_MS", (int64_t)6 * 3600000, 1, (int64_t)7 * 86400000,
         &c->backoff_max_ms},
        {"KILN_WEBHOOK_MAX_ATTEMPTS", 10, 1, 100, &c->max_attempts},
        {"KILN_WEBHOOK_CONNECT_TIMEOUT_MS", 5000, 100, 60000, &c->connect_timeout_ms},
        {"KILN_WEBHOOK_TIMEOUT_MS", 10000, 100, 60000, &c->timeout_ms},
        {"KILN_WEBHOOK_RETENTION_DAYS", 30, 1, 3650, &c->retention_days},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (config_int(ints[i].name, ints[i].def, ints[i].min, ints[i].max, ints[i].out, err,
                       errlen) != 0)
            return -1;
    if (c->backoff_max_ms < c->backoff_base_ms) {
        snprintf(err, errlen,
                 "KILN_WEBHOOK_BACKOFF_MAX_MS must be >= KILN_WEBHOOK_BACKOFF_BASE_MS");
        return -1;
    }
    c->ca_file = config_str("KILN_WEBHOOK_CA_FILE", NULL);
    return 0;
}

/* One claimed delivery on its way. */
typedef struct attempt {
    int64_t id, attempts, endpoint_id;
    CURL *easy;
    struct curl_slist *headers;
    char *body;          /* owned: the request outlives the claim's result */
    const char *problem; /* set before sending: not sent, recorded as this error */
    long code;           /* HTTP status, 0 = no answer */
    bool done;
    char errbuf[CURL_ERROR_SIZE];
} attempt;

/* The receiver's answer body is not kept: its size only. */
static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* Opens the endpoint's secret and signs body; false (a->problem set) when it cannot. */
static bool sign(const webhook_config *c, attempt *a, const char *secret_hex, char *sig,
                 size_t siglen)
{
    buf sealed = BUF_INIT, secret = BUF_INIT;
    bool ok = hex_decode_append(&sealed, secret_hex, strlen(secret_hex)) == 0 &&
              secret_open(c->key, sealed.data ? sealed.data : "", sealed.len, WEBHOOK_SECRET_AAD,
                          &secret) == 0 &&
              webhook_signature(secret.data ? secret.data : "", secret.len, (int64_t)time(NULL),
                                a->body, strlen(a->body), sig, siglen) == 0;
    if (secret.data)
        OPENSSL_cleanse(secret.data, secret.len);
    buf_free(&secret);
    buf_free(&sealed);
    if (!ok)
        a->problem = "the endpoint's secret does not open with this server key";
    return ok;
}

/* Prepares row i of the claim as a curl easy handle on multi (or a problem). */
static void prepare(const webhook_config *c, const PGresult *r, int i, attempt *a, CURLM *multi,
                    arena *ar)
{
    a->id = db_i64(r, i, 0);
    a->attempts = db_i64(r, i, 1);
    a->endpoint_id = db_i64(r, i, 2);
    a->body = xstrdup(db_val(r, i, 7));
    const char *url = db_val(r, i, 5); /* CURLOPT_URL copies it */
    char sig[WEBHOOK_SIGNATURE_MAX];
    if ((a->problem = webhook_url_deliverable(url, c->allow_http)) != NULL ||
        !sign(c, a, db_val(r, i, 6), sig, sizeof sig))
        return;
    a->headers = curl_slist_append(NULL, "Content-Type: application/json");
    a->headers = curl_slist_append(a->headers, "User-Agent: kiln-webhooks/1");
    a->headers = curl_slist_append(a->headers, "Expect:");
    a->headers = curl_slist_append(a->headers, arena_printf(ar, "Kiln-Signature: %s", sig));
    a->headers =
        curl_slist_append(a->headers, arena_printf(ar, "Kiln-Event-Id: %s", db_val(r, i, 3)));
    a->headers =
        curl_slist_append(a->headers, arena_printf(ar, "Kiln-Event-Type: %s", db_val(r, i, 4)));
    a->headers = curl_slist_append(
        a->headers, arena_printf(ar, "Kiln-Delivery-Attempt: %lld", (long long)a->attempts));
    CURL *e = a->easy = curl_easy_init();
    if (!e || !a->headers) {
        a->problem = "out of memory preparing the request";
        return;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is an answer, not a 2xx */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, a->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, a->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(a->body));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, a);
    if (curl_multi_add_handle(multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        a->easy = NULL;
        a->problem = "cannot start the request";
    }
}

/* Marks the requests that ended (each is bounded by timeout_ms) done, with their answer. */
static void collect(CURLM *multi)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        attempt *a = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&a);
        if (!a)
            continue;
        a->done = true;
        if (m->data.result == CURLE_OK)
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &a->code);
        else if (!a->errbuf[0])
            snprintf(a->errbuf, sizeof a->errbuf, "%s", curl_easy_strerror(m->data.result));
    }
}

static void attempt_free(CURLM *multi, attempt *a)
{
    if (a->easy) {
        curl_multi_remove_handle(multi, a->easy);
        curl_easy_cleanup(a->easy);
    }
    curl_slist_free_all(a->headers);
    free(a->body);
    free(a);
}

/* Writes the outcomes of n attempts; returns false on a database error. */
static bool record(const webhook_config *c, db *d, arena *ar, attempt **at, int n, int shard)
{
    pgarr ids, codes, errs, retry;
    pgarr_open(&ids);
    pgarr_open(&codes);
    pgarr_open(&errs);
    pgarr_open(&retry);
    for (int i = 0; i < n; i++) {
        attempt *a = at[i];
        bool ok = a->code >= 200 && a->code <= 299;
        pgarr_i64(&ids, a->id);
        if (a->code > 0)
            pgarr_i64(&codes, a->code);
        else
            pgarr_null(&codes);
        if (ok)
            pgarr_null(&errs);
        else if (a->problem)
            pgarr_str(&errs, a->problem);
        else if (a->code > 0)
            pgarr_str(&errs, arena_printf(ar, "HTTP %ld", a->code));
        else
            pgarr_str(&errs, a->errbuf[0] ? a->errbuf : "no answer");
        if (ok || a->attempts >= c->max_attempts)
            pgarr_null(&retry);
        else
            pgarr_i64(&retry, webhook_backoff_ms(a->attempts, c->backoff_base_ms, c->backoff_max_ms,
                                                 (double)random_range(0, 999999) / 1e6));
        if (!ok)
            log_info("webhook delivery %lld to endpoint %lld: attempt %lld failed (%s)",
                     (long long)a->id, (long long)a->endpoint_id, (long long)a->attempts,
                     a->code > 0  ? "HTTP error"
                     : a->problem ? a->problem
                                  : "no answer");
    }
    const char *p[] = {pgarr_done(&ids, ar), pgarr_done(&codes, ar), pgarr_done(&errs, ar),
                       pgarr_done(&retry, ar), db_i64_text(ar, shard)};
    if (db_exec(d, ar, &Q_RESULT, 5, p))
        return true;
    log_warn("webhooks: cannot record outcomes: %s", db_message(d));
    return false;
}

/* One thread's requests in flight. */
typedef struct flight {
    attempt **a;
    int n, cap;
} flight;

/* Claims up to cap - n more; returns how many, or -1 on a database error. An attempt
 * that cannot be sent (a refused URL, a secret that does not open) is done at once. */
static int claim(const webhook_config *c, db *d, arena *ar, CURLM *multi, flight *fl)
{
    /* A claim outlives the longest request with room. */
    int64_t claim_s = c->timeout_ms / 1000 + 60;
    pgarr eps, ns;
    pgarr_open(&eps);
    pgarr_open(&ns);
    for (int i = 0; i < fl->n; i++) {
        int64_t ep = fl->a[i]->endpoint_id;
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = fl->a[j]->endpoint_id == ep;
        if (seen)
            continue;
        int k = 0;
        for (int j = i; j < fl->n; j++)
            k += fl->a[j]->endpoint_id == ep;
        pgarr_i64(&eps, ep);
        pgarr_i64(&ns, k);
    }
    const char *p[] = {db_i64_text(ar, fl->cap - fl->n), db_i64_text(ar, claim_s),
                       pgarr_done(&eps, ar), pgarr_done(&ns, ar), db_i64_text(ar, c->per_endpoint)};
    PGresult *r = db_exec(d, ar, &Q_CLAIM, 5, p);
    if (!r) {
        log_warn("webhooks: cannot claim deliveries: %s", db_message(d));
        return -1;
    }
    int n = PQntuples(r);
    for (int i = 0; i < n && fl->n < fl->cap; i++) {
        attempt *a = xcalloc(1, sizeof *a);
        prepare(c, r, i, a, multi, ar);
        a->done = a->easy == NULL;
        fl->a[fl->n++] = a;
    }
    return n;
}

/* Writes the outcomes of the attempts that ended and drops them from the flight; false
 * on a database error (their claims then lapse and they are tried again). */
static bool settle(const webhook_config *c, db *d, arena *ar, CURLM *multi, flight *fl, int shard)
{
    attempt **done = arena_alloc(ar, sizeof(attempt *) * (size_t)(fl->n + 1));
    int nd = 0, keep = 0;
    for (int i = 0; i < fl->n; i++) {
        if (fl->a[i]->done)
            done[nd++] = fl->a[i];
        else
            fl->a[keep++] = fl->a[i];
    }
    fl->n = keep;
    bool ok = nd == 0 || record(c, d, ar, done, nd, shard);
    for (int i = 0; i < nd; i++)
        attempt_free(multi, done[i]);
    return ok;
}

/* A stopping thread's requests still in flight: abandoned, their rows due again. */
static void give_back(db *d, arena *ar, CURLM *multi, flight *fl)
{
    if (fl->n == 0)
        return;
    pgarr ids;
    pgarr_open(&ids);
    for (int i = 0; i < fl->n; i++) {
        pgarr_i64(&ids, fl->a[i]->id);
        attempt_free(multi, fl->a[i]);
    }
    const char *p[] = {pgarr_done(&ids, ar)};
    if (!db_exec(d, ar, &Q_GIVE_BACK, 1, p))
        log_warn("webhooks: cannot give back %d deliveries in flight (they are tried again "
                 "when their claim ends): %s",
                 fl->n, db_message(d));
    fl->n = 0;
}

static bool running(webhook_worker *w)
{
    pthread_mutex_lock(&w->lock);
    bool r = w->running;
    pthread_mutex_unlock(&w->lock);
    return r;
}

static void *worker_main(void *arg)
{
    worker_thread *t = arg;
    webhook_worker *w = t->w;
    const webhook_config *c = &w->cfg;
    db *d = db_open(c->conninfo);
    arena *ar = arena_create(16384);
    CURLM *multi = t->multi;
    flight fl = {xcalloc((size_t)c->batch, sizeof(attempt *)), 0, (int)c->batch};
    int64_t pruned_at = 0, claim_at = 0;
    while (running(w)) {
        int64_t now = clock_mono_ms();
        if (fl.n < fl.cap && now >= claim_at) {
            /* A claim that filled every free slot may have left more due: claim again
             * as soon as a slot frees; one that found less waits the poll period; a
             * database that is down is asked again in seconds. */
            int want = fl.cap - fl.n, got = claim(c, d, ar, multi, &fl);
            claim_at = got >= want ? now : now + (got < 0 && c->poll_ms < 5000 ? 5000 : c->poll_ms);
        }
        int running_n = 0;
        curl_multi_perform(multi, &running_n);
        collect(multi);
        settle(c, d, ar, multi, &fl, t->shard);
        arena_reset(ar);
        if (clock_mono_ms() - pruned_at >= PRUNE_EVERY_MS) {
            pruned_at = clock_mono_ms();
            const char *p[] = {db_i64_text(ar, c->retention_days)};
            if (!db_exec(d, ar, &Q_PRUNE, 1, p))
                log_warn("webhooks: cannot prune old events: %s", db_message(d));
            arena_reset(ar);
        }
        /* Sleep until a request moves, the next claim is due (a slot is free), or stop
         * wakes the handle. */
        int64_t wait_ms = 1000;
        if (fl.n < fl.cap) {
            int64_t until = claim_at - clock_mono_ms();
            wait_ms = until < 0 ? 0 : until < wait_ms ? until : wait_ms;
        }
        if (wait_ms > 0)
            curl_multi_poll(multi, NULL, 0, (int)wait_ms, NULL);
    }
    give_back(d, ar, multi, &fl);
    free(fl.a);
    arena_destroy(ar);
    db_close(d);
    return NULL;
}

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

webhook_worker *webhook_worker_start(const webhook_config *c)
{
    static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
    webhook_worker *w = xcalloc(1, sizeof *w);
    w->cfg = *c;
    pthread_mutex_init(&w->lock, NULL);
    w->running = true;
    if (c->workers == 0)
        return w;
    pthread_once(&curl_once, curl_init_once);
    w->threads = xcalloc((size_t)c->workers, sizeof *w->threads);
    worker_thread *ts = xcalloc((size_t)c->workers, sizeof *ts);
    w->ctx = ts;
    for (int i = 0; i < c->workers; i++) {
        ts[i] = (worker_thread){w, i, curl_multi_init()};
        if (!ts[i].multi) {
            log_error("webhooks: cannot start delivery thread %d (curl)", i);
            webhook_worker_stop(w);
            return NULL;
        }
        if (pthread_create(&w->threads[i], NULL, worker_main, &ts[i]) != 0) {
            log_error("webhooks: cannot start delivery thread %d", i);
            webhook_worker_stop(w);
            return NULL;
        }
        w->nthreads++;
    }
    log_info("webhooks: %d delivery thread%s", w->nthreads, w->nthreads == 1 ? "" : "s");
    return w;
}

void webhook_worker_stop(webhook_worker *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->running = false;
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->nthreads; i++)
        curl_multi_wakeup(w->ctx[i].multi);
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    for (int i = 0; w->ctx && i < w->cfg.workers; i++)
        if (w->ctx[i].multi)
            curl_multi_cleanup(w->ctx[i].multi);
    pthread_mutex_destroy(&w->lock);
    free(w->threads);
    free(w->ctx);
    free(w);
}
