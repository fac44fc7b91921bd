/* Inbox event reports (see inbox_report.h). Rules: docs/design.md "Inbox leasing and
 * placement". Each event ends counted once: 'a' applied, 'd' duplicate, 'i' ignored. */
#include "inbox_report.h"

#include "app.h"
#include "i64map.h"
#include "inbox_classify.h"
#include "inbox_policy.h"
#include "inbox_store.h"
#include "msgid.h"
#include "pgarr.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct ireport {
    http_req *rq;
    const char *lease_id;
    const inbox_event *ev;
    int n;
    char *verdict;   /* per event: 'a', 'd', 'i' */
    i64map inboxes;  /* mailbox id -> row in hosts (the lease's inboxes among the events) */
    PGresult *hosts; /* mailbox_id, imap_host, address, now_s, engagement inputs */
    lease_engage_input *inputs; /* per row of hosts (with finds), as a recipient */
    int64_t now_s;              /* the report's clock (0: no inbox of the lease named) */
    int64_t *send_id;           /* per found event, from its Message-ID (-1: none) */
    bool *known;                /* per fresh found event: its message was known (moved) */
    i64map sends;               /* send id -> row in send_rows */
    PGresult *send_rows;        /* id, mailbox_id, recipient_id, reply_depth */
} ireport;

static const char *int_array(arena *a, const int64_t *v, int n)
{
    pgarr arr;
    pgarr_open(&arr);
    for (int i = 0; i < n; i++)
        pgarr_i64(&arr, v[i]);
    return pgarr_done(&arr, a);
}

/* The flags as one array literal (an element of a text[] of literals). */
static const char *flags_literal(arena *a, const char *const *flags, int n)
{
    pgarr arr;
    pgarr_open(&arr);
    for (int i = 0; i < n; i++)
        pgarr_str(&arr, flags[i]);
    return pgarr_done(&arr, a);
}

static bool has_flag(const inbox_event *e, const char *flag)
{
    for (int i = 0; i < e->nflags; i++)
        if (!strcasecmp(e->flags[i], flag))
            return true;
    return false;
}

static enum inbox_role role_of(const char *s)
{
    return !strcmp(s, "inbox")    ? ROLE_INBOX
           : !strcmp(s, "junk")   ? ROLE_JUNK
           : !strcmp(s, "warmup") ? ROLE_WARMUP
                                  : ROLE_OTHER;
}

/* Which of the events' inboxes this lease holds, the report's clock and, when it has
 * finds, the inboxes' engagement inputs (one statement). */
static bool load_inboxes(ireport *r)
{
    arena *a = r->rq->pool;
    int64_t *ids = arena_alloc(a, (size_t)r->n * sizeof *ids);
    bool finds = false;
    for (int i = 0; i < r->n; i++) {
        ids[i] = r->ev[i].mailbox_id;
        finds |= r->ev[i].type == EV_FOUND;
    }
    if (!inbox_store_lease_inboxes(r->rq->db, a, r->lease_id, int_array(a, ids, r->n), &r->hosts))
        return false;
    size_t ninputs = 0;
    r->now_s = PQntuples(r->hosts) > 0 ? db_i64(r->hosts, 0, 3) : 0;
    r->inputs = NULL;
    if (finds) {
        lease_reply_engage_rows(r->hosts, a, &r->inputs, &ninputs);
        int tzc = PQfnumber(r->hosts, "timezone");
        const char **zones = arena_alloc(a, (ninputs + 1) * sizeof *zones);
        for (size_t i = 0; i < ninputs; i++)
            zones[i] = PQgetvalue(r->hosts, (int)i, tzc);
        if (!lease_reply_zone_spans(r->rq->db, a, r->now_s, zones, r->inputs, ninputs))
            return false;
    }
    for (int i = 0; i < PQntuples(r->hosts); i++)
        i64map_put(&r->inboxes, db_i64(r->hosts, i, 0), i);
    for (int i = 0; i < r->n; i++)
        if (!i64map_has(&r->inboxes, r->ev[i].mailbox_id))
            r->verdict[i] = 'i';
    return true;
}

