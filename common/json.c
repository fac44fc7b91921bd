/* JSON helpers over yajl (see json.h). */
#include "json.h"

#include "buf.h"
#include "xalloc.h"

#include <errno.h>
#include <yajl/yajl_parse.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* ASCII without NUL, eight bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ULL) ||
                ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL))
                break;
            i += 8;
        }
        if (i == n)
            break;
        unsigned c = p[i];
        size_t extra;
        unsigned min;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1;
            min = 0x80;
            c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2;
            min = 0x800;
            c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            return false;
        }
        if (i + extra >= n)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            c = (c << 6) | (p[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        i += extra + 1;
    }
    return true;
}

/* The parser: yajl's event API feeding a tree builder of our own, so that limits hold
 * while the input is read. yajl_tree_parse would build any depth (and yajl_tree_free,
 * which recurses, then overflows the stack on 300,000 nested '['), keeps duplicate
 * members, and passes on what yajl makes of \u escapes: U+0000 as a NUL byte that cuts
 * every C string, an unpaired high surrogate as '?', a lone low one as CESU bytes.
 * The nodes are those of yajl_tree (malloc'd the way it does), so yajl_tree_free and
 * the YAJL_IS_* / YAJL_GET_* macros work on them. */

typedef struct json_frame {
    yajl_val node;     /* the open object or array (already attached to its parent) */
    size_t cap;        /* allocated slots of node's keys/values */
    char *pending_key; /* object: the member name read, waiting for its value */
    const char *key;   /* object: name of the member being read (for error paths) */
    size_t index;      /* array: index of the element being read */
} json_frame;

typedef struct json_builder {
    yajl_val root;
    json_frame frames[JSON_MAX_DEPTH];
    int depth;
    size_t string_ordinal; /* strings (keys and values) seen so far, in document order */
    size_t bad_escape;     /* ordinal of the first string with a forbidden escape */
    const char *bad_escape_why;
    json_error *err;
} json_builder;

/* The four hex digits of a \u escape, or -1. */
static int hex4(const char *s, size_t avail)
{
    if (avail < 4)
        return -1;
    int v = 0;
    for (int k = 0; k < 4; k++) {
        int c = (unsigned char)s[k], h;
        if (c >= '0' && c <= '9')
            h = c - '0';
        else if (c >= 'a' && c <= 'f')
            h = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            h = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Finds the first string token (keys and values, in document order) with a \u escape
 * for U+0000 or an unpaired UTF-16 surrogate; yajl decodes those without complaint, so
 * they are found in the raw text. Returns its ordinal, or SIZE_MAX. Where the text is
 * not JSON yajl stops before the ordinals could disagree. */
static size_t find_bad_escape(const char *s, size_t n, const char **why)
{
    if (n == 0 || !memchr(s, '\\', n))
        return SIZE_MAX;
    size_t ordinal = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_string) {
            in_string = s[i] == '"';
            continue;
        }
        if (s[i] == '"') {
            in_string = false;
            ordinal++;
            continue;
        }
        if (s[i] != '\\' || i + 1 >= n)
            continue;
        i++;
        if (s[i] != 'u')
            continue;
        int cp = hex4(s + i + 1, n - i - 1);
        if (cp < 0)
            continue;
        i += 4; /* on the escape's last hex digit */
        if (cp == 0) {
            *why = "contains \\u0000 (NUL)";
            return ordinal;
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            *why = "contains an unpaired UTF-16 surrogate escape";
            return ordinal;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int low = (i + 2 < n && s[i + 1] == '\\' && s[i + 2] == 'u')
                          ? hex4(s + i + 3, n - i - 3)
                          : -1;
            if (low < 0xDC00 || low > 0xDFFF) {
                *why = "contains an unpaired UTF-16 surrogate escape";
                return ordinal;
            }
            i += 6;
        }
    }
    return SIZE_MAX;
}

/* Appends s[0..n) to out (capacity cap, used *len) as readable text: valid UTF-8 as
 * is, control bytes as \u00XX, each invalid sequence as one U+FFFD; stops before
 * overflowing. */
static void append_printable(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        char tmp[8];
        size_t tn = 0, step = 1;
        if (p[i] < 0x20) {
            tn = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", p[i]);
        } else if (p[i] < 0x80) {
            tmp[0] = (char)p[i];
            tn = 1;
        } else {
            size_t want = (p[i] & 0xE0) == 0xC0 ? 2 : (p[i] & 0xF0) == 0xE0 ? 3 : 4;
            size_t whole = 1; /* a lead byte with its continuation bytes */
            while (whole < want && i + whole < n && (p[i + whole] & 0xC0) == 0x80)
                whole++;
            if (whole == want && utf8_valid(s + i, want)) {
                memcpy(tmp, s + i, want);
                tn = want;
            } else {
                tmp[0] = '\xEF'; /* one U+FFFD per bad sequence */
                tmp[1] = '\xBF';
                tmp[2] = '\xBD';
                tn = 3;
            }
            step = whole;
        }
        if (*len + tn + 1 > cap)
            break;
        memcpy(out + *len, tmp, tn);
        *len += tn;
        i += step;
    }
    out[*len] = '\0';
}

