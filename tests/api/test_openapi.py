#!/usr/bin/python3
"""Keeps api/openapi.yaml in sync with kiln-api's code, without building or running it.

Usage: test_openapi.py [PROJECT_SOURCE_DIR]

Checks:
  - the document is structurally OpenAPI 3.0.x (info, paths, components, operations
    with responses, declared path parameters, unique operationIds);
  - every route of api/routes/routes.c's routes[] table is documented with its method ("{}"
    in the router is any "{name}" in the spec), and nothing else is documented;
  - each operation's x-kiln-scopes equals the route's scopes (security: [] when the
    route needs no token);
  - every error code passed to http_error(...) in api/**/*.c, and every code of nginx's
    own JSON errors in nginx/*.conf*, is in the Error schema's code enum, and every
    code of that enum is produced somewhere;
  - every $ref resolves;
  - the members each request schema lists (but those marked `x-kiln-status: planned`: the
    agreed contract of work not done yet) are exactly the members the handler accepts
    (its field list in api/routes/*.c), and the limits the code and the spec both state
    (common/wire.h's WIRE_MAX_LEASE_*, lengths #defined in handlers) agree.
Prints "ok - <name>" / "not ok - <name>: <why>" per check; exits 1 on any mismatch.
"""
import glob
import os
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - environment problem, not a spec problem
    print("not ok - import yaml: python3-yaml is missing (apt-get install -y python3-yaml)")
    sys.exit(1)

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PARAM_RE = re.compile(r"\{[^/{}]*\}")

failures = []


def check(name, problems):
    """problems: list of strings (empty = pass)."""
    if problems:
        failures.append(name)
        print(f"not ok - {name}")
        for p in problems:
            print(f"    {p}")
    else:
        print(f"ok - {name}")


def norm_path(p):
    """'/api/mailboxes/{id}/pause' and '/api/mailboxes/{}/pause' -> the same key."""
    return PARAM_RE.sub("{}", p)


