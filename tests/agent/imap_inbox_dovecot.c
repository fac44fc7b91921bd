/* Test driver for imap_dovecot.sh: the inbox session (imap_inbox) against a real
 * Dovecot over a plain blocking socket (test code may use one), with messages
 * delivered over LMTP while it runs. Visits, each a new connection:
 *   1. never watched: only folder states, nothing old reported
 *   2. two kiln messages delivered since: both found in INBOX, resumed from visit 1
 *   3. actions: file (creates the UTF-8 warmup folder, UID MOVE, COPYUID), mark
 *      (confirmed), prune of a missing UID (gone), a wrong UIDVALIDITY (stale); then
 *      IDLE: a message delivered while idling wakes it and is found within 2 s
 *   4. a crash between visit 3's move and its report: the same file action with the
 *      states of visit 2 is reported done with the moved UID, and no UID MOVE is sent
 *   imap_inbox_dovecot IMAP_PORT LMTP_PORT USER PASSWORD */
#include "imap_inbox.h"
#include "imap_inbox_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ID_A "<9001.10123456789abcdef01234567@acme.test>"
#define ID_B "<9002.10123456789abcdef01234567@acme.test>"
#define ID_C "<9003.10123456789abcdef01234567@acme.test>"

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect to port %d", port);
    return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t k = write(fd, s + off, n - off);
        if (k <= 0)
            die("write failed");
        off += (size_t)k;
    }
}

/* Reads an LMTP/SMTP reply up to its last line; dies unless it starts with want. */
static void lmtp_expect(int fd, const char *want)
{
    char line[1024];
    size_t k = 0;
    for (;;) {
        char c;
        if (read(fd, &c, 1) != 1)
            die("LMTP closed");
        if (k + 1 < sizeof line)
            line[k++] = c;
        if (c != '\n')
            continue;
        line[k] = '\0';
        if (strncmp(line, want, 3) != 0)
            die("LMTP: expected %s, got %s", want, line);
        if (k > 3 && line[3] == ' ')
            return;
        k = 0;
    }
}

static void deliver(int lmtp_port, const char *user, const char *message_id)
{
    int fd = connect_port(lmtp_port);
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "From: Bob <bob@other.test>\r\nTo: %s\r\nSubject: warm\r\n"
                     "Message-ID: %s\r\nAuthentication-Results: mx.acme.test; spf=pass\r\n"
                     "\r\nhello\r\n.\r\n",
                     user, message_id);
    char rcpt[256];
    int m = snprintf(rcpt, sizeof rcpt, "RCPT TO:<%s>\r\n", user);
    lmtp_expect(fd, "220");
    send_all(fd, "LHLO test\r\n", 11);
    lmtp_expect(fd, "250");
    send_all(fd, "MAIL FROM:<bob@other.test>\r\n", 28);
    lmtp_expect(fd, "250");
    send_all(fd, rcpt, (size_t)m);
    lmtp_expect(fd, "250");
    send_all(fd, "DATA\r\n", 6);
    lmtp_expect(fd, "354");
    send_all(fd, msg, (size_t)n);
    lmtp_expect(fd, "250");
    send_all(fd, "QUIT\r\n", 6);
    close(fd);
}

/* What a visit saw. */
typedef struct visit {
    buf log; /* every event, one line each (imap_inbox_test_util.h) */
    imap_inbox_folder states[8];
    char names[8][64];
    size_t nstates;
    uint32_t found_uid[8];
    char found_id[8][80];
    char found_folder[8][64];
    size_t nfound;
    bool wake;
    int64_t found_c_ms;
} visit;

static void on_event(void *ctx, const imap_inbox_event *ev)
{
    visit *v = ctx;
    ib_dump_event(&v->log, ev);
    if (ev->type == IMAP_INBOX_EV_FOLDER_STATE) {
        size_t i = 0;
        while (i < v->nstates && strcmp(v->names[i], ev->folder) != 0)
            i++;
        if (i == 8)
            die("too many folders");
        snprintf(v->names[i], sizeof v->names[i], "%s", ev->folder);
        v->states[i] = (imap_inbox_folder){v->names[i], ev->role, ev->uidvalidity, ev->last_uid};
        v->nstates += i == v->nstates;
    } else if (ev->type == IMAP_INBOX_EV_FOUND && v->nfound < 8) {
        v->found_uid[v->nfound] = ev->uid;
        snprintf(v->found_id[v->nfound], 80, "%s", ev->message_id);
        snprintf(v->found_folder[v->nfound++], 64, "%s", ev->folder);
        if (strcmp(ev->message_id, ID_C) == 0)
            v->found_c_ms = now_ms();
    } else if (ev->type == IMAP_INBOX_EV_WAKE) {
        v->wake = true;
    }
}

