/* libFuzzer target: the inbox session (imap_inbox) fed arbitrary server bytes (seeded
 * with whole dialogues, fuzz_corpus/inbox_*), in chunks whose size comes from the
 * input, with wake / tick / stop calls between chunks, against a job holding every kind
 * of action. Asserts: no crash or leak (ASan), the session always ends with a valid
 * outcome, every event is well formed, every action is reported at most once, and the
 * client never sends a command that touches a message by sequence number or a whole
 * folder (STORE / COPY / MOVE / FETCH only as UID commands, EXPUNGE only as UID
 * EXPUNGE of an explicit set). */
#include "imap_inbox.h"
#include "imap_inbox_test_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct seen {
    int64_t reported[16];
    size_t nreported;
} seen;

static void on_event(void *ctx, const imap_inbox_event *ev)
{
    seen *s = ctx;
#ifdef IB_FUZZ_TRACE /* a driver that prints what a seed reaches */
    buf line = BUF_INIT;
    ib_dump_event(&line, ev);
    fputs(line.data, stderr);
    buf_free(&line);
#endif
    switch (ev->type) {
    case IMAP_INBOX_EV_FOUND:
        if (!ev->folder || !ev->uid || !ev->message_id || ev->nflags > IMAP_INBOX_EV_FLAGS_MAX ||
            ev->nlabels > IMAP_INBOX_EV_FLAGS_MAX ||
            !imap_inbox_msgid_shape_ok(ev->message_id, strlen(ev->message_id)) ||
            (ev->auth_results && strlen(ev->auth_results) > IMAP_INBOX_AUTHRES_MAX) ||
            (ev->internal_date && strlen(ev->internal_date) != 20))
            abort();
        break;
    case IMAP_INBOX_EV_FOLDER_STATE:
        if (!ev->folder || !ev->uidvalidity || ev->role < 0 || ev->role >= IMAP_ROLE_COUNT)
            abort();
        break;
    case IMAP_INBOX_EV_ACTION:
        if (ev->status < 0 || ev->status >= IMAP_ACT_STATUS_COUNT || !ev->detail)
            abort();
        for (size_t i = 0; i < s->nreported; i++)
            if (s->reported[i] == ev->action_id)
                abort(); /* reported twice */
        if (s->nreported < 16)
            s->reported[s->nreported++] = ev->action_id;
        break;
    case IMAP_INBOX_EV_LOGGED_IN:
    case IMAP_INBOX_EV_WAKE:
        break;
    default:
        abort();
    }
}

static const char *const seen_flag[] = {"\\Seen", "\\Flagged"};
static const imap_inbox_folder folders[] = {
    {"INBOX", IMAP_ROLE_INBOX, 7, 4},
    {"Junk", IMAP_ROLE_JUNK, 8, 10},
};
static const imap_inbox_action actions[] = {
    {.id = 1,
     .kind = IMAP_ACT_RESCUE,
     .folder = "Junk",
     .uidvalidity = 8,
     .uid = 11,
     .message_id = "<9001.10123456789abcdef01234567@acme.test>"},
    {.id = 2,
     .kind = IMAP_ACT_MARK,
     .folder = "Junk",
     .uidvalidity = 8,
     .uid = 11,
     .flags = seen_flag,
     .nflags = 2},
    {.id = 3, .kind = IMAP_ACT_FILE, .folder = "INBOX", .uidvalidity = 7, .uid = 5},
    {.id = 4, .kind = IMAP_ACT_PRUNE, .folder = "INBOX.Warmup", .uidvalidity = 3, .uid = 2},
    {.id = 5,
     .kind = IMAP_ACT_MARK,
     .folder = "INBOX",
     .uidvalidity = 7,
     .uid = 6,
     .flags = seen_flag,
     .nflags = 1,
     .not_before_ms = 5000},
    {.id = 6,
     .kind = IMAP_ACT_FILE,
     .folder = "Junk",
     .uidvalidity = 8,
     .uid = 12,
     .message_id = "<9002.a0123456789abcdef01234567@acme.test>"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = (size_t)(data[0] % 31) + 1;
    unsigned mode = data[1];
    const char *s = (const char *)data + 2;
    size_t n = size - 2;
    imap_session_params p = {.security = IMAP_SEC_PLAIN,
                             .username = "anna",
                             .password = "pw",
                             .allow_plaintext_auth = true};
    imap_inbox_job job = {.folders = folders,
                          .nfolders = (mode & 1) ? 2 : 0,
                          .actions = actions,
                          .nactions = sizeof actions / sizeof actions[0],
                          .want_idle = mode & 2,
                          .idle_refresh_ms = 1000,
                          .trust_stored_roles = mode & 32,
                          .pipeline = mode & 64,
                          /* an earlier login's capabilities: LIST behind the LOGIN */
                          .caps_hint = (mode & 128) ? IMAP_CAP_NAMESPACE | IMAP_CAP_SPECIAL_USE |
                                                          IMAP_CAP_LIST_STATUS
                                                    : 0};
    seen ev_seen = {0};
    imap_inbox *ib = imap_inbox_new(&p, &job, on_event, &ev_seen);
    if (!ib)
        abort();
    buf sent = BUF_INIT;
    int64_t now = 0;
    for (size_t off = 0; off < n && imap_inbox_state(ib) != IMAP_IB_DONE; off += chunk) {
        int ev = imap_inbox_feed(ib, s + off, n - off < chunk ? n - off : chunk, now);
        if (ev & IMAP_EV_STARTTLS)
            imap_inbox_tls_ready(ib, now);
        now += 700;
        unsigned c = (unsigned char)s[off];
        if ((mode & 4) && c % 5 == 0)
            imap_inbox_wake(ib, now);
        if ((mode & 8) && c % 7 == 0)
            imap_inbox_tick(ib, now);
        if ((mode & 16) && c % 11 == 0)
            imap_inbox_stop(ib, now);
        net_phase ph;
        imap_inbox_phase(ib, &ph);
        int st = imap_inbox_state(ib);
        if (st < 0 || st >= IMAP_IB_COUNT || ph.timeout_ms <= 0)
            abort();
        buf *out = imap_inbox_output(ib);
        buf_append(&sent, out->data ? out->data : "", out->len);
        buf_reset(out);
    }
    imap_inbox_eof(ib);
    int outcome = imap_inbox_outcome(ib);
    if (imap_inbox_state(ib) != IMAP_IB_DONE || outcome <= IMAP_OUT_NONE ||
        outcome >= IMAP_OUT_COUNT || !imap_inbox_detail(ib))
        abort();
    if (ib_check_client_bytes(sent.data ? sent.data : "", sent.len))
        abort();
    buf_free(&sent);
    imap_inbox_free(ib);
    return 0;
}
