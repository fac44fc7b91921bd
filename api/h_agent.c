/* The agent endpoints: lease, report, heartbeat, release. The lease call picks
 * eligible mailboxes (FOR UPDATE SKIP LOCKED), plans their slots with lease.c under
 * the cap lock and writes everything in a few batched statements; reports are fenced
 * by lease and idempotent by send id. Rules: DESIGN.md "Leasing rules",
 * docs/leasing.md. */
#include "app.h"
#include "clock.h"
#include "codec.h"
#include "handlers.h"
#include "lease.h"
#include "log.h"
#include "rand.h"
#include "stats.h"
#include "validate.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LEASE_MAILBOXES 1000
#define MAX_LEASE_SENDS 10000
#define MAX_REPORT_RESULTS 10000
#define SWEEP_BATCH 100
#define TX_ATTEMPTS 3
/* Any constant both sides agree on: the one lock that serialises cap accounting. */
#define CAP_LOCK_KEY "7305428"

static const db_stmt Q_SWEEP = {"agent_sweep", "SELECT kiln_sweep_expired($1)"};
static const db_stmt Q_SEEN = {"agent_seen",
                               "UPDATE agents SET last_seen_at = kiln_now() WHERE id = $1"};
static const db_stmt Q_NOW = {
    "agent_now", "SELECT ceil(extract(epoch FROM kiln_now()))::bigint, state::text FROM service"};

/* The pick: an index range scan of the unleased mailboxes whose next slot is due
 * within the lease horizon, earliest first (due_at encodes how far behind a mailbox
 * is, see 003_leasing_due.sql). SKIP LOCKED; the lock re-checks lease_id and due_at
 * on the newest row version, so a mailbox granted meanwhile is skipped. */
static const db_stmt Q_PICK = {
    "agent_pick",
    "SELECT coalesce(array_agg(mailbox_id), '{}') FROM (SELECT mailbox_id FROM mailbox_leasing "
    "WHERE lease_id IS NULL AND due_at <= kiln_now() + make_interval(secs => $2) "
    "ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) x"};

/* The exact rules of DESIGN.md for the picked (locked) rows only, read in a statement
 * of its own so it sees what committed before the locks were taken. Eligible when the
 * due time computed from the current state is inside the horizon and the local day's
 * window is still open; furthest behind (sent/target, then longest idle) first. */
static const db_stmt Q_DETAILS = {
    "agent_details",
    "SELECT ml.mailbox_id, m.user_id, m.address, m.display_name, m.smtp_host, m.smtp_port, "
    "m.smtp_security::text, m.smtp_username, encode(m.smtp_secret, 'hex'), g.day::text, "
    "g.target, g.done, "
    "extract(epoch FROM (g.day + make_interval(hours => m.window_start_hour)) "
    "  AT TIME ZONE m.timezone)::bigint, "
    "extract(epoch FROM (g.day + make_interval(hours => m.window_end_hour)) "
    "  AT TIME ZONE m.timezone)::bigint, "
    "coalesce(extract(epoch FROM ml.next_at), 0)::bigint, "
    "coalesce(extract(epoch FROM m.last_send_at), 0)::bigint, p.cooldown_min_s, "
    "p.cooldown_max_s, p.user_minute_cap, p.user_hourly_cap, e.triggered, "
    "to_char(t.lts, 'FMDay'), extract(epoch FROM e.due)::float8, "
    "(e.due <= k.now + make_interval(secs => $2) AND g.done < g.target) AS eligible, "
    "m.smtp_allow_plaintext_auth "
    "FROM mailbox_leasing ml JOIN mailboxes m ON m.id = ml.mailbox_id "
    "JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id CROSS JOIN service s "
    "CROSS JOIN (SELECT kiln_now() AS now) k "
    "CROSS JOIN LATERAL (SELECT k.now AT TIME ZONE m.timezone AS lts) t "
    "LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.lts::date "
    "CROSS JOIN LATERAL (SELECT t.lts::date AS day, kiln_target(p.ramp_start, p.ramp_step, "
    "  p.daily_max, p.weekdays_only, m.daily_target, m.warmup_start, t.lts::date) AS target, "
    "  coalesce(d.sent, 0) + coalesce(d.in_flight, 0) AS done) g "
    "CROSS JOIN LATERAL (SELECT coalesce(s.last_trigger_at > coalesce(ml.leased_at, "
    "  '-infinity'), false) AS triggered) tr "
    "CROSS JOIN LATERAL (SELECT tr.triggered, kiln_due_at(k.now, m.timezone, "
    "  m.window_start_hour, m.window_end_hour, g.target, g.done, ml.next_at, NOT tr.triggered, "
    "  m.deleted_at IS NULL AND m.state = 'active' AND u.state = 'active') AS due) e "
    "WHERE ml.mailbox_id = ANY ($1::bigint[]) AND ml.lease_id IS NULL "
    "ORDER BY 24 DESC, coalesce(d.sent, 0)::float8 / nullif(g.target, 0) NULLS LAST, "
    "m.last_send_at NULLS FIRST, 1"};

/* Eligible mailboxes whose stored text cannot go into an answer (see row_text_problem):
 * out of the pool until someone fixes them (PATCH, then resume clears the error). */
static const db_stmt Q_TEXT_ERROR = {
    "agent_text_error",
    "UPDATE mailboxes m SET state = 'error', last_error = x.why, last_error_at = kiln_now(), "
    "updated_at = now() FROM unnest($1::bigint[], $2::text[]) AS x (id, why) "
    "WHERE m.id = x.id AND m.state = 'active'"};

/* Picked rows that got nothing move their due_at forward (they are locked by us). */
static const db_stmt Q_PUSH = {"agent_push",
                               "UPDATE mailbox_leasing ml SET due_at = to_timestamp(x.due) "
                               "FROM unnest($1::bigint[], $2::float8[]) AS x (mb, due) "
                               "WHERE ml.mailbox_id = x.mb AND ml.lease_id IS NULL"};

/* Mailboxes a report returned to the pool get their next due time. */
static const db_stmt Q_REFRESH = {"agent_refresh_due", "SELECT kiln_refresh_due($1::bigint[])"};

static const db_stmt Q_CAP_LOCK = {"agent_cap_lock",
                                   "SELECT pg_advisory_xact_lock(" CAP_LOCK_KEY ")"};
static const db_stmt Q_BUCKETS = {
    "agent_buckets",
    "SELECT user_id, width_s, extract(epoch FROM at)::bigint, n FROM slot_buckets "
    "WHERE (user_id = 0 OR user_id = ANY ($1::bigint[])) "
    "AND at >= date_trunc('hour', kiln_now()) AND at <= kiln_now() + make_interval(secs => $2)"};
static const db_stmt Q_PAIRS = {
    "agent_pairs",
    "SELECT mailbox_id, recipient_id FROM sends WHERE mailbox_id = ANY ($1::bigint[]) "
    "AND scheduled_at > kiln_now() - make_interval(days => $2::int) "
    "AND status <> 'cancelled' AND recipient_id IS NOT NULL"};

/* Recipient candidates: a window of the pool starting at a random id (wrapping), so
 * successive leases spread over all of it without sorting it. */
#define CANDIDATE_SELECT                                                                           \
    "SELECT m.id, m.user_id, lower(split_part(m.address, '@', 2)), m.address, m.display_name, "    \
    "c.day::text FROM mailboxes m JOIN users u ON u.id = m.user_id "                               \
    "CROSS JOIN (SELECT kiln_now() AS now) k "                                                     \
    "CROSS JOIN LATERAL (SELECT (k.now AT TIME ZONE m.timezone)::date AS day) c "                  \
    "WHERE m.state = 'active' AND m.deleted_at IS NULL AND u.state = 'active' "
