/* `kiln-agent run`: the lease loop that joins the control plane and the SMTP engine.
 * The calling thread becomes the control thread (libcurl: lease, report, heartbeat,
 * release); the engine's I/O threads send; a spool thread makes intents durable
 * before a session starts and hands the go-ahead back through the engine's eventfd.
 * Results go to the spool, then to the control plane in batches. SIGTERM drains,
 * SIGHUP reloads. `kiln-agent check` tests the same configuration without leasing. */
#ifndef KILN_RUN_H
#define KILN_RUN_H

#include "inbox_feed.h"

#include <stdbool.h>

/* Runs until SIGTERM/SIGINT and a finished drain (exit code 0), or a startup error
 * (message on stderr, exit code 1 or 2). config_required: --config was given. */
int run_agent(const char *config_path, bool config_required);
/* run_agent with an inbox engine (inbox_feed.h; NULL: none, as run_agent): the inboxes
 * of inbox leases are handed to it and its events reported. */
int run_agent_with(const char *config_path, bool config_required,
                   const inbox_feed_engine *inbox_engine);
/* Checks config, token, spool directory, reachability of the control plane with the
 * token, and io_uring; one plain line per finding. 0 when all is well, else 1. */
int run_check(const char *config_path, bool config_required);
/* Many concurrent sessions need many descriptors: takes the hard limit (run, send). */
void run_raise_nofile(void);

#endif
