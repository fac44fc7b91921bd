/* Typed views of IMAP responses (see imap_resp.h): response codes, capabilities,
 * LIST, STATUS, FETCH, SEARCH, FLAGS, read from the value tree that imap_resp.c built.
 * A known response whose values do not have its shape is a protocol error: a session
 * must not act on a COPYUID or a UID it could only half read. */
#include "imap_resp.h"

#include "imap_resp_internal.h"

#include <string.h>

int imap_node_u32(const imap_node *n, bool allow_zero, uint32_t *out)
{
    if (!n || n->type != IMAP_N_ATOM || !n->len || n->len > 10)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n->len; i++) {
        if (n->s[i] < '0' || n->s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(n->s[i] - '0');
    }
    if (v > UINT32_MAX || (!v && !allow_zero))
        return -1;
    *out = (uint32_t)v;
    return 0;
}

bool imap_node_is(const imap_node *n, const char *s)
{
    return n && (n->type == IMAP_N_ATOM || n->type == IMAP_N_STRING) &&
           imap_word_is(n->s, n->len, s);
}

/* ---- name tables ---- */

typedef struct name_bit {
    const char *name;
    size_t len; /* strlen(name): a word of another length is not compared */
    unsigned bit;
} name_bit;
#define NAME_BIT(s, b)                                                                             \
    {                                                                                              \
        s, sizeof(s) - 1, b                                                                        \
    }

static const name_bit cap_names[] = {
    NAME_BIT("IMAP4rev1", IMAP_CAP_IMAP4REV1),
    NAME_BIT("IMAP4rev2", IMAP_CAP_IMAP4REV2),
    NAME_BIT("STARTTLS", IMAP_CAP_STARTTLS),
    NAME_BIT("LOGINDISABLED", IMAP_CAP_LOGINDISABLED),
    NAME_BIT("AUTH=PLAIN", IMAP_CAP_AUTH_PLAIN),
    NAME_BIT("AUTH=XOAUTH2", IMAP_CAP_AUTH_XOAUTH2),
    NAME_BIT("AUTH=OAUTHBEARER", IMAP_CAP_AUTH_OAUTHBEARER),
    NAME_BIT("SASL-IR", IMAP_CAP_SASL_IR),
    NAME_BIT("LITERAL+", IMAP_CAP_LITERAL_PLUS),
    NAME_BIT("LITERAL-", IMAP_CAP_LITERAL_MINUS),
    NAME_BIT("IDLE", IMAP_CAP_IDLE),
    NAME_BIT("MOVE", IMAP_CAP_MOVE),
    NAME_BIT("UIDPLUS", IMAP_CAP_UIDPLUS),
    NAME_BIT("SPECIAL-USE", IMAP_CAP_SPECIAL_USE),
    NAME_BIT("LIST-EXTENDED", IMAP_CAP_LIST_EXTENDED),
    NAME_BIT("LIST-STATUS", IMAP_CAP_LIST_STATUS),
    NAME_BIT("NAMESPACE", IMAP_CAP_NAMESPACE),
    NAME_BIT("ID", IMAP_CAP_ID),
    NAME_BIT("ENABLE", IMAP_CAP_ENABLE),
    NAME_BIT("CONDSTORE", IMAP_CAP_CONDSTORE),
    NAME_BIT("UNSELECT", IMAP_CAP_UNSELECT),
    NAME_BIT("X-GM-EXT-1", IMAP_CAP_X_GM_EXT_1),
    NAME_BIT("UTF8=ACCEPT", IMAP_CAP_UTF8_ACCEPT),
};

static const name_bit mbox_names[] = {
    NAME_BIT("\\Noinferiors", IMAP_MB_NOINFERIORS),
    NAME_BIT("\\Noselect", IMAP_MB_NOSELECT),
    NAME_BIT("\\Marked", IMAP_MB_MARKED),
    NAME_BIT("\\Unmarked", IMAP_MB_UNMARKED),
    NAME_BIT("\\NonExistent", IMAP_MB_NONEXISTENT),
    NAME_BIT("\\Subscribed", IMAP_MB_SUBSCRIBED),
    NAME_BIT("\\HasChildren", IMAP_MB_HASCHILDREN),
    NAME_BIT("\\HasNoChildren", IMAP_MB_HASNOCHILDREN),
    NAME_BIT("\\All", IMAP_MB_ALL),
    NAME_BIT("\\Archive", IMAP_MB_ARCHIVE),
    NAME_BIT("\\Drafts", IMAP_MB_DRAFTS),
    NAME_BIT("\\Flagged", IMAP_MB_FLAGGED),
    NAME_BIT("\\Junk", IMAP_MB_JUNK),
    NAME_BIT("\\Sent", IMAP_MB_SENT),
    NAME_BIT("\\Trash", IMAP_MB_TRASH),
    NAME_BIT("\\Important", IMAP_MB_IMPORTANT),
};

