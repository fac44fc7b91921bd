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
# Cases marked KNOWN DEFECT fail on the code this test was written against; see the
# report of helper "hostile" (session 23) for the diagnosis.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
# events FILE EXPR: the events (one JSON object a line) for which EXPR over e is true
events() {
    $PY -c 'import json,signal,sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
for l in open(sys.argv[1]):
    e = json.loads(l)
    if eval(sys.argv[2]): print(json.dumps(e, separators=(",", ":")))' "$1" "$2"
}
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
    >ev.jsonl 2>err.log &
apid=$!
PIDS+=($apid)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$apid/status" 2>/dev/null || echo 0; }
sleep 6
rss_early=$(rss)
sleep $((DURATION - 8))
rss_late=$(rss)
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
FAILS=()
bad() { FAILS+=("$*"); echo "FAIL: $*" >&2; }

grep -q "Sanitizer" err.log && bad "a sanitizer report: $(grep -m3 -A3 Sanitizer err.log)"
[ "$rc" = 0 ] || bad "the agent exited $rc ($(tail -3 err.log))"
[ "$elapsed_ms" -lt $(((DURATION + 15) * 1000)) ] ||
    bad "--duration $DURATION took $elapsed_ms ms: a stalled or dripping server held the stop"
growth=$((rss_late - rss_early))
[ "$growth" -lt 262144 ] ||
    bad "RSS grew by $growth KiB between 6 s and $((DURATION - 2)) s (flooding servers)"
$PY -c 'import json,sys
for n, l in enumerate(open(sys.argv[1], "rb"), 1):
    json.loads(l.decode("utf-8"))' ev.jsonl || bad "stdout has a line that is not JSON in UTF-8"

# count EXPR: how many events match the Python expression over e
count() { events ev.jsonl "$1" | wc -l; }
found() { # mbid folder uid: how many times that message was reported found
    count "e['type']=='found' and e['mailbox_id']==$1 and e['folder']=='$2' and e['uid']==$3"
}
logged() { # mbid regex: a log line of that inbox matching regex
    grep -E "inbox $1 \(" err.log | grep -Eq "$2"
}
srv_stat() { # scenario key
    $PY -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' \
        "logs/$1.json" "$2"
}

