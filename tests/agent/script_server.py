#!/usr/bin/python3
"""Scripted SMTP server for kiln-agent failure tests (loopback only).

Answers each command with a fixed reply unless told otherwise: a different reply per
command (--reply MAIL="451 4.3.0 busy"), silence at one phase (--stall RCPT), a
dropped connection in the middle of DATA (--drop-in-data), 4xx for the first N
transactions (--fail-first N), or a pause before the end-of-data reply (--hold-ms).
With --peak-file it keeps the highest number of connections open at once in that
file. Prints READY when it listens."""
import argparse
import asyncio
import sys

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--greeting", default="220 script.test ESMTP")
p.add_argument("--caps", default="PIPELINING,AUTH PLAIN LOGIN")
p.add_argument("--reply", action="append", default=[])
p.add_argument("--stall", default="")
p.add_argument("--drop-in-data", action="store_true")
p.add_argument("--fail-first", type=int, default=0)
p.add_argument("--backlog", type=int, default=100)
p.add_argument("--hold-ms", type=int, default=0)
p.add_argument("--peak-file", default="")
args = p.parse_args()

replies = {"EHLO": None, "HELO": "250 script.test", "MAIL": "250 2.1.0 Ok",
           "RCPT": "250 2.1.5 Ok", "DATA": "354 End data with <CR><LF>.<CR><LF>",
           "DOT": "250 2.0.0 Ok: queued", "RSET": "250 2.0.0 Ok", "QUIT": "221 2.0.0 Bye",
           "AUTH": "235 2.7.0 Authentication successful", "NOOP": "250 Ok"}
for r in args.reply:
    k, v = r.split("=", 1)
    replies[k.upper()] = v
state = {"transactions": 0, "open": 0, "peak": 0}


def opened(delta):
    state["open"] += delta
    if state["open"] > state["peak"]:
        state["peak"] = state["open"]
        if args.peak_file:
            with open(args.peak_file, "w") as f:
                f.write("%d\n" % state["peak"])


async def handle(reader, writer):
    async def say(line):
        writer.write(line.encode() + b"\r\n")
        await writer.drain()

    async def answer(cmd, default=None):
        if args.stall == cmd:
            await asyncio.sleep(3600)
        text = replies.get(cmd) or default
        await say(text)

    opened(1)
    try:
        if args.stall == "GREETING":
            await asyncio.sleep(3600)
        await say(args.greeting)
        if not args.greeting.startswith("220"):
            await reader.readline()
            return
        while True:
            line = await reader.readline()
            if not line:
                return
            word = line.split(b" ", 1)[0].strip().upper().decode(errors="replace")
            word = word.split(":", 1)[0]
            if word == "EHLO":
                if replies["EHLO"]:
                    await answer("EHLO")
                    continue
                if args.stall == "EHLO":
                    await asyncio.sleep(3600)
                caps = [c for c in args.caps.split(",") if c]
                lines = ["script.test"] + caps
                for i, c in enumerate(lines):
                    sep = " " if i == len(lines) - 1 else "-"
                    writer.write(("250" + sep + c + "\r\n").encode())
                await writer.drain()
            elif word in ("MAIL", "RCPT", "RSET", "QUIT", "HELO", "AUTH", "NOOP"):
                if word == "MAIL":
                    state["transactions"] += 1
                    if state["transactions"] <= args.fail_first:
                        await say("451 4.3.0 try again later")
                        continue
                await answer(word)
                if word == "QUIT":
                    return
            elif word == "DATA":
                await answer("DATA")
                if not replies["DATA"].startswith("354"):
                    continue
                first = True
                while True:
                    dl = await reader.readline()
                    if not dl:
                        return
                    if first and args.drop_in_data:
                        return
                    first = False
                    if dl == b".\r\n":
                        break
                if args.hold_ms:
                    await asyncio.sleep(args.hold_ms / 1000)
                await answer("DOT")
            else:
                await say("502 5.5.2 Error: command not recognized")
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        opened(-1)
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", args.port,
                                        backlog=args.backlog)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
