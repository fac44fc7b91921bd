/* Slot scheduling for leases (see lease_plan.h): pacing over the window, random cooldown,
 * global and per-user caps per minute/hour of scheduled time, recipient choice. */
#include "lease_plan.h"

#include "rand.h"

#include <stdint.h>
#include <string.h>

/* Open-addressing hash of (a, b, c) -> count. It doubles (in its arena) when three
 * quarters full, so it starts at what a lease usually touches, not at the worst case: the
 * worst-case sizes (4 bucket keys and 2 mix keys per slot, a lease's pair history)
 * cleared megabytes per lease, over half of kiln-api's CPU in a lease once a few days of
 * pair history were behind it (issue 15, session 24). */
typedef struct slot3 {
    int64_t a, b, c;
    int64_t n, added;
    int64_t cap; /* buckets: the cap the added slots were planned under */
    bool used;
} slot3;

typedef struct table3 {
    slot3 *slots;
    size_t mask;
    size_t count;
    arena *a;
} table3;

/* Recipient choice (docs/leasing.md "Reciprocity"): candidates looked at per slot (from
 * the cursor; the pool is a random window, so the best of these is the best of a random
 * sample), the junk penalty at a provider where all of a sender's mail went to junk,
 * the prior that keeps a few placements from counting as a verdict, and the weight of
 * the provider mix. Units: messages of lag. */
#define PICK_SCAN 256
/* The most slots a table that may grow starts with (64 KB of them). */
#define TABLE_START_MAX 1024
#define JUNK_WEIGHT 8.0
#define JUNK_PRIOR 4.0
#define MIX_WEIGHT 4.0

/* Keys of the mix table, per sender: (sender, provider, MIX_DECIDED) placements at the
 * provider and (.., MIX_JUNK) those in junk, over 7 days; (.., MIX_PLACED) the same
 * placements plus this lease's slots there; (sender, 0, MIX_TOTAL) MIX_PLACED's sum. */
enum { MIX_DECIDED = 0, MIX_JUNK = 1, MIX_PLACED = 2, MIX_TOTAL = 3 };

struct lease_plan {
    lease_limits lim;
    table3 buckets;
    table3 pairs;
    table3 mix;
    table3 sender_at; /* candidate id -> its index, for a sender that is also a candidate */
    arena *a;         /* the plan's arena (the mix table is sized again when placements load) */
    lease_candidate *cand;
    uint64_t *domain_h; /* per candidate: a hash of its domain (strcmp only on a match) */
    size_t ncand;
    double pool_share[LEASE_PROVIDERS]; /* each provider's share of the known candidates */
    lease_rng rng;
};

void lease_rng_seed(lease_rng *r)
{
    random_bytes(&r->s, sizeof r->s);
}

static uint64_t rng_next(lease_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int64_t lease_rng_range(lease_rng *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = (uint64_t)(hi - lo) + 1, x, limit = UINT64_MAX - UINT64_MAX % span;
    do
        x = rng_next(r);
    while (x >= limit);
    return lo + (int64_t)(x % span);
}

/* FNV-1a of a NUL-terminated string. */
static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Room for hint keys at under half full, but at most max_cap slots to start with. */
static void table_init(arena *a, table3 *t, size_t hint, size_t max_cap)
{
    size_t cap = 64;
    while (cap < hint * 2 + 16 && cap < max_cap)
        cap <<= 1;
    t->slots = arena_calloc(a, cap * sizeof *t->slots);
    t->mask = cap - 1;
    t->count = 0;
    t->a = a;
}

static uint64_t mix(int64_t a, int64_t b, int64_t c)
{
    uint64_t h = (uint64_t)a * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)b + 0x632BE59BD9B4E019ull + (h << 6) + (h >> 2);
    h ^= (uint64_t)c * 0xC2B2AE3D27D4EB4Full + (h << 6) + (h >> 2);
    return h ^ (h >> 31);
}

static slot3 *table_get(table3 *t, int64_t a, int64_t b, int64_t c, bool insert);

static void table_grow(table3 *t)
{
    table3 old = *t;
    size_t cap = (old.mask + 1) * 2;
    t->slots = arena_calloc(t->a, cap * sizeof *t->slots);
    t->mask = cap - 1;
    t->count = 0;
    for (size_t i = 0; i <= old.mask; i++)
        if (old.slots[i].used)
            *table_get(t, old.slots[i].a, old.slots[i].b, old.slots[i].c, true) = old.slots[i];
}

/* Finds the key, or inserts it when insert (growing the table first when three quarters
 * full); NULL when the key is absent and not inserted. */
