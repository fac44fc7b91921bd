/* Unit tests for the inbox session (imap_inbox): dialogue tables — what a scripted
 * server sends at each step, what the client must answer, and the events the whole
 * dialogue must produce. Server text may hold {{...}}: a literal, written out as
 * "{len}\r\n..." so the tables need no byte counts. Every dialogue's client bytes are
 * also checked for commands on sequence numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "imap_inbox.h"
#include "imap_inbox_internal.h" /* ib_internaldate_iso */
#include "imap_inbox_test_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

enum op { FEED, TICK, WAKE, STOP, CLOSE, VISIT };

typedef struct step {
    int op;
    const char *server; /* FEED */
    const char *client; /* expected output after the step; NULL: none */
    int64_t now_ms;
} step;

static const imap_session_params params = {
    .security = IMAP_SEC_PLAIN,
    .username = "anna",
    .password = "s3cret",
    .allow_plaintext_auth = true,
};

#define CAPS_ALL "IMAP4rev1 LITERAL+ IDLE UIDPLUS MOVE SPECIAL-USE NAMESPACE"
#define GREETING "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] ready\r\n"
/* the first two steps of every dialogue; the third answers CAPABILITY with caps */
#define LOGIN_STEPS                                                                                \
    {FEED, GREETING, "K1 LOGIN anna s3cret\r\n", 0},                                               \
    {                                                                                              \
        FEED, "K1 OK Logged in\r\n", "K2 CAPABILITY\r\n", 0                                        \
    }
#define CAPS_STEP(caps, next)                                                                      \
    {                                                                                              \
        FEED, "* CAPABILITY " caps "\r\nK2 OK done\r\n", next, 0                                   \
    }
#define NS_DOVECOT "* NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\n"
#define LIST_SU "LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n"
/* Dovecot's first visit up to its LIST (K4) going out: login, NAMESPACE */
#define DOVECOT_TO_LIST                                                                            \
    LOGIN_STEPS, CAPS_STEP(CAPS_ALL, "K3 NAMESPACE\r\n"),                                          \
    {                                                                                              \
        FEED, NS_DOVECOT "K3 OK done\r\n", "K4 " LIST_SU, 0                                        \
    }
#define HDRS "(MESSAGE-ID IN-REPLY-TO AUTHENTICATION-RESULTS SUBJECT)"
#define FETCH_ITEMS "(UID FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS " HDRS "])\r\n"
#define SEC "BODY[HEADER.FIELDS " HDRS "]"
#define SELECTED(v, next)                                                                          \
    "* 3 EXISTS\r\n* OK [UIDVALIDITY " v "] ok\r\n* OK [UIDNEXT " next "] ok\r\n"
#define ID1 "<9001.10123456789abcdef01234567@acme.test>"
#define ID2 "<9002.a0123456789abcdef01234567@acme.test>"
/* what a server still sends after LOGOUT: the session is over when LOGOUT goes out and
 * ignores it (the connection closes behind the command) */
#define BYE_OK(tag) "* BYE Logging out\r\n" tag " OK Logout completed.\r\n"

/* {{...}} to literals */
static void expand(const char *s, buf *out)
{
    buf_reset(out);
    for (;;) {
        const char *open = strstr(s, "{{");
        if (!open) {
            buf_puts(out, s);
            break;
        }
        const char *close = strstr(open + 2, "}}");
        assert_non_null(close);
        buf_append(out, s, (size_t)(open - s));
        buf_printf(out, "{%zu}\r\n", (size_t)(close - open - 2));
        buf_append(out, open + 2, (size_t)(close - open - 2));
        s = close + 2;
    }
}

typedef struct run_result {
    buf events;
    buf sent;
    int outcome;
    char detail[400];
} run_result;

/* Runs steps against a new session from job, feeding each server text in chunks of
 * split bytes (0: whole). Fails at the first step whose client bytes differ. */
static void run(const imap_inbox_job *job, const step *steps, size_t nsteps, size_t split,
                run_result *res)
{
    buf_init(&res->events);
    buf_init(&res->sent);
    imap_inbox *ib = imap_inbox_new(&params, job, ib_dump_event, &res->events);
    assert_non_null(ib);
    buf srv = BUF_INIT;
    for (size_t i = 0; i < nsteps; i++) {
        const step *st = &steps[i];
        switch (st->op) {
        case FEED:
            expand(st->server, &srv);
            for (size_t off = 0; off < srv.len;) {
                size_t len = split && srv.len - off > split ? split : srv.len - off;
                imap_inbox_feed(ib, srv.data + off, len, st->now_ms);
                off += len;
            }
            break;
        case TICK:
            imap_inbox_tick(ib, st->now_ms);
            break;
        case WAKE:
            imap_inbox_wake(ib, st->now_ms);
            break;
        case STOP:
            imap_inbox_stop(ib, st->now_ms);
            break;
        case CLOSE:
            imap_inbox_eof(ib);
            break;
        case VISIT:
            imap_inbox_visit(ib, st->now_ms);
            break;
        }
        buf *out = imap_inbox_output(ib);
        const char *got = out->len ? out->data : "";
        const char *want = st->client ? st->client : "";
        if (strcmp(got, want) != 0)
            fail_msg("step %zu (split %zu): expected client\n[%s]\ngot\n[%s]\nevents so far:\n%s",
                     i, split, want, got, res->events.data ? res->events.data : "");
        buf_append(&res->sent, out->data ? out->data : "", out->len);
        buf_reset(out);
    }
    res->outcome = imap_inbox_outcome(ib);
    snprintf(res->detail, sizeof res->detail, "%s", imap_inbox_detail(ib));
    const char *why = ib_check_client_bytes(res->sent.data ? res->sent.data : "", res->sent.len);
    if (why)
        fail_msg("client sent a forbidden command: %s\n%s", why, res->sent.data);
    buf_free(&srv);
    imap_inbox_free(ib);
}

static void expect_events(run_result *res, const char *events, int outcome)
{
    const char *got = res->events.data ? res->events.data : "";
    if (strcmp(got, events) != 0)
        fail_msg("expected events\n%s\ngot\n%s", events, got);
    if (res->outcome != outcome)
        fail_msg("expected outcome %s, got %s (%s)", imap_outcome_name(outcome),
                 imap_outcome_name(res->outcome), res->detail);
    buf_free(&res->events);
    buf_free(&res->sent);
}

#define RUN(job, steps, split, res) run(job, steps, sizeof steps / sizeof steps[0], split, res)

/* ---- finding mail ---- */

static const imap_inbox_folder dovecot_state[] = {
    {"INBOX", IMAP_ROLE_INBOX, 7, 4},
    {"INBOX.Junk", IMAP_ROLE_JUNK, 8, 10},
};

/* Dovecot with the INBOX. prefix: kiln mail found in INBOX (one customer message
 * beside it) and in Junk, where the server also answers 11:* with the old UID 10; the
 * warmup folder exists but was never watched: nothing old is fetched there. */
static const step find_steps[] = {
    DOVECOT_TO_LIST,
    {FEED,
     "* LIST (\\HasNoChildren) \".\" INBOX\r\n"
     "* LIST (\\HasNoChildren \\Junk) \".\" INBOX.Junk\r\n"
     "* LIST (\\HasNoChildren \\Trash) \".\" INBOX.Trash\r\n"
     "* LIST (\\HasNoChildren) \".\" INBOX.Warmup\r\n"
     "K4 OK List completed\r\n",
     "K5 SELECT INBOX\r\n", 0},
    {FEED, "* FLAGS (\\Seen)\r\n" SELECTED("7", "7") "K5 OK [READ-WRITE] Select completed\r\n",
     "K6 UID FETCH 5:* " FETCH_ITEMS, 0},
    {FEED,
     "* 2 FETCH (UID 5 FLAGS (\\Seen $Label1) INTERNALDATE \" 3-Dec-2026 21:30:05 -0300\" " SEC
     " {{Message-ID: " ID1 "\r\n"
     "Subject: warm\r\n  regards\r\n"
     "Authentication-Results: mx.acme.test;\r\n\tspf=pass smtp.mailfrom=acme.test;\r\n"
     " dkim=pass header.d=acme.test\r\n"
     "Authentication-Results: forged.example; spf=fail\r\n\r\n}})\r\n"
     "* 3 FETCH (UID 6 FLAGS () " SEC " {{Message-ID: <customer@mail.example>\r\n\r\n}})\r\n"
     "K6 OK Fetch completed\r\n",
     "K7 SELECT INBOX.Junk\r\n", 0},
    {FEED, SELECTED("8", "12") "K7 OK [READ-WRITE] Select completed\r\n",
     "K8 UID FETCH 11:* " FETCH_ITEMS, 0},
    {FEED,
     "* 1 FETCH (UID 10 FLAGS () " SEC " {{Message-ID: " ID2 "\r\n\r\n}})\r\n"
     "* 2 FETCH (UID 11 FLAGS () " SEC " {{Message-ID:\r\n " ID2 "\r\nIn-Reply-To: " ID1
     "\r\n\r\n}})\r\n"
     "K8 OK Fetch completed\r\n",
     "K9 SELECT INBOX.Warmup\r\n", 0},
    {FEED, SELECTED("3", "40") "K9 OK [READ-WRITE] Select completed\r\n", "K10 LOGOUT\r\n", 0},
    {FEED, BYE_OK("K10"), NULL, 0},
};

static const char *find_events =
    "login\n"
    "found INBOX inbox 7/5 " ID1
    " flags=[\\Seen,$Label1] date=2026-12-04T00:30:05Z ar=mx.acme.test; spf=pass "
    "smtp.mailfrom=acme.test; dkim=pass header.d=acme.test irt=- subj=warm regards\n"
    "state INBOX inbox 7 last=6\n"
    "found INBOX.Junk junk 8/11 " ID2 " flags=[] ar=- irt=" ID1 " subj=-\n"
    "state INBOX.Junk junk 8 last=11\n"
    "state INBOX.Warmup warmup 3 last=39\n";

