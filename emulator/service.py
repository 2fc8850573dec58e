"""The :class:`Emulator`: state (tenants, tokens, secrets, faults, request log, quotas) and lifecycle."""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from .faults import FaultSet
from .hunting import result_size
from .identity import App, Directory, TokenRegistry
from .keyvault import SecretStore
from .quotas import QuotaTracker
from .requestlog import RequestLog
from .resultcache import ResultCache
from .routes import build_router
from .server import HOST, EmulatorHTTPServer
from .tls import server_context, write_tls_files

#: Key Vault secret seeded with the default app's client secret (handy for Key Vault-backed demos).
DEFAULT_SECRET_NAME = "defender-client-secret"


class Emulator:
    """A local Microsoft Defender + Entra ID + Key Vault emulator over HTTPS on 127.0.0.1.

    Use as a context manager (or ``start()``/``stop()``)::

        with Emulator() as emu:
            emu.base_url, emu.ca_bundle, emu.tenant_id, emu.client_id, emu.client_secret

    A default tenant and an app holding every role are seeded; ``token_lifetime`` (seconds) sets
    ``expires_in`` for tokens issued from then on; ``quotas.per_minute``/``per_hour`` tune hunting quotas.
    """

    def __init__(self, port: int = 0, state_dir: str | Path | None = None, enforce_quotas: bool = True, *,
                 tenant_id: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None) -> None:
        self.port = port
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.enforce_quotas = enforce_quotas
        self.token_lifetime = 3599
        self.directory = Directory()
        self.tokens = TokenRegistry()
        self.faults = FaultSet()
        self.requests = RequestLog()
        self.quotas = QuotaTracker()
        self.secrets = SecretStore()
        self.results = ResultCache(result_size)
        self.router = build_router()
        self.stop_event = threading.Event()

        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.directory.add_tenant(self.tenant_id)
        app = self.directory.add_app(self.tenant_id, client_id or str(uuid.uuid4()), client_secret)
        self.client_id: str = app.client_id
        self.client_secret: str = app.client_secret or ""
        self.secrets.add(DEFAULT_SECRET_NAME, self.client_secret)

        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._temp_dir: Path | None = None
        self._ca_bundle: Path | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Emulator:
        """Write the TLS files, bind 127.0.0.1:port and serve in a background thread."""
        if self._server is not None:
            return self
        directory = self.state_dir
        if directory is None:
            self._temp_dir = directory = Path(tempfile.mkdtemp(prefix="defender-emulator-"))
        files = write_tls_files(directory)
        self._ca_bundle = files.ca_bundle
        self.stop_event.clear()
        self._server = EmulatorHTTPServer(self, self.port, server_context(files))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"emulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and remove a temporary state directory."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stop_event.set()  # releases "slow" faults
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.results.clear()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT`` (no trailing slash); also the Entra authority host and the vault URL."""
        return f"https://{HOST}:{self.port}"

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM CA bundle clients must trust (exists while the emulator runs)."""
        if self._ca_bundle is None:
            raise RuntimeError("the emulator is not started")
        return str(self._ca_bundle)

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
