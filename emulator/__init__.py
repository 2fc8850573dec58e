"""A local Microsoft Defender (Graph / MDE / XDR hunting), Entra ID and Key Vault emulator.

It speaks the documented HTTP API over real HTTPS on 127.0.0.1, with programmable faults, so the
connector can be tested end to end without touching Microsoft. Standard library + ``cryptography`` only.

    from emulator import Emulator, Fault
    with Emulator() as emu:
        emu.faults.add(Fault("status", status=503, times=2))
"""

from .faults import KINDS as FAULT_KINDS
from .faults import Fault
from .identity import ALL_ROLES
from .requestlog import RequestRecord
from .service import DEFAULT_SECRET_NAME, Emulator

__all__ = ["ALL_ROLES", "DEFAULT_SECRET_NAME", "FAULT_KINDS", "Emulator", "Fault", "RequestRecord"]
