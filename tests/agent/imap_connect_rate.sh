#!/bin/bash
# The connect rate per IMAP server admits waiting inboxes in order, one token each:
# sixteen inboxes (sixteen accounts) on one Dovecot with --server-conns-per-min 60 (a
# burst of 10, then one a second) and room under the cap for all. The first ten of the
# file log in at once; the other six wait and follow at the bucket's rate (the k-th no
# sooner than k seconds after the start, not together) and in the file's order, each
# once. (Before: every waiter woke at each token and whoever the timer heap popped
# first took it, so inbox 16 was in the burst and the order scrambled.)
source "$(dirname "$0")/lib.sh"
source "$HERE/dovecot_lib.sh"
N=16
for i in $(seq -w 1 $N); do dovecot_user "u$i@acme.test" "pw$i"; done
dovecot_start
cd "$WORK"
specs=()
for i in $(seq -w 1 $N); do specs+=("$((10#$i)):127.0.0.1:$IMAP_PORT:plain:u$i@acme.test:pw$i:-"); done
make_inboxes in.json "${specs[@]}"
# each stdout line stamped with the ms since the first one
timeout 40 "$AGENT" inbox --file in.json --duration 10 --server-max-conns 100 \
    --server-conns-per-min 60 2>err.log | $PY -c 'import sys, time
t0 = None
for l in sys.stdin:
    now = time.monotonic()
    t0 = now if t0 is None else t0
    print("%d %s" % ((now - t0) * 1000, l), end="", flush=True)' >ev.txt
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || fail "inbox --duration 10: exit $rc ($(cat err.log))"
$PY - ev.txt $N <<'EOF' || fail "$(cat ev.txt)"
import json, sys
n = int(sys.argv[2])
logins = []
for line in open(sys.argv[1]):
    ms, ev = line.split(" ", 1)
    e = json.loads(ev)
    if e["type"] == "session":
        if e["status"] != "ok":
            sys.exit("a login failed: " + ev)
        logins.append((int(ms), e["mailbox_id"]))
ids = [m for _, m in logins]
if sorted(ids) != list(range(1, n + 1)):
    sys.exit("expected one login of each of the %d inboxes, got %s" % (n, ids))
at = {m: ms for ms, m in logins}
late = [m for m in ids if m > 10]
if late != list(range(11, n + 1)):
    sys.exit("the waiting inboxes were admitted out of order: %s" % late)
for k in range(1, n - 9):
    # the k-th token after the burst comes k seconds after the start (a login's latency
    # only delays it; the first line came after one login)
    if at[10 + k] < k * 1000 - 500:
        sys.exit("inbox %d logged in at %d ms, before the rate allows (token %d): %s"
                 % (10 + k, at[10 + k], k, logins))
t_burst = max(at[m] for m in range(1, 11))
print("burst of 10 by %d ms; then 11..%d at %s ms" % (t_burst, n, [at[m] for m in range(11, n + 1)]))
EOF
echo "PASS imap_connect_rate"
