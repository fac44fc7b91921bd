/* libFuzzer target: the IMAP response parser on arbitrary bytes (the seed corpus is a
 * real Dovecot transcript), fed whole, byte by byte, and in chunks whose size comes
 * from the input; the three dumps of every response and error must be identical. Also
 * decodes every LIST mailbox as modified UTF-7, expands every COPYUID set, and runs
 * the bytes through the session skeleton (imap_session) as a server's answers. */
#include "imap_resp.h"
#include "imap_session.h"
#include "imap_test_util.h"
#include "imap_utf7.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void touch(const imap_resp *r)
{
    buf b = BUF_INIT;
    if (r->data == IMAP_DATA_LIST)
        imap_utf7_decode(r->list.mailbox, r->list.mailbox_len, &b);
    uint32_t uids[64];
    if (r->code.src_uids)
        imap_uidset_parse(r->code.src_uids, strlen(r->code.src_uids), uids, 64);
    if (r->code.dst_uids)
        imap_uidset_parse(r->code.dst_uids, strlen(r->code.dst_uids), uids, 64);
    imap_fetch_item(r, "UID");
    buf_free(&b);
}

static void parse_all(const char *s, size_t n, size_t step, buf *out, bool check)
{
    imap_resp_parser p;
    imap_resp_limits lim = {.line_max = 4096,
                            .literal_max = 4096,
                            .total_max = 16384,
                            .depth_max = 32,
                            .items_max = 2048};
    imap_resp_parser_init(&p, &lim);
    size_t off = 0;
    while (off < n) {
        size_t len = n - off < step ? n - off : step;
        size_t pos = 0;
        while (pos < len) {
            size_t used = 0;
            const imap_resp *r = NULL;
            int rc = imap_resp_feed(&p, s + off + pos, len - pos, &used, &r);
            if (used > len - pos)
                abort();
            pos += used;
            if (rc == IMAP_RESP_ERROR) {
                if (!p.error)
                    abort();
                buf_printf(out, "ERROR %s\n", p.error);
                imap_resp_parser_free(&p);
                return;
            }
            if (rc == IMAP_RESP_NEED_MORE)
                break;
            if (!r || !r->kind || !r->text || (r->kind == IMAP_RESP_TAGGED && !r->tag))
                abort();
            imap_dump(out, r);
            if (check)
                touch(r);
        }
        off += len;
    }
    imap_resp_parser_free(&p);
}

static void session_run(const char *s, size_t n, size_t step)
{
    imap_session_params p = {.security = (int)(step % 3),
                             .username = "anna",
                             .password = "pw",
                             .allow_plaintext_auth = step % 2};
    imap_session sess;
    imap_session_init(&sess, &p);
    for (size_t off = 0; off < n && sess.state != IMAP_S_DONE; off += step) {
        int ev = imap_session_feed(&sess, s + off, n - off < step ? n - off : step);
        if (ev & IMAP_EV_STARTTLS)
            imap_session_tls_ready(&sess);
        if (ev & IMAP_EV_READY)
            imap_session_logout(&sess);
        if (sess.state < 0 || sess.state >= IMAP_S_COUNT)
            abort();
        buf_reset(imap_session_output(&sess));
    }
    imap_session_eof(&sess);
    if (sess.state != IMAP_S_DONE || sess.outcome <= IMAP_OUT_NONE ||
        sess.outcome >= IMAP_OUT_COUNT)
        abort();
    imap_session_clear(&sess);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)(data[0] % 17) + 1;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    buf whole = BUF_INIT, bytes = BUF_INIT, chunks = BUF_INIT;
    parse_all(s, n, n ? n : 1, &whole, true);
    parse_all(s, n, 1, &bytes, false);
    parse_all(s, n, chunk, &chunks, false);
    const char *w = whole.data ? whole.data : "";
    if (strcmp(w, bytes.data ? bytes.data : "") || strcmp(w, chunks.data ? chunks.data : ""))
        abort();
    buf_free(&whole);
    buf_free(&bytes);
    buf_free(&chunks);
    session_run(s, n, chunk);
    return 0;
}
