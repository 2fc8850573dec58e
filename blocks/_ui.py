"""What the Prefect UI forms need from a block's schema, and what they send back.

Measured on Prefect 3.9.1 in Chromium (tests/data/ui-payloads/README.md):

- An ``Optional[X]`` field becomes ``anyOf: [X, null]``. The V1 form draws it as an "X | null"
  switch that starts on X, so an untouched Key Vault reference is sent as ``{}``; the V2 form
  starts on "None" and prints 'Property is type "None"'. :func:`optional_field` publishes such a
  field as plain X with ``default: null`` instead: both forms then draw one input (a password box
  for a ``SecretStr`` in V2, a block picker for a nested block) and send nothing, or ``null``,
  when it is left empty.
- V2 draws ``format: password`` as a one-line masked input: a pasted PEM arrives with its line
  breaks turned into spaces (:func:`repair_pem`). V1 has no masked input at all (Prefect's own
  Secret block is a plain text box there too); it keeps line breaks.
- Either form may send ``""``, ``{}``, ``null`` or a nested block whose values are all empty for
  a field the user did not fill: :func:`drop_empty` turns each into "not set".
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from pydantic import Field


def collapse_optional(schema: dict[str, Any], *_: Any) -> None:
    """JSON-schema hook: ``anyOf: [X, null]`` becomes X (the default stays ``null``)."""
    variants = [s for s in schema.get("anyOf", ()) if s != {"type": "null"}]
    if "anyOf" in schema and len(variants) == 1:
        del schema["anyOf"]
        schema.update(variants[0])
    own_title(schema)


def own_title(schema: dict[str, Any], *_: Any) -> None:
    """JSON-schema hook: a ``$ref`` field keeps its own title and description in both UIs.

    V1 spreads the referenced definition over the field (its title, e.g. "AzureKeyVaultSecret", wins, so
    two Key Vault fields read the same); wrapped in ``allOf`` the field's own title and description win.
    """
    if "$ref" in schema:
        schema["allOf"] = [{"$ref": schema.pop("$ref")}]


def optional_field(*, title: str, description: str, **kwargs: Any) -> Any:
    """``Field(default=None, ...)`` drawn by both Prefect UIs as one input that may stay empty."""
    return Field(default=None, title=title, description=description, json_schema_extra=collapse_optional, **kwargs)


def is_empty(value: Any) -> bool:
    """True for what a form sends for an untouched field: None, blank text, ``{}``, or a dict of empties.

    A ``{"$ref": ...}`` (a link to a saved block) is never empty.
    """
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, dict):
        if "$ref" in value:
            return False
        return all(is_empty(v) for k, v in value.items() if k != "block_type_slug")
    return False


def drop_empty(data: Any, fields: tuple[str, ...]) -> Any:
    """A copy of a block's raw input without the listed fields that hold only empties."""
    if not isinstance(data, dict):
        return data
    return {k: v for k, v in data.items() if not (k in fields and is_empty(v))}


# --- PEM text pasted through a one-line box -------------------------------------------------

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+?)-----(.*?)-----END \1-----", re.S)
_HEADERS = re.compile(r"^\s*Proc-Type:\s*(\S+?)\s*DEK-Info:\s*([A-Za-z0-9-]+),([0-9A-Fa-f]+)(?=\s|$)", re.S)


class PemError(ValueError):
    """The text holds no readable PEM block; the message says what is wrong, never the text."""


def repair_pem(text: str) -> str:
    """PEM text rebuilt from a paste that lost its line breaks (spaces instead, or nothing, or ``\\n``).

    Each ``-----BEGIN X----- ... -----END X-----`` block keeps its label and (legacy encrypted
    keys) its ``Proc-Type``/``DEK-Info`` headers; its base64 body is re-wrapped at 64 characters.
    Text outside the blocks (a ``Bag Attributes`` preamble) is dropped. Raises :class:`PemError`.
    """
    text = text.replace("\\r", "").replace("\\n", "\n")
    blocks = []
    for match in _PEM.finditer(text):
        label, body = match.group(1).strip(), match.group(2)
        headers = ""
        found = _HEADERS.match(body)
        if found:
            headers = f"Proc-Type: {found.group(1)}\nDEK-Info: {found.group(2)},{found.group(3)}\n\n"
            body = body[found.end():]
        data = "".join(body.split())
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise PemError(f"the {label} block is not valid base64 (was the text cut or edited?)") from None
        lines = "\n".join(data[i:i + 64] for i in range(0, len(data), 64))
        blocks.append(f"-----BEGIN {label}-----\n{headers}{lines}\n-----END {label}-----\n")
    if not blocks:
        raise PemError("no PEM block found (expected -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE----- "
                       "and the private key's block)")
    return "".join(blocks)


__all__ = ["PemError", "collapse_optional", "drop_empty", "is_empty", "optional_field", "own_title", "repair_pem"]
