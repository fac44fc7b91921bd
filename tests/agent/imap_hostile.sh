#!/bin/bash
# kiln-agent's IMAP side against broken and hostile servers (imap_hostile_server.py, one
# loopback address per scenario), all watched by one `kiln-agent inbox` run beside a
# correct server: the agent must not crash (ASan build), must stop in bounded time
# however a server stalls, drips or floods, must keep its memory bounded, must say what
# went wrong (a session event or a log line naming the inbox), and must carry on with
# its other inboxes (the good one's mail is found once, its folder state advances).
#   scenarios: literal sizes huge / negative / announced then dropped, drips, stalls,
#   untagged lines forever, a tagged answer with the wrong tag, BYE mid-FETCH, COPYUID
#   garbage, UIDVALIDITY 0, UIDs out of order / repeated / past 2^32, a 10 MB
#   Message-ID, a folder name that is not modified UTF-7, folder and namespace names no
#   IMAP command can carry (CR LF from a literal), a UIDNEXT of 2^32-1 after a
#   UIDVALIDITY change, the same message in one FETCH answer 100,000 times.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
DURATION=${HOSTILE_DURATION_S:-20}
# freed memory held in ASan's quarantine is not what the RSS check is about
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"
SCEN=(good uidnext_huge fetch_flood literal_drop literal_huge literal_negative wrong_tag
    bye_fetch stall drip untagged_forever copyuid_garbage uidvalidity0 uids_weird msgid_huge
    junk_crlf namespace_crlf utf7_invalid junk_crlf_tls good_tls)
declare -A MB
spec=""
for i in "${!SCEN[@]}"; do
    MB[${SCEN[$i]}]=$((i + 1))
    spec="$spec${spec:+,}${SCEN[$i]}=$((i + 1))"
done
mkdir -p logs
# implicit TLS scenarios: one self-signed certificate for every scenario address, which
# the inboxes trust as their ca_file
command -v openssl >/dev/null || skip "openssl not installed"
san=$(for i in $(seq 10 40); do printf 'IP:127.0.0.%d,' "$i"; done)
openssl req -x509 -newkey rsa:2048 -nodes -keyout tls.pem -out cert.pem -days 2 \
    -subj /CN=hostile -addext "subjectAltName=${san%,}" 2>/dev/null || fail "openssl req"
cat cert.pem >>tls.pem
start_py "$HERE/imap_hostile_server.py" --ports ports.json --log-dir logs --scenarios "$spec" \
    --tls-cert tls.pem

# The inboxes: medium class (one visit in the run unless it fails); folders stored so
# the found mail is reported (an inbox never watched reports only what comes later),
# except where the scenario needs the LIST (junk_crlf) or the NAMESPACE (namespace_crlf).
$PY - ports.json in.json "$spec" "$WORK/cert.pem" <<'PYEOF'
import json, sys
ports, out, spec, ca = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
res = []
for item in spec.split(","):
    name, mbid = item.split("=")
    mbid = int(mbid)
    host, port = ports[name]
    folders = [{"name": "INBOX", "role": "inbox", "uidvalidity": 7, "last_uid": 0},
               {"name": "Junk", "role": "junk", "uidvalidity": 8, "last_uid": 0}]
    actions = []
    tls = name.endswith("_tls")
    if name in ("junk_crlf", "namespace_crlf", "junk_crlf_tls"):
        folders = folders[:1]
    if name == "uidnext_huge":
        folders[0]["last_uid"] = 1
    if name == "copyuid_garbage":
        actions = [{"id": 1201, "kind": "rescue", "folder": "Junk", "uidvalidity": 8, "uid": 5,
                    "flags": [], "target": "inbox", "not_before_s": 0}]
    if name == "namespace_crlf":
        actions = [{"id": 1701, "kind": "file", "folder": "INBOX", "uidvalidity": 7, "uid": 1,
                    "flags": [], "target": "warmup", "not_before_s": 0}]
    res.append({"mailbox_id": mbid, "address": "%s@acme.test" % name.replace("_", "-"),
                "imap": {"host": host, "port": port, "security": "tls" if tls else "plain",
                         "username": "%s@acme.test" % name, "password": "pw",
                         "oauth_token": None, "ca_file": ca if tls else None,
                         "allow_plaintext_auth": not tls},
                "poll_class": "medium", "poll_interval_s": 300, "warmup_folder": "kiln",
                "folders": folders, "actions": actions})
json.dump(res, open(out, "w"))
PYEOF

# One run; its RSS sampled early and late (a server that floods must not grow it).
t0=$(date +%s%N)
"$AGENT" inbox --file in.json --duration "$DURATION" --server-conns-per-min 60000 \
    --metrics-port 0 >ev.jsonl 2>err.log &
apid=$!
PIDS+=($apid)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$apid/status" 2>/dev/null || echo 0; }
sleep 6
rss_early=$(rss)
sleep $((DURATION - 8))
rss_late=$(rss)
mport=$(sed -n 's|.*metrics on http://127.0.0.1:\([0-9]*\)/metrics|\1|p' err.log)
curl -s --max-time 2 "http://127.0.0.1:${mport:-1}/metrics" >metrics.txt
rc=0
for _ in $(seq 1 400); do # up to 40 s past the duration: the drain is 5 s
    kill -0 "$apid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$apid" 2>/dev/null; then
    kill -9 "$apid"
    fail "the agent did not stop within $((DURATION + 40)) s of a --duration $DURATION run ($(tail -5 err.log))"
