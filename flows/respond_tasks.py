"""Thin tasks of the response flows: resolve a device, check the protected list, act with a poller, indicators.

Like :mod:`flows.tasks`, every task takes a tenant block *name*, uses the connector for the work,
and leaves caching, persistence and retries off (``TASK_OPTIONS``). What the tasks add is the
part a retry or a re-run must not get wrong:

- **One action per device.** The connector already returns the pending action of the same type
  instead of submitting a second one (and finds the action when the submitting POST's answer was
  lost). The tasks also look at what already *finished*: a device whose last isolation succeeded
  is not isolated again, a file already quarantined on a device since it was last seen there is
  not quarantined again. So a task retried after its action succeeded, or a flow run again,
  leaves one action on the device.
- **Protected devices are refused on the resolved device.** The device is resolved first (by
  id, DNS name or IP at a time), fetched fresh by id, and only then checked against the
  :class:`blocks.ProtectedDevices` list by id, name, tags and group.

Plain helpers (``find_device``, ``isolation_state``, ``iocs_from_frame``...) take a client or a
frame and need no Prefect server.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
from prefect import task

from connector.actions import RUNNING, MachineActionPoller
from connector.errors import ActionFailedError, ConfigurationError, DefenderError, NotFoundError
from connector.indicators import indicator_body

from .markdown import cell_text
from .tasks import TASK_OPTIONS, run_logger, tenant_client

_DEVICE_ID = re.compile(r"^[0-9a-fA-F]{40}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
#: Machine action types that change isolation.
ISOLATION_TYPES = ("Isolate", "Unisolate")
#: Most open alerts shown in an approval request.
MAX_ALERTS = 15
#: Most evidence items shown in an approval request.
MAX_EVIDENCE = 25


class ProtectedDeviceError(RuntimeError):
    """The device is on the protected list: nothing was done to it. The message names the device and the rule."""


class AmbiguousDeviceError(DefenderError):
    """A name or IP address matched several devices; the message lists them. Give the device id."""


# ---------------------------------------------------------------- devices

def device_facts(device: Mapping[str, Any]) -> dict[str, Any]:
    """What a person needs to recognise a device: id, name, OS, health, risk, exposure, value, group, tags, IP."""
    return {
        "id": device.get("id"),
        "name": device.get("computerDnsName"),
        "os": device.get("osPlatform"),
        "health": device.get("healthStatus"),
        "risk": device.get("riskScore"),
        "exposure": device.get("exposureLevel"),
        "value": device.get("deviceValue"),
        "group": device.get("rbacGroupName"),
        "tags": list(device.get("machineTags") or []),
        "last_seen": device.get("lastSeen"),
        "last_ip": device.get("lastIpAddress"),
    }


def find_device(client, device: str | None = None, ip: str | None = None, at: datetime | None = None) -> dict:
    """The one device meant by ``device`` (id, DNS name, or host name without its domain) or by ``ip`` at ``at``.

    Names match exactly (case ignored), across every page; a host name without a dot also
    matches ``<name>.<any domain>``; never a substring. Several matches raise
    :class:`AmbiguousDeviceError`, none :class:`connector.NotFoundError`. The device is then
    fetched by id, so its tags and group are as they are now.
    """
    if (device is None or not str(device).strip()) == (ip is None or not str(ip).strip()):
        raise ConfigurationError("Give the device by id or DNS name, or by IP address (with the time it was seen): "
                                 "exactly one of them.")
    if device is not None and str(device).strip():
        text = str(device).strip().rstrip(".")
        try:
            found = _by_id_or_name(client, text)
        except NotFoundError:
            if "." in text or _DEVICE_ID.match(text):
                raise
            # A host name without its domain: devices named exactly that, or that followed by a domain.
            wanted = text.lower()
            matches = [d for d in client.list_devices(name_prefix=wanted)
                       if str(d.get("computerDnsName") or "").lower() == wanted
                       or str(d.get("computerDnsName") or "").lower().startswith(wanted + ".")]
            if not matches:
                raise NotFoundError(f"No device named {text[:200]!r} (or {text[:200]}.<domain>) in this tenant.",
                                    status=404) from None
            if len({d.get("id") for d in matches}) > 1:
                raise AmbiguousDeviceError(f"{text[:200]!r} names {len(matches)} devices: " + _listing(matches)
                                           + ". Give the full DNS name or the device id.") from None
            found = matches[0]
    else:
        where = f" around {at:%Y-%m-%d %H:%M:%S}Z" if at else " now"
        unique = {d.get("id"): d for d in client.find_devices_by_ip(str(ip).strip(), at=at)}
        if not unique:
            raise NotFoundError(f"No device had IP address {str(ip).strip()[:60]}{where} (Defender looks 15 minutes "
                                "either side). Give the time the address was seen, or the device name.", status=404)
        if len(unique) > 1:
            raise AmbiguousDeviceError(f"IP address {str(ip).strip()[:60]}{where} belonged to {len(unique)} devices: "
                                       + _listing(unique.values()) + ". Give the device id.")
        found = next(iter(unique.values()))
    return client.get_device(found["id"])


def _by_id_or_name(client, text: str) -> dict:
    try:
        return client.get_device(text)
    except NotFoundError:
        # DNS names ignore case; Defender stores them in lower case, and its filter may not.
        if text == text.lower():
            raise
        return client.get_device(text.lower())


def _listing(devices: Iterable[Mapping[str, Any]], most: int = 10) -> str:
    items = list(devices)
    text = ", ".join(f"{d.get('computerDnsName')} ({d.get('id')})" for d in items[:most])
    return text + (f" and {len(items) - most} more" if len(items) > most else "")


@task(name="resolve_device", **TASK_OPTIONS)
def resolve_device(tenant: str, device: str | None = None, ip: str | None = None,
                   at: datetime | None = None) -> dict[str, Any]:
    """The device (as Defender sends it, fetched fresh by id) meant by an id, a DNS name, or an IP at a time."""
    with tenant_client(tenant) as client:
        found = find_device(client, device, ip, at)
    how = f"device {device!r}" if device else f"IP {ip}"
    run_logger().info("Resolved %s to %s (%s).", how, found.get("computerDnsName"), found.get("id"))
    return found


def load_protected(name: str):
    """The saved :class:`blocks.ProtectedDevices` block ``name``; a missing one is an error (fail closed)."""
    from blocks import ProtectedDevices
    from blocks.naming import check_block_name

    check_block_name(name, what="Protected devices block name")
    try:
        return ProtectedDevices.load(name)
    except ValueError as exc:
        if "Unable to find" not in str(exc):
            raise
        raise ConfigurationError(
            f"No protected-devices block named {name!r}: response flows refuse to act without their protected "
            f"list. Save one (it may be empty): ProtectedDevices(names=['dc-*'], tags=['Tier0']).save({name!r}); "
            "or pass protected=None to run without one, on purpose."
        ) from None


def protection_reason(device: Mapping[str, Any], protected: str | None) -> str | None:
    """Why the saved list ``protected`` protects ``device`` (None: it does not, or no list was asked for)."""
    if protected is None:
        run_logger().warning("No protected-devices list was given (protected=None): %s is not checked against one.",
                             device.get("computerDnsName"))
        return None
    return load_protected(protected).why_protected(dict(device))


@task(name="check_protection", **TASK_OPTIONS)
def check_protection(device: dict[str, Any], protected: str | None, action: str = "isolate") -> None:
    """Raise :class:`ProtectedDeviceError` if the protected list ``protected`` covers ``device`` (resolved already)."""
    reason = protection_reason(device, protected)
    if reason:
        raise ProtectedDeviceError(
            f"Refusing to {action} {device.get('computerDnsName')} ({device.get('id')}): {reason} "
            f"(protected-devices block {protected!r}). Nothing was done. Act on it by hand in the Defender portal "
            "if you must."
        )
    run_logger().info("%s (%s) is not on the protected list %r.", device.get("computerDnsName"), device.get("id"),
                      protected)


@task(name="resolve_devices", **TASK_OPTIONS)
def resolve_devices(tenant: str, devices: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Each device (id or DNS name) as Defender sends it: ``(found, {given: why not found})``."""
    found: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    with tenant_client(tenant) as client:
        for given in devices:
            try:
                device = find_device(client, given)
            except (NotFoundError, AmbiguousDeviceError) as exc:
                missing[given] = str(exc)
                continue
            found.setdefault(device["id"], device)
    if missing:
        run_logger().warning("%d device(s) not found: %s", len(missing), "; ".join(missing.values())[:1000])
    return list(found.values()), missing