/* The path of the member being read: frames [0, upto) plus, when given, a last
 * member name (a key being rejected). */
static void render_path(json_builder *b, int upto, const char *last, size_t last_len)
{
    char *out = b->err->field;
    size_t cap = sizeof b->err->field, len = 0;
    out[0] = '\0';
    for (int d = 0; d < upto; d++) {
        json_frame *f = &b->frames[d];
        if (YAJL_IS_ARRAY(f->node)) {
            char idx[32];
            int n = snprintf(idx, sizeof idx, "[%zu]", f->index);
            append_printable(out, cap, &len, idx, (size_t)n);
        } else if (f->key) {
            if (len)
                append_printable(out, cap, &len, ".", 1);
            append_printable(out, cap, &len, f->key, strlen(f->key));
        }
    }
    if (last) {
        if (len)
            append_printable(out, cap, &len, ".", 1);
        append_printable(out, cap, &len, last, last_len);
    }
}

static void fail_at(json_builder *b, enum json_fault fault, int upto, const char *last,
                    size_t last_len, const char *what)
{
    render_path(b, upto, last, last_len);
    b->err->fault = fault;
    if (b->err->field[0])
        snprintf(b->err->message, sizeof b->err->message, "'%s' %s", b->err->field, what);
    else
        snprintf(b->err->message, sizeof b->err->message, "a string %s", what);
}

/* Records where the next value goes (for error paths) before it is checked. */
static void note_position(json_builder *b)
{
    if (b->depth > 0 && YAJL_IS_ARRAY(b->frames[b->depth - 1].node))
        b->frames[b->depth - 1].index = b->frames[b->depth - 1].node->u.array.len;
}

static void add_value(json_builder *b, yajl_val v)
{
    if (b->depth == 0) {
        b->root = v;
        return;
    }
    json_frame *f = &b->frames[b->depth - 1];
    yajl_val parent = f->node;
    if (YAJL_IS_OBJECT(parent)) {
        size_t n = parent->u.object.len;
        if (n == f->cap) {
            f->cap = f->cap ? 2 * f->cap : 8;
            parent->u.object.keys = xrealloc(parent->u.object.keys, f->cap * sizeof(char *));
            parent->u.object.values = xrealloc(parent->u.object.values, f->cap * sizeof(yajl_val));
        }
        parent->u.object.keys[n] = f->pending_key;
        parent->u.object.values[n] = v;
        parent->u.object.len = n + 1;
        f->pending_key = NULL;
    } else {
        size_t n = parent->u.array.len;
        if (n == f->cap) {
            f->cap = f->cap ? 2 * f->cap : 8;
            parent->u.array.values = xrealloc(parent->u.array.values, f->cap * sizeof(yajl_val));
        }
        parent->u.array.values[n] = v;
        parent->u.array.len = n + 1;
    }
}

static yajl_val new_value(yajl_type type)
{
    yajl_val v = xcalloc(1, sizeof *v);
    v->type = type;
    return v;
}

/* Checks a decoded string (value or key) and counts it. */
static bool text_ok(json_builder *b, const unsigned char *s, size_t n, bool is_key)
{
    size_t ordinal = b->string_ordinal++;
    const char *why = NULL;
    enum json_fault fault = JSON_BAD_TEXT;
    if (ordinal == b->bad_escape)
        why = b->bad_escape_why;
    else if (!utf8_valid((const char *)s, n)) {
        /* No forbidden escape here, so the raw bytes themselves are not UTF-8. */
        fault = JSON_BAD_UTF8;
        why = "is not valid UTF-8 text";
    }
    if (!why)
        return true;
    /* A key is named by itself (its object's frame still names the previous member). */
    if (is_key)
        fail_at(b, fault, b->depth - 1, (const char *)s, n, why);
    else
        fail_at(b, fault, b->depth, NULL, 0, why);
    return false;
}

static int on_null(void *ctx)
{
    json_builder *b = ctx;
    note_position(b);
    add_value(b, new_value(yajl_t_null));
    return 1;
}

static int on_boolean(void *ctx, int boolean)
{
    json_builder *b = ctx;
    note_position(b);
    add_value(b, new_value(boolean ? yajl_t_true : yajl_t_false));
    return 1;
}

/* Numbers as yajl_tree keeps them: the text, plus an integer and a double when each
 * conversion is exact enough (no overflow, whole text consumed). */