fi
wait "$apid" || rc=$?
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
[ -z "${HOSTILE_KEEP:-}" ] || cp -r "$WORK" "$HOSTILE_KEEP" # to look at afterwards
FAILS=()
bad() { FAILS+=("$*"); echo "FAIL: $*" >&2; }

if grep -q "Sanitizer" err.log; then
    known=""
    grep -A12 "Direct leak" err.log | grep -q conn_start_tls &&
        known="junk_crlf_tls: a second conn_start_tls on a live TLS connection leaks the first tls_conn: "
    bad "${known}a sanitizer report: $(grep -m1 -A12 -E "ERROR: .*Sanitizer" err.log)"
fi
[ "$rc" = 0 ] || bad "the agent exited $rc ($(grep -m1 SUMMARY err.log || tail -1 err.log))"
[ "$elapsed_ms" -lt $(((DURATION + 20) * 1000)) ] ||
    bad "--duration $DURATION took $elapsed_ms ms: a stalled or dripping server held the stop"
growth=$((rss_late - rss_early))
[ "$growth" -lt 262144 ] ||
    bad "RSS grew by $growth KiB between 6 s and $((DURATION - 2)) s (flooding servers)"
$PY -c 'import json,sys
for n, l in enumerate(open(sys.argv[1], "rb"), 1):
    json.loads(l.decode("utf-8"))' ev.jsonl || bad "stdout has a line that is not JSON in UTF-8"

# The sessions that logged in and then broke are counted apart from the logins (bye_fetch
# and wrong_tag break every visit after the login: two each by now at the least).
broken=$(awk '$1 == "kiln_agent_inbox_visits_broken_total" {print $2}' metrics.txt)
[ "${broken:-0}" -ge 4 ] ||
    bad "kiln_agent_inbox_visits_broken_total is '${broken:-absent}' after $((DURATION - 2)) s, expected >= 4"

# The events, the log and the servers' counters, judged in one pass.
set +e
$PY - "$spec" "$DURATION" >verdicts.txt <<'PYEOF'
import json, re, sys
mb = {n: int(i) for n, i in (x.split("=") for x in sys.argv[1].split(","))}
ev = [json.loads(l) for l in open("ev.jsonl")]
log = open("err.log", errors="replace").read().splitlines()
srv = lambda sc, k: json.load(open("logs/%s.json" % sc)).get(k, 0)
def bad(msg):
    print("FAIL: " + msg)
def of(sc, **kw):
    return [e for e in ev if e["mailbox_id"] == mb[sc] and
            all(e.get(k) == v for k, v in kw.items())]
def found(sc, folder, uid):
    return len(of(sc, type="found", folder=folder, uid=uid))
def logged(sc, rx):
    return any(re.search(rx, l) for l in log if re.search(r"inbox %d \(" % mb[sc], l))
def show(sc):
    return json.dumps(of(sc))[:600]

# the good servers: everything found once, the state advanced
for sc in ("good", "good_tls"):
    for f, u in (("INBOX", 1), ("INBOX", 2), ("Junk", 5)):
        if found(sc, f, u) != 1:
            bad("%s: %s UID %d found %d times, expected once" % (sc, f, u, found(sc, f, u)))
    if not of(sc, type="folder_state", folder="INBOX", last_uid=2):
        bad("%s: no folder_state INBOX last_uid 2: %s" % (sc, show(sc)))

# protocol breakers: a log line naming the inbox and why; nothing found where nothing came
for sc, rx in (("literal_huge", "literal too large"), ("literal_negative", "literal"),
               ("literal_drop", "closed"), ("wrong_tag", "never sent"),
               ("bye_fetch", "going down"), ("uidvalidity0", "UIDVALIDITY|response code")):
    if not logged(sc, rx):
        bad("%s: no log line for the inbox matching /%s/" % (sc, rx))
for sc in ("literal_negative", "literal_drop", "uidvalidity0"):
    if of(sc, type="found"):
        bad("%s: finds from a broken answer: %s" % (sc, show(sc)))
if of("bye_fetch", type="folder_state", folder="INBOX"):
    bad("bye_fetch: INBOX's state advanced past a FETCH cut short by BYE")
# A server that takes the login and then breaks every visit: the agent backs off,
# doubling from KILN_AGENT_IMAP_BACKOFF_BASE_MS (2 s, 0.8-1.2x jitter), as it does for one
# that refuses the login: at most 1 + ceil(log2(D / 1.6 + 1)) connections in D seconds.
# (Until session 33 the login reset the backoff, and such an inbox was logged in to
# every 2 s for as long as it was watched.)
import math
d = float(sys.argv[2])
most = 1 + math.ceil(math.log2(d / 1.6 + 1))
for sc in mb:  # bye_fetch, wrong_tag, the literals, uids_weird, uidvalidity0 break each visit
    if srv(sc, "conns") > most:
        bad("%s: %d connections in %.0f s, expected at most %d (a backoff that doubles)"
            % (sc, srv(sc, "conns"), d, most))
