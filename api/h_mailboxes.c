/* Mailboxes: registration with field-level validation, the SMTP secret sealed with
 * AES-256-GCM (never returned), the plan's mailbox cap, tenant isolation (another
 * tenant's mailbox is a 404), pause/resume and soft deletion (history is kept). */
#include "app.h"
#include "config.h"
#include "codec.h"
#include "handlers.h"
#include "pgjson.h"
#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MB_COLS                                                                                    \
    "m.id, m.user_id, m.address, m.display_name, m.smtp_host, m.smtp_port, "                       \
    "m.smtp_security::text, m.smtp_username, m.timezone, m.window_start_hour, "                    \
    "m.window_end_hour, m.daily_target, m.state::text, m.last_error, "                             \
    "kiln_iso(m.last_error_at), m.warmup_start::text, kiln_iso(m.created_at), "                    \
    "kiln_iso(m.updated_at), m.smtp_allow_plaintext_auth"

/* The plan cap: creates for one user go one at a time behind the user's row lock, and
 * the count is a statement of its own, after the lock. At READ COMMITTED each statement
 * takes a fresh snapshot, so it sees every mailbox committed by the creates that held the
 * lock before; a count in the locking statement would use a snapshot from before the
 * wait and let parallel creates past the cap. */
static const db_stmt Q_MB_LOCK_USER = {
    "mb_lock_user",
    "SELECT u.id, p.max_mailboxes, u.timezone, "
    "(kiln_now() AT TIME ZONE coalesce($2, u.timezone))::date::text "
    "FROM users u JOIN plans p ON p.id = u.plan_id WHERE u.id = $1 FOR UPDATE OF u"};
static const db_stmt Q_MB_COUNT_LIVE = {
    "mb_count_live", "SELECT count(*) FROM mailboxes WHERE user_id = $1 AND deleted_at IS NULL"};
static const db_stmt Q_MB_INSERT = {
    "mb_insert",
    "WITH m AS (INSERT INTO mailboxes (user_id, address, display_name, smtp_host, smtp_port, "
    "smtp_security, smtp_username, smtp_secret, timezone, window_start_hour, window_end_hour, "
    "daily_target, warmup_start, smtp_allow_plaintext_auth) VALUES ($1, $2, $3, $4, $5, "
    "$6::smtp_security, $7, $8::bytea, $9, $10, $11, $12, $13::date, $14::bool) RETURNING *) "
    "SELECT " MB_COLS " FROM m"};
static const db_stmt Q_MB_GET = {
    "mb_get", "SELECT " MB_COLS " FROM mailboxes m WHERE m.id = $1 AND m.deleted_at IS NULL "
              "AND ($2::bigint = 0 OR m.user_id = $2)"};
static const db_stmt Q_MB_LIST = {
    "mb_list", "SELECT " MB_COLS " FROM mailboxes m WHERE m.deleted_at IS NULL AND m.id > $1 "
               "AND ($3::bigint = 0 OR m.user_id = $3) AND ($4::bigint = 0 OR m.user_id = $4) "
               "AND ($5::text IS NULL OR m.state::text = $5) ORDER BY m.id LIMIT $2"};
static const db_stmt Q_MB_UPDATE = {
    "mb_update",
    "WITH m AS (UPDATE mailboxes SET address = coalesce($3, address), "
    "display_name = coalesce($4, display_name), smtp_host = coalesce($5, smtp_host), "
    "smtp_port = coalesce($6::int, smtp_port), "
    "smtp_security = coalesce($7::smtp_security, smtp_security), "
    "smtp_username = coalesce($8, smtp_username), "
    "smtp_secret = coalesce($9::bytea, smtp_secret), timezone = coalesce($10, timezone), "
    "window_start_hour = coalesce($11::int, window_start_hour), "
    "window_end_hour = coalesce($12::int, window_end_hour), "
    "daily_target = CASE WHEN $13::bool THEN $14::int ELSE daily_target END, "
    "warmup_start = coalesce($15::date, warmup_start), "
    "smtp_allow_plaintext_auth = coalesce($16::bool, smtp_allow_plaintext_auth), "
    "updated_at = now() "
    "WHERE id = $1 AND deleted_at IS NULL AND ($2::bigint = 0 OR user_id = $2) RETURNING *) "
    "SELECT " MB_COLS " FROM m"};