static const name_bit flag_names[] = {
    NAME_BIT("\\Seen", IMAP_FL_SEEN),       NAME_BIT("\\Answered", IMAP_FL_ANSWERED),
    NAME_BIT("\\Flagged", IMAP_FL_FLAGGED), NAME_BIT("\\Deleted", IMAP_FL_DELETED),
    NAME_BIT("\\Draft", IMAP_FL_DRAFT),     NAME_BIT("\\Recent", IMAP_FL_RECENT),
    NAME_BIT("\\*", IMAP_FL_ANY),
};

static unsigned bits_of(const imap_node *chain, const name_bit *tab, size_t ntab)
{
    unsigned bits = 0;
    for (const imap_node *n = chain; n; n = n->next) {
        if (n->type != IMAP_N_ATOM)
            continue;
        for (size_t i = 0; i < ntab; i++)
            if (n->len == tab[i].len && imap_word_is(n->s, n->len, tab[i].name))
                bits |= tab[i].bit;
    }
    return bits;
}

#define NTAB(t) (sizeof(t) / sizeof((t)[0]))

/* ---- uid sets ---- */

static size_t read_u32(const char *s, size_t len, size_t i, uint32_t *v)
{
    uint64_t x = 0;
    size_t st = i;
    while (i < len && s[i] >= '0' && s[i] <= '9' && i - st < 11) {
        x = x * 10 + (uint64_t)(s[i] - '0');
        i++;
    }
    if (i == st || x == 0 || x > UINT32_MAX)
        return 0;
    *v = (uint32_t)x;
    return i;
}

long imap_uidset_parse(const char *s, size_t len, uint32_t *out, size_t max)
{
    size_t i = 0, count = 0;
    if (!len)
        return -1;
    for (;;) {
        uint32_t lo, hi;
        size_t j = read_u32(s, len, i, &lo);
        if (!j)
            return -1;
        hi = lo;
        if (j < len && s[j] == ':') {
            j = read_u32(s, len, j + 1, &hi);
            if (!j)
                return -1;
        }
        if (lo > hi) {
            uint32_t t = lo;
            lo = hi;
            hi = t;
        }
        if ((uint64_t)hi - lo + 1 > max - count)
            return -1;
        if (!out)
            count += (size_t)hi - lo + 1;
        for (uint64_t u = lo; out && u <= hi; u++)
            out[count++] = (uint32_t)u;
        if (j == len)
            return (long)count;
        if (s[j] != ',')
            return -1;
        i = j + 1;
    }
}

/* A uid set's syntax, without expanding it (a range may be large). */
static bool uidset_ok(const imap_node *n)
{
    if (!n || n->type != IMAP_N_ATOM)
        return false;
    size_t i = 0;
    for (;;) {
        uint32_t v;
        i = read_u32(n->s, n->len, i, &v);
        if (!i)
            return false;
        if (i < n->len && n->s[i] == ':') {
            i = read_u32(n->s, n->len, i + 1, &v);
            if (!i)
                return false;
        }
        if (i == n->len)
            return true;
        if (n->s[i] != ',')
            return false;
        i++;
    }
}

/* ---- response codes ---- */

static const struct {
    const char *name;
    int code;
} code_names[] = {
    {"ALERT", IMAP_CODE_ALERT},
    {"CAPABILITY", IMAP_CODE_CAPABILITY},
    {"PERMANENTFLAGS", IMAP_CODE_PERMANENTFLAGS},
    {"READ-ONLY", IMAP_CODE_READ_ONLY},
    {"READ-WRITE", IMAP_CODE_READ_WRITE},
    {"TRYCREATE", IMAP_CODE_TRYCREATE},
    {"UIDVALIDITY", IMAP_CODE_UIDVALIDITY},
    {"UIDNEXT", IMAP_CODE_UIDNEXT},
    {"COPYUID", IMAP_CODE_COPYUID},
    {"APPENDUID", IMAP_CODE_APPENDUID},
    {"THROTTLED", IMAP_CODE_THROTTLED},
    {"NONEXISTENT", IMAP_CODE_NONEXISTENT},
    {"AUTHENTICATIONFAILED", IMAP_CODE_AUTHENTICATIONFAILED},
    {"UNAVAILABLE", IMAP_CODE_UNAVAILABLE},
};

