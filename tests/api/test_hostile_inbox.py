"""The inbox side of kiln-api attacked as a hostile agent and a hostile tenant would,
through nginx. Each case asserts what a user would check:
a 4xx with kiln's JSON error naming the member, PostgreSQL unchanged (the inbox tables
dumped around each batch of attacks), kiln-api still serving (same pid, /healthz).
  test_hostile_inbox.py [part]   (parser, foreign, race, folders, paging,
                                  registration, webhooks; all when absent)
parser:   inbox_events bodies with \\u0000 and lone surrogates in every string and member
          name of every event type, raw bytes that are not UTF-8, duplicate members,
          nesting one past the limit inside an event, 100,000-element arrays, huge,
          negative and overflowing UIDs / UIDVALIDITYs / ids, wrong types.
foreign:  events for inboxes not leased to this agent, another agent's lease, outcomes
          of another inbox's action, replayed outcomes, inbox_events on a send lease and
          on a released lease: counted ignored or duplicate, nothing stored.
race:     one action outcome released from 8 clients together: applied once, the plan's
          next action issued once, no 5xx.
folders:  new folders of one inbox in one report and from 8 reports together: the
          16-folder bound holds.
paging:   placement's limit and cursor at and past their bounds; every row once.
registration: IMAP access with oversized and malformed members on PATCH and POST.
webhooks: URLs the documented rules refuse (docs/webhooks.md)."""
import os
import sys
import threading
from kiln_test import *

INBOX_TABLES = ["inbox_leasing", "inbox_folders", "inbox_messages", "inbox_sightings",
                "inbox_actions", "placements", "placement_days", "counters", "mailboxes",
                "leases", "webhook_endpoints"]
GUARD = StackGuard(INBOX_TABLES)
dump, check_unchanged, check_alive = GUARD.dump, GUARD.check_unchanged, GUARD.check_alive
CERTAIN = dict(untouched_rate=0, rescue_rate=1, open_rate=1, important_rate=0, reply_rate=0,
               dwell_median_min=1, dwell_max_min=1, ramp_start=6, ramp_step=0, daily_max=6,
               cooldown_min_s=60, cooldown_max_s=90)
HOSTS = ["imap.gmail.com", "outlook.office365.com", "imap.mail.yahoo.com", "mail.example.test"]
n_req = [0]


def refused(r, what, status=400, code=None, field=None):
    n_req[0] += 1
    ok_status = r.status == status if status else 400 <= r.status < 500
    if not ok_status or not r.json or not isinstance(r.json.get("error"), dict) or \
            set(r.json["error"]) != {"code", "message", "field"}:
        fail("%s: expected HTTP %s with a JSON error body, got %r" % (what, status, r))
    if code and r.json["error"]["code"] != code:
        fail("%s: expected error code %s, got %r" % (what, code, r))
    if field is not None and r.json["error"]["field"] != field:
        fail("%s: expected field %r, got %r" % (what, field, r))


def agent(name):
    return expect(admin("POST", "/api/agents", {"name": name}), 201, "agent " + name)["token"]


def lease(token, what="lease", **kw):
    body = {"max_mailboxes": 50, "max_sends": 200}
    body.update(kw)
    return expect(call("POST", "/api/agent/lease", body, token=token), 200, what)


def report(token, lease_id, events, what="report"):
    return expect(call("POST", "/api/agent/report", {"lease_id": lease_id,
                                                     "inbox_events": events}, token=token),
                  200, what)["inbox_events"]


def counts(a=0, d=0, i=0):
    return {"applied": a, "duplicates": d, "ignored": i}


def found(mb, mid, folder="INBOX", role="inbox", v=7, uid=1, flags=()):
    return {"type": "found", "mailbox_id": mb, "message_id": mid, "folder": folder,
            "role": role, "uidvalidity": v, "uid": uid, "flags": list(flags)}


