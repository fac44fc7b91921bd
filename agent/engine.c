/* The sending engine (see engine.h). Each I/O thread owns a ring, a session table,
 * a timer heap and its hosts; it shares nothing with the others but the inbox it is
 * fed through, the resolver and the result queue. The protocol lives in
 * smtp_session and tls_conn; this file only moves bytes, timers and slots. */
#include "engine.h"

#include "clock.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "resolver.h"
#include "rand.h"
#include "smtp_message.h"
#include "tls_conn.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/sockios.h>
#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECV_BUF_SIZE 2048
#define HOST_BUCKETS 1024
/* While the kernel still holds unacknowledged bytes of a message, how often the
 * session looks whether the peer is still taking them. */
#define UPLOAD_POLL_MS 250

/* io_uring operations, the top byte of user_data. */
enum op { OP_EVENTFD = 1, OP_CONNECT, OP_RECV, OP_SEND, OP_LINK_TIMEOUT, OP_CLOSE, OP_CANCEL };

/* user_data = op (8 bits) | generation (24 bits) | session index (32 bits) */
static uint64_t ud_make(int op, uint32_t gen, uint32_t idx)
{
    return ((uint64_t)op << 56) | ((uint64_t)(gen & 0xFFFFFF) << 32) | idx;
}
static int ud_op(uint64_t ud)
{
    return (int)(ud >> 56);
}
static uint32_t ud_gen(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & 0xFFFFFF;
}
static uint32_t ud_idx(uint64_t ud)
{
    return (uint32_t)ud;
}

/* A submitted mailbox; freed when its last slot has a final result. */
struct mbox {
    job_mailbox *m;
    int64_t lease_start_ms;
    int64_t deadline_ms;
    uint64_t lease_key; /* engine_extend moves deadline_ms of every mbox with this key */
    unsigned ext_seen;  /* the extension table's version deadline_ms reflects */
    size_t remaining;
};

struct lease_ext {
    uint64_t key;
    int64_t deadline_ms;
};

/* Slots of one mailbox to be sent together by one session. */
struct work {
    struct mbox *mb;
    struct host *host;
    uint32_t *sends; /* indices into mb->m->sends */
    size_t n;
    int attempt;
    int64_t due_ms;
    int64_t wake_ms;   /* heap key: due_ms, or earlier to end it at its lease deadline */
    struct work *next; /* host wait queue */
};

enum dns_state { DNS_NONE, DNS_PENDING, DNS_OK };

/* A destination's limits, shared by every I/O thread that talks to it, so the
 * configured per-host caps hold for the agent as a whole. */
struct shared_host {
    char *name;
    int port;
    pthread_mutex_t mu;
    host_shaper shaper;
    uint64_t waiters; /* bit (thread id % 64): a thread held back by SHAPER_FULL */
    struct shared_host *next;
};

/* A destination as one I/O thread sees it: its DNS answer and its queue of work. */
struct host {
    char *name;
    int port;
    struct shared_host *sh;
    int dns;
    resolver_addrs addrs;
    int addr_first; /* where sessions start: moves past an address that failed */
    int64_t addr_expires_ms;
    struct work *wait_head, *wait_tail;
    int64_t blocked_until_ms; /* shaper said wait */
    bool queued;              /* on the thread's ready list */
    struct host *ready_next;
    struct host *hash_next;
};

enum conn_phase { CONN_FREE, CONN_CONNECTING, CONN_TLS, CONN_SMTP, CONN_CLOSING };

/* Where the current message's payload is (state SMTP_S_DOT). The end-of-data timer
 * runs only once the peer has every byte (RFC 5321 §4.5.3.2.6); until then a
 * progress timer (data block, §4.5.3.2.5) bounds each step of the upload. */
enum upload {
    UPLOAD_NONE,   /* no payload on its way */
    UPLOAD_USER,   /* bytes (the final dot among them) still in our buffers */
    UPLOAD_KERNEL, /* all in the socket; the peer has not acknowledged them all */
    UPLOAD_DONE,   /* the peer has it all: waiting for the end-of-data reply */
};

/* One session slot of the preallocated table. */
struct conn {
    uint32_t idx;
    uint32_t gen;
    int phase;
    int fd;
    int inflight; /* operations (not link timeouts) still owned by the kernel */
    bool recv_posted, send_posted;
    bool close_after_send;
    bool host_ok; /* the host answered properly (breaker bookkeeping) */
    bool greeted;
    bool gated;              /* the current slot's payload waits for its intent to be durable */
    bool recv_cancel_posted; /* the pending recv is being taken back to re-arm its timer */
    uint8_t upload;          /* enum upload */
    uint8_t addr_idx;        /* the host address being tried */
    uint8_t addrs_tried;     /* addresses that failed to connect in this session */
    struct work *w;
    struct host *host;
    tls_conn *tls;
    smtp_session smtp;
    smtp_slot *slots;
    buf payload; /* the slots' DATA payloads */
    buf sendq;   /* bytes waiting to be sent */
    buf sending; /* bytes owned by the send in flight */
    int64_t start_ms;
    /* The reply awaited must be complete by then, however its bytes trickle in
     * (Postfix's smtp_per_record_deadline); the lease deadline bounds it too. */
    int64_t reply_deadline_ms;
    int64_t recv_armed_ms; /* when the pending recv's linked timeout fires */
    int64_t upload_progress_ms;
    int upload_outq; /* unacknowledged bytes at the last look (UPLOAD_KERNEL) */
    struct __kernel_timespec recv_ts, connect_ts;
    struct conn *next_free;
    char rbuf[RECV_BUF_SIZE];
};

struct ctx_entry {
    char *ca_file;
    tls_ctx *ctx;
    struct ctx_entry *next;
};

struct inbox_item {
    job_mailbox *m;
    int64_t lease_start_ms, deadline_ms;
    uint64_t lease_key;
    struct inbox_item *next;
};

/* Control messages to an I/O thread: intent go-aheads and cancels. */
struct control_item {
    uint64_t token; /* intent: the session's user_data */
    bool ok;
    int64_t *cancel_ids; /* cancel: owned */
    size_t ncancel;
    struct control_item *next;
};

/* send ids cancelled on this thread (checked before a retry), open addressing */
struct id_set {
    int64_t *v;
    size_t cap, used;
};

struct io_thread {
    engine *e;
    pthread_t tid;
    struct io_uring ring;
    uint64_t efd_val;
    buf msg_scratch; /* one message before dot-stuffing */
    uint64_t rng;    /* xorshift state for backoff jitter (seeded from the CSPRNG) */
    pthread_mutex_t inbox_mu;
    struct inbox_item *inbox;
    struct control_item *controls;
    struct id_set cancelled;
    struct conn *conns;
    struct conn *free_conns;
    struct work **heap;
    size_t heap_len, heap_cap;
    struct host *hosts[HOST_BUCKETS];
    struct host *ready;
    struct ctx_entry *ctxs;
    shaping_cfg shaping; /* the per-host limits (held in the shared hosts) */
    engine_result *results;
    size_t nresults, results_cap;
    buf plain; /* scratch for decrypted bytes */
    int64_t now_ms;
    int id;
    int efd;
    int ring_ready; /* 1 ok, -1 failed */
    uint32_t nconns;
    uint32_t active;
    bool cancel_all_req;
    bool stop;
    bool cancel_all;            /* draining: nothing new starts */
    atomic_bool hosts_released; /* another thread freed room at a host we wait on */
};

#define LAT_BUCKETS 12
static const double lat_bounds_s[LAT_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                 0.5,   1,    2.5,   5,    10,  30};

struct engine {
    engine_config cfg;
    int nthreads;
    struct io_thread *threads;
    resolver *res;
    pthread_mutex_t hosts_mu; /* the shared host table (lookups, not the limits) */
    /* renewed lease deadlines (engine_extend), read by the I/O threads only when the
     * version moved since a mailbox last looked */
    pthread_mutex_t ext_mu;
    struct lease_ext *ext;
    size_t next_ext, ext_cap;
    atomic_uint ext_version;
    struct shared_host *shosts[HOST_BUCKETS];
    atomic_uint next_thread;
    pthread_mutex_t res_mu;
    pthread_cond_t res_cv;
    engine_result *results;
    size_t nresults, results_cap;
    /* a consumer blocked in engine_poll_results wants a wake-up at this many results
     * (0: nobody waits): the I/O threads signal once per batch, not once per turn */
    size_t res_want;
    /* metrics */
    atomic_llong m_status[SMTP_ST_COUNT];
    atomic_llong m_sessions;
    atomic_llong m_sessions_active;
    atomic_llong m_connect_errors;
    atomic_llong m_retries;
    atomic_llong m_lat_bucket[LAT_BUCKETS + 1];
    atomic_llong m_lat_sum_ms;
};

/* ---- configuration ---- */

void engine_config_defaults(engine_config *c)
{
    memset(c, 0, sizeof *c);
    c->threads = 0;
    c->concurrency = 1000;
    c->batch_max = 10;
    c->max_attempts = 8;
    c->lease_margin_ms = 5000;
    c->connect_timeout_ms = 30000;
    c->tls_timeout_ms = 60000;
    for (int i = 0; i < SMTP_S_COUNT; i++)
        c->state_timeout_ms[i] = 300000;       /* greeting, MAIL, RCPT: 5 min */
    c->state_timeout_ms[SMTP_S_DATA] = 120000; /* DATA initiation: 2 min */
    c->state_timeout_ms[SMTP_S_DOT] = 600000;  /* DATA termination: 10 min */
    c->state_timeout_ms[SMTP_S_QUIT] = 30000;
    c->data_block_timeout_ms = 180000; /* data block: 3 min */
    c->dns_ttl_ms = 300000;
    c->result_linger_ms = 10;
    shaping_cfg_defaults(&c->shaping);
    snprintf(c->helo_name, sizeof c->helo_name, "localhost");
    snprintf(c->warmup_tag, sizeof c->warmup_tag, "1");
}

static int env_ms(const char *name, int64_t *v, char *err, size_t errlen)
{
    int64_t x;
    if (config_int(name, *v, 1, 86400000, &x, err, errlen) < 0)
        return -1;
    *v = x;
    return 0;
}

static int env_count(const char *name, int *v, int64_t max, char *err, size_t errlen)
{
    int64_t x;
    if (config_int(name, *v, 1, max, &x, err, errlen) < 0)
        return -1;
    *v = (int)x;
    return 0;
}

