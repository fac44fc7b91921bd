#!/usr/bin/python3
"""A stand-in control plane for kiln-agent run tests (loopback only, plain HTTP).

The first POST /api/agent/lease gets the bytes of --lease-file as they are (so a test
can hand the agent a lease with invalid UTF-8 in one mailbox); later ones get the empty
answer. Every result of POST /api/agent/report is appended to --reports as one JSON
line; heartbeats renew, releases succeed. Prints READY when it listens.

With --inbox-file (a JSON list of LeaseInbox), every lease answer also carries an
inbox lease ("inbox_lease": lease id "inbox-1", --inbox-heartbeat-s) and those
inboxes, as the control plane lists the inboxes an agent holds again; each event of a
report's inbox_events is appended to --inbox-reports, and every request's path and
lease_id to --requests (one "PATH LEASE_ID" line each)."""
import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--lease-file", required=True)
p.add_argument("--reports", required=True)
p.add_argument("--inbox-file")
p.add_argument("--inbox-reports")
p.add_argument("--inbox-heartbeat-s", type=int, default=10)
p.add_argument("--requests")
p.add_argument("--drop-file", help="mailbox ids (one a line) to drop: in inboxes_dropped "
               "of inbox heartbeats, left out of lease answers")
args = p.parse_args()
lock = threading.Lock()
state = {"leased": False}


def dropped():
    try:
        return {int(l) for l in open(args.drop_file) if l.strip()}
    except (TypeError, OSError):
        return set()


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
        if args.requests:
            try:
                lid = json.loads(body).get("lease_id")
            except ValueError:
                lid = None
            with lock, open(args.requests, "a") as f:
                f.write("%s %s\n" % (self.path, lid))
        if self.path == "/api/agent/lease":
            with lock:
                first = not state["leased"]
                state["leased"] = True
            if first:
                ans = open(args.lease_file, "rb").read()
            else:
                ans = {"lease_id": None, "ttl_s": 60, "mailboxes": [],
                       "retry_after_s": 60, "service": "running"}
            if args.inbox_file:
                if not isinstance(ans, dict):
                    ans = json.loads(ans)
                ans["inbox_lease"] = {"lease_id": "inbox-1", "ttl_s": 1800,
                                      "heartbeat_s": args.inbox_heartbeat_s}
                gone = dropped()
                ans["inboxes"] = [i for i in json.load(open(args.inbox_file))
                                  if i.get("mailbox_id") not in gone]
                ans["retry_after_s"] = 1
            self.answer(200, ans)
        elif self.path == "/api/agent/report" and args.inbox_reports and b"inbox_events" in body:
            req = json.loads(body)
            with lock, open(args.inbox_reports, "a") as f:
                for e in req["inbox_events"]:
                    f.write(json.dumps(e, separators=(",", ":")) + "\n")
            self.answer(200, {"lease_id": req["lease_id"], "applied": 0, "duplicates": 0,
                              "rejected": 0, "results": [],
                              "inbox_events": {"applied": len(req["inbox_events"]),
                                               "duplicates": 0, "ignored": 0}})
        elif self.path == "/api/agent/heartbeat" and args.inbox_file and b"inbox-1" in body:
            self.answer(200, {"lease_id": "inbox-1", "expires_at": "2026-12-03T07:00:00Z",
                              "ttl_s": 1800, "cancel": [], "inboxes_dropped": sorted(dropped()),
                              "service": "running"})
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
