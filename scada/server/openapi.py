"""The OpenAPI 3.1 document of the server, generated from the route table.

Request bodies are the pydantic models' JSON schemas (the same models validate the
bodies), hoisted into ``components.schemas``; so are the answers of operations that name a
response model (``Op.response``), and downloads list their content types (``Op.produces``).
Each operation names the permission it needs in ``x-permission`` (see
:data:`scada.services.auth.PERMISSIONS`), and a rule JSON Schema cannot state (``to`` after
``from``, ...) in ``x-rules``: ``{"status": 400, "description": ...}``. Every status an
operation can answer is listed (:meth:`~scada.server.app.Op.answers`); a method a path does
not list is answered 405 with ``Allow``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from scada.server.app import ROUTES, Op, Route

__all__ = ["document"]

_REF = "#/components/schemas/{model}"


def _schema_of(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=_REF)
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _op_id(route: Route, op: Op) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", route.path).strip("_") or "root"
    return f"{op.method.lower()}_{slug}"


def _operation(route: Route, op: Op, components: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": _op_id(route, op),
        "summary": op.summary,
        "tags": [route.group],
        "x-permission": op.action.value if op.action else ("public" if op.public else "signed-in"),
    }
    params = []
    for p in op.params:
        item: dict[str, Any] = {
            "name": p.name,
            "in": p.where,
            "required": p.required,
            "schema": p.schema(),
        }
        if p.description:
            item["description"] = p.description
        params.append(item)
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema_of(op.body, components)}},
        }
    if op.consumes:  # a file: raw, or the one file of a form
        upload = {"type": "string", "format": "binary"}
        content: dict[str, Any] = {t: {"schema": upload} for t in op.consumes}
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "properties": {"file": upload},
                "required": ["file"],
                "additionalProperties": False,
            }
        }
        out["requestBody"] = {"required": True, "content": content}
    answers = op.answers()
    if op.rules is not None:
        code, rule = op.rules
        out["x-rules"] = {"status": code, "description": rule}
        answers[code] = f"{answers.get(code, 'refused')}; or {rule}"
    responses: dict[str, Any] = {}
    for code, text in sorted(answers.items()):
        resp: dict[str, Any] = {"description": text}
        if code < 300 and code != 101:
            if op.content == "application/json":
                schema = (
                    {"type": "object"}
                    if op.response is None
                    else _schema_of(op.response, components)
                )
                resp["content"] = {"application/json": {"schema": schema}}
            else:
                resp["content"] = {op.content: {"schema": {"type": "string"}}}
            for extra in op.produces:  # downloads (CSV, Excel) of the same answer
                resp["content"][extra] = {"schema": {"type": "string", "format": "binary"}}
        elif code >= 400:
            resp["content"] = {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}}
        responses[str(code)] = resp
    out["responses"] = responses
    if op.public:
        out["security"] = []
    return out


@functools.cache
def _document() -> dict[str, Any]:
    components: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
    }
    paths: dict[str, Any] = {}
    for route in ROUTES:
        item = paths.setdefault(route.path, {})
        for op in route.ops:
            item[op.method.lower()] = _operation(route, op, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Metering SCADA API",
            "version": "1",
            "description": (
                "REST API of the metering SCADA (issue 6). Sign in with POST /api/login "
                "(session cookie + token) or send Authorization: Bearer <token>. "
                "Cookie-authenticated writes need the X-XSRF-Token header (value of the "
                "scada_xsrf cookie). The websocket /ws is described in scada/server/ws.py."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "scada_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }


def document() -> dict[str, Any]:
    """Return the OpenAPI document (built once; do not modify)."""
    return _document()
