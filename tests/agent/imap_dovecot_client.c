/* Test client for imap_dovecot.sh: speaks IMAP to a real Dovecot through the protocol
 * core (imap_cmd builds every command, imap_resp parses every byte received) over a
 * plain blocking socket, which test code may use. It checks what a user would check:
 * the Message-IDs delivered are the ones found, a folder with a non-ASCII name is
 * created and listed back, a moved message's new UID (COPYUID) holds it in the target.
 *   imap_dovecot_client PORT USER PASSWORD TRANSCRIPT MESSAGE-ID...
 * Every byte received is written to TRANSCRIPT (the fuzz corpus seed). */
#include "imap_cmd.h"
#include "imap_resp.h"
#include "imap_session.h"
#include "imap_utf7.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_MSGS 64

static int sock = -1;
static FILE *transcript;
static imap_resp_parser parser;
static imap_cmdgen gen;
static char inbuf[65536];
static size_t in_off, in_len;

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

/* The next complete response (bytes read from the socket as needed). */
static const imap_resp *next_resp(void)
{
    for (;;) {
        if (in_off < in_len) {
            size_t used = 0;
            const imap_resp *r = NULL;
            int rc = imap_resp_feed(&parser, inbuf + in_off, in_len - in_off, &used, &r);
            in_off += used;
            if (rc == IMAP_RESP_ERROR)
                die("parser error: %s", parser.error);
            if (rc == IMAP_RESP_DONE)
                return r;
        }
        ssize_t n = read(sock, inbuf, sizeof inbuf);
        if (n <= 0)
            die("connection closed by the server%s", "");
        fwrite(inbuf, 1, (size_t)n, transcript);
        in_off = 0;
        in_len = (size_t)n;
    }
}

static void send_all(const buf *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(sock, b->data + off, b->len - off);
        if (n <= 0)
            die("write failed%s", "");
        off += (size_t)n;
    }
}

typedef void (*on_untagged)(const imap_resp *r, void *ctx);

/* Sends c (waiting for "+" at each synchronising literal), hands every untagged
 * response to fn, and returns the status of c's tagged answer. */
static int run(imap_cmd *c, on_untagged fn, void *ctx)
{
    buf out = BUF_INIT;
    int more = imap_cmd_take(c, &out);
    send_all(&out);
    for (;;) {
        const imap_resp *r = next_resp();
        if (r->kind == IMAP_RESP_CONTINUE) {
            if (more != IMAP_CMD_WAIT)
                die("unexpected continuation%s", "");
            buf_reset(&out);
            more = imap_cmd_take(c, &out);
            send_all(&out);
            continue;
        }
        if (r->kind == IMAP_RESP_TAGGED) {
            if (strcmp(r->tag, c->tag))
                die("tagged answer for another command: %s", r->tag);
            if (r->caps)
                gen.caps = r->caps;
            buf_free(&out);
            return r->status;
        }
        if (r->status == IMAP_STATUS_BYE && fn == NULL)
            continue;
        if (r->data == IMAP_DATA_CAPABILITY)
            gen.caps = r->caps;
        if (fn)
            fn(r, ctx);
    }
}

static void expect_ok(imap_cmd *c, on_untagged fn, void *ctx, const char *what)
{
    if (run(c, fn, ctx) != IMAP_STATUS_OK)
        die("%s was not answered OK", what);
}

/* ---- collectors ---- */

typedef struct folders {
    char junk[256];
    char names[32][256];
    int n;
} folders;

static void on_list(const imap_resp *r, void *ctx)
{
    folders *f = ctx;
    if (r->data != IMAP_DATA_LIST || f->n >= 32 || r->list.mailbox_len >= 256)
        return;
    memcpy(f->names[f->n], r->list.mailbox, r->list.mailbox_len);
    f->names[f->n][r->list.mailbox_len] = '\0';
    if (r->list.flags & IMAP_MB_JUNK)
        memcpy(f->junk, f->names[f->n], r->list.mailbox_len + 1);
    f->n++;
}

