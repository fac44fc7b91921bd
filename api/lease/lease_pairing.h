/* The database side of reciprocity and pairing (issue 13; docs/leasing.md "Reciprocity"):
 * where a lease's senders landed by recipient provider over the last 7 days (one read of
 * placement_days, 015, per lease: at most 7 days x 4 providers rows per sender), and a
 * candidate's provider from its IMAP host. The choice itself is lease_plan's
 * (lease_plan_score); the candidates' ledger comes with the candidate query. */
#ifndef KILN_LEASE_PAIRING_H
#define KILN_LEASE_PAIRING_H

#include "lease_store.h"

/* Fills pool->placements for these senders; false on a database error. */
bool lease_pairing_load(db *d, arena *a, const int64_t *senders, int nsenders, lease_pool *pool);

/* The planner's provider of a mailbox with this IMAP host (inbox_classify's provider
 * + 1); 0 when it has no IMAP access (its provider is not known). */
int lease_pairing_provider(const char *imap_host);

#endif