/* Verifies the found events' Message-IDs and reads their sends: a bad MAC, or a send
 * not addressed to that inbox, is ignored. */
static bool verify_found(ireport *r)
{
    arena *a = r->rq->pool;
    r->send_id = arena_alloc(a, (size_t)r->n * sizeof *r->send_id);
    int64_t *ids = arena_alloc(a, (size_t)r->n * sizeof *ids);
    int nids = 0;
    for (int i = 0; i < r->n; i++) {
        const inbox_event *e = &r->ev[i];
        r->send_id[i] = -1;
        if (e->type != EV_FOUND || r->verdict[i])
            continue;
        r->send_id[i] = msgid_verify(r->rq->app->msgid_keys, e->message_id, strlen(e->message_id));
        if (r->send_id[i] < 0)
            r->verdict[i] = 'i';
        else
            ids[nids++] = r->send_id[i];
    }
    if (!inbox_store_sends(r->rq->db, a, int_array(a, ids, nids), &r->send_rows))
        return false;
    for (int i = 0; i < PQntuples(r->send_rows); i++)
        i64map_put(&r->sends, db_i64(r->send_rows, i, 0), i);
    for (int i = 0; i < r->n; i++) {
        int64_t row;
        if (r->send_id[i] < 0 || r->verdict[i])
            continue;
        if (!i64map_get(&r->sends, r->send_id[i], &row) ||
            db_i64(r->send_rows, (int)row, 2) != r->ev[i].mailbox_id)
            r->verdict[i] = 'i';
    }
    return true;
}

/* A found event and its position, sorted by key (mailbox, uidvalidity, uid, folder). */
typedef struct found_ref {
    const inbox_event *e;
    int idx;
} found_ref;

static bool same_key(const inbox_event *x, const inbox_event *y)
{
    return x->mailbox_id == y->mailbox_id && x->uidvalidity == y->uidvalidity && x->uid == y->uid &&
           !strcmp(x->folder, y->folder);
}

