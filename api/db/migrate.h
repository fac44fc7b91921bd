/* Schema migrations: sql/migrations/NNN_name.sql applied in order, each in its own
 * transaction, recorded in schema_migrations, under an advisory lock so concurrent
 * `kiln-api migrate` runs (several hosts starting at once) apply each exactly once. */
#ifndef KILN_MIGRATE_H
#define KILN_MIGRATE_H

#include "db.h"

/* The directory holding migrations/: KILN_SQL_DIR, the build tree's sql/, or
 * /usr/share/kiln/sql. */
const char *migrate_sql_dir(void);
/* Applies pending migrations. Returns the number applied, or -1 (logged). */
int migrate_apply(db *d, const char *sql_dir);

#endif
