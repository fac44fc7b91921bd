/* The report spool's record format (see spool.c, which owns the file). Little-endian:
 *   record  = magic u32 "KSP1" | payload length u32 | CRC-32 of the payload u32 | payload
 * The payload of the send kinds (LEASE .. RELEASED, and INBOX_LEASE), as since the first
 * spool:
 *   type u8 | lease id (u8 len + bytes) | send id i64 | mailbox id i64 |
 *   status (u8 len + bytes) | smtp code i32 | enhanced (u8 len + bytes) |
 *   detail (u8 len + bytes) | latency ms i64 | attempts i32
 * The inbox kinds carry a version after their type, so their layout can grow:
 *   INBOX_EVENT v1 = type u8 | 1 u8 | lease id | key u64 | mailbox id i64 | action id i64 |
 *                    event (u32 len + the InboxEvent's JSON, as reported)
 *   INBOX_ACK v1   = type u8 | 1 u8 | lease id | key u64
 * A record of a kind or version this code does not know fails to decode and is skipped
 * like a corrupt one (an older agent reading a newer spool loses those records, nothing
 * else). */
#include "spool_codec.h"

#include <pthread.h>
#include <string.h>

/* ---- CRC-32 ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t spool_crc32(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- encoding ---- */

static void put_u32(buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    buf_append(b, x, 4);
}

