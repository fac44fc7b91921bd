#!/usr/bin/env bash
# `make up`: the whole local stack under var/ with embedded defaults — a private
# PostgreSQL cluster, ${KILN_API_PROCESSES:-2} kiln-api processes (each under its restart
# loop) behind nginx on 127.0.0.1:${KILN_HTTP_PORT:-8080}, a local SMTP sink (Postfix's
# smtp-sink on 127.0.0.1:${KILN_SINK_PORT:-2525}) so nothing leaves the machine, a real
# mail path (a Postfix instance delivering over LMTP into Dovecot,
# deploy/local/mailstack.sh; needs root, else the demo uses the sink), demo users and
# mailboxes, and one kiln-agent when the build has its lease loop. Idempotent: running
# it again restarts what is down and keeps the data.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
var=$src/var
port=${KILN_HTTP_PORT:-8080}
sink_port=${KILN_SINK_PORT:-2525}
# shellcheck source=stack.sh
source "$src/deploy/local/stack.sh"
if [ -f "$var/stack.env" ]; then
    # Reuse the PostgreSQL port of the existing cluster (and of every cell's).
    STACK_PG_PORT=$(sed -n 's/^STACK_PG_PORT=//p' "$var/stack.env")
    eval "$(grep -E '^STACK_PG_PORT_[0-9]=[0-9]+$' "$var/stack.env" || true)"
fi
if curl -s -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null &&
    ! [ -f "$var/run/nginx.pid" ]; then
    echo "up: port $port is taken by something else; set KILN_HTTP_PORT" >&2
    exit 1
fi
# Two kiln-api processes by default, as the production site runs two instances: nginx
# spreads requests over both, and a crash of one is invisible to the demo's agent (nginx
# moves to the other while its loop restarts it). KILN_API_PROCESSES=1 for one.
export KILN_API_PROCESSES=${KILN_API_PROCESSES:-2}
# The demo's three "providers" share one Dovecot on 127.0.0.1: the operator's provider map
# says which is which, so placement and health by provider mean something
# (docs/operations.md "Recipient providers").
export KILN_PROVIDER_MAP=${KILN_PROVIDER_MAP:-acme.test=gmail,globex.test=outlook,initech.test=yahoo}
stack_init "$var" "$build" "$port"

