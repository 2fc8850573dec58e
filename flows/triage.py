"""The ``triage_alert`` flow: one Defender alert in, a Markdown report, a comment and a notification out.

    from flows.triage import triage_alert
    result = triage_alert("da638...", "contoso", notify=["custom-webhook/soc"])
    print(result.report)

Steps, each a task run in the Prefect UI:

1. ``connect``: the tenant block exists and signs in;
2. ``get_alert``: the Graph alert with its evidence (device, user, process, file, IP, URL);
3. a pack of library queries around the alert's device, user and time (``TRIAGE_QUERIES``): the
   device's processes, network and file events, the user's logons on it, the device's other
   alerts; each narrowed to the alert's device (``DeviceId``) and to a window around its activity;
4. the process tree of the alerting process and its network connections are picked out of those
   rows; ``enrich`` adds device, user, file and IP context (each entity looked up once);
5. ``alert``: the report (alert, entities, process tree, connections, timeline, evidence, queries
   run) as a Markdown artifact ``triage-<alert id>``, a comment on the alert, the notifications.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from connector import kql
from connector.errors import ConfigurationError

from .markdown import artifact_key, cell_text, markdown_table
from .tasks import TASK_OPTIONS, alert, connect, enrich, run_hunting_query, run_logger, tenant_client

#: The query pack: (section, library query, parameters). ``{name}`` values are filled from the alert:
#: host_name, device_id, account_name, sha256, ip; ``start``/``end`` (the window) are added to each.
TRIAGE_QUERIES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("processes", "M365D.list_host_processes", {"host_name": "{host_name}"}),
    ("network", "M365D.host_connections", {"host_name": "{host_name}"}),
    ("files", "M365D.list_file_events_for_host", {"host_name": "{host_name}"}),
    ("logons", "M365D.user_logons", {"account_name": "{account_name}"}),
    ("alerts", "M365D.host_alerts", {"host_name": "{host_name}"}),
)
#: Most rows any one triage query brings back (a busy server can log a lot in a few hours).
MAX_ROWS = 10_000
#: Rows in the report's timeline (the ones nearest the alert's activity).
TIMELINE_ROWS = 60
_SECTION_TITLES = {"processes": "process", "network": "network", "files": "file", "logons": "logon",
                   "alerts": "alert"}


# ---------------------------------------------------------------- the alert's entities

@dataclass
class AlertEntities:
    """What the alert's evidence names, one list per kind, each item a dict of the useful fields."""

    devices: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    @property
    def device(self) -> dict[str, Any] | None:
        """The main device (the first one of the evidence)."""
        return self.devices[0] if self.devices else None

    @property
    def user(self) -> dict[str, Any] | None:
        """The main user account (the first one of the evidence)."""
        return self.users[0] if self.users else None


def _add(items: list[dict[str, Any]], item: dict[str, Any], key: str) -> None:
    if item.get(key) and not any(str(i.get(key)).lower() == str(item[key]).lower() for i in items):
        items.append(item)


