"""A webhook receiver for kiln's integration tests: an HTTP server on loopback that checks
every delivery the way docs/webhooks.md tells a receiver to (Kiln-Signature over
"<t>.<body>" with the endpoint's secret, the timestamp within 5 minutes, each event id
once) and records what came. Paths choose the behaviour:
  /ok/<name>          200
  /flaky/<name>/<n>   500 for the first n requests, then 200
  /hang/<name>        never answers within the sender's timeout (sleeps HANG_S)
Use: r = Receiver(); r.secrets[path] = secret; ...; r.received(path); r.stop()."""
import hashlib
import hmac
import http.server
import json
import threading
import time

TOLERANCE_S = 300
HANG_S = 6


def verify(secret, header, body, now=None, tolerance_s=TOLERANCE_S):
    """Returns None when the Kiln-Signature header is valid for body (bytes), else why not.
    The example of docs/webhooks.md, as a function."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
        sig = parts["v1"]
    except (ValueError, KeyError):
        return "malformed signature header"
    now = time.time() if now is None else now
    if abs(now - t) > tolerance_s:
        return "timestamp outside the tolerance (replay?)"
    want = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        return "signature mismatch"
    return None


class Receiver:
    def __init__(self, tls=None):
        """tls: (certfile, keyfile) to serve HTTPS instead of HTTP."""
        self.secrets = {}     # path -> secret
        self.deliveries = []  # dicts: path, headers, body, json, status, at, problem
        self.seen_events = {}  # path -> set of event ids accepted
        self.counts = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                status, problem = outer.handle(self.path, dict(self.headers), body)
                if status is None:  # hang
                    time.sleep(HANG_S)
                    status = 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def handle(self, path, headers, body):
        with self.lock:
            self.counts[path] = self.counts.get(path, 0) + 1
            count = self.counts[path]
            secret = self.secrets.get(path)
            problem = (verify(secret, headers.get("Kiln-Signature", ""), body)
                       if secret else "no secret known for this path")
            try:
                doc = json.loads(body)
            except ValueError:
                doc, problem = None, problem or "body is not JSON"
            if problem is None and (doc.get("id") is None or
                                    str(doc["id"]) != headers.get("Kiln-Event-Id") or
                                    doc.get("type") != headers.get("Kiln-Event-Type")):
                problem = "Kiln-Event-Id / Kiln-Event-Type do not match the body"
            seen = self.seen_events.setdefault(path, set())
            kind = path.split("/")[1]
            if problem:
                status = 400
            elif kind == "flaky" and count <= int(path.split("/")[3]):
                status = 500
            elif kind == "hang":
                status = None
            else:
                status = 200
            if status == 200 or status is None:
                if doc["id"] in seen:
                    problem = "replayed event id"
                    status = 400
                else:
                    seen.add(doc["id"])
            self.deliveries.append({"path": path, "headers": headers, "body": body, "json": doc,
                                    "status": status, "at": time.time(), "problem": problem})
            return status, problem

    def received(self, path, status=200):
        with self.lock:
            return [d for d in self.deliveries if d["path"] == path and
                    (status is None or d["status"] == status)]

    def all(self):
        with self.lock:
            return list(self.deliveries)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
