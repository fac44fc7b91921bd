/* IMAP command builder, sans-I/O: each function writes one tagged command into an
 * imap_cmd, choosing for every string argument an atom, a quoted string or a literal
 * (LITERAL+/LITERAL- when the server offers them, otherwise a synchronising literal the
 * command stops at until the server's "+"). Arguments holding CR, LF or NUL are refused,
 * so nothing a mailbox, a password or a server reply holds can inject a command. */
#ifndef KILN_IMAP_CMD_H
#define KILN_IMAP_CMD_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Synchronising literals one command may hold (LOGIN: user and password). */
#define IMAP_CMD_STOPS_MAX 4
/* LITERAL- (RFC 7888) allows non-synchronising literals up to this size. */
#define IMAP_LITERAL_MINUS_MAX 4096

/* Tags and the server's literal and SASL capabilities. Owned by the session. */
typedef struct imap_cmdgen {
    uint32_t next_tag; /* monotonic: "K1", "K2", ... */
    unsigned caps;     /* enum imap_cap bits (imap_resp.h) offered by the server */
} imap_cmdgen;

/* One command on its way out: bytes[0..len) with stops where a synchronising literal
 * waits for "+". Owned by the caller; imap_cmd_free releases it. */
typedef struct imap_cmd {
    char tag[16];
    buf bytes;
    size_t stops[IMAP_CMD_STOPS_MAX];
    unsigned nstops;
    unsigned next_chunk; /* chunks taken so far */
} imap_cmd;

enum imap_cmd_take { IMAP_CMD_END = 0, IMAP_CMD_WAIT = 1 };

void imap_cmdgen_init(imap_cmdgen *g);
void imap_cmd_init(imap_cmd *c);
void imap_cmd_free(imap_cmd *c);
/* Appends the next chunk of c to out. IMAP_CMD_WAIT: the server's "+" must come before
 * the next take; IMAP_CMD_END: the command is all out. */
int imap_cmd_take(imap_cmd *c, buf *out);

/* Every builder returns 0, or -EINVAL when an argument is refused (c left empty, no
 * tag used). Mailbox names are as on the wire (modified UTF-7: imap_utf7_encode). */
int imap_cmd_capability(imap_cmdgen *g, imap_cmd *c);
int imap_cmd_noop(imap_cmdgen *g, imap_cmd *c);
int imap_cmd_unselect(imap_cmdgen *g, imap_cmd *c); /* RFC 3691 */
int imap_cmd_starttls(imap_cmdgen *g, imap_cmd *c);
int imap_cmd_namespace(imap_cmdgen *g, imap_cmd *c);
int imap_cmd_logout(imap_cmdgen *g, imap_cmd *c);
int imap_cmd_login(imap_cmdgen *g, imap_cmd *c, const char *user, const char *password);

enum imap_sasl { IMAP_SASL_PLAIN, IMAP_SASL_XOAUTH2, IMAP_SASL_OAUTHBEARER };
/* Borrowed strings; host and port (0: none) go into OAUTHBEARER's message (RFC 7628). */
typedef struct imap_auth {
    int mech; /* enum imap_sasl */
    const char *user;
    const char *secret; /* password (PLAIN) or bearer token */
    const char *host;
    int port;
} imap_auth;
/* AUTHENTICATE with the initial response inline under SASL-IR, otherwise after "+". */
int imap_cmd_authenticate(imap_cmdgen *g, imap_cmd *c, const imap_auth *a);
/* The reply to a SASL challenge that reports an error (XOAUTH2/OAUTHBEARER send one
 * before their NO): appends the line that lets the server finish. */
void imap_cmd_sasl_error_reply(int mech, buf *out);

/* ID ("k1" "v1" ...) with npairs pairs of kv, or ID NIL when npairs is 0. */
int imap_cmd_id(imap_cmdgen *g, imap_cmd *c, const char *const *kv, size_t npairs);
/* What a LIST asks to be returned (RFC 5258 RETURN options). */
enum imap_list_return {
    IMAP_LIST_RET_SPECIAL_USE = 1u << 0, /* RFC 6154: the folders' roles */
    IMAP_LIST_RET_STATUS = 1u << 1,      /* RFC 5819 LIST-STATUS: (UIDNEXT UIDVALIDITY) */
};
/* LIST "" "*", with RETURN (...) of ret (a mask of enum imap_list_return). */
int imap_cmd_list(imap_cmdgen *g, imap_cmd *c, unsigned ret);
/* SELECT, or EXAMINE when read_only. */
int imap_cmd_select(imap_cmdgen *g, imap_cmd *c, const char *mbox, size_t len, bool read_only);
int imap_cmd_create(imap_cmdgen *g, imap_cmd *c, const char *mbox, size_t len);
/* STATUS mbox (UIDNEXT UIDVALIDITY): what a folder check needs to know that nothing is
 * new without selecting the folder. */
int imap_cmd_status(imap_cmdgen *g, imap_cmd *c, const char *mbox, size_t len);

enum imap_fetch_item {
    IMAP_FETCH_FLAGS = 1u << 0,
    IMAP_FETCH_GM_LABELS = 1u << 1, /* X-GM-LABELS, where X-GM-EXT-1 is offered */
    IMAP_FETCH_INTERNALDATE = 1u << 2,
};
/* UID FETCH set (UID [FLAGS] [INTERNALDATE] [X-GM-LABELS] [BODY.PEEK[HEADER.FIELDS (f...)]]): the
 * header section only when nfields > 0. set is a uid set ("5:*", imap_uidset_build). */
int imap_cmd_uid_fetch(imap_cmdgen *g, imap_cmd *c, const char *set, unsigned items,
                       const char *const *fields, size_t nfields);
/* UID SEARCH UID from:* (the fallback where a FETCH of new mail is not wanted). */
int imap_cmd_uid_search_from(imap_cmdgen *g, imap_cmd *c, uint32_t from);
int imap_cmd_idle(imap_cmdgen *g, imap_cmd *c);
/* Appends the DONE that ends IDLE (it has no tag; the IDLE's tagged OK follows). */
void imap_cmd_idle_done(buf *out);
int imap_cmd_uid_move(imap_cmdgen *g, imap_cmd *c, const char *set, const char *mbox, size_t len);
int imap_cmd_uid_copy(imap_cmdgen *g, imap_cmd *c, const char *set, const char *mbox, size_t len);
/* UID STORE set op FLAGS[.SILENT] (flags): op '+' adds, '-' removes, 0 replaces. */
int imap_cmd_uid_store(imap_cmdgen *g, imap_cmd *c, const char *set, char op, bool silent,
                       const char *const *flags, size_t nflags);
int imap_cmd_uid_expunge(imap_cmdgen *g, imap_cmd *c, const char *set);

/* Appends the uid set of uids[0..n) (any order, duplicates allowed) to out, sorted with
 * ranges: {7,3,4,5,9} gives "3:5,7,9". Returns 0, or -EINVAL (out unchanged) when n is
 * 0 or a uid is 0. */
int imap_uidset_build(buf *out, const uint32_t *uids, size_t n);

#endif
