/* The wire module's inbox side (see agent_wire.h; openapi InboxLease, LeaseInbox,
 * InboxEvent): the inbox part of a lease answer, the events of a report, the report's
 * answer. The lease document's streamed pass (agent_wire_lease.c) skips the two inbox
 * members and notes where they are; they are read here. The inbox array is split into
 * its entries by a second streamed pass that validates nothing, then each entry is
 * parsed on its own (json_parse_checked: UTF-8, NUL, duplicate members) and checked
 * member by member, so one bad entry is set aside and the others are kept. */
#include "agent_wire.h"
#include "agent_wire_int.h"

#include "config.h"
#include "i64map.h"
#include "json.h"
#include "xalloc.h"

#include <yajl/yajl_parse.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const wire_poll_class_names[FEED_POLL_COUNT] = {"high", "medium", "low"};
const char *const wire_role_names[FEED_ROLE_COUNT] = {"inbox", "junk", "warmup", "other"};
const char *const wire_security_names[FEED_SEC_COUNT] = {"plain", "starttls", "tls"};
const char *const wire_action_kind_names[FEED_ACT_COUNT] = {"rescue", "mark", "file", "prune"};
const char *const wire_action_status_names[FEED_AST_COUNT] = {"done", "gone", "stale", "refused",
                                                              "failed"};
const char *const wire_session_status_names[FEED_SES_COUNT] = {"ok",      "auth",      "tls",
                                                               "connect", "throttled", "protocol"};

#define UID_MAX_WIRE 4294967295LL
#define USERNAME_MAX 320
#define PASSWORD_MAX 1024
#define TOKEN_MAX 16384
#define CA_FILE_MAX 1024
#define WARMUP_NAME_MAX 200

/* ---- checks over one entry's tree ---- */

struct chk {
    char *reason; /* the first fault: "<where>.<field>: <what>" */
    size_t reason_len;
    const char *where; /* "inboxes[3]" */
    bool bad;
};

static bool fault(struct chk *c, const char *field, const char *what)
{
    if (!c->bad)
        snprintf(c->reason, c->reason_len, "%s.%s: %s", c->where, field, what);
    c->bad = true;
    return false;
}

/* A string member of 1..max bytes without controls; nullable: null gives *out NULL. */
static bool str_member(struct chk *c, yajl_val obj, const char *key, const char *field, size_t max,
                       bool nullable, const char **out)
{
    yajl_val v = json_get(obj, key);
    char what[64];
    *out = NULL;
    if (!v)
        return fault(c, field,
                     nullable ? "missing (a string or null is required)"
                              : "missing (a string is required)");
    if (nullable && YAJL_IS_NULL(v))
        return true;
    const char *s = json_str(v);
    if (!s)
        return fault(c, field, nullable ? "must be a string or null" : "must be a string");
    size_t n = strlen(s);
    if (n == 0 || n > max) {
        snprintf(what, sizeof what, "must be 1 to %zu bytes long", max);
        return fault(c, field, what);
    }
    if (!wire_printable(s))
        return fault(c, field, "contains control characters");
    *out = s;
    return true;
}

static bool int_member(struct chk *c, yajl_val obj, const char *key, const char *field, int64_t min,
                       int64_t max, int64_t *out)
{
    char what[80];
    if (json_int(json_get(obj, key), min, max, out))
        return true;
    snprintf(what, sizeof what, "must be an integer in [%lld, %lld]", (long long)min,
             (long long)max);
    return fault(c, field, what);
}

/* One of names[0..count) (the wire's enum): its index. */
static bool enum_member(struct chk *c, yajl_val obj, const char *key, const char *field,
                        const char *const *names, int count, int *out)
{
    const char *s = json_str(json_get(obj, key));
    char what[96];
    for (int i = 0; s && i < count; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return true;
        }
    size_t w = (size_t)snprintf(what, sizeof what, "must be one of");
    for (int i = 0; i < count && w < sizeof what; i++)
        w += (size_t)snprintf(what + w, sizeof what - w, "%s%s", i ? ", " : " ", names[i]);
    return fault(c, field, what);
}

