/* Replies as sends (see lease_reply.h): scheduling through kiln_schedule_reply, loading
 * what is due for the picked senders, and giving it planned slots. */
#include "lease_reply.h"

#include "i64map.h"
#include "mailbox_states.h"
#include "pgarr.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Replies loaded per grant at most (they take slots, so a few per mailbox is plenty). */
#define REPLY_LOAD_MAX 5000

static const db_stmt Q_SCHEDULE = {
    "reply_schedule", "SELECT coalesce(kiln_schedule_reply($1::bigint, to_timestamp($2)), 0)"};

/* Many at once, in the given order (one report's replies): one statement (017). */
static const db_stmt Q_SCHEDULE_MANY = {"reply_schedule_many",
                                        "SELECT kiln_schedule_replies($1::bigint[], $2::bigint[])"};

/* The replying mailboxes that got a reply: due no later than the reply (028: a due reply
 * lifts pacing), so the pick finds them at the reply's due time, not at their next paced
 * slot. due_at is the pick's lower bound: a mailbox picked then and not yet eligible
 * (cooldown, window, target) moves on to its exact due time, computed with the reply
 * (lease_grant.c split_eligible). So this only lowers due_at, with no per-mailbox due
 * computation: kiln_refresh_due here cost ~0.5 ms a mailbox, the report's largest
 * statement (docs/benchmarks.md, 030). Held (leased) mailboxes get theirs when the lease
 * ends; paused and erred ones (due at infinity) stay out of the pool. */
static const db_stmt Q_WAKE = {
    "reply_wake",
    "UPDATE mailbox_leasing ml SET due_at = x.due "
    "FROM (SELECT pr.mailbox_id, min(pr.due_at) AS due FROM pending_replies pr "
    "WHERE pr.parent_send_id = ANY ($1::bigint[]) AND pr.send_id IS NULL "
    "GROUP BY 1 ORDER BY 1) x "
    "WHERE ml.mailbox_id = x.mailbox_id AND ml.lease_id IS NULL AND ml.due_at > x.due "
    "AND ml.due_at < 'infinity'"};

static const db_stmt Q_DUE = {
    "reply_due",
    "SELECT pr.id, pr.mailbox_id, extract(epoch FROM pr.due_at)::bigint AS due_s, "
    "pr.recipient_id, pr.subject, pr.in_reply_to, pr.thread_refs FROM pending_replies pr "
    "WHERE pr.mailbox_id = ANY ($1::bigint[]) AND pr.send_id IS NULL "
    "AND pr.due_at <= kiln_now() + make_interval(secs => $2) "
    "AND pr.due_at > kiln_now() - interval '" REPLY_TTL "' AND " REPLY_RECIPIENT_OPEN " "
    "ORDER BY pr.mailbox_id, pr.due_at, pr.id LIMIT $3"};

/* The recipients, with the candidate pool's columns and filter (lease_store.c). */
static const db_stmt Q_RECIPIENTS = {
    "reply_recipients",
    "SELECT m.id, m.user_id, m.pool_id, lower(split_part(m.address, '@', 2)) AS domain, "
    "m.address, m.display_name, (kiln_now() AT TIME ZONE m.timezone)::date::text AS day "
    "FROM mailboxes m JOIN users u ON u.id = m.user_id "
    "WHERE m.id = ANY ($1::bigint[]) AND " SENDING_STATES};

static const db_stmt Q_ENGAGE_INPUTS = {
    "reply_engage_inputs", "SELECT * FROM kiln_engage_inputs($1::bigint[], to_timestamp($2))"};

static const char *ids_literal(arena *a, const int64_t *v, size_t n)
{
    pgarr arr;
    pgarr_open(&arr);
    for (size_t i = 0; i < n; i++)
        pgarr_i64(&arr, v[i]);
    return pgarr_done(&arr, a);
}

/* Reads up to max integers of a PostgreSQL array literal ("{1,-2,3}"); returns how many. */
static size_t int_array(const char *s, int64_t *out, size_t max)
{
    size_t n = 0;
    if (*s == '{')
        s++;
    while (*s && *s != '}' && n < max) {
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        if (end == s)
            break;
        out[n++] = v;
        s = end;
        if (*s == ',')
            s++;
    }
    return n;
}