static slot3 *table_get(table3 *t, int64_t a, int64_t b, int64_t c, bool insert)
{
    if (insert && t->count * 4 >= (t->mask + 1) * 3)
        table_grow(t);
    size_t i = mix(a, b, c) & t->mask;
    for (size_t probes = 0; probes <= t->mask; probes++, i = (i + 1) & t->mask) {
        slot3 *s = &t->slots[i];
        if (!s->used) {
            if (!insert)
                return NULL;
            s->used = true;
            s->a = a;
            s->b = b;
            s->c = c;
            t->count++;
            return s;
        }
        if (s->a == a && s->b == b && s->c == c)
            return s;
    }
    return NULL;
}

lease_plan *lease_plan_new(arena *a, const lease_limits *lim, size_t bucket_hint, size_t pair_hint,
                           lease_candidate *candidates, size_t ncandidates)
{
    lease_plan *p = arena_calloc(a, sizeof *p);
    p->lim = *lim;
    table_init(a, &p->buckets, bucket_hint, TABLE_START_MAX);
    table_init(a, &p->pairs, pair_hint, SIZE_MAX); /* the pair history is loaded whole */
    table_init(a, &p->mix, 0, TABLE_START_MAX);
    p->a = a;
    p->cand = candidates;
    p->ncand = ncandidates;
    lease_rng_seed(&p->rng);
    size_t known = 0, per[LEASE_PROVIDERS] = {0};
    table_init(a, &p->sender_at, ncandidates, SIZE_MAX);
    p->domain_h = arena_alloc(a, (ncandidates + 1) * sizeof *p->domain_h);
    for (size_t i = 0; i < ncandidates; i++) {
        p->domain_h[i] = str_hash(candidates[i].domain ? candidates[i].domain : "");
        table_get(&p->sender_at, candidates[i].id, 0, 0, true)->n = (int64_t)i;
        int pv = candidates[i].provider;
        if (pv > 0 && pv < LEASE_PROVIDERS) {
            per[pv]++;
            known++;
        }
    }
    for (int pv = 1; pv < LEASE_PROVIDERS; pv++)
        p->pool_share[pv] = known ? (double)per[pv] / (double)known : 0.0;
    return p;
}

void lease_plan_load_bucket(lease_plan *p, int64_t user_id, int64_t width_s, int64_t at_s,
                            int64_t n)
{
    table_get(&p->buckets, user_id, width_s, at_s, true)->n += n;
}

void lease_plan_load_pair(lease_plan *p, int64_t sender, int64_t recipient)
{
    table_get(&p->pairs, sender, recipient, 0, true);
}

static void mix_add(lease_plan *p, int64_t sender, int provider, int kind, int64_t n)
{
    table_get(&p->mix, sender, provider, kind, true)->n += n;
}

static int64_t mix_get(lease_plan *p, int64_t sender, int provider, int kind)
{
    slot3 *s = table_get(&p->mix, sender, provider, kind, false);
    return s ? s->n : 0;
}

void lease_plan_load_placements(lease_plan *p, const lease_placement *rows, size_t n)
{
    table_init(p->a, &p->mix, 4 * n, TABLE_START_MAX);
    for (size_t i = 0; i < n; i++) {
        const lease_placement *r = &rows[i];
        if (r->provider <= 0 || r->provider >= LEASE_PROVIDERS || r->decided <= 0)
            continue;
        mix_add(p, r->sender, r->provider, MIX_DECIDED, r->decided);
        mix_add(p, r->sender, r->provider, MIX_PLACED, r->decided);
        mix_add(p, r->sender, r->provider, MIX_JUNK, r->junk);
        mix_add(p, r->sender, 0, MIX_TOTAL, r->decided);
    }
}

/* What choosing a recipient at provider pv costs sender m, in messages of lag: the junk
 * share there (with a prior of JUNK_PRIOR clean placements) times JUNK_WEIGHT, and how far
 * m's share of mail there is over the provider's share of the pool times MIX_WEIGHT. */
static double provider_penalty(lease_plan *p, const lease_mailbox *m, int pv)
{
    if (pv <= 0 || pv >= LEASE_PROVIDERS)
        return 0.0;
    double decided = (double)mix_get(p, m->id, pv, MIX_DECIDED);
    double junk = (double)mix_get(p, m->id, pv, MIX_JUNK);
    double placed = (double)mix_get(p, m->id, pv, MIX_PLACED);
    double total = (double)mix_get(p, m->id, 0, MIX_TOTAL);
    double junk_share = junk / (decided + JUNK_PRIOR);
    double over = placed / (total + 1.0) - p->pool_share[pv];
    return JUNK_WEIGHT * junk_share + MIX_WEIGHT * over;
}

static double lag(const lease_candidate *c)
{
    return (double)(c->sent_7d - c->received_7d - c->assigned);
}

