"""The engagement plan and replies (issue 13), one part per CTest (test_engagement.py PART,
each against its own stack): the plan's engagement members (defaults, round trip, 400
naming the field with nothing created), replies leased as ordinary sends with their
threading and under the plan's daily cap, the inbox side's sequence for a found message
(inputs from the database, the policy, the reply; engage_found_client), and the time zone
spans the policy reads."""
import datetime
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "leasing"))
from kiln_test import *  # noqa: E402,F401,F403
from leaselib import make_agent, set_clock, lease, report, sent, all_sends, utc  # noqa: E402

DEFAULTS = {"open_rate": 0.9, "important_rate": 0.05, "rescue_rate": 1.0, "reply_rate": 0.3,
            "untouched_rate": 0.05, "dwell_median_min": 30, "dwell_max_min": 480,
            "quiet_start_hour": 23, "quiet_end_hour": 7, "retention_days": 30,
            "max_reply_depth": 2}


def plan_count():
    return int(psql("SELECT count(*) FROM plans")[0])


def reply_subject(subject):
    """A reply's subject: "Re: " once (some of 002's templates already start with "Re:")."""
    return subject if subject[:3].lower() == "re:" else "Re: " + subject


def part_plans():
    p = make_plan("defaults")
    got = expect(admin("GET", "/api/plans/%d" % p["id"]), 200, "get plan")
    for k, v in DEFAULTS.items():
        check(got.get(k) == v, "GET plan: %s defaults to %r, got %r" % (k, v, got.get(k)))
    ok("test_plan_engagement_members_default_as_documented")

    custom = {"open_rate": 0.75, "important_rate": 0.1, "rescue_rate": 0.8, "reply_rate": 0.2,
              "untouched_rate": 0.15, "dwell_median_min": 45, "dwell_max_min": 600,
              "quiet_start_hour": 22, "quiet_end_hour": 8, "retention_days": 3,
              "max_reply_depth": 0}
    c = make_plan("custom", **custom)
    listed = expect(admin("GET", "/api/plans"), 200, "list plans")["items"]
    again = [x for x in listed if x["id"] == c["id"]][0]
    for k, v in custom.items():
        check(c[k] == v and again[k] == v,
              "plan %s round-trips: sent %r, created %r, listed %r" % (k, v, c[k], again[k]))
    ok("test_plan_engagement_members_round_trip")

    bad = [("open_rate", 1.5), ("open_rate", "high"), ("important_rate", 0.6),
           ("rescue_rate", -0.1), ("untouched_rate", 0.51), ("dwell_median_min", 0),
           ("dwell_median_min", 721), ("dwell_max_min", 1441), ("quiet_start_hour", 24),
           ("quiet_end_hour", -1), ("retention_days", 2), ("retention_days", 366),
           ("max_reply_depth", 6), ("max_reply_depth", 1.5), ("open_rate", None)]
    before = plan_count()
    for i, (field, value) in enumerate(bad):
        body = {"name": "bad-%d" % i, "ramp_start": 1, "ramp_step": 1, "daily_max": 5,
                field: value}
        expect_error(admin("POST", "/api/plans", body), 400, field=field,
                     what="%s=%r" % (field, value))
    body = {"name": "bad-dwell", "ramp_start": 1, "ramp_step": 1, "daily_max": 5,
            "dwell_median_min": 120, "dwell_max_min": 60}
    expect_error(admin("POST", "/api/plans", body), 400, field="dwell_max_min",
                 what="dwell_max_min below the median")
    check(plan_count() == before, "no plan was created by a refused request")
    ok("test_bad_engagement_members_are_refused_naming_the_field")