static void tz_parse(const char *from, const char *off, engage_tz *tz);

static void read_engage_input(const PGresult *r, int i, const int *c, lease_engage_input *in)
{
    engage_params *p = &in->params;
    in->send_id = db_i64(r, i, c[0]);
    in->recipient_id = db_i64(r, i, c[1]);
    p->open_rate = strtod(PQgetvalue(r, i, c[2]), NULL);
    p->important_rate = strtod(PQgetvalue(r, i, c[3]), NULL);
    p->rescue_rate = strtod(PQgetvalue(r, i, c[4]), NULL);
    p->reply_rate = strtod(PQgetvalue(r, i, c[5]), NULL);
    p->untouched_rate = strtod(PQgetvalue(r, i, c[6]), NULL);
    p->dwell_median_s = (int32_t)db_i64(r, i, c[7]) * 60;
    p->dwell_max_s = (int32_t)db_i64(r, i, c[8]) * 60;
    p->quiet_start_min = (int32_t)db_i64(r, i, c[9]) * 60;
    p->quiet_end_min = (int32_t)db_i64(r, i, c[10]) * 60;
    p->retention_days = (int32_t)db_i64(r, i, c[11]);
    p->max_reply_depth = (int32_t)db_i64(r, i, c[12]);
    in->reply_depth = (int32_t)db_i64(r, i, c[13]);
    tz_parse(PQgetvalue(r, i, c[14]), PQgetvalue(r, i, c[15]), &in->tz);
}

void lease_reply_engage_rows(const PGresult *r, arena *a, lease_engage_input **out, size_t *n)
{
    static const char *const names[] = {
        "send_id",         "recipient_id",     "open_rate",      "important_rate",
        "rescue_rate",     "reply_rate",       "untouched_rate", "dwell_median_min",
        "dwell_max_min",   "quiet_start_hour", "quiet_end_hour", "retention_days",
        "max_reply_depth", "reply_depth",      "tz_from_s",      "tz_offset_s"};
    int c[16];
    *n = (size_t)PQntuples(r);
    *out = arena_calloc(a, (*n + 1) * sizeof **out);
    if (*n == 0)
        return;
    db_columns(r, names, c, 16);
    for (size_t i = 0; i < *n; i++)
        read_engage_input(r, (int)i, c, &(*out)[i]);
}

/* Zone spans per process: kiln_tz_spans costs ~0.8 ms of a backend per zone, and a
 * report asked for the spans of every zone its inboxes are in (five in the ingestion
 * bench: ~4 ms of a 500-event report; a pool spread over 50 zones would pay 40 ms a
 * report). Spans change only at a zone's transitions, so each zone's are computed once
 * per hour, from the hour's start over 97 hours: whatever the minute, they cover the 96
 * hours from now the policy looks at. Open addressing by the zone's name; a full table
 * (TZ_CACHE_SLOTS zones) or a name too long for a slot is simply not cached. */
#define TZ_CACHE_SLOTS 1024
#define TZ_NAME_MAX 64
#define TZ_SPAN_HOURS "97"

typedef struct tz_slot {
    char zone[TZ_NAME_MAX]; /* "" = free */
    int64_t hour_s;
    engage_tz tz;
} tz_slot;

static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;
static tz_slot tz_slots[TZ_CACHE_SLOTS];

static const db_stmt Q_ZONE_SPANS = {
    "reply_zone_spans",
    "SELECT d.tz, array_agg(sp.from_s ORDER BY sp.from_s) AS f, "
    "array_agg(sp.offset_s ORDER BY sp.from_s) AS o FROM unnest($1::text[]) AS d (tz) "
    "CROSS JOIN LATERAL kiln_tz_spans(d.tz, to_timestamp($2), " TZ_SPAN_HOURS ") sp "
    "GROUP BY d.tz"};

static size_t tz_home(const char *zone)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)zone; *c; c++)
        h = (h ^ *c) * 16777619u;
    return h % TZ_CACHE_SLOTS;
}

