"""Mailbox health (issue 13) through nginx: placements recorded from found events (real
send leases, Message-IDs with their MAC, an inbox lease) roll up per sender, day and
provider; the judge in kiln-api's stats refresher scores them (3 of 3 in the inbox reads
44, not 100) and moves the band watch -> quarantine -> pause as the junk share rises over
a simulated week on the test clock, delivering a signed mailbox.health_changed for each
move; quarantine holds the day's target at the ramp's floor (the quota answer shows it)
and lifts after its days; pause stops leasing. Bad input on the new endpoints is a 400
naming the field; a tenant sees only its own mailboxes.
  test_health.py [part]   (part: score, bands, quarantine, bad_input, tenant; all when
                           absent)
Run with KILN_PAIR_GAP_DAYS=0 and a 30-day placement deadline (tests/api/CMakeLists.txt)
so sends held back unfound stay unplaced until the test finds them."""
import sys
from kiln_test import *
from webhook_receiver import Receiver

HOSTS = ["imap.gmail.com", "outlook.office365.com", "imap.mail.yahoo.com", "mail.example.test"]
UID = [100]


class World:
    """n mailboxes in n tenants, all with IMAP, all sending to each other; one agent."""

    def __init__(self, n, day="2026-03-02"):
        self.day = day
        set_clock(day + "T20:00:00Z")
        plan = make_plan("p", ramp_start=2, ramp_step=4, daily_max=30, cooldown_min_s=60,
                         cooldown_max_s=90)
        self.boxes, self.users, self.tokens = [], [], []
        for i in range(n):
            u = make_user("t%d" % i, plan["id"])
            self.users.append(u)
            self.tokens.append(expect(admin("POST", "/api/tokens", {"scope": "tenant",
                                                                    "user_id": u["id"]}),
                                      201, "tenant token")["token"])
            self.boxes.append(make_mailbox(
                u["id"], "box%d@d%d.test" % (i, i), timezone="UTC",
                window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-02-20",
                imap={"host": HOSTS[i % len(HOSTS)], "port": 993, "password": "imap-%d" % i}))
        self.agent = expect(admin("POST", "/api/agents", {"name": "a"}), 201, "agent")["token"]
        self.pool = {b["id"]: [] for b in self.boxes}  # sender -> [(recipient, message_id)]
        self.inbox_lease = None

    def at(self, iso):
        set_clock(iso)

    def lease(self):
        """One send lease (every send reported sent, none found yet): the pool grows."""
        la = expect(call("POST", "/api/agent/lease", {"max_mailboxes": 50, "max_sends": 500,
                                                      "max_inboxes": 20}, token=self.agent),
                    200, "lease")
        if la.get("inbox_lease"):
            self.inbox_lease = la["inbox_lease"]["lease_id"]
        by_addr = {b["address"]: b["id"] for b in self.boxes}
        res = []
        for m in la["mailboxes"]:
            for s in m["sends"]:
                self.pool[m["id"]].append((by_addr[s["to"]], s["message_id"]))
                res.append({"send_id": s["id"], "status": "sent"})
        if res:
            expect(call("POST", "/api/agent/report", {"lease_id": la["lease_id"],
                                                      "results": res}, token=self.agent),
                   200, "report sends")
        return la

    def find(self, sender, inbox=0, junk=0, other=0,
             auth="mx.test; spf=pass smtp.mailfrom=x; dkim=pass; dmarc=pass"):
        """Reports found events for the sender's oldest unfound sends: inbox in INBOX,
        then junk in Junk, then other in a user folder; auth is the
        Authentication-Results header the recipient's provider wrote on each."""
        want = inbox + junk + other
        check(len(self.pool[sender]) >= want,
              "sender %d has %d unfound sends, %d wanted" % (sender, len(self.pool[sender]), want))
        take, self.pool[sender] = self.pool[sender][:want], self.pool[sender][want:]
        evs = []
        for k, (rc, mid) in enumerate(take):
            UID[0] += 1
            folder, role = (("INBOX", "inbox") if k < inbox else
                            ("Junk", "junk") if k < inbox + junk else ("Receipts", "other"))
            evs.append({"type": "found", "mailbox_id": rc, "message_id": mid, "folder": folder,
                        "role": role, "uidvalidity": 7, "uid": UID[0], "flags": [],
                        "authentication_results": auth})
        if not evs:
            return
        r = expect(call("POST", "/api/agent/report", {"lease_id": self.inbox_lease,
                                                      "inbox_events": evs}, token=self.agent),
                   200, "found events")["inbox_events"]
        if r["applied"] == 0 and r["ignored"] == len(evs):
            # The test clock jumped past the inbox lease's TTL and the stats thread ended
            # it (events for inboxes no lease holds are ignored, by design): as an agent
            # would, take the inboxes again and report once more.
            self.inbox_lease = None
            self.lease()
            check(self.inbox_lease is not None, "a new inbox lease after the old one expired")
            r = expect(call("POST", "/api/agent/report", {"lease_id": self.inbox_lease,
                                                          "inbox_events": evs}, token=self.agent),
                       200, "found events again")["inbox_events"]
        check(r["applied"] == len(evs), "every find applied: %r" % r)

    def health(self, i, **kw):
        return expect(call("GET", "/api/mailboxes/%d/health" % self.boxes[i]["id"],
                           token=self.tokens[i]), 200, "health")

    def judged(self, i, pred, what):
        """Waits for the judge (the stats refresher, every KILN_STATS_INTERVAL_S)."""
        return wait_for(lambda: (lambda h: h if pred(h) else None)(self.health(i)), what,
                        timeout=20)

    def today(self, i):
        return expect(call("GET", "/api/warmup/mailbox?id=%d" % self.boxes[i]["id"],
                           token=self.tokens[i]), 200, "warmup mailbox")


