"""``defender-soar contain``, ``release``, ``block-indicators`` and ``respond-file``: the response playbooks.

    defender-soar contain --tenant contoso --device wks-01.contoso.local --incident 42 --dry-run
    defender-soar contain --tenant contoso --ip 10.1.2.3 --at 2026-11-29T08:00:00Z --reason "C2 beacon"
    defender-soar release --tenant contoso --device wks-01.contoso.local --incident 42
    defender-soar block-indicators --tenant contoso --query-name M365D.host_connections --param host_name=wks-01
    defender-soar block-indicators --tenant contoso --value 203.0.113.7 --value evil.example --expires-days 14
    defender-soar respond-file --tenant contoso --sha1 0123...abcd --incident 42

Each command runs the flow of :mod:`flows.respond` in this process, against the Prefect server at
``PREFECT_API_URL`` (or a temporary one). ``--dry-run`` prints the plan and does nothing.

**Approval.** When the flow asks for approval (``contain``, ``block-indicators`` and
``respond-file`` by default; ``release --require-approval``), the plan is printed and:
``--yes`` approves in the name of ``--approver`` (default: your login name); at a terminal you are
asked; otherwise the run waits for an answer in the Prefect UI (or ``resume_flow_run``) until
``--approval-timeout``.

Exit codes: 0 done (or nothing to do, or a dry run); 1 failed; 2 usage error; 3 partly done
(some devices or indicators failed); 4 not done on purpose: the device is protected, or the
approval was refused or not given in time.
"""

from __future__ import annotations

import contextvars
import getpass
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_support import EXIT_FAILED, cli_errors, error_line

EXIT_PARTIAL = 3
EXIT_NOT_DONE = 4
#: Seconds to wait for a run to show as Paused before answering its approval request.
PAUSE_WAIT = 60.0

TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant block name.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing, notify nobody.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Approve in the name of --approver without asking.")]
ApproverOpt = Annotated[str | None, typer.Option("--approver", help="Who approves (recorded in the incident comment; default: your login name).")]
ApprovalTimeoutOpt = Annotated[int, typer.Option("--approval-timeout", min=1, help="Seconds to wait for an approval; then nothing is done.")]
ActionTimeoutOpt = Annotated[float, typer.Option("--action-timeout", min=1, help="Seconds to wait for each machine action to end.")]
NotifyOpt = Annotated[list[str] | None, typer.Option("--notify", help="Notification block as <type-slug>/<name>; repeatable.")]
IncidentOpt = Annotated[str | None, typer.Option("--incident", help="Incident to comment on (and whose evidence to show).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: goes into the machine action's comment.")]
ProtectedOpt = Annotated[str, typer.Option("--protected", help="ProtectedDevices block name.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own log lines too.")]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="Library query parameter as key=value; repeatable.")]
TimespanOpt = Annotated[str | None, typer.Option("--timespan", help="ISO 8601 duration Graph searches, e.g. P7D.")]
PollOpt = Annotated[float, typer.Option("--poll-interval", min=0.1, help="Seconds between status checks of a machine action.")]
#: Seconds between checks for an answer while a run waits for approval (someone is at the terminal).
APPROVAL_POLL = 2


def _say(text: str) -> None:
    typer.echo(text, err=True)


def _quiet_prefect(verbose: bool) -> None:
    """Keep Prefect's console lines out of the output (they still reach the server); ``--verbose`` shows them."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    level = logging.INFO if verbose else logging.CRITICAL
    for name in ("", "uvicorn", "prefect"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(level)


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint=option)
        out[key.strip()] = value
    return out


def _approver(name: str | None) -> str:
    if name and name.strip():
        return name.strip()
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): ask for --approver
        raise typer.BadParameter("cannot tell who you are; give --approver", param_hint="--approver") from None


def _wait_paused(flow_run_id: str) -> None:
    """Until the run is Paused and its form is saved (the state comes first; an answer before the form is refused)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + PAUSE_WAIT
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return
            keyset = run.state.state_details.run_input_keyset if run.state is not None else None
            if run.state is not None and run.state.is_paused() and keyset:
                try:
                    client.read_flow_run_input(run.id, keyset["schema"])
                    return
                except ObjectNotFound:
                    pass
            time.sleep(0.2)  # the run pauses right after announcing it; bounded by the deadline


