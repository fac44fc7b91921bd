/* The inbox session's inside, shared by imap_inbox.c (login, LIST, the folder checks,
 * the feed loop), imap_inbox_idle.c (IDLE, tick/wake/stop), imap_inbox_act.c (the
 * actions), imap_inbox_status.c (the pipelined STATUS checks) and imap_inbox_msg.c
 * (headers, Message-ID shape). Not part of the interface: only those five include it. */
#ifndef KILN_IMAP_INBOX_INTERNAL_H
#define KILN_IMAP_INBOX_INTERNAL_H

#include "i64map.h"
#include "imap_inbox.h"

#define IB_FOUND_MAX 4096 /* kiln messages remembered per session (re-discovery) */
#define IB_MOVED_MAX 1024 /* moves remembered per session (later actions follow them) */
#define IB_LOOKBACK 100   /* UIDs looked back in a never-watched move target */
#define IB_ALL_ROLES ((1u << IMAP_ROLE_INBOX) | (1u << IMAP_ROLE_JUNK) | (1u << IMAP_ROLE_WARMUP))

/* The folder of a role on this server, and what this session knows of it. */
typedef struct ib_folder {
    char *name;           /* on the wire; NULL: the server has none (yet) */
    bool known;           /* a state to resume from (stored, or checked in this session) */
    uint32_t uidvalidity; /* of the state to resume from, then as SELECT said */
    uint32_t last_uid;
} ib_folder;

/* An action, owned copy. */
typedef struct ib_action {
    imap_inbox_action a; /* strings below */
    char *folder;
    char *flags[IMAP_INBOX_FLAGS_MAX];
    char *message_id;
    bool finished;
} ib_action;

typedef struct ib_found {
    int role;
    uint32_t uidvalidity, uid;
    char *message_id;
} ib_found;

typedef struct ib_moved {
    char *from, *to;
    uint32_t from_uidvalidity, from_uid, to_uidvalidity, to_uid;
} ib_moved;

/* Why a session that took its roles from the stored state lists after all: a move to
 * the warmup folder it does not know (then the action resumes), or a stored folder that
 * SELECT no longer finds (then the folder checks start over with the listed roles). */
enum ib_relist { IB_RELIST_NONE, IB_RELIST_RESUME, IB_RELIST_CYCLE };

/* What ends an IDLE leads to. */
enum ib_after_idle { IB_AFTER_REFRESH, IB_AFTER_WAKE, IB_AFTER_ACTIONS, IB_AFTER_STOP };

/* Steps of the current action (IMAP_IB_ACT_* states carry the command in flight). */
enum ib_act_mode { IB_MODE_MOVE, IB_MODE_COPY, IB_MODE_MARK, IB_MODE_PRUNE, IB_MODE_CLEANUP };

struct imap_inbox {
    imap_session s; /* the login; its parser, tags, command and output serve all */
    int state;      /* enum imap_inbox_state */
    int outcome;
    char detail[320];
    char alert[160];
    imap_inbox_event_fn on_event;
    void *ctx;
    bool (*is_kiln)(void *ctx, const char *id, size_t len);
    void *msgid_ctx;
    bool want_idle, stop_asked;
    bool keep;          /* the job's keep: IMAP_IB_KEPT instead of LOGOUT */
    char unsel_tag[16]; /* an UNSELECT out ahead of a kept visit's STATUS; "" none */
    /* the job's trust_stored_roles: roles from the stored state, no NAMESPACE/LIST */
    bool trust_stored, from_store;
    int relist; /* enum ib_relist: a NAMESPACE/LIST under way after from_store */
    /* the job's pipeline: NAMESPACE and LIST in one write, STATUS before SELECT */
    bool pipeline;
    char ns_tag[16]; /* the NAMESPACE's tag while LIST is out behind it; "" none */
    /* the job's caps_hint: NAMESPACE and LIST (as those capabilities allow) went out
     * behind the LOGIN (list_early, until the login's answer), LIST with list_tag */
    unsigned caps_hint;
    bool list_early, list_guessed; /* list_guessed: until the LIST's answer */
    char list_tag[16];
    /* the LIST out asks each folder's STATUS (RFC 5819); roles answered: st_listed */
    bool list_status;
    int64_t now_ms, idle_refresh_ms, idle_since_ms;
    int64_t command_ms;  /* the job's command_ms (phase timeouts) */
    int64_t greeting_ms; /* the job's greeting_ms (the phase before the greeting) */

    /* namespace and roles */
    char *prefix; /* personal namespace prefix, "" when none */
    char *warmup_utf8;
    char *warmup_wire;                /* prefix + modified UTF-7 name: what a CREATE makes */
    ib_folder roles[IMAP_ROLE_OTHER]; /* INBOX, junk, warmup */
    imap_inbox_folder *stored;        /* the job's states, owned */
    size_t nstored;

    /* the selected folder (SELECT answers land here) */
    char *selected; /* NULL: none */
    uint32_t sel_uidvalidity, sel_uidnext;
    uint32_t sel_exists; /* the SELECT's EXISTS: messages in the folder */
    bool sel_have_exists;

