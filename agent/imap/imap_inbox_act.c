/* The inbox session's actions (see imap_inbox.h): each addressed by (folder,
 * uidvalidity, uid), never by sequence number, done in the given order when due.
 *   rescue / file: UID MOVE (the new UID from COPYUID), else UID COPY + UID STORE
 *                  +FLAGS.SILENT (\Deleted) + UID EXPUNGE uid under UIDPLUS, else refused;
 *                  a message already in the target (found there by its Message-ID: a
 *                  crash between a move and its report) is reported done, not moved twice
 *   mark:          UID STORE uid +FLAGS (flags), then UID FETCH uid (FLAGS) confirms
 *   prune:         UID STORE \Deleted + UID EXPUNGE uid (UIDPLUS), never a plain EXPUNGE
 * A later action on a message this session moved follows it to its new place. */
#include "imap_inbox_internal.h"

#include "xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const kind_names[IMAP_ACT_KIND_COUNT] = {"rescue", "mark", "file", "prune"};
static const char *const status_names[IMAP_ACT_STATUS_COUNT] = {"done", "gone", "stale", "refused",
                                                                "failed"};
static const char *const deleted_flag[] = {"\\Deleted"};

const char *imap_action_kind_name(int kind)
{
    return kind >= 0 && kind < IMAP_ACT_KIND_COUNT ? kind_names[kind] : "invalid";
}

const char *imap_action_status_name(int status)
{
    return status >= 0 && status < IMAP_ACT_STATUS_COUNT ? status_names[status] : "invalid";
}

/* ---- the list ---- */

int ib_act_add(imap_inbox *ib, const imap_inbox_action *a)
{
    if (a->kind < 0 || a->kind >= IMAP_ACT_KIND_COUNT || !a->folder || !*a->folder || !a->uid ||
        !a->uidvalidity || a->nflags > IMAP_INBOX_FLAGS_MAX ||
        (a->kind == IMAP_ACT_MARK && !a->nflags))
        return -EINVAL;
    for (size_t i = 0; i < a->nflags; i++)
        if (!a->flags[i] || !*a->flags[i])
            return -EINVAL;
    for (size_t i = 0; i < ib->nacts; i++) {
        if (ib->acts[i].a.id != a->id)
            continue;
        /* Known: only an earlier due time is taken (the control plane moved it). */
        if (ib->acts[i].finished || a->not_before_ms >= ib->acts[i].a.not_before_ms)
            return -EEXIST;
        ib->acts[i].a.not_before_ms = a->not_before_ms;
        return 0;
    }
    if (ib->nacts == ib->cap_acts) {
        ib->cap_acts = ib->cap_acts ? 2 * ib->cap_acts : 8;
        ib->acts = xrealloc(ib->acts, ib->cap_acts * sizeof *ib->acts);
        for (size_t i = 0; i < ib->nacts; i++) /* a.flags points into the moved array */
            ib->acts[i].a.flags = (const char *const *)ib->acts[i].flags;
    }
    ib_action *x = &ib->acts[ib->nacts++];
    memset(x, 0, sizeof *x);
    x->a = *a;
    x->folder = xstrdup(a->folder);
    for (size_t i = 0; i < a->nflags; i++)
        x->flags[i] = xstrdup(a->flags[i]);
    x->message_id = a->message_id ? xstrdup(a->message_id) : NULL;
    x->a.folder = x->folder;
    x->a.flags = (const char *const *)x->flags;
    x->a.message_id = x->message_id;
    return 0;
}

void ib_act_free_all(imap_inbox *ib)
{
    for (size_t i = 0; i < ib->nacts; i++) {
        free(ib->acts[i].folder);
        for (size_t k = 0; k < ib->acts[i].a.nflags; k++)
            free(ib->acts[i].flags[k]);
        free(ib->acts[i].message_id);
    }
    free(ib->acts);
}

