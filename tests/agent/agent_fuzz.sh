#!/bin/bash
# Builds the libFuzzer targets for the reply parser, the session machine, the IMAP
# response parser (seeded with a real Dovecot transcript, fuzz_corpus/) and the
# agent's wire parses (the streaming lease parser, the heartbeat and error answers) with
# clang (address + undefined sanitizers) straight from the sources, and runs each for
# a bounded time. Skipped only when clang or its fuzzer runtime is missing.
source "$(dirname "$0")/lib.sh"
SRC="${KILN_SOURCE_DIR:?}"
command -v clang >/dev/null || skip "clang not installed"
FUZZ_S=${KILN_FUZZ_SECONDS:-15}
CFLAGS=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -D_GNU_SOURCE -I"$SRC/agent" -I"$SRC/agent/smtp" -I"$SRC/common")
COMMON=("$SRC/common/buf.c" "$SRC/common/xalloc.c" "$SRC/common/codec.c" "$SRC/common/wire.c"
        -lcrypto)
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}' >"$WORK/probe.c"
clang -fsanitize=fuzzer "$WORK/probe.c" -o "$WORK/probe" 2>/dev/null || skip "clang has no libFuzzer runtime"

clang "${CFLAGS[@]}" "$HERE/fuzz_smtp_reply.c" "$SRC/agent/smtp/smtp_reply.c" -o "$WORK/fuzz_reply" ||
    fail "building fuzz_smtp_reply"
clang "${CFLAGS[@]}" "$HERE/fuzz_smtp_session.c" "$SRC/agent/smtp/smtp_session.c" \
    "$SRC/agent/smtp/smtp_reply.c" "${COMMON[@]}" -o "$WORK/fuzz_session" || fail "building fuzz_smtp_session"
# the wire module builds the scheduler's job structs (sched/jobs.h)
clang "${CFLAGS[@]}" -I"$SRC/agent/sched" -I"$SRC/agent/lease" -I"$SRC/agent/net" -I"$SRC/agent/net/iface" \
    "$HERE/fuzz_jobs.c" "$SRC/agent/lease/agent_wire.c" "$SRC/agent/lease/agent_wire_lease.c" \
    "$SRC/agent/sched/jobs.c" "$SRC/agent/smtp/smtp_session.c" "$SRC/agent/smtp/smtp_reply.c" \
    "$SRC/common/json.c" "$SRC/common/config.c" "${COMMON[@]}" -lyajl -o "$WORK/fuzz_jobs" ||
    fail "building fuzz_jobs"

