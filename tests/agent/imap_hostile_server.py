#!/usr/bin/python3
"""A hostile IMAP server for kiln-agent (tests/agent/imap_hostile.sh): one listening port
per scenario, each a broken or malicious server of its own kind, plus "good" (a plain,
correct server) so the test can tell that the agent carries on with its other inboxes.
Loopback only. Writes {"scenario": [host, port], ...} to --ports and prints READY; per scenario
it appends what clients sent to --log-dir/<scenario>.log and keeps counters in
--log-dir/<scenario>.json ({"conns", "fetches", "tls_hello", ...}).

Messages carry kiln-shaped Message-IDs (tests/agent/dovecot_lib.sh kiln_id): send id
MBID*100+UID, so the test knows which find is which."""
import argparse
import json
import os
import re
import socket
import socketserver
import ssl
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--ports", required=True)
p.add_argument("--log-dir", required=True)
p.add_argument("--scenarios", required=True, help="name=mailbox_id,...")
p.add_argument("--tls-cert", help="certificate and key (PEM) for the scenarios named *_tls")
args = p.parse_args()
TLS = None
if args.tls_cert:
    TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    TLS.load_cert_chain(args.tls_cert)

CAPS = "IMAP4rev1 LITERAL+ UIDPLUS MOVE SPECIAL-USE NAMESPACE"
UID_MAX = 4294967295


def kiln_id(n):
    return "<%d.a%024x@acme.test>" % (n, n)