int imap_resp_code_view(arena *a, imap_resp *r, const imap_resp_limits *lim, unsigned *items,
                        const char **err)
{
    imap_resp_code *c = &r->code;
    c->code = IMAP_CODE_OTHER;
    size_t name_len = strlen(c->name);
    for (size_t i = 0; i < NTAB(code_names); i++)
        if (imap_word_is(c->name, name_len, code_names[i].name)) {
            c->code = code_names[i].code;
            break;
        }
    if (c->code != IMAP_CODE_CAPABILITY && c->code != IMAP_CODE_PERMANENTFLAGS &&
        c->code != IMAP_CODE_UIDVALIDITY && c->code != IMAP_CODE_UIDNEXT &&
        c->code != IMAP_CODE_COPYUID && c->code != IMAP_CODE_APPENDUID)
        return 0; /* no arguments to read (those of unknown codes stay raw) */
    imap_node *v = NULL;
    size_t nv = 0;
    if (imap_values_parse(a, c->args, c->args_len, lim, items, &v, &nv, err) < 0)
        return -1;
    switch (c->code) {
    case IMAP_CODE_CAPABILITY:
        r->caps = bits_of(v, cap_names, NTAB(cap_names));
        return 0;
    case IMAP_CODE_PERMANENTFLAGS:
        if (nv != 1 || v->type != IMAP_N_LIST)
            break;
        c->list = v;
        c->flags = bits_of(v->child, flag_names, NTAB(flag_names));
        return 0;
    case IMAP_CODE_UIDVALIDITY:
    case IMAP_CODE_UIDNEXT:
        if (nv != 1 || imap_node_u32(v, false, &c->number) < 0)
            break;
        return 0;
    case IMAP_CODE_COPYUID:
        if (nv != 3 || imap_node_u32(v, false, &c->number) < 0 || !uidset_ok(v->next) ||
            !uidset_ok(v->next->next))
            break;
        c->src_uids = v->next->s;
        c->dst_uids = v->next->next->s;
        return 0;
    case IMAP_CODE_APPENDUID:
        if (nv != 2 || imap_node_u32(v, false, &c->number) < 0 || !uidset_ok(v->next))
            break;
        c->dst_uids = v->next->s;
        return 0;
    default:
        return 0;
    }
    *err = "malformed arguments of a response code";
    return -1;
}

/* ---- data responses ---- */

static const struct {
    const char *name;
    int data;
} data_names[] = {
    {"CAPABILITY", IMAP_DATA_CAPABILITY},
    {"LIST", IMAP_DATA_LIST},
    {"LSUB", IMAP_DATA_LSUB},
    {"STATUS", IMAP_DATA_STATUS},
    {"FLAGS", IMAP_DATA_FLAGS},
    {"SEARCH", IMAP_DATA_SEARCH},
    {"NAMESPACE", IMAP_DATA_NAMESPACE},
    {"ID", IMAP_DATA_ID},
    {"ENABLED", IMAP_DATA_ENABLED},
};

static const struct {
    const char *name;
    int data;
} numbered_names[] = {
    {"EXISTS", IMAP_DATA_EXISTS},
    {"RECENT", IMAP_DATA_RECENT},
    {"EXPUNGE", IMAP_DATA_EXPUNGE},
    {"FETCH", IMAP_DATA_FETCH},
};

static bool is_astring(const imap_node *n)
{
    return n && (n->type == IMAP_N_ATOM || n->type == IMAP_N_STRING);
}

static int view_list(imap_resp *r)
{
    imap_node *f = r->items;
    if (r->nitems < 3 || f->type != IMAP_N_LIST)
        return -1;
    imap_node *d = f->next, *mb = d->next;
    r->list.flags = bits_of(f->child, mbox_names, NTAB(mbox_names));
    if (d->type == IMAP_N_STRING && d->len == 1)
        r->list.delim = d->s[0];
    else if (d->type != IMAP_N_NIL)
        return -1;
    if (!is_astring(mb))
        return -1;
    r->list.mailbox = mb->s;
    r->list.mailbox_len = mb->len;
    return 0;
}