int engine_config_from_env(engine_config *c, char *err, size_t errlen)
{
    int64_t cmd = c->state_timeout_ms[SMTP_S_MAIL];
    int64_t greeting = c->state_timeout_ms[SMTP_S_GREETING];
    if (env_count("KILN_AGENT_HOST_MAX_CONNS", &c->shaping.max_conns, 1000000, err, errlen) ||
        env_count("KILN_AGENT_HOST_CONNS_PER_MIN", &c->shaping.conns_per_min, 100000000, err,
                  errlen) ||
        env_count("KILN_AGENT_BREAKER_THRESHOLD", &c->shaping.breaker_threshold, 1000000, err,
                  errlen) ||
        env_ms("KILN_AGENT_BREAKER_COOLDOWN_MS", &c->shaping.breaker_cooldown_ms, err, errlen) ||
        env_ms("KILN_AGENT_BACKOFF_BASE_MS", &c->shaping.backoff_base_ms, err, errlen) ||
        env_ms("KILN_AGENT_BACKOFF_MAX_MS", &c->shaping.backoff_max_ms, err, errlen) ||
        env_count("KILN_AGENT_MAX_ATTEMPTS", &c->max_attempts, 1000, err, errlen) ||
        env_count("KILN_AGENT_BATCH_MAX", &c->batch_max, 100, err, errlen) ||
        env_ms("KILN_AGENT_LEASE_MARGIN_MS", &c->lease_margin_ms, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_CONNECT_MS", &c->connect_timeout_ms, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_TLS_MS", &c->tls_timeout_ms, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_GREETING_MS", &greeting, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_COMMAND_MS", &cmd, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_DATA_INIT_MS", &c->state_timeout_ms[SMTP_S_DATA], err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_DATA_END_MS", &c->state_timeout_ms[SMTP_S_DOT], err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_DATA_BLOCK_MS", &c->data_block_timeout_ms, err, errlen) ||
        env_ms("KILN_AGENT_TIMEOUT_QUIT_MS", &c->state_timeout_ms[SMTP_S_QUIT], err, errlen) ||
        env_ms("KILN_AGENT_DNS_TTL_MS", &c->dns_ttl_ms, err, errlen))
        return -1;
    c->state_timeout_ms[SMTP_S_GREETING] = greeting;
    int cmd_states[] = {SMTP_S_EHLO, SMTP_S_HELO,      SMTP_S_STARTTLS,
                        SMTP_S_AUTH, SMTP_S_AUTH_USER, SMTP_S_AUTH_PASS,
                        SMTP_S_MAIL, SMTP_S_RCPT,      SMTP_S_RSET};
    for (size_t i = 0; i < sizeof cmd_states / sizeof cmd_states[0]; i++)
        c->state_timeout_ms[cmd_states[i]] = cmd;
    const char *helo = config_str("KILN_AGENT_HELO_NAME", NULL);
    if (helo) {
        if (!engine_helo_name_ok(helo)) {
            snprintf(err, errlen,
                     "KILN_AGENT_HELO_NAME: not a domain name or address literal such as "
                     "mail.example.com or [192.0.2.1]");
            return -1;
        }
        snprintf(c->helo_name, sizeof c->helo_name, "%s", helo);
    }
    const char *tag = config_str("KILN_AGENT_WARMUP_TAG", NULL);
    if (tag)
        snprintf(c->warmup_tag, sizeof c->warmup_tag, "%s", tag);
    return 0;
}

static bool helo_domain_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && !(ch == '-' && label > 0))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && s[n - 1] != '-';
}

bool engine_helo_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        char lit[INET6_ADDRSTRLEN + 8];
        unsigned char addr[sizeof(struct in6_addr)];
        if (n - 2 >= sizeof lit)
            return false;
        memcpy(lit, s + 1, n - 2);
        lit[n - 2] = '\0';
        if (!strncasecmp(lit, "IPv6:", 5))
            return inet_pton(AF_INET6, lit + 5, addr) == 1;
        return inet_pton(AF_INET, lit, addr) == 1;
    }
    return helo_domain_ok(s, n);
}

/* ---- results ---- */

void engine_result_json(const engine_result *r, buf *out)
{
    yajl_gen g = json_gen_new(out);
    json_obj_open(g);
    json_kv_i(g, "send_id", r->send_id);
    json_kv_s(g, "status", smtp_status_name(r->status));
    json_key(g, "smtp_code");
    if (r->smtp_code)
        json_i(g, r->smtp_code);
    else
        json_null(g);
    json_key(g, "enhanced_code");
    if (r->enhanced[0])
        json_s(g, r->enhanced);
    else
        json_null(g);
    json_kv_s(g, "detail", r->detail);
    json_kv_i(g, "latency_ms", r->latency_ms);
    json_kv_i(g, "attempts", r->attempts);
    json_obj_close(g);
    json_gen_free(g);
}

static void result_push(struct io_thread *t, const engine_result *r)
{
    if (t->nresults == t->results_cap) {
        t->results_cap = t->results_cap ? t->results_cap * 2 : 64;
        t->results = xrealloc(t->results, t->results_cap * sizeof *t->results);
    }
    t->results[t->nresults++] = *r;
    engine *e = t->e;
    if (r->cancelled)
        return;
    if (r->status >= 0 && r->status < SMTP_ST_COUNT)
        atomic_fetch_add(&e->m_status[r->status], 1);
    if (r->status == SMTP_ST_SENT) {
        int b = 0;
        while (b < LAT_BUCKETS && (double)r->latency_ms / 1000.0 > lat_bounds_s[b])
            b++;
        atomic_fetch_add(&e->m_lat_bucket[b], 1);
        atomic_fetch_add(&e->m_lat_sum_ms, r->latency_ms);
    }
}

/* Hands the thread's finished results to the engine queue, once per loop turn. */
static void results_flush(struct io_thread *t)
{
    if (!t->nresults)
        return;
    engine *e = t->e;
    pthread_mutex_lock(&e->res_mu);
    if (e->nresults + t->nresults > e->results_cap) {
        size_t cap = e->results_cap ? e->results_cap : 256;
        while (cap < e->nresults + t->nresults)
            cap *= 2;
        e->results = xrealloc(e->results, cap * sizeof *e->results);
        e->results_cap = cap;
    }
    memcpy(e->results + e->nresults, t->results, t->nresults * sizeof *t->results);
    e->nresults += t->nresults;
    if (e->res_want && e->nresults >= e->res_want)
        pthread_cond_signal(&e->res_cv);
    pthread_mutex_unlock(&e->res_mu);
    t->nresults = 0;
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Blocks (res_mu held) until want results are queued or the deadline passes. */
static void wait_results(engine *e, size_t want, const struct timespec *deadline)
{
    e->res_want = want;
    while (e->nresults < want)
        if (pthread_cond_timedwait(&e->res_cv, &e->res_mu, deadline) == ETIMEDOUT)
            break;
    e->res_want = 0;
}

size_t engine_poll_results(engine *e, engine_result *out, size_t max, int timeout_ms)
{
    pthread_mutex_lock(&e->res_mu);
    if (!e->nresults && timeout_ms > 0) {
        struct timespec ts;
        deadline_in(&ts, timeout_ms);
        wait_results(e, 1, &ts);
    }
    /* Results come one loop turn at a time; gather them for a short while so the
     * consumer wakes once per batch rather than once per turn of every I/O thread. */
    if (e->nresults && e->nresults < max && e->cfg.result_linger_ms > 0) {
        struct timespec ts;
        deadline_in(&ts, e->cfg.result_linger_ms);
        wait_results(e, max, &ts);
    }
    size_t n = e->nresults < max ? e->nresults : max;
    if (n) {
        memcpy(out, e->results, n * sizeof *out);
        memmove(e->results, e->results + n, (e->nresults - n) * sizeof *out);
        e->nresults -= n;
    }
    pthread_mutex_unlock(&e->res_mu);
    return n;
}

/* One slot's final result. Returns true after the mailbox's last slot: the caller frees
 * it with mbox_free once it has stopped reading w->mb (a mailbox's remaining count covers
 * every unfinished slot of its works, so this is always the last slot of w). */
static bool slot_final(struct io_thread *t, struct work *w, size_t k, int status, int code,
                       const char *enhanced, const char *detail, int64_t latency_ms)
{
    engine_result r;
    memset(&r, 0, sizeof r);
    job_send *s = &w->mb->m->sends[w->sends[k]];
    r.send_id = s->id;
    r.mailbox_id = w->mb->m->id;
    r.status = status;
    r.smtp_code = code;
    snprintf(r.enhanced, sizeof r.enhanced, "%s", enhanced ? enhanced : "");
    snprintf(r.detail, sizeof r.detail, "%s", detail ? detail : "");
    r.latency_ms = latency_ms < 0 ? 0 : latency_ms;
    r.attempts = w->attempt;
    result_push(t, &r);
    return --w->mb->remaining == 0;
}

static void mbox_free(struct mbox *mb)
{
    job_mailbox_free(mb->m);
    free(mb);
}

static void work_free(struct work *w)
{
    free(w->sends);
    free(w);
}

/* ---- cancels ---- */

static bool id_set_has(const struct id_set *s, int64_t id)
{
    if (!s->cap)
        return false;
    size_t i = (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 20) & (s->cap - 1);
    while (s->v[i] != 0) {
        if (s->v[i] == id)
            return true;
        i = (i + 1) & (s->cap - 1);
    }
    return false;
}

static void id_set_add(struct id_set *s, int64_t id)
{
    if (id == 0 || id_set_has(s, id))
        return;
    if ((s->used + 1) * 2 > s->cap) {
        struct id_set old = *s;
        s->cap = old.cap ? old.cap * 2 : 1024;
        s->v = xcalloc(s->cap, sizeof *s->v);
        s->used = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.v[i])
                id_set_add(s, old.v[i]);
        free(old.v);
    }
    size_t i = (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 20) & (s->cap - 1);
    while (s->v[i] != 0)
        i = (i + 1) & (s->cap - 1);
    s->v[i] = id;
    s->used++;
}

static bool slot_cancelled(const struct io_thread *t, const struct work *w, size_t k)
{
    return t->cancel_all || id_set_has(&t->cancelled, w->mb->m->sends[w->sends[k]].id);
}

/* Ends the cancelled slots of a work that has not started; returns how many are left
 * (0: the work is freed). */
static size_t work_filter(struct io_thread *t, struct work *w)
{
    size_t keep = 0, n = w->n;
    uint32_t *ids = w->sends;
    for (size_t k = 0; k < n; k++) {
        if (!slot_cancelled(t, w, k)) {
            ids[keep++] = ids[k];
            continue;
        }
        /* the mailbox is freed after its last slot: nothing of w->mb is read after
         * that */
        engine_result r;
        memset(&r, 0, sizeof r);
        r.send_id = w->mb->m->sends[ids[k]].id;
        r.mailbox_id = w->mb->m->id;
        r.status = SMTP_ST_DEFERRED;
        r.cancelled = true;
        r.attempts = w->attempt - 1;
        snprintf(r.detail, sizeof r.detail, "cancelled before it started");
        result_push(t, &r);
        if (--w->mb->remaining == 0) {
            job_mailbox_free(w->mb->m);
            free(w->mb);
            w->mb = NULL;
        }
    }
    w->n = keep;
    if (!keep) {
        work_free(w);
        return 0;
    }
    return keep;
}