def world(n=4):
    """n mailboxes with IMAP, each its own tenant and domain; agent A holds their inbox
    lease and a send lease reported sent. Returns (boxes, A, inbox lease id, sends as
    (send_id, sender, recipient, message_id), the send lease answer)."""
    set_clock("2026-03-04T10:00:00Z")  # a Wednesday
    plan = make_plan("hostile", **CERTAIN)
    boxes = []
    for i in range(n):
        u = make_user("h%d" % i, plan["id"])
        boxes.append(make_mailbox(u["id"], "box%d@h%d.test" % (i, i), timezone="UTC",
                                  window={"start_hour": 0, "end_hour": 24},
                                  warmup_start="2026-03-01",
                                  imap={"host": HOSTS[i % 4], "port": 993,
                                        "password": "imap-%d" % i}))
    a = agent("hostile-a")
    la = lease(a, "lease", max_inboxes=n)
    check(la.get("inbox_lease") and len(la["inboxes"]) == n, "A holds every inbox: %r" % la)
    by_addr = {b["address"]: b["id"] for b in boxes}
    sends = [(s["id"], m["id"], by_addr[s["to"]], s["message_id"])
             for m in la["mailboxes"] for s in m["sends"]]
    check(len(sends) >= n, "the lease has sends: %r" % la["mailboxes"])
    res = [{"send_id": s[0], "status": "sent"} for s in sends]
    expect(call("POST", "/api/agent/report", {"lease_id": la["lease_id"], "results": res},
                token=a), 200, "report sends")
    return boxes, a, la["inbox_lease"]["lease_id"], sends, la


def actions_of(token, mb):
    ans = lease(token, "lease for actions", max_inboxes=0, inboxes_held=10)
    for i in ans["inboxes"]:
        if i["mailbox_id"] == mb:
            return i.get("actions", [])
    return []


# ---- parser ---------------------------------------------------------------------------------

RAW = "\u2063RAW\u2063"


def encode(body, raw=b""):
    text = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    mark = RAW.encode()
    return text.replace(b'"' + mark + b'"', raw).replace(mark, raw)


