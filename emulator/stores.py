"""State stores behind the entity APIs: machines (with their users), files, IPs, alerts, incidents, machine actions
and indicators.

Each store is thread-safe and versioned: every change bumps ``version``, which keys the cache of filtered
results (:meth:`Store.select`), so a pager walking 10,000 alerts filters them once. Lists are copy-on-write
snapshots: a request keeps reading the snapshot it started with while another request changes the store.

Machine actions are the exception to the cache: their status follows the clock, so their lists are filtered
afresh on every request (:class:`MachineActionStore`).
"""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from .world import Alert, Comment, Incident, Indicator, MachineAction, World, now_ticks

T = TypeVar("T")


class Store:
    """Base: a version number and a small LRU of filtered snapshots."""

    _CACHED_SELECTIONS = 32

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.version = 0
        self._selections: OrderedDict[Hashable, tuple] = OrderedDict()

    def _changed(self) -> None:
        """Call under the lock after any change."""
        self.version += 1
        self._selections.clear()

    def select(self, key: Hashable, items: Sequence[T], predicate: Callable[[T], bool] | None) -> Sequence[T]:
        """``items`` that satisfy ``predicate``, cached under ``key`` until the store changes."""
        if predicate is None:
            return items
        with self._lock:
            cache_key = (key, self.version)
            found = self._selections.get(cache_key)
            if found is not None:
                self._selections.move_to_end(cache_key)
                return found
        selected = tuple(item for item in items if predicate(item))
        with self._lock:
            if (key, self.version) == cache_key:  # nobody changed the store meanwhile
                self._selections[cache_key] = selected
                while len(self._selections) > self._CACHED_SELECTIONS:
                    self._selections.popitem(last=False)
        return selected


class MachineStore(Store):
    """Machines (MDE entity dicts) by id and by DNS name, with the users logged on to each."""

    def __init__(self, machines: Iterable[dict[str, Any]] = (), logons: dict[str, list[dict[str, Any]]] | None = None):
        super().__init__()
        self.load(machines, logons or {})

    def load(self, machines: Iterable[dict[str, Any]], logons: dict[str, list[dict[str, Any]]]) -> None:
        """Replace every machine and logon."""
        # Built aside, then swapped in: a request reading during a reset sees the old or the new, never half.
        items = tuple(machines)
        by_key: dict[str, dict[str, Any]] = {}
        for m in items:
            by_key[m["id"].lower()] = m
            by_key.setdefault(m["computerDnsName"].lower(), m)
        logons_by_id = {k.lower(): list(v) for k, v in logons.items()}
        users: dict[str, list[dict[str, Any]]] = {}
        for m in items:
            for user in logons_by_id.get(m["id"].lower(), []):
                users.setdefault(user["accountName"].lower(), []).append(m)
        with self._lock:
            self._items, self._by_key, self._logons, self._users = items, by_key, logons_by_id, users
            self._changed()

    def all(self) -> tuple[dict[str, Any], ...]:
        """Every machine, in a stable order."""
        return self._items

    def get(self, id_or_name: str) -> dict[str, Any] | None:
        """A machine by its id or its computer DNS name (case-insensitive), or None."""
        return self._by_key.get(id_or_name.lower())

    def logon_users(self, machine_id: str) -> list[dict[str, Any]]:
        """The users seen logging on to a machine."""
        return self._logons.get(machine_id.lower(), [])

    def of_user(self, account_name: str) -> list[dict[str, Any]]:
        """Machines a user (account name, optionally ``domain\\name``) logged on to; empty if unknown."""
        return self._users.get(account_name.rsplit("\\", 1)[-1].lower(), [])

    def by_ip(self, ip: str) -> list[dict[str, Any]]:
        """Machines whose last IP address is ``ip``."""
        key = normalise_ip(ip)
        return [m for m in self._items if normalise_ip(m["lastIpAddress"]) == key]


def normalise_ip(text: str) -> str | None:
    """The canonical text of an IP address (``::FFFF:10.0.7.14`` and ``::ffff:a00:70e`` agree), or None."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


class FileStore(Store):
    """File info by SHA1 and SHA256."""

    def __init__(self, files: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__()
        self.load(files)

    def load(self, files: Iterable[dict[str, Any]]) -> None:
        """Replace every file."""
        by_hash = {}
        for f in files:
            by_hash[f["sha1"].lower()] = f
            by_hash[f["sha256"].lower()] = f
        with self._lock:
            self._by_hash = by_hash
            self._changed()

    def get(self, file_hash: str) -> dict[str, Any] | None:
        """The file with that SHA1 or SHA256, or None."""
        return self._by_hash.get(file_hash.lower())

    def all(self) -> list[dict[str, Any]]:
        """Every file once."""
        return list({id(f): f for f in self._by_hash.values()}.values())


class IpStore(Store):
    """Organisation statistics by IP address."""

    def __init__(self, ips: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.load(ips or {})

    def load(self, ips: dict[str, dict[str, Any]]) -> None:
        """Replace every IP."""
        with self._lock:
            self._by_ip = {normalise_ip(k): v for k, v in ips.items()}
            self._changed()

    def get(self, ip: str) -> dict[str, Any] | None:
        """The statistics of a known IP, or None."""
        return self._by_ip.get(normalise_ip(ip))

    def all(self) -> list[dict[str, Any]]:
        """Every known IP's statistics."""
        return list(self._by_ip.values())