/* Every slot of w ends with the same outcome. */
static void work_final_all(struct io_thread *t, struct work *w, int status, const char *detail)
{
    struct mbox *done = NULL;
    for (size_t k = 0; k < w->n; k++)
        if (slot_final(t, w, k, status, 0, NULL, detail, 0))
            done = w->mb;
    work_free(w);
    if (done)
        mbox_free(done);
}

/* ---- timer heap of works by wake time (due time, or the lease deadline's) ---- */

static void heap_sift_down(struct io_thread *t, size_t i)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->heap_len)
            return;
        if (c + 1 < t->heap_len && t->heap[c + 1]->wake_ms < t->heap[c]->wake_ms)
            c++;
        if (t->heap[c]->wake_ms >= t->heap[i]->wake_ms)
            return;
        struct work *x = t->heap[i];
        t->heap[i] = t->heap[c];
        t->heap[c] = x;
        i = c;
    }
}

static void host_enqueue(struct io_thread *t, struct work *w);

/* Applies the thread's cancels to every work not started: the timer heap and the
 * per-host wait queues. */
static void cancel_pending(struct io_thread *t)
{
    size_t keep = 0;
    for (size_t i = 0; i < t->heap_len; i++)
        if (work_filter(t, t->heap[i]) > 0)
            t->heap[keep++] = t->heap[i];
    t->heap_len = keep;
    for (size_t i = keep / 2 + 1; i-- > 0;)
        heap_sift_down(t, i);
    for (uint32_t b = 0; b < HOST_BUCKETS; b++)
        for (struct host *h = t->hosts[b]; h; h = h->hash_next) {
            struct work *list = h->wait_head;
            h->wait_head = h->wait_tail = NULL;
            while (list) {
                struct work *next = list->next;
                list->next = NULL;
                if (work_filter(t, list) > 0) {
                    if (h->wait_tail)
                        h->wait_tail->next = list;
                    else
                        h->wait_head = list;
                    h->wait_tail = list;
                }
                list = next;
            }
        }
}

static void heap_push(struct io_thread *t, struct work *w)
{
    if (t->heap_len == t->heap_cap) {
        t->heap_cap = t->heap_cap ? t->heap_cap * 2 : 256;
        /* an array of pointers: sizeof a pointer is meant */
        t->heap =
            xrealloc(t->heap, t->heap_cap * sizeof *t->heap); // NOLINT(bugprone-sizeof-expression)
    }
    size_t i = t->heap_len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (t->heap[p]->wake_ms <= w->wake_ms)
            break;
        t->heap[i] = t->heap[p];
        i = p;
    }
    t->heap[i] = w;
}

static struct work *heap_pop(struct io_thread *t)
{
    struct work *top = t->heap[0];
    t->heap[0] = t->heap[--t->heap_len];
    heap_sift_down(t, 0);
    return top;
}

/* ---- hosts ---- */

static uint32_t host_hash(const char *name, int port)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return ((h ^ (uint32_t)port) * 16777619u) % HOST_BUCKETS;
}

static struct shared_host *shared_host_get(struct io_thread *t, const char *name, int port)
{
    engine *e = t->e;
    struct shared_host **slot = &e->shosts[host_hash(name, port)];
    pthread_mutex_lock(&e->hosts_mu);
    struct shared_host *x = *slot;
    while (x && (x->port != port || strcmp(x->name, name) != 0))
        x = x->next;
    if (!x) {
        x = xcalloc(1, sizeof *x);
        x->name = xstrdup(name);
        x->port = port;
        pthread_mutex_init(&x->mu, NULL);
        host_shaper_init(&x->shaper, &t->shaping, t->now_ms);
        x->next = *slot;
        *slot = x;
    }
    pthread_mutex_unlock(&e->hosts_mu);
    return x;
}

static struct host *host_get(struct io_thread *t, const char *name, int port)
{
    struct host **slot = &t->hosts[host_hash(name, port)];
    for (struct host *x = *slot; x; x = x->hash_next)
        if (x->port == port && !strcmp(x->name, name))
            return x;
    struct host *x = xcalloc(1, sizeof *x);
    x->name = xstrdup(name);
    x->port = port;
    x->sh = shared_host_get(t, name, port);
    x->hash_next = *slot;
    *slot = x;
    return x;
}

static int64_t host_acquire(struct io_thread *t, struct host *h)
{
    struct shared_host *sh = h->sh;
    pthread_mutex_lock(&sh->mu);
    int64_t rc = host_shaper_acquire(&sh->shaper, &t->shaping, t->now_ms);
    if (rc == SHAPER_FULL)
        sh->waiters |= UINT64_C(1) << (t->id % 64);
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

static void host_mark_ready(struct io_thread *t, struct host *h);
static void thread_wake(struct io_thread *t);

/* A session at h ended: the room it frees may let other threads' queues move. */
static void host_release(struct io_thread *t, struct host *h, bool host_ok)
{
    struct shared_host *sh = h->sh;
    pthread_mutex_lock(&sh->mu);
    host_shaper_release(&sh->shaper, &t->shaping, host_ok, t->now_ms);
    uint64_t waiters = sh->waiters;
    sh->waiters = 0;
    pthread_mutex_unlock(&sh->mu);
    if (h->wait_head)
        host_mark_ready(t, h);
    if (!(waiters & ~(UINT64_C(1) << (t->id % 64))))
        return;
    engine *e = t->e;
    for (int i = 0; i < e->nthreads; i++) {
        struct io_thread *o = &e->threads[i];
        if (o != t && (waiters & (UINT64_C(1) << (i % 64)))) {
            atomic_store(&o->hosts_released, true);
            thread_wake(o);
        }
    }
}

static void host_mark_ready(struct io_thread *t, struct host *h)
{
    if (h->queued)
        return;
    h->queued = true;
    h->ready_next = t->ready;
    t->ready = h;
}

static void host_enqueue(struct io_thread *t, struct work *w)
{
    struct host *h = w->host;
    w->next = NULL;
    if (h->wait_tail)
        h->wait_tail->next = w;
    else
        h->wait_head = w;
    h->wait_tail = w;
    host_mark_ready(t, h);
}

/* ---- ring helpers ---- */

/* Reserves n consecutive SQEs, submitting first when the queue is short of room, so
 * a linked pair never straddles two submissions. */
static struct io_uring_sqe *get_sqes(struct io_thread *t, unsigned n)
{
    while (io_uring_sq_space_left(&t->ring) < n) {
        int rc = io_uring_submit(&t->ring);
        if (rc < 0 && rc != -EAGAIN && rc != -EINTR) {
            log_error("io_uring_submit: %s", strerror(-rc));
            abort();
        }
    }
    return io_uring_get_sqe(&t->ring);
}

static void ts_set(struct __kernel_timespec *ts, int64_t ms)
{
    ts->tv_sec = ms / 1000;
    ts->tv_nsec = (ms % 1000) * 1000000;
}

static void link_timeout(struct io_thread *t, struct conn *c, struct __kernel_timespec *ts,
                         int64_t ms)
{
    ts_set(ts, ms);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring); /* room reserved by get_sqes */
    io_uring_prep_link_timeout(sqe, ts, 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_LINK_TIMEOUT, c->gen, c->idx));
}

static void post_eventfd_read(struct io_thread *t)
{
    struct io_uring_sqe *sqe = get_sqes(t, 1);
    io_uring_prep_read(sqe, t->efd, &t->efd_val, sizeof t->efd_val, 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_EVENTFD, 0, 0));
}

static int64_t mbox_deadline(struct io_thread *t, struct mbox *mb);

/* When the session must have what it waits for: the reply's (or the upload step's)
 * deadline, never later than the lease deadline. */
static int64_t conn_deadline(struct io_thread *t, struct conn *c)
{
    int64_t lease = mbox_deadline(t, c->w->mb);
    return c->reply_deadline_ms < lease ? c->reply_deadline_ms : lease;
}

/* The recv posted while the session waits carries the session's deadline as its linked
 * timeout. Deadlines that move later are caught when the timeout fires (the recv is
 * simply posted again); one that moves earlier takes the pending recv back at once. */
static void post_recv(struct io_thread *t, struct conn *c)
{
    if (c->recv_posted)
        return;
    int64_t ms = conn_deadline(t, c) - t->now_ms;
    if (ms < 1)
        ms = 1;
    struct io_uring_sqe *sqe = get_sqes(t, 2);
    io_uring_prep_recv(sqe, c->fd, c->rbuf, sizeof c->rbuf, 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_RECV, c->gen, c->idx));
    sqe->flags |= IOSQE_IO_LINK;
    link_timeout(t, c, &c->recv_ts, ms);
    c->recv_armed_ms = t->now_ms + ms;
    c->recv_posted = true;
    c->inflight++;
}

/* What the session waits for now must be complete within ms, however its bytes
 * trickle in: set when a command goes out (or the connection, the TLS handshake or
 * an upload step begins), not when a byte comes. */
static void conn_arm(struct io_thread *t, struct conn *c, int64_t ms)
{
    c->reply_deadline_ms = t->now_ms + ms;
    if (c->recv_posted && !c->recv_cancel_posted && conn_deadline(t, c) < c->recv_armed_ms) {
        struct io_uring_sqe *sqe = get_sqes(t, 1);
        io_uring_prep_cancel64(sqe, ud_make(OP_RECV, c->gen, c->idx), 0);
        io_uring_sqe_set_data64(sqe, ud_make(OP_CANCEL, c->gen, c->idx));
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        c->recv_cancel_posted = true;
    }
}

/* Starts a send of everything queued when no send is in flight. */
static void flush_send(struct io_thread *t, struct conn *c)
{
    if (c->send_posted || !c->sendq.len)
        return;
    buf tmp = c->sending;
    c->sending = c->sendq;
    c->sendq = tmp;
    buf_reset(&c->sendq);
    /* No linked timeout here: a recv with its deadline is always posted while the
     * session waits for the server, and its expiry closes the socket, which ends a
     * send stuck on a peer that stopped reading. One timer per exchange, not two. */
    struct io_uring_sqe *sqe = get_sqes(t, 1);
    io_uring_prep_send(sqe, c->fd, c->sending.data, c->sending.len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, c->gen, c->idx));
    c->send_posted = true;
    c->inflight++;
}

/* ---- sessions ---- */

