/* The seam between the lease loop and an inbox engine (issue 12): the loop says which
 * inboxes to watch now (added, changed, removed) and the engine hands back what it saw
 * and did, one event at a time; the loop makes each event durable in the report spool
 * and reports it in batches. This header is self-contained (plain C types and buf.h), so
 * the engine side can implement it without seeing the lease loop, and the lease loop
 * never includes the engine: `kiln-agent run` gets an `inbox_feed_engine` table (NULL
 * when no engine is linked: inbox leases are then only held, renewed and released).
 *
 * Values and limits are those of api/openapi.yaml (LeaseInbox, InboxEvent). */
#ifndef KILN_INBOX_FEED_H
#define KILN_INBOX_FEED_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Enumerations, in the order of the wire's enums. */
enum feed_poll_class { FEED_POLL_HIGH, FEED_POLL_MEDIUM, FEED_POLL_LOW, FEED_POLL_COUNT };
enum feed_role {
    FEED_ROLE_INBOX,
    FEED_ROLE_JUNK,
    FEED_ROLE_WARMUP,
    FEED_ROLE_OTHER,
    FEED_ROLE_COUNT
};
enum feed_security { FEED_SEC_PLAIN, FEED_SEC_STARTTLS, FEED_SEC_TLS, FEED_SEC_COUNT };
enum feed_action_kind {
    FEED_ACT_RESCUE,
    FEED_ACT_MARK,
    FEED_ACT_FILE,
    FEED_ACT_PRUNE,
    FEED_ACT_COUNT
};
/* InboxEventAction.status */
enum feed_action_status {
    FEED_AST_DONE,
    FEED_AST_GONE,
    FEED_AST_STALE,
    FEED_AST_REFUSED,
    FEED_AST_FAILED,
    FEED_AST_COUNT
};
/* InboxEventSession.status */
enum feed_session_status {
    FEED_SES_OK,
    FEED_SES_AUTH,
    FEED_SES_TLS,
    FEED_SES_CONNECT,
    FEED_SES_THROTTLED,
    FEED_SES_PROTOCOL,
    FEED_SES_COUNT
};

#define FEED_FOLDERS_MAX 16       /* LeaseInbox.folders */
#define FEED_ACTIONS_MAX 1000     /* LeaseInbox.actions */
#define FEED_ACTION_FLAGS_MAX 8   /* InboxAction.flags */
#define FEED_EVENT_FLAGS_MAX 64   /* InboxEventFound.flags, .labels; InboxEventAction.flags */
#define FEED_FOLDER_NAME_MAX 1000 /* bytes, on the wire (modified UTF-7) */
#define FEED_FLAG_MAX 128
#define FEED_LABEL_MAX 256
#define FEED_MESSAGE_ID_MAX 998
#define FEED_AUTH_RESULTS_MAX 4000
#define FEED_DETAIL_MAX 1000

/* A folder's state as last reported (InboxFolder). */
typedef struct feed_folder {
    const char *name; /* on the wire (modified UTF-7), 1..1000 bytes */
    int role;         /* enum feed_role */
    uint32_t uidvalidity;
    uint32_t last_uid; /* 0: nothing seen yet */
} feed_folder;

/* One action due (InboxAction), addressed by (folder, uidvalidity, uid) only. */
typedef struct feed_action {
    int64_t id;
    int kind; /* enum feed_action_kind */
    const char *folder;
    uint32_t uidvalidity;
    uint32_t uid;
    const char *flags[FEED_ACTION_FLAGS_MAX]; /* mark: the flags to add (1..8); else none */
    size_t nflags;
    int target; /* FEED_ROLE_INBOX (rescue), FEED_ROLE_WARMUP (file), -1 (mark, prune) */
    /* not before this time on CLOCK_MONOTONIC in ms (the clock of clock_mono_ms): the
     * answer's not_before_s counted from when the lease answer came */
    int64_t not_before_ms;
} feed_action;

/* One inbox to watch (LeaseInbox), validated: a host without spaces or controls, a port
 * in range, exactly one of password and oauth_token, strings valid UTF-8 without NUL or
 * control characters, every enum known. Every pointer is borrowed for the duration of
 * the call that hands it over: the engine copies what it keeps. */