# --- the good server: everything found once, its state advanced ---
m=${MB[good]}
for f in INBOX:1 INBOX:2 Junk:5; do
    [ "$(found "$m" "${f%%:*}" "${f##*:}")" = 1 ] ||
        bad "good server: ${f} found $(found "$m" "${f%%:*}" "${f##*:}") times, expected once"
done
[ "$(count "e['type']=='folder_state' and e['mailbox_id']==$m and e['folder']=='INBOX' and e['last_uid']==2")" -ge 1 ] ||
    bad "good server: no folder_state INBOX last_uid 2: $(events ev.jsonl "e['mailbox_id']==$m")"

# --- protocol breakers: an error naming the inbox, nothing reported as found ---
m=${MB[literal_huge]}
logged "$m" "literal too large" || bad "literal_huge: no log line naming the oversized literal"
m=${MB[literal_negative]}
logged "$m" "literal|malformed|expected" || bad "literal_negative: no log line for {-5}"
[ "$(count "e['type']=='found' and e['mailbox_id']==$m")" = 0 ] || bad "literal_negative: a find"
m=${MB[literal_drop]}
logged "$m" "closed" || bad "literal_drop: no log line for the dropped connection"
[ "$(count "e['type']=='found' and e['mailbox_id']==$m")" = 0 ] || bad "literal_drop: a find"
m=${MB[wrong_tag]}
logged "$m" "never sent" || bad "wrong_tag: no log line for the stray tag"
m=${MB[bye_fetch]}
logged "$m" "going down" || bad "bye_fetch: the server's BYE text is not in the log"
[ "$(count "e['type']=='folder_state' and e['mailbox_id']==$m and e['folder']=='INBOX'")" = 0 ] ||
    bad "bye_fetch: INBOX's state advanced past a FETCH cut short by BYE"
m=${MB[uidvalidity0]}
logged "$m" "UIDVALIDITY|response code" || bad "uidvalidity0: no log line for UIDVALIDITY 0"
[ "$(count "e['type'] in ('found','folder_state') and e['mailbox_id']==$m")" = 0 ] ||
    bad "uidvalidity0: finds or states under UIDVALIDITY 0: $(events ev.jsonl "e['mailbox_id']==$m")"

# --- odd but survivable answers ---
m=${MB[uids_weird]}
[ "$(count "e['type']=='found' and e['mailbox_id']==$m and not 1 <= e['uid'] <= 4294967295")" = 0 ] ||
    bad "uids_weird: a find with a UID outside 1..2^32-1"
conns=$(srv_stat uids_weird conns)
for u in 1 2; do
    n=$(found "$m" INBOX $u)
    [ "$n" -le "$conns" ] || bad "uids_weird: UID $u found $n times in $conns connections"
done
m=${MB[msgid_huge]}
[ "$(found "$m" INBOX 2)" = 1 ] || bad "msgid_huge: the normal message beside the 10 MB one: $(found "$m" INBOX 2) finds"
[ "$(found "$m" INBOX 1)" = 0 ] || bad "msgid_huge: the 10 MB Message-ID was reported"
m=${MB[copyuid_garbage]}
a=$(events ev.jsonl "e['type']=='action' and e['action_id']==1201")
[ -n "$a" ] || bad "copyuid_garbage: no outcome for the rescue the server said it did"
[ "$(count "e['type']=='action' and e['action_id']==1201 and not (e.get('uid') is None or 1 <= e['uid'] <= 4294967295) ")" = 0 ] ||
    bad "copyuid_garbage: an outcome with a garbage UID: $a"
m=${MB[utf7_invalid]}
[ "$(found "$m" INBOX 1)" = 1 ] || bad "utf7_invalid: INBOX's mail beside a junk folder named in raw bytes"

# --- names no IMAP command can carry: that folder or action fails, said so; the rest
# goes on; and the agent never answers with a TLS handshake on a plaintext connection ---
m=${MB[good_tls]}
[ "$(found "$m" INBOX 1)" = 1 ] && [ "$(found "$m" Junk 5)" = 1 ] ||
    bad "good_tls: the implicit-TLS server's mail: $(events ev.jsonl "e['mailbox_id']==$m")"
for sc in junk_crlf junk_crlf_tls; do
    m=${MB[$sc]}
    [ "$(found "$m" INBOX 1)" = 1 ] || bad "$sc: INBOX's mail not found"
    [ "$(srv_stat $sc tls_hello)" = 0 ] && [ "$(srv_stat $sc tls_garbage)" = 0 ] ||
        bad "KNOWN DEFECT $sc: the agent started a TLS handshake inside the IMAP session ($(srv_stat $sc tls_hello) plaintext, $(srv_stat $sc tls_garbage) inside TLS: ib_select's -1 taken as an event mask)"
    grep -E "inbox $m \(" err.log | grep -Eq "session [a-z]+: .|folder" ||
        bad "KNOWN DEFECT $sc: nothing says why the junk folder is never checked: $(grep -E "inbox $m \(" err.log | tail -2)"
done
m=${MB[namespace_crlf]}
[ "$(srv_stat namespace_crlf tls_hello)" = 0 ] ||
    bad "KNOWN DEFECT namespace_crlf: the agent started TLS on a plaintext IMAP connection (a CREATE it could not build, -1 taken as an event mask)"
[ "$(count "e['type']=='action' and e['action_id']==1701 and e['status'] in ('failed','refused')")" -ge 1 ] ||
    bad "KNOWN DEFECT namespace_crlf: no failed outcome for the file action: $(events ev.jsonl "e['mailbox_id']==$m")"

# --- work bounded per visit ---
m=${MB[uidnext_huge]}
[ "$(found "$m" INBOX 1)" = 1 ] || bad "uidnext_huge: its one message found $(found "$m" INBOX 1) times"
[ "$(count "e['type']=='folder_state' and e['mailbox_id']==$m and e['folder']=='INBOX'")" -ge 1 ] ||
    bad "KNOWN DEFECT uidnext_huge: INBOX's check never ended ($(srv_stat uidnext_huge fetches) UID FETCH commands for one message: UIDNEXT 2^32-1 walked 500 UIDs at a time)"
m=${MB[fetch_flood]}
n=$(found "$m" INBOX 1)
[ "$n" -le "$(srv_stat fetch_flood conns)" ] ||
    bad "KNOWN DEFECT fetch_flood: one message reported found $n times from one FETCH answer"

echo "elapsed ${elapsed_ms} ms, RSS ${rss_early} -> ${rss_late} KiB, $(wc -l <ev.jsonl) events;" \
    "uidnext_huge: $(srv_stat uidnext_huge fetches) fetches; fetch_flood: $(found "${MB[fetch_flood]}" INBOX 1) finds"
[ ${#FAILS[@]} = 0 ] || fail "${#FAILS[@]} case(s) failed (above)"
echo "PASS imap_hostile"
