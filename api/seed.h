/* `kiln-api seed`: fills a database with many users and mailboxes for scale runs, with
 * COPY (not the API) and SMTP secrets sealed by secret_seal under the server key, so
 * kiln-api opens them like any registered mailbox's. docs/benchmarks.md "Seeding". */
#ifndef KILN_SEED_H
#define KILN_SEED_H

/* Runs the subcommand with its arguments (after "seed"). conninfo: libpq's; keyfile:
 * the server key kiln-api serves with (KILN_SECRET_KEY_FILE; NULL or "" is a usage
 * error). Returns the process exit status (0, 1 failure, 2 usage, 3 refused: the batch
 * exists). */
int seed_main(const char *conninfo, const char *keyfile, int argc, char **argv);

#endif
