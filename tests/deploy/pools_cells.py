"""test_two_cells_route_each_token_to_its_pools_database: runs under tests/lib/with_stack.sh
with KILN_CELLS=2 (docs/scale.md "Past one primary: pools"): two PostgreSQL clusters, a
kiln-api on each (cell 1 serves pool 1, cell 2 pool 2) and one nginx that routes every
request by its token's pool prefix, with no lookup.

Asserted: each cell's admin creates its tenants in its own database (pool 1 / pool 2), so
the ids overlap between cells and only routing tells them apart; each tenant reads and
writes its own cell's rows only, and its tokens work through nginx on every call; sent to
the other cell's kiln-api directly, a token is unknown there (401); an agent registered in
a cell leases only that cell's mailboxes and its recipients are its pool's; a token naming
a pool no cell serves, and garbled or missing tokens, get a JSON 401, never a 5xx."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "leasing"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "api"))
import kiln_test  # noqa: E402
from kiln_test import VAR, call, check, expect, expect_error, ok, stack_bash  # noqa: E402
from leaselib import report, sent, all_sends  # noqa: E402
import fastcgi_client  # noqa: E402

CELLS = (1, 2)
ADMIN = {1: kiln_test.ADMIN, 2: stack_bash("stack_cell 2 && stack_admin_token")[0]}
SOCK = {1: os.path.join(VAR, "run", "api.sock"), 2: os.path.join(VAR, "cell-2", "run", "api.sock")}


def cell_psql(cell, sql):
    return stack_bash('stack_cell "$1" && stack_psql -tA -c "$2"', str(cell), sql)


def as_(cell, method, path, body=None, token=None, status=200, what=""):
    return expect(call(method, path, body, token=token or ADMIN[cell]), status,
                  what or "%s %s in cell %d" % (method, path, cell))


check(ADMIN[1].startswith("kiln_") and ADMIN[2].startswith("kiln2_"),
      "cell 1's admin token is pool 1's (kiln_), cell 2's names pool 2 (kiln2_): %s / %s"
      % (ADMIN[1][:6], ADMIN[2][:6]))
conf = open(os.path.join(VAR, "nginx", "nginx.conf")).read()
check("upstream kiln_api {" in conf and "upstream kiln_api_2 {" in conf
      and "1 kiln_api; 2 kiln_api_2;" in conf, "nginx has one upstream per cell and the pool map")
for cell in CELLS:
    cell_psql(cell, "UPDATE kiln_clock SET offset_s = extract(epoch FROM "
                    "'2026-03-04T00:00:00Z'::timestamptz - now())")

tenants = {}   # cell -> [(user, tenant token)]
agents = {}
for cell in CELLS:
    plan = as_(cell, "POST", "/api/plans", {"name": "cells", "ramp_start": 10, "ramp_step": 0,
                                             "daily_max": 10, "cooldown_min_s": 1,
                                             "cooldown_max_s": 2}, status=201)
    tenants[cell] = []
    for i in range(3):
        u = as_(cell, "POST", "/api/users", {"name": "c%d-t%d" % (cell, i), "plan_id": plan["id"]},
                status=201)
        check(u["pool"] == cell, "a tenant created with cell %d's admin token is in pool %d: %r"
              % (cell, cell, u))
        tok = as_(cell, "POST", "/api/tokens", {"scope": "tenant", "user_id": u["id"]},
                  status=201)["token"]
        check(tok.startswith("kiln_" if cell == 1 else "kiln2_"), "tenant token prefix: %s" % tok[:6])
        tenants[cell].append((u, tok))
    a = as_(cell, "POST", "/api/agents", {"name": "agent-cell-%d" % cell}, status=201)
    check(a["token"].startswith("kiln_" if cell == 1 else "kiln2_"), "agent token prefix")
    agents[cell] = a["token"]
same_ids = [u["id"] for u, _ in tenants[1]] == [u["id"] for u, _ in tenants[2]]
check(same_ids, "both databases number their tenants alike (only routing tells them apart)")
ok("two cells: tenants 1-3 in each, pools 1 and 2, tokens kiln_/kiln2_")

# Each tenant writes and reads through nginx, with its own token, in its own cell only.
for cell in CELLS:
    for u, tok in tenants[cell]:
        for j in range(4):
            as_(cell, "POST", "/api/mailboxes",
                kiln_test.mailbox_body(u["id"], "m%d@c%d-u%d.test" % (j, cell, u["id"]),
                                       timezone="UTC", window={"start_hour": 0, "end_hour": 24},
                                       warmup_start="2026-03-01"), token=tok, status=201)
        me = as_(cell, "GET", "/api/users/%d" % u["id"], token=tok)
        check(me["name"] == u["name"] and me["pool"] == cell,
              "tenant %s reads its own user through nginx: %r" % (u["name"], me))
        mine = as_(cell, "GET", "/api/mailboxes", token=tok)["items"]
        check(len(mine) == 4 and all(m["address"].endswith("@c%d-u%d.test" % (cell, u["id"]))
                                     for m in mine),
              "tenant %s lists its 4 mailboxes, no other cell's: %r"
              % (u["name"], [m["address"] for m in mine]))
for cell in CELLS:
    other = 3 - cell
    rows = cell_psql(cell, "SELECT count(*) FILTER (WHERE address LIKE 'm%%@c%d-%%'), "
                           "count(*) FILTER (WHERE address LIKE 'm%%@c%d-%%'), "
                           "count(DISTINCT pool_id), min(pool_id) FROM mailboxes" % (cell, other))
    check(rows == ["12|0|1|%d" % cell], "cell %d's database holds its 12 mailboxes (pool %d), none "
          "of cell %d's: %s" % (cell, cell, other, rows))
ok("each tenant's calls reach its own cell's database only")

# Sent straight to the other cell's kiln-api, a token is unknown there.
for cell in CELLS:
    other = 3 - cell
    for tok in (ADMIN[cell], tenants[cell][0][1], agents[cell]):
        r = fastcgi_client.request(SOCK[other], "GET", "/api/plans", token=tok)
        check(r.status == 401 and json.loads(r.body)["error"]["code"] == "unauthorized",
              "cell %d's token at cell %d's kiln-api: expected 401, got %r" % (cell, other, r))
        r = fastcgi_client.request(SOCK[cell], "GET", "/api/plans", token=tok)
        check(r.status in (200, 403), "and accepted by its own cell's kiln-api: %r" % r)
ok("a cell's tokens are unknown to the other cell's kiln-api (401)")

# Agents lease only their cell's mailboxes, to recipients of their pool.
for cell in CELLS:
    as_(cell, "POST", "/api/warmup/control", {"action": "trigger"})
for cell in CELLS:
    other = 3 - cell
    n = 0
    for _ in range(6):
        a = as_(cell, "POST", "/api/agent/lease", {"agent": "c", "max_mailboxes": 12,
                                                   "max_sends": 24}, token=agents[cell])
        sends = all_sends(a)
        for m in a["mailboxes"]:
            check(m["address"].endswith(".test") and "@c%d-" % cell in m["address"],
                  "agent of cell %d leased %s" % (cell, m["address"]))
            for s in m["sends"]:
                check("@c%d-" % cell in s["to"], "cell %d's send goes to its pool: %s -> %s"
                      % (cell, m["address"], s["to"]))
        if sends:
            report(agents[cell], a["lease_id"], [sent(s["id"]) for s in sends])
            n += len(sends)
        if n >= 24:
            break
    check(n > 0, "agent of cell %d got sends" % cell)
    db = cell_psql(cell, "SELECT count(*), count(*) FILTER (WHERE status = 'sent') FROM sends")
    check(db == ["%d|%d" % (n, n)], "cell %d's database has exactly its agent's %d sends, all "
          "reported: %s" % (cell, n, db))
    ok("agent of cell %d: %d sends, all from and to cell %d's pool" % (cell, n, cell))

# Tokens naming no served pool, garbled ones, none: a JSON 401 from nginx or kiln-api.
bad = {"unknown pool": "kiln7_" + "A" * 43, "pool 0": "kiln0_" + "A" * 43,
       "leading zero": "kiln02_" + "A" * 43, "huge pool": "kiln12345678901_" + "A" * 43,
       "garbled prefix": "kilnX_" + "A" * 43, "altered prefix": "kiln2" + ADMIN[1][4:],
       "pool moved": "kiln_" + ADMIN[2][6:], "short": "kiln2_", "not kiln": "x" * 48}
for what, tok in bad.items():
    r = call("GET", "/api/plans", token=tok)
    expect_error(r, 401, "unauthorized", None, what)
    check(r.headers.get("Content-Type", "").startswith("application/json"),
          "%s: JSON content type, got %r" % (what, r.headers))
for hdr in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"}):
    r = kiln_test.call("GET", "/api/plans", headers=hdr)
    expect_error(r, 401, "unauthorized", None, "Authorization %r" % hdr)
ok("unknown, garbled or missing tokens: a JSON 401 (%d cases), no 5xx" % (len(bad) + 3))
