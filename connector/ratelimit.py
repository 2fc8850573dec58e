"""Per-tenant rate limiting for the documented Defender quotas.

Sliding windows: "at most N calls in any period P" for each (N, P), so 45/min and 1,500/h are
kept exactly, and parallel flows in one process queue here instead of spending their retry budget
on 429s.

The service counts a call when it *arrives*, which is some time after the limiter lets it go (a
token fetch, a TLS handshake, a busy network). Booking a slot at release time and freeing it one
period later would let the next window start before the service's does, and the first calls of
each new window would meet 429s. So a slot is held by a :meth:`RateLimiter.slot` context and
re-stamped when the call ends: the service saw the call between the two stamps, and the slot is
freed one period after the later one.

Across processes (several workers), plug in another :class:`Limiter` (see ``slot``), such as
Prefect's global concurrency limits; the connector itself never imports Prefect.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol


class Limiter(Protocol):
    """What the transport needs from a limiter: a context that holds one call's slot."""

    def slot(self) -> contextlib.AbstractContextManager[object]: ...


class RateLimiter:
    """Blocks :meth:`slot` until a call fits in every window; thread-safe."""

    def __init__(
        self,
        limits: Sequence[tuple[int, float]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._calls: list[list[float]] = []
        self.limits = limits  # property setter
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    @property
    def limits(self) -> tuple[tuple[int, float], ...]:
        """The (count, period seconds) windows in force."""
        return self._limits

    @limits.setter
    def limits(self, limits: Sequence[tuple[int, float]]) -> None:
        limits = tuple((int(n), float(p)) for n, p in limits)
        self._limits = limits
        self._longest = max((p for _, p in limits), default=0.0)
        self._calls = self._calls or []

    @contextlib.contextmanager
    def slot(self) -> Iterator[float]:
        """Wait for room, hold a slot for the call inside the ``with``, re-stamp it when the call ends.

        Yields the seconds this call waited.
        """
        stamp, waited = self._book()
        try:
            yield waited
        finally:
            self._restamp(stamp)

    def acquire(self) -> float:
        """Book a slot stamped now (for a call that is not timed with :meth:`slot`); returns the wait."""
        return self._book()[1]

    def would_wait(self) -> float:
        """Seconds the next call would wait now (0 when one fits); books nothing."""
        with self._lock:
            return self._delay(self._clock())

    def _delay(self, now: float) -> float:
        # Drop stamps older than the longest window; then, per window, the oldest stamp inside it
        # that must leave before one more call fits.
        calls = self._calls
        cut = bisect.bisect_right(calls, [now - self._longest, float("inf")])
        if cut:
            del calls[:cut]
        delay = 0.0
        for count, period in self._limits:
            inside = len(calls) - bisect.bisect_right(calls, [now - period, float("inf")])
            if inside >= count:
                delay = max(delay, calls[len(calls) - count][0] + period - now)
        return delay

    def _book(self) -> tuple[list[float], float]:
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay(now)
                if delay <= 0:
                    stamp = [now, id(object())]
                    bisect.insort(self._calls, stamp)
                    return stamp, waited
            self._sleep(delay)
            waited += delay

    def _restamp(self, stamp: list[float]) -> None:
        with self._lock:
            index = bisect.bisect_left(self._calls, stamp)
            if index < len(self._calls) and self._calls[index] is stamp:
                del self._calls[index]
                stamp[0] = max(stamp[0], self._clock())
                bisect.insort(self._calls, stamp)


# One limiter per (cloud, tenant, quota family), least recently used dropped past the bound: a
# process that has seen thousands of tenants (or rotated settings) does not keep them all.
_MAX_LIMITERS = 512
_registry: OrderedDict[tuple, RateLimiter] = OrderedDict()
_registry_lock = threading.Lock()


#: ``factory(key, limits) -> Limiter``: where limiters come from when not from this process (see
#: :func:`set_limiter_factory`); None for the in-process limiters.
LimiterFactory = Callable[[tuple, Sequence[tuple[int, float]]], Limiter]
_factory: LimiterFactory | None = None


def set_limiter_factory(factory: LimiterFactory | None) -> LimiterFactory | None:
    """Take limiters from ``factory`` from now on (None: back to the in-process ones); returns the old one.

    The hook for quotas shared across processes: the flows install one backed by Prefect's global
    concurrency limits, so that workers on several machines together stay inside a tenant's quota.
    ``factory(key, limits)`` gets the key (cloud, tenant, quota family) and the (count, seconds)
    windows, and returns an object with a ``slot()`` context manager.
    """
    global _factory
    with _registry_lock:
        previous, _factory = _factory, factory
        return previous


def limiter_for(key: tuple, limits: Sequence[tuple[int, float]]) -> Limiter:
    """The limiter for ``key`` (cloud, tenant, quota family): the installed factory's, else the process's.

    In-process, clients of one tenant share it; the limits of the newest client win (a setting
    changed on a tenant takes effect without leaving the old limiter behind).
    """
    factory = _factory
    if factory is not None:
        return factory(key, limits)
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = _registry[key] = RateLimiter(limits)
            while len(_registry) > _MAX_LIMITERS:
                _registry.popitem(last=False)
        else:
            _registry.move_to_end(key)
            wanted = tuple((int(n), float(p)) for n, p in limits)
            if limiter.limits != wanted:
                with limiter._lock:
                    limiter.limits = wanted
        return limiter


def registry_size() -> int:
    """How many tenant limiters the process holds (bounded)."""
    with _registry_lock:
        return len(_registry)
