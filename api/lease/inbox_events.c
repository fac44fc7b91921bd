/* Validation of inbox events (see inbox_events.h). The member lists are the ones
 * api/openapi.yaml's InboxEvent* schemas list (tests/api/test_openapi.py compares). */
#include "inbox_events.h"

#include "validate.h"

#include <string.h>

#define UID_MAX 4294967295LL

static const char *const FOUND_FIELDS[] = {
    "type",          "mailbox_id", "message_id", "folder", "role",
    "uidvalidity",   "uid",        "flags",      "labels", "authentication_results",
    "internal_date", NULL};
static const char *const ACTION_FIELDS[] = {"type",   "mailbox_id",  "action_id", "status",
                                            "folder", "uidvalidity", "uid",       "flags",
                                            "detail", NULL};
static const char *const FOLDER_STATE_FIELDS[] = {"type",        "mailbox_id", "folder", "role",
                                                  "uidvalidity", "last_uid",   NULL};
static const char *const SESSION_FIELDS[] = {"type", "mailbox_id", "status", "detail", NULL};

static const char *const EVENT_TYPES[] = {"found", "action", "folder_state", "session", NULL};
static const char *const ROLES[] = {"inbox", "junk", "warmup", "other", NULL};
static const char *const ACTION_STATUSES[] = {"done", "gone", "stale", "refused", "failed", NULL};
static const char *const SESSION_STATUSES[] = {"ok",        "auth",     "tls", "connect",
                                               "throttled", "protocol", NULL};

typedef struct ev_ctx {
    http_req *rq;
    http_resp *rs;
    yajl_val o;
    const char *pre; /* "inbox_events[3]." */
} ev_ctx;

static const char *field(ev_ctx *c, const char *key)
{
    return arena_printf(c->rq->pool, "%s%s", c->pre, key);
}

static bool present(ev_ctx *c, const char *key)
{
    yajl_val v = json_get(c->o, key);
    return v && !YAJL_IS_NULL(v);
}

static bool req_int(ev_ctx *c, const char *key, int64_t min, int64_t max, int64_t *out)
{
    return v_int(c->rs, c->o, key, field(c, key), V_REQUIRED, min, max, out);
}

static bool opt_text(ev_ctx *c, const char *key, size_t maxlen, const char **out)
{
    *out = NULL;
    if (!present(c, key))
        return true;
    return v_str(c->rs, c->o, key, field(c, key), 0, maxlen, true, out);
}

/* A list of at most max strings of 1..maxlen bytes; absent: *has false. */
static bool str_list(ev_ctx *c, const char *key, bool required, int max, size_t maxlen,
                     const char ***out, int *n, bool *has)
{
    yajl_val v = json_get(c->o, key);
    *n = 0;
    *out = NULL;
    *has = v != NULL;
    if (!v) {
        if (!required)
            return true;
        http_error(c->rs, 400, "missing_field", arena_printf(c->rq->pool, "'%s' is required", key),
                   field(c, key));
        return false;
    }
    if (!YAJL_IS_ARRAY(v) || v->u.array.len > (size_t)max) {
        http_error(c->rs, 400, "invalid_field",
                   arena_printf(c->rq->pool, "'%s' must be a list of at most %d strings", key, max),
                   field(c, key));
        return false;
    }
    *out = arena_alloc(c->rq->pool, (v->u.array.len + 1) * sizeof **out);
    for (size_t i = 0; i < v->u.array.len; i++) {
        const char *s = json_str(v->u.array.values[i]);
        size_t len = s ? strlen(s) : 0;
        bool ctl = false;
        for (size_t k = 0; k < len; k++)
            ctl |= (unsigned char)s[k] < 0x20 || s[k] == 0x7f;
        if (!s || len == 0 || len > maxlen || ctl) {
            http_error(c->rs, 400, "invalid_field",
                       arena_printf(c->rq->pool,
                                    "each of '%s' must be a string of 1 to %zu bytes "
                                    "without control characters",
                                    key, maxlen),
                       arena_printf(c->rq->pool, "%s%s[%zu]", c->pre, key, i));
            return false;
        }
        (*out)[(*n)++] = s;
    }
    return true;
}

/* YYYY-MM-DDTHH:MM:SS, optional fraction, then Z or +HH:MM / -HH:MM. */
static bool iso_datetime(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t i = 0;
    for (; shape[i]; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return false;
    }
    if (s[i] == '.') {
        size_t k = ++i;
        while (s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == k || i - k > 9)
            return false;
    }
    if (s[i] == 'Z')
        return s[i + 1] == '\0';
    if (s[i] != '+' && s[i] != '-')
        return false;
    const char *z = s + i + 1;
    return z[0] >= '0' && z[0] <= '9' && z[1] >= '0' && z[1] <= '9' && z[2] == ':' && z[3] >= '0' &&
           z[3] <= '9' && z[4] >= '0' && z[4] <= '9' && z[5] == '\0';
}