static yajl_val array_member(struct chk *c, yajl_val obj, const char *key, const char *field,
                             size_t max)
{
    yajl_val v = json_get(obj, key);
    char what[64];
    if (!v || !YAJL_IS_ARRAY(v)) {
        fault(c, field, "must be an array");
        return NULL;
    }
    if (v->u.array.len > max) {
        snprintf(what, sizeof what, "more than %zu entries", max);
        fault(c, field, what);
        return NULL;
    }
    return v;
}

/* An IMAP flag: "\" and an atom, or an atom (RFC 3501 flag / flag-keyword). */
static bool flag_ok(const char *s)
{
    if (*s == '\\')
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || strchr("(){%*\"\\]", *s))
            return false;
    return true;
}

static bool check_imap(struct chk *c, yajl_val imap, feed_inbox *in)
{
    if (!imap || !YAJL_IS_OBJECT(imap))
        return fault(c, "imap", "must be an object");
    int64_t port;
    yajl_val apa = json_get(imap, "allow_plaintext_auth");
    if (!str_member(c, imap, "host", "imap.host", 253, false, &in->host) || strpbrk(in->host, " /"))
        return fault(c, "imap.host", "not a host name or address");
    if (!int_member(c, imap, "port", "imap.port", 1, 65535, &port) ||
        !enum_member(c, imap, "security", "imap.security", wire_security_names, FEED_SEC_COUNT,
                     &in->security) ||
        !str_member(c, imap, "username", "imap.username", USERNAME_MAX, false, &in->username) ||
        !str_member(c, imap, "password", "imap.password", PASSWORD_MAX, true, &in->password) ||
        !str_member(c, imap, "oauth_token", "imap.oauth_token", TOKEN_MAX, true,
                    &in->oauth_token) ||
        !str_member(c, imap, "ca_file", "imap.ca_file", CA_FILE_MAX, true, &in->ca_file))
        return false;
    in->port = (int)port;
    if (!in->password == !in->oauth_token)
        return fault(c, "imap", "exactly one of password and oauth_token must be a string");
    if (!apa || !(YAJL_IS_TRUE(apa) || YAJL_IS_FALSE(apa)))
        return fault(c, "imap.allow_plaintext_auth", "must be true or false");
    in->allow_plaintext_auth = YAJL_IS_TRUE(apa);
    return true;
}

static bool check_folder(struct chk *c, yajl_val v, size_t i, feed_folder *f)
{
    char field[48];
    int64_t uv, last;
    snprintf(field, sizeof field, "folders[%zu]", i);
    if (!YAJL_IS_OBJECT(v))
        return fault(c, field, "must be an object");
    snprintf(field, sizeof field, "folders[%zu].name", i);
    if (!str_member(c, v, "name", field, FEED_FOLDER_NAME_MAX, false, &f->name))
        return false;
    snprintf(field, sizeof field, "folders[%zu].role", i);
    if (!enum_member(c, v, "role", field, wire_role_names, FEED_ROLE_COUNT, &f->role))
        return false;
    snprintf(field, sizeof field, "folders[%zu].uidvalidity", i);
    if (!int_member(c, v, "uidvalidity", field, 1, UID_MAX_WIRE, &uv))
        return false;
    snprintf(field, sizeof field, "folders[%zu].last_uid", i);
    if (!int_member(c, v, "last_uid", field, 0, UID_MAX_WIRE, &last))
        return false;
    f->uidvalidity = (uint32_t)uv;
    f->last_uid = (uint32_t)last;
    return true;
}

