/* The inbox session's IDLE (RFC 2177; see imap_inbox.h): started after a cycle's work,
 * ended with DONE for a wake, a refresh before the servers' 30-minute limit, an action
 * come due, or a stop; the untagged lines between DONE and the tagged OK are read as
 * any others. Also the owner's clock-driven calls (tick, wake, a kept session's visit,
 * stop) and the phase. */
#include "imap_inbox_internal.h"

#include <string.h>

static int idle_end(imap_inbox *ib, int after)
{
    ib->after_idle = after;
    imap_cmd_idle_done(&ib->s.out);
    ib->state = IMAP_IB_IDLE_DONE;
    return IMAP_EV_OUTPUT;
}

/* The IDLE's tagged answer (after our DONE, or the server ended it). */
int ib_idle_answered(imap_inbox *ib, const imap_resp *r)
{
    if (r->status != IMAP_STATUS_OK) {
        int out = imap_refusal_outcome(r, IMAP_OUT_NONE);
        if (out)
            return ib_finish(ib, out, r->text, r->text_len, true);
        ib->want_idle = false; /* IDLE refused: poll instead */
        return ib_logout(ib);
    }
    bool new_mail = ib->idle_new_mail;
    ib->idle_new_mail = false;
    switch (ib->after_idle) {
    case IB_AFTER_STOP:
        return ib_logout(ib);
    case IB_AFTER_WAKE:
        return ib_start_cycle(ib, 1u << IMAP_ROLE_INBOX);
    default: /* refresh, an action due: back to IDLE after the due actions (and INBOX's
                check when mail came meanwhile) */
        return ib_start_cycle(ib, new_mail ? 1u << IMAP_ROLE_INBOX : 0);
    }
}

int ib_on_continue(imap_inbox *ib)
{
    if (ib->s.cmd_waiting) {
        ib->s.cmd_waiting = imap_cmd_take(&ib->s.cmd, &ib->s.out) == IMAP_CMD_WAIT;
        return IMAP_EV_OUTPUT;
    }
    if (ib->state != IMAP_IB_IDLE_START)
        return ib_protocol_error(ib, "continuation no command asked for");
    ib->state = IMAP_IB_IDLING;
    ib->idle_since_ms = ib->now_ms;
    ib->after_idle = IB_AFTER_REFRESH; /* what a server's own end of IDLE leads to */
    if (ib->idle_new_mail) {
        /* mail came after INBOX was checked, before IDLE: the owner hears it now */
        imap_inbox_event ev = {.type = IMAP_INBOX_EV_WAKE, .folder = "INBOX"};
        ib_emit(ib, &ev);
    }
    if (ib->stop_asked)
        return idle_end(ib, IB_AFTER_STOP);
    if (ib->wake_pending) {
        ib->wake_pending = false;
        return idle_end(ib, IB_AFTER_WAKE);
    }
    return 0;
}

int imap_inbox_tick(imap_inbox *ib, int64_t now_ms)
{
    ib->now_ms = now_ms;
    if (ib->state != IMAP_IB_IDLING)
        return 0;
    if (now_ms - ib->idle_since_ms >= ib->idle_refresh_ms)
        return idle_end(ib, IB_AFTER_REFRESH);
    int64_t next;
    if (ib_act_due(ib, now_ms, &next))
        return idle_end(ib, IB_AFTER_ACTIONS);
    return 0;
}

int64_t imap_inbox_next_tick_ms(const imap_inbox *ib)
{
    if (ib->state != IMAP_IB_IDLING)
        return INT64_MAX;
    int64_t next = ib->idle_since_ms + ib->idle_refresh_ms;
    int64_t due = INT64_MAX;
    ib_act_due(ib, INT64_MIN, &due);
    return due < next ? due : next;
}

int imap_inbox_visit(imap_inbox *ib, int64_t now_ms)
{
    ib->now_ms = now_ms;
    if (ib->state != IMAP_IB_KEPT || ib->stop_asked)
        return 0;
    ib->resync = false;
    int ev = ib_start_cycle(ib, IB_ALL_ROLES);
    if (ib->unsel_tag[0] && !(ev & IMAP_EV_OUTPUT))
        ev |= IMAP_EV_OUTPUT; /* the UNSELECT, when no STATUS went behind it */
    return ev;
}

int imap_inbox_wake(imap_inbox *ib, int64_t now_ms)
{
    ib->now_ms = now_ms;
    if (ib->state == IMAP_IB_IDLING)
        return idle_end(ib, IB_AFTER_WAKE);
    if (ib->state == IMAP_IB_IDLE_START)
        ib->wake_pending = true; /* DONE as soon as the "+" comes */
    return 0;
}

int imap_inbox_stop(imap_inbox *ib, int64_t now_ms)
{
    ib->now_ms = now_ms;
    ib->stop_asked = true;
    if (ib->state == IMAP_IB_KEPT)
        return ib_logout(ib);
    if (ib->state == IMAP_IB_IDLING)
        return idle_end(ib, IB_AFTER_STOP);
    if (ib->state == IMAP_IB_IDLE_DONE)
        ib->after_idle = IB_AFTER_STOP;
    return 0; /* the command in flight is answered first; ib_next then logs out */
}

void imap_inbox_phase(const imap_inbox *ib, net_phase *out)
{
    out->id = ib->state;
    out->name = imap_inbox_state_name(ib->state);
    out->upload = false;
    if (ib->state == IMAP_IB_LOGIN && ib->s.state == IMAP_S_GREETING) {
        /* a phase of its own (an id no state has), with its own timeout */
        out->id = IMAP_IB_COUNT;
        out->name = imap_state_name(IMAP_S_GREETING);
        out->timeout_ms = ib->greeting_ms;
        return;
    }
    switch (ib->state) {
    case IMAP_IB_IDLING:
        out->timeout_ms = ib->idle_refresh_ms + (int64_t)60 * 1000;
        break;
    case IMAP_IB_KEPT: /* the owner's next visit comes first; a server that drops the
                          connection meanwhile (autologout) is seen as its EOF */
        out->timeout_ms = (int64_t)24 * 3600 * 1000;
        break;
    case IMAP_IB_FETCH:
    case IMAP_IB_ACT_MOVE:
    case IMAP_IB_ACT_COPY:
    case IMAP_IB_ACT_EXPUNGE:
        out->timeout_ms = 2 * ib->command_ms;
        break;
    default:
        out->timeout_ms = ib->command_ms;
    }
}
