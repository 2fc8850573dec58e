"""The ``ingest_alerts`` flow: new and changed Defender alerts and incidents become Prefect events, once each.

    from flows.ingest import ingest_alerts
    ingest_alerts(["contoso", "fabrikam"])      # or None: every saved tenant block

For each tenant it lists Graph ``alerts_v2`` (and ``incidents``) updated since a stored watermark,
less an overlap window, and emits one event per alert version it has not emitted before:

- ``defender.alert.created`` the first time an alert is seen (created while ingestion was watching),
  ``defender.alert.updated`` for each later ``lastUpdateDateTime``; incidents the same way as
  ``defender.incident.created`` / ``defender.incident.updated``;
- resource ``defender.alert.<id>`` (labels ``defender.alert.id`` and ``defender.severity``, so that
  triggers can filter and template on them), related resources ``defender.tenant.<block name>``
  (role ``tenant``) and ``defender.device.<MDE device id>`` (role ``device``);
- payload ``tenant``, ``severity``, ``status``, ``category``, ``title``, ``device``, ``user`` and
  nothing else of the alert (``tenant``, ``severity``, ``status``, ``title`` for incidents);
- ``occurred`` is the ``lastUpdateDateTime``; the event **id** is a UUID5 of the tenant, the alert id
  and that ``lastUpdateDateTime``: the same version of an alert always makes the same event.

**Exactly once.** Prefect's trigger service drops an event id it has seen, but only in memory, for
30 minutes and 10,000 ids, and forgets them when the server restarts (prefect 3.9.1,
``server/events/ordering/memory.py``); the event store keeps one row per id
(``ON CONFLICT DO NOTHING``) but says nothing back. So ingestion de-duplicates itself, against the
events the Prefect server has stored: before emitting a page it asks the server which of the page's
event ids exist and which alerts already had a ``created`` event (one query per page). Emitted
events go through ``POST /api/events``; the run then waits until the server has *stored* every one
of them (the server's bus is in memory: an event accepted but not yet written is lost if the
server stops), and only then moves the watermark (a Prefect Variable
``defender-ingest-alerts-<tenant>``). A crash, a 429 storm that outlasts the retries, or a server
restart in the middle therefore loses nothing: the next run lists the same window again and emits
only what the server does not have. Pages are processed one at a time (the alerts are a stream;
only the ids of this run's events are kept).

Known limits: an alert that appears in the API later than ``overlap_minutes`` after its
``lastUpdateDateTime`` is missed, and one first seen after its creation fell outside the run's
window is announced as ``updated`` (no playbook); announcements are remembered as long as the
Prefect server keeps events (``PREFECT_EVENTS_RETENTION_PERIOD``, 7 days by default), so keep
``dedupe_days`` below it. A list that changes while it is paged (``$skip`` moves) is listed again
(up to twice) when an item newer than the listing's start shows up.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, task
from prefect.futures import as_completed
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from connector.errors import ConfigurationError

from .tasks import TASK_OPTIONS, run_logger, tenant_client

#: Namespace of the event ids (uuid5). Changing it would make every alert version new again.
EVENT_NAMESPACE = uuid.UUID("9b0c6f8e-1d7a-5c2e-8f4b-3a6d2e1c0b57")
#: Events per ``POST /api/events``.
EMIT_BATCH = 200
#: Resource ids per look-up of already emitted events: the server answers 50 events a page, and an
#: alert seen again usually has one, so a chunk of 50 is one request.
LOOKUP_CHUNK = 50
#: Event ids per confirmation query (one answer page holds 50).
CONFIRM_CHUNK = 50
#: Longest text kept in an event (a title).
MAX_TEXT = 500
#: Extra listings when the list changed while it was paged.
EXTRA_PASSES = 2
TENANT_BLOCK_SLUG = "defender-tenant"


class IngestError(RuntimeError):
    """Ingestion could not finish for a tenant; the watermark was left where it was."""


# ---------------------------------------------------------------- what an event says


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text[:MAX_TEXT] if text else None


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from the API (``...1234567Z``) as an aware UTC datetime (to the microsecond), or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _evidence(alert: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in alert.get("evidence") or ():
        if isinstance(item, dict) and str(item.get("@odata.type", "")).lower().endswith(kind.lower()):
            return item
    return None


def alert_device(alert: dict[str, Any]) -> tuple[str | None, str | None]:
    """(MDE device id, DNS name) of the alert's first device evidence."""
    device = _evidence(alert, "deviceEvidence") or {}
    return _text(device.get("mdeDeviceId")), _text(device.get("deviceDnsName"))