# the IMAP response parser (agent/imap), its modified UTF-7 decoder and the session
clang "${CFLAGS[@]}" -I"$SRC/agent/imap" -I"$SRC/agent/net/iface" "$HERE/fuzz_imap_resp.c" \
    "$SRC/agent/imap"/*.c "$SRC/common/arena.c" "$SRC/common/i64map.c" "${COMMON[@]}" -o "$WORK/fuzz_imap" ||
    fail "building fuzz_imap_resp"
# the inbox session (agent/imap/imap_inbox*): no crash, no command on a sequence number
clang "${CFLAGS[@]}" -I"$SRC/agent/imap" -I"$SRC/agent/net/iface" "$HERE/fuzz_imap_inbox.c" \
    "$SRC/agent/imap"/*.c "$SRC/common/arena.c" "$SRC/common/i64map.c" "${COMMON[@]}" -o "$WORK/fuzz_inbox" ||
    fail "building fuzz_imap_inbox"

mkdir -p "$WORK/c1" "$WORK/c2" "$WORK/c3" "$WORK/c4" "$WORK/c5"
for f in "$HERE"/fuzz_corpus/imap_*; do { printf '\x05'; cat "$f"; } >"$WORK/c4/$(basename "$f")"; done
# inbox seeds: chunk size byte, then mode (1 stored folders, 2 IDLE, 4 wake, 8 tick, 16 stop,
# 32 roles from the stored folders, 64 pipelined checks)
for f in "$HERE"/fuzz_corpus/inbox_*; do
    for m in 03 0f 1e 61 47; do { printf "\\x1e\\x$m"; cat "$f"; } >"$WORK/c5/$(basename "$f")_$m"; done
done
printf '\x00* 1 FETCH (UID 4 FLAGS (\\Seen) BODY[HEADER.FIELDS (MESSAGE-ID)] {20}\r\nMessage-ID: <a@b>\r\n\r\n)\r\n' >"$WORK/c4/seed1"
printf '\x03* OK [COPYUID 17 3:5,9 10:13] Moved\r\n* LIST (\\Junk) "/" "Entw&APw-rfe"\r\n+ idling\r\nK1 NO [TRYCREATE] x\r\n' >"$WORK/c4/seed2"
printf '{"lease_id":"L","ttl_s":60,"mailboxes":[{"id":1,"address":"a@b.test","display_name":"A","smtp":{"host":"h","port":25,"security":"starttls","username":"u","password":"p","ca_file":null},"sends":[{"id":2,"not_before_s":5,"to":"c@d.test","subject":"s","body":"b","message_id":"<m@b.test>"}]}],"x":[{}]}' >"$WORK/c3/seed1"
printf '{"lease_id":null,"ttl_s":600,"mailboxes":[],"retry_after_s":7,"service":"stopped"}' >"$WORK/c3/seed2"
printf '{"lease_id":"L","expires_at":"2026-01-01T00:00:00Z","ttl_s":60,"cancel":[3,4],"service":"running"}' >"$WORK/c3/seed3"
printf '{"error":{"code":"unknown_send","field":"results[1].send_id","message":"m"}}' >"$WORK/c3/seed4"
printf '{"lease_id":"L","ttl_s":60,"mailboxes":[{"id":1,"address":"a@b.test","smtp":{"host":"h","port":25,"security":"plain"},"sends":[{"id":2,"to":"c@d.test","subject":"Re: s","body":"b","in_reply_to":"<1.1ab@x.test>","references":["<0.1cd@y.test>","<1.1ab@x.test>"]}]}]}' >"$WORK/c3/seed5"
printf '\x05250-mx\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n' >"$WORK/c1/seed1"
printf '\x03220 mx\r\n250 2.0.0 ok\r\n' >"$WORK/c1/seed2"
printf '\x05\x07220 mx\r\n250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n220 go\r\n250 PIPELINING\r\n235 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n' >"$WORK/c2/seed1"
printf '\x00\x03220 mx\r\n250 mx\r\n250 ok\r\n550 no\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n451 later\r\n' >"$WORK/c2/seed2"
printf '\x00\x83220 mx\r\n250-mx\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n' >"$WORK/c2/seed3"
cd "$WORK"
"$WORK/fuzz_reply" -max_total_time="$FUZZ_S" -max_len=4096 -rss_limit_mb=1024 "$WORK/c1" >reply.log 2>&1 ||
    fail "fuzz_smtp_reply found a crash: $(tail -40 reply.log)"
"$WORK/fuzz_session" -max_total_time="$FUZZ_S" -max_len=4096 -rss_limit_mb=1024 "$WORK/c2" >session.log 2>&1 ||
    fail "fuzz_smtp_session found a crash: $(tail -40 session.log)"
printf 'kw1="\\"mailboxes\\""\nkw2="\\"sends\\""\nkw3="\\"smtp\\""\nkw4="\\"security\\""\nkw5="\\"port\\""\nkw6="\\"id\\""\nkw7="\\"lease_id\\""\nkw8="\\"retry_after_s\\""\nkw9="\\"service\\""\nkw10="\\"cancel\\""\nkw11="null"\nkw12="\\"in_reply_to\\""\nkw13="\\"references\\""\nkw14="<a@[b]>"\n' >jobs.dict
"$WORK/fuzz_jobs" -max_total_time="$FUZZ_S" -max_len=4096 -rss_limit_mb=1024 -dict=jobs.dict "$WORK/c3" \
    >jobs.log 2>&1 || fail "fuzz_jobs found a crash: $(tail -40 jobs.log)"
printf 'kw1="FETCH"\nkw2="{5}\\x0d\\x0a"\nkw3="[COPYUID "\nkw4="BODY[HEADER.FIELDS (MESSAGE-ID)]"\nkw5="\\x0d\\x0a"\nkw6="* LIST ("\nkw7="NIL"\nkw8="{3+}\\x0d\\x0a"\n' >imap.dict
"$WORK/fuzz_imap" -max_total_time="$FUZZ_S" -max_len=4096 -rss_limit_mb=1024 -dict=imap.dict "$WORK/c4" \
    >imap.log 2>&1 || fail "fuzz_imap_resp found a crash: $(tail -40 imap.log)"
printf 'kw1="UID "\nkw2="[COPYUID "\nkw3="+ idling\\x0d\\x0a"\nkw4="EXISTS\\x0d\\x0a"\nkw5="* LIST (\\\\Junk) "\nkw6="[UIDVALIDITY "\nkw7="[UIDNEXT "\nkw8="{3}\\x0d\\x0a"\nkw9="Message-ID: <1.a0123456789abcdef@a.b>"\nkw10="EXPUNGE\\x0d\\x0a"\n' >inbox.dict
"$WORK/fuzz_inbox" -max_total_time="$FUZZ_S" -max_len=8192 -rss_limit_mb=1024 -dict=inbox.dict "$WORK/c5" \
    >inbox.log 2>&1 || fail "fuzz_imap_inbox found a crash: $(tail -40 inbox.log)"
grep -h "Done" reply.log session.log jobs.log imap.log inbox.log || true
echo "PASS agent_fuzz"