def expect_text(r):
    check(r.status == 200, "GET /metrics: %r" % r)
    return r.raw.decode() if isinstance(r.raw, bytes) else r.raw


def window(h, days):
    return [w for w in h["placement"] if w["days"] == days][0]


def part_score():
    w = World(4)
    w.lease()
    s0 = w.boxes[0]["id"]
    check(len(w.pool[s0]) >= 3, "sender 0 has sends: %r" % w.pool[s0])
    h = w.health(0)
    check(h["band"] == "new" and h["score"] is None, "nothing judged yet: %r" % h)
    w.find(s0, inbox=3)
    h = w.judged(0, lambda h: h["band"] != "new", "the first judgement")
    check(h["score"] == 44 and h["band"] == "good",
          "3 of 3 in the inbox scores 44 (Wilson's lower bound), not 100: %r" % h)
    seven = window(h, 7)
    check(seven["inbox"] == 3 and seven["junk"] == 0 and seven["inbox_rate"] == 1.0,
          "7-day counts: %r" % seven)
    check(window(h, 1)["inbox"] == 3 and window(h, 30)["inbox"] == 3, "1 and 30 days: %r" % h)
    check(sum(p["inbox"] for p in seven["by_provider"].values()) == 3 and
          set(seven["by_provider"]) == {"gmail", "outlook", "yahoo", "other"},
          "by provider: %r" % seven["by_provider"])
    ok("test_three_of_three_in_the_inbox_scores_44_not_100")

    # The next day: one more in the inbox and one in junk. The 1-day window holds only
    # today's, the 7-day one all five.
    w.at("2026-03-03T20:00:00Z")
    w.find(s0, inbox=1, junk=1)
    h = w.judged(0, lambda h: window(h, 7)["junk"] == 1 and h["judged_at"] and
                 h["judged_at"].startswith("2026-03-03"), "the second judgement")
    check(window(h, 1)["inbox"] == 1 and window(h, 1)["junk"] == 1 and
          window(h, 7)["inbox"] == 4, "windows over two days: %r" % h["placement"])
    check(h["score"] < 44, "a junk placement lowers the score: %r" % h)
    page = expect(call("GET", "/api/mailboxes/%d/placement?limit=2" % s0, token=w.tokens[0]),
                  200, "placement page")
    check(len(page["items"]) == 2 and page["next_cursor"] is not None, "paged: %r" % page)
    rest = expect(call("GET", "/api/mailboxes/%d/placement?limit=500&cursor=%s" %
                       (s0, page["next_cursor"]), token=w.tokens[0]), 200, "page 2")
    items = page["items"] + rest["items"]
    check(len(items) == 5 and rest["next_cursor"] is None, "all five: %r" % items)
    ids = [x["send_id"] for x in items]
    check(ids == sorted(ids, reverse=True), "newest first: %r" % ids)
    it = items[0]
    check(set(it) == {"send_id", "provider", "placement", "folder", "found_at", "decided_at",
                      "spf", "dkim", "dmarc"} and it["spf"] == "pass" and it["dmarc"] == "pass"
          and it["decided_at"].startswith("2026-03-03"), "a placement: %r" % it)
    check(sorted(x["placement"] for x in items) == ["inbox"] * 4 + ["junk"], "placements")
    legacy = w.today(0)
    check(legacy["health"]["score"] == h["score"] and window(legacy["health"], 7)["junk"] == 1,
          "the legacy answer carries health and placement: %r" % legacy.get("health"))
    ok("test_placement_and_health_from_recorded_events_over_days")
    reset_clock()


