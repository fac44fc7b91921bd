/* Resolver thread with a TTL cache (see resolver.h). The cache is a short list
 * guarded by one mutex: lookups are per host, not per message, so it stays small. */
#include "resolver.h"

#include "xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct waiter {
    int fd;
    struct waiter *next;
};

struct entry {
    char *host;
    bool pending;
    int gai_error; /* 0 when addrs is valid */
    resolver_addrs addrs;
    int64_t expires_ms;
    struct waiter *waiters;
    struct entry *next;
};

struct resolver {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool stop;
    int64_t ttl_ms, negative_ttl_ms;
    struct entry *entries;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void add_addr(resolver_addrs *out, const struct addrinfo *ai)
{
    if (out->n == RESOLVER_MAX_ADDRS || ai->ai_addrlen > sizeof out->addr[0])
        return;
    for (int i = 0; i < out->n; i++) /* getaddrinfo repeats an address per protocol */
        if (out->len[i] == ai->ai_addrlen && !memcmp(&out->addr[i], ai->ai_addr, ai->ai_addrlen))
            return;
    memset(&out->addr[out->n], 0, sizeof out->addr[0]);
    memcpy(&out->addr[out->n], ai->ai_addr, ai->ai_addrlen);
    out->len[out->n++] = ai->ai_addrlen;
}

/* getaddrinfo's order (RFC 6724), families interleaved starting with the first
 * answer's (RFC 8305 §4): a dead IPv6 path costs one attempt, not all of them. */
static void keep_addrs(const struct addrinfo *res, resolver_addrs *out)
{
    out->n = 0;
    int first = res->ai_family;
    const struct addrinfo *a = res, *b = res;
    for (;;) {
        while (a && a->ai_family != first)
            a = a->ai_next;
        while (b && b->ai_family == first)
            b = b->ai_next;
        if (!a && !b)
            break;
        if (a) {
            add_addr(out, a);
            a = a->ai_next;
        }
        if (b) {
            add_addr(out, b);
            b = b->ai_next;
        }
    }
}

static void *resolver_main(void *arg)
{
    resolver *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct entry *e = r->entries;
        while (e && !(e->pending && e->expires_ms == 0))
            e = e->next;
        if (!e) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        char *host = xstrdup(e->host);
        e->expires_ms = -1; /* being looked up */
        pthread_mutex_unlock(&r->mu);

        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        int rc = getaddrinfo(host, NULL, &hints, &res);

        pthread_mutex_lock(&r->mu);
        e->pending = false;
        e->gai_error = rc;
        if (rc == 0 && res) {
            keep_addrs(res, &e->addrs);
            e->expires_ms = mono_ms() + r->ttl_ms;
        } else {
            if (rc == 0)
                e->gai_error = EAI_NONAME;
            e->expires_ms = mono_ms() + r->negative_ttl_ms;
        }
        if (res)
            freeaddrinfo(res);
        free(host);
        struct waiter *w = e->waiters;
        e->waiters = NULL;
        while (w) {
            uint64_t one = 1;
            ssize_t wr = write(w->fd, &one, sizeof one);
            (void)wr; /* an eventfd write fails only on overflow, which still wakes */
            struct waiter *next = w->next;
            free(w);
            w = next;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

resolver *resolver_create(int64_t ttl_ms, int64_t negative_ttl_ms)
{
    resolver *r = xcalloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->ttl_ms = ttl_ms;
    r->negative_ttl_ms = negative_ttl_ms;
    if (pthread_create(&r->thread, NULL, resolver_main, r) != 0) {
        fprintf(stderr, "kiln-agent: cannot start the resolver thread\n");
        abort();
    }
    return r;
}

void resolver_destroy(resolver *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    struct entry *e = r->entries;
    while (e) {
        struct entry *next = e->next;
        struct waiter *w = e->waiters;
        while (w) {
            struct waiter *wn = w->next;
            free(w);
            w = wn;
        }
        free(e->host);
        free(e);
        e = next;
    }
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static void set_port(struct sockaddr_storage *a, int port)
{
    if (a->ss_family == AF_INET)
        ((struct sockaddr_in *)a)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)a)->sin6_port = htons((uint16_t)port);
}

void resolver_addr_text(const struct sockaddr_storage *a, char *out, size_t outlen)
{
    const void *bin = a->ss_family == AF_INET6
                          ? (const void *)&((const struct sockaddr_in6 *)a)->sin6_addr
                          : (const void *)&((const struct sockaddr_in *)a)->sin_addr;
    if (!inet_ntop(a->ss_family, bin, out, (socklen_t)outlen))
        snprintf(out, outlen, "?");
}

int resolver_lookup(resolver *r, const char *host, int port, int notify_fd, int64_t now_ms,
                    resolver_addrs *out, int *permanent, char *err, size_t errlen)
{
    memset(&out->addr[0], 0, sizeof out->addr[0]);
    out->n = 0;
    *permanent = 0;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out->addr[0];
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->addr[0];
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        out->len[0] = sizeof *a4;
        out->n = 1;
        return RESOLVER_OK;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        out->len[0] = sizeof *a6;
        out->n = 1;
        return RESOLVER_OK;
    }
    int result;
    pthread_mutex_lock(&r->mu);
    struct entry *e = r->entries;
    while (e && strcmp(e->host, host) != 0)
        e = e->next;
    if (e && !e->pending && e->expires_ms > now_ms) {
        if (e->gai_error == 0) {
            *out = e->addrs;
            for (int i = 0; i < out->n; i++)
                set_port(&out->addr[i], port);
            result = RESOLVER_OK;
        } else {
            *permanent = e->gai_error == EAI_NONAME || e->gai_error == EAI_FAIL;
            snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(e->gai_error));
            result = RESOLVER_FAILED;
        }
        pthread_mutex_unlock(&r->mu);
        return result;
    }
    if (!e) {
        e = xcalloc(1, sizeof *e);
        e->host = xstrdup(host);
        e->next = r->entries;
        r->entries = e;
    }
    if (!e->pending) {
        e->pending = true;
        e->expires_ms = 0; /* queued */
        pthread_cond_signal(&r->cv);
    }
    struct waiter *w = e->waiters;
    while (w && w->fd != notify_fd)
        w = w->next;
    if (!w) {
        w = xcalloc(1, sizeof *w);
        w->fd = notify_fd;
        w->next = e->waiters;
        e->waiters = w;
    }
    pthread_mutex_unlock(&r->mu);
    return RESOLVER_PENDING;
}
