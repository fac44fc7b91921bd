/* IMAP inbox session (see imap_inbox.h). imap_session does the login; from IMAP_S_READY
 * on this file reads the responses itself with the session's parser and tags. A visit
 * is a cycle: the folder checks (SELECT, UID FETCH in batches) of the roles in
 * check_mask, then the due actions (imap_inbox_act.c), then IDLE or LOGOUT; ib_next is
 * the one place that decides what comes after a step. */
#include "imap_inbox_internal.h"

#include "imap_utf7.h"
#include "xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const role_names[IMAP_ROLE_COUNT] = {"inbox", "junk", "warmup", "other"};

static const char *const state_names[IMAP_IB_COUNT] = {
    "login",      "namespace",   "list",       "status",      "select",
    "fetch",      "act_create",  "act_select", "act_move",    "act_copy",
    "act_delete", "act_expunge", "act_store",  "act_confirm", "idle_select",
    "idle_start", "idling",      "idle_done",  "kept",        "done",
};

static const char *const header_fields[] = {"MESSAGE-ID", "IN-REPLY-TO", "AUTHENTICATION-RESULTS",
                                            "SUBJECT"};

const char *imap_role_name(int role)
{
    return role >= 0 && role < IMAP_ROLE_COUNT ? role_names[role] : "invalid";
}

const char *imap_inbox_state_name(int state)
{
    return state >= 0 && state < IMAP_IB_COUNT ? state_names[state] : "invalid";
}

imap_inbox *imap_inbox_new(const imap_session_params *p, const imap_inbox_job *job,
                           imap_inbox_event_fn on_event, void *ctx)
{
    const char *warmup = job->warmup_folder ? job->warmup_folder : "Warmup";
    buf probe = BUF_INIT;
    int bad = !*warmup || imap_utf7_encode(warmup, strlen(warmup), &probe) < 0;
    buf_free(&probe);
    if (bad)
        return NULL;
    imap_inbox *ib = xcalloc(1, sizeof *ib);
    imap_session_init(&ib->s, p);
    ib->state = IMAP_IB_LOGIN;
    ib->on_event = on_event;
    ib->ctx = ctx;
    ib->is_kiln = job->is_kiln_msgid;
    ib->msgid_ctx = job->msgid_ctx;
    ib->want_idle = job->want_idle;
    ib->trust_stored = job->trust_stored_roles;
    ib->pipeline = job->pipeline;
    ib->caps_hint = job->caps_hint;
    ib->keep = job->keep;
    ib->idle_refresh_ms =
        job->idle_refresh_ms > 0 ? job->idle_refresh_ms : IMAP_INBOX_IDLE_REFRESH_MS;
    ib->command_ms = job->command_ms > 0 ? job->command_ms : IMAP_INBOX_COMMAND_MS;
    ib->greeting_ms = job->greeting_ms > 0 ? job->greeting_ms : IMAP_INBOX_GREETING_MS;
    ib->warmup_utf8 = xstrdup(warmup);
    ib->prefix = xstrdup("");
    ib->roles[IMAP_ROLE_INBOX].name = xstrdup("INBOX");
    ib->cur = SIZE_MAX;
    ib->stored = xcalloc(job->nfolders ? job->nfolders : 1, sizeof *ib->stored);
    for (size_t i = 0; i < job->nfolders; i++) {
        if (!job->folders[i].name || !job->folders[i].uidvalidity)
            continue; /* no state to resume from */
        ib->stored[ib->nstored] = job->folders[i];
        ib->stored[ib->nstored++].name = xstrdup(job->folders[i].name);
    }
    buf_init(&ib->confirmed);
    for (size_t i = 0; i < 4; i++)
        buf_init(&ib->hdr[i]);
    for (size_t i = 0; i < job->nactions; i++) {
        if (ib_act_add(ib, &job->actions[i]) == -EINVAL) {
            imap_inbox_free(ib);
            return NULL;
        }
    }
    return ib;
}

void imap_inbox_free(imap_inbox *ib)
{
    if (!ib)
        return;
    imap_session_clear(&ib->s);
    for (int r = 0; r < IMAP_ROLE_OTHER; r++)
        free(ib->roles[r].name);
    for (size_t i = 0; i < ib->nstored; i++)
        free((char *)ib->stored[i].name);
    free(ib->stored);
    ib_act_free_all(ib);
    for (size_t i = 0; i < ib->nfound; i++)
        free(ib->found[i].message_id);
    free(ib->found);
    i64map_free(&ib->fetch_seen);
    for (size_t i = 0; i < ib->nmoved; i++) {
        free(ib->moved[i].from);
        free(ib->moved[i].to);
    }
    free(ib->moved);
    buf_free(&ib->confirmed);
    for (size_t i = 0; i < 4; i++)
        buf_free(&ib->hdr[i]);
    free(ib->prefix);
    free(ib->warmup_utf8);
    free(ib->warmup_wire);
    free(ib->selected);
    free(ib);
}

buf *imap_inbox_output(imap_inbox *ib)
{
    return &ib->s.out;
}

int imap_inbox_state(const imap_inbox *ib)
{
    return ib->state;
}

