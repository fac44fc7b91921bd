/* IMAP inbox session, sans-I/O: one visit to one watched inbox on top of imap_session's
 * login. After login: NAMESPACE (when offered), LIST "" * RETURN (SPECIAL-USE) to find
 * the roles (INBOX, the \Junk folder, kiln's warmup folder under the personal prefix;
 * or, with trust_stored_roles, the roles of the stored state and no NAMESPACE/LIST),
 * then per folder SELECT + UIDVALIDITY check + UID FETCH of what is new (in UID batches),
 * then the due actions in order (rescue, mark, file, prune; UID-exact, never by sequence
 * number), then IDLE on INBOX when asked and offered, else LOGOUT. Server bytes go in
 * through imap_inbox_feed, commands come out in imap_inbox_output, what was seen and done
 * comes out as events through the caller's callback. No socket and no clock: every call
 * that may act is handed now_ms (the owner's monotonic clock, the one not_before_ms and
 * the IDLE refresh are measured on). */
#ifndef KILN_IMAP_INBOX_H
#define KILN_IMAP_INBOX_H

#include "buf.h"
#include "imap_session.h"
#include "net_session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Folder roles, as on the wire (openapi FolderRole). */
enum imap_role {
    IMAP_ROLE_INBOX,
    IMAP_ROLE_JUNK,   /* the folder LIST marks \Junk (RFC 6154); never guessed by name */
    IMAP_ROLE_WARMUP, /* kiln's folder: the personal namespace prefix + the job's name */
    IMAP_ROLE_OTHER,
    IMAP_ROLE_COUNT
};
const char *imap_role_name(int role); /* "inbox", "junk", "warmup", "other" */

/* A folder's state as the control plane last heard it (openapi InboxFolder). */
typedef struct imap_inbox_folder {
    const char *name; /* on the wire (modified UTF-7): "INBOX", "Junk", "INBOX.Warmup" */
    int role;         /* enum imap_role */
    uint32_t uidvalidity;
    uint32_t last_uid; /* 0: nothing seen yet */
} imap_inbox_folder;

enum imap_action_kind {
    IMAP_ACT_RESCUE, /* move to INBOX (target IMAP_ROLE_INBOX) */
    IMAP_ACT_MARK,   /* UID STORE +FLAGS (flags), confirmed with UID FETCH (FLAGS) */
    IMAP_ACT_FILE,   /* move to the warmup folder (target IMAP_ROLE_WARMUP), created if missing */
    IMAP_ACT_PRUNE,  /* UID STORE +FLAGS.SILENT (\Deleted) + UID EXPUNGE uid (UIDPLUS) */
    IMAP_ACT_KIND_COUNT
};
const char *imap_action_kind_name(int kind); /* "rescue", "mark", "file", "prune" */

/* One action (openapi InboxAction). Addressed by (folder, uidvalidity, uid) only. */
typedef struct imap_inbox_action {
    int64_t id;
    int kind;           /* enum imap_action_kind */
    const char *folder; /* where the message is, on the wire */
    uint32_t uidvalidity;
    uint32_t uid;
    const char *const *flags; /* MARK: the flags to add ("\\Seen", "\\Flagged", keywords) */
    size_t nflags;            /* at most IMAP_INBOX_FLAGS_MAX */
    /* Optional (NULL: none): the message's Message-ID, with its angle brackets. For a
     * move it lets the session recognise a message an earlier, crashed session already
     * moved (found among the target folder's new mail) and report it done with that UID
     * instead of moving it twice. */
    const char *message_id;
    int64_t not_before_ms; /* on the now_ms clock: not done before */
} imap_inbox_action;