def alert_user(alert: dict[str, Any]) -> str | None:
    """The alert's first user evidence: its UPN, else ``DOMAIN\\account``."""
    account = (_evidence(alert, "userEvidence") or {}).get("userAccount") or {}
    if not isinstance(account, dict):
        return None
    if account.get("userPrincipalName"):
        return _text(account["userPrincipalName"])
    name, domain = account.get("accountName"), account.get("domainName")
    return _text(f"{domain}\\{name}" if name and domain else name)


@dataclass(frozen=True)
class Source:
    """One kind of Defender item that becomes events: how to list it and what its events say."""

    kind: str  # "alert" | "incident"
    plural: str
    list_method: str
    describe: Callable[[str, dict[str, Any]], tuple[dict[str, Any], list[dict[str, str]], str | None]]

    def event_name(self, action: str) -> str:
        """``defender.<kind>.<action>``."""
        return f"defender.{self.kind}.{action}"

    def resource_id(self, item_id: str) -> str:
        """``defender.<kind>.<id>``."""
        return f"defender.{self.kind}.{item_id}"

    def variable(self, tenant: str) -> str:
        """The Prefect Variable holding this source's watermark for ``tenant``."""
        return f"defender-ingest-{self.plural}-{tenant}"


def _tenant_related(tenant: str) -> dict[str, str]:
    return {"prefect.resource.id": f"defender.tenant.{tenant}", "prefect.resource.role": "tenant",
            "prefect.resource.name": tenant}


def describe_alert(tenant: str, alert: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]], str | None]:
    """(payload, related resources, resource name) of an alert's event."""
    device_id, device_name = alert_device(alert)
    payload = {"tenant": tenant, "severity": _text(alert.get("severity")), "status": _text(alert.get("status")),
               "category": _text(alert.get("category")), "title": _text(alert.get("title")),
               "device": device_name or device_id, "user": alert_user(alert)}
    related = [_tenant_related(tenant)]
    if device_id:
        device = {"prefect.resource.id": f"defender.device.{device_id}", "prefect.resource.role": "device"}
        if device_name:
            device["prefect.resource.name"] = device_name
        related.append(device)
    return payload, related, payload["title"]


def describe_incident(tenant: str, incident: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]], str | None]:
    """(payload, related resources, resource name) of an incident's event."""
    payload = {"tenant": tenant, "severity": _text(incident.get("severity")), "status": _text(incident.get("status")),
               "title": _text(incident.get("displayName"))}
    return payload, [_tenant_related(tenant)], payload["title"]


ALERTS = Source("alert", "alerts", "list_alerts", describe_alert)
INCIDENTS = Source("incident", "incidents", "list_incidents", describe_incident)