static const db_stmt Q_CANDIDATES = {
    "agent_candidates",
    "WITH b AS (SELECT floor(random() * (coalesce(max(id), 0) + 1))::bigint AS s FROM mailboxes) "
    "(" CANDIDATE_SELECT "AND m.id >= (SELECT s FROM b) ORDER BY m.id LIMIT $1) UNION ALL "
    "(" CANDIDATE_SELECT "AND m.id < (SELECT s FROM b) ORDER BY m.id LIMIT $1)"};
/* The candidates' inbound counts on their local day, in candidate order. Read under
 * the cap lock: only grants write mailbox_inbound, and only under that lock. */
static const db_stmt Q_INBOUND = {
    "agent_inbound",
    "SELECT coalesce(i.received, 0) FROM unnest($1::bigint[], $2::date[]) WITH ORDINALITY "
    "AS x (mb, day, ord) LEFT JOIN mailbox_inbound i ON i.mailbox_id = x.mb AND i.day = x.day "
    "ORDER BY x.ord"};
static const db_stmt Q_TEMPLATES = {"agent_templates",
                                    "SELECT subject, body FROM message_templates ORDER BY id"};
static const db_stmt Q_TOPICS = {"agent_topics", "SELECT topic FROM message_topics ORDER BY id"};

static const db_stmt Q_NEW_LEASE = {
    "agent_new_lease",
    "WITH l AS (INSERT INTO leases (agent_id, expires_at, ttl_s) "
    "VALUES ($1, kiln_now() + make_interval(secs => $2), $2) RETURNING id) "
    "SELECT (SELECT id::text FROM l), nextval('sends_id_seq') FROM generate_series(1, $3)"};

/* All writes of a grant in one statement: sends, the mailboxes' leasing rows, today's
 * in_flight, the recipients' inbound counters (mailbox_inbound), the cap buckets. Upserts are
 * ordered by key so concurrent transactions lock rows in one order. */
static const db_stmt Q_GRANT = {
    "agent_grant",
    "WITH s AS (INSERT INTO sends (id, mailbox_id, recipient_id, lease_id, day, scheduled_at, "
    "  message_id) SELECT x.id, x.mb, x.rc, $1::uuid, x.day, to_timestamp(x.at), x.mid "
    "  FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::date[], $6::bigint[], "
    "  $7::text[]) AS x (id, mb, rc, day, at, mid)), "
    "ml AS (UPDATE mailbox_leasing ml SET lease_id = $1::uuid, pending = x.n, "
    "  next_at = to_timestamp(x.nx), leased_at = kiln_now() "
    "  FROM unnest($8::bigint[], $9::int[], $10::bigint[]) AS x (mb, n, nx) "
    "  WHERE ml.mailbox_id = x.mb), "
    "dd AS (INSERT INTO mailbox_days (mailbox_id, day, in_flight) "
    "  SELECT mb, day, count(*)::int FROM unnest($3::bigint[], $5::date[]) AS a (mb, day) "
    "  GROUP BY 1, 2 ORDER BY 1, 2 "
    "  ON CONFLICT (mailbox_id, day) DO UPDATE SET "
    "  in_flight = mailbox_days.in_flight + excluded.in_flight), "
    "ib AS (INSERT INTO mailbox_inbound (mailbox_id, day, received) "
    "  SELECT mb, day, n FROM unnest($11::bigint[], $12::date[], $13::int[]) AS b (mb, day, n) "
    "  ORDER BY 1, 2 ON CONFLICT (mailbox_id, day) DO UPDATE SET "
    "  received = mailbox_inbound.received + excluded.received), "
    "bk AS (INSERT INTO slot_buckets (user_id, width_s, at, n) "
    "  SELECT u, w, to_timestamp(a), n FROM unnest($14::bigint[], $15::int[], $16::bigint[], "
    "  $17::int[]) AS x (u, w, a, n) ORDER BY 2, 1, 3 "
    "  ON CONFLICT (width_s, user_id, at) DO UPDATE SET n = slot_buckets.n + excluded.n) "
    "SELECT 1"};

static const db_stmt Q_BUCKET_TRIM = {
    "agent_bucket_trim",
    "DELETE FROM slot_buckets WHERE ctid = ANY (ARRAY(SELECT ctid FROM slot_buckets "
    "WHERE at < kiln_now() - interval '2 hours' LIMIT 5000))"};

static const db_stmt Q_DURATION = {
    "agent_lease_duration",
    "INSERT INTO counters (name, label, shard, value) VALUES "
    "('lease_duration_bucket', $1, $3, 1), ('lease_duration_sum_us', '', $3, $2) "
    "ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value"};

static const db_stmt Q_LEASE_GET = {
    "agent_lease_get",
    "SELECT agent_id, ended_at IS NOT NULL, expires_at <= kiln_now(), ttl_s FROM leases "
    "WHERE id = $1::uuid"};

/* Which of the reported ids belong to this lease (the fence). */
static const db_stmt Q_REPORT_FENCE = {
    "agent_report_fence",
    "SELECT x.ord, (s.lease_id IS NOT DISTINCT FROM $1::uuid) FROM unnest($2::bigint[]) "
    "WITH ORDINALITY AS x (id, ord) LEFT JOIN sends s ON s.id = x.id ORDER BY x.ord"};

/* Applies reports: only slots of this lease still open (leased, or expired/cancelled
 * when the mail went out anyway) change; the previous status comes from the locked
 * row, so a concurrent sweep or duplicate is accounted once. Counters and quota move
 * in the same statement. */
