#!/bin/bash
# `kiln-agent inbox --file --once` against a real Dovecot: a first pass over the new
# inbox reports only the folders' state (mail already there is not kiln's business);
# then messages delivered over LMTP
# land in INBOX, or in Junk by a Sieve rule on a header the test sets; the agent reports
# a `found` event for each kiln Message-ID with its folder role (inbox, junk), UID,
# Authentication-Results and INTERNALDATE, nothing for a foreign Message-ID, and each folder's state.
# A second pass resumes from that state (no repeat) and applies the actions: `rescue`
# moves the junked message to INBOX (UID MOVE; action `done` with its new UID, checked
# by a separate IMAP read: in INBOX, gone from Junk), `mark` adds \Seen \Flagged and
# reports the confirmed flags; an action on a stale UIDVALIDITY is `stale`; an action
# due 3 s later brings the next poll forward. Dovecot's
# rawlog shows only UID commands (no sequence-number STORE, no bare EXPUNGE).
source "$(dirname "$0")/lib.sh"
DOVECOT_SIEVE=1 DOVECOT_RAWLOG=1
source "$HERE/dovecot_lib.sh"
dovecot_user anna@acme.test s3cret
dovecot_start
cd "$WORK"
A=$(kiln_id 9001) B=$(kiln_id 9002) J=$(kiln_id 9003)
deliver anna@acme.test "$(kiln_id 9000)" # there before the inbox was watched
make_inboxes in0.json "7:127.0.0.1:$IMAP_PORT:plain:anna@acme.test:s3cret:-"
timeout 40 "$AGENT" inbox --file in0.json --once >ev0.jsonl 2>err0.log ||
    fail "first pass: exit $? ($(cat err0.log))"
! grep -q '"type":"found"' ev0.jsonl || fail "the first pass reported mail that was there before: $(cat ev0.jsonl)"
[ "$(events ev0.jsonl "e['type']=='folder_state'" | wc -l)" = 2 ] ||
    fail "expected the state of INBOX and Junk: $(cat ev0.jsonl)"
export INBOX_FOLDERS_JSON=$(folders_of ev0.jsonl 7)
deliver anna@acme.test "$A"
deliver anna@acme.test "<customer.mail@elsewhere.test>"
deliver anna@acme.test "$B"
deliver anna@acme.test "$J" junk
[ "$(folder_ids anna@acme.test s3cret Junk)" = "$J" ] ||
    fail "the Sieve rule did not file the message into Junk: $(tail -5 "$D/dovecot.log")"

make_inboxes in1.json "7:127.0.0.1:$IMAP_PORT:plain:anna@acme.test:s3cret:-"
timeout 40 "$AGENT" inbox --file in1.json --once >ev1.jsonl 2>err1.log ||
    fail "inbox --once: exit $? ($(cat err1.log))"
found() { events "$1" "e['type']=='found' and $2"; }
[ "$(found ev1.jsonl "e['role']=='inbox'" | wc -l)" = 2 ] || fail "expected 2 found in INBOX: $(cat ev1.jsonl)"
found ev1.jsonl "e['role']=='inbox' and e['message_id']=='$A' and e['folder']=='INBOX'" | grep -q . ||
    fail "$A not found in INBOX: $(cat ev1.jsonl)"
jl=$(found ev1.jsonl "e['role']=='junk' and e['message_id']=='$J' and e['folder']=='Junk'")
[ -n "$jl" ] || fail "$J not found in Junk: $(cat ev1.jsonl)"
echo "$jl" | grep -q '"authentication_results":"mx.acme.test; spf=pass' ||
    fail "no Authentication-Results in the found event: $jl"
echo "$jl" | grep -qE '"internal_date":"20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"' ||
    fail "no INTERNALDATE in the found event: $jl"
! grep -q elsewhere.test ev1.jsonl || fail "a foreign Message-ID was reported: $(cat ev1.jsonl)"
events ev1.jsonl "e['type']=='session' and e['status']=='ok'" | grep -q . || fail "no session ok"

