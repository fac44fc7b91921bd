/* Metrics endpoint (see metrics_http.h). One connection at a time is plenty for a
 * scraper; each is bounded by a receive timeout so a stuck client cannot hold it. */
#include "metrics_http.h"

#include "log.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct metrics_http {
    engine *e;
    metrics_http_extra_fn extra;
    void *extra_arg;
    int fd;
    int port;
    atomic_bool stop;
    pthread_t thread;
};

static void serve_one(metrics_http *m, int fd)
{
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char req[2048];
    size_t got = 0;
    while (got < sizeof req - 1) {
        ssize_t r = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
            break;
    }
    buf body = BUF_INIT, resp = BUF_INIT;
    bool is_get = got >= 4 && !memcmp(req, "GET ", 4);
    if (is_get) {
        if (m->e)
            engine_metrics(m->e, &body);
        if (m->extra)
            m->extra(m->extra_arg, &body);
    } else
        buf_puts(&body, "only GET\n");
    buf_printf(&resp,
               "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
               "Content-Length: %zu\r\nConnection: close\r\n\r\n",
               is_get ? "200 OK" : "405 Method Not Allowed", body.len);
    buf_append(&resp, body.data, body.len);
    size_t off = 0;
    while (off < resp.len) {
        ssize_t w = send(fd, resp.data + off, resp.len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    buf_free(&body);
    buf_free(&resp);
}

static void *metrics_main(void *arg)
{
    metrics_http *m = arg;
    while (!atomic_load(&m->stop)) {
        struct pollfd pfd = {.fd = m->fd, .events = POLLIN};
        int rc = poll(&pfd, 1, 200);
        if (rc <= 0)
            continue;
        int c = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        serve_one(m, c);
        close(c);
    }
    return NULL;
}

/* addr:port as a URL authority, IPv6 in brackets, for messages. */
static void format_authority(const char *addr, int port, char *out, size_t outlen)
{
    bool v6 = strchr(addr, ':') != NULL;
    snprintf(out, outlen, "%s%s%s:%d", v6 ? "[" : "", addr, v6 ? "]" : "", port);
}

/* Fills sa from an IPv4 or IPv6 literal and port; 0, or -1 when addr is neither. */
static int sockaddr_from_literal(const char *addr, int port, struct sockaddr_storage *sa,
                                 socklen_t *salen)
{
    memset(sa, 0, sizeof *sa);
    struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *salen = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *salen = sizeof *a6;
        return 0;
    }
    return -1;
}

metrics_http *metrics_http_start(engine *e, const char *addr, int port, metrics_http_extra_fn extra,
                                 void *extra_arg, char *err, size_t errlen)
{
    char where[80];
    format_authority(addr, port, where, sizeof where);
    struct sockaddr_storage sa;
    socklen_t salen;
    if (sockaddr_from_literal(addr, port, &sa, &salen) < 0) {
        snprintf(err, errlen, "metrics address %s: expected an IPv4 or IPv6 address", addr);
        return NULL;
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "metrics socket for %s: %s", where, strerror(errno));
        return NULL;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* "::" means every address, IPv4 included, whatever net.ipv6.bindv6only says. */
    if (sa.ss_family == AF_INET6 &&
        IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&sa)->sin6_addr))
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, (struct sockaddr *)&sa, salen) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
        snprintf(err, errlen, "metrics on %s: %s", where, strerror(errno));
        close(fd);
        return NULL;
    }
    metrics_http *m = xcalloc(1, sizeof *m);
    m->e = e;
    m->extra = extra;
    m->extra_arg = extra_arg;
    m->fd = fd;
    m->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                             : ((struct sockaddr_in *)&sa)->sin_port);
    atomic_init(&m->stop, false);
    if (pthread_create(&m->thread, NULL, metrics_main, m) != 0) {
        snprintf(err, errlen, "cannot start the metrics thread");
        close(fd);
        free(m);
        return NULL;
    }
    return m;
}

int metrics_http_port(const metrics_http *m)
{
    return m->port;
}

void metrics_http_stop(metrics_http *m)
{
    if (!m)
        return;
    atomic_store(&m->stop, true);
    pthread_join(m->thread, NULL);
    close(m->fd);
    free(m);
}
