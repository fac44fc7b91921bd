/* The inbox part of a lease call (see inbox_grant.h). Rules: docs/design.md "Inbox
 * leasing and placement". */
#include "inbox_grant.h"

#include "app.h"
#include "codec.h"
#include "inbox_classify.h"
#include "inbox_policy.h"
#include "json.h"
#include "log.h"
#include "pgarr.h"
#include "wire.h"

#include <stdlib.h>
#include <string.h>

/* Sends judged per lease call by the missing sweep. */
#define SWEEP_LIMIT 500
/* Actions listed per inbox (LeaseInbox.actions maxItems). */
#define ACTIONS_PER_INBOX 1000

/* One bounded step of the missing sweep: sends after the watermark whose deadline has
 * passed are judged in id order, up to the first that is not judged yet (still leased,
 * or too recent); the missing ones get placement 'missing' with their recipient's
 * provider. Another sweeper holding the watermark: nothing to do. */
static bool sweep_missing(http_req *rq)
{
    arena *a = rq->pool;
    PGresult *r = NULL;
    bool locked = false;
    if (!inbox_store_sweep_load(rq->db, a, rq->app->cfg.placement_deadline_s, SWEEP_LIMIT, &locked,
                                &r))
        return false;
    if (!locked)
        return true;
    static const char *const names[] = {"id",      "mailbox_id", "recipient_id", "judged",
                                        "missing", "imap_host",  "address"};
    int c[7];
    db_columns(r, names, c, 7);
    pgarr sid, mb, rc, prov;
    pgarr_open(&sid);
    pgarr_open(&mb);
    pgarr_open(&rc);
    pgarr_open(&prov);
    int64_t last = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetvalue(r, i, c[3])[0] != 't')
            break;
        last = db_i64(r, i, c[0]);
        if (PQgetvalue(r, i, c[4])[0] != 't')
            continue;
        pgarr_i64(&sid, last);
        pgarr_i64(&mb, db_i64(r, i, c[1]));
        pgarr_i64(&rc, db_i64(r, i, c[2]));
        pgarr_str(&prov, inbox_provider_name(inbox_provider_of(
                             rq->app->providers, PQgetvalue(r, i, c[5]), PQgetvalue(r, i, c[6]))));
    }
    inbox_missing_batch b = {pgarr_done(&sid, a), pgarr_done(&mb, a), pgarr_done(&rc, a),
                             pgarr_done(&prov, a)};
    return last == 0 || inbox_store_sweep_write(rq->db, a, &b, last);
}

/* Which held inboxes the answer lists (see inbox_grant.h): without a cursor all of
 * them; with one, the fresh, those with due actions and those whose poll class the agent
 * may lack, at most WIRE_MAX_LEASE_INBOXES (fresh first: an update left out comes in a
 * later answer, its actions still pending and its class not recorded). The classes
 * listed are recorded as carried. */
static bool decide_listing(http_req *rq, inbox_held *h)
{
    int listed = 0, ak = 0;
    for (int i = 0; i < h->nrows; i++)
        listed += h->rows[i].fresh;
    pgarr ids, classes;
    pgarr_open(&ids);
    pgarr_open(&classes);
    bool any = false;
    for (int i = 0; i < h->nrows; i++) {
        inbox_row *row = &h->rows[i];
        for (; ak < h->nactions && h->actions[ak].mailbox_id < row->mailbox_id; ak++)
            ;
        bool due = ak < h->nactions && h->actions[ak].mailbox_id == row->mailbox_id;
        if (h->delta && !row->fresh)
            row->listed = (due || row->class_news) && listed++ < WIRE_MAX_LEASE_INBOXES;
        if (row->listed && !row->class_recorded) {
            pgarr_i64(&ids, row->mailbox_id);
            pgarr_str(&classes, row->poll_class);
            any = true;
        }
    }
    const char *idl = pgarr_done(&ids, rq->pool), *cl = pgarr_done(&classes, rq->pool);
    return !any || inbox_store_class_sent(rq->db, rq->pool, idl, cl);
}

