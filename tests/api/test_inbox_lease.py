"""The inbox side's control plane (issue 13) through nginx: inbox leases (handed out
once to concurrent leasers, spread across agents, moved to another agent when the holder
dies, folder state resumed), found events (Message-ID MAC verified, idempotent,
placement with provider and Authentication-Results), actions (leased, reported once, not
leased again), session outcomes, the missing sweep, the recipients switch, and bad input.
  test_inbox_lease.py [part]   (part: handout, expiry, found, actions, engage, retention,
                                missing, recipients, bad_input; all when absent)
The engage and retention parts drive the engagement policy behind the found events:
actions in order, timed by the plan in the recipient's zone, replies leased as sends,
prunes after retention_days."""
import datetime
import os
import sys
import threading
import time
from kiln_test import *

HOSTS = ["imap.gmail.com", "outlook.office365.com", "imap.mail.yahoo.com", "mail.example.test"]


RUN = [0]  # parts share one stack when run together: names get the part's number


def agent(name):
    name = "%s-%d" % (name, RUN[0])
    return expect(admin("POST", "/api/agents", {"name": name}), 201, "agent " + name)["token"]


def lease(token, what="lease", **kw):
    body = {"max_mailboxes": 50, "max_sends": 200}
    body.update(kw)
    return expect(call("POST", "/api/agent/lease", body, token=token), 200, what)


def report(token, lease_id, events, what="report"):
    return expect(call("POST", "/api/agent/report", {"lease_id": lease_id,
                                                     "inbox_events": events}, token=token),
                  200, what)["inbox_events"]


def heartbeat(token, lease_id, what="heartbeat"):
    return expect(call("POST", "/api/agent/heartbeat", {"lease_id": lease_id}, token=token),
                  200, what)


def world(n, with_imap=None, **plan_kw):
    """n mailboxes in n tenants and domains, all able to send now; the first with_imap
    (default all) have IMAP access on HOSTS in turn; plan_kw: the plan's members beside
    the pacing below. Returns the mailboxes."""
    RUN[0] += 1
    r = RUN[0]
    set_clock("2026-03-04T10:00:00Z")  # a Wednesday
    # Parts run together share the stack: what earlier parts made stops taking part.
    psql("UPDATE mailboxes SET state = 'disabled'")
    psql("UPDATE leases SET ended_at = kiln_now() WHERE ended_at IS NULL")
    psql("UPDATE agents SET inbox_wanted_at = NULL")
    psql("TRUNCATE placements, inbox_sightings, inbox_messages, inbox_actions, inbox_folders")
    psql("DELETE FROM counters WHERE name IN ('placement', 'actions')")
    psql("UPDATE placement_sweep SET last_send_id = (SELECT coalesce(max(id), 0) FROM sends)")
    members = dict(ramp_start=6, ramp_step=0, daily_max=6, cooldown_min_s=60, cooldown_max_s=90)
    members.update(plan_kw)
    plan = make_plan("p%d" % r, **members)
    boxes = []
    for i in range(n):
        u = make_user("t%d-%d" % (r, i), plan["id"])
        kw = {}
        if with_imap is None or i < with_imap:
            kw["imap"] = {"host": HOSTS[i % len(HOSTS)], "port": 993, "password": "imap-%d" % i}
        boxes.append(make_mailbox(u["id"], "box%d@d%d-%d.test" % (i, r, i), timezone="UTC",
                                  window={"start_hour": 0, "end_hour": 24},
                                  warmup_start="2026-03-01", **kw))
    return boxes


def counts(a=0, d=0, i=0):
    return {"applied": a, "duplicates": d, "ignored": i}


def found(mb, mid, folder="INBOX", role="inbox", v=7, uid=1, flags=(), ar=None):
    e = {"type": "found", "mailbox_id": mb, "message_id": mid, "folder": folder, "role": role,
         "uidvalidity": v, "uid": uid, "flags": list(flags)}
    if ar is not None:
        e["authentication_results"] = ar
    return e


def sends_to(answer, boxes):
    """[(send_id, sender_id, recipient_id, message_id)] of a send lease answer."""
    by_addr = {b["address"]: b["id"] for b in boxes}
    return [(s["id"], m["id"], by_addr[s["to"]], s["message_id"])
            for m in answer["mailboxes"] for s in m["sends"]]


def report_sent(token, answer):
    res = [{"send_id": s["id"], "status": "sent"} for m in answer["mailboxes"] for s in m["sends"]]
    expect(call("POST", "/api/agent/report", {"lease_id": answer["lease_id"], "results": res},
                token=token), 200, "report sends")


def part_handout():
    boxes = world(12, with_imap=10)
    # A paused mailbox's inbox is still watched (mail sent to it before the pause is
    # still found and acted on); a deleted one's is not.
    expect(admin("POST", "/api/mailboxes/%d/pause" % boxes[8]["id"]), 200, "pause")
    expect(admin("DELETE", "/api/mailboxes/%d" % boxes[9]["id"]), 204, "delete")
    watchable = {b["id"] for b in boxes[:9]}
    tokens = [agent("a"), agent("b")]
    got = [None, None]

    def run(k):
        got[k] = lease(tokens[k], "concurrent lease %d" % k, max_inboxes=100, max_mailboxes=1,
                       max_sends=1)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    sets = [{i["mailbox_id"] for i in (g or {}).get("inboxes", [])} for g in got]
    check(not (sets[0] & sets[1]), "an inbox went to both concurrent leasers: %r" % sets)
    check(sets[0] | sets[1] == watchable,
          "the watchable inboxes (IMAP, not deleted; a paused one too) are all handed out "
          "once: %r vs %r"
          % (sets, watchable))
    for g in got:
        if g.get("inboxes"):
            il = g["inbox_lease"]
            check(il["ttl_s"] == 1800 and il["heartbeat_s"] == 600 and il["lease_id"] != g.get(
                "lease_id"), "inbox lease shape: %r" % il)
            i = g["inboxes"][0]
            check(set(i) == {"mailbox_id", "address", "imap", "poll_class", "poll_interval_s",
                             "warmup_folder", "folders", "actions"}, "LeaseInbox members: %r" % i)
            check(i["imap"]["password"] == "imap-%d" % [b["id"] for b in boxes].index(
                i["mailbox_id"]) and i["imap"]["oauth_token"] is None and
                i["imap"]["ca_file"] is None, "the opened IMAP access: %r" % i["imap"])
            check(i["folders"] == [] and i["actions"] == [] and i["warmup_folder"] == "kiln",
                  "a never watched inbox: %r" % i)
        else:
            check("inbox_lease" not in g, "inbox_lease without inboxes: %r" % sorted(g))
    ok("test_inbox_lease_handed_out_once_to_concurrent_leasers")

    # Sequentially: a first agent takes everything; a second one makes the first give
    # back the excess at its heartbeat, and takes it at its next lease.
    for k in range(2):
        for g in got:
            if g.get("inbox_lease"):
                call("POST", "/api/agent/release", {"lease_id": g["inbox_lease"]["lease_id"]},
                     token=tokens[k])
    psql("UPDATE agents SET inbox_wanted_at = NULL")
    c = agent("c")
    first = lease(c, "c alone", max_inboxes=100)
    check(len(first["inboxes"]) == 9, "one agent alone takes all 9: %d" % len(first["inboxes"]))
    again = lease(c, "c again", max_inboxes=100)
    check(again["inbox_lease"]["lease_id"] == first["inbox_lease"]["lease_id"] and
          [i["mailbox_id"] for i in again["inboxes"]] == [i["mailbox_id"] for i in first["inboxes"]],
          "a later lease lists the held inboxes again under the same lease id")
    # At its capacity an agent asks for no more inboxes: without inboxes_held the answer
    # has no inbox part; with it the held ones come again (their new actions), none added.
    full = lease(c, "c full", max_inboxes=0)
    check("inboxes" not in full and "inbox_lease" not in full,
          "max_inboxes 0 alone: no inbox part: %r" % sorted(full))
    full = lease(c, "c full, holding 9", max_inboxes=0, inboxes_held=9)
    check(full["inbox_lease"]["lease_id"] == first["inbox_lease"]["lease_id"] and
          [i["mailbox_id"] for i in full["inboxes"]] == [i["mailbox_id"] for i in first["inboxes"]],
          "inboxes_held lists the held inboxes again: %r" % full.get("inboxes"))
    d = agent("d")
    dl = lease(d, "d while c holds all", max_inboxes=100)
    check("inboxes" not in dl, "nothing free for d yet: %r" % dl.get("inboxes"))
    hb = heartbeat(c, first["inbox_lease"]["lease_id"])
    check(len(hb["inboxes_dropped"]) == 4 and hb["cancel"] == [],
          "c keeps its share (5 of 9) and drops 4: %r" % hb)
    dl = lease(d, "d after the drop", max_inboxes=100)
    check(sorted(i["mailbox_id"] for i in dl["inboxes"]) == sorted(hb["inboxes_dropped"]),
          "d takes what c dropped: %r" % dl.get("inboxes"))
    hb = heartbeat(c, first["inbox_lease"]["lease_id"])
    check(hb["inboxes_dropped"] == [], "a second heartbeat drops nothing: %r" % hb)
    ok("test_inbox_leases_spread_across_agents")

    # Deleted, IMAP changed: dropped at the heartbeat; paused (by its owner or by health,
    # the same state): kept; release gives the rest back.
    held = [i["mailbox_id"] for i in lease(c, "c", max_inboxes=100)["inboxes"]]
    expect(admin("DELETE", "/api/mailboxes/%d" % held[0]), 204, "delete")
    expect(admin("PATCH", "/api/mailboxes/%d" % held[1], {"imap": {"port": 143}}), 200, "patch")
    expect(admin("POST", "/api/mailboxes/%d/pause" % held[2]), 200, "pause")
    hb = heartbeat(c, first["inbox_lease"]["lease_id"])
    check(sorted(hb["inboxes_dropped"]) == sorted(held[:2]),
          "deleted and changed inboxes dropped, the paused one kept: %r vs %r" % (hb, held[:2]))
    kept = lease(c, "c after the pause", max_inboxes=100)
    check(held[2] in [i["mailbox_id"] for i in kept["inboxes"]],
          "the paused mailbox's inbox is still handed to c: %r" % kept["inboxes"])
    rel = expect(call("POST", "/api/agent/release", {"lease_id": first["inbox_lease"]["lease_id"]},
                      token=c), 200, "release")
    check(rel["released"] == len(kept["inboxes"]) and not rel["already_ended"],
          "release counts the inboxes given back: %r" % rel)
    check(psql("SELECT count(*) FROM inbox_leasing WHERE lease_id = '%s'"
               % first["inbox_lease"]["lease_id"]) == ["0"], "released inboxes are free")
    m = call("GET", "/metrics", token=ADMIN).raw
    check("kiln_inbox_leases_active 1" in m, "one inbox lease (d's) is active: %s" %
          [l for l in m.splitlines() if "inbox" in l])
    # An agent holding only an inbox lease is not leasing mail: KilnNoActiveAgent must
    # still fire for it, so agents_active and leases_active count send leases only.
    live = "ended_at IS NULL AND expires_at > kiln_now()"
    sends_live = psql("SELECT count(*), count(DISTINCT agent_id) FROM leases WHERE %s "
                      "AND kind = 'send'" % live)[0].split("|")
    inbox_live = int(psql("SELECT count(*) FROM leases WHERE %s AND kind = 'inbox'" % live)[0])
    ctl = expect(admin("GET", "/api/warmup/control"), 200, "control")
    check(inbox_live >= 1 and ctl["leases_active"] == int(sends_live[0])
          and ctl["agents_active"] == int(sends_live[1]),
          "control counts the %s live send leases of %s agents, not the %d inbox leases: %r"
          % (sends_live[0], sends_live[1], inbox_live, ctl))
    reset_clock()
    ok("test_inboxes_dropped_at_heartbeat_and_released")


