"""Shared helpers of the leasing tests: agents, a pool of mailboxes, the test clock."""
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from kiln_test import admin, call, check, expect, fail, psql  # noqa: E402


def make_agent(name):
    j = expect(admin("POST", "/api/agents", {"name": name}), 201, "create agent " + name)
    return j["token"]


def make_pool(plan_id, prefix, users, per_user):
    """users tenants of per_user mailboxes each, due all day (UTC, 0-24) under the test
    clock of 2026-03-04, then a trigger. Through the API: straight into the table would
    skip secret sealing."""
    from kiln_test import make_mailbox, make_user
    for i in range(users):
        u = make_user("%s%d" % (prefix, i), plan_id)
        for j in range(per_user):
            make_mailbox(u["id"], "x%d@%s%d.test" % (j, prefix, u["id"]), timezone="UTC",
                         window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
    expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")


def clone_mailboxes(first, owner_id, user_prefix, per_user):
    """per_user mailboxes (x0.. on 0-24 UTC, warmup from 2026-03-01) for every user whose
    name starts with user_prefix, straight into the table, copying first's sealed secret
    (the API would take minutes for hundreds); owner_id's x0 is first itself. Returns how
    many mailboxes there are."""
    psql("""INSERT INTO mailboxes (user_id, address, display_name, smtp_host, smtp_port,
              smtp_security, smtp_username, smtp_secret, smtp_allow_plaintext_auth, timezone,
              window_start_hour, window_end_hour, warmup_start)
            SELECT u.id, 'x' || g || '@' || u.name || '.test', 'X ' || g, s.smtp_host,
              s.smtp_port, s.smtp_security, s.smtp_username, s.smtp_secret,
              s.smtp_allow_plaintext_auth, 'UTC', 0, 24, '2026-03-01'
            FROM users u CROSS JOIN generate_series(0, %d) g
            CROSS JOIN (SELECT * FROM mailboxes WHERE id = %d) s
            WHERE u.name LIKE '%s%%' AND (u.id <> %d OR g > 0)"""
         % (per_user - 1, first["id"], user_prefix, owner_id))
    return int(psql("SELECT count(*) FROM mailboxes")[0])


def set_clock(ts):
    """Moves kiln_now() to the given aware datetime."""
    psql("UPDATE kiln_clock SET offset_s = extract(epoch FROM '%s'::timestamptz - now())"
         % ts.isoformat())


def lease(token, max_mailboxes=200, max_sends=2000, status=200):
    r = call("POST", "/api/agent/lease",
             {"agent": "t", "max_mailboxes": max_mailboxes, "max_sends": max_sends}, token=token)
    return expect(r, status, "lease")


def report(token, lease_id, results, status=200):
    """A report, sent again (at most 5 times) when kiln-api answers 503 "busy": a report
    that conflicted with concurrent work asks to be retried, as kiln-agent does."""
    for _ in range(5):
        r = call("POST", "/api/agent/report", {"lease_id": lease_id, "results": results},
                 token=token)
        if status != 503 and r.status == 503 and r.json and \
                (r.json.get("error") or {}).get("code") == "busy":
            time.sleep(0.2)
            continue
        break
    return expect(r, status, "report")


def sent(send_id, status="sent"):
    return {"send_id": send_id, "status": status, "smtp_code": 250, "enhanced_code": "2.0.0",
            "detail": "ok", "latency_ms": 12}


def all_sends(lease_answer):
    return [s for m in lease_answer["mailboxes"] for s in m["sends"]]


def utc(*a):
    return datetime.datetime(*a, tzinfo=datetime.timezone.utc)


def invariants():
    """mailbox_days counters agree with the sends rows."""
    bad = psql("""
        SELECT d.mailbox_id, d.day, d.sent, d.in_flight, x.sent, x.fl FROM mailbox_days d
        JOIN (SELECT mailbox_id, day, count(*) FILTER (WHERE status IN ('sent','unknown')) sent,
                     count(*) FILTER (WHERE status = 'leased') fl FROM sends GROUP BY 1, 2) x
          ON x.mailbox_id = d.mailbox_id AND x.day = d.day
        WHERE d.sent <> x.sent OR d.in_flight <> x.fl""")
    check(not bad, "mailbox_days disagree with sends: %r" % bad[:5])
    bad = psql("""SELECT ml.mailbox_id FROM mailbox_leasing ml WHERE ml.pending <>
        (SELECT count(*) FROM sends s WHERE s.lease_id = ml.lease_id
         AND s.mailbox_id = ml.mailbox_id AND s.status = 'leased')""")
    check(not bad, "mailbox_leasing.pending disagrees with sends: %r" % bad[:5])
    # sends carry no foreign keys (migration 007): the grant is their only writer and
    # must only ever reference rows that exist.
    bad = psql("""SELECT s.id FROM sends s
        WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = s.mailbox_id)
           OR (s.recipient_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = s.recipient_id))
           OR (s.lease_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.id = s.lease_id)) LIMIT 5""")
    check(not bad, "sends referencing a missing mailbox or lease: %r" % bad)
