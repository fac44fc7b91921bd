#!/usr/bin/python3
"""Load generator of tests/bench/ingest/run.sh: agents reporting found events through
nginx, each agent on its own keep-alive connection, reports of BATCH events sent one
after another (as kiln-agent does), all agents at once.

Every event is a find of a send kiln made (its Message-ID minted here the way kiln-api
mints it: HMAC-SHA256 under the message key HKDF-derived from the server's secret key
file, see api/lease/msgid.h), in the recipient's inbox, so each one is verified,
recorded and counted. The request bodies are built before the clock starts.
  driver.py URL SECRET_KEY_FILE SENDS_FILE AGENTS_FILE BATCH
  driver.py mint SECRET_KEY_FILE < ids > "id|message_id" lines (sends.message_id, as
  the lease answer stores it: replies thread on it)
SENDS_FILE: lines "send_id|recipient_id"; AGENTS_FILE: lines "k|token|lease_id" (the
agent with number k holds the inboxes with id % K = k). Prints one line:
  events seconds events_per_s reports p50_ms p99_ms applied duplicates ignored"""
import hashlib
import hmac
import http.client
import json
import sys
import threading
import time
import urllib.parse

DOMAIN = "bench.test"
KEY_ID = "1"  # KILN_MESSAGE_KEY_ID's default


def message_key(path):
    """HKDF-SHA256 (RFC 5869) of the secret key file's key, as api/lease/msgid.c."""
    raw = open(path, "rb").read()
    text = b"".join(raw.split())
    ikm = bytes.fromhex(text.decode()) if len(text) == 64 else raw
    prk = hmac.new(b"kiln/message-id", ikm, hashlib.sha256).digest()
    return hmac.new(prk, b"kiln/message-id/v1/" + KEY_ID.encode() + b"\x01", hashlib.sha256).digest()


def message_id(key, send_id):
    mac = hmac.new(key, b"%d@%s" % (send_id, DOMAIN.encode()), hashlib.sha256).hexdigest()[:24]
    return "<%d.%s%s@%s>" % (send_id, KEY_ID, mac, DOMAIN)


def role_of(send_id):
    """The same split as peer.sql: 15 % junk, 5 % another folder, the rest inbox."""
    r = send_id % 20
    return ("junk", "Junk") if r < 3 else ("other", "Archive") if r == 3 else ("inbox", "INBOX")


def uid_of(send_id):
    """A UID from the send id (ids carry their day above bit 36, 020): the same in peer.sql."""
    return send_id % 4294967295 + 1


def event(key, send_id, mailbox_id):
    role, folder = role_of(send_id)
    return {"type": "found", "mailbox_id": mailbox_id, "message_id": message_id(key, send_id),
            "folder": folder, "role": role, "uidvalidity": 1, "uid": uid_of(send_id),
            "flags": ["\\Seen"] if send_id % 3 == 0 else [],
            "authentication_results": "mx.example.test; spf=pass smtp.mailfrom=%s; "
                                      "dkim=pass header.d=%s; dmarc=pass" % (DOMAIN, DOMAIN)}


def mint(keyfile):
    key = message_key(keyfile)
    out = sys.stdout
    for line in sys.stdin:
        sid = int(line)
        out.write("%d|%s\n" % (sid, message_id(key, sid)))
    return 0


def main():
    if sys.argv[1] == "mint":
        return mint(sys.argv[2])
    url, keyfile, sends_file, agents_file, batch = sys.argv[1:6]
    batch = int(batch)
    key = message_key(keyfile)
    agents = {}
    for line in open(agents_file):
        k, token, lease = line.strip().split("|")
        agents[int(k)] = (token, lease)
    per = {k: [] for k in agents}
    for line in open(sends_file):
        sid, rc = map(int, line.strip().split("|"))
        per[rc % len(agents)].append(event(key, sid, rc))
    work = {}
    for k, evs in per.items():
        token, lease = agents[k]
        work[k] = [json.dumps({"lease_id": lease, "inbox_events": evs[i:i + batch]}).encode()
                   for i in range(0, len(evs), batch)]
    u = urllib.parse.urlparse(url)
    lat, totals, errors = [], [0, 0, 0], []
    lock = threading.Lock()
    start = threading.Barrier(len(agents) + 1)

    def run(k):
        token = agents[k][0]
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        mine, sums = [], [0, 0, 0]
        start.wait()
        for body in work[k]:
            t0 = time.perf_counter()
            conn.request("POST", "/api/agent/report", body, hdr)
            resp = conn.getresponse()
            data = resp.read()
            mine.append(time.perf_counter() - t0)
            if resp.status != 200:
                errors.append("%d %s" % (resp.status, data[:200]))
                continue
            c = json.loads(data)["inbox_events"]
            sums[0] += c["applied"]
            sums[1] += c["duplicates"]
            sums[2] += c["ignored"]
        with lock:
            lat.extend(mine)
            for i in range(3):
                totals[i] += sums[i]

    threads = [threading.Thread(target=run, args=(k,)) for k in agents]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    if errors:
        print("errors: %d, first: %s" % (len(errors), errors[0]), file=sys.stderr)
    events = sum(len(v) for v in per.values())
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 if lat else 0
    print("%d %.3f %.0f %d %.1f %.1f %d %d %d" % (events, secs, events / secs, len(lat), q(0.5),
                                               q(0.99), totals[0], totals[1], totals[2]))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
