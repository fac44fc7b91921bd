# Shell library (sourced) that runs kiln's local stack under one directory: a private
# PostgreSQL cluster, kiln-api (FastCGI) and nginx in front of it. Used by `make up`
# (deploy/local/up.sh) and by the integration tests, so both run the same way.
#
#   stack_init VAR_DIR BUILD_DIR [HTTP_PORT]   set paths (HTTP_PORT default: a free one)
#   stack_pg_up / stack_pg_down                 the PostgreSQL cluster (initdb on first use)
#   stack_api_up / stack_api_down               kiln-api serve (after migrate): N processes
#                                               (KILN_API_PROCESSES, default 1), each with
#                                               its own socket, pid file and log; with
#                                               STACK_API_RESTART=1 each under its own loop
#   stack_api_file N KIND                       a process's file (sock, pid, loop, log,
#                                               restarts): process 1 keeps the plain names
#                                               (run/api.sock, run/kiln-api.pid, ...),
#                                               process N the -N ones (run/api-2.sock, ...)
#   stack_nginx_up / stack_nginx_down
#   stack_up / stack_down                       all of the above, for every cell
#   stack_psql ARGS...                          psql on the kiln database
#   stack_admin_token                           prints the admin token (creates it once)
#   stack_cell N                                points the functions above (but nginx) at
#                                               cell N
#   stack_pg_hugepages_status                   whether the cluster's shared memory is in
#                                               huge pages (STACK_PG_HUGEPAGES=reserve: the
#                                               benches reserve them, below)
#
# Cells (KILN_CELLS, default 1; docs/scale.md "Past one primary: pools"): a cell is one
# PostgreSQL cluster and its kiln-api processes, serving pool N (KILN_POOL=N). Cell 1
# lives in VAR_DIR itself, as the one-cell stack always did; cell N in VAR_DIR/cell-N/
# (its own pg/, run/, log/, secret key and admin token). One nginx in front routes each
# request to its token's cell. stack_init leaves cell 1 current.

STACK_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

stack_free_port() {
    /usr/bin/python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

stack_init() {
    STACK_VAR=$(mkdir -p "$1" && cd "$1" && pwd)
    STACK_BUILD=$(cd "$2" && pwd)
    STACK_HTTP_PORT=${3:-$(stack_free_port)}
    STACK_PG_PORT=${STACK_PG_PORT:-$(stack_free_port)}
    STACK_PG_PORT_1=$STACK_PG_PORT
    mkdir -p "$STACK_VAR"/{run,log,pg,nginx}
    # How many kiln-api processes serve behind nginx's upstream (docs/operations.md);
    # a sourced stack.env keeps the count of the running stack.
    STACK_API_PROCESSES=${KILN_API_PROCESSES:-${STACK_API_PROCESSES:-1}}
    case "$STACK_API_PROCESSES" in
    [1-9] | [1-9][0-9]) ;;
    *) echo "stack: KILN_API_PROCESSES must be 1..99, got '$STACK_API_PROCESSES'" >&2; return 1 ;;
    esac
    STACK_CELLS=${KILN_CELLS:-${STACK_CELLS:-1}}
    case "$STACK_CELLS" in
    [1-9]) ;;
    *) echo "stack: KILN_CELLS must be 1..9, got '$STACK_CELLS'" >&2; return 1 ;;
    esac
    local n port
    for n in $(seq 2 "$STACK_CELLS"); do
        port=STACK_PG_PORT_$n
        printf -v "$port" '%s' "${!port:-$(stack_free_port)}"
        mkdir -p "$STACK_VAR/cell-$n"/{run,log,pg}
    done
    STACK_URL=http://127.0.0.1:$STACK_HTTP_PORT
    export KILN_FCGI_SOCKET_MODE=0666
    export KILN_SQL_DIR=$STACK_SRC/sql
    # Remember the ports so later commands (make down, a second shell) find the stack.
    {
        printf 'STACK_HTTP_PORT=%s\nSTACK_PG_PORT=%s\nSTACK_API_PROCESSES=%s\nSTACK_CELLS=%s\n' \
            "$STACK_HTTP_PORT" "$STACK_PG_PORT" "$STACK_API_PROCESSES" "$STACK_CELLS"
        for n in $(seq 2 "$STACK_CELLS"); do
            port=STACK_PG_PORT_$n
            printf '%s=%s\n' "$port" "${!port}"
        done
    } >"$STACK_VAR/stack.env"
    stack_cell 1
}

