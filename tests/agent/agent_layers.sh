#!/bin/bash
# The agent's layers (agent/README.md): the include paths CMake gives each library
# already make a cross-layer include fail; this checks what they cannot, system
# headers. smtp/ and imap/ (protocol cores) include no I/O header, and net/ names no
# protocol, scheduler or lease module even in a comment-free include line; lease/
# includes only the scheduler's and the inbox engine's public headers; inbox/ (the
# inbox engine) uses net/, imap/ and common/, never smtp/, sched/ or lease/; imap/
# never includes the inbox engine.
set -u
SRC="${KILN_SOURCE_DIR:?}"
fail=0
io='#include <(liburing\.h|sys/socket\.h|netinet/|arpa/inet\.h|netdb\.h|sys/epoll\.h|poll\.h|unistd\.h|openssl/ssl\.h|sys/eventfd\.h)'
for d in smtp imap; do
    if grep -nE "$io" "$SRC/agent/$d"/*.[ch] 2>/dev/null; then
        echo "FAIL: agent/$d includes an I/O header (above)"; fail=1
    fi
done
if grep -nE '#include "(smtp_|engine|sched|jobs|run|control|spool|imap)' "$SRC/agent/net"/*.[ch] \
    "$SRC/agent/net/iface"/*.h; then
    echo "FAIL: agent/net includes a protocol, scheduler or lease header (above)"; fail=1
fi
# the lease loop uses the scheduler's public API only (engine.h, jobs.h)
if grep -nE '#include "(conn|host_limits|loop|resolver|ring|shaping|timer_heap|tls_conn|net_session|sched_internal|smtp_[a-z]+)\.h"' \
    "$SRC/agent/lease"/*.[ch]; then
    echo "FAIL: agent/lease includes a net, smtp or scheduler-internal header (above)"; fail=1
fi
# the inbox engine: net, imap and common only
if grep -nE '#include "(smtp_|engine|sched|jobs|run|control|spool|leasing|lease_|agent_wire|agent_config|metrics_http|report_queue|intents)' \
    "$SRC/agent/inbox"/*.[ch]; then
    echo "FAIL: agent/inbox includes an smtp, scheduler or lease header (above)"; fail=1
fi
# the protocol core never reaches up into the engine that drives it
if grep -nE '#include "(inbox_|imap_net)' "$SRC/agent/imap"/*.[ch]; then
    echo "FAIL: agent/imap includes an inbox engine header (above)"; fail=1
fi
# lease/ reaches the inbox engine through its public headers only
if grep -nE '#include "(imap_net|inbox_internal|imap_inbox|imap_session)\.h"' "$SRC/agent/lease"/*.[ch]; then
    echo "FAIL: agent/lease includes an inbox engine internal or IMAP core header (above)"; fail=1
fi
[ $fail = 0 ] && echo "PASS agent_layers"
exit $fail