def band_of(w, i, band, what):
    return w.judged(0 if i is None else i, lambda h: h["band"] == band, what)


def part_bands():
    rcv = Receiver()
    try:
        w = World(6)
        s0 = w.boxes[0]["id"]
        wh = expect(call("POST", "/api/webhooks", {"url": rcv.url("/ok/h"),
                                                   "events": ["mailbox.health_changed",
                                                              "mailbox.paused"]},
                         token=w.tokens[0]), 201, "webhook")
        rcv.secrets["/ok/h"] = wh["secret"]
        # Four days of sends, found on the fourth: 20 placements, 3 in junk (15 %).
        for d in range(2, 6):
            w.at("2026-03-0%dT20:00:00Z" % d)
            w.lease()
        w.find(s0, inbox=17, junk=3)
        h = band_of(w, 0, "watch", "watch at >= 10 % junk over >= 20 placements")
        check(h["reason"] == "junk share at the watch threshold", "reason: %r" % h)
        before = w.today(0)["today"]["target"]
        check(before > 2, "the ramp is above its floor before the quarantine: %r" % before)
        # Day 6: 5 more in junk: 8 of 25 (32 %): quarantine.
        w.at("2026-03-06T20:00:00Z")
        w.lease()
        w.find(s0, junk=5)
        h = band_of(w, 0, "quarantine", "quarantine at >= 20 % junk")
        check(h["quarantine_until"] and h["quarantine_until"].startswith("2026-03-09"),
              "quarantined for 3 days: %r" % h)
        t = w.today(0)["today"]
        check(t["target"] == 2, "quarantine holds today's target at the floor: %r" % t)
        # Day 7: every unfound send in junk: well over 40 %: pause.
        w.at("2026-03-07T20:00:00Z")
        w.lease()
        n = len(w.pool[s0])
        check(n >= 10, "enough unfound sends to pass 40 %%: %d" % n)
        w.find(s0, junk=n)
        h = band_of(w, 0, "pause", "pause at >= 40 % junk")
        mb = expect(call("GET", "/api/mailboxes/%d" % s0, token=w.tokens[0]), 200, "mailbox")
        check(mb["state"] == "paused" and mb["last_error"] == "health: " + h["reason"],
              "paused with the reason: %r" % mb)
        la = w.lease()
        check(all(m["id"] != s0 for m in la["mailboxes"]), "a paused mailbox is not leased")
        got = wait_for(lambda: (lambda g: g if len(g) >= 4 else None)(rcv.received("/ok/h")),
                       "three health_changed and a paused", timeout=20)
        check(all(d["problem"] is None for d in got), "signed: %r" % [d["problem"] for d in got])
        moves = [(d["json"]["data"]["old_band"], d["json"]["data"]["new_band"]) for d in got
                 if d["json"]["type"] == "mailbox.health_changed"]
        check(moves == [("new", "watch"), ("watch", "quarantine"), ("quarantine", "pause")],
              "band moves delivered in order: %r" % moves)
        paused = [d for d in got if d["json"]["type"] == "mailbox.paused"]
        check(len(paused) == 1 and paused[0]["json"]["data"]["mailbox_id"] == s0,
              "mailbox.paused delivered: %r" % paused)
        hc = [d["json"]["data"] for d in got if d["json"]["type"] == "mailbox.health_changed"]
        check(all(x["mailbox_id"] == s0 and isinstance(x["score"], int) and x["reason"]
                  for x in hc), "payloads: %r" % hc)
        metrics = expect_text(admin("GET", "/metrics"))
        check('kiln_mailboxes_by_health{band="pause"} 1' in metrics and
              'kiln_inbox_rate{provider="' in metrics, "metrics: health bands and inbox rate")
        ok("test_bands_move_watch_quarantine_pause_with_webhooks_and_pause_stops_leasing")
        # The customer resumes it: judged afresh from the resume (nothing since), leased.
        expect(call("POST", "/api/mailboxes/%d/resume" % s0, token=w.tokens[0]), 200, "resume")
        h = w.judged(0, lambda h: h["band"] != "pause", "judged afresh after the resume")
        check(h["band"] == "new", "a resumed mailbox starts a new window: %r" % h)
        w.at("2026-03-08T20:00:00Z")
        la = w.lease()
        check(any(m["id"] == s0 for m in la["mailboxes"]), "the resumed mailbox is leased again")
        ok("test_a_resumed_mailbox_is_judged_from_its_resume")
    finally:
        rcv.stop()
        reset_clock()


