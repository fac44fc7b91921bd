"""A simulated day: 1,000 mailboxes over 5 time zones, ramp and weekday plans, one
agent that sends every slot at its time. The test clock moves in lease-ttl steps from
before the first window opens (Tokyo) to after the last closes (Los Angeles)."""
import datetime
from leaselib import make_agent, set_clock, lease, report, sent, all_sends, utc, invariants
from kiln_test import admin, check, expect, make_plan, make_user, make_mailbox, psql, ok

DAY = "2026-03-06"  # a Friday; Tokyo's next day (Saturday) begins inside the run
ZONES = ["Asia/Tokyo", "Europe/Berlin", "UTC", "America/New_York", "America/Los_Angeles"]
ramp = make_plan("ramp", ramp_start=5, ramp_step=2, daily_max=30)
weekday = make_plan("weekday", ramp_start=8, ramp_step=1, daily_max=20, weekdays_only=True,
                    cooldown_min_s=180, cooldown_max_s=240)
users = [make_user("user%02d" % i, (ramp if i % 3 else weekday)["id"]) for i in range(20)]
start = datetime.date(2026, 3, 6)
n = 0
for i, u in enumerate(users):
    for j in range(50):
        tz = ZONES[(i + j) % 5]
        win = {"start_hour": 6, "end_hour": 22} if j % 4 else {"start_hour": 8, "end_hour": 18}
        ws = (start - datetime.timedelta(days=(i * 50 + j) % 14)).isoformat()
        make_mailbox(u["id"], "box%d@dom%d.test" % (j, (i * 50 + j) % 37), timezone=tz,
                     window=win, warmup_start=ws)
        n += 1
tok = make_agent("sim")

t = utc(2026, 3, 5, 20, 0, 0)   # Tokyo's 06:00 of DAY is 21:00 UTC the day before
end = utc(2026, 3, 7, 7, 0, 0)  # Los Angeles's 22:00 of DAY is 06:00 UTC the day after
step = datetime.timedelta(seconds=600)
pending = []
leases = 0
while t <= end:
    set_clock(t)
    for lease_id, ids in pending:  # everything leased last step went out on time
        report(tok, lease_id, [sent(i) for i in ids])
    pending = []
    a = lease(tok, max_mailboxes=1000, max_sends=10000)
    if a["lease_id"]:
        leases += 1
        pending.append((a["lease_id"], [s["id"] for s in all_sends(a)]))
    t += step
set_clock(t)
for lease_id, ids in pending:
    report(tok, lease_id, [sent(i) for i in ids])
invariants()

short = psql("""
    SELECT m.id, m.timezone, kiln_target(p.ramp_start, p.ramp_step, p.daily_max, p.weekdays_only,
           m.daily_target, m.warmup_start, '%s') AS target, coalesce(d.sent, 0)
    FROM mailboxes m JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id
    LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = '%s'
    WHERE coalesce(d.sent, 0) <> kiln_target(p.ramp_start, p.ramp_step, p.daily_max,
          p.weekdays_only, m.daily_target, m.warmup_start, '%s')""" % (DAY, DAY, DAY))
check(not short, "%d mailboxes did not send exactly their target on %s: %r"
      % (len(short), DAY, short[:5]))
total = int(psql("SELECT count(*) FROM sends WHERE day = '%s' AND status = 'sent'" % DAY)[0])
ok("%d mailboxes each sent exactly their target on %s (%d sends, %d leases)"
   % (n, DAY, total, leases))

outside = psql("""SELECT s.id FROM sends s JOIN mailboxes m ON m.id = s.mailbox_id
    WHERE s.status = 'sent' AND (extract(hour FROM s.scheduled_at AT TIME ZONE m.timezone)
      < m.window_start_hour OR extract(hour FROM s.scheduled_at AT TIME ZONE m.timezone)
      >= m.window_end_hour OR (s.scheduled_at AT TIME ZONE m.timezone)::date <> s.day)""")
check(not outside, "sends outside their window: %r" % outside[:5])
close = psql("""SELECT mailbox_id, gap FROM (SELECT s.mailbox_id, p.cooldown_min_s,
      extract(epoch FROM s.scheduled_at - lag(s.scheduled_at) OVER (PARTITION BY s.mailbox_id
      ORDER BY s.scheduled_at)) AS gap FROM sends s JOIN mailboxes m ON m.id = s.mailbox_id
      JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id WHERE s.status = 'sent') x
    WHERE gap < cooldown_min_s""")
