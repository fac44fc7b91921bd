/* The agent's Prometheus endpoint: a tiny HTTP/1.0 server on its own thread (never on an
 * I/O thread), answering every GET with engine_metrics and the lease loop's own metrics
 * when given. It listens on 127.0.0.1 unless told otherwise (KILN_AGENT_METRICS_ADDR,
 * --metrics-addr): a pod or a host scraped from elsewhere needs 0.0.0.0 or ::. */
#ifndef KILN_METRICS_HTTP_H
#define KILN_METRICS_HTTP_H

#include "engine.h"

#include <stddef.h>

typedef struct metrics_http metrics_http;

/* Binds addr:port. addr is an IPv4 or IPv6 literal (127.0.0.1, 0.0.0.0, ::1, ::; "::"
 * also answers IPv4); port 0 picks one (metrics_http_port tells which). NULL with a
 * reason in err when the address is not a literal or cannot be bound. */
/* e may be NULL (kiln-agent inbox: no SMTP engine, extra alone). After the engine's
 * metrics, extra (when not NULL) appends its own, on the metrics
 * thread: it must only read state that is safe to read from there. */
typedef void (*metrics_http_extra_fn)(void *arg, buf *out);
metrics_http *metrics_http_start(engine *e, const char *addr, int port, metrics_http_extra_fn extra,
                                 void *extra_arg, char *err, size_t errlen);
int metrics_http_port(const metrics_http *m);
void metrics_http_stop(metrics_http *m);

#endif
