/* The report spool (see spool.h; the record format is in spool_codec.c). Replay reads every record
 * it can verify; a bad record is skipped by scanning for the next magic whose CRC holds, and
 * whatever follows the last good record (a torn write) is cut off so that new records never land
 * after garbage. */
#include "spool.h"
#include "spool_codec.h"

#include "buf.h"
#include "i64map.h"
#include "log.h"
#include "xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

enum send_state { ST_EMPTY = 0, ST_INTENT, ST_OUTCOME, ST_ACKED };

/* send id -> state; acknowledged entries stay until compaction rebuilds the map with
 * live ones only (so a late record for an acknowledged send is recognised). */
struct state_map {
    i64map m;
    size_t live; /* entries in ST_INTENT or ST_OUTCOME */
};

/* Lease ids granted and not released. */
struct lease_set {
    char (*ids)[SPOOL_LEASE_ID_MAX + 1];
    size_t n, cap;
};

struct spool {
    char path[4096], tmp_path[4096], dir[4096];
    int fd, lock_fd;
    pthread_mutex_t mu;       /* pending, map, leases, seq */
    pthread_mutex_t flush_mu; /* the file: one writer at a time */
    buf pending;              /* appended, not yet written */
    buf flushing;             /* taken from pending, write in progress or failed */
    uint64_t seq;             /* last appended */
    uint64_t flushing_seq;
    _Atomic uint64_t durable_seq;
    size_t file_bytes;
    struct state_map map;       /* send id -> state */
    struct state_map inbox_map; /* inbox event key -> state (ST_OUTCOME: not acknowledged) */
    uint64_t last_inbox_key;
    struct lease_set leases, inbox_leases;
};

/* ---- state map ---- */

/* INT64_MIN is i64map's empty mark: no send has that id, a record claiming it is
 * ignored. */
static uint8_t map_get(const struct state_map *m, int64_t key)
{
    int64_t v;
    if (key == INT64_MIN)
        return ST_EMPTY;
    return i64map_get(&m->m, key, &v) ? (uint8_t)v : ST_EMPTY;
}

static void map_set(struct state_map *m, int64_t key, uint8_t val)
{
    bool added;
    if (key == INT64_MIN)
        return;
    int64_t *cell = i64map_slot(&m->m, key, ST_EMPTY, &added);
    uint8_t was = (uint8_t)*cell;
    bool live_before = was == ST_INTENT || was == ST_OUTCOME;
    bool live_after = val == ST_INTENT || val == ST_OUTCOME;
    m->live += (size_t)live_after - (size_t)live_before;
    *cell = val;
}

static void map_free(struct state_map *m)
{
    i64map_free(&m->m);
    m->live = 0;
}

static ssize_t lease_find(const struct lease_set *ls, const char *id)
{
    for (size_t i = 0; i < ls->n; i++)
        if (!strcmp(ls->ids[i], id))
            return (ssize_t)i;
    return -1;
}

static void lease_add(struct lease_set *ls, const char *id)
{
    if (lease_find(ls, id) >= 0)
        return;
    if (ls->n == ls->cap) {
        ls->cap = ls->cap ? ls->cap * 2 : 16;
        ls->ids = xrealloc(ls->ids, ls->cap * sizeof *ls->ids);
    }
    snprintf(ls->ids[ls->n++], SPOOL_LEASE_ID_MAX + 1, "%s", id);
}

static void lease_del(struct lease_set *ls, const char *id)
{
    ssize_t i = lease_find(ls, id);
    if (i >= 0)
        memcpy(ls->ids[i], ls->ids[--ls->n], sizeof ls->ids[0]);
}

/* A copy of the set for a replay. */
static void lease_copy(const struct lease_set *ls, char (**out)[SPOOL_LEASE_ID_MAX + 1], size_t *n)
{
    if (!ls->n)
        return;
    *out = xcalloc(ls->n, sizeof **out);
    memcpy(*out, ls->ids, ls->n * sizeof **out);
    *n = ls->n;
}

/* An inbox record: an event is live (ST_OUTCOME) until its ack. Keys are the spool's
 * own, so an ack never meets a send id. */
