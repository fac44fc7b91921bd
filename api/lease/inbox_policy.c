/* The built-in engagement policy (see inbox_policy.h). */
#include "inbox_policy.h"

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

int inbox_actions_for_found(const inbox_found *f, inbox_action_spec *out)
{
    int n = 0;
    if (f->role == ROLE_WARMUP) /* filed already (a previous holder's find) */
        return 0;
    if (f->role == ROLE_JUNK)
        out[n++] = (inbox_action_spec){.kind = ACTION_RESCUE, .target = ROLE_INBOX};
    if (!f->seen)
        out[n++] = (inbox_action_spec){
            .kind = ACTION_MARK, .flags = {"\\Seen"}, .nflags = 1, .target = -1};
    out[n++] = (inbox_action_spec){
        .kind = ACTION_FILE, .target = ROLE_WARMUP, .delay_s = INBOX_POLICY_DWELL_S};
    return n;
}