static int cmp_found(const void *pa, const void *pb)
{
    const found_ref *a = pa, *b = pb;
    const inbox_event *x = a->e, *y = b->e;
    if (x->mailbox_id != y->mailbox_id)
        return x->mailbox_id < y->mailbox_id ? -1 : 1;
    if (x->uidvalidity != y->uidvalidity)
        return x->uidvalidity < y->uidvalidity ? -1 : 1;
    if (x->uid != y->uid)
        return x->uid < y->uid ? -1 : 1;
    int c = strcmp(x->folder, y->folder);
    return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

/* In-batch repeats of a key (the first counts), then the sightings: new keys applied,
 * known ones duplicates. *fresh_ord: the applied events, in event order. */
static bool sight(ireport *r, int **fresh_ord, int *nfresh)
{
    arena *a = r->rq->pool;
    found_ref *refs = arena_alloc(a, (size_t)r->n * sizeof *refs);
    int m = 0;
    for (int i = 0; i < r->n; i++)
        if (r->ev[i].type == EV_FOUND && !r->verdict[i])
            refs[m++] = (found_ref){&r->ev[i], i};
    qsort(refs, (size_t)m, sizeof *refs, cmp_found);
    pgarr ord, mb, f, v, u, s;
    pgarr *all[] = {&ord, &mb, &f, &v, &u, &s};
    for (size_t k = 0; k < 6; k++)
        pgarr_open(all[k]);
    for (int k = 0; k < m; k++) {
        const inbox_event *e = refs[k].e;
        r->verdict[refs[k].idx] = 'd'; /* the fresh ones become 'a' below */
        if (k > 0 && same_key(refs[k - 1].e, e))
            continue;
        pgarr_i64(&ord, refs[k].idx);
        pgarr_i64(&mb, e->mailbox_id);
        pgarr_str(&f, e->folder);
        pgarr_i64(&v, e->uidvalidity);
        pgarr_i64(&u, e->uid);
        pgarr_i64(&s, r->send_id[refs[k].idx]);
    }
    inbox_found_batch b = {pgarr_done(&ord, a), pgarr_done(&mb, a), pgarr_done(&f, a),
                           pgarr_done(&v, a),   pgarr_done(&u, a),  pgarr_done(&s, a)};
    int64_t *fresh = NULL;
    bool *known = NULL;
    if (!inbox_store_sight(r->rq->db, a, &b, &fresh, &known, nfresh))
        return false;
    *fresh_ord = arena_alloc(a, (size_t)(*nfresh + 1) * sizeof **fresh_ord);
    r->known = arena_calloc(a, (size_t)r->n * sizeof *r->known);
    for (int k = 0; k < *nfresh; k++) {
        (*fresh_ord)[k] = (int)fresh[k];
        r->verdict[fresh[k]] = 'a';
        r->known[fresh[k]] = known[k];
    }
    return true;
}

/* Per message (send) of the fresh sightings, in event order: its first (placement,
 * authentication results) and its last (where it is now). */
typedef struct msg_seen {
    int first, last;
} msg_seen;

/* The policy's actions and replies (inbox_actions_for_found, once for the whole report)
 * for messages seen for the first time, addressed where each message is now. */
static bool add_actions(ireport *r, const int64_t *created, int ncreated, const i64map *msgs,
                        const msg_seen *seen, int64_t now_s)
{
    arena *a = r->rq->pool;
    inbox_found *found = arena_alloc(a, (size_t)(ncreated + 1) * sizeof *found);
    int *where = arena_alloc(a, (size_t)(ncreated + 1) * sizeof *where); /* event index */
    int nfound = 0;
    for (int k = 0; k < ncreated; k++) {
        int64_t m = 0, srow = 0, hrow = 0;
        if (!i64map_get(msgs, created[k], &m))
            continue;
        const inbox_event *e = &r->ev[seen[m].last];
        i64map_get(&r->sends, created[k], &srow);
        bool held = i64map_get(&r->inboxes, e->mailbox_id, &hrow);
        where[nfound] = seen[m].last;
        found[nfound++] = (inbox_found){.mailbox_id = e->mailbox_id,
                                        .sender_id = db_i64(r->send_rows, (int)srow, 1),
                                        .send_id = created[k],
                                        .role = role_of(e->role),
                                        .seen = has_flag(e, "\\Seen"),
                                        .flagged = has_flag(e, "\\Flagged"),
                                        .now_s = now_s,
                                        .in = held && r->inputs ? &r->inputs[hrow] : NULL,
                                        .reply_depth = (int32_t)db_i64(r->send_rows, (int)srow, 3)};
    }
    inbox_policy_out plan;
    if (!inbox_actions_for_found(r->rq->db, a, found, nfound, &plan))
        return false;
    pgarr col[9];
    for (int c = 0; c < 9; c++)
        pgarr_open(&col[c]);
    int total = 0;
    for (int k = 0; k < nfound; k++) {
        const inbox_event *e = &r->ev[where[k]];
        for (int i = 0; i < plan.nactions[k]; i++, total++) {
            const inbox_action_spec *sp = &plan.actions[k][i];
            pgarr_i64(&col[0], e->mailbox_id);
            pgarr_i64(&col[1], found[k].send_id);
            pgarr_str(&col[2], inbox_action_kind_name(sp->kind));
            pgarr_str(&col[3], e->folder);
            pgarr_i64(&col[4], e->uidvalidity);
            pgarr_i64(&col[5], e->uid);
            pgarr_str(&col[6], flags_literal(a, sp->flags, sp->nflags));
            pgarr_str(&col[7], sp->target < 0 ? NULL : inbox_role_name(sp->target));
            pgarr_i64(&col[8], sp->not_before_s);
        }
    }
    const char *p[9];
    for (int c = 0; c < 9; c++)
        p[c] = pgarr_done(&col[c], a);
    inbox_action_batch b = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]};
    return total == 0 || inbox_store_add_actions(r->rq->db, a, &b);
}

