/* libFuzzer target: the SMTP session machine driven by arbitrary server bytes in
 * input-chosen chunks, with input-chosen security, credentials and payload gate (the
 * go-ahead granted or refused by the input too); the session must
 * never crash, once DONE every slot must have an outcome, a slot is `sent` only
 * with a 2xx code after its own payload went out, no payload goes out twice, and no
 * credentials go out without TLS unless allowed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "smtp_session.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    smtp_slot slots[3];
    memset(slots, 0, sizeof slots);
    static const char *const payloads[3] = {"Subject: f0\r\n\r\nbody\r\n.\r\n",
                                            "Subject: f1\r\n\r\nbody\r\n.\r\n",
                                            "Subject: f2\r\n\r\nbody\r\n.\r\n"};
    int emitted[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        slots[i].rcpt = "r@x.test";
        slots[i].payload = payloads[i];
        slots[i].payload_len = strlen(payloads[i]);
    }
    uint8_t mode = data[0];
    smtp_session_params p = {.helo_name = "fuzz.test",
                             .mail_from = "f@x.test",
                             .security = mode % 3,
                             .username = (mode & 4) ? "user" : NULL,
                             .password = (mode & 8) ? "pass" : NULL,
                             .oauth_token = (mode & 16) ? "tok" : NULL};
    size_t nslots = (size_t)(mode >> 5) % 3 + 1;
    p.gate_payload = data[1] & 0x80;
    p.allow_plaintext_auth = data[1] & 0x40;
    smtp_session s;
    smtp_session_init(&s, &p, slots, nslots);
    size_t chunk = (size_t)(data[1] % 31) + 1;
    size_t off = 2;
    int64_t now = 0;
    while (off < size && s.state != SMTP_S_DONE) {
        size_t len = size - off < chunk ? size - off : chunk;
        int ev = smtp_session_feed(&s, (const char *)data + off, len, ++now);
        if (ev & SMTP_EV_STARTTLS)
            smtp_session_tls_ready(&s);
        if (ev & SMTP_EV_GATE)
            smtp_session_payload_go(&s, (data[off] & 1) != 0, "gate refused", ++now);
        buf *out = smtp_session_output(&s);
        for (int i = 0; i < 3 && out->len; i++)
            if (memmem(out->data, out->len, payloads[i], 11))
                emitted[i]++;
        if (out->len && !s.tls_active && !p.allow_plaintext_auth &&
            memmem(out->data, out->len, "AUTH ", 5))
            abort(); /* credentials in clear */
        buf_reset(out);
        off += len;
    }
    if (s.state != SMTP_S_DONE)
        smtp_session_eof(&s, ++now);
    for (size_t i = 0; i < nslots; i++)
        if (slots[i].status == SMTP_ST_PENDING ||
            strlen(slots[i].detail) >= sizeof slots[i].detail || emitted[i] > 1 ||
            (slots[i].status == SMTP_ST_SENT &&
             (!emitted[i] || slots[i].code < 200 || slots[i].code > 299)))
            abort();
    smtp_session_clear(&s);
    return 0;
}
