/* Numbered SQL migrations under an advisory lock (see migrate.h). */
#include "migrate.h"

#include "buf.h"
#include "config.h"
#include "log.h"
#include "xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MIGRATE_LOCK_KEY "7351902"

const char *migrate_sql_dir(void)
{
    const char *env = config_str("KILN_SQL_DIR", NULL);
    if (env)
        return env;
    struct stat st;
    if (stat(KILN_SQL_DIR "/migrations", &st) == 0)
        return KILN_SQL_DIR;
    return "/usr/share/kiln/sql";
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_file(const char *path, buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(out, chunk, n);
    int rc = ferror(f) ? -1 : 0;
    fclose(f);
    return rc;
}

static PGresult *q(db *d, const char *sql, int n, const char *const *params)
{
    return PQexecParams(db_conn(d), sql, n, NULL, params, NULL, NULL, 0);
}

static bool ok(PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

int migrate_apply(db *d, const char *sql_dir)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/migrations", sql_dir);
    DIR *dh = opendir(dir);
    if (!dh) {
        log_error("cannot open migrations directory %s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(dh))) {
        size_t len = strlen(e->d_name);
        if (len > 8 && !strcmp(e->d_name + len - 4, ".sql") && e->d_name[0] >= '0' &&
            e->d_name[0] <= '9') {
            names = xrealloc(names, (count + 1) * sizeof *names);
            names[count++] = xstrdup(e->d_name);
        }
    }
    closedir(dh);
    if (count > 0)
        qsort(names, count, sizeof *names, cmp_names);

    int applied = -1;
    if (!db_ensure(d)) {
        log_error("cannot connect to the database: %s", db_message(d));
        goto out;
    }
    PGresult *r = q(d, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL);
    bool locked = ok(r);
    PQclear(r);
    if (!locked) {
        log_error("cannot take the migration lock: %s", PQerrorMessage(db_conn(d)));
        goto out;
    }
    r = q(d,
          "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
          "applied_at timestamptz NOT NULL DEFAULT now())",
          0, NULL);
    PQclear(r);
    applied = 0;
    for (size_t i = 0; i < count; i++) {
        const char *p[] = {names[i]};
        r = q(d, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, p);
        bool done = ok(r) && PQntuples(r) == 1;
        PQclear(r);
        if (done)
            continue;
        char path[4352];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        buf sql = BUF_INIT;
        if (read_file(path, &sql) != 0) {
            log_error("cannot read %s: %s", path, strerror(errno));
            buf_free(&sql);
            applied = -1;
            break;
        }
        r = q(d, "BEGIN", 0, NULL);
        PQclear(r);
        r = PQexec(db_conn(d), sql.data);
        bool good = ok(r);
        if (!good)
            log_error("migration %s failed: %s", names[i], PQresultErrorMessage(r));
        PQclear(r);
        buf_free(&sql);
        if (good) {
            r = q(d, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, p);
            good = ok(r);
            PQclear(r);
        }
        r = q(d, good ? "COMMIT" : "ROLLBACK", 0, NULL);
        good = good && ok(r);
        PQclear(r);
        if (!good) {
            applied = -1;
            break;
        }
        log_info("applied migration %s", names[i]);
        applied++;
    }
    r = q(d, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", 0, NULL);
    PQclear(r);
out:
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return applied;
}