class Stats:
    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.c = {"conns": 0, "fetches": 0, "tls_hello": 0, "tls_garbage": 0, "commands": 0,
                  "moves": 0}

    def add(self, key, n=1):
        with self.lock:
            self.c[key] = self.c.get(key, 0) + n
            if key not in ("commands", "fetches") or self.c[key] % 100 == 0:
                self.flush()

    def flush(self):
        tmp = os.path.join(args.log_dir, self.name + ".json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.c, f)
        os.replace(tmp, os.path.join(args.log_dir, self.name + ".json"))


def header(msgid, extra=b""):
    return b"Message-ID: " + msgid + b"\r\n" + extra + b"\r\n"


def fetch_line(seq, uid, hdr, flags=b"\\Seen"):
    return (b"* %d FETCH (UID %d FLAGS (%s) INTERNALDATE \"03-Dec-2026 10:00:00 +0000\" "
            b"BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n" % (seq, uid, flags, len(hdr)) + hdr +
            b")\r\n")


class Conn:
    """One client connection of one scenario."""

    def __init__(self, sock, scenario, mbid):
        self.s = sock
        self.f = sock.makefile("rb")
        self.name = scenario
        self.mbid = mbid
        self.st = STATS[scenario]
        self.log = open(os.path.join(args.log_dir, scenario + ".log"), "ab", buffering=0)
        self.selected = None
        # folder: [uidvalidity, uidnext, {uid: header bytes}]
        self.folders = {"INBOX": [7, 3, {1: header(self.mid(1).encode()),
                                         2: header(self.mid(2).encode())}],
                        "Junk": [8, 6, {5: header(self.mid(5).encode())}]}
        self.junk_name = b"Junk"

    def mid(self, uid):
        return kiln_id(self.mbid * 100 + uid)

    def send(self, data):
        self.s.sendall(data)

    def read_line(self):
        """A command line with client literals inlined; None at EOF."""
        out = b""
        while True:
            line = self.f.readline(1 << 20)
            if not line:
                return None
            if not out and line[:1] == b"\x16":
                self.st.add("tls_hello")  # a TLS ClientHello on a plaintext connection
                self.log.write(b"<TLS HANDSHAKE BYTES>\n")
                return None
            out += line
            m = re.search(rb"\{(\d+)(\+?)\}\r?\n$", line)
            if not m:
                break
            n = int(m.group(1))
            if not m.group(2):
                self.send(b"+ go on\r\n")
            out += self.f.read(n)
        self.log.write(out if out.endswith(b"\n") else out + b"\n")
        return out.rstrip(b"\r\n")

    # ---- the protocol (a correct server; scenarios override pieces) ----

    def greet(self):
        self.send(b"* OK [CAPABILITY %s] hostile ready\r\n" % CAPS.encode())

    def run(self):
        self.st.add("conns")
        self.greet()
        while True:
            line = self.read_line()
            if line is None:
                return
            self.st.add("commands")
            parts = line.split(b" ", 2)
            if len(parts) < 2:
                self.send(b"* BAD what\r\n")
                continue
            tag, verb = parts[0], parts[1].upper()
            rest = parts[2] if len(parts) > 2 else b""
            if verb == b"UID":
                sub = rest.split(b" ", 1)
                verb = b"UID " + sub[0].upper()
                rest = sub[1] if len(sub) > 1 else b""
            h = getattr(self, "c_" + verb.decode(errors="replace").replace(" ", "_").lower(), None)
            if h is None:
                self.send(tag + b" OK done\r\n")
            elif h(tag, rest) is False:
                return

    def c_capability(self, tag, rest):
        self.send(b"* CAPABILITY %s\r\n%s OK done\r\n" % (CAPS.encode(), tag))

    def c_login(self, tag, rest):
        self.send(tag + b" OK [CAPABILITY %s] logged in\r\n" % CAPS.encode())

    def c_logout(self, tag, rest):
        self.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
        return False

    def c_namespace(self, tag, rest):
        self.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n' + tag + b" OK done\r\n")

    def list_junk(self):
        return b'* LIST (\\HasNoChildren \\Junk) "/" "' + self.junk_name + b'"\r\n'

    def c_list(self, tag, rest):
        self.send(b'* LIST (\\HasNoChildren) "/" INBOX\r\n' + self.list_junk() + tag +
                  b" OK done\r\n")

    def folder_of(self, rest):
        name = rest.split(b" (")[0].strip()
        if name.startswith(b'"') and name.endswith(b'"'):
            name = name[1:-1]
        m = re.match(rb"^\{\d+\+?\}\r?\n", name)
        if m:
            name = name[m.end():]
        if name.upper() == b"INBOX":
            return "INBOX"
        return "Junk" if name == self.junk_name else None

    def c_status(self, tag, rest):
        fo = self.folder_of(rest)
        if fo is None:
            self.send(tag + b" NO no such folder\r\n")
            return
        v, nxt, _ = self.folders[fo]
        self.send(b'* STATUS "%s" (UIDNEXT %d UIDVALIDITY %d)\r\n%s OK done\r\n' % (
            fo.encode() if fo == "INBOX" else self.junk_name, nxt, v, tag))

    def select_answer(self, fo):
        v, nxt, msgs = self.folders[fo]
        return (b"* %d EXISTS\r\n* OK [UIDVALIDITY %d] v\r\n* OK [UIDNEXT %d] n\r\n" %
                (len(msgs), v, nxt))

    def c_select(self, tag, rest):
        fo = self.folder_of(rest)
        if fo is None:
            self.send(tag + b" NO no such folder\r\n")
            return
        self.selected = fo
        self.send(self.select_answer(fo) + tag + b" OK [READ-WRITE] selected\r\n")

    c_examine = c_select

    def uids_in(self, uidset):
        v, nxt, msgs = self.folders[self.selected]
        top = max(list(msgs) + [0])
        out = []
        for part in uidset.split(b","):
            a, _, b = part.partition(b":")
            lo = top if a == b"*" else int(a)
            hi = lo if not b else (top if b == b"*" else int(b))
            if lo > hi:
                lo, hi = hi, lo
            out += [u for u in sorted(msgs) if lo <= u <= hi]
        return out

    def fetch_answer(self, uids):
        msgs = self.folders[self.selected][2]
        return b"".join(fetch_line(i + 1, u, msgs[u]) for i, u in enumerate(uids))

    def c_uid_fetch(self, tag, rest):
        self.st.add("fetches")
        uidset = rest.split(b" ", 1)[0]
        if self.selected is None:
            self.send(tag + b" BAD nothing selected\r\n")
            return
        self.send(self.fetch_answer(self.uids_in(uidset)) + tag + b" OK done\r\n")

    def c_uid_move(self, tag, rest):
        self.st.add("moves")
        self.send(tag + b" OK moved\r\n")

    def c_idle(self, tag, rest):
        self.send(b"+ idling\r\n")
        line = self.read_line()
        if line is None:
            return False
        self.send(tag + b" OK idle done\r\n")


# ---- the scenarios ----------------------------------------------------------------------

class Good(Conn):
    pass


class UidnextHuge(Conn):
    """INBOX was recreated (a new UIDVALIDITY) and says UIDNEXT 4294967295; it holds one
    message. A client that walks the UID space 500 at a time asks 8.6 million times."""

    def __init__(self, *a):
        super().__init__(*a)
        self.folders["INBOX"] = [9, UID_MAX, {1: header(self.mid(1).encode())}]


class FetchFlood(Conn):
    """Answers the UID FETCH of INBOX with the same message (UID 1) 20,000 times."""

    def fetch_answer(self, uids):
        if self.selected != "INBOX" or 1 not in uids:
            return super().fetch_answer(uids)
        one = fetch_line(1, 1, self.folders["INBOX"][2][1])
        return one * 20000


class LiteralDrop(Conn):
    """Announces a literal of 1000 bytes inside FETCH, sends 10 of them and hangs up."""

    def c_uid_fetch(self, tag, rest):
        self.st.add("fetches")
        self.send(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (MESSAGE-ID)] {1000}\r\nMessage-ID")
        return False


class LiteralHuge(Conn):
    """A literal of 99,999,999,999 bytes inside FETCH (then some bytes, then silence)."""

    def c_uid_fetch(self, tag, rest):
        self.st.add("fetches")
        self.send(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (MESSAGE-ID)] {99999999999}\r\nxx")


class LiteralNegative(Conn):
    def c_uid_fetch(self, tag, rest):
        self.st.add("fetches")
        self.send(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (MESSAGE-ID)] {-5}\r\nabc)\r\n" +
                  tag + b" OK done\r\n")