# stack_cell N: makes cell N current for the PostgreSQL and kiln-api functions (its
# directory, cluster, port, sockets, KILN_DB, KILN_POOL=N).
stack_cell() {
    local port=STACK_PG_PORT_$1
    [ "$1" -ge 1 ] && [ "$1" -le "$STACK_CELLS" ] && [ -n "${!port}" ] ||
        { echo "stack: no cell $1 (KILN_CELLS=$STACK_CELLS)" >&2; return 1; }
    STACK_CELL=$1
    STACK_CELL_VAR=$STACK_VAR
    [ "$1" -eq 1 ] || STACK_CELL_VAR=$STACK_VAR/cell-$1
    STACK_PG_PORT=${!port}
    STACK_PGDATA=$STACK_CELL_VAR/pg/data
    STACK_PGSOCK=$STACK_CELL_VAR/pg/run
    STACK_API_SOCK=$STACK_CELL_VAR/run/api.sock
    export KILN_DB="host=$STACK_PGSOCK port=$STACK_PG_PORT dbname=kiln user=postgres connect_timeout=5"
    export KILN_FCGI_SOCKET=$STACK_API_SOCK
    export KILN_SECRET_KEY_FILE=$STACK_CELL_VAR/secret.key
    export KILN_POOL=$1
}

# stack_api_file N KIND: the path of the current cell's kiln-api process N's socket, pid
# file, restart-loop pid file, log or restart log. Process 1 keeps the names of the
# one-process stack, so tests and tools that read run/kiln-api.pid or log/kiln-api.log
# see process 1.
stack_api_file() {
    local sfx=""
    [ "$1" -eq 1 ] || sfx=-$1
    case "$2" in
    sock) echo "$STACK_CELL_VAR/run/api$sfx.sock" ;;
    pid) echo "$STACK_CELL_VAR/run/kiln-api$sfx.pid" ;;
    loop) echo "$STACK_CELL_VAR/run/kiln-api$sfx-supervisor.pid" ;;
    log) echo "$STACK_CELL_VAR/log/kiln-api$sfx.log" ;;
    restarts) echo "$STACK_CELL_VAR/log/kiln-api$sfx-restarts.log" ;;
    *) echo "stack_api_file: unknown kind $2" >&2; return 1 ;;
    esac
}

# Runs a command as the unprivileged owner of the cluster (postgres refuses root).
stack_as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

stack_pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && echo "$d"; done | sort -V | tail -1
}

# initdb into DIR. A cluster without fsync (the tests') need not sync after initdb either.
stack_pg_initdb() {
    local nosync=""
    [ "${STACK_PG_FSYNC:-on}" = on ] || nosync=--no-sync
    stack_as_pg "$(stack_pg_bin)/initdb" -D "$1" -U postgres --auth=trust -E UTF8 \
        --locale=C.UTF-8 $nosync >"$STACK_VAR/log/initdb.log" 2>&1 ||
        { cat "$STACK_VAR/log/initdb.log" >&2; return 1; }
}

