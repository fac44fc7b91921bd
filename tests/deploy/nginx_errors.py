"""test_nginx_own_errors_are_json: requests that nginx refuses itself, before kiln-api
sees them, sent as raw bytes over a socket: each answer is a 4xx (never a 5xx) with
kiln's JSON error body, Content-Type application/json and Cache-Control: no-store;
TRACE is a 405 with Allow. Run through tests/lib/with_stack.sh (the local template,
nginx/local.conf.in) without arguments, or by tests/deploy/nginx_live.sh against the
production site (nginx/kiln.conf) with:
    nginx_errors.py --port TLS_PORT --tls CAFILE --host kiln.example.com --plain-port HTTP_PORT
"""
import argparse
import json
import os
import socket
import ssl
import sys
import urllib.parse


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def ok(msg):
    print("ok - " + msg)


class Answer:
    def __init__(self, raw):
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            self.headers.setdefault(k.strip().lower().decode("latin-1"), []).append(
                v.strip().decode("latin-1"))

    def header(self, name):
        v = self.headers.get(name)
        return v[0] if v else None

    def __repr__(self):
        return repr(self.raw[:600])


def exchange(target, data, tls_to_plain=False):
    """Sends data, reads one answer (head + Content-Length bytes, or until close)."""
    host, port, ctx, sni = target
    s = socket.create_connection((host, port), timeout=10)
    if ctx and not tls_to_plain:
        s = ctx.wrap_socket(s, server_hostname=sni)
    try:
        s.sendall(data)
    except OSError:
        pass  # nginx may answer and close before it has read everything
    got = b""
    try:
        while True:
            if b"\r\n\r\n" in got:
                head = Answer(got)
                cl = head.header("content-length")
                if cl is not None and len(head.body) >= int(cl):
                    break
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, ConnectionResetError, ssl.SSLError):
        pass
    s.close()
    return Answer(got)


def expect_json_error(target, name, data, status, code, tls_to_plain=False):
    a = exchange(target, data, tls_to_plain)
    if a.status != status:
        fail("%s: expected HTTP %d, got %r" % (name, status, a))
    ctype = a.header("content-type") or ""
    if not ctype.startswith("application/json"):
        fail("%s: expected Content-Type application/json, got %r in %r" % (name, ctype, a))
    try:
        err = json.loads(a.body)["error"]
    except (ValueError, KeyError, TypeError):
        fail("%s: expected kiln's JSON error body, got %r" % (name, a))
    if set(err) != {"code", "message", "field"} or err["code"] != code:
        fail("%s: expected error code %s, got %r" % (name, code, a))
    if a.headers.get("cache-control") != ["no-store"]:
        fail("%s: expected one 'Cache-Control: no-store', got %r in %r"
             % (name, a.headers.get("cache-control"), a))
    return a