@task(name="protected_devices", **TASK_OPTIONS)
def protected_devices(devices: list[dict[str, Any]], protected: str | None) -> dict[str, str]:
    """``{device id: why it is protected}`` for the devices the list ``protected`` covers (loaded once)."""
    if protected is None:
        run_logger().warning("No protected-devices list was given (protected=None): no device is checked.")
        return {}
    block = load_protected(protected)
    reasons = {d["id"]: block.why_protected(d) for d in devices}
    return {k: v for k, v in reasons.items() if v}


# ---------------------------------------------------------------- context for a decision

def isolation_state(client, device_id: str) -> dict[str, Any]:
    """Where a device's isolation stands, from its Isolate / Unisolate actions.

    ``state``: ``isolating`` or ``releasing`` (an action is Pending or InProgress), ``isolated`` or
    ``released`` (the latest one that succeeded), or ``never`` (no such action succeeded);
    ``action``: that action.
    """
    clause = " or ".join(f"type eq '{t}'" for t in ISOLATION_TYPES)
    actions = list(client.list_machine_actions(device_id=device_id, filter=clause, top=200))
    newest = sorted(actions, key=lambda a: str(a.get("creationDateTimeUtc") or ""), reverse=True)
    running = next((a for a in newest if a.get("status") in RUNNING), None)
    if running is not None:
        return {"state": "isolating" if running["type"] == "Isolate" else "releasing", "action": running}
    done = sorted((a for a in actions if a.get("status") == "Succeeded"),
                  key=lambda a: str(a.get("lastUpdateDateTimeUtc") or a.get("creationDateTimeUtc") or ""),
                  reverse=True)
    if not done:
        return {"state": "never", "action": None}
    return {"state": "isolated" if done[0]["type"] == "Isolate" else "released", "action": done[0]}


