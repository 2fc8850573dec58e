"""Reusable Prefect tasks: ``connect``, ``run_hunting_query``, ``enrich`` and ``alert``.

Every task takes a tenant block *name* (``DefenderTenant.load(name)`` happens inside), never a
client or a secret, so runs can be retried and shown in the UI without leaking anything. The work
is the connector's; the tasks stay thin:

- **No retries here.** The connector already retries what may be retried (429 with Retry-After,
  5xx, timeouts; a POST only where it never reached the service). A Prefect retry on top would
  resend comments and multiply the tenant's quota use.
- **Nothing hashes or persists a DataFrame.** Prefect's default cache policy hashes every input
  (0.13-0.18 s for a 100,000-row frame) and could persist results; these tasks use
  ``cache_policy=NO_CACHE`` and ``persist_result=False``, so frames pass between tasks in memory,
  as the same object. Ask for caching or persistence with ``task.with_options(...)``.

Outside a flow, call the plain functions with ``.fn`` (``run_hunting_query.fn("contoso", "DeviceInfo
| take 5")``); blocks and artifacts still need a Prefect API (a server or the test harness).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from connector.enrich import AUTO, EnrichmentCache, enrich_frame
from connector.errors import ConfigurationError

from .markdown import artifact_key, frame_markdown

#: Options every task here shares (see the module docstring for why).
TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, "retries": 0}

#: Longest comment written to a Defender alert or incident (the summary is cut, with a pointer to the report).
MAX_COMMENT = 4000
#: Longest notification body.
MAX_NOTIFICATION = 4000


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow or task run; this module's logger outside (``task.fn()``)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("flows")


class AlertDeliveryError(RuntimeError):
    """One or more notifications of an ``alert`` could not be sent (the others, the artifact and the comment were)."""


# ---------------------------------------------------------------- tenants

_API_CLIENTS: dict[str | None, Any] = {}
_API_CLIENTS_LOCK = threading.Lock()


def _api_client():
    """One open Prefect API client per API URL, shared by every block load of this process.

    ``Block.load`` opens a new client each call, and building one loads the CA store (~50 ms of CPU
    under the GIL): 20 tenants loaded side by side spent a second on that alone.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    with _API_CLIENTS_LOCK:
        client = _API_CLIENTS.get(url)
        if client is None:
            client = _API_CLIENTS[url] = get_client(sync_client=True).__enter__()
        return client


def _load_block(cls, name: str):
    load = getattr(cls, "_get_block_document", None)
    build = getattr(cls, "_load_from_block_document", None)
    if load is None or build is None:  # a Prefect without these: its own (slower) path
        return cls.load(name)
    document, _ = load(name, client=_api_client())
    return build(document)


def load_tenant(tenant: str):
    """The saved ``DefenderTenant`` block called ``tenant``; ConfigurationError says how to create one if missing."""
    from blocks import DefenderTenant
    from blocks.naming import check_block_name

    check_block_name(tenant, what="Tenant block name")
    try:
        return _load_block(DefenderTenant, tenant)
    except ValueError as exc:
        if "Unable to find" not in str(exc):
            raise
        raise ConfigurationError(
            f"No Defender tenant block named {tenant!r} in the Prefect server. Create it with "
            f"'defender-soar tenants add {tenant} ...' (or 'tenants import msticpyconfig.yaml'); "
            "'defender-soar tenants list' shows the saved ones."
        ) from None


def tenant_client(tenant: str):
    """A :class:`connector.DefenderClient` for the tenant block ``tenant`` (close it after use)."""
    from .limits import install_from_env

    install_from_env()  # DEFENDER_SOAR_SHARED_LIMITS=prefect (workers, serve): tenant quotas shared across processes
    return load_tenant(tenant).get_client()