static void put_u64(buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(buf *b, const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    buf_putc(b, (char)(unsigned char)n);
    buf_append(b, s, n);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void spool_encode(buf *out, const spool_record *r)
{
    buf payload = BUF_INIT;
    buf_putc(&payload, (char)r->type);
    put_str(&payload, r->lease_id, SPOOL_LEASE_ID_MAX);
    put_u64(&payload, (uint64_t)r->send_id);
    put_u64(&payload, (uint64_t)r->mailbox_id);
    put_str(&payload, r->status, sizeof r->status - 1);
    put_u32(&payload, (uint32_t)r->smtp_code);
    put_str(&payload, r->enhanced, sizeof r->enhanced - 1);
    put_str(&payload, r->detail, sizeof r->detail - 1);
    put_u64(&payload, (uint64_t)r->latency_ms);
    put_u32(&payload, (uint32_t)r->attempts);
    put_u32(out, SPOOL_MAGIC);
    put_u32(out, (uint32_t)payload.len);
    put_u32(out, spool_crc32(0, payload.data, payload.len));
    buf_append(out, payload.data, payload.len);
    buf_free(&payload);
}

struct reader {
    const unsigned char *p;
    size_t n, off;
    bool bad;
};

static const unsigned char *take(struct reader *rd, size_t k)
{
    if (rd->bad || rd->n - rd->off < k) {
        rd->bad = true;
        return NULL;
    }
    const unsigned char *p = rd->p + rd->off;
    rd->off += k;
    return p;
}

static uint64_t take_u64(struct reader *rd)
{
    const unsigned char *p = take(rd, 8);
    return p ? (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32 : 0;
}

static uint32_t take_u32(struct reader *rd)
{
    const unsigned char *p = take(rd, 4);
    return p ? get_u32(p) : 0;
}

static void take_str(struct reader *rd, char *out, size_t outlen)
{
    const unsigned char *lp = take(rd, 1);
    size_t n = lp ? *lp : 0;
    const unsigned char *s = take(rd, n);
    if (!s || n >= outlen) {
        rd->bad = true;
        out[0] = '\0';
        return;
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

void spool_encode_inbox(buf *out, int type, const spool_inbox_event *e)
{
    buf payload = BUF_INIT;
    buf_putc(&payload, (char)type);
    buf_putc(&payload, (char)SPOOL_INBOX_VERSION);
    put_str(&payload, e->lease_id, SPOOL_LEASE_ID_MAX);
    put_u64(&payload, e->key);
    if (type == SPOOL_INBOX_EVENT) {
        put_u64(&payload, (uint64_t)e->mailbox_id);
        put_u64(&payload, (uint64_t)e->action_id);
        put_u32(&payload, (uint32_t)e->json_len);
        buf_append(&payload, e->json, e->json_len);
    }
    put_u32(out, SPOOL_MAGIC);
    put_u32(out, (uint32_t)payload.len);
    put_u32(out, spool_crc32(0, payload.data, payload.len));
    buf_append(out, payload.data, payload.len);
    buf_free(&payload);
}

/* The rest of an inbox record after its type. */
static bool decode_inbox(struct reader *rd, spool_any *a)
{
    spool_inbox_event *e = &a->ev;
    const unsigned char *v = take(rd, 1);
    if (!v || *v != SPOOL_INBOX_VERSION)
        return false;
    take_str(rd, e->lease_id, sizeof e->lease_id);
    memcpy(a->r.lease_id, e->lease_id, sizeof a->r.lease_id);
    e->key = take_u64(rd);
    if (a->r.type == SPOOL_INBOX_EVENT) {
        e->mailbox_id = (int64_t)take_u64(rd);
        e->action_id = (int64_t)take_u64(rd);
        uint32_t jl = take_u32(rd);
        const unsigned char *j = take(rd, jl);
        e->json = (char *)j; /* points into the data read: copied by who keeps it */
        e->json_len = jl;
        a->r.mailbox_id = e->mailbox_id;
    }
    return !rd->bad && rd->off == rd->n;
}

static bool decode(const unsigned char *p, size_t n, spool_any *a)
{
    struct reader rd = {p, n, 0, false};
    spool_record *r = &a->r;
    memset(a, 0, sizeof *a);
    const unsigned char *t = take(&rd, 1);
    r->type = t ? *t : 0;
    if (r->type == SPOOL_INBOX_EVENT || r->type == SPOOL_INBOX_ACK)
        return decode_inbox(&rd, a);
    take_str(&rd, r->lease_id, sizeof r->lease_id);
    r->send_id = (int64_t)take_u64(&rd);
    r->mailbox_id = (int64_t)take_u64(&rd);
    take_str(&rd, r->status, sizeof r->status);
    r->smtp_code = (int)take_u32(&rd);
    take_str(&rd, r->enhanced, sizeof r->enhanced);
    take_str(&rd, r->detail, sizeof r->detail);
    r->latency_ms = (int64_t)take_u64(&rd);
    r->attempts = (int)take_u32(&rd);
    return !rd.bad && rd.off == n &&
           ((r->type >= SPOOL_LEASE && r->type <= SPOOL_RELEASED) || r->type == SPOOL_INBOX_LEASE);
}

bool spool_record_at(const unsigned char *data, size_t n, size_t off, spool_any *r, size_t *len)
{
    if (n - off < HEADER_LEN || get_u32(data + off) != SPOOL_MAGIC)
        return false;
    uint32_t plen = get_u32(data + off + 4);
    if (plen == 0 || plen > SPOOL_PAYLOAD_MAX || n - off - HEADER_LEN < plen)
        return false;
    if (spool_crc32(0, data + off + HEADER_LEN, plen) != get_u32(data + off + 8))
        return false;
    if (!decode(data + off + HEADER_LEN, plen, r))
        return false;
    *len = HEADER_LEN + plen;
    return true;
}

size_t spool_scan(const unsigned char *data, size_t n, record_fn fn, void *arg, size_t *good,
                  size_t *bad)
{
    size_t off = 0, end = 0;
    bool in_bad = false;
    while (off < n) {
        spool_any r;
        size_t len;
        if (spool_record_at(data, n, off, &r, &len)) {
            if (in_bad)
                (*bad)++;
            in_bad = false;
            fn(arg, &r, data + off, len);
            (*good)++;
            off += len;
            end = off;
            continue;
        }
        in_bad = true;
        off++; /* resynchronise on the next magic whose CRC holds */
    }
    return end;
}
