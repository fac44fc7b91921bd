"""A compressed warmup week (issue 14): E2E_WEEK_MAILBOXES (default 510) mailboxes on
three providers (p1.test junks 15 % of mail as "gmail", p2.test 5 % as "outlook",
p3.test nothing as "yahoo"; one poor sender has half of its mail junked everywhere) and
two agents; the test clock runs seven days (tests/e2e/weeklib.py says how). Asserts:
every send delivered once and placed once where Dovecot filed it, with its provider;
every message where its actions put it at the end (rescued and touched mail in the kiln
folder with the flags asked, untouched mail where it was filed), none twice in a
mailbox, each mailbox's count equal to what was delivered to it; replies within
4.5 sigma of reply_rate and threaded in the delivered copy; every health band the one
the sender's junk share calls for, and the worst sender quarantined. Needs root (Postfix's
master): skips (77) otherwise."""
import os

from weeklib import Week, elapsed

week = Week(int(os.environ.get("E2E_WEEK_MAILBOXES", "510")))
week.run(days=int(os.environ.get("E2E_WEEK_DAYS", "7")))
week.check_all()
print("PASS week (%.0f s)" % elapsed())