def strip_c_comments(src):
    """Removes /* */ and // comments, leaving string and char literals intact."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:j + 1])
            i = j + 1
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def call_args(src, open_paren):
    """Splits the arguments of the call whose '(' is at open_paren. Returns (args, end)."""
    depth, i, start, args = 0, open_paren, open_paren + 1, []
    n = len(src)
    while i < n:
        c = src[i]
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append(src[start:i].strip())
                return args, i
        elif c == "," and depth == 1:
            args.append(src[start:i].strip())
            start = i + 1
        i += 1
    raise ValueError("unbalanced parentheses")


STRING_LIT = re.compile(r'"((?:[^"\\]|\\.)*)"')


def ternary_results(expr):
    """For `cond ? "a" : "b"` returns the part after the first top-level '?', so string
    literals in the condition (strstr(err, "UTF-8") ? ...) are not taken for codes."""
    depth, i, n = 0, 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "?" and depth == 0:
            return expr[i + 1:]
        i += 1
    return expr


# ---- router ------------------------------------------------------------------------

def parse_router(root):
    src = strip_c_comments(open(os.path.join(root, "api", "routes", "routes.c"), encoding="utf-8").read())
    macros = {}
    for m in re.finditer(r"^\s*#\s*define\s+(\w+)\s+(.+)$", src, re.M):
        macros[m.group(1)] = m.group(2).strip()

    def scopes_of(expr, seen=()):
        expr = expr.strip()
        while expr.startswith("(") and expr.endswith(")"):
            expr = expr[1:-1].strip()
        out = set()
        for part in expr.split("|"):
            part = part.strip().strip("()").strip()
            if part in ("0", ""):
                continue
            if part.startswith("SCOPE_"):
                out.add(part[len("SCOPE_"):].lower())
            elif part in macros and part not in seen:
                out |= scopes_of(macros[part], seen + (part,))
            else:
                raise ValueError(f"cannot understand scope expression {part!r}")
        return out

    m = re.search(r"routes\s*\[\s*\]\s*=\s*\{(.*?)\n\s*\};", src, re.S)
    if not m:
        raise ValueError("routes[] table not found in api/routes/routes.c")
    routes = []
    for e in re.finditer(r'\{\s*"([A-Z]+)"\s*,\s*"([^"]+)"\s*,\s*([^,{}]+?)\s*,\s*(\w+)\s*\}',
                         m.group(1)):
        routes.append({"method": e.group(1).lower(), "path": e.group(2),
                       "scopes": scopes_of(e.group(3)), "handler": e.group(4)})
    if not routes:
        raise ValueError("no routes parsed from api/routes/routes.c")
    return routes


# ---- error codes in the C code and nginx --------------------------------------------

def code_error_codes(root):
    """{code: [file:line, ...]} of every literal code given to http_error(); plus problems."""
    codes, problems = {}, []
    for path in sorted(glob.glob(os.path.join(root, "api", "**", "*.c"), recursive=True)):
        raw = open(path, encoding="utf-8").read()
        src = strip_c_comments(raw)
        rel = os.path.relpath(path, root)
        for m in re.finditer(r"\bhttp_error\s*\(", src):
            before = src[:m.start()].rstrip()
            if re.search(r"\b(void|int|static)\s*$", before):
                continue  # the definition
            try:
                args, _ = call_args(src, m.end() - 1)
            except ValueError:
                problems.append(f"{rel}: cannot parse an http_error( call")
                continue
            line = src.count("\n", 0, m.start()) + 1
            if len(args) < 3:
                problems.append(f"{rel}:{line}: http_error call with {len(args)} arguments")
                continue
            lits = STRING_LIT.findall(ternary_results(args[2]))
            if not lits:
                problems.append(f"{rel}:{line}: the error code {args[2]!r} is not a string "
                                "literal, so this test cannot see it")
            for lit in lits:
                codes.setdefault(lit, []).append(f"{rel}:{line}")
    return codes, problems


def nginx_error_codes(root):
    codes = {}
    for path in sorted(glob.glob(os.path.join(root, "nginx", "*.conf*"))):
        rel = os.path.relpath(path, root)
        for i, line in enumerate(open(path, encoding="utf-8"), 1):
            for c in re.findall(r'"code"\s*:\s*"([A-Za-z0-9_]+)"', line):
                codes.setdefault(c, []).append(f"{rel}:{i}")
    return codes


# ---- the spec -----------------------------------------------------------------------

def resolve(doc, ref):
    if not ref.startswith("#/"):
        raise KeyError(f"only local references are used here, got {ref}")
    node = doc
    for tok in ref[2:].split("/"):
        tok = tok.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and tok in node:
            node = node[tok]
        elif isinstance(node, list) and tok.isdigit() and int(tok) < len(node):
            node = node[int(tok)]
        else:
            raise KeyError(ref)
    return node


def walk(node, where="#"):
    yield where, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{where}/{i}")


def deref(doc, node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 20:
        try:
            node = resolve(doc, node["$ref"])
        except KeyError:
            return {}
        seen += 1
    return node


def operations(doc):
    for path, item in (doc.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item, item[method]


def structural_problems(doc):
    p = []
    if not isinstance(doc, dict):
        return ["the document is not a mapping"]
    if not re.fullmatch(r"3\.0\.\d+", str(doc.get("openapi", ""))):
        p.append(f"openapi must be 3.0.x, is {doc.get('openapi')!r}")
    info = doc.get("info")
    if not isinstance(info, dict) or not isinstance(info.get("title"), str) \
            or not isinstance(info.get("version"), str):
        p.append("info needs string title and version")
    paths = doc.get("paths")
    if not isinstance(paths, dict) or not paths:
        p.append("paths must be a non-empty mapping")
        paths = {}
    comps = doc.get("components")
    if not isinstance(comps, dict):
        p.append("components must be a mapping")
        comps = {}
    for key in ("schemas", "securitySchemes"):
        if not isinstance(comps.get(key), dict) or not comps.get(key):
            p.append(f"components.{key} must be a non-empty mapping")
    schemes = comps.get("securitySchemes") or {}
    for name, s in schemes.items():
        if not isinstance(s, dict) or s.get("type") not in ("apiKey", "http", "oauth2",
                                                             "openIdConnect"):
            p.append(f"securitySchemes.{name}: bad type")
    allowed_item_keys = set(HTTP_METHODS) | {"$ref", "summary", "description", "servers",
                                             "parameters"}
    op_ids = {}
    for path, item in paths.items():
        if not path.startswith("/"):
            p.append(f"path {path!r} must start with /")
        if not isinstance(item, dict):
            p.append(f"{path}: not a mapping")
            continue
        for k in item:
            if k not in allowed_item_keys and not k.startswith("x-"):
                p.append(f"{path}: unexpected key {k!r}")
    for path, method, item, op in operations(doc):
        w = f"{method.upper()} {path}"
        if not isinstance(op, dict):
            p.append(f"{w}: not a mapping")
            continue
        oid = op.get("operationId")
        if oid:
            if oid in op_ids:
                p.append(f"{w}: operationId {oid} also used by {op_ids[oid]}")
            op_ids[oid] = w
        resps = op.get("responses")
        if not isinstance(resps, dict) or not resps:
            p.append(f"{w}: no responses")
            resps = {}
        for code, r in resps.items():
            if not re.fullmatch(r"[1-5][0-9X]{2}|default", str(code)):
                p.append(f"{w}: bad response key {code!r}")
            r = deref(doc, r)
            if not isinstance(r, dict) or not isinstance(r.get("description"), str):
                p.append(f"{w} {code}: response needs a description")
        for sreq in op.get("security", doc.get("security", [])) or []:
            for sname in sreq:
                if sname not in schemes:
                    p.append(f"{w}: security scheme {sname!r} is not defined")
        # path parameters: declared <-> in the template
        params = [deref(doc, x) for x in (item.get("parameters") or []) +
                  (op.get("parameters") or [])]
        declared = {x.get("name") for x in params if isinstance(x, dict) and x.get("in") == "path"}
        for x in params:
            if isinstance(x, dict) and x.get("in") == "path" and x.get("required") is not True:
                p.append(f"{w}: path parameter {x.get('name')} must be required: true")
            if not isinstance(x, dict) or "name" not in x or "in" not in x:
                p.append(f"{w}: a parameter needs name and in")
        in_template = set(re.findall(r"\{([^/{}]+)\}", path))
        if declared != in_template:
            p.append(f"{w}: path parameters declared {sorted(declared)} but the template has "
                     f"{sorted(in_template)}")
        rb = op.get("requestBody")
        if rb is not None:
            rb = deref(doc, rb)
            if not isinstance(rb, dict) or not isinstance(rb.get("content"), dict):
                p.append(f"{w}: requestBody needs content")
    # A null outside an example is almost always an unquoted ", " inside a YAML flow
    # mapping ({description: a, b}) that silently became a key.
    for where, node in walk(doc):
        if isinstance(node, dict) and "/example" not in where:
            for k, v in node.items():
                if v is None and k != "default":
                    p.append(f"{where}/{k}: null value (an unquoted comma in a flow mapping?)")
    return p


# ---- request members and limits: the code's lists against the spec ------------------

# (file, function whose body holds the list or None for file scope, array, schema)
BODY_FIELDS = [
    ("api/routes/h_mailboxes.c", None, "MAILBOX_CREATE_FIELDS", "MailboxCreate"),
    ("api/routes/h_mailboxes.c", None, "SMTP_MEMBERS", "SmtpCreate"),
    ("api/routes/h_mailboxes.c", None, "SMTP_MEMBERS", "SmtpPatch"),
    ("api/routes/h_mailboxes.c", None, "IMAP_MEMBERS", "ImapCreate"),
    ("api/routes/h_mailboxes.c", None, "IMAP_MEMBERS", "ImapPatch"),
    ("api/routes/h_mailboxes.c", "parse_mailbox", "window_fields", "WindowIn"),
    ("api/routes/h_registry.c", "h_plans_create", "fields", "PlanCreate"),
    ("api/routes/h_webhooks.c", None, "WEBHOOK_CREATE_FIELDS", "WebhookCreate"),
    ("api/routes/h_webhooks.c", None, "WEBHOOK_PATCH_FIELDS", "WebhookPatch"),
    ("api/routes/h_agent.c", "h_agent_lease", "fields", "LeaseRequest"),
    ("api/routes/h_agent.c", "h_agent_report", "fields", "ReportRequest"),
    ("api/lease/inbox_events.c", None, "FOUND_FIELDS", "InboxEventFound"),
    ("api/lease/inbox_events.c", None, "ACTION_FIELDS", "InboxEventAction"),
    ("api/lease/inbox_events.c", None, "FOLDER_STATE_FIELDS", "InboxEventFolderState"),
    ("api/lease/inbox_events.c", None, "SESSION_FIELDS", "InboxEventSession"),
]
# (file, #define, schema, property, keyword)
LIMITS = [
    ("common/wire.h", "WIRE_MAX_LEASE_MAILBOXES", "LeaseRequest", "max_mailboxes", "maximum"),
    ("common/wire.h", "WIRE_MAX_LEASE_SENDS", "LeaseRequest", "max_sends", "maximum"),
    ("common/wire.h", "WIRE_MAX_LEASE_INBOXES", "LeaseRequest", "max_inboxes", "maximum"),
    ("common/wire.h", "WIRE_MSGID_MAX", "LeaseSend", "in_reply_to", "maxLength"),
    ("common/wire.h", "WIRE_MAX_REFERENCES", "LeaseSend", "references", "maxItems"),
    ("api/lease/inbox_events.h", "INBOX_EVENTS_MAX", "ReportRequest", "inbox_events", "maxItems"),
    ("api/routes/h_mailboxes.c", "OAUTH_TOKEN_MAX_BYTES", "ImapCreate", "oauth_token",
     "maxLength"),
    ("api/routes/h_mailboxes.c", "OAUTH_TOKEN_MAX_BYTES", "ImapPatch", "oauth_token",
     "maxLength"),
    ("api/routes/h_mailboxes.c", "DISPLAY_NAME_MAX_CHARS", "MailboxCreate", "display_name",
     "maxLength"),
    ("api/webhook/webhook_url.h", "WEBHOOK_URL_MAX", "WebhookCreate", "url", "maxLength"),
    ("api/webhook/webhook_url.h", "WEBHOOK_URL_MAX", "WebhookPatch", "url", "maxLength"),
]


def c_string_list(root, rel, function, array):
    """The string literals of `array[] = {...}` in rel (inside function when given)."""
    src = strip_c_comments(open(os.path.join(root, rel), encoding="utf-8").read())
    if function:
        m = re.search(r"\b" + function + r"\s*\([^;{]*\)\s*\{", src)
        if not m:
            raise ValueError(f"{rel}: no function {function}")
        src = src[m.end():]
    m = re.search(r"\b" + array + r"\s*\[\s*\]\s*=\s*\{(.*?)\}", src, re.S)
    if not m:
        raise ValueError(f"{rel}: no array {array}[]" + (f" in {function}" if function else ""))
    return STRING_LIT.findall(m.group(1))


# PlanCreate member -> the engage.h #define of its default (the SQL column has its name)
ENGAGEMENT_DEFAULTS = {
    "open_rate": "ENGAGE_DEFAULT_OPEN_RATE",
    "important_rate": "ENGAGE_DEFAULT_IMPORTANT_RATE",
    "rescue_rate": "ENGAGE_DEFAULT_RESCUE_RATE",
    "reply_rate": "ENGAGE_DEFAULT_REPLY_RATE",
    "untouched_rate": "ENGAGE_DEFAULT_UNTOUCHED_RATE",
    "dwell_median_min": "ENGAGE_DEFAULT_DWELL_MEDIAN_MIN",
    "dwell_max_min": "ENGAGE_DEFAULT_DWELL_MAX_MIN",
    "quiet_start_hour": "ENGAGE_DEFAULT_QUIET_START_HOUR",
    "quiet_end_hour": "ENGAGE_DEFAULT_QUIET_END_HOUR",
    "retention_days": "ENGAGE_DEFAULT_RETENTION_DAYS",
    "max_reply_depth": "ENGAGE_DEFAULT_MAX_REPLY_DEPTH",
}


def engagement_default_problems(root, doc):
    """The engagement plan's defaults are written three times (spec, C, SQL): one check."""
    problems = []
    schemas = doc["components"]["schemas"]
    create = deref(doc, schemas["PlanCreate"]).get("properties", {})
    header = open(os.path.join(root, "api/engage/engage.h"), encoding="utf-8").read()
    sql = ""
    for path in sorted(glob.glob(os.path.join(root, "sql/migrations/*.sql"))):
        sql += open(path, encoding="utf-8").read()
    for member, define in ENGAGEMENT_DEFAULTS.items():
        spec = create.get(member, {}).get("default")
        m = re.search(r"^#define\s+" + define + r"\s+([0-9.]+)\s*$", header, re.M)
        col = re.search(r"\b" + member + r"\s+(?:real|integer)\s+NOT NULL DEFAULT ([0-9.]+)",
                        sql)
        if not m:
            problems.append(f"api/engage/engage.h: no #define {define}")
            continue
        if spec is None or float(spec) != float(m.group(1)):
            problems.append(f"PlanCreate.{member}.default is {spec!r}, engage.h {define} "
                            f"is {m.group(1)}")
        if not col or float(col.group(1)) != float(m.group(1)):
            problems.append(f"the SQL default of plans.{member} is "
                            f"{col.group(1) if col else None}, engage.h says {m.group(1)}")
    answer = set(deref(doc, schemas["Plan"]).get("required", []))
    if set(create) - answer:
        problems.append(f"Plan does not answer {sorted(set(create) - answer)}")
    return problems


