/* kiln-agent run configuration (see agent_config.h). The file has the shape systemd's
 * EnvironmentFile reads: KEY=VALUE, # comments, blank lines, optional quotes. */
#include "agent_config.h"

#include "config.h"
#include "log.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (1u << 20)
#define LINE_MAX_LEN 4096

struct kv {
    char key[128];
    char val[LINE_MAX_LEN];
};

/* Splits one line into key and value; 0 blank/comment, 1 pair, -1 malformed. */
static int parse_line(const char *line, size_t n, struct kv *out)
{
    size_t i = 0;
    while (i < n && isspace((unsigned char)line[i]))
        i++;
    while (n > i && isspace((unsigned char)line[n - 1]))
        n--;
    if (i == n || line[i] == '#')
        return 0;
    if (n - i > 7 && !strncmp(line + i, "export ", 7))
        i += 7;
    size_t k = i;
    while (k < n && (isalnum((unsigned char)line[k]) || line[k] == '_'))
        k++;
    if (k == i || k >= n || line[k] != '=' || k - i >= sizeof out->key)
        return -1;
    memcpy(out->key, line + i, k - i);
    out->key[k - i] = '\0';
    const char *v = line + k + 1;
    size_t vn = n - k - 1;
    if (vn >= 2 && (v[0] == '"' || v[0] == '\'') && v[vn - 1] == v[0]) {
        v++;
        vn -= 2;
    }
    if (vn >= sizeof out->val || memchr(v, '\0', vn))
        return -1;
    memcpy(out->val, v, vn);
    out->val[vn] = '\0';
    return 1;
}

struct field_str {
    const char *key;
    char *out;
    size_t outlen;
};

struct field_int {
    const char *key;
    int *out;
    int64_t min, max;
};

#define NSTR 8
#define NINT 16

static void fields(agent_config *c, struct field_str *s, struct field_int *i)
{
    struct field_str ss[NSTR] = {
        {"KILN_API_URL", c->api_url, sizeof c->api_url},
        {"KILN_AGENT_TOKEN_FILE", c->token_file, sizeof c->token_file},
        {"KILN_API_CA_FILE", c->ca_file, sizeof c->ca_file},
        {"KILN_AGENT_NAME", c->name, sizeof c->name},
        {"KILN_AGENT_SPOOL_DIR", c->spool_dir, sizeof c->spool_dir},
        {"KILN_LOG_LEVEL", c->log_level, sizeof c->log_level},
        {"KILN_AGENT_TOKEN", c->token, sizeof c->token},
        {"KILN_AGENT_METRICS_ADDR", c->metrics_addr, sizeof c->metrics_addr},
    };
    struct field_int ii[NINT] = {
        {"KILN_AGENT_CONCURRENCY", &c->concurrency, 1, 1000000},
        {"KILN_AGENT_THREADS", &c->threads, 0, 1024},
        {"KILN_AGENT_METRICS_PORT", &c->metrics_port, 0, 65535},
        {"KILN_AGENT_MAX_OUTSTANDING", &c->max_outstanding, 0, 10000000},
        {"KILN_AGENT_SESSION_S", &c->session_s, 1, 3600},
        {"KILN_AGENT_HEARTBEAT_S", &c->heartbeat_s, 0, 86400},
        {"KILN_AGENT_REPORT_BATCH", &c->report_batch, 1, 10000},
        {"KILN_AGENT_REPORT_INTERVAL_MS", &c->report_interval_ms, 1, 600000},
        {"KILN_AGENT_LEASE_IDLE_MAX_S", &c->lease_idle_max_s, 1, 3600},
        {"KILN_AGENT_DRAIN_TIMEOUT_S", &c->drain_timeout_s, 1, 3600},
        {"KILN_AGENT_HTTP_TIMEOUT_S", &c->http_timeout_s, 1, 600},
        {"KILN_AGENT_HTTP_ATTEMPTS", &c->http_attempts, 1, 20},
        {"KILN_AGENT_SPOOL_COMPACT_KB", &c->spool_compact_kb, 16, 16777216},
        {"KILN_AGENT_INTENT_BATCH_US", &c->intent_batch_us, 0, 1000000},
        {"KILN_AGENT_MAX_INBOXES", &c->max_inboxes, 0, 1000000},
        {"KILN_AGENT_INBOX_REFRESH_S", &c->inbox_refresh_s, 1, 3600},
    };
    memcpy(s, ss, sizeof ss);
    memcpy(i, ii, sizeof ii);
}

static void defaults(agent_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->api_url, sizeof c->api_url, "http://127.0.0.1:8080");
    snprintf(c->token_file, sizeof c->token_file, "/etc/kiln/agent.token");
    snprintf(c->spool_dir, sizeof c->spool_dir, "/var/lib/kiln/agent");
    /* Loopback unless asked: a bare host should not publish its metrics by accident. */
    snprintf(c->metrics_addr, sizeof c->metrics_addr, "127.0.0.1");
    if (gethostname(c->name, sizeof c->name - 1) < 0 || !c->name[0])
        snprintf(c->name, sizeof c->name, "kiln-agent");
    c->concurrency = 2000;
    c->threads = 0;
    c->metrics_port = 0;
    c->max_outstanding = 0;
    c->session_s = 2;
    c->heartbeat_s = 0;
    c->report_batch = 500;
    c->report_interval_ms = 250;
    c->lease_idle_max_s = 60;
    c->drain_timeout_s = 60;
    c->http_timeout_s = 30;
    c->http_attempts = 4;
    c->spool_compact_kb = 8192;
    c->intent_batch_us = 500;
    c->max_inboxes = 0; /* no inbox leases unless asked */
    c->inbox_refresh_s = 10;
}

