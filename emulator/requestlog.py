"""The log of requests the emulator answered, for tests to inspect. It keeps no secret.

Credentials are redacted before a request is recorded: the ``Authorization`` value (bearer tokens, Basic
credentials), ``client_secret`` / ``client_assertion`` / token fields in form and JSON bodies and in query
strings, anything shaped like a JWT, and the registered apps' secrets wherever they appear.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote_plus

REDACTED = "<redacted>"
_SECRET_FIELDS = ("client_secret", "client_assertion", "assertion", "access_token", "refresh_token", "id_token",
                  "password", "clientsecret", "accesstoken", "refreshtoken")
_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-ms-authorization-auxiliary")
_FORM_FIELD = re.compile(rb"(?i)(^|&)(" + b"|".join(f.encode() for f in _SECRET_FIELDS) + rb")=[^&]*")
_JSON_FIELD = re.compile(rb'(?i)("(?:' + b"|".join(f.encode() for f in _SECRET_FIELDS) + rb')"\s*:\s*)"(?:[^"\\]|\\.)*"')
_JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# Shorter "secrets" (test apps register "s3cr3t"-like values) would blank out ordinary words.
_MIN_SCRUBBED = 8


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers with credential values replaced (the scheme of ``Authorization`` is kept: ``Bearer <redacted>``)."""
    out = dict(headers)
    for name in _SECRET_HEADERS:
        if name in out:
            scheme, sep, _ = out[name].strip().partition(" ")
            out[name] = f"{scheme} {REDACTED}" if sep and name.endswith("authorization") else REDACTED
    return out


def redact_query(query: dict[str, str]) -> dict[str, str]:
    """Query parameters with credential values replaced."""
    return {k: REDACTED if k.lower() in _SECRET_FIELDS else v for k, v in query.items()}


def redact_body(body: bytes, known: Iterable[str] = ()) -> bytes:
    """A body with form and JSON credential fields, JWTs and ``known`` secret values replaced."""
    if not body:
        return body
    body = _FORM_FIELD.sub(rb"\1\2=%3Credacted%3E", body)
    body = _JSON_FIELD.sub(rb'\1"<redacted>"', body)
    body = _JWT.sub(b"<redacted-jwt>", body)
    return scrub(body, known)


def scrub(data: bytes, known: Iterable[str]) -> bytes:
    """``data`` with every occurrence of the ``known`` secrets (raw or form-encoded) replaced."""
    for secret in known:
        if secret and len(secret) >= _MIN_SCRUBBED:
            for form in {secret.encode(), quote_plus(secret).encode()}:
                data = data.replace(form, REDACTED.encode())
    return data


@dataclass(frozen=True)
class RequestRecord:
    """One request as received (credentials redacted), and the status it was answered with (0 = dropped).

    ``headers`` has lower-case names and the ``Authorization`` value redacted; ``query`` maps each
    parameter to its last value; ``fault`` is the kind of the injected fault, if one applied;
    ``base_url`` is the host it arrived at. Build one with :meth:`redacted`, which removes every credential first.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int
    fault: str | None = None
    timestamp: float = field(default_factory=time.time)
    base_url: str = ""  # the scheme://host:port it arrived at (base_url, graph_url or mde_url)

    @classmethod
    def redacted(cls, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes,
                 status: int, fault: str | None = None, known_secrets: Iterable[str] = (),
                 base_url: str = "") -> RequestRecord:
        """A record of a request with its credentials (and ``known_secrets`` anywhere) redacted."""
        known = tuple(known_secrets)
        query = {k: scrub(v.encode(), known).decode() for k, v in redact_query(query).items()}
        headers = {k: scrub(v.encode("latin-1", "replace"), known).decode("latin-1")
                   for k, v in redact_headers(headers).items()}
        return cls(method, scrub(path.encode(), known).decode(), query, headers, redact_body(body, known),
                   status, fault, base_url=base_url)


class RequestLog:
    """A thread-safe, list-like record of requests (iterate, index, ``len``, ``clear``)."""

    def __init__(self) -> None:
        self._items: list[RequestRecord] = []
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        """Add a record (the server does this)."""
        with self._lock:
            self._items.append(record)

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._items.clear()

    def snapshot(self) -> list[RequestRecord]:
        """A copy of the records so far."""
        with self._lock:
            return list(self._items)

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        with self._lock:
            return self._items[index]

    def __repr__(self) -> str:
        return f"RequestLog({len(self)} requests)"
