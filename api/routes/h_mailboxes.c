/* Mailboxes: registration with field-level validation, the SMTP and IMAP secrets sealed
 * with AES-256-GCM (never returned), the plan's mailbox cap, tenant isolation (another
 * tenant's mailbox is a 404), pause/resume and soft deletion (history is kept). */
#include "app.h"
#include "config.h"
#include "routes.h"
#include "pgjson.h"
#include "validate.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reciprocity ledger over the mailbox's last 7 local days (016). */
#define LEDGER_DAY "(kiln_now() AT TIME ZONE m.timezone)::date"
#define LEDGER_COL(member) "(SELECT l." member " FROM kiln_ledger_7d(m.id, " LEDGER_DAY ") l)"
#define LEDGER_COLS LEDGER_COL("sent_7d") ", " LEDGER_COL("received_7d")
#define MB_COLS                                                                                    \
    "m.id, m.user_id, m.address, m.display_name, m.smtp_host, m.smtp_port, "                       \
    "m.smtp_security::text, m.smtp_username, m.timezone, m.window_start_hour, "                    \
    "m.window_end_hour, m.daily_target, m.state::text, m.last_error, "                             \
    "kiln_iso(m.last_error_at), m.warmup_start::text, kiln_iso(m.created_at), "                    \
    "kiln_iso(m.updated_at), m.smtp_allow_plaintext_auth, m.imap_host, m.imap_port, "              \
    "m.imap_security::text, m.imap_username, m.imap_auth::text, m.imap_allow_plaintext_auth, "     \
    "m.inbox::text, m.inbox_error, kiln_iso(m.inbox_error_at), " LEDGER_COLS

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
    "daily_target, warmup_start, smtp_allow_plaintext_auth, imap_host, imap_port, imap_security, "
    "imap_username, imap_auth, imap_secret, imap_allow_plaintext_auth) VALUES ($1, $2, $3, $4, "
    "$5, $6::smtp_security, $7, $8::bytea, $9, $10, $11, $12, $13::date, $14::bool, $15, "
    "$16::int, $17::smtp_security, $18, $19::imap_auth, $20::bytea, $21::bool) RETURNING *) "
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
    /* $17: an imap object was given; $18: "imap": null removes the access. New or changed
     * access is unverified until an agent has logged in with it. */
    "imap_host = CASE WHEN $18::bool THEN NULL ELSE coalesce($19, imap_host) END, "
    "imap_port = CASE WHEN $18::bool THEN NULL ELSE coalesce($20::int, imap_port) END, "
    "imap_security = CASE WHEN $18::bool THEN NULL WHEN $17::bool THEN "
    "coalesce($21::smtp_security, imap_security, 'tls') ELSE imap_security END, "
    "imap_username = CASE WHEN $18::bool THEN NULL WHEN $17::bool THEN "
    "coalesce($22, imap_username, $3, address) ELSE imap_username END, "
    "imap_auth = CASE WHEN $18::bool THEN NULL ELSE coalesce($23::imap_auth, imap_auth) END, "
    "imap_secret = CASE WHEN $18::bool THEN NULL ELSE coalesce($24::bytea, imap_secret) END, "
    "imap_allow_plaintext_auth = CASE WHEN $18::bool THEN false "
    "ELSE coalesce($25::bool, imap_allow_plaintext_auth) END, "
    "inbox = CASE WHEN $17::bool OR $18::bool THEN 'unverified' ELSE inbox END, "
    "inbox_error = CASE WHEN $17::bool OR $18::bool THEN NULL ELSE inbox_error END, "
    "inbox_error_at = CASE WHEN $17::bool OR $18::bool THEN NULL ELSE inbox_error_at END, "
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
/* An OAuth 2.0 access token (XOAUTH2/OAUTHBEARER); Google's and Microsoft's stay far
 * below this. */
#define OAUTH_TOKEN_MAX_BYTES 4096
/* Fields of a create; a PATCH takes all but the first (user_id). */
static const char *const MAILBOX_CREATE_FIELDS[] = {
    "user_id",  "address", "display_name", "smtp",         "imap",
    "timezone", "window",  "daily_target", "warmup_start", NULL};

/* What a mailbox's SMTP or IMAP access object may carry and the dotted names its errors
 * give: one validation (parse_access) and one JSON writer (access_json) serve both. */
typedef struct access_spec {
    const char *name;                                                     /* "smtp" */
    const char *const *members;                                           /* NULL-terminated */
    const char *default_security;                                         /* on a create */
    const char *host, *port, *security, *username, *password, *plaintext; /* "smtp.host"... */
    const char *oauth_token; /* NULL: no token variant */
} access_spec;

static const char *const SMTP_MEMBERS[] = {
    "host", "port", "security", "username", "password", "allow_plaintext_auth", NULL};