static tls_ctx *ctx_for(struct io_thread *t, const char *ca_file, char *err, size_t errlen)
{
    const char *key = ca_file ? ca_file : "";
    for (struct ctx_entry *x = t->ctxs; x; x = x->next)
        if (!strcmp(x->ca_file, key))
            return x->ctx;
    tls_ctx *ctx = tls_ctx_new(ca_file, err, errlen);
    if (!ctx)
        return NULL;
    struct ctx_entry *x = xcalloc(1, sizeof *x);
    x->ca_file = xstrdup(key);
    x->ctx = ctx;
    x->next = t->ctxs;
    t->ctxs = x;
    return ctx;
}

/* The mailbox's lease deadline, moved by a renewal (engine_extend) if one came. */
static int64_t mbox_deadline(struct io_thread *t, struct mbox *mb)
{
    engine *e = t->e;
    unsigned v = atomic_load(&e->ext_version);
    if (!mb->lease_key || mb->ext_seen == v)
        return mb->deadline_ms;
    pthread_mutex_lock(&e->ext_mu);
    for (size_t i = 0; i < e->next_ext; i++)
        if (e->ext[i].key == mb->lease_key && e->ext[i].deadline_ms > mb->deadline_ms)
            mb->deadline_ms = e->ext[i].deadline_ms;
    pthread_mutex_unlock(&e->ext_mu);
    mb->ext_seen = v;
    return mb->deadline_ms;
}

/* The latest time a send of mb may start: a session, a transaction or a payload. */
static int64_t mbox_start_limit(struct io_thread *t, struct mbox *mb)
{
    return mbox_deadline(t, mb) - t->e->cfg.lease_margin_ms;
}

/* A session's buffers stay with its table entry for the next session unless they
 * grew past this (a big message), so a steady stream of sessions allocates nothing. */
#define CONN_BUF_KEEP 16384

static void buf_recycle(buf *b)
{
    if (b->cap > CONN_BUF_KEEP)
        buf_free(b);
    else
        buf_reset(b);
}

/* A uniform draw in [0, 1) for backoff jitter: spreading retries needs no
 * cryptographic randomness, and the CSPRNG costs a system call per draw. */
static double jitter(struct io_thread *t)
{
    uint64_t x = t->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t->rng = x;
    return (double)(x >> 11) / 9007199254740992.0; /* 2^53 */
}

/* The session is over: release the host, settle or re-queue every slot, free the
 * table entry. Called only when the kernel owns nothing of the session any more. */
static void conn_finish(struct io_thread *t, struct conn *c)
{
    engine *e = t->e;
    struct work *w = c->w;
    if (c->fd >= 0) {
        struct io_uring_sqe *sqe = get_sqes(t, 1);
        io_uring_prep_close(sqe, c->fd);
        io_uring_sqe_set_data64(sqe, ud_make(OP_CLOSE, c->gen, c->idx));
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    host_release(t, c->host, c->host_ok);

    /* deferred slots go back for another attempt while the lease allows it */
    struct work *retry = NULL;
    struct mbox *done = NULL; /* freed after the loop, which reads w->mb */
    bool any_deferred = false;
    for (size_t k = 0; k < w->n; k++) {
        if (c->slots[k].status == SMTP_ST_PENDING)
            c->slots[k].status = SMTP_ST_DEFERRED;
        any_deferred |= c->slots[k].status == SMTP_ST_DEFERRED;
    }
    int64_t delay = any_deferred ? backoff_delay_ms(&t->shaping, w->attempt, jitter(t)) : 0;
    bool may_retry = any_deferred && w->attempt < e->cfg.max_attempts &&
                     t->now_ms + delay < mbox_deadline(t, w->mb) - e->cfg.lease_margin_ms;
    for (size_t k = 0; k < w->n; k++) {
        smtp_slot *s = &c->slots[k];
        int64_t lat = (s->done_ms ? s->done_ms : t->now_ms) - c->start_ms;
        if (s->status == SMTP_ST_DEFERRED && may_retry && !slot_cancelled(t, w, k)) {
            if (!retry) {
                retry = xcalloc(1, sizeof *retry);
                retry->mb = w->mb;
                retry->host = w->host;
                retry->sends = xcalloc(w->n, sizeof *retry->sends);
                retry->attempt = w->attempt + 1;
                retry->due_ms = retry->wake_ms = t->now_ms + delay;
            }
            retry->sends[retry->n++] = w->sends[k];
            continue;
        }
        if (slot_final(t, w, k, s->status, s->code, s->enhanced, s->detail, lat))
            done = w->mb;
    }
    if (retry) {
        atomic_fetch_add(&e->m_retries, 1);
        heap_push(t, retry);
    }
    work_free(w);
    if (done)
        mbox_free(done);
    smtp_session_clear(&c->smtp);
    tls_conn_free(c->tls);
    c->tls = NULL;
    free(c->slots);
    c->slots = NULL;
    buf_recycle(&c->payload);
    buf_recycle(&c->sendq);
    buf_recycle(&c->sending);
    c->w = NULL;
    c->host = NULL;
    c->fd = -1;
    c->phase = CONN_FREE;
    c->gen = (c->gen + 1) & 0xFFFFFF;
    c->next_free = t->free_conns;
    t->free_conns = c;
    t->active--;
    atomic_fetch_sub(&e->m_sessions_active, 1);
}

/* Begins closing: the kernel gives the pending operations back (shutdown wakes a
 * waiting recv), and conn_finish runs once nothing is in flight. */
static void conn_close(struct io_thread *t, struct conn *c)
{
    if (c->phase != CONN_CLOSING) {
        c->phase = CONN_CLOSING;
        if (c->inflight && c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);
    }
    if (!c->inflight)
        conn_finish(t, c);
}

/* The session ends without a reply to what it waits for. The session layer makes a
 * message whose final dot went out `unknown` (the server may have accepted it; never
 * retried); it cannot see our buffers, so a message whose dot never left them, which
 * cannot exist at the server, gets status like the rest. */
static void conn_settle_abort(struct io_thread *t, struct conn *c, int status, const char *detail,
                              bool eof)
{
    bool in_dot = c->smtp.state == SMTP_S_DOT && c->smtp.cur < c->smtp.nslots &&
                  c->slots[c->smtp.cur].status == SMTP_ST_PENDING;
    smtp_slot *cur = in_dot ? &c->slots[c->smtp.cur] : NULL;
    if (eof)
        smtp_session_eof(&c->smtp, t->now_ms);
    else
        smtp_session_abort(&c->smtp, status, detail, t->now_ms);
    if (in_dot && c->upload == UPLOAD_USER && cur->status == SMTP_ST_UNKNOWN) {
        cur->status = SMTP_ST_DEFERRED;
        snprintf(cur->detail, sizeof cur->detail, "%s (message not fully sent)",
                 eof ? "connection closed by server" : detail);
    }
}

static void conn_fail(struct io_thread *t, struct conn *c, int status, const char *detail)
{
    conn_settle_abort(t, c, status, detail, false);
    conn_close(t, c);
}

/* Moves the session's output to the socket (through TLS when up) and acts on the
 * session's events. */
/* Starts the TLS handshake on c (after STARTTLS's 220, or at once for implicit TLS)
 * and queues its first bytes. False when it failed: c is finished as `tls`. */
static bool conn_start_tls(struct io_thread *t, struct conn *c)
{
    char err[160];
    tls_ctx *ctx = ctx_for(t, c->w->mb->m->ca_file, err, sizeof err);
    if (!ctx) {
        c->host_ok = true; /* our CA file, not the host's fault */
        conn_fail(t, c, SMTP_ST_TLS, err);
        return false;
    }
    c->tls = tls_conn_new(ctx, c->host->name);
    c->phase = CONN_TLS;
    conn_arm(t, c, t->e->cfg.tls_timeout_ms); /* the whole handshake */
    if (tls_conn_handshake(c->tls) == TLS_ERROR) {
        conn_fail(t, c, SMTP_ST_TLS, tls_conn_error(c->tls));
        return false;
    }
    tls_conn_take(c->tls, &c->sendq);
    return true;
}

/* The session moved from prev_state: re-arm the reply deadline when a command went
 * out or the state changed, and track a payload's upload. */
static void conn_track(struct io_thread *t, struct conn *c, int ev, int prev_state)
{
    engine *e = t->e;
    int st = c->smtp.state;
    if (st == SMTP_S_DOT && prev_state != SMTP_S_DOT) {
        c->upload = UPLOAD_USER;
        c->upload_progress_ms = t->now_ms;
        int64_t tick = e->cfg.data_block_timeout_ms;
        conn_arm(t, c, tick < UPLOAD_POLL_MS ? tick : UPLOAD_POLL_MS);
        return;
    }
    if (st != SMTP_S_DOT)
        c->upload = UPLOAD_NONE;
    if ((ev & SMTP_EV_OUTPUT) || st != prev_state)
        conn_arm(t, c, e->cfg.state_timeout_ms[st]);
}

static void conn_after_session(struct io_thread *t, struct conn *c, int ev, int prev_state)
{
    engine *e = t->e;
    buf *out = smtp_session_output(&c->smtp);
    int64_t limit = mbox_start_limit(t, c->w->mb);
    if (c->smtp.state == SMTP_S_MAIL && prev_state != SMTP_S_MAIL && t->now_ms >= limit) {
        /* a new transaction would begin too close to the lease end: nothing of it
         * has left yet, so its slots (and the ones after it) are simply not sent */
        buf_reset(out);
        c->host_ok = true;
        conn_fail(t, c, SMTP_ST_DEFERRED, "not sent: lease deadline reached");
        return;
    }
    if ((ev & SMTP_EV_GATE) && !c->gated && (t->now_ms >= limit || !e->cfg.intent_fn)) {
        /* the server waits for the data: no payload starts past the lease's limit */
        bool go = t->now_ms < limit;
        c->host_ok |= !go;
        ev = smtp_session_payload_go(&c->smtp, go,
                                     "not sent: lease deadline reached before the data", t->now_ms);
    }
    conn_track(t, c, ev, prev_state);
    if (out->len) {
        if (c->tls) {
            if (tls_conn_write(c->tls, out->data, out->len) < 0) {
                buf_reset(out);
                conn_fail(t, c, SMTP_ST_DEFERRED, tls_conn_error(c->tls));
                return;
            }
            tls_conn_take(c->tls, &c->sendq);
        } else {
            buf_append(&c->sendq, out->data, out->len);
        }
        /* a message payload passed through: give its memory back now */
        if (out->cap > 1024)
            buf_free(out);
        else
            buf_reset(out);
    }
    if ((ev & SMTP_EV_STARTTLS) && !conn_start_tls(t, c))
        return;
    if ((ev & SMTP_EV_GATE) && !c->gated) {
        /* the server waits for the data: the intent must be durable first */
        c->gated = true;
        int64_t id = c->w->mb->m->sends[c->w->sends[c->smtp.cur]].id;
        t->e->cfg.intent_fn(t->e->cfg.intent_arg, ud_make(t->id, c->gen, c->idx), &id, 1);
    }
    if (ev & SMTP_EV_DONE) {
        c->close_after_send = true;
        if (!c->sendq.len && !c->send_posted) {
            conn_close(t, c);
            return;
        }
    }
    flush_send(t, c);
    if (!(ev & SMTP_EV_DONE))
        post_recv(t, c);
}

static void conn_on_data(struct io_thread *t, struct conn *c, const char *data, size_t n)
{
    int ev;
    int prev_state = c->smtp.state;
    if (!c->tls) {
        if (!c->greeted)
            c->greeted = c->host_ok = true;
        ev = smtp_session_feed(&c->smtp, data, n, t->now_ms);
        conn_after_session(t, c, ev, prev_state);
        return;
    }
    tls_conn_feed(c->tls, data, n);
    ev = 0;
    if (c->phase == CONN_TLS) {
        int rc = tls_conn_handshake(c->tls);
        if (rc == TLS_ERROR) {
            conn_fail(t, c, SMTP_ST_TLS, tls_conn_error(c->tls));
            return;
        }
        tls_conn_take(c->tls, &c->sendq);
        if (rc == TLS_WANT) {
            flush_send(t, c);
            post_recv(t, c);
            return;
        }
        c->phase = CONN_SMTP;
        if (c->smtp.state == SMTP_S_TLS_WAIT)
            ev = smtp_session_tls_ready(&c->smtp);
        else /* implicit TLS: now the greeting has its own deadline */
            conn_arm(t, c, t->e->cfg.state_timeout_ms[SMTP_S_GREETING]);
    }
    bool closed = false;
    buf_reset(&t->plain);
    if (tls_conn_read(c->tls, &t->plain, &closed) < 0) {
        conn_fail(t, c, SMTP_ST_DEFERRED, tls_conn_error(c->tls));
        return;
    }
    if (t->plain.len) {
        if (!c->greeted)
            c->greeted = c->host_ok = true;
        ev |= smtp_session_feed(&c->smtp, t->plain.data, t->plain.len, t->now_ms);
    }
    if (closed && !(ev & SMTP_EV_DONE)) {
        conn_settle_abort(t, c, SMTP_ST_DEFERRED, NULL, true);
        ev |= SMTP_EV_DONE;
    }
    conn_after_session(t, c, ev, prev_state);
}

static void conn_connect(struct io_thread *t, struct conn *c);

/* Builds the payloads and opens the connection for work w on a free session. */
static void conn_start(struct io_thread *t, struct work *w)
{
    engine *e = t->e;
    struct conn *c = t->free_conns;
    t->free_conns = c->next_free;
    t->active++;
    atomic_fetch_add(&e->m_sessions, 1);
    atomic_fetch_add(&e->m_sessions_active, 1);
    job_mailbox *m = w->mb->m;
    c->w = w;
    c->host = w->host;
    c->host_ok = false;
    c->greeted = false;
    c->gated = false;
    c->close_after_send = false;
    c->recv_posted = c->send_posted = false;
    c->recv_cancel_posted = false;
    c->upload = UPLOAD_NONE;
    c->inflight = 0;
    c->start_ms = t->now_ms;
    c->reply_deadline_ms = INT64_MAX;
    c->addr_idx = (uint8_t)c->host->addr_first;
    c->addrs_tried = 0;
    c->slots = xcalloc(w->n, sizeof *c->slots);
    /* payload, sendq and sending keep their storage from the entry's last session */
    size_t offs_small[17];
    size_t *offs = w->n < 17 ? offs_small : xcalloc(w->n + 1, sizeof *offs);
    buf *msg = &t->msg_scratch;
    int64_t now_s = clock_wall_ms() / 1000;
    for (size_t k = 0; k < w->n; k++) {
        job_send *s = &m->sends[w->sends[k]];
        smtp_message mm = {.from_addr = m->address,
                           .from_name = m->display_name,
                           .to_addr = s->to,
                           .subject = s->subject,
                           .body = s->body,
                           .message_id = s->message_id,
                           .warmup_tag = e->cfg.warmup_tag,
                           .date_unix_s = now_s};
        buf_reset(msg);
        smtp_message_build(&mm, msg);
        offs[k] = c->payload.len;
        smtp_dot_stuff(msg->data, msg->len, &c->payload);
    }
    offs[w->n] = c->payload.len;
    if (msg->cap > CONN_BUF_KEEP)
        buf_free(msg);
    for (size_t k = 0; k < w->n; k++) {
        c->slots[k].rcpt = m->sends[w->sends[k]].to;
        c->slots[k].payload = c->payload.data + offs[k];
        c->slots[k].payload_len = offs[k + 1] - offs[k];
    }
    if (offs != offs_small)
        free(offs);
    smtp_session_params p = {.helo_name = e->cfg.helo_name,
                             .mail_from = m->address,
                             .security = m->security,
                             .username = m->username,
                             .password = m->password,
                             .oauth_token = m->oauth_token,
                             .allow_plaintext_auth = m->allow_plaintext_auth,
                             /* the engine checks the lease deadline at the gate even
                              * when no intent is to be recorded */
                             .gate_payload = true};
    smtp_session_init(&c->smtp, &p, c->slots, w->n);

    conn_connect(t, c);
}

/* Opens the socket and posts the connect with its deadline. */
static void conn_connect(struct io_thread *t, struct conn *c)
{
    engine *e = t->e;
    c->phase = CONN_CONNECTING;
    const struct sockaddr_storage *addr = &c->host->addrs.addr[c->addr_idx];
    c->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        char why[96];
        snprintf(why, sizeof why, "socket: %s", strerror(errno));
        c->host_ok = true; /* our limit, not the host's fault */
        conn_fail(t, c, SMTP_ST_DEFERRED, why);
        return;
    }
    struct io_uring_sqe *sqe = get_sqes(t, 2);
    io_uring_prep_connect(sqe, c->fd, (const struct sockaddr *)addr,
                          c->host->addrs.len[c->addr_idx]);
    io_uring_sqe_set_data64(sqe, ud_make(OP_CONNECT, c->gen, c->idx));
    sqe->flags |= IOSQE_IO_LINK;
    int64_t ms = e->cfg.connect_timeout_ms;
    int64_t lease_left = mbox_deadline(t, c->w->mb) - t->now_ms;
    if (lease_left < ms)
        ms = lease_left < 1 ? 1 : lease_left;
    link_timeout(t, c, &c->connect_ts, ms);
    c->inflight++;
}