static void test_finds_kiln_mail_in_inbox_and_junk(void **state)
{
    (void)state;
    imap_inbox_job job = {.folders = dovecot_state, .nfolders = 2};
    run_result res;
    RUN(&job, find_steps, 0, &res);
    expect_events(&res, find_events, IMAP_OUT_OK);
}

/* trust_stored_roles: the stored state names INBOX and the junk folder, so the visit
 * goes straight to the folder checks (no NAMESPACE, no LIST); nothing new in either. */
static void test_stored_roles_skip_namespace_and_list(void **state)
{
    (void)state;
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP(CAPS_ALL, "K3 SELECT INBOX\r\n"),
        {FEED, SELECTED("7", "5") "K3 OK done\r\n", "K4 SELECT INBOX.Junk\r\n", 0},
        {FEED, SELECTED("8", "11") "K4 OK done\r\n", "K5 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K5"), NULL, 0},
    };
    imap_inbox_job job = {.folders = dovecot_state, .nfolders = 2, .trust_stored_roles = true};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res, "login\nstate INBOX inbox 7 last=4\nstate INBOX.Junk junk 8 last=10\n",
                  IMAP_OUT_OK);
}

/* A stored junk folder that SELECT no longer finds (renamed): NAMESPACE and LIST after
 * all, then the checks start over with the folder LIST marks \Junk now. */
static void test_stored_junk_gone_lists_again(void **state)
{
    (void)state;
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP(CAPS_ALL, "K3 SELECT INBOX\r\n"),
        {FEED, SELECTED("7", "5") "K3 OK done\r\n", "K4 SELECT INBOX.Junk\r\n", 0},
        {FEED, "K4 NO Mailbox doesn't exist: INBOX.Junk\r\n", "K5 NAMESPACE\r\n", 0},
        {FEED, NS_DOVECOT "K5 OK done\r\n", "K6 " LIST_SU, 0},
        {FEED, "* LIST () \".\" INBOX\r\n* LIST (\\Junk) \".\" INBOX.Spam\r\nK6 OK done\r\n",
         "K7 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "5") "K7 OK done\r\n", "K8 SELECT INBOX.Spam\r\n", 0},
        {FEED, SELECTED("9", "5") "K8 OK done\r\n", "K9 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K9"), NULL, 0},
    };
    imap_inbox_job job = {.folders = dovecot_state, .nfolders = 2, .trust_stored_roles = true};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nstate INBOX inbox 7 last=4\nstate INBOX inbox 7 last=4\n"
                  "state INBOX.Spam junk 9 last=4\n",
                  IMAP_OUT_OK);
}

/* The same dialogue with every server text cut in chunks of every size up to the
 * longest (so every literal is split at every byte, and whole too). */
static void test_find_dialogue_in_every_split(void **state)
{
    (void)state;
    imap_inbox_job job = {.folders = dovecot_state, .nfolders = 2};
    size_t longest = 0;
    buf text = BUF_INIT;
    for (size_t i = 0; i < sizeof find_steps / sizeof find_steps[0]; i++) {
        expand(find_steps[i].server, &text);
        longest = text.len > longest ? text.len : longest;
    }
    buf_free(&text);
    assert_true(longest > 300);
    for (size_t split = 1; split <= longest; split++) {
        run_result res;
        RUN(&job, find_steps, split, &res);
        expect_events(&res, find_events, IMAP_OUT_OK);
    }
}

static void test_uidvalidity_change_resyncs_the_folder(void **state)
{
    (void)state;
    static const imap_inbox_folder st[] = {{"INBOX", IMAP_ROLE_INBOX, 7, 50}};
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1 MOVE UIDPLUS", "K3 LIST \"\" \"*\"\r\n"),
        {FEED, "* LIST () \"/\" INBOX\r\nK3 OK done\r\n", "K4 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("9", "3") "K4 OK done\r\n", "K5 UID FETCH 1:* " FETCH_ITEMS, 0},
        {FEED,
         "* 1 FETCH (UID 2 FLAGS (\\Seen) " SEC " {{Message-ID: " ID1 "\r\n\r\n}})\r\n"
         "K5 OK done\r\n",
         "K6 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K6"), NULL, 0},
    };
    imap_inbox_job job = {.folders = st, .nfolders = 1};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nfound INBOX inbox 9/2 " ID1 " flags=[\\Seen] ar=- irt=- subj=-\n"
                  "state INBOX inbox 9 last=2 resync from 7\n",
                  IMAP_OUT_OK);
}

/* A never-watched INBOX reports nothing old; without SPECIAL-USE no folder is junk, not
 * even one LIST marks \Junk or one named Junk. */
static void test_never_watched_and_no_special_use(void **state)
{
    (void)state;
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1", "K3 LIST \"\" \"*\"\r\n"),
        {FEED, "* LIST () \"/\" INBOX\r\n* LIST (\\Junk) \"/\" Junk\r\nK3 OK done\r\n",
         "K4 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "1201") "K4 OK done\r\n", "K5 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K5"), NULL, 0},
    };
    imap_inbox_job job = {0};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res, "login\nstate INBOX inbox 7 last=1200\n", IMAP_OUT_OK);
}

/* 1,200 new UIDs: three fetches of at most 500, the last open-ended; Gmail labels. */
static void test_large_folder_is_fetched_in_batches(void **state)
{
    (void)state;
    static const imap_inbox_folder st[] = {{"INBOX", IMAP_ROLE_INBOX, 7, 0}};
#define GM_ITEMS "(UID FLAGS INTERNALDATE X-GM-LABELS BODY.PEEK[HEADER.FIELDS " HDRS "])\r\n"
#define BIG_SELECTED "* 1200 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 1201] ok\r\n"
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1 X-GM-EXT-1", "K3 LIST \"\" \"*\"\r\n"),
        {FEED, "* LIST () \"/\" INBOX\r\nK3 OK done\r\n", "K4 SELECT INBOX\r\n", 0},
        {FEED, BIG_SELECTED "K4 OK done\r\n", "K5 UID FETCH 1:500 " GM_ITEMS, 0},
        /* not kiln's mail: no event, but the batch was not empty */
        {FEED,
         "* 1 FETCH (UID 1 FLAGS () " SEC " {{Message-ID: <a@b.test>\r\n\r\n}})\r\n"
         "K5 OK done\r\n",
         "K6 UID FETCH 501:1000 " GM_ITEMS, 0},
        {FEED,
         "* 9 FETCH (UID 777 FLAGS () X-GM-LABELS (\\Inbox \"&AMk-t&AOk-\") " SEC
         " {{Message-ID: " ID1 "\r\n\r\n}})\r\n"
         "* 10 FETCH (UID 1001 FLAGS () " SEC " {{Message-ID: " ID2 "\r\n\r\n}})\r\n"
         "K6 OK done\r\n",
         "K7 UID FETCH 1001:* " GM_ITEMS, 0},
        {FEED, "K7 OK done\r\n", "K8 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K8"), NULL, 0},
    };
    imap_inbox_job job = {.folders = st, .nfolders = 1};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nfound INBOX inbox 7/777 " ID1
                  " flags=[] labels=[\\Inbox,&AMk-t&AOk-] ar=- irt=- subj=-\n"
                  "state INBOX inbox 7 last=1200\n",
                  IMAP_OUT_OK);
}

/* A batch that comes back empty is a gap in the UIDs (a server may start them anywhere,
 * up to 2^32-1): the rest is fetched in one command instead of 500 UIDs at a time; and a
 * folder whose EXISTS fits in one batch is fetched whole at once. */
static void test_a_gap_in_uids_ends_the_batch_walk(void **state)
{
    (void)state;
    static const imap_inbox_folder st[] = {{"INBOX", IMAP_ROLE_INBOX, 7, 0}};
    static const step gap[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1", "K3 LIST \"\" \"*\"\r\n"),
        {FEED, "* LIST () \"/\" INBOX\r\nK3 OK done\r\n", "K4 SELECT INBOX\r\n", 0},
        {FEED,
         "* 1200 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 4294967295] ok\r\n"
         "K4 OK done\r\n",
         "K5 UID FETCH 1:500 " FETCH_ITEMS, 0},
        {FEED, "K5 OK done\r\n", "K6 UID FETCH 501:* " FETCH_ITEMS, 0},
        {FEED,
         "* 1 FETCH (UID 4000000000 FLAGS () " SEC " {{Message-ID: " ID1 "\r\n\r\n}})\r\n"
         "K6 OK done\r\n",
         "K7 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K7"), NULL, 0},
    };
    imap_inbox_job job = {.folders = st, .nfolders = 1};
    run_result res;
    RUN(&job, gap, 0, &res);
    expect_events(&res,
                  "login\nfound INBOX inbox 7/4000000000 " ID1 " flags=[] ar=- irt=- subj=-\n"
                  "state INBOX inbox 7 last=4294967294\n",
                  IMAP_OUT_OK);

    static const step small[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1", "K3 LIST \"\" \"*\"\r\n"),
        {FEED, "* LIST () \"/\" INBOX\r\nK3 OK done\r\n", "K4 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "100000") "K4 OK done\r\n", "K5 UID FETCH 1:* " FETCH_ITEMS, 0},
        {FEED, "K5 OK done\r\n", "K6 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K6"), NULL, 0},
    };
    run_result res2;
    RUN(&job, small, 0, &res2);
    expect_events(&res2, "login\nstate INBOX inbox 7 last=99999\n", IMAP_OUT_OK);
}

/* ---- actions ---- */

/* Login, LIST with INBOX and Junk, both never watched: Junk ends selected. */
#define ACT_PRELUDE(caps, tag_list)                                                                \
    LOGIN_STEPS, CAPS_STEP(caps, "K3 LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n"),                   \
        {FEED, "* LIST () \"/\" INBOX\r\n* LIST (\\Junk) \"/\" Junk\r\nK3 OK done\r\n",            \
         "K4 SELECT INBOX\r\n", 0},                                                                \
    {                                                                                              \
        FEED, SELECTED("7", "21") "K4 OK done\r\n", "K5 SELECT Junk\r\n", 0                        \
    }