step() { printf '==> %s\n' "$*"; }
# Each under its own restart loop of stack.sh: a crash is logged to
# var/log/kiln-api[-N]-restarts.log and that process comes back; `make down` stops the
# loops first.
export STACK_API_RESTART=${STACK_API_RESTART:-1}
# KILN_CELLS=N (default 1) runs N cells, each its own PostgreSQL and kiln-api processes
# serving pool N; cell 1 in var/, cell N in var/cell-N/ (docs/scale.md).
for cell in $(seq 1 "$STACK_CELLS"); do
    stack_cell "$cell"
    step "cell $cell (pool $cell): PostgreSQL (${STACK_CELL_VAR#"$src/"}/pg, socket in ${STACK_CELL_VAR#"$src/"}/pg/run)"
    [ -f "$STACK_PGDATA/postmaster.pid" ] && stack_as_pg "$(stack_pg_bin)/pg_ctl" -D "$STACK_PGDATA" status >/dev/null 2>&1 ||
        stack_pg_up
    step "cell $cell: kiln-api x $KILN_API_PROCESSES (migrations, FastCGI on ${STACK_CELL_VAR#"$src/"}/run/api[-N].sock, each restarted if it dies)"
    api_running=1
    for n in $(seq 1 "$KILN_API_PROCESSES"); do
        f=$(stack_api_file "$n" loop)
        { [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; } || api_running=0
    done
    if [ $api_running = 0 ]; then
        stack_api_down # unsupervised or fewer processes from an older run, if any
        stack_api_up
        # nginx's upstream lists the sockets: reload it when it runs with another count.
        stack_nginx_down
    fi
done
stack_cell 1
step "nginx on $STACK_URL"
if ! { [ -f "$var/run/nginx.pid" ] && kill -0 "$(cat "$var/run/nginx.pid")" 2>/dev/null; }; then
    stack_nginx_up
fi
token=$(stack_admin_token)

step "SMTP sink on 127.0.0.1:$sink_port"
if ! { [ -f "$var/run/smtp-sink.pid" ] && kill -0 "$(cat "$var/run/smtp-sink.pid")" 2>/dev/null; }; then
    sink_user=()
    [ "$(id -u)" -eq 0 ] && sink_user=(-u nobody)
    /usr/sbin/smtp-sink "${sink_user[@]}" -c -h kiln-sink.local "127.0.0.1:$sink_port" 256 \
        >>"$var/log/smtp-sink.log" 2>&1 &
    echo $! >"$var/run/smtp-sink.pid"
fi

step "mail: Postfix on 127.0.0.1:${KILN_MX_PORT:-2526} -> LMTP -> Dovecot IMAP on 127.0.0.1:${KILN_IMAP_PORT:-1143}"
# The demo's recipient side (deploy/local/mailstack.sh): three "providers" whose Sieve
# "filter" junks 40 %, 5 % and 15 % of warmup mail. Postfix's master needs root; without
# it the demo sends into the SMTP sink and has no inboxes to watch.
# shellcheck source=mailstack.sh
source "$src/deploy/local/mailstack.sh"
mail_init "$var"
mail_domain acme.test 40
mail_domain globex.test 5
mail_domain initech.test 15
for name in acme globex initech; do
    for i in $(seq 1 10); do mail_user "user$i@$name.test" "demo-password-$i"; done
done
mail_ok=0
if mail_up; then
    mail_ok=1
else
    echo "    (no real delivery: the demo sends into the SMTP sink; see var/log/postfix.log)"
fi

step "demo data (plan 'demo', 3 users, 30 mailboxes)"
api() { curl -s -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
if ! api "$STACK_URL/api/plans" | grep -q '"name":"demo"'; then
    # A demo-speed engagement plan: act after about a minute (not the default 30), no
    # quiet hours (the demo users sit in three time zones), a third of mail answered.
    api -d '{"name":"demo","ramp_start":10,"ramp_step":5,"daily_max":40,"cooldown_min_s":5,
             "cooldown_max_s":15,"user_hourly_cap":5000,"user_minute_cap":200,
             "dwell_median_min":1,"dwell_max_min":2,"quiet_start_hour":0,"quiet_end_hour":0,
             "reply_rate":0.3}' \
        "$STACK_URL/api/plans" >/dev/null
    plan_id=$(api "$STACK_URL/api/plans" | /usr/bin/python3 -c \
        'import json,sys; print([p["id"] for p in json.load(sys.stdin)["items"] if p["name"]=="demo"][0])')
    for u in acme:Europe/Berlin globex:America/New_York initech:Asia/Tokyo; do
        name=${u%%:*} tz=${u#*:}
        uid=$(api -d "{\"name\":\"$name\",\"plan_id\":$plan_id,\"timezone\":\"$tz\"}" \
            "$STACK_URL/api/users" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
        for i in $(seq 1 10); do
            addr=user$i@$name.test pw=demo-password-$i
            if [ $mail_ok = 1 ]; then
                access="\"smtp\":{\"host\":\"127.0.0.1\",\"port\":$MAIL_MX_PORT,\"security\":\"plain\",
                         \"username\":\"$addr\",\"password\":\"$pw\",\"allow_plaintext_auth\":true},
                        \"imap\":{\"host\":\"127.0.0.1\",\"port\":$MAIL_IMAP_PORT,\"security\":\"plain\",
                         \"username\":\"$addr\",\"password\":\"$pw\",\"allow_plaintext_auth\":true}"
            else
                access="\"smtp\":{\"host\":\"127.0.0.1\",\"port\":$sink_port,\"security\":\"plain\",
                         \"username\":\"$addr\",\"password\":\"$pw\",\"allow_plaintext_auth\":true}"
            fi
            api -d "{\"user_id\":$uid,\"address\":\"$addr\",\"display_name\":\"User $i\",$access,
                     \"window\":{\"start_hour\":0,\"end_hour\":24}}" \
                "$STACK_URL/api/mailboxes" >/dev/null
        done
    done
fi

agent="$build/agent/kiln-agent"
if "$agent" run --help >/dev/null 2>&1; then
    step "kiln-agent (lease loop against $STACK_URL)"
    if ! { [ -f "$var/run/kiln-agent.pid" ] && kill -0 "$(cat "$var/run/kiln-agent.pid")" 2>/dev/null; }; then
        if [ ! -s "$var/agent.token" ]; then
            api -d '{"name":"local-agent"}' "$STACK_URL/api/agents" | /usr/bin/python3 -c \
                'import json,sys; print(json.load(sys.stdin)["token"])' >"$var/agent.token"
            chmod 600 "$var/agent.token"
        fi
        mkdir -p "$var/agent-spool"
        # with the real mail path the agent also watches the demo inboxes (inbox leases):
        # a pass over INBOX and Junk every 20 s so the loop shows within a minute or two
        inboxes=0
        [ $mail_ok = 1 ] && inboxes=${KILN_AGENT_MAX_INBOXES:-100}
        KILN_API_URL=$STACK_URL KILN_AGENT_TOKEN_FILE=$var/agent.token \
            KILN_AGENT_SPOOL_DIR=$var/agent-spool KILN_AGENT_NAME=local-agent \
            KILN_AGENT_MAX_INBOXES=$inboxes \
            KILN_AGENT_IMAP_POLL_MAX_MS=${KILN_AGENT_IMAP_POLL_MAX_MS:-20000} \
            "$agent" run >>"$var/log/kiln-agent.log" 2>&1 &
        echo $! >"$var/run/kiln-agent.pid"
    fi
else
    echo "    (this build's kiln-agent has no lease loop yet: 'kiln-agent send --file' works by hand)"
fi

cat <<MSG

kiln is up at $STACK_URL  (logs in var/log/, stop with: make down)
  $KILN_API_PROCESSES kiln-api process(es) behind nginx, each restarted if it dies
  (logs var/log/kiln-api[-N].log, restarts in var/log/kiln-api[-N]-restarts.log)
  admin token: var/admin.token
  TOKEN=\$(cat var/admin.token)
  curl -H "Authorization: Bearer \$TOKEN" $STACK_URL/api/warmup/quota?status=behind
  curl -H "Authorization: Bearer \$TOKEN" $STACK_URL/metrics
  curl -H "Authorization: Bearer \$TOKEN" $STACK_URL/api/warmup/control
  curl -H "Authorization: Bearer \$TOKEN" -d '{"action":"stop"}' $STACK_URL/api/warmup/control
MSG
if [ $mail_ok = 1 ]; then
    cat <<MSG
  warmup mail is delivered for real (var/log/postfix.log, var/log/dovecot.log); look inside:
  doveadm -c var/mail/dc/dovecot.conf mailbox status -u user1@acme.test messages INBOX Junk
  the agent watches those inboxes: found mail becomes placements, junked mail is rescued
  curl -s -H "Authorization: Bearer \$TOKEN" $STACK_URL/metrics | grep -E '^kiln_(placement|actions)_total'
  curl -s -H "Authorization: Bearer \$TOKEN" $STACK_URL/api/mailboxes/1   (its "inbox": ok)
MSG
fi
