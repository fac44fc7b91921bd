#!/usr/bin/python3
"""Torture suite for kiln-agent's SMTP outcomes (loopback only).

One listener per scenario, each a real SMTP server scripted to misbehave in one way:
wrong reply codes, replies that answer nothing, short pipelined groups, drips, drops
and resets around the final dot, stalls, long EHLO lists, TLS faults. kiln-agent
`send --file` runs every scenario at once with retries on (KILN_AGENT_MAX_ATTEMPTS=3),
and the invariant is checked on every slot:

  * `sent` only when this server answered 2xx to the final dot of that very message
    (found by its Message-ID, with its headers intact);
  * at most one copy of any message at the servers (a copy is a message received up
    to its final dot that the server did not refuse with 4xx/5xx);
  * each scenario's slot ends in the class the scenario expects.

Usage: agent_torture.py KILN_AGENT_BINARY WORKDIR
"""
import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

AGENT, WORK = sys.argv[1], sys.argv[2]
EHLO_FILLER = ["X-FILLER-%02d %s" % (i, "abcdefghijklmnopqrstuvwxyz" * 2) for i in range(60)]

# name: (behaviour, slots, allowed final statuses per slot, mailbox extras)
#   behaviour keys: greeting (list of lines, one write), greeting_late (line sent 50 ms
#   after the greeting), drip_greeting_s, caps, ehlo (single-line reply instead of the
#   list), ehlo_extra (lines written with the EHLO reply), ehlo_extra_late, reply
#   {CMD: line}, dot (ok | drop | reset | stall | garbage | r354 | extra | drip |
#   drop_before | 451first), require_auth, rcpt_refuse (local part prefix refused 550),
#   short_pipeline, starttls_garbage, tls_server (implicit TLS with an untrusted cert)
SCENARIOS = {
    "greeting_250": ({"greeting": ["250 ready"]}, 1, [{"sent"}], {}),
    "greeting_twice_one_read": ({"greeting": ["220 a", "220 b"]}, 1, [{"deferred"}], {}),
    "greeting_twice_late": ({"greeting_late": "220 again"}, 1, [{"deferred"}], {}),
    "ehlo_252": ({"ehlo": "252 hi"}, 1, [{"sent"}], {}),
    "mail_251": ({"reply": {"MAIL": "251 ok"}}, 1, [{"sent"}], {}),
    "data_250": ({"reply": {"DATA": "250 no data for you"}}, 1, [{"deferred"}], {}),
    "rset_200": ({"reply": {"RSET": "200 reset"}, "rcpt_refuse": "bad"}, 2,
                 [{"failed"}, {"sent"}], {"rcpts": ["bad0@x.test", "ok1@x.test"]}),
    "rset_refused": ({"reply": {"RSET": "500 no"}, "rcpt_refuse": "bad"}, 3,
                     [{"failed"}, {"sent"}, {"sent"}],
                     {"rcpts": ["bad0@x.test", "ok1@x.test", "ok2@x.test"]}),
    "extra_after_ehlo": ({"ehlo_extra": ["250 extra"]}, 1, [{"deferred"}], {}),
    "extra_after_ehlo_late": ({"ehlo_extra_late": "250 extra"}, 1, [{"deferred"}], {}),
    "extra_after_ehlo_nopipe": ({"ehlo_extra_late": "250 extra", "caps": ["SIZE 1000"]}, 1,
                                [{"deferred"}], {}),
    "rcpt_252_pipelining": ({"reply": {"RCPT": "252 cannot verify"}}, 1, [{"sent"}], {}),
    "short_pipeline": ({"short_pipeline": True}, 1, [{"deferred"}], {}),
    "drop_after_dot": ({"dot": "drop"}, 1, [{"unknown"}], {}),
    "reset_after_dot": ({"dot": "reset"}, 1, [{"unknown"}], {}),
    "stall_after_dot": ({"dot": "stall"}, 1, [{"unknown"}], {}),
    "garbage_after_dot": ({"dot": "garbage"}, 1, [{"unknown"}], {}),
    "r354_after_dot": ({"dot": "r354"}, 1, [{"unknown"}], {}),
    "drip_after_dot": ({"dot": "drip"}, 1, [{"unknown"}], {}),
    "drop_before_dot": ({"dot": "drop_before"}, 1, [{"deferred", "unknown"}], {}),
    "dot_451_then_ok": ({"dot": "451first"}, 1, [{"sent"}], {}),
    # 250 after the first 200 kB of an 8 MB message, then no more reading: the final dot
    # never reached the server, so the 250 answers nothing the agent sent (was `sent`)
    "early_250_big": ({"dot": "early250"}, 1, [{"unknown", "deferred"}],
                      {"body_bytes": 8 * 1024 * 1024}),
    # the dot is read but never answered; the pipelined QUIT gets 221: not the dot's 250
    "dot_unanswered_quit_221": ({"dot": "quit221"}, 1, [{"unknown"}], {}),
    "extra_after_dot": ({"dot": "extra", "caps": ["SIZE 1000"]}, 2, [{"sent"}, {"sent"}], {}),
    "drip_greeting": ({"drip_greeting_s": 0.3}, 1, [{"deferred"}], {}),
    "long_ehlo_auth_last": ({"caps": EHLO_FILLER + ["PIPELINING", "AUTH PLAIN LOGIN"],
                             "require_auth": True}, 1, [{"sent"}],
                            {"auth": True, "allow_plaintext_auth": True}),
    "auth_in_clear_refused": ({"caps": ["PIPELINING", "AUTH PLAIN LOGIN"], "require_auth": True},
                              1, [{"auth"}], {"auth": True}),
    "starttls_then_garbage": ({"caps": ["STARTTLS"], "starttls_garbage": True}, 1,
                              [{"tls", "deferred"}], {"security": "starttls"}),
    "starttls_missing": ({"caps": ["PIPELINING"]}, 1, [{"tls"}], {"security": "starttls"}),
    "implicit_tls_to_plain_server": ({}, 1, [{"tls", "deferred"}], {"security": "tls"}),
    "tls_untrusted_cert": ({"tls_server": True}, 1, [{"tls"}], {"security": "tls"}),
}

