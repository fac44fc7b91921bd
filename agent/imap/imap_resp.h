/* IMAP response parser (RFC 3501 / 9051 client side), sans-I/O and resumable: bytes
 * are fed in any split; a byte-at-a-time assembler keeps its position (line, quoted
 * string, literal {n}/{n+}) and, once a whole response is in hand, a bounded
 * recursive-descent pass turns it into a small tree in the parser's arena: tagged
 * (tag, OK/NO/BAD, [CODE], text), untagged (status or data) and continuation (+). */
#ifndef KILN_IMAP_RESP_H
#define KILN_IMAP_RESP_H

#include "arena.h"
#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hard limits of one response; a response over any of them is a protocol error. */
typedef struct imap_resp_limits {
    size_t line_max;    /* bytes of one line outside literals (default 64 KiB) */
    size_t literal_max; /* bytes of one literal (default 16 MiB) */
    size_t total_max;   /* bytes of the whole response, literals included (32 MiB) */
    unsigned depth_max; /* nesting of parenthesised lists (32) */
    unsigned items_max; /* nodes of the tree (65536) */
} imap_resp_limits;

#define IMAP_RESP_LINE_MAX ((size_t)64 * 1024)
#define IMAP_RESP_LITERAL_MAX ((size_t)16 * 1024 * 1024)
#define IMAP_RESP_TOTAL_MAX ((size_t)32 * 1024 * 1024)
#define IMAP_RESP_DEPTH_MAX 32u
#define IMAP_RESP_ITEMS_MAX 65536u

/* One value of a response. Strings (atoms, quoted, literals) are NUL-terminated copies
 * in the arena; len counts the bytes (a literal may hold a NUL). A list has its
 * children in a chain through next. Atoms that are numbers stay atoms: see
 * imap_node_u32. */
enum imap_node_type { IMAP_N_ATOM, IMAP_N_STRING, IMAP_N_NIL, IMAP_N_LIST };

typedef struct imap_node {
    int type;
    const char *s; /* ATOM, STRING; "" for NIL and LIST */
    size_t len;
    struct imap_node *child; /* LIST: first element */
    size_t nchild;           /* LIST: number of elements */
    struct imap_node *next;  /* next sibling */
} imap_node;

/* Capabilities (from "* CAPABILITY" or a [CAPABILITY ...] code). */
enum imap_cap {
    IMAP_CAP_IMAP4REV1 = 1u << 0,
    IMAP_CAP_IMAP4REV2 = 1u << 1,
    IMAP_CAP_STARTTLS = 1u << 2,
    IMAP_CAP_LOGINDISABLED = 1u << 3,
    IMAP_CAP_AUTH_PLAIN = 1u << 4,
    IMAP_CAP_AUTH_XOAUTH2 = 1u << 5,
    IMAP_CAP_AUTH_OAUTHBEARER = 1u << 6,
    IMAP_CAP_SASL_IR = 1u << 7,
    IMAP_CAP_LITERAL_PLUS = 1u << 8,
    IMAP_CAP_LITERAL_MINUS = 1u << 9,
    IMAP_CAP_IDLE = 1u << 10,
    IMAP_CAP_MOVE = 1u << 11,
    IMAP_CAP_UIDPLUS = 1u << 12,
    IMAP_CAP_SPECIAL_USE = 1u << 13,
    IMAP_CAP_LIST_EXTENDED = 1u << 14,
    IMAP_CAP_LIST_STATUS = 1u << 15,
    IMAP_CAP_NAMESPACE = 1u << 16,
    IMAP_CAP_ID = 1u << 17,
    IMAP_CAP_ENABLE = 1u << 18,
    IMAP_CAP_CONDSTORE = 1u << 19,
    IMAP_CAP_X_GM_EXT_1 = 1u << 20,
    IMAP_CAP_UTF8_ACCEPT = 1u << 21,
    IMAP_CAP_UNSELECT = 1u << 22,
};

/* Mailbox attributes of LIST (RFC 3501, 5258, 6154). */
enum imap_mbox_flag {
    IMAP_MB_NOINFERIORS = 1u << 0,
    IMAP_MB_NOSELECT = 1u << 1,
    IMAP_MB_MARKED = 1u << 2,
    IMAP_MB_UNMARKED = 1u << 3,
    IMAP_MB_NONEXISTENT = 1u << 4,
    IMAP_MB_SUBSCRIBED = 1u << 5,
    IMAP_MB_HASCHILDREN = 1u << 6,
    IMAP_MB_HASNOCHILDREN = 1u << 7,
    IMAP_MB_ALL = 1u << 8,
    IMAP_MB_ARCHIVE = 1u << 9,
    IMAP_MB_DRAFTS = 1u << 10,
    IMAP_MB_FLAGGED = 1u << 11,
    IMAP_MB_JUNK = 1u << 12,
    IMAP_MB_SENT = 1u << 13,
    IMAP_MB_TRASH = 1u << 14,
    IMAP_MB_IMPORTANT = 1u << 15,
};

