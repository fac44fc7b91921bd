/* IMAP response parser (see imap_resp.h). Two stages: a byte-at-a-time assembler that
 * knows only lines, quoted strings and literal announcements, so any split of the input
 * assembles the same bytes; then, over one whole response, a recursive-descent pass
 * whose depth and node count are bounded. Quoted-string state matters only to tell a
 * trailing "{n}" from text; status responses and continuations are single lines whose
 * text is free-form, so they never carry a literal. */
#include "imap_resp.h"

#include "imap_resp_internal.h"

#include <string.h>

enum {
    sw_line = 0, /* line bytes up to LF */
    sw_lf,       /* CR seen, LF expected */
    sw_literal,  /* literal_left bytes of a literal */
    sw_error,    /* sticky */
};

/* A buffer grown past this by a large response is given back once it is done. */
#define IMAP_RESP_KEEP_BYTES ((size_t)64 * 1024)

void imap_resp_parser_init(imap_resp_parser *p, const imap_resp_limits *lim)
{
    memset(p, 0, sizeof *p);
    if (lim) {
        p->lim = *lim;
    } else {
        p->lim.line_max = IMAP_RESP_LINE_MAX;
        p->lim.literal_max = IMAP_RESP_LITERAL_MAX;
        p->lim.total_max = IMAP_RESP_TOTAL_MAX;
        p->lim.depth_max = IMAP_RESP_DEPTH_MAX;
        p->lim.items_max = IMAP_RESP_ITEMS_MAX;
    }
    p->state = sw_line;
    buf_init(&p->raw);
    p->arena = arena_create(4096);
}

void imap_resp_parser_free(imap_resp_parser *p)
{
    buf_free(&p->raw);
    arena_destroy(p->arena);
    p->arena = NULL;
}

bool imap_word_is(const char *s, size_t n, const char *kw)
{
    /* no strlen of kw: a capability list is matched word by word against every name
     * the client knows (two lists a visit), and most words differ at the first byte */
    for (size_t i = 0; i < n; i++) {
        char a = s[i], b = kw[i];
        if (!b)
            return false;
        if (a >= 'a' && a <= 'z')
            a = (char)(a - 'a' + 'A');
        if (b >= 'a' && b <= 'z')
            b = (char)(b - 'a' + 'A');
        if (a != b)
            return false;
    }
    return kw[n] == '\0';
}

/* ---- syntax: values over one assembled response ---- */

typedef struct cursor {
    const char *s;
    size_t n, pos;
    arena *a;
    const imap_resp_limits *lim;
    unsigned *items;
    const char *err;
} cursor;

static bool at_end(const cursor *c)
{
    size_t left = c->n - c->pos;
    return left == 0 || (left == 1 && c->s[c->pos] == '\n') ||
           (left == 2 && c->s[c->pos] == '\r' && c->s[c->pos + 1] == '\n');
}

static imap_node *node_new(cursor *c, int type)
{
    if (++*c->items > c->lim->items_max) {
        c->err = "response has too many items";
        return NULL;
    }
    imap_node *nd = arena_calloc(c->a, sizeof *nd);
    nd->type = type;
    nd->s = "";
    return nd;
}

/* Bytes an atom may hold: no space, control, parenthesis, brace or quote. '[' opens a
 * section ("BODY[HEADER.FIELDS (X)]") read to its ']' whatever it holds. */
static bool atom_char(unsigned char ch)
{
    return ch > 0x20 && ch != 0x7f && ch != '(' && ch != ')' && ch != '{' && ch != '"';
}

static imap_node *parse_atom(cursor *c)
{
    size_t st = c->pos;
    while (c->pos < c->n && atom_char((unsigned char)c->s[c->pos])) {
        if (c->s[c->pos] == '[') {
            while (c->pos < c->n && c->s[c->pos] != ']' && c->s[c->pos] != '\r' &&
                   c->s[c->pos] != '\n')
                c->pos++;
            if (c->pos >= c->n || c->s[c->pos] != ']') {
                c->err = "unterminated [ in an atom";
                return NULL;
            }
        }
        c->pos++;
    }
    if (c->pos == st) {
        c->err = "expected a value";
        return NULL;
    }
    bool nil = imap_word_is(c->s + st, c->pos - st, "NIL");
    imap_node *nd = node_new(c, nil ? IMAP_N_NIL : IMAP_N_ATOM);
    if (nd && !nil) {
        nd->s = arena_strndup(c->a, c->s + st, c->pos - st);
        nd->len = c->pos - st;
    }
    return nd;
}