static const db_stmt Q_REPORT_APPLY = {
    "agent_report_apply",
    "WITH r AS (SELECT * FROM unnest($2::bigint[], $3::send_status[], $4::int[], $5::text[], "
    "  $6::text[], $7::int[], $9::text[]) AS r (id, status, code, enh, detail, latency, lb)), "
    "prev AS (SELECT s.id, s.status AS old, r.status, r.code, r.enh, r.detail, r.latency, r.lb "
    "  FROM sends s JOIN r ON r.id = s.id "
    "  WHERE s.lease_id = $1::uuid AND s.status IN ('leased', 'expired', 'cancelled') "
    "  ORDER BY s.id FOR UPDATE OF s), "
    "upd AS (UPDATE sends s SET status = p.status, smtp_code = p.code, enhanced_code = p.enh, "
    "  detail = p.detail, latency_ms = p.latency, reported_at = kiln_now() "
    "  FROM prev p WHERE s.id = p.id "
    "  RETURNING s.id, s.mailbox_id, s.day, s.status, p.old, s.scheduled_at, s.latency_ms, "
    "  s.detail, p.lb), "
    "dd AS (INSERT INTO mailbox_days (mailbox_id, day, sent, failed, in_flight) "
    "  SELECT mailbox_id, day, count(*) FILTER (WHERE status IN ('sent', 'unknown')), "
    "  count(*) FILTER (WHERE status IN ('failed', 'auth', 'tls')), "
    "  -count(*) FILTER (WHERE old = 'leased') FROM upd GROUP BY 1, 2 ORDER BY 1, 2 "
    "  ON CONFLICT (mailbox_id, day) DO UPDATE SET sent = mailbox_days.sent + excluded.sent, "
    "  failed = mailbox_days.failed + excluded.failed, "
    "  in_flight = greatest(mailbox_days.in_flight + excluded.in_flight, 0)), "
    "ml AS (UPDATE mailbox_leasing ml SET pending = greatest(ml.pending - x.n, 0), "
    "  lease_id = CASE WHEN ml.pending - x.n <= 0 THEN NULL ELSE ml.lease_id END "
    "  FROM (SELECT mailbox_id, count(*)::int AS n FROM upd WHERE old = 'leased' GROUP BY 1) x "
    "  WHERE ml.mailbox_id = x.mailbox_id AND ml.lease_id = $1::uuid "
    "  RETURNING ml.mailbox_id, ml.lease_id IS NULL AS freed), "
    "mb AS (UPDATE mailboxes m SET "
    "  last_send_at = CASE WHEN x.last IS NULL THEN m.last_send_at "
    "    ELSE greatest(coalesce(m.last_send_at, x.last), x.last) END, "
    "  state = CASE WHEN x.auth AND m.state = 'active' THEN 'error'::mailbox_state "
    "    ELSE m.state END, "
    "  last_error = CASE WHEN x.auth THEN x.detail ELSE m.last_error END, "
    "  last_error_at = CASE WHEN x.auth THEN kiln_now() ELSE m.last_error_at END "
    "  FROM (SELECT mailbox_id, max(least(scheduled_at, kiln_now())) "
    "    FILTER (WHERE status IN ('sent', 'unknown')) AS last, bool_or(status = 'auth') AS auth, "
    "    max(coalesce(detail, 'authentication failed')) FILTER (WHERE status = 'auth') AS detail "
    "    FROM upd GROUP BY 1) x "
    "  WHERE m.id = x.mailbox_id AND (x.last IS NOT NULL OR x.auth)), "
    "cnt AS (INSERT INTO counters (name, label, shard, value) "
    "  SELECT name, label, $8::smallint, sum(v) FROM ("
    "    SELECT 'sends' AS name, status::text AS label, 1::bigint AS v FROM upd "
    /* A slot given back (expired, cancelled) and then reported moves from that count
     * to its reported status: kiln_sends_total counts each slot once, by final status. */
    "    UNION ALL SELECT 'sends', old::text, -1 FROM upd WHERE old IN ('expired', 'cancelled') "
    "    UNION ALL SELECT 'send_errors', status::text, 1 FROM upd "
    "      WHERE status IN ('deferred', 'failed', 'auth', 'tls', 'unknown') "
    "    UNION ALL SELECT 'send_latency_bucket', lb, 1 FROM upd WHERE latency_ms IS NOT NULL "
    "    UNION ALL SELECT 'send_latency_sum_us', '', latency_ms::bigint * 1000 FROM upd "
    "      WHERE latency_ms IS NOT NULL) c "
    "  GROUP BY 1, 2 ORDER BY 1, 2 "
    "  ON CONFLICT (name, label, shard) DO UPDATE SET value = counters.value + excluded.value) "
    "SELECT id, (SELECT coalesce(array_agg(mailbox_id), '{}') FROM ml WHERE freed) FROM upd"};

static const db_stmt Q_RENEW = {
    "agent_renew",
    "UPDATE leases SET expires_at = kiln_now() + make_interval(secs => ttl_s) "
    "WHERE id = $1::uuid AND ended_at IS NULL RETURNING kiln_iso(expires_at), ttl_s"};
/* Slots the agent must drop: service stopped, mailbox or its user not active. */
static const db_stmt Q_TO_CANCEL = {
    "agent_to_cancel",
    "SELECT s.id FROM sends s JOIN mailboxes m ON m.id = s.mailbox_id "
    "JOIN users u ON u.id = m.user_id CROSS JOIN service sv "
    "WHERE s.lease_id = $1::uuid AND s.status = 'leased' AND (sv.state <> 'running' "
    "OR m.state <> 'active' OR m.deleted_at IS NOT NULL OR u.state <> 'active') ORDER BY s.id"};
static const db_stmt Q_FINISH = {"agent_finish",
                                 "SELECT kiln_finish_slots($1::bigint[], 'cancelled')"};
static const db_stmt Q_RELEASE = {"agent_release",
                                  "SELECT kiln_end_leases(ARRAY[$1::uuid], 'cancelled')"};

/* ---- small helpers ------------------------------------------------------------ */

static int64_t col_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static bool valid_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* A PostgreSQL array literal, built up element by element. */
typedef struct pgarr {
    buf b;
    bool any;
} pgarr;

static void arr_open(pgarr *a)
{
    buf_init(&a->b);
    buf_putc(&a->b, '{');
    a->any = false;
}

static void arr_sep(pgarr *a)
{
    if (a->any)
        buf_putc(&a->b, ',');
    a->any = true;
}

static void arr_i64(pgarr *a, int64_t v)
{
    arr_sep(a);
    buf_printf(&a->b, "%lld", (long long)v);
}

/* A quoted element; NULL writes NULL. */
static void arr_str(pgarr *a, const char *s)
{
    arr_sep(a);
    if (!s) {
        buf_puts(&a->b, "NULL");
        return;
    }
    buf_putc(&a->b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_putc(&a->b, '\\');
        buf_putc(&a->b, *s);
    }
    buf_putc(&a->b, '"');
}

static void arr_null(pgarr *a)
{
    arr_sep(a);
    buf_puts(&a->b, "NULL");
}

/* Closes the literal and hands it to the arena (the buf is freed with it). */
static const char *arr_done(http_req *rq, pgarr *a)
{
    buf_putc(&a->b, '}');
    char *s = arena_strndup(rq->pool, a->b.data, a->b.len);
    buf_free(&a->b);
    return s;
}

/* Checks the lease exists and is the caller's; fills a 4xx otherwise. */
static bool lease_owned(http_req *rq, http_resp *rs, const char *lease_id, bool *ended,
                        bool *expired)
{
    const char *p[] = {lease_id};
    PGresult *r = db_exec(rq->db, rq->pool, &Q_LEASE_GET, 1, p);
    if (!r) {
        http_db_error(rs, rq->db);
        return false;
    }
    if (PQntuples(r) != 1) {
        http_error(rs, 404, "unknown_lease", "no such lease", "lease_id");
        return false;
    }
    if (col_i64(r, 0, 0) != rq->auth.agent_id) {
        http_error(rs, 403, "foreign_lease", "this lease belongs to another agent", "lease_id");
        return false;
    }
    *ended = PQgetvalue(r, 0, 1)[0] == 't';
    *expired = PQgetvalue(r, 0, 2)[0] == 't';
    return true;
}

/* Parses {"lease_id": "<uuid>"} bodies (heartbeat, release). */
static const char *lease_id_body(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"lease_id", NULL};
    yajl_val b = http_json_body(rq, rs);
    const char *id = NULL;
    if (!b || !v_known_fields(rs, b, fields, "") ||
        !v_str(rs, b, "lease_id", "lease_id", V_REQUIRED, 36, false, &id))
        return NULL;
    if (!valid_uuid(id)) {
        http_error(rs, 400, "invalid_field", "'lease_id' must be a lease id (UUID)", "lease_id");
        return NULL;
    }
    return id;
}

/* ---- lease ---------------------------------------------------------------------- */

typedef struct tmpl {
    const char *subject, *body;
} tmpl;