def body_field_problems(root, doc):
    problems = []
    schemas = doc["components"]["schemas"]

    def members(name):
        props = deref(doc, schemas.get(name, {})).get("properties", {})
        return {k for k, v in props.items()
                if not (isinstance(v, dict) and v.get("x-kiln-status") == "planned")}

    for rel, function, array, schema in BODY_FIELDS:
        try:
            code = set(c_string_list(root, rel, function, array))
        except (OSError, ValueError) as e:
            problems.append(str(e))
            continue
        spec = members(schema)
        if code != spec:
            problems.append(f"{schema}: the spec lists {sorted(spec - code)} that {rel} "
                            f"{array} does not accept, and the code accepts {sorted(code - spec)} "
                            "that the spec does not list (mark agreed but unbuilt members "
                            "x-kiln-status: planned)")
    create, patch = members("MailboxCreate"), members("MailboxPatch")
    if patch != create - {"user_id"}:
        problems.append(f"MailboxPatch {sorted(patch)} must be MailboxCreate without user_id")
    for rel, define, schema, prop, key in LIMITS:
        src = open(os.path.join(root, rel), encoding="utf-8").read()
        m = re.search(r"^\s*#\s*define\s+" + define + r"\s+(\d+)\b", src, re.M)
        want = deref(doc, schemas.get(schema, {})).get("properties", {}).get(prop, {}).get(key)
        if not m:
            problems.append(f"{rel}: no #define {define}")
        elif want is None or int(m.group(1)) != want:
            problems.append(f"{schema}.{prop}.{key} is {want!r} but {rel} has {define} "
                            f"{m.group(1)}")
    return problems


