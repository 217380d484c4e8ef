"""Validate hub responses against OpenAI's published OpenAPI spec (../shared/reference)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SPEC_CANDIDATES = [
    Path(__file__).resolve().parents[3] / "shared" / "reference" / "openai-openapi.yaml",
    Path("/work/shared/reference/openai-openapi.yaml"),
]


def spec_path() -> Path:
    for path in SPEC_CANDIDATES:
        if path.is_file():
            return path
    raise FileNotFoundError("openai-openapi.yaml not found next to the repository (../shared/reference)")


def _nullable_to_null(node: Any) -> Any:
    """OpenAPI 3.0 `nullable: true` -> JSON Schema `anyOf: [..., {type: null}]`."""
    if isinstance(node, list):
        return [_nullable_to_null(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_null(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _root() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec_path().open(encoding="utf-8") as fh:
        spec = yaml.load(fh, Loader=loader)  # noqa: S506 - safe loader
    return {"components": {"schemas": _nullable_to_null(spec["components"]["schemas"])}}


@functools.cache
def validator(name: str) -> Draft202012Validator:
    schema = dict(_root())
    schema["$ref"] = f"#/components/schemas/{name}"
    return Draft202012Validator(schema)


def assert_valid(name: str, instance: Any) -> None:
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
