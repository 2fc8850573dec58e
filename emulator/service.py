"""The :class:`Emulator`: the state (:mod:`emulator.state`) plus the route table, the HTTPS server and its lifecycle."""

from __future__ import annotations

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


class Emulator(State):
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
        super().__init__(enforce_quotas, tenant_id=tenant_id, client_id=client_id, client_secret=client_secret)
        self.port = port
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.router = build_router()

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
        self._server = EmulatorHTTPServer(self, self.router, self.port, server_context(files))
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
