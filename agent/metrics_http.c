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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct metrics_http {
    engine *e;
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
    if (is_get)
        engine_metrics(m->e, &body);
    else
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

metrics_http *metrics_http_start(engine *e, int port, char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "metrics socket: %s", strerror(errno));
        return NULL;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        snprintf(err, errlen, "metrics port 127.0.0.1:%d: %s", port, strerror(errno));
        close(fd);
        return NULL;
    }
    metrics_http *m = xcalloc(1, sizeof *m);
    m->e = e;
    m->fd = fd;
    m->port = ntohs(a.sin_port);
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