static const db_stmt Q_MB_DELETE = {
    "mb_delete", "UPDATE mailboxes SET deleted_at = now(), state = 'disabled', updated_at = now() "
                 "WHERE id = $1 AND deleted_at IS NULL AND ($2::bigint = 0 OR user_id = $2) "
                 "RETURNING id"};
static const db_stmt Q_MB_PAUSE = {
    "mb_pause",
    "WITH m AS (UPDATE mailboxes SET state = 'paused', updated_at = now() WHERE id = $1 "
    "AND deleted_at IS NULL AND ($2::bigint = 0 OR user_id = $2) RETURNING *) "
    "SELECT " MB_COLS " FROM m"};
static const db_stmt Q_MB_RESUME = {
    "mb_resume",
    "WITH m AS (UPDATE mailboxes SET state = 'active', last_error = NULL, last_error_at = NULL, "
    "updated_at = now() WHERE id = $1 AND deleted_at IS NULL "
    "AND ($2::bigint = 0 OR user_id = $2) RETURNING *) SELECT " MB_COLS " FROM m"};

static const char *const SECURITY[] = {"starttls", "tls", "plain", NULL};
/* A display name goes into the From and To headers of every message: one line, and short
 * enough that a header stays far below RFC 5322's 998 octets even when encoded. */
#define DISPLAY_NAME_MAX_CHARS 200
/* Fields of a create; a PATCH takes all but the first (user_id). */
static const char *const MAILBOX_CREATE_FIELDS[] = {"user_id",      "address",      "display_name",
                                                    "smtp",         "timezone",     "window",
                                                    "daily_target", "warmup_start", NULL};

/* Writes one mailbox row (MB_COLS order) as the API's nested object. */
static void mailbox_json(yajl_gen g, const PGresult *r, int i)
{
    json_obj_open(g);
    pgjson_members(g, r, i, 0, 4); /* id, user_id, address, display_name */
    json_key(g, "smtp");
    json_obj_open(g);
    json_key(g, "host");
    pgjson_value(g, r, i, 4);
    json_key(g, "port");
    pgjson_value(g, r, i, 5);
    json_key(g, "security");
    pgjson_value(g, r, i, 6);
    json_key(g, "username");
    pgjson_value(g, r, i, 7);
    json_kv_b(g, "password_set", true);
    json_key(g, "allow_plaintext_auth");
    pgjson_value(g, r, i, 18);
    json_obj_close(g);
    json_key(g, "timezone");
    pgjson_value(g, r, i, 8);
    json_key(g, "window");
    json_obj_open(g);
    json_key(g, "start_hour");
    pgjson_value(g, r, i, 9);
    json_key(g, "end_hour");
    pgjson_value(g, r, i, 10);
    json_obj_close(g);
    static const char *const rest[] = {"daily_target", "state",      "last_error", "last_error_at",
                                       "warmup_start", "created_at", "updated_at"};
    for (int c = 11; c < 18; c++) {
        json_key(g, rest[c - 11]);
        pgjson_value(g, r, i, c);
    }
    json_obj_close(g);
}

static void respond_mailbox(http_resp *rs, const PGresult *r, int status)
{
    yajl_gen g = http_json(rs, status);
    mailbox_json(g, r, 0);
    json_gen_free(g);
}

/* The fields a create or patch may carry, validated into one struct. */
typedef struct mailbox_input {
    const char *address, *display_name, *host, *security, *username, *password, *timezone,
        *warmup_start;
    int64_t port, start_hour, end_hour, daily_target;
    bool has_port, has_start, has_end, has_target, target_null;
    bool allow_plaintext_auth, has_plaintext_auth;
} mailbox_input;

/* A real calendar date YYYY-MM-DD between 2000 and 2100 (2026-02-30 is not one). */
static bool valid_date(const char *s)
{
    int64_t y, m, d;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' || !parse_int(s, 4, 2000, 2100, &y) ||
        !parse_int(s + 5, 2, 1, 12, &m) || !parse_int(s + 8, 2, 1, 31, &d))
        return false;
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}

