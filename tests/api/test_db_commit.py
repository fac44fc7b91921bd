"""A COMMIT that did not commit is a failure (db_commit, api/db/db.c): against the
stack's PostgreSQL, a transaction whose statement failed unnoticed (PostgreSQL answers
its COMMIT with "ROLLBACK" and PGRES_COMMAND_OK), a retryable failure swallowed the same
way, a deferred constraint, and a connection that dropped mid-transaction (with a
statement after it, which must not run on a new connection on its own); each through
db_commit alone and through a handler's http_tx body (db_commit_client.c)."""
import os
import subprocess

from kiln_test import check, ok


def run_client():
    exe = os.path.join(os.environ.get("KILN_BUILD_DIR", "build"), "tests", "api",
                       "db_commit_client")
    out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, "db_commit_client: exit %d: %s" % (out.returncode, out.stderr))
    res = {}
    for line in out.stdout.splitlines():
        name, rest = line.split(" ", 1)
        res[name] = dict(kv.split("=", 1) for kv in rest.split())
    return res


def main():
    res = run_client()
    h = res["healthy"]
    check(h["commit"] == "1" and h["rows"] == "1", "a healthy transaction commits: %r" % h)
    for name, error in (("swallowed", "bad_data"), ("conflict", "conflict"),
                        ("deferred", "constraint"), ("dropped", "unavailable"),
                        ("dropped_then_more", "unavailable")):
        r = res[name]
        check(r["commit"] == "0", "%s: db_commit must fail, it said committed: %r" % (name, r))
        check(r["error"] == error, "%s: error class %s expected: %r" % (name, error, r))
        check(r["rows"] == "0", "%s: nothing may be written: %r" % (name, r))
    ok("test_commit_of_a_failed_transaction_is_an_error")
    h = res["request_healthy"]
    check(h["status"] == "201" and h["rows"] == "1", "a healthy request answers 201: %r" % h)
    # swallowed 1/0: 400 bad_value; conflict: retried, then 503 busy; deferred FK: 422;
    # dropped connection: 503.
    for name, status in (("swallowed", "400"), ("conflict", "503"), ("deferred", "422"),
                         ("dropped", "503"), ("dropped_then_more", "503")):
        r = res["request_" + name]
        check(r["status"] == status, "request_%s: %s expected, got %r" % (name, status, r))
        check(r["rows"] == "0", "request_%s: nothing may be written: %r" % (name, r))
    # A request that lost every retry to concurrent work says when to come back: the
    # contract's Retry-After on every 503 busy (its retries used to drop the header).
    r = res["request_conflict"]
    check(r["retry_after"] == "1", "request_conflict: 503 busy without Retry-After: %r" % r)
    ok("test_request_whose_commit_rolled_back_reports_failure")


if __name__ == "__main__":
    main()
