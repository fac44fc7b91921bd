/* Which actions a found kiln message gets: the one seam between the inbox core and the
 * engagement policy (issue 13). This is the minimal built-in policy: rescue every find
 * in junk, mark it \Seen, file it to the warmup folder after a fixed dwell. The
 * engagement plan (open/important/rescue rates, heavy-tailed dwell, night hours,
 * untouched share; api/engage/) replaces the body of inbox_actions_for_found, not its
 * callers. Pure: no libpq, no I/O, no clock it is not handed. */
#ifndef KILN_INBOX_POLICY_H
#define KILN_INBOX_POLICY_H

#include <stdbool.h>
#include <stdint.h>

/* The name of the folder warmup mail is filed to, without the namespace prefix. */
#define INBOX_WARMUP_FOLDER "kiln"
/* The built-in policy's dwell before filing (seconds). */
#define INBOX_POLICY_DWELL_S 1800
/* At most this many actions per found message. */
#define INBOX_POLICY_MAX_ACTIONS 4
#define INBOX_POLICY_MAX_FLAGS 8

/* enum values in the order of the SQL types folder_role and inbox_action_kind. */
enum inbox_role { ROLE_INBOX, ROLE_JUNK, ROLE_WARMUP, ROLE_OTHER };
enum inbox_action_kind { ACTION_RESCUE, ACTION_MARK, ACTION_FILE, ACTION_PRUNE };

/* A message found for the first time in an inbox. */
typedef struct inbox_found {
    int64_t mailbox_id; /* the recipient (the inbox) */
    int64_t sender_id;  /* the send's mailbox */
    int64_t send_id;
    enum inbox_role role;
    bool seen, flagged; /* \Seen / \Flagged already set when found */
    int64_t now_s;
} inbox_found;

/* One action to create; flags are static strings. */
typedef struct inbox_action_spec {
    enum inbox_action_kind kind;
    const char *flags[INBOX_POLICY_MAX_FLAGS];
    int nflags;
    int target; /* ROLE_INBOX (rescue), ROLE_WARMUP (file), -1 (none) */
    int64_t delay_s;
} inbox_action_spec;

/* Fills out (room for INBOX_POLICY_MAX_ACTIONS) with the actions for f, in the order
 * to apply them; returns how many. */
int inbox_actions_for_found(const inbox_found *f, inbox_action_spec *out);

const char *inbox_role_name(enum inbox_role r);
const char *inbox_action_kind_name(enum inbox_action_kind k);

#endif
