/* TLS client over memory BIOs (OpenSSL 3), sans-I/O: ciphertext from the socket goes
 * in with tls_conn_feed, ciphertext for the socket comes out with tls_conn_take, and
 * plaintext is read and written in between. The io_uring layer moves the bytes.
 * Verification is on: system CA store (or the mailbox's ca_file), host name or IP
 * checked against the certificate, SNI sent, TLS 1.2 or later. */
#ifndef KILN_TLS_CONN_H
#define KILN_TLS_CONN_H

#include "buf.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

/* A client context per CA choice; owned by the I/O thread that made it. */
typedef struct tls_ctx tls_ctx;
/* One connection's TLS state; owned by its session, freed with tls_conn_free. */
typedef struct tls_conn tls_conn;

enum tls_result {
    TLS_ERROR = -1, /* handshake or record failure; tls_conn_error says why */
    TLS_WANT = 0,   /* needs more input from the peer */
    TLS_OK = 1,     /* handshake complete */
};

/* ca_file NULL or "" means the system store. Returns NULL with err on failure. */
tls_ctx *tls_ctx_new(const char *ca_file, char *err, size_t errlen);
void tls_ctx_free(tls_ctx *c);

tls_conn *tls_conn_new(tls_ctx *c, const char *host);
void tls_conn_free(tls_conn *t);
/* Drives the handshake; call after each tls_conn_feed until TLS_OK. */
int tls_conn_handshake(tls_conn *t);
bool tls_conn_established(const tls_conn *t);
/* Ciphertext received from the peer. */
void tls_conn_feed(tls_conn *t, const void *data, size_t n);
/* Appends all decrypted plaintext available to out. Returns 0, or TLS_ERROR. A clean
 * close_notify from the peer sets *closed. */
int tls_conn_read(tls_conn *t, buf *out, bool *closed);
/* Encrypts plaintext; ciphertext becomes available through tls_conn_take. */
int tls_conn_write(tls_conn *t, const void *data, size_t n);
/* Moves all pending ciphertext to out. */
void tls_conn_take(tls_conn *t, buf *out);
const char *tls_conn_error(const tls_conn *t);

#endif
