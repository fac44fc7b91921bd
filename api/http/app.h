/* Process-wide state of kiln-api: configuration and the secret key (read-only after
 * start), the known time zones, and the metrics snapshot (its own lock). */
#ifndef KILN_APP_H
#define KILN_APP_H

#include "health.h"
#include "secret.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stats;
struct msgid_keyring;
struct inbox_provider_map;

/* Additional data sealed with a mailbox's IMAP secret (secret_seal's aad), one per kind,
 * so a sealed IMAP secret never opens as the SMTP one (sealed without) nor a password as
 * a token. Registration seals with them; whoever opens the secret uses the same. */
#define IMAP_SECRET_AAD_PASSWORD "kiln/imap/password"
#define IMAP_SECRET_AAD_OAUTH_TOKEN "kiln/imap/oauth_token"

typedef struct app_config {
    const char *conninfo;
    const char *socket_path;
    int64_t threads;
    int64_t max_body;
    int64_t socket_mode;
    int64_t stats_interval_s;
    /* leasing */
    int64_t lease_ttl_s;
    /* While more mailboxes are due than a lease takes, a mailbox's slots after its first are
     * granted only this far ahead (0: the whole lease); docs/leasing.md "Backlog". */
    int64_t lease_backlog_ahead_s;
    int64_t global_minute_cap;
    int64_t global_hourly_cap;
    int64_t recipient_daily_cap;
    int64_t pair_gap_days;
    /* webhooks: KILN_WEBHOOK_ALLOW_HTTP=1 accepts http:// endpoint URLs to any host */
    int64_t webhook_allow_http;
    /* the inbox side (docs/design.md "Inbox leasing and placement") */
    int64_t inbox_lease_ttl_s;
    int64_t placement_deadline_s;
    int64_t recipients_require_inbox; /* 0/1: recipients only among inboxes that are ok */
    int64_t inbox_failing_notify_s;   /* mailbox.inbox_failing after this long; 0: never */
    /* mailbox health (docs/design.md "Mailbox health"): KILN_HEALTH_* */
    health_thresholds health;
    int64_t health_quarantine_days;
    int64_t health_batch;
    /* the sends history (docs/operations.md "Retention"): day partitions kept, rotation */
    int64_t sends_retention_days;
    int64_t sends_rotate_s;
    /* KILN_POOL: this cell's pool (docs/scale.md "Past one primary: pools"): new tenants
     * join it, and the cell's own tokens (admin, metrics, agent) carry it for routing */
    int64_t pool;
} app_config;

typedef struct app {
    app_config cfg;
    secret_key key;
    /* Message-ID keys derived from key (lease/msgid.h), made by main.c; NULL until then */
    const struct msgid_keyring *msgid_keys;
    /* KILN_PROVIDER_MAP parsed (lease/inbox_classify.h), made by main.c; NULL: built-ins */
    const struct inbox_provider_map *providers;
    char **timezones; /* sorted */
    size_t ntimezones;
    struct stats *stats;
} app;

/* Loads KILN_* configuration; returns -1 with a message in err. */
int app_config_load(app_config *cfg, char *err, size_t errlen);
bool app_timezone_known(const app *a, const char *tz);

#endif