#define PRELUDE_EVENTS "login\nstate INBOX inbox 7 last=20\nstate Junk junk 8 last=11\n"
#define JUNK_SELECTED SELECTED("8", "12") "K5 OK done\r\n"

static const imap_inbox_action rescue11 = {
    .id = 31, .kind = IMAP_ACT_RESCUE, .folder = "Junk", .uidvalidity = 8, .uid = 11};

static void test_rescue_with_move_takes_the_untagged_copyuid(void **state)
{
    (void)state;
    static const step steps[] = {
        ACT_PRELUDE("IMAP4rev1 MOVE UIDPLUS SPECIAL-USE", 0),
        {FEED, JUNK_SELECTED, "K6 UID MOVE 11 INBOX\r\n", 0},
        {FEED, "* OK [COPYUID 7 11 21] Moved UIDs.\r\n* 3 EXPUNGE\r\nK6 OK Move completed.\r\n",
         "K7 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K7"), NULL, 0},
    };
    imap_inbox_job job = {.actions = &rescue11, .nactions = 1};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res, PRELUDE_EVENTS "action 31 done INBOX inbox 7/21 ()\n", IMAP_OUT_OK);
}

static void test_rescue_without_move_copies_and_expunges_by_uid(void **state)
{
    (void)state;
    static const step steps[] = {
        ACT_PRELUDE("IMAP4rev1 UIDPLUS SPECIAL-USE", 0),
        {FEED, JUNK_SELECTED, "K6 UID COPY 11 INBOX\r\n", 0},
        {FEED, "K6 OK [COPYUID 7 11 21] Copy completed.\r\n",
         "K7 UID STORE 11 +FLAGS.SILENT (\\Deleted)\r\n", 0},
        {FEED, "K7 OK Store completed.\r\n", "K8 UID EXPUNGE 11\r\n", 0},
        {FEED, "* 3 EXPUNGE\r\nK8 OK Expunge completed.\r\n", "K9 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K9"), NULL, 0},
    };
    imap_inbox_job job = {.actions = &rescue11, .nactions = 1};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res, PRELUDE_EVENTS "action 31 done INBOX inbox 7/21 ()\n", IMAP_OUT_OK);
}

/* Neither MOVE nor UIDPLUS: moves and prunes are refused, nothing is sent for them. */
static void test_neither_move_nor_uidplus_is_refused(void **state)
{
    (void)state;
    static const imap_inbox_action acts[] = {
        {.id = 31, .kind = IMAP_ACT_RESCUE, .folder = "Junk", .uidvalidity = 8, .uid = 11},
        {.id = 32, .kind = IMAP_ACT_PRUNE, .folder = "Junk", .uidvalidity = 8, .uid = 11},
    };
    static const step steps[] = {
        ACT_PRELUDE("IMAP4rev1 SPECIAL-USE", 0),
        {FEED, JUNK_SELECTED, "K6 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K6"), NULL, 0},
    };
    imap_inbox_job job = {.actions = acts, .nactions = 2};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  PRELUDE_EVENTS
                  "action 31 refused - other 0/0 (neither MOVE nor UIDPLUS)\n"
                  "action 32 refused - other 0/0 (no UIDPLUS: no UID-exact delete)\n",
                  IMAP_OUT_OK);
}

/* MOVE without UIDPLUS gives no COPYUID: the message's sequence number is read first
 * (UID FETCH), follows the EXPUNGEs before it, and only its own EXPUNGE is the move's.
 * Another client's expunge no longer makes a move that did nothing "done" (session 32's
 * attack); a UID that is not there is "gone" with no MOVE sent. */
static void test_move_without_uidplus_counts_only_its_own_expunge(void **state)
{
    (void)state;
    static const imap_inbox_action acts[] = {
        {.id = 31, .kind = IMAP_ACT_RESCUE, .folder = "Junk", .uidvalidity = 8, .uid = 11},
        {.id = 32, .kind = IMAP_ACT_RESCUE, .folder = "Junk", .uidvalidity = 8, .uid = 12},
        {.id = 33, .kind = IMAP_ACT_RESCUE, .folder = "Junk", .uidvalidity = 8, .uid = 13},
    };
    static const step steps[] = {
        ACT_PRELUDE("IMAP4rev1 MOVE SPECIAL-USE", 0),
        {FEED, JUNK_SELECTED, "K6 UID FETCH 11 (UID FLAGS)\r\n", 0},
        {FEED, "* 3 FETCH (UID 11 FLAGS ())\r\nK6 OK done\r\n", "K7 UID MOVE 11 INBOX\r\n", 0},
        /* another client's message 1 goes first: this one is 2 by then */
        {FEED, "* 1 EXPUNGE\r\n* 2 EXPUNGE\r\nK7 OK Move completed.\r\n",
         "K8 UID FETCH 12 (UID FLAGS)\r\n", 0},
        {FEED, "* 1 FETCH (UID 12 FLAGS ())\r\nK8 OK done\r\n", "K9 UID MOVE 12 INBOX\r\n", 0},
        /* only someone else's message expunged: this one was not moved */
        {FEED, "* 2 EXPUNGE\r\nK9 OK Move completed.\r\n", "K10 UID FETCH 13 (UID FLAGS)\r\n", 0},
        {FEED, "K10 OK done\r\n", "K11 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K11"), NULL, 0},
    };
    imap_inbox_job job = {.actions = acts, .nactions = 3};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  PRELUDE_EVENTS
                  "action 31 done INBOX inbox 7/0 (moved; the server gave no COPYUID)\n"
                  "action 32 failed - other 0/0 (UID MOVE answered OK, but the message was "
                  "not expunged)\n"
                  "action 33 gone - other 0/0 (no message at that UID)\n",
                  IMAP_OUT_OK);
}

/* mark: STORE, then FETCH FLAGS confirms; a second mark whose flag the server does not
 * keep fails; a prune; then three actions on a UID that is gone, and one stale. */
static void test_mark_prune_gone_and_stale(void **state)
{
    (void)state;
    static const char *const seen_flagged[] = {"\\Seen", "\\Flagged"};
    static const char *const kw[] = {"$Warm"};
    static const imap_inbox_action acts[] = {
        {.id = 1,
         .kind = IMAP_ACT_MARK,
         .folder = "Junk",
         .uidvalidity = 8,
         .uid = 11,
         .flags = seen_flagged,
         .nflags = 2},
        {.id = 2,
         .kind = IMAP_ACT_MARK,
         .folder = "Junk",
         .uidvalidity = 8,
         .uid = 11,
         .flags = kw,
         .nflags = 1},
        {.id = 3, .kind = IMAP_ACT_PRUNE, .folder = "Junk", .uidvalidity = 8, .uid = 11},
        {.id = 4, .kind = IMAP_ACT_RESCUE, .folder = "Junk", .uidvalidity = 8, .uid = 9},
        {.id = 5,
         .kind = IMAP_ACT_MARK,
         .folder = "Junk",
         .uidvalidity = 8,
         .uid = 9,
         .flags = kw,
         .nflags = 1},
        {.id = 6, .kind = IMAP_ACT_PRUNE, .folder = "Junk", .uidvalidity = 8, .uid = 9},
        {.id = 7, .kind = IMAP_ACT_PRUNE, .folder = "Junk", .uidvalidity = 99, .uid = 9},
        {.id = 8,
         .kind = IMAP_ACT_MARK,
         .folder = "Gone",
         .uidvalidity = 5,
         .uid = 9,
         .flags = kw,
         .nflags = 1},
        {.id = 9,
         .kind = IMAP_ACT_MARK,
         .folder = "Junk",
         .uidvalidity = 8,
         .uid = 9,
         .flags = kw,
         .nflags = 1,
         .not_before_ms = 5000},
    };
    static const step steps[] = {
        ACT_PRELUDE("IMAP4rev1 MOVE UIDPLUS SPECIAL-USE", 0),
        {FEED, JUNK_SELECTED, "K6 UID STORE 11 +FLAGS (\\Seen \\Flagged)\r\n", 0},
        {FEED, "* 2 FETCH (UID 11 FLAGS (\\Seen \\Flagged))\r\nK6 OK Store completed.\r\n",
         "K7 UID FETCH 11 (UID FLAGS)\r\n", 0},
        {FEED, "* 2 FETCH (UID 11 FLAGS (\\Seen \\Flagged))\r\nK7 OK done\r\n",
         "K8 UID STORE 11 +FLAGS ($Warm)\r\n", 0},
        {FEED, "K8 OK Store completed.\r\n", "K9 UID FETCH 11 (UID FLAGS)\r\n", 0},
        {FEED, "* 2 FETCH (UID 11 FLAGS (\\Seen \\Flagged))\r\nK9 OK done\r\n",
         "K10 UID STORE 11 +FLAGS.SILENT (\\Deleted)\r\n", 0},
        {FEED, "K10 OK Store completed.\r\n", "K11 UID EXPUNGE 11\r\n", 0},
        {FEED, "* 2 EXPUNGE\r\nK11 OK Expunge completed.\r\n", "K12 UID MOVE 9 INBOX\r\n", 0},
        {FEED, "K12 OK No messages found.\r\n", "K13 UID STORE 9 +FLAGS ($Warm)\r\n", 0},
        {FEED, "K13 OK Store completed.\r\n", "K14 UID FETCH 9 (UID FLAGS)\r\n", 0},
        {FEED, "K14 OK done\r\n", "K15 UID STORE 9 +FLAGS.SILENT (\\Deleted)\r\n", 0},
        {FEED, "K15 OK done\r\n", "K16 UID EXPUNGE 9\r\n", 0},
        {FEED, "K16 OK done\r\n", "K17 SELECT Gone\r\n", 0},
        {FEED, "K17 NO [NONEXISTENT] Mailbox doesn't exist: Gone\r\n", "K18 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K18"), NULL, 0},
    };
    imap_inbox_job job = {.actions = acts, .nactions = sizeof acts / sizeof acts[0]};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  PRELUDE_EVENTS "action 1 done Junk junk 8/11 flags=[\\Seen,\\Flagged] ()\n"
                                 "action 2 failed - other 0/0 (the server did not keep the flags)\n"
                                 "action 3 done - other 0/0 ()\n"
                                 "action 4 gone - other 0/0 (no message at that UID)\n"
                                 "action 5 gone - other 0/0 (no message at that UID)\n"
                                 "action 6 gone - other 0/0 (no message at that UID)\n"
                                 "action 7 stale - other 0/0 (UIDVALIDITY is now 8)\n"
                                 "action 8 gone - other 0/0 (no such folder)\n",
                  IMAP_OUT_OK);
}