def event_id(source: Source, tenant: str, item_id: str, last_update: str) -> str:
    """The event id of one version of an item: uuid5 of the kind, the tenant, the item id and its lastUpdateDateTime."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{source.kind}\n{tenant}\n{item_id}\n{last_update.strip()}"))


def build_event(source: Source, tenant: str, item: dict[str, Any], action: str) -> dict[str, Any]:
    """The Prefect event (JSON for ``POST /api/events``) for one item version; ``action`` is created or updated."""
    item_id, last_update = str(item["id"]), str(item["lastUpdateDateTime"])
    payload, related, name = source.describe(tenant, item)
    resource = {"prefect.resource.id": source.resource_id(item_id), f"defender.{source.kind}.id": item_id,
                "defender.severity": payload.get("severity") or "unknown"}
    if name:
        resource["prefect.resource.name"] = name
    occurred = parse_time(last_update) or datetime.now(UTC)
    return {"id": event_id(source, tenant, item_id, last_update), "occurred": occurred.isoformat(),
            "event": source.event_name(action), "resource": resource, "related": related, "payload": payload}


# ---------------------------------------------------------------- the Prefect side: events and watermarks


class PrefectEventStore:
    """Emit events to the Prefect API and ask it which were already stored (a sync Prefect client)."""

    def __init__(self, client) -> None:
        self.client = client

    def known(self, source: Source, tenant: str, resource_ids: Sequence[str], event_ids: Sequence[str],
              since: datetime) -> tuple[set[str], set[str]]:
        """(event ids among ``event_ids`` already stored, resource ids that already had a ``created`` event)."""
        from prefect.events.filters import (
            EventFilter,
            EventNameFilter,
            EventOccurredFilter,
            EventRelatedFilter,
            EventResourceFilter,
        )

        wanted = set(event_ids)
        stored: set[str] = set()
        created: set[str] = set()
        until = datetime.now(UTC) + timedelta(days=2)
        names = [source.event_name("created"), source.event_name("updated")]
        for start in range(0, len(resource_ids), LOOKUP_CHUNK):
            chunk = list(dict.fromkeys(resource_ids[start:start + LOOKUP_CHUNK]))
            query = EventFilter(
                occurred=EventOccurredFilter(since=since, until=until), event=EventNameFilter(name=names),
                resource=EventResourceFilter(id=chunk), related=EventRelatedFilter(id=[f"defender.tenant.{tenant}"]),
            )
            for found_id, name, resource_id in self._events(query):
                if found_id in wanted:
                    stored.add(found_id)
                if name == names[0]:
                    created.add(resource_id)
        return stored, created

    def _events(self, query) -> Iterator[tuple[str, str, str]]:
        """(id, name, resource id) of every event matching ``query``; the first page read as plain JSON.

        Most look-ups fit one page (at most 50 events); reading it without building Prefect's event models
        keeps a look-up cheap (a model per event costs more than the query).
        """
        answer = self.client.request("POST", "/events/filter",
                                     json={"filter": query.model_dump(mode="json"), "limit": 50}).json()
        for event in answer.get("events") or ():
            yield str(event["id"]), event["event"], event["resource"]["prefect.resource.id"]
        next_page = answer.get("next_page")
        while next_page:
            page = self.client.read_events_page(next_page)
            for event in page.events:
                yield str(event.id), event.event, event.resource.id
            next_page = page.next_page

    def emit(self, events: Sequence[dict[str, Any]]) -> None:
        """Send events in batches of :data:`EMIT_BATCH` (``POST /api/events``); raises on any refusal."""
        for start in range(0, len(events), EMIT_BATCH):
            self.client.request("POST", "/events", json=list(events[start:start + EMIT_BATCH]))

    def stored(self, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` (at most :data:`CONFIRM_CHUNK`) the server has written."""
        from prefect.events.filters import EventFilter, EventIDFilter, EventOccurredFilter

        query = EventFilter(id=EventIDFilter(id=[uuid.UUID(i) for i in event_ids]),
                            occurred=EventOccurredFilter(since=datetime(2000, 1, 1, tzinfo=UTC),
                                                         until=datetime.now(UTC) + timedelta(days=2)))
        return {found_id for found_id, _, _ in self._events(query)}

    def confirm(self, event_ids: Sequence[str], timeout: float, poll: float = 0.5) -> None:
        """Wait until the server has stored every one of ``event_ids`` (its writer flushes every few seconds).

        The newest chunk is polled first (the writer works in order), then every chunk is checked.
        Raises :class:`IngestError` naming how many are missing after ``timeout`` seconds.
        """
        if not event_ids:
            return
        deadline = time.monotonic() + timeout
        chunks = [list(event_ids[i:i + CONFIRM_CHUNK]) for i in range(0, len(event_ids), CONFIRM_CHUNK)]
        order = [chunks[-1]] + chunks[:-1]
        for chunk in order:
            missing = chunk
            while True:
                found = self.stored(missing)
                missing = [i for i in missing if i not in found]
                if not missing:
                    break
                if time.monotonic() > deadline:
                    raise IngestError(
                        f"the Prefect server had not stored {len(missing)} of the emitted events after {timeout:g}s; "
                        "the watermark was not moved, so the next run emits what is missing")
                time.sleep(poll)  # the server's event writer flushes on its own schedule


