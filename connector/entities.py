"""Files, IP addresses and users on the Defender for Endpoint API."""

from __future__ import annotations

from .devices import MACHINE_KINDS
from .paging import ItemPaged
from .resources import segment

_FILES = "File.Read.All (WindowsDefenderATP)"
_IPS = "Ip.Read.All (WindowsDefenderATP)"
_MACHINES = "Machine.Read.All (WindowsDefenderATP)"


class EntityOperations:
    """File, IP and user verbs: mixed into :class:`~connector.DefenderClient`."""

    def get_file(self, file_hash: str) -> dict:
        """What Defender knows of a file, by SHA1 or SHA256, as sent (prevalence, signer, determination)."""
        return self._resource("mde").get(f"/api/files/{segment(file_hash)}", operation="get file",
                                         permission=_FILES)

    def get_file_stats(self, file_hash: str, *, lookback_hours: int | None = None) -> dict:
        """A file's statistics in the organization (devices, first and last seen), by SHA1 or SHA256."""
        params = {"lookBackHours": str(int(lookback_hours))} if lookback_hours else None
        return self._resource("mde").get(f"/api/files/{segment(file_hash)}/stats", operation="get file stats",
                                         permission=_FILES, params=params)

    def get_ip_stats(self, ip: str, *, lookback_hours: int | None = None) -> dict:
        """An IP address's prevalence in the organization (``lookback_hours`` up to 720; default 30 days)."""
        params = {"lookBackHours": str(int(lookback_hours))} if lookback_hours else None
        return self._resource("mde").get(f"/api/ips/{segment(ip)}/stats", operation="get IP stats",
                                         permission=_IPS, params=params)

    def list_user_devices(self, user_name: str) -> ItemPaged:
        """Devices a user (the account name, not the UPN: ``user1``) has used."""
        return self._resource("mde").pager(f"/api/users/{segment(user_name)}/machines",
                                            operation="list user devices", permission=_MACHINES,
                                            kinds=MACHINE_KINDS)