def _evidence_line(item: Mapping[str, Any]) -> tuple[str, str, str]:
    kind = str(item.get("@odata.type", "")).rsplit(".", 1)[-1].removesuffix("Evidence") or "item"
    if kind == "device":
        what = f"{item.get('deviceDnsName')} ({item.get('mdeDeviceId')})"
    elif kind == "user":
        account = item.get("userAccount") or {}
        what = f"{account.get('domainName') or ''}\\{account.get('accountName')}".lstrip("\\")
    elif kind == "process":
        image = item.get("imageFile") or {}
        command = cell_text(item.get("processCommandLine"), 120)
        what = f"{image.get('fileName')} (PID {item.get('processId')}): {command}"
    elif kind == "file":
        details = item.get("fileDetails") or {}
        what = f"{details.get('fileName')} (SHA1 {details.get('sha1')})"
    elif kind == "ip":
        what = str(item.get("ipAddress"))
    elif kind == "url":
        what = str(item.get("url"))
    else:
        what = cell_text({k: v for k, v in item.items() if not k.startswith("@") and v}, 120)
    return kind, cell_text(item.get("verdict")), what


@task(name="device_context", **TASK_OPTIONS)
def device_context(tenant: str, device: dict[str, Any], alert_id: str | None = None,
                   incident_id: str | None = None) -> dict[str, Any]:
    """What an approver needs: the device's open alerts, the evidence of the alert / incident, its isolation state.

    Returns ``open_alerts`` (title, severity, status, created), ``evidence`` (kind, verdict, what),
    ``isolation`` (:func:`isolation_state`) and ``incident_id`` (the given one, or the alert's).
    A part that cannot be read is reported under ``errors`` rather than failing the run.
    """
    out: dict[str, Any] = {"open_alerts": [], "evidence": [], "isolation": {"state": "unknown", "action": None},
                           "incident_id": incident_id, "errors": {}}
    with tenant_client(tenant) as client:
        try:
            alerts = [a for a in client.list_device_alerts(device["id"])
                      if str(a.get("status") or "").lower() != "resolved"]
            alerts.sort(key=lambda a: str(a.get("alertCreationTime") or ""), reverse=True)
            out["open_alerts"] = [{"id": a.get("id"), "title": a.get("title"), "severity": a.get("severity"),
                                   "status": a.get("status"), "created": a.get("alertCreationTime")}
                                  for a in alerts[:MAX_ALERTS]]
            out["open_alert_count"] = len(alerts)
        except DefenderError as exc:
            out["errors"]["open alerts"] = str(exc)
        items: list[dict] = []
        try:
            if alert_id:
                doc = client.get_alert(alert_id)
                items = list(doc.get("evidence") or [])
                out["incident_id"] = out["incident_id"] or (str(doc["incidentId"]) if doc.get("incidentId") else None)
            elif incident_id:
                doc = client.get_incident(incident_id)
                for alert_doc in doc.get("alerts") or []:
                    items.extend(alert_doc.get("evidence") or [])
        except DefenderError as exc:
            out["errors"]["evidence"] = str(exc)
        lines = list(dict.fromkeys(_evidence_line(i) for i in items))
        out["evidence"] = [{"kind": k, "verdict": v, "what": w} for k, v, w in lines[:MAX_EVIDENCE]]
        try:
            out["isolation"] = isolation_state(client, device["id"])
        except DefenderError as exc:
            out["errors"]["isolation state"] = str(exc)
    for part, error in out["errors"].items():
        run_logger().warning("Could not read the %s of %s: %s", part, device.get("computerDnsName"), error)
    return out


