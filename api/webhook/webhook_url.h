/* Validation of a webhook endpoint's URL: what kiln will POST events to. Pure (no DNS):
 * the worker connects to whatever the host resolves to when it delivers. */
#ifndef KILN_WEBHOOK_URL_H
#define KILN_WEBHOOK_URL_H

#include <stdbool.h>
#include <stddef.h>

#define WEBHOOK_URL_MAX 2048

/* Checks url: 1..WEBHOOK_URL_MAX bytes of printable ASCII (no spaces: percent-encode),
 * scheme https (or http when allow_http, or when the host is a loopback one: localhost,
 * 127.0.0.0/8, [::1]), a valid host name or IP literal, an optional port 1..65535, no
 * user info ("user:pass@") and no fragment. Returns NULL when acceptable, else why not
 * (a static sentence naming the URL part). */
const char *webhook_url_problem(const char *url, bool allow_http);
/* The same rules for a stored URL about to be delivered to, but a port written with
 * leading zeros passes (libcurl reads "08443" as 8443; registration has refused the form
 * since session 32, and an endpoint stored before keeps working). A sign never passes. */
const char *webhook_url_deliverable(const char *url, bool allow_http);

#endif
