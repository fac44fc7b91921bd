#!/bin/bash
# A server without MOVE (Dovecot's imap_capability without it, UIDPLUS kept): the
# agent rescues a junked message with UID COPY + UID STORE \Deleted + UID EXPUNGE of
# that UID alone (Dovecot's rawlog: no UID MOVE, no bare EXPUNGE); the action is `done`
# with the new UID in INBOX (COPYUID), and a separate IMAP read finds the message in
# INBOX and no longer in Junk.
source "$(dirname "$0")/lib.sh"
DOVECOT_SIEVE=1 DOVECOT_RAWLOG=1 DOVECOT_NO_MOVE=1
source "$HERE/dovecot_lib.sh"
dovecot_user anna@acme.test s3cret
dovecot_start
cd "$WORK"
pass() { # name: one `inbox --file --once` pass over mailbox 8
    make_inboxes "$1.json" "8:127.0.0.1:$IMAP_PORT:plain:anna@acme.test:s3cret:-"
    timeout 40 "$AGENT" inbox --file "$1.json" --once >"$1.jsonl" 2>"$1.log" ||
        fail "pass $1: exit $? ($(cat "$1.log"))"
}
pass p0
export INBOX_FOLDERS_JSON=$(folders_of p0.jsonl 8)
J=$(kiln_id 777)
deliver anna@acme.test "$(kiln_id 776)"
deliver anna@acme.test "$J" junk
pass p1
jl=$(events p1.jsonl "e['type']=='found' and e['role']=='junk'")
[ -n "$jl" ] || fail "nothing found in Junk: $(cat p1.jsonl)"
export INBOX_FOLDERS_JSON=$(folders_of p1.jsonl 8)
export INBOX_ACTIONS_JSON="{\"8\": [{\"id\": 9, \"kind\": \"rescue\", \"folder\": \"Junk\",
  \"uidvalidity\": $(field "$jl" uidvalidity), \"uid\": $(field "$jl" uid), \"flags\": [],
  \"target\": \"inbox\", \"not_before_s\": 0}]}"
pass p2
r=$(events p2.jsonl "e['type']=='action' and e['action_id']==9")
echo "$r" | grep -q '"status":"done"' || fail "rescue without MOVE: $r ($(cat p2.jsonl))"
echo "$r" | grep -q '"folder":"INBOX"' && echo "$r" | grep -q '"uid":[1-9]' ||
    fail "rescue does not say where the message is now: $r"
folder_ids anna@acme.test s3cret INBOX | grep -qxF "$J" || fail "the rescued message is not in INBOX"
[ -z "$(folder_ids anna@acme.test s3cret Junk)" ] || fail "Junk still holds the rescued message"
in=$(cat "$D"/home/anna@acme.test/rawlog/*.in)
! echo "$in" | grep -q "UID MOVE" || fail "UID MOVE sent to a server that does not offer it"
for c in "UID COPY" "UID STORE" "UID EXPUNGE"; do
    echo "$in" | grep -q "$c" || fail "no $c in the rawlog: $in"
done
! echo "$in" | grep -iE '^[^ ]+ [^ ]+ (STORE|EXPUNGE|COPY|MOVE|FETCH)( |$)' ||
    fail "a sequence-number command or a folder-wide EXPUNGE (above)"
echo "PASS imap_inbox_nomove"