bool ib_act_due(const imap_inbox *ib, int64_t now_ms, int64_t *next_ms)
{
    bool due = false;
    for (size_t i = 0; i < ib->nacts; i++) {
        const ib_action *x = &ib->acts[i];
        if (x->finished)
            continue;
        if (x->a.not_before_ms <= now_ms)
            due = true;
        if (x->a.not_before_ms < *next_ms)
            *next_ms = x->a.not_before_ms;
    }
    return due;
}

static int target_role(int kind)
{
    return kind == IMAP_ACT_RESCUE ? IMAP_ROLE_INBOX
           : kind == IMAP_ACT_FILE ? IMAP_ROLE_WARMUP
                                   : -1;
}

bool ib_move_target_pending(const imap_inbox *ib, int role)
{
    for (size_t i = 0; i < ib->nacts; i++)
        if (!ib->acts[i].finished && ib->acts[i].message_id &&
            target_role(ib->acts[i].a.kind) == role)
            return true;
    return false;
}

/* ---- outcomes ---- */

/* Emits the outcome of the current action and marks it finished. */
static void report(imap_inbox *ib, int status, const char *detail)
{
    ib_action *x = &ib->acts[ib->cur];
    const imap_inbox_action *a = &x->a;
    const char *flags[IMAP_INBOX_EV_FLAGS_MAX];
    char text[200];
    ib_set_text(text, sizeof text, detail, detail ? strlen(detail) : 0);
    imap_inbox_event ev = {.type = IMAP_INBOX_EV_ACTION,
                           .action_id = a->id,
                           .status = status,
                           .detail = text,
                           .role = IMAP_ROLE_OTHER};
    if (status == IMAP_ACT_DONE && ib->target_role >= 0) {
        ib_folder *t = &ib->roles[ib->target_role];
        ev.folder = ib->target;
        ev.role = ib->target_role;
        ev.uidvalidity = ib->new_uidvalidity ? ib->new_uidvalidity : t->uidvalidity;
        ev.uid = ib->new_uid;
        if (ib->new_uid && ib->nmoved < IB_MOVED_MAX && strcmp(ib->target, a->folder) != 0) {
            ib->moved = xrealloc(ib->moved, (ib->nmoved + 1) * sizeof *ib->moved);
            ib->moved[ib->nmoved++] = (ib_moved){.from = xstrdup(a->folder),
                                                 .to = xstrdup(ib->target),
                                                 .from_uidvalidity = a->uidvalidity,
                                                 .from_uid = a->uid,
                                                 .to_uidvalidity = ev.uidvalidity,
                                                 .to_uid = ib->new_uid};
        }
    } else if (status == IMAP_ACT_DONE && a->kind == IMAP_ACT_MARK) {
        ev.folder = a->folder;
        for (int r = 0; r < IMAP_ROLE_OTHER; r++)
            if (ib->roles[r].name && strcmp(ib->roles[r].name, a->folder) == 0)
                ev.role = r;
        ev.uidvalidity = a->uidvalidity;
        ev.uid = a->uid;
        ev.flags = flags;
        for (size_t off = 0; off < ib->confirmed.len && ev.nflags < IMAP_INBOX_EV_FLAGS_MAX;) {
            flags[ev.nflags++] = ib->confirmed.data + off;
            off += strlen(ib->confirmed.data + off) + 1;
        }
    }
    x->finished = true;
    ib_emit(ib, &ev);
}

static int report_next(imap_inbox *ib, int status, const char *detail)
{
    report(ib, status, detail);
    return ib_next(ib);
}

/* A refusal: throttling ends the session; anything else fails this action only. */
static int refused(imap_inbox *ib, const imap_resp *r, const char *what)
{
    int out = imap_refusal_outcome(r, IMAP_OUT_NONE);
    if (out)
        return ib_finish(ib, out, r->text, r->text_len, true);
    char text[200];
    char server[120];
    ib_set_text(server, sizeof server, r->text, r->text_len);
    snprintf(text, sizeof text, "%s: %s", what, server);
    return report_next(ib, IMAP_ACT_FAILED, text);
}

/* ---- commands ---- */

