"""Lease -> report -> heartbeat -> release through nginx: wire shapes, accounting,
idempotency, fencing, expiry, trigger and stop; under a backlog only near slots; the
database's notices kept out of kiln-api's log."""
import datetime
import time
from leaselib import (make_agent, set_clock, lease, report, sent, all_sends, utc, invariants)
from kiln_test import (admin, call, check, expect, expect_error, make_plan, make_user, stack_bash,
                       make_mailbox, psql, ok)

set_clock(utc(2026, 3, 4, 10, 0, 0))  # a Wednesday, 10:00 UTC
plan = make_plan("basic", ramp_start=6, ramp_step=0, daily_max=6, cooldown_min_s=60,
                 cooldown_max_s=90)
users = [make_user("u%d" % i, plan["id"]) for i in range(3)]
boxes = []
for u in users:
    for j in range(3):
        boxes.append(make_mailbox(u["id"], "m%d@d%d.test" % (j, u["id"]), timezone="UTC",
                                  window={"start_hour": 0, "end_hour": 24},
                                  warmup_start="2026-03-01"))
tok = make_agent("host-a")
tok_b = make_agent("host-b")

# Behind schedule at 10:00 of a 0-24 window with target 6: slots at cooldown spacing.
a = lease(tok)
check(a["lease_id"] and a["ttl_s"] == 600, "lease id and ttl: %r" % a)
check(len(a["mailboxes"]) == 9, "all 9 mailboxes leased, got %d" % len(a["mailboxes"]))
m0 = a["mailboxes"][0]
check(set(m0) >= {"id", "address", "display_name", "smtp", "sends"}, "mailbox shape %r" % m0)
check(m0["smtp"]["password"] == "pw-" + m0["address"], "decrypted secret: %r" % m0["smtp"])
check(m0["smtp"]["oauth_token"] is None and m0["smtp"]["ca_file"] is None, "smtp nulls")
sends = all_sends(a)
for s in sends:
    check(set(s) == {"id", "not_before_s", "to", "subject", "body", "message_id"}, "send %r" % s)
    check(0 <= s["not_before_s"] <= 600, "not_before within the lease: %r" % s)
    check("{" not in s["subject"] + s["body"], "substituted: %r" % s)
for m in a["mailboxes"]:
    dom = m["address"].split("@")[1]
    last = None
    for s in m["sends"]:
        check(s["message_id"].endswith("@" + dom + ">"), "message id domain %r" % s)
        check(s["to"].split("@")[1] != dom, "recipient of another user: %r" % s)
        if last is not None:
            check(s["not_before_s"] - last >= 60, "cooldown spacing %r" % m["sends"])
        last = s["not_before_s"]
invariants()
ok("lease grants slots with content, spacing and secrets")

# No mailbox twice while leased.
b = lease(tok_b)
check(b["mailboxes"] == [] and b["lease_id"] is None and b["retry_after_s"] > 0,
      "nothing left to lease: %r" % b)
ok("leased mailboxes are not leased again")

# Report: applied, then duplicate; foreign agent and unknown send rejected.
first = sends[0]["id"]
r = report(tok, a["lease_id"], [sent(first), sent(first)])
check(r["applied"] == 1 and r["duplicates"] == 1, "applied+dup in one batch: %r" % r)
r = report(tok, a["lease_id"], [sent(first)])
check(r["applied"] == 0 and r["duplicates"] == 1, "repeat is a duplicate: %r" % r)
expect_error(call("POST", "/api/agent/report", {"lease_id": a["lease_id"], "results": [sent(first)]},
                  token=tok_b), 403, "foreign_lease")
expect_error(call("POST", "/api/agent/report", {"lease_id": a["lease_id"],
                                                "results": [sent(sends[1]["id"]), sent(99999999)]},
                  token=tok), 404, "unknown_send", "results[1].send_id")