/* An action's flags and target agree with its kind. */
static bool check_action_shape(struct chk *c, yajl_val v, size_t i, feed_action *a)
{
    char field[48];
    snprintf(field, sizeof field, "actions[%zu].flags", i);
    yajl_val flags = array_member(c, v, "flags", field, FEED_ACTION_FLAGS_MAX);
    if (!flags)
        return false;
    for (size_t k = 0; k < flags->u.array.len; k++) {
        const char *f = json_str(flags->u.array.values[k]);
        if (!f || strlen(f) > FEED_FLAG_MAX || !flag_ok(f))
            return fault(c, field, "each must be an IMAP flag (\\Seen, $Label) of 1 to 128 bytes");
        a->flags[a->nflags++] = f;
    }
    if ((a->kind == FEED_ACT_MARK) != (a->nflags > 0))
        return fault(c, field, "mark needs 1 to 8 flags, the other kinds none");
    yajl_val t = json_get(v, "target");
    snprintf(field, sizeof field, "actions[%zu].target", i);
    int want = a->kind == FEED_ACT_RESCUE ? FEED_ROLE_INBOX
               : a->kind == FEED_ACT_FILE ? FEED_ROLE_WARMUP
                                          : -1;
    a->target = -1;
    if (!t)
        return fault(c, field, "missing (a string or null is required)");
    if (want < 0)
        return YAJL_IS_NULL(t) ? true : fault(c, field, "must be null for mark and prune");
    const char *s = json_str(t);
    if (!s || strcmp(s, wire_role_names[want]) != 0)
        return fault(c, field,
                     want == FEED_ROLE_INBOX ? "must be inbox for rescue"
                                             : "must be warmup for file");
    a->target = want;
    return true;
}

static bool check_action(struct chk *c, yajl_val v, size_t i, feed_action *a)
{
    char field[48];
    int64_t uv, uid, nb;
    snprintf(field, sizeof field, "actions[%zu]", i);
    if (!YAJL_IS_OBJECT(v))
        return fault(c, field, "must be an object");
    snprintf(field, sizeof field, "actions[%zu].id", i);
    if (!int_member(c, v, "id", field, 1, INT64_MAX, &a->id))
        return false;
    snprintf(field, sizeof field, "actions[%zu].kind", i);
    if (!enum_member(c, v, "kind", field, wire_action_kind_names, FEED_ACT_COUNT, &a->kind))
        return false;
    snprintf(field, sizeof field, "actions[%zu].folder", i);
    if (!str_member(c, v, "folder", field, FEED_FOLDER_NAME_MAX, false, &a->folder))
        return false;
    snprintf(field, sizeof field, "actions[%zu].uidvalidity", i);
    if (!int_member(c, v, "uidvalidity", field, 1, UID_MAX_WIRE, &uv))
        return false;
    snprintf(field, sizeof field, "actions[%zu].uid", i);
    if (!int_member(c, v, "uid", field, 1, UID_MAX_WIRE, &uid))
        return false;
    snprintf(field, sizeof field, "actions[%zu].not_before_s", i);
    if (!int_member(c, v, "not_before_s", field, 0, 604800, &nb))
        return false;
    a->uidvalidity = (uint32_t)uv;
    a->uid = (uint32_t)uid;
    a->not_before_ms = nb * 1000;
    snprintf(field, sizeof field, "actions[%zu].message_id", i);
    if (json_get(v, "message_id") &&
        !str_member(c, v, "message_id", field, FEED_MESSAGE_ID_MAX, true, &a->message_id))
        return false;
    if (a->message_id &&
        (a->message_id[0] != '<' || a->message_id[strlen(a->message_id) - 1] != '>'))
        return fault(c, field, "must be a Message-ID in angle brackets");
    return check_action_shape(c, v, i, a);
}

/* The actions array of an entry, checked into w. */
static bool check_actions(struct chk *c, yajl_val actions, wire_inbox *w)
{
    feed_inbox *in = &w->in;
    w->actions = xcalloc(actions->u.array.len + 1, sizeof *w->actions);
    for (size_t i = 0; i < actions->u.array.len; i++) {
        feed_action *a = &w->actions[in->nactions++];
        if (!check_action(c, actions->u.array.values[i], i, a))
            return false;
        for (size_t k = 0; k + 1 < in->nactions; k++)
            if (w->actions[k].id == a->id) {
                char field[48];
                snprintf(field, sizeof field, "actions[%zu].id", i);
                return fault(c, field, "appears twice");
            }
    }
    in->actions = w->actions;
    return true;
}

