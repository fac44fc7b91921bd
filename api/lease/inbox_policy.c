/* The engagement policy behind the inbox side (see inbox_policy.h). */
#include "inbox_policy.h"

#include "lease_reply.h"

#include <string.h>

const char *inbox_role_name(enum inbox_role r)
{
    static const char *const names[] = {"inbox", "junk", "warmup", "other"};
    return names[r];
}

const char *inbox_action_kind_name(enum inbox_action_kind k)
{
    static const char *const names[] = {"rescue", "mark", "file", "prune"};
    return names[k];
}

engage_folder inbox_policy_folder(enum inbox_role r)
{
    return r == ROLE_INBOX  ? ENGAGE_FOLDER_INBOX
           : r == ROLE_JUNK ? ENGAGE_FOLDER_JUNK
                            : ENGAGE_FOLDER_OTHER;
}

int inbox_policy_rows(const inbox_found *f, const engage_out *o, inbox_action_spec *out)
{
    int n = 0;
    for (size_t i = 0; i < o->nactions && n < INBOX_POLICY_MAX_ACTIONS; i++) {
        const engage_action *x = &o->actions[i];
        if (f->role == ROLE_WARMUP && x->kind != ENGAGE_PRUNE)
            continue;
        inbox_action_spec s = {.target = -1, .not_before_s = x->at_s};
        switch (x->kind) {
        case ENGAGE_RESCUE:
            s.kind = ACTION_RESCUE;
            s.target = ROLE_INBOX;
            break;
        case ENGAGE_MARK: {
            unsigned want = x->flags & ~((f->seen ? ENGAGE_FLAG_SEEN : 0u) |
                                         (f->flagged ? ENGAGE_FLAG_FLAGGED : 0u));
            const char *names[2];
            size_t nf = engage_flag_names(want, names);
            if (nf == 0)
                continue;
            s.kind = ACTION_MARK;
            for (size_t k = 0; k < nf; k++)
                s.flags[s.nflags++] = names[k];
            break;
        }
        case ENGAGE_FILE:
            s.kind = ACTION_FILE;
            s.target = ROLE_WARMUP;
            break;
        case ENGAGE_PRUNE:
            s.kind = ACTION_PRUNE;
            break;
        default:
            continue;
        }
        out[n++] = s;
    }
    return n;
}

bool inbox_actions_for_found(db *d, arena *a, const inbox_found *found, int n,
                             inbox_policy_out *out)
{
    memset(out, 0, sizeof *out);
    size_t m = n > 0 ? (size_t)n : 0;
    out->nactions = arena_calloc(a, (m + 1) * sizeof *out->nactions);
    out->actions = arena_calloc(a, (m + 1) * sizeof *out->actions);
    if (n <= 0)
        return true;
    int64_t *parents = arena_alloc(a, m * sizeof *parents);
    int64_t *dues = arena_alloc(a, m * sizeof *dues);
    size_t nreplies = 0;
    engage_params fallback;
    engage_params_default(&fallback);
    const engage_tz utc = {0};
    for (size_t k = 0; k < m; k++) {
        const inbox_found *f = &found[k];
        engage_found ef = {inbox_policy_folder(f->role), f->now_s, f->in ? &f->in->tz : &utc,
                           f->reply_depth};
        engage_rng r;
        engage_rng_seed(&r, (uint64_t)f->send_id);
        engage_out o;
        if (engage_plan_for_found(f->in ? &f->in->params : &fallback, &ef, &r, &o) != 0) {
            /* A stored plan out of range (the plans handler and 012's checks prevent
             * it): the defaults, the same way as a find without inputs. */
            engage_rng_seed(&r, (uint64_t)f->send_id);
            ef.tz = &utc;
            if (engage_plan_for_found(&fallback, &ef, &r, &o) != 0)
                continue;
        }
        out->nactions[k] = inbox_policy_rows(f, &o, out->actions[k]);
        if (o.reply && f->role != ROLE_WARMUP) {
            parents[nreplies] = f->send_id;
            dues[nreplies++] = o.reply_at_s;
        }
    }
    return lease_reply_schedule_many(d, a, parents, dues, nreplies, &out->replies);
}
