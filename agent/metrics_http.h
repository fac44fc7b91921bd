/* The agent's Prometheus endpoint: a tiny HTTP/1.0 server on 127.0.0.1 on its own
 * thread (never on an I/O thread), answering every GET with engine_metrics. */
#ifndef KILN_METRICS_HTTP_H
#define KILN_METRICS_HTTP_H

#include "engine.h"

#include <stddef.h>

typedef struct metrics_http metrics_http;

/* Binds 127.0.0.1:port (0 picks one; metrics_http_port tells which). */
metrics_http *metrics_http_start(engine *e, int port, char *err, size_t errlen);
int metrics_http_port(const metrics_http *m);
void metrics_http_stop(metrics_http *m);

#endif
