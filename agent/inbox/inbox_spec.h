/* An inbox to watch, as an inbox lease (or `kiln-agent inbox --file`) hands it over
 * (openapi LeaseInbox): IMAP access, poll class, the folders' last state and the
 * actions due. Plain data: lease/agent_wire parses it, the inbox engine owns it once
 * added. */
#ifndef KILN_INBOX_SPEC_H
#define KILN_INBOX_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum inbox_poll_class { INBOX_POLL_HIGH, INBOX_POLL_MEDIUM, INBOX_POLL_LOW, INBOX_POLL_COUNT };
enum inbox_role {
    INBOX_ROLE_INBOX,
    INBOX_ROLE_JUNK,
    INBOX_ROLE_WARMUP,
    INBOX_ROLE_OTHER,
    INBOX_ROLE_COUNT
};
enum inbox_action_kind {
    INBOX_ACT_RESCUE,
    INBOX_ACT_MARK,
    INBOX_ACT_FILE,
    INBOX_ACT_PRUNE,
    INBOX_ACT_COUNT
};
/* An action's outcome (InboxEventAction.status). */
enum inbox_action_status {
    INBOX_AST_DONE,
    INBOX_AST_GONE,
    INBOX_AST_STALE,
    INBOX_AST_REFUSED,
    INBOX_AST_FAILED,
    INBOX_AST_COUNT
};

const char *inbox_poll_class_name(int c);
const char *inbox_role_name(int role);
const char *inbox_action_kind_name(int kind);
const char *inbox_action_status_name(int status);
/* The enum value of a wire name, or -1. */
int inbox_poll_class_of(const char *s);
int inbox_role_of(const char *s);
int inbox_action_kind_of(const char *s);

typedef struct inbox_folder {
    char *name; /* as on the wire (modified UTF-7) */
    int role;   /* enum inbox_role */
    uint32_t uidvalidity;
    uint32_t last_uid;
} inbox_folder;

#define INBOX_ACTION_FLAGS_MAX 8

typedef struct inbox_action {
    int64_t id;
    int kind; /* enum inbox_action_kind */
    char *folder;
    uint32_t uidvalidity;
    uint32_t uid;
    char *flags[INBOX_ACTION_FLAGS_MAX];
    size_t nflags;
    int target;           /* enum inbox_role (inbox, warmup) or -1 */
    char *message_id;     /* NULL, or the message's Message-ID (<...>): a move done before */
    int64_t not_before_s; /* from when the inbox was handed over */
} inbox_action;

/* enum imap_security's values, without this header needing the IMAP core */
enum inbox_security { INBOX_SEC_PLAIN, INBOX_SEC_STARTTLS, INBOX_SEC_TLS };

typedef struct inbox_spec {
    int64_t mailbox_id;
    char *address;
    char *host;
    int port;
    int security; /* enum inbox_security */
    char *username;
    char *password;    /* NULL when a token is used */
    char *oauth_token; /* NULL when a password is used */
    char *ca_file;     /* NULL: the system store */
    bool allow_plaintext_auth;
    int poll_class; /* enum inbox_poll_class */
    int64_t poll_interval_s;
    char *warmup_folder;
    inbox_folder *folders;
    size_t nfolders;
    inbox_action *actions;
    size_t nactions;
} inbox_spec;

/* Frees what one action holds and zeroes it. */
void inbox_action_clear(inbox_action *a);
/* Frees the spec and everything it holds (NULL is fine). Secrets are wiped first. */
void inbox_spec_free(inbox_spec *s);

#endif