def part_quarantine():
    w = World(6)
    s0 = w.boxes[0]["id"]
    for d in range(2, 6):
        w.at("2026-03-0%dT20:00:00Z" % d)
        w.lease()
    w.find(s0, inbox=15, junk=6)  # 29 %
    h = band_of(w, 0, "quarantine", "quarantine")
    check(w.today(0)["today"]["target"] == 2, "held at the floor on day 1")
    w.at("2026-03-06T20:00:00Z")
    t = w.today(0)["today"]
    check(t["target"] == 2, "held at the floor on day 2: %r" % t)
    la = w.lease()
    mine = [m for m in la["mailboxes"] if m["id"] == s0]
    check(sum(len(m["sends"]) for m in mine) <= 2, "leasing honours the floor: %r" % mine)
    # Good mail meanwhile: 6 of 60 in junk (10 %), still over watch, under quarantine.
    w.at("2026-03-07T20:00:00Z")
    w.lease()
    w.find(s0, inbox=min(39, len(w.pool[s0])))
    h = w.judged(0, lambda h: h["judged_at"].startswith("2026-03-07"), "judged on day 3")
    check(h["band"] == "quarantine", "a quarantine lasts its days: %r" % h)
    w.at("2026-03-08T20:00:00Z")
    t = w.today(0)["today"]
    check(t["target"] == 30, "lifted after 3 days: back on the ramp: %r" % t)
    h = w.judged(0, lambda h: h["band"] != "quarantine", "the band after the quarantine")
    check(h["band"] in ("watch", "good") and h["quarantine_until"] is None,
          "after the quarantine: %r" % h)
    ok("test_quarantine_holds_the_target_at_the_floor_and_lifts_after_its_days")
    reset_clock()


