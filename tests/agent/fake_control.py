#!/usr/bin/python3
"""A stand-in control plane for kiln-agent run tests (loopback only, plain HTTP).

The first POST /api/agent/lease gets the bytes of --lease-file as they are (so a test
can hand the agent a lease with invalid UTF-8 in one mailbox); later ones get the empty
answer. Every result of POST /api/agent/report is appended to --reports as one JSON
line; heartbeats renew, releases succeed. Prints READY when it listens."""
import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--lease-file", required=True)
p.add_argument("--reports", required=True)
args = p.parse_args()
lock = threading.Lock()
state = {"leased": False}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def answer(self, code, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer(200, {"status": "ok"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.path == "/api/agent/lease":
            with lock:
                first = not state["leased"]
                state["leased"] = True
            if first:
                self.answer(200, open(args.lease_file, "rb").read())
            else:
                self.answer(200, {"lease_id": None, "ttl_s": 60, "mailboxes": [],
                                  "retry_after_s": 60, "service": "running"})
        elif self.path == "/api/agent/report":
            req = json.loads(body)
            with lock, open(args.reports, "a") as f:
                for r in req["results"]:
                    f.write(json.dumps(r) + "\n")
            self.answer(200, {"accepted": len(req["results"]), "duplicates": 0})
        elif self.path == "/api/agent/heartbeat":
            self.answer(200, {"ttl_s": 60, "cancel": [], "service": "running"})
        elif self.path == "/api/agent/release":
            self.answer(200, {"released": 0})
        else:
            self.answer(404, {"error": {"code": "not_found", "message": "no such path"}})


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print("READY", flush=True)
server.serve_forever()
