/* The inbox side of the wire module (see agent_wire_inbox.h). An inbox list is small
 * next to a send lease (at most 10,000 entries of a few hundred bytes), so it is read
 * through a checked yajl tree rather than streamed. */
#include "agent_wire_inbox.h"

#include "json.h"
#include "log.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INBOXES_MAX 10000
#define FOLDERS_MAX 16
#define ACTIONS_MAX 1000

/* Where a fault is: "inboxes[3].imap" */
typedef struct wctx {
    char *err;
    size_t errlen;
    char at[96];
} wctx;

static int fault(wctx *w, const char *field, const char *why)
{
    snprintf(w->err, w->errlen, "%s%s%s: %s", w->at, *field && w->at[0] ? "." : "", field, why);
    return -1;
}

/* A string without control characters, of [min, max] bytes; NULL allowed when nullable
 * (then *out stays NULL). Absent counts as null. */
static int get_str(wctx *w, yajl_val obj, const char *key, size_t min, size_t max, bool nullable,
                   char **out)
{
    yajl_val v = json_get(obj, key);
    *out = NULL;
    if (!v || YAJL_IS_NULL(v)) {
        if (nullable)
            return 0;
        return fault(w, key, "required");
    }
    const char *s = json_str(v);
    if (!s)
        return fault(w, key, "must be a string");
    size_t n = strlen(s);
    if (n < min || n > max) {
        char why[64];
        snprintf(why, sizeof why, "must be %zu to %zu bytes", min, max);
        return fault(w, key, why);
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fault(w, key, "must not contain control characters");
    *out = xstrdup(s);
    return 0;
}

static int get_int(wctx *w, yajl_val obj, const char *key, int64_t min, int64_t max, bool required,
                   int64_t *out)
{
    yajl_val v = json_get(obj, key);
    if (!v && !required)
        return 0;
    if (!json_int(v, min, max, out)) {
        char why[80];
        snprintf(why, sizeof why, "must be an integer in [%lld, %lld]", (long long)min,
                 (long long)max);
        return fault(w, key, why);
    }
    return 0;
}

/* An enum member by name (names: the wire's, of_fn: the value of one). */
static int get_enum(wctx *w, yajl_val obj, const char *key, int (*of_fn)(const char *),
                    const char *allowed, int *out)
{
    const char *s = json_str(json_get(obj, key));
    int v = s ? of_fn(s) : -1;
    if (v < 0) {
        char why[96];
        snprintf(why, sizeof why, "must be one of %s", allowed);
        return fault(w, key, why);
    }
    *out = v;
    return 0;
}

static int security_of(const char *s)
{
    return !strcmp(s, "plain")      ? INBOX_SEC_PLAIN
           : !strcmp(s, "starttls") ? INBOX_SEC_STARTTLS
           : !strcmp(s, "tls")      ? INBOX_SEC_TLS
                                    : -1;
}

static int parse_imap(wctx *w, yajl_val imap, inbox_spec *s)
{
    if (!imap || !YAJL_IS_OBJECT(imap))
        return fault(w, "imap", "must be an object");
    size_t at = strlen(w->at);
    snprintf(w->at + at, sizeof w->at - at, ".imap");
    int64_t port = 0;
    if (get_str(w, imap, "host", 1, 253, false, &s->host) ||
        get_int(w, imap, "port", 1, 65535, true, &port) ||
        get_enum(w, imap, "security", security_of, "tls, starttls, plain", &s->security) ||
        get_str(w, imap, "username", 1, 254, false, &s->username) ||
        get_str(w, imap, "password", 1, 1024, true, &s->password) ||
        get_str(w, imap, "oauth_token", 1, 4096, true, &s->oauth_token) ||
        get_str(w, imap, "ca_file", 1, 1023, true, &s->ca_file))
        return -1;
    s->port = (int)port;
    if (!s->password && !s->oauth_token)
        return fault(w, "password", "a password or an oauth_token is required");
    yajl_val apa = json_get(imap, "allow_plaintext_auth");
    if (apa && !YAJL_IS_TRUE(apa) && !YAJL_IS_FALSE(apa))
        return fault(w, "allow_plaintext_auth", "must be true or false");
    s->allow_plaintext_auth = apa && YAJL_IS_TRUE(apa);
    w->at[at] = '\0';
    return 0;
}

static int parse_folders(wctx *w, yajl_val arr, inbox_spec *s)
{
    if (!arr)
        return 0;
    if (!YAJL_IS_ARRAY(arr) || arr->u.array.len > FOLDERS_MAX)
        return fault(w, "folders", "must be an array of at most 16 folders");
    s->folders = xcalloc(arr->u.array.len ? arr->u.array.len : 1, sizeof *s->folders);
    size_t at = strlen(w->at);
    for (size_t i = 0; i < arr->u.array.len; i++) {
        yajl_val f = arr->u.array.values[i];
        inbox_folder *d = &s->folders[s->nfolders++];
        snprintf(w->at + at, sizeof w->at - at, ".folders[%zu]", i);
        int64_t uv = 0, last = 0;
        if (!YAJL_IS_OBJECT(f))
            return fault(w, "", "must be an object");
        if (get_str(w, f, "name", 1, 1000, false, &d->name) ||
            get_enum(w, f, "role", inbox_role_of, "inbox, junk, warmup, other", &d->role) ||
            get_int(w, f, "uidvalidity", 1, UINT32_MAX, true, &uv) ||
            get_int(w, f, "last_uid", 0, UINT32_MAX, true, &last))
            return -1;
        d->uidvalidity = (uint32_t)uv;
        d->last_uid = (uint32_t)last;
    }
    w->at[at] = '\0';
    return 0;
}

/* An IMAP flag: an atom, or \ and an atom (RFC 3501 flag). */
static bool flag_ok(const char *f)
{
    if (*f == '\\')
        f++;
    if (!*f)
        return false;
    for (; *f; f++)
        if ((unsigned char)*f <= 0x20 || (unsigned char)*f >= 0x7f || strchr("(){%*\"\\]", *f))
            return false;
    return true;
}

static int target_of(const char *s)
{
    int r = inbox_role_of(s);
    return r == INBOX_ROLE_INBOX || r == INBOX_ROLE_WARMUP ? r : -1;
}

static int parse_action(wctx *w, yajl_val a, inbox_action *d)
{
    int64_t id = 0, uv = 0, uid = 0;
    if (!YAJL_IS_OBJECT(a))
        return fault(w, "", "must be an object");
    if (get_int(w, a, "id", 1, INT64_MAX, true, &id) ||
        get_enum(w, a, "kind", inbox_action_kind_of, "rescue, mark, file, prune", &d->kind) ||
        get_str(w, a, "folder", 1, 1000, false, &d->folder) ||
        get_int(w, a, "uidvalidity", 1, UINT32_MAX, true, &uv) ||
        get_int(w, a, "uid", 1, UINT32_MAX, true, &uid) ||
        get_int(w, a, "not_before_s", 0, 604800, false, &d->not_before_s))
        return -1;
    d->id = id;
    d->uidvalidity = (uint32_t)uv;
    d->uid = (uint32_t)uid;
    d->target = -1;
    yajl_val t = json_get(a, "target");
    if (t && !YAJL_IS_NULL(t) &&
        get_enum(w, a, "target", target_of, "inbox, warmup, null", &d->target))
        return -1;
    if ((d->kind == INBOX_ACT_RESCUE && d->target != INBOX_ROLE_INBOX) ||
        (d->kind == INBOX_ACT_FILE && d->target != INBOX_ROLE_WARMUP))
        return fault(w, "target", "rescue needs inbox, file needs warmup");
    yajl_val fl = json_get(a, "flags");
    if (fl && !YAJL_IS_ARRAY(fl))
        return fault(w, "flags", "must be an array");
    size_t nf = fl ? fl->u.array.len : 0;
    if (nf > INBOX_ACTION_FLAGS_MAX)
        return fault(w, "flags", "at most 8 flags");
    for (size_t k = 0; k < nf; k++) {
        const char *f = json_str(fl->u.array.values[k]);
        if (!f || strlen(f) > 128 || !flag_ok(f))
            return fault(w, "flags", "each must be an IMAP flag such as \\Seen");
        d->flags[d->nflags++] = xstrdup(f);
    }
    if (d->kind == INBOX_ACT_MARK && !nf)
        return fault(w, "flags", "mark needs at least one flag");
    return 0;
}

static int parse_actions(wctx *w, yajl_val arr, inbox_spec *s)
{
    if (!arr)
        return 0;
    if (!YAJL_IS_ARRAY(arr) || arr->u.array.len > ACTIONS_MAX)
        return fault(w, "actions", "must be an array of at most 1000 actions");
    s->actions = xcalloc(arr->u.array.len ? arr->u.array.len : 1, sizeof *s->actions);
    size_t at = strlen(w->at);
    for (size_t i = 0; i < arr->u.array.len; i++) {
        snprintf(w->at + at, sizeof w->at - at, ".actions[%zu]", i);
        if (parse_action(w, arr->u.array.values[i], &s->actions[s->nactions++]))
            return -1;
    }
    w->at[at] = '\0';
    return 0;
}

static int parse_inbox(wctx *w, yajl_val v, inbox_spec *s)
{
    if (!YAJL_IS_OBJECT(v))
        return fault(w, "", "must be an object");
    int64_t interval = 0;
    if (get_int(w, v, "mailbox_id", 1, INT64_MAX, true, &s->mailbox_id) ||
        get_str(w, v, "address", 0, 254, true, &s->address) ||
        parse_imap(w, json_get(v, "imap"), s) ||
        get_enum(w, v, "poll_class", inbox_poll_class_of, "high, medium, low", &s->poll_class) ||
        get_int(w, v, "poll_interval_s", 30, 3600, false, &interval) ||
        get_str(w, v, "warmup_folder", 1, 200, true, &s->warmup_folder) ||
        parse_folders(w, json_get(v, "folders"), s) || parse_actions(w, json_get(v, "actions"), s))
        return -1;
    s->poll_interval_s = interval;
    if (!s->warmup_folder)
        s->warmup_folder = xstrdup("kiln");
    return 0;
}

int wire_inboxes_parse(const char *data, size_t len, inbox_spec ***out, size_t *n, char *err,
                       size_t errlen)
{
    *out = NULL;
    *n = 0;
    yajl_val doc = json_parse(data, len, err, errlen);
    if (!doc)
        return -1;
    wctx w = {.err = err, .errlen = errlen};
    yajl_val arr = YAJL_IS_OBJECT(doc) ? json_get(doc, "inboxes") : doc;
    int rc = -1;
    if (!arr || !YAJL_IS_ARRAY(arr) || arr->u.array.len > INBOXES_MAX) {
        fault(&w, "inboxes", "must be an array of at most 10000 inboxes (or an object with one)");
        goto out;
    }
    size_t cnt = arr->u.array.len;
    inbox_spec **v = xcalloc(cnt ? cnt : 1, sizeof(inbox_spec *));
    for (size_t i = 0; i < cnt; i++) {
        v[i] = xcalloc(1, sizeof *v[i]);
        snprintf(w.at, sizeof w.at, "inboxes[%zu]", i);
        if (parse_inbox(&w, arr->u.array.values[i], v[i]) < 0) {
            for (size_t k = 0; k <= i; k++)
                inbox_spec_free(v[k]);
            free(v);
            goto out;
        }
        for (size_t k = 0; k < i; k++)
            if (v[k]->mailbox_id == v[i]->mailbox_id) {
                fault(&w, "mailbox_id", "appears twice");
                for (size_t j = 0; j <= i; j++)
                    inbox_spec_free(v[j]);
                free(v);
                goto out;
            }
    }
    *out = v;
    *n = cnt;
    rc = 0;
out:
    yajl_tree_free(doc);
    return rc;
}

static void str_array(yajl_gen g, const char *key, const char *const *v, size_t n)
{
    json_key(g, key);
    json_arr_open(g);
    for (size_t i = 0; i < n; i++)
        json_s(g, v[i]);
    json_arr_close(g);
}

void wire_inbox_event_json(const inbox_event *ev, buf *out)
{
    static const char *const types[] = {"found", "action", "folder_state", "session"};
    yajl_gen g = json_gen_new(out);
    json_obj_open(g);
    json_kv_s(g, "type", types[ev->type]);
    json_kv_i(g, "mailbox_id", ev->mailbox_id);
    switch (ev->type) {
    case INBOX_EV_FOUND:
        json_kv_s(g, "message_id", ev->message_id);
        json_kv_s(g, "folder", ev->folder);
        json_kv_s(g, "role", inbox_role_name(ev->role));
        json_kv_i(g, "uidvalidity", ev->uidvalidity);
        json_kv_i(g, "uid", ev->uid);
        str_array(g, "flags", ev->flags, ev->nflags);
        if (ev->labels)
            str_array(g, "labels", ev->labels, ev->nlabels);
        json_kv_s(g, "authentication_results", ev->authentication_results);
        if (ev->internal_date)
            json_kv_s(g, "internal_date", ev->internal_date);
        break;
    case INBOX_EV_ACTION:
        json_kv_i(g, "action_id", ev->action_id);
        json_kv_s(g, "status", inbox_action_status_name(ev->action_status));
        if (ev->folder) {
            json_kv_s(g, "folder", ev->folder);
            json_kv_i(g, "uidvalidity", ev->uidvalidity);
            json_kv_i(g, "uid", ev->uid);
        }
        if (ev->flags)
            str_array(g, "flags", ev->flags, ev->nflags);
        json_kv_s(g, "detail", ev->detail);
        break;
    case INBOX_EV_FOLDER_STATE:
        json_kv_s(g, "folder", ev->folder);
        json_kv_s(g, "role", inbox_role_name(ev->role));
        json_kv_i(g, "uidvalidity", ev->uidvalidity);
        json_kv_i(g, "last_uid", ev->last_uid);
        break;
    default:
        json_kv_s(g, "status", inbox_session_status_name(ev->status));
        json_kv_s(g, "detail", ev->detail);
        break;
    }
    json_obj_close(g);
    json_gen_free(g);
}

void wire_inbox_lease_free(wire_inbox_lease *l)
{
    for (size_t i = 0; i < l->ninboxes; i++)
        inbox_spec_free(l->inboxes[i]);
    free(l->inboxes);
    l->inboxes = NULL;
    l->ninboxes = 0;
}

void wire_inbox_lease_parse(const char *data, size_t len, wire_inbox_lease *out)
{
    memset(out, 0, sizeof *out);
    yajl_val doc = json_parse(data, len, out->error, sizeof out->error);
    if (!doc)
        return;
    yajl_val il = json_get(doc, "inbox_lease");
    const char *id = json_str(json_get(il, "lease_id"));
    wctx w = {.err = out->error, .errlen = sizeof out->error};
    if (!il || YAJL_IS_NULL(il)) {
        out->error[0] = '\0';
        goto done;
    }
    if (!id || !*id || strlen(id) >= sizeof out->lease_id ||
        get_int(&w, il, "ttl_s", 1, 604800, true, &out->ttl_s) ||
        get_int(&w, il, "heartbeat_s", 1, 86400, true, &out->heartbeat_s)) {
        if (!out->error[0])
            snprintf(out->error, sizeof out->error, "inbox_lease.lease_id: required");
        goto done;
    }
    snprintf(out->lease_id, sizeof out->lease_id, "%s", id);
    out->present = true;
    yajl_val arr = json_get(doc, "inboxes");
    size_t cnt = arr && YAJL_IS_ARRAY(arr) ? arr->u.array.len : 0;
    if (cnt > INBOXES_MAX)
        cnt = INBOXES_MAX;
    out->inboxes = xcalloc(cnt ? cnt : 1, sizeof(inbox_spec *));
    char why[256];
    for (size_t i = 0; i < cnt; i++) {
        inbox_spec *sp = xcalloc(1, sizeof *sp);
        wctx iw = {.err = why, .errlen = sizeof why};
        snprintf(iw.at, sizeof iw.at, "inboxes[%zu]", i);
        if (parse_inbox(&iw, arr->u.array.values[i], sp) < 0) {
            if (!out->nrejected++)
                snprintf(out->error, sizeof out->error, "%s", why);
            inbox_spec_free(sp);
            continue;
        }
        out->inboxes[out->ninboxes++] = sp;
    }
done:
    yajl_tree_free(doc);
}

int wire_inbox_heartbeat_parse(const char *data, size_t len, int64_t *ttl_s, int64_t **dropped,
                               size_t *ndropped)
{
    char err[128];
    *ttl_s = 0;
    *dropped = NULL;
    *ndropped = 0;
    yajl_val doc = json_parse(data, len, err, sizeof err);
    if (!doc)
        return -1;
    int64_t t;
    if (json_int(json_get(doc, "ttl_s"), 1, 604800, &t))
        *ttl_s = t;
    yajl_val d = json_get(doc, "inboxes_dropped");
    if (d && YAJL_IS_ARRAY(d) && d->u.array.len) {
        *dropped = xcalloc(d->u.array.len, sizeof **dropped);
        for (size_t i = 0; i < d->u.array.len; i++)
            if (json_int(d->u.array.values[i], 1, INT64_MAX, &t))
                (*dropped)[(*ndropped)++] = t;
    }
    yajl_tree_free(doc);
    return 0;
}

void wire_inbox_report(buf *out, const char *lease_id, const char *events, size_t len)
{
    yajl_gen g = json_gen_new(out);
    json_obj_open(g);
    json_kv_s(g, "lease_id", lease_id);
    json_obj_close(g);
    json_gen_free(g);
    /* the events are JSON already: spliced in before the closing brace */
    out->len--;
    buf_puts(out, ",\"inbox_events\":[");
    buf_append(out, events, len);
    buf_puts(out, "]}");
}