enum db_tx inbox_grant(http_req *rq, http_resp *rs, void *ctx)
{
    inbox_request *ir = ctx;
    const app_config *cfg = &rq->app->cfg;
    arena *a = rq->pool;
    int64_t agent = rq->auth.agent_id, held = 0, watchable = 0, others = 0;
    const char *lease_id = NULL;
    memset(&ir->held, 0, sizeof ir->held);
    ir->ok = false;
    if (!inbox_store_begin(rq->db, a, agent) ||
        !inbox_store_agent_lease(rq->db, a, agent, &lease_id, &held) ||
        !inbox_store_counts(rq->db, a, agent, INBOX_WANT_WINDOW_S, &watchable, &others))
        return http_tx_fail(rq, rs);
    /* The agent's share: the watchable inboxes spread over the agents that want some;
     * a holder above it gives back at heartbeat. */
    int64_t share = (watchable + others) / (others + 1);
    int64_t room = share - held; /* max_inboxes is the agent's capacity left */
    int64_t want = ir->max_inboxes < room ? ir->max_inboxes : room;
    int64_t *ids = NULL;
    int nids = 0;
    if (want > 0 && !inbox_store_pick(rq->db, a, want, &ids, &nids))
        return http_tx_fail(rq, rs);
    if (!lease_id && nids > 0 &&
        !inbox_store_new_lease(rq->db, a, agent, cfg->inbox_lease_ttl_s, &lease_id))
        return http_tx_fail(rq, rs);
    if (lease_id &&
        (!inbox_store_extend(rq->db, a, lease_id) ||
         !inbox_store_assign(rq->db, a, lease_id, ids, nids) ||
         !inbox_store_load(rq->db, a, lease_id, cfg->inbox_lease_ttl_s, ir->cursor, &ir->held) ||
         !decide_listing(rq, &ir->held)))
        return http_tx_fail(rq, rs);
    if (!sweep_missing(rq) || !db_commit(rq->db))
        return http_tx_fail(rq, rs);
    ir->held.lease_id = ir->held.nrows > 0 ? lease_id : NULL;
    ir->held.ttl_s = cfg->inbox_lease_ttl_s;
    /* a third of the TTL, at most hourly (InboxLease.heartbeat_s: 10..3600) */
    ir->heartbeat_s = cfg->inbox_lease_ttl_s / 3 < 3600 ? cfg->inbox_lease_ttl_s / 3 : 3600;
    ir->ok = true;
    return DB_TX_OK;
}

/* ---- the answer ------------------------------------------------------------------------ */

/* The opened IMAP secret as text, or NULL (does not open, or is not UTF-8 without NUL). */
static const char *open_secret(arena *a, const secret_key *key, const inbox_row *row, size_t *len)
{
    const char *aad = strcmp(row->auth, "oauth_token") == 0 ? IMAP_SECRET_AAD_OAUTH_TOKEN
                                                            : IMAP_SECRET_AAD_PASSWORD;
    buf sealed = BUF_INIT, plain = BUF_INIT;
    const char *out = NULL;
    if (hex_decode_append(&sealed, row->secret_hex, strlen(row->secret_hex)) == 0 &&
        secret_open(key, sealed.data ? sealed.data : "", sealed.len, aad, &plain) == 0 &&
        utf8_valid(plain.data ? plain.data : "", plain.len)) {
        out = arena_strndup(a, plain.data ? plain.data : "", plain.len);
        *len = plain.len;
    } else {
        log_warn("mailbox %lld: IMAP secret does not open with this key or is not text",
                 (long long)row->mailbox_id);
    }
    if (plain.data)
        memset(plain.data, 0, plain.len);
    buf_free(&sealed);
    buf_free(&plain);
    return out;
}

static void write_imap(arena *a, const secret_key *key, yajl_gen g, const inbox_row *row)
{
    size_t len = 0;
    const char *secret = open_secret(a, key, row, &len);
    bool token = strcmp(row->auth, "oauth_token") == 0;
    json_key(g, "imap");
    json_obj_open(g);
    json_kv_s(g, "host", row->host);
    json_kv_i(g, "port", row->port);
    json_kv_s(g, "security", row->security);
    json_kv_s(g, "username", row->username);
    json_key(g, "password");
    if (secret && !token)
        json_str_n(g, secret, len);
    else
        json_null(g);
    json_key(g, "oauth_token");
    if (secret && token)
        json_str_n(g, secret, len);
    else
        json_null(g);
    json_kv_null(g, "ca_file");
    json_kv_b(g, "allow_plaintext_auth", row->allow_plaintext_auth);
    json_obj_close(g);
}