events = []  # (scenario, message_id, held, acked, headers_ok, auth_seen)
lock = threading.Lock()
conns = {}


def record(**kw):
    with lock:
        events.append(kw)


class Conn:
    def __init__(self, name, beh, reader, writer):
        self.name, self.beh, self.r, self.w = name, beh, reader, writer
        self.authed = False

    async def say(self, *lines):
        self.w.write(b"".join(l.encode() + b"\r\n" for l in lines))
        await self.w.drain()

    async def later(self, line, delay=0.05):
        await asyncio.sleep(delay)
        await self.say(line)

    def reset(self):
        sock = self.w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.w.transport.abort()

    async def read_data(self, first_only=False):
        """Reads a DATA payload up to the final dot; returns its lines (None on EOF)."""
        lines = []
        while True:
            dl = await self.r.readline()
            if not dl:
                return None
            if first_only:
                return lines
            if dl == b".\r\n":
                return lines
            lines.append(dl)

    async def run(self):
        b = self.beh
        n = conns[self.name] = conns.get(self.name, 0) + 1
        if b.get("drip_greeting_s"):
            for ch in "220 drip.test ESMTP\r\n":
                self.w.write(ch.encode())
                await self.w.drain()
                await asyncio.sleep(b["drip_greeting_s"])
        else:
            await self.say(*(b.get("greeting") or ["220 torture.test ESMTP"]))
        if b.get("greeting_late"):
            # a second greeting in the next read, before anything else is answered
            await self.later(b["greeting_late"])
        rcpt_ok = False
        while True:
            line = await self.r.readline()
            if not line:
                return
            word = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper().decode(errors="replace")
            rep = b.get("reply", {})
            if word in ("EHLO", "HELO"):
                if b.get("ehlo") and word == "EHLO":
                    await self.say(b["ehlo"])
                    continue
                caps = b.get("caps", ["PIPELINING", "8BITMIME"])
                lines = ["torture.test"] + caps
                out = ["250%s%s" % (" " if i == len(lines) - 1 else "-", c)
                       for i, c in enumerate(lines)]
                await self.say(*(out + b.get("ehlo_extra", [])))
                if b.get("ehlo_extra_late"):
                    await self.later(b["ehlo_extra_late"])
            elif word == "STARTTLS":
                await self.say("220 go ahead")
                if b.get("starttls_garbage"):
                    await self.say("this is not a TLS server hello")
                    await asyncio.sleep(0.2)
                return
            elif word == "AUTH":
                record(scenario=self.name, event="auth_seen")
                self.authed = True
                await self.say("235 2.7.0 ok")
            elif word == "MAIL":
                rcpt_ok = False
                if b.get("require_auth") and not self.authed:
                    await self.say("530 5.7.0 authentication required")
                    continue
                if b.get("short_pipeline"):
                    # answer MAIL+RCPT+DATA with two replies, then wait for data
                    await self.r.readline()
                    await self.r.readline()
                    await self.say("250 ok", "354 go")
                    lines = await self.read_data()
                    if lines is not None:
                        record(scenario=self.name, event="message", mid=mid_of(lines),
                               held=True, acked=False, headers_ok=headers_ok(lines))
                    await asyncio.sleep(5)
                    return
                await self.say(rep.get("MAIL", "250 2.1.0 ok"))
            elif word == "RCPT":
                to = line.split(b"<", 1)[-1].split(b">", 1)[0].decode(errors="replace")
                if b.get("rcpt_refuse") and to.startswith(b["rcpt_refuse"]):
                    await self.say("550 5.1.1 no such user")
                else:
                    rcpt_ok = True
                    await self.say(rep.get("RCPT", "250 2.1.5 ok"))
            elif word == "RSET":
                await self.say(rep.get("RSET", "250 2.0.0 ok"))
            elif word == "QUIT":
                await self.say("221 bye")
                return
            elif word == "DATA":
                r = rep.get("DATA", "354 go on")
                await self.say(r)
                if not r.startswith("354"):
                    continue
                dot = b.get("dot", "ok")
                if dot == "early250":
                    got, head = 0, []
                    while got < 200000:
                        dl = await self.r.readline()
                        if not dl or dl == b".\r\n":
                            break
                        got += len(dl)
                        if len(head) < 50:
                            head.append(dl)
                    record(scenario=self.name, event="message", mid=mid_of(head), held=False,
                           acked=False, headers_ok=True)
                    await self.say("250 2.0.0 queued (without the end of the message)")
                    await asyncio.sleep(10)
                    return
                lines = await self.read_data(first_only=dot == "drop_before")
                if lines is None or dot == "drop_before":
                    return
                mid = mid_of(lines)
                ok = headers_ok(lines) and rcpt_ok
                if dot == "451first" and n == 1:
                    record(scenario=self.name, event="message", mid=mid, held=False, acked=False,
                           headers_ok=ok)
                    await self.say("451 4.3.0 try later")
                    continue
                held = bool(lines) and rcpt_ok  # a lone dot makes no message
                acked = dot in ("ok", "extra", "451first", "drip")  # not quit221
                record(scenario=self.name, event="message", mid=mid, held=held, acked=acked,
                       headers_ok=ok)
                if dot in ("ok", "451first"):
                    await self.say("250 2.0.0 queued")
                elif dot == "extra":
                    await self.say("250 2.0.0 queued", "250 and another thing")
                elif dot == "drop":
                    return
                elif dot == "reset":
                    self.reset()
                    return
                elif dot == "stall":
                    await asyncio.sleep(30)
                    return
                elif dot == "garbage":
                    await self.say("hello there")
                elif dot == "quit221":
                    if (await self.r.readline()).strip().upper() == b"QUIT":
                        await self.say("221 bye")
                    return
                elif dot == "r354":
                    await self.say("354 again")
                elif dot == "drip":
                    for ch in "250 2.0.0 queued\r\n":
                        self.w.write(ch.encode())
                        await self.w.drain()
                        await asyncio.sleep(0.3)
            else:
                await self.say("502 5.5.2 unknown command")