@dataclass
class Watermark:
    """Where one tenant's ingestion of one source stands (kept in a Prefect Variable, a few hundred bytes)."""

    watermark: datetime | None = None  # newest lastUpdateDateTime emitted (capped at the listing's start)
    started: datetime | None = None    # the first run's window start: items created earlier are never "created"

    def to_json(self) -> dict[str, Any]:
        """The Variable's value."""
        return {"watermark": self.watermark.isoformat() if self.watermark else None,
                "started": self.started.isoformat() if self.started else None,
                "saved": datetime.now(UTC).isoformat(timespec="seconds")}

    @classmethod
    def from_json(cls, value: Any) -> Watermark:
        """From a Variable's value (anything unreadable is a fresh start)."""
        if not isinstance(value, dict):
            return cls()
        return cls(parse_time(value.get("watermark")), parse_time(value.get("started")))


class VariableWatermarks:
    """Watermarks in Prefect Variables (``defender-ingest-<source>-<tenant>``)."""

    def load(self, source: Source, tenant: str) -> Watermark:
        """The stored watermark (empty when none)."""
        from prefect.variables import Variable

        return Watermark.from_json(Variable.get(source.variable(tenant), default=None))

    def save(self, source: Source, tenant: str, mark: Watermark) -> None:
        """Store the watermark."""
        from prefect.variables import Variable

        Variable.set(source.variable(tenant), mark.to_json(), overwrite=True, tags=["defender-soar", "ingest"])


# ---------------------------------------------------------------- one tenant, one source


@dataclass
class IngestStats:
    """What one ingestion of one source for one tenant did."""

    tenant: str
    source: str
    seen: int = 0
    created: int = 0
    updated: int = 0
    duplicates: int = 0
    unreadable: int = 0
    pages: int = 0
    passes: int = 0
    since: str | None = None
    watermark: str | None = None
    seconds: float = 0.0

    @property
    def emitted(self) -> int:
        """Events emitted by this run."""
        return self.created + self.updated


@dataclass
class _Run:
    emitted: list[str] = field(default_factory=list)  # this run's event ids, in order (confirmation)
    emitted_set: set[str] = field(default_factory=set)
    announced: set[str] = field(default_factory=set)  # resource ids given a created event by this run
    buffer: list[dict[str, Any]] = field(default_factory=list)


def _pages(client, source: Source, since: datetime, page_size: int | None) -> Iterable[list[dict[str, Any]]]:
    return getattr(client, source.list_method)(since=since, page_size=page_size).by_page()