int imap_inbox_outcome(const imap_inbox *ib)
{
    return ib->outcome;
}

const char *imap_inbox_detail(const imap_inbox *ib)
{
    return ib->detail;
}

unsigned imap_inbox_caps(const imap_inbox *ib)
{
    return ib->s.caps;
}

void ib_emit(imap_inbox *ib, imap_inbox_event *ev)
{
    if (!ev->detail)
        ev->detail = "";
    if (ib->on_event)
        ib->on_event(ib->ctx, ev);
}

const char *ib_role_folder(imap_inbox *ib, int role)
{
    return role >= 0 && role < IMAP_ROLE_OTHER ? ib->roles[role].name : NULL;
}

/* ---- commands and endings ---- */

int ib_send(imap_inbox *ib, int built, int state)
{
    if (built < 0)
        return -1;
    ib->s.cmd_waiting = imap_cmd_take(&ib->s.cmd, &ib->s.out) == IMAP_CMD_WAIT;
    ib->state = state;
    return IMAP_EV_OUTPUT;
}

static void set_detail(imap_inbox *ib, const char *why, size_t n)
{
    ib_set_text(ib->detail, sizeof ib->detail, why, n);
    if (ib->alert[0]) {
        size_t k = strlen(ib->detail);
        snprintf(ib->detail + k, sizeof ib->detail - k, "%s[ALERT] %s", k ? " " : "", ib->alert);
    }
}

static int login_over(imap_inbox *ib, int ev);

/* LOGOUT goes through imap_session, which closes behind it without waiting for the
 * answer: the session is over once it is sent. */
int ib_logout(imap_inbox *ib)
{
    ib->s.state = IMAP_S_READY;
    return login_over(ib, imap_session_logout(&ib->s));
}

int ib_finish(imap_inbox *ib, int outcome, const char *why, size_t n, bool do_logout)
{
    if (!ib->outcome) {
        ib->outcome = outcome;
        set_detail(ib, why, n);
    }
    if (do_logout && ib->state != IMAP_IB_DONE)
        return ib_logout(ib);
    ib->state = IMAP_IB_DONE;
    return IMAP_EV_DONE;
}

int ib_protocol_error(imap_inbox *ib, const char *why)
{
    buf_reset(&ib->s.out);
    return ib_finish(ib, IMAP_OUT_PROTOCOL, why, strlen(why), false);
}

int ib_select(imap_inbox *ib, const char *name, int state)
{
    free(ib->selected);
    ib->selected = NULL; /* a SELECT deselects, whatever its answer */
    ib->sel_uidvalidity = ib->sel_uidnext = ib->sel_exists = 0;
    ib->sel_have_exists = false;
    imap_cmd *c = &ib->s.cmd;
    int ev = ib_send(ib, imap_cmd_select(&ib->s.gen, c, name, strlen(name), false), state);
    if (ev > 0)
        ib->selected = xstrdup(name); /* confirmed by the tagged OK */
    return ev;
}

/* ---- the cycle ---- */

static const imap_inbox_folder *stored_state(const imap_inbox *ib, const char *name)
{
    for (size_t i = 0; i < ib->nstored; i++)
        if (strcmp(ib->stored[i].name, name) == 0)
            return &ib->stored[i];
    return NULL;
}

static void emit_folder_state(imap_inbox *ib, int role)
{
    ib_folder *f = &ib->roles[role];
    imap_inbox_event ev = {.type = IMAP_INBOX_EV_FOLDER_STATE,
                           .folder = f->name,
                           .role = role,
                           .uidvalidity = f->uidvalidity,
                           .last_uid = f->last_uid,
                           .resync = ib->resync,
                           .old_uidvalidity = ib->resync ? ib->old_uidvalidity : 0};
    ib_emit(ib, &ev);
}

static int end_folder(imap_inbox *ib)
{
    ib_folder *f = &ib->roles[ib->check_role];
    f->known = true;
    if (ib->check_role == IMAP_ROLE_INBOX)
        ib->idle_new_mail = false; /* what came so far was fetched */
    emit_folder_state(ib, ib->check_role);
    ib->check_role++;
    return ib_next(ib);
}