check(psql("SELECT status FROM sends WHERE id = %d" % sends[1]["id"]) == ["leased"],
      "a rejected batch changes nothing")
invariants()
ok("reports are idempotent by send id and fenced by lease")

# The last send (036): kept on the leasing row by the report's update of it; the wide
# mailboxes row is not written per send, and its old column (the last send before 036) is
# read only where the leasing row has none.
m_first = next(m for m in a["mailboxes"] if any(s["id"] == first for s in m["sends"]))
quota = {q["mailbox_id"]: q for q in expect(admin("GET", "/api/warmup/quota?limit=1000"), 200,
                                            "quota")["page"]["items"]}
got = psql("""SELECT ml.last_send_at IS NOT NULL, ml.last_send_at <= s.scheduled_at,
                     abs(extract(epoch FROM kiln_now() - ml.last_send_at)) < 120,
                     m.last_send_at IS NULL, kiln_iso(ml.last_send_at)
              FROM mailbox_leasing ml JOIN mailboxes m ON m.id = ml.mailbox_id
              JOIN sends s ON s.id = %d WHERE ml.mailbox_id = %d""" % (first, m_first["id"]))
check(got and got[0].startswith("t|t|t|t|"), "last send on the leasing row only: %r" % got)
check(quota[m_first["id"]]["last_send_at"] == got[0].split("|")[4],
      "the quota shows it: %r" % quota[m_first["id"]])
others = [m["id"] for m in a["mailboxes"] if m["id"] != m_first["id"]]
check(all(quota[i]["last_send_at"] is None for i in others), "no other mailbox sent: %r" % quota)
psql("UPDATE mailboxes SET last_send_at = '2026-03-03T09:00:00Z' WHERE id = %d" % others[0])
one = expect(admin("GET", "/api/warmup/quota?limit=1000"), 200, "quota")["page"]["items"]
check([q["last_send_at"] for q in one if q["mailbox_id"] == others[0]] ==
      ["2026-03-03T09:00:00Z"], "a last send from before 036 still shows: %r" % one)
psql("UPDATE mailboxes SET last_send_at = NULL WHERE id = %d" % others[0])
ok("the last send is kept on the leasing row, an older one still read")

# auth puts the mailbox in error; heartbeat cancels its slots.
mb = a["mailboxes"][1]
report(tok, a["lease_id"], [{"send_id": mb["sends"][0]["id"], "status": "auth", "smtp_code": 535,
                             "detail": "535 5.7.8 bad credentials"}])
check(psql("SELECT state, last_error FROM mailboxes WHERE id = %d" % mb["id"]) ==
      ["error|535 5.7.8 bad credentials"], "auth -> error state")
h = expect(call("POST", "/api/agent/heartbeat", {"lease_id": a["lease_id"]}, token=tok), 200, "hb")
check(sorted(h["cancel"]) == sorted(s["id"] for s in mb["sends"][1:]), "cancel list %r" % h)
check(h["service"] == "running" and h["ttl_s"] == 600, "heartbeat shape %r" % h)
invariants()
ok("auth errors the mailbox; heartbeat cancels its slots")

# Release gives the unsent slots back; the mailboxes can be leased again later.
rel = expect(call("POST", "/api/agent/release", {"lease_id": a["lease_id"]}, token=tok), 200, "rel")
left = len(sends) - 1 - len(mb["sends"])
check(rel["released"] == left, "released %d, expected %d: %r" % (rel["released"], left, rel))
check(psql("SELECT count(*) FROM sends WHERE status = 'leased'") == ["0"], "no slot left leased")
invariants()
rel2 = expect(call("POST", "/api/agent/release", {"lease_id": a["lease_id"]}, token=tok), 200, "")
check(rel2["released"] == 0, "second release is a no-op")
# A late report of a released slot still counts: the mail went out.
late = [s for s in sends if s["id"] != first and s not in mb["sends"]][0]
r = report(tok, a["lease_id"], [sent(late["id"])])
check(r["applied"] == 1, "late report on released lease counted: %r" % r)
invariants()
ok("release returns unsent slots; late reports still count")

