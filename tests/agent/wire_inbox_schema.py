#!/usr/bin/python3
"""Checks what the agent's wire module writes on the inbox side against api/openapi.yaml:
each InboxEvent kind, a ReportRequest with inbox_events, a LeaseRequest with
max_inboxes, and the unit tests' lease answer fixture against Lease (so the fixture the
parser is tested with is the contract's shape). The bytes come from
`test_agent_wire_inbox --dump DIR`.

Usage: wire_inbox_schema.py SOURCE_DIR DUMP_DIR"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from openapi_schema import Schemas  # noqa: E402

root, dump = sys.argv[1], sys.argv[2]
s = Schemas(root)
failures = 0


def check(what, name, instance):
    global failures
    errs = s.errors(name, instance)
    if errs:
        failures += 1
        print("not ok - %s against %s" % (what, name))
        for e in errs:
            print("    " + e)
    else:
        print("ok - %s against %s" % (what, name))


kinds = set()
for i, line in enumerate(open(os.path.join(dump, "events.jsonl"))):
    ev = json.loads(line)
    kinds.add(ev["type"])
    check("event %d (%s)" % (i, ev["type"]), "InboxEvent", ev)
    # the discriminator: each event must also be exactly its own kind's schema
    name = {"found": "InboxEventFound", "action": "InboxEventAction",
            "folder_state": "InboxEventFolderState", "session": "InboxEventSession"}.get(ev["type"], "InboxEvent")
    check("event %d" % i, name, ev)
if kinds != {"found", "action", "folder_state", "session"}:
    failures += 1
    print("not ok - every event kind dumped: %s" % sorted(kinds))
check("report body", "ReportRequest", json.load(open(os.path.join(dump, "report.json"))))
check("lease request", "LeaseRequest", json.load(open(os.path.join(dump, "lease_request.json"))))
check("lease answer fixture", "Lease", json.load(open(os.path.join(dump, "lease_answer.json"))))
# and the checks can fail: a wrong event must be refused
bad = {"type": "action", "mailbox_id": 1, "action_id": 1, "status": "ok"}
if not s.errors("InboxEvent", bad):
    failures += 1
    print("not ok - the schema check refuses an action with status ok")
sys.exit(1 if failures else 0)