/* Writes messages and placements for the fresh sightings, then the policy's actions for
 * messages seen for the first time. */
static bool record_messages(ireport *r, const int *fresh, int nfresh, int64_t now_s)
{
    arena *a = r->rq->pool;
    if (nfresh == 0)
        return true;
    i64map msgs = {0};
    msg_seen *seen = arena_alloc(a, (size_t)(nfresh + 1) * sizeof *seen);
    int nmsg = 0;
    for (int k = 0; k < nfresh; k++) { /* fresh is in event order */
        bool added = false;
        int64_t *slot = i64map_slot(&msgs, r->send_id[fresh[k]], nmsg, &added);
        if (added)
            seen[nmsg++] = (msg_seen){fresh[k], fresh[k]};
        else
            seen[*slot].last = fresh[k];
    }
    pgarr col[15];
    for (int c = 0; c < 15; c++)
        pgarr_open(&col[c]);
    for (int m = 0; m < nmsg; m++) {
        const inbox_event *first = &r->ev[seen[m].first], *now = &r->ev[seen[m].last];
        int64_t srow = 0, hrow = 0;
        i64map_get(&r->sends, r->send_id[seen[m].first], &srow);
        i64map_get(&r->inboxes, first->mailbox_id, &hrow);
        enum inbox_role fr = role_of(first->role);
        inbox_auth au = inbox_auth_parse(first->auth_results,
                                         first->auth_results ? strlen(first->auth_results) : 0);
        pgarr_i64(&col[0], now->mailbox_id);
        pgarr_i64(&col[1], r->send_id[seen[m].first]);
        pgarr_str(&col[2], now->folder);
        pgarr_str(&col[3], now->role);
        pgarr_i64(&col[4], now->uidvalidity);
        pgarr_i64(&col[5], now->uid);
        pgarr_str(&col[6], flags_literal(a, now->flags, now->nflags));
        pgarr_i64(&col[7], db_i64(r->send_rows, (int)srow, 1));
        pgarr_str(&col[8], fr == ROLE_WARMUP ? "other" : first->role);
        pgarr_str(&col[9], first->folder);
        pgarr_str(&col[10], inbox_provider_name(inbox_provider_of(
                                r->rq->app->providers, PQgetvalue(r->hosts, (int)hrow, 1),
                                PQgetvalue(r->hosts, (int)hrow, 2))));
        pgarr_str(&col[11], inbox_verdict_name(au.spf));
        pgarr_str(&col[12], inbox_verdict_name(au.dkim));
        pgarr_str(&col[13], inbox_verdict_name(au.dmarc));
        pgarr_str(&col[14], r->known[seen[m].first] ? "t" : "f");
    }
    const char *p[15];
    for (int c = 0; c < 15; c++)
        p[c] = pgarr_done(&col[c], a);
    inbox_message_batch b = {p[0], p[1], p[2],  p[3],  p[4],  p[5],  p[6], p[7],
                             p[8], p[9], p[10], p[11], p[12], p[13], p[14]};
    int64_t *created = NULL;
    int ncreated = 0;
    bool ok = inbox_store_messages(r->rq->db, a, &b, &created, &ncreated) &&
              add_actions(r, created, ncreated, &msgs, seen, now_s);
    i64map_free(&msgs);
    return ok;
}