/* An update of a held inbox (LeaseInboxUpdate): poll class, interval, due actions. */
static bool check_update(struct chk *c, yajl_val t, wire_inbox *w)
{
    feed_inbox *in = &w->in;
    w->known = true;
    if (!enum_member(c, t, "poll_class", "poll_class", wire_poll_class_names, FEED_POLL_COUNT,
                     &in->poll_class) ||
        !int_member(c, t, "poll_interval_s", "poll_interval_s", 30, 3600, &in->poll_interval_s))
        return false;
    yajl_val actions = array_member(c, t, "actions", "actions", FEED_ACTIONS_MAX);
    return actions && check_actions(c, actions, w);
}

/* Checks one entry's tree into w (its arrays allocated); false with c's reason. */
static bool check_inbox(struct chk *c, yajl_val t, wire_inbox *w)
{
    feed_inbox *in = &w->in;
    if (!YAJL_IS_OBJECT(t)) {
        snprintf(c->reason, c->reason_len, "%s: must be an object", c->where);
        c->bad = true;
        return false;
    }
    if (!int_member(c, t, "mailbox_id", "mailbox_id", 1, INT64_MAX, &in->mailbox_id))
        return false;
    yajl_val known = json_get(t, "known");
    if (known && !YAJL_IS_TRUE(known))
        return fault(c, "known", "must be true when present");
    if (known)
        return check_update(c, t, w);
    if (!str_member(c, t, "address", "address", 254, false, &in->address))
        return false;
    if (!jobs_address_ok(in->address))
        return fault(c, "address", "not a usable mail address");
    if (!check_imap(c, json_get(t, "imap"), in) ||
        !enum_member(c, t, "poll_class", "poll_class", wire_poll_class_names, FEED_POLL_COUNT,
                     &in->poll_class) ||
        !int_member(c, t, "poll_interval_s", "poll_interval_s", 30, 3600, &in->poll_interval_s) ||
        !str_member(c, t, "warmup_folder", "warmup_folder", WARMUP_NAME_MAX, false,
                    &in->warmup_folder))
        return false;
    yajl_val folders = array_member(c, t, "folders", "folders", FEED_FOLDERS_MAX);
    yajl_val actions = folders ? array_member(c, t, "actions", "actions", FEED_ACTIONS_MAX) : NULL;
    if (!actions)
        return false;
    w->folders = xcalloc(folders->u.array.len + 1, sizeof *w->folders);
    for (size_t i = 0; i < folders->u.array.len; i++)
        if (!check_folder(c, folders->u.array.values[i], i, &w->folders[in->nfolders++]))
            return false;
    in->folders = w->folders;
    return check_actions(c, actions, w);
}

static void wipe(const char *s)
{
    if (s)
        memset((char *)s, 0, strlen(s));
}

void wire_inbox_free(wire_inbox *w)
{
    if (!w)
        return;
    wipe(w->in.password);
    wipe(w->in.oauth_token);
    free(w->folders);
    free(w->actions);
    if (w->tree)
        yajl_tree_free(w->tree);
    if (w->access_tree)
        yajl_tree_free(w->access_tree);
    free(w);
}

void wire_inbox_take_access(wire_inbox *to, wire_inbox *from)
{
    feed_inbox *t = &to->in, *f = &from->in;
    t->address = f->address;
    t->host = f->host;
    t->port = f->port;
    t->security = f->security;
    t->username = f->username;
    t->password = f->password;
    t->oauth_token = f->oauth_token;
    t->ca_file = f->ca_file;
    t->allow_plaintext_auth = f->allow_plaintext_auth;
    t->warmup_folder = f->warmup_folder;
    t->folders = f->folders;
    t->nfolders = f->nfolders;
    to->folders = from->folders;
    /* the strings live in from's full entry's tree (or the one it took them with) */
    to->access_tree = from->known ? from->access_tree : from->tree;
    if (from->known)
        from->access_tree = NULL;
    else
        from->tree = NULL; /* from's actions' strings go with it: not used after this */
    from->folders = NULL;
    f->password = f->oauth_token = NULL; /* wiped when `to` is freed */
    f->folders = NULL;
    f->nfolders = 0;
}

