/* The sending engine: I/O threads, each with its own io_uring, a preallocated
 * session table, a timer heap for slots due later and per-host shaping. Jobs go in
 * with engine_submit (any thread), results come out with engine_poll_results; the
 * command line (kiln-agent send) and the lease loop both drive it this way. */
#ifndef KILN_ENGINE_H
#define KILN_ENGINE_H

#include "buf.h"
#include "jobs.h"
#include "shaping.h"
#include "smtp_session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct engine engine;

/* Called on an I/O thread when the server has answered DATA with 354 for a slot, with
 * that slot's id: its payload waits until engine_intent_done(token), so an intent on
 * disk means the message may exist, and no intent means it cannot. The hook must only
 * queue: the durable write happens on another thread. */
typedef void (*engine_intent_fn)(void *arg, uint64_t token, const int64_t *send_ids, size_t n);

typedef struct engine_config {
    int threads;     /* I/O threads; 0 = one per core */
    int concurrency; /* concurrent sessions, all threads together */
    int batch_max;   /* slots of one mailbox carried by one session */
    int max_attempts;
    int64_t lease_margin_ms; /* no send starts closer than this to the lease end */
    int64_t connect_timeout_ms;
    int64_t tls_timeout_ms;
    /* a whole reply, per session state: bytes trickling in do not extend it */
    int64_t state_timeout_ms[SMTP_S_COUNT];
    /* uploading a message: each step of progress (bytes taken by the socket or
     * acknowledged by the peer) must come within this (RFC 5321 data block) */
    int64_t data_block_timeout_ms;
    int64_t dns_ttl_ms;
    int64_t result_linger_ms; /* engine_poll_results gathers a batch this long (0: none) */
    shaping_cfg shaping;      /* per host, all threads together */
    char helo_name[256];
    /* SIMULATION ONLY (KILN_AGENT_DRY_RUN_MS; -1, the default: off). When >= 0 no
     * connection is ever opened: each slot, when due, ends "sent" this many ms later
     * with the detail "dry run: ..." so nothing can mistake it for a delivery. For the
     * control plane's scale simulation (issue 15), never for real mailboxes. */
    int64_t dry_run_ms;
    engine_intent_fn intent_fn; /* NULL: sessions start at once */
    void *intent_arg;
} engine_config;

/* One slot's final outcome. */
typedef struct engine_result {
    int64_t send_id;
    int64_t mailbox_id;
    int status; /* enum smtp_status */
    int smtp_code;
    char enhanced[16];
    char detail[160];
    int64_t latency_ms;
    int attempts;
    bool cancelled; /* never started: engine_cancel/engine_cancel_all came first */
} engine_result;

/* RFC 5321 §4.5.3.2 timeouts, 100 connections and 200 connects/min per host. */
void engine_config_defaults(engine_config *c);
/* Overrides from KILN_AGENT_* variables; -1 with err on a bad value. */
int engine_config_from_env(engine_config *c, char *err, size_t errlen);
/* A name fit for EHLO/HELO (RFC 5321 §4.1.1.1): a domain (letters, digits, hyphens in
 * dot-separated labels of at most 63, 253 in all) or an address literal ([192.0.2.1],
 * [IPv6:2001:db8::1]). Never CR, LF or spaces. */
bool engine_helo_name_ok(const char *s);

/* Checks io_uring support and starts the threads; NULL with err when impossible. */
engine *engine_create(const engine_config *c, char *err, size_t errlen);
/* Hands a mailbox with its slots to the engine, which frees it. not_before_s counts
 * from lease_start_ms (both monotonic). The deadline is absolute: no session, no
 * transaction (MAIL) and no payload starts after deadline_ms - lease_margin_ms, and a
 * session still open at deadline_ms is cut. A slot due after deadline_ms -
 * lease_margin_ms ends deferred ("not sent: due after the lease deadline") at once when
 * lease_key is 0, or when that time comes and no renewal (engine_extend) has moved the
 * deadline past it. lease_key (0: none) names the lease for engine_extend. */
void engine_submit(engine *e, job_mailbox *m, int64_t lease_start_ms, int64_t deadline_ms,
                   uint64_t lease_key);
/* The lease submitted with lease_key (not 0) was renewed: its mailboxes may start sends
 * until deadline_ms (monotonic) now. Never moves a deadline earlier. Any thread. */
void engine_extend(engine *e, uint64_t lease_key, int64_t deadline_ms);
/* Waits up to timeout_ms for a first result, then up to result_linger_ms more for a
 * fuller batch; returns how many were copied to out. */
size_t engine_poll_results(engine *e, engine_result *out, size_t max, int timeout_ms);
/* Prometheus text exposition of the engine's counters. */
void engine_metrics(engine *e, buf *out);
/* The intent for token is durable (ok) or could not be written (the session's slots
 * end deferred). Any thread. */
void engine_intent_done(engine *e, uint64_t token, bool ok);
/* Slots not started yet end with a result marked cancelled; a slot whose session is
 * under way finishes normally and is not retried. Any thread. */
void engine_cancel(engine *e, const int64_t *send_ids, size_t n);
/* Drain: every slot not started ends cancelled, no retries, later submissions end
 * cancelled at once; sessions under way finish. Any thread. */
void engine_cancel_all(engine *e);
/* Stops the threads; slots not finished are dropped without a result. */
void engine_destroy(engine *e);

#endif
