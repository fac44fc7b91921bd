/* Message identity: mint and verify Message-IDs that carry a send id and a MAC (see
 * msgid.h). The lease answer mints; the report handler verifies found events. */
#include "msgid.h"

#include "buf.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSGID_MAC_BYTES (MSGID_MAC_HEX / 2)
#define MSGID_SEND_ID_DIGITS 19
/* Bytes MACed: the decimal send id, '@', the lowercased domain. */
#define MSGID_MAC_INPUT_MAX (MSGID_SEND_ID_DIGITS + 1 + MSGID_DOMAIN_MAX)

struct msgid_keyring {
    char current;
    uint64_t id; /* unique per keyring made: a thread's cached contexts name it */
    EVP_MAC *hmac;
    bool accepted[MSGID_KEYS_MAX];
    unsigned char key[MSGID_KEYS_MAX][SECRET_KEY_LEN];
};

/* Each thread's keyed HMAC contexts, one per key slot, made at its first MAC under that
 * key: a MAC is then EVP_MAC_init with no key (the key's pads restored), update, final —
 * 0.18 µs against 1.06 µs for the one-shot HMAC(), which fetches SHA-256 and runs the key
 * schedule at every call (a Message-ID is minted per send, verified per found event).
 * kiln-api's FastCGI workers are threads and the keyring is shared read-only, so the
 * contexts are per thread; freed when the thread ends, or when it next uses another
 * keyring. */
typedef struct mac_cache {
    uint64_t keyring_id;
    EVP_MAC_CTX *ctx[MSGID_KEYS_MAX];
} mac_cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static atomic_uint_fast64_t keyrings_made;

static void cache_clear(mac_cache *c)
{
    for (int i = 0; i < MSGID_KEYS_MAX; i++) {
        EVP_MAC_CTX_free(c->ctx[i]);
        c->ctx[i] = NULL;
    }
}

static void cache_free(void *p)
{
    if (!p)
        return;
    cache_clear(p);
    free(p);
}

static void cache_key_make(void)
{
    (void)pthread_key_create(&cache_key, cache_free);
}

/* This thread's keyed context for slot, or NULL (out of memory). */
static EVP_MAC_CTX *keyed_ctx(const msgid_keyring *kr, int slot)
{
    pthread_once(&cache_once, cache_key_make);
    mac_cache *c = pthread_getspecific(cache_key);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c || pthread_setspecific(cache_key, c) != 0) {
            free(c);
            return NULL;
        }
    }
    if (c->keyring_id != kr->id) {
        cache_clear(c);
        c->keyring_id = kr->id;
    }
    if (!c->ctx[slot]) {
        EVP_MAC_CTX *m = EVP_MAC_CTX_new(kr->hmac);
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end(),
        };
        if (!m || EVP_MAC_init(m, kr->key[slot], SECRET_KEY_LEN, params) != 1) {
            EVP_MAC_CTX_free(m);
            return NULL;
        }
        c->ctx[slot] = m;
    }
    return c->ctx[slot];
}

/* A key id's slot (0..35), or -1 when c is not one of [0-9a-z]. */
static int key_slot(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'z')
        return 10 + (c - 'a');
    return -1;
}

/* HKDF-SHA256 of master with a fixed salt and the key id in the label, so a new key id
 * is a new, unrelated message key and the secrets' sealing key is never used as is. */
static int derive(const secret_key *master, char kid, unsigned char out[SECRET_KEY_LEN])
{
    static const char salt[] = "kiln/message-id";
    char info[32];
    int n = snprintf(info, sizeof info, "kiln/message-id/v1/%c", kid);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    int rc = -1;
    if (!ctx || n < 0 || (size_t)n >= sizeof info)
        goto out;
    unsigned char ikm[SECRET_KEY_LEN];
    memcpy(ikm, master->key, sizeof ikm);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm, sizeof ikm),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, sizeof salt - 1),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, (size_t)n),
        OSSL_PARAM_construct_end(),
    };
    rc = EVP_KDF_derive(ctx, out, SECRET_KEY_LEN, params) == 1 ? 0 : -1;
    OPENSSL_cleanse(ikm, sizeof ikm);
out:
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

msgid_keyring *msgid_keyring_new(const secret_key *master, const char *current,
                                 const char *accepted, char *err, size_t errlen)
{
    if (!current || strlen(current) != 1 || key_slot(current[0]) < 0) {
        snprintf(err, errlen, "KILN_MESSAGE_KEY_ID=%s: expected one character of [0-9a-z]",
                 current ? current : "");
        return NULL;
    }
    msgid_keyring *kr = calloc(1, sizeof *kr);
    if (!kr) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    kr->current = current[0];
    kr->id = atomic_fetch_add(&keyrings_made, 1) + 1;
    kr->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!kr->hmac) {
        snprintf(err, errlen, "HMAC not available from OpenSSL");
        msgid_keyring_free(kr);
        return NULL;
    }
    kr->accepted[key_slot(current[0])] = true;
    /* "1,2": key ids separated by commas, nothing else. */
    for (const char *p = accepted ? accepted : ""; *p;) {
        int slot = key_slot(*p);
        if (slot < 0 || (p[1] != ',' && p[1] != '\0') || (p[1] == ',' && p[2] == '\0')) {
            snprintf(err, errlen,
                     "KILN_MESSAGE_KEY_IDS_ACCEPTED=%s: expected key ids of one character of "
                     "[0-9a-z] separated by commas, like 1,2",
                     accepted);
            msgid_keyring_free(kr);
            return NULL;
        }
        kr->accepted[slot] = true;
        p += p[1] == ',' ? 2 : 1;
    }
    for (int slot = 0; slot < MSGID_KEYS_MAX; slot++) {
        char kid = (char)(slot < 10 ? '0' + slot : 'a' + (slot - 10));
        if (kr->accepted[slot] && derive(master, kid, kr->key[slot]) != 0) {
            snprintf(err, errlen, "message key %c: HKDF-SHA256 failed", kid);
            msgid_keyring_free(kr);
            return NULL;
        }
    }
    return kr;
}

