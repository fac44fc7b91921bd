"""Reciprocity and pairing (issue 13) through nginx, on the test clock: recipients come
from other tenants only, and over 4 simulated days every mailbox receives about what it
sends (the 7-day ledger in the mailbox GET), although the mailboxes send very different
amounts; a sender whose mail lands in junk at one provider gets fewer recipients there
than a sender that lands in the inbox. Also PATCH /api/plans/{id} for the engagement
members: validated with a 400 naming the field, nothing changed on error.
  test_pairing.py [part]   (part: balance, junk, plan_patch; all when absent)
Run with KILN_PAIR_GAP_DAYS=0 (tests/api/CMakeLists.txt): a small pool could not keep
the pair gap and still send its targets."""
import sys
from kiln_test import *

# Tenants and the daily target of each of their mailboxes: the senders of one tenant
# can only reach the others, and the targets differ eightfold.
TENANTS = [[16, 4, 8], [12, 2, 6], [10, 14], [3, 9, 5, 7]]
DAYS = ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
HOSTS = ["imap.gmail.com", "outlook.office365.com", "imap.mail.yahoo.com", "mail.example.test"]


def agent():
    return expect(admin("POST", "/api/agents", {"name": "a"}), 201, "agent")["token"]


# When the agent leases on each simulated day: every three hours, as pacing spreads a
# mailbox's target over its window, and once more before the window closes.
STEPS = ["%02d:00" % h for h in range(2, 24, 3)] + ["23:50"]


def run_day(tok, day, by_addr, log):
    """Leases at each step (every send reported sent); log gets (sender, recipient) per
    send."""
    for hm in STEPS:
        set_clock("%sT%s:00Z" % (day, hm))
        la = expect(call("POST", "/api/agent/lease", {"max_mailboxes": 100, "max_sends": 1000},
                         token=tok), 200, "lease")
        res = []
        for m in la["mailboxes"]:
            for s in m["sends"]:
                log.append((m["id"], by_addr[s["to"]]))
                res.append({"send_id": s["id"], "status": "sent"})
        if res:
            expect(call("POST", "/api/agent/report", {"lease_id": la["lease_id"],
                                                      "results": res}, token=tok), 200, "report")


def ledger(box_id):
    return expect(admin("GET", "/api/mailboxes/%d" % box_id), 200, "mailbox")["reciprocity"]


def part_balance():
    plan = make_plan("p", ramp_start=4, ramp_step=0, daily_max=40, cooldown_min_s=20,
                     cooldown_max_s=30)
    boxes, tenant_of, target = [], {}, {}
    n = 0
    for t, targets in enumerate(TENANTS):
        u = make_user("t%d" % t, plan["id"])
        for tg in targets:
            b = make_mailbox(u["id"], "box%d@d%d.test" % (n, n), timezone="UTC",
                             window={"start_hour": 0, "end_hour": 24}, daily_target=tg,
                             warmup_start="2026-02-20",
                             imap={"host": HOSTS[n % 4], "port": 993, "password": "i%d" % n})
            boxes.append(b)
            tenant_of[b["id"]], target[b["id"]] = t, tg
            n += 1
    r0 = ledger(boxes[0]["id"])
    check(r0 == {"sent_7d": 0, "received_7d": 0}, "a new mailbox's ledger: %r" % r0)
    tok = agent()
    by_addr = {b["address"]: b["id"] for b in boxes}
    log = []
    for day in DAYS:
        run_day(tok, day, by_addr, log)
    own = [(s, r) for s, r in log if tenant_of[s] == tenant_of[r]]
    check(not own, "never a recipient of the sender's own tenant: %r" % own[:5])
    ok("test_recipients_are_never_the_senders_tenant")

    got = {b["id"]: ledger(b["id"]) for b in boxes}
    for b in boxes:
        g = got[b["id"]]
        check(g["sent_7d"] == target[b["id"]] * len(DAYS),
              "mailbox %d sent its target every day: %r" % (b["id"], g))
        check(g["received_7d"] == sum(1 for _, r in log if r == b["id"]),
              "received_7d counts the slots addressed to it: %r" % g)
    gaps = {b["id"]: got[b["id"]]["received_7d"] - got[b["id"]]["sent_7d"] for b in boxes}
    # A uniform choice would give each about the mean (8 a day, 32 over the run): the
    # mailbox sending 2 a day would receive ~ 24 more than it sent, the one sending 16 ~ 32
    # fewer (measured with the lag term removed: off by up to 33 over 5 days).
    # The choice by lag keeps every mailbox within a few messages (measured: 1).
    worst = max(abs(v) for v in gaps.values())
    print("# received - sent over %d days, by target: %s" % (
        len(DAYS), sorted((target[i], gaps[i]) for i in gaps)))
    check(worst <= 3, "every mailbox receives within 3 of what it sent: %r" % gaps)
    ok("test_every_mailbox_receives_about_what_it_sends_over_simulated_days")
    reset_clock()