# ---------------------------------------------------------------- machine actions

def action_outcome(action: Mapping[str, Any], *, reused: bool = False, already: bool = False) -> dict[str, Any]:
    """A machine action, as the flows report it (id, type, status, device, who, when, reused / already done)."""
    return {
        "action_id": action.get("id"), "type": action.get("type"), "status": action.get("status"),
        "device_id": action.get("machineId"), "device_name": action.get("computerDnsName"),
        "requestor": action.get("requestor"), "created": action.get("creationDateTimeUtc"),
        "updated": action.get("lastUpdateDateTimeUtc"), "reused": reused, "already": already,
    }


def _wait(poller: MachineActionPoller, timeout: float, interval: float) -> dict:
    run_logger().info("%s action %s on %s%s; waiting up to %.0f s for it to end.", poller.action.get("type"),
                      poller.action_id, poller.action.get("computerDnsName") or poller.action.get("machineId"),
                      " (already pending: not submitted again)" if poller.reused else "", timeout)
    return poller.result(timeout=timeout, interval=interval)


@task(name="isolate_device", task_run_name="isolate-{device_id}", **TASK_OPTIONS)
def isolate_device(tenant: str, device_id: str, *, comment: str, isolation_type: str = "Full",
                   timeout: float = 900.0, interval: float = 10.0) -> dict[str, Any]:
    """Isolate a device and wait for the action to succeed; a device already isolated is left as it is.

    Raises :class:`connector.ActionFailedError` (Failed, TimeOut, Cancelled, with the service's
    reason) or :class:`connector.ServiceError` when ``timeout`` seconds pass first (the action
    goes on in Defender).
    """
    with tenant_client(tenant) as client:
        state = isolation_state(client, device_id)
        if state["state"] == "isolated":
            run_logger().info("%s is already isolated (action %s): nothing submitted.", device_id,
                              state["action"].get("id"))
            return action_outcome(state["action"], reused=True, already=True)
        poller = client.begin_isolate_device(device_id, comment=comment, isolation_type=isolation_type)
        return action_outcome(_wait(poller, timeout, interval), reused=poller.reused)


@task(name="release_device", task_run_name="release-{device_id}", **TASK_OPTIONS)
def release_isolation(tenant: str, device_id: str, *, comment: str, timeout: float = 900.0,
                      interval: float = 10.0) -> dict[str, Any]:
    """Release a device from isolation and wait; a device not isolated is left as it is."""
    with tenant_client(tenant) as client:
        state = isolation_state(client, device_id)
        if state["state"] in ("released", "never"):
            run_logger().info("%s is not isolated (%s): nothing submitted.", device_id, state["state"])
            return action_outcome(state["action"] or {"machineId": device_id, "status": "NotIsolated"},
                                  reused=True, already=True)
        poller = client.begin_release_device(device_id, comment=comment)
        return action_outcome(_wait(poller, timeout, interval), reused=poller.reused)


def _action_sha1(action: Mapping[str, Any]) -> str:
    return str((action.get("relatedFileInfo") or {}).get("fileIdentifier") or "").lower()