static int64_t poll_interval_s(const char *cls)
{
    return !strcmp(cls, "high") ? 60 : !strcmp(cls, "medium") ? 300 : 900;
}

static void write_actions(yajl_gen g, const inbox_held *h, int64_t mailbox_id, int *k)
{
    json_key(g, "actions");
    json_arr_open(g);
    int n = 0;
    for (; *k < h->nactions && h->actions[*k].mailbox_id == mailbox_id; (*k)++) {
        const inbox_action_row *x = &h->actions[*k];
        if (n++ >= ACTIONS_PER_INBOX)
            continue;
        json_obj_open(g);
        json_kv_i(g, "id", x->id);
        json_kv_s(g, "kind", x->kind);
        json_kv_s(g, "folder", x->folder);
        json_kv_i(g, "uidvalidity", x->uidvalidity);
        json_kv_i(g, "uid", x->uid);
        json_key(g, "flags");
        json_arr_open(g);
        for (const char *f = x->flags; *f;) {
            size_t len = strcspn(f, " ");
            if (len)
                json_str_n(g, f, len);
            f += len + (f[len] == ' ');
        }
        json_arr_close(g);
        json_key(g, "target");
        json_s(g, x->target);
        json_kv_i(g, "not_before_s", x->not_before_s);
        if (x->message_id && *x->message_id) /* lets the agent recognise a move done before */
            json_kv_s(g, "message_id", x->message_id);
        json_obj_close(g);
    }
    json_arr_close(g);
}

/* An inbox the agent holds: what may have changed, no access (LeaseInboxUpdate). */
static void write_update(yajl_gen g, const inbox_held *h, const inbox_row *row, int *ak)
{
    json_obj_open(g);
    json_kv_i(g, "mailbox_id", row->mailbox_id);
    json_kv_b(g, "known", true);
    json_kv_s(g, "poll_class", row->poll_class);
    json_kv_i(g, "poll_interval_s", poll_interval_s(row->poll_class));
    write_actions(g, h, row->mailbox_id, ak);
    json_obj_close(g);
}

void inbox_answer_members(arena *a, const secret_key *key, yajl_gen g, const inbox_request *r)
{
    if (!r || !r->ok || !r->held.lease_id)
        return;
    const inbox_held *h = &r->held;
    json_key(g, "inbox_lease");
    json_obj_open(g);
    json_kv_s(g, "lease_id", h->lease_id);
    json_kv_i(g, "ttl_s", h->ttl_s);
    json_kv_i(g, "heartbeat_s", r->heartbeat_s);
    json_kv_i(g, "cursor", strtoll(h->cursor, NULL, 10));
    json_obj_close(g);
    json_key(g, "inboxes");
    json_arr_open(g);
    int fk = 0, ak = 0;
    for (int i = 0; i < h->nrows; i++) {
        const inbox_row *row = &h->rows[i];
        if (!row->listed || (h->delta && !row->fresh)) {
            for (; fk < h->nfolders && h->folders[fk].mailbox_id == row->mailbox_id; fk++)
                ;
            if (row->listed)
                write_update(g, h, row, &ak);
            for (; ak < h->nactions && h->actions[ak].mailbox_id == row->mailbox_id; ak++)
                ;
            continue;
        }
        json_obj_open(g);
        json_kv_i(g, "mailbox_id", row->mailbox_id);
        json_kv_s(g, "address", row->address);
        write_imap(a, key, g, row);
        json_kv_s(g, "poll_class", row->poll_class);
        json_kv_i(g, "poll_interval_s", poll_interval_s(row->poll_class));
        json_kv_s(g, "warmup_folder", INBOX_WARMUP_FOLDER);
        json_key(g, "folders");
        json_arr_open(g);
        for (; fk < h->nfolders && h->folders[fk].mailbox_id == row->mailbox_id; fk++) {
            const inbox_folder_row *f = &h->folders[fk];
            json_obj_open(g);
            json_kv_s(g, "name", f->name);
            json_kv_s(g, "role", f->role);
            json_kv_i(g, "uidvalidity", f->uidvalidity);
            json_kv_i(g, "last_uid", f->last_uid);
            json_obj_close(g);
        }
        json_arr_close(g);
        write_actions(g, h, row->mailbox_id, &ak);
        json_obj_close(g);
    }
    json_arr_close(g);
}