/* A connect failed: the session moves on to the host's next address while one is
 * left, and the host's later sessions start past the one that failed. */
static void conn_connect_failed(struct io_thread *t, struct conn *c, const char *why)
{
    struct host *h = c->host;
    int n = h->addrs.n;
    c->addrs_tried++;
    if (c->addrs_tried < n && !t->cancel_all && t->now_ms < mbox_start_limit(t, c->w->mb)) {
        char at[INET6_ADDRSTRLEN];
        resolver_addr_text(&h->addrs.addr[c->addr_idx], at, sizeof at);
        log_debug("connect to %s (%s) port %d: %s; trying its next address", h->name, at, h->port,
                  why);
        if (h->addr_first == c->addr_idx)
            h->addr_first = (c->addr_idx + 1) % n;
        close(c->fd); /* nothing of the kernel's is pending on it: the connect is back */
        c->fd = -1;
        c->addr_idx = (uint8_t)((c->addr_idx + 1) % n);
        conn_connect(t, c);
        return;
    }
    char detail[160];
    if (n > 1)
        snprintf(detail, sizeof detail, "connect: %s (%d addresses tried)", why, n);
    else
        snprintf(detail, sizeof detail, "connect: %s", why);
    conn_fail(t, c, SMTP_ST_DEFERRED, detail);
}

static void on_connect(struct io_thread *t, struct conn *c, int res)
{
    if (c->phase == CONN_CLOSING) {
        conn_close(t, c);
        return;
    }
    if (res < 0) {
        atomic_fetch_add(&t->e->m_connect_errors, 1);
        if (res == -ECANCELED && t->now_ms >= mbox_deadline(t, c->w->mb)) {
            c->host_ok = true; /* our deadline, not the host's fault */
            conn_fail(t, c, SMTP_ST_DEFERRED, "connect: lease deadline reached");
            return;
        }
        conn_connect_failed(t, c, res == -ECANCELED ? "timed out" : strerror(-res));
        return;
    }
    if (c->w->mb->m->security == SMTP_SEC_TLS) {
        if (!conn_start_tls(t, c))
            return;
        flush_send(t, c);
    } else {
        c->phase = CONN_SMTP;
        conn_arm(t, c, t->e->cfg.state_timeout_ms[SMTP_S_GREETING]);
    }
    post_recv(t, c);
}

/* Unacknowledged bytes in the socket's send queue, or -1. */
static int socket_outq(int fd)
{
    int outq = 0;
    return ioctl(fd, SIOCOUTQ, &outq) == 0 ? outq : -1;
}

/* While a payload is on its way the recv's timer ticks every UPLOAD_POLL_MS (a reply
 * in the meantime ends the wait as usual, so a quick server costs nothing extra): each
 * tick looks at the upload's progress, bytes taken by the socket (on_send) and then
 * bytes acknowledged by the peer, and gives up when there was none for a data block
 * timeout. Once the peer has acknowledged every byte the end-of-data timer starts.
 * Returns false when the upload stalled. */
static bool conn_upload_tick(struct io_thread *t, struct conn *c)
{
    engine *e = t->e;
    if (c->upload == UPLOAD_KERNEL) {
        int outq = socket_outq(c->fd);
        if (outq <= 0) { /* all acknowledged (or cannot tell): the server has it all */
            c->upload = UPLOAD_DONE;
            conn_arm(t, c, e->cfg.state_timeout_ms[SMTP_S_DOT]);
            return true;
        }
        if (outq < c->upload_outq)
            c->upload_progress_ms = t->now_ms;
        c->upload_outq = outq;
    }
    int64_t stalled_at = c->upload_progress_ms + e->cfg.data_block_timeout_ms;
    if (t->now_ms >= stalled_at)
        return false;
    int64_t next = t->now_ms + UPLOAD_POLL_MS;
    conn_arm(t, c, (next < stalled_at ? next : stalled_at) - t->now_ms);
    return true;
}

