"""The whole warmup loop on one machine (issue 14, its first step): kiln-api + nginx +
PostgreSQL (with_stack.sh), the real mail path of deploy/local/mailstack.sh (a Postfix
instance -> LMTP -> Dovecot, whose Sieve filter junks a share of kiln's mail per domain
by the Message-ID's MAC) and one kiln-agent that sends over SMTP and watches the
recipients' inboxes over IMAP (KILN_AGENT_MAX_INBOXES).

12 mailboxes on 3 domains (junk shares 60 %, 40 %, 0 %) send to each other for real;
the test asserts what a user would look at: the mail was delivered (Dovecot's counts
equal the sends counted as sent), the agent found every message (one placement row per
send, inbox or junk, provider `other`, matching the folder Dovecot filed it in), every
inbox's state became ok, the junked mail was rescued (the rescue action rows done, the
messages in INBOX, Junk emptied of them) and marked (the mark rows done, \\Seen set on
the message, read back over IMAP). Needs root (Postfix's master): skips (77) otherwise."""
import imaplib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import Agent, Triggerer, need_mail_stack, admin, check, control, expect, free_port, make_plan, make_user, psql, wait_agent  # noqa: E402
from kiln_test import set_clock  # noqa: E402

SRC = os.environ.get("KILN_SOURCE_DIR", ".")
T0 = time.monotonic()


need_mail_stack()

MAILDIR = tempfile.mkdtemp(prefix="kiln-loop.")
os.chmod(MAILDIR, 0o755)  # Dovecot runs as nobody under root
PORTS = {"KILN_MX_PORT": free_port(), "KILN_IMAP_PORT": free_port(), "KILN_LMTP_PORT": free_port()}
DOMAINS = {"a.test": 60, "b.test": 40, "c.test": 0}
BOXES = ["box%d@%s" % (i, d) for d in DOMAINS for i in range(1, 5)]


def pw(addr):
    return "pw-" + addr.split("@")[0] + "-" + addr.split("@")[1].split(".")[0]


def mail(*cmds):
    """Runs mailstack.sh functions on this test's mail stack (state lives in MAILDIR)."""
    script = ('source "$0/deploy/local/mailstack.sh"; mail_init "$1"; '
              + " ".join("mail_domain %s %d;" % kv for kv in DOMAINS.items()) + "; ".join(cmds))
    env = dict(os.environ, **{k: str(v) for k, v in PORTS.items()})
    return subprocess.run(["bash", "-c", script, SRC, MAILDIR], capture_output=True, text=True,
                          env=env)


def mail_down():
    mail("mail_down")
    shutil.rmtree(MAILDIR, ignore_errors=True)


import atexit  # noqa: E402
atexit.register(mail_down)
r = mail(*["mail_user %s %s" % (a, pw(a)) for a in BOXES], "mail_up")
if r.returncode != 0:
    logs = subprocess.run("tail -20 %s/log/*.log" % MAILDIR, shell=True, capture_output=True,
                          text=True).stdout
    check(False, "the mail stack did not start: %s %s" % (r.stderr[-800:], logs))
print("ok - mail stack up: postfix %(KILN_MX_PORT)d, dovecot imap %(KILN_IMAP_PORT)d" % PORTS)


def imap(addr):
    c = imaplib.IMAP4("127.0.0.1", PORTS["KILN_IMAP_PORT"])
    c.login(addr, pw(addr))
    return c


def holdings():
    """{message_id: (address, folder, flags)} of every message kiln sent, by Dovecot."""
    out = {}
    for addr in BOXES:
        c = imap(addr)
        for folder in ("INBOX", "Junk", "kiln"):
            typ, n = c.select(folder, readonly=True)
            if typ != "OK" or int(n[0]) == 0:
                continue
            typ, data = c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            for item in data or []:
                if not isinstance(item, tuple):
                    continue
                m = re.search(rb"Message-ID:\s*(<[^>]+>)", item[1], re.I)
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                if m:
                    out[m.group(1).decode()] = (addr, folder,
                                                flags.group(1).decode().split() if flags else [])
        c.logout()
    return out