static bool parse_found(ev_ctx *c, inbox_event *e)
{
    const char **labels = NULL, *date = NULL;
    int nlabels = 0;
    bool has_labels = false;
    if (!v_known_fields(c->rs, c->o, FOUND_FIELDS, c->pre) ||
        !v_str(c->rs, c->o, "message_id", field(c, "message_id"), V_REQUIRED, 998, false,
               &e->message_id) ||
        !v_str(c->rs, c->o, "folder", field(c, "folder"), V_REQUIRED, 1000, false, &e->folder) ||
        !v_enum(c->rs, c->o, "role", field(c, "role"), V_REQUIRED, ROLES, &e->role) ||
        !req_int(c, "uidvalidity", 1, UID_MAX, &e->uidvalidity) ||
        !req_int(c, "uid", 1, UID_MAX, &e->uid) ||
        !str_list(c, "flags", true, 64, 128, &e->flags, &e->nflags, &e->has_flags) ||
        !str_list(c, "labels", false, 64, 256, &labels, &nlabels, &has_labels) ||
        !opt_text(c, "authentication_results", 4000, &e->auth_results) ||
        !opt_text(c, "internal_date", 64, &date))
        return false;
    if (strlen(e->message_id) < 3) {
        http_error(c->rs, 400, "invalid_field", "'message_id' must be 3 to 998 bytes",
                   field(c, "message_id"));
        return false;
    }
    if (date && !iso_datetime(date)) {
        http_error(c->rs, 400, "invalid_field",
                   "'internal_date' must be an ISO 8601 date-time (2026-03-04T10:00:00Z)",
                   field(c, "internal_date"));
        return false;
    }
    return true;
}

static bool parse_action(ev_ctx *c, inbox_event *e)
{
    bool has_v = present(c, "uidvalidity"), has_u = present(c, "uid");
    if (!v_known_fields(c->rs, c->o, ACTION_FIELDS, c->pre) ||
        !req_int(c, "action_id", 1, INT64_MAX, &e->action_id) ||
        !v_enum(c->rs, c->o, "status", field(c, "status"), V_REQUIRED, ACTION_STATUSES,
                &e->status) ||
        (present(c, "folder") &&
         !v_str(c->rs, c->o, "folder", field(c, "folder"), 0, 1000, false, &e->folder)) ||
        (has_v && !v_int(c->rs, c->o, "uidvalidity", field(c, "uidvalidity"), 0, 1, UID_MAX,
                         &e->uidvalidity)) ||
        (has_u && !v_int(c->rs, c->o, "uid", field(c, "uid"), 0, 1, UID_MAX, &e->uid)) ||
        !str_list(c, "flags", false, 64, 128, &e->flags, &e->nflags, &e->has_flags) ||
        !opt_text(c, "detail", 1000, &e->detail))
        return false;
    e->has_place = e->folder && has_v && has_u;
    return true;
}

static bool parse_folder_state(ev_ctx *c, inbox_event *e)
{
    return v_known_fields(c->rs, c->o, FOLDER_STATE_FIELDS, c->pre) &&
           v_str(c->rs, c->o, "folder", field(c, "folder"), V_REQUIRED, 1000, false, &e->folder) &&
           v_enum(c->rs, c->o, "role", field(c, "role"), V_REQUIRED, ROLES, &e->role) &&
           req_int(c, "uidvalidity", 1, UID_MAX, &e->uidvalidity) &&
           req_int(c, "last_uid", 0, UID_MAX, &e->last_uid);
}

static bool parse_session(ev_ctx *c, inbox_event *e)
{
    return v_known_fields(c->rs, c->o, SESSION_FIELDS, c->pre) &&
           v_enum(c->rs, c->o, "status", field(c, "status"), V_REQUIRED, SESSION_STATUSES,
                  &e->status) &&
           opt_text(c, "detail", 1000, &e->detail);
}

static bool parse_event(http_req *rq, http_resp *rs, yajl_val o, size_t i, inbox_event *e)
{
    ev_ctx c = {rq, rs, o, arena_printf(rq->pool, "inbox_events[%zu].", i)};
    if (!YAJL_IS_OBJECT(o)) {
        http_error(rs, 400, "invalid_field", "each inbox event must be an object",
                   arena_printf(rq->pool, "inbox_events[%zu]", i));
        return false;
    }
    const char *type = NULL;
    if (!v_enum(rs, o, "type", field(&c, "type"), V_REQUIRED, EVENT_TYPES, &type) ||
        !req_int(&c, "mailbox_id", 1, INT64_MAX, &e->mailbox_id))
        return false;
    for (int t = 0; EVENT_TYPES[t]; t++)
        if (!strcmp(type, EVENT_TYPES[t]))
            e->type = (enum inbox_event_type)t;
    switch (e->type) {
    case EV_FOUND:
        return parse_found(&c, e);
    case EV_ACTION:
        return parse_action(&c, e);
    case EV_FOLDER_STATE:
        return parse_folder_state(&c, e);
    case EV_SESSION:
        return parse_session(&c, e);
    }
    return false;
}

bool inbox_events_parse(http_req *rq, http_resp *rs, yajl_val arr, inbox_event **out, int *n)
{
    if (!YAJL_IS_ARRAY(arr) || arr->u.array.len == 0 || arr->u.array.len > INBOX_EVENTS_MAX) {
        http_error(rs, 400, "invalid_field", "'inbox_events' must be a list of 1 to 10000 events",
                   "inbox_events");
        return false;
    }
    size_t len = arr->u.array.len;
    inbox_event *ev = arena_calloc(rq->pool, len * sizeof *ev);
    for (size_t i = 0; i < len; i++)
        if (!parse_event(rq, rs, arr->u.array.values[i], i, &ev[i]))
            return false;
    *out = ev;
    *n = (int)len;
    return true;
}