/* The next UID FETCH of the folder under check, or its end (FOLDER_STATE, next role). */
static int fetch_batch(imap_inbox *ib)
{
    ib_folder *f = &ib->roles[ib->check_role];
    char set[32];
    unsigned items = IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE;
    size_t nfields = sizeof header_fields / sizeof header_fields[0];
    if (ib->fetch_probe) {
        /* never watched and no UIDNEXT: the highest UID is where to start */
        snprintf(set, sizeof set, "*");
        items = 0;
        nfields = 0;
    } else {
        if (ib->fetch_done || !ib->fetch_from ||
            (ib->sel_uidnext && ib->fetch_from >= ib->sel_uidnext)) {
            /* nothing (more) can be new: UIDs below UIDNEXT are all seen */
            if (ib->sel_uidnext && ib->sel_uidnext - 1 > f->last_uid)
                f->last_uid = ib->sel_uidnext - 1;
            return end_folder(ib);
        }
        uint32_t to = ib->fetch_from + (IMAP_INBOX_FETCH_BATCH - 1);
        /* Batches of UIDs bound one answer in a big folder. Where a batch comes back
         * empty the UIDs have a gap (a server may start UIDs anywhere, up to 2^32-1 after
         * a UIDVALIDITY change), and where the whole folder fits in one answer there is
         * nothing to bound: fetch the rest in one go, at most EXISTS messages, rather
         * than walk the gap 500 UIDs a command. */
        bool rest = (ib->sel_have_exists && ib->sel_exists <= IMAP_INBOX_FETCH_BATCH) ||
                    (ib->fetch_from > ib->fetch_floor + 1 && !ib->fetch_hit);
        ib->fetch_final =
            rest || !ib->sel_uidnext || to < ib->fetch_from || to >= ib->sel_uidnext - 1;
        ib->fetch_to = ib->fetch_final ? UINT32_MAX : to;
        if (ib->fetch_final)
            snprintf(set, sizeof set, "%u:*", (unsigned)ib->fetch_from);
        else
            snprintf(set, sizeof set, "%u:%u", (unsigned)ib->fetch_from, (unsigned)to);
        if (ib->s.caps & IMAP_CAP_X_GM_EXT_1)
            items |= IMAP_FETCH_GM_LABELS;
    }
    ib->fetch_hit = false;
    int built = imap_cmd_uid_fetch(&ib->s.gen, &ib->s.cmd, set, items, header_fields, nfields);
    return ib_send(ib, built, IMAP_IB_FETCH);
}

/* SELECT of the folder under check answered OK: where to fetch from. */
static int check_selected(imap_inbox *ib)
{
    int role = ib->check_role;
    ib_folder *f = &ib->roles[role];
    const imap_inbox_folder *st = f->known ? NULL : stored_state(ib, f->name);
    ib->resync = false;
    ib->fetch_probe = false;
    if (!ib->sel_uidvalidity)
        return ib_protocol_error(ib, "SELECT answered without UIDVALIDITY");
    if (!f->known && st) {
        f->known = true;
        f->uidvalidity = st->uidvalidity;
        f->last_uid = st->last_uid;
    }
    if (f->known && f->uidvalidity != ib->sel_uidvalidity) {
        /* the folder was recreated: every UID is new; fetch it all (in batches) */
        ib->resync = true;
        ib->old_uidvalidity = f->uidvalidity;
        f->last_uid = 0;
    } else if (!f->known) {
        /* never watched: nothing old is reported; start at UIDNEXT - 1, or look back a
         * little where an action may already have moved a message here */
        uint32_t next = ib->sel_uidnext;
        uint32_t back = ib_move_target_pending(ib, role) ? IB_LOOKBACK : 0;
        f->last_uid = next > back + 1 ? next - 1 - back : 0;
        ib->fetch_probe = !next;
    }
    f->uidvalidity = ib->sel_uidvalidity;
    ib->fetch_floor = f->last_uid;
    ib->fetch_max = f->last_uid;
    ib->fetch_done = false;
    ib->fetch_hit = true; /* no batch yet: nothing says there is a gap */
    i64map_clear(&ib->fetch_seen);
    ib->fetch_from = f->last_uid + 1; /* 0 after UINT32_MAX: nothing can be new */
    return fetch_batch(ib);
}

static void on_found(imap_inbox *ib, const imap_resp *r)
{
    int role = ib->check_role;
    ib_folder *f = &ib->roles[role];
    const imap_resp_fetch *fe = &r->fetch;
    /* the value goes through hdr[1] (reused below), its <token> into hdr[0] */
    if (!fe->body || !ib_header_value(fe->body, fe->body_len, "Message-ID", 998, &ib->hdr[1]) ||
        !ib_msgid_token(ib->hdr[1].data, ib->hdr[1].len, &ib->hdr[0]))
        return;
    const char *id = ib->hdr[0].data;
    bool kiln = ib->is_kiln ? ib->is_kiln(ib->msgid_ctx, id, ib->hdr[0].len)
                            : imap_inbox_msgid_shape_ok(id, ib->hdr[0].len);
    if (!kiln)
        return;
    const char *flags[IMAP_INBOX_EV_FLAGS_MAX], *labels[IMAP_INBOX_EV_FLAGS_MAX];
    imap_inbox_event ev = {.type = IMAP_INBOX_EV_FOUND,
                           .folder = f->name,
                           .role = role,
                           .uidvalidity = f->uidvalidity,
                           .uid = fe->uid,
                           .message_id = id,
                           .flags = flags,
                           .labels = labels};
    ev.nflags = ib_node_strings(fe->flags_list, flags, IMAP_INBOX_EV_FLAGS_MAX);
    ev.nlabels =
        ib_node_strings(imap_fetch_item(r, "X-GM-LABELS"), labels, IMAP_INBOX_EV_FLAGS_MAX);
    if (ib_header_value(fe->body, fe->body_len, "Authentication-Results", IMAP_INBOX_AUTHRES_MAX,
                        &ib->hdr[1]))
        ev.auth_results = ib->hdr[1].data;
    if (ib_header_value(fe->body, fe->body_len, "In-Reply-To", 998, &ib->hdr[2]))
        ev.in_reply_to = ib->hdr[2].data;
    if (ib_header_value(fe->body, fe->body_len, "Subject", 998, &ib->hdr[3]))
        ev.subject = ib->hdr[3].data;
    char date[24];
    const imap_node *d = imap_fetch_item(r, "INTERNALDATE");
    if (d && d->type == IMAP_N_STRING && ib_internaldate_iso(d->s, d->len, date))
        ev.internal_date = date;
    if (ib->nfound < IB_FOUND_MAX) {
        ib->found = xrealloc(ib->found, (ib->nfound + 1) * sizeof *ib->found);
        ib->found[ib->nfound++] = (ib_found){
            .role = role, .uidvalidity = f->uidvalidity, .uid = fe->uid, .message_id = xstrdup(id)};
    }
    ib_emit(ib, &ev);
}