def placements(sender, provider, junk, inbox, first_id):
    """Placements as the inbox report records them (the trigger rolls them up into
    placement_days); send ids far from the real ones."""
    psql("INSERT INTO placements (send_id, mailbox_id, recipient_id, placement, provider, "
         "decided_at) SELECT %d + g, %d, %d, CASE WHEN g <= %d THEN 'junk' ELSE 'inbox' END"
         "::placement_folder, '%s', kiln_now() FROM generate_series(1, %d) g"
         % (first_id, sender, sender, junk, provider, junk + inbox))


def part_junk():
    set_clock("2026-03-02T12:00:00Z")
    plan = make_plan("p", ramp_start=12, ramp_step=0, daily_max=12, cooldown_min_s=20,
                     cooldown_max_s=30)
    quiet = make_plan("q", ramp_start=0, ramp_step=0, daily_max=0)
    senders = []
    u = make_user("senders", plan["id"])  # one tenant: they never pair with each other
    for name in ("junky", "clean"):
        senders.append(make_mailbox(u["id"], "%s@%s.test" % (name, name), timezone="UTC",
                                    window={"start_hour": 0, "end_hour": 24},
                                    warmup_start="2026-02-20"))
    provider_of = {}
    for t in range(4):  # recipients that send nothing: 3 at gmail, 3 at outlook per tenant
        u = make_user("r%d" % t, quiet["id"])
        for k in range(6):
            host = "imap.gmail.com" if k % 2 == 0 else "outlook.office365.com"
            b = make_mailbox(u["id"], "r%d@r%d-%d.test" % (k, t, k), timezone="UTC",
                             window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-02-20",
                             imap={"host": host, "port": 993, "password": "x"})
            provider_of[b["id"]] = "gmail" if k % 2 == 0 else "outlook"
    junky, clean = senders[0]["id"], senders[1]["id"]
    # The junky sender: all 12 at gmail in junk, all 30 at outlook in the inbox (29 % junk
    # overall: the judge quarantines it, which holds its target at the ramp's floor, 12,
    # but does not pause it); the clean one: all 42 in the inbox, the same mix.
    placements(junky, "gmail", 12, 0, 10 ** 9)
    placements(junky, "outlook", 0, 30, 10 ** 9 + 100)
    placements(clean, "gmail", 0, 12, 10 ** 9 + 200)
    placements(clean, "outlook", 0, 30, 10 ** 9 + 300)
    rows = psql("SELECT provider, sum(junk), sum(inbox) FROM placement_days WHERE mailbox_id = %d "
                "GROUP BY 1 ORDER BY 1" % junky)
    check(rows == ["gmail|12|0", "outlook|0|30"], "the rollups: %r" % rows)
    tok = agent()
    by_addr = {}
    for b in expect(admin("GET", "/api/mailboxes?limit=1000"), 200, "list")["items"]:
        by_addr[b["address"]] = b["id"]
    log = []
    for day in DAYS[:2]:
        run_day(tok, day, by_addr, log)
    share = {}
    for s in (junky, clean):
        to = [provider_of[r] for snd, r in log if snd == s]
        check(len(to) == 24, "sender %d sent 12 a day: %d" % (s, len(to)))
        share[s] = to.count("gmail") / len(to)
    print("# gmail share of recipients: junky %.2f, clean %.2f" % (share[junky], share[clean]))
    check(share[junky] <= 0.25, "the junky sender reaches gmail rarely: %r" % share)
    check(share[clean] >= 0.4, "the clean sender reaches gmail as often as outlook: %r" % share)
    ok("test_a_sender_landing_in_junk_at_a_provider_gets_fewer_recipients_there")
    reset_clock()


