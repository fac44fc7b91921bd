#!/usr/bin/python3
"""Where a WAL range went, by relation: pg_waldump's records summed by the relation of
their first block reference (full-page images included), named from pg_class.
  pg_waldump ... | walrel.py NAMES_FILE EVENTS   (NAMES_FILE: lines "relfilenode|relname")
Prints the top relations in WAL bytes per event with their two largest record kinds, and
the share of full-page images."""
import re
import sys

REC = re.compile(r"len \(rec/tot\):\s*(\d+)/\s*(\d+)")
REL = re.compile(r"blkref #0: rel \d+/\d+/(\d+)")


def main():
    names = {}
    for line in open(sys.argv[1]):
        node, _, name = line.strip().partition("|")
        if node:
            names[node] = name
    events = int(sys.argv[2])
    by, kinds, fpw, total = {}, {}, 0, 0
    for line in sys.stdin:
        m = REC.search(line)
        if not m:
            continue
        rmgr = line.split()[1].rstrip(",") if line.startswith("rmgr:") else "?"
        tot = int(m.group(2))
        r = REL.search(line)
        rel = names.get(r.group(1), "rel " + r.group(1)) if r else "(" + rmgr + ")"
        by[rel] = by.get(rel, 0) + tot
        d = line.split("desc: ", 1)[1].split()[0] if "desc: " in line else "?"
        k = kinds.setdefault(rel, {})
        k[rmgr + " " + d] = k.get(rmgr + " " + d, 0) + tot
        total += tot
        if "FPW" in line:
            fpw += tot - int(m.group(1))
    print("WAL per event by relation (bytes; %d total, full-page images %.0f %%):"
          % (total / events, 100.0 * fpw / max(total, 1)))
    for rel, b in sorted(by.items(), key=lambda x: -x[1])[:14]:
        top = sorted(kinds[rel].items(), key=lambda x: -x[1])[:2]
        print("  %-32s %7.0f   %s" % (rel, b / events,
                                     ", ".join("%s %.0f" % (k, v / events) for k, v in top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