/* An untagged FETCH while checking: filter what is not new (a server answers n:* with
 * the highest message even when n is past it), then report kiln's. */
static void on_fetch(imap_inbox *ib, const imap_resp *r)
{
    if (!r->fetch.have_uid)
        return; /* an unsolicited flag change */
    uint32_t uid = r->fetch.uid;
    if (ib->fetch_probe) {
        if (uid > ib->fetch_max)
            ib->fetch_max = uid;
        return;
    }
    if (uid <= ib->fetch_floor || uid < ib->fetch_from || uid > ib->fetch_to)
        return;
    /* Only an answer to this fetch moves the folder's last UID: it carries the header
     * section asked for. A bare "* n FETCH (UID u FLAGS ())" is a flag update, or a
     * server's invention: taken, a UID near 2^32 would hide every later message. */
    if (!r->fetch.section && !r->fetch.body)
        return;
    ib->fetch_hit = true;
    bool added;
    i64map_slot(&ib->fetch_seen, uid, 1, &added);
    if (!added)
        return; /* the same UID again in this check (a broken or hostile server) */
    if (uid > ib->fetch_max)
        ib->fetch_max = uid;
    on_found(ib, r);
}

static int fetch_answered(imap_inbox *ib, const imap_resp *r)
{
    ib_folder *f = &ib->roles[ib->check_role];
    if (r->status != IMAP_STATUS_OK) {
        int out = imap_refusal_outcome(r, IMAP_OUT_NONE);
        if (out)
            return ib_finish(ib, out, r->text, r->text_len, true);
        ib->check_role++; /* this folder is skipped; its state is not moved */
        return ib_next(ib);
    }
    if (ib->fetch_max > f->last_uid)
        f->last_uid = ib->fetch_max;
    if (ib->fetch_probe) {
        ib->fetch_probe = false;
        return end_folder(ib);
    }
    ib->fetch_done = ib->fetch_final;
    ib->fetch_from = ib->fetch_to + 1;
    return fetch_batch(ib);
}

/* The next step of the cycle: a folder check, an action, IDLE or LOGOUT. */
int ib_next(imap_inbox *ib)
{
    if (ib->stop_asked)
        return ib_logout(ib);
    if (ib->checking) {
        for (; ib->check_role < IMAP_ROLE_OTHER; ib->check_role++) {
            int role = ib->check_role;
            ib_folder *f = &ib->roles[role];
            if (!(ib->check_mask & (1u << role)) || !f->name)
                continue;
            if (ib_status_settles(ib, role, f->known ? NULL : stored_state(ib, f->name))) {
                if (role == IMAP_ROLE_INBOX)
                    ib->idle_new_mail = false;
                ib->resync = false;
                emit_folder_state(ib, role); /* nothing new: no SELECT */
                continue;
            }
            int ev = ib_select(ib, f->name, IMAP_IB_SELECT);
            if (ev >= 0)
                return ev;
            /* a name no IMAP command can carry (CR, LF or NUL from a literal): that
             * folder is not checked, the session says so, the other folders go on */
            static const char *const what[] = {"INBOX", "junk", "warmup"};
            char why[96];
            int k = snprintf(why, sizeof why,
                             "the %s folder's name cannot be sent in an IMAP "
                             "command: not checked",
                             what[role < 3 ? role : 0]);
            set_detail(ib, why, k > 0 ? (size_t)k : 0);
        }
        ib->checking = false;
    }
    int ev = ib_act_next(ib);
    if (ev)
        return ev;
    if (ib->want_idle && (ib->s.caps & IMAP_CAP_IDLE)) {
        if (ib->selected && strcmp(ib->selected, "INBOX") == 0)
            return ib_send(ib, imap_cmd_idle(&ib->s.gen, &ib->s.cmd), IMAP_IB_IDLE_START);
        return ib_select(ib, "INBOX", IMAP_IB_IDLE_SELECT);
    }
    if (ib->keep) {
        ib->state = IMAP_IB_KEPT; /* the owner's imap_inbox_visit or imap_inbox_stop */
        return 0;
    }
    return ib_logout(ib);
}

