/* The wire module's lease document (see agent_wire.h): the lease answer, and the input of
 * `send --file`, read in one streamed pass straight into the scheduler's job structs.
 * The inbox members are skipped here, their place noted for agent_wire_inbox.c; the
 * answer's classification and the rest of the protocol are in agent_wire.c. */
#include "agent_wire.h"
#include "agent_wire_int.h"

#include "json.h"
#include "wire.h"
#include "xalloc.h"

#include <yajl/yajl_parse.h>

#include <errno.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- streaming parse ----
 * A lease can be tens of megabytes (100,000 slots). It is parsed with yajl's event
 * interface straight into the job structs: no document tree is built and freed, so
 * the parse costs about a third of the tree's CPU and none of its memory. Each value
 * is checked as it arrives; required fields are checked when their object ends. A
 * fault inside a mailbox entry marks that entry bad (the first fault is its reason) and
 * the parse goes on; the entry is set aside when it ends. Strings are checked for
 * UTF-8 one by one, so a bad byte in one password spoils one mailbox, not the lease. */

enum pctx { P_TOP, P_LEASE, P_MAILBOXES, P_MAILBOX, P_SMTP, P_SENDS, P_SEND, P_REFS, P_DONE };

enum pkey {
    K_NONE,
    K_UNKNOWN,
    K_LEASE_ID,
    K_TTL,
    K_MAILBOXES,
    K_ID,
    K_ADDRESS,
    K_DISPLAY_NAME,
    K_SMTP,
    K_SENDS,
    K_HOST,
    K_PORT,
    K_SECURITY,
    K_USERNAME,
    K_PASSWORD,
    K_OAUTH,
    K_CA_FILE,
    K_ALLOW_PLAINTEXT_AUTH,
    K_NOT_BEFORE,
    K_TO,
    K_SUBJECT,
    K_BODY,
    K_MESSAGE_ID,
    K_IN_REPLY_TO,
    K_REFERENCES,
    K_RETRY_AFTER, /* lenient: a value of another type is ignored, never a fault */
    K_SERVICE,     /* lenient */
};

struct keyname {
    const char *name;
    size_t len;
    enum pctx ctx;
    enum pkey key;
};

#define KEY(ctx, name, key)                                                                        \
    {                                                                                              \
        (name), sizeof(name) - 1, (ctx), (key)                                                     \
    }

static const struct keyname keys[] = {
    KEY(P_LEASE, "lease_id", K_LEASE_ID),
    KEY(P_LEASE, "ttl_s", K_TTL),
    KEY(P_LEASE, "mailboxes", K_MAILBOXES),
    KEY(P_LEASE, "retry_after_s", K_RETRY_AFTER),
    KEY(P_LEASE, "service", K_SERVICE),
    KEY(P_MAILBOX, "id", K_ID),
    KEY(P_MAILBOX, "address", K_ADDRESS),
    KEY(P_MAILBOX, "display_name", K_DISPLAY_NAME),
    KEY(P_MAILBOX, "smtp", K_SMTP),
    KEY(P_MAILBOX, "sends", K_SENDS),
    KEY(P_SMTP, "host", K_HOST),
    KEY(P_SMTP, "port", K_PORT),
    KEY(P_SMTP, "security", K_SECURITY),
    KEY(P_SMTP, "username", K_USERNAME),
    KEY(P_SMTP, "password", K_PASSWORD),
    KEY(P_SMTP, "oauth_token", K_OAUTH),
    KEY(P_SMTP, "ca_file", K_CA_FILE),
    KEY(P_SMTP, "allow_plaintext_auth", K_ALLOW_PLAINTEXT_AUTH),
    KEY(P_SEND, "id", K_ID),
    KEY(P_SEND, "not_before_s", K_NOT_BEFORE),
    KEY(P_SEND, "to", K_TO),
    KEY(P_SEND, "subject", K_SUBJECT),
    KEY(P_SEND, "body", K_BODY),
    KEY(P_SEND, "message_id", K_MESSAGE_ID),
    KEY(P_SEND, "in_reply_to", K_IN_REPLY_TO),
    KEY(P_SEND, "references", K_REFERENCES),
};

