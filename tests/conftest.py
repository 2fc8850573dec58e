"""Shared fixtures: the emulator, the reference samples, a clean environment and a canary secret."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "data"  # copies of the published samples, see tests/data/SOURCES.md
CANARY = "CANARY-s3cr3t-7f3a9c1e-do-not-leak"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """Tests must not depend on this machine's CA variables, msticpyconfig or Azure identity."""
    for name in (
        "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "MSTICPYCONFIG", "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """Fail any name lookup or connection to anything but loopback: no test may reach Microsoft."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        if isinstance(address, tuple) and address[0] not in _LOOPBACK:
            raise AssertionError(f"non-loopback connection attempted: {address!r}")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOOPBACK and host is not None:
            raise AssertionError(f"name lookup attempted: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="session")
def samples() -> Path:
    """tests/data: the published sample payloads, kept in the repository so nothing is skipped on a fresh clone."""
    assert SAMPLES.is_dir(), f"{SAMPLES} is missing from the checkout"
    return SAMPLES


@pytest.fixture(scope="session")
def emulator():
    """One emulator for the session (quotas off so unrelated tests do not throttle each other)."""
    from emulator import Emulator

    with Emulator(enforce_quotas=False) as emu:
        yield emu


@pytest.fixture
def emu(emulator):
    """The session emulator, reset to a clean state for this test."""
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture
def emu_kwargs(emu):
    """connect() keyword arguments for the emulator's default tenant, with generous rate limits."""
    return {
        "tenant_id": emu.tenant_id,
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "authority_host": emu.base_url,
        "api_root": emu.base_url,
        "ca_bundle": emu.ca_bundle,
        "timeout": 10,
        "rate_limits": {"hunting_per_minute": 10_000, "hunting_per_hour": 100_000, "api_per_minute": 10_000},
    }


@pytest.fixture
def all_logs(caplog):
    """Capture every log record at DEBUG, from every library."""
    caplog.set_level(logging.DEBUG)
    return caplog
