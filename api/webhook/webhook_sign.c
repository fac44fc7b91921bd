/* Kiln-Signature and the retry schedule (see webhook_sign.h). */
#include "webhook_sign.h"

#include "codec.h"
#include "rand.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void webhook_secret_new(char out[WEBHOOK_SECRET_LEN + 1])
{
    unsigned char raw[32];
    size_t prefix = sizeof WEBHOOK_SECRET_PREFIX - 1;
    random_bytes(raw, sizeof raw);
    memcpy(out, WEBHOOK_SECRET_PREFIX, prefix);
    hex_encode(raw, sizeof raw, out + prefix);
}

int webhook_signature(const char *secret, size_t secret_len, int64_t t, const char *body,
                      size_t body_len, char *out, size_t outlen)
{
    /* HMAC() is OpenSSL 3's non-deprecated one-shot: sign one contiguous "<t>.<body>". */
    buf msg = BUF_INIT;
    buf_printf(&msg, "%lld.", (long long)t);
    buf_append(&msg, body, body_len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    bool ok = HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)msg.data, msg.len,
                   mac, &mac_len) != NULL &&
              mac_len == 32;
    buf_free(&msg);
    if (!ok)
        return -1;
    char hex[65];
    hex_encode(mac, mac_len, hex);
    int n = snprintf(out, outlen, "t=%lld,v1=%s", (long long)t, hex);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

int64_t webhook_backoff_ms(int64_t attempts, int64_t base_ms, int64_t max_ms, double jitter)
{
    if (attempts < 1)
        attempts = 1;
    int64_t delay = base_ms;
    for (int64_t i = 1; i < attempts && delay < max_ms; i++)
        delay *= 2;
    if (delay > max_ms)
        delay = max_ms;
    if (jitter < 0 || jitter >= 1)
        jitter = 0;
    int64_t half = delay / 2;
    return half + (int64_t)((double)(delay - half) * jitter);
}