check(not close, "sends closer than the cooldown: %r" % close[:5])
ok("every send inside its window and spaced by at least the cooldown")

caps = psql("""SELECT
  (SELECT coalesce(max(n), 0) FROM (SELECT date_trunc('minute', scheduled_at), count(*) n
     FROM sends WHERE status = 'sent' GROUP BY 1) a),
  (SELECT coalesce(max(n), 0) FROM (SELECT date_trunc('hour', scheduled_at), count(*) n
     FROM sends WHERE status = 'sent' GROUP BY 1) b),
  (SELECT coalesce(max(n), 0) FROM (SELECT m.user_id, date_trunc('minute', scheduled_at), count(*) n
     FROM sends s JOIN mailboxes m ON m.id = s.mailbox_id WHERE status = 'sent' GROUP BY 1, 2) c),
  (SELECT coalesce(max(n), 0) FROM (SELECT m.user_id, date_trunc('hour', scheduled_at), count(*) n
     FROM sends s JOIN mailboxes m ON m.id = s.mailbox_id WHERE status = 'sent' GROUP BY 1, 2) d),
  (SELECT coalesce(max(n), 0) FROM (SELECT recipient_id, (scheduled_at AT TIME ZONE m.timezone)::date,
     count(*) n FROM sends s JOIN mailboxes m ON m.id = s.recipient_id GROUP BY 1, 2) e),
  (SELECT count(*) FROM (SELECT mailbox_id, recipient_id FROM sends GROUP BY 1, 2
     HAVING count(*) > 1) f),
  (SELECT count(*) FROM sends s JOIN mailboxes a ON a.id = s.mailbox_id
     JOIN mailboxes b ON b.id = s.recipient_id WHERE a.user_id = b.user_id)""")[0].split("|")
gm, gh, um, uh, inbound, pairs, own = map(int, caps)
check(gm <= 200 and gh <= 10000, "global caps: %d/min %d/h" % (gm, gh))
check(um <= 20 and uh <= 500, "user caps: %d/min %d/h" % (um, uh))
check(inbound <= 50, "recipient inbound cap: %d" % inbound)
check(pairs == 0, "%d sender/recipient pairs repeated within the pair gap" % pairs)
check(own == 0, "%d sends to the sender's own user" % own)
ok("caps held (peak %d/min, %d/h global; %d/min, %d/h per user; inbound %d/day)"
   % (gm, gh, um, uh, inbound))

# The quota and metrics endpoints agree with the sends table.
quota = {}
cursor = None
for _ in range(20):
    r = expect(admin("GET", "/api/warmup/quota?status=all&limit=1000" +
                     ("&cursor=" + cursor if cursor else "")), 200, "quota")
    for item in r["page"]["items"]:
        quota[item["mailbox_id"]] = item["sent"]
    cursor = r["page"]["next_cursor"]
    if not cursor:
        break
check(len(quota) == n, "quota lists every mailbox: %d" % len(quota))
truth = dict((int(a), int(b)) for a, b in (row.split("|") for row in psql("""
    SELECT m.id, count(s.id) FILTER (WHERE s.status IN ('sent', 'unknown')) FROM mailboxes m
    LEFT JOIN sends s ON s.mailbox_id = m.id AND s.day = (kiln_now() AT TIME ZONE m.timezone)::date
    GROUP BY 1""")))
diff = [k for k in truth if truth[k] != quota.get(k)]
check(not diff, "quota disagrees with sends for %d mailboxes, e.g. %r" % (len(diff), diff[:3]))
m = expect(admin("GET", "/api/warmup/metrics"), 200, "metrics")
all_sent = int(psql("SELECT count(*) FROM sends WHERE status = 'sent'")[0])
check(m["sends_total"]["sent"] == all_sent, "metrics sends_total.sent %r vs %d"
      % (m["sends_total"], all_sent))
prom = admin("GET", "/metrics").raw
check('kiln_sends_total{status="sent"} %d' % all_sent in prom, "prometheus sends_total")
check('kiln_send_latency_seconds_count %d' % all_sent in prom, "latency histogram count")
ok("quota and metrics endpoints agree with the sends table")
