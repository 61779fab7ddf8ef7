"""Validates JSON against Klaviyo's official OpenAPI subset in ../shared, when it is there.

OpenAPI 3.0 marks null-able values with ``nullable: true``, which JSON Schema does not
know; they are rewritten to ``anyOf [schema, null]`` before validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "klaviyo" / "openapi-subset.json"


def _nullable(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _nullable(v) for k, v in node.items()}
        if node.pop("nullable", False):
            return {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


def validator_for(schema_name: str) -> Any:
    """A jsonschema validator for ``#/components/schemas/<schema_name>``; skips without the spec."""
    if not SPEC_PATH.exists():
        pytest.skip(f"Klaviyo OpenAPI subset not found at {SPEC_PATH}")
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    spec = _nullable(json.loads(SPEC_PATH.read_text()))
    registry = Registry().with_resource("urn:klaviyo", DRAFT202012.create_resource(spec))
    return Draft202012Validator({"$ref": f"urn:klaviyo#/components/schemas/{schema_name}"}, registry=registry)