def cases(host):
    h = ("Host: %s\r\n" % host).encode()
    end = b"Connection: close\r\n\r\n"
    return [
        ("duplicate Content-Length", b"POST /api/plans HTTP/1.1\r\n" + h +
         b"Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 2\r\n" + end +
         b"{}", 400, "bad_request"),
        ("Content-Length with Transfer-Encoding", b"POST /api/plans HTTP/1.1\r\n" + h +
         b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n" + end + b"0\r\n\r\n",
         400, "bad_request"),
        ("bad chunk size", b"POST /api/plans HTTP/1.1\r\n" + h +
         b"Transfer-Encoding: chunked\r\n" + end + b"zz\r\n{}\r\n0\r\n\r\n", 400, "bad_request"),
        ("Transfer-Encoding: gzip, chunked", b"POST /api/plans HTTP/1.1\r\n" + h +
         b"Transfer-Encoding: gzip, chunked\r\n" + end + b"0\r\n\r\n", 400, "bad_request"),
        ("%00 in the path", b"GET /api/pl%00ans HTTP/1.1\r\n" + h + end, 400, "bad_request"),
        ("oversized header line", b"GET /healthz HTTP/1.1\r\n" + h + b"X-Big: " +
         b"a" * 40000 + b"\r\n" + end, 400, "bad_request"),
        ("too many header bytes", b"GET /healthz HTTP/1.1\r\n" + h +
         b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 7000) for i in range(12)) + end,
         400, "bad_request"),
        ("HTTP/1.1 without Host", b"GET /healthz HTTP/1.1\r\n" + end, 400, "bad_request"),
        ("two Host headers", b"GET /healthz HTTP/1.1\r\n" + h + h + end, 400, "bad_request"),
        ("garbage request line", b"GARBAGE\r\n\r\n", 400, "bad_request"),
        ("bad characters in the method", b"G@T /healthz HTTP/1.1\r\n" + h + end,
         400, "bad_request"),
        ("unknown HTTP version", b"GET /healthz HTTP/9.9\r\n" + h + end, 400, "bad_request"),
        ("TRACE", b"TRACE /api/plans HTTP/1.1\r\n" + h + end, 405, "method_not_allowed"),
        ("URI over the header buffer", b"GET /api/" + b"a" * 40000 + b" HTTP/1.1\r\n" + h + end,
         414, "uri_too_long"),
        ("declared body over 1 MiB", b"POST /api/plans HTTP/1.1\r\n" + h +
         b"Content-Type: application/json\r\nContent-Length: 2000000\r\n" + end + b"{" * 1000,
         413, "body_too_large"),
        ("chunked body over 1 MiB", b"POST /api/plans HTTP/1.1\r\n" + h +
         b"Transfer-Encoding: chunked\r\n" + end +
         b"".join(b"10000\r\n" + b"x" * 0x10000 + b"\r\n" for _ in range(20)) + b"0\r\n\r\n",
         413, "body_too_large"),
        ("nginx's error pages from outside", b"GET /.kiln-error/400 HTTP/1.1\r\n" + h + end,
         404, "not_found"),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--tls", metavar="CAFILE")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--plain-port", type=int, help="the production site's port 80 server")
    args = ap.parse_args()
    if args.port:
        port = args.port
    else:
        url = urllib.parse.urlparse(os.environ.get("KILN_URL", "http://127.0.0.1:8080"))
        port = url.port
    ctx = None
    if args.tls:
        ctx = ssl.create_default_context(cafile=args.tls)
        ctx.set_alpn_protocols(["http/1.1"])
    target = ("127.0.0.1", port, ctx, args.host)
    where = "production site over TLS" if ctx else "nginx"
    for name, data, status, code in cases(args.host):
        expect_json_error(target, name, data, status, code)
    ok("%s: every error nginx makes itself is a JSON 4xx with no-store (%d cases)"
       % (where, len(cases(args.host))))
    a = expect_json_error(target, "TRACE", b"TRACE / HTTP/1.1\r\nHost: %s\r\n\r\n"
                          % args.host.encode(), 405, "method_not_allowed")
    allow = a.header("allow") or ""
    if "GET" not in allow or "POST" not in allow or "TRACE" in allow:
        fail("TRACE: expected Allow listing kiln's methods, got %r" % allow)
    ok("%s: TRACE is a JSON 405 with Allow: %s" % (where, allow))
    if ctx:
        expect_json_error(target, "plain HTTP to the TLS port",
                          b"GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n" % args.host.encode(),
                          400, "bad_request", tls_to_plain=True)
        ok("plain HTTP sent to the TLS port is a JSON 400")
    if args.plain_port:
        plain = ("127.0.0.1", args.plain_port, None, args.host)
        for name, data, status, code in cases(args.host):
            if code == "body_too_large" or name.startswith("nginx's"):
                continue  # port 80 redirects; its only kiln path is /healthz
            expect_json_error(plain, "port 80: " + name, data, status, code)
        ok("production site's plain-HTTP server: nginx's own errors are JSON too")


main()
