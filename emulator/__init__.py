"""A local Microsoft Defender (hunting, MDE entities, alerts, incidents), Entra ID and Key Vault emulator.

It speaks the documented HTTP API over real HTTPS on 127.0.0.1, with programmable faults, so the
connector can be tested end to end without touching Microsoft. Standard library + ``cryptography`` only.

    from emulator import Emulator, Fault
    with Emulator() as emu:                       # emu.base_url (all), emu.graph_url, emu.mde_url
        emu.faults.add(Fault("status", status=503, times=2))
        ids = emu.seed_alerts(2_500)
"""

from .faults import KINDS as FAULT_KINDS
from .faults import Fault, parse_fault_spec
from .identity import ALL_ROLES
from .requestlog import RequestRecord
from .service import DEFAULT_SECRET_NAME, Emulator

__all__ = ["ALL_ROLES", "DEFAULT_SECRET_NAME", "FAULT_KINDS", "Emulator", "Fault", "RequestRecord", "parse_fault_spec"]
