"""A minimal FastCGI client (responder role, one request per connection), so tests can
talk to kiln-api's socket directly and see its raw output, without nginx in between.
Records as in the FastCGI 1.0 specification: version 1, type, request id, content
length, padding length."""
import os
import socket
import struct

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR = \
    1, 3, 4, 5, 6, 7
FCGI_RESPONDER = 1


def _record(rtype, content, request_id=1):
    out = b""
    # One record carries at most 65535 bytes; an empty record ends a stream.
    chunks = [content[i:i + 65535] for i in range(0, len(content), 65535)] or [b""]
    for c in chunks:
        pad = (8 - len(c) % 8) % 8
        out += struct.pack(">BBHHBx", 1, rtype, request_id, len(c), pad) + c + b"\0" * pad
    return out


def _nv(name, value):
    def length(n):
        return struct.pack(">B", n) if n < 128 else struct.pack(">I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


class Response:
    """status (int), head_lines (raw header lines, without CRLF), headers (lower-cased
    name -> list of values), body (bytes), stdout (everything kiln-api wrote)."""

    def __init__(self, stdout, stderr, app_status):
        self.stdout = stdout
        self.stderr = stderr
        self.app_status = app_status
        head, sep, self.body = stdout.partition(b"\r\n\r\n")
        self.complete_head = bool(sep)
        self.head_lines = head.split(b"\r\n") if head else []
        self.headers = {}
        for line in self.head_lines:
            name, _, value = line.partition(b":")
            self.headers.setdefault(name.strip().lower().decode("latin-1"), []).append(
                value.strip().decode("latin-1"))
        status = self.headers.get("status", ["0"])[0]
        self.status = int(status.split()[0]) if status.split() and status.split()[0].isdigit() else 0

    def header(self, name):
        v = self.headers.get(name.lower())
        return v[0] if v else None

    def __repr__(self):
        return "FastCGI %d %r" % (self.status, self.stdout[:400])


def request(sock_path, method, path, body=b"", token=None, params=None, timeout=30,
            content_length=None):
    """Sends one request over the unix socket sock_path and returns a Response.
    content_length overrides CONTENT_LENGTH (to lie about the body)."""
    query = ""
    if "?" in path:
        path, query = path.split("?", 1)
    env = {
        "REQUEST_METHOD": method, "REQUEST_URI": path + ("?" + query if query else ""),
        "DOCUMENT_URI": path, "QUERY_STRING": query, "SCRIPT_NAME": path,
        "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1",
        "REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
        "CONTENT_LENGTH": str(len(body) if content_length is None else content_length),
        "CONTENT_TYPE": "application/json" if body else "",
    }
    if token:
        env["HTTP_AUTHORIZATION"] = "Bearer " + token
    env.update(params or {})
    pairs = b"".join(_nv(k.encode(), v.encode() if isinstance(v, str) else v)
                     for k, v in env.items())
    msg = _record(FCGI_BEGIN_REQUEST, struct.pack(">HB5x", FCGI_RESPONDER, 0))
    msg += _record(FCGI_PARAMS, pairs) + _record(FCGI_PARAMS, b"")
    msg += (_record(FCGI_STDIN, body) if body else b"") + _record(FCGI_STDIN, b"")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(msg)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    stdout, stderr, app_status = b"", b"", None
    i = 0
    while i + 8 <= len(data):
        _, rtype, _, clen, plen = struct.unpack(">BBHHBx", data[i:i + 8])
        content = data[i + 8:i + 8 + clen]
        i += 8 + clen + plen
        if rtype == FCGI_STDOUT:
            stdout += content
        elif rtype == FCGI_STDERR:
            stderr += content
        elif rtype == FCGI_END_REQUEST:
            app_status = struct.unpack(">I", content[:4])[0]
            break
    return Response(stdout, stderr, app_status)


def socket_path():
    return os.path.join(os.environ.get("KILN_STACK_VAR", ""), "run", "api.sock")