static const char *const IMAP_MEMBERS[] = {
    "host", "port", "security", "username", "password", "oauth_token", "allow_plaintext_auth",
    NULL};
/* The dotted field names of access object p ("smtp", "imap"); p is a string literal that
 * adjacent literals extend, so it cannot be parenthesized. */
// NOLINTBEGIN(bugprone-macro-parentheses)
#define ACCESS_FIELDS(p)                                                                           \
    .name = p, .host = p ".host", .port = p ".port", .security = p ".security",                    \
    .username = p ".username", .password = p ".password", .plaintext = p ".allow_plaintext_auth"
// NOLINTEND(bugprone-macro-parentheses)
static const access_spec SMTP_ACCESS = {ACCESS_FIELDS("smtp"), .members = SMTP_MEMBERS,
                                        .default_security = "starttls"};
/* IMAP defaults to implicit TLS (port 993, RFC 8314). */
static const access_spec IMAP_ACCESS = {ACCESS_FIELDS("imap"), .members = IMAP_MEMBERS,
                                        .default_security = "tls",
                                        .oauth_token = "imap.oauth_token"};

/* Writes an access object from the MB_COLS columns host, port, security, username at
 * col..col+3; the secret is never written, only which kind (auth) is set. */
static void access_json(yajl_gen g, const access_spec *spec, const PGresult *r, int i, int col,
                        const char *auth, int plaintext_col)
{
    static const char *const keys[] = {"host", "port", "security", "username"};
    json_obj_open(g);
    for (int k = 0; k < 4; k++) {
        json_key(g, keys[k]);
        pgjson_value(g, r, i, col + k);
    }
    json_kv_b(g, "password_set", !strcmp(auth, "password"));
    if (spec->oauth_token)
        json_kv_b(g, "oauth_token_set", !strcmp(auth, "oauth_token"));
    json_key(g, "allow_plaintext_auth");
    pgjson_value(g, r, i, plaintext_col);
    json_obj_close(g);
}

/* Writes one mailbox row (MB_COLS order) as the API's nested object. */
static void mailbox_json(yajl_gen g, const PGresult *r, int i)
{
    json_obj_open(g);
    pgjson_members(g, r, i, 0, 4); /* id, user_id, address, display_name */
    json_key(g, "smtp");
    access_json(g, &SMTP_ACCESS, r, i, 4, "password", 18);
    json_key(g, "imap");
    if (PQgetisnull(r, i, 19))
        json_null(g);
    else
        access_json(g, &IMAP_ACCESS, r, i, 19, PQgetvalue(r, i, 23), 24);
    json_key(g, "inbox");
    pgjson_value(g, r, i, 25);
    json_key(g, "inbox_error");
    pgjson_value(g, r, i, 26);
    json_key(g, "inbox_error_at");
    pgjson_value(g, r, i, 27);
    json_key(g, "reciprocity");
    json_obj_open(g);
    pgjson_members(g, r, i, 28, 30); /* sent_7d, received_7d */
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

/* One access object of a create or patch, validated. */
typedef struct access_input {
    const char *host, *security, *username, *password, *oauth_token;
    int64_t port;
    bool given, has_port, allow_plaintext_auth, has_plaintext_auth;
} access_input;

/* The fields a create or patch may carry, validated into one struct. */
typedef struct mailbox_input {
    const char *address, *display_name, *timezone, *warmup_start;
    access_input smtp, imap;
    bool imap_removed; /* "imap": null on a patch */
    int64_t start_hour, end_hour, daily_target;
    bool has_start, has_end, has_target, target_null;
} mailbox_input;

/* YYYY-MM-DD in shape: ten characters, digits but the two dashes (the format check). */
static bool date_shaped(const char *s)
{
    if (strlen(s) != 10)
        return false;
    for (int i = 0; i < 10; i++)
        if (i == 4 || i == 7 ? s[i] != '-' : (s[i] < '0' || s[i] > '9'))
            return false;
    return true;
}

/* A real calendar date YYYY-MM-DD between 2000 and 2100 (2026-02-30 is not one). */
static bool valid_date(const char *s)
{
    int64_t y, m, d;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' || !parse_digits(s, 4, 2000, 2100, &y) ||
        !parse_digits(s + 5, 2, 1, 12, &m) || !parse_digits(s + 8, 2, 1, 31, &d))
        return false;
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}

/* RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". It
 * goes into a SASL message between \x01 separators, so nothing else may appear. */
static bool valid_bearer_token(const char *s)
{
    size_t n = strlen(s), i = 0;
    while (i < n && (isalnum((unsigned char)s[i]) || strchr("-._~+/", s[i])))
        i++;
    if (i == 0)
        return false;
    while (i < n && s[i] == '=')
        i++;
    return i == n;
}

