"""The log of requests the emulator answered, for tests to inspect."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestRecord:
    """One request as received, and the status it was answered with (0 = connection dropped).

    ``headers`` has lower-case names and the ``Authorization`` value redacted; ``query`` maps each
    parameter to its last value; ``fault`` is the kind of the injected fault, if one applied.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int
    fault: str | None = None
    timestamp: float = field(default_factory=time.time)


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
