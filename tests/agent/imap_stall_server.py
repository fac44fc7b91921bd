#!/usr/bin/python3
"""A scripted IMAP server for kiln-agent deadline tests (loopback only): it answers what
an inbox visit sends (LOGIN, CAPABILITY, NAMESPACE, LIST, STATUS, SELECT/EXAMINE,
UID FETCH, NOOP, LOGOUT) with one fixed mailbox state (INBOX and Junk, UIDVALIDITY 1,
UIDNEXT 4), unless told to misbehave:
  --drip-s S        the greeting comes one byte every S seconds
  --stall-at CMD    a command CMD (LOGIN, STATUS, ...) is never answered
  --stall-after N   with --stall-at: the first N such commands of a connection are
                    answered, the later ones are not
Each connection's life goes to --log as lines "<conn> <event> <monotonic s>": open,
stall <CMD>, closed. Prints READY when it listens."""
import argparse
import asyncio
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--log", required=True)
p.add_argument("--drip-s", type=float, default=0)
p.add_argument("--stall-at", default="")
p.add_argument("--stall-after", type=int, default=0)
args = p.parse_args()

CAPS = "IMAP4rev1 LITERAL+ IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE"
conns = {"n": 0}
logf = open(args.log, "a", buffering=1)


def note(cid, what):
    logf.write("%d %s %.3f\n" % (cid, what, time.monotonic()))


def answer(tag, cmd, rest):
    if cmd == "LOGIN":
        return "%s OK [CAPABILITY %s] Logged in\r\n" % (tag, CAPS)
    if cmd == "CAPABILITY":
        return "* CAPABILITY %s\r\n%s OK done\r\n" % (CAPS, tag)
    if cmd == "NAMESPACE":
        return '* NAMESPACE (("" "/")) NIL NIL\r\n%s OK done\r\n' % tag
    if cmd == "LIST":
        return ('* LIST (\\HasNoChildren) "/" INBOX\r\n'
                '* LIST (\\HasNoChildren \\Junk) "/" Junk\r\n%s OK done\r\n' % tag)
    if cmd == "STATUS":
        name = rest.split(" ", 1)[0]
        return "* STATUS %s (UIDNEXT 4 UIDVALIDITY 1)\r\n%s OK done\r\n" % (name, tag)
    if cmd in ("SELECT", "EXAMINE"):
        return ("* 3 EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\n* OK [UIDNEXT 4] ok\r\n"
                "%s OK [READ-WRITE] done\r\n" % tag)
    if cmd == "LOGOUT":
        return "* BYE bye\r\n%s OK done\r\n" % tag
    return "%s OK done\r\n" % tag  # UID FETCH (nothing new), NOOP, ...


async def serve(reader, writer):
    conns["n"] += 1
    cid = conns["n"]
    note(cid, "open")
    seen = {}
    stalled = False
    try:
        greeting = "* OK [CAPABILITY %s] stall server ready\r\n" % CAPS
        if args.drip_s > 0:
            for ch in greeting:
                if reader.at_eof():
                    break
                writer.write(ch.encode())
                await writer.drain()
                await asyncio.sleep(args.drip_s)
        else:
            writer.write(greeting.encode())
        while True:
            line = await reader.readline()
            if not line:
                break
            if stalled:
                continue  # read and drop: the client must give up on its own
            words = line.decode("utf-8", "replace").rstrip("\r\n").split(" ", 2)
            tag = words[0]
            cmd = words[1].upper() if len(words) > 1 else ""
            rest = words[2] if len(words) > 2 else ""
            if cmd == "UID" and rest:
                cmd = rest.split(" ", 1)[0].upper()
            seen[cmd] = seen.get(cmd, 0) + 1
            if cmd == args.stall_at.upper() and seen[cmd] > args.stall_after:
                note(cid, "stall " + cmd)
                stalled = True
                continue
            writer.write(answer(tag, cmd, rest).encode())
            await writer.drain()
            if cmd == "LOGOUT":
                break
    except (ConnectionError, OSError):
        pass
    finally:
        note(cid, "closed")
        writer.close()


async def main():
    srv = await asyncio.start_server(serve, "127.0.0.1", args.port)
    print("READY", flush=True)
    async with srv:
        await srv.serve_forever()


asyncio.run(main())
