/* `kiln-api seed`: fills a database with many users and mailboxes for scale runs, with
 * COPY (not the API) and SMTP secrets sealed by secret_seal under the server key, so
 * kiln-api opens them like any registered mailbox's. docs/benchmarks.md "Seeding". */
#ifndef KILN_SEED_H
#define KILN_SEED_H

#include "secret.h"

/* Runs the subcommand with its arguments (after "seed"). conninfo: libpq's; key: the
 * server key kiln-api serves with. Returns the process exit status (0, 1 failure,
 * 2 usage, 3 refused: the batch exists). */
int seed_main(const char *conninfo, const secret_key *key, int argc, char **argv);

#endif
