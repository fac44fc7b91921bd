#!/usr/bin/python3
"""aiosmtpd server for kiln-agent's TLS tests (loopback only): STARTTLS on a plain
port or implicit TLS, AUTH (PLAIN/LOGIN) required, SMTPUTF8 with --smtputf8, each
received message written byte for byte to --save-dir as N.eml with its envelope in
N.env ("sender recipients,... mail-options,...|-", UTF-8). Prints READY."""
import argparse
import asyncio
import itertools
import os
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--mode", choices=["starttls", "tls"], required=True)
p.add_argument("--cert", required=True)
p.add_argument("--key", required=True)
p.add_argument("--user", default="anna@acme.test")
p.add_argument("--password", default="secret")
p.add_argument("--save-dir", default="")
p.add_argument("--data-delay", type=float, default=0, help="seconds to wait before the DATA reply")
p.add_argument("--smtputf8", action="store_true", help="offer SMTPUTF8 (RFC 6531)")
args = p.parse_args()
counter = itertools.count(1)


class Saver:
    async def handle_DATA(self, server, session, envelope):
        if args.data_delay:
            await asyncio.sleep(args.data_delay)
        if args.save_dir:
            n = next(counter)
            with open(os.path.join(args.save_dir, "%d.eml" % n), "wb") as f:
                f.write(envelope.original_content)
            # surrogateescape gives back the bytes aiosmtpd received, valid UTF-8 or not
            with open(os.path.join(args.save_dir, "%d.env" % n), "w", encoding="utf-8",
                      errors="surrogateescape") as f:
                f.write("%s %s %s\n" % (envelope.mail_from, ",".join(envelope.rcpt_tos),
                                         ",".join(envelope.mail_options) or "-"))
        return "250 2.0.0 Ok: queued"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == args.user
          and auth_data.password.decode() == args.password)
    return AuthResult(success=ok, handled=False)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(args.cert, args.key)


def factory():
    if args.mode == "starttls":
        return SMTP(Saver(), hostname="aiosmtpd.test", tls_context=ctx, require_starttls=True,
                    auth_required=True, auth_require_tls=True, authenticator=authenticator,
                    enable_SMTPUTF8=args.smtputf8)
    return SMTP(Saver(), hostname="aiosmtpd.test", auth_required=True, auth_require_tls=False,
                authenticator=authenticator, enable_SMTPUTF8=args.smtputf8)


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", args.port,
                                      ssl=ctx if args.mode == "tls" else None)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
