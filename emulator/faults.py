"""Programmable faults: what goes wrong, on which requests, and how many times.

A fault is armed with ``emu.faults.add(Fault(...))``. Each request is checked against the armed faults
in the order they were added; the first that matches is consumed (``times`` counts down) and decides
how the request is answered. The server applies it (see ``server.py``).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

#: kind -> what it does (parameters in brackets).
KINDS: dict[str, str] = {
    "status": "answer [status] with that API family's error body [code, message]; [retry_after] adds Retry-After",
    "slow": "wait [delay] seconds, then answer normally",
    "drop": "read the request, then close the connection with no response ([reset]=True sends a TCP RST)",
    "malformed": "200 with a body that is not JSON [body, content_type]",
    "truncated": "200 with the real body cut in half: Content-Length of the cut ([full_length]=True: declare "
                 "the full length, send half, close)",
    "html": "[status] (default 502) with a text/html gateway error page",
    "expired_token": "401 as if the bearer token had expired",
    "result_too_large": "400 'Query execution has exceeded the allowed result size...'",
    "cpu_quota": "429 'You have exceeded processing resources allocated to this tenant...' + Retry-After "
                 "[retry_after, default 1]",
}

# Families a fault with no ``path`` applies to: every API, but not the Entra endpoints.
API_FAMILIES = frozenset({"graph", "mde", "xdr", "keyvault"})


@dataclass
class Fault:
    """One scripted failure.

    ``path`` is a regex searched in the request path (no query string). Without it the fault matches
    any API request but never the Entra token/discovery endpoints; give a ``path`` such as
    ``r"/oauth2/v2.0/token"`` to target those. ``method`` and ``api`` (graph | mde | xdr | keyvault |
    entra) narrow it further. ``after`` lets that many matching requests through first. ``times`` is
    how many requests it hits (None = every one, forever).
    """

    kind: str
    path: str | None = None
    method: str | None = None
    api: str | None = None
    times: int | None = 1
    after: int = 0
    status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: int | float | str | None = None
    delay: float = 5.0
    reset: bool = False
    full_length: bool = False
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.kind == "status" and self.status is None:
            raise ValueError("Fault(kind='status') needs status=...")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1, or None for unlimited")
        if self.path is not None:
            re.compile(self.path)

    def matches(self, method: str, path: str, family: str) -> bool:
        """Whether this fault applies to a request (ignoring ``times``/``after`` bookkeeping)."""
        if self.method and self.method.upper() != method.upper():
            return False
        if self.api and self.api != family:
            return False
        if self.path is None:
            return family in API_FAMILIES
        return re.search(self.path, path) is not None


@dataclass
class _Armed:
    fault: Fault
    remaining: int | None
    to_skip: int


class FaultSet:
    """The armed faults of one emulator. Thread-safe."""

    def __init__(self) -> None:
        self._armed: list[_Armed] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        """Arm a fault; returns it."""
        with self._lock:
            self._armed.append(_Armed(fault, fault.times, fault.after))
        return fault

    def remove(self, fault: Fault) -> None:
        """Disarm one fault (no error if it is already spent)."""
        with self._lock:
            self._armed = [a for a in self._armed if a.fault is not fault]

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._armed.clear()

    def pending(self) -> list[tuple[Fault, int | None]]:
        """Armed faults with how many hits each has left (None = unlimited)."""
        with self._lock:
            return [(a.fault, a.remaining) for a in self._armed]

    def take(self, method: str, path: str, family: str) -> Fault | None:
        """Consume and return the first armed fault matching this request, if any."""
        with self._lock:
            for armed in self._armed:
                if not armed.fault.matches(method, path, family):
                    continue
                if armed.to_skip > 0:
                    armed.to_skip -= 1
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining <= 0:
                        self._armed.remove(armed)
                return armed.fault
        return None


_SPEC_TYPES = {"status": int, "times": int, "after": int, "delay": float, "reset": bool, "full_length": bool}


def _spec_value(name: str, text: str) -> object:
    if text.lower() in ("none", "null", "inf", "*") and name in ("times", "status", "retry_after", "code", "message",
                                                                 "path", "method", "api"):
        return None
    kind = _SPEC_TYPES.get(name)
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name} must be true or false, not {text!r}")
        return text.lower() in ("true", "1", "yes")
    if kind is not None:
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, not {text!r}") from None
    if name == "retry_after":
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text  # an HTTP-date
    if name == "body":
        return text.encode("utf-8")
    return text


def parse_fault_spec(spec: str) -> Fault:
    """A fault from ``KIND[:name=value,name=value...]``, e.g. ``status:status=503,times=2,api=graph``.

    Values are converted to the field's type; ``times=inf`` means every matching request. A ``path`` regex
    that needs a comma cannot be given this way (use ``POST /_emulator/faults``).
    """
    kind, _, rest = spec.strip().partition(":")
    fields: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise ValueError(f"expected name=value, not {item!r}")
        if name not in Fault.__dataclass_fields__ or name in ("kind", "headers"):
            known = ", ".join(sorted(set(Fault.__dataclass_fields__) - {"kind", "headers"}))
            raise ValueError(f"unknown fault field {name!r}; known: {known}")
        fields[name] = _spec_value(name, value.strip())
    return Fault(kind.strip(), **fields)  # type: ignore[arg-type]