/* The recv's linked timeout fired (or conn_arm took the recv back). */
static void conn_timer(struct io_thread *t, struct conn *c)
{
    int64_t lease = mbox_deadline(t, c->w->mb);
    bool uploading = c->upload == UPLOAD_USER || c->upload == UPLOAD_KERNEL;
    if (t->now_ms < lease && uploading && t->now_ms >= c->reply_deadline_ms &&
        !conn_upload_tick(t, c)) {
        char why[120];
        snprintf(why, sizeof why, "timeout sending the message (state %s)",
                 smtp_state_name(c->smtp.state));
        c->host_ok = false;
        conn_fail(t, c, SMTP_ST_DEFERRED, why);
        return;
    }
    if (t->now_ms < conn_deadline(t, c)) {
        /* the deadline moved later meanwhile (renewal, upload tick): wait on */
        post_recv(t, c);
        return;
    }
    char why[120];
    const char *state = c->phase == CONN_TLS ? "tls_handshake" : smtp_state_name(c->smtp.state);
    if (t->now_ms >= lease) {
        snprintf(why, sizeof why, "lease deadline reached in state %s", state);
        c->host_ok = c->greeted;
    } else {
        snprintf(why, sizeof why, "timeout waiting for the server in state %s", state);
        c->host_ok = false;
    }
    conn_fail(t, c, SMTP_ST_DEFERRED, why);
}

static void on_recv(struct io_thread *t, struct conn *c, int res)
{
    c->recv_posted = false;
    /* a cancel of this recv was executed before any later recv could be issued (SQEs
     * run in order): whatever this completion is, it is the last of that one */
    c->recv_cancel_posted = false;
    if (c->phase == CONN_CLOSING) {
        conn_close(t, c);
        return;
    }
    if (res == -ECANCELED) {
        conn_timer(t, c);
        return;
    }
    if (res == 0) {
        if (c->phase == CONN_TLS) {
            conn_fail(t, c, SMTP_ST_TLS, "connection closed during the TLS handshake");
            return;
        }
        conn_settle_abort(t, c, SMTP_ST_DEFERRED, NULL, true);
        if (c->smtp.state == SMTP_S_QUIT || c->greeted)
            c->host_ok = c->greeted;
        conn_close(t, c);
        return;
    }
    if (res < 0) {
        char why[120];
        snprintf(why, sizeof why, "recv: %s", strerror(-res));
        c->host_ok = false;
        conn_fail(t, c, SMTP_ST_DEFERRED, why);
        return;
    }
    conn_on_data(t, c, c->rbuf, (size_t)res);
}

static void on_send(struct io_thread *t, struct conn *c, int res)
{
    c->send_posted = false;
    if (c->phase == CONN_CLOSING) {
        conn_close(t, c);
        return;
    }
    if (res < 0) {
        char why[120];
        snprintf(why, sizeof why, "send: %s", res == -ECANCELED ? "timed out" : strerror(-res));
        conn_fail(t, c, SMTP_ST_DEFERRED, why);
        return;
    }
    buf_consume(&c->sending, (size_t)res);
    if (c->sending.len) {
        /* short write: the rest goes first, ahead of anything queued since */
        buf_append(&c->sending, c->sendq.data, c->sendq.len);
        buf_reset(&c->sendq);
        buf tmp = c->sendq;
        c->sendq = c->sending;
        c->sending = tmp;
    }
    if (!c->sending.len && c->sending.cap > 1024)
        buf_free(&c->sending);
    if (c->upload == UPLOAD_USER) {
        /* progress; the upload tick looks at it (no timer moves here) */
        c->upload_progress_ms = t->now_ms;
        if (!c->sending.len && !c->sendq.len) {
            /* the final dot is in the socket: from here the server may hold it */
            c->upload = UPLOAD_KERNEL;
            c->upload_outq = INT_MAX;
        }
    }
    if (c->close_after_send && !c->sendq.len) {
        conn_close(t, c);
        return;
    }
    flush_send(t, c);
}

/* ---- scheduling ---- */

/* Resolves the host; false while the answer is pending or when it failed (then the
 * waiting works are settled or retried). */
static bool host_resolve(struct io_thread *t, struct host *h)
{
    if (h->dns == DNS_OK && h->addr_expires_ms > t->now_ms)
        return true;
    char err[160];
    int permanent = 0;
    int rc = resolver_lookup(t->e->res, h->name, h->port, t->efd, t->now_ms, &h->addrs, &permanent,
                             err, sizeof err);
    if (rc == RESOLVER_OK) {
        h->dns = DNS_OK;
        if (h->addr_first >= h->addrs.n)
            h->addr_first = 0;
        h->addr_expires_ms = t->now_ms + t->e->cfg.dns_ttl_ms;
        return true;
    }
    if (rc == RESOLVER_PENDING) {
        h->dns = DNS_PENDING;
        return false;
    }
    h->dns = DNS_NONE;
    while (h->wait_head) {
        struct work *w = h->wait_head;
        h->wait_head = w->next;
        work_final_all(t, w, permanent ? SMTP_ST_FAILED : SMTP_ST_DEFERRED, err);
    }
    h->wait_tail = NULL;
    return false;
}

/* Puts a work in the heap to wake when it is due, or at its lease's start limit when
 * that comes first (a renewal may still move the limit past its due time). */
static void work_schedule(struct io_thread *t, struct work *w)
{
    int64_t limit = mbox_start_limit(t, w->mb);
    w->wake_ms = w->due_ms < limit ? w->due_ms : limit;
    heap_push(t, w);
}

/* A work's wake time came: it is due, or its lease ends before it is. */
static void work_due(struct io_thread *t, struct work *w)
{
    int64_t limit = mbox_start_limit(t, w->mb);
    if (w->due_ms >= limit && t->now_ms >= limit) {
        work_final_all(t, w, SMTP_ST_DEFERRED,
                       w->due_ms > t->now_ms ? "not sent: due after the lease deadline"
                                             : "not sent: lease deadline reached");
        return;
    }
    if (t->now_ms < w->due_ms) { /* renewed meanwhile: wait on */
        work_schedule(t, w);
        return;
    }
    if (t->now_ms >= limit) {
        work_final_all(t, w, SMTP_ST_DEFERRED, "not sent: lease deadline reached");
        return;
    }
    host_enqueue(t, w);
}

/* Starts what may start; returns the earliest time something blocked may go. */
static int64_t dispatch(struct io_thread *t)
{
    int64_t wake = INT64_MAX;
    while (t->heap_len && t->heap[0]->wake_ms <= t->now_ms)
        work_due(t, heap_pop(t));
    if (t->heap_len)
        wake = t->heap[0]->wake_ms;

    struct host *list = t->ready;
    t->ready = NULL;
    while (list) {
        struct host *h = list;
        list = h->ready_next;
        h->queued = false;
        /* whatever waits here (a DNS answer, a free session, the shaper) waits no
         * longer than its lease allows */
        while (h->wait_head && t->now_ms >= mbox_start_limit(t, h->wait_head->mb)) {
            struct work *w = h->wait_head;
            h->wait_head = w->next;
            work_final_all(t, w, SMTP_ST_DEFERRED, "not sent: lease deadline reached");
        }
        if (!h->wait_head) {
            h->wait_tail = NULL;
            continue;
        }
        if (!host_resolve(t, h)) {
            if (h->wait_head) {
                host_mark_ready(t, h); /* the resolver's eventfd write wakes us */
                int64_t until = mbox_start_limit(t, h->wait_head->mb);
                if (until < wake)
                    wake = until;
            }
            continue;
        }
        while (h->wait_head && t->free_conns) {
            struct work *w = h->wait_head;
            if (t->now_ms >= mbox_start_limit(t, w->mb)) {
                h->wait_head = w->next;
                work_final_all(t, w, SMTP_ST_DEFERRED, "not sent: lease deadline reached");
                continue;
            }
            int64_t rc = host_acquire(t, h);
            if (rc != SHAPER_GO) {
                /* held back: look again when allowed, or when the lease runs out */
                int64_t until = mbox_start_limit(t, w->mb);
                if (rc > 0 && t->now_ms + rc < until)
                    until = t->now_ms + rc;
                if (until < wake)
                    wake = until;
                host_mark_ready(t, h);
                break;
            }
            h->wait_head = w->next;
            if (!h->wait_head)
                h->wait_tail = NULL;
            conn_start(t, w);
        }
        if (!h->wait_head) {
            h->wait_tail = NULL;
        } else if (!t->free_conns) {
            host_mark_ready(t, h);
            int64_t until = mbox_start_limit(t, h->wait_head->mb);
            if (until < wake)
                wake = until;
        }
    }
    return wake;
}

/* A submitted mailbox becomes works: its slots sorted by due time, grouped when due
 * together (same not_before_s), at most batch_max per session. */
static void mailbox_accept(struct io_thread *t, struct inbox_item *it)
{
    job_mailbox *m = it->m;
    if (!m->nsends) {
        job_mailbox_free(m);
        return;
    }
    struct mbox *mb = xcalloc(1, sizeof *mb);
    mb->m = m;
    mb->lease_start_ms = it->lease_start_ms;
    mb->deadline_ms = it->deadline_ms;
    mb->lease_key = it->lease_key;
    mb->remaining = m->nsends;
    uint32_t *order = xcalloc(m->nsends, sizeof *order);
    for (size_t i = 0; i < m->nsends; i++) {
        /* insertion sort by not_before_s: a mailbox has a few dozen slots a day */
        size_t j = i;
        while (j > 0 && m->sends[order[j - 1]].not_before_s > m->sends[i].not_before_s) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (uint32_t)i;
    }
    struct host *h = host_get(t, m->host, m->port);
    /* While draining, work_filter cancels each group and frees the mailbox with its
     * last one: the loop must not read m after that. */
    const size_t nsends = m->nsends;
    size_t i = 0;
    while (i < nsends) {
        struct work *w = xcalloc(1, sizeof *w);
        w->mb = mb;
        w->host = h;
        w->attempt = 1;
        w->sends = xcalloc((size_t)t->e->cfg.batch_max, sizeof *w->sends);
        int64_t nb = m->sends[order[i]].not_before_s;
        while (i < nsends && w->n < (size_t)t->e->cfg.batch_max &&
               m->sends[order[i]].not_before_s == nb)
            w->sends[w->n++] = order[i++];
        w->due_ms = mb->lease_start_ms + nb * 1000;
        if (t->cancel_all && work_filter(t, w) == 0)
            continue;
        /* a lease that cannot be renewed ends what it cannot reach now, not later */
        if (!mb->lease_key && w->due_ms >= mbox_start_limit(t, mb)) {
            work_final_all(t, w, SMTP_ST_DEFERRED, "not sent: due after the lease deadline");
            continue;
        }
        work_schedule(t, w);
    }
    free(order);
}

/* The spool has (or could not write) the intent of a session's current slot, whose
 * payload waits at the gate. A session that ended meanwhile (timeout, drop) is gone. */