class WrongTag(Conn):
    def c_uid_fetch(self, tag, rest):
        self.st.add("fetches")
        self.send(b"ZZZ999 OK not yours\r\n")


class ByeFetch(Conn):
    def c_uid_fetch(self, tag, rest):
        self.st.add("fetches")
        msgs = self.folders[self.selected][2]
        u = min(msgs)
        self.send(fetch_line(1, u, msgs[u]) + b"* BYE going down\r\n")
        return False


class Stall(Conn):
    """Answers nothing to the first UID FETCH, ever (the connection stays open)."""

    def c_uid_fetch(self, tag, rest):
        self.st.add("fetches")
        while True:
            time.sleep(1)


class Drip(Conn):
    """The greeting, one byte every 0.3 s, forever."""

    def greet(self):
        while True:
            self.send(b"*")
            time.sleep(0.3)


class UntaggedForever(Conn):
    """After SELECT: untagged lines as fast as the client takes them, never a tagged one."""

    def c_uid_fetch(self, tag, rest):
        self.st.add("fetches")
        blob = b"* OK [ALERT] still here, still here, still here\r\n" * 1000
        while True:
            self.send(blob)


class CopyuidGarbage(Conn):
    """A rescue's UID MOVE answered with COPYUID that says nothing usable: sets of
    different lengths, then another message's UID."""

    def c_uid_move(self, tag, rest):
        self.st.add("moves")
        self.send(b"* OK [COPYUID 9 5,6,7 4294967295] moved\r\n* 1 EXPUNGE\r\n" + tag +
                  b" OK [COPYUID 4294967295 8 12] moved\r\n")


class Uidvalidity0(Conn):
    def __init__(self, *a):
        super().__init__(*a)
        self.folders["INBOX"][0] = 0
        self.folders["Junk"][0] = 0