static void apply_inbox(spool *sp, const spool_any *a)
{
    int64_t key = (int64_t)a->ev.key;
    if (a->ev.key > sp->last_inbox_key)
        sp->last_inbox_key = a->ev.key;
    if (a->r.type == SPOOL_INBOX_ACK)
        map_set(&sp->inbox_map, key, ST_ACKED);
    else if (map_get(&sp->inbox_map, key) != ST_ACKED)
        map_set(&sp->inbox_map, key, ST_OUTCOME);
}

/* Applies a record to the live state; the caller holds mu (or is alone). */
static void apply(spool *sp, const spool_any *a)
{
    const spool_record *r = &a->r;
    if (r->type == SPOOL_INBOX_EVENT || r->type == SPOOL_INBOX_ACK) {
        apply_inbox(sp, a);
        return;
    }
    uint8_t st = r->type == SPOOL_INTENT || r->type == SPOOL_OUTCOME || r->type == SPOOL_ACK
                     ? map_get(&sp->map, r->send_id)
                     : ST_EMPTY;
    switch (r->type) {
    case SPOOL_LEASE:
        lease_add(&sp->leases, r->lease_id);
        break;
    case SPOOL_INBOX_LEASE:
        lease_add(&sp->inbox_leases, r->lease_id);
        break;
    case SPOOL_RELEASED:
        lease_del(&sp->leases, r->lease_id);
        lease_del(&sp->inbox_leases, r->lease_id);
        break;
    case SPOOL_INTENT:
        if (st == ST_EMPTY || st == ST_INTENT)
            map_set(&sp->map, r->send_id, ST_INTENT);
        break;
    case SPOOL_OUTCOME:
        if (st != ST_ACKED)
            map_set(&sp->map, r->send_id, ST_OUTCOME);
        break;
    case SPOOL_ACK:
        map_set(&sp->map, r->send_id, ST_ACKED);
        break;
    default:
        break;
    }
}

/* Should this record survive a compaction? */
static bool record_live(const spool *sp, const spool_any *a)
{
    const spool_record *r = &a->r;
    switch (r->type) {
    case SPOOL_LEASE:
        return lease_find(&sp->leases, r->lease_id) >= 0;
    case SPOOL_INBOX_LEASE:
        return lease_find(&sp->inbox_leases, r->lease_id) >= 0;
    case SPOOL_INBOX_EVENT:
        return map_get(&sp->inbox_map, (int64_t)a->ev.key) == ST_OUTCOME;
    case SPOOL_INTENT:
        return map_get(&sp->map, r->send_id) == ST_INTENT;
    case SPOOL_OUTCOME:
        return map_get(&sp->map, r->send_id) == ST_OUTCOME;
    default:
        return false;
    }
}

/* ---- file I/O ---- */

static int read_all(int fd, buf *out)
{
    char chunk[65536];
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(fd, chunk, sizeof chunk, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        buf_append(out, chunk, (size_t)n);
        off += n;
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
}

struct replay_ctx {
    spool *sp;
    spool_record *all;
    size_t n, cap;
    spool_inbox_event *events; /* every inbox event read, json copied */
    size_t nevents, events_cap;
};

static void collect_inbox_event(struct replay_ctx *c, const spool_inbox_event *e)
{
    if (c->nevents == c->events_cap) {
        c->events_cap = c->events_cap ? c->events_cap * 2 : 64;
        c->events = xrealloc(c->events, c->events_cap * sizeof *c->events);
    }
    spool_inbox_event *o = &c->events[c->nevents++];
    *o = *e;
    o->json = xmalloc(e->json_len + 1);
    memcpy(o->json, e->json, e->json_len);
    o->json[e->json_len] = '\0';
}

static void replay_collect(void *arg, const spool_any *a, const unsigned char *raw, size_t len)
{
    (void)raw;
    (void)len;
    struct replay_ctx *c = arg;
    const spool_record *r = &a->r;
    apply(c->sp, a);
    if (r->type == SPOOL_INBOX_EVENT)
        collect_inbox_event(c, &a->ev);
    if (r->type != SPOOL_INTENT && r->type != SPOOL_OUTCOME)
        return;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        c->all = xrealloc(c->all, c->cap * sizeof *c->all);
    }
    c->all[c->n++] = *r;
}