/* fields seen in the object being parsed */
enum { SEEN_ID = 1, SEEN_SMTP = 2, SEEN_SENDS = 4, SEEN_PORT = 8, SEEN_SECURITY = 16 };

#define PARSE_DEPTH 8

struct parse {
    wire_lease *l;
    size_t mb_cap, send_cap;
    job_mailbox *m; /* the mailbox being filled, already in l->mailboxes */
    job_send *s;    /* the send being filled, already in m->sends */
    enum pctx stack[PARSE_DEPTH];
    int depth;
    enum pkey key; /* the current object's key whose value comes next */
    int skip;      /* > 0: inside a value of an unknown key, this deep */
    unsigned mb_seen, send_seen;
    bool have_mailboxes;
    size_t mb_count; /* entries of "mailboxes" seen: the current one is mb_count - 1 */
    size_t rejected_cap;
    bool mb_bad;         /* the current mailbox entry failed validation */
    char mb_reason[192]; /* its first fault */
    bool lease_fault;    /* a lease-level field failed (err says which); parsing goes on */
    bool lease_id_seen;  /* "lease_id" came, */
    bool lease_id_null;  /* and its last value was null */
    yajl_handle h;
    int capture;        /* 1 + index of the inbox member whose value is being skipped */
    size_t capture_off; /* where its value starts (after the key) */
    size_t inbox_off[2], inbox_len[2]; /* inbox_lease, inboxes: left for agent_wire_inbox.c */
    char *err;
    size_t errlen;
};

static enum pctx top(const struct parse *p)
{
    return p->stack[p->depth - 1];
}

/* "mailboxes[3]", "mailboxes[3].smtp" or "mailboxes[3].sends[1]" for messages */
static void where(const struct parse *p, enum pctx ctx, char *out, size_t outlen)
{
    size_t mi = p->mb_count ? p->mb_count - 1 : 0;
    if (ctx == P_SMTP)
        snprintf(out, outlen, "mailboxes[%zu].smtp", mi);
    else if (ctx == P_SEND || ctx == P_SENDS || ctx == P_REFS)
        snprintf(out, outlen, "mailboxes[%zu].sends[%zu]", mi,
                 p->m && p->m->nsends ? p->m->nsends - 1 : 0);
    else if (ctx == P_MAILBOX)
        snprintf(out, outlen, "mailboxes[%zu]", mi);
    else
        snprintf(out, outlen, "lease");
}

/* Inside a mailbox entry (its object, its smtp object, its sends)? */
static bool in_mailbox(const struct parse *p)
{
    return p->depth >= 4 && p->stack[3] == P_MAILBOX;
}

/* The current mailbox entry is bad: keep the first reason, go on parsing (1). */
static int mailbox_bad(struct parse *p, const char *reason)
{
    if (!p->mb_bad)
        snprintf(p->mb_reason, sizeof p->mb_reason, "%s", reason);
    p->mb_bad = true;
    p->key = K_NONE;
    return 1;
}

static wire_rejected *rejected_add(struct parse *p, int64_t mailbox_id, const char *reason)
{
    wire_lease *l = p->l;
    if (l->nrejected == p->rejected_cap) {
        p->rejected_cap = p->rejected_cap ? p->rejected_cap * 2 : 4;
        l->rejected = xrealloc(l->rejected, p->rejected_cap * sizeof *l->rejected);
    }
    wire_rejected *r = &l->rejected[l->nrejected++];
    memset(r, 0, sizeof *r);
    r->mailbox_id = mailbox_id;
    snprintf(r->reason, sizeof r->reason, "%s", reason);
    return r;
}

/* The current mailbox entry ended bad: it leaves the lease, its readable slot ids are
 * kept for the report. */
static void mailbox_set_aside(struct parse *p)
{
    wire_lease *l = p->l;
    job_mailbox *m = p->m;
    wire_rejected *r = rejected_add(p, m->id, p->mb_reason);
    if (m->nsends) {
        r->send_ids = xcalloc(m->nsends, sizeof *r->send_ids);
        for (size_t i = 0; i < m->nsends; i++)
            if (m->sends[i].id > 0)
                r->send_ids[r->nsend_ids++] = m->sends[i].id;
    }
    job_mailbox_free(m);
    l->mailboxes[--l->nmailboxes] = NULL;
    p->m = NULL;
    p->s = NULL;
}