# The control plane: stopped while the inboxes are first watched (an inbox never watched
# reports only what arrives from then on), then started.
control("stop")
# The engagement plan made prompt and certain for a test: every message read, every junked
# one rescued, a dwell of one minute, no quiet hours, no untouched share, no replies.
# Noon on kiln's clock (it runs on from there): a run that straddles UTC midnight would
# start a new day of targets for these 0-24 UTC windows halfway through the checks.
set_clock("2026-06-10T12:00:00Z")
plan = make_plan("loop", ramp_start=3, ramp_step=1, daily_max=10, cooldown_min_s=1,
                 cooldown_max_s=2, user_hourly_cap=100000, user_minute_cap=10000,
                 max_mailboxes=1000, open_rate=1.0, important_rate=0.0, rescue_rate=1.0,
                 untouched_rate=0.0, reply_rate=0.0, dwell_median_min=1, dwell_max_min=1,
                 quiet_start_hour=0, quiet_end_hour=0)
ids = {}
for d in DOMAINS:
    u = make_user("owner-" + d.split(".")[0], plan["id"], "UTC")
    for addr in BOXES:
        if not addr.endswith("@" + d):
            continue
        acc = {"host": "127.0.0.1", "security": "plain", "username": addr, "password": pw(addr),
               "allow_plaintext_auth": True}
        body = {"user_id": u["id"], "address": addr, "display_name": addr.split("@")[0],
                "smtp": dict(acc, port=PORTS["KILN_MX_PORT"]),
                "imap": dict(acc, port=PORTS["KILN_IMAP_PORT"]),
                "timezone": "UTC", "window": {"start_hour": 0, "end_hour": 24},
                "daily_target": 3}
        ids[addr] = expect(admin("POST", "/api/mailboxes", body), 201, "mailbox " + addr)["id"]

# Exactly as many inboxes as there are: the agent reaches its capacity and asks for none
# more (max_inboxes 0), and must still get the actions of the inboxes it holds
# (inboxes_held, every KILN_AGENT_INBOX_REFRESH_S).
agent = Agent("loop", env={"KILN_AGENT_MAX_INBOXES": str(len(BOXES)),
                           "KILN_AGENT_INBOX_REFRESH_S": "2", "KILN_AGENT_IMAP_IDLE": "0",
                           "KILN_AGENT_IMAP_POLL_MAX_MS": "3000",
                           "KILN_AGENT_IMAP_BACKOFF_BASE_MS": "500",
                           "KILN_AGENT_IMAP_BACKOFF_MAX_MS": "5000"})


def state():
    return "\n".join(psql("""SELECT 'sends', status::text, count(*)::text FROM sends GROUP BY 2
        UNION ALL SELECT 'placements', placement::text, count(*)::text FROM placements GROUP BY 2
        UNION ALL SELECT 'actions', kind || ':' || status, count(*)::text FROM inbox_actions
        GROUP BY 2 UNION ALL SELECT 'inbox', inbox::text, count(*)::text FROM mailboxes
        GROUP BY 2"""))


def wait(what, cond, timeout):
    def describe():
        log = open(agent.log).read().splitlines()
        return "state:\n%s\nagent log (not lease lines):\n%s" % (
            state(), "\n".join([l for l in log if "inboxes in the answer" not in l][-40:]))
    wait_agent(agent, what, cond, timeout, describe)


mb_ids = ",".join(str(i) for i in ids.values())
wait("every inbox ok, its INBOX and Junk state reported",
     lambda: psql("SELECT count(*) FROM mailboxes WHERE id IN (%s) AND inbox = 'ok'" % mb_ids)
     == [str(len(BOXES))] and
     psql("SELECT count(DISTINCT mailbox_id) FROM inbox_folders WHERE mailbox_id IN (%s) "
          "AND role IN ('inbox', 'junk')" % mb_ids) == [str(len(BOXES))], 45)
print("ok - every inbox watched and ok (%.0f s)" % (time.monotonic() - T0))

control("start")
trig = Triggerer(every=2.0)


def counts():
    r = psql("""SELECT (SELECT count(*) FROM sends WHERE status = 'sent'),
        (SELECT count(*) FROM placements),
        (SELECT count(*) FROM placements WHERE placement = 'junk'),
        (SELECT count(*) FROM inbox_actions WHERE kind = 'rescue' AND status = 'done'),
        (SELECT count(*) FROM inbox_actions WHERE kind = 'mark' AND status = 'done')""")[0]
    return [int(x) for x in r.split("|")]