# Expiry with no agent calling release: move the clock past the ttl, lease again.
set_clock(utc(2026, 3, 4, 10, 30, 0))
c = lease(tok)
check(c["mailboxes"], "mailboxes leasable again: %r" % c)
set_clock(utc(2026, 3, 4, 10, 41, 0))
# Asked again (at most 5 times, 0.3 s apart) while the expired lease's mailboxes are not
# all handed over: a lease call ends expired leases with SKIP LOCKED, so one that
# kiln-api's stats thread is ending at that moment is skipped, and its mailboxes come in
# the next call (benign: an agent asks again within its loop; 1 clean-clone run in 2 hit
# it in session 34, as api_inbox_expiry's inbox leases did in session 33).
want, got, b_leases = {m["id"] for m in c["mailboxes"]}, set(), []
for attempt in range(5):
    b_leases.append(lease(tok_b))
    got |= {m["id"] for m in b_leases[-1]["mailboxes"]}
    if got >= want:
        break
    time.sleep(0.3)
check(got >= want, "expired lease's mailboxes go to the next leaser: %r of %r" % (got, want))
check(psql("SELECT count(*) FROM sends WHERE lease_id = '%s' AND status <> 'expired'"
           % c["lease_id"]) == ["0"], "expired lease's slots are 'expired'")
expect_error(call("POST", "/api/agent/heartbeat", {"lease_id": c["lease_id"]}, token=tok), 409,
             "lease_expired", "lease_id", "heartbeat of the expired lease")
# Lease a was released at 10:00, before its expiry time (10:10), which has passed too: it
# ended by its release, not by expiry (it read lease_expired, "its unsent slots went back").
expect_error(call("POST", "/api/agent/heartbeat", {"lease_id": a["lease_id"]}, token=tok), 409,
             "lease_ended", "lease_id", "heartbeat of the released lease after its expiry time")
invariants()
ok("leases expire and their mailboxes return to the pool")

# A late report of the expired lease's slot whose mailbox the next leaser holds now: the
# last send moves on (036: the leasing row), that leaser's hold (lease, pending) does not.
cm = next(m for m in c["mailboxes"] if m["sends"] and m["id"] in got)
d = next(x for x in b_leases if cm["id"] in {m["id"] for m in x["mailboxes"]})  # its holder
q = "SELECT lease_id, pending, kiln_iso(last_send_at) FROM mailbox_leasing WHERE mailbox_id = %d"
before = psql(q % cm["id"])[0].split("|")
r = report(tok, c["lease_id"], [sent(cm["sends"][0]["id"])])
check(r["applied"] == 1, "late report of an expired slot counted: %r" % r)
after = psql(q % cm["id"])[0].split("|")
check(after[:2] == before[:2] and before[0] == d["lease_id"],
      "the holder's lease and pending untouched: %r -> %r" % (before, after))
check(after[2] and after[2] > (before[2] or ""), "the last send moved on: %r -> %r" % (before, after))
invariants()
ok("a late report moves the last send, not the next holder's lease")

# Stop: heartbeat cancels everything, lease returns nothing.
expect(admin("POST", "/api/warmup/control", {"action": "stop"}), 200, "stop")
h = expect(call("POST", "/api/agent/heartbeat", {"lease_id": d["lease_id"]}, token=tok_b), 200, "")
check(h["service"] == "stopped" and len(h["cancel"]) == len(all_sends(d)), "stop cancels %r" % h)
e = lease(tok)
check(e["mailboxes"] == [] and e["service"] == "stopped", "no lease while stopped: %r" % e)
expect(admin("POST", "/api/warmup/control", {"action": "start"}), 200, "start")
invariants()
ok("a stopped service leases nothing and cancels live slots")

