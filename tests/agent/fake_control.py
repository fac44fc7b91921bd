#!/usr/bin/python3
"""A stand-in control plane for kiln-agent run tests (loopback only, plain HTTP).

The first POST /api/agent/lease gets the bytes of --lease-file as they are (so a test
can hand the agent a lease with invalid UTF-8 in one mailbox); later ones get the empty
answer. Every result of POST /api/agent/report is appended to --reports as one JSON
line; heartbeats renew, releases succeed. Prints READY when it listens.

The inbox side (all optional): --inbox-file holds {"inbox_lease":..,"inboxes":[..]},
merged into every lease answer that asks for max_inboxes > 0 while the inbox lease is
not released (inboxes dropped by heartbeat are left out from then on, as the contract's
"later answers list the inboxes it still holds again"). Reports with inbox_events are
checked against api/openapi.yaml (--schema-root; a failure answers 400 and is written
to --schema-errors), their bodies appended to --attempts, and, once accepted, their
events to --events (one {"lease_id":..,"event":..} per line). --fail-inbox-reports N
answers 503 to the first N of them. --drop-at-heartbeat K:ID answers the K-th heartbeat
of the inbox lease with inboxes_dropped [ID]. --calls logs "<path> <lease_id or
max_inboxes>" per call."""
import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--lease-file", required=True)
p.add_argument("--reports", required=True)
p.add_argument("--inbox-file")
p.add_argument("--events")
p.add_argument("--attempts")
p.add_argument("--calls")
p.add_argument("--schema-root")
p.add_argument("--schema-errors")
p.add_argument("--fail-inbox-reports", type=int, default=0)
p.add_argument("--drop-at-heartbeat")
args = p.parse_args()
lock = threading.Lock()
state = {"leased": False, "inbox_reports": 0, "heartbeats": 0, "released": False,
         "dropped": set()}
inbox = json.load(open(args.inbox_file)) if args.inbox_file else None
inbox_lease_id = inbox["inbox_lease"]["lease_id"] if inbox else None
schemas = None
if args.schema_root:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from openapi_schema import Schemas
    schemas = Schemas(args.schema_root)


def append(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


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

    def lease(self, req):
        with lock:
            first = not state["leased"]
            state["leased"] = True
            want_inboxes = inbox and req.get("max_inboxes", 0) > 0 and not state["released"]
            dropped = set(state["dropped"])
        append(args.calls, "/api/agent/lease max_inboxes=%s" % req.get("max_inboxes"))
        if first and not want_inboxes:
            return self.answer(200, open(args.lease_file, "rb").read())
        ans = json.load(open(args.lease_file)) if first else {
            "lease_id": None, "ttl_s": 60, "mailboxes": [], "retry_after_s": 1,
            "service": "running"}
        if want_inboxes:
            ans["inbox_lease"] = inbox["inbox_lease"]
            ans["inboxes"] = [i for i in inbox["inboxes"]
                              if not isinstance(i, dict) or i.get("mailbox_id") not in dropped]
            if schemas:
                errs = schemas.errors("Lease", ans)
                # the fixture may hold bad entries on purpose: only note them
                append(args.calls, "lease-answer-schema-errors %d" % len(errs))
        self.answer(200, ans)

    def report(self, req, body):
        if "inbox_events" not in req:
            with lock, open(args.reports, "a") as f:
                for r in req["results"]:
                    f.write(json.dumps(r) + "\n")
            return self.answer(200, {"accepted": len(req["results"]), "duplicates": 0})
        append(args.calls, "/api/agent/report %s inbox_events=%d" % (req.get("lease_id"),
                                                                     len(req["inbox_events"])))
        with lock:
            append(args.attempts, body.decode())
            state["inbox_reports"] += 1
            fail = state["inbox_reports"] <= args.fail_inbox_reports
        if fail:
            return self.answer(503, {"error": {"code": "unavailable", "message": "try later"}})
        errs = schemas.errors("ReportRequest", req) if schemas else []
        if errs:
            with lock:
                for e in errs:
                    append(args.schema_errors, e)
            return self.answer(400, {"error": {"code": "invalid_field", "field": "inbox_events",
                                               "message": errs[0]}})
        with lock:
            for ev in req["inbox_events"]:
                append(args.events, json.dumps({"lease_id": req["lease_id"], "event": ev}))
        n = len(req["inbox_events"])
        self.answer(200, {"lease_id": req["lease_id"], "applied": 0, "duplicates": 0,
                          "rejected": 0, "results": [],
                          "inbox_events": {"applied": n, "duplicates": 0, "ignored": 0}})

    def heartbeat(self, req):
        lid = req.get("lease_id")
        append(args.calls, "/api/agent/heartbeat %s" % lid)
        ans = {"lease_id": lid, "expires_at": "2026-12-03T07:00:00Z", "ttl_s": 60, "cancel": [],
               "service": "running"}
        if lid == inbox_lease_id:
            ans["ttl_s"] = inbox["inbox_lease"]["ttl_s"]
            ans["inboxes_dropped"] = []
            with lock:
                state["heartbeats"] += 1
                if args.drop_at_heartbeat:
                    k, mid = (int(x) for x in args.drop_at_heartbeat.split(":"))
                    if state["heartbeats"] == k:
                        ans["inboxes_dropped"] = [mid]
                        state["dropped"].add(mid)
        self.answer(200, ans)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        req = json.loads(body)
        if self.path == "/api/agent/lease":
            self.lease(req)
        elif self.path == "/api/agent/report":
            self.report(req, body)
        elif self.path == "/api/agent/heartbeat":
            self.heartbeat(req)
        elif self.path == "/api/agent/release":
            lid = req.get("lease_id")
            append(args.calls, "/api/agent/release %s" % lid)
            if lid == inbox_lease_id:
                with lock:
                    state["released"] = True
            self.answer(200, {"lease_id": lid, "released": 0, "already_ended": False})
        else:
            self.answer(404, {"error": {"code": "not_found", "message": "no such path"}})


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print("READY", flush=True)
server.serve_forever()
