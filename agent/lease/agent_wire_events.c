/* The wire module's inbox events (see agent_wire.h; openapi InboxEvent, ReportRequest's
 * inbox_events, ReportAnswer's counts): each event checked against the wire's ranges and
 * written as one JSON object, which the spool keeps as it is, so a replay after a crash
 * reports the very same bytes. */
#include "agent_wire.h"
#include "agent_wire_int.h"

#include "config.h"
#include "json.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- events ---- */

/* s[0..n) cut to at most max bytes on a UTF-8 boundary, invalid bytes and control
 * characters but tab made '?' and ' ': free text from a server never spoils a report. */
static void put_text(yajl_gen g, const char *s, size_t max)
{
    size_t n = strlen(s);
    char *t = xmalloc(n + 1);
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
        if (k == 0 || i + k > n || !utf8_valid(s + i, k)) {
            c = '?';
            k = 1;
        } else if (k == 1 && ((c < 0x20 && c != '\t') || c == 0x7f)) {
            c = ' ';
        }
        if (w + k > max)
            break;
        if (k == 1)
            t[w++] = (char)c;
        else
            memcpy(t + w, s + i, k);
        w += k == 1 ? 0 : k;
        i += k;
    }
    json_str_n(g, t, w);
    free(t);
}

/* An identity string of the event (message id, folder): 1..max bytes of UTF-8 without
 * controls, or the event is refused. */
static bool ident_ok(const char *s, size_t min, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return s && n >= min && n <= max && utf8_valid(s, n) && wire_printable(s);
}

/* A list of flags or labels: the ones that fit the wire (the rest left out, logged by
 * the caller's count), at most FEED_EVENT_FLAGS_MAX. */
static void put_list(yajl_gen g, const char *key, const char *const *v, size_t n, size_t max)
{
    json_key(g, key);
    json_arr_open(g);
    size_t put = 0;
    for (size_t i = 0; i < n && put < FEED_EVENT_FLAGS_MAX; i++)
        if (ident_ok(v[i], 1, max)) {
            json_s(g, v[i]);
            put++;
        }
    json_arr_close(g);
}

