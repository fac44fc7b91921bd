"""test_seeded_mailboxes_are_listed_counted_and_leased_with_secrets_that_open: runs under
tests/lib/with_stack.sh. `kiln-api seed` writes 10,000 mailboxes of 100 users with COPY
(progress on stderr); a second run of the same batch is refused with nothing written; a
--dry-run writes nothing. Then, through nginx and the API as a user would check: a seeded
mailbox is listed under its user, its quota row has today's target from the seed plan's
ramp, and a lease hands seeded mailboxes out with their SMTP password opened from the
sealed secret ('pw-' + address)."""
import datetime
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "leasing"))
from leaselib import make_agent, lease  # noqa: E402
from kiln_test import admin, check, expect, psql, ok  # noqa: E402

KILN_API = os.path.join(os.environ.get("KILN_BUILD_DIR", "build"), "api", "kiln-api")


def seed(*args):
    t0 = time.time()
    p = subprocess.run([KILN_API, "seed"] + list(args), capture_output=True, text=True,
                       timeout=120)
    return p.returncode, p.stderr, time.time() - t0


def count(sql):
    return int(psql(sql)[0])


rc, err, took = seed("--count", "10000", "--users", "100")
check(rc == 0, "kiln-api seed --count 10000 --users 100: exit %d, stderr:\n%s" % (rc, err))
check("seed: batch 'seed': 100 users, 10000 mailboxes" in err and
      "seed: wrote 10000 mailboxes of 100 users" in err,
      "seed's progress on stderr names the batch and what it wrote:\n" + err)
check(count("SELECT count(*) FROM mailboxes m JOIN users u ON u.id = m.user_id "
            "JOIN plans p ON p.id = u.plan_id WHERE p.name = 'seed'") == 10000,
      "10,000 mailboxes under the seed plan")
check(count("SELECT count(*) FROM mailbox_leasing") == 10000,
      "every seeded mailbox has its leasing row (the insert trigger ran for COPY)")
ok("seeded 10,000 mailboxes of 100 users in %.1f s" % took)

rc, err, _ = seed("--count", "10000", "--users", "100")
check(rc == 3 and "seeded already" in err and "nothing written" in err,
      "a second run of batch 'seed' must be refused (exit 3, says why): exit %d, %s" % (rc, err))
rc, err, _ = seed("--count", "500", "--name", "dry", "--dry-run")
check(rc == 0 and "dry run, rolled back" in err, "--dry-run: exit %d, %s" % (rc, err))
check(count("SELECT count(*) FROM mailboxes") == 10000 and
      count("SELECT count(*) FROM plans WHERE name = 'dry'") == 0,
      "neither the refused run nor the dry run wrote anything")
rc, err, _ = seed("--count", "10", "--users", "20")
check(rc == 2 and "more than --count" in err, "--users > --count is a usage error: %d %s" % (rc, err))
ok("a second run is refused (exit 3) and a dry run rolls back: still 10,000 mailboxes")

# Listed: user seed-u7's mailboxes include m3@u7.seed.test.
uid = int(psql("SELECT id FROM users WHERE name = 'seed-u7'")[0])
page = expect(admin("GET", "/api/mailboxes?user_id=%d&limit=200" % uid), 200, "list mailboxes")
mine = {m["address"]: m for m in page["items"]}
check(len(mine) == 100 and "m3@u7.seed.test" in mine,
      "GET /api/mailboxes?user_id=%d lists the user's 100 seeded mailboxes, got %d: %r"
      % (uid, len(mine), sorted(mine)[:5]))
mb = mine["m3@u7.seed.test"]
check(mb["smtp"]["host"] == "127.0.0.1" and mb["smtp"]["port"] == 2525 and
      "password" not in mb["smtp"], "the seeded mailbox's SMTP access as seeded: %r" % mb["smtp"])
ok("a seeded mailbox is listed under its user through the API")

# Quota: today's target from the plan's ramp (5 + 2 per day since warmup_start, max 50).
q = expect(admin("GET", "/api/warmup/quota?user_id=%d&limit=200" % uid), 200, "quota")
rows = {r["address"]: r for r in q["page"]["items"]}
row = rows.get("m3@u7.seed.test")
check(row is not None, "the quota list has the seeded mailbox: %r" % list(rows)[:3])
day = datetime.date.fromisoformat(row["local_day"])
start = datetime.date.fromisoformat(mb["warmup_start"])
want = 0 if day < start else min(50, 5 + 2 * (day - start).days)
check(row["target"] == want and want > 0 and row["sent"] == 0 and row["remaining"] == want,
      "quota of a seeded mailbox: expected target %d, sent 0, remaining %d; got %r"
      % (want, want, row))
ok("its quota is computed: target %d on %s (warmup since %s)" % (want, day, start))

# Lease: seeded mailboxes come with their secret opened.
token = make_agent("seed-agent")
a = lease(token, max_mailboxes=20, max_sends=40)
check(a["lease_id"] and a["mailboxes"], "a lease over the seeded pool hands out work: %r" % a)
for m in a["mailboxes"]:
    check(m["address"].endswith(".seed.test"), "a leased mailbox that was not seeded: %r"
          % m["address"])
    check(m["smtp"]["password"] == "pw-" + m["address"],
          "the sealed secret of %s opens to its password: got %r"
          % (m["address"], m["smtp"]["password"] and "(another value)"))
    check(m["smtp"]["allow_plaintext_auth"] is True and m["sends"],
          "seeded mailbox %s: plaintext auth allowed (the sink), with slots" % m["address"])
ok("a lease hands out %d seeded mailboxes, each secret opens to its password"
   % len(a["mailboxes"]))
