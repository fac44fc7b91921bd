/* libFuzzer target: the streaming lease parser. Any input either fails with a message
 * or yields a lease whose mailboxes have all their required fields, and whose rejected
 * entries each carry a reason and only positive slot ids. */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n)
{
    job_lease *l = NULL;
    char err[256];
    if (jobs_parse((const char *)data, n, &l, err, sizeof err) != 0) {
        if (l || !err[0])
            abort();
        return 0;
    }
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
        const job_rejected *r = &l->rejected[i];
        if (!r->reason[0] || r->mailbox_id < 0 || (r->nsend_ids && !r->send_ids))
            abort();
        for (size_t k = 0; k < r->nsend_ids; k++)
            if (r->send_ids[k] < 1)
                abort();
    }
    job_lease_free(l);
    return 0;
}
