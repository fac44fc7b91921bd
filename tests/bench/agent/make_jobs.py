#!/usr/bin/python3
"""Benchmark lease file: N mailboxes with one 1 KiB message each (one connection per
message). Usage: make_jobs.py OUT PORT N [starttls CAFILE USER PASS]"""
import json
import sys

out, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tls = sys.argv[4:] and sys.argv[4] == "starttls"
smtp = {"host": "127.0.0.1", "port": port, "security": "plain"}
if tls:
    smtp = {"host": "localhost", "port": port, "security": "starttls", "ca_file": sys.argv[5],
            "username": sys.argv[6], "password": sys.argv[7]}
body = "x" * 1024
mbs = [{"id": i, "address": "m%d@acme.test" % i, "display_name": "M%d" % i, "smtp": smtp,
        "sends": [{"id": i, "not_before_s": 0, "to": "r%d@other.test" % i,
                   "subject": "Warmup %d" % i, "body": body,
                   "message_id": "<k%d@acme.test>" % i}]} for i in range(1, n + 1)]
json.dump({"lease_id": "bench", "ttl_s": 3600, "mailboxes": mbs}, open(out, "w"))