typedef struct feed_inbox {
    int64_t mailbox_id;
    const char *address;
    const char *host;
    int port;
    int security; /* enum feed_security */
    const char *username;
    const char *password;    /* NULL when a token is used */
    const char *oauth_token; /* NULL when a password is used */
    const char *ca_file;     /* NULL: the system store */
    bool allow_plaintext_auth;
    int poll_class; /* enum feed_poll_class */
    int64_t poll_interval_s;
    const char *warmup_folder; /* without the namespace prefix */
    const feed_folder *folders;
    size_t nfolders;
    /* the actions due, in the order to apply them, without those whose outcome the loop
     * already has (an action is done once) */
    const feed_action *actions;
    size_t nactions;
} feed_inbox;

enum feed_event_type { FEED_EV_FOUND, FEED_EV_ACTION, FEED_EV_FOLDER_STATE, FEED_EV_SESSION };

/* One event from the engine (InboxEvent). Pointers are borrowed for the call. */
typedef struct feed_event {
    int type; /* enum feed_event_type */
    int64_t mailbox_id;
    /* FOUND, FOLDER_STATE; ACTION when done: where the message is now (NULL: not said) */
    const char *folder;
    int role; /* enum feed_role (FOUND, FOLDER_STATE) */
    uint32_t uidvalidity;
    uint32_t uid;                       /* FOUND; ACTION (0: not said) */
    uint32_t last_uid;                  /* FOLDER_STATE */
    const char *message_id;             /* FOUND, with its angle brackets */
    const char *const *flags;           /* FOUND: the message's; ACTION (mark): confirmed */
    size_t nflags;                      /* at most FEED_EVENT_FLAGS_MAX */
    const char *const *labels;          /* FOUND: X-GM-LABELS; NULL: the server has none */
    size_t nlabels;                     /* at most FEED_EVENT_FLAGS_MAX */
    const char *authentication_results; /* FOUND: NULL when none; capped at 4000 bytes */
    const char *internal_date;          /* FOUND: ISO 8601 UTC, or NULL */
    int64_t action_id;                  /* ACTION */
    int status;         /* ACTION: enum feed_action_status; SESSION: enum feed_session_status */
    const char *detail; /* ACTION, SESSION: NULL or free text (capped at 1000 bytes) */
} feed_event;

/* Events are spooled and reported in the order emitted: emit a folder's found events
 * before the folder_state that covers them, so that a crash in between makes the next
 * holder fetch them again rather than skip them; emit an action's outcome once the
 * server confirmed it (the loop never makes one up for an action in flight).
 *
 * The loop's side, given to the engine at start: call it from any thread. 0 when the
 * event is taken (it is in the spool's buffer and will be reported), -1 when it is
 * refused: malformed (a field out of the wire's range), for an inbox the agent does not
 * hold, or a second outcome for one action id (an action is reported once). */
typedef int (*feed_emit_fn)(void *emit_arg, const feed_event *ev);

/* The engine's side: what `kiln-agent run` calls, all on its control thread. */
typedef struct inbox_feed_engine {
    /* Starts the engine; it reports through emit(emit_arg, ev) until destroy returns.
     * The engine's own knobs come from the environment. NULL with a reason in err. */
    void *(*start)(feed_emit_fn emit, void *emit_arg, char *err, size_t errlen);
    /* Watch this inbox from now on: a new one, or one watched already with changed
     * access, poll class or new actions (replaces what the engine had for it, but its
     * own folder state where that is newer: the folders here are the control plane's
     * last word, which lags behind the engine's reports). */
    void (*watch)(void *engine, const feed_inbox *inbox);
    /* Stop watching (dropped by the control plane, or its lease is lost): no new
     * command to that inbox; a session under way logs out. */
    void (*unwatch)(void *engine, int64_t mailbox_id);
    /* SIGTERM: stop every inbox within drain_ms (events may still come until finished
     * says true). */
    void (*stop)(void *engine, int64_t drain_ms);
    bool (*finished)(void *engine);
    /* Joins and frees; emit is not called any more once this returns. */
    void (*destroy)(void *engine);
    /* Optional (NULL): Prometheus text appended to /metrics, from the metrics thread. */
    void (*metrics)(void *engine, buf *out);
} inbox_feed_engine;

#endif