def leasable(user_id, address):
    return make_mailbox(user_id, address, timezone="UTC",
                        window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")


def slot_of(answer, mailbox_id):
    for m in answer["mailboxes"]:
        if m["id"] == mailbox_id:
            return m["sends"]
    return []


def lease_all(tok):
    """Leases until nothing more comes (bounded), returns every mailbox entry."""
    got = []
    for _ in range(5):
        a = lease(tok)
        if not a["mailboxes"]:
            break
        got.append(a)
    return got


def schedule_reply(send_id):
    return int(psql("SELECT coalesce(kiln_schedule_reply(%d, kiln_now()), 0)" % send_id)[0])


def part_reply_lease():
    # One send a day per mailbox: a reply can only take that day's one slot.
    plan = make_plan("one-a-day", ramp_start=1, ramp_step=0, daily_max=1)
    ua = make_user("alice-org", plan["id"])
    ub = make_user("bob-org", plan["id"])
    a = leasable(ua["id"], "alice@a.test")
    b = leasable(ub["id"], "bob@b.test")
    tok = make_agent("host-a")

    set_clock(utc(2026, 3, 4, 10, 0))
    day1 = lease_all(tok)
    sends = [s for ans in day1 for s in all_sends(ans)]
    check(len(sends) == 2, "day 1: one slot each: %r" % sends)
    for ans in day1:
        report(tok, ans["lease_id"], [sent(s["id"]) for s in all_sends(ans)])
        for s in all_sends(ans):
            check("in_reply_to" not in s and "references" not in s,
                  "a fresh send carries no threading: %r" % s)
    parent = [s for ans in day1 for s in slot_of(ans, a["id"])][0]
    stored = psql("SELECT subject FROM sends WHERE id = %d" % parent["id"])[0]
    check(stored == parent["subject"], "the granted subject is stored: %r vs %r"
          % (stored, parent["subject"]))

    rid = schedule_reply(parent["id"])
    check(rid > 0, "a reply was scheduled for send %d" % parent["id"])
    check(schedule_reply(parent["id"]) == 0, "one reply per received message")
    # Bob has sent his one mail of the day: the reply waits.
    later = lease(tok)
    check(later["mailboxes"] == [], "day 1, cap reached: nothing leased: %r" % later)
    check(psql("SELECT send_id IS NULL FROM pending_replies WHERE id = %d" % rid) == ["t"],
          "the reply is still pending under the daily cap")
    ok("test_a_reply_waits_while_the_daily_cap_is_reached")

    set_clock(utc(2026, 3, 5, 10, 0))
    day2 = lease_all(tok)
    bob = [s for ans in day2 for s in slot_of(ans, b["id"])]
    check(len(bob) == 1, "day 2: bob's one slot: %r" % bob)
    r1 = bob[0]
    check(r1["to"] == "alice@a.test", "the reply goes back to the sender: %r" % r1)
    check(r1["subject"] == reply_subject(parent["subject"]), "subject Re: + original: %r vs %r" % (r1["subject"], parent["subject"]))
    check(r1.get("in_reply_to") == parent["message_id"],
          "In-Reply-To is the parent's Message-ID: %r" % r1)
    check(r1.get("references") == [parent["message_id"]], "References: %r" % r1)
    check(psql("SELECT send_id FROM pending_replies WHERE id = %d" % rid) == [str(r1["id"])],
          "the pending reply is bound to its slot")
    row = psql("SELECT in_reply_to, thread_refs, reply_depth FROM sends WHERE id = %d"
               % r1["id"])[0]
    check(row == "%s|%s|1" % (parent["message_id"], parent["message_id"]),
          "the send row carries the threading and depth 1: %r" % row)
    for ans in day2:
        report(tok, ans["lease_id"], [sent(s["id"]) for s in all_sends(ans)])
    ok("test_a_scheduled_reply_is_leased_with_its_threading")

    # A reply to the reply: References grow oldest first; "Re:" is not doubled.
    rid2 = schedule_reply(r1["id"])
    check(rid2 > 0, "a reply to the reply was scheduled")
    set_clock(utc(2026, 3, 6, 10, 0))
    day3 = lease_all(tok)
    alice = [s for ans in day3 for s in slot_of(ans, a["id"])]
    check(len(alice) == 1, "day 3: alice's one slot: %r" % alice)
    r2 = alice[0]
    check(r2["to"] == "bob@b.test" and r2["subject"] == r1["subject"],
          "reply 2 to bob, subject kept: %r" % r2)
    check(r2["in_reply_to"] == r1["message_id"] and
          r2["references"] == [parent["message_id"], r1["message_id"]],
          "reply 2 threading: %r" % r2)
    check(psql("SELECT reply_depth FROM sends WHERE id = %d" % r2["id"]) == ["2"],
          "reply 2 has depth 2")
    ok("test_a_reply_to_a_reply_extends_references_oldest_first")

    # A long thread keeps its first id and the 19 newest.
    refs = " ".join("<%d.x@t.test>" % i for i in range(25))
    psql("UPDATE sends SET thread_refs = '%s', in_reply_to = '<24.x@t.test>' WHERE id = %d"
         % (refs, r2["id"]))
    rid3 = schedule_reply(r2["id"])
    kept = psql("SELECT thread_refs FROM pending_replies WHERE id = %d" % rid3)[0].split(" ")
    want = ["<0.x@t.test>"] + ["<%d.x@t.test>" % i for i in range(7, 25)] + [r2["message_id"]]
    check(kept == want, "References capped at 20, first kept: %r" % kept)
    ok("test_references_are_capped_at_20_keeping_the_first")


def found_client(send_id, folder, seed, found_s):
    exe = os.path.join(os.environ.get("KILN_BUILD_DIR", "build"), "tests", "api",
                       "engage_found_client")
    out = subprocess.run([exe, str(send_id), folder, str(seed), str(found_s)],
                         capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, "engage_found_client: exit %d: %s" % (out.returncode, out.stderr))
    return out.stdout.splitlines()


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def part_found_to_reply():
    """The inbox side's sequence for one found message: the plan's inputs read from the
    database, the policy, the reply scheduled, and the reply leased the next local day."""
    plan = make_plan("always-reply", ramp_start=1, ramp_step=0, daily_max=1, reply_rate=1.0,
                     untouched_rate=0.0, open_rate=0.8, important_rate=0.1,
                     dwell_median_min=20, dwell_max_min=300)
    ua = make_user("sender-org", plan["id"])
    ub = make_user("ny-org", plan["id"])
    a = leasable(ua["id"], "alice@a.test")
    b = make_mailbox(ub["id"], "bob@b.test", timezone="America/New_York",
                     window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01")
    tok = make_agent("host-a")
    set_clock(utc(2026, 3, 7, 10, 0))  # 05:00 in New York: quiet hours
    day1 = lease_all(tok)
    for ans in day1:
        report(tok, ans["lease_id"], [sent(s["id"]) for s in all_sends(ans)])
    parent = [s for ans in day1 for s in slot_of(ans, a["id"])][0]
    found_s = int(utc(2026, 3, 7, 10, 0).timestamp())

    lines = found_client(parent["id"], "junk", 7, found_s)
    inputs = fields(lines[0])
    want = {"recipient": str(b["id"]), "open": "0.8000", "important": "0.1000",
            "rescue": "1.0000", "reply": "1.0000", "untouched": "0.0000",
            "dwell": "1200/18000", "quiet": "1380-420", "retention": "30", "max_depth": "2",
            "depth": "0"}
    for k, v in want.items():
        check(inputs.get(k) == v, "input %s: want %r, got %r (%s)" % (k, v, inputs.get(k),
                                                                      lines[0]))
    spans = [tuple(int(x) for x in sp.split(":")) for sp in inputs["spans"].split(",")]
    check(len(spans) == 2 and spans[0][1] == -18000 and spans[1] == (1772953200, -14400),
          "New York's spans across the 2026-03-08 switch: %r" % spans)
    ok("test_the_policy_inputs_come_from_the_recipients_plan_and_zone")

    plan_line = fields(lines[1])
    check(plan_line["untouched"] == "0" and plan_line["reply"] == "1"
          and plan_line["reply_depth"] == "1", "plan: %s" % lines[1])
    actions = [l.split() for l in lines if l.startswith("action ")]
    kinds = [x[1] for x in actions]
    check(kinds[0] == "rescue" and "file" in kinds and kinds[-1] == "prune",
          "junk mail: rescue first, filed, pruned: %r" % kinds)
    for x in actions + [["reply", "at=" + plan_line["reply_at"]]]:
        if x[1] == "prune":
            continue
        at = int(x[2 if x[0] == "action" else 1].split("=")[1])
        local = psql("SELECT extract(hour FROM to_timestamp(%d) AT TIME ZONE "
                     "'America/New_York')::int" % at)[0]
        check(7 <= int(local) < 23, "%s due at %s local hour %s: in the quiet hours"
              % (x[1], at, local))
    scheduled = [l for l in lines if l.startswith("scheduled ")]
    check(len(scheduled) == 1 and int(scheduled[0].split()[1]) > 0, "reply scheduled: %r"
          % lines)
    due = int(psql("SELECT extract(epoch FROM due_at)::bigint FROM pending_replies")[0])
    check(due == int(plan_line["reply_at"]), "the reply is due when the policy said")
    again = found_client(parent["id"], "junk", 7, found_s)
    check(again[:-1] == lines[:-1] and again[-1] == "scheduled 0",
          "a re-reported message gets the same plan and no second reply: %r" % again)
    ok("test_a_found_message_gets_its_plan_outside_the_quiet_hours_and_one_reply")

    set_clock(utc(2026, 3, 8, 16, 0))  # noon in New York, bob's next local day
    day2 = lease_all(tok)
    bob = [s for ans in day2 for s in slot_of(ans, b["id"])]
    check(len(bob) == 1 and bob[0]["to"] == "alice@a.test"
          and bob[0].get("in_reply_to") == parent["message_id"]
          and bob[0].get("references") == [parent["message_id"]]
          and bob[0]["subject"] == reply_subject(parent["subject"]),
          "the scheduled reply is leased as bob's send: %r" % bob)
    ok("test_the_scheduled_reply_is_leased_the_next_local_day")


def part_reply_paced():
    """A due reply lifts pacing for its slot (028): a mailbox ahead of its pace sends the
    reply when it is due, not at its next paced slot hours later."""
    # Two a day over a 0-24 window: paced at 00:00 and 12:00. No quiet hours.
    plan = make_plan("paced-reply", ramp_start=2, ramp_step=0, daily_max=2, reply_rate=1.0,
                     untouched_rate=0.0, dwell_median_min=20, dwell_max_min=120,
                     quiet_start_hour=0, quiet_end_hour=0)
    ua = make_user("paced-a", plan["id"])
    ub = make_user("paced-b", plan["id"])
    a = leasable(ua["id"], "alice@a.test")
    b = leasable(ub["id"], "bob@b.test")
    tok = make_agent("host-a")
    set_clock(utc(2026, 3, 10, 1, 0))
    day = lease_all(tok)
    for ans in day:
        report(tok, ans["lease_id"], [sent(s["id"]) for s in all_sends(ans)])
    parent = [s for ans in day for s in slot_of(ans, a["id"])]
    check(len(parent) == 1 and len([s for ans in day for s in slot_of(ans, b["id"])]) == 1,
          "01:00: one paced send each: %r" % day)
    parent = parent[0]
    check(lease(tok)["mailboxes"] == [], "01:00: both ahead of their pace: nothing more")
    found_s = int(utc(2026, 3, 10, 1, 0).timestamp())
    lines = found_client(parent["id"], "inbox", 11, found_s)
    reply_at = int(fields([l for l in lines if l.startswith("plan ")][0])["reply_at"])
    check(found_s < reply_at <= found_s + 4 * 3600,
          "the reply is due within two dwells: %r" % lines)
    due = int(psql("SELECT extract(epoch FROM due_at)::bigint FROM mailbox_leasing "
                   "WHERE mailbox_id = %d" % b["id"])[0])
    check(due == reply_at, "bob's due time is the reply's (%d), not 12:00: %d" % (reply_at, due))
    set_clock(datetime.datetime.fromtimestamp(reply_at, datetime.timezone.utc))
    got = lease_all(tok)
    bob = [s for ans in got for s in slot_of(ans, b["id"])]
    check(len(bob) == 1 and bob[0].get("in_reply_to") == parent["message_id"]
          and bob[0]["to"] == "alice@a.test",
          "at the reply's due time bob's one slot is the reply: %r" % got)
    check([s for ans in got for s in slot_of(ans, a["id"])] == [],
          "alice is still ahead of her pace: no slot")
    at = int(psql("SELECT extract(epoch FROM scheduled_at)::bigint FROM sends WHERE id = %d"
                  % bob[0]["id"])[0])
    check(reply_at <= at < reply_at + 3600, "the reply's slot is at its due time: %d vs %d"
          % (at, reply_at))
    ok("test_a_due_reply_lifts_pacing_for_its_slot")


def part_reply_recipient_paused():
    """A reply whose recipient was paused since waits without lifting its sender's pacing
    (038): until session 35 the sender's next slot came forward to the reply's due time,
    the reply could not take it (its recipient is no candidate) and a fresh send did, every
    cooldown, for as long as the reply waited (3 days)."""
    plan = make_plan("paused-reply", ramp_start=2, ramp_step=0, daily_max=2, reply_rate=1.0,
                     untouched_rate=0.0, dwell_median_min=20, dwell_max_min=120,
                     quiet_start_hour=0, quiet_end_hour=0)
    a = leasable(make_user("paused-a", plan["id"])["id"], "alice@a.test")
    b = leasable(make_user("paused-b", plan["id"])["id"], "bob@b.test")
    leasable(make_user("paused-c", plan["id"])["id"], "carol@c.test")  # another recipient
    tok = make_agent("host-a")
    set_clock(utc(2026, 3, 10, 1, 0))
    day = lease_all(tok)
    for ans in day:
        report(tok, ans["lease_id"], [sent(s["id"]) for s in all_sends(ans)])
    to_bob = [s for ans in day for s in slot_of(ans, a["id"]) if s["to"] == "bob@b.test"]
    if not to_bob:  # alice wrote to carol: carol's mail to bob... take whoever wrote to bob
        to_bob = [s for ans in day for m in ans["mailboxes"] for s in m["sends"]
                  if s["to"] == "bob@b.test"]
    check(to_bob, "01:00: someone wrote to bob: %r" % day)
    parent = to_bob[0]
    sender = [m["id"] for ans in day for m in ans["mailboxes"] if parent in m["sends"]][0]
    found_s = int(utc(2026, 3, 10, 1, 0).timestamp())
    lines = found_client(parent["id"], "inbox", 11, found_s)
    reply_at = int(fields([l for l in lines if l.startswith("plan ")][0])["reply_at"])
    check(found_s < reply_at <= found_s + 4 * 3600, "bob's reply is due: %r" % lines)
    # the mailbox bob answers is paused before the reply is due
    expect(admin("POST", "/api/mailboxes/%d/pause" % sender), 200, "pause the reply's recipient")
    set_clock(datetime.datetime.fromtimestamp(reply_at, datetime.timezone.utc))
    got = lease_all(tok)
    check([s for ans in got for s in slot_of(ans, b["id"])] == [],
          "bob is ahead of his pace and his reply cannot go out: no slot: %r" % got)
    due = int(psql("SELECT extract(epoch FROM due_at)::bigint FROM mailbox_leasing "
                   "WHERE mailbox_id = %d" % b["id"])[0])
    check(due == int(utc(2026, 3, 10, 12, 0).timestamp()),
          "bob's next due time is his paced 12:00, not the waiting reply's: %d" % due)
    check(psql("SELECT count(*) FROM pending_replies WHERE mailbox_id = %d AND send_id IS NULL"
               % b["id"]) == ["1"], "the reply still waits for its recipient")
    ok("test_a_reply_to_a_paused_mailbox_does_not_lift_pacing")


def part_tz_spans():
    # New York springs forward on 2026-03-08 at 07:00 UTC (02:00 EST -> 03:00 EDT).
    rows = psql("SELECT from_s, offset_s FROM kiln_tz_spans('America/New_York', "
                "'2026-03-07 12:00Z', 48)")
    spans = [tuple(int(x) for x in r.split("|")) for r in rows]
    check(len(spans) == 2 and spans[0][1] == -18000 and spans[1] == (1772953200, -14400),
          "New York spans across the switch: %r" % spans)
    rows = psql("SELECT count(*) FROM kiln_tz_spans('Asia/Kolkata', '2026-03-07 12:00Z', 72)")
    check(rows == ["1"], "a zone without DST is one span: %r" % rows)
    ok("test_tz_spans_find_the_dst_switch_to_the_second")


PARTS = {"plans": part_plans, "reply_lease": part_reply_lease,
         "found_to_reply": part_found_to_reply, "tz_spans": part_tz_spans,
         "reply_paced": part_reply_paced, "reply_recipient_paused": part_reply_recipient_paused}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PARTS:
        fail("usage: test_engagement.py {%s}" % "|".join(PARTS))
    started = time.time()
    PARTS[sys.argv[1]]()
    print("# %s: %.1fs" % (sys.argv[1], time.time() - started))
