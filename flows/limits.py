"""Tenant quotas held across processes: Prefect global concurrency limits behind the connector's limiter hook.

The connector paces each tenant inside one process (``connector.ratelimit``). When flows run in
several processes (a ``serve`` that starts each run as a subprocess, workers on several machines),
each process would allow the whole quota. Installed here, every limiter the connector asks for is
backed by Prefect global concurrency limits used as rate limits, one per tenant, API family and
window, created on first use::

    from flows.limits import use_prefect_limits
    use_prefect_limits()            # or DEFENDER_SOAR_SHARED_LIMITS=prefect in the worker's environment

A limit named ``defender-hunting-global-<tenant id>-60s`` then holds hunting's 45 calls a minute
for every process of every worker together (``-3600s`` its 1,500 an hour; ``defender-graph-...``,
``defender-mde-...`` the entity APIs' 100 a minute).

**Why capacity and decay are what they are.** A Prefect rate limit is a token bucket: ``limit``
slots (the burst) and ``slot_decay_per_second`` (the refill). A bucket of capacity C and refill r
lets C + r*W calls through in any window of W seconds, so C = Q and r = Q/P (the obvious choice for
Q calls per P seconds) would allow 2Q in a window. We keep C + r*(P + m) <= Q instead: C is a tenth
of the quota (at least 1) and r = (Q - C) / (P + m), where m (up to 2 s) covers the time between
taking a slot and the call reaching the service, which counts it on arrival. **The cost** is
throughput: the long-run rate is (Q - C) / (P + m), 39.7 calls a minute instead of 45 (88 %) for
hunting, 1,349 an hour instead of 1,500 (90 %). The server also rounds decay down at every update
of the limit, and waiters poll it with Prefect's Retry-After, so the measured rate is lower still:
two processes hunting one tenant flat out at 45 a minute made 32.4 calls a minute (72 % of the
quota; at most 34 in any minute), 20 per 10 s made 67 % of it. It never went above the quota.
Inside a process the connector's own sliding-window limiter still runs first, so threads of one
process queue locally and ask the server only when a call is about to go.

If the Prefect API cannot be reached, a call falls back to the in-process limiter (logged as a
warning): the tenant's quota then holds per process until the server is back.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence

from connector.ratelimit import LimiterFactory, RateLimiter, set_limiter_factory

log = logging.getLogger("flows.limits")

#: Environment variable that turns shared limits on in a flow-run process (``prefect``, ``1``, ``true``).
ENV = "DEFENDER_SOAR_SHARED_LIMITS"
#: Share of a window's quota the bucket may hand out at once.
BURST_FRACTION = 0.1
#: Longest expected time, in seconds, between taking a slot and the call arriving at the service.
ARRIVAL_MARGIN = 2.0
_ON = {"prefect", "1", "true", "yes", "on"}


def bucket(count: int, period: float, *, burst_fraction: float = BURST_FRACTION,
           margin: float = ARRIVAL_MARGIN) -> tuple[int, float]:
    """(capacity, decay per second) of a token bucket that never lets more than ``count`` calls into any ``period``.

    Capacity C = ``burst_fraction`` of the quota (at least 1, at most count - 1); decay r = (count - C) / (period + m)
    with m = min(``margin``, period / 10), so C + r * (period + m) = count. A quota of 1 has no such bucket with a
    refill; it gets C = 1 and half that refill (at most one call per window whenever calls arrive within m).
    """
    count = int(count)
    period = float(period)
    if count < 1 or period <= 0:
        raise ValueError(f"a quota needs a positive count and period, not {count} per {period}s")
    m = min(margin, period / 10)
    if count == 1:
        return 1, 1 / (2 * (period + m))
    capacity = min(count - 1, max(1, math.floor(count * burst_fraction)))
    return capacity, (count - capacity) / (period + m)


def limit_name(key: tuple, period: float) -> str:
    """The global concurrency limit for one tenant, family and window: ``defender-<family>-<cloud>-<tenant>-<P>s``."""
    cloud, tenant, family = (str(part).lower() for part in key)
    seconds = f"{period:g}".replace(".", "_")
    raw = f"defender-{family}-{cloud}-{tenant}-{seconds}s"
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in raw)


class PrefectRateLimiter:
    """One tenant's limiter for one API family: the in-process sliding window, then Prefect's shared buckets."""

    def __init__(self, factory: PrefectLimits, key: tuple, limits: Sequence[tuple[int, float]]) -> None:
        self._factory = factory
        self.key = key
        self.limits = tuple((int(n), float(p)) for n, p in limits)
        self.names = [limit_name(key, p) for _, p in self.limits]
        self.buckets = [bucket(n, p, burst_fraction=factory.burst_fraction, margin=factory.margin)
                        for n, p in self.limits]
        self._local = RateLimiter(self.limits)

    def __repr__(self) -> str:
        return f"<PrefectRateLimiter {', '.join(self.names)}>"

    @contextlib.contextmanager
    def slot(self) -> Iterator[float]:
        """Wait for room here and in every shared bucket; yields the seconds waited (the call runs inside)."""
        with self._local.slot() as waited:
            started = time.monotonic()
            self._factory.acquire(self)
            yield (waited or 0.0) + time.monotonic() - started


class PrefectLimits:
    """A limiter factory for :func:`connector.ratelimit.set_limiter_factory` backed by Prefect rate limits.

    ``burst_fraction`` and ``margin`` shape the buckets (see :func:`bucket`); ``timeout`` bounds the wait
    for a shared slot (None: as long as it takes, like the in-process limiter).
    """

    def __init__(self, *, burst_fraction: float = BURST_FRACTION, margin: float = ARRIVAL_MARGIN,
                 timeout: float | None = None, max_limiters: int = 512) -> None:
        self.burst_fraction = burst_fraction
        self.margin = margin
        self.timeout = timeout
        self._max = max_limiters
        self._limiters: OrderedDict[tuple, PrefectRateLimiter] = OrderedDict()
        self._ensured: set[tuple[str, int, float]] = set()
        self._lock = threading.Lock()
        self._warned = False

    def __call__(self, key: tuple, limits: Sequence[tuple[int, float]]) -> PrefectRateLimiter:
        """The limiter for ``key`` (cloud, tenant, family) and its (count, seconds) windows (one per key and limits)."""
        wanted = tuple((int(n), float(p)) for n, p in limits)
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None or limiter.limits != wanted:
                limiter = self._limiters[key] = PrefectRateLimiter(self, key, wanted)
            self._limiters.move_to_end(key)
            while len(self._limiters) > self._max:
                self._limiters.popitem(last=False)
            return limiter

    def ensure(self, limiter: PrefectRateLimiter) -> None:
        """Create the limiter's global concurrency limits if missing; correct them if their shape changed."""
        todo = [(name, cap, decay) for name, (cap, decay) in zip(limiter.names, limiter.buckets, strict=True)
                if (name, cap, decay) not in self._ensured]
        if not todo:
            return
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
        from prefect.exceptions import ObjectAlreadyExists

        with get_client(sync_client=True) as client:
            for name, capacity, decay in todo:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                        name=name, limit=capacity, slot_decay_per_second=decay, active=True))
                    log.info("Created the shared rate limit %s (%d slots, %.4f/s).", name, capacity, decay)
                except ObjectAlreadyExists:
                    found = client.read_global_concurrency_limit_by_name(name)
                    if found.limit != capacity or not math.isclose(found.slot_decay_per_second, decay) \
                            or not found.active:
                        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(
                            limit=capacity, slot_decay_per_second=decay, active=True))
                        log.info("Updated the shared rate limit %s to %d slots, %.4f/s.", name, capacity, decay)
                with self._lock:
                    self._ensured.add((name, capacity, decay))

    def acquire(self, limiter: PrefectRateLimiter) -> None:
        """Take one slot from each of the limiter's shared buckets (blocks; falls back when Prefect is unreachable)."""
        import httpx
        from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
        from prefect.concurrency.sync import rate_limit

        try:
            self.ensure(limiter)
            rate_limit(limiter.names, occupy=1, timeout_seconds=self.timeout, strict=True)
        except TimeoutError:
            raise  # waited as long as asked: the caller decides
        except (ConcurrencySlotAcquisitionError, httpx.HTTPError, OSError) as exc:
            if not self._warned:
                self._warned = True
                log.warning("Shared rate limits unavailable (%s: %s); %s falls back to this process's limiter.",
                            type(exc).__name__, exc, ", ".join(limiter.names))
            with self._lock:
                self._ensured.clear()  # a restarted server may have lost them: create again next time


