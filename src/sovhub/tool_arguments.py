"""The string values inside a tool call's JSON arguments, from whole or still-streaming JSON.

The hazard guards read sentences: a question wrapped in ``{"q": "..."}`` scores far below the same
question on its own (0.94 vs nothing found, measured), so a call's arguments are judged unwrapped as
well as raw, on the way in (``safety/interceptor.py``) and on the way out (``api/chat/gate.py``).
An answer's arguments arrive in pieces that are not JSON until the last one; the values are read
from the text so far, and the result only ever grows at its end as more arrives (a guard that
remembers how far it read can go on from there).
"""

from __future__ import annotations

__all__ = ["argument_values"]

_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def argument_values(arguments: str) -> str:
    """The string values (not the keys) inside JSON arguments, in order, one per line; blank ones left out.

    Reads what it can of text that is not (yet) JSON: the values so far, the last one as far as it
    came. Text without a quoted string gives "".
    """
    values: list[str] = []
    # Open containers ("{" or "["), and whether the next string of the innermost object is a key.
    stack: list[str] = []
    expect_key = False
    i, end = 0, len(arguments)
    while i < end:
        char = arguments[i]
        if char == '"':
            text, i, closed = _read_string(arguments, i + 1)
            if not (stack and stack[-1] == "{" and expect_key):
                values.append(text)
            if not closed:
                break
            continue
        if char == "{":
            stack.append("{")
            expect_key = True
        elif char == "[":
            stack.append("[")
        elif char in "}]":
            if stack:
                stack.pop()
            expect_key = False
        elif char == ":":
            expect_key = False
        elif char == ",":
            expect_key = bool(stack) and stack[-1] == "{"
        i += 1
    return "\n".join(v for v in values if v.strip())


def _read_string(text: str, start: int) -> tuple[str, int, bool]:
    """The string whose body starts at ``start``: (decoded, index after it, whether it was closed).

    An escape cut off at the end of the text is left out until the rest of it arrives, so the
    decoded prefix never changes once returned.
    """
    out: list[str] = []
    i, end = start, len(text)
    while i < end:
        char = text[i]
        if char == '"':
            return "".join(out), i + 1, True
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= end:
            break
        code = text[i + 1]
        if code != "u":
            out.append(_ESCAPES.get(code, code))
            i += 2
            continue
        unit = _hex4(text, i + 2)
        if unit is None:
            if i + 6 > end:
                break  # cut off: wait for the rest
            out.append("\ufffd")
            i += 2
            continue
        if 0xD800 <= unit < 0xDC00:
            # A high surrogate pairs with the low one that follows: one character.
            follow = text[i + 6 : i + 12]
            if len(follow) < 6 and _may_become_escape(follow):
                break  # cut off: wait for the rest
            low = _hex4(text, i + 8) if follow.startswith("\\u") else None
            if low is not None and 0xDC00 <= low < 0xE000:
                out.append(chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)))
                i += 12
                continue
            out.append("\ufffd")
            i += 6
            continue
        out.append("\ufffd" if 0xDC00 <= unit < 0xE000 else chr(unit))
        i += 6
    return "".join(out), end, False


def _may_become_escape(fragment: str) -> bool:
    """Whether ``fragment`` (under 6 characters) may still become a ``\\uXXXX`` escape."""
    return "\\u".startswith(fragment[:2]) and all(c in _HEX for c in fragment[2:])


def _hex4(text: str, at: int) -> int | None:
    digits = text[at : at + 4]
    if len(digits) != 4 or any(c not in _HEX for c in digits):
        return None
    return int(digits, 16)