def part_parser():
    boxes, a, lid, sends, _ = world()
    sid, sender, rc, mid = sends[0]
    report(a, lid, [found(rc, mid, "Junk", "junk", 3, 8)])  # an action to be outcome of
    act = actions_of(a, rc)
    check(len(act) == 1, "a rescue is due: %r" % act)
    good = {
        "found": dict(found(rc, mid, "Junk", "junk", 3, 9, ["\\Seen"]),
                      labels=["\\Inbox"], authentication_results="mx; spf=pass",
                      internal_date="2026-03-04T10:00:00Z"),
        "action": {"type": "action", "mailbox_id": rc, "action_id": act[0]["id"],
                   "status": "done", "folder": "INBOX", "uidvalidity": 7, "uid": 51,
                   "flags": ["\\Seen"], "detail": "ok"},
        "folder_state": {"type": "folder_state", "mailbox_id": rc, "folder": "INBOX",
                         "role": "inbox", "uidvalidity": 7, "last_uid": 3},
        "session": {"type": "session", "mailbox_id": rc, "status": "auth", "detail": "no"},
    }
    before = dump()
    escapes = [b"\\u0000", b"\\ud800", b"\\udc00", b"\\ud800x", b"\\udbff\\udbff",
               b"\\ude00\\ud83d"]
    raws = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]
    huge = [b"1e400", b"-1e400", b"9223372036854775808", b"-9223372036854775809",
            b"99999999999999999999", b"4294967296", b"-1", b"0", b"1.0", b"1e2", b"-0",
            b'"7"', b"true", b"null", b"[]", b"{}"]
    # two good events unlike any of the above, to stand before the attacked one
    lead = [{"type": "session", "mailbox_id": rc, "status": "ok"},
            {"type": "folder_state", "mailbox_id": rc, "folder": "Lead", "role": "other",
             "uidvalidity": 1, "last_uid": 1}]
    for kind, ev in good.items():
        for pos in (0, 2):  # alone, and behind two good events of the same report
            evs = lead[:pos] + [ev]
            pre = "inbox_events[%d]." % pos
            body = {"lease_id": lid, "inbox_events": evs}

            def put(key, value, sub=None):
                b = json.loads(json.dumps(body))
                e = b["inbox_events"][pos]
                if sub is None:
                    e[key] = value
                else:
                    e[key][sub] = value
                return b

            def send(raw, what, status=400, code=None, field=None):
                r = call("POST", "/api/agent/report", token=a, raw=raw, timeout=60)
                refused(r, "%s %s at %d: %s" % (kind, what, pos, raw[:80]), status, code, field)

            for key, val in ev.items():
                strings = [(None, val)] if isinstance(val, str) else \
                    [(i, s) for i, s in enumerate(val) if isinstance(s, str)] \
                    if isinstance(val, list) else []
                for sub, s in strings:
                    f = pre + key + ("" if sub is None else "[%d]" % sub)
                    for e in escapes:
                        send(encode(put(key, s[:1] + RAW + s[1:], sub), e), "%s %s" % (e, f),
                             code="invalid_field", field=f)
                    for r in raws:
                        send(encode(put(key, s + RAW, sub), r), "raw %r %s" % (r, f),
                             code="invalid_utf8", field=f)
                if isinstance(val, int) and not isinstance(val, bool):
                    for h in huge:
                        if (key in ("mailbox_id", "action_id") and h == b"4294967296") or \
                                (key == "last_uid" and h in (b"0", b"-0")) or \
                                (kind == "action" and key in ("uidvalidity", "uid") and
                                 h == b"null"):
                            continue  # in range (or, for an optional member, absent)
                        send(encode(put(key, RAW), h), "%s=%s" % (key, h.decode()),
                             field=pre + key)
                # the member name itself
                b = json.loads(json.dumps(body))
                e = b["inbox_events"][pos]
                e[key + "\x00x"] = e.pop(key)
                send(encode(b), "NUL in member name %s" % key, code="invalid_field",
                     field=pre + key + "\\u0000x")
                b = json.loads(json.dumps(body))
                e = b["inbox_events"][pos]
                e[key + RAW] = e.pop(key)
                send(encode(b, b"\\udc00"), "lone surrogate in member name %s" % key,
                     code="invalid_field")
                # twice in one event
                text = encode(body).decode()
                obj = json.dumps(ev, ensure_ascii=False)
                dup = obj[:-1] + ", " + json.dumps(key) + ": " + json.dumps(val) + "}"
                send(text.replace(obj, dup, 1).encode(), "duplicate %s" % key,
                     code="invalid_field", field=pre + key)
                # nesting one past the limit in place of the member (root, list, event: 3)
                send(encode(put(key, RAW), b"[" * 62 + b"]" * 62), "65 levels at " + key,
                     code="malformed_json")
                send(encode(put(key, RAW), b"[" * 61 + b"]" * 61), "64 levels at " + key,
                     field=None if isinstance(val, list) else pre + key)
            if "flags" in ev:
                send(encode(put("flags", ["\\S"] * 60000)), "60,000 flags",
                     code="invalid_field", field=pre + "flags")
            for whole in (b'"x"', b"1", b"null", b"[]", b"true"):
                raw = encode({"lease_id": lid, "inbox_events": evs[:pos] + [RAW]}, whole)
                send(raw, "event %s" % whole.decode(), code="invalid_field",
                     field="inbox_events[%d]" % pos)
    # a list of 100,000 events, and one of 10,001 bytes each past the body limit
    big = {"lease_id": lid, "inbox_events": [good["session"]] * 100000}
    r = call("POST", "/api/agent/report", big, token=a, timeout=60)
    refused(r, "100,000 events", None)
    check_unchanged(before, "hostile inbox_events bodies")
    check_alive("hostile inbox_events bodies")
    # each untouched event is taken (the refusals were for the attacks)
    for kind, ev in good.items():
        r = call("POST", "/api/agent/report", {"lease_id": lid, "inbox_events": [ev]}, token=a)
        check(r.status == 200, "the untouched %s event is refused: %r" % (kind, r))
    # the UID space's ends are taken and stored exactly
    top = 4294967295
    r = report(a, lid, [dict(good["folder_state"], uidvalidity=top, last_uid=top),
                        found(rc, sends[1][3] if sends[1][2] == rc else mid, "X", "other",
                              top, top)])
    check(psql("SELECT uidvalidity, last_uid FROM inbox_folders WHERE mailbox_id = %d AND "
               "name = 'INBOX'" % rc) == ["%d|%d" % (top, top)],
          "UIDVALIDITY and last UID 2^32-1 stored as sent: %r" % r)
    reset_clock()
    ok("test_hostile_inbox_events_are_a_400_naming_the_member_and_change_nothing "
       "(%d requests)" % n_req[0])


# ---- foreign --------------------------------------------------------------------------------