class UidsWeird(Conn):
    """UIDs out of order, repeated, and past 2^32."""

    def fetch_answer(self, uids):
        if self.selected != "INBOX":
            return super().fetch_answer(uids)
        msgs = self.folders["INBOX"][2]
        out = fetch_line(1, 2, msgs[2]) + fetch_line(2, 1, msgs[1]) + fetch_line(1, 2, msgs[2])
        out += fetch_line(3, 4294967296, header(self.mid(3).encode()))
        out += fetch_line(4, 0, header(self.mid(4).encode()))
        return out


class MsgidHuge(Conn):
    """A message whose Message-ID header is 10 MB (the others are normal)."""

    def __init__(self, *a):
        super().__init__(*a)
        big = b"<" + b"9" * (10 * 1024 * 1024) + b".a@acme.test>"
        self.folders["INBOX"][2][1] = header(big)


class JunkCrlf(Conn):
    """LIST names the \\Junk folder with a literal holding CR LF: a name no IMAP command
    can carry."""

    def list_junk(self):
        return b'* LIST (\\HasNoChildren \\Junk) "/" {6}\r\nJu\r\nnk\r\n'


class NamespaceCrlf(Conn):
    """NAMESPACE gives a personal prefix with CR LF in it (a literal); the agent has a
    message to file into the warmup folder, which it must CREATE under that prefix."""

    def c_namespace(self, tag, rest):
        self.send(b"* NAMESPACE (({8}\r\nIN\r\nBOX. \".\")) NIL NIL\r\n" + tag + b" OK done\r\n")


class Utf7Invalid(Conn):
    """The \\Junk folder's name is not modified UTF-7 and not UTF-8 (a raw 0xFC byte)."""

    def __init__(self, *a):
        super().__init__(*a)
        self.junk_name = b"J\xfcnk&-&Jjo"


CLASSES = {"good": Good, "uidnext_huge": UidnextHuge, "fetch_flood": FetchFlood,
           "literal_drop": LiteralDrop, "literal_huge": LiteralHuge,
           "literal_negative": LiteralNegative, "wrong_tag": WrongTag, "bye_fetch": ByeFetch,
           "stall": Stall, "drip": Drip, "untagged_forever": UntaggedForever,
           "copyuid_garbage": CopyuidGarbage, "uidvalidity0": Uidvalidity0,
           "uids_weird": UidsWeird, "msgid_huge": MsgidHuge, "junk_crlf": JunkCrlf,
           "namespace_crlf": NamespaceCrlf, "utf7_invalid": Utf7Invalid,
           "junk_crlf_tls": JunkCrlf, "good_tls": Good}

STATS = {}


def serve(scenario, mbid, host):
    cls = CLASSES[scenario]

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            sock = self.request
            if scenario.endswith("_tls"):  # implicit TLS (IMAPS)
                try:
                    sock = TLS.wrap_socket(sock, server_side=True)
                except (OSError, ValueError):
                    return
            c = cls(sock, scenario, mbid)
            try:
                c.run()
            except ssl.SSLError as e:
                # TLS records that are not application data inside the session: a
                # client that started a second handshake over the first
                c.st.add("tls_garbage")
                c.log.write(b"<TLS ERROR %s>\n" % str(e).encode())
            except (OSError, ValueError):
                pass  # the client went away
            finally:
                c.st.flush()

    srv = socketserver.ThreadingTCPServer((host, 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return [host, srv.server_address[1]]


# Each scenario on an address of its own (127.0.0.10, .11, ...: all loopback), as the
# agent shapes and breaks per server host: one broken server must not hold back another.
ports = {}
for i, item in enumerate(args.scenarios.split(",")):
    name, mbid = item.split("=")
    STATS[name] = Stats(name)
    STATS[name].flush()
    ports[name] = serve(name, int(mbid), "127.0.0.%d" % (10 + i))
with open(args.ports + ".tmp", "w") as f:
    json.dump(ports, f)
os.replace(args.ports + ".tmp", args.ports)
print("READY", flush=True)
while True:
    time.sleep(3600)