/* Replaces {from} {to} {weekday} {topic} in src. */
static const char *render(http_req *rq, const char *src, const char *from, const char *to,
                          const char *weekday, const char *topic)
{
    buf o = BUF_INIT;
    const char *keys[] = {"{from}", "{to}", "{weekday}", "{topic}"};
    const char *vals[] = {from, to, weekday, topic};
    for (const char *s = src; *s;) {
        bool hit = false;
        for (int k = 0; k < 4 && *s == '{'; k++) {
            size_t n = strlen(keys[k]);
            if (!strncmp(s, keys[k], n)) {
                buf_puts(&o, vals[k]);
                s += n;
                hit = true;
                break;
            }
        }
        if (!hit)
            buf_putc(&o, *s++);
    }
    char *out = arena_strndup(rq->pool, o.data ? o.data : "", o.len);
    buf_free(&o);
    return out;
}

/* A first name for greetings: the display name's first word, else the local part. */
static const char *first_name(http_req *rq, const char *display, const char *address)
{
    const char *s = display && *display ? display : address;
    size_t n = strcspn(s, " @");
    return arena_strndup(rq->pool, s, n ? n : strlen(s));
}

static const char *domain_of(const char *address)
{
    const char *at = strrchr(address, '@');
    return at ? at + 1 : address;
}

enum { TX_OK = 0, TX_FAILED = -1, TX_RETRY = 1 };

static int db_fail(http_req *rq, http_resp *rs)
{
    if (db_last_error(rq->db) == DB_CONFLICT) {
        db_rollback(rq->db);
        return TX_RETRY;
    }
    http_db_error(rs, rq->db);
    db_rollback(rq->db);
    return TX_FAILED;
}

typedef struct granted {
    lease_mailbox m;
    const PGresult *row_src;
    int row;
    const char *day, *weekday;
    int nslots;
    lease_slot *slots;
    int64_t next_at_s;
} granted;

static void write_empty(http_req *rq, http_resp *rs, int64_t retry_after_s, const char *service)
{
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_null(g, "lease_id");
    json_kv_i(g, "ttl_s", rq->app->cfg.lease_ttl_s);
    json_key(g, "mailboxes");
    json_arr_open(g);
    json_arr_close(g);
    json_kv_i(g, "retry_after_s", retry_after_s);
    json_kv_s(g, "service", service);
    json_obj_close(g);
    json_gen_free(g);
}

static void count_duration(http_req *rq, int64_t started_us)
{
    double s = (double)(clock_mono_us() - started_us) / 1e6;
    int b = histogram_bucket(lease_duration_buckets, LEASE_DURATION_BUCKETS, s);
    char label[32];
    if (b < LEASE_DURATION_BUCKETS)
        snprintf(label, sizeof label, "%g", lease_duration_buckets[b]);
    else
        snprintf(label, sizeof label, "+Inf");
    const char *p[] = {label, http_i64(rq, (int64_t)(s * 1e6)), http_i64(rq, random_range(0, 15))};
    if (!db_exec(rq->db, rq->pool, &Q_DURATION, 3, p))
        log_warn("lease duration counter: %s", db_message(rq->db));
}

/* Picked mailboxes that got no slot, with the due time they move to. */
typedef struct due_push {
    int64_t *mb;
    double *due_s; /* epoch seconds; inf = cannot send until something changes */
    int n;
} due_push;

static bool push_due(http_req *rq, const due_push *p)
{
    if (p->n == 0)
        return true;
    pgarr mb, due;
    arr_open(&mb);
    arr_open(&due);
    for (int i = 0; i < p->n; i++) {
        arr_i64(&mb, p->mb[i]);
        arr_sep(&due);
        if (isinf(p->due_s[i]))
            buf_puts(&due.b, p->due_s[i] > 0 ? "Infinity" : "-Infinity");
        else
            buf_printf(&due.b, "%.0f", p->due_s[i]);
    }
    const char *pp[] = {arr_done(rq, &mb), arr_done(rq, &due)};
    return db_exec(rq->db, rq->pool, &Q_PUSH, 2, pp) != NULL;
}

/* What an answer carries of one eligible mailbox besides its slots: its opened secret. */
typedef struct lease_text {
    const char *password; /* NULL when the secret does not open with this key */
    size_t password_len;
    bool left_out; /* cannot be emitted: not planned, put in error */
} lease_text;

/* Opens row's secret into t and says why the row cannot go into an answer (NULL when it
 * can). Legacy rows may hold a secret (or text) that is not UTF-8 without NUL; emitted,
 * it makes the whole answer unreadable to the agent, and every mailbox leased with it,
 * of every tenant, stalls until the lease expires. So the control plane checks what it
 * emits, and one bad mailbox is left out instead. The reason never quotes the value. */
