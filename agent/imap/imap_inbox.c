/* IMAP inbox session (see imap_inbox.h). Stub: the state machine lands next. */
#include "imap_inbox.h"

#include <errno.h>
#include <stdlib.h>

imap_inbox *imap_inbox_new(const imap_session_params *p, const imap_inbox_job *job,
                           imap_inbox_event_fn on_event, void *ctx)
{
    (void)p, (void)job, (void)on_event, (void)ctx;
    return NULL;
}
