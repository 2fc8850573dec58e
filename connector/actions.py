"""Machine actions (isolate, release, scan, collect, restrict, quarantine) as long-running operations.

Each ``begin_...`` verb returns a :class:`MachineActionPoller`. Before submitting, it looks for an
action of the same type already pending or running on the device and returns *that* action's
poller instead: a re-run flow, a retried task or a double click never queues a second isolation.
A 400 "already in progress" from the service is handled the same way. The submitting POST is never
sent twice after a timeout; if its answer was lost, the action is found by looking it up.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .errors import ActionFailedError, BadRequestError, ConflictError, ServiceError
from .hunting import iso
from .resources import odata_string, segment

log = logging.getLogger(__name__)

TERMINAL = ("Succeeded", "Failed", "TimeOut", "Cancelled")
_HEX_ID = re.compile(r"^[0-9a-fA-F]{40}$")
RUNNING = ("Pending", "InProgress")
_READ = "Machine.Read.All (WindowsDefenderATP)"
# How far the service's clock may be behind ours when a lost answer is looked up by creation time.
_CLOCK_SKEW = timedelta(minutes=5)
#: action type -> (path suffix, permission)
_ACTIONS = {
    "Isolate": ("isolate", "Machine.Isolate (WindowsDefenderATP)"),
    "Unisolate": ("unisolate", "Machine.Isolate (WindowsDefenderATP)"),
    "RunAntiVirusScan": ("runAntiVirusScan", "Machine.Scan (WindowsDefenderATP)"),
    "CollectInvestigationPackage": ("collectInvestigationPackage", "Machine.CollectForensics (WindowsDefenderATP)"),
    "RestrictCodeExecution": ("restrictCodeExecution", "Machine.RestrictExecution (WindowsDefenderATP)"),
    "UnrestrictCodeExecution": ("unrestrictCodeExecution", "Machine.RestrictExecution (WindowsDefenderATP)"),
    "StopAndQuarantineFile": ("StopAndQuarantineFile", "Machine.StopAndQuarantine (WindowsDefenderATP)"),
}


class MachineActionPoller:
    """A machine action in flight: ``.action_id``, ``.status()``, ``.result(timeout=)``, ``.cancel()``.

    ``reused`` is True when the action was already pending on the device (nothing new was sent).
    """

    def __init__(self, client, action: dict, *, reused: bool = False,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._action = action
        self.reused = reused
        self._sleep = sleep

    def __repr__(self) -> str:
        a = self._action
        return f"<MachineActionPoller {a.get('type')} {a.get('id')} on {a.get('machineId')}: {a.get('status')}>"

    @property
    def action_id(self) -> str:
        """The machine action's id (a GUID)."""
        return self._action["id"]

    @property
    def action(self) -> dict:
        """The action as last seen, as sent."""
        return dict(self._action)

    def status(self) -> str:
        """Fetch and return the current status: Pending, InProgress, Succeeded, Failed, TimeOut or Cancelled."""
        self._action = self._client.get_machine_action(self.action_id)
        return self._action.get("status", "Unknown")

    def done(self) -> bool:
        """True once the last seen status is terminal (no call made)."""
        return self._action.get("status") in TERMINAL

    def result(self, timeout: float = 600.0, interval: float = 5.0) -> dict:
        """Poll until the action ends; return it if it Succeeded, else raise :class:`ActionFailedError`.

        Raises :class:`ServiceError` when ``timeout`` seconds pass first (the action goes on in
        Defender; poll again, or :meth:`cancel` it).
        """
        deadline = time.monotonic() + timeout
        while not self.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceError(
                    f"Machine action {self.action_id} ({self._action.get('type')}) is still "
                    f"{self._action.get('status')} after {timeout:g}s; it goes on in Defender. Poll it again "
                    "or cancel it.", reached_service=True)
            self._sleep(min(interval, remaining))
            self.status()
        final = self._action.get("status")
        if final != "Succeeded":
            reason = (self._action.get("cancellationComment") or self._action.get("errorMessage")
                      or self._action.get("title") or "no reason given")
            raise ActionFailedError(
                f"Machine action {self.action_id} ({self._action.get('type')} on "
                f"{self._action.get('computerDnsName') or self._action.get('machineId')}) ended {final}: {reason}.",
                action=self.action, final_status=final,
            )
        return self.action

    def cancel(self, comment: str = "Cancelled by defender-soar") -> dict:
        """Ask Defender to cancel the action; returns it (poll on to see it Cancelled)."""
        # Cancelling takes the permission of the action itself (Machine.Isolate for an isolation...).
        _, permission = _ACTIONS.get(self._action.get("type", ""), (None, "Machine.Isolate (WindowsDefenderATP)"))
        self._action = self._client._resource("mde").send(
            "POST", f"/api/machineactions/{segment(self.action_id)}/cancel", {"Comment": comment},
            operation="cancel machine action", permission=permission)
        return self.action