static imap_node *parse_quoted(cursor *c)
{
    size_t i = c->pos + 1, len = 0;
    for (;; i++) {
        if (i >= c->n || c->s[i] == '\r' || c->s[i] == '\n') {
            c->err = "unterminated quoted string";
            return NULL;
        }
        if (c->s[i] == '"')
            break;
        if (c->s[i] == '\\') {
            if (i + 1 >= c->n || (c->s[i + 1] != '"' && c->s[i + 1] != '\\')) {
                c->err = "bad escape in a quoted string";
                return NULL;
            }
            i++;
        }
        len++;
    }
    imap_node *nd = node_new(c, IMAP_N_STRING);
    if (!nd)
        return NULL;
    char *d = arena_alloc(c->a, len + 1);
    size_t k = 0;
    for (size_t j = c->pos + 1; j < i; j++) {
        if (c->s[j] == '\\')
            j++;
        d[k++] = c->s[j];
    }
    d[k] = '\0';
    nd->s = d;
    nd->len = k;
    c->pos = i + 1;
    return nd;
}

static imap_node *parse_literal(cursor *c)
{
    size_t i = c->pos + 1, len = 0, digits = 0;
    while (i < c->n && c->s[i] >= '0' && c->s[i] <= '9' && digits < 10) {
        len = len * 10 + (size_t)(c->s[i] - '0');
        i++;
        digits++;
    }
    if (i < c->n && c->s[i] == '+')
        i++;
    if (!digits || i >= c->n || c->s[i] != '}') {
        c->err = "malformed literal";
        return NULL;
    }
    i++;
    if (i < c->n && c->s[i] == '\r')
        i++;
    if (i >= c->n || c->s[i] != '\n') {
        c->err = "literal not followed by a line break";
        return NULL;
    }
    i++;
    if (len > c->lim->literal_max || len > c->n - i) {
        c->err = "literal longer than the response";
        return NULL;
    }
    imap_node *nd = node_new(c, IMAP_N_STRING);
    if (!nd)
        return NULL;
    nd->s = arena_strndup(c->a, c->s + i, len);
    nd->len = len;
    c->pos = i + len;
    return nd;
}

static imap_node *parse_value(cursor *c, unsigned depth);

/* After a value: a space, or the end of a list or of the response. */
static int separator(cursor *c, bool in_list)
{
    if (c->pos < c->n && c->s[c->pos] == ' ') {
        c->pos++;
        return 0;
    }
    if ((in_list && c->pos < c->n && c->s[c->pos] == ')') || at_end(c))
        return 0;
    c->err = "expected a space between values";
    return -1;
}

static imap_node *parse_list(cursor *c, unsigned depth)
{
    if (depth >= c->lim->depth_max) {
        c->err = "lists nested too deep";
        return NULL;
    }
    imap_node *list = node_new(c, IMAP_N_LIST);
    if (!list)
        return NULL;
    imap_node **tail = &list->child;
    c->pos++;
    for (;;) {
        if (c->pos >= c->n || at_end(c)) {
            c->err = "unterminated list";
            return NULL;
        }
        if (c->s[c->pos] == ')') {
            c->pos++;
            return list;
        }
        imap_node *v = parse_value(c, depth + 1);
        if (!v || separator(c, true) < 0)
            return NULL;
        *tail = v;
        tail = &v->next;
        list->nchild++;
    }
}

static imap_node *parse_value(cursor *c, unsigned depth)
{
    if (c->pos >= c->n) {
        c->err = "expected a value";
        return NULL;
    }
    switch (c->s[c->pos]) {
    case '(':
        return parse_list(c, depth);
    case '"':
        return parse_quoted(c);
    case '{':
        return parse_literal(c);
    case '~':
        if (c->pos + 1 < c->n && c->s[c->pos + 1] == '{') {
            c->err = "binary literal (~{n}) refused";
            return NULL;
        }
        return parse_atom(c);
    default:
        return parse_atom(c);
    }
}