def part_foreign():
    boxes, a, lid, sends, la = world()
    sid, sender, rc, mid = sends[0]
    check(report(a, lid, [found(rc, mid, "Junk", "junk", 3, 8)]) == counts(1), "find in junk")
    act = actions_of(a, rc)
    check(len(act) == 1, "A's rescue: %r" % act)
    # B: an agent with no inbox of these; its own inbox lease holds a fifth inbox
    plan_id = int(psql("SELECT u.plan_id FROM users u JOIN mailboxes m ON m.user_id = u.id "
                       "WHERE m.id = %d" % rc)[0])
    u = make_user("h-b", plan_id)
    bbox = make_mailbox(u["id"], "b@hb.test", timezone="UTC",
                        window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01",
                        imap={"host": HOSTS[0], "port": 993, "password": "imap-b"})
    b = agent("hostile-b")
    lb = lease(b, "B's lease", max_inboxes=5)
    check(lb.get("inbox_lease") and [i["mailbox_id"] for i in lb["inboxes"]] == [bbox["id"]],
          "B holds only the new inbox: %r" % lb.get("inboxes"))
    blid = lb["inbox_lease"]["lease_id"]
    before = dump()
    evs = [found(rc, mid, "INBOX", "inbox", 7, 77),
           {"type": "action", "mailbox_id": rc, "action_id": act[0]["id"], "status": "gone"},
           {"type": "folder_state", "mailbox_id": rc, "folder": "INBOX", "role": "inbox",
            "uidvalidity": 7, "last_uid": 99},
           {"type": "session", "mailbox_id": rc, "status": "auth", "detail": "hijack"}]
    check(report(b, blid, evs) == counts(0, 0, 4),
          "B's events for A's inbox under B's own lease are ignored")
    refused(call("POST", "/api/agent/report", {"lease_id": lid, "inbox_events": evs}, token=b),
            "B reports under A's lease", 403, "foreign_lease", "lease_id")
    # A's action reported under another of A's inboxes: not that inbox's action
    other = [x["id"] for x in boxes if x["id"] != rc][0]
    check(report(a, lid, [dict(evs[1], mailbox_id=other)]) == counts(0, 0, 1),
          "an outcome naming another inbox than its action's is ignored")
    # inbox events on A's send lease: no inbox is held by it
    check(report(a, la["lease_id"], evs) == counts(0, 0, 4),
          "inbox events on a send lease are ignored")
    check_unchanged(before, "events for inboxes not leased to the reporter")
    # a replayed outcome: the first counts, the plan's next action is issued once
    done = dict(evs[1], status="done", folder="INBOX", uidvalidity=7, uid=51)
    check(report(a, lid, [done]) == counts(1), "the outcome")
    snap = psql("SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM inbox_actions "
                "WHERE mailbox_id = %d" % rc)
    for st in ("done", "failed", "gone"):
        check(report(a, lid, [dict(done, status=st)]) == counts(0, 1), "replay %s" % st)
    check(psql("SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM inbox_actions "
               "WHERE mailbox_id = %d" % rc) == snap, "replays issued nothing more")
    # released: A gives the inbox lease back; a late report stores nothing
    expect(call("POST", "/api/agent/release", {"lease_id": lid}, token=a), 200, "release")
    before = dump()
    r = report(a, lid, [found(rc, sends[1][3], "INBOX", "inbox", 7, 300),
                        {"type": "session", "mailbox_id": rc, "status": "tls"}])
    check(r["applied"] == 0, "a report on a released inbox lease applies nothing: %r" % r)
    check_unchanged(before, "a report on a released inbox lease")
    check_alive("foreign events")
    reset_clock()
    ok("test_events_for_inboxes_not_leased_to_the_reporter_change_nothing")


# ---- races ----------------------------------------------------------------------------------

def released_together(n, fn):
    got, errs, go = [], [], threading.Barrier(n)

    def run():
        go.wait()
        try:
            got.append(fn())
        except SystemExit:
            errs.append("a racer failed (see above)")

    ts = [threading.Thread(target=run) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errs, "; ".join(errs))
    return got