/* Sets the error "<where>.<field>: <what>" (just "<field>: <what>" at lease level) and
 * returns 0, which stops yajl; at lease level it keeps the first fault and returns 1;
 * inside a mailbox entry it marks the entry bad instead and returns 1. */
static int fail(struct parse *p, const char *field, const char *what)
{
    char w[64];
    enum pctx ctx = top(p);
    if (ctx == P_LEASE || ctx == P_TOP || ctx == P_MAILBOXES) {
        if (!p->lease_fault) {
            if (field)
                snprintf(p->err, p->errlen, "%s: %s", field, what);
            else
                snprintf(p->err, p->errlen, "%s", what);
        }
        if (ctx != P_LEASE)
            return 0;
        /* the first fault is the answer's; the parse goes on so that every lease field
         * is seen (an empty answer is known by its lease_id whatever else it holds) */
        p->lease_fault = true;
        p->key = K_NONE;
        return 1;
    }
    char msg[192];
    where(p, ctx, w, sizeof w);
    if (field)
        snprintf(msg, sizeof msg, "%s.%s: %s", w, field, what);
    else
        snprintf(msg, sizeof msg, "%s: %s", w, what);
    if (in_mailbox(p))
        return mailbox_bad(p, msg);
    snprintf(p->err, p->errlen, "%s", msg);
    return 0;
}

static const char *key_name(enum pctx ctx, enum pkey k)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].ctx == ctx && keys[i].key == k)
            return keys[i].name;
    return "?";
}

static int push(struct parse *p, enum pctx ctx)
{
    if (p->depth == PARSE_DEPTH)
        return fail(p, NULL, "nested too deeply");
    p->stack[p->depth++] = ctx;
    p->key = K_NONE;
    return 1;
}

/* A value arrives in an array (key K_NONE) or for p->key; the value of an unknown key,
 * with everything inside it, is skipped. True when this value is to be ignored. */
static bool skipping(const struct parse *p)
{
    return p->skip > 0 || p->key == K_UNKNOWN;
}

/* The lease's inbox members are skipped here and read by agent_wire_inbox.c: their
 * value's place in the document is noted when the value ends. */
static void capture_end(struct parse *p)
{
    if (p->capture && p->skip == 0) {
        size_t end = yajl_get_bytes_consumed(p->h);
        p->inbox_off[p->capture - 1] = p->capture_off;
        p->inbox_len[p->capture - 1] = end > p->capture_off ? end - p->capture_off : 0;
        p->capture = 0;
    }
}

/* skipping() for a scalar value, which ends where it is read. */
static bool skipped_scalar(struct parse *p)
{
    if (!skipping(p))
        return false;
    if (p->key == K_UNKNOWN)
        capture_end(p);
    return true;
}

/* A lenient key (retry_after_s, service) whose value has another type than the one
 * read: the value is passed over like an unknown key's. */
static void lenient_other(struct parse *p)
{
    if (p->skip == 0 && (p->key == K_RETRY_AFTER || p->key == K_SERVICE))
        p->key = K_UNKNOWN;
}

static int wrong_type(struct parse *p, const char *what)
{
    enum pctx ctx = top(p);
    char msg[96];
    if (ctx == P_TOP)
        return fail(p, NULL, "top level: must be an object");
    if (ctx == P_MAILBOXES) { /* an entry that is not an object: nothing to send */
        snprintf(msg, sizeof msg, "mailboxes[%zu]: must be an object", p->mb_count++);
        rejected_add(p, 0, msg);
        return 1;
    }
    if (ctx == P_SENDS) {
        snprintf(msg, sizeof msg, "mailboxes[%zu].sends[%zu]: must be an object", p->mb_count - 1,
                 p->m->nsends);
        return mailbox_bad(p, msg);
    }
    if (ctx == P_REFS)
        return fail(p, "references", "must be an array of msg-id strings");
    return fail(p, key_name(ctx, p->key), what);
}

