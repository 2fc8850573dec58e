"""The per-tenant limiter keeps every window, waits instead of failing, and is thread-safe."""

from __future__ import annotations

import threading
import time

from connector.ratelimit import RateLimiter, limiter_for


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_windows_are_kept_exactly():
    clock = FakeClock()
    limiter = RateLimiter([(3, 60.0), (5, 3600.0)], clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(6):
        limiter.acquire()
        starts.append(clock.now)
    assert starts[:3] == [0.0, 0.0, 0.0]
    assert starts[3] == 60.0 and starts[4] == 60.0  # the minute window opened again
    assert starts[5] == 3600.0  # the hour window (5/h) is the binding one now
    assert limiter.would_wait() == 0.0
    limiter.acquire()
    limiter.acquire()
    assert clock.now == 3600.0 and limiter.would_wait() == 60.0  # both windows are full until 3660


def test_threads_never_exceed_the_window():
    limiter = RateLimiter([(20, 0.5)])
    times = []
    lock = threading.Lock()

    def worker():
        for _ in range(5):
            limiter.acquire()
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times.sort()
    assert len(times) == 40
    # no 0.5 s window holds more than 20 calls
    assert all(times[i + 20] - times[i] >= 0.5 - 1e-3 for i in range(len(times) - 20))


def test_registry_shares_per_tenant_and_separates_tenants():
    a = limiter_for(("global", "tenant-a", "hunting"), [(45, 60.0)])
    assert limiter_for(("global", "tenant-a", "hunting"), [(45, 60.0)]) is a
    assert limiter_for(("global", "tenant-b", "hunting"), [(45, 60.0)]) is not a


def test_slots_are_restamped_when_the_call_ends():
    """The service counts a call when it arrives: a slot is freed a window after the answer, not the send."""
    clock = FakeClock()
    limiter = RateLimiter([(2, 60.0)], clock=clock, sleep=clock.sleep)
    with limiter.slot():
        clock.now += 5.0  # a slow handshake and answer
    limiter.acquire()
    assert limiter.would_wait() == 65.0 - clock.now  # the first slot frees at 5 + 60, not 0 + 60


def test_registry_is_bounded_and_takes_the_newest_limits():
    from connector import ratelimit

    for i in range(ratelimit._MAX_LIMITERS + 100):
        limiter_for(("global", f"tenant-{i}", "hunting"), [(45, 60.0)])
    assert ratelimit.registry_size() <= ratelimit._MAX_LIMITERS
    a = limiter_for(("global", "tenant-limits", "api"), [(100, 60.0)])
    assert limiter_for(("global", "tenant-limits", "api"), [(10, 60.0)]) is a and a.limits == ((10, 60.0),)


def test_an_installed_factory_supplies_the_limiters():
    from connector.ratelimit import set_limiter_factory

    made = []

    def factory(key, limits):
        made.append((key, tuple(limits)))
        return RateLimiter(limits)

    previous = set_limiter_factory(factory)
    try:
        limiter = limiter_for(("global", "t", "hunting"), [(45, 60.0)])
        with limiter.slot():
            pass
    finally:
        set_limiter_factory(previous)
    assert made == [(("global", "t", "hunting"), ((45, 60.0),))]
    assert limiter_for(("global", "t", "hunting"), [(45, 60.0)]) is not limiter  # back to the process's own
