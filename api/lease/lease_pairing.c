/* Reciprocity and pairing, database side (see lease_pairing.h). */
#include "lease_pairing.h"

#include "inbox_classify.h"
#include "pgarr.h"

#include <string.h>

/* The senders' placements per provider over the last 7 UTC days (placement_days' days). */
static const db_stmt Q_SENDER_PLACEMENTS = {
    "pairing_sender_placements",
    "SELECT mailbox_id, provider::text AS provider, "
    "sum(inbox + junk + other + missing)::bigint AS decided, sum(junk)::bigint AS junk "
    "FROM placement_days WHERE mailbox_id = ANY ($1::bigint[]) "
    "AND day > (kiln_now() AT TIME ZONE 'UTC')::date - 7 GROUP BY 1, 2"};

int lease_pairing_provider(const char *imap_host)
{
    if (!imap_host || !*imap_host)
        return 0;
    return (int)inbox_provider_of_host(imap_host) + 1;
}

static int provider_of_name(const char *name)
{
    for (int p = PROVIDER_GMAIL; p <= PROVIDER_OTHER; p++)
        if (!strcmp(name, inbox_provider_name((enum inbox_provider)p)))
            return p + 1;
    return 0;
}

bool lease_pairing_load(db *d, arena *a, const int64_t *senders, int nsenders, lease_pool *pool)
{
    pool->placements = NULL;
    pool->nplacements = 0;
    if (nsenders <= 0)
        return true;
    pgarr ids;
    pgarr_open(&ids);
    for (int i = 0; i < nsenders; i++)
        pgarr_i64(&ids, senders[i]);
    const char *p[] = {pgarr_done(&ids, a)};
    PGresult *r = db_exec(d, a, &Q_SENDER_PLACEMENTS, 1, p);
    if (!r)
        return false;
    static const char *const names[] = {"mailbox_id", "provider", "decided", "junk"};
    int c[4];
    db_columns(r, names, c, 4);
    size_t n = (size_t)PQntuples(r);
    pool->placements = arena_calloc(a, (n + 1) * sizeof *pool->placements);
    for (size_t i = 0; i < n; i++) {
        lease_placement *pl = &pool->placements[pool->nplacements];
        pl->provider = provider_of_name(PQgetvalue(r, (int)i, c[1]));
        if (pl->provider == 0)
            continue;
        pl->sender = db_i64(r, (int)i, c[0]);
        pl->decided = db_i64(r, (int)i, c[2]);
        pl->junk = db_i64(r, (int)i, c[3]);
        pool->nplacements++;
    }
    return true;
}