int ib_start_cycle(imap_inbox *ib, unsigned mask)
{
    ib->check_mask = mask;
    ib->check_role = 0;
    ib->checking = mask != 0;
    /* STATUS sent behind the LOGIN: its answers come first (a stop logs out after) */
    if (ib->st_early) {
        ib_status_start(ib);
        if (ib->st_pending)
            return 0;
    }
    ib->st_have = ib->st_listed; /* what a LIST-STATUS said needs no STATUS */
    ib->st_listed = 0;
    if (ib->pipeline && mask && ib->state == IMAP_IB_KEPT)
        ib_unselect_ahead(ib);
    /* STATUS only while nothing is selected (not on the selected folder: RFC 9051) */
    if (ib->pipeline && mask && !ib->selected && !ib->stop_asked) {
        int ev = ib_status_start(ib);
        if (ev)
            return ev;
    }
    return ib_next(ib);
}

/* ---- login, NAMESPACE, LIST ---- */

/* The warmup folder's wire name: the personal prefix, then the name in modified UTF-7. */
static void set_warmup_wire(imap_inbox *ib)
{
    buf name = BUF_INIT;
    buf_puts(&name, ib->prefix);
    imap_utf7_encode(ib->warmup_utf8, strlen(ib->warmup_utf8), &name);
    free(ib->warmup_wire);
    ib->warmup_wire = buf_steal(&name);
}

/* The LIST's RETURN options for a server of those capabilities. */
static unsigned list_return(const imap_inbox *ib, unsigned caps)
{
    unsigned ret = (caps & IMAP_CAP_SPECIAL_USE) ? IMAP_LIST_RET_SPECIAL_USE : 0;
    return ib->list_status ? ret | IMAP_LIST_RET_STATUS : ret;
}

static int list_cmd(imap_inbox *ib)
{
    set_warmup_wire(ib);
    unsigned ret = list_return(ib, ib->s.caps);
    return ib_send(ib, imap_cmd_list(&ib->s.gen, &ib->s.cmd, ret), IMAP_IB_LIST);
}

static const imap_inbox_folder *stored_role(const imap_inbox *ib, int role)
{
    for (size_t i = 0; i < ib->nstored; i++)
        if (ib->stored[i].role == role)
            return &ib->stored[i];
    return NULL;
}

/* Under trust_stored_roles: the roles from the stored state when it has INBOX and the
 * junk folder (a LIST found them before) and no move to a warmup folder it lacks is
 * pending. True when taken (no NAMESPACE/LIST this visit). */
static bool roles_from_store(imap_inbox *ib)
{
    const imap_inbox_folder *in = stored_role(ib, IMAP_ROLE_INBOX);
    const imap_inbox_folder *junk = stored_role(ib, IMAP_ROLE_JUNK);
    const imap_inbox_folder *warm = stored_role(ib, IMAP_ROLE_WARMUP);
    if (!ib->trust_stored || !in || !junk || strcmp(in->name, "INBOX") != 0 ||
        strcmp(junk->name, "INBOX") == 0)
        return false;
    for (size_t i = 0; !warm && i < ib->nacts; i++)
        if (!ib->acts[i].finished && ib->acts[i].a.kind == IMAP_ACT_FILE)
            return false;
    ib->roles[IMAP_ROLE_JUNK].name = xstrdup(junk->name);
    if (warm)
        ib->roles[IMAP_ROLE_WARMUP].name = xstrdup(warm->name);
    ib->from_store = true;
    return true;
}

int ib_relist(imap_inbox *ib, int why)
{
    ib->relist = why;
    if (why == IB_RELIST_CYCLE) {
        /* the stored names are not trusted any more: LIST says what is there */
        for (int r = IMAP_ROLE_JUNK; r < IMAP_ROLE_OTHER; r++) {
            free(ib->roles[r].name);
            ib->roles[r] = (ib_folder){0};
        }
    }
    ib->from_store = false;
    ib->st_listed = 0;
    /* A visit's first LIST, nothing selected: with LIST-STATUS it brings each folder's
     * STATUS too (RFC 5819), and the checks need no STATUS round trip of their own. */
    ib->list_status = ib->pipeline && why == IB_RELIST_NONE && !ib->selected &&
                      (ib->s.caps & IMAP_CAP_LIST_STATUS);
    if (!(ib->s.caps & IMAP_CAP_NAMESPACE))
        return list_cmd(ib);
    int ev = ib_send(ib, imap_cmd_namespace(&ib->s.gen, &ib->s.cmd), IMAP_IB_NAMESPACE);
    if (ev <= 0 || !ib->pipeline)
        return ev;
    /* LIST behind it in the same write; the warmup name is set again once NAMESPACE
     * has said the prefix, before LIST's answers come */
    memcpy(ib->ns_tag, ib->s.cmd.tag, sizeof ib->ns_tag);
    ev = list_cmd(ib);
    ib->state = IMAP_IB_NAMESPACE;
    return ev;
}

/* Right after the LOGIN went out, on a first visit (no roles from the stored state)
 * to a server an earlier login showed its capabilities (job.caps_hint): a CAPABILITY,
 * then NAMESPACE and LIST as those capabilities allow (LIST-STATUS: with each folder's
 * STATUS) go out behind it in the same write. A first visit is then greeting,
 * LOGIN+CAPABILITY+NAMESPACE+LIST, LOGOUT where the server has LIST-STATUS. The
 * answers are read with the capabilities the login brings; a LIST the server refuses
 * (the hint was stale) is sent again as those allow. */
