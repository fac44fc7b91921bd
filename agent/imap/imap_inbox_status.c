/* The inbox session's pipelined checks (imap_inbox_job.pipeline; see imap_inbox.h): at
 * the start of a visit's first cycle, before any folder is selected, one STATUS (UIDNEXT
 * UIDVALIDITY) per folder to check goes out in one write, and a folder whose answer shows
 * nothing new (same UIDVALIDITY, UIDNEXT not past the last UID seen; or never watched and
 * no move into it pending) is settled without SELECT or FETCH. Any other folder, or one
 * whose STATUS was refused, goes the SELECT way (imap_inbox.c). RFC 3501 §6.3.10 / RFC
 * 9051 §6.3.11: STATUS is not used on the selected folder, and nothing is selected here.
 * With the roles from the stored state the STATUS commands go out behind the LOGIN. */
#include "imap_inbox_internal.h"

#include <stdlib.h>
#include <strings.h>
#include <string.h>

#define ROLE_BIT(r) (1u << (r))

/* Builds STATUS for every role in the cycle's mask that has a folder name into c and
 * takes it into the output; a name that would need a synchronising literal is left to
 * SELECT (a pipeline cannot wait for "+"). Sets st_pending. */
static void status_send(imap_inbox *ib, imap_cmd *c)
{
    ib->st_pending = 0;
    for (int role = 0; role < IMAP_ROLE_OTHER; role++) {
        const char *name = ib->roles[role].name;
        if (!(ib->check_mask & ROLE_BIT(role)) || !name || (ib->st_have & ROLE_BIT(role)))
            continue; /* (a LIST-STATUS answered it already) */
        if (imap_cmd_status(&ib->s.gen, c, name, strlen(name)) < 0)
            continue;
        if (c->nstops)
            continue; /* never taken: the next command built replaces it */
        imap_cmd_take(c, &ib->s.out);
        memcpy(ib->st_tag[role], c->tag, sizeof ib->st_tag[role]);
        ib->st_pending |= ROLE_BIT(role);
    }
}

/* The cycle's STATUS commands (IMAP_EV_OUTPUT, state IMAP_IB_STATUS), or 0 when none
 * went out; when they went out behind the LOGIN already, the state only. */
int ib_status_start(imap_inbox *ib)
{
    if (ib->st_early) {
        ib->st_early = false;
        if (!ib->st_pending)
            return 0;
        ib->state = IMAP_IB_STATUS; /* nothing to send: the answers are on their way */
        return 0;
    }
    status_send(ib, &ib->s.cmd);
    ib->s.cmd_waiting = false;
    if (!ib->st_pending)
        return 0;
    ib->state = IMAP_IB_STATUS;
    return IMAP_EV_OUTPUT;
}

/* Right after the LOGIN went out, when the roles come from the stored state: a
 * CAPABILITY (answered instead of the one a login OK without a list would ask for)
 * and the STATUS of every folder to check go out behind it in the same write, so a
 * visit with nothing new is greeting, LOGIN+STATUS, LOGOUT. Not behind AUTHENTICATE or
 * a LOGIN that waits for "+". */
void ib_status_behind_login(imap_inbox *ib, unsigned mask)
{
    imap_cmd c;
    imap_cmd_init(&c);
    imap_cmd_capability(&ib->s.gen, &c);
    imap_cmd_take(&c, &ib->s.out);
    memcpy(ib->s.cap_tag, c.tag, sizeof ib->s.cap_tag);
    ib->check_mask = mask;
    ib->st_have = 0;
    status_send(ib, &c);
    ib->st_early = true;
    imap_cmd_free(&c);
}

static bool same_folder(const char *role_name, const char *name, size_t len)
{
    if (strlen(role_name) != len)
        return false;
    if (strcmp(role_name, "INBOX") == 0) /* INBOX is case-insensitive */
        return strncasecmp(name, "INBOX", len) == 0;
    return memcmp(role_name, name, len) == 0;
}

/* * STATUS name (UIDNEXT n UIDVALIDITY v): kept for the role of that name among the
 * roles of mask. Returns the roles it answered. */