static void uid_set(char *set, size_t n, uint32_t uid)
{
    snprintf(set, n, "%u", (unsigned)uid);
}

/* A UID EXPUNGE, or a UID FETCH (UID FLAGS), of the current action's message. */
static int uid_cmd(imap_inbox *ib, int state)
{
    char set[16];
    uid_set(set, sizeof set, ib->acts[ib->cur].a.uid);
    int built = state == IMAP_IB_ACT_EXPUNGE
                    ? imap_cmd_uid_expunge(&ib->s.gen, &ib->s.cmd, set)
                    : imap_cmd_uid_fetch(&ib->s.gen, &ib->s.cmd, set, IMAP_FETCH_FLAGS, NULL, 0);
    return ib_send(ib, built, state);
}

/* The folder is selected with the action's UIDVALIDITY checked: the first command. */
static int act_go(imap_inbox *ib)
{
    const imap_inbox_action *a = &ib->acts[ib->cur].a;
    if (ib->sel_uidvalidity != a->uidvalidity) {
        char text[64];
        snprintf(text, sizeof text, "UIDVALIDITY is now %u", (unsigned)ib->sel_uidvalidity);
        report(ib, IMAP_ACT_STALE, text);
        return 0;
    }
    char set[16];
    uid_set(set, sizeof set, a->uid);
    imap_cmdgen *g = &ib->s.gen;
    imap_cmd *c = &ib->s.cmd;
    size_t tlen = ib->target ? strlen(ib->target) : 0;
    int ev;
    switch (ib->mode) {
    case IB_MODE_MOVE:
        if (!(ib->s.caps & IMAP_CAP_UIDPLUS) && !ib->by_msn) {
            /* no COPYUID will come: learn the message's sequence number first */
            ib->premove = ib->by_msn = true;
            return uid_cmd(ib, IMAP_IB_ACT_CONFIRM);
        }
        ev = ib_send(ib, imap_cmd_uid_move(g, c, set, ib->target, tlen), IMAP_IB_ACT_MOVE);
        break;
    case IB_MODE_COPY:
        ev = ib_send(ib, imap_cmd_uid_copy(g, c, set, ib->target, tlen), IMAP_IB_ACT_COPY);
        break;
    case IB_MODE_MARK:
        ev = ib_send(ib, imap_cmd_uid_store(g, c, set, '+', false, a->flags, a->nflags),
                     IMAP_IB_ACT_STORE);
        break;
    default: /* PRUNE, CLEANUP */
        ev = ib_send(ib, imap_cmd_uid_store(g, c, set, '+', true, deleted_flag, 1),
                     IMAP_IB_ACT_DELETE);
    }
    if (ev < 0) {
        report(ib, IMAP_ACT_FAILED, "a flag or folder name IMAP cannot carry");
        return 0;
    }
    return ev;
}

static int act_select(imap_inbox *ib)
{
    const char *folder = ib->acts[ib->cur].a.folder;
    if (ib->selected && strcmp(ib->selected, folder) == 0)
        return act_go(ib);
    int ev = ib_select(ib, folder, IMAP_IB_ACT_SELECT);
    if (ev < 0) {
        report(ib, IMAP_ACT_FAILED, "a folder name IMAP cannot carry");
        return 0;
    }
    return ev;
}

/* Moves this session made: an action on a moved message follows it. */
static void follow_moves(imap_inbox *ib, ib_action *x)
{
    for (size_t hop = 0; hop < ib->nmoved; hop++) {
        const ib_moved *m = NULL;
        for (size_t i = 0; i < ib->nmoved && !m; i++)
            if (ib->moved[i].from_uid == x->a.uid &&
                ib->moved[i].from_uidvalidity == x->a.uidvalidity &&
                strcmp(ib->moved[i].from, x->folder) == 0)
                m = &ib->moved[i];
        if (!m)
            return;
        free(x->folder);
        x->folder = xstrdup(m->to);
        x->a.folder = x->folder;
        x->a.uidvalidity = m->to_uidvalidity;
        x->a.uid = m->to_uid;
    }
}

