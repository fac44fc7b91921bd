/* What the inbox session reads out of a fetched message (see imap_inbox_internal.h):
 * header fields of a BODY[HEADER.FIELDS (...)] block, unfolded and made printable; the
 * Message-ID token; the shape of a kiln Message-ID; the strings of a FLAGS or
 * X-GM-LABELS list. Nothing here trusts the server: every length is bounded. */
#include "imap_inbox_internal.h"

#include <ctype.h>
#include <string.h>

void ib_set_text(char *dst, size_t cap, const char *text, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; text && i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)text[i];
        dst[k++] = (char)(c >= 0x20 && c < 0x7f ? c : '?');
    }
    dst[k] = '\0';
}

static bool name_at(const char *p, size_t left, const char *name)
{
    size_t k = strlen(name);
    if (left < k + 1 || p[k] != ':')
        return false;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)p[i]) != tolower((unsigned char)name[i]))
            return false;
    return true;
}

bool ib_header_value(const char *blk, size_t n, const char *name, size_t cap, buf *out)
{
    buf_reset(out);
    size_t i = 0;
    while (i < n) {
        /* i is at the start of a line */
        if (blk[i] != ' ' && blk[i] != '\t' && name_at(blk + i, n - i, name))
            break;
        while (i < n && blk[i] != '\n')
            i++;
        i++;
    }
    if (i >= n)
        return false;
    i += strlen(name) + 1;
    bool space = true; /* drops leading whitespace, folds runs into one space */
    for (; i < n; i++) {
        unsigned char c = (unsigned char)blk[i];
        if (c == '\r')
            continue;
        if (c == '\n') {
            if (i + 1 < n && (blk[i + 1] == ' ' || blk[i + 1] == '\t'))
                continue; /* a folded line goes on */
            break;
        }
        if (c == ' ' || c == '\t') {
            space = true;
            continue;
        }
        if (space && out->len) {
            if (out->len >= cap)
                break;
            buf_putc(out, ' ');
        }
        space = false;
        if (out->len >= cap)
            break;
        buf_putc(out, (char)(c >= 0x21 && c < 0x7f ? c : '?'));
    }
    if (!out->data)
        buf_puts(out, "");
    return true;
}

bool ib_msgid_token(const char *v, size_t n, buf *out)
{
    buf_reset(out);
    const char *lt = memchr(v, '<', n);
    if (!lt)
        return false;
    const char *gt = memchr(lt, '>', n - (size_t)(lt - v));
    if (!gt)
        return false;
    buf_append(out, lt, (size_t)(gt - lt) + 1);
    return true;
}

static bool is_hex_lower(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* <SENDID.K MAC@domain>: api/lease/msgid.h mints it, openapi pins the shape. */
bool imap_inbox_msgid_shape_ok(const char *id, size_t len)
{
    if (len < 3 || id[0] != '<' || id[len - 1] != '>')
        return false;
    const char *p = id + 1, *end = id + len - 1;
    size_t digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 20)
        p++, digits++;
    if (digits < 1 || digits > 19 || p >= end || *p++ != '.')
        return false;
    if (p >= end || !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
        return false;
    p++;
    size_t hex = 0;
    while (p < end && is_hex_lower(*p) && hex < 64)
        p++, hex++;
    if (hex < 15 || hex > 63 || p >= end || *p++ != '@')
        return false;
    size_t dom = (size_t)(end - p);
    if (dom < 1 || dom > 253 || *p == '.' || end[-1] == '.')
        return false;
    for (const char *q = p; q < end; q++) {
        char c = *q;
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-' || (c == '.' && q[1] != '.');
        if (!ok)
            return false;
    }
    return true;
}

size_t ib_node_strings(const imap_node *list, const char **v, size_t max)
{
    size_t k = 0;
    if (!list || list->type != IMAP_N_LIST)
        return 0;
    for (const imap_node *n = list->child; n && k < max; n = n->next)
        if ((n->type == IMAP_N_ATOM || n->type == IMAP_N_STRING) && n->len &&
            strlen(n->s) == n->len)
            v[k++] = n->s;
    return k;
}