/* Validates the access object obj as spec says (host, port and a secret required on a
 * create); on failure fills rs with a 400 naming the field. */
static bool parse_access(http_resp *rs, yajl_val obj, const access_spec *spec, bool create,
                         access_input *a)
{
    int req = create ? V_REQUIRED : 0;
    char text[128];
    a->given = true;
    if (!YAJL_IS_OBJECT(obj)) {
        snprintf(text, sizeof text, "'%s' must be an object", spec->name);
        http_error(rs, 400, "invalid_field", text, spec->name);
        return false;
    }
    snprintf(text, sizeof text, "%s.", spec->name);
    if (!v_known_fields(rs, obj, spec->members, text) ||
        !v_str(rs, obj, "host", spec->host, req, 253, false, &a->host) ||
        !v_int(rs, obj, "port", spec->port, req, 1, 65535, &a->port) ||
        !v_enum(rs, obj, "security", spec->security, 0, SECURITY, &a->security) ||
        !v_str(rs, obj, "username", spec->username, 0, 254, false, &a->username) ||
        !v_str(rs, obj, "password", spec->password, spec->oauth_token ? 0 : req, 1024, false,
               &a->password))
        return false;
    if (spec->oauth_token) {
        if (!v_str(rs, obj, "oauth_token", spec->oauth_token, 0, OAUTH_TOKEN_MAX_BYTES, false,
                   &a->oauth_token))
            return false;
        if (a->oauth_token && !valid_bearer_token(a->oauth_token)) {
            snprintf(text, sizeof text, "'%s' must be an RFC 6750 bearer token", spec->oauth_token);
            http_error(rs, 400, "invalid_field", text, spec->oauth_token);
            return false;
        }
        if (a->password && a->oauth_token) {
            snprintf(text, sizeof text, "give '%s' or '%s', not both", spec->password,
                     spec->oauth_token);
            http_error(rs, 400, "invalid_field", text, spec->oauth_token);
            return false;
        }
        if (create && !a->password && !a->oauth_token) {
            snprintf(text, sizeof text, "'%s' or '%s' is required", spec->password,
                     spec->oauth_token);
            http_error(rs, 400, "missing_field", text, spec->password);
            return false;
        }
    }
    if (!v_bool(rs, obj, "allow_plaintext_auth", spec->plaintext, 0, &a->allow_plaintext_auth))
        return false;
    a->has_port = json_get(obj, "port") != NULL;
    a->has_plaintext_auth = json_get(obj, "allow_plaintext_auth") != NULL;
    if (a->host && !valid_host(a->host)) {
        snprintf(text, sizeof text, "%s is not a valid host name or address", spec->host);
        http_error(rs, 400, "invalid_field", text, spec->host);
        return false;
    }
    return true;
}

