/* The agent's side of the control-plane protocol (DESIGN.md "Wire shapes",
 * api/openapi.yaml): every request body kiln-agent sends and every answer it reads, in
 * one module, each read in one pass. Nothing else on the agent side knows a JSON field
 * name or a path of /api/agent/...: the lease loop hands this module structs and gets
 * structs back. Pure (no I/O, no clock); bodies are written with the JSON generator.
 *
 * The lease document is parsed as a stream straight into the scheduler's job structs
 * (jobs.h), validated field by field, so the engine and the SMTP session can trust
 * what they are handed (no CR/LF in addresses, a port in range, a known security
 * mode), and one bad mailbox entry never poisons the others. */
#ifndef KILN_AGENT_WIRE_H
#define KILN_AGENT_WIRE_H

#include "buf.h"
#include "engine.h"
#include "inbox_feed.h"
#include "jobs.h"
#include "spool.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* The control plane's endpoints (POST with a JSON body, but /healthz). */
#define WIRE_PATH_LEASE "/api/agent/lease"
#define WIRE_PATH_REPORT "/api/agent/report"
#define WIRE_PATH_HEARTBEAT "/api/agent/heartbeat"
#define WIRE_PATH_RELEASE "/api/agent/release"
#define WIRE_PATH_HEALTHZ "/healthz"

/* ---- lease ---- */

/* {"agent":..,"max_mailboxes":..,"max_sends":..,"max_inboxes":..[,"inboxes_held":..]
 * [,"inbox_cursor":..]} (inboxes_held only when > 0: the answer lists the held inboxes
 * again; inbox_cursor only when > 0: the inboxes held come as updates, only what is new) */
void wire_lease_request(buf *out, const char *agent_name, size_t max_mailboxes, size_t max_sends,
                        size_t max_inboxes, size_t inboxes_held, int64_t inbox_cursor);

/* A mailbox entry of the lease that failed validation. It is not sent: its slots go
 * back to the control plane as failed with reason, so one bad entry never holds up
 * the others. */
typedef struct wire_rejected {
    int64_t mailbox_id; /* 0 when the entry had no usable id */
    int64_t *send_ids;  /* the slots whose ids could be read */
    size_t nsend_ids;
    char reason[192]; /* "mailboxes[3].smtp.password: not valid UTF-8" */
} wire_rejected;

/* A lease document. Owned by the caller (wire_lease_free); a mailbox handed to the
 * engine leaves it (its entry set to NULL). */
typedef struct wire_lease {
    char *lease_id; /* NULL when the answer had null */
    int64_t ttl_s;
    job_mailbox **mailboxes; /* entries set to NULL once handed over */
    size_t nmailboxes;
    wire_rejected *rejected; /* entries that failed validation, in document order */
    size_t nrejected;
    int64_t retry_after_s; /* the empty answer's, in [0, 86400]; 5 when absent */
    bool has_service;
    char service[24]; /* "running", "stopped" (the empty answer's) */
} wire_lease;

/* Parses and validates; returns 0, or -1 with a one-line reason naming the field. A
 * fault inside one mailbox entry (a bad, missing or mistyped field, invalid UTF-8)
 * rejects only that entry (l->rejected); a fault of the document (not JSON, truncated)
 * or of the lease's own fields fails the whole parse. The input of `send --file`. */
int wire_lease_parse(const char *data, size_t n, wire_lease **out, char *err, size_t errlen);
void wire_lease_free(wire_lease *l);

enum wire_lease_kind {
    WIRE_LEASE_WORK,     /* a lease id and mailbox entries (good or rejected) */
    WIRE_LEASE_EMPTY,    /* nothing now: lease_id null (or no entries); ask again later */
    WIRE_LEASE_UNUSABLE, /* not a lease answer: not JSON, a bad lease field, no lease_id */
};