/* Fills rep from the records read: the last word on each unacknowledged send. */
static void replay_result(spool *sp, struct replay_ctx *c, spool_replay *rep)
{
    struct state_map seen = {0};
    for (size_t k = c->n; k-- > 0;) {
        const spool_record *r = &c->all[k];
        uint8_t st = map_get(&sp->map, r->send_id);
        if (map_get(&seen, r->send_id) != ST_EMPTY)
            continue;
        if ((r->type == SPOOL_OUTCOME && st == ST_OUTCOME) ||
            (r->type == SPOOL_INTENT && st == ST_INTENT)) {
            map_set(&seen, r->send_id, ST_ACKED);
            if (rep->npending % 256 == 0)
                rep->pending = xrealloc(rep->pending, (rep->npending + 256) * sizeof *rep->pending);
            spool_record *o = &rep->pending[rep->npending++];
            *o = *r;
            if (r->type == SPOOL_INTENT) {
                /* the session may have reached the server: never send it again, and let
                 * the control plane count it (DESIGN.md, honest accounting) */
                o->type = SPOOL_OUTCOME;
                snprintf(o->status, sizeof o->status, "unknown");
                o->smtp_code = 0;
                o->enhanced[0] = '\0';
                snprintf(o->detail, sizeof o->detail,
                         "agent stopped during the session; outcome unknown");
            }
        }
    }
    map_free(&seen);
    /* oldest first */
    for (size_t i = 0, j = rep->npending; i + 1 < j; i++, j--) {
        spool_record t = rep->pending[i];
        rep->pending[i] = rep->pending[j - 1];
        rep->pending[j - 1] = t;
    }
    lease_copy(&sp->leases, &rep->leases, &rep->nleases);
    lease_copy(&sp->inbox_leases, &rep->inbox_leases, &rep->ninbox_leases);
    /* inbox events: each key is written once, so the file's order is the order to
     * report them in; those acknowledged stay behind */
    for (size_t i = 0; i < c->nevents; i++) {
        spool_inbox_event *e = &c->events[i];
        if (map_get(&sp->inbox_map, (int64_t)e->key) != ST_OUTCOME) {
            free(e->json);
            continue;
        }
        rep->inbox_pending = rep->inbox_pending ? rep->inbox_pending : c->events;
        c->events[rep->ninbox_pending++] = *e;
    }
    if (!rep->ninbox_pending)
        free(c->events);
    c->events = NULL;
}

spool *spool_open(const char *dir, spool_replay *rep, char *err, size_t errlen)
{
    memset(rep, 0, sizeof *rep);
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "spool directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    spool *sp = xcalloc(1, sizeof *sp);
    sp->fd = sp->lock_fd = -1;
    snprintf(sp->dir, sizeof sp->dir, "%s", dir);
    snprintf(sp->path, sizeof sp->path, "%s/results.spool", dir);
    snprintf(sp->tmp_path, sizeof sp->tmp_path, "%s/results.spool.tmp", dir);
    char lock_path[4200];
    snprintf(lock_path, sizeof lock_path, "%s/spool.lock", dir);
    pthread_mutex_init(&sp->mu, NULL);
    pthread_mutex_init(&sp->flush_mu, NULL);
    buf data = BUF_INIT;
    struct replay_ctx c = {sp, NULL, 0, 0, NULL, 0, 0};

    sp->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (sp->lock_fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", lock_path, strerror(errno));
        goto fail;
    }
    if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen,
                 "spool directory %s is in use by another kiln-agent (give each agent its "
                 "own KILN_AGENT_SPOOL_DIR)",
                 dir);
        goto fail;
    }
    sp->fd = open(sp->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (sp->fd < 0 || read_all(sp->fd, &data) < 0) {
        snprintf(err, errlen, "cannot open %s: %s", sp->path, strerror(errno));
        goto fail;
    }
    size_t end = spool_scan((const unsigned char *)data.data, data.len, replay_collect, &c,
                            &rep->records, &rep->bad_records);
    if (end < data.len) {
        rep->torn_bytes = data.len - end;
        if (ftruncate(sp->fd, (off_t)end) < 0 || fdatasync(sp->fd) < 0) {
            snprintf(err, errlen, "cannot cut the torn tail of %s: %s", sp->path, strerror(errno));
            goto fail;
        }
    }
    sp->file_bytes = end;
    replay_result(sp, &c, rep);
    free(c.all);
    buf_free(&data);
    unlink(sp->tmp_path);
    return sp;
fail:
    free(c.all);
    for (size_t i = 0; i < c.nevents; i++)
        free(c.events[i].json);
    free(c.events);
    buf_free(&data);
    spool_close(sp);
    spool_replay_free(rep);
    return NULL;
}