/* An object or array where it does not belong: inside a mailbox entry (or as an entry)
 * the bad value is skipped whole and the parse goes on. */
static int wrong_container(struct parse *p, const char *what)
{
    if (!wrong_type(p, what))
        return 0;
    p->skip = 1;
    return 1;
}

static const char *int_rule(enum pkey k)
{
    switch (k) {
    case K_TTL:
        return "must be an integer in [1, 604800]";
    case K_PORT:
        return "must be an integer in [1, 65535]";
    case K_NOT_BEFORE:
        return "must be an integer in [0, 604800]";
    case K_MAILBOXES:
        return "missing (an array is required)";
    case K_SMTP:
        return "missing (an object is required)";
    case K_SENDS:
        return "missing (an array is required)";
    case K_ID:
        return "must be a positive integer";
    case K_ALLOW_PLAINTEXT_AUTH:
        return "must be true, false or null";
    case K_REFERENCES:
        return "must be an array of msg-id strings or null";
    default:
        return "must be a string or null";
    }
}

static int on_integer(void *ctx, long long v)
{
    struct parse *p = ctx;
    if (skipped_scalar(p))
        return 1;
    enum pkey k = p->key;
    p->key = K_NONE;
    switch (k) {
    case K_TTL:
        if (v < 1 || v > (int64_t)7 * 86400)
            break;
        p->l->ttl_s = v;
        return 1;
    case K_ID:
        if (v < 1)
            break;
        if (top(p) == P_MAILBOX) {
            p->m->id = v;
            p->mb_seen |= SEEN_ID;
        } else {
            p->s->id = v;
            p->send_seen |= SEEN_ID;
        }
        return 1;
    case K_PORT:
        if (v < 1 || v > 65535)
            break;
        p->m->port = (int)v;
        p->mb_seen |= SEEN_PORT;
        return 1;
    case K_NOT_BEFORE:
        if (v < 0 || v > (int64_t)7 * 86400)
            break;
        p->s->not_before_s = v;
        return 1;
    case K_RETRY_AFTER:
        if (v >= 0 && v <= 86400)
            p->l->retry_after_s = v;
        return 1;
    case K_SERVICE:
        return 1;
    default:
        break;
    }
    p->key = k;
    return wrong_type(p, int_rule(k));
}

static int on_other(struct parse *p)
{
    lenient_other(p);
    if (skipped_scalar(p))
        return 1;
    enum pkey k = p->key;
    return wrong_type(p, int_rule(k));
}

static int on_double(void *ctx, double v)
{
    (void)v;
    return on_other(ctx);
}

static int on_boolean(void *ctx, int v)
{
    struct parse *p = ctx;
    if (!skipping(p) && p->key == K_ALLOW_PLAINTEXT_AUTH) {
        p->m->allow_plaintext_auth = v != 0;
        p->key = K_NONE;
        return 1;
    }
    return on_other(ctx);
}

static int on_null(void *ctx)
{
    struct parse *p = ctx;
    if (skipped_scalar(p))
        return 1;
    switch (p->key) {
    case K_LEASE_ID:
        p->lease_id_null = true;
        p->key = K_NONE;
        return 1;
    case K_DISPLAY_NAME:
    case K_USERNAME:
    case K_PASSWORD:
    case K_OAUTH:
    case K_CA_FILE:
    case K_ALLOW_PLAINTEXT_AUTH:
    case K_MESSAGE_ID:
    case K_IN_REPLY_TO:
    case K_REFERENCES:
    case K_NOT_BEFORE:
        p->key = K_NONE; /* null is the default these already hold */
        return 1;
    default:
        return on_other(p);
    }
}

#define MSGID_RULE "must be a msg-id <left@right> of at most 250 bytes"

/* One element of a send's "references" (a bad one sets the mailbox entry aside, as any
 * bad field of a slot does). */