/* What a lease call's 200 answer means to the loop. */
typedef struct wire_lease_answer {
    enum wire_lease_kind kind;
    wire_lease *lease;     /* WORK only: owned by the caller (wire_lease_free) */
    int64_t retry_after_s; /* EMPTY: the server's, 5 when it gave none */
    bool has_service;
    char service[24]; /* EMPTY: "running" or "stopped" when given */
    char error[256];  /* UNUSABLE: why */
    /* WORK and EMPTY: where the answer's inbox_lease and inboxes values are in the
     * document (len 0: absent), for wire_inbox_part_parse; nothing is allocated */
    size_t inbox_lease_off, inbox_lease_len, inboxes_off, inboxes_len;
} wire_lease_answer;

/* One pass over the answer. An answer whose lease_id is null is EMPTY even when other
 * lease fields are faulty (the server's "nothing now" must never count as a failure);
 * a syntax error makes any answer UNUSABLE. */
void wire_lease_answer_parse(const char *data, size_t n, wire_lease_answer *out);

/* ---- heartbeat and release ---- */

/* {"lease_id":..}: the body of a heartbeat and of a release. */
void wire_lease_id_body(buf *out, const char *lease_id);

/* A heartbeat's 200 answer. Owned by the caller (wire_heartbeat_free). */
typedef struct wire_heartbeat {
    int64_t ttl_s;   /* the renewed lease's ttl, in [1, 604800]; 0: none given */
    int64_t *cancel; /* slot ids the agent must not send */
    size_t ncancel;
    bool has_service;
    char service[24];         /* "running" or "stopped" when given */
    int64_t *inboxes_dropped; /* an inbox lease's: mailbox ids to stop watching */
    size_t ninboxes_dropped;
} wire_heartbeat;

/* 0, or -1 when the answer is not JSON (then out is empty: nothing renewed, nothing
 * cancelled). */
int wire_heartbeat_parse(const char *data, size_t n, wire_heartbeat *out);
void wire_heartbeat_free(wire_heartbeat *hb);

/* ---- results and reports ---- */

/* An engine result's status (enum smtp_status) by its name in common/wire.h: "sent",
 * "deferred", ... ("pending" for a slot without an outcome, which is never reported). */
const char *wire_status_of(int engine_status);

/* One result as `kiln-agent send` prints it: {"send_id":..,"status":..,"smtp_code":..,
 * "enhanced_code":..,"detail":..,"latency_ms":..,"attempts":..} */
void wire_result_json(const engine_result *r, buf *out);

/* A report body, {"lease_id":..,"results":[..]}, written one result at a time. */
typedef struct wire_report {
    yajl_gen g;
} wire_report;
void wire_report_begin(wire_report *w, buf *out, const char *lease_id);
/* The result of an OUTCOME record (without attempts: the report's shape). */
void wire_report_add(wire_report *w, const spool_record *r);
void wire_report_end(wire_report *w);

/* A report refused with 404 unknown_send names the result in its field
 * ("results[12].send_id"): true with that index, false for any other refusal. */
bool wire_report_unknown_send(const char *code, const char *field, size_t *index);

/* ---- the inbox side (agent_wire_inbox.c; openapi InboxLease, LeaseInbox, InboxEvent) ---- */

/* One inbox of a lease answer, validated member by member (inbox_feed.h says what a
 * feed_inbox guarantees). Its strings live in tree; an action's not_before_ms is still
 * relative here (not_before_s * 1000): the lease loop adds when the answer came. */
typedef struct wire_inbox {
    feed_inbox in;
    feed_folder *folders;
    feed_action *actions;
    yajl_val tree; /* the entry's parse tree: owns every string */
    /* An update (LeaseInboxUpdate, "known": true): only mailbox_id, poll class and
     * interval, actions; the rest comes from the held entry (wire_inbox_take_access). */
    bool known;
    yajl_val access_tree; /* after wire_inbox_take_access: owns the adopted strings */
} wire_inbox;
/* Moves the access, address, warmup folder and folders of `from` (a full entry, or one
 * that took them) into the update `to`; `from` keeps its actions and is freed as usual. */
void wire_inbox_take_access(wire_inbox *to, wire_inbox *from);
void wire_inbox_free(wire_inbox *w); /* wipes the secrets first; NULL is fine */

