/* AES-256-GCM sealing of secrets and token hashing (see secret.h). */
#include "secret.h"

#include "codec.h"
#include "rand.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define HDR_LEN 2

int secret_key_load(const char *path, secret_key *k, char *err, size_t errlen)
{
    unsigned char raw[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open secret key file %s: %s", path, strerror(errno));
        return -1;
    }
    ssize_t n = read(fd, raw, sizeof raw);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "cannot read secret key file %s: %s", path, strerror(errno));
        return -1;
    }
    if (n == SECRET_KEY_LEN) {
        memcpy(k->key, raw, SECRET_KEY_LEN);
        return 0;
    }
    size_t got = 0;
    int hi = -1;
    for (ssize_t i = 0; i < n; i++) {
        if (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\r' || raw[i] == '\t')
            continue;
        int v = hex_value(raw[i]);
        if (v < 0 || got >= SECRET_KEY_LEN)
            goto bad;
        if (hi < 0) {
            hi = v;
        } else {
            k->key[got++] = (unsigned char)(hi << 4 | v);
            hi = -1;
        }
    }
    if (got == SECRET_KEY_LEN && hi < 0)
        return 0;
bad:
    OPENSSL_cleanse(k->key, sizeof k->key);
    snprintf(err, errlen, "secret key file %s must hold 64 hex digits or 32 raw bytes", path);
    return -1;
}

int secret_key_generate(const char *path, char *err, size_t errlen)
{
    unsigned char key[SECRET_KEY_LEN];
    char hex[SECRET_KEY_LEN * 2 + 2];
    random_bytes(key, sizeof key);
    hex_encode(key, sizeof key, hex);
    OPENSSL_cleanse(key, sizeof key);
    size_t len = strlen(hex);
    hex[len++] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    ssize_t w = write(fd, hex, len);
    OPENSSL_cleanse(hex, sizeof hex);
    if (w != (ssize_t)len || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int secret_seal(const secret_key *k, const void *plain, size_t n, const char *aad, buf *out)
{
    unsigned char nonce[NONCE_LEN];
    random_bytes(nonce, sizeof nonce);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int rc = -1, len = 0;
    if (!ctx)
        return -1;
    buf_reserve(out, HDR_LEN + NONCE_LEN + n + TAG_LEN);
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = 'k';
    p[1] = '1';
    memcpy(p + HDR_LEN, nonce, NONCE_LEN);
    unsigned char *ct = p + HDR_LEN + NONCE_LEN;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, k->key, nonce) != 1)
        goto out;
    if (aad &&
        EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) != 1)
        goto out;
    if (EVP_EncryptUpdate(ctx, ct, &len, plain, (int)n) != 1)
        goto out;
    int fin = 0;
    if (EVP_EncryptFinal_ex(ctx, ct + len, &fin) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + n) != 1)
        goto out;
    out->len += HDR_LEN + NONCE_LEN + n + TAG_LEN;
    out->data[out->len] = '\0';
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int secret_open(const secret_key *k, const void *sealed, size_t n, const char *aad, buf *out)
{
    const unsigned char *s = sealed;
    if (n < HDR_LEN + NONCE_LEN + TAG_LEN || s[0] != 'k' || s[1] != '1')
        return -1;
    size_t ct_len = n - HDR_LEN - NONCE_LEN - TAG_LEN;
    const unsigned char *nonce = s + HDR_LEN;
    const unsigned char *ct = nonce + NONCE_LEN;
    unsigned char tag[TAG_LEN];
    memcpy(tag, ct + ct_len, TAG_LEN);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int rc = -1, len = 0, fin = 0;
    if (!ctx)
        return -1;
    buf_reserve(out, ct_len + 16);
    unsigned char *p = (unsigned char *)out->data + out->len;
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, k->key, nonce) != 1)
        goto out;
    if (aad &&
        EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) != 1)
        goto out;
    if (EVP_DecryptUpdate(ctx, p, &len, ct, (int)ct_len) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(ctx, p + len, &fin) != 1) {
        OPENSSL_cleanse(p, ct_len);
        goto out;
    }
    out->len += ct_len;
    out->data[out->len] = '\0';
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

void sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
    hex_encode(md, 32, out);
}

bool ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
