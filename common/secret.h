/* Secrets at rest: AES-256-GCM (OpenSSL EVP) with a 32-byte key from a file.
 * Sealed format: 'k' '1' | 12-byte random nonce | ciphertext | 16-byte tag.
 * Also the hashing tokens need. Randomness is rand.h, base64 and hex codec.h. */
#ifndef KILN_SECRET_H
#define KILN_SECRET_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SECRET_KEY_LEN 32

typedef struct secret_key {
    unsigned char key[SECRET_KEY_LEN];
} secret_key;

/* Loads a key file holding 64 hex digits (whitespace ignored) or 32 raw bytes.
 * Returns 0, or -1 with a reason in err. */
int secret_key_load(const char *path, secret_key *k, char *err, size_t errlen);
/* Writes a fresh random key as hex to path, mode 0600; fails if path exists. */
int secret_key_generate(const char *path, char *err, size_t errlen);

/* Seals plaintext into out (appends). aad may be NULL. Returns 0 or -1. */
int secret_seal(const secret_key *k, const void *plain, size_t n, const char *aad, buf *out);
/* Opens a sealed blob into out (appends). Returns 0, or -1 when tampered/wrong key. */
int secret_open(const secret_key *k, const void *sealed, size_t n, const char *aad, buf *out);

/* SHA-256 of data, as 64 hex digits + NUL. */
void sha256_hex(const void *data, size_t n, char out[65]);
/* Constant-time equality of two equal-length byte strings. */
bool ct_equal(const void *a, const void *b, size_t n);

#endif
