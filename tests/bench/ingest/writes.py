#!/usr/bin/python3
"""What each side of tests/bench/ingest/run.sh wrote, per event: rows inserted, updated
and deleted per table (pg_stat_user_tables deltas), the HOT share of the updates, index
entries (each insert and non-HOT update adds one per index; partial indexes counted as
full, an upper bound) and WAL bytes (pg_current_wal_lsn delta, checkpoint before each
side, so full-page images are in).
  writes.py KILN_BEFORE KILN_AFTER KILN_EVENTS PEER_BEFORE PEER_AFTER PEER_EVENTS
Each snapshot: lines "table ins upd del hot nindexes", then the WAL position."""
import sys


def load(path):
    tables, wal = {}, 0
    for line in open(path):
        f = line.split()
        if len(f) == 6:
            tables[f[0]] = [int(x) for x in f[1:]]
        elif len(f) == 1:
            wal = int(f[0])
    return tables, wal


def delta(before, after, events):
    (t0, w0), (t1, w1) = load(before), load(after)
    out = {}
    for name, v in t1.items():
        u = t0.get(name, [0, 0, 0, 0, v[4]])
        ins, upd, dele, hot = (v[k] - u[k] for k in range(4))
        if ins + upd + dele:
            out[name] = (ins / events, upd / events, dele / events, hot / events,
                         (ins + upd - hot) * v[4] / events)
    return out, (w1 - w0) / events


def main():
    k, kw = delta(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    p, pw = delta(sys.argv[4], sys.argv[5], int(sys.argv[6]))
    fmt = "  %-22s %6s %6s %6s %6s %6s | %6s %6s %6s %6s %6s"
    print(fmt % ("table", "ins", "upd", "del", "hot", "idx+", "ins", "upd", "del", "hot", "idx+"))
    tot = [[0.0] * 5, [0.0] * 5]
    for name in sorted(set(k) | set(p)):
        a, b = k.get(name, (0,) * 5), p.get(name, (0,) * 5)
        for i in range(5):
            tot[0][i] += a[i]
            tot[1][i] += b[i]
        print(fmt % ((name,) + tuple("%.2f" % x for x in a + b)))
    print(fmt % (("all",) + tuple("%.2f" % x for x in tot[0] + tot[1])))
    rows = lambda t: t[0] + t[1] + t[2]
    print("  per event: kiln %.2f rows + %.2f index entries, %.0f WAL bytes; "
          "peer %.2f rows + %.2f index entries, %.0f WAL bytes"
          % (rows(tot[0]), tot[0][4], kw, rows(tot[1]), tot[1][4], pw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
