"""The :class:`Emulator`: the state (:mod:`emulator.state`) plus the route table, the HTTPS server and its lifecycle."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from .routes import build_router
from .server import HOST, EmulatorHTTPServer
from .state import DEFAULT_SECRET_NAME, State
from .tls import server_context, write_tls_files

__all__ = ["DEFAULT_SECRET_NAME", "Emulator"]


IDENTITY_FILE = "emulator.json"


def _load_identity(directory: Path) -> dict[str, str]:
    """The tenant id, client id and secret an earlier run saved in ``directory`` (empty if none or unreadable)."""
    try:
        data = json.loads((directory / IDENTITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k in ("tenant_id", "client_id", "client_secret") and isinstance(v, str)}


def _save_identity(directory: Path, tenant_id: str, client_id: str, client_secret: str) -> None:
    """Keep the seeded identity for the next run (owner-only: it holds the emulator's client secret)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / IDENTITY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"tenant_id": tenant_id, "client_id": client_id, "client_secret": client_secret}, fh, indent=2)


class Emulator(State):
    """A local Microsoft Defender + Entra ID + Key Vault emulator over HTTPS on 127.0.0.1.

    Use as a context manager (or ``start()``/``stop()``)::

        with Emulator() as emu:
            emu.base_url, emu.ca_bundle, emu.tenant_id, emu.client_id, emu.client_secret

    With a ``state_dir``, the CA and the seeded tenant id, client id and secret are kept there and reused by
    the next run (explicit arguments win), so clients configured once keep working.

    ``base_url`` serves everything (Entra ID, Key Vault and every API, as one proxy would); ``graph_url`` and
    ``mde_url`` serve only their own resource's paths, so a call sent to the wrong one fails as it would
    against Microsoft. Ports default to any free port (0).

    A default tenant and an app holding every role are seeded; ``token_lifetime`` (seconds) sets
    ``expires_in`` for tokens issued from then on; ``quotas.per_minute``/``per_hour`` tune hunting quotas.
    """

    def __init__(self, port: int = 0, state_dir: str | Path | None = None, enforce_quotas: bool = True, *,
                 tenant_id: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None, graph_port: int = 0, mde_port: int = 0) -> None:
        saved = _load_identity(Path(state_dir)) if state_dir is not None else {}
        super().__init__(enforce_quotas, tenant_id=tenant_id or saved.get("tenant_id"),
                         client_id=client_id or saved.get("client_id"),
                         client_secret=client_secret or saved.get("client_secret"))
        if state_dir is not None:
            _save_identity(Path(state_dir), self.tenant_id, self.client_id, self.client_secret)
        self.port = port
        self.graph_port = graph_port
        self.mde_port = mde_port
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.router = build_router()

        self._servers: list[EmulatorHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._temp_dir: Path | None = None
        self._ca_bundle: Path | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Emulator:
        """Write the TLS files, bind the three ports on 127.0.0.1 and serve each in a background thread."""
        if self._servers:
            return self
        directory = self.state_dir
        if directory is None:
            self._temp_dir = directory = Path(tempfile.mkdtemp(prefix="defender-emulator-"))
        files = write_tls_files(directory)
        self._ca_bundle = files.ca_bundle
        context = server_context(files)
        self.stop_event.clear()
        try:
            for family, port in ((None, self.port), ("graph", self.graph_port), ("mde", self.mde_port)):
                self._servers.append(EmulatorHTTPServer(self, self.router, port, context, family))
        except OSError:
            self._close_servers()
            raise
        self.port, self.graph_port, self.mde_port = (s.server_address[1] for s in self._servers)
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                      name=f"emulator-{server.server_address[1]}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _close_servers(self) -> None:
        for server in self._servers:
            server.server_close()
        self._servers = []

    def stop(self) -> None:
        """Stop serving, close open connections and remove a temporary state directory."""
        servers, self._servers = self._servers, []
        if not servers:
            return
        self.stop_event.set()  # releases "slow" faults
        for server in servers:
            server.shutdown()
            server.close_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
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
    def graph_url(self) -> str:
        """``https://127.0.0.1:GRAPH_PORT``: serves only Microsoft Graph paths (``/v1.0``, ``/beta``), as graph.microsoft.com."""
        return f"https://{HOST}:{self.graph_port}"

    @property
    def mde_url(self) -> str:
        """``https://127.0.0.1:MDE_PORT``: serves only the MDE / M365D ``/api/...`` paths, as api.security.microsoft.com."""
        return f"https://{HOST}:{self.mde_port}"

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM CA bundle clients must trust (exists while the emulator runs)."""
        if self._ca_bundle is None:
            raise RuntimeError("the emulator is not started")
        return str(self._ca_bundle)
