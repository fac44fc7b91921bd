/* The control-plane client: JSON POSTs to kiln-api (through nginx) with libcurl, one
 * keep-alive connection, per-call timeouts, bounded retries with jittered backoff on
 * network errors and 5xx/429, TLS verification always on for https, plain http only
 * to a loopback address. Blocking: it runs on the lease loop's control thread, never
 * on an I/O thread. Not thread-safe (one control thread owns it). */
#ifndef KILN_CONTROL_H
#define KILN_CONTROL_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct control control;

typedef struct control_config {
    const char *base_url; /* e.g. https://kiln.example.com */
    const char *token;    /* agent bearer token */
    const char *ca_file;  /* NULL/empty: system store */
    int timeout_s;        /* whole call */
    int attempts;         /* tries per call (>= 1) */
    int backoff_base_ms;  /* first retry after ~this, doubling, +-50 % jitter */
    int backoff_max_ms;
} control_config;

/* The outcome of one call after its retries. */
typedef struct control_resp {
    long status;        /* HTTP status; 0 when no answer came */
    buf body;           /* response body (owned; control_resp_free) */
    char error[256];    /* transport error or the JSON error's code+message */
    char err_code[64];  /* {"error":{"code":..}} when present */
    char err_field[96]; /* {"error":{"field":..}} when present */
} control_resp;

/* NULL with a reason when the URL is neither https nor loopback http, or curl fails. */
control *control_new(const control_config *cfg, char *err, size_t errlen);
void control_free(control *c);
/* POSTs body (JSON) to base_url + path. Retries transport errors, 429 and 5xx up to
 * cfg.attempts times unless *abort becomes true. Returns 0 when an HTTP answer came
 * (any status: see resp->status), -1 when none did. */
int control_post(control *c, const char *path, const char *body, size_t n, control_resp *resp,
                 const volatile bool *abort);
/* GET base_url + path, one try (for checks). Same return as control_post. */
int control_get(control *c, const char *path, control_resp *resp);
void control_resp_free(control_resp *r);

/* Delay before retry number attempt (1-based): base * 2^(attempt-1), capped, times a
 * factor in [0.5, 1.5) drawn from u in [0,1). Pure, for tests. */
int control_backoff_ms(int base_ms, int max_ms, int attempt, double u);

#endif