def message_id_pin_problems(root, doc):
    """The id-left pattern InboxEventFound pins for the agent must match every Message-ID
    kiln mints (msgid.h: send id, '.', key id [0-9a-z], MSGID_MAC_HEX hex digits)."""
    try:
        with open(os.path.join(root, "api", "lease", "msgid.h"), encoding="utf-8") as f:
            header = f.read()
        desc = resolve(doc, "#/components/schemas/InboxEventFound")["description"]
    except (OSError, KeyError) as e:
        return [f"cannot read the pin: {e}"]
    m = re.search(r"#define MSGID_MAC_HEX (\d+)", header)
    pin = re.search(r"`(\^[^`]*\$)`", desc)
    if not m or not pin:
        return ["msgid.h has no MSGID_MAC_HEX or InboxEventFound no `^...$` id-left pattern"]
    mac = int(m.group(1))
    problems = []
    for send_id in ("1", "12345", "9223372036854775807"):
        for kid in "09az":
            left = f"{send_id}.{kid}{'0f' * (mac // 2)}"
            if not re.fullmatch(pin.group(1), left):
                problems.append(f"pin {pin.group(1)} does not match the minted id-left {left}")
    return problems


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    spec_path = os.path.join(root, "api", "openapi.yaml")
    try:
        with open(spec_path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        check("load api/openapi.yaml", [str(e)])
        return 1
    check("load api/openapi.yaml", [])

    check("OpenAPI 3.0.x structure", structural_problems(doc))

    try:
        routes = parse_router(root)
        check(f"parse api/routes/routes.c routes[] ({len(routes)} routes)", [])
    except (OSError, ValueError) as e:
        check("parse api/routes/routes.c routes[]", [str(e)])
        return 1

    spec_ops = {}
    for path, method, _item, op in operations(doc):
        spec_ops[(method, norm_path(path))] = (path, op)
    router_ops = {(r["method"], norm_path(r["path"])): r for r in routes}

    check("every router route is documented", [
        f"{r['method'].upper()} {r['path']} ({r['handler']}) is not in api/openapi.yaml"
        for key, r in router_ops.items() if key not in spec_ops])
    check("every documented operation is routed", [
        f"{m.upper()} {spec_ops[(m, p)][0]} is documented but api/routes/routes.c has no such route"
        for (m, p) in spec_ops if (m, p) not in router_ops])

    scope_problems = []
    for key, r in router_ops.items():
        if key not in spec_ops:
            continue
        path, op = spec_ops[key]
        w = f"{r['method'].upper()} {path}"
        documented = op.get("x-kiln-scopes")
        if not isinstance(documented, list):
            scope_problems.append(f"{w}: x-kiln-scopes missing (router: {sorted(r['scopes'])})")
        elif set(documented) != r["scopes"]:
            scope_problems.append(f"{w}: x-kiln-scopes {sorted(documented)} but router.c "
                                  f"allows {sorted(r['scopes'])}")
        security = op.get("security", doc.get("security"))
        open_route = not r["scopes"]
        if open_route and security not in ([], [{}]):
            scope_problems.append(f"{w}: the route needs no token, so security must be []")
        if not open_route and not security:
            scope_problems.append(f"{w}: the route needs a token but security is empty")
    check("documented scopes match router.c", scope_problems)

    codes, parse_problems = code_error_codes(root)
    check(f"read http_error() codes from api/**/*.c ({len(codes)} codes)", parse_problems)
    ngx = nginx_error_codes(root)
    try:
        enum = resolve(doc, "#/components/schemas/Error/properties/error/properties/code")
        enum = set(enum.get("enum") or [])
    except KeyError:
        enum = set()
    text = yaml.safe_dump(doc)
    missing = []
    for c, where in sorted({**ngx, **codes}.items()):
        if c not in enum:
            missing.append(f"error code {c!r} ({', '.join(where[:3])}) is not in "
                           "components.schemas.Error.properties.error.properties.code.enum")
        elif len(re.findall(r"\b" + re.escape(c) + r"\b", text)) < 2:
            missing.append(f"error code {c!r} is in the enum but no response describes it")
    check("every error code of the code and nginx is documented", missing)
    check("every documented error code is produced by the code or nginx", [
        f"error code {c!r} is in the Error enum but neither api/**/*.c nor nginx/ produce it"
        for c in sorted(enum - set(codes) - set(ngx))])

    bad_refs = []
    for where, node in walk(doc):
        if isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            try:
                resolve(doc, ref)
            except KeyError:
                bad_refs.append(f"{where}: $ref {ref} does not resolve")
    check("every $ref resolves", bad_refs)
    check("request members and limits match the handlers and common/wire.h",
          body_field_problems(root, doc))

    check("the engagement plan's defaults agree in the spec, api/engage/engage.h and "
          "migration 012, and a Plan answers every PlanCreate member",
          engagement_default_problems(root, doc))

    check("the found events' Message-ID pin matches what api/lease/msgid.h mints",
          message_id_pin_problems(root, doc))

    if failures:
        print(f"FAILED: {len(failures)} check(s): {', '.join(failures)}", file=sys.stderr)
        print("api/openapi.yaml is out of sync with the code; update it (see messages above).",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