#define IMAP_INBOX_FLAGS_MAX 8
#define IMAP_INBOX_EV_FLAGS_MAX 64 /* flags and labels reported per message */
#define IMAP_INBOX_AUTHRES_MAX 4000
#define IMAP_INBOX_FETCH_BATCH 500 /* UIDs per UID FETCH of new mail */
#define IMAP_INBOX_IDLE_REFRESH_MS ((int64_t)28 * 60 * 1000)
/* A command's answer by default; FETCH and moves twice this. */
#define IMAP_INBOX_COMMAND_MS ((int64_t)60 * 1000)
/* The server's greeting by default (the inbox engine's KILN_AGENT_IMAP_TIMEOUT_GREETING_MS). */
#define IMAP_INBOX_GREETING_MS ((int64_t)30 * 1000)

/* Filled by the caller; imap_inbox_new copies everything it needs (strings included),
 * so the job may be freed once that returns. */
typedef struct imap_inbox_job {
    const imap_inbox_folder *folders; /* stored state; none: never watched */
    size_t nfolders;
    const imap_inbox_action *actions; /* in the order to apply them */
    size_t nactions;
    const char *warmup_folder; /* UTF-8, without the namespace prefix; NULL: "Warmup" */
    bool want_idle;            /* after the work, IDLE on INBOX if offered (else LOGOUT) */
    /* Which Message-IDs are kiln's (shape only; the control plane checks the MAC).
     * NULL: imap_inbox_msgid_shape_ok. */
    bool (*is_kiln_msgid)(void *ctx, const char *id, size_t len);
    void *msgid_ctx;
    int64_t idle_refresh_ms; /* 0: IMAP_INBOX_IDLE_REFRESH_MS (servers drop at 30 min) */
    /* When the stored folders name INBOX and the \Junk folder (an earlier visit's LIST
     * found them), take the roles from them and send no NAMESPACE/LIST: two round trips
     * less per poll. A stored folder SELECT no longer finds, or a move to a warmup folder
     * the state does not name, lists after all. */
    bool trust_stored_roles;
    /* Fewer round trips (RFC 3501 §5.5 pipelining): NAMESPACE and LIST go out together,
     * and a visit's first checks start with one STATUS (UIDNEXT UIDVALIDITY) per folder,
     * all in one write (behind the LOGIN, with a CAPABILITY, when the roles come from the
     * stored state); a folder whose STATUS shows nothing new is not selected. A repeat
     * visit with no new mail is greeting, LOGIN+CAPABILITY+STATUS x2, LOGOUT. */
    bool pipeline;
    /* The server's capabilities after an earlier login there (the owner keeps them per
     * server: imap_inbox_caps), 0: none known. Under pipeline, a visit that lists (no
     * roles from the stored state) sends CAPABILITY, NAMESPACE and LIST behind the LOGIN
     * as these allow, with each folder's STATUS where LIST-STATUS is offered: a first
     * visit is then greeting, LOGIN+CAPABILITY+NAMESPACE+LIST, LOGOUT. Only what goes out
     * is guessed: the answers are read with the capabilities this login brings, and a
     * LIST refused for a stale hint is sent again as they allow. */
    unsigned caps_hint;
    /* After a visit's work, when it does not IDLE: stay logged in (IMAP_IB_KEPT) instead
     * of LOGOUT; the owner starts the next visit on the same connection with
     * imap_inbox_visit (one write: STATUS of every folder, behind an UNSELECT when a
     * folder is still selected), or ends it with imap_inbox_stop. */
    bool keep;
    /* How long a command's answer may take; FETCH and moves get twice as long.
     * 0: IMAP_INBOX_COMMAND_MS. */
    int64_t command_ms;
    /* How long the server's greeting may take after the connection (after the TLS
     * handshake, for implicit TLS). 0: IMAP_INBOX_GREETING_MS. */
    int64_t greeting_ms;
} imap_inbox_job;

/* Action outcomes, named as on the wire (openapi InboxEventAction.status). */
enum imap_action_status {
    IMAP_ACT_DONE,    /* applied (the brief's "ok") */
    IMAP_ACT_GONE,    /* no message at that UID (or no such folder) */
    IMAP_ACT_STALE,   /* the folder's UIDVALIDITY is not the action's */
    IMAP_ACT_REFUSED, /* the server cannot do it safely (no MOVE and no UIDPLUS: "unsupported") */
    IMAP_ACT_FAILED,  /* the server said NO/BAD: detail */
    IMAP_ACT_STATUS_COUNT
};
const char *imap_action_status_name(int status);