# Huge pages for the cluster's shared memory (STACK_PG_HUGEPAGES=reserve; the benches set
# it). On a VM whose page faults are slow (this box's: ~15 us each, docs/benchmarks.md
# session 26) every backend pays one per 4 kB page of shared buffers it touches for the
# first time: kiln's reports touch the inboxes' rows all over the heap, so its backends
# paid ~30 ms a report for it, the peer's appends far less. In 2 MB pages that is gone,
# for both. PostgreSQL's default huge_pages = try takes them when the kernel has them
# reserved; as root this reserves what the cluster needs (postgres -C
# shared_memory_size_in_huge_pages) under a lock held until the cluster holds them, so
# cells started together each get theirs. It never lowers the reservation:
# tests/bench/run.sh puts back the count it found. Without root it says so and the
# cluster runs in 4 kB pages.
stack_pg_hugepages() {
    local need free rsvd total
    [ "${STACK_PG_HUGEPAGES:-}" = reserve ] || return 0
    if [ ! -w /proc/sys/vm/nr_hugepages ]; then
        echo "stack: cannot reserve huge pages (not root): PostgreSQL runs in 4 kB pages" >&2
        return 0
    fi
    need=$(stack_as_pg "$(stack_pg_bin)/postgres" -D "$STACK_PGDATA" \
        -C shared_memory_size_in_huge_pages 2>/dev/null) || return 0
    case "$need" in '' | -* | *[!0-9]*) return 0 ;; esac
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    rsvd=$(awk '/^HugePages_Rsvd:/ {print $2}' /proc/meminfo)
    total=$(cat /proc/sys/vm/nr_hugepages)
    if [ $((free - rsvd)) -lt "$need" ]; then
        echo $((total + need - free + rsvd)) >/proc/sys/vm/nr_hugepages 2>/dev/null || true
    fi
}

stack_pg_hugepages_status() {
    local pid kb
    pid=$(head -1 "$STACK_PGDATA/postmaster.pid" 2>/dev/null) || { echo "not running"; return; }
    kb=$(awk '/^HugetlbPages:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    if [ "${kb:-0}" -gt 0 ]; then # (the postmaster's own share of them: it touches few)
        echo "shared memory in huge pages"
    else
        echo "shared memory in 4 kB pages (no huge pages reserved)"
    fi
}

stack_pg_start() {
    stack_as_pg "$1/pg_ctl" -D "$STACK_PGDATA" -l "$STACK_CELL_VAR/log/postgresql.log" \
        -o "-p $STACK_PG_PORT -k $STACK_PGSOCK" -w -t 60 start >/dev/null
}

stack_pg_up() {
    local bin; bin=$(stack_pg_bin)
    [ -n "$bin" ] || { echo "stack: PostgreSQL server binaries not found" >&2; return 1; }
    mkdir -p "$STACK_PGSOCK"
    touch "$STACK_CELL_VAR/log/postgresql.log"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres "$STACK_CELL_VAR/pg" "$STACK_PGSOCK" "$STACK_CELL_VAR/log/postgresql.log"
    fi
    if [ ! -s "$STACK_PGDATA/PG_VERSION" ]; then
        if [ -s "${STACK_PG_TEMPLATE:-/nonexistent}/PG_VERSION" ]; then
            stack_as_pg cp -a "$STACK_PG_TEMPLATE" "$STACK_PGDATA" || return 1
        else
            stack_pg_initdb "$STACK_PGDATA" || return 1
        fi
        cat >>"$STACK_PGDATA/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$STACK_PGSOCK'
max_connections = 200
shared_buffers = 256MB
synchronous_commit = off
fsync = ${STACK_PG_FSYNC:-on}
log_min_duration_statement = 1000
CONF
    fi
    local started=0
    if [ "${STACK_PG_HUGEPAGES:-}" = reserve ] && [ -w /proc/sys/vm/nr_hugepages ]; then
        (flock 9 && stack_pg_hugepages && stack_pg_start "$bin") 9>>/tmp/kiln-hugepages.lock &&
            started=1
    else
        stack_pg_hugepages && stack_pg_start "$bin" && started=1
    fi
    [ "$started" -eq 1 ] || { tail -20 "$STACK_CELL_VAR/log/postgresql.log" >&2; return 1; }
    if ! stack_as_pg "$bin/psql" -h "$STACK_PGSOCK" -p "$STACK_PG_PORT" -U postgres -d postgres \
        -tAc "SELECT 1 FROM pg_database WHERE datname='kiln'" | grep -q 1; then
        stack_as_pg "$bin/createdb" -h "$STACK_PGSOCK" -p "$STACK_PG_PORT" -U postgres kiln
    fi
}