def _answer(info: dict[str, Any], yes: bool, approver: str | None) -> None:
    """Show the approval request; answer it (--yes, or a terminal prompt) or say where to answer it."""
    from prefect.flow_runs import resume_flow_run

    typer.echo(info["description"])
    typer.echo("")
    run_id = info.get("flow_run_id")
    if yes:
        decision = True
    elif sys.stdin is not None and sys.stdin.isatty():
        decision = typer.confirm("Approve?", default=False)
    else:
        where = info.get("link") or f"flow run {run_id}"
        _say(f"Waiting up to {info.get('timeout')} s for an approval in the Prefect UI ({where}), or from code: "
             f"prefect.flow_runs.resume_flow_run('{run_id}', run_input={{'approve': True, 'approver': '<name>'}})")
        return
    name = _approver(approver)
    _wait_paused(run_id)
    resume_flow_run(run_id, run_input={"approve": decision, "approver": name,
                                       "comment": "answered at the command line"})
    _say(f"{'Approved' if decision else 'Refused'} as {name}.")


def _run(playbook, parameters: dict[str, Any], *, yes: bool, approver: str | None, verbose: bool) -> None:
    """Run a response flow in a thread; answer its approval request here; exit with the outcome's code."""
    from .respond import ResponseResult, response_events_to
    from .respond_tasks import ProtectedDeviceError

    with cli_errors():
        if yes:
            _approver(approver)  # fail before anything runs when no name can be found
        _quiet_prefect(verbose)
        events: queue.Queue = queue.Queue()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["state"] = playbook(**parameters, return_state=True)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                box["error"] = exc
            finally:
                events.put(("finished", {}))

        with response_events_to(lambda event, info: events.put((event, info))):
            # The flow's thread sees this thread's Prefect settings (API URL, profile), not the process defaults.
            thread = threading.Thread(target=contextvars.copy_context().run, args=(target,), daemon=True,
                                      name="response-flow")
            thread.start()
            while True:
                event, info = events.get()
                if event == "approval-requested":
                    _answer(info, yes, approver)
                elif event == "outcome":
                    box["result"] = info["result"]
                elif event == "finished":
                    break
            thread.join()
        if "error" in box:
            raise box["error"]
    state = box["state"]
    result: ResponseResult | None = box.get("result")
    if state.is_completed():
        result = state.result()
    if result is not None and result.outcome == "dry-run":
        typer.echo(result.plan)
        typer.echo("")
    if result is not None:
        typer.echo(result.message)
        for what, why in result.skipped.items():
            _say(f"skipped {what}: {why}")
        for what, why in result.failures.items():
            _say(f"FAILED {what}: {why}")
    if state.is_completed():
        if result.outcome in ("refused", "timed-out"):
            raise typer.Exit(EXIT_NOT_DONE)
        if result.outcome == "partial" or result.failures:
            raise typer.Exit(EXIT_PARTIAL)
        return
    if result is not None and result.outcome == "timed-out":
        raise typer.Exit(EXIT_NOT_DONE)
    try:
        state.result()
    except ProtectedDeviceError as exc:
        _say(f"Refused: {exc}")
        raise typer.Exit(EXIT_NOT_DONE) from None
    except Exception as exc:  # noqa: BLE001 - the flow's own error, shown as one line
        _say(error_line(exc))
    raise typer.Exit(EXIT_FAILED)


def _when(value: str | None):
    if value is None:
        return None
    from connector.kql import parse_datetime

    with cli_errors():
        return parse_datetime(value, name="--at")