def part_race():
    boxes, a, lid, sends, _ = world()
    sid, sender, rc, mid = sends[0]
    check(report(a, lid, [found(rc, mid, "Junk", "junk", 3, 8)]) == counts(1), "find in junk")
    act = actions_of(a, rc)
    done = {"type": "action", "mailbox_id": rc, "action_id": act[0]["id"], "status": "done",
            "folder": "INBOX", "uidvalidity": 7, "uid": 51}

    def one():
        r = call("POST", "/api/agent/report", {"lease_id": lid, "inbox_events": [done]}, token=a)
        check(r.status == 200, "a racing outcome: %r" % r)
        return r.json["inbox_events"]

    got = released_together(8, one)
    check(sum(g["applied"] for g in got) == 1 and sum(g["duplicates"] for g in got) == 7,
          "one outcome from 8 clients at once: applied once: %r" % got)
    rows = psql("SELECT kind, status FROM inbox_actions WHERE mailbox_id = %d ORDER BY id" % rc)
    check(rows == ["rescue|done", "mark|pending"],
          "the rescue done once, the mark issued once: %r" % rows)
    # a whole report (a new find, a new folder, a session outcome) from 8 clients at once
    s1 = [s for s in sends if s[2] != rc][0]
    mixed = [found(s1[2], s1[3], "INBOX", "inbox", 7, 300),
             {"type": "folder_state", "mailbox_id": s1[2], "folder": "Race", "role": "other",
              "uidvalidity": 5, "last_uid": 9},
             {"type": "session", "mailbox_id": s1[2], "status": "auth", "detail": "raced"}]

    def whole():
        r = call("POST", "/api/agent/report", {"lease_id": lid, "inbox_events": mixed}, token=a)
        check(r.status == 200, "a racing report: %r" % r)
        return r.json["inbox_events"]

    got = released_together(8, whole)
    check(sum(g["applied"] for g in got) == 3 and sum(g["duplicates"] for g in got) == 21,
          "one report from 8 clients at once: each event applied once: %r" % got)
    check(psql("SELECT count(*) FROM inbox_messages WHERE send_id = %d" % s1[0]) == ["1"] and
          psql("SELECT last_uid FROM inbox_folders WHERE mailbox_id = %d AND name = 'Race'"
               % s1[2]) == ["9"] and
          psql("SELECT inbox, inbox_error FROM mailboxes WHERE id = %d" % s1[2]) ==
          ["error|raced"], "the raced report's rows, once each")
    check_alive("racing outcomes")
    reset_clock()
    ok("test_one_outcome_released_from_8_clients_applies_once")


def part_folders():
    """At most 16 folders an inbox (api/lease/inbox_store.c Q_FOLDER_STATE): one report of
    many new folders stores the first up to the bound, and reports that run together
    do not each pass it on the others' uncommitted rows."""
    boxes, a, lid, sends, _ = world()
    rc = boxes[0]["id"]
    r = report(a, lid, [{"type": "folder_state", "mailbox_id": rc, "folder": "F%d" % i,
                         "role": "other", "uidvalidity": 1, "last_uid": 1} for i in range(200)])
    n = int(psql("SELECT count(*) FROM inbox_folders WHERE mailbox_id = %d" % rc)[0])
    check(n <= 16 and r == counts(16, 0, 184),
          "one report of 200 new folders left %d folders for one inbox (%r); the "
          "bound is 16, the rest ignored" % (n, r))
    psql("DELETE FROM inbox_folders WHERE mailbox_id = %d" % rc)

    def one(k):
        return lambda: report(a, lid, [{"type": "folder_state", "mailbox_id": rc,
                                        "folder": "R%d-%d" % (k, i), "role": "other",
                                        "uidvalidity": 1, "last_uid": 1} for i in range(4)])

    ks = iter(range(8))
    lock = threading.Lock()

    def racer():
        with lock:
            k = next(ks)
        return one(k)()

    released_together(8, racer)
    n = int(psql("SELECT count(*) FROM inbox_folders WHERE mailbox_id = %d" % rc)[0])
    check(n <= 16, "8 reports of 4 new folders each at once left %d folders for "
          "one inbox; the bound is 16" % n)
    reset_clock()
    ok("test_the_folder_bound_holds_under_racing_reports")


# ---- paging ---------------------------------------------------------------------------------