static void intent_done(struct io_thread *t, uint64_t token, bool ok)
{
    uint32_t idx = ud_idx(token);
    if (idx >= t->nconns)
        return;
    struct conn *c = &t->conns[idx];
    if (c->phase != CONN_SMTP || c->gen != ud_gen(token) || !c->gated)
        return;
    c->gated = false;
    if (!ok)
        c->host_ok = true; /* our disk, not the host's fault */
    int prev_state = c->smtp.state;
    int ev =
        ok && t->now_ms >= mbox_start_limit(t, c->w->mb)
            ? smtp_session_payload_go(&c->smtp, false,
                                      "not sent: lease deadline reached before the data", t->now_ms)
            : smtp_session_payload_go(&c->smtp, ok,
                                      "not sent: the spool could not record the intent", t->now_ms);
    conn_after_session(t, c, ev, prev_state);
}

static void inbox_drain(struct io_thread *t)
{
    pthread_mutex_lock(&t->inbox_mu);
    struct inbox_item *list = t->inbox;
    t->inbox = NULL;
    struct control_item *ctl = t->controls;
    t->controls = NULL;
    bool cancel_all = t->cancel_all_req;
    bool stop = t->stop;
    pthread_mutex_unlock(&t->inbox_mu);
    /* reverse to keep submission order */
    struct inbox_item *rev = NULL;
    while (list) {
        struct inbox_item *n = list->next;
        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        struct inbox_item *n = rev->next;
        mailbox_accept(t, rev);
        free(rev);
        rev = n;
    }
    /* cancels after the submissions they may refer to */
    bool cancels = false;
    if (cancel_all && !t->cancel_all) {
        t->cancel_all = true;
        cancels = true;
    }
    while (ctl) {
        struct control_item *n = ctl->next;
        if (ctl->cancel_ids) {
            for (size_t i = 0; i < ctl->ncancel; i++)
                id_set_add(&t->cancelled, ctl->cancel_ids[i]);
            free(ctl->cancel_ids);
            cancels = true;
        } else {
            intent_done(t, ctl->token, ctl->ok);
        }
        free(ctl);
        ctl = n;
    }
    if (cancels)
        cancel_pending(t);
    if (stop)
        t->stop = true;
}

static void handle_cqe(struct io_thread *t, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    int op = ud_op(ud);
    if (op == OP_EVENTFD) {
        inbox_drain(t);
        /* a resolver answer may be in, or another thread freed room at a host: give
         * the hosts that wait another look */
        bool released = atomic_exchange(&t->hosts_released, false);
        for (uint32_t b = 0; b < HOST_BUCKETS; b++)
            for (struct host *h = t->hosts[b]; h; h = h->hash_next)
                if (h->wait_head && (released || h->dns == DNS_PENDING))
                    host_mark_ready(t, h);
        if (!t->stop)
            post_eventfd_read(t);
        return;
    }
    if (op == OP_LINK_TIMEOUT || op == OP_CLOSE || op == OP_CANCEL)
        return; /* outcomes show on the linked (or cancelled) operation */
    uint32_t idx = ud_idx(ud);
    if (idx >= t->nconns)
        return;
    struct conn *c = &t->conns[idx];
    if (c->phase == CONN_FREE || c->gen != ud_gen(ud)) {
        log_warn("dropping a late completion for a reused session");
        return;
    }
    c->inflight--;
    switch (op) {
    case OP_CONNECT:
        on_connect(t, c, cqe->res);
        break;
    case OP_RECV:
        on_recv(t, c, cqe->res);
        break;
    case OP_SEND:
        on_send(t, c, cqe->res);
        break;
    default:
        log_error("unknown io_uring operation %d in a completion", op);
        abort();
    }
}

/* Creates the ring on the thread that uses it (SINGLE_ISSUER / DEFER_TASKRUN tie a
 * ring to its submitter). Falls back to a plain ring on older kernels. */
static int ring_setup(struct io_uring *ring, unsigned entries, bool *fast, char *err, size_t errlen)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = entries * 4;
    int rc = io_uring_queue_init_params(entries, ring, &p);
    *fast = rc == 0;
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        rc = io_uring_queue_init_params(entries, ring, &p);
    }
    if (rc < 0) {
        snprintf(err, errlen, "io_uring_queue_init: %s%s", strerror(-rc),
                 rc == -EPERM    ? " (io_uring disabled by sysctl kernel.io_uring_disabled?)"
                 : rc == -ENOSYS ? " (kernel without io_uring)"
                                 : "");
        return -1;
    }
    if (!(p.features & IORING_FEAT_NODROP) || !(p.features & IORING_FEAT_FAST_POLL)) {
        snprintf(err, errlen, "io_uring lacks %s (kernel 5.7 or later needed)",
                 !(p.features & IORING_FEAT_NODROP) ? "IORING_FEAT_NODROP"
                                                    : "IORING_FEAT_FAST_POLL");
        io_uring_queue_exit(ring);
        return -1;
    }
    return 0;
}

static void *io_thread_main(void *arg)
{
    struct io_thread *t = arg;
    char err[200];
    bool fast;
    if (ring_setup(&t->ring, 4096, &fast, err, sizeof err) < 0) {
        log_error("I/O thread %d: %s", t->id, err);
        __atomic_store_n(&t->ring_ready, -1, __ATOMIC_RELEASE);
        return NULL;
    }
    if (!fast && t->id == 0)
        log_warn("io_uring: IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN not available (kernel "
                 "before 6.1); running with a default ring");
    __atomic_store_n(&t->ring_ready, 1, __ATOMIC_RELEASE);
    random_bytes(&t->rng, sizeof t->rng);
    t->rng |= 1; /* xorshift never leaves 0 */
    post_eventfd_read(t);
    while (!t->stop) {
        t->now_ms = clock_mono_ms();
        int64_t wake = dispatch(t);
        results_flush(t);
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts;
        int rc;
        if (wake != INT64_MAX) {
            int64_t d = wake - t->now_ms;
            ts_set(&ts, d < 1 ? 1 : d);
            rc = io_uring_submit_and_wait_timeout(&t->ring, &cqe, 1, &ts, NULL);
        } else {
            rc = io_uring_submit_and_wait_timeout(&t->ring, &cqe, 1, NULL, NULL);
        }
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            log_error("io_uring wait: %s", strerror(-rc));
            abort();
        }
        t->now_ms = clock_mono_ms();
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&t->ring, head, cqe)
        {
            handle_cqe(t, cqe);
            seen++;
        }
        io_uring_cq_advance(&t->ring, seen);
    }
    return NULL;
}

/* Adds mb to the set of unfinished mailboxes unless already there. */
static void mbox_collect(struct mbox ***set, size_t *n, size_t *cap, struct mbox *mb)
{
    for (size_t k = 0; k < *n; k++)
        if ((*set)[k] == mb)
            return;
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        /* an array of pointers: sizeof a pointer is meant */
        *set = xrealloc(*set, *cap * sizeof **set); // NOLINT(bugprone-sizeof-expression)
    }
    (*set)[(*n)++] = mb;
}

/* Frees everything of a stopped thread, sessions in flight included. */
static void io_thread_cleanup(struct io_thread *t)
{
    struct mbox **mbs = NULL;
    size_t nmb = 0, cap = 0;
    if (t->ring_ready == 1) {
        for (uint32_t i = 0; i < t->nconns; i++) {
            struct conn *c = &t->conns[i];
            buf_free(&c->payload); /* free entries keep theirs for the next session */
            buf_free(&c->sendq);
            buf_free(&c->sending);
            if (c->phase == CONN_FREE)
                continue;
            if (c->fd >= 0)
                close(c->fd);
            smtp_session_clear(&c->smtp);
            tls_conn_free(c->tls);
            free(c->slots);
            mbox_collect(&mbs, &nmb, &cap, c->w->mb);
            work_free(c->w);
        }
        io_uring_queue_exit(&t->ring);
    }
    free(t->conns);
    if (t->efd >= 0)
        close(t->efd);
    for (size_t i = 0; i < t->heap_len; i++) {
        mbox_collect(&mbs, &nmb, &cap, t->heap[i]->mb);
        work_free(t->heap[i]);
    }
    free(t->heap);
    for (uint32_t b = 0; b < HOST_BUCKETS; b++) {
        struct host *h = t->hosts[b];
        while (h) {
            struct host *n = h->hash_next;
            while (h->wait_head) {
                struct work *w = h->wait_head;
                h->wait_head = w->next;
                mbox_collect(&mbs, &nmb, &cap, w->mb);
                work_free(w);
            }
            free(h->name);
            free(h);
            h = n;
        }
    }
    for (size_t k = 0; k < nmb; k++) {
        job_mailbox_free(mbs[k]->m);
        free(mbs[k]);
    }
    free(mbs);
    while (t->ctxs) {
        struct ctx_entry *n = t->ctxs->next;
        tls_ctx_free(t->ctxs->ctx);
        free(t->ctxs->ca_file);
        free(t->ctxs);
        t->ctxs = n;
    }
    struct inbox_item *it = t->inbox;
    while (it) {
        struct inbox_item *n = it->next;
        job_mailbox_free(it->m);
        free(it);
        it = n;
    }
    struct control_item *ci = t->controls;
    while (ci) {
        struct control_item *n = ci->next;
        free(ci->cancel_ids);
        free(ci);
        ci = n;
    }
    free(t->cancelled.v);
    free(t->results);
    buf_free(&t->plain);
    buf_free(&t->msg_scratch);
    pthread_mutex_destroy(&t->inbox_mu);
}

/* ---- engine ---- */