/* ---- splitting the inboxes array into entries ---- */

struct entry {
    size_t off, len;    /* len 0: not an object */
    int64_t mailbox_id; /* a top-level "mailbox_id" integer seen in it, else 0 */
};

struct split {
    yajl_handle h;
    size_t depth; /* 1: inside the array */
    bool id_key;  /* depth 2: the last key was mailbox_id */
    struct entry *e;
    size_t n, cap;
    bool not_array;
};

static struct entry *split_add(struct split *s)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->e = xrealloc(s->e, s->cap * sizeof *s->e);
    }
    memset(&s->e[s->n], 0, sizeof s->e[0]);
    return &s->e[s->n++];
}

static int sp_scalar(struct split *s)
{
    if (s->depth == 0)
        s->not_array = true;
    else if (s->depth == 1)
        split_add(s); /* an entry that is not an object */
    s->id_key = false;
    return s->depth > 0;
}

static int sp_null(void *ctx)
{
    return sp_scalar(ctx);
}

static int sp_bool(void *ctx, int v)
{
    (void)v;
    return sp_scalar(ctx);
}

static int sp_int(void *ctx, long long v)
{
    struct split *s = ctx;
    if (s->depth == 2 && s->id_key && v > 0)
        s->e[s->n - 1].mailbox_id = v;
    return sp_scalar(s);
}

static int sp_double(void *ctx, double v)
{
    (void)v;
    return sp_scalar(ctx);
}

static int sp_string(void *ctx, const unsigned char *str, size_t n)
{
    (void)str;
    (void)n;
    return sp_scalar(ctx);
}

static int sp_key(void *ctx, const unsigned char *k, size_t n)
{
    struct split *s = ctx;
    s->id_key = s->depth == 2 && n == 10 && !memcmp(k, "mailbox_id", 10);
    return 1;
}

static int sp_start_map(void *ctx)
{
    struct split *s = ctx;
    if (s->depth == 0) {
        s->not_array = true;
        return 0;
    }
    if (s->depth == 1)
        split_add(s)->off = yajl_get_bytes_consumed(s->h) - 1; /* the '{' just read */
    s->depth++;
    s->id_key = false;
    return 1;
}

static int sp_start_array(void *ctx)
{
    struct split *s = ctx;
    if (s->depth == 1)
        split_add(s);
    s->depth++;
    s->id_key = false;
    return 1;
}

static int sp_end_map(void *ctx)
{
    struct split *s = ctx;
    s->depth--;
    if (s->depth == 1) {
        struct entry *e = &s->e[s->n - 1];
        e->len = yajl_get_bytes_consumed(s->h) - e->off;
    }
    return 1;
}

static int sp_end_array(void *ctx)
{
    struct split *s = ctx;
    s->depth--;
    return 1;
}

static const yajl_callbacks split_callbacks = {
    .yajl_null = sp_null,
    .yajl_boolean = sp_bool,
    .yajl_integer = sp_int,
    .yajl_double = sp_double,
    .yajl_string = sp_string,
    .yajl_map_key = sp_key,
    .yajl_start_map = sp_start_map,
    .yajl_end_map = sp_end_map,
    .yajl_start_array = sp_start_array,
    .yajl_end_array = sp_end_array,
};

/* The value noted by the lease pass: ": <value>" (the key's colon comes first). */
static const char *value_at(const char *doc, size_t off, size_t *len)
{
    const char *p = doc + off, *end = doc + off + *len;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ':'))
        p++;
    *len = (size_t)(end - p);
    return p;
}

/* ---- the inbox part ---- */

static void reject(wire_inbox_part *p, size_t *cap, int64_t mailbox_id, const char *reason)
{
    if (p->nrejected == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        p->rejected = xrealloc(p->rejected, *cap * sizeof *p->rejected);
    }
    wire_inbox_rejected *r = &p->rejected[p->nrejected++];
    r->mailbox_id = mailbox_id;
    snprintf(r->reason, sizeof r->reason, "%s", reason);
}