def part_paging():
    boxes, a, lid, sends, _ = world()
    evs, seen = [], set()
    for k, (sid, sender, rc, mid) in enumerate(sends):
        evs.append(found(rc, mid, "INBOX", "inbox", 7, 10 + k))
        seen.add(sender)
    report(a, lid, evs)
    mb = sends[0][1]
    want = [int(x) for x in psql("SELECT send_id FROM placements WHERE mailbox_id = %d "
                                 "ORDER BY send_id DESC" % mb)]
    check(want, "placements to page through")
    path = "/api/mailboxes/%d/placement" % mb
    got, cursor = [], None
    for _ in range(len(want) + 2):
        r = admin("GET", path + "?limit=1" + ("&cursor=%s" % cursor if cursor else ""))
        check(r.status == 200, "page: %r" % r)
        got += [i["send_id"] for i in r.json["items"]]
        cursor = r.json["next_cursor"]
        if cursor is None:
            break
    check(got == want, "limit=1 pages give every placement once, newest first: %r vs %r"
          % (got, want))
    for q, status in [("limit=500", 200), ("limit=501", 400), ("limit=0", 400),
                      ("limit=-1", 400), ("cursor=0", 200), ("cursor=-1", 400),
                      ("cursor=9223372036854775807", 200), ("cursor=9223372036854775808", 400),
                      ("limit=5%00", 400), ("limit=1&limit=1000", None),
                      # 20 digits that wrap 2^64 to a small number (parse_int, fixed)
                      ("limit=18446744073709551620", 400),
                      ("cursor=18446744073709551617", 400),
                      ("cursor=1e3", 400), ("limit=%205", 400), ("limit=5&cursor=", 200)]:
        r = admin("GET", path + "?" + q)
        if status == 200:
            check(r.status == 200 and isinstance(r.json.get("items"), list), "%s: %r" % (q, r))
        elif status is None:
            check(r.status in (200, 400) and r.json is not None, "%s: %r" % (q, r))
            if r.status == 200:
                check(len(r.json["items"]) <= 1, "%s: the first limit counts: %r" % (q, r))
        else:
            refused(r, path + "?" + q, 400, "invalid_query")
    other = make_user("h-other", int(psql("SELECT plan_id FROM users LIMIT 1")[0]))
    tok = expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": other["id"]}), 201,
                 "tenant token")["token"]
    for p in (path, "/api/mailboxes/%d/health" % mb):
        refused(call("GET", p, token=tok), "another tenant's " + p, 404, "not_found")
    # an id past 2^64 is no mailbox (it used to wrap to the mailbox 2^64 below it)
    for p in ("/api/mailboxes/%d", "/api/mailboxes/%d/placement", "/api/mailboxes/%d/health",
              "/api/warmup/mailbox?id=%d"):
        wrapped = p % (2 ** 64 + mb)
        refused(admin("GET", wrapped), wrapped + " (mailbox %d is 2^64 below)" % mb, None)
    check_alive("paging")
    reset_clock()
    ok("test_placement_paging_bounds_and_every_row_once")


# ---- registration ---------------------------------------------------------------------------

def part_registration():
    set_clock("2026-03-04T10:00:00Z")
    plan = make_plan("hostile-reg", **CERTAIN)
    u = make_user("h-reg", plan["id"])
    mb = make_mailbox(u["id"], "reg@hreg.test", imap={"host": "imap.hreg.test", "port": 993,
                                                      "password": "imap-pw"})
    tok = expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": u["id"]}), 201,
                 "tenant token")["token"]
    before = dump()
    path = "/api/mailboxes/%d" % mb["id"]
    cases = [("host", "h" * 254, "imap.host"), ("host", "a" * 64 + ".test", "imap.host"),
             ("host", "-bad-.test", "imap.host"), ("host", "imap.test\r\nX: y", "imap.host"),
             ("host", "imap..test", "imap.host"), ("host", "[::1]", "imap.host"),
             ("host", "", "imap.host"), ("host", 993, "imap.host"),
             ("port", 0, "imap.port"), ("port", 65536, "imap.port"), ("port", "993", "imap.port"),
             ("port", 4294967297, "imap.port"), ("port", 993.5, "imap.port"),
             ("security", "TLS", "imap.security"), ("security", "none", "imap.security"),
             ("username", "u" * 255, "imap.username"), ("username", "a\r\nb", "imap.username"),
             ("username", "", "imap.username"),
             ("password", "p" * 1025, "imap.password"), ("password", "a\nb", "imap.password"),
             ("password", "", "imap.password"),
             ("oauth_token", "t" * 100000, "imap.oauth_token"),
             ("oauth_token", "ya29 x", "imap.oauth_token"),
             ("oauth_token", "a\x01b", "imap.oauth_token"),
             ("oauth_token", "=abc", "imap.oauth_token"),
             ("allow_plaintext_auth", "yes", "imap.allow_plaintext_auth"),
             ("extra", 1, "imap.extra")]
    for key, val, field in cases:
        r = call("PATCH", path, {"imap": {key: val}}, token=tok, timeout=60)
        refused(r, "PATCH imap.%s=%r" % (key, str(val)[:40]), 400, None, field)
    for val in ("x", 1, [], True):
        refused(call("PATCH", path, {"imap": val}, token=tok), "PATCH imap=%r" % (val,), 400,
                None, "imap")
    refused(call("PATCH", path, {"imap": {"password": "a", "oauth_token": "b"}}, token=tok),
            "password and oauth_token together", 400, None, "imap.oauth_token")
    body = mailbox_body(u["id"], "reg2@hreg.test", imap={"host": "imap.hreg.test", "port": 993})
    refused(call("POST", "/api/mailboxes", body, token=tok), "POST imap without a secret", 400)
    check_unchanged(before, "hostile IMAP registration")
    r = call("PATCH", path, {"imap": {"oauth_token": "ya29.A-b_c~d+e/f=="}}, token=tok)
    check(r.status == 200 and r.json["imap"]["oauth_token_set"] is True and
          "ya29" not in r.raw, "a bearer token is taken and never shown: %r" % r)
    check_alive("registration")
    reset_clock()
    ok("test_hostile_imap_registration_is_a_400_naming_the_member_and_changes_nothing "
       "(%d requests)" % n_req[0])