static int on_number(void *ctx, const char *s, size_t n)
{
    json_builder *b = ctx;
    note_position(b);
    yajl_val v = new_value(yajl_t_number);
    v->u.number.r = xstrndup(s, n);
    char *end = NULL;
    errno = 0;
    v->u.number.i = strtoll(v->u.number.r, &end, 10);
    if (errno == 0 && end && *end == '\0')
        v->u.number.flags |= YAJL_NUMBER_INT_VALID;
    end = NULL;
    errno = 0;
    v->u.number.d = strtod(v->u.number.r, &end);
    if (errno == 0 && end && *end == '\0')
        v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
    add_value(b, v);
    return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    json_builder *b = ctx;
    note_position(b);
    if (!text_ok(b, s, n, false))
        return 0;
    yajl_val v = new_value(yajl_t_string);
    v->u.string = xstrndup((const char *)s, n);
    add_value(b, v);
    return 1;
}

static int on_key(void *ctx, const unsigned char *s, size_t n)
{
    json_builder *b = ctx;
    json_frame *f = &b->frames[b->depth - 1];
    if (!text_ok(b, s, n, true))
        return 0;
    free(f->pending_key);
    f->pending_key = xstrndup((const char *)s, n);
    f->key = f->pending_key;
    return 1;
}

static int open_container(json_builder *b, yajl_type type)
{
    note_position(b);
    if (b->depth == JSON_MAX_DEPTH) {
        b->err->fault = JSON_TOO_DEEP;
        snprintf(b->err->message, sizeof b->err->message,
                 "malformed JSON: nested deeper than %d levels", JSON_MAX_DEPTH);
        return 0;
    }
    yajl_val v = new_value(type);
    add_value(b, v);
    json_frame *f = &b->frames[b->depth++];
    memset(f, 0, sizeof *f);
    f->node = v;
    return 1;
}

static int on_start_map(void *ctx)
{
    return open_container(ctx, yajl_t_object);
}

static int on_start_array(void *ctx)
{
    return open_container(ctx, yajl_t_array);
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A member name twice in one object is refused: a reader that keeps the first and one
 * that keeps the last would see different requests. Sorted once per object, so a
 * body of 100,000 members costs n log n, not n^2. */
static int on_end_map(void *ctx)
{
    json_builder *b = ctx;
    yajl_val obj = b->frames[b->depth - 1].node;
    size_t n = obj->u.object.len;
    if (n > 1) {
        const char **sorted = xmalloc(n * sizeof *sorted);
        memcpy(sorted, obj->u.object.keys, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, compare_keys);
        const char *dup = NULL;
        for (size_t i = 1; i < n && !dup; i++)
            if (!strcmp(sorted[i - 1], sorted[i]))
                dup = sorted[i];
        if (dup) {
            render_path(b, b->depth - 1, dup, strlen(dup));
            b->err->fault = JSON_DUP_KEY;
            snprintf(b->err->message, sizeof b->err->message, "'%s' appears more than once",
                     b->err->field);
        }
        free(sorted);
        if (dup)
            return 0;
    }
    b->depth--;
    return 1;
}

static int on_end_array(void *ctx)
{
    json_builder *b = ctx;
    b->depth--;
    return 1;
}

static const yajl_callbacks builder_callbacks = {
    on_null,      on_boolean, NULL,       NULL,           on_number,    on_string,
    on_start_map, on_key,     on_end_map, on_start_array, on_end_array,
};

yajl_val json_parse_checked(const char *data, size_t len, json_error *err)
{
    json_builder b;
    memset(&b, 0, sizeof b);
    memset(err, 0, sizeof *err);
    b.err = err;
    if (!data)
        data = "";
    b.bad_escape = find_bad_escape(data, len, &b.bad_escape_why);
    yajl_handle h = yajl_alloc(&builder_callbacks, NULL, &b);
    if (!h) {
        fprintf(stderr, "kiln: out of memory in yajl_alloc\n");
        abort();
    }
    /* Strings are checked in the callbacks, where the member they belong to is known. */
    yajl_config(h, yajl_dont_validate_strings, 1);
    yajl_status st = yajl_parse(h, (const unsigned char *)data, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st != yajl_status_ok && err->fault == JSON_OK) {
        if (!utf8_valid(data, len)) {
            err->fault = JSON_BAD_UTF8;
            snprintf(err->message, sizeof err->message, "body is not valid UTF-8 text");
        } else {
            unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)data, len);
            /* yajl's message spans lines; keep the first one. */
            char *nl = msg ? strchr((char *)msg, '\n') : NULL;
            if (nl)
                *nl = '\0';
            err->fault = JSON_SYNTAX;
            snprintf(err->message, sizeof err->message, "malformed JSON: %s",
                     msg && msg[0] ? (char *)msg : "parse error");
            if (msg)
                yajl_free_error(h, msg);
        }
    }
    yajl_free(h);
    if (err->fault == JSON_OK && !b.root) {
        err->fault = JSON_SYNTAX;
        snprintf(err->message, sizeof err->message, "malformed JSON: no value");
    }
    if (err->fault != JSON_OK) {
        for (int d = 0; d < b.depth; d++)
            free(b.frames[d].pending_key);
        yajl_tree_free(b.root); /* at most JSON_MAX_DEPTH deep */
        return NULL;
    }
    return b.root;
}