def ingest_source(client, store: PrefectEventStore, marks: VariableWatermarks, source: Source, tenant: str, *,
                  overlap: timedelta = timedelta(minutes=10), lookback: timedelta = timedelta(hours=24),
                  dedupe: timedelta = timedelta(days=6), page_size: int | None = None,
                  confirm_timeout: float = 120.0, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                  ) -> IngestStats:
    """List ``source`` for ``tenant`` since its watermark (less ``overlap``), emit what is new, then move the mark.

    The first run looks back ``lookback``. Items never announced that were created after ingestion began
    (and within ``dedupe``) get a ``created`` event, others ``updated``. Events are confirmed stored
    (``confirm_timeout``) before the watermark moves.
    """
    logger = run_logger()
    started = time.perf_counter()
    mark = marks.load(source, tenant)
    first = now()
    since = (mark.watermark - overlap) if mark.watermark else first - lookback
    ingest_start = mark.started or since
    created_floor = max(ingest_start, first - dedupe)
    lookup_since = min(created_floor, since) - timedelta(minutes=1)
    stats = IngestStats(tenant=tenant, source=source.plural, since=since.isoformat())
    run = _Run()
    newest: datetime | None = None
    listing_start = first

    def flush() -> None:  # after every page: what a crash leaves behind is whole pages, already sent
        if run.buffer:
            store.emit(run.buffer)
            run.buffer = []

    for pass_number in range(1 + EXTRA_PASSES):
        listing_start = now() if pass_number else first
        stats.passes += 1
        moved = False
        pages = 0
        for page in _pages(client, source, since, page_size):
            pages += 1
            readable = []
            for item in page:
                if not isinstance(item, dict) or not item.get("id") or not parse_time(item.get("lastUpdateDateTime")):
                    stats.unreadable += 1
                    continue
                readable.append((item, source.resource_id(str(item["id"])),
                                 event_id(source, tenant, str(item["id"]), str(item["lastUpdateDateTime"]))))
            if pass_number == 0:
                stats.seen += len(readable)
            for item, _, _ in readable:
                updated_at = parse_time(item["lastUpdateDateTime"])
                newest = updated_at if newest is None or updated_at > newest else newest
                moved = moved or updated_at > listing_start
            fresh = [entry for entry in readable if entry[2] not in run.emitted_set]
            if pass_number == 0:
                stats.duplicates += len(readable) - len(fresh)
            if not fresh:
                continue
            stored, had_created = store.known(source, tenant, [r for _, r, _ in fresh], [e for _, _, e in fresh],
                                              lookup_since)
            for item, rid, eid in fresh:
                if eid in stored:
                    stats.duplicates += 1 if pass_number == 0 else 0
                    continue
                created_at = parse_time(item.get("createdDateTime"))
                known_item = rid in had_created or rid in run.announced
                action = "updated" if known_item or (created_at is not None and created_at < created_floor) \
                    else "created"
                run.buffer.append(build_event(source, tenant, item, action))
                run.emitted.append(eid)
                run.emitted_set.add(eid)
                if action == "created":
                    run.announced.add(rid)
                    stats.created += 1
                else:
                    stats.updated += 1
            flush()
        stats.pages += pages
        if not (moved and pages > 1):
            break
        logger.info("%s %s: the list changed while it was paged; listing it again.", tenant, source.plural)
    flush()
    store.confirm(run.emitted, confirm_timeout)
    if newest is not None:
        capped = min(newest, listing_start)
        mark.watermark = capped if mark.watermark is None else max(mark.watermark, capped)
    mark.started = ingest_start
    marks.save(source, tenant, mark)
    stats.watermark = mark.watermark.isoformat() if mark.watermark else None
    stats.seconds = round(time.perf_counter() - started, 3)
    logger.info("%s %s: %d seen, %d created, %d updated, %d already emitted (%d pages, %.1fs).", tenant,
                source.plural, stats.seen, stats.created, stats.updated, stats.duplicates, stats.pages, stats.seconds)
    return stats


# ---------------------------------------------------------------- task and flow


