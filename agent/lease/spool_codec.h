/* Inside the spool only: the record format (spool_codec.c) that spool.c reads and
 * writes. */
#ifndef KILN_SPOOL_CODEC_H
#define KILN_SPOOL_CODEC_H

#include "buf.h"
#include "spool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPOOL_MAGIC 0x3150534bu /* "KSP1" read as little-endian u32 */
#define HEADER_LEN 12u
/* a payload's length bound: the send kinds take < 1 KiB, an inbox event up to the
 * size wire_inbox_event_json can write (its strings are bounded by the wire) */
#define SPOOL_PAYLOAD_MAX ((size_t)256 * 1024)
#define SPOOL_INBOX_VERSION 1

/* A record as read back: r.type is every record's kind; the inbox kinds fill ev (and
 * r.lease_id, r.mailbox_id), with ev.json pointing into the bytes read. */
typedef struct spool_any {
    spool_record r;
    spool_inbox_event ev;
} spool_any;

void spool_encode(buf *out, const spool_record *r);
void spool_encode_inbox(buf *out, int type, const spool_inbox_event *e);
/* A verified record at data[off]? Sets its total length. */
bool spool_record_at(const unsigned char *data, size_t n, size_t off, spool_any *r, size_t *len);

typedef void (*record_fn)(void *arg, const spool_any *r, const unsigned char *raw, size_t len);
/* Calls fn for every good record; returns the end of the last good one. A bad record is
 * skipped by scanning for the next magic whose CRC holds (counted in *bad). */
size_t spool_scan(const unsigned char *data, size_t n, record_fn fn, void *arg, size_t *good,
                  size_t *bad);

#endif