/* An inbox entry set aside: reported as a session event, status protocol. */
typedef struct wire_inbox_rejected {
    int64_t mailbox_id; /* 0 when the entry had no usable id (then only logged) */
    char reason[192];   /* "inboxes[2].imap.port: must be an integer in [1, 65535]" */
} wire_inbox_rejected;

/* The inbox part of a lease answer. Owned by the caller (wire_inbox_part_free). */
typedef struct wire_inbox_part {
    bool present;    /* the answer had inbox_lease or inboxes */
    char error[256]; /* not empty: the part is unusable (bad inbox_lease, inboxes not an
                      * array, one without the other): nothing of it may be watched */
    char lease_id[37];
    int64_t ttl_s;       /* [60, 86400] */
    int64_t heartbeat_s; /* [10, 3600] */
    int64_t cursor;      /* inbox_lease.cursor, for the next request; 0: none */
    wire_inbox **inboxes;
    size_t ninboxes;
    wire_inbox_rejected *rejected; /* in document order */
    size_t nrejected;
} wire_inbox_part;

/* Reads the inbox part of the lease answer doc (a was filled by wire_lease_answer_parse
 * from the same bytes). A fault inside one entry (a bad, missing or mistyped member,
 * invalid UTF-8, a NUL, a duplicate mailbox_id, an entry past WIRE_MAX_LEASE_INBOXES)
 * sets that entry aside; a fault of inbox_lease or of the array itself fails the part
 * (out->error). */
void wire_inbox_part_parse(const char *doc, size_t n, const wire_lease_answer *a,
                           wire_inbox_part *out);
/* The inboxes of a file (`kiln-agent inbox --file`): a JSON array of LeaseInbox, or an
 * object carrying one as "inboxes" (a lease answer; its inbox_lease is not needed). The
 * entries are read as a lease answer's are (one bad entry set aside, the others kept);
 * out->error when the document is not JSON or has no such array. An action's
 * not_before_ms stays relative (not_before_s * 1000). */
void wire_inbox_file_parse(const char *doc, size_t n, wire_inbox_part *out);
void wire_inbox_part_free(wire_inbox_part *p);

/* One InboxEvent object for a report. Checks the event against the wire's ranges first:
 * -1 with the reason when it is malformed (out unchanged). Free text (detail,
 * authentication_results) is cut to its maximum on a UTF-8 boundary. */
int wire_inbox_event_json(const feed_event *ev, buf *out, char *err, size_t errlen);
/* A report body {"lease_id":..,"inbox_events":[..]} from events written by
 * wire_inbox_event_json. */
void wire_inbox_report(buf *out, const char *lease_id, const char *const *events,
                       const size_t *lens, size_t n);

/* The inbox_events counts of a report's 200 answer. */
typedef struct wire_inbox_counts {
    bool present;
    int64_t applied, duplicates, ignored;
} wire_inbox_counts;
/* 0, or -1 when the answer is not JSON. */
int wire_inbox_report_answer_parse(const char *data, size_t n, wire_inbox_counts *out);
/* A report refused with 400 naming one event ("inbox_events[3].folder"): true with its
 * index. */
bool wire_report_bad_inbox_event(const char *field, size_t *index);

/* Wire names of the enums ("high", "junk", "rescue", "done", "auth", "tls"...). */
extern const char *const wire_poll_class_names[FEED_POLL_COUNT];
extern const char *const wire_role_names[FEED_ROLE_COUNT];
extern const char *const wire_security_names[FEED_SEC_COUNT];
extern const char *const wire_action_kind_names[FEED_ACT_COUNT];
extern const char *const wire_action_status_names[FEED_AST_COUNT];
extern const char *const wire_session_status_names[FEED_SES_COUNT];

/* ---- errors ---- */

/* {"error":{"code":..,"field":..,"message":..}}, any member absent. */
typedef struct wire_error {
    char code[64];
    char field[96];
    bool has_message;
    char message[160];
} wire_error;
/* Fills what the body carries ("" for the rest); a body that is not JSON leaves it
 * all empty. */
void wire_error_parse(const char *data, size_t n, wire_error *out);

#endif
