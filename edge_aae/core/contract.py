"""The MQTT payload contract: JSON Schemas shipped in ``edge_aae/core/schemas/`` and a small validator.

The same schema files are embedded in ``docs/asyncapi.yaml``. The validator covers
the JSON Schema keywords those files use (type, required, properties,
additionalProperties, items, enum, minimum/maximum, exclusiveMinimum, minLength,
local ``$ref``), so subscribers on a gateway need no extra dependency; the test
suite checks it agrees with the ``jsonschema`` reference implementation.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMAS = ("readings", "score", "alert", "drift", "status", "error", "update_chunk", "model_outcome", "probe",
           "feedback", "feedback_state")

_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


@cache
def load_schema(name: str) -> dict[str, Any]:
    """One of :data:`SCHEMAS` as a dict.

    Raises:
        ValueError: an unknown name.

    """
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r} (known: {', '.join(SCHEMAS)})")
    text = resources.files("edge_aae.core").joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _is_type(value: Any, t: str) -> bool:
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, _TYPES[t])


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str, out: list[str]) -> None:
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        _check(value, target, root, path, out)
        return
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, t) for t in names):
            out.append(f"{path or '$'}: expected {' or '.join(names)}, got {type(value).__name__}")
            return
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path or '$'}: {value!r} is not one of {schema['enum']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path or '$'}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path or '$'}: {value} > maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{path or '$'}: {value} <= exclusiveMinimum {schema['exclusiveMinimum']}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        out.append(f"{path or '$'}: shorter than {schema['minLength']}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], root, f"{path}[{i}]", out)
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path or '$'}: missing required {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key in props:
                _check(item, props[key], root, where, out)
            elif extra is False:
                out.append(f"{path or '$'}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                _check(item, extra, root, where, out)


def validation_errors(instance: Any, schema_name: str) -> list[str]:
    """Every way ``instance`` violates the named schema (empty: valid)."""
    schema = load_schema(schema_name)
    out: list[str] = []
    _check(instance, schema, schema, "", out)
    return out


def schema_for_topic(topic: str) -> str | None:
    """Which schema a daemon topic's payload follows (by the topic's shape), or None."""
    parts = topic.split("/")
    if len(parts) >= 3 and parts[-1] == "status":
        return "status"
    if len(parts) >= 3 and parts[-1] == "errors":
        return "error"
    if len(parts) >= 4 and parts[-2:] == ["model", "update"]:
        return "update_chunk"
    if len(parts) >= 3 and parts[-1] == "feedback":
        return "feedback"
    if len(parts) >= 4 and parts[-2:] == ["feedback", "state"]:
        return "feedback_state"
    if len(parts) >= 3 and parts[-1] == "model":
        return "model_outcome"
    if len(parts) >= 5 and parts[-3] == "anomaly":
        return {"score": "score", "alert": "alert", "drift": "drift"}.get(parts[-1])
    if len(parts) >= 4 and parts[-2:] == ["sensors", "_probe"]:
        return "probe"
    if len(parts) >= 4 and parts[-2] == "sensors":
        return "readings"
    return None