def part_expiry():
    boxes = world(3)
    a, b = agent("a"), agent("b")
    la = lease(a, "a", max_inboxes=10)
    lid = la["inbox_lease"]["lease_id"]
    mb = la["inboxes"][0]["mailbox_id"]
    ev = [{"type": "folder_state", "mailbox_id": mb, "folder": "INBOX", "role": "inbox",
           "uidvalidity": 9, "last_uid": 40},
          {"type": "folder_state", "mailbox_id": mb, "folder": "Junk", "role": "junk",
           "uidvalidity": 3, "last_uid": 5}]
    check(report(a, lid, ev) == counts(2), "folder states applied")
    check(report(a, lid, ev) == counts(0, 2), "the same states again are duplicates")
    back = dict(ev[0], last_uid=30)
    check(report(a, lid, [back]) == counts(0, 1), "a folder state never goes back")
    lb = lease(b, "b while a holds them", max_inboxes=10)
    check("inboxes" not in lb, "b gets nothing while a's lease lives: %r" % lb.get("inboxes"))
    # a dies: no heartbeat for longer than the ttl.
    set_clock("2026-03-04T10:31:00Z")
    # The lease call sweeps expired leases with SKIP LOCKED: when kiln-api's stats thread
    # is ending a's lease at that moment, this call skips it and its inboxes are still
    # held in its snapshot; the next call gets them (session 33: 1 run in 3 on a loaded
    # box). Asked again, at most 5 times.
    for _ in range(5):
        lb = lease(b, "b after a's lease expired", max_inboxes=10)
        if lb.get("inboxes"):
            break
        time.sleep(0.3)
    check(sorted(i["mailbox_id"] for i in lb.get("inboxes", [])) == sorted(x["id"] for x in boxes),
          "the inboxes moved to b: %r" % lb.get("inboxes"))
    folders = [i for i in lb["inboxes"] if i["mailbox_id"] == mb][0]["folders"]
    check(folders == [{"name": "INBOX", "role": "inbox", "uidvalidity": 9, "last_uid": 40},
                      {"name": "Junk", "role": "junk", "uidvalidity": 3, "last_uid": 5}],
          "b resumes from a's folder state: %r" % folders)
    expect_error(call("POST", "/api/agent/heartbeat", {"lease_id": lid}, token=a), 409,
                 "lease_expired", "lease_id", "a's heartbeat after expiry")
    check(report(a, lid, ev) == counts(0, 0, 2), "a's late events are ignored")
    lidb = lb["inbox_lease"]["lease_id"]
    reset = dict(ev[0], uidvalidity=10, last_uid=2)
    check(report(b, lidb, [reset]) == counts(1), "a new uidvalidity resets the folder")
    check(psql("SELECT uidvalidity, last_uid FROM inbox_folders WHERE mailbox_id = %d AND "
               "name = 'INBOX'" % mb) == ["10|2"], "the reset state is stored")
    reset_clock()
    ok("test_inbox_moves_after_agent_death_and_folder_state_resumes")


def setup_found(**plan_kw):
    """Four mailboxes with IMAP; one send lease reported sent; agent's inbox lease."""
    boxes = world(4, **plan_kw)
    a = agent("a")
    la = lease(a, "lease", max_inboxes=10)
    sends = sends_to(la, boxes)
    check(len(sends) >= 4, "the lease has sends: %r" % la)
    report_sent(a, la)
    return boxes, a, la, sends