/* System flags of a message; keywords stay in the flags node. */
enum imap_msg_flag {
    IMAP_FL_SEEN = 1u << 0,
    IMAP_FL_ANSWERED = 1u << 1,
    IMAP_FL_FLAGGED = 1u << 2,
    IMAP_FL_DELETED = 1u << 3,
    IMAP_FL_DRAFT = 1u << 4,
    IMAP_FL_RECENT = 1u << 5,
    IMAP_FL_ANY = 1u << 6, /* "\*" in PERMANENTFLAGS: new keywords allowed */
};

enum imap_resp_kind { IMAP_RESP_TAGGED = 1, IMAP_RESP_UNTAGGED, IMAP_RESP_CONTINUE };

enum imap_status {
    IMAP_STATUS_NONE = 0, /* untagged data */
    IMAP_STATUS_OK,
    IMAP_STATUS_NO,
    IMAP_STATUS_BAD,
    IMAP_STATUS_BYE,
    IMAP_STATUS_PREAUTH,
};

/* Untagged data responses recognised by name; anything else is IMAP_DATA_OTHER with
 * its name in resp.name and its values in resp.items. */
enum imap_data {
    IMAP_DATA_NONE = 0, /* a status response or a continuation */
    IMAP_DATA_CAPABILITY,
    IMAP_DATA_LIST,
    IMAP_DATA_LSUB,
    IMAP_DATA_STATUS,
    IMAP_DATA_FLAGS,
    IMAP_DATA_SEARCH,
    IMAP_DATA_NAMESPACE,
    IMAP_DATA_ID,
    IMAP_DATA_ENABLED,
    IMAP_DATA_EXISTS, /* "* n EXISTS": resp.number */
    IMAP_DATA_RECENT,
    IMAP_DATA_EXPUNGE,
    IMAP_DATA_FETCH,
    IMAP_DATA_OTHER,
};

/* Response codes ("[CODE args]") of status responses. */
enum imap_code {
    IMAP_CODE_NONE = 0,
    IMAP_CODE_ALERT,
    IMAP_CODE_CAPABILITY,
    IMAP_CODE_PERMANENTFLAGS,
    IMAP_CODE_READ_ONLY,
    IMAP_CODE_READ_WRITE,
    IMAP_CODE_TRYCREATE,
    IMAP_CODE_UIDVALIDITY,
    IMAP_CODE_UIDNEXT,
    IMAP_CODE_COPYUID,
    IMAP_CODE_APPENDUID,
    IMAP_CODE_THROTTLED,
    IMAP_CODE_NONEXISTENT,
    IMAP_CODE_AUTHENTICATIONFAILED,
    IMAP_CODE_UNAVAILABLE,
    IMAP_CODE_OTHER, /* name in code.name, arguments raw in code.args */
};

/* The [CODE ...] of a status response. uid sets are as on the wire ("3:5,9"): see
 * imap_uidset_parse. */
typedef struct imap_resp_code {
    int code;
    const char *name; /* as sent, e.g. "UIDVALIDITY" */
    const char *args; /* raw text after the name, "" when none */
    size_t args_len;
    uint32_t number;      /* UIDVALIDITY, UIDNEXT; COPYUID/APPENDUID's uidvalidity */
    const char *src_uids; /* COPYUID: source set */
    const char *dst_uids; /* COPYUID: destination set; APPENDUID: the new uids */
    unsigned flags;       /* PERMANENTFLAGS: enum imap_msg_flag bits */
    imap_node *list;      /* PERMANENTFLAGS: the list */
} imap_resp_code;

/* Typed views of the data responses, filled when data is their kind. */
typedef struct imap_resp_list {
    unsigned flags;      /* enum imap_mbox_flag */
    char delim;          /* hierarchy delimiter, 0 for NIL */
    const char *mailbox; /* as on the wire (modified UTF-7): imap_utf7_decode */
    size_t mailbox_len;
} imap_resp_list;