/* ISO 8601 UTC as the wire's date-time: 2026-12-03T06:00:00Z (fractions allowed). */
static bool date_time_ok(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t n = strlen(s);
    if (n < 20 || n > 40 || s[n - 1] != 'Z')
        return false;
    for (size_t i = 0; i < sizeof shape - 1; i++)
        if (shape[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != shape[i])
            return false;
    for (size_t i = sizeof shape - 1; i < n - 1; i++)
        if (!(s[i] == '.' || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

static const char *event_check(const feed_event *ev)
{
    if (ev->mailbox_id < 1)
        return "mailbox_id: must be positive";
    switch (ev->type) {
    case FEED_EV_FOUND:
        if (!ident_ok(ev->message_id, 3, FEED_MESSAGE_ID_MAX))
            return "message_id: 3 to 998 bytes of text";
        /* a found message names its folder as a folder state does */
        __attribute__((fallthrough));
    case FEED_EV_FOLDER_STATE:
        if (!ident_ok(ev->folder, 1, FEED_FOLDER_NAME_MAX))
            return "folder: 1 to 1000 bytes of text";
        if (ev->role < 0 || ev->role >= FEED_ROLE_COUNT)
            return "role: unknown";
        if (ev->uidvalidity < 1)
            return "uidvalidity: must be positive";
        if (ev->type == FEED_EV_FOUND && ev->uid < 1)
            return "uid: must be positive";
        return NULL;
    case FEED_EV_ACTION:
        if (ev->action_id < 1)
            return "action_id: must be positive";
        if (ev->status < 0 || ev->status >= FEED_AST_COUNT)
            return "status: unknown";
        if (ev->folder && !ident_ok(ev->folder, 1, FEED_FOLDER_NAME_MAX))
            return "folder: 1 to 1000 bytes of text";
        return NULL;
    case FEED_EV_SESSION:
        if (ev->status < 0 || ev->status >= FEED_SES_COUNT)
            return "status: unknown";
        return NULL;
    default:
        return "type: unknown";
    }
}

static void put_found(yajl_gen g, const feed_event *ev)
{
    json_kv_s(g, "message_id", ev->message_id);
    json_kv_s(g, "folder", ev->folder);
    json_kv_s(g, "role", wire_role_names[ev->role]);
    json_kv_i(g, "uidvalidity", ev->uidvalidity);
    json_kv_i(g, "uid", ev->uid);
    put_list(g, "flags", ev->flags, ev->nflags, FEED_FLAG_MAX);
    if (ev->labels)
        put_list(g, "labels", ev->labels, ev->nlabels, FEED_LABEL_MAX);
    json_key(g, "authentication_results");
    if (ev->authentication_results)
        put_text(g, ev->authentication_results, FEED_AUTH_RESULTS_MAX);
    else
        json_null(g);
    if (ev->internal_date && date_time_ok(ev->internal_date))
        json_kv_s(g, "internal_date", ev->internal_date);
}

static void put_detail(yajl_gen g, const char *detail)
{
    json_key(g, "detail");
    if (detail)
        put_text(g, detail, FEED_DETAIL_MAX);
    else
        json_null(g);
}

int wire_inbox_event_json(const feed_event *ev, buf *out, char *err, size_t errlen)
{
    static const char *const types[] = {"found", "action", "folder_state", "session"};
    const char *why = event_check(ev);
    if (why) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    yajl_gen g = json_gen_new(out);
    json_obj_open(g);
    json_kv_s(g, "type", types[ev->type]);
    json_kv_i(g, "mailbox_id", ev->mailbox_id);
    switch (ev->type) {
    case FEED_EV_FOUND:
        put_found(g, ev);
        break;
    case FEED_EV_ACTION:
        json_kv_i(g, "action_id", ev->action_id);
        json_kv_s(g, "status", wire_action_status_names[ev->status]);
        if (ev->folder)
            json_kv_s(g, "folder", ev->folder);
        if (ev->uidvalidity > 0)
            json_kv_i(g, "uidvalidity", ev->uidvalidity);
        if (ev->uid > 0)
            json_kv_i(g, "uid", ev->uid);
        if (ev->nflags > 0)
            put_list(g, "flags", ev->flags, ev->nflags, FEED_FLAG_MAX);
        put_detail(g, ev->detail);
        break;
    case FEED_EV_FOLDER_STATE:
        json_kv_s(g, "folder", ev->folder);
        json_kv_s(g, "role", wire_role_names[ev->role]);
        json_kv_i(g, "uidvalidity", ev->uidvalidity);
        json_kv_i(g, "last_uid", ev->last_uid);
        break;
    default:
        json_kv_s(g, "status", wire_session_status_names[ev->status]);
        put_detail(g, ev->detail);
        break;
    }
    json_obj_close(g);
    json_gen_free(g);
    return 0;
}

void wire_inbox_report(buf *out, const char *lease_id, const char *const *events,
                       const size_t *lens, size_t n)
{
    /* the lease id is a checked UUID (no escaping needed); each event is a whole object
     * written by wire_inbox_event_json */
    buf_printf(out, "{\"lease_id\":\"%s\",\"inbox_events\":[", lease_id);
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_putc(out, ',');
        buf_append(out, events[i], lens[i]);
    }
    buf_puts(out, "]}");
}

int wire_inbox_report_answer_parse(const char *data, size_t n, wire_inbox_counts *out)
{
    memset(out, 0, sizeof *out);
    char err[64];
    yajl_val t = json_parse(data, n, err, sizeof err);
    if (!t)
        return -1;
    yajl_val c = json_get(t, "inbox_events");
    if (c && YAJL_IS_OBJECT(c)) {
        out->present = true;
        json_int(json_get(c, "applied"), 0, INT64_MAX, &out->applied);
        json_int(json_get(c, "duplicates"), 0, INT64_MAX, &out->duplicates);
        json_int(json_get(c, "ignored"), 0, INT64_MAX, &out->ignored);
    }
    yajl_tree_free(t);
    return 0;
}

bool wire_report_bad_inbox_event(const char *field, size_t *index)
{
    static const char pre[] = "inbox_events[";
    if (strncmp(field, pre, sizeof pre - 1) != 0)
        return false;
    const char *p = field + sizeof pre - 1;
    size_t digits = strspn(p, "0123456789");
    int64_t v;
    if (digits == 0 || p[digits] != ']' || !parse_int(p, digits, 0, 10000000, &v))
        return false;
    *index = (size_t)v;
    return true;
}
