"""The emulator's state: tenants and apps, issued tokens, secrets, faults, the request log, quotas and caches.

Handlers read and change it through ``ctx.state``. It holds no routes and no sockets: the service
(:class:`emulator.Emulator`) adds those, and is itself a ``State``, so tests script the state directly on
the emulator (``emu.faults.add(...)``, ``emu.token_lifetime = 60``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from typing import Any

from .faults import FaultSet
from .identity import App, Directory, TokenRegistry
from .quotas import QuotaTracker
from .requestlog import RequestLog
from .resultcache import ResultCache
from .vault import SecretStore

#: Key Vault secret seeded with the default app's client secret (handy for Key Vault-backed demos).
DEFAULT_SECRET_NAME = "defender-client-secret"


def _result_bytes(result: Any) -> int:
    """Size of a cached hunting result, for the cache's byte budget."""
    return len(result.results_json)


class State:
    """Everything the handlers share, with a default tenant and an app holding every role.

    ``token_lifetime`` (seconds) sets ``expires_in`` for tokens issued from then on;
    ``quotas.per_minute``/``per_hour`` tune hunting quotas; ``enforce_quotas=False`` turns them off.
    """

    def __init__(self, enforce_quotas: bool = True, *, tenant_id: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None) -> None:
        self.enforce_quotas = enforce_quotas
        self.token_lifetime = 3599
        self.directory = Directory()
        self.tokens = TokenRegistry()
        self.faults = FaultSet()
        self.requests = RequestLog()
        self.quotas = QuotaTracker()
        self.secrets = SecretStore()
        self.results: ResultCache[Any] = ResultCache(_result_bytes)
        self.stop_event = threading.Event()

        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.directory.add_tenant(self.tenant_id)
        app = self.directory.add_app(self.tenant_id, client_id or str(uuid.uuid4()), client_secret)
        self.client_id: str = app.client_id
        self.client_secret: str = app.client_secret or ""
        self.secrets.add(DEFAULT_SECRET_NAME, self.client_secret)

    # ------------------------------------------------------------ scripting

    def add_tenant(self, tenant_id: str) -> None:
        """Register another tenant (GUID or domain name)."""
        self.directory.add_tenant(tenant_id)

    def add_app(self, tenant_id: str, client_id: str, client_secret: str | None = None, certificate: bool = False,
                roles: Iterable[str] | None = None) -> App:
        """Register an app in a tenant; ``roles=None`` grants every role. Returns it (``.client_secret``)."""
        return self.directory.add_app(tenant_id, client_id, client_secret, certificate, roles)

    def add_secret(self, name: str, value: str, version: str | None = None) -> str:
        """Store a Key Vault secret version (current from now on); returns the version id."""
        return self.secrets.add(name, value, version)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (the next API call with one gets 401)."""
        self.tokens.expire_all()

    def reset(self) -> None:
        """Clear faults, the request log and quota counters."""
        self.faults.clear()
        self.requests.clear()
        self.quotas.reset()