/* The slot of zone (tz_lock held): its own, or the free one where it would go; NULL
 * when the table is full or the name too long. */
static tz_slot *tz_find(const char *zone)
{
    if (strlen(zone) >= TZ_NAME_MAX)
        return NULL;
    size_t i = tz_home(zone);
    for (size_t k = 0; k < TZ_CACHE_SLOTS; k++, i = (i + 1) % TZ_CACHE_SLOTS)
        if (!tz_slots[i].zone[0] || !strcmp(tz_slots[i].zone, zone))
            return &tz_slots[i];
    return NULL;
}

static bool tz_cached(const char *zone, int64_t hour_s, engage_tz *out)
{
    pthread_mutex_lock(&tz_lock);
    tz_slot *t = tz_find(zone);
    bool hit = t && t->zone[0] && t->hour_s == hour_s;
    if (hit)
        *out = t->tz;
    pthread_mutex_unlock(&tz_lock);
    return hit;
}

static void tz_store(const char *zone, int64_t hour_s, const engage_tz *tz)
{
    pthread_mutex_lock(&tz_lock);
    tz_slot *t = tz_find(zone);
    if (t && (!t->zone[0] || t->hour_s < hour_s)) {
        if (!t->zone[0]) {
            size_t len = strlen(zone);
            memcpy(t->zone, zone, len + 1);
        }
        t->hour_s = hour_s;
        t->tz = *tz;
    }
    pthread_mutex_unlock(&tz_lock);
}

static void tz_parse(const char *from, const char *off, engage_tz *tz)
{
    int64_t f[ENGAGE_TZ_MAX_SPANS], o[ENGAGE_TZ_MAX_SPANS];
    size_t nf = int_array(from, f, ENGAGE_TZ_MAX_SPANS);
    size_t no = int_array(off, o, ENGAGE_TZ_MAX_SPANS);
    tz->n = nf < no ? nf : no;
    for (size_t k = 0; k < tz->n; k++)
        tz->spans[k] = (engage_tz_span){f[k], (int32_t)o[k]};
}

bool lease_reply_zone_spans(db *d, arena *a, int64_t now_s, const char *const *zones,
                            lease_engage_input *in, size_t n)
{
    int64_t hour_s = now_s - now_s % 3600;
    bool *miss = arena_calloc(a, (n + 1) * sizeof *miss);
    pgarr names;
    pgarr_open(&names);
    size_t nmiss = 0;
    for (size_t i = 0; i < n; i++) {
        if (tz_cached(zones[i], hour_s, &in[i].tz))
            continue;
        miss[i] = true;
        bool named = false; /* each missing zone once in the query */
        for (size_t j = 0; j < i && !named; j++)
            named = miss[j] && !strcmp(zones[j], zones[i]);
        if (!named) {
            pgarr_str(&names, zones[i]);
            nmiss++;
        }
    }
    const char *p[] = {pgarr_done(&names, a), db_i64_text(a, hour_s)};
    if (nmiss == 0)
        return true; /* the literal stays in the arena */
    PGresult *r = db_exec(d, a, &Q_ZONE_SPANS, 2, p);
    if (!r)
        return false;
    for (int k = 0; k < PQntuples(r); k++) {
        const char *zone = PQgetvalue(r, k, 0);
        engage_tz tz;
        tz_parse(PQgetvalue(r, k, 1), PQgetvalue(r, k, 2), &tz);
        tz_store(zone, hour_s, &tz);
        for (size_t i = 0; i < n; i++)
            if (miss[i] && !strcmp(zones[i], zone))
                in[i].tz = tz;
    }
    return true;
}

bool lease_reply_engage_inputs(db *d, arena *a, const int64_t *send_ids, size_t nsends,
                               int64_t from_s, lease_engage_input **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (nsends == 0)
        return true;
    const char *p[] = {ids_literal(a, send_ids, nsends), db_i64_text(a, from_s)};
    PGresult *r = db_exec(d, a, &Q_ENGAGE_INPUTS, 2, p);
    if (!r)
        return false;
    lease_reply_engage_rows(r, a, out, n);
    return true;
}

