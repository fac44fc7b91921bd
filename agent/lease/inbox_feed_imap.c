/* The inbox engine behind inbox_feed.h (see inbox_feed_imap.h). */
#include "inbox_feed_imap.h"

#include "clock.h"
#include "log.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

/* The seam's enums and the engine's are in the wire's order: a value passes as is. */
_Static_assert((int)FEED_POLL_COUNT == (int)INBOX_POLL_COUNT, "poll classes differ");
_Static_assert((int)FEED_ROLE_COUNT == (int)INBOX_ROLE_COUNT, "roles differ");
_Static_assert((int)FEED_ACT_COUNT == (int)INBOX_ACT_COUNT, "action kinds differ");
_Static_assert((int)FEED_AST_COUNT == (int)INBOX_AST_COUNT, "action statuses differ");
_Static_assert((int)FEED_SEC_TLS == (int)INBOX_SEC_TLS, "securities differ");
_Static_assert(FEED_ACTION_FLAGS_MAX == INBOX_ACTION_FLAGS_MAX, "action flags differ");

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

inbox_spec *inbox_spec_from_feed(const feed_inbox *in, int64_t now_ms)
{
    inbox_spec *s = xcalloc(1, sizeof *s);
    s->mailbox_id = in->mailbox_id;
    s->address = dup_or_null(in->address);
    s->host = xstrdup(in->host);
    s->port = in->port;
    s->security = in->security;
    s->username = xstrdup(in->username);
    s->password = dup_or_null(in->password);
    s->oauth_token = dup_or_null(in->oauth_token);
    s->ca_file = dup_or_null(in->ca_file);
    s->allow_plaintext_auth = in->allow_plaintext_auth;
    s->poll_class = in->poll_class;
    s->poll_interval_s = in->poll_interval_s;
    s->warmup_folder = dup_or_null(in->warmup_folder);
    s->folders = xcalloc(in->nfolders ? in->nfolders : 1, sizeof *s->folders);
    for (size_t i = 0; i < in->nfolders; i++) {
        const feed_folder *f = &in->folders[i];
        s->folders[i] = (inbox_folder){.name = xstrdup(f->name),
                                       .role = f->role,
                                       .uidvalidity = f->uidvalidity,
                                       .last_uid = f->last_uid};
    }
    s->nfolders = in->nfolders;
    s->actions = xcalloc(in->nactions ? in->nactions : 1, sizeof *s->actions);
    for (size_t i = 0; i < in->nactions; i++) {
        const feed_action *a = &in->actions[i];
        inbox_action *d = &s->actions[i];
        int64_t wait_ms = a->not_before_ms - now_ms;
        *d = (inbox_action){.id = a->id,
                            .kind = a->kind,
                            .folder = xstrdup(a->folder),
                            .uidvalidity = a->uidvalidity,
                            .uid = a->uid,
                            .target = a->target,
                            .message_id = dup_or_null(a->message_id),
                            .not_before_s = wait_ms > 0 ? (wait_ms + 999) / 1000 : 0};
        for (size_t k = 0; k < a->nflags && k < INBOX_ACTION_FLAGS_MAX; k++)
            d->flags[d->nflags++] = xstrdup(a->flags[k]);
    }
    s->nactions = in->nactions;
    return s;
}

void feed_event_from_inbox(const inbox_event *ev, feed_event *out)
{
    static const int types[] = {[INBOX_EV_FOUND] = FEED_EV_FOUND,
                                [INBOX_EV_ACTION] = FEED_EV_ACTION,
                                [INBOX_EV_FOLDER_STATE] = FEED_EV_FOLDER_STATE,
                                [INBOX_EV_SESSION] = FEED_EV_SESSION};
    *out = (feed_event){.type = types[ev->type],
                        .mailbox_id = ev->mailbox_id,
                        .folder = ev->folder,
                        .role = ev->role,
                        .uidvalidity = ev->uidvalidity,
                        .uid = ev->uid,
                        .last_uid = ev->last_uid,
                        .message_id = ev->message_id,
                        .flags = ev->flags,
                        .nflags = ev->nflags,
                        .labels = ev->labels,
                        .nlabels = ev->nlabels,
                        .authentication_results = ev->authentication_results,
                        .internal_date = ev->internal_date,
                        .action_id = ev->action_id,
                        .status = ev->type == INBOX_EV_ACTION ? ev->action_status : ev->status,
                        .detail = ev->detail};
}

/* ---- the table ---- */

struct feed_imap {
    inbox_engine *e;
    feed_emit_fn emit;
    void *emit_arg;
};

/* On the engine's thread. */
static void on_event(void *arg, const inbox_event *ev)
{
    struct feed_imap *f = arg;
    feed_event fe;
    feed_event_from_inbox(ev, &fe);
    if (f->emit(f->emit_arg, &fe) < 0)
        log_debug("inbox %lld: an event of type %d was refused by the lease loop",
                  (long long)ev->mailbox_id, ev->type);
}

static void *fi_start(feed_emit_fn emit, void *emit_arg, char *err, size_t errlen)
{
    inbox_engine_config cfg;
    inbox_engine_config_defaults(&cfg);
    if (inbox_engine_config_from_env(&cfg, err, errlen) < 0)
        return NULL;
    struct feed_imap *f = xcalloc(1, sizeof *f);
    f->emit = emit;
    f->emit_arg = emit_arg;
    f->e = inbox_engine_create(&cfg, on_event, f, err, errlen);
    if (!f->e) {
        free(f);
        return NULL;
    }
    return f;
}

static void fi_watch(void *engine, const feed_inbox *inbox)
{
    struct feed_imap *f = engine;
    inbox_engine_add(f->e, inbox_spec_from_feed(inbox, clock_mono_ms()));
}

static void fi_unwatch(void *engine, int64_t mailbox_id)
{
    struct feed_imap *f = engine;
    inbox_engine_drop(f->e, mailbox_id);
}

static void fi_stop(void *engine, int64_t drain_ms)
{
    struct feed_imap *f = engine;
    inbox_engine_stop(f->e, drain_ms);
}

static bool fi_finished(void *engine)
{
    struct feed_imap *f = engine;
    return inbox_engine_finished(f->e);
}

static void fi_destroy(void *engine)
{
    struct feed_imap *f = engine;
    if (!f)
        return;
    inbox_engine_destroy(f->e); /* joins: no event after this */
    free(f);
}

static void fi_metrics(void *engine, buf *out)
{
    struct feed_imap *f = engine;
    inbox_engine_metrics(f->e, out);
}

static const inbox_feed_engine feed_imap = {
    .start = fi_start,
    .watch = fi_watch,
    .unwatch = fi_unwatch,
    .stop = fi_stop,
    .finished = fi_finished,
    .destroy = fi_destroy,
    .metrics = fi_metrics,
};

const inbox_feed_engine *inbox_feed_imap_engine(void)
{
    return &feed_imap;
}
