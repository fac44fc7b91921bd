#!/usr/bin/python3
"""Runs a command and prints one JSON line: wall seconds, CPU seconds (user + system
of the command and its children) and peak RSS in MiB. Usage: measure.py OUT -- cmd..."""
import json
import resource
import subprocess
import sys
import time

out = sys.argv[1]
cmd = sys.argv[sys.argv.index("--") + 1:]
t0 = time.monotonic()
with open(out, "wb") as f:
    rc = subprocess.call(cmd, stdout=f)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "wall_s": round(wall, 3), "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
                  "rss_mb": round(ru.ru_maxrss / 1024, 1)}))
