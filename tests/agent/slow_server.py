#!/usr/bin/python3
"""Slow and stalling SMTP server for kiln-agent deadline tests (loopback only).

One thread per connection, plain blocking sockets, so the pace of every byte is the
server's: a greeting dripped one byte every --drip-s seconds (never ending), a reply
held back (--delay DATA=4 answers DATA's 354 four seconds late), silence at a phase
(--stall MAIL), the message data read at --read-rate bytes/s through a small receive
buffer (so the sender's kernel cannot swallow the message), or not read any more after
--read-stop bytes. Every EHLO, MAIL and message received goes to --log as one line
("EHLO <name>", "MAIL", "MESSAGE <bytes>"). Prints READY when it listens."""
import argparse
import socket
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--greeting", default="220 slow.test ESMTP")
p.add_argument("--drip-s", type=float, default=0.0)
p.add_argument("--caps", default="PIPELINING")
p.add_argument("--delay", action="append", default=[])
p.add_argument("--stall", default="")
p.add_argument("--read-rate", type=int, default=0)
p.add_argument("--read-stop", type=int, default=0)
p.add_argument("--rcvbuf", type=int, default=0)
p.add_argument("--log", default="")
args = p.parse_args()

delays = {}
for d in args.delay:
    k, v = d.split("=", 1)
    delays[k.upper()] = float(v)
log_lock = threading.Lock()


def log(line):
    if not args.log:
        return
    with log_lock, open(args.log, "a") as f:
        f.write(line + "\n")


class Conn:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def say(self, phase, line):
        if args.stall == phase:
            time.sleep(3600)
        if phase in delays:
            time.sleep(delays[phase])
        self.s.sendall(line.encode() + b"\r\n")

    def readline(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def read_data(self):
        """Reads up to the final dot, at the configured pace; returns the size."""
        data = self.buf
        self.buf = b""
        got = len(data)
        chunk = 16384
        start = time.monotonic()
        while not data.endswith(b"\r\n.\r\n") and b"\r\n.\r\n" not in data[-65536:]:
            if args.read_stop and got >= args.read_stop:
                time.sleep(3600)
            if args.read_rate:
                due = start + got / args.read_rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            piece = self.s.recv(chunk)
            if not piece:
                return None
            got += len(piece)
            data = data[-65536:] + piece
        end = data.find(b"\r\n.\r\n")
        self.buf = data[end + 5:]
        return got - len(self.buf)


def handle(sock):
    c = Conn(sock)
    try:
        if args.drip_s:
            text = (args.greeting + " " + "x" * 100000).encode()
            for i in range(len(text)):
                sock.sendall(text[i:i + 1])
                time.sleep(args.drip_s)
            return
        c.say("GREETING", args.greeting)
        while True:
            line = c.readline()
            if line is None:
                return
            word = line.split(b" ", 1)[0].strip().upper().decode(errors="replace")
            word = word.split(":", 1)[0]
            if word == "EHLO":
                log("EHLO " + line.decode(errors="replace").strip()[5:])
                lines = ["slow.test"] + [x for x in args.caps.split(",") if x]
                text = "".join("250%s%s\r\n" % (" " if i == len(lines) - 1 else "-", x)
                               for i, x in enumerate(lines))
                c.say("EHLO", text[:-2])
            elif word == "MAIL":
                log("MAIL")
                c.say("MAIL", "250 2.1.0 Ok")
            elif word == "RCPT":
                c.say("RCPT", "250 2.1.5 Ok")
            elif word == "DATA":
                c.say("DATA", "354 End data with <CR><LF>.<CR><LF>")
                size = c.read_data()
                if size is None:
                    log("TRUNCATED")
                    return
                log("MESSAGE %d" % size)
                c.say("DOT", "250 2.0.0 Ok: queued")
            elif word == "RSET":
                c.say("RSET", "250 2.0.0 Ok")
            elif word == "QUIT":
                c.say("QUIT", "221 2.0.0 Bye")
                return
            else:
                c.say("OTHER", "502 5.5.2 Error: command not recognized")
    except OSError:
        pass
    finally:
        sock.close()


def main():
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.rcvbuf:
        # set before listen: accepted sockets inherit it and the window stays small
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(64)
    print("READY", flush=True)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=handle, args=(s,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
