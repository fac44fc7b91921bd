/* The real inbox engine (agent/inbox/) behind the lease loop's seam (inbox_feed.h).
 *
 * Why here: the seam's types are the lease loop's and agent/inbox/ never includes a lease
 * header (tests/agent/agent_layers.sh), while lease/ may use the inbox engine's public
 * headers (inbox_engine.h, inbox_spec.h). So this adapter is the one place that sees both
 * sides: the rest of the loop knows an engine only as an inbox_feed_engine table, and the
 * engine knows nothing of leases.
 *
 * `kiln-agent inbox --file` uses the same conversions, so a file and a lease answer are
 * read by one parser (wire_inbox_file_parse / wire_inbox_part_parse) and their events
 * written by one serializer (wire_inbox_event_json). */
#ifndef KILN_INBOX_FEED_IMAP_H
#define KILN_INBOX_FEED_IMAP_H

#include "inbox_engine.h"
#include "inbox_feed.h"
#include "inbox_spec.h"

#include <stdint.h>

/* The table `kiln-agent run` hands to run_agent_with when KILN_AGENT_MAX_INBOXES > 0.
 * Its start reads the engine's knobs from KILN_AGENT_IMAP_* (docs/agent.md). */
const inbox_feed_engine *inbox_feed_imap_engine(void);

/* A copy of in the engine owns (inbox_spec_free). An action's not_before_ms is on the
 * clock of now_ms (the lease loop: CLOCK_MONOTONIC; a file: 0, the value relative): the
 * spec counts seconds from its hand-over, so each becomes the seconds still to wait. */
inbox_spec *inbox_spec_from_feed(const feed_inbox *in, int64_t now_ms);

/* The engine's event as the seam's (pointers borrowed from ev). */
void feed_event_from_inbox(const inbox_event *ev, feed_event *out);

#endif