def _account(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not value.get("accountName"):
        return None
    return {"account_name": value.get("accountName"), "domain": value.get("domainName"),
            "upn": value.get("userPrincipalName"), "sid": value.get("userSid")}


def alert_entities(alert_doc: dict[str, Any]) -> AlertEntities:
    """The entities in a Graph alert's ``evidence`` (``microsoft.graph.security.*Evidence``)."""
    found = AlertEntities()
    for item in alert_doc.get("evidence") or []:
        kind = str(item.get("@odata.type", "")).rsplit(".", 1)[-1]
        if kind == "deviceEvidence":
            _add(found.devices, {"device_id": item.get("mdeDeviceId"), "host_name": item.get("deviceDnsName"),
                                 "os": item.get("osPlatform"), "risk": item.get("riskScore"),
                                 "ips": item.get("ipInterfaces") or []}, "host_name")
            for user in item.get("loggedOnUsers") or []:
                account = _account({"accountName": user.get("accountName"), "domainName": user.get("domainName")})
                if account:
                    _add(found.users, account, "account_name")
        elif kind == "userEvidence":
            account = _account(item.get("userAccount"))
            if account:
                found.users.insert(0, account) if not any(
                    u["account_name"].lower() == account["account_name"].lower() for u in found.users
                ) else None
        elif kind == "processEvidence":
            image = item.get("imageFile") or {}
            parent = item.get("parentProcessImageFile") or {}
            _add(found.processes, {
                "process_id": item.get("processId"), "file_name": image.get("fileName"),
                "folder": image.get("filePath"), "sha1": image.get("sha1"), "sha256": image.get("sha256"),
                "command_line": item.get("processCommandLine"), "created": item.get("processCreationDateTime"),
                "parent_process_id": item.get("parentProcessId"), "parent_file_name": parent.get("fileName"),
                "device_id": item.get("mdeDeviceId"), "account": _account(item.get("userAccount")),
            }, "file_name")
            account = _account(item.get("userAccount"))
            if account:
                _add(found.users, account, "account_name")
        elif kind == "fileEvidence":
            details = item.get("fileDetails") or {}
            _add(found.files, {"file_name": details.get("fileName"), "folder": details.get("filePath"),
                               "sha1": details.get("sha1"), "sha256": details.get("sha256"),
                               "signer": details.get("signer"), "publisher": details.get("filePublisher"),
                               "evidence": True}, "sha256")
        elif kind == "ipEvidence" and item.get("ipAddress"):
            if item["ipAddress"] not in found.ips:
                found.ips.append(item["ipAddress"])
        elif kind == "urlEvidence" and item.get("url"):
            if item["url"] not in found.urls:
                found.urls.append(item["url"])
    for process in found.processes:  # a file that is only a process image still belongs in the file list
        if process.get("sha256"):
            _add(found.files, {"file_name": process["file_name"], "folder": process["folder"],
                               "sha1": process["sha1"], "sha256": process["sha256"]}, "sha256")
    return found


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return pd.Timestamp(value).tz_convert(UTC).to_pydatetime() if pd.Timestamp(value).tzinfo else \
            pd.Timestamp(value).tz_localize(UTC).to_pydatetime()
    except (ValueError, TypeError):
        return None


def alert_window(alert_doc: dict[str, Any], before: timedelta, after: timedelta) -> tuple[datetime, datetime]:
    """From ``before`` the alert's first activity to ``after`` its last (or its creation time)."""
    first = _time(alert_doc.get("firstActivityDateTime")) or _time(alert_doc.get("createdDateTime"))
    last = _time(alert_doc.get("lastActivityDateTime")) or first
    if first is None:
        raise ConfigurationError(f"Alert {alert_doc.get('id')!r} has no activity or creation time to triage around.")
    return first - before, max(last, first) + after


def plan_queries(entities: AlertEntities, start: datetime, end: datetime,
                 queries: Iterable[tuple[str, str, dict[str, str]]] = TRIAGE_QUERIES) -> list[dict[str, Any]]:
    """The library queries to run: parameters filled from the entities, each narrowed to the device.

    A query whose placeholders the alert cannot fill (no user in the evidence, say) is left out.
    """
    device, user = entities.device or {}, entities.user or {}
    values = {"host_name": device.get("host_name"), "device_id": device.get("device_id"),
              "account_name": user.get("account_name"),
              "sha256": next((f["sha256"] for f in entities.files if f.get("sha256")), None),
              "ip": entities.ips[0] if entities.ips else None}
    narrow = f"| where DeviceId == {kql.string(device['device_id'])}" if device.get("device_id") else ""
    plan = []
    for section, name, template in queries:
        params: dict[str, Any] = {}
        missing = []
        for key, value in template.items():
            match = re.fullmatch(r"\{(\w+)\}", value) if isinstance(value, str) else None
            if match:
                filled = values.get(match.group(1))
                if not filled:
                    missing.append(match.group(1))
                params[key] = filled
            else:
                params[key] = value
        if missing:
            plan.append({"section": section, "query_name": name, "skipped": f"the alert names no {', '.join(missing)}"})
            continue
        params.update(start=start, end=end, add_query_items=f"{narrow}\n| take {MAX_ROWS}".strip())
        plan.append({"section": section, "query_name": name, "params": params})
    return plan


# ---------------------------------------------------------------- process tree and connections

def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and str(a).lower() == str(b).lower()


def _int(value: Any) -> int | None:
    try:
        return None if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return None


@dataclass
class ProcessNode:
    """One process of the tree (file name and PID; command line and time when the rows have them)."""

    name: str
    pid: int | None
    command_line: str = ""
    created: Any = None
    account: str = ""
    sha256: str = ""
    children: list[ProcessNode] = field(default_factory=list)
    alerting: bool = False
    evidence: bool = False

    def key(self) -> tuple[str, int | None]:
        """(lower-case file name, PID): how a process is recognised across rows."""
        return self.name.lower(), self.pid


def focus_process(entities: AlertEntities, title: str = "") -> dict[str, Any] | None:
    """The process the alert is about, among its process evidence: the one whose image is the alert's file
    evidence, else the one the title names, else the last one."""
    named = [p for p in entities.processes if p.get("file_name")]
    if not named:
        return None
    files = {str(f.get(h)).lower() for f in entities.files if f.get("evidence") for h in ("sha256", "sha1")
             if f.get(h)}
    for process in named:
        if any(str(process.get(h)).lower() in files for h in ("sha256", "sha1") if process.get(h)):
            return process
    for process in named:
        if str(process["file_name"]).lower() in title.lower():
            return process
    return named[-1]


def process_tree(processes: pd.DataFrame, entities: AlertEntities, title: str = "",
                 max_children: int = 25) -> ProcessNode | None:
    """The ancestors, the alerting process and its descendants, from DeviceProcessEvents rows.

    The alerting process is :func:`focus_process` (matched by file name and PID); every process
    of the evidence is marked. Ancestors come from the ``InitiatingProcess*`` columns, descendants
    from the rows the process (or a descendant) started. Without rows the tree is built from the
    evidence alone (parent and process).
    """
    evidence = focus_process(entities, title)
    if evidence is None:
        return None
    nodes: dict[tuple[str, int | None], ProcessNode] = {}
    parent_of: dict[tuple[str, int | None], tuple[str, int | None]] = {}

    def node(name: Any, pid: Any, **facts: Any) -> ProcessNode | None:
        if name is None or pd.isna(name) or not str(name):
            return None
        key = (str(name).lower(), _int(pid))
        found = nodes.get(key)
        if found is None:
            found = nodes[key] = ProcessNode(str(name), _int(pid))
        for attr, value in facts.items():
            if value is not None and not (isinstance(value, float) and pd.isna(value)) and value is not pd.NA \
                    and not getattr(found, attr):
                setattr(found, attr, value)
        return found

    if processes is not None and len(processes) and "FileName" in processes.columns:
        cols = processes.columns

        def get(row: dict, name: str) -> Any:
            return row.get(name) if name in cols else None

        for row in processes.to_dict("records"):
            child = node(get(row, "FileName"), get(row, "ProcessId"), command_line=get(row, "ProcessCommandLine"),
                         created=get(row, "ProcessCreationTime") or get(row, "Timestamp"),
                         account=get(row, "AccountName"), sha256=get(row, "SHA256"))
            parent = node(get(row, "InitiatingProcessFileName"), get(row, "InitiatingProcessId"),
                          command_line=get(row, "InitiatingProcessCommandLine"),
                          created=get(row, "InitiatingProcessCreationTime"),
                          account=get(row, "InitiatingProcessAccountName"),
                          sha256=get(row, "InitiatingProcessSHA256"))
            grand = node(get(row, "InitiatingProcessParentFileName"), get(row, "InitiatingProcessParentId"),
                         created=get(row, "InitiatingProcessParentCreationTime"))
            if child is not None and parent is not None:
                parent_of.setdefault(child.key(), parent.key())
            if parent is not None and grand is not None:
                parent_of.setdefault(parent.key(), grand.key())
    target_key = (str(evidence["file_name"]).lower(), _int(evidence.get("process_id")))
    target = nodes.get(target_key) or next(
        (n for k, n in nodes.items() if k[0] == target_key[0] and target_key[1] is None), None)
    if target is None:  # not in the rows: the evidence alone
        target = node(evidence["file_name"], evidence.get("process_id"), command_line=evidence.get("command_line"),
                      created=evidence.get("created"), sha256=evidence.get("sha256"))
        parent = node(evidence.get("parent_file_name"), evidence.get("parent_process_id"))
        if parent is not None:
            parent_of[target.key()] = parent.key()
    target.alerting = True
    for item in entities.processes:
        marked = nodes.get((str(item.get("file_name")).lower(), _int(item.get("process_id"))))
        if marked is not None:
            marked.evidence = True
    # Children lists, from the parent links (every node once).
    for child_key, parent_key in parent_of.items():
        if parent_key in nodes and child_key in nodes and child_key != parent_key:
            kids = nodes[parent_key].children
            if nodes[child_key] not in kids and len(kids) < max_children:
                kids.append(nodes[child_key])
    # Climb to the oldest known ancestor; keep only the alerting process's line above it.
    chain = [target]
    seen = {target.key()}
    while parent_of.get(chain[-1].key()) in nodes and parent_of[chain[-1].key()] not in seen:
        seen.add(parent_of[chain[-1].key()])
        chain.append(nodes[parent_of[chain[-1].key()]])
    for upper, lower in zip(chain[1:], chain[:-1], strict=False):
        upper.children = [lower]  # siblings of the line to the alert are noise here
    return chain[-1]


def render_tree(root: ProcessNode | None, max_depth: int = 12) -> str:
    """The tree as indented text lines (the alerting process marked ``<== alert``, other evidence ``(evidence)``)."""
    if root is None:
        return "_(the alert has no process evidence)_"
    lines: list[str] = []

    def walk(node: ProcessNode, depth: int, seen: set) -> None:
        if node.key() in seen or depth > max_depth:
            return
        seen = seen | {node.key()}
        pid = f" (PID {node.pid})" if node.pid is not None else ""
        cmd = f"  `{md_code(cell_text(node.command_line, 160))}`" if node.command_line else ""
        mark = "  **<== alert**" if node.alerting else "  _(evidence)_" if node.evidence else ""
        lines.append(f"{'    ' * depth}- {node.name}{pid}{cmd}{mark}")
        for child in sorted(node.children, key=lambda n: str(n.created or "")):
            walk(child, depth + 1, seen)

    walk(root, 0, set())
    return "\n".join(lines)


def md_code(text: str) -> str:
    """Text safe inside inline code."""
    return text.replace("`", "'")


def tree_nodes(root: ProcessNode | None) -> list[ProcessNode]:
    """Every node of the tree, parents first."""
    out: list[ProcessNode] = []
    stack = [root] if root else []
    while stack:
        node = stack.pop(0)
        if node not in out:
            out.append(node)
            stack.extend(node.children)
    return out


def related_connections(network: pd.DataFrame, entities: AlertEntities, tree: ProcessNode | None) -> pd.DataFrame:
    """Network events of the alert's processes (tree, by file name and PID) or to the evidence's IPs and URLs."""
    if network is None or not len(network):
        return network if network is not None else pd.DataFrame()
    mask = pd.Series(False, index=network.index)
    if "RemoteIP" in network.columns and entities.ips:
        mask |= network["RemoteIP"].isin(entities.ips).fillna(False).astype(bool)
    if "RemoteUrl" in network.columns and entities.urls:
        hosts = [re.sub(r"^\w+://", "", u).split("/")[0].lower() for u in entities.urls]
        remote = network["RemoteUrl"].astype("string").str.lower()
        for host in hosts:
            mask |= remote.str.contains(host, regex=False).fillna(False).astype(bool)
    if tree is not None and {"InitiatingProcessFileName", "InitiatingProcessId"} <= set(network.columns):
        names = network["InitiatingProcessFileName"].astype("string").str.lower()
        pids = pd.to_numeric(network["InitiatingProcessId"], errors="coerce")
        for node in tree_nodes(tree):
            if node.pid is not None and node.alerting or node.pid is not None and _descends(tree, node):
                mask |= ((names == node.name.lower()) & (pids == node.pid)).fillna(False).astype(bool)
    out = network[mask]
    return out.sort_values("Timestamp") if "Timestamp" in out.columns else out


def _descends(root: ProcessNode, node: ProcessNode) -> bool:
    """Whether ``node`` is the alerting process or below it."""
    def find(current: ProcessNode, below: bool) -> bool:
        below = below or current.alerting
        if current is node:
            return below
        return any(find(c, below) for c in current.children)
    return find(root, False)


# ---------------------------------------------------------------- timeline

def _detail(section: str, row: dict[str, Any]) -> str:
    def g(name: str) -> str:
        return cell_text(row.get(name), 100)

    if section == "processes":
        return f"{g('InitiatingProcessFileName')} started {g('FileName')} (PID {g('ProcessId')}): {g('ProcessCommandLine')}"
    if section == "network":
        where = g("RemoteUrl") or g("RemoteIP")
        return f"{g('InitiatingProcessFileName')} → {where} ({g('RemoteIP')}:{g('RemotePort')})"
    if section == "files":
        return f"{g('InitiatingProcessFileName')}: {g('FileName')} in {g('FolderPath')}"
    if section == "logons":
        origin = f" from {g('RemoteIP')}" if g("RemoteIP") else ""
        return f"{g('AccountDomain')}\\{g('AccountName')} {g('LogonType')}{origin}".strip()
    if section == "alerts":
        return f"{g('Title')} ({g('Severity')}; {g('EntityType')} evidence)"
    return ""


def timeline(frames: dict[str, pd.DataFrame], around: datetime, limit: int = TIMELINE_ROWS) -> pd.DataFrame:
    """Events of every section, in time order: the ``limit`` nearest the alert's first activity."""
    rows = []
    for section, frame in frames.items():
        if frame is None or not len(frame) or "Timestamp" not in frame.columns:
            continue
        for row in frame.to_dict("records"):
            rows.append({"Timestamp": row.get("Timestamp"), "Source": _SECTION_TITLES.get(section, section),
                         "Action": row.get("ActionType") or "", "Detail": _detail(section, row)})
    if not rows:
        return pd.DataFrame(columns=["Timestamp", "Source", "Action", "Detail"])
    out = pd.DataFrame(rows)
    out["Timestamp"] = pd.to_datetime(out["Timestamp"], utc=True, errors="coerce")
    out = out.dropna(subset=["Timestamp"]).drop_duplicates()
    if len(out) > limit:
        distance = (out["Timestamp"] - pd.Timestamp(around)).abs()
        out = out.loc[distance.nsmallest(limit).index]
    return out.sort_values("Timestamp", kind="stable", ignore_index=True)


# ---------------------------------------------------------------- report

def _first(frame: pd.DataFrame | None, column: str) -> Any:
    if frame is None or column not in frame.columns or not len(frame):
        return None
    values = frame[column].dropna()
    return values.iloc[0] if len(values) else None


def build_report(alert_doc: dict[str, Any], tenant: str, entities: AlertEntities, context: pd.DataFrame,
                 tree: ProcessNode | None, connections: pd.DataFrame, events: pd.DataFrame,
                 plan: list[dict[str, Any]], rows: dict[str, int], failures: dict[str, str],
                 window: tuple[datetime, datetime]) -> str:
    """The Markdown report of a triage."""
    a = alert_doc
    device = entities.device or {}
    lines = [f"# Triage: {cell_text(a.get('title'), 200)}", ""]
    facts = [
        ("Alert", f"{a.get('id')} ({cell_text(a.get('severity'))}, {cell_text(a.get('status'))})"),
        ("Tenant", tenant),
        ("Incident", cell_text(a.get("incidentId"))),
        ("Category / MITRE", f"{cell_text(a.get('category'))} / {', '.join(a.get('mitreTechniques') or []) or '-'}"),
        ("Detected", f"{cell_text(a.get('createdDateTime'))} by {cell_text(a.get('detectionSource'))}"),
        ("Activity", f"{cell_text(a.get('firstActivityDateTime'))} .. {cell_text(a.get('lastActivityDateTime'))}"),
        ("Window searched", f"{window[0]:%Y-%m-%d %H:%M:%S}Z .. {window[1]:%Y-%m-%d %H:%M:%S}Z"),
        ("In the portal", cell_text(a.get("alertWebUrl"), 300)),
    ]
    lines += [markdown_table(["", ""], facts, width=300), ""]
    if a.get("description"):
        lines += [f"> {cell_text(a.get('description'), 600)}", ""]

    lines += ["## Entities", ""]
    entity_rows = []
    if device:
        ctx = [f"{k} {cell_text(_first(context, c))}" for k, c in (
            ("OS", "DeviceOsPlatform"), ("risk", "DeviceRiskScore"), ("exposure", "DeviceExposureLevel"),
            ("health", "DeviceHealthStatus"), ("group", "DeviceRbacGroup")) if cell_text(_first(context, c))]
        tags = _first(context, "DeviceTags")
        if tags:
            ctx.append(f"tags {', '.join(map(str, tags))}")
        entity_rows.append(("Device", f"{device.get('host_name')} ({device.get('device_id')})", "; ".join(ctx)))
    for account in entities.users:
        name = f"{account.get('domain') or ''}\\{account['account_name']}".lstrip("\\")
        count = _first(context[context["AccountName"].astype("string").str.lower() == account["account_name"].lower()]
                       if "AccountName" in context.columns else None, "UserDeviceCount")
        extra = f"UPN {account['upn']}" if account.get("upn") else ""
        if count is not None:
            extra += f"{'; ' if extra else ''}has used {count} device(s)"
        entity_rows.append(("User", name, extra))
    for process in entities.processes:
        entity_rows.append(("Process", f"{process.get('file_name')} (PID {process.get('process_id')})",
                            cell_text(process.get("command_line"), 200)))
    for info in entities.files:
        match = context[context["SHA256"].astype("string").str.lower() == str(info.get("sha256")).lower()] \
            if "SHA256" in context.columns and info.get("sha256") else None
        ctx = [f"{k} {cell_text(_first(match, c))}" for k, c in (
            ("determination", "FileDetermination"), ("threat", "FileThreatName"), ("signer", "FileSigner"),
            ("global prevalence", "FileGlobalPrevalence")) if cell_text(_first(match, c))]
        entity_rows.append(("File", f"{info.get('file_name')} in {info.get('folder')}",
                            "; ".join([f"SHA256 {info.get('sha256')}"] + ctx)))
    for ip in entities.ips:
        match = context[context["RemoteIP"].astype("string") == ip] if "RemoteIP" in context.columns else None
        prevalence = cell_text(_first(match, "IpOrgPrevalence"))
        entity_rows.append(("IP", ip, f"seen on {prevalence} device(s) in the organization" if prevalence else ""))
    for url in entities.urls:
        entity_rows.append(("URL", url, ""))
    lines += [markdown_table(["kind", "entity", "context"], entity_rows, width=300) if entity_rows
              else "_(no entities in the evidence)_", ""]

    lines += ["## Process tree", "", render_tree(tree), ""]

    lines += ["## Network connections", ""]
    if connections is not None and len(connections):
        cols = [c for c in ("Timestamp", "ActionType", "InitiatingProcessFileName", "InitiatingProcessId", "RemoteIP",
                            "RemotePort", "RemoteUrl", "Protocol", "IpOrgPrevalence") if c in connections.columns]
        lines += [markdown_table(cols, connections[cols].head(25).itertuples(index=False, name=None)), ""]
    else:
        lines += ["_(no network events of the alert's processes or to its IPs in the window)_", ""]

    lines += ["## Timeline", "",
              f"{len(events)} event(s) of the device nearest the alert's activity (processes, network, files, "
              "logons, alerts):", ""]
    lines += [markdown_table(["time", "source", "action", "detail"], events.itertuples(index=False, name=None), 160)
              if len(events) else "_(no events in the window)_", ""]

    lines += ["## Evidence", ""]
    evidence_rows = []
    for item in a.get("evidence") or []:
        kind = str(item.get("@odata.type", "")).rsplit(".", 1)[-1].removesuffix("Evidence")
        evidence_rows.append((kind, cell_text(item.get("verdict")), ", ".join(item.get("roles") or []),
                              _evidence_text(item)))
    lines += [markdown_table(["type", "verdict", "roles", "what"], evidence_rows, 200) if evidence_rows
              else "_(none)_", ""]

    lines += ["## Hunting queries run", ""]
    query_rows = []
    for entry in plan:
        count = rows.get(entry["section"], 0)
        outcome = entry.get("skipped") or failures.get(entry["section"]) or f"{count:,} row{'' if count == 1 else 's'}"
        query_rows.append((entry["section"], entry["query_name"], outcome))
    lines += [markdown_table(["section", "library query", "result"], query_rows, 300), ""]
    return "\n".join(lines)


def _evidence_text(item: dict[str, Any]) -> str:
    kind = str(item.get("@odata.type", "")).rsplit(".", 1)[-1]
    if kind == "deviceEvidence":
        return f"{item.get('deviceDnsName')} ({item.get('mdeDeviceId')})"
    if kind == "userEvidence":
        account = item.get("userAccount") or {}
        return f"{account.get('domainName') or ''}\\{account.get('accountName')}".lstrip("\\")
    if kind == "processEvidence":
        image = item.get("imageFile") or {}
        return f"{image.get('fileName')} (PID {item.get('processId')}): {cell_text(item.get('processCommandLine'), 120)}"
    if kind == "fileEvidence":
        details = item.get("fileDetails") or {}
        return f"{details.get('fileName')} ({details.get('sha256')})"
    if kind == "ipEvidence":
        return str(item.get("ipAddress"))
    if kind == "urlEvidence":
        return str(item.get("url"))
    return cell_text({k: v for k, v in item.items() if not k.startswith("@") and v}, 120)


def comment_text(alert_doc: dict[str, Any], entities: AlertEntities, tree: ProcessNode | None,
                 connections: pd.DataFrame, events: pd.DataFrame, artifact: str) -> str:
    """The short comment left on the alert: what was found, and where the full report is."""
    device, user = entities.device or {}, entities.user or {}
    parts = [f"Automated triage (defender-soar): device {device.get('host_name') or '-'}, "
             f"user {user.get('account_name') or '-'}."]
    line = _line_to_alert(tree)
    if line:
        started = sorted({c.name for c in line[-1].children}) if line[-1].alerting else []
        parts.append("Process chain: " + " > ".join(n.name for n in line)
                     + (f", which started {', '.join(started)}" if started else "") + ".")
    if connections is not None and len(connections) and "RemoteIP" in connections.columns:
        remotes = sorted({f"{r}:{p}" for r, p in zip(connections["RemoteIP"].astype("string"),
                                                     connections.get("RemotePort", [""] * len(connections)),
                                                     strict=False) if not pd.isna(r)})
        parts.append(f"Connections to {', '.join(remotes[:5])}.")
    parts.append(f"{len(events)} related event(s) in the timeline. Full report: Prefect artifact '{artifact}'.")
    return " ".join(parts)


def _line_to_alert(root: ProcessNode | None) -> list[ProcessNode]:
    line: list[ProcessNode] = []
    node = root
    while node is not None:
        line.append(node)
        if node.alerting:
            return line
        node = node.children[0] if len(node.children) == 1 else next((c for c in node.children if _has_alert(c)), None)
    return line


def _has_alert(node: ProcessNode) -> bool:
    return node.alerting or any(_has_alert(c) for c in node.children)


# ---------------------------------------------------------------- tasks and the flow

@task(name="get_alert", task_run_name="get-alert-{alert_id}", **TASK_OPTIONS)
def get_alert(tenant: str, alert_id: str) -> dict[str, Any]:
    """The Graph alert (``alerts_v2/{id}``) with its evidence."""
    with tenant_client(tenant) as client:
        return client.get_alert(alert_id)


@dataclass
class TriageResult:
    """What a triage produced."""

    alert_id: str
    report: str
    artifact_key: str
    entities: AlertEntities
    rows: dict[str, int]
    failures: dict[str, str]
    commented: list[str]
    notified: list[str]


@flow(name="triage-alert", task_runner=ThreadPoolTaskRunner(max_workers=8), persist_result=False)
def triage_alert(
    alert_id: str,
    tenant: str,
    notify: list[str] | None = None,
    comment: bool = True,
    hours_before: float = 2.0,
    hours_after: float = 2.0,
) -> TriageResult:
    """Triage one Defender alert: evidence, hunting around its device, user and time, enrichment, a report.

    The report is a Markdown artifact ``triage-<alert id>`` (and ``TriageResult.report``); with
    ``comment`` a summary is added to the alert's comments in Defender; ``notify`` names Prefect
    notification blocks (``'custom-webhook/soc'``) sent the summary. The hunting window runs from
    ``hours_before`` the alert's first activity to ``hours_after`` its last.
    """
    logger = run_logger()
    info = connect(tenant)
    alert_doc = get_alert(tenant, alert_id)
    entities = alert_entities(alert_doc)
    start, end = alert_window(alert_doc, timedelta(hours=hours_before), timedelta(hours=hours_after))
    plan = plan_queries(entities, start, end)
    timespan = None
    if info.get("hunting_api") == "graph":  # Graph searches 30 days by default: an older alert needs its window
        timespan = f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"
    futures = {
        entry["section"]: run_hunting_query.with_options(task_run_name=f"triage-{entry['section']}").submit(
            tenant, query_name=entry["query_name"], params=entry["params"], timespan=timespan)
        for entry in plan if "params" in entry
    }
    frames: dict[str, pd.DataFrame] = {}
    failures: dict[str, str] = {}
    for section, future in futures.items():
        try:
            frames[section] = future.result()
        except Exception as exc:  # noqa: BLE001 - a failed section is named in the report, the rest goes on
            failures[section] = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            logger.warning("Triage query %s failed: %s", section, failures[section])
    rows = {section: len(frame) for section, frame in frames.items()}

    tree = process_tree(frames.get("processes"), entities, str(alert_doc.get("title") or ""))
    connections = related_connections(frames.get("network"), entities, tree)
    # Enrich what the report shows: the evidence's entities and the alert's connections.
    device, user = entities.device or {}, entities.user or {}
    evidence_frame = pd.DataFrame({
        "DeviceId": [device.get("device_id")] if device.get("device_id") else [None],
        "AccountName": [user.get("account_name")],
        "SHA256": [next((f["sha256"] for f in entities.files if f.get("sha256")), None)],
        "RemoteIP": [entities.ips[0] if entities.ips else None],
    })
    if len(entities.users) > 1 or len(entities.files) > 1 or len(entities.ips) > 1:
        extra = pd.DataFrame({"AccountName": [u["account_name"] for u in entities.users[1:]]}) \
            if len(entities.users) > 1 else pd.DataFrame()
        extra = pd.concat([extra, pd.DataFrame({"SHA256": [f.get("sha256") for f in entities.files[1:]]}),
                           pd.DataFrame({"RemoteIP": entities.ips[1:]})], ignore_index=True)
        evidence_frame = pd.concat([evidence_frame, extra], ignore_index=True)
    context = enrich(tenant, evidence_frame)
    if len(connections):
        connections = enrich(tenant, connections, device=None, user=None, file=None)
    around = _time(alert_doc.get("firstActivityDateTime")) or start
    events = timeline(frames, around)
    key = artifact_key("triage", alert_id)
    report = build_report(alert_doc, tenant, entities, context, tree, connections, events, plan, rows, failures,
                          (start, end))
    summary = comment_text(alert_doc, entities, tree, connections, events, key)
    done = alert(
        f"Triage of alert {alert_id}", report, notify=notify, artifact=key, tenant=tenant,
        alert_id=alert_id if comment else None, comment=summary, message=summary,
    )
    logger.info("Triage of %s done: report in artifact %s.", alert_id, key)
    return TriageResult(alert_id=alert_id, report=report, artifact_key=key, entities=entities, rows=rows,
                        failures=failures, commented=done["commented"], notified=done["notified"])


__all__ = ["AlertEntities", "TRIAGE_QUERIES", "TriageResult", "alert_entities", "alert_window", "build_report",
           "focus_process", "get_alert", "plan_queries", "process_tree", "related_connections", "render_tree", "timeline",
           "triage_alert"]