# ---- webhooks -------------------------------------------------------------------------------

def part_webhooks():
    set_clock("2026-03-04T10:00:00Z")
    plan = make_plan("hostile-wh", **CERTAIN)
    u = make_user("h-wh", plan["id"])
    tok = expect(admin("POST", "/api/tokens", {"scope": "tenant", "user_id": u["id"]}), 201,
                 "tenant token")["token"]
    before = dump()
    # docs/webhooks.md: https, a host, an optional port, no user info, no fragment; plain
    # http only to localhost, 127.0.0.0/8 or [::1]
    bad = ["http://10.0.0.1/h", "http://169.254.169.254/latest/meta-data",
           "http://127.0.0.1.nip.io/h", "http://localhost.evil.test/h",
           "http://[::ffff:127.0.0.1]/h", "http://0x7f000001/h", "http://2130706433/h",
           "http://127.0.0.1@evil.test/h", "https://user:pw@evil.test/h", "https://evil.test#x",
           "https://evil.test:0/h", "https://evil.test:65536/h",
           "https://evil.test:99999999999999999999/h", "https://evil.test:-1/h",
           "https://evil.test:18446744073709552059/h",  # 2^64 + 443
           # libcurl refuses a signed port: taken, every delivery would fail
           "http://127.0.0.1:+80/h", "https://evil.test:+443/h", "https://evil.test:0443/h",
           "https://[::1/h", "https://[]/h", "https://[evil.test]/h", "https://evil .test/h",
           "https://evil.test/\x7f", "https://\u00e9vil.test/h", "gopher://evil.test/h",
           "file:///etc/passwd", "https:///h", "https://", "https://" + "a" * 2050 + ".test/",
           "https://-evil.test/h", "https://evil-.test/h", "https://evil..test/h",
           "ftp://evil.test/"]
    for url in bad:
        refused(call("POST", "/api/webhooks", {"url": url}, token=tok), "url %r" % url[:60],
                400, "invalid_field", "url")
    check_unchanged(before, "refused webhook URLs")
    for url in ("https://hooks.example.test/k", "http://127.0.0.1:9/h", "http://[::1]:9/h",
                "http://localhost/h"):
        r = call("POST", "/api/webhooks", {"url": url}, token=tok)
        check(r.status == 201, "%s: taken as documented: %r" % (url, r))
    check_alive("webhooks")
    reset_clock()
    ok("test_webhook_urls_outside_the_documented_rules_are_refused")


PARTS = {"parser": part_parser, "foreign": part_foreign, "race": part_race,
         "folders": part_folders, "paging": part_paging,
         "registration": part_registration, "webhooks": part_webhooks}
if len(sys.argv) > 1:
    PARTS[sys.argv[1]]()
else:
    for f in PARTS.values():
        f()