typedef struct env {
    int imap_port, lmtp_port;
    const char *user;
    imap_session_params params;
} env;

/* One connection with job; while idling delivers ID_C once (when idle_deliver) and
 * stops once it is found. Returns the sent bytes in sent. */
static void run_visit(const env *e, const imap_inbox_job *job, visit *v, bool idle_deliver,
                      buf *sent, int64_t *delivered_ms)
{
    memset(v, 0, sizeof *v);
    buf_init(&v->log);
    imap_inbox *ib = imap_inbox_new(&e->params, job, on_event, v);
    if (!ib)
        die("imap_inbox_new refused the job");
    int fd = connect_port(e->imap_port);
    int64_t deadline = now_ms() + 20000;
    bool delivered = false, stopped = false;
    while (imap_inbox_state(ib) != IMAP_IB_DONE) {
        buf *out = imap_inbox_output(ib);
        if (out->len) {
            send_all(fd, out->data, out->len);
            buf_append(sent, out->data, out->len);
            buf_reset(out);
        }
        if (now_ms() > deadline)
            die("visit did not end within 20 s; events:\n%s", v->log.data);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) > 0) {
            char in[16384];
            ssize_t n = read(fd, in, sizeof in);
            if (n <= 0)
                imap_inbox_eof(ib);
            else
                imap_inbox_feed(ib, in, (size_t)n, now_ms());
        }
        if (v->wake) {
            v->wake = false;
            imap_inbox_wake(ib, now_ms());
        }
        if (idle_deliver && !delivered && imap_inbox_state(ib) == IMAP_IB_IDLING) {
            deliver(e->lmtp_port, e->user, ID_C);
            *delivered_ms = now_ms();
            delivered = true;
        }
        if (!stopped && (!idle_deliver || v->found_c_ms) &&
            imap_inbox_state(ib) == IMAP_IB_IDLING) {
            imap_inbox_stop(ib, now_ms());
            stopped = true;
        }
        imap_inbox_tick(ib, now_ms());
    }
    if (imap_inbox_outcome(ib) != IMAP_OUT_OK)
        die("visit ended %s (%s); events:\n%s", imap_outcome_name(imap_inbox_outcome(ib)),
            imap_inbox_detail(ib), v->log.data);
    const char *why = ib_check_client_bytes(sent->data, sent->len);
    if (why)
        die("%s", why);
    close(fd);
    imap_inbox_free(ib);
    printf("--- visit\n%s", v->log.data);
}

static const imap_inbox_folder *state_of(const visit *v, const char *name)
{
    for (size_t i = 0; i < v->nstates; i++)
        if (strcmp(v->states[i].name, name) == 0)
            return &v->states[i];
    die("no state for %s", name);
}

static uint32_t found(const visit *v, const char *folder, const char *id)
{
    for (size_t i = 0; i < v->nfound; i++)
        if (strcmp(v->found_id[i], id) == 0 && strcmp(v->found_folder[i], folder) == 0)
            return v->found_uid[i];
    die("%s not found in %s; events:\n%s", id, folder, v->log.data);
}

static void expect_line(const visit *v, const char *line)
{
    if (!strstr(v->log.data, line))
        die("expected event line [%s]; events:\n%s", line, v->log.data);
}