# ... and says so: a visit that breaks after the login is a transient session event
# (the control plane marks the inbox failing and does not judge its mail missing), never
# `ok`, which means a visit's work was done. (Until session 34 `ok` came at the login,
# and such an inbox read ok.)
for sc in ("bye_fetch", "wrong_tag", "literal_huge", "literal_drop"):
    ses = of(sc, type="session")
    if [e for e in ses if e["status"] == "ok"]:
        bad("%s: a session `ok` for an inbox whose every visit breaks: %s" % (sc, ses))
    if not [e for e in ses if e["status"] in ("protocol", "connect") and
            "broke after the login" in (e.get("detail") or "")]:
        bad("%s: no session event says the visit broke after the login: %s" % (sc, ses))
for sc in ("good", "good_tls"):
    if [e["status"] for e in of(sc, type="session")] != ["ok"]:
        bad("%s: session events %s, expected one `ok`" % (sc, of(sc, type="session")))
if of("uidvalidity0", type="folder_state"):
    bad("uidvalidity0: a folder state under UIDVALIDITY 0: %s" % show("uidvalidity0"))

# odd but survivable answers
if [e for e in of("uids_weird", type="found") if not 1 <= e["uid"] <= 4294967295]:
    bad("uids_weird: a find with a UID outside 1..2^32-1")
for u in (1, 2):
    n, conns = found("uids_weird", "INBOX", u), srv("uids_weird", "conns")
    if n > conns:
        bad("uids_weird: UID %d found %d times in %d connections (a UID "
            "repeated in one FETCH answer is reported again)" % (u, n, conns))
if found("msgid_huge", "INBOX", 2) != 1 or found("msgid_huge", "INBOX", 1):
    bad("msgid_huge: the 10 MB Message-ID reported, or the normal one beside it not: %s"
        % show("msgid_huge"))
acts = [e for e in ev if e["type"] == "action" and e["action_id"] == 1201]
if not acts:
    bad("copyuid_garbage: no outcome for the rescue the server said it did")
if [e for e in acts if e.get("uid") is not None and not 1 <= e["uid"] <= 4294967295]:
    bad("copyuid_garbage: an outcome with a garbage UID: %s" % acts)
if found("utf7_invalid", "INBOX", 1) != 1:
    bad("utf7_invalid: INBOX's mail beside a junk folder named in raw bytes: %s"
        % show("utf7_invalid"))

# names no IMAP command can carry: that folder or action fails, said so; the rest goes
# on; no TLS handshake is started inside the session
for sc in ("junk_crlf", "junk_crlf_tls"):
    if found(sc, "INBOX", 1) != 1:
        bad("%s: INBOX's mail not found: %s" % (sc, show(sc)))
    if srv(sc, "tls_hello") or srv(sc, "tls_garbage"):
        bad("%s: the agent started a TLS handshake inside the IMAP session "
            "(%d on plaintext, %d inside TLS): ib_select's -1 taken as an event mask"
            % (sc, srv(sc, "tls_hello"), srv(sc, "tls_garbage")))
    if not logged(sc, r"session [a-z]+: .|folder"):
        bad("%s: nothing says why the junk folder is never checked" % sc)
if srv("namespace_crlf", "tls_hello"):
    bad("namespace_crlf: the agent started TLS on a plaintext connection")
if not [e for e in ev if e["type"] == "action" and e["action_id"] == 1701 and
        e["status"] in ("failed", "refused")]:
    bad("namespace_crlf: no failed outcome for the file action (a CREATE it "
        "could not build, -1 taken as an event mask)")

# work bounded per visit
if found("uidnext_huge", "INBOX", 1) != 1:
    bad("uidnext_huge: its one message found %d times" % found("uidnext_huge", "INBOX", 1))
if not of("uidnext_huge", type="folder_state", folder="INBOX"):
    bad("uidnext_huge: INBOX's check never ended (%d UID FETCH commands for one "
        "message: UIDNEXT 2^32-1 walked 500 UIDs at a time)" % srv("uidnext_huge", "fetches"))
n = found("fetch_flood", "INBOX", 1)
if n > srv("fetch_flood", "conns"):
    bad("fetch_flood: one message reported found %d times from one FETCH answer"
        % n)
print("# %d events; uidnext_huge: %d fetches; fetch_flood: %d finds" % (
    len(ev), srv("uidnext_huge", "fetches"), n))
PYEOF
[ $? = 0 ] || bad "the event check itself failed (stdout not JSON?)"
set -e
cat verdicts.txt
while read -r line; do
    case "$line" in FAIL:*) FAILS+=("${line#FAIL: }") ;; esac
done <verdicts.txt
echo "elapsed ${elapsed_ms} ms, RSS ${rss_early} -> ${rss_late} KiB"
[ ${#FAILS[@]} = 0 ] || fail "${#FAILS[@]} case(s) failed (above)"
echo "PASS imap_hostile"
