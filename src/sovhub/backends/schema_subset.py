"""The part of JSON Schema the embedded model's grammar enforces, and the rewrites that get it there.

llama.cpp's converter turns a schema into a grammar node by node, taking the *first* keyword it
knows (``$ref``, ``anyOf``, a type list, ``const``, ``enum``, then by type) and dropping the others
silently: ``{"type": ["string", "null"], "maxLength": 5}`` would lose ``maxLength``. So before it
sees a schema, :func:`enforceable` rewrites what can be kept exactly (a type list becomes an
``anyOf`` whose branches keep the other keywords; an integer range becomes its values; ``minItems``
without ``items`` gets ``items: {}``; string lengths without a type get ``type: string``) and refuses
(400 ``unsupported_parameter`` naming the keyword) what the grammar would not enforce. Patterns are
rewritten by :func:`json_safe_pattern` so that a string they allow is still a JSON string: the
converter copies character classes and ``.`` as they are, and a class such as ``[^@]`` or ``.``
would let the model write a raw ``"``, ``\\`` or control character inside the string.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedParameter

__all__ = ["enforceable", "json_safe_pattern"]

# Keywords llama.cpp's converter does not turn into grammar: an answer could break them.
_UNENFORCED = frozenset({
    "multipleOf", "uniqueItems", "not", "if", "then", "else", "patternProperties", "dependentRequired",
    "dependentSchemas", "minProperties", "maxProperties", "contains", "minContains", "maxContains",
    "propertyNames", "unevaluatedProperties", "unevaluatedItems", "dependencies",
})
#: Keywords that assert nothing (what may stand beside a keyword the converter takes alone).
_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment", "$schema", "$id",
                          "deprecated", "readOnly", "writeOnly", "contentEncoding", "contentMediaType",
                          "$defs", "definitions", "$anchor"})
_MAPS = ("properties", "$defs", "definitions")
_RANGE = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_LENGTHS = ("minLength", "maxLength")
#: `format` values the converter writes a grammar for; any other would be silently ignored.
_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
#: An integer range up to this size is enforced (as the list of its values).
MAX_RANGE = 4096
#: Keywords that say something of one type of value only (a branch of a type list keeps its own).
_TYPE_KEYWORDS = {
    "string": {"minLength", "maxLength", "pattern", "format"},
    "number": {*_RANGE, "multipleOf"},
    "array": {"items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains"},
    "object": {"properties", "required", "additionalProperties", "patternProperties", "propertyNames",
               "minProperties", "maxProperties"},
}
_TYPE_KEYWORDS["integer"] = _TYPE_KEYWORDS["number"]
_OTHER_TYPES_KEYWORDS = {t: set().union(*(v for k, v in _TYPE_KEYWORDS.items() if v is not mine)) - mine
                         for t, mine in [*_TYPE_KEYWORDS.items(), ("boolean", set()), ("null", set())]}
#: Any JSON value, as the converter can take it (it reads an empty schema as "no items given").
_ANY = {"anyOf": [{"type": t} for t in ("string", "number", "boolean", "null", "object", "array")]}
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "null": (type(None),),
    "object": (dict,), "array": (list,),
}


def _refuse(what: str, param: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"the embedded model cannot enforce {what}", param=param)


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES.get(kind, ()))


def _alone(node: dict[str, Any], keyword: str, param: str, also: tuple[str, ...] = ()) -> None:
    """`keyword` is taken alone by the converter: only annotations (and `also`) may stand beside it."""
    beside = sorted(k for k in node if k != keyword and k not in _ANNOTATIONS and k not in also)
    if beside:
        raise _refuse(f"{', '.join(beside)} beside {keyword} (the grammar would keep only {keyword}; "
                      "move them into its alternatives or values, or leave them out)", param)


def _rewrite(node: dict[str, Any], param: str) -> dict[str, Any]:
    """One node made exact for the converter, or refused (see the module docstring)."""
    unenforced = sorted(k for k in node if k in _UNENFORCED)
    if unenforced:
        raise _refuse(f"JSON schema keyword(s) {', '.join(unenforced)}", param)
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [str(k) for k in kind]
        rest = {k: v for k, v in node.items() if k not in ("type", "$defs", "definitions")}
        defs = {k: v for k, v in node.items() if k in ("$defs", "definitions")}
        if len(kinds) == 1:
            return _rewrite({**node, "type": kinds[0]}, param)
        branches = [{**{k: v for k, v in rest.items() if k not in _OTHER_TYPES_KEYWORDS.get(t, ())}, "type": t}
                    for t in kinds]
        return _rewrite({"anyOf": branches, **defs}, param)
    if "oneOf" in node:
        raise _refuse("oneOf (an answer might match several alternatives, which oneOf forbids): use anyOf", param)
    if "$ref" in node:
        _alone(node, "$ref", param)
    if "anyOf" in node:
        _alone(node, "anyOf", param)
        if not isinstance(node["anyOf"], list) or not node["anyOf"]:
            raise _refuse("an anyOf that is not a non-empty list", param)
    for keyword in ("const", "enum"):
        if keyword in node:
            _alone(node, keyword, param, also=("type", "const", "enum"))
            values = [node["const"]] if keyword == "const" else node[keyword]
            if not isinstance(values, list) or not values:
                raise _refuse("an enum that is not a non-empty list", param)
            if isinstance(kind, str) and not all(_is(v, kind) for v in values):
                raise _refuse(f"{keyword} values that are not of type {kind}", param)
            if "const" in node and "enum" in node and node["const"] not in node["enum"]:
                raise _refuse("a const that is not among the enum's values", param)
    if "allOf" in node:
        for part in node["allOf"] if isinstance(node["allOf"], list) else [None]:
            allowed = {"type", "properties", "required", "additionalProperties", "$ref", *_ANNOTATIONS}
            if not isinstance(part, dict) or set(part) - allowed or part.get("type", "object") != "object":
                raise _refuse("allOf other than of objects' properties and required", param)
        _alone(node, "allOf", param, also=("type",))
    if "format" in node and node["format"] not in _FORMATS:
        raise _refuse(f"format {node['format']!r} (enforced: {', '.join(sorted(_FORMATS))})", param)
    if "pattern" in node or "format" in node:
        with_length = [k for k in _LENGTHS if k in node]
        if with_length or ("pattern" in node and "format" in node):
            raise _refuse(f"{', '.join([*with_length, 'format'][:2])} together with "
                          f"{'pattern' if 'pattern' in node else 'format'} (only one is kept)", param)
    out = dict(node)
    if "pattern" in node:
        out["pattern"] = json_safe_pattern(str(node["pattern"]), param)
    if kind is None and any(k in node for k in _LENGTHS) and "pattern" not in node:
        out["type"] = "string"  # applied only to strings by the converter: make it one (a string is valid)
    if kind in (None, "array") and any(k in node for k in ("minItems", "maxItems")):
        if "prefixItems" in node or isinstance(node.get("items"), list):
            raise _refuse("minItems/maxItems with prefixItems (tuples have their own length)", param)
        out.setdefault("items", _ANY)
    if "prefixItems" in node and "items" in node:
        raise _refuse("items beside prefixItems", param)
    required = node.get("required")
    if isinstance(required, list):
        missing = [r for r in required if r not in (node.get("properties") or {})]
        if missing and "allOf" not in node:
            raise _refuse(f"required {', '.join(map(str, missing))} without a schema in properties", param)
    return out


def enforceable(node: Any, param: str) -> Any:
    """The schema rewritten for the converter; refused where a keyword would not be enforced."""
    if isinstance(node, list):
        return [enforceable(n, param) for n in node]
    if not isinstance(node, dict):
        return node
    node = _rewrite(node, param)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("enum", "const", "default", "examples", "description", "title", "pattern"):
            out[key] = value
        elif key in _MAPS and isinstance(value, dict):  # names, not keywords
            out[key] = {name: enforceable(sub, param) for name, sub in value.items()}
        else:
            out[key] = enforceable(value, param)
    if any(k in node for k in _RANGE):
        if node.get("type") != "integer" or "enum" in node:
            raise _refuse("minimum/maximum other than on integers", param)
        low = node.get("minimum", node["exclusiveMinimum"] + 1 if "exclusiveMinimum" in node else None)
        high = node.get("maximum", node["exclusiveMaximum"] - 1 if "exclusiveMaximum" in node else None)
        if not isinstance(low, int) or not isinstance(high, int) or not 0 <= high - low < MAX_RANGE:
            raise _refuse(f"integer ranges other than of at most {MAX_RANGE} values, with both bounds", param)
        out = {k: v for k, v in out.items() if k not in _RANGE and k != "type"}
        out["enum"] = list(range(low, high + 1))
    return out


# --- patterns ---------------------------------------------------------------------------------

#: What a JSON string may not hold raw: the quote, the backslash, control characters.
_FORBIDDEN = [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F)]
_SHORTHANDS = {"d": [(0x30, 0x39)], "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
               "s": [(0x20, 0x20)]}  # \s: the space (a tab or newline would need escaping in JSON)
#: Escapes the converter reads itself outside a class (quantifiers, groups, alternation).
_CONVERTER_ESCAPES = set("[]()|{}*+?")
_TOP = 0x10FFFF


def _subtract(ranges: list[tuple[int, int]], cut: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        pieces = [(lo, hi)]
        for clo, chi in cut:
            pieces = [p for a, b in pieces for p in ((a, min(b, clo - 1)), (max(a, chi + 1), b)) if p[0] <= p[1]]
        out.extend(pieces)
    return out


def _invert(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return _subtract([(0, _TOP)], ranges)


def _class(ranges: list[tuple[int, int]], param: str) -> str:
    """A positive character class in the converter's (and llama.cpp's) syntax, none forbidden in it."""
    allowed = _subtract(ranges, _FORBIDDEN)
    if not allowed:
        raise _refuse("a pattern character class that only allows characters a JSON string escapes", param)
    return "[" + "".join(f"\\U{lo:08X}" if lo == hi else f"\\U{lo:08X}-\\U{hi:08X}" for lo, hi in allowed) + "]"


def _read_class(pattern: str, i: int, param: str) -> tuple[list[tuple[int, int]], int]:
    """The ranges of the class starting after `[` at `i`, and the index after its `]`."""
    negated = pattern.startswith("^", i)
    i += negated
    ranges: list[tuple[int, int]] = []
    first = True
    while i < len(pattern) and (pattern[i] != "]" or first):
        first = False
        if pattern[i] == "\\":
            esc = pattern[i + 1:i + 2]
            i += 2
            if esc in _SHORTHANDS:
                ranges.extend(_SHORTHANDS[esc])
                continue
            if not esc or esc.isalnum():
                raise _refuse(f"the pattern escape \\{esc} in a character class", param)
            lo = ord(esc)
        else:
            lo = ord(pattern[i])
            i += 1
        hi = lo
        if pattern.startswith("-", i) and i + 1 < len(pattern) and pattern[i + 1] != "]":
            end = pattern[i + 1]
            if end == "\\":
                end = pattern[i + 2:i + 3]
                if not end or end.isalnum():
                    raise _refuse("a pattern range ending in an escape", param)
                i += 1
            hi = ord(end)
            i += 2
            if hi < lo:
                raise _refuse("a pattern range out of order", param)
        ranges.append((lo, hi))
    if i >= len(pattern):
        raise _refuse("a pattern with an unclosed character class", param)
    return (_invert(ranges) if negated else ranges), i + 1


def json_safe_pattern(pattern: str, param: str) -> str:
    """The pattern rewritten so that every string it lets the grammar write is a valid JSON string.

    Anchored (``^...$``) as the converter requires; an unanchored pattern is anchored, which only
    narrows it (JSON Schema's pattern searches: a string the whole pattern matches also contains a
    match). Classes are written out without the quote, the backslash and control characters;
    ``\\d``, ``\\w`` and ``\\s`` (as the space) become classes; ``.`` the class of everything else.
    """
    body = pattern[1:] if pattern.startswith("^") else pattern
    body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            esc = body[i + 1:i + 2]
            if esc in _SHORTHANDS:
                out.append(_class(_SHORTHANDS[esc], param))
            elif esc.lower() in _SHORTHANDS:
                out.append(_class(_invert(_SHORTHANDS[esc.lower()]), param))
            elif esc in _CONVERTER_ESCAPES:
                out.append(c + esc)
            elif esc and not esc.isalnum() and (0x20 < ord(esc) < 0x7F):
                out.append(_class([(ord(esc), ord(esc))], param))
            else:
                raise _refuse(f"the pattern escape \\{esc} (backreferences, word boundaries and character "
                              "escapes are not enforced)", param)
            i += 2
        elif c == "[":
            ranges, i = _read_class(body, i + 1, param)
            out.append(_class(ranges, param))
        elif c == ".":
            out.append(_class(_invert([]), param))
            i += 1
        elif c in "^$":
            raise _refuse(f"{c!r} inside a pattern (only at its ends)", param)
        elif ord(c) < 0x20 or c in '"\x7f':
            raise _refuse("a pattern holding a quote or a control character", param)
        else:
            out.append(c)
            i += 1
    return "^" + "".join(out) + "$"
