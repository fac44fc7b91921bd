/* The FastCGI side of kiln-api (the only file that knows libfcgi): N worker threads,
 * each with its own database connection, accept requests on one socket, read the
 * body (bounded), dispatch through the router and write the response. */
#ifndef KILN_SERVER_H
#define KILN_SERVER_H

#include "app.h"
#include "router.h"

/* Serves routes until SIGTERM/SIGINT. Returns a process exit code. */
int server_run(app *a, const route_table *routes);

#endif
