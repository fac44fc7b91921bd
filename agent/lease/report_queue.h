/* The report queue: each slot's final outcome goes to the spool, then waits here until
 * the control plane has it. A report (one lease, at most report_batch results) leaves
 * once its results are durable; 200 acknowledges them, an unknown send is dropped and
 * the rest resent, a refusal for good drops the batch, no answer keeps everything and
 * backs off. Owned by the control thread. */
#ifndef KILN_REPORT_QUEUE_H
#define KILN_REPORT_QUEUE_H

#include "agent_config.h"
#include "control.h"
#include "engine.h"
#include "lease_table.h"
#include "loop_stats.h"
#include "spool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A result waiting to be reported (durable in the spool up to seq; 0: done). */
struct queued {
    spool_record r;
    uint64_t seq;
    int64_t queued_ms;
    lease *lease;
};

typedef struct report_queue {
    struct queued *q;
    size_t n, cap;
    int64_t backoff_ms, next_ms;
    spool *sp;
    loop_stats *stats;
    const agent_config *cfg;    /* report_batch, report_interval_ms (reloaded in place) */
    const volatile bool *abort; /* a drain: one try per call */
} report_queue;

void report_queue_init(report_queue *rq, spool *sp, loop_stats *stats, const agent_config *cfg,
                       const volatile bool *abort);
void report_queue_free(report_queue *rq);
/* Queues a result already in the spool (seq: its record) under lease l. */
void report_queue_push(report_queue *rq, const spool_record *r, uint64_t seq, lease *l,
                       int64_t now);
/* One slot's final outcome from the engine: off the send table, to the spool, into the
 * queue (a cancelled slot is only counted off: the server cancelled it). */
void report_queue_take(report_queue *rq, lease_table *t, const engine_result *er, int64_t now);
/* Reports what is due: a full batch, or results older than the report interval (all,
 * when force). */
void report_queue_flush(report_queue *rq, control *ctl, int64_t now, bool force);

#endif