def part_found():
    boxes, a, la, sends = setup_found()
    lid = la["inbox_lease"]["lease_id"]
    sid, sender, rc, mid = sends[0]
    bad = mid[:-2] + ("0" if mid[-2] != "0" else "1") + mid[-1]
    r = report(a, lid, [found(rc, bad), found(rc, "<%d.0%s@x.test>" % (sid, "0" * 24)),
                        found(rc, "<nothing-of-kiln@x.test>")])
    check(r == counts(0, 0, 3), "bad MACs are ignored: %r" % r)
    other = [s for s in sends if s[2] != rc][0]
    r = report(a, lid, [found(rc, other[3])])
    check(r == counts(0, 0, 1), "a send to another inbox found here is ignored: %r" % r)
    check(psql("SELECT count(*) FROM placements") == ["0"] and
          psql("SELECT count(*) FROM inbox_sightings") == ["0"], "ignored events stored nothing")
    ok("test_found_events_with_a_bad_mac_are_ignored")

    ar = ("mx.google.com; dkim=pass header.i=@d0.test header.s=s1; spf=softfail "
          "(google.com: domain of transitioning x) smtp.mailfrom=x@d0.test; "
          "dmarc=none (p=NONE) header.from=d0.test")
    ev = found(rc, mid, "[Gmail]/Spam", "junk", 11, 5, ["\\Recent"], ar)
    r = report(a, lid, [ev, ev])
    check(r == counts(1, 1), "a repeat in the same batch is a duplicate: %r" % r)
    check(report(a, lid, [ev]) == counts(0, 1), "the same find again is a duplicate")
    row = psql("SELECT placement, folder, provider, spf, dkim, dmarc, mailbox_id, recipient_id "
               "FROM placements WHERE send_id = %d" % sid)
    want_prov = ["gmail", "outlook", "yahoo", "other"][[b["id"] for b in boxes].index(rc) % 4]
    check(row == ["junk|[Gmail]/Spam|%s|fail|pass|none|%d|%d" % (want_prov, sender, rc)],
          "placement with provider and auth results: %r" % row)
    # Found again in INBOX (rescued by someone), then the junk find replayed: the
    # placement stays junk, the message is where it was found last.
    inbox = found(rc, mid, "INBOX", "inbox", 7, 90)
    check(report(a, lid, [inbox]) == counts(1), "a find in another folder is applied")
    check(report(a, lid, [ev, inbox]) == counts(0, 2), "replayed out of order: duplicates")
    check(psql("SELECT placement FROM placements WHERE send_id = %d" % sid) == ["junk"],
          "the first placement stays")
    check(psql("SELECT folder, uid FROM inbox_messages WHERE send_id = %d" % sid) == ["INBOX|90"],
          "the message is where it was found last")
    m = call("GET", "/metrics", token=ADMIN).raw
    check('kiln_placement_total{provider="%s",folder="junk"} 1' % want_prov in m,
          "placement metric: %s" % [l for l in m.splitlines() if "placement" in l])
    ok("test_found_events_are_idempotent_and_record_placement_once")

    # The same first finds reported at once on eight connections (an agent's retry racing
    # its first attempt): applied once each; the losers' message inserts fail on the key
    # and are retried, then find them known (023).
    race = [found(s[2], s[3], "INBOX", "inbox", 7, 200 + k) for k, s in enumerate(sends[1:4])]
    got, go = [], threading.Barrier(8)

    def racer():
        go.wait()
        got.append(report(a, lid, race))

    racers = [threading.Thread(target=racer) for _ in range(8)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    check(len(got) == 8 and sum(r["applied"] for r in got) == 3 and
          sum(r["duplicates"] for r in got) == 21, "racing reports, each find once: %r" % got)
    ids = ",".join(str(s[0]) for s in sends[1:4])
    check(psql("SELECT (SELECT count(*) FROM inbox_messages WHERE send_id IN (%s)), (SELECT "
               "count(*) FROM placements WHERE send_id IN (%s))" % (ids, ids)) == ["3|3"],
          "one message and one placement each")
    # Several sends found in one batch, each once.
    evs = [found(s[2], s[3], "INBOX", "inbox", 7, 100 + k, ["\\Seen"]) for k, s in
           enumerate(sends[1:4])]
    r = report(a, lid, list(reversed(evs)) + evs)
    check(r == counts(3, 3), "a batch of finds, each once: %r" % r)
    check(psql("SELECT count(*) FROM placements WHERE placement = 'inbox'") == ["3"],
          "three inbox placements")
    # Session outcomes.
    ses = [{"type": "session", "mailbox_id": rc, "status": "ok"}]
    check(report(a, lid, ses) == counts(1), "session ok applied")
    check(psql("SELECT inbox FROM mailboxes WHERE id = %d" % rc) == ["ok"], "inbox ok")
    check(report(a, lid, ses) == counts(0, 1), "the same ok again: a duplicate")
    # A transient outcome (the last of a batch counts) leaves the state and marks the
    # inbox failing since then; the same failure again is a duplicate, another detail is
    # recorded with the time it began failing kept; an ok (a visit done) clears it.
    def error_of():
        return psql("SELECT inbox, inbox_error, inbox_error_at FROM mailboxes WHERE id = %d"
                    % rc)[0].split("|")

    check(report(a, lid, ses + [{"type": "session", "mailbox_id": rc, "status": "connect",
                                 "detail": "timeout"}]) == counts(1, 1),
          "a transient outcome marks the inbox failing")
    st, err, since = error_of()
    check(st == "ok" and err == "timeout" and since, "failing, still ok: %r" % [st, err, since])
    g = expect(admin("GET", "/api/mailboxes/%d" % rc), 200, "get")
    check(g["inbox"] == "ok" and g["inbox_error"] == "timeout" and g["inbox_error_at"],
          "the API shows the failing inbox: %r" % g)
    bye = {"type": "session", "mailbox_id": rc, "status": "protocol",
           "detail": "the session broke after the login: BYE"}
    check(report(a, lid, [bye]) == counts(1), "another failure is recorded")
    check(error_of() == ["ok", bye["detail"], since], "failing since the first: %r" % error_of())
    check(report(a, lid, [bye]) == counts(0, 1), "the same failure again: a duplicate")
    # Operators see it: kiln_inboxes{state="failing"} (the stats snapshot, refreshed every
    # KILN_STATS_INTERVAL_S: 1 s here) and the JSON metrics' inboxes.
    def gauge():
        m = call("GET", "/metrics", token=ADMIN).raw
        return {l.split('"')[1]: int(l.rsplit(" ", 1)[1]) for l in m.splitlines()
                if l.startswith("kiln_inboxes{")}
    deadline = time.time() + 15
    while gauge().get("failing") != 1 and time.time() < deadline:
        time.sleep(0.3)
    g = gauge()
    check(g.get("failing") == 1 and g.get("ok") == 0 and sum(g.values()) == 4,
          "kiln_inboxes: %r (4 mailboxes with IMAP, one ok and failing)" % g)
    j = expect(admin("GET", "/api/warmup/metrics"), 200, "json metrics")
    check(j["inboxes"]["failing"] == 1, "the JSON metrics' inboxes: %r" % j.get("inboxes"))
    check(report(a, lid, ses) == counts(1), "a visit done clears it")
    check(error_of() == ["ok", "", ""], "ok, no error: %r" % error_of())
    r = report(a, lid, [{"type": "session", "mailbox_id": rc, "status": "auth",
                         "detail": "LOGIN failed"}])
    check(r == counts(1), "auth applied: %r" % r)
    g = expect(admin("GET", "/api/mailboxes/%d" % rc), 200, "get")
    check(g["inbox"] == "error" and g["inbox_error"] == "LOGIN failed" and g["inbox_error_at"],
          "auth puts the inbox in error: %r" % g)
    hb = heartbeat(a, lid)
    check(rc in hb["inboxes_dropped"], "an inbox in error is dropped: %r" % hb)
    ok("test_session_auth_puts_the_inbox_in_error")


# An engagement plan without chance: every junk find rescued, every find read and
# filed, never left alone or flagged; the dwell exactly 60 s (median and cap 1 min).
CERTAIN = dict(untouched_rate=0, rescue_rate=1, open_rate=1, important_rate=0, reply_rate=0,
               dwell_median_min=1, dwell_max_min=1)


def no_orphans():
    """023 dropped the report path's foreign keys: every row it wrote still names
    mailboxes that exist."""
    n = psql("SELECT (SELECT count(*) FROM inbox_messages x WHERE NOT EXISTS (SELECT 1 FROM "
             "mailboxes m WHERE m.id = x.mailbox_id)) + (SELECT count(*) FROM inbox_actions x "
             "WHERE NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = x.mailbox_id)) + "
             "(SELECT count(*) FROM pending_replies x WHERE NOT EXISTS (SELECT 1 FROM mailboxes m "
             "WHERE m.id = x.mailbox_id) OR NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = "
             "x.recipient_id)), (SELECT count(*) FROM inbox_messages)")[0].split("|")
    check(n[0] == "0" and int(n[1]) > 0, "rows naming a missing mailbox: %s" % n[0])


def part_actions():
    boxes, a, la, sends = setup_found(**CERTAIN)
    lid = la["inbox_lease"]["lease_id"]
    sid, sender, rc, mid = sends[0]
    check(report(a, lid, [found(rc, mid, "Junk", "junk", 3, 8)]) == counts(1), "find in junk")

    def actions_of(mb):
        ans = lease(a, "lease for actions", max_inboxes=10)
        return [i for i in ans["inboxes"] if i["mailbox_id"] == mb][0]["actions"]

    acts = actions_of(rc)
    check(len(acts) == 1 and acts[0]["kind"] == "rescue" and acts[0]["folder"] == "Junk" and
          acts[0]["uid"] == 8 and acts[0]["uidvalidity"] == 3 and acts[0]["target"] == "inbox" and
          acts[0]["flags"] == [] and 20 <= acts[0]["not_before_s"] <= 61,
          "the message's first action: rescue from junk after the dwell (a 60 s median and "
          "cap: from half the median, 30 s, to 60 s): %r" % acts)
    check(acts[0].get("message_id") == mid and
          psql("SELECT message_id FROM sends WHERE id = %d" % sid) == [mid],
          "the action names the send's Message-ID (a lost move is recognised): %r" % acts)
    check(psql("SELECT string_agg(kind::text, ',' ORDER BY id, step) FROM inbox_action_plan "
               "WHERE send_id = %d" % sid) == ["rescue,mark,file,prune"],
          "the engagement plan: rescue, mark, file, prune")
    check(psql("SELECT count(*), min(kind::text) FROM inbox_actions WHERE send_id = %d" % sid)
          == ["1|rescue"], "one row written per find: the first action, the rest in its plan")
    done = {"type": "action", "mailbox_id": rc, "action_id": acts[0]["id"], "status": "done",
            "folder": "INBOX", "uidvalidity": 7, "uid": 51}
    check(report(a, lid, [done, done]) == counts(1, 1), "outcome applied once")
    check(report(a, lid, [dict(done, status="failed")]) == counts(0, 1),
          "a later outcome of the same action is a duplicate (the first counts)")
    acts = actions_of(rc)
    check(len(acts) == 1 and acts[0]["kind"] == "mark" and acts[0]["flags"] == ["\\Seen"] and
          acts[0]["folder"] == "INBOX" and acts[0]["uid"] == 51 and acts[0]["target"] is None,
          "the next action follows the message to its new UID: %r" % acts)
    check(acts[0].get("message_id") == mid, "every action names the Message-ID: %r" % acts)
    check(report(a, lid, [found(rc, mid, "INBOX", "inbox", 7, 51)]) == counts(0, 1),
          "the moved message found at its new UID is a duplicate")
    mark = {"type": "action", "mailbox_id": rc, "action_id": acts[0]["id"], "status": "done",
            "flags": ["\\Seen"]}
    check(report(a, lid, [mark]) == counts(1), "mark done")
    acts = actions_of(rc)
    check(len(acts) == 1 and acts[0]["kind"] == "file" and acts[0]["target"] == "warmup" and
          60 <= acts[0]["not_before_s"] <= 660, "file 1 to 10 min after reading: %r" % acts)
    gone = {"type": "action", "mailbox_id": rc, "action_id": acts[0]["id"], "status": "gone"}
    check(report(a, lid, [gone]) == counts(1), "gone applied")
    check(actions_of(rc) == [], "no action is leased again once reported")
    other = [b["id"] for b in boxes if b["id"] != rc][0]
    r = report(a, lid, [dict(gone, mailbox_id=other), dict(gone, action_id=999999)])
    check(r == counts(0, 0, 2), "an action of another inbox / unknown is ignored: %r" % r)
    # A move, then the mark it issued, each in its own report: the mark and the file
    # after it are issued where the move put the message.
    s2 = [s for s in sends if s[2] == rc and s[0] != sid] or [s for s in sends if s[2] != rc]
    s2 = s2[0]
    check(report(a, lid, [found(s2[2], s2[3], "Junk", "junk", 3, 9)]) == counts(1), "2nd find")

    def pending(send_id):
        return psql("SELECT id, kind, folder, uid FROM inbox_actions WHERE send_id = %d AND "
                    "status = 'pending'" % send_id)

    rescue = pending(s2[0])
    check(len(rescue) == 1 and rescue[0].split("|")[1:] == ["rescue", "Junk", "9"],
          "one pending action, the rescue: %r" % rescue)
    move = {"type": "action", "mailbox_id": s2[2], "action_id": int(rescue[0].split("|")[0]),
            "status": "done", "folder": "INBOX", "uidvalidity": 7, "uid": 60}
    check(report(a, lid, [move]) == counts(1), "rescue done")
    mark = pending(s2[0])
    check(len(mark) == 1 and mark[0].split("|")[1:] == ["mark", "INBOX", "60"],
          "the mark issued at the new place: %r" % mark)
    seen = {"type": "action", "mailbox_id": s2[2], "action_id": int(mark[0].split("|")[0]),
            "status": "done", "flags": ["\\Seen", "\\Recent"]}
    check(report(a, lid, [seen, move]) == counts(1, 1), "mark done (the rescue again: duplicate)")
    row = psql("SELECT folder, role, uid, array_to_string(flags, ' ') FROM inbox_messages "
               "WHERE send_id = %d" % s2[0])
    check(row == ["INBOX|inbox|60|\\Seen \\Recent"], "moved and marked: %r" % row)
    fil = pending(s2[0])
    check(len(fil) == 1 and fil[0].split("|")[1:] == ["file", "INBOX", "60"],
          "the file action follows the move: %r" % fil)
    m = call("GET", "/metrics", token=ADMIN).raw
    for line in ('kiln_actions_total{kind="rescue",status="done"} 2',
                 'kiln_actions_total{kind="file",status="gone"} 1',
                 'kiln_actions_total{kind="rescue",status="issued"} 2'):
        check(line in m, "%s in %s" % (line, [l for l in m.splitlines() if "actions" in l]))
    check(psql("SELECT status, outcome IS NULL FROM inbox_actions WHERE id = %d"
               % done["action_id"]) == ["done|t"], "the stored outcome")
    no_orphans()
    reset_clock()
    ok("test_actions_leased_reported_once_and_not_leased_again")

def part_uidvalidity():
    """A folder rebuilt under a new UIDVALIDITY while actions wait (issue 14's week): the
    agent finds the message again there and reports the old action stale; the action is
    issued again at the new address and the rest of the chain follows, nothing cancelled."""
    boxes, a, la, sends = setup_found(**CERTAIN)
    lid = la["inbox_lease"]["lease_id"]
    sid, sender, rc, mid = sends[0]
    check(report(a, lid, [found(rc, mid, "Junk", "junk", 3, 8)]) == counts(1), "find in junk")
    first = [int(x) for x in psql("SELECT id FROM inbox_actions WHERE send_id = %d ORDER BY id"
                                  % sid)]
    stale = {"type": "action", "mailbox_id": rc, "action_id": first[0], "status": "stale"}
    check(report(a, lid, [found(rc, mid, "Junk", "junk", 99, 2), stale]) == counts(2),
          "the find at the new UIDVALIDITY and the stale rescue applied")
    rows = psql("SELECT kind, status, folder, uidvalidity, uid FROM inbox_actions WHERE "
                "send_id = %d ORDER BY id" % sid)
    check(rows == ["rescue|stale|Junk|3|8", "rescue|pending|Junk|99|2"],
          "re-issued at the new address: %r" % rows)
    plan = psql("SELECT string_agg(kind || ':' || status, ',' ORDER BY id, step) FROM "
                "inbox_action_plan WHERE send_id = %d AND status IN ('pending', 'planned')" % sid)
    check(plan == ["rescue:pending,mark:planned,file:planned,prune:planned"],
          "the rest of the plan follows it: %r" % plan)
    ans = lease(a, "lease for actions", max_inboxes=10)
    acts = [i for i in ans["inboxes"] if i["mailbox_id"] == rc][0]["actions"]
    check(len(acts) == 1 and acts[0]["kind"] == "rescue" and acts[0]["uidvalidity"] == 99 and
          acts[0]["id"] not in first, "the rescue comes first again, as a new action: %r" % acts)
    # A stale action whose message was not found again cancels the chain, as before.
    s2 = [s for s in sends if s[0] != sid][0]
    check(report(a, lid, [found(s2[2], s2[3], "INBOX", "inbox", 5, 4)]) == counts(1), "find")
    ids = [int(x) for x in psql("SELECT id FROM inbox_actions WHERE send_id = %d ORDER BY id"
                                % s2[0])]
    check(report(a, lid, [dict(stale, mailbox_id=s2[2], action_id=ids[0])]) == counts(1), "stale")
    check(psql("SELECT string_agg(status, ',' ORDER BY id, step) FROM inbox_action_plan WHERE "
               "send_id = %d" % s2[0]) == ["stale"],
          "not found again: the plan ends, its rest never issued")
    reset_clock()
    ok("test_a_rebuilt_folder_keeps_the_actions_of_its_messages")


# Every find engaged with certainty and answered; the dwell random within 1 to 60 min.
ENGAGED = dict(CERTAIN, reply_rate=1, dwell_median_min=20, dwell_max_min=60, ramp_start=60,
               daily_max=60)
NY = "America/New_York"


def now_s():
    return int(psql("SELECT ceil(extract(epoch FROM kiln_now()))::bigint")[0])


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def planned(send_id, tz):
    """[(kind, not_before epoch, local HH:MI in tz, flags)] of a send's actions."""
    rows = psql("SELECT kind, ceil(extract(epoch FROM not_before))::bigint, "
                "to_char(not_before AT TIME ZONE '%s', 'HH24:MI'), array_to_string(flags, ' ') "
                "FROM inbox_action_plan WHERE send_id = %d ORDER BY id, step" % (tz, send_id))
    return [(k, int(e), hm, f) for k, e, hm, f in (r.split("|") for r in rows)]


def awake(hm):
    """Outside the plan's quiet hours (23:00 to 07:00 local)."""
    return "07:00" <= hm < "23:00"


class Holder:
    """The agent holding the inboxes: each lease call's answers are kept (a reply can go
    out in any of them) and its inbox lease id followed (it expires across clock jumps)."""

    def __init__(self, token):
        self.token, self.answers, self.lid = token, [], None

    def actions(self, mb, what):
        ans = lease(self.token, what, max_inboxes=10)
        self.answers.append(ans)
        self.lid = ans["inbox_lease"]["lease_id"]
        return [i for i in ans["inboxes"] if i["mailbox_id"] == mb][0]["actions"]

    def done(self, mb, act, **place):
        ev = dict({"type": "action", "mailbox_id": mb, "action_id": act["id"], "status": "done"},
                  **place)
        check(report(self.token, self.lid, [ev]) == counts(1), "%s done" % act["kind"])


def part_engage():
    """A find goes through the engagement plan: junk rescued, read, filed, in that order,
    not before the dwell and never in the recipient's quiet hours; the recipient answers
    with a reply leased as a send with its threading; a duplicate find adds nothing."""
    boxes, a, la, sends = setup_found(**ENGAGED)
    ids = ",".join(str(b["id"]) for b in boxes)
    # 10:00 UTC is 05:00 in New York (EST): the recipients are asleep until 07:00.
    psql("UPDATE mailboxes SET timezone = '%s' WHERE id IN (%s)" % (NY, ids))
    sid, sender, rc, mid = sends[0]
    t0 = now_s()
    h = Holder(a)
    h.lid = la["inbox_lease"]["lease_id"]
    check(report(a, h.lid, [found(rc, mid, "Junk", "junk", 3, 8)]) == counts(1), "find in junk")
    acts = planned(sid, NY)
    check([x[0] for x in acts] == ["rescue", "mark", "file", "prune"] and acts[1][3] == "\\Seen",
          "rescue, mark \\Seen, file, prune: %r" % acts)
    for kind, at, hm, _ in acts[:3]:
        check(at >= t0 + 60 and awake(hm),
              "%s at %s local: after the dwell, outside the quiet hours: %r" % (kind, hm, acts))
    check(acts[0][1] == acts[1][1] <= acts[2][1] - 60,
          "read when rescued, filed a minute or more later: %r" % acts)
    check(abs(acts[3][1] - (t0 + 30 * 86400)) <= 2, "prune after 30 days (the default): %r"
          % acts)
    reply = psql("SELECT mailbox_id, recipient_id, in_reply_to, ceil(extract(epoch FROM "
                 "due_at))::bigint, to_char(due_at AT TIME ZONE '%s', 'HH24:MI') FROM "
                 "pending_replies WHERE parent_send_id = %d" % (NY, sid))
    check(len(reply) == 1, "one reply scheduled: %r" % reply)
    rmb, rto, irt, due, due_hm = reply[0].split("|")
    check((int(rmb), int(rto), irt) == (rc, sender, mid) and int(due) >= acts[0][1] and
          awake(due_hm), "the recipient answers the sender, after reading, awake: %r" % reply)
    ok("test_a_find_is_planned_by_the_engagement_policy")

    check(report(a, h.lid, [found(rc, mid, "Junk", "junk", 3, 8)]) == counts(0, 1),
          "the same find again is a duplicate")
    check(planned(sid, NY) == acts and psql(
        "SELECT count(*) FROM pending_replies WHERE parent_send_id = %d" % sid) == ["1"],
        "a duplicate find adds no action and no reply")
    ok("test_a_duplicate_find_creates_no_second_actions_or_reply")

    check(h.actions(rc, "asleep") == [], "nothing is due before the recipient wakes")
    set_clock(iso(acts[0][1]))
    got = h.actions(rc, "at the rescue time")
    check(len(got) == 1 and got[0]["kind"] == "rescue" and got[0]["not_before_s"] <= 1 and
          got[0]["folder"] == "Junk" and got[0]["uid"] == 8, "rescue first: %r" % got)
    h.done(rc, got[0], folder="INBOX", uidvalidity=7, uid=51)
    got = h.actions(rc, "after the rescue")
    check(len(got) == 1 and got[0]["kind"] == "mark" and got[0]["flags"] == ["\\Seen"] and
          got[0]["uid"] == 51, "then mark \\Seen where it was moved: %r" % got)
    h.done(rc, got[0], flags=["\\Seen"])
    got = h.actions(rc, "after the mark")
    check(len(got) == 1 and got[0]["kind"] == "file" and got[0]["target"] == "warmup" and
          got[0]["not_before_s"] >= 59, "then file, not yet due: %r" % got)
    set_clock(iso(acts[2][1]))
    got = h.actions(rc, "at the file time")
    check(len(got) == 1 and got[0]["kind"] == "file" and got[0]["not_before_s"] <= 1,
          "file due: %r" % got)
    h.done(rc, got[0], folder="kiln", uidvalidity=1, uid=1)
    check(h.actions(rc, "filed") == [], "nothing more until the prune")
    ok("test_actions_leased_rescue_then_mark_then_file_not_before_their_time")

    # The reply goes out through the normal send lease of the replying mailbox.
    # Its slot is one the planner gives the mailbox as to any send: due by now, paced.
    t = max(int(due), acts[2][1]) + 700
    for _ in range(12):
        rid = psql("SELECT coalesce(send_id, 0) FROM pending_replies WHERE parent_send_id = %d"
                   % sid)[0]
        if rid != "0":
            break
        set_clock(iso(t))
        h.actions(rc, "lease for the reply")
        t += 1200
    out = [(m["id"], s) for ans in h.answers for m in ans["mailboxes"] for s in m["sends"]
           if str(s["id"]) == rid]
    check(len(out) == 1, "the reply (send %s) was leased once: %r; pending: %r" % (
        rid, out, psql("SELECT * FROM pending_replies WHERE parent_send_id = %d" % sid)))
    by_id = {b["id"]: b["address"] for b in boxes}
    frm, s = out[0]
    check(frm == rc and s["to"] == by_id[sender] and s["subject"].startswith("Re: ") and
          s["in_reply_to"] == mid and s["references"] == [mid],
          "the reply: from the recipient to the sender, threaded: %r" % s)
    no_orphans()
    ok("test_a_reply_is_leased_with_its_threading")

    # reply_rate 0: read and filed, no answer.
    psql("UPDATE plans SET reply_rate = 0 WHERE id = (SELECT u.plan_id FROM users u JOIN "
         "mailboxes m ON m.user_id = u.id WHERE m.id = %d)" % rc)
    s2 = [x for x in sends if x[0] != sid][0]
    lid = h.lid
    check(report(a, lid, [found(s2[2], s2[3], "INBOX", "inbox", 7, 70)]) == counts(1),
          "an inbox find")
    acts2 = planned(s2[0], NY)
    check([x[0] for x in acts2] == ["mark", "file", "prune"] and
          all(awake(x[2]) for x in acts2[:2]), "read and filed, awake: %r" % acts2)
    check(psql("SELECT count(*) FROM pending_replies WHERE parent_send_id = %d" % s2[0]) == ["0"],
          "reply_rate 0: no reply")
    reset_clock()
    ok("test_reply_rate_zero_schedules_no_reply")


def part_retention():
    """A message filed to the warmup folder is pruned after the plan's retention_days."""
    boxes, a, la, sends = setup_found(**dict(CERTAIN, retention_days=3))
    sid, sender, rc, mid = sends[0]
    t0 = now_s()
    h = Holder(a)
    h.lid = la["inbox_lease"]["lease_id"]
    check(report(a, h.lid, [found(rc, mid, "INBOX", "inbox", 7, 5)]) == counts(1), "find")
    acts = planned(sid, "UTC")
    check([x[0] for x in acts] == ["mark", "file", "prune"] and
          abs(acts[2][1] - (t0 + 3 * 86400)) <= 2, "pruned 3 days after the find: %r" % acts)
    set_clock(iso(acts[1][1]))
    got = h.actions(rc, "mark")
    h.done(rc, got[0], flags=["\\Seen"])
    got = h.actions(rc, "file")
    check(got[0]["kind"] == "file", "file: %r" % got)
    h.done(rc, got[0], folder="kiln", uidvalidity=1, uid=1)
    set_clock(iso(acts[2][1] - 3600))
    check(h.actions(rc, "an hour before the retention") == [], "not pruned before its time")
    set_clock(iso(acts[2][1]))
    got = h.actions(rc, "at the retention")
    check(len(got) == 1 and got[0]["kind"] == "prune" and got[0]["folder"] == "kiln" and
          got[0]["uidvalidity"] == 1 and got[0]["uid"] == 1 and got[0]["target"] is None and
          got[0]["not_before_s"] <= 1, "the prune, UID-exact in the warmup folder: %r" % got)
    h.done(rc, got[0])
    check(h.actions(rc, "pruned") == [], "nothing after the prune")
    check(psql("SELECT string_agg(status::text, ',' ORDER BY id) FROM inbox_actions "
               "WHERE send_id = %d" % sid) == ["done,done,done"], "all three done")
    m = call("GET", "/metrics", token=ADMIN).raw
    check('kiln_actions_total{kind="prune",status="done"} 1' in m,
          "prune metric: %s" % [l for l in m.splitlines() if "prune" in l])
    reset_clock()
    ok("test_filed_messages_are_pruned_after_retention_days")


def part_missing():
    boxes, a, la, sends = setup_found()
    lid = la["inbox_lease"]["lease_id"]
    rcs = sorted({s[2] for s in sends})
    check(report(a, lid, [{"type": "session", "mailbox_id": r, "status": "ok"} for r in rcs])
          == counts(len(rcs)), "sessions ok")
    sid, _, rc, mid = sends[0]
    check(report(a, lid, [found(rc, mid)]) == counts(1), "one send found")
    classes = {i["mailbox_id"]: i["poll_class"] for i in lease(a, "l", max_inboxes=10)["inboxes"]}
    expected = {s[2] for s in sends if s[0] != sid}
    check(all(classes[r] == "high" for r in expected),
          "inboxes expecting mail poll high: %r (expecting %r)" % (classes, expected))
    check(all(c == "low" for r, c in classes.items() if r not in expected),
          "others poll low: %r" % classes)
    # A recipient deleted before the deadline: its mail can no longer be found, and is
    # not judged missing against its senders.
    gone = [r for r in rcs if r != rc]
    check(gone, "a recipient besides the found send's: %r" % rcs)
    gone = gone[0]
    expect(admin("DELETE", "/api/mailboxes/%d" % gone), 204, "delete a recipient")
    # A recipient whose server breaks every visit after the login: its inbox stays ok but
    # failing, and its mail is not judged missing against its senders.
    failing = [r for r in rcs if r not in (rc, gone)]
    check(failing, "a third recipient: %r" % rcs)
    failing = failing[0]
    check(report(a, lid, [{"type": "session", "mailbox_id": failing, "status": "protocol",
                           "detail": "the session broke after the login: BYE"}]) == counts(1),
          "a failing inbox")
    set_clock("2026-03-05T09:00:00Z")
    lease(a, "before the deadline", max_inboxes=10)
    check(psql("SELECT count(*) FROM placements WHERE placement = 'missing'") == ["0"],
          "nothing is missing before the deadline")
    set_clock("2026-03-05T10:30:00Z")
    lease(a, "after the deadline", max_inboxes=10)
    judged = [s for s in sends if s[0] != sid and s[2] not in (gone, failing)]
    n = len(judged)
    check(psql("SELECT count(*) FROM placements WHERE placement = 'missing'") == [str(n)],
          "the %d sends not found are missing" % n)
    check(psql("SELECT count(*) FROM placements WHERE recipient_id = %d" % gone) == ["0"],
          "mail to the deleted recipient is not judged")
    to_failing = [s for s in sends if s[2] == failing]
    check(to_failing and psql("SELECT count(*) FROM placements WHERE recipient_id = %d"
                              % failing) == ["0"],
          "mail to the failing inbox is not judged: %r" % to_failing)
    check(psql("SELECT placement FROM placements WHERE send_id = %d" % sid) == ["inbox"],
          "the found send keeps its placement")
    check(judged, "a send judged missing: %r" % sends)
    late = judged[0]
    lid = lease(a, "l", max_inboxes=10)["inbox_lease"]["lease_id"]
    check(report(a, lid, [found(late[2], late[3], "Junk", "junk", 1, 3)]) == counts(1),
          "a late find is applied")
    check(psql("SELECT placement, folder FROM placements WHERE send_id = %d" % late[0])
          == ["missing|Junk"], "a late find leaves the placement missing, records the folder")
    # The failing inbox mends: its mail found now is placed where the provider put it.
    f = to_failing[0]
    check(report(a, lid, [{"type": "session", "mailbox_id": failing, "status": "ok"},
                          found(f[2], f[3], "Junk", "junk", 1, 9)]) == counts(2),
          "the mended inbox's find is applied")
    check(psql("SELECT placement FROM placements WHERE send_id = %d" % f[0]) == ["junk"],
          "mail to an inbox that was failing is placed when found")
    m = call("GET", "/metrics", token=ADMIN).raw
    check(sum(int(l.rsplit(" ", 1)[1]) for l in m.splitlines()
              if l.startswith("kiln_placement_total") and 'folder="missing"' in l) == n,
          "missing counted once each")
    reset_clock()
    ok("test_sends_not_found_within_the_deadline_become_missing")


def part_missing_unheld():
    """Mail to an inbox no agent holds is not judged missing: nobody could have found it
    (the agents' KILN_AGENT_MAX_INBOXES short of the pool: an inbox given back at a
    heartbeat stays free). Until session 35 it was judged all the same, and such mail
    counted against its senders' health."""
    boxes, a, la, sends = setup_found()
    lid = la["inbox_lease"]["lease_id"]
    rcs = sorted({s[2] for s in sends})
    check(report(a, lid, [{"type": "session", "mailbox_id": r, "status": "ok"} for r in rcs])
          == counts(len(rcs)), "sessions ok")
    unheld = sends[0][2]
    others = [s for s in sends if s[2] != unheld]
    check(others, "sends to more than one recipient: %r" % sends)
    # unheld's inbox was given back and nobody took it; the lease holding the others stays
    # live past the deadline (its agent's heartbeats, not sent here)
    psql("UPDATE inbox_leasing SET lease_id = NULL WHERE mailbox_id = %d" % unheld)
    psql("UPDATE leases SET expires_at = kiln_now() + interval '3 days' WHERE id = '%s'" % lid)
    set_clock("2026-03-05T10:30:00Z")
    # the agent's refresh call (no new inboxes wanted) runs the sweep
    lease(a, "refresh after the deadline", max_inboxes=0, inboxes_held=len(rcs) - 1)
    missing = psql("SELECT recipient_id FROM placements WHERE placement = 'missing'")
    check(sorted(int(r) for r in missing) == sorted(s[2] for s in others),
          "the sends to the held inboxes are missing, none to the unheld one (%d): %r"
          % (unheld, missing))
    reset_clock()
    ok("test_mail_to_an_inbox_no_agent_holds_is_not_judged_missing")


def part_recipients():
    boxes = world(4)
    a = agent("a")
    la = lease(a, "lease")
    check(len(sends_to(la, boxes)) > 0, "with the switch off, inboxes not ok still receive")
    reset_clock()
    ok("test_recipients_switch_off_by_default")


def part_recipients_on():
    boxes = world(4)
    ok_id, failing = boxes[2]["id"], boxes[3]["id"]
    psql("UPDATE mailboxes SET inbox = 'ok' WHERE id = %d" % ok_id)
    # ok but failing (its server breaks every visit after the login): not a recipient
    psql("UPDATE mailboxes SET inbox = 'ok', inbox_error = 'the session broke after the "
         "login: BYE', inbox_error_at = now() WHERE id = %d" % failing)
    a = agent("a")
    la = lease(a, "lease")
    rcs = {s[2] for s in sends_to(la, boxes)}
    check(rcs == {ok_id}, "with KILN_RECIPIENTS_REQUIRE_INBOX=1 only the ok inbox that is "
          "not failing receives: %r (failing: %d)" % (rcs, failing))
    reset_clock()
    ok("test_recipients_require_inbox_switch")


def part_bad_input():
    boxes, a, la, sends = setup_found()
    lid = la["inbox_lease"]["lease_id"]
    sid, sender, rc, mid = sends[0]
    report(a, lid, [found(rc, mid, "Junk", "junk", 3, 8)])
    snap = psql("SELECT (SELECT count(*) FROM inbox_sightings), (SELECT count(*) FROM "
                "inbox_actions WHERE status = 'pending'), (SELECT count(*) FROM inbox_folders), "
                "(SELECT inbox FROM mailboxes WHERE id = %d)" % rc)
    fnd = found(rc, sends[1][3] if sends[1][2] == rc else mid, "INBOX", "inbox", 1, 2)
    act = {"type": "action", "mailbox_id": rc, "action_id": 1, "status": "done"}
    fst = {"type": "folder_state", "mailbox_id": rc, "folder": "INBOX", "role": "inbox",
           "uidvalidity": 1, "last_uid": 3}
    ses = {"type": "session", "mailbox_id": rc, "status": "ok"}
    big = 4294967296
    cases = [("type", None, "missing_field"), ("type", "mail", "invalid_field"),
             ("mailbox_id", 0, "invalid_field"), ("mailbox_id", "1", "invalid_field"),
             ("mailbox_id", None, "missing_field"), ("extra", 1, "unknown_field")]
    per = {
        "found": (fnd, [("message_id", "", "invalid_field"), ("message_id", "<>", "invalid_field"),
                        ("message_id", "x" * 999, "invalid_field"), ("message_id", 5, "invalid_field"),
                        ("message_id", None, "missing_field"),
                        ("folder", "", "invalid_field"), ("folder", "a\nb", "invalid_field"),
                        ("folder", "x" * 1001, "invalid_field"), ("folder", None, "missing_field"),
                        ("role", "spam", "invalid_field"), ("role", None, "missing_field"),
                        ("uidvalidity", 0, "invalid_field"), ("uidvalidity", big, "invalid_field"),
                        ("uid", 0, "invalid_field"), ("uid", -1, "invalid_field"),
                        ("uid", None, "missing_field"), ("flags", "x", "invalid_field"),
                        ("flags", None, "missing_field"), ("flags", ["x"] * 65, "invalid_field"),
                        ("flags", [""], "invalid_field", "flags[0]"), ("flags", [1], "invalid_field", "flags[0]"),
                        ("labels", "x", "invalid_field"), ("labels", ["y" * 257], "invalid_field", "labels[0]"),
                        ("authentication_results", 1, "invalid_field"),
                        ("authentication_results", "x" * 4001, "invalid_field"),
                        ("internal_date", "yesterday", "invalid_field"),
                        ("internal_date", 1, "invalid_field")]),
        "action": (act, [("action_id", 0, "invalid_field"), ("action_id", None, "missing_field"),
                         ("status", "ok", "invalid_field"), ("status", None, "missing_field"),
                         ("folder", "", "invalid_field"), ("uidvalidity", 0, "invalid_field"),
                         ("uid", big, "invalid_field"), ("flags", [True], "invalid_field", "flags[0]"),
                         ("detail", "x" * 1001, "invalid_field"), ("detail", 3, "invalid_field")]),
        "folder_state": (fst, [("folder", "", "invalid_field"), ("folder", None, "missing_field"),
                               ("role", "x", "invalid_field"), ("uidvalidity", 0, "invalid_field"),
                               ("last_uid", -1, "invalid_field"), ("last_uid", big, "invalid_field"),
                               ("last_uid", None, "missing_field")]),
        "session": (ses, [("status", "bye", "invalid_field"), ("status", None, "missing_field"),
                          ("detail", "x" * 1001, "invalid_field"), ("detail", [], "invalid_field")]),
    }
    n = 0
    for kind, (base, own) in per.items():
        for case in cases + own:
            key, val, code = case[:3]
            name = case[3] if len(case) > 3 else key
            e = dict(base)
            if val is None and code == "missing_field":
                e.pop(key, None)
            else:
                e[key] = val
            for pos in (0, 1):
                evs = [ses, e] if pos else [e]
                r = call("POST", "/api/agent/report", {"lease_id": lid, "inbox_events": evs},
                         token=a)
                expect_error(r, 400, code, "inbox_events[%d].%s" % (pos, name),
                             "%s %s=%r" % (kind, key, val))
                n += 1
    for val in ([], "x", [1], [None], {}, [ses] * 10001):
        expect_error(call("POST", "/api/agent/report", {"lease_id": lid, "inbox_events": val},
                          token=a), 400, "invalid_field",
                     "inbox_events[0]" if val in ([1], [None]) else "inbox_events",
                     "inbox_events=%r" % (val if len(val) < 5 else "10001 events"))
        n += 1
    expect_error(call("POST", "/api/agent/report", {"lease_id": lid, "inbox_events": [ses],
                                                    "results": [{"send_id": 1, "status": "sent"}]},
                      token=a), 400, "invalid_field", "inbox_events", "both members")
    expect_error(call("POST", "/api/agent/lease", {"max_inboxes": -1}, token=a), 400,
                 "invalid_field", "max_inboxes", "max_inboxes -1")
    expect_error(call("POST", "/api/agent/lease", {"max_inboxes": "5"}, token=a), 400,
                 "invalid_field", "max_inboxes", "max_inboxes '5'")
    for val in (-1, 1000001, "3", 1.5):
        expect_error(call("POST", "/api/agent/lease", {"inboxes_held": val}, token=a), 400,
                     "invalid_field", "inboxes_held", "inboxes_held %r" % (val,))
        n += 1
    other = agent("other")
    expect_error(call("POST", "/api/agent/report", {"lease_id": lid, "inbox_events": [ses]},
                      token=other), 403, "foreign_lease", "lease_id", "another agent's lease")
    n += 5
    after = psql("SELECT (SELECT count(*) FROM inbox_sightings), (SELECT count(*) FROM "
                 "inbox_actions WHERE status = 'pending'), (SELECT count(*) FROM inbox_folders), "
                 "(SELECT inbox FROM mailboxes WHERE id = %d)" % rc)
    check(after == snap, "bad input changed something: %r -> %r" % (snap, after))
    reset_clock()
    ok("test_bad_inbox_input_is_a_400_naming_the_field_and_changes_nothing (%d requests)" % n)


def part_operator():
    """Run with KILN_PROVIDER_MAP=mail.example.test=outlook,d1-0.test=yahoo,
    imap.mail.yahoo.com=other and KILN_INBOX_LEASE_TTL_S=86400 (tests/api/CMakeLists.txt)."""
    boxes, a, la, sends = setup_found()
    il = la["inbox_lease"]
    check(il["ttl_s"] == 86400 and il["heartbeat_s"] == 3600,
          "a day-long inbox lease renews hourly (heartbeat_s at most 3600): %r" % il)
    ok("test_long_inbox_lease_heartbeat_within_the_contract")
    # box0 imap.gmail.com at d1-0.test: the domain's entry wins over the built-in host
    # rule; box1 outlook.office365.com: built-in; box2 imap.mail.yahoo.com: the map's
    # host entry wins; box3 mail.example.test (other by the built-ins): the map.
    want = ["yahoo", "outlook", "other", "outlook"]
    ids = [b["id"] for b in boxes]
    evs, seen = [], set()
    for sid, sender, rc, mid in sends:
        if rc not in seen:
            seen.add(rc)
            evs.append(found(rc, mid, "INBOX", "inbox", 7, 1 + len(evs)))
    check(len(evs) == 4, "sends to every recipient: %r" % sends)
    check(report(a, il["lease_id"], evs) == counts(4), "four finds applied")
    rows = psql("SELECT recipient_id, provider FROM placements ORDER BY 1")
    got = dict((int(r.split("|")[0]), r.split("|")[1]) for r in rows)
    check(got == dict(zip(ids, want)), "providers by the operator's map: %r, want %r"
          % (got, dict(zip(ids, want))))
    reset_clock()
    ok("test_provider_map_classifies_by_imap_host_then_address_domain")


def part_refresh():
    """A refresh carries what is new (LeaseRequest.inbox_cursor): an agent holding N
    inboxes that sends the cursor of the answer it merged gets no IMAP secret, address or
    folder state for the inboxes it holds, only updates (`known`) for those with due
    actions or a changed poll class; a new inbox comes in full; without a cursor (an
    older agent) every held inbox comes in full, as before."""
    n = 8
    boxes = world(n, **CERTAIN)
    a = agent("refresh")
    first = call("POST", "/api/agent/lease", {"max_mailboxes": 50, "max_sends": 200,
                                               "max_inboxes": n}, token=a)
    check(first.status == 200, "first lease: %r" % first)
    fj = first.json
    check(len(fj["inboxes"]) == n and all(i["imap"]["password"] for i in fj["inboxes"]),
          "the first answer has every inbox in full: %r" % fj["inboxes"][:1])
    cursor = fj["inbox_lease"]["cursor"]
    check(isinstance(cursor, int) and cursor > 0, "the answer's cursor: %r" % fj["inbox_lease"])
    lid = fj["inbox_lease"]["lease_id"]
    sends = sends_to(fj, boxes)
    check(len(sends) >= 2, "the lease has sends: %r" % fj["mailboxes"])
    report_sent(a, fj)
    sid, sender, rc, mid = sends[0]
    check(report(a, lid, [found(rc, mid, "Junk", "junk", 3, 8)]) == counts(1), "find in junk")
    first_cls = {i["mailbox_id"]: i["poll_class"] for i in fj["inboxes"]}
    # the poll classes now (inbox_store.c's EXPECTED): the sends just granted moved some
    expect_sql = ("EXISTS (SELECT 1 FROM sends s WHERE s.recipient_id = m.id AND s.scheduled_at "
                  "BETWEEN kiln_now() - interval '2 hours' AND kiln_now() + interval '%s' AND "
                  "s.status IN ('leased', 'sent', 'unknown') AND NOT EXISTS (SELECT 1 FROM "
                  "placements p WHERE p.send_id = s.id))")
    now_cls = dict((int(r.split("|")[0]), r.split("|")[1]) for r in psql(
        "SELECT m.id, CASE WHEN %s THEN 'high' WHEN %s THEN 'medium' ELSE 'low' END "
        "FROM mailboxes m WHERE m.id IN (%s)" % (expect_sql % "1 hour", expect_sql % "6 hours",
                                                 ",".join(str(b["id"]) for b in boxes))))
    high = {m for m in now_cls if now_cls[m] != first_cls[m]}  # a class the agent lacks
    check(high, "some poll class changed since the first answer: %r %r" % (first_cls, now_cls))

    def refresh(cur, what, **kw):
        body = {"max_mailboxes": 50, "max_sends": 200, "max_inboxes": 0, "inboxes_held": n}
        body.update(kw)
        if cur:
            body["inbox_cursor"] = cur
        r = call("POST", "/api/agent/lease", body, token=a)
        check(r.status == 200, "%s: %r" % (what, r))
        return r

    r = refresh(cursor, "refresh with the cursor")
    j = r.json
    try:  # the answer is the contract's shape (LeaseInboxUpdate entries)
        sys.path.insert(0, os.path.join(os.environ.get("KILN_SOURCE_DIR", "."), "tests", "agent"))
        from openapi_schema import Schemas
        errs = Schemas(os.environ.get("KILN_SOURCE_DIR", ".")).errors("Lease", j)
        check(not errs, "the refresh answer against Lease: %r" % errs[:3])
    except ImportError:
        print("# python3-jsonschema missing: the answer's schema not checked")
    check(j["inbox_lease"]["lease_id"] == lid and j["inbox_lease"]["ttl_s"] > 0,
          "the refresh renews the same inbox lease: %r" % j["inbox_lease"])
    check("imap-" not in r.raw and '"imap"' not in r.raw and '"address"' not in r.raw
          and '"folders"' not in r.raw,
          "no secret, access, address or folders of held inboxes on a refresh: %s" % r.raw[:600])
    by_id = {i["mailbox_id"]: i for i in j["inboxes"]}
    check(all(i.get("known") is True for i in j["inboxes"]), "updates only: %r" % j["inboxes"])
    acts = by_id.get(rc, {}).get("actions", [])
    check(len(acts) == 1 and acts[0]["kind"] == "rescue" and acts[0]["uid"] == 8,
          "the held inbox's due action still comes: %r" % by_id.get(rc))
    check(high <= set(by_id) and all(by_id[m]["poll_class"] == now_cls[m] for m in high),
          "poll class changes come: %r, want %r" % (
              {k: v["poll_class"] for k, v in by_id.items()}, {m: now_cls[m] for m in high}))
    check(set(by_id) <= high | {rc}, "nothing else: %r" % sorted(by_id))
    cursor2 = j["inbox_lease"]["cursor"]
    check(cursor2 > cursor, "a new cursor: %r" % j["inbox_lease"])
    r = refresh(cursor2, "second refresh")
    by_id = {i["mailbox_id"]: i for i in r.json["inboxes"]}
    check(set(by_id) == {rc} and len(by_id[rc]["actions"]) == 1,
          "only the inbox with its action still due: %r" % r.json["inboxes"])
    # A lost answer: the agent sends its older cursor, the class changes come again.
    r = refresh(cursor, "refresh with an older cursor")
    check(high <= {i["mailbox_id"] for i in r.json["inboxes"]},
          "changes since the older cursor come again: %r" % r.json["inboxes"])
    # An inbox given to the agent after its cursor comes in full.
    plan_id = int(psql("SELECT u.plan_id FROM users u JOIN mailboxes m ON m.user_id = u.id "
                       "WHERE m.id = %d" % boxes[0]["id"])[0])
    u = make_user("t%d-new" % RUN[0], plan_id)
    nb = make_mailbox(u["id"], "new@dnew-%d.test" % RUN[0], timezone="UTC",
                      window={"start_hour": 0, "end_hour": 24}, warmup_start="2026-03-01",
                      imap={"host": HOSTS[0], "port": 993, "password": "imap-new"})
    r = refresh(cursor2, "refresh with room for one more", max_inboxes=1, inboxes_held=0)
    full = [i for i in r.json["inboxes"] if not i.get("known")]
    check(len(full) == 1 and full[0]["mailbox_id"] == nb["id"] and
          full[0]["imap"]["password"] == "imap-new" and full[0]["address"] == nb["address"],
          "the new inbox in full: %r" % r.json["inboxes"])
    check(r.raw.count("imap-") == 1, "the only secret is the new inbox's")
    # An older agent (no cursor): every held inbox in full, with its secret.
    r = refresh(None, "refresh without a cursor")
    check(len(r.json["inboxes"]) == n + 1 and all(
        i["imap"]["password"].startswith("imap-") for i in r.json["inboxes"]),
        "without a cursor every held inbox in full: %d" % len(r.json["inboxes"]))
    expect_error(call("POST", "/api/agent/lease", {"max_inboxes": 0, "inboxes_held": 1,
                                                   "inbox_cursor": "x"}, token=a),
                 400, field="inbox_cursor", what="a cursor that is not an integer")
    expect_error(call("POST", "/api/agent/lease", {"max_inboxes": 0, "inboxes_held": 1,
                                                   "inbox_cursor": 0}, token=a),
                 400, field="inbox_cursor", what="a cursor below 1")
    reset_clock()
    ok("test_refresh_carries_no_secret_of_held_inboxes_and_their_due_actions")


def statements_logged(text):
    """Statements executed so far whose text names text, from PostgreSQL's log
    (log_min_duration_statement = 0 logs each parse, bind and execute with its text;
    kiln_tz_spans is a SQL function PostgreSQL inlines, so pg_stat_user_functions never
    counts it)."""
    with open(os.path.join(VAR, "log", "postgresql.log"), encoding="utf-8",
              errors="replace") as f:
        return sum(1 for line in f if text in line and " execute " in line)


def part_zones():
    """Four finds in four reports, their recipients in two zones: the
    engagement plans still keep each recipient's quiet hours, and the zones' spans are
    computed once per zone and hour in kiln-api (lease_reply_zone_spans), not in every
    report (kiln_tz_spans ran once per zone per report before: four calls here, 40 ms a
    report for a pool spread over 50 zones)."""
    boxes, a, la, sends = setup_found(**ENGAGED)
    zone = {b["id"]: (NY if i % 2 else "Asia/Tokyo") for i, b in enumerate(boxes)}
    for mb, tz in zone.items():
        psql("UPDATE mailboxes SET timezone = '%s' WHERE id = %d" % (tz, mb))
    lid = la["inbox_lease"]["lease_id"]
    hours = set()
    psql("ALTER SYSTEM SET log_min_duration_statement = 0")
    psql("SELECT pg_reload_conf()")
    try:
        time.sleep(1)
        before = statements_logged("kiln_tz_spans")
        for k, (sid, sender, rc, mid) in enumerate(sends[:4]):
            hours.add(now_s() // 3600)
            check(report(a, lid, [found(rc, mid, "Junk", "junk", 3, 8 + k)]) == counts(1),
                  "find %d" % k)
        hours.add(now_s() // 3600)
        after = statements_logged("kiln_tz_spans")
    finally:
        psql("ALTER SYSTEM RESET log_min_duration_statement")
        psql("SELECT pg_reload_conf()")
    zones = {zone[rc] for _, _, rc, _ in sends[:4]}
    # Once per zone and hour (the real clock may cross an hour between the reports).
    check(after - before <= len(zones) * len(hours), "kiln_tz_spans ran in %d statements for 4 "
          "reports over %d zones in %d clock hours: once per report?"
          % (after - before, len(zones), len(hours)))
    for sid, sender, rc, mid in sends[:4]:
        acts = planned(sid, zone[rc])
        check(acts and all(awake(hm) for _, _, hm, _ in acts[:3]),
              "send %d's actions keep %s's quiet hours: %r" % (sid, zone[rc], acts))
    ok("test_zone_spans_are_computed_once_per_zone_and_hour (%d statements for 4 reports, %d zones)"
       % (after - before, len(zones)))


PARTS = {"handout": part_handout, "expiry": part_expiry, "found": part_found,
         "actions": part_actions, "uidvalidity": part_uidvalidity, "missing": part_missing,
         "missing_unheld": part_missing_unheld, "recipients": part_recipients,
         "recipients_on": part_recipients_on, "bad_input": part_bad_input,
         "engage": part_engage, "retention": part_retention, "operator": part_operator,
         "refresh": part_refresh, "zones": part_zones}
if len(sys.argv) > 1:
    PARTS[sys.argv[1]]()
else:
    for name, f in PARTS.items():
        if name not in ("recipients_on", "operator"):
            f()
