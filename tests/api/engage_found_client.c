/* The inbox side's call sequence for one found message, against the stack's database
 * (KILN_DB), for test_engagement.py: the policy's inputs (lease_reply_engage_inputs),
 * the plan (engage_plan_for_found, seeded), and the reply scheduled as a send
 * (lease_reply_schedule). Prints what it read and decided, one line each.
 *   engage_found_client SEND_ID inbox|junk|other SEED FOUND_S */
#include "engage.h"
#include "lease_reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_inputs(const lease_engage_input *in)
{
    const engage_params *p = &in->params;
    printf("inputs send=%lld recipient=%lld open=%.4f important=%.4f rescue=%.4f reply=%.4f "
           "untouched=%.4f dwell=%d/%d quiet=%d-%d retention=%d max_depth=%d depth=%d spans=",
           (long long)in->send_id, (long long)in->recipient_id, p->open_rate, p->important_rate,
           p->rescue_rate, p->reply_rate, p->untouched_rate, p->dwell_median_s, p->dwell_max_s,
           p->quiet_start_min, p->quiet_end_min, p->retention_days, p->max_reply_depth,
           in->reply_depth);
    for (size_t k = 0; k < in->tz.n; k++)
        printf("%s%lld:%d", k ? "," : "", (long long)in->tz.spans[k].from_s,
               in->tz.spans[k].offset_s);
    printf("\n");
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s SEND_ID inbox|junk|other SEED FOUND_S\n", argv[0]);
        return 2;
    }
    int64_t send_id = strtoll(argv[1], NULL, 10), found_s = strtoll(argv[4], NULL, 10);
    engage_folder folder = !strcmp(argv[2], "junk")    ? ENGAGE_FOLDER_JUNK
                           : !strcmp(argv[2], "other") ? ENGAGE_FOLDER_OTHER
                                                       : ENGAGE_FOLDER_INBOX;
    const char *conninfo = getenv("KILN_DB");
    db *d = conninfo ? db_open(conninfo) : NULL;
    arena *a = arena_create(0);
    int rc = 1;
    lease_engage_input *in = NULL;
    size_t n = 0;
    if (!d || !lease_reply_engage_inputs(d, a, &send_id, 1, found_s, &in, &n)) {
        fprintf(stderr, "inputs: %s\n", d ? db_message(d) : "no KILN_DB");
        goto out;
    }
    if (n != 1) {
        printf("unknown send\n");
        rc = 0;
        goto out;
    }
    print_inputs(&in[0]);
    engage_rng r;
    engage_rng_seed(&r, strtoull(argv[3], NULL, 10));
    engage_found f = {folder, found_s, &in[0].tz, in[0].reply_depth};
    engage_out o;
    if (engage_plan_for_found(&in[0].params, &f, &r, &o) != 0) {
        fprintf(stderr, "the plan's parameters are out of range\n");
        goto out;
    }
    printf("plan untouched=%d actions=%zu reply=%d reply_at=%lld reply_depth=%d\n", o.untouched,
           o.nactions, o.reply, (long long)o.reply_at_s, o.reply_depth);
    for (size_t i = 0; i < o.nactions; i++)
        printf("action %s at=%lld flags=%u\n", engage_kind_name(o.actions[i].kind),
               (long long)o.actions[i].at_s, o.actions[i].flags);
    if (o.reply) {
        int64_t reply_id = 0;
        if (!db_begin(d) || !lease_reply_schedule(d, a, send_id, o.reply_at_s, &reply_id) ||
            !db_commit(d)) {
            fprintf(stderr, "schedule: %s\n", db_message(d));
            goto out;
        }
        printf("scheduled %lld\n", (long long)reply_id);
    }
    rc = 0;
out:
    arena_destroy(a);
    if (d)
        db_close(d);
    return rc;
}