static const char *row_text_problem(http_req *rq, const PGresult *er, int row, lease_text *t)
{
    static const struct {
        int col;
        const char *name;
    } texts[] = {{2, "address"},
                 {3, "display_name"},
                 {4, "smtp.host"},
                 {6, "smtp.security"},
                 {7, "smtp.username"}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (!utf8_valid(PQgetvalue(er, row, texts[i].col),
                        (size_t)PQgetlength(er, row, texts[i].col)))
            return arena_printf(rq->pool,
                                "the stored %s is not valid UTF-8 text without NUL; "
                                "change it, then resume the mailbox",
                                texts[i].name);
    const char *hex = PQgetvalue(er, row, 8);
    size_t hn = strlen(hex) / 2;
    unsigned char *sealed = arena_alloc(rq->pool, hn + 1);
    for (size_t i = 0; i < hn; i++) {
        char two[3] = {hex[2 * i], hex[2 * i + 1], 0};
        sealed[i] = (unsigned char)strtoul(two, NULL, 16);
    }
    buf secret = BUF_INIT;
    t->password = NULL;
    t->password_len = 0;
    if (secret_open(&rq->app->key, sealed, hn, NULL, &secret) != 0) {
        /* Emitted as null: the agent reports auth, which puts the mailbox in error. */
        log_warn("mailbox %lld: SMTP secret does not open with this key",
                 (long long)col_i64(er, row, 0));
        buf_free(&secret);
        return NULL;
    }
    const char *plain = secret.data ? secret.data : "";
    bool text = utf8_valid(plain, secret.len);
    if (text) {
        t->password = arena_strndup(rq->pool, plain, secret.len);
        t->password_len = secret.len;
    }
    if (secret.data)
        memset(secret.data, 0, secret.len);
    buf_free(&secret);
    return text ? NULL
                : "the stored SMTP password is not valid UTF-8 text without NUL; "
                  "set smtp.password again, then resume the mailbox";
}

static int lease_tx(http_req *rq, http_resp *rs, int64_t max_mailboxes, int64_t max_sends,
                    int64_t started_us)
{
    const app_config *cfg = &rq->app->cfg;
    int64_t ttl = cfg->lease_ttl_s;
    if (!db_begin(rq->db))
        return db_fail(rq, rs);
    const char *sp[] = {http_i64(rq, SWEEP_BATCH)};
    const char *seen[] = {http_i64(rq, rq->auth.agent_id)};
    if (!db_exec(rq->db, rq->pool, &Q_SWEEP, 1, sp) || !db_exec(rq->db, rq->pool, &Q_SEEN, 1, seen))
        return db_fail(rq, rs);
    if (random_range(0, 49) == 0 && !db_exec(rq->db, rq->pool, &Q_BUCKET_TRIM, 0, NULL))
        return db_fail(rq, rs);
    PGresult *nowr = db_exec(rq->db, rq->pool, &Q_NOW, 0, NULL);
    if (!nowr || PQntuples(nowr) != 1)
        return db_fail(rq, rs);
    int64_t now_s = col_i64(nowr, 0, 0);
    if (strcmp(PQgetvalue(nowr, 0, 1), "running") != 0) {
        if (!db_commit(rq->db))
            return db_fail(rq, rs);
        write_empty(rq, rs, 60, "stopped");
        return TX_OK;
    }
    const char *pk[] = {http_i64(rq, max_mailboxes), http_i64(rq, ttl)};
    PGresult *pr0 = db_exec(rq->db, rq->pool, &Q_PICK, 2, pk);
    if (!pr0 || PQntuples(pr0) != 1)
        return db_fail(rq, rs);
    const char *ep[] = {PQgetvalue(pr0, 0, 0), http_i64(rq, ttl)};
    PGresult *er = db_exec(rq->db, rq->pool, &Q_DETAILS, 2, ep);
    if (!er)
        return db_fail(rq, rs);
    int nm = PQntuples(er);
    /* Rows picked but not eligible: due_at moves to the exact next due time, and at
     * least a minute on, so a mailbox whose next window is inside the horizon is not
     * picked again on every call until its local day turns. */
    due_push push = {arena_alloc(rq->pool, (size_t)(nm + 1) * sizeof *push.mb),
                     arena_alloc(rq->pool, (size_t)(nm + 1) * sizeof *push.due_s), 0};
    int nelig = 0;
    for (int i = 0; i < nm; i++) {
        if (PQgetvalue(er, i, 23)[0] == 't') {
            nelig++;
            continue;
        }
        double due = strtod(PQgetvalue(er, i, 22), NULL);
        push.mb[push.n] = col_i64(er, i, 0);
        push.due_s[push.n++] = due > (double)(now_s + 60) ? due : (double)(now_s + 60);
    }
    if (nelig == 0) {
        if (!push_due(rq, &push) || !db_commit(rq->db))
            return db_fail(rq, rs);
        count_duration(rq, started_us);
        write_empty(rq, rs, nm > 0 ? 1 : 30, "running");
        return TX_OK;
    }
    nm = nelig; /* eligible rows sort first */

    /* What the answer will carry of each mailbox is opened and checked before anything
     * is planned: a row that cannot be emitted gets no slot, goes to error with the
     * reason in last_error and out of the pool (due_at infinity, until a resume). */
    lease_text *texts = arena_calloc(rq->pool, (size_t)nm * sizeof *texts);
    pgarr bad_ids, bad_why;
    arr_open(&bad_ids);
    arr_open(&bad_why);
    int nbad = 0;
    for (int i = 0; i < nm; i++) {
        const char *why = row_text_problem(rq, er, i, &texts[i]);
        if (!why)
            continue;
        int64_t id = col_i64(er, i, 0);
        log_warn("mailbox %lld left out of the lease and put in error: %s", (long long)id, why);
        texts[i].left_out = true;
        arr_i64(&bad_ids, id);
        arr_str(&bad_why, why);
        push.mb[push.n] = id;
        push.due_s[push.n++] = INFINITY;
        nbad++;
    }
    const char *bad_p[] = {arr_done(rq, &bad_ids), arr_done(rq, &bad_why)};
    if (nbad > 0 && !db_exec(rq->db, rq->pool, &Q_TEXT_ERROR, 2, bad_p))
        return db_fail(rq, rs);

    /* Senders and their users, for the pair history and the per-user buckets. */
    pgarr senders, users;
    arr_open(&senders);
    arr_open(&users);
    for (int i = 0; i < nm; i++) {
        if (texts[i].left_out)
            continue;
        arr_i64(&senders, col_i64(er, i, 0));
        arr_i64(&users, col_i64(er, i, 1));
    }
    const char *senders_s = arr_done(rq, &senders), *users_s = arr_done(rq, &users);

    /* Pair history (the senders are locked by this transaction, so nobody adds to it),
     * recipient candidates and content: read before the cap lock, in parallel with
     * other leasers. Twice the slots is enough spread (each candidate takes several
     * inbound per day). */
    const char *pp[] = {senders_s, http_i64(rq, cfg->pair_gap_days)};
    PGresult *pr = cfg->pair_gap_days > 0 ? db_exec(rq->db, rq->pool, &Q_PAIRS, 2, pp) : NULL;
    int64_t ncand_want = max_sends * 2 < 200 ? 200 : max_sends * 2;
    if (ncand_want > 20000)
        ncand_want = 20000;
    const char *cp[] = {http_i64(rq, ncand_want)};
    PGresult *cr = db_exec(rq->db, rq->pool, &Q_CANDIDATES, 1, cp);
    PGresult *tr = db_exec(rq->db, rq->pool, &Q_TEMPLATES, 0, NULL);
    PGresult *topr = db_exec(rq->db, rq->pool, &Q_TOPICS, 0, NULL);
    if ((cfg->pair_gap_days > 0 && !pr) || !cr || !tr || !topr)
        return db_fail(rq, rs);
    size_t ncand = (size_t)PQntuples(cr);
    if ((int64_t)ncand > ncand_want)
        ncand = (size_t)ncand_want;
    lease_candidate *cands = arena_calloc(rq->pool, (ncand + 1) * sizeof *cands);
    /* A recipient's address and display name go into other mailboxes' slots (to,
     * greetings): one that cannot be emitted is never picked (treated as full). */
    bool *cand_unusable = arena_calloc(rq->pool, ncand + 1);
    pgarr cand_ids, cand_days;
    arr_open(&cand_ids);
    arr_open(&cand_days);
    for (size_t i = 0; i < ncand; i++) {
        cands[i].id = col_i64(cr, (int)i, 0);
        cands[i].user_id = col_i64(cr, (int)i, 1);
        cands[i].domain = PQgetvalue(cr, (int)i, 2);
        for (int c = 3; c <= 4; c++)
            if (!utf8_valid(PQgetvalue(cr, (int)i, c), (size_t)PQgetlength(cr, (int)i, c)))
                cand_unusable[i] = true;
        arr_i64(&cand_ids, cands[i].id);
        arr_str(&cand_days, PQgetvalue(cr, (int)i, 5));
    }

    /* From here to commit, leasers go one at a time: the cap buckets and the
     * recipients' inbound counts are read, planned against and written as one step. */
    if (!db_exec(rq->db, rq->pool, &Q_CAP_LOCK, 0, NULL))
        return db_fail(rq, rs);
    const char *bp[] = {users_s, http_i64(rq, ttl + 3600)};
    PGresult *br = db_exec(rq->db, rq->pool, &Q_BUCKETS, 2, bp);
    const char *ip[] = {arr_done(rq, &cand_ids), arr_done(rq, &cand_days)};
    PGresult *ir = db_exec(rq->db, rq->pool, &Q_INBOUND, 2, ip);
    if (!br || !ir || (size_t)PQntuples(ir) < ncand)
        return db_fail(rq, rs);
    for (size_t i = 0; i < ncand; i++)
        cands[i].received = cand_unusable[i] ? cfg->recipient_daily_cap : col_i64(ir, (int)i, 0);
    lease_limits lim = {
        .now_s = now_s,
        .horizon_end_s = now_s + ttl,
        .global_minute_cap = cfg->global_minute_cap,
        .global_hour_cap = cfg->global_hourly_cap,
        .recipient_daily_cap = cfg->recipient_daily_cap,
        .pair_check = cfg->pair_gap_days > 0,
    };
    size_t npairs = pr ? (size_t)PQntuples(pr) : 0;
    lease_plan *plan = lease_plan_new(rq->pool, &lim, (size_t)PQntuples(br) + 4 * max_sends + 64,
                                      npairs + (size_t)max_sends, cands, ncand);
    for (int i = 0; i < PQntuples(br); i++)
        lease_plan_load_bucket(plan, col_i64(br, i, 0), col_i64(br, i, 1), col_i64(br, i, 2),
                               col_i64(br, i, 3));
    for (size_t i = 0; i < npairs; i++)
        lease_plan_load_pair(plan, col_i64(pr, (int)i, 0), col_i64(pr, (int)i, 1));

    granted *gs = arena_calloc(rq->pool, (size_t)nm * sizeof *gs);
    int ng = 0;
    int64_t total = 0, wake_min = 0;
    for (int i = 0; i < nm && total < max_sends; i++) {
        if (texts[i].left_out)
            continue;
        granted *g = &gs[ng];
        lease_mailbox *m = &g->m;
        m->id = col_i64(er, i, 0);
        m->user_id = col_i64(er, i, 1);
        m->domain = domain_of(PQgetvalue(er, i, 2));
        m->target = col_i64(er, i, 10);
        m->done = col_i64(er, i, 11);
        m->window_start_s = col_i64(er, i, 12);
        m->window_end_s = col_i64(er, i, 13);
        m->next_at_s = col_i64(er, i, 14);
        m->last_send_s = col_i64(er, i, 15);
        m->cooldown_min_s = col_i64(er, i, 16);
        m->cooldown_max_s = col_i64(er, i, 17);
        m->user_minute_cap = col_i64(er, i, 18);
        m->user_hour_cap = col_i64(er, i, 19);
        m->triggered = PQgetvalue(er, i, 20)[0] == 't';
        g->row = i;
        g->day = PQgetvalue(er, i, 9);
        g->weekday = PQgetvalue(er, i, 21);
        int room = (int)(max_sends - total);
        g->slots =
            arena_alloc(rq->pool, (size_t)(m->target - m->done > 0 ? m->target - m->done : 1) *
                                      sizeof *g->slots);
        if (room > m->target - m->done)
            room = (int)(m->target - m->done);
        int64_t wake = 0;
        g->nslots = lease_plan_mailbox(plan, m, room, g->slots, &g->next_at_s, &wake);
        if (wake > 0 && (wake_min == 0 || wake < wake_min))
            wake_min = wake;
        if (g->nslots > 0) {
            total += g->nslots;
            ng++;
        } else {
            /* Eligible but nothing fits (caps, recipients): ask again at the planner's
             * hint, or in a minute. */
            push.mb[push.n] = m->id;
            push.due_s[push.n++] = (double)(wake > now_s ? wake : now_s + 60);
        }
    }
    if (!push_due(rq, &push))
        return db_fail(rq, rs);
    if (total == 0) {
        /* Locked rows are let go by the commit; nothing was written. */
        if (!db_commit(rq->db))
            return db_fail(rq, rs);
        count_duration(rq, started_us);
        int64_t retry = wake_min > now_s ? wake_min - now_s : 30;
        write_empty(rq, rs, retry < 1 ? 1 : retry > 300 ? 300 : retry, "running");
        return TX_OK;
    }

    const char *lp[] = {http_i64(rq, rq->auth.agent_id), http_i64(rq, ttl), http_i64(rq, total)};
    PGresult *lr = db_exec(rq->db, rq->pool, &Q_NEW_LEASE, 3, lp);
    if (!lr || PQntuples(lr) != total)
        return db_fail(rq, rs);
    const char *lease_id = PQgetvalue(lr, 0, 0);

    /* Message ids per slot, then the batched write; subjects and bodies are only in
     * the answer, so they are rendered after the commit, outside the cap lock. */
    const char **mids = arena_alloc(rq->pool, (size_t)total * sizeof *mids);
    pgarr a_id, a_mb, a_rc, a_day, a_at, a_mid, a_mlmb, a_mln, a_mlnx;
    pgarr *all[] = {&a_id, &a_mb, &a_rc, &a_day, &a_at, &a_mid, &a_mlmb, &a_mln, &a_mlnx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        arr_open(all[i]);
    int k = 0;
    for (int gi = 0; gi < ng; gi++) {
        granted *g = &gs[gi];
        for (int s = 0; s < g->nslots; s++, k++) {
            int64_t send_id = col_i64(lr, k, 1);
            const lease_candidate *c = &cands[g->slots[s].candidate];
            unsigned char rnd[8];
            char hex[17];
            random_bytes(rnd, sizeof rnd);
            hex_encode(rnd, sizeof rnd, hex);
            mids[k] = arena_printf(rq->pool, "<%lld.%s@%s>", (long long)send_id, hex, g->m.domain);
            arr_i64(&a_id, send_id);
            arr_i64(&a_mb, g->m.id);
            arr_i64(&a_rc, c->id);
            arr_str(&a_day, g->day);
            arr_i64(&a_at, g->slots[s].at_s);
            arr_str(&a_mid, mids[k]);
        }
        arr_i64(&a_mlmb, g->m.id);
        arr_i64(&a_mln, g->nslots);
        arr_i64(&a_mlnx, g->next_at_s);
    }
    pgarr a_rmb, a_rday, a_rn;
    arr_open(&a_rmb);
    arr_open(&a_rday);
    arr_open(&a_rn);
    for (size_t i = 0; i < ncand; i++) {
        if (cands[i].assigned == 0)
            continue;
        arr_i64(&a_rmb, cands[i].id);
        arr_str(&a_rday, PQgetvalue(cr, (int)i, 5));
        arr_i64(&a_rn, cands[i].assigned);
    }
    size_t maxd = (size_t)total * 4 + 4;
    lease_bucket_delta *deltas = arena_alloc(rq->pool, maxd * sizeof *deltas);
    size_t nd = lease_plan_deltas(plan, deltas, maxd);
    pgarr a_bu, a_bw, a_ba, a_bn;
    arr_open(&a_bu);
    arr_open(&a_bw);
    arr_open(&a_ba);
    arr_open(&a_bn);
    for (size_t i = 0; i < nd; i++) {
        arr_i64(&a_bu, deltas[i].user_id);
        arr_i64(&a_bw, deltas[i].width_s);
        arr_i64(&a_ba, deltas[i].at_s);
        arr_i64(&a_bn, deltas[i].n);
    }
    const char *gp[] = {lease_id,
                        arr_done(rq, &a_id),
                        arr_done(rq, &a_mb),
                        arr_done(rq, &a_rc),
                        arr_done(rq, &a_day),
                        arr_done(rq, &a_at),
                        arr_done(rq, &a_mid),
                        arr_done(rq, &a_mlmb),
                        arr_done(rq, &a_mln),
                        arr_done(rq, &a_mlnx),
                        arr_done(rq, &a_rmb),
                        arr_done(rq, &a_rday),
                        arr_done(rq, &a_rn),
                        arr_done(rq, &a_bu),
                        arr_done(rq, &a_bw),
                        arr_done(rq, &a_ba),
                        arr_done(rq, &a_bn)};
    if (!db_exec(rq->db, rq->pool, &Q_GRANT, 17, gp))
        return db_fail(rq, rs);
    count_duration(rq, started_us);
    if (!db_commit(rq->db))
        return db_fail(rq, rs);

    int nt = PQntuples(tr), ntop = PQntuples(topr);
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "lease_id", lease_id);
    json_kv_i(g, "ttl_s", ttl);
    json_key(g, "mailboxes");
    json_arr_open(g);
    k = 0;
    for (int gi = 0; gi < ng; gi++) {
        const granted *gr = &gs[gi];
        int row = gr->row;
        const lease_text *text = &texts[row];
        json_obj_open(g);
        json_kv_i(g, "id", gr->m.id);
        json_kv_s(g, "address", PQgetvalue(er, row, 2));
        json_kv_s(g, "display_name", PQgetvalue(er, row, 3));
        json_key(g, "smtp");
        json_obj_open(g);
        json_kv_s(g, "host", PQgetvalue(er, row, 4));
        json_kv_i(g, "port", col_i64(er, row, 5));
        json_kv_s(g, "security", PQgetvalue(er, row, 6));
        json_kv_s(g, "username", PQgetvalue(er, row, 7));
        json_key(g, "password");
        if (text->password)
            json_str_n(g, text->password, text->password_len);
        else
            json_null(g);
        json_kv_null(g, "oauth_token");
        json_kv_null(g, "ca_file");
        json_kv_b(g, "allow_plaintext_auth", PQgetvalue(er, row, 24)[0] == 't');
        json_obj_close(g);
        json_key(g, "sends");
        json_arr_open(g);
        const char *from = first_name(rq, PQgetvalue(er, row, 3), PQgetvalue(er, row, 2));
        for (int s = 0; s < gr->nslots; s++, k++) {
            const lease_slot *sl = &gr->slots[s];
            int ci = sl->candidate;
            const char *to = first_name(rq, PQgetvalue(cr, ci, 4), PQgetvalue(cr, ci, 3));
            const char *topic = ntop ? PQgetvalue(topr, (int)random_range(0, ntop - 1), 0) : "";
            int ti = nt ? (int)random_range(0, nt - 1) : -1;
            const char *subj =
                ti >= 0 ? render(rq, PQgetvalue(tr, ti, 0), from, to, gr->weekday, topic) : "Hello";
            const char *body =
                ti >= 0 ? render(rq, PQgetvalue(tr, ti, 1), from, to, gr->weekday, topic) : "Hello";
            json_obj_open(g);
            json_kv_i(g, "id", col_i64(lr, k, 1));
            json_kv_i(g, "not_before_s", sl->at_s > now_s ? sl->at_s - now_s : 0);
            json_kv_s(g, "to", PQgetvalue(cr, sl->candidate, 3));
            json_kv_s(g, "subject", subj);
            json_kv_s(g, "body", body);
            json_kv_s(g, "message_id", mids[k]);
            json_obj_close(g);
        }
        json_arr_close(g);
        json_obj_close(g);
    }
    json_arr_close(g);
    json_kv_s(g, "service", "running");
    json_obj_close(g);
    json_gen_free(g);
    return TX_OK;
}

void h_agent_lease(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"agent", "max_mailboxes", "max_sends", NULL};
    int64_t started_us = clock_mono_us();
    yajl_val b = http_json_body(rq, rs);
    const char *agent = NULL;
    int64_t max_mailboxes = 200, max_sends = 2000;
    if (!b || !v_known_fields(rs, b, fields, "") ||
        !v_str(rs, b, "agent", "agent", 0, 100, false, &agent) ||
        !v_int(rs, b, "max_mailboxes", "max_mailboxes", 0, 1, MAX_LEASE_MAILBOXES,
               &max_mailboxes) ||
        !v_int(rs, b, "max_sends", "max_sends", 0, 1, MAX_LEASE_SENDS, &max_sends))
        return;
    for (int attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
        http_resp_free(rs);
        http_resp_init(rs);
        if (lease_tx(rq, rs, max_mailboxes, max_sends, started_us) != TX_RETRY)
            return;
    }
    http_error(rs, 503, "busy", "lease conflicted with concurrent work; retry", NULL);
}