static bool parse_mailbox(http_req *rq, http_resp *rs, yajl_val b, bool create, mailbox_input *in)
{
    static const char *const smtp_fields[] = {
        "host", "port", "security", "username", "password", "allow_plaintext_auth", NULL};
    static const char *const window_fields[] = {"start_hour", "end_hour", NULL};
    int req = create ? V_REQUIRED : 0;
    memset(in, 0, sizeof *in);
    if (!v_known_fields(rs, b, create ? MAILBOX_CREATE_FIELDS : MAILBOX_CREATE_FIELDS + 1, ""))
        return false;
    if (!v_str(rs, b, "address", "address", req, 254, false, &in->address) ||
        !v_line_text(rs, b, "display_name", "display_name", 0, DISPLAY_NAME_MAX_CHARS, true,
                     &in->display_name) ||
        !v_str(rs, b, "timezone", "timezone", 0, 64, false, &in->timezone) ||
        !v_str(rs, b, "warmup_start", "warmup_start", 0, 10, false, &in->warmup_start))
        return false;
    if (in->address && !valid_email(in->address)) {
        http_error(rs, 400, "invalid_field", "address is not a valid e-mail address", "address");
        return false;
    }
    if (in->timezone && !v_timezone(rs, rq->app, in->timezone, "timezone"))
        return false;
    if (in->warmup_start && !valid_date(in->warmup_start)) {
        http_error(rs, 400, "invalid_field", "warmup_start must be a date YYYY-MM-DD",
                   "warmup_start");
        return false;
    }
    yajl_val smtp = json_get(b, "smtp");
    if (!smtp && create) {
        http_error(rs, 400, "missing_field", "'smtp' is required", "smtp");
        return false;
    }
    if (smtp) {
        if (!YAJL_IS_OBJECT(smtp)) {
            http_error(rs, 400, "invalid_field", "'smtp' must be an object", "smtp");
            return false;
        }
        if (!v_known_fields(rs, smtp, smtp_fields, "smtp.") ||
            !v_str(rs, smtp, "host", "smtp.host", req, 253, false, &in->host) ||
            !v_int(rs, smtp, "port", "smtp.port", req, 1, 65535, &in->port) ||
            !v_enum(rs, smtp, "security", "smtp.security", 0, SECURITY, &in->security) ||
            !v_str(rs, smtp, "username", "smtp.username", 0, 254, false, &in->username) ||
            !v_str(rs, smtp, "password", "smtp.password", req, 1024, false, &in->password) ||
            !v_bool(rs, smtp, "allow_plaintext_auth", "smtp.allow_plaintext_auth", 0,
                    &in->allow_plaintext_auth))
            return false;
        in->has_port = json_get(smtp, "port") != NULL;
        in->has_plaintext_auth = json_get(smtp, "allow_plaintext_auth") != NULL;
        if (in->host && !valid_host(in->host)) {
            http_error(rs, 400, "invalid_field", "smtp.host is not a valid host name or address",
                       "smtp.host");
            return false;
        }
    }
    yajl_val win = json_get(b, "window");
    if (win) {
        if (!YAJL_IS_OBJECT(win)) {
            http_error(rs, 400, "invalid_field", "'window' must be an object", "window");
            return false;
        }
        if (!v_known_fields(rs, win, window_fields, "window.") ||
            !v_int(rs, win, "start_hour", "window.start_hour", 0, 0, 23, &in->start_hour) ||
            !v_int(rs, win, "end_hour", "window.end_hour", 0, 1, 24, &in->end_hour))
            return false;
        in->has_start = json_get(win, "start_hour") != NULL;
        in->has_end = json_get(win, "end_hour") != NULL;
        if (in->has_start && in->has_end && in->end_hour <= in->start_hour) {
            http_error(rs, 422, "invalid_field", "window.end_hour must be after start_hour",
                       "window.end_hour");
            return false;
        }
    }
    yajl_val dt = json_get(b, "daily_target");
    if (dt) {
        in->has_target = true;
        if (YAJL_IS_NULL(dt))
            in->target_null = true;
        else if (!v_int(rs, b, "daily_target", "daily_target", 0, 0, 10000, &in->daily_target))
            return false;
    }
    return true;
}

/* Seals the password; returns the bytea hex literal for a parameter. */
static const char *seal_password(http_req *rq, const char *password)
{
    buf sealed = BUF_INIT;
    if (secret_seal(&rq->app->key, password, strlen(password), NULL, &sealed) != 0) {
        buf_free(&sealed);
        return NULL;
    }
    char *hex = arena_alloc(rq->pool, sealed.len * 2 + 3);
    hex[0] = '\\';
    hex[1] = 'x';
    hex_encode((unsigned char *)sealed.data, sealed.len, hex + 2);
    buf_free(&sealed);
    return hex;
}

