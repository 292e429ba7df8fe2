"""The OpenAPI 3 document, built from the running app: paths and methods come from
Flask's url_map, each operation from the `@doc` beside its view function. A route
without `@doc` shows up as undocumented, and tests/web/test_openapi.py fails on it.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from flask import Blueprint, Flask, current_app, jsonify
from pydantic import BaseModel

from diag import __version__

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

# -- schema helpers (JSON Schema as OpenAPI 3.0 takes it) -----------------------------------

STR: dict[str, Any] = {"type": "string"}
NUM: dict[str, Any] = {"type": "number"}
INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
ANY_OBJ: dict[str, Any] = {"type": "object", "additionalProperties": True}
LABELS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = {**schema, "nullable": True}
    if "enum" in schema:  # OpenAPI 3.0.3: an enum that allows null lists it
        out["enum"] = [*schema["enum"], None]
    return out


def arr(items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **extra}


def obj(required: dict[str, Any] | None = None, optional: dict[str, Any] | None = None,
        extra: bool = True) -> dict[str, Any]:
    props = {**(required or {}), **(optional or {})}
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        out["required"] = list(required)
    return out


def model_schema(model: type[BaseModel], served: dict[str, Any] | None = None) -> dict[str, Any]:
    """`model`'s JSON Schema as OpenAPI 3.0 takes it (draft 4 with `nullable`); `served`
    replaces the named properties (`conditions[].metric`: a property of a list's items) with
    what the model cannot know, `live` values or components, which build resolves when serving."""
    raw = model.model_json_schema(ref_template="{model}")
    defs = raw.pop("$defs", {})
    out = _openapi(raw, defs)
    for path, value in (served or {}).items():
        *parents, last = re.findall(r"[^.\[\]]+|\[\]", path)
        node = out
        for part in parents:
            node = node["items"] if part == "[]" else node["properties"][part]
        if last == "[]":
            node["items"] = value
        else:
            node["properties"][last] = value
    return out


_NAMED = ("properties", "patternProperties")


def _openapi(s: Any, defs: dict[str, Any]) -> Any:
    if isinstance(s, list):
        return [_openapi(x, defs) for x in s]
    if not isinstance(s, dict):
        return s
    if "$ref" in s:  # inlined: the document's components are its own names
        return _openapi({**defs[s["$ref"]], **{k: v for k, v in s.items() if k != "$ref"}}, defs)
    out: dict[str, Any] = {}
    for k, v in s.items():
        if k == "title" or (k == "default" and v is None):  # None: left out, which is not null
            continue
        out[k] = {n: _openapi(x, defs) for n, x in v.items()} if k in _NAMED else _openapi(v, defs)
    alts = out.get("anyOf")
    if alts and {"type": "null"} in alts:
        rest = [a for a in alts if a != {"type": "null"}]
        del out["anyOf"]  # pydantic flattens X | None of an anyOf X into one list: it is X again
        out = nullable({**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **out})
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), (int, float)) and not isinstance(out[bound], bool):
            out[plain], out[bound] = out[bound], True  # draft 4: a flag beside the bound
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if out.get("type") == "object":
        # pydantic refuses a key its pattern does not match; draft 4 says so with false.
        out.setdefault("additionalProperties", False if "patternProperties" in out else True)
    return out


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def query(name: str, schema: dict[str, Any] | None = None, required: bool = False, description: str = "") -> dict:
    p = {"name": name, "in": "query", "required": required, "schema": schema or STR}
    if description:
        p["description"] = description
    return p


COMPONENTS: dict[str, dict[str, Any]] = {
    "Error": obj({"error": obj({"code": STR, "message": STR}, {
        "field": STR, "errors": arr(obj({"message": STR}, {"field": STR}))})}),
}


def component(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Register a shared schema; returns its $ref."""
    COMPONENTS[name] = schema
    return ref(name)


# -- the decorator ---------------------------------------------------------------------------

# 421: every route refuses a Host that is not loopback when the server has no token (DNS rebinding).
ERRORS = (400, 401, 403, 404, 409, 413, 421, 422, 424, 503, 507)


def live(fn: Callable[[], Any]) -> Callable[[], Any]:
    """A value of a schema known only when the document is served (the configured interval,
    the metric names the store holds, the time now): build() calls it, in the request."""
    fn.openapi_live = True  # type: ignore[attr-defined]
    return fn


def _resolve(value: Any) -> Any:
    if callable(value) and getattr(value, "openapi_live", False):
        return _resolve(value())
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


def doc(summary: str, *, responses: dict[int, dict[str, Any] | None], body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, method: str | None = None,
        content_type: str = "application/json", tags: list[str] | None = None,
        body_required: bool = True) -> Callable:
    """Describe a view's operation. `responses` maps a status to its JSON schema (None: no
    body). Every error status answers the one error shape; they are added here.
    `body_required=False` for a view that works without a body: the document is fuzzed,
    and a request without one must be answered as the document says."""

    def wrap(view: Callable) -> Callable:
        ops = getattr(view, "openapi", {})
        op: dict[str, Any] = {"summary": summary, "responses": {}}
        for status, schema in responses.items():
            if schema is None:
                op["responses"][str(status)] = {"description": "no content"}
            else:
                op["responses"][str(status)] = {"description": summary,
                                                "content": {content_type: {"schema": schema}}}
        for status in ERRORS:
            op["responses"].setdefault(str(status), {"description": "error",
                                                     "content": {"application/json": {"schema": ref("Error")}}})
        if body is not None:
            op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
        if params:
            op["parameters"] = params
        if tags:
            op["tags"] = tags
        ops[(method or "*").upper()] = op
        view.openapi = ops
        return view

    return wrap


# -- building the document ------------------------------------------------------------------

_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
DOCUMENTED_PREFIXES = ("/api/", "/healthz", "/metrics")


def build(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(DOCUMENTED_PREFIXES):
            continue
        path = _PARAM.sub(r"{\1}", rule.rule)
        view = app.view_functions[rule.endpoint]
        ops = getattr(view, "openapi", {})
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = dict(ops.get(method) or ops.get("*") or {"summary": "undocumented", "x-undocumented": True,
                                                            "responses": {"default": {"description": "?"}}})
            op["operationId"] = f"{method.lower()}_{rule.endpoint.replace('.', '_')}"
            names = _PARAM.findall(rule.rule)
            if names:
                op["parameters"] = [{"name": n, "in": "path", "required": True, "schema": STR} for n in names] + \
                    [p for p in op.get("parameters", []) if p["in"] != "path"]
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "diag", "version": __version__,
                 "description": "Monitoring and self-diagnosis for Linux machines."},
        "components": {"schemas": _resolve(COMPONENTS),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"bearer": []}],
        "paths": _resolve(paths),
    }


@bp.get("/openapi.json")
@doc("This document.", responses={200: ANY_OBJ})
def openapi_json():
    return jsonify(build(current_app))