/* A crash between a MOVE and its report: the next session finds the message by its
 * Message-ID among INBOX's new mail and reports the action done with that UID, without
 * moving anything; a later mark on the old address follows the move. */
static void test_rediscovery_after_a_crash_and_following_a_move(void **state)
{
    (void)state;
    static const char *const seen[] = {"\\Seen"};
    static const imap_inbox_folder st[] = {{"INBOX", IMAP_ROLE_INBOX, 7, 20},
                                           {"Junk", IMAP_ROLE_JUNK, 8, 11}};
    static const imap_inbox_action acts[] = {
        {.id = 31,
         .kind = IMAP_ACT_RESCUE,
         .folder = "Junk",
         .uidvalidity = 8,
         .uid = 11,
         .message_id = ID1},
        {.id = 32,
         .kind = IMAP_ACT_MARK,
         .folder = "Junk",
         .uidvalidity = 8,
         .uid = 11,
         .flags = seen,
         .nflags = 1},
    };
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1 MOVE UIDPLUS SPECIAL-USE", "K3 " LIST_SU),
        {FEED, "* LIST () \"/\" INBOX\r\n* LIST (\\Junk) \"/\" Junk\r\nK3 OK done\r\n",
         "K4 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "22") "K4 OK done\r\n", "K5 UID FETCH 21:* " FETCH_ITEMS, 0},
        {FEED,
         "* 3 FETCH (UID 21 FLAGS () " SEC " {{Message-ID: " ID1 "\r\n\r\n}})\r\nK5 OK done\r\n",
         "K6 SELECT Junk\r\n", 0},
        {FEED, SELECTED("8", "12") "K6 OK done\r\n", "K7 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "22") "K7 OK done\r\n", "K8 UID STORE 21 +FLAGS (\\Seen)\r\n", 0},
        {FEED, "K8 OK done\r\n", "K9 UID FETCH 21 (UID FLAGS)\r\n", 0},
        {FEED, "* 3 FETCH (FLAGS (\\Seen) UID 21)\r\nK9 OK done\r\n", "K10 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K10"), NULL, 0},
    };
    imap_inbox_job job = {.folders = st, .nfolders = 2, .actions = acts, .nactions = 2};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nfound INBOX inbox 7/21 " ID1 " flags=[] ar=- irt=- subj=-\n"
                  "state INBOX inbox 7 last=21\nstate Junk junk 8 last=11\n"
                  "action 31 done INBOX inbox 7/21 (found in the target by its Message-ID)\n"
                  "action 32 done INBOX inbox 7/21 flags=[\\Seen] ()\n",
                  IMAP_OUT_OK);
}

static const imap_inbox_action file5 = {
    .id = 40, .kind = IMAP_ACT_FILE, .folder = "INBOX", .uidvalidity = 7, .uid = 5};

/* file: the warmup folder is missing, so it is created (under the INBOX. prefix, its
 * UTF-8 name in modified UTF-7); a racing creator's ALREADYEXISTS is fine. */
static void test_file_creates_the_warmup_folder_utf7(void **state)
{
    (void)state;
    static const step steps[] = {
        DOVECOT_TO_LIST,
        {FEED,
         "* LIST () \".\" INBOX\r\n* LIST (\\Junk) \".\" \"INBOX.Spam &AMk-\"\r\n"
         "K4 OK done\r\n",
         "K5 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "6") "K5 OK done\r\n", "K6 SELECT \"INBOX.Spam &AMk-\"\r\n", 0},
        {FEED, SELECTED("8", "1") "K6 OK done\r\n", "K7 CREATE INBOX.W&AOQ-rme\r\n", 0},
        {FEED, "K7 NO [ALREADYEXISTS] Mailbox already exists\r\n", "K8 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "6") "K8 OK done\r\n", "K9 UID MOVE 5 INBOX.W&AOQ-rme\r\n", 0},
        {FEED, "* OK [COPYUID 3 5 1] Moved UIDs.\r\n* 1 EXPUNGE\r\nK9 OK Move completed.\r\n",
         "K10 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K10"), NULL, 0},
    };
    imap_inbox_job job = {.actions = &file5, .nactions = 1, .warmup_folder = "W\xc3\xa4rme"};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nstate INBOX inbox 7 last=5\nstate INBOX.Spam &AMk- junk 8 last=0\n"
                  "action 40 done INBOX.W&AOQ-rme warmup 3/1 ()\n",
                  IMAP_OUT_OK);
}

/* Hostile answers that must not move what the agent believes (session 32's attack):
 * a COPYUID on the action's SELECT is not the move's, so a bare OK to a MOVE that
 * expunged nothing is "gone", not "done" at a made-up UID. */
static void test_copyuid_only_from_the_move_itself(void **state)
{
    (void)state;
    static const step steps[] = {
        DOVECOT_TO_LIST,
        {FEED,
         "* LIST () \".\" INBOX\r\n* LIST (\\Junk) \".\" INBOX.Junk\r\n"
         "* LIST () \".\" INBOX.Warmup\r\nK4 OK done\r\n",
         "K5 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "6") "K5 OK done\r\n", "K6 SELECT INBOX.Junk\r\n", 0},
        {FEED, SELECTED("8", "1") "K6 OK done\r\n", "K7 SELECT INBOX.Warmup\r\n", 0},
        {FEED, SELECTED("3", "1") "K7 OK done\r\n", "K8 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "6") "K8 OK [COPYUID 77 5 12] done\r\n",
         "K9 UID MOVE 5 INBOX.Warmup\r\n", 0},
        {FEED, "K9 OK Move completed.\r\n", "K10 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K10"), NULL, 0},
    };
    imap_inbox_job job = {.actions = &file5, .nactions = 1, .warmup_folder = "Warmup"};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nstate INBOX inbox 7 last=5\nstate INBOX.Junk junk 8 last=0\n"
                  "state INBOX.Warmup warmup 3 last=0\n"
                  "action 40 gone - other 0/0 (no message at that UID)\n",
                  IMAP_OUT_OK);
}

/* A bare "* n FETCH (UID u FLAGS ())" in a fetch's answer (no header section: a flag
 * update, or a server's invention) does not move the folder's last UID: one at
 * 2^32-1 hid every later message of the folder. */
static void test_a_bare_fetch_does_not_move_the_last_uid(void **state)
{
    (void)state;
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP(CAPS_ALL, "K3 SELECT INBOX\r\n"),
        {FEED, SELECTED("7", "7") "K3 OK done\r\n", "K4 UID FETCH 5:* " FETCH_ITEMS, 0},
        {FEED,
         "* 3 FETCH (UID 4294967295 FLAGS ())\r\n"
         "* 1 FETCH (UID 5 FLAGS () " SEC " {{Message-ID: " ID1 "\r\n\r\n}})\r\n"
         "K4 OK Fetch completed\r\n",
         "K5 SELECT INBOX.Junk\r\n", 0},
        {FEED, SELECTED("8", "11") "K5 OK done\r\n", "K6 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K6"), NULL, 0},
    };
    imap_inbox_job job = {.folders = dovecot_state, .nfolders = 2, .trust_stored_roles = true};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nfound INBOX inbox 7/5 " ID1 " flags=[] ar=- irt=- subj=-\n"
                  "state INBOX inbox 7 last=6\nstate INBOX.Junk junk 8 last=10\n",
                  IMAP_OUT_OK);
}

/* Re-discovery on a server without MOVE: the original a crashed COPY left in Junk is
 * deleted UID-exactly; a never-watched folder without UIDNEXT is probed with UID FETCH
 * *; a refused CREATE fails the file action; a refused \Deleted after a COPY still
 * counts the move (the target holds the message). */
static void test_cleanup_probe_and_refusals(void **state)
{
    (void)state;
    static const imap_inbox_folder st[] = {{"INBOX", IMAP_ROLE_INBOX, 7, 20}};
    static const imap_inbox_action acts[] = {
        {.id = 61,
         .kind = IMAP_ACT_RESCUE,
         .folder = "Junk",
         .uidvalidity = 8,
         .uid = 11,
         .message_id = ID1},
        {.id = 62, .kind = IMAP_ACT_FILE, .folder = "Junk", .uidvalidity = 8, .uid = 12},
        {.id = 63, .kind = IMAP_ACT_RESCUE, .folder = "Junk", .uidvalidity = 8, .uid = 13},
    };
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1 UIDPLUS SPECIAL-USE", "K3 " LIST_SU),
        {FEED, "* LIST () \"/\" INBOX\r\n* LIST (\\Junk) \"/\" Junk\r\nK3 OK done\r\n",
         "K4 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "22") "K4 OK done\r\n", "K5 UID FETCH 21:* " FETCH_ITEMS, 0},
        {FEED,
         "* 3 FETCH (UID 21 FLAGS () " SEC " {{Message-ID: " ID1 "\r\n\r\n}})\r\nK5 OK done\r\n",
         "K6 SELECT Junk\r\n", 0},
        {FEED, "* OK [UIDVALIDITY 8] ok\r\nK6 OK done\r\n", "K7 UID FETCH * (UID)\r\n", 0},
        {FEED, "* 4 FETCH (UID 13)\r\nK7 OK done\r\n",
         "K8 UID STORE 11 +FLAGS.SILENT (\\Deleted)\r\n", 0},
        {FEED, "K8 OK done\r\n", "K9 UID EXPUNGE 11\r\n", 0},
        {FEED, "* 2 EXPUNGE\r\nK9 OK done\r\n", "K10 CREATE Warmup\r\n", 0},
        {FEED, "K10 NO [OVERQUOTA] Quota exceeded\r\n", "K11 UID COPY 13 INBOX\r\n", 0},
        {FEED, "K11 OK [COPYUID 7 13 22] done\r\n",
         "K12 UID STORE 13 +FLAGS.SILENT (\\Deleted)\r\n", 0},
        {FEED, "K12 NO Permission denied\r\n", "K13 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K13"), NULL, 0},
    };
    imap_inbox_job job = {.folders = st, .nfolders = 1, .actions = acts, .nactions = 3};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nfound INBOX inbox 7/21 " ID1 " flags=[] ar=- irt=- subj=-\n"
                  "state INBOX inbox 7 last=21\nstate Junk junk 8 last=13\n"
                  "action 61 done INBOX inbox 7/21 (found in the target by its Message-ID; the "
                  "original deleted)\n"
                  "action 62 failed - other 0/0 (CREATE of the warmup folder refused: Quota "
                  "exceeded)\n"
                  "action 63 done INBOX inbox 7/22 (the original could not be deleted)\n",
                  IMAP_OUT_OK);
}