_installed: PrefectLimits | None = None


def use_prefect_limits(**options) -> PrefectLimits:
    """Back every connector limiter of this process with Prefect global concurrency limits; returns the factory.

    ``options`` go to :class:`PrefectLimits`. Undo with :func:`use_process_limits`.
    """
    global _installed
    factory = PrefectLimits(**options)
    set_limiter_factory(factory)
    _installed = factory
    return factory


def use_process_limits() -> LimiterFactory | None:
    """Back to the connector's in-process limiters; returns the factory that was installed."""
    global _installed
    _installed = None
    return set_limiter_factory(None)


def install_from_env() -> bool:
    """:func:`use_prefect_limits` if ``DEFENDER_SOAR_SHARED_LIMITS`` says so (``prefect``); True when installed.

    Flows call this on start, so a worker or ``defender-soar serve`` turns shared limits on for every
    run by setting the variable; library use keeps the in-process limiter.
    """
    if os.environ.get(ENV, "").strip().lower() not in _ON:
        return False
    if _installed is None:
        use_prefect_limits()
    return True


__all__ = ["ARRIVAL_MARGIN", "BURST_FRACTION", "ENV", "PrefectLimits", "PrefectRateLimiter", "bucket",
           "install_from_env", "limit_name", "use_prefect_limits", "use_process_limits"]
