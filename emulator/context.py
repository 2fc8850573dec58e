"""What a handler gets for one request: the emulator's state, the request, path parameters and the caller.

Handlers depend on this module (and on :mod:`emulator.state` for the stores), never on the service or the
route table, so adding an operation never creates an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .identity import TokenInfo
from .messages import Request, Response

if TYPE_CHECKING:
    from .state import State

Handler = Callable[["Context"], Response]


@dataclass
class Context:
    """One request in flight: the state it reads and changes, the request, path parameters and the caller's token.

    ``family`` is the API family whose envelope errors use (graph | mde | xdr | keyvault | entra | admin).
    ``principal`` is set once the bearer token has been checked.
    """

    state: State
    req: Request
    params: dict[str, str]
    family: str
    principal: TokenInfo | None = None