@task(name="connect", task_run_name="connect-{tenant}", **TASK_OPTIONS)
def connect(tenant: str) -> dict[str, Any]:
    """Check a tenant: its block exists and a token can be had. Returns its name and metadata (no secret).

    The token is for the hunting API (Graph by default); a sign-in failure raises
    :class:`connector.AuthenticationError` naming the tenant and the reason.
    """
    block = load_tenant(tenant)
    with block.get_client() as client:
        client.get_token()
    info = {
        "tenant": tenant,
        "tenant_id": block.tenant_id,
        "client_id": block.client_id,
        "hunting_api": block.hunting_api,
        "cloud": block.cloud,
        "credential": block.secret_source,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    run_logger().info("Tenant %s (%s, %s API) signed in with its %s.", tenant, block.tenant_id,
                          block.hunting_api, block.secret_source)
    return info


# ---------------------------------------------------------------- hunting

@task(name="run_hunting_query", task_run_name="hunt-{tenant}", **TASK_OPTIONS)
def run_hunting_query(
    tenant: str,
    query: str | None = None,
    *,
    query_name: str | None = None,
    params: dict[str, Any] | None = None,
    timespan: str | None = None,
    split_by: str | None = None,
    query_paths: Sequence[str] = (),
) -> pd.DataFrame:
    """Run raw KQL (``query``) or a library query (``query_name`` with ``params``) on one tenant.

    Returns the connector's typed frame with a ``TenantName`` column first. ``timespan`` and
    ``split_by`` go to :meth:`connector.DefenderClient.run_hunting_query` (Graph); ``query_paths``
    are extra folders or YAML files of queries for ``query_name``.
    """
    if (query is None) == (query_name is None):
        raise ConfigurationError("Give either a KQL query or a query_name from the library, not both or neither.")
    if params and query_name is None:
        raise ConfigurationError("params are for library queries (query_name); put values into raw KQL yourself.")
    options = {k: v for k, v in (("timespan", timespan), ("split_by", split_by)) if v is not None}
    with tenant_client(tenant) as client:
        if query_name is not None:
            library = client.queries
            for path in query_paths:
                library.add_query_path(path)
            frame = library.run(query_name, **(params or {}), **options)
        else:
            frame = client.run_hunting_query(query, **options)
    add_tenant_column(frame, tenant)
    run_logger().info("%s: %s rows x %s columns%s.", tenant, f"{len(frame):,}", len(frame.columns),
                          f" ({query_name})" if query_name else "")
    return frame


def add_tenant_column(frame: pd.DataFrame, tenant: str) -> pd.DataFrame:
    """Put ``TenantName`` (string) first in ``frame``, in place, and return it."""
    if "TenantName" in frame.columns:
        frame.drop(columns="TenantName", inplace=True)
    frame.insert(0, "TenantName", pd.array([tenant] * len(frame), dtype="string"))
    return frame


# ---------------------------------------------------------------- enrichment

# One cache per flow run (a triage enriches several frames about the same entities); the last few
# runs of a long-lived worker are kept, not all of them.
_RUN_CACHES: OrderedDict[str, EnrichmentCache] = OrderedDict()
_RUN_CACHES_LOCK = threading.Lock()
_KEEP_RUN_CACHES = 16


def run_cache() -> EnrichmentCache:
    """The enrichment cache of the current flow run (a fresh one outside a flow run)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context is not None and context.flow_run is not None else None
    if run_id is None:
        return EnrichmentCache()
    with _RUN_CACHES_LOCK:
        cache = _RUN_CACHES.get(run_id)
        if cache is None:
            cache = _RUN_CACHES[run_id] = EnrichmentCache()
            while len(_RUN_CACHES) > _KEEP_RUN_CACHES:
                _RUN_CACHES.popitem(last=False)
        return cache


def _column(value: str | None) -> Any:
    return AUTO if value == "auto" else value


@task(name="enrich", task_run_name="enrich-{tenant}", **TASK_OPTIONS)
def enrich(
    tenant: str,
    frame: pd.DataFrame,
    *,
    device: str | None = "auto",
    user: str | None = "auto",
    file: str | None = "auto",
    ip: str | None = "auto",
    max_workers: int = 4,
    errors: str = "warn",
) -> pd.DataFrame:
    """Add device, user, file and IP context columns (:func:`connector.enrich.enrich_frame`).

    Each API is called once per distinct entity, at most ``max_workers`` at a time, under the
    tenant's rate limiter; answers are kept for the rest of the flow run. ``device`` etc. name the
    column to read (``"auto"``: found by name; ``None``: skip that kind).
    """
    with tenant_client(tenant) as client:
        out = enrich_frame(client, frame, device=_column(device), user=_column(user), file=_column(file),
                           ip=_column(ip), cache=run_cache(), max_workers=max_workers, errors=errors)
    done = {kind: f"{r['entities']} {kind}s ({r['calls']} calls)" for kind, r in out.attrs["enrichment"].items()}
    run_logger().info("Enriched %s rows: %s.", f"{len(out):,}", ", ".join(done.values()) or "no entity columns")
    return out


# ---------------------------------------------------------------- alerting

def _notification_blocks(notify: str | Sequence[str] | None) -> list[str]:
    if notify is None:
        return []
    refs = [notify] if isinstance(notify, str) else list(notify)
    for ref in refs:
        if not isinstance(ref, str) or ref.count("/") != 1 or not all(ref.split("/")):
            raise ConfigurationError(
                f"Notification block {ref!r} must be given as '<block-type-slug>/<name>', e.g. "
                "'custom-webhook/soc-channel', 'slack-webhook/soc' or 'ms-teams-webhook/soc' "
                "(see 'prefect block ls')."
            )
    return refs


def send_notification(ref: str, body: str, subject: str) -> None:
    """Send through the saved Prefect notification block ``ref`` (``type-slug/name``); raises on failure."""
    from prefect.blocks.core import Block
    from prefect.blocks.notifications import NotificationBlock

    try:
        block = Block.load(ref)
    except ValueError as exc:
        raise ConfigurationError(f"Cannot load notification block {ref!r}: {exc}") from None
    if not isinstance(block, NotificationBlock):
        raise ConfigurationError(f"Block {ref!r} is a {type(block).__name__}, not a notification block.")
    with block.raise_on_failure():
        block.notify(body=body[:MAX_NOTIFICATION], subject=subject)


def _run_link() -> str | None:
    try:
        from prefect.runtime import flow_run

        url = flow_run.ui_url
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None
    except Exception:  # noqa: BLE001 - a link is a nicety; no run context or no UI URL configured
        return None


@task(name="alert", **TASK_OPTIONS)
def alert(
    title: str,
    summary: str,
    *,
    notify: str | Sequence[str] | None = None,
    frame: pd.DataFrame | None = None,
    max_rows: int = 20,
    artifact: str | None = None,
    tenant: str | None = None,
    alert_id: str | None = None,
    incident_id: str | None = None,
    comment: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """Tell people: a Markdown artifact, notifications, and optionally a comment on the Defender alert or incident.

    - ``summary`` (Markdown) and the first ``max_rows`` of ``frame`` make the artifact (key ``artifact``,
      default from the title);
    - ``notify``: saved Prefect notification blocks as ``'<type-slug>/<name>'`` (Slack, Microsoft
      Teams, a custom webhook, ...), each sent ``title`` and ``summary``;
    - ``tenant`` with ``alert_id`` and/or ``incident_id``: ``comment`` (default: the title, the summary
      and a link to this run) is added to the alert / incident in Defender;
    - ``message``: the notification text, when it should be shorter than ``summary``.

    Every destination is tried; if a notification fails, :class:`AlertDeliveryError` is raised at the
    end naming it (the artifact and the comment are done by then). Returns what was done.
    """
    refs = _notification_blocks(notify)
    if (alert_id or incident_id) and not tenant:
        raise ConfigurationError("Commenting on a Defender alert or incident needs the tenant block name.")
    from prefect.artifacts import create_markdown_artifact

    logger = run_logger()
    link = _run_link()
    # A summary that is a whole report (its own "# " heading) is the artifact as it is.
    body = summary.strip() + "\n" if summary.lstrip().startswith("# ") else f"# {title}\n\n{summary.strip()}\n"
    if frame is not None:
        body += f"\n## First rows ({min(len(frame), max_rows)} of {len(frame):,})\n\n{frame_markdown(frame, max_rows=max_rows)}\n"
    key = artifact_key(artifact or title)
    artifact_id = create_markdown_artifact(markdown=body, key=key, description=title)
    done: dict[str, Any] = {"artifact_key": key, "artifact_id": str(artifact_id) if artifact_id else None,
                            "notified": [], "failed": {}, "commented": []}
    if alert_id or incident_id:
        text = comment or f"{title}\n\n{summary.strip()}"
        suffix = f"\n\nPrefect run: {link}" if link else ""
        if len(text) + len(suffix) > MAX_COMMENT:
            text = text[: MAX_COMMENT - len(suffix) - 40].rstrip() + "\n…(cut; full report in Prefect)"
        with tenant_client(tenant) as client:
            if alert_id:
                client.add_alert_comment(alert_id, text + suffix)
                done["commented"].append(f"alert {alert_id}")
            if incident_id:
                client.add_incident_comment(incident_id, text + suffix)
                done["commented"].append(f"incident {incident_id}")
        logger.info("Commented on %s.", " and ".join(done["commented"]))
    message = (message or summary).strip() + (f"\n\n{link}" if link else "")
    for ref in refs:
        try:
            send_notification(ref, message, title)
            done["notified"].append(ref)
        except Exception as exc:  # noqa: BLE001 - every destination is tried; failures are raised below
            done["failed"][ref] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            logger.error("Notification through %s failed: %s", ref, done["failed"][ref])
    if done["failed"]:
        raise AlertDeliveryError("Notification failed: " + "; ".join(f"{r}: {e}" for r, e in done["failed"].items()))
    return done


__all__ = ["AlertDeliveryError", "TASK_OPTIONS", "add_tenant_column", "alert", "connect", "enrich", "load_tenant",
           "run_cache", "run_hunting_query", "run_logger", "send_notification", "tenant_client"]