enum imap_inbox_ev_type {
    IMAP_INBOX_EV_LOGGED_IN = 1, /* login worked (openapi InboxEventSession "ok") */
    IMAP_INBOX_EV_FOUND,         /* a message with a kiln-shaped Message-ID */
    IMAP_INBOX_EV_FOLDER_STATE,  /* a folder checked: resume from here */
    IMAP_INBOX_EV_ACTION,        /* an action's outcome (once per action) */
    IMAP_INBOX_EV_WAKE,          /* new mail while idling: call imap_inbox_wake (or not) */
};

/* One event. Every pointer is valid only during the callback: copy what you keep. */
typedef struct imap_inbox_event {
    int type; /* enum imap_inbox_ev_type */
    /* FOUND, FOLDER_STATE; ACTION: where the message is now (done moves: the target) */
    const char *folder; /* on the wire; NULL for ACTION when not known */
    int role;           /* enum imap_role */
    uint32_t uidvalidity;
    uint32_t uid; /* FOUND; ACTION: the (new) uid, 0 when not known */
    /* FOUND */
    const char *message_id;   /* NUL-terminated, with its angle brackets */
    const char *const *flags; /* FOUND: the message's flags; ACTION (mark): confirmed */
    size_t nflags;
    const char *const *labels; /* X-GM-LABELS (as sent, modified UTF-7) where offered */
    size_t nlabels;
    const char *auth_results;  /* topmost Authentication-Results, unfolded, capped; or NULL */
    const char *in_reply_to;   /* NULL when absent */
    const char *subject;       /* raw header value, unfolded; NULL when absent */
    const char *internal_date; /* INTERNALDATE in ISO 8601 UTC ("2026-12-03T03:00:00Z"); NULL
                                  when absent or malformed */
    /* FOLDER_STATE */
    uint32_t last_uid;
    bool resync;              /* UIDVALIDITY differed from the stored one: refetched */
    uint32_t old_uidvalidity; /* the stored one, when resync */
    /* ACTION */
    int64_t action_id;
    int status;         /* enum imap_action_status */
    const char *detail; /* NUL-terminated, printable ASCII, "" when none */
} imap_inbox_event;

typedef void (*imap_inbox_event_fn)(void *ctx, const imap_inbox_event *ev);

/* The inbox session's states (the login before IMAP_IB_LIST is imap_session's). */
enum imap_inbox_state {
    IMAP_IB_LOGIN,       /* imap_session walks to IMAP_S_READY */
    IMAP_IB_NAMESPACE,   /* NAMESPACE sent */
    IMAP_IB_LIST,        /* LIST sent */
    IMAP_IB_STATUS,      /* STATUS of the folders to check sent (job.pipeline) */
    IMAP_IB_SELECT,      /* SELECT of a folder to check */
    IMAP_IB_FETCH,       /* UID FETCH of new mail (one batch) */
    IMAP_IB_ACT_CREATE,  /* CREATE of the warmup folder for an action */
    IMAP_IB_ACT_SELECT,  /* SELECT of an action's folder */
    IMAP_IB_ACT_MOVE,    /* UID MOVE */
    IMAP_IB_ACT_COPY,    /* UID COPY (the fallback) */
    IMAP_IB_ACT_DELETE,  /* UID STORE +FLAGS.SILENT (\Deleted) */
    IMAP_IB_ACT_EXPUNGE, /* UID EXPUNGE uid */
    IMAP_IB_ACT_STORE,   /* UID STORE +FLAGS (mark) */
    IMAP_IB_ACT_CONFIRM, /* UID FETCH uid (FLAGS) */
    IMAP_IB_IDLE_SELECT, /* SELECT INBOX before IDLE */
    IMAP_IB_IDLE_START,  /* IDLE sent, waiting for "+" */
    IMAP_IB_IDLING,      /* idling: WAKE on new mail, refresh on tick */
    IMAP_IB_IDLE_DONE,   /* DONE sent, untagged lines until the IDLE's OK */
    IMAP_IB_KEPT,        /* logged in between visits (job.keep): nothing in flight */
    IMAP_IB_DONE,        /* over: imap_inbox_outcome says how */
    IMAP_IB_COUNT
};
const char *imap_inbox_state_name(int state);