double lease_plan_score(lease_plan *p, const lease_mailbox *m, const lease_candidate *c)
{
    return lag(c) - provider_penalty(p, m, c->provider);
}

static int64_t floor_to(int64_t t, int64_t w)
{
    return t - (((t % w) + w) % w);
}

/* Count in a bucket; a full table counts as at the cap. */
static bool bucket_has_room(lease_plan *p, int64_t user, int64_t width, int64_t t, int64_t cap)
{
    slot3 *s = table_get(&p->buckets, user, width, floor_to(t, width), false);
    return s ? s->n < cap : cap > 0;
}

static bool bucket_bump(lease_plan *p, int64_t user, int64_t width, int64_t t, int64_t cap)
{
    slot3 *s = table_get(&p->buckets, user, width, floor_to(t, width), true);
    s->n++;
    s->added++;
    s->cap = cap;
    return true;
}

/* Moves t forward to the first second at which every cap has room, or returns a
 * time past limit. Each step jumps a whole minute or hour, so the loop is short. */
static int64_t fit_caps(lease_plan *p, const lease_mailbox *m, int64_t t, int64_t limit)
{
    for (int steps = 0; steps < 2000 && t <= limit; steps++) {
        bool hour_ok = bucket_has_room(p, 0, 3600, t, p->lim.global_hour_cap) &&
                       bucket_has_room(p, m->user_id, 3600, t, m->user_hour_cap);
        if (!hour_ok) {
            t = floor_to(t, 3600) + 3600;
            continue;
        }
        bool minute_ok = bucket_has_room(p, 0, 60, t, p->lim.global_minute_cap) &&
                         bucket_has_room(p, m->user_id, 60, t, m->user_minute_cap);
        if (minute_ok)
            return t;
        t = floor_to(t, 60) + 60;
    }
    return limit + 1;
}

static int64_t cooldown(lease_plan *p, const lease_mailbox *m)
{
    return lease_rng_range(&p->rng, m->cooldown_min_s, m->cooldown_max_s);
}

/* Picks a recipient for a slot of m. Rules (hard): a mailbox of m's pool (pools never
 * exchange mail: docs/scale.md), another user's mailbox, under its
 * inbound cap, not paired with m within the gap, and on a different domain than the
 * previous recipient when any such candidate exists. Preference among those: the highest
 * lease_plan_score of the first PICK_SCAN from the cursor, the first on a tie (the cursor
 * starts at random, so ties spread). Returns the index or -1. */
static int pick_recipient(lease_plan *p, const lease_mailbox *m, size_t *cursor, int last)
{
    if (p->ncand == 0)
        return -1;
    double penalty[LEASE_PROVIDERS];
    for (int pv = 0; pv < LEASE_PROVIDERS; pv++)
        penalty[pv] = provider_penalty(p, m, pv);
    for (int pass = 0; pass < 2; pass++) {
        int best = -1;
        double best_score = 0.0;
        size_t allowed = 0;
        /* i walks from the cursor and wraps: one division per pick, not a 64-bit one per
         * candidate looked at (~8 % of this scan's samples, session 33) */
        size_t i = *cursor % p->ncand;
        for (size_t k = 0; k < p->ncand && allowed < PICK_SCAN;
             k++, i = i + 1 == p->ncand ? 0 : i + 1) {
            lease_candidate *c = &p->cand[i];
            if (c->pool_id != m->pool_id || c->user_id == m->user_id || c->id == m->id)
                continue;
            if (c->received + c->assigned >= p->lim.recipient_daily_cap)
                continue;
            if (pass == 0 && last >= 0 && p->domain_h[i] == p->domain_h[last] &&
                !strcmp(c->domain, p->cand[last].domain))
                continue;
            allowed++;
            int pv = c->provider > 0 && c->provider < LEASE_PROVIDERS ? c->provider : 0;
            double score = lag(c) - penalty[pv];
            if (best >= 0 && score <= best_score)
                continue;
            if (table_get(&p->pairs, m->id, c->id, 0, false))
                continue;
            best = (int)i;
            best_score = score;
        }
        if (best >= 0) {
            *cursor = (size_t)best + 1;
            return best;
        }
    }
    return -1;
}