/* Action outcomes: in-batch repeats of an action id are duplicates (the first counts). */
static bool apply_outcomes(ireport *r)
{
    arena *a = r->rq->pool;
    i64map first = {0};
    pgarr col[9];
    for (int c = 0; c < 9; c++)
        pgarr_open(&col[c]);
    int *ords = arena_alloc(a, (size_t)r->n * sizeof *ords), m = 0;
    for (int i = 0; i < r->n; i++) {
        const inbox_event *e = &r->ev[i];
        if (e->type != EV_ACTION || r->verdict[i])
            continue;
        bool added = false;
        i64map_slot(&first, e->action_id, i, &added);
        if (!added) {
            r->verdict[i] = 'd';
            continue;
        }
        ords[m++] = i;
        pgarr_i64(&col[0], i);
        pgarr_i64(&col[1], e->mailbox_id);
        pgarr_i64(&col[2], e->action_id);
        pgarr_str(&col[3], e->status);
        pgarr_str(&col[4], e->has_place ? e->folder : NULL);
        if (e->has_place) {
            pgarr_i64(&col[5], e->uidvalidity);
            pgarr_i64(&col[6], e->uid);
        } else {
            pgarr_null(&col[5]);
            pgarr_null(&col[6]);
        }
        pgarr_str(&col[7], e->has_flags ? flags_literal(a, e->flags, e->nflags) : NULL);
        pgarr_str(&col[8], e->detail);
    }
    i64map_free(&first);
    const char *p[9];
    for (int c = 0; c < 9; c++)
        p[c] = pgarr_done(&col[c], a);
    if (m == 0)
        return true;
    inbox_outcome_batch b = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]};
    char *res = arena_alloc(a, (size_t)m);
    if (!inbox_store_outcomes(r->rq->db, a, &b, m, res))
        return false;
    for (int k = 0; k < m; k++)
        r->verdict[ords[k]] = res[k];
    return true;
}

/* Folder states: per (mailbox, folder) the last of the batch counts, earlier ones are
 * duplicates; a written row is applied, an unchanged one a duplicate, a new folder
 * beyond the bound ignored. The statement reports counts, so the verdicts of the
 * batch's last events are assigned in that proportion (applied first). */
static bool apply_folders(ireport *r)
{
    arena *a = r->rq->pool;
    pgarr mb, name, role, v, last;
    pgarr_open(&mb);
    pgarr_open(&name);
    pgarr_open(&role);
    pgarr_open(&v);
    pgarr_open(&last);
    int *ords = arena_alloc(a, (size_t)r->n * sizeof *ords), m = 0;
    for (int i = r->n - 1; i >= 0; i--) {
        const inbox_event *e = &r->ev[i];
        if (e->type != EV_FOLDER_STATE || r->verdict[i])
            continue;
        bool later = false;
        for (int k = 0; k < m && !later; k++)
            later = r->ev[ords[k]].mailbox_id == e->mailbox_id &&
                    !strcmp(r->ev[ords[k]].folder, e->folder);
        if (later) {
            r->verdict[i] = 'd';
            continue;
        }
        ords[m++] = i;
        pgarr_i64(&mb, e->mailbox_id);
        pgarr_str(&name, e->folder);
        pgarr_str(&role, e->role);
        pgarr_i64(&v, e->uidvalidity);
        pgarr_i64(&last, e->last_uid);
    }
    inbox_folder_batch b = {pgarr_done(&mb, a), pgarr_done(&name, a), pgarr_done(&role, a),
                            pgarr_done(&v, a), pgarr_done(&last, a)};
    if (m == 0)
        return true;
    int changed = 0, refused = 0;
    if (!inbox_store_folders(r->rq->db, a, &b, m, &changed, &refused))
        return false;
    for (int k = 0; k < m; k++)
        r->verdict[ords[k]] = (char)(k < changed ? 'a' : k < changed + refused ? 'i' : 'd');
    return true;
}

/* Sessions: per mailbox the last of the batch counts; applied when it changed the
 * inbox's state or its error (a transient status records a failing inbox once: the same
 * failure again is a duplicate; Q_SESSIONS in inbox_store.c). */