class TimelineStore(Store, Generic[T]):
    """Items with an ``id``, a ``last_update`` (ticks) and a ``seq``, kept sorted by (last_update, seq).

    Changing an item (:meth:`touch`) moves its ``last_update`` past every other item's, so times stay
    distinct and increasing, as a poller of ``lastUpdateDateTime ge ...`` expects.
    """

    def __init__(self, items: Iterable[T] = ()) -> None:
        super().__init__()
        self._order: tuple[T, ...] = ()
        self._by_id: dict[str, T] = {}
        self._next_seq = 0
        self.load(items)

    def load(self, items: Iterable[T]) -> None:
        """Replace every item."""
        items = list(items)
        order = tuple(sorted(items, key=self._key))
        by_id = {str(i.id).lower(): i for i in items}  # type: ignore[attr-defined]
        with self._lock:
            self._order, self._by_id = order, by_id
            self._next_seq = max((i.seq for i in items), default=-1) + 1  # type: ignore[attr-defined]
            self._changed()

    @staticmethod
    def _key(item: Any) -> tuple[int, int]:
        return item.last_update, item.seq

    def all(self) -> tuple[T, ...]:
        """A snapshot, oldest ``last_update`` first."""
        return self._order

    def get(self, item_id: str | int) -> T | None:
        """An item by id (case-insensitive), or None."""
        return self._by_id.get(str(item_id).lower())

    def latest(self) -> int:
        """The newest ``last_update`` (0 when empty)."""
        order = self._order
        return order[-1].last_update if order else 0  # type: ignore[attr-defined]

    def next_seq(self, count: int = 1) -> int:
        """Reserve ``count`` sequence numbers (tie-breakers); returns the first."""
        with self._lock:
            first, self._next_seq = self._next_seq, self._next_seq + count
            return first

    def add(self, items: Iterable[T]) -> None:
        """Add new items (each needs a distinct id)."""
        with self._lock:
            items = list(items)
            self._by_id = {**self._by_id, **{str(i.id).lower(): i for i in items}}  # type: ignore[attr-defined]
            self._order = tuple(sorted(self._order + tuple(items), key=self._key))
            self._changed()

    def touch(self, item: T, change: Callable[[T], None] | None = None, when: int | None = None) -> int:
        """Apply ``change`` to an item and make it the most recently updated; returns its new ``last_update``."""
        with self._lock:
            if change is not None:
                change(item)
            stamp = max(now_ticks() if when is None else when, self.latest() + 1)
            item.last_update = stamp  # type: ignore[attr-defined]
            item.cache.clear()  # type: ignore[attr-defined]
            self._order = tuple(i for i in self._order if i is not item) + (item,)
            self._changed()
            return stamp


class AlertStore(TimelineStore[Alert]):
    """Alerts, oldest ``lastUpdateDateTime`` first."""

    def of_machine(self, machine_id: str) -> tuple[Alert, ...]:
        """Alerts on one machine."""
        key = machine_id.lower()
        return self.select(("machine", key), self._order, lambda a: a.machine["id"].lower() == key)


class IncidentStore(TimelineStore[Incident]):
    """Incidents, oldest ``lastUpdateDateTime`` first."""


class MachineActionStore(Store):
    """Machine actions, newest first. A device runs at most one action of each type at a time (:meth:`submit`)."""

    def __init__(self, actions: Iterable[MachineAction] = ()) -> None:
        super().__init__()
        self.load(actions)

    def load(self, actions: Iterable[MachineAction]) -> None:
        """Replace every action."""
        # Built aside, then swapped in: a request reading during a reset sees the old or the new, never half.
        order = tuple(sorted(actions, key=lambda a: (a.created, a.seq), reverse=True))
        by_id = {a.id.lower(): a for a in order}
        with self._lock:
            self._order, self._by_id = order, by_id
            self._next_seq = max((a.seq for a in order), default=-1) + 1
            self._changed()

    def select(self, key: Hashable, items: Sequence[T], predicate: Callable[[T], bool] | None) -> Sequence[T]:
        """Filtered afresh each time: a status filter's answer changes with the clock, not with the version."""
        return items if predicate is None else tuple(item for item in items if predicate(item))

    def all(self) -> tuple[MachineAction, ...]:
        """Every action, newest first."""
        return self._order

    def get(self, action_id: str) -> MachineAction | None:
        """An action by id (case-insensitive), or None."""
        return self._by_id.get(action_id.lower())

    def of_machine(self, machine_id: str) -> list[MachineAction]:
        """The actions on one machine, newest first."""
        key = machine_id.lower()
        return [a for a in self._order if a.machine["id"].lower() == key]

    def submit(self, action: MachineAction, now: int) -> MachineAction | None:
        """Add ``action`` unless one of the same type is still running on its machine; returns that one if so."""
        with self._lock:
            for other in self.of_machine(action.machine["id"]):
                if other.type == action.type and other.running(now):
                    return other
            action.seq, self._next_seq = self._next_seq, self._next_seq + 1
            self._by_id = {**self._by_id, action.id.lower(): action}
            self._order = (action,) + self._order
            self._changed()
            return None

    def change(self, action: MachineAction, change: Callable[[MachineAction], None]) -> None:
        """Apply ``change`` to an action under the store's lock."""
        with self._lock:
            change(action)
            self._changed()

    def by_package_token(self, token: str) -> MachineAction | None:
        """The collection whose package download token this is, or None."""
        return next((a for a in self._order if a.package_token is not None and a.package_token == token), None)