def mid_of(lines):
    for l in lines:
        if l.lower().startswith(b"message-id:"):
            return l.split(b":", 1)[1].strip().decode(errors="replace")
    return None


def headers_ok(lines):
    text = b"".join(lines)
    return (b"\r\n\r\n" in text and mid_of(lines) is not None and
            text.lower().startswith(b"date:") and b"\nFrom:" in text)


def make_handler(name, beh):
    async def handle(reader, writer):
        try:
            await Conn(name, beh, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass
    return handle


def serve(ports, ready):
    async def main():
        servers = []
        for name, (beh, _, _, _) in SCENARIOS.items():
            ctx = None
            if beh.get("tls_server"):
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(os.path.join(WORK, "self.pem"), os.path.join(WORK, "self.key"))
            srv = await asyncio.start_server(make_handler(name, beh), "127.0.0.1", 0, ssl=ctx)
            ports[name] = srv.sockets[0].getsockname()[1]
            servers.append(srv)
        ready.set()
        await asyncio.sleep(3600)
    asyncio.run(main())


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", os.path.join(WORK, "self.key"),
                    "-out", os.path.join(WORK, "self.pem")], check=True, capture_output=True)
    ports, ready = {}, threading.Event()
    threading.Thread(target=serve, args=(ports, ready), daemon=True).start()
    if not ready.wait(10):
        fail("torture servers did not start")

    mbs, expect = [], {}
    for i, (name, (beh, nslots, want, extra)) in enumerate(SCENARIOS.items()):
        mbid = i + 1
        rcpts = extra.get("rcpts") or ["r%d@x.test" % k for k in range(nslots)]
        sends = []
        for k in range(nslots):
            sid = mbid * 100 + k
            mid = "<t%d@acme.test>" % sid
            body = "torture %d\n" % sid
            if extra.get("body_bytes"):
                body += ("x" * 76 + "\n") * (extra["body_bytes"] // 77)
            sends.append({"id": sid, "not_before_s": 0, "to": rcpts[k], "subject": "T %d" % sid,
                          "body": body, "message_id": mid})
            expect[sid] = (name, want[k], mid)
        smtp = {"host": "127.0.0.1", "port": ports[name], "security": extra.get("security", "plain"),
                "username": "u%d" % mbid if extra.get("auth") else None,
                "password": "pw" if extra.get("auth") else None, "oauth_token": None,
                "ca_file": None}
        if extra.get("allow_plaintext_auth"):
            smtp["allow_plaintext_auth"] = True
        mbs.append({"id": mbid, "address": "s%d@acme.test" % mbid, "display_name": "S",
                    "smtp": smtp, "sends": sends})
    with open(os.path.join(WORK, "torture.json"), "w") as f:
        json.dump({"lease_id": "torture", "ttl_s": 60, "mailboxes": mbs}, f)

    env = dict(os.environ, KILN_AGENT_MAX_ATTEMPTS="3", KILN_AGENT_BACKOFF_BASE_MS="100",
               KILN_AGENT_BACKOFF_MAX_MS="200", KILN_AGENT_TIMEOUT_GREETING_MS="1500",
               KILN_AGENT_TIMEOUT_COMMAND_MS="1500", KILN_AGENT_TIMEOUT_DATA_INIT_MS="1500",
               KILN_AGENT_TIMEOUT_DATA_END_MS="1500", KILN_AGENT_TIMEOUT_TLS_MS="1500",
               KILN_AGENT_TIMEOUT_QUIT_MS="500")
    t0 = time.monotonic()
    p = subprocess.run([AGENT, "send", "--file", os.path.join(WORK, "torture.json")], env=env,
                       capture_output=True, timeout=120)
    took = time.monotonic() - t0
    if p.returncode != 0:
        fail("kiln-agent exited %d: %s" % (p.returncode, p.stderr.decode(errors="replace")[-2000:]))
    results = {}
    for line in p.stdout.decode().splitlines():
        r = json.loads(line)
        if r["send_id"] in results:
            fail("two results for send %d" % r["send_id"])
        results[r["send_id"]] = r
    time.sleep(0.3)  # the servers log what they saw of the last sessions
    with lock:
        evs = list(events)

    problems = []
    by_mid = {}
    for e in evs:
        if e["event"] == "message" and e.get("mid"):
            by_mid.setdefault(e["mid"], []).append(e)
    for sid, (name, want, mid) in sorted(expect.items()):
        r = results.get(sid)
        if r is None:
            problems.append("%s: no result for send %d" % (name, sid))
            continue
        seen = by_mid.get(mid, [])
        copies = [e for e in seen if e["held"]]
        if len(copies) > 1:
            problems.append("%s: %d copies of %s at the server" % (name, len(copies), mid))
        if r["status"] == "sent" and not any(e["acked"] and e["headers_ok"] for e in seen):
            problems.append("%s: send %d reported sent, but the server never answered 2xx to "
                            "the final dot of %s (%s)" % (name, sid, mid, r))
        if r["status"] not in want:
            problems.append("%s: send %d expected %s, got %s (%s)" %
                            (name, sid, "/".join(sorted(want)), r["status"], r.get("detail")))
    auth_seen = {e["scenario"] for e in evs if e["event"] == "auth_seen"}
    if "auth_in_clear_refused" in auth_seen:
        problems.append("auth_in_clear_refused: the agent sent credentials without TLS")
    for line in problems:
        print("FAIL: " + line, file=sys.stderr)
    if problems:
        sys.exit(1)
    print("PASS agent_torture: %d scenarios, %d slots, invariant held, %.1f s" %
          (len(SCENARIOS), len(expect), took))


main()
