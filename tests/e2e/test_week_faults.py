"""The compressed week of test_week.py under faults (issue 14), with the same assertions
(tests/e2e/weeklib.py), E2E_WEEK_FAULTS_MAILBOXES (default 120) mailboxes:
  - one mailbox is registered with a wrong IMAP password: it must end `inbox: error`
    while every other inbox is watched and the week goes on (it is never a recipient:
    KILN_RECIPIENTS_REQUIRE_INBOX=1);
  - day 1, evening: once the rescues and moves due are under way, agent 1 is killed with
    SIGKILL and restarted on its spool;
  - day 2, morning: Dovecot is restarted while mail is delivered and found (Postfix
    retries what it could not hand over; SMTP AUTH fails 4xx meanwhile);
  - day 3, morning: the provider p2.test answers every IMAP connection with
    `* BYE [THROTTLED]` for 20 s and cuts the open ones. This one is a mock: a small proxy
    in this test stands between kiln-agent and Dovecot for p2.test's inboxes, because
    Dovecot has no switch to throttle on demand; it relays bytes unchanged otherwise;
  - day 3, morning: the UIDVALIDITY of a mailbox's INBOX and Junk changes (doveadm, as
    when a server rebuilds a folder) while actions on them are pending;
  - day 4, morning: PostgreSQL is down for 20 s while mail is sent and found.
Needs root (Postfix's master): skips (77) otherwise."""
import os
import socket
import threading
import time

from e2elib import psql, stack
from kiln_test import ok
from weeklib import Week, check, elapsed


class ThrottleProxy:
    """A TCP relay to Dovecot that, while throttling, cuts every relayed connection and
    greets new ones with `* BYE [THROTTLED]`."""

    def __init__(self, target_port):
        self.target = target_port
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(512)
        self.port = self.srv.getsockname()[1]
        self.throttling = False
        self.refused = 0
        self.lock = threading.Lock()
        self.open = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            c, _ = self.srv.accept()
            if self.throttling:
                self.refused += 1
                try:
                    c.sendall(b"* BYE [THROTTLED] Too many connections, slow down\r\n")
                finally:
                    c.close()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.open.append((c, up))
            for a, b in ((c, up), (up, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def throttle(self, on):
        self.throttling = on
        if on:
            with self.lock:
                conns, self.open = self.open, []
            for pair in conns:
                for s in pair:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


N = int(os.environ.get("E2E_WEEK_FAULTS_MAILBOXES", "120"))
BAD = "box2@p1.test"
week = Week(N, name="faults", bad_password=BAD)
proxy = ThrottleProxy(week.ports["KILN_IMAP_PORT"])
week.imap_ports = {"p2.test": proxy.port}


def done_actions():
    return int(psql("SELECT count(*) FROM inbox_actions WHERE status = 'done'")[0])


def wait_until(what, cond, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    check(False, "%s: not within %d s" % (what, timeout))


def placed():
    return int(psql("SELECT count(*) FROM placements")[0])


def faults(day, phase):
    if (day, phase) == (1, "evening"):
        a1 = week.agents[0]
        base = done_actions()
        wait_until("actions under way", lambda: done_actions() >= base + 5)
        a1.kill9()
        ok("agent %s killed with SIGKILL with actions under way (%d done of the evening's)"
           % (a1.name, done_actions() - base))
        a1.start()
    elif (day, phase) == (2, "morning"):
        base = placed()
        wait_until("mail found", lambda: placed() >= base + 10)
        week.dovecot_restart()
        ok("Dovecot restarted while mail was delivered and found")
    elif (day, phase) == (3, "morning"):
        base = placed()
        wait_until("mail found", lambda: placed() >= base + 10)
        proxy.throttle(True)
        ok("p2.test answers * BYE [THROTTLED] (mock proxy) for 20 s")
        uidvalidity_change()
        time.sleep(20)
        proxy.throttle(False)
        ok("p2.test accepts IMAP again (%d connections refused meanwhile)" % proxy.refused)
    elif (day, phase) == (4, "morning"):
        base = placed()
        wait_until("mail found", lambda: placed() >= base + 10)
        stack("stack_pg_down")
        time.sleep(20)
        stack("stack_pg_up")
        ok("PostgreSQL was down for 20 s")


def uidvalidity_change():
    """The mailbox with the most pending actions gets new UIDVALIDITYs for INBOX and Junk."""
    # Waited for: the morning's first finds may all be on the other two domains (the
    # caller waits for 10 placements of ~30, a third of them p3.test's on average).
    found = []

    def pending_on_p3():
        found[:] = psql("""SELECT m.address, count(*) FROM inbox_actions a JOIN mailboxes m
            ON m.id = a.mailbox_id WHERE a.status = 'pending' AND a.kind IN ('rescue', 'mark',
            'file') AND m.address LIKE '%%@p3.test' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1""")
        return bool(found)
    wait_until("a p3.test mailbox with pending actions for the UIDVALIDITY change",
               pending_on_p3, 120)
    row = found
    addr, n = row[0].split("|")
    stamp = int(time.time())
    for k, folder in enumerate(("INBOX", "Junk")):
        # as Dovecot's own user, so the files it rewrites stay Dovecot's
        r = week.mail("\"${MAIL_AS_USER[@]}\" doveadm -c \"$MAIL_DC/dovecot.conf\" mailbox "
                      "update -u %s --uid-validity %d %s" % (addr, stamp + k, folder))
        check(r.returncode == 0, "doveadm mailbox update: " + r.stderr[-300:])
    week.uidv_box = addr
    week.uidv_want = {"INBOX": stamp, "Junk": stamp + 1}
    ok("%s: UIDVALIDITY of INBOX and Junk changed with %s actions pending" % (addr, n))


week.run(days=int(os.environ.get("E2E_WEEK_DAYS", "7")), on_day=faults)
week.check_all()
st = psql("SELECT inbox, coalesce(inbox_error, '') FROM mailboxes WHERE address = '%s'" % BAD)
check(st and st[0].startswith("error|"), "%s: inbox %r, expected error" % (BAD, st))
ok("%s (wrong IMAP password) ends inbox: error (%s); no other inbox stalled"
   % (BAD, st[0].split("|", 1)[1][:80]))
folders = psql("""SELECT f.name, f.uidvalidity FROM inbox_folders f JOIN mailboxes m ON
    m.id = f.mailbox_id WHERE m.address = '%s' AND f.name IN ('INBOX', 'Junk')""" % week.uidv_box)
check(dict((r.split("|")[0], int(r.split("|")[1])) for r in folders) == week.uidv_want,
      "%s: the folder state did not follow the new UIDVALIDITY: %r" % (week.uidv_box, folders))
ok("%s: kiln's folder state follows the new UIDVALIDITYs %r" % (week.uidv_box, folders))
check("spool replay" in open(week.agents[0].log).read(),
      "agent 1 did not replay its spool after the SIGKILL")
print("PASS week_faults (%.0f s)" % elapsed())