/* ---- IDLE ---- */

static void test_idle_wake_done_refresh_and_stop(void **state)
{
    (void)state;
    const int64_t T = 1000000;
    static const imap_inbox_action later = {.id = 50,
                                            .kind = IMAP_ACT_PRUNE,
                                            .folder = "INBOX",
                                            .uidvalidity = 7,
                                            .uid = 3,
                                            .not_before_ms = 1000000 + 40LL * 60 * 1000};
    static const imap_inbox_folder st[] = {{"INBOX", IMAP_ROLE_INBOX, 7, 6}};
    const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1 IDLE UIDPLUS", "K3 LIST \"\" \"*\"\r\n"),
        {FEED, "* LIST () \"/\" INBOX\r\nK3 OK done\r\n", "K4 SELECT INBOX\r\n", T},
        {FEED, SELECTED("7", "7") "K4 OK done\r\n", "K5 IDLE\r\n", T},
        {FEED, "+ idling\r\n", NULL, T},
        {FEED, "* 4 EXISTS\r\n", NULL, T + 1000},
        {WAKE, NULL, "DONE\r\n", T + 1000},
        /* an untagged line after DONE, before the IDLE's OK */
        {FEED, "* 5 EXISTS\r\nK5 OK Idle completed.\r\n", "K6 SELECT INBOX\r\n", T + 1000},
        {FEED, SELECTED("7", "9") "K6 OK done\r\n", "K7 UID FETCH 7:* " FETCH_ITEMS, T + 1000},
        {FEED,
         "* 5 FETCH (UID 8 FLAGS () " SEC " {{Message-ID: " ID2 "\r\n\r\n}})\r\nK7 OK done\r\n",
         "K8 IDLE\r\n", T + 1000},
        {FEED, "+ idling\r\n", NULL, T + 2000},
        {TICK, NULL, NULL, T + 10LL * 60 * 1000},
        {TICK, NULL, "DONE\r\n", T + 2000 + 28LL * 60 * 1000},
        {FEED, "K8 OK Idle completed.\r\n", "K9 IDLE\r\n", T + 2000 + 28LL * 60 * 1000},
        {FEED, "+ idling\r\n", NULL, T + 2000 + 28LL * 60 * 1000},
        /* the pruning comes due */
        {TICK, NULL, "DONE\r\n", T + 40LL * 60 * 1000},
        {FEED, "K9 OK Idle completed.\r\n", "K10 UID STORE 3 +FLAGS.SILENT (\\Deleted)\r\n",
         T + 40LL * 60 * 1000},
        {FEED, "K10 OK done\r\n", "K11 UID EXPUNGE 3\r\n", T + 40LL * 60 * 1000},
        {FEED, "* 1 EXPUNGE\r\nK11 OK done\r\n", "K12 IDLE\r\n", T + 40LL * 60 * 1000},
        {FEED, "+ idling\r\n", NULL, T + 40LL * 60 * 1000},
        {STOP, NULL, "DONE\r\n", T + 41LL * 60 * 1000},
        {FEED, "K12 OK Idle completed.\r\n", "K13 LOGOUT\r\n", T + 41LL * 60 * 1000},
        {FEED, BYE_OK("K13"), NULL, T + 41LL * 60 * 1000},
    };
    imap_inbox_job job = {
        .folders = st, .nfolders = 1, .actions = &later, .nactions = 1, .want_idle = true};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nstate INBOX inbox 7 last=6\nwake INBOX\n"
                  "found INBOX inbox 7/8 " ID2 " flags=[] ar=- irt=- subj=-\n"
                  "state INBOX inbox 7 last=8\n"
                  "action 50 done - other 0/0 ()\n",
                  IMAP_OUT_OK);
}

/* Mail arriving between INBOX's check and IDLE (an EXISTS answering an action's
 * command) wakes the owner as soon as IDLE starts; EXISTS and RECENT wake once. */
static void test_mail_before_idle_wakes_at_once(void **state)
{
    (void)state;
    static const imap_inbox_folder st[] = {{"INBOX", IMAP_ROLE_INBOX, 7, 6}};
    static const imap_inbox_action prune3 = {
        .id = 50, .kind = IMAP_ACT_PRUNE, .folder = "INBOX", .uidvalidity = 7, .uid = 3};
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1 IDLE UIDPLUS", "K3 LIST \"\" \"*\"\r\n"),
        {FEED, "* LIST () \"/\" INBOX\r\nK3 OK done\r\n", "K4 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "7") "K4 OK done\r\n", "K5 UID STORE 3 +FLAGS.SILENT (\\Deleted)\r\n",
         0},
        {FEED, "* 4 EXISTS\r\n* 1 RECENT\r\nK5 OK done\r\n", "K6 UID EXPUNGE 3\r\n", 0},
        {FEED, "* 1 EXPUNGE\r\nK6 OK done\r\n", "K7 IDLE\r\n", 0},
        {FEED, "+ idling\r\n* 4 EXISTS\r\n* 1 RECENT\r\n", NULL, 0},
        {WAKE, NULL, "DONE\r\n", 0},
        {FEED, "K7 OK Idle completed.\r\n", "K8 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "8") "K8 OK done\r\n", "K9 UID FETCH 7:* " FETCH_ITEMS, 0},
        {FEED, "K9 OK done\r\n", "K10 IDLE\r\n", 0},
        {STOP, NULL, NULL, 0},
        {FEED, "+ idling\r\n", "DONE\r\n", 0},
        {FEED, "K10 OK Idle completed.\r\n", "K11 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K11"), NULL, 0},
    };
    imap_inbox_job job = {
        .folders = st, .nfolders = 1, .actions = &prune3, .nactions = 1, .want_idle = true};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nstate INBOX inbox 7 last=6\naction 50 done - other 0/0 ()\n"
                  "wake INBOX\nstate INBOX inbox 7 last=7\n",
                  IMAP_OUT_OK);
}

/* ---- pipelining (job.pipeline) ---- */

#define STATUS_ITEMS " (UIDNEXT UIDVALIDITY)\r\n"

/* A repeat visit (roles from the stored state): a CAPABILITY and the STATUS of both
 * folders go out behind the LOGIN in one write. INBOX has nothing new (no SELECT), Junk
 * has (SELECT, FETCH); "inbox" in any case answers for INBOX. The login OK without a
 * list waits for the pipelined CAPABILITY's answer; with a list (Dovecot) the session
 * is ready at once and that answer is read as any other. A refused login ends `auth`
 * (the connection closes on the answers to the pipelined commands). */
#define PIPED_LOGIN                                                                                \
    "K1 LOGIN anna s3cret\r\nK2 CAPABILITY\r\nK3 STATUS INBOX" STATUS_ITEMS                        \
    "K4 STATUS INBOX.Junk" STATUS_ITEMS
static void test_pipeline_status_skips_unchanged_folders(void **state)
{
    (void)state;
    static const step steps[] = {
        {FEED, GREETING, PIPED_LOGIN, 0},
        {FEED, "K1 OK Logged in\r\n", NULL, 0},
        {FEED,
         "* CAPABILITY " CAPS_ALL "\r\nK2 OK done\r\n"
         "* STATUS inbox (UIDNEXT 5 UIDVALIDITY 7)\r\nK3 OK done\r\n",
         NULL, 0},
        {FEED, "* STATUS INBOX.Junk (MESSAGES 3 UIDNEXT 12 UIDVALIDITY 8)\r\nK4 OK done\r\n",
         "K5 SELECT INBOX.Junk\r\n", 0},
        {FEED, SELECTED("8", "12") "K5 OK done\r\n", "K6 UID FETCH 11:* " FETCH_ITEMS, 0},
        {FEED,
         "* 3 FETCH (UID 11 FLAGS () " SEC " {{Message-ID: " ID2 "\r\n\r\n}})\r\nK6 OK done\r\n",
         "K7 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K7"), NULL, 0},
    };
    static const step dovecot[] = {
        {FEED, GREETING, PIPED_LOGIN, 0},
        {FEED,
         "K1 OK [CAPABILITY " CAPS_ALL "] Logged in\r\n* CAPABILITY " CAPS_ALL
         "\r\nK2 OK done\r\n* STATUS INBOX (UIDNEXT 5 UIDVALIDITY 7)\r\nK3 OK done\r\n"
         "* STATUS INBOX.Junk (UIDNEXT 11 UIDVALIDITY 8)\r\nK4 OK done\r\n",
         "K5 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K5"), NULL, 0},
    };
    static const step refused[] = {
        {FEED, GREETING, PIPED_LOGIN, 0},
        {FEED,
         "K1 NO [AUTHENTICATIONFAILED] bad\r\n* CAPABILITY IMAP4rev1\r\nK2 OK done\r\n"
         "K3 BAD not logged in\r\nK4 BAD not logged in\r\n",
         "K5 LOGOUT\r\n", 0}, /* at the NO: LOGOUT, and the connection closes behind it
                                 (the pipelined commands' answers are not read) */
    };
    imap_inbox_job job = {
        .folders = dovecot_state, .nfolders = 2, .trust_stored_roles = true, .pipeline = true};
    for (size_t split = 0; split < 40; split += 7) {
        run_result res;
        RUN(&job, steps, split, &res);
        expect_events(&res,
                      "login\nstate INBOX inbox 7 last=4\n"
                      "found INBOX.Junk junk 8/11 " ID2 " flags=[] ar=- irt=- subj=-\n"
                      "state INBOX.Junk junk 8 last=11\n",
                      IMAP_OUT_OK);
        RUN(&job, dovecot, split, &res);
        expect_events(&res, "login\nstate INBOX inbox 7 last=4\nstate INBOX.Junk junk 8 last=10\n",
                      IMAP_OUT_OK);
        RUN(&job, refused, split, &res);
        expect_events(&res, "", IMAP_OUT_AUTH);
    }
}