static const ib_found *found_in(const imap_inbox *ib, int role, const char *message_id)
{
    for (size_t i = 0; i < ib->nfound; i++)
        if (ib->found[i].role == role && ib->found[i].uidvalidity == ib->roles[role].uidvalidity &&
            strcmp(ib->found[i].message_id, message_id) == 0)
            return &ib->found[i];
    return NULL;
}

/* Starts the current action: its first command, or 0 when it was settled at once. */
static int act_start(imap_inbox *ib)
{
    ib_action *x = &ib->acts[ib->cur];
    follow_moves(ib, x);
    const imap_inbox_action *a = &x->a;
    unsigned caps = ib->s.caps;
    ib->new_uid = ib->new_uidvalidity = 0;
    ib->saw_expunge = ib->saw_fetch = ib->flags_ok = false;
    ib->premove = ib->by_msn = false;
    ib->act_msn = 0;
    buf_reset(&ib->confirmed);
    ib->target_role = target_role(a->kind);
    ib->target = ib->target_role >= 0 ? ib->roles[ib->target_role].name : NULL;
    if (!ib->target && ib->target_role == IMAP_ROLE_WARMUP && !ib->warmup_wire)
        return ib_relist(ib, IB_RELIST_RESUME); /* roles were stored: the prefix is unknown */
    if (a->kind == IMAP_ACT_MARK) {
        ib->mode = IB_MODE_MARK;
        return act_select(ib);
    }
    if (a->kind == IMAP_ACT_PRUNE) {
        if (!(caps & IMAP_CAP_UIDPLUS)) {
            report(ib, IMAP_ACT_REFUSED, "no UIDPLUS: no UID-exact delete");
            return 0;
        }
        ib->mode = IB_MODE_PRUNE;
        return act_select(ib);
    }
    if (ib->target && strcmp(ib->target, a->folder) == 0) {
        ib->new_uid = a->uid;
        ib->new_uidvalidity = a->uidvalidity;
        report(ib, IMAP_ACT_DONE, "already in the target folder");
        return 0;
    }
    const ib_found *f =
        ib->target && a->message_id ? found_in(ib, ib->target_role, a->message_id) : NULL;
    if (f) {
        /* moved before (a crash between the move and its report): not moved twice */
        ib->new_uid = f->uid;
        ib->new_uidvalidity = f->uidvalidity;
        if ((caps & IMAP_CAP_MOVE) || !(caps & IMAP_CAP_UIDPLUS)) {
            report(ib, IMAP_ACT_DONE, "found in the target by its Message-ID");
            return 0;
        }
        ib->mode = IB_MODE_CLEANUP; /* a COPY may have left the original */
        return act_select(ib);
    }
    if (!(caps & (IMAP_CAP_MOVE | IMAP_CAP_UIDPLUS))) {
        report(ib, IMAP_ACT_REFUSED, "neither MOVE nor UIDPLUS");
        return 0;
    }
    ib->mode = caps & IMAP_CAP_MOVE ? IB_MODE_MOVE : IB_MODE_COPY;
    if (!ib->target) {
        const char *w = ib->warmup_wire;
        int ev =
            ib_send(ib, imap_cmd_create(&ib->s.gen, &ib->s.cmd, w, strlen(w)), IMAP_IB_ACT_CREATE);
        if (ev < 0) { /* the server's namespace prefix made a name IMAP cannot carry */
            report(ib, IMAP_ACT_FAILED,
                   "the warmup folder's name cannot be sent in an IMAP "
                   "command");
            return 0;
        }
        return ev;
    }
    return act_select(ib);
}

int ib_act_next(imap_inbox *ib)
{
    for (size_t i = 0; i < ib->nacts; i++) {
        if (ib->acts[i].finished || ib->acts[i].a.not_before_ms > ib->now_ms)
            continue;
        ib->cur = i;
        int ev = act_start(ib);
        if (ev)
            return ev;
    }
    return 0;
}