static void mailbox_write_error(http_req *rq, http_resp *rs)
{
    const db *d = rq->db;
    if (db_last_error(d) == DB_CONSTRAINT && !strcmp(db_sqlstate(d), "23505"))
        http_error(rs, 409, "conflict", "a mailbox with this address is already registered",
                   "address");
    else if (db_last_error(d) == DB_CONSTRAINT && !strcmp(db_constraint(d), "mailboxes_check"))
        http_error(rs, 422, "invalid_field", "window.end_hour must be after start_hour",
                   "window.end_hour");
    else
        http_db_error(rs, d);
}

void h_mailboxes_create(http_req *rq, http_resp *rs)
{
    yajl_val b = http_json_body(rq, rs);
    mailbox_input in;
    int64_t user_id = http_tenant(rq);
    if (!b)
        return;
    /* Unknown fields first, so a body with several problems names the typo. */
    if (!v_known_fields(rs, b, MAILBOX_CREATE_FIELDS, ""))
        return;
    if (user_id == 0) {
        if (!v_int(rs, b, "user_id", "user_id", V_REQUIRED, 1, INT64_MAX, &user_id))
            return;
    } else {
        int64_t given = user_id;
        if (!v_int(rs, b, "user_id", "user_id", 0, 1, INT64_MAX, &given))
            return;
        if (given != user_id) {
            http_error(rs, 404, "not_found", "no such user", "user_id");
            return;
        }
    }
    if (!parse_mailbox(rq, rs, b, true, &in))
        return;
    const char *secret = seal_password(rq, in.password);
    if (!secret) {
        http_error(rs, 500, "internal", "could not encrypt the secret", NULL);
        return;
    }
    if (!db_begin(rq->db)) {
        http_db_error(rs, rq->db);
        return;
    }
    const char *lp[] = {http_i64(rq, user_id), in.timezone};
    PGresult *u = db_exec(rq->db, rq->pool, &Q_MB_LOCK_USER, 2, lp);
    if (!u) {
        http_db_error(rs, rq->db);
        goto fail;
    }
    if (PQntuples(u) == 0) {
        http_error(rs, 422, "invalid_reference", "no user with this id", "user_id");
        goto fail;
    }
    const char *cp[] = {lp[0]};
    PGresult *c = db_exec(rq->db, rq->pool, &Q_MB_COUNT_LIVE, 1, cp);
    if (!c || PQntuples(c) != 1) {
        http_db_error(rs, rq->db);
        goto fail;
    }
    long long cap = strtoll(PQgetvalue(u, 0, 1), NULL, 10);
    long long have = strtoll(PQgetvalue(c, 0, 0), NULL, 10);
    if (have >= cap) {
        char msg[160];
        snprintf(msg, sizeof msg, "the user's plan allows %lld mailboxes and all are in use", cap);
        http_error(rs, 422, "plan_limit", msg, "user_id");
        goto fail;
    }
    const char *p[] = {lp[0],
                       in.address,
                       in.display_name ? in.display_name : "",
                       in.host,
                       http_i64(rq, in.port),
                       in.security ? in.security : "starttls",
                       in.username ? in.username : in.address,
                       secret,
                       in.timezone ? in.timezone : PQgetvalue(u, 0, 2),
                       http_i64(rq, in.has_start ? in.start_hour : 6),
                       http_i64(rq, in.has_end ? in.end_hour : 22),
                       in.has_target && !in.target_null ? http_i64(rq, in.daily_target) : NULL,
                       in.warmup_start ? in.warmup_start : PQgetvalue(u, 0, 3),
                       in.allow_plaintext_auth ? "true" : "false"};
    PGresult *r = db_exec(rq->db, rq->pool, &Q_MB_INSERT, 14, p);
    if (!r) {
        mailbox_write_error(rq, rs);
        goto fail;
    }
    if (!db_commit(rq->db)) {
        http_db_error(rs, rq->db);
        goto fail;
    }
    respond_mailbox(rs, r, 201);
    return;
fail:
    db_rollback(rq->db);
}

