#!/usr/bin/env bash
# test_prometheus_config_rules_and_dashboard: the scrape config passes `promtool check
# config`, the rules `promtool check rules` and their unit tests (`promtool test
# rules`: every alert fires at its legacy threshold and stays quiet below it); the
# Grafana dashboard is valid JSON with the panels operators need, every query parses as
# PromQL and uses only metrics kiln-api exports or the rules record.
. "$(dirname "$0")/lib.sh"
need promtool /usr/bin/python3
deploy_tmpdir
cp "$DEPLOY"/prometheus/* "$T/"
# check config wants the token and file_sd paths to exist: move them into $T.
echo "metrics-token" >"$T/kiln-metrics.token"
sed -i -e "s#/etc/prometheus/kiln-metrics.token#$T/kiln-metrics.token#" \
    -e "s#/etc/prometheus/kiln-agents/#$T/agents/#" "$T/prometheus.yml"
(cd "$T" && promtool check config prometheus.yml) >"$T/out" 2>&1 || { cat "$T/out" >&2; fail "promtool check config"; }
ok "promtool check config deploy/prometheus/prometheus.yml"
(cd "$T" && promtool check rules kiln-rules.yml) >"$T/out" 2>&1 || { cat "$T/out" >&2; fail "promtool check rules"; }
ok "promtool check rules deploy/prometheus/kiln-rules.yml"
(cd "$T" && promtool test rules kiln-rules.test.yml) >"$T/out" 2>&1 || { cat "$T/out" >&2; fail "promtool test rules: an alert does not fire (or fires) where expected"; }
ok "promtool test rules: thresholds, aggregation across instances, quiet cases"

# Every alert in the rules has a section in docs/operations.md and a unit test.
/usr/bin/python3 - "$DEPLOY/prometheus/kiln-rules.yml" "$DEPLOY/prometheus/kiln-rules.test.yml" \
    "$KILN_SOURCE_DIR/docs/operations.md" <<'PY' || fail "alerts, their tests and docs/operations.md disagree"
import re, sys
rules, tests, doc = (open(p).read() for p in sys.argv[1:])
alerts = re.findall(r"^\s*- alert: (\w+)", rules, re.M)
assert len(alerts) >= 6, alerts
for a in alerts:
    assert f"alertname: {a}" in tests, f"{a} has no unit test in kiln-rules.test.yml"
    assert re.search(rf"^#+ .*{a}\b", doc, re.M), f"{a} has no heading in docs/operations.md"
    assert f"docs/operations.md#{a.lower()}" in rules, f"{a}'s description does not link its doc section"
PY
ok "each alert has a unit test and a section in docs/operations.md"

# Dashboard: structure, required panels, PromQL syntax (through promtool check rules).
/usr/bin/python3 - "$DEPLOY/grafana/kiln-dashboard.json" "$DEPLOY/prometheus/kiln-rules.yml" \
    "$T/dash-rules.yml" <<'PY' || fail "deploy/grafana/kiln-dashboard.json is not a usable dashboard"
import json, re, sys
d = json.load(open(sys.argv[1]))
rules = open(sys.argv[2]).read()
for k in ("title", "uid", "panels", "schemaVersion", "templating"):
    assert k in d, f"dashboard has no {k}"
titles = [p["title"] for p in d["panels"]]
need = ["Sends per minute by status", "Quota completion", "Queue depth", "Agents",
        "Send errors by class", "Lease request latency", "Agent report backlog",
        "Inbox rate by provider (7 days)", "Junk share by provider (7 days)",
        "Mailboxes by health band"]
for t in need:
    assert t in titles, f"panel '{t}' missing (have {titles})"
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "panel ids are not unique"
cells = set()
for p in d["panels"]:
    g = p["gridPos"]
    assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{p['title']} is outside the 24-column grid"
    for x in range(g["x"], g["x"] + g["w"]):
        for y in range(g["y"], g["y"] + g["h"]):
            assert (x, y) not in cells, f"{p['title']} overlaps another panel"
            cells.add((x, y))
    assert p["targets"], f"{p['title']} has no query"
exported = {"kiln_sends_total", "kiln_send_errors_total", "kiln_mailboxes", "kiln_quota_target_today",
            "kiln_quota_sent_today", "kiln_quota_due_now", "kiln_mailboxes_behind",
            "kiln_quota_completion_ratio", "kiln_queue_depth", "kiln_agents_active", "kiln_leases_active",
            "kiln_sends_in_flight", "kiln_service_running", "kiln_health_status",
            "kiln_send_latency_seconds_bucket", "kiln_lease_request_duration_seconds_bucket",
            "kiln_mailboxes_by_health", "kiln_inbox_rate", "kiln_junk_rate", "kiln_placements_7d",
            # kiln-agent's own (docs/agent-run.md#metrics)
            "kiln_agent_results_unreported", "kiln_agent_report_failures_total",
            "kiln_agent_sessions_active", "kiln_agent_slots_outstanding"}
recorded = set(re.findall(r"record: (\S+)", rules))
out = ["groups:", "  - name: dashboard-queries", "    rules:"]
n = 0
for p in d["panels"]:
    for t in p["targets"]:
        e = t["expr"]
        for m in re.findall(r"\bkiln[_:][a-z0-9_:]+", e):
            assert m in exported or m in recorded, f"{p['title']}: unknown metric {m}"
        n += 1
        out.append(f"      - record: dashboard:q{n}")
        out.append("        expr: " + json.dumps(e.replace("$__rate_interval", "5m")))
open(sys.argv[3], "w").write("\n".join(out) + "\n")
PY
promtool check rules "$T/dash-rules.yml" >"$T/out" 2>&1 || { cat "$T/out" >&2; fail "a dashboard query is not valid PromQL"; }
ok "dashboard: required panels, no overlap, every query valid PromQL over known metrics"
