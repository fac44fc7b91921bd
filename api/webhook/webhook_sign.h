/* The pure side of webhook delivery: the Kiln-Signature header and the retry schedule.
 * No I/O and no clock: the worker hands in the time and the randomness, so both are
 * unit-tested exactly (tests/api/test_webhook_sign.c). */
#ifndef KILN_WEBHOOK_SIGN_H
#define KILN_WEBHOOK_SIGN_H

#include <stddef.h>
#include <stdint.h>

/* "whsec_" + 64 hex digits: the secret a tenant is shown once, at creation. */
#define WEBHOOK_SECRET_PREFIX "whsec_"
#define WEBHOOK_SECRET_LEN (sizeof WEBHOOK_SECRET_PREFIX - 1 + 64)
/* "t=<unix s>,v1=<64 hex>" fits in this with room to spare. */
#define WEBHOOK_SIGNATURE_MAX 96

/* Writes a fresh random secret (WEBHOOK_SECRET_LEN characters + NUL) into out. */
void webhook_secret_new(char out[WEBHOOK_SECRET_LEN + 1]);

/* The Kiln-Signature value for body sent at unix time t:
 * "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>." body)>". The HMAC key is the secret's text
 * as shown to the tenant (all of "whsec_..."). Returns 0, or -1 when out is too small
 * or the HMAC fails. */
int webhook_signature(const char *secret, size_t secret_len, int64_t t, const char *body,
                      size_t body_len, char *out, size_t outlen);

/* The retry schedule: after the n-th failed attempt (n >= 1) the next one waits
 * base_ms * 2^(n-1), capped at max_ms, with "equal jitter": a uniform draw from the upper
 * half of that delay, so retries of one outage spread out yet never come sooner than half
 * the schedule. jitter is a random value in [0, 1). */
int64_t webhook_backoff_ms(int64_t attempts, int64_t base_ms, int64_t max_ms, double jitter);

#endif