int lease_plan_mailbox(lease_plan *p, const lease_mailbox *m, int max_slots, lease_slot *out,
                       int64_t *next_at_s, int64_t *wake_s)
{
    int n = 0;
    *wake_s = 0;
    int64_t limit = m->window_end_s - 1;
    if (limit > p->lim.horizon_end_s)
        limit = p->lim.horizon_end_s;
    int64_t t = p->lim.now_s;
    if (m->next_at_s > t)
        t = m->next_at_s;
    /* One draw: drawing again for the assignment could give a shorter cooldown than
     * the one compared and move t back before next_at (a gap under cooldown_min_s). */
    int64_t after_last = m->last_send_s > 0 ? m->last_send_s + cooldown(p, m) : 0;
    if (after_last > t)
        t = after_last;
    /* next_at is the cooldown bound only (last granted slot + cooldown): pacing is
     * recomputed at every grant, so a trigger can lift it; storing the paced time
     * here would make the next grant wait for it even after a trigger. */
    int64_t next = t;
    int64_t remaining = m->target - m->done;
    int64_t window_len = m->window_end_s - m->window_start_s;
    size_t cursor = p->ncand ? (size_t)lease_rng_range(&p->rng, 0, (int64_t)p->ncand - 1) : 0;
    int last = -1; /* the previous slot's recipient */
    for (int64_t i = 0; i < remaining && n < max_slots; i++) {
        /* Pacing: the k-th send of the day is due k/target of the way through the
         * window, so the quota spreads over the day; behind mailboxes catch up at
         * cooldown spacing. A trigger lifts it for one grant. This is the rule's one
         * C form; SQL's kiln_due_at() (003_leasing_due.sql) applies it to the next
         * send only, for due_at, the pick's lower bound (docs/design.md, "Pacing"). */
        if (!m->triggered && m->target > 0 && window_len > 0) {
            int64_t k = m->done + i;
            int64_t pace = m->window_start_s + (k * window_len + m->target - 1) / m->target;
            /* A due reply lifts pacing for its slot: a reply comes a dwell after the
             * reading, as a person's would, not hours later on the day's grid. It takes
             * one of the day's sends (the volume does not change) and caps, window and
             * cooldown still hold. A mailbox behind its pace keeps its earlier slot. */
            if (i < m->nreply_due && m->reply_due_s[i] < pace)
                pace = m->reply_due_s[i];
            if (pace > t)
                t = pace;
        }
        if (t < m->window_start_s)
            t = m->window_start_s;
        /* Under a backlog a slot minutes ahead would hold an agent's room that a
         * waiting mailbox could use now: past the first, only slots due soon. */
        if (n == 1 && p->lim.more_end_s > 0 && p->lim.more_end_s < limit)
            limit = p->lim.more_end_s;
        int64_t at = fit_caps(p, m, t, limit);
        if (at > limit) {
            if (n == 0)
                *wake_s = at <= m->window_end_s ? (t > p->lim.now_s ? t : at) : 0;
            break;
        }
        int c = pick_recipient(p, m, &cursor, last);
        if (c < 0)
            break;
        if (!bucket_bump(p, 0, 60, at, p->lim.global_minute_cap) ||
            !bucket_bump(p, 0, 3600, at, p->lim.global_hour_cap) ||
            !bucket_bump(p, m->user_id, 60, at, m->user_minute_cap) ||
            !bucket_bump(p, m->user_id, 3600, at, m->user_hour_cap))
            break;
        p->cand[c].assigned++;
        /* The sender's own ledger moves with its slot, as the grant will write it. */
        slot3 *self = table_get(&p->sender_at, m->id, 0, 0, false);
        if (self)
            p->cand[self->n].sent_7d++;
        int pv = p->cand[c].provider;
        if (pv > 0 && pv < LEASE_PROVIDERS) {
            mix_add(p, m->id, pv, MIX_PLACED, 1);
            mix_add(p, m->id, 0, MIX_TOTAL, 1);
        }
        last = c;
        if (p->lim.pair_check)
            table_get(&p->pairs, m->id, p->cand[c].id, 0, true);
        out[n].at_s = at;
        out[n].candidate = c;
        n++;
        t = at + cooldown(p, m);
        next = t;
    }
    *next_at_s = next;
    return n;
}

int64_t lease_plan_slots_at_most(const lease_mailbox *m, int64_t span_s)
{
    int64_t left = m->target > m->done ? m->target - m->done : 0;
    if (m->cooldown_min_s <= 0 || span_s < 0)
        return left;
    int64_t n = 1 + span_s / m->cooldown_min_s;
    return n < left ? n : left;
}

int64_t lease_plan_window(int64_t max_sends, int64_t left_today)
{
    int64_t n = left_today < max_sends ? left_today : max_sends;
    return n < LEASE_PLAN_MIN_WINDOW ? LEASE_PLAN_MIN_WINDOW : n;
}

size_t lease_plan_deltas(const lease_plan *p, lease_bucket_delta *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i <= p->buckets.mask && n < max; i++) {
        const slot3 *s = &p->buckets.slots[i];
        if (!s->used || s->added == 0)
            continue;
        out[n].user_id = s->a;
        out[n].width_s = s->b;
        out[n].at_s = s->c;
        out[n].n = s->added;
        out[n].cap = s->cap;
        n++;
    }
    return n;
}
