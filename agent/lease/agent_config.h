/* kiln-agent run configuration: KEY=VALUE lines from /etc/kiln/agent.conf (or --config),
 * overridden by the same KILN_* variables in the environment, checked once with a
 * message naming the key. Reloaded on SIGHUP (what the engine already uses needs a
 * restart, run.c keeps the running value; the lease loop's knobs and the log level apply
 * at once). */
#ifndef KILN_AGENT_CONFIG_H
#define KILN_AGENT_CONFIG_H

#include "engine.h"

#include <stdbool.h>
#include <stddef.h>

#define AGENT_CONFIG_DEFAULT_PATH "/etc/kiln/agent.conf"

typedef struct agent_config {
    char api_url[512];      /* KILN_API_URL */
    char token_file[1024];  /* KILN_AGENT_TOKEN_FILE; empty when KILN_AGENT_TOKEN is set */
    char token[512];        /* read from token_file (whitespace trimmed) */
    char ca_file[1024];     /* KILN_API_CA_FILE; empty = system store */
    char name[101];         /* KILN_AGENT_NAME; default: host name */
    char spool_dir[1024];   /* KILN_AGENT_SPOOL_DIR */
    char log_level[16];     /* KILN_LOG_LEVEL */
    char metrics_addr[64];  /* KILN_AGENT_METRICS_ADDR: IPv4/IPv6 literal, 127.0.0.1 */
    int concurrency;        /* KILN_AGENT_CONCURRENCY: SMTP sessions at once */
    int threads;            /* KILN_AGENT_THREADS: 0 = one per core */
    int metrics_port;       /* KILN_AGENT_METRICS_PORT: 0 = off */
    int max_outstanding;    /* KILN_AGENT_MAX_OUTSTANDING: slots held at once; 0 = auto */
    int session_s;          /* KILN_AGENT_SESSION_S: expected seconds per SMTP session */
    int heartbeat_s;        /* KILN_AGENT_HEARTBEAT_S: 0 = a third of the lease ttl */
    int report_batch;       /* KILN_AGENT_REPORT_BATCH: results per report call */
    int report_interval_ms; /* KILN_AGENT_REPORT_INTERVAL_MS: oldest result waits at most */
    int lease_idle_max_s;   /* KILN_AGENT_LEASE_IDLE_MAX_S: cap on the server's retry_after_s */
    int drain_timeout_s;    /* KILN_AGENT_DRAIN_TIMEOUT_S: SIGTERM waits this for sessions */
    int http_timeout_s;     /* KILN_AGENT_HTTP_TIMEOUT_S: one control-plane call */
    int http_attempts;      /* KILN_AGENT_HTTP_ATTEMPTS: tries of one call */
    int spool_compact_kb;   /* KILN_AGENT_SPOOL_COMPACT_KB: rewrite threshold */
    int intent_batch_us;    /* KILN_AGENT_INTENT_BATCH_US: gather intents this long */
    int max_inboxes;        /* KILN_AGENT_MAX_INBOXES: inboxes watched at once; 0 = none */
    int inbox_refresh_s;    /* KILN_AGENT_INBOX_REFRESH_S: held inboxes' actions asked anew */
} agent_config;

/* A lookup of KEY in the environment (getenv, or a table in tests). */
typedef const char *(*agent_env_fn)(const char *key);

/* Defaults, then the file text's KEY=VALUE lines, then env. Reads the token file.
 * 0, or -1 with a plain-words reason naming the key or line. */
int agent_config_parse(agent_config *c, const char *text, size_t n, agent_env_fn env, char *err,
                       size_t errlen);
/* agent_config_parse on a file; a missing file is fine unless required (--config). */
int agent_config_load(agent_config *c, const char *path, bool required, char *err, size_t errlen);
/* The start of kiln-agent run and check: agent_config_load, then the file's other KILN_*
 * keys (agent_config_other_keys: the engines' knobs, KILN_AGENT_IMAP_*,
 * KILN_AGENT_CHECK_IMAP_*) into the process environment where it lacks them, so that
 * engine_config_from_env and inbox_engine_config_from_env see what the file says. Keys
 * agent_config reads itself stay out of the environment: a SIGHUP reload must see the
 * edited file, not the values of the start. Only before any thread starts (setenv). */
int agent_config_load_process(agent_config *c, const char *path, bool required, char *err,
                              size_t errlen);
/* A KEY=VALUE of the file, for agent_config_other_keys. */
typedef void (*agent_kv_fn)(void *arg, const char *key, const char *val);
/* Calls fn for every KILN_* KEY=VALUE of the file text that agent_config does not read
 * itself (those are read by the engines from the environment). */
void agent_config_other_keys(const char *text, size_t n, agent_kv_fn fn, void *arg);
/* Calls fn for each of agent_config_other_keys that env does not already set. */
void agent_config_export(const char *text, size_t n, agent_env_fn env,
                         void (*fn)(const char *key, const char *val));
/* Reads a whole (small) file into a NUL-terminated malloc'd string; NULL with errno. */
char *agent_config_read_file(const char *path, size_t *n);
/* The engine's configuration for kiln-agent run/check: defaults, KILN_AGENT_* knobs
 * from the environment, then this configuration's concurrency and threads. 0, or -1
 * with the bad knob named in err. */
int agent_config_engine(const agent_config *c, engine_config *ec, char *err, size_t errlen);
/* True when s is an IPv4 or IPv6 address literal (0.0.0.0, ::1; no brackets, no names). */
bool agent_config_ip_literal(const char *s);
/* True for http://127.0.0.1, http://localhost, http://[::1] (any port, any path). */
bool agent_config_url_loopback(const char *url);

#endif
