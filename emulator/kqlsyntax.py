"""KQL lexing helpers and the service's error messages, shared by the KQL modules."""

from __future__ import annotations

import re

MAX_ROWS = 100_000
DEFAULT_ROWS = 100
RECOGNITION_ERROR = "A recognition error occurred."
RESULT_TOO_LARGE = ("Query execution has exceeded the allowed result size. Optimize your query by limiting "
                    "the number of results and try again")


class KqlError(Exception):
    """A query the service would refuse with 400; ``str(err)`` is the service's message."""


def unresolved(op: str, name: str) -> KqlError:
    """The service's error for an unknown column in operator ``op``."""
    return KqlError(f"'{op}' operator: Failed to resolve scalar expression named '{name}'")


# ---------------------------------------------------------------- lexing helpers

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACKETED = re.compile(r"""\[\s*(['"])(.*?)\1\s*\]""")
_OPENERS, _CLOSERS = "([{", ")]}"


def strip_and_check(text: str) -> str:
    """Remove ``//`` comments; raise on unbalanced quotes or brackets."""
    out: list[str] = []
    stack: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "/" and text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch in "'\"":
            verbatim = i > 0 and text[i - 1] == "@"
            j = i + 1
            while j < n:
                if text[j] == "\\" and not verbatim:
                    j += 2
                    continue
                if text[j] == ch:
                    break
                if text[j] == "\n":
                    raise KqlError(RECOGNITION_ERROR)
                j += 1
            if j >= n:
                raise KqlError(RECOGNITION_ERROR)
            out.append(text[i: j + 1])
            i = j + 1
            continue
        if ch in _OPENERS:
            stack.append(_CLOSERS[_OPENERS.index(ch)])
        elif ch in _CLOSERS:
            if not stack or stack.pop() != ch:
                raise KqlError(RECOGNITION_ERROR)
        out.append(ch)
        i += 1
    if stack:
        raise KqlError(RECOGNITION_ERROR)
    return "".join(out)


def split_top(text: str, sep: str) -> list[str]:
    """Split on a one-character separator outside strings and brackets (input already validated)."""
    parts, depth, start, i, n = [], 0, 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            verbatim = i > 0 and text[i - 1] == "@"
            i += 1
            while i < n and text[i] != ch:
                i += 1 if verbatim or text[i] != "\\" else 2
        elif ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def split_keyword(text: str, word: str) -> tuple[str, str | None]:
    """Split at the first top-level whole-word ``word`` (e.g. ``by``)."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            verbatim = i > 0 and text[i - 1] == "@"
            i += 1
            while i < n and text[i] != ch:
                i += 2 if text[i] == "\\" and not verbatim else 1
        elif ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
        elif depth == 0 and text.startswith(word, i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = i + len(word)
            if end == n or not (text[end].isalnum() or text[end] == "_"):
                return text[:i], text[end:]
        i += 1
    return text, None


def assignment(item: str) -> tuple[str | None, str]:
    """``Name = expr`` -> (Name, expr); a plain ``expr`` -> (None, expr)."""
    m = re.match(r"\s*(\[\s*(['\"]).*?\2\s*\]|[A-Za-z_][A-Za-z0-9_]*)\s*=(?![=~])", item)
    if not m:
        return None, item.strip()
    return name_of(m.group(1)), item[m.end():].strip()


def name_of(token: str) -> str:
    """A column name from ``Name`` or ``['Name']``."""
    token = token.strip()
    m = _BRACKETED.fullmatch(token)
    return m.group(2) if m else token


def is_ident(token: str) -> bool:
    """Whether the token is a plain or bracketed identifier."""
    token = token.strip()
    return bool(IDENT.fullmatch(token) or _BRACKETED.fullmatch(token))


def items(text: str) -> list[str]:
    """Comma-separated items; an empty one is a recognition error."""
    items = [p.strip() for p in split_top(text, ",")]
    if not items or any(not p for p in items):
        raise KqlError(RECOGNITION_ERROR)
    return items