class IndicatorQuotaError(Exception):
    """Creating one more indicator would pass the tenant's quota of active indicators."""

    def __init__(self, active: int, quota: int) -> None:
        super().__init__(f"{active} active indicators, quota {quota}")
        self.active, self.quota = active, quota


def indicator_key(indicator_type: str, value: str) -> tuple[str, str]:
    """What makes two indicators the same one: the type and the value (IPs canonical, the rest case-insensitive)."""
    if indicator_type == "IpAddress":
        return indicator_type, normalise_ip(value) or value
    return indicator_type, value.lower()


class IndicatorStore(Store):
    """Custom indicators by id, one per (type, value), in creation order."""

    def __init__(self, indicators: Iterable[Indicator] = ()) -> None:
        super().__init__()
        self.load(indicators)

    def load(self, indicators: Iterable[Indicator]) -> None:
        """Replace every indicator."""
        order = tuple(sorted(indicators, key=lambda i: int(i.id)))
        with self._lock:
            self._order: tuple[Indicator, ...] = order
            self._next_id = max((int(i.id) for i in order), default=1000) + 1
            self._changed()

    def all(self) -> tuple[Indicator, ...]:
        """Every indicator, oldest first."""
        return self._order

    def get(self, indicator_id: str) -> Indicator | None:
        """An indicator by id, or None."""
        return next((i for i in self._order if i.id == str(indicator_id).strip()), None)

    def find(self, indicator_type: str, value: str) -> Indicator | None:
        """The indicator with that type and value, or None."""
        key = indicator_key(indicator_type, value)
        return next((i for i in self._order if indicator_key(i.type, i.value) == key), None)

    def active(self, now: int) -> int:
        """How many indicators count against the quota at ``now`` (those not expired)."""
        return sum(1 for i in self._order if i.active(now))

    def upsert(self, fields: dict[str, Any], who: str, now: int, quota: int) -> tuple[Indicator, bool]:
        """Create an indicator from ``fields`` (Indicator attribute names), or update the one with the same type and
        value; returns it and whether it is new. Raises :class:`IndicatorQuotaError` when a new one would pass
        ``quota`` active indicators."""
        with self._lock:
            existing = self.find(fields["type"], fields["value"])
            if existing is not None:
                for name, value in fields.items():
                    setattr(existing, name, value)
                existing.last_update, existing.last_updated_by = max(now, existing.last_update + 1), who
                self._changed()
                return existing, False
            active = self.active(now)
            if active >= quota:
                raise IndicatorQuotaError(active, quota)
            made = Indicator(id=str(self._next_id), created=now, last_update=now, created_by=who, source=who,
                             last_updated_by=who, **fields)
            self._next_id += 1
            self._order = self._order + (made,)
            self._changed()
            return made, True

    def delete(self, indicator_id: str) -> bool:
        """Remove an indicator; False when there is none with that id."""
        with self._lock:
            found = self.get(indicator_id)
            if found is None:
                return False
            self._order = tuple(i for i in self._order if i is not found)
            self._changed()
            return True


def add_comment(comments: list[Comment], text: str, author: str) -> Comment:
    """Append a comment stamped now."""
    comment = Comment(text, author, now_ticks())
    comments.append(comment)
    return comment


class Stores:
    """Every entity store of one emulator, seeded from one :class:`~emulator.world.World`."""

    def __init__(self, world: World) -> None:
        self.machines = MachineStore(world.machines, world.logons)
        self.files = FileStore(world.files)
        self.ips = IpStore(world.ips)
        self.alerts = AlertStore(world.alerts)
        self.incidents = IncidentStore(world.incidents)
        self.actions = MachineActionStore(world.actions)
        self.indicators = IndicatorStore(world.indicators)

    def load(self, world: World) -> None:
        """Put every store back to ``world``."""
        self.machines.load(world.machines, world.logons)
        self.files.load(world.files)
        self.ips.load(world.ips)
        self.alerts.load(world.alerts)
        self.incidents.load(world.incidents)
        self.actions.load(world.actions)
        self.indicators.load(world.indicators)