/* job.keep: after its work the session stays logged in (no LOGOUT); imap_inbox_visit
 * sends the STATUS of both folders in one write; a visit after one that selected a
 * folder puts an UNSELECT ahead of them in the same write; stop logs out at once. A kept
 * connection the server closes ends the session (unavailable), nothing sent. */
#define CAPS_KEEP CAPS_ALL " UNSELECT"
#define KEPT_LOGIN                                                                                 \
    {FEED, GREETING, PIPED_LOGIN, 0},                                                              \
    {                                                                                              \
        FEED,                                                                                      \
            "K1 OK [CAPABILITY " CAPS_KEEP "] Logged in\r\n* CAPABILITY " CAPS_KEEP                \
            "\r\nK2 OK done\r\n* STATUS INBOX (UIDNEXT 5 UIDVALIDITY 7)\r\nK3 OK done\r\n"         \
            "* STATUS INBOX.Junk (UIDNEXT 11 UIDVALIDITY 8)\r\nK4 OK done\r\n",                    \
            NULL, 0                                                                                \
    }
static void test_keep_visits_on_the_same_connection(void **state)
{
    (void)state;
    static const step steps[] = {
        KEPT_LOGIN,
        {VISIT, NULL, "K5 STATUS INBOX" STATUS_ITEMS "K6 STATUS INBOX.Junk" STATUS_ITEMS, 60000},
        {FEED,
         "* STATUS INBOX (UIDNEXT 6 UIDVALIDITY 7)\r\nK5 OK done\r\n"
         "* STATUS INBOX.Junk (UIDNEXT 11 UIDVALIDITY 8)\r\nK6 OK done\r\n",
         "K7 SELECT INBOX\r\n", 60000},
        {FEED, SELECTED("7", "6") "K7 OK done\r\n", "K8 UID FETCH 5:* " FETCH_ITEMS, 60000},
        {FEED,
         "* 4 FETCH (UID 5 FLAGS () " SEC " {{Message-ID: " ID1 "\r\n\r\n}})\r\nK8 OK done\r\n",
         NULL, 60000},
        {VISIT, NULL,
         "K9 UNSELECT\r\nK10 STATUS INBOX" STATUS_ITEMS "K11 STATUS INBOX.Junk" STATUS_ITEMS,
         120000},
        {FEED,
         "K9 OK done\r\n* STATUS INBOX (UIDNEXT 6 UIDVALIDITY 7)\r\nK10 OK done\r\n"
         "* STATUS INBOX.Junk (UIDNEXT 11 UIDVALIDITY 8)\r\nK11 OK done\r\n",
         NULL, 120000},
        {STOP, NULL, "K12 LOGOUT\r\n", 130000},
        {FEED, BYE_OK("K12"), NULL, 130000},
    };
    static const step closed[] = {
        KEPT_LOGIN,
        {CLOSE, NULL, NULL, 30000},
        {VISIT, NULL, NULL, 60000}, /* over: nothing to visit */
    };
    imap_inbox_job job = {.folders = dovecot_state,
                          .nfolders = 2,
                          .trust_stored_roles = true,
                          .pipeline = true,
                          .keep = true};
    for (size_t split = 0; split < 40; split += 7) {
        run_result res;
        RUN(&job, steps, split, &res);
        expect_events(&res,
                      "login\nstate INBOX inbox 7 last=4\nstate INBOX.Junk junk 8 last=10\n"
                      "found INBOX inbox 7/5 " ID1 " flags=[] ar=- irt=- subj=-\n"
                      "state INBOX inbox 7 last=5\nstate INBOX.Junk junk 8 last=10\n"
                      "state INBOX inbox 7 last=5\nstate INBOX.Junk junk 8 last=10\n",
                      IMAP_OUT_OK);
        RUN(&job, closed, split, &res);
        expect_events(&res, "login\nstate INBOX inbox 7 last=4\nstate INBOX.Junk junk 8 last=10\n",
                      IMAP_OUT_UNAVAILABLE);
    }
}

/* A first visit: NAMESPACE and LIST in one write, then STATUS of the three roles; the
 * never-watched folders start at UIDNEXT - 1 without SELECT; answers out of order, a
 * STATUS refused for the warmup folder (SELECT then says why), and a recreated Junk
 * (other UIDVALIDITY than stored) goes the SELECT way and resyncs. */
static void test_pipeline_first_visit(void **state)
{
    (void)state;
    static const imap_inbox_folder junk_only[] = {{"INBOX.Junk", IMAP_ROLE_JUNK, 8, 10}};
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP(CAPS_ALL, "K3 NAMESPACE\r\nK4 " LIST_SU),
        {FEED,
         NS_DOVECOT "K3 OK done\r\n* LIST () \".\" INBOX\r\n* LIST (\\Junk) \".\" INBOX.Junk\r\n"
                    "* LIST () \".\" INBOX.Warmup\r\nK4 OK done\r\n",
         "K5 STATUS INBOX" STATUS_ITEMS "K6 STATUS INBOX.Junk" STATUS_ITEMS
         "K7 STATUS INBOX.Warmup" STATUS_ITEMS,
         0},
        {FEED,
         "* STATUS INBOX.Junk (UIDNEXT 3 UIDVALIDITY 9)\r\nK6 OK done\r\n"
         "K7 NO [SERVERBUG] try later\r\n"
         "* STATUS INBOX (UIDNEXT 40 UIDVALIDITY 7)\r\nK5 OK done\r\n",
         "K8 SELECT INBOX.Junk\r\n", 0},
        {FEED, SELECTED("9", "3") "K8 OK done\r\n", "K9 UID FETCH 1:* " FETCH_ITEMS, 0},
        {FEED, "K9 OK done\r\n", "K10 SELECT INBOX.Warmup\r\n", 0},
        {FEED, SELECTED("3", "6") "K10 OK done\r\n", "K11 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K11"), NULL, 0},
    };
    imap_inbox_job job = {.folders = junk_only, .nfolders = 1, .pipeline = true};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nstate INBOX inbox 7 last=39\n"
                  "state INBOX.Junk junk 9 last=2 resync from 8\n"
                  "state INBOX.Warmup warmup 3 last=5\n",
                  IMAP_OUT_OK);
}

/* LIST-STATUS (RFC 5819): a first visit's LIST brings each folder's STATUS, and a
 * folder it shows nothing new in needs no STATUS and no SELECT; one it shows new mail
 * in (the stored Junk, UIDNEXT past its last UID) is selected and fetched. */
#define CAPS_LS CAPS_ALL " LIST-EXTENDED LIST-STATUS"
#define LIST_LS "LIST \"\" \"*\" RETURN (SPECIAL-USE STATUS (UIDNEXT UIDVALIDITY))\r\n"
#define LS_ANSWER(tag, junk_next)                                                                  \
    "* LIST () \".\" INBOX\r\n* STATUS INBOX (UIDNEXT 40 UIDVALIDITY 7)\r\n"                       \
    "* LIST (\\Junk) \".\" INBOX.Junk\r\n* STATUS INBOX.Junk (UIDNEXT " junk_next                  \
    " UIDVALIDITY 8)\r\n* LIST () \".\" INBOX.Sent\r\n* STATUS INBOX.Sent (UIDNEXT 2 "             \
    "UIDVALIDITY 9)\r\n" tag " OK done\r\n"
static void test_list_status_first_visit(void **state)
{
    (void)state;
    static const imap_inbox_folder junk_only[] = {{"INBOX.Junk", IMAP_ROLE_JUNK, 8, 10}};
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP(CAPS_LS, "K3 NAMESPACE\r\nK4 " LIST_LS),
        {FEED, NS_DOVECOT "K3 OK done\r\n" LS_ANSWER("K4", "11"), "K5 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K5"), NULL, 0},
    };
    static const step news[] = {
        LOGIN_STEPS,
        CAPS_STEP(CAPS_LS, "K3 NAMESPACE\r\nK4 " LIST_LS),
        {FEED, NS_DOVECOT "K3 OK done\r\n" LS_ANSWER("K4", "12"), "K5 SELECT INBOX.Junk\r\n", 0},
        {FEED, SELECTED("8", "12") "K5 OK done\r\n", "K6 UID FETCH 11:* " FETCH_ITEMS, 0},
        {FEED, "K6 OK done\r\n", "K7 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K7"), NULL, 0},
    };
    imap_inbox_job job = {.folders = junk_only, .nfolders = 1, .pipeline = true};
    for (size_t split = 0; split < 40; split += 7) {
        run_result res;
        RUN(&job, steps, split, &res);
        expect_events(&res, "login\nstate INBOX inbox 7 last=39\nstate INBOX.Junk junk 8 last=10\n",
                      IMAP_OUT_OK);
        RUN(&job, news, split, &res);
        expect_events(&res, "login\nstate INBOX inbox 7 last=39\nstate INBOX.Junk junk 8 last=11\n",
                      IMAP_OUT_OK);
    }
}