/* Sets one key; 0, 1 when the key is not ours, -1 on a bad value. */
static int set_key(agent_config *c, const char *key, const char *val, const char *where, char *err,
                   size_t errlen)
{
    struct field_str s[NSTR];
    struct field_int ii[NINT];
    fields(c, s, ii);
    for (int k = 0; k < NSTR; k++) {
        if (strcmp(s[k].key, key) != 0)
            continue;
        if (strlen(val) >= s[k].outlen) {
            snprintf(err, errlen, "%s%s is longer than %zu characters", where, key,
                     s[k].outlen - 1);
            return -1;
        }
        snprintf(s[k].out, s[k].outlen, "%s", val);
        return 0;
    }
    for (int k = 0; k < NINT; k++) {
        if (strcmp(ii[k].key, key) != 0)
            continue;
        int64_t v;
        if (!parse_int(val, strlen(val), ii[k].min, ii[k].max, &v)) {
            snprintf(err, errlen, "%s%s=%s: expected a whole number from %lld to %lld", where, key,
                     val, (long long)ii[k].min, (long long)ii[k].max);
            return -1;
        }
        *ii[k].out = (int)v;
        return 0;
    }
    return 1;
}

bool agent_config_ip_literal(const char *s)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

bool agent_config_url_loopback(const char *url)
{
    static const char *const prefixes[] = {"http://127.0.0.1", "http://localhost", "http://[::1]"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t n = strlen(prefixes[i]);
        if (!strncmp(url, prefixes[i], n) && (url[n] == '\0' || url[n] == ':' || url[n] == '/'))
            return true;
    }
    return false;
}

static int read_token(agent_config *c, char *err, size_t errlen)
{
    if (c->token[0]) { /* KILN_AGENT_TOKEN given directly: no file is read */
        c->token_file[0] = '\0';
        return 0;
    }
    size_t n = 0;
    char *t = agent_config_read_file(c->token_file, &n);
    if (!t) {
        snprintf(err, errlen,
                 "cannot read the agent token from %s (KILN_AGENT_TOKEN_FILE): %s; an admin "
                 "creates one with POST /api/agents",
                 c->token_file, strerror(errno));
        return -1;
    }
    size_t a = 0;
    while (a < n && isspace((unsigned char)t[a]))
        a++;
    while (n > a && isspace((unsigned char)t[n - 1]))
        n--;
    if (n == a || n - a >= sizeof c->token) {
        snprintf(err, errlen, "the token file %s is %s", c->token_file,
                 n == a ? "empty" : "too long to be an agent token");
        free(t);
        return -1;
    }
    for (size_t i = a; i < n; i++)
        if (!isgraph((unsigned char)t[i])) {
            snprintf(err, errlen, "the token file %s holds more than one word", c->token_file);
            free(t);
            return -1;
        }
    memcpy(c->token, t + a, n - a);
    c->token[n - a] = '\0';
    free(t);
    return 0;
}

int agent_config_parse(agent_config *c, const char *text, size_t n, agent_env_fn env, char *err,
                       size_t errlen)
{
    defaults(c);
    size_t pos = 0;
    int lineno = 0;
    while (text && pos < n) {
        const char *nl = memchr(text + pos, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - (text + pos)) : n - pos;
        lineno++;
        struct kv kv;
        int rc = parse_line(text + pos, len, &kv);
        if (rc < 0) {
            snprintf(err, errlen, "line %d: expected KEY=VALUE", lineno);
            return -1;
        }
        char where[32];
        snprintf(where, sizeof where, "line %d: ", lineno);
        if (rc == 1 && set_key(c, kv.key, kv.val, where, err, errlen) < 0)
            return -1;
        pos += len + (nl ? 1 : 0);
    }
    struct field_str s[NSTR];
    struct field_int ii[NINT];
    fields(c, s, ii);
    for (int k = 0; k < NSTR + NINT; k++) {
        const char *key = k < NSTR ? s[k].key : ii[k - NSTR].key;
        const char *v = env ? env(key) : NULL;
        /* an empty variable is "unset", except the CA file where empty means the system
         * store (install-agent.sh writes KILN_API_CA_FILE= on purpose) */
        if (v && (*v || !strcmp(key, "KILN_API_CA_FILE")) &&
            set_key(c, key, v, "", err, errlen) < 0)
            return -1;
    }
    if (strncmp(c->api_url, "https://", 8) != 0 && !agent_config_url_loopback(c->api_url)) {
        snprintf(err, errlen,
                 "KILN_API_URL=%s: must be https:// (plain http only for 127.0.0.1, localhost "
                 "or [::1])",
                 c->api_url);
        return -1;
    }
    size_t ul = strlen(c->api_url);
    while (ul > 0 && c->api_url[ul - 1] == '/')
        c->api_url[--ul] = '\0';
    if (!c->spool_dir[0]) {
        snprintf(err, errlen, "KILN_AGENT_SPOOL_DIR is empty");
        return -1;
    }
    if (!c->name[0]) {
        snprintf(err, errlen, "KILN_AGENT_NAME is empty");
        return -1;
    }
    if (!agent_config_ip_literal(c->metrics_addr)) {
        snprintf(err, errlen,
                 "KILN_AGENT_METRICS_ADDR=%s: expected an IPv4 or IPv6 address to listen on, "
                 "such as 127.0.0.1 (the default), 0.0.0.0 or :: (no host names, no brackets)",
                 c->metrics_addr);
        return -1;
    }
    enum log_level lv;
    if (c->log_level[0] && log_level_parse(c->log_level, &lv) < 0) {
        snprintf(err, errlen, "KILN_LOG_LEVEL=%s: expected debug, info, warn or error",
                 c->log_level);
        return -1;
    }
    return read_token(c, err, errlen);
}

