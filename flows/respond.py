"""Response playbooks: ``contain_device``, ``release_device``, ``block_indicators`` and ``respond_file``.

    from flows.respond import contain_device
    state = contain_device("contoso", device="wks-01.contoso.local", incident_id="42", return_state=True)

Every playbook follows the same steps, each a task run in the Prefect UI:

1. **Resolve** what to act on (a device by id, DNS name or IP at a time; the devices a hunt found
   a file on; the IOCs in a hunt's result), and **check the protected list** on the resolved
   devices (:class:`blocks.ProtectedDevices`, block ``"default"`` unless told otherwise; a
   missing block stops the run: it fails closed).
2. Build the **plan**: the device, its risk and exposure, its open alerts, the evidence, and what
   will be done. ``dry_run=True`` stops here: the plan is a Markdown artifact and the result;
   nothing is written to Defender and nobody is notified.
3. **Approval** (``approval=True``; the default except for ``release_device``): the run pauses
   with ``pause_flow_run(wait_for_input=ApprovalInput)``; the plan is the form's description in
   the Prefect UI. Resume it there, or from code with
   ``prefect.flow_runs.resume_flow_run(run_id, run_input={"approve": True, "approver": "alice"})``.
   Refused: a comment on the incident says who refused, and the team is notified; nothing else
   happens. No answer within ``approval_timeout`` seconds: nothing happens, the team is notified,
   and Prefect ends the run Failed ("The flow was timed out and never resumed.").
4. **Act** with the connector's pollers and wait for each machine action to end. The protected
   list is checked again first, on a fresh copy of the device. An action already pending on the
   device is awaited, never submitted twice; an isolation that already succeeded is not repeated.
5. **Comment** on the incident (who approved it, the action ids, this run) and **notify** the
   Prefect notification blocks in ``notify``. A failed action is commented on and notified too,
   then the run fails with the service's reason.

Each run returns a :class:`ResponseResult`; its ``outcome`` is one of :data:`OUTCOMES`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from prefect import flow
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from blocks.protected import DEFAULT_PROTECTED
from connector import kql
from connector.errors import ConfigurationError
from connector.indicators import ACTIONS as INDICATOR_ACTIONS
from connector.indicators import SEVERITIES

from .markdown import artifact_key, cell_text, markdown_table
from .respond_tasks import (
    check_protection,
    create_indicators,
    device_context,
    device_facts,
    iocs_from_frame,
    isolate_device,
    protected_devices,
    quarantine_file,
    release_isolation,
    resolve_device,
    resolve_devices,
)
from .tasks import AlertDeliveryError, alert, run_hunting_query, run_logger

#: What a response run ended with.
OUTCOMES = ("done", "already", "dry-run", "refused", "timed-out", "partial", "nothing", "failed")
#: Longest comment this module puts on a machine action (the service keeps it with the action).
MAX_ACTION_COMMENT = 900
#: Tables searched for a file's SHA1 when ``respond_file`` is given no hunt of its own.
FILE_TABLES = ("DeviceProcessEvents", "DeviceFileEvents")


class ResponseFailedError(RuntimeError):
    """A response acted on nothing: every device or indicator failed (each one's reason is in the message)."""


class ApprovalInput(RunInput):
    """The approval form of a response run (the Prefect UI renders it; ``resume_flow_run`` sends it)."""

    approve: bool = Field(False, title="Approve", description="Tick to approve; leave unticked to refuse.")
    approver: str = Field(..., min_length=1, max_length=200, title="Your name",
                          description="Recorded in the incident comment and the machine action's comment.")
    comment: str = Field("", max_length=1000, title="Comment", description="Why (optional).")


@dataclass
class Decision:
    """How the approval step ended: ``approved``, ``timed_out``, who answered and why."""

    approved: bool
    approver: str | None = None
    comment: str = ""
    timed_out: bool = False

    def text(self) -> str:
        """"approved by alice (looks bad)", "refused by bob", "not answered"."""
        if self.timed_out:
            return "not answered in time"
        verb = "approved" if self.approved else "refused"
        return f"{verb} by {self.approver}" + (f" ({self.comment})" if self.comment else "")


@dataclass
class ResponseResult:
    """What a response run did. ``outcome`` is one of :data:`OUTCOMES`; ``plan`` is the Markdown shown."""

    playbook: str
    outcome: str
    message: str
    tenant: str
    plan: str = ""
    devices: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    approval: dict[str, Any] | None = None
    failures: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    indicators: list[dict[str, Any]] = field(default_factory=list)
    commented: list[str] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly copy without the plan."""
        out = asdict(self)
        out.pop("plan")
        return out


# ---------------------------------------------------------------- events (for the CLI)

_listener: Callable[[str, dict[str, Any]], None] | None = None
_listener_lock = threading.Lock()


@contextmanager
def response_events_to(callback: Callable[[str, dict[str, Any]], None]):
    """Call ``callback(event, info)`` while response runs in this process go on.

    Events: ``approval-requested`` (``flow_run_id``, ``description``, ``timeout``) just before the
    run pauses, and ``outcome`` (``result``: the :class:`ResponseResult`) when it ends.
    """
    global _listener
    with _listener_lock:
        previous, _listener = _listener, callback
    try:
        yield
    finally:
        with _listener_lock:
            _listener = previous


def _emit(event: str, **info: Any) -> None:
    callback = _listener
    if callback is not None:
        try:
            callback(event, info)
        except Exception:  # noqa: BLE001 - a broken listener must not break a response
            run_logger().debug("response event listener failed", exc_info=True)


# ---------------------------------------------------------------- shared steps

def _run_info() -> tuple[str | None, str | None, str | None]:
    """(flow run id, flow run name, UI link) of the current run; Nones outside one."""
    try:
        from prefect.runtime import flow_run

        run_id = flow_run.id
        url = flow_run.ui_url
        return (str(run_id) if run_id else None, flow_run.name or None,
                url if isinstance(url, str) and url.startswith(("http://", "https://")) else None)
    except Exception:  # noqa: BLE001 - identification is a nicety outside a run
        return None, None, None


def _who(decision: Decision) -> str:
    return decision.approver or "nobody"


def action_comment(playbook: str, reason: str, decision: Decision, incident_id: str | None) -> str:
    """The comment put on a machine action: why, the incident, who approved, and this run (for the audit trail)."""
    run_id, _, _ = _run_info()
    parts = [f"defender-soar {playbook}", reason.strip() or None,
             f"incident {incident_id}" if incident_id else None,
             f"{decision.text()}", f"Prefect flow run {run_id}" if run_id else None]
    text = "; ".join(cell_text(p, 400) for p in parts if p)
    return text[:MAX_ACTION_COMMENT]


def _facts_table(facts: dict[str, Any], isolation: dict[str, Any] | None = None) -> str:
    rows = [("Name", facts["name"]), ("Device id", facts["id"]), ("OS", facts["os"]), ("Health", facts["health"]),
            ("Risk score", facts["risk"]), ("Exposure level", facts["exposure"]), ("Device value", facts["value"]),
            ("Device group", facts["group"]), ("Tags", ", ".join(facts["tags"]) or "-"),
            ("Last seen", facts["last_seen"]), ("Last IP address", facts["last_ip"])]
    if isolation is not None:
        action = isolation.get("action") or {}
        since = f" (action {action.get('id')}, {action.get('status')}, {action.get('lastUpdateDateTimeUtc')})" \
            if action else ""
        rows.append(("Isolation now", f"{isolation.get('state')}{since}"))
    return markdown_table(["", ""], rows, width=200)


def _context_sections(context: dict[str, Any]) -> list[str]:
    lines = [f"## Open alerts on the device ({context.get('open_alert_count', len(context['open_alerts']))})", ""]
    if context["open_alerts"]:
        lines.append(markdown_table(["created", "severity", "status", "title"],
                                    [(a["created"], a["severity"], a["status"], a["title"])
                                     for a in context["open_alerts"]], width=160))
    else:
        lines.append("_(none)_")
    lines += ["", "## Evidence", ""]
    if context["evidence"]:
        lines.append(markdown_table(["kind", "verdict", "what"],
                                    [(e["kind"], e["verdict"], e["what"]) for e in context["evidence"]], width=200))
    else:
        lines.append("_(no alert or incident given, or it has no evidence)_")
    for part, error in context.get("errors", {}).items():
        lines += ["", f"> Could not read the {part}: {cell_text(error, 300)}"]
    return lines


def _answer_section(timeout: int) -> list[str]:
    return ["## Your answer", "",
            "Tick **approve** and give your name as **approver** (it goes into the incident comment), or leave "
            f"approve unticked to refuse. If nobody answers within {_duration(timeout)}, nothing is done."]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} hour(s)"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} minute(s)"
    return f"{seconds} second(s)"


def request_approval(description: str, timeout: int, poll_seconds: int) -> Decision:
    """Pause this run until someone answers the :class:`ApprovalInput` form, or ``timeout`` seconds pass.

    An approval without a name is taken as a refusal: every action must say who allowed it.
    """
    logger = run_logger()
    run_id, _, link = _run_info()
    _emit("approval-requested", flow_run_id=run_id, description=description, timeout=timeout, link=link)
    logger.info("Waiting up to %s for approval%s.", _duration(timeout), f" at {link}" if link else "")
    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalInput.with_initial_data(description=description, approve=False),
            timeout=timeout, poll_interval=poll_seconds,
        )
    except FlowPauseTimeout:
        logger.warning("Nobody answered within %s: nothing will be done.", _duration(timeout))
        return Decision(approved=False, timed_out=True)
    approver = cell_text(answer.approver, 200)
    comment = cell_text(answer.comment, 500)
    if answer.approve and not approver:
        logger.warning("Approved without a name: taken as a refusal.")
        return Decision(approved=False, approver="(no name given)", comment="approval without a name")
    decision = Decision(approved=bool(answer.approve), approver=approver, comment=comment)
    logger.info("Approval: %s.", decision.text())
    return decision


def _decide(approval: bool, description: str, timeout: int, poll_seconds: int) -> Decision:
    if approval:
        if timeout <= 0:
            raise ConfigurationError("approval_timeout must be a positive number of seconds.")
        return request_approval(description, timeout, poll_seconds)
    run_id, _, _ = _run_info()
    return Decision(approved=True, approver="policy (approval=False)", comment=f"flow run {run_id}")


def _finish(result: ResponseResult, title: str, *, notify: list[str] | None, tenant: str | None,
            incident_id: str | None, comment: str | None, artifact: str, as_task: bool = True):
    """Artifact, incident comment and notifications for the result; then the run's final state."""
    logger = run_logger()
    summary = _report(title, result.plan, result)
    send = alert if as_task else alert.fn
    try:
        done = send(title, summary, notify=notify, artifact=artifact, tenant=tenant if incident_id else None,
                    incident_id=incident_id, comment=comment, message=result.message)
        result.commented, result.notified = done["commented"], done["notified"]
    except AlertDeliveryError as exc:
        logger.error("%s", exc)
        result.failures["notification"] = str(exc)
        if incident_id:
            result.commented = [f"incident {incident_id}"]
    _emit("outcome", result=result)
    names = {"dry-run": "Dry run", "refused": "Refused", "timed-out": "Timed out", "already": "Nothing to do",
             "nothing": "Nothing to do", "partial": "Completed with failures"}
    if result.outcome in names or result.failures:
        return Completed(name=names.get(result.outcome, "Completed with failures"), message=result.message[:2000],
                         data=result)
    return result


def _stop(result: ResponseResult, outcome: str, message: str, *, key: str, markdown: str, title: str) -> Completed:
    """End the run before acting (nothing to do, or a dry run): the plan as an artifact, the outcome event."""
    result.outcome, result.message = outcome, message
    _plan_artifact(key, markdown, title)
    _emit("outcome", result=result)
    run_logger().info(message)
    return Completed(name="Dry run" if outcome == "dry-run" else "Nothing to do", message=message, data=result)


def _approve(result: ResponseResult, *, approval: bool, plan: str, approval_timeout: int, approval_poll_seconds: int,
             title: str, not_approved: str, refused: str, notify: list[str] | None, tenant: str,
             incident_id: str | None, key: str) -> tuple[Decision, Any]:
    """Ask for the approval; (decision, None) to go on, or (decision, the run's final state) when there is none.

    ``not_approved`` and ``refused`` start the message (``"... was not approved within 1 h"``). No
    answer in time writes nothing to Defender: the run can no longer start tasks once its pause has
    expired, so the plain function does the telling.
    """
    decision = _decide(approval, plan + "\n\n" + "\n".join(_answer_section(approval_timeout)), approval_timeout,
                       approval_poll_seconds)
    result.approval = asdict(decision)
    if decision.timed_out:
        result.outcome = "timed-out"
        result.message = f"{not_approved} was not approved within {_duration(approval_timeout)}: nothing was done."
        return decision, _finish(result, f"{title}: no answer", notify=notify, tenant=None, incident_id=None,
                                 comment=None, artifact=key, as_task=False)
    if not decision.approved:
        result.outcome = "refused"
        result.message = f"{refused} was {decision.text()}: nothing was done."
        return decision, _finish(result, f"{title} refused", notify=notify, tenant=tenant, incident_id=incident_id,
                                 comment=f"defender-soar: {result.message}", artifact=key)
    return decision, None


def _report(title: str, plan: str, result: ResponseResult) -> str:
    """The outcome report: the title, what happened, the actions, then the plan that was shown (one level down)."""
    lines = [f"# {title}", "", result.message]
    if result.approval:
        lines += ["", f"Approval: {Decision(**result.approval).text()}."]
    if result.actions:
        lines += ["", markdown_table(["device", "action", "type", "status", "note"],
                                     [(a.get("device_name") or a.get("device_id"), a.get("action_id"), a.get("type"),
                                       a.get("status"), "already done" if a.get("already") else
                                       ("was pending" if a.get("reused") else ""))
                                      for a in result.actions], width=200)]
    if result.failures:
        lines += ["", "Failures:", ""] + [f"- {cell_text(k, 200)}: {cell_text(v, 400)}"
                                          for k, v in result.failures.items()]
    demoted = ["#" + line if line.startswith("#") else line for line in plan.splitlines()]
    return "\n".join(lines + ["", "## The plan", ""] + demoted)


def _plan_artifact(key: str, plan: str, title: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=plan, key=key, description=title)


# ---------------------------------------------------------------- contain_device

@flow(name="contain-device", persist_result=False)
def contain_device(
    tenant: str,
    device: str | None = None,
    ip: str | None = None,
    at: datetime | None = None,
    incident_id: str | None = None,
    alert_id: str | None = None,
    isolation_type: Literal["Full", "Selective"] = "Full",
    reason: str = "",
    protected: str | None = DEFAULT_PROTECTED,
    dry_run: bool = False,
    approval: bool = True,
    approval_timeout: int = 3600,
    approval_poll_seconds: int = 10,
    action_timeout: float = 900.0,
    poll_interval: float = 10.0,
    notify: list[str] | None = None,
) -> ResponseResult:
    """Isolate one device from the network, after a person approves; then comment on the incident and notify.

    The device is given by ``device`` (id or DNS name) or by ``ip`` seen at ``at`` (default now).
    A device on the ``protected`` list (a :class:`blocks.ProtectedDevices` block) is refused,
    however it was given. ``alert_id`` / ``incident_id`` add the evidence to the approval request
    and say which incident gets the comment (the alert's, if only the alert is given).
    ``dry_run`` shows the plan and does nothing. ``approval=False`` skips the approval step (the
    comment then says so). ``isolation_type``: ``Full``, or ``Selective`` (Outlook, Teams and
    Skype keep working).
    """
    if isolation_type not in ("Full", "Selective"):
        raise ConfigurationError(f"isolation_type must be Full or Selective, not {isolation_type!r}.")
    found = resolve_device(tenant, device=device, ip=ip, at=at)
    check_protection(found, protected, "isolate")
    facts = device_facts(found)
    context = device_context(tenant, found, alert_id=alert_id, incident_id=incident_id)
    incident_id = context["incident_id"]
    key = artifact_key("contain", facts["name"] or facts["id"])
    steps = [
        "1. Check the device against the protected list again, on a fresh copy of the device.",
        f"2. Isolate it ({isolation_type}) with the reason, the approver and this run in the action's comment.",
        f"3. Wait up to {_duration(action_timeout)} for the isolation to succeed.",
        f"4. Comment on incident {incident_id}: who approved it and the action id." if incident_id
        else "4. (No incident given: no comment.)",
        f"5. Notify {', '.join(notify)}." if notify else "5. (No notification block given.)",
    ]
    plan = "\n".join([
        f"# Isolate {facts['name']}?", "",
        f"Tenant **{tenant}**; reason: {cell_text(reason, 300) or '_(none given)_'}; "
        f"incident: {incident_id or '-'}; alert: {alert_id or '-'}.", "",
        "## Device", "", _facts_table(facts, context["isolation"]), "",
        *_context_sections(context), "",
        "## What happens if you approve", "", *steps,
    ])
    result = ResponseResult("contain-device", "done", "", tenant, plan=plan, devices=[facts])
    state = context["isolation"].get("state")
    if state == "isolated":
        return _stop(result, "already", f"{facts['name']} is already isolated (action "
                     f"{context['isolation']['action'].get('id')}): nothing to do.", key=key,
                     markdown=_report(f"Containment of {facts['name']}", plan, result), title=f"Containment of {facts['name']}")
    if dry_run:
        return _stop(result, "dry-run", f"Dry run: {facts['name']} ({facts['id']}) would be isolated ({isolation_type})"
                     + (" after approval" if approval else "") + ". Nothing was done.", key=key, markdown=plan,
                     title=f"Containment plan for {facts['name']} (dry run)")

    decision, final = _approve(result, approval=approval, plan=plan, approval_timeout=approval_timeout,
                               approval_poll_seconds=approval_poll_seconds, title=f"Containment of {facts['name']}",
                               not_approved=f"Isolation of {facts['name']}",
                               refused=f"Isolation of {facts['name']} ({facts['id']})", notify=notify, tenant=tenant,
                               incident_id=incident_id, key=key)
    if final is not None:
        return final

    if approval:
        # Time has passed: the device may have been tagged, or the list changed. Check both again, fresh.
        fresh = resolve_device(tenant, device=facts["id"])
        check_protection(fresh, protected, "isolate")
    comment = action_comment("contain-device", reason, decision, incident_id)
    try:
        action = isolate_device(tenant, facts["id"], comment=comment, isolation_type=isolation_type,
                                timeout=action_timeout, interval=poll_interval)
    except Exception as exc:
        result.outcome = "failed"
        result.failures[facts["name"]] = f"{type(exc).__name__}: {exc}"
        result.message = (f"Isolation of {facts['name']} ({facts['id']}), {decision.text()}, did not complete: "
                          f"{type(exc).__name__}: {cell_text(exc, 600)}")
        _finish(result, f"Isolation of {facts['name']} FAILED", notify=notify, tenant=tenant,
                incident_id=incident_id, comment=f"defender-soar: {result.message}", artifact=key)
        raise
    result.actions = [action]
    result.outcome = "already" if action["already"] else "done"
    result.message = (f"{facts['name']} ({facts['id']}) is isolated ({isolation_type}): machine action "
                      f"{action['action_id']} {action['status']}; {decision.text()}.")
    return _finish(result, f"{facts['name']} isolated", notify=notify, tenant=tenant,
                   incident_id=incident_id, comment=f"defender-soar: {result.message}", artifact=key)


# ---------------------------------------------------------------- release_device

@flow(name="release-device", persist_result=False)
def release_device(
    tenant: str,
    device: str | None = None,
    ip: str | None = None,
    at: datetime | None = None,
    incident_id: str | None = None,
    alert_id: str | None = None,
    reason: str = "",
    dry_run: bool = False,
    approval: bool = False,
    approval_timeout: int = 3600,
    approval_poll_seconds: int = 10,
    action_timeout: float = 900.0,
    poll_interval: float = 10.0,
    notify: list[str] | None = None,
) -> ResponseResult:
    """Release one device from isolation; then comment on the incident and notify.

    A device that is not isolated is left alone ("already"). ``approval=True`` adds the same
    approval step as :func:`contain_device`. The protected list does not apply: releasing takes
    nothing away from a device.
    """
    found = resolve_device(tenant, device=device, ip=ip, at=at)
    facts = device_facts(found)
    context = device_context(tenant, found, alert_id=alert_id, incident_id=incident_id)
    incident_id = context["incident_id"]
    key = artifact_key("release", facts["name"] or facts["id"])
    plan = "\n".join([
        f"# Release {facts['name']} from isolation?", "",
        f"Tenant **{tenant}**; reason: {cell_text(reason, 300) or '_(none given)_'}; "
        f"incident: {incident_id or '-'}.", "",
        "## Device", "", _facts_table(facts, context["isolation"]), "",
        *_context_sections(context), "",
        "## What happens", "",
        f"1. Release it, with the reason and this run in the action's comment; wait up to {_duration(action_timeout)}.",
        f"2. Comment on incident {incident_id}." if incident_id else "2. (No incident given: no comment.)",
        f"3. Notify {', '.join(notify)}." if notify else "3. (No notification block given.)",
    ])
    result = ResponseResult("release-device", "done", "", tenant, plan=plan, devices=[facts])
    if context["isolation"].get("state") in ("released", "never"):
        return _stop(result, "already", f"{facts['name']} is not isolated ({context['isolation']['state']}): nothing "
                     "to do.", key=key, markdown=_report(f"Release of {facts['name']}", plan, result),
                     title=f"Release of {facts['name']}")
    if dry_run:
        return _stop(result, "dry-run", f"Dry run: {facts['name']} ({facts['id']}) would be released from isolation. "
                     "Nothing was done.", key=key, markdown=plan, title=f"Release plan for {facts['name']} (dry run)")
    decision, final = _approve(result, approval=approval, plan=plan, approval_timeout=approval_timeout,
                               approval_poll_seconds=approval_poll_seconds, title=f"Release of {facts['name']}",
                               not_approved=f"Release of {facts['name']}",
                               refused=f"Release of {facts['name']} ({facts['id']})", notify=notify, tenant=tenant,
                               incident_id=incident_id, key=key)
    if final is not None:
        return final
    comment = action_comment("release-device", reason, decision, incident_id)
    try:
        action = release_isolation(tenant, facts["id"], comment=comment, timeout=action_timeout,
                                   interval=poll_interval)
    except Exception as exc:
        result.outcome = "failed"
        result.failures[facts["name"]] = f"{type(exc).__name__}: {exc}"
        result.message = f"Release of {facts['name']} ({facts['id']}) did not complete: {type(exc).__name__}: " \
                         f"{cell_text(exc, 600)}"
        _finish(result, f"Release of {facts['name']} FAILED", notify=notify, tenant=tenant,
                incident_id=incident_id, comment=f"defender-soar: {result.message}", artifact=key)
        raise
    result.actions = [action]
    result.message = (f"{facts['name']} ({facts['id']}) is released from isolation: machine action "
                      f"{action['action_id']} {action['status']}; {decision.text()}.")
    return _finish(result, f"{facts['name']} released", notify=notify, tenant=tenant,
                   incident_id=incident_id, comment=f"defender-soar: {result.message}", artifact=key)


# ---------------------------------------------------------------- hunts as input

def read_results(path: str) -> pd.DataFrame:
    """A hunt's saved result (the ``hunt`` flow writes Parquet, or CSV)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"No hunt result file at {path!r} (on the machine running this flow).")
    if file.suffix.lower() == ".csv":
        return pd.read_csv(file, dtype="string")
    if file.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(file)
    raise ConfigurationError(f"{path!r}: hunt results are read from .parquet or .csv files.")


def _sources(**given: Any) -> str:
    named = [k for k, v in given.items() if v not in (None, [], "")]
    if "query" in named and "query_name" in named:
        raise ConfigurationError("Give a KQL query or a library query_name, not both.")
    if len({"query" if k == "query_name" else k for k in named}) > 1:
        raise ConfigurationError(f"Give one source, not {' and '.join(named)}.")
    return named[0] if named else ""


def _hunt(tenant: str, query: str | None, query_name: str | None, params: dict[str, Any] | None,
          timespan: str | None) -> pd.DataFrame:
    return run_hunting_query(tenant, query, query_name=query_name, params=params, timespan=timespan)


# ---------------------------------------------------------------- block_indicators

@flow(name="block-indicators", persist_result=False)
def block_indicators(
    tenant: str,
    query: str | None = None,
    query_name: str | None = None,
    params: dict[str, Any] | None = None,
    timespan: str | None = None,
    results: str | None = None,
    values: list[str] | None = None,
    columns: dict[str, str] | None = None,
    action: str = "AlertAndBlock",
    expires_in_days: float = 30.0,
    severity: str = "High",
    title: str | None = None,
    description: str = "",
    incident_id: str | None = None,
    max_indicators: int = 500,
    dry_run: bool = False,
    approval: bool = True,
    approval_timeout: int = 3600,
    approval_poll_seconds: int = 10,
    notify: list[str] | None = None,
) -> ResponseResult:
    """Turn the IOCs of a hunt into Defender indicators (``action``, default AlertAndBlock) that expire.

    The IOCs come from one source: a hunt run here (``query`` or ``query_name`` + ``params``,
    over ``timespan``), a hunt's saved result (``results``: .parquet or .csv), or ``values``.
    Columns are found by name (SHA1, SHA256, MD5, RemoteIP, RemoteUrl...) or given as
    ``columns`` ({column: indicator type or "auto"}). Internal IP addresses and malformed values
    are skipped and listed. More than ``max_indicators`` IOCs stop the run (narrow the hunt).
    Each indicator expires after ``expires_in_days``; creating one that exists updates it, so a
    re-run changes nothing.
    """
    source = _sources(query=query, query_name=query_name, results=results, values=values)
    if not source:
        raise ConfigurationError("Give the IOCs: a hunting query (query or query_name), a hunt's results file, "
                                 "or values.")
    if action.lower() not in (a.lower() for a in INDICATOR_ACTIONS):
        raise ConfigurationError(f"action must be one of {', '.join(INDICATOR_ACTIONS)}, not {action!r}.")
    if severity.lower() not in (s.lower() for s in SEVERITIES):
        raise ConfigurationError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}.")
    if not 0 < expires_in_days <= 365:
        raise ConfigurationError("expires_in_days must be more than 0 and at most 365: indicators must expire.")
    if source in ("query", "query_name"):
        frame = _hunt(tenant, query, query_name, params, timespan)
        where = f"hunt {query_name}" if query_name else "a hunting query"
    elif source == "results":
        frame = read_results(results)
        where = f"hunt results {Path(results).name}"
    else:
        frame = pd.DataFrame({"Indicator": pd.array([str(v) for v in values], dtype="string")})
        where = "values given"
    iocs, skipped = iocs_from_frame(frame, columns or ({"Indicator": "auto"} if source == "values" else None))
    if len(iocs) > max_indicators:
        raise ConfigurationError(f"The {where} gave {len(iocs):,} IOCs, more than max_indicators={max_indicators}: "
                                 "narrow the hunt (or raise the limit on purpose).")
    expiration = datetime.now(UTC) + timedelta(days=expires_in_days)
    run_id, _, _ = _run_info()
    title = title or (f"defender-soar: incident {incident_id}" if incident_id else f"defender-soar: {where}")
    key = artifact_key("block-indicators", incident_id or run_id or "run")
    plan = "\n".join([
        f"# Create {len(iocs)} {action} indicator(s)?", "",
        f"Tenant **{tenant}**; from {where} ({len(frame):,} rows); expire {expiration:%Y-%m-%d %H:%M}Z "
        f"({expires_in_days:g} days); severity {severity}; title {cell_text(title, 200)!r}.", "",
        markdown_table(["type", "value", "column"], [(i["type"], i["value"], i["column"]) for i in iocs], width=200)
        if iocs else "_(no IOCs found)_",
        *(["", f"## Skipped ({len(skipped)})", "",
           markdown_table(["value", "column", "why"], [(s["value"], s["column"], s["reason"]) for s in skipped[:50]],
                          width=200)] if skipped else []),
    ])
    result = ResponseResult("block-indicators", "done", "", tenant, plan=plan,
                            skipped={s["value"]: s["reason"] for s in skipped})
    if not iocs:
        return _stop(result, "nothing", f"The {where} holds no IOC to block: nothing was done.", key=key,
                     markdown=plan, title="Block indicators")
    if dry_run:
        result.indicators = [dict(i, ok=None) for i in iocs]
        return _stop(result, "dry-run", f"Dry run: {len(iocs)} {action} indicator(s) would be created, expiring "
                     f"{expiration:%Y-%m-%d}. Nothing was done.", key=key, markdown=plan,
                     title="Block indicators (dry run)")
    decision, final = _approve(result, approval=approval, plan=plan, approval_timeout=approval_timeout,
                               approval_poll_seconds=approval_poll_seconds, title="Block indicators",
                               not_approved=f"Blocking {len(iocs)} IOC(s)", refused=f"Blocking {len(iocs)} IOC(s)",
                               notify=notify, tenant=tenant, incident_id=incident_id, key=key)
    if final is not None:
        return final
    text = "; ".join(p for p in (description.strip(), f"from {where}", f"incident {incident_id}" if incident_id
                                 else "", decision.text(), f"Prefect flow run {run_id}" if run_id else "") if p)
    result.indicators = create_indicators(tenant, iocs, action=action, expiration=expiration, severity=severity,
                                          title=title, description=text[:1000])
    result.failures = {r["value"]: r["reason"] for r in result.indicators if not r["ok"]}
    made = len(result.indicators) - len(result.failures)
    if made == 0:
        result.outcome = "failed"
    elif result.failures:
        result.outcome = "partial"
    result.message = (f"{made} of {len(iocs)} {action} indicator(s) created or updated, expiring "
                      f"{expiration:%Y-%m-%d}; {decision.text()}.")
    final = _finish(result, f"Indicators from {where}", notify=notify, tenant=tenant,
                    incident_id=incident_id, comment=f"defender-soar: {result.message}", artifact=key)
    if result.outcome == "failed":
        raise ResponseFailedError(f"No indicator could be created: {'; '.join(list(result.failures.values())[:3])}")
    return final


# ---------------------------------------------------------------- respond_file

def file_hunt_queries(sha1: str) -> list[str]:
    """The hunting queries that find the devices a file (SHA1) was seen on, one per table, newest sighting each."""
    literal = kql.string(sha1)
    return [f"{table}\n| where SHA1 =~ {literal} or InitiatingProcessSHA1 =~ {literal}\n"
            f"| summarize LastSeen = max(Timestamp) by DeviceId, DeviceName" for table in FILE_TABLES]


def devices_in_frame(frame: pd.DataFrame) -> dict[str, str | None]:
    """``{device id or name: last time seen (ISO) or None}`` from a hunt's rows (DeviceId, else DeviceName)."""
    column = "DeviceId" if "DeviceId" in frame.columns else "DeviceName" if "DeviceName" in frame.columns else None
    if column is None:
        raise ConfigurationError("The hunt's result has neither a DeviceId nor a DeviceName column.")
    when = next((c for c in ("LastSeen", "Timestamp") if c in frame.columns), None)
    out: dict[str, str | None] = {}
    rows = frame[[column] + ([when] if when else [])].dropna(subset=[column])
    for key, group in rows.groupby(column, sort=True):
        seen = pd.to_datetime(group[when], utc=True, errors="coerce").max() if when else None
        out[str(key)] = None if seen is None or pd.isna(seen) else seen.isoformat()
    return out


@flow(name="respond-file", persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=8))
def respond_file(
    tenant: str,
    sha1: str,
    device_ids: list[str] | None = None,
    query: str | None = None,
    query_name: str | None = None,
    params: dict[str, Any] | None = None,
    results: str | None = None,
    timespan: str | None = "P30D",
    incident_id: str | None = None,
    reason: str = "",
    protected: str | None = DEFAULT_PROTECTED,
    include_protected: bool = False,
    force: bool = False,
    max_devices: int = 100,
    dry_run: bool = False,
    approval: bool = True,
    approval_timeout: int = 3600,
    approval_poll_seconds: int = 10,
    action_timeout: float = 900.0,
    poll_interval: float = 10.0,
    notify: list[str] | None = None,
) -> ResponseResult:
    """Stop and quarantine a file (SHA1) on every device a hunt found it on.

    The devices come from ``device_ids``, a hunt's saved result (``results``), a hunting query of
    your own (``query`` / ``query_name``; rows need DeviceId or DeviceName), or by default a search
    of DeviceProcessEvents and DeviceFileEvents for the SHA1 over ``timespan``. Devices on the
    protected list are skipped and listed unless ``include_protected``. A device where the file
    was already quarantined after the hunt last saw it there is not done again (``force`` does
    it anyway). The actions run side by side; each device's outcome is reported, and the run
    fails only when every device failed.
    """
    logger = run_logger()
    sha1 = str(sha1).strip().lower()
    if len(sha1) != 40 or any(c not in "0123456789abcdef" for c in sha1):
        raise ConfigurationError("sha1 must be a file's SHA1: 40 hexadecimal characters.")
    source = _sources(device_ids=device_ids, query=query, query_name=query_name, results=results)
    if source == "device_ids":
        sightings: dict[str, str | None] = {str(d): None for d in device_ids}
        where = "devices given"
    elif source == "results":
        sightings = devices_in_frame(read_results(results))
        where = f"hunt results {Path(results).name}"
    elif source:
        sightings = devices_in_frame(_hunt(tenant, query, query_name, params, timespan))
        where = f"hunt {query_name}" if query_name else "a hunting query"
    else:
        futures = [run_hunting_query.submit(tenant, q, timespan=timespan) for q in file_hunt_queries(sha1)]
        frames = [f.result() for f in futures]
        sightings = {}
        for frame in frames:
            for device, seen in devices_in_frame(frame).items():
                sightings[device] = max(filter(None, (sightings.get(device), seen)), default=None)
        where = f"{' and '.join(FILE_TABLES)} over {timespan or '30 days'}"
    if len(sightings) > max_devices:
        raise ConfigurationError(f"The file was found on {len(sightings):,} devices, more than max_devices="
                                 f"{max_devices}: check the hunt (or raise the limit on purpose).")
    devices, missing = resolve_devices(tenant, list(sightings)) if sightings else ([], {})
    seen_at = {d["id"]: sightings.get(d["id"], sightings.get(d.get("computerDnsName"))) for d in devices}
    protection = protected_devices(devices, protected)
    targets = [d for d in devices if include_protected or d["id"] not in protection]
    skipped = {d["computerDnsName"]: protection[d["id"]] for d in devices if d["id"] in protection
               and not include_protected}
    skipped.update({given: f"not found: {why}" for given, why in missing.items()})
    run_id, _, _ = _run_info()
    key = artifact_key("respond-file", sha1[:12], incident_id or run_id or "")
    plan = "\n".join([
        f"# Stop and quarantine {sha1} on {len(targets)} device(s)?", "",
        f"Tenant **{tenant}**; devices from {where}; reason: {cell_text(reason, 300) or '_(none given)_'}; "
        f"incident: {incident_id or '-'}.", "",
        markdown_table(["device", "id", "OS", "risk", "exposure", "tags", "file last seen"],
                       [(d["computerDnsName"], d["id"], d.get("osPlatform"), d.get("riskScore"),
                         d.get("exposureLevel"), ", ".join(d.get("machineTags") or []), seen_at.get(d["id"]))
                        for d in targets], width=120) if targets else "_(no device to act on)_",
        *(["", f"## Skipped ({len(skipped)})", "",
           markdown_table(["device", "why"], list(skipped.items()), width=300)] if skipped else []),
        "", "## What happens if you approve", "",
        f"1. Stop and quarantine the file on each device (side by side); wait up to {_duration(action_timeout)} each.",
        f"2. Comment on incident {incident_id}." if incident_id else "2. (No incident given: no comment.)",
        f"3. Notify {', '.join(notify)}." if notify else "3. (No notification block given.)",
    ])
    result = ResponseResult("respond-file", "done", "", tenant, plan=plan,
                            devices=[device_facts(d) for d in targets], skipped=skipped)
    if not targets:
        return _stop(result, "nothing", f"No device to quarantine {sha1} on (from {where}): nothing was done.",
                     key=key, markdown=plan, title="Respond to a file")
    if dry_run:
        return _stop(result, "dry-run", f"Dry run: {sha1} would be stopped and quarantined on {len(targets)} device(s)"
                     + (f", {len(skipped)} skipped" if skipped else "") + ". Nothing was done.", key=key,
                     markdown=plan, title="Respond to a file (dry run)")
    what = f"Quarantine of {sha1} on {len(targets)} device(s)"
    decision, final = _approve(result, approval=approval, plan=plan, approval_timeout=approval_timeout,
                               approval_poll_seconds=approval_poll_seconds, title="Respond to a file",
                               not_approved=what, refused=what, notify=notify, tenant=tenant,
                               incident_id=incident_id, key=key)
    if final is not None:
        return final
    if approval and not include_protected and protected is not None:
        # The list may have changed while waiting for approval: check the devices again, fresh.
        fresh, _ = resolve_devices(tenant, [d["id"] for d in targets])
        late = protected_devices(fresh, protected)
        for device in [d for d in targets if d["id"] in late]:
            result.skipped[device["computerDnsName"]] = late[device["id"]]
        targets = [d for d in targets if d["id"] not in late]
    comment = action_comment("respond-file", reason, decision, incident_id)
    futures = {d["id"]: quarantine_file.submit(tenant, d["id"], sha1, comment=comment, seen_at=seen_at.get(d["id"]),
                                               force=force, timeout=action_timeout, interval=poll_interval)
               for d in targets}
    names = {d["id"]: d["computerDnsName"] for d in targets}
    for device_id, future in futures.items():
        try:
            result.actions.append(future.result())
        except Exception as exc:  # noqa: BLE001 - each device's failure is reported; the others go on
            result.failures[names[device_id]] = f"{type(exc).__name__}: {cell_text(exc, 400)}"
            logger.error("Quarantine on %s failed: %s", names[device_id], result.failures[names[device_id]])
    done = len(result.actions)
    if result.failures:
        result.outcome = "partial" if done else "failed"
    result.message = (f"{sha1} stopped and quarantined on {done} of {len(targets)} device(s)"
                      + (f", {len(result.skipped)} skipped" if result.skipped else "") + f"; {decision.text()}.")
    final = _finish(result, f"File {sha1[:12]}… quarantined", notify=notify, tenant=tenant,
                    incident_id=incident_id, comment=f"defender-soar: {result.message}", artifact=key)
    if result.outcome == "failed":
        raise ResponseFailedError(f"The quarantine failed on every device: "
                                 f"{'; '.join(f'{k}: {v}' for k, v in list(result.failures.items())[:3])}")
    return final


__all__ = ["ApprovalInput", "Decision", "FILE_TABLES", "OUTCOMES", "ResponseFailedError", "ResponseResult",
           "action_comment", "block_indicators", "contain_device", "devices_in_frame", "file_hunt_queries",
           "read_results", "release_device", "request_approval", "respond_file", "response_events_to"]