bool lease_reply_schedule(db *d, arena *a, int64_t parent_send_id, int64_t due_s, int64_t *reply_id)
{
    const char *p[] = {db_i64_text(a, parent_send_id), db_i64_text(a, due_s)};
    PGresult *r = db_exec(d, a, &Q_SCHEDULE, 2, p);
    if (!r || PQntuples(r) != 1)
        return false;
    *reply_id = db_i64(r, 0, 0);
    if (*reply_id == 0)
        return true;
    const char *w[] = {ids_literal(a, &parent_send_id, 1)};
    return db_exec(d, a, &Q_WAKE, 1, w) != NULL;
}

bool lease_reply_schedule_many(db *d, arena *a, const int64_t *parent_send_ids,
                               const int64_t *due_s, size_t n, int *scheduled)
{
    *scheduled = 0;
    if (n == 0)
        return true;
    const char *p[] = {ids_literal(a, parent_send_ids, n), ids_literal(a, due_s, n)};
    PGresult *r = db_exec(d, a, &Q_SCHEDULE_MANY, 2, p);
    if (!r || PQntuples(r) != 1)
        return false;
    *scheduled = (int)db_i64(r, 0, 0);
    return *scheduled == 0 || db_exec(d, a, &Q_WAKE, 1, p) != NULL;
}

static void read_due(const PGresult *r, lease_replies *out, arena *a)
{
    static const char *const names[] = {"id",      "mailbox_id",  "due_s",      "recipient_id",
                                        "subject", "in_reply_to", "thread_refs"};
    int c[7];
    db_columns(r, names, c, 7);
    out->n = (size_t)PQntuples(r);
    out->v = arena_calloc(a, (out->n + 1) * sizeof *out->v);
    for (size_t i = 0; i < out->n; i++) {
        lease_reply *rp = &out->v[i];
        int row = (int)i;
        rp->id = db_i64(r, row, c[0]);
        rp->mailbox_id = db_i64(r, row, c[1]);
        rp->due_s = db_i64(r, row, c[2]);
        rp->recipient_id = db_i64(r, row, c[3]);
        rp->subject = PQgetvalue(r, row, c[4]);
        rp->in_reply_to = PQgetvalue(r, row, c[5]);
        rp->thread_refs = PQgetvalue(r, row, c[6]);
        rp->candidate = -1;
    }
}

/* Grows the pool's per-candidate arrays by extra (they are arena arrays of ncand + 1). */
static void pool_grow(arena *a, lease_pool *pool, size_t extra)
{
    size_t n = pool->ncand, cap = n + extra + 1;
    lease_candidate *cands = arena_calloc(a, cap * sizeof *cands);
    const char **address = arena_alloc(a, cap * sizeof *address);
    const char **display = arena_alloc(a, cap * sizeof *display);
    const char **day = arena_alloc(a, cap * sizeof *day);
    if (n) {
        memcpy(cands, pool->cands, n * sizeof *cands);
        memcpy(address, pool->address, n * sizeof *address);
        memcpy(display, pool->display_name, n * sizeof *display);
        memcpy(day, pool->day, n * sizeof *day);
    }
    pool->cands = cands;
    pool->address = address;
    pool->display_name = display;
    pool->day = day;
}

/* Points each reply at its recipient's candidate index when the recipient is sendable
 * (a row of rr, the recipients query), appending recipients the pool lacks. */