# A lease without its slots' id range (one a kiln-api of before migration 022 made while
# the new one was deployed): heartbeat and release still find its slots (kiln_lease_slots
# through the mailboxes' leasing rows), so none stays leased.
set_clock(utc(2026, 3, 4, 11, 0, 0))
f = lease(tok)
check(f["lease_id"] and all_sends(f), "a lease to strip of its range: %r" % f)
psql("UPDATE leases SET send_id_min = NULL, send_id_max = NULL WHERE id = '%s'" % f["lease_id"])
expect(admin("POST", "/api/warmup/control", {"action": "stop"}), 200, "stop")
h = expect(call("POST", "/api/agent/heartbeat", {"lease_id": f["lease_id"]}, token=tok), 200, "")
check(sorted(h["cancel"]) == sorted(s["id"] for s in all_sends(f)),
      "stop cancels every slot of a lease with no range: %r" % h)
expect(admin("POST", "/api/warmup/control", {"action": "start"}), 200, "start")
g = lease(tok)
check(g["lease_id"] and all_sends(g), "a second lease to strip: %r" % g)
psql("UPDATE leases SET send_id_min = NULL, send_id_max = NULL WHERE id = '%s'" % g["lease_id"])
rel = expect(call("POST", "/api/agent/release", {"lease_id": g["lease_id"]}, token=tok), 200, "")
check(rel["released"] == len(all_sends(g)), "release gives back all %d: %r"
      % (len(all_sends(g)), rel))
check(psql("SELECT count(*) FROM sends WHERE status = 'leased'") == ["0"], "no slot left leased")
invariants()
ok("leases made before 022 (no id range) still end and cancel exactly")

# The report's counters (kiln_sends_total, kiln_send_errors_total, the latency histogram):
# one mixed batch moves each by exactly its rows, whatever their grouping in the statement.
set_clock(utc(2026, 3, 4, 12, 0, 0))
h = lease(tok)
slots = all_sends(h)
check(len(slots) >= 6, "a lease with six slots to report: %d" % len(slots))


def counters():
    rows = psql("SELECT name || '/' || label || '=' || sum(value) FROM counters "
                "WHERE name IN ('sends', 'send_errors', 'send_latency_bucket', "
                "'send_latency_sum_us') GROUP BY name, label")
    return {k: int(v) for k, v in (x.rsplit("=", 1) for x in rows)}


def result(i, status, latency_ms=None, code=250):
    r = {"send_id": slots[i]["id"], "status": status, "smtp_code": code, "detail": status}
    if latency_ms is not None:
        r["latency_ms"] = latency_ms
    return r


before = counters()
r = report(tok, h["lease_id"], [result(0, "sent", 12), result(1, "sent", 300),
                                result(2, "failed", 40, 550), result(3, "deferred", None, 451),
                                result(4, "unknown", 2000, 0), result(5, "sent", 20)])
check(r["applied"] == 6, "the mixed batch applied: %r" % r)
after = counters()
moved = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
moved = {k: v for k, v in moved.items() if v}
check(moved == {"sends/sent": 3, "sends/failed": 1, "sends/deferred": 1, "sends/unknown": 1,
                "send_errors/failed": 1, "send_errors/deferred": 1, "send_errors/unknown": 1,
                "send_latency_bucket/0.05": 3, "send_latency_bucket/0.5": 1,
                "send_latency_bucket/2.5": 1, "send_latency_sum_us/": 2372000},
      "counters moved by the batch: %r" % moved)
invariants()
ok("a report's counters move by exactly its rows")