PLAN_FIELDS = {"reply_rate": 0.25, "open_rate": 0.8, "important_rate": 0.1, "rescue_rate": 0.9,
               "untouched_rate": 0.1, "dwell_median_min": 20, "dwell_max_min": 200,
               "quiet_start_hour": 22, "quiet_end_hour": 6, "retention_days": 3,
               "max_reply_depth": 1}


def part_plan_patch():
    plan = make_plan("p")
    pid = plan["id"]
    path = "/api/plans/%d" % pid
    bad = [({"open_rate": "0.5"}, "open_rate"), ({"open_rate": 1.5}, "open_rate"),
           ({"important_rate": 0.6}, "important_rate"), ({"rescue_rate": -0.1}, "rescue_rate"),
           ({"reply_rate": 2}, "reply_rate"), ({"untouched_rate": 0.51}, "untouched_rate"),
           ({"dwell_median_min": 0}, "dwell_median_min"), ({"dwell_max_min": 1441}, "dwell_max_min"),
           ({"dwell_median_min": 60, "dwell_max_min": 30}, "dwell_max_min"),
           ({"dwell_median_min": 700}, "dwell_max_min"),  # above the stored max (480)
           ({"quiet_start_hour": 24}, "quiet_start_hour"), ({"quiet_end_hour": -1}, "quiet_end_hour"),
           ({"quiet_end_hour": 1.5}, "quiet_end_hour"), ({"retention_days": 2}, "retention_days"),
           ({"retention_days": True}, "retention_days"), ({"max_reply_depth": 6}, "max_reply_depth"),
           ({"max_reply_depth": None}, "max_reply_depth"), ({"name": "x"}, "name"),
           ({"ramp_start": 1}, "ramp_start"), ({"open_rate\u0000": 0.5}, None),
           ({"open_rate": 0.5, "nope": 1}, "nope")]
    for body, field in bad:
        r = admin("PATCH", path, body)
        check(r.status == 400 and r.json and r.json.get("error", {}).get("code") in
              ("invalid_field", "unknown_field", "invalid_json") and
              (field is None or r.json["error"]["field"] == field),
              "PATCH %r: a 400 naming %s, got %r" % (body, field, r))
        now = expect(admin("GET", path), 200, "plan")
        check(now == plan, "nothing changed by %r: %r" % (body, now))
    r = admin("PATCH", path, raw=b'{"open_rate": 0.5, "open_rate": 0.6}')
    check(r.status == 400, "a duplicate member: %r" % r)
    r = admin("PATCH", path, raw=b'{"retention_days": "7\\u0000"}')
    check(r.status == 400 and r.json["error"]["field"] == "retention_days", "NUL: %r" % r)
    check(expect(admin("GET", path), 200, "plan") == plan, "nothing changed")
    ok("test_plan_patch_refuses_bad_members_with_a_400_naming_the_field_and_changes_nothing")

    r = admin("PATCH", "/api/plans/999999", {"open_rate": 0.5})
    check(r.status == 404, "unknown plan: %r" % r)
    u = make_user("t", pid)
    tenant = expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": u["id"]}), 201,
                    "token")["token"]
    r = call("PATCH", path, {"open_rate": 0.5}, token=tenant)
    check(r.status in (401, 403), "a tenant cannot change a plan: %r" % r)
    got = expect(admin("PATCH", path, {"open_rate": 0.5}), 200, "one member")
    check(got["open_rate"] == 0.5 and {k: v for k, v in got.items() if k != "open_rate"} ==
          {k: v for k, v in plan.items() if k != "open_rate"}, "only open_rate moved: %r" % got)
    got = expect(admin("PATCH", path, PLAN_FIELDS), 200, "every member")
    for k, v in PLAN_FIELDS.items():
        check(got[k] == v, "%s: %r, wanted %r" % (k, got[k], v))
    check(expect(admin("GET", path), 200, "plan") == got, "stored")
    check(got["name"] == plan["name"] and got["ramp_start"] == plan["ramp_start"],
          "the rest kept: %r" % got)
    got = expect(admin("PATCH", path, {}), 200, "empty")
    check(expect(admin("GET", path), 200, "plan") == got, "an empty PATCH changes nothing")
    ok("test_plan_patch_changes_the_members_given")


PARTS = {"balance": part_balance, "junk": part_junk, "plan_patch": part_plan_patch}
if len(sys.argv) > 1:
    PARTS[sys.argv[1]]()
else:
    for f in PARTS.values():
        f()