typedef struct selected {
    uint32_t uidvalidity, exists;
    bool have_uidvalidity;
} selected;

static void on_select(const imap_resp *r, void *ctx)
{
    selected *s = ctx;
    if (r->code.code == IMAP_CODE_UIDVALIDITY) {
        s->uidvalidity = r->code.number;
        s->have_uidvalidity = true;
    }
    if (r->data == IMAP_DATA_EXISTS)
        s->exists = r->number;
}

typedef struct fetched {
    uint32_t uid[MAX_MSGS];
    char msgid[MAX_MSGS][256];
    int n;
} fetched;

/* "Message-ID: <x@y>\r\n\r\n" -> "<x@y>" */
static void on_fetch(const imap_resp *r, void *ctx)
{
    fetched *f = ctx;
    if (r->data != IMAP_DATA_FETCH || f->n >= MAX_MSGS || !r->fetch.have_uid || !r->fetch.body)
        return;
    const char *lt = memchr(r->fetch.body, '<', r->fetch.body_len);
    const char *gt = lt ? memchr(lt, '>', r->fetch.body_len - (size_t)(lt - r->fetch.body)) : NULL;
    if (!gt || gt - lt + 1 >= 256)
        die("FETCH without a Message-ID header: %s", r->fetch.body);
    f->uid[f->n] = r->fetch.uid;
    memcpy(f->msgid[f->n], lt, (size_t)(gt - lt + 1));
    f->msgid[f->n][gt - lt + 1] = '\0';
    f->n++;
}

typedef struct moved {
    uint32_t uidvalidity, src, dst;
    bool have;
    int expunges;
} moved;

static void on_move(const imap_resp *r, void *ctx)
{
    moved *m = ctx;
    if (r->status == IMAP_STATUS_OK && r->code.code == IMAP_CODE_COPYUID) {
        uint32_t s[2], d[2];
        if (imap_uidset_parse(r->code.src_uids, strlen(r->code.src_uids), s, 2) != 1 ||
            imap_uidset_parse(r->code.dst_uids, strlen(r->code.dst_uids), d, 2) != 1)
            die("COPYUID does not name one message: %s", r->code.args);
        m->uidvalidity = r->code.number;
        m->src = s[0];
        m->dst = d[0];
        m->have = true;
    }
    if (r->data == IMAP_DATA_EXPUNGE)
        m->expunges++;
}

/* ---- the session skeleton (imap_session) on its own connection ---- */

static int connect_port(const char *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("cannot connect to port %s", port);
    return fd;
}

/* Logs in with imap_session, logs out once ready; returns the outcome, *caps the
 * capabilities it read after login. */
static int session_login(const char *port, const char *user, const char *password, unsigned *caps)
{
    int fd = connect_port(port);
    imap_session_params p = {.security = IMAP_SEC_PLAIN,
                             .username = user,
                             .password = password,
                             .allow_plaintext_auth = true};
    imap_session s;
    imap_session_init(&s, &p);
    char b[4096];
    while (s.state != IMAP_S_DONE) {
        ssize_t n = read(fd, b, sizeof b);
        if (n <= 0) {
            imap_session_eof(&s);
            break;
        }
        int ev = imap_session_feed(&s, b, (size_t)n);
        if (ev & IMAP_EV_READY) {
            *caps = s.caps;
            ev |= imap_session_logout(&s);
        }
        buf *out = imap_session_output(&s);
        size_t off = 0;
        while (off < out->len) {
            ssize_t w = write(fd, out->data + off, out->len - off);
            if (w <= 0)
                die("write failed%s", "");
            off += (size_t)w;
        }
        buf_reset(out);
    }
    int outcome = s.outcome;
    imap_session_clear(&s);
    close(fd);
    return outcome;
}

/* ---- the session ---- */

static const char *const header_fields[] = {"MESSAGE-ID"};