# the second pass: the folder state of the first, a rescue, a mark, a stale action
juid=$(echo "$jl" | $PY -c 'import json,sys; print(json.load(sys.stdin)["uid"])')
juv=$(echo "$jl" | $PY -c 'import json,sys; print(json.load(sys.stdin)["uidvalidity"])')
al=$(found ev1.jsonl "e['message_id']=='$A'")
auid=$(echo "$al" | $PY -c 'import json,sys; print(json.load(sys.stdin)["uid"])')
auv=$(echo "$al" | $PY -c 'import json,sys; print(json.load(sys.stdin)["uidvalidity"])')
export INBOX_FOLDERS_JSON=$(folders_of ev1.jsonl 7)
export INBOX_ACTIONS_JSON="{\"7\": [
 {\"id\": 501, \"kind\": \"rescue\", \"folder\": \"Junk\", \"uidvalidity\": $juv, \"uid\": $juid, \"flags\": [], \"target\": \"inbox\", \"not_before_s\": 0},
 {\"id\": 502, \"kind\": \"mark\", \"folder\": \"INBOX\", \"uidvalidity\": $auv, \"uid\": $auid, \"flags\": [\"\\\\Seen\", \"\\\\Flagged\"], \"target\": null, \"not_before_s\": 0},
 {\"id\": 503, \"kind\": \"mark\", \"folder\": \"INBOX\", \"uidvalidity\": 12345, \"uid\": $auid, \"flags\": [\"\\\\Seen\"], \"target\": null, \"not_before_s\": 0}]}"
make_inboxes in2.json "7:127.0.0.1:$IMAP_PORT:plain:anna@acme.test:s3cret:-"
timeout 40 "$AGENT" inbox --file in2.json --once >ev2.jsonl 2>err2.log ||
    fail "second pass: exit $? ($(cat err2.log))"
! events ev2.jsonl "e['type']=='found' and e['folder']=='Junk'" | grep -q . ||
    fail "the second pass reported Junk's message again: $(cat ev2.jsonl)"
r=$(events ev2.jsonl "e['type']=='action' and e['action_id']==501")
echo "$r" | grep -q '"status":"done"' || fail "rescue: $r (all: $(cat ev2.jsonl); $(cat err2.log))"
echo "$r" | grep -q '"folder":"INBOX"' || fail "rescue does not name INBOX: $r"
echo "$r" | grep -q '"uid":[1-9]' || fail "rescue gives no new UID: $r"
folder_ids anna@acme.test s3cret INBOX | grep -qxF "$J" || fail "the rescued message is not in INBOX"
[ -z "$(folder_ids anna@acme.test s3cret Junk)" ] || fail "Junk still holds the rescued message"
m=$(events ev2.jsonl "e['type']=='action' and e['action_id']==502")
echo "$m" | grep -q '"status":"done"' || fail "mark: $m"
echo "$m" | grep -q 'Flagged' && echo "$m" | grep -q 'Seen' || fail "mark: flags not confirmed: $m"
events ev2.jsonl "e['type']=='action' and e['action_id']==503" | grep -q '"status":"stale"' ||
    fail "an action on another UIDVALIDITY is not stale: $(cat ev2.jsonl)"
in=$(cat "$D"/home/anna@acme.test/rawlog/*.in 2>/dev/null)
[ -n "$in" ] || fail "no rawlog written"
echo "$in" | grep -q "UID MOVE" || fail "no UID MOVE in the rawlog"
! echo "$in" | grep -iE '^[^ ]+ [^ ]+ (STORE|EXPUNGE|COPY|MOVE|FETCH) ' || fail "a sequence-number command (above)"
# an action due 3 s after the hand-over brings the next poll forward (medium class:
# otherwise 5 minutes away)
export INBOX_FOLDERS_JSON=$(folders_of ev2.jsonl 7)
export INBOX_ACTIONS_JSON="{\"7\": [{\"id\": 504, \"kind\": \"mark\", \"folder\": \"INBOX\",
  \"uidvalidity\": $auv, \"uid\": $auid, \"flags\": [\"\\\\Answered\"], \"target\": null,
  \"not_before_s\": 3}]}"
make_inboxes in3.json "7:127.0.0.1:$IMAP_PORT:plain:anna@acme.test:s3cret:-"
timeout 30 "$AGENT" inbox --file in3.json --duration 8 >ev3.jsonl 2>err3.log ||
    fail "--duration 8: exit $? ($(cat err3.log))"
events ev3.jsonl "e['type']=='action' and e['action_id']==504 and e['status']=='done'" | grep -q Answered ||
    fail "an action due in 3 s was not done within 8 s: $(cat ev3.jsonl)"
[ "$(events ev3.jsonl "e['type']=='session'" | wc -l)" = 1 ] || fail "session events: $(cat ev3.jsonl)"
echo "PASS imap_inbox_find"