yajl_val json_parse(const char *data, size_t len, char *err, size_t errlen)
{
    json_error e;
    yajl_val v = json_parse_checked(data, len, &e);
    if (err && errlen)
        snprintf(err, errlen, "%s", v ? "" : e.message);
    return v;
}

yajl_val json_get(yajl_val obj, const char *key)
{
    if (!obj || !YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (!strcmp(obj->u.object.keys[i], key))
            return obj->u.object.values[i];
    return NULL;
}

bool json_int(yajl_val v, int64_t min, int64_t max, int64_t *out)
{
    if (!v || !YAJL_IS_INTEGER(v))
        return false;
    long long x = YAJL_GET_INTEGER(v);
    if (x < min || x > max)
        return false;
    *out = x;
    return true;
}

bool json_number(yajl_val v, double min, double max, double *out)
{
    if (!v || !YAJL_IS_NUMBER(v))
        return false;
    double x = YAJL_IS_INTEGER(v) ? (double)YAJL_GET_INTEGER(v) : YAJL_GET_DOUBLE(v);
    if (!YAJL_IS_INTEGER(v) && !YAJL_IS_DOUBLE(v))
        return false;
    if (!isfinite(x) || x < min || x > max)
        return false;
    *out = x;
    return true;
}

const char *json_str(yajl_val v)
{
    return (v && YAJL_IS_STRING(v)) ? YAJL_GET_STRING(v) : NULL;
}

static void gen_print(void *ctx, const char *str, size_t len)
{
    buf_append((buf *)ctx, str, len);
}

yajl_gen json_gen_new(buf *out)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (!g) {
        fprintf(stderr, "kiln: out of memory in yajl_gen_alloc\n");
        abort();
    }
    yajl_gen_config(g, yajl_gen_print_callback, gen_print, (void *)out);
    yajl_gen_config(g, yajl_gen_validate_utf8, 1);
    return g;
}

void json_gen_free(yajl_gen g)
{
    if (g)
        yajl_gen_free(g);
}

void json_str_n(yajl_gen g, const char *s, size_t n)
{
    if (yajl_gen_string(g, (const unsigned char *)s, n) == yajl_gen_invalid_string)
        yajl_gen_string(g, (const unsigned char *)"\xEF\xBF\xBD", 3);
}

void json_s(yajl_gen g, const char *s)
{
    if (!s)
        yajl_gen_null(g);
    else
        json_str_n(g, s, strlen(s));
}

void json_i(yajl_gen g, int64_t v)
{
    /* yajl_gen_integer formats with sprintf; the digits are the same. */
    char d[FMT_I64_MAX];
    yajl_gen_number(g, d, fmt_i64(d, v));
}

void json_d(yajl_gen g, double v)
{
    if (!isfinite(v))
        yajl_gen_null(g);
    else
        yajl_gen_double(g, v);
}

void json_b(yajl_gen g, bool v)
{
    yajl_gen_bool(g, v);
}

void json_null(yajl_gen g)
{
    yajl_gen_null(g);
}

void json_obj_open(yajl_gen g)
{
    yajl_gen_map_open(g);
}

void json_obj_close(yajl_gen g)
{
    yajl_gen_map_close(g);
}

void json_arr_open(yajl_gen g)
{
    yajl_gen_array_open(g);
}

void json_arr_close(yajl_gen g)
{
    yajl_gen_array_close(g);
}

void json_key(yajl_gen g, const char *key)
{
    json_s(g, key);
}

void json_kv_s(yajl_gen g, const char *key, const char *val)
{
    json_key(g, key);
    json_s(g, val);
}

void json_kv_i(yajl_gen g, const char *key, int64_t val)
{
    json_key(g, key);
    json_i(g, val);
}

void json_kv_d(yajl_gen g, const char *key, double val)
{
    json_key(g, key);
    json_d(g, val);
}

void json_kv_b(yajl_gen g, const char *key, bool val)
{
    json_key(g, key);
    json_b(g, val);
}

void json_kv_null(yajl_gen g, const char *key)
{
    json_key(g, key);
    json_null(g);
}