static unsigned status_record(imap_inbox *ib, const imap_resp *r, unsigned mask)
{
    const imap_resp_status *st = &r->st;
    unsigned need = IMAP_SI_UIDNEXT | IMAP_SI_UIDVALIDITY, got = 0;
    if (r->data != IMAP_DATA_STATUS || !st->mailbox || (st->have & need) != need || !st->uidnext ||
        !st->uidvalidity)
        return 0;
    for (int role = 0; role < IMAP_ROLE_OTHER; role++) {
        if ((mask & ROLE_BIT(role)) && ib->roles[role].name &&
            same_folder(ib->roles[role].name, st->mailbox, st->mailbox_len)) {
            ib->st_uidnext[role] = st->uidnext;
            ib->st_uidvalidity[role] = st->uidvalidity;
            got |= ROLE_BIT(role);
        }
    }
    return got;
}

void ib_status_untagged(imap_inbox *ib, const imap_resp *r)
{
    ib->st_have |= status_record(ib, r, ib->st_pending);
}

void ib_status_listed(imap_inbox *ib, const imap_resp *r)
{
    ib->st_listed |= status_record(ib, r, IB_ALL_ROLES);
}

/* A tagged answer while STATUS commands are out: which one it answers (any order), a
 * refusal that ends the visit, and once all are answered the checks (ib_next). */
int ib_status_tagged(imap_inbox *ib, const imap_resp *r)
{
    if (ib->unsel_tag[0] && strcmp(r->tag, ib->unsel_tag) == 0) {
        ib->unsel_tag[0] = '\0'; /* a kept visit's UNSELECT: whatever it said, the STATUS
                                     answers follow (and a refusal only costs a SELECT) */
        return 0;
    }
    int role = 0;
    while (role < IMAP_ROLE_OTHER &&
           (!(ib->st_pending & ROLE_BIT(role)) || strcmp(r->tag, ib->st_tag[role]) != 0))
        role++;
    if (role == IMAP_ROLE_OTHER)
        return ib_protocol_error(ib, "tagged answer for a command never sent");
    ib->st_pending &= ~ROLE_BIT(role);
    if (r->status != IMAP_STATUS_OK) {
        ib->st_have &= ~ROLE_BIT(role); /* SELECT says what is wrong */
        int out = imap_refusal_outcome(r, IMAP_OUT_NONE);
        if (out) {
            ib->st_pending = 0; /* the answers still due are not read: LOGOUT closes */
            return ib_finish(ib, out, r->text, r->text_len, true);
        }
    }
    return ib->st_pending ? 0 : ib_next(ib);
}

/* True when the STATUS of role shows that nothing can be new: then the folder's state
 * is settled (known, UIDVALIDITY, last UID) as a SELECT and FETCH would have left it. */
bool ib_status_settles(imap_inbox *ib, int role, const imap_inbox_folder *stored)
{
    if (!(ib->st_have & ROLE_BIT(role)))
        return false;
    ib_folder *f = &ib->roles[role];
    uint32_t next = ib->st_uidnext[role], validity = ib->st_uidvalidity[role];
    if (!f->known && stored) {
        f->known = true;
        f->uidvalidity = stored->uidvalidity;
        f->last_uid = stored->last_uid;
    }
    if (f->known) {
        if (f->uidvalidity != validity || next - 1 > f->last_uid)
            return false; /* recreated, or new mail: SELECT and FETCH */
    } else {
        if (ib_move_target_pending(ib, role))
            return false; /* look back for a move an earlier session made */
        f->known = true;
        f->last_uid = next - 1;
    }
    f->uidvalidity = validity;
    return true;
}

void ib_unselect_ahead(imap_inbox *ib)
{
    if (!ib->selected || !(ib->s.caps & IMAP_CAP_UNSELECT) || ib->stop_asked)
        return;
    imap_cmd_unselect(&ib->s.gen, &ib->s.cmd);
    imap_cmd_take(&ib->s.cmd, &ib->s.out);
    memcpy(ib->unsel_tag, ib->s.cmd.tag, sizeof ib->unsel_tag);
    free(ib->selected);
    ib->selected = NULL;
}
