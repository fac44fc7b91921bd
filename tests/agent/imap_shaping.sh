#!/bin/bash
# Per-IMAP-server shaping: sixteen high-class inboxes of one account (each holds its
# connection in IDLE) on one Dovecot that admits three connections per user and address
# (mail_max_userip_connections): with the server's connection cap at 3, three log in
# and idle and nobody is refused (the others queue); with the cap at 16 Dovecot refuses
# some, so the cap is what keeps them apart. Three inboxes on a server that answers "BYE too many connections"
# are `throttled` and the server paused: in 3 s nobody connects again (the accounts'
# own backoff would have retried after ~2 s).
source "$(dirname "$0")/lib.sh"
source "$HERE/dovecot_lib.sh"
dovecot_user anna@acme.test s3cret
dc_write_conf
printf 'protocol imap {\n  mail_max_userip_connections = 3\n}\n' >>"$D/dovecot.conf"
dovecot_start
cd "$WORK"
specs=()
for i in $(seq 1 16); do specs+=("$i:127.0.0.1:$IMAP_PORT:plain:anna@acme.test:s3cret:-:high"); done
make_inboxes in.json "${specs[@]}"
run() { # cap: 3 s of watching (every session may IDLE: the share is imap_idle_share's)
    KILN_AGENT_IMAP_IDLE_SHARE=100 timeout 40 "$AGENT" inbox --file in.json --duration 3 --server-max-conns "$1" \
        --server-conns-per-min 60000 >"ev$1.jsonl" 2>"err$1.log" || fail "cap $1: exit $?"
}
count() { # cap status
    events "ev$1.jsonl" "e['type']=='session' and e['status']$2" | wc -l
}
run 3
[ "$(count 3 "=='ok'")" = 3 ] && [ "$(count 3 "!='ok'")" = 0 ] ||
    fail "cap 3: expected 3 logins and no refusal: $(cat ev3.jsonl)"
run 16
[ "$(count 16 "!='ok'")" -gt 0 ] ||
    fail "cap 16: nobody refused, so the test cannot tell the cap works: $(cat ev16.jsonl)"
echo "cap 3: 3 logins, 0 refused; cap 16: $(count 16 "=='ok'") logins, $(count 16 "!='ok'") refused"

tp=$(free_port)
start_py "$HERE/imap_throttle_server.py" --port "$tp" --count-file "$WORK/count"
make_inboxes th.json "1:127.0.0.1:$tp:plain:u:p:-" "2:127.0.0.1:$tp:plain:u:p:-" \
    "3:127.0.0.1:$tp:plain:u:p:-"
rc=0
timeout 20 "$AGENT" inbox --file th.json --duration 3 >th.jsonl 2>th.log || rc=$?
[ "$rc" = 0 ] || fail "--duration 3: exit $rc ($(cat th.log))"
[ "$(cat "$WORK/count")" = 3 ] ||
    fail "$(cat "$WORK/count") connections to a server that said too many (expected 3, then a pause)"
events th.jsonl "e['type']=='session' and e['status']=='throttled'" | grep -q . ||
    fail "no throttled session event: $(cat th.jsonl)"
echo "PASS imap_shaping"