static int view_status(imap_resp *r)
{
    static const struct {
        const char *name;
        unsigned bit;
        size_t off;
    } fields[] = {
        {"MESSAGES", IMAP_SI_MESSAGES, offsetof(imap_resp_status, messages)},
        {"UIDNEXT", IMAP_SI_UIDNEXT, offsetof(imap_resp_status, uidnext)},
        {"UIDVALIDITY", IMAP_SI_UIDVALIDITY, offsetof(imap_resp_status, uidvalidity)},
        {"UNSEEN", IMAP_SI_UNSEEN, offsetof(imap_resp_status, unseen)},
        {"RECENT", IMAP_SI_RECENT, offsetof(imap_resp_status, recent)},
    };
    imap_node *mb = r->items;
    if (r->nitems != 2 || !is_astring(mb) || mb->next->type != IMAP_N_LIST || mb->next->nchild % 2)
        return -1;
    r->st.mailbox = mb->s;
    r->st.mailbox_len = mb->len;
    for (imap_node *k = mb->next->child; k; k = k->next->next) {
        for (size_t i = 0; i < NTAB(fields); i++) {
            if (!imap_node_is(k, fields[i].name))
                continue;
            uint32_t *dst = (uint32_t *)(void *)((char *)&r->st + fields[i].off);
            if (imap_node_u32(k->next, true, dst) < 0)
                return -1;
            r->st.have |= fields[i].bit;
        }
    }
    return 0;
}

static int view_fetch(arena *a, imap_resp *r)
{
    imap_resp_fetch *f = &r->fetch;
    if (r->nitems != 1 || r->items->type != IMAP_N_LIST || r->items->nchild % 2)
        return -1;
    for (imap_node *k = r->items->child; k; k = k->next->next) {
        imap_node *v = k->next;
        if (k->type != IMAP_N_ATOM)
            return -1;
        if (imap_node_is(k, "UID")) {
            if (imap_node_u32(v, false, &f->uid) < 0)
                return -1;
            f->have_uid = true;
        } else if (imap_node_is(k, "FLAGS")) {
            if (v->type != IMAP_N_LIST)
                return -1;
            f->have_flags = true;
            f->flags_list = v;
            f->flags = bits_of(v->child, flag_names, NTAB(flag_names));
        } else if ((k->len > 5 && imap_word_is(k->s, 5, "BODY[")) ||
                   imap_node_is(k, "RFC822.HEADER")) {
            if (v->type == IMAP_N_LIST || f->body)
                return -1;
            if (v->type != IMAP_N_NIL) {
                f->body = v->s;
                f->body_len = v->len;
            }
            const char *open = memchr(k->s, '[', k->len);
            const char *close = open ? memchr(open, ']', k->len - (size_t)(open - k->s)) : NULL;
            if (close)
                f->section = arena_strndup(a, open + 1, (size_t)(close - open - 1));
        }
    }
    return 0;
}

static int view_search(arena *a, imap_resp *r)
{
    r->search = arena_alloc(a, (r->nitems ? r->nitems : 1) * sizeof *r->search);
    for (imap_node *n = r->items; n; n = n->next) {
        if (n->type == IMAP_N_LIST)
            break; /* "(MODSEQ n)" of CONDSTORE closes the list */
        if (imap_node_u32(n, false, &r->search[r->nsearch]) < 0)
            return -1;
        r->nsearch++;
    }
    return 0;
}

int imap_resp_data_view(arena *a, imap_resp *r, bool numbered, const char **err)
{
    int rc = 0;
    const char *name = r->name;
    size_t nlen = strlen(name);
    r->data = IMAP_DATA_OTHER;
    /* "* 3 EXISTS" has its number, "* SEARCH 3" not: a name out of its form is other */
    for (size_t i = 0; numbered && i < NTAB(numbered_names); i++)
        if (imap_word_is(name, nlen, numbered_names[i].name))
            r->data = numbered_names[i].data;
    for (size_t i = 0; !numbered && i < NTAB(data_names); i++)
        if (imap_word_is(name, nlen, data_names[i].name))
            r->data = data_names[i].data;
    switch (r->data) {
    case IMAP_DATA_CAPABILITY:
        r->caps = bits_of(r->items, cap_names, NTAB(cap_names));
        break;
    case IMAP_DATA_LIST:
    case IMAP_DATA_LSUB:
        rc = view_list(r);
        break;
    case IMAP_DATA_STATUS:
        rc = view_status(r);
        break;
    case IMAP_DATA_FLAGS:
        if (r->nitems != 1 || r->items->type != IMAP_N_LIST)
            rc = -1;
        else
            r->flags = bits_of(r->items->child, flag_names, NTAB(flag_names));
        break;
    case IMAP_DATA_SEARCH:
        rc = view_search(a, r);
        break;
    case IMAP_DATA_FETCH:
        rc = view_fetch(a, r);
        break;
    default:
        break;
    }
    if (rc < 0)
        *err = "malformed untagged data";
    return rc;
}

const imap_node *imap_fetch_item(const imap_resp *r, const char *name)
{
    if (r->data != IMAP_DATA_FETCH || !r->items)
        return NULL;
    for (const imap_node *k = r->items->child; k && k->next; k = k->next->next)
        if (imap_node_is(k, name))
            return k->next;
    return NULL;
}