/* Values up to the end of the cursor's text (or of the response's last line). */
static int parse_values(cursor *c, imap_node **first, size_t *count)
{
    imap_node **tail = first;
    *first = NULL;
    *count = 0;
    while (!at_end(c)) {
        imap_node *v = parse_value(c, 0);
        if (!v || separator(c, false) < 0)
            return -1;
        *tail = v;
        tail = &v->next;
        (*count)++;
    }
    return 0;
}

int imap_values_parse(arena *a, const char *s, size_t n, const imap_resp_limits *lim,
                      unsigned *items, imap_node **first, size_t *count, const char **err)
{
    cursor c = {.s = s, .n = n, .a = a, .lim = lim, .items = items};
    if (parse_values(&c, first, count) < 0) {
        *err = c.err;
        return -1;
    }
    return 0;
}

/* ---- one response: tag, status or data keyword, code, text ---- */

/* A word up to a space or the end of the line (tags, keywords). */
static size_t word(const cursor *c, const char **w)
{
    size_t i = c->pos;
    while (i < c->n && c->s[i] != ' ' && c->s[i] != '\r' && c->s[i] != '\n')
        i++;
    *w = c->s + c->pos;
    return i - c->pos;
}

static int status_of(const char *w, size_t n)
{
    static const char *const names[] = {"OK", "NO", "BAD", "BYE", "PREAUTH"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (imap_word_is(w, n, names[i]))
            return (int)i + IMAP_STATUS_OK;
    return IMAP_STATUS_NONE;
}

/* The rest of the line, as text (status text, continuation). */
static void rest_as_text(cursor *c, imap_resp *r)
{
    size_t end = c->n;
    if (end > c->pos && c->s[end - 1] == '\n')
        end--;
    if (end > c->pos && c->s[end - 1] == '\r')
        end--;
    r->text = arena_strndup(c->a, c->s + c->pos, end - c->pos);
    r->text_len = end - c->pos;
    c->pos = c->n;
}

/* resp-text: [ "[" code [SP args] "]" SP ] text, after the status word. */
static int parse_resp_text(cursor *c, imap_resp *r)
{
    r->text = "";
    r->code.name = "";
    r->code.args = "";
    if (at_end(c))
        return 0;
    if (c->s[c->pos] != ' ') {
        c->err = "expected a space after the status";
        return -1;
    }
    c->pos++;
    if (c->pos < c->n && c->s[c->pos] == '[') {
        size_t st = ++c->pos;
        while (c->pos < c->n && c->s[c->pos] != ' ' && c->s[c->pos] != ']' &&
               c->s[c->pos] != '\r' && c->s[c->pos] != '\n')
            c->pos++;
        size_t name_len = c->pos - st;
        size_t args = c->pos;
        if (c->pos < c->n && c->s[c->pos] == ' ')
            args = ++c->pos;
        while (c->pos < c->n && c->s[c->pos] != ']' && c->s[c->pos] != '\r' && c->s[c->pos] != '\n')
            c->pos++;
        if (!name_len || c->pos >= c->n || c->s[c->pos] != ']') {
            c->err = "malformed response code";
            return -1;
        }
        r->code.name = arena_strndup(c->a, c->s + st, name_len);
        r->code.args = arena_strndup(c->a, c->s + args, c->pos - args);
        r->code.args_len = c->pos - args;
        r->code.code = IMAP_CODE_OTHER;
        c->pos++;
        if (c->pos < c->n && c->s[c->pos] == ' ')
            c->pos++;
        if (imap_resp_code_view(c->a, r, c->lim, c->items, &c->err) < 0)
            return -1;
    }
    rest_as_text(c, r);
    return 0;
}

static int parse_untagged(cursor *c, imap_resp *r)
{
    const char *w;
    size_t wn = word(c, &w);
    int st = status_of(w, wn);
    if (st != IMAP_STATUS_NONE) {
        r->status = st;
        c->pos += wn;
        return parse_resp_text(c, r);
    }
    imap_node num = {.type = IMAP_N_ATOM, .s = w, .len = wn};
    bool numbered = wn && w[0] >= '0' && w[0] <= '9';
    if (numbered) {
        if (imap_node_u32(&num, true, &r->number) < 0) {
            c->err = "bad message number";
            return -1;
        }
        c->pos += wn;
        if (c->pos >= c->n || c->s[c->pos] != ' ') {
            c->err = "message number without a keyword";
            return -1;
        }
        c->pos++;
        wn = word(c, &w);
    }
    if (!wn) {
        c->err = "untagged response without a keyword";
        return -1;
    }
    r->name = arena_strndup(c->a, w, wn);
    c->pos += wn;
    if (!at_end(c)) {
        if (c->s[c->pos] != ' ') {
            c->err = "expected a space after the keyword";
            return -1;
        }
        c->pos++;
    }
    if (parse_values(c, &r->items, &r->nitems) < 0)
        return -1;
    return imap_resp_data_view(c->a, r, numbered, &c->err);
}

/* The whole response in s[0..n), assembled: fills r or returns -1 with *err. */
static int parse_response(imap_resp_parser *p, const char *s, size_t n, imap_resp *r,
                          const char **err)
{
    unsigned items = 0;
    cursor c = {.s = s, .n = n, .a = p->arena, .lim = &p->lim, .items = &items};
    memset(r, 0, sizeof *r);
    r->text = "";
    r->code.name = "";
    r->code.args = "";
    int rc = -1;
    if (n && s[0] == '+') {
        r->kind = IMAP_RESP_CONTINUE;
        c.pos = 1;
        if (c.pos < n && s[c.pos] == ' ')
            c.pos++;
        rest_as_text(&c, r);
        return 0;
    }
    const char *tag;
    size_t tn = word(&c, &tag);
    if (!tn || tn >= n || s[tn] != ' ') {
        *err = "response without a tag";
        return -1;
    }
    c.pos = tn + 1;
    if (tn == 1 && tag[0] == '*') {
        r->kind = IMAP_RESP_UNTAGGED;
        rc = parse_untagged(&c, r);
    } else {
        r->kind = IMAP_RESP_TAGGED;
        r->tag = arena_strndup(c.a, tag, tn);
        const char *w;
        size_t wn = word(&c, &w);
        r->status = status_of(w, wn);
        if (r->status < IMAP_STATUS_OK || r->status > IMAP_STATUS_BAD) {
            *err = "tagged response is not OK, NO or BAD";
            return -1;
        }
        c.pos += wn;
        rc = parse_resp_text(&c, r);
    }
    if (rc < 0)
        *err = c.err ? c.err : "malformed response";
    return rc;
}

/* ---- assembly ---- */

static int fail(imap_resp_parser *p, const char *why)
{
    p->state = sw_error;
    p->error = why;
    return IMAP_RESP_ERROR;
}

/* A tagged response or "* OK|NO|BAD|BYE|PREAUTH" or "+": one line of free text. */
static bool first_line_is_status(const char *s, size_t n)
{
    if (n && s[0] == '+')
        return true;
    size_t i = 0;
    while (i < n && s[i] != ' ' && s[i] != '\r' && s[i] != '\n')
        i++;
    if (!(i == 1 && s[0] == '*'))
        return true;
    size_t st = ++i;
    while (i < n && s[i] != ' ' && s[i] != '\r' && s[i] != '\n')
        i++;
    return st <= n && status_of(s + st, i - st) != IMAP_STATUS_NONE;
}

/* The line just ended (LF appended). Returns 1 when the response is complete, 0 when a
 * literal or another line follows, -1 on a violation. */
static int line_end(imap_resp_parser *p)
{
    const char *line = p->raw.data + p->line_start;
    size_t n = p->raw.len - p->line_start;
    if (!p->first_line_done) {
        p->first_line_done = true;
        p->status_like = first_line_is_status(line, n);
    }
    bool quoted = p->in_quote;
    p->in_quote = p->quote_escape = false;
    if (p->status_like || quoted)
        return 1; /* an open quote is the syntax pass's error to name */
    n--;          /* the LF */
    if (n && line[n - 1] == '\r')
        n--;
    if (!n || line[n - 1] != '}')
        return 1;
    size_t i = n - 1, digits = 0;
    if (i && line[i - 1] == '+')
        i--;
    while (i && line[i - 1] >= '0' && line[i - 1] <= '9') {
        i--;
        digits++;
    }
    if (!i || line[i - 1] != '{' || !digits)
        return 1; /* not a literal: the syntax pass judges what it is */
    if (i >= 2 && line[i - 2] == '~') {
        fail(p, "binary literal (~{n}) refused");
        return -1;
    }
    if (digits > 10) {
        fail(p, "literal too large");
        return -1;
    }
    size_t len = 0;
    for (size_t k = i; k < i + digits; k++)
        len = len * 10 + (size_t)(line[k] - '0');
    if (len > p->lim.literal_max) {
        fail(p, "literal too large");
        return -1;
    }
    p->literal_left = len;
    p->state = len ? sw_literal : sw_line;
    p->line_len = 0;
    p->line_start = p->raw.len;
    return 0;
}

/* Starts over for the next response: the previous one's tree and bytes are released. */
static void next_response(imap_resp_parser *p)
{
    arena_reset(p->arena);
    if (p->raw.cap > IMAP_RESP_KEEP_BYTES)
        buf_free(&p->raw);
    buf_reset(&p->raw);
    p->line_len = p->line_start = 0;
    p->literal_left = 0;
    p->in_quote = p->quote_escape = false;
    p->first_line_done = p->status_like = false;
    p->state = sw_line;
}

/* Copies as much of a literal as data holds. */
static size_t take_literal(imap_resp_parser *p, const char *data, size_t n)
{
    size_t k = n < p->literal_left ? n : p->literal_left;
    buf_append(&p->raw, data, k);
    p->literal_left -= k;
    if (!p->literal_left) {
        p->state = sw_line;
        p->line_start = p->raw.len;
    }
    return k;
}

/* Quoted-string tracking, only to tell a "{n}" at a line's end from quoted text. */
static void track_quote(imap_resp_parser *p, char ch)
{
    if (p->quote_escape)
        p->quote_escape = false;
    else if (p->in_quote && ch == '\\')
        p->quote_escape = true;
    else if (ch == '"')
        p->in_quote = !p->in_quote;
}

void imap_resp_release(imap_resp_parser *p)
{
    if (p->resp.kind) {
        memset(&p->resp, 0, sizeof p->resp);
        next_response(p);
    }
}

int imap_resp_feed(imap_resp_parser *p, const char *data, size_t n, size_t *consumed,
                   const imap_resp **out)
{
    size_t i = 0;
    *consumed = 0;
    if (p->state == sw_error)
        return IMAP_RESP_ERROR;
    imap_resp_release(p);
    while (i < n) {
        if (p->state == sw_literal) {
            if (p->raw.len + p->literal_left > p->lim.total_max) {
                *consumed = i;
                return fail(p, "response too large");
            }
            i += take_literal(p, data + i, n - i);
            continue;
        }
        char ch = data[i];
        if (++p->line_len > p->lim.line_max || p->raw.len + 1 > p->lim.total_max) {
            *consumed = i;
            return fail(p, p->line_len > p->lim.line_max ? "response line too long"
                                                         : "response too large");
        }
        if (ch == '\0') {
            *consumed = i;
            return fail(p, "NUL byte in a response line");
        }
        if (p->state == sw_lf && ch != '\n') {
            *consumed = i;
            return fail(p, "CR not followed by LF");
        }
        buf_putc(&p->raw, ch);
        i++;
        if (ch == '\r') {
            p->state = sw_lf;
            continue;
        }
        if (ch != '\n') {
            track_quote(p, ch);
            continue;
        }
        p->state = sw_line;
        int rc = line_end(p);
        if (rc < 0) {
            *consumed = i;
            return IMAP_RESP_ERROR;
        }
        if (rc == 0)
            continue;
        const char *err = NULL;
        if (parse_response(p, p->raw.data, p->raw.len, &p->resp, &err) < 0) {
            *consumed = i;
            memset(&p->resp, 0, sizeof p->resp);
            return fail(p, err ? err : "malformed response");
        }
        *consumed = i;
        *out = &p->resp;
        return IMAP_RESP_DONE;
    }
    *consumed = n;
    return IMAP_RESP_NEED_MORE;
}