static int add_reference(struct parse *p, const unsigned char *s, size_t n)
{
    int rc = job_send_add_reference(p->s, (const char *)s, n);
    return rc == 0 ? 1 : fail(p, "references", rc == -E2BIG ? "more than 20 msg-ids" : MSGID_RULE);
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    struct parse *p = ctx;
    if (skipped_scalar(p))
        return 1;
    enum pkey k = p->key;
    enum pctx c = top(p);
    if (c == P_REFS)
        return add_reference(p, s, n);
    if (k == K_RETRY_AFTER || k == K_SERVICE) {
        p->key = K_NONE;
        if (k == K_SERVICE && !memchr(s, 0, n) && utf8_valid((const char *)s, n)) {
            snprintf(p->l->service, sizeof p->l->service, "%.*s", (int)n, (const char *)s);
            p->l->has_service = true;
        }
        return 1;
    }
    if (k == K_NONE || k == K_TTL || k == K_ID || k == K_PORT || k == K_NOT_BEFORE ||
        k == K_MAILBOXES || k == K_SMTP || k == K_SENDS || k == K_ALLOW_PLAINTEXT_AUTH ||
        k == K_REFERENCES)
        return wrong_type(p, int_rule(k));
    if (memchr(s, 0, n))
        return fail(p, key_name(c, k), "contains a NUL character");
    if (!utf8_valid((const char *)s, n))
        return fail(p, key_name(c, k), "not valid UTF-8");
    p->key = K_NONE;
    job_mailbox *m = p->m;
    job_send *js = p->s;
    switch (k) {
    case K_LEASE_ID:
        wire_set_str(&p->l->lease_id, s, n, false);
        p->lease_id_null = false;
        return 1;
    case K_ADDRESS:
        wire_set_str(&m->address, s, n, false);
        if (!jobs_address_ok(m->address))
            return fail(p, "address", "not a usable mail address");
        return 1;
    case K_DISPLAY_NAME:
        wire_set_str(&m->display_name, s, n, false);
        if (!wire_no_controls(m->display_name))
            return fail(p, "display_name", "control characters");
        return 1;
    case K_HOST:
        wire_set_str(&m->host, s, n, false);
        if (!m->host[0] || strlen(m->host) > 253 || strpbrk(m->host, " \t\r\n/"))
            return fail(p, "host", "not a host name or address");
        return 1;
    case K_SECURITY:
        if (n == 5 && !memcmp(s, "plain", 5))
            m->security = SMTP_SEC_PLAIN;
        else if (n == 8 && !memcmp(s, "starttls", 8))
            m->security = SMTP_SEC_STARTTLS;
        else if (n == 3 && !memcmp(s, "tls", 3))
            m->security = SMTP_SEC_TLS;
        else
            return fail(p, "security", "must be plain, starttls or tls");
        p->mb_seen |= SEEN_SECURITY;
        return 1;
    case K_USERNAME:
    case K_PASSWORD:
    case K_OAUTH: {
        char **slot = k == K_USERNAME   ? &m->username
                      : k == K_PASSWORD ? &m->password
                                        : &m->oauth_token;
        wire_set_str(slot, s, n, k != K_USERNAME);
        if (!wire_no_controls(*slot))
            return fail(p, NULL, "credentials contain control characters");
        return 1;
    }
    case K_CA_FILE:
        wire_set_str(&m->ca_file, s, n, false);
        return 1;
    case K_TO:
        wire_set_str(&js->to, s, n, false);
        if (!jobs_address_ok(js->to))
            return fail(p, "to", "not a usable mail address");
        return 1;
    case K_SUBJECT:
        wire_set_str(&js->subject, s, n, false);
        if (!wire_no_controls(js->subject) || n > 900)
            return fail(p, "subject", "control characters or longer than 900 bytes");
        return 1;
    case K_BODY:
        wire_set_str(&js->body, s, n, false);
        return 1;
    case K_MESSAGE_ID:
        wire_set_str(&js->message_id, s, n, false);
        if (!wire_printable_ascii(js->message_id) || n > 900 || js->message_id[0] != '<' ||
            !strchr(js->message_id, '>'))
            return fail(p, "message_id", "must look like <id@domain>");
        return 1;
    case K_IN_REPLY_TO:
        wire_set_str(&js->in_reply_to, s, n, false);
        if (!wire_msgid_ok(js->in_reply_to, n))
            return fail(p, "in_reply_to", MSGID_RULE);
        return 1;
    default:
        return wrong_type(p, "must be a string or null");
    }
}