def part_bad_input():
    w = World(2)
    i = w.boxes[0]["id"]
    tok = w.tokens[0]
    for q, field in [("limit=0", "limit"), ("limit=501", "limit"), ("limit=x", "limit"),
                     ("limit=-1", "limit"), ("cursor=x", "cursor"), ("cursor=-5", "cursor"),
                     ("cursor=1e3", "cursor"), ("limit=", "limit")]:
        expect_error(call("GET", "/api/mailboxes/%d/placement?%s" % (i, q), token=tok), 400,
                     "invalid_query", field, q)
    for p in ("x", "0", "-1", "99999999999999999999", "1.5"):
        for what in ("health", "placement"):
            expect_error(call("GET", "/api/mailboxes/%s/%s" % (p, what), token=tok), 404,
                         "not_found", None, "id %s" % p)
    for q in ("id=x", "id=0", "id=-3"):
        expect_error(call("GET", "/api/warmup/mailbox?" + q, token=tok), 400, "invalid_query",
                     "id", q)
    r = expect(call("GET", "/api/mailboxes/%d/placement?limit=500" % i, token=tok), 200, "ok")
    check(r == {"items": [], "next_cursor": None}, "empty page: %r" % r)
    ok("test_bad_input_on_health_and_placement_is_a_400_naming_the_field")
    reset_clock()


def part_tenant():
    w = World(3)
    w.lease()
    s0, s1 = w.boxes[0]["id"], w.boxes[1]["id"]
    w.find(s0, inbox=2)
    w.judged(0, lambda h: h["band"] != "new", "judged")
    for what in ("health", "placement"):
        expect_error(call("GET", "/api/mailboxes/%d/%s" % (s0, what), token=w.tokens[1]), 404,
                     "not_found", None, "another tenant's %s" % what)
        expect(call("GET", "/api/mailboxes/%d/%s" % (s0, what), token=w.tokens[0]), 200, what)
        expect(admin("GET", "/api/mailboxes/%d/%s" % (s1, what)), 200, "admin " + what)
    expect_error(call("GET", "/api/warmup/mailbox?id=%d" % s0, token=w.tokens[1]), 404,
                 "not_found", "id", "another tenant's legacy answer")
    ok("test_health_and_placement_are_tenant_scoped")
    reset_clock()


def part_auth():
    """Authentication failures the recipients' providers saw lower the score (016): at
    the Wilson lower bound of their share, up to 40 points; a header with no verdict
    takes nothing."""
    w = World(4)
    w.lease()
    s0, s1, s2 = (w.boxes[i]["id"] for i in range(3))
    w.find(s0, inbox=6)
    w.find(s1, inbox=6, auth="mx.test; spf=pass smtp.mailfrom=x; dkim=fail; dmarc=fail")
    w.find(s2, inbox=6, auth="mx.test; none")
    hs = [w.judged(i, lambda h: h["band"] != "new", "judged %d" % i) for i in range(3)]
    check(hs[0]["score"] == 61 and hs[2]["score"] == 61,
          "6 of 6 in the inbox with authentication passing (or not reported) scores 61: %r"
          % [h["score"] for h in hs])
    check(hs[1]["score"] == 37,
          "6 of 6 in the inbox failing dkim/dmarc loses 40 x the lower bound (24): %r" % hs[1])
    a0, a1, a2 = (window(h, 7)["authentication"] for h in hs)
    check(a0 == {"seen": 6, "failed": 0, "spf_fail": 0, "dkim_fail": 0, "dmarc_fail": 0,
                 "fail_share": 0.0}, "passing: %r" % a0)
    check(a1 == {"seen": 6, "failed": 6, "spf_fail": 0, "dkim_fail": 6, "dmarc_fail": 6,
                 "fail_share": 1.0}, "failing: %r" % a1)
    check(a2["seen"] == 0 and a2["fail_share"] is None, "no verdict: %r" % a2)
    page = expect(call("GET", "/api/mailboxes/%d/placement?limit=1" % s1, token=w.tokens[1]),
                  200, "placement")
    check(page["items"][0]["dkim"] == "fail" and page["items"][0]["spf"] == "pass",
          "the placement keeps the verdicts: %r" % page["items"][0])
    ok("test_authentication_failures_lower_the_score")
    reset_clock()


PARTS = {"score": part_score, "bands": part_bands, "quarantine": part_quarantine,
         "bad_input": part_bad_input, "tenant": part_tenant, "auth": part_auth}
if len(sys.argv) > 1:
    PARTS[sys.argv[1]]()
else:
    for f in PARTS.values():
        f()