def saved_tenants() -> list[str]:
    """Names of every saved Defender tenant block."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type(TENANT_BLOCK_SLUG, include_secrets=False)
        except ObjectNotFound:
            return []
    return sorted(d.name for d in documents if not d.is_anonymous and d.name)


@task(name="ingest-tenant", task_run_name="ingest-{tenant}", **TASK_OPTIONS)
def ingest_tenant(tenant: str, include_incidents: bool = True, overlap_minutes: float = 10.0,
                  lookback_hours: float = 24.0, dedupe_days: float = 6.0, page_size: int | None = None,
                  confirm_timeout: float = 120.0) -> dict[str, Any]:
    """Ingest one tenant's alerts (and incidents) into events; returns per-source :class:`IngestStats` as dicts."""
    from prefect.client.orchestration import get_client

    options = {"overlap": timedelta(minutes=overlap_minutes), "lookback": timedelta(hours=lookback_hours),
               "dedupe": timedelta(days=dedupe_days), "page_size": page_size, "confirm_timeout": confirm_timeout}
    sources = (ALERTS, INCIDENTS) if include_incidents else (ALERTS,)
    out: dict[str, Any] = {}
    with tenant_client(tenant) as client, get_client(sync_client=True) as api:
        store, marks = PrefectEventStore(api), VariableWatermarks()
        for source in sources:
            out[source.plural] = asdict(ingest_source(client, store, marks, source, tenant, **options))
    return out


@flow(name="ingest-alerts", task_runner=ThreadPoolTaskRunner(max_workers=8), persist_result=False)
def ingest_alerts(
    tenants: str | list[str] | None = None,
    include_incidents: bool = True,
    overlap_minutes: float = 10.0,
    lookback_hours: float = 24.0,
    dedupe_days: float = 6.0,
    page_size: int | None = None,
    confirm_timeout: float = 120.0,
) -> dict[str, Any]:
    """Turn new and changed Defender alerts (and incidents) of each tenant into Prefect events, once each.

    ``tenants``: tenant block names (None: every saved tenant block), ingested side by side.
    ``overlap_minutes`` re-reads that much before the watermark (late arrivals); the first run looks
    back ``lookback_hours``; ``dedupe_days`` is how far back an unseen alert's creation still counts
    as new (keep it under the server's event retention). A failed tenant is reported and keeps its
    watermark (the next run catches up); the run fails when every tenant failed.
    """
    logger = run_logger()
    if tenants is None:
        names = saved_tenants()
        if not names:
            logger.warning("No Defender tenant blocks are saved: nothing to ingest.")
            return {}
    else:
        names = [tenants] if isinstance(tenants, str) else list(tenants)
        names = list(dict.fromkeys(n.strip() for n in names if isinstance(n, str) and n.strip()))
        if not names:
            raise ConfigurationError("Give at least one tenant block name, or none for every saved tenant.")
    for value, what in ((overlap_minutes, "overlap_minutes"), (lookback_hours, "lookback_hours"),
                        (dedupe_days, "dedupe_days")):
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigurationError(f"{what} must be a number of at least 0, not {value!r}.")
    futures = {ingest_tenant.submit(name, include_incidents, overlap_minutes, lookback_hours, dedupe_days,
                                    page_size, confirm_timeout): name for name in names}
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for future in as_completed(list(futures)):
        name = futures[future]
        try:
            results[name] = future.result()
        except Exception as exc:  # noqa: BLE001 - reported per tenant; its watermark stays, the next run retries
            failures[name] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:1000]
            logger.error("Ingesting %s failed: %s", name, failures[name])
    if failures and not results:
        raise IngestError("Every tenant failed: " + "; ".join(f"{n}: {e}" for n, e in failures.items())[:4000])
    summary = {"tenants": results, "failures": failures}
    if failures:
        message = f"{len(failures)} of {len(names)} tenant(s) failed: " + "; ".join(
            f"{n}: {e}" for n, e in failures.items())
        return Completed(name="Completed with failures", message=message[:2000], data=summary)
    return summary


__all__ = ["ALERTS", "EVENT_NAMESPACE", "INCIDENTS", "IngestError", "IngestStats", "PrefectEventStore", "Source",
           "VariableWatermarks", "Watermark", "alert_device", "alert_user", "build_event", "describe_alert",
           "describe_incident", "event_id", "ingest_alerts", "ingest_source", "ingest_tenant", "parse_time",
           "saved_tenants"]
