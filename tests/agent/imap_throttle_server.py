#!/usr/bin/python3
"""A stand-in IMAP server that refuses every connection the way a busy provider does:
a BYE greeting saying too many connections. Counts connections in --count-file.
Loopback only; prints READY when it listens."""
import argparse
import socket
import threading

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--count-file", required=True)
args = p.parse_args()
lock = threading.Lock()
count = 0

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", args.port))
srv.listen(64)
print("READY", flush=True)
while True:
    c, _ = srv.accept()
    with lock:
        count += 1
        with open(args.count_file, "w") as f:
            f.write(str(count))
    try:
        c.sendall(b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n")
    except OSError:
        pass  # the client may be gone already
    finally:
        c.close()
