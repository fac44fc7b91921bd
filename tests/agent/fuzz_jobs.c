/* libFuzzer target: the agent's wire parses (agent/lease/agent_wire.c). The streaming lease
 * parser: any input either fails with a message or yields a lease whose mailboxes have
 * all their required fields, and whose rejected entries each carry a reason and only
 * positive slot ids. The lease answer's classification agrees with it: WORK only with a
 * parse that succeeds, a lease id and entries; UNUSABLE always says why. The heartbeat
 * and error answers never crash and stay in their bounds. */
#include "agent_wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);

static void check_lease(const wire_lease *l)
{
    if (!l || l->ttl_s < 1 || (l->nmailboxes && !l->mailboxes))
        abort();
    for (size_t i = 0; i < l->nmailboxes; i++) {
        const job_mailbox *m = l->mailboxes[i];
        if (!m || m->id < 1 || !m->address || !m->host || m->port < 1 || !m->sends)
            abort();
        for (size_t k = 0; k < m->nsends; k++)
            if (m->sends[k].id < 1 || !m->sends[k].to || !m->sends[k].subject ||
                !m->sends[k].body || strlen(m->sends[k].to) < 3)
                abort();
    }
    if (l->nrejected && !l->rejected)
        abort();
    for (size_t i = 0; i < l->nrejected; i++) {
        const wire_rejected *r = &l->rejected[i];
        if (!r->reason[0] || r->mailbox_id < 0 || (r->nsend_ids && !r->send_ids))
            abort();
        for (size_t k = 0; k < r->nsend_ids; k++)
            if (r->send_ids[k] < 1)
                abort();
    }
}

static void check_answer(const char *data, size_t n, bool parsed)
{
    wire_lease_answer a;
    wire_lease_answer_parse(data, n, &a);
    switch (a.kind) {
    case WIRE_LEASE_WORK:
        if (!parsed || !a.lease || !a.lease->lease_id || !a.lease->lease_id[0] ||
            !(a.lease->nmailboxes || a.lease->nrejected))
            abort();
        check_lease(a.lease);
        wire_lease_free(a.lease);
        break;
    case WIRE_LEASE_EMPTY:
        if (a.lease || a.retry_after_s < 0 || a.retry_after_s > 86400)
            abort();
        break;
    case WIRE_LEASE_UNUSABLE:
        if (a.lease || !a.error[0])
            abort();
        break;
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n)
{
    const char *s = (const char *)data;
    wire_lease *l = NULL;
    char err[256];
    bool parsed = wire_lease_parse(s, n, &l, err, sizeof err) == 0;
    if (!parsed) {
        if (l || !err[0])
            abort();
    } else {
        check_lease(l);
        wire_lease_free(l);
    }
    check_answer(s, n, parsed);

    wire_heartbeat hb;
    if (wire_heartbeat_parse(s, n, &hb) == 0) {
        if (hb.ttl_s < 0 || hb.ttl_s > 7 * 86400 || (hb.ncancel && !hb.cancel))
            abort();
        for (size_t i = 0; i < hb.ncancel; i++)
            if (hb.cancel[i] < 1)
                abort();
    } else if (hb.cancel || hb.ncancel || hb.ttl_s || hb.has_service) {
        abort();
    }
    wire_heartbeat_free(&hb);
    wire_error e;
    wire_error_parse(s, n, &e);
    if (strnlen(e.code, sizeof e.code) == sizeof e.code ||
        strnlen(e.field, sizeof e.field) == sizeof e.field)
        abort();
    return 0;
}
