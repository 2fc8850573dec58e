"""Block document names: Prefect's rule, a fixed-up suggestion, and a message that says both."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from connector.errors import ConfigurationError

#: Prefect's rule for block document names (``prefect.types.names.BlockDocumentName``).
NAME_RULE = "lowercase letters, digits and dashes only"
_VALID = re.compile(r"^[a-z0-9-]+$")


def suggest_block_name(text: str) -> str:
    """A valid block name close to ``text``: lower-cased, other characters as single dashes.

    ``"MicrosoftDefender-Tenant_2"`` → ``"microsoftdefender-tenant-2"``; empty if nothing is left.
    """
    name = re.sub(r"[^a-z0-9]+", "-", str(text).strip().lower())
    return name.strip("-")


def check_block_name(name: str, *, what: str = "Block name") -> str:
    """Return ``name`` if Prefect accepts it, else raise ConfigurationError with the rule and a fix."""
    if isinstance(name, str) and _VALID.match(name):
        return name
    suggestion = suggest_block_name(name or "")
    hint = f" Try {suggestion!r}." if suggestion else ""
    raise ConfigurationError(f"{what} {name!r} is not valid: Prefect block names use {NAME_RULE}.{hint}")


class CheckedNameMixin:
    """Checks the name given to ``save``/``asave`` first, so a bad name gets :func:`check_block_name`'s message."""

    def save(self, name: str | None = None, overwrite: bool = False, client: Any = None, **kwargs: Any) -> UUID:
        """Save as a block document; ``name`` must be lowercase letters, digits and dashes.

        ``kwargs`` go to Prefect's ``save`` (``_sync=True`` forces the sync path inside a running loop).
        """
        if name is not None:
            check_block_name(name, what=f"{self.get_block_type_name()} block name")
        return super().save(name, overwrite=overwrite, client=client, **kwargs)

    async def asave(self, name: str | None = None, overwrite: bool = False, client: Any = None) -> UUID:
        """Async :meth:`save`."""
        if name is not None:
            check_block_name(name, what=f"{self.get_block_type_name()} block name")
        return await super().asave(name, overwrite=overwrite, client=client)


__all__ = ["NAME_RULE", "CheckedNameMixin", "check_block_name", "suggest_block_name"]