int main(int argc, char **argv)
{
    if (argc != 5)
        die("usage: imap_inbox_dovecot IMAP_PORT LMTP_PORT USER PASSWORD");
    env e = {.imap_port = atoi(argv[1]),
             .lmtp_port = atoi(argv[2]),
             .user = argv[3],
             .params = {.security = IMAP_SEC_PLAIN,
                        .username = argv[3],
                        .password = argv[4],
                        .allow_plaintext_auth = true}};
    buf sent = BUF_INIT;
    int64_t t_c = 0;

    /* 1: never watched */
    visit v1, v2, v3, v4;
    imap_inbox_job job = {0};
    run_visit(&e, &job, &v1, false, &sent, &t_c);
    if (v1.nfound)
        die("a never-watched inbox reported old mail");
    const imap_inbox_folder *in1 = state_of(&v1, "INBOX");
    state_of(&v1, "Junk");

    /* 2: resumed from visit 1, the two new kiln messages found */
    deliver(e.lmtp_port, e.user, ID_A);
    deliver(e.lmtp_port, e.user, ID_B);
    job.folders = v1.states;
    job.nfolders = v1.nstates;
    run_visit(&e, &job, &v2, false, &sent, &t_c);
    uint32_t ua = found(&v2, "INBOX", ID_A), ub = found(&v2, "INBOX", ID_B);
    if (ua <= in1->last_uid || ub <= ua)
        die("new UIDs %u, %u not past %u", ua, ub, in1->last_uid);
    expect_line(&v2, "ar=mx.acme.test; spf=pass");
    expect_line(&v2, " date=2"); /* INTERNALDATE, as ISO 8601 UTC */
    uint32_t v_in = state_of(&v2, "INBOX")->uidvalidity;

    /* 3: actions, then IDLE */
    static const char *const seen_flagged[] = {"\\Seen", "\\Flagged"};
    imap_inbox_action acts[] = {
        {.id = 1,
         .kind = IMAP_ACT_FILE,
         .folder = "INBOX",
         .uidvalidity = v_in,
         .uid = ua,
         .message_id = ID_A},
        {.id = 2,
         .kind = IMAP_ACT_MARK,
         .folder = "INBOX",
         .uidvalidity = v_in,
         .uid = ub,
         .flags = seen_flagged,
         .nflags = 2},
        {.id = 3, .kind = IMAP_ACT_PRUNE, .folder = "INBOX", .uidvalidity = v_in, .uid = 999999},
        {.id = 4, .kind = IMAP_ACT_PRUNE, .folder = "INBOX", .uidvalidity = v_in + 1, .uid = ub},
    };
    imap_inbox_job job3 = {.folders = v2.states,
                           .nfolders = v2.nstates,
                           .actions = acts,
                           .nactions = 4,
                           .warmup_folder = "W\xc3\xa4rme \xe2\x9c\x93",
                           .want_idle = true};
    run_visit(&e, &job3, &v3, true, &sent, &t_c);
    char line[160];
    expect_line(&v3, "action 1 done W&AOQ-rme &JxM- warmup ");
    snprintf(line, sizeof line, "action 2 done INBOX inbox %u/%u flags=[", v_in, ub);
    expect_line(&v3, line);
    expect_line(&v3, "\\Seen");
    expect_line(&v3, "\\Flagged");
    expect_line(&v3, "action 3 gone");
    expect_line(&v3, "action 4 stale");
    expect_line(&v3, "wake INBOX");
    found(&v3, "INBOX", ID_C);
    if (v3.found_c_ms - t_c > 2000)
        die("IDLE found the new message after %lld ms", (long long)(v3.found_c_ms - t_c));
    const char *moved = strstr(v3.log.data, "action 1 done W&AOQ-rme &JxM- warmup ");
    char moved_to[40];
    if (sscanf(moved + strlen("action 1 done W&AOQ-rme &JxM- warmup "), "%39s", moved_to) != 1)
        die("no uid in the file outcome");

    /* 4: the report of visit 3's move was lost: resume from visit 2's states */
    buf sent4 = BUF_INIT;
    imap_inbox_job job4 = {.folders = v2.states,
                           .nfolders = v2.nstates,
                           .actions = acts,
                           .nactions = 1,
                           .warmup_folder = "W\xc3\xa4rme \xe2\x9c\x93"};
    run_visit(&e, &job4, &v4, false, &sent4, &t_c);
    snprintf(line, sizeof line,
             "action 1 done W&AOQ-rme &JxM- warmup %s (found in the target by its Message-ID)",
             moved_to);
    expect_line(&v4, line);
    if (strstr(sent4.data, "UID MOVE"))
        die("the message was moved twice:\n%s", sent4.data);
    buf_free(&sent);
    buf_free(&sent4);
    buf_free(&v1.log);
    buf_free(&v2.log);
    buf_free(&v3.log);
    buf_free(&v4.log);
    printf("PASS imap_inbox_dovecot\n");
    return 0;
}