static void list_behind_login(imap_inbox *ib)
{
    unsigned hint = ib->caps_hint;
    imap_cmd c;
    imap_cmd_init(&c);
    imap_cmd_capability(&ib->s.gen, &c);
    imap_cmd_take(&c, &ib->s.out);
    memcpy(ib->s.cap_tag, c.tag, sizeof ib->s.cap_tag);
    ib->ns_tag[0] = '\0';
    if (hint & IMAP_CAP_NAMESPACE) {
        imap_cmd_namespace(&ib->s.gen, &c);
        imap_cmd_take(&c, &ib->s.out);
        memcpy(ib->ns_tag, c.tag, sizeof ib->ns_tag);
    }
    ib->list_status = hint & IMAP_CAP_LIST_STATUS;
    ib->st_listed = 0;
    set_warmup_wire(ib);
    imap_cmd_list(&ib->s.gen, &c, list_return(ib, hint));
    imap_cmd_take(&c, &ib->s.out);
    memcpy(ib->list_tag, c.tag, sizeof ib->list_tag);
    ib->list_early = ib->list_guessed = true;
    imap_cmd_free(&c);
}

static int on_ready(imap_inbox *ib)
{
    imap_inbox_event ev = {.type = IMAP_INBOX_EV_LOGGED_IN};
    ib_emit(ib, &ev);
    if (ib->stop_asked && (!ib->st_early || ib->list_early))
        return ib_logout(ib); /* (pipelined STATUS answers are read first, then LOGOUT) */
    if (ib->list_early) {
        /* NAMESPACE and LIST are out already: their answers come next (the LIST's tag
         * is the command's now, as after ib_relist) */
        ib->list_early = false;
        memcpy(ib->s.cmd.tag, ib->list_tag, sizeof ib->s.cmd.tag);
        ib->relist = IB_RELIST_NONE;
        ib->state = ib->ns_tag[0] ? IMAP_IB_NAMESPACE : IMAP_IB_LIST;
        return 0;
    }
    if (ib->from_store || roles_from_store(ib))
        return ib_start_cycle(ib, IB_ALL_ROLES);
    return ib_relist(ib, IB_RELIST_NONE);
}

/* * NAMESPACE (("INBOX." ".")) NIL NIL: the first personal namespace's prefix. */
static void on_namespace(imap_inbox *ib, const imap_resp *r)
{
    const imap_node *personal = r->items;
    if (!personal || personal->type != IMAP_N_LIST || !personal->child ||
        personal->child->type != IMAP_N_LIST || !personal->child->child)
        return;
    const imap_node *prefix = personal->child->child;
    if ((prefix->type != IMAP_N_STRING && prefix->type != IMAP_N_ATOM) ||
        strlen(prefix->s) != prefix->len)
        return;
    free(ib->prefix);
    ib->prefix = xstrdup(prefix->s);
}

static void on_list(imap_inbox *ib, const imap_resp *r)
{
    const imap_resp_list *l = &r->list;
    if (!l->mailbox || strlen(l->mailbox) != l->mailbox_len ||
        (l->flags & (IMAP_MB_NOSELECT | IMAP_MB_NONEXISTENT)))
        return;
    /* without SPECIAL-USE there is no junk role: never guessed from a name */
    if ((l->flags & IMAP_MB_JUNK) && (ib->s.caps & IMAP_CAP_SPECIAL_USE) &&
        !ib->roles[IMAP_ROLE_JUNK].name && strcmp(l->mailbox, "INBOX") != 0) {
        if (strpbrk(l->mailbox, "\r\n")) {
            /* a literal can name it, no command of ours can carry it: said, not checked */
            static const char why[] = "the junk folder's name cannot be sent in an IMAP "
                                      "command: not checked";
            set_detail(ib, why, sizeof why - 1);
            return;
        }
        ib->roles[IMAP_ROLE_JUNK].name = xstrdup(l->mailbox);
    }
    if (!ib->roles[IMAP_ROLE_WARMUP].name && strcmp(l->mailbox, ib->warmup_wire) == 0)
        ib->roles[IMAP_ROLE_WARMUP].name = xstrdup(l->mailbox);
}

static int list_answered(imap_inbox *ib, const imap_resp *r)
{
    bool guessed = ib->list_guessed;
    ib->list_guessed = false;
    if (r->status != IMAP_STATUS_OK && guessed && !imap_refusal_outcome(r, IMAP_OUT_NONE)) {
        /* a LIST sent on an earlier login's capabilities, refused: as this login's allow */
        return ib_relist(ib, IB_RELIST_NONE);
    }
    if (r->status != IMAP_STATUS_OK) {
        int out = imap_refusal_outcome(r, IMAP_OUT_PROTOCOL);
        return ib_finish(ib, out, r->text, r->text_len, true);
    }
    int why = ib->relist;
    ib->relist = IB_RELIST_NONE;
    if (why == IB_RELIST_RESUME)
        return ib_next(ib); /* the action that needed the warmup folder's name */
    return ib_start_cycle(ib, IB_ALL_ROLES);
}

