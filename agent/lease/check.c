/* kiln-agent check (see run.h): the configuration, the spool directory, the control
 * plane's reachability and the token, io_uring, and (when KILN_AGENT_CHECK_IMAP_HOST is
 * set) a login to one IMAP account, each in one plain line. It reads its configuration
 * as run does (agent_config_load_process): the file's engine and IMAP knobs included. */
#include "run.h"

#include "agent_config.h"
#include "control.h"
#include "engine.h"
#include "agent_wire.h"
#include "clock.h"
#include "config.h"
#include "inbox_engine.h"
#include "xalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* DNS and the scheduling around the login's own phases: check gives up this long after
 * the sum of their timeouts, should the engine not end the session itself. */
#define CHECK_IMAP_SLACK_MS 5000

static void say(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok:     " : "PROBLEM:");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* The session event of check's one login. */
struct imap_outcome {
    bool seen;
    int status;
    char detail[256];
};

static void on_imap_event(void *arg, const inbox_event *ev)
{
    struct imap_outcome *o = arg;
    if (ev->type != INBOX_EV_SESSION || o->seen)
        return;
    o->seen = true;
    o->status = ev->status;
    snprintf(o->detail, sizeof o->detail, "%s", ev->detail ? ev->detail : "");
}

static char *env_dup(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? xstrdup(v) : NULL;
}

/* The account of KILN_AGENT_CHECK_IMAP_*, or NULL with a reason in err (or none when
 * no IMAP account is configured: err empty). */
static inbox_spec *check_imap_spec(char *err, size_t errlen)
{
    err[0] = '\0';
    const char *host = getenv("KILN_AGENT_CHECK_IMAP_HOST");
    if (!host || !*host)
        return NULL;
    inbox_spec *s = xcalloc(1, sizeof *s);
    s->mailbox_id = 1;
    s->host = xstrdup(host);
    s->username = env_dup("KILN_AGENT_CHECK_IMAP_USER");
    s->password = env_dup("KILN_AGENT_CHECK_IMAP_PASSWORD");
    s->oauth_token = env_dup("KILN_AGENT_CHECK_IMAP_OAUTH_TOKEN");
    s->ca_file = env_dup("KILN_AGENT_CHECK_IMAP_CA_FILE");
    s->poll_class = INBOX_POLL_LOW;
    const char *sec = getenv("KILN_AGENT_CHECK_IMAP_SECURITY");
    if (!sec || !*sec || !strcmp(sec, "tls"))
        s->security = INBOX_SEC_TLS;
    else if (!strcmp(sec, "starttls"))
        s->security = INBOX_SEC_STARTTLS;
    else if (!strcmp(sec, "plain"))
        s->security = INBOX_SEC_PLAIN;
    else
        snprintf(err, errlen, "KILN_AGENT_CHECK_IMAP_SECURITY=%s: expected tls, starttls or plain",
                 sec);
    const char *port = getenv("KILN_AGENT_CHECK_IMAP_PORT");
    int64_t p = s->security == INBOX_SEC_TLS ? 993 : 143;
    if (!err[0] && port && *port && !parse_int(port, strlen(port), 1, 65535, &p))
        snprintf(err, errlen, "KILN_AGENT_CHECK_IMAP_PORT=%s: expected a port (1-65535)", port);
    s->port = (int)p;
    const char *plain = getenv("KILN_AGENT_CHECK_IMAP_ALLOW_PLAINTEXT_AUTH");
    s->allow_plaintext_auth = plain && !strcmp(plain, "1");
    if (!err[0] && !s->username)
        snprintf(err, errlen, "KILN_AGENT_CHECK_IMAP_USER is not set");
    if (!err[0] && !s->password && !s->oauth_token)
        snprintf(err, errlen,
                 "neither KILN_AGENT_CHECK_IMAP_PASSWORD nor KILN_AGENT_CHECK_IMAP_OAUTH_TOKEN "
                 "is set");
    if (err[0]) {
        inbox_spec_free(s);
        return NULL;
    }
    return s;
}

/* Logs in to the configured IMAP account and out again. Returns the problems (0/1). */
static int check_imap(void)
{
    char err[512];
    inbox_spec *s = check_imap_spec(err, sizeof err);
    if (!s) {
        if (!err[0])
            return 0;
        say(false, "IMAP check: %s", err);
        return 1;
    }
    char where[300];
    snprintf(where, sizeof where, "%s@%s:%d (%s)", s->username, s->host, s->port,
             s->security == INBOX_SEC_TLS        ? "tls"
             : s->security == INBOX_SEC_STARTTLS ? "starttls"
                                                 : "plain");
    /* the KILN_AGENT_IMAP_* knobs the inbox engine of run takes (timeouts, shaping) */
    inbox_engine_config cfg;
    inbox_engine_config_defaults(&cfg);
    if (inbox_engine_config_from_env(&cfg, err, sizeof err) < 0) {
        inbox_spec_free(s);
        say(false, "IMAP login to %s not tried: %s", where, err);
        return 1;
    }
    cfg.once = cfg.login_only = true;
    cfg.max_conns = 4;
    /* connect, TLS (implicit or STARTTLS), greeting, then CAPABILITY, STARTTLS, CAPABILITY,
     * the login, CAPABILITY and LOGOUT: each phase has its own timeout in the engine */
    int64_t wait_ms =
        cfg.connect_ms + cfg.tls_ms + cfg.greeting_ms + 6 * cfg.command_ms + CHECK_IMAP_SLACK_MS;
    struct imap_outcome o = {0};
    inbox_engine *e = inbox_engine_create(&cfg, on_imap_event, &o, err, sizeof err);
    if (!e) {
        inbox_spec_free(s);
        say(false, "IMAP login to %s: the inbox engine cannot start: %s", where, err);
        return 1;
    }
    inbox_engine_add(e, s);
    int64_t until = clock_mono_ms() + wait_ms;
    while (!inbox_engine_finished(e) && clock_mono_ms() < until) {
        struct timespec ts = {0, 20000000L};
        nanosleep(&ts, NULL);
    }
    inbox_engine_destroy(e); /* joins: o is final */
    if (o.seen && o.status == INBOX_SESSION_OK) {
        say(true, "IMAP login to %s works (logged in and out)", where);
        return 0;
    }
    if (!o.seen)
        say(false, "IMAP login to %s: no outcome within %lld ms", where, (long long)wait_ms);
    else
        say(false, "IMAP login to %s failed: %s%s%s", where, inbox_session_status_name(o.status),
            o.detail[0] ? ": " : "", o.detail);
    return 1;
}

int run_check(const char *config_path, bool config_required)
{
    agent_config cfg;
    char err[512];
    int problems = 0;
    /* the same configuration as run: the file's engine and IMAP knobs too */
    if (agent_config_load_process(&cfg, config_path, config_required, err, sizeof err) < 0) {
        say(false, "configuration: %s", err);
        return 1;
    }
    const char *token_from = cfg.token_file[0] ? cfg.token_file : "KILN_AGENT_TOKEN";
    say(true, "configuration read (%s%s), token from %s", config_path,
        access(config_path, R_OK) == 0 ? "" : ", absent: environment only", token_from);
    struct stat st;
    if (access(cfg.spool_dir, W_OK | X_OK) == 0)
        say(true, "spool directory %s is writable", cfg.spool_dir);
    else if (errno == ENOENT && stat(cfg.spool_dir, &st) < 0)
        say(true,
            "spool directory %s does not exist yet (the agent or systemd's StateDirectory "
            "creates it)",
            cfg.spool_dir);
    else {
        say(false, "spool directory %s: %s (the agent keeps unreported results there)",
            cfg.spool_dir, strerror(errno));
        problems++;
    }
    control_config cc = {cfg.api_url, cfg.token, cfg.ca_file, 10, 1, 250, 1000};
    control *ctl = control_new(&cc, err, sizeof err);
    if (!ctl) {
        say(false, "control plane: %s", err);
        problems++;
    } else {
        control_resp resp;
        bool reachable = control_get(ctl, WIRE_PATH_HEALTHZ, &resp) == 0;
        if (!reachable) {
            say(false, "cannot reach the control plane at %s: %s", cfg.api_url, resp.error);
            problems++;
        } else {
            say(true, "control plane at %s answers GET /healthz (HTTP %ld)", cfg.api_url,
                resp.status);
        }
        control_resp_free(&resp);
        /* a heartbeat for a lease nobody holds: 404 proves the token is an agent token */
        buf body = BUF_INIT;
        wire_lease_id_body(&body, "00000000-0000-0000-0000-000000000000");
        if (reachable &&
            control_post(ctl, WIRE_PATH_HEARTBEAT, body.data, body.len, &resp, NULL) == 0) {
            if (resp.status == 401) {
                say(false, "the control plane refused the token in %s (revoked or mistyped?)",
                    token_from);
                problems++;
            } else if (resp.status == 403) {
                say(false,
                    "the token in %s is not an agent token (create one with POST "
                    "/api/agents)",
                    token_from);
                problems++;
            } else if (resp.status == 404 || resp.status == 200 || resp.status == 409) {
                say(true, "the control plane accepts the agent token");
            } else {
                printf("note:     could not verify the token: POST /api/agent/heartbeat "
                       "answered HTTP %ld\n",
                       resp.status);
            }
            control_resp_free(&resp);
        }
        buf_free(&body);
        control_free(ctl);
    }
    engine_config ec;
    if (agent_config_engine(&cfg, &ec, err, sizeof err) < 0) {
        say(false, "SMTP engine settings: %s", err);
        problems++;
    } else {
        ec.threads = 1;
        ec.concurrency = 1;
        engine *e = engine_create(&ec, err, sizeof err);
        if (e) {
            say(true, "io_uring works on this kernel");
            engine_destroy(e);
        } else {
            say(false, "the SMTP engine cannot start: %s", err);
            problems++;
        }
    }
    problems += check_imap();
    if (!problems)
        printf("kiln-agent check: all good\n");
    return problems ? 1 : 0;
}
