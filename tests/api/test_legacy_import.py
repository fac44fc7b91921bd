"""The legacy log importer normalizes 'SENT'/'sent'/'Sent'/' sent '/'REPLIED' and counts
every one of them; pending rows and unknown mailboxes are skipped; re-running imports
nothing twice."""
import os
import re
import subprocess
import tempfile
from kiln_test import *

plan = make_plan("p", ramp_start=10, ramp_step=0, daily_max=10)
u = make_user("u", plan["id"])
a = make_mailbox(u["id"], "anna@acme.test", timezone="Europe/Berlin")
b = make_mailbox(u["id"], "bob@other.test", timezone="UTC")

rows = """mailbox_email,recipient_email,status,sent_at,message_id
anna@acme.test,bob@other.test,SENT,2026-11-20 09:00:00,<1@acme.test>
anna@acme.test,bob@other.test,sent,2026-11-20 09:05:00,<2@acme.test>
ANNA@acme.test,bob@other.test,Sent,2026-11-20 09:10:00,
anna@acme.test,bob@other.test, sent ,2026-11-20 09:15:00,
anna@acme.test,bob@other.test,REPLIED,2026-11-20 09:20:00,
anna@acme.test,bob@other.test,FAILED,2026-11-20 09:25:00,
anna@acme.test,bob@other.test,pending,2026-11-20 09:30:00,
anna@acme.test,bob@other.test,SENT,2026-11-20 23:30:00+00,<late@acme.test>
ghost@nowhere.test,bob@other.test,SENT,2026-11-20 10:00:00,
"""
fd, path = tempfile.mkstemp(suffix=".csv")
with os.fdopen(fd, "w") as f:
    f.write(rows)
os.chmod(path, 0o644)
script = os.path.join(SRC, "sql", "legacy", "import.sql")


def run_import():
    cmd = ["bash", "-c",
           'source "$0/deploy/local/stack.sh"; source "$1/stack.env"; '
           'stack_init "$1" "$2" "$STACK_HTTP_PORT" >/dev/null; stack_psql -v csv="$3" -f "$4"',
           SRC, VAR, os.environ.get("KILN_BUILD_DIR", "build"), path, script]
    p = subprocess.run(cmd, capture_output=True, text=True)
    check(p.returncode == 0, "import failed: %s %s" % (p.stdout, p.stderr))
    return p.stdout


out = run_import()


def outcome(text, label):
    m = re.search(re.escape(label) + r"[^|]*\|\s*(\d+)", text)
    return int(m.group(1)) if m else None


check(outcome(out, "imported as sent") == 6 and outcome(out, "imported as failed") == 1,
      "4 spellings of SENT + REPLIED + the late one are sent, FAILED failed: %s" % out)
check(outcome(out, "mailbox not registered") == 1 and outcome(out, "not a send") == 1,
      "skips reported: %s" % out)
# Berlin is UTC+1: the 23:30 UTC send belongs to Anna's 2026-11-21.
days = dict((r.split("|")[0], r.split("|")[1:]) for r in psql(
    "SELECT day, sent, failed, replied FROM mailbox_days WHERE mailbox_id = %d ORDER BY day" % a["id"]))
check(days.get("2026-11-20") == ["5", "1", "1"], "20th: 4 spellings of sent + replied, 1 failed: %r" % days)
check(days.get("2026-11-21") == ["1", "0", "0"], "late send counted on the local next day: %r" % days)
n = psql("SELECT count(*) FROM sends WHERE mailbox_id = %d AND status = 'sent'" % a["id"])[0]
check(n == "6", "six sent rows in sends, got %s" % n)
ok("test_mixed_case_statuses_are_all_counted")

out = run_import()
check(outcome(out, "imported before") == 7 and outcome(out, "imported as") is None,
      "second run imports nothing: %s" % out)
n = psql("SELECT sum(sent) FROM mailbox_days WHERE mailbox_id = %d" % a["id"])[0]
check(n == "6", "counts unchanged after re-run, got %s" % n)
ok("test_import_is_idempotent")
os.unlink(path)