/* job.caps_hint (an earlier login's capabilities on this server): a first visit sends
 * CAPABILITY, NAMESPACE and LIST-STATUS behind the LOGIN, in one write, and is greeting,
 * that write, LOGOUT; the login OK with or without a list. A hint gone stale (the server
 * refuses the LIST) sends LIST again as this login's capabilities allow, then the STATUS
 * checks. A refused login ends `auth`. A hint without LIST-STATUS or NAMESPACE sends
 * only what it has. */
#define HINT_LOGIN "K1 LOGIN anna s3cret\r\nK2 CAPABILITY\r\nK3 NAMESPACE\r\nK4 " LIST_LS
static void test_caps_hint_lists_behind_the_login(void **state)
{
    (void)state;
    static const step dovecot[] = {
        {FEED, GREETING, HINT_LOGIN, 0},
        {FEED,
         "K1 OK [CAPABILITY " CAPS_LS "] Logged in\r\n* CAPABILITY " CAPS_LS
         "\r\nK2 OK done\r\n" NS_DOVECOT "K3 OK done\r\n" LS_ANSWER("K4", "11"),
         "K5 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K5"), NULL, 0},
    };
    static const step nolist[] = {
        {FEED, GREETING, HINT_LOGIN, 0},
        {FEED, "K1 OK Logged in\r\n", NULL, 0},
        {FEED, "* CAPABILITY " CAPS_LS "\r\nK2 OK done\r\n", NULL, 0},
        {FEED, NS_DOVECOT "K3 OK done\r\n" LS_ANSWER("K4", "11"), "K5 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K5"), NULL, 0},
    };
    static const step stale[] = {
        {FEED, GREETING, HINT_LOGIN, 0},
        {FEED,
         "K1 OK [CAPABILITY " CAPS_ALL "] Logged in\r\n* CAPABILITY " CAPS_ALL
         "\r\nK2 OK done\r\n" NS_DOVECOT "K3 OK done\r\nK4 BAD unknown RETURN option\r\n",
         "K5 NAMESPACE\r\nK6 " LIST_SU, 0},
        {FEED,
         NS_DOVECOT "K5 OK done\r\n* LIST () \".\" INBOX\r\n* LIST (\\Junk) \".\" INBOX.Junk\r\n"
                    "K6 OK done\r\n",
         "K7 STATUS INBOX" STATUS_ITEMS "K8 STATUS INBOX.Junk" STATUS_ITEMS, 0},
        {FEED,
         "* STATUS INBOX (UIDNEXT 40 UIDVALIDITY 7)\r\nK7 OK done\r\n"
         "* STATUS INBOX.Junk (UIDNEXT 11 UIDVALIDITY 8)\r\nK8 OK done\r\n",
         "K9 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K9"), NULL, 0},
    };
    static const step refused[] = {
        {FEED, GREETING, HINT_LOGIN, 0},
        {FEED, "K1 NO [AUTHENTICATIONFAILED] bad\r\n* CAPABILITY IMAP4rev1\r\nK2 OK done\r\n",
         "K5 LOGOUT\r\n", 0},
    };
    imap_inbox_job job = {.pipeline = true,
                          .caps_hint = IMAP_CAP_IMAP4REV1 | IMAP_CAP_NAMESPACE |
                                       IMAP_CAP_SPECIAL_USE | IMAP_CAP_LIST_STATUS};
    for (size_t split = 0; split < 60; split += 7) {
        run_result res;
        RUN(&job, dovecot, split, &res);
        expect_events(&res, "login\nstate INBOX inbox 7 last=39\nstate INBOX.Junk junk 8 last=10\n",
                      IMAP_OUT_OK);
        RUN(&job, nolist, split, &res);
        expect_events(&res, "login\nstate INBOX inbox 7 last=39\nstate INBOX.Junk junk 8 last=10\n",
                      IMAP_OUT_OK);
        RUN(&job, stale, split, &res);
        expect_events(&res, "login\nstate INBOX inbox 7 last=39\nstate INBOX.Junk junk 8 last=10\n",
                      IMAP_OUT_OK);
        RUN(&job, refused, split, &res);
        expect_events(&res, "", IMAP_OUT_AUTH);
    }
    /* a server without NAMESPACE or LIST-STATUS: LIST alone behind the LOGIN */
    static const step plain[] = {
        {FEED, GREETING, "K1 LOGIN anna s3cret\r\nK2 CAPABILITY\r\nK3 " LIST_SU, 0},
        {FEED,
         "K1 OK [CAPABILITY IMAP4rev1 SPECIAL-USE] Logged in\r\n* CAPABILITY IMAP4rev1 "
         "SPECIAL-USE\r\nK2 OK done\r\n* LIST () \"/\" INBOX\r\n* LIST (\\Junk) \"/\" Spam\r\n"
         "K3 OK done\r\n",
         "K4 STATUS INBOX" STATUS_ITEMS "K5 STATUS Spam" STATUS_ITEMS, 0},
        {FEED,
         "* STATUS INBOX (UIDNEXT 3 UIDVALIDITY 1)\r\nK4 OK done\r\n"
         "* STATUS Spam (UIDNEXT 5 UIDVALIDITY 2)\r\nK5 OK done\r\n",
         "K6 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K6"), NULL, 0},
    };
    imap_inbox_job pjob = {.pipeline = true,
                           .caps_hint = IMAP_CAP_IMAP4REV1 | IMAP_CAP_SPECIAL_USE};
    run_result res;
    RUN(&pjob, plain, 0, &res);
    expect_events(&res, "login\nstate INBOX inbox 1 last=2\nstate Spam junk 2 last=4\n",
                  IMAP_OUT_OK);
}

/* IDLE after STATUS: INBOX is selected for IDLE; mail that came between its STATUS and
 * that SELECT (UIDNEXT moved) wakes the owner as soon as IDLE starts; a cycle after
 * IDLE (INBOX selected) uses SELECT, never STATUS. A STATUS answered THROTTLED ends the
 * visit. */
static void test_pipeline_idle_and_throttle(void **state)
{
    (void)state;
    static const imap_inbox_folder st[] = {{"INBOX", IMAP_ROLE_INBOX, 7, 6}};
    static const step steps[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1 IDLE UIDPLUS", "K3 LIST \"\" \"*\"\r\n"),
        {FEED, "* LIST () \"/\" INBOX\r\nK3 OK done\r\n", "K4 STATUS INBOX" STATUS_ITEMS, 0},
        {FEED, "* STATUS INBOX (UIDNEXT 7 UIDVALIDITY 7)\r\nK4 OK done\r\n", "K5 SELECT INBOX\r\n",
         0},
        {FEED, SELECTED("7", "8") "K5 OK done\r\n", "K6 IDLE\r\n", 0},
        {FEED, "+ idling\r\n", NULL, 0},
        {WAKE, NULL, "DONE\r\n", 0},
        {FEED, "K6 OK Idle completed.\r\n", "K7 SELECT INBOX\r\n", 0},
        {FEED, SELECTED("7", "8") "K7 OK done\r\n", "K8 UID FETCH 7:* " FETCH_ITEMS, 0},
        {FEED, "K8 OK done\r\n", "K9 IDLE\r\n", 0},
        {STOP, NULL, NULL, 0},
        {FEED, "+ idling\r\n", "DONE\r\n", 0},
        {FEED, "K9 OK Idle completed.\r\n", "K10 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K10"), NULL, 0},
    };
    imap_inbox_job job = {.folders = st, .nfolders = 1, .want_idle = true, .pipeline = true};
    run_result res;
    RUN(&job, steps, 0, &res);
    expect_events(&res,
                  "login\nstate INBOX inbox 7 last=6\nwake INBOX\nstate INBOX inbox 7 last=7\n",
                  IMAP_OUT_OK);

    static const step throttled[] = {
        {FEED, GREETING, PIPED_LOGIN, 0},
        {FEED, "K1 OK [CAPABILITY " CAPS_ALL "] ok\r\n* CAPABILITY IMAP4rev1\r\nK2 OK done\r\n",
         NULL, 0},
        {FEED, "K3 NO [THROTTLED] slow down\r\n", "K5 LOGOUT\r\n", 0},
        {FEED, "K4 NO [THROTTLED] slow down\r\n" BYE_OK("K5"), NULL, 0},
    };
    imap_inbox_job tjob = {
        .folders = dovecot_state, .nfolders = 2, .trust_stored_roles = true, .pipeline = true};
    RUN(&tjob, throttled, 0, &res);
    expect_events(&res, "login\n", IMAP_OUT_THROTTLED);
}

/* ---- throttling and errors ---- */

static void test_throttled_bye_and_alert(void **state)
{
    (void)state;
    static const step bye[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1", "K3 LIST \"\" \"*\"\r\n"),
        {FEED,
         "* OK [ALERT] Account will be suspended\r\n* BYE Too many connections, throttled\r\n",
         NULL, 0},
    };
    imap_inbox_job job = {0};
    run_result res;
    RUN(&job, bye, 0, &res);
    assert_string_equal(res.detail,
                        "Too many connections, throttled [ALERT] Account will be suspended");
    expect_events(&res, "login\n", IMAP_OUT_THROTTLED);
    /* [THROTTLED] on a SELECT: LOGOUT, then over */
    static const step no[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1", "K3 LIST \"\" \"*\"\r\n"),
        {FEED, "* LIST () \"/\" INBOX\r\nK3 OK done\r\n", "K4 SELECT INBOX\r\n", 0},
        {FEED, "K4 NO [THROTTLED] Slow down\r\n", "K5 LOGOUT\r\n", 0},
        {FEED, BYE_OK("K5"), NULL, 0},
    };
    RUN(&job, no, 0, &res);
    expect_events(&res, "login\n", IMAP_OUT_THROTTLED);
    /* Outlook's churn at the login */
    static const step churn[] = {
        {FEED, GREETING, "K1 LOGIN anna s3cret\r\n", 0},
        {FEED, "K1 NO User is authenticated but not connected.\r\n", "K2 LOGOUT\r\n", 0},
        {FEED, "K2 OK bye\r\n", NULL, 0},
    };
    RUN(&job, churn, 0, &res);
    expect_events(&res, "", IMAP_OUT_THROTTLED);
    /* a protocol violation closes at once */
    static const step bad[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1", "K3 LIST \"\" \"*\"\r\n"),
        {FEED, "K9 OK not yours\r\n", NULL, 0},
    };
    RUN(&job, bad, 0, &res);
    expect_events(&res, "login\n", IMAP_OUT_PROTOCOL);
    /* the connection drops mid-work */
    static const step drop[] = {
        LOGIN_STEPS,
        CAPS_STEP("IMAP4rev1", "K3 LIST \"\" \"*\"\r\n"),
        {CLOSE, NULL, NULL, 0},
    };
    RUN(&job, drop, 0, &res);
    expect_events(&res, "login\n", IMAP_OUT_UNAVAILABLE);
}