void msgid_keyring_free(msgid_keyring *kr)
{
    if (!kr)
        return;
    EVP_MAC_free(kr->hmac);
    OPENSSL_cleanse(kr, sizeof *kr);
    free(kr);
}

bool msgid_domain_ok(const char *domain, size_t len)
{
    if (len == 0 || len > MSGID_DOMAIN_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)domain[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* The truncated MAC of (send_id, domain) under the key in slot. */
static bool mac_of(const msgid_keyring *kr, int slot, int64_t send_id, const char *domain,
                   size_t dlen, unsigned char mac[MSGID_MAC_BYTES])
{
    char in[MSGID_MAC_INPUT_MAX + FMT_I64_MAX + 1];
    size_t n = fmt_i64(in, send_id);
    in[n++] = '@';
    if (n + dlen > MSGID_MAC_INPUT_MAX)
        return false;
    for (size_t i = 0; i < dlen; i++) {
        char c = domain[i];
        in[n + i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    unsigned char full[EVP_MAX_MD_SIZE];
    size_t full_len = 0;
    EVP_MAC_CTX *m = keyed_ctx(kr, slot);
    if (!m || EVP_MAC_init(m, NULL, 0, NULL) != 1 ||
        EVP_MAC_update(m, (const unsigned char *)in, n + dlen) != 1 ||
        EVP_MAC_final(m, full, &full_len, sizeof full) != 1 || full_len < MSGID_MAC_BYTES)
        return false;
    memcpy(mac, full, MSGID_MAC_BYTES);
    OPENSSL_cleanse(full, sizeof full);
    return true;
}

int msgid_mint(const msgid_keyring *kr, int64_t send_id, const char *domain, char out[MSGID_MAX])
{
    static const char hexdigits[] = "0123456789abcdef";
    size_t dlen = domain ? strlen(domain) : 0;
    unsigned char mac[MSGID_MAC_BYTES];
    if (!kr || send_id < 1 || !msgid_domain_ok(domain, dlen) ||
        !mac_of(kr, key_slot(kr->current), send_id, domain, dlen, mac))
        return -1;
    /* "<id.k" + MAC hex + "@": at most 1 + 19 + 2 + MSGID_MAC_HEX + 1 bytes */
    char head[1 + FMT_I64_MAX + 2 + MSGID_MAC_HEX + 1];
    size_t n = 0;
    head[n++] = '<';
    n += fmt_i64(head + n, send_id);
    head[n++] = '.';
    head[n++] = kr->current;
    for (size_t i = 0; i < MSGID_MAC_BYTES; i++) {
        head[n++] = hexdigits[mac[i] >> 4];
        head[n++] = hexdigits[mac[i] & 15];
    }
    head[n++] = '@';
    if (n + dlen + 2 > MSGID_MAX)
        return -1;
    memcpy(out, head, n);
    for (size_t i = 0; i < dlen; i++) {
        char c = domain[i];
        out[n + i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    out[n + dlen] = '>';
    out[n + dlen + 1] = '\0';
    return (int)(n + dlen + 1);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return 10 + (c - 'a');
    return -1; /* kiln mints lowercase only */
}

int64_t msgid_verify(const msgid_keyring *kr, const char *text, size_t len)
{
    /* shortest: <1.k + MAC + @d> */
    if (!kr || !text || len < 1 + 1 + 1 + 1 + MSGID_MAC_HEX + 1 + 1 + 1 || len >= MSGID_MAX ||
        text[0] != '<' || text[len - 1] != '>')
        return -1;
    size_t i = 1;
    uint64_t send_id = 0;
    /* 1 to 19 digits without a leading zero, at most INT64_MAX */
    if (text[i] < '1' || text[i] > '9')
        return -1;
    for (; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
        if (i > MSGID_SEND_ID_DIGITS)
            return -1;
        send_id = send_id * 10 + (uint64_t)(text[i] - '0');
    }
    /* then '.', the key id, the MAC, '@', a domain of at least one byte, '>' */
    if (send_id > (uint64_t)INT64_MAX || i + 2 + MSGID_MAC_HEX + 3 > len || text[i] != '.')
        return -1;
    int slot = key_slot(text[i + 1]);
    if (slot < 0 || !kr->accepted[slot])
        return -1;
    i += 2;
    unsigned char mac[MSGID_MAC_BYTES];
    for (size_t b = 0; b < MSGID_MAC_BYTES; b++) {
        int hi = hex_value(text[i + 2 * b]), lo = hex_value(text[i + 2 * b + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        mac[b] = (unsigned char)(hi << 4 | lo);
    }
    i += MSGID_MAC_HEX;
    if (text[i] != '@')
        return -1;
    const char *domain = text + i + 1;
    size_t dlen = len - 1 - (i + 1);
    unsigned char want[MSGID_MAC_BYTES];
    if (!msgid_domain_ok(domain, dlen) || !mac_of(kr, slot, (int64_t)send_id, domain, dlen, want))
        return -1;
    return CRYPTO_memcmp(mac, want, sizeof mac) == 0 ? (int64_t)send_id : -1;
}
