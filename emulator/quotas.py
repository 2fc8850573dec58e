"""Per-tenant call quotas (sliding windows), e.g. hunting's 45 calls/minute and 1,500 calls/hour (§2a),
or 100/minute for each family of entity APIs (§3.2)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque


class QuotaTracker:
    """Counts accepted calls per key over the last minute and hour. Thread-safe.

    Limits are plain attributes so tests can lower them: ``emu.quotas.per_minute = 3``.
    Refused calls are not counted, like the real services.
    """

    def __init__(self, per_minute: int = 45, per_hour: int = 1500,
                 limits: dict[str, tuple[int, int]] | None = None) -> None:
        self.per_minute = per_minute
        self.per_hour = per_hour
        #: Bucket name (the last element of a key) -> (per minute, per hour), for buckets with their own limits.
        self.limits: dict[str, tuple[int, int]] = dict(limits or {})
        self._calls: dict[tuple[str, ...], deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: tuple[str, ...]) -> tuple[int, int, str] | None:
        """Count one call; None if allowed, else (Retry-After seconds, limit, window text)."""
        now = time.monotonic()
        per_minute, per_hour = self.limits.get(key[-1], (self.per_minute, self.per_hour)) if key else (
            self.per_minute, self.per_hour)
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - 3600:
                calls.popleft()
            in_minute = sum(1 for t in reversed(calls) if t > now - 60) if len(calls) >= per_minute else 0
            if in_minute >= per_minute:
                oldest = calls[len(calls) - in_minute]
                return max(1, math.ceil(oldest + 60 - now)), per_minute, "1 minute(s)"
            if len(calls) >= per_hour:
                return max(1, math.ceil(calls[0] + 3600 - now)), per_hour, "1 hour(s)"
            calls.append(now)
            return None

    def reset(self) -> None:
        """Forget all counted calls."""
        with self._lock:
            self._calls.clear()
