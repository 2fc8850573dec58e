"""Fixtures for the emulator's own tests: a private emulator per module (quotas on) and a session trusting it."""

from __future__ import annotations

import pytest
import requests

from emulator import Emulator


@pytest.fixture(scope="module")
def emu():
    """An emulator of the module's own, with the documented quotas enforced (unlike conftest's)."""
    with Emulator(port=0) as running:
        yield running


@pytest.fixture
def http(emu):
    """A requests Session that trusts the emulator's CA, on a reset emulator."""
    emu.reset()
    with requests.Session() as session:
        session.verify = emu.ca_bundle
        yield session
    emu.faults.clear()