enum imap_status_item {
    IMAP_SI_MESSAGES = 1u << 0,
    IMAP_SI_UIDNEXT = 1u << 1,
    IMAP_SI_UIDVALIDITY = 1u << 2,
    IMAP_SI_UNSEEN = 1u << 3,
    IMAP_SI_RECENT = 1u << 4,
};

typedef struct imap_resp_status {
    const char *mailbox;
    size_t mailbox_len;
    unsigned have; /* enum imap_status_item: which fields came */
    uint32_t messages, uidnext, uidvalidity, unseen, recent;
} imap_resp_status;

typedef struct imap_resp_fetch {
    bool have_uid, have_flags;
    uint32_t uid;
    unsigned flags;        /* enum imap_msg_flag */
    imap_node *flags_list; /* every flag, keywords included */
    const char *section;   /* "HEADER.FIELDS (MESSAGE-ID)" of BODY[...], or NULL */
    const char *body;      /* the BODY[...] / RFC822.HEADER value; NULL when NIL/absent */
    size_t body_len;
} imap_resp_fetch;

/* One complete response, valid until imap_resp_release, the next imap_resp_feed or
 * imap_resp_parser_free on its parser (it lives in the parser's arena). */
typedef struct imap_resp {
    int kind;         /* enum imap_resp_kind */
    const char *tag;  /* TAGGED: the tag */
    int status;       /* enum imap_status */
    int data;         /* enum imap_data */
    const char *name; /* untagged data: its keyword as sent ("FETCH") */
    uint32_t number;  /* EXISTS, RECENT, EXPUNGE, FETCH: the message number */
    imap_node *items; /* untagged data: the values after the keyword, a chain */
    size_t nitems;
    imap_resp_code code;
    const char *text; /* status text after the code; continuation: its text */
    size_t text_len;
    unsigned caps; /* CAPABILITY data or code: enum imap_cap bits */
    imap_resp_list list;
    imap_resp_status st;
    imap_resp_fetch fetch;
    uint32_t *search; /* SEARCH: the numbers */
    size_t nsearch;
    unsigned flags; /* FLAGS: enum imap_msg_flag bits */
} imap_resp;

enum imap_resp_result {
    IMAP_RESP_ERROR = -1, /* protocol violation: parser->error says why, feed no more */
    IMAP_RESP_NEED_MORE = 0,
    IMAP_RESP_DONE = 1,
};

/* Parser state; owned by its session. init/free pair; the arena and the raw buffer are
 * reused from one response to the next. */
typedef struct imap_resp_parser {
    imap_resp_limits lim;
    int state;
    buf raw;           /* the response being assembled (lines and literals) */
    size_t line_len;   /* bytes of the current line outside literals */
    size_t line_start; /* offset in raw of the current line */
    size_t literal_left;
    bool in_quote, quote_escape;
    bool first_line_done;
    bool status_like; /* first line is a status response or a continuation */
    const char *error;
    arena *arena;
    imap_resp resp;
} imap_resp_parser;

/* lim NULL: the defaults above. */
void imap_resp_parser_init(imap_resp_parser *p, const imap_resp_limits *lim);
void imap_resp_parser_free(imap_resp_parser *p);
/* Feeds data[0..n). Stops after one complete response: returns IMAP_RESP_DONE with *out
 * pointing at it and *consumed the bytes used (feed the rest again). NEED_MORE: all n
 * bytes were taken. ERROR: sticky, p->error names the violation. */
int imap_resp_feed(imap_resp_parser *p, const char *data, size_t n, size_t *consumed,
                   const imap_resp **out);

/* Releases the response last returned (its tree, and a buffer a large literal grew)
 * now rather than at the next feed; a session calls it once a response is handled. */
void imap_resp_release(imap_resp_parser *p);

/* Value of an atom that is a number 1..2^32-1 (0 too when allow_zero); -1 otherwise. */
int imap_node_u32(const imap_node *n, bool allow_zero, uint32_t *out);
/* True when n is an atom or string equal to s, ASCII case-insensitive. */
bool imap_node_is(const imap_node *n, const char *s);
/* FETCH: the value of the item named name (case-insensitive), or NULL. */
const imap_node *imap_fetch_item(const imap_resp *r, const char *name);
/* Expands a uid set ("3:5,9", ranges either way round, no "*") into out[0..max) (out
 * NULL: counts only):
 * returns the number of uids, or -1 when malformed or larger than max. */
long imap_uidset_parse(const char *s, size_t len, uint32_t *out, size_t max);

#endif