stack_pg_down() {
    local bin; bin=$(stack_pg_bin)
    [ -f "$STACK_PGDATA/postmaster.pid" ] || return 0
    stack_as_pg "$bin/pg_ctl" -D "$STACK_PGDATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

stack_psql() {
    "$(stack_pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$STACK_PGSOCK" -p "$STACK_PG_PORT" \
        -U postgres -d kiln "$@"
}

# kiln-api's restart loop for process N (STACK_API_RESTART=1, as `make up` runs it):
# starts kiln-api on its own socket, keeps its pid in its pid file, and when it exits
# without being asked to (a crash, a kill) logs the exit to its restart log and starts it
# again, waiting 1 s, then longer (up to 30 s) while it keeps dying within 10 s of its
# start. TERM/INT stop kiln-api and the loop. Each process has its own loop, so one
# process crashing never restarts (or delays) another.
stack_api_supervise() {
    set +e
    local n=$1 child="" stopping=0 rc started delay=1 pidf log
    pidf=$(stack_api_file "$n" pid)
    log=$(stack_api_file "$n" log)
    trap 'stopping=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null' TERM INT
    while [ "$stopping" -eq 0 ]; do
        started=$(date +%s)
        KILN_FCGI_SOCKET=$(stack_api_file "$n" sock) "$STACK_BUILD/api/kiln-api" serve >>"$log" 2>&1 &
        child=$!
        echo "$child" >"$pidf"
        # wait returns early when a trapped signal arrives; keep waiting for the exit.
        while :; do
            wait "$child"
            rc=$?
            kill -0 "$child" 2>/dev/null || break
        done
        [ "$stopping" -eq 0 ] || break
        if [ $(($(date +%s) - started)) -ge 10 ]; then delay=1; fi
        printf '%s kiln-api (pid %s) exited with status %s; restarting in %s s\n' \
            "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$child" "$rc" "$delay" |
            tee -a "$log" >>"$(stack_api_file "$n" restarts)"
        sleep "$delay" &
        wait $!
        delay=$((delay * 2 > 30 ? 30 : delay * 2))
    done
    rm -f "$pidf"
}

# Starts process N (plain or under its loop) and waits for its socket.
stack_api_start() {
    local n=$1 sock pidf log i
    sock=$(stack_api_file "$n" sock)
    pidf=$(stack_api_file "$n" pid)
    log=$(stack_api_file "$n" log)
    # A socket file left by a killed process would pass the wait below before the new
    # process listens (stack_api_down ran first: nobody serves on it).
    rm -f "$pidf" "$sock"
    if [ "${STACK_API_RESTART:-0}" = 1 ]; then
        stack_api_supervise "$n" </dev/null >>"$log" 2>&1 &
        echo $! >"$(stack_api_file "$n" loop)"
        for i in $(seq 1 50); do [ -s "$pidf" ] && break; sleep 0.1; done
    else
        KILN_FCGI_SOCKET=$sock "$STACK_BUILD/api/kiln-api" serve >>"$log" 2>&1 &
        echo $! >"$pidf"
    fi
    for i in $(seq 1 100); do
        [ -S "$sock" ] && return 0
        kill -0 "$(cat "$pidf" 2>/dev/null)" 2>/dev/null ||
            { tail -20 "$log" >&2; return 1; }
        sleep 0.1
    done
    echo "stack: kiln-api process $n did not open $sock" >&2
    return 1
}

stack_api_up() {
    [ -s "$KILN_SECRET_KEY_FILE" ] || "$STACK_BUILD/api/kiln-api" keygen "$KILN_SECRET_KEY_FILE"
    "$STACK_BUILD/api/kiln-api" migrate >>"$STACK_CELL_VAR/log/kiln-api.log" 2>&1 ||
        { tail -20 "$STACK_CELL_VAR/log/kiln-api.log" >&2; return 1; }
    local n
    for n in $(seq 1 "$STACK_API_PROCESSES"); do
        stack_api_start "$n" || return 1
    done
}

stack_kill_pidfile() {
    local f=$1 sig=${2:-TERM} pid i
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -"$sig" "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$f"
}

# Every process that has a pid file (whatever KILN_API_PROCESSES is now): its restart
# loop first (so it does not start kiln-api again), then kiln-api.
stack_api_down() {
    local f
    for f in "$STACK_CELL_VAR"/run/kiln-api*-supervisor.pid; do
        [ -e "$f" ] && stack_kill_pidfile "$f" "${1:-TERM}"
    done
    for f in "$STACK_CELL_VAR"/run/kiln-api*.pid; do
        [ -e "$f" ] && stack_kill_pidfile "$f" "${1:-TERM}"
    done
    return 0
}

stack_nginx_up() {
    local user_line=""
    mkdir -p "$STACK_VAR"/nginx/{body,proxy,fastcgi,uwsgi,scgi}
    if [ "$(id -u)" -eq 0 ]; then
        user_line="user nobody nogroup;"
        chown -R nobody:nogroup "$STACK_VAR/nginx"
    fi
    # One upstream per cell, one server in it per kiln-api process (failure settings as
    # in nginx/kiln.conf), and the pool -> cell map: cell N serves pool N.
    local upstreams="" pools="" cell n name
    for cell in $(seq 1 "$STACK_CELLS"); do
        stack_cell "$cell"
        name=kiln_api
        [ "$cell" -eq 1 ] || name=kiln_api_$cell
        upstreams="$upstreams upstream $name {"
        for n in $(seq 1 "$STACK_API_PROCESSES"); do
            upstreams="$upstreams server unix:$(stack_api_file "$n" sock) max_fails=3 fail_timeout=5s;"
        done
        upstreams="$upstreams }"
        pools="$pools $cell $name;"
    done
    stack_cell 1
    sed -e "s|@VAR@|$STACK_VAR|g" -e "s|@UPSTREAMS@|$upstreams|g" -e "s|@POOL_MAP@|$pools|g" \
        -e "s|@PORT@|$STACK_HTTP_PORT|g" -e "s|@USER_LINE@|$user_line|" \
        "$STACK_SRC/nginx/local.conf.in" >"$STACK_VAR/nginx/nginx.conf"
    nginx -e "$STACK_VAR/log/nginx-error.log" -c "$STACK_VAR/nginx/nginx.conf" ||
        { tail -5 "$STACK_VAR/log/nginx-error.log" >&2; return 1; }
    local i
    for i in $(seq 1 50); do
        curl -s -o /dev/null "$STACK_URL/healthz" && return 0
        sleep 0.1
    done
    echo "stack: nginx is not answering on $STACK_URL" >&2
    return 1
}

stack_nginx_down() {
    stack_kill_pidfile "$STACK_VAR/run/nginx.pid" QUIT
}

stack_admin_token() {
    if [ ! -s "$STACK_CELL_VAR/admin.token" ]; then
        (umask 077 && "$STACK_BUILD/api/kiln-api" token create --scope admin >"$STACK_CELL_VAR/admin.token.tmp") &&
            mv "$STACK_CELL_VAR/admin.token.tmp" "$STACK_CELL_VAR/admin.token"
    fi
    cat "$STACK_CELL_VAR/admin.token"
}

# Cells 2..N come up in the background while cell 1 does; new clusters are copies of one
# initdb (STACK_PG_TEMPLATE: initdb is most of a cell's start).
stack_up() {
    local cell pids="" failed=0 pid
    if [ "$STACK_CELLS" -gt 1 ] && [ ! -s "$STACK_VAR/pg/data/PG_VERSION" ]; then
        STACK_PG_TEMPLATE=$STACK_VAR/pg/template
        [ "$(id -u)" -ne 0 ] || chown postgres "$STACK_VAR/pg"
        [ -s "$STACK_PG_TEMPLATE/PG_VERSION" ] || stack_pg_initdb "$STACK_PG_TEMPLATE" || return 1
    fi
    for cell in $(seq 2 "$STACK_CELLS"); do
        (stack_cell "$cell" && stack_pg_up && stack_api_up) &
        pids="$pids $!"
    done
    stack_cell 1 && stack_pg_up && stack_api_up || failed=1
    for pid in $pids; do wait "$pid" || failed=1; done
    [ -z "${STACK_PG_TEMPLATE:-}" ] || rm -rf "$STACK_PG_TEMPLATE"
    unset STACK_PG_TEMPLATE
    [ "$failed" -eq 0 ] && stack_nginx_up
}

stack_down() {
    stack_nginx_down
    local cell
    for cell in $(seq "$STACK_CELLS" -1 1); do
        stack_cell "$cell" && stack_api_down "$@" && stack_pg_down
    done
    stack_cell 1
}
