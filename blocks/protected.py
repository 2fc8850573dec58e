"""``ProtectedDevices``: the devices response flows must never isolate.

A device is protected when its **id** is listed, its **DNS name** (or the host name before the
first dot) matches one of the **names** (exact names or shell-style patterns: ``dc-*``,
``*.tier0.contoso.local``), it carries one of the **machine tags**, or it sits in one of the
**device groups**. Every comparison ignores case.

The flows resolve a device first (by id, DNS name or IP at a time) and then check the *resolved*
device's id, name, tags and group, so a protected device is refused however it was given. They
also check again, with a fresh copy of the block and the device, right before acting: an approval
may take an hour, and someone may have tagged the device meanwhile.

    from blocks import ProtectedDevices
    ProtectedDevices(names=["dc-*", "*.tier0.contoso.local"], tags=["Tier0", "DoNotIsolate"],
                     device_ids=["ad574086..."]).save("default")

A name pattern ``*`` protects every device: a kill switch for automated containment.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, field_validator

from .keyvault import _LOGO
from .naming import CheckedNameMixin

_DEVICE_ID = re.compile(r"^[0-9a-f]{40}$")

#: The block name the response flows use unless told otherwise.
DEFAULT_PROTECTED = "default"


def _clean(values: Any, what: str) -> list[str]:
    if values is None or values == "":
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        text = str(value).strip()
        if not text:
            continue  # an empty row left in the UI form
        if len(text) > 256:
            raise ValueError(f"{what}: {text[:40]!r}... is longer than 256 characters.")
        if text.lower() not in (v.lower() for v in out):
            out.append(text)
    return out


class ProtectedDevices(CheckedNameMixin, Block):
    """Devices that response flows (contain_device, respond_file) must never act on automatically.

    Any match protects: a device id, a DNS name or shell-style pattern (matched against the full
    DNS name and the host name before the first dot), a machine tag, or a device group. Case is
    ignored. ``names=["*"]`` protects every device.
    """

    _block_type_name: ClassVar[str] = "Defender Protected Devices"
    _block_type_slug: ClassVar[str] = "defender-protected-devices"
    _logo_url: ClassVar[str] = _LOGO
    _documentation_url: ClassVar[str] = "https://learn.microsoft.com/defender-endpoint/respond-machine-alerts"
    _description: ClassVar[str] = (
        "Devices the response flows must never isolate: device ids, DNS names or patterns (dc-*), machine "
        "tags (Tier0) and device groups. Checked on the resolved device, however it was given."
    )
    _code_example: ClassVar[str] = """\
```python
from blocks import ProtectedDevices

protected = ProtectedDevices.load("BLOCK_NAME")
reason = protected.why_protected(device)   # device: a machine as Defender sends it; None if not protected
```"""

    device_ids: list[str] = Field(
        default_factory=list, title="Device ids",
        description="Defender device (machine) ids: 40 hexadecimal characters each.")
    names: list[str] = Field(
        default_factory=list, title="DNS names or patterns",
        description="Full DNS names or host names, or shell-style patterns (dc-*, *.tier0.contoso.local). "
                    "'*' protects every device.")
    tags: list[str] = Field(
        default_factory=list, title="Machine tags",
        description="A device carrying any of these tags (as set in Defender) is protected.")
    device_groups: list[str] = Field(
        default_factory=list, title="Device groups",
        description="A device in any of these Defender device groups (rbacGroupName) is protected.")

    @field_validator("device_ids", mode="before")
    @classmethod
    def _check_ids(cls, value: Any) -> list[str]:
        ids = [v.lower() for v in _clean(value, "device_ids")]
        # A mistyped id would protect nothing, silently: refuse it.
        bad = [v for v in ids if not _DEVICE_ID.match(v)]
        if bad:
            raise ValueError(f"device_ids must be Defender device ids (40 hexadecimal characters); "
                             f"{bad[0][:60]!r} is not. Put DNS names under 'names'.")
        return ids

    @field_validator("names", mode="before")
    @classmethod
    def _check_names(cls, value: Any) -> list[str]:
        return [v.lower().rstrip(".") or v for v in _clean(value, "names")]

    @field_validator("tags", "device_groups", mode="before")
    @classmethod
    def _check_labels(cls, value: Any) -> list[str]:
        return _clean(value, "tags and device groups")

    def is_empty(self) -> bool:
        """True when the list protects nothing."""
        return not (self.device_ids or self.names or self.tags or self.device_groups)

    def why_protected(self, device: dict[str, Any]) -> str | None:
        """Why ``device`` (a machine as Defender sends it) is protected, or None when it is not.

        Reads ``id``, ``computerDnsName``, ``machineTags`` and ``rbacGroupName``.
        """
        device_id = str(device.get("id") or "").strip().lower()
        if device_id and device_id in self.device_ids:
            return f"its device id {device_id} is on the protected list"
        name = str(device.get("computerDnsName") or "").strip().lower().rstrip(".")
        if name:
            short = name.split(".", 1)[0]
            for pattern in self.names:
                if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(short, pattern):
                    return f"its name {name} matches the protected name {pattern!r}"
        device_tags = {str(t).strip().lower(): str(t) for t in device.get("machineTags") or []}
        for tag in self.tags:
            if tag.lower() in device_tags:
                return f"it carries the protected machine tag {device_tags[tag.lower()]!r}"
        group = str(device.get("rbacGroupName") or "").strip()
        for wanted in self.device_groups:
            if group and group.lower() == wanted.lower():
                return f"it is in the protected device group {group!r}"
        return None


__all__ = ["DEFAULT_PROTECTED", "ProtectedDevices"]
