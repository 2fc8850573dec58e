"""The emulator's view of one HTTP exchange: a parsed request and the response a handler returns.

Handlers never touch sockets. They return a :class:`Response`, and the server decides how to put it on
the wire (or how to break it, when a fault says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


def dumps(obj: Any) -> bytes:
    """Serialise like the real services: compact, UTF-8, non-ASCII left as is."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


JSON_TYPE = "application/json; charset=utf-8"
#: What Microsoft Graph declares on its JSON answers.
GRAPH_JSON_TYPE = ("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
                   "charset=utf-8")


@dataclass
class Request:
    """One parsed HTTP request.

    ``headers`` has lower-case names; ``query`` maps each parameter to its last value; ``base_url`` is the
    scheme://host:port the request arrived at.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    base_url: str
    client: str = ""  # the peer's address

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` when it is not."""
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    """What a handler answers. ``parts`` are written back to back; big bodies stay unjoined."""

    status: int
    parts: list[bytes] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = JSON_TYPE

    @property
    def length(self) -> int:
        """Total body length in bytes."""
        return sum(len(p) for p in self.parts)

    def body(self) -> bytes:
        """The whole body as one bytes object (copies; avoid for big bodies)."""
        return b"".join(self.parts)

    def header(self, name: str) -> str | None:
        """The first header value with that name, if any."""
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)


def json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None,
                  content_type: str = JSON_TYPE) -> Response:
    """A JSON response."""
    return Response(status, [dumps(obj)], list(headers or []), content_type)