static void fetch_all(imap_cmd *c, fetched *f, const char *set)
{
    memset(f, 0, sizeof *f);
    if (imap_cmd_uid_fetch(&gen, c, set, IMAP_FETCH_FLAGS, header_fields, 1) < 0)
        die("building UID FETCH%s", "");
    expect_ok(c, on_fetch, f, "UID FETCH");
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s PORT USER PASSWORD TRANSCRIPT MESSAGE-ID...\n", argv[0]);
        return 2;
    }
    int nwant = argc - 5;
    unsigned caps = 0;
    if (session_login(argv[1], argv[2], argv[3], &caps) != IMAP_OUT_OK || !(caps & IMAP_CAP_MOVE))
        die("imap_session did not log in and out with MOVE read after login%s", "");
    if (session_login(argv[1], argv[2], "wrong password", &caps) != IMAP_OUT_AUTH)
        die("imap_session: a wrong password did not end in outcome auth%s", "");
    printf("ok - imap_session: login, capabilities after login, logout; wrong password: auth\n");
    transcript = fopen(argv[4], "wb");
    if (!transcript)
        die("cannot write %s", argv[4]);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    sock = socket(AF_INET, SOCK_STREAM, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("cannot connect to port %s", argv[1]);
    imap_resp_parser_init(&parser, NULL);
    imap_cmdgen_init(&gen);
    imap_cmd c;
    imap_cmd_init(&c);

    const imap_resp *greeting = next_resp();
    if (greeting->kind != IMAP_RESP_UNTAGGED || greeting->status != IMAP_STATUS_OK)
        die("no OK greeting%s", "");
    imap_cmd_capability(&gen, &c);
    expect_ok(&c, NULL, NULL, "CAPABILITY");
    if (!(gen.caps & IMAP_CAP_IMAP4REV1) || (gen.caps & IMAP_CAP_MOVE))
        die("capabilities before login: want IMAP4rev1 and no MOVE%s", "");
    printf("ok - CAPABILITY before login (no MOVE)\n");

    if (imap_cmd_login(&gen, &c, argv[2], argv[3]) < 0)
        die("building LOGIN%s", "");
    expect_ok(&c, NULL, NULL, "LOGIN");
    gen.caps = 0;
    imap_cmd_capability(&gen, &c);
    expect_ok(&c, NULL, NULL, "CAPABILITY");
    unsigned need = IMAP_CAP_MOVE | IMAP_CAP_UIDPLUS | IMAP_CAP_SPECIAL_USE | IMAP_CAP_IDLE;
    if ((gen.caps & need) != need)
        die("capabilities after login lack MOVE/UIDPLUS/SPECIAL-USE/IDLE%s", "");
    printf("ok - LOGIN, CAPABILITY again: MOVE UIDPLUS SPECIAL-USE IDLE\n");

    folders fl = {{0}, {{0}}, 0};
    imap_cmd_list(&gen, &c, IMAP_LIST_RET_SPECIAL_USE);
    expect_ok(&c, on_list, &fl, "LIST");
    if (strcmp(fl.junk, "Junk"))
        die("LIST RETURN (SPECIAL-USE) named no \\Junk folder \"Junk\" (got \"%s\")", fl.junk);
    printf("ok - LIST RETURN (SPECIAL-USE): \\Junk is %s (%d folders)\n", fl.junk, fl.n);

    selected sel = {0, 0, false};
    imap_cmd_select(&gen, &c, "INBOX", 5, false);
    expect_ok(&c, on_select, &sel, "SELECT INBOX");
    if (!sel.have_uidvalidity || sel.exists != (uint32_t)nwant)
        die("SELECT INBOX: no UIDVALIDITY or a wrong EXISTS%s", "");
    printf("ok - SELECT INBOX: UIDVALIDITY %u, %u messages\n", sel.uidvalidity, sel.exists);

    fetched f;
    fetch_all(&c, &f, "1:*");
    if (f.n != nwant)
        die("UID FETCH 1:* found a different number of messages%s", "");
    for (int i = 0; i < nwant; i++) {
        bool found = false;
        for (int k = 0; k < f.n; k++)
            found = found || !strcmp(f.msgid[k], argv[5 + i]);
        if (!found)
            die("delivered Message-ID %s not found", argv[5 + i]);
    }
    printf("ok - UID FETCH 1:*: the %d delivered Message-IDs, each with its UID\n", f.n);

    const char *utf8_name = "Warm-up ✓ Entwürfe";
    buf wire = BUF_INIT, back = BUF_INIT;
    if (imap_utf7_encode(utf8_name, strlen(utf8_name), &wire) < 0)
        die("encoding the folder name%s", "");
    imap_cmd_create(&gen, &c, wire.data, wire.len);
    expect_ok(&c, NULL, NULL, "CREATE");
    memset(&fl, 0, sizeof fl);
    imap_cmd_list(&gen, &c, IMAP_LIST_RET_SPECIAL_USE);
    expect_ok(&c, on_list, &fl, "LIST");
    bool listed = false;
    for (int i = 0; i < fl.n; i++) {
        buf_reset(&back);
        if (imap_utf7_decode(fl.names[i], strlen(fl.names[i]), &back) < 0)
            die("LIST gave a name that does not decode: %s", fl.names[i]);
        listed = listed || (back.data && !strcmp(back.data, utf8_name));
    }
    if (!listed)
        die("the created folder is not listed back (%s)", wire.data);
    printf("ok - CREATE %s (%s), listed back and decoded\n", wire.data, utf8_name);

    /* move the message of the first Message-ID given */
    uint32_t src = 0;
    for (int k = 0; k < f.n; k++)
        if (!strcmp(f.msgid[k], argv[5]))
            src = f.uid[k];
    buf set = BUF_INIT;
    imap_uidset_build(&set, &src, 1);
    moved mv = {0, 0, 0, false, 0};
    imap_cmd_uid_move(&gen, &c, set.data, wire.data, wire.len);
    expect_ok(&c, on_move, &mv, "UID MOVE");
    if (!mv.have || mv.src != src || mv.expunges != 1)
        die("UID MOVE gave no COPYUID for the uid, or not one EXPUNGE%s", "");
    printf("ok - UID MOVE %u: COPYUID %u %u %u, one EXPUNGE\n", src, mv.uidvalidity, mv.src,
           mv.dst);

    selected tsel = {0, 0, false};
    imap_cmd_select(&gen, &c, wire.data, wire.len, true);
    expect_ok(&c, on_select, &tsel, "EXAMINE target");
    if (tsel.uidvalidity != mv.uidvalidity)
        die("the target's UIDVALIDITY is not COPYUID's%s", "");
    buf_reset(&set);
    imap_uidset_build(&set, &mv.dst, 1);
    fetch_all(&c, &f, set.data);
    if (f.n != 1 || f.uid[0] != mv.dst || strcmp(f.msgid[0], argv[5]))
        die("the new UID does not hold the moved message %s", argv[5]);
    printf("ok - the target folder holds %s at UID %u\n", argv[5], mv.dst);

    imap_cmd_select(&gen, &c, "INBOX", 5, true);
    expect_ok(&c, NULL, NULL, "EXAMINE INBOX");
    fetch_all(&c, &f, "1:*");
    for (int k = 0; k < f.n; k++)
        if (!strcmp(f.msgid[k], argv[5]))
            die("the moved message is still in INBOX%s", "");
    if (f.n != nwant - 1)
        die("INBOX lost more than the moved message%s", "");
    printf("ok - INBOX no longer holds it (%d left)\n", f.n);

    imap_cmd_logout(&gen, &c);
    expect_ok(&c, NULL, NULL, "LOGOUT");
    printf("ok - LOGOUT\n");
    buf_free(&wire);
    buf_free(&back);
    buf_free(&set);
    imap_cmd_free(&c);
    imap_resp_parser_free(&parser);
    close(sock);
    fclose(transcript);
    return 0;
}
