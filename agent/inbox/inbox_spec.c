/* Names and freeing of inbox specs (see inbox_spec.h). */
#include "inbox_spec.h"

#include <stdlib.h>
#include <string.h>

static const char *const class_names[INBOX_POLL_COUNT] = {"high", "medium", "low"};
static const char *const role_names[INBOX_ROLE_COUNT] = {"inbox", "junk", "warmup", "other"};
static const char *const kind_names[INBOX_ACT_COUNT] = {"rescue", "mark", "file", "prune"};
static const char *const status_names[INBOX_AST_COUNT] = {"done", "gone", "stale", "refused",
                                                          "failed"};

static const char *name_of(const char *const *names, int n, int v)
{
    return v >= 0 && v < n ? names[v] : "unknown";
}

static int value_of(const char *const *names, int n, const char *s)
{
    for (int i = 0; s && i < n; i++)
        if (!strcmp(names[i], s))
            return i;
    return -1;
}

const char *inbox_poll_class_name(int c)
{
    return name_of(class_names, INBOX_POLL_COUNT, c);
}
const char *inbox_role_name(int role)
{
    return name_of(role_names, INBOX_ROLE_COUNT, role);
}
const char *inbox_action_kind_name(int kind)
{
    return name_of(kind_names, INBOX_ACT_COUNT, kind);
}
const char *inbox_action_status_name(int status)
{
    return name_of(status_names, INBOX_AST_COUNT, status);
}
int inbox_poll_class_of(const char *s)
{
    return value_of(class_names, INBOX_POLL_COUNT, s);
}
int inbox_role_of(const char *s)
{
    return value_of(role_names, INBOX_ROLE_COUNT, s);
}
int inbox_action_kind_of(const char *s)
{
    return value_of(kind_names, INBOX_ACT_COUNT, s);
}

static void free_secret(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    free(s);
}

void inbox_action_clear(inbox_action *a)
{
    free(a->folder);
    free(a->message_id);
    for (size_t k = 0; k < a->nflags; k++)
        free(a->flags[k]);
    memset(a, 0, sizeof *a);
}

void inbox_spec_free(inbox_spec *s)
{
    if (!s)
        return;
    free(s->address);
    free(s->host);
    free(s->username);
    free_secret(s->password);
    free_secret(s->oauth_token);
    free(s->ca_file);
    free(s->warmup_folder);
    for (size_t i = 0; i < s->nfolders; i++)
        free(s->folders[i].name);
    free(s->folders);
    for (size_t i = 0; i < s->nactions; i++) {
        inbox_action_clear(&s->actions[i]);
    }
    free(s->actions);
    free(s);
}