def contain(
    tenant: TenantOpt,
    device: Annotated[str | None, typer.Option("--device", "-d", help="Device id, DNS name, or host name.")] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="The device's IP address at --at (instead of --device).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="When the IP was seen: ISO 8601 or -2h (default now).")] = None,
    incident: IncidentOpt = None,
    alert: Annotated[str | None, typer.Option("--alert", help="Alert whose evidence to show (and whose incident gets the comment).")] = None,
    selective: Annotated[bool, typer.Option("--selective", help="Selective isolation: Outlook, Teams and Skype keep working.")] = False,
    reason: ReasonOpt = "",
    protected: ProtectedOpt = "default",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    approver: ApproverOpt = None,
    approval_timeout: ApprovalTimeoutOpt = 3600,
    action_timeout: ActionTimeoutOpt = 900.0,
    poll_interval: PollOpt = 10.0,
    notify: NotifyOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Isolate a device (by id, name, or IP at a time) after approval; comment on the incident; notify.

    A device on the protected list is refused (exit 4). Exit codes: 0 isolated (or already), 1
    failed, 2 usage error, 4 not done (protected, refused, or no answer in time).
    """
    if (device is None) == (ip is None):
        raise typer.BadParameter("give --device or --ip (one of them)", param_hint="--device / --ip")
    from .respond import contain_device

    _run(contain_device, dict(tenant=tenant, device=device, ip=ip, at=_when(at), incident_id=incident,
                              alert_id=alert, isolation_type="Selective" if selective else "Full", reason=reason,
                              protected=protected, dry_run=dry_run, approval_timeout=approval_timeout,
                              action_timeout=action_timeout, poll_interval=poll_interval,
                              approval_poll_seconds=APPROVAL_POLL, notify=notify),
         yes=yes, approver=approver, verbose=verbose)


def release(
    tenant: TenantOpt,
    device: Annotated[str | None, typer.Option("--device", "-d", help="Device id, DNS name, or host name.")] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="The device's IP address at --at (instead of --device).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="When the IP was seen (default now).")] = None,
    incident: IncidentOpt = None,
    reason: ReasonOpt = "",
    require_approval: Annotated[bool, typer.Option("--require-approval", help="Ask for an approval first.")] = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    approver: ApproverOpt = None,
    approval_timeout: ApprovalTimeoutOpt = 3600,
    action_timeout: ActionTimeoutOpt = 900.0,
    poll_interval: PollOpt = 10.0,
    notify: NotifyOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Release a device from isolation; comment on the incident; notify.

    Exit codes: 0 released (or not isolated), 1 failed, 2 usage error, 4 approval refused or not given in time.
    """
    if (device is None) == (ip is None):
        raise typer.BadParameter("give --device or --ip (one of them)", param_hint="--device / --ip")
    from .respond import release_device

    _run(release_device, dict(tenant=tenant, device=device, ip=ip, at=_when(at), incident_id=incident, reason=reason,
                              dry_run=dry_run, approval=require_approval, approval_timeout=approval_timeout,
                              action_timeout=action_timeout, poll_interval=poll_interval,
                              approval_poll_seconds=APPROVAL_POLL, notify=notify),
         yes=yes, approver=approver, verbose=verbose)


def block_indicators_command(
    tenant: TenantOpt,
    query: Annotated[str | None, typer.Option("--query", "-q", help="KQL whose rows hold the IOCs.")] = None,
    query_name: Annotated[str | None, typer.Option("--query-name", help="Library query whose rows hold the IOCs.")] = None,
    param: ParamOpt = None,
    timespan: TimespanOpt = None,
    results: Annotated[Path | None, typer.Option("--results", help="A hunt's saved result (.parquet or .csv).")] = None,
    value: Annotated[list[str] | None, typer.Option("--value", help="An IOC (hash, IP, URL, domain); repeatable.")] = None,
    column: Annotated[list[str] | None, typer.Option("--column", help="COLUMN=TYPE to read (FileSha1, IpAddress, Url, DomainName, auto...); repeatable.")] = None,
    action: Annotated[str, typer.Option("--action", help="Indicator action: AlertAndBlock, Block, Alert, Warn, Audit...")] = "AlertAndBlock",
    expires_days: Annotated[float, typer.Option("--expires-days", min=0.01, max=365, help="Days until the indicators expire.")] = 30.0,
    severity: Annotated[str, typer.Option("--severity", help="Informational, Low, Medium or High.")] = "High",
    title: Annotated[str | None, typer.Option("--title", help="Indicator title (default from the incident or the hunt).")] = None,
    incident: IncidentOpt = None,
    max_indicators: Annotated[int, typer.Option("--max", min=1, help="Refuse more IOCs than this.")] = 500,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    approver: ApproverOpt = None,
    approval_timeout: ApprovalTimeoutOpt = 3600,
    notify: NotifyOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Create expiring indicators from the IOCs of a hunt (a query, a saved result) or from --value items.

    Exit codes: 0 created (or nothing to block), 1 failed, 2 usage error, 3 some failed, 4 approval
    refused or not given in time.
    """
    from .respond import block_indicators

    _run(block_indicators, dict(tenant=tenant, query=query, query_name=query_name, params=_pairs(param, "--param") or None,
                                timespan=timespan, results=str(results) if results else None, values=value or None,
                                columns=_pairs(column, "--column") or None, action=action,
                                expires_in_days=expires_days, severity=severity, title=title, incident_id=incident,
                                max_indicators=max_indicators, dry_run=dry_run, approval_timeout=approval_timeout,
                                approval_poll_seconds=APPROVAL_POLL, notify=notify),
         yes=yes, approver=approver, verbose=verbose)


def respond_file_command(
    tenant: TenantOpt,
    sha1: Annotated[str, typer.Option("--sha1", help="The file's SHA1.")],
    device: Annotated[list[str] | None, typer.Option("--device", "-d", help="Act on this device (id or name) instead of hunting; repeatable.")] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="KQL whose rows (DeviceId or DeviceName) are the devices.")] = None,
    query_name: Annotated[str | None, typer.Option("--query-name", help="Library query whose rows are the devices.")] = None,
    param: ParamOpt = None,
    results: Annotated[Path | None, typer.Option("--results", help="A hunt's saved result (.parquet or .csv).")] = None,
    timespan: Annotated[str, typer.Option("--timespan", help="How far back the default hunt looks (ISO 8601).")] = "P30D",
    incident: IncidentOpt = None,
    reason: ReasonOpt = "",
    protected: ProtectedOpt = "default",
    include_protected: Annotated[bool, typer.Option("--include-protected", help="Act on protected devices too.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Quarantine again where it already succeeded.")] = False,
    max_devices: Annotated[int, typer.Option("--max-devices", min=1, help="Refuse more devices than this.")] = 100,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    approver: ApproverOpt = None,
    approval_timeout: ApprovalTimeoutOpt = 3600,
    action_timeout: ActionTimeoutOpt = 900.0,
    poll_interval: PollOpt = 10.0,
    notify: NotifyOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Stop and quarantine a file (SHA1) on every device a hunt found it on (protected devices skipped).

    Exit codes: 0 done (or nothing to do), 1 failed, 2 usage error, 3 some devices failed, 4
    approval refused or not given in time.
    """
    from .respond import respond_file

    _run(respond_file, dict(tenant=tenant, sha1=sha1, device_ids=device or None, query=query, query_name=query_name,
                            params=_pairs(param, "--param") or None, results=str(results) if results else None,
                            timespan=timespan, incident_id=incident, reason=reason, protected=protected,
                            include_protected=include_protected, force=force, max_devices=max_devices,
                            dry_run=dry_run, approval_timeout=approval_timeout, action_timeout=action_timeout,
                            poll_interval=poll_interval, approval_poll_seconds=APPROVAL_POLL, notify=notify),
         yes=yes, approver=approver, verbose=verbose)


def register(app: typer.Typer) -> None:
    """Add ``contain``, ``release``, ``block-indicators`` and ``respond-file`` to the root ``defender-soar`` app."""
    app.command("contain")(contain)
    app.command("release")(release)
    app.command("block-indicators")(block_indicators_command)
    app.command("respond-file")(respond_file_command)


__all__ = ["EXIT_NOT_DONE", "EXIT_PARTIAL", "block_indicators_command", "contain", "register", "release",
           "respond_file_command"]