# While the service runs, a heartbeat cancels the slots of the lease's mailboxes that are
# no longer active, read through the mailboxes the lease holds: exactly those, with an
# id range or without one (a lease from before 022).
expect(call("POST", "/api/agent/release", {"lease_id": h["lease_id"]}, token=tok), 200, "release")
set_clock(utc(2026, 3, 4, 13, 0, 0))
k = lease(tok)
held = [m for m in k["mailboxes"] if m["sends"]]
check(len(held) >= 3, "a lease of three mailboxes at least: %r" % k)
h0 = expect(call("POST", "/api/agent/heartbeat", {"lease_id": k["lease_id"]}, token=tok), 200, "")
check(h0["cancel"] == [], "nothing to cancel while all are active: %r" % h0)
expect(admin("POST", "/api/mailboxes/%d/pause" % held[0]["id"]), 200, "pause")
h1 = expect(call("POST", "/api/agent/heartbeat", {"lease_id": k["lease_id"]}, token=tok), 200, "")
check(sorted(h1["cancel"]) == sorted(s["id"] for s in held[0]["sends"]),
      "the paused mailbox's slots cancelled, no other: %r" % h1)
psql("UPDATE leases SET send_id_min = NULL, send_id_max = NULL WHERE id = '%s'" % k["lease_id"])
psql("UPDATE users SET state = 'paused' WHERE id = (SELECT user_id FROM mailboxes "
     "WHERE id = %d)" % held[1]["id"])
same_user = [m for m in held[1:] if psql("SELECT user_id FROM mailboxes WHERE id = %d" % m["id"])
             == psql("SELECT user_id FROM mailboxes WHERE id = %d" % held[1]["id"])]
h2 = expect(call("POST", "/api/agent/heartbeat", {"lease_id": k["lease_id"]}, token=tok), 200, "")
check(sorted(h2["cancel"]) == sorted(s["id"] for m in same_user for s in m["sends"]),
      "a paused user's slots cancelled in a lease with no id range: %r" % h2)
left = [s["id"] for m in held if m not in same_user and m is not held[0] for s in m["sends"]]
check(left and psql("SELECT count(*) FROM sends WHERE status = 'leased' AND lease_id = '%s'"
                    % k["lease_id"]) == [str(len(left))], "the others still leased: %r" % left)
psql("UPDATE users SET state = 'active' WHERE id = (SELECT user_id FROM mailboxes "
     "WHERE id = %d)" % held[1]["id"])
expect(call("POST", "/api/agent/release", {"lease_id": k["lease_id"]}, token=tok), 200, "release")
invariants()
ok("a running heartbeat cancels exactly the slots of mailboxes no longer active")

# Under a backlog (more mailboxes due than the agent asked for, so others wait) a
# mailbox's slots after its first fall within KILN_LEASE_BACKLOG_AHEAD_S (60) of now: a
# slot minutes ahead would hold the agent's room while other mailboxes wait for a first.
# With nobody left waiting, even when the agent asks for exactly as many mailboxes as are
# due, a lease grants slots over its whole ttl as before.
expect(admin("POST", "/api/mailboxes/%d/resume" % held[0]["id"]), 200, "resume")
set_clock(utc(2026, 3, 4, 16, 0, 0))
due = int(psql("SELECT count(*) FROM mailbox_leasing WHERE lease_id IS NULL "
               "AND due_at <= kiln_now() + interval '600 seconds'")[0])
check(due >= 4, "mailboxes due for the backlog lease: %d" % due)
b1 = lease(tok, max_mailboxes=2)
got = [m for m in b1["mailboxes"] if m["sends"]]
check(got, "the backlog lease granted: %r" % b1)
check(all(s["not_before_s"] <= 60 for m in got for s in m["sends"][1:]),
      "under a backlog, slots after a mailbox's first within 60 s: %r"
      % [[s["not_before_s"] for s in m["sends"]] for m in got])
b2 = lease(tok, max_mailboxes=due - len(got))
rest = [m for m in b2["mailboxes"] if m["sends"]]
check(len(rest) == due - len(got), "the rest leased in one: %r" % b2)
check(max(s["not_before_s"] for m in rest for s in m["sends"]) > 120,
      "with none left waiting, slots over the lease's ttl: %r"
      % [[s["not_before_s"] for s in m["sends"]] for m in rest])
