"""A thread-safe per-tenant rate limiter for the documented Defender quotas.

Sliding windows: "at most N calls in any period P" for each (N, P), so 45/min and 1,500/h are
kept exactly, and parallel flows in one process queue here instead of spending their retry budget
on 429s. Across processes, use Prefect global concurrency limits (see the README).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence


class RateLimiter:
    """Blocks ``acquire()`` until a call fits in every window."""

    def __init__(
        self,
        limits: Sequence[tuple[int, float]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = tuple((int(n), float(p)) for n, p in limits)
        self._calls = [deque() for _ in self.limits]
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def acquire(self) -> float:
        """Wait until a call is allowed, record it, and return how long this call waited (seconds)."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                delay = 0.0
                for (count, period), calls in zip(self.limits, self._calls, strict=True):
                    while calls and calls[0] <= now - period:
                        calls.popleft()
                    if len(calls) >= count:
                        delay = max(delay, calls[0] + period - now)
                if delay <= 0:
                    for calls in self._calls:
                        calls.append(now)
                    return waited
            self._sleep(delay)
            waited += delay

    def would_wait(self) -> float:
        """Seconds the next ``acquire()`` would wait now (0 when a call fits); records nothing."""
        with self._lock:
            now = self._clock()
            return max(
                [0.0] + [calls[-count] + period - now
                         for (count, period), calls in zip(self.limits, self._calls, strict=True)
                         if len(calls) >= count]
            )


_registry: dict[tuple, RateLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(key: tuple, limits: Sequence[tuple[int, float]]) -> RateLimiter:
    """The process-wide limiter for ``key`` (e.g. cloud, tenant, quota family); one per distinct limits."""
    full_key = (*key, tuple(limits))
    with _registry_lock:
        limiter = _registry.get(full_key)
        if limiter is None:
            limiter = _registry[full_key] = RateLimiter(limits)
        return limiter