/* ---- responses ---- */

static int on_tagged(imap_inbox *ib, const imap_resp *r)
{
    bool ok = r->status == IMAP_STATUS_OK;
    bool selecting = ib->state == IMAP_IB_SELECT || ib->state == IMAP_IB_ACT_SELECT ||
                     ib->state == IMAP_IB_IDLE_SELECT;
    if (selecting && !ok) {
        free(ib->selected); /* a failed SELECT leaves no folder selected */
        ib->selected = NULL;
    }
    switch (ib->state) {
    case IMAP_IB_NAMESPACE:
        /* a refused NAMESPACE leaves the prefix empty */
        if (!ib->ns_tag[0])
            return list_cmd(ib);
        ib->ns_tag[0] = '\0';
        set_warmup_wire(ib);
        ib->state = IMAP_IB_LIST; /* LIST went out behind it */
        return 0;
    case IMAP_IB_LIST:
        return list_answered(ib, r);
    case IMAP_IB_SELECT:
        if (!ok) {
            int out = imap_refusal_outcome(r, IMAP_OUT_NONE);
            if (out)
                return ib_finish(ib, out, r->text, r->text_len, true);
            if (ib->from_store) /* a stored name that is gone: LIST, then check again */
                return ib_relist(ib, IB_RELIST_CYCLE);
            ib->check_role++; /* the folder went away since LIST */
            return ib_next(ib);
        }
        return check_selected(ib);
    case IMAP_IB_FETCH:
        return fetch_answered(ib, r);
    case IMAP_IB_IDLE_SELECT:
        if (!ok) {
            int out = imap_refusal_outcome(r, IMAP_OUT_NONE);
            return ib_finish(ib, out ? out : IMAP_OUT_PROTOCOL, r->text, r->text_len, true);
        }
        if (ib->roles[IMAP_ROLE_INBOX].known && ib->sel_uidnext &&
            ib->sel_uidvalidity == ib->roles[IMAP_ROLE_INBOX].uidvalidity &&
            ib->sel_uidnext - 1 > ib->roles[IMAP_ROLE_INBOX].last_uid)
            ib->idle_new_mail = true; /* mail came after INBOX's check: IDLE wakes at once */
        return ib_send(ib, imap_cmd_idle(&ib->s.gen, &ib->s.cmd), IMAP_IB_IDLE_START);
    case IMAP_IB_IDLE_START:
    case IMAP_IB_IDLING:
    case IMAP_IB_IDLE_DONE:
        return ib_idle_answered(ib, r);
    default:
        if (ib->state >= IMAP_IB_ACT_CREATE && ib->state <= IMAP_IB_ACT_CONFIRM)
            return ib_act_tagged(ib, r);
        return ib_protocol_error(ib, "tagged answer in a state that sent no command");
    }
}

static int on_untagged(imap_inbox *ib, const imap_resp *r)
{
    if (r->status == IMAP_STATUS_BYE) {
        buf_reset(&ib->s.out);
        return ib_finish(ib, imap_refusal_outcome(r, IMAP_OUT_UNAVAILABLE), r->text, r->text_len,
                         false);
    }
    if (r->data == IMAP_DATA_CAPABILITY)
        ib->s.caps = ib->s.gen.caps = r->caps;
    bool selecting = ib->state == IMAP_IB_SELECT || ib->state == IMAP_IB_ACT_SELECT ||
                     ib->state == IMAP_IB_IDLE_SELECT;
    if (selecting && r->code.code == IMAP_CODE_UIDVALIDITY)
        ib->sel_uidvalidity = r->code.number;
    if (selecting && r->code.code == IMAP_CODE_UIDNEXT)
        ib->sel_uidnext = r->code.number;
    if (selecting && r->data == IMAP_DATA_EXISTS) {
        ib->sel_exists = r->number;
        ib->sel_have_exists = true;
    }
    /* new mail in INBOX outside its SELECT: IDLE will start with a wake */
    if (!selecting && r->data == IMAP_DATA_EXISTS && ib->selected &&
        strcmp(ib->selected, "INBOX") == 0 && ib->state < IMAP_IB_IDLE_START)
        ib->idle_new_mail = true;
    switch (ib->state) {
    case IMAP_IB_NAMESPACE:
        if (r->data == IMAP_DATA_NAMESPACE)
            on_namespace(ib, r);
        return 0;
    case IMAP_IB_LIST:
        if (r->data == IMAP_DATA_LIST)
            on_list(ib, r);
        else if (r->data == IMAP_DATA_STATUS && ib->list_status)
            ib_status_listed(ib, r);
        return 0;
    case IMAP_IB_STATUS:
        ib_status_untagged(ib, r);
        return 0;
    case IMAP_IB_FETCH:
        if (r->data == IMAP_DATA_FETCH)
            on_fetch(ib, r);
        return 0;
    case IMAP_IB_IDLE_START:
    case IMAP_IB_IDLING:
    case IMAP_IB_IDLE_DONE:
        if (r->data == IMAP_DATA_EXISTS || r->data == IMAP_DATA_RECENT) {
            bool first = !ib->idle_new_mail; /* EXISTS and RECENT come together: one wake */
            ib->idle_new_mail = true;
            if (ib->state == IMAP_IB_IDLING && first) {
                imap_inbox_event ev = {
                    .type = IMAP_INBOX_EV_WAKE, .folder = "INBOX", .role = IMAP_ROLE_INBOX};
                ib_emit(ib, &ev);
            }
        }
        return 0;
    default:
        if (ib->state >= IMAP_IB_ACT_CREATE && ib->state <= IMAP_IB_ACT_CONFIRM)
            ib_act_untagged(ib, r);
        return 0;
    }
}