/* LeaseId: 36 characters, hex digits and dashes at 8-4-4-4-12. */
static bool lease_id_ok(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
            return false;
    }
    return true;
}

static bool read_inbox_lease(const char *doc, size_t off, size_t len, wire_inbox_part *p)
{
    char err[192];
    const char *v = value_at(doc, off, &len);
    yajl_val t = json_parse(v, len, err, sizeof err);
    const char *id = json_str(json_get(t, "lease_id"));
    bool ok = false;
    if (!t || !YAJL_IS_OBJECT(t))
        snprintf(p->error, sizeof p->error, "inbox_lease: must be an object%s%s", t ? "" : ": ",
                 t ? "" : err);
    else if (!id || !lease_id_ok(id))
        snprintf(p->error, sizeof p->error, "inbox_lease.lease_id: must be a UUID");
    else if (!json_int(json_get(t, "ttl_s"), 60, 86400, &p->ttl_s))
        snprintf(p->error, sizeof p->error, "inbox_lease.ttl_s: must be an integer in [60, 86400]");
    else if (!json_int(json_get(t, "heartbeat_s"), 10, 3600, &p->heartbeat_s))
        snprintf(p->error, sizeof p->error,
                 "inbox_lease.heartbeat_s: must be an integer in [10, 3600]");
    else if (json_get(t, "cursor") && !json_int(json_get(t, "cursor"), 1, INT64_MAX, &p->cursor))
        snprintf(p->error, sizeof p->error, "inbox_lease.cursor: must be a positive integer");
    else {
        snprintf(p->lease_id, sizeof p->lease_id, "%s", id);
        ok = true;
    }
    if (t)
        yajl_tree_free(t);
    return ok;
}

/* One entry: parsed alone, checked, kept or set aside. */
static void read_entry(const char *v, const struct entry *e, size_t i, wire_inbox_part *p,
                       size_t *icap, size_t *rcap, i64map *seen)
{
    char where[32], reason[192];
    snprintf(where, sizeof where, "inboxes[%zu]", i);
    if (i >= WIRE_MAX_LEASE_INBOXES) {
        snprintf(reason, sizeof reason, "%s: more than %d inboxes in one answer", where,
                 WIRE_MAX_LEASE_INBOXES);
        reject(p, rcap, e->mailbox_id, reason);
        return;
    }
    if (e->len == 0) {
        snprintf(reason, sizeof reason, "%s: must be an object", where);
        reject(p, rcap, e->mailbox_id, reason);
        return;
    }
    json_error je;
    yajl_val t = json_parse_checked(v + e->off, e->len, &je);
    if (!t) {
        snprintf(reason, sizeof reason, "%s: %.150s", where, je.message);
        reject(p, rcap, e->mailbox_id, reason);
        return;
    }
    wire_inbox *w = xcalloc(1, sizeof *w);
    w->tree = t;
    struct chk c = {reason, sizeof reason, where, false};
    bool ok = check_inbox(&c, t, w);
    /* the ids kept so far (1 and up, checked): a hash set, not a scan of the list (a
     * 10,000-inbox file took 0.2 s of CPU to check by scanning) */
    if (ok && i64map_has(seen, w->in.mailbox_id))
        ok = fault(&c, "mailbox_id", "appears twice in the answer");
    if (!ok) {
        reject(p, rcap, e->mailbox_id, reason);
        wire_inbox_free(w);
        return;
    }
    if (p->ninboxes == *icap) {
        *icap = *icap ? *icap * 2 : 16;
        /* an array of pointers: sizeof a pointer is meant */
        p->inboxes = xrealloc(p->inboxes,
                              *icap * sizeof *p->inboxes); // NOLINT(bugprone-sizeof-expression)
    }
    p->inboxes[p->ninboxes++] = w;
    i64map_put(seen, w->in.mailbox_id, 1);
}