/* Opaque; imap_inbox_new / imap_inbox_free. One per connection. */
typedef struct imap_inbox imap_inbox;

/* p: the login (strings borrowed: they must outlive the session); job: copied.
 * on_event is called from within the calls below. NULL on a job the session cannot
 * take (a warmup name that is not UTF-8, more than IMAP_INBOX_FLAGS_MAX flags). */
imap_inbox *imap_inbox_new(const imap_session_params *p, const imap_inbox_job *job,
                           imap_inbox_event_fn on_event, void *ctx);
void imap_inbox_free(imap_inbox *ib);

/* Each returns a mask of enum imap_event (imap_session.h): IMAP_EV_OUTPUT (send the
 * output), IMAP_EV_STARTTLS (start TLS, then imap_inbox_tls_ready), IMAP_EV_DONE (send
 * what is left, then close). */
int imap_inbox_feed(imap_inbox *ib, const char *data, size_t n, int64_t now_ms);
int imap_inbox_tls_ready(imap_inbox *ib, int64_t now_ms);
/* Time passed: while idling, re-issues IDLE at the refresh deadline, and ends IDLE to
 * do actions that have come due. Call it at imap_inbox_next_tick_ms at the latest. */
int imap_inbox_tick(imap_inbox *ib, int64_t now_ms);
/* When tick wants to be called next (INT64_MAX: not needed). */
int64_t imap_inbox_next_tick_ms(const imap_inbox *ib);
/* Kept (IMAP_IB_KEPT): the next visit on this connection, every folder checked and the
 * due actions done as in the first, then kept again. Else 0. */
int imap_inbox_visit(imap_inbox *ib, int64_t now_ms);
/* While idling: DONE, fetch INBOX's new mail, do the due actions, IDLE again. Else 0. */
int imap_inbox_wake(imap_inbox *ib, int64_t now_ms);
/* Ends the session as soon as the command in flight is answered (DONE when idling; at
 * once when kept), with LOGOUT. */
int imap_inbox_stop(imap_inbox *ib, int64_t now_ms);
/* Adds an action (a later lease answer): copied; done in turn when due. Returns 0 (also
 * for an id the session has, not finished, whose due time it moves earlier to
 * not_before_ms), -EEXIST for an id the session already has otherwise, -EINVAL for a
 * malformed one. */
int imap_inbox_add_action(imap_inbox *ib, const imap_inbox_action *a);
/* The server closed the connection. */
void imap_inbox_eof(imap_inbox *ib);
buf *imap_inbox_output(imap_inbox *ib);

int imap_inbox_state(const imap_inbox *ib);
/* enum imap_outcome (imap_session.h), IMAP_OUT_NONE while it goes on. */
int imap_inbox_outcome(const imap_inbox *ib);
/* Why it ended, printable ASCII; a server's [ALERT] text is appended. */
const char *imap_inbox_detail(const imap_inbox *ib);
/* The server's capabilities (enum imap_cap) as last heard: after the login event, the
 * logged-in list (what job.caps_hint of a later visit there takes). */
unsigned imap_inbox_caps(const imap_inbox *ib);
/* The phase for net/: the state, and the time its answer may take (IDLE: the refresh
 * period plus a margin; the owner's tick comes first). */
void imap_inbox_phase(const imap_inbox *ib, net_phase *out);

/* The default kiln Message-ID shape (openapi InboxEventFound): "<L@D>", L matching
 * ^[0-9]{1,19}\.[0-9a-z][0-9a-f]{15,63}$, D a dot-atom of letters, digits, '-'. */
bool imap_inbox_msgid_shape_ok(const char *id, size_t len);

#endif
