"""A small LRU of built hunting results, so a repeated 100,000-row query is served from memory."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ResultCache(Generic[T]):
    """LRU bounded by entry count and total size; concurrent requests for one key build it once."""

    def __init__(self, size_of: Callable[[T], int], max_entries: int = 4, max_bytes: int = 800_000_000) -> None:
        self._size_of = size_of
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._building: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()

    def get_or_build(self, key: Hashable, build: Callable[[], T]) -> T:
        """The cached value for ``key``, building (once, even under concurrency) if absent."""
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
                pending = self._building.get(key)
                if pending is None:
                    pending = self._building[key] = threading.Event()
                    break
            pending.wait()  # another thread is building it; then look again
        try:
            value = build()
            with self._lock:
                self._items[key] = value
                self._evict()
            return value
        finally:
            with self._lock:
                del self._building[key]
            pending.set()

    def _evict(self) -> None:
        total = sum(self._size_of(v) for v in self._items.values())
        while len(self._items) > 1 and (len(self._items) > self.max_entries or total > self.max_bytes):
            _, old = self._items.popitem(last=False)
            total -= self._size_of(old)

    def clear(self) -> None:
        """Drop every cached result."""
        with self._lock:
            self._items.clear()