static const char *const inbox_keys[2] = {"inbox_lease", "inboxes"};

static int on_map_key(void *ctx, const unsigned char *s, size_t n)
{
    struct parse *p = ctx;
    if (p->skip > 0)
        return 1;
    enum pctx c = top(p);
    p->key = K_UNKNOWN;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].ctx == c && keys[i].len == n && !memcmp(keys[i].name, s, n)) {
            p->key = keys[i].key;
            break;
        }
    if (p->key == K_LEASE_ID)
        p->lease_id_seen = true;
    p->capture = 0;
    if (c == P_LEASE && p->key == K_UNKNOWN)
        for (int i = 0; i < 2; i++)
            if (n == strlen(inbox_keys[i]) && !memcmp(s, inbox_keys[i], n)) {
                p->capture = i + 1;
                p->capture_off = yajl_get_bytes_consumed(p->h);
            }
    return 1;
}

static int on_start_map(void *ctx)
{
    struct parse *p = ctx;
    lenient_other(p);
    if (skipping(p)) {
        p->skip++;
        return 1;
    }
    switch (top(p)) {
    case P_TOP:
        return push(p, P_LEASE);
    case P_MAILBOXES: {
        wire_lease *l = p->l;
        if (l->nmailboxes == p->mb_cap) {
            p->mb_cap = p->mb_cap ? p->mb_cap * 2 : 64;
            /* an array of pointers: sizeof a pointer is meant */
            l->mailboxes =
                xrealloc(l->mailboxes,
                         p->mb_cap * sizeof *l->mailboxes); // NOLINT(bugprone-sizeof-expression)
        }
        p->m = xcalloc(1, sizeof *p->m);
        l->mailboxes[l->nmailboxes++] = p->m;
        p->mb_count++;
        p->mb_seen = 0;
        p->mb_bad = false;
        p->send_cap = 0;
        return push(p, P_MAILBOX);
    }
    case P_SENDS: {
        job_mailbox *m = p->m;
        if (m->nsends == p->send_cap) {
            p->send_cap = p->send_cap ? p->send_cap * 2 : 4;
            m->sends = xrealloc(m->sends, p->send_cap * sizeof *m->sends);
        }
        p->s = &m->sends[m->nsends++];
        memset(p->s, 0, sizeof *p->s);
        p->send_seen = 0;
        return push(p, P_SEND);
    }
    case P_MAILBOX:
        if (p->key == K_SMTP) {
            p->mb_seen |= SEEN_SMTP;
            return push(p, P_SMTP);
        }
        break;
    default:
        break;
    }
    return wrong_container(p, int_rule(p->key));
}

static int on_start_array(void *ctx)
{
    struct parse *p = ctx;
    lenient_other(p);
    if (skipping(p)) {
        p->skip++;
        return 1;
    }
    if (top(p) == P_LEASE && p->key == K_MAILBOXES) {
        p->have_mailboxes = true;
        return push(p, P_MAILBOXES);
    }
    if (top(p) == P_MAILBOX && p->key == K_SENDS) {
        p->mb_seen |= SEEN_SENDS;
        return push(p, P_SENDS);
    }
    if (top(p) == P_SEND && p->key == K_REFERENCES) {
        job_send_clear_references(p->s); /* a duplicate key: the last one counts */
        return push(p, P_REFS);
    }
    return wrong_container(p, int_rule(p->key));
}

static int missing(struct parse *p, const char *field, const char *what)
{
    char msg[64];
    snprintf(msg, sizeof msg, "missing (%s is required)", what);
    return fail(p, field, msg);
}