@task(name="quarantine_file", task_run_name="quarantine-{device_id}", **TASK_OPTIONS)
def quarantine_file(tenant: str, device_id: str, sha1: str, *, comment: str, seen_at: str | None = None,
                    force: bool = False, timeout: float = 900.0, interval: float = 10.0) -> dict[str, Any]:
    """Stop and quarantine a file (SHA1) on a device, and wait.

    Not submitted again when a quarantine of this SHA1 is pending on the device (that one is
    awaited) or succeeded after ``seen_at`` (when the hunt last saw the file there; without it,
    any earlier success counts) unless ``force``. Defender runs one quarantine at a time on a
    device: when another file's is pending, it is awaited first, then this one is submitted.
    """
    sha1 = str(sha1).strip().lower()
    with tenant_client(tenant) as client:
        mine = [a for a in client.list_machine_actions(device_id=device_id, action_type="StopAndQuarantineFile",
                                                       top=200) if _action_sha1(a) == sha1]
        mine.sort(key=lambda a: str(a.get("creationDateTimeUtc") or ""), reverse=True)
        running = next((a for a in mine if a.get("status") in RUNNING), None)
        if running is not None:
            poller = MachineActionPoller(client, running, reused=True)
            return action_outcome(_wait(poller, timeout, interval), reused=True)
        cutoff = pd.Timestamp(seen_at) if seen_at else None
        for action in mine:
            when = pd.Timestamp(action.get("creationDateTimeUtc")) if action.get("creationDateTimeUtc") else None
            if action.get("status") == "Succeeded" and not force and (cutoff is None or (when and when > cutoff)):
                run_logger().info("%s was already quarantined on %s (action %s) after it was last seen there.",
                                  sha1, device_id, action.get("id"))
                return action_outcome(action, reused=True, already=True)
        for _ in range(3):
            poller = client.begin_stop_and_quarantine_file(device_id, sha1, comment=comment)
            if not poller.reused or _action_sha1(poller.action) == sha1:
                return action_outcome(_wait(poller, timeout, interval), reused=poller.reused)
            # Another file's quarantine is running on the device: the service takes one at a time.
            run_logger().info("Another file's quarantine (action %s) is pending on %s: waiting for it first.",
                              poller.action_id, device_id)
            try:
                poller.result(timeout=timeout, interval=interval)
            except ActionFailedError:
                pass  # its outcome is not ours to report
        raise ConfigurationError(f"Could not submit the quarantine of {sha1} on {device_id}: other quarantines kept "
                                 "running. Try again later.")


# ---------------------------------------------------------------- indicators

#: Column name (lower case) -> indicator type, for columns found by name.
IOC_COLUMNS = {
    "sha1": "FileSha1", "filesha1": "FileSha1", "sha256": "FileSha256", "filesha256": "FileSha256",
    "md5": "FileMd5", "filemd5": "FileMd5", "remoteip": "IpAddress", "ipaddress": "IpAddress",
    "remoteurl": "Url", "url": "Url", "domain": "DomainName", "domainname": "DomainName",
    "indicator": "auto", "value": "auto", "ioc": "auto",
}
_HASH_LENGTHS = {"FileSha1": 40, "FileSha256": 64, "FileMd5": 32}
# Addresses that are ours, not an attacker's: blocking them cuts off our own network.
_INTERNAL = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "::1/128", "::/128", "fc00::/7", "fe80::/10", "ff00::/8")]


def guess_type(value: str) -> str | None:
    """The indicator type of a bare value: a hash by its length, an IP, a URL (with a scheme or path), a domain."""
    text = str(value).strip()
    if _HEX.match(text):
        return next((t for t, n in _HASH_LENGTHS.items() if len(text) == n), None)
    try:
        ipaddress.ip_address(text)
        return "IpAddress"
    except ValueError:
        pass
    if "://" in text or "/" in text:
        return "Url"
    if re.fullmatch(r"(?i)[a-z0-9_-]+(\.[a-z0-9_-]+)+", text):
        return "DomainName"
    return None


def check_ioc(value: Any, indicator_type: str) -> tuple[str | None, str | None]:
    """``(normalised value, None)`` for a value fit to be an indicator of that type, else ``(None, reason)``."""
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return None, "empty"
    text = str(value).strip()
    if not text:
        return None, "empty"
    if indicator_type == "auto":
        guessed = guess_type(text)
        if guessed is None:
            return None, "not a hash, IP address, URL or domain"
        indicator_type = guessed
    if indicator_type in _HASH_LENGTHS:
        if len(text) != _HASH_LENGTHS[indicator_type] or not _HEX.match(text):
            return None, f"not a {indicator_type[4:].upper()} hash"
        return text.lower(), None
    if indicator_type == "IpAddress":
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return None, "not an IP address"
        if any(address in net for net in _INTERNAL if net.version == address.version):
            return None, "an internal, loopback or reserved address (blocking it would cut off your own network)"
        return str(address), None
    if indicator_type == "Url":
        if "://" not in text and "/" not in text:
            return check_ioc(text, "DomainName")  # DeviceNetworkEvents' RemoteUrl is often a bare host
        parts = urlsplit(text if "://" in text else "http://" + text)
        if not parts.hostname:
            return None, "not a URL"
        return text, None
    if indicator_type == "DomainName":
        host = text.lower().rstrip(".")
        if not re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)+", host):
            return None, "not a domain name"
        return host, None
    return text, None


