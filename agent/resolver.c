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
    int gai_error; /* 0 when addr is valid */
    struct sockaddr_storage addr;
    socklen_t addrlen;
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
            memcpy(&e->addr, res->ai_addr, res->ai_addrlen);
            e->addrlen = res->ai_addrlen;
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

int resolver_lookup(resolver *r, const char *host, int port, int notify_fd, int64_t now_ms,
                    struct sockaddr_storage *addr, socklen_t *addrlen, int *permanent, char *err,
                    size_t errlen)
{
    memset(addr, 0, sizeof *addr);
    *permanent = 0;
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *addrlen = sizeof *a4;
        return RESOLVER_OK;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *addrlen = sizeof *a6;
        return RESOLVER_OK;
    }
    int result;
    pthread_mutex_lock(&r->mu);
    struct entry *e = r->entries;
    while (e && strcmp(e->host, host) != 0)
        e = e->next;
    if (e && !e->pending && e->expires_ms > now_ms) {
        if (e->gai_error == 0) {
            memcpy(addr, &e->addr, e->addrlen);
            *addrlen = e->addrlen;
            set_port(addr, port);
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
