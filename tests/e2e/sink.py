#!/usr/bin/python3
"""A small SMTP sink for the end-to-end tests (127.0.0.1 only): EHLO with PIPELINING
and AUTH PLAIN/LOGIN, MAIL/RCPT/DATA/RSET/NOOP/QUIT, one line per accepted message
appended to --out ("<auth user> <Message-ID>"). Faults on demand:
  --bad-user U      AUTH as U gets 535 5.7.8 (bad credentials)
  --busy-file F     while F exists, every connection gets "421 4.3.2 busy" and is closed
Prints READY when listening."""
import argparse
import asyncio
import base64
import os

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--out", required=True)
p.add_argument("--bad-user", default="")
p.add_argument("--busy-file", default="")
args = p.parse_args()
out = open(args.out, "a", buffering=1)


def b64(s):
    try:
        return base64.b64decode(s).decode("utf-8", "replace")
    except ValueError:
        return ""


class Session(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = b""
        self.data = None  # list of lines while in DATA
        self.user = "-"
        self.auth_step = None
        if args.busy_file and os.path.exists(args.busy_file):
            self.t.write(b"421 4.3.2 kiln-sink busy, try later\r\n")
            self.t.close()
            return
        self.t.write(b"220 kiln-sink ESMTP\r\n")

    def reply(self, line):
        self.t.write(line.encode() + b"\r\n")

    def data_received(self, chunk):
        self.buf += chunk
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                if len(self.buf) > 1 << 20:
                    self.t.close()
                return
            line, self.buf = self.buf[:i].rstrip(b"\r"), self.buf[i + 1:]
            if self.data is not None:
                self.on_data_line(line)
            else:
                self.on_command(line.decode("utf-8", "replace"))

    def on_data_line(self, line):
        if line == b".":
            mid = "-"
            for h in self.data:
                if not h:
                    break
                if h[:11].lower() == b"message-id:":
                    mid = h[11:].strip().decode("utf-8", "replace")
            out.write("%s %s\n" % (self.user, mid))
            self.data = None
            self.reply("250 2.0.0 Ok: queued")
            return
        self.data.append(line[1:] if line.startswith(b"..") else line)

    def on_command(self, line):
        if self.auth_step == "user":
            self.user = b64(line)
            self.auth_step = "pass"
            self.reply("334 UGFzc3dvcmQ6")
            return
        if self.auth_step == "pass":
            self.auth_step = None
            self.auth_done()
            return
        verb = line[:4].upper()
        if verb in ("EHLO", "HELO"):
            self.reply("250-kiln-sink\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME"
                       if verb == "EHLO" else "250 kiln-sink")
        elif verb == "AUTH":
            parts = line.split()
            mech = parts[1].upper() if len(parts) > 1 else ""
            if mech == "PLAIN" and len(parts) > 2:
                fields = b64(parts[2]).split("\0")
                self.user = fields[1] if len(fields) > 1 else "-"
                self.auth_done()
            elif mech == "LOGIN":
                self.auth_step = "user"
                self.reply("334 VXNlcm5hbWU6")
            else:
                self.reply("504 5.5.4 mechanism not supported")
        elif verb == "MAIL" or verb == "RCPT" or verb == "RSET" or verb == "NOOP":
            self.reply("250 2.1.0 Ok")
        elif verb == "DATA":
            self.data = []
            self.reply("354 End data with <CR><LF>.<CR><LF>")
        elif verb == "QUIT":
            self.reply("221 2.0.0 Bye")
            self.t.close()
        else:
            self.reply("502 5.5.2 command not recognized")

    def auth_done(self):
        if args.bad_user and self.user == args.bad_user:
            self.reply("535 5.7.8 Authentication credentials invalid")
        else:
            self.reply("235 2.7.0 Authentication successful")


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Session, "127.0.0.1", args.port, backlog=1024)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