def settled():
    sent, placed, junk, rescued, marked = counts()
    # the plan: rescue what is in Junk, then mark every message \Seen (filing to the kiln
    # folder follows 1-10 min later: a message may be in INBOX or already filed)
    return sent >= len(BOXES) * 3 and placed == sent and junk > 0 and rescued == junk and \
        marked == placed


wait("every send placed, every junked one rescued and marked", settled, 200)
trig.stop()
sent, placed, junk, rescued, marked = counts()
print("ok - %d sent, %d placed (%d junk), %d rescued, %d marked (%.0f s)"
      % (sent, placed, junk, rescued, marked, time.monotonic() - T0))

held = holdings()
mids = dict(r.split("|", 1) for r in psql("SELECT id, message_id FROM sends WHERE status = 'sent'"))
check(len(held) == sent and set(held) == set(mids.values()),
      "Dovecot holds %d of kiln's messages for %d sent" % (len(held), sent))
print("ok - every sent message was delivered (Dovecot holds %d)" % len(held))
rows = psql("""SELECT p.send_id, p.placement, p.provider, r.address, p.folder,
    coalesce((SELECT string_agg(a.kind || ':' || a.status, ',' ORDER BY a.id)
              FROM inbox_actions a WHERE a.send_id = p.send_id), '')
    FROM placements p JOIN mailboxes r ON r.id = p.recipient_id""")
junk_left = 0
for row in rows:
    sid, placement, provider, rcpt, folder, acts = row.split("|")
    addr, now_in, flags = held[mids[sid]]
    check(provider == "other", "send %s: provider %s" % (sid, provider))
    check(addr == rcpt, "send %s: found for %s, delivered to %s" % (sid, rcpt, addr))
    if placement == "inbox":
        check(folder == "INBOX" and now_in in ("INBOX", "kiln"),
              "send %s: inbox placement, Dovecot: %s" % (sid, now_in))
        check(acts.startswith("mark:done") and "\\Seen" in flags,
              "send %s: actions %s, flags in Dovecot %s" % (sid, acts, flags))
    else:
        check(placement == "junk" and folder == "Junk", "send %s: placement %s in %s"
              % (sid, placement, folder))
        check(acts.startswith("rescue:done,mark:done"), "send %s: actions %s" % (sid, acts))
        check(now_in in ("INBOX", "kiln") and "\\Seen" in flags,
              "send %s: rescued and marked, but Dovecot has it in %s with %s" % (sid, now_in, flags))
    junk_left += now_in == "Junk"
check(len(rows) == sent, "%d placements for %d sends" % (len(rows), sent))
check(junk_left == 0, "%d junked messages still in Junk" % junk_left)
by_domain = psql("""SELECT split_part(r.address, '@', 2), count(*) FILTER (WHERE p.placement = 'junk')
    FROM placements p JOIN mailboxes r ON r.id = p.recipient_id GROUP BY 1 ORDER BY 1""")
check(not [d for d in by_domain if d.startswith("c.test|") and not d.endswith("|0")],
      "the domain that junks nothing has junk placements: %r" % by_domain)
print("ok - placements match Dovecot (junk by domain %r); every junked message is back in "
      "INBOX with \\Seen" % by_domain)
junk_now = sum(int(mail("mail_count %s Junk" % a).stdout.strip() or 0) for a in BOXES)
check(junk_now == 0, "doveadm counts %d messages in Junk" % junk_now)
print("ok - doveadm: Junk is empty again after %d rescues" % rescued)
# The refreshes carried what was new (inbox_cursor): once the agent held every inbox,
# its answers listed held inboxes only as updates (poll class, due actions: no secret),
# yet every action above came through them.
answers = [tuple(int(x) for x in m) for m in re.findall(
    r"(\d+) inboxes in the answer \((\d+) updates\), \d+ set aside, (\d+) held",
    open(agent.log).read())]
full = [a for a in answers if a[2] == len(BOXES)]
lean = [a for a in full if a[1] == a[0]]
check(len(lean) >= 3 and len(lean) >= len(full) - 2,
      "refreshes of held inboxes as updates only: %d of %d (%r)" % (len(lean), len(full),
                                                                    answers[-10:]))
print("ok - %d of %d answers to an agent holding every inbox carried updates only "
      "(%d inboxes listed in all)" % (len(lean), len(full), sum(a[0] for a in lean)))
check(agent.term() == 0, "the agent's drain failed:\n" + agent.tail())
print("PASS inbox_loop (%.0f s)" % (time.monotonic() - T0))