static void test_msgid_shape_and_bad_jobs(void **state)
{
    (void)state;
    assert_true(imap_inbox_msgid_shape_ok(ID1, strlen(ID1)));
    assert_true(imap_inbox_msgid_shape_ok(ID2, strlen(ID2)));
    static const char *const no[] = {"<9001.10123456789abcdef01234567@acme.test",
                                     "9001.10123456789abcdef01234567@acme.test>",
                                     "<9001.1012345678@acme.test>",
                                     "<9001.10123456789ABCDEF01234567@acme.test>",
                                     "<x9001.10123456789abcdef01234567@a.test>",
                                     "<9001.10123456789abcdef01234567@>",
                                     "<9001.10123456789abcdef01234567@a..test>",
                                     "<customer@mail.example>",
                                     "<12345678901234567890.10123456789abcdef0@a.test>"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (imap_inbox_msgid_shape_ok(no[i], strlen(no[i])))
            fail_msg("shape accepted %s", no[i]);
    imap_inbox_job job = {.warmup_folder = "bad\xff"};
    assert_null(imap_inbox_new(&params, &job, NULL, NULL));
    static const imap_inbox_action mark_nothing = {
        .id = 1, .kind = IMAP_ACT_MARK, .folder = "INBOX", .uidvalidity = 1, .uid = 1};
    imap_inbox_job job2 = {.actions = &mark_nothing, .nactions = 1};
    assert_null(imap_inbox_new(&params, &job2, NULL, NULL));
    imap_inbox_job job3 = {0};
    imap_inbox *ib = imap_inbox_new(&params, &job3, NULL, NULL);
    assert_int_equal(imap_inbox_add_action(ib, &rescue11), 0);
    assert_int_equal(imap_inbox_add_action(ib, &rescue11), -EEXIST);
    assert_int_equal(imap_inbox_next_tick_ms(ib), INT64_MAX);
    /* A known action handed again due earlier (the control plane's clock moved) takes
     * the earlier time; a later or equal one changes nothing. */
    imap_inbox_action later = rescue11;
    later.id = 32;
    later.not_before_ms = 600000;
    assert_int_equal(imap_inbox_add_action(ib, &later), 0);
    later.not_before_ms = 900000;
    assert_int_equal(imap_inbox_add_action(ib, &later), -EEXIST);
    later.not_before_ms = 1000;
    assert_int_equal(imap_inbox_add_action(ib, &later), 0);
    assert_int_equal(imap_inbox_add_action(ib, &later), -EEXIST);
    assert_int_equal(ib->acts[1].a.id, 32);
    assert_int_equal(ib->acts[1].a.not_before_ms, 1000);
    imap_inbox_free(ib);
}

/* The greeting has its own timeout (the inbox engine's KILN_AGENT_IMAP_TIMEOUT_GREETING_MS),
 * a phase id of its own, and the commands after it the job's command_ms. */
static void test_greeting_waits_greeting_ms_then_commands_command_ms(void **state)
{
    (void)state;
    imap_inbox_job job = {.command_ms = 4000, .greeting_ms = 700};
    imap_inbox *ib = imap_inbox_new(&params, &job, NULL, NULL);
    net_phase ph;
    imap_inbox_phase(ib, &ph);
    if (ph.timeout_ms != 700 || strcmp(ph.name, "greeting") != 0)
        fail_msg("before the greeting: expected 700 ms in phase greeting, got %lld ms in %s",
                 (long long)ph.timeout_ms, ph.name);
    int greeting_id = ph.id;
    imap_inbox_feed(ib, GREETING, strlen(GREETING), 0);
    imap_inbox_phase(ib, &ph);
    if (ph.timeout_ms != 4000 || ph.id == greeting_id)
        fail_msg("after the greeting (LOGIN out): expected 4000 ms in a new phase, got %lld ms "
                 "in %s (id %d, greeting's %d)",
                 (long long)ph.timeout_ms, ph.name, ph.id, greeting_id);
    imap_inbox_free(ib);
    /* no greeting_ms in the job: IMAP_INBOX_GREETING_MS, whatever command_ms is */
    imap_inbox_job plain = {.command_ms = 4000};
    ib = imap_inbox_new(&params, &plain, NULL, NULL);
    imap_inbox_phase(ib, &ph);
    assert_int_equal(ph.timeout_ms, IMAP_INBOX_GREETING_MS);
    imap_inbox_free(ib);
}

static void test_internaldate_to_utc(void **state)
{
    (void)state;
    static const char *const ok[][2] = {
        {"03-Dec-2026 03:00:00 +0000", "2026-12-03T03:00:00Z"},
        {" 1-Jan-2027 00:30:00 +0100", "2026-12-31T23:30:00Z"},
        {"29-feb-2024 23:59:59 -0130", "2024-03-01T01:29:59Z"},
        {"31-Dec-1969 23:00:00 -0200", "1970-01-01T01:00:00Z"},
    };
    char out[24];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_true(ib_internaldate_iso(ok[i][0], strlen(ok[i][0]), out));
        assert_string_equal(out, ok[i][1]);
    }
    static const char *const bad[] = {"03-Foo-2026 03:00:00 +0000",
                                      "03-Dec-2026 03:00:00",
                                      "32-Dec-2026 03:00:00 +0000",
                                      "03-Dec-2026 24:00:00 +0000",
                                      "03-Dec-2026 03:00:00 +0000x",
                                      "03-Dec-26 03:00:00 +0000",
                                      "",
                                      "03-Dec-2026 03:00:00 *0000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (ib_internaldate_iso(bad[i], strlen(bad[i]), out))
            fail_msg("accepted %s as %s", bad[i], out);
}

/* The checker the dialogues and the fuzz target rely on must catch what it is for. */
static void test_checker_catches_sequence_number_commands(void **state)
{
    (void)state;
    static const char *const bad[] = {"K5 STORE 1 +FLAGS (\\Deleted)\r\n",
                                      "K5 EXPUNGE\r\n",
                                      "K5 UID EXPUNGE 1:*\r\n",
                                      "K5 COPY 1 INBOX\r\n",
                                      "K5 MOVE 1:3 Junk\r\n",
                                      "K5 FETCH 1 (FLAGS)\r\n",
                                      "K5 UID STORE * +FLAGS (\\Seen)\r\n",
                                      "K1 LOGIN {4+}\r\nanna pw\r\nK2 EXPUNGE\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!ib_check_client_bytes(bad[i], strlen(bad[i])))
            fail_msg("not caught: %s", bad[i]);
    static const char *const good[] = {
        "K5 UID STORE 3 +FLAGS.SILENT (\\Deleted)\r\nK6 UID EXPUNGE 3\r\n",
        "K1 LOGIN {11+}\r\nK2 EXPUNGE pw\r\nDONE\r\nK3 UID FETCH 5:* (UID)\r\n"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (ib_check_client_bytes(good[i], strlen(good[i])))
            fail_msg("refused: %s", good[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finds_kiln_mail_in_inbox_and_junk),
        cmocka_unit_test(test_greeting_waits_greeting_ms_then_commands_command_ms),
        cmocka_unit_test(test_find_dialogue_in_every_split),
        cmocka_unit_test(test_stored_roles_skip_namespace_and_list),
        cmocka_unit_test(test_stored_junk_gone_lists_again),
        cmocka_unit_test(test_uidvalidity_change_resyncs_the_folder),
        cmocka_unit_test(test_never_watched_and_no_special_use),
        cmocka_unit_test(test_large_folder_is_fetched_in_batches),
        cmocka_unit_test(test_a_gap_in_uids_ends_the_batch_walk),
        cmocka_unit_test(test_rescue_with_move_takes_the_untagged_copyuid),
        cmocka_unit_test(test_rescue_without_move_copies_and_expunges_by_uid),
        cmocka_unit_test(test_neither_move_nor_uidplus_is_refused),
        cmocka_unit_test(test_move_without_uidplus_counts_only_its_own_expunge),
        cmocka_unit_test(test_mark_prune_gone_and_stale),
        cmocka_unit_test(test_rediscovery_after_a_crash_and_following_a_move),
        cmocka_unit_test(test_file_creates_the_warmup_folder_utf7),
        cmocka_unit_test(test_copyuid_only_from_the_move_itself),
        cmocka_unit_test(test_a_bare_fetch_does_not_move_the_last_uid),
        cmocka_unit_test(test_cleanup_probe_and_refusals),
        cmocka_unit_test(test_idle_wake_done_refresh_and_stop),
        cmocka_unit_test(test_mail_before_idle_wakes_at_once),
        cmocka_unit_test(test_pipeline_status_skips_unchanged_folders),
        cmocka_unit_test(test_pipeline_first_visit),
        cmocka_unit_test(test_pipeline_idle_and_throttle),
        cmocka_unit_test(test_list_status_first_visit),
        cmocka_unit_test(test_caps_hint_lists_behind_the_login),
        cmocka_unit_test(test_keep_visits_on_the_same_connection),
        cmocka_unit_test(test_throttled_bye_and_alert),
        cmocka_unit_test(test_msgid_shape_and_bad_jobs),
        cmocka_unit_test(test_checker_catches_sequence_number_commands),
        cmocka_unit_test(test_internaldate_to_utc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