uint64_t spool_append(spool *sp, const spool_record *r)
{
    spool_any a;
    memset(&a.ev, 0, sizeof a.ev);
    a.r = *r;
    pthread_mutex_lock(&sp->mu);
    spool_encode(&sp->pending, r);
    apply(sp, &a);
    uint64_t seq = ++sp->seq;
    pthread_mutex_unlock(&sp->mu);
    return seq;
}

/* An inbox record: encoded and applied under mu, so keys follow the file's order. */
static uint64_t append_inbox(spool *sp, int type, spool_inbox_event *e)
{
    spool_any a;
    memset(&a, 0, sizeof a);
    a.r.type = type;
    pthread_mutex_lock(&sp->mu);
    if (type == SPOOL_INBOX_EVENT)
        e->key = sp->last_inbox_key + 1;
    a.ev = *e;
    spool_encode_inbox(&sp->pending, type, e);
    apply(sp, &a);
    uint64_t seq = ++sp->seq;
    pthread_mutex_unlock(&sp->mu);
    return seq;
}

uint64_t spool_append_inbox_event(spool *sp, spool_inbox_event *e)
{
    /* type, version, lease id, key, mailbox, action, length: well under 128 bytes */
    if (e->json_len + 128 > SPOOL_PAYLOAD_MAX)
        return 0;
    return append_inbox(sp, SPOOL_INBOX_EVENT, e);
}

uint64_t spool_append_inbox_ack(spool *sp, const char *lease_id, uint64_t key)
{
    spool_inbox_event e;
    memset(&e, 0, sizeof e);
    snprintf(e.lease_id, sizeof e.lease_id, "%s", lease_id);
    e.key = key;
    return append_inbox(sp, SPOOL_INBOX_ACK, &e);
}

uint64_t spool_last_seq(spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    uint64_t s = sp->seq;
    pthread_mutex_unlock(&sp->mu);
    return s;
}

/* Moves pending to flushing; the caller holds mu. */
static void take_pending(spool *sp)
{
    if (sp->pending.len) {
        buf_append(&sp->flushing, sp->pending.data, sp->pending.len);
        buf_reset(&sp->pending);
    }
    sp->flushing_seq = sp->seq;
}

/* Writes flushing and fdatasyncs; the caller holds flush_mu. On failure the file is cut
 * back to its last good size and the bytes are kept for the next try. */
static int write_flushing(spool *sp)
{
    if (!sp->flushing.len) {
        atomic_store(&sp->durable_seq, sp->flushing_seq);
        return 0;
    }
    if (write_all(sp->fd, sp->flushing.data, sp->flushing.len) < 0 || fdatasync(sp->fd) < 0) {
        int e = errno;
        log_error("spool %s: write failed: %s (kept in memory, retrying)", sp->path, strerror(e));
        if (ftruncate(sp->fd, (off_t)sp->file_bytes) < 0)
            log_error("spool %s: cannot cut a partial write: %s", sp->path, strerror(errno));
        errno = e;
        return -1;
    }
    sp->file_bytes += sp->flushing.len;
    buf_reset(&sp->flushing);
    atomic_store(&sp->durable_seq, sp->flushing_seq);
    return 0;
}

/* Group commit: whatever was appended until now goes out in one write. */
static int flush_locked(spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    take_pending(sp);
    pthread_mutex_unlock(&sp->mu);
    return write_flushing(sp);
}

int spool_sync(spool *sp, uint64_t seq)
{
    if (atomic_load(&sp->durable_seq) >= seq)
        return 0;
    pthread_mutex_lock(&sp->flush_mu);
    int rc = atomic_load(&sp->durable_seq) >= seq ? 0 : flush_locked(sp);
    pthread_mutex_unlock(&sp->flush_mu);
    return rc;
}

struct compact_ctx {
    spool *sp;
    buf out;
};

static void compact_keep(void *arg, const spool_any *r, const unsigned char *raw, size_t len)
{
    struct compact_ctx *c = arg;
    if (record_live(c->sp, r))
        buf_append(&c->out, raw, len);
}

/* The map keeps acknowledged entries as tombstones; keep only live ones. */
static void map_rebuild(struct state_map *m)
{
    struct state_map fresh = {0};
    size_t it = 0;
    int64_t key, val;
    while (i64map_next(&m->m, &it, &key, &val))
        if (val == ST_INTENT || val == ST_OUTCOME)
            map_set(&fresh, key, (uint8_t)val);
    map_free(m);
    *m = fresh;
}