static int probe_ops(char *err, size_t errlen)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(2, &ring, 0);
    if (rc < 0) {
        snprintf(err, errlen,
                 "io_uring is not available (io_uring_setup: %s); a container's default "
                 "seccomp profile blocks it (use deploy/seccomp/kiln-agent.json), and so does "
                 "the kernel.io_uring_disabled sysctl",
                 strerror(-rc));
        return -1;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    io_uring_queue_exit(&ring);
    if (!probe) {
        snprintf(err, errlen,
                 "io_uring is too old to list its operations (kernel 5.7 or later "
                 "needed)");
        return -1;
    }
    static const struct {
        int op;
        const char *name;
    } need[] = {{IORING_OP_CONNECT, "IORING_OP_CONNECT"},
                {IORING_OP_RECV, "IORING_OP_RECV"},
                {IORING_OP_SEND, "IORING_OP_SEND"},
                {IORING_OP_LINK_TIMEOUT, "IORING_OP_LINK_TIMEOUT"},
                {IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"},
                {IORING_OP_READ, "IORING_OP_READ"},
                {IORING_OP_CLOSE, "IORING_OP_CLOSE"}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (!io_uring_opcode_supported(probe, need[i].op)) {
            snprintf(err, errlen, "io_uring lacks %s (kernel 5.7 or later needed)", need[i].name);
            io_uring_free_probe(probe);
            return -1;
        }
    }
    io_uring_free_probe(probe);
    return 0;
}

static int div_up(int a, int b)
{
    return (a + b - 1) / b;
}

static void shared_hosts_free(engine *e)
{
    for (uint32_t b = 0; b < HOST_BUCKETS; b++)
        while (e->shosts[b]) {
            struct shared_host *x = e->shosts[b];
            e->shosts[b] = x->next;
            pthread_mutex_destroy(&x->mu);
            free(x->name);
            free(x);
        }
    pthread_mutex_destroy(&e->hosts_mu);
    pthread_mutex_destroy(&e->ext_mu);
    free(e->ext);
}

engine *engine_create(const engine_config *cfg, char *err, size_t errlen)
{
    if (probe_ops(err, errlen) < 0)
        return NULL;
    engine *e = xcalloc(1, sizeof *e);
    e->cfg = *cfg;
    int n = cfg->threads;
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    if (n > cfg->concurrency)
        n = cfg->concurrency;
    if (n > 255)
        n = 255; /* an intent token names its thread in the 8 op bits of user_data */
    e->nthreads = n;
    pthread_mutex_init(&e->res_mu, NULL);
    pthread_cond_init(&e->res_cv, NULL);
    e->res = resolver_create(cfg->dns_ttl_ms, 30000);
    pthread_mutex_init(&e->hosts_mu, NULL);
    pthread_mutex_init(&e->ext_mu, NULL);
    e->threads = xcalloc((size_t)n, sizeof *e->threads);
    for (int i = 0; i < n; i++) {
        e->threads[i].efd = -1;
        pthread_mutex_init(&e->threads[i].inbox_mu, NULL);
    }
    int started = 0;
    for (int i = 0; i < n; i++) {
        struct io_thread *t = &e->threads[i];
        t->e = e;
        t->id = i;
        t->shaping = cfg->shaping;
        t->nconns = (uint32_t)div_up(cfg->concurrency, n);
        t->conns = xcalloc(t->nconns, sizeof *t->conns);
        for (uint32_t k = t->nconns; k-- > 0;) {
            t->conns[k].idx = k;
            t->conns[k].fd = -1;
            t->conns[k].next_free = t->free_conns;
            t->free_conns = &t->conns[k];
        }
        t->efd = eventfd(0, EFD_CLOEXEC);
        if (t->efd < 0) {
            snprintf(err, errlen, "eventfd: %s", strerror(errno));
            goto fail;
        }
        t->now_ms = clock_mono_ms();
        if (pthread_create(&t->tid, NULL, io_thread_main, t) != 0) {
            snprintf(err, errlen, "cannot start I/O thread %d", i);
            goto fail;
        }
        started++;
        while (__atomic_load_n(&t->ring_ready, __ATOMIC_ACQUIRE) == 0)
            usleep(1000);
        if (t->ring_ready < 0) {
            snprintf(err, errlen, "cannot set up io_uring (see the log above)");
            goto fail;
        }
    }
    return e;
fail:
    for (int i = 0; i < n; i++) {
        struct io_thread *t = &e->threads[i];
        if (i < started) {
            pthread_mutex_lock(&t->inbox_mu);
            t->stop = true;
            pthread_mutex_unlock(&t->inbox_mu);
            uint64_t one = 1;
            if (write(t->efd, &one, sizeof one) < 0)
                log_warn("eventfd write: %s", strerror(errno));
            pthread_join(t->tid, NULL);
        }
        io_thread_cleanup(t);
    }
    shared_hosts_free(e);
    resolver_destroy(e->res);
    free(e->threads);
    pthread_mutex_destroy(&e->res_mu);
    pthread_cond_destroy(&e->res_cv);
    free(e);
    return NULL;
}

void engine_extend(engine *e, uint64_t lease_key, int64_t deadline_ms)
{
    if (!lease_key)
        return;
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&e->ext_mu);
    size_t w = 0;
    bool found = false;
    for (size_t i = 0; i < e->next_ext; i++) {
        if (e->ext[i].key == lease_key) {
            if (deadline_ms > e->ext[i].deadline_ms)
                e->ext[i].deadline_ms = deadline_ms;
            found = true;
        }
        if (e->ext[i].deadline_ms > now) /* a lapsed lease cannot be renewed: drop it */
            e->ext[w++] = e->ext[i];
    }
    e->next_ext = w;
    if (!found && deadline_ms > now) {
        if (e->next_ext == e->ext_cap) {
            e->ext_cap = e->ext_cap ? e->ext_cap * 2 : 16;
            e->ext = xrealloc(e->ext, e->ext_cap * sizeof *e->ext);
        }
        e->ext[e->next_ext++] = (struct lease_ext){lease_key, deadline_ms};
    }
    atomic_fetch_add(&e->ext_version, 1);
    pthread_mutex_unlock(&e->ext_mu);
}

void engine_submit(engine *e, job_mailbox *m, int64_t lease_start_ms, int64_t deadline_ms,
                   uint64_t lease_key)
{
    unsigned i = atomic_fetch_add(&e->next_thread, 1) % (unsigned)e->nthreads;
    struct io_thread *t = &e->threads[i];
    struct inbox_item *it = xcalloc(1, sizeof *it);
    it->m = m;
    it->lease_start_ms = lease_start_ms;
    it->deadline_ms = deadline_ms;
    it->lease_key = lease_key;
    pthread_mutex_lock(&t->inbox_mu);
    bool was_empty = !t->inbox;
    it->next = t->inbox;
    t->inbox = it;
    pthread_mutex_unlock(&t->inbox_mu);
    if (was_empty) {
        uint64_t one = 1;
        if (write(t->efd, &one, sizeof one) < 0)
            log_warn("eventfd write: %s", strerror(errno));
    }
}

static void thread_wake(struct io_thread *t)
{
    uint64_t one = 1;
    if (write(t->efd, &one, sizeof one) < 0)
        log_warn("eventfd write: %s", strerror(errno));
}

static void control_push(struct io_thread *t, struct control_item *it)
{
    pthread_mutex_lock(&t->inbox_mu);
    it->next = t->controls;
    t->controls = it;
    pthread_mutex_unlock(&t->inbox_mu);
    thread_wake(t);
}

void engine_intent_done(engine *e, uint64_t token, bool ok)
{
    /* the token's index is per thread: the thread is the one whose table holds it, so
     * the token carries the thread in the op bits */
    int ti = ud_op(token);
    if (ti < 0 || ti >= e->nthreads)
        return;
    struct control_item *it = xcalloc(1, sizeof *it);
    it->token = token;
    it->ok = ok;
    control_push(&e->threads[ti], it);
}

void engine_cancel(engine *e, const int64_t *send_ids, size_t n)
{
    if (!n)
        return;
    for (int i = 0; i < e->nthreads; i++) {
        struct control_item *it = xcalloc(1, sizeof *it);
        it->cancel_ids = xcalloc(n, sizeof *it->cancel_ids);
        memcpy(it->cancel_ids, send_ids, n * sizeof *send_ids);
        it->ncancel = n;
        control_push(&e->threads[i], it);
    }
}

void engine_cancel_all(engine *e)
{
    for (int i = 0; i < e->nthreads; i++) {
        struct io_thread *t = &e->threads[i];
        pthread_mutex_lock(&t->inbox_mu);
        t->cancel_all_req = true;
        pthread_mutex_unlock(&t->inbox_mu);
        thread_wake(t);
    }
}

void engine_destroy(engine *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->nthreads; i++) {
        struct io_thread *t = &e->threads[i];
        pthread_mutex_lock(&t->inbox_mu);
        t->stop = true;
        pthread_mutex_unlock(&t->inbox_mu);
        uint64_t one = 1;
        if (write(t->efd, &one, sizeof one) < 0)
            log_warn("eventfd write: %s", strerror(errno));
    }
    for (int i = 0; i < e->nthreads; i++) {
        pthread_join(e->threads[i].tid, NULL);
        io_thread_cleanup(&e->threads[i]);
    }
    resolver_destroy(e->res);
    shared_hosts_free(e);
    free(e->threads);
    free(e->results);
    pthread_mutex_destroy(&e->res_mu);
    pthread_cond_destroy(&e->res_cv);
    free(e);
}

void engine_metrics(engine *e, buf *out)
{
    buf_puts(out, "# HELP kiln_agent_sends_total Slots finished, by outcome.\n"
                  "# TYPE kiln_agent_sends_total counter\n");
    for (int s = SMTP_ST_SENT; s < SMTP_ST_COUNT; s++)
        buf_printf(out, "kiln_agent_sends_total{status=\"%s\"} %lld\n", smtp_status_name(s),
                   (long long)atomic_load(&e->m_status[s]));
    buf_printf(out,
               "# HELP kiln_agent_sessions_total SMTP sessions started.\n"
               "# TYPE kiln_agent_sessions_total counter\n"
               "kiln_agent_sessions_total %lld\n"
               "# HELP kiln_agent_sessions_active SMTP sessions open now.\n"
               "# TYPE kiln_agent_sessions_active gauge\n"
               "kiln_agent_sessions_active %lld\n"
               "# HELP kiln_agent_connect_errors_total Connections that failed to open.\n"
               "# TYPE kiln_agent_connect_errors_total counter\n"
               "kiln_agent_connect_errors_total %lld\n"
               "# HELP kiln_agent_retries_total Deferred slots scheduled for another attempt.\n"
               "# TYPE kiln_agent_retries_total counter\n"
               "kiln_agent_retries_total %lld\n",
               (long long)atomic_load(&e->m_sessions),
               (long long)atomic_load(&e->m_sessions_active),
               (long long)atomic_load(&e->m_connect_errors), (long long)atomic_load(&e->m_retries));
    buf_puts(out, "# HELP kiln_agent_send_latency_seconds Session start to accepted message.\n"
                  "# TYPE kiln_agent_send_latency_seconds histogram\n");
    long long cum = 0;
    for (int b = 0; b < LAT_BUCKETS; b++) {
        cum += atomic_load(&e->m_lat_bucket[b]);
        buf_printf(out, "kiln_agent_send_latency_seconds_bucket{le=\"%g\"} %lld\n", lat_bounds_s[b],
                   cum);
    }
    cum += atomic_load(&e->m_lat_bucket[LAT_BUCKETS]);
    buf_printf(out,
               "kiln_agent_send_latency_seconds_bucket{le=\"+Inf\"} %lld\n"
               "kiln_agent_send_latency_seconds_sum %.3f\n"
               "kiln_agent_send_latency_seconds_count %lld\n",
               cum, (double)atomic_load(&e->m_lat_sum_ms) / 1000.0, cum);
}
