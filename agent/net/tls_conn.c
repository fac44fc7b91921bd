/* TLS over memory BIOs (see tls_conn.h). The read BIO receives what the socket
 * delivered; the write BIO collects what must go to the socket. */
#include "tls_conn.h"

#include "xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A CA bundle is a few hundred KiB at most; anything larger is not one. */
#define CA_FILE_MAX (4 << 20)

struct tls_ctx {
    SSL_CTX *ssl;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio; /* network -> SSL */
    BIO *wbio; /* SSL -> network */
    bool established;
    char error[200];
};

/* Reads a PEM CA file into the context's store. The file must be a regular file of at
 * most CA_FILE_MAX bytes, opened without blocking, so a path naming a FIFO or a device
 * (a lease names the path) can never stall the thread that loads it. */
static int load_ca_file(SSL_CTX *ssl, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot load CA %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CA_FILE_MAX) {
        snprintf(err, errlen, "cannot load CA %s: not a regular file of at most 4 MiB", path);
        close(fd);
        return -1;
    }
    size_t cap = (size_t)st.st_size, n = 0;
    char *data = xmalloc(cap + 1);
    while (n < cap) {
        ssize_t r = read(fd, data + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    int added = 0;
    BIO *b = BIO_new_mem_buf(data, (int)n);
    STACK_OF(X509_INFO) *infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;
    X509_STORE *store = SSL_CTX_get_cert_store(ssl);
    for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *xi = sk_X509_INFO_value(infos, i);
        if (xi->x509 && X509_STORE_add_cert(store, xi->x509) == 1)
            added++;
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(b);
    free(data);
    ERR_clear_error();
    if (added == 0) {
        snprintf(err, errlen, "cannot load CA %s: no PEM certificate in it", path);
        return -1;
    }
    return 0;
}

tls_ctx *tls_ctx_new(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ssl = SSL_CTX_new(TLS_client_method());
    if (!ssl) {
        snprintf(err, errlen, "SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (ca_file && ca_file[0]) {
        if (load_ca_file(ssl, ca_file, err, errlen) != 0) {
            SSL_CTX_free(ssl);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ssl) != 1) {
        snprintf(err, errlen, "cannot load CA store");
        SSL_CTX_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    tls_ctx *c = xcalloc(1, sizeof *c);
    c->ssl = ssl;
    return c;
}

void tls_ctx_free(tls_ctx *c)
{
    if (!c)
        return;
    SSL_CTX_free(c->ssl);
    free(c);
}

tls_conn *tls_conn_new(tls_ctx *c, const char *host)
{
    tls_conn *t = xcalloc(1, sizeof *t);
    t->ssl = SSL_new(c->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        fprintf(stderr, "kiln-agent: out of memory creating a TLS session\n");
        abort();
    }
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(vp, host);
    } else {
        SSL_set_tlsext_host_name(t->ssl, host);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(t->ssl, host);
    }
    return t;
}

void tls_conn_free(tls_conn *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
}

static int tls_fail(tls_conn *t, int rc)
{
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return TLS_WANT;
    long vr = SSL_get_verify_result(t->ssl);
    if (vr != X509_V_OK) {
        snprintf(t->error, sizeof t->error, "certificate verification failed: %s",
                 X509_verify_cert_error_string(vr));
    } else {
        unsigned long ec = ERR_get_error();
        char es[160] = "";
        if (ec)
            ERR_error_string_n(ec, es, sizeof es);
        snprintf(t->error, sizeof t->error, "TLS error: %s",
                 es[0] ? es : (e == SSL_ERROR_ZERO_RETURN ? "closed" : "protocol error"));
    }
    ERR_clear_error();
    return TLS_ERROR;
}

int tls_conn_handshake(tls_conn *t)
{
    if (t->established)
        return TLS_OK;
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->established = true;
        return TLS_OK;
    }
    return tls_fail(t, rc);
}

bool tls_conn_established(const tls_conn *t)
{
    return t->established;
}

void tls_conn_feed(tls_conn *t, const void *data, size_t n)
{
    if (n)
        BIO_write(t->rbio, data, (int)n);
}

int tls_conn_read(tls_conn *t, buf *out, bool *closed)
{
    *closed = false;
    for (;;) {
        buf_reserve(out, 4096);
        int rc = SSL_read(t->ssl, out->data + out->len, 4096);
        if (rc > 0) {
            out->len += (size_t)rc;
            out->data[out->len] = '\0';
            continue;
        }
        int e = SSL_get_error(t->ssl, rc);
        if (e == SSL_ERROR_ZERO_RETURN) {
            *closed = true;
            return 0;
        }
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        return tls_fail(t, rc);
    }
}

int tls_conn_write(tls_conn *t, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        int rc = SSL_write(t->ssl, p, (int)(n > 16384 ? 16384 : n));
        if (rc <= 0) {
            /* memory BIOs never block a write, so any failure is final */
            tls_fail(t, rc);
            return TLS_ERROR;
        }
        p += rc;
        n -= (size_t)rc;
    }
    return 0;
}

void tls_conn_take(tls_conn *t, buf *out)
{
    size_t pending = BIO_ctrl_pending(t->wbio);
    if (!pending)
        return;
    buf_reserve(out, pending);
    int rc = BIO_read(t->wbio, out->data + out->len, (int)pending);
    if (rc > 0) {
        out->len += (size_t)rc;
        out->data[out->len] = '\0';
    }
}

const char *tls_conn_error(const tls_conn *t)
{
    return t->error[0] ? t->error : "TLS error";
}
