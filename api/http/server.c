/* FastCGI accept loop and request plumbing (see server.h). */
#include "server.h"

#include "clock.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "router.h"
#include "stats.h"
#include "xalloc.h"

#include <errno.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;
static int listen_fd = -1;
static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct worker {
    app *app;
    const route_table *routes;
    int index;
    pthread_t thread;
} worker;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
    FCGX_ShutdownPending();
    /* Wake threads blocked in accept(); they see `stopping` and leave. */
    if (listen_fd >= 0)
        shutdown(listen_fd, SHUT_RDWR);
}

/* Reads the body up to max bytes. Returns 0, 413 when too large, 400 on a short read. */
static int read_body(FCGX_Request *req, arena *pool, int64_t max, const char **body, size_t *len)
{
    const char *cl = FCGX_GetParam("CONTENT_LENGTH", req->envp);
    long long n = cl && *cl ? strtoll(cl, NULL, 10) : 0;
    *body = "";
    *len = 0;
    if (n < 0)
        return 400;
    if (n > max) {
        char sink[4096];
        while (FCGX_GetStr(sink, sizeof sink, req->in) > 0)
            ;
        return 413;
    }
    if (n == 0)
        return 0;
    char *b = arena_alloc(pool, (size_t)n + 1);
    int got = FCGX_GetStr(b, (int)n, req->in);
    if (got != n)
        return 400;
    b[n] = '\0';
    *body = b;
    *len = (size_t)n;
    return 0;
}

/* The CGI response head and body. The head is formatted here with snprintf semantics:
 * libfcgi's FCGX_FPrintF has its own printf that knows no %zu (it printed
 * "Content-Length: Cache-Control: no-store"). Every answer says Cache-Control:
 * no-store: tokens, leases and mailbox secrets must not sit in a cache. */
static void write_response(FCGX_Request *req, http_resp *rs, bool head)
{
    buf h = BUF_INIT;
    buf_printf(&h, "Status: %d %s\r\n", rs->status, http_reason(rs->status));
    if (rs->content_type)
        buf_printf(&h, "Content-Type: %s\r\n", rs->content_type);
    if (rs->status != 204)
        buf_printf(&h, "Content-Length: %zu\r\n", rs->body.len);
    buf_puts(&h, "Cache-Control: no-store\r\n");
    if (rs->headers.len)
        buf_append(&h, rs->headers.data, rs->headers.len);
    buf_puts(&h, "\r\n");
    FCGX_PutStr(h.data, (int)h.len, req->out);
    buf_free(&h);
    if (!head && rs->status != 204 && rs->body.len)
        FCGX_PutStr(rs->body.data, (int)rs->body.len, req->out);
}

/* The request path without the query; DOCUMENT_URI is nginx's normalized form. */
static const char *request_path(FCGX_Request *req, arena *pool)
{
    const char *p = FCGX_GetParam("DOCUMENT_URI", req->envp);
    if (p && *p)
        return p;
    p = FCGX_GetParam("REQUEST_URI", req->envp);
    if (!p)
        return "/";
    const char *q = strchr(p, '?');
    return q ? arena_strndup(pool, p, (size_t)(q - p)) : p;
}

static void handle(worker *w, FCGX_Request *req, db *d, arena *pool)
{
    http_req rq;
    http_resp rs;
    memset(&rq, 0, sizeof rq);
    http_resp_init(&rs);
    int64_t t0 = clock_mono_us();
    rq.pool = pool;
    rq.db = d;
    rq.app = w->app;
    rq.method = FCGX_GetParam("REQUEST_METHOD", req->envp);
    if (!rq.method)
        rq.method = "GET";
    rq.path = request_path(req, pool);
    rq.query = FCGX_GetParam("QUERY_STRING", req->envp);
    if (!rq.query)
        rq.query = "";
    rq.authorization = FCGX_GetParam("HTTP_AUTHORIZATION", req->envp);
    int rc = read_body(req, pool, w->app->cfg.max_body, &rq.body, &rq.body_len);
    if (rc == 413)
        http_error(&rs, 413, "body_too_large", "the request body is too large", NULL);
    else if (rc)
        http_error(&rs, 400, "bad_body", "the request body was shorter than Content-Length", NULL);
    else if (!utf8_valid(rq.path, strlen(rq.path)))
        http_error(&rs, 400, "invalid_path", "the path is not valid UTF-8", NULL);
    else if (!http_query_valid(&rq))
        http_error(&rs, 400, "invalid_query",
                   "the query string has a bad %-escape or is not valid UTF-8", NULL);
    else
        router_dispatch(w->routes, &rq, &rs);
    write_response(req, &rs, !strcmp(rq.method, "HEAD"));
    int64_t us = clock_mono_us() - t0;
    if (rs.status >= 500)
        log_warn("%s %s -> %d (%lld us)", rq.method, rq.path, rs.status, (long long)us);
    else
        log_debug("%s %s -> %d (%lld us)", rq.method, rq.path, rs.status, (long long)us);
    http_resp_free(&rs);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    FCGX_Request req;
    db *d = db_open(w->app->cfg.conninfo);
    arena *pool = arena_create(16384);
    if (FCGX_InitRequest(&req, listen_fd, 0) != 0) {
        log_error("worker %d: FCGX_InitRequest failed", w->index);
        goto out;
    }
    while (!stopping) {
        pthread_mutex_lock(&accept_lock);
        int rc = stopping ? -1 : FCGX_Accept_r(&req);
        pthread_mutex_unlock(&accept_lock);
        if (rc < 0)
            break;
        handle(w, &req, d, pool);
        FCGX_Finish_r(&req);
        arena_reset(pool);
    }
    FCGX_Free(&req, 1);
out:
    arena_destroy(pool);
    db_close(d);
    return NULL;
}

/* A socket inherited from systemd (LISTEN_FDS=1, LISTEN_PID=us) is fd 3. */
static int inherited_socket(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds || strtol(pid, NULL, 10) != (long)getpid() || strtol(fds, NULL, 10) < 1)
        return -1;
    return 3;
}

int server_run(app *a, const route_table *routes)
{
    if (FCGX_Init() != 0) {
        log_error("FCGX_Init failed");
        return 1;
    }
    listen_fd = inherited_socket();
    if (listen_fd >= 0) {
        log_info("using the FastCGI socket passed by systemd (fd %d)", listen_fd);
    } else {
        const char *path = a->cfg.socket_path;
        if (path[0] == '/')
            unlink(path); /* a stale socket from a killed run */
        listen_fd = FCGX_OpenSocket(path, 1024);
        if (listen_fd < 0) {
            log_error("cannot listen on %s: %s", path, strerror(errno));
            return 1;
        }
        if (path[0] == '/' && chmod(path, (mode_t)a->cfg.socket_mode) != 0)
            log_warn("chmod %s: %s", path, strerror(errno));
        log_info("listening on %s with %lld threads", path, (long long)a->cfg.threads);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    stats_start(a->stats);
    worker *workers = xcalloc((size_t)a->cfg.threads, sizeof *workers);
    for (int i = 0; i < a->cfg.threads; i++) {
        workers[i].app = a;
        workers[i].routes = routes;
        workers[i].index = i;
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            log_error("cannot start worker thread %d", i);
            exit(1);
        }
    }
    for (int i = 0; i < a->cfg.threads; i++)
        pthread_join(workers[i].thread, NULL);
    free(workers);
    stats_stop(a->stats);
    if (a->cfg.socket_path[0] == '/' && inherited_socket() < 0)
        unlink(a->cfg.socket_path);
    log_info("stopped");
    return 0;
}