/* ---- answers ---- */

static void take_copyuid(imap_inbox *ib, const imap_resp *r)
{
    if (r->code.code != IMAP_CODE_COPYUID || !r->code.src_uids || !r->code.dst_uids)
        return;
    uint32_t src[64], dst[64];
    long ns = imap_uidset_parse(r->code.src_uids, strlen(r->code.src_uids), src, 64);
    long nd = imap_uidset_parse(r->code.dst_uids, strlen(r->code.dst_uids), dst, 64);
    if (ns <= 0 || ns != nd)
        return;
    for (long i = 0; i < ns; i++)
        if (src[i] == ib->acts[ib->cur].a.uid) {
            ib->new_uid = dst[i];
            ib->new_uidvalidity = r->code.number;
        }
}

static bool has_flag(const char *flag, const imap_node *list)
{
    for (const imap_node *n = list ? list->child : NULL; n; n = n->next)
        if (n->len == strlen(flag) && strcasecmp(n->s, flag) == 0)
            return true;
    return false;
}

void ib_act_untagged(imap_inbox *ib, const imap_resp *r)
{
    if (ib->cur >= ib->nacts)
        return;
    const imap_inbox_action *a = &ib->acts[ib->cur].a;
    if (ib->premove && r->data == IMAP_DATA_FETCH && r->fetch.have_uid && r->fetch.uid == a->uid)
        ib->act_msn = r->number;
    if (r->data == IMAP_DATA_EXPUNGE) {
        if (!ib->by_msn) {
            ib->saw_expunge = true;
        } else if (ib->act_msn && r->number == ib->act_msn) {
            ib->saw_expunge = true; /* this message */
            ib->act_msn = 0;
        } else if (ib->act_msn && r->number < ib->act_msn) {
            ib->act_msn--; /* one before it went: its number moves down */
        }
    }
    if (ib->state == IMAP_IB_ACT_MOVE)
        take_copyuid(ib, r); /* Dovecot: an untagged OK before the EXPUNGEs */
    if (ib->state == IMAP_IB_ACT_CONFIRM && r->data == IMAP_DATA_FETCH && r->fetch.have_uid &&
        r->fetch.uid == a->uid && r->fetch.have_flags) {
        ib->saw_fetch = true;
        buf_reset(&ib->confirmed);
        const char *v[IMAP_INBOX_EV_FLAGS_MAX];
        size_t n = ib_node_strings(r->fetch.flags_list, v, IMAP_INBOX_EV_FLAGS_MAX);
        for (size_t i = 0; i < n; i++)
            buf_append(&ib->confirmed, v[i], strlen(v[i]) + 1);
        ib->flags_ok = true;
        for (size_t i = 0; i < a->nflags; i++)
            if (!has_flag(a->flags[i], r->fetch.flags_list))
                ib->flags_ok = false;
    }
}

static bool already_exists(const imap_resp *r)
{
    if (r->code.code == IMAP_CODE_OTHER && r->code.name &&
        strcasecmp(r->code.name, "ALREADYEXISTS") == 0)
        return true;
    for (size_t i = 0; i + 6 <= r->text_len; i++)
        if (strncasecmp(r->text + i, "exists", 6) == 0)
            return true;
    return false;
}

static int after_create(imap_inbox *ib)
{
    ib_folder *w = &ib->roles[IMAP_ROLE_WARMUP];
    w->name = xstrdup(ib->warmup_wire);
    ib->target = w->name;
    int ev = act_select(ib);
    return ev ? ev : ib_next(ib);
}

