/* SMTP reply parser (RFC 5321 §4.2), sans-I/O and resumable: bytes are fed in any
 * split, the parser keeps its position (nginx-style sw_* states) and reports each
 * complete reply, multi-line or not, with its enhanced status code (RFC 3463). */
#ifndef KILN_SMTP_REPLY_H
#define KILN_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

/* Text kept per reply. A reply longer than this keeps its most recent lines (the final
 * one always, cut at this size); the EHLO extensions of every line are read as each
 * line ends (smtp_reply.ext), so none is lost however long the list. */
#define SMTP_REPLY_TEXT_MAX 1024
/* A reply line longer than this is malformed (RFC 5321 allows 512 octets). */
#define SMTP_REPLY_LINE_MAX 4096
/* A reply with more lines than this is malformed. */
#define SMTP_REPLY_LINES_MAX 128

/* EHLO extensions seen at the start of any line of a reply (RFC 5321 §4.1.1.1). */
enum smtp_ext {
    SMTP_EXT_PIPELINING = 1u << 0,
    SMTP_EXT_STARTTLS = 1u << 1,
    SMTP_EXT_SMTPUTF8 = 1u << 2,
    SMTP_EXT_AUTH_PLAIN = 1u << 3,
    SMTP_EXT_AUTH_LOGIN = 1u << 4,
    SMTP_EXT_AUTH_XOAUTH2 = 1u << 5,
};

/* One complete reply. text holds each line's text (after "NNN-"/"NNN "),
 * lines separated by '\n'; last_line is the offset of the final line in text. */
typedef struct smtp_reply {
    int code;
    char enhanced[16]; /* "2.0.0", or "" when the reply carries none */
    char text[SMTP_REPLY_TEXT_MAX];
    size_t text_len;
    size_t last_line;
    unsigned lines;
    unsigned ext; /* enum smtp_ext bits, from every line */
} smtp_reply;

enum smtp_reply_result {
    SMTP_REPLY_ERROR = -1, /* malformed; parser->error says why, feed no more */
    SMTP_REPLY_NEED_MORE = 0,
    SMTP_REPLY_DONE = 1,
};

/* Parser state; zero it with smtp_reply_parser_init. Owned by its session. */
typedef struct smtp_reply_parser {
    int state;
    int code;      /* code of the current reply (from its first line) */
    int line_code; /* code being read on the current line */
    size_t line_len;
    bool last; /* current line is the final one ("NNN ") */
    const char *error;
    smtp_reply reply;
} smtp_reply_parser;

void smtp_reply_parser_init(smtp_reply_parser *p);
/* Part of a reply has been read and it is not complete yet. */
bool smtp_reply_parser_mid(const smtp_reply_parser *p);
/* Feeds data[0..n). Stops after one complete reply: returns SMTP_REPLY_DONE with the
 * reply copied to *out and *consumed set to the bytes used (feed the rest again).
 * Returns NEED_MORE when all n bytes were used without completing a reply. */
int smtp_reply_feed(smtp_reply_parser *p, const char *data, size_t n, size_t *consumed,
                    smtp_reply *out);

/* Pointer to the final line's text with the enhanced code stripped (for details). */
const char *smtp_reply_detail(const smtp_reply *r, size_t *len);
/* True when any line of an EHLO reply starts with keyword (case-insensitive);
 * *args, when given, points at what follows the keyword on that line. */
bool smtp_reply_has_keyword(const smtp_reply *r, const char *keyword, const char **args,
                            size_t *args_len);

#endif
