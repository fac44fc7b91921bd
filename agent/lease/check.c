/* kiln-agent check (see run.h): the configuration, the spool directory, the control
 * plane's reachability and the token, and io_uring, each in one plain line. */
#include "run.h"

#include "agent_config.h"
#include "control.h"
#include "engine.h"
#include "agent_wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int run_check(const char *config_path, bool config_required)
{
    agent_config cfg;
    char err[512];
    int problems = 0;
    if (agent_config_load(&cfg, config_path, config_required, err, sizeof err) < 0) {
        say(false, "configuration: %s", err);
        return 1;
    }
    say(true, "configuration read (%s%s), token from %s", config_path,
        access(config_path, R_OK) == 0 ? "" : ", absent: environment only",
        cfg.token_file[0] ? cfg.token_file : "KILN_AGENT_TOKEN");
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
                    cfg.token_file);
                problems++;
            } else if (resp.status == 403) {
                say(false,
                    "the token in %s is not an agent token (create one with POST "
                    "/api/agents)",
                    cfg.token_file);
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
        fprintf(stderr, "kiln-agent: %s\n", err);
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
    if (!problems)
        printf("kiln-agent check: all good\n");
    return problems ? 1 : 0;
}