static int on_resp(imap_inbox *ib, const imap_resp *r)
{
    if (r->code.code == IMAP_CODE_ALERT)
        ib_set_text(ib->alert, sizeof ib->alert, r->text, r->text_len);
    if (r->kind == IMAP_RESP_CONTINUE)
        return ib_on_continue(ib);
    if (r->kind == IMAP_RESP_TAGGED) {
        if (ib->s.cap_tag[0] && strcmp(r->tag, ib->s.cap_tag) == 0) {
            ib->s.cap_tag[0] = '\0'; /* a pipelined CAPABILITY (its list came untagged) */
            return 0;
        }
        if (ib->state == IMAP_IB_STATUS)
            return ib_status_tagged(ib, r);
        const char *tag =
            ib->state == IMAP_IB_NAMESPACE && ib->ns_tag[0] ? ib->ns_tag : ib->s.cmd.tag;
        if (strcmp(r->tag, tag) != 0)
            return ib_protocol_error(ib, "tagged answer for a command never sent");
        if (r->caps)
            ib->s.caps = ib->s.gen.caps = r->caps;
        return on_tagged(ib, r);
    }
    return on_untagged(ib, r);
}

/* The login is over: the session's outcome (and detail) becomes the inbox's. */
static int login_over(imap_inbox *ib, int ev)
{
    if (!ib->outcome) {
        ib->outcome = ib->s.outcome ? ib->s.outcome : IMAP_OUT_UNAVAILABLE;
        set_detail(ib, ib->s.detail, strlen(ib->s.detail));
    }
    ib->state = IMAP_IB_DONE;
    return (ev & IMAP_EV_OUTPUT) | IMAP_EV_DONE;
}

int imap_inbox_feed(imap_inbox *ib, const char *data, size_t n, int64_t now_ms)
{
    ib->now_ms = now_ms;
    int ev = 0;
    size_t off = 0;
    while (off < n && ib->state != IMAP_IB_DONE) {
        if (ib->state == IMAP_IB_LOGIN) {
            size_t used = 0;
            int sev = imap_session_feed_to_ready(&ib->s, data + off, n - off, &used);
            off += used;
            ev |= sev & (IMAP_EV_OUTPUT | IMAP_EV_STARTTLS);
            if (ib->s.state == IMAP_S_DONE)
                return login_over(ib, ev);
            if (ib->s.state == IMAP_S_AUTH && !ib->login_piped) {
                ib->login_piped = true; /* the LOGIN just went out */
                if (ib->pipeline && ib->s.auth_mech < 0 && !ib->s.cmd_waiting && !ib->stop_asked) {
                    if (roles_from_store(ib))
                        ib_status_behind_login(ib, IB_ALL_ROLES);
                    else if (ib->caps_hint)
                        list_behind_login(ib);
                }
            }
            if (ib->s.state == IMAP_S_READY) {
                ev |= on_ready(ib);
                continue;
            }
            break; /* all taken, or TLS first (the rest of a STARTTLS answer is dropped) */
        }
        size_t used = 0;
        const imap_resp *r = NULL;
        int rc = imap_resp_feed(&ib->s.parser, data + off, n - off, &used, &r);
        off += used;
        if (rc == IMAP_RESP_ERROR) {
            ev |= ib_protocol_error(ib, ib->s.parser.error);
            break;
        }
        if (rc == IMAP_RESP_NEED_MORE)
            break;
        ev |= on_resp(ib, r);
        imap_resp_release(&ib->s.parser);
    }
    if (ib->state == IMAP_IB_DONE)
        ev = (ev & IMAP_EV_OUTPUT) | IMAP_EV_DONE;
    return ev;
}

int imap_inbox_tls_ready(imap_inbox *ib, int64_t now_ms)
{
    ib->now_ms = now_ms;
    if (ib->state != IMAP_IB_LOGIN)
        return ib_protocol_error(ib, "TLS ready outside STARTTLS");
    int ev = imap_session_tls_ready(&ib->s);
    if (ib->s.state == IMAP_S_DONE)
        return login_over(ib, ev);
    return ev;
}

int imap_inbox_add_action(imap_inbox *ib, const imap_inbox_action *a)
{
    return ib_act_add(ib, a);
}

void imap_inbox_eof(imap_inbox *ib)
{
    if (ib->state == IMAP_IB_DONE)
        return;
    if (ib->state == IMAP_IB_LOGIN) {
        imap_session_eof(&ib->s);
        login_over(ib, 0);
        return;
    }
    const char *why = "connection closed by the server";
    ib_finish(ib, IMAP_OUT_UNAVAILABLE, why, strlen(why), false);
}