int ib_act_tagged(imap_inbox *ib, const imap_resp *r)
{
    bool ok = r->status == IMAP_STATUS_OK;
    /* COPYUID answers the MOVE or COPY only: one on another command's OK (a SELECT's)
     * says nothing about this message. */
    if (ok && (ib->state == IMAP_IB_ACT_MOVE || ib->state == IMAP_IB_ACT_COPY))
        take_copyuid(ib, r);
    switch (ib->state) {
    case IMAP_IB_ACT_CREATE:
        if (!ok && !already_exists(r))
            return refused(ib, r, "CREATE of the warmup folder refused");
        return after_create(ib);
    case IMAP_IB_ACT_SELECT:
        if (!ok) {
            if (imap_refusal_outcome(r, IMAP_OUT_NONE))
                return refused(ib, r, "");
            return report_next(ib, IMAP_ACT_GONE, "no such folder");
        }
        if (!ib->sel_uidvalidity)
            return ib_protocol_error(ib, "SELECT answered without UIDVALIDITY");
        {
            int ev = act_go(ib);
            return ev ? ev : ib_next(ib);
        }
    case IMAP_IB_ACT_MOVE:
        if (!ok)
            return refused(ib, r, "UID MOVE refused");
        if (ib->new_uid)
            return report_next(ib, IMAP_ACT_DONE, "");
        if (ib->saw_expunge)
            return report_next(ib, IMAP_ACT_DONE, "moved; the server gave no COPYUID");
        if (ib->by_msn && ib->act_msn)
            return report_next(ib, IMAP_ACT_FAILED,
                               "UID MOVE answered OK, but the message was not expunged");
        return report_next(ib, IMAP_ACT_GONE, "no message at that UID");
    case IMAP_IB_ACT_COPY:
        if (!ok)
            return refused(ib, r, "UID COPY refused");
        if (!ib->new_uid)
            return report_next(ib, IMAP_ACT_GONE, "no message at that UID");
        {
            char set[16];
            uid_set(set, sizeof set, ib->acts[ib->cur].a.uid);
            int built = imap_cmd_uid_store(&ib->s.gen, &ib->s.cmd, set, '+', true, deleted_flag, 1);
            return ib_send(ib, built, IMAP_IB_ACT_DELETE);
        }
    case IMAP_IB_ACT_DELETE:
        if (!ok && ib->mode == IB_MODE_PRUNE)
            return refused(ib, r, "UID STORE \\Deleted refused");
        if (!ok) /* the target holds the message: that is what counts */
            return report_next(ib, IMAP_ACT_DONE, "the original could not be deleted");
        ib->saw_expunge = false;
        return uid_cmd(ib, IMAP_IB_ACT_EXPUNGE);
    case IMAP_IB_ACT_EXPUNGE:
        if (ib->mode == IB_MODE_PRUNE) {
            if (!ok)
                return refused(ib, r, "UID EXPUNGE refused");
            return report_next(ib, ib->saw_expunge ? IMAP_ACT_DONE : IMAP_ACT_GONE,
                               ib->saw_expunge ? "" : "no message at that UID");
        }
        if (ib->mode == IB_MODE_CLEANUP)
            return report_next(ib, IMAP_ACT_DONE,
                               ok ? "found in the target by its Message-ID; the original deleted"
                                  : "found in the target by its Message-ID");
        return report_next(ib, IMAP_ACT_DONE, ok ? "" : "the original could not be expunged");
    case IMAP_IB_ACT_STORE:
        if (!ok)
            return refused(ib, r, "UID STORE refused");
        return uid_cmd(ib, IMAP_IB_ACT_CONFIRM);
    case IMAP_IB_ACT_CONFIRM:
        if (!ok)
            return refused(ib, r, "UID FETCH refused");
        if (ib->premove) {
            ib->premove = false;
            if (!ib->act_msn)
                return report_next(ib, IMAP_ACT_GONE, "no message at that UID");
            int ev = act_go(ib); /* by_msn: the MOVE itself now */
            return ev ? ev : ib_next(ib);
        }
        if (!ib->saw_fetch)
            return report_next(ib, IMAP_ACT_GONE, "no message at that UID");
        if (!ib->flags_ok)
            return report_next(ib, IMAP_ACT_FAILED, "the server did not keep the flags");
        return report_next(ib, IMAP_ACT_DONE, "");
    default:
        return ib_protocol_error(ib, "tagged answer in a state that sent no command");
    }
}
