/* `kiln-agent run` with a stand-in inbox engine behind inbox_feed.h, for
 * agent_inbox_lease.sh: the lease loop's inbox half driven end to end without IMAP.
 * For every inbox it is told to watch, its thread emits what a first visit would (session
 * ok, a found message and the folder state per folder, one outcome per action due) and
 * then, to prove the loop takes one outcome per action, the first action's outcome a
 * second time. Each call it gets and each emit's answer is a line in $FAKE_ENGINE_LOG:
 *   watch <mailbox> actions=<ids,...> | unwatch <mailbox> | stop | emit <type> <mailbox>
 *   <action> -> <0|-1>
 * Configuration as kiln-agent run (KILN_* in the environment). */
#include "inbox_feed.h"
#include "run.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORK 256
#define MAX_ACT 16

struct work {
    int64_t mailbox_id;
    size_t nfolders;
    char folders[4][64];
    int roles[4];
    uint32_t uidvalidity[4], last_uid[4];
    size_t nactions;
    int64_t action_ids[MAX_ACT];
    int kinds[MAX_ACT];
};

struct fake {
    feed_emit_fn emit;
    void *emit_arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct work q[MAX_WORK];
    size_t head, tail;
    bool stop, finished;
    FILE *log;
};

static void logf_line(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_line(struct fake *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&f->mu);
    vfprintf(f->log, fmt, ap);
    fputc('\n', f->log);
    fflush(f->log);
    pthread_mutex_unlock(&f->mu);
    va_end(ap);
}

static void emit(struct fake *f, const feed_event *ev)
{
    static const char *const types[] = {"found", "action", "folder_state", "session"};
    int rc = f->emit(f->emit_arg, ev);
    logf_line(f, "emit %s %lld %lld -> %d", types[ev->type], (long long)ev->mailbox_id,
              (long long)ev->action_id, rc);
}

static void visit(struct fake *f, const struct work *w)
{
    static const char *const flags[] = {"\\Seen"};
    feed_event s = {.type = FEED_EV_SESSION, .mailbox_id = w->mailbox_id, .status = FEED_SES_OK};
    emit(f, &s);
    for (size_t i = 0; i < w->nfolders; i++) {
        char msgid[96];
        snprintf(msgid, sizeof msgid, "<%lld.a0123456789abcdef0123456@acme.test>",
                 (long long)w->mailbox_id * 1000 + (long long)i);
        feed_event found = {.type = FEED_EV_FOUND,
                            .mailbox_id = w->mailbox_id,
                            .folder = w->folders[i],
                            .role = w->roles[i],
                            .uidvalidity = w->uidvalidity[i],
                            .uid = w->last_uid[i] + 1,
                            .message_id = msgid,
                            .flags = flags,
                            .nflags = 1,
                            .authentication_results = "mx.test; spf=pass",
                            .internal_date = "2026-12-03T06:00:00Z"};
        emit(f, &found);
        feed_event st = {.type = FEED_EV_FOLDER_STATE,
                         .mailbox_id = w->mailbox_id,
                         .folder = w->folders[i],
                         .role = w->roles[i],
                         .uidvalidity = w->uidvalidity[i],
                         .last_uid = w->last_uid[i] + 1};
        emit(f, &st);
    }
    for (size_t i = 0; i < w->nactions; i++) {
        bool move = w->kinds[i] == FEED_ACT_RESCUE || w->kinds[i] == FEED_ACT_FILE;
        feed_event a = {.type = FEED_EV_ACTION,
                        .mailbox_id = w->mailbox_id,
                        .action_id = w->action_ids[i],
                        .status = FEED_AST_DONE,
                        .folder = move ? (w->kinds[i] == FEED_ACT_RESCUE ? "INBOX" : "INBOX.Warmup")
                                       : NULL,
                        .uidvalidity = move ? 7 : 0,
                        .uid = move ? 100 + (uint32_t)i : 0};
        emit(f, &a);
    }
    if (w->nactions) { /* a second outcome of one action: the loop must refuse it */
        feed_event again = {.type = FEED_EV_ACTION,
                            .mailbox_id = w->mailbox_id,
                            .action_id = w->action_ids[0],
                            .status = FEED_AST_FAILED,
                            .detail = "second outcome"};
        emit(f, &again);
    }
}

static void *run(void *arg)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (f->head == f->tail && !f->stop)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->head == f->tail)
            break;
        struct work w = f->q[f->head++ % MAX_WORK];
        pthread_mutex_unlock(&f->mu);
        visit(f, &w);
        pthread_mutex_lock(&f->mu);
    }
    f->finished = true;
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static void *start(feed_emit_fn fn, void *arg, char *err, size_t errlen)
{
    const char *path = getenv("FAKE_ENGINE_LOG");
    struct fake *f = calloc(1, sizeof *f);
    f->log = fopen(path ? path : "/dev/null", "a");
    if (!f->log) {
        snprintf(err, errlen, "cannot open FAKE_ENGINE_LOG");
        free(f);
        return NULL;
    }
    f->emit = fn;
    f->emit_arg = arg;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    pthread_create(&f->thread, NULL, run, f);
    return f;
}

static void watch(void *engine, const feed_inbox *in)
{
    struct fake *f = engine;
    struct work w;
    memset(&w, 0, sizeof w);
    w.mailbox_id = in->mailbox_id;
    char ids[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < in->nfolders && i < 4; i++, w.nfolders++) {
        snprintf(w.folders[i], sizeof w.folders[i], "%s", in->folders[i].name);
        w.roles[i] = in->folders[i].role;
        w.uidvalidity[i] = in->folders[i].uidvalidity;
        w.last_uid[i] = in->folders[i].last_uid;
    }
    for (size_t i = 0; i < in->nactions && i < MAX_ACT; i++, w.nactions++) {
        w.action_ids[i] = in->actions[i].id;
        w.kinds[i] = in->actions[i].kind;
        used += (size_t)snprintf(ids + used, sizeof ids - used, "%s%lld", i ? "," : "",
                                 (long long)in->actions[i].id);
    }
    logf_line(f, "watch %lld actions=%s password=%s", (long long)in->mailbox_id, ids,
              in->password ? "set" : "none");
    pthread_mutex_lock(&f->mu);
    if (f->tail - f->head < MAX_WORK)
        f->q[f->tail++ % MAX_WORK] = w;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void unwatch(void *engine, int64_t mailbox_id)
{
    logf_line(engine, "unwatch %lld", (long long)mailbox_id);
}

static void stop(void *engine, int64_t drain_ms)
{
    struct fake *f = engine;
    (void)drain_ms;
    logf_line(f, "stop");
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static bool finished(void *engine)
{
    struct fake *f = engine;
    pthread_mutex_lock(&f->mu);
    bool done = f->finished;
    pthread_mutex_unlock(&f->mu);
    return done;
}

static void destroy(void *engine)
{
    struct fake *f = engine;
    stop(f, 0);
    pthread_join(f->thread, NULL);
    fclose(f->log);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

static void metrics(void *engine, buf *out)
{
    (void)engine;
    buf_puts(out, "# HELP kiln_agent_fake_inbox_engine 1\n# TYPE kiln_agent_fake_inbox_engine "
                  "gauge\nkiln_agent_fake_inbox_engine 1\n");
}

static const inbox_feed_engine fake_engine = {start,    watch,   unwatch, stop,
                                              finished, destroy, metrics};

int main(void)
{
    return run_agent_with("/nonexistent/kiln-agent.conf", false,
                          getenv("FAKE_ENGINE_NONE") ? NULL : &fake_engine);
}