for x in (b1, b2):
    expect(call("POST", "/api/agent/release", {"lease_id": x["lease_id"]}, token=tok), 200, "")
invariants()
ok("under a backlog a lease holds only near slots; with none waiting, its whole ttl")

# The server's notices are kiln's log lines, not libpq's raw stderr: a release ends its
# slots through kiln_finish_slots, whose CREATE TEMP TABLE IF NOT EXISTS notices on every
# call after a connection's first ("NOTICE:  relation ... already exists, skipping", once
# a line per release in kiln-api's log).
for _ in range(12):
    x = lease(tok, max_mailboxes=1)
    if x["lease_id"]:
        expect(call("POST", "/api/agent/release", {"lease_id": x["lease_id"]}, token=tok), 200, "")
raw = stack_bash('grep -c "^NOTICE:" "$STACK_VAR/log/kiln-api.log" || true')
check(raw == ["0"], "raw NOTICE lines in kiln-api's log: %r" % raw)
ok("the database's notices do not reach kiln-api's log raw")

# A report that closes a mailbox's last slot frees it and gives it its next due time in
# the same row version (session 31; before, kiln_refresh_due wrote the row again): the
# due time kiln_due_for (032) computes from the day's counts after the report. After an
# authentication failure the mailbox's change of state resets it to -infinity instead
# (003's trigger mailboxes_due_reset: the next pick looks at it and moves it on; before,
# kiln_refresh_due then wrote infinity). A mailbox paused while its slots were out gets
# -infinity too, not infinity: the report reads its state from a snapshot that a resume
# committing meanwhile would not be in, and the next pick looks again. Each mailbox's
# slots: all sent; the first sent and the rest failed; an authentication failure; all
# sent, the mailbox paused before the report.
set_clock(utc(2026, 3, 4, 18, 0, 0))
x = lease(tok, max_mailboxes=100)
got = [m for m in x["mailboxes"] if m["sends"]][:4]
check(len(got) == 4, "four mailboxes with slots: %r" % x["mailboxes"])
ids = ",".join(str(m["id"]) for m in got)
before = psql("SELECT kiln_iso(due_at) FROM mailbox_leasing WHERE mailbox_id IN (%s)" % ids)
res = [sent(s["id"]) for s in got[0]["sends"]]
res += [sent(got[1]["sends"][0]["id"])] + [sent(s["id"], "failed") for s in got[1]["sends"][1:]]
res += [{"send_id": s["id"], "status": "auth", "smtp_code": 535, "detail": "535 5.7.8 no"}
        for s in got[2]["sends"]]
res += [sent(s["id"]) for s in got[3]["sends"]]
expect(admin("POST", "/api/mailboxes/%d/pause" % got[3]["id"]), 200, "pause")
r = report(tok, x["lease_id"], res)
check(r["applied"] == len(res), "the report applied: %r" % r)
rows = psql("""SELECT ml.mailbox_id, ml.lease_id IS NULL, ml.due_at = f.due_at,
                      ml.due_at = '-infinity', kiln_iso(ml.due_at), kiln_iso(f.due_at)
               FROM mailbox_leasing ml JOIN kiln_due_for(ARRAY[%s]::bigint[]) f USING (mailbox_id)
               ORDER BY array_position(ARRAY[%s]::bigint[], ml.mailbox_id)""" % (ids, ids))
check([r.split("|")[1:4] for r in rows] == [["t", "t", "f"], ["t", "t", "f"], ["t", "f", "t"],
                                             ["t", "f", "t"]],
      "freed with kiln_due_for's due time (-infinity for the auth failure and the "
      "paused one): %r (before: %r)"
      % (rows, before))
expect(call("POST", "/api/agent/release", {"lease_id": x["lease_id"]}, token=tok), 200, "")
invariants()
ok("a report frees a mailbox with its next due time in the same write")