class ActionOperations:
    """``begin_...`` machine actions and their lookups: mixed into :class:`~connector.DefenderClient`."""

    def get_machine_action(self, action_id: str) -> dict:
        """One machine action, as sent."""
        return self._resource("mde").get(f"/api/machineactions/{segment(action_id)}",
                                         operation="get machine action", permission=_READ)

    def list_machine_actions(self, *, device_id: str | None = None, action_type: str | None = None,
                             status: str | None = None, filter: str | None = None, top: int | None = None):
        """Machine actions, newest first as the service sends them, lazily paged."""
        clauses = [f"machineId eq {odata_string(device_id)}" if device_id else None,
                   f"type eq {odata_string(action_type)}" if action_type else None,
                   f"status eq {odata_string(status)}" if status else None, filter]
        clause = " and ".join(f"({c})" for c in clauses if c)
        return self._resource("mde").pager("/api/machineactions", operation="list machine actions",
                                            permission=_READ, params={"$filter": clause} if clause else None,
                                            limit=top)

    def get_investigation_package_uri(self, action_id: str) -> str:
        """The download URL of a collected investigation package (valid for a short time)."""
        answer = self._resource("mde").get(f"/api/machineactions/{segment(action_id)}/GetPackageUri",
                                           operation="get investigation package URI",
                                           permission="Machine.CollectForensics (WindowsDefenderATP)")
        return answer.get("value", "")

    def begin_isolate_device(self, device_id: str, *, comment: str, isolation_type: str = "Full"):
        """Isolate a device from the network (``Full`` or ``Selective``)."""
        if isolation_type not in ("Full", "Selective", "UnManagedDevice"):
            raise BadRequestError("isolation_type must be Full, Selective or UnManagedDevice.")
        return self._begin("Isolate", device_id, {"Comment": comment, "IsolationType": isolation_type})

    def begin_release_device(self, device_id: str, *, comment: str):
        """Release a device from isolation."""
        return self._begin("Unisolate", device_id, {"Comment": comment})

    def begin_run_antivirus_scan(self, device_id: str, *, comment: str, scan_type: str = "Quick"):
        """Run a Microsoft Defender Antivirus scan (``Quick`` or ``Full``)."""
        if scan_type not in ("Quick", "Full"):
            raise BadRequestError("scan_type must be Quick or Full.")
        return self._begin("RunAntiVirusScan", device_id, {"Comment": comment, "ScanType": scan_type})

    def begin_collect_investigation_package(self, device_id: str, *, comment: str):
        """Collect an investigation package; then :meth:`get_investigation_package_uri`."""
        return self._begin("CollectInvestigationPackage", device_id, {"Comment": comment})

    def begin_restrict_app_execution(self, device_id: str, *, comment: str):
        """Allow only Microsoft-signed code to run on the device."""
        return self._begin("RestrictCodeExecution", device_id, {"Comment": comment})

    def begin_unrestrict_app_execution(self, device_id: str, *, comment: str):
        """Lift an app execution restriction."""
        return self._begin("UnrestrictCodeExecution", device_id, {"Comment": comment})

    def begin_stop_and_quarantine_file(self, device_id: str, sha1: str, *, comment: str):
        """Stop the processes of a file (by SHA1) on the device and quarantine it."""
        text = str(sha1).strip().lower()
        if len(text) != 40 or any(c not in "0123456789abcdef" for c in text):
            raise BadRequestError("Stop and quarantine takes a file's SHA1: 40 hexadecimal characters.")
        return self._begin("StopAndQuarantineFile", device_id, {"Comment": comment, "Sha1": text})

    def _begin(self, action_type: str, device_id: str, body: dict) -> MachineActionPoller:
        if not str(body.get("Comment") or "").strip():
            raise BadRequestError("A machine action needs a comment: say why, for the audit trail.")
        suffix, permission = _ACTIONS[action_type]
        pending = self._pending_action(device_id, action_type, body.get("Sha1"))
        if pending is not None:
            log.info("%s is already %s on %s (action %s): not submitting again.", action_type, pending["status"],
                     device_id, pending["id"])
            return MachineActionPoller(self, pending, reused=True)
        sent_at = datetime.now(UTC)
        try:
            action = self._resource("mde").send("POST", f"/api/machines/{segment(device_id)}/{suffix}", body,
                                                operation=f"{action_type} device", permission=permission)
        except (BadRequestError, ConflictError) as exc:
            if "in progress" not in exc.message.lower() and not isinstance(exc, ConflictError):
                raise
            pending = self._pending_action(device_id, action_type, body.get("Sha1"))
            if pending is None:
                raise ConflictError(f"{action_type} on {device_id}: the service says an action is in progress, but "
                                    "none is listed as pending. Try again shortly.", status=exc.status) from None
            return MachineActionPoller(self, pending, reused=True)
        except ServiceError as exc:
            if not exc.reached_service:
                raise
            # The request may have arrived and the answer been lost: find the action rather than send it twice.
            # A quick device may already have finished it, so look beyond the pending ones too.
            pending = (self._pending_action(device_id, action_type, body.get("Sha1"))
                       or self._submitted_action(device_id, action_type, body["Comment"], sent_at, body.get("Sha1")))
            if pending is None:
                raise ServiceError(
                    f"{action_type} on {device_id}: the answer was lost and no such action is on the device, "
                    "so it was probably not created. Nothing was sent twice; run it again to retry.",
                    reached_service=True,
                ) from None
            log.warning("%s on %s: the answer was lost; found action %s.", action_type, device_id, pending["id"])
            return MachineActionPoller(self, pending, reused=False)
        return MachineActionPoller(self, action)

    def _submitted_action(self, device_id: str, action_type: str, comment: str, sent_at: datetime,
                          sha1: str | None = None) -> dict | None:
        """The newest action of this type on the device, created since ``sent_at`` with our comment, in any status."""
        since = f"creationDateTimeUtc ge {iso(sent_at - _CLOCK_SKEW)}"
        actions = self.list_machine_actions(device_id=device_id, action_type=action_type, filter=since)
        return next((a for a in actions if a.get("requestorComment") == comment
                     and (sha1 is None or _file_of(a) == sha1.lower())), None)

    def _pending_action(self, device_id: str, action_type: str, sha1: str | None = None) -> dict | None:
        """An action of this type pending or running on the device (for a file action: on the same file)."""
        status = " or ".join(f"status eq {odata_string(s)}" for s in RUNNING)
        # Device ids are lower-case hex in Defender; a caller's upper-case id must not miss the pending action.
        device = device_id.strip().lower() if _HEX_ID.match(device_id.strip()) else device_id
        actions = self.list_machine_actions(device_id=device, action_type=action_type, filter=status)
        return next((a for a in actions if sha1 is None or _file_of(a) == sha1.lower()), None)


def _file_of(action: dict) -> str | None:
    """The lower-cased file identifier of a file action (``relatedFileInfo.fileIdentifier``), if any."""
    info = action.get("relatedFileInfo") or {}
    value = info.get("fileIdentifier") if isinstance(info, dict) else None
    return value.lower() if isinstance(value, str) else None
