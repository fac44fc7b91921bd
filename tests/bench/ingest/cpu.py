#!/usr/bin/python3
"""CPU seconds (user + system, with reaped children) of the process trees under the
given root pids: the server side of a benchmark (PostgreSQL's postmaster, kiln-api,
nginx), whatever the box's load. Uses tests/bench/inbox/bench.py's /proc readers.
  cpu.py PID...   prints the seconds"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "inbox"))
from bench import proc_cpu_s, tree  # noqa: E402  (tests/bench/inbox/bench.py)


def server_cpu_s(roots):
    return proc_cpu_s([p for r in roots for p in tree(r)])


if __name__ == "__main__":
    print("%.2f" % server_cpu_s([int(p) for p in sys.argv[1:]]))