static void read_inboxes(const char *doc, size_t off, size_t len, wire_inbox_part *p)
{
    const char *v = value_at(doc, off, &len);
    struct split s = {0};
    yajl_handle h = yajl_alloc(&split_callbacks, NULL, &s);
    s.h = h;
    yajl_config(h, yajl_dont_validate_strings, 1);
    yajl_status st = yajl_parse(h, (const unsigned char *)v, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    yajl_free(h);
    if (st != yajl_status_ok || s.not_array) {
        snprintf(p->error, sizeof p->error, "inboxes: must be an array");
        free(s.e);
        return;
    }
    size_t icap = 0, rcap = 0;
    i64map seen;
    i64map_init(&seen);
    for (size_t i = 0; i < s.n; i++)
        read_entry(v, &s.e[i], i, p, &icap, &rcap, &seen);
    i64map_free(&seen);
    free(s.e);
}

void wire_inbox_part_parse(const char *doc, size_t n, const wire_lease_answer *a,
                           wire_inbox_part *out)
{
    memset(out, 0, sizeof *out);
    bool has_lease = a->inbox_lease_len > 0 && a->inbox_lease_off + a->inbox_lease_len <= n;
    bool has_inboxes = a->inboxes_len > 0 && a->inboxes_off + a->inboxes_len <= n;
    if (!has_lease && !has_inboxes)
        return;
    out->present = true;
    if (!has_lease || !has_inboxes) {
        snprintf(out->error, sizeof out->error, "%s without %s",
                 has_lease ? "inbox_lease" : "inboxes", has_lease ? "inboxes" : "inbox_lease");
        return;
    }
    if (!read_inbox_lease(doc, a->inbox_lease_off, a->inbox_lease_len, out))
        return;
    read_inboxes(doc, a->inboxes_off, a->inboxes_len, out);
    if (out->error[0]) {
        for (size_t i = 0; i < out->ninboxes; i++)
            wire_inbox_free(out->inboxes[i]);
        out->ninboxes = 0;
    }
}

static void reject_updates(wire_inbox_part *out);

void wire_inbox_file_parse(const char *doc, size_t n, wire_inbox_part *out)
{
    memset(out, 0, sizeof *out);
    out->present = true;
    size_t i = 0;
    while (i < n && (doc[i] == ' ' || doc[i] == '\t' || doc[i] == '\r' || doc[i] == '\n'))
        i++;
    if (i < n && doc[i] == '[') {
        read_inboxes(doc, i, n - i, out);
        reject_updates(out);
        return;
    }
    /* an object: a lease answer, whose inboxes are read as the lease loop reads them */
    struct lease_doc d;
    char err[192];
    wire_lease_doc_parse(doc, n, &d, err, sizeof err);
    if (!d.syntax_ok)
        snprintf(out->error, sizeof out->error, "not JSON: %s", err);
    else if (d.inbox_len[1] == 0)
        snprintf(out->error, sizeof out->error,
                 "must be an array of inboxes or an object with \"inboxes\"");
    else
        read_inboxes(doc, d.inbox_off[1], d.inbox_len[1], out);
    wire_lease_free(d.l);
    reject_updates(out);
}

/* An update needs the entry it updates: a file has none. */
static void reject_updates(wire_inbox_part *out)
{
    size_t k = 0, rcap = out->nrejected;
    for (size_t i = 0; i < out->ninboxes; i++) {
        if (!out->inboxes[i]->known) {
            out->inboxes[k++] = out->inboxes[i];
            continue;
        }
        reject(out, &rcap, out->inboxes[i]->in.mailbox_id,
               "an update (\"known\": true) of an inbox not held: needs its full entry");
        wire_inbox_free(out->inboxes[i]);
    }
    out->ninboxes = k;
}

void wire_inbox_part_free(wire_inbox_part *p)
{
    for (size_t i = 0; i < p->ninboxes; i++)
        wire_inbox_free(p->inboxes[i]);
    free(p->inboxes);
    free(p->rejected);
    memset(p, 0, sizeof *p);
}