static void attach_recipients(arena *a, const PGresult *rr, lease_pool *pool, lease_replies *out)
{
    static const char *const names[] = {"id",           "user_id", "domain", "address",
                                        "display_name", "day",     "pool_id"};
    int c[7];
    int nr = PQntuples(rr);
    if (nr == 0)
        return;
    db_columns(rr, names, c, 7);
    pool_grow(a, pool, (size_t)nr);
    i64map at, sendable;
    i64map_init(&at);
    i64map_init(&sendable);
    for (size_t i = 0; i < pool->ncand; i++)
        i64map_put(&at, pool->cands[i].id, (int64_t)i);
    for (int i = 0; i < nr; i++) {
        int64_t id = db_i64(rr, i, c[0]), k;
        if (!i64map_get(&at, id, &k)) {
            k = (int64_t)pool->ncand++;
            pool->cands[k] = (lease_candidate){.id = id,
                                               .user_id = db_i64(rr, i, c[1]),
                                               .pool_id = db_i64(rr, i, c[6]),
                                               .domain = PQgetvalue(rr, i, c[2])};
            pool->address[k] = PQgetvalue(rr, i, c[3]);
            pool->display_name[k] = PQgetvalue(rr, i, c[4]);
            pool->day[k] = PQgetvalue(rr, i, c[5]);
            i64map_put(&at, id, k);
        }
        i64map_put(&sendable, id, k);
    }
    for (size_t i = 0; i < out->n; i++) {
        int64_t k;
        if (i64map_get(&sendable, out->v[i].recipient_id, &k))
            out->v[i].candidate = (int)k;
    }
    i64map_free(&at);
    i64map_free(&sendable);
}

bool lease_reply_load(db *d, arena *a, const int64_t *senders, int nsenders, int64_t horizon_s,
                      lease_pool *pool, lease_replies *out)
{
    memset(out, 0, sizeof *out);
    if (nsenders <= 0)
        return true;
    const char *p[] = {ids_literal(a, senders, (size_t)nsenders), db_i64_text(a, horizon_s),
                       db_i64_text(a, REPLY_LOAD_MAX)};
    PGresult *r = db_exec(d, a, &Q_DUE, 3, p);
    if (!r)
        return false;
    read_due(r, out, a);
    if (out->n == 0)
        return true;
    int64_t *rc = arena_alloc(a, out->n * sizeof *rc);
    for (size_t i = 0; i < out->n; i++)
        rc[i] = out->v[i].recipient_id;
    const char *rp[] = {ids_literal(a, rc, out->n)};
    PGresult *rr = db_exec(d, a, &Q_RECIPIENTS, 1, rp);
    if (!rr)
        return false;
    attach_recipients(a, rr, pool, out);
    return true;
}

void lease_reply_assign(arena *a, lease_replies *rs, lease_pool *pool, int64_t recipient_daily_cap,
                        lease_granted *gr)
{
    int64_t mb = gr->r->m.id;
    size_t lo = 0;
    while (lo < rs->n && rs->v[lo].mailbox_id != mb)
        lo++;
    if (lo == rs->n || gr->nslots <= 0)
        return;
    for (int s = 0; s < gr->nslots; s++) {
        lease_slot *sl = &gr->slots[s];
        for (size_t i = lo; i < rs->n && rs->v[i].mailbox_id == mb; i++) {
            lease_reply *rp = &rs->v[i];
            if (rp->taken || rp->candidate < 0 || rp->due_s > sl->at_s)
                continue;
            lease_candidate *to = &pool->cands[rp->candidate];
            bool same = rp->candidate == sl->candidate;
            if (!same && to->received + to->assigned >= recipient_daily_cap)
                continue;
            if (!gr->replies) /* an array of pointers: sizeof a pointer is meant */
                gr->replies =
                    arena_calloc(a, (size_t)gr->nslots *
                                        sizeof *gr->replies); // NOLINT(bugprone-sizeof-expression)
            if (!same) {
                pool->cands[sl->candidate].assigned--;
                to->assigned++;
                sl->candidate = rp->candidate;
            }
            rp->taken = true;
            gr->replies[s] = rp;
            break;
        }
    }
}

int lease_reply_dues(const lease_replies *rs, int64_t mailbox_id, arena *a, const int64_t **due_s)
{
    *due_s = NULL;
    size_t lo = 0, hi = rs->n; /* v is sorted by mailbox_id, then due time */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rs->v[mid].mailbox_id < mailbox_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < rs->n && rs->v[end].mailbox_id == mailbox_id)
        end++;
    if (end == lo)
        return 0;
    int64_t *v = arena_alloc(a, (end - lo) * sizeof *v);
    for (size_t i = lo; i < end; i++)
        v[i - lo] = rs->v[i].due_s;
    *due_s = v;
    return (int)(end - lo);
}
