"""JSON Schema validation against api/openapi.yaml's component schemas, for the agent's
wire tests: OpenAPI 3.0's `nullable` becomes a null type, `$ref`s point into the
component schemas, and every member marked `x-kiln-status: planned` counts (the agent
builds against the agreed contract). Needs python3-yaml and python3-jsonschema."""
import copy
import os

import jsonschema
import yaml


def _convert(node):
    if isinstance(node, dict):
        node = {k: _convert(v) for k, v in node.items()
                if k not in ("discriminator", "example", "x-kiln-status", "x-kiln-scopes")}
        if "$ref" in node:
            node["$ref"] = node["$ref"].replace("#/components/schemas/", "#/$defs/")
        if node.pop("nullable", False):
            t = node.get("type")
            if t:
                node["type"] = [t, "null"] if isinstance(t, str) else list(t) + ["null"]
            if "enum" in node and None not in node["enum"]:
                node["enum"] = node["enum"] + [None]
            if "type" not in node and "enum" not in node:
                node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_convert(v) for v in node]
    return node


class Schemas:
    def __init__(self, root):
        with open(os.path.join(root, "api", "openapi.yaml"), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        self.defs = _convert(copy.deepcopy(doc["components"]["schemas"]))

    def errors(self, name, instance):
        """The validation errors of instance against components.schemas[name] (list of str)."""
        schema = {"$defs": self.defs, "$ref": "#/$defs/" + name}
        v = jsonschema.Draft202012Validator(schema)
        return ["%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(top)", e.message)
                for e in v.iter_errors(instance)]