/* ---- report --------------------------------------------------------------------- */

static const char *const REPORT_STATUSES[] = {"sent", "deferred", "failed", "auth",
                                              "tls",  "unknown",  NULL};

typedef struct result_in {
    int64_t send_id;
    const char *status;
    int64_t smtp_code, latency_ms;
    bool has_code, has_latency;
    const char *enhanced, *detail;
    bool dup_in_batch;
} result_in;

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

static bool parse_results(http_req *rq, http_resp *rs, yajl_val arr, result_in **out, int *n)
{
    static const char *const fields[] = {"send_id", "status",     "smtp_code", "enhanced_code",
                                         "detail",  "latency_ms", NULL};
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
    result_in *res = arena_calloc(rq->pool, len * sizeof *res);
    for (size_t i = 0; i < len; i++) {
        yajl_val o = arr->u.array.values[i];
        const char *pre = arena_printf(rq->pool, "results[%zu].", i);
        if (!YAJL_IS_OBJECT(o)) {
            http_error(rs, 400, "invalid_field", "each result must be an object",
                       arena_printf(rq->pool, "results[%zu]", i));
            return false;
        }
        result_in *r = &res[i];
        if (!v_known_fields(rs, o, fields, pre) ||
            !v_int(rs, o, "send_id", arena_printf(rq->pool, "%ssend_id", pre), V_REQUIRED, 1,
                   INT64_MAX, &r->send_id) ||
            !v_enum(rs, o, "status", arena_printf(rq->pool, "%sstatus", pre), V_REQUIRED,
                    REPORT_STATUSES, &r->status) ||
            !opt_int(rs, o, "smtp_code", arena_printf(rq->pool, "%ssmtp_code", pre), 0, 999,
                     &r->smtp_code, &r->has_code) ||
            !opt_str(rs, o, "enhanced_code", arena_printf(rq->pool, "%senhanced_code", pre), 32,
                     &r->enhanced) ||
            !opt_str(rs, o, "detail", arena_printf(rq->pool, "%sdetail", pre), 1000, &r->detail) ||
            !opt_int(rs, o, "latency_ms", arena_printf(rq->pool, "%slatency_ms", pre), 0, 86400000,
                     &r->latency_ms, &r->has_latency))
            return false;
        for (size_t j = 0; j < i; j++)
            if (res[j].send_id == r->send_id)
                r->dup_in_batch = true;
    }
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

static int report_tx(http_req *rq, http_resp *rs, const char *lease_id, result_in *res, int n)
{
    latency_labels labels;
    latency_labels_init(&labels);
    pgarr ids, st, code, enh, det, lat, lb;
    pgarr *all[] = {&ids, &st, &code, &enh, &det, &lat, &lb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        arr_open(all[i]);
    pgarr fence;
    arr_open(&fence);
    for (int i = 0; i < n; i++) {
        arr_i64(&fence, res[i].send_id);
        if (res[i].dup_in_batch)
            continue;
        arr_i64(&ids, res[i].send_id);
        arr_str(&st, res[i].status);
        if (res[i].has_code)
            arr_i64(&code, res[i].smtp_code);
        else
            arr_null(&code);
        arr_str(&enh, res[i].enhanced);
        arr_str(&det, res[i].detail);
        if (res[i].has_latency) {
            arr_i64(&lat, res[i].latency_ms);
            arr_str(&lb, latency_label(&labels, res[i].latency_ms));
        } else {
            arr_null(&lat);
            arr_null(&lb);
        }
    }
    const char *fence_s = arr_done(rq, &fence);
    const char *ids_s = arr_done(rq, &ids), *st_s = arr_done(rq, &st),
               *code_s = arr_done(rq, &code), *enh_s = arr_done(rq, &enh),
               *det_s = arr_done(rq, &det), *lat_s = arr_done(rq, &lat), *lb_s = arr_done(rq, &lb);
    if (!db_begin(rq->db))
        return db_fail(rq, rs);
    const char *fp[] = {lease_id, fence_s};
    PGresult *fr = db_exec(rq->db, rq->pool, &Q_REPORT_FENCE, 2, fp);
    if (!fr)
        return db_fail(rq, rs);
    for (int i = 0; i < PQntuples(fr) && i < n; i++) {
        if (PQgetvalue(fr, i, 1)[0] != 't') {
            db_rollback(rq->db);
            char msg[160];
            snprintf(msg, sizeof msg, "send %lld is not part of this lease; nothing was applied",
                     (long long)res[i].send_id);
            http_error(rs, 404, "unknown_send", msg,
                       arena_printf(rq->pool, "results[%d].send_id", i));
            return TX_FAILED;
        }
    }
    const char *ap[] = {lease_id, ids_s, st_s,  code_s,
                        enh_s,    det_s, lat_s, http_i64(rq, random_range(0, 15)),
                        lb_s};
    PGresult *ar = db_exec(rq->db, rq->pool, &Q_REPORT_APPLY, 9, ap);
    if (!ar)
        return db_fail(rq, rs);
    if (PQntuples(ar) > 0 && strcmp(PQgetvalue(ar, 0, 1), "{}") != 0) {
        const char *fp2[] = {PQgetvalue(ar, 0, 1)};
        if (!db_exec(rq->db, rq->pool, &Q_REFRESH, 1, fp2))
            return db_fail(rq, rs);
    }
    if (!db_commit(rq->db))
        return db_fail(rq, rs);
    int applied = PQntuples(ar);
    int64_t *applied_ids = arena_alloc(rq->pool, (size_t)(applied + 1) * sizeof *applied_ids);
    for (int i = 0; i < applied; i++)
        applied_ids[i] = col_i64(ar, i, 0);
    if (applied > 1)
        qsort(applied_ids, (size_t)applied, sizeof *applied_ids, cmp_i64);
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "lease_id", lease_id);
    json_kv_i(g, "applied", applied);
    json_kv_i(g, "duplicates", n - applied);
    json_kv_i(g, "rejected", 0);
    json_key(g, "results");
    json_arr_open(g);
    for (int i = 0; i < n; i++) {
        bool was_applied =
            !res[i].dup_in_batch && applied > 0 &&
            bsearch(&res[i].send_id, applied_ids, (size_t)applied, sizeof *applied_ids, cmp_i64);
        json_obj_open(g);
        json_kv_i(g, "send_id", res[i].send_id);
        json_kv_s(g, "outcome", was_applied ? "applied" : "duplicate");
        json_obj_close(g);
    }
    json_arr_close(g);
    json_obj_close(g);
    json_gen_free(g);
    return TX_OK;
}

void h_agent_report(http_req *rq, http_resp *rs)
{
    static const char *const fields[] = {"lease_id", "results", NULL};
    yajl_val b = http_json_body(rq, rs);
    const char *lease_id = NULL;
    if (!b || !v_known_fields(rs, b, fields, "") ||
        !v_str(rs, b, "lease_id", "lease_id", V_REQUIRED, 36, false, &lease_id))
        return;
    if (!valid_uuid(lease_id)) {
        http_error(rs, 400, "invalid_field", "'lease_id' must be a lease id (UUID)", "lease_id");
        return;
    }
    result_in *res = NULL;
    int n = 0;
    if (!parse_results(rq, rs, json_get(b, "results"), &res, &n))
        return;
    bool ended, expired;
    if (!lease_owned(rq, rs, lease_id, &ended, &expired))
        return;
    for (int attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
        http_resp_free(rs);
        http_resp_init(rs);
        if (report_tx(rq, rs, lease_id, res, n) != TX_RETRY)
            return;
    }
    http_error(rs, 503, "busy", "report conflicted with concurrent work; retry", NULL);
}

/* ---- heartbeat and release ------------------------------------------------------ */

void h_agent_heartbeat(http_req *rq, http_resp *rs)
{
    const char *lease_id = lease_id_body(rq, rs);
    bool ended, expired;
    if (!lease_id || !lease_owned(rq, rs, lease_id, &ended, &expired))
        return;
    if (!db_begin(rq->db)) {
        http_db_error(rs, rq->db);
        return;
    }
    const char *sp[] = {http_i64(rq, SWEEP_BATCH)};
    const char *seen[] = {http_i64(rq, rq->auth.agent_id)};
    const char *lp[] = {lease_id};
    PGresult *rr = NULL, *cr = NULL, *nowr = NULL;
    if (!db_exec(rq->db, rq->pool, &Q_SWEEP, 1, sp) ||
        !db_exec(rq->db, rq->pool, &Q_SEEN, 1, seen) ||
        !(rr = db_exec(rq->db, rq->pool, &Q_RENEW, 1, lp)) ||
        !(nowr = db_exec(rq->db, rq->pool, &Q_NOW, 0, NULL)))
        goto db_failed;
    if (PQntuples(rr) != 1) {
        /* The sweep above may just have ended it: an expired lease is not revived. */
        if (!db_commit(rq->db))
            goto db_failed;
        http_error(rs, 409, expired ? "lease_expired" : "lease_ended",
                   expired ? "the lease expired; its unsent slots went back to the pool"
                           : "the lease was released or expired",
                   "lease_id");
        return;
    }
    if (!(cr = db_exec(rq->db, rq->pool, &Q_TO_CANCEL, 1, lp)))
        goto db_failed;
    pgarr ids;
    arr_open(&ids);
    for (int i = 0; i < PQntuples(cr); i++)
        arr_i64(&ids, col_i64(cr, i, 0));
    const char *fp[] = {arr_done(rq, &ids)};
    if (PQntuples(cr) > 0 && !db_exec(rq->db, rq->pool, &Q_FINISH, 1, fp))
        goto db_failed;
    if (!db_commit(rq->db))
        goto db_failed;
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "lease_id", lease_id);
    json_kv_s(g, "expires_at", PQgetvalue(rr, 0, 0));
    json_kv_i(g, "ttl_s", col_i64(rr, 0, 1));
    json_key(g, "cancel");
    json_arr_open(g);
    for (int i = 0; i < PQntuples(cr); i++)
        json_i(g, col_i64(cr, i, 0));
    json_arr_close(g);
    json_kv_s(g, "service", PQgetvalue(nowr, 0, 1));
    json_obj_close(g);
    json_gen_free(g);
    return;
db_failed:
    http_db_error(rs, rq->db);
    db_rollback(rq->db);
}

void h_agent_release(http_req *rq, http_resp *rs)
{
    const char *lease_id = lease_id_body(rq, rs);
    bool ended, expired;
    if (!lease_id || !lease_owned(rq, rs, lease_id, &ended, &expired))
        return;
    int64_t released = 0;
    if (!ended) {
        const char *lp[] = {lease_id};
        PGresult *r = NULL;
        if (!db_begin(rq->db) || !(r = db_exec(rq->db, rq->pool, &Q_RELEASE, 1, lp)) ||
            !db_commit(rq->db)) {
            http_db_error(rs, rq->db);
            db_rollback(rq->db);
            return;
        }
        released = col_i64(r, 0, 0);
    }
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "lease_id", lease_id);
    json_kv_i(g, "released", released);
    json_kv_b(g, "already_ended", ended);
    json_obj_close(g);
    json_gen_free(g);
}
