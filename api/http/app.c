/* kiln-api configuration from KILN_* variables and the time-zone list (see app.h). */
#include "app.h"

#include "config.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* KILN_HEALTH_* thresholds over health_thresholds_default, checked together. */
static int health_config_load(health_thresholds *t, char *err, size_t errlen)
{
    health_thresholds_default(t);
    struct {
        const char *name, *field;
        double *out;
    } shares[] = {
        {"KILN_HEALTH_WATCH_JUNK", "watch_junk", &t->watch_junk},
        {"KILN_HEALTH_QUARANTINE_JUNK", "quarantine_junk", &t->quarantine_junk},
        {"KILN_HEALTH_QUARANTINE_BOUNCE", "quarantine_bounce", &t->quarantine_bounce},
        {"KILN_HEALTH_PAUSE_JUNK", "pause_junk", &t->pause_junk},
        {"KILN_HEALTH_HYSTERESIS", "hysteresis", &t->hysteresis},
        {"KILN_HEALTH_CONFIDENCE_Z", "confidence_z", &t->confidence_z},
    };
    for (size_t i = 0; i < sizeof shares / sizeof shares[0]; i++) {
        const char *v = getenv(shares[i].name);
        if (!v || !*v) /* empty is unset, as for every KILN_* variable (config.c) */
            continue;
        char *end = NULL;
        double d = strtod(v, &end);
        if (!end || *end) {
            snprintf(err, errlen, "%s=%s: expected a number", shares[i].name, v);
            return -1;
        }
        *shares[i].out = d;
    }
    if (config_int("KILN_HEALTH_MIN_DELIVERIES", t->min_deliveries, 1, 1000000, &t->min_deliveries,
                   err, errlen) != 0)
        return -1;
    const char *bad = NULL;
    if (!health_thresholds_valid(t, &bad)) {
        for (size_t i = 0; i < sizeof shares / sizeof shares[0]; i++)
            if (!strcmp(shares[i].field, bad))
                bad = shares[i].name;
        snprintf(err, errlen,
                 "%s: the health thresholds must be shares in [0, 1] with watch <= quarantine "
                 "<= pause junk and hysteresis below watch (z in (0, 5])",
                 bad);
        return -1;
    }
    return 0;
}

int app_config_load(app_config *cfg, char *err, size_t errlen)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    cfg->conninfo = config_str("KILN_DB", "dbname=kiln");
    cfg->socket_path = config_str("KILN_FCGI_SOCKET", "/run/kiln/api.sock");
    struct {
        const char *name;
        int64_t def, min, max;
        int64_t *out;
    } ints[] = {
        {"KILN_THREADS", (int64_t)cores * 4, 1, 256, &cfg->threads},
        {"KILN_MAX_BODY", 1048576, 1024, (int64_t)64 * 1048576, &cfg->max_body},
        {"KILN_STATS_INTERVAL_S", 5, 1, 3600, &cfg->stats_interval_s},
        {"KILN_LEASE_TTL_S", 600, 10, 86400, &cfg->lease_ttl_s},
        {"KILN_LEASE_BACKLOG_AHEAD_S", 60, 0, 86400, &cfg->lease_backlog_ahead_s},
        {"KILN_GLOBAL_MINUTE_CAP", 200, 0, 100000000, &cfg->global_minute_cap},
        {"KILN_GLOBAL_HOURLY_CAP", 10000, 0, 1000000000, &cfg->global_hourly_cap},
        {"KILN_RECIPIENT_DAILY_CAP", 50, 1, 1000000, &cfg->recipient_daily_cap},
        {"KILN_PAIR_GAP_DAYS", 3, 0, 365, &cfg->pair_gap_days},
        {"KILN_WEBHOOK_ALLOW_HTTP", 0, 0, 1, &cfg->webhook_allow_http},
        {"KILN_INBOX_LEASE_TTL_S", 1800, 60, 86400, &cfg->inbox_lease_ttl_s},
        {"KILN_PLACEMENT_DEADLINE_S", 86400, 60, 2592000, &cfg->placement_deadline_s},
        {"KILN_RECIPIENTS_REQUIRE_INBOX", 0, 0, 1, &cfg->recipients_require_inbox},
        {"KILN_INBOX_FAILING_NOTIFY_S", 3600, 0, 2592000, &cfg->inbox_failing_notify_s},
        {"KILN_HEALTH_QUARANTINE_DAYS", 3, 1, 365, &cfg->health_quarantine_days},
        {"KILN_HEALTH_BATCH", 500, 1, 100000, &cfg->health_batch},
        {"KILN_SENDS_RETENTION_DAYS", 90, 1, 3650, &cfg->sends_retention_days},
        {"KILN_SENDS_ROTATE_S", 600, 1, 86400, &cfg->sends_rotate_s},
        {"KILN_POOL", 1, 1, 999999999, &cfg->pool},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (config_int(ints[i].name, ints[i].def, ints[i].min, ints[i].max, ints[i].out, err,
                       errlen) != 0)
            return -1;
    if (health_config_load(&cfg->health, err, errlen) != 0)
        return -1;
    /* log_init read it already; a value it could not read is refused here, not left at
     * info without a word (kiln-agent refuses it too). */
    const char *level = config_str("KILN_LOG_LEVEL", "info");
    enum log_level lv;
    if (log_level_parse(level, &lv) != 0) {
        snprintf(err, errlen, "KILN_LOG_LEVEL=%s: expected debug, info, warn or error", level);
        return -1;
    }
    /* KILN_FCGI_SOCKET_MODE is octal, like chmod's argument. */
    const char *mode = config_str("KILN_FCGI_SOCKET_MODE", "0660");
    char *end = NULL;
    cfg->socket_mode = strtol(mode, &end, 8);
    if (!end || *end || cfg->socket_mode < 0 || cfg->socket_mode > 0777) {
        snprintf(err, errlen, "KILN_FCGI_SOCKET_MODE=%s: expected an octal mode like 0660", mode);
        return -1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

bool app_timezone_known(const app *a, const char *tz)
{
    return bsearch(&tz, a->timezones, a->ntimezones, sizeof(char *), cmp_str) != NULL;
}