static bool apply_sessions(ireport *r)
{
    arena *a = r->rq->pool;
    i64map last = {0};
    for (int i = 0; i < r->n; i++)
        if (r->ev[i].type == EV_SESSION && !r->verdict[i])
            i64map_put(&last, r->ev[i].mailbox_id, i);
    pgarr mb, st, det;
    pgarr_open(&mb);
    pgarr_open(&st);
    pgarr_open(&det);
    int m = 0;
    for (int i = 0; i < r->n; i++) {
        int64_t at = -1;
        if (r->ev[i].type != EV_SESSION || r->verdict[i])
            continue;
        i64map_get(&last, r->ev[i].mailbox_id, &at);
        r->verdict[i] = 'd';
        if (at != i)
            continue;
        m++;
        pgarr_i64(&mb, r->ev[i].mailbox_id);
        pgarr_str(&st, r->ev[i].status);
        pgarr_str(&det, r->ev[i].detail);
    }
    int changed = 0;
    const char *mbs = pgarr_done(&mb, a), *sts = pgarr_done(&st, a), *dets = pgarr_done(&det, a);
    bool ok = m == 0 || inbox_store_sessions(r->rq->db, a, mbs, sts, dets, &changed);
    if (!ok) {
        i64map_free(&last);
        return false;
    }
    /* Which mailbox changed is not returned per event; the count is what is answered. */
    for (int i = 0; i < r->n && changed > 0; i++) {
        int64_t at = -1;
        if (r->ev[i].type == EV_SESSION && i64map_get(&last, r->ev[i].mailbox_id, &at) && at == i &&
            r->verdict[i] == 'd') {
            r->verdict[i] = 'a';
            changed--;
        }
    }
    i64map_free(&last);
    return true;
}

static void write_answer(http_resp *rs, const ireport *r)
{
    int applied = 0, dups = 0, ignored = 0;
    for (int i = 0; i < r->n; i++) {
        applied += r->verdict[i] == 'a';
        dups += r->verdict[i] == 'd';
        ignored += r->verdict[i] == 'i';
    }
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "lease_id", r->lease_id);
    json_kv_i(g, "applied", 0);
    json_kv_i(g, "duplicates", 0);
    json_kv_i(g, "rejected", 0);
    json_key(g, "inbox_events");
    json_obj_open(g);
    json_kv_i(g, "applied", applied);
    json_kv_i(g, "duplicates", dups);
    json_kv_i(g, "ignored", ignored);
    json_obj_close(g);
    json_key(g, "results");
    json_arr_open(g);
    json_arr_close(g);
    json_obj_close(g);
    json_gen_free(g);
}

/* A concurrent report inserted the same new message or placement first (Q_SIGHT and
 * Q_MESSAGES insert them plainly): the retry finds them known. */
static bool lost_race(db *d)
{
    const char *c = db_constraint(d);
    return db_last_error(d) == DB_CONSTRAINT && !strcmp(db_sqlstate(d), "23505") &&
           (!strcmp(c, "inbox_messages_pkey") || !strcmp(c, "placements_pkey"));
}

static enum db_tx report_tx(http_req *rq, http_resp *rs, void *ctx)
{
    ireport *r = ctx;
    memset(r->verdict, 0, (size_t)r->n);
    i64map_clear(&r->inboxes);
    i64map_clear(&r->sends);
    int *fresh = NULL, nfresh = 0;
    if (!db_begin(rq->db) || !load_inboxes(r) || !verify_found(r) || !sight(r, &fresh, &nfresh) ||
        !record_messages(r, fresh, nfresh, r->now_s) || !apply_outcomes(r) || !apply_folders(r) ||
        !apply_sessions(r) || !db_commit(rq->db))
        return lost_race(rq->db) ? (db_rollback(rq->db), DB_TX_RETRY) : http_tx_fail(rq, rs);
    write_answer(rs, r);
    return DB_TX_OK;
}

void inbox_report_apply(http_req *rq, http_resp *rs, const char *lease_id, const inbox_event *ev,
                        int n)
{
    ireport r = {.rq = rq, .lease_id = lease_id, .ev = ev, .n = n};
    r.verdict = arena_alloc(rq->pool, (size_t)n);
    http_tx(rq, rs, report_tx, &r, "report conflicted with concurrent work; retry");
    i64map_free(&r.inboxes);
    i64map_free(&r.sends);
}