void h_mailboxes_list(http_req *rq, http_resp *rs)
{
    static const char *const STATES[] = {"active", "paused", "error", "disabled", NULL};
    int64_t limit, cursor, user = 0;
    if (!v_page(rq, rs, 100, 1000, &limit, &cursor))
        return;
    const char *u = http_query(rq, "user_id"), *state = http_query(rq, "state");
    if (u && !parse_int(u, strlen(u), 1, INT64_MAX, &user)) {
        http_error(rs, 400, "invalid_query", "user_id must be a positive integer", "user_id");
        return;
    }
    if (state) {
        bool ok = false;
        for (const char *const *s = STATES; *s; s++)
            ok |= !strcmp(*s, state);
        if (!ok) {
            http_error(rs, 400, "invalid_query",
                       "state must be one of: active, paused, error, disabled", "state");
            return;
        }
    }
    const char *p[] = {http_i64(rq, cursor), http_i64(rq, limit + 1), http_i64(rq, http_tenant(rq)),
                       http_i64(rq, user), state};
    PGresult *r = http_exec(rq, rs, &Q_MB_LIST, 5, p);
    if (!r)
        return;
    int n = PQntuples(r), shown = n > limit ? (int)limit : n;
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_key(g, "items");
    json_arr_open(g);
    for (int i = 0; i < shown; i++)
        mailbox_json(g, r, i);
    json_arr_close(g);
    json_key(g, "next_cursor");
    if (n > limit)
        json_s(g, PQgetvalue(r, shown - 1, 0));
    else
        json_null(g);
    json_obj_close(g);
    json_gen_free(g);
}

/* Runs a statement keyed by (path id, tenant) that returns MB_COLS; 404 when none. */
static void mailbox_by_id(http_req *rq, http_resp *rs, const db_stmt *st)
{
    int64_t id;
    if (!v_path_id(rq, rs, 0, &id))
        return;
    const char *p[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq))};
    PGresult *r = http_exec(rq, rs, st, 2, p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", "no such mailbox", NULL);
        return;
    }
    respond_mailbox(rs, r, 200);
}

void h_mailboxes_get(http_req *rq, http_resp *rs)
{
    mailbox_by_id(rq, rs, &Q_MB_GET);
}

void h_mailboxes_pause(http_req *rq, http_resp *rs)
{
    mailbox_by_id(rq, rs, &Q_MB_PAUSE);
}

void h_mailboxes_resume(http_req *rq, http_resp *rs)
{
    mailbox_by_id(rq, rs, &Q_MB_RESUME);
}

void h_mailboxes_patch(http_req *rq, http_resp *rs)
{
    int64_t id;
    mailbox_input in;
    if (!v_path_id(rq, rs, 0, &id))
        return;
    yajl_val b = http_json_body(rq, rs);
    if (!b || !parse_mailbox(rq, rs, b, false, &in))
        return;
    const char *secret = NULL;
    if (in.password && !(secret = seal_password(rq, in.password))) {
        http_error(rs, 500, "internal", "could not encrypt the secret", NULL);
        return;
    }
    const char *p[] = {http_i64(rq, id),
                       http_i64(rq, http_tenant(rq)),
                       in.address,
                       in.display_name,
                       in.host,
                       in.has_port ? http_i64(rq, in.port) : NULL,
                       in.security,
                       in.username,
                       secret,
                       in.timezone,
                       in.has_start ? http_i64(rq, in.start_hour) : NULL,
                       in.has_end ? http_i64(rq, in.end_hour) : NULL,
                       in.has_target ? "true" : "false",
                       in.has_target && !in.target_null ? http_i64(rq, in.daily_target) : NULL,
                       in.warmup_start,
                       in.has_plaintext_auth ? (in.allow_plaintext_auth ? "true" : "false") : NULL};
    PGresult *r = db_exec(rq->db, rq->pool, &Q_MB_UPDATE, 16, p);
    if (!r) {
        mailbox_write_error(rq, rs);
        return;
    }
    if (PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", "no such mailbox", NULL);
        return;
    }
    respond_mailbox(rs, r, 200);
}

void h_mailboxes_delete(http_req *rq, http_resp *rs)
{
    int64_t id;
    if (!v_path_id(rq, rs, 0, &id))
        return;
    const char *p[] = {http_i64(rq, id), http_i64(rq, http_tenant(rq))};
    PGresult *r = http_exec(rq, rs, &Q_MB_DELETE, 2, p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        http_error(rs, 404, "not_found", "no such mailbox", NULL);
        return;
    }
    rs->status = 204;
    rs->content_type = NULL;
}