int spool_compact(spool *sp, size_t threshold_bytes)
{
    int rc = 0;
    pthread_mutex_lock(&sp->flush_mu);
    /* appenders wait for the whole compaction: every record whose state the live map
     * reflects must be in the file that is rewritten, or a send could vanish */
    pthread_mutex_lock(&sp->mu);
    take_pending(sp);
    if (write_flushing(sp) < 0) {
        rc = -1;
        goto out;
    }
    size_t live = sp->map.live + sp->inbox_map.live + sp->leases.n + sp->inbox_leases.n;
    if (sp->file_bytes == 0)
        goto out;
    if (live == 0) {
        if (ftruncate(sp->fd, 0) < 0 || fdatasync(sp->fd) < 0) {
            log_error("spool %s: truncate: %s", sp->path, strerror(errno));
            rc = -1;
            goto out;
        }
        sp->file_bytes = 0;
        map_rebuild(&sp->map);
        map_rebuild(&sp->inbox_map);
        rc = 1;
        goto out;
    }
    /* ~300 bytes a record at most: rewrite only when most of the file is dead */
    if (sp->file_bytes < threshold_bytes || live * 300 > sp->file_bytes / 2)
        goto out;
    buf data = BUF_INIT;
    struct compact_ctx c = {sp, BUF_INIT};
    size_t good = 0, bad = 0;
    int tfd = -1;
    if (read_all(sp->fd, &data) < 0)
        goto io_fail;
    spool_scan((const unsigned char *)data.data, data.len, compact_keep, &c, &good, &bad);
    tfd = open(sp->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (tfd < 0 || write_all(tfd, c.out.data ? c.out.data : "", c.out.len) < 0 ||
        fdatasync(tfd) < 0 || rename(sp->tmp_path, sp->path) < 0 || fsync_dir(sp->dir) < 0)
        goto io_fail;
    close(tfd);
    tfd = -1;
    int nfd = open(sp->path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (nfd < 0)
        goto io_fail;
    close(sp->fd);
    sp->fd = nfd;
    log_info("spool: compacted %zu to %zu bytes (%zu live records)", sp->file_bytes, c.out.len,
             live);
    sp->file_bytes = c.out.len;
    map_rebuild(&sp->map);
    map_rebuild(&sp->inbox_map);
    rc = 1;
    buf_free(&data);
    buf_free(&c.out);
    goto out;
io_fail:
    log_error("spool %s: compaction failed: %s (the old file stays)", sp->path, strerror(errno));
    if (tfd >= 0)
        close(tfd);
    unlink(sp->tmp_path);
    buf_free(&data);
    buf_free(&c.out);
    rc = -1;
out:
    pthread_mutex_unlock(&sp->mu);
    pthread_mutex_unlock(&sp->flush_mu);
    return rc;
}

size_t spool_file_bytes(spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    size_t n = sp->file_bytes;
    pthread_mutex_unlock(&sp->mu);
    return n;
}

size_t spool_live_records(spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    size_t n = sp->map.live + sp->inbox_map.live + sp->leases.n + sp->inbox_leases.n;
    pthread_mutex_unlock(&sp->mu);
    return n;
}

void spool_close(spool *sp)
{
    if (!sp)
        return;
    if (sp->fd >= 0) {
        pthread_mutex_lock(&sp->flush_mu);
        flush_locked(sp);
        pthread_mutex_unlock(&sp->flush_mu);
        close(sp->fd);
    }
    if (sp->lock_fd >= 0)
        close(sp->lock_fd);
    buf_free(&sp->pending);
    buf_free(&sp->flushing);
    map_free(&sp->map);
    map_free(&sp->inbox_map);
    free(sp->leases.ids);
    free(sp->inbox_leases.ids);
    pthread_mutex_destroy(&sp->mu);
    pthread_mutex_destroy(&sp->flush_mu);
    free(sp);
}

void spool_replay_free(spool_replay *rep)
{
    free(rep->pending);
    free(rep->leases);
    for (size_t i = 0; i < rep->ninbox_pending; i++)
        free(rep->inbox_pending[i].json);
    free(rep->inbox_pending);
    free(rep->inbox_leases);
    memset(rep, 0, sizeof *rep);
}
