/* Test helpers for the inbox session: a canonical one-line text of each event (so a
 * dialogue's events compare as one string), and the check that what a client sent never
 * touches a message by sequence number (STORE, COPY, MOVE, FETCH only as UID commands,
 * EXPUNGE only as UID EXPUNGE of an explicit set). */
#ifndef KILN_IMAP_INBOX_TEST_UTIL_H
#define KILN_IMAP_INBOX_TEST_UTIL_H

#include "buf.h"
#include "imap_inbox.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static void ib_dump_list(buf *b, const char *name, const char *const *v, size_t n)
{
    buf_printf(b, " %s=[", name);
    for (size_t i = 0; i < n; i++)
        buf_printf(b, "%s%s", i ? "," : "", v[i]);
    buf_putc(b, ']');
}

/* Appends one line describing ev to the buf ctx. */
static void ib_dump_event(void *ctx, const imap_inbox_event *ev)
{
    buf *b = ctx;
    switch (ev->type) {
    case IMAP_INBOX_EV_LOGGED_IN:
        buf_puts(b, "login\n");
        return;
    case IMAP_INBOX_EV_WAKE:
        buf_printf(b, "wake %s\n", ev->folder);
        return;
    case IMAP_INBOX_EV_FOUND:
        buf_printf(b, "found %s %s %u/%u %s", ev->folder, imap_role_name(ev->role), ev->uidvalidity,
                   ev->uid, ev->message_id);
        ib_dump_list(b, "flags", ev->flags, ev->nflags);
        if (ev->nlabels)
            ib_dump_list(b, "labels", ev->labels, ev->nlabels);
        if (ev->internal_date)
            buf_printf(b, " date=%s", ev->internal_date);
        buf_printf(b, " ar=%s irt=%s subj=%s\n", ev->auth_results ? ev->auth_results : "-",
                   ev->in_reply_to ? ev->in_reply_to : "-", ev->subject ? ev->subject : "-");
        return;
    case IMAP_INBOX_EV_FOLDER_STATE:
        buf_printf(b, "state %s %s %u last=%u", ev->folder, imap_role_name(ev->role),
                   ev->uidvalidity, ev->last_uid);
        if (ev->resync)
            buf_printf(b, " resync from %u", ev->old_uidvalidity);
        buf_putc(b, '\n');
        return;
    case IMAP_INBOX_EV_ACTION:
        buf_printf(b, "action %lld %s %s %s %u/%u", (long long)ev->action_id,
                   imap_action_status_name(ev->status), ev->folder ? ev->folder : "-",
                   imap_role_name(ev->role), ev->uidvalidity, ev->uid);
        if (ev->nflags)
            ib_dump_list(b, "flags", ev->flags, ev->nflags);
        buf_printf(b, " (%s)\n", ev->detail);
        return;
    default:
        buf_printf(b, "event %d?\n", ev->type);
    }
}

static bool ib_word_is(const char *p, const char *end, const char *w)
{
    size_t k = strlen(w);
    return (size_t)(end - p) >= k && memcmp(p, w, k) == 0 &&
           ((size_t)(end - p) == k || p[k] == ' ');
}

/* Checks one tagged command line [p, end) (literal data cut out). NULL: fine. */
static const char *ib_check_command(const char *p, const char *end)
{
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp)
        return NULL;
    p = sp + 1;
    static const char *const plain[] = {
        "CAPABILITY", "NOOP",   "UNSELECT", "STARTTLS", "NAMESPACE", "LOGOUT",       "LOGIN", "ID",
        "LIST",       "SELECT", "EXAMINE",  "CREATE",   "IDLE",      "AUTHENTICATE", "STATUS"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (ib_word_is(p, end, plain[i]))
            return NULL;
    if (!ib_word_is(p, end, "UID"))
        return "a command outside the allowed set (a sequence-number command?)";
    p += 4;
    bool exact = ib_word_is(p, end, "STORE") || ib_word_is(p, end, "COPY") ||
                 ib_word_is(p, end, "MOVE") || ib_word_is(p, end, "EXPUNGE");
    if (!exact)
        return ib_word_is(p, end, "FETCH") || ib_word_is(p, end, "SEARCH") ? NULL
                                                                           : "unknown UID command";
    sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp || sp + 1 >= end)
        return "UID STORE/COPY/MOVE/EXPUNGE without a set";
    for (const char *q = sp + 1; q < end && *q != ' '; q++)
        if (*q == '*')
            return "a '*' in the set of a changing UID command";
    return NULL;
}

/* Scans everything a client sent: NULL when no command touched a message by sequence
 * number or a whole folder, else why. */
static const char *ib_check_client_bytes(const char *s, size_t n)
{
    size_t i = 0;
    buf line = BUF_INIT;
    const char *why = NULL;
    while (i < n && !why) {
        const char *eol = memmem(s + i, n - i, "\r\n", 2);
        size_t len = eol ? (size_t)(eol - (s + i)) : n - i;
        buf_append(&line, s + i, len);
        i += len + (eol ? 2 : 0);
        /* a literal announced at the end of the line: its bytes are data */
        size_t L = line.len;
        if (eol && L >= 3 && line.data[L - 1] == '}') {
            size_t k = L - 2;
            if (line.data[k] == '+' || line.data[k] == '-')
                k--;
            size_t lit = 0, mul = 1;
            while (k > 0 && line.data[k] >= '0' && line.data[k] <= '9') {
                lit += (size_t)(line.data[k] - '0') * mul;
                mul *= 10;
                k--;
            }
            if (line.data[k] == '{') {
                i += lit < n - i ? lit : n - i;
                continue; /* the command goes on after the literal */
            }
        }
        if (line.len > 1 && line.data[0] == 'K' && line.data[1] >= '0' && line.data[1] <= '9')
            why = ib_check_command(line.data, line.data + line.len);
        buf_reset(&line);
    }
    buf_free(&line);
    return why;
}

#endif