/* An object ends: its required fields must all have come. */
static int end_object(struct parse *p)
{
    switch (top(p)) {
    case P_SEND: {
        job_send *s = p->s;
        if (!(p->send_seen & SEEN_ID))
            return fail(p, "id", "must be a positive integer");
        if (!s->to)
            return missing(p, "to", "a string");
        if (!s->subject)
            return missing(p, "subject", "a string");
        if (!s->body)
            return missing(p, "body", "a string");
        if ((s->in_reply_to != NULL) != (s->nreferences > 0))
            return fail(p, s->in_reply_to ? "references" : "in_reply_to",
                        "a reply carries both in_reply_to and references");
        return 1;
    }
    case P_SMTP: {
        job_mailbox *m = p->m;
        if (!m->host)
            return missing(p, "host", "a string");
        if (!(p->mb_seen & SEEN_PORT))
            return fail(p, "port", "must be an integer in [1, 65535]");
        if (!(p->mb_seen & SEEN_SECURITY))
            return missing(p, "security", "a string");
        return 1;
    }
    case P_MAILBOX:
        if (!(p->mb_seen & SEEN_ID))
            return fail(p, "id", "must be a positive integer");
        if (!p->m->address)
            return missing(p, "address", "a string");
        if (!(p->mb_seen & SEEN_SMTP))
            return missing(p, "smtp", "an object");
        if (!(p->mb_seen & SEEN_SENDS))
            return missing(p, "sends", "an array");
        if (!p->m->sends)
            p->m->sends = xcalloc(1, sizeof *p->m->sends);
        return 1;
    case P_LEASE:
        if (!p->have_mailboxes)
            return fail(p, "mailboxes", "missing (an array is required)");
        return 1;
    default:
        return 1;
    }
}

static int on_end(void *ctx)
{
    struct parse *p = ctx;
    if (p->skip > 0) {
        p->skip--;
        capture_end(p);
        if (!p->skip)
            p->key = K_NONE;
        return 1;
    }
    if (end_object(p) == 0)
        return 0;
    if (top(p) == P_MAILBOX && p->mb_bad)
        mailbox_set_aside(p);
    p->depth--;
    p->key = K_NONE;
    if (p->depth == 1 && top(p) == P_TOP)
        p->stack[0] = P_DONE;
    return 1;
}

static const yajl_callbacks parse_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_integer = on_integer,
    .yajl_double = on_double,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

void wire_lease_doc_parse(const char *data, size_t n, struct lease_doc *d, char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    struct parse p = {.depth = 1, .err = err, .errlen = errlen};
    p.stack[0] = P_TOP;
    p.l = xcalloc(1, sizeof *p.l);
    p.l->ttl_s = 600;
    p.l->retry_after_s = 5;
    yajl_handle h = yajl_alloc(&parse_callbacks, NULL, &p);
    p.h = h;
    /* each string is checked in on_string: a bad byte rejects its mailbox only */
    yajl_config(h, yajl_dont_validate_strings, 1);
    yajl_status st = yajl_parse(h, (const unsigned char *)data, n);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st == yajl_status_error && !(errlen && err[0])) { /* a field's fault came first */
        unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)data, n);
        const char *m = msg ? (const char *)msg : "parse error";
        size_t len = strcspn(m, "\n"); /* yajl's message spans lines: keep the first */
        snprintf(err, errlen, "malformed JSON: %.*s", (int)len, m);
        if (msg)
            yajl_free_error(h, msg);
    }
    yajl_free(h);
    if (st != yajl_status_ok && errlen && !err[0])
        snprintf(err, errlen, "malformed JSON");
    else if (st == yajl_status_ok && p.stack[0] != P_DONE)
        snprintf(err, errlen, "top level: must be an object");
    *d = (struct lease_doc){p.l,
                            st == yajl_status_ok && p.stack[0] == P_DONE,
                            p.lease_fault,
                            p.lease_id_seen,
                            p.lease_id_null,
                            {p.inbox_off[0], p.inbox_off[1]},
                            {p.inbox_len[0], p.inbox_len[1]}};
    if (!p.l->mailboxes) /* an empty array still gets a (one-entry) table */
        p.l->mailboxes = xcalloc(1, sizeof *p.l->mailboxes); // NOLINT(bugprone-sizeof-expression)
}