char *agent_config_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *data = xmalloc(CONFIG_FILE_MAX + 1);
    size_t got = fread(data, 1, CONFIG_FILE_MAX, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(data);
        errno = EIO;
        return NULL;
    }
    data[got] = '\0';
    *n = got;
    return data;
}

static const char *env_get(const char *key)
{
    return getenv(key);
}

/* Parses the file text (NULL: no file) with the environment over it; err names the file. */
static int parse_file_text(agent_config *c, const char *path, const char *text, size_t n, char *err,
                           size_t errlen)
{
    char inner[400];
    int rc = agent_config_parse(c, text, n, env_get, inner, sizeof inner);
    if (rc < 0)
        snprintf(err, errlen, "%s%s%s", text ? path : "", text ? ": " : "", inner);
    return rc;
}

/* The file's text, NULL when it is absent and not required; -1 with err when unreadable. */
static int read_config_file(const char *path, bool required, char **text, size_t *n, char *err,
                            size_t errlen)
{
    *n = 0;
    *text = agent_config_read_file(path, n);
    if (!*text && (required || errno != ENOENT)) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int agent_config_load(agent_config *c, const char *path, bool required, char *err, size_t errlen)
{
    char *text;
    size_t n;
    if (read_config_file(path, required, &text, &n, err, errlen) < 0)
        return -1;
    int rc = parse_file_text(c, path, text, n, err, errlen);
    free(text);
    return rc;
}

/* True for a key agent_config reads itself (fields()). */
static bool own_key(const char *key)
{
    agent_config c;
    struct field_str s[NSTR];
    struct field_int ii[NINT];
    fields(&c, s, ii);
    for (int k = 0; k < NSTR; k++)
        if (!strcmp(s[k].key, key))
            return true;
    for (int k = 0; k < NINT; k++)
        if (!strcmp(ii[k].key, key))
            return true;
    return false;
}

void agent_config_other_keys(const char *text, size_t n, agent_kv_fn fn, void *arg)
{
    size_t pos = 0;
    while (text && pos < n) {
        const char *nl = memchr(text + pos, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - (text + pos)) : n - pos;
        struct kv kv;
        if (parse_line(text + pos, len, &kv) == 1 && !strncmp(kv.key, "KILN_", 5) &&
            !own_key(kv.key))
            fn(arg, kv.key, kv.val);
        pos += len + (nl ? 1 : 0);
    }
}

/* agent_config_export's walk: the keys the environment lacks go to its callback. */
struct export_walk {
    agent_env_fn env;
    void (*fn)(const char *key, const char *val);
};

static void export_one(void *arg, const char *key, const char *val)
{
    const struct export_walk *w = arg;
    const char *cur = w->env ? w->env(key) : NULL;
    if (!cur || !*cur)
        w->fn(key, val);
}

void agent_config_export(const char *text, size_t n, agent_env_fn env,
                         void (*fn)(const char *key, const char *val))
{
    struct export_walk w = {env, fn};
    agent_config_other_keys(text, n, export_one, &w);
}

static void setenv_keep(const char *key, const char *val)
{
    setenv(key, val, 0);
}

int agent_config_load_process(agent_config *c, const char *path, bool required, char *err,
                              size_t errlen)
{
    char *text;
    size_t n;
    if (read_config_file(path, required, &text, &n, err, errlen) < 0)
        return -1;
    int rc = parse_file_text(c, path, text, n, err, errlen);
    if (rc == 0)
        agent_config_export(text, n, env_get, setenv_keep);
    free(text);
    return rc;
}

int agent_config_engine(const agent_config *c, engine_config *ec, char *err, size_t errlen)
{
    engine_config_defaults(ec);
    if (engine_config_from_env(ec, err, errlen) < 0)
        return -1;
    ec->concurrency = c->concurrency;
    ec->threads = c->threads;
    return 0;
}