    /* folder checks: roles in check_mask, from check_role on */
    unsigned check_mask;
    int check_role;
    bool checking; /* the check phase of a cycle is under way */
    uint32_t fetch_floor, fetch_from, fetch_to, fetch_max;
    bool fetch_final, fetch_done, fetch_probe, resync;
    bool fetch_hit;    /* the batch under way answered a message in its range */
    i64map fetch_seen; /* UIDs reported in this folder check: a repeat is not news */
    uint32_t old_uidvalidity;
    /* STATUS of the roles (imap_inbox_status.c): bits 1 << role */
    unsigned st_pending, st_have, st_listed;
    bool st_early, login_piped; /* STATUS sent behind the LOGIN; that was decided */
    char st_tag[IMAP_ROLE_OTHER][16];
    uint32_t st_uidnext[IMAP_ROLE_OTHER], st_uidvalidity[IMAP_ROLE_OTHER];

    /* actions */
    ib_action *acts;
    size_t nacts, cap_acts;
    size_t cur; /* the action under way */
    int mode;   /* enum ib_act_mode */
    uint32_t new_uidvalidity, new_uid;
    bool saw_expunge, saw_fetch, flags_ok;
    /* A MOVE without UIDPLUS (no COPYUID to say what moved): the message's sequence
     * number, read by a UID FETCH first (premove), follows the EXPUNGEs before it, and
     * only the EXPUNGE of that number is the move's; another client's expunge is not. */
    bool premove, by_msn;
    uint32_t act_msn; /* 0: not (or no longer) in the folder */
    buf confirmed;    /* MARK: confirmed flags, NUL-separated */
    char *target;     /* the move's destination name (borrowed from roles) */
    int target_role;

    /* IDLE */
    int after_idle; /* enum ib_after_idle */
    bool idle_new_mail, wake_pending;

    ib_found *found;
    size_t nfound;
    ib_moved *moved;
    size_t nmoved;
    buf hdr[4]; /* scratch for one FOUND event: message-id, auth-results, in-reply-to, subject */
};

/* imap_inbox.c */
int ib_send(imap_inbox *ib, int built, int state);
int ib_next(imap_inbox *ib);
int ib_finish(imap_inbox *ib, int outcome, const char *why, size_t n, bool logout);
int ib_protocol_error(imap_inbox *ib, const char *why);
void ib_emit(imap_inbox *ib, imap_inbox_event *ev);
int ib_select(imap_inbox *ib, const char *name, int state);
int ib_logout(imap_inbox *ib);
/* A cycle: the checks of the roles in mask (bits 1 << enum imap_role), the due
 * actions, then IDLE or LOGOUT. */
int ib_start_cycle(imap_inbox *ib, unsigned mask);
/* NAMESPACE (when offered) and LIST now, then what `why` (enum ib_relist) says. */
int ib_relist(imap_inbox *ib, int why);

/* imap_inbox_idle.c: the "+" of a command (a literal's or IDLE's), the IDLE's tagged
 * answer. */
int ib_on_continue(imap_inbox *ib);
int ib_idle_answered(imap_inbox *ib, const imap_resp *r);
const char *ib_role_folder(imap_inbox *ib, int role);

/* imap_inbox_act.c: the next due action's first command (0: none left that is due),
 * the answers of the IMAP_IB_ACT_* states, bookkeeping. */
int ib_act_next(imap_inbox *ib);
int ib_act_tagged(imap_inbox *ib, const imap_resp *r);
void ib_act_untagged(imap_inbox *ib, const imap_resp *r);
bool ib_act_due(const imap_inbox *ib, int64_t now_ms, int64_t *next_ms);
int ib_act_add(imap_inbox *ib, const imap_inbox_action *a);
void ib_act_free_all(imap_inbox *ib);
bool ib_move_target_pending(const imap_inbox *ib, int role);

/* imap_inbox_status.c: the pipelined STATUS of the cycle's folders (0: none sent), its
 * answers, and whether a role's answer settles its check (stored: its stored state) */
int ib_status_start(imap_inbox *ib);
void ib_status_behind_login(imap_inbox *ib, unsigned mask);
void ib_status_untagged(imap_inbox *ib, const imap_resp *r);
/* A STATUS among a LIST-STATUS answer: kept for the role of that name (st_listed); the
 * cycle that follows sends no STATUS for it. */
void ib_status_listed(imap_inbox *ib, const imap_resp *r);
int ib_status_tagged(imap_inbox *ib, const imap_resp *r);
bool ib_status_settles(imap_inbox *ib, int role, const imap_inbox_folder *stored);
/* A kept visit after one that left a folder selected: UNSELECT (when offered) ahead of
 * the STATUS commands, in the same write; its answer is read among theirs. */
void ib_unselect_ahead(imap_inbox *ib);

/* imap_inbox_msg.c */
/* The first header field name's value in a header block: unfolded, whitespace
 * trimmed, bytes outside printable ASCII as '?', at most cap bytes, into out (reset).
 * Returns true when the field is there. */
bool ib_header_value(const char *blk, size_t n, const char *name, size_t cap, buf *out);
/* The first <...> of a Message-ID value, into out (reset); false when none. */
bool ib_msgid_token(const char *v, size_t n, buf *out);
/* Collects the strings of a list node into v[0..max); returns how many. */
size_t ib_node_strings(const imap_node *list, const char **v, size_t max);
void ib_set_text(char *dst, size_t cap, const char *text, size_t n);
/* INTERNALDATE ("dd-Mon-yyyy hh:mm:ss +zzzz", day space-padded or not) as ISO 8601
 * UTC "yyyy-mm-ddThh:mm:ssZ" into out (NUL-terminated); false when malformed. */
bool ib_internaldate_iso(const char *s, size_t n, char out[24]);

#endif
