/* Test helpers for the IMAP response parser: a canonical text dump of a response (its
 * tree and views), and a feeder that parses a byte string in chunks of a given size
 * and dumps every response, so any two splits can be compared as strings. */
#ifndef KILN_IMAP_TEST_UTIL_H
#define KILN_IMAP_TEST_UTIL_H

#include "buf.h"
#include "imap_resp.h"

#include <stdio.h>

static void imap_dump_bytes(buf *b, const char *s, size_t n)
{
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            buf_putc(b, (char)c);
        else
            buf_printf(b, "\\x%02x", c);
    }
    buf_putc(b, '"');
}

static void imap_dump_nodes(buf *b, const imap_node *n)
{
    for (; n; n = n->next) {
        switch (n->type) {
        case IMAP_N_ATOM:
            buf_puts(b, "A");
            imap_dump_bytes(b, n->s, n->len);
            break;
        case IMAP_N_STRING:
            buf_puts(b, "S");
            imap_dump_bytes(b, n->s, n->len);
            break;
        case IMAP_N_NIL:
            buf_puts(b, "NIL");
            break;
        case IMAP_N_LIST:
            buf_printf(b, "L%zu(", n->nchild);
            imap_dump_nodes(b, n->child);
            buf_puts(b, ")");
            break;
        default:
            buf_puts(b, "?");
        }
        if (n->next)
            buf_putc(b, ' ');
    }
}

static void imap_dump(buf *b, const imap_resp *r)
{
    buf_printf(b, "kind=%d st=%d data=%d n=%u", r->kind, r->status, r->data, r->number);
    if (r->tag)
        buf_printf(b, " tag=%s", r->tag);
    if (r->name)
        buf_printf(b, " name=%s", r->name);
    if (r->code.code) {
        buf_printf(b, " code=%d:%s[", r->code.code, r->code.name);
        imap_dump_bytes(b, r->code.args, r->code.args_len);
        buf_printf(b, "] num=%u src=%s dst=%s fl=%x", r->code.number,
                   r->code.src_uids ? r->code.src_uids : "-",
                   r->code.dst_uids ? r->code.dst_uids : "-", r->code.flags);
    }
    buf_printf(b, " caps=%x text=", r->caps);
    imap_dump_bytes(b, r->text, r->text_len);
    buf_puts(b, " items=");
    imap_dump_nodes(b, r->items);
    if (r->data == IMAP_DATA_LIST || r->data == IMAP_DATA_LSUB) {
        buf_printf(b, " list=%x/%d/", r->list.flags, r->list.delim);
        imap_dump_bytes(b, r->list.mailbox, r->list.mailbox_len);
    }
    if (r->data == IMAP_DATA_FETCH) {
        buf_printf(b, " uid=%u fl=%x sec=%s body=", r->fetch.uid, r->fetch.flags,
                   r->fetch.section ? r->fetch.section : "-");
        if (r->fetch.body)
            imap_dump_bytes(b, r->fetch.body, r->fetch.body_len);
    }
    for (size_t i = 0; i < r->nsearch; i++)
        buf_printf(b, " s%u", r->search[i]);
    buf_putc(b, '\n');
}

/* Parses s[0..n) in chunks of step bytes with limits lim (NULL: defaults). Dumps every
 * response into out; an error appends "ERROR <why>". Returns the number of responses. */
static int imap_feed_dump(const char *s, size_t n, size_t step, const imap_resp_limits *lim,
                          buf *out)
{
    imap_resp_parser p;
    imap_resp_parser_init(&p, lim);
    int count = 0;
    size_t off = 0;
    while (off < n) {
        size_t len = n - off < step ? n - off : step;
        size_t pos = 0;
        while (pos < len) {
            size_t used = 0;
            const imap_resp *r = NULL;
            int rc = imap_resp_feed(&p, s + off + pos, len - pos, &used, &r);
            pos += used;
            if (rc == IMAP_RESP_ERROR) {
                buf_printf(out, "ERROR %s\n", p.error);
                imap_resp_parser_free(&p);
                return count;
            }
            if (rc == IMAP_RESP_NEED_MORE)
                break;
            imap_dump(out, r);
            count++;
        }
        off += len;
    }
    imap_resp_parser_free(&p);
    return count;
}

#endif
