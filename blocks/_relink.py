"""Restore a Key Vault block link that Prefect's V2 edit form replaced by a masked copy.

Measured on Prefect 3.9.1 (tests/test_browser_ui.py): the V2 edit form starts from the block
document as the API shows it, where a linked block is inlined with its secret fields as
``"********"``, and sends that back. The server then stores an embedded copy instead of the link,
and the copy's service principal secret is the literal ``"********"``: the tenant would no longer
follow its Key Vault block and could not read the vault.

When a tenant is loaded, an embedded copy that holds no real secret (each secret field empty or
masked) and is identical to exactly one saved Key Vault block as the API shows it (same vault,
secret, version and identity) is that block: the tenant is loaded with the block (its real values)
and the link is written back. Anything else is left as it is: a copy with a secret of its own was
saved on purpose, and a masked copy that matches no block (the block changed since) is reported by
``DefenderTenant.check_references()`` with the fix.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("blocks")

#: What Prefect shows instead of a secret's value.
MASK = "********"
#: Block documents read per request while looking for the original block.
_PAGE = 200


def masked_copies(document: Any, fields: tuple[str, ...], secret_fields: tuple[str, ...]) -> list[str]:
    """Fields of ``document`` holding an embedded block copy with no real secret (empty or masked only)."""
    references = document.block_document_references or {}
    found = []
    for field in fields:
        value = (document.data or {}).get(field)
        if isinstance(value, dict) and field not in references and all(
            value.get(name) in (None, MASK) for name in secret_fields
        ):
            found.append(field)
    return found


def _matches(copy: dict, candidates: list[Any]) -> list[Any]:
    return [c for c in candidates if c.data == copy]


def _apply(document: Any, field: str, original: Any) -> None:
    document.data[field] = original.data
    document.block_document_references = dict(document.block_document_references or {})
    document.block_document_references[field] = {
        "block_document": {"id": str(original.id), "name": original.name, "is_anonymous": original.is_anonymous,
                           "block_document_references": original.block_document_references or {}},
    }


def _update(field: str, original_id: Any) -> Any:
    from prefect.client.schemas.actions import BlockDocumentUpdate

    return BlockDocumentUpdate(data={field: {"$ref": {"block_document_id": str(original_id)}}}, merge_existing_data=True)


def relink(document: Any, client: Any, fields: tuple[str, ...], block_type_slug: str,
           secret_fields: tuple[str, ...]) -> None:
    """Sync: put back the link of each masked copy in ``document`` (in place) and on the server."""
    copies = masked_copies(document, fields, secret_fields)
    if not copies:
        return
    candidates, offset = [], 0
    while True:
        page = client.read_block_documents_by_type(block_type_slug, offset=offset, limit=_PAGE, include_secrets=False)
        candidates += [c for c in page if not c.is_anonymous]
        if len(page) < _PAGE:
            break
        offset += _PAGE
    for field in copies:
        matches = _matches(document.data[field], candidates)
        if len(matches) != 1:
            continue
        original = client.read_block_document(matches[0].id, include_secrets=True)
        _apply(document, field, original)
        try:
            client.update_block_document(document.id, _update(field, original.id))
        except Exception as exc:  # the loaded tenant is right either way: say why the link was not saved
            logger.warning("Tenant %s: could not save the restored link of %s to block %s (%s)",
                           document.name, field, original.name, type(exc).__name__)
        else:
            logger.warning("Tenant %s: %s was a masked copy of Key Vault block %s (left by Prefect's V2 edit "
                           "form); the link is restored", document.name, field, original.name)


async def arelink(document: Any, client: Any, fields: tuple[str, ...], block_type_slug: str,
                  secret_fields: tuple[str, ...]) -> None:
    """Async :func:`relink`."""
    copies = masked_copies(document, fields, secret_fields)
    if not copies:
        return
    candidates, offset = [], 0
    while True:
        page = await client.read_block_documents_by_type(
            block_type_slug, offset=offset, limit=_PAGE, include_secrets=False
        )
        candidates += [c for c in page if not c.is_anonymous]
        if len(page) < _PAGE:
            break
        offset += _PAGE
    for field in copies:
        matches = _matches(document.data[field], candidates)
        if len(matches) != 1:
            continue
        original = await client.read_block_document(matches[0].id, include_secrets=True)
        _apply(document, field, original)
        try:
            await client.update_block_document(document.id, _update(field, original.id))
        except Exception as exc:  # the loaded tenant is right either way: say why the link was not saved
            logger.warning("Tenant %s: could not save the restored link of %s to block %s (%s)",
                           document.name, field, original.name, type(exc).__name__)
        else:
            logger.warning("Tenant %s: %s was a masked copy of Key Vault block %s (left by Prefect's V2 edit "
                           "form); the link is restored", document.name, field, original.name)


__all__ = ["MASK", "arelink", "masked_copies", "relink"]
