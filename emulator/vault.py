"""Key Vault's state: secrets by name, each with its versions (the handlers are in :mod:`emulator.keyvault`)."""

from __future__ import annotations

import secrets as _secrets
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class SecretVersion:
    """One version of a secret."""

    name: str
    value: str
    version: str
    created: int
    enabled: bool = True
    content_type: str | None = None

    def __repr__(self) -> str:
        # The value is the point of a secret store; it never goes into a repr.
        return f"SecretVersion(name={self.name!r}, version={self.version!r}, enabled={self.enabled})"


class SecretStore:
    """Secrets by case-insensitive name; the last added version is the current one. Thread-safe."""

    def __init__(self) -> None:
        self._versions: dict[str, list[SecretVersion]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, value: str, version: str | None = None, content_type: str | None = None) -> str:
        """Store a new version (generated if not given) and make it current; returns the version id."""
        version = version or _secrets.token_hex(16)
        item = SecretVersion(name, value, version, int(time.time()), content_type=content_type)
        with self._lock:
            self._versions.setdefault(name.lower(), []).append(item)
        return version

    def get(self, name: str, version: str | None = None) -> SecretVersion | None:
        """The current version, or the named one; None if unknown."""
        with self._lock:
            versions = self._versions.get(name.lower(), [])
            if not version:
                return versions[-1] if versions else None
            return next((v for v in versions if v.version.lower() == version.lower()), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._versions)
