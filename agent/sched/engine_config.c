/* The engine's configuration: defaults (RFC 5321 §4.5.3.2 timeouts), KILN_AGENT_*
 * overrides, and the check of the name the agent gives in EHLO/HELO. */
#include "engine.h"

#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void engine_config_defaults(engine_config *c)
{
    memset(c, 0, sizeof *c);
    c->threads = 0;
    c->concurrency = 1000;
    c->batch_max = 10;
    c->max_attempts = 8;
    c->lease_margin_ms = 5000;
    c->connect_timeout_ms = 30000;
    c->tls_timeout_ms = 60000;
    for (int i = 0; i < SMTP_S_COUNT; i++)
        c->state_timeout_ms[i] = 300000;       /* greeting, MAIL, RCPT: 5 min */
    c->state_timeout_ms[SMTP_S_DATA] = 120000; /* DATA initiation: 2 min */
    c->state_timeout_ms[SMTP_S_DOT] = 600000;  /* DATA termination: 10 min */
    c->state_timeout_ms[SMTP_S_QUIT] = 30000;
    c->data_block_timeout_ms = 180000; /* data block: 3 min */
    c->dns_ttl_ms = 300000;
    c->result_linger_ms = 10;
    c->dry_run_ms = -1;
    shaping_cfg_defaults(&c->shaping);
    snprintf(c->helo_name, sizeof c->helo_name, "localhost");
}

static int env_ms(const char *name, int64_t *v, char *err, size_t errlen)
{
    int64_t x;
    if (config_int(name, *v, 1, 86400000, &x, err, errlen) < 0)
        return -1;
    *v = x;
    return 0;
}

static int env_count(const char *name, int *v, int64_t max, char *err, size_t errlen)
{
    int64_t x;
    if (config_int(name, *v, 1, max, &x, err, errlen) < 0)
        return -1;
    *v = (int)x;
    return 0;
}

int engine_config_from_env(engine_config *c, char *err, size_t errlen)
{
    int64_t cmd = c->state_timeout_ms[SMTP_S_MAIL];
    int64_t greeting = c->state_timeout_ms[SMTP_S_GREETING];
    if (env_count("KILN_AGENT_HOST_MAX_CONNS", &c->shaping.max_conns, 1000000, err, errlen) ||
        env_count("KILN_AGENT_HOST_CONNS_PER_MIN", &c->shaping.conns_per_min, 100000000, err,
                  errlen) ||
        env_count("KILN_AGENT_BREAKER_THRESHOLD", &c->shaping.breaker_threshold, 1000000, err,
                  errlen) ||
        env_ms("KILN_AGENT_BREAKER_COOLDOWN_MS", &c->shaping.breaker_cooldown_ms, err, errlen) ||
        env_ms("KILN_AGENT_BACKOFF_BASE_MS", &c->shaping.backoff_base_ms, err, errlen) ||
        env_ms("KILN_AGENT_BACKOFF_MAX_MS", &c->shaping.backoff_max_ms, err, errlen) ||
        env_count("KILN_AGENT_MAX_ATTEMPTS", &c->max_attempts, 1000, err, errlen) ||
        env_count("KILN_AGENT_BATCH_MAX", &c->batch_max, 100, err, errlen) ||
        env_ms("KILN_AGENT_LEASE_MARGIN_MS", &c->lease_margin_ms, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_CONNECT_MS", &c->connect_timeout_ms, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_TLS_MS", &c->tls_timeout_ms, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_GREETING_MS", &greeting, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_COMMAND_MS", &cmd, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_DATA_INIT_MS", &c->state_timeout_ms[SMTP_S_DATA], err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_DATA_END_MS", &c->state_timeout_ms[SMTP_S_DOT], err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_DATA_BLOCK_MS", &c->data_block_timeout_ms, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_QUIT_MS", &c->state_timeout_ms[SMTP_S_QUIT], err, errlen) ||
        env_ms("KILN_AGENT_DNS_TTL_MS", &c->dns_ttl_ms, err, errlen))
        return -1;
    if (config_int("KILN_AGENT_DRY_RUN_MS", c->dry_run_ms, 0, 600000, &c->dry_run_ms, err, errlen) <
        0)
        return -1;
    c->state_timeout_ms[SMTP_S_GREETING] = greeting;
    int cmd_states[] = {SMTP_S_EHLO, SMTP_S_HELO,      SMTP_S_STARTTLS,
                        SMTP_S_AUTH, SMTP_S_AUTH_USER, SMTP_S_AUTH_PASS,
                        SMTP_S_MAIL, SMTP_S_RCPT,      SMTP_S_RSET};
    for (size_t i = 0; i < sizeof cmd_states / sizeof cmd_states[0]; i++)
        c->state_timeout_ms[cmd_states[i]] = cmd;
    const char *helo = config_str("KILN_AGENT_HELO_NAME", NULL);
    if (helo) {
        if (!engine_helo_name_ok(helo)) {
            snprintf(err, errlen,
                     "KILN_AGENT_HELO_NAME: not a domain name or address literal such as "
                     "mail.example.com or [192.0.2.1]");
            return -1;
        }
        snprintf(c->helo_name, sizeof c->helo_name, "%s", helo);
    }
    return 0;
}

static bool helo_domain_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && !(ch == '-' && label > 0))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && s[n - 1] != '-';
}

bool engine_helo_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        char lit[INET6_ADDRSTRLEN + 8];
        unsigned char addr[sizeof(struct in6_addr)];
        if (n - 2 >= sizeof lit)
            return false;
        memcpy(lit, s + 1, n - 2);
        lit[n - 2] = '\0';
        if (!strncasecmp(lit, "IPv6:", 5))
            return inet_pton(AF_INET6, lit + 5, addr) == 1;
        return inet_pton(AF_INET, lit, addr) == 1;
    }
    return helo_domain_ok(s, n);
}
