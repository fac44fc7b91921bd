#!/usr/bin/env bash
# test_nginx_production_config_passes_nginx_t: nginx/kiln.conf, moved onto loopback
# ports with a self-signed certificate, is accepted by `nginx -t`, and keeps the
# properties the deployment relies on.
. "$(dirname "$0")/lib.sh"
need nginx openssl
deploy_tmpdir
conf=$KILN_SOURCE_DIR/nginx/kiln.conf
render_nginx "$T/ngx" "$(free_port)" "$(free_port)" "$T/a.sock" "$T/b.sock"
out=$(nginx -t -c "$T/ngx/nginx.conf" -e "$T/ngx/log/error.log" 2>&1) || { echo "$out" >&2; fail "nginx -t rejected nginx/kiln.conf"; }
ok "nginx -t accepts the production site"

# Properties that a later edit must not lose (each with the reason in the config).
expect() { grep -Eq "$1" "$conf" || fail "nginx/kiln.conf: expected a line matching /$1/ ($2)"; }
expect 'listen 443 ssl http2;' 'TLS with HTTP/2'
expect 'ssl_protocols TLSv1\.2 TLSv1\.3;' 'no TLS before 1.2'
expect 'server unix:/run/kiln/api\.sock' 'upstream: the kiln-api.socket instance'
expect 'server unix:/run/kiln/api-2\.sock' 'upstream: a second instance'
expect 'client_max_body_size 1m;' 'body size limit matching KILN_MAX_BODY'
expect 'limit_req zone=kiln_agent_token' 'rate limit on agent endpoints'
expect 'limit_req zone=kiln_write' 'rate limit on write endpoints'
expect 'log_format kiln_json escape=json' 'JSON access log'
expect 'deny all;' '/metrics restricted to the scrape network'
expect 'map \$kiln_token_pool \$kiln_cell' 'cells: the pool -> upstream map'
expect 'fastcgi_pass \$kiln_cell;' 'requests go to the cell of the token pool'
if grep -nE '^[^#]*(fastcgi_keep_conn|keepalive [0-9])' "$conf"; then
    fail "nginx/kiln.conf keeps FastCGI connections: libfcgi's threaded accept breaks with them"
fi
ok "production site keeps TLS, HTTP/2, upstream, limits, JSON log, scrape ACL, no FastCGI keepalive"
