"""Devices (machines) on the Defender for Endpoint API: by id or name, by name prefix, by IP at a time."""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import UTC, datetime

from .alerts import MDE_ALERT_KINDS
from .errors import BadRequestError, NotFoundError
from .hunting import iso
from .paging import ItemPaged
from .resources import odata_filter, odata_string, segment

log = logging.getLogger(__name__)

_MACHINES = "Machine.Read.All (WindowsDefenderATP)"
_USERS = "User.Read.All (WindowsDefenderATP)"
_ALERTS = "Alert.Read.All (WindowsDefenderATP)"
_DEVICE_ID = re.compile(r"^[0-9a-fA-F]{40}$")

#: Known fields of a machine and how they are typed in frames.
MACHINE_KINDS = {
    "id": "string", "computerDnsName": "string", "firstSeen": "datetime", "lastSeen": "datetime",
    "osPlatform": "string", "version": "string", "osProcessor": "string", "osArchitecture": "string",
    "osBuild": "int", "lastIpAddress": "string", "lastExternalIpAddress": "string", "healthStatus": "string",
    "onboardingStatus": "string", "rbacGroupId": "int", "rbacGroupName": "string", "riskScore": "string",
    "exposureLevel": "string", "deviceValue": "string", "isAadJoined": "bool", "aadDeviceId": "string",
    "machineTags": "object", "ipAddresses": "object",
}
#: Known fields of a logged-on user.
LOGON_USER_KINDS = {
    "id": "string", "accountName": "string", "accountDomain": "string", "accountSid": "string",
    "firstSeen": "datetime", "lastSeen": "datetime", "logonTypes": "string", "isDomainAdmin": "bool",
    "isOnlyNetworkUser": "bool",
}


class DeviceOperations:
    """Device verbs: mixed into :class:`~connector.DefenderClient`."""

    def get_device(self, device: str) -> dict:
        """One device by its 40-hex device id, or by DNS name (``wks-01.contoso.local``), as sent.

        A name matches ``computerDnsName`` exactly, across every page; when several devices carry
        it (re-imaged machines), the one seen last is returned. None: :class:`NotFoundError`.
        """
        mde = self._resource("mde")
        if _DEVICE_ID.match(str(device).strip()):
            return mde.get(f"/api/machines/{segment(device)}", operation="get device", permission=_MACHINES)
        matches = list(mde.pager("/api/machines", operation="get device by name", permission=_MACHINES,
                                 params={"$filter": f"computerDnsName eq {odata_string(str(device).strip())}"}))
        if not matches:
            raise NotFoundError(f"No device named {str(device).strip()[:200]!r} in this tenant (matched on "
                                "computerDnsName, the full DNS name as Defender shows it).", status=404)
        if len(matches) > 1:
            log.warning("%d devices are named %r; using the one seen last.", len(matches), device)
        return max(matches, key=lambda m: m.get("lastSeen") or "")

    def list_devices(self, *, filter: str | None = None, name_prefix: str | None = None, top: int | None = None,
                     page_size: int | None = None) -> ItemPaged:
        """Devices, lazily paged; ``name_prefix`` keeps those whose DNS name starts with it."""
        clause = odata_filter(
            f"startswith(computerDnsName,{odata_string(name_prefix)})" if name_prefix else None, filter
        )
        params = {"$filter": clause} if clause else {}
        size = page_size or (top if top and top <= 10_000 else None)
        if size:
            params["$top"] = str(min(size, 10_000))
        return self._resource("mde").pager("/api/machines", operation="list devices", permission=_MACHINES,
                                            params=params, limit=top, kinds=MACHINE_KINDS)

    def find_devices_by_ip(self, ip: str, at: datetime | None = None) -> ItemPaged:
        """Devices that had ``ip`` around time ``at`` (default now): MDE ``findbyip``, 15 minutes either side."""
        try:
            address = ipaddress.ip_address(str(ip).strip())
        except ValueError:
            raise BadRequestError(f"{str(ip)[:60]!r} is not an IP address.") from None
        when = iso(at or datetime.now(UTC)).split(".")[0].rstrip("Z") + "Z"
        path = f"/api/machines/findbyip(ip={odata_string(address)},timestamp={when})"
        return self._resource("mde").pager(path, operation="find devices by IP", permission=_MACHINES,
                                            kinds=MACHINE_KINDS)

    def list_device_logon_users(self, device_id: str) -> ItemPaged:
        """Users who logged on to a device."""
        return self._resource("mde").pager(f"/api/machines/{segment(device_id)}/logonusers",
                                            operation="list device logon users", permission=_USERS,
                                            kinds=LOGON_USER_KINDS)

    def list_device_alerts(self, device_id: str) -> ItemPaged:
        """Legacy MDE alerts of a device."""
        return self._resource("mde").pager(f"/api/machines/{segment(device_id)}/alerts",
                                            operation="list device alerts", permission=_ALERTS,
                                            kinds=MDE_ALERT_KINDS)
