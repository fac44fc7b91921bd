/* Which actions a found kiln message gets, and whether it is answered: the one seam
 * between the inbox core (inbox_report.c) and the engagement policy (api/engage/,
 * docs/design.md "Engagement plan"). inbox_actions_for_found plans each message with a generator
 * seeded from its send id (a re-reported message gets the same plan), turns the plans into
 * inbox_actions rows and schedules the replies. inbox_policy_rows is its pure part. */
#ifndef KILN_INBOX_POLICY_H
#define KILN_INBOX_POLICY_H

#include "db.h"
#include "engage.h"
#include "lease_reply.h"

#include <stdbool.h>
#include <stdint.h>

/* The name of the folder warmup mail is filed to, without the namespace prefix. */
#define INBOX_WARMUP_FOLDER "kiln"
/* At most this many actions per found message. */
#define INBOX_POLICY_MAX_ACTIONS ENGAGE_MAX_ACTIONS
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
    int64_t now_s;      /* when it was found (epoch seconds) */
    /* The recipient's plan and zone spans from now_s (the report reads them with its
     * inboxes); NULL: engage_params_default() in UTC. */
    const lease_engage_input *in;
    int32_t reply_depth; /* the send's */
} inbox_found;

/* One action to create; flags are static strings. */
typedef struct inbox_action_spec {
    enum inbox_action_kind kind;
    const char *flags[INBOX_POLICY_MAX_FLAGS];
    int nflags;
    int target;           /* ROLE_INBOX (rescue), ROLE_WARMUP (file), -1 (none) */
    int64_t not_before_s; /* epoch seconds: the plan's time for it */
} inbox_action_spec;

/* A report's first finds, planned: per found message its actions, and how many replies
 * were scheduled. Arrays in the arena the call was given. */
typedef struct inbox_policy_out {
    int *nactions;                                          /* per found message */
    inbox_action_spec (*actions)[INBOX_POLICY_MAX_ACTIONS]; /* per found message */
    int replies;                                            /* replies scheduled */
} inbox_policy_out;

/* Plans found[0..n) (one report, one transaction) from the inputs the caller gives each
 * (inbox_found.in, .reply_depth): engage_plan_for_found seeded with
 * engage_rng_seed(send id), the rows (inbox_policy_rows) and, for the plans that answer,
 * the replies (lease_reply_schedule_many, one statement). The only fallback: a find
 * without inputs or with a stored plan out of range is planned with
 * engage_params_default() in UTC. Runs in the caller's transaction. */
bool inbox_actions_for_found(db *d, arena *a, const inbox_found *found, int n,
                             inbox_policy_out *out);

/* Pure: the rows of plan o for f, in the order to apply them; returns how many (at most
 * INBOX_POLICY_MAX_ACTIONS). Flags f already has are not set again (a mark with none
 * left is dropped). A message found in the warmup folder (filed already, e.g. by a
 * previous holder) keeps only its prune. */
int inbox_policy_rows(const inbox_found *f, const engage_out *o, inbox_action_spec *out);

/* The engagement policy's folder for a role (warmup reads as other). */
engage_folder inbox_policy_folder(enum inbox_role r);

const char *inbox_role_name(enum inbox_role r);
const char *inbox_action_kind_name(enum inbox_action_kind k);

#endif