def _ioc_type(value: str, indicator_type: str) -> str:
    if indicator_type == "auto":
        return guess_type(value) or indicator_type
    if indicator_type == "Url" and "://" not in value and "/" not in value:
        return "DomainName"
    return indicator_type


def iocs_from_frame(frame: pd.DataFrame, columns: Mapping[str, str] | None = None
                    ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Indicators found in a hunt's frame: ``([{value, type, column}], [{value, column, reason}] skipped)``.

    ``columns`` maps column -> indicator type (FileSha1, FileSha256, FileMd5, IpAddress, Url,
    DomainName, or ``auto`` to tell by the value); by default the columns are found by name
    (SHA1, SHA256, MD5, RemoteIP, RemoteUrl, Url, DomainName, Indicator...). Only those columns
    are read: a hunt's ``InitiatingProcessSHA1`` (often a system binary) is never blocked unless
    asked for. Values are de-duplicated; internal IP addresses and malformed values are skipped.
    """
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ConfigurationError(f"No column(s) {', '.join(missing)} in the hunt's result; it has: "
                                     f"{', '.join(map(str, frame.columns[:30]))}.")
        chosen = dict(columns)
    else:
        chosen = {c: IOC_COLUMNS[str(c).lower()] for c in frame.columns if str(c).lower() in IOC_COLUMNS}
        if not chosen:
            raise ConfigurationError("The hunt's result has no indicator column (SHA1, SHA256, MD5, RemoteIP, "
                                     "RemoteUrl, Url, DomainName): name the columns to read.")
    iocs: dict[tuple[str, str], dict[str, str]] = {}
    skipped: dict[tuple[str, str], dict[str, str]] = {}
    for column, indicator_type in chosen.items():
        for raw in pd.unique(frame[column].dropna()):
            value, reason = check_ioc(raw, indicator_type)
            if value is None:
                if reason != "empty":
                    skipped.setdefault((str(raw), column), {"value": cell_text(raw, 200), "column": str(column),
                                                            "reason": reason})
                continue
            kind = _ioc_type(value, indicator_type)
            iocs.setdefault((kind, value.lower()), {"value": value, "type": kind, "column": str(column)})
    return list(iocs.values()), list(skipped.values())


@task(name="create_indicators", **TASK_OPTIONS)
def create_indicators(tenant: str, iocs: list[dict[str, str]], *, action: str, expiration: datetime,
                      severity: str, title: str, description: str) -> list[dict[str, Any]]:
    """Create (or update: same value and type) an indicator per IOC, in batches; returns one result per IOC.

    Each result: ``value``, ``type``, ``ok``, ``id``, ``reason`` (the service's, when it failed).
    """
    bodies = [indicator_body(i["value"], i["type"], action, title=title, description=description, severity=severity,
                             expiration=expiration, generate_alert=True if action == "Audit" else None)
              for i in iocs]
    with tenant_client(tenant) as client:
        answers = client.import_indicators(bodies)
    by_value = {str(a.get("indicator") or "").lower(): a for a in answers}
    results = []
    for ioc, answer in zip(iocs, answers + [{}] * (len(iocs) - len(answers)), strict=False):
        found = by_value.get(ioc["value"].lower(), answer)
        ok = bool(found) and not found.get("isFailed")
        results.append({"value": ioc["value"], "type": ioc["type"], "ok": ok, "id": found.get("id"),
                        "reason": None if ok else (found.get("failureReason") or "no result returned")})
    failed = sum(not r["ok"] for r in results)
    run_logger().info("Indicators: %d created or updated, %d failed.", len(results) - failed, failed)
    return results


__all__ = ["AmbiguousDeviceError", "IOC_COLUMNS", "ProtectedDeviceError", "action_outcome", "check_ioc",
           "check_protection", "create_indicators", "device_context", "device_facts", "find_device", "guess_type",
           "iocs_from_frame", "isolate_device", "isolation_state", "load_protected", "protected_devices",
           "protection_reason", "quarantine_file", "release_isolation", "resolve_device", "resolve_devices"]
