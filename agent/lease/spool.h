/* The report spool: an append-only local file of what the agent leased, which slots it
 * was about to send (intent, durable before DATA) and their outcomes, and what it saw
 * and did in the inboxes it watches (inbox events), so nothing is
 * lost or sent twice when the agent dies or the control plane is away. Records carry
 * a CRC; a torn or corrupt record is skipped on replay, never fatal. Acknowledged
 * records are trimmed by compaction (rewrite + rename). Thread-safe: appends go to a
 * memory buffer under a mutex; spool_sync writes and fdatasyncs them (group commit). */
#ifndef KILN_SPOOL_H
#define KILN_SPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct spool spool;

enum spool_type {
    SPOOL_LEASE = 1, /* a lease was granted (lease_id) */
    SPOOL_INTENT,    /* send_id is about to be sent */
    SPOOL_OUTCOME,   /* send_id's final result, not yet acknowledged */
    SPOOL_ACK,       /* the control plane has send_id's result (or refused it for good) */
    SPOOL_RELEASED,  /* lease_id is over: released, expired or unknown to the server */
    /* the inbox side (the record format says how these are laid out) */
    SPOOL_INBOX_LEASE, /* an inbox lease was granted (lease_id); RELEASED ends it too */
    SPOOL_INBOX_EVENT, /* an inbox event to report, as its JSON, under a key */
    SPOOL_INBOX_ACK,   /* the control plane has the event of that key (or refused it) */
};

#define SPOOL_LEASE_ID_MAX 64

/* One record; strings are NUL-terminated and truncated to their arrays. */
typedef struct spool_record {
    int type;
    char lease_id[SPOOL_LEASE_ID_MAX + 1];
    int64_t send_id;
    int64_t mailbox_id;
    char status[16]; /* sent|deferred|failed|auth|tls|unknown */
    int smtp_code;   /* 0: no reply decided it */
    char enhanced[16];
    char detail[160];
    int64_t latency_ms;
    int attempts;
} spool_record;

/* An inbox event as kept in the spool: the InboxEvent object exactly as it is reported,
 * so a replay after a crash sends the same bytes again (the control plane is idempotent
 * per event, by action id for an outcome) and never makes up an outcome. */
typedef struct spool_inbox_event {
    char lease_id[SPOOL_LEASE_ID_MAX + 1];
    uint64_t key;       /* the spool's number for the event, unique in the file */
    int64_t mailbox_id; /* the inbox */
    int64_t action_id;  /* an action outcome's id, else 0 */
    char *json;         /* in a replay: owned by it; to append: the caller's */
    size_t json_len;
} spool_inbox_event;

/* What a replay found that was never acknowledged. Owned by the caller
 * (spool_replay_free). */
typedef struct spool_replay {
    spool_record *pending; /* outcomes, and intents without one as status "unknown" */
    size_t npending;
    char (*leases)[SPOOL_LEASE_ID_MAX + 1]; /* granted and never marked released */
    size_t nleases;
    spool_inbox_event *inbox_pending; /* inbox events without an ack, oldest first */
    size_t ninbox_pending;
    char (*inbox_leases)[SPOOL_LEASE_ID_MAX + 1]; /* inbox leases never marked released */
    size_t ninbox_leases;
    size_t records;     /* good records read */
    size_t bad_records; /* CRC mismatch or malformed, skipped */
    size_t torn_bytes;  /* bytes of an incomplete last record, cut off */
} spool_replay;

/* Opens (creates) DIR/results.spool, locks it against a second agent, replays it into
 * rep and cuts a torn tail. NULL with a plain-words reason in err. */
spool *spool_open(const char *dir, spool_replay *rep, char *err, size_t errlen);
/* Buffers a record in memory; returns its sequence number (for spool_sync). */
uint64_t spool_append(spool *sp, const spool_record *r);
/* Buffers an inbox event (lease_id, mailbox_id, action_id, json; e->key is ignored) and
 * sets its key in e->key; returns its sequence number. An event larger than the record
 * bound (256 KiB) is refused: 0, nothing appended. */
uint64_t spool_append_inbox_event(spool *sp, spool_inbox_event *e);
/* The control plane has the event of key (under lease_id). */
uint64_t spool_append_inbox_ack(spool *sp, const char *lease_id, uint64_t key);
/* Makes every record up to seq durable (write + fdatasync), batching what other
 * threads appended meanwhile. 0, or -1 with errno-style failure logged. */
int spool_sync(spool *sp, uint64_t seq);
/* Sequence number of the last appended record. */
uint64_t spool_last_seq(spool *sp);
/* Trims acknowledged records: truncates when nothing is live, rewrites the file with
 * only live records when it exceeds threshold_bytes and is mostly dead. 1 when it
 * trimmed, 0 when not worth it, -1 on error (the old file stays valid). */
int spool_compact(spool *sp, size_t threshold_bytes);
/* File size and live record count, for metrics and tests. */
size_t spool_file_bytes(spool *sp);
size_t spool_live_records(spool *sp);
void spool_close(spool *sp);
void spool_replay_free(spool_replay *rep);

/* CRC-32 (IEEE 802.3, as zlib's crc32) of n bytes, continuing from crc (start: 0). */
uint32_t spool_crc32(uint32_t crc, const void *data, size_t n);

#endif