static bool parse_mailbox(http_req *rq, http_resp *rs, yajl_val b, bool create, mailbox_input *in)
{
    static const char *const window_fields[] = {"start_hour", "end_hour", NULL};
    memset(in, 0, sizeof *in);
    if (!v_known_fields(rs, b, create ? MAILBOX_CREATE_FIELDS : MAILBOX_CREATE_FIELDS + 1, ""))
        return false;
    if (!v_str(rs, b, "address", "address", create ? V_REQUIRED : 0, 254, false, &in->address) ||
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
    if (in->warmup_start && !date_shaped(in->warmup_start)) {
        http_error(rs, 400, "invalid_field", "warmup_start must be a date YYYY-MM-DD",
                   "warmup_start");
        return false;
    }
    if (in->warmup_start && !valid_date(in->warmup_start)) {
        http_error(rs, 400, "bad_value",
                   "warmup_start is not a calendar date from 2000-01-01 to 2100-12-31",
                   "warmup_start");
        return false;
    }
    yajl_val smtp = json_get(b, "smtp"), imap = json_get(b, "imap");
    if (!smtp && create) {
        http_error(rs, 400, "missing_field", "'smtp' is required", "smtp");
        return false;
    }
    if (smtp && !parse_access(rs, smtp, &SMTP_ACCESS, create, &in->smtp))
        return false;
    /* IMAP is optional; null on a create is no IMAP, on a patch it removes the access. */
    if (imap && YAJL_IS_NULL(imap))
        in->imap_removed = !create;
    else if (imap && !parse_access(rs, imap, &IMAP_ACCESS, create, &in->imap))
        return false;
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

/* The sealed secrets of a create or patch (NULL where none was given). */
typedef struct sealed_secrets {
    const char *smtp, *imap, *imap_auth;
} sealed_secrets;

/* Seals what in carries; false (with a 500 in rs) when sealing fails. */
static bool seal_secrets(http_req *rq, http_resp *rs, const mailbox_input *in, sealed_secrets *s)
{
    memset(s, 0, sizeof *s);
    if (in->smtp.password && !(s->smtp = http_seal_secret(rq, in->smtp.password, NULL)))
        goto fail;
    if (in->imap.password) {
        s->imap_auth = "password";
        s->imap = http_seal_secret(rq, in->imap.password, IMAP_SECRET_AAD_PASSWORD);
    } else if (in->imap.oauth_token) {
        s->imap_auth = "oauth_token";
        s->imap = http_seal_secret(rq, in->imap.oauth_token, IMAP_SECRET_AAD_OAUTH_TOKEN);
    }
    if (s->imap_auth && !s->imap)
        goto fail;
    return true;
fail:
    http_error(rs, 500, "internal", "could not encrypt the secret", NULL);
    return false;
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
    else if (db_last_error(d) == DB_CONSTRAINT &&
             !strcmp(db_constraint(d), "mailboxes_imap_complete"))
        http_error(rs, 422, "invalid_field",
                   "a mailbox without IMAP access needs imap.host, imap.port and imap.password "
                   "or imap.oauth_token",
                   "imap");
    else
        http_db_error(rs, d);
}

/* The seven IMAP parameters (host, port, security, username, secret kind, sealed secret,
 * allow_plaintext_auth) of an insert, or of an update where NULL leaves a column as it is. */
static void imap_params(http_req *rq, const mailbox_input *in, const sealed_secrets *s, bool create,
                        const char **p)
{
    const access_input *a = &in->imap;
    bool fill = create && a->given; /* the defaults of a new access */
    p[0] = a->host;
    p[1] = a->has_port ? http_i64(rq, a->port) : NULL;
    p[2] = a->security ? a->security : fill ? IMAP_ACCESS.default_security : NULL;
    p[3] = a->username ? a->username : fill ? in->address : NULL;
    p[4] = s->imap_auth;
    p[5] = s->imap;
    p[6] = a->has_plaintext_auth ? (a->allow_plaintext_auth ? "true" : "false")
           : create              ? "false"
                                 : NULL;
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
    sealed_secrets sealed;
    if (!seal_secrets(rq, rs, &in, &sealed))
        return;
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
    const char *p[21] = {lp[0],
                         in.address,
                         in.display_name ? in.display_name : "",
                         in.smtp.host,
                         http_i64(rq, in.smtp.port),
                         in.smtp.security ? in.smtp.security : SMTP_ACCESS.default_security,
                         in.smtp.username ? in.smtp.username : in.address,
                         sealed.smtp,
                         in.timezone ? in.timezone : PQgetvalue(u, 0, 2),
                         http_i64(rq, in.has_start ? in.start_hour : 6),
                         http_i64(rq, in.has_end ? in.end_hour : 22),
                         in.has_target && !in.target_null ? http_i64(rq, in.daily_target) : NULL,
                         in.warmup_start ? in.warmup_start : PQgetvalue(u, 0, 3),
                         in.smtp.allow_plaintext_auth ? "true" : "false"};
    imap_params(rq, &in, &sealed, true, p + 14);
    PGresult *r = db_exec(rq->db, rq->pool, &Q_MB_INSERT, 21, p);
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
    if (u && !parse_canonical(u, strlen(u), 1, INT64_MAX, &user)) {
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
    PGresult *r = http_exec_owned(rq, rs, st, "no such mailbox");
    if (r)
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
    sealed_secrets sealed;
    if (!seal_secrets(rq, rs, &in, &sealed))
        return;
    const access_input *smtp = &in.smtp;
    const char *p[25] = {http_i64(rq, id),
                         http_i64(rq, http_tenant(rq)),
                         in.address,
                         in.display_name,
                         smtp->host,
                         smtp->has_port ? http_i64(rq, smtp->port) : NULL,
                         smtp->security,
                         smtp->username,
                         sealed.smtp,
                         in.timezone,
                         in.has_start ? http_i64(rq, in.start_hour) : NULL,
                         in.has_end ? http_i64(rq, in.end_hour) : NULL,
                         in.has_target ? "true" : "false",
                         in.has_target && !in.target_null ? http_i64(rq, in.daily_target) : NULL,
                         in.warmup_start,
                         smtp->has_plaintext_auth ? (smtp->allow_plaintext_auth ? "true" : "false")
                                                  : NULL,
                         in.imap.given ? "true" : "false",
                         in.imap_removed ? "true" : "false"};
    imap_params(rq, &in, &sealed, false, p + 18);
    PGresult *r = db_exec(rq->db, rq->pool, &Q_MB_UPDATE, 25, p);
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
    http_delete_owned(rq, rs, &Q_MB_DELETE, "no such mailbox");
}
