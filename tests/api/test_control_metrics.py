"""Control (start/stop/trigger, admin only), Prometheus exposition validated with
promtool, the JSON metrics, health judged against what is due by now, /healthz."""
import os
import shutil
import subprocess
import time
from kiln_test import *

c = expect(admin("GET", "/api/warmup/control"), 200, "control get")
check(c["state"] == "running" and c["trigger_count"] == 0, "initial control: %r" % c)
s = expect(admin("POST", "/api/warmup/control", {"action": "stop"}), 200, "stop")
check(s["state"] == "stopped" and s["action"] == "stop", "stopped: %r" % s)
s2 = expect(admin("POST", "/api/warmup/control", {"action": "stop"}), 200, "stop again")
check(s2["since"] == s["since"], "stopping twice keeps 'since'")
t = expect(admin("POST", "/api/warmup/control", {"action": "trigger"}), 200, "trigger")
check(t["trigger_count"] == 1 and t["last_trigger_at"], "trigger recorded: %r" % t)
r = expect(admin("POST", "/api/warmup/control", {"action": "start"}), 200, "start")
check(r["state"] == "running", "running again: %r" % r)
expect_error(admin("POST", "/api/warmup/control", {"action": "restart"}), 400, "invalid_field", "action", "bad action")
ok("test_control_start_stop_trigger")

plan = make_plan("p", ramp_start=10, ramp_step=0, daily_max=10)
u = make_user("u", plan["id"])
set_clock("2026-12-01T12:00:00Z")  # registered the day before (judged from then on)
mbs = [make_mailbox(u["id"], "m%d@x.test" % i, timezone="UTC", warmup_start="2026-12-01",
                    window={"start_hour": 0, "end_hour": 24}) for i in range(4)]
set_clock("2026-12-02T12:00:00Z")  # Wednesday noon UTC: half of a 0-24 window elapsed
# Two mailboxes on schedule (5 of 10 due by noon), one far behind, one paused after it
# sent 5 this morning: its sends count in sent today, but not against what is due (the
# active three owe 15), or the pool would read 100 % instead of 67 %.
psql("INSERT INTO mailbox_days (mailbox_id, day, sent, failed) VALUES "
     "(%d,'2026-12-02',5,0),(%d,'2026-12-02',5,0),(%d,'2026-12-02',0,0),(%d,'2026-12-02',5,0)"
     % (mbs[0]["id"], mbs[1]["id"], mbs[2]["id"], mbs[3]["id"]))
expect(admin("POST", "/api/mailboxes/%d/pause" % mbs[3]["id"]), 200, "pause")
psql("INSERT INTO counters (name, label, shard, value) VALUES ('sends','sent',0,10),"
     "('sends','sent',3,2),('send_latency_bucket','0.1',0,12),('send_latency_sum_us','',0,600000)")


def metrics_text():
    r = admin("GET", "/metrics")
    expect(r, 200, "/metrics")
    return r.raw


def sample(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


text = wait_for(lambda: (lambda t: t if sample(t, "kiln_quota_target_today") == 30 else None)(metrics_text()),
                "snapshot with 3 active mailboxes")
check(sample(text, 'kiln_mailboxes{state="active"}') == 3, "active mailboxes")
check(sample(text, 'kiln_mailboxes{state="paused"}') == 1, "paused mailboxes")
check(sample(text, "kiln_quota_sent_today") == 15, "sent today, the paused mailbox's too")
check(sample(text, "kiln_quota_sent_today_active") == 10, "sent today by the active mailboxes")
check(abs(sample(text, "kiln_quota_completion_ratio") - 10 / 30) < 1e-5,
      "completion: the active mailboxes' sent / target")
check(sample(text, "kiln_quota_due_now") == 15, "due now = 3 x 5")
check(sample(text, "kiln_mailboxes_behind") == 3, "behind")
check(sample(text, "kiln_queue_depth") == 20, "queue depth = 30 - 10")
check(sample(text, 'kiln_sends_total{status="sent"}') == 12, "counter shards are summed")
check(sample(text, 'kiln_send_latency_seconds_bucket{le="+Inf"}') == 12, "histogram count")
check(sample(text, "kiln_send_latency_seconds_sum") == 0.6, "histogram sum")
# completion 10/15 = 67 % of what is due: degraded; no agent while sends are owed.
check(sample(text, "kiln_health_status") == 1, "degraded health")
ok("test_metrics_reflect_counters_and_quota")

# Operators learn the metrics from docs/operations.md's table and API clients from
# openapi.yaml's /metrics description: every family /metrics exposes is in both.
families = sorted(set(l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")))
src = os.environ["KILN_SOURCE_DIR"]
ops = open(os.path.join(src, "docs", "operations.md")).read()
spec = open(os.path.join(src, "api", "openapi.yaml")).read()
check(len(families) >= 25, "the exposition's families: %r" % families)
check(not [f for f in families if "| `%s`" % f not in ops and ", `%s`" % f not in ops],
      "families missing from docs/operations.md's metrics table: %r"
      % [f for f in families if "| `%s`" % f not in ops and ", `%s`" % f not in ops])
check(not [f for f in families if "`%s" % f not in spec],
      "families missing from openapi.yaml's /metrics: %r"
      % [f for f in families if "`%s" % f not in spec])
ok("test_every_metrics_family_is_documented")

promtool = shutil.which("promtool")
if promtool:
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    check(p.returncode == 0, "promtool check metrics: %s %s" % (p.stdout, p.stderr))
    ok("test_promtool_accepts_the_exposition")
else:
    print("skip - promtool not installed")
r = admin("GET", "/api/warmup/metrics?format=prometheus")
check(r.status == 200 and "kiln_queue_depth 20" in r.raw, "legacy prometheus path: %r" % r)
check(r.headers.get("Content-Type", "").startswith("text/plain"), "prometheus content type")
j = expect(admin("GET", "/api/warmup/metrics"), 200, "json metrics")
check(j["quota"]["queue_depth"] == 20 and j["sends_total"]["sent"] == 12 and j["health"] == "degraded",
      "json metrics: %r" % j)
ok("test_json_and_legacy_metrics_paths")

h = expect(admin("GET", "/api/warmup/health"), 200, "health")
check(h["status"] == "degraded" and any("80%" in x for x in h["reasons"])
      and h["sent_today"] == 15 and h["sent_today_active"] == 10, "health: %r" % h)
psql("UPDATE mailbox_days SET sent = 0 WHERE day = '2026-12-02'")
h = wait_for(lambda: (lambda x: x if x["status"] == "critical" else None)(
    expect(admin("GET", "/api/warmup/health"), 200, "health")), "critical health")
check(any("50%" in x for x in h["reasons"]), "critical reason: %r" % h)
psql("UPDATE mailbox_days SET sent = 5, failed = 1 WHERE day = '2026-12-02'")
h = wait_for(lambda: (lambda x: x if x["completion_vs_due"] == 1.0 else None)(
    expect(admin("GET", "/api/warmup/health"), 200, "health")), "recovered completion")
check(h["status"] == "critical" and any("failure rate" in x for x in h["reasons"]),
      "4 failed of 24 attempts is > 10%%: %r" % h)
ok("test_health_uses_legacy_thresholds_against_due_by_now")

z = call("GET", "/healthz")
check(z.status == 200 and z.json == {"status": "ok", "database": "ok"}, "healthz: %r" % z)
ok("test_healthz_needs_no_token")
