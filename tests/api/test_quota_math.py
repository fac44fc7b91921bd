"""Today's target per mailbox from its plan's ramp, in the mailbox's own time zone, with
weekday-only plans and overrides; due-by-now spread over the send window; behind/met."""
from kiln_test import *

ramp = make_plan("ramp", ramp_start=5, ramp_step=2, daily_max=30)
weekdays = make_plan("weekdays", ramp_start=10, ramp_step=0, daily_max=10, weekdays_only=True)
u = make_user("u", ramp["id"])
w = make_user("w", weekdays["id"])

# Wednesday 2026-12-02 10:30 UTC. Kiritimati is UTC+14 (already Thursday 00:30),
# Pago Pago UTC-11 (still Tuesday 23:30).
set_clock("2026-12-01T09:00:00Z")  # registered the day before: judged over the whole window
full = {"start_hour": 0, "end_hour": 24}
m_utc = make_mailbox(u["id"], "utc@x.test", timezone="UTC", warmup_start="2026-11-25", window=full)
m_kir = make_mailbox(u["id"], "kir@x.test", timezone="Pacific/Kiritimati", warmup_start="2026-11-25", window=full)
m_pago = make_mailbox(u["id"], "pago@x.test", timezone="Pacific/Pago_Pago", warmup_start="2026-11-25", window=full)
m_cap = make_mailbox(u["id"], "cap@x.test", timezone="UTC", warmup_start="2026-01-01")
m_over = make_mailbox(u["id"], "over@x.test", timezone="UTC", warmup_start="2026-11-25", daily_target=99)
m_future = make_mailbox(u["id"], "future@x.test", timezone="UTC", warmup_start="2026-12-10")
set_clock("2026-12-02T10:30:00Z")


def today(mb):
    return expect(admin("GET", "/api/warmup/mailbox?id=%d" % mb["id"]), 200, "mailbox")["today"]


t = today(m_utc)
check(t["local_day"] == "2026-12-02" and t["target"] == 5 + 2 * 7, "UTC day 7 of ramp: %r" % t)
t = today(m_kir)
check(t["local_day"] == "2026-12-03" and t["target"] == 5 + 2 * 8, "Kiritimati is a day ahead: %r" % t)
t = today(m_pago)
check(t["local_day"] == "2026-12-01" and t["target"] == 5 + 2 * 6, "Pago Pago a day behind: %r" % t)
check(today(m_cap)["target"] == 30, "ramp is capped at daily_max")
check(today(m_over)["target"] == 30, "an override is still capped by the plan's daily_max")
check(today(m_future)["target"] == 0, "no target before the warmup starts")
ok("test_ramp_target_in_each_mailboxs_own_timezone")

# due by now: 10:30 in a 0-24 window is 10.5/24 of the day.
t = today(m_utc)
check(t["due_now"] == int(19 * 10.5 / 24), "due_now spread over the window: %r" % t)
m_win = make_mailbox(u["id"], "win@x.test", timezone="UTC", warmup_start="2026-11-25",
                     window={"start_hour": 12, "end_hour": 20})
check(today(m_win)["due_now"] == 0, "nothing due before the window opens")
set_clock("2026-12-02T16:00:00Z")
t = today(m_win)
check(t["due_now"] == 19 // 2, "half the window elapsed, half the target due: %r" % t)
ok("test_due_by_now_follows_the_window")

# Registered this afternoon: judged from then, not from the window's opening.
set_clock("2026-12-02T16:00:00Z")
m_new = make_mailbox(u["id"], "new@x.test", timezone="UTC", warmup_start="2026-11-25",
                     window={"start_hour": 12, "end_hour": 20})
t = today(m_new)
check(t["due_now"] == 0 and not t["behind_schedule"], "nothing due the moment it appears: %r" % t)
set_clock("2026-12-02T18:00:00Z")  # half of 16:00-20:00
t = today(m_new)
check(t["due_now"] == 19 // 2 and t["behind_schedule"], "due from its activation: %r" % t)
check(today(m_win)["due_now"] == int(19 * 6 / 8), "older mailboxes still from the window's start")
set_clock("2026-12-02T21:00:00Z")
m_late = make_mailbox(u["id"], "late@x.test", timezone="UTC", warmup_start="2026-11-25",
                      window={"start_hour": 12, "end_hour": 20})
check(today(m_late)["due_now"] == 0, "registered after the window closed: nothing due today")
# Paused and resumed at 18:00 the next day: judged from the resume.
set_clock("2026-12-03T14:00:00Z")
expect(admin("POST", "/api/mailboxes/%d/pause" % m_win["id"]), 200, "pause")
set_clock("2026-12-03T18:00:00Z")
expect(admin("POST", "/api/mailboxes/%d/resume" % m_win["id"]), 200, "resume")
set_clock("2026-12-03T19:00:00Z")
t = today(m_win)
check(t["due_now"] == int(t["target"] * 1 / 2), "resumed at 18:00, half of 18-20 due at 19: %r" % t)
ok("test_a_mailbox_is_judged_from_when_it_became_active")

# Weekday-only plan: Saturday 2026-12-05 in Berlin is 0, Friday is 10; Kiritimati's
# Saturday begins while UTC is still Friday.
set_clock("2026-12-04T11:00:00Z")  # Friday in UTC and Berlin, Saturday 01:00 in Kiritimati
wb = make_mailbox(w["id"], "berlin@w.test", timezone="Europe/Berlin", warmup_start="2026-11-30")
wk = make_mailbox(w["id"], "kiri@w.test", timezone="Pacific/Kiritimati", warmup_start="2026-11-30")
check(today(wb)["target"] == 10, "Friday in Berlin: full target")
t = today(wk)
check(t["local_day"] == "2026-12-05" and t["target"] == 0, "Saturday in Kiritimati: 0: %r" % t)
set_clock("2026-12-05T12:00:00Z")
check(today(wb)["target"] == 0, "Saturday in Berlin: 0")
days = expect(admin("GET", "/api/warmup/mailbox?id=%d" % wb["id"]), 200, "days")["last_7_days"]
check([d["target"] for d in days[:3]] == [0, 10, 10], "last 7 days targets: %r" % days)
ok("test_weekday_only_plan_is_zero_on_local_weekends")

# behind / met from counters (as the report transaction writes them).
set_clock("2026-12-02T10:30:00Z")
psql("INSERT INTO mailbox_days (mailbox_id, day, sent) VALUES (%d, '2026-12-02', 19), "
     "(%d, '2026-12-02', 3)" % (m_utc["id"], m_cap["id"]))
behind = expect(admin("GET", "/api/warmup/quota?status=behind&limit=1000"), 200, "behind")
met = expect(admin("GET", "/api/warmup/quota?status=met&limit=1000"), 200, "met")
bid = {m["mailbox_id"] for m in behind["page"]["items"]}
mid = {m["mailbox_id"] for m in met["page"]["items"]}
check(m_utc["id"] in mid and m_utc["id"] not in bid, "19/19 is met")
check(m_cap["id"] in bid and m_future["id"] in mid, "3/30 behind; 0/0 met: %r %r" % (bid, mid))
c = [m for m in behind["page"]["items"] if m["mailbox_id"] == m_cap["id"]][0]
check(c["remaining"] == 27 and c["sent"] == 3, "remaining: %r" % c)
expect_error(admin("GET", "/api/warmup/quota?status=late"), 400, "invalid_query", "status", "bad status")
ok("test_quota_status_behind_and_met")
